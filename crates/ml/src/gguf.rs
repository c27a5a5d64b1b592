//! GGUF checkpoints (llama.cpp's format) turned into our HF layout: metadata → `config.json`,
//! tensors dequantized to f32 through candle-core and renamed to HF names, the GGUF tokenizer
//! → `tokenizer.json` + `tokenizer_config.json` (with the chat template).
//!
//! # Untrusted input
//! The file is walked once by [`prescan`] before candle parses it, with hard limits on counts,
//! string and array lengths, nesting, tensor ranks and sizes, and every tensor's byte range is
//! checked against the file length (a truncated file fails here, by name). Candle then parses
//! a header already known to be within bounds, and every tensor is checked against the shape
//! the config implies before it is read.
//!
//! # Rotary layout
//! llama.cpp's converter permutes the rows of `q_proj`/`k_proj` for the `llama` architecture
//! (per head, HF's rotate-half layout `[x0..x_{d/2}, y0..y_{d/2}]` becomes interleaved pairs
//! `[x0, y0, x1, y1, …]`, for ggml's "normal" RoPE). Our decoder uses HF's rotate-half RoPE,
//! so [`unpermute_rows`] undoes it. `qwen2` GGUFs use the NeoX RoPE and are not permuted.
//!
//! Every tensor is dequantized to f32 here, once (so candle's `CANDLE_DEQUANTIZE_ALL`, which
//! only affects its own quantized matmuls, plays no part); the burn decoder runs in f32.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// The candle-core this module reads GGUF with (for writing test files and inspecting GGUFs).
pub use candle_core;
use candle_core::quantized::gguf_file::{Content, Value};
use serde_json::json;

use crate::config::DecoderConfig;
use crate::error::{MlError, Result};
use crate::import::Staged;

/// Limits on what a GGUF header may declare.
mod limits {
    /// Metadata key/value pairs.
    pub(super) const MAX_KV: u64 = 1 << 16;
    /// Tensors.
    pub(super) const MAX_TENSORS: u64 = 1 << 16;
    /// Bytes of one metadata string (chat templates are a few KiB, merges a few bytes).
    pub(super) const MAX_STRING: u64 = 16 << 20;
    /// Elements of one metadata array (vocabularies are ≤ 256k tokens, merges ≤ a few 100k).
    pub(super) const MAX_ARRAY: u64 = 1 << 22;
    /// Elements of all metadata arrays together.
    pub(super) const MAX_TOTAL_ELEMS: u64 = 1 << 24;
    /// Dimension of a tensor.
    pub(super) const MAX_DIM: u64 = 1 << 31;
    /// Elements of one tensor.
    pub(super) const MAX_TENSOR_ELEMS: u64 = 1 << 34;
    /// Length of a tensor name.
    pub(super) const MAX_NAME: u64 = 1 << 10;
}

/// One tensor as declared in the header (dims in GGUF order, innermost first).
#[derive(Debug, Clone)]
pub struct TensorDecl {
    /// Name (llama.cpp layout).
    pub name: String,
    /// Dimensions as stored (innermost first).
    pub dims: Vec<u64>,
    /// ggml type id.
    pub ggml_type: u32,
}

/// What [`prescan`] learned about a GGUF file.
#[derive(Debug, Clone)]
pub struct Prescan {
    /// Format version (2 or 3).
    pub version: u32,
    /// Declared tensors, in file order.
    pub tensors: Vec<TensorDecl>,
    /// Length of the file in bytes.
    pub file_len: u64,
}

