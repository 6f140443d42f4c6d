//! Four replicas on their own sled directories, wired by an in-test FIFO
//! network on virtual time: they finalize the same blocks with the same
//! state, a crashed replica reopens from its directory and catches up, and a
//! restarted replica never signs a second, different vote for a step.

use crate::{ledger_tx, open_db};
use ios_chain::block::{ReceiptStatus, SignedVote, VoteKind};
use ios_chain::committee;
use ios_chain::crypto::{Address, Keypair};
use ios_chain::execute::{total_supply, Runtime};
use ios_chain::hash::Hash;
use ios_chain::ledger::{LedgerCall, Token};
use ios_chain::message::{Message, PeerId};
use ios_chain::params::Genesis;
use ios_chain::replica::{Output, Replica, ReplicaConfig};
use ios_chain::sim::{sim_genesis, sim_params};
use ios_chain::tx::SignedTransaction;
use ios_chain::types::{Amount, Height, Round, TimeMs};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

const VALIDATORS: usize = 4;

struct Node {
    key: Keypair,
    dir: PathBuf,
    /// Dropped together with the replica: that is the crash.
    db: Option<sled::Db>,
    replica: Option<Replica>,
    /// How many times the node was (re)opened.
    incarnation: u32,
}

/// A vote a node broadcast, and in which incarnation.
struct SentVote {
    incarnation: u32,
    vote: SignedVote,
}

/// Crash a node right after it broadcasts its own vote of `kind` at `height`
/// or above, for a block someone else proposed: a restarted proposer would
/// re-send its proposal and vote for it again, which hides a lost vote.
struct CrashTrigger {
    node: usize,
    kind: VoteKind,
    height: Height,
}

struct Net {
    genesis: Genesis,
    runtime: Runtime,
    config: ReplicaConfig,
    nodes: Vec<Node>,
    queue: VecDeque<(usize, usize, Arc<Message>)>,
    now: TimeMs,
    /// Per node: height -> (block hash, state root) as reported by `Output::Committed`.
    commits: Vec<BTreeMap<Height, (Hash, Hash)>>,
    /// Per node: every vote it signed and broadcast itself.
    votes: Vec<Vec<SentVote>>,
    /// Messages a replica refused; honest replicas on a clean network send none.
    rejected: u64,
    crash_trigger: Option<CrashTrigger>,
    /// Who proposed each block seen so far.
    proposers: BTreeMap<Hash, Address>,
    /// The vote after which the trigger crashed its node.
    crashed_after: Option<SignedVote>,
    /// Messages to and from this node are lost until the given time.
    isolated: Option<(usize, TimeMs)>,
    _dir: tempfile::TempDir,
}

impl Net {
    fn new(users: &[Keypair]) -> Net {
        Net::with_config(users, ReplicaConfig::default())
    }

    fn with_config(users: &[Keypair], config: ReplicaConfig) -> Net {
        let keys: Vec<Keypair> = (0..VALIDATORS as u64)
            .map(|i| Keypair::from_seed("replica-validator", i))
            .collect();
        let genesis = sim_genesis(sim_params(VALIDATORS), &keys, users);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut net = Net {
            runtime: Runtime::new(genesis.params.clone()),
            genesis,
            config,
            nodes: keys
                .into_iter()
                .enumerate()
                .map(|(i, key)| Node {
                    key,
                    dir: dir.path().join(format!("node-{i}")),
                    db: None,
                    replica: None,
                    incarnation: 0,
                })
                .collect(),
            queue: VecDeque::new(),
            now: 0,
            commits: vec![BTreeMap::new(); VALIDATORS],
            votes: (0..VALIDATORS).map(|_| Vec::new()).collect(),
            rejected: 0,
            crash_trigger: None,
            proposers: BTreeMap::new(),
            crashed_after: None,
            isolated: None,
            _dir: dir,
        };
        for i in 0..VALIDATORS {
            net.open(i);
        }
        net
    }

    /// Opens (or reopens after a crash) node `i` from its directory.
    fn open(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        assert!(node.replica.is_none(), "node {i} is running");
        let db = open_db(&node.dir);
        let replica = Replica::open(
            &db,
            node.key.clone(),
            self.runtime.clone(),
            &self.genesis,
            self.config.clone(),
            self.now,
        )
        .unwrap_or_else(|e| panic!("reopening node {i}: {e}"));
        node.db = Some(db);
        node.replica = Some(replica);
        node.incarnation += 1;
    }

