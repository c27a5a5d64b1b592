//! LoRA on burn's built-in reparameterization (`LoraAdapter`: effective weight
//! `W + (alpha / r) · a·b` in burn's `[in, out]` layout), with adapters saved and loaded in
//! PEFT's layout (`adapter_config.json` + `adapter_model.safetensors`).
//!
//! PEFT stores `lora_A` as `[r, in]` and `lora_B` as `[out, r]`; burn's factors are
//! `a = lora_Aᵀ` (`[in, r]`) and `b = lora_Bᵀ` (`[r, out]`), so `(a·b)ᵀ = lora_B·lora_A`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use burn::module::{LoraAdapter, Module, Param, Reparameterizer};
use burn::nn::Linear;
use burn::tensor::{Tensor, TensorData};
use flock_ml_core::{Layout, ParamSpec, Update};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{read_file, read_tensor, serialize_f32, write_file};
use crate::error::{MlError, Result};
use crate::model::{to_vec, DecoderLm, NamedTensor, TensorSource};

/// Projections LoRA may target.
pub const LORA_TARGETS: [&str; 7] =
    ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

/// LoRA hyper-parameters, serialized as PEFT's `adapter_config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoraConfig {
    /// Always `"LORA"`.
    pub peft_type: String,
    /// Rank.
    pub r: usize,
    /// Scaling numerator: the delta is scaled by `lora_alpha / r`.
    pub lora_alpha: f64,
    /// Projection names to adapt (`q_proj`, `v_proj`, …).
    pub target_modules: Vec<String>,
    /// Dropout on the adapter input during training (PEFT's `lora_dropout`).
    #[serde(default)]
    pub lora_dropout: f64,
    /// Always `"none"` (biases are not trained).
    #[serde(default = "none")]
    pub bias: String,
    /// Always `"CAUSAL_LM"`.
    #[serde(default = "causal")]
    pub task_type: String,
    /// The base model's name or path.
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    /// Whether PEFT uses rank-stabilized scaling (unsupported when true).
    #[serde(default)]
    pub use_rslora: bool,
    /// PEFT options that change the adapter's meaning; accepted only when absent, null, false
    /// or empty, so an adapter using them fails to load instead of loading wrong.
    #[serde(flatten)]
    pub unsupported: std::collections::BTreeMap<String, serde_json::Value>,
}

/// PEFT `adapter_config.json` keys this engine refuses unless they hold a neutral value.
const GUARDED_KEYS: [&str; 6] = [
    "use_dora",
    "rank_pattern",
    "alpha_pattern",
    "layers_to_transform",
    "modules_to_save",
    "fan_in_fan_out",
];

fn is_neutral(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null | serde_json::Value::Bool(false) => true,
        serde_json::Value::Object(m) => m.is_empty(),
        serde_json::Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn none() -> String {
    "none".into()
}
fn causal() -> String {
    "CAUSAL_LM".into()
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            peft_type: "LORA".into(),
            r: 8,
            lora_alpha: 16.0,
            target_modules: vec!["q_proj".into(), "v_proj".into()],
            lora_dropout: 0.0,
            bias: none(),
            task_type: causal(),
            base_model_name_or_path: None,
            use_rslora: false,
            unsupported: Default::default(),
        }
    }
}

impl LoraConfig {
    /// Checks the config is one this engine supports.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(MlError::BadConfig(m));
        if self.peft_type != "LORA" {
            return bad(format!("peft_type `{}` is not LORA", self.peft_type));
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return bad(format!("lora_dropout {} outside [0, 1)", self.lora_dropout));
        }
        if self.r == 0 || self.r > 4096 {
            return bad(format!("rank {} out of range", self.r));
        }
        if !self.lora_alpha.is_finite() || self.use_rslora {
            return bad("lora_alpha must be finite and rslora is unsupported".into());
        }
        for (k, v) in &self.unsupported {
            if GUARDED_KEYS.contains(&k.as_str()) && !is_neutral(v) {
                return bad(format!("unsupported PEFT option `{k}` = {v}"));
            }
        }
        if self.target_modules.is_empty() {
            return bad("no target_modules".into());
        }
        if let Some(t) = self.target_modules.iter().find(|t| !LORA_TARGETS.contains(&t.as_str())) {
            return bad(format!("unsupported target module `{t}`"));
        }
        Ok(())
    }

    fn scale(&self) -> f64 {
        self.lora_alpha / self.r as f64
    }

    fn targets(&self, path: &str) -> bool {
        self.target_modules.iter().any(|t| path.ends_with(&format!(".{t}.weight")))
    }
}

