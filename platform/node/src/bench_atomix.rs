//! `ios bench atomix`: a sharded network (the beacon and S account shards,
//! the same total number of validators for every S) in one thread with real
//! signatures, under a load of signed transfers of which a given share
//! crosses shards through Atomix (lock on the sender's shard, commit on the
//! recipient's, unlock back on the sender's, the proofs carried by a relayer
//! as a node's relayer carries them). Reports finalized transfers per second
//! and the cross-shard commit latency in blocks, with the hardware limits
//! measured in the same run.

use crate::bench::{hardware_limits, HardwareLimits};
use crate::fifo::FifoNet;
use anyhow::{bail, Context, Result};
use ios_chain::atomix::{
    CrossInput, CrossTransfer, Outcome, ReceiptProof, RelayBatch, Step, EVENT, RELAY_BATCH_BYTES,
};
use ios_chain::block::ReceiptStatus;
use ios_chain::codec::decode;
use ios_chain::crypto::{Address, Keypair};
use ios_chain::execute::Runtime;
use ios_chain::hash::{hash_tagged, Hash};
use ios_chain::ledger::{LedgerCall, LedgerModule, Token};
use ios_chain::params::{ChainParams, Genesis};
use ios_chain::replica::ReplicaConfig;
use ios_chain::shard::{home_shard, BEACON};
use ios_chain::tx::{SignedTransaction, Transaction};
use ios_chain::types::{Height, ShardId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct AtomixBenchConfig {
    /// Validators in the whole network; every S gets committees of
    /// `total_validators / (S + 1)` (the beacon has one too).
    pub total_validators: usize,
    /// Transfers to finalize per run.
    pub transfers: usize,
    /// Funded users per account shard.
    pub users_per_shard: usize,
    pub block_txs: u32,
    pub shards: Vec<u16>,
    /// Shares of cross-shard transfers, in percent.
    pub cross_percents: Vec<u8>,
}

impl Default for AtomixBenchConfig {
    fn default() -> Self {
        AtomixBenchConfig {
            total_validators: 30,
            transfers: 20_000,
            users_per_shard: 300,
            block_txs: 1_000,
            shards: vec![1, 2, 4],
            cross_percents: vec![0, 50, 100],
        }
    }
}

/// One (S, cross-shard share) run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AtomixRun {
    pub shards: u16,
    pub committee_size: usize,
    pub cross_percent: u8,
    pub transfers: usize,
    pub cross_transfers: usize,
    /// Seconds from opening the replicas until every transfer is final
    /// (a cross-shard one: committed on its output shard and unlocked on
    /// its input shard).
    pub seconds: f64,
    pub finalized_tps: f64,
    /// Atomix commit latency: output-shard blocks from the one finalized
    /// when the lock was final (exclusive) to the one that commits the
    /// transfer (inclusive). None without cross-shard transfers.
    pub commit_latency_blocks_p50: Option<u64>,
    pub commit_latency_blocks_p99: Option<u64>,
    /// End to end: output-shard blocks from the lock's submission (queueing
    /// and the lock's own block included) to the committing block.
    pub cross_latency_blocks_p50: Option<u64>,
    pub cross_latency_blocks_p99: Option<u64>,
    /// The same for local transfers, on their shard, for comparison.
    pub local_latency_blocks_p50: Option<u64>,
    pub local_latency_blocks_p99: Option<u64>,
    /// Blocks finalized by the account shards, and by the beacon.
    pub shard_blocks: u64,
    pub beacon_blocks: u64,
    /// Relay transactions (batches of commits and unlocks) the relayer sent.
    pub relay_txs: u64,
}

