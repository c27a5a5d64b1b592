//! Throughput on a SmolLM2-135M-shaped model (random weights); `--ignored`, run by hand.

use std::time::Instant;

use flock_ml::lora::{apply_lora, LoraConfig};
use flock_ml::model::DecoderLm;
use flock_ml::tokenizer::LmExample;
use flock_ml::train::{evaluate_lm, train_lm, TrainConfig};
use flock_ml::{cpu, train_device, DecoderConfig};

fn smollm2_135m() -> DecoderConfig {
    let mut c = DecoderConfig::tiny(49152);
    c.model_type = "llama".into();
    c.hidden_size = 576;
    c.intermediate_size = 1536;
    c.num_hidden_layers = 30;
    c.num_attention_heads = 9;
    c.num_key_value_heads = Some(3);
    c.rope_theta = 100_000.0;
    c.max_position_embeddings = 8192;
    c.rms_norm_eps = 1e-5;
    c
}

fn model(cfg: &DecoderConfig, device: &burn::tensor::Device) -> DecoderLm {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut src = |name: &str, shape: &[usize]| {
        let n: usize = shape.iter().product();
        if name.ends_with("norm.weight") {
            return Ok(vec![1.0; n]);
        }
        Ok((0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.07
            })
            .collect())
    };
    DecoderLm::from_source(cfg, &mut src, device).unwrap()
}

fn batch(n: usize, t: usize) -> Vec<LmExample> {
    (0..n)
        .map(|i| LmExample {
            ids: (0..t).map(|j| ((i * 7919 + j * 104_729) % 49152) as u32).collect(),
            target: (0..t).map(|j| j > 0).collect(),
            bytes: vec![4; t],
        })
        .collect()
}

#[test]
#[ignore]
fn smollm2_sized_throughput() {
    let cfg = smollm2_135m();
    eprintln!("params: {}", cfg.num_params());
    let m = model(&cfg, &cpu());
    let data = batch(4, 128);
    let t = Instant::now();
    let r = evaluate_lm(&m, &data, 4).unwrap();
    eprintln!("eval: {:.1} target tok/s ({:.2}s)", r.tokens_per_sec, t.elapsed().as_secs_f64());
    let m = model(&cfg, &train_device());
    let lora = apply_lora(m, &LoraConfig::default(), 1).unwrap();
    let tc = TrainConfig { steps: 2, batch_size: 2, ..Default::default() };
    let (_, metrics) = train_lm(lora, &batch(4, 128), &tc).unwrap();
    eprintln!("LoRA train (2x128 tokens/step): {:.2} samples/s", metrics.samples_per_sec);
}
