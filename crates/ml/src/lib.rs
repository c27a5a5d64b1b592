//! The flock ML engine, on burn 0.22 with the pure-Rust `flex` CPU backend.
//!
//! * [`model`]: a Llama/Qwen2-family decoder (RMSNorm, RoPE, grouped-query attention, SwiGLU,
//!   tied or untied head, optional q/k/v biases) configured from a HF [`DecoderConfig`] and
//!   loaded from / saved to `model.safetensors` with HF tensor names ([`checkpoint`]).
//! * [`train`]: masked next-token training (AdamW, warmup + cosine, global-norm clipping,
//!   seeded data order) and evaluation in bits per byte, the AI Arena metric:
//!   `BPB = loss × T / ln 2 / B` over the `T` target tokens and their `B` UTF-8 bytes.
//! * [`lora`]: LoRA through burn's built-in reparameterization, saved in PEFT's layout, mergeable.
//! * [`mod@generate`]: KV-cached generation with greedy, temperature and top-p sampling.
//! * [`tokenizer`]: byte-level BPE training and span-aware encoding for chat data.
//! * [`finetune`]: the trainer's flow, chat data → LoRA → PEFT adapter directory.
//! * [`score`]: validator-side scoring of submissions (base model + PEFT adapter) in BPB, with
//!   failures mapped to [`WORST_BPB`].
//! * [`import`]: `flockd model import`, a HF directory or (feature `gguf`) a llama.cpp GGUF file
//!   into our model directory layout, checked by loading it back.
//! * [`chat`]: OpenAI-style messages rendered with the model's ChatML template, replies
//!   generated until the model's stop tokens ([`ChatModel`]).
//! * [`mlp`]: MLP classifiers/regressors with a flat parameter export (the update boundary).
//!
//! Devices: [`cpu`] for inference and [`train_device`] (autodiff over flex) for training.
//! Everything random takes a `u64` seed.
//!
//! ```no_run
//! use flock_ml::{score, train_device, LoraJob, ModelDir};
//! # fn main() -> flock_ml::Result<()> {
//! // Trainer: LoRA on chat data, PEFT adapter out.
//! let base = ModelDir::new("models/tiny").load(&train_device())?;
//! let data = flock_ml_data::text2sql::generate(7, 256);
//! let adapter = std::path::Path::new("out/adapter");
//! flock_ml::finetune_lora(&base.model, &base.tokenizer, &data, &LoraJob::default(), adapter)?;
//! // Validator: bits per byte of base + adapter on a hidden set (lower is better).
//! let validator = ModelDir::new("models/tiny").load(&flock_ml::cpu())?;
//! let hidden = flock_ml_data::text2sql::generate(8, 64);
//! let set = score::encode_eval_set(&validator.tokenizer, &hidden, 512)?;
//! let bpb = score::score_adapter(&validator.model, adapter, &set, 16);
//! # let _ = bpb; Ok(()) }
//! ```

pub mod chat;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod finetune;
pub mod generate;
#[cfg(feature = "gguf")]
pub mod gguf;
pub mod import;
pub mod init;
pub mod lora;
pub mod mlp;
pub mod model;
pub mod score;
pub mod tokenizer;
pub mod train;

pub use burn::tensor::Device;
pub use chat::{ChatMessage, ChatModel, ChatReply, FinishReason};
pub use checkpoint::{LoadedModel, ModelDir};
pub use config::DecoderConfig;
pub use error::{MlError, Result};
pub use finetune::{finetune_lora, LoraJob};
pub use generate::{generate, generate_reply, generate_with, SamplingConfig};
pub use import::{import_model, ImportOptions, ImportReport, StoreDtype};
pub use init::init_tiny_model;
pub use lora::{
    apply_lora, load_peft_adapter, lora_from_update, lora_to_update, merge_lora, save_peft_adapter,
    LoraConfig,
};
pub use model::{DecoderLm, KvCache};
pub use tokenizer::{encode_chat, encode_plain, train_bpe_tokenizer, LmExample};
pub use train::{evaluate_lm, train_lm, EvalReport, TrainConfig, TrainMetrics, WORST_BPB};

/// The plain CPU device (inference, evaluation, loading).
pub fn cpu() -> Device {
    Device::flex()
}

/// The CPU device with autodiff (training).
pub fn train_device() -> Device {
    Device::flex().autodiff()
}

/// A device by name: `cpu`, `wgpu` (best adapter; built with the `wgpu` feature), `cuda` or
/// `cuda:N` (built with the `cuda` feature). Training needs `.autodiff()` on the result.
pub fn device_named(name: &str) -> Result<Device> {
    let unavailable = |what: &str| {
        MlError::InvalidData(format!(
            "device {name:?} needs flock-ml built with the `{what}` feature"
        ))
    };
    match name.trim() {
        "cpu" | "flex" => Ok(Device::flex()),
        "wgpu" => {
            #[cfg(feature = "wgpu")]
            {
                Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice))
            }
            #[cfg(not(feature = "wgpu"))]
            {
                Err(unavailable("wgpu"))
            }
        }
        other if other == "cuda" || other.starts_with("cuda:") => {
            let index: usize = other
                .strip_prefix("cuda:")
                .map_or(Ok(0), str::parse)
                .map_err(|_| MlError::InvalidData(format!("bad CUDA device index in {name:?}")))?;
            #[cfg(feature = "cuda")]
            {
                Ok(Device::cuda(index))
            }
            #[cfg(not(feature = "cuda"))]
            {
                let _ = index;
                Err(unavailable("cuda"))
            }
        }
        _ => {
            Err(MlError::InvalidData(format!("unknown device {name:?} (cpu, wgpu, cuda, cuda:N)")))
        }
    }
}

#[cfg(test)]
mod device_tests {
    use super::*;

    #[test]
    fn devices_by_name() {
        assert!(device_named("cpu").is_ok());
        let e = device_named("tpu").unwrap_err().to_string();
        assert!(e.contains("unknown device"), "{e}");
        assert!(device_named("cuda:x").unwrap_err().to_string().contains("index"));
        #[cfg(not(feature = "wgpu"))]
        assert!(device_named("wgpu").unwrap_err().to_string().contains("`wgpu` feature"));
        #[cfg(not(feature = "cuda"))]
        assert!(device_named("cuda:1").unwrap_err().to_string().contains("`cuda` feature"));
    }
}
