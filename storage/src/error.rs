//! Every way HUDS input or storage can be wrong, as one typed error.

use crate::ContentId;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Coding parameters no codec can use (k or m zero, k+m over 256, ...).
    #[error("invalid coding parameters: {0}")]
    Params(String),
    #[error("{what} is {len} bytes, over the limit of {max}")]
    TooLarge {
        what: &'static str,
        len: u64,
        max: u64,
    },
    /// Bytes that do not hash to the root they were given or stored under.
    #[error("{what} does not match its root (expected {expected}, got {got})")]
    Corrupt {
        what: String,
        expected: ios_chain::hash::Hash,
        got: ios_chain::hash::Hash,
    },
    #[error("{what} is {got} bytes, expected {expected}")]
    WrongLength {
        what: String,
        expected: u64,
        got: u64,
    },
    /// Fewer intact fragments than the code needs to rebuild a segment.
    #[error("segment {segment} has {have} intact fragments, {need} are needed")]
    TooFewFragments {
        segment: u32,
        have: usize,
        need: usize,
    },
    #[error("the decoded object hashes to {got}, not to its content id {expected}")]
    ContentMismatch { expected: ContentId, got: ContentId },
    #[error("{0} is not stored here")]
    NotFound(String),
    #[error("a different fragment is already stored as {0}")]
    Conflict(String),
    #[error("the store is full: {need} bytes needed, {free} free")]
    Full { need: u64, free: u64 },
    /// A chunk proof that does not verify against its fragment root.
    #[error("invalid chunk proof: {0}")]
    BadProof(String),
    /// Ciphertext that does not decrypt (wrong key, tampered or truncated).
    #[error("cannot decrypt: {0}")]
    Decrypt(String),
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("out of order: {0}")]
    OutOfOrder(String),
    /// Fewer eligible providers (room, price) than a segment has fragments.
    #[error("{need} distinct providers are needed, {eligible} are eligible")]
    NotEnoughProviders { need: usize, eligible: usize },
    #[error("arithmetic overflow in {0}")]
    Overflow(&'static str),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("database: {0}")]
    Db(#[from] sled::Error),
}

impl StorageError {
    /// A short stable code for APIs and logs.
    pub fn code(&self) -> &'static str {
        match self {
            StorageError::Params(_) => "invalid_params",
            StorageError::TooLarge { .. } => "too_large",
            StorageError::Corrupt { .. } => "corrupt",
            StorageError::WrongLength { .. } => "wrong_length",
            StorageError::TooFewFragments { .. } => "too_few_fragments",
            StorageError::ContentMismatch { .. } => "content_mismatch",
            StorageError::NotFound(_) => "not_found",
            StorageError::Conflict(_) => "conflict",
            StorageError::Full { .. } => "full",
            StorageError::BadProof(_) => "bad_proof",
            StorageError::Decrypt(_) => "decrypt",
            StorageError::Malformed { .. } => "malformed",
            StorageError::OutOfOrder(_) => "out_of_order",
            StorageError::NotEnoughProviders { .. } => "not_enough_providers",
            StorageError::Overflow(_) => "overflow",
            StorageError::Io(_) => "io",
            StorageError::Db(_) => "storage",
        }
    }

    /// Whether the bytes a peer handed us prove it faulty (as opposed to
    /// our own disk or database failing, or a request we cannot serve).
    pub fn is_peer_fault(&self) -> bool {
        matches!(
            self,
            StorageError::Corrupt { .. }
                | StorageError::WrongLength { .. }
                | StorageError::BadProof(_)
                | StorageError::Malformed { .. }
                | StorageError::TooLarge { .. }
        )
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
