//! Writes the simulated datasets to a folder:
//!
//! ```text
//! cargo run -p flock-ml-data --example generate_datasets -- OUT_DIR [SEED]
//! ```
//!
//! * `text2sql_train.jsonl` (2,000 examples) and `text2sql_validation.jsonl` (300, hidden
//!   split, no question in common with training), FLock's chat JSONL;
//! * `glucose_cohort.csv`: 10 virtual patients × 7 days of 30-minute-ahead forecasting windows
//!   (window 12 = 1 hour), with the patient seeds in `glucose_groups.txt` (one per row) for
//!   partitioning one patient per member.

use std::{fs::File, io::BufWriter, path::PathBuf};

use flock_ml_data::{glucose, tabular, text2sql, write_jsonl, DataError};

fn main() -> Result<(), DataError> {
    let mut args = std::env::args().skip(1);
    let Some(out) = args.next().map(PathBuf::from) else {
        eprintln!("usage: generate_datasets OUT_DIR [SEED]");
        std::process::exit(2);
    };
    let seed: u64 = match args.next().map(|s| s.parse()) {
        None => 42,
        Some(Ok(seed)) => seed,
        Some(Err(e)) => {
            eprintln!("seed: {e}");
            std::process::exit(2);
        }
    };
    std::fs::create_dir_all(&out)?;

    let splits = text2sql::splits(seed, 2000, 300)?;
    write_jsonl(BufWriter::new(File::create(out.join("text2sql_train.jsonl"))?), &splits.train)?;
    write_jsonl(
        BufWriter::new(File::create(out.join("text2sql_validation.jsonl"))?),
        &splits.validation,
    )?;

    let patients: Vec<u64> = (0..10).map(|p| seed.wrapping_mul(1000).wrapping_add(p)).collect();
    let (table, groups) = glucose::cohort_dataset(&patients, 7, 12);
    tabular::to_csv(BufWriter::new(File::create(out.join("glucose_cohort.csv"))?), &table)?;
    let groups: Vec<String> = groups.iter().map(u64::to_string).collect();
    std::fs::write(out.join("glucose_groups.txt"), groups.join("\n") + "\n")?;

    println!(
        "wrote {} train / {} validation Text2SQL examples and {} glucose windows to {}",
        splits.train.len(),
        splits.validation.len(),
        table.len(),
        out.display()
    );
    Ok(())
}
