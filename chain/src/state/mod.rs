//! Shard state: the committed key-value state under a sparse Merkle tree, the
//! block store, and the overlays execution writes into before a block commits.
//!
//! Everything persistent lives in one sled tree under key prefixes, so a block
//! commit is a single atomic `sled::Batch`: values, the block, its receipts,
//! the transaction index and the new head land together or not at all.
//!
//! The Merkle tree itself is derived data: its nodes live in memory and are
//! rebuilt from the values when the store opens, and the rebuilt root must
//! equal the head's state root or the store refuses to open. Persisting the
//! ~2 log2(n) nodes an update touches dominated the cost of a commit in sled
//! (docs/benchmarks.md); recomputing them once at start costs seconds per
//! million accounts. Committed values are also kept in memory for reads.

pub mod smt;
pub mod snapshot;

use crate::block::{Block, BlockHeader, CommitCertificate, Committee, Receipt};
use crate::codec;
use crate::error::{ChainError, Result};
use crate::hash::{hash_tagged, tag, Hash};
use crate::types::{Height, TimeMs};
use borsh::{BorshDeserialize, BorshSerialize};
use smt::{NodeBatch, SparseMerkleProof, SparseMerkleTree};
use snapshot::{SnapshotChunk, SnapshotManifest};
use std::collections::{BTreeMap, HashMap};

const P_VALUE: &[u8] = b"v/";
const P_BLOCK: &[u8] = b"b/";
const P_RECEIPTS: &[u8] = b"r/";
const P_TX: &[u8] = b"t/";
const P_DIFF: &[u8] = b"d/";
const K_CHECKPOINT: &[u8] = b"m/checkpoint";
/// Snapshots: `s/<height>/m` the manifest with its block's header and
/// certificate, `s/<height>/c/<index>` the chunks.
const P_SNAPSHOT: &[u8] = b"s/";
/// Lowest height whose block body this store has (a restored or pruned store).
const K_BASE: &[u8] = b"m/base";

/// Blocks between checkpoints of the value store. In between, each block's
/// writes are persisted as one record (`d/<height>`), a single sled insert
/// per block instead of one per written key; a checkpoint folds them into
/// `v/` (each key once, however often it changed) and drops the records.
pub const CHECKPOINT_INTERVAL: Height = 64;
const P_WAL: &[u8] = b"w/";
const K_HEAD: &[u8] = b"m/head";
const K_GENESIS: &[u8] = b"m/genesis";

/// Opens (or creates) the sled database of a node at `dir`.
///
/// sled releases its directory lock only when its background IO threads
/// finish after the last handle drops, so reopening right after a close (a
/// restart in the simulator or a test) can briefly see the lock held: that
/// case is retried for up to two seconds. Another live process holding the
/// directory still gets a clear error.
pub fn open_db(dir: &std::path::Path, flush_every_ms: Option<u64>) -> Result<sled::Db> {
    let mut waited = 0;
    loop {
        let opened = sled::Config::new()
            .path(dir)
            .cache_capacity(64 << 20)
            .flush_every_ms(flush_every_ms)
            .open();
        match opened {
            Ok(db) => return Ok(db),
            Err(e) if waited < 2_000 && e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(10));
                waited += 10;
            }
            Err(e) if e.to_string().contains("could not acquire lock") => {
                return Err(ChainError::Storage(format!(
                    "{} is in use by another process (is another node running on it?)",
                    dir.display()
                )))
            }
            Err(e) => {
                return Err(ChainError::Storage(format!(
                    "opening {}: {e}",
                    dir.display()
                )))
            }
        }
    }
}

/// Bound on any stored value we decode (blocks are the largest).
const MAX_STORED: usize = 64 * 1024 * 1024;

/// The last committed block.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Head {
    pub height: Height,
    pub block: Hash,
    pub state_root: Hash,
    pub time: TimeMs,
}

/// Where a committed transaction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct TxLocation {
    pub height: Height,
    pub index: u32,
}

/// Read access to state values by raw key.
pub trait StateRead {
    fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
}