    /// Drops the replica and its database; messages on their way to it are lost.
    fn crash(&mut self, i: usize) {
        self.nodes[i].replica = None;
        self.nodes[i].db = None;
        self.queue.retain(|(_, to, _)| *to != i);
    }

    fn replica(&self, i: usize) -> &Replica {
        self.nodes[i].replica.as_ref().expect("node is running")
    }

    /// Every node has `tx` in a committed block.
    fn final_everywhere(&self, tx: &SignedTransaction) -> bool {
        (0..VALIDATORS).all(|i| {
            self.replica(i)
                .store()
                .tx_location(&tx.id())
                .ok()
                .flatten()
                .is_some()
        })
    }

    /// Last committed height of node `i` (0 while it is down).
    fn height(&self, i: usize) -> Height {
        self.nodes[i].replica.as_ref().map_or(0, |r| r.height() - 1)
    }

    fn min_height(&self) -> Height {
        (0..VALIDATORS).map(|i| self.height(i)).min().unwrap_or(0)
    }

    fn max_height(&self) -> Height {
        (0..VALIDATORS).map(|i| self.height(i)).max().unwrap_or(0)
    }

    fn submit(&mut self, i: usize, txs: Vec<SignedTransaction>) {
        let now = self.now;
        let replica = self.nodes[i].replica.as_mut().expect("node is running");
        let (results, outputs) = replica.submit(txs, now);
        for r in results {
            r.expect("a valid transaction is accepted");
        }
        self.route(i, outputs);
    }

    fn cut_off(&self, a: usize, b: usize) -> bool {
        self.isolated
            .is_some_and(|(n, until)| self.now < until && (a == n || b == n))
    }

    fn route(&mut self, from: usize, outputs: Vec<Output>) {
        let me = self.nodes[from].key.address();
        let incarnation = self.nodes[from].incarnation;
        let mut crash = false;
        for out in outputs {
            match out {
                Output::Broadcast(msg) => {
                    if let Message::Proposal { proposal, .. } = msg.as_ref() {
                        self.proposers
                            .insert(proposal.proposal.block, proposal.proposer);
                    }
                    if let Message::Vote(v) = msg.as_ref() {
                        if v.voter == me {
                            self.votes[from].push(SentVote {
                                incarnation,
                                vote: v.clone(),
                            });
                            if let Some(t) = &self.crash_trigger {
                                let others = v.vote.block.is_some_and(|b| {
                                    self.proposers.get(&b).is_some_and(|p| *p != me)
                                });
                                if t.node == from
                                    && t.kind == v.vote.kind
                                    && v.vote.height >= t.height
                                    && others
                                {
                                    crash = true;
                                    self.crashed_after = Some(v.clone());
                                }
                            }
                        }
                    }
                    for to in (0..VALIDATORS).filter(|&to| to != from) {
                        if !self.cut_off(from, to) {
                            self.queue.push_back((from, to, msg.clone()));
                        }
                    }
                }
                Output::Send(PeerId(to), msg) => {
                    let to = to as usize;
                    if !self.cut_off(from, to) {
                        self.queue.push_back((from, to, msg));
                    }
                }
                Output::Committed(cb) => {
                    let h = cb.block.header.height;
                    assert_eq!(cb.state_root, cb.block.header.state_root);
                    let previous = self.commits[from].insert(h, (cb.block.hash(), cb.state_root));
                    assert_eq!(previous, None, "node {from} committed height {h} twice");
                }
                // One chain: replicas submit evidence themselves.
                Output::Evidence(_) => {}
            }
        }
        if crash {
            self.crash_trigger = None;
            self.crash(from);
        }
    }

    /// Delivers one queued message, or else advances virtual time to the
    /// earliest deadline and ticks every replica that is due.
    fn step(&mut self) {
        if let Some((from, to, msg)) = self.queue.pop_front() {
            let now = self.now;
            if self.cut_off(from, to) {
                return;
            }
            let Some(replica) = self.nodes[to].replica.as_mut() else {
                return;
            };
            match replica.handle(PeerId(from as u64), &msg, now) {
                Ok(outputs) => self.route(to, outputs),
                Err(e) => {
                    self.rejected += 1;
                    eprintln!("node {to} refused a {} from node {from}: {e}", msg.kind());
                }
            }
            return;
        }
        let next = self
            .nodes
            .iter()
            .filter_map(|n| n.replica.as_ref().map(Replica::next_deadline))
            .min()
            .expect("some node is running");
        self.now = self.now.max(next);
        for i in 0..VALIDATORS {
            let now = self.now;
            let Some(replica) = self.nodes[i].replica.as_mut() else {
                continue;
            };
            if replica.next_deadline() <= now {
                let outputs = replica.tick(now).expect("tick");
                self.route(i, outputs);
            }
        }
    }