/// The name of a ggml type id, and `(block elements, block bytes)` for the types candle can
/// dequantize.
pub fn ggml_type_info(t: u32) -> (&'static str, Option<(u64, u64)>) {
    match t {
        0 => ("F32", Some((1, 4))),
        1 => ("F16", Some((1, 2))),
        2 => ("Q4_0", Some((32, 18))),
        3 => ("Q4_1", Some((32, 20))),
        6 => ("Q5_0", Some((32, 22))),
        7 => ("Q5_1", Some((32, 24))),
        8 => ("Q8_0", Some((32, 34))),
        9 => ("Q8_1", Some((32, 36))),
        10 => ("Q2_K", Some((256, 84))),
        11 => ("Q3_K", Some((256, 110))),
        12 => ("Q4_K", Some((256, 144))),
        13 => ("Q5_K", Some((256, 176))),
        14 => ("Q6_K", Some((256, 210))),
        15 => ("Q8_K", Some((256, 292))),
        30 => ("BF16", Some((1, 2))),
        16 => ("IQ2_XXS", None),
        17 => ("IQ2_XS", None),
        18 => ("IQ3_XXS", None),
        19 => ("IQ1_S", None),
        20 => ("IQ4_NL", None),
        21 => ("IQ3_S", None),
        22 => ("IQ2_S", None),
        23 => ("IQ4_XS", None),
        24 => ("I8", None),
        25 => ("I16", None),
        26 => ("I32", None),
        27 => ("I64", None),
        28 => ("F64", None),
        29 => ("IQ1_M", None),
        34 => ("TQ1_0", None),
        35 => ("TQ2_0", None),
        39 => ("MXFP4", None),
        _ => ("unknown", None),
    }
}

fn gguf_err(m: impl Into<String>) -> MlError {
    MlError::Gguf(m.into())
}

struct Walker<R> {
    r: R,
    pos: u64,
    len: u64,
    elems: u64,
}

impl<R: Read + Seek> Walker<R> {
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N]> {
        if self.pos + N as u64 > self.len {
            return Err(gguf_err(format!(
                "unexpected end of file at byte {} (truncated?)",
                self.pos
            )));
        }
        let mut b = [0u8; N];
        self.r
            .read_exact(&mut b)
            .map_err(|e| gguf_err(format!("read at byte {}: {e}", self.pos)))?;
        self.pos += N as u64;
        Ok(b)
    }
    fn u32(&mut self) -> Result<u32> {
        self.bytes::<4>().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64> {
        self.bytes::<8>().map(u64::from_le_bytes)
    }
    fn skip(&mut self, n: u64) -> Result<()> {
        if n > self.len - self.pos {
            return Err(gguf_err(format!(
                "unexpected end of file at byte {} (truncated?)",
                self.pos
            )));
        }
        let n = i64::try_from(n).map_err(|_| gguf_err("skip too large"))?;
        self.r.seek(SeekFrom::Current(n)).map_err(|e| gguf_err(e.to_string()))?;
        self.pos += n as u64;
        Ok(())
    }
    fn string_len(&mut self, max: u64, what: &str) -> Result<u64> {
        let n = self.u64()?;
        if n > max {
            return Err(gguf_err(format!("{what}: string of {n} bytes exceeds the limit {max}")));
        }
        Ok(n)
    }
    fn string(&mut self, max: u64, what: &str) -> Result<String> {
        let n = self.string_len(max, what)?;
        if n > self.len - self.pos {
            return Err(gguf_err(format!("{what}: string runs past the end of the file")));
        }
        let mut v = vec![0u8; n as usize];
        self.r.read_exact(&mut v).map_err(|e| gguf_err(e.to_string()))?;
        self.pos += n;
        Ok(String::from_utf8_lossy(&v).into_owned())
    }
    /// Skips one metadata value of type `t`; arrays may not nest.
    fn skip_value(&mut self, t: u32, key: &str, in_array: bool) -> Result<()> {
        match t {
            0 | 1 | 7 => self.skip(1),
            2 | 3 => self.skip(2),
            4..=6 => self.skip(4),
            10..=12 => self.skip(8),
            8 => {
                let n = self.string_len(limits::MAX_STRING, key)?;
                self.skip(n)
            }
            9 if !in_array => {
                let et = self.u32()?;
                let n = self.u64()?;
                if n > limits::MAX_ARRAY {
                    return Err(gguf_err(format!(
                        "metadata `{key}`: array of {n} elements exceeds the limit {}",
                        limits::MAX_ARRAY
                    )));
                }
                self.elems += n;
                if self.elems > limits::MAX_TOTAL_ELEMS {
                    return Err(gguf_err("metadata arrays hold too many elements in total"));
                }
                let fixed = match et {
                    0 | 1 | 7 => Some(1),
                    2 | 3 => Some(2),
                    4..=6 => Some(4),
                    10..=12 => Some(8),
                    _ => None,
                };
                match fixed {
                    Some(size) => self.skip(n * size),
                    None => (0..n).try_for_each(|_| self.skip_value(et, key, true)),
                }
            }
            9 => Err(gguf_err(format!("metadata `{key}`: nested arrays are not supported"))),
            other => Err(gguf_err(format!("metadata `{key}`: unknown value type {other}"))),
        }
    }
}