/// Pending writes: `None` deletes.
pub type WriteSet = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Writes layered over a base; a failed call drops its overlay, a successful
/// one merges it into its parent.
pub struct Overlay<'a> {
    base: &'a dyn StateRead,
    writes: WriteSet,
}

impl<'a> Overlay<'a> {
    pub fn new(base: &'a dyn StateRead) -> Overlay<'a> {
        Overlay {
            base,
            writes: WriteSet::new(),
        }
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    pub fn into_writes(self) -> WriteSet {
        self.writes
    }

    pub fn merge(&mut self, child: WriteSet) {
        self.writes.extend(child);
    }

    pub fn writes(&self) -> &WriteSet {
        &self.writes
    }
}

impl StateRead for Overlay<'_> {
    fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.base.read(key),
        }
    }
}

/// The result of executing a block, held until the block commits.
#[derive(Debug)]
pub struct StateDiff {
    pub writes: WriteSet,
    pub nodes: NodeBatch,
    pub state_root: Hash,
}

/// Reads stored receipts by height, apart from the [`StateStore`] (a
/// block pruned meanwhile reads as `None`).
#[derive(Clone, Debug)]
pub struct ReceiptsReader {
    tree: sled::Tree,
}

impl ReceiptsReader {
    pub fn receipts(&self, height: Height) -> Result<Option<Vec<Receipt>>> {
        match self.tree.get(prefixed(P_RECEIPTS, &height.to_be_bytes()))? {
            Some(b) => Ok(Some(codec::decode("stored receipts", &b, MAX_STORED)?)),
            None => Ok(None),
        }
    }
}

/// A shard's committed state and blocks in one sled tree.
pub struct StateStore {
    tree: sled::Tree,
    smt: SparseMerkleTree,
    /// Every committed value (persisted as `v/` at the last checkpoint plus
    /// the `d/` records of the blocks since).
    values: HashMap<Vec<u8>, Vec<u8>>,
    /// Latest write per key since the last checkpoint.
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    checkpoint: Height,
    head: Option<Head>,
    /// Keep the id -> (height, index) lookup that status queries need.
    index_txs: bool,
}

fn prefixed(prefix: &[u8], key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + key.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(key);
    k
}

fn snapshot_prefix(height: Height) -> Vec<u8> {
    let mut p = P_SNAPSHOT.to_vec();
    p.extend_from_slice(&height.to_be_bytes());
    p.push(b'/');
    p
}

fn smt_key(key: &[u8]) -> Hash {
    hash_tagged(tag::STATE_KEY, key)
}

fn smt_value(value: &[u8]) -> Hash {
    hash_tagged(tag::STATE_VALUE, value)
}

/// Whether the sled database holds a chain yet (a head): a node whose store
/// is empty may fast-sync into it instead of starting from genesis.
pub fn has_chain(db: &sled::Db) -> Result<bool> {
    Ok(db.open_tree("chain")?.get(K_HEAD)?.is_some())
}

impl StateStore {
    /// Opens the store in `db` (tree `chain`); an empty store has no head until genesis.
    pub fn open(db: &sled::Db) -> Result<StateStore> {
        let tree = db.open_tree("chain")?;
        let smt = SparseMerkleTree::in_memory();
        let head: Option<Head> = match tree.get(K_HEAD)? {
            Some(b) => Some(codec::decode("head", &b, 1024)?),
            None => None,
        };
        let mut values = HashMap::new();
        for item in tree.scan_prefix(P_VALUE) {
            let (k, v) = item?;
            values.insert(k[P_VALUE.len()..].to_vec(), v.to_vec());
        }
        // Replay the writes of blocks committed since the checkpoint, in order.
        let mut pending = BTreeMap::new();
        for item in tree.scan_prefix(P_DIFF) {
            let (_, v) = item?;
            let writes: Vec<(Vec<u8>, Option<Vec<u8>>)> =
                codec::decode("block writes", &v, MAX_STORED)?;
            for (k, v) in writes {
                match &v {
                    Some(v) => values.insert(k.clone(), v.clone()),
                    None => values.remove(&k),
                };
                pending.insert(k, v);
            }
        }
        let checkpoint = match tree.get(K_CHECKPOINT)? {
            Some(b) => codec::decode("checkpoint", &b, 16)?,
            None => 0,
        };
        let mut updates: Vec<(Hash, Option<Hash>)> = values
            .iter()
            .map(|(k, v)| (smt_key(k), Some(smt_value(v))))
            .collect();
        updates.sort_by_key(|u| u.0);
        let (root, nodes) = smt
            .update(Hash::ZERO, &updates)
            .map_err(|e| ChainError::Storage(e.to_string()))?;
        smt.write_batch(&nodes, &mut sled::Batch::default());
        let expected = head.as_ref().map(|h| h.state_root).unwrap_or(Hash::ZERO);
        if root != expected {
            return Err(ChainError::Storage(format!(
                "state in the data directory hashes to {root}, but its head says {expected}: \
                 the directory is damaged"
            )));
        }
        Ok(StateStore {
            tree,
            smt,
            values,
            pending,
            checkpoint,
            head,
            index_txs: true,
        })
    }

