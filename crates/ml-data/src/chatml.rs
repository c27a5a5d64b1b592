//! The ChatML template (Qwen, Yi and most small chat models), with the byte spans of the
//! training targets.
//!
//! ```text
//! <|im_start|>system\n{system}[\n\n# Tools\n\n{tools}]<|im_end|>\n
//! <|im_start|>user\n{content}<|im_end|>\n
//! <|im_start|>assistant\n{content}<|im_end|>\n            ← target: content + <|im_end|>
//! <|im_start|>assistant\n<tool_call>\n{content}\n</tool_call><|im_end|>\n   ← function_call, target
//! <|im_start|>tool\n{content}<|im_end|>\n                  ← observation, not a target
//! ```
//!
//! # Design decisions
//! * **Targets** are the bytes the model must produce: everything after the
//!   `<|im_start|>assistant\n` header up to and including `<|im_end|>` (the stop marker is
//!   learned too, so generation ends); the `\n` after it is not. FLock's validators compute
//!   loss on these tokens only and divide by their UTF-8 bytes for bits per byte.
//! * **`function_call`** is the model's own output, so it renders on the assistant side and is a
//!   target, wrapped in `<tool_call>…</tool_call>` as Qwen2.5 and Hermes-style templates do, so a
//!   model can tell a call from a reply from its first token.
//! * **`observation`** is a tool result the model reads, rendered as ChatML's `tool` role
//!   (OpenAI-style ChatML) and never a target.
//! * No default system prompt is injected when `system` is absent (some chat templates add
//!   one; we keep the bytes exactly what the data says).
//! * `tools`, when present, is appended to the system block under a `# Tools` heading.

use crate::chat::{ChatExample, Role, Turn};

/// Opens a turn.
pub const IM_START: &str = "<|im_start|>";
/// Closes a turn (and is the generation stop marker).
pub const IM_END: &str = "<|im_end|>";

/// An example rendered to text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The full text.
    pub text: String,
    /// Byte ranges `(start, end)` of `text` (end exclusive) holding the training targets, in
    /// order and non-overlapping. Both ends are on `char` boundaries.
    pub targets: Vec<(usize, usize)>,
}

impl Rendered {
    /// Total UTF-8 bytes of the targets (the `B` of bits per byte).
    pub fn target_bytes(&self) -> usize {
        self.targets.iter().map(|(s, e)| e - s).sum()
    }

    /// A per-byte mask over `text`: true inside a target span.
    pub fn byte_mask(&self) -> Vec<bool> {
        let mut mask = vec![false; self.text.len()];
        for &(s, e) in &self.targets {
            mask[s..e].iter_mut().for_each(|m| *m = true);
        }
        mask
    }

    /// A per-token mask for a tokenization of [`Rendered::text`], given each token's byte
    /// range `(start, end)` in the text (as tokenizers report offsets): a token is a target when
    /// its first byte lies inside a target span. ChatML markers are single special tokens, so
    /// token and span boundaries coincide at `<|im_end|>`; a token straddling the start of a
    /// span (rare merges across `\n`) counts as prompt.
    pub fn token_mask(&self, token_offsets: &[(usize, usize)]) -> Vec<bool> {
        token_offsets
            .iter()
            .map(|&(start, _)| self.targets.iter().any(|&(s, e)| start >= s && start < e))
            .collect()
    }

    /// The target texts, in order.
    pub fn target_texts(&self) -> impl Iterator<Item = &str> {
        self.targets.iter().map(|&(s, e)| &self.text[s..e])
    }
}

fn header(text: &mut String, role: &str) {
    text.push_str(IM_START);
    text.push_str(role);
    text.push('\n');
}

fn push_system(text: &mut String, example: &ChatExample) {
    if example.system.is_none() && example.tools.is_none() {
        return;
    }
    header(text, "system");
    if let Some(system) = &example.system {
        text.push_str(system);
    }
    if let Some(tools) = &example.tools {
        if example.system.is_some() {
            text.push_str("\n\n");
        }
        text.push_str("# Tools\n\n");
        text.push_str(tools);
    }
    text.push_str(IM_END);
    text.push('\n');
}

/// Appends one turn; returns the target span if the turn is a response.
fn push_turn(text: &mut String, turn: &Turn) -> Option<(usize, usize)> {
    match turn.role {
        Role::User | Role::Observation => {
            header(text, if turn.role == Role::User { "user" } else { "tool" });
            text.push_str(&turn.content);
            text.push_str(IM_END);
            text.push('\n');
            None
        }
        Role::Assistant | Role::FunctionCall => {
            header(text, "assistant");
            let start = text.len();
            if turn.role == Role::FunctionCall {
                text.push_str("<tool_call>\n");
                text.push_str(&turn.content);
                text.push_str("\n</tool_call>");
            } else {
                text.push_str(&turn.content);
            }
            text.push_str(IM_END);
            let end = text.len();
            text.push('\n');
            Some((start, end))
        }
    }
}

/// Renders a whole example (training or scoring): the text and the target spans of every
/// `assistant` and `function_call` turn.
pub fn render(example: &ChatExample) -> Rendered {
    let mut text = String::new();
    push_system(&mut text, example);
    let mut targets = Vec::new();
    for turn in &example.conversations {
        if let Some(span) = push_turn(&mut text, turn) {
            targets.push(span);
        }
    }
    Rendered { text, targets }
}

