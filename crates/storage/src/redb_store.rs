//! [`RedbStore`]: the on-disk backend, one redb file, one write transaction per block.

use std::path::Path;

use flock_primitives::{Hash, Height};
use jmt::storage::{LeafNode, Node, NodeKey};
use jmt::{KeyHash, Version};
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    Table, TableDefinition, WriteTransaction,
};

use crate::jmt_store::{self, CommitBackend, JmtRead};
use crate::{
    BlockCommit, CommitInfo, StateEntry, StateProof, StorageError, Store, StoreConfig, StoreStats,
};

/// Small records: [`FORMAT_KEY`] and [`LATEST_KEY`].
const META: TableDefinition<'static, &'static str, &'static [u8]> = TableDefinition::new("meta");
/// height -> block bytes.
const BLOCKS: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("blocks");
/// height -> receipt bytes.
const RECEIPTS: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("receipts");
/// height -> (block hash, state root); kept for every height.
const HEIGHTS: TableDefinition<'static, u64, ([u8; 32], [u8; 32])> =
    TableDefinition::new("heights");
/// tx hash -> (height, index in block).
const TX_INDEX: TableDefinition<'static, [u8; 32], (u64, u32)> = TableDefinition::new("tx_index");
/// state key -> big-endian version of the last write ‖ value.
const STATE: TableDefinition<'static, &'static [u8], &'static [u8]> = TableDefinition::new("state");
/// borsh(NodeKey) -> borsh(Node).
const JMT_NODES: TableDefinition<'static, &'static [u8], &'static [u8]> =
    TableDefinition::new("jmt_nodes");
/// key hash ‖ big-endian version -> value (`None`: deleted at that version). Big-endian makes
/// "newest version <= v" one reverse range step.
const JMT_VALUES: TableDefinition<'static, [u8; 40], Option<&'static [u8]>> =
    TableDefinition::new("jmt_values");
/// big-endian stale-since version ‖ borsh(NodeKey) -> (). Sorted by version, so pruning is a
/// prefix range.
const STALE_NODES: TableDefinition<'static, &'static [u8], ()> =
    TableDefinition::new("jmt_stale_nodes");
/// big-endian stale-since version ‖ key hash ‖ big-endian value version -> ().
const STALE_VALUES: TableDefinition<'static, [u8; 48], ()> =
    TableDefinition::new("jmt_stale_values");

/// Meta key of the file-format tag.
const FORMAT_KEY: &str = "format";
/// The file-format tag this code writes and accepts.
const FORMAT: &[u8] = b"flock-storage/1";
/// Meta key of the latest [`CommitInfo`]: big-endian height ‖ block hash ‖ state root.
const LATEST_KEY: &str = "latest";

