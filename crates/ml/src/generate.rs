//! Autoregressive generation with a KV cache; greedy, temperature and top-p sampling (seeded).

use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorData};
use flock_ml_data::chat::ChatExample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokenizers::Tokenizer;

use crate::error::{MlError, Result};
use crate::model::{to_vec, DecoderLm, KvCache};

/// How to pick tokens (serde: missing fields take the defaults).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SamplingConfig {
    /// Most tokens to generate.
    pub max_new_tokens: usize,
    /// Softmax temperature; `0` means greedy (argmax).
    pub temperature: f32,
    /// Nucleus mass in `(0, 1]`; `1` disables top-p.
    pub top_p: f32,
    /// Seed of the sampler.
    pub seed: u64,
    /// Generation stops after emitting any of these.
    pub stop_tokens: Vec<u32>,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            max_new_tokens: 64,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
            stop_tokens: Vec::new(),
        }
    }
}

fn ids_tensor(ids: &[u32], device: &burn::tensor::Device) -> Tensor<2, Int> {
    let v: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
    Tensor::from_data(TensorData::new(v, [1, ids.len()]), device)
}

/// Picks the next token from one row of logits.
pub fn sample(logits: &[f32], cfg: &SamplingConfig, rng: &mut ChaCha8Rng) -> u32 {
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |b, (i, &x)| if x > b.1 { (i, x) } else { b })
            .0 as u32
    };
    if cfg.temperature <= 0.0 {
        return argmax();
    }
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<(usize, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, &x)| (i, (((x - max) / cfg.temperature) as f64).exp()))
        .collect();
    let total: f64 = probs.iter().map(|p| p.1).sum();
    if !total.is_finite() || total <= 0.0 {
        return argmax();
    }
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let keep_mass = (cfg.top_p.clamp(0.0, 1.0) as f64) * total;
    let mut kept = 0.0;
    let mut n = 0;
    for p in &probs {
        kept += p.1;
        n += 1;
        if kept >= keep_mass {
            break;
        }
    }
    let mut u = rng.gen::<f64>() * kept;
    for p in &probs[..n] {
        if u < p.1 {
            return p.0 as u32;
        }
        u -= p.1;
    }
    probs[n - 1].0 as u32
}

fn check_prompt(model: &DecoderLm, prompt: &[u32]) -> Result<()> {
    if prompt.is_empty() {
        return Err(MlError::InvalidData("empty prompt".into()));
    }
    if let Some(&bad) = prompt.iter().find(|&&t| t as usize >= model.vocab_size()) {
        return Err(MlError::InvalidData(format!("token id {bad} out of vocabulary")));
    }
    Ok(())
}

/// Generates up to `max_new_tokens` after `prompt`, feeding one token at a time through the
/// KV cache. Returns only the new tokens.
pub fn generate(model: &DecoderLm, prompt: &[u32], cfg: &SamplingConfig) -> Result<Vec<u32>> {
    generate_with(model, prompt, cfg, &mut |_| true)
}

/// [`generate`] that hands each new token to `on_token` as soon as it is sampled (stop tokens
/// included); generation ends early when `on_token` returns `false` (e.g. a client went away).
pub fn generate_with(
    model: &DecoderLm,
    prompt: &[u32],
    cfg: &SamplingConfig,
    on_token: &mut dyn FnMut(u32) -> bool,
) -> Result<Vec<u32>> {
    check_prompt(model, prompt)?;
    let model = model.valid();
    let device = model.embed_tokens.val().device();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut cache = KvCache::new();
    let mut out = Vec::new();
    let mut input = prompt.to_vec();
    for _ in 0..cfg.max_new_tokens {
        let logits = model.forward_cached(ids_tensor(&input, &device), &mut cache);
        let [_, t, v] = logits.dims();
        let last = to_vec(logits.narrow(1, t - 1, 1).reshape([v]))?;
        let next = sample(&last, cfg, &mut rng);
        out.push(next);
        if !on_token(next) || cfg.stop_tokens.contains(&next) {
            break;
        }
        input = vec![next];
    }
    Ok(out)
}

/// Same contract as [`generate`] but recomputes the whole sequence every step (the reference
/// the cached path is tested against).
pub fn generate_uncached(
    model: &DecoderLm,
    prompt: &[u32],
    cfg: &SamplingConfig,
) -> Result<Vec<u32>> {
    check_prompt(model, prompt)?;
    let model = model.valid();
    let device = model.embed_tokens.val().device();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut seq = prompt.to_vec();
    let mut out = Vec::new();
    for _ in 0..cfg.max_new_tokens {
        let logits = model.forward(ids_tensor(&seq, &device));
        let [_, t, v] = logits.dims();
        let last = to_vec(logits.narrow(1, t - 1, 1).reshape([v]))?;
        let next = sample(&last, cfg, &mut rng);
        out.push(next);
        seq.push(next);
        if cfg.stop_tokens.contains(&next) {
            break;
        }
    }
    Ok(out)
}

/// Chat helper: renders `example` as a ChatML prompt (open assistant turn), generates until
/// `<|im_end|>` (added to the stop tokens) and returns the decoded reply without it.
pub fn generate_reply(
    model: &DecoderLm,
    tokenizer: &Tokenizer,
    example: &ChatExample,
    cfg: &SamplingConfig,
) -> Result<String> {
    let prompt = flock_ml_data::chatml::render_prompt(example);
    let enc = tokenizer.encode(prompt, false).map_err(|e| MlError::Tokenizer(e.to_string()))?;
    let mut cfg = cfg.clone();
    let end = tokenizer.token_to_id(flock_ml_data::chatml::IM_END);
    cfg.stop_tokens.extend(end);
    let mut ids = generate(model, enc.get_ids(), &cfg)?;
    if ids.last().is_some_and(|t| Some(*t) == end) {
        ids.pop();
    }
    tokenizer.decode(&ids, true).map_err(|e| MlError::Tokenizer(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_and_tiny_top_p_pick_the_argmax() {
        let logits = [0.1, 2.0, -1.0, 1.9];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(sample(&logits, &SamplingConfig::default(), &mut rng), 1);
        let nucleus = SamplingConfig { temperature: 1.0, top_p: 1e-6, ..Default::default() };
        for _ in 0..20 {
            assert_eq!(sample(&logits, &nucleus, &mut rng), 1);
        }
    }

    #[test]
    fn top_p_never_samples_outside_the_nucleus() {
        // Probabilities ~ [0.64, 0.24, 0.09, 0.03]: top_p = 0.8 keeps the first two.
        let logits = [3.0, 2.0, 1.0, 0.0];
        let cfg = SamplingConfig { temperature: 1.0, top_p: 0.8, ..Default::default() };
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut seen = [0usize; 4];
        for _ in 0..400 {
            seen[sample(&logits, &cfg, &mut rng) as usize] += 1;
        }
        assert!(seen[0] > 0 && seen[1] > 0 && seen[2] == 0 && seen[3] == 0, "{seen:?}");
    }
}
