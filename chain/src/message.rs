//! Messages replicas exchange. The transport (simulator, in-process channels,
//! libp2p) moves them; the replica gives them meaning.

use crate::block::{Block, CommitCertificate, SignedProposal, SignedVote};
use crate::codec;
use crate::error::Result;
use crate::fast_sync::SnapshotOffer;
use crate::state::snapshot::SnapshotChunk;
use crate::tx::SignedTransaction;
use crate::types::{Height, Round};
use borsh::{BorshDeserialize, BorshSerialize};
use std::sync::Arc;

/// Largest encoded message accepted from a peer.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;
/// Most blocks in one sync response.
pub const MAX_SYNC_BLOCKS: u32 = 32;

/// Opaque peer handle assigned by the transport.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub struct PeerId(pub u64);

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Message {
    /// Blocks are shared (`Arc`): a broadcast reaches every peer without a copy.
    Proposal {
        proposal: SignedProposal,
        block: Arc<Block>,
        /// With a `valid_round`: the prevote quorum for the block in that round
        /// (Tendermint's proof-of-lock), so peers that missed those prevotes
        /// (a Byzantine member may have sent them different ones) can accept it.
        pol: Vec<SignedVote>,
    },
    Vote(SignedVote),
    /// A block with a prevote quorum in `round`, relayed so that every
    /// replica learns the highest such block and re-proposes it (liveness
    /// after a partition or a Byzantine vote split left locks divergent).
    Polka {
        round: Round,
        block: Arc<Block>,
        votes: Vec<SignedVote>,
    },
    Txs(Vec<SignedTransaction>),
    /// "I am deciding `height` in `round`": lets peers that are ahead push blocks.
    Status {
        height: Height,
        round: Round,
    },
    SyncRequest {
        from: Height,
    },
    SyncResponse {
        blocks: Vec<(Block, CommitCertificate)>,
    },
    /// Fast sync: "send me your newest epoch snapshot".
    SnapshotRequest,
    /// The newest snapshot the replica keeps, or none.
    SnapshotOffer(Option<Box<SnapshotOffer>>),
    ChunkRequest {
        height: Height,
        index: u32,
    },
    Chunk {
        height: Height,
        chunk: SnapshotChunk,
    },
}

impl Message {
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Message> {
        codec::decode("message", bytes, MAX_MESSAGE_BYTES)
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Message::Proposal { .. } => "proposal",
            Message::Vote(_) => "vote",
            Message::Polka { .. } => "polka",
            Message::Txs(_) => "txs",
            Message::Status { .. } => "status",
            Message::SyncRequest { .. } => "sync-request",
            Message::SyncResponse { .. } => "sync-response",
            Message::SnapshotRequest => "snapshot-request",
            Message::SnapshotOffer(_) => "snapshot-offer",
            Message::ChunkRequest { .. } => "chunk-request",
            Message::Chunk { .. } => "chunk",
        }
    }
}
