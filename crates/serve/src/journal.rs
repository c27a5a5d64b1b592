//! The usage journal: an append-only JSON-lines file, `<data_dir>/serve/usage.jsonl`.
//!
//! ```text
//! {"t":"journal","id":"<hex>","version":1}                      first line, once
//! {"t":"use","seq":7,"listing":"m","key_hash":"…","owner":"flk1…","prompt_tokens":12,
//!  "completion_tokens":30,"calls":1,"cost":"42","request":"chatcmpl-…","time_ms":…}
//! {"t":"batch","listing":"m","id":"<hex>","from":1,"to":7}       written before submitting
//! {"t":"settled","listing":"m","id":"<hex>"}                     after the ledger has it
//! ```
//!
//! # Durability: group commit
//! One writer thread owns the file. Callers hand it lines and wait; it writes everything
//! queued, calls `fdatasync` once, and only then answers them all. A request's usage is
//! therefore on disk before its response completes (no usage is lost on a crash), while
//! concurrent requests share one sync. Sequence numbers are given by the writer, and
//! [`JournalWriter`]'s `on_durable` hook sees the lines in file order after each sync, so the
//! in-memory view never holds a record the file does not, and holds records in `seq` order.
//!
//! A crash can leave a torn last line; opening drops it (it was never acknowledged). Any other
//! unreadable line is corruption and stops the start. After a write error the writer refuses
//! everything (a later line after a torn one would be unreadable), so requests fail with 503
//! rather than being served unmetered.
//!
//! The journal id is random per file and part of every batch id, so a journal that is deleted
//! and started again can never produce an id the ledger has already settled.

use crate::error::ServeError;
use flock_primitives::{Address, Amount, Hash};
use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeSet,
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::mpsc,
};
use tokio::sync::oneshot;

/// The journal format version.
pub const JOURNAL_VERSION: u32 = 1;
/// Longest journal line read back.
const MAX_LINE: usize = 64 * 1024;

/// One served request's metered usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Position in the journal (given by the writer; 0 until then).
    pub seq: u64,
    /// The listing.
    pub listing: String,
    /// The API key's hash.
    pub key_hash: Hash,
    /// The key's owner when it was served (whose escrow pays).
    pub owner: Address,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Calls (1 per chat or completion request; 1 per row for predict).
    pub calls: u64,
    /// Its price at serving time (the ledger charges at settlement time).
    pub cost: Amount,
    /// The completion id.
    pub request: String,
    /// When it was served (ms since the Unix epoch).
    pub time_ms: u64,
}

/// A journal line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Line {
    /// The header: the journal's id.
    Journal {
        /// Random id of this journal file.
        id: Hash,
        /// Format version.
        version: u32,
    },
    /// Usage.
    Use(UsageRecord),
    /// A batch about to be submitted: the listing's records with `from <= seq <= to`.
    Batch {
        /// The listing.
        listing: String,
        /// The batch id.
        id: Hash,
        /// First sequence number.
        from: u64,
        /// Last sequence number.
        to: u64,
    },
    /// A batch the ledger has settled.
    Settled {
        /// The listing.
        listing: String,
        /// The batch id.
        id: Hash,
    },
}

/// What an existing journal holds.
#[derive(Debug, Default)]
pub struct Replay {
    /// The journal id.
    pub id: Hash,
    /// Every usage record, in `seq` order.
    pub records: Vec<UsageRecord>,
    /// Every batch: `(listing, id, from, to)`.
    pub batches: Vec<(String, Hash, u64, u64)>,
    /// Settled batches: `(listing, id)`.
    pub settled: BTreeSet<(String, Hash)>,
    /// The next sequence number.
    pub next_seq: u64,
}

