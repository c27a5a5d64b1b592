//! HF checkpoints: `model.safetensors` with HF tensor names, and model directories
//! (`config.json` + `model.safetensors` + `tokenizer.json`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::tensor::Device;
use flock_ml_core::{Layout, ParamSpec, Update};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use tokenizers::Tokenizer;

use crate::config::DecoderConfig;
use crate::error::{MlError, Result};
use crate::model::{DecoderLm, NamedTensor};

/// Reads a file, mapping "not found" to [`MlError::MissingFile`].
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => MlError::MissingFile(path.to_path_buf()),
        _ => MlError::io(path, e),
    })
}

pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| MlError::io(path, e))
}

/// Decodes one tensor of a safetensors file to f32 after checking its shape against `expected`;
/// non-finite values are rejected.
pub fn read_tensor(st: &SafeTensors<'_>, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
    let view = st.tensor(name).map_err(|_| MlError::MissingTensor(name.to_string()))?;
    if view.shape() != expected {
        return Err(MlError::ShapeMismatch {
            name: name.to_string(),
            expected: expected.to_vec(),
            found: view.shape().to_vec(),
        });
    }
    let values = decode(name, view.dtype(), view.data())?;
    if values.len() != expected.iter().product::<usize>() {
        return Err(MlError::SafeTensors(format!("`{name}` holds {} values", values.len())));
    }
    if values.iter().any(|v| !v.is_finite()) {
        return Err(MlError::InvalidData(format!("`{name}` has non-finite values")));
    }
    Ok(values)
}

fn decode(name: &str, dtype: Dtype, data: &[u8]) -> Result<Vec<f32>> {
    Ok(match dtype {
        Dtype::F32 => {
            data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
        }
        Dtype::F16 => {
            data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
        }
        Dtype::BF16 => {
            data.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
        }
        other => {
            return Err(MlError::UnsupportedDtype {
                name: name.to_string(),
                dtype: format!("{other:?}"),
            })
        }
    })
}

/// Serializes named f32 tensors `(name, shape, values)` to safetensors bytes.
pub fn serialize_f32(
    tensors: &[NamedTensor],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let bytes: Vec<Vec<u8>> =
        tensors.iter().map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let mut views = Vec::with_capacity(tensors.len());
    for ((name, shape, _), data) in tensors.iter().zip(&bytes) {
        let view = TensorView::new(Dtype::F32, shape.clone(), data)
            .map_err(|e| MlError::SafeTensors(e.to_string()))?;
        views.push((name.clone(), view));
    }
    safetensors::serialize(views, &metadata).map_err(|e| MlError::SafeTensors(e.to_string()))
}

/// Builds a model from safetensors bytes in HF layout (F32/F16/BF16 accepted).
pub fn model_from_safetensors(
    cfg: &DecoderConfig,
    bytes: &[u8],
    device: &Device,
) -> Result<DecoderLm> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| MlError::SafeTensors(e.to_string()))?;
    let mut src = |name: &str, shape: &[usize]| read_tensor(&st, name, shape);
    DecoderLm::from_source(cfg, &mut src, device)
}

/// Serializes a model's effective weights to safetensors bytes in HF layout (F32).
pub fn model_to_safetensors(model: &DecoderLm) -> Result<Vec<u8>> {
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    serialize_f32(&model.hf_tensors()?, Some(meta))
}

/// A model's effective weights as a framework-neutral [`Update`] (HF names and shapes, in
/// [`DecoderConfig::tensor_shapes`] order): the boundary for full fine-tuning in federated rounds.
pub fn model_to_update(model: &DecoderLm) -> Result<Update> {
    let tensors = model.hf_tensors()?;
    let specs = tensors.iter().map(|(n, s, _)| ParamSpec::new(n.clone(), s.clone())).collect();
    let layout = Layout::new(specs).map_err(|e| MlError::InvalidData(e.to_string()))?;
    let values = tensors.into_iter().flat_map(|(_, _, v)| v).collect();
    Update::new(Arc::new(layout), values).map_err(|e| MlError::InvalidData(e.to_string()))
}

/// Builds a model from an [`Update`] holding every tensor `cfg` needs (by name, shapes checked).
pub fn model_from_update(
    cfg: &DecoderConfig,
    update: &Update,
    device: &Device,
) -> Result<DecoderLm> {
    let layout = update.layout();
    let mut src = |name: &str, shape: &[usize]| {
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
    };
    DecoderLm::from_source(cfg, &mut src, device)
}

