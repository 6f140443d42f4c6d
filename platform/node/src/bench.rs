//! `ios bench chain`: one shard of validators in the simulator's engines with
//! real ed25519 signatures on every transaction and vote, measured against the
//! machine's limits measured in the same run (ed25519 batch verification,
//! blake3, memcpy) on the same single core the benchmark uses.

use crate::fifo::FifoNet;
use anyhow::{Context, Result};
use ios_chain::crypto::{verify_batch, Address, Keypair, Signature};
use ios_chain::execute::Runtime;
use ios_chain::hash::{hash_tagged, Hash};
use ios_chain::ledger::{LedgerCall, LedgerModule, Token};
use ios_chain::params::{ChainParams, Genesis};
use ios_chain::replica::{Replica, ReplicaConfig};
use ios_chain::shard::BEACON;
use ios_chain::state::smt::SparseMerkleTree;
use ios_chain::tx::{SignedTransaction, Transaction};
use ios_chain::types::Height;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct ChainBenchConfig {
    pub validators: usize,
    pub txs: usize,
    pub users: usize,
    pub block_txs: u32,
    /// Size of the tree for the sparse-Merkle measurement (0 skips it).
    pub smt_keys: u64,
}

impl Default for ChainBenchConfig {
    fn default() -> Self {
        ChainBenchConfig {
            validators: 4,
            txs: 20_000,
            users: 2_000,
            block_txs: 2_000,
            smt_keys: 100_000,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct HardwareLimits {
    /// ed25519 signatures verified per second in batches of 1024, one core.
    pub ed25519_batch_verify_per_sec: f64,
    pub ed25519_single_verify_per_sec: f64,
    pub blake3_gib_per_sec: f64,
    pub memcpy_gib_per_sec: f64,
    pub cores: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct ChainBenchReport {
    pub validators: usize,
    pub txs: usize,
    pub blocks: Height,
    pub seconds: f64,
    pub finalized_tps: f64,
    pub finality_p50_ms: f64,
    pub finality_p99_ms: f64,
    /// Sparse-Merkle updates per second on a `smt_keys`-key tree.
    pub smt_updates_per_sec: f64,
    pub smt_keys: u64,
    pub limits: HardwareLimits,
    /// `tps * validators / verify_rate`: the share of the signature-verification limit reached.
    pub ratio: f64,
}

/// Measures the hardware limits on one core for about `budget`.
pub fn hardware_limits(budget: Duration) -> HardwareLimits {
    let keys: Vec<Keypair> = (0..1024)
        .map(|i| Keypair::from_seed("bench-verify", i))
        .collect();
    let items: Vec<(Address, Hash, Signature)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let d = hash_tagged("bench", &(i as u64).to_le_bytes());
            (k.address(), d, k.sign(&d))
        })
        .collect();
    let per = budget / 4;
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < per {
        verify_batch(&items).expect("valid signatures");
        n += items.len() as u64;
    }
    let batch = n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < per {
        for (a, d, s) in &items {
            a.verify(d, s, "bench").expect("valid");
        }
        n += items.len() as u64;
    }
    let single = n as f64 / t.elapsed().as_secs_f64();
    let buf = vec![7u8; 16 << 20];
    let t = Instant::now();
    let mut bytes = 0u64;
    while t.elapsed() < per {
        std::hint::black_box(blake3::hash(&buf));
        bytes += buf.len() as u64;
    }
    let blake = bytes as f64 / t.elapsed().as_secs_f64() / (1u64 << 30) as f64;
    let mut dst = vec![0u8; buf.len()];
    let t = Instant::now();
    let mut bytes = 0u64;
    while t.elapsed() < per {
        dst.copy_from_slice(&buf);
        std::hint::black_box(&dst);
        bytes += buf.len() as u64;
    }
    let memcpy = bytes as f64 / t.elapsed().as_secs_f64() / (1u64 << 30) as f64;
    HardwareLimits {
        ed25519_batch_verify_per_sec: batch,
        ed25519_single_verify_per_sec: single,
        blake3_gib_per_sec: blake,
        memcpy_gib_per_sec: memcpy,
        cores: 1,
    }
}

/// Sparse-Merkle updates per second, as the state store uses the tree (nodes
/// in memory, stale ones pruned), on a `keys`-key tree in batches of 1,000
/// sorted updates: hashing, node creation and pruning.
pub fn smt_rate(keys: u64) -> Result<f64> {
    if keys < 1_000 {
        return Ok(0.0);
    }
    let smt = SparseMerkleTree::in_memory();
    let key = |i: u64| hash_tagged("bench-key", &i.to_le_bytes());
    let mut root = Hash::ZERO;
    let apply = |root: Hash, ups: &[(Hash, Option<Hash>)]| -> Result<Hash> {
        let (r, nodes) = smt.update(root, ups).map_err(|e| anyhow::anyhow!("{e}"))?;
        smt.write_batch(&nodes, &mut sled::Batch::default());
        Ok(r)
    };
    for chunk in 0..keys / 1_000 {
        let mut ups: Vec<(Hash, Option<Hash>)> = (0..1_000u64)
            .map(|i| (key(chunk * 1_000 + i), Some(key(i))))
            .collect();
        ups.sort_by_key(|u| u.0);
        root = apply(root, &ups)?;
    }
    let rounds = 50u64;
    let mut n = 0usize;
    let t = Instant::now();
    for round in 0..rounds {
        let mut ups: Vec<(Hash, Option<Hash>)> = (0..1_000u64)
            .map(|i| {
                (
                    key((round * 7_919 + i * 97) % keys),
                    Some(key(round + u64::MAX / 2 + i)),
                )
            })
            .collect();
        ups.sort_by_key(|u| u.0);
        ups.dedup_by_key(|u| u.0);
        n += ups.len();
        root = apply(root, &ups)?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

fn bench_genesis(cfg: &ChainBenchConfig, validators: &[Keypair], users: &[Keypair]) -> Genesis {
    let mut params = ChainParams::devnet("ios-bench");
    params.set_committee_size(cfg.validators as u16);
    params.max_block_txs = cfg.block_txs;
    let addrs = |ks: &[Keypair]| ks.iter().map(|k| k.address()).collect::<Vec<_>>();
    Genesis::test_network(
        params,
        0,
        hash_tagged("ios/bench", b"genesis"),
        validators,
        &addrs(users),
    )
}

/// Runs the chain benchmark in `dir` and reports it with the hardware limits.
pub fn run_chain(
    cfg: &ChainBenchConfig,
    dir: &Path,
    mut progress: impl FnMut(&str),
) -> Result<ChainBenchReport> {
    progress("measuring hardware limits");
    let limits = hardware_limits(Duration::from_secs(2));

    progress("signing the load");
    let vkeys: Vec<Keypair> = (0..cfg.validators as u64)
        .map(|i| Keypair::from_seed("bench-validator", i))
        .collect();
    let users: Vec<Keypair> = (0..cfg.users as u64)
        .map(|i| Keypair::from_seed("bench-user", i))
        .collect();
    let genesis = bench_genesis(cfg, &vkeys, &users);
    let chain_id = genesis.params.chain_id.clone();
    let mut load: VecDeque<SignedTransaction> = (0..cfg.txs)
        .map(|i| {
            let u = i % users.len();
            let tx = Transaction {
                chain_id: chain_id.clone(),
                shard: BEACON,
                sender: users[u].address(),
                nonce: (i / users.len()) as u64,
                fee: 1_000,
                expires_at: u64::MAX,
                call: LedgerModule::call(&LedgerCall::Transfer {
                    to: users[(u + 1) % users.len()].address(),
                    amount: 1,
                    token: Token::Iost,
                }),
            };
            tx.sign(&users[u])
        })
        .collect();

    progress("running consensus");
    let runtime = Runtime::new(genesis.params.clone());
    // Validators as a validator runs them: no transaction index (that is a
    // gateway's job), no artificial pause between blocks.
    let rc = ReplicaConfig {
        min_block_interval_ms: 0,
        empty_block_interval_ms: 0,
        index_txs: false,
        ..ReplicaConfig::default()
    };
    let start = Instant::now();
    let now_ms = |start: Instant| start.elapsed().as_millis() as u64 + 1;
    let mut net = FifoNet::default();
    let mut dbs = Vec::new();
    for (i, k) in vkeys.iter().enumerate() {
        let db = ios_chain::state::open_db(&dir.join(format!("v{i}")), None)
            .context("opening bench store")?;
        let replica = Replica::open(
            &db,
            k.clone(),
            runtime.clone(),
            &genesis,
            rc.clone(),
            now_ms(start),
        )?;
        net.add(BEACON, replica);
        dbs.push(db);
    }
    let mut submitted_at: BTreeMap<Hash, Instant> = BTreeMap::new();
    let mut latencies: Vec<f64> = Vec::with_capacity(cfg.txs);
    let mut committed_txs = 0usize;
    let mut blocks: BTreeMap<Height, ()> = BTreeMap::new();
    let chunk = (cfg.block_txs as usize).max(1);
    let mut in_flight = 0usize;
    let mut next_target = 0usize;
    let n = net.replicas.len();
    while committed_txs < cfg.txs {
        if start.elapsed() > Duration::from_secs(600) {
            anyhow::bail!(
                "benchmark made no progress for 10 minutes ({committed_txs} of {} committed)",
                cfg.txs
            );
        }
        while in_flight < 2 * chunk && !load.is_empty() {
            let take = chunk.min(load.len());
            let batch: Vec<SignedTransaction> = load.drain(..take).collect();
            let t = Instant::now();
            for tx in &batch {
                submitted_at.insert(tx.id(), t);
            }
            in_flight += take;
            let target = next_target % n;
            next_target += 1;
            let (results, outs) = net.replicas[target].submit(batch, now_ms(start));
            if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
                anyhow::bail!("bench transaction refused: {e}");
            }
            net.route(target, outs);
        }
        if !net.deliver_one(now_ms(start)) {
            net.sleep_until_due(now_ms(start), Duration::from_millis(50));
            for i in 0..n {
                let outs = net.replicas[i].tick(now_ms(start))?;
                net.route(i, outs);
            }
        }
        for (_, c) in std::mem::take(&mut net.commits) {
            if blocks.insert(c.block.header.height, ()).is_none() {
                let t = Instant::now();
                for r in &c.receipts {
                    if let Some(s) = submitted_at.remove(&r.tx) {
                        latencies.push(t.duration_since(s).as_secs_f64() * 1e3);
                        committed_txs += 1;
                        in_flight -= 1;
                    }
                }
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    drop(net);
    drop(dbs);
    progress("measuring sparse-Merkle updates");
    let smt = smt_rate(cfg.smt_keys)?;
    latencies.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: usize| latencies[(latencies.len() - 1) * p / 100];
    let tps = cfg.txs as f64 / seconds;
    Ok(ChainBenchReport {
        validators: cfg.validators,
        txs: cfg.txs,
        blocks: blocks.len() as Height,
        seconds,
        finalized_tps: tps,
        finality_p50_ms: pct(50),
        finality_p99_ms: pct(99),
        smt_updates_per_sec: smt,
        smt_keys: cfg.smt_keys,
        ratio: tps * cfg.validators as f64 / limits.ed25519_batch_verify_per_sec,
        limits,
    })
}
