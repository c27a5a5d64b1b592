//! FL Alliance member agent: local data never leaves the member. When drawn proposer it trains
//! from the current global model and uploads its update; when drawn voter it fetches every
//! update, aggregates them deterministically with the task's rule, evaluates the result against
//! the current model on its own data, and commits then reveals its vote.

use crate::{arena::AgentCtx, AgentError};
use flock_ledger::{
    alliance::{vote_commitment, Aggregation, AllianceTaskSpec, Vote},
    TxKind,
};
use flock_ml::{
    cpu,
    mlp::{evaluate_mlp, train_mlp, Mlp, MlpTask, TabularData},
    train_device, TrainConfig,
};
use flock_ml_core::{
    aggregate::{aggregate_updates, AggregationRule},
    artifact::ArtifactLimits,
    Update,
};
use flock_primitives::{Address, Hash, Ppm};
use serde_json::Value;

/// The model every member of a task trains: an MLP regressor over the task's features.
#[derive(Debug, Clone)]
pub struct FlModel {
    /// Input features.
    pub inputs: usize,
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
}

impl FlModel {
    /// A fresh model (the initial global model when `seed` is the task's).
    pub fn init(&self, seed: u64) -> Result<Update, AgentError> {
        Mlp::new(self.inputs, &self.hidden, MlpTask::Regression { outputs: 1 }, seed, &cpu())
            .to_update()
            .map_err(|e| AgentError::Ml(e.to_string()))
    }

    fn load(&self, u: &Update, train: bool) -> Result<Mlp, AgentError> {
        let dev = if train { train_device() } else { cpu() };
        Mlp::new(self.inputs, &self.hidden, MlpTask::Regression { outputs: 1 }, 0, &dev)
            .load_update(u)
            .map_err(|e| AgentError::Ml(e.to_string()))
    }

    /// RMSE of `u` on `data`.
    pub fn rmse(&self, u: &Update, data: &TabularData) -> Result<f64, AgentError> {
        let m = self.load(u, false)?;
        let e = evaluate_mlp(&m, data, MlpTask::Regression { outputs: 1 })
            .map_err(|e| AgentError::Ml(e.to_string()))?;
        Ok(e.rmse.unwrap_or(f64::INFINITY))
    }

    /// Trains `u` for `epochs` passes over `data`.
    pub fn train(
        &self,
        u: &Update,
        data: &TabularData,
        epochs: usize,
        seed: u64,
    ) -> Result<Update, AgentError> {
        let m = self.load(u, true)?;
        let cfg = TrainConfig {
            steps: epochs * data.rows().div_ceil(32),
            batch_size: 32,
            lr: 3e-3,
            warmup_steps: 0,
            min_lr_ratio: 1.0,
            weight_decay: 0.0,
            max_grad_norm: Some(5.0),
            seed,
            quiet: true,
        };
        let (m, _) = train_mlp(m, data, MlpTask::Regression { outputs: 1 }, &cfg)
            .map_err(|e| AgentError::Ml(e.to_string()))?;
        m.to_update().map_err(|e| AgentError::Ml(e.to_string()))
    }
}

/// What a member does when it proposes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MemberBehaviour {
    /// Trains honestly.
    Honest,
    /// Sends large random values instead of a trained update (a poisoning attack).
    Poison,
}

/// A member's view of one round.
#[derive(Debug, Clone)]
pub struct MemberRound {
    /// Round.
    pub round: u32,
    /// Its role.
    pub role: &'static str,
    /// As voter: RMSE of the current model and of the aggregate on its local data.
    pub rmse: Option<(f64, f64)>,
    /// As voter: the aggregate's hash.
    pub aggregate: Option<Hash>,
}

fn rule_of(a: Aggregation, n: usize) -> AggregationRule {
    match a {
        Aggregation::Fedavg => AggregationRule::FedAvg,
        Aggregation::Median => AggregationRule::Median,
        // A rule the round's proposals cannot support falls back to the median, the same way
        // on every honest voter.
        Aggregation::TrimmedMean { trim } if 2 * (trim as usize) < n => {
            AggregationRule::TrimmedMean { trim: trim as usize }
        }
        Aggregation::MultiKrum { f, m } if n >= 2 * (f as usize) + 3 && (m as usize) <= n => {
            AggregationRule::MultiKrum { f: f as usize, m: m as usize }
        }
        _ => AggregationRule::Median,
    }
}