/// Loads `config.json`.
pub fn load_config(path: &Path) -> Result<DecoderConfig> {
    let bytes = read_file(path)?;
    let text = String::from_utf8(bytes).map_err(|e| MlError::BadConfig(e.to_string()))?;
    DecoderConfig::from_json(&text)
}

/// Loads a `tokenizer.json`.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    if !path.exists() {
        return Err(MlError::MissingFile(path.to_path_buf()));
    }
    Tokenizer::from_file(path).map_err(|e| MlError::Tokenizer(e.to_string()))
}

/// A HF model directory: `config.json`, `model.safetensors`, `tokenizer.json`.
#[derive(Debug, Clone)]
pub struct ModelDir {
    /// The directory.
    pub path: PathBuf,
}

/// What [`ModelDir::load`] returns.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    /// The parsed config.
    pub config: DecoderConfig,
    /// The model on the requested device.
    pub model: DecoderLm,
    /// The base model's tokenizer.
    pub tokenizer: Tokenizer,
}

impl ModelDir {
    /// Names a model directory.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ModelDir { path: path.into() }
    }

    /// Path of `config.json`.
    pub fn config_path(&self) -> PathBuf {
        self.path.join("config.json")
    }

    /// Path of `model.safetensors`.
    pub fn weights_path(&self) -> PathBuf {
        self.path.join("model.safetensors")
    }

    /// Path of `tokenizer.json`.
    pub fn tokenizer_path(&self) -> PathBuf {
        self.path.join("tokenizer.json")
    }

    /// Loads config, weights and tokenizer; checks the tokenizer fits the vocabulary.
    pub fn load(&self, device: &Device) -> Result<LoadedModel> {
        let config = load_config(&self.config_path())?;
        let tokenizer = load_tokenizer(&self.tokenizer_path())?;
        let n_tok = tokenizer.get_vocab_size(true);
        if n_tok > config.vocab_size {
            return Err(MlError::BadConfig(format!(
                "tokenizer has {n_tok} tokens but vocab_size is {}",
                config.vocab_size
            )));
        }
        let model = if self.weights_path().exists() || !self.index_path().exists() {
            model_from_safetensors(&config, &read_file(&self.weights_path())?, device)?
        } else {
            self.load_sharded(&config, device)?
        };
        Ok(LoadedModel { config, model, tokenizer })
    }

    /// Path of `model.safetensors.index.json` (sharded checkpoints).
    pub fn index_path(&self) -> PathBuf {
        self.path.join("model.safetensors.index.json")
    }

    /// Loads a sharded checkpoint through its index (`weight_map`: tensor name → shard file).
    /// Shard names must be plain file names inside the directory.
    fn load_sharded(&self, config: &DecoderConfig, device: &Device) -> Result<DecoderLm> {
        #[derive(serde::Deserialize)]
        struct Index {
            weight_map: HashMap<String, String>,
        }
        let index: Index = serde_json::from_slice(&read_file(&self.index_path())?)
            .map_err(|e| MlError::BadConfig(format!("bad safetensors index: {e}")))?;
        let mut files: Vec<&String> = index.weight_map.values().collect();
        files.sort();
        files.dedup();
        let mut shards = HashMap::new();
        for f in files {
            let plain = Path::new(f).file_name().is_some_and(|n| n == f.as_str());
            if !plain || f.starts_with('.') {
                return Err(MlError::BadConfig(format!(
                    "shard name `{f}` is not a plain file name"
                )));
            }
            shards.insert(f.clone(), read_file(&self.path.join(f))?);
        }
        let parsed: HashMap<&String, SafeTensors<'_>> = shards
            .iter()
            .map(|(f, b)| SafeTensors::deserialize(b).map(|st| (f, st)))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| MlError::SafeTensors(e.to_string()))?;
        let mut src = |name: &str, shape: &[usize]| {
            let file =
                index.weight_map.get(name).ok_or_else(|| MlError::MissingTensor(name.into()))?;
            read_tensor(&parsed[file], name, shape)
        };
        DecoderLm::from_source(config, &mut src, device)
    }

    /// Writes config, weights (F32) and tokenizer, creating the directory.
    pub fn save(
        &self,
        config: &DecoderConfig,
        model: &DecoderLm,
        tokenizer: &Tokenizer,
    ) -> Result<()> {
        std::fs::create_dir_all(&self.path).map_err(|e| MlError::io(&self.path, e))?;
        write_file(&self.config_path(), config.to_json().as_bytes())?;
        write_file(&self.weights_path(), &model_to_safetensors(model)?)?;
        tokenizer.save(self.tokenizer_path(), false).map_err(|e| MlError::Tokenizer(e.to_string()))
    }
}
