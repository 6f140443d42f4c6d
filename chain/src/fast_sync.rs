//! Fast sync of one shard, as a sans-IO state machine: a node with an empty
//! store asks the shard's replicas for their newest epoch snapshot, takes an
//! offer that two peers agree on, whose certificate verifies under a
//! committee its light client trusts and whose manifest makes the certified
//! state root, fetches the
//! chunks from the peers (checking each on arrival; a bad one is asked again
//! from another peer), and restores the store. If no peer has a snapshot
//! (the shard is still in its first epoch) it gives up, and the caller starts
//! from genesis and syncs blocks instead.

use crate::block::{BlockHeader, CommitCertificate, Committee};
use crate::error::{ChainError, Result};
use crate::hash::Hash;
use crate::message::{Message, PeerId};
use crate::state::snapshot::{SnapshotChunk, SnapshotManifest};
use crate::state::StateStore;
use crate::types::{ChainId, Epoch, ShardId, TimeMs};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A request unanswered for this long is sent again, to another peer.
pub const RETRY_MS: TimeMs = 1_000;
/// Peers that said they have no snapshot before the sync gives up.
pub const NO_SNAPSHOT_ANSWERS: usize = 2;
/// Distinct peers that must offer the same snapshot before it is adopted
/// (or report the adopted one gone before it is given up); fewer when the
/// sync has fewer peers.
pub const AGREE: usize = 2;
/// Offers remembered while waiting for agreement.
const MAX_CANDIDATES: usize = 16;
/// Chunk requests outstanding per peer (a big state has up to 65 536 chunks;
/// asking for all at once would flood the peers, which serve at most
/// `replica::CHUNKS_PER_INTERVAL` per peer per gossip interval).
pub const IN_FLIGHT_PER_PEER: usize = 4;

/// A snapshot a peer offered: its manifest and the block it is of.
#[derive(Clone, Debug, PartialEq, Eq, borsh::BorshSerialize, borsh::BorshDeserialize)]
pub struct SnapshotOffer {
    pub manifest: SnapshotManifest,
    pub header: BlockHeader,
    pub cert: CommitCertificate,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Still asking or fetching.
    Running,
    /// Every chunk is in and checked: call [`FastSync::restore`].
    Complete,
    /// No peer has a snapshot: start from genesis and sync blocks.
    NoSnapshot,
}

pub struct FastSync {
    shard: ShardId,
    chain_id: ChainId,
    genesis_hash: Hash,
    /// The committees of this shard the node's light client trusts, by epoch.
    committees: BTreeMap<Epoch, Committee>,
    offer: Option<(SnapshotOffer, Committee)>,
    /// Checked offers newer than the adopted one, by block hash, with the
    /// peers that offered each.
    candidates: BTreeMap<Hash, (SnapshotOffer, Committee, BTreeSet<PeerId>)>,
    /// Peers asked for a chunk of the adopted snapshot that no longer keep it.
    gone: BTreeSet<PeerId>,
    /// `AGREE`, or the number of peers if fewer (set at each tick).
    quorum: usize,
    chunks: BTreeMap<u32, SnapshotChunk>,
    /// Outstanding requests: chunk -> (peer, when asked).
    asked: BTreeMap<u32, (PeerId, TimeMs)>,
    next_offer_request: TimeMs,
    no_snapshot: usize,
    turn: usize,
    /// Offers and chunks refused (bad certificate, manifest or chunk).
    pub refused: u64,
    /// Adopted snapshots replaced by a newer one mid-download.
    pub superseded: u64,
    /// Adopted snapshots given up because their holders replaced them.
    pub abandoned: u64,
}

