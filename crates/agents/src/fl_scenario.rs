//! The FL Alliance devnet scenario: hospitals with simulated glucose patients (labeled so)
//! train a 30-minutes-ahead glucose predictor together; one hospital poisons its updates.

use crate::{
    alliance::{run_member, FlModel, MemberBehaviour, MemberRound},
    arena::AgentCtx,
    AgentError,
};
use flock_ledger::{
    alliance::{Aggregation, AlliancePhases, AllianceTaskSpec, Privacy},
    TxKind,
};
use flock_ml::{
    cpu,
    mlp::{evaluate_mlp, train_mlp, Mlp, MlpTask, TabularData},
    train_device, TrainConfig,
};
use flock_ml_core::{artifact::ArtifactLimits, Update};
use flock_ml_data::glucose::{cohort_dataset, CONTEXT_STEPS};
use flock_primitives::{Amount, Hash, Keypair, Ppm};
use std::{path::PathBuf, time::Duration};

/// Inputs of the scenario.
#[derive(Debug, Clone)]
pub struct AllianceScenario {
    /// Node API URL.
    pub url: String,
    /// Funded keys: the creator, then one per hospital (the last one poisons).
    pub keys: Vec<Keypair>,
    /// Rounds.
    pub rounds: u32,
    /// Simulated patients per hospital.
    pub patients: u64,
    /// Simulated days per patient.
    pub days: u32,
    /// Phase lengths in blocks.
    pub phases: AlliancePhases,
    /// Working directory.
    pub work_dir: PathBuf,
    /// Privacy mode. With secure aggregation the rule is FedAvg (voters see only the sum) and
    /// the last hospital drops out after the draw instead of poisoning.
    pub privacy: Privacy,
    /// ρ: probability of being drawn proposer.
    pub proposer_ratio: Ppm,
    /// What the last hospital does (the others are honest): poison, drop out, or post an
    /// update of the wrong shape.
    pub last: MemberBehaviour,
}

/// One decided round.
#[derive(Debug, Clone)]
pub struct RoundLine {
    /// Round.
    pub round: u32,
    /// Proposers' names.
    pub proposers: Vec<String>,
    /// Voters' names.
    pub voters: Vec<String>,
    /// Accepted?
    pub accepted: bool,
    /// Median voter RMSE of the aggregate, mg/dL.
    pub rmse: Option<f64>,
    /// `(name, amount)` slashed.
    pub slashed: Vec<(String, Amount)>,
}

/// The outcome.
#[derive(Debug, Clone)]
pub struct AllianceOutcome {
    /// Task id.
    pub task: u64,
    /// Per round.
    pub rounds: Vec<RoundLine>,
    /// `(name, rewards, slashed, final stake)`.
    pub members: Vec<(String, Amount, Amount, Amount)>,
    /// RMSE (mg/dL) of the final global model on held-out patients.
    pub federated_rmse: f64,
    /// RMSE of one model trained on the union of the hospitals' data.
    pub centralized_rmse: f64,
    /// RMSE of the initial model.
    pub initial_rmse: f64,
    /// Checks.
    pub checks: Vec<(String, bool)>,
    /// Privacy mode.
    pub privacy: Privacy,
    /// Differential privacy: `(name, releases, per-release ε, total ε by basic composition)`.
    pub epsilon: Vec<(String, usize, f64, f64)>,
    /// Each hospital's own log of its rounds `(name, rounds)`.
    pub reports: Vec<(String, Vec<MemberRound>)>,
}

/// Scales simulated mg/dL, grams and units into the model's range (÷100), and back for RMSE.
const SCALE: f32 = 100.0;

fn to_data(t: &flock_ml_data::Tabular) -> TabularData {
    TabularData {
        n_features: t.feature_names.len(),
        features: t.features.iter().flatten().map(|x| x / SCALE).collect(),
        targets: t.labels.iter().map(|y| y / SCALE).collect(),
        n_targets: 1,
    }
}

fn split(t: &flock_ml_data::Tabular) -> (TabularData, TabularData) {
    let n = t.features.len();
    let cut = n * 4 / 5;
    let idx_a: Vec<usize> = (0..cut).collect();
    let idx_b: Vec<usize> = (cut..n).collect();
    let a = t.select(&idx_a).unwrap_or_default();
    let b = t.select(&idx_b).unwrap_or_default();
    (to_data(&a), to_data(&b))
}

fn name(i: usize, n: usize, last: MemberBehaviour) -> String {
    if i == n && last == MemberBehaviour::Dropout {
        "hospital-X (drops out)".to_owned()
    } else if i == n && last == MemberBehaviour::WrongShape {
        "hospital-W (wrong shape)".to_owned()
    } else if i == n && last == MemberBehaviour::Poison {
        "hospital-P (poisoner)".to_owned()
    } else {
        format!("hospital-{}", (b'A' + i as u8 - 1) as char)
    }
}

