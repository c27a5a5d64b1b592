//! Federated rounds across the framework-neutral boundary: burn models → ml-core `Update`s →
//! deterministic aggregation → back into burn.

use flock_ml::lora::{apply_lora, lora_from_update, lora_to_update, LoraConfig};
use flock_ml::mlp::{evaluate_mlp, train_mlp, Mlp, MlpTask, TabularData};
use flock_ml::model::DecoderLm;
use flock_ml::tokenizer::{encode_chat, encode_plain, train_bpe_tokenizer};
use flock_ml::train::{evaluate_lm, train_lm, TrainConfig};
use flock_ml::{train_device, DecoderConfig};
use flock_ml_core::aggregate::{aggregate_updates, AggregationRule};
use flock_ml_data::chatml::render;
use flock_ml_data::text2sql::{generate_pairs, splits};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn rings(n: usize, seed: u64) -> TabularData {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut features, mut targets) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let (x, y): (f32, f32) = (rng.gen_range(-1.0..1.0), rng.gen_range(-1.0..1.0));
        features.extend([x, y]);
        targets.push(((x * x + y * y).sqrt() > 0.6) as u8 as f32);
    }
    TabularData { features, n_features: 2, targets, n_targets: 1 }
}

#[test]
fn fedavg_of_mlp_updates_learns_across_clients() {
    let task = MlpTask::Classification { classes: 2 };
    let test = rings(500, 99);
    let mut global = Mlp::new(2, &[32], task, 0, &train_device());
    let clients: Vec<TabularData> = (0..3).map(|c| rings(400, c)).collect();
    for round in 0..4 {
        let mut updates = Vec::new();
        for (c, data) in clients.iter().enumerate() {
            let local = Mlp::new(2, &[32], task, 0, &train_device())
                .load_update(&global.to_update().unwrap())
                .unwrap();
            let cfg = TrainConfig {
                steps: 40,
                batch_size: 32,
                lr: 1e-2,
                warmup_steps: 0,
                seed: (round * 10 + c) as u64,
                ..Default::default()
            };
            let (local, _) = train_mlp(local, data, task, &cfg).unwrap();
            updates.push(local.to_update().unwrap());
        }
        let (avg, _) = aggregate_updates(AggregationRule::FedAvg, &updates, None).unwrap();
        global = global.load_update(&avg).unwrap();
    }
    let acc = evaluate_mlp(&global, &test, task).unwrap().accuracy.unwrap();
    assert!(acc > 0.9, "federated accuracy {acc}");
}

#[test]
fn fedavg_of_lora_adapters_lowers_bpb() {
    let mut s = splits(41, 192, 32).unwrap();
    for e in s.train.iter_mut().chain(s.validation.iter_mut()) {
        e.system = None;
    }
    let plain: Vec<String> = generate_pairs(5, 192)
        .into_iter()
        .flat_map(|p| [format!("{}\n", p.question), format!("{}\n", p.sql)])
        .collect();
    let mut texts: Vec<String> = s.train.iter().map(|e| render(e).text).collect();
    texts.extend(plain.iter().cloned());
    let tok = train_bpe_tokenizer(&texts, 512).unwrap();
    let cfg = DecoderConfig::tiny(tok.get_vocab_size(true));
    let plain: Vec<_> = plain.iter().map(|t| encode_plain(&tok, t, 256).unwrap()).collect();
    let chat = |v: &[flock_ml_data::chat::ChatExample]| -> Vec<_> {
        v.iter().map(|e| encode_chat(&tok, e, 256).unwrap()).collect()
    };
    let (train, val) = (chat(&s.train), chat(&s.validation));
    let pre = TrainConfig {
        steps: 60,
        batch_size: 8,
        lr: 3e-3,
        warmup_steps: 6,
        seed: 1,
        ..Default::default()
    };
    let (base, _) =
        train_lm(DecoderLm::random(&cfg, 3, &train_device()).unwrap(), &plain, &pre).unwrap();
    let before = evaluate_lm(&base, &val, 16).unwrap().bpb;

    // Two trainers, disjoint shards, same adapter init (seed): FedAvg of A and B (FedIT-style).
    let lora = LoraConfig::default();
    let mut updates = Vec::new();
    for (i, shard) in train.chunks(train.len() / 2).take(2).enumerate() {
        let model = apply_lora(base.clone(), &lora, 7).unwrap();
        let tc = TrainConfig {
            steps: 60,
            batch_size: 8,
            lr: 1e-2,
            warmup_steps: 6,
            seed: i as u64,
            ..Default::default()
        };
        let (tuned, _) = train_lm(model, shard, &tc).unwrap();
        eprintln!("client {i}: val BPB {:.3}", evaluate_lm(&tuned, &val, 16).unwrap().bpb);
        updates.push(lora_to_update(&tuned).unwrap());
    }
    let (avg, _) = aggregate_updates(AggregationRule::FedAvg, &updates, None).unwrap();
    let merged = lora_from_update(base, &lora, &avg).unwrap();
    let after = evaluate_lm(&merged, &val, 16).unwrap().bpb;
    eprintln!("federated LoRA: val BPB {before:.3} -> {after:.3}");
    // Averaging A and B separately is not averaging the deltas (B·A is bilinear), yet the
    // aggregate must keep a clear gain over the base.
    assert!(after < 0.95 * before, "{before} -> {after}");
}
