//! Splitting a dataset among federated members (an FL Alliance's hospitals, firms…).
//!
//! Every function returns one list of example indices per part; each index in `0..n` appears in
//! exactly one part (property-tested), and the result is a pure function of the inputs and the
//! seed. Groups and labels may be any `Ord` type; they are visited in sorted order, never in
//! hash order.
//!
//! | function | what each part gets |
//! |---|---|
//! | [`iid`] | a uniformly random, near-equal share (sizes differ by at most one) |
//! | [`by_group`] | whole groups (e.g. one patient per hospital), balanced by example count |
//! | [`by_label_dirichlet`] | per label, a Dirichlet(α) share (Hsu, Qi & Brown 2019): α → ∞ is IID, α ≲ 0.1 gives each part a few labels |
//! | [`shards_by_label`] | `s` shards of the label-sorted data (McMahan et al. 2017, "pathological non-IID") |

use std::collections::BTreeMap;

use rand::{seq::SliceRandom, Rng};

use crate::{
    error::DataError,
    rng::{gamma, seeded},
};

/// Index lists, one per part.
pub type Parts = Vec<Vec<usize>>;

const STREAM: u64 = 0x7061_7274; // "part"

fn check_parts(parts: usize, items: usize, what: &str) -> Result<(), DataError> {
    if parts == 0 {
        return Err(DataError::InvalidArgument("parts must be at least 1".into()));
    }
    if items < parts {
        return Err(DataError::InvalidArgument(format!(
            "{items} {what} cannot fill {parts} parts"
        )));
    }
    Ok(())
}

/// IID: shuffles `0..n` and deals it into `parts` contiguous runs whose sizes differ by at most
/// one. Indices within a part are in shuffled order. Needs `1 <= parts <= n`.
pub fn iid(n: usize, parts: usize, seed: u64) -> Result<Parts, DataError> {
    check_parts(parts, n, "examples")?;
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut seeded(seed, STREAM));
    let mut out = Vec::with_capacity(parts);
    let mut start = 0;
    for k in 0..parts {
        let end = start + n / parts + usize::from(k < n % parts);
        out.push(order[start..end].to_vec());
        start = end;
    }
    Ok(out)
}

/// Indices of each distinct value, by value order.
fn index_by_value<T: Ord>(values: &[T]) -> BTreeMap<&T, Vec<usize>> {
    let mut map: BTreeMap<&T, Vec<usize>> = BTreeMap::new();
    for (i, v) in values.iter().enumerate() {
        map.entry(v).or_default().push(i);
    }
    map
}

/// Non-IID by group: every group's examples go to one part. Groups are shuffled, then each is
/// given to the part with the fewest examples so far (ties to the lowest part), which keeps
/// sizes balanced and, when there are exactly `parts` groups, gives one group per part.
/// Indices within a part are ascending. Needs at least `parts` distinct groups.
pub fn by_group<G: Ord>(groups: &[G], parts: usize, seed: u64) -> Result<Parts, DataError> {
    let by_value = index_by_value(groups);
    check_parts(parts, by_value.len(), "distinct groups")?;
    let mut members: Vec<Vec<usize>> = by_value.into_values().collect();
    members.shuffle(&mut seeded(seed, STREAM));
    let mut out: Parts = vec![Vec::new(); parts];
    for group in members {
        let k = (0..parts).min_by_key(|&k| (out[k].len(), k)).unwrap_or(0);
        out[k].extend(group);
    }
    out.iter_mut().for_each(|p| p.sort_unstable());
    Ok(out)
}