/// Runs the scenario to the end.
pub async fn run_alliance_scenario(s: AllianceScenario) -> Result<AllianceOutcome, AgentError> {
    let hospitals = s.keys.len() - 1;
    let model = FlModel::regressor(CONTEXT_STEPS + 2, vec![32]);
    // Each hospital has its own simulated patients (non-IID by patient); held-out patients test.
    let mut local = Vec::new();
    let mut union =
        TabularData { features: vec![], n_features: model.inputs, targets: vec![], n_targets: 1 };
    for h in 0..hospitals as u64 {
        let seeds: Vec<u64> = (0..s.patients).map(|p| 1_000 + h * 100 + p).collect();
        let (t, _) = cohort_dataset(&seeds, s.days, CONTEXT_STEPS);
        let (train, val) = split(&t);
        union.features.extend_from_slice(&train.features);
        union.targets.extend_from_slice(&train.targets);
        local.push((train, val));
    }
    let (test_t, _) = cohort_dataset(&[9_001, 9_002], s.days, CONTEXT_STEPS);
    let test = to_data(&test_t);

    let ctx = |i: usize| {
        let mut c = AgentCtx::new(
            &s.url,
            s.keys[i].clone(),
            &s.work_dir.join(format!("member-{i}")),
            &name(i, hospitals, s.last),
        );
        c.poll = Duration::from_millis(100);
        c
    };
    let creator = ctx(0);
    let init = model.init(42)?;
    let model_hash = creator.artifacts.upload(init.to_safetensors_default()).await?;
    let spec = AllianceTaskSpec {
        title: "Glucose 30 minutes ahead (simulated patients)".into(),
        model: model_hash,
        rounds: s.rounds,
        min_members: hospitals as u32,
        max_members: hospitals as u32,
        min_stake: Amount::flock(500),
        proposer_ratio: s.proposer_ratio,
        slash_rate: Ppm::percent(10).map_err(|e| AgentError::Protocol(e.to_string()))?,
        proposer_share: Ppm::percent(50).map_err(|e| AgentError::Protocol(e.to_string()))?,
        reward_pool: Amount::flock(5_000),
        aggregation: if s.privacy == Privacy::SecureAggregation {
            Aggregation::Fedavg
        } else {
            Aggregation::TrimmedMean { trim: 1 }
        },
        privacy: s.privacy,
        phases: s.phases,
    };
    let v = creator
        .client
        .send_and_wait(&creator.key, TxKind::AllianceCreate { spec: Box::new(spec) })
        .await?;
    let task = v["receipt"]["events"]
        .as_array()
        .and_then(|e| e.iter().find(|x| x["event"] == "alliance_task_created"))
        .and_then(|x| x["task"].as_u64())
        .ok_or_else(|| AgentError::Protocol(format!("no task created: {v}")))?;
    for i in 1..=hospitals {
        let c = ctx(i);
        c.client
            .send_and_wait(&c.key, TxKind::AllianceJoin { task, amount: Amount::flock(1_000) })
            .await?;
    }
    let mut handles = Vec::new();
    for i in 1..=hospitals {
        let (c, m, (train, val)) = (ctx(i), model.clone(), local[i - 1].clone());
        let b = if i == hospitals { s.last } else { MemberBehaviour::Honest };
        handles
            .push(tokio::spawn(async move { run_member(&c, task, &m, &train, &val, b, 2).await }));
    }
    let mut reports: Vec<Vec<MemberRound>> = Vec::new();
    for h in handles {
        reports.push(h.await.map_err(|e| AgentError::Protocol(e.to_string()))??);
    }
    // Wait for the last decision.
    loop {
        let t = creator.client.get(&format!("/v1/alliance/tasks/{task}")).await?;
        if t["status"] == "finished" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let who = |a: &str| -> String {
        s.keys
            .iter()
            .position(|k| k.address().to_string() == a)
            .map(|i| name(i, hospitals, s.last))
            .unwrap_or_else(|| a.to_owned())
    };
    let mut rounds = Vec::new();
    for r in 0..s.rounds {
        let v = creator.client.get(&format!("/v1/alliance/tasks/{task}/rounds/{r}")).await?;
        let members = v["draw"]["members"].as_array().cloned().unwrap_or_default();
        let pick = |role: &str| {
            members
                .iter()
                .filter(|m| m[2] == role)
                .map(|m| who(m[0].as_str().unwrap_or("")))
                .collect::<Vec<_>>()
        };
        let o = &v["outcome"];
        rounds.push(RoundLine {
            round: r,
            proposers: pick("proposer"),
            voters: pick("voter"),
            accepted: o["accepted"] == true,
            rmse: o["score"].as_u64().map(|x| x as f64 / 1e6 * f64::from(SCALE)),
            slashed: o["slashes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|x| {
                    (
                        who(x[0].as_str().unwrap_or("")),
                        x[1].as_str()
                            .and_then(|a| Amount::from_base_str(a).ok())
                            .unwrap_or_default(),
                    )
                })
                .collect(),
        });
    }
    let detail = creator.client.get(&format!("/v1/alliance/tasks/{task}")).await?;
    let members: Vec<(String, Amount, Amount, Amount)> = detail["member_list"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let amt = |k: &str| {
                m[k].as_str().and_then(|a| Amount::from_base_str(a).ok()).unwrap_or_default()
            };
            (
                who(m["address"].as_str().unwrap_or("")),
                amt("rewards"),
                amt("slashed"),
                amt("own_stake"),
            )
        })
        .collect();
    let global: Hash =
        detail["global_model"].as_str().and_then(|h| h.parse().ok()).unwrap_or(Hash::ZERO);
    let layout = init.layout().clone();
    let final_model = Update::from_safetensors(
        &creator.artifacts.download(&global).await?,
        &layout,
        &ArtifactLimits::for_params(layout.numel() as u64),
    )
    .map_err(|e| AgentError::Corrupt(e.to_string()))?;
    let federated_rmse = model.rmse(&final_model, &test)? * f64::from(SCALE);
    let initial_rmse = model.rmse(&init, &test)? * f64::from(SCALE);
    // Centralized baseline: the same model trained on the union of the hospitals' data for the
    // same number of passes a member makes over its own data.
    let central = {
        let m = Mlp::new(
            model.inputs,
            &model.hidden,
            MlpTask::Regression { outputs: 1 },
            42,
            &train_device(),
        );
        let cfg = TrainConfig {
            steps: (s.rounds as usize) * 2 * union.rows().div_ceil(32),
            batch_size: 32,
            lr: 3e-3,
            warmup_steps: 0,
            min_lr_ratio: 1.0,
            weight_decay: 0.0,
            max_grad_norm: Some(5.0),
            seed: 7,
            quiet: true,
        };
        let (m, _) = train_mlp(m, &union, MlpTask::Regression { outputs: 1 }, &cfg)
            .map_err(|e| AgentError::Ml(e.to_string()))?;
        let m =
            Mlp::new(model.inputs, &model.hidden, MlpTask::Regression { outputs: 1 }, 0, &cpu())
                .load_update(&m.to_update().map_err(|e| AgentError::Ml(e.to_string()))?)
                .map_err(|e| AgentError::Ml(e.to_string()))?;
        evaluate_mlp(&m, &test, MlpTask::Regression { outputs: 1 })
            .map_err(|e| AgentError::Ml(e.to_string()))?
            .rmse
            .unwrap_or(f64::INFINITY)
            * f64::from(SCALE)
    };
    // Every honest voter of a round computed the same aggregate.
    let mut identical = true;
    for r in 0..s.rounds {
        let hs: Vec<Hash> = reports[..hospitals - 1]
            .iter()
            .flatten()
            .filter(|m| m.round == r)
            .filter_map(|m| m.aggregate)
            .collect();
        identical &= hs.windows(2).all(|w| w[0] == w[1]);
    }
    let poisoner = name(hospitals, hospitals, s.last);
    let poisoned: Vec<&RoundLine> =
        rounds.iter().filter(|r| r.proposers.contains(&poisoner)).collect();
    let contained =
        poisoned.iter().all(|r| !r.accepted || r.slashed.iter().any(|(n, _)| *n == poisoner));
    // Removed members leave the member list, so count the poisoner's slashes round by round.
    let p_slashed = Amount(
        rounds
            .iter()
            .flat_map(|r| r.slashed.iter())
            .filter(|(n, _)| *n == poisoner)
            .map(|(_, a)| a.0)
            .sum(),
    );
    let named = |r: Vec<Vec<MemberRound>>| -> Vec<(String, Vec<MemberRound>)> {
        r.into_iter().enumerate().map(|(i, x)| (name(i + 1, hospitals, s.last), x)).collect()
    };
    let mut epsilon = Vec::new();
    for (i, rep) in reports.iter().enumerate() {
        let eps: Vec<f64> = rep.iter().filter_map(|m| m.epsilon).collect();
        if let Some(first) = eps.first() {
            epsilon.push((name(i + 1, hospitals, s.last), eps.len(), *first, eps.iter().sum()));
        }
    }
    if s.last == MemberBehaviour::Dropout {
        // The dropper's rounds completed from the survivors' reveals.
        let dropped_rounds: Vec<&RoundLine> =
            rounds.iter().filter(|r| r.proposers.contains(&poisoner)).collect();
        let recovered = dropped_rounds.iter().filter(|r| r.accepted).count();
        let checks = vec![
            ("every voter computed a bit-identical aggregate hash from masked updates".to_owned(), identical),
            (format!("rounds with a dropped proposer completed from the survivors' reveals ({recovered} of {})", dropped_rounds.len()), recovered == dropped_rounds.len()),
            (format!("federated RMSE {federated_rmse:.1} mg/dL within 25% of centralized {central:.1}"), federated_rmse <= central * 1.25),
        ];
        return Ok(AllianceOutcome {
            task,
            rounds,
            members,
            federated_rmse,
            centralized_rmse: central,
            initial_rmse,
            checks,
            privacy: s.privacy,
            epsilon,
            reports: named(reports),
        });
    }
    let checks = vec![
        ("every honest voter computed a bit-identical aggregate hash".to_owned(), identical),
        (format!("{poisoner}: its rounds were rejected or its update discarded and slashed ({} rounds proposing)", poisoned.len()), contained),
        (format!("{poisoner} lost stake"), poisoned.is_empty() || !p_slashed.is_zero()),
        if matches!(s.privacy, Privacy::DifferentialPrivacy { .. }) {
            // Noise costs accuracy: the claim is only that the alliance still learned.
            (format!("federated RMSE {federated_rmse:.1} mg/dL below the initial model's {initial_rmse:.1} (centralized without noise: {central:.1})"), federated_rmse < initial_rmse)
        } else {
            (format!("federated RMSE {federated_rmse:.1} mg/dL within 25% of centralized {centralized:.1}", centralized = central), federated_rmse <= central * 1.25)
        },
    ];
    Ok(AllianceOutcome {
        task,
        rounds,
        members,
        federated_rmse,
        centralized_rmse: central,
        initial_rmse,
        checks,
        privacy: s.privacy,
        epsilon,
        reports: named(reports),
    })
}

