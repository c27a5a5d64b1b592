//! Checks on untrusted safetensors bytes before anything uses them (DESIGN principle 5).
//!
//! [`validate`] runs the checks cheapest-first, so hostile input costs little:
//!
//! 1. the byte size is at most [`ArtifactLimits::max_bytes`] (before any parsing);
//! 2. the 8-byte header length is sane: at most [`ArtifactLimits::max_header_bytes`] and inside
//!    the file; the header is UTF-8 JSON starting with `{` and safetensors accepts it (offsets
//!    contiguous, sizes consistent). Anything else — random bytes, a truncated file, a pickle or
//!    zip checkpoint — is [`ArtifactError::NotSafetensors`] with a reason;
//! 3. every dtype is F32, F16 or BF16;
//! 4. the tensors match the expected [`Layout`] exactly (missing, unexpected, wrong shape);
//! 5. the total parameter count is at most [`ArtifactLimits::max_params`];
//! 6. every value (after widening to f32) is finite.
//!
//! Only then are the values copied out, in layout order, into a [`ValidatedArtifact`].

use crate::update::{Layout, ParamSpec, Update};
use flock_primitives::Hash;
use safetensors::{tensor::Dtype, SafeTensorError, SafeTensors};
use std::{collections::BTreeMap, sync::Arc};

/// Bounds applied to an untrusted artifact.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArtifactLimits {
    /// The largest accepted file, in bytes (checked before parsing).
    pub max_bytes: u64,
    /// The most parameters (elements over all tensors) accepted; a task's `max_params`.
    pub max_params: u64,
    /// The largest accepted JSON header, in bytes.
    pub max_header_bytes: u64,
}

impl Default for ArtifactLimits {
    /// 2 GiB, 500M params, a 16 MiB header.
    fn default() -> Self {
        Self { max_bytes: 2 << 30, max_params: 500_000_000, max_header_bytes: 16 << 20 }
    }
}

impl ArtifactLimits {
    /// Limits for a model of at most `max_params` parameters: the file may hold them as F32 plus
    /// a generous header.
    pub fn for_params(max_params: u64) -> Self {
        let header = 16u64 << 20;
        Self {
            max_bytes: max_params.saturating_mul(4).saturating_add(header + 8),
            max_params,
            max_header_bytes: header,
        }
    }
}

/// Why an artifact was rejected. Each variant names the offending tensor where there is one;
/// [`ArtifactError::code`] is a stable machine-readable tag.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ArtifactError {
    /// The file is larger than the limit.
    #[error("artifact is {size} bytes, over the limit of {max} bytes")]
    TooLarge {
        /// The file size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The header length field is larger than the limit.
    #[error("safetensors header is {len} bytes, over the limit of {max} bytes")]
    HeaderTooLarge {
        /// The declared header length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The bytes are not a well-formed safetensors file.
    #[error("not a safetensors file: {0}")]
    NotSafetensors(String),
    /// A tensor has a dtype other than F32, F16 or BF16.
    #[error("tensor `{tensor}` has dtype {dtype}; only F32, F16 and BF16 are accepted")]
    UnsupportedDtype {
        /// The tensor name.
        tensor: String,
        /// The dtype found, as safetensors names it.
        dtype: String,
    },
    /// A tensor of the expected layout is absent.
    #[error("tensor `{tensor}` (shape {expected:?}) is missing")]
    MissingTensor {
        /// The tensor name.
        tensor: String,
        /// Its expected shape.
        expected: Vec<usize>,
    },
    /// The file has a tensor the expected layout does not.
    #[error("unexpected tensor `{tensor}` (shape {found:?}) is not in the model")]
    UnexpectedTensor {
        /// The tensor name.
        tensor: String,
        /// Its shape in the file.
        found: Vec<usize>,
    },
    /// A tensor's shape differs from the expected one.
    #[error("tensor `{tensor}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The tensor name.
        tensor: String,
        /// The expected shape.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// The model has more parameters than allowed.
    #[error("model has {params} parameters, over the task's max_params {max}")]
    TooManyParams {
        /// The parameter count in the file.
        params: u64,
        /// The limit.
        max: u64,
    },
    /// A value is NaN or infinite.
    #[error("tensor `{tensor}` has a non-finite value ({value}) at index {index}")]
    NonFinite {
        /// The tensor name.
        tensor: String,
        /// The flat index inside the tensor.
        index: usize,
        /// The value (NaN, inf or -inf).
        value: f32,
    },
}

impl ArtifactError {
    /// A stable snake_case tag for logs, metrics and API responses.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::HeaderTooLarge { .. } => "header_too_large",
            Self::NotSafetensors(_) => "not_safetensors",
            Self::UnsupportedDtype { .. } => "unsupported_dtype",
            Self::MissingTensor { .. } => "missing_tensor",
            Self::UnexpectedTensor { .. } => "unexpected_tensor",
            Self::ShapeMismatch { .. } => "shape_mismatch",
            Self::TooManyParams { .. } => "too_many_params",
            Self::NonFinite { .. } => "non_finite",
        }
    }
}