    /// Whether commits maintain the transaction index. It is derived data for
    /// status queries (gateways need it); a validator can do without, and it
    /// is one random-key write per transaction.
    pub fn set_index_txs(&mut self, on: bool) {
        self.index_txs = on;
    }

    /// Hash of the genesis this store was initialized with.
    pub fn genesis_hash(&self) -> Result<Option<Hash>> {
        Ok(self.tree.get(K_GENESIS)?.and_then(|b| {
            let arr: [u8; 32] = b.as_ref().try_into().ok()?;
            Some(Hash(arr))
        }))
    }

    pub fn head(&self) -> Option<&Head> {
        self.head.as_ref()
    }

    /// Root of the committed state (the empty root before genesis).
    pub fn state_root(&self) -> Hash {
        self.head
            .as_ref()
            .map(|h| h.state_root)
            .unwrap_or(Hash::ZERO)
    }

    /// Computes the new root for `writes` on top of the committed state.
    pub fn diff(&self, writes: WriteSet) -> Result<StateDiff> {
        let updates: Vec<(Hash, Option<Hash>)> = {
            let mut u: Vec<(Hash, Option<Hash>)> = writes
                .iter()
                .map(|(k, v)| (smt_key(k), v.as_deref().map(smt_value)))
                .collect();
            u.sort_by_key(|x| x.0);
            u
        };
        let (state_root, nodes) = self
            .smt
            .update(self.state_root(), &updates)
            .map_err(|e| ChainError::Storage(e.to_string()))?;
        Ok(StateDiff {
            writes,
            nodes,
            state_root,
        })
    }

    /// Atomically stores genesis state (height 0).
    pub fn commit_genesis(
        &mut self,
        genesis_hash: Hash,
        time: TimeMs,
        diff: StateDiff,
    ) -> Result<()> {
        let mut batch = sled::Batch::default();
        self.write_diff(&diff, &mut batch);
        let head = Head {
            height: 0,
            block: genesis_hash,
            state_root: diff.state_root,
            time,
        };
        batch.insert(K_GENESIS, genesis_hash.0.to_vec());
        batch.insert(K_HEAD, codec::encode(&head));
        self.tree.apply_batch(batch)?;
        self.apply_in_memory(&diff);
        self.head = Some(head);
        Ok(())
    }

    fn write_diff(&self, diff: &StateDiff, batch: &mut sled::Batch) {
        for (k, v) in &diff.writes {
            let key = prefixed(P_VALUE, k);
            match v {
                Some(v) => batch.insert(key, v.clone()),
                None => batch.remove(key),
            }
        }
    }

    /// After the sled batch landed: the in-memory copies follow.
    fn apply_in_memory(&mut self, diff: &StateDiff) {
        for (k, v) in &diff.writes {
            match v {
                Some(v) => self.values.insert(k.clone(), v.clone()),
                None => self.values.remove(k),
            };
        }
        self.smt
            .write_batch(&diff.nodes, &mut sled::Batch::default());
    }

