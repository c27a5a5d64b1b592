//! Integer helpers for fixed-point money math.

/// `floor(a × b / c)` with a 256-bit intermediate product, so it never overflows while the
/// result fits in a `u128`. Returns `None` when `c == 0` or the quotient exceeds `u128::MAX`.
pub fn mul_div_floor(a: u128, b: u128, c: u128) -> Option<u128> {
    if c == 0 {
        return None;
    }
    if let Some(p) = a.checked_mul(b) {
        return Some(p / c);
    }
    let (hi, lo) = mul_wide(a, b);
    if hi >= c {
        return None; // the quotient would not fit in 128 bits
    }
    // Long division of the 256-bit (hi, lo) by c, one bit at a time; hi < c keeps the
    // remainder below c, so the quotient fits in 128 bits.
    let mut rem = hi;
    let mut q: u128 = 0;
    for i in (0..128).rev() {
        let carry = rem >> 127;
        rem = (rem << 1) | ((lo >> i) & 1);
        q <<= 1;
        if carry == 1 || rem >= c {
            rem = rem.wrapping_sub(c);
            q |= 1;
        }
    }
    Some(q)
}

/// `ceil(a × b / c)` with a 256-bit intermediate; `None` when `c == 0` or the result exceeds
/// `u128::MAX`.
pub fn mul_div_ceil(a: u128, b: u128, c: u128) -> Option<u128> {
    let q = mul_div_floor(a, b, c)?;
    // Exact iff q × c == a × b (compared as 256-bit numbers).
    if mul_wide(q, c) == mul_wide(a, b) {
        Some(q)
    } else {
        q.checked_add(1)
    }
}

/// The full 256-bit product of two `u128`s as `(high, low)` halves.
pub const fn mul_wide(a: u128, b: u128) -> (u128, u128) {
    const MASK: u128 = u64::MAX as u128;
    let (a_hi, a_lo) = (a >> 64, a & MASK);
    let (b_hi, b_lo) = (b >> 64, b & MASK);
    let ll = a_lo * b_lo;
    let lh = a_lo * b_hi;
    let hl = a_hi * b_lo;
    let hh = a_hi * b_hi;
    let mid = (ll >> 64) + (lh & MASK) + (hl & MASK);
    let lo = (ll & MASK) | (mid << 64);
    let hi = hh + (lh >> 64) + (hl >> 64) + (mid >> 64);
    (hi, lo)
}

/// Integer square root (floor), used for diminishing-returns weights.
pub fn isqrt(n: u128) -> u128 {
    if n < 2 {
        return n;
    }
    // Newton's method from an over-estimate.
    let mut x = 1u128 << (128 - n.leading_zeros()).div_ceil(2);
    loop {
        let y = (x + n / x) / 2;
        if y >= x {
            return x;
        }
        x = y;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wide_products_divide_exactly() {
        let a = 10u128.pow(27);
        let b = 10u128.pow(27);
        assert_eq!(mul_div_floor(a, b, 10u128.pow(27)), Some(a));
        assert_eq!(mul_div_floor(u128::MAX, u128::MAX, u128::MAX), Some(u128::MAX));
        assert_eq!(mul_div_floor(u128::MAX, 2, 1), None);
        assert_eq!(mul_div_floor(7, 3, 2), Some(10));
        assert_eq!(mul_div_floor(1, 1, 0), None);
    }

    #[test]
    fn isqrt_small_values() {
        for (n, r) in [(0, 0), (1, 1), (3, 1), (4, 2), (15, 3), (16, 4), (1 << 100, 1 << 50)] {
            assert_eq!(isqrt(n), r, "isqrt({n})");
        }
        assert_eq!(isqrt(u128::MAX), u64::MAX as u128);
    }

    proptest! {
        #[test]
        fn mul_div_matches_reference(a in any::<u64>(), b in any::<u64>(), c in 1u64..) {
            let expect = (a as u128) * (b as u128) / (c as u128);
            prop_assert_eq!(mul_div_floor(a as u128, b as u128, c as u128), Some(expect));
        }

        #[test]
        fn mul_div_ceil_matches_reference(a in any::<u64>(), b in any::<u64>(), c in 1u64..) {
            let p = (a as u128) * (b as u128);
            prop_assert_eq!(mul_div_ceil(a as u128, b as u128, c as u128), Some(p.div_ceil(c as u128)));
        }

        #[test]
        fn mul_div_ceil_exact_on_wide_products(a in any::<u64>(), k in 1u128..1_000_000) {
            // (a·10^18 × k·10^18) / (k·10^18) is exact and overflows a plain u128 product.
            let x = a as u128 * 1_000_000_000_000_000_000;
            let y = k * 1_000_000_000_000_000_000;
            prop_assert_eq!(mul_div_ceil(x, y, y), Some(x));
        }

        #[test]
        fn mul_div_wide_identity(a in any::<u128>(), b in 1u128..) {
            // (a × b) / b == a whenever it is representable.
            prop_assert_eq!(mul_div_floor(a, b, b), Some(a));
        }

        #[test]
        fn isqrt_is_floor(n in any::<u128>()) {
            let r = isqrt(n);
            prop_assert!(r.checked_mul(r).is_some_and(|sq| sq <= n));
            let r1 = r + 1;
            prop_assert!(r1.checked_mul(r1).is_none_or(|sq| sq > n));
        }
    }
}
