//! The deterministic simulator of whole networks: the beacon and S account
//! shards, a committee of validator replicas each, on virtual time, with a
//! seeded scheduler and a network that loses, delays, duplicates and
//! reorders messages, partitions and heals, crashes nodes and restarts them
//! from their own sled directories. Up to f members of every committee play
//! Byzantine in each epoch (they equivocate, withhold randomness reveals and,
//! as relayers, drop epoch-change proofs, and serve tampered snapshot
//! chunks). Nodes open replicas of the shards whose committee they join
//! (fast-syncing from a peer's epoch snapshot when they have no store there,
//! then catching up from peers) and close them an epoch after they leave;
//! relayers carry the beacon's epoch changes and the Atomix steps.
//!
//! After every step it checks, per shard: no two different finalized blocks
//! at one height, IOST supply conserved, equal state roots at equal heights,
//! no honest equivocation across restarts; and at the end, after every fault
//! heals, that every shard made progress, that the beacon's epochs kept
//! changing and that every account shard followed them. A run is a pure
//! function of its seed: `ios sim --seed N` replays it exactly.

mod rng;
pub mod solo;

pub use solo::SoloChain;

pub use rng::SimRng;

use crate::atomix::{
    CrossInput, CrossTransfer, Decision, InputState, Outcome, ReceiptProof, RelayBatch, Step,
};
use crate::block::{SignedProposal, SignedVote};
use crate::crypto::Keypair;
use crate::error::{ChainError, Result};
use crate::execute::{total_supply, Runtime};
use crate::fast_sync::{FastSync, Progress};
use crate::hash::{hash_tagged, DomainHasher, Hash};
use crate::ledger::{LedgerCall, LedgerModule, Token};
use crate::light_client::{EpochChange, EpochInfo};
use crate::message::{Message, PeerId};
use crate::params::{ChainParams, Genesis};
use crate::replica::{Output, Replica, ReplicaConfig};
use crate::shard::BEACON;
use crate::tx::{SignedTransaction, Transaction};
use crate::types::{Amount, Epoch, Height, ShardId, TimeMs, UNITS_PER_IOST};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Which faults a run injects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    pub loss: bool,
    pub delay: bool,
    pub duplicate: bool,
    pub reorder: bool,
    pub partition: bool,
    pub crash: bool,
    pub byzantine: bool,
}

impl Faults {
    pub const NAMES: [&'static str; 7] = [
        "loss",
        "delay",
        "duplicate",
        "reorder",
        "partition",
        "crash",
        "byzantine",
    ];

    pub fn all() -> Faults {
        Faults {
            loss: true,
            delay: true,
            duplicate: true,
            reorder: true,
            partition: true,
            crash: true,
            byzantine: true,
        }
    }

    /// Parses `all`, `none`, or a comma-separated list of [`Faults::NAMES`].
    pub fn parse(s: &str) -> std::result::Result<Faults, String> {
        match s.trim() {
            "all" => return Ok(Faults::all()),
            "none" | "" => return Ok(Faults::default()),
            _ => {}
        }
        let mut f = Faults::default();
        for part in s.split(',').map(str::trim) {
            match part {
                "loss" => f.loss = true,
                "delay" => f.delay = true,
                "duplicate" => f.duplicate = true,
                "reorder" => f.reorder = true,
                "partition" => f.partition = true,
                "crash" => f.crash = true,
                "byzantine" => f.byzantine = true,
                other => {
                    return Err(format!(
                        "unknown fault {other:?}; expected all, none or some of {}",
                        Faults::NAMES.join(",")
                    ))
                }
            }
        }
        Ok(f)
    }
}

#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Validators per committee (the whole validator set has this many per shard).
    pub validators: usize,
    /// S, the account shards; 0 runs one chain (the beacon holds the accounts).
    pub shards: u16,
    pub faults: Faults,
    /// Virtual time with faults active.
    pub run_ms: TimeMs,
    /// Virtual time after every fault has healed, in which progress is required.
    pub heal_ms: TimeMs,
    /// Transactions per virtual second offered by the load generator.
    pub load_tps: u32,
    pub users: usize,
    /// Blocks each shard must finalize after healing.
    pub min_progress: Height,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            validators: 4,
            shards: 0,
            faults: Faults::all(),
            run_ms: 12_000,
            heal_ms: 8_000,
            load_tps: 100,
            users: 12,
            min_progress: 3,
        }
    }
}

impl SimConfig {
    /// The whole validator set: one committee's worth per shard, plus f
    /// spares per shard in a sharded network, so TransEpoch draws from a
    /// free pool and jailed members can be replaced.
    pub fn total_validators(&self) -> usize {
        if self.shards == 0 {
            return self.validators;
        }
        (self.validators + crate::shard::max_faulty(self.validators)) * (self.shards as usize + 1)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub time: TimeMs,
    pub message: String,
}

#[derive(Clone, Debug, Default)]
pub struct SimReport {
    pub seed: u64,
    /// Blocks finalized, all shards together.
    pub finalized: Height,
    pub txs: u64,
    pub failed_receipts: u64,
    pub rejected_submissions: u64,
    pub messages: u64,
    pub dropped: u64,
    pub crashes: u32,
    pub partitions: u32,
    /// Byzantine seats placed: (shard, epoch, member) triples, at most f per committee.
    pub byzantine: usize,
    pub slashed: u64,
    /// Highest epoch the beacon reached (each change ran a randomness round).
    pub epochs: u64,
    /// Epoch changes applied by account shards (through relayed proofs).
    pub shard_epoch_changes: u64,
    /// Relayed proofs a Byzantine relayer dropped.
    pub relays_dropped: u64,
    /// Forged or replayed Atomix proofs Byzantine relayers sent (every one
    /// must be refused: the conservation and termination checks would see it).
    pub forged_proofs: u64,
    /// Cross-shard transfers started, committed everywhere, refunded everywhere.
    pub cross_started: u64,
    pub cross_committed: u64,
    pub cross_refunded: u64,
    /// Equivocation seen on account shards and carried to the beacon.
    pub evidence_relayed: u64,
    /// Replicas that started from a peer's epoch snapshot instead of genesis.
    pub fast_syncs: u64,
    /// Fast syncs that found no snapshot (the shard's first epoch) and
    /// started from genesis.
    pub fast_sync_fallbacks: u64,
    /// Snapshots a syncing node gave up mid-download (replaced by a newer
    /// one, or gone at its holders).
    pub superseded_snapshots: u64,
    /// Tampered snapshot chunks Byzantine peers served (each must be refused).
    pub forged_chunks: u64,
    /// Offers and chunks syncing nodes refused.
    pub refused_chunks: u64,
    pub violations: Vec<Violation>,
    /// Digest of every finalized block in order: equal digests mean equal runs.
    pub trace: Hash,
    pub virtual_ms: TimeMs,
}

enum Ev {
    Deliver {
        to: usize,
        from: usize,
        shard: ShardId,
        msg: Arc<Message>,
    },
    Tick(usize, ShardId),
    /// A fast sync's next step.
    SyncTick(usize, ShardId),
    Load,
    Fault,
    Relay,
    Restart(usize),
    HealPartition,
    Heal,
}

struct Node {
    key: Keypair,
    dir: PathBuf,
    /// False while crashed.
    up: bool,
    replicas: BTreeMap<ShardId, Replica>,
    /// Shards this node is fast-syncing (its store there is still empty).
    syncing: BTreeMap<ShardId, FastSync>,
    next_tick: BTreeMap<ShardId, TimeMs>,
    /// Crash right after broadcasting the next own vote.
    crash_after_vote: bool,
}

/// A cross-shard transfer as the simulator's relayers and checks see it,
/// from finalized blocks only.
struct Cross {
    x: CrossTransfer,
    created: TimeMs,
    /// The lock transaction of each input.
    lock_ids: Vec<Hash>,
    /// Proof of `Accepted` per input.
    accepted: Vec<Option<ReceiptProof>>,
    /// A proof of an input's `Rejected`.
    rejection: Option<ReceiptProof>,
    /// The output shard's decision and its proof.
    decision: Option<(Decision, ReceiptProof)>,
    /// Inputs released or refunded.
    unlocked: Vec<bool>,
    /// When its pending steps were last relayed, and at what progress.
    relayed: Option<(TimeMs, (bool, usize, bool, usize))>,
    /// When a step of it last finalized (or it started).
    progressed: TimeMs,
}

impl Cross {
    /// How far the transfer got; relayers act at once when it changes.
    fn progress(&self) -> (bool, usize, bool, usize) {
        (
            self.decision.is_some(),
            self.accepted.iter().flatten().count(),
            self.rejection.is_some(),
            self.unlocked.iter().filter(|u| **u).count(),
        )
    }

