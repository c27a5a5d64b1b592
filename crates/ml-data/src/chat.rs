//! FLock's JSONL chat format: one example per line,
//! `{"system"?: str, "tools"?: str, "conversations": [{"role": …, "content": …}, …]}`.
//!
//! # Validation rules
//! FLock's trainers feed this format to LLaMA-Factory's ShareGPT converter, which drops any
//! example whose roles do not alternate prompt side / response side. We reject instead of
//! dropping, naming the line, so a task creator learns about bad rows before staking:
//!
//! * `conversations` is non-empty and at most [`JsonlLimits::max_turns`] long;
//! * turns alternate: even positions are prompt-side (`user` or `observation`), odd positions
//!   response-side (`assistant` or `function_call`), starting with a prompt-side turn;
//! * the last turn is response-side, so every example has at least one target (a validator
//!   dividing by the target byte count never sees zero from a well-formed file);
//! * no text contains the ChatML markers `<|im_start|>` / `<|im_end|>`: a row smuggling them
//!   in could forge a turn boundary and move the loss mask.
//!
//! Unknown top-level keys are ignored (FLock files in the wild carry extras); unknown roles are
//! errors.

use std::io::{BufRead, Read, Write};

use serde::{Deserialize, Serialize};

use crate::error::{DataError, ExampleError};

/// Who speaks a turn. Serialized as FLock writes it: `user`, `assistant`, `function_call`,
/// `observation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The human's message.
    User,
    /// The model's reply (a training target).
    Assistant,
    /// The model's tool call (a training target; response side).
    FunctionCall,
    /// A tool's result fed back to the model (prompt side, not a target).
    Observation,
}

impl Role {
    /// The wire name (`"user"`, `"assistant"`, `"function_call"`, `"observation"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::FunctionCall => "function_call",
            Role::Observation => "observation",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "user" => Some(Role::User),
            "assistant" => Some(Role::Assistant),
            "function_call" => Some(Role::FunctionCall),
            "observation" => Some(Role::Observation),
            _ => None,
        }
    }

    /// True for the model's own turns (`assistant`, `function_call`): the ones trained and scored.
    pub fn is_response(self) -> bool {
        matches!(self, Role::Assistant | Role::FunctionCall)
    }
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    /// Who speaks.
    pub role: Role,
    /// What is said.
    pub content: String,
}

impl Turn {
    /// A turn with the given role and content.
    pub fn new(role: Role, content: impl Into<String>) -> Turn {
        Turn { role, content: content.into() }
    }
}

/// One training or validation example in FLock's format.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatExample {
    /// The system prompt, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Tool definitions as a JSON string (FLock's optional `tools` field), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<String>,
    /// The turns, in order.
    pub conversations: Vec<Turn>,
}

/// Markers reserved by the ChatML template.
pub const RESERVED_MARKERS: [&str; 2] = ["<|im_start|>", "<|im_end|>"];

impl ChatExample {
    /// An example with a system prompt and turns (no tools).
    pub fn new(system: Option<String>, conversations: Vec<Turn>) -> ChatExample {
        ChatExample { system, tools: None, conversations }
    }

    /// Checks the rules in the [module docs](self) with at most `max_turns` turns.
    pub fn validate(&self, max_turns: usize) -> Result<(), ExampleError> {
        let turns = &self.conversations;
        if turns.is_empty() {
            return Err(ExampleError::EmptyConversation);
        }
        if turns.len() > max_turns {
            return Err(ExampleError::TooManyTurns { turns: turns.len(), max: max_turns });
        }
        check_markers("system", self.system.as_deref())?;
        check_markers("tools", self.tools.as_deref())?;
        for (i, turn) in turns.iter().enumerate() {
            let want_response = i % 2 == 1;
            if turn.role.is_response() != want_response {
                let expected =
                    if want_response { "assistant/function_call" } else { "user/observation" };
                return Err(ExampleError::OutOfOrder {
                    turn: i,
                    role: turn.role.as_str(),
                    expected,
                });
            }
            check_markers(&format!("turn {i}"), Some(&turn.content))?;
        }
        let last = turns[turns.len() - 1].role;
        if !last.is_response() {
            return Err(ExampleError::NoFinalResponse { role: last.as_str() });
        }
        Ok(())
    }

