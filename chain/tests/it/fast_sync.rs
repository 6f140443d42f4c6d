//! Fast sync on four replicas: at each epoch boundary every replica keeps a
//! snapshot of the state; a node that was never in the network restores a
//! fresh store from one (checked against the boundary block's certificate,
//! manifest and every chunk), joins, syncs only the later blocks and reaches
//! the same state as everyone. Forged snapshots are typed errors that write
//! nothing; a pruning replica drops old block bodies and keeps its state.

use crate::open_db;
use ios_chain::block::Committee;
use ios_chain::crypto::Keypair;
use ios_chain::error::ChainError;
use ios_chain::execute::Runtime;
use ios_chain::fast_sync::{FastSync, Progress, SnapshotOffer, RETRY_MS};
use ios_chain::light_client::read_epoch;
use ios_chain::message::{Message, PeerId};
use ios_chain::params::Genesis;
use ios_chain::replica::{Output, Replica, ReplicaConfig};
use ios_chain::sim::{sim_genesis, sim_params};
use ios_chain::state::snapshot::SnapshotChunk;
use ios_chain::state::StateStore;
use ios_chain::types::TimeMs;
use std::collections::VecDeque;
use std::sync::Arc;

const VALIDATORS: usize = 4;

fn validator_keys() -> Vec<Keypair> {
    (0..VALIDATORS as u64)
        .map(|i| Keypair::from_seed("fast-sync-validator", i))
        .collect()
}

fn genesis() -> Genesis {
    let users = [Keypair::from_seed("fast-sync-user", 0)];
    sim_genesis(sim_params(VALIDATORS), &validator_keys(), &users)
}

/// Replicas on a FIFO network on virtual time; any may join later.
struct Net {
    replicas: Vec<Replica>,
    dbs: Vec<sled::Db>,
    queue: VecDeque<(usize, usize, Arc<Message>)>,
    now: TimeMs,
    dir: tempfile::TempDir,
}

impl Net {
    fn new(config: ReplicaConfig) -> Net {
        let genesis = genesis();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut net = Net {
            replicas: Vec::new(),
            dbs: Vec::new(),
            queue: VecDeque::new(),
            now: 0,
            dir,
        };
        for (i, key) in validator_keys().into_iter().enumerate() {
            let db = open_db(&net.dir.path().join(format!("node-{i}")));
            let runtime = Runtime::new(genesis.params.clone());
            let r = Replica::open(&db, key, runtime, &genesis, config.clone(), 0);
            net.replicas.push(r.expect("open replica"));
            net.dbs.push(db);
        }
        net
    }

    /// Starts a replica (not a committee member) on `db`, a store restored
    /// from the snapshot at height `at`, and runs until everyone is `more`
    /// heights past the current top; returns that height.
    fn join(&mut self, db: sled::Db, seed: u64, at: u64, more: u64) -> u64 {
        let genesis = genesis();
        let joiner = Replica::open(
            &db,
            Keypair::from_seed("fast-sync-joiner", seed),
            Runtime::new(genesis.params.clone()),
            &genesis,
            ReplicaConfig::default(),
            self.now,
        )
        .expect("open the restored store");
        assert_eq!(joiner.height(), at + 1, "starts right after the snapshot");
        self.replicas.push(joiner);
        self.dbs.push(db);
        let target = self.replicas[0].height() + more;
        self.run_until(|rs| rs.iter().all(|r| r.height() >= target));
        target
    }

    /// One round of a fast sync run by a node not yet in the network: every
    /// request it makes, answered by the validators; `tamper` spoils every
    /// chunk they serve in it.
    fn exchange(&mut self, fs: &mut FastSync, tamper: bool) {
        let joiner = PeerId(self.replicas.len() as u64);
        let peers: Vec<PeerId> = (0..VALIDATORS as u64).map(PeerId).collect();
        let now = self.now;
        for (to, msg) in fs.tick(now, &peers) {
            let outs = self.replicas[to.0 as usize]
                .handle(joiner, &msg, now)
                .expect("serve");
            for out in outs {
                if let Output::Send(p, reply) = out {
                    assert_eq!(p, joiner);
                    let mut reply = (*reply).clone();
                    if let (true, Message::Chunk { chunk, .. }) = (tamper, &mut reply) {
                        chunk.entries[0].1.push(1);
                    }
                    let _ = fs.handle(to, &reply);
                }
            }
        }
        self.now += RETRY_MS;
    }

