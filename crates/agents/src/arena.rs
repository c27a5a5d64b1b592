//! AI Arena agents: creator, trainer, validator.

use crate::{fetch::Artifacts, AgentError};
use flock_ledger::{
    arena::{score_commitment, submission_commitment, validation_commitment, ArenaTaskSpec, Score},
    TxKind,
};
use flock_node::Client;
use flock_primitives::{Address, Hash, Keypair};
use serde_json::Value;
use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

/// How a trainer trains.
#[derive(Debug, Clone)]
pub struct TrainPlan {
    /// Fraction of the training set used, in percent (1-100).
    pub data_percent: u32,
    /// Optimizer steps.
    pub steps: usize,
    /// Seed of the run.
    pub seed: u64,
}

/// The ML work agents need; implemented with `flock-ml` in `flockd`, and by fast stand-ins in
/// tests.
pub trait ArenaMl: Send + Sync {
    /// Fine-tunes the base model in `base_dir` on `train_jsonl` and writes the submission files
    /// into `out_dir`; returns the bundle kind and the file names.
    fn train(
        &self,
        base_dir: &Path,
        train_jsonl: &[u8],
        plan: &TrainPlan,
        out_dir: &Path,
    ) -> Result<(String, Vec<String>), AgentError>;
    /// Scores the submission in `sub_dir` against the base model in `base_dir` on the
    /// validation set. Never fails: an invalid submission scores [`Score::WORST`] with a reason.
    fn score(
        &self,
        base_dir: &Path,
        sub_dir: &Path,
        val_jsonl: &[u8],
        spec: &ArenaTaskSpec,
    ) -> (Score, Option<String>);
}

/// What a trainer does (devnet scenarios include dishonest ones).
#[derive(Debug, Clone)]
pub enum TrainerBehaviour {
    /// Trains and submits its own model.
    Honest(TrainPlan),
    /// Submits a copy of a model it obtained elsewhere (a bundle hash), committing later.
    Copy(Hash),
    /// Uploads a corrupt file as its model.
    Corrupt,
}

/// What a validator does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidatorBehaviour {
    /// Evaluates every assigned submission.
    Honest,
    /// Reports random scores without evaluating (seeded).
    Lazy(u64),
    /// Commits scores and never reveals them.
    NoReveal,
}

/// What an agent needs to act.
#[derive(Clone)]
pub struct AgentCtx {
    /// The node API.
    pub client: Client,
    /// Artifact transfers.
    pub artifacts: Artifacts,
    /// The agent's key.
    pub key: Keypair,
    /// Working directory (downloads, models).
    pub work_dir: PathBuf,
    /// Poll interval.
    pub poll: Duration,
    /// A label for logs.
    pub name: String,
}

impl std::fmt::Debug for AgentCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentCtx")
            .field("name", &self.name)
            .field("address", &self.key.address())
            .finish()
    }
}

impl AgentCtx {
    /// A context for the node at `url`.
    pub fn new(url: &str, key: Keypair, work_dir: &Path, name: &str) -> Self {
        Self {
            client: Client::new(url),
            artifacts: Artifacts::new(url, &work_dir.join("cache")),
            key,
            work_dir: work_dir.to_owned(),
            poll: Duration::from_millis(100),
            name: name.to_owned(),
        }
    }

    async fn task(&self, task: u64) -> Result<Value, AgentError> {
        Ok(self.client.get(&format!("/v1/arena/tasks/{task}")).await?)
    }

