//! `model import` from HF directories (our tiny models, BF16 and sharded sources, other
//! families) and its errors; chat through `ChatModel` on an imported model.

use std::path::Path;

use burn::tensor::{Int, Tensor, TensorData};
use flock_ml::import::write_safetensors;
use flock_ml::model::{to_vec, DecoderLm};
use flock_ml::{
    cpu, import_model, ChatMessage, ChatModel, DecoderConfig, FinishReason, ImportOptions, MlError,
    ModelDir, SamplingConfig, StoreDtype,
};

fn corpus() -> Vec<String> {
    (0..200).map(|i| format!("SELECT name FROM customers WHERE id = {i};")).collect()
}

fn logits(model: &DecoderLm, v: &[u32]) -> Vec<f32> {
    let d: Vec<i64> = v.iter().map(|&x| x as i64).collect();
    let ids: Tensor<2, Int> = Tensor::from_data(TensorData::new(d, [1, v.len()]), &cpu());
    to_vec(model.forward(ids)).unwrap()
}

const SEQ: [u32; 6] = [5, 300, 42, 7, 1, 99];

fn tiny_dir(dir: &Path) {
    flock_ml::init_tiny_model(dir, 3, &corpus()).unwrap();
}

#[test]
fn hf_dir_import_keeps_weights_tokenizer_and_chat() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    tiny_dir(&src);
    std::fs::write(
        src.join("tokenizer_config.json"),
        r#"{"chat_template": "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n'}}{% endfor %}", "eos_token": "<|im_end|>"}"#,
    )
    .unwrap();
    let out = tmp.path().join("nested/out");
    let report = import_model(&src, &out, &ImportOptions::default()).unwrap();
    assert_eq!(report.format, "hf");
    assert_eq!(report.architecture, "Qwen2ForCausalLM");
    assert_eq!(report.model_type, "qwen2");
    assert_eq!(report.layers, 2);
    assert_eq!(report.dtype, StoreDtype::F32);
    assert_eq!(report.source_dtypes.get("F32"), Some(&report.source_dtypes.values().sum()));
    assert_eq!(report.chat_template, "chatml");
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    for f in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    // No staging directory is left behind.
    let left: Vec<_> = std::fs::read_dir(out.parent().unwrap()).unwrap().collect();
    assert_eq!(left.len(), 1);

    let a = ModelDir::new(&src).load(&cpu()).unwrap();
    let b = ModelDir::new(&out).load(&cpu()).unwrap();
    assert_eq!(a.config, b.config);
    assert_eq!(report.parameters, a.config.num_params());
    assert_eq!(logits(&a.model, &SEQ), logits(&b.model, &SEQ));
    let text = "SELECT name FROM customers WHERE id = 7;";
    assert_eq!(
        a.tokenizer.encode(text, false).unwrap().get_ids(),
        b.tokenizer.encode(text, false).unwrap().get_ids()
    );

    // Chat: rendered as ChatML, stops at <|im_end|> or the token budget.
    let chat = ChatModel::load(&out, &cpu()).unwrap();
    let end = chat.tokenizer.token_to_id("<|im_end|>").unwrap();
    assert_eq!(chat.stop_tokens, vec![end]);
    assert_eq!(chat.default_system, None);
    let msgs = [ChatMessage::new("user", "list customers")];
    assert_eq!(
        chat.render(&msgs).unwrap(),
        "<|im_start|>user\nlist customers<|im_end|>\n<|im_start|>assistant\n"
    );
    let cfg = SamplingConfig { max_new_tokens: 5, ..Default::default() };
    let mut pieces = Vec::new();
    let reply = chat
        .chat_streaming(&msgs, &cfg, &mut |d| {
            pieces.push(d.to_string());
            true
        })
        .unwrap();
    assert_eq!(pieces.concat(), reply.text);
    assert!(reply.completion_tokens <= 5 && reply.completion_tokens > 0);
    assert_eq!(reply.finish_reason == FinishReason::Length, reply.completion_tokens == 5);
    // Same as the plain chat call, and a callback can cancel after the first piece.
    assert_eq!(chat.chat(&msgs, &cfg).unwrap(), reply);
    if !pieces.is_empty() && reply.completion_tokens > 1 {
        let r = chat.chat_streaming(&msgs, &cfg, &mut |_| false).unwrap();
        assert_eq!(r.finish_reason, FinishReason::Cancelled);
    }
}