    fn route(&mut self, from: usize, outputs: Vec<Output>) {
        for out in outputs {
            match out {
                Output::Broadcast(msg) => {
                    for to in (0..self.replicas.len()).filter(|&to| to != from) {
                        self.queue.push_back((from, to, msg.clone()));
                    }
                }
                Output::Send(PeerId(to), msg) => self.queue.push_back((from, to as usize, msg)),
                Output::Committed(_) | Output::Evidence(_) => {}
            }
        }
    }

    fn run_until(&mut self, done: impl Fn(&[Replica]) -> bool) {
        let limit = self.now + 300_000;
        while !done(&self.replicas) {
            assert!(self.now <= limit, "not done in 300 virtual s");
            if let Some((from, to, msg)) = self.queue.pop_front() {
                let now = self.now;
                let outputs = self.replicas[to]
                    .handle(PeerId(from as u64), &msg, now)
                    .unwrap_or_default();
                self.route(to, outputs);
                continue;
            }
            let next = self.replicas.iter().map(Replica::next_deadline).min();
            self.now = self.now.max(next.expect("replicas"));
            for i in 0..self.replicas.len() {
                if self.replicas[i].next_deadline() <= self.now {
                    let outputs = self.replicas[i].tick(self.now).expect("tick");
                    self.route(i, outputs);
                }
            }
        }
    }
}

/// The committees a light client following `store` trusts, by epoch, up
/// to `upto` (default: the latest it knows).
fn trusted(store: &StateStore, upto: Option<u64>) -> std::collections::BTreeMap<u64, Committee> {
    let upto =
        upto.unwrap_or_else(|| ios_chain::light_client::latest_epoch(store).expect("latest"));
    (0..=upto).map(|e| (e, committee_of(store, e))).collect()
}

/// The committee that certified blocks of `epoch`, as a light client knows it.
fn committee_of(store: &StateStore, epoch: u64) -> Committee {
    read_epoch(store, epoch)
        .expect("read")
        .expect("epoch known")
        .committee(0)
        .expect("committee")
        .clone()
}

#[test]
fn a_new_node_restores_an_epoch_snapshot_and_catches_up() {
    let mut net = Net::new(ReplicaConfig::default());
    net.run_until(|rs| rs.iter().all(|r| r.committee().epoch >= 1));
    let source = net.replicas[0].store();
    let heights = source.snapshot_heights().expect("heights");
    let &at = heights.last().expect("a snapshot at the epoch boundary");
    let (manifest, header, cert) = source
        .snapshot_manifest(at)
        .expect("read")
        .expect("manifest");
    assert_eq!(
        (manifest.height, manifest.state_root),
        (at, header.state_root)
    );
    let chunks: Vec<SnapshotChunk> = (0..manifest.chunks.len() as u32)
        .map(|i| source.snapshot_chunk(at, i).expect("read").expect("chunk"))
        .collect();
    let committee = committee_of(source, header.epoch);
    let genesis_hash = genesis().hash();

    // Forged pieces are refused before anything is written.
    let dir = net.dir.path().to_path_buf();
    let try_restore = |name: &str, committee: &Committee, chunks: &[SnapshotChunk]| {
        let db = open_db(&dir.join(name));
        let r = StateStore::restore(
            &db,
            genesis_hash,
            committee,
            &header,
            &cert,
            &manifest,
            chunks,
        );
        (r.map(|_| ()), db)
    };
    let mut tampered = chunks.clone();
    let entry = tampered
        .iter_mut()
        .find(|c| !c.entries.is_empty())
        .expect("entries");
    entry.entries[0].1.push(1);
    let (r, db) = try_restore("tampered", &committee, &tampered);
    assert!(matches!(r, Err(ChainError::Snapshot(_))), "{r:?}");
    assert!(
        db.open_tree("chain").expect("tree").is_empty(),
        "nothing written"
    );
    let (r, _) = try_restore("short", &committee, &chunks[1..]);
    assert!(matches!(r, Err(ChainError::Snapshot(_))), "{r:?}");
    let strangers = Committee {
        members: (10..14)
            .map(|i| Keypair::from_seed("fast-sync-validator", i).address())
            .collect(),
        ..committee.clone()
    };
    let (r, _) = try_restore("strangers", &strangers, &chunks);
    assert!(matches!(r, Err(ChainError::InvalidCertificate(_))), "{r:?}");

    // The real restore, then the node joins and syncs the later blocks.
    let db = open_db(&dir.join("joiner"));
    let restore = |db: &sled::Db| {
        StateStore::restore(
            db,
            genesis_hash,
            &committee,
            &header,
            &cert,
            &manifest,
            &chunks,
        )
    };
    let store = restore(&db).expect("restore");
    assert_eq!(store.state_root(), header.state_root);
    assert_eq!(store.base().expect("base"), at + 1);
    assert!(store.block(1).expect("read").is_none(), "no old bodies");
    // Restoring over it again is refused.
    assert!(restore(&db).is_err());
    drop(store);
    let target = net.join(db, 0, at, 3);
    let h = target - 1;
    let root = |r: &Replica| {
        r.store()
            .block(h)
            .expect("read")
            .expect("block")
            .0
            .header
            .state_root
    };
    assert_eq!(root(&net.replicas[4]), root(&net.replicas[0]));
    // The joiner keeps the snapshot it came from, to serve it in turn.
    assert!(net.replicas[4]
        .store()
        .snapshot_heights()
        .expect("heights")
        .contains(&at));
}