    /// Waits until the task's next block is in `phase` (or later); returns the task view.
    pub async fn wait_phase(
        &self,
        task: u64,
        phase: &str,
        round: u32,
    ) -> Result<Value, AgentError> {
        const ORDER: [&str; 5] = ["train", "reveal", "validate_commit", "validate_reveal", "ended"];
        let want = ORDER.iter().position(|p| *p == phase).unwrap_or(0);
        let started = std::time::Instant::now();
        loop {
            // A task that does not exist yet may be about to be created: wait a while for it.
            let v = match self.task(task).await {
                Ok(v) => v,
                Err(AgentError::Client(flock_node::ClientError::Api { status: 404, .. }))
                    if started.elapsed() < Duration::from_secs(300) =>
                {
                    tokio::time::sleep(self.poll).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let now = &v["now"];
            let r = now["round"].as_u64().map(|r| r as u32);
            let p = now["phase"].as_str().unwrap_or("");
            let pos = ORDER.iter().position(|x| *x == p);
            let past_round = r.is_some_and(|r| r > round) || p == "ended";
            if past_round || (r == Some(round) && pos.is_some_and(|x| x >= want)) {
                return Ok(v);
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    async fn send(&self, kind: TxKind) -> Result<Value, AgentError> {
        Ok(self.client.send_and_wait(&self.key, kind).await?)
    }
}

fn salt(key: &Keypair, task: u64, round: u32, what: &[u8]) -> Hash {
    // Derived from the secret key, so it is unguessable but the agent can recompute it.
    Hash::of_parts(
        "flock agent salt v1",
        &[&key.secret_bytes(), &task.to_le_bytes(), &round.to_le_bytes(), what],
    )
}

/// Opens a task: uploads the base model bundle and training set, commits to the hidden
/// validation sets (one per round, revealed by [`reveal_validation`]); returns the task id.
pub async fn create_task(
    ctx: &AgentCtx,
    base_model_dir: &Path,
    base_files: &[&str],
    training_jsonl: Vec<u8>,
    validation_sets: &[Vec<u8>],
    mut spec: ArenaTaskSpec,
) -> Result<u64, AgentError> {
    spec.base_model = ctx.artifacts.upload_bundle("hf-model", base_model_dir, base_files).await?;
    spec.training_set = ctx.artifacts.upload(training_jsonl).await?;
    spec.validation_commitments = validation_sets
        .iter()
        .enumerate()
        .map(|(r, set)| {
            let r = r as u32;
            validation_commitment(
                &ctx.key.address(),
                r,
                &Hash::of(set),
                &salt(&ctx.key, 0, r, b"validation"),
            )
        })
        .collect();
    let v = ctx.send(TxKind::ArenaCreate { spec: Box::new(spec) }).await?;
    let events = v["receipt"]["events"].as_array().cloned().unwrap_or_default();
    events
        .iter()
        .find(|e| e["event"] == "arena_task_created")
        .and_then(|e| e["task"].as_u64())
        .ok_or_else(|| AgentError::Protocol(format!("task creation left no event: {v}")))
}

/// The creator's reveal of round `round`'s validation set (uploaded now, so validators can
/// fetch it).
pub async fn reveal_validation(
    ctx: &AgentCtx,
    task: u64,
    round: u32,
    set: Vec<u8>,
) -> Result<(), AgentError> {
    ctx.wait_phase(task, "reveal", round).await?;
    let set_hash = ctx.artifacts.upload(set).await?;
    ctx.send(TxKind::ArenaRevealValidation {
        task,
        set_hash,
        salt: salt(&ctx.key, 0, round, b"validation"),
    })
    .await?;
    Ok(())
}

/// What a trainer did in a round.
#[derive(Debug, Clone)]
pub struct TrainerReport {
    /// The submitted bundle.
    pub artifact: Hash,
    /// Wall time of training (0 when none).
    pub train_secs: f64,
}

/// Runs a trainer for `round`: waits for the train phase, produces and uploads its submission,
/// commits, then reveals in the reveal phase.
pub async fn run_trainer(
    ctx: &AgentCtx,
    ml: Arc<dyn ArenaMl>,
    task: u64,
    round: u32,
    behaviour: TrainerBehaviour,
    on_commit: Option<tokio::sync::oneshot::Sender<Hash>>,
) -> Result<TrainerReport, AgentError> {
    let view = ctx.wait_phase(task, "train", round).await?;
    let spec: ArenaTaskSpec = serde_json::from_value(view["spec"].clone())
        .map_err(|e| AgentError::Protocol(format!("task {task} spec: {e}")))?;
    let dir = ctx.work_dir.join(format!("task-{task}-round-{round}"));
    let started = std::time::Instant::now();
    let artifact = match &behaviour {
        TrainerBehaviour::Honest(plan) => {
            let base_dir = ctx.work_dir.join(format!("base-{}", spec.base_model.short()));
            ctx.artifacts.fetch_bundle(&spec.base_model, &base_dir).await?;
            let train = ctx.artifacts.download(&spec.training_set).await?;
            let out = dir.join("submission");
            std::fs::create_dir_all(&out)?;
            let (ml, plan2, out2) = (ml.clone(), plan.clone(), out.clone());
            let (kind, files) =
                tokio::task::spawn_blocking(move || ml.train(&base_dir, &train, &plan2, &out2))
                    .await
                    .map_err(|e| AgentError::Ml(e.to_string()))??;
            let names: Vec<&str> = files.iter().map(String::as_str).collect();
            ctx.artifacts.upload_bundle(&kind, &out, &names).await?
        }
        TrainerBehaviour::Copy(h) => *h,
        TrainerBehaviour::Corrupt => {
            // Not a safetensors file at all: validators must score it WORST, with a reason.
            let garbage: Vec<u8> =
                (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("adapter_model.safetensors"), garbage)?;
            std::fs::write(dir.join("adapter_config.json"), b"{\"peft_type\":\"LORA\"}")?;
            ctx.artifacts
                .upload_bundle(
                    "peft-adapter",
                    &dir,
                    &["adapter_config.json", "adapter_model.safetensors"],
                )
                .await?
        }
    };
    let train_secs = started.elapsed().as_secs_f64();
    let s = salt(&ctx.key, task, round, b"submission");
    let me = ctx.key.address();
    let still_train = ctx.task(task).await?["now"]["phase"] == "train";
    if !still_train {
        return Err(AgentError::Protocol(format!(
            "{}: training took past the train phase of round {round}",
            ctx.name
        )));
    }
    ctx.send(TxKind::ArenaCommit {
        task,
        commitment: submission_commitment(task, round, &me, &artifact, &s),
    })
    .await?;
    tracing::info!(agent = %ctx.name, task, round, %artifact, "committed submission");
    if let Some(tx) = on_commit {
        let _ = tx.send(artifact);
    }
    ctx.wait_phase(task, "reveal", round).await?;
    ctx.send(TxKind::ArenaReveal { task, artifact, salt: s }).await?;
    Ok(TrainerReport { artifact, train_secs })
}

/// What a validator did in a round.
#[derive(Debug, Clone, Default)]
pub struct ValidatorReport {
    /// `(submission, score, reason when WORST)`.
    pub scores: Vec<(u32, Score, Option<String>)>,
    /// Whether it revealed.
    pub revealed: bool,
}

/// Runs a validator for `round`: scores its assigned submissions on the revealed validation
/// set with the base model's tokenizer, commits, then reveals (unless told not to).
pub async fn run_validator(
    ctx: &AgentCtx,
    ml: Arc<dyn ArenaMl>,
    task: u64,
    round: u32,
    behaviour: ValidatorBehaviour,
) -> Result<ValidatorReport, AgentError> {
    let view = ctx.wait_phase(task, "validate_commit", round).await?;
    let spec: ArenaTaskSpec = serde_json::from_value(view["spec"].clone())
        .map_err(|e| AgentError::Protocol(format!("task {task} spec: {e}")))?;
    let me: Address = ctx.key.address();
    // The draw happens at the phase's first block; wait until it is visible.
    let asg = loop {
        let a = ctx
            .client
            .get(&format!("/v1/arena/tasks/{task}/assignments?validator={me}&round={round}"))
            .await?;
        if !a["draw"].is_null() {
            break a;
        }
        tokio::time::sleep(ctx.poll).await;
    };
    let mut report = ValidatorReport::default();
    let list = asg["assignments"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return Ok(report);
    }
    let val_hash: Option<Hash> = asg["validation_set"].as_str().and_then(|s| s.parse().ok());
    let base_dir = ctx.work_dir.join(format!("base-{}", spec.base_model.short()));
    let mut rng = match behaviour {
        ValidatorBehaviour::Lazy(seed) => Some(
            <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed ^ u64::from(round)),
        ),
        _ => None,
    };
    if rng.is_none() {
        ctx.artifacts.fetch_bundle(&spec.base_model, &base_dir).await?;
    }
    for a in &list {
        let i = a["submission"].as_u64().unwrap_or(0) as u32;
        let artifact: Option<Hash> = a["artifact"].as_str().and_then(|s| s.parse().ok());
        let (score, reason) = if let Some(r) = rng.as_mut() {
            (Score(rand::Rng::gen_range(r, 200_000..8_000_000)), None)
        } else {
            match (artifact, val_hash) {
                (_, None) => {
                    (Score::WORST, Some("the creator did not reveal the validation set".to_owned()))
                }
                (None, _) => (Score::WORST, Some("submission has no artifact".to_owned())),
                (Some(h), Some(vh)) => {
                    let sub_dir = ctx.work_dir.join(format!("sub-{}", h.short()));
                    match ctx.artifacts.fetch_bundle(&h, &sub_dir).await {
                        Err(e) => (Score::WORST, Some(format!("cannot fetch submission: {e}"))),
                        Ok(_) => {
                            let val = ctx.artifacts.download(&vh).await?;
                            let (ml, b, s, sp) =
                                (ml.clone(), base_dir.clone(), sub_dir.clone(), spec.clone());
                            tokio::task::spawn_blocking(move || ml.score(&b, &s, &val, &sp))
                                .await
                                .map_err(|e| AgentError::Ml(e.to_string()))?
                        }
                    }
                }
            }
        };
        if let Some(r) = &reason {
            tracing::warn!(agent = %ctx.name, task, round, submission = i, reason = %r, "submission scored WORST");
        }
        let s = salt(&ctx.key, task, round, &i.to_le_bytes());
        ctx.send(TxKind::ArenaScoreCommit {
            task,
            submission: i,
            commitment: score_commitment(task, round, i, &me, score, &s),
        })
        .await?;
        report.scores.push((i, score, reason));
    }
    if behaviour == ValidatorBehaviour::NoReveal {
        return Ok(report);
    }
    ctx.wait_phase(task, "validate_reveal", round).await?;
    for (i, score, _) in &report.scores {
        let s = salt(&ctx.key, task, round, &i.to_le_bytes());
        ctx.send(TxKind::ArenaScoreReveal { task, submission: *i, score: *score, salt: s }).await?;
    }
    report.revealed = true;
    Ok(report)
}
