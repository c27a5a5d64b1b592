//! The artifact store: content-addressed blobs (models, updates, datasets) named by blake3.
//!
//! Uploads stream to a temporary file while being hashed; a blob that is larger than the limit
//! is refused as soon as it passes it, and one whose bytes do not hash to the name it was put
//! under is refused and deleted. Only a complete, verified blob is renamed into place (after an
//! fsync), so readers never see a partial file. The store never parses what it holds: agents
//! validate safetensors and data files before they use them.

use flock_primitives::Hash;
use std::{
    collections::HashMap,
    io::Write,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};
use thiserror::Error;

/// Artifact store errors.
#[derive(Debug, Error)]
pub enum ArtifactError {
    /// The upload is larger than allowed.
    #[error("artifact is larger than the limit of {max} bytes")]
    TooLarge {
        /// The limit.
        max: u64,
    },
    /// The bytes do not hash to the name.
    #[error("uploaded bytes hash to {actual}, not {expected}")]
    HashMismatch {
        /// The name it was put under.
        expected: Hash,
        /// What the bytes hash to.
        actual: Hash,
    },
    /// The upload broke off.
    #[error("upload interrupted: {0}")]
    Interrupted(String),
    /// Disk trouble.
    #[error("artifact store I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// A directory of blobs named by their blake3 hash.
#[derive(Debug)]
pub struct ArtifactStore {
    dir: PathBuf,
    max_bytes: u64,
    counter: AtomicU64,
    /// Other nodes' API base URLs, asked for a blob this store misses.
    peers: Vec<String>,
    /// One fetch from peers per missing hash at a time.
    fetching: Mutex<HashMap<Hash, Arc<tokio::sync::Mutex<()>>>>,
}

/// An upload in progress.
#[derive(Debug)]
pub struct Upload<'a> {
    store: &'a ArtifactStore,
    expected: Hash,
    tmp: PathBuf,
    file: std::fs::File,
    hasher: blake3::Hasher,
    size: u64,
}

impl ArtifactStore {
    /// Opens (creating) the store at `dir`, accepting blobs up to `max_bytes`.
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir.join("tmp"))?;
        // Leftovers of uploads interrupted by a crash.
        for e in std::fs::read_dir(dir.join("tmp"))?.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
        Ok(Self {
            dir: dir.to_owned(),
            max_bytes,
            counter: AtomicU64::new(0),
            peers: Vec::new(),
            fetching: Mutex::new(HashMap::new()),
        })
    }

    /// Other nodes (API base URLs) to fetch a missing blob from (see `GET /v1/artifacts`).
    pub fn with_peers(mut self, peers: Vec<String>) -> Self {
        self.peers = peers
            .into_iter()
            .map(|p| p.trim().trim_end_matches('/').to_owned())
            .filter(|p| !p.is_empty())
            .collect();
        self
    }

    /// The peers a missing blob is fetched from.
    pub fn peers(&self) -> &[String] {
        &self.peers
    }

    /// The lock serializing fetches of `hash` from peers.
    pub(crate) fn fetch_lock(&self, hash: &Hash) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.fetching.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        m.entry(*hash).or_default().clone()
    }

    /// Forgets the fetch lock of `hash` (once its fetch is over).
    pub(crate) fn release_fetch_lock(&self, hash: &Hash) {
        let mut m = self.fetching.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        m.remove(hash);
    }

    /// The size limit.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Where a blob lives.
    pub fn path(&self, hash: &Hash) -> PathBuf {
        self.dir.join(hash.to_string())
    }

    /// Whether the store has `hash`, and its size.
    pub fn size(&self, hash: &Hash) -> Option<u64> {
        std::fs::metadata(self.path(hash)).ok().map(|m| m.len())
    }

    /// Starts an upload of a blob that must hash to `expected`.
    pub fn begin(&self, expected: Hash) -> Result<Upload<'_>, ArtifactError> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join("tmp").join(format!("{expected}.{}.{n}", std::process::id()));
        let file = std::fs::File::create(&tmp)?;
        Ok(Upload { store: self, expected, tmp, file, hasher: blake3::Hasher::new(), size: 0 })
    }

    /// Stores `bytes` (which must hash to `expected`) in one call.
    pub fn put(&self, expected: Hash, bytes: &[u8]) -> Result<u64, ArtifactError> {
        let mut up = self.begin(expected)?;
        up.write(bytes)?;
        up.finish()
    }
}

impl Upload<'_> {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.size
    }

    /// Appends a chunk.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), ArtifactError> {
        self.size += chunk.len() as u64;
        if self.size > self.store.max_bytes {
            return Err(ArtifactError::TooLarge { max: self.store.max_bytes });
        }
        self.hasher.update(chunk);
        self.file.write_all(chunk)?;
        Ok(())
    }

    /// Verifies the hash and moves the blob into place; returns its size.
    pub fn finish(mut self) -> Result<u64, ArtifactError> {
        let actual = Hash(*self.hasher.finalize().as_bytes());
        if actual != self.expected {
            return Err(ArtifactError::HashMismatch { expected: self.expected, actual });
        }
        self.file.flush()?;
        self.file.sync_all()?;
        std::fs::rename(&self.tmp, self.store.path(&self.expected))?;
        Ok(self.size)
    }
}

impl Drop for Upload<'_> {
    fn drop(&mut self) {
        // After a successful finish the temp file was renamed away; otherwise clean it up.
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// Parses a single HTTP byte range (`bytes=a-b`, `bytes=a-`, `bytes=-n`) against `len`.
/// Returns the inclusive `(start, end)`, or `None` when it is not satisfiable.
pub fn parse_range(header: &str, len: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || len == 0 {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 {
            return None;
        }
        (len.saturating_sub(n), len - 1)
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() { len - 1 } else { b.parse::<u64>().ok()?.min(len - 1) };
        (start, end)
    };
    (start <= end && start < len).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verified_blobs_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = ArtifactStore::open(dir.path(), 10).unwrap();
        let good = b"hello";
        assert_eq!(s.put(Hash::of(good), good).unwrap(), 5);
        assert_eq!(s.size(&Hash::of(good)), Some(5));
        let e = s.put(Hash::of(b"other"), good).unwrap_err();
        assert!(matches!(e, ArtifactError::HashMismatch { .. }), "{e}");
        assert_eq!(s.size(&Hash::of(b"other")), None);
        let big = [0u8; 11];
        assert!(matches!(s.put(Hash::of(&big), &big), Err(ArtifactError::TooLarge { max: 10 })));
        // No temp files are left behind.
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-4", 10), Some((0, 4)));
        assert_eq!(parse_range("bytes=5-", 10), Some((5, 9)));
        assert_eq!(parse_range("bytes=-3", 10), Some((7, 9)));
        assert_eq!(parse_range("bytes=8-100", 10), Some((8, 9)));
        assert_eq!(parse_range("bytes=10-", 10), None);
        assert_eq!(parse_range("bytes=5-2", 10), None);
        assert_eq!(parse_range("bytes=0-1,3-4", 10), None);
        assert_eq!(parse_range("items=0-1", 10), None);
    }
}