#[test]
fn a_pruning_replica_drops_old_bodies_and_keeps_its_state() {
    let config = ReplicaConfig {
        snapshots_kept: 1,
        prune_blocks: true,
        ..ReplicaConfig::default()
    };
    let mut net = Net::new(config);
    net.run_until(|rs| rs.iter().all(|r| r.committee().epoch >= 2));
    for r in &net.replicas {
        let store = r.store();
        let heights = store.snapshot_heights().expect("heights");
        assert_eq!(heights.len(), 1, "one snapshot kept");
        let base = store.base().expect("base");
        assert_eq!(base, heights[0]);
        assert!(store.block(base - 1).expect("read").is_none());
        assert!(store.receipts(1).expect("read").is_none());
        assert!(store.block(base).expect("read").is_some());
    }
    // The state is untouched: all replicas agree on it and keep going.
    let target = net.replicas[0].height() + 2;
    net.run_until(|rs| rs.iter().all(|r| r.height() >= target));
    let roots: Vec<_> = net
        .replicas
        .iter()
        .map(|r| {
            r.store()
                .block(target - 1)
                .expect("read")
                .expect("block")
                .0
                .header
                .state_root
        })
        .collect();
    assert!(roots.windows(2).all(|w| w[0] == w[1]));
}

/// The whole protocol over messages: a joiner asks the replicas for their
/// newest snapshot, gets chunks (one tampered by a peer: refused and asked
/// again elsewhere), restores and joins. Before the first epoch boundary
/// nobody has a snapshot and the joiner is told to start from genesis.
#[test]
fn fast_sync_over_messages_survives_a_bad_chunk_and_falls_back_without_snapshots() {
    let mut net = Net::new(ReplicaConfig::default());
    let genesis = genesis();
    // At genesis: no snapshots anywhere.
    let mut early = FastSync::new(
        0,
        genesis.params.chain_id.clone(),
        genesis.hash(),
        trusted(net.replicas[0].store(), None),
    );
    for _ in 0..3 {
        net.exchange(&mut early, false);
    }
    assert_eq!(early.progress(), Progress::NoSnapshot);

    net.run_until(|rs| rs.iter().all(|r| r.committee().epoch >= 1));
    let mut fs = FastSync::new(
        0,
        genesis.params.chain_id.clone(),
        genesis.hash(),
        trusted(net.replicas[0].store(), None),
    );
    let mut rounds = 0;
    while fs.progress() == Progress::Running {
        rounds += 1;
        assert!(rounds < 20, "fast sync did not finish");
        // Round 1 gets the offers, round 2 the chunks: spoil those once.
        net.exchange(&mut fs, rounds == 2);
    }
    assert_eq!(fs.progress(), Progress::Complete);
    assert_eq!(fs.refused, 1, "the tampered chunk was refused");
    assert_eq!(rounds, 3, "and fetched again from another peer");
    let at = fs.height().expect("adopted");
    let db = open_db(&net.dir.path().join("joiner"));
    fs.restore(&db).expect("restore");
    net.join(db, 1, at, 2);

    // An offer whose certificate is forged is refused with a typed error.
    let source = net.replicas[0].store();
    let (manifest, header, mut cert) = source
        .snapshot_manifest(at)
        .expect("read")
        .expect("manifest");
    cert.signatures[0].1 .0[0] ^= 1;
    let mut other = FastSync::new(
        0,
        genesis.params.chain_id.clone(),
        genesis.hash(),
        trusted(source, None),
    );
    let offer = Message::SnapshotOffer(Some(Box::new(SnapshotOffer {
        manifest,
        header,
        cert,
    })));
    assert!(matches!(
        other.handle(PeerId(0), &offer),
        Err(ChainError::InvalidCertificate(_))
    ));
    assert_eq!(other.height(), None);
}

