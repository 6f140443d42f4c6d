//! Sparse Merkle tree (SMT) over sled with blake3: the authenticated map behind
//! the state root. This module owns the node format (a borsh enum of leaf and
//! internal nodes), the hashing of nodes under `tag::SMT_LEAF` / `tag::SMT_NODE`,
//! the content-addressed storage layout (`prefix || node_hash -> borsh(node)` in
//! one shared `sled::Tree`), batched updates, and inclusion/exclusion proofs that
//! verify with the pure [`verify_proof`].
//!
//! Shape: a binary tree of depth 256 over already-hashed keys, read MSB-first
//! (bit 0 of the path is the top bit of byte 0; a 0 bit goes left). It is
//! compressed in the Diem/Aptos-JMT binary style: an empty subtree is
//! `Hash::ZERO` and never stored, a subtree holding exactly one leaf *is* that
//! leaf (placed at the highest position where it is alone), so an internal node
//! never has children (Empty, Leaf), (Leaf, Empty) or (Empty, Empty). Deletions
//! collapse back, so the root is a function of the set of (key, value) pairs
//! only, never of insertion order or history.
//!
//! Writes are the caller's: [`SparseMerkleTree::update`] returns the new nodes
//! (and the ones it made unreachable) in a [`NodeBatch`], and
//! [`SparseMerkleTree::write_batch`] applies it. Two backings: sled-backed
//! (`new`), where nodes go into the caller's `sled::Batch`, are never
//! deleted and every older root stays readable; and in-memory
//! (`in_memory`, what the state store uses), where stale nodes are dropped
//! at each write and only the latest root is readable.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError};

use borsh::{BorshDeserialize, BorshSerialize};

use crate::hash::{tag, DomainHasher, Hash};

/// Depth of the tree: one level per key bit, so no path is longer than this.
pub const TREE_DEPTH: usize = 256;

/// Default bound on cached decoded nodes (~60 MiB worst case); past it the
/// cache is cleared rather than evicted piecemeal, which keeps it simple and
/// still bounded.
const DEFAULT_CACHE_CAPACITY: usize = 1 << 19;

/// Length of a stored node: one borsh variant byte and two 32-byte hashes.
const ENCODED_NODE_LEN: usize = 65;

/// A stored node. Empty subtrees are `Hash::ZERO` and have no node. The borsh
/// encoding of this enum is the stored format, so variant order is frozen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
enum Node {
    /// The only entry of its subtree.
    Leaf { key: Hash, value: Hash },
    /// A subtree with at least two leaves.
    Internal { left: Hash, right: Hash },
}

impl Node {
    /// Content address of the node; what its parent and the storage key hold.
    fn hash(&self) -> Hash {
        match self {
            Node::Leaf { key, value } => leaf_hash(key, value),
            Node::Internal { left, right } => internal_hash(left, right),
        }
    }

    /// Borsh encoding written by hand into a fixed array so encoding can
    /// neither allocate nor fail; a test pins it equal to `borsh::to_vec`.
    fn encode(&self) -> [u8; ENCODED_NODE_LEN] {
        let (variant, a, b) = match self {
            Node::Leaf { key, value } => (0u8, key, value),
            Node::Internal { left, right } => (1u8, left, right),
        };
        let mut out = [0u8; ENCODED_NODE_LEN];
        out[0] = variant;
        out[1..33].copy_from_slice(&a.0);
        out[33..65].copy_from_slice(&b.0);
        out
    }
}

/// `H(SMT_LEAF, key || value)`: a leaf commits to both its key and value so an
/// exclusion proof can show which other key occupies a path.
fn leaf_hash(key: &Hash, value: &Hash) -> Hash {
    let mut h = DomainHasher::new(tag::SMT_LEAF);
    h.update(&key.0).update(&value.0);
    h.finalize()
}

/// `H(SMT_NODE, left || right)`: domain-separated from leaves so an internal
/// node can never be passed off as a leaf or vice versa.
fn internal_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = DomainHasher::new(tag::SMT_NODE);
    h.update(&left.0).update(&right.0);
    h.finalize()
}

/// A subtree's root as its parent sees it: compression lifts a lone leaf to
/// the highest position where it is alone, so a parent must know whether a
/// child is a single leaf. Snapshot chunks are described by these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum SubtreeRoot {
    Empty,
    Leaf(Hash),
    Internal(Hash),
}

impl SubtreeRoot {
    pub fn hash(&self) -> Hash {
        match self {
            SubtreeRoot::Empty => Hash::ZERO,
            SubtreeRoot::Leaf(h) | SubtreeRoot::Internal(h) => *h,
        }
    }

    /// The parent of two sibling subtrees, as the tree builds it.
    pub fn combine(left: SubtreeRoot, right: SubtreeRoot) -> SubtreeRoot {
        match (left, right) {
            (SubtreeRoot::Empty, SubtreeRoot::Empty) => SubtreeRoot::Empty,
            (SubtreeRoot::Empty, SubtreeRoot::Leaf(h))
            | (SubtreeRoot::Leaf(h), SubtreeRoot::Empty) => SubtreeRoot::Leaf(h),
            (l, r) => SubtreeRoot::Internal(internal_hash(&l.hash(), &r.hash())),
        }
    }

    /// The root of the subtree at `depth` holding `pairs` (key hash, value
    /// hash), which must be sorted by key, distinct, and share their first
    /// `depth` bits: the definition of the tree, computed from the pairs alone.
    pub fn of(pairs: &[(Hash, Hash)], depth: usize) -> SubtreeRoot {
        match pairs {
            [] => SubtreeRoot::Empty,
            [(key, value)] => SubtreeRoot::Leaf(leaf_hash(key, value)),
            _ if depth >= TREE_DEPTH => {
                // Only equal keys get here, which the caller rules out; hash
                // them as an internal node rather than recurse forever.
                SubtreeRoot::Internal(internal_hash(&pairs[0].0, &pairs[1].0))
            }
            _ => {
                let split = pairs.partition_point(|(key, _)| !bit(key, depth));
                let (l, r) = pairs.split_at(split);
                SubtreeRoot::combine(SubtreeRoot::of(l, depth + 1), SubtreeRoot::of(r, depth + 1))
            }
        }
    }

    /// The root of a whole tree from its subtrees at one depth, in path
    /// order (a power of two of them), or `None` if their count is not one.
    pub fn root_of_level(level: &[SubtreeRoot]) -> Option<Hash> {
        if level.is_empty() || !level.len().is_power_of_two() {
            return None;
        }
        let mut level = level.to_vec();
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|pair| SubtreeRoot::combine(pair[0], pair[1]))
                .collect();
        }
        Some(level[0].hash())
    }
}