#[test]
fn bf16_and_sharded_sources_are_converted() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    tiny_dir(&base);
    let loaded = ModelDir::new(&base).load(&cpu()).unwrap();
    let tensors = loaded.model.hf_tensors().unwrap();

    // A BF16 checkpoint in two shards with an index, as HF writes big models.
    let src = tmp.path().join("sharded");
    std::fs::create_dir(&src).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(base.join(f), src.join(f)).unwrap();
    }
    let (first, second) = tensors.split_at(tensors.len() / 2);
    write_safetensors(&src.join("model-00001-of-00002.safetensors"), first, StoreDtype::Bf16)
        .unwrap();
    write_safetensors(&src.join("model-00002-of-00002.safetensors"), second, StoreDtype::Bf16)
        .unwrap();
    let map: serde_json::Map<String, serde_json::Value> = tensors
        .iter()
        .enumerate()
        .map(|(i, (n, _, _))| {
            let f = if i < first.len() { "model-00001-of-00002" } else { "model-00002-of-00002" };
            (n.clone(), format!("{f}.safetensors").into())
        })
        .collect();
    std::fs::write(
        src.join("model.safetensors.index.json"),
        serde_json::json!({"metadata": {}, "weight_map": map}).to_string(),
    )
    .unwrap();

    let out = tmp.path().join("out");
    let report = import_model(&src, &out, &ImportOptions::default()).unwrap();
    assert_eq!(report.source_dtypes.keys().collect::<Vec<_>>(), vec!["BF16"]);
    assert!(!out.join("model.safetensors.index.json").exists());
    let from_src = ModelDir::new(&src).load(&cpu()).unwrap();
    let from_out = ModelDir::new(&out).load(&cpu()).unwrap();
    assert_eq!(logits(&from_src.model, &SEQ), logits(&from_out.model, &SEQ));
    let st_bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&st_bytes).unwrap();
    assert!(st.tensors().iter().all(|(_, v)| v.dtype() == safetensors::Dtype::F32));

    // Stored as f16: half the bytes, logits close to the f32 ones.
    let half = tmp.path().join("half");
    let opts = ImportOptions { dtype: StoreDtype::F16, force: false };
    let r16 = import_model(&base, &half, &opts).unwrap();
    assert!(r16.weights_bytes < report.weights_bytes * 6 / 10);
    let m16 = ModelDir::new(&half).load(&cpu()).unwrap();
    let (x, y) = (logits(&loaded.model, &SEQ), logits(&m16.model, &SEQ));
    let diff = x.iter().zip(&y).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(diff < 1e-2, "{diff}");
}

#[test]
fn llama_and_mistral_dirs_import() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    tiny_dir(&base);
    let tok = ModelDir::new(&base).load(&cpu()).unwrap().tokenizer;
    for (ty, class) in [("llama", "LlamaForCausalLM"), ("mistral", "MistralForCausalLM")] {
        let mut cfg = DecoderConfig::tiny(tok.get_vocab_size(true));
        cfg.model_type = ty.into();
        cfg.architectures = vec![class.into()];
        cfg.tie_word_embeddings = false;
        let model = DecoderLm::random(&cfg, 9, &cpu()).unwrap();
        let src = tmp.path().join(ty);
        ModelDir::new(&src).save(&cfg, &model, &tok).unwrap();
        // HF configs carry fields we do not model; Llama 3 lists several eos ids.
        let mut raw: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap())
                .unwrap();
        raw["eos_token_id"] = serde_json::json!([2, 0]);
        raw["rope_scaling"] = serde_json::json!({"rope_type": "llama3", "factor": 8.0});
        std::fs::write(src.join("config.json"), raw.to_string()).unwrap();
        std::fs::write(src.join("generation_config.json"), r#"{"eos_token_id": [2, 0]}"#).unwrap();
        let out = tmp.path().join(format!("{ty}-out"));
        let report = import_model(&src, &out, &ImportOptions::default()).unwrap();
        assert_eq!(report.architecture, class);
        assert!(!report.tied_embeddings);
        assert!(
            report.warnings.iter().any(|w| w.contains("rope_scaling")),
            "{:?}",
            report.warnings
        );
        assert_eq!(report.stop_token_ids, vec![0, 2]);
        let back = ModelDir::new(&out).load(&cpu()).unwrap();
        assert_eq!(back.config.eos_token_id, Some(2));
        assert_eq!(logits(&model, &SEQ), logits(&back.model, &SEQ), "{ty}");
    }
}

