use crate::PrimitiveError;
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A ratio in parts per million: `1_000_000` is 100%.
///
/// Construction checks the range, so a `Ppm` held by the ledger is always ≤ 100%.
/// Borsh decoding does not re-check it; ledger parameters run [`Ppm::check`] in `validate`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(try_from = "u32", into = "u32")]
pub struct Ppm(u32);

impl Ppm {
    /// The denominator: one million.
    pub const DENOM: u32 = 1_000_000;
    /// 0%.
    pub const ZERO: Self = Self(0);
    /// 100%.
    pub const ONE: Self = Self(Self::DENOM);

    /// A ratio of `ppm` parts per million; fails above 100%.
    pub const fn from_ppm(ppm: u32) -> Result<Self, PrimitiveError> {
        if ppm > Self::DENOM {
            Err(PrimitiveError::PpmOutOfRange(ppm as u64))
        } else {
            Ok(Self(ppm))
        }
    }

    /// A ratio of `ppm` parts per million, clamped to 100% (for constants).
    pub const fn saturating(ppm: u32) -> Self {
        if ppm > Self::DENOM {
            Self(Self::DENOM)
        } else {
            Self(ppm)
        }
    }

    /// A whole percentage (`percent(8)` is 8%); fails above 100.
    pub const fn percent(p: u32) -> Result<Self, PrimitiveError> {
        if p > 100 {
            Err(PrimitiveError::PpmOutOfRange(p as u64 * 10_000))
        } else {
            Ok(Self(p * 10_000))
        }
    }

    /// Parts per million.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// Re-checks the range (for values decoded from bytes).
    pub const fn check(self) -> Result<Self, PrimitiveError> {
        Self::from_ppm(self.0)
    }

    /// `1 - self`.
    pub const fn complement(self) -> Self {
        Self(Self::DENOM.saturating_sub(self.0))
    }

    /// `floor(value × self)`; exact, since `value × 10^6` fits in a `u128` intermediate
    /// whenever `value` is below `u128::MAX / 10^6`, and the slow path handles the rest.
    pub const fn apply_floor(self, value: u128) -> u128 {
        let den = Self::DENOM as u128;
        let num = self.0 as u128;
        // Split value = q × den + r so no intermediate overflows.
        let q = value / den;
        let r = value % den;
        q * num + r * num / den
    }
}

impl TryFrom<u32> for Ppm {
    type Error = PrimitiveError;
    fn try_from(v: u32) -> Result<Self, Self::Error> {
        Self::from_ppm(v)
    }
}

impl From<Ppm> for u32 {
    fn from(p: Ppm) -> Self {
        p.0
    }
}

impl fmt::Display for Ppm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / 10_000;
        let frac = self.0 % 10_000;
        if frac == 0 {
            write!(f, "{whole}%")
        } else {
            let digits = format!("{frac:04}");
            write!(f, "{whole}.{}%", digits.trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn range_and_display() {
        assert!(Ppm::from_ppm(1_000_001).is_err());
        assert_eq!(Ppm::from_ppm(145_000).unwrap().to_string(), "14.5%");
        assert_eq!(Ppm::percent(8).unwrap().to_string(), "8%");
        assert!(serde_json::from_str::<Ppm>("2000000").is_err());
    }

    proptest! {
        #[test]
        fn apply_floor_is_exact(v in any::<u128>(), p in 0u32..=1_000_000) {
            let ppm = Ppm::from_ppm(p).unwrap();
            let got = ppm.apply_floor(v);
            let expect = crate::math::mul_div_floor(v, p as u128, 1_000_000).unwrap();
            prop_assert_eq!(got, expect);
            prop_assert!(got <= v);
        }
    }
}