/// Walks a GGUF header without trusting it: magic, version, bounded metadata (skipped) and
/// tensor declarations; checks every tensor's type is one that can be dequantized and its bytes
/// lie inside the file.
pub fn prescan(path: &Path) -> Result<Prescan> {
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => MlError::MissingFile(path.to_path_buf()),
        _ => MlError::io(path, e),
    })?;
    let len = file.metadata().map_err(|e| MlError::io(path, e))?.len();
    let mut w = Walker { r: BufReader::new(file), pos: 0, len, elems: 0 };
    if w.bytes::<4>().ok().as_ref() != Some(b"GGUF") {
        return Err(gguf_err("not a GGUF file (bad magic)"));
    }
    let version = w.u32()?;
    if !(2..=3).contains(&version) {
        return Err(gguf_err(format!("unsupported GGUF version {version} (2 and 3 are read)")));
    }
    let n_tensors = w.u64()?;
    let n_kv = w.u64()?;
    if n_tensors > limits::MAX_TENSORS || n_kv > limits::MAX_KV {
        return Err(gguf_err(format!(
            "header declares {n_tensors} tensors and {n_kv} metadata entries (limits {} and {})",
            limits::MAX_TENSORS,
            limits::MAX_KV
        )));
    }
    let mut alignment = 32u64;
    for _ in 0..n_kv {
        let key = w.string(limits::MAX_NAME, "metadata key")?;
        let t = w.u32()?;
        if key == "general.alignment" && t == 4 {
            alignment = w.u32()? as u64;
            if alignment == 0 || !alignment.is_power_of_two() || alignment > 1 << 16 {
                return Err(gguf_err(format!("bad general.alignment {alignment}")));
            }
        } else {
            w.skip_value(t, &key, false)?;
        }
    }
    let mut tensors = Vec::with_capacity(n_tensors as usize);
    let mut ranges = Vec::with_capacity(n_tensors as usize);
    for _ in 0..n_tensors {
        let name = w.string(limits::MAX_NAME, "tensor name")?;
        let rank = w.u32()?;
        if rank == 0 || rank > 4 {
            return Err(gguf_err(format!("tensor `{name}` has rank {rank}")));
        }
        let mut dims = Vec::with_capacity(rank as usize);
        let mut elems: u64 = 1;
        for _ in 0..rank {
            let d = w.u64()?;
            if d == 0 || d > limits::MAX_DIM {
                return Err(gguf_err(format!("tensor `{name}` has a dimension of {d}")));
            }
            elems = elems.saturating_mul(d);
            dims.push(d);
        }
        if elems > limits::MAX_TENSOR_ELEMS {
            return Err(gguf_err(format!("tensor `{name}` has {elems} elements")));
        }
        let ggml_type = w.u32()?;
        let offset = w.u64()?;
        let (type_name, block) = ggml_type_info(ggml_type);
        let Some((block_elems, block_bytes)) = block else {
            return Err(MlError::UnsupportedQuantization {
                tensor: name,
                dtype: format!("{type_name} ({ggml_type})"),
            });
        };
        if elems % block_elems != 0 || dims[0] % block_elems != 0 {
            return Err(gguf_err(format!(
                "tensor `{name}`: {elems} elements do not fill {type_name} blocks of {block_elems}"
            )));
        }
        ranges.push((name.clone(), offset, elems / block_elems * block_bytes));
        tensors.push(TensorDecl { name, dims, ggml_type });
    }
    let data_start = w.pos.div_ceil(alignment) * alignment;
    for (name, offset, bytes) in ranges {
        let end = data_start.checked_add(offset).and_then(|s| s.checked_add(bytes));
        if end.is_none_or(|e| e > len) {
            return Err(gguf_err(format!(
                "tensor `{name}` ({bytes} bytes at data offset {offset}) runs past the end of the {len}-byte file (truncated?)"
            )));
        }
    }
    let mut seen = HashSet::new();
    if let Some(dup) = tensors.iter().find(|t| !seen.insert(t.name.as_str())) {
        return Err(gguf_err(format!("tensor `{}` is declared twice", dup.name)));
    }
    Ok(Prescan { version, tensors, file_len: len })
}

