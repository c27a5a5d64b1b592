//! A node serving a tiny listed model, for clients in other processes (the `openai` Python
//! test, the load benchmark).
//!
//! ```text
//! cargo run -p flock-serve --example serve_fixture
//! ```
//! Starts a node (genesis-funded accounts), writes a tiny flock-ml model, lists it as `tiny`
//! (1 FLOCK per 1k tokens + 0.001 FLOCK per call), gives a consumer an escrow (`--credit`
//! FLOCK) and an API key, a poor consumer 0.001 FLOCK (less than one call) and a key, then
//! restarts the node with the model served on its API and prints one JSON line:
//! `{"base_url", "node_url", "api_key", "poor_api_key", "model", "server", "consumer"}`.
//! Serves until SIGTERM / Ctrl-C, then settles pending usage and exits.

#[path = "../tests/fixture/mod.rs"]
mod fixture;

use clap::Parser;
use flock_ledger::market::ModelKind;
use flock_primitives::Amount;
use std::{io::Write, path::PathBuf, time::Duration};

/// Serve fixture options.
#[derive(Debug, Parser)]
struct Args {
    /// Keep the node here (default: a temporary directory, removed at exit).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Milliseconds between blocks.
    #[arg(long, default_value_t = 100)]
    block_ms: u64,
    /// Milliseconds between settlements.
    #[arg(long, default_value_t = 1000)]
    settle_ms: u64,
    /// Requests per minute per key.
    #[arg(long, default_value_t = 600)]
    rate_per_minute: u32,
    /// Token bucket size per key.
    #[arg(long, default_value_t = 60)]
    burst: u32,
    /// Inference workers (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Requests waiting for a worker.
    #[arg(long, default_value_t = 64)]
    queue: usize,
    /// The consumer's escrow, in FLOCK.
    #[arg(long, default_value_t = 1000)]
    credit: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let tmp = tempfile::tempdir()?;
    let dir = args.data_dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let chain = "flock-serve-fixture";
    let keys = fixture::Keys::new("fixture");

    // Set up the marketplace on a plain node.
    let running = fixture::start_node(&dir, chain, &keys, args.block_ms, None).await?;
    let node = running.node.clone();
    let model = fixture::tiny_model(&dir);
    let listed = node.with_chain(|c| c.ledger().state().market_listing("tiny").is_some());
    if !listed {
        fixture::list(&node, &keys, "tiny", &model, ModelKind::Language, fixture::PRICE).await;
    }
    let key =
        fixture::consumer_key(&node, &keys.consumer, Amount::flock(args.credit), "fixture").await;
    let poor =
        fixture::consumer_key(&node, &keys.poor, Amount(1_000_000_000_000_000), "poor").await;
    drop(node); // the store is opened again below
    running.shutdown().await?;

    // Restart it serving the model.
    let mut cfg = fixture::serve_config(&keys, &dir, &[("tiny", &model)]);
    cfg.settle_every = Duration::from_millis(args.settle_ms.max(1));
    cfg.rate_limit = flock_serve::RateLimit { per_minute: args.rate_per_minute, burst: args.burst };
    cfg.workers = args.workers.unwrap_or(cfg.workers);
    cfg.queue = args.queue;
    cfg.max_tokens_cap = 256;
    let running =
        fixture::start_node(&dir, chain, &keys, args.block_ms, Some(flock_serve::extension(cfg)))
            .await?;
    let url = running.url();
    let line = serde_json::json!({
        "base_url": format!("{url}/v1"),
        "node_url": url,
        "api_key": key,
        "poor_api_key": poor,
        "model": "tiny",
        "server": keys.server.address(),
        "consumer": keys.consumer.address(),
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    drop(out);
    running.run_until_signal().await
}
