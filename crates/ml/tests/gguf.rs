//! GGUF import on tiny models written as llama.cpp would write them: Q/K rows permuted for
//! `llama` (the import must undo it: logits match bit for bit, and do not without the undo),
//! `qwen2` with biases, Q8_0 tensors, the tokenizer rebuilt from GGUF metadata, and malformed or
//! unsupported files rejected with typed errors.
#![cfg(feature = "gguf")]

use std::path::Path;

use burn::tensor::{Int, Tensor, TensorData};
use flock_ml::gguf::candle_core::quantized::gguf_file::{self, Value};
use flock_ml::gguf::candle_core::quantized::{GgmlDType, QTensor};
use flock_ml::gguf::candle_core::{Device, Tensor as CTensor};
use flock_ml::gguf::{gguf_to_hf_name, permute_rows, prescan, unpermute_rows};
use flock_ml::model::{to_vec, DecoderLm};
use flock_ml::{cpu, import_model, ChatModel, DecoderConfig, ImportOptions, MlError, ModelDir};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokenizers::Tokenizer;

const SMOL_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

fn tokenizer(dir: &Path) -> Tokenizer {
    let corpus: Vec<String> = (0..200)
        .map(|i| format!("SELECT name, city FROM customers WHERE id = {i} ORDER BY name;"))
        .collect();
    flock_ml::init_tiny_model(dir, 1, &corpus).unwrap();
    ModelDir::new(dir).load(&cpu()).unwrap().tokenizer
}

fn config(model_type: &str, vocab: usize, tied: bool) -> DecoderConfig {
    let mut c = DecoderConfig::tiny(vocab);
    c.model_type = model_type.into();
    c.architectures =
        vec![if model_type == "llama" { "LlamaForCausalLM" } else { "Qwen2ForCausalLM" }.into()];
    c.tie_word_embeddings = tied;
    c.rms_norm_eps = 1e-5;
    c.intermediate_size = 96;
    c.max_position_embeddings = 256;
    c
}

/// Large enough weights that attention (and so RoPE) visibly matters.
fn model(cfg: &DecoderConfig, seed: u64) -> DecoderLm {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut src = |name: &str, shape: &[usize]| {
        let n: usize = shape.iter().product();
        Ok(if name.ends_with("norm.weight") {
            (0..n).map(|_| 1.0 + 0.1 * rng.gen_range(-1.0f32..1.0)).collect()
        } else {
            (0..n).map(|_| 0.3 * rng.gen_range(-1.0f32..1.0)).collect()
        })
    };
    DecoderLm::from_source(cfg, &mut src, &cpu()).unwrap()
}

fn hf_to_gguf(hf: &str) -> String {
    for layer in 0..64 {
        for (g, h) in [
            ("attn_norm", "input_layernorm"),
            ("ffn_norm", "post_attention_layernorm"),
            ("attn_q", "self_attn.q_proj"),
            ("attn_k", "self_attn.k_proj"),
            ("attn_v", "self_attn.v_proj"),
            ("attn_output", "self_attn.o_proj"),
            ("ffn_gate", "mlp.gate_proj"),
            ("ffn_up", "mlp.up_proj"),
            ("ffn_down", "mlp.down_proj"),
        ] {
            for kind in ["weight", "bias"] {
                if hf == format!("model.layers.{layer}.{h}.{kind}") {
                    return format!("blk.{layer}.{g}.{kind}");
                }
            }
        }
    }
    match hf {
        "model.embed_tokens.weight" => "token_embd.weight",
        "model.norm.weight" => "output_norm.weight",
        "lm_head.weight" => "output.weight",
        other => panic!("{other}"),
    }
    .into()
}

struct Spec<'a> {
    arch: &'a str,
    permute: bool,
    quant: Option<GgmlDType>,
    tokenizer_model: &'a str,
    drop_key: Option<&'a str>,
    extra_tensor: bool,
}

impl Default for Spec<'_> {
    fn default() -> Self {
        Spec {
            arch: "llama",
            permute: true,
            quant: None,
            tokenizer_model: "gpt2",
            drop_key: None,
            extra_tensor: false,
        }
    }
}