/// Bit `depth` of the key path, MSB-first; `true` means go right. Callers keep
/// `depth < TREE_DEPTH`; out-of-range depths read as `false` instead of panicking.
fn bit(key: &Hash, depth: usize) -> bool {
    match key.0.get(depth / 8) {
        Some(byte) => (byte >> (7 - (depth % 8))) & 1 == 1,
        None => false,
    }
}

/// Number of leading path bits two keys share; used to check that a leaf sits
/// on the path it is claimed (or stored) to be on.
fn common_prefix_bits(a: &Hash, b: &Hash) -> usize {
    for (i, (x, y)) in a.0.iter().zip(b.0.iter()).enumerate() {
        let diff = x ^ y;
        if diff != 0 {
            return i * 8 + diff.leading_zeros() as usize;
        }
    }
    TREE_DEPTH
}

/// Hasher for the node cache: keys are blake3 outputs, already uniform, so
/// folding their bytes is enough and much cheaper than SipHash. It is
/// deterministic; the cache is never iterated, so it cannot affect output.
#[derive(Default)]
struct NodeHashHasher(u64);

impl Hasher for NodeHashHasher {
    /// The folded state; already well mixed because the input is a digest.
    fn finish(&self) -> u64 {
        self.0
    }

    /// Folds 8-byte words (including the slice length std writes first).
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(23) ^ u64::from_le_bytes(word);
        }
    }
}

/// Decoded nodes by hash; bounded by clearing (see `DEFAULT_CACHE_CAPACITY`).
type NodeCache = HashMap<Hash, Node, BuildHasherDefault<NodeHashHasher>>;

/// Errors reading or updating the tree. Storage problems are typed, never panics.
#[derive(Debug, thiserror::Error)]
pub enum SmtError {
    /// The underlying sled store failed; carries sled's error text.
    #[error("smt storage error: {0}")]
    Storage(String),
    /// A node reachable from the given root is not in storage (pruned, never
    /// written, or the root is unknown).
    #[error("smt node {0} is missing from storage")]
    MissingNode(Hash),
    /// A stored node does not decode, does not hash to its address, or breaks
    /// the tree's shape (too deep, or a leaf off its path).
    #[error("smt node {0} is corrupt")]
    CorruptNode(Hash),
    /// `update` needs keys strictly increasing (sorted and unique).
    #[error("smt updates must be strictly sorted by key with no duplicates")]
    UnsortedUpdates,
}

/// Why a proof was rejected by [`verify_proof`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// A path can have at most 256 siblings (one per key bit).
    #[error("proof has {0} siblings, more than the tree depth of 256")]
    TooManySiblings(usize),
    /// An inclusion proof must end at a leaf, but this one ends at an empty subtree.
    #[error("inclusion proof carries no leaf")]
    MissingLeaf,
    /// The inclusion proof's leaf is for a different key.
    #[error("proof leaf is for a different key")]
    KeyMismatch,
    /// The inclusion proof's leaf holds a different value.
    #[error("proof leaf holds a different value")]
    ValueMismatch,
    /// Exclusion was asked, but the proof's leaf is the key itself: it is present.
    #[error("key is present, so it cannot be proven absent")]
    NotExcluded,
    /// The exclusion proof's leaf does not share the path prefix it claims to sit on.
    #[error("proof leaf does not lie on the key's path")]
    LeafNotOnPath,
    /// The recomputed root differs from the trusted one.
    #[error("proof does not hash to the expected root")]
    RootMismatch,
}

/// Proof that a key maps to a value, or is absent, under a root.
///
/// `siblings` are ordered from the root downward: `siblings[i]` is the hash of
/// the other child of the path's node at depth `i` (the subtree the key's bit
/// `i` does *not* go into). The path ends at depth `siblings.len()`, at `leaf`
/// if that position holds a single leaf, or at an empty subtree if `leaf` is
/// `None`. For an exclusion proof the leaf, if any, is another key's leaf that
/// occupies the key's path.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SparseMerkleProof {
    /// `(key, value)` of the leaf where the path ends, if it ends at a leaf.
    pub leaf: Option<(Hash, Hash)>,
    /// Sibling hashes, root first (see the type docs).
    pub siblings: Vec<Hash>,
}

/// New nodes produced by one [`SparseMerkleTree::update`], to be persisted by
/// the caller via [`SparseMerkleTree::write_batch`] so they commit atomically
/// with other data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeBatch {
    /// (content hash, node), in creation order (children before parents).
    nodes: Vec<(Hash, Node)>,
    /// Nodes of the old tree that the new root no longer reaches. Every node
    /// is reachable from one place only (leaves hash their full key), so an
    /// in-memory store can drop them at commit.
    stale: Vec<Hash>,
}

impl NodeBatch {
    /// Number of nodes to write; lets callers account for write volume.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when the update changed nothing that needs writing.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// What an updated subtree turned into. The parent needs the kind (not just the
/// hash) to hoist a lone leaf past an empty sibling.
#[derive(Clone, Copy, Debug)]
enum Sub {
    Empty,
    Leaf(Hash),
    Internal(Hash),
    /// Untouched subtree whose kind was not loaded; `ZERO` means empty.
    Unresolved(Hash),
}

impl Sub {
    /// The subtree's hash, as its parent stores it.
    fn hash(&self) -> Hash {
        match self {
            Sub::Empty => Hash::ZERO,
            Sub::Leaf(h) | Sub::Internal(h) | Sub::Unresolved(h) => *h,
        }
    }
}

/// A leaf already in a subtree being rebuilt that no update touches.
#[derive(Clone, Copy)]
struct Existing {
    key: Hash,
    hash: Hash,
}

/// Handle to the SMT nodes in one shared sled tree under a key prefix. Roots
/// are passed in and returned; the handle itself holds no root, so any number
/// of versions can be read side by side.
pub struct SparseMerkleTree {
    /// `None`: nodes live only in memory (the cache is then the store, never
    /// cleared), and the owner rebuilds the tree from its values on start.
    tree: Option<sled::Tree>,
    prefix: Vec<u8>,
    cache: Mutex<NodeCache>,
    cache_capacity: usize,
}

impl fmt::Debug for SparseMerkleTree {
    /// Shows the prefix and cache fill, not the store, which can be huge.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SparseMerkleTree")
            .field("prefix", &self.prefix)
            .field("cached_nodes", &self.lock_cache().len())
            .finish()
    }
}

impl SparseMerkleTree {
    /// Opens the node store living in `tree` under `prefix`; the prefix keeps
    /// nodes apart from the other data sharing the tree.
    pub fn new(tree: sled::Tree, prefix: &[u8]) -> Self {
        SparseMerkleTree {
            tree: Some(tree),
            prefix: prefix.to_vec(),
            cache: Mutex::new(NodeCache::default()),
            cache_capacity: DEFAULT_CACHE_CAPACITY,
        }
    }

