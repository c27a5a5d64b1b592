//! MLP classifiers and regressors for tabular data and sliding-window time series, with their
//! parameters exported to and imported from ml-core's framework-neutral [`Update`].
//!
//! The neutral layout follows PyTorch's `nn.Linear`: `layers.{i}.weight` is `[out, in]` and
//! `layers.{i}.bias` is `[out]`, in layer order.

use std::sync::Arc;
use std::time::Instant;

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{activation, Device, Int, Tensor, TensorData};
use flock_ml_core::{Layout, ParamSpec, Update};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{MlError, Result};
use crate::model::to_vec;
use crate::train::{clip_grad_norm, lr_at, TrainConfig, TrainMetrics};

/// What the MLP predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MlpTask {
    /// Class logits; trained with cross-entropy, scored by accuracy.
    Classification {
        /// Number of classes.
        classes: usize,
    },
    /// Real values; trained with mean squared error, scored by RMSE.
    Regression {
        /// Number of outputs.
        outputs: usize,
    },
}

impl MlpTask {
    fn outputs(self) -> usize {
        match self {
            MlpTask::Classification { classes } => classes,
            MlpTask::Regression { outputs } => outputs,
        }
    }
}

/// A ReLU MLP.
#[derive(Module, Debug)]
pub struct Mlp {
    /// Linear layers (ReLU between them, none after the last).
    pub layers: Vec<Linear>,
}

/// A dataset of fixed-width rows.
#[derive(Debug, Clone, PartialEq)]
pub struct TabularData {
    /// Row-major features, `rows × n_features`.
    pub features: Vec<f32>,
    /// Features per row.
    pub n_features: usize,
    /// Row-major targets: one class index (as f32) per row for classification, or
    /// `rows × outputs` values for regression.
    pub targets: Vec<f32>,
    /// Targets per row (1 for classification).
    pub n_targets: usize,
}

impl TabularData {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.features.len() / self.n_features.max(1)
    }

    fn check(&self, task: MlpTask, inputs: usize) -> Result<()> {
        let rows = self.rows();
        let want_t = match task {
            MlpTask::Classification { .. } => 1,
            MlpTask::Regression { outputs } => outputs,
        };
        if self.n_features != inputs || self.n_targets != want_t || rows == 0 {
            return Err(MlError::InvalidData("dataset width does not match the model".into()));
        }
        if self.features.len() != rows * inputs || self.targets.len() != rows * want_t {
            return Err(MlError::InvalidData("ragged dataset".into()));
        }
        if let MlpTask::Classification { classes } = task {
            if self.targets.iter().any(|&c| c < 0.0 || c as usize >= classes || c.fract() != 0.0) {
                return Err(MlError::InvalidData("class label out of range".into()));
            }
        }
        Ok(())
    }

    fn select(&self, idx: &[usize], device: &Device) -> (Tensor<2>, Vec<f32>) {
        let mut x = Vec::with_capacity(idx.len() * self.n_features);
        let mut y = Vec::with_capacity(idx.len() * self.n_targets);
        for &i in idx {
            x.extend_from_slice(&self.features[i * self.n_features..(i + 1) * self.n_features]);
            y.extend_from_slice(&self.targets[i * self.n_targets..(i + 1) * self.n_targets]);
        }
        (Tensor::from_data(TensorData::new(x, [idx.len(), self.n_features]), device), y)
    }
}

/// Turns a series into rows of `window` consecutive values, each labelled with the value
/// `horizon` steps after the window's end (`horizon = 1`: the next value).
pub fn sliding_windows(series: &[f32], window: usize, horizon: usize) -> TabularData {
    let mut features = Vec::new();
    let mut targets = Vec::new();
    if window > 0 && horizon > 0 && series.len() >= window + horizon {
        for s in 0..=series.len() - window - horizon {
            features.extend_from_slice(&series[s..s + window]);
            targets.push(series[s + window + horizon - 1]);
        }
    }
    TabularData { features, n_features: window, targets, n_targets: 1 }
}

