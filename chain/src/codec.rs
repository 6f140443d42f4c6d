//! Canonical encoding. Every consensus value has exactly one byte form: borsh.
//! Decoding checks the size limit before reading and rejects trailing bytes,
//! so two different byte strings never decode to the same value.

use crate::error::{ChainError, Result};
use borsh::{BorshDeserialize, BorshSerialize};

/// Encodes `value` canonically.
pub fn encode<T: BorshSerialize>(value: &T) -> Vec<u8> {
    borsh::to_vec(value).expect("borsh encoding into memory is infallible")
}

/// Decodes exactly one `T` from `bytes`, which must be at most `max` long.
pub fn decode<T: BorshDeserialize>(what: &'static str, bytes: &[u8], max: usize) -> Result<T> {
    if bytes.len() > max {
        return Err(ChainError::TooLarge {
            what,
            len: bytes.len(),
            max,
        });
    }
    borsh::from_slice(bytes).map_err(|e| ChainError::Malformed {
        what,
        reason: e.to_string(),
    })
}