/// A [`Store`] in one redb database file.
///
/// Each [`commit_block`](Store::commit_block) is one redb write transaction holding everything
/// the block changes (tree nodes and values, flat state, block, receipts, indexes, the latest
/// record, pruning), committed with fsync unless [`StoreConfig::fsync`] is off. redb's commit is
/// atomic (copy-on-write pages and a checksummed, double-buffered header), so a crash at any
/// point leaves either the whole block or none of it, and [`open`](Self::open) resumes at the
/// last committed block.
pub struct RedbStore {
    db: Database,
    config: StoreConfig,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").field("config", &self.config).finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens (or creates) the database file at `path` with the default [`StoreConfig`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StorageError> {
        Self::open_with(path, StoreConfig::default())
    }

    /// Opens (or creates) the database file at `path` with `config`.
    ///
    /// Fails with [`StorageError::Corrupt`] if the file holds a different format, and with
    /// [`StorageError::Db`] if another process has it open.
    pub fn open_with(path: impl AsRef<Path>, config: StoreConfig) -> Result<Self, StorageError> {
        config.validate()?;
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        {
            // Creating every table up front lets read transactions open them unconditionally.
            let tables = WriteTables::open(&txn)?;
            let mut meta = tables.meta;
            let format = meta.get(FORMAT_KEY)?.map(|g| g.value().to_vec());
            match format {
                Some(f) if f == FORMAT => {}
                Some(f) => {
                    return Err(StorageError::Corrupt(format!(
                        "file format {:?}, expected {:?}",
                        String::from_utf8_lossy(&f),
                        String::from_utf8_lossy(FORMAT)
                    )))
                }
                None if meta.get(LATEST_KEY)?.is_some() => {
                    return Err(StorageError::Corrupt("blocks without a format tag".into()))
                }
                None => {
                    meta.insert(FORMAT_KEY, FORMAT)?;
                }
            }
        }
        txn.commit()?;
        Ok(Self { db, config })
    }

    /// The configuration this store was opened with.
    pub fn config(&self) -> StoreConfig {
        self.config
    }

    /// Turns fsync on every commit on or off (see [`StoreConfig::fsync`]).
    pub fn set_fsync(&mut self, fsync: bool) {
        self.config.fsync = fsync;
    }

    fn read(&self) -> Result<ReadTransaction, StorageError> {
        Ok(self.db.begin_read()?)
    }

    fn read_bytes(
        &self,
        table: TableDefinition<'static, u64, &'static [u8]>,
        height: Height,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let txn = self.read()?;
        let table = txn.open_table(table)?;
        Ok(table.get(height.0)?.map(|g| g.value().to_vec()))
    }

    fn heights_row(&self, height: Height) -> Result<Option<(Hash, Hash)>, StorageError> {
        let txn = self.read()?;
        let table = txn.open_table(HEIGHTS)?;
        Ok(table.get(height.0)?.map(|g| {
            let (hash, root) = g.value();
            (Hash(hash), Hash(root))
        }))
    }
}

/// The tree tables, over either a read or a write transaction.
struct RedbJmt<N, V> {
    nodes: N,
    values: V,
}

impl<N, V> JmtRead for RedbJmt<N, V>
where
    N: ReadableTable<&'static [u8], &'static [u8]>,
    V: ReadableTable<[u8; 40], Option<&'static [u8]>>,
{
    fn node(&self, key: &NodeKey) -> Result<Option<Node>, StorageError> {
        let Some(bytes) = self.nodes.get(encode_node_key(key)?.as_slice())? else {
            return Ok(None);
        };
        decode_node(bytes.value()).map(Some)
    }

    fn value(
        &self,
        key_hash: &KeyHash,
        max_version: Version,
    ) -> Result<Option<Option<Vec<u8>>>, StorageError> {
        let range = value_key(key_hash, 0)..=value_key(key_hash, max_version);
        match self.values.range(range)?.next_back() {
            Some(entry) => Ok(Some(entry?.1.value().map(<[u8]>::to_vec))),
            None => Ok(None),
        }
    }

    fn rightmost_leaf(&self) -> Result<Option<(NodeKey, LeafNode)>, StorageError> {
        let mut best: Option<(NodeKey, LeafNode)> = None;
        for entry in self.nodes.range::<&[u8]>(..)? {
            let (key, node) = entry?;
            if let Node::Leaf(leaf) = decode_node(node.value())? {
                if best.as_ref().is_none_or(|(_, b)| leaf.key_hash() > b.key_hash()) {
                    let key = borsh::from_slice(key.value())
                        .map_err(|e| StorageError::Corrupt(format!("tree node key: {e}")))?;
                    best = Some((key, leaf));
                }
            }
        }
        Ok(best)
    }
}

/// [`JMT_NODES`] opened for writing.
type NodesTable<'txn> = Table<'txn, &'static [u8], &'static [u8]>;
/// [`JMT_VALUES`] opened for writing.
type ValuesTable<'txn> = Table<'txn, [u8; 40], Option<&'static [u8]>>;

/// Every table, opened in one write transaction: the [`CommitBackend`] for one block.
struct WriteTables<'txn> {
    meta: Table<'txn, &'static str, &'static [u8]>,
    blocks: Table<'txn, u64, &'static [u8]>,
    receipts: Table<'txn, u64, &'static [u8]>,
    heights: Table<'txn, u64, ([u8; 32], [u8; 32])>,
    tx_index: Table<'txn, [u8; 32], (u64, u32)>,
    state: Table<'txn, &'static [u8], &'static [u8]>,
    jmt: RedbJmt<NodesTable<'txn>, ValuesTable<'txn>>,
    stale_nodes: Table<'txn, &'static [u8], ()>,
    stale_values: Table<'txn, [u8; 48], ()>,
}

