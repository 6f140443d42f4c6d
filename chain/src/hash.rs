//! Domain-separated blake3 hashing. Every consensus-critical value is hashed
//! under a tag naming what it is, so a hash of one kind can never be replayed
//! as a hash of another.

use borsh::{BorshDeserialize, BorshSerialize};
use std::collections::BTreeMap;
use std::fmt;

/// A 32-byte blake3 digest.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, BorshSerialize, BorshDeserialize,
)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub const ZERO: Hash = Hash([0u8; 32]);

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        crate::hex::encode(&self.0)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Option<Hash> {
        if s.len() != 64 {
            return None;
        }
        crate::hex::decode(s).ok()?.try_into().ok().map(Hash)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &self.to_hex()[..12])
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Domain tags. One per kind of hashed or signed value; never reuse a tag.
pub mod tag {
    pub const TX: &str = "ios/tx";
    /// A transaction as included in a block, signature and all (tx_root leaves).
    pub const TX_LEAF: &str = "ios/tx-leaf";
    pub const BLOCK_HEADER: &str = "ios/block-header";
    pub const PROPOSAL: &str = "ios/proposal";
    pub const VOTE: &str = "ios/vote";
    pub const RECEIPT: &str = "ios/receipt";
    pub const MERKLE_LEAF: &str = "ios/merkle-leaf";
    pub const MERKLE_NODE: &str = "ios/merkle-node";
    pub const SMT_LEAF: &str = "ios/smt-leaf";
    pub const SMT_NODE: &str = "ios/smt-node";
    pub const STATE_KEY: &str = "ios/state-key";
    pub const STATE_VALUE: &str = "ios/state-value";
    pub const PROPOSER_DRAW: &str = "ios/proposer-draw";
    pub const GENESIS: &str = "ios/genesis";
    pub const EVIDENCE_KEY: &str = "ios/evidence-key";
    pub const HOME_SHARD: &str = "ios/home-shard";
    pub const ATOMIX_TX: &str = "ios/atomix-tx";
    pub const CUSTODY: &str = "ios/custody";
    /// Key of a verified certificate in a node's memo (never on chain).
    pub const CERT_MEMO: &str = "ios/cert-memo";
    pub const COMMITTEE_PERMUTATION: &str = "ios/committee-permutation";
    pub const PVSS_FROM_SIGNING_KEY: &str = "ios/pvss-from-signing-key";
    pub const PVSS_DEALING_SEED: &str = "ios/pvss-dealing-seed";
    /// PVSS: the second generator `h` (hashed to the curve, so nobody knows log_g h).
    pub const PVSS_H: &str = "ios/pvss-h";
    /// PVSS: a member's secret key from its seed.
    pub const PVSS_KEY: &str = "ios/pvss-key";
    /// PVSS: the dealer's polynomial from its seed and the dealing's statement.
    pub const PVSS_POLY: &str = "ios/pvss-poly";
    /// PVSS: the Fiat–Shamir challenge of a DLEQ proof.
    pub const PVSS_DLEQ: &str = "ios/pvss-dleq";
    /// PVSS: the deterministic nonce of a DLEQ proof.
    pub const PVSS_NONCE: &str = "ios/pvss-nonce";
    /// PVSS: the random dual-code polynomial of the SCRAPE degree check.
    pub const PVSS_DEGREE_CHECK: &str = "ios/pvss-degree-check";
    /// The epoch's beacon output from the recovered PVSS secrets.
    pub const BEACON_OUTPUT: &str = "ios/beacon-output";
}

/// A streaming hasher that starts with a domain tag.
pub struct DomainHasher(blake3::Hasher);

impl DomainHasher {
    pub fn new(tag: &str) -> Self {
        let mut h = blake3::Hasher::new();
        // Length-prefix the tag so no tag is a prefix of tag+data of another.
        h.update(&(tag.len() as u32).to_le_bytes());
        h.update(tag.as_bytes());
        DomainHasher(h)
    }

    pub fn update(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update(bytes);
        self
    }