/// Non-IID by label with a Dirichlet(α) prior: for each label, the shares of its examples per
/// part are drawn from Dirichlet(α, …, α) and its (shuffled) examples are cut accordingly. Small
/// α concentrates each label on few parts; a part may end up empty when α is small. Indices
/// within a part are ascending. Needs `parts >= 1` and a finite `alpha > 0`.
pub fn by_label_dirichlet<L: Ord>(
    labels: &[L],
    parts: usize,
    alpha: f64,
    seed: u64,
) -> Result<Parts, DataError> {
    if parts == 0 {
        return Err(DataError::InvalidArgument("parts must be at least 1".into()));
    }
    if !(alpha.is_finite() && alpha > 0.0) {
        return Err(DataError::InvalidArgument(format!(
            "alpha must be finite and > 0, got {alpha}"
        )));
    }
    let rng = &mut seeded(seed, STREAM);
    let mut out: Parts = vec![Vec::new(); parts];
    for (_, mut members) in index_by_value(labels) {
        members.shuffle(rng);
        let weights: Vec<f64> = (0..parts).map(|_| gamma(rng, alpha)).collect();
        let total: f64 = weights.iter().sum();
        if !(total > 0.0 && total.is_finite()) {
            // Every draw underflowed (tiny alpha): the whole label goes to one random part.
            out[rng.gen_range(0..parts)].extend(members);
            continue;
        }
        let count = members.len();
        let mut start = 0usize;
        let mut cumulative = 0.0;
        for (k, w) in weights.iter().enumerate() {
            cumulative += w;
            let end = if k + 1 == parts {
                count
            } else {
                ((cumulative / total * count as f64).floor() as usize).clamp(start, count)
            };
            out[k].extend_from_slice(&members[start..end]);
            start = end;
        }
    }
    out.iter_mut().for_each(|p| p.sort_unstable());
    Ok(out)
}

