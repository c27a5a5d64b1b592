//! Aggregation throughput next to memcpy bandwidth, measured in the same run.
//!
//! Run: `RAYON_NUM_THREADS=1 cargo bench -p flock-ml-core --bench aggregate -- --quick`
//!
//! Throughput is reported as bytes of *input* (n × d × 4) per second. `memcpy` copies every
//! input row into one d-sized buffer (the same bytes read, the same output size as an
//! aggregate). `canonicalize` is building the [`UpdateSet`] (blake3 digest of every update plus
//! the sort), done once per round whatever the rule.

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use flock_ml_core::aggregate::{
    fedavg, median, multi_krum, trimmed_mean, trimmed_mean_with_report, UpdateSet,
};
use std::time::Duration;

/// Deterministic pseudo-random rows (xorshift; generation speed matters at 4 GB).
fn rows(n: usize, d: usize) -> Vec<Vec<f32>> {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            (0..d)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.01
                })
                .collect()
        })
        .collect()
}

fn label(d: usize) -> String {
    format!("{}M", d / 1_000_000)
}

fn bench_size(c: &mut Criterion, n: usize, d: usize, krum: bool, median_too: bool) {
    let data = rows(n, d);
    let refs: Vec<&[f32]> = data.iter().map(Vec::as_slice).collect();
    let weights: Vec<f64> = (0..n).map(|i| (i % 7 + 1) as f64 * 100.0).collect();
    let set = UpdateSet::from_slices(&refs, Some(&weights), None).expect("valid inputs");
    let tag = format!("n={n},d={}", label(d));

    let mut g = c.benchmark_group("ml_core::aggregate");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Bytes((n * d * 4) as u64));

    g.bench_function(format!("memcpy/{tag}"), |b| {
        let mut out = vec![0f32; d];
        b.iter(|| {
            for r in &refs {
                out.copy_from_slice(black_box(r));
                black_box(&mut out);
            }
        })
    });
    g.bench_function(format!("canonicalize/{tag}"), |b| {
        b.iter(|| UpdateSet::from_slices(black_box(&refs), Some(&weights), None))
    });
    g.bench_function(format!("fedavg/{tag}"), |b| b.iter(|| fedavg(black_box(&set))));
    let trim = n / 10;
    g.bench_function(format!("trimmed_mean/{tag},k={trim}"), |b| {
        b.iter(|| trimmed_mean(black_box(&set), trim))
    });
    if krum {
        g.bench_function(format!("trimmed_mean_report/{tag},k={trim}"), |b| {
            b.iter(|| trimmed_mean_with_report(black_box(&set), trim))
        });
    }
    if median_too {
        g.bench_function(format!("median/{tag}"), |b| b.iter(|| median(black_box(&set))));
    }
    if krum {
        let f = (n - 3) / 4;
        g.bench_function(format!("multi_krum/{tag},f={f}"), |b| {
            b.iter(|| multi_krum(black_box(&set), f, n - f))
        });
    }
    g.finish();
}

fn aggregate(c: &mut Criterion) {
    bench_size(c, 10, 1_000_000, true, true);
    bench_size(c, 10, 10_000_000, true, true);
    bench_size(c, 100, 1_000_000, true, true);
    // 4 GB of input: FedAvg, trimmed mean and median only (Krum would be 4950 pair distances
    // over 10M coordinates).
    bench_size(c, 100, 10_000_000, false, true);
}

criterion_group!(benches, aggregate);
criterion_main!(benches);
