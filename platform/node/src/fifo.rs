//! The benchmarks' network: every replica on one thread, a FIFO queue of
//! messages between the members of each shard's committee; nothing is lost
//! or reordered.

use ios_chain::message::{Message, PeerId};
use ios_chain::replica::{CommittedBlock, Output, Replica};
use ios_chain::types::{ShardId, TimeMs};
use std::collections::{BTreeMap, VecDeque};
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
