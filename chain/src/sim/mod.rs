//! The deterministic simulator: n validator replicas on virtual time, a
//! seeded scheduler, and a network that loses, delays, duplicates and
//! reorders messages, partitions and heals, crashes nodes and restarts them
//! from their own sled directories, while up to f members equivocate.
//!
//! After every step it checks: no two different finalized blocks at one
//! height, IOST supply conserved, equal state roots at equal heights; and at
//! the end, after every fault heals, that the chain made progress. A run is a
//! pure function of its seed: `ios sim --seed N` replays it exactly.

mod rng;

pub use rng::SimRng;

use crate::block::{Block, SignedProposal, SignedVote};
use crate::crypto::Keypair;
use crate::error::{ChainError, Result};
use crate::execute::{total_supply, Runtime};
use crate::hash::{hash_tagged, DomainHasher, Hash};
use crate::ledger::{LedgerCall, LedgerModule, Token};
use crate::message::{Message, PeerId};
use crate::params::{ChainParams, Genesis};
use crate::replica::{Output, Replica, ReplicaConfig};
use crate::tx::{SignedTransaction, Transaction};
use crate::types::{Amount, Height, TimeMs, UNITS_PER_IOST};
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
    pub validators: usize,
    pub faults: Faults,
    /// Virtual time with faults active.
    pub run_ms: TimeMs,
    /// Virtual time after every fault has healed, in which progress is required.
    pub heal_ms: TimeMs,
    /// Transactions per virtual second offered by the load generator.
    pub load_tps: u32,
    pub users: usize,
    /// Blocks each honest node must finalize after healing.
    pub min_progress: Height,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            validators: 4,
            faults: Faults::all(),
            run_ms: 12_000,
            heal_ms: 8_000,
            load_tps: 100,
            users: 12,
            min_progress: 3,
        }
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
    /// Highest height finalized by any honest node.
    pub finalized: Height,
    pub txs: u64,
    pub failed_receipts: u64,
    pub rejected_submissions: u64,
    pub messages: u64,
    pub dropped: u64,
    pub crashes: u32,
    pub partitions: u32,
    pub byzantine: usize,
    pub slashed: u64,
    /// Highest epoch an honest node reached (each change ran a randomness round).
    pub epochs: u64,
    pub violations: Vec<Violation>,
    /// Digest of every finalized block in order: equal digests mean equal runs.
    pub trace: Hash,
    pub virtual_ms: TimeMs,
}

enum Ev {
    Deliver {
        to: usize,
        from: usize,
        msg: Arc<Message>,
    },
    Tick(usize),
    Load,
    Fault,
    Restart(usize),
    HealPartition,
    Heal,
}

struct Node {
    key: Keypair,
    dir: PathBuf,
    replica: Option<Replica>,
    byzantine: bool,
    next_tick: TimeMs,
}

struct Sim<'a> {
    cfg: &'a SimConfig,
    rng: SimRng,
    now: TimeMs,
    seq: u64,
    queue: BinaryHeap<Reverse<(TimeMs, u64)>>,
    events: BTreeMap<u64, Ev>,
    nodes: Vec<Node>,
    genesis: Genesis,
    runtime: Runtime,
    replica_config: ReplicaConfig,
    supply: Amount,
    users: Vec<Keypair>,
    user_nonce: Vec<u64>,
    user_last_progress: Vec<TimeMs>,
    partition: Option<BTreeSet<usize>>,
    /// Nodes to crash right after they broadcast their next vote.
    crash_after_vote: Vec<bool>,
    /// Per node: what it signed for each (height, round, step).
    signed: Vec<BTreeMap<(Height, u32, u8), Option<Hash>>>,
    healed: bool,
    finalized: BTreeMap<Height, (Hash, Hash)>,
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

