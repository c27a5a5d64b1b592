//! FL Alliance member agent: local data never leaves the member. When drawn proposer it trains
//! from the current global model and uploads its update; when drawn voter it fetches every
//! update, aggregates them deterministically with the task's rule, evaluates the result against
//! the current model on its own data, and commits then reveals its vote.

use crate::{arena::AgentCtx, AgentError};
use flock_ledger::{
    alliance::{vote_commitment, Aggregation, AllianceTaskSpec, Privacy, Vote},
    TxKind,
};
use flock_ml::{
    cpu,
    mlp::{evaluate_mlp, train_mlp, Mlp, MlpTask, TabularData},
    train_device, TrainConfig,
};
use flock_ml_core::{
    aggregate::{
        add_gaussian_noise, aggregate_updates, clip_l2, AggregationRule, GaussianMechanism,
    },
    artifact::ArtifactLimits,
    secagg, Layout, Update,
};
use flock_primitives::{Address, Hash, MaskPublicKey, MaskSecret, Ppm};
use serde_json::Value;
use std::{collections::BTreeMap, sync::Arc};

/// The model every member of a task trains: an MLP over the task's features.
#[derive(Debug, Clone)]
pub struct FlModel {
    /// Input features.
    pub inputs: usize,
    /// Hidden layer widths.
    pub hidden: Vec<usize>,
    /// Regression or classification.
    pub task: MlpTask,
    /// Adam learning rate of local training.
    pub lr: f64,
    /// Largest global gradient norm in local training (`None`: no clipping).
    pub max_grad_norm: Option<f64>,
}

impl FlModel {
    /// A one-output regressor (the glucose alliance's model).
    pub fn regressor(inputs: usize, hidden: Vec<usize>) -> Self {
        Self {
            inputs,
            hidden,
            task: MlpTask::Regression { outputs: 1 },
            lr: 3e-3,
            max_grad_norm: Some(5.0),
        }
    }

    /// The model whose parameters `layout` holds (an MLP's `layers.{i}.weight` `[out, in]` and
    /// `layers.{i}.bias`), as a regressor or, with `classes`, a classifier.
    pub fn from_layout(layout: &Layout, classes: Option<usize>) -> Result<Self, AgentError> {
        let mut dims = Vec::new();
        for i in 0.. {
            let Some(w) = layout.params().iter().find(|p| p.name == format!("layers.{i}.weight"))
            else {
                break;
            };
            match w.shape.as_slice() {
                [out, inp] => dims.push((*inp, *out)),
                s => {
                    return Err(AgentError::Protocol(format!(
                        "layers.{i}.weight has shape {s:?}, not [out, in]"
                    )))
                }
            }
        }
        let (Some(first), Some(last)) = (dims.first(), dims.last()) else {
            return Err(AgentError::Protocol(
                "the task's model is not an MLP (no layers.0.weight)".into(),
            ));
        };
        let hidden: Vec<usize> = dims[..dims.len() - 1].iter().map(|d| d.1).collect();
        let mut m = Self::regressor(first.0, hidden);
        match classes {
            Some(c) if c != last.1 => {
                return Err(AgentError::Protocol(format!(
                    "the task's model has {} outputs, not {c} classes",
                    last.1
                )))
            }
            Some(c) => m.task = MlpTask::Classification { classes: c },
            None => m.task = MlpTask::Regression { outputs: last.1 },
        }
        Ok(m)
    }

    /// A fresh model (the initial global model when `seed` is the task's).
    pub fn init(&self, seed: u64) -> Result<Update, AgentError> {
        Mlp::new(self.inputs, &self.hidden, self.task, seed, &cpu())
            .to_update()
            .map_err(|e| AgentError::Ml(e.to_string()))
    }

    fn load(&self, u: &Update, train: bool) -> Result<Mlp, AgentError> {
        let dev = if train { train_device() } else { cpu() };
        Mlp::new(self.inputs, &self.hidden, self.task, 0, &dev)
            .load_update(u)
            .map_err(|e| AgentError::Ml(e.to_string()))
    }