impl<'txn> WriteTables<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Self, StorageError> {
        Ok(Self {
            meta: txn.open_table(META)?,
            blocks: txn.open_table(BLOCKS)?,
            receipts: txn.open_table(RECEIPTS)?,
            heights: txn.open_table(HEIGHTS)?,
            tx_index: txn.open_table(TX_INDEX)?,
            state: txn.open_table(STATE)?,
            jmt: RedbJmt { nodes: txn.open_table(JMT_NODES)?, values: txn.open_table(JMT_VALUES)? },
            stale_nodes: txn.open_table(STALE_NODES)?,
            stale_values: txn.open_table(STALE_VALUES)?,
        })
    }
}

impl JmtRead for WriteTables<'_> {
    fn node(&self, key: &NodeKey) -> Result<Option<Node>, StorageError> {
        self.jmt.node(key)
    }

    fn value(
        &self,
        key_hash: &KeyHash,
        max_version: Version,
    ) -> Result<Option<Option<Vec<u8>>>, StorageError> {
        self.jmt.value(key_hash, max_version)
    }

    fn rightmost_leaf(&self) -> Result<Option<(NodeKey, LeafNode)>, StorageError> {
        self.jmt.rightmost_leaf()
    }
}

impl CommitBackend for WriteTables<'_> {
    fn latest(&self) -> Result<Option<CommitInfo>, StorageError> {
        self.meta.get(LATEST_KEY)?.map(|g| decode_commit_info(g.value())).transpose()
    }

    fn put_node(&mut self, key: &NodeKey, node: &Node) -> Result<(), StorageError> {
        let node = borsh::to_vec(node).map_err(|e| StorageError::Jmt(e.to_string()))?;
        self.jmt.nodes.insert(encode_node_key(key)?.as_slice(), node.as_slice())?;
        Ok(())
    }

    fn put_value(
        &mut self,
        key_hash: &KeyHash,
        version: Version,
        value: Option<&[u8]>,
    ) -> Result<(), StorageError> {
        self.jmt.values.insert(value_key(key_hash, version), value)?;
        Ok(())
    }

    fn mark_stale_node(&mut self, since: Version, key: &NodeKey) -> Result<(), StorageError> {
        let mut record = since.to_be_bytes().to_vec();
        record.extend_from_slice(&encode_node_key(key)?);
        self.stale_nodes.insert(record.as_slice(), ())?;
        Ok(())
    }

    fn mark_stale_value(
        &mut self,
        since: Version,
        key_hash: &KeyHash,
        version: Version,
    ) -> Result<(), StorageError> {
        let mut record = [0u8; 48];
        record[..8].copy_from_slice(&since.to_be_bytes());
        record[8..].copy_from_slice(&value_key(key_hash, version));
        self.stale_values.insert(record, ())?;
        Ok(())
    }

    fn prune(&mut self, through: Version) -> Result<(), StorageError> {
        // Records are sorted by big-endian version, so "since <= through" is everything below
        // the first record of `through + 1`.
        let Some(end) = through.checked_add(1) else {
            return Err(StorageError::Corrupt("version overflow while pruning".into()));
        };
        let end_nodes = end.to_be_bytes();
        for record in self.stale_nodes.extract_from_if(..end_nodes.as_slice(), |_, _| true)? {
            let (record, _) = record?;
            self.jmt.nodes.remove(&record.value()[8..])?;
        }
        let mut end_values = [0u8; 48];
        end_values[..8].copy_from_slice(&end_nodes);
        for record in self.stale_values.extract_from_if(..end_values, |_, _| true)? {
            let (record, _) = record?;
            let value_key: [u8; 40] = record.value()[8..]
                .try_into()
                .map_err(|_| StorageError::Corrupt("stale value record".into()))?;
            self.jmt.values.remove(value_key)?;
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
            Some(value) => {
                let mut entry = Vec::with_capacity(8 + value.len());
                entry.extend_from_slice(&version.to_be_bytes());
                entry.extend_from_slice(value);
                self.state.insert(key, entry.as_slice())?
            }
            None => self.state.remove(key)?,
        };
        previous.map(|g| split_state_entry(g.value()).map(|(v, _)| v)).transpose()
    }

    fn put_block(
        &mut self,
        commit: &BlockCommit<'_>,
        info: &CommitInfo,
    ) -> Result<(), StorageError> {
        let h = commit.height.0;
        self.blocks.insert(h, commit.block)?;
        self.receipts.insert(h, commit.receipts)?;
        self.heights.insert(h, (info.block_hash.0, info.state_root.0))?;
        for (i, tx) in commit.tx_hashes.iter().enumerate() {
            // `apply_commit` checked that the count fits in a u32.
            self.tx_index.insert(tx.0, (h, i as u32))?;
        }
        self.meta.insert(LATEST_KEY, encode_commit_info(info).as_slice())?;
        Ok(())
    }
}

