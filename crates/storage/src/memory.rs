//! [`MemStore`]: the in-memory backend, for tests and differential checks.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use flock_primitives::{Hash, Height};
use jmt::storage::{LeafNode, Node, NodeKey};
use jmt::{KeyHash, Version};

use crate::jmt_store::{self, CommitBackend, JmtRead};
use crate::{
    BlockCommit, CommitInfo, StateEntry, StateProof, StorageError, Store, StoreConfig, StoreStats,
};

/// A [`Store`] kept in `BTreeMap`s, running the same tree code as
/// [`RedbStore`](crate::RedbStore), so the two give identical roots for identical commits.
///
/// A commit is atomic: every check and every tree computation happens before the first write,
/// and the writes themselves cannot fail. Nothing survives a drop.
#[derive(Debug, Clone)]
pub struct MemStore {
    keep_versions: u64,
    tables: Tables,
}

#[derive(Debug, Clone, Default)]
struct Tables {
    latest: Option<CommitInfo>,
    blocks: BTreeMap<u64, Vec<u8>>,
    receipts: BTreeMap<u64, Vec<u8>>,
    /// height -> (block hash, state root)
    heights: BTreeMap<u64, (Hash, Hash)>,
    txs: HashMap<Hash, (Height, u32)>,
    /// key -> (version of the last write, value)
    state: BTreeMap<Vec<u8>, (Version, Vec<u8>)>,
    nodes: HashMap<NodeKey, Node>,
    values: BTreeMap<(KeyHash, Version), Option<Vec<u8>>>,
    stale_nodes: BTreeSet<(Version, NodeKey)>,
    stale_values: BTreeSet<(Version, KeyHash, Version)>,
}

impl MemStore {
    /// An empty store with the default [`StoreConfig`].
    pub fn new() -> Self {
        Self { keep_versions: StoreConfig::default().keep_versions, tables: Tables::default() }
    }

    /// An empty store with `config` (only `keep_versions` applies in memory).
    pub fn with_config(config: StoreConfig) -> Result<Self, StorageError> {
        config.validate()?;
        Ok(Self { keep_versions: config.keep_versions, tables: Tables::default() })
    }
}

impl Default for MemStore {
    fn default() -> Self {
        Self::new()
    }
}

impl JmtRead for Tables {
    fn node(&self, key: &NodeKey) -> Result<Option<Node>, StorageError> {
        Ok(self.nodes.get(key).cloned())
    }

    fn value(
        &self,
        key_hash: &KeyHash,
        max_version: Version,
    ) -> Result<Option<Option<Vec<u8>>>, StorageError> {
        Ok(self
            .values
            .range((*key_hash, 0)..=(*key_hash, max_version))
            .next_back()
            .map(|(_, v)| v.clone()))
    }

    fn rightmost_leaf(&self) -> Result<Option<(NodeKey, LeafNode)>, StorageError> {
        Ok(self
            .nodes
            .iter()
            .filter_map(|(k, n)| match n {
                Node::Leaf(leaf) => Some((k.clone(), leaf.clone())),
                _ => None,
            })
            .max_by_key(|(_, leaf)| leaf.key_hash()))
    }
}

impl CommitBackend for Tables {
    fn latest(&self) -> Result<Option<CommitInfo>, StorageError> {
        Ok(self.latest)
    }

    fn put_node(&mut self, key: &NodeKey, node: &Node) -> Result<(), StorageError> {
        self.nodes.insert(key.clone(), node.clone());
        Ok(())
    }

    fn put_value(
        &mut self,
        key_hash: &KeyHash,
        version: Version,
        value: Option<&[u8]>,
    ) -> Result<(), StorageError> {
        self.values.insert((*key_hash, version), value.map(<[u8]>::to_vec));
        Ok(())
    }

    fn mark_stale_node(&mut self, since: Version, key: &NodeKey) -> Result<(), StorageError> {
        self.stale_nodes.insert((since, key.clone()));
        Ok(())
    }

