//! Primitive types shared by every flock crate.
//!
//! Everything here is deterministic and free of clocks, OS randomness and floats, so the
//! ledger can hash and sign it:
//!
//! | type | what it is |
//! |---|---|
//! | [`Amount`] | FLOCK in base units (`u128`, 18 decimals), checked arithmetic, parses and prints `1.5 FLOCK` |
//! | [`Ppm`] | a ratio in parts per million (`1_000_000` = 100%), applied with floor rounding |
//! | [`Hash`](struct@Hash) | a 32-byte blake3 digest, printed as hex |
//! | [`Address`] | the 20-byte account id derived from an ed25519 public key; human form `flk1…` with a checksum |
//! | [`Keypair`], [`PublicKey`], [`Signature`] | ed25519 (strict verification) |
//! | [`VrfKeypair`], [`VrfPublicKey`], [`VrfProof`] | sr25519 VRF (schnorrkel) for draws anyone can re-check |
//! | [`Height`], [`Epoch`] | block height and epoch newtypes |
//! | [`codec`] | canonical borsh encoding with a size bound on every decode |
//!
//! # Design decisions
//! * Money never touches a float: ratios are [`Ppm`] and wide products go through
//!   [`math::mul_div_floor`], which keeps a 256-bit intermediate so `a × b / c` cannot overflow.
//! * Rounding is always toward the protocol (floor for payouts); callers account for the dust.
//! * JSON carries amounts as decimal strings of base units, since a `u128` does not fit a JSON
//!   number; [`Amount`]'s `Display` is the human `1.5 FLOCK` form.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
#![deny(clippy::float_arithmetic, clippy::disallowed_methods)]

mod address;
mod amount;
pub mod codec;
mod dh;
mod error;
mod hash;
mod height;
mod keys;
pub mod math;
mod ppm;
mod vrf;

pub use address::Address;
pub use amount::Amount;
pub use dh::{MaskPublicKey, MaskSecret};
pub use error::PrimitiveError;
pub use hash::Hash;
pub use height::{Epoch, Height};
pub use keys::{verify_batch, Keypair, PublicKey, Signature};
pub use ppm::Ppm;
pub use vrf::{VrfKeypair, VrfOutput, VrfProof, VrfPublicKey};
