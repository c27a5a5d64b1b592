//! `flockd devnet`: a whole local network on one machine, with funded dev accounts and a demo
//! workload that goes through the public HTTP API like any remote user.

use crate::cli::DevnetArgs;
use anyhow::Context;
use flock_ledger::{Allocation, Genesis, Params, StakeTarget, TxKind};
use flock_node::{Client, ClientError, Keystore, MempoolLimits, NodeConfig, SequencerKey};
use flock_primitives::{Amount, Hash, Keypair, Ppm};
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The dev accounts' keys: deterministic, public, for local use only.
pub(crate) fn dev_key(i: usize) -> Keypair {
    Keypair::dev(&format!("devnet-{i}"))
}

fn devnet_genesis(accounts: usize, epoch_length: u64, seq: &SequencerKey) -> Genesis {
    Genesis {
        chain_id: "flock-devnet".into(),
        genesis_time_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        params: Params {
            epoch_length,
            unbonding_blocks: 8,
            delegation_lock_blocks: 4,
            share_cooldown_blocks: 40,
            min_network_stake: Amount::flock(1_000),
            ..Params::default()
        },
        allocations: (0..accounts)
            .map(|i| Allocation { address: dev_key(i).address(), amount: Amount::flock(1_000_000) })
            .collect(),
        targets: vec![],
        sequencer: Some(seq.genesis_entry()),
    }
}

