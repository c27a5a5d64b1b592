//! Golden values: a seed must keep producing the same data across commits, because a task
//! creator commits to a generated validation set by hash and may regenerate it later. If a
//! change here is intended, bump the generator's version label and update the constants.

use flock_ml_data::{chat::to_jsonl_bytes, glucose, text2sql};

/// FNV-1a, 64-bit: enough to pin bytes in a test without a hashing dependency.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

#[test]
fn text2sql_bytes_are_pinned() {
    let train = to_jsonl_bytes(&text2sql::generate(42, 100)).unwrap();
    let splits = text2sql::splits(42, 200, 50).unwrap();
    let val = to_jsonl_bytes(&splits.validation).unwrap();
    let first = &text2sql::generate_pairs(42, 1)[0];
    assert_eq!(first.question, "List the 6 lowest-priced items in books.");
    assert_eq!(
        first.sql,
        "SELECT name, price FROM products WHERE category = 'books' ORDER BY price ASC LIMIT 6;"
    );
    assert_eq!(fnv1a(&train), 0xbe0b_a0ee_4881_6825, "generate(42, 100) changed");
    assert_eq!(fnv1a(&val), 0xf43d_bb6c_a2a1_c91f, "splits(42, 200, 50).validation changed");
}

#[test]
fn glucose_trace_is_pinned() {
    let trace = glucose::simulate(1, 1);
    let cgm: Vec<u8> = trace.glucose_mg_dl.iter().flat_map(|g| (*g as u16).to_le_bytes()).collect();
    assert_eq!(
        &trace.glucose_mg_dl[..12],
        &[141.0, 142.0, 142.0, 143.0, 147.0, 138.0, 140.0, 140.0, 141.0, 142.0, 141.0, 141.0]
    );
    assert_eq!(fnv1a(&cgm), 0x35ef_b7e9_c3a4_75f1, "simulate(1, 1) changed");
}
