//! Language-model training (masked next-token cross-entropy, AdamW, warmup + cosine schedule,
//! global-norm clipping, seeded data order) and evaluation (mean target-token loss, bits per byte).

use std::io::IsTerminal;
use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{activation, Device, Int, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{MlError, Result};
use crate::model::{DecoderLm, KvCache};
use crate::tokenizer::LmExample;

/// Score given to an invalid, oversized or non-finite evaluation result: a finite sentinel so
/// fixed-point ledgers can store it; every real BPB is far below it.
pub const WORST_BPB: f64 = 1e9;

/// Hyper-parameters of a training run (serde: missing fields take the defaults).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Optimizer steps.
    pub steps: usize,
    /// Sequences per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warmup steps.
    pub warmup_steps: usize,
    /// Final learning rate as a fraction of `lr` (cosine decay target).
    pub min_lr_ratio: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f32,
    /// Clip the global gradient norm to this value (`None`: no clipping).
    pub max_grad_norm: Option<f64>,
    /// Seed of the data order.
    pub seed: u64,
    /// Hide the progress bar.
    pub quiet: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 100,
            batch_size: 8,
            lr: 1e-3,
            warmup_steps: 10,
            min_lr_ratio: 0.1,
            weight_decay: 0.0,
            max_grad_norm: Some(1.0),
            seed: 0,
            quiet: true,
        }
    }
}

/// What a training run reports.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainMetrics {
    /// Loss (mean nats per target token) of every step.
    pub losses: Vec<f64>,
    /// Mean loss over the last 10% of steps (at least one).
    pub final_loss: f64,
    /// Target tokens per second of wall time (rows per second for MLPs).
    pub tokens_per_sec: f64,
    /// Sequences per second of wall time.
    pub samples_per_sec: f64,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Learning rate at `step` (0-based): linear warmup to `lr`, then cosine decay to
/// `lr * min_lr_ratio` at the last step.
pub fn lr_at(cfg: &TrainConfig, step: usize) -> f64 {
    if step < cfg.warmup_steps {
        return cfg.lr * (step + 1) as f64 / cfg.warmup_steps as f64;
    }
    let span = cfg.steps.saturating_sub(cfg.warmup_steps).max(1) as f64;
    let progress = ((step - cfg.warmup_steps) as f64 / span).min(1.0);
    let min = cfg.lr * cfg.min_lr_ratio;
    min + 0.5 * (cfg.lr - min) * (1.0 + (std::f64::consts::PI * progress).cos())
}

struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    sum: f64,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            self.sum += g.square().sum().into_scalar::<f32>() as f64;
        }
    }
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.factor));
        }
    }
}

/// Global L2 norm of the gradients of `module`'s parameters.
pub fn grad_norm<M: Module>(module: &M, grads: &GradientsParams) -> f64 {
    let mut v = SquaredNorm { grads, sum: 0.0 };
    module.visit(&mut v);
    v.sum.sqrt()
}

/// Scales all gradients so their global norm is at most `max_norm`; returns the norm before.
pub fn clip_grad_norm<M: Module>(module: &M, grads: &mut GradientsParams, max_norm: f64) -> f64 {
    let norm = grad_norm(module, grads);
    if norm.is_finite() && norm > max_norm {
        module.visit(&mut Scale { grads, factor: max_norm / (norm + 1e-6) });
    }
    norm
}

/// A padded batch: ids `[b, t]`, next-token targets `[b, t-1, 1]`, mask `[b, t-1]`.
struct Batch {
    ids: Tensor<2, Int>,
    targets: Tensor<3, Int>,
    mask: Tensor<2>,
    n_targets: usize,
    n_bytes: u64,
}

fn make_batch(examples: &[&LmExample], vocab: usize, device: &Device) -> Result<Batch> {
    let b = examples.len();
    let t = examples.iter().map(|e| e.ids.len()).max().unwrap_or(0).max(2);
    let mut ids = vec![0i64; b * t];
    let mut targets = vec![0i64; b * (t - 1)];
    let mut mask = vec![0f32; b * (t - 1)];
    let (mut n_targets, mut n_bytes) = (0, 0);
    for (r, e) in examples.iter().enumerate() {
        for (i, &id) in e.ids.iter().enumerate() {
            if id as usize >= vocab {
                return Err(MlError::InvalidData(format!("token id {id} >= vocab {vocab}")));
            }
            ids[r * t + i] = id as i64;
            if i > 0 {
                targets[r * (t - 1) + i - 1] = id as i64;
                if e.target[i] {
                    mask[r * (t - 1) + i - 1] = 1.0;
                    n_targets += 1;
                    n_bytes += e.bytes[i] as u64;
                }
            }
        }
    }
    Ok(Batch {
        ids: Tensor::from_data(TensorData::new(ids, [b, t]), device),
        targets: Tensor::from_data(TensorData::new(targets, [b, t - 1, 1]), device),
        mask: Tensor::from_data(TensorData::new(mask, [b, t - 1]), device),
        n_targets,
        n_bytes,
    })
}

