//! ios-node: drives the sans-IO engines of `ios-chain`, `ios-storage` and
//! `ios-market` on real time and libp2p ([`node`], [`p2p`]): the devnet
//! ([`devnet`], [`procnet`]), HUDS providers and gateways ([`huds`]), the
//! search catalog ([`catalog`], [`search`]), the keystore and node config,
//! and the benchmarks ([`bench`] for one shard against the machine's
//! signature-verification limit, [`bench_atomix`] for sharded networks,
//! [`bench_market`] for order lifecycles, all on [`fifo`]'s one-thread
//! network; [`bench_devnet`] and [`bench_huds`] over real libp2p nodes).

pub mod bench;
pub mod bench_atomix;
pub mod bench_devnet;
pub mod bench_huds;
pub mod bench_market;
pub mod catalog;
pub mod config;
pub mod devnet;
pub mod fifo;
pub mod huds;
pub mod keystore;
pub mod listings;
pub mod mux;
pub mod node;
pub mod p2p;
pub mod procnet;
pub mod search;
pub mod trust;

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock milliseconds since the Unix epoch: the only clock replicas see.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
