//! `flockd model import`: a pretrained checkpoint (a HF directory, or a GGUF file with the `gguf`
//! feature) turned into our model directory layout, which [`ModelDir`] loads:
//!
//! ```text
//! config.json              our DecoderConfig (validated; torch_dtype = the stored dtype)
//! model.safetensors        every tensor in HF names and shapes, one file (F32 by default)
//! tokenizer.json           HF tokenizers format
//! tokenizer_config.json    special tokens and the chat template (when the source has them)
//! generation_config.json   bos / eos ids (copied, or built from GGUF metadata)
//! ```
//!
//! The import is staged in a hidden sibling directory, loaded back with [`ModelDir::load`] (so an
//! imported model is known to build our [`crate::DecoderLm`] and fit its tokenizer), and only
//! then moved to the output path. Everything read from the source is bounded.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{read_tensor, ModelDir};
use crate::config::DecoderConfig;
use crate::error::{MlError, Result};
use crate::model::NamedTensor;

/// Largest JSON side file (config, tokenizer config, generation config, chat template) read.
const MAX_SIDE_FILE: u64 = 4 << 20;
/// Largest `tokenizer.json` read.
const MAX_TOKENIZER_FILE: u64 = 64 << 20;
/// Side files copied verbatim from a HF directory when present.
const SIDE_FILES: [&str; 5] = [
    "tokenizer_config.json",
    "generation_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
];

/// The dtype weights are stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreDtype {
    /// 32-bit float: exact for every source (dequantized GGUF values included).
    #[default]
    F32,
    /// IEEE half: half the size; values beyond ±65504 are rejected.
    F16,
    /// bfloat16: half the size, f32's range, 8 mantissa bits.
    Bf16,
}

impl StoreDtype {
    /// HF's `torch_dtype` name.
    pub fn torch_name(self) -> &'static str {
        match self {
            StoreDtype::F32 => "float32",
            StoreDtype::F16 => "float16",
            StoreDtype::Bf16 => "bfloat16",
        }
    }
}

impl std::str::FromStr for StoreDtype {
    type Err = MlError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(StoreDtype::F32),
            "f16" | "float16" => Ok(StoreDtype::F16),
            "bf16" | "bfloat16" => Ok(StoreDtype::Bf16),
            other => Err(MlError::InvalidData(format!("unknown dtype `{other}` (f32, f16, bf16)"))),
        }
    }
}

impl std::fmt::Display for StoreDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreDtype::F32 => "f32",
            StoreDtype::F16 => "f16",
            StoreDtype::Bf16 => "bf16",
        })
    }
}

/// How to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Dtype of the stored weights.
    pub dtype: StoreDtype,
    /// Replace the model files of a non-empty output directory.
    pub force: bool,
}

/// What an import produced (printed by `flockd model import`, `--json` for this as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportReport {
    /// The source path.
    pub source: PathBuf,
    /// `"hf"` or `"gguf"`.
    pub format: String,
    /// The output directory.
    pub out: PathBuf,
    /// HF architecture class, e.g. `LlamaForCausalLM`.
    pub architecture: String,
    /// `llama`, `qwen2` or `mistral`.
    pub model_type: String,
    /// Number of parameters.
    pub parameters: u64,
    /// Decoder layers.
    pub layers: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Query heads.
    pub attention_heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Embedding rows.
    pub vocab_size: usize,
    /// Tokens the tokenizer knows (specials included).
    pub tokenizer_tokens: usize,
    /// Longest context (`max_position_embeddings`).
    pub context_length: usize,
    /// Whether the output head shares the embedding.
    pub tied_embeddings: bool,
    /// Source tensors per stored type (`BF16`, `Q4_1`, `F32`, …).
    pub source_dtypes: BTreeMap<String, usize>,
    /// Dtype written.
    pub dtype: StoreDtype,
    /// Whether a chat template came along, and whether it is ChatML (which we render).
    pub chat_template: String,
    /// Token ids generation stops at.
    pub stop_token_ids: Vec<u32>,
    /// Bytes of `model.safetensors`.
    pub weights_bytes: u64,
    /// Wall time of the import (staging, writing and the load-back check).
    pub seconds: f64,
    /// Anything imported with a caveat.
    pub warnings: Vec<String>,
}

