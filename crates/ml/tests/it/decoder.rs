//! Decoder: HF round trip, dtypes, errors, causal masking, gradient check, KV-cache generation.

use std::collections::HashMap;

use burn::tensor::{Int, Tensor, TensorData};
use flock_ml::checkpoint::{
    model_from_safetensors, model_from_update, model_to_safetensors, model_to_update, serialize_f32,
};
use flock_ml::generate::{generate, generate_uncached, SamplingConfig};
use flock_ml::model::{to_vec, DecoderLm};
use flock_ml::{cpu, train_device, DecoderConfig, MlError, ModelDir};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::common::micro;

fn ids(v: &[u32]) -> Tensor<2, Int> {
    let d: Vec<i64> = v.iter().map(|&x| x as i64).collect();
    Tensor::from_data(TensorData::new(d, [1, v.len()]), &cpu())
}

fn logits(model: &DecoderLm, v: &[u32]) -> Vec<f32> {
    to_vec(model.forward(ids(v))).unwrap()
}

/// A model with larger-than-default weights, so gradients and masking effects are not tiny.
fn scaled_model(
    cfg: &DecoderConfig,
    seed: u64,
    scale: f32,
    device: &burn::tensor::Device,
) -> DecoderLm {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut src = |name: &str, shape: &[usize]| {
        let n: usize = shape.iter().product();
        Ok(if name.ends_with("norm.weight") {
            (0..n).map(|_| 1.0 + 0.1 * rng.gen_range(-1.0f32..1.0)).collect()
        } else {
            (0..n).map(|_| scale * rng.gen_range(-1.0f32..1.0)).collect()
        })
    };
    DecoderLm::from_source(cfg, &mut src, device).unwrap()
}

const SEQ: [u32; 9] = [3, 17, 42, 8, 8, 1, 49, 0, 23];

#[test]
fn hf_safetensors_round_trip_gives_identical_logits() {
    for (ty, tied) in [("qwen2", true), ("llama", false), ("mistral", false)] {
        let cfg = micro(ty, tied);
        let model = scaled_model(&cfg, 7, 0.3, &cpu());
        let bytes = model_to_safetensors(&model).unwrap();
        let loaded = model_from_safetensors(&cfg, &bytes, &cpu()).unwrap();
        assert_eq!(logits(&model, &SEQ), logits(&loaded, &SEQ), "{ty}");
        // The neutral update boundary round-trips too.
        let update = model_to_update(&model).unwrap();
        assert_eq!(update.layout().numel() as u64, cfg.num_params());
        let from_update = model_from_update(&cfg, &update, &cpu()).unwrap();
        assert_eq!(logits(&model, &SEQ), logits(&from_update, &SEQ), "{ty}");
        // Names and shapes are HF's, in HF's [out, in] layout.
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let q = st.tensor("model.layers.1.self_attn.q_proj.weight").unwrap();
        assert_eq!(q.shape(), &[16, 16]);
        let k = st.tensor("model.layers.0.self_attn.k_proj.weight").unwrap();
        assert_eq!(k.shape(), &[8, 16]);
        assert_eq!(st.tensor("lm_head.weight").is_ok(), !tied);
        assert_eq!(st.tensor("model.layers.0.self_attn.q_proj.bias").is_ok(), ty != "mistral");
        assert_eq!(st.tensor("model.layers.0.self_attn.o_proj.bias").is_ok(), ty == "llama");
    }
}

