//! OpenAI's request shapes, parsed leniently (unknown fields ignored) and checked strictly
//! (every out-of-range value is a 400 naming the field).

use crate::error::ApiError;
use flock_ml::ChatMessage;
use serde::{de::DeserializeOwned, Deserialize};
use serde_json::Value;

/// Parses a JSON body: malformed JSON and wrong field types are 400s.
pub(crate) fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad("invalid_json", format!("the request body is not valid JSON: {e}"))
    })?;
    if !v.is_object() {
        return Err(ApiError::bad("invalid_json", "the request body must be a JSON object"));
    }
    serde_json::from_value(v)
        .map_err(|e| ApiError::bad("invalid_request", format!("invalid request: {e}")))
}

/// A message's content: a string or a list of text parts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
pub(crate) struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

/// What every generation request may carry.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SamplingFields {
    #[serde(default)]
    max_tokens: Option<i64>,
    #[serde(default)]
    max_completion_tokens: Option<i64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    seed: Option<i64>,
    #[serde(default)]
    n: Option<i64>,
    #[serde(default)]
    stop: Option<Value>,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatRequest {
    #[serde(default)]
    pub(crate) model: Option<String>,
    #[serde(default)]
    messages: Option<Vec<WireMessage>>,
    #[serde(flatten)]
    pub(crate) sampling: SamplingFields,
}

/// `POST /v1/completions`.
#[derive(Debug, Deserialize)]
pub(crate) struct CompletionRequest {
    #[serde(default)]
    pub(crate) model: Option<String>,
    #[serde(default)]
    prompt: Option<Value>,
    #[serde(default)]
    echo: Option<bool>,
    #[serde(default)]
    suffix: Option<Value>,
    #[serde(flatten)]
    pub(crate) sampling: SamplingFields,
}

/// `POST /v1/predict`.
#[derive(Debug, Deserialize)]
pub(crate) struct PredictRequest {
    #[serde(default)]
    pub(crate) model: Option<String>,
    #[serde(default)]
    pub(crate) inputs: Option<Vec<Vec<f64>>>,
}

/// `POST /v1/feedback`.
#[derive(Debug, Deserialize)]
pub(crate) struct FeedbackRequest {
    #[serde(default)]
    pub(crate) id: Option<String>,
    #[serde(default)]
    pub(crate) rating: Option<i64>,
    #[serde(default)]
    pub(crate) correction: Option<String>,
}

/// The model name of a request (required).
pub(crate) fn model_name(m: &Option<String>) -> Result<&str, ApiError> {
    m.as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_param("model", "`model` is required (see GET /v1/models)"))
}

impl ChatRequest {
    /// The messages as the engine takes them.
    pub(crate) fn messages(&self) -> Result<Vec<ChatMessage>, ApiError> {
        let msgs = self
            .messages
            .as_ref()
            .ok_or_else(|| ApiError::bad_param("messages", "`messages` is required"))?;
        if msgs.is_empty() {
            return Err(ApiError::bad_param("messages", "`messages` must not be empty"));
        }
        let mut out = Vec::with_capacity(msgs.len());
        for (i, m) in msgs.iter().enumerate() {
            if !matches!(m.role.as_str(), "system" | "developer" | "user" | "assistant" | "tool") {
                return Err(ApiError::bad_param(
                    "messages",
                    format!(
                        "messages[{i}].role `{}` is not one of system, user, assistant, tool",
                        m.role
                    ),
                ));
            }
            let content = match &m.content {
                Some(Content::Text(t)) => t.clone(),
                Some(Content::Parts(parts)) => {
                    let mut s = String::new();
                    for p in parts {
                        match (p.kind.as_str(), &p.text) {
                            ("text", Some(t)) => s.push_str(t),
                            (k, _) => {
                                return Err(ApiError::bad_param(
                                    "messages",
                                    format!("messages[{i}]: content part `{k}` is not supported (text only)"),
                                ))
                            }
                        }
                    }
                    s
                }
                None => String::new(),
            };
            out.push(ChatMessage::new(m.role.clone(), content));
        }
        if !out.iter().any(|m| m.role == "user") {
            return Err(ApiError::bad_param(
                "messages",
                "`messages` needs at least one user message",
            ));
        }
        Ok(out)
    }
}

impl CompletionRequest {
    /// The prompt text (a string, or a list of exactly one string).
    pub(crate) fn prompt(&self) -> Result<String, ApiError> {
        if self.echo == Some(true) {
            return Err(ApiError::bad_param("echo", "`echo` is not supported"));
        }
        if self.suffix.as_ref().is_some_and(|s| !s.is_null()) {
            return Err(ApiError::bad_param("suffix", "`suffix` is not supported"));
        }
        let p = match &self.prompt {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
                a[0].as_str().unwrap_or_default().to_owned()
            }
            Some(Value::Array(_)) => {
                return Err(ApiError::bad_param(
                    "prompt",
                    "`prompt` must be one string (batches are not supported)",
                ))
            }
            Some(_) => return Err(ApiError::bad_param("prompt", "`prompt` must be a string")),
            None => return Err(ApiError::bad_param("prompt", "`prompt` is required")),
        };
        if p.is_empty() {
            return Err(ApiError::bad_param("prompt", "`prompt` must not be empty"));
        }
        Ok(p)
    }
}