    pub fn finalize(&self) -> Hash {
        Hash(*self.0.finalize().as_bytes())
    }
}

/// `blake3(len(tag) || tag || bytes)`.
pub fn hash_tagged(tag: &str, bytes: &[u8]) -> Hash {
    let mut h = DomainHasher::new(tag);
    h.update(bytes);
    h.finalize()
}

/// Hash of the canonical (borsh) encoding of `value` under `tag`.
pub fn hash_value<T: BorshSerialize>(tag: &str, value: &T) -> Hash {
    let mut h = DomainHasher::new(tag);
    // Writing into a hasher cannot fail.
    let bytes = borsh::to_vec(value).expect("borsh encoding into memory is infallible");
    h.update(&bytes);
    h.finalize()
}

/// Binary Merkle root over leaf hashes (RFC 6962 shape: an odd node is promoted).
/// The empty list has root `Hash::ZERO`.
pub fn merkle_root(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return Hash::ZERO;
    }
    let mut level = leaf_level(leaves);
    while level.len() > 1 {
        level = parent_level(&level);
    }
    level[0]
}

fn leaf_level(leaves: &[Hash]) -> Vec<Hash> {
    leaves
        .iter()
        .map(|l| hash_tagged(tag::MERKLE_LEAF, &l.0))
        .collect()
}

/// Pairs up a level; an odd last node is promoted unchanged.
fn parent_level(level: &[Hash]) -> Vec<Hash> {
    level
        .chunks(2)
        .map(|pair| match pair {
            [a, b] => merkle_node(a, b),
            [a] => *a,
            _ => unreachable!("chunks(2) yields one or two"),
        })
        .collect()
}

fn merkle_node(a: &Hash, b: &Hash) -> Hash {
    let mut h = DomainHasher::new(tag::MERKLE_NODE);
    h.update(&a.0).update(&b.0);
    h.finalize()
}

/// A path from a leaf to a `merkle_root`: siblings bottom-up with their side.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct MerklePath {
    pub index: u32,
    pub leaf_count: u32,
    pub siblings: Vec<Hash>,
}

/// Builds the path of leaf `index`; `None` if out of range.
pub fn merkle_path(leaves: &[Hash], index: usize) -> Option<MerklePath> {
    MerkleTree::new(leaves).path(index)
}

/// Every level of a Merkle tree, so many paths cost one tree (a relayer
/// proving many receipts of one block).
pub struct MerkleTree {
    levels: Vec<Vec<Hash>>,
}

impl MerkleTree {
    pub fn new(leaves: &[Hash]) -> MerkleTree {
        let mut levels = vec![leaf_level(leaves)];
        while let Some(top) = levels.last().filter(|l| l.len() > 1) {
            let next = parent_level(top);
            levels.push(next);
        }
        MerkleTree { levels }
    }

    /// The root, as [`merkle_root`] computes it.
    pub fn root(&self) -> Hash {
        self.levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or(Hash::ZERO)
    }

    /// The path of leaf `index`, as [`merkle_path`] computes it.
    pub fn path(&self, index: usize) -> Option<MerklePath> {
        let leaf_count = self.levels.first().map_or(0, Vec::len);
        if index >= leaf_count {
            return None;
        }
        let mut i = index;
        let mut siblings = Vec::new();
        for level in &self.levels[..self.levels.len() - 1] {
            if let Some(s) = level.get(i ^ 1) {
                siblings.push(*s);
            }
            i /= 2;
        }
        Some(MerklePath {
            index: index as u32,
            leaf_count: leaf_count as u32,
            siblings,
        })
    }
}