    /// A tree whose nodes live only in memory and are pruned as they go stale:
    /// only the latest committed root stays readable. Writing ~2 log2(n) nodes
    /// per updated key to disk costs far more than recomputing the whole tree
    /// from the persisted values on start (see docs/architecture.md).
    pub fn in_memory() -> Self {
        SparseMerkleTree {
            tree: None,
            prefix: Vec::new(),
            cache: Mutex::new(NodeCache::default()),
            cache_capacity: usize::MAX,
        }
    }

    /// Nodes held in memory (all of them for an in-memory tree).
    pub fn nodes_in_memory(&self) -> usize {
        self.lock_cache().len()
    }

    /// Applies `updates` to the tree at `root` in one recursive pass that splits
    /// the sorted updates by the current key bit, so shared paths are walked and
    /// rehashed once per batch, not once per key.
    ///
    /// `updates` must be strictly sorted by key (unique); `Some(value)` inserts
    /// or overwrites, `None` deletes (deleting an absent key is a no-op).
    /// Returns the new root and the nodes to persist; nothing is written here.
    /// Reads only nodes that are stored or cached, so the batch of a previous
    /// update must be written before updating from the root it produced.
    pub fn update(
        &self,
        root: Hash,
        updates: &[(Hash, Option<Hash>)],
    ) -> Result<(Hash, NodeBatch), SmtError> {
        if updates.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(SmtError::UnsortedUpdates);
        }
        let mut batch = NodeBatch::default();
        let sub = self.update_at(root, 0, updates, &mut batch)?;
        Ok((sub.hash(), batch))
    }

    /// Adds the batch's nodes to the caller's sled batch (to be applied to this
    /// handle's tree) and to the read cache, so the next update from the new
    /// root does not go back to disk for nodes it just made.
    pub fn write_batch(&self, batch: &NodeBatch, out: &mut sled::Batch) {
        let mut cache = self.lock_cache();
        if self.tree.is_none() {
            // In memory, the batch replaces the old tree: drop what it made
            // unreachable (before inserting, as a node may be re-created).
            for hash in &batch.stale {
                cache.remove(hash);
            }
        }
        for (hash, node) in &batch.nodes {
            if self.tree.is_some() {
                out.insert(self.storage_key(hash), &node.encode()[..]);
            }
            if cache.len() >= self.cache_capacity {
                cache.clear();
            }
            cache.insert(*hash, *node);
        }
    }

    /// Value hash stored for `key` under `root`, or `None` if absent; the
    /// unproven read used by execution.
    pub fn get(&self, root: Hash, key: Hash) -> Result<Option<Hash>, SmtError> {
        let mut node = root;
        for depth in 0..=TREE_DEPTH {
            if node == Hash::ZERO {
                return Ok(None);
            }
            match self.load(&node)? {
                Node::Leaf { key: k, value } => return Ok((k == key).then_some(value)),
                Node::Internal { left, right } => {
                    if depth >= TREE_DEPTH {
                        break;
                    }
                    node = if bit(&key, depth) { right } else { left };
                }
            }
        }
        Err(SmtError::CorruptNode(node))
    }

    /// Inclusion proof for a present key, exclusion proof for an absent one;
    /// which one it is follows from the leaf it ends at.
    pub fn prove(&self, root: Hash, key: Hash) -> Result<SparseMerkleProof, SmtError> {
        let mut siblings = Vec::new();
        let mut node = root;
        for depth in 0..=TREE_DEPTH {
            if node == Hash::ZERO {
                return Ok(SparseMerkleProof {
                    leaf: None,
                    siblings,
                });
            }
            match self.load(&node)? {
                Node::Leaf { key: k, value } => {
                    return Ok(SparseMerkleProof {
                        leaf: Some((k, value)),
                        siblings,
                    })
                }
                Node::Internal { left, right } => {
                    if depth >= TREE_DEPTH {
                        break;
                    }
                    let (next, sibling) = if bit(&key, depth) {
                        (right, left)
                    } else {
                        (left, right)
                    };
                    siblings.push(sibling);
                    node = next;
                }
            }
        }
        Err(SmtError::CorruptNode(node))
    }

    /// Recursive step of `update` for the subtree `node` at `depth`; every key
    /// in `updates` lies under this subtree's path.
    fn update_at(
        &self,
        node: Hash,
        depth: usize,
        updates: &[(Hash, Option<Hash>)],
        batch: &mut NodeBatch,
    ) -> Result<Sub, SmtError> {
        let Some((first_key, _)) = updates.first() else {
            return Ok(Sub::Unresolved(node));
        };
        if node == Hash::ZERO {
            return self.build(depth, updates, None, batch);
        }
        match self.load(&node)? {
            Node::Leaf { key, .. } => {
                if common_prefix_bits(&key, first_key) < depth {
                    return Err(SmtError::CorruptNode(node));
                }
                let existing = match updates.binary_search_by(|(k, _)| k.cmp(&key)) {
                    Ok(_) => {
                        // Overwritten or deleted; an untouched leaf only moves.
                        batch.stale.push(node);
                        None
                    }
                    Err(_) => Some(Existing { key, hash: node }),
                };
                self.build(depth, updates, existing, batch)
            }
            Node::Internal { left, right } => {
                if depth >= TREE_DEPTH {
                    return Err(SmtError::CorruptNode(node));
                }
                let (lu, ru) = updates.split_at(updates.partition_point(|(k, _)| !bit(k, depth)));
                let l = self.update_at(left, depth + 1, lu, batch)?;
                let r = self.update_at(right, depth + 1, ru, batch)?;
                if l.hash() == left && r.hash() == right {
                    return Ok(Sub::Internal(node));
                }
                batch.stale.push(node);
                self.combine(l, r, batch)
            }
        }
    }

    /// Builds the canonical subtree at `depth` holding the inserts of `updates`
    /// plus the untouched `existing` leaf (deletes only drop keys here).
    fn build(
        &self,
        depth: usize,
        updates: &[(Hash, Option<Hash>)],
        existing: Option<Existing>,
        batch: &mut NodeBatch,
    ) -> Result<Sub, SmtError> {
        let inserts = updates.iter().filter(|(_, v)| v.is_some()).count();
        match (inserts, existing) {
            (0, None) => return Ok(Sub::Empty),
            (0, Some(e)) => return Ok(Sub::Leaf(e.hash)),
            (1, None) => {
                for (key, value) in updates {
                    if let Some(value) = value {
                        let node = Node::Leaf {
                            key: *key,
                            value: *value,
                        };
                        let hash = node.hash();
                        batch.nodes.push((hash, node));
                        return Ok(Sub::Leaf(hash));
                    }
                }
            }
            _ => {}
        }
        if depth >= TREE_DEPTH {
            // Unreachable: keys are distinct (checked, and `existing` is
            // dropped when updated), so two of them split above depth 256.
            return Err(SmtError::UnsortedUpdates);
        }
        let (lu, ru) = updates.split_at(updates.partition_point(|(k, _)| !bit(k, depth)));
        let (le, re) = match existing {
            Some(e) if bit(&e.key, depth) => (None, Some(e)),
            e => (e, None),
        };
        let l = self.build(depth + 1, lu, le, batch)?;
        let r = self.build(depth + 1, ru, re, batch)?;
        self.combine(l, r, batch)
    }

    /// Joins two updated children into their parent, keeping the tree
    /// canonical: empty+empty is empty and a lone leaf moves up.
    fn combine(&self, l: Sub, r: Sub, batch: &mut NodeBatch) -> Result<Sub, SmtError> {
        let (lh, rh) = (l.hash(), r.hash());
        let lone = match (lh == Hash::ZERO, rh == Hash::ZERO) {
            (true, true) => return Ok(Sub::Empty),
            (true, false) => Some(r),
            (false, true) => Some(l),
            (false, false) => None,
        };
        if let Some(only) = lone {
            let is_leaf = match only {
                Sub::Leaf(_) => true,
                Sub::Internal(_) | Sub::Empty => false,
                Sub::Unresolved(h) => matches!(self.load(&h)?, Node::Leaf { .. }),
            };
            if is_leaf {
                return Ok(Sub::Leaf(only.hash()));
            }
        }
        let node = Node::Internal {
            left: lh,
            right: rh,
        };
        let hash = node.hash();
        batch.nodes.push((hash, node));
        Ok(Sub::Internal(hash))
    }

    /// Reads and checks a node: from the cache, else from sled, verifying it
    /// decodes and hashes to its address before caching it.
    fn load(&self, hash: &Hash) -> Result<Node, SmtError> {
        if let Some(node) = self.lock_cache().get(hash) {
            return Ok(*node);
        }
        let Some(tree) = &self.tree else {
            return Err(SmtError::MissingNode(*hash));
        };
        let bytes = tree
            .get(self.storage_key(hash))
            .map_err(|e| SmtError::Storage(e.to_string()))?
            .ok_or(SmtError::MissingNode(*hash))?;
        let node = Node::try_from_slice(&bytes).map_err(|_| SmtError::CorruptNode(*hash))?;
        if node.hash() != *hash {
            return Err(SmtError::CorruptNode(*hash));
        }
        let mut cache = self.lock_cache();
        if cache.len() >= self.cache_capacity {
            cache.clear();
        }
        cache.insert(*hash, node);
        Ok(node)
    }

    /// `prefix || hash`: where a node lives in the shared tree.
    fn storage_key(&self, hash: &Hash) -> Vec<u8> {
        let mut key = Vec::with_capacity(self.prefix.len() + 32);
        key.extend_from_slice(&self.prefix);
        key.extend_from_slice(&hash.0);
        key
    }

    /// Locks the cache; a panic elsewhere while holding it leaves only cached
    /// copies of immutable nodes, so a poisoned lock is safe to reuse.
    fn lock_cache(&self) -> MutexGuard<'_, NodeCache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Checks `proof` against a trusted `root` with no storage, so light clients
