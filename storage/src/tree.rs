//! Proofs that a 1 KiB chunk belongs to a fragment, against the fragment's
//! plain blake3 hash (bao-style verified slices, without an outboard file).
//!
//! blake3 is itself a binary Merkle tree over 1 KiB chunks: a node's
//! children are its input split at [`left_subtree_len`]. A proof of chunk
//! `i` is the chaining values of the siblings on the path from the root to
//! that chunk (top first): `ceil(log2(chunks))` values of 32 bytes. The
//! verifier rebuilds the path from the chunk up and compares the root, so
//! the fragment address stays what `b3sum` prints. The tree's shape
//! depends on the fragment's length, which the verifier takes from the
//! committed manifest, never from the prover.

use crate::{Result, StorageError};
use blake3::hazmat::{
    left_subtree_len, merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode,
};
use borsh::{BorshDeserialize, BorshSerialize};
use ios_chain::hash::Hash;

/// Bytes per chunk (blake3's leaf size).
pub const CHUNK_BYTES: u64 = blake3::CHUNK_LEN as u64;

/// Chunks in a fragment of `len` bytes.
pub fn chunk_count(len: u64) -> u64 {
    len.div_ceil(CHUNK_BYTES).max(1)
}

/// A chunk and the sibling chaining values proving it, top first.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ChunkProof {
    pub index: u64,
    pub chunk: Vec<u8>,
    pub siblings: Vec<[u8; 32]>,
}

fn chaining_value(data: &[u8], offset: u64) -> ChainingValue {
    let mut h = blake3::Hasher::new();
    h.set_input_offset(offset);
    h.update(data);
    h.finalize_non_root()
}

/// Walks from the root of a `len`-byte input to the chunk at byte `target`,
/// calling `visit(went_left, sibling_offset, sibling_len)` at each level.
/// Returns the chunk's (offset, len).
fn walk(len: u64, target: u64, mut visit: impl FnMut(bool, u64, u64)) -> (u64, u64) {
    let (mut off, mut len) = (0u64, len);
    while len > CHUNK_BYTES {
        let left = left_subtree_len(len);
        if target < off + left {
            visit(true, off + left, len - left);
            len = left;
        } else {
            visit(false, off, left);
            off += left;
            len -= left;
        }
    }
    (off, len)
}

/// The proof of chunk `index` of `fragment`.
pub fn prove(fragment: &[u8], index: u64) -> Result<ChunkProof> {
    let len = fragment.len() as u64;
    if fragment.is_empty() || index >= chunk_count(len) {
        return Err(StorageError::NotFound(format!(
            "chunk {index} of a {len}-byte fragment"
        )));
    }
    let mut siblings = Vec::new();
    let (off, chunk_len) = walk(len, index * CHUNK_BYTES, |_, o, l| {
        siblings.push(chaining_value(&fragment[o as usize..(o + l) as usize], o))
    });
    Ok(ChunkProof {
        index,
        chunk: fragment[off as usize..(off + chunk_len) as usize].to_vec(),
        siblings,
    })
}

/// Checks `proof` against the root and length of the fragment it claims.
pub fn verify(root: &Hash, fragment_len: u64, proof: &ChunkProof) -> Result<()> {
    let bad = |why: String| Err(StorageError::BadProof(why));
    if fragment_len == 0 {
        return bad("a fragment is never empty".into());
    }
    let count = chunk_count(fragment_len);
    if proof.index >= count {
        return bad(format!(
            "chunk {} of a fragment with {count} chunks",
            proof.index
        ));
    }
    if fragment_len <= CHUNK_BYTES {
        if !proof.siblings.is_empty() || proof.chunk.len() as u64 != fragment_len {
            return bad("a one-chunk fragment is proven by the chunk alone".into());
        }
        return if blake3::hash(&proof.chunk).as_bytes() == root.as_bytes() {
            Ok(())
        } else {
            bad("the chunk does not hash to the root".into())
        };
    }
    let mut went_left = Vec::new();
    let (off, len) = walk(fragment_len, proof.index * CHUNK_BYTES, |left, _, _| {
        went_left.push(left)
    });
    if went_left.len() != proof.siblings.len() {
        return bad(format!(
            "{} siblings for a path of {}",
            proof.siblings.len(),
            went_left.len()
        ));
    }
    if proof.chunk.len() as u64 != len {
        return bad(format!(
            "the chunk is {} bytes, expected {len}",
            proof.chunk.len()
        ));
    }
    let mut acc = chaining_value(&proof.chunk, off);
    for level in (0..went_left.len()).rev() {
        let sibling = &proof.siblings[level];
        let (l, r) = if went_left[level] {
            (&acc, sibling)
        } else {
            (sibling, &acc)
        };
        if level == 0 {
            return if merge_subtrees_root(l, r, Mode::Hash).as_bytes() == root.as_bytes() {
                Ok(())
            } else {
                bad("the path does not lead to the root".into())
            };
        }
        acc = merge_subtrees_non_root(l, r, Mode::Hash);
    }
    bad("empty path".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blake3_root;
    use proptest::prelude::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 1024) as u8).collect()
    }

    #[test]
    fn every_chunk_of_awkward_lengths_proves_against_the_plain_hash() {
        for len in [
            1usize,
            1023,
            1024,
            1025,
            2048,
            2049,
            3 * 1024 + 7,
            64 * 1024 + 1,
        ] {
            let f = data(len);
            let root = blake3_root(&f);
            for i in 0..chunk_count(len as u64) {
                let p = prove(&f, i).unwrap();
                verify(&root, len as u64, &p)
                    .unwrap_or_else(|e| panic!("len {len} chunk {i}: {e}"));
            }
            assert!(prove(&f, chunk_count(len as u64)).is_err());
        }
    }

    #[test]
    fn forged_chunks_paths_and_lengths_are_refused() {
        let f = data(10 * 1024 + 5);
        let root = blake3_root(&f);
        let good = prove(&f, 3).unwrap();
        let mut p = good.clone();
        p.chunk[0] ^= 1;
        assert!(matches!(
            verify(&root, f.len() as u64, &p),
            Err(StorageError::BadProof(_))
        ));
        let mut p = good.clone();
        p.siblings[1][5] ^= 1;
        assert!(verify(&root, f.len() as u64, &p).is_err());
        let mut p = good.clone();
        p.siblings.pop();
        assert!(verify(&root, f.len() as u64, &p).is_err());
        let mut p = good.clone();
        p.index = 4;
        assert!(
            verify(&root, f.len() as u64, &p).is_err(),
            "another chunk's index"
        );
        // A length claim only shapes the tree; one of another shape fails.
        assert!(
            verify(&root, f.len() as u64 + 8192, &good).is_err(),
            "another shape"
        );
        let mut p = good;
        p.index = u64::MAX;
        assert!(verify(&root, f.len() as u64, &p).is_err());
    }

    proptest! {
        #[test]
        fn random_fragments_prove_and_tampering_fails(len in 1usize..20_000, pick in any::<u64>(), flip in any::<usize>()) {
            let f = data(len);
            let root = blake3_root(&f);
            let i = pick % chunk_count(len as u64);
            let mut p = prove(&f, i).unwrap();
            prop_assert!(verify(&root, len as u64, &p).is_ok());
            let at = flip % p.chunk.len();
            p.chunk[at] ^= 0x80;
            prop_assert!(verify(&root, len as u64, &p).is_err());
        }
    }
}