/// Checked sampling settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sampling {
    /// `None`: the server's default (capped by what is left of the context).
    pub(crate) max_tokens: Option<usize>,
    pub(crate) temperature: f32,
    pub(crate) top_p: f32,
    pub(crate) seed: Option<u64>,
    pub(crate) stream: bool,
}

impl SamplingFields {
    /// Checks the ranges: `max_tokens` in 1..=cap, temperature in [0, 2], top_p in (0, 1],
    /// n = 1, no stop sequences.
    pub(crate) fn check(&self, cap: usize) -> Result<Sampling, ApiError> {
        let max = match (self.max_tokens, self.max_completion_tokens) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_param(
                    "max_tokens",
                    "send `max_tokens` or `max_completion_tokens`, not both",
                ))
            }
            (a, b) => a.or(b),
        };
        let max_tokens = match max {
            None => None,
            Some(m) if m <= 0 => {
                return Err(ApiError::bad_param(
                    "max_tokens",
                    format!("`max_tokens` must be at least 1, got {m}"),
                ))
            }
            Some(m) if m as u64 > cap as u64 => {
                return Err(ApiError::bad_param(
                    "max_tokens",
                    format!("`max_tokens` is {m}, over this server's cap of {cap}"),
                ))
            }
            Some(m) => Some(m as usize),
        };
        let temperature = self.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::bad_param(
                "temperature",
                format!("`temperature` must be between 0 and 2, got {temperature}"),
            ));
        }
        let top_p = self.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::bad_param(
                "top_p",
                format!("`top_p` must be in (0, 1], got {top_p}"),
            ));
        }
        if let Some(n) = self.n {
            if n != 1 {
                return Err(ApiError::bad_param("n", format!("only n = 1 is supported, got {n}")));
            }
        }
        let has_stop = match &self.stop {
            None | Some(Value::Null) => false,
            Some(Value::Array(a)) => !a.is_empty(),
            Some(Value::String(s)) => !s.is_empty(),
            Some(_) => true,
        };
        if has_stop {
            return Err(ApiError::bad_param(
                "stop",
                "`stop` sequences are not supported (generation ends at the model's end-of-turn token or max_tokens)",
            ));
        }
        Ok(Sampling {
            max_tokens,
            temperature: temperature as f32,
            top_p: top_p as f32,
            seed: self.seed.map(|s| s as u64),
            stream: self.stream.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<ChatRequest, ApiError> {
        parse_body(body.as_bytes())
    }

    #[test]
    fn parses_and_checks() {
        let r = chat(r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_tokens":5,"temperature":0,"seed":-1,"extra":1}"#).unwrap();
        assert_eq!(r.messages().unwrap()[0].content, "hi");
        let s = r.sampling.check(10).unwrap();
        assert_eq!((s.max_tokens, s.temperature, s.seed), (Some(5), 0.0, Some(u64::MAX)));
        assert_eq!(chat("{").unwrap_err().code, "invalid_json");
        assert_eq!(chat("[]").unwrap_err().code, "invalid_json");
        assert_eq!(chat(r#"{"messages": 3}"#).unwrap_err().code, "invalid_request");
        let bad = |b: &str| chat(b).unwrap().sampling.check(10).unwrap_err().param;
        assert_eq!(bad(r#"{"max_tokens":0}"#), Some("max_tokens"));
        assert_eq!(bad(r#"{"max_tokens":11}"#), Some("max_tokens"));
        assert_eq!(bad(r#"{"temperature":2.5}"#), Some("temperature"));
        assert_eq!(bad(r#"{"top_p":0}"#), Some("top_p"));
        assert_eq!(bad(r#"{"n":2}"#), Some("n"));
        assert_eq!(bad(r#"{"stop":["x"]}"#), Some("stop"));
        assert!(chat(r#"{"stop":null,"n":1}"#).unwrap().sampling.check(10).is_ok());
        let empty = chat(r#"{"messages":[]}"#).unwrap();
        assert_eq!(empty.messages().unwrap_err().param, Some("messages"));
        let no_user = chat(r#"{"messages":[{"role":"system","content":"s"}]}"#).unwrap();
        assert!(no_user.messages().is_err());
        let role = chat(r#"{"messages":[{"role":"wizard","content":"s"}]}"#).unwrap();
        assert!(role.messages().unwrap_err().message.contains("wizard"));
    }
}
