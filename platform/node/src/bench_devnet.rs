//! `ios bench devnet`: the default devnet (beacon + 2 shards x 4
//! validators and a gateway, every node a libp2p node on loopback) under a
//! steady load of signed transfers, beside the engines' own throughput for
//! the same topology measured in the same run (every replica on one thread,
//! no network: `bench_atomix` at 0% cross-shard), and the hardware limits.

use crate::bench::{hardware_limits, HardwareLimits};
use crate::bench_atomix::{self, AtomixBenchConfig};
use crate::devnet::{Devnet, DevnetConfig};
use anyhow::{Context, Result};
use ios_chain::crypto::Keypair;
use ios_chain::hash::Hash;
use ios_chain::ledger::{LedgerCall, LedgerModule, Token};
use ios_chain::shard::home_shard;
use ios_chain::tx::{SignedTransaction, Transaction};
use ios_chain::types::ShardId;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct DevnetBenchConfig {
    pub shards: u16,
    pub committee: usize,
    /// Seconds of load measured (after a warm-up of a quarter of it).
    pub seconds: u64,
    /// Funded users the load sends from.
    pub users: usize,
    /// Transfers for the engines-alone run.
    pub sim_transfers: usize,
    /// Offered load, transfers per second (None: the engines' rate).
    pub offered_tps: Option<f64>,
}

impl Default for DevnetBenchConfig {
    fn default() -> Self {
        DevnetBenchConfig {
            shards: 2,
            committee: 4,
            seconds: 20,
            users: 2_000,
            sim_transfers: 20_000,
            offered_tps: None,
        }
    }
}