/// Per S: the all-cross-shard throughput as a share of the all-local one.
#[derive(Clone, Debug, Serialize)]
pub struct CrossShare {
    pub shards: u16,
    pub cross_100_over_local: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct AtomixBenchReport {
    pub total_validators: usize,
    pub limits: HardwareLimits,
    pub runs: Vec<AtomixRun>,
    pub cross_shares: Vec<CrossShare>,
    /// Targets: Atomix commit latency p50 <= 3 blocks; 100%-cross-shard
    /// throughput >= 40% of the all-local throughput at the same S.
    pub latency_target_met: bool,
    pub throughput_target_met: bool,
}

/// The (S, cross-shard percent) runs a configuration asks for, checked.
/// S = 1 runs only 0%: with one account shard there is nothing to cross to.
pub fn plan(cfg: &AtomixBenchConfig) -> Result<Vec<(u16, u8)>> {
    let mut out = Vec::new();
    for &s in &cfg.shards {
        if s == 0 {
            bail!("S = 0 is the unsharded chain; `ios bench chain` measures it");
        }
        committee_size(cfg, s)?;
        for &pct in &cfg.cross_percents {
            if pct > 100 {
                bail!("a cross-shard share of {pct}% is over 100%");
            }
            if s > 1 || pct == 0 {
                out.push((s, pct));
            }
        }
    }
    Ok(out)
}

fn committee_size(cfg: &AtomixBenchConfig, s: u16) -> Result<usize> {
    let n = cfg.total_validators / (s as usize + 1);
    if n < 4 {
        bail!(
            "{} validators give committees of {n} at S = {s}; at least 4 are needed (raise --validators)",
            cfg.total_validators
        );
    }
    Ok(n)
}

/// Runs every planned (S, share) pair through `run` (the CLI runs each in
/// a fresh process, so one run's leftovers, such as its stores' final
/// flushes, cannot slow the next) and reports them with the hardware limits.
pub fn run_atomix(
    cfg: &AtomixBenchConfig,
    mut progress: impl FnMut(&str),
    mut run: impl FnMut(u16, u8) -> Result<AtomixRun>,
) -> Result<AtomixBenchReport> {
    let plan = plan(cfg)?;
    progress("measuring hardware limits");
    let limits = hardware_limits(Duration::from_secs(2));
    let mut runs = Vec::new();
    for (s, pct) in plan {
        let n = committee_size(cfg, s)?;
        progress(&format!("S = {s} (committees of {n}), {pct}% cross-shard"));
        runs.push(run(s, pct)?);
    }
    let tps = |s: u16, pct: u8| {
        runs.iter()
            .find(|r| r.shards == s && r.cross_percent == pct)
            .map(|r| r.finalized_tps)
    };
    let cross_shares: Vec<CrossShare> = cfg
        .shards
        .iter()
        .filter_map(|&s| {
            Some(CrossShare {
                shards: s,
                cross_100_over_local: tps(s, 100)? / tps(s, 0)?,
            })
        })
        .collect();
    Ok(AtomixBenchReport {
        total_validators: cfg.total_validators,
        limits,
        latency_target_met: runs
            .iter()
            .all(|r| r.commit_latency_blocks_p50.is_none_or(|p| p <= 3)),
        throughput_target_met: cross_shares.iter().all(|c| c.cross_100_over_local >= 0.4),
        cross_shares,
        runs,
    })
}

/// What the driver remembers of a submitted transfer.
struct Pending {
    shard: ShardId,
    /// The shard where it becomes final (the output shard of a cross one),
    /// and that shard's finalized height when it was submitted.
    final_shard: ShardId,
    submitted_at: Height,
    /// For a cross-shard one: the output shard's finalized height when its
    /// lock was final.
    locked_at: Height,
    cross: Option<CrossTransfer>,
}

/// One run: S = `shards`, `pct`% cross-shard, stores under `dir`.
pub fn run_one(cfg: &AtomixBenchConfig, shards: u16, pct: u8, dir: &Path) -> Result<AtomixRun> {
    let n = committee_size(cfg, shards)?;
    let total = n * (shards as usize + 1);
    let vkeys: Vec<Keypair> = (0..total as u64)
        .map(|i| Keypair::from_seed("bench-validator", i))
        .collect();
    // Users, the same number on every account shard.
    let mut users: BTreeMap<ShardId, Vec<Keypair>> = BTreeMap::new();
    let mut i = 0u64;
    while users.len() < shards as usize || users.values().any(|u| u.len() < cfg.users_per_shard) {
        let k = Keypair::from_seed("bench-user", i);
        i += 1;
        let list = users.entry(home_shard(&k.address(), shards)).or_default();
        if list.len() < cfg.users_per_shard {
            list.push(k);
        }
    }
    let mut params = ChainParams::devnet("ios-bench-atomix");
    params.shards = shards;
    params.set_committee_size(n as u16);
    params.max_block_txs = cfg.block_txs;
    // One epoch for the whole run: the simulator tests epoch changes; this
    // measures the steady state between them.
    params.epoch_length = 1_000_000;
    let all_users: Vec<Address> = users.values().flatten().map(|k| k.address()).collect();
    let genesis = Genesis::test_network(
        params.clone(),
        0,
        hash_tagged("ios/bench", b"atomix-genesis"),
        &vkeys,
        &all_users,
    );
    genesis.validate().context("bench genesis")?;
    let chain_id = params.chain_id.clone();

    // The load, signed before the clock starts.
    let user_list: Vec<(ShardId, usize)> = users
        .iter()
        .flat_map(|(s, l)| (0..l.len()).map(move |i| (*s, i)))
        .collect();
    let mut nonces: HashMap<Address, u64> = HashMap::new();
    let mut load: BTreeMap<ShardId, VecDeque<SignedTransaction>> = BTreeMap::new();
    let mut pending: HashMap<Hash, Pending> = HashMap::new();
    let mut cross_ids: HashMap<Hash, Hash> = HashMap::new();
    let mut cross_count = 0usize;
    for t in 0..cfg.transfers {
        let (home, u) = user_list[t % user_list.len()];
        let sender = &users[&home][u];
        let cross = (t % 100) < pct as usize;
        let (final_shard, call, x) = if cross {
            // Every other shard in turn (S >= 2 here).
            let step = 1 + (t / user_list.len()) % (shards as usize - 1);
            let other = 1 + ((home as usize - 1 + step) % shards as usize) as u16;
            let list = &users[&other];
            let x = CrossTransfer {
                inputs: vec![CrossInput {
                    shard: home,
                    from: sender.address(),
                    amount: 1,
                }],
                output_shard: other,
                to: list[(u + t) % list.len()].address(),
                expires_at: Height::MAX,
                salt: t as u64,
                call: None,
            };
            let call = LedgerCall::AtomixLock {
                x: Box::new(x.clone()),
                input: 0,
            };
            (other, call, Some(x))
        } else {
            let list = &users[&home];
            let call = LedgerCall::Transfer {
                to: list[(u + 1) % list.len()].address(),
                amount: 1,
                token: Token::Iost,
            };
            (home, call, None)
        };
        let nonce = nonces.entry(sender.address()).or_insert(0);
        let tx = Transaction {
            chain_id: chain_id.clone(),
            shard: home,
            sender: sender.address(),
            nonce: *nonce,
            fee: 1_000,
            expires_at: u64::MAX,
            call: LedgerModule::call(&call),
        }
        .sign(sender);
        *nonce += 1;
        if let Some(x) = &x {
            cross_count += 1;
            cross_ids.insert(x.id(), tx.id());
        }
        pending.insert(
            tx.id(),
            Pending {
                shard: home,
                final_shard,
                submitted_at: 0,
                locked_at: 0,
                cross: x,
            },
        );
        load.entry(home).or_default().push_back(tx);
    }
    let relayer = Keypair::from_seed("bench-relayer", 0);
    let relay_tx = |shard: ShardId, call: &LedgerCall| {
        Transaction {
            chain_id: chain_id.clone(),
            shard,
            sender: relayer.address(),
            nonce: 0,
            fee: 0,
            expires_at: Height::MAX,
            call: LedgerModule::call(call),
        }
        .sign(&relayer)
    };

    // Every committee's replicas, each validator with its own store.
    let start = Instant::now();
    let now_ms = |start: Instant| start.elapsed().as_millis() as u64 + 1;
    // One core runs every validator in turn, so a block reaches the last
    // member of its committee only after all the others have processed it,
    // seconds later for big blocks: with the default timeouts that alone
    // started new rounds in some runs (a second lost each time). Nothing
    // fails here, so the timeouts are raised out of the way.
    let timeouts = ReplicaConfig {
        timeout_propose_ms: 10_000,
        timeout_prevote_ms: 5_000,
        timeout_precommit_ms: 5_000,
        index_txs: false,
        ..ReplicaConfig::default()
    };
    let account_rc = ReplicaConfig {
        min_block_interval_ms: 0,
        empty_block_interval_ms: 0,
        ..timeouts.clone()
    };
    // The beacon carries no load here; it keeps the usual pace.
    let beacon_rc = timeouts;
    let mut net = FifoNet::default();
    let dbs = net.open_committees(&genesis, &vkeys, dir, now_ms(start), |s| {
        let rc = if s == BEACON { &beacon_rc } else { &account_rc };
        (Runtime::for_shard(params.clone(), s), rc.clone())
    })?;

    let chunk = (cfg.block_txs as usize).max(1);
    let mut in_flight: BTreeMap<ShardId, usize> = BTreeMap::new();
    let mut next_target: BTreeMap<ShardId, usize> = BTreeMap::new();
    let mut height: Vec<Height> = vec![0; shards as usize + 1];
    let mut relays: BTreeMap<ShardId, Vec<Step>> = BTreeMap::new();
    let mut cross_latency: Vec<u64> = Vec::new();
    let mut commit_latency: Vec<u64> = Vec::new();
    let mut local_latency: Vec<u64> = Vec::new();
    let mut unlocks_left = cross_count;
    let mut finals_left = cfg.transfers;
    let mut relay_count = 0u64;
    let mut blocks = vec![0u64; shards as usize + 1];
    while finals_left > 0 || unlocks_left > 0 {
        if start.elapsed() > Duration::from_secs(600) {
            bail!(
                "no end after 10 minutes at S = {shards}, {pct}% cross-shard ({finals_left} transfers not final, {unlocks_left} unlocks missing)"
            );
        }
        // Submit: at most two blocks' worth of user transfers per shard in flight.
        for (&s, queue) in load.iter_mut() {
            let busy = in_flight.entry(s).or_default();
            while *busy < 2 * chunk && !queue.is_empty() {
                let take = chunk.min(queue.len());
                let batch: Vec<SignedTransaction> = queue.drain(..take).collect();
                for tx in &batch {
                    if let Some(p) = pending.get_mut(&tx.id()) {
                        p.submitted_at = height[p.final_shard as usize];
                    }
                }
                *busy += take;
                let targets = &net.by_shard[&s];
                let t = next_target.entry(s).or_default();
                let target = targets[*t % targets.len()];
                *t += 1;
                let (results, outs) = net.replicas[target].submit(batch, now_ms(start));
                if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
                    bail!("bench transaction refused: {e}");
                }
                net.route(target, outs);
            }
        }
        // Relay what the last commits proved, in batches (a full relay pool is retried).
        for (s, steps) in std::mem::take(&mut relays) {
            let batches = RelayBatch::pack(steps, RELAY_BATCH_BYTES)?;
            let txs: Vec<SignedTransaction> = batches
                .iter()
                .map(|b| relay_tx(s, &LedgerCall::AtomixBatch(Box::new(b.clone()))))
                .collect();
            let targets = &net.by_shard[&s];
            let t = next_target.entry(s).or_default();
            let target = targets[*t % targets.len()];
            *t += 1;
            let (results, outs) = net.replicas[target].submit(txs, now_ms(start));
            for (batch, r) in batches.into_iter().zip(results) {
                match r {
                    Ok(_) => relay_count += 1,
                    Err(ios_chain::error::ChainError::Mempool(_)) => {
                        relays.entry(s).or_default().extend(batch.into_steps()?)
                    }
                    Err(e) => bail!("relay batch refused: {e}"),
                }
            }
            net.route(target, outs);
        }
        if !net.deliver_one(now_ms(start)) {
            net.sleep_until_due(now_ms(start), Duration::from_millis(20));
        }
        // Timers fire on time even while messages keep the queue busy (the
        // beacon and any timeout depend on them).
        let now = now_ms(start);
        for i in 0..net.replicas.len() {
            if net.replicas[i].next_deadline() <= now {
                let outs = net.replicas[i].tick(now)?;
                net.route(i, outs);
            }
        }
        for (s, c) in std::mem::take(&mut net.commits) {
            let h = c.block.header.height;
            if h <= height[s as usize] {
                continue;
            }
            height[s as usize] = h;
            blocks[s as usize] += 1;
            let mut outcomes: Vec<(usize, Outcome)> = Vec::new();
            for (index, r) in c.receipts.iter().enumerate() {
                if let Some(p) = pending.get_mut(&r.tx) {
                    if p.shard == s {
                        p.locked_at = height[p.final_shard as usize];
                        if r.status != ReceiptStatus::Success {
                            bail!("bench transaction {} failed: {:?}", r.tx, r.status);
                        }
                        *in_flight.entry(s).or_default() -= 1;
                        if p.cross.is_none() {
                            local_latency.push(h - p.submitted_at);
                            finals_left -= 1;
                            pending.remove(&r.tx);
                        }
                    }
                }
                for e in r.events.iter().filter(|e| e.module == 0) {
                    if e.kind == "atomix_unlock" {
                        unlocks_left -= 1;
                    } else if e.kind == EVENT {
                        outcomes.push((index, decode("atomix outcome", &e.data, 4096)?));
                    }
                }
            }
            // The relayer proves every outcome of the block from one receipts tree.
            let indexes: Vec<usize> = outcomes.iter().map(|(i, _)| *i).collect();
            let proofs = ReceiptProof::many(&c.block.header, &c.cert, &c.receipts, &indexes);
            for ((_, outcome), proof) in outcomes.into_iter().zip(proofs) {
                match outcome {
                    Outcome::Accepted { x, .. } => {
                        let p = &pending[&cross_ids[&x]];
                        let cx = p.cross.clone().context("lock of an unknown transfer")?;
                        relays
                            .entry(cx.output_shard)
                            .or_default()
                            .push(Step::Commit {
                                x: cx,
                                proofs: vec![proof],
                            });
                    }
                    Outcome::Committed { x } => {
                        let p = pending
                            .remove(&cross_ids[&x])
                            .context("commit of an unknown transfer")?;
                        cross_latency.push(h - p.submitted_at);
                        commit_latency.push(h - p.locked_at);
                        finals_left -= 1;
                        let cx = p.cross.context("commit of a local transfer")?;
                        relays.entry(p.shard).or_default().push(Step::Unlock {
                            x: cx,
                            input: 0,
                            proof: Box::new(proof),
                        });
                    }
                    Outcome::Rejected { x, reason } => {
                        bail!("bench transfer {x} was rejected: {reason}")
                    }
                }
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    drop(net);
    drop(dbs);
    let pct_of = |v: &mut Vec<u64>, p: usize| {
        v.sort_unstable();
        (!v.is_empty()).then(|| v[(v.len() - 1) * p / 100])
    };
    Ok(AtomixRun {
        shards,
        committee_size: n,
        cross_percent: pct,
        transfers: cfg.transfers,
        cross_transfers: cross_count,
        seconds,
        finalized_tps: cfg.transfers as f64 / seconds,
        commit_latency_blocks_p50: pct_of(&mut commit_latency, 50),
        commit_latency_blocks_p99: pct_of(&mut commit_latency, 99),
        cross_latency_blocks_p50: pct_of(&mut cross_latency, 50),
        cross_latency_blocks_p99: pct_of(&mut cross_latency, 99),
        local_latency_blocks_p50: pct_of(&mut local_latency, 50),
        local_latency_blocks_p99: pct_of(&mut local_latency, 99),
        shard_blocks: blocks[1..].iter().sum(),
        beacon_blocks: blocks[BEACON as usize],
        relay_txs: relay_count,
    })
}
