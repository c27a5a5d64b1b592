//! Tokenizers: training a small byte-level BPE in code, and turning text with target byte spans
//! into token ids with a per-token target mask and byte counts (for bits per byte).

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer, TokenizerBuilder};

use crate::error::{MlError, Result};

/// Special tokens every flock tokenizer has (ids 0, 1, 2).
pub const SPECIAL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// Trains a byte-level BPE tokenizer (GPT-2/Qwen style: ByteLevel pre-tokenizer and decoder,
/// the 256-byte alphabet, ChatML special tokens) on `texts`, deterministically.
///
/// `vocab_size` includes the specials and the byte alphabet, so it must be at least 259.
pub fn train_bpe_tokenizer<S: AsRef<str> + Sync>(
    texts: &[S],
    vocab_size: usize,
) -> Result<Tokenizer> {
    if vocab_size < 256 + SPECIAL_TOKENS.len() {
        return Err(MlError::Tokenizer(format!("vocab_size {vocab_size} < 259")));
    }
    let specials = SPECIAL_TOKENS.iter().map(|t| AddedToken::from(t.to_string(), true)).collect();
    let mut trainer = BpeTrainerBuilder::new()
        .show_progress(false)
        .vocab_size(vocab_size)
        .min_frequency(2)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .special_tokens(specials)
        .build();
    let mut tok =
        TokenizerBuilder::<BPE, NormalizerWrapper, ByteLevel, ByteLevel, ByteLevel>::new()
            .with_model(BPE::default())
            .with_normalizer(None)
            .with_pre_tokenizer(Some(ByteLevel::new(false, false, true)))
            .with_post_processor(Some(ByteLevel::new(false, false, true)))
            .with_decoder(Some(ByteLevel::default()))
            .build()
            .map_err(|e| MlError::Tokenizer(e.to_string()))?;
    tok.train(&mut trainer, texts.iter().map(|s| s.as_ref()))
        .map_err(|e| MlError::Tokenizer(e.to_string()))?;
    Ok(Tokenizer::from(tok))
}

/// One tokenized sequence for language modelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LmExample {
    /// Token ids.
    pub ids: Vec<u32>,
    /// `target[i]`: whether predicting token `i` (from tokens `< i`) counts in the loss.
    /// Always false for `i = 0`.
    pub target: Vec<bool>,
    /// UTF-8 bytes of the text each token covers.
    pub bytes: Vec<u32>,
}

impl LmExample {
    /// Number of target tokens.
    pub fn target_tokens(&self) -> usize {
        self.target.iter().filter(|&&t| t).count()
    }

    /// UTF-8 bytes covered by target tokens.
    pub fn target_bytes(&self) -> u64 {
        self.target.iter().zip(&self.bytes).filter(|(t, _)| **t).map(|(_, &b)| b as u64).sum()
    }
}

/// Tokenizes `text` (no special-token post-processing) and marks as targets the tokens whose
/// first byte lies in one of `targets` (byte ranges, end exclusive). Sequences longer than
/// `max_len` are truncated.
pub fn encode_with_targets(
    tokenizer: &Tokenizer,
    text: &str,
    targets: &[(usize, usize)],
    max_len: usize,
) -> Result<LmExample> {
    let enc = tokenizer.encode(text, false).map_err(|e| MlError::Tokenizer(e.to_string()))?;
    let n = enc.get_ids().len().min(max_len);
    let mut ex = LmExample { ids: Vec::with_capacity(n), target: Vec::new(), bytes: Vec::new() };
    for (i, (&id, &(s, e))) in enc.get_ids().iter().zip(enc.get_offsets()).take(n).enumerate() {
        ex.ids.push(id);
        ex.bytes.push(e.saturating_sub(s) as u32);
        ex.target.push(i > 0 && targets.iter().any(|&(ts, te)| s >= ts && s < te));
    }
    Ok(ex)
}

/// Tokenizes plain text with every token but the first as a target.
pub fn encode_plain(tokenizer: &Tokenizer, text: &str, max_len: usize) -> Result<LmExample> {
    encode_with_targets(tokenizer, text, &[(0, text.len())], max_len)
}

/// Renders a chat example with the ChatML template and tokenizes it; only the assistant
/// responses (and their `<|im_end|>`) are targets.
pub fn encode_chat(
    tokenizer: &Tokenizer,
    example: &flock_ml_data::chat::ChatExample,
    max_len: usize,
) -> Result<LmExample> {
    let r = flock_ml_data::chatml::render(example);
    encode_with_targets(tokenizer, &r.text, &r.targets, max_len)
}
