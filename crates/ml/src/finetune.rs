//! The trainer side of an AI Arena task in one call: chat data → LoRA fine-tuning of a base
//! model → a PEFT adapter directory (what a trainer submits).

use std::path::Path;

use flock_ml_data::chat::ChatExample;
use tokenizers::Tokenizer;

use crate::error::{MlError, Result};
use crate::lora::{apply_lora, save_peft_adapter, LoraConfig};
use crate::model::DecoderLm;
use crate::score::encode_eval_set;
use crate::train::{train_lm, TrainConfig, TrainMetrics};

/// Everything a LoRA fine-tuning job needs besides the model and data (serde: missing fields
/// take the defaults).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct LoraJob {
    /// Adapter shape and targets.
    pub lora: LoraConfig,
    /// Optimizer, schedule, batch size, steps, data-order seed.
    pub train: TrainConfig,
    /// Token limit per example (longer ones are truncated).
    pub max_len: usize,
    /// Seed of the adapter initialisation.
    pub init_seed: u64,
}

impl Default for LoraJob {
    fn default() -> Self {
        LoraJob {
            lora: LoraConfig::default(),
            train: TrainConfig::default(),
            max_len: 512,
            init_seed: 0,
        }
    }
}

/// Fine-tunes LoRA adapters on `examples` (assistant turns are the targets) and writes them in
/// PEFT's layout to `out_dir`. `base` must live on an autodiff device
/// ([`crate::train_device`]); `tokenizer` is the base model's.
pub fn finetune_lora(
    base: &DecoderLm,
    tokenizer: &Tokenizer,
    examples: &[ChatExample],
    job: &LoraJob,
    out_dir: &Path,
) -> Result<(DecoderLm, TrainMetrics)> {
    if !base.embed_tokens.val().device().is_autodiff() {
        return Err(MlError::InvalidData("base model must be loaded on train_device()".into()));
    }
    let data = encode_eval_set(tokenizer, examples, job.max_len)?;
    let model = apply_lora(base.clone(), &job.lora, job.init_seed)?;
    let (model, metrics) = train_lm(model, &data, &job.train)?;
    save_peft_adapter(&model, &job.lora, out_dir)?;
    Ok((model, metrics))
}
