//! Shared fixtures.

use flock_ml::config::DecoderConfig;

/// A very small config for exactness tests (no tokenizer needed).
pub(crate) fn micro(model_type: &str, tied: bool) -> DecoderConfig {
    let mut c = DecoderConfig::tiny(50);
    c.model_type = model_type.into();
    c.hidden_size = 16;
    c.intermediate_size = 24;
    c.num_attention_heads = 4;
    c.num_key_value_heads = Some(2);
    c.tie_word_embeddings = tied;
    c.attention_bias = Some(model_type == "llama");
    c.rope_theta = 500.0;
    c.max_position_embeddings = 64;
    c
}