    /// Runs until `done` holds; fails if that takes more than `budget_ms` of virtual time.
    fn run_until(&mut self, budget_ms: TimeMs, what: &str, done: impl Fn(&Net) -> bool) {
        let deadline = self.now + budget_ms;
        while !done(self) {
            assert!(
                self.now <= deadline,
                "not reached within {budget_ms} virtual ms: {what}; heights {:?}",
                (0..VALIDATORS).map(|i| self.height(i)).collect::<Vec<_>>()
            );
            self.step();
        }
    }

    /// Every height committed by more than one node has one block and one state root.
    fn check_agreement(&self) {
        let mut seen: BTreeMap<Height, (usize, (Hash, Hash))> = BTreeMap::new();
        for (i, commits) in self.commits.iter().enumerate() {
            for (h, v) in commits {
                let (first, w) = *seen.entry(*h).or_insert((i, *v));
                assert_eq!(
                    *v, w,
                    "height {h}: node {i} and node {first} disagree (block, root)"
                );
            }
        }
    }

    /// Stored blocks carry valid certificates, IOST supply is unchanged, and
    /// the committed head's root is the one reported when it committed.
    fn check_stores(&self) {
        let supply = self.genesis.total_supply().expect("supply");
        let params = &self.genesis.params;
        for i in 0..VALIDATORS {
            let r = self.replica(i);
            let store = r.store();
            assert_eq!(total_supply(store), Ok(supply), "node {i}: supply");
            let head = store.head().expect("head");
            assert_eq!(
                self.commits[i].get(&head.height).map(|c| c.1),
                Some(head.state_root)
            );
            for h in 1..=head.height {
                let (block, cert) = store.block(h).expect("read").expect("stored block");
                assert_eq!(cert.block, block.hash());
                assert_eq!(
                    self.commits[0].get(&h).map(|c| c.0),
                    Some(block.hash()),
                    "node {i} h {h}"
                );
                // The membership does not change: four equal validators stay elected.
                cert.verify(&params.chain_id, r.runtime().shard(), r.committee())
                    .unwrap_or_else(|e| panic!("node {i} height {h}: {e}"));
            }
        }
    }
}

fn user_keys() -> Vec<Keypair> {
    (0..2)
        .map(|i| Keypair::from_seed("replica-user", i))
        .collect()
}

fn transfer(
    key: &Keypair,
    chain: &Genesis,
    nonce: u64,
    to: Address,
    amount: Amount,
) -> SignedTransaction {
    ledger_tx(
        key,
        &chain.params.chain_id,
        nonce,
        &LedgerCall::Transfer {
            to,
            amount,
            token: Token::Iost,
        },
    )
}

#[test]
fn four_replicas_finalize_the_same_blocks_and_the_transfers_in_them() {
    let users = user_keys();
    let mut net = Net::new(&users);
    let (a, b) = (users[0].address(), users[1].address());
    let g = net.genesis.clone();
    let from_a: Vec<SignedTransaction> = (0..5)
        .map(|n| transfer(&users[0], &g, n, b, 100 + n))
        .collect();
    let from_b: Vec<SignedTransaction> = (0..2).map(|n| transfer(&users[1], &g, n, a, 7)).collect();
    // Through different entry points: gossip brings them to the proposer.
    net.submit(0, from_a[..3].to_vec());
    net.submit(2, from_a[3..].to_vec());
    net.submit(3, from_b.clone());
    let all: Vec<SignedTransaction> = from_a.iter().chain(&from_b).cloned().collect();

    net.run_until(60_000, "6 blocks and every transfer final", |n| {
        n.min_height() >= 6 && all.iter().all(|tx| n.final_everywhere(tx))
    });
    net.check_agreement();
    net.check_stores();
    assert_eq!(net.rejected, 0);

    for i in 0..VALIDATORS {
        let store = net.replica(i).store();
        for tx in &all {
            let loc = store.tx_location(&tx.id()).expect("read").expect("located");
            let receipts = store.receipts(loc.height).expect("read").expect("stored");
            assert_eq!(receipts[loc.index as usize].tx, tx.id());
            assert_eq!(receipts[loc.index as usize].status, ReceiptStatus::Success);
        }
        let sent_a: Amount = (0..5).map(|n| 100 + n).sum();
        let initial = g
            .accounts
            .iter()
            .find(|x| x.address == a)
            .expect("funded")
            .balance;
        let acct_a = committee::read_account(store, &a).expect("read");
        let acct_b = committee::read_account(store, &b).expect("read");
        assert_eq!(acct_a.nonce, 5);
        assert_eq!(acct_b.nonce, 2);
        assert_eq!(acct_a.balance, initial - sent_a - 5 * crate::FEE + 14);
        assert_eq!(acct_b.balance, initial + sent_a - 2 * crate::FEE - 14);
    }
}

