//! Consumer feedback: ratings and corrections of served answers, kept as data for the model's
//! next training task.
//!
//! ```text
//! completion served ─► CompletionLog (bounded, in memory: id → key, messages, answer)
//! POST /v1/feedback {id, rating 1..5, correction?} ─► <data_dir>/serve/feedback.jsonl
//! export_feedback(data_dir, listing, out) ─► FLock chat JSONL for a new Arena task:
//!     the prompt turns + an assistant turn = the correction, or the answer if rated >= 4
//! ```
//! The completion log forgets the oldest completions past its capacity (and everything on a
//! restart): feedback is for answers a consumer has just seen. The on-chain rating of a
//! listing is the consumer's own `MarketRate` transaction, not the server's.

use crate::error::ServeError;
use flock_ml::ChatMessage;
use flock_ml_data::chat::{write_jsonl, ChatExample, Role, Turn};
use flock_primitives::{Address, Hash};
use serde::{Deserialize, Serialize};
use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    io::{BufRead, BufReader, Read, Write},
    path::Path,
};

/// The feedback file's name in the serve directory.
pub const FEEDBACK_FILE: &str = "feedback.jsonl";
/// Longest correction accepted (bytes).
pub const MAX_CORRECTION: usize = 64 * 1024;
/// Longest feedback line read back.
const MAX_LINE: u64 = 16 << 20;

/// A served completion, remembered for feedback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    /// The listing.
    pub listing: String,
    /// Who asked (key hash).
    pub key_hash: Hash,
    /// The key's owner.
    pub owner: Address,
    /// The prompt messages (a raw completion's prompt is one user message).
    pub messages: Vec<ChatMessage>,
    /// The answer.
    pub answer: String,
}

/// The most recent completions, oldest forgotten first.
#[derive(Debug)]
pub(crate) struct CompletionLog {
    cap: usize,
    order: VecDeque<String>,
    by_id: HashMap<String, Completion>,
}

impl CompletionLog {
    pub(crate) fn new(cap: usize) -> Self {
        Self { cap, order: VecDeque::new(), by_id: HashMap::new() }
    }

    pub(crate) fn insert(&mut self, id: String, c: Completion) {
        if self.cap == 0 {
            return;
        }
        while self.order.len() >= self.cap {
            if let Some(old) = self.order.pop_front() {
                self.by_id.remove(&old);
            }
        }
        self.order.push_back(id.clone());
        self.by_id.insert(id, c);
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Completion> {
        self.by_id.get(id)
    }
}

/// One line of `feedback.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackRecord {
    /// The completion id.
    pub id: String,
    /// 1 to 5 stars.
    pub rating: u8,
    /// What the answer should have been.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correction: Option<String>,
    /// When (ms since the Unix epoch).
    pub time_ms: u64,
    /// The completion.
    #[serde(flatten)]
    pub completion: Completion,
}

/// Appends a record to the feedback file (fsync'd).
pub(crate) fn append(path: &Path, rec: &FeedbackRecord) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(rec).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    f.write_all(&line)?;
    f.sync_data()
}

/// The training example a feedback record gives, if any: the prompt turns and an assistant
/// turn with the correction (when there is one) or the answer (when rated 4 or 5).
pub fn feedback_example(rec: &FeedbackRecord) -> Option<ChatExample> {
    let reply = match rec.correction.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        Some(c) => c.to_owned(),
        None if rec.rating >= 4 && !rec.completion.answer.trim().is_empty() => {
            rec.completion.answer.clone()
        }
        None => return None,
    };
    let mut system = None;
    let mut turns = Vec::new();
    for (i, m) in rec.completion.messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" if i == 0 => {
                system = Some(m.content.clone());
                continue;
            }
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Observation,
            _ => return None,
        };
        turns.push(Turn::new(role, m.content.clone()));
    }
    turns.push(Turn::new(Role::Assistant, reply));
    let ex = ChatExample::new(system, turns);
    // FLock's rules: alternating turns, ending with the reply, no ChatML markers.
    ex.validate(flock_ml_data::chat::JsonlLimits::default().max_turns).ok()?;
    Some(ex)
}

/// Writes the feedback on `listing` found under `data_dir` (the node's data directory) as
/// FLock chat JSONL to `out`, one example per rated completion (its latest feedback wins);
/// returns how many examples were written. Feedback that yields no example (rated below 4
/// without a correction, or a conversation FLock's format cannot hold) is skipped.
pub fn export_feedback(
    data_dir: &Path,
    listing: &str,
    out: impl Write,
) -> Result<usize, ServeError> {
    let path = crate::config::serve_dir(data_dir).join(FEEDBACK_FILE);
    let mut latest: BTreeMap<String, (usize, FeedbackRecord)> = BTreeMap::new();
    match std::fs::File::open(&path) {
        Ok(f) => {
            let mut r = BufReader::new(f);
            let mut buf = Vec::new();
            let mut n = 0usize;
            loop {
                buf.clear();
                let got = (&mut r)
                    .take(MAX_LINE)
                    .read_until(b'\n', &mut buf)
                    .map_err(|e| ServeError::io(&path, e))?;
                if got == 0 {
                    break;
                }
                n += 1;
                // A torn last line (a crash mid-append) is skipped like any unreadable line.
                let Ok(rec) = serde_json::from_slice::<FeedbackRecord>(buf.trim_ascii_end()) else {
                    tracing::warn!(path = %path.display(), line = n, "skipping an unreadable feedback line");
                    continue;
                };
                if rec.completion.listing == listing {
                    latest.insert(rec.id.clone(), (n, rec));
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ServeError::io(&path, e)),
    }
    let mut recs: Vec<(usize, FeedbackRecord)> = latest.into_values().collect();
    recs.sort_by_key(|(n, _)| *n);
    let examples: Vec<ChatExample> = recs.iter().filter_map(|(_, r)| feedback_example(r)).collect();
    write_jsonl(out, &examples).map_err(|e| ServeError::Export(e.to_string()))?;
    Ok(examples.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, rating: u8, correction: Option<&str>) -> FeedbackRecord {
        FeedbackRecord {
            id: id.into(),
            rating,
            correction: correction.map(str::to_owned),
            time_ms: 0,
            completion: Completion {
                listing: "m".into(),
                key_hash: Hash::ZERO,
                owner: Address([0; 20]),
                messages: vec![ChatMessage::new("system", "S"), ChatMessage::new("user", "Q")],
                answer: "A".into(),
            },
        }
    }

    #[test]
    fn examples_from_feedback() {
        let good = feedback_example(&rec("1", 5, None)).unwrap();
        assert_eq!(good.system.as_deref(), Some("S"));
        assert_eq!(good.conversations.last().unwrap().content, "A");
        assert!(feedback_example(&rec("2", 2, None)).is_none());
        let fixed = feedback_example(&rec("3", 1, Some("B"))).unwrap();
        assert_eq!(fixed.conversations.last().unwrap().content, "B");
        let mut two_users = rec("4", 5, None);
        two_users.completion.messages.push(ChatMessage::new("user", "again"));
        assert!(feedback_example(&two_users).is_none());
    }

    #[test]
    fn log_is_bounded() {
        let mut log = CompletionLog::new(2);
        for i in 0..3 {
            log.insert(i.to_string(), rec("x", 5, None).completion);
        }
        assert!(log.get("0").is_none());
        assert!(log.get("2").is_some());
    }
}
