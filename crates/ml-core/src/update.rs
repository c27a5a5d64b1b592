//! The update wire format: a flat `Vec<f32>` in a fixed parameter order, named and shaped by a
//! [`Layout`], carried between machines as safetensors.
//!
//! * [`ParamSpec`] names one tensor and gives its shape; a [`Layout`] is the ordered list of them
//!   (the order of the flat vector), with offsets, the total element count and a fingerprint.
//! * [`Update`] is a layout plus its flat values.
//! * [`Update::to_safetensors`] writes F32 tensors named after the parameters. Safetensors orders
//!   tensors by name on disk; the layout order lives in the caller's spec, never in the file.
//!   The bytes are a pure function of (layout, values, metadata): header keys are written in a
//!   fixed order (metadata keys sorted), so [`Update::content_hash`] is stable across machines.
//! * [`Update::from_safetensors`] goes through [`crate::artifact::validate`]: every decode is
//!   bounded and checked (size, dtype, shape, finiteness) before the values are used.

use crate::artifact::{self, ArtifactError, ArtifactLimits};
use flock_primitives::Hash;
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, fmt::Write as _, sync::Arc};

/// The `format` metadata value written by [`Update::to_safetensors_default`].
pub const UPDATE_FORMAT: &str = "flock-update-v1";

/// The metadata key safetensors reserves for the free-form string map; not a legal param name.
pub const METADATA_KEY: &str = "__metadata__";

/// One named tensor of a model: its name and its shape (row-major, as safetensors stores it).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ParamSpec {
    /// The tensor name (also its safetensors key), e.g. `"layers.0.weight"`.
    pub name: String,
    /// The tensor shape; `[]` is a scalar (one element).
    pub shape: Vec<usize>,
}

impl ParamSpec {
    /// A spec from a name and a shape.
    pub fn new(name: impl Into<String>, shape: impl Into<Vec<usize>>) -> Self {
        Self { name: name.into(), shape: shape.into() }
    }

    /// The number of elements (`None` if the product overflows `usize`).
    pub fn checked_numel(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
    }
}

/// Why a [`Layout`] or an [`Update`] could not be built. These are caller errors (a bad model
/// spec), distinct from [`ArtifactError`], which describes untrusted bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// Two params share a name.
    #[error("duplicate parameter name `{0}`")]
    DuplicateName(String),
    /// A param uses the name safetensors reserves for metadata.
    #[error("parameter name `{METADATA_KEY}` is reserved by safetensors")]
    ReservedName,
    /// The element count of a param (or of the whole layout) overflows `usize`.
    #[error("parameter `{0}` has too many elements (overflow)")]
    Overflow(String),
    /// The flat values do not have the layout's element count.
    #[error("update has {found} values but its layout has {expected}")]
    WrongLength {
        /// The layout's total element count.
        expected: usize,
        /// The number of values given.
        found: usize,
    },
}

/// An ordered list of [`ParamSpec`]s: the order of the flat parameter vector.
///
/// Two layouts are equal when their params (names, shapes, order) are equal;
/// [`Layout::fingerprint`] is a blake3 digest of exactly that, for cheap comparison and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    params: Vec<ParamSpec>,
    offsets: Vec<usize>,
    numel: usize,
    fingerprint: Hash,
}

impl Layout {
    /// Builds a layout, rejecting duplicate or reserved names and element-count overflow.
    pub fn new(params: Vec<ParamSpec>) -> Result<Self, LayoutError> {
        let mut seen = std::collections::BTreeSet::new();
        let mut offsets = Vec::with_capacity(params.len());
        let mut numel = 0usize;
        let mut fp = Vec::new();
        for p in &params {
            if p.name == METADATA_KEY {
                return Err(LayoutError::ReservedName);
            }
            if !seen.insert(p.name.as_str()) {
                return Err(LayoutError::DuplicateName(p.name.clone()));
            }
            let n = p.checked_numel().ok_or_else(|| LayoutError::Overflow(p.name.clone()))?;
            offsets.push(numel);
            numel = numel.checked_add(n).ok_or_else(|| LayoutError::Overflow(p.name.clone()))?;
            fp.extend_from_slice(&(p.name.len() as u64).to_le_bytes());
            fp.extend_from_slice(p.name.as_bytes());
            fp.extend_from_slice(&(p.shape.len() as u64).to_le_bytes());
            for &d in &p.shape {
                fp.extend_from_slice(&(d as u64).to_le_bytes());
            }
        }
        let fingerprint = Hash::of_parts("flock-ml-core/layout/v1", &[&fp]);
        Ok(Self { params, offsets, numel, fingerprint })
    }

    /// The params, in flat-vector order.
    pub fn params(&self) -> &[ParamSpec] {
        &self.params
    }

    /// The number of params (tensors).
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// Whether the layout has no params.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// The total element count (the length of every update's flat vector).
    pub fn numel(&self) -> usize {
        self.numel
    }

    /// The start offset of each param in the flat vector.
    pub fn offsets(&self) -> &[usize] {
        &self.offsets
    }

