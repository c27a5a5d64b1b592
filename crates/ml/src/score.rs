//! Validator-side scoring for AI Arena tasks: bits per byte of a submission on a hidden chat
//! set, with every failure mapped to [`WORST_BPB`] so a bad submission can never score well.

use std::path::Path;

use flock_ml_data::chat::ChatExample;
use tokenizers::Tokenizer;

use crate::error::Result;
use crate::lora::load_peft_adapter;
use crate::model::DecoderLm;
use crate::tokenizer::{encode_chat, LmExample};
use crate::train::{evaluate_lm, WORST_BPB};

/// Tokenizes a hidden chat set with the **base model's** tokenizer (submissions never bring
/// their own, so BPB stays comparable), truncating each example to `max_len` tokens.
pub fn encode_eval_set(
    tokenizer: &Tokenizer,
    examples: &[ChatExample],
    max_len: usize,
) -> Result<Vec<LmExample>> {
    examples.iter().map(|e| encode_chat(tokenizer, e, max_len)).collect()
}

/// The BPB of `model` on `set`, or [`WORST_BPB`] if evaluation fails or is not finite.
pub fn score_model(model: &DecoderLm, set: &[LmExample], batch_size: usize) -> f64 {
    evaluate_lm(model, set, batch_size).map_or(WORST_BPB, |r| r.score())
}

/// Loads a PEFT adapter from `adapter_dir` onto `base` and scores it; a missing, malformed or
/// mis-shaped adapter scores [`WORST_BPB`].
pub fn score_adapter(
    base: &DecoderLm,
    adapter_dir: &Path,
    set: &[LmExample],
    batch_size: usize,
) -> f64 {
    match load_peft_adapter(base.clone(), adapter_dir) {
        Ok((model, _)) => score_model(&model, set, batch_size),
        Err(_) => WORST_BPB,
    }
}