/// Writes `model` as llama.cpp's converter would.
fn write_gguf(
    path: &Path,
    cfg: &DecoderConfig,
    model: &DecoderLm,
    tok: &Tokenizer,
    spec: &Spec<'_>,
) {
    let dev = Device::Cpu;
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for (name, shape, mut values) in model.hf_tensors().unwrap() {
        let cols = if shape.len() == 2 { shape[1] } else { 1 };
        if spec.permute && name.contains("self_attn.q_proj") {
            values = permute_rows(&values, cfg.num_attention_heads, cfg.head_dim(), cols);
        } else if spec.permute && name.contains("self_attn.k_proj") {
            values = permute_rows(&values, cfg.kv_heads(), cfg.head_dim(), cols);
        }
        let t = CTensor::from_vec(values, shape.as_slice(), &dev).unwrap();
        let dtype = match spec.quant {
            Some(q) if shape.len() == 2 && cols % 32 == 0 => q,
            _ => GgmlDType::F32,
        };
        tensors.push((hf_to_gguf(&name), QTensor::quantize(&t, dtype).unwrap()));
    }
    if spec.extra_tensor {
        let t = CTensor::zeros(8, flock_ml::gguf::candle_core::DType::F32, &dev).unwrap();
        tensors.push(("rope_freqs.weight".into(), QTensor::quantize(&t, GgmlDType::F32).unwrap()));
    }
    let tok_json: serde_json::Value = serde_json::from_str(&tok.to_string(false).unwrap()).unwrap();
    let vocab = tok.get_vocab(true);
    let mut tokens = vec![String::new(); vocab.len()];
    for (t, &id) in &vocab {
        tokens[id as usize] = t.clone();
    }
    let merges: Vec<Value> = tok_json["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => Value::String(s.clone()),
            pair => Value::String(format!(
                "{} {}",
                pair[0].as_str().unwrap(),
                pair[1].as_str().unwrap()
            )),
        })
        .collect();
    let specials: Vec<u32> =
        flock_ml::tokenizer::SPECIAL_TOKENS.iter().map(|s| tok.token_to_id(s).unwrap()).collect();
    let types: Vec<Value> = (0..tokens.len() as u32)
        .map(|i| Value::I32(if specials.contains(&i) { 3 } else { 1 }))
        .collect();
    let a = spec.arch;
    let u = |x: usize| Value::U32(x as u32);
    let mut md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(a.into())),
        (format!("{a}.embedding_length"), u(cfg.hidden_size)),
        (format!("{a}.block_count"), u(cfg.num_hidden_layers)),
        (format!("{a}.attention.head_count"), u(cfg.num_attention_heads)),
        (format!("{a}.attention.head_count_kv"), u(cfg.kv_heads())),
        (format!("{a}.feed_forward_length"), u(cfg.intermediate_size)),
        (format!("{a}.context_length"), u(cfg.max_position_embeddings)),
        (format!("{a}.rope.dimension_count"), u(cfg.head_dim())),
        (format!("{a}.rope.freq_base"), Value::F32(cfg.rope_theta as f32)),
        (format!("{a}.attention.layer_norm_rms_epsilon"), Value::F32(cfg.rms_norm_eps as f32)),
        ("tokenizer.ggml.model".into(), Value::String(spec.tokenizer_model.into())),
        ("tokenizer.ggml.pre".into(), Value::String("gpt2".into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(tokens.into_iter().map(Value::String).collect()),
        ),
        ("tokenizer.ggml.merges".into(), Value::Array(merges)),
        ("tokenizer.ggml.token_type".into(), Value::Array(types)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(specials[2])),
        ("tokenizer.ggml.padding_token_id".into(), Value::U32(specials[0])),
        ("tokenizer.chat_template".into(), Value::String(SMOL_TEMPLATE.into())),
    ];
    md.retain(|(k, _)| Some(k.as_str()) != spec.drop_key);
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &md_refs, &t_refs).unwrap();
}

