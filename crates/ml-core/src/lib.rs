//! Framework-neutral ML pieces of flock: the update wire format, artifact checks and
//! deterministic aggregation. No burn, no GPU, no clock, no OS randomness.
//!
//! # The boundary
//!
//! Everything that crosses between machines or reaches the ledger is framework-neutral: an
//! update (or a whole model) is a `Vec<f32>` in a fixed parameter order, described by a
//! [`Layout`] (ordered [`ParamSpec`]s: names and shapes), and travels as **safetensors**. The ML
//! engine (burn) converts its modules to and from [`Update`]s at its edge; aggregation,
//! validation and the ledger never see a burn type.
//!
//! ```text
//!  trainer (burn) ──► Update ──► safetensors bytes ──► artifact store (by blake3 hash)
//!                                                          │
//!  voter: artifact::validate (size, header, dtype, shape, max_params, finite)
//!           ──► Update ──► aggregate::UpdateSet (canonical order) ──► rule ──► Update
//!           ──► content_hash() ──► commit/reveal on the ledger
//! ```
//!
//! * [`update`]: [`ParamSpec`], [`Layout`], [`Update`]; deterministic safetensors encoding and
//!   content hashing.
//! * [`artifact`]: bounded, checked decoding of untrusted safetensors ([`artifact::validate`]),
//!   with precise typed errors ([`ArtifactError`], each with a stable `code()`).
//! * [`aggregate`]: FedAvg, coordinate-wise median, trimmed mean, multi-Krum, L2 clipping and
//!   seeded Gaussian noise for differential privacy.
//!
//! # Determinism
//!
//! FL voters must compute a bit-identical aggregate (and hence hash) from the same set of
//! updates, whatever order they arrived in and whatever machine they run on. So:
//!
//! * inputs are put in a **canonical order** (by content key) before any arithmetic;
//! * every coordinate is **accumulated in f64 in that fixed order and rounded to f32 once**;
//!   order statistics (median, trimmed mean) sort by the IEEE total order;
//! * parallelism (rayon) splits **coordinates into fixed-size chunks**, never updates, and any
//!   reduction across chunks adds partials in chunk order;
//! * randomness (DP noise) comes from a caller-given seed through ChaCha20 with a hand-written
//!   normal sampler that avoids platform `libm`;
//! * the safetensors encoding writes header keys in a fixed order, so equal updates have equal
//!   bytes and equal [`Update::content_hash`]es.
//!
//! # Example
//!
//! ```
//! use flock_ml_core::{aggregate, ArtifactLimits, Layout, ParamSpec, Update, UpdateSet};
//! use std::sync::Arc;
//!
//! let params = vec![ParamSpec::new("w", [2, 2]), ParamSpec::new("b", [2])];
//! let layout = Arc::new(Layout::new(params)?);
//! // A proposer encodes its update; a voter decodes it with the task's limits.
//! let mine = Update::new(layout.clone(), vec![1.0, 2.0, 3.0, 4.0, 0.5, -0.5])?;
//! let bytes = mine.to_safetensors_default();
//! let a = Update::from_safetensors(&bytes, &layout, &ArtifactLimits::for_params(1_000))?;
//! let b = Update::new(layout.clone(), vec![3.0, 2.0, 1.0, 0.0, 0.5, 0.5])?;
//!
//! // Sample counts as weights; any arrival order gives the same bits.
//! let updates = [a, b];
//! let set = UpdateSet::from_updates(&updates, Some(&[1.0, 3.0]), None)?;
//! let avg = aggregate::fedavg(&set);
//! assert_eq!(avg, vec![2.5, 2.0, 1.5, 1.0, 0.5, 0.25]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod aggregate;
pub mod artifact;
pub mod secagg;
pub mod update;

pub use aggregate::{AggregateError, AggregationRule, UpdateSet};
pub use artifact::{ArtifactError, ArtifactLimits, ValidatedArtifact};
pub use update::{Layout, LayoutError, ParamSpec, Update};