    /// How wrong `u` is on `data`, lower is better: RMSE for a regressor, mean cross-entropy
    /// for a classifier (what voters compare).
    pub fn error(&self, u: &Update, data: &TabularData) -> Result<f64, AgentError> {
        let m = self.load(u, false)?;
        let e = evaluate_mlp(&m, data, self.task).map_err(|e| AgentError::Ml(e.to_string()))?;
        Ok(match self.task {
            MlpTask::Regression { .. } => e.rmse.unwrap_or(f64::INFINITY),
            MlpTask::Classification { .. } => e.loss,
        })
    }

    /// RMSE of `u` on `data` (regressors; [`FlModel::error`] in general).
    pub fn rmse(&self, u: &Update, data: &TabularData) -> Result<f64, AgentError> {
        self.error(u, data)
    }

    /// Accuracy of a classifier `u` on `data`.
    pub fn accuracy(&self, u: &Update, data: &TabularData) -> Result<f64, AgentError> {
        let m = self.load(u, false)?;
        let e = evaluate_mlp(&m, data, self.task).map_err(|e| AgentError::Ml(e.to_string()))?;
        Ok(e.accuracy.unwrap_or(0.0))
    }

    /// Trains `u` for `epochs` passes over `data` (batches of 32, a fresh optimizer).
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
            lr: self.lr,
            warmup_steps: 0,
            min_lr_ratio: 1.0,
            weight_decay: 0.0,
            max_grad_norm: self.max_grad_norm,
            seed,
            quiet: true,
        };
        let (m, _) =
            train_mlp(m, data, self.task, &cfg).map_err(|e| AgentError::Ml(e.to_string()))?;
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
    /// Trains but never posts its update (a member that crashes after the draw); with secure
    /// aggregation the survivors' reveals let the round complete without it.
    Dropout,
    /// Posts an update of another model's shape (a broken or mismatched client).
    WrongShape,
}

/// δ of the (ε, δ) guarantee reported for the differential-privacy mode.
pub const DP_DELTA: f64 = 1e-5;

/// Fixed-point bits for masked updates: deltas are quantized to 2⁻²⁰ (≈ 9.5e-7), with a range
/// of ±512 per coordinate.
pub const SECAGG_SCALE_BITS: u32 = 20;

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
    /// As proposer: the update it trained, before any masking or noise (it never leaves the
    /// member; kept for the operator's own records).
    pub local_update: Option<Arc<Update>>,
    /// As proposer: the artifact it posted (masked or noised per the task's privacy mode).
    pub sent: Option<Hash>,
    /// As proposer in a differential-privacy task: the ε of this release (at δ = [`DP_DELTA`]).
    pub epsilon: Option<f64>,
}