/// burn module path (`layers.3.self_attn.q_proj.weight`) → PEFT prefix
/// (`base_model.model.model.layers.3.self_attn.q_proj`).
fn peft_prefix(path: &str) -> String {
    format!("base_model.model.model.{}", path.trim_end_matches(".weight"))
}

/// LoRA factors `(a, b)` in burn's layout (`[in, r]`, `[r, out]`), row-major.
type Factors = (Vec<f32>, Vec<f32>);

/// Attaches adapters: preset factors when given (loading), else PEFT's init
/// (`a ~ U(±1/√in)`, `b = 0`); freezes every base parameter.
struct Attach<'a> {
    cfg: &'a LoraConfig,
    rng: ChaCha8Rng,
    preset: Option<HashMap<String, Factors>>,
}

impl Reparameterizer for Attach<'_> {
    type Reparam = LoraAdapter;

    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<LoraAdapter>) {
        let shape = param.lazy_shape();
        let device = param.lazy_device();
        let base = param.set_require_grad(false);
        if D != 2 || !self.cfg.targets(path) {
            return (base, None);
        }
        let (d_in, d_out, r) = (shape[0], shape[1], self.cfg.r);
        let (a, b) = match self.preset.as_mut().and_then(|p| p.remove(path)) {
            Some(ab) => ab,
            None => {
                let bound = 1.0 / (d_in as f32).sqrt();
                let a = (0..d_in * r).map(|_| self.rng.gen_range(-bound..bound)).collect();
                (a, vec![0.0; r * d_out])
            }
        };
        let a = Tensor::<2>::from_data(TensorData::new(a, [d_in, r]), &device);
        let b = Tensor::<2>::from_data(TensorData::new(b, [r, d_out]), &device);
        let adapter = LoraAdapter {
            a: Param::from_tensor(a),
            b: Param::from_tensor(b),
            scale: self.cfg.scale(),
        };
        (base, Some(adapter))
    }
}

/// Attaches fresh LoRA adapters (seeded) to the configured projections and freezes the base.
pub fn apply_lora(model: DecoderLm, cfg: &LoraConfig, seed: u64) -> Result<DecoderLm> {
    cfg.validate()?;
    let attach = Attach { cfg, rng: ChaCha8Rng::seed_from_u64(seed), preset: None };
    let mut model = model.apply_reparameterization(attach);
    model.lora_dropout = cfg.lora_dropout;
    Ok(model)
}

/// Every projection LoRA can target: `(burn path of its weight, layer)`, in layer order.
fn linears(model: &DecoderLm) -> Vec<(String, &Linear)> {
    let mut out = Vec::new();
    for (i, l) in model.layers.iter().enumerate() {
        let (a, m) = (&l.self_attn, &l.mlp);
        let named = [
            ("self_attn.q_proj", &a.q_proj),
            ("self_attn.k_proj", &a.k_proj),
            ("self_attn.v_proj", &a.v_proj),
            ("self_attn.o_proj", &a.o_proj),
            ("mlp.gate_proj", &m.gate_proj),
            ("mlp.up_proj", &m.up_proj),
            ("mlp.down_proj", &m.down_proj),
        ];
        out.extend(named.map(|(name, lin)| (format!("layers.{i}.{name}.weight"), lin)));
    }
    out
}

/// Every adapted projection of `model`: `(burn path, adapter)`.
fn adapters(model: &DecoderLm) -> Vec<(String, &LoraAdapter)> {
    linears(model).into_iter().filter_map(|(p, l)| l.weight.adapter().map(|a| (p, a))).collect()
}

/// The adapter tensors in PEFT names and layouts, in layer order.
pub fn peft_tensors(model: &DecoderLm) -> Result<Vec<NamedTensor>> {
    let mut out = Vec::new();
    for (path, ad) in adapters(model) {
        let [d_in, r] = ad.a.dims();
        let [_, d_out] = ad.b.dims();
        let a = to_vec(ad.a.val().transpose())?; // [r, in]
        let b = to_vec(ad.b.val().transpose())?; // [out, r]
        let p = peft_prefix(&path);
        out.push((format!("{p}.lora_A.weight"), vec![r, d_in], a));
        out.push((format!("{p}.lora_B.weight"), vec![d_out, r], b));
    }
    Ok(out)
}

