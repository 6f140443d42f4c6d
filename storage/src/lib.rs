//! ios-storage: HUDS, the platform's erasure-coded, content-addressed and
//! searchable storage.
//!
//! Built so far (sans-IO except for the fragment store's own files):
//! - [`codec`]: objects cut into segments, each Reed-Solomon coded into
//!   k data + m parity fragments, streamed one segment at a time; the
//!   [`ContentId`] is the blake3 of the stored bytes.
//! - [`tree`]: a fragment's root is its plain blake3 hash; any 1 KiB chunk
//!   is proven against it with the blake3 tree's sibling chaining values.
//! - [`crypt`]: private objects encrypted on the client (XChaCha20-Poly1305
//!   in authenticated frames) under a per-object key sealed to each reader's
//!   X25519 key.
//! - [`deal`]: the deterministic rules of deals: placement of fragments on
//!   distinct providers (weighted by believability x free capacity, seeded
//!   by the epoch randomness), costs and payments in integers, audit
//!   challenges and their checks.
//! - [`store`]: a provider's fragments, metadata in sled and bytes in files,
//!   with a capacity limit; a fragment that no longer matches its root is
//!   detected on read and never served.
//!
//! Randomness (object keys, nonces, ephemeral keys) comes in from the caller.

pub mod codec;
pub mod crypt;
pub mod deal;
pub mod error;
pub mod module;
pub mod store;
pub mod tree;

pub use error::{Result, StorageError};
pub use ios_chain as chain;

use borsh::{BorshDeserialize, BorshSerialize};
use ios_chain::hash::Hash;
use std::fmt;

/// An object's address: the blake3 hash of the bytes stored (the ciphertext
/// for a private object), so anyone holding the bytes can check them.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, BorshSerialize, BorshDeserialize,
)]
pub struct ContentId(pub Hash);

impl ContentId {
    /// The id of `bytes`.
    pub fn of(bytes: &[u8]) -> ContentId {
        ContentId(Hash(*blake3::hash(bytes).as_bytes()))
    }

    pub fn to_hex(&self) -> String {
        self.0.to_hex()
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cid:{:?}", self.0)
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::str::FromStr for ContentId {
    type Err = StorageError;

    fn from_str(s: &str) -> Result<ContentId> {
        Hash::from_hex(s.trim())
            .map(ContentId)
            .ok_or_else(|| StorageError::Malformed {
                what: "content id",
                reason: format!("{s:?} is not 64 hex characters"),
            })
    }
}

impl serde::Serialize for ContentId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for ContentId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ContentId, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The plain blake3 hash of `bytes`, as a chain [`Hash`] (a fragment's root).
pub fn blake3_root(bytes: &[u8]) -> Hash {
    Hash(*blake3::hash(bytes).as_bytes())
}