/// Everything an import writes, in our HF layout.
#[derive(Debug)]
pub(crate) struct Staged {
    pub(crate) config: DecoderConfig,
    pub(crate) tensors: Vec<NamedTensor>,
    pub(crate) tokenizer_json: String,
    pub(crate) extra_files: Vec<(String, String)>,
    pub(crate) source_dtypes: BTreeMap<String, usize>,
    pub(crate) warnings: Vec<String>,
}

/// Reads a small file, refusing more than `max` bytes.
pub(crate) fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => MlError::MissingFile(path.to_path_buf()),
        _ => MlError::io(path, e),
    })?;
    if meta.len() > max {
        return Err(MlError::InvalidData(format!(
            "{} is {} bytes (limit {max})",
            path.display(),
            meta.len()
        )));
    }
    crate::checkpoint::read_file(path)
}

fn read_text(path: &Path, max: u64) -> Result<String> {
    String::from_utf8(read_bounded(path, max)?)
        .map_err(|_| MlError::InvalidData(format!("{} is not UTF-8", path.display())))
}

/// Whether `path` is a GGUF file (by extension or magic).
pub fn is_gguf(path: &Path) -> bool {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
        return true;
    }
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok_and(|_| &magic == b"GGUF")
}

/// Checks a HF `config.json` names a family we implement, before parsing it as ours.
fn check_hf_architecture(raw: &serde_json::Value, warnings: &mut Vec<String>) -> Result<()> {
    let model_type = raw.get("model_type").and_then(|v| v.as_str()).unwrap_or("");
    let archs: Vec<&str> = raw
        .get("architectures")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let known_type = matches!(model_type, "llama" | "qwen2" | "mistral");
    let known_arch =
        |a: &str| matches!(a, "LlamaForCausalLM" | "Qwen2ForCausalLM" | "MistralForCausalLM");
    if !known_type {
        let name = if model_type.is_empty() { archs.join(", ") } else { model_type.to_string() };
        return Err(MlError::UnsupportedArchitecture(if name.is_empty() {
            "(config.json names no model_type)".into()
        } else {
            name
        }));
    }
    if let Some(a) = archs.iter().find(|a| !known_arch(a)) {
        return Err(MlError::UnsupportedArchitecture(a.to_string()));
    }
    if raw.get("rope_scaling").is_some_and(|v| !v.is_null()) {
        warnings.push(
            "config.json has rope_scaling, which this engine ignores (fine for short contexts)"
                .into(),
        );
    }
    if raw.get("use_sliding_window").and_then(|v| v.as_bool()) == Some(true)
        || (model_type == "mistral" && raw.get("sliding_window").is_some_and(|v| !v.is_null()))
    {
        warnings.push("sliding-window attention is computed as full attention".into());
    }
    Ok(())
}

