//! A keystore file in the data directory: named ed25519 keys.
//!
//! The file is JSON (`keys.json`), written atomically (temp file + rename) with owner-only
//! permissions. Secrets are stored unencrypted: this protects against other users of the
//! machine, not against someone who can read the owner's files.

use flock_primitives::{Address, Keypair};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Keystore errors.
#[derive(Debug, Error)]
pub enum KeystoreError {
    /// Reading or writing the file failed.
    #[error("keystore {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a keystore.
    #[error("keystore {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A key with that name exists.
    #[error("a key named {0:?} already exists")]
    Exists(String),
    /// No such key.
    #[error("no key named {0:?} in the keystore (see `flockd keys list`)")]
    NotFound(String),
    /// A bad name.
    #[error("key names are 1-64 characters of letters, digits, '-', '_' or '.'")]
    BadName,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    name: String,
    address: Address,
    secret: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    keys: Vec<Entry>,
}

/// A named key.
#[derive(Debug, Clone)]
pub struct NamedKey {
    /// The name.
    pub name: String,
    /// The key.
    pub key: Keypair,
}

/// The keystore at `dir/keys.json`.
#[derive(Debug)]
pub struct Keystore {
    path: PathBuf,
}

impl Keystore {
    /// The keystore in `data_dir` (the file is created on first write).
    pub fn open(data_dir: &Path) -> Self {
        Self { path: data_dir.join("keys.json") }
    }

    fn read(&self) -> Result<File, KeystoreError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| KeystoreError::Corrupt {
                path: self.path.clone(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(File::default()),
            Err(source) => Err(KeystoreError::Io { path: self.path.clone(), source }),
        }
    }

    fn write(&self, f: &File) -> Result<(), KeystoreError> {
        let io = |source| KeystoreError::Io { path: self.path.clone(), source };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(f).map_err(|e| KeystoreError::Corrupt {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        std::fs::write(&tmp, bytes).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io)
    }

    /// Adds `key` under `name`.
    pub fn insert(&self, name: &str, key: &Keypair) -> Result<(), KeystoreError> {
        if name.is_empty()
            || name.len() > 64
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(KeystoreError::BadName);
        }
        let mut f = self.read()?;
        if f.keys.iter().any(|e| e.name == name) {
            return Err(KeystoreError::Exists(name.to_owned()));
        }
        f.keys.push(Entry {
            name: name.to_owned(),
            address: key.address(),
            secret: hex::encode(key.secret_bytes()),
        });
        self.write(&f)
    }

    /// Generates and stores a new key.
    pub fn create(&self, name: &str) -> Result<Keypair, KeystoreError> {
        let key = Keypair::generate();
        self.insert(name, &key)?;
        Ok(key)
    }

    /// All keys, in insertion order.
    pub fn list(&self) -> Result<Vec<NamedKey>, KeystoreError> {
        let f = self.read()?;
        f.keys
            .into_iter()
            .map(|e| {
                let mut seed = [0u8; 32];
                hex::decode_to_slice(&e.secret, &mut seed).map_err(|err| {
                    KeystoreError::Corrupt {
                        path: self.path.clone(),
                        reason: format!("key {:?}: {err}", e.name),
                    }
                })?;
                Ok(NamedKey { name: e.name, key: Keypair::from_seed(seed) })
            })
            .collect()
    }

    /// The key named `name`, or whose address is `name`.
    pub fn get(&self, name: &str) -> Result<Keypair, KeystoreError> {
        self.list()?
            .into_iter()
            .find(|k| k.name == name || k.key.address().to_string() == name)
            .map(|k| k.key)
            .ok_or_else(|| KeystoreError::NotFound(name.to_owned()))
    }
}