    /// Atomically commits a finalized block with its certificate, receipts and state diff.
    pub fn commit_block(
        &mut self,
        block: &Block,
        cert: &CommitCertificate,
        receipts: &[Receipt],
        diff: &StateDiff,
    ) -> Result<()> {
        let height = block.header.height;
        let expected = self.head.as_ref().map(|h| h.height + 1).unwrap_or(0);
        if height != expected {
            return Err(ChainError::InvalidBlock(format!(
                "commit of height {height}, expected {expected}"
            )));
        }
        if diff.state_root != block.header.state_root {
            return Err(ChainError::InvalidBlock(
                "state root mismatch at commit".into(),
            ));
        }
        let mut batch = sled::Batch::default();
        let hkey = height.to_be_bytes();
        let writes: Vec<(&Vec<u8>, &Option<Vec<u8>>)> = diff.writes.iter().collect();
        batch.insert(prefixed(P_DIFF, &hkey), codec::encode(&writes));
        batch.insert(prefixed(P_BLOCK, &hkey), codec::encode(&(block, cert)));
        batch.insert(
            prefixed(P_RECEIPTS, &hkey),
            codec::encode(&receipts.to_vec()),
        );
        // Receipts carry the transaction ids, already hashed (a last
        // receipt of the block's own events, if any, is not a transaction's).
        if self.index_txs {
            for (i, r) in receipts.iter().take(block.txs.len()).enumerate() {
                let loc = TxLocation {
                    height,
                    index: i as u32,
                };
                batch.insert(prefixed(P_TX, &r.tx.0), codec::encode(&loc));
            }
        }
        let head = Head {
            height,
            block: block.hash(),
            state_root: diff.state_root,
            time: block.header.time,
        };
        batch.insert(K_HEAD, codec::encode(&head));
        self.tree.apply_batch(batch)?;
        self.apply_in_memory(diff);
        for (k, v) in &diff.writes {
            self.pending.insert(k.clone(), v.clone());
        }
        self.head = Some(head);
        if height >= self.checkpoint + CHECKPOINT_INTERVAL {
            // The block is committed either way: its write record stays until a
            // later checkpoint succeeds.
            if let Err(e) = self.write_checkpoint(height) {
                tracing::warn!(height, error = %e, "state checkpoint failed; will retry");
            }
        }
        Ok(())
    }

    /// Folds the block write records since the last checkpoint into `v/`,
    /// atomically with dropping them.
    fn write_checkpoint(&mut self, height: Height) -> Result<()> {
        let mut batch = sled::Batch::default();
        for (k, v) in &self.pending {
            let key = prefixed(P_VALUE, k);
            match v {
                Some(v) => batch.insert(key, v.clone()),
                None => batch.remove(key),
            }
        }
        for h in self.checkpoint + 1..=height {
            batch.remove(prefixed(P_DIFF, &h.to_be_bytes()));
        }
        batch.insert(K_CHECKPOINT, codec::encode(&height));
        self.tree.apply_batch(batch)?;
        self.pending.clear();
        self.checkpoint = height;
        Ok(())
    }

    pub fn block(&self, height: Height) -> Result<Option<(Block, CommitCertificate)>> {
        match self.tree.get(prefixed(P_BLOCK, &height.to_be_bytes()))? {
            Some(b) => Ok(Some(codec::decode("stored block", &b, MAX_STORED)?)),
            None => Ok(None),
        }
    }

    pub fn receipts(&self, height: Height) -> Result<Option<Vec<Receipt>>> {
        self.receipts_reader().receipts(height)
    }

    /// A handle that reads committed receipts from any thread while the
    /// store goes on (indexers read history without holding the replica).
    pub fn receipts_reader(&self) -> ReceiptsReader {
        ReceiptsReader {
            tree: self.tree.clone(),
        }
    }

    pub fn tx_location(&self, id: &Hash) -> Result<Option<TxLocation>> {
        match self.tree.get(prefixed(P_TX, &id.0))? {
            Some(b) => Ok(Some(codec::decode("tx location", &b, 64)?)),
            None => Ok(None),
        }
    }

    /// The committed value of `key` and a proof of it (or of its absence) against the state root.
    pub fn prove(&self, key: &[u8]) -> Result<(Option<Vec<u8>>, SparseMerkleProof)> {
        let value = self.read(key)?;
        let proof = self
            .smt
            .prove(self.state_root(), smt_key(key))
            .map_err(|e| ChainError::Storage(e.to_string()))?;
        Ok((value, proof))
    }

