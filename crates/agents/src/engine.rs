//! The real ML behind the AI Arena agents: LoRA fine-tuning and BPB scoring with `flock-ml`,
//! and the preparation of a Text2SQL task (simulated corpus, tiny base model).

use crate::{
    arena::{ArenaMl, TrainPlan},
    AgentError,
};
use flock_ledger::arena::{ArenaTaskSpec, Score};
use flock_ml::{
    cpu, evaluate_lm, finetune_lora, load_peft_adapter, score::encode_eval_set, train_device,
    train_lm, LoraJob, ModelDir, TrainConfig, WORST_BPB,
};
use flock_ml_core::artifact::{validate, ArtifactLimits};
use flock_ml_data::{chat::ChatExample, load_jsonl, text2sql, JsonlLimits};
use rand::{seq::SliceRandom, SeedableRng};
use std::path::Path;

/// The files of a base model bundle.
pub const BASE_FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];
/// The files of a PEFT adapter bundle.
pub const ADAPTER_FILES: [&str; 2] = ["adapter_config.json", "adapter_model.safetensors"];

/// LoRA fine-tuning and BPB scoring with the burn engine.
#[derive(Debug, Clone)]
pub struct EngineMl {
    /// Token limit per example.
    pub max_len: usize,
    /// Peak learning rate of LoRA training.
    pub lr: f64,
    /// Sequences per training step.
    pub batch_size: usize,
    /// Largest submitted adapter file, in bytes.
    pub max_adapter_bytes: u64,
}

impl Default for EngineMl {
    fn default() -> Self {
        Self { max_len: 256, lr: 1e-2, batch_size: 8, max_adapter_bytes: 64 << 20 }
    }
}

fn parse_set(bytes: &[u8]) -> Result<Vec<ChatExample>, String> {
    load_jsonl(bytes, &JsonlLimits::default()).map_err(|e| e.to_string())
}

impl ArenaMl for EngineMl {
    fn train(
        &self,
        base_dir: &Path,
        train_jsonl: &[u8],
        plan: &TrainPlan,
        out_dir: &Path,
    ) -> Result<(String, Vec<String>), AgentError> {
        let mut examples =
            parse_set(train_jsonl).map_err(|e| AgentError::Ml(format!("training set: {e}")))?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(plan.seed);
        examples.shuffle(&mut rng);
        let keep = (examples.len() * plan.data_percent.clamp(1, 100) as usize).div_ceil(100).max(1);
        examples.truncate(keep);
        let base = ModelDir::new(base_dir)
            .load(&train_device())
            .map_err(|e| AgentError::Ml(e.to_string()))?;
        let job = LoraJob {
            train: TrainConfig {
                steps: plan.steps.max(1),
                batch_size: self.batch_size,
                lr: self.lr,
                warmup_steps: (plan.steps / 10).max(1),
                seed: plan.seed,
                quiet: true,
                ..TrainConfig::default()
            },
            max_len: self.max_len,
            init_seed: plan.seed,
            ..LoraJob::default()
        };
        finetune_lora(&base.model, &base.tokenizer, &examples, &job, out_dir)
            .map_err(|e| AgentError::Ml(e.to_string()))?;
        Ok(("peft-adapter".into(), ADAPTER_FILES.iter().map(|s| (*s).to_owned()).collect()))
    }

    fn score(
        &self,
        base_dir: &Path,
        sub_dir: &Path,
        val_jsonl: &[u8],
        spec: &ArenaTaskSpec,
    ) -> (Score, Option<String>) {
        let worst = |why: String| (Score::WORST, Some(why));
        // Check the untrusted file before anything parses it as a model.
        let weights = match std::fs::read(sub_dir.join("adapter_model.safetensors")) {
            Ok(b) => b,
            Err(e) => return worst(format!("no adapter_model.safetensors: {e}")),
        };
        let limits = ArtifactLimits {
            max_bytes: self.max_adapter_bytes,
            max_params: spec.max_params,
            ..ArtifactLimits::default()
        };
        let checked = match validate(&weights, None, &limits) {
            Ok(v) => v,
            Err(e) => return worst(format!("invalid adapter: {e}")),
        };
        let base = match ModelDir::new(base_dir).load(&cpu()) {
            Ok(b) => b,
            Err(e) => return worst(format!("cannot load the base model: {e}")),
        };
        let total = base.config.num_params().saturating_add(checked.num_params() as u64);
        if total > spec.max_params {
            return worst(format!(
                "model has {total} parameters, over the task's max_params {}",
                spec.max_params
            ));
        }
        let model = match load_peft_adapter(base.model, sub_dir) {
            Ok((m, _)) => m,
            Err(e) => return worst(format!("adapter does not fit the base model: {e}")),
        };
        let set = match parse_set(val_jsonl).and_then(|v| {
            encode_eval_set(&base.tokenizer, &v, self.max_len).map_err(|e| e.to_string())
        }) {
            Ok(s) => s,
            Err(e) => return worst(format!("validation set: {e}")),
        };
        match evaluate_lm(&model, &set, 16) {
            Ok(r) if r.bpb.is_finite() && r.bpb < WORST_BPB => {
                (Score((r.bpb * 1e6).round() as u64), None)
            }
            Ok(r) => worst(format!("non-finite loss (BPB {})", r.bpb)),
            Err(e) => worst(format!("evaluation failed: {e}")),
        }
    }
}