#[test]
fn an_idle_committee_paces_empty_blocks_and_proposes_a_transaction_at_once() {
    let users = user_keys();
    let config = ReplicaConfig {
        min_block_interval_ms: 100,
        empty_block_interval_ms: 1_000,
        ..ReplicaConfig::default()
    };
    let mut net = Net::with_config(&users, config);
    // Idle: about one empty block a second, not ten, and no round is lost
    // (the other members wait the interval out before giving up on the
    // proposer).
    net.run_until(60_000, "height 5", |n| n.min_height() >= 5);
    let t = net.now;
    net.run_until(60_000, "ten more empty blocks", |n| n.min_height() >= 15);
    let idle_ms = net.now - t;
    assert!(
        (9_000..12_000).contains(&idle_ms),
        "ten empty blocks took {idle_ms} ms"
    );
    for i in 0..VALIDATORS {
        assert_eq!(
            net.replica(i).stats().rounds_skipped,
            0,
            "node {i} skipped a round"
        );
    }
    // A transfer arriving mid-wait is proposed at once: final long before
    // the empty block would have been.
    let h = net.min_height();
    net.run_until(60_000, "just after a block", |n| n.min_height() > h);
    let g = net.genesis.clone();
    let tx = transfer(&users[0], &g, 0, users[1].address(), 5);
    let t = net.now;
    net.submit(1, vec![tx.clone()]);
    net.run_until(60_000, "the transfer final", |n| n.final_everywhere(&tx));
    let took = net.now - t;
    assert!(took < 600, "the transfer took {took} ms to finalize");
    net.check_agreement();
    net.check_stores();
    assert_eq!(net.rejected, 0);
}

#[test]
fn a_crashed_replica_reopens_from_its_directory_and_catches_up() {
    let mut net = Net::new(&[]);
    net.run_until(30_000, "3 blocks", |n| n.min_height() >= 3);
    net.crash(3);
    let crashed_at = net.commits[3]
        .keys()
        .next_back()
        .copied()
        .expect("committed");

    // Three of four are a quorum: the chain goes on without it.
    net.run_until(60_000, "5 more blocks without node 3", |n| {
        n.height(0) >= crashed_at + 5
    });
    assert_eq!(net.commits[3].keys().next_back(), Some(&crashed_at));

    net.open(3);
    assert_eq!(
        net.height(3),
        crashed_at,
        "reopened at its last committed block"
    );
    assert_eq!(
        net.replica(3).store().state_root(),
        net.commits[3][&crashed_at].1,
        "reopened with the state it had committed"
    );
    let target = net.max_height() + 2;
    net.run_until(60_000, "node 3 catches up", |n| {
        (0..VALIDATORS).all(|i| n.height(i) >= target)
    });
    // It committed every height it missed, through sync.
    let missed: Vec<Height> = (crashed_at + 1..=target)
        .filter(|h| !net.commits[3].contains_key(h))
        .collect();
    assert!(missed.is_empty(), "node 3 never committed {missed:?}");
    net.check_agreement();
    net.check_stores();
    let h = net.height(3);
    assert_eq!(net.replica(3).store().state_root(), net.commits[0][&h].1);
}