/// Reads a HF checkpoint directory into our layout.
fn stage_hf(dir: &Path) -> Result<Staged> {
    let mut warnings = Vec::new();
    let config_text = read_text(&dir.join("config.json"), MAX_SIDE_FILE)?;
    let raw: serde_json::Value =
        serde_json::from_str(&config_text).map_err(|e| MlError::BadConfig(e.to_string()))?;
    check_hf_architecture(&raw, &mut warnings)?;
    let config = DecoderConfig::from_json(&config_text)?;
    let tokenizer_json = read_text(&dir.join("tokenizer.json"), MAX_TOKENIZER_FILE)?;

    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    let mut files: Vec<String> = Vec::new();
    let mut weight_map: HashMap<String, String> = HashMap::new();
    if single.exists() || !index.exists() {
        files.push("model.safetensors".into());
    } else {
        #[derive(Deserialize)]
        struct Index {
            weight_map: HashMap<String, String>,
        }
        let idx: Index = serde_json::from_slice(&read_bounded(&index, MAX_SIDE_FILE)?)
            .map_err(|e| MlError::BadConfig(format!("bad safetensors index: {e}")))?;
        weight_map = idx.weight_map;
        files = weight_map.values().cloned().collect();
        files.sort();
        files.dedup();
        for f in &files {
            let plain = Path::new(f).file_name().is_some_and(|n| n == f.as_str());
            if !plain || f.starts_with('.') {
                return Err(MlError::BadConfig(format!(
                    "shard name `{f}` is not a plain file name"
                )));
            }
        }
    }
    let bytes: Vec<Vec<u8>> =
        files.iter().map(|f| crate::checkpoint::read_file(&dir.join(f))).collect::<Result<_>>()?;
    let parsed: HashMap<&str, SafeTensors<'_>> = files
        .iter()
        .zip(&bytes)
        .map(|(f, b)| SafeTensors::deserialize(b).map(|st| (f.as_str(), st)))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| MlError::SafeTensors(e.to_string()))?;
    let mut source_dtypes = BTreeMap::new();
    let mut tensors = Vec::new();
    for (name, shape) in config.tensor_shapes() {
        let file = if weight_map.is_empty() {
            "model.safetensors"
        } else {
            weight_map.get(&name).ok_or_else(|| MlError::MissingTensor(name.clone()))?.as_str()
        };
        let st = &parsed[file];
        let dtype = st.tensor(&name).map_err(|_| MlError::MissingTensor(name.clone()))?.dtype();
        *source_dtypes.entry(format!("{dtype:?}")).or_insert(0) += 1;
        let values = read_tensor(st, &name, &shape)?;
        tensors.push((name, shape, values));
    }
    let used = tensors.len();
    let total: usize = parsed.values().map(|st| st.len()).sum();
    if total > used {
        warnings.push(format!("{} checkpoint tensors are not used by the model", total - used));
    }
    let mut extra_files = Vec::new();
    for name in SIDE_FILES {
        let p = dir.join(name);
        if p.is_file() {
            let text = read_text(&p, MAX_SIDE_FILE)?;
            if name.ends_with(".json") {
                serde_json::from_str::<serde_json::Value>(&text)
                    .map_err(|e| MlError::BadConfig(format!("{name}: {e}")))?;
            }
            extra_files.push((name.to_string(), text));
        }
    }
    Ok(Staged { config, tensors, tokenizer_json, extra_files, source_dtypes, warnings })
}

fn stage_gguf_file(path: &Path) -> Result<Staged> {
    #[cfg(feature = "gguf")]
    {
        crate::gguf::stage_gguf(path)
    }
    #[cfg(not(feature = "gguf"))]
    {
        if !path.exists() {
            return Err(MlError::MissingFile(path.to_path_buf()));
        }
        Err(MlError::FeatureDisabled {
            what: format!("importing the GGUF file {}", path.display()),
            feature: "gguf".into(),
        })
    }
}

/// Writes tensors to a safetensors file in `dtype`.
pub fn write_safetensors(path: &Path, tensors: &[NamedTensor], dtype: StoreDtype) -> Result<()> {
    let mut bufs = Vec::with_capacity(tensors.len());
    for (name, _, v) in tensors {
        let b: Vec<u8> = match dtype {
            StoreDtype::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            StoreDtype::F16 => {
                if let Some(x) = v.iter().find(|x| x.abs() > 65504.0) {
                    return Err(MlError::InvalidData(format!(
                        "`{name}` holds {x}, beyond f16's range (store as f32 or bf16)"
                    )));
                }
                v.iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect()
            }
            StoreDtype::Bf16 => {
                v.iter().flat_map(|x| half::bf16::from_f32(*x).to_le_bytes()).collect()
            }
        };
        bufs.push(b);
    }
    let st_dtype = match dtype {
        StoreDtype::F32 => Dtype::F32,
        StoreDtype::F16 => Dtype::F16,
        StoreDtype::Bf16 => Dtype::BF16,
    };
    let mut views = Vec::with_capacity(tensors.len());
    for ((name, shape, _), data) in tensors.iter().zip(&bufs) {
        let view = TensorView::new(st_dtype, shape.clone(), data)
            .map_err(|e| MlError::SafeTensors(e.to_string()))?;
        views.push((name.clone(), view));
    }
    let meta = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    safetensors::serialize_to_file(views, &meta, path)
        .map_err(|e| MlError::SafeTensors(format!("writing {}: {e}", path.display())))
}

fn is_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_none())
}