    /// Splits off the last response turn: the prompt (every earlier turn, same system and tools)
    /// and the reference reply. `None` when the last turn is not a response.
    pub fn split_last_response(&self) -> Option<(ChatExample, &Turn)> {
        let (last, rest) = self.conversations.split_last()?;
        if !last.role.is_response() {
            return None;
        }
        let prompt = ChatExample {
            system: self.system.clone(),
            tools: self.tools.clone(),
            conversations: rest.to_vec(),
        };
        Some((prompt, last))
    }
}

fn check_markers(field: &str, text: Option<&str>) -> Result<(), ExampleError> {
    let Some(text) = text else { return Ok(()) };
    for marker in RESERVED_MARKERS {
        if text.contains(marker) {
            return Err(ExampleError::ReservedMarker { field: field.to_owned(), marker });
        }
    }
    Ok(())
}

/// Bounds on what [`load_jsonl`] accepts from an untrusted file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonlLimits {
    /// Longest line in bytes, without its line ending.
    pub max_line_bytes: usize,
    /// Most examples in the file.
    pub max_examples: usize,
    /// Most turns in one example.
    pub max_turns: usize,
}

impl Default for JsonlLimits {
    /// 1 MiB lines, 1,000,000 examples, 256 turns.
    fn default() -> Self {
        JsonlLimits { max_line_bytes: 1 << 20, max_examples: 1_000_000, max_turns: 256 }
    }
}

/// The wire shape, with `role` as free text so an unknown role gets its own error.
#[derive(Deserialize)]
struct RawExample {
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    tools: Option<String>,
    conversations: Vec<RawTurn>,
}

#[derive(Deserialize)]
struct RawTurn {
    role: String,
    content: String,
}

/// Parses one line (without its line ending) into a validated example.
pub fn parse_line(line: &[u8], limits: &JsonlLimits) -> Result<ChatExample, ExampleError> {
    if line.len() > limits.max_line_bytes {
        return Err(ExampleError::LineTooLong { len: line.len(), max: limits.max_line_bytes });
    }
    let text = std::str::from_utf8(line).map_err(|_| ExampleError::NotUtf8)?;
    let raw: RawExample =
        serde_json::from_str(text).map_err(|e| ExampleError::BadJson(e.to_string()))?;
    if raw.conversations.len() > limits.max_turns {
        return Err(ExampleError::TooManyTurns {
            turns: raw.conversations.len(),
            max: limits.max_turns,
        });
    }
    let mut conversations = Vec::with_capacity(raw.conversations.len());
    for (turn, t) in raw.conversations.into_iter().enumerate() {
        let role = Role::parse(&t.role).ok_or(ExampleError::UnknownRole { turn, role: t.role })?;
        conversations.push(Turn { role, content: t.content });
    }
    let example = ChatExample { system: raw.system, tools: raw.tools, conversations };
    example.validate(limits.max_turns)?;
    Ok(example)
}

