//! The aggregation rules over an [`UpdateSet`]: FedAvg, coordinate-wise median, trimmed mean
//! and multi-Krum.
//!
//! Parallelism is over coordinate chunks only, never over updates: each output coordinate is
//! computed from its column in canonical order (FedAvg, Krum's averaging) or from its sorted
//! column (median, trimmed mean), so the bits never depend on scheduling.

use super::{
    set::{dist_sq, fsum, CHUNK},
    AggregateError, UpdateSet,
};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Coordinates per FedAvg work item (its f64 accumulator stays in L1/L2). Any size gives the
/// same bits: each coordinate's arithmetic does not depend on chunking.
const MEAN_CHUNK: usize = 4096;
/// Columns per work item for the coordinate-wise rules (the transposed block is
/// `COLUMNS × n` keys, small enough for the L2 cache at n = 100).
const COLUMNS: usize = 1024;
/// Coordinates per Krum distance partial (fixed: partials are added in chunk order).
const KRUM_CHUNK: usize = CHUNK * 16;
/// Coordinates per cache block inside a Krum chunk.
const KRUM_BLOCK: usize = 2048;

/// Weighted FedAvg: `Σ wᵢ·xᵢ / Σ wᵢ` per coordinate, accumulated in f64 over the updates in
/// canonical order and rounded to f32 once.
pub fn fedavg(set: &UpdateSet<'_>) -> Vec<f32> {
    weighted_mean(set.rows(), set.weights(), set.total_weight(), set.dim())
}

/// `Σ wᵢ·rowᵢ / total`, rows in the given (canonical) order.
///
/// Each coordinate is accumulated strictly row after row (`a += w₀x₀; a += w₁x₁; …`); rows are
/// folded four per pass over a cache-sized accumulator only to cut memory traffic, which does
/// not change any coordinate's sequence of operations.
fn weighted_mean(rows: &[&[f32]], weights: &[f64], total: f64, dim: usize) -> Vec<f32> {
    let mut out = vec![0f32; dim];
    out.par_chunks_mut(MEAN_CHUNK).enumerate().for_each_init(
        || vec![0f64; MEAN_CHUNK],
        |acc, (c, oc)| {
            let (start, len) = (c * MEAN_CHUNK, oc.len());
            let acc = &mut acc[..len];
            // -0.0 is the additive identity (+0.0 would turn an all-(-0.0) column into +0.0).
            acc.fill(-0.0);
            let quads = rows.chunks_exact(4).zip(weights.chunks_exact(4));
            let rest = rows.len() - rows.len() % 4;
            for (r, w) in quads {
                let (x0, x1) = (&r[0][start..start + len], &r[1][start..start + len]);
                let (x2, x3) = (&r[2][start..start + len], &r[3][start..start + len]);
                for k in 0..len {
                    let mut a = acc[k];
                    a += w[0] * f64::from(x0[k]);
                    a += w[1] * f64::from(x1[k]);
                    a += w[2] * f64::from(x2[k]);
                    a += w[3] * f64::from(x3[k]);
                    acc[k] = a;
                }
            }
            for (row, &w) in rows[rest..].iter().zip(&weights[rest..]) {
                for (a, &x) in acc.iter_mut().zip(&row[start..start + len]) {
                    *a += w * f64::from(x);
                }
            }
            for (o, a) in oc.iter_mut().zip(acc.iter()) {
                *o = (a / total) as f32;
            }
        },
    );
    out
}

/// Coordinate-wise median (unweighted). For an even count, the mean of the two middle values
/// (computed in f64, rounded once). Sorting uses the IEEE total order, so the result is unique
/// whatever the input order. With f < n/2 arbitrary outliers it stays within the range of the
/// honest values.
pub fn median(set: &UpdateSet<'_>) -> Vec<f32> {
    let n = set.len();
    coordinatewise(set, |col| {
        let (lo_part, hi, _) = col.select_nth_unstable(n / 2);
        let hi = from_key(*hi);
        if n % 2 == 1 {
            hi
        } else {
            // Every element left of the pivot is ≤ it; the largest is the lower middle.
            let lo = from_key(lo_part.iter().copied().max().unwrap_or(0));
            ((f64::from(lo) + f64::from(hi)) * 0.5) as f32
        }
    })
}

