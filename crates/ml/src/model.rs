//! A Llama/Qwen2-family decoder written on burn-nn: RMSNorm, rotary embeddings (rotate-half, as
//! HF does), grouped-query attention with a causal mask, SwiGLU MLP, tied or untied head.
//!
//! Parameters are named like HF's modules (`layers.{i}.self_attn.q_proj.weight`, …) so that
//! burn's module paths double as LoRA targets. Linear weights are stored the burn way, `[in, out]`.

use burn::module::{Module, Param};
use burn::nn::{Linear, RmsNorm};
use burn::tensor::{activation, module::linear, Device, Distribution, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::DecoderConfig;
use crate::error::{MlError, Result};

/// Additive mask value for future positions (exp of it is exactly 0 in f32).
const MASKED: f32 = -1e9;

/// Self-attention with grouped-query heads.
#[derive(Module, Debug)]
pub struct Attention {
    /// Query projection.
    pub q_proj: Linear,
    /// Key projection.
    pub k_proj: Linear,
    /// Value projection.
    pub v_proj: Linear,
    /// Output projection.
    pub o_proj: Linear,
    /// Number of query heads.
    pub n_heads: usize,
    /// Number of key/value heads.
    pub n_kv_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
}

/// The SwiGLU MLP: `down(silu(gate(x)) * up(x))`.
#[derive(Module, Debug)]
pub struct Mlp {
    /// Gate projection.
    pub gate_proj: Linear,
    /// Up projection.
    pub up_proj: Linear,
    /// Down projection.
    pub down_proj: Linear,
}

/// One pre-norm decoder block.
#[derive(Module, Debug)]
pub struct DecoderLayer {
    /// Norm before attention.
    pub input_layernorm: RmsNorm,
    /// Attention.
    pub self_attn: Attention,
    /// Norm before the MLP.
    pub post_attention_layernorm: RmsNorm,
    /// MLP.
    pub mlp: Mlp,
}

/// The decoder language model.
#[derive(Module, Debug)]
pub struct DecoderLm {
    /// Token embedding `[vocab, hidden]`.
    pub embed_tokens: Param<Tensor<2>>,
    /// Decoder blocks.
    pub layers: Vec<DecoderLayer>,
    /// Final norm.
    pub norm: RmsNorm,
    /// Output head (`None` when tied to the embedding).
    pub lm_head: Option<Linear>,
    /// RoPE base frequency.
    pub rope_theta: f64,
    /// Dropout on the input of LoRA adapters, applied only on an autodiff device (training).
    pub lora_dropout: f64,
}

/// Per-layer keys and values of the positions seen so far (after RoPE), for generation.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    len: usize,
}

impl KvCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of positions cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A cache of batch size `b` from one of batch size 1 (a shared prefix for `b` sequences).
    pub fn repeat_batch(&self, b: usize) -> KvCache {
        let rep = |t: &Tensor<4>| t.clone().repeat_dim(0, b);
        KvCache {
            layers: self.layers.iter().map(|l| l.as_ref().map(|(k, v)| (rep(k), rep(v)))).collect(),
            len: self.len,
        }
    }
}

/// A named host tensor: `(name, shape, row-major values)`.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// Source of HF-layout tensors while building a model: `(name, hf_shape) -> values`.
pub type TensorSource<'a> = dyn FnMut(&str, &[usize]) -> Result<Vec<f32>> + 'a;

fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Reads a tensor back to a host vector.
pub fn to_vec<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.try_into_vec_as::<f32>().map_err(|e| MlError::TensorRead(format!("{e:?}")))
}

fn load_linear(
    src: &mut TensorSource<'_>,
    name: &str,
    d_in: usize,
    d_out: usize,
    bias: bool,
    device: &Device,
) -> Result<Linear> {
    let w = src(&format!("{name}.weight"), &[d_out, d_in])?;
    let weight = Param::from_tensor(tensor(transpose(&w, d_out, d_in), [d_in, d_out], device));
    let bias = if bias {
        let b = src(&format!("{name}.bias"), &[d_out])?;
        Some(Param::from_tensor(tensor(b, [d_out], device)))
    } else {
        None
    };
    Ok(Linear { weight, bias })
}

fn load_norm(
    src: &mut TensorSource<'_>,
    name: &str,
    d: usize,
    eps: f64,
    device: &Device,
) -> Result<RmsNorm> {
    let g = src(name, &[d])?;
    Ok(RmsNorm { gamma: Param::from_tensor(tensor(g, [d], device)), epsilon: eps })
}