/// Pure check that `leaf` is at `path.index` under `root`.
pub fn verify_merkle_path(root: &Hash, leaf: &Hash, path: &MerklePath) -> bool {
    if path.index >= path.leaf_count {
        return false;
    }
    let mut acc = hash_tagged(tag::MERKLE_LEAF, &leaf.0);
    let mut i = path.index as usize;
    let mut width = path.leaf_count as usize;
    let mut sibs = path.siblings.iter();
    while width > 1 {
        let sib = i ^ 1;
        if sib < width {
            let Some(s) = sibs.next() else { return false };
            acc = if i.is_multiple_of(2) {
                merkle_node(&acc, s)
            } else {
                merkle_node(s, &acc)
            };
        }
        i /= 2;
        width = width.div_ceil(2);
    }
    sibs.next().is_none() && acc == *root
}

/// Several leaves of one tree proven at once: the siblings their paths need
/// that none of the leaves' own paths computes, level by level, left to
/// right. For k leaves of n it carries and hashes about k * log2(n / k)
/// nodes instead of k * log2(n).
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct MerkleMultiProof {
    pub leaf_count: u32,
    pub siblings: Vec<Hash>,
}

/// The positions `(level, index)` of the siblings a multi-proof of leaves
/// `indexes` (strictly ascending, each below `leaf_count`) carries, in order.
fn multi_positions(leaf_count: usize, indexes: &[usize]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut level: Vec<usize> = indexes.to_vec();
    let (mut width, mut depth) = (leaf_count, 0);
    while width > 1 {
        let mut next = Vec::with_capacity(level.len());
        let mut k = 0;
        while k < level.len() {
            let i = level[k];
            if i.is_multiple_of(2) && level.get(k + 1) == Some(&(i + 1)) {
                k += 1;
            } else if i ^ 1 < width {
                out.push((depth, i ^ 1));
            }
            next.push(i / 2);
            k += 1;
        }
        level = next;
        width = width.div_ceil(2);
        depth += 1;
    }
    out
}

impl MerkleTree {
    /// The multi-proof of leaves `indexes` (any order, repeats allowed);
    /// `None` if one is out of range or there are none.
    pub fn multi_proof(&self, indexes: &[usize]) -> Option<MerkleMultiProof> {
        let leaf_count = self.levels.first().map_or(0, Vec::len);
        let mut ix = indexes.to_vec();
        ix.sort_unstable();
        ix.dedup();
        if ix.is_empty() || ix.last().is_some_and(|&i| i >= leaf_count) {
            return None;
        }
        let siblings = multi_positions(leaf_count, &ix)
            .into_iter()
            .map(|(l, i)| self.levels[l][i])
            .collect();
        Some(MerkleMultiProof {
            leaf_count: leaf_count as u32,
            siblings,
        })
    }
}

impl MerkleMultiProof {
    /// Joins single paths of one tree (same `leaf_count`, as a relayer holds
    /// them) into one multi-proof; `None` if they are not of one tree's shape.
    pub fn from_paths(paths: &[&MerklePath]) -> Option<MerkleMultiProof> {
        let leaf_count = paths.first()?.leaf_count;
        let mut known: BTreeMap<(usize, usize), Hash> = BTreeMap::new();
        let mut ix = Vec::with_capacity(paths.len());
        for p in paths {
            if p.leaf_count != leaf_count || p.index >= leaf_count {
                return None;
            }
            ix.push(p.index as usize);
            let (mut i, mut width, mut depth) = (p.index as usize, leaf_count as usize, 0);
            let mut sibs = p.siblings.iter();
            while width > 1 {
                if i ^ 1 < width {
                    let sib = *sibs.next()?;
                    // Two paths that disagree on a node are not of one tree.
                    if known
                        .insert((depth, i ^ 1), sib)
                        .is_some_and(|old| old != sib)
                    {
                        return None;
                    }
                }
                i /= 2;
                width = width.div_ceil(2);
                depth += 1;
            }
        }
        ix.sort_unstable();
        ix.dedup();
        let siblings = multi_positions(leaf_count as usize, &ix)
            .into_iter()
            .map(|pos| known.get(&pos).copied())
            .collect::<Option<Vec<Hash>>>()?;
        Some(MerkleMultiProof {
            leaf_count,
            siblings,
        })
    }