impl MemberRound {
    fn new(round: u32, role: &'static str) -> Self {
        Self {
            round,
            role,
            rmse: None,
            aggregate: None,
            local_update: None,
            sent: None,
            epsilon: None,
        }
    }
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
    if spec.privacy == Privacy::SecureAggregation {
        publish_mask_key(ctx, task, &view).await?;
    }
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
                out.push(MemberRound::new(round, "missed"));
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
            let local = match behaviour {
                MemberBehaviour::Honest | MemberBehaviour::Dropout => {
                    model.train(&global, train, local_epochs, u64::from(round) ^ 0xfeed)?
                }
                MemberBehaviour::Poison => poison(layout, round)?,
                MemberBehaviour::WrongShape => {
                    let half = FlModel {
                        hidden: vec![model.hidden.first().map_or(1, |h| (h / 2).max(1))],
                        ..model.clone()
                    };
                    half.init(u64::from(round))?
                }
            };
            let mut mine = MemberRound::new(round, "proposer");
            if behaviour == MemberBehaviour::Dropout {
                tracing::info!(agent = %ctx.name, task, round, "dropping out before posting");
                mine.role = "dropped";
                mine.local_update = Some(Arc::new(local));
                return Ok(Some(mine));
            }
            let bytes = match spec.privacy {
                // A poisoner ignores the task's rules and posts its raw update.
                Privacy::Plaintext | Privacy::DifferentialPrivacy { .. }
                    if matches!(
                        behaviour,
                        MemberBehaviour::Poison | MemberBehaviour::WrongShape
                    ) =>
                {
                    local.to_safetensors_default()
                }
                Privacy::Plaintext => local.to_safetensors_default(),
                Privacy::DifferentialPrivacy { clip_micro, noise_micro } => {
                    let (noised, mech) = privatize(
                        &global,
                        &local,
                        clip_micro as f64 / 1e6,
                        noise_micro as f64 / 1e6,
                        dp_seed(ctx, task, round),
                    )?;
                    tracing::info!(agent = %ctx.name, task, round, epsilon = mech.epsilon, delta = DP_DELTA, "update clipped and noised");
                    mine.epsilon = Some(mech.epsilon);
                    noised.to_safetensors_default()
                }
                Privacy::SecureAggregation => {
                    let keys = mask_keys(ctx, task).await?;
                    let pairs = pair_seeds(ctx, task, round, &draw_proposers(&draw), &keys)?;
                    let me_id = draw_id(&draw, &me)?;
                    let delta: Vec<f32> =
                        local.values().iter().zip(global.values()).map(|(a, b)| a - b).collect();
                    let words: Vec<(u32, [u8; 32])> =
                        pairs.iter().map(|(_, id, seed)| (*id, seed.0)).collect();
                    let masked = secagg::mask(&delta, me_id, &words, SECAGG_SCALE_BITS)
                        .map_err(|e| AgentError::Ml(format!("masking the update: {e}")))?;
                    secagg::encode_masked(&masked)
                }
            };
            let h = ctx.artifacts.upload(bytes).await?;
            ctx.client.send_and_wait(&ctx.key, TxKind::AlliancePropose { task, update: h }).await?;
            mine.local_update = Some(Arc::new(local));
            mine.sent = Some(h);
            if spec.privacy == Privacy::SecureAggregation {
                reveal_for_dropped(ctx, task, round, &draw).await?;
            }
            Ok(Some(mine))
        }
        "voter" => {
            wait_alliance(ctx, task, round, "vote_commit").await?;
            let r = round_view(ctx, task, round).await?;
            let mut updates = Vec::new();
            let mut index = Vec::new();
            let mut invalid: Vec<u32> = Vec::new();
            let plain = if spec.privacy == Privacy::SecureAggregation {
                vec![]
            } else {
                r["proposals"].as_array().cloned().unwrap_or_default()
            };
            for p in plain {
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
                        // Left out of the aggregate and reported, so the ledger treats it as
                        // rejected (unpaid and slashed) if the round is accepted.
                        tracing::warn!(agent = %ctx.name, round, %h, code = e.code(), error = %e, "update rejected");
                        invalid.push(p["index"].as_u64().unwrap_or(0) as u32);
                    }
                    Err(e) => {
                        tracing::warn!(agent = %ctx.name, round, %h, error = %e, "update unavailable")
                    }
                }
            }
            let secure = if spec.privacy == Privacy::SecureAggregation {
                Some(secure_sum(ctx, task, round, spec, &draw, &global, &r).await?)
            } else {
                None
            };
            let (vote, rmse, agg_hash) = if let Some(sum) = secure {
                match sum {
                    Ok(agg) => {
                        let h = ctx.artifacts.upload(agg.to_safetensors_default()).await?;
                        let old = model.rmse(&global, val)?;
                        let new = model.rmse(&agg, val)?;
                        let accept = new.is_finite() && new <= old * 1.05;
                        let score = (new * 1e6).min(u64::MAX as f64) as u64;
                        (
                            Vote { aggregate: h, accept, score, penalties: vec![] },
                            Some((old, new)),
                            Some(h),
                        )
                    }
                    Err(why) => {
                        tracing::warn!(agent = %ctx.name, task, round, %why, "the masked sum cannot be recovered");
                        (
                            Vote {
                                aggregate: Hash::ZERO,
                                accept: false,
                                score: 0,
                                penalties: vec![],
                            },
                            None,
                            None,
                        )
                    }
                }
            } else if updates.is_empty() {
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
                penalties.extend(invalid.iter().map(|i| (*i, Ppm::ONE)));
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
            let mut mine = MemberRound::new(round, "voter");
            mine.rmse = rmse;
            mine.aggregate = agg_hash;
            Ok(Some(mine))
        }
        _ => Ok(Some(MemberRound::new(round, "none"))),
    }
}