impl Mlp {
    /// A seeded MLP `inputs → hidden… → task outputs`, PyTorch's default init
    /// (`U(±1/√fan_in)` for weights and biases).
    pub fn new(inputs: usize, hidden: &[usize], task: MlpTask, seed: u64, device: &Device) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut dims = vec![inputs];
        dims.extend_from_slice(hidden);
        dims.push(task.outputs());
        let layers = dims
            .windows(2)
            .map(|w| {
                let (i, o) = (w[0], w[1]);
                let bound = 1.0 / (i.max(1) as f32).sqrt();
                let mut u = |n: usize| -> Vec<f32> {
                    (0..n).map(|_| rng.gen_range(-bound..bound)).collect()
                };
                let wv = u(i * o);
                let bv = u(o);
                Linear {
                    weight: Param::from_tensor(Tensor::from_data(
                        TensorData::new(wv, [i, o]),
                        device,
                    )),
                    bias: Some(Param::from_tensor(Tensor::from_data(
                        TensorData::new(bv, [o]),
                        device,
                    ))),
                }
            })
            .collect();
        Mlp { layers }
    }

    /// Outputs `[rows, outputs]` for inputs `[rows, inputs]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let n = self.layers.len();
        self.layers.iter().enumerate().fold(x, |h, (i, l)| {
            let h = l.forward(h);
            if i + 1 < n {
                activation::relu(h)
            } else {
                h
            }
        })
    }

    /// The neutral layout: `layers.{i}.weight` `[out, in]`, `layers.{i}.bias` `[out]`.
    pub fn layout(&self) -> Layout {
        let mut specs = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            let [d_in, d_out] = l.weight.dims();
            specs.push(ParamSpec::new(format!("layers.{i}.weight"), vec![d_out, d_in]));
            specs.push(ParamSpec::new(format!("layers.{i}.bias"), vec![d_out]));
        }
        Layout::new(specs).expect("names are distinct")
    }

    /// Exports the parameters as a flat update in [`Mlp::layout`] order.
    pub fn to_update(&self) -> Result<Update> {
        let mut values = Vec::new();
        for l in &self.layers {
            let [d_in, d_out] = l.weight.dims();
            let w = to_vec(l.weight.val())?;
            for o in 0..d_out {
                values.extend((0..d_in).map(|i| w[i * d_out + o]));
            }
            if let Some(b) = &l.bias {
                values.extend(to_vec(b.val())?);
            }
        }
        Update::new(Arc::new(self.layout()), values)
            .map_err(|e| MlError::InvalidData(e.to_string()))
    }

    /// Replaces the parameters with `update`'s; its layout must equal [`Mlp::layout`] exactly.
    pub fn load_update(self, update: &Update) -> Result<Self> {
        let layout = self.layout();
        if update.layout().as_ref() != &layout {
            let (want, got) = (layout.params(), update.layout().params());
            let found =
                got.iter().zip(want).find(|(g, w)| g != w).or(got.first().zip(want.first()));
            return Err(match found {
                Some((g, w)) if g.name == w.name => MlError::ShapeMismatch {
                    name: w.name.clone(),
                    expected: w.shape.clone(),
                    found: g.shape.clone(),
                },
                _ => MlError::InvalidData("update layout does not match the model".into()),
            });
        }
        let v = update.values();
        let mut off = 0;
        let layers = self
            .layers
            .into_iter()
            .map(|l| {
                let [d_in, d_out] = l.weight.dims();
                let device = l.weight.val().device();
                let mut w = vec![0.0; d_in * d_out];
                for o in 0..d_out {
                    for i in 0..d_in {
                        w[i * d_out + o] = v[off + o * d_in + i];
                    }
                }
                off += d_in * d_out;
                let b = v[off..off + d_out].to_vec();
                off += d_out;
                Linear {
                    weight: Param::from_tensor(Tensor::from_data(
                        TensorData::new(w, [d_in, d_out]),
                        &device,
                    )),
                    bias: Some(Param::from_tensor(Tensor::from_data(
                        TensorData::new(b, [d_out]),
                        &device,
                    ))),
                }
            })
            .collect();
        Ok(Mlp { layers })
    }

    fn loss(&self, x: Tensor<2>, y: &[f32], task: MlpTask) -> Tensor<1> {
        let out = self.forward(x);
        let device = out.device();
        let [n, k] = out.dims();
        match task {
            MlpTask::Classification { .. } => {
                let labels: Vec<i64> = y.iter().map(|&c| c as i64).collect();
                let labels = Tensor::<2, Int>::from_data(TensorData::new(labels, [n, 1]), &device);
                activation::log_softmax(out, 1).gather(1, labels).mean().neg()
            }
            MlpTask::Regression { .. } => {
                let t = Tensor::<2>::from_data(TensorData::new(y.to_vec(), [n, k]), &device);
                (out - t).square().mean()
            }
        }
    }
}

