//! `flockd model import <SRC> --out <DIR>`: a HF directory or GGUF file into flock's layout.

use super::print_json;
use anyhow::Context;
use flock_ml::{import_model, ImportOptions, ImportReport, StoreDtype};
use std::path::PathBuf;

pub(crate) async fn run(
    src: PathBuf,
    out: PathBuf,
    dtype: &str,
    force: bool,
    json: bool,
) -> anyhow::Result<()> {
    let dtype: StoreDtype = dtype.parse()?;
    let opts = ImportOptions { dtype, force };
    let what = format!("importing {}", src.display());
    let report = tokio::task::spawn_blocking(move || import_model(&src, &out, &opts))
        .await?
        .context(what)?;
    if json {
        print_json(&serde_json::to_value(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn print_report(r: &ImportReport) {
    let dtypes: Vec<String> = r.source_dtypes.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
    println!("imported {} ({}) into {}", r.source.display(), r.format, r.out.display());
    println!("  architecture   {} ({})", r.architecture, r.model_type);
    println!("  parameters     {} ({:.1} M)", r.parameters, r.parameters as f64 / 1e6);
    println!(
        "  layers         {} (hidden {}, {} heads, {} kv heads)",
        r.layers, r.hidden_size, r.attention_heads, r.kv_heads
    );
    println!("  vocab          {} (tokenizer: {} tokens)", r.vocab_size, r.tokenizer_tokens);
    println!("  context        {} tokens", r.context_length);
    println!("  embeddings     {}", if r.tied_embeddings { "tied" } else { "untied" });
    println!("  dtype          {} stored, from {}", r.dtype, dtypes.join(", "));
    println!("  weights        {:.1} MiB", r.weights_bytes as f64 / (1 << 20) as f64);
    println!("  chat template  {}; stop tokens {:?}", r.chat_template, r.stop_token_ids);
    println!("  took           {:.1} s (loaded back: ok)", r.seconds);
    for w in &r.warnings {
        println!("  warning: {w}");
    }
}
