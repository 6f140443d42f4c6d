//! `ios bench market`: whole order lifecycles through consensus. One shard
//! of validators in the benchmarks' engines (every replica on one thread,
//! real ed25519 signatures on every transaction and vote, the market module
//! in the runtime) runs `orders` lifecycles in phases: place, accept,
//! deliver, confirm, both sides commit a rating, both reveal it. Each phase
//! is submitted once the one before is final, as real parties would act.
//! The same run also finalizes as many plain transfers as reveals, so the
//! cost of a rating with its reputation aggregation is read against a
//! transfer's, and measures the machine's limits. Then the same lifecycles
//! run across shards: the beacon and two account shards, every provider on
//! one and every buyer on the other, each order placed by an Atomix lock
//! that carries it (relayed as a full node's relayer does), the buyers'
//! later moves signed for the order's shard.

use crate::bench::{hardware_limits, HardwareLimits};
use crate::fifo::FifoNet;
use anyhow::{bail, Context, Result};
use ios_chain::atomix::{
    CrossInput, CrossTransfer, Outcome, RelayBatch, Step, EVENT, RELAY_BATCH_BYTES,
};
use ios_chain::block::ReceiptStatus;
use ios_chain::codec::decode;
use ios_chain::crypto::Keypair;
use ios_chain::execute::Runtime;
use ios_chain::hash::{hash_tagged, Hash};
use ios_chain::ledger::{LedgerCall, LedgerModule, Token};
use ios_chain::params::{ChainParams, Genesis};
use ios_chain::relayer::Relayer;
use ios_chain::replica::ReplicaConfig;
use ios_chain::shard::{home_shard, BEACON};
use ios_chain::tx::{Call, SignedTransaction, Transaction};
use ios_chain::types::{Amount, ChainId, ShardId, UNITS_PER_IOST};
use ios_market::ftfs::{Rating, Scores};
use ios_market::module::{ListingTerms, MarketCall, MarketModule};
use ios_storage::ContentId;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct MarketBenchConfig {
    pub validators: usize,
    /// Order lifecycles to run.
    pub orders: usize,
    /// Orders per provider.
    pub orders_per_provider: usize,
    pub block_txs: u32,
}