/// An artifact that passed every check: its layout, its values as f32 in layout order, its
/// metadata and the blake3 hash of its bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedArtifact {
    layout: Arc<Layout>,
    values: Vec<f32>,
    metadata: BTreeMap<String, String>,
    hash: Hash,
    widened: bool,
}

impl ValidatedArtifact {
    /// The layout: the expected one, or (without one) the file's tensors sorted by name.
    pub fn layout(&self) -> &Arc<Layout> {
        &self.layout
    }

    /// The values, in layout order.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The `__metadata__` map (empty if absent).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// blake3 of the bytes as received.
    pub fn hash(&self) -> Hash {
        self.hash
    }

    /// The parameter count.
    pub fn num_params(&self) -> usize {
        self.values.len()
    }

    /// Whether any tensor was F16 or BF16 and was widened to f32.
    pub fn widened(&self) -> bool {
        self.widened
    }

    /// The values as an [`Update`].
    pub fn into_update(self) -> Update {
        // The values were built from this layout, so the length always matches.
        Update::new(self.layout, self.values).unwrap_or_else(|e| unreachable!("{e}"))
    }
}

/// Validates untrusted safetensors bytes (see the module docs for the checks and their order).
/// With `expected`, the tensor set and shapes must match it exactly and the values come out in
/// its order; without, the layout is the file's tensors sorted by name.
pub fn validate(
    bytes: &[u8],
    expected: Option<&Layout>,
    limits: &ArtifactLimits,
) -> Result<ValidatedArtifact, ArtifactError> {
    let size = bytes.len() as u64;
    if size > limits.max_bytes {
        return Err(ArtifactError::TooLarge { size, max: limits.max_bytes });
    }
    check_header_frame(bytes, limits)?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| not_safetensors(bytes, describe(&e)))?;
    let (_, meta) =
        SafeTensors::read_metadata(bytes).map_err(|e| not_safetensors(bytes, describe(&e)))?;
    let metadata: BTreeMap<String, String> =
        meta.metadata().clone().unwrap_or_default().into_iter().collect();

    let mut tensors = st.tensors();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, view) in &tensors {
        if !matches!(view.dtype(), Dtype::F32 | Dtype::F16 | Dtype::BF16) {
            return Err(ArtifactError::UnsupportedDtype {
                tensor: name.clone(),
                dtype: format!("{:?}", view.dtype()),
            });
        }
    }

    let layout = match expected {
        Some(layout) => {
            check_shapes(layout, &tensors)?;
            layout.clone()
        }
        None => {
            let specs = tensors
                .iter()
                .map(|(n, v)| ParamSpec::new(n.clone(), v.shape().to_vec()))
                .collect();
            // Names come from a JSON map (unique, `__metadata__` removed) and safetensors has
            // already checked the element counts, so this cannot fail on a parsed file.
            Layout::new(specs).map_err(|e| not_safetensors(bytes, e.to_string()))?
        }
    };

    let params = layout.numel() as u64;
    if params > limits.max_params {
        return Err(ArtifactError::TooManyParams { params, max: limits.max_params });
    }

    let by_name: BTreeMap<&str, &safetensors::tensor::TensorView<'_>> =
        tensors.iter().map(|(n, v)| (n.as_str(), v)).collect();
    let mut values = Vec::with_capacity(layout.numel());
    let mut widened = false;
    for spec in layout.params() {
        let view = by_name.get(spec.name.as_str()).ok_or_else(|| ArtifactError::MissingTensor {
            tensor: spec.name.clone(),
            expected: spec.shape.clone(),
        })?;
        let start = values.len();
        let data = view.data();
        match view.dtype() {
            Dtype::F32 => values
                .extend(data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
            Dtype::F16 => {
                widened = true;
                values.extend(
                    data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()),
                );
            }
            _ => {
                widened = true;
                values.extend(
                    data.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()),
                );
            }
        }
        if let Some(index) = values[start..].iter().position(|v| !v.is_finite()) {
            return Err(ArtifactError::NonFinite {
                tensor: spec.name.clone(),
                index,
                value: values[start + index],
            });
        }
    }

    Ok(ValidatedArtifact {
        layout: Arc::new(layout),
        values,
        metadata,
        hash: Hash::of(bytes),
        widened,
    })
}

