//! The benchmarks' network: every replica on one thread, a FIFO queue of
//! messages between the members of each shard's committee; nothing is lost
//! or reordered.

use ios_chain::crypto::Keypair;
use ios_chain::execute::Runtime;
use ios_chain::message::{Message, PeerId};
use ios_chain::params::Genesis;
use ios_chain::replica::{CommittedBlock, Output, Replica, ReplicaConfig};
use ios_chain::types::{ShardId, TimeMs};
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[derive(Default)]
pub struct FifoNet {
    pub replicas: Vec<Replica>,
    /// The shard of each replica.
    pub shard_of: Vec<ShardId>,
    /// The replicas of each shard.
    pub by_shard: BTreeMap<ShardId, Vec<usize>>,
    /// Queued messages: (to, from, message).
    queue: VecDeque<(usize, usize, Arc<Message>)>,
    /// Blocks committed since the caller last drained this.
    pub commits: Vec<(ShardId, Arc<CommittedBlock>)>,
}

impl FifoNet {
    /// Opens a replica for every epoch-0 committee member of every shard of
    /// `genesis` (the beacon too), each with its own store under `dir` and
    /// the runtime and settings `setup` gives for its shard (a runtime
    /// each: a validator's memo of verified certificates is its own).
    /// Returns the stores, to keep open while the replicas run.
    pub fn open_committees(
        &mut self,
        genesis: &Genesis,
        keys: &[Keypair],
        dir: &Path,
        now: TimeMs,
        setup: impl Fn(ShardId) -> (Runtime, ReplicaConfig),
    ) -> anyhow::Result<Vec<sled::Db>> {
        use anyhow::Context;
        let epoch0 = genesis.epoch_zero();
        let mut dbs = Vec::new();
        for s in 0..=genesis.params.shards {
            for a in &epoch0.committee(s)?.members {
                let key = keys
                    .iter()
                    .find(|k| k.address() == *a)
                    .context("committee member without a key")?;
                let db = ios_chain::state::open_db(&dir.join(format!("s{s}-{a}")), None)
                    .context("opening bench store")?;
                let (runtime, rc) = setup(s);
                let replica = Replica::open(&db, key.clone(), runtime, genesis, rc, now)?;
                self.add(s, replica);
                dbs.push(db);
            }
        }
        Ok(dbs)
    }

    /// Adds a replica of `shard`; returns its index.
    pub fn add(&mut self, shard: ShardId, replica: Replica) -> usize {
        self.replicas.push(replica);
        let i = self.replicas.len() - 1;
        self.shard_of.push(shard);
        self.by_shard.entry(shard).or_default().push(i);
        i
    }

    /// Queues replica `from`'s outputs; a broadcast goes to every other
    /// replica of its shard.
    pub fn route(&mut self, from: usize, outs: Vec<Output>) {
        let shard = self.shard_of[from];
        for o in outs {
            match o {
                Output::Broadcast(m) => {
                    for &to in &self.by_shard[&shard] {
                        if to != from {
                            self.queue.push_back((to, from, m.clone()));
                        }
                    }
                }
                Output::Send(PeerId(to), m) => self.queue.push_back((to as usize, from, m)),
                Output::Committed(c) => self.commits.push((shard, c)),
                // Nobody equivocates in the benchmarks.
                Output::Evidence(_) => {}
            }
        }
    }

    /// Delivers the next queued message at `now` (a rejected one is dropped,
    /// as a transport would); false if none was queued.
    pub fn deliver_one(&mut self, now: TimeMs) -> bool {
        let Some((to, from, msg)) = self.queue.pop_front() else {
            return false;
        };
        let outs = self.replicas[to]
            .handle(PeerId(from as u64), &msg, now)
            .unwrap_or_default();
        self.route(to, outs);
        true
    }

    /// Sleeps until the earliest replica deadline after `now`, at most `cap`.
    pub fn sleep_until_due(&self, now: TimeMs, cap: Duration) {
        let next = self
            .replicas
            .iter()
            .map(|r| r.next_deadline())
            .min()
            .unwrap_or(0);
        if next > now {
            std::thread::sleep(Duration::from_millis(next - now).min(cap));
        }
    }
}