/// Coordinate-wise trimmed mean (unweighted): per coordinate, drop the `trim` smallest and
/// `trim` largest values (IEEE total order) and average the rest in ascending order in f64.
/// With at most `trim` outliers the result stays within the range of the honest values.
pub fn trimmed_mean(set: &UpdateSet<'_>, trim: usize) -> Result<Vec<f32>, AggregateError> {
    let n = set.len();
    if n <= 2 * trim {
        return Err(AggregateError::TrimTooLarge { trim, n });
    }
    let kept = (n - 2 * trim) as f64;
    Ok(coordinatewise(set, |col| {
        col.sort_unstable();
        let sum = fsum(col[trim..n - trim].iter().map(|&k| f64::from(from_key(k))));
        (sum / kept) as f32
    }))
}

/// How often each update was trimmed by [`trimmed_mean_with_report`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrimReport {
    /// For each update (caller's indices), the number of coordinates where its value was among
    /// the `trim` smallest or `trim` largest and so left out of the mean.
    pub trimmed: Vec<u64>,
    /// The number of coordinates.
    pub coordinates: u64,
}

/// [`trimmed_mean`] plus, per update, how many of its coordinates were trimmed (the "kept or
/// trimmed" outcome that can feed rewards). Equal values are attributed by canonical order, so
/// the counts are as deterministic as the mean; the mean has the same bits as [`trimmed_mean`].
pub fn trimmed_mean_with_report(
    set: &UpdateSet<'_>,
    trim: usize,
) -> Result<(Vec<f32>, TrimReport), AggregateError> {
    let n = set.len();
    if n <= 2 * trim {
        return Err(AggregateError::TrimTooLarge { trim, n });
    }
    let kept = (n - 2 * trim) as f64;
    let rows = set.rows();
    let mut out = vec![0f32; set.dim()];
    let counts = out
        .par_chunks_mut(COLUMNS)
        .enumerate()
        .map(|(c, oc)| {
            let start = c * COLUMNS;
            let mut counts = vec![0u64; n];
            let mut col = vec![0u64; n];
            for (k, o) in oc.iter_mut().enumerate() {
                for (i, row) in rows.iter().enumerate() {
                    col[i] = (u64::from(order_key(row[start + k])) << 32) | i as u64;
                }
                col.sort_unstable();
                let sum = fsum(
                    col[trim..n - trim].iter().map(|&x| f64::from(from_key((x >> 32) as u32))),
                );
                *o = (sum / kept) as f32;
                for &x in col[..trim].iter().chain(&col[n - trim..]) {
                    counts[(x & 0xffff_ffff) as usize] += 1;
                }
            }
            counts
        })
        // Integer sums: associative, so the reduction order does not matter.
        .reduce(
            || vec![0u64; n],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                a
            },
        );
    let mut trimmed = vec![0u64; n];
    for (c, &i) in set.origin().iter().enumerate() {
        trimmed[i] = counts[c];
    }
    Ok((out, TrimReport { trimmed, coordinates: set.dim() as u64 }))
}

/// Applies `reduce` to every coordinate's column of order keys (see [`order_key`]).
fn coordinatewise(set: &UpdateSet<'_>, reduce: impl Fn(&mut [u32]) -> f32 + Sync) -> Vec<f32> {
    let n = set.len();
    let rows = set.rows();
    let mut out = vec![0f32; set.dim()];
    out.par_chunks_mut(COLUMNS).enumerate().for_each(|(c, oc)| {
        let start = c * COLUMNS;
        let mut cols = vec![0u32; oc.len() * n];
        for (i, row) in rows.iter().enumerate() {
            for (k, &x) in row[start..start + oc.len()].iter().enumerate() {
                cols[k * n + i] = order_key(x);
            }
        }
        for (o, col) in oc.iter_mut().zip(cols.chunks_exact_mut(n)) {
            *o = reduce(col);
        }
    });
    out
}

/// Maps an f32 to a u32 whose unsigned order is [`f32::total_cmp`]'s order.
fn order_key(x: f32) -> u32 {
    let b = x.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// The inverse of [`order_key`].
fn from_key(k: u32) -> f32 {
    f32::from_bits(if k & 0x8000_0000 != 0 { k & 0x7fff_ffff } else { !k })
}

/// What multi-Krum kept and dropped, in the caller's indices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KrumSelection {
    /// Indices of the updates averaged (ascending).
    pub selected: Vec<usize>,
    /// Indices of the updates left out (ascending).
    pub rejected: Vec<usize>,
    /// Each update's Krum score (sum of squared distances to its n − f − 2 nearest
    /// neighbours), indexed like the caller's input.
    pub scores: Vec<f64>,
}