/// The HF name of a llama.cpp tensor name (`blk.3.attn_q.weight` →
/// `model.layers.3.self_attn.q_proj.weight`); `None` for names with no HF counterpart here.
pub fn gguf_to_hf_name(name: &str) -> Option<String> {
    let fixed = match name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, kind) = rest.rsplit_once('.')?;
    if kind != "weight" && kind != "bias" {
        return None;
    }
    let hf = match module {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{kind}"))
}

/// Undoes llama.cpp's Q/K row permutation, in place of a copy: `values` holds `n_heads · head_dim`
/// rows of `cols` values; within each head, GGUF row `2i + j` is HF row `j · head_dim/2 + i`.
pub fn unpermute_rows(values: &[f32], n_heads: usize, head_dim: usize, cols: usize) -> Vec<f32> {
    let half = head_dim / 2;
    let mut out = vec![0.0; values.len()];
    for h in 0..n_heads {
        for i in 0..half {
            for j in 0..2 {
                let src = (h * head_dim + 2 * i + j) * cols;
                let dst = (h * head_dim + j * half + i) * cols;
                out[dst..dst + cols].copy_from_slice(&values[src..src + cols]);
            }
        }
    }
    out
}

/// The inverse of [`unpermute_rows`] (what llama.cpp's converter does), for tests and writers.
pub fn permute_rows(values: &[f32], n_heads: usize, head_dim: usize, cols: usize) -> Vec<f32> {
    let half = head_dim / 2;
    let mut out = vec![0.0; values.len()];
    for h in 0..n_heads {
        for i in 0..half {
            for j in 0..2 {
                let dst = (h * head_dim + 2 * i + j) * cols;
                let src = (h * head_dim + j * half + i) * cols;
                out[dst..dst + cols].copy_from_slice(&values[src..src + cols]);
            }
        }
    }
    out
}

fn meta_u64(md: &HashMap<String, Value>, key: &str) -> Result<Option<u64>> {
    let bad = || gguf_err(format!("metadata `{key}` is not a non-negative integer"));
    Ok(match md.get(key) {
        None => None,
        Some(v) => Some(match *v {
            Value::U8(x) => x as u64,
            Value::U16(x) => x as u64,
            Value::U32(x) => x as u64,
            Value::U64(x) => x,
            Value::I8(x) => u64::try_from(x).map_err(|_| bad())?,
            Value::I16(x) => u64::try_from(x).map_err(|_| bad())?,
            Value::I32(x) => u64::try_from(x).map_err(|_| bad())?,
            Value::I64(x) => u64::try_from(x).map_err(|_| bad())?,
            _ => return Err(bad()),
        }),
    })
}

fn meta_usize(md: &HashMap<String, Value>, key: &str) -> Result<Option<usize>> {
    meta_u64(md, key)?
        .map(|v| usize::try_from(v).map_err(|_| gguf_err(format!("`{key}` = {v} is too large"))))
        .transpose()
}