fn export_linear(out: &mut Vec<NamedTensor>, name: &str, l: &Linear) -> Result<()> {
    let [d_in, d_out] = l.weight.dims();
    let w = to_vec(l.weight.val())?;
    out.push((format!("{name}.weight"), vec![d_out, d_in], transpose(&w, d_in, d_out)));
    if let Some(b) = &l.bias {
        out.push((format!("{name}.bias"), vec![d_out], to_vec(b.val())?));
    }
    Ok(())
}

/// Standard normal via Box-Muller (rand 0.8 has no normal distribution without `rand_distr`).
pub(crate) fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.gen();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

impl DecoderLm {
    /// Builds the model from HF-layout tensors supplied by `src` (called once per tensor, in
    /// [`DecoderConfig::tensor_shapes`] order, with the expected HF shape).
    pub fn from_source(
        cfg: &DecoderConfig,
        src: &mut TensorSource<'_>,
        device: &Device,
    ) -> Result<Self> {
        cfg.validate()?;
        let (h, i, v, hd) =
            (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size, cfg.head_dim());
        let (nh, nkv, eps) = (cfg.num_attention_heads, cfg.kv_heads(), cfg.rms_norm_eps);
        let embed = src("model.embed_tokens.weight", &[v, h])?;
        let embed_tokens = Param::from_tensor(tensor(embed, [v, h], device));
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{l}");
            let input_layernorm =
                load_norm(src, &format!("{p}.input_layernorm.weight"), h, eps, device)?;
            let a = format!("{p}.self_attn");
            let q_proj =
                load_linear(src, &format!("{a}.q_proj"), h, nh * hd, cfg.qkv_bias(), device)?;
            let k_proj =
                load_linear(src, &format!("{a}.k_proj"), h, nkv * hd, cfg.qkv_bias(), device)?;
            let v_proj =
                load_linear(src, &format!("{a}.v_proj"), h, nkv * hd, cfg.qkv_bias(), device)?;
            let o_proj =
                load_linear(src, &format!("{a}.o_proj"), nh * hd, h, cfg.o_bias(), device)?;
            let post =
                load_norm(src, &format!("{p}.post_attention_layernorm.weight"), h, eps, device)?;
            let m = format!("{p}.mlp");
            let mlp = Mlp {
                gate_proj: load_linear(src, &format!("{m}.gate_proj"), h, i, false, device)?,
                up_proj: load_linear(src, &format!("{m}.up_proj"), h, i, false, device)?,
                down_proj: load_linear(src, &format!("{m}.down_proj"), i, h, false, device)?,
            };
            layers.push(DecoderLayer {
                input_layernorm,
                self_attn: Attention {
                    q_proj,
                    k_proj,
                    v_proj,
                    o_proj,
                    n_heads: nh,
                    n_kv_heads: nkv,
                    head_dim: hd,
                },
                post_attention_layernorm: post,
                mlp,
            });
        }
        let norm = load_norm(src, "model.norm.weight", h, eps, device)?;
        let lm_head = if cfg.tie_word_embeddings {
            None
        } else {
            let w = src("lm_head.weight", &[v, h])?;
            Some(Linear {
                weight: Param::from_tensor(tensor(transpose(&w, v, h), [h, v], device)),
                bias: None,
            })
        };
        Ok(DecoderLm {
            embed_tokens,
            layers,
            norm,
            lm_head,
            rope_theta: cfg.rope_theta,
            lora_dropout: 0.0,
        })
    }

    /// A randomly initialised model (weights `N(0, 0.02²)`, zero biases, unit norms), seeded.
    pub fn random(cfg: &DecoderConfig, seed: u64, device: &Device) -> Result<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut src = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let n: usize = shape.iter().product();
            Ok(if name.ends_with("norm.weight") {
                vec![1.0; n]
            } else if name.ends_with(".bias") {
                vec![0.0; n]
            } else {
                (0..n).map(|_| 0.02 * normal(&mut rng)).collect()
            })
        };
        Self::from_source(cfg, &mut src, device)
    }

    /// The effective weights (LoRA deltas folded in) in HF names, HF shapes and
    /// [`DecoderConfig::tensor_shapes`] order.
    pub fn hf_tensors(&self) -> Result<Vec<NamedTensor>> {
        let mut out = Vec::new();
        let [v, h] = self.embed_tokens.dims();
        out.push((
            "model.embed_tokens.weight".into(),
            vec![v, h],
            to_vec(self.embed_tokens.val())?,
        ));
        for (l, layer) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{l}");
            out.push((
                format!("{p}.input_layernorm.weight"),
                vec![h],
                to_vec(layer.input_layernorm.gamma.val())?,
            ));
            let a = &layer.self_attn;
            export_linear(&mut out, &format!("{p}.self_attn.q_proj"), &a.q_proj)?;
            export_linear(&mut out, &format!("{p}.self_attn.k_proj"), &a.k_proj)?;
            export_linear(&mut out, &format!("{p}.self_attn.v_proj"), &a.v_proj)?;
            export_linear(&mut out, &format!("{p}.self_attn.o_proj"), &a.o_proj)?;
            let post = to_vec(layer.post_attention_layernorm.gamma.val())?;
            out.push((format!("{p}.post_attention_layernorm.weight"), vec![h], post));
            export_linear(&mut out, &format!("{p}.mlp.gate_proj"), &layer.mlp.gate_proj)?;
            export_linear(&mut out, &format!("{p}.mlp.up_proj"), &layer.mlp.up_proj)?;
            export_linear(&mut out, &format!("{p}.mlp.down_proj"), &layer.mlp.down_proj)?;
        }
        out.push(("model.norm.weight".into(), vec![h], to_vec(self.norm.gamma.val())?));
        if let Some(head) = &self.lm_head {
            export_linear(&mut out, "lm_head", head)?;
        }
        Ok(out)
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.embed_tokens.dims()[0]
    }

    /// Logits `[batch, seq, vocab]` for token ids `[batch, seq]` (positions from 0).
    ///
    /// Ids must be below [`DecoderLm::vocab_size`]; the crate's batching and generation check
    /// this before calling.
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        self.forward_inner(ids, 0, None)
    }

    /// Logits for `ids` continuing the positions already in `cache`, which is extended.
    pub fn forward_cached(&self, ids: Tensor<2, Int>, cache: &mut KvCache) -> Tensor<3> {
        let start = cache.len;
        let t = ids.dims()[1];
        let out = self.forward_inner(ids, start, Some(cache));
        cache.len = start + t;
        out
    }

    fn forward_inner(
        &self,
        ids: Tensor<2, Int>,
        start: usize,
        mut cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        let [b, t] = ids.dims();
        let device = ids.device();
        let [_, h] = self.embed_tokens.dims();
        let mut x = self.embed_tokens.val().select(0, ids.reshape([b * t])).reshape([b, t, h]);
        let hd = self.layers.first().map_or(2, |l| l.self_attn.head_dim);
        let (cos, sin) = rope_tables(self.rope_theta, hd, start, t, &device);
        let mask = causal_mask(start, t, &device);
        if let Some(c) = cache.as_deref_mut() {
            c.layers.resize(self.layers.len(), None);
        }
        for (l, layer) in self.layers.iter().enumerate() {
            let slot = cache.as_deref_mut().map(|c| &mut c.layers[l]);
            let h = layer.input_layernorm.forward(x.clone());
            let a = layer.self_attn.forward(h, &cos, &sin, &mask, slot, self.lora_dropout);
            x = x + a;
            let m = layer
                .mlp
                .forward(layer.post_attention_layernorm.forward(x.clone()), self.lora_dropout);
            x = x + m;
        }
        let x = self.norm.forward(x);
        match &self.lm_head {
            Some(head) => head.forward(x),
            None => {
                // A plain 2-D matmul with the transposed embedding: burn's `linear` on the
                // transposed view was ~12x slower (it dominated decoding a 49k-vocab model).
                let [b, t, h] = x.dims();
                let v = self.embed_tokens.dims()[0];
                x.reshape([b * t, h]).matmul(self.embed_tokens.val().transpose()).reshape([b, t, v])
            }
        }
    }
}