/// Byzantine members also withhold their randomness reveals, so every run
/// with them checks that the beacon's output does not depend on them.
fn node_config(base: &ReplicaConfig, byzantine: bool) -> ReplicaConfig {
    ReplicaConfig {
        reveal_randomness: !byzantine,
        ..base.clone()
    }
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
        let mut rng = SimRng::new(seed);
        let keys: Vec<Keypair> = (0..cfg.validators as u64)
            .map(|i| Keypair::from_seed("sim-validator", i))
            .collect();
        let users: Vec<Keypair> = (0..cfg.users as u64)
            .map(|i| Keypair::from_seed("sim-user", i))
            .collect();
        let params = sim_params(cfg.validators);
        let genesis = sim_genesis(params.clone(), &keys, &users);
        let supply = genesis.total_supply()?;
        let runtime = Runtime::new(params);
        let f = (cfg.validators - 1) / 3;
        let byzantine: BTreeSet<usize> = if cfg.faults.byzantine && f > 0 {
            let count = rng.range(1, f as u64) as usize;
            let mut set = BTreeSet::new();
            while set.len() < count {
                set.insert(rng.below(cfg.validators as u64) as usize);
            }
            set
        } else {
            BTreeSet::new()
        };
        let replica_config = ReplicaConfig {
            timeout_propose_ms: 500,
            timeout_prevote_ms: 250,
            timeout_precommit_ms: 250,
            timeout_delta_ms: 100,
            min_block_interval_ms: 100,
            gossip_interval_ms: 250,
            durable: false,
            index_txs: true,
            reveal_randomness: true,
            mempool: Default::default(),
        };
        let mut nodes = Vec::new();
        for (i, key) in keys.into_iter().enumerate() {
            let ndir = dir.join(format!("node-{i}"));
            let db = open_db(&ndir)?;
            let replica = Replica::open(
                &db,
                key.clone(),
                runtime.clone(),
                &genesis,
                node_config(&replica_config, byzantine.contains(&i)),
                0,
            )?;
            nodes.push(Node {
                key,
                dir: ndir,
                replica: Some(replica),
                byzantine: byzantine.contains(&i),
                next_tick: TimeMs::MAX,
            });
        }
        let n_users = users.len();
        let mut sim = Sim {
            cfg,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            nodes,
            genesis,
            runtime,
            replica_config,
            supply,
            users,
            user_nonce: vec![0; n_users],
            user_last_progress: vec![0; n_users],
            partition: None,
            signed: vec![BTreeMap::new(); cfg.validators],
            crash_after_vote: vec![false; cfg.validators],
            healed: false,
            finalized: BTreeMap::new(),
            trace: DomainHasher::new("ios/sim-trace"),
            report: SimReport {
                seed,
                byzantine: byzantine.len(),
                ..Default::default()
            },
        };
        for i in 0..sim.nodes.len() {
            sim.schedule_tick(i);
        }
        sim.push(0, Ev::Load);
        if cfg.faults.partition || cfg.faults.crash {
            let t = sim.rng.range(500, 2_000);
            sim.push(t, Ev::Fault);
        }
        sim.push(cfg.run_ms, Ev::Heal);
        Ok(sim)
    }

    fn push(&mut self, at: TimeMs, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.events.insert(self.seq, ev);
    }

    fn schedule_tick(&mut self, i: usize) {
        let Some(r) = &self.nodes[i].replica else {
            return;
        };
        let at = r.next_deadline().max(self.now);
        if at < self.nodes[i].next_tick || self.nodes[i].next_tick < self.now {
            self.nodes[i].next_tick = at;
            self.push(at, Ev::Tick(i));
        }
    }

    fn run(mut self) -> Result<SimReport> {
        let end = self.cfg.run_ms + self.cfg.heal_ms;
        let mut heal_height = None;
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
                Ev::Tick(i) => {
                    if self.nodes[i].next_tick != at {
                        continue;
                    }
                    self.nodes[i].next_tick = TimeMs::MAX;
                    if let Some(r) = self.nodes[i].replica.as_mut() {
                        let out = r.tick(at)?;
                        self.route(i, out)?;
                    }
                    self.schedule_tick(i);
                }
                Ev::Deliver { to, from, msg } => {
                    self.report.messages += 1;
                    let Some(r) = self.nodes[to].replica.as_mut() else {
                        self.report.dropped += 1;
                        continue;
                    };
                    // A rejected message is the sender's fault (Byzantine) or stale; the replica logs it.
                    let out = r.handle(PeerId(from as u64), &msg, at).unwrap_or_default();
                    self.route(to, out)?;
                    self.schedule_tick(to);
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
                Ev::Restart(i) => self.restart(i)?,
                Ev::HealPartition => self.partition = None,
                Ev::Heal => {
                    self.healed = true;
                    self.partition = None;
                    for i in 0..self.nodes.len() {
                        if self.nodes[i].replica.is_none() {
                            self.restart(i)?;
                        }
                    }
                    heal_height = Some(self.max_honest_height());
                    heal_epoch = self.max_honest_epoch();
                }
            }
        }
        self.now = end;
        let heal_height = heal_height.unwrap_or(0);
        for (i, n) in self.nodes.iter().enumerate() {
            if n.byzantine {
                continue;
            }
            let committed = n.replica.as_ref().map(|r| r.height() - 1).unwrap_or(0);
            if committed < heal_height + self.cfg.min_progress {
                self.report.violations.push(Violation {
                    time: end,
                    message: format!(
                        "no progress after healing: node {i} finalized {committed}, needed {}",
                        heal_height + self.cfg.min_progress
                    ),
                });
            }
        }
        // The randomness beacon must stay live too: withheld reveals (the
        // Byzantine members') may not stop epochs from changing after healing.
        let epochs = self.max_honest_epoch();
        let after_heal = self.max_honest_height().saturating_sub(heal_height);
        if after_heal >= 3 * self.genesis.params.epoch_length && epochs <= heal_epoch {
            self.report.violations.push(Violation {
                time: end,
                message: format!(
                    "no epoch change in {after_heal} blocks after healing (stuck in epoch {epochs}): the randomness round did not complete"
                ),
            });
        }
        self.report.epochs = epochs;
        self.report.finalized = self.finalized.keys().next_back().copied().unwrap_or(0);
        self.report.trace = self.trace.finalize();
        self.report.virtual_ms = end;
        Ok(self.report)
    }

    fn max_honest_epoch(&self) -> u64 {
        self.nodes
            .iter()
            .filter(|n| !n.byzantine)
            .filter_map(|n| n.replica.as_ref())
            .map(|r| r.committee().epoch)
            .max()
            .unwrap_or(0)
    }

    fn max_honest_height(&self) -> Height {
        self.nodes
            .iter()
            .filter(|n| !n.byzantine)
            .filter_map(|n| n.replica.as_ref().map(|r| r.height() - 1))
            .max()
            .unwrap_or(0)
    }

    fn violation(&mut self, message: String) {
        self.report.violations.push(Violation {
            time: self.now,
            message,
        });
    }

    /// Sends a replica's outputs through the faulty network and checks every commit.
    fn route(&mut self, from: usize, outputs: Vec<Output>) -> Result<()> {
        for out in outputs {
            match out {
                Output::Broadcast(msg) => {
                    if self.nodes[from].byzantine {
                        self.equivocate(from, &msg);
                        continue;
                    }
                    self.check_no_equivocation(from, &msg);
                    if self.crash_after_vote[from] && matches!(msg.as_ref(), Message::Vote(_)) {
                        // The vote leaves, then the node dies mid-step.
                        for to in 0..self.nodes.len() {
                            if to != from {
                                self.send(from, to, msg.clone());
                            }
                        }
                        let down = self.rng.range(1, 30);
                        self.crash(from, down);
                        return Ok(());
                    }
                    for to in 0..self.nodes.len() {
                        if to != from {
                            self.send(from, to, msg.clone());
                        }
                    }
                }
                Output::Send(peer, msg) => {
                    let to = peer.0 as usize;
                    if to < self.nodes.len() && to != from {
                        self.send(from, to, msg);
                    }
                }
                Output::Committed(cb) => {
                    if self.nodes[from].byzantine {
                        continue;
                    }
                    self.check_commit(from, &cb.block, cb.state_root, &cb.receipts)?;
                }
            }
        }
        Ok(())
    }

    fn check_commit(
        &mut self,
        node: usize,
        block: &Block,
        root: Hash,
        receipts: &[crate::block::Receipt],
    ) -> Result<()> {
        let h = block.header.height;
        let hash = block.hash();
        let Some(replica) = self.nodes[node].replica.as_ref() else {
            return Ok(());
        };
        let supply = total_supply(replica.store())?;
        if root != block.header.state_root {
            self.violation(format!(
                "node {node} state root {root} differs from its block's at height {h}"
            ));
        }
        if supply != self.supply {
            self.violation(format!(
                "IOST supply changed on node {node} at height {h}: {supply} != {}",
                self.supply
            ));
        }
        match self.finalized.get(&h).copied() {
            Some((other, other_root)) => {
                if other != hash {
                    self.violation(format!(
                        "two different blocks finalized at height {h}: {other} and {hash}"
                    ));
                }
                if other_root != root {
                    self.violation(format!(
                        "state roots differ at height {h}: {other_root} vs {root} (node {node})"
                    ));
                }
            }
            None => {
                self.finalized.insert(h, (hash, root));
                self.trace.update(&h.to_le_bytes()).update(&hash.0);
                self.report.txs += block.txs.len() as u64;
                for r in receipts {
                    if matches!(r.status, crate::block::ReceiptStatus::Failed { .. }) {
                        self.report.failed_receipts += 1;
                    }
                    self.report.slashed +=
                        r.events.iter().filter(|e| e.kind == "slashed").count() as u64;
                }
            }
        }
        Ok(())
    }

    /// An honest node, even across crashes and restarts, never signs two
    /// different votes or proposals for one step.
    fn check_no_equivocation(&mut self, node: usize, msg: &Message) {
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
        match self.signed[node].get(&step) {
            Some(first) if *first != block => {
                let message = format!(
                    "honest node {node} signed two different messages for height {} round {} ({}): {first:?} and {block:?}",
                    step.0,
                    step.1,
                    ["prevote", "precommit", "proposal"][step.2 as usize]
                );
                self.violation(message);
                // Report each conflict once, not on every re-send.
                self.signed[node].insert(step, block);
            }
            Some(_) => {}
            None => {
                self.signed[node].insert(step, block);
            }
        }
    }

    fn send(&mut self, from: usize, to: usize, msg: Arc<Message>) {
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
                    msg: msg.clone(),
                },
            );
        }
        self.push(self.now + delay, Ev::Deliver { to, from, msg });
    }

    /// A Byzantine member sends one version of each proposal and vote to half
    /// its peers and a conflicting, validly signed one to the other half.
    fn equivocate(&mut self, from: usize, msg: &Arc<Message>) {
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
        for to in 0..self.nodes.len() {
            if to == from {
                continue;
            }
            let m = match &twin {
                Some(t) if self.rng.chance(500_000) => t.clone(),
                _ => msg.clone(),
            };
            self.send(from, to, m);
        }
    }

    fn fault(&mut self) -> Result<()> {
        let faults = self.cfg.faults;
        let n = self.nodes.len();
        let f = (n - 1) / 3;
        let crashed = self.nodes.iter().filter(|x| x.replica.is_none()).count();
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
            let honest: Vec<usize> = (0..n)
                .filter(|&i| !self.nodes[i].byzantine && self.nodes[i].replica.is_some())
                .collect();
            if honest.is_empty() {
                return Ok(());
            }
            let i = honest[self.rng.below(honest.len() as u64) as usize];
            if self.rng.chance(500_000) {
                // Crash right after its next own vote, and come back at once,
                // into the round it was voting in: where a vote forgotten by
                // the restart would turn into equivocation.
                self.crash_after_vote[i] = true;
            } else {
                let down = self.rng.range(500, 4_000);
                self.crash(i, down);
            }
        }
        Ok(())
    }

    /// Dropping the replica and its sled handle is the crash; only what
    /// reached its data directory survives. It restarts `down` ms later.
    fn crash(&mut self, i: usize, down: TimeMs) {
        self.crash_after_vote[i] = false;
        self.nodes[i].replica = None;
        self.nodes[i].next_tick = TimeMs::MAX;
        self.report.crashes += 1;
        self.push(self.now + down, Ev::Restart(i));
    }

    fn restart(&mut self, i: usize) -> Result<()> {
        if self.nodes[i].replica.is_some() {
            return Ok(());
        }
        let db = open_db(&self.nodes[i].dir)?;
        let replica = Replica::open(
            &db,
            self.nodes[i].key.clone(),
            self.runtime.clone(),
            &self.genesis,
            node_config(&self.replica_config, self.nodes[i].byzantine),
            self.now,
        )?;
        self.nodes[i].replica = Some(replica);
        self.nodes[i].next_tick = TimeMs::MAX;
        self.schedule_tick(i);
        Ok(())
    }

    /// Offers signed transfers (and some bad ones) to random live nodes.
    fn load(&mut self) -> Result<()> {
        let per_tick = (self.cfg.load_tps as u64 * 50 / 1000).max(1);
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].replica.is_some())
            .collect();
        let Some(&observer) = live.iter().find(|&&i| !self.nodes[i].byzantine) else {
            return Ok(());
        };
        let chain_id = self.genesis.params.chain_id.clone();
        for _ in 0..per_tick {
            if self.users.is_empty() {
                break;
            }
            let u = self.rng.below(self.users.len() as u64) as usize;
            let to = self.users[self.rng.below(self.users.len() as u64) as usize].address();
            let sender = self.users[u].address();
            let committed = {
                let r = self.nodes[observer].replica.as_ref().expect("live");
                crate::committee::read_account(r.store(), &sender)?.nonce
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
            let call = match kind {
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
                sender,
                nonce: self.user_nonce[u],
                fee: 1_000,
                expires_at: self.nodes[observer]
                    .replica
                    .as_ref()
                    .expect("live")
                    .height()
                    + 200,
                call: LedgerModule::call(&call),
            };
            let mut signed: SignedTransaction = tx.sign(&self.users[u]);
            let corrupt = self.rng.below(100);
            if corrupt < 2 {
                signed.signature.0[0] ^= 1;
            } else if corrupt < 3 {
                signed.tx.chain_id = crate::types::ChainId("other-chain".into());
            } else {
                self.user_nonce[u] += 1;
            }
            let target = live[self.rng.below(live.len() as u64) as usize];
            let now = self.now;
            let r = self.nodes[target].replica.as_mut().expect("live");
            let (results, out) = r.submit(vec![signed], now);
            self.report.rejected_submissions +=
                results.iter().filter(|r| r.is_err()).count() as u64;
            self.route(target, out)?;
            self.schedule_tick(target);
        }
        Ok(())
    }
}