#[test]
fn model_dir_round_trip_via_init_tiny_model() {
    let dir = tempfile::tempdir().unwrap();
    let corpus: Vec<String> =
        (0..200).map(|i| format!("SELECT name FROM customers WHERE id = {i};")).collect();
    let cfg = flock_ml::init_tiny_model(dir.path(), 5, &corpus).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(dir.path().join(f).exists(), "{f}");
    }
    let loaded = ModelDir::new(dir.path()).load(&cpu()).unwrap();
    assert_eq!(loaded.config, cfg);
    let text = "SELECT name FROM customers WHERE id = 7;";
    let enc = loaded.tokenizer.encode(text, false).unwrap();
    assert_eq!(loaded.tokenizer.decode(enc.get_ids(), false).unwrap(), text);
    // Saving again and reloading keeps the logits bit for bit.
    let dir2 = tempfile::tempdir().unwrap();
    ModelDir::new(dir2.path()).save(&loaded.config, &loaded.model, &loaded.tokenizer).unwrap();
    let again = ModelDir::new(dir2.path()).load(&cpu()).unwrap();
    assert_eq!(logits(&loaded.model, enc.get_ids()), logits(&again.model, enc.get_ids()));
    // Same seed, same bytes.
    let dir3 = tempfile::tempdir().unwrap();
    flock_ml::init_tiny_model(dir3.path(), 5, &corpus).unwrap();
    let read = |d: &std::path::Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert_eq!(read(dir.path()), read(dir3.path()));
}

fn reencode(model: &DecoderLm, f: impl Fn(f32) -> Vec<u8>, dtype: safetensors::Dtype) -> Vec<u8> {
    let tensors = model.hf_tensors().unwrap();
    let bytes: Vec<Vec<u8>> =
        tensors.iter().map(|(_, _, v)| v.iter().flat_map(|&x| f(x)).collect()).collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, s, _), b)| {
            (n.clone(), safetensors::tensor::TensorView::new(dtype, s.clone(), b).unwrap())
        })
        .collect();
    safetensors::serialize(views, &None).unwrap()
}

#[test]
fn loads_f16_and_bf16_checkpoints() {
    let cfg = micro("qwen2", false);
    let model = scaled_model(&cfg, 3, 0.2, &cpu());
    let reference = logits(&model, &SEQ);
    for (dtype, tol) in [(safetensors::Dtype::F16, 2e-2), (safetensors::Dtype::BF16, 1e-1)] {
        let bytes = match dtype {
            safetensors::Dtype::F16 => {
                reencode(&model, |x| half::f16::from_f32(x).to_le_bytes().to_vec(), dtype)
            }
            _ => reencode(&model, |x| half::bf16::from_f32(x).to_le_bytes().to_vec(), dtype),
        };
        let loaded = model_from_safetensors(&cfg, &bytes, &cpu()).unwrap();
        let got = logits(&loaded, &SEQ);
        let max = reference.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(max < tol, "{dtype:?}: max diff {max}");
    }
}

#[test]
fn bad_checkpoints_give_typed_errors() {
    let cfg = micro("qwen2", true);
    let model = scaled_model(&cfg, 3, 0.2, &cpu());
    let mut tensors = model.hf_tensors().unwrap();
    // Shape mismatch names the tensor and both shapes.
    let mut wrong = tensors.clone();
    wrong[2].1 = vec![8, 32];
    let err =
        model_from_safetensors(&cfg, &serialize_f32(&wrong, None).unwrap(), &cpu()).unwrap_err();
    match err {
        MlError::ShapeMismatch { name, expected, found } => {
            assert_eq!(name, tensors[2].0);
            assert_eq!(expected, tensors[2].1);
            assert_eq!(found, vec![8, 32]);
        }
        other => panic!("unexpected {other:?}"),
    }
    // Missing tensor.
    let removed = tensors.remove(5);
    let err =
        model_from_safetensors(&cfg, &serialize_f32(&tensors, None).unwrap(), &cpu()).unwrap_err();
    assert!(matches!(err, MlError::MissingTensor(n) if n == removed.0));
    // Unsupported dtype.
    let views = vec![(
        "model.embed_tokens.weight".to_string(),
        safetensors::tensor::TensorView::new(safetensors::Dtype::I32, vec![50, 16], &[0u8; 3200])
            .unwrap(),
    )];
    let bytes = safetensors::serialize(views, &None).unwrap();
    let err = model_from_safetensors(&cfg, &bytes, &cpu()).unwrap_err();
    assert!(matches!(err, MlError::UnsupportedDtype { .. }), "{err:?}");
    // Garbage container, bad config, missing directory.
    assert!(matches!(
        model_from_safetensors(&cfg, b"garbage", &cpu()),
        Err(MlError::SafeTensors(_))
    ));
    assert!(matches!(
        DecoderConfig::from_json("{\"model_type\":\"gpt2\"}"),
        Err(MlError::BadConfig(_))
    ));
    let mut bad = cfg;
    bad.num_key_value_heads = Some(3);
    assert!(matches!(bad.validate(), Err(MlError::BadConfig(_))));
    bad.num_key_value_heads = Some(2);
    bad.hidden_size = 1 << 30;
    assert!(matches!(bad.validate(), Err(MlError::BadConfig(_))));
    let missing = ModelDir::new("/nonexistent/flock-model").load(&cpu()).unwrap_err();
    assert!(matches!(missing, MlError::MissingFile(_)), "{missing:?}");
}