    /// Committed everywhere or refunded everywhere: decided, and every
    /// accepted input unlocked.
    fn terminal(&self) -> bool {
        self.decision.is_some()
            && self
                .accepted
                .iter()
                .zip(&self.unlocked)
                .all(|(a, u)| a.is_none() || *u)
    }

    /// IOST counted twice right now: committed on the output shard, still
    /// locked on an input shard.
    fn in_flight(&self) -> Amount {
        match self.decision {
            Some((Decision::Committed, _)) => self
                .x
                .inputs
                .iter()
                .zip(&self.unlocked)
                .filter(|(_, u)| !**u)
                .map(|(i, _)| i.amount)
                .sum(),
            _ => 0,
        }
    }
}

/// What one node signed on one shard: (height, round, step) -> block voted for.
type SignedSteps = BTreeMap<(Height, u32, u8), Option<Hash>>;

struct Sim<'a> {
    cfg: &'a SimConfig,
    rng: SimRng,
    now: TimeMs,
    seq: u64,
    queue: BinaryHeap<Reverse<(TimeMs, u64)>>,
    events: BTreeMap<u64, Ev>,
    nodes: Vec<Node>,
    genesis: Genesis,
    runtimes: Vec<Runtime>,
    replica_config: ReplicaConfig,
    /// All IOST at genesis.
    genesis_supply: Amount,
    /// Per shard: the IOST in its latest finalized state (locks included).
    supply: Vec<Amount>,
    /// Cross-shard transfers the load started, by id.
    crosses: BTreeMap<Hash, Cross>,
    users: Vec<Keypair>,
    user_nonce: Vec<u64>,
    user_last_progress: Vec<TimeMs>,
    partition: Option<BTreeSet<usize>>,
    /// Epochs the beacon finalized, as the simulator saw them.
    epochs: BTreeMap<Epoch, EpochInfo>,
    changes: BTreeMap<Epoch, Arc<EpochChange>>,
    /// Per shard: the committee epoch of its latest finalized block.
    shard_epoch: Vec<Epoch>,
    /// Byzantine seats: (shard, epoch, node), at most f per committee.
    byzantine: BTreeSet<(ShardId, Epoch, usize)>,
    /// Per (node, shard): what it signed for each (height, round, step) while honest.
    signed: BTreeMap<(usize, ShardId), SignedSteps>,
    healed: bool,
    finalized: BTreeMap<(ShardId, Height), (Hash, Hash)>,
    trace: DomainHasher,
    report: SimReport,
}

/// The chain parameters the simulator runs with: short epochs so committees
/// change within a run.
pub fn sim_params(validators: usize) -> ChainParams {
    let mut p = ChainParams::devnet("ios-sim");
    p.epoch_length = 20;
    p.dealing_window = 8;
    p.set_committee_size(validators as u16);
    p
}

/// Genesis for `validators` validators and `users` funded users, all with
/// deterministic keys.
pub fn sim_genesis(params: ChainParams, validators: &[Keypair], users: &[Keypair]) -> Genesis {
    let addrs = |ks: &[Keypair]| ks.iter().map(|k| k.address()).collect::<Vec<_>>();
    Genesis::test_network(
        params,
        0,
        hash_tagged("ios/sim-genesis-randomness", b"sim"),
        validators,
        &addrs(users),
    )
}

fn open_db(dir: &Path) -> Result<sled::Db> {
    crate::state::open_db(dir, None)
}

