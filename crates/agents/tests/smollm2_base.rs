//! A real pretrained checkpoint as an AI Arena base model: SmolLM2-135M-Instruct (imported from
//! its GGUF by `flockd model import`) gets the simulated Text2SQL task, a trainer fine-tunes a
//! LoRA adapter on it with the same engine the devnet uses, and a validator scores the adapter
//! in bits per byte — the path `flockd devnet --base-model DIR` takes.
//!
//! Needs `FLOCK_SMOLLM2_DIR` (the imported directory; `.ci/run` makes it); skipped otherwise.

use flock_agents::{
    arena::ArenaMl,
    engine::{prepare_text2sql_with_base, EngineMl},
    TrainPlan,
};
use flock_ledger::arena::{ArenaTaskSpec, Metric, Phases, Score};
use flock_primitives::{Amount, Hash, Ppm};

#[test]
fn smollm2_is_an_arena_base_model() {
    let Some(src) = std::env::var_os("FLOCK_SMOLLM2_DIR").map(std::path::PathBuf::from) else {
        eprintln!("skipped: set FLOCK_SMOLLM2_DIR to an imported SmolLM2-135M-Instruct");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let task = prepare_text2sql_with_base(&src, &base, 7, 16, 8).unwrap();
    println!("SmolLM2 base on the Text2SQL validation set: {:.4} bits per byte", task.base_bpb);
    assert!(task.base_bpb.is_finite() && task.base_bpb > 0.0);
    let ml = EngineMl { max_len: 96, lr: 2e-3, batch_size: 2, ..EngineMl::default() };
    let out = dir.path().join("adapter");
    let plan = TrainPlan { data_percent: 100, steps: 3, seed: 1 };
    let (kind, files) = ml.train(&base, &task.training_jsonl, &plan, &out).unwrap();
    assert_eq!(kind, "peft-adapter");
    for f in &files {
        assert!(out.join(f).exists(), "{f}");
    }
    let spec = ArenaTaskSpec {
        title: "text2sql".into(),
        base_model: Hash::ZERO,
        training_set: Hash::ZERO,
        validation_commitments: vec![],
        max_params: 1_000_000_000,
        context_length: 256,
        metric: Metric::Bpb,
        phases: Phases { train: 10, reveal: 10, validate_commit: 10, validate_reveal: 10 },
        min_node_stake: Amount::flock(1),
        min_validator_stake: Amount::flock(1),
        rank_ratio: Ppm::percent(60).unwrap(),
        gamma: Ppm::percent(10).unwrap(),
        delta: Ppm::percent(10).unwrap(),
        validators_per_submission: 1,
        deposit: Amount::flock(1),
    };
    let (score, reason) = ml.score(&base, &out, &task.validation_jsonl, &spec);
    assert_ne!(score, Score::WORST, "{reason:?}");
    println!(
        "after 3 LoRA steps: {:.4} bits per byte (base {:.4})",
        score.0 as f64 / 1e6,
        task.base_bpb
    );
    // Three seeded steps already fit the task better (measured: 0.613 → 0.545 BPB).
    assert!((score.0 as f64 / 1e6) < task.base_bpb);
}