#[test]
fn config_json_uses_hf_field_names() {
    let text = r#"{"architectures":["Qwen2ForCausalLM"],"hidden_size":896,"intermediate_size":4864,
      "max_position_embeddings":32768,"model_type":"qwen2","num_attention_heads":14,
      "num_hidden_layers":24,"num_key_value_heads":2,"rms_norm_eps":1e-06,"rope_theta":1000000.0,
      "tie_word_embeddings":true,"vocab_size":151936,"hidden_act":"silu","torch_dtype":"bfloat16",
      "sliding_window":32768,"use_sliding_window":false}"#;
    let cfg = DecoderConfig::from_json(text).unwrap();
    assert_eq!(cfg.head_dim(), 64);
    assert_eq!(cfg.kv_heads(), 2);
    assert!(cfg.qkv_bias() && !cfg.o_bias());
    // Qwen2.5-0.5B has about 494M parameters.
    assert!((490_000_000..500_000_000).contains(&cfg.num_params()), "{}", cfg.num_params());
    let back = DecoderConfig::from_json(&cfg.to_json()).unwrap();
    assert_eq!(back, cfg);
}

#[test]
fn causal_mask_hides_the_future() {
    let cfg = micro("qwen2", false);
    let model = scaled_model(&cfg, 11, 0.4, &cpu());
    let v = 50;
    let a = logits(&model, &SEQ);
    for t in [0usize, 3, 7] {
        let mut other = SEQ;
        for x in other.iter_mut().skip(t + 1) {
            *x = (*x + 13) % 50;
        }
        let b = logits(&model, &other);
        assert_eq!(a[..(t + 1) * v], b[..(t + 1) * v], "prefix up to {t}");
        if t + 1 < SEQ.len() {
            assert_ne!(a[(t + 1) * v..], b[(t + 1) * v..], "suffix after {t} must change");
        }
    }
}

/// Smooth scalar loss: mean next-token cross-entropy over the sequence.
fn ce_loss(model: &DecoderLm, seq: &[u32]) -> Tensor<1> {
    let d = model.embed_tokens.val().device();
    let x: Vec<i64> = seq.iter().map(|&x| x as i64).collect();
    let n = seq.len();
    let input = Tensor::<2, Int>::from_data(TensorData::new(x[..n - 1].to_vec(), [1, n - 1]), &d);
    let target = Tensor::<3, Int>::from_data(TensorData::new(x[1..].to_vec(), [1, n - 1, 1]), &d);
    let logp = burn::tensor::activation::log_softmax(model.forward(input), 2);
    logp.gather(2, target).mean().neg()
}