/// A poisoning update: large pseudo-random values.
fn poison(layout: &Arc<Layout>, round: u32) -> Result<Update, AgentError> {
    let mut x = u64::from(round).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let vals: Vec<f32> = (0..layout.numel())
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 200.0
        })
        .collect();
    Update::new(layout.clone(), vals).map_err(|e| AgentError::Ml(e.to_string()))
}

/// Differential privacy at the member: the update's change from the global model is clipped to
/// L2 norm `clip` and N(0, (z·clip)²) noise is added to every coordinate, before it leaves the
/// member. One release is (ε, δ)-DP with ε from the Gaussian mechanism at sensitivity `clip`.
pub fn privatize(
    global: &Update,
    local: &Update,
    clip: f64,
    z: f64,
    seed: u64,
) -> Result<(Update, GaussianMechanism), AgentError> {
    let ml = |e: flock_ml_core::AggregateError| AgentError::Ml(e.to_string());
    let mut delta: Vec<f32> =
        local.values().iter().zip(global.values()).map(|(a, b)| a - b).collect();
    clip_l2(&mut delta, clip).map_err(ml)?;
    let sigma = z * clip;
    add_gaussian_noise(&mut delta, sigma, seed).map_err(ml)?;
    let mech = GaussianMechanism::for_sigma(clip, sigma, DP_DELTA).map_err(ml)?;
    let values = global.values().iter().zip(&delta).map(|(g, d)| g + d).collect();
    let u =
        Update::new(global.layout().clone(), values).map_err(|e| AgentError::Ml(e.to_string()))?;
    Ok((u, mech))
}

/// The noise seed: secret to the member (derived from its key), so nobody can subtract it.
fn dp_seed(ctx: &AgentCtx, task: u64, round: u32) -> u64 {
    let h = Hash::of_parts(
        "flock dp noise seed v1",
        &[&ctx.key.secret_bytes(), &task.to_le_bytes(), &round.to_le_bytes()],
    );
    u64::from_le_bytes([h.0[0], h.0[1], h.0[2], h.0[3], h.0[4], h.0[5], h.0[6], h.0[7]])
}

/// The member's masking secret for `task` (derived from its key; never leaves the member).
fn mask_secret(ctx: &AgentCtx, task: u64) -> MaskSecret {
    MaskSecret::derive(&ctx.key.secret_bytes(), &task.to_le_bytes())
}

/// Publishes the member's masking key unless the ledger already has it.
async fn publish_mask_key(ctx: &AgentCtx, task: u64, view: &Value) -> Result<(), AgentError> {
    let key = mask_secret(ctx, task).public();
    let me = ctx.key.address().to_string();
    let have = view["mask_keys"].as_array().into_iter().flatten().any(|k| {
        k["member"] == me.as_str() && serde_json::from_value(k["key"].clone()).ok() == Some(key)
    });
    if !have {
        ctx.client.send_and_wait(&ctx.key, TxKind::AllianceMaskKey { task, key }).await?;
    }
    Ok(())
}

