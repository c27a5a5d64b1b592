use crate::{math::mul_div_floor, Ppm, PrimitiveError};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::{fmt, str::FromStr};

/// An amount of FLOCK in base units: `1 FLOCK = 10^18` base units.
///
/// Arithmetic is checked (`None` on overflow or underflow); there is deliberately no
/// `Add`/`Sub` impl that could wrap or panic on untrusted values.
///
/// * `Display` prints the human form, `1.5 FLOCK`, with trailing zeros trimmed.
/// * `FromStr` accepts `1.5`, `1.5 FLOCK`, `1.5flock` and `1500000000000000000base`.
/// * Serde uses a decimal string of base units (`"1500000000000000000"`), since JSON numbers
///   cannot hold a `u128` exactly.
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
)]
pub struct Amount(pub u128);

impl Amount {
    /// Decimal places of FLOCK.
    pub const DECIMALS: u32 = 18;
    /// Base units in one FLOCK.
    pub const UNIT: u128 = 1_000_000_000_000_000_000;
    /// Zero.
    pub const ZERO: Self = Self(0);

    /// `n` whole FLOCK (saturating at `u128::MAX` base units).
    pub const fn flock(n: u64) -> Self {
        Self((n as u128).saturating_mul(Self::UNIT))
    }

    /// The raw base units.
    pub const fn base_units(self) -> u128 {
        self.0
    }

    /// Whether this is zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// `self + rhs`, or `None` on overflow.
    pub const fn checked_add(self, rhs: Self) -> Option<Self> {
        match self.0.checked_add(rhs.0) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }

    /// `self - rhs`, or `None` if `rhs > self`.
    pub const fn checked_sub(self, rhs: Self) -> Option<Self> {
        match self.0.checked_sub(rhs.0) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }

    /// `self - rhs`, floored at zero.
    pub const fn saturating_sub(self, rhs: Self) -> Self {
        Self(self.0.saturating_sub(rhs.0))
    }

    /// `self × ratio`, rounded down.
    pub const fn mul_ppm(self, ratio: Ppm) -> Self {
        Self(ratio.apply_floor(self.0))
    }

    /// `floor(self × num / den)` with a 256-bit intermediate; `None` if `den == 0`.
    pub fn mul_div(self, num: u128, den: u128) -> Option<Self> {
        mul_div_floor(self.0, num, den).map(Self)
    }

    /// The smaller of two amounts.
    pub fn min(self, other: Self) -> Self {
        Ord::min(self, other)
    }

    /// Parses a plain decimal string of base units (the JSON form).
    pub fn from_base_str(s: &str) -> Result<Self, PrimitiveError> {
        let err = |reason| PrimitiveError::InvalidAmount { input: s.to_owned(), reason };
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("expected a decimal integer of base units"));
        }
        s.parse::<u128>().map(Self).map_err(|_| err("too large"))
    }

    /// Parses a decimal FLOCK quantity such as `1.5` (at most 18 decimals).
    pub fn from_flock_str(s: &str) -> Result<Self, PrimitiveError> {
        let err = |reason| PrimitiveError::InvalidAmount { input: s.to_owned(), reason };
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, f),
            None => (s, ""),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(err("empty amount"));
        }
        if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("expected digits with an optional decimal point, like 1.5"));
        }
        if frac.len() > Self::DECIMALS as usize {
            return Err(err("more than 18 decimal places"));
        }
        let int_units: u128 =
            if int.is_empty() { 0 } else { int.parse::<u128>().map_err(|_| err("too large"))? };
        let mut frac_units: u128 = 0;
        for b in frac.bytes() {
            frac_units = frac_units * 10 + u128::from(b - b'0');
        }
        frac_units *= 10u128.pow(Self::DECIMALS - frac.len() as u32);
        int_units
            .checked_mul(Self::UNIT)
            .and_then(|v| v.checked_add(frac_units))
            .map(Self)
            .ok_or_else(|| err("too large"))
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let int = self.0 / Self::UNIT;
        let frac = self.0 % Self::UNIT;
        if frac == 0 {
            write!(f, "{int} FLOCK")
        } else {
            let digits = format!("{frac:018}");
            write!(f, "{int}.{} FLOCK", digits.trim_end_matches('0'))
        }
    }
}

impl FromStr for Amount {
    type Err = PrimitiveError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let lower = t.to_ascii_lowercase();
        if let Some(base) = lower.strip_suffix("base") {
            return Self::from_base_str(base.trim()).map_err(|_| PrimitiveError::InvalidAmount {
                input: s.to_owned(),
                reason: "expected an integer before 'base'",
            });
        }
        let num = lower.strip_suffix("flock").unwrap_or(&lower).trim();
        Self::from_flock_str(num).map_err(|e| match e {
            PrimitiveError::InvalidAmount { reason, .. } => {
                PrimitiveError::InvalidAmount { input: s.to_owned(), reason }
            }
            other => other,
        })
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        Self::from_base_str(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_prints_human_form() {
        let a: Amount = "1.5 FLOCK".parse().unwrap();
        assert_eq!(a.0, 1_500_000_000_000_000_000);
        assert_eq!(a.to_string(), "1.5 FLOCK");
        assert_eq!("1.5".parse::<Amount>().unwrap(), a);
        assert_eq!("1.5flock".parse::<Amount>().unwrap(), a);
        assert_eq!(".5".parse::<Amount>().unwrap().0, Amount::UNIT / 2);
        assert_eq!("7base".parse::<Amount>().unwrap(), Amount(7));
        assert_eq!(Amount(1).to_string(), "0.000000000000000001 FLOCK");
        assert_eq!(Amount::flock(1_000_000_000).to_string(), "1000000000 FLOCK");
    }

    #[test]
    fn rejects_bad_amounts_with_reasons() {
        for bad in ["", "abc", "1.2.3", "-1", "1.0000000000000000001", "1e18", "."] {
            let err = bad.parse::<Amount>().unwrap_err();
            assert!(matches!(err, PrimitiveError::InvalidAmount { .. }), "{bad}: {err}");
        }
        let huge = "340282366920938463464 FLOCK".parse::<Amount>().unwrap_err();
        assert!(huge.to_string().contains("too large"), "{huge}");
    }

    #[test]
    fn checked_math_never_wraps() {
        assert_eq!(Amount(5).checked_sub(Amount(6)), None);
        assert_eq!(Amount(u128::MAX).checked_add(Amount(1)), None);
        assert_eq!(Amount(1000).mul_ppm(Ppm::from_ppm(80_000).unwrap()), Amount(80));
    }

    #[test]
    fn json_is_base_unit_string() {
        let a = Amount::flock(2);
        let j = serde_json::to_string(&a).unwrap();
        assert_eq!(j, "\"2000000000000000000\"");
        assert_eq!(serde_json::from_str::<Amount>(&j).unwrap(), a);
        assert!(serde_json::from_str::<Amount>("\"-1\"").is_err());
    }

    proptest! {
        #[test]
        fn display_parse_roundtrip(v in any::<u128>()) {
            let a = Amount(v);
            prop_assert_eq!(a.to_string().parse::<Amount>().unwrap(), a);
        }
    }
}
