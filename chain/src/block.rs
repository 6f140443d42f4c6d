//! Blocks, votes, proposals, commit certificates and receipts: the values
//! consensus agrees on and the proofs that it did.

use crate::codec;
use crate::crypto::{Address, Keypair, Signature};
use crate::error::{ChainError, Result};
use crate::hash::{hash_value, merkle_root, tag, Hash};
use crate::tx::SignedTransaction;
use crate::types::{Amount, ChainId, Epoch, Height, Round, ShardId, TimeMs};
use borsh::{BorshDeserialize, BorshSerialize};
use std::collections::BTreeSet;

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct BlockHeader {
    pub chain_id: ChainId,
    pub shard: ShardId,
    pub height: Height,
    pub epoch: Epoch,
    /// The consensus round this block was proposed in; earlier rounds' proposers missed.
    pub round: Round,
    pub prev: Hash,
    pub tx_root: Hash,
    pub receipts_root: Hash,
    /// State root after executing this block.
    pub state_root: Hash,
    pub proposer: Address,
    pub time: TimeMs,
}

impl BlockHeader {
    pub fn hash(&self) -> Hash {
        hash_value(tag::BLOCK_HEADER, self)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Block {
    pub header: BlockHeader,
    pub txs: Vec<SignedTransaction>,
}

impl Block {
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    /// Merkle root over the transactions' leaf hashes (signatures included).
    pub fn tx_root_of(txs: &[SignedTransaction]) -> Hash {
        let leaves: Vec<Hash> = txs.iter().map(|t| t.leaf_hash()).collect();
        merkle_root(&leaves)
    }

    pub fn from_bytes(bytes: &[u8], max: usize) -> Result<Block> {
        codec::decode("block", bytes, max)
    }
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub enum VoteKind {
    Prevote,
    Precommit,
}

/// A vote for a block (or for nothing: `block = None`) in one round.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Vote {
    pub chain_id: ChainId,
    pub shard: ShardId,
    /// The committee epoch the voter signs as: any node that knows the epoch
    /// chain can check membership without knowing which epoch `height` is in,
    /// so a relay that forwards a non-member's vote is provably at fault.
    pub epoch: Epoch,
    pub height: Height,
    pub round: Round,
    pub kind: VoteKind,
    pub block: Option<Hash>,
}

impl Vote {
    pub fn signing_hash(&self) -> Hash {
        hash_value(tag::VOTE, self)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SignedVote {
    pub vote: Vote,
    pub voter: Address,
    pub signature: Signature,
}

impl SignedVote {
    pub fn new(vote: Vote, key: &Keypair) -> SignedVote {
        let signature = key.sign(&vote.signing_hash());
        SignedVote {
            vote,
            voter: key.address(),
            signature,
        }
    }

    pub fn verify(&self) -> Result<()> {
        self.voter
            .verify(&self.vote.signing_hash(), &self.signature, "vote")
    }
}

/// What a proposer signs: the block hash, not the body, so evidence stays small.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Proposal {
    pub chain_id: ChainId,
    pub shard: ShardId,
    pub height: Height,
    pub round: Round,
    pub block: Hash,
    /// Tendermint's validRound: the round in which this block got a prevote quorum, if any.
    pub valid_round: Option<Round>,
}

impl Proposal {
    pub fn signing_hash(&self) -> Hash {
        hash_value(tag::PROPOSAL, self)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SignedProposal {
    pub proposal: Proposal,
    pub proposer: Address,
    pub signature: Signature,
}

impl SignedProposal {
    pub fn new(proposal: Proposal, key: &Keypair) -> SignedProposal {
        let signature = key.sign(&proposal.signing_hash());
        SignedProposal {
            proposal,
            proposer: key.address(),
            signature,
        }
    }

    pub fn verify(&self) -> Result<()> {
        self.proposer
            .verify(&self.proposal.signing_hash(), &self.signature, "proposal")
    }
}

/// The validators of a shard for one epoch, and its believable league.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Committee {
    pub epoch: Epoch,
    /// Sorted by address.
    pub members: Vec<Address>,
    /// The top of `members` by believability at the epoch start; proposers come from here.
    pub believable: Vec<Address>,
    /// Each member's believability (ppm) when elected, aligned with `members`:
    /// the proposer weights of shards that do not hold validator accounts.
    pub weights: Vec<u32>,
}

impl Committee {
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// f = floor((n-1)/3): the Byzantine members tolerated.
    pub fn max_faulty(&self) -> usize {
        self.members.len().saturating_sub(1) / 3
    }

    /// n - f votes: any two quorums share at least f+1 members, so one honest.
    pub fn quorum(&self) -> usize {
        self.members.len() - self.max_faulty()
    }

    pub fn is_member(&self, a: &Address) -> bool {
        self.members.binary_search(a).is_ok()
    }
}

/// 2f+1 (precisely n-f) precommits for one block in one round: proof of finality.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct CommitCertificate {
    pub height: Height,
    pub round: Round,
    pub block: Hash,
    /// (voter, signature), sorted by voter.
    pub signatures: Vec<(Address, Signature)>,
}

impl CommitCertificate {
    /// Pure check of the certificate against `committee`.
    pub fn verify(&self, chain_id: &ChainId, shard: ShardId, committee: &Committee) -> Result<()> {
        let bad = |m: String| Err(ChainError::InvalidCertificate(m));
        let vote = Vote {
            chain_id: chain_id.clone(),
            shard,
            epoch: committee.epoch,
            height: self.height,
            round: self.round,
            kind: VoteKind::Precommit,
            block: Some(self.block),
        };
        let digest = vote.signing_hash();
        let mut seen = BTreeSet::new();
        let mut items = Vec::with_capacity(self.signatures.len());
        for (voter, sig) in &self.signatures {
            if !committee.is_member(voter) {
                return bad(format!(
                    "{voter} is not in the committee of epoch {}",
                    committee.epoch
                ));
            }
            // Strictly increasing voters: one canonical encoding per certificate.
            if seen.last().is_some_and(|last| last >= voter) {
                return bad(format!("signatures are not sorted by voter at {voter}"));
            }
            seen.insert(*voter);
            items.push((*voter, digest, *sig));
        }
        if seen.len() < committee.quorum() {
            return bad(format!(
                "{} signatures, quorum is {}",
                seen.len(),
                committee.quorum()
            ));
        }
        crate::crypto::verify_batch(&items)
            .or_else(|i| bad(format!("signature {i} does not verify")))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, serde::Serialize)]
pub enum ReceiptStatus {
    Success,
    /// The call failed; its writes were discarded, the fee and nonce still count.
    Failed {
        code: String,
        message: String,
    },
}

/// Something a module wants indexers and clients to see.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Event {
    pub module: u16,
    pub kind: String,
    pub data: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Receipt {
    pub tx: Hash,
    pub status: ReceiptStatus,
    pub fee: Amount,
    pub events: Vec<Event>,
}

impl Receipt {
    /// Hashes what consensus agrees on: the error *code*, not its English
    /// message, so rewording a message is not a consensus change.
    pub fn hash(&self) -> Hash {
        let code = match &self.status {
            ReceiptStatus::Success => None,
            ReceiptStatus::Failed { code, .. } => Some(code.as_str()),
        };
        hash_value(tag::RECEIPT, &(&self.tx, code, self.fee, &self.events))
    }

    pub fn root_of(receipts: &[Receipt]) -> Hash {
        let leaves: Vec<Hash> = receipts.iter().map(|r| r.hash()).collect();
        merkle_root(&leaves)
    }
}