/// Trains an MLP (parameters on an autodiff device) with AdamW on seeded shuffled mini-batches.
pub fn train_mlp(
    mut model: Mlp,
    data: &TabularData,
    task: MlpTask,
    cfg: &TrainConfig,
) -> Result<(Mlp, TrainMetrics)> {
    let inputs = model.layers.first().map_or(0, |l| l.weight.dims()[0]);
    data.check(task, inputs)?;
    let device = model.layers[0].weight.val().device();
    let mut optim = AdamWConfig::new().with_weight_decay(cfg.weight_decay).init();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut order: Vec<usize> = Vec::new();
    let mut losses = Vec::with_capacity(cfg.steps);
    let start = Instant::now();
    for step in 0..cfg.steps {
        let mut idx = Vec::with_capacity(cfg.batch_size);
        while idx.len() < cfg.batch_size.max(1) {
            if order.is_empty() {
                order = (0..data.rows()).collect();
                order.shuffle(&mut rng);
            }
            idx.push(order.pop().expect("refilled above"));
        }
        let (x, y) = data.select(&idx, &device);
        let loss = model.loss(x, &y, task);
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
    }
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    let tail = (losses.len() / 10).max(1).min(losses.len().max(1));
    let final_loss = losses.iter().rev().take(tail).sum::<f64>() / tail as f64;
    let samples = (cfg.steps * cfg.batch_size.max(1)) as f64;
    let metrics = TrainMetrics {
        losses,
        final_loss,
        tokens_per_sec: samples / seconds,
        samples_per_sec: samples / seconds,
        seconds,
    };
    Ok((model, metrics))
}

/// Scores of an MLP on a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct MlpEval {
    /// Mean cross-entropy (classification) or mean squared error (regression).
    pub loss: f64,
    /// Fraction of rows classified correctly (classification only).
    pub accuracy: Option<f64>,
    /// Root mean squared error over all outputs (regression only).
    pub rmse: Option<f64>,
}

/// Evaluates an MLP without gradients.
pub fn evaluate_mlp(model: &Mlp, data: &TabularData, task: MlpTask) -> Result<MlpEval> {
    let inputs = model.layers.first().map_or(0, |l| l.weight.dims()[0]);
    data.check(task, inputs)?;
    let model = model.valid();
    let device = model.layers[0].weight.val().device();
    let idx: Vec<usize> = (0..data.rows()).collect();
    let (x, y) = data.select(&idx, &device);
    let out = to_vec(model.forward(x.clone()))?;
    let loss = model.loss(x, &y, task).into_scalar::<f32>() as f64;
    Ok(match task {
        MlpTask::Classification { classes } => {
            let correct = out
                .chunks(classes)
                .zip(&y)
                .filter(|(row, &label)| {
                    let arg =
                        row.iter().enumerate().fold(0, |b, (i, &v)| if v > row[b] { i } else { b });
                    arg == label as usize
                })
                .count();
            MlpEval { loss, accuracy: Some(correct as f64 / data.rows() as f64), rmse: None }
        }
        MlpTask::Regression { .. } => {
            let mse = out.iter().zip(&y).map(|(p, t)| ((p - t) as f64).powi(2)).sum::<f64>()
                / y.len() as f64;
            MlpEval { loss, accuracy: None, rmse: Some(mse.sqrt()) }
        }
    })
}