    /// The root `leaves` (`(index, leaf)`, strictly ascending by index) make
    /// with this proof; `None` if the proof does not fit them (wrong count
    /// of siblings, an index out of range or repeated, no leaves).
    pub fn root(&self, leaves: &[(u32, Hash)]) -> Option<Hash> {
        self.walk(leaves, None)
    }

    /// Each leaf's single path, recovered from the proof (a relayer
    /// re-splitting a batch); `None` if the proof does not fit the leaves.
    pub fn paths(&self, leaves: &[(u32, Hash)]) -> Option<Vec<MerklePath>> {
        let mut nodes = BTreeMap::new();
        self.walk(leaves, Some(&mut nodes))?;
        let leaf_count = self.leaf_count as usize;
        leaves
            .iter()
            .map(|(index, _)| {
                let (mut i, mut width, mut depth) = (*index as usize, leaf_count, 0);
                let mut siblings = Vec::new();
                while width > 1 {
                    if i ^ 1 < width {
                        siblings.push(*nodes.get(&(depth, i ^ 1))?);
                    }
                    i /= 2;
                    width = width.div_ceil(2);
                    depth += 1;
                }
                Some(MerklePath {
                    index: *index,
                    leaf_count: self.leaf_count,
                    siblings,
                })
            })
            .collect()
    }