/// cos/sin tables `[1, 1, t, head_dim]` for positions `start..start + t` (rotate-half layout).
fn rope_tables(
    theta: f64,
    hd: usize,
    start: usize,
    t: usize,
    device: &Device,
) -> (Tensor<4>, Tensor<4>) {
    let half = hd / 2;
    let inv: Vec<f32> =
        (0..half).map(|i| (1.0 / theta.powf(2.0 * i as f64 / hd as f64)) as f32).collect();
    let mut cos = Vec::with_capacity(t * hd);
    let mut sin = Vec::with_capacity(t * hd);
    for p in start..start + t {
        for j in 0..hd {
            let ang = p as f32 * inv[j % half];
            cos.push(ang.cos());
            sin.push(ang.sin());
        }
    }
    (tensor(cos, [1, 1, t, hd], device), tensor(sin, [1, 1, t, hd], device))
}

/// Additive causal mask `[1, 1, t, start + t]`: query `i` (absolute `start + i`) sees keys `<= start + i`.
fn causal_mask(start: usize, t: usize, device: &Device) -> Tensor<4> {
    let s = start + t;
    let mut m = vec![0.0f32; t * s];
    for i in 0..t {
        for j in (start + i + 1)..s {
            m[i * s + j] = MASKED;
        }
    }
    tensor(m, [1, 1, t, s], device)
}

