//! Language-model training, bits per byte, LoRA (PEFT round trip, merge, the BPB drop).

use std::time::Instant;

use burn::module::Module;
use flock_ml::lora::{
    apply_lora, load_peft_adapter, lora_from_update, lora_to_update, merge_lora, save_peft_adapter,
    LoraConfig,
};
use flock_ml::model::{to_vec, DecoderLm};
use flock_ml::score::score_adapter;
use flock_ml::tokenizer::{encode_chat, encode_plain, train_bpe_tokenizer, LmExample};
use flock_ml::train::{evaluate_lm, train_lm, EvalReport, TrainConfig, WORST_BPB};
use flock_ml::{cpu, train_device, DecoderConfig};
use flock_ml_data::chatml::render;
use flock_ml_data::text2sql::{generate_pairs, splits};

struct Corpus {
    /// Chat-format training split (assistant SQL is the target).
    train: Vec<LmExample>,
    /// Hidden validation split, disjoint by question.
    val: Vec<LmExample>,
    /// Plain questions and SQL queries (unpaired) from another seed, for pretraining a base.
    plain: Vec<LmExample>,
    config: DecoderConfig,
}

/// The Text2SQL corpus without its (constant, long) schema system prompt, so sequences stay short.
fn corpus(n_train: usize, n_val: usize) -> Corpus {
    let mut s = splits(17, n_train, n_val).unwrap();
    for e in s.train.iter_mut().chain(s.validation.iter_mut()) {
        e.system = None;
    }
    // Questions and queries as separate documents: the base learns both languages but not the
    // question-to-SQL mapping nor the chat format.
    let plain_text: Vec<String> = generate_pairs(99, n_train)
        .into_iter()
        .flat_map(|p| [format!("{}\n", p.question), format!("{}\n", p.sql)])
        .collect();
    let mut texts: Vec<String> = s.train.iter().map(|e| render(e).text).collect();
    texts.extend(plain_text.iter().cloned());
    let tokenizer = train_bpe_tokenizer(&texts, 512).unwrap();
    let enc = |v: &[flock_ml_data::chat::ChatExample]| -> Vec<LmExample> {
        v.iter().map(|e| encode_chat(&tokenizer, e, 512).unwrap()).collect()
    };
    let (train, val) = (enc(&s.train), enc(&s.validation));
    let plain = plain_text.iter().map(|t| encode_plain(&tokenizer, t, 512).unwrap()).collect();
    let config = DecoderConfig::tiny(tokenizer.get_vocab_size(true));
    Corpus { train, val, plain, config }
}

#[test]
fn chat_targets_are_the_assistant_bytes_and_bpb_is_defined() {
    let c = corpus(64, 16);
    let s = splits(17, 64, 16).unwrap();
    for (ex, lm) in s.validation.iter().zip(&c.val) {
        let r = render(ex);
        assert_eq!(lm.target_bytes(), r.target_bytes() as u64, "targets align with token bounds");
        assert!(lm.target_tokens() > 0 && lm.target_tokens() < lm.ids.len());
    }
    let model = DecoderLm::random(&c.config, 1, &cpu()).unwrap();
    let r = evaluate_lm(&model, &c.val, 8).unwrap();
    let expected = r.loss * r.target_tokens as f64 / std::f64::consts::LN_2 / r.target_bytes as f64;
    assert!((r.bpb - expected).abs() < 1e-9);
    // A random model is close to uniform over the vocabulary.
    let uniform = (c.config.vocab_size as f64).ln();
    assert!((r.loss - uniform).abs() < 0.2, "loss {} vs ln V {uniform}", r.loss);
    assert_eq!(r.score(), r.bpb);
    // Batch size does not change the result beyond float summation order.
    let r1 = evaluate_lm(&model, &c.val, 1).unwrap();
    assert!((r1.bpb - r.bpb).abs() < 1e-4);
    assert!(evaluate_lm(&model, &[], 4).is_err());
}