fn logits(model: &DecoderLm, v: &[u32]) -> Vec<f32> {
    let d: Vec<i64> = v.iter().map(|&x| x as i64).collect();
    let ids: Tensor<2, Int> = Tensor::from_data(TensorData::new(d, [1, v.len()]), &cpu());
    to_vec(model.forward(ids)).unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

const SEQ: [u32; 12] = [5, 300, 42, 7, 1, 99, 250, 3, 3, 180, 77, 64];

#[test]
fn names_and_permutation_helpers() {
    assert_eq!(gguf_to_hf_name("token_embd.weight").unwrap(), "model.embed_tokens.weight");
    assert_eq!(
        gguf_to_hf_name("blk.12.attn_output.weight").unwrap(),
        "model.layers.12.self_attn.o_proj.weight"
    );
    assert_eq!(
        gguf_to_hf_name("blk.0.attn_q.bias").unwrap(),
        "model.layers.0.self_attn.q_proj.bias"
    );
    assert_eq!(
        gguf_to_hf_name("blk.1.ffn_norm.weight").unwrap(),
        "model.layers.1.post_attention_layernorm.weight"
    );
    assert_eq!(gguf_to_hf_name("output.weight").unwrap(), "lm_head.weight");
    assert!(gguf_to_hf_name("blk.x.attn_q.weight").is_none());
    assert!(gguf_to_hf_name("rope_freqs.weight").is_none());
    // 2 heads of dim 4: HF rows [a0 a1 b0 b1 | c0 c1 d0 d1] interleave per head.
    let hf: Vec<f32> = (0..8).map(|x| x as f32).collect();
    let g = permute_rows(&hf, 2, 4, 1);
    assert_eq!(g, vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
    assert_eq!(unpermute_rows(&g, 2, 4, 1), hf);
    let wide: Vec<f32> = (0..48).map(|x| x as f32).collect();
    assert_eq!(unpermute_rows(&permute_rows(&wide, 2, 8, 3), 2, 8, 3), wide);
}

#[test]
fn llama_gguf_imports_exactly_and_needs_the_unpermute() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = tokenizer(&tmp.path().join("tok"));
    let cfg = config("llama", tok.get_vocab_size(true), false);
    let m = model(&cfg, 3);
    let path = tmp.path().join("tiny.gguf");
    write_gguf(&path, &cfg, &m, &tok, &Spec::default());
    let scan = prescan(&path).unwrap();
    assert_eq!(scan.tensors.len(), cfg.tensor_shapes().len());

    let out = tmp.path().join("out");
    let report = import_model(&path, &out, &ImportOptions::default()).unwrap();
    assert_eq!(report.format, "gguf");
    assert_eq!(report.architecture, "LlamaForCausalLM");
    assert_eq!(report.source_dtypes, [("F32".to_string(), scan.tensors.len())].into());
    assert!(!report.tied_embeddings);
    assert_eq!(report.context_length, 256);
    assert_eq!(report.chat_template, "chatml");
    let back = ModelDir::new(&out).load(&cpu()).unwrap();
    let mut want = cfg.clone();
    want.eos_token_id = tok.token_to_id("<|im_end|>");
    // GGUF stores the epsilon as f32; the config gets its shortest decimal.
    want.rms_norm_eps = (cfg.rms_norm_eps as f32).to_string().parse().unwrap();
    assert_eq!(back.config, want);
    assert_eq!(logits(&m, &SEQ), logits(&back.model, &SEQ), "bit-identical after the unpermute");

    // The tokenizer rebuilt from GGUF metadata encodes and decodes like the original.
    for text in [
        "SELECT name, city FROM customers WHERE id = 42 ORDER BY name;",
        "<|im_start|>user\nhello  world\t→ ünïcode<|im_end|>\n",
        "  leading spaces and 12345 digits",
    ] {
        let a = tok.encode(text, false).unwrap();
        let b = back.tokenizer.encode(text, false).unwrap();
        assert_eq!(a.get_ids(), b.get_ids(), "{text:?}");
        assert_eq!(back.tokenizer.decode(b.get_ids(), false).unwrap(), text);
    }
    // Chat: the template's default system prompt, <|im_end|> stops.
    let chat = ChatModel::load(&out, &cpu()).unwrap();
    assert_eq!(
        chat.default_system.as_deref(),
        Some("You are a helpful AI assistant named SmolLM, trained by Hugging Face")
    );
    assert_eq!(chat.stop_tokens, vec![tok.token_to_id("<|im_end|>").unwrap()]);
    let cfg_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("tokenizer_config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg_json["eos_token"], "<|im_end|>");
    assert_eq!(cfg_json["chat_template"], SMOL_TEMPLATE);

    // Negative control: a file whose Q/K rows were not permuted imports to a different model
    // (so the unpermute is what makes the llama import exact).
    let plain = tmp.path().join("plain.gguf");
    write_gguf(&plain, &cfg, &m, &tok, &Spec { permute: false, ..Default::default() });
    let out2 = tmp.path().join("out2");
    import_model(&plain, &out2, &ImportOptions::default()).unwrap();
    let wrong = ModelDir::new(&out2).load(&cpu()).unwrap();
    let d = max_diff(&logits(&m, &SEQ), &logits(&wrong.model, &SEQ));
    assert!(d > 1e-2, "permutation made no difference ({d})");
}

#[test]
fn qwen2_gguf_with_biases_is_not_permuted() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = tokenizer(&tmp.path().join("tok"));
    let cfg = config("qwen2", tok.get_vocab_size(true), true);
    let m = model(&cfg, 4);
    let path = tmp.path().join("q.gguf");
    write_gguf(
        &path,
        &cfg,
        &m,
        &tok,
        &Spec { arch: "qwen2", permute: false, ..Default::default() },
    );
    let out = tmp.path().join("out");
    let report = import_model(&path, &out, &ImportOptions::default()).unwrap();
    assert_eq!(report.architecture, "Qwen2ForCausalLM");
    assert!(report.tied_embeddings);
    let back = ModelDir::new(&out).load(&cpu()).unwrap();
    assert_eq!(logits(&m, &SEQ), logits(&back.model, &SEQ));
}

#[test]
fn q8_0_tensors_dequantize_close() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = tokenizer(&tmp.path().join("tok"));
    let cfg = config("llama", tok.get_vocab_size(true), true);
    let m = model(&cfg, 5);
    let path = tmp.path().join("q8.gguf");
    write_gguf(&path, &cfg, &m, &tok, &Spec { quant: Some(GgmlDType::Q8_0), ..Default::default() });
    let out = tmp.path().join("out");
    let report = import_model(&path, &out, &ImportOptions::default()).unwrap();
    assert!(report.source_dtypes["Q8_0"] > 0 && report.source_dtypes["F32"] > 0, "{report:?}");
    let back = ModelDir::new(&out).load(&cpu()).unwrap();
    let (a, b) = (logits(&m, &SEQ), logits(&back.model, &SEQ));
    let scale = a.iter().fold(0.0f32, |s, x| s.max(x.abs()));
    let d = max_diff(&a, &b);
    assert!(d > 0.0 && d < 0.05 * scale, "{d} vs {scale}");
}

