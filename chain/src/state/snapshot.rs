//! State snapshots for fast sync. At each epoch boundary a replica keeps the
//! shard's whole state as it stood after that block, cut into chunks by the
//! top `bits` bits of each entry's tree key, so every chunk is one subtree of
//! the state tree at depth `bits`. The [`SnapshotManifest`] lists every
//! chunk's [`SubtreeRoot`]; they combine to the state root, which a certified
//! block header states, so a node that trusts the header (its light client
//! checked the certificate) can check the manifest, and then each chunk on
//! its own as it arrives from any peer, before it writes anything.

use super::smt::SubtreeRoot;
use super::{smt_key, smt_value};
use crate::block::{BlockHeader, CommitCertificate, Committee};
use crate::error::{ChainError, Result};
use crate::hash::Hash;
use crate::types::{Height, ShardId};
use borsh::{BorshDeserialize, BorshSerialize};
use std::collections::HashMap;

/// Entries a chunk aims at; the chunk count is the power of two that gets
/// closest from above.
pub const TARGET_CHUNK_ENTRIES: usize = 4_096;
/// Most chunk bits (65 536 chunks).
pub const MAX_CHUNK_BITS: u8 = 16;

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SnapshotManifest {
    pub shard: ShardId,
    /// The block after which this is the state.
    pub height: Height,
    pub state_root: Hash,
    /// Chunks are the subtrees at this depth: chunk i holds the entries whose
    /// tree key starts with the `bits`-bit number i.
    pub bits: u8,
    /// Every chunk's subtree root, in chunk order (`2^bits` of them).
    pub chunks: Vec<SubtreeRoot>,
    /// Entries in the whole snapshot.
    pub entries: u64,
}

/// One chunk: state entries (raw key, raw value), sorted by tree key.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SnapshotChunk {
    pub index: u32,
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Chunk bits for a state of `entries` entries.
pub fn chunk_bits(entries: usize) -> u8 {
    let chunks = entries.div_ceil(TARGET_CHUNK_ENTRIES).max(1);
    (chunks.next_power_of_two().trailing_zeros() as u8).min(MAX_CHUNK_BITS)
}

/// The chunk a tree key falls in.
fn chunk_of(key: &Hash, bits: u8) -> usize {
    if bits == 0 {
        return 0;
    }
    let top = u32::from_be_bytes([key.0[0], key.0[1], key.0[2], key.0[3]]);
    (top >> (32 - bits as u32)) as usize
}

/// Cuts `values` (a shard's whole state after block `height`) into a
/// manifest and its chunks.
pub fn build(
    values: &HashMap<Vec<u8>, Vec<u8>>,
    shard: ShardId,
    height: Height,
    state_root: Hash,
) -> (SnapshotManifest, Vec<SnapshotChunk>) {
    let bits = chunk_bits(values.len());
    let mut keyed: Vec<(Hash, &Vec<u8>, &Vec<u8>)> =
        values.iter().map(|(k, v)| (smt_key(k), k, v)).collect();
    keyed.sort_by_key(|e| e.0);
    let mut chunks: Vec<SnapshotChunk> = (0..1u32 << bits)
        .map(|index| SnapshotChunk {
            index,
            entries: Vec::new(),
        })
        .collect();
    let mut pairs: Vec<Vec<(Hash, Hash)>> = vec![Vec::new(); chunks.len()];
    for (key, k, v) in keyed {
        let i = chunk_of(&key, bits);
        chunks[i].entries.push((k.clone(), v.clone()));
        pairs[i].push((key, smt_value(v)));
    }
    let roots = pairs
        .iter()
        .map(|p| SubtreeRoot::of(p, bits as usize))
        .collect();
    let manifest = SnapshotManifest {
        shard,
        height,
        state_root,
        bits,
        chunks: roots,
        entries: values.len() as u64,
    };
    (manifest, chunks)
}

fn bad(m: String) -> ChainError {
    ChainError::Snapshot(m)
}

impl SnapshotManifest {
    /// This manifest is of block `header`, which `cert` finalizes under
    /// `committee` (whom the caller's light client trusts for the header's
    /// shard and epoch), and its chunk roots make the header's state root.
    pub fn verify_certified(
        &self,
        header: &BlockHeader,
        cert: &CommitCertificate,
        committee: &Committee,
    ) -> Result<()> {
        if cert.block != header.hash() || cert.height != header.height {
            return Err(ChainError::InvalidCertificate(
                "the certificate is not of the snapshot's block".into(),
            ));
        }
        cert.verify(&header.chain_id, header.shard, committee)?;
        if (self.shard, self.height, self.state_root)
            != (header.shard, header.height, header.state_root)
        {
            return Err(bad(format!(
                "the manifest is of shard {} height {} root {}, the block of shard {} height {} root {}",
                self.shard, self.height, self.state_root, header.shard, header.height, header.state_root
            )));
        }
        self.verify()
    }

