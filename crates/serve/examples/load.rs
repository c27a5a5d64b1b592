//! Load benchmark of the serving path: concurrent OpenAI-style clients on loopback against the
//! serve fixture, then a check that the usage settled on the ledger is exactly what the
//! clients were told they used.
//!
//! ```text
//! cargo build -p flock-serve --examples --release
//! target/release/examples/load --secs 20 --clients 32 --max-tokens 8
//! ```
//! Starts `serve_fixture` (next to this binary) as a child process, drives `--clients`
//! concurrent clients for `--secs` seconds (tiny model, small `max_tokens`, so it measures
//! the HTTP, auth, credit, queue, journal and settlement path more than the model), prints
//! requests/s and latency percentiles, then reads every `MarketSettle` of the listing from the
//! node's public API and compares the settled tokens and calls with the clients' sums.
//! Exits non-zero if any usage is missing or extra.

use clap::Parser;
use flock_ledger::{SignedTx, TxKind};
use serde_json::{json, Value};
use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::sync::Mutex;

/// Load benchmark options.
#[derive(Debug, Parser)]
struct Args {
    /// Seconds of load.
    #[arg(long, default_value_t = 20)]
    secs: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// `max_tokens` of each request.
    #[arg(long, default_value_t = 8)]
    max_tokens: u64,
    /// Inference workers in the fixture (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// The fixture binary (default: `serve_fixture` next to this one).
    #[arg(long)]
    fixture: Option<PathBuf>,
    /// Seconds to wait for the last usage to settle.
    #[arg(long, default_value_t = 60)]
    settle_timeout: u64,
}

#[derive(Debug, Default)]
struct Tally {
    latencies_ms: Vec<f64>,
    ok: u64,
    errors: BTreeMap<u16, u64>,
    prompt_tokens: u64,
    completion_tokens: u64,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Usage {
    prompt: u64,
    completion: u64,
    calls: u64,
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Sums the `MarketSettle` batches of `listing` posted by `server` that the ledger executed.
async fn settled_usage(
    http: &reqwest::Client,
    node: &str,
    listing: &str,
    server: &str,
) -> anyhow::Result<Usage> {
    let mut u = Usage::default();
    let mut since = 1u64;
    loop {
        let page: Value = http
            .get(format!("{node}/v1/events?since={since}&limit=100"))
            .send()
            .await?
            .json()
            .await?;
        for block in page["blocks"].as_array().into_iter().flatten() {
            for r in block["txs"].as_array().into_iter().flatten() {
                let settled = r["status"] == "ok"
                    && r["events"].as_array().into_iter().flatten().any(|e| {
                        e["event"] == "market_settled"
                            && e["listing"] == listing
                            && e["server"] == server
                    });
                if !settled {
                    continue;
                }
                let hash = r["tx_hash"].as_str().unwrap_or_default();
                let v: Value =
                    http.get(format!("{node}/v1/txs/{hash}")).send().await?.json().await?;
                let tx: SignedTx = serde_json::from_value(v["tx"].clone())?;
                if let TxKind::MarketSettle { batch } = tx.tx.kind {
                    for e in batch.entries {
                        u.prompt += e.prompt_tokens;
                        u.completion += e.completion_tokens;
                        u.calls += e.calls;
                    }
                }
            }
        }
        let next = page["next"].as_u64().unwrap_or(since);
        if next > page["tip"].as_u64().unwrap_or(0) || next == since {
            return Ok(u);
        }
        since = next;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let fixture = match &args.fixture {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("serve_fixture"),
    };
    let mut cmd = Command::new(&fixture);
    cmd.args([
        "--rate-per-minute",
        "100000000",
        "--burst",
        "1000000",
        "--settle-ms",
        "500",
        "--queue",
        "256",
    ]);
    if let Some(w) = args.workers {
        cmd.args(["--workers", &w.to_string()]);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().map_err(|e| {
        anyhow::anyhow!("starting {} (build it with --examples): {e}", fixture.display())
    })?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let info: Value = serde_json::from_str(&line)?;
    let (base, node) = (
        info["base_url"].as_str().unwrap_or_default().to_owned(),
        info["node_url"].as_str().unwrap_or_default().to_owned(),
    );
    let key = info["api_key"].as_str().unwrap_or_default().to_owned();
    let server = info["server"].as_str().unwrap_or_default().to_owned();

    let http = reqwest::Client::builder().pool_max_idle_per_host(args.clients).build()?;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.secs);
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (http, base, key, tally) = (http.clone(), base.clone(), key.clone(), tally.clone());
        let max_tokens = args.max_tokens;
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let body = json!({
                    "model": "tiny",
                    "messages": [{"role": "user", "content": format!("Client {c} asks question {n}: how many rows?")}],
                    "max_tokens": max_tokens,
                    "temperature": 0,
                });
                let t0 = Instant::now();
                let r = http.post(format!("{base}/chat/completions")).bearer_auth(&key).json(&body).send().await;
                let ms = t0.elapsed().as_secs_f64() * 1e3;
                let mut t = tally.lock().await;
                match r {
                    Ok(r) if r.status().is_success() => {
                        let v: Value = r.json().await.unwrap_or(Value::Null);
                        t.prompt_tokens += v["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
                        t.completion_tokens += v["usage"]["completion_tokens"].as_u64().unwrap_or(0);
                        t.ok += 1;
                        t.latencies_ms.push(ms);
                    }
                    Ok(r) => *t.errors.entry(r.status().as_u16()).or_default() += 1,
                    Err(_) => *t.errors.entry(0).or_default() += 1,
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut t = std::mem::take(&mut *tally.lock().await);
    t.latencies_ms.sort_by(f64::total_cmp);
    let errors: u64 = t.errors.values().sum();
    println!("| clients | seconds | requests ok | errors | requests/s | p50 ms | p99 ms | max ms | completion tokens/s |");
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {:.1} | {} | {}{} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
        args.clients,
        elapsed,
        t.ok,
        errors,
        if t.errors.is_empty() { String::new() } else { format!(" {:?}", t.errors) },
        t.ok as f64 / elapsed,
        pct(&t.latencies_ms, 0.5),
        pct(&t.latencies_ms, 0.99),
        t.latencies_ms.last().copied().unwrap_or(0.0),
        t.completion_tokens as f64 / elapsed,
    );

    // Every usage record the clients saw must settle on the ledger, once.
    let want = Usage { prompt: t.prompt_tokens, completion: t.completion_tokens, calls: t.ok };
    let settle_start = Instant::now();
    let mut got = Usage::default();
    while settle_start.elapsed() < Duration::from_secs(args.settle_timeout) {
        got = settled_usage(&http, &node, "tiny", &server).await?;
        if got == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    println!(
        "\nclients received: {} prompt + {} completion tokens in {} calls\nsettled on ledger: {} prompt + {} completion tokens in {} calls (settled {:.1}s after the load)",
        want.prompt, want.completion, want.calls, got.prompt, got.completion, got.calls,
        settle_start.elapsed().as_secs_f64()
    );
    if got != want {
        anyhow::bail!("settled usage differs from what clients received");
    }
    println!("lost usage records: 0, double-charged: 0");
    Ok(())
}