/// A GGUF v3 header by hand: `kvs` (key, type, value bytes) and tensors (name, dims, type, offset).
fn raw_gguf(
    kvs: &[(&str, u32, Vec<u8>)],
    tensors: &[(&str, &[u64], u32, u64)],
    data: usize,
) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend((tensors.len() as u64).to_le_bytes());
    b.extend((kvs.len() as u64).to_le_bytes());
    let s = |b: &mut Vec<u8>, x: &str| {
        b.extend((x.len() as u64).to_le_bytes());
        b.extend(x.as_bytes());
    };
    for (k, t, v) in kvs {
        s(&mut b, k);
        b.extend(t.to_le_bytes());
        b.extend(v);
    }
    for (name, dims, t, off) in tensors {
        s(&mut b, name);
        b.extend((dims.len() as u32).to_le_bytes());
        for d in *dims {
            b.extend(d.to_le_bytes());
        }
        b.extend(t.to_le_bytes());
        b.extend(off.to_le_bytes());
    }
    while b.len() % 32 != 0 {
        b.push(0);
    }
    b.extend(vec![0u8; data]);
    b
}

#[test]
fn malformed_and_unsupported_gguf_files_are_typed_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = tokenizer(&tmp.path().join("tok"));
    let cfg = config("llama", tok.get_vocab_size(true), true);
    let m = model(&cfg, 6);
    let opts = ImportOptions::default();
    let import = |name: &str, bytes: &[u8]| {
        let p = tmp.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let out = tmp.path().join(format!("{name}.out"));
        let r = import_model(&p, &out, &opts);
        assert!(r.is_err() != out.exists(), "no partial output for {name}");
        r
    };
    let good = tmp.path().join("good.gguf");
    write_gguf(&good, &cfg, &m, &tok, &Spec::default());
    let bytes = std::fs::read(&good).unwrap();

    // Truncated: in the tensor data, and inside the header.
    for (name, cut) in [("cut-data.gguf", bytes.len() * 2 / 3), ("cut-head.gguf", 200)] {
        let e = import(name, &bytes[..cut]).unwrap_err();
        assert!(
            matches!(&e, MlError::Gguf(m) if m.contains("truncated") || m.contains("end of the file")),
            "{name}: {e}"
        );
    }
    // Bad magic; unsupported version.
    let mut bad = bytes.clone();
    bad[0] = b'X';
    std::fs::write(tmp.path().join("magic.bin"), &bad).unwrap();
    let e = prescan(&tmp.path().join("magic.bin")).unwrap_err();
    assert!(matches!(e, MlError::Gguf(_)), "{e}");
    let mut v9 = bytes;
    v9[4] = 9;
    assert!(
        matches!(import("v9.gguf", &v9).unwrap_err(), MlError::Gguf(m) if m.contains("version"))
    );

    // Architectures and tokenizers we do not convert.
    for arch in ["gpt2", "phi3"] {
        let p = tmp.path().join(format!("{arch}.gguf"));
        write_gguf(&p, &cfg, &m, &tok, &Spec { arch, ..Default::default() });
        let e = import_model(&p, &tmp.path().join(format!("{arch}.out")), &opts).unwrap_err();
        assert!(matches!(&e, MlError::UnsupportedArchitecture(a) if a.starts_with(arch)), "{e}");
    }
    let p = tmp.path().join("spm.gguf");
    write_gguf(&p, &cfg, &m, &tok, &Spec { tokenizer_model: "llama", ..Default::default() });
    let e = import_model(&p, &tmp.path().join("spm.out"), &opts).unwrap_err();
    assert!(matches!(&e, MlError::Tokenizer(t) if t.contains("`llama`")), "{e}");
    // Missing metadata; RoPE frequency factors (Llama 3.1 scaling).
    let p = tmp.path().join("nokey.gguf");
    write_gguf(
        &p,
        &cfg,
        &m,
        &tok,
        &Spec { drop_key: Some("llama.block_count"), ..Default::default() },
    );
    let e = import_model(&p, &tmp.path().join("nokey.out"), &opts).unwrap_err();
    assert!(matches!(&e, MlError::Gguf(t) if t.contains("llama.block_count")), "{e}");
    let p = tmp.path().join("rope.gguf");
    write_gguf(&p, &cfg, &m, &tok, &Spec { extra_tensor: true, ..Default::default() });
    let e = import_model(&p, &tmp.path().join("rope.out"), &opts).unwrap_err();
    assert!(matches!(e, MlError::UnsupportedArchitecture(_)), "{e}");

    // A quantization type candle cannot dequantize (IQ4_NL = 20).
    let iq = raw_gguf(&[], &[("token_embd.weight", &[64, 8], 20, 0)], 4096);
    let e = import("iq.gguf", &iq).unwrap_err();
    assert!(
        matches!(&e, MlError::UnsupportedQuantization { dtype, .. } if dtype.contains("IQ4_NL")),
        "{e}"
    );
    // Hostile sizes are refused before anything is allocated.
    let mut huge_array = 4u32.to_le_bytes().to_vec(); // element type u32
    huge_array.extend((1u64 << 40).to_le_bytes());
    let e = import("array.gguf", &raw_gguf(&[("x", 9, huge_array)], &[], 64)).unwrap_err();
    assert!(matches!(&e, MlError::Gguf(t) if t.contains("limit")), "{e}");
    let mut long_string = (1u64 << 50).to_le_bytes().to_vec();
    long_string.extend(b"abc");
    let e = import("string.gguf", &raw_gguf(&[("x", 8, long_string)], &[], 64)).unwrap_err();
    assert!(matches!(e, MlError::Gguf(_)), "{e}");
    let e =
        import("dims.gguf", &raw_gguf(&[], &[("t", &[1 << 40, 1 << 40], 0, 0)], 64)).unwrap_err();
    assert!(matches!(e, MlError::Gguf(_)), "{e}");
    let e = import("past-end.gguf", &raw_gguf(&[], &[("t", &[32], 0, 1 << 60)], 64)).unwrap_err();
    assert!(matches!(&e, MlError::Gguf(t) if t.contains("past the end")), "{e}");
}