impl FastSync {
    pub fn new(
        shard: ShardId,
        chain_id: ChainId,
        genesis_hash: Hash,
        committees: BTreeMap<Epoch, Committee>,
    ) -> FastSync {
        FastSync {
            shard,
            chain_id,
            genesis_hash,
            committees,
            offer: None,
            candidates: BTreeMap::new(),
            gone: BTreeSet::new(),
            quorum: 1,
            chunks: BTreeMap::new(),
            asked: BTreeMap::new(),
            next_offer_request: 0,
            no_snapshot: 0,
            turn: 0,
            refused: 0,
            superseded: 0,
            abandoned: 0,
        }
    }

    /// Trusts `committee` for `epoch` of this shard too (the node's light
    /// client learned it after the sync began), so a snapshot of that epoch
    /// can be taken.
    pub fn trust(&mut self, epoch: Epoch, committee: Committee) {
        self.committees.insert(epoch, committee);
    }

    pub fn progress(&self) -> Progress {
        match &self.offer {
            Some((o, _)) if self.chunks.len() == o.manifest.chunks.len() => Progress::Complete,
            None if self.no_snapshot >= NO_SNAPSHOT_ANSWERS => Progress::NoSnapshot,
            _ => Progress::Running,
        }
    }

    /// The height of the adopted snapshot, if any.
    pub fn height(&self) -> Option<u64> {
        self.offer.as_ref().map(|(o, _)| o.manifest.height)
    }

    /// Requests to send now to some of `peers` (the shard's replicas).
    pub fn tick(&mut self, now: TimeMs, peers: &[PeerId]) -> Vec<(PeerId, Arc<Message>)> {
        let mut out = Vec::new();
        if peers.is_empty() || self.progress() != Progress::Running {
            return out;
        }
        self.quorum = AGREE.min(peers.len());
        let Some((offer, _)) = &self.offer else {
            if now >= self.next_offer_request {
                self.next_offer_request = now + RETRY_MS;
                let msg = Arc::new(Message::SnapshotRequest);
                out.extend(peers.iter().map(|p| (*p, msg.clone())));
            }
            return out;
        };
        let height = offer.manifest.height;
        let mut room = (IN_FLIGHT_PER_PEER * peers.len()).saturating_sub(
            self.asked
                .values()
                .filter(|(_, at)| now < at + RETRY_MS)
                .count(),
        );
        for index in 0..offer.manifest.chunks.len() as u32 {
            if room == 0 {
                break;
            }
            if self.chunks.contains_key(&index) {
                continue;
            }
            if self
                .asked
                .get(&index)
                .is_some_and(|(_, at)| now < at + RETRY_MS)
            {
                continue;
            }
            // Round-robin, so a retry goes to another peer.
            let peer = peers[self.turn % peers.len()];
            self.turn += 1;
            self.asked.insert(index, (peer, now));
            out.push((peer, Arc::new(Message::ChunkRequest { height, index })));
            room -= 1;
        }
        out
    }