impl Store for RedbStore {
    fn latest(&self) -> Result<Option<CommitInfo>, StorageError> {
        let txn = self.read()?;
        let meta = txn.open_table(META)?;
        let latest = meta.get(LATEST_KEY)?;
        latest.map(|g| decode_commit_info(g.value())).transpose()
    }

    fn commit_block(&mut self, commit: BlockCommit<'_>) -> Result<Hash, StorageError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(if self.config.fsync {
            Durability::Immediate
        } else {
            Durability::None
        })?;
        // On any error the transaction is dropped uncommitted, which aborts it: nothing of the
        // block reaches the file.
        let root = {
            let mut tables = WriteTables::open(&txn)?;
            jmt_store::apply_commit(&mut tables, self.config.keep_versions, &commit)?
        };
        txn.commit()?;
        Ok(root)
    }

    fn block(&self, height: Height) -> Result<Option<Vec<u8>>, StorageError> {
        self.read_bytes(BLOCKS, height)
    }

    fn receipts(&self, height: Height) -> Result<Option<Vec<u8>>, StorageError> {
        self.read_bytes(RECEIPTS, height)
    }

    fn block_hash(&self, height: Height) -> Result<Option<Hash>, StorageError> {
        Ok(self.heights_row(height)?.map(|(hash, _)| hash))
    }

    fn state_root(&self, height: Height) -> Result<Option<Hash>, StorageError> {
        Ok(self.heights_row(height)?.map(|(_, root)| root))
    }

    fn tx_location(&self, tx: &Hash) -> Result<Option<(Height, u32)>, StorageError> {
        let txn = self.read()?;
        let table = txn.open_table(TX_INDEX)?;
        Ok(table.get(tx.0)?.map(|g| {
            let (h, i) = g.value();
            (Height(h), i)
        }))
    }

    fn get_state(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let txn = self.read()?;
        let table = txn.open_table(STATE)?;
        let entry = table.get(key)?;
        entry.map(|g| split_state_entry(g.value()).map(|(_, v)| v.to_vec())).transpose()
    }

    fn state_entries(&self) -> Result<Vec<StateEntry>, StorageError> {
        let txn = self.read()?;
        let table = txn.open_table(STATE)?;
        let mut out = Vec::with_capacity(usize::try_from(table.len()?).unwrap_or(0));
        for entry in table.range::<&[u8]>(..)? {
            let (key, value) = entry?;
            let (_, value) = split_state_entry(value.value())?;
            out.push((key.value().to_vec(), value.to_vec()));
        }
        Ok(out)
    }

    fn prove_at(&self, key: &[u8], height: Height) -> Result<StateProof, StorageError> {
        let txn = self.read()?;
        let root = txn.open_table(HEIGHTS)?.get(height.0)?.map(|g| Hash(g.value().1));
        let tree =
            RedbJmt { nodes: txn.open_table(JMT_NODES)?, values: txn.open_table(JMT_VALUES)? };
        jmt_store::prove_at(&tree, key, height, root)
    }

    fn speculative_roots(
        &self,
        pending: &[&[crate::StateChange]],
    ) -> Result<Vec<Hash>, StorageError> {
        let latest = self.latest()?;
        let txn = self.read()?;
        let tree =
            RedbJmt { nodes: txn.open_table(JMT_NODES)?, values: txn.open_table(JMT_VALUES)? };
        jmt_store::speculative_roots(&tree, latest.as_ref(), pending)
    }

    fn stats(&self) -> Result<StoreStats, StorageError> {
        let txn = self.read()?;
        Ok(StoreStats {
            state_entries: txn.open_table(STATE)?.len()?,
            jmt_nodes: txn.open_table(JMT_NODES)?.len()?,
            jmt_values: txn.open_table(JMT_VALUES)?.len()?,
            stale_nodes: txn.open_table(STALE_NODES)?.len()?,
            stale_values: txn.open_table(STALE_VALUES)?.len()?,
        })
    }
}