    /// Lowest height whose block this store holds: 1 for a store that
    /// started at genesis, higher once restored from a snapshot or pruned.
    pub fn base(&self) -> Result<Height> {
        Ok(match self.tree.get(K_BASE)? {
            Some(b) => codec::decode("base height", &b, 16)?,
            None => 1,
        })
    }

    /// Keeps the committed state as a snapshot of the block `header` (the
    /// head) certified by `cert`, and drops all but the newest `keep`.
    pub fn save_snapshot(
        &self,
        header: &BlockHeader,
        cert: &CommitCertificate,
        keep: usize,
    ) -> Result<SnapshotManifest> {
        let head = self
            .head
            .as_ref()
            .ok_or_else(|| ChainError::Storage("no head to snapshot".into()))?;
        if head.height != header.height || head.state_root != header.state_root {
            return Err(ChainError::Snapshot(format!(
                "the snapshot's block is at height {}, the head at {}",
                header.height, head.height
            )));
        }
        let (manifest, chunks) =
            snapshot::build(&self.values, header.shard, head.height, head.state_root);
        let mut batch = sled::Batch::default();
        Self::write_snapshot(&mut batch, &manifest, header, cert, &chunks);
        let kept = self.snapshot_heights()?;
        let drop = (kept.len() + 1).saturating_sub(keep.max(1));
        for h in kept.iter().take(drop) {
            for item in self.tree.scan_prefix(snapshot_prefix(*h)) {
                batch.remove(item?.0);
            }
        }
        self.tree.apply_batch(batch)?;
        Ok(manifest)
    }

    fn write_snapshot(
        batch: &mut sled::Batch,
        manifest: &SnapshotManifest,
        header: &BlockHeader,
        cert: &CommitCertificate,
        chunks: &[SnapshotChunk],
    ) {
        let p = snapshot_prefix(manifest.height);
        batch.insert(prefixed(&p, b"m"), codec::encode(&(manifest, header, cert)));
        for c in chunks {
            let mut k = prefixed(&p, b"c/");
            k.extend_from_slice(&c.index.to_be_bytes());
            batch.insert(k, codec::encode(c));
        }
    }