    /// The flat range of param `i`. Panics if `i` is out of range (a programmer error).
    pub fn range(&self, i: usize) -> std::ops::Range<usize> {
        let start = self.offsets[i];
        let end = self.offsets.get(i + 1).copied().unwrap_or(self.numel);
        start..end
    }

    /// The index of the param called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.params.iter().position(|p| p.name == name)
    }

    /// A blake3 digest of the names, shapes and order: equal layouts, equal fingerprints.
    pub fn fingerprint(&self) -> Hash {
        self.fingerprint
    }
}

/// A model update (or a whole model's weights): flat `f32` values in [`Layout`] order.
#[derive(Clone, Debug, PartialEq)]
pub struct Update {
    layout: Arc<Layout>,
    values: Vec<f32>,
}

impl Update {
    /// An update from a layout and values in layout order; the lengths must agree.
    pub fn new(layout: Arc<Layout>, values: Vec<f32>) -> Result<Self, LayoutError> {
        if values.len() != layout.numel() {
            return Err(LayoutError::WrongLength { expected: layout.numel(), found: values.len() });
        }
        Ok(Self { layout, values })
    }

    /// An all-zero update.
    pub fn zeros(layout: Arc<Layout>) -> Self {
        let values = vec![0.0; layout.numel()];
        Self { layout, values }
    }

    /// The layout.
    pub fn layout(&self) -> &Arc<Layout> {
        &self.layout
    }

    /// The flat values.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The flat values, mutably (the length cannot change).
    pub fn values_mut(&mut self) -> &mut [f32] {
        &mut self.values
    }

    /// The flat values, consuming the update.
    pub fn into_values(self) -> Vec<f32> {
        self.values
    }

    /// The values of the param called `name`.
    pub fn param(&self, name: &str) -> Option<&[f32]> {
        self.layout.index_of(name).map(|i| &self.values[self.layout.range(i)])
    }