/// Sum over masked positions of the next-token negative log-likelihood (nats), as a 1-element tensor.
fn nll_sum(model: &DecoderLm, batch: &Batch) -> Tensor<1> {
    nll_from_logits(model.forward(batch.ids.clone()), batch)
}

fn nll_from_logits(logits: Tensor<3>, batch: &Batch) -> Tensor<1> {
    let [b, t] = batch.ids.dims();
    let logits = logits.narrow(1, 0, t - 1);
    let logp = activation::log_softmax(logits, 2);
    let picked = logp.gather(2, batch.targets.clone()).reshape([b, t - 1]);
    (picked * batch.mask.clone()).sum().neg()
}

fn progress(total: usize, quiet: bool) -> ProgressBar {
    let pb = ProgressBar::new(total as u64);
    if quiet || !std::io::stderr().is_terminal() {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed}<{eta}]")
    {
        pb.set_style(style);
    }
    pb
}

/// Trains `model` (whose trainable parameters must live on an autodiff device) on `data`.
///
/// Each step draws `batch_size` sequences in a seeded shuffled order (reshuffled every epoch),
/// pads them on the right (padding is never a target, and the causal mask keeps it from
/// affecting earlier positions), and minimizes the mean cross-entropy over target tokens.
pub fn train_lm(
    mut model: DecoderLm,
    data: &[LmExample],
    cfg: &TrainConfig,
) -> Result<(DecoderLm, TrainMetrics)> {
    if data.iter().all(|e| e.target_tokens() == 0) || cfg.batch_size == 0 {
        return Err(MlError::InvalidData("no target tokens to train on".into()));
    }
    let device = model.embed_tokens.val().device();
    device.seed(cfg.seed); // dropout masks
    let vocab = model.vocab_size();
    let mut optim = AdamWConfig::new().with_weight_decay(cfg.weight_decay).init();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut order: Vec<usize> = Vec::new();
    let (mut losses, mut tokens, mut samples) = (Vec::with_capacity(cfg.steps), 0usize, 0usize);
    let pb = progress(cfg.steps, cfg.quiet);
    let start = Instant::now();
    for step in 0..cfg.steps {
        let mut picked = Vec::with_capacity(cfg.batch_size);
        while picked.len() < cfg.batch_size {
            if order.is_empty() {
                order = (0..data.len()).collect();
                order.shuffle(&mut rng);
            }
            picked.push(&data[order.pop().expect("refilled above")]);
        }
        let batch = make_batch(&picked, vocab, &device)?;
        if batch.n_targets == 0 {
            continue;
        }
        let loss = nll_sum(&model, &batch).div_scalar(batch.n_targets as f64);
        let value = loss.clone().into_scalar::<f32>() as f64;
        if !value.is_finite() {
            return Err(MlError::Diverged { step, loss: value });
        }
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        if let Some(max) = cfg.max_grad_norm {
            clip_grad_norm(&model, &mut grads, max);
        }
        model = optim.step(lr_at(cfg, step), model, grads);
        losses.push(value);
        tokens += batch.n_targets;
        samples += picked.len();
        pb.set_message(format!("loss {value:.4}"));
        pb.inc(1);
    }
    pb.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    let tail = (losses.len() / 10).max(1).min(losses.len());
    let final_loss = if tail == 0 {
        f64::NAN
    } else {
        losses[losses.len() - tail..].iter().sum::<f64>() / tail as f64
    };
    let metrics = TrainMetrics {
        losses,
        final_loss,
        tokens_per_sec: tokens as f64 / seconds,
        samples_per_sec: samples as f64 / seconds,
        seconds,
    };
    Ok((model, metrics))
}

/// Result of evaluating a language model on a set.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvalReport {
    /// Mean cross-entropy (nats) per target token.
    pub loss: f64,
    /// Number of target tokens `T`.
    pub target_tokens: u64,
    /// UTF-8 bytes `B` of the target tokens.
    pub target_bytes: u64,
    /// Bits per byte: `loss × T / ln 2 / B`.
    pub bpb: f64,
    /// Target tokens scored per second.
    pub tokens_per_sec: f64,
}

impl EvalReport {
    /// The BPB as a score: [`WORST_BPB`] when it is not a finite non-negative number.
    pub fn score(&self) -> f64 {
        if self.bpb.is_finite() && self.bpb >= 0.0 && self.target_bytes > 0 {
            self.bpb.min(WORST_BPB)
        } else {
            WORST_BPB
        }
    }
}

/// Shared prefixes shorter than this are recomputed rather than cached.
const MIN_SHARED_PREFIX: usize = 8;

