//! The AI Arena devnet scenario: honest trainers of different quality, a copier, a corrupt
//! submission, honest, lazy and silent validators, and a delegator backing the expected winner.
//! Every actor is an agent with its own key talking to the node over HTTP.

use crate::{
    arena::{
        create_task, reveal_validation, run_trainer, run_validator, AgentCtx, ArenaMl, TrainPlan,
        TrainerBehaviour, ValidatorBehaviour,
    },
    AgentError,
};
use flock_ledger::{
    arena::{node_target, validator_target, ArenaTaskSpec, Metric, Phases},
    ClaimFrom, TxKind,
};
use flock_primitives::{Amount, Hash, Keypair, Ppm};
use serde_json::Value;
use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

/// Inputs of the scenario.
#[derive(Debug, Clone)]
pub struct ArenaScenario {
    /// Node API URL.
    pub url: String,
    /// More nodes of the same network: agent `i` talks to `[url, urls..][i % (1 + len)]`, so
    /// uploads and downloads cross nodes (artifacts are fetched from peers) and transactions
    /// enter through every node's mempool. Empty: every agent uses `url`.
    pub urls: Vec<String>,
    /// Funded keys: creator, 4 trainers, copier, corrupt trainer, 4 validators, delegator (12).
    pub keys: Vec<Keypair>,
    /// Base model directory and the files of its bundle.
    pub base_dir: PathBuf,
    /// Files of the base model bundle.
    pub base_files: Vec<String>,
    /// Training set (FLock JSONL).
    pub training_jsonl: Vec<u8>,
    /// Hidden validation set (FLock JSONL).
    pub validation_jsonl: Vec<u8>,
    /// Training plans of the four honest trainers (best first is expected).
    pub plans: [TrainPlan; 4],
    /// Phase lengths in blocks.
    pub phases: Phases,
    /// Agents' working directory.
    pub work_dir: PathBuf,
}

/// A participant's line in the final table.
#[derive(Debug, Clone)]
pub struct Line {
    /// Name.
    pub name: String,
    /// Role.
    pub role: &'static str,
    /// Score (for trainers) or quality (validators), as printed.
    pub metric: String,
    /// Reward (now + vested).
    pub reward: Amount,
    /// Slashed.
    pub slashed: Amount,
    /// Notes (duplicate, WORST reason, ...).
    pub note: String,
}

/// What the scenario produced.
#[derive(Debug, Clone)]
pub struct ArenaOutcome {
    /// The task id.
    pub task: u64,
    /// Leaderboard and validators, in print order.
    pub lines: Vec<Line>,
    /// The delegator's claimed pool reward (gross).
    pub delegator_claim: Amount,
    /// Property checks: (description, passed).
    pub checks: Vec<(String, bool)>,
    /// The raw result JSON.
    pub result: Value,
}

const NAMES: [&str; 12] = [
    "creator",
    "trainer-a",
    "trainer-b",
    "trainer-c",
    "trainer-d",
    "copier",
    "corrupt",
    "validator-1",
    "validator-2",
    "lazy",
    "silent",
    "delegator",
];

fn amount(v: &Value) -> Amount {
    v.as_str().and_then(|s| Amount::from_base_str(s).ok()).unwrap_or_default()
}

