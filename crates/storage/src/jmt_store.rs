//! The Jellyfish Merkle tree logic both backends share.
//!
//! A backend only has to provide table reads ([`JmtRead`]) and the individual writes of a commit
//! ([`CommitBackend`]); [`apply_commit`] runs the same jmt calls and bookkeeping for both, which
//! is what makes their roots identical.
//!
//! # Versions
//! Tree version = block height. jmt's `put_value_set(changes, v)` starts from the root node at
//! `v - 1` (it never searches for "the latest root"), reads only nodes committed by earlier
//! versions, and returns a `TreeUpdateBatch` of new nodes, versioned values and stale-node
//! records. For a version without effective changes (an empty block, or deletions of absent
//! keys) jmt copies the previous root node to version `v`, so every committed height has a root
//! node and the next version finds its base.
//!
//! # Pruning
//! jmt records a node as stale at version `s` when version `s` replaces it; such a node is needed
//! only by versions `< s`. Two gaps are closed here:
//! * jmt does not mark the previous root stale when it copies it forward (empty block) or when
//!   it replaces a `Null` root, so [`apply_commit`] always marks root `v - 1` stale at `v` (it is
//!   never referenced by a later tree: children always have non-empty nibble paths).
//! * jmt keeps no staleness for values, so a value `(key hash, w)` is recorded stale at `v` when
//!   `v` writes the same key again; a deletion tombstone is stale from its own version on (once
//!   it leaves the window, "no entry" reads the same as "deleted").
//!
//! After committing `v` with `keep_versions = k`, everything stale at `s <= v + 1 - k` is
//! deleted, so versions `v + 1 - k ..= v` stay complete. A root node at `h` is stale at `h + 1`,
//! no later than any node below it, so "root node of `h` exists" implies the whole tree of `h`
//! does; [`prove_at`] relies on that to answer `Unavailable` instead of a missing-node error.

use flock_primitives::{Hash, Height};
use jmt::proof::SparseMerkleProof;
use jmt::storage::{LeafNode, NibblePath, Node, NodeKey, TreeReader};
use jmt::{JellyfishMerkleTree, KeyHash, OwnedValue, RootHash, Version};
use sha2::Sha256;

use crate::{BlockCommit, CommitInfo, StateProof, StorageError};

/// The tree type used everywhere: jmt over sha2-256.
type Tree<'a, R> = JellyfishMerkleTree<'a, R, Sha256>;

/// Upper bound on an encoded proof accepted by [`verify_proof`]: a leaf (65 bytes), a length
/// prefix and at most 256 siblings of at most 65 bytes each, rounded up.
pub const MAX_PROOF_BYTES: usize = 32 * 1024;

/// Hash of a state key as the tree stores it (sha2-256 of the key bytes).
pub(crate) fn key_hash(key: &[u8]) -> KeyHash {
    KeyHash::with::<Sha256>(key)
}

/// The key of the root node of version `version` (the empty nibble path).
pub(crate) fn root_key(version: Version) -> NodeKey {
    // jmt keeps `NibblePath::new` crate-private; an empty iterator of nibbles builds the empty path.
    let empty: NibblePath = std::iter::empty().collect();
    NodeKey::new(version, empty)
}

/// Read access to a backend's tree tables: what jmt's `TreeReader` needs.
pub(crate) trait JmtRead {
    /// The node stored under `key`.
    fn node(&self, key: &NodeKey) -> Result<Option<Node>, StorageError>;

    /// The newest value entry of `key_hash` with version `<= max_version`: `Some(None)` is a
    /// deletion tombstone, `None` means no entry.
    fn value(
        &self,
        key_hash: &KeyHash,
        max_version: Version,
    ) -> Result<Option<Option<Vec<u8>>>, StorageError>;

    /// The leaf with the largest key hash (a full scan; jmt calls it only when restoring a tree
    /// from chunks, which this crate never does).
    fn rightmost_leaf(&self) -> Result<Option<(NodeKey, LeafNode)>, StorageError>;
}

/// The individual writes of one block commit, on top of reads of the state before the block.
///
/// [`apply_commit`] performs every check and every jmt computation before the first write, so a
/// backend whose writes cannot fail (the in-memory one) is atomic too.
pub(crate) trait CommitBackend: JmtRead {
    /// The last committed block.
    fn latest(&self) -> Result<Option<CommitInfo>, StorageError>;

    /// Stores a tree node.
    fn put_node(&mut self, key: &NodeKey, node: &Node) -> Result<(), StorageError>;

    /// Stores a versioned tree value (`None`: deleted at `version`).
    fn put_value(
        &mut self,
        key_hash: &KeyHash,
        version: Version,
        value: Option<&[u8]>,
    ) -> Result<(), StorageError>;