/// Reads (or creates) the journal at `path`, dropping a torn last line.
pub fn open(path: &Path) -> Result<(File, Replay), ServeError> {
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| ServeError::io(path, e))?;
    let mut replay = Replay { next_seq: 1, ..Replay::default() };
    let mut good_len = 0u64;
    let mut have_header = false;
    {
        let mut r = BufReader::new(&mut file);
        let mut buf = Vec::new();
        let mut line_no = 0usize;
        loop {
            buf.clear();
            let n = (&mut r)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut buf)
                .map_err(|e| ServeError::io(path, e))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let complete = buf.last() == Some(&b'\n');
            let parsed = if complete {
                serde_json::from_slice::<Line>(&buf[..buf.len() - 1]).map_err(|e| e.to_string())
            } else {
                Err("torn line".to_owned())
            };
            let line = match parsed {
                Ok(l) => l,
                Err(reason) => {
                    // A torn tail (no newline, nothing after it) is an unacknowledged write.
                    let mut rest = Vec::new();
                    r.read_to_end(&mut rest).map_err(|e| ServeError::io(path, e))?;
                    if !complete && rest.is_empty() {
                        tracing::warn!(path = %path.display(), line = line_no, "dropping a torn journal line");
                        break;
                    }
                    let path = path.to_path_buf();
                    return Err(ServeError::JournalCorrupt { path, line: line_no, reason });
                }
            };
            good_len += n as u64;
            match line {
                Line::Journal { id, version } => {
                    if version != JOURNAL_VERSION {
                        let path = path.to_path_buf();
                        let reason = format!("journal version {version}, expected 1");
                        return Err(ServeError::JournalCorrupt { path, line: line_no, reason });
                    }
                    replay.id = id;
                    have_header = true;
                }
                Line::Use(rec) => {
                    replay.next_seq = replay.next_seq.max(rec.seq + 1);
                    replay.records.push(rec);
                }
                Line::Batch { listing, id, from, to } => {
                    replay.batches.push((listing, id, from, to))
                }
                Line::Settled { listing, id } => {
                    replay.settled.insert((listing, id));
                }
            }
        }
    }
    let len = file.metadata().map_err(|e| ServeError::io(path, e))?.len();
    if len != good_len {
        file.set_len(good_len).map_err(|e| ServeError::io(path, e))?;
        file.seek(SeekFrom::End(0)).map_err(|e| ServeError::io(path, e))?;
    }
    if !have_header {
        if good_len != 0 {
            let path = path.to_path_buf();
            let reason = "no journal header".to_owned();
            return Err(ServeError::JournalCorrupt { path, line: 1, reason });
        }
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        replay.id = Hash::of_parts("flock serve journal id v1", &[&seed]);
        let header = Line::Journal { id: replay.id, version: JOURNAL_VERSION };
        write_lines(&mut file, &[header]).map_err(|e| ServeError::io(path, e))?;
    }
    replay.records.sort_by_key(|r| r.seq);
    Ok((file, replay))
}

fn write_lines(file: &mut File, lines: &[Line]) -> std::io::Result<()> {
    let mut buf = Vec::new();
    for l in lines {
        serde_json::to_writer(&mut buf, l).map_err(std::io::Error::other)?;
        buf.push(b'\n');
    }
    file.write_all(&buf)?;
    file.sync_data()
}

struct Req {
    line: Line,
    ack: oneshot::Sender<Result<u64, String>>,
}

/// Called after each sync with the lines just made durable, in file order.
pub type OnDurable = Box<dyn FnMut(&[Line]) + Send>;

/// The handle to the writer thread (cheap to clone).
#[derive(Clone, Debug)]
pub struct JournalWriter {
    tx: mpsc::Sender<Req>,
}

impl JournalWriter {
    /// Starts the writer thread on an opened journal.
    pub fn spawn(
        file: File,
        path: PathBuf,
        next_seq: u64,
        on_durable: OnDurable,
    ) -> Result<Self, ServeError> {
        let (tx, rx) = mpsc::channel::<Req>();
        std::thread::Builder::new()
            .name("flock-serve-journal".into())
            .spawn(move || writer_loop(file, path, next_seq, rx, on_durable))
            .map_err(|e| ServeError::io("journal writer thread", e))?;
        Ok(Self { tx })
    }

