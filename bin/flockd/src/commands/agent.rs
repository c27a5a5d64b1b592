//! `flockd agent creator|trainer|validator` and `flockd model init`.

use super::print_json;
use crate::cli::{AgentCmd, AgentCommon, ModelCmd};
use anyhow::Context;
use flock_agents::{
    arena::{create_task, reveal_validation, run_trainer, run_validator, AgentCtx},
    engine::{prepare_text2sql, EngineMl, BASE_FILES},
    TrainPlan, TrainerBehaviour, ValidatorBehaviour,
};
use flock_ledger::{
    arena::{node_target, validator_target, ArenaTaskSpec, Metric, Phases},
    StakeTarget, TxKind,
};
use flock_node::Keystore;
use flock_primitives::{Amount, Hash, Ppm};
use std::sync::Arc;

fn ctx(c: &AgentCommon) -> anyhow::Result<AgentCtx> {
    let key = Keystore::open(&c.data.data_dir).get(&c.from)?;
    let work = c.work_dir.clone().unwrap_or_else(|| c.data.data_dir.join("agents").join(&c.from));
    Ok(AgentCtx::new(&c.node.url, key, &work, &c.from))
}

async fn ensure_stake(
    c: &AgentCtx,
    target: StakeTarget,
    stake: &Option<String>,
) -> anyhow::Result<()> {
    let Some(amount) = stake else { return Ok(()) };
    let acct = c.client.get(&format!("/v1/accounts/{}", c.key.address())).await?;
    let staked =
        acct["stakes"].as_array().into_iter().flatten().any(|s| s["target"]["task"] == target.task);
    if !staked {
        let amount: Amount = amount.parse()?;
        c.client.send_and_wait(&c.key, TxKind::Stake { target, amount }).await?;
        println!("staked {amount} on {target}");
    }
    Ok(())
}

pub(crate) async fn run(cmd: AgentCmd) -> anyhow::Result<()> {
    match cmd {
        AgentCmd::Creator {
            common,
            base_model,
            train,
            validation,
            title,
            deposit,
            train_blocks,
            validate_blocks,
            validators,
        } => {
            let c = ctx(&common)?;
            let train =
                std::fs::read(&train).with_context(|| format!("reading {}", train.display()))?;
            let val = std::fs::read(&validation)
                .with_context(|| format!("reading {}", validation.display()))?;
            let spec = ArenaTaskSpec {
                title,
                base_model: Hash::ZERO,
                training_set: Hash::ZERO,
                validation_commitments: vec![],
                max_params: 50_000_000,
                context_length: 256,
                metric: Metric::Bpb,
                phases: Phases {
                    train: train_blocks,
                    reveal: 20,
                    validate_commit: validate_blocks,
                    validate_reveal: 20,
                },
                min_node_stake: Amount::flock(100),
                min_validator_stake: Amount::flock(100),
                rank_ratio: Ppm::percent(60)?,
                gamma: Ppm::percent(10)?,
                delta: Ppm::percent(10)?,
                validators_per_submission: validators,
                deposit: deposit.parse()?,
            };
            let task =
                create_task(&c, &base_model, &BASE_FILES, train, std::slice::from_ref(&val), spec)
                    .await?;
            println!("created AI Arena task {task}; waiting for submissions to close to reveal the validation set ...");
            reveal_validation(&c, task, 0, val).await?;
            println!("validation set revealed for task {task} round 0");
        }
        AgentCmd::Trainer { common, task, round, stake, data_percent, steps, seed } => {
            let c = ctx(&common)?;
            ensure_stake(&c, node_target(task), &stake).await?;
            let plan = TrainPlan { data_percent, steps, seed };
            let rep = run_trainer(
                &c,
                Arc::new(EngineMl::default()),
                task,
                round,
                TrainerBehaviour::Honest(plan),
                None,
            )
            .await?;
            println!(
                "submitted {} to task {task} round {round} (trained in {:.1}s) and revealed it",
                rep.artifact, rep.train_secs
            );
        }
        AgentCmd::FlMember { common, task, data, val, label, classes, stake, epochs, lr } => {
            fl_member(&common, task, &data, val.as_deref(), &label, classes, stake, epochs, lr)
                .await?;
        }
        AgentCmd::Validator { common, task, round, stake } => {
            let c = ctx(&common)?;
            ensure_stake(&c, validator_target(task), &stake).await?;
            let rep = run_validator(
                &c,
                Arc::new(EngineMl::default()),
                task,
                round,
                ValidatorBehaviour::Honest,
            )
            .await?;
            for (i, score, reason) in &rep.scores {
                match reason {
                    Some(r) => println!("submission {i}: WORST ({r})"),
                    None => println!("submission {i}: {:.4} BPB", score.0 as f64 / 1e6),
                }
            }
            println!(
                "{} score(s) committed and revealed for task {task} round {round}",
                rep.scores.len()
            );
        }
    }
    Ok(())
}