/// Runs one seed in `base_dir` (a fresh subdirectory is made and removed).
pub fn run(seed: u64, cfg: &SimConfig, base_dir: &Path) -> Result<SimReport> {
    let dir = base_dir.join(format!("seed-{seed}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| ChainError::Storage(e.to_string()))?;
    let result = Sim::new(seed, cfg, &dir).and_then(|sim| sim.run());
    let _ = std::fs::remove_dir_all(&dir);
    result
}

impl<'a> Sim<'a> {
    fn new(seed: u64, cfg: &'a SimConfig, dir: &Path) -> Result<Sim<'a>> {
        if cfg.validators == 0 {
            return Err(ChainError::InvalidGenesis("at least one validator".into()));
        }
        let rng = SimRng::new(seed);
        let keys: Vec<Keypair> = (0..cfg.total_validators() as u64)
            .map(|i| Keypair::from_seed("sim-validator", i))
            .collect();
        let users: Vec<Keypair> = (0..cfg.users as u64)
            .map(|i| Keypair::from_seed("sim-user", i))
            .collect();
        let mut params = sim_params(cfg.validators);
        params.shards = cfg.shards;
        let genesis = sim_genesis(params.clone(), &keys, &users);
        genesis.validate()?;
        let genesis_supply = genesis.total_supply()?;
        let mut supply: Vec<Amount> = vec![0; cfg.shards as usize + 1];
        for a in &genesis.accounts {
            let s = genesis.shard_of(a) as usize;
            supply[s] = a
                .account()
                .total_iost()
                .ok()
                .and_then(|t| supply[s].checked_add(t))
                .ok_or(ChainError::Overflow)?;
        }
        let runtimes = (0..=cfg.shards)
            .map(|s| Runtime::for_shard(params.clone(), s))
            .collect();
        let replica_config = ReplicaConfig {
            timeout_propose_ms: 500,
            timeout_prevote_ms: 250,
            timeout_precommit_ms: 250,
            timeout_delta_ms: 100,
            min_block_interval_ms: 100,
            // Idle stretches make fewer, slower empty blocks (as a devnet
            // does), so every seed exercises the pacing too.
            empty_block_interval_ms: 300,
            gossip_interval_ms: 250,
            durable: false,
            index_txs: true,
            reveal_randomness: true,
            snapshots_kept: 2,
            prune_blocks: false,
            mempool: Default::default(),
        };
        let nodes = keys
            .into_iter()
            .enumerate()
            .map(|(i, key)| Node {
                key,
                dir: dir.join(format!("node-{i}")),
                up: true,
                replicas: BTreeMap::new(),
                syncing: BTreeMap::new(),
                next_tick: BTreeMap::new(),
                crash_after_vote: false,
            })
            .collect();
        let n_users = users.len();
        let epoch0 = genesis.epoch_zero();
        let mut sim = Sim {
            cfg,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            nodes,
            genesis,
            runtimes,
            replica_config,
            genesis_supply,
            supply,
            crosses: BTreeMap::new(),
            users,
            user_nonce: vec![0; n_users],
            user_last_progress: vec![0; n_users],
            partition: None,
            epochs: BTreeMap::from([(0, epoch0)]),
            changes: BTreeMap::new(),
            shard_epoch: vec![0; cfg.shards as usize + 1],
            byzantine: BTreeSet::new(),
            signed: BTreeMap::new(),
            healed: false,
            finalized: BTreeMap::new(),
            trace: DomainHasher::new("ios/sim-trace"),
            report: SimReport {
                seed,
                ..Default::default()
            },
        };
        for s in 0..=cfg.shards {
            sim.place_byzantine(s, 0);
        }
        sim.serve_committees()?;
        sim.push(0, Ev::Load);
        if cfg.faults.partition || cfg.faults.crash {
            let t = sim.rng.range(500, 2_000);
            sim.push(t, Ev::Fault);
        }
        if cfg.shards > 0 {
            sim.push(1_000, Ev::Relay);
        }
        sim.push(cfg.run_ms, Ev::Heal);
        Ok(sim)
    }

    fn push(&mut self, at: TimeMs, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.events.insert(self.seq, ev);
    }

    fn schedule_tick(&mut self, i: usize, shard: ShardId) {
        let Some(r) = self.nodes[i].replicas.get(&shard) else {
            return;
        };
        let at = r.next_deadline().max(self.now);
        let next = self.nodes[i].next_tick.entry(shard).or_insert(TimeMs::MAX);
        if at < *next || *next < self.now {
            *next = at;
            self.push(at, Ev::Tick(i, shard));
        }
    }

    // ---- committees, Byzantine seats, who serves where ----

    fn committee(&self, shard: ShardId, epoch: Epoch) -> Option<&crate::block::Committee> {
        self.epochs.get(&epoch)?.committees.get(shard as usize)
    }

    fn index_of(&self, a: &crate::crypto::Address) -> Option<usize> {
        self.nodes.iter().position(|n| n.key.address() == *a)
    }

    /// Places between 1 and f Byzantine members in `shard`'s committee of
    /// `epoch` (when Byzantine faults are on and the committee tolerates any).
    fn place_byzantine(&mut self, shard: ShardId, epoch: Epoch) {
        if !self.cfg.faults.byzantine
            || self
                .byzantine
                .iter()
                .any(|(s, e, _)| *s == shard && *e == epoch)
        {
            return;
        }
        let Some(c) = self.committee(shard, epoch).cloned() else {
            return;
        };
        let f = c.max_faulty();
        if f == 0 {
            return;
        }
        let count = self.rng.range(1, f as u64) as usize;
        let mut chosen = BTreeSet::new();
        while chosen.len() < count {
            chosen.insert(c.members[self.rng.below(c.members.len() as u64) as usize]);
        }
        for a in chosen {
            if let Some(i) = self.index_of(&a) {
                self.byzantine.insert((shard, epoch, i));
                self.report.byzantine += 1;
            }
        }
    }

    /// Whether node `i` plays Byzantine on `shard` now (in the epoch its
    /// replica of the shard is in).
    fn is_byzantine(&self, i: usize, shard: ShardId) -> bool {
        self.nodes[i]
            .replicas
            .get(&shard)
            .is_some_and(|r| self.byzantine.contains(&(shard, r.committee().epoch, i)))
    }

    /// Shards node `i` must run: those whose committee it is in, by the
    /// shard's own epoch, the beacon's latest and the one before (TransEpoch:
    /// outgoing members keep serving for an epoch, incoming ones sync early).
    fn needed_shards(&self, i: usize) -> BTreeSet<ShardId> {
        let me = self.nodes[i].key.address();
        let latest = self.epochs.keys().next_back().copied().unwrap_or(0);
        let mut out = BTreeSet::new();
        for s in 0..=self.cfg.shards {
            let mut epochs = vec![self.shard_epoch[s as usize], latest];
            if latest > 0 {
                epochs.push(latest - 1);
            }
            if epochs
                .iter()
                .any(|e| self.committee(s, *e).is_some_and(|c| c.is_member(&me)))
            {
                out.insert(s);
            }
        }
        out
    }

    /// Opens the replicas live nodes now need and closes those they no
    /// longer do (their data stays on disk for a later return).
    fn serve_committees(&mut self) -> Result<()> {
        for i in 0..self.nodes.len() {
            if !self.nodes[i].up {
                continue;
            }
            let needed = self.needed_shards(i);
            let running: Vec<ShardId> = self.nodes[i].replicas.keys().copied().collect();
            for s in running {
                if !needed.contains(&s) {
                    self.nodes[i].replicas.remove(&s);
                    self.nodes[i].next_tick.remove(&s);
                }
            }
            self.nodes[i].syncing.retain(|s, _| needed.contains(s));
            for s in needed {
                if !self.nodes[i].replicas.contains_key(&s) {
                    self.open_replica(i, s)?;
                }
            }
        }
        Ok(())
    }

    /// Opens node `i`'s replica of `shard`; a node with no store there yet,
    /// joining a shard that has made progress, fast-syncs first.
    fn open_replica(&mut self, i: usize, shard: ShardId) -> Result<()> {
        if self.nodes[i].syncing.contains_key(&shard) {
            return Ok(());
        }
        let db = open_db(&self.nodes[i].dir.join(format!("shard-{shard}")))?;
        if !crate::state::has_chain(&db)? && self.max_height(shard) > 0 {
            drop(db);
            // What this node's beacon light client trusts for the shard.
            let committees = self
                .epochs
                .iter()
                .filter_map(|(e, info)| Some((*e, info.committee(shard).ok()?.clone())))
                .collect();
            let fs = FastSync::new(
                shard,
                self.genesis.params.chain_id.clone(),
                self.genesis.hash(),
                committees,
            );
            self.nodes[i].syncing.insert(shard, fs);
            self.push(self.now, Ev::SyncTick(i, shard));
            return Ok(());
        }
        self.start_replica(i, shard, &db)
    }

    fn start_replica(&mut self, i: usize, shard: ShardId, db: &sled::Db) -> Result<()> {
        let mut replica = Replica::open(
            db,
            self.nodes[i].key.clone(),
            self.runtimes[shard as usize].clone(),
            &self.genesis,
            self.replica_config.clone(),
            self.now,
        )?;
        let epoch = replica.committee().epoch;
        // Byzantine beacon members withhold their randomness reveals, so every
        // run checks that the beacon's output does not depend on them.
        replica.set_reveal_randomness(!self.byzantine.contains(&(shard, epoch, i)));
        self.nodes[i].replicas.insert(shard, replica);
        self.nodes[i].next_tick.insert(shard, TimeMs::MAX);
        self.schedule_tick(i, shard);
        Ok(())
    }

    fn run(mut self) -> Result<SimReport> {
        let end = self.cfg.run_ms + self.cfg.heal_ms;
        let mut heal_heights: Vec<Height> = Vec::new();
        let mut heal_epoch = 0;
        while let Some(Reverse((at, seq))) = self.queue.pop() {
            if at > end {
                break;
            }
            self.now = at;
            let Some(ev) = self.events.remove(&seq) else {
                continue;
            };
            match ev {
                Ev::Tick(i, shard) => {
                    if self.nodes[i].next_tick.get(&shard) != Some(&at) {
                        continue;
                    }
                    self.nodes[i].next_tick.insert(shard, TimeMs::MAX);
                    if let Some(r) = self.nodes[i].replicas.get_mut(&shard) {
                        let out = r.tick(at)?;
                        self.route(i, shard, out)?;
                    }
                    self.schedule_tick(i, shard);
                }
                Ev::SyncTick(i, shard) => self.sync_step(i, shard)?,
                Ev::Deliver {
                    to,
                    from,
                    shard,
                    msg,
                } => {
                    self.report.messages += 1;
                    if let Some(fs) = self.nodes[to].syncing.get_mut(&shard) {
                        // A refused offer or chunk is the sender's fault; the sync asks elsewhere.
                        let _ = fs.handle(PeerId(from as u64), &msg);
                        if fs.progress() != Progress::Running {
                            self.push(at, Ev::SyncTick(to, shard));
                        }
                        continue;
                    }
                    let Some(r) = self.nodes[to].replicas.get_mut(&shard) else {
                        self.report.dropped += 1;
                        continue;
                    };
                    // A rejected message is the sender's fault (Byzantine) or stale; the replica logs it.
                    let out = r.handle(PeerId(from as u64), &msg, at).unwrap_or_default();
                    self.route(to, shard, out)?;
                    self.schedule_tick(to, shard);
                }
                Ev::Load => {
                    self.load()?;
                    if !self.healed || at < end {
                        self.push(at + 50, Ev::Load);
                    }
                }
                Ev::Fault => {
                    if !self.healed {
                        self.fault()?;
                        let t = at + self.rng.range(800, 2_500);
                        self.push(t, Ev::Fault);
                    }
                }
                Ev::Relay => {
                    self.relay_pending();
                    let live: Vec<usize> = (0..self.nodes.len())
                        .filter(|&i| self.nodes[i].up)
                        .collect();
                    if !live.is_empty() {
                        let relayer = live[self.rng.below(live.len() as u64) as usize];
                        self.relay_atomix(relayer);
                    }
                    self.push(at + 1_000, Ev::Relay);
                }
                Ev::Restart(i) => self.restart(i)?,
                Ev::HealPartition => self.partition = None,
                Ev::Heal => {
                    self.healed = true;
                    self.partition = None;
                    for i in 0..self.nodes.len() {
                        if !self.nodes[i].up {
                            self.restart(i)?;
                        }
                    }
                    heal_heights = (0..=self.cfg.shards).map(|s| self.max_height(s)).collect();
                    heal_epoch = self.beacon_epoch();
                }
            }
        }
        self.now = end;
        for s in 0..=self.cfg.shards {
            let before = heal_heights.get(s as usize).copied().unwrap_or(0);
            let after = self.max_height(s);
            if after < before + self.cfg.min_progress {
                self.violation(format!(
                    "no progress after healing: shard {s} finalized {after}, needed {}",
                    before + self.cfg.min_progress
                ));
            }
        }
        // The randomness beacon must stay live too: withheld reveals (the
        // Byzantine members') may not stop epochs from changing after healing.
        let epochs = self.beacon_epoch();
        let after_heal = self
            .max_height(BEACON)
            .saturating_sub(heal_heights.first().copied().unwrap_or(0));
        if after_heal >= 3 * self.genesis.params.epoch_length && epochs <= heal_epoch {
            self.violation(format!(
                "no epoch change in {after_heal} blocks after healing (stuck in epoch {epochs}): the randomness round did not complete"
            ));
        }
        // Account shards follow the beacon (through relayed epoch changes).
        for s in 1..=self.cfg.shards {
            let e = self.shard_epoch[s as usize];
            if e + 1 < epochs {
                self.violation(format!(
                    "shard {s} is in epoch {e} while the beacon reached {epochs}: epoch changes were not relayed or applied"
                ));
            }
        }
        // Every cross-shard transfer ends committed everywhere or refunded
        // everywhere: once decided, or expired, or with every input
        // accepted, its next step may not take more than 6 s (after healing,
        // relayers retry every second).
        let heights: Vec<Height> = (0..=self.cfg.shards).map(|s| self.max_height(s)).collect();
        for (id, c) in &self.crosses {
            let old = c.progressed + 6_000 < end;
            let stuck = match c.decision {
                Some(_) => old,
                None => {
                    heights[c.x.output_shard as usize] > c.x.expires_at + 20
                        || (old && c.accepted.iter().all(Option::is_some))
                }
            };
            if c.terminal() {
                match c.decision {
                    Some((Decision::Committed, _)) => self.report.cross_committed += 1,
                    _ => self.report.cross_refunded += 1,
                }
            } else if stuck {
                let message = format!(
                    "cross-shard transfer {id} (started at {} ms) is not terminal after healing: decision {:?}, accepted {:?}, unlocked {:?}",
                    c.created,
                    c.decision.as_ref().map(|(d, _)| *d),
                    c.accepted.iter().map(Option::is_some).collect::<Vec<_>>(),
                    c.unlocked
                );
                self.report
                    .violations
                    .push(Violation { time: end, message });
            }
        }
        self.report.epochs = epochs;
        self.report.finalized = self.finalized.len() as Height;
        self.report.trace = self.trace.finalize();
        self.report.virtual_ms = end;
        Ok(self.report)
    }

    fn beacon_epoch(&self) -> Epoch {
        self.shard_epoch[BEACON as usize]
    }

    /// Highest height of `shard` finalized by anyone.
    fn max_height(&self, shard: ShardId) -> Height {
        self.finalized
            .range((shard, 0)..=(shard, Height::MAX))
            .next_back()
            .map_or(0, |((_, h), _)| *h)
    }

    fn violation(&mut self, message: String) {
        self.report.violations.push(Violation {
            time: self.now,
            message,
        });
    }

    /// Nodes that run `shard`, other than `except`.
    fn peers(&self, shard: ShardId, except: usize) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&j| j != except && self.nodes[j].replicas.contains_key(&shard))
            .collect()
    }

    /// Sends a replica's outputs through the faulty network and checks every commit.
    fn route(&mut self, from: usize, shard: ShardId, outputs: Vec<Output>) -> Result<()> {
        for out in outputs {
            match out {
                Output::Broadcast(msg) => {
                    if self.is_byzantine(from, shard) {
                        self.equivocate(from, shard, &msg);
                        continue;
                    }
                    self.check_no_equivocation(from, shard, &msg);
                    for to in self.peers(shard, from) {
                        self.send(from, to, shard, msg.clone());
                    }
                    if self.nodes[from].crash_after_vote && matches!(msg.as_ref(), Message::Vote(_))
                    {
                        // The vote left; now the node dies mid-step.
                        let down = self.rng.range(1, 30);
                        self.crash(from, down);
                        return Ok(());
                    }
                }
                Output::Send(peer, msg) => {
                    let to = peer.0 as usize;
                    if to < self.nodes.len() && to != from {
                        self.send(from, to, shard, msg);
                    }
                }
                Output::Evidence(ev) => {
                    if !self.is_byzantine(from, shard) {
                        self.carry_evidence(from, &ev)?;
                    }
                }
                Output::Committed(cb) => {
                    if shard == BEACON {
                        // A new epoch may have made this member (not) Byzantine.
                        let byzantine = self.is_byzantine(from, shard);
                        if let Some(r) = self.nodes[from].replicas.get_mut(&shard) {
                            r.set_reveal_randomness(!byzantine);
                        }
                    }
                    if self.is_byzantine(from, shard) {
                        continue;
                    }
                    self.check_commit(from, shard, &cb)?;
                    if let Some(change) = &cb.epoch_change {
                        self.on_epoch_change(from, change.clone())?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Node `from` saw equivocation on an account shard: its own beacon
    /// replica, or the first live node's that runs one, submits the evidence
    /// on the beacon, where stakes live.
    fn carry_evidence(&mut self, from: usize, ev: &crate::ledger::Evidence) -> Result<()> {
        let to = std::iter::once(from)
            .chain(0..self.nodes.len())
            .find(|&j| self.nodes[j].up && self.nodes[j].replicas.contains_key(&BEACON));
        let Some(to) = to else {
            return Ok(());
        };
        let now = self.now;
        let Some(r) = self.nodes[to].replicas.get_mut(&BEACON) else {
            return Ok(());
        };
        let out = r.report_evidence(ev, now)?;
        self.report.evidence_relayed += 1;
        self.route(to, BEACON, out)?;
        self.schedule_tick(to, BEACON);
        Ok(())
    }

    /// The beacon finalized an epoch change: record the new committees,
    /// place the next epoch's Byzantine members, relay the proof to every
    /// account shard and move replicas to where their owners now serve.
    fn on_epoch_change(&mut self, from: usize, change: Arc<EpochChange>) -> Result<()> {
        let e = change.info.epoch;
        if self.epochs.contains_key(&e) {
            return Ok(());
        }
        self.epochs.insert(e, change.info.clone());
        self.changes.insert(e, change.clone());
        for s in 0..=self.cfg.shards {
            self.place_byzantine(s, e);
        }
        // Syncing nodes' light clients learn the new committees too.
        for node in &mut self.nodes {
            for (s, fs) in node.syncing.iter_mut() {
                if let Ok(c) = change.info.committee(*s) {
                    fs.trust(e, c.clone());
                }
            }
        }
        self.relay(from, e);
        self.serve_committees()
    }

    /// Relayer `from` carries epoch `e`'s change to every node serving an
    /// account shard that has not applied it. A Byzantine relayer drops it.
    fn relay(&mut self, from: usize, e: Epoch) {
        if self.cfg.shards == 0 {
            return;
        }
        let Some(change) = self.changes.get(&e).cloned() else {
            return;
        };
        if self.cfg.faults.byzantine
            && self.byzantine.iter().any(|(_, _, i)| *i == from)
            && !self.healed
        {
            self.report.relays_dropped += 1;
            return;
        }
        for s in 1..=self.cfg.shards {
            if self.shard_epoch[s as usize] >= e {
                continue;
            }
            let call = LedgerCall::BeaconUpdate(Box::new((*change).clone()));
            let msg = Arc::new(Message::Txs(vec![self.relay_tx(from, s, &call)]));
            for to in self.peers(s, from) {
                self.send(from, to, s, msg.clone());
            }
            // The relayer's own replica of the shard, if it runs one.
            if self.nodes[from].replicas.contains_key(&s) {
                self.send(from, from, s, msg.clone());
            }
        }
    }

    /// A relay transaction of `call`, signed by node `from` (no fee, no nonce).
    fn relay_tx(&self, from: usize, shard: ShardId, call: &LedgerCall) -> SignedTransaction {
        Transaction {
            chain_id: self.genesis.params.chain_id.clone(),
            shard,
            sender: self.nodes[from].key.address(),
            nonce: 0,
            fee: 0,
            expires_at: Height::MAX,
            call: LedgerModule::call(call),
        }
        .sign(&self.nodes[from].key)
    }

    /// Every second a random live node relays the changes account shards
    /// still miss: any one honest relayer gives liveness.
    fn relay_pending(&mut self) {
        let lagging = (1..=self.cfg.shards)
            .map(|s| self.shard_epoch[s as usize])
            .min()
            .unwrap_or(0);
        let pending: Vec<Epoch> = self
            .changes
            .range(lagging + 1..)
            .map(|(e, _)| *e)
            .take(2)
            .collect();
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].up)
            .collect();
        if pending.is_empty() || live.is_empty() {
            return;
        }
        let relayer = live[self.rng.below(live.len() as u64) as usize];
        for e in pending {
            self.relay(relayer, e);
        }
    }

    fn check_commit(
        &mut self,
        node: usize,
        shard: ShardId,
        cb: &crate::replica::CommittedBlock,
    ) -> Result<()> {
        let block = &cb.block;
        let (h, hash, root) = (block.header.height, block.hash(), cb.state_root);
        let Some(replica) = self.nodes[node].replicas.get(&shard) else {
            return Ok(());
        };
        let supply = total_supply(replica.store())?;
        let epoch = replica.committee().epoch;
        if root != block.header.state_root {
            self.violation(format!(
                "node {node} state root {root} differs from its block's at shard {shard} height {h}"
            ));
        }
        match self.finalized.get(&(shard, h)).copied() {
            Some((other, other_root)) => {
                if other != hash {
                    self.violation(format!(
                        "two different blocks finalized at shard {shard} height {h}: {other} and {hash}"
                    ));
                }
                if other_root != root {
                    self.violation(format!(
                        "state roots differ at shard {shard} height {h}: {other_root} vs {root} (node {node})"
                    ));
                }
            }
            None => {
                self.finalized.insert((shard, h), (hash, root));
                self.trace
                    .update(&shard.to_le_bytes())
                    .update(&h.to_le_bytes())
                    .update(&hash.0);
                self.report.txs += block.txs.len() as u64;
                for r in &cb.receipts {
                    if matches!(r.status, crate::block::ReceiptStatus::Failed { .. }) {
                        self.report.failed_receipts += 1;
                    }
                    self.report.slashed +=
                        r.events.iter().filter(|e| e.kind == "slashed").count() as u64;
                }
                self.supply[shard as usize] = supply;
                self.observe_atomix(shard, cb);
                self.check_conservation(shard, h);
                self.relay_atomix(node);
                if epoch > self.shard_epoch[shard as usize] {
                    if shard != BEACON {
                        self.report.shard_epoch_changes += 1;
                    }
                    self.shard_epoch[shard as usize] = epoch;
                    self.serve_committees()?;
                }
            }
        }
        Ok(())
    }

    /// IOST is conserved across all shards, locks and fee pools: the sum of
    /// every shard's latest finalized supply is the genesis supply plus what
    /// is committed on an output shard but still locked on an input shard.
    fn check_conservation(&mut self, shard: ShardId, h: Height) {
        let total: u128 = self.supply.iter().map(|&x| x as u128).sum();
        let in_flight: u128 = self.crosses.values().map(|c| c.in_flight() as u128).sum();
        let expected = self.genesis_supply as u128 + in_flight;
        if total != expected {
            self.violation(format!(
                "IOST not conserved after shard {shard} height {h}: {total} on all shards, expected {expected} ({} at genesis + {in_flight} in flight)",
                self.genesis_supply
            ));
        }
    }

    /// Records the Atomix outcomes of a newly finalized block.
    fn observe_atomix(&mut self, shard: ShardId, cb: &crate::replica::CommittedBlock) {
        for (index, r) in cb.receipts.iter().enumerate() {
            if r.status != crate::block::ReceiptStatus::Success {
                continue;
            }
            for e in &r.events {
                if e.module != 0 {
                    continue;
                }
                if e.kind == "atomix_unlock" {
                    if let Ok((x, input, _)) = crate::codec::decode::<(Hash, u32, InputState)>(
                        "unlock event",
                        &e.data,
                        4096,
                    ) {
                        if let Some(c) = self.crosses.get_mut(&x) {
                            if let Some(u) = c.unlocked.get_mut(input as usize) {
                                *u = true;
                                c.progressed = self.now;
                            }
                        }
                    }
                    continue;
                }
                if e.kind != crate::atomix::EVENT {
                    continue;
                }
                let Ok(outcome) = crate::codec::decode::<Outcome>("atomix event", &e.data, 4096)
                else {
                    continue;
                };
                let x = match &outcome {
                    Outcome::Accepted { x, .. }
                    | Outcome::Rejected { x, .. }
                    | Outcome::Committed { x } => *x,
                };
                let Some(c) = self.crosses.get_mut(&x) else {
                    continue;
                };
                let Some(proof) =
                    ReceiptProof::new(&cb.block.header, &cb.cert, &cb.receipts, index)
                else {
                    continue;
                };
                let from_lock = c.lock_ids.contains(&r.tx);
                c.progressed = self.now;
                match outcome {
                    Outcome::Accepted { input, .. } => {
                        if let Some(a) = c.accepted.get_mut(input as usize) {
                            *a = Some(proof);
                        }
                    }
                    Outcome::Rejected { .. } if from_lock => c.rejection = Some(proof),
                    Outcome::Rejected { .. } if shard == c.x.output_shard => {
                        c.decision = Some((Decision::Rejected, proof));
                    }
                    Outcome::Committed { .. } if shard == c.x.output_shard => {
                        c.decision = Some((Decision::Committed, proof));
                    }
                    _ => {}
                }
            }
        }
    }

    /// Relayer `from` carries every step a transfer is waiting for: the
    /// commit (or rejection) to the output shard, the abort after expiry,
    /// the unlocks to the input shards. A Byzantine relayer drops the proofs,
    /// or sends forged or replayed ones, which every shard must refuse.
    fn relay_atomix(&mut self, from: usize) {
        if self.cfg.shards == 0 || self.crosses.is_empty() {
            return;
        }
        let byzantine = !self.healed && self.byzantine.iter().any(|(_, _, i)| *i == from);
        let mut sends: Vec<(ShardId, LedgerCall)> = Vec::new();
        let now = self.now;
        let heights: Vec<Height> = (0..=self.cfg.shards).map(|s| self.max_height(s)).collect();
        for c in self.crosses.values_mut().filter(|c| !c.terminal()) {
            // New progress is relayed at once, anything else once a second.
            let progress = c.progress();
            if c.relayed
                .is_some_and(|(t, p)| p == progress && now < t + 1_000)
            {
                continue;
            }
            c.relayed = Some((now, progress));
            let c = &*c;
            let x = Box::new(c.x.clone());
            match &c.decision {
                None => {
                    if let Some(p) = &c.rejection {
                        sends.push((
                            c.x.output_shard,
                            LedgerCall::AtomixCommit {
                                x,
                                proofs: vec![p.clone()],
                            },
                        ));
                    } else if c.accepted.iter().all(Option::is_some) {
                        let proofs = c.accepted.iter().flatten().cloned().collect();
                        sends.push((c.x.output_shard, LedgerCall::AtomixCommit { x, proofs }));
                    } else if heights[c.x.output_shard as usize] > c.x.expires_at {
                        sends.push((c.x.output_shard, LedgerCall::AtomixAbort { x }));
                    }
                }
                Some((_, proof)) => {
                    for (i, input) in c.x.inputs.iter().enumerate() {
                        if c.accepted[i].is_some() && !c.unlocked[i] {
                            sends.push((
                                input.shard,
                                LedgerCall::AtomixUnlock {
                                    x: x.clone(),
                                    input: i as u32,
                                    proof: Box::new(proof.clone()),
                                },
                            ));
                        }
                    }
                }
            }
        }
        // One message of transactions per shard; half the time the steps
        // for a shard go as relay batches (proofs sharing blocks and receipts).
        let mut calls: BTreeMap<ShardId, Vec<LedgerCall>> = BTreeMap::new();
        for (shard, mut call) in sends {
            if byzantine {
                if self.rng.chance(500_000) {
                    self.report.relays_dropped += 1;
                    continue;
                }
                self.forge(&mut call);
                self.report.forged_proofs += 1;
            }
            calls.entry(shard).or_default().push(call);
        }
        let mut batches: BTreeMap<ShardId, Vec<SignedTransaction>> = BTreeMap::new();
        for (shard, calls) in calls {
            let calls = if self.rng.chance(500_000) {
                let steps: Vec<Step> = calls.iter().cloned().filter_map(step_of).collect();
                // A forged proof may not fit its block's tree: send those singly.
                match RelayBatch::pack(steps, crate::atomix::RELAY_BATCH_BYTES) {
                    Ok(packed) => packed
                        .into_iter()
                        .map(|b| LedgerCall::AtomixBatch(Box::new(b)))
                        .collect(),
                    Err(_) => calls,
                }
            } else {
                calls
            };
            for call in calls {
                let tx = self.relay_tx(from, shard, &call);
                batches.entry(shard).or_default().push(tx);
            }
        }
        for (shard, mut txs) in batches {
            // The epoch changes the shard still misses go first: a proof from
            // a newer epoch waits for them at the replica.
            let missing: Vec<Arc<EpochChange>> = self
                .changes
                .range(self.shard_epoch[shard as usize] + 1..)
                .map(|(_, c)| c.clone())
                .collect();
            if shard != BEACON && !missing.is_empty() {
                let mut updates: Vec<SignedTransaction> = missing
                    .iter()
                    .map(|c| {
                        let call = LedgerCall::BeaconUpdate(Box::new((**c).clone()));
                        self.relay_tx(from, shard, &call)
                    })
                    .collect();
                updates.append(&mut txs);
                txs = updates;
            }
            let msg = Arc::new(Message::Txs(txs));
            let mut targets = self.peers(shard, from);
            if self.nodes[from].replicas.contains_key(&shard) {
                targets.push(from);
            }
            for to in targets {
                self.send(from, to, shard, msg.clone());
            }
        }
    }

    /// A Byzantine relayer's forgery: a tampered certificate, or a proof
    /// replayed from another transfer.
    fn forge(&mut self, call: &mut LedgerCall) {
        let other: Option<ReceiptProof> = self
            .crosses
            .values()
            .filter_map(|c| c.accepted.iter().flatten().next().cloned())
            .next();
        let tamper = |p: &mut ReceiptProof| {
            if let Some((_, sig)) = p.cert.signatures.first_mut() {
                sig.0[0] ^= 1;
            }
        };
        let replay = self.rng.chance(500_000);
        match call {
            LedgerCall::AtomixCommit { proofs, .. } => {
                if let (true, Some(o), Some(first)) = (replay, other, proofs.first_mut()) {
                    *first = o;
                } else if let Some(first) = proofs.first_mut() {
                    tamper(first);
                }
            }
            LedgerCall::AtomixUnlock { proof, .. } => match (replay, other) {
                (true, Some(o)) => **proof = o,
                _ => tamper(proof),
            },
            _ => {}
        }
    }

    /// An honest node, even across crashes and restarts, never signs two
    /// different votes or proposals for one step of a shard.
    fn check_no_equivocation(&mut self, node: usize, shard: ShardId, msg: &Message) {
        let (step, block) = match msg {
            Message::Vote(v) => {
                let w = &v.vote;
                ((w.height, w.round, w.kind as u8), w.block)
            }
            Message::Proposal { proposal, .. } => {
                let p = &proposal.proposal;
                ((p.height, p.round, 2u8), Some(p.block))
            }
            _ => return,
        };
        let signed = self.signed.entry((node, shard)).or_default();
        match signed.get(&step) {
            Some(first) if *first != block => {
                let message = format!(
                    "honest node {node} signed two different messages for shard {shard} height {} round {} ({}): {first:?} and {block:?}",
                    step.0,
                    step.1,
                    ["prevote", "precommit", "proposal"][step.2 as usize]
                );
                // Report each conflict once, not on every re-send.
                signed.insert(step, block);
                self.violation(message);
            }
            Some(_) => {}
            None => {
                signed.insert(step, block);
            }
        }
    }

    fn send(&mut self, from: usize, to: usize, shard: ShardId, msg: Arc<Message>) {
        // A Byzantine member serves tampered snapshot chunks half the time.
        let msg = match msg.as_ref() {
            Message::Chunk { height, chunk }
                if !self.healed
                    && !chunk.entries.is_empty()
                    && self.is_byzantine(from, shard)
                    && self.rng.chance(500_000) =>
            {
                let mut chunk = chunk.clone();
                chunk.entries[0].1.push(0xff);
                self.report.forged_chunks += 1;
                Arc::new(Message::Chunk {
                    height: *height,
                    chunk,
                })
            }
            _ => msg,
        };
        let faults = if self.healed {
            Faults::default()
        } else {
            self.cfg.faults
        };
        if let Some(side) = &self.partition {
            if side.contains(&from) != side.contains(&to) {
                self.report.dropped += 1;
                return;
            }
        }
        if faults.loss && self.rng.chance(50_000) {
            self.report.dropped += 1;
            return;
        }
        let mut delay = self.rng.range(1, 10);
        if faults.delay {
            delay += self.rng.range(0, 150);
        }
        if faults.reorder && self.rng.chance(100_000) {
            delay += self.rng.range(50, 400);
        }
        if faults.duplicate && self.rng.chance(30_000) {
            let d2 = delay + self.rng.range(1, 200);
            self.push(
                self.now + d2,
                Ev::Deliver {
                    to,
                    from,
                    shard,
                    msg: msg.clone(),
                },
            );
        }
        self.push(
            self.now + delay,
            Ev::Deliver {
                to,
                from,
                shard,
                msg,
            },
        );
    }

    /// A Byzantine member sends one version of each proposal and vote to half
    /// its peers and a conflicting, validly signed one to the other half.
    fn equivocate(&mut self, from: usize, shard: ShardId, msg: &Arc<Message>) {
        let key = self.nodes[from].key.clone();
        let twin: Option<Arc<Message>> = match msg.as_ref() {
            Message::Vote(v) => {
                let mut vote = v.vote.clone();
                vote.block = match vote.block {
                    Some(_) => None,
                    None => Some(hash_tagged(
                        "ios/sim-bogus",
                        &self.rng.next_u64().to_le_bytes(),
                    )),
                };
                Some(Arc::new(Message::Vote(SignedVote::new(vote, &key))))
            }
            Message::Proposal {
                proposal,
                block,
                pol,
            } => {
                let mut b = (**block).clone();
                b.header.time += 1;
                let mut p = proposal.proposal.clone();
                p.block = b.hash();
                Some(Arc::new(Message::Proposal {
                    proposal: SignedProposal::new(p, &key),
                    block: Arc::new(b),
                    pol: pol.clone(),
                }))
            }
            _ => None,
        };
        for to in self.peers(shard, from) {
            let m = match &twin {
                Some(t) if self.rng.chance(500_000) => t.clone(),
                _ => msg.clone(),
            };
            self.send(from, to, shard, m);
        }
    }

    fn fault(&mut self) -> Result<()> {
        let faults = self.cfg.faults;
        let n = self.nodes.len();
        let f = crate::shard::max_faulty(self.cfg.validators);
        let crashed = self.nodes.iter().filter(|x| !x.up).count();
        let choice = self.rng.below(2);
        if faults.partition && (choice == 0 || !faults.crash) && self.partition.is_none() && n > 1 {
            let mut side = BTreeSet::new();
            let size = self.rng.range(1, (n / 2) as u64) as usize;
            while side.len() < size {
                side.insert(self.rng.below(n as u64) as usize);
            }
            self.partition = Some(side);
            self.report.partitions += 1;
            let until = self.now + self.rng.range(500, 3_000);
            self.push(until, Ev::HealPartition);
        } else if faults.crash && crashed < f.max(1) {
            let byzantine: BTreeSet<usize> = self.byzantine.iter().map(|(_, _, i)| *i).collect();
            let honest: Vec<usize> = (0..n)
                .filter(|&i| self.nodes[i].up && !byzantine.contains(&i))
                .collect();
            if honest.is_empty() {
                return Ok(());
            }
            let i = honest[self.rng.below(honest.len() as u64) as usize];
            if self.rng.chance(500_000) {
                // Crash right after its next own vote, and come back at once,
                // into the round it was voting in: where a vote forgotten by
                // the restart would turn into equivocation.
                self.nodes[i].crash_after_vote = true;
            } else {
                let down = self.rng.range(500, 4_000);
                self.crash(i, down);
            }
        }
        Ok(())
    }

    /// Dropping a node's replicas and their sled handles is the crash; only
    /// what reached its data directories survives. It restarts `down` ms later.
    /// One step of node `i`'s fast sync of `shard`: ask peers, or, once
    /// every chunk is in, restore the store and start the replica on it; if
    /// no peer has a snapshot, start from genesis.
    fn sync_step(&mut self, i: usize, shard: ShardId) -> Result<()> {
        if !self.nodes[i].up {
            return Ok(());
        }
        let peers: Vec<PeerId> = self
            .peers(shard, i)
            .into_iter()
            .map(|j| PeerId(j as u64))
            .collect();
        let now = self.now;
        let Some(mut fs) = self.nodes[i].syncing.remove(&shard) else {
            return Ok(());
        };
        match fs.progress() {
            Progress::Running => {
                let out = fs.tick(now, &peers);
                self.nodes[i].syncing.insert(shard, fs);
                for (p, m) in out {
                    self.send(i, p.0 as usize, shard, m);
                }
                self.push(now + 200, Ev::SyncTick(i, shard));
                Ok(())
            }
            Progress::Complete => {
                self.report.refused_chunks += fs.refused;
                self.report.superseded_snapshots += fs.superseded + fs.abandoned;
                let db = open_db(&self.nodes[i].dir.join(format!("shard-{shard}")))?;
                fs.restore(&db)?;
                self.report.fast_syncs += 1;
                self.start_replica(i, shard, &db)
            }
            Progress::NoSnapshot => {
                self.report.refused_chunks += fs.refused;
                self.report.fast_sync_fallbacks += 1;
                let db = open_db(&self.nodes[i].dir.join(format!("shard-{shard}")))?;
                self.start_replica(i, shard, &db)
            }
        }
    }

    fn crash(&mut self, i: usize, down: TimeMs) {
        let node = &mut self.nodes[i];
        node.crash_after_vote = false;
        node.up = false;
        node.replicas.clear();
        node.syncing.clear();
        node.next_tick.clear();
        self.report.crashes += 1;
        self.push(self.now + down, Ev::Restart(i));
    }

    fn restart(&mut self, i: usize) -> Result<()> {
        if self.nodes[i].up {
            return Ok(());
        }
        self.nodes[i].up = true;
        for s in self.needed_shards(i) {
            self.open_replica(i, s)?;
        }
        Ok(())
    }

    /// Offers signed transfers (and some bad ones) between users of one
    /// shard, each to a random live node that serves the sender's shard.
    fn load(&mut self) -> Result<()> {
        let per_tick = (self.cfg.load_tps as u64 * 50 / 1000).max(1);
        let chain_id = self.genesis.params.chain_id.clone();
        let shards = self.cfg.shards;
        for _ in 0..per_tick {
            if self.users.is_empty() {
                break;
            }
            let u = self.rng.below(self.users.len() as u64) as usize;
            let sender = self.users[u].address();
            let home = crate::shard::home_shard(&sender, shards);
            let same: Vec<usize> = (0..self.users.len())
                .filter(|&v| crate::shard::home_shard(&self.users[v].address(), shards) == home)
                .collect();
            let to = self.users[same[self.rng.below(same.len() as u64) as usize]].address();
            let live: Vec<usize> = (0..self.nodes.len())
                .filter(|&i| self.nodes[i].replicas.contains_key(&home))
                .collect();
            let Some(&observer) = live.iter().find(|&&i| !self.is_byzantine(i, home)) else {
                continue;
            };
            let (committed, height) = {
                let r = &self.nodes[observer].replicas[&home];
                (
                    crate::committee::read_account(r.store(), &sender)?.nonce,
                    r.height(),
                )
            };
            if committed > self.user_nonce[u] || self.user_nonce[u] == committed {
                self.user_nonce[u] = committed;
                self.user_last_progress[u] = self.now;
            } else if self.now > self.user_last_progress[u] + 3_000 {
                // Submissions were lost (a node crashed before gossiping): resend from the committed nonce.
                self.user_nonce[u] = committed;
                self.user_last_progress[u] = self.now;
            }
            let kind = self.rng.below(100);
            // A third of the load, in a sharded network, crosses shards.
            let mut cross = None;
            let call = match kind {
                _ if shards > 0 && kind >= 67 => {
                    let v = &self.users[self.rng.below(self.users.len() as u64) as usize];
                    let output_shard = crate::shard::home_shard(&v.address(), shards);
                    let x = CrossTransfer {
                        inputs: vec![CrossInput {
                            shard: home,
                            from: sender,
                            amount: self.rng.range(1, 10_000),
                        }],
                        output_shard,
                        to: v.address(),
                        expires_at: self.max_height(output_shard) + 30,
                        salt: self.rng.next_u64(),
                        call: None,
                    };
                    cross = Some(x.clone());
                    LedgerCall::AtomixLock {
                        x: Box::new(x),
                        input: 0,
                    }
                }
                0..=1 => LedgerCall::Transfer {
                    to,
                    amount: 1,
                    token: Token::Servi,
                },
                2..=3 => LedgerCall::Transfer {
                    to,
                    amount: Amount::MAX,
                    token: Token::Iost,
                },
                4..=5 => LedgerCall::Stake {
                    amount: self.rng.range(1, 1_000) * UNITS_PER_IOST,
                },
                6 => LedgerCall::Unstake {
                    amount: self.rng.range(1, 500) * UNITS_PER_IOST,
                },
                _ => LedgerCall::Transfer {
                    to,
                    amount: self.rng.range(1, 10_000),
                    token: Token::Iost,
                },
            };
            let tx = Transaction {
                chain_id: chain_id.clone(),
                shard: home,
                sender,
                nonce: self.user_nonce[u],
                fee: 1_000,
                expires_at: height + 200,
                call: LedgerModule::call(&call),
            };
            let mut signed: SignedTransaction = tx.sign(&self.users[u]);
            let corrupt = self.rng.below(100);
            if corrupt < 2 {
                signed.signature.0[0] ^= 1;
            } else if corrupt < 3 {
                signed.tx.chain_id = crate::types::ChainId("other-chain".into());
            } else if corrupt < 4 {
                // Validly signed, but for another shard: refused here.
                let mut other = signed.tx.clone();
                other.shard = home.wrapping_add(1);
                signed = other.sign(&self.users[u]);
            } else {
                self.user_nonce[u] += 1;
                if let Some(x) = cross {
                    self.report.cross_started += 1;
                    self.crosses.insert(
                        x.id(),
                        Cross {
                            lock_ids: vec![signed.id()],
                            accepted: vec![None; x.inputs.len()],
                            rejection: None,
                            decision: None,
                            unlocked: vec![false; x.inputs.len()],
                            relayed: None,
                            progressed: self.now,
                            created: self.now,
                            x,
                        },
                    );
                }
            }
            let target = live[self.rng.below(live.len() as u64) as usize];
            let now = self.now;
            let Some(r) = self.nodes[target].replicas.get_mut(&home) else {
                continue;
            };
            let (results, out) = r.submit(vec![signed], now);
            self.report.rejected_submissions +=
                results.iter().filter(|r| r.is_err()).count() as u64;
            self.route(target, home, out)?;
            self.schedule_tick(target, home);
        }
        Ok(())
    }
}

/// The Atomix step a single relay call carries.
fn step_of(call: LedgerCall) -> Option<Step> {
    match call {
        LedgerCall::AtomixCommit { x, proofs } => Some(Step::Commit { x: *x, proofs }),
        LedgerCall::AtomixAbort { x } => Some(Step::Abort { x: *x }),
        LedgerCall::AtomixUnlock { x, input, proof } => Some(Step::Unlock {
            x: *x,
            input,
            proof,
        }),
        _ => None,
    }
}