fn encode_node_key(key: &NodeKey) -> Result<Vec<u8>, StorageError> {
    borsh::to_vec(key).map_err(|e| StorageError::Jmt(e.to_string()))
}

fn decode_node(bytes: &[u8]) -> Result<Node, StorageError> {
    borsh::from_slice(bytes).map_err(|e| StorageError::Corrupt(format!("tree node: {e}")))
}

fn value_key(key_hash: &KeyHash, version: Version) -> [u8; 40] {
    let mut out = [0u8; 40];
    out[..32].copy_from_slice(&key_hash.0);
    out[32..].copy_from_slice(&version.to_be_bytes());
    out
}

fn split_state_entry(entry: &[u8]) -> Result<(Version, &[u8]), StorageError> {
    let Some((version, value)) = entry.split_first_chunk::<8>() else {
        return Err(StorageError::Corrupt("state entry shorter than its version tag".into()));
    };
    Ok((u64::from_be_bytes(*version), value))
}

fn encode_commit_info(info: &CommitInfo) -> [u8; 72] {
    let mut out = [0u8; 72];
    out[..8].copy_from_slice(&info.height.0.to_be_bytes());
    out[8..40].copy_from_slice(&info.block_hash.0);
    out[40..].copy_from_slice(&info.state_root.0);
    out
}

fn decode_commit_info(bytes: &[u8]) -> Result<CommitInfo, StorageError> {
    let bytes: &[u8; 72] = bytes
        .try_into()
        .map_err(|_| StorageError::Corrupt(format!("latest record of {} bytes", bytes.len())))?;
    let mut height = [0u8; 8];
    height.copy_from_slice(&bytes[..8]);
    let mut block_hash = [0u8; 32];
    block_hash.copy_from_slice(&bytes[8..40]);
    let mut state_root = [0u8; 32];
    state_root.copy_from_slice(&bytes[40..]);
    Ok(CommitInfo {
        height: Height(u64::from_be_bytes(height)),
        block_hash: Hash(block_hash),
        state_root: Hash(state_root),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_info_round_trips_and_rejects_bad_lengths() {
        let info = CommitInfo {
            height: Height(0x0102_0304_0506_0708),
            block_hash: Hash([3; 32]),
            state_root: Hash([9; 32]),
        };
        assert_eq!(decode_commit_info(&encode_commit_info(&info)).unwrap(), info);
        assert!(matches!(decode_commit_info(&[0; 71]), Err(StorageError::Corrupt(_))));
    }

    #[test]
    fn value_keys_sort_by_key_hash_then_version() {
        let a = KeyHash([1; 32]);
        let b = KeyHash([2; 32]);
        assert!(value_key(&a, 255) < value_key(&a, 256));
        assert!(value_key(&a, u64::MAX) < value_key(&b, 0));
    }

    #[test]
    fn short_state_entries_are_corrupt_not_a_panic() {
        assert!(matches!(split_state_entry(&[1, 2, 3]), Err(StorageError::Corrupt(_))));
        assert_eq!(split_state_entry(&[0, 0, 0, 0, 0, 0, 0, 5, 42]).unwrap(), (5, &[42u8][..]));
    }
}