    /// Encodes as safetensors: one F32 tensor per param, `metadata` as `__metadata__` (omitted
    /// when empty). Deterministic: tensors sorted by name, metadata keys sorted, header padded
    /// with spaces to a multiple of 8 — the same bytes `safetensors::serialize` writes.
    pub fn to_safetensors(&self, metadata: &BTreeMap<String, String>) -> Vec<u8> {
        let mut order: Vec<usize> = (0..self.layout.len()).collect();
        order.sort_by(|&a, &b| self.layout.params[a].name.cmp(&self.layout.params[b].name));

        let mut header = String::from("{");
        if !metadata.is_empty() {
            header.push_str("\"__metadata__\":{");
            for (i, (k, v)) in metadata.iter().enumerate() {
                if i > 0 {
                    header.push(',');
                }
                push_json_str(&mut header, k);
                header.push(':');
                push_json_str(&mut header, v);
            }
            header.push('}');
        }
        let mut offset = 0usize;
        for (i, &p) in order.iter().enumerate() {
            if i > 0 || !metadata.is_empty() {
                header.push(',');
            }
            let spec = &self.layout.params[p];
            push_json_str(&mut header, &spec.name);
            header.push_str(":{\"dtype\":\"F32\",\"shape\":[");
            for (j, d) in spec.shape.iter().enumerate() {
                if j > 0 {
                    header.push(',');
                }
                let _ = write!(header, "{d}");
            }
            let bytes = self.layout.range(p).len() * 4;
            let _ = write!(header, "],\"data_offsets\":[{},{}]}}", offset, offset + bytes);
            offset += bytes;
        }
        header.push('}');
        while header.len() % 8 != 0 {
            header.push(' ');
        }

        let mut out = Vec::with_capacity(8 + header.len() + offset);
        out.extend_from_slice(&(header.len() as u64).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        for &p in &order {
            for v in &self.values[self.layout.range(p)] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    /// [`Update::to_safetensors`] with metadata `{"format": "flock-update-v1"}`.
    pub fn to_safetensors_default(&self) -> Vec<u8> {
        self.to_safetensors(&default_metadata())
    }

    /// Decodes untrusted safetensors bytes against the expected layout, through
    /// [`artifact::validate`] (size, header, dtype, shape, param count and finiteness checks).
    /// F16 and BF16 tensors are widened to f32.
    pub fn from_safetensors(
        bytes: &[u8],
        layout: &Layout,
        limits: &ArtifactLimits,
    ) -> Result<Self, ArtifactError> {
        Ok(artifact::validate(bytes, Some(layout), limits)?.into_update())
    }

    /// The content hash of the update on the wire: blake3 of [`Update::to_safetensors_default`].
    pub fn content_hash(&self) -> Hash {
        Hash::of(&self.to_safetensors_default())
    }
}

/// The default update metadata: `{"format": "flock-update-v1"}`.
pub fn default_metadata() -> BTreeMap<String, String> {
    BTreeMap::from([("format".to_string(), UPDATE_FORMAT.to_string())])
}

/// Appends `s` as a JSON string literal (serde_json's escaping, so the header is what
/// `safetensors::serialize` would write).
fn push_json_str(out: &mut String, s: &str) {
    // Serializing a &str cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::{Dtype, TensorView};
    use std::collections::HashMap;

    fn layout() -> Arc<Layout> {
        Arc::new(
            Layout::new(vec![
                ParamSpec::new("z.weight", [2, 3]),
                ParamSpec::new("a.bias", [3]),
                ParamSpec::new("m\"odd\\name", []),
            ])
            .unwrap(),
        )
    }

    fn sample() -> Update {
        let values: Vec<f32> = (0..10).map(|i| i as f32 * 0.5 - 1.0).collect();
        Update::new(layout(), values).unwrap()
    }

    #[test]
    fn layout_offsets_and_numel() {
        let l = layout();
        assert_eq!(l.numel(), 10);
        assert_eq!(l.offsets(), &[0, 6, 9]);
        assert_eq!(l.range(1), 6..9);
        assert_eq!(l.range(2), 9..10);
        assert_eq!(l.index_of("a.bias"), Some(1));
    }

    #[test]
    fn layout_rejects_duplicates_reserved_and_overflow() {
        let dup = Layout::new(vec![ParamSpec::new("a", [1]), ParamSpec::new("a", [2])]);
        assert_eq!(dup, Err(LayoutError::DuplicateName("a".into())));
        let res = Layout::new(vec![ParamSpec::new(METADATA_KEY, [1])]);
        assert_eq!(res, Err(LayoutError::ReservedName));
        let big = Layout::new(vec![ParamSpec::new("a", [usize::MAX, 2])]);
        assert_eq!(big, Err(LayoutError::Overflow("a".into())));
    }

    #[test]
    fn fingerprint_depends_on_order_and_shape() {
        let a = Layout::new(vec![ParamSpec::new("a", [2]), ParamSpec::new("b", [2])]).unwrap();
        let b = Layout::new(vec![ParamSpec::new("b", [2]), ParamSpec::new("a", [2])]).unwrap();
        let c = Layout::new(vec![ParamSpec::new("a", [1, 2]), ParamSpec::new("b", [2])]).unwrap();
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
        let a2 = Layout::new(a.params().to_vec()).unwrap();
        assert_eq!(a.fingerprint(), a2.fingerprint());
    }

    #[test]
    fn update_rejects_wrong_length() {
        let err = Update::new(layout(), vec![0.0; 9]).unwrap_err();
        assert_eq!(err, LayoutError::WrongLength { expected: 10, found: 9 });
    }

    #[test]
    fn param_view() {
        let u = sample();
        assert_eq!(u.param("a.bias"), Some(&[2.0f32, 2.5, 3.0][..]));
        assert_eq!(u.param("nope"), None);
    }

    #[test]
    fn encoding_matches_safetensors_serialize_byte_for_byte() {
        let u = sample();
        let mine = u.to_safetensors_default();
        let bufs: Vec<(String, Vec<u8>, Vec<usize>)> = u
            .layout()
            .params()
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let bytes =
                    u.values()[u.layout().range(i)].iter().flat_map(|v| v.to_le_bytes()).collect();
                (p.name.clone(), bytes, p.shape.clone())
            })
            .collect();
        let views: Vec<(String, TensorView<'_>)> = bufs
            .iter()
            .map(|(n, b, s)| (n.clone(), TensorView::new(Dtype::F32, s.clone(), b).unwrap()))
            .collect();
        let meta: HashMap<String, String> = default_metadata().into_iter().collect();
        let theirs = safetensors::serialize(views, &Some(meta)).unwrap();
        assert_eq!(mine, theirs);
        // Without metadata too.
        let plain = u.to_safetensors(&BTreeMap::new());
        assert_eq!(plain.len() % 8, mine.len() % 8);
        assert!(safetensors::SafeTensors::deserialize(&plain).is_ok());
    }

    #[test]
    fn round_trip_keeps_layout_order_and_bits() {
        let u = sample();
        let bytes = u.to_safetensors_default();
        let back =
            Update::from_safetensors(&bytes, u.layout(), &ArtifactLimits::default()).unwrap();
        assert_eq!(back.values(), u.values());
        assert_eq!(**back.layout(), **u.layout());
    }

    #[test]
    fn encoding_is_deterministic_with_many_metadata_keys() {
        let u = sample();
        let meta: BTreeMap<String, String> =
            (0..20).map(|i| (format!("k{i}"), format!("v{i}"))).collect();
        let a = u.to_safetensors(&meta);
        let b = u.to_safetensors(&meta.iter().rev().map(|(k, v)| (k.clone(), v.clone())).collect());
        assert_eq!(a, b);
        let st = safetensors::SafeTensors::deserialize(&a).unwrap();
        assert_eq!(st.len(), 3);
        assert_eq!(u.content_hash(), Hash::of(&u.to_safetensors_default()));
    }

    #[test]
    fn content_hash_changes_with_values() {
        let u = sample();
        let mut v = u.clone();
        v.values_mut()[3] = f32::from_bits(v.values()[3].to_bits() ^ 1);
        assert_ne!(u.content_hash(), v.content_hash());
    }
}
