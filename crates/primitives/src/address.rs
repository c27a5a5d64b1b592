use crate::{PrimitiveError, PublicKey};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::{fmt, str::FromStr};

const PREFIX: &str = "flk1";

/// An account address: the first 20 bytes of a domain-separated blake3 of an ed25519 public key.
///
/// The human form is `flk1` + 40 hex characters of the address + 8 hex characters of checksum
/// (blake3 over the address), so a mistyped character is caught before money moves.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, BorshSerialize, BorshDeserialize,
)]
pub struct Address(pub [u8; 20]);

impl Address {
    /// The address of a public key.
    pub fn from_public_key(pk: &PublicKey) -> Self {
        let h = blake3::Hasher::new_derive_key("flock address v1").update(&pk.0).finalize();
        let mut a = [0u8; 20];
        a.copy_from_slice(&h.as_bytes()[..20]);
        Self(a)
    }

    /// A reserved, keyless address derived from a name (module accounts; nobody holds its key).
    pub fn module(name: &str) -> Self {
        let h = blake3::Hasher::new_derive_key("flock module address v1")
            .update(name.as_bytes())
            .finalize();
        let mut a = [0u8; 20];
        a.copy_from_slice(&h.as_bytes()[..20]);
        Self(a)
    }

    fn checksum(&self) -> [u8; 4] {
        let h =
            blake3::Hasher::new_derive_key("flock address checksum v1").update(&self.0).finalize();
        let mut c = [0u8; 4];
        c.copy_from_slice(&h.as_bytes()[..4]);
        c
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}{}", hex::encode(self.0), hex::encode(self.checksum()))
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

impl FromStr for Address {
    type Err = PrimitiveError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| PrimitiveError::InvalidAddress { input: s.to_owned(), reason };
        let body = s.trim().strip_prefix(PREFIX).ok_or_else(|| err("must start with flk1"))?;
        if body.len() != 48 {
            return Err(err("expected flk1 followed by 48 hex characters"));
        }
        let bytes = hex::decode(body.to_ascii_lowercase()).map_err(|_| err("not hex"))?;
        let mut a = [0u8; 20];
        a.copy_from_slice(&bytes[..20]);
        let addr = Self(a);
        if bytes[20..] != addr.checksum() {
            return Err(err("checksum mismatch (mistyped?)"));
        }
        Ok(addr)
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypair;

    #[test]
    fn human_form_roundtrips_and_catches_typos() {
        let kp = Keypair::from_seed([7; 32]);
        let a = kp.address();
        let s = a.to_string();
        assert!(s.starts_with("flk1") && s.len() == 52, "{s}");
        assert_eq!(s.parse::<Address>().unwrap(), a);
        // Flip one hex digit in the body.
        let mut chars: Vec<char> = s.chars().collect();
        chars[10] = if chars[10] == '0' { '1' } else { '0' };
        let typo: String = chars.into_iter().collect();
        let err = typo.parse::<Address>().unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        assert!("0xabc".parse::<Address>().is_err());
    }

    #[test]
    fn module_addresses_differ_from_key_addresses() {
        assert_ne!(Address::module("burn"), Address::module("community"));
    }
}
