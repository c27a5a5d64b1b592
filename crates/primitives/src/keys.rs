use crate::{Address, PrimitiveError};
use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::{fmt, str::FromStr};

/// An ed25519 public key (32 bytes, compressed Edwards point).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct PublicKey(pub [u8; 32]);

/// An ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Signature(pub [u8; 64]);

/// An ed25519 signing key with its public key.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl Keypair {
    /// A fresh key from the operating system's randomness (key generation only; never used by
    /// the ledger).
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
        Self::from_seed(seed)
    }

    /// The key whose secret is `seed` (deterministic: dev accounts and tests).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self { signing: SigningKey::from_bytes(&seed) }
    }

    /// A deterministic key derived from a label, for dev accounts: never use for real funds.
    pub fn dev(label: &str) -> Self {
        Self::from_seed(
            *blake3::Hasher::new_derive_key("flock dev key v1")
                .update(label.as_bytes())
                .finalize()
                .as_bytes(),
        )
    }

    /// The 32-byte secret seed (for the keystore).
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    /// The address of the public key.
    pub fn address(&self) -> Address {
        Address::from_public_key(&self.public())
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> Signature {
        Signature(self.signing.sign(msg).to_bytes())
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({})", self.address())
    }
}

impl PublicKey {
    /// Verifies `sig` over `msg` with ed25519's strict rules (no malleable signatures, no
    /// small-order keys).
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> Result<(), PrimitiveError> {
        let vk = VerifyingKey::from_bytes(&self.0).map_err(|_| PrimitiveError::InvalidPublicKey)?;
        let sig = ed25519_dalek::Signature::from_bytes(&sig.0);
        vk.verify_strict(msg, &sig).map_err(|_| PrimitiveError::BadSignature)
    }

    /// The address of this key.
    pub fn address(&self) -> Address {
        Address::from_public_key(self)
    }
}

/// Verifies many `(key, message, signature)` triples at once (ed25519 batch verification).
/// All must be valid; on failure, callers fall back to single verification to find which.
pub fn verify_batch(items: &[(&PublicKey, &[u8], &Signature)]) -> Result<(), PrimitiveError> {
    let mut keys = Vec::with_capacity(items.len());
    let mut msgs = Vec::with_capacity(items.len());
    let mut sigs = Vec::with_capacity(items.len());
    for (pk, m, s) in items {
        keys.push(VerifyingKey::from_bytes(&pk.0).map_err(|_| PrimitiveError::InvalidPublicKey)?);
        msgs.push(*m);
        sigs.push(ed25519_dalek::Signature::from_bytes(&s.0));
    }
    ed25519_dalek::verify_batch(&msgs, &sigs, &keys).map_err(|_| PrimitiveError::BadSignature)
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(self.0))
    }
}

impl FromStr for PublicKey {
    type Err = PrimitiveError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut out).map_err(|e| PrimitiveError::InvalidHex {
            what: "public key",
            reason: e.to_string(),
        })?;
        Ok(Self(out))
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        let mut out = [0u8; 64];
        hex::decode_to_slice(s.trim(), &mut out).map_err(serde::de::Error::custom)?;
        Ok(Self(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_reject() {
        let kp = Keypair::from_seed([1; 32]);
        let sig = kp.sign(b"hello");
        kp.public().verify(b"hello", &sig).unwrap();
        assert_eq!(kp.public().verify(b"hellO", &sig), Err(PrimitiveError::BadSignature));
        let other = Keypair::from_seed([2; 32]);
        assert_eq!(other.public().verify(b"hello", &sig), Err(PrimitiveError::BadSignature));
    }

    #[test]
    fn batch_verification_agrees() {
        let kps: Vec<_> = (0..8u8).map(|i| Keypair::from_seed([i; 32])).collect();
        let pks: Vec<_> = kps.iter().map(Keypair::public).collect();
        let msgs: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 10]).collect();
        let sigs: Vec<_> = kps.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
        let items: Vec<_> =
            pks.iter().zip(&msgs).zip(&sigs).map(|((p, m), s)| (p, m.as_slice(), s)).collect();
        verify_batch(&items).unwrap();
        let mut bad = items.clone();
        bad[3].1 = b"tampered";
        assert!(verify_batch(&bad).is_err());
    }
}