/// Crashes a replica right after it signs a vote of `kind`, restarts it at
/// once but cut off from its peers (so that its own timeouts fire), and
/// checks that it never signed two different votes for one step, and that it
/// re-sent the very vote it had signed before the crash.
fn check_restart_keeps_its_vote(kind: VoteKind) {
    let mut net = Net::new(&[]);
    net.crash_trigger = Some(CrashTrigger {
        node: 3,
        kind,
        height: 3,
    });
    net.run_until(60_000, "node 3 votes and crashes", |n| {
        n.crashed_after.is_some()
    });
    let before = net.crashed_after.clone().expect("crashed");
    let h = before.vote.height;

    net.open(3);
    assert_eq!(
        net.height(3),
        h - 1,
        "{kind:?}: it crashed while deciding {h}"
    );
    net.isolated = Some((3, net.now + 5_000));
    net.run_until(60_000, "everyone 3 blocks further", |n| {
        (0..VALIDATORS).all(|i| n.height(i) >= h + 3)
    });
    net.check_agreement();
    net.check_stores();

    let mut steps: BTreeMap<(Height, Round, VoteKind), (u32, SignedVote)> = BTreeMap::new();
    for sent in &net.votes[3] {
        let v = &sent.vote.vote;
        let step = (v.height, v.round, v.kind);
        match steps.get(&step) {
            Some((inc, first)) => assert_eq!(
                first.vote.block, v.block,
                "{kind:?}: node 3 signed two votes for {step:?} (incarnations {inc} and {})",
                sent.incarnation
            ),
            None => {
                steps.insert(step, (sent.incarnation, sent.vote.clone()));
            }
        }
    }
    let resent = net.votes[3]
        .iter()
        .any(|s| s.incarnation == 2 && s.vote == before);
    assert!(
        resent,
        "{kind:?}: the restarted node did not re-send {before:?}"
    );
    // Its own timeouts ran while cut off: it voted again at height h after the restart.
    let after_restart = net.votes[3]
        .iter()
        .filter(|s| s.incarnation == 2 && s.vote.vote.height == h)
        .count();
    assert!(
        after_restart >= 2,
        "{kind:?}: only {after_restart} votes at height {h} after restart"
    );
}

#[test]
fn a_restarted_replica_never_signs_a_conflicting_prevote() {
    check_restart_keeps_its_vote(VoteKind::Prevote);
}

#[test]
fn a_restarted_replica_never_signs_a_conflicting_precommit() {
    check_restart_keeps_its_vote(VoteKind::Precommit);
}

/// A peer that re-sends a real proposal with one transaction's signature
/// flipped (the header, and so the block hash, unchanged) is refused, and the
/// genuine proposal is still accepted and finalized: a tampered body cannot
/// poison the block's hash.
#[test]
fn a_tampered_block_body_is_refused_and_the_real_block_still_commits() {
    let users = user_keys();
    let mut net = Net::new(&users);
    let g = net.genesis.clone();
    let tx = transfer(&users[0], &g, 0, users[1].address(), 5);
    let mut tampered_for = None;
    net.submit(0, vec![tx.clone()]);
    while tampered_for.is_none() {
        let next = net.queue.front().cloned();
        if let Some((from, to, msg)) = next {
            if let Message::Proposal {
                proposal,
                block,
                pol,
            } = msg.as_ref()
            {
                if !block.txs.is_empty() {
                    let mut bad = (**block).clone();
                    bad.txs[0].signature.0[0] ^= 1;
                    assert_eq!(bad.hash(), block.hash(), "the header is unchanged");
                    let forged = Message::Proposal {
                        proposal: proposal.clone(),
                        block: Arc::new(bad),
                        pol: pol.clone(),
                    };
                    let now = net.now;
                    let r = net.nodes[to].replica.as_mut().expect("running");
                    let err = r
                        .handle(PeerId(from as u64), &forged, now)
                        .expect_err("a tampered body is refused");
                    assert!(err.to_string().contains("tx root"), "{err}");
                    tampered_for = Some(to);
                }
            }
        }
        net.step();
    }
    net.run_until(60_000, "the transfer is final everywhere", |n| {
        n.final_everywhere(&tx)
    });
    net.check_agreement();
    net.check_stores();
    assert_eq!(net.rejected, 0);
}

#[test]
fn a_replica_off_the_committee_never_signs_a_vote() {
    let keys: Vec<Keypair> = (0..VALIDATORS as u64)
        .map(|i| Keypair::from_seed("replica-validator", i))
        .collect();
    let genesis = sim_genesis(sim_params(VALIDATORS), &keys, &[]);
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(&dir.path().join("follower"));
    let mut follower = Replica::open(
        &db,
        Keypair::from_seed("not-a-validator", 1),
        Runtime::new(genesis.params.clone()),
        &genesis,
        ReplicaConfig::default(),
        0,
    )
    .unwrap();
    // Alone, it times out waiting for a proposal (the step where a member
    // prevotes nil) and keeps re-gossiping what it said in the round.
    let mut votes = 0;
    for now in (0..20_000).step_by(50) {
        for out in follower.tick(now).unwrap() {
            if let Output::Broadcast(m) | Output::Send(_, m) = &out {
                if matches!(m.as_ref(), Message::Vote(_)) {
                    votes += 1;
                }
            }
        }
    }
    assert_eq!(votes, 0, "a non-member sent votes");
}