#[test]
fn import_errors_are_typed() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    tiny_dir(&src);
    let opts = ImportOptions::default();
    let out = |n: &str| tmp.path().join(n);

    // Missing source, missing files.
    let e = import_model(&tmp.path().join("nope"), &out("a"), &opts).unwrap_err();
    assert!(matches!(e, MlError::MissingFile(_)), "{e}");
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        let broken = tmp.path().join(format!("no-{f}"));
        std::fs::create_dir(&broken).unwrap();
        for g in ["config.json", "tokenizer.json", "model.safetensors"] {
            if g != f {
                std::fs::copy(src.join(g), broken.join(g)).unwrap();
            }
        }
        let e = import_model(&broken, &out(&format!("out-{f}")), &opts).unwrap_err();
        assert!(matches!(&e, MlError::MissingFile(p) if p.ends_with(f)), "{f}: {e}");
        assert!(!out(&format!("out-{f}")).exists());
    }

    // Architectures we do not implement.
    for (model_type, arch) in [("gpt2", "GPT2LMHeadModel"), ("phi3", "Phi3ForCausalLM")] {
        let other = tmp.path().join(model_type);
        std::fs::create_dir(&other).unwrap();
        for g in ["tokenizer.json", "model.safetensors"] {
            std::fs::copy(src.join(g), other.join(g)).unwrap();
        }
        let mut raw: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap())
                .unwrap();
        raw["model_type"] = model_type.into();
        raw["architectures"] = serde_json::json!([arch]);
        std::fs::write(other.join("config.json"), raw.to_string()).unwrap();
        let e = import_model(&other, &out(&format!("out-{model_type}")), &opts).unwrap_err();
        assert!(matches!(&e, MlError::UnsupportedArchitecture(a) if a == model_type), "{e}");
        assert!(e.to_string().contains("Llama, Qwen2 and Mistral"), "{e}");
    }

    // A mis-shaped tensor.
    let bad = tmp.path().join("bad-shape");
    std::fs::create_dir(&bad).unwrap();
    for g in ["tokenizer.json", "model.safetensors"] {
        std::fs::copy(src.join(g), bad.join(g)).unwrap();
    }
    let mut cfg =
        DecoderConfig::from_json(&std::fs::read_to_string(src.join("config.json")).unwrap())
            .unwrap();
    cfg.intermediate_size += 1;
    std::fs::write(bad.join("config.json"), cfg.to_json()).unwrap();
    let e = import_model(&bad, &out("out-shape"), &opts).unwrap_err();
    assert!(matches!(e, MlError::ShapeMismatch { .. }), "{e}");

    // A file that is neither a directory nor GGUF.
    let junk = tmp.path().join("weights.bin");
    std::fs::write(&junk, b"not a model").unwrap();
    let e = import_model(&junk, &out("out-junk"), &opts).unwrap_err();
    assert!(matches!(e, MlError::InvalidData(_)), "{e}");

    // A non-empty output directory needs --force.
    let full = out("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("notes.txt"), "keep me").unwrap();
    let e = import_model(&src, &full, &opts).unwrap_err();
    assert!(matches!(e, MlError::OutputExists(_)), "{e}");
    let forced = ImportOptions { force: true, ..Default::default() };
    import_model(&src, &full, &forced).unwrap();
    assert!(full.join("notes.txt").exists() && full.join("model.safetensors").exists());
    ModelDir::new(&full).load(&cpu()).unwrap();
}

#[cfg(not(feature = "gguf"))]
#[test]
fn gguf_without_the_feature_says_how_to_build() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("m.gguf");
    std::fs::write(&f, b"GGUF\x03\0\0\0").unwrap();
    let e = import_model(&f, &tmp.path().join("out"), &ImportOptions::default()).unwrap_err();
    assert!(matches!(e, MlError::FeatureDisabled { .. }), "{e}");
    assert!(e.to_string().contains("--features gguf"), "{e}");
}
