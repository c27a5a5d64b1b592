#!/usr/bin/env python3
"""The official `openai` Python client against a flock node serving a listed model.

Usage: python3 tests/openai/test_openai.py [PATH_TO_serve_fixture]

Starts the serve fixture (`cargo build -p flock-serve --example serve_fixture`), which runs a
node serving a tiny model and prints {"base_url", "api_key", "poor_api_key", "model", ...} on
its first stdout line; drives it with openai's client; stops it. Exits non-zero on failure.
Needs `pip install openai==1.109.1` (the version .ci/run pins).
"""

import json
import os
import subprocess
import sys
import traceback

import openai

FIXTURE = (
    sys.argv[1]
    if len(sys.argv) > 1
    else os.environ.get("FLOCK_SERVE_FIXTURE", "target/debug/examples/serve_fixture")
)
MESSAGES = [
    {"role": "system", "content": "Answer with SQL."},
    {"role": "user", "content": "How many customers are there?"},
]


def test_models(info, client):
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert info["model"] in ids, ids
    m = client.models.retrieve(info["model"])
    flock = m.model_extra["flock"]
    assert flock["listing"] == info["model"], flock
    assert flock["provenance_id"].startswith(info["model"] + "@"), flock
    assert int(flock["price"]["per_1k_tokens"]) > 0, flock


def test_chat(info, client):
    raw = client.chat.completions.with_raw_response.create(
        model=info["model"], messages=MESSAGES, max_tokens=8, temperature=0
    )
    r = raw.parse()
    assert raw.headers["x-flock-provenance"].startswith(info["model"] + "@"), raw.headers
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert isinstance(r.choices[0].message.content, str)
    assert r.choices[0].finish_reason in ("stop", "length")
    u = r.usage
    assert u.prompt_tokens > 0 and 1 <= u.completion_tokens <= 8, u
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens, u
    assert r.model_extra["flock"]["listing"] == info["model"]
    return r


def test_stream(info, client, plain):
    stream = client.chat.completions.create(
        model=info["model"], messages=MESSAGES, max_tokens=8, temperature=0, stream=True
    )
    text, usage, finish, n = "", None, None, 0
    for chunk in stream:
        n += 1
        assert chunk.object == "chat.completion.chunk"
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage is not None:
            usage = chunk.usage
    assert n >= 2, n
    assert text == plain.choices[0].message.content, (text, plain.choices[0].message.content)
    assert finish == plain.choices[0].finish_reason
    assert usage is not None and usage.total_tokens == plain.usage.total_tokens, usage


def test_completions(info, client):
    r = client.completions.create(model=info["model"], prompt="SELECT name FROM", max_tokens=5)
    assert r.object == "text_completion"
    assert isinstance(r.choices[0].text, str)
    assert 1 <= r.usage.completion_tokens <= 5


def test_bad_key(info):
    bad = openai.OpenAI(base_url=info["base_url"], api_key="flk-not-a-real-key", max_retries=0)
    try:
        bad.chat.completions.create(model=info["model"], messages=MESSAGES, max_tokens=4)
    except openai.AuthenticationError as e:
        assert e.status_code == 401
        assert e.code == "invalid_api_key", e.body
    else:
        raise AssertionError("a bad key was served")


def test_no_credit(info):
    poor = openai.OpenAI(base_url=info["base_url"], api_key=info["poor_api_key"], max_retries=0)
    try:
        poor.chat.completions.create(model=info["model"], messages=MESSAGES, max_tokens=4)
    except openai.APIStatusError as e:
        assert e.status_code == 402, e.status_code
        assert e.code == "insufficient_credits", e.body
        assert "flockd market deposit" in e.message, e.message
    else:
        raise AssertionError("a key without credit was served")


def main():
    proc = subprocess.Popen([FIXTURE], stdout=subprocess.PIPE, text=True)
    passed, failed = 0, 0
    try:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"the fixture {FIXTURE} printed nothing (exit {proc.poll()})")
        info = json.loads(line)
        client = openai.OpenAI(base_url=info["base_url"], api_key=info["api_key"], max_retries=0)
        plain = None
        tests = [
            ("models", lambda: test_models(info, client)),
            ("chat", lambda: test_chat(info, client)),
            ("stream", lambda: test_stream(info, client, plain)),
            ("completions", lambda: test_completions(info, client)),
            ("bad_key", lambda: test_bad_key(info)),
            ("no_credit", lambda: test_no_credit(info)),
        ]
        for name, t in tests:
            try:
                out = t()
                if name == "chat":
                    plain = out
                passed += 1
                print(f"test openai::{name} ... ok")
            except Exception:  # noqa: BLE001 - report every failure, keep going
                failed += 1
                print(f"test openai::{name} ... FAILED")
                traceback.print_exc()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    print(f"openai: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