#[test]
fn a_sync_whose_snapshot_is_replaced_mid_download_moves_to_the_newer_one() {
    let mut net = Net::new(ReplicaConfig::default());
    let genesis = genesis();
    net.run_until(|rs| rs.iter().all(|r| r.committee().epoch >= 1));
    let mut fs = FastSync::new(
        0,
        genesis.params.chain_id.clone(),
        genesis.hash(),
        trusted(net.replicas[0].store(), Some(1)),
    );
    // The offers arrive; the chunks are not asked for yet.
    net.exchange(&mut fs, false);
    assert_eq!(fs.refused, 0, "good offers");
    let first = fs.height().expect("adopted");

    // Two more epoch boundaries: every replica drops that snapshot (it keeps two).
    net.run_until(|rs| rs.iter().all(|r| r.committee().epoch >= 3));
    assert!(!net.replicas[0]
        .store()
        .snapshot_heights()
        .expect("heights")
        .contains(&first));

    // Asked for a chunk it no longer has, a replica offers its newest
    // snapshot; that one is of an epoch this light client has not learned.
    net.exchange(&mut fs, false);
    assert_eq!(
        fs.height(),
        Some(first),
        "an unknown epoch's offer is refused"
    );
    assert!(fs.refused > 0);
    for (e, c) in trusted(net.replicas[0].store(), None) {
        fs.trust(e, c);
    }
    let mut rounds = 0;
    while fs.progress() == Progress::Running {
        rounds += 1;
        assert!(rounds < 20, "fast sync did not finish");
        net.exchange(&mut fs, false);
    }
    // Two peers asked for its chunks said it is gone: given up, and the
    // newest snapshot adopted from fresh offers.
    assert_eq!((fs.superseded, fs.abandoned), (0, 1));
    let at = fs.height().expect("adopted");
    assert!(at > first);
    let db = open_db(&net.dir.path().join("joiner"));
    fs.restore(&db).expect("restore");
    net.join(db, 2, at, 2);
}

/// Block sync on status: a peer two heights behind gets blocks at once; one
/// height behind (usually just collecting the last precommits, or a stale
/// status) only once it stays there a gossip interval.
#[test]
fn a_peer_one_height_behind_gets_blocks_only_if_it_stays_there() {
    let mut net = Net::new(ReplicaConfig::default());
    net.run_until(|rs| rs.iter().all(|r| r.height() >= 4));
    let interval = ReplicaConfig::default().gossip_interval_ms;
    let h = net.replicas[0].height();
    let sends_blocks = |outs: Vec<Output>| {
        outs.iter().any(|o| {
            matches!(o, Output::Send(_, m) if matches!(m.as_ref(), Message::SyncResponse { .. }))
        })
    };
    let status = |height| Message::Status { height, round: 0 };
    let now = net.now + 1;
    let r = &mut net.replicas[0];
    let outs = r.handle(PeerId(7), &status(h - 2), now).expect("status");
    assert!(sends_blocks(outs), "two behind: blocks at once");
    let outs = r.handle(PeerId(8), &status(h - 1), now).expect("status");
    assert!(!sends_blocks(outs), "one behind: not yet");
    let outs = r
        .handle(PeerId(8), &status(h - 1), now + interval / 2)
        .expect("status");
    assert!(!sends_blocks(outs), "one behind for less than an interval");
    let outs = r
        .handle(PeerId(8), &status(h - 1), now + interval)
        .expect("status");
    assert!(
        sends_blocks(outs),
        "still one behind after an interval: blocks"
    );
}