/// Formats the outcome as the devnet prints it.
pub fn print_alliance(o: &AllianceOutcome) -> String {
    let mut out = format!("\nFL Alliance task {} finished\n", o.task);
    out += &format!(
        "  {:<5} {:<9} {:>10}  {:<58} {}\n",
        "round", "outcome", "RMSE", "proposers", "slashed"
    );
    for r in &o.rounds {
        let sl: Vec<String> = r.slashed.iter().map(|(n, a)| format!("{n} {a}")).collect();
        out += &format!(
            "  {:<5} {:<9} {:>10}  {:<58} {}\n",
            r.round,
            if r.accepted { "accepted" } else { "rejected" },
            r.rmse.map(|x| format!("{x:.1} mg/dL")).unwrap_or_else(|| "-".into()),
            r.proposers.join(", "),
            sl.join("; ")
        );
    }
    out += &format!("  {:<24} {:>26} {:>14} {:>14}\n", "member", "rewards", "slashed", "stake");
    for (n, r, s, st) in &o.members {
        out += &format!(
            "  {:<24} {:>26} {:>14} {:>14}\n",
            n,
            r.to_string(),
            s.to_string(),
            st.to_string()
        );
    }
    out += &format!(
        "  held-out patients: initial model {:.1} mg/dL, federated {:.1} mg/dL, centralized (union of the data) {:.1} mg/dL\n",
        o.initial_rmse, o.federated_rmse, o.centralized_rmse
    );
    match o.privacy {
        Privacy::Plaintext => {}
        Privacy::SecureAggregation => {
            out += "  privacy: secure aggregation (pairwise masks; voters saw only the sum of the updates)\n"
        }
        Privacy::DifferentialPrivacy { clip_micro, noise_micro } => {
            out += &format!(
                "  privacy: differential privacy at each member (clip {} , noise multiplier {}, δ = {:e})\n",
                clip_micro as f64 / 1e6,
                noise_micro as f64 / 1e6,
                crate::alliance::DP_DELTA
            );
            for (n, k, e1, et) in &o.epsilon {
                out += &format!("    {n:<24} {k} release(s): ε {e1:.2} each, {et:.2} in total (basic composition)\n");
            }
        }
    }
    for (c, ok) in &o.checks {
        out += &format!("  [{}] {c}\n", if *ok { "ok" } else { "FAILED" });
    }
    out
}
