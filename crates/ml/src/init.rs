//! `init_tiny_model`: a tiny random decoder in HF layout, the library side of `flockd model init`.

use std::path::Path;

use burn::tensor::Device;

use crate::checkpoint::ModelDir;
use crate::config::DecoderConfig;
use crate::error::Result;
use crate::model::DecoderLm;
use crate::tokenizer::train_bpe_tokenizer;

/// Vocabulary size of the BPE tokenizer [`init_tiny_model`] trains.
pub const TINY_VOCAB: usize = 512;

/// Writes `config.json`, `model.safetensors` (F32) and `tokenizer.json` (byte-level BPE
/// trained on `corpus`) for a tiny Qwen2-style model initialised from `seed`; returns the config.
pub fn init_tiny_model<S: AsRef<str> + Sync>(
    dir: &Path,
    seed: u64,
    corpus: &[S],
) -> Result<DecoderConfig> {
    let tokenizer = train_bpe_tokenizer(corpus, TINY_VOCAB)?;
    let mut config = DecoderConfig::tiny(tokenizer.get_vocab_size(true));
    config.eos_token_id = tokenizer.token_to_id("<|im_end|>");
    config.bos_token_id = None;
    let model = DecoderLm::random(&config, seed, &Device::flex())?;
    ModelDir::new(dir).save(&config, &model, &tokenizer)?;
    Ok(config)
}