/// A peer flooding chunk requests gets at most `CHUNKS_PER_INTERVAL`
/// answers per gossip interval; the replica keeps working.
#[test]
fn chunk_requests_beyond_a_peers_budget_are_ignored() {
    use ios_chain::replica::CHUNKS_PER_INTERVAL;
    let mut net = Net::new(ReplicaConfig::default());
    net.run_until(|rs| rs.iter().all(|r| r.committee().epoch >= 1));
    let interval = ReplicaConfig::default().gossip_interval_ms;
    let at = *net.replicas[0]
        .store()
        .snapshot_heights()
        .expect("heights")
        .last()
        .expect("a snapshot");
    let now = net.now + 1;
    let r = &mut net.replicas[0];
    let answered = |r: &mut Replica, now: TimeMs, n: usize| {
        let mut chunks = 0;
        for _ in 0..n {
            let outs = r
                .handle(
                    PeerId(9),
                    &Message::ChunkRequest {
                        height: at,
                        index: 0,
                    },
                    now,
                )
                .expect("a flood is not an error");
            chunks += outs
                .iter()
                .filter(|o| matches!(o, Output::Send(_, m) if matches!(m.as_ref(), Message::Chunk { .. })))
                .count();
        }
        chunks
    };
    assert_eq!(
        answered(r, now, 3 * CHUNKS_PER_INTERVAL),
        CHUNKS_PER_INTERVAL
    );
    assert_eq!(
        answered(r, now + interval, 1),
        1,
        "a new interval, a new budget"
    );
    let target = net.replicas[0].height() + 2;
    net.run_until(|rs| rs.iter().all(|r| r.height() >= target));
}

/// One peer alone cannot steer a fast sync: a snapshot is adopted, or
/// replaced by a newer one, only once two peers offered it.
#[test]
fn a_snapshot_is_adopted_or_replaced_only_when_two_peers_offer_it() {
    let mut net = Net::new(ReplicaConfig::default());
    net.run_until(|rs| rs.iter().all(|r| r.committee().epoch >= 2));
    let genesis = genesis();
    let store = net.replicas[0].store();
    let heights = store.snapshot_heights().expect("heights");
    assert_eq!(heights.len(), 2, "two kept");
    let offer = |h: u64| {
        let (manifest, header, cert) = store.snapshot_manifest(h).expect("read").expect("kept");
        Message::SnapshotOffer(Some(Box::new(SnapshotOffer {
            manifest,
            header,
            cert,
        })))
    };
    let mut fs = FastSync::new(
        0,
        genesis.params.chain_id.clone(),
        genesis.hash(),
        trusted(store, None),
    );
    let peers: Vec<PeerId> = (0..4).map(PeerId).collect();
    let _ = fs.tick(net.now, &peers);
    let (old, new) = (offer(heights[0]), offer(heights[1]));
    fs.handle(PeerId(3), &old).expect("good offer");
    assert_eq!(fs.height(), None, "one peer's offer is not enough");
    fs.handle(PeerId(1), &old).expect("good offer");
    assert_eq!(fs.height(), Some(heights[0]));
    fs.handle(PeerId(3), &new).expect("good offer");
    assert_eq!(
        fs.height(),
        Some(heights[0]),
        "one peer cannot restart the download"
    );
    fs.handle(PeerId(2), &new).expect("good offer");
    assert_eq!(fs.height(), Some(heights[1]));
    assert_eq!(fs.superseded, 1);
}
