//! `/v1/chat/completions` and `/v1/completions`, plain and streamed (SSE).
//!
//! ```text
//! admit (401, 429, 413) ─► parse (400) ─► model (404) ─► count prompt tokens, check
//! max_tokens against the context (400) ─► reserve worst-case cost (402) ─► queue (503)
//! ─► generate on a blocking thread ─► journal the usage (fsync) ─► answer
//! ```
//! Streaming sends `data: {chat.completion.chunk}` events as text arrives, then a last chunk
//! with `finish_reason`, `usage` and `flock`, then `data: [DONE]`; the usage is journaled
//! before that last chunk. A client that goes away stops generation; what was generated is
//! still metered.

use crate::{
    auth::Caller,
    error::ApiError,
    feedback::Completion,
    handlers::{
        admit, flock_field, meter_usage, model_for, new_id, reserve, with_provenance, worker,
        Reservation, S,
    },
    models::{Engine, Served},
    openai::{model_name, parse_body, ChatRequest, CompletionRequest, Sampling},
    service::Shared,
};
use axum::{
    body::Body,
    extract::State,
    http::HeaderMap,
    response::{sse::Event, IntoResponse, Response, Sse},
    Json,
};
use flock_ledger::market::{Listing, ModelKind, UsageEntry};
use flock_ml::{ChatMessage, ChatModel, ChatReply, FinishReason, MlError, SamplingConfig};
use serde_json::{json, Value};
use std::{convert::Infallible, sync::Arc};
use tokio::sync::mpsc;

/// Which endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Chat,
    Text,
}

/// What to generate from.
enum Input {
    Messages(Vec<ChatMessage>),
    Prompt(Vec<u32>),
}

/// Everything a checked request needs to run.
struct Job {
    api: Api,
    caller: Caller,
    served: Arc<Served>,
    listing: Listing,
    model: Arc<ChatModel>,
    input: Input,
    /// For the completion log.
    messages: Vec<ChatMessage>,
    sampling: SamplingConfig,
    stream: bool,
    id: String,
    created: u64,
}

fn finish_str(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Length => "length",
        FinishReason::Stop | FinishReason::Cancelled => "stop",
    }
}

fn mlerr(e: MlError) -> ApiError {
    match e {
        MlError::InvalidData(m) => ApiError::bad_param("messages", m),
        MlError::UnsupportedChatTemplate(m) => ApiError::bad(
            "unsupported_chat_template",
            format!("this model's chat template cannot be rendered ({m}); use /v1/completions"),
        ),
        other => ApiError::internal(other),
    }
}

/// Sampling settings from the checked request and the room left in the context.
fn plan(
    s: &Shared,
    served: &Served,
    prompt: usize,
    p: &Sampling,
) -> Result<SamplingConfig, ApiError> {
    let ctx = served.context_length;
    if prompt >= ctx {
        return Err(ApiError {
            param: Some("messages"),
            ..ApiError::bad(
                "context_length_exceeded",
                format!(
                    "this model's maximum context length is {ctx} tokens; the prompt has {prompt}"
                ),
            )
        });
    }
    let max = match p.max_tokens {
        Some(m) if prompt + m > ctx => {
            return Err(ApiError {
                param: Some("max_tokens"),
                ..ApiError::bad(
                    "context_length_exceeded",
                    format!(
                        "this model's maximum context length is {ctx} tokens, but {} were requested ({prompt} in the prompt, {m} for the completion); lower max_tokens or shorten the prompt",
                        prompt + m
                    ),
                )
            })
        }
        Some(m) => m,
        None => s.cfg.default_max_tokens.min(s.cfg.max_tokens_cap).min(ctx - prompt),
    };
    let seed = p.seed.unwrap_or_else(|| {
        let mut b = [0u8; 8];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
        u64::from_le_bytes(b)
    });
    Ok(SamplingConfig {
        max_new_tokens: max,
        temperature: p.temperature,
        top_p: p.top_p,
        seed,
        stop_tokens: Vec::new(),
    })
}

