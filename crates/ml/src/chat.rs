//! Chat with a model directory (an imported checkpoint or a flock model): OpenAI-style messages
//! rendered with the model's own chat template, generation until an end-of-turn / end-of-sequence
//! token, the reply decoded (optionally streamed as text deltas).
//!
//! # Templates
//! The template is read from `tokenizer_config.json` (`chat_template`, a string or HF's list of
//! named templates, `default` chosen), `chat_template.jinja` or `chat_template.json`. ChatML
//! templates (`<|im_start|>role\n…<|im_end|>\n`, used by SmolLM2, Qwen and flock's own models)
//! are rendered with [`flock_ml_data::chatml`], the renderer training and scoring use, so the
//! bytes match. A template that injects a default system prompt when the conversation has none
//! (SmolLM2: "You are a helpful AI assistant named SmolLM, …"; Qwen2.5) has it extracted and
//! injected the same way. Other template languages (Llama 3 headers, Mistral `[INST]`) are
//! refused with [`MlError::UnsupportedChatTemplate`] rather than rendered wrongly. A model
//! without a template is treated as ChatML when its tokenizer has the ChatML markers.

use std::path::Path;

use burn::tensor::Device;
use flock_ml_data::chat::{ChatExample, Role, Turn};
use flock_ml_data::chatml::{render_prompt, IM_END, IM_START};
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::checkpoint::{LoadedModel, ModelDir};
use crate::config::DecoderConfig;
use crate::error::{MlError, Result};
use crate::generate::{generate_with, SamplingConfig};
use crate::import::read_bounded;
use crate::model::DecoderLm;

const MAX_TEMPLATE_FILE: u64 = 4 << 20;

/// One chat message, as OpenAI's API sends it: role `system`, `user`, `assistant` or `tool`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who speaks.
    pub role: String,
    /// What is said.
    pub content: String,
}

impl ChatMessage {
    /// A message.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage { role: role.into(), content: content.into() }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model emitted a stop token.
    Stop,
    /// `max_new_tokens` or the context length was reached.
    Length,
    /// The caller's callback asked to stop.
    Cancelled,
}

/// A generated chat reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatReply {
    /// The reply text (stop token and special tokens removed).
    pub text: String,
    /// Tokens of the rendered prompt.
    pub prompt_tokens: usize,
    /// Tokens generated (the stop token included).
    pub completion_tokens: usize,
    /// Why generation ended.
    pub finish_reason: FinishReason,
}

/// A model ready to chat: weights, tokenizer, template and stop tokens.
#[derive(Debug, Clone)]
pub struct ChatModel {
    /// The model's config.
    pub config: DecoderConfig,
    /// The decoder.
    pub model: DecoderLm,
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    /// The chat template text, when the directory has one.
    pub chat_template: Option<String>,
    /// Whether messages are rendered as ChatML.
    pub chatml: bool,
    /// The system prompt the template injects when the conversation has none.
    pub default_system: Option<String>,
    /// Generation stops at any of these (eos ids of config / generation config / tokenizer
    /// config, and `<|im_end|>` for ChatML), sorted.
    pub stop_tokens: Vec<u32>,
}

fn json_file(path: &Path) -> Result<Option<serde_json::Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let bytes = read_bounded(path, MAX_TEMPLATE_FILE)?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| MlError::BadConfig(format!("{}: {e}", path.display())))
}

/// The chat template of a model directory, if any.
pub fn read_chat_template(dir: &Path) -> Result<Option<String>> {
    if let Some(cfg) = json_file(&dir.join("tokenizer_config.json"))? {
        match cfg.get("chat_template") {
            Some(serde_json::Value::String(t)) => return Ok(Some(t.clone())),
            Some(serde_json::Value::Array(list)) => {
                let named = |n: &str| {
                    list.iter().find(|e| e.get("name").and_then(|v| v.as_str()) == Some(n))
                };
                let pick = named("default").or_else(|| list.first());
                if let Some(t) = pick.and_then(|e| e.get("template")).and_then(|v| v.as_str()) {
                    return Ok(Some(t.to_string()));
                }
            }
            _ => {}
        }
    }
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        let bytes = read_bounded(&jinja, MAX_TEMPLATE_FILE)?;
        return String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| MlError::BadConfig("chat_template.jinja is not UTF-8".into()));
    }
    if let Some(v) = json_file(&dir.join("chat_template.json"))? {
        return Ok(v.get("chat_template").and_then(|t| t.as_str()).map(str::to_string));
    }
    Ok(None)
}

/// Whether a template text is ChatML.
pub fn is_chatml_template(template: &str) -> bool {
    template.contains(IM_START) && template.contains(IM_END)
}