/// Number of leading tokens every example shares before anything is predicted as a target
/// (a constant system prompt, say), leaving at least one token per example after it.
fn shared_prefix(data: &[LmExample]) -> usize {
    let Some(first) = data.first() else { return 0 };
    let mut p = first.ids.len();
    for e in data {
        let lcp = first.ids.iter().zip(&e.ids).take_while(|(a, b)| a == b).count();
        // Predicting token `i` reads position `i - 1`: tokens `0..=p` must all be non-targets.
        let first_target = e.target.iter().position(|&t| t).unwrap_or(e.ids.len());
        p = p.min(lcp).min(first_target.saturating_sub(1)).min(e.ids.len().saturating_sub(1));
    }
    p
}

/// Evaluates `model` (no gradients) on `data` in batches: mean target-token loss and bits per byte.
///
/// A prefix shared by every example before its first target (FLock's constant system prompt)
/// is run once and its keys/values reused for every batch.
pub fn evaluate_lm(model: &DecoderLm, data: &[LmExample], batch_size: usize) -> Result<EvalReport> {
    evaluate_lm_with(model, data, batch_size, true)
}

/// [`evaluate_lm`] with shared-prefix caching switchable (off: every token is recomputed).
pub fn evaluate_lm_with(
    model: &DecoderLm,
    data: &[LmExample],
    batch_size: usize,
    share_prefix: bool,
) -> Result<EvalReport> {
    let model = model.valid();
    let device = model.embed_tokens.val().device();
    let vocab = model.vocab_size();
    let start = Instant::now();
    let p = if share_prefix { shared_prefix(data) } else { 0 };
    let (prefix, suffixes) = if p >= MIN_SHARED_PREFIX {
        let ids: Vec<i64> = data[0].ids[..p].iter().map(|&i| i as i64).collect();
        if ids.iter().any(|&i| i as usize >= vocab) {
            return Err(MlError::InvalidData("token id out of vocabulary".into()));
        }
        let mut cache = KvCache::new();
        model.forward_cached(Tensor::from_data(TensorData::new(ids, [1, p]), &device), &mut cache);
        let cut = |e: &LmExample| LmExample {
            ids: e.ids[p..].to_vec(),
            target: e.target[p..].to_vec(),
            bytes: e.bytes[p..].to_vec(),
        };
        (Some(cache), data.iter().map(cut).collect::<Vec<_>>())
    } else {
        (None, Vec::new())
    };
    let refs: Vec<&LmExample> =
        if prefix.is_some() { suffixes.iter().collect() } else { data.iter().collect() };
    let (mut nats, mut t, mut b) = (0f64, 0u64, 0u64);
    for chunk in refs.chunks(batch_size.max(1)) {
        let batch = make_batch(chunk, vocab, &device)?;
        if batch.n_targets == 0 {
            continue;
        }
        let logits = match &prefix {
            Some(cache) => {
                model.forward_cached(batch.ids.clone(), &mut cache.repeat_batch(chunk.len()))
            }
            None => model.forward(batch.ids.clone()),
        };
        nats += nll_from_logits(logits, &batch).into_scalar::<f32>() as f64;
        t += batch.n_targets as u64;
        b += batch.n_bytes;
    }
    if t == 0 || b == 0 {
        return Err(MlError::InvalidData("evaluation set has no target tokens".into()));
    }
    let loss = nats / t as f64;
    Ok(EvalReport {
        loss,
        target_tokens: t,
        target_bytes: b,
        bpb: nats / std::f64::consts::LN_2 / b as f64,
        tokens_per_sec: t as f64 / start.elapsed().as_secs_f64().max(1e-9),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lr_schedule_warms_up_then_decays_to_the_floor() {
        let cfg = TrainConfig {
            steps: 110,
            warmup_steps: 10,
            lr: 1.0,
            min_lr_ratio: 0.1,
            ..Default::default()
        };
        assert!((lr_at(&cfg, 0) - 0.1).abs() < 1e-12);
        assert!((lr_at(&cfg, 9) - 1.0).abs() < 1e-12);
        assert!((lr_at(&cfg, 10) - 1.0).abs() < 1e-12);
        assert!((lr_at(&cfg, 60) - 0.55).abs() < 1e-12);
        assert!((lr_at(&cfg, 110) - 0.1).abs() < 1e-12);
        let mut prev = f64::INFINITY;
        for s in 10..=110 {
            assert!(lr_at(&cfg, s) <= prev);
            prev = lr_at(&cfg, s);
        }
    }

    #[test]
    fn worst_score_for_non_finite_results() {
        let r = EvalReport {
            loss: f64::NAN,
            target_tokens: 1,
            target_bytes: 1,
            bpb: f64::NAN,
            tokens_per_sec: 0.0,
        };
        assert_eq!(r.score(), WORST_BPB);
        let r = EvalReport { bpb: 1.5, ..r };
        assert_eq!(r.score(), 1.5);
        let r = EvalReport { target_bytes: 0, ..r };
        assert_eq!(r.score(), WORST_BPB);
    }
}
