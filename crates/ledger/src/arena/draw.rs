//! Verifiable validator assignment.
//!
//! When a round's validate phase begins, each revealed submission is assigned `k` validators,
//! drawn without replacement from the task's staked validators with weights that grow as the
//! square root of stake (diminishing returns: four times the stake, twice the chance). The
//! randomness is the seed of the block that opens the phase — a VRF output of the block
//! producer (solo mode) or the consensus engine's threshold VRF (BFT mode) — so nobody chooses
//! it, and the candidates and their stakes are stored with the draw. Anyone can re-run
//! [`draw_validators`] from that public data; [`verify_draw`] is that check.

use borsh::{BorshDeserialize, BorshSerialize};
use flock_primitives::{math::isqrt, Address, Amount, Hash, Height};
use serde::{Deserialize, Serialize};

/// The public inputs of a round's draw, stored on the ledger.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct RoundDraw {
    /// Height of the block whose seed was used.
    pub height: Height,
    /// That block's seed.
    pub seed: Hash,
    /// Candidate validators and their stakes (own + delegated), sorted by address.
    pub candidates: Vec<(Address, Amount)>,
    /// Validators per submission.
    pub k: u16,
}

/// A draw that does not match the public data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("assignment does not match the draw: expected {expected:?}, claimed {claimed:?}")]
pub struct DrawMismatch {
    /// What the draw gives.
    pub expected: Vec<Address>,
    /// What was claimed.
    pub claimed: Vec<Address>,
}

/// The draw weight of a stake: `⌊√(stake in whole FLOCK)⌋ + 1`.
pub fn draw_weight(stake: Amount) -> u128 {
    isqrt(stake.0 / Amount::UNIT) + 1
}

fn pick(seed: &Hash, task: u64, round: u32, submission: u32, j: u32) -> u128 {
    let h = Hash::of_parts(
        "flock arena draw v1",
        &[
            &seed.0,
            &task.to_le_bytes(),
            &round.to_le_bytes(),
            &submission.to_le_bytes(),
            &j.to_le_bytes(),
        ],
    );
    let mut b = [0u8; 16];
    b.copy_from_slice(&h.0[..16]);
    u128::from_le_bytes(b)
}

/// Draws the validators of `submission` from `draw` (deterministic; order = draw order).
pub fn draw_validators(draw: &RoundDraw, task: u64, round: u32, submission: u32) -> Vec<Address> {
    let mut pool: Vec<(Address, u128)> = draw
        .candidates
        .iter()
        .filter(|(_, s)| !s.is_zero())
        .map(|(a, s)| (*a, draw_weight(*s)))
        .collect();
    pool.sort_by_key(|(a, _)| *a);
    pool.dedup_by_key(|(a, _)| *a);
    let k = usize::from(draw.k).min(pool.len());
    let mut out = Vec::with_capacity(k);
    for j in 0..k as u32 {
        let total: u128 = pool.iter().map(|(_, w)| *w).sum();
        let mut x = pick(&draw.seed, task, round, submission, j) % total;
        let mut idx = pool.len() - 1;
        for (i, (_, w)) in pool.iter().enumerate() {
            if x < *w {
                idx = i;
                break;
            }
            x -= w;
        }
        out.push(pool.remove(idx).0);
    }
    out
}

/// Checks a claimed assignment against the public draw data.
pub fn verify_draw(
    draw: &RoundDraw,
    task: u64,
    round: u32,
    submission: u32,
    claimed: &[Address],
) -> Result<(), DrawMismatch> {
    let expected = draw_validators(draw, task, round, submission);
    if expected == claimed {
        Ok(())
    } else {
        Err(DrawMismatch { expected, claimed: claimed.to_vec() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(n: usize, k: u16, seed: &[u8]) -> RoundDraw {
        let candidates = (0..n)
            .map(|i| (Address::module(&format!("v{i}")), Amount::flock(100 * (i as u64 + 1))))
            .collect::<Vec<_>>();
        RoundDraw { height: Height(5), seed: Hash::of(seed), candidates, k }
    }

    #[test]
    fn draws_k_distinct_validators_reproducibly() {
        let d = draw(10, 3, b"s");
        let a = draw_validators(&d, 1, 0, 0);
        assert_eq!(a.len(), 3);
        let mut u = a.clone();
        u.sort();
        u.dedup();
        assert_eq!(u.len(), 3, "no validator twice");
        assert_eq!(a, draw_validators(&d, 1, 0, 0));
        assert!(verify_draw(&d, 1, 0, 0, &a).is_ok());
        // Fewer candidates than k: everyone.
        assert_eq!(draw_validators(&draw(2, 5, b"s"), 1, 0, 0).len(), 2);
        assert!(draw_validators(&draw(0, 3, b"s"), 1, 0, 0).is_empty());
    }

    #[test]
    fn forged_draws_are_rejected() {
        let d = draw(10, 3, b"s");
        let mut a = draw_validators(&d, 1, 0, 4);
        a[0] = d.candidates.iter().map(|c| c.0).find(|c| !a.contains(c)).unwrap();
        assert!(verify_draw(&d, 1, 0, 4, &a).is_err());
        // The same claim under another seed, submission or round does not verify either.
        let other_seed = RoundDraw { seed: Hash::of(b"t"), ..d.clone() };
        let moved = (0..32)
            .filter(|s| verify_draw(&other_seed, 1, 0, *s, &draw_validators(&d, 1, 0, *s)).is_err())
            .count();
        assert!(moved >= 24, "another seed must give other draws ({moved}/32 differ)");
        let moved = (0..32)
            .filter(|s| verify_draw(&d, 1, 1, *s, &draw_validators(&d, 1, 0, *s)).is_err())
            .count();
        assert!(moved >= 24, "another round must give other draws ({moved}/32 differ)");
    }

    #[test]
    fn selection_follows_square_root_of_stake() {
        // Two validators, stakes 100 and 400 FLOCK: weights 11 and 21 (√ + 1), so the big one is
        // drawn first in about 21/32 of submissions, not 4/5.
        let d = RoundDraw {
            height: Height(1),
            seed: Hash::of(b"dist"),
            candidates: vec![
                (Address::module("small"), Amount::flock(100)),
                (Address::module("big"), Amount::flock(400)),
            ],
            k: 1,
        };
        let big = Address::module("big");
        let n = 20_000u32;
        let hits = (0..n).filter(|s| draw_validators(&d, 1, 0, *s)[0] == big).count() as u32;
        let expect = n * 21 / 32;
        assert!(hits.abs_diff(expect) < n / 50, "big drawn {hits} of {n}, expected about {expect}");
    }
}
