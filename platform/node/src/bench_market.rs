//! `ios bench market`: whole order lifecycles through consensus. One shard
//! of validators in the benchmarks' engines (every replica on one thread,
//! real ed25519 signatures on every transaction and vote, the market module
//! in the runtime) runs `orders` lifecycles in phases: place, accept,
//! deliver, confirm, both sides commit a rating, both reveal it. Each phase
//! is submitted once the one before is final, as real parties would act.
//! The same run also finalizes as many plain transfers as reveals, so the
//! cost of a rating with its reputation aggregation is read against a
//! transfer's, and measures the machine's limits.

use crate::bench::{hardware_limits, HardwareLimits};
use crate::fifo::FifoNet;
use anyhow::{bail, Context, Result};
use ios_chain::block::ReceiptStatus;
use ios_chain::crypto::Keypair;
use ios_chain::execute::Runtime;
use ios_chain::hash::{hash_tagged, Hash};
use ios_chain::ledger::{LedgerCall, LedgerModule, Token};
use ios_chain::params::{ChainParams, Genesis};
use ios_chain::replica::{Replica, ReplicaConfig};
use ios_chain::shard::BEACON;
use ios_chain::tx::{Call, SignedTransaction, Transaction};
use ios_chain::types::UNITS_PER_IOST;
use ios_market::ftfs::{Rating, Scores};
use ios_market::module::{ListingTerms, MarketCall, MarketModule, MarketParams};
use ios_storage::ContentId;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
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
    _dbs: Vec<sled::Db>,
}

impl Harness {
    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 + 1
    }

    /// Submits `txs` (at most two blocks' worth in flight) and runs
    /// consensus until every one is final; all must succeed.
    fn phase(&mut self, name: &'static str, txs: Vec<SignedTransaction>) -> Result<PhaseTime> {
        let n = txs.len();
        let t = Instant::now();
        let mut waiting: BTreeSet<Hash> = txs.iter().map(|t| t.id()).collect();
        let mut load = txs.into_iter();
        let mut in_flight = 0usize;
        let mut target = 0usize;
        let replicas = self.net.replicas.len();
        while !waiting.is_empty() {
            if t.elapsed() > Duration::from_secs(600) {
                bail!(
                    "{name}: {} of {n} not final after 10 minutes",
                    waiting.len()
                );
            }
            while in_flight < 2 * self.chunk {
                let batch: Vec<SignedTransaction> = load.by_ref().take(self.chunk).collect();
                if batch.is_empty() {
                    break;
                }
                in_flight += batch.len();
                let now = self.now();
                let (results, outs) = self.net.replicas[target % replicas].submit(batch, now);
                if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
                    bail!("{name}: a transaction was refused: {e}");
                }
                self.net.route(target % replicas, outs);
                target += 1;
            }
            let now = self.now();
            if !self.net.deliver_one(now) {
                self.net.sleep_until_due(now, Duration::from_millis(50));
                for i in 0..replicas {
                    let now = self.now();
                    let outs = self.net.replicas[i].tick(now)?;
                    self.net.route(i, outs);
                }
            }
            for (_, c) in std::mem::take(&mut self.net.commits) {
                for r in &c.receipts {
                    if waiting.remove(&r.tx) {
                        in_flight -= 1;
                        if let ReceiptStatus::Failed { message, .. } = &r.status {
                            bail!("{name}: a transaction failed: {message}");
                        }
                    }
                }
            }
        }
        let seconds = t.elapsed().as_secs_f64();
        Ok(PhaseTime {
            phase: name,
            txs: n,
            seconds,
            tps: n as f64 / seconds,
        })
    }
}

/// Signs calls with per-account nonces.
struct Signer {
    chain: ios_chain::types::ChainId,
    nonces: BTreeMap<[u8; 32], u64>,
}

impl Signer {
    fn sign(&mut self, key: &Keypair, call: Call) -> SignedTransaction {
        let n = self.nonces.entry(key.address().0).or_insert(0);
        let tx = Transaction {
            chain_id: self.chain.clone(),
            shard: BEACON,
            sender: key.address(),
            nonce: *n,
            fee: 10_000,
            expires_at: u64::MAX,
            call,
        };
        *n += 1;
        tx.sign(key)
    }
}