/// and other nodes can verify state reads. `value = Some(v)` checks that `key`
/// maps to `v`; `None` checks that `key` is absent.
pub fn verify_proof(
    root: &Hash,
    key: &Hash,
    value: Option<&Hash>,
    proof: &SparseMerkleProof,
) -> Result<(), ProofError> {
    let depth = proof.siblings.len();
    if depth > TREE_DEPTH {
        return Err(ProofError::TooManySiblings(depth));
    }
    let mut acc = match (value, &proof.leaf) {
        (Some(_), None) => return Err(ProofError::MissingLeaf),
        (Some(v), Some((leaf_key, leaf_value))) => {
            if leaf_key != key {
                return Err(ProofError::KeyMismatch);
            }
            if leaf_value != v {
                return Err(ProofError::ValueMismatch);
            }
            leaf_hash(leaf_key, leaf_value)
        }
        (None, None) => Hash::ZERO,
        (None, Some((leaf_key, leaf_value))) => {
            if leaf_key == key {
                return Err(ProofError::NotExcluded);
            }
            if common_prefix_bits(leaf_key, key) < depth {
                return Err(ProofError::LeafNotOnPath);
            }
            leaf_hash(leaf_key, leaf_value)
        }
    };
    for (d, sibling) in proof.siblings.iter().enumerate().rev() {
        acc = if bit(key, d) {
            internal_hash(sibling, &acc)
        } else {
            internal_hash(&acc, sibling)
        };
    }
    if acc == *root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::hash_tagged;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    type Updates = Vec<(Hash, Option<Hash>)>;

    /// A fresh SMT over a temporary sled db, sharing its tree with unrelated data.
    fn temp_smt() -> (sled::Db, SparseMerkleTree) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("state").unwrap();
        tree.insert(b"other/data", b"unrelated").unwrap();
        let smt = SparseMerkleTree::new(tree, b"smt/");
        (db, smt)
    }

    /// Updates and applies the node batch to the store, like a block commit.
    fn commit(smt: &SparseMerkleTree, root: Hash, updates: &[(Hash, Option<Hash>)]) -> Hash {
        let (new_root, nodes) = smt.update(root, updates).unwrap();
        let mut batch = sled::Batch::default();
        smt.write_batch(&nodes, &mut batch);
        smt.tree.as_ref().unwrap().apply_batch(batch).unwrap();
        new_root
    }

    fn k(i: u32) -> Hash {
        hash_tagged(tag::STATE_KEY, &i.to_le_bytes())
    }

    fn v(i: u32) -> Hash {
        hash_tagged(tag::STATE_VALUE, &i.to_le_bytes())
    }

    /// Sorted insert updates for keys `0..n` with values `v(i + salt)`.
    fn inserts(n: u32, salt: u32) -> Updates {
        let map: BTreeMap<Hash, Hash> = (0..n).map(|i| (k(i), v(i + salt))).collect();
        map.into_iter().map(|(k, v)| (k, Some(v))).collect()
    }

    fn flip_bit(h: &Hash, bit_index: usize) -> Hash {
        let mut out = *h;
        out.0[(bit_index / 8) % 32] ^= 1 << (bit_index % 8);
        out
    }

    #[test]
    fn empty_tree_root_is_zero() {
        let (_db, smt) = temp_smt();
        let (root, nodes) = smt.update(Hash::ZERO, &[]).unwrap();
        assert_eq!(root, Hash::ZERO);
        assert!(nodes.is_empty());
        assert_eq!(smt.get(Hash::ZERO, k(1)).unwrap(), None);
        let proof = smt.prove(Hash::ZERO, k(1)).unwrap();
        assert_eq!(
            proof,
            SparseMerkleProof {
                leaf: None,
                siblings: vec![]
            }
        );
        assert_eq!(verify_proof(&Hash::ZERO, &k(1), None, &proof), Ok(()));
        assert_eq!(
            verify_proof(&Hash::ZERO, &k(1), Some(&v(1)), &proof),
            Err(ProofError::MissingLeaf)
        );
    }

    #[test]
    fn single_insert_root_is_leaf_hash() {
        let (_db, smt) = temp_smt();
        let (root, nodes) = smt.update(Hash::ZERO, &[(k(7), Some(v(7)))]).unwrap();
        assert_eq!(root, leaf_hash(&k(7), &v(7)));
        assert_eq!(nodes.len(), 1);
    }

    #[test]
    fn insert_then_delete_returns_zero() {
        let (_db, smt) = temp_smt();
        let root = commit(&smt, Hash::ZERO, &[(k(1), Some(v(1)))]);
        assert_eq!(commit(&smt, root, &[(k(1), None)]), Hash::ZERO);

        let all = inserts(50, 0);
        let root = commit(&smt, Hash::ZERO, &all);
        let deletes: Updates = all.iter().map(|(key, _)| (*key, None)).collect();
        assert_eq!(commit(&smt, root, &deletes), Hash::ZERO);
    }

    #[test]
    fn deleting_absent_or_rewriting_nothing_changes_nothing() {
        let (_db, smt) = temp_smt();
        let root = commit(&smt, Hash::ZERO, &inserts(20, 0));
        let absent: Updates = {
            let set: BTreeSet<Hash> = (100..120).map(k).collect();
            set.into_iter().map(|key| (key, None)).collect()
        };
        let (same, nodes) = smt.update(root, &absent).unwrap();
        assert_eq!(same, root);
        assert!(nodes.is_empty(), "no-op deletes must not produce nodes");
        let (empty, nodes) = smt.update(Hash::ZERO, &absent).unwrap();
        assert_eq!(empty, Hash::ZERO);
        assert!(nodes.is_empty());
    }

    #[test]
    fn unsorted_or_duplicate_updates_are_rejected() {
        let (_db, smt) = temp_smt();
        let mut keys = [k(1), k(2)];
        keys.sort();
        let descending = [(keys[1], Some(v(1))), (keys[0], Some(v(2)))];
        let duplicate = [(keys[0], Some(v(1))), (keys[0], None)];
        for bad in [&descending[..], &duplicate[..]] {
            assert!(matches!(
                smt.update(Hash::ZERO, bad),
                Err(SmtError::UnsortedUpdates)
            ));
        }
    }

    #[test]
    fn keys_differing_only_in_last_bit_use_full_depth() {
        let (_db, smt) = temp_smt();
        let a = Hash::ZERO;
        let mut b = Hash::ZERO;
        b.0[31] = 1;
        let root = commit(&smt, Hash::ZERO, &[(a, Some(v(1))), (b, Some(v(2)))]);
        for (key, value) in [(a, v(1)), (b, v(2))] {
            let proof = smt.prove(root, key).unwrap();
            assert_eq!(proof.siblings.len(), TREE_DEPTH);
            assert_eq!(verify_proof(&root, &key, Some(&value), &proof), Ok(()));
            assert_eq!(smt.get(root, key).unwrap(), Some(value));
        }
        // Removing one collapses the 256-deep chain back to the other's leaf.
        assert_eq!(commit(&smt, root, &[(b, None)]), leaf_hash(&a, &v(1)));
        // A key that shares 255 bits with `a` but is absent, proven by `a`'s leaf.
        let mut c = Hash::ZERO;
        c.0[30] = 1;
        let root = commit(&smt, root, &[(b, None)]);
        let proof = smt.prove(root, c).unwrap();
        assert_eq!(verify_proof(&root, &c, None, &proof), Ok(()));
    }

    /// One hand-made proof per rejection reason, against a real two-leaf tree.
    #[test]
    fn each_proof_error_has_its_case() {
        let (_db, smt) = temp_smt();
        let a = Hash::ZERO; // path starts with bit 0
        let mut b = Hash::ZERO;
        b.0[0] = 0x80; // path starts with bit 1
        let mut absent_right = b;
        absent_right.0[31] = 1; // shares b's first bit, so b's leaf sits on its path
        let root = commit(&smt, Hash::ZERO, &[(a, Some(v(1))), (b, Some(v(2)))]);
        let proof_a = smt.prove(root, a).unwrap();
        let proof_absent = smt.prove(root, absent_right).unwrap();
        assert_eq!(proof_absent.leaf, Some((b, v(2))));
        let too_long = SparseMerkleProof {
            leaf: None,
            siblings: vec![Hash::ZERO; TREE_DEPTH + 1],
        };
        let empty_end = SparseMerkleProof {
            leaf: None,
            siblings: vec![],
        };
        // (key, claimed value, proof, expected outcome)
        type Case<'a> = (
            &'a Hash,
            Option<&'a Hash>,
            &'a SparseMerkleProof,
            Result<(), ProofError>,
        );
        let cases: [Case<'_>; 9] = [
            (&a, Some(&v(1)), &proof_a, Ok(())),
            (&absent_right, None, &proof_absent, Ok(())),
            (
                &a,
                None,
                &too_long,
                Err(ProofError::TooManySiblings(TREE_DEPTH + 1)),
            ),
            (&a, Some(&v(1)), &empty_end, Err(ProofError::MissingLeaf)),
            (&b, Some(&v(1)), &proof_a, Err(ProofError::KeyMismatch)),
            (&a, Some(&v(2)), &proof_a, Err(ProofError::ValueMismatch)),
            (&a, None, &proof_a, Err(ProofError::NotExcluded)),
            // a's leaf (path bit 0) offered as the occupant of a bit-1 path.
            (
                &absent_right,
                None,
                &proof_a,
                Err(ProofError::LeafNotOnPath),
            ),
            (&a, None, &empty_end, Err(ProofError::RootMismatch)),
        ];
        for (i, (key, value, proof, expected)) in cases.into_iter().enumerate() {
            assert_eq!(verify_proof(&root, key, value, proof), expected, "case {i}");
        }
    }

    #[test]
    fn node_encoding_is_borsh_and_fixed() {
        for node in [
            Node::Leaf {
                key: k(1),
                value: v(1),
            },
            Node::Internal {
                left: k(2),
                right: Hash::ZERO,
            },
        ] {
            let encoded = node.encode();
            assert_eq!(encoded.to_vec(), borsh::to_vec(&node).unwrap());
            assert_eq!(Node::try_from_slice(&encoded).unwrap(), node);
        }
        assert_eq!(
            Node::Leaf {
                key: k(1),
                value: v(1)
            }
            .encode()[0],
            0
        );
        assert_eq!(
            Node::Internal {
                left: k(1),
                right: v(1)
            }
            .encode()[0],
            1
        );
    }

    #[test]
    fn persisted_nodes_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let updates = inserts(300, 0);
        let root = {
            let db = crate::state::open_db(dir.path(), None).unwrap();
            let tree = db.open_tree("state").unwrap();
            let smt = SparseMerkleTree::new(tree.clone(), b"smt/");
            let (root, nodes) = smt.update(Hash::ZERO, &updates).unwrap();
            let mut batch = sled::Batch::default();
            batch.insert(&b"meta/root"[..], &root.0[..]);
            smt.write_batch(&nodes, &mut batch);
            tree.apply_batch(batch).unwrap();
            db.flush().unwrap();
            root
        };
        let db = crate::state::open_db(dir.path(), None).unwrap();
        let tree = db.open_tree("state").unwrap();
        let stored_root = tree.get(b"meta/root").unwrap().unwrap();
        assert_eq!(&stored_root[..], &root.0[..]);
        let smt = SparseMerkleTree::new(tree, b"smt/");
        for (key, value) in &updates {
            let value = value.unwrap();
            assert_eq!(smt.get(root, *key).unwrap(), Some(value));
            let proof = smt.prove(root, *key).unwrap();
            assert_eq!(verify_proof(&root, key, Some(&value), &proof), Ok(()));
        }
        let absent = k(10_000);
        assert_eq!(smt.get(root, absent).unwrap(), None);
        let proof = smt.prove(root, absent).unwrap();
        assert_eq!(verify_proof(&root, &absent, None, &proof), Ok(()));
    }

    /// Counts the nodes reachable from `root` (what an in-memory tree must hold).
    fn reachable(smt: &SparseMerkleTree, root: Hash) -> usize {
        if root == Hash::ZERO {
            return 0;
        }
        match smt.load(&root).unwrap() {
            Node::Leaf { .. } => 1,
            Node::Internal { left, right } => 1 + reachable(smt, left) + reachable(smt, right),
        }
    }

    #[test]
    fn in_memory_tree_matches_sled_and_prunes_stale_nodes() {
        let (_db, on_disk) = temp_smt();
        let mem = SparseMerkleTree::in_memory();
        let (mut disk_root, mut mem_root) = (Hash::ZERO, Hash::ZERO);
        let mut live: BTreeMap<Hash, Hash> = BTreeMap::new();
        for round in 0..40u32 {
            // Inserts, overwrites and deletes over a shifting window of keys.
            let mut ups: BTreeMap<Hash, Option<Hash>> = BTreeMap::new();
            for i in 0..50u32 {
                let key = k((round * 17 + i * 7) % 300);
                let value = if (round + i) % 5 == 0 {
                    None
                } else {
                    Some(v(round * 1000 + i))
                };
                ups.insert(key, value);
            }
            let ups: Updates = ups.into_iter().collect();
            for (key, value) in &ups {
                match value {
                    Some(v) => live.insert(*key, *v),
                    None => live.remove(key),
                };
            }
            disk_root = commit(&on_disk, disk_root, &ups);
            let (r, nodes) = mem.update(mem_root, &ups).unwrap();
            mem.write_batch(&nodes, &mut sled::Batch::default());
            mem_root = r;
            assert_eq!(mem_root, disk_root, "round {round}");
            assert_eq!(
                mem.nodes_in_memory(),
                reachable(&mem, mem_root),
                "round {round}"
            );
        }
        for (key, value) in &live {
            assert_eq!(mem.get(mem_root, *key).unwrap(), Some(*value));
            let proof = mem.prove(mem_root, *key).unwrap();
            assert_eq!(verify_proof(&mem_root, key, Some(value), &proof), Ok(()));
        }
        // Only the latest root is kept in memory: older nodes are gone.
        assert!(matches!(
            mem.get(Hash([1; 32]), k(0)),
            Err(SmtError::MissingNode(_))
        ));
    }

    #[test]
    fn older_roots_stay_readable() {
        let (_db, smt) = temp_smt();
        let r1 = commit(&smt, Hash::ZERO, &inserts(40, 0));
        let r2 = commit(&smt, r1, &inserts(40, 1));
        let fresh = SparseMerkleTree::new(smt.tree.clone().unwrap(), b"smt/");
        assert_eq!(fresh.get(r1, k(3)).unwrap(), Some(v(3)));
        assert_eq!(fresh.get(r2, k(3)).unwrap(), Some(v(4)));
    }

    #[test]
    fn prefixes_keep_trees_apart() {
        let (_db, smt) = temp_smt();
        let root = commit(&smt, Hash::ZERO, &inserts(10, 0));
        let other = SparseMerkleTree::new(smt.tree.clone().unwrap(), b"other-smt/");
        assert!(matches!(other.get(root, k(1)), Err(SmtError::MissingNode(h)) if h == root));
    }

    #[test]
    fn missing_and_corrupt_nodes_are_typed_errors() {
        let (_db, smt) = temp_smt();
        let root = commit(&smt, Hash::ZERO, &inserts(10, 0));
        let tree = smt.tree.clone().unwrap();
        let key = smt.storage_key(&root);
        let fresh = || SparseMerkleTree::new(tree.clone(), b"smt/");

        tree.insert(&key, &b"garbage"[..]).unwrap();
        assert!(matches!(fresh().get(root, k(1)), Err(SmtError::CorruptNode(h)) if h == root));
        // Decodes fine but is not the node with this hash.
        let impostor = Node::Leaf {
            key: k(1),
            value: v(1),
        }
        .encode();
        tree.insert(&key, &impostor[..]).unwrap();
        assert!(matches!(fresh().prove(root, k(1)), Err(SmtError::CorruptNode(h)) if h == root));
        assert!(matches!(
            fresh().update(root, &[(k(1), None)]),
            Err(SmtError::CorruptNode(h)) if h == root
        ));

        tree.remove(&key).unwrap();
        assert!(matches!(fresh().get(root, k(1)), Err(SmtError::MissingNode(h)) if h == root));
        assert!(matches!(
            fresh().update(root, &[(k(1), Some(v(2)))]),
            Err(SmtError::MissingNode(h)) if h == root
        ));
    }

    #[test]
    fn too_deep_internal_chain_is_corrupt_not_a_panic() {
        // 257 stored internal nodes whose left child chains down: no valid tree
        // is that deep, and walking it must stop with an error.
        let (_db, smt) = temp_smt();
        let mut batch = NodeBatch::default();
        let mut node = leaf_hash(&Hash::ZERO, &v(1));
        let mut leaf_node = Node::Leaf {
            key: Hash::ZERO,
            value: v(1),
        };
        batch.nodes.push((leaf_node.hash(), leaf_node));
        for _ in 0..=TREE_DEPTH {
            leaf_node = Node::Internal {
                left: node,
                right: v(2),
            };
            node = leaf_node.hash();
            batch.nodes.push((node, leaf_node));
        }
        let mut sled_batch = sled::Batch::default();
        smt.write_batch(&batch, &mut sled_batch);
        smt.tree.as_ref().unwrap().apply_batch(sled_batch).unwrap();
        assert!(matches!(
            smt.get(node, Hash::ZERO),
            Err(SmtError::CorruptNode(_))
        ));
        assert!(matches!(
            smt.prove(node, Hash::ZERO),
            Err(SmtError::CorruptNode(_))
        ));
        assert!(matches!(
            smt.update(node, &[(Hash::ZERO, None)]),
            Err(SmtError::CorruptNode(_))
        ));
    }

    #[test]
    fn cache_clears_at_capacity_and_reads_still_work() {
        let (_db, mut smt) = temp_smt();
        smt.cache_capacity = 8;
        let updates = inserts(100, 0);
        let root = commit(&smt, Hash::ZERO, &updates);
        assert!(smt.lock_cache().len() <= 8);
        for (key, value) in &updates {
            assert_eq!(smt.get(root, *key).unwrap(), *value);
        }
        assert!(smt.lock_cache().len() <= 8);
    }

    /// Canonical root straight from the definition (no storage, no updates):
    /// empty is ZERO, one pair is its leaf, more split by the next key bit.
    fn reference_root(pairs: &[(Hash, Hash)], depth: usize) -> Hash {
        match pairs {
            [] => Hash::ZERO,
            [(key, value)] => leaf_hash(key, value),
            _ => {
                let split = pairs.partition_point(|(key, _)| !bit(key, depth));
                let (l, r) = pairs.split_at(split);
                internal_hash(&reference_root(l, depth + 1), &reference_root(r, depth + 1))
            }
        }
    }

    #[test]
    fn subtree_roots_rebuild_the_tree_root_at_every_depth() {
        let smt = SparseMerkleTree::in_memory();
        for n in [0u32, 1, 2, 3, 17, 300] {
            let mut pairs: Vec<(Hash, Hash)> = (0..n).map(|i| (k(i), v(i))).collect();
            pairs.sort_by_key(|p| p.0);
            let ups: Vec<(Hash, Option<Hash>)> =
                pairs.iter().map(|(a, b)| (*a, Some(*b))).collect();
            let (root, _) = smt.update(Hash::ZERO, &ups).expect("update");
            assert_eq!(SubtreeRoot::of(&pairs, 0).hash(), root, "n={n}");
            for bits in [0usize, 1, 3, 8] {
                let level: Vec<SubtreeRoot> = (0..1usize << bits)
                    .map(|prefix| {
                        let part: Vec<(Hash, Hash)> = pairs
                            .iter()
                            .copied()
                            .filter(|(key, _)| {
                                (0..bits)
                                    .all(|d| bit(key, d) == ((prefix >> (bits - 1 - d)) & 1 == 1))
                            })
                            .collect();
                        SubtreeRoot::of(&part, bits)
                    })
                    .collect();
                assert_eq!(
                    SubtreeRoot::root_of_level(&level),
                    Some(root),
                    "n={n} bits={bits}"
                );
            }
        }
        assert_eq!(SubtreeRoot::root_of_level(&[SubtreeRoot::Empty; 3]), None);
    }

    /// Fixed set -> fixed root. A change to hashing, tags, compression or key
    /// bit order shows up here as a diff.
    #[test]
    fn golden_root() {
        // Node hashes are blake3(u32-le tag length || tag || left || right).
        let raw = |tag: &str, a: &Hash, b: &Hash| {
            let mut h = blake3::Hasher::new();
            h.update(&(tag.len() as u32).to_le_bytes());
            h.update(tag.as_bytes());
            h.update(&a.0);
            h.update(&b.0);
            Hash(*h.finalize().as_bytes())
        };
        assert_eq!(leaf_hash(&k(1), &v(1)), raw("ios/smt-leaf", &k(1), &v(1)));
        assert_eq!(
            internal_hash(&k(1), &v(1)),
            raw("ios/smt-node", &k(1), &v(1))
        );

        let (_db, smt) = temp_smt();
        // Hand-built: 0x80.. is alone on the right of the root (a leaf there);
        // 0x00.. and 0x40.. both go left and split at bit 1, so left = node(a, c).
        let a = Hash::ZERO;
        let mut b = Hash::ZERO;
        b.0[0] = 0x80;
        let mut c = Hash::ZERO;
        c.0[0] = 0x40;
        let root = commit(
            &smt,
            Hash::ZERO,
            &[(a, Some(v(1))), (c, Some(v(3))), (b, Some(v(2)))],
        );
        let left = raw(
            "ios/smt-node",
            &raw("ios/smt-leaf", &a, &v(1)),
            &raw("ios/smt-leaf", &c, &v(3)),
        );
        let expected = raw("ios/smt-node", &left, &raw("ios/smt-leaf", &b, &v(2)));
        assert_eq!(root, expected);

        let set = inserts(8, 0);
        let root = commit(&smt, Hash::ZERO, &set);
        let pairs: Vec<(Hash, Hash)> = set.iter().filter_map(|(k, v)| v.map(|v| (*k, v))).collect();
        assert_eq!(root, reference_root(&pairs, 0));
        assert_eq!(
            root.to_hex(),
            "a6b543680a3e434e3fab1f02946fa2d31356842ab1da344dc842c772cdfd799d"
        );
    }

    /// Keys: mostly uniform, some clustered under long shared prefixes so deep
    /// internal chains and collapses are exercised.
    fn key_strategy() -> impl Strategy<Value = Hash> {
        prop_oneof![
            3 => any::<[u8; 32]>().prop_map(Hash),
            1 => (0u8..4, any::<u8>()).prop_map(|(hi, lo)| {
                let mut key = [0u8; 32];
                key[15] = hi;
                key[31] = lo;
                Hash(key)
            }),
        ]
    }

    fn value_strategy() -> impl Strategy<Value = Option<Hash>> {
        prop_oneof![
            4 => any::<[u8; 32]>().prop_map(|b| Some(Hash(b))),
            1 => Just(None),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn root_depends_only_on_final_set_and_proofs_verify(
            pool in prop::collection::vec(key_strategy(), 1..200),
            ops in prop::collection::vec((any::<prop::sample::Index>(), value_strategy()), 0..300),
            chunks in prop::collection::vec(1usize..60, 1..20),
            absent in prop::collection::vec(key_strategy(), 0..20),
            tamper in any::<prop::sample::Index>(),
        ) {
            let (_db, smt) = temp_smt();

            // Apply the ops in their random order, in random batch splits.
            let mut model: BTreeMap<Hash, Hash> = BTreeMap::new();
            let mut root = Hash::ZERO;
            let mut rest = &ops[..];
            let mut sizes = chunks.iter().cycle();
            while !rest.is_empty() {
                let size = sizes.next().copied().unwrap_or(1).min(rest.len());
                let (chunk, tail) = rest.split_at(size);
                rest = tail;
                let mut batch: BTreeMap<Hash, Option<Hash>> = BTreeMap::new();
                for (idx, value) in chunk {
                    let key = pool[idx.index(pool.len())];
                    batch.insert(key, *value);
                    match value {
                        Some(value) => model.insert(key, *value),
                        None => model.remove(&key),
                    };
                }
                let updates: Updates = batch.into_iter().collect();
                root = commit(&smt, root, &updates);
            }

            // The same final set in one batch, read back through a cold cache.
            let fresh = SparseMerkleTree::new(smt.tree.clone().unwrap(), b"smt/");
            let once: Updates = model.iter().map(|(k, v)| (*k, Some(*v))).collect();
            let one_shot = commit(&fresh, Hash::ZERO, &once);
            prop_assert_eq!(root, one_shot);
            let pairs: Vec<(Hash, Hash)> = model.iter().map(|(k, v)| (*k, *v)).collect();
            prop_assert_eq!(root, reference_root(&pairs, 0));
            let cold = SparseMerkleTree::new(smt.tree.clone().unwrap(), b"smt/");
            if model.is_empty() {
                prop_assert_eq!(root, Hash::ZERO);
            }

            for (key, value) in &model {
                prop_assert_eq!(cold.get(root, *key).unwrap(), Some(*value));
                let proof = cold.prove(root, *key).unwrap();
                prop_assert_eq!(verify_proof(&root, key, Some(value), &proof), Ok(()));
                let wrong_value = flip_bit(value, tamper.index(256));
                prop_assert_eq!(
                    verify_proof(&root, key, Some(&wrong_value), &proof),
                    Err(ProofError::ValueMismatch)
                );
                prop_assert_eq!(verify_proof(&root, key, None, &proof), Err(ProofError::NotExcluded));
                let wrong_root = flip_bit(&root, tamper.index(256));
                prop_assert_eq!(
                    verify_proof(&wrong_root, key, Some(value), &proof),
                    Err(ProofError::RootMismatch)
                );
                if !proof.siblings.is_empty() {
                    let mut bad = proof.clone();
                    let i = tamper.index(bad.siblings.len());
                    bad.siblings[i] = flip_bit(&bad.siblings[i], tamper.index(256));
                    prop_assert_eq!(
                        verify_proof(&root, key, Some(value), &bad),
                        Err(ProofError::RootMismatch)
                    );
                }
            }

            let absent: BTreeSet<Hash> = absent
                .into_iter()
                .chain(pool.iter().copied())
                .filter(|key| !model.contains_key(key))
                .collect();
            for key in &absent {
                prop_assert_eq!(cold.get(root, *key).unwrap(), None);
                let proof = cold.prove(root, *key).unwrap();
                prop_assert_eq!(verify_proof(&root, key, None, &proof), Ok(()));
                let claimed = Hash([7; 32]);
                let as_inclusion = verify_proof(&root, key, Some(&claimed), &proof);
                prop_assert!(
                    matches!(as_inclusion, Err(ProofError::KeyMismatch | ProofError::MissingLeaf)),
                    "absent key accepted as present: {:?}", as_inclusion
                );
                let wrong_root = flip_bit(&root, tamper.index(256));
                prop_assert_eq!(
                    verify_proof(&wrong_root, key, None, &proof),
                    Err(ProofError::RootMismatch)
                );
                if !proof.siblings.is_empty() {
                    let mut bad = proof.clone();
                    let i = tamper.index(bad.siblings.len());
                    bad.siblings[i] = flip_bit(&bad.siblings[i], tamper.index(256));
                    prop_assert_eq!(
                        verify_proof(&root, key, None, &bad),
                        Err(ProofError::RootMismatch)
                    );
                }
                if let Some((leaf_key, leaf_value)) = proof.leaf {
                    let mut bad = proof.clone();
                    bad.leaf = Some((leaf_key, flip_bit(&leaf_value, tamper.index(256))));
                    prop_assert_eq!(
                        verify_proof(&root, key, None, &bad),
                        Err(ProofError::RootMismatch)
                    );
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn verify_never_panics_on_arbitrary_proofs(
            leaf in proptest::option::of((any::<[u8; 32]>(), any::<[u8; 32]>())),
            siblings in prop::collection::vec(any::<[u8; 32]>(), 0..300),
            root in any::<[u8; 32]>(),
            key in any::<[u8; 32]>(),
            value in proptest::option::of(any::<[u8; 32]>()),
        ) {
            let proof = SparseMerkleProof {
                leaf: leaf.map(|(k, v)| (Hash(k), Hash(v))),
                siblings: siblings.into_iter().map(Hash).collect(),
            };
            let value = value.map(Hash);
            let result = verify_proof(&Hash(root), &Hash(key), value.as_ref(), &proof);
            if proof.siblings.len() > TREE_DEPTH {
                prop_assert_eq!(result, Err(ProofError::TooManySiblings(proof.siblings.len())));
            } else {
                // Random hashes never form a valid proof for a random root.
                prop_assert!(result.is_err());
            }
        }

        #[test]
        fn verify_never_panics_on_decoded_bytes(
            tag_byte in 0u8..3,
            count in prop_oneof![3 => 0u32..300, 1 => any::<u32>()],
            junk in 0usize..2,
            body in prop::collection::vec(any::<u8>(), 64 + 300 * 32),
            root in any::<[u8; 32]>(),
            key in any::<[u8; 32]>(),
            value in proptest::option::of(any::<[u8; 32]>()),
        ) {
            // Mostly well-framed borsh (so many decode), sometimes a bad option
            // tag, a huge claimed length, or trailing junk.
            let mut bytes = vec![tag_byte];
            if tag_byte == 1 {
                bytes.extend_from_slice(&body[..64]);
            }
            bytes.extend_from_slice(&count.to_le_bytes());
            let claimed = (count as usize).min(300) * 32;
            bytes.extend_from_slice(&body[64..64 + claimed]);
            bytes.extend_from_slice(&body[..junk]);
            if let Ok(proof) = SparseMerkleProof::try_from_slice(&bytes) {
                prop_assert_eq!(borsh::to_vec(&proof).unwrap(), bytes);
                let value = value.map(Hash);
                let result = verify_proof(&Hash(root), &Hash(key), value.as_ref(), &proof);
                if proof.siblings.len() > TREE_DEPTH {
                    prop_assert_eq!(result, Err(ProofError::TooManySiblings(proof.siblings.len())));
                } else {
                    prop_assert!(result.is_err());
                }
            }
        }
    }
}