pub(crate) async fn model(cmd: ModelCmd, json: bool) -> anyhow::Result<()> {
    match cmd {
        ModelCmd::Init { out, seed, train, validation, pretrain_steps } => {
            let dir = out.clone();
            let task = tokio::task::spawn_blocking(move || {
                prepare_text2sql(&dir, seed, train, validation, pretrain_steps)
            })
            .await??;
            std::fs::write(out.join("train.jsonl"), &task.training_jsonl)?;
            std::fs::write(out.join("validation.jsonl"), &task.validation_jsonl)?;
            if json {
                print_json(&serde_json::json!({ "dir": out, "base_bpb": task.base_bpb }));
            } else {
                println!("wrote a tiny model (config.json, model.safetensors, tokenizer.json) and the simulated Text2SQL train.jsonl / validation.jsonl to {}", out.display());
                println!("base model validation loss: {:.4} bits per byte", task.base_bpb);
            }
        }
        ModelCmd::Import { src, out, dtype, force } => {
            super::model_import::run(src, out, &dtype, force, json).await?
        }
    }
    Ok(())
}

fn load_csv(path: &std::path::Path, label: &str) -> anyhow::Result<flock_ml::mlp::TabularData> {
    let f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let t = flock_ml_data::from_csv(f, label, &flock_ml_data::CsvLimits::default())
        .with_context(|| format!("parsing {}", path.display()))?;
    Ok(flock_ml::mlp::TabularData {
        n_features: t.feature_names.len(),
        features: t.features.concat(),
        targets: t.labels.clone(),
        n_targets: 1,
    })
}

#[allow(clippy::too_many_arguments)]
async fn fl_member(
    common: &AgentCommon,
    task: u64,
    data: &std::path::Path,
    val: Option<&std::path::Path>,
    label: &str,
    classes: Option<usize>,
    stake: Option<String>,
    epochs: usize,
    lr: f64,
) -> anyhow::Result<()> {
    use flock_agents::alliance::{run_member, FlModel, MemberBehaviour};
    let c = ctx(common)?;
    let train = load_csv(data, label)?;
    let val = match val {
        Some(v) => load_csv(v, label)?,
        None => train.clone(),
    };
    let view = c.client.get(&format!("/v1/alliance/tasks/{task}")).await?;
    let model_hash: Hash = view["spec"]["model"]
        .as_str()
        .and_then(|h| h.parse().ok())
        .with_context(|| format!("task {task} has no model"))?;
    let bytes = c.artifacts.download(&model_hash).await?;
    let layout = flock_ml_core::artifact::validate(
        &bytes,
        None,
        &flock_ml_core::ArtifactLimits::for_params(100_000_000),
    )
    .with_context(|| format!("reading the task's model {model_hash}"))?
    .layout()
    .clone();
    let mut model = FlModel::from_layout(&layout, classes)?;
    model.lr = lr;
    if train.n_features != model.inputs {
        anyhow::bail!(
            "{} has {} feature columns; the task's model takes {}",
            data.display(),
            train.n_features,
            model.inputs
        );
    }
    let me = c.key.address().to_string();
    let member =
        view["member_list"].as_array().into_iter().flatten().any(|m| m["address"] == me.as_str());
    if !member {
        let amount: Amount = stake
            .as_deref()
            .context("not a member of the task yet: pass --stake to join")?
            .parse()?;
        c.client.send_and_wait(&c.key, TxKind::AllianceJoin { task, amount }).await?;
        println!("joined task {task} with {amount}");
    }
    let rounds =
        run_member(&c, task, &model, &train, &val, MemberBehaviour::Honest, epochs).await?;
    for r in &rounds {
        match (r.role, r.rmse) {
            (_, Some((old, new))) => println!(
                "round {}: {} — local error {old:.4} → {new:.4} for aggregate {}",
                r.round,
                r.role,
                r.aggregate.map(|h| h.to_string()).unwrap_or_default()
            ),
            _ => println!(
                "round {}: {}{}",
                r.round,
                r.role,
                r.sent.map(|h| format!(" — posted {h}")).unwrap_or_default()
            ),
        }
    }
    Ok(())
}