/// Runs the scenario to settlement.
pub async fn run_arena_scenario(
    s: ArenaScenario,
    ml: Arc<dyn ArenaMl>,
) -> Result<ArenaOutcome, AgentError> {
    if s.keys.len() < 12 {
        return Err(AgentError::Protocol("the arena scenario needs 12 funded keys".into()));
    }
    let nodes: Vec<&String> = std::iter::once(&s.url).chain(&s.urls).collect();
    let ctx = |i: usize| {
        let url = nodes[i % nodes.len()];
        let mut c = AgentCtx::new(url, s.keys[i].clone(), &s.work_dir.join(NAMES[i]), NAMES[i]);
        c.poll = Duration::from_millis(100);
        c
    };
    let creator = ctx(0);
    let spec = ArenaTaskSpec {
        title: "Text2SQL (simulated corpus)".into(),
        base_model: Hash::ZERO,
        training_set: Hash::ZERO,
        validation_commitments: vec![],
        max_params: 50_000_000,
        context_length: 256,
        metric: Metric::Bpb,
        phases: s.phases,
        min_node_stake: Amount::flock(100),
        min_validator_stake: Amount::flock(100),
        rank_ratio: Ppm::percent(60).map_err(|e| AgentError::Protocol(e.to_string()))?,
        gamma: Ppm::percent(10).map_err(|e| AgentError::Protocol(e.to_string()))?,
        delta: Ppm::percent(10).map_err(|e| AgentError::Protocol(e.to_string()))?,
        validators_per_submission: 3,
        deposit: Amount::flock(10_000),
    };
    let files: Vec<&str> = s.base_files.iter().map(String::as_str).collect();
    let task = create_task(
        &creator,
        &s.base_dir,
        &files,
        s.training_jsonl.clone(),
        std::slice::from_ref(&s.validation_jsonl),
        spec,
    )
    .await?;
    tracing::info!(task, "arena task created");

    // Stakes: trainers and validators (validator-1 the largest), the winner-to-be opens a pool.
    let stake = |i: usize, target, amt: u64| {
        let c = ctx(i);
        async move {
            c.client
                .send_and_wait(&c.key, TxKind::Stake { target, amount: Amount::flock(amt) })
                .await
        }
    };
    for i in 1..=6 {
        stake(i, node_target(task), 1_000).await?;
    }
    for (i, amt) in [(7, 3_000), (8, 2_000), (9, 1_000), (10, 1_000)] {
        stake(i, validator_target(task), amt).await?;
    }
    let a = ctx(1);
    // trainer-a runs a delegation pool (it may already have one from earlier work).
    if a.client.get(&format!("/v1/pools/{}", s.keys[1].address())).await.is_err() {
        let share = Ppm::percent(20).map_err(|e| AgentError::Protocol(e.to_string()))?;
        a.client.send_and_wait(&a.key, TxKind::SetShare { share }).await?;
    }
    let d = ctx(11);
    // The pool must exist on the delegator's own node (another node of the network may have
    // committed the pool's opening a block earlier).
    let pool = format!("/v1/pools/{}", s.keys[1].address());
    while d.client.get(&pool).await.is_err() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.client
        .send_and_wait(
            &d.key,
            TxKind::Delegate { operator: s.keys[1].address(), amount: Amount::flock(1_000) },
        )
        .await?;

    // Trainers and validators run concurrently, as separate agents would.
    let mut trainers = Vec::new();
    let (leak_tx, leak_rx) = tokio::sync::oneshot::channel::<Hash>();
    let mut leak_tx = Some(leak_tx);
    for (i, plan) in s.plans.iter().enumerate() {
        let (c, ml, plan) = (ctx(i + 1), ml.clone(), plan.clone());
        // trainer-a's model leaks to the copier once it is committed.
        let notify = if i == 0 { leak_tx.take() } else { None };
        trainers.push(tokio::spawn(async move {
            run_trainer(&c, ml, task, 0, TrainerBehaviour::Honest(plan), notify).await
        }));
    }
    let corrupt = {
        let (c, ml) = (ctx(6), ml.clone());
        tokio::spawn(
            async move { run_trainer(&c, ml, task, 0, TrainerBehaviour::Corrupt, None).await },
        )
    };
    let mut validators = Vec::new();
    for (i, b) in [
        (7, ValidatorBehaviour::Honest),
        (8, ValidatorBehaviour::Honest),
        (9, ValidatorBehaviour::Lazy(9)),
        (10, ValidatorBehaviour::NoReveal),
    ] {
        let (c, ml) = (ctx(i), ml.clone());
        validators.push(tokio::spawn(async move { run_validator(&c, ml, task, 0, b).await }));
    }
    // The copier obtains trainer-a's model off-chain once it exists, and commits it later.
    let copier = {
        let (c, ml) = (ctx(5), ml.clone());
        tokio::spawn(async move {
            let h = leak_rx
                .await
                .map_err(|_| AgentError::Protocol("trainer-a produced nothing to copy".into()))?;
            run_trainer(&c, ml, task, 0, TrainerBehaviour::Copy(h), None).await
        })
    };
    reveal_validation(&creator, task, 0, s.validation_jsonl.clone()).await?;
    let join = |r: Result<
        Result<crate::arena::TrainerReport, AgentError>,
        tokio::task::JoinError,
    >|
     -> Result<(), AgentError> {
        r.map_err(|e| AgentError::Protocol(e.to_string()))?.map(|_| ())
    };
    for t in trainers {
        join(t.await)?;
    }
    join(copier.await)?;
    join(corrupt.await)?;
    let mut reasons = Vec::new();
    for v in validators {
        let rep = v.await.map_err(|e| AgentError::Protocol(e.to_string()))??;
        reasons.extend(rep.scores.into_iter().filter_map(|(i, _, r)| r.map(|r| (i, r))));
    }
    creator.wait_phase(task, "ended", 0).await?;
    let result = loop {
        let lb = creator.client.get(&format!("/v1/arena/tasks/{task}/leaderboard")).await?;
        if !lb["result"].is_null() {
            break lb["result"].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Delegators of the winner claim their share, once their own node has the settlement
    // (on a multi-node network it may be a block behind the creator's).
    loop {
        let lb = d.client.get(&format!("/v1/arena/tasks/{task}/leaderboard")).await?;
        if !lb["result"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let claim = d
        .client
        .send_and_wait(
            &d.key,
            TxKind::Claim { from: ClaimFrom::Pool { operator: s.keys[1].address() } },
        )
        .await?;
    let delegator_claim = claim["receipt"]["events"]
        .as_array()
        .and_then(|e| e.iter().find(|x| x["event"] == "claimed"))
        .map(|x| amount(&x["gross"]))
        .unwrap_or_default();

    let name_of = |addr: &str| -> String {
        s.keys
            .iter()
            .position(|k| k.address().to_string() == addr)
            .map(|i| NAMES[i].to_owned())
            .unwrap_or_else(|| addr.to_owned())
    };
    let mut lines = Vec::new();
    let ranking = result["ranking"].as_array().cloned().unwrap_or_default();
    for r in &ranking {
        let score = r["score"].as_u64().unwrap_or(u64::MAX);
        let idx = r["submission"].as_u64().unwrap_or(0) as u32;
        let mut note = String::new();
        if !r["duplicate_of"].is_null() {
            note = format!("duplicate of submission {} (earliest commit earns)", r["duplicate_of"]);
        } else if score == u64::MAX {
            note = reasons
                .iter()
                .find(|(i, _)| *i == idx)
                .map(|(_, r)| r.clone())
                .unwrap_or_else(|| "invalid".into());
        }
        lines.push(Line {
            name: name_of(r["node"].as_str().unwrap_or("")),
            role: "trainer",
            metric: if score == u64::MAX {
                "WORST".into()
            } else {
                format!("{:.4} BPB", score as f64 / 1e6)
            },
            reward: amount(&r["reward"]),
            slashed: Amount::ZERO,
            note,
        });
    }
    for v in result["validators"].as_array().cloned().unwrap_or_default() {
        let q = v["quality"].as_u64().unwrap_or(0);
        lines.push(Line {
            name: name_of(v["validator"].as_str().unwrap_or("")),
            role: "validator",
            metric: format!("quality {:.1}%", q as f64 / 10_000.0),
            reward: amount(&v["reward"]),
            slashed: amount(&v["slashed"]),
            note: format!("revealed {}/{}", v["revealed"], v["assigned"]),
        });
    }
    let get = |n: &str| lines.iter().find(|l| l.name == n).cloned();
    let best_honest =
        lines.iter().find(|l| l.role == "trainer").map(|l| l.name.clone()).unwrap_or_default();
    let lazy = get("lazy").map(|l| l.reward).unwrap_or_default();
    let honest_min = [get("validator-1"), get("validator-2")]
        .iter()
        .flatten()
        .map(|l| l.reward)
        .min()
        .unwrap_or_default();
    let checks = vec![
        (
            format!("the best honest trainer ranks first (trainer-a, got {best_honest})"),
            best_honest == "trainer-a",
        ),
        (
            "the copier earns nothing".to_owned(),
            get("copier").is_some_and(|l| l.reward.is_zero() && l.note.contains("duplicate")),
        ),
        (
            "the corrupt file scores worst, with a reason".to_owned(),
            get("corrupt")
                .is_some_and(|l| l.metric == "WORST" && l.reward.is_zero() && !l.note.is_empty()),
        ),
        ("the lazy validator earns less than the honest ones".to_owned(), lazy < honest_min),
        (
            "the validator that never reveals is slashed".to_owned(),
            get("silent").is_some_and(|l| !l.slashed.is_zero() && l.reward.is_zero()),
        ),
        ("delegators of the winner receive their share".to_owned(), !delegator_claim.is_zero()),
    ];
    Ok(ArenaOutcome { task, lines, delegator_claim, checks, result })
}

/// Formats the outcome as the devnet prints it.
pub fn print_outcome(o: &ArenaOutcome) -> String {
    let mut out = format!("\nAI Arena task {} settled\n", o.task);
    out += &format!(
        "  {:<12} {:<9} {:>16} {:>26} {:>12}  {}\n",
        "participant", "role", "score/quality", "reward", "slashed", "note"
    );
    for l in &o.lines {
        out += &format!(
            "  {:<12} {:<9} {:>16} {:>26} {:>12}  {}\n",
            l.name,
            l.role,
            l.metric,
            l.reward.to_string(),
            l.slashed.to_string(),
            l.note
        );
    }
    out += &format!("  delegator claimed {} from trainer-a's pool\n", o.delegator_claim);
    for (c, ok) in &o.checks {
        out += &format!("  [{}] {c}\n", if *ok { "ok" } else { "FAILED" });
    }
    out
}

/// Writes the files of a throwaway base model for stand-in ML (tests).
pub fn write_placeholder(dir: &Path, files: &[&str]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for f in files {
        std::fs::write(dir.join(f), format!("placeholder {f}"))?;
    }
    Ok(())
}