async fn mask_keys(
    ctx: &AgentCtx,
    task: u64,
) -> Result<BTreeMap<Address, MaskPublicKey>, AgentError> {
    let v = ctx.client.get(&format!("/v1/alliance/tasks/{task}")).await?;
    let mut out = BTreeMap::new();
    for k in v["mask_keys"].as_array().into_iter().flatten() {
        let (Some(a), Ok(key)) = (
            k["member"].as_str().and_then(|a| a.parse::<Address>().ok()),
            serde_json::from_value::<MaskPublicKey>(k["key"].clone()),
        ) else {
            return Err(AgentError::Protocol(format!("bad mask key entry {k}")));
        };
        out.insert(a, key);
    }
    Ok(out)
}

/// Drawn proposers with their id: the position in the draw (members sorted by address).
fn draw_proposers(draw: &Value) -> Vec<(Address, u32)> {
    draw["members"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .filter(|(_, m)| m[2] == "proposer")
        .filter_map(|(i, m)| Some((m[0].as_str()?.parse().ok()?, i as u32)))
        .collect()
}

fn draw_id(draw: &Value, who: &Address) -> Result<u32, AgentError> {
    let w = who.to_string();
    draw["members"]
        .as_array()
        .and_then(|ms| ms.iter().position(|m| m[0] == w.as_str()))
        .map(|i| i as u32)
        .ok_or_else(|| AgentError::Protocol(format!("{who} is not in the draw")))
}

/// The seed a pair of proposers masks with: their shared secret bound to the task, the round
/// and both addresses, so no mask is ever reused.
fn pair_seed(shared: &Hash, task: u64, round: u32, a: &Address, b: &Address) -> Hash {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    Hash::of_parts(
        "flock secagg pair seed v1",
        &[&shared.0, &task.to_le_bytes(), &round.to_le_bytes(), &lo.0, &hi.0],
    )
}

/// This member's pair seeds `(peer, peer id, seed)` with every other drawn proposer that
/// published a masking key (one without a key cannot post, so it masks with nobody).
fn pair_seeds(
    ctx: &AgentCtx,
    task: u64,
    round: u32,
    proposers: &[(Address, u32)],
    keys: &BTreeMap<Address, MaskPublicKey>,
) -> Result<Vec<(Address, u32, Hash)>, AgentError> {
    let me = ctx.key.address();
    let secret = mask_secret(ctx, task);
    let mut out = Vec::new();
    for (peer, id) in proposers {
        if *peer == me {
            continue;
        }
        let Some(k) = keys.get(peer) else { continue };
        let shared = secret
            .agree(k)
            .map_err(|e| AgentError::Protocol(format!("masking key of {peer}: {e}")))?;
        out.push((*peer, *id, pair_seed(&shared, task, round, &me, peer)));
    }
    Ok(out)
}

/// After posting: once the propose phase is over, reveals the pair seeds shared with every
/// drawn proposer that posted nothing, so voters can still unmask the sum.
async fn reveal_for_dropped(
    ctx: &AgentCtx,
    task: u64,
    round: u32,
    draw: &Value,
) -> Result<(), AgentError> {
    wait_alliance(ctx, task, round, "vote_commit").await?;
    let r = round_view(ctx, task, round).await?;
    let dropped: Vec<Address> = r["dropped"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str()?.parse().ok())
        .collect();
    if dropped.is_empty() {
        return Ok(());
    }
    let keys = mask_keys(ctx, task).await?;
    let seeds = pair_seeds(ctx, task, round, &draw_proposers(draw), &keys)?;
    let reveals: Vec<(Address, Hash)> = dropped
        .iter()
        .map(|d| {
            let seed = seeds.iter().find(|s| s.0 == *d).map(|s| s.2).unwrap_or(Hash::ZERO);
            (*d, seed)
        })
        .collect();
    tracing::info!(agent = %ctx.name, task, round, dropped = dropped.len(), "revealing masks for dropped proposers");
    ctx.client.send_and_wait(&ctx.key, TxKind::AllianceUnmask { task, reveals }).await?;
    Ok(())
}

/// A voter's view of a secure-aggregation round: the masked updates, and the survivors'
/// reveals for dropped proposers. Returns the new global model (the previous one plus the mean
/// of the proposers' changes), or why the sum cannot be recovered. The voter never sees an
/// individual update: each masked vector is uniformly distributed on its own.
async fn secure_sum(
    ctx: &AgentCtx,
    task: u64,
    round: u32,
    spec: &AllianceTaskSpec,
    draw: &Value,
    global: &Update,
    r: &Value,
) -> Result<Result<Update, String>, AgentError> {
    let len = global.layout().numel();
    let posted: Vec<(Address, Hash)> = r["proposals"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some((p["proposer"].as_str()?.parse().ok()?, p["update"].as_str()?.parse().ok()?))
        })
        .collect();
    if posted.is_empty() {
        return Ok(Err("no proposals".into()));
    }
    let keys = mask_keys(ctx, task).await?;
    let dropped_keyed: Vec<Address> = r["dropped"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str()?.parse().ok())
        .filter(|a| keys.contains_key(a))
        .collect();
    // Survivors reveal in the first half of the vote-commit phase; the voter waits for all of
    // them (or that deadline) and commits in the second half.
    let mut view = r.clone();
    if !dropped_keyed.is_empty() {
        let t = ctx.client.get(&format!("/v1/alliance/tasks/{task}")).await?;
        let start = t["rounds_start"].as_u64().unwrap_or(0)
            + u64::from(round) * spec.phases.round_length()
            + spec.phases.propose;
        let deadline = start + spec.phases.vote_commit.div_ceil(2);
        loop {
            let n = view["unmasks"].as_array().map_or(0, Vec::len);
            if n >= posted.len() {
                break;
            }
            let t = ctx.client.get(&format!("/v1/alliance/tasks/{task}")).await?;
            if t["now"]["next_height"].as_u64().unwrap_or(u64::MAX) > deadline {
                break;
            }
            tokio::time::sleep(ctx.poll).await;
            view = round_view(ctx, task, round).await?;
        }
    }
    let mut masked = Vec::with_capacity(posted.len());
    for (p, h) in &posted {
        let bytes = match ctx.artifacts.download(h).await {
            Ok(b) => b,
            Err(e) => return Ok(Err(format!("masked update of {p} unavailable: {e}"))),
        };
        match secagg::decode_masked(&bytes, len) {
            Ok(w) => masked.push(w),
            Err(e) => return Ok(Err(format!("masked update of {p}: {e}"))),
        }
    }
    let mut corrections = Vec::new();
    for (p, _) in &posted {
        if dropped_keyed.is_empty() {
            break;
        }
        let ps = p.to_string();
        let Some(u) =
            view["unmasks"].as_array().into_iter().flatten().find(|u| u["proposer"] == ps.as_str())
        else {
            return Ok(Err(format!("{p} did not reveal its masks for the dropped proposers")));
        };
        let me_id = draw_id(draw, p)?;
        for rv in u["reveals"].as_array().into_iter().flatten() {
            let (Some(d), Some(seed)) = (
                rv[0].as_str().and_then(|a| a.parse::<Address>().ok()),
                rv[1].as_str().and_then(|a| a.parse::<Hash>().ok()),
            ) else {
                return Ok(Err(format!("malformed reveal from {p}")));
            };
            if dropped_keyed.contains(&d) {
                corrections.push(secagg::dropout_correction(
                    me_id,
                    draw_id(draw, &d)?,
                    &seed.0,
                    len,
                ));
            }
        }
    }
    let sum = match secagg::unmask_sum(&masked, &corrections, SECAGG_SCALE_BITS) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let n = posted.len() as f64;
    let values: Vec<f32> = global
        .values()
        .iter()
        .zip(&sum)
        .map(|(g, s)| (f64::from(*g) + f64::from(*s) / n) as f32)
        .collect();
    Ok(Ok(Update::new(global.layout().clone(), values).map_err(|e| AgentError::Ml(e.to_string()))?))
}