/// Multi-Krum (Blanchard et al., 2017): scores each update by the sum of squared L2 distances
/// to its `n − f − 2` nearest neighbours, keeps the `m` lowest scores (ties broken by
/// canonical order) and returns their unweighted mean with the selection.
///
/// Requires `n ≥ 2f + 3` and `1 ≤ m ≤ n`; `m = n − f` is the usual choice.
pub fn multi_krum(
    set: &UpdateSet<'_>,
    f: usize,
    m: usize,
) -> Result<(Vec<f32>, KrumSelection), AggregateError> {
    let n = set.len();
    if n < 2 * f + 3 {
        return Err(AggregateError::KrumTooFew { f, n });
    }
    if m == 0 || m > n {
        return Err(AggregateError::KrumSelect { m, n });
    }
    let dist = pairwise_dist_sq(set.rows());
    let neighbours = n - f - 2;
    // Canonical-order scores: each is a sum of a sorted list, so independent of input order.
    let scores: Vec<f64> = (0..n)
        .map(|i| {
            let mut d: Vec<f64> =
                (0..n).filter(|&j| j != i).map(|j| dist[i.min(j)][i.max(j)]).collect();
            d.sort_unstable_by(f64::total_cmp);
            fsum(d[..neighbours].iter().copied())
        })
        .collect();
    let mut ranked: Vec<usize> = (0..n).collect();
    ranked.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    let mut keep = ranked[..m].to_vec();
    keep.sort_unstable();

    let rows: Vec<&[f32]> = keep.iter().map(|&c| set.rows()[c]).collect();
    let ones = vec![1.0; rows.len()];
    let values = weighted_mean(&rows, &ones, rows.len() as f64, set.dim());

    let origin = set.origin();
    let mut selected: Vec<usize> = keep.iter().map(|&c| origin[c]).collect();
    selected.sort_unstable();
    let mut rejected: Vec<usize> = ranked[m..].iter().map(|&c| origin[c]).collect();
    rejected.sort_unstable();
    let mut by_caller = vec![0.0; n];
    for (c, &s) in scores.iter().enumerate() {
        by_caller[origin[c]] = s;
    }
    Ok((values, KrumSelection { selected, rejected, scores: by_caller }))
}

/// Upper-triangular squared distances `d[i][j]` (i < j), summed over fixed chunks in order.
fn pairwise_dist_sq(rows: &[&[f32]]) -> Vec<Vec<f64>> {
    let n = rows.len();
    let dim = rows[0].len();
    let pairs: Vec<(usize, usize)> = (0..n).flat_map(|i| (i + 1..n).map(move |j| (i, j))).collect();
    let chunks = dim.div_ceil(KRUM_CHUNK);
    let partials: Vec<Vec<f64>> = (0..chunks)
        .into_par_iter()
        .map(|c| {
            let end = ((c + 1) * KRUM_CHUNK).min(dim);
            let mut acc = vec![0f64; pairs.len()];
            let mut start = c * KRUM_CHUNK;
            while start < end {
                let stop = (start + KRUM_BLOCK).min(end);
                for (a, &(i, j)) in acc.iter_mut().zip(&pairs) {
                    *a += dist_sq(&rows[i][start..stop], &rows[j][start..stop]);
                }
                start = stop;
            }
            acc
        })
        .collect();
    let mut dist = vec![vec![0f64; n]; n];
    for (p, &(i, j)) in pairs.iter().enumerate() {
        dist[i][j] = fsum(partials.iter().map(|acc| acc[p]));
    }
    dist
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_key_matches_total_cmp() {
        let xs = [f32::NEG_INFINITY, -3.5, -1e-40, -0.0, 0.0, 1e-40, 2.0, f32::INFINITY, f32::NAN];
        for a in xs {
            assert_eq!(from_key(order_key(a)).to_bits(), a.to_bits());
            for b in xs {
                assert_eq!(order_key(a).cmp(&order_key(b)), a.total_cmp(&b), "{a} vs {b}");
            }
        }
    }
}