/// Reads FLock JSONL: one example per line, blank lines skipped, a leading UTF-8 byte-order
/// mark ignored, `\n` or `\r\n` endings. Stops at the first bad line with its 1-based number.
///
/// Memory is bounded by `limits`: no line is buffered past `max_line_bytes + 2` bytes.
pub fn load_jsonl<R: Read>(reader: R, limits: &JsonlLimits) -> Result<Vec<ChatExample>, DataError> {
    let mut reader = std::io::BufReader::new(reader);
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    loop {
        buf.clear();
        let cap = limits.max_line_bytes as u64 + 2;
        let n = (&mut reader).take(cap).read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let complete = buf.last() == Some(&b'\n');
        if complete {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        if !complete && n as u64 == cap {
            let error = ExampleError::LineTooLong { len: n, max: limits.max_line_bytes };
            return Err(DataError::Jsonl { line: line_no, error });
        }
        let mut line = buf.as_slice();
        if line_no == 1 {
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if out.len() == limits.max_examples {
            return Err(DataError::TooManyRecords { max: limits.max_examples });
        }
        let example =
            parse_line(line, limits).map_err(|error| DataError::Jsonl { line: line_no, error })?;
        out.push(example);
    }
    Ok(out)
}

/// Writes examples as FLock JSONL (compact JSON, keys in the order `system`, `tools`,
/// `conversations`, one `\n`-terminated line each). The same examples always give the same
/// bytes. Every example is validated first (with [`JsonlLimits::default`]'s turn limit), so
/// what this writes [`load_jsonl`] reads back.
pub fn write_jsonl<W: Write>(mut writer: W, examples: &[ChatExample]) -> Result<(), DataError> {
    let max_turns = JsonlLimits::default().max_turns;
    for (index, example) in examples.iter().enumerate() {
        example.validate(max_turns).map_err(|error| DataError::InvalidExample { index, error })?;
        let line = serde_json::to_string(example).map_err(std::io::Error::other)?;
        writer.write_all(line.as_bytes())?;
        writer.write_all(b"\n")?;
    }
    writer.flush()?;
    Ok(())
}

/// [`write_jsonl`] into a byte vector.
pub fn to_jsonl_bytes(examples: &[ChatExample]) -> Result<Vec<u8>, DataError> {
    let mut out = Vec::new();
    write_jsonl(&mut out, examples)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(turns: &[(Role, &str)]) -> ChatExample {
        ChatExample::new(Some("sys".into()), turns.iter().map(|(r, c)| Turn::new(*r, *c)).collect())
    }

    fn load(text: &str) -> Result<Vec<ChatExample>, DataError> {
        load_jsonl(text.as_bytes(), &JsonlLimits::default())
    }

    fn line_error(text: &str) -> (usize, ExampleError) {
        match load(text) {
            Err(DataError::Jsonl { line, error }) => (line, error),
            other => panic!("expected a line error, got {other:?}"),
        }
    }

    #[test]
    fn roles_serialize_as_flock_writes_them() {
        let e = ex(&[
            (Role::User, "q"),
            (Role::FunctionCall, "{}"),
            (Role::Observation, "r"),
            (Role::Assistant, "a"),
        ]);
        let s = serde_json::to_string(&e).unwrap();
        assert_eq!(
            s,
            r#"{"system":"sys","conversations":[{"role":"user","content":"q"},{"role":"function_call","content":"{}"},{"role":"observation","content":"r"},{"role":"assistant","content":"a"}]}"#
        );
    }

    #[test]
    fn loads_flock_lines_and_round_trips() {
        let text = "\u{feff}{\"system\": \"s\", \"conversations\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}\r\n\n   \n{\"conversations\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"function_call\", \"content\": \"{\\\"name\\\": \\\"f\\\"}\"}], \"tools\": \"[]\", \"extra\": 1}\n";
        let got = load(text).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].system.as_deref(), Some("s"));
        assert_eq!(got[0].conversations[1], Turn::new(Role::Assistant, "yo"));
        assert_eq!(got[1].tools.as_deref(), Some("[]"));
        assert_eq!(got[1].conversations[1].role, Role::FunctionCall);
        let bytes = to_jsonl_bytes(&got).unwrap();
        assert_eq!(load_jsonl(&bytes[..], &JsonlLimits::default()).unwrap(), got);
        assert_eq!(to_jsonl_bytes(&got).unwrap(), bytes);
    }

    #[test]
    fn errors_name_the_line_and_problem() {
        let good = r#"{"conversations":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]}"#;
        let (line, e) = line_error(&format!("{good}\n{{not json\n"));
        assert_eq!(line, 2);
        assert!(matches!(e, ExampleError::BadJson(_)));

        let (line, e) = line_error(&format!(
            "{good}\n\n{}\n",
            r#"{"conversations":[{"role":"human","content":"q"}]}"#
        ));
        assert_eq!(line, 3);
        assert_eq!(e, ExampleError::UnknownRole { turn: 0, role: "human".into() });

        let (_, e) = line_error(r#"{"conversations":[]}"#);
        assert_eq!(e, ExampleError::EmptyConversation);

        let (_, e) = line_error(r#"{"conversations":[{"role":"user","content":"q"}]}"#);
        assert_eq!(e, ExampleError::NoFinalResponse { role: "user" });

        let (_, e) = line_error(r#"{"conversations":[{"role":"assistant","content":"a"}]}"#);
        assert!(matches!(e, ExampleError::OutOfOrder { turn: 0, .. }));

        let (_, e) = line_error(
            r#"{"conversations":[{"role":"user","content":"q"},{"role":"user","content":"q"}]}"#,
        );
        assert!(matches!(e, ExampleError::OutOfOrder { turn: 1, .. }));

        let (_, e) = line_error(
            r#"{"conversations":[{"role":"user","content":"<|im_end|>"},{"role":"assistant","content":"a"}]}"#,
        );
        assert!(matches!(e, ExampleError::ReservedMarker { .. }));

        let (_, e) = line_error(r#"{"system":"s"}"#);
        assert!(matches!(e, ExampleError::BadJson(_)));

        let (_, e) = line_error(r#"{"conversations":[{"role":"user","content":5}]}"#);
        assert!(matches!(e, ExampleError::BadJson(_)));

        let bytes = b"{\"conversations\":\xff}\n";
        match load_jsonl(&bytes[..], &JsonlLimits::default()) {
            Err(DataError::Jsonl { line: 1, error: ExampleError::NotUtf8 }) => {}
            other => panic!("{other:?}"),
        }
        let msg = load("x\n").unwrap_err().to_string();
        assert!(msg.starts_with("line 1: bad JSON"), "{msg}");
    }

    #[test]
    fn limits_are_enforced() {
        let good = r#"{"conversations":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]}"#;
        let limits = JsonlLimits { max_line_bytes: good.len(), max_examples: 2, max_turns: 2 };
        let ok = format!("{good}\n{good}\r\n");
        assert_eq!(load_jsonl(ok.as_bytes(), &limits).unwrap().len(), 2);
        let three = format!("{good}\n{good}\n{good}\n");
        assert!(matches!(
            load_jsonl(three.as_bytes(), &limits),
            Err(DataError::TooManyRecords { max: 2 })
        ));
        let long = format!("{good} \n");
        assert!(matches!(
            load_jsonl(long.as_bytes(), &limits),
            Err(DataError::Jsonl { line: 1, error: ExampleError::LineTooLong { .. } })
        ));
        let huge = "x".repeat(10 * good.len());
        assert!(matches!(
            load_jsonl(huge.as_bytes(), &limits),
            Err(DataError::Jsonl { line: 1, error: ExampleError::LineTooLong { .. } })
        ));
        let four = r#"{"conversations":[{"role":"user","content":"q"},{"role":"assistant","content":"a"},{"role":"user","content":"q"},{"role":"assistant","content":"a"}]}"#;
        let limits = JsonlLimits { max_turns: 2, ..JsonlLimits::default() };
        assert!(matches!(
            load_jsonl(four.as_bytes(), &limits),
            Err(DataError::Jsonl { error: ExampleError::TooManyTurns { turns: 4, max: 2 }, .. })
        ));
    }

    #[test]
    fn writer_rejects_invalid_examples() {
        let bad = ex(&[(Role::User, "q")]);
        let good = ex(&[(Role::User, "q"), (Role::Assistant, "a")]);
        assert!(matches!(
            to_jsonl_bytes(&[good, bad]),
            Err(DataError::InvalidExample { index: 1, .. })
        ));
    }

    fn arb_example() -> impl proptest::strategy::Strategy<Value = ChatExample> {
        use proptest::prelude::*;
        let text = || any::<String>().prop_filter("no markers", |s| !s.contains("<|im_"));
        let pair = (any::<bool>(), any::<bool>(), text(), text());
        (
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::collection::vec(pair, 1..5),
        )
            .prop_map(|(system, tools, pairs)| {
                let mut conversations = Vec::new();
                for (observation, call, prompt, reply) in pairs {
                    let p = if observation { Role::Observation } else { Role::User };
                    let r = if call { Role::FunctionCall } else { Role::Assistant };
                    conversations.push(Turn::new(p, prompt));
                    conversations.push(Turn::new(r, reply));
                }
                ChatExample { system, tools, conversations }
            })
    }

    proptest::proptest! {
        #[test]
        fn any_valid_example_round_trips(examples in proptest::collection::vec(arb_example(), 0..8)) {
            let bytes = to_jsonl_bytes(&examples).unwrap();
            let back = load_jsonl(&bytes[..], &JsonlLimits::default()).unwrap();
            proptest::prop_assert_eq!(back, examples);
        }

        #[test]
        fn loader_never_panics_on_garbage(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = load_jsonl(&bytes[..], &JsonlLimits { max_line_bytes: 64, ..JsonlLimits::default() });
        }
    }

    #[test]
    fn split_last_response_gives_prompt_and_reference() {
        let e = ex(&[(Role::User, "q"), (Role::Assistant, "a")]);
        let (prompt, reply) = e.split_last_response().unwrap();
        assert_eq!(prompt.conversations, vec![Turn::new(Role::User, "q")]);
        assert_eq!(reply.content, "a");
        assert!(prompt.split_last_response().is_none());
    }
}