fn meta_f64(md: &HashMap<String, Value>, key: &str) -> Result<Option<f64>> {
    Ok(match md.get(key) {
        None => None,
        // The shortest decimal that reads back as the same f32 (1e-5, not 9.99999974e-6), as
        // HF's config.json has it.
        Some(Value::F32(x)) => Some(x.to_string().parse::<f64>().unwrap_or(*x as f64)),
        Some(Value::F64(x)) => Some(*x),
        Some(_) => return Err(gguf_err(format!("metadata `{key}` is not a float"))),
    })
}

fn meta_str<'a>(md: &'a HashMap<String, Value>, key: &str) -> Result<Option<&'a str>> {
    match md.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(gguf_err(format!("metadata `{key}` is not a string"))),
    }
}

fn meta_bool(md: &HashMap<String, Value>, key: &str) -> Option<bool> {
    match md.get(key) {
        Some(Value::Bool(b)) => Some(*b),
        _ => None,
    }
}

fn meta_strings<'a>(md: &'a HashMap<String, Value>, key: &str) -> Result<Option<Vec<&'a str>>> {
    match md.get(key) {
        None => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.as_str()),
                _ => Err(gguf_err(format!("metadata `{key}` holds a non-string"))),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(_) => Err(gguf_err(format!("metadata `{key}` is not an array"))),
    }
}