    /// Records that node `key` is stale from version `since` on.
    fn mark_stale_node(&mut self, since: Version, key: &NodeKey) -> Result<(), StorageError>;

    /// Records that value `(key_hash, version)` is stale from version `since` on.
    fn mark_stale_value(
        &mut self,
        since: Version,
        key_hash: &KeyHash,
        version: Version,
    ) -> Result<(), StorageError>;

    /// Deletes every node and value recorded stale at a version `<= through`, and the records.
    fn prune(&mut self, through: Version) -> Result<(), StorageError>;

    /// Sets (or, for `None`, removes) the flat state entry of `key`, tagged with `version`;
    /// returns the version tag of the entry it replaced.
    fn set_state(
        &mut self,
        key: &[u8],
        version: Version,
        value: Option<&[u8]>,
    ) -> Result<Option<Version>, StorageError>;

    /// Writes block, receipts, per-height hashes, the transaction index and the latest-commit
    /// record.
    fn put_block(
        &mut self,
        commit: &BlockCommit<'_>,
        info: &CommitInfo,
    ) -> Result<(), StorageError>;
}

/// Adapts a [`JmtRead`] to jmt's `anyhow`-based `TreeReader`.
struct Reader<'a, B: ?Sized>(&'a B);

impl<B: JmtRead + ?Sized> TreeReader for Reader<'_, B> {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        Ok(self.0.node(node_key)?)
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        Ok(self.0.value(&key_hash, max_version)?.flatten())
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        Ok(self.0.rightmost_leaf()?)
    }
}

/// Maps a jmt error back to ours: a [`StorageError`] raised by our reader comes back as itself.
fn from_jmt(e: anyhow::Error) -> StorageError {
    match e.downcast_ref::<StorageError>() {
        Some(inner) => inner.clone(),
        None => StorageError::Jmt(format!("{e:#}")),
    }
}

/// Checks a commit's contract and its height against `latest`; writes nothing.
fn check_commit(commit: &BlockCommit<'_>, latest: Option<&CommitInfo>) -> Result<(), StorageError> {
    let expected = latest.map_or(Height(0), |info| info.height.next());
    if commit.height != expected {
        return Err(StorageError::HeightMismatch { expected, got: commit.height });
    }
    if let Some(i) = commit.changes.windows(2).position(|w| w[0].0 >= w[1].0) {
        return Err(StorageError::InvalidCommit(format!(
            "state changes must be sorted by key without duplicates (entries {i} and {})",
            i + 1
        )));
    }
    if u32::try_from(commit.tx_hashes.len()).is_err() {
        return Err(StorageError::InvalidCommit("more than u32::MAX transactions".into()));
    }
    Ok(())
}

/// Commits one block to `backend` (see the module docs); returns the new state root.
pub(crate) fn apply_commit<B: CommitBackend>(
    backend: &mut B,
    keep_versions: u64,
    commit: &BlockCommit<'_>,
) -> Result<Hash, StorageError> {
    check_commit(commit, backend.latest()?.as_ref())?;
    let version = commit.height.0;

    let (root, batch) = {
        let reader = Reader(&*backend);
        let tree = Tree::new(&reader);
        let value_set = commit.changes.iter().map(|(key, value)| (key_hash(key), value.clone()));
        tree.put_value_set(value_set, version).map_err(from_jmt)?
    };
    let state_root = Hash(root.0);

    for (key, node) in batch.node_batch.nodes() {
        backend.put_node(key, node)?;
    }
    for ((value_version, kh), value) in batch.node_batch.values() {
        backend.put_value(kh, *value_version, value.as_deref())?;
    }
    for stale in &batch.stale_node_index_batch {
        backend.mark_stale_node(stale.stale_since_version, &stale.node_key)?;
    }
    if version > 0 {
        backend.mark_stale_node(version, &root_key(version - 1))?;
    }
    for (key, value) in commit.changes {
        let kh = key_hash(key);
        if let Some(previous) = backend.set_state(key, version, value.as_deref())? {
            backend.mark_stale_value(version, &kh, previous)?;
        }
        if value.is_none() {
            backend.mark_stale_value(version, &kh, version)?;
        }
    }
    if let Some(through) = version.saturating_add(1).checked_sub(keep_versions) {
        backend.prune(through)?;
    }

    let info = CommitInfo { height: commit.height, block_hash: commit.block_hash, state_root };
    backend.put_block(commit, &info)?;
    Ok(state_root)
}