/// A Text2SQL task's data and base model, prepared by the creator.
#[derive(Debug, Clone)]
pub struct PreparedTask {
    /// Training set (FLock JSONL).
    pub training_jsonl: Vec<u8>,
    /// Hidden validation set (FLock JSONL).
    pub validation_jsonl: Vec<u8>,
    /// Base-model loss on the validation set, in BPB.
    pub base_bpb: f64,
}

/// Writes a tiny base model into `base_dir` and returns the task's data: the simulated
/// Text2SQL corpus (train and hidden validation splits, without the long schema prompt so
/// sequences stay short), a BPE tokenizer trained on it, and a base pretrained for
/// `pretrain_steps` on unpaired questions and SQL (so it knows both languages but not the
/// mapping, which is what the trainers' LoRA learns). A stand-in for a real pretrained
/// checkpoint, which `flockd` can use instead.
pub fn prepare_text2sql(
    base_dir: &Path,
    seed: u64,
    n_train: usize,
    n_val: usize,
    pretrain_steps: usize,
) -> Result<PreparedTask, AgentError> {
    let ml = |e: flock_ml::MlError| AgentError::Ml(e.to_string());
    let mut s =
        text2sql::splits(seed, n_train, n_val).map_err(|e| AgentError::Ml(e.to_string()))?;
    for e in s.train.iter_mut().chain(s.validation.iter_mut()) {
        e.system = None;
    }
    let plain: Vec<String> = text2sql::generate_pairs(seed ^ 0x5eed, n_train)
        .into_iter()
        .flat_map(|p| [format!("{}\n", p.question), format!("{}\n", p.sql)])
        .collect();
    let mut corpus: Vec<String> = s.train.iter().map(|e| flock_ml_data::render(e).text).collect();
    corpus.extend(plain.iter().cloned());
    let config = flock_ml::init_tiny_model(base_dir, seed, &corpus).map_err(ml)?;
    let dir = ModelDir::new(base_dir);
    let loaded = dir.load(&train_device()).map_err(ml)?;
    let docs = plain
        .iter()
        .map(|t| flock_ml::encode_plain(&loaded.tokenizer, t, 256))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ml)?;
    let pre = TrainConfig {
        steps: pretrain_steps.max(1),
        batch_size: 8,
        lr: 3e-3,
        warmup_steps: 8,
        seed,
        quiet: true,
        ..TrainConfig::default()
    };
    let (model, _) = train_lm(loaded.model, &docs, &pre).map_err(ml)?;
    dir.save(&config, &model, &loaded.tokenizer).map_err(ml)?;
    let mut training_jsonl = Vec::new();
    flock_ml_data::write_jsonl(&mut training_jsonl, &s.train)
        .map_err(|e| AgentError::Ml(e.to_string()))?;
    let mut validation_jsonl = Vec::new();
    flock_ml_data::write_jsonl(&mut validation_jsonl, &s.validation)
        .map_err(|e| AgentError::Ml(e.to_string()))?;
    let base = dir.load(&cpu()).map_err(ml)?;
    let set = encode_eval_set(&base.tokenizer, &s.validation, 256).map_err(ml)?;
    let base_bpb = evaluate_lm(&base.model, &set, 16).map_err(ml)?.bpb;
    Ok(PreparedTask { training_jsonl, validation_jsonl, base_bpb })
}

/// Like [`prepare_text2sql`], but the base model is a real checkpoint already in our HF layout
/// (for example one made by `flockd model import`): its [`BASE_FILES`] are copied into
/// `base_dir`, and the task's data is the simulated Text2SQL corpus as above.
pub fn prepare_text2sql_with_base(
    source: &Path,
    base_dir: &Path,
    seed: u64,
    n_train: usize,
    n_val: usize,
) -> Result<PreparedTask, AgentError> {
    let ml = |e: flock_ml::MlError| AgentError::Ml(e.to_string());
    std::fs::create_dir_all(base_dir)?;
    for f in BASE_FILES {
        let from = source.join(f);
        std::fs::copy(&from, base_dir.join(f)).map_err(|e| {
            AgentError::Ml(format!("base model {}: {}: {e}", source.display(), from.display()))
        })?;
    }
    let mut s =
        text2sql::splits(seed, n_train, n_val).map_err(|e| AgentError::Ml(e.to_string()))?;
    for e in s.train.iter_mut().chain(s.validation.iter_mut()) {
        e.system = None;
    }
    let mut training_jsonl = Vec::new();
    flock_ml_data::write_jsonl(&mut training_jsonl, &s.train)
        .map_err(|e| AgentError::Ml(e.to_string()))?;
    let mut validation_jsonl = Vec::new();
    flock_ml_data::write_jsonl(&mut validation_jsonl, &s.validation)
        .map_err(|e| AgentError::Ml(e.to_string()))?;
    let base = ModelDir::new(base_dir).load(&cpu()).map_err(ml)?;
    let set = encode_eval_set(&base.tokenizer, &s.validation, 256).map_err(ml)?;
    let base_bpb = evaluate_lm(&base.model, &set, 16).map_err(ml)?.bpb;
    Ok(PreparedTask { training_jsonl, validation_jsonl, base_bpb })
}