    /// Heights of the snapshots kept, oldest first.
    pub fn snapshot_heights(&self) -> Result<Vec<Height>> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(P_SNAPSHOT) {
            let (k, _) = item?;
            if k.ends_with(b"/m") && k.len() == P_SNAPSHOT.len() + 8 + 2 {
                let mut h = [0u8; 8];
                h.copy_from_slice(&k[P_SNAPSHOT.len()..P_SNAPSHOT.len() + 8]);
                out.push(Height::from_be_bytes(h));
            }
        }
        Ok(out)
    }

    /// A kept snapshot's manifest, with its block's header and certificate.
    pub fn snapshot_manifest(
        &self,
        height: Height,
    ) -> Result<Option<(SnapshotManifest, BlockHeader, CommitCertificate)>> {
        match self.tree.get(prefixed(&snapshot_prefix(height), b"m"))? {
            Some(b) => Ok(Some(codec::decode("snapshot manifest", &b, MAX_STORED)?)),
            None => Ok(None),
        }
    }

    /// Chunk `index` of the snapshot at `height`, if kept.
    pub fn snapshot_chunk(&self, height: Height, index: u32) -> Result<Option<SnapshotChunk>> {
        let mut k = prefixed(&snapshot_prefix(height), b"c/");
        k.extend_from_slice(&index.to_be_bytes());
        match self.tree.get(k)? {
            Some(b) => Ok(Some(codec::decode("snapshot chunk", &b, MAX_STORED)?)),
            None => Ok(None),
        }
    }

    /// Deletes the block bodies and receipts below `height` (and their
    /// transaction index entries). The state and the snapshots stay; a peer
    /// that needs older blocks fast-syncs from a snapshot instead.
    pub fn prune_blocks_below(&self, height: Height) -> Result<u64> {
        let base = self.base()?;
        let top = height.min(self.head.as_ref().map_or(0, |h| h.height));
        if top <= base {
            return Ok(0);
        }
        let mut batch = sled::Batch::default();
        for h in base..top {
            let hk = h.to_be_bytes();
            if let Some(b) = self.tree.get(prefixed(P_RECEIPTS, &hk))? {
                let receipts: Vec<Receipt> = codec::decode("stored receipts", &b, MAX_STORED)?;
                for r in receipts {
                    batch.remove(prefixed(P_TX, &r.tx.0));
                }
            }
            batch.remove(prefixed(P_BLOCK, &hk));
            batch.remove(prefixed(P_RECEIPTS, &hk));
        }
        batch.insert(K_BASE, codec::encode(&top));
        self.tree.apply_batch(batch)?;
        Ok(top - base)
    }

    /// Fills the empty store in `db` with the state of a snapshot, checked
    /// before anything is written: `cert` must finalize `header` under
    /// `committee` (the caller's light client says whose), the manifest must
    /// be of that block and its chunk roots make the header's state root,
    /// and every chunk, each exactly once, must hash to its root. The store
    /// then starts at that block (its base; no earlier bodies) and keeps
    /// the snapshot to serve it in turn.
    pub fn restore(
        db: &sled::Db,
        genesis_hash: Hash,
        committee: &Committee,
        header: &BlockHeader,
        cert: &CommitCertificate,
        manifest: &SnapshotManifest,
        chunks: &[SnapshotChunk],
    ) -> Result<StateStore> {
        let tree = db.open_tree("chain")?;
        if tree.get(K_HEAD)?.is_some() {
            return Err(ChainError::Snapshot(
                "the data directory already holds a chain; restore into an empty one".into(),
            ));
        }
        manifest.verify_certified(header, cert, committee)?;
        let mut seen = vec![false; manifest.chunks.len()];
        for c in chunks {
            c.verify(manifest)?;
            if std::mem::replace(&mut seen[c.index as usize], true) {
                return Err(ChainError::Snapshot(format!("chunk {} twice", c.index)));
            }
        }
        if let Some(missing) = seen.iter().position(|s| !s) {
            return Err(ChainError::Snapshot(format!("chunk {missing} is missing")));
        }
        let mut batch = sled::Batch::default();
        for c in chunks {
            for (k, v) in &c.entries {
                batch.insert(prefixed(P_VALUE, k), v.clone());
            }
        }
        let head = Head {
            height: header.height,
            block: header.hash(),
            state_root: header.state_root,
            time: header.time,
        };
        batch.insert(K_GENESIS, genesis_hash.0.to_vec());
        batch.insert(K_HEAD, codec::encode(&head));
        batch.insert(K_CHECKPOINT, codec::encode(&header.height));
        batch.insert(K_BASE, codec::encode(&(header.height + 1)));
        Self::write_snapshot(&mut batch, manifest, header, cert, chunks);
        tree.apply_batch(batch)?;
        StateStore::open(db)
    }

    /// All committed values whose key starts with `prefix`, in key order.
    pub fn scan(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = self
            .values
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Consensus write-ahead record (see `consensus`): persisted before a vote leaves.
    pub fn wal_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.tree.get(prefixed(P_WAL, key))?.map(|v| v.to_vec()))
    }

    pub fn wal_put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.tree.insert(prefixed(P_WAL, key), value)?;
        Ok(())
    }

    pub fn wal_clear(&self) -> Result<()> {
        let mut batch = sled::Batch::default();
        for item in self.tree.scan_prefix(P_WAL) {
            let (k, _) = item?;
            batch.remove(k);
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Forces everything written so far to disk (sled buffers otherwise).
    pub fn flush(&self) -> Result<()> {
        self.tree.flush()?;
        Ok(())
    }
}

impl StateRead for StateStore {
    fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.values.get(key).cloned())
    }
}

/// Pure check of a state proof from `StateStore::prove`.
pub fn verify_state_proof(
    root: &Hash,
    key: &[u8],
    value: Option<&[u8]>,
    proof: &SparseMerkleProof,
) -> Result<()> {
    let vh = value.map(smt_value);
    smt::verify_proof(root, &smt_key(key), vh.as_ref(), proof)
        .map_err(|e| ChainError::Proof(e.to_string()))
}
