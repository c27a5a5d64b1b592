//! Moving artifacts between an agent and a node's artifact store, verified by hash.

use crate::AgentError;
use flock_primitives::Hash;
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

/// Uploads and downloads content-addressed artifacts, with a local cache.
#[derive(Debug, Clone)]
pub struct Artifacts {
    base: String,
    http: reqwest::Client,
    cache: PathBuf,
}

impl Artifacts {
    /// A client for the node at `base` caching downloads under `cache`.
    pub fn new(base: &str, cache: &Path) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(600))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { base: base.trim_end_matches('/').to_owned(), http, cache: cache.to_owned() }
    }

    /// Uploads `bytes`; returns their hash.
    pub async fn upload(&self, bytes: Vec<u8>) -> Result<Hash, AgentError> {
        let hash = Hash::of(&bytes);
        let url = format!("{}/v1/artifacts/{hash}", self.base);
        let resp = self
            .http
            .put(&url)
            .body(bytes)
            .send()
            .await
            .map_err(|e| AgentError::Http(format!("{url}: {e}")))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(AgentError::Http(format!("upload of {hash} refused ({status}): {body}")));
        }
        Ok(hash)
    }

    /// Downloads `hash` (from the cache if present), verifying the bytes; resumes a broken
    /// transfer with a range request.
    pub async fn download(&self, hash: &Hash) -> Result<Vec<u8>, AgentError> {
        let cached = self.cache.join(hash.to_string());
        if let Ok(bytes) = std::fs::read(&cached) {
            if Hash::of(&bytes) == *hash {
                return Ok(bytes);
            }
        }
        let url = format!("{}/v1/artifacts/{hash}", self.base);
        let mut bytes: Vec<u8> = Vec::new();
        for attempt in 0..5 {
            let mut req = self.http.get(&url);
            if !bytes.is_empty() {
                req = req.header("range", format!("bytes={}-", bytes.len()));
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) if attempt < 4 => {
                    tracing::warn!(%hash, error = %e, "download failed, retrying");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                    continue;
                }
                Err(e) => return Err(AgentError::Http(format!("{url}: {e}"))),
            };
            let status = resp.status();
            if status == reqwest::StatusCode::NOT_FOUND {
                return Err(AgentError::Missing(*hash));
            }
            if !status.is_success() {
                return Err(AgentError::Http(format!("{url}: HTTP {status}")));
            }
            if status != reqwest::StatusCode::PARTIAL_CONTENT {
                bytes.clear();
            }
            match resp.bytes().await {
                Ok(b) => {
                    bytes.extend_from_slice(&b);
                    break;
                }
                Err(e) if attempt < 4 => {
                    tracing::warn!(%hash, error = %e, got = bytes.len(), "transfer broke off, resuming")
                }
                Err(e) => return Err(AgentError::Http(format!("{url}: {e}"))),
            }
        }
        let actual = Hash::of(&bytes);
        if actual != *hash {
            return Err(AgentError::Corrupt(format!("artifact {hash} arrived as {actual}")));
        }
        std::fs::create_dir_all(&self.cache)?;
        std::fs::write(&cached, &bytes)?;
        Ok(bytes)
    }

    /// Downloads `hash` from the first of the nodes at `bases` that delivers it intact (this
    /// client's cache first); each node is tried as [`Artifacts::download`] does.
    pub async fn download_from_any(
        &self,
        bases: &[impl AsRef<str>],
        hash: &Hash,
    ) -> Result<Vec<u8>, AgentError> {
        let mut last = AgentError::Missing(*hash);
        for base in bases {
            let one = Self {
                base: base.as_ref().trim_end_matches('/').to_owned(),
                http: self.http.clone(),
                cache: self.cache.clone(),
            };
            match one.download(hash).await {
                Ok(b) => return Ok(b),
                Err(AgentError::Missing(_)) => {}
                Err(e) => {
                    tracing::warn!(%hash, node = %one.base, error = %e, "download failed, trying the next node");
                    last = e;
                }
            }
        }
        Err(last)
    }
}

/// A bundle: several named files shipped as one artifact (a JSON manifest of file hashes).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// What the bundle is (`hf-model`, `peft-adapter`, ...).
    pub kind: String,
    /// File name → artifact hash.
    pub files: std::collections::BTreeMap<String, Hash>,
}

impl Artifacts {
    /// Uploads `files` of `dir` and a manifest naming them; returns the manifest's hash.
    pub async fn upload_bundle(
        &self,
        kind: &str,
        dir: &Path,
        files: &[&str],
    ) -> Result<Hash, AgentError> {
        let mut m = Manifest { kind: kind.to_owned(), files: Default::default() };
        for f in files {
            let bytes = std::fs::read(dir.join(f))?;
            m.files.insert((*f).to_owned(), self.upload(bytes).await?);
        }
        let json = serde_json::to_vec(&m).map_err(|e| AgentError::Protocol(e.to_string()))?;
        self.upload(json).await
    }

    /// Downloads the bundle `hash` into `dest` (checking every file); returns its manifest.
    pub async fn fetch_bundle(&self, hash: &Hash, dest: &Path) -> Result<Manifest, AgentError> {
        let bytes = self.download(hash).await?;
        if bytes.len() > 1 << 20 {
            return Err(AgentError::Corrupt(format!("manifest {hash} is {} bytes", bytes.len())));
        }
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
            AgentError::Corrupt(format!("artifact {hash} is not a bundle manifest: {e}"))
        })?;
        std::fs::create_dir_all(dest)?;
        for (name, h) in &m.files {
            if name.contains('/') || name.contains('\\') || name.starts_with('.') || name.is_empty()
            {
                return Err(AgentError::Corrupt(format!(
                    "bundle {hash} names a bad file {name:?}"
                )));
            }
            let b = self.download(h).await?;
            std::fs::write(dest.join(name), b)?;
        }
        Ok(m)
    }
}