pub(crate) async fn run(a: DevnetArgs, json: bool) -> anyhow::Result<()> {
    if a.accounts < 12 && !a.no_demo {
        anyhow::bail!("the demo needs at least 12 accounts (or pass --no-demo)");
    }
    let (dir, temporary) = match &a.data_dir {
        Some(d) => (d.clone(), false),
        None => {
            let stamp =
                SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
            (
                std::env::temp_dir().join(format!("flock-devnet-{}-{stamp}", std::process::id())),
                true,
            )
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let seq = SequencerKey::from_seed(Keypair::dev("devnet-sequencer").secret_bytes());
    let genesis_path = dir.join("genesis.json");
    let genesis = if genesis_path.exists() {
        Genesis::from_json(&std::fs::read_to_string(&genesis_path)?).map_err(anyhow::Error::msg)?
    } else {
        let g = devnet_genesis(a.accounts, a.epoch_length, &seq);
        std::fs::write(&genesis_path, serde_json::to_string_pretty(&g)?)?;
        let ks = Keystore::open(&dir);
        for i in 0..a.accounts {
            ks.insert(&format!("dev-{i}"), &dev_key(i))?;
        }
        g
    };
    let running = flock_node::start(NodeConfig {
        data_dir: dir.clone(),
        genesis: genesis.clone(),
        listen: a.listen,
        block_interval: Duration::from_millis(a.block_interval_ms.max(1)),
        sequencer: Some(seq),
        mempool: MempoolLimits::default(),
        fsync: true,
        max_artifact_bytes: flock_node::server::DEFAULT_MAX_ARTIFACT_BYTES,
        artifact_peers: vec![],
    })
    .await?;
    let url = running.url();
    println!("flock devnet");
    println!("  chain id   {}", genesis.chain_id);
    println!("  API        {url}");
    println!("  data dir   {}{}", dir.display(), if temporary { " (temporary)" } else { "" });
    println!(
        "  keystore   {}  (use --data-dir {} with flockd keys/tx)",
        dir.join("keys.json").display(),
        dir.display()
    );
    println!("  dev accounts (1,000,000 FLOCK each; dev keys are public, never use them for real funds):");
    for (i, al) in genesis.allocations.iter().enumerate() {
        println!("    dev-{i:<3} {}", al.address);
    }
    let mut result = if a.no_demo { Ok(()) } else { demo(&url, &genesis, json).await };
    let mut arena_task = None;
    if result.is_ok() && !a.no_demo && !a.no_arena {
        let keys = (0..12).map(dev_key).collect();
        let interval = a.block_interval_ms.max(1);
        match arena(
            std::slice::from_ref(&url),
            keys,
            &dir,
            interval,
            a.quick,
            a.base_model.as_deref(),
        )
        .await
        {
            Ok(t) => arena_task = Some(t),
            Err(e) => result = Err(e),
        }
    }
    if result.is_ok() && !a.no_demo && !a.no_alliance {
        result = alliance(&url, &dir, a.block_interval_ms.max(1), a.quick, &a.fl_privacy).await;
    }
    let mut gateway = None;
    if let (Ok(()), Some((task, base_dir)), false) = (&result, &arena_task, a.no_market) {
        match market(&url, &dir, &running.node, *task, base_dir, a.listen).await {
            Ok(g) => gateway = Some(g),
            Err(e) => result = Err(e),
        }
    }
    if let Err(e) = &result {
        eprintln!("demo failed: {e:#}");
    }
    if let Some(g) = &gateway {
        g.shutdown().await;
    }
    if a.exit_after_demo || result.is_err() {
        running.shutdown().await?;
    } else {
        println!("\ndevnet running; Ctrl-C to stop");
        running.run_until_signal().await?;
    }
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// The AI Arena round: a creator opens a Text2SQL task on a tiny base model, four trainers of
/// different quality fine-tune LoRA adapters, a copier and a corrupt submission try their luck,
/// four validators (one lazy, one silent) score the submissions in bits per byte. Agents spread
/// over the nodes in `urls` (12 funded `keys`); `interval_ms` is the expected block interval
/// (phases are wall-clock budgets turned into blocks).
pub(crate) async fn arena(
    urls: &[String],
    keys: Vec<Keypair>,
    dir: &std::path::Path,
    interval_ms: u64,
    quick: bool,
    base_model: Option<&std::path::Path>,
) -> anyhow::Result<(u64, std::path::PathBuf)> {
    use flock_agents::{
        engine::{prepare_text2sql, EngineMl, BASE_FILES},
        scenario::{print_outcome, run_arena_scenario, ArenaScenario},
        TrainPlan,
    };
    let (n_train, n_val, pretrain, steps) =
        if quick { (160, 24, 40, 40) } else { (600, 64, 100, 150) };
    let base_desc = match base_model {
        Some(b) => format!("base model {}", b.display()),
        None => "a tiny Qwen2-style base model".to_owned(),
    };
    println!(
        "\nAI Arena: preparing a Text2SQL task (simulated corpus: {n_train} training and {n_val} hidden validation examples; {base_desc}) ..."
    );
    let base_dir = dir.join("arena-base");
    let started = std::time::Instant::now();
    let task = tokio::task::spawn_blocking({
        let base_dir = base_dir.clone();
        let source = base_model.map(std::path::Path::to_owned);
        move || match source {
            Some(src) => {
                flock_agents::engine::prepare_text2sql_with_base(&src, &base_dir, 7, n_train, n_val)
            }
            None => prepare_text2sql(&base_dir, 7, n_train, n_val, pretrain),
        }
    })
    .await??;
    println!(
        "  base model ready in {:.1}s; its validation loss is {:.4} bits per byte",
        started.elapsed().as_secs_f64(),
        task.base_bpb
    );
    // Phases in blocks from wall-clock budgets, so any block interval works.
    let blocks = |secs: u64| (secs * 1000 / interval_ms).max(4);
    let (train, validate) = if quick { (blocks(30), blocks(15)) } else { (blocks(60), blocks(30)) };
    let phases = flock_ledger::arena::Phases {
        train,
        reveal: blocks(3),
        validate_commit: validate,
        validate_reveal: blocks(3),
    };
    let plan = |p: u32, s: usize| TrainPlan { data_percent: p, steps: s, seed: 3 };
    let scenario = ArenaScenario {
        url: urls.first().context("no node to run the arena on")?.clone(),
        urls: urls.iter().skip(1).cloned().collect(),
        keys,
        base_dir,
        base_files: BASE_FILES.iter().map(|s| (*s).to_owned()).collect(),
        training_jsonl: task.training_jsonl,
        validation_jsonl: task.validation_jsonl,
        plans: [plan(100, steps), plan(60, steps / 2), plan(30, steps / 4), plan(10, steps / 10)],
        phases,
        work_dir: dir.join("arena-agents"),
    };
    println!("  trainers a-d fine-tune LoRA adapters on 100%, 60%, 30% and 10% of the data; the copier commits trainer-a's model later; one trainer uploads a corrupt file; validator-1 and -2 are honest, one validator is lazy and one never reveals");
    let outcome = run_arena_scenario(scenario, std::sync::Arc::new(EngineMl::default())).await?;
    println!("{}", print_outcome(&outcome));
    if let Some((check, _)) = outcome.checks.iter().find(|(_, ok)| !ok) {
        anyhow::bail!("arena check failed: {check}");
    }
    Ok((outcome.task, dir.join("arena-base")))
}

/// A running marketplace gateway: the serve layer on its own port.
struct Gateway {
    serve: flock_serve::Serve,
    task: tokio::task::JoinHandle<()>,
}

impl Gateway {
    async fn shutdown(&self) {
        self.serve.shutdown().await;
        self.task.abort();
    }
}

/// The AI Marketplace: the Arena winner (the base model with the winning LoRA adapter merged)
/// is listed with its provenance, served over the OpenAI-compatible API, and called by a paying
/// consumer; the usage settles on the ledger and the revenue is split.
async fn market(
    url: &str,
    dir: &std::path::Path,
    node: &flock_node::Node,
    task: u64,
    base_dir: &std::path::Path,
    listen: std::net::SocketAddr,
) -> anyhow::Result<Gateway> {
    use flock_agents::fetch::Artifacts;
    use flock_ledger::market::{
        ListingSpec, ModelKind, Pricing, Product, ProvenanceClaim, RevenueSplit,
    };
    let client = Client::new(url);
    let art = Artifacts::new(url, &dir.join("market-cache"));
    println!("\nAI Marketplace: the Arena winner is merged into its base model, listed with its provenance, served over an OpenAI-compatible API and paid for per token");
    let round = client.get(&format!("/v1/arena/tasks/{task}/rounds/0")).await?;
    let winner: Hash = round["result"]["ranking"][0]["artifact"]
        .as_str()
        .and_then(|h| h.parse().ok())
        .context("the arena round has no winner")?;
    // The served model: base + the winner's adapter, merged.
    let adapter = dir.join("market-winner-adapter");
    art.fetch_bundle(&winner, &adapter).await?;
    let served = dir.join("market-winner-model");
    tokio::task::spawn_blocking({
        let (base_dir, adapter, served) = (base_dir.to_owned(), adapter.clone(), served.clone());
        move || -> anyhow::Result<()> {
            let base = flock_ml::ModelDir::new(&base_dir).load(&flock_ml::cpu())?;
            let (model, _) = flock_ml::load_peft_adapter(base.model, &adapter)?;
            let merged = flock_ml::merge_lora(model);
            flock_ml::ModelDir::new(&served).save(&base.config, &merged, &base.tokenizer)?;
            for f in ["tokenizer_config.json", "generation_config.json"] {
                if base_dir.join(f).exists() {
                    std::fs::copy(base_dir.join(f), served.join(f))?;
                }
            }
            Ok(())
        }
    })
    .await??;
    let files: Vec<String> = std::fs::read_dir(&served)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    let refs: Vec<&str> = files.iter().map(String::as_str).collect();
    let artifact = art.upload_bundle("hf-model", &served, &refs).await?;
    let owner = dev_key(0); // the task's creator
    let server = Keypair::dev("devnet-market-server");
    let consumer = dev_key(11);
    let name = "text2sql-arena-winner";
    let spec = ListingSpec {
        name: name.into(),
        server: server.address(),
        artifact,
        kind: ModelKind::Language,
        price: Pricing { per_1k_tokens: Amount::flock(2), per_call: Amount::ZERO },
        split: RevenueSplit {
            owner: Ppm::percent(70)?,
            validators: Ppm::percent(20)?,
            burn: Ppm::percent(10)?,
        },
        provenance: Some(ProvenanceClaim { product: Product::Arena, task, round: 0 }),
    };
    step(&client, "creator", &owner, TxKind::MarketList { spec: Box::new(spec) }).await?;
    let l = client.get(&format!("/v1/market/listings/{name}")).await?;
    println!(
        "  listed {name}: 2 FLOCK per 1k tokens, split 70% owner / 20% validators / 10% burned; provenance from the ledger: arena task {task} round 0, winning artifact {}, validators {}",
        l["provenance"]["model"].as_str().unwrap_or("?"),
        l["provenance"]["validators"].as_array().map_or(0, Vec::len)
    );
    // Serve it on the port after the API's.
    let cfg = flock_serve::ServeConfig::new(
        vec![flock_serve::ServedModel { listing: name.into(), dir: served.clone() }],
        server.clone(),
        dir.to_owned(),
    );
    let serve = flock_serve::Serve::start(node.clone(), cfg)?;
    let port = if listen.port() == 0 { 0 } else { listen.port().wrapping_add(1) };
    let listener = match tokio::net::TcpListener::bind((listen.ip(), port)).await {
        Ok(l) => l,
        Err(_) => tokio::net::TcpListener::bind((listen.ip(), 0)).await?,
    };
    let gw = format!("http://{}", listener.local_addr()?);
    let router = serve.router();
    let task_handle = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    println!("  serving at {gw}/v1 (OpenAI-compatible: /v1/models, /v1/chat/completions, /v1/completions)");
    // A consumer deposits credit, creates a key and asks questions.
    step(&client, "consumer", &consumer, TxKind::MarketDeposit { amount: Amount::flock(20) })
        .await?;
    let key = flock_serve::generate_api_key();
    step(
        &client,
        "consumer",
        &consumer,
        TxKind::MarketKeyCreate {
            key_hash: flock_serve::api_key_hash(&key),
            label: "devnet".into(),
        },
    )
    .await?;
    let escrow_before = client.get(&format!("/v1/market/accounts/{}", consumer.address())).await?
        ["escrow"]["available"]
        .clone();
    let settle_from = client.get("/v1/status").await?["height"].as_u64().unwrap_or(1).max(1);
    let http = reqwest::Client::new();
    let mut tokens = 0u64;
    let mut expected = Amount::ZERO;
    // Questions of the task's kind (simulated, from the repo's generator with another seed
    // than the task's sets). The schema prompt does not fit the tiny model's context, so the
    // question goes alone.
    for pair in flock_ml_data::text2sql::generate_pairs(991, 3) {
        let q = pair.question;
        let body = serde_json::json!({
            "model": name,
            "messages": [{"role": "user", "content": q}],
            "max_tokens": 32,
            "temperature": 0.0,
        });
        let r = http
            .post(format!("{gw}/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await?;
        if !status.is_success() {
            anyhow::bail!("chat completion failed ({status}): {v}");
        }
        let used = v["usage"]["total_tokens"].as_u64().unwrap_or(0);
        tokens += used;
        let entry = flock_ledger::market::UsageEntry {
            key_hash: flock_serve::api_key_hash(&key),
            prompt_tokens: used,
            completion_tokens: 0,
            calls: 0,
        };
        let price = Pricing { per_1k_tokens: Amount::flock(2), per_call: Amount::ZERO };
        expected = flock_ledger::market::usage_cost(&entry, &price)
            .and_then(|c| expected.checked_add(c))
            .context("cost overflow")?;
        println!(
            "  consumer asks {q:?}\n    → {:?} ({} prompt + {} completion tokens)",
            v["choices"][0]["message"]["content"].as_str().unwrap_or(""),
            v["usage"]["prompt_tokens"],
            v["usage"]["completion_tokens"]
        );
    }
    // Bad input is refused and costs nothing.
    let r = http
        .post(format!("{gw}/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"model": name, "messages": [], "max_tokens": 8}))
        .send()
        .await?;
    println!("  an empty conversation is refused: HTTP {}", r.status().as_u16());
    let r = http
        .post(format!("{gw}/v1/chat/completions"))
        .bearer_auth("flk-not-a-key")
        .json(&serde_json::json!({"model": name, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await?;
    println!("  an unknown API key is refused: HTTP {}", r.status().as_u16());
    if !serve.settle_now(Duration::from_secs(30)).await {
        anyhow::bail!("usage did not settle on the ledger in 30 s");
    }
    let acct = client.get(&format!("/v1/market/accounts/{}", consumer.address())).await?;
    let spent = acct["spent"]
        .as_array()
        .and_then(|s| s.first())
        .map(|s| s["spent"].clone())
        .unwrap_or(Value::Null);
    let amt =
        |v: &Value| v.as_str().and_then(|s| Amount::from_base_str(s).ok()).unwrap_or_default();
    println!(
        "  settled on the ledger: {tokens} tokens → {} charged (credit {} → {})",
        amt(&spent),
        amt(&escrow_before),
        amt(&acct["escrow"]["available"])
    );
    // The split, from the settlement events.
    let mut burned = Amount::ZERO;
    let mut paid: Vec<(String, Amount)> = Vec::new();
    let mut blocks = Vec::new();
    let mut since = settle_from;
    loop {
        let ev = client.get(&format!("/v1/events?since={since}&limit=100")).await?;
        blocks.extend(ev["blocks"].as_array().cloned().unwrap_or_default());
        let next = ev["next"].as_u64().unwrap_or(u64::MAX);
        if next > ev["tip"].as_u64().unwrap_or(0) || next <= since {
            break;
        }
        since = next;
    }
    for b in &blocks {
        for r in b["txs"].as_array().into_iter().flatten() {
            for e in r["events"].as_array().into_iter().flatten() {
                if e["event"] == "market_settled" && e["listing"] == name {
                    burned = burned.checked_add(amt(&e["burned"])).unwrap_or(burned);
                    for p in e["payouts"].as_array().into_iter().flatten() {
                        paid.push((p[0].as_str().unwrap_or("").to_owned(), amt(&p[1])));
                    }
                }
            }
        }
    }
    for (who, a) in &paid {
        let role =
            if *who == owner.address().to_string() { "owner (task creator)" } else { "validator" };
        println!("    paid {a} to {role} {who}");
    }
    println!("    burned {burned}");
    let sup = client.get("/v1/supply").await?;
    let split_total = paid.iter().fold(burned.0, |acc, (_, a)| acc.saturating_add(a.0));
    let checks = [
        ("the charge equals the metered tokens at the listed price", amt(&spent) == expected),
        ("owner + validators + burn add up to the charge", split_total == amt(&spent).0),
        ("supply conserved", sup["conserved"] == true),
    ];
    for (c, ok) in checks {
        println!("  [{}] {c}", if ok { "ok" } else { "FAILED" });
        if !ok {
            anyhow::bail!("market check failed: {c}");
        }
    }
    Ok(Gateway { serve, task: task_handle })
}

/// The FL Alliance task: six hospitals with simulated glucose patients train a
/// 30-minutes-ahead predictor for ten rounds; one hospital poisons its updates.
async fn alliance(
    url: &str,
    dir: &std::path::Path,
    interval_ms: u64,
    quick: bool,
    privacy: &str,
) -> anyhow::Result<()> {
    use flock_agents::fl_scenario::{print_alliance, run_alliance_scenario, AllianceScenario};
    use flock_ledger::alliance::Privacy;
    let (privacy, story) = match privacy {
        "secagg" => (
            Privacy::SecureAggregation,
            "updates are masked pairwise so voters see only their sum (FedAvg); hospital-X drops out after each draw and the survivors reveal its pair seeds",
        ),
        "dp" => (
            Privacy::DifferentialPrivacy { clip_micro: 1_000_000, noise_micro: 20_000 },
            "each hospital clips its change to norm 1 and adds Gaussian noise (multiplier 0.02) before it leaves; hospital-P poisons its updates; aggregation is a deterministic trimmed mean",
        ),
        _ => (
            Privacy::Plaintext,
            "hospital-P poisons its updates; aggregation is a deterministic trimmed mean",
        ),
    };
    println!("\nFL Alliance: six hospitals (simulated glucose-insulin patients, labeled as such; each hospital's data stays in its own agent) train a 30-minutes-ahead glucose predictor for 10 rounds; {story}");
    let blocks = |ms: u64| (ms / interval_ms).max(4);
    let (propose, commit, reveal) = if quick {
        (blocks(3_000), blocks(2_000), blocks(1_500))
    } else {
        (blocks(5_000), blocks(3_000), blocks(2_000))
    };
    let s = AllianceScenario {
        url: url.to_owned(),
        keys: (0..7).map(dev_key).collect(),
        rounds: 10,
        patients: if quick { 2 } else { 3 },
        days: if quick { 2 } else { 3 },
        phases: flock_ledger::alliance::AlliancePhases {
            join: blocks(3_000),
            propose,
            vote_commit: commit,
            vote_reveal: reveal,
        },
        work_dir: dir.join("alliance-agents"),
        privacy,
        proposer_ratio: flock_primitives::Ppm::percent(50)?,
        last: if privacy == Privacy::SecureAggregation {
            flock_agents::alliance::MemberBehaviour::Dropout
        } else {
            flock_agents::alliance::MemberBehaviour::Poison
        },
    };
    let outcome = run_alliance_scenario(s).await?;
    println!("{}", print_alliance(&outcome));
    if let Some((check, _)) = outcome.checks.iter().find(|(_, ok)| !ok) {
        anyhow::bail!("alliance check failed: {check}");
    }
    Ok(())
}

async fn step(client: &Client, who: &str, key: &Keypair, kind: TxKind) -> anyhow::Result<Value> {
    let label = format!("{kind:?}");
    let v = client.send_and_wait(key, kind).await.with_context(|| format!("{who}: {label}"))?;
    println!("  block {:>4}  {who:<6} {}", v["height"], describe(&v));
    Ok(v)
}

fn describe(v: &Value) -> String {
    let t = &v["tx"]["tx"]["kind"];
    let amt = |k: &str| {
        t[k].as_str()
            .and_then(|s| Amount::from_base_str(s).ok())
            .map(|a| a.to_string())
            .unwrap_or_default()
    };
    match t["type"].as_str().unwrap_or("?") {
        "transfer" => format!("transfer {} to {}", amt("amount"), t["to"].as_str().unwrap_or("?")),
        "burn" => format!("burn {}", amt("amount")),
        "stake" => format!(
            "stake {} on task {}/{}",
            amt("amount"),
            t["target"]["task"],
            t["target"]["role"].as_str().unwrap_or("?")
        ),
        "unstake" => format!("unstake {}", amt("amount")),
        "delegate" => {
            format!("delegate {} to {}", amt("amount"), t["operator"].as_str().unwrap_or("?"))
        }
        "undelegate" => {
            format!("undelegate {} from {}", amt("amount"), t["operator"].as_str().unwrap_or("?"))
        }
        "set_share" => format!(
            "open pool, keeps {}",
            t["share"]
                .as_u64()
                .and_then(|p| Ppm::from_ppm(p as u32).ok())
                .map(|p| p.to_string())
                .unwrap_or_default()
        ),
        other => other.to_owned(),
    }
}

async fn demo(url: &str, genesis: &Genesis, json: bool) -> anyhow::Result<()> {
    let c = Client::new(url);
    let k: Vec<Keypair> = (0..8).map(dev_key).collect();
    let net = StakeTarget::NETWORK;
    let f = Amount::flock;
    println!("\ndemo workload (each step is a signed transaction sent over the HTTP API):");
    step(&c, "dev-0", &k[0], TxKind::Stake { target: net, amount: f(50_000) }).await?;
    step(&c, "dev-1", &k[1], TxKind::Stake { target: net, amount: f(20_000) }).await?;
    step(&c, "dev-0", &k[0], TxKind::SetShare { share: Ppm::percent(10)? }).await?;
    step(&c, "dev-1", &k[1], TxKind::SetShare { share: Ppm::percent(25)? }).await?;
    step(&c, "dev-2", &k[2], TxKind::Delegate { operator: k[0].address(), amount: f(10_000) })
        .await?;
    step(&c, "dev-3", &k[3], TxKind::Delegate { operator: k[0].address(), amount: f(5_000) })
        .await?;
    step(&c, "dev-4", &k[4], TxKind::Delegate { operator: k[1].address(), amount: f(7_500) })
        .await?;
    step(&c, "dev-5", &k[5], TxKind::Transfer { to: k[6].address(), amount: "1234.5".parse()? })
        .await?;
    step(&c, "dev-7", &k[7], TxKind::Burn { amount: f(100) }).await?;

    println!("\nbad input is refused with a typed error, and nothing changes:");
    match c.send(&k[6], TxKind::Transfer { to: k[5].address(), amount: f(10_000_000) }).await {
        Err(ClientError::Api { status, code, message }) => {
            println!("  overdraft      -> HTTP {status} {code}: {message}")
        }
        other => anyhow::bail!("an overdraft was not refused: {other:?}"),
    }
    match c.send(&k[6], TxKind::Stake { target: net, amount: f(10) }).await {
        Err(ClientError::Api { status, code, message }) => {
            println!("  stake below min -> HTTP {status} {code}: {message}")
        }
        other => anyhow::bail!("a stake below the minimum was not refused: {other:?}"),
    }

    // Wait for an epoch boundary so the emission is minted.
    let epoch = genesis.params.epoch_length;
    let status = c.get("/v1/status").await?;
    let h = status["height"].as_u64().unwrap_or(0);
    let target = (h / epoch + 1) * epoch;
    println!("\nwaiting for the end of epoch {} (height {target}) ...", target / epoch - 1);
    let _ = c.get(&format!("/v1/events?since={target}&limit=1&wait_ms=30000")).await?;
    step(&c, "dev-2", &k[2], TxKind::Undelegate { operator: k[0].address(), amount: f(4_000) })
        .await?;

    let supply = c.get("/v1/supply").await?;
    if json {
        super::print_json(&supply);
        return Ok(());
    }
    println!("\naccounts:");
    println!(
        "  {:<6} {:>22} {:>14} {:>14} {:>10}",
        "name", "balance", "staked", "delegated", "unbonding"
    );
    for (i, key) in k.iter().enumerate() {
        let v = c.get(&format!("/v1/accounts/{}", key.address())).await?;
        let sum = |arr: &Value, field: &str| -> Amount {
            Amount(
                arr.as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x[field].as_str())
                    .filter_map(|s| s.parse::<u128>().ok())
                    .sum(),
            )
        };
        let bal =
            v["balance"].as_str().and_then(|s| Amount::from_base_str(s).ok()).unwrap_or_default();
        println!(
            "  dev-{i:<2} {:>22} {:>14} {:>14} {:>10}",
            bal.to_string(),
            sum(&v["stakes"], "amount").to_string(),
            sum(&v["delegations"], "value").to_string(),
            sum(&v["unbonding"], "amount").to_string(),
        );
    }
    let r = &supply["report"];
    let amt = |f: &str| {
        r[f].as_str().and_then(|s| Amount::from_base_str(s).ok()).unwrap_or_default().to_string()
    };
    println!("\nsupply at height {}:", supply["height"]);
    for (label, field) in [
        ("minted (genesis + emission)", "minted"),
        ("burned", "burned"),
        ("community pool (emission)", "community_pool"),
        ("staked", "staked"),
        ("delegated", "delegated"),
        ("unbonding", "unbonding"),
    ] {
        println!("  {label:<28} {}", amt(field));
    }
    println!("  {:<28} {}", "circulating", supply["circulating_human"].as_str().unwrap_or("?"));
    println!("  {:<28} {}", "conserved (minted-burned = held)", supply["conserved"]);
    if supply["conserved"] != true {
        anyhow::bail!("supply is not conserved: {supply}");
    }
    Ok(())
}