/// One offered load and what the devnet made of it.
#[derive(Clone, Debug, Serialize)]
pub struct LoadLevel {
    pub offered_tps: f64,
    /// Transfers finalized per second over the measured window.
    pub finalized_tps: f64,
    pub latency_p50_ms: u64,
    pub latency_p99_ms: u64,
    /// It kept up: finalized >= 90% of offered, p99 <= 5 s.
    pub sustained: bool,
    /// Share of the measured window the gateway's event loop was busy
    /// (1.0: saturated, one task cannot use more than one core).
    pub gateway_busy: f64,
    /// The same for the busiest validator.
    pub validator_busy_max: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct DevnetBenchReport {
    pub limits: HardwareLimits,
    pub shards: u16,
    pub committee: usize,
    /// Nodes of the devnet (validators and the gateway).
    pub nodes: usize,
    /// The engines alone, same topology, every replica on one thread.
    pub sim_tps: f64,
    /// Every load tried, highest first: the engines' rate, then steps of
    /// 15% down until the devnet keeps up (or one `--tps` level).
    pub levels: Vec<LoadLevel>,
    /// The devnet's throughput: finalized TPS at the highest load it
    /// sustained (else the best seen).
    pub devnet_tps: f64,
    /// Submission at the gateway to the first node's commit, at that load.
    pub latency_p50_ms: u64,
    pub latency_p99_ms: u64,
    /// Target: devnet_tps >= 50% of sim_tps.
    pub devnet_over_sim: f64,
    pub target_met: bool,
}

/// Signed transfers between users of one shard, round-robin over senders
/// so that no sender's nonce chain grows long.
fn presign(
    users: &[Keypair],
    shards: u16,
    chain: &ios_chain::types::ChainId,
    n: usize,
) -> Vec<SignedTransaction> {
    let mut by_shard: BTreeMap<ShardId, Vec<&Keypair>> = BTreeMap::new();
    for u in users {
        by_shard
            .entry(home_shard(&u.address(), shards))
            .or_default()
            .push(u);
    }
    let groups: Vec<Vec<&Keypair>> = by_shard.into_values().filter(|g| g.len() >= 2).collect();
    let mut nonces: HashMap<ios_chain::crypto::Address, u64> = HashMap::new();
    (0..n)
        .map(|k| {
            let g = &groups[k % groups.len()];
            let i = (k / groups.len()) % g.len();
            let (from, to) = (g[i], g[(i + 1) % g.len()]);
            let nonce = nonces.entry(from.address()).or_insert(0);
            let tx = Transaction {
                chain_id: chain.clone(),
                shard: home_shard(&from.address(), shards),
                sender: from.address(),
                nonce: *nonce,
                fee: 1_000,
                expires_at: u64::MAX,
                call: LedgerModule::call(&LedgerCall::Transfer {
                    to: to.address(),
                    amount: 1,
                    token: Token::Iost,
                }),
            };
            *nonce += 1;
            tx.sign(from)
        })
        .collect()
}

pub fn run(cfg: &DevnetBenchConfig, dir: &Path) -> Result<DevnetBenchReport> {
    let limits = hardware_limits(Duration::from_millis(1_500));
    let validators = cfg.committee * (cfg.shards as usize + 1);
    let sim = bench_atomix::run_one(
        &AtomixBenchConfig {
            total_validators: validators,
            transfers: cfg.sim_transfers,
            users_per_shard: 300,
            block_txs: 1_000,
            shards: vec![cfg.shards],
            cross_percents: vec![0],
        },
        cfg.shards,
        0,
        &dir.join("engines"),
    )
    .context("the engines-alone run")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut levels: Vec<LoadLevel> = Vec::new();
    let mut rate = cfg.offered_tps.unwrap_or(sim.finalized_tps).max(50.0);
    for step in 0..8 {
        let m = rt.block_on(load_devnet(cfg, &dir.join(format!("devnet-{step}")), rate))?;
        let level = LoadLevel {
            offered_tps: rate,
            finalized_tps: m.tps,
            latency_p50_ms: m.p50,
            latency_p99_ms: m.p99,
            sustained: m.tps >= 0.9 * rate && m.p99 <= 5_000,
            gateway_busy: m.gateway_busy,
            validator_busy_max: m.validator_busy_max,
        };
        tracing::info!(?level, "devnet load level");
        let done = level.sustained || cfg.offered_tps.is_some();
        levels.push(level);
        if done {
            break;
        }
        rate *= 0.85;
    }
    let best = levels
        .iter()
        .find(|l| l.sustained)
        .or_else(|| {
            levels
                .iter()
                .max_by(|a, b| a.finalized_tps.total_cmp(&b.finalized_tps))
        })
        .cloned()
        .context("no load level ran")?;
    let ratio = if sim.finalized_tps > 0.0 {
        best.finalized_tps / sim.finalized_tps
    } else {
        0.0
    };
    Ok(DevnetBenchReport {
        limits,
        shards: cfg.shards,
        committee: cfg.committee,
        nodes: validators + 1,
        sim_tps: sim.finalized_tps,
        levels,
        devnet_tps: best.finalized_tps,
        latency_p50_ms: best.latency_p50_ms,
        latency_p99_ms: best.latency_p99_ms,
        devnet_over_sim: ratio,
        target_met: ratio >= 0.5,
    })
}

/// Most transactions the load submits to one shard in one go.
const SUBMIT_BATCH: usize = 2_000;

struct Measured {
    tps: f64,
    p50: u64,
    p99: u64,
    gateway_busy: f64,
    validator_busy_max: f64,
}

async fn load_devnet(cfg: &DevnetBenchConfig, dir: &Path, rate: f64) -> Result<Measured> {
    let dcfg = DevnetConfig {
        shards: cfg.shards,
        committee: cfg.committee,
        data_dir: dir.to_path_buf(),
        load_tps: 0,
        users: cfg.users,
        duration: None,
        // No committee changes while measuring.
        epoch_length: 100_000,
        // Transfers only.
        providers: 0,
        idle_block_ms: crate::devnet::IDLE_BLOCK_MS,
    };
    let net = Devnet::start(&dcfg).await?;
    // Every node's commits: the first commit of a transaction finalizes it.
    let mut commits = net.commits();
    // Wait until every shard finalizes.
    let mut seen_shards = HashSet::new();
    let ready = Instant::now();
    while seen_shards.len() < cfg.shards as usize + 1 {
        let c = tokio::time::timeout(Duration::from_secs(30), commits.recv())
            .await
            .context("the devnet did not start finalizing")?
            .context("commit stream closed")?;
        seen_shards.insert(c.shard);
        anyhow::ensure!(
            ready.elapsed() < Duration::from_secs(60),
            "devnet not ready"
        );
    }
    let warmup = Duration::from_secs((cfg.seconds / 4).max(2));
    let window = Duration::from_secs(cfg.seconds);
    let total = (rate * (warmup + window).as_secs_f64()) as usize;
    let users = crate::devnet::user_keys(cfg.users);
    let txs = presign(&users, cfg.shards, &net.genesis.params.chain_id, total);
    let mut submitted_at: HashMap<Hash, Instant> = HashMap::with_capacity(total);
    let mut done: HashSet<Hash> = HashSet::with_capacity(total);
    let mut latencies = Vec::new();
    let start = Instant::now();
    let (measure_from, measure_to) = (start + warmup, start + warmup + window);
    let mut finalized_in_window = 0usize;
    let mut next = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut waiting: BTreeMap<ShardId, Vec<SignedTransaction>> = BTreeMap::new();
    let mut refused_busy = 0usize;
    let busy = |h: &crate::node::NodeHandle| h.metrics.busy_us.load(Ordering::Relaxed);
    let mut busy_from: Option<(u64, Vec<u64>)> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = Instant::now();
                if now >= measure_to {
                    break;
                }
                if now >= measure_from && busy_from.is_none() {
                    busy_from = Some((busy(&net.gateway), net.validators.iter().map(busy).collect()));
                }
                // Submit what the steady rate owes by now, per shard in one
                // batch each, after what a busy shard refused before (in
                // order: a sender's nonces must not skip).
                let due = ((now - start).as_secs_f64() * rate) as usize;
                for t in &txs[next..due.min(txs.len())] {
                    submitted_at.entry(t.id()).or_insert(now);
                    waiting.entry(home_shard(&t.tx.sender, cfg.shards)).or_default().push(t.clone());
                }
                next = due.max(next).min(txs.len());
                for (_, queue) in waiting.iter_mut() {
                    if queue.is_empty() {
                        continue;
                    }
                    // A bounded batch: a long queue is offered a piece at a time.
                    let k = queue.len().min(SUBMIT_BATCH);
                    let results = net.gateway.submit(queue[..k].to_vec()).await?;
                    if results.iter().any(|r| matches!(r, Err(e) if e.code == "busy")) {
                        refused_busy += k;
                    } else {
                        queue.drain(..k);
                    }
                }
            }
            c = commits.recv() => {
                let Some(c) = c else { break };
                let now = Instant::now();
                for id in &c.txs {
                    if done.insert(*id) {
                        if let Some(t) = submitted_at.get(id) {
                            if now >= measure_from && now < measure_to {
                                finalized_in_window += 1;
                                latencies.push(now.duration_since(*t).as_millis() as u64);
                            }
                        }
                    }
                }
            }
        }
    }
    let (gateway_busy, validator_busy_max) = match &busy_from {
        Some((g, vs)) => {
            let secs = window.as_secs_f64() * 1e6;
            let v = net
                .validators
                .iter()
                .zip(vs)
                .map(|(h, b)| (busy(h) - b) as f64 / secs)
                .fold(0.0, f64::max);
            ((busy(&net.gateway) - g) as f64 / secs, v)
        }
        None => (0.0, 0.0),
    };
    net.stop().await?;
    if refused_busy > 0 {
        tracing::info!(refused_busy, "submissions refused as busy (resubmitted)");
    }
    latencies.sort_unstable();
    let pct = |p: usize| {
        latencies
            .get(latencies.len().saturating_sub(1) * p / 100)
            .copied()
            .unwrap_or(0)
    };
    Ok(Measured {
        tps: finalized_in_window as f64 / window.as_secs_f64(),
        p50: pct(50),
        p99: pct(99),
        gateway_busy,
        validator_busy_max,
    })
}