/// Imports `src` (a HF directory or a `.gguf` file) into `out` in our layout and checks the
/// result loads; see the [module docs](self).
pub fn import_model(src: &Path, out: &Path, opts: &ImportOptions) -> Result<ImportReport> {
    let t0 = Instant::now();
    if out.exists() && !is_empty_dir(out) && !opts.force {
        return Err(MlError::OutputExists(out.to_path_buf()));
    }
    let (format, staged) = if src.is_dir() {
        ("hf", stage_hf(src)?)
    } else if src.is_file() && is_gguf(src) {
        ("gguf", stage_gguf_file(src)?)
    } else if !src.exists() {
        return Err(MlError::MissingFile(src.to_path_buf()));
    } else {
        return Err(MlError::InvalidData(format!(
            "{} is neither a model directory nor a GGUF file",
            src.display()
        )));
    };
    let Staged { mut config, tensors, tokenizer_json, extra_files, source_dtypes, mut warnings } =
        staged;
    config.torch_dtype = Some(opts.dtype.torch_name().into());

    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| MlError::io(parent, e))?;
    let tmp = parent.join(format!(".{name}.importing-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = (|| -> Result<(ImportReport, u64)> {
        std::fs::create_dir_all(&tmp).map_err(|e| MlError::io(&tmp, e))?;
        let dir = ModelDir::new(&tmp);
        crate::checkpoint::write_file(&dir.config_path(), config.to_json().as_bytes())?;
        write_safetensors(&dir.weights_path(), &tensors, opts.dtype)?;
        drop(tensors);
        crate::checkpoint::write_file(&dir.tokenizer_path(), tokenizer_json.as_bytes())?;
        for (name, text) in &extra_files {
            crate::checkpoint::write_file(&tmp.join(name), text.as_bytes())?;
        }
        let weights_bytes =
            std::fs::metadata(dir.weights_path()).map_err(|e| MlError::io(&tmp, e))?.len();
        // The load-back check: our decoder builds from the written files, tokenizer fits.
        let loaded = dir.load(&crate::cpu())?;
        let chat = crate::chat::ChatModel::from_loaded(loaded, &tmp)?;
        let report = ImportReport {
            source: src.to_path_buf(),
            format: format.into(),
            out: out.to_path_buf(),
            architecture: config.architectures.first().cloned().unwrap_or_default(),
            model_type: config.model_type.clone(),
            parameters: config.num_params(),
            layers: config.num_hidden_layers,
            hidden_size: config.hidden_size,
            attention_heads: config.num_attention_heads,
            kv_heads: config.kv_heads(),
            vocab_size: config.vocab_size,
            tokenizer_tokens: chat.tokenizer.get_vocab_size(true),
            context_length: config.max_position_embeddings,
            tied_embeddings: config.tie_word_embeddings,
            source_dtypes,
            dtype: opts.dtype,
            chat_template: chat.template_kind().into(),
            stop_token_ids: chat.stop_tokens.clone(),
            weights_bytes,
            seconds: 0.0,
            warnings: Vec::new(),
        };
        Ok((report, weights_bytes))
    })();
    let (mut report, _) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    // Move the staged directory into place.
    let moved = if !out.exists() || is_empty_dir(out) {
        if out.exists() {
            std::fs::remove_dir(out).map_err(|e| MlError::io(out, e))?;
        }
        std::fs::rename(&tmp, out).map_err(|e| MlError::io(out, e))
    } else {
        (|| {
            // Our single model.safetensors replaces a sharded checkpoint's index.
            let _ = std::fs::remove_file(out.join("model.safetensors.index.json"));
            for entry in std::fs::read_dir(&tmp).map_err(|e| MlError::io(&tmp, e))? {
                let entry = entry.map_err(|e| MlError::io(&tmp, e))?;
                let to = out.join(entry.file_name());
                std::fs::rename(entry.path(), &to).map_err(|e| MlError::io(&to, e))?;
            }
            std::fs::remove_dir(&tmp).map_err(|e| MlError::io(&tmp, e))
        })()
    };
    if let Err(e) = moved {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    warnings.sort();
    report.warnings = warnings;
    report.seconds = t0.elapsed().as_secs_f64();
    Ok(report)
}
