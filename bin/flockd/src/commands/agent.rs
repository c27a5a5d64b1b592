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
