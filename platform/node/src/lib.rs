//! ios-node: drives the sans-IO engines of `ios-chain` on real time.
//!
//! At this stage the transport is in-process (tokio channels between replica
//! tasks, [`devnet`]); the libp2p issue replaces the transport, not the
//! engines. [`bench`] measures the engines against the machine's signature
//! verification limit; [`bench_atomix`] measures
//! sharded networks with cross-shard load; both run on [`fifo`]'s one-thread network.

pub mod bench;
pub mod bench_atomix;
pub mod bench_devnet;
pub mod bench_huds;
pub mod catalog;
pub mod config;
pub mod devnet;
pub mod fifo;
pub mod huds;
pub mod keystore;
pub mod node;
pub mod p2p;
pub mod procnet;
pub mod search;

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock milliseconds since the Unix epoch: the only clock replicas see.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