/// `POST /v1/chat/completions`.
pub(crate) async fn chat(State(s): S, headers: HeaderMap, body: Body) -> Response {
    run(s, headers, body, Api::Chat).await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /v1/completions`.
pub(crate) async fn completions(State(s): S, headers: HeaderMap, body: Body) -> Response {
    run(s, headers, body, Api::Text).await.unwrap_or_else(IntoResponse::into_response)
}

async fn run(
    s: Arc<Shared>,
    headers: HeaderMap,
    body: Body,
    api: Api,
) -> Result<Response, ApiError> {
    let (caller, bytes) = admit(&s, &headers, body).await?;
    let (name, fields, input_req) = match api {
        Api::Chat => {
            let r: ChatRequest = parse_body(&bytes)?;
            let msgs = r.messages()?;
            (model_name(&r.model)?.to_owned(), r.sampling, Ok(msgs))
        }
        Api::Text => {
            let r: CompletionRequest = parse_body(&bytes)?;
            let prompt = r.prompt()?;
            (model_name(&r.model)?.to_owned(), r.sampling, Err(prompt))
        }
    };
    let sampling = fields.check(s.cfg.max_tokens_cap)?;
    let (served, listing) = model_for(&s, &name, ModelKind::Language)?;
    let Engine::Language(model) = &served.engine else {
        return Err(ApiError::internal("language listing without a language model"));
    };
    let model = model.clone();
    let (input, messages, prompt_tokens) = match input_req {
        Ok(msgs) => {
            let n = model.encode_prompt(&msgs).map_err(mlerr)?.len();
            (Input::Messages(msgs.clone()), msgs, n)
        }
        Err(text) => {
            let enc = model
                .tokenizer
                .encode(text.as_str(), true)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            let ids = enc.get_ids().to_vec();
            if ids.is_empty() {
                return Err(ApiError::bad_param("prompt", "`prompt` encodes to no tokens"));
            }
            let n = ids.len();
            (Input::Prompt(ids), vec![ChatMessage::new("user", text)], n)
        }
    };
    let cfg = plan(&s, &served, prompt_tokens, &sampling)?;
    let worst = UsageEntry {
        key_hash: caller.key_hash,
        prompt_tokens: prompt_tokens as u64,
        completion_tokens: cfg.max_new_tokens as u64,
        calls: 1,
    };
    let what =
        format!("{prompt_tokens} prompt tokens + up to {} completion tokens", cfg.max_new_tokens);
    let reservation = reserve(&s, &caller, &listing.price, &worst, &what)?;
    let permits = worker(&s).await?;
    let prefix = if api == Api::Chat { "chatcmpl-" } else { "cmpl-" };
    let job = Job {
        api,
        caller,
        served,
        listing,
        model,
        input,
        messages,
        sampling: cfg,
        stream: sampling.stream,
        id: new_id(prefix),
        created: crate::handlers::now_ms() / 1000,
    };
    if job.stream {
        Ok(stream(s, job, reservation, permits))
    } else {
        once(s, job, reservation, permits).await
    }
}

type Permits = (tokio::sync::OwnedSemaphorePermit, tokio::sync::OwnedSemaphorePermit);

/// Runs generation, handing text pieces to `on_delta` (return `false` to stop).
fn generate(
    model: &ChatModel,
    input: &Input,
    cfg: &SamplingConfig,
    on_delta: &mut dyn FnMut(&str) -> bool,
) -> Result<ChatReply, MlError> {
    match input {
        Input::Messages(m) => model.chat_streaming(m, cfg, on_delta),
        Input::Prompt(ids) => model.complete_streaming(ids, cfg, on_delta),
    }
}

fn usage_json(r: &ChatReply) -> Value {
    json!({
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens,
        "total_tokens": r.prompt_tokens + r.completion_tokens,
    })
}

/// Journals the usage and remembers the completion for feedback; the cost.
async fn finish(
    s: &Shared,
    job: &Job,
    reply: &ChatReply,
) -> Result<flock_primitives::Amount, ApiError> {
    let usage = UsageEntry {
        key_hash: job.caller.key_hash,
        prompt_tokens: reply.prompt_tokens as u64,
        completion_tokens: reply.completion_tokens as u64,
        calls: 1,
    };
    let cost = meter_usage(s, &job.caller, &job.listing, usage, &job.id).await?;
    let c = Completion {
        listing: job.listing.name.clone(),
        key_hash: job.caller.key_hash,
        owner: job.caller.owner,
        messages: job.messages.clone(),
        answer: reply.text.clone(),
    };
    s.completions
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(job.id.clone(), c);
    Ok(cost)
}

async fn once(
    s: Arc<Shared>,
    job: Job,
    reservation: Reservation,
    permits: Permits,
) -> Result<Response, ApiError> {
    let (model, input, cfg) = (job.model.clone(), job.input_clone(), job.sampling.clone());
    let reply = tokio::task::spawn_blocking(move || {
        let _permits = permits;
        generate(&model, &input, &cfg, &mut |_| true)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(mlerr)?;
    let cost = finish(&s, &job, &reply).await?;
    drop(reservation);
    let (object, choice) = match job.api {
        Api::Chat => (
            "chat.completion",
            json!({
                "index": 0,
                "message": { "role": "assistant", "content": reply.text },
                "logprobs": null,
                "finish_reason": finish_str(reply.finish_reason),
            }),
        ),
        Api::Text => (
            "text_completion",
            json!({
                "index": 0,
                "text": reply.text,
                "logprobs": null,
                "finish_reason": finish_str(reply.finish_reason),
            }),
        ),
    };
    let body = json!({
        "id": job.id,
        "object": object,
        "created": job.created,
        "model": job.listing.name,
        "system_fingerprint": job.served.provenance_id,
        "choices": [choice],
        "usage": usage_json(&reply),
        "flock": flock_field(&job.served, cost),
    });
    Ok(with_provenance(Json(body).into_response(), &job.served))
}

impl Job {
    fn input_clone(&self) -> Input {
        match &self.input {
            Input::Messages(m) => Input::Messages(m.clone()),
            Input::Prompt(p) => Input::Prompt(p.clone()),
        }
    }

    /// A stream chunk with `delta` (chat) or `text` (completions).
    fn chunk(&self, text: Option<&str>, role: bool, finish: Option<&str>) -> Value {
        let choice = match self.api {
            Api::Chat => {
                let mut delta = json!({});
                if role {
                    delta["role"] = json!("assistant");
                }
                if let Some(t) = text {
                    delta["content"] = json!(t);
                }
                json!({ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish })
            }
            Api::Text => {
                json!({ "index": 0, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": finish })
            }
        };
        json!({
            "id": self.id,
            "object": if self.api == Api::Chat { "chat.completion.chunk" } else { "text_completion" },
            "created": self.created,
            "model": self.listing.name,
            "system_fingerprint": self.served.provenance_id,
            "choices": [choice],
        })
    }
}

fn event(v: &Value) -> Event {
    Event::default().data(v.to_string())
}

fn stream(s: Arc<Shared>, job: Job, reservation: Reservation, permits: Permits) -> Response {
    let (tx, rx) = mpsc::channel::<Event>(64);
    let served = job.served.clone();
    tokio::spawn(async move {
        let job = Arc::new(job);
        let (j2, tx2) = (job.clone(), tx.clone());
        let result = tokio::task::spawn_blocking(move || {
            let _permits = permits;
            if j2.api == Api::Chat
                && tx2.blocking_send(event(&j2.chunk(Some(""), true, None))).is_err()
            {
                return Ok(None);
            }
            let mut on_delta =
                |d: &str| tx2.blocking_send(event(&j2.chunk(Some(d), false, None))).is_ok();
            generate(&j2.model, &j2.input, &j2.sampling, &mut on_delta).map(Some)
        })
        .await;
        let reply = match result {
            Ok(Ok(Some(r))) => r,
            Ok(Ok(None)) => return, // the client left before anything was generated
            Ok(Err(e)) => {
                let _ = tx.send(event(&mlerr(e).body())).await;
                return;
            }
            Err(e) => {
                let _ = tx.send(event(&ApiError::internal(e).body())).await;
                return;
            }
        };
        match finish(&s, &job, &reply).await {
            Ok(cost) => {
                drop(reservation);
                let mut last = job.chunk(None, false, Some(finish_str(reply.finish_reason)));
                last["usage"] = usage_json(&reply);
                last["flock"] = flock_field(&job.served, cost);
                let _ = tx.send(event(&last)).await;
                let _ = tx.send(Event::default().data("[DONE]")).await;
            }
            Err(e) => {
                let _ = tx.send(event(&e.body())).await;
            }
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    with_provenance(Sse::new(body).into_response(), &served)
}