/// A projection; with a LoRA adapter, dropout `p` and an autodiff input (training) it computes
/// `x·W + b + scale · (dropout(x)·a)·b` as PEFT does, otherwise the composed weight is used.
fn proj(l: &Linear, x: Tensor<3>, p: f64) -> Tensor<3> {
    match l.weight.adapter() {
        Some(ad) if p > 0.0 && x.is_autodiff() => {
            let keep = 1.0 - p;
            let base = linear(x.clone(), l.weight.base(), l.bias.as_ref().map(|b| b.val()));
            let dropped = x.clone() * x.random_like(Distribution::Bernoulli(keep)) / keep;
            let delta = linear(linear(dropped, ad.a.val(), None), ad.b.val(), None);
            base + delta.mul_scalar(ad.scale)
        }
        _ => l.forward(x),
    }
}

fn rotate_half(x: Tensor<4>) -> Tensor<4> {
    let hd = x.dims()[3];
    let half = hd / 2;
    let x1 = x.clone().narrow(3, 0, half);
    let x2 = x.narrow(3, half, half);
    Tensor::cat(vec![x2.neg(), x1], 3)
}

fn apply_rope(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    x.clone() * cos.clone() + rotate_half(x) * sin.clone()
}

impl Attention {
    fn forward(
        &self,
        x: Tensor<3>,
        cos: &Tensor<4>,
        sin: &Tensor<4>,
        mask: &Tensor<4>,
        cache: Option<&mut Option<(Tensor<4>, Tensor<4>)>>,
        p: f64,
    ) -> Tensor<3> {
        let [b, t, _] = x.dims();
        let (nh, nkv, hd) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let q = proj(&self.q_proj, x.clone(), p).reshape([b, t, nh, hd]).swap_dims(1, 2);
        let k = proj(&self.k_proj, x.clone(), p).reshape([b, t, nkv, hd]).swap_dims(1, 2);
        let v = proj(&self.v_proj, x, p).reshape([b, t, nkv, hd]).swap_dims(1, 2);
        let q = apply_rope(q, cos, sin);
        let mut k = apply_rope(k, cos, sin);
        let mut v = v;
        if let Some(slot) = cache {
            if let Some((pk, pv)) = slot.take() {
                k = Tensor::cat(vec![pk, k], 2);
                v = Tensor::cat(vec![pv, v], 2);
            }
            *slot = Some((k.clone(), v.clone()));
        }
        let s = k.dims()[2];
        let rep = nh / nkv;
        if rep > 1 {
            // HF's repeat_kv: query head j uses key/value head j / rep.
            k = k.reshape([b, nkv, 1, s, hd]).repeat_dim(2, rep).reshape([b, nh, s, hd]);
            v = v.reshape([b, nkv, 1, s, hd]).repeat_dim(2, rep).reshape([b, nh, s, hd]);
        }
        let scores = q.matmul(k.swap_dims(2, 3)).div_scalar((hd as f64).sqrt()) + mask.clone();
        let probs = activation::softmax(scores, 3);
        let out = probs.matmul(v).swap_dims(1, 2).reshape([b, t, nh * hd]);
        proj(&self.o_proj, out, p)
    }
}

impl Mlp {
    fn forward(&self, x: Tensor<3>, p: f64) -> Tensor<3> {
        let g = activation::silu(proj(&self.gate_proj, x.clone(), p));
        proj(&self.down_proj, g * proj(&self.up_proj, x, p), p)
    }
}