    /// Hashes up from the leaves; records every node seen when asked.
    fn walk(
        &self,
        leaves: &[(u32, Hash)],
        mut record: Option<&mut BTreeMap<(usize, usize), Hash>>,
    ) -> Option<Hash> {
        let width0 = self.leaf_count as usize;
        if leaves.is_empty()
            || leaves.windows(2).any(|w| w[0].0 >= w[1].0)
            || leaves.last().is_some_and(|(i, _)| *i as usize >= width0)
        {
            return None;
        }
        let mut level: Vec<(usize, Hash)> = leaves
            .iter()
            .map(|(i, l)| (*i as usize, hash_tagged(tag::MERKLE_LEAF, &l.0)))
            .collect();
        let mut sibs = self.siblings.iter();
        let (mut width, mut depth) = (width0, 0);
        while width > 1 {
            let mut next = Vec::with_capacity(level.len());
            let mut k = 0;
            while k < level.len() {
                let (i, h) = level[k];
                if let Some(r) = record.as_deref_mut() {
                    r.insert((depth, i), h);
                }
                let parent = match level.get(k + 1) {
                    Some(&(j, right)) if i % 2 == 0 && j == i + 1 => {
                        k += 1;
                        if let Some(r) = record.as_deref_mut() {
                            r.insert((depth, j), right);
                        }
                        merkle_node(&h, &right)
                    }
                    _ if i ^ 1 >= width => h,
                    _ => {
                        let s = sibs.next()?;
                        if let Some(r) = record.as_deref_mut() {
                            r.insert((depth, i ^ 1), *s);
                        }
                        if i % 2 == 0 {
                            merkle_node(&h, s)
                        } else {
                            merkle_node(s, &h)
                        }
                    }
                };
                next.push((i / 2, parent));
                k += 1;
            }
            level = next;
            width = width.div_ceil(2);
            depth += 1;
        }
        if sibs.next().is_some() {
            return None;
        }
        level.first().map(|(_, h)| *h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_tree_gives_every_path() {
        for n in [1usize, 2, 3, 5, 8, 13, 64, 100] {
            let l = leaves(n);
            let tree = MerkleTree::new(&l);
            assert_eq!(tree.root(), merkle_root(&l));
            for (i, leaf) in l.iter().enumerate() {
                let p = tree.path(i).expect("in range");
                assert!(verify_merkle_path(&tree.root(), leaf, &p), "n={n} i={i}");
            }
            assert!(tree.path(n).is_none());
        }
    }

    proptest::proptest! {
        #[test]
        fn multi_proofs_agree_with_single_paths(
            n in 1usize..300,
            picks in proptest::collection::vec(0usize..300, 1..40),
            flip in 0usize..64,
        ) {
            let l = leaves(n);
            let tree = MerkleTree::new(&l);
            let mut ix: Vec<usize> = picks.iter().map(|p| p % n).collect();
            let proof = tree.multi_proof(&ix).expect("in range");
            ix.sort_unstable();
            ix.dedup();
            let at: Vec<(u32, Hash)> = ix.iter().map(|&i| (i as u32, l[i])).collect();
            proptest::prop_assert_eq!(proof.root(&at), Some(tree.root()));
            // The same proof from the single paths, and the paths back from it.
            let paths: Vec<MerklePath> = ix.iter().map(|&i| tree.path(i).expect("path")).collect();
            let refs: Vec<&MerklePath> = paths.iter().collect();
            let joined = MerkleMultiProof::from_paths(&refs);
            proptest::prop_assert_eq!(joined.as_ref(), Some(&proof));
            // Never more siblings than the single paths carry together.
            let single: usize = refs.iter().map(|p| p.siblings.len()).sum();
            proptest::prop_assert_eq!(proof.paths(&at), Some(paths.clone()));
            proptest::prop_assert!(proof.siblings.len() <= single);
            // A changed leaf or sibling, a sibling too many or too few, fails.
            let mut bad = at.clone();
            let k = flip % bad.len();
            bad[k].1 = hash_tagged("other", &[1]);
            proptest::prop_assert_ne!(proof.root(&bad), Some(tree.root()));
            if !proof.siblings.is_empty() {
                let mut p = proof.clone();
                let k = flip % p.siblings.len();
                p.siblings[k].0[0] ^= 1;
                proptest::prop_assert_ne!(p.root(&at), Some(tree.root()));
                let mut p = proof.clone();
                p.siblings.pop();
                proptest::prop_assert_eq!(p.root(&at), None);
            }
            let mut p = proof.clone();
            p.siblings.push(Hash::ZERO);
            proptest::prop_assert_eq!(p.root(&at), None);
            let mut p = proof.clone();
            p.leaf_count = at.last().map_or(0, |(i, _)| *i);
            proptest::prop_assert_eq!(p.root(&at), None, "a leaf beyond the count");
        }
    }

    #[test]
    fn multi_proofs_refuse_malformed_leaf_lists() {
        let l = leaves(10);
        let tree = MerkleTree::new(&l);
        let proof = tree.multi_proof(&[2, 5]).expect("in range");
        assert_eq!(proof.root(&[]), None, "no leaves");
        assert_eq!(proof.root(&[(5, l[5]), (2, l[2])]), None, "not ascending");
        assert_eq!(proof.root(&[(2, l[2]), (2, l[2])]), None, "repeated");
        assert_eq!(proof.root(&[(2, l[2]), (10, l[5])]), None, "out of range");
        assert!(tree.multi_proof(&[]).is_none());
        assert!(tree.multi_proof(&[10]).is_none());
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n as u32)
            .map(|i| hash_tagged("test", &i.to_le_bytes()))
            .collect()
    }

    #[test]
    fn merkle_paths_verify_for_every_leaf_and_size() {
        for n in 1..=17 {
            let l = leaves(n);
            let root = merkle_root(&l);
            for (i, leaf) in l.iter().enumerate() {
                let p = merkle_path(&l, i).unwrap();
                assert!(verify_merkle_path(&root, leaf, &p), "n={n} i={i}");
                let other = hash_tagged("other", &[1]);
                assert!(!verify_merkle_path(&root, &other, &p));
            }
            assert!(merkle_path(&l, n).is_none());
        }
    }

    #[test]
    fn tags_separate_domains() {
        assert_ne!(hash_tagged(tag::TX, b"x"), hash_tagged(tag::VOTE, b"x"));
        // A tag cannot absorb the first bytes of the data.
        assert_ne!(hash_tagged("ab", b"c"), hash_tagged("a", b"bc"));
    }

    #[test]
    fn hex_round_trip() {
        let h = hash_tagged("t", b"v");
        assert_eq!(Hash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(Hash::from_hex("zz"), None);
    }
}