/// Renders a prompt for generation: every turn of `example` (typically one whose last
/// assistant turn was removed, see [`ChatExample::split_last_response`]) followed by the
/// open header `<|im_start|>assistant\n`. Generation should stop at [`IM_END`].
pub fn render_prompt(example: &ChatExample) -> String {
    let mut text = render(example).text;
    header(&mut text, "assistant");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> ChatExample {
        ChatExample::new(
            Some("Be brief.".into()),
            vec![
                Turn::new(Role::User, "Weather in Zürich?"),
                Turn::new(
                    Role::FunctionCall,
                    r#"{"name":"weather","arguments":{"city":"Zürich"}}"#,
                ),
                Turn::new(Role::Observation, "12°C"),
                Turn::new(Role::Assistant, "It is 12°C."),
            ],
        )
    }

    #[test]
    fn renders_chatml_exactly() {
        let e = ChatExample::new(
            Some("S".into()),
            vec![Turn::new(Role::User, "U"), Turn::new(Role::Assistant, "A")],
        );
        let r = render(&e);
        assert_eq!(
            r.text,
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n"
        );
        assert_eq!(r.target_texts().collect::<Vec<_>>(), vec!["A<|im_end|>"]);
        assert_eq!(r.target_bytes(), 1 + IM_END.len());
    }

    #[test]
    fn function_call_is_target_observation_is_not() {
        let r = render(&example());
        let targets: Vec<_> = r.target_texts().collect();
        assert_eq!(
            targets,
            vec![
                "<tool_call>\n{\"name\":\"weather\",\"arguments\":{\"city\":\"Zürich\"}}\n</tool_call><|im_end|>",
                "It is 12°C.<|im_end|>",
            ]
        );
        assert!(r.text.contains("<|im_start|>tool\n12°C<|im_end|>\n"));
        let mask = r.byte_mask();
        assert_eq!(mask.iter().filter(|m| **m).count(), r.target_bytes());
        // Multi-byte characters count as bytes, not chars.
        assert_eq!(r.target_bytes(), targets.iter().map(|t| t.len()).sum::<usize>());
        assert!(r.text.ends_with("<|im_end|>\n"));
    }

    #[test]
    fn token_mask_follows_target_spans() {
        let e = ChatExample::new(
            None,
            vec![Turn::new(Role::User, "hi"), Turn::new(Role::Assistant, "ok")],
        );
        let r = render(&e);
        // Tokenize as: every marker one token, everything else one token per byte run.
        let text = &r.text;
        let a = text.find("ok").unwrap();
        let end = text.rfind(IM_END).unwrap();
        let offsets = [
            (0, a),
            (a, a + 1),
            (a + 1, a + 2),
            (end, end + IM_END.len()),
            (end + IM_END.len(), text.len()),
        ];
        assert_eq!(r.token_mask(&offsets), vec![false, true, true, true, false]);
    }

    proptest::proptest! {
        #[test]
        fn spans_are_exactly_the_response_turns(
            turns in proptest::collection::vec((0u8..4, "[^<]{0,12}"), 0..8),
            system in proptest::option::of("[^<]{0,12}"),
        ) {
            let roles = [Role::User, Role::Assistant, Role::FunctionCall, Role::Observation];
            let e = ChatExample::new(
                system,
                turns.iter().map(|(r, c)| Turn::new(roles[usize::from(*r)], c.as_str())).collect(),
            );
            let r = render(&e);
            let responses: Vec<&Turn> = e.conversations.iter().filter(|t| t.role.is_response()).collect();
            proptest::prop_assert_eq!(r.targets.len(), responses.len());
            let mut last_end = 0;
            for (&(s, end), turn) in r.targets.iter().zip(&responses) {
                proptest::prop_assert!(last_end <= s && s <= end && end <= r.text.len());
                proptest::prop_assert!(r.text.is_char_boundary(s) && r.text.is_char_boundary(end));
                let target = &r.text[s..end];
                proptest::prop_assert!(target.ends_with(IM_END) && target.contains(turn.content.as_str()));
                proptest::prop_assert!(r.text[..s].ends_with("<|im_start|>assistant\n"));
                last_end = end;
            }
        }
    }

    #[test]
    fn no_system_block_without_system_or_tools() {
        let mut e = example();
        e.system = None;
        assert!(render(&e).text.starts_with("<|im_start|>user\n"));
        e.tools = Some("[]".into());
        assert!(render(&e).text.starts_with("<|im_start|>system\n# Tools\n\n[]<|im_end|>\n"));
    }

    #[test]
    fn prompt_is_render_of_prefix_plus_open_header() {
        let e = example();
        let (prompt, reply) = e.split_last_response().unwrap();
        let p = render_prompt(&prompt);
        assert!(p.ends_with("<|im_start|>tool\n12°C<|im_end|>\n<|im_start|>assistant\n"));
        // Prompt followed by the reply and stop marker is exactly the full rendering.
        assert_eq!(format!("{p}{}{IM_END}\n", reply.content), render(&e).text);
    }
}
