//! Typed errors of the ML engine.

use std::path::PathBuf;

/// Everything that can go wrong while loading, saving, training or evaluating a model.
#[derive(Debug, thiserror::Error)]
pub enum MlError {
    /// A file the operation needs does not exist.
    #[error("missing file: {0}")]
    MissingFile(PathBuf),
    /// Reading or writing a file failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A `config.json` (or `adapter_config.json`) is malformed or describes an unsupported model.
    #[error("bad config: {0}")]
    BadConfig(String),
    /// A checkpoint lacks a tensor the model needs.
    #[error("missing tensor `{0}` in checkpoint")]
    MissingTensor(String),
    /// A checkpoint tensor has a different shape from what the config implies.
    #[error("shape mismatch for `{name}`: expected {expected:?}, found {found:?}")]
    ShapeMismatch {
        /// Tensor name (HF layout).
        name: String,
        /// Shape the config implies.
        expected: Vec<usize>,
        /// Shape found in the file.
        found: Vec<usize>,
    },
    /// A checkpoint tensor has a dtype this engine cannot read.
    #[error("unsupported dtype {dtype} for tensor `{name}` (expected F32, F16 or BF16)")]
    UnsupportedDtype {
        /// Tensor name.
        name: String,
        /// The dtype found, as safetensors names it.
        dtype: String,
    },
    /// The safetensors container itself is malformed.
    #[error("safetensors error: {0}")]
    SafeTensors(String),
    /// Tokenizer loading, training or encoding failed.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    /// Input data is unusable (empty set, token id out of range, sequence too long, ...).
    #[error("invalid data: {0}")]
    InvalidData(String),
    /// Reading a tensor back from the device failed.
    #[error("tensor read error: {0}")]
    TensorRead(String),
    /// The checkpoint is of a model family this engine does not implement.
    #[error(
        "unsupported architecture `{0}` (supported: Llama, Qwen2 and Mistral-family decoders)"
    )]
    UnsupportedArchitecture(String),
    /// A GGUF file is malformed, truncated or exceeds a limit.
    #[error("bad GGUF file: {0}")]
    Gguf(String),
    /// A GGUF tensor is stored in a quantization type that cannot be dequantized here.
    #[error("unsupported GGUF tensor type {dtype} for tensor `{tensor}`")]
    UnsupportedQuantization {
        /// Tensor name (llama.cpp layout).
        tensor: String,
        /// The ggml type, by name or number.
        dtype: String,
    },
    /// The operation needs a cargo feature this build lacks.
    #[error("{what} needs flock-ml built with the `{feature}` feature (e.g. `cargo build --features {feature}`)")]
    FeatureDisabled {
        /// What was attempted.
        what: String,
        /// The cargo feature to enable.
        feature: String,
    },
    /// The output directory of an import already holds a model.
    #[error("output directory {0} is not empty (pass --force to overwrite)")]
    OutputExists(PathBuf),
    /// The model's chat template is not one this engine can render.
    #[error("unsupported chat template: {0}")]
    UnsupportedChatTemplate(String),
    /// Training produced a non-finite loss.
    #[error("training diverged at step {step}: loss {loss}")]
    Diverged {
        /// The step at which the loss became non-finite.
        step: usize,
        /// The loss value.
        loss: f64,
    },
}

impl MlError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        MlError::Io { path: path.into(), source }
    }
}

/// Result alias of the ML engine.
pub type Result<T> = std::result::Result<T, MlError>;
