//! Verifiable random function (sr25519 VRF from schnorrkel).
//!
//! A holder of a [`VrfKeypair`] evaluates the VRF on a public input and publishes the
//! [`VrfProof`]; anyone with the [`VrfPublicKey`] re-derives the same [`VrfOutput`] from the
//! proof, and nobody (the holder included) can choose the output. Draws (block seeds, role and
//! assignment lotteries) read the output only.

use crate::{Hash, PrimitiveError};
use borsh::{BorshDeserialize, BorshSerialize};
use schnorrkel::{
    vrf::{VRFPreOut, VRFProof},
    ExpansionMode, MiniSecretKey,
};
use serde::{Deserialize, Serialize};
use std::fmt;

const SIGNING_CONTEXT: &[u8] = b"flock vrf v1";
const OUTPUT_CONTEXT: &[u8] = b"flock vrf output v1";

/// A VRF output: 32 uniformly distributed bytes.
pub type VrfOutput = Hash;

/// An sr25519 VRF key pair.
pub struct VrfKeypair(schnorrkel::Keypair);

/// An sr25519 public key (32 bytes).
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
pub struct VrfPublicKey(#[serde(with = "hex_32")] pub [u8; 32]);

/// A VRF pre-output and its proof (32 + 64 bytes).
#[derive(Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct VrfProof {
    /// The VRF pre-output point.
    #[serde(with = "hex_32")]
    pub preout: [u8; 32],
    /// The DLEQ proof that the pre-output is correct.
    #[serde(with = "hex_64")]
    pub proof: [u8; 64],
}

impl VrfKeypair {
    /// The key pair whose mini secret is `seed`.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        // `from_bytes` only fails on a wrong length, which a `[u8; 32]` cannot have.
        let mini = MiniSecretKey::from_bytes(&seed).unwrap_or_else(|_| unreachable!());
        Self(mini.expand_to_keypair(ExpansionMode::Ed25519))
    }

    /// The public key.
    pub fn public(&self) -> VrfPublicKey {
        VrfPublicKey(self.0.public.to_bytes())
    }

    /// Evaluates the VRF on `input`: the output and the proof anyone can check.
    pub fn evaluate(&self, input: &[u8]) -> (VrfOutput, VrfProof) {
        let ctx = schnorrkel::signing_context(SIGNING_CONTEXT);
        let (inout, proof, _) = self.0.vrf_sign(ctx.bytes(input));
        let out: [u8; 32] = inout.make_bytes(OUTPUT_CONTEXT);
        (Hash(out), VrfProof { preout: inout.to_preout().to_bytes(), proof: proof.to_bytes() })
    }
}

impl VrfPublicKey {
    /// Checks `proof` for `input` and returns the output it commits to.
    pub fn verify(&self, input: &[u8], proof: &VrfProof) -> Result<VrfOutput, PrimitiveError> {
        let pk = schnorrkel::PublicKey::from_bytes(&self.0)
            .map_err(|_| PrimitiveError::InvalidPublicKey)?;
        let preout =
            VRFPreOut::from_bytes(&proof.preout).map_err(|_| PrimitiveError::BadVrfProof)?;
        let p = VRFProof::from_bytes(&proof.proof).map_err(|_| PrimitiveError::BadVrfProof)?;
        let ctx = schnorrkel::signing_context(SIGNING_CONTEXT);
        let (inout, _) = pk
            .vrf_verify(ctx.bytes(input), &preout, &p)
            .map_err(|_| PrimitiveError::BadVrfProof)?;
        Ok(Hash(inout.make_bytes(OUTPUT_CONTEXT)))
    }
}

impl fmt::Debug for VrfKeypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VrfKeypair({:?})", self.public())
    }
}

impl fmt::Debug for VrfPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VrfPublicKey({})", hex::encode(self.0))
    }
}

impl fmt::Debug for VrfProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VrfProof({}…)", hex::encode(&self.preout[..8]))
    }
}

macro_rules! hex_array {
    ($name:ident, $n:expr) => {
        pub(crate) mod $name {
            use serde::{Deserialize, Deserializer, Serializer};
            pub(crate) fn serialize<S: Serializer>(v: &[u8; $n], s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&hex::encode(v))
            }
            pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
                d: D,
            ) -> Result<[u8; $n], D::Error> {
                let s = <String as Deserialize>::deserialize(d)?;
                let mut out = [0u8; $n];
                hex::decode_to_slice(s, &mut out).map_err(serde::de::Error::custom)?;
                Ok(out)
            }
        }
    };
}
hex_array!(hex_32, 32);
pub(crate) use hex_32 as hex_32_serde;
hex_array!(hex_64, 64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_verifies_and_is_bound_to_key_and_input() {
        let kp = VrfKeypair::from_seed([3; 32]);
        let (out, proof) = kp.evaluate(b"round 1");
        assert_eq!(kp.public().verify(b"round 1", &proof).unwrap(), out);
        assert_eq!(kp.public().verify(b"round 2", &proof), Err(PrimitiveError::BadVrfProof));
        let other = VrfKeypair::from_seed([4; 32]);
        assert!(other.public().verify(b"round 1", &proof).is_err());
        // Deterministic: the same key and input give the same output.
        assert_eq!(kp.evaluate(b"round 1").0, out);
        let mut forged = proof;
        forged.preout[0] ^= 1;
        assert!(kp.public().verify(b"round 1", &forged).is_err());
    }
}
