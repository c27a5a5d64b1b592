//! Datasets for flock: FLock's JSONL chat format and its ChatML rendering, tabular CSV,
//! deterministic **simulated** data generators, and partitioners for federated members.
//!
//! | module | what it gives |
//! |---|---|
//! | [`chat`] | [`ChatExample`] / [`Turn`] / [`Role`] in FLock's training-set JSONL (`system`, `tools`, `conversations` with `user`/`assistant`/`function_call`/`observation`); a bounded loader whose errors name the line, and a byte-deterministic writer |
//! | [`chatml`] | the ChatML template: text plus the byte spans of the targets (assistant and function-call content with its `<|im_end|>`), and generation prompts |
//! | [`text2sql`] | **simulated**: a seeded, templated Text2SQL corpus over a four-table shop schema, with train / hidden-validation splits disjoint by question |
//! | [`glucose`] | **simulated**: virtual type-1-diabetes patients on a published glucose–insulin model (Kanderian 2009 / Bergman minimal model), CGM traces, 30-minute-ahead forecasting windows |
//! | [`tabular`] | f32 feature/label tables and their bounded, line-numbered CSV reader and writer |
//! | [`partition`] | IID, by-group (one patient per hospital), Dirichlet-by-label and shards-by-label splits |
//!
//! ```text
//!  text2sql::splits(seed) ──► Vec<ChatExample> ──► chat::write_jsonl ──► artifact store
//!                                   │                    ▲ chat::load_jsonl (bounded)
//!                                   ▼
//!                         chatml::render ──► text + target byte spans ──► tokenizer / loss mask / BPB
//!
//!  glucose::simulate(patient, days) ──► Trace ──► glucose::windows ──► Tabular ──► tabular::to_csv
//!                                                                   │
//!                                            partition::{iid, by_group, by_label_dirichlet}
//! ```
//!
//! ```
//! use flock_ml_data::{chat, chatml, glucose, partition, text2sql, JsonlLimits};
//!
//! // A simulated Text2SQL task: training set and hidden validation set, as FLock JSONL.
//! let splits = text2sql::splits(42, 100, 20)?;
//! let jsonl = chat::to_jsonl_bytes(&splits.train)?;
//! let back = chat::load_jsonl(&jsonl[..], &JsonlLimits::default())?;
//! assert_eq!(back, splits.train);
//!
//! // ChatML text and the target bytes a validator scores.
//! let rendered = chatml::render(&splits.validation[0]);
//! let target = rendered.target_texts().next().unwrap();
//! assert!(target.starts_with("SELECT") && target.ends_with("<|im_end|>"));
//!
//! // A simulated patient, windows for 30-minute-ahead forecasting, one patient per member.
//! let (table, patients) = glucose::cohort_dataset(&[1, 2, 3], 1, 12);
//! let parts = partition::by_group(&patients, 3, 7)?;
//! assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), table.len());
//! # Ok::<(), flock_ml_data::DataError>(())
//! ```
//!
//! # Design decisions
//! * **Simulated data says so.** Every generated example carries the label in its system
//!   prompt ([`text2sql::SIMULATED_LABEL`]); every glucose table carries it as a CSV comment
//!   ([`glucose::SIMULATED_LABEL`]). Nothing here is real user or patient data.
//! * **Deterministic by seed.** Generators draw from ChaCha8 on a separate stream per purpose,
//!   use `f64` arithmetic in a fixed order, and iterate only ordered collections: the same seed
//!   gives the same bytes run after run (tests compare JSONL bytes and traces).
//! * **Untrusted input is bounded.** Loaders take explicit limits (line bytes, records, turns,
//!   columns, total bytes) and return typed [`DataError`]s that name the line and the problem.
//! * **Targets are bytes, not tokens.** [`chatml::Rendered`] reports target spans in UTF-8 bytes
//!   so any tokenizer can build its loss mask and validators can divide by target bytes
//!   (FLock's bits-per-byte metric) with the tokenizer of the base model.

pub mod chat;
pub mod chatml;
mod error;
pub mod glucose;
pub mod partition;
mod rng;
pub mod tabular;
pub mod text2sql;

pub use chat::{load_jsonl, write_jsonl, ChatExample, JsonlLimits, Role, Turn};
pub use chatml::{render, render_prompt, Rendered};
pub use error::{DataError, ExampleError};
pub use tabular::{from_csv, to_csv, CsvLimits, Tabular};