/// Writes `adapter_config.json` and `adapter_model.safetensors` into `dir`.
pub fn save_peft_adapter(model: &DecoderLm, cfg: &LoraConfig, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| MlError::io(dir, e))?;
    let json = serde_json::to_string_pretty(cfg).map_err(|e| MlError::BadConfig(e.to_string()))?;
    write_file(&dir.join("adapter_config.json"), json.as_bytes())?;
    write_file(&dir.join("adapter_model.safetensors"), &serialize_f32(&peft_tensors(model)?, None)?)
}

/// Reads a PEFT adapter directory and attaches it to `base` (whose base weights get frozen).
/// Every targeted projection must have both factors with the right shapes.
pub fn load_peft_adapter(base: DecoderLm, dir: &Path) -> Result<(DecoderLm, LoraConfig)> {
    let text = read_file(&dir.join("adapter_config.json"))?;
    let cfg: LoraConfig =
        serde_json::from_slice(&text).map_err(|e| MlError::BadConfig(e.to_string()))?;
    cfg.validate()?;
    let bytes = read_file(&dir.join("adapter_model.safetensors"))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| MlError::SafeTensors(e.to_string()))?;
    let model = attach_from(base, &cfg, &mut |name, shape| read_tensor(&st, name, shape))?;
    Ok((model, cfg))
}

/// Attaches adapters whose PEFT-layout factors come from `src(peft_name, peft_shape)`.
fn attach_from(base: DecoderLm, cfg: &LoraConfig, src: &mut TensorSource<'_>) -> Result<DecoderLm> {
    cfg.validate()?;
    let mut preset = HashMap::new();
    for (path, lin) in linears(&base) {
        let [d_in, d_out] = lin.weight.dims();
        if !cfg.targets(&path) {
            continue;
        }
        let p = peft_prefix(&path);
        let a_t = src(&format!("{p}.lora_A.weight"), &[cfg.r, d_in])?;
        let b_t = src(&format!("{p}.lora_B.weight"), &[d_out, cfg.r])?;
        preset.insert(path, (transpose(&a_t, cfg.r, d_in), transpose(&b_t, d_out, cfg.r)));
    }
    let attach = Attach { cfg, rng: ChaCha8Rng::seed_from_u64(0), preset: Some(preset) };
    let mut model = base.apply_reparameterization(attach);
    model.lora_dropout = cfg.lora_dropout;
    Ok(model)
}

/// The adapters as a framework-neutral [`Update`] (PEFT names and shapes, layer order): what a
/// LoRA trainer submits and what federated aggregation averages.
pub fn lora_to_update(model: &DecoderLm) -> Result<Update> {
    let tensors = peft_tensors(model)?;
    let specs = tensors.iter().map(|(n, s, _)| ParamSpec::new(n.clone(), s.clone())).collect();
    let layout = Layout::new(specs).map_err(|e| MlError::InvalidData(e.to_string()))?;
    let values = tensors.into_iter().flat_map(|(_, _, v)| v).collect();
    Update::new(Arc::new(layout), values).map_err(|e| MlError::InvalidData(e.to_string()))
}

/// Attaches the adapters held in `update` (as produced by [`lora_to_update`]) to `base`.
pub fn lora_from_update(base: DecoderLm, cfg: &LoraConfig, update: &Update) -> Result<DecoderLm> {
    let layout = update.layout();
    attach_from(base, cfg, &mut |name, shape| {
        let i = layout.index_of(name).ok_or_else(|| MlError::MissingTensor(name.to_string()))?;
        let spec = &layout.params()[i];
        if spec.shape != shape {
            return Err(MlError::ShapeMismatch {
                name: name.to_string(),
                expected: shape.to_vec(),
                found: spec.shape.clone(),
            });
        }
        Ok(update.values()[layout.range(i)].to_vec())
    })
}

fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = v[r * cols + c];
        }
    }
    out
}

/// Folds the adapters into the base weights (`W += (alpha / r)·B·A`) and makes every
/// parameter trainable again.
pub fn merge_lora(model: DecoderLm) -> DecoderLm {
    let mut model = model.materialize().set_require_grad(true);
    model.lora_dropout = 0.0;
    model
}
