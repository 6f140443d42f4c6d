//! The chain's one error type. Every rejection of bad input is a variant here
//! with a message a user can act on; nothing in this crate panics on input.

use crate::hash::Hash;
use crate::types::{Amount, Height};

pub type Result<T, E = ChainError> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("malformed encoding of {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("{what} is {len} bytes, over the limit of {max}")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("invalid address: {0}")]
    InvalidAddress(String),
    #[error("bad signature on {0}")]
    BadSignature(&'static str),
    #[error("wrong chain id: expected {expected:?}, got {got:?}")]
    WrongChainId { expected: String, got: String },
    #[error("wrong shard: expected {expected}, got {got}")]
    WrongShard { expected: u16, got: u16 },
    #[error("nonce {got} is not the account's next nonce {expected}")]
    BadNonce { expected: u64, got: u64 },
    #[error("transaction expired at height {expires_at} (block height {height})")]
    Expired { expires_at: Height, height: Height },
    #[error("amount overflow")]
    Overflow,
    #[error("insufficient funds: need {need}, have {have}")]
    InsufficientFunds { need: Amount, have: Amount },
    #[error("fee {fee} is below the minimum {min}")]
    FeeTooLow { fee: Amount, min: Amount },
    #[error("Servi is non-transferable: it is earned by contributing and cannot be sent")]
    ServiNotTransferable,
    #[error("amount must be positive")]
    ZeroAmount,
    #[error("unknown module {0}")]
    UnknownModule(u16),
    #[error("module {module} may not write key outside its prefix")]
    ForeignKey { module: &'static str },
    #[error("invalid evidence: {0}")]
    InvalidEvidence(String),
    #[error("evidence already processed")]
    DuplicateEvidence,
    #[error("invalid block: {0}")]
    InvalidBlock(String),
    #[error("invalid commit certificate: {0}")]
    InvalidCertificate(String),
    #[error("unknown block {0}")]
    UnknownBlock(Hash),
    #[error("invalid genesis: {0}")]
    InvalidGenesis(String),
    #[error("storage: {0}")]
    Storage(String),
    #[error("state proof: {0}")]
    Proof(String),
    #[error("mempool: {0}")]
    Mempool(String),
    #[error("{0} is not a member of the current committee")]
    NotCommitteeMember(crate::crypto::Address),
    #[error(
        "{signer} signed as a member of shard {shard}'s committee in epoch {epoch}, and is not one"
    )]
    NotMemberOfEpoch {
        signer: crate::crypto::Address,
        shard: u16,
        epoch: u64,
    },
    #[error("randomness beacon: {0}")]
    Beacon(String),
    #[error("PVSS: {0}")]
    Pvss(#[from] crate::pvss::PvssError),
    #[error("relay: {0}")]
    Relay(String),
    #[error("cross-shard transfer: {0}")]
    Atomix(String),
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// A module's own refusal of a call (`module` is its name).
    #[error("{module}: {reason}")]
    Module {
        module: &'static str,
        reason: String,
    },
    #[error("epoch {epoch} is unknown to this shard (it knows up to {known}): its epoch change has not arrived yet")]
    UnknownEpoch { epoch: u64, known: u64 },
}

impl ChainError {
    /// Whether the error proves that the peer who sent the input misbehaved
    /// (malformed, oversized, forged or misaddressed), as opposed to input
    /// that is only stale, early or unaffordable, which honest peers send
    /// during ordinary churn. Transports penalize the first kind only.
    /// `NotCommitteeMember` is not a fault: a replica judges it against the
    /// committee of its own height, which a relay at another height cannot
    /// know. `NotMemberOfEpoch` is: it is judged against the epoch the signer
    /// named, which every node checks before forwarding (protocol 19.2).
    pub fn is_peer_fault(&self) -> bool {
        matches!(
            self,
            ChainError::Malformed { .. }
                | ChainError::TooLarge { .. }
                | ChainError::BadSignature(_)
                | ChainError::WrongChainId { .. }
                | ChainError::WrongShard { .. }
                | ChainError::InvalidCertificate(_)
                | ChainError::NotMemberOfEpoch { .. }
                | ChainError::Pvss(_)
        )
    }

    /// Short machine-readable code, stored in failed receipts and shown by APIs.
    pub fn code(&self) -> &'static str {
        match self {
            ChainError::Malformed { .. } => "malformed",
            ChainError::TooLarge { .. } => "too_large",
            ChainError::InvalidAddress(_) => "invalid_address",
            ChainError::BadSignature(_) => "bad_signature",
            ChainError::WrongChainId { .. } => "wrong_chain_id",
            ChainError::WrongShard { .. } => "wrong_shard",
            ChainError::BadNonce { .. } => "bad_nonce",
            ChainError::Expired { .. } => "expired",
            ChainError::Overflow => "overflow",
            ChainError::InsufficientFunds { .. } => "insufficient_funds",
            ChainError::FeeTooLow { .. } => "fee_too_low",
            ChainError::ServiNotTransferable => "servi_not_transferable",
            ChainError::ZeroAmount => "zero_amount",
            ChainError::UnknownModule(_) => "unknown_module",
            ChainError::ForeignKey { .. } => "foreign_key",
            ChainError::InvalidEvidence(_) => "invalid_evidence",
            ChainError::DuplicateEvidence => "duplicate_evidence",
            ChainError::InvalidBlock(_) => "invalid_block",
            ChainError::InvalidCertificate(_) => "invalid_certificate",
            ChainError::UnknownBlock(_) => "unknown_block",
            ChainError::InvalidGenesis(_) => "invalid_genesis",
            ChainError::Storage(_) => "storage",
            ChainError::Proof(_) => "proof",
            ChainError::Mempool(_) => "mempool",
            ChainError::NotCommitteeMember(_) => "not_committee_member",
            ChainError::NotMemberOfEpoch { .. } => "not_member_of_epoch",
            ChainError::Beacon(_) => "beacon",
            ChainError::Pvss(_) => "pvss",
            ChainError::Relay(_) => "relay",
            ChainError::Atomix(_) => "atomix",
            ChainError::Snapshot(_) => "snapshot",
            ChainError::Module { .. } => "module_refused",
            ChainError::UnknownEpoch { .. } => "unknown_epoch",
        }
    }
}

impl From<sled::Error> for ChainError {
    fn from(e: sled::Error) -> Self {
        ChainError::Storage(e.to_string())
    }
}
