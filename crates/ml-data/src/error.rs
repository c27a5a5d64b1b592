use thiserror::Error;

/// Why one chat example (one JSONL line) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExampleError {
    /// The line is longer than [`JsonlLimits::max_line_bytes`](crate::chat::JsonlLimits).
    #[error("line is {len} bytes, above the limit of {max}")]
    LineTooLong {
        /// Bytes read before giving up (at least `max + 1`).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The line is not valid UTF-8.
    #[error("line is not valid UTF-8")]
    NotUtf8,
    /// The line is not a JSON object of the expected shape.
    #[error("bad JSON: {0}")]
    BadJson(String),
    /// A turn's `role` is not one of FLock's four roles.
    #[error("turn {turn}: unknown role {role:?} (expected user, assistant, function_call or observation)")]
    UnknownRole {
        /// Index of the turn (0-based).
        turn: usize,
        /// The role that was given.
        role: String,
    },
    /// `conversations` is empty.
    #[error("conversations is empty")]
    EmptyConversation,
    /// More turns than [`JsonlLimits::max_turns`](crate::chat::JsonlLimits).
    #[error("{turns} turns, above the limit of {max}")]
    TooManyTurns {
        /// Turns in the example.
        turns: usize,
        /// The limit.
        max: usize,
    },
    /// Roles do not alternate prompt side (user/observation) then response side
    /// (assistant/function_call).
    #[error("turn {turn}: role {role} is out of order (expected a {expected} turn)")]
    OutOfOrder {
        /// Index of the turn (0-based).
        turn: usize,
        /// The role found there.
        role: &'static str,
        /// The side that was expected there: "user/observation" or "assistant/function_call".
        expected: &'static str,
    },
    /// The last turn is not a response (assistant or function_call), so nothing would be trained.
    #[error("the last turn is {role}, not assistant or function_call: nothing to train on")]
    NoFinalResponse {
        /// The role of the last turn.
        role: &'static str,
    },
    /// A text field contains a ChatML control marker, which would break the template.
    #[error("{field} contains the reserved marker {marker:?}")]
    ReservedMarker {
        /// Which field: "system", "tools" or "turn N".
        field: String,
        /// The marker found.
        marker: &'static str,
    },
}

/// Errors from loading, writing or generating datasets.
#[derive(Debug, Error)]
pub enum DataError {
    /// An I/O error from the underlying reader or writer.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A JSONL line was rejected.
    #[error("line {line}: {error}")]
    Jsonl {
        /// 1-based line number in the input.
        line: usize,
        /// What is wrong with it.
        error: ExampleError,
    },
    /// An example handed to a writer is invalid.
    #[error("example {index}: {error}")]
    InvalidExample {
        /// 0-based index of the example.
        index: usize,
        /// What is wrong with it.
        error: ExampleError,
    },
    /// The input holds more records than the configured limit.
    #[error("more than {max} records (limit)")]
    TooManyRecords {
        /// The limit.
        max: usize,
    },
    /// The input is larger than the configured byte limit.
    #[error("input is larger than {max} bytes (limit)")]
    TooLarge {
        /// The limit.
        max: u64,
    },
    /// A CSV row or header was rejected.
    #[error("csv line {line}: {problem}")]
    Csv {
        /// 1-based line number in the input (0 when unknown).
        line: u64,
        /// What is wrong with it.
        problem: String,
    },
    /// An argument is out of its allowed range (zero parts, a window longer than the trace…).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A generator could not produce the requested number of distinct examples.
    #[error("could only generate {got} distinct examples of the {wanted} requested")]
    NotEnoughDistinct {
        /// Distinct examples produced.
        got: usize,
        /// Examples requested.
        wanted: usize,
    },
}
