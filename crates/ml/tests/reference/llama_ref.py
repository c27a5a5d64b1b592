"""Independent NumPy forward pass of a HF Llama/Qwen2 decoder, following
transformers' modeling_llama.py / modeling_qwen2.py (rotate-half RoPE, repeat_kv GQA,
RMSNorm in float32, SwiGLU, tied or untied head). Reads config.json + model.safetensors.

Usage: python3 llama_ref.py MODEL_DIR ID ID ...   -> prints last-position logits[:8]
"""
import json
import struct
import sys

import numpy as np


def load_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        assert meta["dtype"] == "F32"
        s, e = meta["data_offsets"]
        out[name] = np.frombuffer(data[s:e], dtype="<f4").reshape(meta["shape"]).astype(np.float64)
    return out


def rms(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def forward(cfg, w, ids):
    h, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads") or nh
    hd = cfg.get("head_dim") or h // nh
    eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]
    qwen = cfg["model_type"] == "qwen2"
    qkv_bias = qwen or cfg.get("attention_bias", False)
    o_bias = (not qwen) and cfg.get("attention_bias", False)
    t = len(ids)
    x = w["model.embed_tokens.weight"][ids]
    inv = 1.0 / theta ** (np.arange(0, hd, 2) / hd)
    ang = np.outer(np.arange(t), inv)
    emb = np.concatenate([ang, ang], -1)
    cos, sin = np.cos(emb), np.sin(emb)

    def rot(v):
        return np.concatenate([-v[..., hd // 2 :], v[..., : hd // 2]], -1)

    def lin(v, name, bias):
        y = v @ w[name + ".weight"].T
        return y + w[name + ".bias"] if bias else y

    mask = np.triu(np.full((t, t), -np.inf), 1)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}"
        a = rms(x, w[p + ".input_layernorm.weight"], eps)
        q = lin(a, p + ".self_attn.q_proj", qkv_bias).reshape(t, nh, hd).transpose(1, 0, 2)
        k = lin(a, p + ".self_attn.k_proj", qkv_bias).reshape(t, nkv, hd).transpose(1, 0, 2)
        v = lin(a, p + ".self_attn.v_proj", qkv_bias).reshape(t, nkv, hd).transpose(1, 0, 2)
        q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
        k, v = np.repeat(k, nh // nkv, 0), np.repeat(v, nh // nkv, 0)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(hd) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        o = (s @ v).transpose(1, 0, 2).reshape(t, nh * hd)
        x = x + lin(o, p + ".self_attn.o_proj", o_bias)
        m = rms(x, w[p + ".post_attention_layernorm.weight"], eps)
        g = lin(m, p + ".mlp.gate_proj", False)
        x = x + lin(g / (1 + np.exp(-g)) * lin(m, p + ".mlp.up_proj", False), p + ".mlp.down_proj", False)
    x = rms(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    return x @ head.T


if __name__ == "__main__":
    d = sys.argv[1]
    cfg = json.load(open(d + "/config.json"))
    w = load_safetensors(d + "/model.safetensors")
    logits = forward(cfg, w, [int(a) for a in sys.argv[2:]])
    print(json.dumps([round(float(v), 6) for v in logits[-1][:8]]))