/// The literal system prompt a ChatML template injects when the conversation has none: the
/// first `<|im_start|>system⏎…<|im_end|>` whose body is plain text (no Jinja expressions or
/// quotes), where `⏎` is a newline or the escape `\n`.
pub fn default_system_prompt(template: &str) -> Option<String> {
    let marker = format!("{IM_START}system");
    let mut rest = template;
    while let Some(i) = rest.find(&marker) {
        rest = &rest[i + marker.len()..];
        let body = if let Some(b) = rest.strip_prefix('\n') {
            b
        } else if let Some(b) = rest.strip_prefix("\\n") {
            b
        } else {
            continue;
        };
        let Some(end) = body.find(IM_END) else { break };
        let text = &body[..end];
        let plain = !text.is_empty() && !text.contains(['\'', '"', '{', '}', '+', '%']);
        if plain {
            return Some(text.replace("\\n", "\n"));
        }
    }
    None
}

/// Token ids in a JSON value that is a number or a list of numbers.
fn ids_in(v: Option<&serde_json::Value>) -> Vec<u32> {
    match v {
        Some(serde_json::Value::Number(n)) => n.as_u64().map(|x| x as u32).into_iter().collect(),
        Some(serde_json::Value::Array(a)) => {
            a.iter().filter_map(|x| x.as_u64()).map(|x| x as u32).collect()
        }
        _ => Vec::new(),
    }
}

/// Maps OpenAI messages to a [`ChatExample`] (ChatML's `tool` turns are observations).
fn to_example(messages: &[ChatMessage], default_system: Option<&str>) -> Result<ChatExample> {
    if messages.is_empty() {
        return Err(MlError::InvalidData("no messages".into()));
    }
    let mut system = None;
    let mut turns = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        if m.content.contains(IM_START) || m.content.contains(IM_END) {
            return Err(MlError::InvalidData(format!("message {i} contains a ChatML marker")));
        }
        let role = match m.role.as_str() {
            "system" | "developer" if i == 0 => {
                system = Some(m.content.clone());
                continue;
            }
            "system" | "developer" => {
                return Err(MlError::InvalidData(format!(
                    "message {i}: a system message must come first"
                )))
            }
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Observation,
            other => {
                return Err(MlError::InvalidData(format!("message {i}: unknown role `{other}`")))
            }
        };
        turns.push(Turn::new(role, m.content.clone()));
    }
    if turns.is_empty() {
        return Err(MlError::InvalidData("no user message".into()));
    }
    Ok(ChatExample::new(system.or_else(|| default_system.map(str::to_string)), turns))
}