    /// Takes a peer's answer. An `Err` means the peer sent something that
    /// does not check out (the transport may penalize it); the sync goes on.
    ///
    /// A snapshot is adopted once [`AGREE`] distinct peers offered it (one,
    /// with a single peer), so one Byzantine peer can neither make a node
    /// fetch a snapshot nobody else serves nor, by offering ever newer
    /// blocks, restart a download. A newer snapshot offered by that many
    /// replaces the one being fetched; and when that many peers asked for a
    /// chunk answer with another snapshot (theirs was replaced), the adopted
    /// one is given up.
    pub fn handle(&mut self, from: PeerId, msg: &Message) -> Result<()> {
        match msg {
            Message::SnapshotOffer(None) => {
                if self.offer.is_none() {
                    self.no_snapshot += 1;
                }
                self.note_gone(from);
                Ok(())
            }
            Message::SnapshotOffer(Some(offer)) => {
                let adopted = self.offer.as_ref().map(|(o, _)| o.manifest.height);
                if adopted == Some(offer.manifest.height) {
                    return Ok(());
                }
                self.note_gone(from);
                if self
                    .offer
                    .as_ref()
                    .is_some_and(|(o, _)| o.manifest.height > offer.manifest.height)
                {
                    return Ok(());
                }
                let committee = match self.check_offer(offer) {
                    Ok(c) => c,
                    Err(e) => {
                        self.refused += 1;
                        return Err(e);
                    }
                };
                let key = offer.header.hash();
                if !self.candidates.contains_key(&key) && self.candidates.len() >= MAX_CANDIDATES {
                    // Keep the newest ones.
                    let lowest = self
                        .candidates
                        .iter()
                        .min_by_key(|(_, (o, _, _))| o.manifest.height)
                        .map(|(k, _)| *k);
                    if let Some(k) = lowest {
                        self.candidates.remove(&k);
                    }
                }
                let (_, _, peers) = self
                    .candidates
                    .entry(key)
                    .or_insert_with(|| ((**offer).clone(), committee, BTreeSet::new()));
                peers.insert(from);
                if peers.len() >= self.quorum {
                    if let Some((offer, committee, _)) = self.candidates.remove(&key) {
                        if self.offer.is_some() {
                            self.superseded += 1;
                        }
                        let height = offer.manifest.height;
                        self.candidates
                            .retain(|_, (o, _, _)| o.manifest.height > height);
                        self.offer = Some((offer, committee));
                        self.chunks.clear();
                        self.asked.clear();
                        self.gone.clear();
                    }
                }
                Ok(())
            }
            Message::Chunk { height, chunk } => {
                let Some((offer, _)) = &self.offer else {
                    return Ok(());
                };
                if *height != offer.manifest.height || self.chunks.contains_key(&chunk.index) {
                    return Ok(());
                }
                if let Err(e) = chunk.verify(&offer.manifest) {
                    self.refused += 1;
                    // Ask someone else at the next tick.
                    self.asked.remove(&chunk.index);
                    return Err(e);
                }
                self.asked.remove(&chunk.index);
                self.chunks.insert(chunk.index, chunk.clone());
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// `from`, asked for a chunk of the adopted snapshot, answered with
    /// another snapshot or none: it no longer keeps ours. Once [`AGREE`]
    /// peers say so, the adopted snapshot is given up and offers asked again.
    fn note_gone(&mut self, from: PeerId) {
        if self.offer.is_none() || !self.asked.values().any(|(p, _)| *p == from) {
            return;
        }
        self.gone.insert(from);
        if self.gone.len() >= self.quorum {
            self.offer = None;
            self.chunks.clear();
            self.asked.clear();
            self.gone.clear();
            self.no_snapshot = 0;
            self.next_offer_request = 0;
            self.abandoned += 1;
        }
    }

    fn check_offer(&self, offer: &SnapshotOffer) -> Result<Committee> {
        let h = &offer.header;
        if h.chain_id != self.chain_id || h.shard != self.shard {
            return Err(ChainError::Snapshot(format!(
                "an offer for shard {} of chain {}",
                h.shard, h.chain_id.0
            )));
        }
        let committee = self.committees.get(&h.epoch).ok_or_else(|| {
            ChainError::Snapshot(format!(
                "the snapshot's block is of epoch {}, whose committee this node does not know",
                h.epoch
            ))
        })?;
        offer.manifest.verify_certified(h, &offer.cert, committee)?;
        Ok(committee.clone())
    }

    /// Writes the checked snapshot into the empty store in `db`.
    pub fn restore(&self, db: &sled::Db) -> Result<StateStore> {
        let (offer, committee) = self
            .offer
            .as_ref()
            .filter(|_| self.progress() == Progress::Complete)
            .ok_or_else(|| ChainError::Snapshot("the snapshot is not complete".into()))?;
        let chunks: Vec<SnapshotChunk> = self.chunks.values().cloned().collect();
        StateStore::restore(
            db,
            self.genesis_hash,
            committee,
            &offer.header,
            &offer.cert,
            &offer.manifest,
            &chunks,
        )
    }
}
