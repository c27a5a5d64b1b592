//! The arena scenario end to end over HTTP against a real node, with a fast stand-in for the
//! ML (the devnet runs the same scenario with the real engine).

mod common;

use flock_agents::{
    scenario::{print_outcome, run_arena_scenario, write_placeholder, ArenaScenario},
    AgentError, ArenaMl, TrainPlan,
};
use flock_ledger::arena::{ArenaTaskSpec, Phases, Score};
use std::{path::Path, sync::Arc, time::Duration};

/// Stand-in ML: a "model" is a text file stating how it was trained; its score improves with
/// data and steps. Anything else is not a valid model.
struct StandIn;

impl ArenaMl for StandIn {
    fn train(
        &self,
        _base: &Path,
        train: &[u8],
        plan: &TrainPlan,
        out: &Path,
    ) -> Result<(String, Vec<String>), AgentError> {
        assert!(!train.is_empty());
        std::fs::write(
            out.join("adapter_model.safetensors"),
            format!("stand-in {} {}", plan.data_percent, plan.steps),
        )?;
        std::fs::write(out.join("adapter_config.json"), "{}")?;
        Ok((
            "peft-adapter".into(),
            vec!["adapter_config.json".into(), "adapter_model.safetensors".into()],
        ))
    }

    fn score(
        &self,
        _base: &Path,
        sub: &Path,
        val: &[u8],
        _: &ArenaTaskSpec,
    ) -> (Score, Option<String>) {
        assert!(!val.is_empty());
        let text =
            std::fs::read_to_string(sub.join("adapter_model.safetensors")).unwrap_or_default();
        let mut it = text.split_whitespace();
        match (
            it.next(),
            it.next().and_then(|x| x.parse::<u64>().ok()),
            it.next().and_then(|x| x.parse::<u64>().ok()),
        ) {
            (Some("stand-in"), Some(p), Some(s)) => {
                (Score(2_000_000 + 100_000_000 / (1 + p * s)), None)
            }
            _ => (Score::WORST, Some("not a safetensors file".into())),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arena_scenario_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let keys = common::keys("scenario", 12);
    let node = common::start_node(dir.path(), "flock-scenario", &keys, 50, 30, 1 << 20).await;
    let base = dir.path().join("base");
    write_placeholder(&base, &["config.json", "model.safetensors", "tokenizer.json"]).unwrap();
    let plan = |p: u32, steps: usize| TrainPlan { data_percent: p, steps, seed: 1 };
    let scenario = ArenaScenario {
        url: node.url(),
        urls: vec![],
        keys: keys.clone(),
        base_dir: base,
        base_files: vec!["config.json".into(), "model.safetensors".into(), "tokenizer.json".into()],
        training_jsonl: b"{\"conversations\":[]}\n".to_vec(),
        validation_jsonl: b"{\"conversations\":[]}\n".to_vec(),
        plans: [plan(100, 40), plan(50, 40), plan(25, 20), plan(10, 10)],
        phases: Phases { train: 80, reveal: 40, validate_commit: 40, validate_reveal: 40 },
        work_dir: dir.path().join("agents"),
    };
    let outcome = tokio::time::timeout(
        Duration::from_secs(120),
        run_arena_scenario(scenario, Arc::new(StandIn)),
    )
    .await
    .expect("scenario finished in time")
    .unwrap();
    let table = print_outcome(&outcome);
    println!("{table}");
    for (check, ok) in &outcome.checks {
        assert!(ok, "{check}\n{table}");
    }
    // Four honest trainers in order of their data × steps.
    let order: Vec<&str> =
        outcome.lines.iter().filter(|l| l.role == "trainer").map(|l| l.name.as_str()).collect();
    assert_eq!(&order[..4], ["trainer-a", "trainer-b", "trainer-c", "trainer-d"], "{table}");
    let sup = flock_node::Client::new(&node.url()).get("/v1/supply").await.unwrap();
    assert_eq!(sup["conserved"], true);
    node.shutdown().await.unwrap();
}