#[test]
fn gradients_match_central_finite_differences() {
    let cfg = micro("llama", false);
    let device = train_device();
    let model = scaled_model(&cfg, 21, 0.3, &device);
    let grads = ce_loss(&model, &SEQ).backward();
    let hf = model.hf_tensors().unwrap();
    let index: HashMap<String, usize> =
        hf.iter().enumerate().map(|(i, t)| (t.0.clone(), i)).collect();
    // (HF tensor name, flat HF index, analytic gradient).
    let l0 = &model.layers[0];
    let l1 = &model.layers[1];
    let burn_grad = |t: Tensor<2>, i: usize, o: usize| {
        let g = t.grad(&grads).expect("tracked");
        let [_, d_out] = g.dims();
        to_vec(g).unwrap()[i * d_out + o] // burn [in, out]
    };
    let checks: Vec<(String, usize, f32)> = vec![
        (
            "model.layers.0.self_attn.q_proj.weight".into(),
            2 * 16 + 5,
            burn_grad(l0.self_attn.q_proj.weight.val(), 5, 2),
        ),
        (
            "model.layers.0.self_attn.k_proj.weight".into(),
            16 + 3,
            burn_grad(l0.self_attn.k_proj.weight.val(), 3, 1),
        ),
        (
            "model.layers.1.self_attn.v_proj.weight".into(),
            4 * 16 + 9,
            burn_grad(l1.self_attn.v_proj.weight.val(), 9, 4),
        ),
        (
            "model.layers.1.mlp.down_proj.weight".into(),
            7 * 24 + 11,
            burn_grad(l1.mlp.down_proj.weight.val(), 11, 7),
        ),
        (
            "model.layers.0.mlp.gate_proj.weight".into(),
            3 * 16 + 2,
            burn_grad(l0.mlp.gate_proj.weight.val(), 2, 3),
        ),
        (
            "lm_head.weight".into(),
            17 * 16 + 4,
            burn_grad(model.lm_head.as_ref().unwrap().weight.val(), 4, 17),
        ),
        (
            "model.embed_tokens.weight".into(),
            42 * 16 + 6,
            to_vec(model.embed_tokens.val().grad(&grads).unwrap()).unwrap()[42 * 16 + 6],
        ),
        (
            "model.norm.weight".into(),
            10,
            to_vec(model.norm.gamma.val().grad(&grads).unwrap()).unwrap()[10],
        ),
        (
            "model.layers.1.self_attn.o_proj.bias".into(),
            3,
            to_vec(l1.self_attn.o_proj.bias.as_ref().unwrap().val().grad(&grads).unwrap()).unwrap()
                [3],
        ),
    ];
    let eps = 1e-2f32;
    for (name, flat, analytic) in checks {
        let eval = |delta: f32| {
            let mut t = hf.clone();
            t[index[&name]].2[flat] += delta;
            let mut src = |n: &str, _s: &[usize]| Ok(t[index[n]].2.clone());
            let m = DecoderLm::from_source(&cfg, &mut src, &cpu()).unwrap();
            ce_loss(&m, &SEQ).into_scalar::<f32>() as f64
        };
        let numeric = ((eval(eps) - eval(-eps)) / (2.0 * eps as f64)) as f32;
        let err = (numeric - analytic).abs();
        assert!(
            err <= 1e-2 * analytic.abs().max(numeric.abs()) + 2e-4,
            "{name}[{flat}]: analytic {analytic}, numeric {numeric}"
        );
        assert!(analytic.abs() > 1e-4, "{name}: gradient too small to be a meaningful check");
    }
}

#[test]
fn greedy_generation_with_cache_equals_without() {
    for ty in ["qwen2", "llama"] {
        let cfg = micro(ty, ty == "qwen2");
        let model = scaled_model(&cfg, 4, 0.3, &cpu());
        let greedy = SamplingConfig { max_new_tokens: 12, ..Default::default() };
        let a = generate(&model, &[5, 9, 2], &greedy).unwrap();
        let b = generate_uncached(&model, &[5, 9, 2], &greedy).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 12);
        // Seeded sampling is reproducible and matches between the two paths too.
        let s = SamplingConfig {
            max_new_tokens: 12,
            temperature: 0.9,
            top_p: 0.9,
            seed: 3,
            ..Default::default()
        };
        assert_eq!(
            generate(&model, &[5, 9, 2], &s).unwrap(),
            generate(&model, &[5, 9, 2], &s).unwrap()
        );
        assert_eq!(
            generate(&model, &[5, 9, 2], &s).unwrap(),
            generate_uncached(&model, &[5, 9, 2], &s).unwrap()
        );
    }
}