async fn round_view(ctx: &AgentCtx, task: u64, round: u32) -> Result<Value, AgentError> {
    Ok(ctx.client.get(&format!("/v1/alliance/tasks/{task}/rounds/{round}")).await?)
}

async fn wait_alliance(
    ctx: &AgentCtx,
    task: u64,
    round: u32,
    phase: &str,
) -> Result<Value, AgentError> {
    const ORDER: [&str; 5] = ["join", "propose", "vote_commit", "vote_reveal", "ended"];
    let want = ORDER.iter().position(|p| *p == phase).unwrap_or(0);
    loop {
        let v = ctx.client.get(&format!("/v1/alliance/tasks/{task}")).await?;
        let p = v["now"]["phase"].as_str().unwrap_or("");
        let r = v["now"]["round"].as_u64().map(|r| r as u32);
        let pos = ORDER.iter().position(|x| *x == p).unwrap_or(0);
        if p == "ended" || r.is_some_and(|r| r > round) || (r == Some(round) && pos >= want) {
            return Ok(v);
        }
        tokio::time::sleep(ctx.poll).await;
    }
}

/// Runs a member through every round of `task` on its local `train`/`val` data.
#[allow(clippy::too_many_arguments)]
pub async fn run_member(
    ctx: &AgentCtx,
    task: u64,
    model: &FlModel,
    train: &TabularData,
    val: &TabularData,
    behaviour: MemberBehaviour,
    local_epochs: usize,
) -> Result<Vec<MemberRound>, AgentError> {
    let view = ctx.client.get(&format!("/v1/alliance/tasks/{task}")).await?;
    let spec: AllianceTaskSpec = serde_json::from_value(view["spec"].clone())
        .map_err(|e| AgentError::Protocol(e.to_string()))?;
    let layout = model.init(0)?.layout().clone();
    let limits = ArtifactLimits::for_params(layout.numel() as u64);
    let mut out = Vec::new();
    for round in 0..spec.rounds {
        // A member that falls behind (a slow machine, a phase too short for its work) misses
        // the round — and is slashed for it by the ledger — but stays in the task.
        let step = member_round(
            ctx,
            task,
            round,
            model,
            train,
            val,
            behaviour,
            local_epochs,
            &layout,
            &limits,
            &spec,
        )
        .await;
        match step {
            Ok(Some(r)) => out.push(r),
            Ok(None) => break,
            Err(AgentError::Client(flock_node::ClientError::Api { status, code, message }))
                if status == 422 || status == 409 =>
            {
                tracing::warn!(agent = %ctx.name, task, round, %code, %message, "missed the round");
                out.push(MemberRound { round, role: "missed", rmse: None, aggregate: None });
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// One round of a member; `Ok(None)` when the task stopped running.
#[allow(clippy::too_many_arguments)]
async fn member_round(
    ctx: &AgentCtx,
    task: u64,
    round: u32,
    model: &FlModel,
    train: &TabularData,
    val: &TabularData,
    behaviour: MemberBehaviour,
    local_epochs: usize,
    layout: &std::sync::Arc<flock_ml_core::Layout>,
    limits: &ArtifactLimits,
    spec: &AllianceTaskSpec,
) -> Result<Option<MemberRound>, AgentError> {
    let me: Address = ctx.key.address();
    let mut v = wait_alliance(ctx, task, round, "propose").await?;
    // The phase is reported for the next block; the task starts running in that block.
    while v["status"] == "joining" {
        tokio::time::sleep(ctx.poll).await;
        v = ctx.client.get(&format!("/v1/alliance/tasks/{task}")).await?;
    }
    if v["status"] != "running" {
        return Ok(None);
    }
    // The draw is made at the round's first block.
    let draw = loop {
        let r = round_view(ctx, task, round).await?;
        if !r["draw"].is_null() {
            break r["draw"].clone();
        }
        tokio::time::sleep(ctx.poll).await;
    };
    let role = draw["members"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m[0] == me.to_string()))
        .and_then(|m| m[2].as_str())
        .unwrap_or("none")
        .to_owned();
    let global_hash: Hash = v["global_model"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| AgentError::Protocol("no global model".into()))?;
    let global =
        Update::from_safetensors(&ctx.artifacts.download(&global_hash).await?, layout, limits)
            .map_err(|e| AgentError::Corrupt(format!("global model: {e}")))?;
    match role.as_str() {
        "proposer" => {
            let update = match behaviour {
                MemberBehaviour::Honest => {
                    model.train(&global, train, local_epochs, u64::from(round) ^ 0xfeed)?
                }
                MemberBehaviour::Poison => {
                    let mut x = u64::from(round).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    let vals: Vec<f32> = (0..layout.numel())
                        .map(|_| {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 200.0
                        })
                        .collect();
                    Update::new(layout.clone(), vals).map_err(|e| AgentError::Ml(e.to_string()))?
                }
            };
            let h = ctx.artifacts.upload(update.to_safetensors_default()).await?;
            ctx.client.send_and_wait(&ctx.key, TxKind::AlliancePropose { task, update: h }).await?;
            Ok(Some(MemberRound { round, role: "proposer", rmse: None, aggregate: None }))
        }
        "voter" => {
            wait_alliance(ctx, task, round, "vote_commit").await?;
            let r = round_view(ctx, task, round).await?;
            let mut updates = Vec::new();
            let mut index = Vec::new();
            for p in r["proposals"].as_array().cloned().unwrap_or_default() {
                let Some(h) = p["update"].as_str().and_then(|s| s.parse::<Hash>().ok()) else {
                    continue;
                };
                // An update of the wrong shape or with non-finite values is left out, the
                // same way by every honest voter.
                match ctx
                    .artifacts
                    .download(&h)
                    .await
                    .map(|b| Update::from_safetensors(&b, layout, limits))
                {
                    Ok(Ok(u)) => {
                        updates.push(u);
                        index.push(p["index"].as_u64().unwrap_or(0) as u32);
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(agent = %ctx.name, round, %h, error = %e, "update rejected")
                    }
                    Err(e) => {
                        tracing::warn!(agent = %ctx.name, round, %h, error = %e, "update unavailable")
                    }
                }
            }
            let (vote, rmse, agg_hash) = if updates.is_empty() {
                (
                    Vote { aggregate: Hash::ZERO, accept: false, score: 0, penalties: vec![] },
                    None,
                    None,
                )
            } else {
                let rule = rule_of(spec.aggregation, updates.len());
                let (agg, report) = aggregate_updates(rule, &updates, None)
                    .map_err(|e| AgentError::Ml(e.to_string()))?;
                let bytes = agg.to_safetensors_default();
                let h = ctx.artifacts.upload(bytes).await?;
                let old = model.rmse(&global, val)?;
                let new = model.rmse(&agg, val)?;
                let mut penalties: Vec<(u32, Ppm)> =
                    report.dropped.iter().map(|i| (index[*i], Ppm::ONE)).collect();
                if let (Some(tr), AggregationRule::TrimmedMean { trim }) =
                    (&report.trim_report, rule)
                {
                    // Share of coordinates trimmed beyond what an honest update expects (2k/n).
                    let expected = (2 * trim) as f64 / updates.len() as f64;
                    for (i, t) in tr.trimmed.iter().enumerate() {
                        let f = *t as f64 / tr.coordinates.max(1) as f64;
                        let excess = ((f - expected) / (1.0 - expected)).clamp(0.0, 1.0);
                        if excess > 0.0 {
                            penalties.push((index[i], Ppm::saturating((excess * 1e6) as u32)));
                        }
                    }
                }
                penalties.sort();
                // Accept unless the aggregate is clearly worse on local data (5% slack: near
                // convergence a good aggregate moves local RMSE by noise).
                let accept = new.is_finite() && new <= old * 1.05;
                (
                    Vote {
                        aggregate: h,
                        accept,
                        score: (new * 1e6).min(u64::MAX as f64) as u64,
                        penalties,
                    },
                    Some((old, new)),
                    Some(h),
                )
            };
            let salt = Hash::of_parts(
                "flock fl vote salt",
                &[&ctx.key.secret_bytes(), &task.to_le_bytes(), &round.to_le_bytes()],
            );
            ctx.client
                .send_and_wait(
                    &ctx.key,
                    TxKind::AllianceVoteCommit {
                        task,
                        commitment: vote_commitment(task, round, &me, &vote, &salt),
                    },
                )
                .await?;
            wait_alliance(ctx, task, round, "vote_reveal").await?;
            ctx.client
                .send_and_wait(&ctx.key, TxKind::AllianceVoteReveal { task, vote, salt })
                .await?;
            Ok(Some(MemberRound { round, role: "voter", rmse, aggregate: agg_hash }))
        }
        _ => Ok(Some(MemberRound { round, role: "none", rmse: None, aggregate: None })),
    }
}