/// Reads a backend through the tree nodes and values of speculative versions not written yet.
struct Overlay<'a, B: ?Sized> {
    base: &'a B,
    nodes: std::collections::HashMap<NodeKey, Node>,
    /// Per key hash, its speculative value entries in version order.
    values: std::collections::HashMap<KeyHash, Vec<(Version, Option<OwnedValue>)>>,
}

impl<B: JmtRead + ?Sized> TreeReader for Overlay<'_, B> {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        match self.nodes.get(node_key) {
            Some(n) => Ok(Some(n.clone())),
            None => Ok(self.base.node(node_key)?),
        }
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        let newest = self
            .values
            .get(&key_hash)
            .and_then(|vs| vs.iter().rev().find(|(v, _)| *v <= max_version));
        match newest {
            Some((_, value)) => Ok(value.clone()),
            None => Ok(self.base.value(&key_hash, max_version)?.flatten()),
        }
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        Ok(self.base.rightmost_leaf()?)
    }
}

/// The state roots that committing `pending` (the changes of successive blocks) on top of the
/// backend's latest version would give, computed without writing anything.
pub(crate) fn speculative_roots<B: JmtRead + ?Sized>(
    backend: &B,
    latest: Option<&CommitInfo>,
    pending: &[&[crate::StateChange]],
) -> Result<Vec<Hash>, StorageError> {
    let mut overlay = Overlay {
        base: backend,
        nodes: std::collections::HashMap::new(),
        values: std::collections::HashMap::new(),
    };
    let first = latest.map_or(0, |info| info.height.0 + 1);
    let mut roots = Vec::with_capacity(pending.len());
    for (version, changes) in (first..).zip(pending) {
        if let Some(i) = changes.windows(2).position(|w| w[0].0 >= w[1].0) {
            return Err(StorageError::InvalidCommit(format!(
                "state changes must be sorted by key without duplicates (entries {i} and {})",
                i + 1
            )));
        }
        let (root, batch) = {
            let tree = Tree::new(&overlay);
            let value_set = changes.iter().map(|(key, value)| (key_hash(key), value.clone()));
            tree.put_value_set(value_set, version).map_err(from_jmt)?
        };
        for (key, node) in batch.node_batch.nodes() {
            overlay.nodes.insert(key.clone(), node.clone());
        }
        for ((v, kh), value) in batch.node_batch.values() {
            overlay.values.entry(*kh).or_default().push((*v, value.clone()));
        }
        roots.push(Hash(root.0));
    }
    Ok(roots)
}

/// Builds a proof for `key` at `height`, whose state root is `root` (`None`: never committed).
pub(crate) fn prove_at<R: JmtRead + ?Sized>(
    reader: &R,
    key: &[u8],
    height: Height,
    root: Option<Hash>,
) -> Result<StateProof, StorageError> {
    let unavailable = StorageError::Unavailable { height };
    let Some(root) = root else { return Err(unavailable) };
    if reader.node(&root_key(height.0))?.is_none() {
        return Err(unavailable);
    }
    let reader = Reader(reader);
    let (value, proof) =
        Tree::new(&reader).get_with_proof(key_hash(key), height.0).map_err(from_jmt)?;
    let proof = borsh::to_vec(&proof).map_err(|e| StorageError::Jmt(e.to_string()))?;
    Ok(StateProof { height, root, value, proof })
}

/// Verifies a borsh-encoded jmt proof (as in [`StateProof::proof`]) that `key` has `value`
/// (`None`: is absent) in the state whose root is `root`.
///
/// The proof bytes may come from anyone: they are size-checked (at most [`MAX_PROOF_BYTES`])
/// before decoding.
pub fn verify_proof(
    root: &Hash,
    key: &[u8],
    value: Option<&[u8]>,
    proof: &[u8],
) -> Result<(), StorageError> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(StorageError::InvalidProof(format!(
            "{} bytes, more than the {MAX_PROOF_BYTES} a proof can take",
            proof.len()
        )));
    }
    let proof: SparseMerkleProof<Sha256> =
        borsh::from_slice(proof).map_err(|e| StorageError::InvalidProof(e.to_string()))?;
    proof
        .verify(RootHash(root.0), key_hash(key), value)
        .map_err(|e| StorageError::InvalidProof(format!("{e:#}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_state_root_is_jmts_empty_root() {
        assert_eq!(crate::EMPTY_STATE_ROOT.0, Tree::<Reader<'_, dyn JmtRead>>::EMPTY_ROOT.0);
    }

    #[test]
    fn root_key_has_the_empty_path() {
        let key = root_key(7);
        assert_eq!(key.version(), 7);
        assert!(key.nibble_path().is_empty());
    }
}
