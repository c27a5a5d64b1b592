//! The HuggingFace `config.json` of a Llama/Qwen2-family decoder.

use serde::{Deserialize, Serialize};

use crate::error::{MlError, Result};

/// Upper bound on the parameter count a config may describe (guards against hostile configs).
pub const MAX_PARAMS: u64 = 4_000_000_000;

fn default_rms_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_max_pos() -> usize {
    2048
}
fn default_act() -> String {
    "silu".to_string()
}

/// A token id written as a number, a list of numbers (the first is kept) or null.
fn first_id<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<u32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Ids {
        One(u32),
        Many(Vec<u32>),
    }
    Ok(match Option::<Ids>::deserialize(d)? {
        Some(Ids::One(id)) => Some(id),
        Some(Ids::Many(ids)) => ids.first().copied(),
        None => None,
    })
}

/// A decoder config with HuggingFace's field names (`LlamaConfig` / `Qwen2Config`).
///
/// Unknown fields are ignored on load; optional ones take HF's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecoderConfig {
    /// `"llama"`, `"qwen2"` or `"mistral"`.
    pub model_type: String,
    /// Model width.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads (grouped-query attention); defaults to `num_attention_heads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<usize>,
    /// Per-head width; defaults to `hidden_size / num_attention_heads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Longest sequence the model accepts.
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    /// Epsilon of every RMSNorm.
    #[serde(default = "default_rms_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base frequency.
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// Whether `lm_head` shares the embedding matrix.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Llama's switch for biases on q/k/v/o; Qwen2 always has q/k/v biases and ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_bias: Option<bool>,
    /// Llama's switch for MLP biases (unsupported when true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlp_bias: Option<bool>,
    /// MLP activation; only `"silu"` is supported.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Beginning-of-sequence token id (a list in the file keeps its first entry).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "first_id")]
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token id (a list in the file, as Llama 3 writes, keeps its first entry;
    /// [`crate::chat::ChatModel`] reads the whole list for stopping).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "first_id")]
    pub eos_token_id: Option<u32>,
    /// HF architecture names, e.g. `["Qwen2ForCausalLM"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
    /// Storage dtype written by HF (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch_dtype: Option<String>,
}

impl DecoderConfig {
    /// A tiny Qwen2-style config (q/k/v biases, tied embeddings) for tests and `model init`.
    pub fn tiny(vocab_size: usize) -> Self {
        DecoderConfig {
            model_type: "qwen2".into(),
            hidden_size: 64,
            intermediate_size: 172,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: Some(2),
            head_dim: None,
            vocab_size,
            max_position_embeddings: 512,
            rms_norm_eps: 1e-6,
            rope_theta: 10_000.0,
            tie_word_embeddings: true,
            attention_bias: None,
            mlp_bias: None,
            hidden_act: "silu".into(),
            bos_token_id: None,
            eos_token_id: None,
            architectures: vec!["Qwen2ForCausalLM".into()],
            torch_dtype: Some("float32".into()),
        }
    }

    /// Parses and validates a `config.json`.
    pub fn from_json(text: &str) -> Result<Self> {
        let cfg: DecoderConfig =
            serde_json::from_str(text).map_err(|e| MlError::BadConfig(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Serializes to pretty JSON in HF's layout.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("config serializes")
    }

    /// Number of key/value heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Per-head width.
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Whether q/k/v projections carry a bias.
    pub fn qkv_bias(&self) -> bool {
        self.model_type == "qwen2" || self.attention_bias.unwrap_or(false)
    }

    /// Whether the output projection carries a bias.
    pub fn o_bias(&self) -> bool {
        self.model_type != "qwen2" && self.attention_bias.unwrap_or(false)
    }

    /// Total number of parameters the config describes.
    pub fn num_params(&self) -> u64 {
        let total: u128 = self
            .tensor_shapes()
            .iter()
            .map(|(_, s)| s.iter().fold(1u128, |a, &d| a.saturating_mul(d as u128)))
            .sum();
        total.min(u64::MAX as u128) as u64
    }

    /// Every tensor of the checkpoint, in HF names and HF shapes (Linear weights `[out, in]`),
    /// in a fixed order.
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (h, i, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let (q, kv) =
            (self.num_attention_heads * self.head_dim(), self.kv_heads() * self.head_dim());
        let mut out = vec![("model.embed_tokens.weight".to_string(), vec![v, h])];
        for l in 0..self.num_hidden_layers {
            let p = format!("model.layers.{l}");
            out.push((format!("{p}.input_layernorm.weight"), vec![h]));
            for (name, o) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
                out.push((format!("{p}.self_attn.{name}.weight"), vec![o, h]));
                if self.qkv_bias() {
                    out.push((format!("{p}.self_attn.{name}.bias"), vec![o]));
                }
            }
            out.push((format!("{p}.self_attn.o_proj.weight"), vec![h, q]));
            if self.o_bias() {
                out.push((format!("{p}.self_attn.o_proj.bias"), vec![h]));
            }
            out.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
            out.push((format!("{p}.mlp.gate_proj.weight"), vec![i, h]));
            out.push((format!("{p}.mlp.up_proj.weight"), vec![i, h]));
            out.push((format!("{p}.mlp.down_proj.weight"), vec![h, i]));
        }
        out.push(("model.norm.weight".to_string(), vec![h]));
        if !self.tie_word_embeddings {
            out.push(("lm_head.weight".to_string(), vec![v, h]));
        }
        out
    }

    /// Checks that the config describes a model this engine can build.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(MlError::BadConfig(m));
        if !matches!(self.model_type.as_str(), "llama" | "qwen2" | "mistral") {
            return bad(format!("unsupported model_type `{}`", self.model_type));
        }
        if self.hidden_act != "silu" {
            return bad(format!("unsupported hidden_act `{}`", self.hidden_act));
        }
        if self.mlp_bias == Some(true) {
            return bad("mlp_bias = true is unsupported".into());
        }
        let dims = [
            self.hidden_size,
            self.intermediate_size,
            self.num_hidden_layers,
            self.num_attention_heads,
            self.kv_heads(),
            self.vocab_size,
            self.max_position_embeddings,
        ];
        if dims.contains(&0) {
            return bad("sizes must be positive".into());
        }
        if self.head_dim.is_none() && self.hidden_size % self.num_attention_heads != 0 {
            return bad("hidden_size must be divisible by num_attention_heads".into());
        }
        if self.num_attention_heads % self.kv_heads() != 0 {
            return bad("num_attention_heads must be divisible by num_key_value_heads".into());
        }
        if self.head_dim() == 0 || self.head_dim() % 2 != 0 {
            return bad("head_dim must be even and positive".into());
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return bad("rms_norm_eps must be positive".into());
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return bad("rope_theta must be > 1".into());
        }
        // Bounded sizes first, so the parameter count below cannot overflow.
        if dims.iter().any(|&d| d > 1 << 24) || self.num_hidden_layers > 1024 {
            return bad("a size is absurdly large".into());
        }
        if self.head_dim.is_some_and(|d| d > 1 << 16) {
            return bad("head_dim is absurdly large".into());
        }
        if self.num_params() > MAX_PARAMS {
            return bad(format!("{} parameters exceed the limit {MAX_PARAMS}", self.num_params()));
        }
        Ok(())
    }
}