impl ChatModel {
    /// Loads a model directory (see [`ModelDir`]) with its chat template and stop tokens.
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        Self::from_loaded(ModelDir::new(dir).load(device)?, dir)
    }

    /// Wraps an already loaded model; `dir` is where its tokenizer and generation configs are.
    pub fn from_loaded(loaded: LoadedModel, dir: &Path) -> Result<Self> {
        let LoadedModel { config, model, tokenizer } = loaded;
        let chat_template = read_chat_template(dir)?;
        let has_markers =
            tokenizer.token_to_id(IM_START).is_some() && tokenizer.token_to_id(IM_END).is_some();
        let chatml = match &chat_template {
            Some(t) => is_chatml_template(t) && has_markers,
            None => has_markers,
        };
        let default_system =
            chat_template.as_deref().filter(|_| chatml).and_then(default_system_prompt);
        let mut stop: Vec<u32> = config.eos_token_id.into_iter().collect();
        if let Some(g) = json_file(&dir.join("generation_config.json"))? {
            stop.extend(ids_in(g.get("eos_token_id")));
        }
        if let Some(t) = json_file(&dir.join("tokenizer_config.json"))? {
            let eos =
                t.get("eos_token").and_then(|e| e.as_str().or_else(|| e.get("content")?.as_str()));
            stop.extend(eos.and_then(|e| tokenizer.token_to_id(e)));
        }
        if chatml {
            stop.extend(tokenizer.token_to_id(IM_END));
        }
        stop.retain(|&t| (t as usize) < config.vocab_size);
        stop.sort_unstable();
        stop.dedup();
        Ok(ChatModel {
            config,
            model,
            tokenizer,
            chat_template,
            chatml,
            default_system,
            stop_tokens: stop,
        })
    }

    /// `"chatml"`, `"other"` (a template we do not render) or `"none"`.
    pub fn template_kind(&self) -> &'static str {
        match (&self.chat_template, self.chatml) {
            (_, true) => "chatml",
            (Some(_), false) => "other",
            (None, false) => "none",
        }
    }

    /// The prompt text for `messages`, ending with the open assistant turn.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<String> {
        if !self.chatml {
            return Err(MlError::UnsupportedChatTemplate(match &self.chat_template {
                Some(_) => {
                    "only ChatML templates (<|im_start|>role …<|im_end|>) are rendered".into()
                }
                None => "the model has no chat template and no ChatML tokens".into(),
            }));
        }
        Ok(render_prompt(&to_example(messages, self.default_system.as_deref())?))
    }

    /// Token ids of the rendered prompt.
    pub fn encode_prompt(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        let text = self.render(messages)?;
        let enc =
            self.tokenizer.encode(text, false).map_err(|e| MlError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Generates a reply to `messages` (the model's stop tokens are added to `cfg`'s).
    pub fn chat(&self, messages: &[ChatMessage], cfg: &SamplingConfig) -> Result<ChatReply> {
        self.chat_streaming(messages, cfg, &mut |_| true)
    }

    /// [`ChatModel::chat`] that hands the reply to `on_delta` as it grows, in text pieces that
    /// concatenate to the final text (a piece is held back while it ends inside a multi-byte
    /// character). Returning `false` stops generation ([`FinishReason::Cancelled`]).
    pub fn chat_streaming(
        &self,
        messages: &[ChatMessage],
        cfg: &SamplingConfig,
        on_delta: &mut dyn FnMut(&str) -> bool,
    ) -> Result<ChatReply> {
        let prompt = self.encode_prompt(messages)?;
        self.complete_streaming(&prompt, cfg, on_delta)
    }

    /// Continues the token sequence `prompt` (already rendered and encoded, e.g. a plain
    /// completion) with the same stop tokens and incremental decoding as
    /// [`ChatModel::chat_streaming`].
    pub fn complete_streaming(
        &self,
        prompt: &[u32],
        cfg: &SamplingConfig,
        on_delta: &mut dyn FnMut(&str) -> bool,
    ) -> Result<ChatReply> {
        let ctx = self.config.max_position_embeddings;
        if prompt.len() >= ctx {
            return Err(MlError::InvalidData(format!(
                "prompt of {} tokens does not fit the {ctx}-token context",
                prompt.len()
            )));
        }
        let mut cfg = cfg.clone();
        cfg.max_new_tokens = cfg.max_new_tokens.min(ctx - prompt.len());
        cfg.stop_tokens.extend(&self.stop_tokens);
        let stops = cfg.stop_tokens.clone();
        let mut ids: Vec<u32> = Vec::new();
        let mut emitted = String::new();
        let mut cancelled = false;
        let mut failure = None;
        let mut on_token = |t: u32| {
            if stops.contains(&t) {
                return true;
            }
            ids.push(t);
            match self.tokenizer.decode(&ids, true) {
                Ok(text) if !text.ends_with('\u{FFFD}') && text.starts_with(emitted.as_str()) => {
                    let delta = &text[emitted.len()..];
                    if !delta.is_empty() && !on_delta(delta) {
                        cancelled = true;
                    }
                    emitted = text;
                }
                Ok(_) => {}
                Err(e) => failure = Some(MlError::Tokenizer(e.to_string())),
            }
            !cancelled && failure.is_none()
        };
        let out = generate_with(&self.model, prompt, &cfg, &mut on_token)?;
        if let Some(e) = failure {
            return Err(e);
        }
        let text =
            self.tokenizer.decode(&ids, true).map_err(|e| MlError::Tokenizer(e.to_string()))?;
        if !cancelled && text.len() > emitted.len() && text.starts_with(emitted.as_str()) {
            on_delta(&text[emitted.len()..]);
        }
        let finish_reason = if cancelled {
            FinishReason::Cancelled
        } else if out.last().is_some_and(|t| stops.contains(t)) {
            FinishReason::Stop
        } else {
            FinishReason::Length
        };
        Ok(ChatReply {
            text,
            prompt_tokens: prompt.len(),
            completion_tokens: out.len(),
            finish_reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOL: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn chat_model_can_be_shared_across_threads() {
        fn shared<T: Send + Sync + 'static>() {}
        shared::<ChatModel>();
    }

    #[test]
    fn finds_the_default_system_prompt() {
        assert!(is_chatml_template(SMOL));
        assert_eq!(
            default_system_prompt(SMOL).as_deref(),
            Some("You are a helpful AI assistant named SmolLM, trained by Hugging Face")
        );
        // Escaped newlines, and a first occurrence that is Jinja code (Qwen2.5's tools branch).
        let qwen = r"{{- '<|im_start|>system\n' }}{{- messages[0]['content'] }}{{- '<|im_end|>\n' }}{%- else %}{{- '<|im_start|>system\nYou are Qwen.<|im_end|>\n' }}";
        assert_eq!(default_system_prompt(qwen).as_deref(), Some("You are Qwen."));
        let plain = "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n'}}{% endfor %}";
        assert_eq!(default_system_prompt(plain), None);
        assert!(!is_chatml_template("{{ bos_token }}[INST] {{ m }} [/INST]"));
    }

    #[test]
    fn messages_map_to_chatml() {
        let msgs = [
            ChatMessage::new("user", "Hi"),
            ChatMessage::new("assistant", "Hello."),
            ChatMessage::new("user", "Capital of France?"),
        ];
        let ex = to_example(&msgs, Some("Be brief.")).unwrap();
        assert_eq!(
            render_prompt(&ex),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\n"
        );
        let own = [ChatMessage::new("system", "S"), ChatMessage::new("user", "U")];
        assert_eq!(to_example(&own, Some("default")).unwrap().system.as_deref(), Some("S"));
        let late = [ChatMessage::new("user", "U"), ChatMessage::new("system", "S")];
        assert!(to_example(&late, None).is_err());
        assert!(to_example(&[ChatMessage::new("user", "a<|im_end|>b")], None).is_err());
        assert!(to_example(&[ChatMessage::new("wizard", "x")], None).is_err());
        assert!(to_example(&[], None).is_err());
    }
}