/// Writes the models of [`matches_numpy_reference`] to `$FLOCK_GOLDEN_DIR` for
/// `tests/reference/llama_ref.py` (run with `--ignored`).
#[test]
#[ignore]
fn dump_reference_models() {
    let dir = std::path::PathBuf::from(std::env::var("FLOCK_GOLDEN_DIR").unwrap());
    for (ty, tied) in [("llama", false), ("qwen2", true)] {
        let cfg = micro(ty, tied);
        let model = scaled_model(&cfg, 31, 0.3, &cpu());
        let d = dir.join(ty);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("config.json"), cfg.to_json()).unwrap();
        std::fs::write(d.join("model.safetensors"), model_to_safetensors(&model).unwrap()).unwrap();
        let l = logits(&model, &SEQ);
        println!("{ty} last-position logits[..8]: {:?}", &l[8 * 50..8 * 50 + 8]);
    }
}

/// Golden logits from `tests/reference/llama_ref.py`, an independent NumPy forward pass written
/// from transformers' Llama/Qwen2 code (rotate-half RoPE, repeat_kv, RMSNorm, SwiGLU), run on the
/// checkpoints [`dump_reference_models`] writes.
#[test]
fn matches_numpy_reference() {
    let golden: [(&str, bool, [f32; 8]); 2] = [
        (
            "llama",
            false,
            [-0.146754, -0.513127, -0.992143, 0.204379, -0.869803, 0.958147, 1.223818, -0.341772],
        ),
        (
            "qwen2",
            true,
            [-0.389597, -1.312865, -0.085542, 0.426734, -0.886612, 0.294377, 1.22539, 1.155952],
        ),
    ];
    for (ty, tied, want) in golden {
        let model = scaled_model(&micro(ty, tied), 31, 0.3, &cpu());
        let l = logits(&model, &SEQ);
        for (g, w) in l[8 * 50..8 * 50 + 8].iter().zip(want) {
            assert!((g - w).abs() < 2e-5, "{ty}: {g} vs {w}");
        }
    }
}

#[test]
fn loads_sharded_checkpoints_through_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let corpus: Vec<String> = (0..50).map(|i| format!("SELECT {i};")).collect();
    flock_ml::init_tiny_model(dir.path(), 2, &corpus).unwrap();
    let whole = ModelDir::new(dir.path()).load(&cpu()).unwrap();
    // Split the checkpoint in two shards plus an index, as HF does for large models.
    let tensors = whole.model.hf_tensors().unwrap();
    let (a, b) = tensors.split_at(tensors.len() / 2);
    let mut map = serde_json::Map::new();
    for (part, file) in
        [(a, "model-00001-of-00002.safetensors"), (b, "model-00002-of-00002.safetensors")]
    {
        std::fs::write(dir.path().join(file), serialize_f32(part, None).unwrap()).unwrap();
        for t in part {
            map.insert(t.0.clone(), file.into());
        }
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": map });
    std::fs::write(dir.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let sharded = ModelDir::new(dir.path()).load(&cpu()).unwrap();
    assert_eq!(logits(&whole.model, &SEQ[..5]), logits(&sharded.model, &SEQ[..5]));
    // A shard name escaping the directory is refused.
    let evil = serde_json::json!({ "weight_map": { "model.norm.weight": "../x.safetensors" } });
    std::fs::write(dir.path().join("model.safetensors.index.json"), evil.to_string()).unwrap();
    let err = ModelDir::new(dir.path()).load(&cpu()).unwrap_err();
    assert!(matches!(err, MlError::BadConfig(_)), "{err:?}");
}
