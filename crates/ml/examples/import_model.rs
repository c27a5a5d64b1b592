//! Imports a checkpoint (an HF directory, or a GGUF file with the `gguf` feature) into our
//! layout, like `flockd model import` (which CI would otherwise have to build a second time
//! with the feature): `cargo run -p flock-ml --features gguf --example import_model -- SRC OUT`.

use flock_ml::import::{import_model, ImportOptions};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(src), Some(out)) = (args.get(1), args.get(2)) else {
        return Err("usage: import_model SRC OUT".into());
    };
    let opts = ImportOptions { force: true, ..ImportOptions::default() };
    let report = import_model(&PathBuf::from(src), &PathBuf::from(out), &opts)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