#[test]
fn full_training_lowers_loss_and_is_reproducible() {
    let c = corpus(64, 16);
    let cfg = TrainConfig {
        steps: 12,
        batch_size: 4,
        lr: 3e-3,
        warmup_steps: 2,
        seed: 9,
        ..Default::default()
    };
    let run = || {
        let model = DecoderLm::random(&c.config, 2, &train_device()).unwrap();
        train_lm(model, &c.train, &cfg).unwrap()
    };
    let (m1, a) = run();
    let (_, b) = run();
    assert_eq!(a.losses, b.losses, "same seed, same run");
    assert!(a.losses.last().unwrap() < &(a.losses[0] * 0.9), "{:?}", a.losses);
    eprintln!(
        "full training: {:.1} samples/s, {:.0} target tok/s",
        a.samples_per_sec, a.tokens_per_sec
    );
    let r = evaluate_lm(&m1, &c.val, 8).unwrap();
    eprintln!("eval: {:.0} target tok/s", r.tokens_per_sec);
}

fn lora_cfg() -> LoraConfig {
    LoraConfig { base_model_name_or_path: Some("flock/tiny".into()), ..LoraConfig::default() }
}

#[test]
fn lora_finetune_on_text2sql_lowers_validation_bpb() {
    let t0 = Instant::now();
    let c = corpus(256, 48);
    // A base "pretrained" briefly on plain question/SQL text (no chat template), as a stand-in
    // for a real pretrained checkpoint.
    let random = DecoderLm::random(&c.config, 3, &train_device()).unwrap();
    let pre = TrainConfig {
        steps: 80,
        batch_size: 8,
        lr: 3e-3,
        warmup_steps: 8,
        seed: 1,
        ..Default::default()
    };
    let (base, pm) = train_lm(random, &c.plain, &pre).unwrap();
    eprintln!("pretrain: loss {:.3} -> {:.3}, {:.1}s", pm.losses[0], pm.final_loss, pm.seconds);
    let before = evaluate_lm(&base, &c.val, 16).unwrap();
    let model = apply_lora(base.clone(), &lora_cfg(), 4).unwrap();
    // LoRA starts as the identity (B = 0).
    assert_eq!(evaluate_lm(&model, &c.val, 16).unwrap().bpb, before.bpb);
    let cfg = TrainConfig {
        steps: 120,
        batch_size: 8,
        lr: 1e-2,
        warmup_steps: 10,
        seed: 5,
        ..Default::default()
    };
    let (tuned, metrics) = train_lm(model, &c.train, &cfg).unwrap();
    let after = evaluate_lm(&tuned, &c.val, 16).unwrap();
    eprintln!(
        "LoRA: val BPB {:.3} -> {:.3} ({:.1}% lower); train loss {:.3} -> {:.3}; {:.1} samples/s, \
         eval {:.0} tok/s; {:.1}s total",
        before.bpb,
        after.bpb,
        100.0 * (1.0 - after.bpb / before.bpb),
        metrics.losses[0],
        metrics.final_loss,
        metrics.samples_per_sec,
        after.tokens_per_sec,
        t0.elapsed().as_secs_f64()
    );
    assert!(after.bpb < 0.85 * before.bpb, "BPB {} -> {}", before.bpb, after.bpb);

    // Only the LoRA factors changed: every base tensor is bit-identical.
    let base_hf = base.hf_tensors().unwrap();
    let bases = |m: &DecoderLm| -> Vec<Vec<f32>> {
        let mut v =
            vec![to_vec(m.embed_tokens.val()).unwrap(), to_vec(m.norm.gamma.val()).unwrap()];
        for l in &m.layers {
            v.push(to_vec(l.input_layernorm.gamma.val()).unwrap());
            v.push(to_vec(l.post_attention_layernorm.gamma.val()).unwrap());
            for lin in
                [&l.self_attn.q_proj, &l.self_attn.k_proj, &l.self_attn.v_proj, &l.self_attn.o_proj]
            {
                v.push(to_vec(lin.weight.base()).unwrap());
                if let Some(b) = &lin.bias {
                    v.push(to_vec(b.val()).unwrap());
                }
            }
            for lin in [&l.mlp.gate_proj, &l.mlp.up_proj, &l.mlp.down_proj] {
                v.push(to_vec(lin.weight.base()).unwrap());
            }
        }
        v
    };
    assert_eq!(bases(&base), bases(&tuned));
    let ad = tuned.layers[0].self_attn.q_proj.weight.adapter().expect("adapter");
    assert!(to_vec(ad.b.val()).unwrap().iter().any(|&x| x != 0.0), "B trained");
    assert!(tuned.layers[0].self_attn.k_proj.weight.adapter().is_none());
    // Merged weights differ from the base exactly on the targets.
    let merged = merge_lora(tuned).hf_tensors().unwrap();
    for (b, m) in base_hf.iter().zip(&merged) {
        let changed = b.2 != m.2;
        let target = b.0.ends_with("q_proj.weight") || b.0.ends_with("v_proj.weight");
        assert_eq!(changed, target, "{}", b.0);
    }
}

