//! Canonical encoding: borsh, with a size bound on every decode.
//!
//! Borsh gives one byte string per value (no maps with random order, no optional fields),
//! so hashes and signatures over encodings are stable. Decoding untrusted bytes always goes
//! through [`decode_bounded`], which refuses input longer than the caller's limit before
//! parsing and rejects trailing bytes; borsh itself never pre-allocates more than the input
//! can fill, so a forged length prefix cannot exhaust memory.

use borsh::{BorshDeserialize, BorshSerialize};
use thiserror::Error;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    /// The input is longer than allowed for this type.
    #[error("{what} is {len} bytes, over the limit of {max}")]
    TooLarge {
        /// What was being decoded.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not a valid encoding.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// The decoder's message.
        reason: String,
    },
}

/// The canonical bytes of `value`.
pub fn encode<T: BorshSerialize + ?Sized>(value: &T) -> Vec<u8> {
    // Writing into a Vec cannot fail.
    borsh::to_vec(value).unwrap_or_else(|_| unreachable!("borsh into Vec is infallible"))
}

/// Decodes `bytes` as a `T`, refusing more than `max` bytes or trailing garbage.
pub fn decode_bounded<T: BorshDeserialize>(
    what: &'static str,
    bytes: &[u8],
    max: usize,
) -> Result<T, CodecError> {
    if bytes.len() > max {
        return Err(CodecError::TooLarge { what, len: bytes.len(), max });
    }
    borsh::from_slice(bytes).map_err(|e| CodecError::Malformed { what, reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_trailing_bytes() {
        let v: Vec<u32> = vec![1, 2, 3];
        let b = encode(&v);
        assert_eq!(decode_bounded::<Vec<u32>>("v", &b, 64).unwrap(), v);
        assert!(matches!(decode_bounded::<Vec<u32>>("v", &b, 4), Err(CodecError::TooLarge { .. })));
        let mut t = b;
        t.push(0);
        assert!(matches!(
            decode_bounded::<Vec<u32>>("v", &t, 64),
            Err(CodecError::Malformed { .. })
        ));
        // A huge length prefix with no data fails cleanly instead of allocating.
        let forged = u32::MAX.to_le_bytes().to_vec();
        assert!(decode_bounded::<Vec<u64>>("v", &forged, 64).is_err());
    }
}