    /// Appends a line and waits until it is on disk; returns its `seq` (usage) or 0.
    pub async fn append(&self, line: Line) -> Result<u64, String> {
        let (ack, rx) = oneshot::channel();
        self.tx.send(Req { line, ack }).map_err(|_| "the usage journal is closed".to_owned())?;
        rx.await.map_err(|_| "the usage journal writer stopped".to_owned())?
    }
}

fn writer_loop(
    mut file: File,
    path: PathBuf,
    mut next_seq: u64,
    rx: mpsc::Receiver<Req>,
    mut on_durable: OnDurable,
) {
    let mut failed: Option<String> = None;
    while let Ok(first) = rx.recv() {
        let mut reqs = vec![first];
        while let Ok(r) = rx.try_recv() {
            reqs.push(r);
        }
        if let Some(e) = &failed {
            for r in reqs {
                let _ = r.ack.send(Err(e.clone()));
            }
            continue;
        }
        let mut lines = Vec::with_capacity(reqs.len());
        let mut seqs = Vec::with_capacity(reqs.len());
        for r in &mut reqs {
            let mut line = r.line.clone();
            let seq = match &mut line {
                Line::Use(rec) => {
                    rec.seq = next_seq;
                    next_seq += 1;
                    rec.seq
                }
                _ => 0,
            };
            lines.push(line);
            seqs.push(seq);
        }
        match write_lines(&mut file, &lines) {
            Ok(()) => {
                on_durable(&lines);
                for (r, seq) in reqs.into_iter().zip(seqs) {
                    let _ = r.ack.send(Ok(seq));
                }
            }
            Err(e) => {
                let msg = format!("usage journal {} failed: {e}", path.display());
                tracing::error!(error = %msg, "usage journal stopped; requests are refused");
                for r in reqs {
                    let _ = r.ack.send(Err(msg.clone()));
                }
                failed = Some(msg);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(listing: &str) -> UsageRecord {
        UsageRecord {
            seq: 0,
            listing: listing.into(),
            key_hash: Hash::of(b"k"),
            owner: Address([1; 20]),
            prompt_tokens: 3,
            completion_tokens: 4,
            calls: 1,
            cost: Amount(7),
            request: "chatcmpl-x".into(),
            time_ms: 1,
        }
    }

    #[tokio::test]
    async fn appends_replay_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.jsonl");
        let (file, replay) = open(&path).unwrap();
        let id = replay.id;
        assert_eq!(replay.next_seq, 1);
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let w = JournalWriter::spawn(
            file,
            path.clone(),
            1,
            Box::new(move |l| s2.lock().unwrap().extend(l.iter().cloned())),
        )
        .unwrap();
        assert_eq!(w.append(Line::Use(rec("a"))).await.unwrap(), 1);
        assert_eq!(w.append(Line::Use(rec("b"))).await.unwrap(), 2);
        let b = Line::Batch { listing: "a".into(), id: Hash::of(b"b"), from: 1, to: 1 };
        assert_eq!(w.append(b).await.unwrap(), 0);
        assert_eq!(seen.lock().unwrap().len(), 3);
        drop(w);
        // A torn tail is dropped; the id and the sequence carry on.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"t\":\"use\",\"se")
            .unwrap();
        let (_, replay) = open(&path).unwrap();
        assert_eq!(replay.id, id);
        assert_eq!(replay.records.len(), 2);
        assert_eq!(replay.batches.len(), 1);
        assert_eq!(replay.next_seq, 3);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("}\n"), "torn tail truncated");
        // Garbage in the middle is corruption.
        std::fs::write(&path, format!("{}\nnot json\n{}\n", text.lines().next().unwrap(), "{}"))
            .unwrap();
        assert!(matches!(open(&path), Err(ServeError::JournalCorrupt { line: 2, .. })));
    }
}
