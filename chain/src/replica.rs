//! One validator's replica of a shard, as a sans-IO state machine: the
//! Tendermint BFT protocol (Buchman, Kwon, Milosevic, "The latest gossip on
//! BFT consensus", 2018, arXiv:1807.04938) over Proof-of-Believability
//! proposer selection, with the mempool, block execution and the block store.
//!
//! Inputs are messages, ticks of a clock it does not own, and transaction
//! submissions; outputs are messages to send and committed blocks. The
//! simulator drives it on virtual time, the node on real time.

use crate::beacon::{self, RandomnessRound};
use crate::block::{
    Block, BlockHeader, CommitCertificate, Committee, Proposal, Receipt, SignedProposal,
    SignedVote, Vote, VoteKind,
};
use crate::codec;
use crate::committee::{self, K_COMMITTEE, K_RANDOMNESS};
use crate::crypto::{Address, Keypair};
use crate::error::{ChainError, Result};
use crate::execute::{is_relay, Executed, Mode, Runtime};
use crate::fast_sync::SnapshotOffer;
use crate::hash::Hash;
use crate::ledger::{Evidence, LedgerCall, LedgerModule};
use crate::light_client::{self, EpochChange};
use crate::mempool::{Mempool, MempoolConfig};
use crate::message::{Message, PeerId, MAX_MESSAGE_BYTES, MAX_SYNC_BLOCKS};
use crate::module::BlockEnv;
use crate::params::Genesis;
use crate::pvss::{self, Dealing};
use crate::state::{StateRead, StateStore};
use crate::tx::{PooledTx, SignedTransaction, Transaction};
use crate::types::{Epoch, Height, Round, TimeMs};
use borsh::{BorshDeserialize, BorshSerialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Most relay transactions (proof-carrying, fee-free) a replica holds.
const MAX_RELAYS: usize = 1_024;

/// Heights a pooled relay waits for inclusion before it is re-gossiped.
const RELAY_REGOSSIP_AFTER: Height = 2;

/// Heights between full re-checks of the relay pool.
const RELAY_RECHECK: Height = 4;

/// Most relays re-gossiped per gossip round.
const RELAY_REGOSSIP: usize = 16;
/// Snapshot chunks served to one peer per gossip interval; a fast sync keeps
/// `fast_sync::IN_FLIGHT_PER_PEER` requests out per peer, well under this.
pub const CHUNKS_PER_INTERVAL: usize = 16;
/// A pooled relay transaction: when it entered the pool (its re-check age)
/// and when this replica last sent it (re-gossip pacing).
#[derive(Clone, Debug)]
struct PooledRelay {
    tx: PooledTx,
    since: Height,
    gossiped: Height,
}

impl PooledRelay {
    fn new(tx: PooledTx, height: Height) -> PooledRelay {
        PooledRelay {
            tx,
            since: height,
            gossiped: height,
        }
    }
}

/// Signatures remembered to drop gossiped duplicates early (see `seen_txs`).
const SEEN_TXS: usize = 1 << 16;

/// Heights a relay waits for its proof's epoch before it is dropped.
const FUTURE_RELAY_HEIGHTS: Height = 100;

/// How many of its own next pooled transactions a validator re-gossips.
const OWN_TX_REGOSSIP: u64 = 4;

/// Heights a pooled randomness duty gets to land before it is sent again.
const BEACON_RETRY: Height = 5;

/// Timing and resource settings of a replica. Not consensus-critical: each
/// node may choose its own.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    pub timeout_propose_ms: TimeMs,
    pub timeout_prevote_ms: TimeMs,
    pub timeout_precommit_ms: TimeMs,
    /// Added to every timeout per round, so rounds lengthen until the network is synchronous enough.
    pub timeout_delta_ms: TimeMs,
    /// A proposer waits this long after the previous block before proposing.
    pub min_block_interval_ms: TimeMs,
    /// ... and this long when it has nothing to include (an idle chain makes
    /// fewer empty blocks; a transaction that arrives meanwhile is proposed
    /// at once, `min_block_interval_ms` after the previous block). The other
    /// members add this to their first round's propose timeout, so all of a
    /// committee should use the same value. Equal to `min_block_interval_ms`:
    /// no pacing.
    pub empty_block_interval_ms: TimeMs,
    /// Period of status and vote re-broadcasts that make lost messages harmless.
    pub gossip_interval_ms: TimeMs,
    /// Flush the write-ahead record to disk before any vote leaves (real nodes).
    pub durable: bool,
    /// Maintain the transaction index (needed to answer status queries).
    pub index_txs: bool,
    /// Post this member's randomness reveals. Always true on a real node; the
    /// simulator clears it to play a member that withholds its reveals.
    pub reveal_randomness: bool,
    /// Epoch-boundary state snapshots kept for fast sync (0 keeps none).
    pub snapshots_kept: usize,
    /// Delete block bodies and receipts older than the oldest kept snapshot
    /// (a peer that needs them fast-syncs instead). Off: an archive node.
    pub prune_blocks: bool,
    pub mempool: MempoolConfig,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig {
            timeout_propose_ms: 1_000,
            timeout_prevote_ms: 500,
            timeout_precommit_ms: 500,
            timeout_delta_ms: 250,
            min_block_interval_ms: 100,
            empty_block_interval_ms: 100,
            gossip_interval_ms: 300,
            durable: false,
            index_txs: true,
            reveal_randomness: true,
            snapshots_kept: 2,
            prune_blocks: false,
            mempool: MempoolConfig::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
pub enum Step {
    Propose,
    Prevote,
    Precommit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timeout {
    ProposeAt,
    Propose,
    Prevote,
    Precommit,
}

/// A block that reached finality, as reported to the driver.
#[derive(Debug)]
pub struct CommittedBlock {
    /// The replica's state root right after committing (equal to the header's).
    pub state_root: Hash,
    pub block: Arc<Block>,
    pub cert: CommitCertificate,
    pub receipts: Vec<Receipt>,
    /// On the beacon, when this block ended an epoch: what relayers carry to
    /// every account shard (the proof is taken now, while the block's state
    /// root is the store's).
    pub epoch_change: Option<Arc<EpochChange>>,
}

#[derive(Debug, Clone)]
pub enum Output {
    Broadcast(Arc<Message>),
    Send(PeerId, Arc<Message>),
    Committed(Arc<CommittedBlock>),
    /// Equivocation seen on an account shard. Stakes live on the beacon, so
    /// the driver carries it there: any beacon replica takes it with
    /// [`Replica::report_evidence`] (evidence proves itself; who submits it
    /// does not matter).
    Evidence(Arc<Evidence>),
}

/// Everything a replica must remember across a crash to stay safe: what it
/// signed and what it locked at the current height.
#[derive(Clone, Debug, Default, BorshSerialize, BorshDeserialize)]
struct WalRecord {
    height: Height,
    round: Round,
    locked: Option<(Round, Hash)>,
    valid: Option<(Round, Hash)>,
    sent_votes: Vec<SignedVote>,
    sent_proposals: Vec<SignedProposal>,
}

const WAL_RECORD: &[u8] = b"record";

/// Most conflicting votes kept per voter and step (an equivocator's extra
/// votes still count toward quorums, as Tendermint's proof allows, but
/// memory stays bounded).
const MAX_VOTES_PER_VOTER: usize = 4;

#[derive(Default)]
struct RoundVotes {
    prevotes: BTreeMap<Address, Vec<SignedVote>>,
    precommits: BTreeMap<Address, Vec<SignedVote>>,
}

enum Inserted {
    New,
    Known,
    /// A validly signed vote conflicting with this earlier one.
    Conflict(SignedVote),
}

impl RoundVotes {
    fn of(&self, kind: VoteKind) -> &BTreeMap<Address, Vec<SignedVote>> {
        match kind {
            VoteKind::Prevote => &self.prevotes,
            VoteKind::Precommit => &self.precommits,
        }
    }

    fn of_mut(&mut self, kind: VoteKind) -> &mut BTreeMap<Address, Vec<SignedVote>> {
        match kind {
            VoteKind::Prevote => &mut self.prevotes,
            VoteKind::Precommit => &mut self.precommits,
        }
    }

    /// Caller has verified the signature.
    fn insert(&mut self, sv: &SignedVote) -> Inserted {
        let votes = self.of_mut(sv.vote.kind).entry(sv.voter).or_default();
        if votes.iter().any(|v| v.vote.block == sv.vote.block) {
            return Inserted::Known;
        }
        let first = votes.first().cloned();
        if votes.len() < MAX_VOTES_PER_VOTER {
            votes.push(sv.clone());
        }
        match first {
            Some(f) => Inserted::Conflict(f),
            None => Inserted::New,
        }
    }

    fn has(&self, sv: &SignedVote) -> bool {
        self.of(sv.vote.kind)
            .get(&sv.voter)
            // The signature too: a copy with forged bytes must still be checked
            // (and refused) rather than forwarded as known.
            .is_some_and(|vs| {
                vs.iter()
                    .any(|v| v.vote.block == sv.vote.block && v.signature == sv.signature)
            })
    }

    /// Distinct voters that voted in this step at all.
    fn voters(&self, kind: VoteKind) -> usize {
        self.of(kind).len()
    }

    fn count_for(&self, kind: VoteKind, block: Option<Hash>) -> usize {
        self.votes_for(kind, block).count()
    }

    fn votes_for(&self, kind: VoteKind, block: Option<Hash>) -> impl Iterator<Item = &SignedVote> {
        self.of(kind)
            .values()
            .filter_map(move |vs| vs.iter().find(|v| v.vote.block == block))
    }

    /// Blocks (not nil) voted for in this step.
    fn blocks(&self, kind: VoteKind) -> BTreeSet<Hash> {
        self.of(kind)
            .values()
            .flat_map(|vs| vs.iter().filter_map(|v| v.vote.block))
            .collect()
    }
}

/// Counters a driver may report.
#[derive(Clone, Debug, Default)]
pub struct ReplicaStats {
    pub rejected_messages: u64,
    pub evidence_submitted: u64,
    pub rounds_skipped: u64,
}

pub struct Replica {
    key: Keypair,
    me: Address,
    runtime: Runtime,
    store: StateStore,
    mempool: Mempool<PooledTx>,
    /// Relay transactions by id: checked against committed state on entry
    /// and after every commit, proposed ahead of the mempool.
    relays: BTreeMap<Hash, PooledRelay>,
    /// Relays waiting for an epoch this shard does not know yet, with the
    /// height they arrived at (dropped after `FUTURE_RELAY_HEIGHTS`).
    future_relays: BTreeMap<Hash, (PooledTx, Height)>,
    config: ReplicaConfig,
    now: TimeMs,

    height: Height,
    round: Round,
    step: Step,
    committee: Committee,
    randomness: Hash,
    locked: Option<(Round, Hash)>,
    valid: Option<(Round, Hash)>,
    blocks: BTreeMap<Hash, Arc<Block>>,
    /// Transactions of stored blocks, hashed once, with whether each is the
    /// byte-identical copy from our (signature-checked) pool.
    bodies: BTreeMap<Hash, Vec<(PooledTx, bool)>>,
    executed: BTreeMap<Hash, Executed>,
    invalid: BTreeSet<Hash>,
    proposals: BTreeMap<Round, SignedProposal>,
    votes: BTreeMap<Round, RoundVotes>,
    round_senders: BTreeMap<Round, BTreeSet<Address>>,
    /// Highest round beyond `round + 1` each member was seen voting in: enough
    /// for the round-skip rule without storing far-future votes.
    future_rounds: BTreeMap<Address, Round>,
    /// Last time each peer was served sync data or old votes (rate limit).
    served: BTreeMap<PeerId, TimeMs>,
    /// Ids of transactions this replica pooled lately, by signature, so a
    /// gossiped copy of one still pooled is dropped before it is encoded and
    /// hashed again (relay batches are tens of KB, and every replica
    /// re-gossips stale ones). Bounded: cleared at `SEEN_TXS`.
    seen_txs: std::collections::HashMap<[u8; 64], Hash>,
    /// Chunk answers per peer in the current gossip interval: (its start, count).
    chunks_served: BTreeMap<PeerId, (TimeMs, usize)>,
    /// Peers whose status said they were one height behind: (that height,
    /// when first seen). See `on_status`.
    one_behind: BTreeMap<PeerId, (Height, TimeMs)>,
    proposer_cache: BTreeMap<Round, Address>,
    sent_votes: BTreeMap<(Round, VoteKind), SignedVote>,
    sent_proposals: BTreeMap<Round, SignedProposal>,
    timeouts: BTreeSet<(TimeMs, Timeout, Round)>,
    timers_started: BTreeSet<(Round, VoteKind)>,
    locked_in_round: BTreeSet<Round>,
    next_gossip: TimeMs,
    last_sync_request: TimeMs,
    reported: BTreeSet<Hash>,
    /// The last randomness duty pooled: (epoch, after Q was fixed, at height).
    beacon_sent: Option<(Epoch, bool, Height)>,
    outputs: Vec<Output>,
    stats: ReplicaStats,
}

impl Replica {
    /// Opens (or initializes from `genesis`) the replica whose data is in `db`.
    /// After a crash this restores the last committed block and the
    /// write-ahead record, so the replica never signs a conflicting message.
    pub fn open(
        db: &sled::Db,
        key: Keypair,
        runtime: Runtime,
        genesis: &Genesis,
        config: ReplicaConfig,
        now: TimeMs,
    ) -> Result<Replica> {
        let mut store = StateStore::open(db)?;
        store.set_index_txs(config.index_txs);
        runtime.init_genesis(&mut store, genesis)?;
        let me = key.address();
        let mut config = config;
        config.mempool.min_fee_per_byte = runtime.params().min_fee_per_byte;
        let mut r = Replica {
            key,
            me,
            mempool: Mempool::new(config.mempool.clone()),
            relays: BTreeMap::new(),
            future_relays: BTreeMap::new(),
            runtime,
            store,
            config,
            now,
            height: 0,
            round: 0,
            step: Step::Propose,
            committee: Committee {
                epoch: 0,
                members: vec![],
                believable: vec![],
                weights: vec![],
            },
            randomness: Hash::ZERO,
            locked: None,
            valid: None,
            blocks: BTreeMap::new(),
            bodies: BTreeMap::new(),
            executed: BTreeMap::new(),
            invalid: BTreeSet::new(),
            proposals: BTreeMap::new(),
            votes: BTreeMap::new(),
            round_senders: BTreeMap::new(),
            future_rounds: BTreeMap::new(),
            served: BTreeMap::new(),
            seen_txs: std::collections::HashMap::new(),
            one_behind: BTreeMap::new(),
            chunks_served: BTreeMap::new(),
            proposer_cache: BTreeMap::new(),
            sent_votes: BTreeMap::new(),
            sent_proposals: BTreeMap::new(),
            timeouts: BTreeSet::new(),
            timers_started: BTreeSet::new(),
            locked_in_round: BTreeSet::new(),
            next_gossip: now,
            last_sync_request: 0,
            reported: BTreeSet::new(),
            beacon_sent: None,
            outputs: Vec::new(),
            stats: ReplicaStats::default(),
        };
        r.enter_height()?;
        let mut start_round = 0;
        if let Some(bytes) = r.store.wal_get(WAL_RECORD)? {
            let wal: WalRecord = codec::decode("wal record", &bytes, 16 * 1024 * 1024)?;
            if wal.height == r.height {
                for hash in wal.locked.iter().chain(wal.valid.iter()).map(|(_, h)| *h) {
                    r.restore_block(&hash)?;
                }
                for p in &wal.sent_proposals {
                    r.restore_block(&p.proposal.block)?;
                    r.sent_proposals.insert(p.proposal.round, p.clone());
                }
                for v in wal.sent_votes {
                    r.sent_votes.insert((v.vote.round, v.vote.kind), v);
                }
                r.locked = wal.locked;
                r.valid = wal.valid;
                start_round = wal.round;
            }
        }
        r.run_beacon_duties();
        r.start_round(start_round)?;
        r.check_rules()?;
        Ok(r)
    }

    fn restore_block(&mut self, hash: &Hash) -> Result<()> {
        let mut key = b"block/".to_vec();
        key.extend_from_slice(&hash.0);
        if let Some(b) = self.store.wal_get(&key)? {
            let block: Block = codec::decode("wal block", &b, 64 * 1024 * 1024)?;
            self.store_block(&Arc::new(block))?;
        }
        Ok(())
    }

    pub fn address(&self) -> Address {
        self.me
    }

    /// The height being decided (one above the last committed block).
    pub fn height(&self) -> Height {
        self.height
    }

    pub fn round(&self) -> Round {
        self.round
    }

    pub fn store(&self) -> &StateStore {
        &self.store
    }

    pub fn committee(&self) -> &Committee {
        &self.committee
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The nonce a new transaction from `sender` should carry: after its
    /// committed nonce and any of its transactions pooled here.
    pub fn next_nonce(&self, sender: &Address) -> Result<u64> {
        let account = committee::read_account(&self.store, sender)?;
        Ok(self.mempool.next_nonce(sender, account.nonce))
    }

    /// Whether transaction `id` waits in this replica's pool (user or relay).
    pub fn is_pooled(&self, id: &Hash) -> bool {
        self.mempool.contains(id) || self.relays.contains_key(id)
    }

    /// `sender`'s next pooled transactions (from its account's nonce on,
    /// at most `max`): what a node re-gossips for keys of its own that are
    /// not the replica's.
    pub fn pooled_from(&self, sender: &Address, max: u64) -> Result<Vec<SignedTransaction>> {
        let next = committee::read_account(&self.store, sender)?.nonce;
        Ok(self
            .mempool
            .sender_range(sender, next..next.saturating_add(max))
            .map(|t| (*t.tx).clone())
            .collect())
    }

    pub fn mempool_len(&self) -> usize {
        self.mempool.len()
    }

    /// Whether this member posts its randomness reveals (see
    /// [`ReplicaConfig::reveal_randomness`]).
    pub fn set_reveal_randomness(&mut self, on: bool) {
        self.config.reveal_randomness = on;
    }

    pub fn stats(&self) -> &ReplicaStats {
        &self.stats
    }

    /// The next time at which `tick` has work to do.
    pub fn next_deadline(&self) -> TimeMs {
        let t = self.timeouts.iter().next().map(|(t, _, _)| *t);
        t.map_or(self.next_gossip, |t| t.min(self.next_gossip))
    }

    fn drain(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    // ---- inputs -------------------------------------------------------

    /// Advances the clock: fires due timeouts and periodic gossip.
    pub fn tick(&mut self, now: TimeMs) -> Result<Vec<Output>> {
        self.now = self.now.max(now);
        while let Some(&(t, kind, round)) = self.timeouts.iter().next() {
            if t > self.now {
                break;
            }
            self.timeouts.remove(&(t, kind, round));
            self.on_timeout(kind, round)?;
            self.check_rules()?;
        }
        if self.now >= self.next_gossip {
            self.next_gossip = self.now + self.config.gossip_interval_ms;
            self.gossip();
        }
        Ok(self.drain())
    }

    /// Verifies and pools transactions; returns each one's id or why it was refused.
    /// Accepted ones are broadcast to peers.
    pub fn submit(
        &mut self,
        txs: Vec<SignedTransaction>,
        now: TimeMs,
    ) -> (Vec<Result<Hash>>, Vec<Output>) {
        self.now = self.now.max(now);
        let (results, accepted) = self.admit_txs(txs, true);
        if !accepted.is_empty() {
            let txs = accepted.iter().map(|p| (*p.tx).clone()).collect();
            self.outputs
                .push(Output::Broadcast(Arc::new(Message::Txs(txs))));
            if let Err(e) = self.work_arrived() {
                tracing::warn!(error = %e, "scheduling a proposal failed");
            }
        }
        (results, self.drain())
    }

    /// Handles one message from a peer. An `Err` means the message was bad
    /// (the transport may penalize the peer); state is unchanged by it.
    pub fn handle(&mut self, from: PeerId, msg: &Message, now: TimeMs) -> Result<Vec<Output>> {
        self.now = self.now.max(now);
        let r = self.on_message(from, msg);
        if r.is_err() {
            self.stats.rejected_messages += 1;
        }
        r?;
        self.check_rules()?;
        Ok(self.drain())
    }

    fn on_message(&mut self, from: PeerId, msg: &Message) -> Result<()> {
        match msg {
            Message::Txs(txs) => {
                let (results, accepted) = self.admit_txs(txs.clone(), false);
                if !accepted.is_empty() {
                    self.work_arrived()?;
                }
                // Mempool refusals (known, nonce too low) are normal under gossip;
                // only a bad signature or encoding marks the peer.
                if let Some(Err(e)) = results.into_iter().find(|r| {
                    matches!(
                        r,
                        Err(ChainError::BadSignature(_)) | Err(ChainError::TooLarge { .. })
                    )
                }) {
                    return Err(e);
                }
                Ok(())
            }
            Message::Proposal {
                proposal,
                block,
                pol,
            } => {
                self.on_proposal(proposal, block)?;
                self.on_pol(proposal, pol)
            }
            Message::Vote(v) => self.on_vote(v),
            Message::Polka {
                round,
                block,
                votes,
            } => self.on_polka(*round, block, votes),
            Message::Status { height, round } => {
                if *height < self.height {
                    if self.lagging(from, *height) && self.may_serve(from) {
                        self.serve_sync(from, *height)?;
                    }
                } else if *height == self.height && *round < self.round {
                    if self.may_serve(from) {
                        self.send_round_votes(from, *round);
                    }
                } else if *height > self.height
                    && self.now >= self.last_sync_request + self.config.gossip_interval_ms
                {
                    self.last_sync_request = self.now;
                    self.outputs.push(Output::Send(
                        from,
                        Arc::new(Message::SyncRequest { from: self.height }),
                    ));
                }
                Ok(())
            }
            Message::SyncRequest { from: h } => {
                if self.may_serve(from) {
                    self.serve_sync(from, *h)?;
                }
                Ok(())
            }
            Message::SnapshotRequest => {
                if self.may_serve(from) {
                    self.offer_snapshot(from)?;
                }
                Ok(())
            }
            Message::ChunkRequest { height, index } => {
                // A syncing node keeps a few requests out per peer; more
                // than a few per gossip interval is a flood: ignored (an
                // honest one asks again elsewhere after `RETRY_MS`).
                if !self.chunk_budget(from) {
                    return Ok(());
                }
                match self.store.snapshot_chunk(*height, *index)? {
                    Some(chunk) => self.outputs.push(Output::Send(
                        from,
                        Arc::new(Message::Chunk {
                            height: *height,
                            chunk,
                        }),
                    )),
                    // That snapshot is gone (a newer epoch's replaced it):
                    // say which one we have, so the syncing node moves on.
                    None => {
                        if self.may_serve(from) {
                            self.offer_snapshot(from)?;
                        }
                    }
                }
                Ok(())
            }
            // For a fast-syncing node, not a running replica.
            Message::SnapshotOffer(_) | Message::Chunk { .. } => Ok(()),
            Message::SyncResponse { blocks } => {
                if blocks.len() > MAX_SYNC_BLOCKS as usize {
                    return Err(ChainError::TooLarge {
                        what: "sync response",
                        len: blocks.len(),
                        max: MAX_SYNC_BLOCKS as usize,
                    });
                }
                for (block, cert) in blocks {
                    if block.header.height < self.height {
                        continue;
                    }
                    if block.header.height > self.height {
                        break;
                    }
                    self.commit_synced(block, cert)?;
                }
                Ok(())
            }
        }
    }

    /// Takes one of `peer`'s [`CHUNKS_PER_INTERVAL`] chunk answers of the
    /// current gossip interval, if any is left.
    fn chunk_budget(&mut self, peer: PeerId) -> bool {
        let interval = self.config.gossip_interval_ms.max(1);
        let now = self.now;
        if self.chunks_served.len() >= 4_096 {
            self.chunks_served.clear();
        }
        let (since, used) = self.chunks_served.entry(peer).or_insert((now, 0));
        if now >= *since + interval {
            (*since, *used) = (now, 0);
        }
        if *used >= CHUNKS_PER_INTERVAL {
            return false;
        }
        *used += 1;
        true
    }

    /// Whether a peer whose status says it is at `height` (below ours)
    /// needs blocks. Two or more behind, at once. One behind, usually it is
    /// only collecting the last precommits and commits by itself a moment
    /// later (and a status is often stale when it arrives), so only once it
    /// stayed there a gossip interval: sending it the block at once doubles
    /// the traffic of a big block for nothing.
    fn lagging(&mut self, peer: PeerId, height: Height) -> bool {
        if height + 1 < self.height {
            self.one_behind.remove(&peer);
            return true;
        }
        if self.one_behind.len() >= 4_096 {
            self.one_behind.clear();
        }
        let now = self.now;
        let since = match self.one_behind.get(&peer) {
            Some(&(h, t)) if h == height => t,
            _ => {
                self.one_behind.insert(peer, (height, now));
                now
            }
        };
        now >= since + self.config.gossip_interval_ms
    }

    /// Sends `to` an offer of our newest snapshot (or says we have none).
    fn offer_snapshot(&mut self, to: PeerId) -> Result<()> {
        let offer = match self.store.snapshot_heights()?.last() {
            Some(&h) => self
                .store
                .snapshot_manifest(h)?
                .map(|(manifest, header, cert)| {
                    Box::new(SnapshotOffer {
                        manifest,
                        header,
                        cert,
                    })
                }),
            None => None,
        };
        self.outputs
            .push(Output::Send(to, Arc::new(Message::SnapshotOffer(offer))));
        Ok(())
    }

    /// At most one sync response or vote catch-up per peer and gossip
    /// interval: asking is cheap, answering is not.
    fn may_serve(&mut self, peer: PeerId) -> bool {
        if self
            .served
            .get(&peer)
            .is_some_and(|t| self.now < t + self.config.gossip_interval_ms)
        {
            return false;
        }
        if self.served.len() >= 4_096 {
            self.served.clear();
        }
        self.served.insert(peer, self.now);
        true
    }

    /// A peer at our height but an older round may have missed votes that
    /// moved us on (Tendermint assumes gossip delivers them eventually): send
    /// it what we hold for its round and for ours.
    fn send_round_votes(&mut self, to: PeerId, round: Round) {
        let mut out = Vec::new();
        for r in [round, self.round] {
            if let Some(rv) = self.votes.get(&r) {
                for kind in [VoteKind::Prevote, VoteKind::Precommit] {
                    for votes in rv.of(kind).values() {
                        out.extend(votes.iter().cloned());
                    }
                }
            }
        }
        for v in out {
            self.outputs
                .push(Output::Send(to, Arc::new(Message::Vote(v))));
        }
    }

    fn serve_sync(&mut self, to: PeerId, from: Height) -> Result<()> {
        let from = from.max(1);
        let mut blocks = Vec::new();
        let mut bytes = 0usize;
        let mut h = from;
        // Stay well inside MAX_MESSAGE_BYTES; always send at least one block.
        while h < self.height && blocks.len() < MAX_SYNC_BLOCKS as usize {
            match self.store.block(h)? {
                Some(b) => {
                    bytes += codec::encode(&b).len();
                    if !blocks.is_empty() && bytes > MAX_MESSAGE_BYTES / 2 {
                        break;
                    }
                    blocks.push(b);
                }
                None => break,
            }
            h += 1;
        }
        if !blocks.is_empty() {
            self.outputs
                .push(Output::Send(to, Arc::new(Message::SyncResponse { blocks })));
        }
        Ok(())
    }

    /// Returns each transaction's outcome and the newly pooled ones (shared,
    /// not copied: only the submitting replica needs copies, to gossip).
    /// `submitted`: from a client (relays get the full would-apply check, so
    /// the submitter learns why one does not apply) rather than gossiped by
    /// a peer (relays get the proof checks only; see `admit_relay`).
    fn admit_txs(
        &mut self,
        txs: Vec<SignedTransaction>,
        submitted: bool,
    ) -> (Vec<Result<Hash>>, Vec<PooledTx>) {
        let chain_id = self.runtime.params().chain_id.clone();
        let mut results: Vec<Result<Hash>> = Vec::with_capacity(txs.len());
        let mut candidates = Vec::new();
        for tx in txs {
            // A copy of a transaction still pooled: a valid signature is
            // over the transaction's id, so the same signature is the same
            // transaction (a tampered body with a copied signature would
            // fail its check anyway). One that left the pool unincluded (a
            // relay found stale, say) may come again and takes the full
            // path, as do clients' submissions.
            if let Some(id) = self
                .seen_txs
                .get(&tx.signature.0)
                .filter(|id| !submitted && self.pooled(id))
            {
                results.push(Ok(*id));
                continue;
            }
            let p = PooledTx::new(tx);
            if p.tx.tx.chain_id != chain_id {
                results.push(Err(ChainError::WrongChainId {
                    expected: chain_id.0.clone(),
                    got: p.tx.tx.chain_id.0.clone(),
                }));
            } else if p.tx.tx.shard != self.runtime.shard() {
                results.push(Err(ChainError::WrongShard {
                    expected: self.runtime.shard(),
                    got: p.tx.tx.shard,
                }));
            } else if p.len > crate::tx::MAX_TX_BYTES {
                results.push(Err(ChainError::TooLarge {
                    what: "transaction",
                    len: p.len,
                    max: crate::tx::MAX_TX_BYTES,
                }));
            } else if self.mempool.contains(&p.id) || self.relays.contains_key(&p.id) {
                results.push(Ok(p.id));
            } else {
                results.push(Ok(p.id));
                candidates.push((results.len() - 1, p));
            }
        }
        let ok = verify_txs(candidates.iter().map(|(_, p)| p));
        let mut accepted = Vec::new();
        for ((i, p), sig_ok) in candidates.into_iter().zip(ok) {
            if !sig_ok {
                results[i] = Err(ChainError::BadSignature("transaction"));
                continue;
            }
            if is_relay(&p) {
                match self.admit_relay(&p, submitted) {
                    Ok(()) => accepted.push(p),
                    Err(e) => results[i] = Err(e),
                }
                continue;
            }
            let nonce = match committee::read_account(&self.store, &p.tx.tx.sender) {
                Ok(a) => a.nonce,
                Err(e) => {
                    results[i] = Err(e);
                    continue;
                }
            };
            match self.mempool.insert(p.clone(), nonce, self.height) {
                Ok(()) => accepted.push(p),
                Err(e) => results[i] = Err(mempool_error(e)),
            }
        }
        if self.seen_txs.len() + accepted.len() > SEEN_TXS {
            self.seen_txs.clear();
        }
        self.seen_txs
            .extend(accepted.iter().map(|p| (p.tx.signature.0, p.id)));
        (results, accepted)
    }

    /// Whether transaction `id` is in one of the pools.
    fn pooled(&self, id: &Hash) -> bool {
        self.mempool.contains(id)
            || self.relays.contains_key(id)
            || self.future_relays.contains_key(id)
    }

    /// Pools a relay transaction: a submitted one if it would apply to
    /// committed state now; a gossiped one if its proofs verify (a peer's
    /// submitter already ran the full check, and executing every relay on
    /// every replica twice, here and in the block, was a quarter of the
    /// cost of a cross-shard transfer). A stale one costs a proposer one
    /// failed check and leaves at the next pool re-check.
    fn admit_relay(&mut self, p: &PooledTx, submitted: bool) -> Result<()> {
        if self.relays.len() >= MAX_RELAYS {
            return Err(ChainError::Mempool("the relay pool is full".into()));
        }
        let env = self.env_for(0, self.me, self.now);
        let checked = if submitted {
            self.runtime.check_relay(&self.store, &env, p)
        } else {
            self.runtime.check_relay_proofs(&self.store, &env, p)
        };
        match checked {
            Ok(()) => {
                self.relays
                    .insert(p.id, PooledRelay::new(p.clone(), self.height));
            }
            // A proof from an epoch this shard's light client has not reached
            // yet: hold it until the epoch change commits (its relayer sends
            // both), rather than make every relayer retry.
            Err(ChainError::UnknownEpoch { .. }) if self.future_relays.len() < MAX_RELAYS => {
                self.future_relays.insert(p.id, (p.clone(), self.height));
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    fn on_proposal(&mut self, sp: &SignedProposal, block: &Arc<Block>) -> Result<()> {
        let p = &sp.proposal;
        let params = self.runtime.params();
        if p.chain_id != params.chain_id {
            return Err(ChainError::WrongChainId {
                expected: params.chain_id.0.clone(),
                got: p.chain_id.0.clone(),
            });
        }
        if p.shard != self.runtime.shard() {
            return Err(ChainError::WrongShard {
                expected: self.runtime.shard(),
                got: p.shard,
            });
        }
        // Stale or early: status gossip and re-sends resolve it. Checked
        // first even then, as the node forwards what we accept.
        sp.verify()?;
        if p.height != self.height || p.round > self.round + 1 {
            return Ok(());
        }
        if sp.proposer != self.proposer(p.round)? {
            return Err(ChainError::InvalidBlock(format!(
                "{} is not the proposer of round {}",
                sp.proposer, p.round
            )));
        }
        if block.hash() != p.block {
            return Err(ChainError::InvalidBlock(
                "proposal does not match block".into(),
            ));
        }
        if block.header.round > p.round || p.valid_round.is_some_and(|vr| vr >= p.round) {
            return Err(ChainError::InvalidBlock(
                "proposal rounds are inconsistent".into(),
            ));
        }
        if let Some(existing) = self.proposals.get(&p.round) {
            if existing.proposal.block != p.block {
                let ev = Evidence::DuplicateProposal {
                    a: existing.clone(),
                    b: sp.clone(),
                };
                self.report(ev)?;
            }
            return Ok(());
        }
        self.store_block(block)?;
        self.round_senders
            .entry(p.round)
            .or_default()
            .insert(sp.proposer);
        self.proposals.insert(p.round, sp.clone());
        Ok(())
    }

    /// Keeps a block body after checking it matches its header's tx root, so
    /// a peer cannot pin a tampered body (say, one bad signature) to a real
    /// block hash. Each transaction is hashed once here.
    fn store_block(&mut self, block: &Arc<Block>) -> Result<()> {
        let hash = block.hash();
        if self.blocks.contains_key(&hash) {
            return Ok(());
        }
        let body: Vec<(PooledTx, bool)> = block
            .txs
            .iter()
            .map(|tx| match self.mempool.get(&tx.id()) {
                // Byte-identical to the pooled copy: share it (its leaf is known).
                Some(pooled) if *pooled.tx == *tx => (pooled.clone(), true),
                _ => (PooledTx::new(tx.clone()), false),
            })
            .collect();
        let leaves: Vec<Hash> = body.iter().map(|(p, _)| p.leaf).collect();
        if crate::hash::merkle_root(&leaves) != block.header.tx_root {
            return Err(ChainError::InvalidBlock(
                "transactions do not match the header's tx root".into(),
            ));
        }
        self.blocks.insert(hash, block.clone());
        self.bodies.insert(hash, body);
        Ok(())
    }

    /// A relayed prevote quorum: adopt its block as the valid value if it is
    /// from a later round than ours. Safe: a re-proposal still needs the
    /// quorum, and no quorum for another block can follow a decision.
    fn on_polka(&mut self, round: Round, block: &Arc<Block>, votes: &[SignedVote]) -> Result<()> {
        if block.header.height != self.height {
            return Ok(());
        }
        if votes.len() > self.committee.size() {
            return Err(ChainError::TooLarge {
                what: "polka",
                len: votes.len(),
                max: self.committee.size(),
            });
        }
        let hash = block.hash();
        for v in votes {
            let w = &v.vote;
            if w.kind != VoteKind::Prevote || w.round != round || w.block != Some(hash) {
                return Err(ChainError::InvalidBlock(
                    "polka vote is not a prevote for the block in its round".into(),
                ));
            }
            self.on_vote(v)?;
        }
        let quorum = self.votes.get(&round).is_some_and(|rv| {
            rv.count_for(VoteKind::Prevote, Some(hash)) >= self.committee.quorum()
        });
        if !quorum || self.valid.is_some_and(|(vr, _)| vr >= round) {
            return Ok(());
        }
        self.store_block(block)?;
        if self.is_valid(&hash, false) {
            self.save_block(block)?;
            self.valid = Some((round, hash));
            self.persist_wal()?;
        }
        Ok(())
    }

    /// Adds a proposal's proof-of-lock prevotes to the vote sets.
    fn on_pol(&mut self, sp: &SignedProposal, pol: &[SignedVote]) -> Result<()> {
        let p = &sp.proposal;
        if pol.is_empty() || p.height != self.height {
            return Ok(());
        }
        let Some(vr) = p.valid_round else {
            return Err(ChainError::InvalidBlock(
                "proof-of-lock without a valid round".into(),
            ));
        };
        if pol.len() > self.committee.size() {
            return Err(ChainError::TooLarge {
                what: "proof-of-lock",
                len: pol.len(),
                max: self.committee.size(),
            });
        }
        for v in pol {
            let w = &v.vote;
            if w.kind != VoteKind::Prevote || w.round != vr || w.block != Some(p.block) {
                return Err(ChainError::InvalidBlock(
                    "proof-of-lock vote is not a prevote for the block in its valid round".into(),
                ));
            }
            self.on_vote(v)?;
        }
        Ok(())
    }

    fn on_vote(&mut self, sv: &SignedVote) -> Result<()> {
        let v = &sv.vote;
        let params = self.runtime.params();
        if v.chain_id != params.chain_id {
            return Err(ChainError::WrongChainId {
                expected: params.chain_id.0.clone(),
                got: v.chain_id.0.clone(),
            });
        }
        if v.shard != self.runtime.shard() {
            return Err(ChainError::WrongShard {
                expected: self.runtime.shard(),
                got: v.shard,
            });
        }
        if v.height != self.height {
            // Not ours to count, but the node forwards what we accept: only a
            // genuine vote may go on (membership of its epoch is the node's check).
            return sv.verify();
        }
        if v.epoch != self.committee.epoch || !self.committee.is_member(&sv.voter) {
            return Err(ChainError::NotCommitteeMember(sv.voter));
        }
        if self.votes.get(&v.round).is_some_and(|rv| rv.has(sv)) {
            return Ok(());
        }
        if v.round > self.round + 1 {
            // Far ahead: remember only how far this member got.
            if self
                .future_rounds
                .get(&sv.voter)
                .is_none_or(|r| *r < v.round)
            {
                sv.verify()?;
                self.future_rounds.insert(sv.voter, v.round);
            }
            return Ok(());
        }
        sv.verify()?;
        let inserted = self.votes.entry(v.round).or_default().insert(sv);
        self.round_senders
            .entry(v.round)
            .or_default()
            .insert(sv.voter);
        if let Inserted::Conflict(first) = inserted {
            self.report(Evidence::DuplicateVote {
                a: first,
                b: sv.clone(),
            })?;
        }
        Ok(())
    }

    /// On the beacon: submits evidence another shard's replica observed
    /// (see [`Output::Evidence`]) as this validator's evidence transaction.
    pub fn report_evidence(&mut self, ev: &Evidence, now: TimeMs) -> Result<Vec<Output>> {
        self.now = self.now.max(now);
        if self.runtime.shard() != crate::shard::BEACON {
            return Err(ChainError::WrongShard {
                expected: crate::shard::BEACON,
                got: self.runtime.shard(),
            });
        }
        self.report(ev.clone())?;
        Ok(self.drain())
    }

    /// Turns observed equivocation into an evidence transaction from this validator.
    fn report(&mut self, ev: Evidence) -> Result<()> {
        let (offender, key) = ev.verify()?;
        if !self.reported.insert(key) {
            return Ok(());
        }
        if self.runtime.shard() != crate::shard::BEACON {
            tracing::info!(%offender, shard = self.runtime.shard(), "equivocation observed; evidence goes to the beacon");
            self.outputs.push(Output::Evidence(Arc::new(ev)));
            return Ok(());
        }
        tracing::info!(%offender, "equivocation observed; submitting evidence");
        if self.submit_own(LedgerCall::Evidence(Box::new(ev)), 1_000)? {
            self.stats.evidence_submitted += 1;
        }
        Ok(())
    }

    /// Signs, pools and broadcasts a core call from this validator, paying
    /// the minimum fee. Returns whether the pool took it.
    fn submit_own(&mut self, call: LedgerCall, lifetime: Height) -> Result<bool> {
        let params = self.runtime.params().clone();
        // Next nonce after our own pooled transactions; if one was lost, the
        // pool no longer holds it and we fill the gap instead of waiting.
        let acct = committee::read_account(&self.store, &self.me)?;
        let nonce = self.mempool.next_nonce(&self.me, acct.nonce);
        let mut tx = Transaction {
            chain_id: params.chain_id.clone(),
            shard: self.runtime.shard(),
            sender: self.me,
            nonce,
            fee: 0,
            expires_at: self.height + lifetime,
            call: LedgerModule::call(&call),
        };
        let len = codec::encode(&tx.clone().sign(&self.key)).len() as u64;
        tx.fee = params.min_fee_per_byte.saturating_mul(len);
        let signed = tx.sign(&self.key);
        let (results, accepted) = self.admit_txs(vec![signed], true);
        if !accepted.is_empty() {
            let txs = accepted.iter().map(|p| (*p.tx).clone()).collect();
            self.outputs
                .push(Output::Broadcast(Arc::new(Message::Txs(txs))));
        }
        Ok(matches!(results.first(), Some(Ok(_))))
    }

    /// Drops relay transactions that no longer apply: the ones the block
    /// just committed included at once, any other made stale (another
    /// relayer was first) once it has been pooled a multiple of
    /// [`RELAY_RECHECK`] heights, or at once when the pool is half full. Until then a stale one costs a proposer one
    /// failed check (it is left out of the block).
    fn refresh_relays(&mut self, included: &[Hash]) {
        if self.relays.is_empty() && self.future_relays.is_empty() {
            return;
        }
        for id in included {
            self.relays.remove(id);
        }
        let env = self.env_for(0, self.me, self.now);
        let (runtime, store, height) = (&self.runtime, &self.store, self.height);
        // Each relay is re-executed once every RELAY_RECHECK heights of its
        // age (most are included before the first); all when half full.
        let all = self.relays.len() >= MAX_RELAYS / 2;
        self.relays.retain(|_, PooledRelay { tx: p, since, .. }| {
            let age = height.saturating_sub(*since);
            let due = all || (age > 0 && age % RELAY_RECHECK == 0);
            !due || runtime.check_relay(store, &env, p).is_ok()
        });
        let mut ready = Vec::new();
        self.future_relays
            .retain(|id, (p, since)| match runtime.check_relay(store, &env, p) {
                Ok(()) => {
                    ready.push((*id, PooledRelay::new(p.clone(), height)));
                    false
                }
                Err(ChainError::UnknownEpoch { .. }) => height < *since + FUTURE_RELAY_HEIGHTS,
                Err(_) => false,
            });
        self.relays.extend(ready);
    }

    /// The epoch change a beacon block made, with a proof of the new
    /// `EpochInfo` against the state just committed.
    fn epoch_change(
        &self,
        block: &Arc<Block>,
        cert: &CommitCertificate,
    ) -> Result<Option<Arc<EpochChange>>> {
        if self.runtime.shard() != crate::shard::BEACON
            || block.header.epoch >= self.committee_epoch_after_commit()?
        {
            return Ok(None);
        }
        let e = block.header.epoch + 1;
        let (value, proof) = self.store.prove(&light_client::epoch_key(e))?;
        let info = match value {
            Some(bytes) => codec::decode("epoch info", &bytes, crate::module::MAX_STATE_VALUE)?,
            None => return Err(ChainError::Storage(format!("epoch {e} info missing"))),
        };
        Ok(Some(Arc::new(EpochChange {
            header: block.header.clone(),
            cert: cert.clone(),
            info,
            proof,
        })))
    }

    fn committee_epoch_after_commit(&self) -> Result<Epoch> {
        light_client::latest_epoch(&self.store)
    }

    fn run_beacon_duties(&mut self) {
        // A failed duty (e.g. our account cannot pay the fee) must not stop consensus.
        if let Err(e) = self.beacon_duties() {
            tracing::warn!(error = %e, height = self.height, "randomness duty failed");
        }
    }

    /// The randomness beacon's duties of a committee member, checked against
    /// committed state at every height: deal while the window is open, reveal
    /// once Q is final. A pooled duty is not repeated until it has had
    /// `BEACON_RETRY` heights to land (it may have been lost).
    fn beacon_duties(&mut self) -> Result<()> {
        let Some(round) = committee::read::<RandomnessRound>(&self.store, beacon::K_ROUND)? else {
            return Ok(());
        };
        let Some(index) = round.index_of(&self.me) else {
            return Ok(());
        };
        if self.beacon_sent.is_some_and(|(e, q, h)| {
            e == round.epoch && q == round.qualified.is_some() && self.height < h + BEACON_RETRY
        }) {
            return Ok(());
        }
        let chain_id = self.runtime.params().chain_id.clone();
        let call = match &round.qualified {
            None => {
                if self.height > round.window_end
                    || self.store.read(&beacon::dealing_key(&self.me))?.is_some()
                {
                    return Ok(());
                }
                let cx = beacon::context(&chain_id, round.epoch, &self.me);
                let seed = self.key.dealing_seed(&chain_id, round.epoch);
                let dealing = pvss::deal(&cx, &round.keys, round.threshold(), &seed)?;
                LedgerCall::Deal {
                    epoch: round.epoch,
                    dealing: Box::new(dealing),
                }
            }
            Some(q) => {
                if !self.config.reveal_randomness || round.revealed.contains(&self.me) {
                    return Ok(());
                }
                let pvss_key = self.key.pvss();
                let mut shares = Vec::with_capacity(q.len());
                for dealer in q {
                    let dealing: Dealing = committee::read(
                        &self.store,
                        &beacon::dealing_key(dealer),
                    )?
                    .ok_or_else(|| {
                        ChainError::Storage(format!("qualified dealing of {dealer} missing"))
                    })?;
                    let cx = beacon::context(&chain_id, round.epoch, dealer);
                    shares.push(pvss::decrypt_share(
                        &cx,
                        &pvss_key,
                        index as u32 + 1,
                        &dealing,
                    )?);
                }
                LedgerCall::Reveal {
                    epoch: round.epoch,
                    shares,
                }
            }
        };
        self.submit_own(call, BEACON_RETRY)?;
        self.beacon_sent = Some((round.epoch, round.qualified.is_some(), self.height));
        Ok(())
    }

    // ---- Tendermint ---------------------------------------------------

    fn proposer(&mut self, round: Round) -> Result<Address> {
        if let Some(a) = self.proposer_cache.get(&round) {
            return Ok(*a);
        }
        let params = self.runtime.params();
        let a = committee::proposer(
            &self.committee,
            &self.store,
            params,
            &self.randomness,
            self.runtime.shard(),
            self.height,
            round,
        )?;
        self.proposer_cache.insert(round, a);
        Ok(a)
    }

    fn timeout_after(&self, base: TimeMs, round: Round) -> TimeMs {
        self.now + base + self.config.timeout_delta_ms * round as u64
    }

    fn schedule(&mut self, kind: Timeout, at: TimeMs, round: Round) {
        self.timeouts.insert((at, kind, round));
    }

    fn start_round(&mut self, round: Round) -> Result<()> {
        tracing::debug!(me = ?self.me, height = self.height, round, now = self.now, "start round");
        self.round = round;
        self.step = Step::Propose;
        self.persist_wal()?;
        let head_time = self.head_time();
        if self.proposer(round)? == self.me {
            let earliest = head_time
                + if self.has_work() {
                    self.config.min_block_interval_ms
                } else {
                    self.empty_interval()
                };
            if round == 0 && self.now < earliest && self.valid.is_none() {
                self.schedule(Timeout::ProposeAt, earliest, round);
            } else {
                self.propose(round)?;
            }
        }
        // The proposer too: after a restart it may re-send a proposal whose
        // proof-of-lock prevotes it no longer holds, so no rule moves it on,
        // and it must not wait in this step forever. In the first round, a
        // proposer with nothing to include may wait the empty-block interval.
        let idle = match round {
            0 => (head_time + self.empty_interval()).saturating_sub(self.now),
            _ => 0,
        };
        let at = self.timeout_after(self.config.timeout_propose_ms + idle, round);
        self.schedule(Timeout::Propose, at, round);
        Ok(())
    }

    fn head_time(&self) -> TimeMs {
        self.store.head().map(|h| h.time).unwrap_or(0)
    }

    fn empty_interval(&self) -> TimeMs {
        self.config
            .empty_block_interval_ms
            .max(self.config.min_block_interval_ms)
    }

    /// Transactions or relays pooled: a block would not be empty.
    fn has_work(&self) -> bool {
        !self.mempool.is_empty() || !self.relays.is_empty()
    }

    /// Work arrived: a proposer waiting out the empty-block interval
    /// proposes as soon as the minimum interval allows.
    fn work_arrived(&mut self) -> Result<()> {
        if self.round != 0
            || self.step != Step::Propose
            || self.valid.is_some()
            || !self.has_work()
            || self.sent_proposals.contains_key(&0)
            || self.proposer(0)? != self.me
        {
            return Ok(());
        }
        let at = (self.head_time() + self.config.min_block_interval_ms).max(self.now);
        let waiting = self
            .timeouts
            .iter()
            .any(|(t, k, r)| *k == Timeout::ProposeAt && *r == 0 && *t > at);
        if waiting {
            self.schedule(Timeout::ProposeAt, at, 0);
        }
        Ok(())
    }

    fn propose(&mut self, round: Round) -> Result<()> {
        let (proposal, block) = if let Some(sp) = self.sent_proposals.get(&round).cloned() {
            // Already proposed in this round (before a crash): send the same again.
            match self.blocks.get(&sp.proposal.block) {
                Some(b) => (sp, b.clone()),
                None => return Ok(()),
            }
        } else {
            let (block, valid_round) = match self.valid {
                Some((vr, hash)) if self.blocks.contains_key(&hash) => {
                    (self.blocks[&hash].clone(), Some(vr))
                }
                _ => (Arc::new(self.build_block(round)?), None),
            };
            let params = self.runtime.params();
            let proposal = Proposal {
                chain_id: params.chain_id.clone(),
                shard: self.runtime.shard(),
                height: self.height,
                round,
                block: block.hash(),
                valid_round,
            };
            let sp = SignedProposal::new(proposal, &self.key);
            self.save_block(&block)?;
            self.sent_proposals.insert(round, sp.clone());
            self.persist_wal()?;
            (sp, block)
        };
        self.blocks.insert(proposal.proposal.block, block.clone());
        self.round_senders.entry(round).or_default().insert(self.me);
        self.proposals
            .entry(round)
            .or_insert_with(|| proposal.clone());
        let pol = self.pol_for(&proposal);
        self.outputs
            .push(Output::Broadcast(Arc::new(Message::Proposal {
                proposal,
                block,
                pol,
            })));
        Ok(())
    }

    /// The prevotes that justify re-proposing a block from its valid round.
    fn pol_for(&self, sp: &SignedProposal) -> Vec<SignedVote> {
        let Some(vr) = sp.proposal.valid_round else {
            return Vec::new();
        };
        self.votes
            .get(&vr)
            .map(|rv| {
                rv.votes_for(VoteKind::Prevote, Some(sp.proposal.block))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    fn env_for(&self, round: Round, proposer: Address, time: TimeMs) -> BlockEnv {
        let params = self.runtime.params();
        BlockEnv {
            chain_id: params.chain_id.clone(),
            shard: self.runtime.shard(),
            height: self.height,
            epoch: self.committee.epoch,
            round,
            time,
            proposer,
            prev: self.store.head().map(|h| h.block).unwrap_or_default(),
        }
    }

    fn build_block(&mut self, round: Round) -> Result<Block> {
        let params = self.runtime.params().clone();
        let head = self
            .store
            .head()
            .cloned()
            .ok_or_else(|| ChainError::Storage("no committed head; genesis missing".into()))?;
        let time = self.now.max(head.time + 1);
        let store = &self.store;
        let mut candidates: Vec<PooledTx> = self.relays.values().map(|r| r.tx.clone()).collect();
        candidates.extend(self.mempool.select(
            params.max_block_txs as usize,
            params.max_block_bytes(),
            self.height,
            |a| {
                committee::read_account(store, a)
                    .map(|x| x.nonce)
                    .unwrap_or(0)
            },
        ));
        let env = self.env_for(round, self.me, time);
        let executed = self
            .runtime
            .execute(&self.store, &env, candidates, Mode::Propose)?;
        let header = BlockHeader {
            chain_id: params.chain_id.clone(),
            shard: self.runtime.shard(),
            height: self.height,
            epoch: env.epoch,
            round,
            prev: head.block,
            tx_root: executed.tx_root,
            receipts_root: executed.receipts_root,
            state_root: executed.diff.state_root,
            proposer: self.me,
            time,
        };
        let block = Block {
            header,
            txs: executed.txs.iter().map(|t| (*t.tx).clone()).collect(),
        };
        self.executed.insert(block.hash(), executed);
        Ok(block)
    }

    /// Full validity of a block at the current height. The execution result
    /// is cached per hash (a hash pins the body, see `store_block`); the
    /// clock check is not cached, since it can pass later.
    fn is_valid(&mut self, hash: &Hash, check_time: bool) -> bool {
        if check_time {
            let max = self.now + self.runtime.params().max_clock_drift_ms;
            match self.blocks.get(hash) {
                Some(b) if b.header.time > max => return false,
                Some(_) => {}
                None => return false,
            }
        }
        if self.executed.contains_key(hash) {
            return true;
        }
        if self.invalid.contains(hash) {
            return false;
        }
        let Some(block) = self.blocks.get(hash).cloned() else {
            return false;
        };
        match self.validate(&block) {
            Ok(executed) => {
                self.executed.insert(*hash, executed);
                true
            }
            Err(e) => {
                tracing::debug!(block = %hash, error = %e, "invalid block");
                self.invalid.insert(*hash);
                false
            }
        }
    }

    fn validate(&mut self, block: &Block) -> Result<Executed> {
        let params = self.runtime.params().clone();
        let h = &block.header;
        let head = self
            .store
            .head()
            .cloned()
            .ok_or_else(|| ChainError::Storage("no committed head; genesis missing".into()))?;
        let fail = |m: String| Err(ChainError::InvalidBlock(m));
        if h.chain_id != params.chain_id || h.shard != self.runtime.shard() {
            return fail("wrong chain or shard".into());
        }
        if h.height != self.height || h.prev != head.block {
            return fail(format!("does not extend height {}", head.height));
        }
        if h.epoch != self.committee.epoch {
            return fail(format!(
                "epoch {} is wrong for height {} (epoch {})",
                h.epoch, h.height, self.committee.epoch
            ));
        }
        if h.proposer != self.proposer(h.round)? {
            return fail(format!(
                "{} is not the proposer of round {}",
                h.proposer, h.round
            ));
        }
        if h.time <= head.time {
            return fail("time does not advance".into());
        }
        let body = match self.bodies.get(&block.hash()) {
            Some(b) => b.clone(),
            None => return fail("block body was never checked against its tx root".into()),
        };
        // Every transaction not byte-identical to a pooled (checked) one is verified.
        if verify_txs(body.iter().filter(|(_, pooled)| !pooled).map(|(p, _)| p))
            .iter()
            .any(|ok| !ok)
        {
            return fail("a transaction signature does not verify".into());
        }
        let pooled: Vec<PooledTx> = body.into_iter().map(|(p, _)| p).collect();
        let env = self.env_for(h.round, h.proposer, h.time);
        let executed = self
            .runtime
            .execute(&self.store, &env, pooled, Mode::Validate)?;
        if executed.tx_root != h.tx_root {
            return fail("tx root mismatch".into());
        }
        if executed.diff.state_root != h.state_root {
            return fail("state root mismatch".into());
        }
        if executed.receipts_root != h.receipts_root {
            return fail("receipts root mismatch".into());
        }
        Ok(executed)
    }

    fn cast(&mut self, kind: VoteKind, block: Option<Hash>) -> Result<()> {
        // A replica off the committee (a full node, a validator serving a
        // shard in another epoch) follows consensus but never signs: its
        // votes would only be refused by everyone, and each cost a WAL write.
        if !self.committee.is_member(&self.me) {
            return Ok(());
        }
        let round = self.round;
        tracing::debug!(me = ?self.me, height = self.height, round, ?kind, ?block, "vote");
        let sv = match self.sent_votes.get(&(round, kind)) {
            // Never sign a second, different vote for one step (even after a crash).
            Some(v) => v.clone(),
            None => {
                let params = self.runtime.params();
                let vote = Vote {
                    chain_id: params.chain_id.clone(),
                    shard: self.runtime.shard(),
                    epoch: self.committee.epoch,
                    height: self.height,
                    round,
                    kind,
                    block,
                };
                let sv = SignedVote::new(vote, &self.key);
                self.sent_votes.insert((round, kind), sv.clone());
                // A vote that could not be recorded must never leave.
                if let Err(e) = self.persist_wal() {
                    self.sent_votes.remove(&(round, kind));
                    return Err(e);
                }
                sv
            }
        };
        self.votes.entry(round).or_default().insert(&sv);
        self.round_senders.entry(round).or_default().insert(self.me);
        self.outputs
            .push(Output::Broadcast(Arc::new(Message::Vote(sv))));
        Ok(())
    }

    fn on_timeout(&mut self, kind: Timeout, round: Round) -> Result<()> {
        if round != self.round {
            return Ok(());
        }
        match kind {
            Timeout::ProposeAt => {
                if self.step == Step::Propose
                    && !self.sent_proposals.contains_key(&round)
                    && self.proposer(round)? == self.me
                {
                    self.propose(round)?;
                }
            }
            Timeout::Propose => {
                if self.step == Step::Propose {
                    self.cast(VoteKind::Prevote, None)?;
                    self.step = Step::Prevote;
                }
            }
            Timeout::Prevote => {
                if self.step == Step::Prevote {
                    self.cast(VoteKind::Precommit, None)?;
                    self.step = Step::Precommit;
                }
            }
            Timeout::Precommit => {
                self.stats.rounds_skipped += 1;
                self.start_round(round + 1)?;
            }
        }
        Ok(())
    }

    /// Applies Tendermint's upon-rules until none fires.
    fn check_rules(&mut self) -> Result<()> {
        while self.apply_one_rule()? {}
        Ok(())
    }

    fn apply_one_rule(&mut self) -> Result<bool> {
        let q = self.committee.quorum();
        let f = self.committee.max_faulty();

        // Decide: a block with a precommit quorum in any round.
        let decided: Vec<(Round, Hash)> = self
            .votes
            .iter()
            .flat_map(|(r, rv)| {
                rv.blocks(VoteKind::Precommit)
                    .into_iter()
                    .filter(|b| rv.count_for(VoteKind::Precommit, Some(*b)) >= q)
                    .map(move |b| (*r, b))
            })
            .collect();
        for (r, hash) in decided {
            if self.is_valid(&hash, false) {
                self.commit_decided(r, hash)?;
                return Ok(true);
            }
        }

        // Skip ahead to the highest round that f+1 members have reached.
        let mut highest: BTreeMap<Address, Round> = self.future_rounds.clone();
        for (r, senders) in self.round_senders.range(self.round + 1..) {
            for s in senders {
                let e = highest.entry(*s).or_insert(*r);
                *e = (*e).max(*r);
            }
        }
        let mut reached: Vec<Round> = highest.into_values().filter(|r| *r > self.round).collect();
        reached.sort_unstable_by(|a, b| b.cmp(a));
        let ahead = reached.get(f).copied();
        if let Some(r) = ahead {
            self.start_round(r)?;
            return Ok(true);
        }

        let round = self.round;
        let proposal = self.proposals.get(&round).cloned();

        if self.step == Step::Propose {
            if let Some(sp) = &proposal {
                let v = sp.proposal.block;
                match sp.proposal.valid_round {
                    None => {
                        let ok = self.is_valid(&v, true) && self.locked.is_none_or(|(_, l)| l == v);
                        self.cast(VoteKind::Prevote, ok.then_some(v))?;
                        self.step = Step::Prevote;
                        return Ok(true);
                    }
                    Some(vr) => {
                        let quorum = self
                            .votes
                            .get(&vr)
                            .is_some_and(|rv| rv.count_for(VoteKind::Prevote, Some(v)) >= q);
                        if vr < round && quorum {
                            let ok = self.is_valid(&v, true)
                                && self.locked.is_none_or(|(lr, l)| lr <= vr || l == v);
                            self.cast(VoteKind::Prevote, ok.then_some(v))?;
                            self.step = Step::Prevote;
                            return Ok(true);
                        }
                    }
                }
            }
        }

        let (prevotes_any, precommits_any) = self
            .votes
            .get(&round)
            .map(|rv| (rv.voters(VoteKind::Prevote), rv.voters(VoteKind::Precommit)))
            .unwrap_or((0, 0));

        if self.step == Step::Prevote
            && prevotes_any >= q
            && self.timers_started.insert((round, VoteKind::Prevote))
        {
            let at = self.timeout_after(self.config.timeout_prevote_ms, round);
            self.schedule(Timeout::Prevote, at, round);
        }

        if self.step >= Step::Prevote && !self.locked_in_round.contains(&round) {
            if let Some(sp) = &proposal {
                let v = sp.proposal.block;
                let quorum = self
                    .votes
                    .get(&round)
                    .is_some_and(|rv| rv.count_for(VoteKind::Prevote, Some(v)) >= q);
                if quorum && self.is_valid(&v, true) {
                    self.locked_in_round.insert(round);
                    if self.step == Step::Prevote {
                        self.locked = Some((round, v));
                        self.save_block_by_hash(&v)?;
                        self.cast(VoteKind::Precommit, Some(v))?;
                        self.step = Step::Precommit;
                    }
                    self.valid = Some((round, v));
                    self.persist_wal()?;
                    return Ok(true);
                }
            }
        }

        if self.step == Step::Prevote {
            let nil = self
                .votes
                .get(&round)
                .is_some_and(|rv| rv.count_for(VoteKind::Prevote, None) >= q);
            if nil {
                self.cast(VoteKind::Precommit, None)?;
                self.step = Step::Precommit;
                return Ok(true);
            }
        }

        if precommits_any >= q && self.timers_started.insert((round, VoteKind::Precommit)) {
            let at = self.timeout_after(self.config.timeout_precommit_ms, round);
            self.schedule(Timeout::Precommit, at, round);
        }
        Ok(false)
    }

    fn commit_decided(&mut self, round: Round, hash: Hash) -> Result<()> {
        let signatures: Vec<_> = self
            .votes
            .get(&round)
            .map(|rv| {
                rv.votes_for(VoteKind::Precommit, Some(hash))
                    .map(|v| (v.voter, v.signature))
                    .collect()
            })
            .unwrap_or_default();
        let cert = CommitCertificate {
            height: self.height,
            round,
            block: hash,
            signatures,
        };
        let block = self.blocks[&hash].clone();
        self.commit(block, cert)
    }

    fn commit_synced(&mut self, block: &Block, cert: &CommitCertificate) -> Result<()> {
        let params = self.runtime.params();
        if cert.block != block.hash() || cert.height != block.header.height {
            return Err(ChainError::InvalidCertificate(
                "certificate is for another block".into(),
            ));
        }
        cert.verify(&params.chain_id, self.runtime.shard(), &self.committee)?;
        let hash = block.hash();
        self.store_block(&Arc::new(block.clone()))?;
        if !self.is_valid(&hash, false) {
            return Err(ChainError::InvalidBlock(format!(
                "certified block {hash} does not execute to its header"
            )));
        }
        let b = self.blocks[&hash].clone();
        self.commit(b, cert.clone())?;
        self.check_rules()
    }

    fn commit(&mut self, block: Arc<Block>, cert: CommitCertificate) -> Result<()> {
        let hash = block.hash();
        let epoch_before = self.committee.epoch;
        let executed = self
            .executed
            .remove(&hash)
            .ok_or(ChainError::UnknownBlock(hash))?;
        self.store
            .commit_block(&block, &cert, &executed.receipts, &executed.diff)?;
        if self.config.durable {
            self.store.flush()?;
        }
        let included: Vec<Hash> = executed.txs.iter().map(|t| t.id).collect();
        let touched: Vec<Address> = executed
            .txs
            .iter()
            .map(|t| t.tx.tx.sender)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let store = &self.store;
        self.mempool.on_committed(&touched, self.height + 1, |a| {
            committee::read_account(store, a)
                .map(|x| x.nonce)
                .unwrap_or(0)
        });
        let epoch_change = self.epoch_change(&block, &cert)?;
        self.outputs
            .push(Output::Committed(Arc::new(CommittedBlock {
                state_root: self.store.state_root(),
                block: block.clone(),
                cert: cert.clone(),
                receipts: executed.receipts,
                epoch_change,
            })));
        self.height += 1;
        self.enter_height()?;
        self.store.wal_clear()?;
        if self.committee.epoch != epoch_before {
            self.epoch_boundary(&block, &cert);
        }
        self.refresh_relays(&included);
        self.run_beacon_duties();
        self.start_round(0)
    }

    /// The shard just entered a new epoch with `block`: keep its state as a
    /// fast-sync snapshot and prune what is older than the kept snapshots.
    /// The block is committed either way, so a failure here is logged, not
    /// returned.
    fn epoch_boundary(&mut self, block: &Block, cert: &CommitCertificate) {
        if self.config.snapshots_kept == 0 {
            return;
        }
        let kept = self
            .store
            .save_snapshot(&block.header, cert, self.config.snapshots_kept)
            .and_then(|_| self.store.snapshot_heights());
        match kept {
            Ok(heights) if self.config.prune_blocks => {
                if let Some(&oldest) = heights.first() {
                    if let Err(e) = self.store.prune_blocks_below(oldest) {
                        tracing::warn!(error = %e, "pruning old blocks failed");
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(height = block.header.height, error = %e, "epoch snapshot failed")
            }
        }
    }

    /// Resets per-height state and loads the committee for the new height.
    fn enter_height(&mut self) -> Result<()> {
        let head = self
            .store
            .head()
            .cloned()
            .ok_or_else(|| ChainError::Storage("no committed head; genesis missing".into()))?;
        self.height = head.height + 1;
        self.committee = committee::read(&self.store, K_COMMITTEE)?
            .ok_or_else(|| ChainError::Storage("no committee in state".into()))?;
        self.randomness = committee::read(&self.store, K_RANDOMNESS)?.unwrap_or_default();
        self.round = 0;
        self.step = Step::Propose;
        self.locked = None;
        self.valid = None;
        self.blocks.clear();
        self.executed.clear();
        self.invalid.clear();
        self.proposals.clear();
        self.votes.clear();
        self.round_senders.clear();
        self.future_rounds.clear();
        self.bodies.clear();
        self.proposer_cache.clear();
        self.sent_votes.clear();
        self.sent_proposals.clear();
        self.timeouts.clear();
        self.timers_started.clear();
        self.locked_in_round.clear();
        Ok(())
    }

    fn gossip(&mut self) {
        self.outputs
            .push(Output::Broadcast(Arc::new(Message::Status {
                height: self.height,
                round: self.round,
            })));
        if let Some((vr, hash)) = self.valid {
            if let Some(block) = self.blocks.get(&hash) {
                let votes: Vec<SignedVote> = self
                    .votes
                    .get(&vr)
                    .map(|rv| {
                        rv.votes_for(VoteKind::Prevote, Some(hash))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                self.outputs
                    .push(Output::Broadcast(Arc::new(Message::Polka {
                        round: vr,
                        block: block.clone(),
                        votes,
                    })));
            }
        }
        // Re-send this validator's own next transactions (evidence, randomness
        // duties): it may never propose itself, so a lost broadcast would
        // otherwise hold its account's nonce, and everything after it, forever.
        let next = committee::read_account(&self.store, &self.me).map_or(0, |a| a.nonce);
        // Relay transactions too, each once two heights went by since it was
        // pooled or last re-sent (its first broadcast may have been lost):
        // any one replica that holds a proof should get it to a proposer. A
        // few per round, so a backlog does not flood.
        let height = self.height;
        let due: Vec<Hash> = self
            .relays
            .iter()
            .filter(|(_, r)| height >= r.gossiped + RELAY_REGOSSIP_AFTER)
            .map(|(id, _)| *id)
            .take(RELAY_REGOSSIP)
            .collect();
        let mut own: Vec<SignedTransaction> = self
            .mempool
            .sender_range(&self.me, next..next + OWN_TX_REGOSSIP)
            .map(|t| (*t.tx).clone())
            .collect();
        for id in due {
            if let Some(r) = self.relays.get_mut(&id) {
                r.gossiped = height;
                own.push((*r.tx.tx).clone());
            }
        }
        if !own.is_empty() {
            self.outputs
                .push(Output::Broadcast(Arc::new(Message::Txs(own))));
        }
        // Re-send what this replica said in the current round: lost messages
        // are harmless. Only as a member: votes signed before the committee
        // changed (restored from the WAL, say) are not ours to send now.
        let member = self.committee.is_member(&self.me);
        let mine: Vec<SignedVote> = self
            .sent_votes
            .iter()
            .filter(|((r, _), _)| member && *r == self.round)
            .map(|(_, v)| v.clone())
            .collect();
        for v in mine {
            self.outputs
                .push(Output::Broadcast(Arc::new(Message::Vote(v))));
        }
        if self.step <= Step::Prevote {
            if let Some(sp) = self.sent_proposals.get(&self.round).cloned() {
                if let Some(b) = self.blocks.get(&sp.proposal.block) {
                    let block = b.clone();
                    let pol = self.pol_for(&sp);
                    self.outputs
                        .push(Output::Broadcast(Arc::new(Message::Proposal {
                            proposal: sp,
                            block,
                            pol,
                        })));
                }
            }
        }
    }

    // ---- write-ahead record -------------------------------------------

    fn save_block(&self, block: &Block) -> Result<()> {
        let mut key = b"block/".to_vec();
        key.extend_from_slice(&block.hash().0);
        self.store.wal_put(&key, &codec::encode(block))
    }

    fn save_block_by_hash(&self, hash: &Hash) -> Result<()> {
        match self.blocks.get(hash) {
            Some(b) => self.save_block(b),
            None => Ok(()),
        }
    }

    fn persist_wal(&self) -> Result<()> {
        let rec = WalRecord {
            height: self.height,
            round: self.round,
            locked: self.locked,
            valid: self.valid,
            sent_votes: self.sent_votes.values().cloned().collect(),
            sent_proposals: self.sent_proposals.values().cloned().collect(),
        };
        self.store.wal_put(WAL_RECORD, &codec::encode(&rec))?;
        if self.config.durable {
            self.store.flush()?;
        }
        Ok(())
    }
}

/// Batch-verifies transaction signatures; one bool per transaction.
fn verify_txs<'a>(txs: impl Iterator<Item = &'a PooledTx>) -> Vec<bool> {
    let items: Vec<_> = txs
        .map(|p| (p.tx.tx.sender, p.id, p.tx.signature))
        .collect();
    if crate::crypto::verify_batch(&items).is_ok() {
        return vec![true; items.len()];
    }
    items
        .iter()
        .map(|(a, d, s)| a.verify(d, s, "transaction").is_ok())
        .collect()
}

fn mempool_error(e: crate::mempool::MempoolError) -> ChainError {
    use crate::mempool::MempoolError as M;
    match e {
        M::NonceTooLow { nonce, expected } | M::NonceTooFar { nonce, expected } => {
            ChainError::BadNonce {
                expected,
                got: nonce,
            }
        }
        M::Expired { expires_at, height } => ChainError::Expired { expires_at, height },
        M::TooLarge { len, max } => ChainError::TooLarge {
            what: "transaction",
            len,
            max,
        },
        M::FeeTooLow { fee, min } => ChainError::FeeTooLow { fee, min },
        other => ChainError::Mempool(other.to_string()),
    }
}