    fn mark_stale_value(
        &mut self,
        since: Version,
        key_hash: &KeyHash,
        version: Version,
    ) -> Result<(), StorageError> {
        self.stale_values.insert((since, *key_hash, version));
        Ok(())
    }

    fn prune(&mut self, through: Version) -> Result<(), StorageError> {
        while let Some((since, key)) = self.stale_nodes.first().cloned() {
            if since > through {
                break;
            }
            self.stale_nodes.pop_first();
            self.nodes.remove(&key);
        }
        while let Some(&(since, key_hash, version)) = self.stale_values.first() {
            if since > through {
                break;
            }
            self.stale_values.pop_first();
            self.values.remove(&(key_hash, version));
        }
        Ok(())
    }

    fn set_state(
        &mut self,
        key: &[u8],
        version: Version,
        value: Option<&[u8]>,
    ) -> Result<Option<Version>, StorageError> {
        let previous = match value {
            Some(value) => self.state.insert(key.to_vec(), (version, value.to_vec())),
            None => self.state.remove(key),
        };
        Ok(previous.map(|(v, _)| v))
    }

    fn put_block(
        &mut self,
        commit: &BlockCommit<'_>,
        info: &CommitInfo,
    ) -> Result<(), StorageError> {
        let h = commit.height.0;
        self.blocks.insert(h, commit.block.to_vec());
        self.receipts.insert(h, commit.receipts.to_vec());
        self.heights.insert(h, (info.block_hash, info.state_root));
        for (i, tx) in commit.tx_hashes.iter().enumerate() {
            // `apply_commit` checked that the count fits in a u32.
            self.txs.insert(*tx, (commit.height, i as u32));
        }
        self.latest = Some(*info);
        Ok(())
    }
}

impl Store for MemStore {
    fn latest(&self) -> Result<Option<CommitInfo>, StorageError> {
        Ok(self.tables.latest)
    }

    fn commit_block(&mut self, commit: BlockCommit<'_>) -> Result<Hash, StorageError> {
        jmt_store::apply_commit(&mut self.tables, self.keep_versions, &commit)
    }

    fn block(&self, height: Height) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.tables.blocks.get(&height.0).cloned())
    }

    fn receipts(&self, height: Height) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.tables.receipts.get(&height.0).cloned())
    }

    fn block_hash(&self, height: Height) -> Result<Option<Hash>, StorageError> {
        Ok(self.tables.heights.get(&height.0).map(|(hash, _)| *hash))
    }

    fn state_root(&self, height: Height) -> Result<Option<Hash>, StorageError> {
        Ok(self.tables.heights.get(&height.0).map(|(_, root)| *root))
    }

    fn tx_location(&self, tx: &Hash) -> Result<Option<(Height, u32)>, StorageError> {
        Ok(self.tables.txs.get(tx).copied())
    }

    fn get_state(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.tables.state.get(key).map(|(_, value)| value.clone()))
    }

    fn state_entries(&self) -> Result<Vec<StateEntry>, StorageError> {
        Ok(self.tables.state.iter().map(|(k, (_, v))| (k.clone(), v.clone())).collect())
    }

    fn prove_at(&self, key: &[u8], height: Height) -> Result<StateProof, StorageError> {
        jmt_store::prove_at(&self.tables, key, height, self.state_root(height)?)
    }

    fn speculative_roots(
        &self,
        pending: &[&[crate::StateChange]],
    ) -> Result<Vec<Hash>, StorageError> {
        jmt_store::speculative_roots(&self.tables, self.latest()?.as_ref(), pending)
    }

    fn stats(&self) -> Result<StoreStats, StorageError> {
        let t = &self.tables;
        Ok(StoreStats {
            state_entries: t.state.len() as u64,
            jmt_nodes: t.nodes.len() as u64,
            jmt_values: t.values.len() as u64,
            stale_nodes: t.stale_nodes.len() as u64,
            stale_values: t.stale_values.len() as u64,
        })
    }
}