/// Runs the market benchmark in `dir`.
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

    let vkeys: Vec<Keypair> = (0..cfg.validators as u64)
        .map(|i| Keypair::from_seed("bench-validator", i))
        .collect();
    let providers: Vec<Keypair> = (0..cfg.orders.div_ceil(cfg.orders_per_provider) as u64)
        .map(|i| Keypair::from_seed("bench-provider", i))
        .collect();
    let buyers: Vec<Keypair> = (0..cfg.orders as u64)
        .map(|i| Keypair::from_seed("bench-buyer", i))
        .collect();
    let mut params = ChainParams::devnet("ios-bench-market");
    params.set_committee_size(cfg.validators as u16);
    params.max_block_txs = cfg.block_txs;
    let users: Vec<_> = providers
        .iter()
        .chain(&buyers)
        .map(|k| k.address())
        .collect();
    let genesis = Genesis::test_network(
        params,
        0,
        hash_tagged("ios/bench", b"market"),
        &vkeys,
        &users,
    );
    let runtime = Runtime::new(genesis.params.clone())
        .with_module(Arc::new(MarketModule::new(MarketParams::default())));
    let rc = ReplicaConfig {
        min_block_interval_ms: 0,
        index_txs: false,
        ..ReplicaConfig::default()
    };
    let mut net = FifoNet::default();
    let mut dbs = Vec::new();
    let start = Instant::now();
    for (i, k) in vkeys.iter().enumerate() {
        let db = ios_chain::state::open_db(&dir.join(format!("v{i}")), None)
            .context("opening bench store")?;
        let replica = Replica::open(&db, k.clone(), runtime.clone(), &genesis, rc.clone(), 1)?;
        net.add(BEACON, replica);
        dbs.push(db);
    }
    let mut h = Harness {
        net,
        start,
        chunk: (cfg.block_txs as usize).max(1),
        _dbs: dbs,
    };
    let mut s = Signer {
        chain: genesis.params.chain_id.clone(),
        nonces: BTreeMap::new(),
    };

    progress("listing");
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
            s.sign(p, MarketCall::CreateListing(terms).to_call())
        })
        .collect();
    let listing_ids: Vec<Hash> = listings.iter().map(|t| t.id()).collect();
    h.phase("list", listings)?;

    let provider_of = |o: usize| o / cfg.orders_per_provider;
    let place: Vec<SignedTransaction> = buyers
        .iter()
        .enumerate()
        .map(|(o, b)| {
            let call = MarketCall::PlaceOrder {
                listing: listing_ids[provider_of(o)],
                price,
            };
            s.sign(b, call.to_call())
        })
        .collect();
    let orders: Vec<Hash> = place.iter().map(|t| t.id()).collect();
    let by_provider = |s: &mut Signer, f: &dyn Fn(Hash) -> MarketCall| -> Vec<SignedTransaction> {
        orders
            .iter()
            .enumerate()
            .map(|(o, id)| s.sign(&providers[provider_of(o)], f(*id).to_call()))
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

    progress("running order lifecycles");
    let t = Instant::now();
    let mut phases = vec![h.phase("place", place)?];
    let accept = by_provider(&mut s, &|order| MarketCall::Accept { order });
    phases.push(h.phase("accept", accept)?);
    let deliver = by_provider(&mut s, &|order| MarketCall::Deliver {
        order,
        delivery: ContentId(hash_tagged("bench-delivery", &order.0)),
    });
    phases.push(h.phase("deliver", deliver)?);
    let confirm: Vec<SignedTransaction> = buyers
        .iter()
        .zip(&orders)
        .map(|(b, order)| s.sign(b, MarketCall::Confirm { order: *order }.to_call()))
        .collect();
    phases.push(h.phase("confirm", confirm)?);
    let mut commit = Vec::with_capacity(2 * orders.len());
    let mut reveal = Vec::with_capacity(2 * orders.len());
    let mut reveal_later = Vec::with_capacity(2 * orders.len());
    for (o, order) in orders.iter().enumerate() {
        let p = &providers[provider_of(o)];
        for (side, key, stars) in [(0u8, &buyers[o], 5u8), (1u8, p, 4u8)] {
            let r = rating(stars);
            let commitment = r.commitment(order, &key.address().0, &salt(o, side));
            commit.push(
                s.sign(
                    key,
                    MarketCall::CommitRating {
                        order: *order,
                        commitment,
                    }
                    .to_call(),
                ),
            );
            reveal_later.push((key, *order, r, salt(o, side)));
        }
    }
    phases.push(h.phase("commit ratings", commit)?);
    for (key, order, rating, salt) in reveal_later {
        reveal.push(
            s.sign(
                key,
                MarketCall::RevealRating {
                    order,
                    rating,
                    salt,
                }
                .to_call(),
            ),
        );
    }
    let reveals = reveal.len();
    let reveal_phase = h.phase("reveal ratings", reveal)?;
    let reveal_tps = reveal_phase.tps;
    phases.push(reveal_phase);
    let lifecycles = cfg.orders as f64 / t.elapsed().as_secs_f64();

    progress("plain transfers for comparison");
    let transfers: Vec<SignedTransaction> = (0..reveals)
        .map(|i| {
            let from = &buyers[i % buyers.len()];
            let to = buyers[(i + 1) % buyers.len()].address();
            s.sign(
                from,
                LedgerModule::call(&LedgerCall::Transfer {
                    to,
                    amount: 1,
                    token: Token::Iost,
                }),
            )
        })
        .collect();
    let transfer_phase = h.phase("transfers", transfers)?;
    let transfer_tps = transfer_phase.tps;
    phases.push(transfer_phase);
    Ok(MarketBenchReport {
        validators: cfg.validators,
        orders: cfg.orders,
        lifecycles_per_sec: lifecycles,
        cross_shard_lifecycles_per_sec: None,
        phases,
        transfer_tps,
        reveal_tps,
        rating_cost_in_transfers: transfer_tps / reveal_tps,
        limits,
    })
}