    /// The chunk roots combine to the manifest's state root (which the caller
    /// checks against a certified header).
    pub fn verify(&self) -> Result<()> {
        if self.bits > MAX_CHUNK_BITS {
            return Err(bad(format!(
                "{} chunk bits; at most {MAX_CHUNK_BITS}",
                self.bits
            )));
        }
        if self.chunks.len() != 1usize << self.bits {
            return Err(bad(format!(
                "{} chunk roots for {} bits",
                self.chunks.len(),
                self.bits
            )));
        }
        match SubtreeRoot::root_of_level(&self.chunks) {
            Some(root) if root == self.state_root => Ok(()),
            Some(root) => Err(bad(format!(
                "the chunk roots make {root}, not the state root {}",
                self.state_root
            ))),
            None => Err(bad("no chunk roots".into())),
        }
    }
}

impl SnapshotChunk {
    /// This chunk holds exactly the subtree `manifest` says chunk `index` is:
    /// every entry in it belongs there, in order, and they hash to its root.
    pub fn verify(&self, manifest: &SnapshotManifest) -> Result<()> {
        let expected = manifest
            .chunks
            .get(self.index as usize)
            .ok_or_else(|| bad(format!("chunk {} of {}", self.index, manifest.chunks.len())))?;
        let mut pairs: Vec<(Hash, Hash)> = Vec::with_capacity(self.entries.len());
        for (k, v) in &self.entries {
            let key = smt_key(k);
            if chunk_of(&key, manifest.bits) != self.index as usize {
                return Err(bad(format!(
                    "chunk {} holds an entry of chunk {}",
                    self.index,
                    chunk_of(&key, manifest.bits)
                )));
            }
            if pairs.last().is_some_and(|(last, _)| *last >= key) {
                return Err(bad(format!(
                    "chunk {} is not sorted by tree key, or repeats a key",
                    self.index
                )));
            }
            pairs.push((key, smt_value(v)));
        }
        let root = SubtreeRoot::of(&pairs, manifest.bits as usize);
        if root != *expected {
            return Err(bad(format!(
                "chunk {} hashes to {}, the manifest says {}",
                self.index,
                root.hash(),
                expected.hash()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(n: usize) -> HashMap<Vec<u8>, Vec<u8>> {
        (0..n)
            .map(|i| {
                (
                    format!("k/{i}").into_bytes(),
                    format!("value {i}").into_bytes(),
                )
            })
            .collect()
    }

    fn root_of(values: &HashMap<Vec<u8>, Vec<u8>>) -> Hash {
        let mut pairs: Vec<(Hash, Hash)> = values
            .iter()
            .map(|(k, v)| (smt_key(k), smt_value(v)))
            .collect();
        pairs.sort_by_key(|p| p.0);
        SubtreeRoot::of(&pairs, 0).hash()
    }

    #[test]
    fn chunks_verify_and_tampering_is_caught() {
        for n in [0usize, 1, 5, 9_000] {
            let values = state(n);
            let root = root_of(&values);
            let (m, chunks) = build(&values, 1, 10, root);
            assert_eq!(m.verify(), Ok(()), "n={n}");
            assert_eq!(chunks.len(), 1 << m.bits);
            assert_eq!(
                chunks.iter().map(|c| c.entries.len() as u64).sum::<u64>(),
                n as u64
            );
            for c in &chunks {
                assert_eq!(c.verify(&m), Ok(()));
            }
            if n < 2 {
                continue;
            }
            // A changed value, a dropped entry, a chunk under another index.
            let i = chunks
                .iter()
                .position(|c| c.entries.len() > 1)
                .expect("chunk");
            let mut changed = chunks[i].clone();
            changed.entries[0].1.push(0);
            assert!(matches!(changed.verify(&m), Err(ChainError::Snapshot(_))));
            let mut dropped = chunks[i].clone();
            dropped.entries.pop();
            assert!(dropped.verify(&m).is_err());
            let mut reversed = chunks[i].clone();
            reversed.entries.reverse();
            assert!(reversed.verify(&m).is_err());
            if m.bits > 0 {
                let mut moved = chunks[i].clone();
                moved.index ^= 1;
                assert!(moved.verify(&m).is_err());
            }
            // A manifest whose roots do not make its state root.
            let mut forged = m.clone();
            forged.state_root = Hash([7; 32]);
            assert!(forged.verify().is_err());
            let mut short = m.clone();
            short.chunks.pop();
            assert!(short.verify().is_err());
        }
    }

    #[test]
    fn chunk_bits_grow_with_the_state() {
        assert_eq!(chunk_bits(0), 0);
        assert_eq!(chunk_bits(TARGET_CHUNK_ENTRIES), 0);
        assert_eq!(chunk_bits(TARGET_CHUNK_ENTRIES + 1), 1);
        assert_eq!(chunk_bits(usize::MAX / 2), MAX_CHUNK_BITS);
    }
}
