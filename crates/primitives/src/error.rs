use thiserror::Error;

/// Errors from parsing or checking primitive values.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PrimitiveError {
    /// An amount string could not be parsed.
    #[error("invalid amount {input:?}: {reason}")]
    InvalidAmount {
        /// The text that was given.
        input: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// An address string could not be parsed.
    #[error("invalid address {input:?}: {reason}")]
    InvalidAddress {
        /// The text that was given.
        input: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// Hex text could not be decoded into the expected number of bytes.
    #[error("invalid hex for {what}: {reason}")]
    InvalidHex {
        /// The kind of value that was being decoded.
        what: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// A public key is not a valid curve point.
    #[error("invalid public key")]
    InvalidPublicKey,
    /// A signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// A VRF output or proof does not verify.
    #[error("VRF proof does not verify")]
    BadVrfProof,
    /// A ratio is above 100%.
    #[error("ratio {0} ppm is above 1,000,000 (100%)")]
    PpmOutOfRange(u64),
}
