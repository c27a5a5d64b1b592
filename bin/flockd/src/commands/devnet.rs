//! `flockd devnet`: a whole local network on one machine, with funded dev accounts and a demo
//! workload that goes through the public HTTP API like any remote user.

use crate::cli::DevnetArgs;
use anyhow::Context;
use flock_ledger::{Allocation, Genesis, Params, StakeTarget, TxKind};
use flock_node::{Client, ClientError, Keystore, MempoolLimits, NodeConfig, SequencerKey};
use flock_primitives::{Amount, Keypair, Ppm};
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
    if result.is_ok() && !a.no_demo && !a.no_arena {
        result = arena(&url, &dir, a.block_interval_ms.max(1), a.quick).await;
    }
    if result.is_ok() && !a.no_demo && !a.no_alliance {
        result = alliance(&url, &dir, a.block_interval_ms.max(1), a.quick, &a.fl_privacy).await;
    }
    if let Err(e) = &result {
        eprintln!("demo failed: {e:#}");
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
/// four validators (one lazy, one silent) score the submissions in bits per byte.
async fn arena(
    url: &str,
    dir: &std::path::Path,
    interval_ms: u64,
    quick: bool,
) -> anyhow::Result<()> {
    use flock_agents::{
        engine::{prepare_text2sql, EngineMl, BASE_FILES},
        scenario::{print_outcome, run_arena_scenario, ArenaScenario},
        TrainPlan,
    };
    let (n_train, n_val, pretrain, steps) =
        if quick { (160, 24, 40, 40) } else { (600, 64, 100, 150) };
    println!("
AI Arena: preparing a Text2SQL task (simulated corpus: {n_train} training and {n_val} hidden validation examples; a tiny Qwen2-style base model) ...");
    let base_dir = dir.join("arena-base");
    let started = std::time::Instant::now();
    let task = tokio::task::spawn_blocking({
        let base_dir = base_dir.clone();
        move || prepare_text2sql(&base_dir, 7, n_train, n_val, pretrain)
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
        url: url.to_owned(),
        keys: (0..12).map(dev_key).collect(),
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
    Ok(())
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
            "updates are masked pairwise so voters see only their sum (FedAvg); hospital-D drops out after each draw and the survivors reveal its pair seeds",
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