/// The cheap framing checks before safetensors parses anything.
fn check_header_frame(bytes: &[u8], limits: &ArtifactLimits) -> Result<(), ArtifactError> {
    let Some(len_bytes) = bytes.first_chunk::<8>() else {
        return Err(not_safetensors(
            bytes,
            format!("{} bytes, shorter than the 8-byte header length", bytes.len()),
        ));
    };
    let n = u64::from_le_bytes(*len_bytes);
    let available = bytes.len() as u64 - 8;
    if n > available {
        return Err(not_safetensors(
            bytes,
            format!("header length {n} runs past the end of the file ({available} bytes left)"),
        ));
    }
    if n > limits.max_header_bytes {
        return Err(ArtifactError::HeaderTooLarge { len: n, max: limits.max_header_bytes });
    }
    let header = &bytes[8..8 + n as usize];
    let Ok(text) = std::str::from_utf8(header) else {
        return Err(not_safetensors(bytes, "header is not UTF-8".into()));
    };
    if !text.starts_with('{') {
        return Err(not_safetensors(bytes, "header is not a JSON object".into()));
    }
    Ok(())
}

fn check_shapes(
    layout: &Layout,
    tensors: &[(String, safetensors::tensor::TensorView<'_>)],
) -> Result<(), ArtifactError> {
    let in_file: BTreeMap<&str, &[usize]> =
        tensors.iter().map(|(n, v)| (n.as_str(), v.shape())).collect();
    for spec in layout.params() {
        match in_file.get(spec.name.as_str()) {
            None => {
                return Err(ArtifactError::MissingTensor {
                    tensor: spec.name.clone(),
                    expected: spec.shape.clone(),
                })
            }
            Some(&found) if found != spec.shape.as_slice() => {
                return Err(ArtifactError::ShapeMismatch {
                    tensor: spec.name.clone(),
                    expected: spec.shape.clone(),
                    found: found.to_vec(),
                })
            }
            Some(_) => {}
        }
    }
    if let Some((name, shape)) = in_file.iter().find(|(n, _)| layout.index_of(n).is_none()) {
        return Err(ArtifactError::UnexpectedTensor {
            tensor: (*name).to_string(),
            found: shape.to_vec(),
        });
    }
    Ok(())
}

/// A `NotSafetensors` error, with a hint when the bytes look like a known other format.
fn not_safetensors(bytes: &[u8], reason: String) -> ArtifactError {
    let hint = if bytes.starts_with(b"PK\x03\x04") {
        " (looks like a zip archive, e.g. a PyTorch .pt/.bin checkpoint; \
         only safetensors is accepted)"
    } else if bytes.len() >= 2 && bytes[0] == 0x80 && (2..=5).contains(&bytes[1]) {
        " (looks like a Python pickle; pickles are never loaded)"
    } else {
        ""
    };
    ArtifactError::NotSafetensors(format!("{reason}{hint}"))
}

fn describe(e: &SafeTensorError) -> String {
    match e {
        SafeTensorError::InvalidHeader => "header is not UTF-8".into(),
        SafeTensorError::InvalidHeaderStart => "header is not a JSON object".into(),
        SafeTensorError::InvalidHeaderDeserialization => {
            "header is not valid safetensors JSON".into()
        }
        SafeTensorError::HeaderTooLarge => "header length is too large".into(),
        SafeTensorError::HeaderTooSmall => "file is shorter than 8 bytes".into(),
        SafeTensorError::InvalidHeaderLength => "header length runs past the end".into(),
        SafeTensorError::InvalidOffset(t) => format!("tensor `{t}` has invalid data offsets"),
        SafeTensorError::TensorInvalidInfo => {
            "a tensor's byte length does not match its shape and dtype".into()
        }
        SafeTensorError::MetadataIncompleteBuffer => {
            "tensor data does not exactly cover the file (truncated or trailing bytes)".into()
        }
        SafeTensorError::ValidationOverflow => "a tensor's size overflows".into(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests;
