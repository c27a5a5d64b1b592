//! Key agreement for secure aggregation: Diffie–Hellman on the Ristretto group.
//!
//! Each FL Alliance member publishes a [`MaskPublicKey`] derived from a secret it never shares
//! (a key of its own, separate from its signing key); two members who know each other's public
//! keys agree on the same 32 bytes, which nobody else can compute. The secure-aggregation pair
//! seeds are hashes of that secret bound to the task and round, so masks are never reused.

use crate::{vrf::hex_32_serde, Hash, PrimitiveError};
use borsh::{BorshDeserialize, BorshSerialize};
use curve25519_dalek::{
    constants::RISTRETTO_BASEPOINT_POINT, ristretto::CompressedRistretto, scalar::Scalar,
    traits::Identity, RistrettoPoint,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A member's secret masking key (a Ristretto scalar).
pub struct MaskSecret(Scalar);

/// A member's public masking key (a compressed Ristretto point, 32 bytes).
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct MaskPublicKey(#[serde(with = "hex_32_serde")] pub [u8; 32]);

impl fmt::Debug for MaskPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MaskPublicKey({})", hex::encode(self.0))
    }
}

impl MaskSecret {
    /// Derives the masking secret from a member's secret bytes and a context (e.g. the task),
    /// so one signing key yields an independent masking key per task.
    pub fn derive(secret: &[u8; 32], context: &[u8]) -> Self {
        let mut wide = [0u8; 64];
        let mut h = blake3::Hasher::new_derive_key("flock secagg mask key v1");
        h.update(secret).update(&(context.len() as u64).to_le_bytes()).update(context);
        h.finalize_xof().fill(&mut wide);
        Self(Scalar::from_bytes_mod_order_wide(&wide))
    }

    /// The public key.
    pub fn public(&self) -> MaskPublicKey {
        MaskPublicKey((RISTRETTO_BASEPOINT_POINT * self.0).compress().to_bytes())
    }

    /// The shared secret with `peer` (the same from both sides).
    pub fn agree(&self, peer: &MaskPublicKey) -> Result<Hash, PrimitiveError> {
        let p = CompressedRistretto(peer.0).decompress().ok_or(PrimitiveError::InvalidPublicKey)?;
        if p == RistrettoPoint::identity() {
            return Err(PrimitiveError::InvalidPublicKey);
        }
        let shared = (p * self.0).compress().to_bytes();
        Ok(Hash::of_parts("flock secagg shared v1", &[&shared]))
    }
}

impl MaskPublicKey {
    /// Whether the bytes are a valid, non-identity group element.
    pub fn is_valid(&self) -> bool {
        CompressedRistretto(self.0).decompress().is_some_and(|p| p != RistrettoPoint::identity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_agree_and_outsiders_do_not() {
        let a = MaskSecret::derive(&[1; 32], b"task 7");
        let b = MaskSecret::derive(&[2; 32], b"task 7");
        let c = MaskSecret::derive(&[3; 32], b"task 7");
        let ab = a.agree(&b.public()).unwrap();
        assert_eq!(ab, b.agree(&a.public()).unwrap());
        assert_ne!(ab, c.agree(&a.public()).unwrap());
        assert_ne!(ab, c.agree(&b.public()).unwrap());
        // Another task gives another key.
        assert_ne!(a.public(), MaskSecret::derive(&[1; 32], b"task 8").public());
    }

    #[test]
    fn invalid_points_are_rejected() {
        let a = MaskSecret::derive(&[1; 32], b"t");
        assert_eq!(a.agree(&MaskPublicKey([0; 32])), Err(PrimitiveError::InvalidPublicKey));
        assert_eq!(a.agree(&MaskPublicKey([0xff; 32])), Err(PrimitiveError::InvalidPublicKey));
        assert!(!MaskPublicKey([0; 32]).is_valid());
        assert!(a.public().is_valid());
    }
}