/// Non-IID "pathological" split of McMahan et al. (2017): sort examples by label (ties by
/// index), cut into `parts × shards_per_part` near-equal shards, and give each part
/// `shards_per_part` random shards, so each part sees about `shards_per_part` labels. Indices
/// within a part are ascending. Needs `parts, shards_per_part >= 1` and
/// `parts × shards_per_part <= n`.
pub fn shards_by_label<L: Ord>(
    labels: &[L],
    parts: usize,
    shards_per_part: usize,
    seed: u64,
) -> Result<Parts, DataError> {
    if shards_per_part == 0 {
        return Err(DataError::InvalidArgument("shards_per_part must be at least 1".into()));
    }
    let shards = parts
        .checked_mul(shards_per_part)
        .ok_or_else(|| DataError::InvalidArgument("too many shards".into()))?;
    check_parts(shards.max(parts), labels.len(), "examples")?;
    let n = labels.len();
    let sorted: Vec<usize> = index_by_value(labels).into_values().flatten().collect();
    let mut shard_ids: Vec<usize> = (0..shards).collect();
    shard_ids.shuffle(&mut seeded(seed, STREAM));
    let mut out: Parts = vec![Vec::new(); parts];
    for (slot, &shard) in shard_ids.iter().enumerate() {
        let (start, end) = (shard * n / shards, (shard + 1) * n / shards);
        out[slot / shards_per_part].extend_from_slice(&sorted[start..end]);
    }
    out.iter_mut().for_each(|p| p.sort_unstable());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn assert_exact_cover(parts: &Parts, n: usize) {
        let mut all: Vec<usize> = parts.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..n).collect::<Vec<_>>());
    }

    proptest! {
        #[test]
        fn iid_covers_exactly_and_balances(n in 1usize..500, parts in 1usize..20, seed: u64) {
            prop_assume!(parts <= n);
            let p = iid(n, parts, seed).unwrap();
            assert_exact_cover(&p, n);
            let sizes: Vec<usize> = p.iter().map(Vec::len).collect();
            prop_assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
            prop_assert_eq!(p, iid(n, parts, seed).unwrap());
        }

        #[test]
        fn by_group_keeps_groups_whole(groups in prop::collection::vec(0u8..12, 1..300), parts in 1usize..6, seed: u64) {
            let distinct = groups.iter().collect::<BTreeSet<_>>().len();
            prop_assume!(parts <= distinct);
            let p = by_group(&groups, parts, seed).unwrap();
            assert_exact_cover(&p, groups.len());
            prop_assert!(p.iter().all(|part| !part.is_empty()));
            let owner: BTreeMap<u8, usize> =
                p.iter().enumerate().flat_map(|(k, part)| part.iter().map(move |&i| (i, k))).map(|(i, k)| (groups[i], k)).collect();
            for (k, part) in p.iter().enumerate() {
                prop_assert!(part.iter().all(|&i| owner[&groups[i]] == k));
            }
            prop_assert_eq!(p, by_group(&groups, parts, seed).unwrap());
        }

        #[test]
        fn dirichlet_covers_exactly(labels in prop::collection::vec(0u8..10, 0..400), parts in 1usize..12, alpha in 0.001f64..100.0, seed: u64) {
            let p = by_label_dirichlet(&labels, parts, alpha, seed).unwrap();
            prop_assert_eq!(p.len(), parts);
            assert_exact_cover(&p, labels.len());
            prop_assert_eq!(p, by_label_dirichlet(&labels, parts, alpha, seed).unwrap());
        }

        #[test]
        fn shards_cover_exactly(labels in prop::collection::vec(0u8..10, 1..400), parts in 1usize..10, s in 1usize..4, seed: u64) {
            prop_assume!(parts * s <= labels.len());
            let p = shards_by_label(&labels, parts, s, seed).unwrap();
            assert_exact_cover(&p, labels.len());
            prop_assert_eq!(p, shards_by_label(&labels, parts, s, seed).unwrap());
        }
    }

    fn mean_top_label_share(labels: &[u8], parts: &Parts) -> f64 {
        let shares: Vec<f64> = parts
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| {
                let counts = index_by_value(&p.iter().map(|&i| labels[i]).collect::<Vec<_>>())
                    .into_values()
                    .map(|v| v.len())
                    .max()
                    .unwrap_or(0);
                counts as f64 / p.len() as f64
            })
            .collect();
        shares.iter().sum::<f64>() / shares.len() as f64
    }

    #[test]
    fn alpha_controls_skew() {
        let labels: Vec<u8> = (0..5000).map(|i| (i % 10) as u8).collect();
        let skewed = by_label_dirichlet(&labels, 10, 0.05, 1).unwrap();
        let uniform = by_label_dirichlet(&labels, 10, 1000.0, 1).unwrap();
        assert!(mean_top_label_share(&labels, &skewed) > 0.6);
        assert!(mean_top_label_share(&labels, &uniform) < 0.15);
        let pathological = shards_by_label(&labels, 10, 2, 1).unwrap();
        for part in &pathological {
            let distinct: BTreeSet<u8> = part.iter().map(|&i| labels[i]).collect();
            assert!(distinct.len() <= 2, "{distinct:?}");
        }
    }

    #[test]
    fn one_group_per_part_when_counts_match() {
        let groups = ["a", "a", "b", "c", "c", "c"];
        let p = by_group(&groups, 3, 9).unwrap();
        let mut sets: Vec<Vec<&str>> =
            p.iter().map(|part| part.iter().map(|&i| groups[i]).collect()).collect();
        sets.sort();
        assert_eq!(sets, vec![vec!["a", "a"], vec!["b"], vec!["c", "c", "c"]]);
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(iid(5, 0, 1).is_err());
        assert!(iid(2, 3, 1).is_err());
        assert!(by_group(&[1, 1, 2], 3, 1).is_err());
        assert!(by_label_dirichlet(&[1, 2], 2, 0.0, 1).is_err());
        assert!(by_label_dirichlet(&[1, 2], 2, f64::NAN, 1).is_err());
        assert!(by_label_dirichlet(&[1, 2], 0, 1.0, 1).is_err());
        assert!(shards_by_label(&[1, 2, 3], 2, 2, 1).is_err());
        assert!(shards_by_label(&[1, 2, 3], 2, 0, 1).is_err());
        assert_ne!(iid(100, 4, 1).unwrap(), iid(100, 4, 2).unwrap());
    }
}