fn meta_ints(md: &HashMap<String, Value>, key: &str) -> Result<Option<Vec<i64>>> {
    match md.get(key) {
        None => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match *v {
                Value::I32(x) => Ok(x as i64),
                Value::U32(x) => Ok(x as i64),
                Value::I8(x) => Ok(x as i64),
                Value::U8(x) => Ok(x as i64),
                Value::I16(x) => Ok(x as i64),
                Value::U16(x) => Ok(x as i64),
                Value::I64(x) => Ok(x),
                _ => Err(gguf_err(format!("metadata `{key}` holds a non-integer"))),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(_) => Err(gguf_err(format!("metadata `{key}` is not an array"))),
    }
}

/// The config a GGUF file's metadata describes (the architecture must be `llama` or `qwen2`).
fn config_from_metadata(
    md: &HashMap<String, Value>,
    decls: &HashMap<&str, &TensorDecl>,
) -> Result<DecoderConfig> {
    let arch = meta_str(md, "general.architecture")?
        .ok_or_else(|| gguf_err("missing metadata `general.architecture`"))?;
    let (model_type, class) = match arch {
        "llama" => ("llama", "LlamaForCausalLM"),
        "qwen2" => ("qwen2", "Qwen2ForCausalLM"),
        other => return Err(MlError::UnsupportedArchitecture(format!("{other} (GGUF)"))),
    };
    let key = |k: &str| format!("{arch}.{k}");
    let need = |k: &str| -> Result<usize> {
        meta_usize(md, &key(k))?.ok_or_else(|| gguf_err(format!("missing metadata `{}`", key(k))))
    };
    if md.get(&key("attention.head_count_kv")).is_some_and(|v| matches!(v, Value::Array(_))) {
        return Err(MlError::UnsupportedArchitecture(format!(
            "{arch} with per-layer key/value head counts"
        )));
    }
    if let Some(t) = meta_str(md, &key("rope.scaling.type"))? {
        if t != "none" {
            return Err(MlError::UnsupportedArchitecture(format!(
                "{arch} with `{t}` RoPE scaling"
            )));
        }
    }
    if decls.contains_key("rope_freqs.weight") {
        return Err(MlError::UnsupportedArchitecture(format!(
            "{arch} with RoPE frequency factors (rope_freqs.weight)"
        )));
    }
    let hidden = need("embedding_length")?;
    let heads = need("attention.head_count")?;
    let embd = decls
        .get("token_embd.weight")
        .ok_or_else(|| MlError::MissingTensor("token_embd.weight".into()))?;
    if embd.dims.len() != 2 {
        return Err(gguf_err("token_embd.weight is not a matrix"));
    }
    let vocab = embd.dims[1] as usize;
    if let Some(v) = meta_usize(md, &key("vocab_size"))? {
        if v != vocab {
            return Err(gguf_err(format!(
                "`{}` = {v} but token_embd.weight has {vocab} rows",
                key("vocab_size")
            )));
        }
    }
    let head_dim = meta_usize(md, &key("attention.key_length"))?;
    if let (Some(k), Some(v)) = (head_dim, meta_usize(md, &key("attention.value_length"))?) {
        if k != v {
            return Err(MlError::UnsupportedArchitecture(format!(
                "{arch} with key_length {k} != value_length {v}"
            )));
        }
    }
    let hd = head_dim.unwrap_or(hidden / heads.max(1));
    if let Some(rot) = meta_usize(md, &key("rope.dimension_count"))? {
        if rot != hd {
            return Err(MlError::UnsupportedArchitecture(format!(
                "{arch} with partial rotary embeddings ({rot} of {hd} dims)"
            )));
        }
    }
    let has_bias = decls.contains_key("blk.0.attn_q.bias");
    let cfg = DecoderConfig {
        model_type: model_type.into(),
        hidden_size: hidden,
        intermediate_size: need("feed_forward_length")?,
        num_hidden_layers: need("block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: Some(
            meta_usize(md, &key("attention.head_count_kv"))?.unwrap_or(heads),
        ),
        head_dim: head_dim.filter(|&d| heads == 0 || d * heads != hidden),
        vocab_size: vocab,
        max_position_embeddings: meta_usize(md, &key("context_length"))?.unwrap_or(2048),
        rms_norm_eps: meta_f64(md, &key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-6),
        rope_theta: meta_f64(md, &key("rope.freq_base"))?.unwrap_or(10_000.0),
        tie_word_embeddings: !decls.contains_key("output.weight"),
        attention_bias: (model_type == "llama" && has_bias).then_some(true),
        mlp_bias: None,
        hidden_act: "silu".into(),
        bos_token_id: meta_u64(md, "tokenizer.ggml.bos_token_id")?.map(|v| v as u32),
        eos_token_id: meta_u64(md, "tokenizer.ggml.eos_token_id")?.map(|v| v as u32),
        architectures: vec![class.into()],
        torch_dtype: Some("float32".into()),
    };
    cfg.validate()?;
    Ok(cfg)
}

/// Pre-tokenizer regexes of llama.cpp's pre-tokenizer types, as HF tokenizer.json writes them.
const REGEX_QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const REGEX_LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn byte_level(add_prefix_space: bool, trim_offsets: bool, use_regex: bool) -> serde_json::Value {
    json!({"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": trim_offsets, "use_regex": use_regex})
}

/// `(normalizer, pre_tokenizer)` of HF's tokenizer.json for a llama.cpp `tokenizer.ggml.pre`.
fn pre_tokenizer(pre: &str) -> Result<(serde_json::Value, serde_json::Value)> {
    let split = |re: &str| json!({"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false});
    Ok(match pre {
        "default" | "gpt2" | "gpt-2" => (serde_json::Value::Null, byte_level(false, true, true)),
        // llama.cpp gives these the GPT-2 regex after splitting off each digit (HF: Digits).
        "smollm" | "starcoder" | "refact" | "codeshell" => (
            serde_json::Value::Null,
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true},
                byte_level(false, true, true),
            ]}),
        ),
        "qwen2" => (
            json!({"type": "NFC"}),
            json!({"type": "Sequence", "pretokenizers": [split(REGEX_QWEN2), byte_level(false, false, false)]}),
        ),
        "llama3" | "llama-bpe" | "smaug-bpe" => (
            serde_json::Value::Null,
            json!({"type": "Sequence", "pretokenizers": [split(REGEX_LLAMA3), byte_level(false, true, false)]}),
        ),
        other => {
            return Err(MlError::Tokenizer(format!(
                "unsupported GGUF pre-tokenizer `{other}` (supported: gpt2, smollm, starcoder, qwen2, llama3)"
            )))
        }
    })
}