#[test]
fn peft_adapter_round_trip_and_merge_keep_logits() {
    let c = corpus(32, 8);
    let base = DecoderLm::random(&c.config, 6, &train_device()).unwrap();
    let mut cfg = lora_cfg();
    cfg.target_modules = vec!["q_proj".into(), "v_proj".into(), "down_proj".into()];
    cfg.r = 4;
    let model = apply_lora(base.clone(), &cfg, 8).unwrap();
    let tc =
        TrainConfig { steps: 3, batch_size: 2, lr: 1e-2, warmup_steps: 1, ..Default::default() };
    let (tuned, _) = train_lm(model, &c.train, &tc).unwrap();

    let dir = tempfile::tempdir().unwrap();
    save_peft_adapter(&tuned, &cfg, dir.path()).unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(json["peft_type"], "LORA");
    assert_eq!(json["r"], 4);
    assert_eq!(json["task_type"], "CAUSAL_LM");
    assert_eq!(json["bias"], "none");
    assert_eq!(json["base_model_name_or_path"], "flock/tiny");
    let bytes = std::fs::read(dir.path().join("adapter_model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let a = st.tensor("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight").unwrap();
    assert_eq!(a.shape(), &[4, 64]);
    let b = st.tensor("base_model.model.model.layers.0.mlp.down_proj.lora_B.weight").unwrap();
    assert_eq!(b.shape(), &[64, 4]);
    assert_eq!(st.len(), 2 * 2 * 3);

    let (loaded, loaded_cfg) = load_peft_adapter(base.clone(), dir.path()).unwrap();
    assert_eq!(loaded_cfg, cfg);
    let ids: Vec<u32> = c.val[0].ids.clone();
    let logits = |m: &DecoderLm| {
        let m = m.valid();
        let x: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        let t = burn::tensor::Tensor::<2, burn::tensor::Int>::from_data(
            burn::tensor::TensorData::new(x, [1, ids.len()]),
            &m.embed_tokens.val().device(),
        );
        to_vec(m.forward(t)).unwrap()
    };
    let reference = logits(&tuned);
    assert_eq!(logits(&loaded), reference, "PEFT round trip is exact");
    assert_ne!(logits(&base), reference, "the adapter matters");
    let merged = merge_lora(loaded);
    let max =
        logits(&merged).iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(max < 1e-5, "merged vs LoRA max diff {max}");

    // The framework-neutral update boundary carries the same adapter.
    let update = lora_to_update(&tuned).unwrap();
    assert_eq!(update.layout().len(), 12);
    assert_eq!(
        update.layout().params()[0].name,
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    );
    let from_update = lora_from_update(base.clone(), &cfg, &update).unwrap();
    assert_eq!(logits(&from_update), reference);

    // Validator scoring: a good adapter scores its BPB, a broken one the worst score.
    let direct = evaluate_lm(&tuned, &c.val, 4).unwrap().bpb;
    let scored = score_adapter(&base, dir.path(), &c.val, 4);
    assert!((scored - direct).abs() < 1e-9, "{scored} vs {direct}");
    assert_eq!(score_adapter(&base, std::path::Path::new("/nonexistent"), &c.val, 4), WORST_BPB);

    // A non-finite adapter scores the worst.
    let nan = flock_ml_core::Update::new(
        update.layout().clone(),
        vec![f32::NAN; update.layout().numel()],
    )
    .unwrap();
    let broken = lora_from_update(base.clone(), &cfg, &nan).unwrap();
    let nan_dir = dir.path().join("nan");
    save_peft_adapter(&broken, &cfg, &nan_dir).unwrap();
    assert!(matches!(
        load_peft_adapter(base.clone(), &nan_dir),
        Err(flock_ml::MlError::InvalidData(_))
    ));
    assert_eq!(score_adapter(&base, &nan_dir, &c.val, 4), WORST_BPB);
    assert_eq!(flock_ml::score::score_model(&broken, &c.val, 4), WORST_BPB);

    // Real PEFT configs carry more keys: neutral ones load, meaning-changing ones are refused.
    let mut peft: serde_json::Value = serde_json::to_value(&cfg).unwrap();
    peft["fan_in_fan_out"] = false.into();
    peft["rank_pattern"] = serde_json::json!({});
    peft["inference_mode"] = true.into();
    let parsed: LoraConfig = serde_json::from_value(peft.clone()).unwrap();
    assert!(parsed.validate().is_ok());
    peft["use_dora"] = true.into();
    let parsed: LoraConfig = serde_json::from_value(peft).unwrap();
    assert!(matches!(parsed.validate(), Err(flock_ml::MlError::BadConfig(_))));

    // A wrong shape is a typed error.
    let mut cfg8 = cfg;
    cfg8.r = 8;
    std::fs::write(dir.path().join("adapter_config.json"), serde_json::to_vec(&cfg8).unwrap())
        .unwrap();
    let err = load_peft_adapter(base.clone(), dir.path()).unwrap_err();
    assert!(matches!(err, flock_ml::MlError::ShapeMismatch { .. }), "{err:?}");
    assert_eq!(score_adapter(&base, dir.path(), &c.val, 4), WORST_BPB);
}

#[test]
fn arena_round_trip_init_finetune_submit_score() {
    // Task creator: a tiny base model in HF layout. Trainer: LoRA on the chat data, PEFT
    // adapter out. Validator: base + adapter scored in BPB on the hidden set.
    let s = splits(23, 96, 24).unwrap();
    let strip = |v: Vec<flock_ml_data::chat::ChatExample>| -> Vec<_> {
        v.into_iter()
            .map(|mut e| {
                e.system = None;
                e
            })
            .collect()
    };
    let (train, val) = (strip(s.train), strip(s.validation));
    let corpus: Vec<String> = train.iter().map(|e| render(e).text).collect();
    let dir = tempfile::tempdir().unwrap();
    let base_dir = dir.path().join("base");
    flock_ml::init_tiny_model(&base_dir, 1, &corpus).unwrap();

    let loaded = flock_ml::ModelDir::new(&base_dir).load(&train_device()).unwrap();
    let job = flock_ml::LoraJob {
        train: TrainConfig {
            steps: 20,
            batch_size: 4,
            lr: 1e-2,
            warmup_steps: 2,
            ..Default::default()
        },
        ..Default::default()
    };
    let adapter_dir = dir.path().join("adapter");
    let (tuned, metrics) =
        flock_ml::finetune_lora(&loaded.model, &loaded.tokenizer, &train, &job, &adapter_dir)
            .unwrap();
    assert_eq!(metrics.losses.len(), 20);

    let validator = flock_ml::ModelDir::new(&base_dir).load(&cpu()).unwrap();
    let hidden = flock_ml::score::encode_eval_set(&validator.tokenizer, &val, 512).unwrap();
    let score = score_adapter(&validator.model, &adapter_dir, &hidden, 8);
    let direct = evaluate_lm(&tuned, &hidden, 8).unwrap().bpb;
    assert!((score - direct).abs() < 1e-6, "{score} vs {direct}");
    let base_score = flock_ml::score::score_model(&validator.model, &hidden, 8);
    assert!(score < base_score, "{score} vs base {base_score}");
    // The tuned model answers a chat prompt (greedy, stops at <|im_end|> or the token limit).
    let mut question = val[0].clone();
    question.conversations.truncate(1);
    let greedy = flock_ml::SamplingConfig { max_new_tokens: 24, ..Default::default() };
    let reply = flock_ml::generate_reply(&tuned, &loaded.tokenizer, &question, &greedy).unwrap();
    assert!(!reply.contains("<|im_end|>"));
    eprintln!("reply after 20 LoRA steps: {reply:?}");
    // Loading a base on the plain device for training is refused with a typed error.
    let err =
        flock_ml::finetune_lora(&validator.model, &validator.tokenizer, &train, &job, &adapter_dir);
    assert!(matches!(err, Err(flock_ml::MlError::InvalidData(_))));
}

#[test]
fn lora_dropout_is_active_in_training_only() {
    let c = corpus(32, 8);
    let base = DecoderLm::random(&c.config, 6, &train_device()).unwrap();
    let cfg = LoraConfig { lora_dropout: 0.5, ..lora_cfg() };
    let model = apply_lora(base, &cfg, 8).unwrap();
    let tc =
        TrainConfig { steps: 4, batch_size: 2, lr: 1e-2, warmup_steps: 1, ..Default::default() };
    let (tuned, m) = train_lm(model, &c.train, &tc).unwrap();
    assert!(m.losses.iter().all(|l| l.is_finite()));
    // Evaluation (no autodiff) is deterministic; a training-mode forward is not.
    let e1 = evaluate_lm(&tuned, &c.val, 4).unwrap();
    let e2 = evaluate_lm(&tuned, &c.val, 4).unwrap();
    assert_eq!(e1, EvalReport { tokens_per_sec: e1.tokens_per_sec, ..e2 });
    let ids = burn::tensor::Tensor::<2, burn::tensor::Int>::from_data(
        burn::tensor::TensorData::new(
            c.val[0].ids.iter().map(|&i| i as i64).collect::<Vec<_>>(),
            [1, c.val[0].ids.len()],
        ),
        &train_device(),
    );
    let a = to_vec(tuned.forward(ids.clone())).unwrap();
    let b = to_vec(tuned.forward(ids)).unwrap();
    assert_ne!(a, b, "dropout masks differ between training forwards");
    let bad = LoraConfig { lora_dropout: 1.0, ..lora_cfg() };
    assert!(bad.validate().is_err());
}

#[test]
fn shared_system_prompt_is_cached_without_changing_bpb() {
    // The real corpus, system prompt (schema) included: every example shares it.
    let s = splits(3, 48, 24).unwrap();
    let texts: Vec<String> = s.train.iter().map(|e| render(e).text).collect();
    let tok = train_bpe_tokenizer(&texts, 512).unwrap();
    let val: Vec<LmExample> =
        s.validation.iter().map(|e| encode_chat(&tok, e, 1024).unwrap()).collect();
    let cfg = DecoderConfig::tiny(tok.get_vocab_size(true));
    let model = DecoderLm::random(&cfg, 2, &cpu()).unwrap();
    let t = Instant::now();
    let cached = flock_ml::train::evaluate_lm_with(&model, &val, 8, true).unwrap();
    let t_cached = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let full = flock_ml::train::evaluate_lm_with(&model, &val, 8, false).unwrap();
    let t_full = t.elapsed().as_secs_f64();
    eprintln!(
        "eval with schema prompt ({} tokens/example): {:.0} tok/s shared-prefix vs {:.0} tok/s full ({:.1}x)",
        val[0].ids.len(),
        cached.tokens_per_sec,
        full.tokens_per_sec,
        t_full / t_cached
    );
    assert_eq!(
        (cached.target_tokens, cached.target_bytes),
        (full.target_tokens, full.target_bytes)
    );
    assert!((cached.bpb - full.bpb).abs() < 1e-5 * full.bpb, "{} vs {}", cached.bpb, full.bpb);
}
