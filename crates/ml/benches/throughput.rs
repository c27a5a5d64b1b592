//! ML engine throughput: training samples/s (LoRA and full, tiny decoder on the simulated
//! Text2SQL corpus; MLP on digits-sized data) and evaluation target tokens/s.
//!
//! Run: `cargo bench -p flock-ml --bench throughput` (release), or
//! `cargo bench -p flock-ml --bench throughput --profile dev` (burn is optimized in the dev
//! profile too). Prints medians of 3 runs per row.

use flock_ml::{
    apply_lora, cpu, encode_chat, evaluate_lm,
    mlp::{train_mlp, Mlp, MlpTask, TabularData},
    train_bpe_tokenizer, train_device, train_lm, DecoderConfig, DecoderLm, LoraConfig, TrainConfig,
};
use flock_ml_data::{render, text2sql};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let mut s = text2sql::splits(5, 256, 64).expect("corpus");
    for e in s.train.iter_mut().chain(s.validation.iter_mut()) {
        e.system = None;
    }
    let texts: Vec<String> = s.train.iter().map(|e| render(e).text).collect();
    let tok = train_bpe_tokenizer(&texts, 512).expect("tokenizer");
    let enc = |v: &[flock_ml_data::ChatExample]| {
        v.iter().map(|e| encode_chat(&tok, e, 256).expect("encode")).collect::<Vec<_>>()
    };
    let (train, val) = (enc(&s.train), enc(&s.validation));
    let cfg = DecoderConfig::tiny(tok.get_vocab_size(true));
    let tc = |seed| TrainConfig {
        steps: 30,
        batch_size: 8,
        lr: 3e-3,
        warmup_steps: 3,
        seed,
        quiet: true,
        ..TrainConfig::default()
    };
    let tokens: f64 = train.iter().map(|e| e.ids.len() as f64).sum::<f64>() / train.len() as f64;

    let mut full = Vec::new();
    let mut lora = Vec::new();
    let mut eval = Vec::new();
    let mut mlp = Vec::new();
    for run in 0..3u64 {
        let m = DecoderLm::random(&cfg, run, &train_device()).expect("model");
        let (_, metrics) = train_lm(m.clone(), &train, &tc(run)).expect("train");
        full.push(metrics.samples_per_sec);
        let l = apply_lora(m, &LoraConfig::default(), run).expect("lora");
        let (_, metrics) = train_lm(l, &train, &tc(run)).expect("train lora");
        lora.push(metrics.samples_per_sec);
        let e = DecoderLm::random(&cfg, run, &cpu()).expect("model");
        eval.push(evaluate_lm(&e, &val, 16).expect("eval").tokens_per_sec);
        // MLP 64-128-10 on 1,440 digits-sized rows, batches of 32.
        let rows = 1_440;
        let features: Vec<f32> = (0..rows * 64).map(|i| ((i * 7919) % 17) as f32 / 16.0).collect();
        let targets: Vec<f32> = (0..rows).map(|i| (i % 10) as f32).collect();
        let data = TabularData { features, n_features: 64, targets, n_targets: 1 };
        let task = MlpTask::Classification { classes: 10 };
        let model = Mlp::new(64, &[128], task, run, &train_device());
        let c = TrainConfig {
            steps: 450,
            batch_size: 32,
            lr: 1e-2,
            warmup_steps: 0,
            seed: run,
            quiet: true,
            ..TrainConfig::default()
        };
        let (_, metrics) = train_mlp(model, &data, task, &c).expect("mlp");
        mlp.push(metrics.samples_per_sec);
    }
    println!(
        "flock-ml throughput, single thread (tiny decoder: {} params, vocab {}, ~{tokens:.0} tokens per example; medians of 3)",
        cfg.num_params(),
        cfg.vocab_size
    );
    println!("| measurement                                   |     per second |");
    println!("|-----------------------------------------------|---------------:|");
    println!("| decoder full training, samples                | {:>14.1} |", median(full));
    println!("| decoder LoRA training (q,v; r=8), samples     | {:>14.1} |", median(lora));
    println!("| decoder evaluation, target tokens             | {:>14.0} |", median(eval));
    println!("| MLP 64-128-10 training, samples (batch 32)    | {:>14.0} |", median(mlp));
}