/// HF `tokenizer.json` and `tokenizer_config.json` from the GGUF tokenizer metadata
/// (`tokenizer.ggml.model = "gpt2"`, byte-level BPE).
fn tokenizer_files(
    md: &HashMap<String, Value>,
    context: usize,
    warnings: &mut Vec<String>,
) -> Result<(String, String)> {
    let model = meta_str(md, "tokenizer.ggml.model")?.unwrap_or("missing");
    if model != "gpt2" {
        return Err(MlError::Tokenizer(format!(
            "unsupported GGUF tokenizer model `{model}` (only byte-level BPE, `gpt2`, is converted)"
        )));
    }
    let tokens = meta_strings(md, "tokenizer.ggml.tokens")?
        .ok_or_else(|| gguf_err("missing metadata `tokenizer.ggml.tokens`"))?;
    let merges = meta_strings(md, "tokenizer.ggml.merges")?.unwrap_or_default();
    let types = meta_ints(md, "tokenizer.ggml.token_type")?;
    if types.as_ref().is_some_and(|t| t.len() != tokens.len()) {
        return Err(gguf_err("tokenizer.ggml.token_type and tokens differ in length"));
    }
    let pre = meta_str(md, "tokenizer.ggml.pre")?.unwrap_or("default");
    let (normalizer, pre_tok) = pre_tokenizer(pre)?;
    let mut vocab = serde_json::Map::with_capacity(tokens.len());
    let mut dups = 0usize;
    for (id, t) in tokens.iter().enumerate() {
        if vocab.contains_key(*t) {
            dups += 1;
        } else {
            vocab.insert(t.to_string(), json!(id));
        }
    }
    if dups > 0 {
        warnings.push(format!("{dups} duplicate token strings kept only their first id"));
    }
    let merges: Vec<serde_json::Value> = merges
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| json!([a, b]))
                .ok_or_else(|| gguf_err(format!("merge `{m}` is not two tokens")))
        })
        .collect::<Result<_>>()?;
    // llama_token_type: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    let mut added = Vec::new();
    for (id, &ty) in types.iter().flatten().enumerate() {
        if matches!(ty, 2..=4) && vocab.get(tokens[id]) == Some(&json!(id)) {
            added.push(json!({
                "id": id, "content": tokens[id], "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": ty != 4,
            }));
        }
    }
    let token_at = |key: &str| -> Result<Option<String>> {
        Ok(meta_u64(md, key)?.and_then(|id| tokens.get(id as usize)).map(|s| s.to_string()))
    };
    let tok = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": pre_tok,
        "post_processor": byte_level(true, false, true),
        "decoder": byte_level(true, true, true),
        "model": {
            // Byte-level BPE covers every input: no unknown token in the model itself.
            "type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false,
            "byte_fallback": meta_bool(md, "tokenizer.ggml.byte_fallback").unwrap_or(false),
            "ignore_merges": meta_bool(md, "tokenizer.ggml.ignore_merges").unwrap_or(false),
            "vocab": vocab, "merges": merges,
        },
    });
    let mut cfg = serde_json::Map::new();
    cfg.insert("tokenizer_class".into(), json!("GPT2Tokenizer"));
    cfg.insert("model_max_length".into(), json!(context));
    cfg.insert("clean_up_tokenization_spaces".into(), json!(false));
    for (name, key) in [
        ("bos_token", "tokenizer.ggml.bos_token_id"),
        ("eos_token", "tokenizer.ggml.eos_token_id"),
        ("unk_token", "tokenizer.ggml.unknown_token_id"),
        ("pad_token", "tokenizer.ggml.padding_token_id"),
    ] {
        if let Some(t) = token_at(key)? {
            cfg.insert(name.into(), json!(t));
        }
    }
    for (name, key) in [
        ("add_bos_token", "tokenizer.ggml.add_bos_token"),
        ("add_eos_token", "tokenizer.ggml.add_eos_token"),
    ] {
        cfg.insert(name.into(), json!(meta_bool(md, key).unwrap_or(false)));
    }
    if let Some(t) = meta_str(md, "tokenizer.chat_template")? {
        cfg.insert("chat_template".into(), json!(t));
    }
    let tok = serde_json::to_string(&tok).map_err(|e| MlError::Tokenizer(e.to_string()))?;
    let cfg = serde_json::to_string_pretty(&serde_json::Value::Object(cfg))
        .map_err(|e| MlError::Tokenizer(e.to_string()))?;
    Ok((tok, cfg))
}