impl Default for MarketBenchConfig {
    fn default() -> Self {
        MarketBenchConfig {
            validators: 4,
            orders: 2_000,
            orders_per_provider: 4,
            block_txs: 2_000,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct PhaseTime {
    pub phase: &'static str,
    pub txs: usize,
    pub seconds: f64,
    pub tps: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct MarketBenchReport {
    pub validators: usize,
    pub orders: usize,
    /// Whole lifecycles (place -> accept -> deliver -> confirm -> both
    /// ratings sealed and revealed) per second, one shard, end to end.
    pub lifecycles_per_sec: f64,
    /// Whole lifecycles per second with every buyer on another shard than
    /// its provider (orders placed and refunds sent through Atomix).
    pub cross_shard_lifecycles_per_sec: Option<f64>,
    pub phases: Vec<PhaseTime>,
    /// The phases across shards (the place phase ends when every order is
    /// committed on the listing's shard).
    pub cross_shard_phases: Vec<PhaseTime>,
    /// Finalized plain transfers per second in the same harness.
    pub transfer_tps: f64,
    /// Finalized rating reveals (each weighted and aggregated into the
    /// rated account's tallies and reputation) per second.
    pub reveal_tps: f64,
    /// `transfer_tps / reveal_tps`: what one rating costs in transfers.
    pub rating_cost_in_transfers: f64,
    pub limits: HardwareLimits,
}

struct Harness {
    net: FifoNet,
    start: Instant,
    chunk: usize,
    /// Carries Atomix steps between shards, as a full node's relayer does.
    relayer: Relayer,
    relay_key: Keypair,
    chain: ChainId,
    /// The last height read of each shard.
    seen: BTreeMap<ShardId, u64>,
    _dbs: Vec<sled::Db>,
}

impl Harness {
    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 + 1
    }

    /// Submits `txs` to the shards they are signed for (at most two
    /// blocks' worth in flight per shard) and runs consensus, relaying
    /// Atomix steps, until each is done: final, or for a lock that carries
    /// an order, committed on the listing's shard (`done_by_atomix`). All
    /// must succeed.
    fn phase(
        &mut self,
        name: &'static str,
        txs: Vec<SignedTransaction>,
        done_by_atomix: Option<Vec<Hash>>,
    ) -> Result<PhaseTime> {
        let n = txs.len();
        let t = Instant::now();
        let mut submitted: BTreeSet<Hash> = txs.iter().map(|t| t.id()).collect();
        let mut waiting: BTreeSet<Hash> = match done_by_atomix {
            Some(xs) => xs.into_iter().collect(),
            None => submitted.clone(),
        };
        let mut load: BTreeMap<ShardId, VecDeque<SignedTransaction>> = BTreeMap::new();
        for tx in txs {
            load.entry(tx.tx.shard).or_default().push_back(tx);
        }
        let mut in_flight: BTreeMap<ShardId, usize> = BTreeMap::new();
        let mut target = 0usize;
        while !waiting.is_empty() {
            if t.elapsed() > Duration::from_secs(600) {
                bail!("{name}: {} of {n} not done after 10 minutes", waiting.len());
            }
            for (shard, queue) in load.iter_mut() {
                let busy = in_flight.entry(*shard).or_default();
                while *busy < 2 * self.chunk && !queue.is_empty() {
                    let take = self.chunk.min(queue.len());
                    let batch: Vec<SignedTransaction> = queue.drain(..take).collect();
                    *busy += take;
                    if let Some(e) = self.submit(*shard, &mut target, batch)? {
                        bail!("{name}: a transaction was refused: {e}");
                    }
                }
            }
            let now = self.now();
            if !self.net.deliver_one(now) {
                self.net.sleep_until_due(now, Duration::from_millis(50));
                for i in 0..self.net.replicas.len() {
                    let now = self.now();
                    let outs = self.net.replicas[i].tick(now)?;
                    self.net.route(i, outs);
                }
            }
            let now = self.now();
            for (shard, c) in std::mem::take(&mut self.net.commits) {
                // Every member commits the block; the relayer reads it once.
                let seen = self.seen.entry(shard).or_default();
                if c.block.header.height <= *seen && *seen > 0 {
                    continue;
                }
                *seen = c.block.header.height;
                self.relayer
                    .observe(shard, &c.block, &c.cert, &c.receipts, now);
                for r in &c.receipts {
                    if submitted.remove(&r.tx) {
                        *in_flight.entry(shard).or_default() -= 1;
                        if let ReceiptStatus::Failed { message, .. } = &r.status {
                            bail!("{name}: a transaction failed: {message}");
                        }
                    }
                    waiting.remove(&r.tx);
                    for e in r.events.iter().filter(|e| e.module == 0 && e.kind == EVENT) {
                        match decode::<Outcome>("atomix outcome", &e.data, 4096)? {
                            Outcome::Committed { x } => {
                                waiting.remove(&x);
                            }
                            Outcome::Rejected { x, reason } if waiting.contains(&x) => {
                                bail!("{name}: transfer {x} was rejected: {reason}")
                            }
                            _ => {}
                        }
                    }
                }
            }
            self.relay(&mut target)?;
        }
        let seconds = t.elapsed().as_secs_f64();
        Ok(PhaseTime {
            phase: name,
            txs: n,
            seconds,
            tps: n as f64 / seconds,
        })
    }

    /// Submits `batch` to a replica of `shard`; the first refusal, if any.
    fn submit(
        &mut self,
        shard: ShardId,
        target: &mut usize,
        batch: Vec<SignedTransaction>,
    ) -> Result<Option<ios_chain::error::ChainError>> {
        let replicas = &self.net.by_shard[&shard];
        let i = replicas[*target % replicas.len()];
        *target += 1;
        let now = self.now();
        let (results, outs) = self.net.replicas[i].submit(batch, now);
        self.net.route(i, outs);
        Ok(results.into_iter().find_map(|r| r.err()))
    }

    /// Sends the Atomix steps due, packed per shard into relay batches (a
    /// refused one is due again after the relayer's resend time).
    fn relay(&mut self, target: &mut usize) -> Result<()> {
        let now = self.now();
        let mut by_shard: BTreeMap<ShardId, Vec<Step>> = BTreeMap::new();
        for (shard, step) in self.relayer.due(now) {
            by_shard.entry(shard).or_default().push(step);
        }
        for (shard, steps) in by_shard {
            let txs: Vec<SignedTransaction> = RelayBatch::pack(steps, RELAY_BATCH_BYTES)?
                .into_iter()
                .map(|b| {
                    Transaction {
                        chain_id: self.chain.clone(),
                        shard,
                        sender: self.relay_key.address(),
                        nonce: 0,
                        fee: 0,
                        expires_at: u64::MAX,
                        call: LedgerModule::call(&LedgerCall::AtomixBatch(Box::new(b))),
                    }
                    .sign(&self.relay_key)
                })
                .collect();
            self.submit(shard, target, txs)?;
        }
        Ok(())
    }
}

/// Signs calls with per-account, per-shard nonces.
struct Signer {
    chain: ChainId,
    nonces: BTreeMap<([u8; 32], ShardId), u64>,
}

impl Signer {
    fn sign(&mut self, key: &Keypair, shard: ShardId, call: Call) -> SignedTransaction {
        let n = self.nonces.entry((key.address().0, shard)).or_insert(0);
        let tx = Transaction {
            chain_id: self.chain.clone(),
            shard,
            sender: key.address(),
            nonce: *n,
            fee: FEE,
            expires_at: u64::MAX,
            call,
        };
        *n += 1;
        tx.sign(key)
    }
}

/// Every fee in the benchmark: above the minimum for any of its transactions.
const FEE: Amount = 4_000;

/// Runs the market benchmark in `dir`: one shard, then across shards.
pub fn run_market(
    cfg: &MarketBenchConfig,
    dir: &Path,
    mut progress: impl FnMut(&str),
) -> Result<MarketBenchReport> {
    anyhow::ensure!(
        cfg.orders > 0 && cfg.orders_per_provider > 0,
        "no orders to run"
    );
    progress("measuring hardware limits");
    let limits = hardware_limits(Duration::from_secs(2));

    progress("one shard: order lifecycles");
    let one = run_lifecycles(cfg, &dir.join("one-shard"), false, true)?;
    progress("across shards: order lifecycles through Atomix");
    let across = run_lifecycles(cfg, &dir.join("two-shards"), true, false)?;
    let transfer_tps = one.transfer_tps.context("transfers were measured")?;
    Ok(MarketBenchReport {
        validators: cfg.validators,
        orders: cfg.orders,
        lifecycles_per_sec: one.lifecycles_per_sec,
        cross_shard_lifecycles_per_sec: Some(across.lifecycles_per_sec),
        phases: one.phases,
        cross_shard_phases: across.phases,
        transfer_tps,
        reveal_tps: one.reveal_tps,
        rating_cost_in_transfers: transfer_tps / one.reveal_tps,
        limits,
    })
}

struct Lifecycles {
    lifecycles_per_sec: f64,
    phases: Vec<PhaseTime>,
    reveal_tps: f64,
    transfer_tps: Option<f64>,
}

/// `cfg.orders` lifecycles on a network in `dir`: one shard of
/// `cfg.validators`, or with `across` the beacon and two account shards of
/// that many each, every provider on shard 1 and every buyer on shard 2
/// (orders placed through Atomix, the buyers' later moves on shard 1).
/// With `transfers`, as many plain transfers as reveals follow.
fn run_lifecycles(
    cfg: &MarketBenchConfig,
    dir: &Path,
    across: bool,
    transfers: bool,
) -> Result<Lifecycles> {
    let shards: u16 = if across { 2 } else { 0 };
    let (provider_shard, buyer_shard) = if across { (1, 2) } else { (BEACON, BEACON) };
    let on = |shard: ShardId, seed: &str, n: usize| -> Vec<Keypair> {
        (0u64..)
            .map(|i| Keypair::from_seed(seed, i))
            .filter(|k| shards == 0 || home_shard(&k.address(), shards) == shard)
            .take(n)
            .collect()
    };
    let providers = on(
        provider_shard,
        "bench-provider",
        cfg.orders.div_ceil(cfg.orders_per_provider),
    );
    let buyers = on(buyer_shard, "bench-buyer", cfg.orders);
    let vkeys: Vec<Keypair> = (0..(cfg.validators * (shards as usize + 1)) as u64)
        .map(|i| Keypair::from_seed("bench-validator", i))
        .collect();
    let mut params = ChainParams::devnet("ios-bench-market");
    params.shards = shards;
    params.set_committee_size(cfg.validators as u16);
    params.max_block_txs = cfg.block_txs;
    // One epoch for the whole run: this measures the steady state.
    params.epoch_length = 1_000_000;
    let users: Vec<_> = providers
        .iter()
        .chain(&buyers)
        .map(|k| k.address())
        .collect();
    let genesis = Genesis::test_network(
        params.clone(),
        0,
        hash_tagged("ios/bench", b"market"),
        &vkeys,
        &users,
    );
    genesis.validate().context("bench genesis")?;
    let rc = ReplicaConfig {
        min_block_interval_ms: 0,
        empty_block_interval_ms: 0,
        index_txs: false,
        // Every replica runs on one thread; nothing fails here.
        timeout_propose_ms: 10_000,
        timeout_prevote_ms: 5_000,
        timeout_precommit_ms: 5_000,
        ..ReplicaConfig::default()
    };
    let mut net = FifoNet::default();
    let start = Instant::now();
    let market = MarketModule::from_genesis(&genesis).map_err(|e| anyhow::anyhow!("{e}"))?;
    let market = Arc::new(market);
    let dbs = net.open_committees(&genesis, &vkeys, dir, 1, |s| {
        let mut runtime = Runtime::for_shard(params.clone(), s);
        if s != BEACON || shards == 0 {
            runtime = runtime.with_module(market.clone());
        }
        // The beacon carries no load across shards; it keeps the usual pace.
        let rc = if s == BEACON && shards > 0 {
            ReplicaConfig {
                min_block_interval_ms: ReplicaConfig::default().min_block_interval_ms,
                ..rc.clone()
            }
        } else {
            rc.clone()
        };
        (runtime, rc)
    })?;
    let mut h = Harness {
        net,
        start,
        chunk: (cfg.block_txs as usize).max(1),
        relayer: Relayer::new(),
        relay_key: Keypair::from_seed("bench-relayer", 0),
        chain: params.chain_id.clone(),
        seen: BTreeMap::new(),
        _dbs: dbs,
    };
    let mut s = Signer {
        chain: params.chain_id.clone(),
        nonces: BTreeMap::new(),
    };

    let price = UNITS_PER_IOST;
    let listings: Vec<SignedTransaction> = providers
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let terms = ListingTerms {
                title: format!("Service {i}"),
                category: "bench".into(),
                price,
                delivery_blocks: 100_000,
                doc: ContentId(hash_tagged("bench-doc", &(i as u64).to_le_bytes())),
            };
            s.sign(
                p,
                provider_shard,
                MarketCall::CreateListing(terms).to_call(),
            )
        })
        .collect();
    let listing_ids: Vec<Hash> = listings.iter().map(|t| t.id()).collect();
    h.phase("list", listings, None)?;

    let provider_of = |o: usize| o / cfg.orders_per_provider;
    // Across shards, a buyer's lock carries the order and fees for its
    // three later moves; the order's id is the transfer's.
    let mut crossing = Vec::new();
    let place: Vec<SignedTransaction> = buyers
        .iter()
        .enumerate()
        .map(|(o, b)| {
            let order = MarketCall::PlaceOrder {
                listing: listing_ids[provider_of(o)],
                price,
            }
            .to_call();
            if !across {
                return s.sign(b, buyer_shard, order);
            }
            let x = CrossTransfer {
                inputs: vec![CrossInput {
                    shard: buyer_shard,
                    from: b.address(),
                    amount: price + 3 * FEE,
                }],
                output_shard: provider_shard,
                to: b.address(),
                expires_at: u64::MAX,
                salt: o as u64,
                call: Some(order),
            };
            crossing.push(x.id());
            let lock = LedgerCall::AtomixLock {
                x: Box::new(x),
                input: 0,
            };
            s.sign(b, buyer_shard, LedgerModule::call(&lock))
        })
        .collect();
    let orders: Vec<Hash> = if across {
        crossing.clone()
    } else {
        place.iter().map(|t| t.id()).collect()
    };
    let by_provider = |s: &mut Signer, f: &dyn Fn(Hash) -> MarketCall| -> Vec<SignedTransaction> {
        orders
            .iter()
            .enumerate()
            .map(|(o, id)| s.sign(&providers[provider_of(o)], provider_shard, f(*id).to_call()))
            .collect()
    };
    let rating = |stars: u8| Rating {
        scores: Scores::all(stars),
        comment: "bench".into(),
    };
    let salt = |o: usize, side: u8| {
        hash_tagged(
            "bench-salt",
            &[&(o as u64).to_le_bytes()[..], &[side]].concat(),
        )
        .0
    };

    let t = Instant::now();
    let mut phases = vec![h.phase("place", place, across.then_some(crossing))?];
    let accept = by_provider(&mut s, &|order| MarketCall::Accept { order });
    phases.push(h.phase("accept", accept, None)?);
    let deliver = by_provider(&mut s, &|order| MarketCall::Deliver {
        order,
        delivery: ContentId(hash_tagged("bench-delivery", &order.0)),
    });
    phases.push(h.phase("deliver", deliver, None)?);
    // Every later move of an order happens on its (the provider's) shard.
    let confirm: Vec<SignedTransaction> = buyers
        .iter()
        .zip(&orders)
        .map(|(b, order)| {
            s.sign(
                b,
                provider_shard,
                MarketCall::Confirm { order: *order }.to_call(),
            )
        })
        .collect();
    phases.push(h.phase("confirm", confirm, None)?);
    let mut commit = Vec::with_capacity(2 * orders.len());
    let mut reveal = Vec::with_capacity(2 * orders.len());
    let mut reveal_later = Vec::with_capacity(2 * orders.len());
    for (o, order) in orders.iter().enumerate() {
        let p = &providers[provider_of(o)];
        for (side, key, stars) in [(0u8, &buyers[o], 5u8), (1u8, p, 4u8)] {
            let r = rating(stars);
            let commitment = r.commitment(order, &key.address().0, &salt(o, side));
            let call = MarketCall::CommitRating {
                order: *order,
                commitment,
            };
            commit.push(s.sign(key, provider_shard, call.to_call()));
            reveal_later.push((key, *order, r, salt(o, side)));
        }
    }
    phases.push(h.phase("commit ratings", commit, None)?);
    for (key, order, rating, salt) in reveal_later {
        let call = MarketCall::RevealRating {
            order,
            rating,
            salt,
        };
        reveal.push(s.sign(key, provider_shard, call.to_call()));
    }
    let reveals = reveal.len();
    let reveal_phase = h.phase("reveal ratings", reveal, None)?;
    let reveal_tps = reveal_phase.tps;
    phases.push(reveal_phase);
    let lifecycles_per_sec = cfg.orders as f64 / t.elapsed().as_secs_f64();

    let mut transfer_tps = None;
    if transfers {
        let transfers: Vec<SignedTransaction> = (0..reveals)
            .map(|i| {
                let from = &buyers[i % buyers.len()];
                let to = buyers[(i + 1) % buyers.len()].address();
                let call = LedgerCall::Transfer {
                    to,
                    amount: 1,
                    token: Token::Iost,
                };
                s.sign(from, buyer_shard, LedgerModule::call(&call))
            })
            .collect();
        let transfer_phase = h.phase("transfers", transfers, None)?;
        transfer_tps = Some(transfer_phase.tps);
        phases.push(transfer_phase);
    }
    Ok(Lifecycles {
        lifecycles_per_sec,
        phases,
        reveal_tps,
        transfer_tps,
    })
}
