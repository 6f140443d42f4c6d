//! ios-chain: the IOS ledger and its consensus, as sans-IO state machines.
//!
//! Accounts, transactions and blocks ([`tx`], [`block`], [`account`]); the
//! sparse Merkle state, persisted in sled ([`state`]); deterministic execution with a
//! module boundary for storage and market ([`execute`], [`module`]);
//! Proof-of-Believability committees and Tendermint finality ([`committee`],
//! [`replica`]); the shard layout and TransEpoch committees ([`shard`]); the
//! epoch randomness beacon and its publicly verifiable secret sharing
//! ([`beacon`], [`pvss`]); and the deterministic simulator that tests them
//! ([`sim`]).
//!
//! Nothing here opens a socket, spawns a task, reads a clock or draws OS
//! randomness: time, messages and randomness are inputs.

#![deny(clippy::float_arithmetic)]

pub mod account;
pub mod atomix;
pub mod beacon;
pub mod block;
pub mod codec;
pub mod committee;
pub mod crypto;
pub mod error;
pub mod execute;
pub mod fast_sync;
pub mod hash;
pub mod hex;
pub mod ledger;
pub mod light_client;
pub mod mempool;
pub mod message;
pub mod module;
pub mod params;
pub mod pvss;
pub mod relayer;
pub mod replica;
pub mod shard;
pub mod sim;
pub mod state;
pub mod tx;
pub mod types;

pub use error::{ChainError, Result};