/// Reads a GGUF file into our HF layout: config from metadata, every tensor dequantized to f32
/// with HF names and shapes (Q/K rows un-permuted for `llama`), tokenizer files.
pub(crate) fn stage_gguf(path: &Path) -> Result<Staged> {
    let scan = prescan(path)?;
    let file = std::fs::File::open(path).map_err(|e| MlError::io(path, e))?;
    let mut reader = BufReader::new(file);
    let content = Content::read(&mut reader).map_err(|e| gguf_err(e.to_string()))?;
    let md = &content.metadata;
    let decls: HashMap<&str, &TensorDecl> =
        scan.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let config = config_from_metadata(md, &decls)?;
    let mut warnings = Vec::new();
    let (tokenizer_json, tokenizer_config) =
        tokenizer_files(md, config.max_position_embeddings, &mut warnings)?;

    // HF name → GGUF name; every GGUF tensor must map to something the model uses.
    let mut by_hf: HashMap<String, &str> = HashMap::new();
    for t in &scan.tensors {
        let hf = gguf_to_hf_name(&t.name)
            .ok_or_else(|| gguf_err(format!("unexpected tensor `{}`", t.name)))?;
        by_hf.insert(hf, &t.name);
    }
    let shapes = config.tensor_shapes();
    let wanted: HashSet<&str> = shapes.iter().map(|(n, _)| n.as_str()).collect();
    if let Some((hf, g)) = by_hf.iter().find(|(hf, _)| !wanted.contains(hf.as_str())) {
        return Err(gguf_err(format!("tensor `{g}` ({hf}) does not fit the architecture")));
    }
    let permute = config.model_type == "llama";
    let hd = config.head_dim();
    let device = candle_core::Device::Cpu;
    let mut source_dtypes = BTreeMap::new();
    let mut tensors = Vec::with_capacity(shapes.len());
    for (hf, shape) in shapes {
        let g = *by_hf.get(&hf).ok_or_else(|| MlError::MissingTensor(hf.clone()))?;
        let decl = decls[g];
        let found: Vec<usize> = decl.dims.iter().rev().map(|&d| d as usize).collect();
        if found != shape {
            return Err(MlError::ShapeMismatch { name: g.to_string(), expected: shape, found });
        }
        *source_dtypes.entry(ggml_type_info(decl.ggml_type).0.to_string()).or_insert(0) += 1;
        let q =
            content.tensor(&mut reader, g, &device).map_err(|e| gguf_err(format!("{g}: {e}")))?;
        let mut values = q
            .dequantize(&device)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| gguf_err(format!("dequantizing {g}: {e}")))?;
        if values.len() != shape.iter().product::<usize>() {
            return Err(gguf_err(format!("{g}: dequantized to {} values", values.len())));
        }
        if values.iter().any(|v| !v.is_finite()) {
            return Err(MlError::InvalidData(format!("`{g}` has non-finite values")));
        }
        if permute {
            let cols = if shape.len() == 2 { shape[1] } else { 1 };
            if hf.contains(".self_attn.q_proj.") {
                values = unpermute_rows(&values, config.num_attention_heads, hd, cols);
            } else if hf.contains(".self_attn.k_proj.") {
                values = unpermute_rows(&values, config.kv_heads(), hd, cols);
            }
        }
        tensors.push((hf, shape, values));
    }
    let gen = json!({
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
    });
    let extra_files = vec![
        ("tokenizer_config.json".to_string(), tokenizer_config),
        (
            "generation_config.json".to_string(),
            serde_json::to_string_pretty(&gen).unwrap_or_default(),
        ),
    ];
    Ok(Staged { config, tensors, tokenizer_json, extra_files, source_dtypes, warnings })
}
