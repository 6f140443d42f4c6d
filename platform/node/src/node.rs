//! A full IOS node on libp2p: one task owns the swarm and the replicas of
//! the shards this node serves, and drives them on real time.
//!
//! - Each replica's broadcasts go to its shard's gossip topics (txs,
//!   consensus, blocks); messages it sends to one peer go as request-response
//!   requests, and whatever the receiving replica answers the sender comes
//!   back in the response (sync, snapshot offers and chunks).
//! - The node keeps its own beacon light client ([`EpochChain`]): beacon
//!   members announce each epoch change on the epoch topic, and any node
//!   asks peers for the changes it missed. From it the node knows which
//!   committees it sits on (TransEpoch: the shard's own epoch, the newest and
//!   the one before), opens those replicas (fast sync when it has no state
//!   and the network is past epoch 0) and closes the others.
//! - Every account-shard replica here relays the epoch changes its shard
//!   has not applied (`BeaconUpdate` relay transactions): any one honest
//!   node of a shard keeps it following the beacon.
//! - Bad input is a typed error; a peer whose input proves a fault loses
//!   score and is banned at [`p2p::BAN_SCORE`].
//!
//! A node is also a full node of every shard when its role says so (the
//! gateway), and serves queries and submissions through [`NodeHandle`].

use crate::huds::{HudsRequest, HudsResponse, ProviderState};
use crate::p2p::{
    self, Behaviour, BehaviourEvent, Channel, Frame, PeerBook, Refusal, Request, Response,
};
use crate::unix_ms;
use anyhow::{Context, Result};
use futures::StreamExt;
use ios_chain::atomix::{RelayBatch, Step, RELAY_BATCH_BYTES};
use ios_chain::crypto::Keypair;
use ios_chain::error::ChainError;
use ios_chain::execute::Runtime;
use ios_chain::fast_sync::{FastSync, Progress};
use ios_chain::hash::Hash;
use ios_chain::ledger::{LedgerCall, LedgerModule};
use ios_chain::light_client::{EpochChain, EpochChange};
use ios_chain::message::{Message, MAX_SYNC_BLOCKS};
use ios_chain::params::Genesis;
use ios_chain::relayer::{step_call, Relayer};
use ios_chain::replica::{CommittedBlock, Output, Replica, ReplicaConfig};
use ios_chain::shard::BEACON;
use ios_chain::tx::{SignedTransaction, Transaction};
use ios_chain::types::{Epoch, Height, ShardId, TimeMs};
use ios_market::module::MarketModule;
use ios_storage::module::{
    AuditRound, AuditState, Endpoint, StorageCall, StorageModule, StorageParams,
};
use ios_storage::store::FragmentId;
use libp2p::swarm::SwarmEvent;
use libp2p::{gossipsub, identify, kad, request_response, Multiaddr, PeerId, Swarm};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{debug, info, warn, Instrument};

/// What a node does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Serves the shards whose committees its key sits on.
    Validator,
    /// Follows every shard (a gateway serving the API needs all of them).
    Full,
}

#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// A short name for logs ("validator-3", "gateway").
    pub name: String,
    pub role: Role,
    pub data_dir: PathBuf,
    pub listen: Multiaddr,
    pub bootstrap: Vec<Multiaddr>,
    pub genesis: Genesis,
    /// The validator's key; a full node without one makes and keeps its own.
    pub key: Option<Keypair>,
    pub replica: ReplicaConfig,
    /// Serve as a HUDS storage provider (fragments in `<data>/huds`).
    pub provider: Option<crate::huds::ProviderConfig>,
}

/// A block a replica of this node finalized.
#[derive(Clone, Debug)]
pub struct CommitEvent {
    pub shard: ShardId,
    pub height: Height,
    pub epoch: Epoch,
    pub state_root: Hash,
    pub block_hash: Hash,
    pub txs: Vec<Hash>,
}

/// Counters a node keeps for its metrics and status.
#[derive(Debug, Default)]
pub struct NodeMetrics {
    pub gossip_in_bytes: AtomicU64,
    pub gossip_out_bytes: AtomicU64,
    pub rpc_in: AtomicU64,
    pub rpc_out: AtomicU64,
    pub faults: AtomicU64,
    pub bans: AtomicU64,
    pub peers: AtomicU64,
    pub fast_syncs: AtomicU64,
    pub relays_sent: AtomicU64,
    /// Atomix relay transactions (batches or single steps) submitted.
    pub atomix_relays: AtomicU64,
    /// Transactions in blocks this node's replicas finalized (all shards).
    pub finalized_txs: AtomicU64,
    pub finalized_blocks: AtomicU64,
    /// Finality latency (block time to local commit), a histogram with
    /// upper bounds [`FINALITY_BUCKETS_MS`] (the last bucket is +Inf).
    pub finality_buckets: [AtomicU64; FINALITY_BUCKETS_MS.len() + 1],
    pub finality_sum_ms: AtomicU64,
    /// Microseconds the node task spent handling events (swarm events,
    /// commands, ticks): near a second per second, the task is saturated.
    pub busy_us: AtomicU64,
}

/// What woke the node task. Lives on the stack for one turn of the loop;
/// boxing the large variant would cost an allocation per swarm event.
#[allow(clippy::large_enum_variant)]
enum Wake {
    Swarm(SwarmEvent<BehaviourEvent>),
    Command(Command),
    Tick,
    Housekeeping,
}

/// Upper bounds (ms) of the finality latency histogram's buckets.
pub const FINALITY_BUCKETS_MS: [u64; 8] = [100, 250, 500, 1_000, 2_000, 5_000, 10_000, 30_000];

impl NodeMetrics {
    fn observe_finality(&self, ms: u64) {
        let i = FINALITY_BUCKETS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(FINALITY_BUCKETS_MS.len());
        self.finality_buckets[i].fetch_add(1, Ordering::Relaxed);
        self.finality_sum_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

/// The shard that holds `address`'s account as far as `replicas` show:
/// the beacon for accounts that live there (validators: stake and registry
/// are on the beacon), else its home shard.
pub fn account_shard(
    replicas: &BTreeMap<ShardId, Replica>,
    shards: u16,
    address: &ios_chain::crypto::Address,
) -> ShardId {
    if let Some(b) = replicas.get(&BEACON) {
        if let Ok(a) = ios_chain::committee::read_account(b.store(), address) {
            if a.stake > 0 || a.balance > 0 || a.nonce > 0 || a.unbonding > 0 {
                return BEACON;
            }
        }
    }
    ios_chain::shard::home_shard(address, shards)
}

/// Blocks' worth of pooled transactions past which a node refuses new
/// submissions for a shard. Taking more than the shard can finalize soon
/// only spends every replica's time on checking and gossiping a backlog
/// (under overload that collapsed throughput); clients retry instead.
pub const BUSY_BACKLOG_BLOCKS: usize = 2;

/// Why `r` refuses new submissions now, if it does: its pool holds
/// [`BUSY_BACKLOG_BLOCKS`] blocks' worth.
fn busy(r: &Replica, shard: ShardId) -> Option<Refusal> {
    let limit = BUSY_BACKLOG_BLOCKS * r.runtime().params().max_block_txs as usize;
    let pooled = r.mempool_len();
    (pooled >= limit).then(|| {
        Refusal::new(
            "busy",
            format!(
                "shard {shard} has {pooled} transactions waiting (limit {limit}); retry shortly"
            ),
        )
    })
}

/// Finalized blocks of each shard a full node's relayer reads again when
/// it starts: Atomix transfers whose lock is older and that are still not
/// finished are left to other relayers (the API's transfers expire after
/// 100 blocks).
pub const RELAYER_REPLAY_BLOCKS: Height = 2_000;

/// Feeds `relayer` the last [`RELAYER_REPLAY_BLOCKS`] finalized blocks of
/// each shard in `stores` (pruned ones are skipped), all shards merged in
/// block-time order as they were finalized (a transfer's lock comes before
/// its outcomes on other shards); returns how many blocks it read.
pub fn replay_relayer(
    relayer: &mut Relayer,
    stores: &[(ShardId, &ios_chain::state::StateStore)],
    now: TimeMs,
) -> Result<usize> {
    type Loaded = (
        ios_chain::block::Block,
        ios_chain::block::CommitCertificate,
        Vec<ios_chain::block::Receipt>,
    );
    let load = |store: &ios_chain::state::StateStore, h: Height| -> Result<Option<Loaded>> {
        Ok(match (store.block(h)?, store.receipts(h)?) {
            (Some((b, c)), Some(r)) => Some((b, c, r)),
            _ => None,
        })
    };
    // Per shard: the next height to read, the last one, the block read ahead.
    let mut cursors = Vec::new();
    for (shard, store) in stores {
        let Some(head) = store.head().map(|h| h.height) else {
            continue;
        };
        let from = head.saturating_sub(RELAYER_REPLAY_BLOCKS - 1).max(1);
        cursors.push((*shard, *store, from, head, None::<Loaded>));
    }
    let mut n = 0;
    loop {
        for (_, store, next, head, ahead) in cursors.iter_mut() {
            while ahead.is_none() && *next <= *head {
                *ahead = load(store, *next)?;
                *next += 1;
            }
        }
        // The earliest block read ahead, over all shards.
        let Some((shard, (block, cert, receipts))) = cursors
            .iter_mut()
            .filter(|c| c.4.is_some())
            .min_by_key(|c| {
                let h = &c.4.as_ref().map(|l| &l.0.header);
                (h.map(|h| (h.time, h.height)), c.0)
            })
            .and_then(|c| Some((c.0, c.4.take()?)))
        else {
            return Ok(n);
        };
        relayer.observe(shard, &block, &cert, &receipts, now);
        n += 1;
    }
}

/// The modules a node runs on `shard`: the ledger everywhere, HUDS's
/// storage module and the market on account shards (on the beacon of a
/// one-shard chain). Every node of a network must agree on this.
pub fn runtime(genesis: &Genesis, shard: ShardId) -> Result<Runtime> {
    let r = Runtime::for_shard(genesis.params.clone(), shard);
    Ok(if shard != BEACON || genesis.params.shards == 0 {
        let market = MarketModule::from_genesis(genesis)
            .map_err(|e| anyhow::anyhow!("the genesis' market settings: {e}"))?;
        r.with_module(Arc::new(StorageModule::new(StorageParams::default())))
            .with_module(Arc::new(market))
    } else {
        r
    })
}

/// A read-only look at a running node, taken on its own task.
pub struct View<'a> {
    pub genesis: &'a Genesis,
    /// The Atomix relayer, on nodes that follow every shard.
    pub relayer: Option<&'a Relayer>,
    pub metrics: &'a NodeMetrics,
    pub replicas: &'a BTreeMap<ShardId, Replica>,
    pub epochs: &'a EpochChain,
    pub syncing: Vec<ShardId>,
    pub peers: usize,
    /// The peers connected now.
    pub connected: &'a BTreeSet<PeerId>,
    pub peer_id: PeerId,
    pub listen: &'a [Multiaddr],
    /// Shards on whose gossip topics this node is (members, full nodes).
    pub subscribed: &'a BTreeSet<ShardId>,
    /// Shards this node follows by pulling finalized blocks instead.
    pub pulled: Vec<ShardId>,
}

type Query = Box<dyn FnOnce(&View<'_>) + Send>;

enum Command {
    Submit {
        txs: Vec<SignedTransaction>,
        reply: oneshot::Sender<Vec<Result<Hash, Refusal>>>,
    },
    Query(Query),
    Dial(Multiaddr),
    /// A HUDS request to a peer (dialled at `addrs` if not connected).
    Huds {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        request: HudsRequest,
        reply: oneshot::Sender<Result<HudsResponse, String>>,
    },
    /// The answer to an inbound HUDS request, made off the node's task;
    /// `stored` is a fragment this provider now owes a receipt for.
    HudsReply {
        channel: request_response::ResponseChannel<HudsResponse>,
        response: HudsResponse,
        stored: Option<(ShardId, FragmentId)>,
    },
    /// A storage call this provider signs and pools on `shard`.
    ProviderCall {
        shard: ShardId,
        call: StorageCall,
    },
}

/// The way into a running node from other tasks.
#[derive(Clone)]
pub struct NodeHandle {
    commands: mpsc::Sender<Command>,
    commits: broadcast::Sender<Arc<CommitEvent>>,
    pub peer_id: PeerId,
    /// Where it listens (with `/p2p/<id>`: dialable as is).
    pub addrs: Vec<Multiaddr>,
    pub metrics: Arc<NodeMetrics>,
    pub name: String,
    pub data_dir: PathBuf,
}

impl NodeHandle {
    /// Sends a HUDS request to `peer` and waits for its answer.
    pub async fn huds(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        request: HudsRequest,
    ) -> Result<HudsResponse> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Huds {
                peer,
                addrs,
                request,
                reply,
            })
            .await
            .map_err(|_| anyhow::anyhow!("node {} has stopped", self.name))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("node {} stopped before answering", self.name))?
            .map_err(|e| anyhow::anyhow!("{peer}: {e}"))
    }

    /// Pools transactions on their senders' home shards (forwarded to a
    /// peer of that shard when this node runs none); per transaction its id
    /// or why it was refused.
    pub async fn submit(&self, txs: Vec<SignedTransaction>) -> Result<Vec<Result<Hash, Refusal>>> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Submit { txs, reply })
            .await
            .map_err(|_| anyhow::anyhow!("node {} has stopped", self.name))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("node {} stopped before answering", self.name))
    }

    /// Runs `f` on the node's task with a look at its state.
    pub async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&View<'_>) -> T + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        let q: Query = Box::new(move |v| {
            let _ = tx.send(f(v));
        });
        self.commands
            .send(Command::Query(q))
            .await
            .map_err(|_| anyhow::anyhow!("node {} has stopped", self.name))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("node {} stopped before answering", self.name))
    }

    pub async fn dial(&self, addr: Multiaddr) -> Result<()> {
        self.commands
            .send(Command::Dial(addr))
            .await
            .map_err(|_| anyhow::anyhow!("node {} has stopped", self.name))
    }

    /// Blocks this node finalizes from now on (a slow reader misses some
    /// rather than holding the node back).
    pub fn commits(&self) -> broadcast::Receiver<Arc<CommitEvent>> {
        self.commits.subscribe()
    }
}

/// Holds a node's data directory: a second node on the same directory is
/// refused while this one runs.
pub struct DataLock {
    _file: File,
}

impl DataLock {
    pub fn acquire(dir: &Path) -> Result<DataLock> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating data directory {}", dir.display()))?;
        let path = dir.join("LOCK");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                anyhow::bail!(
                    "data directory {} is in use by another ios node{}; stop that node or choose another directory",
                    dir.display(),
                    match holder.trim() {
                        "" => String::new(),
                        pid => format!(" (pid {pid})"),
                    }
                );
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
        file.set_len(0)?;
        write!(file, "{}", std::process::id())?;
        Ok(DataLock { _file: file })
    }
}

/// Starts a node on the current tokio runtime; it runs until the handle and
/// every clone of it are dropped, or `stop` resolves.
pub async fn start(
    cfg: NodeConfig,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(NodeHandle, tokio::task::JoinHandle<Result<()>>)> {
    let lock = DataLock::acquire(&cfg.data_dir)?;
    let key = match &cfg.key {
        Some(k) => k.clone(),
        None => own_key(&cfg.data_dir)?,
    };
    let net_key = p2p::network_key(&key)?;
    let mut swarm = p2p::build_swarm(net_key)?;
    let listener = swarm
        .listen_on(cfg.listen.clone())
        .with_context(|| format!("listening on {}", cfg.listen))?;
    let peer_id = *swarm.local_peer_id();
    // The first address the listener reports (a port 0 becomes a real one).
    let addr = loop {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } if listener_id == listener => break address,
            SwarmEvent::ListenerError { error, .. } => {
                anyhow::bail!("listening on {}: {error}", cfg.listen)
            }
            SwarmEvent::ListenerClosed { reason, .. } => {
                anyhow::bail!("listening on {}: closed ({reason:?})", cfg.listen)
            }
            _ => {}
        }
    };
    let dialable = addr
        .clone()
        .with_p2p(peer_id)
        .map_err(|a| anyhow::anyhow!("listen address {a} already names a peer"))?;
    let meta = sled::open(cfg.data_dir.join("node"))
        .with_context(|| format!("opening {}", cfg.data_dir.join("node").display()))?;
    let (commands_tx, commands) = mpsc::channel(1_024);
    let commands_tx_self = commands_tx.clone();
    let (commits, _) = broadcast::channel(4_096);
    let metrics = Arc::new(NodeMetrics::default());
    let handle = NodeHandle {
        commands: commands_tx,
        commits: commits.clone(),
        peer_id,
        addrs: vec![dialable.clone()],
        metrics: metrics.clone(),
        name: cfg.name.clone(),
        data_dir: cfg.data_dir.clone(),
    };
    let span = tracing::info_span!("node", name = %cfg.name);
    let outlets = Outlets {
        commits,
        metrics,
        commands: commands_tx_self,
    };
    let mut node = Node::new(cfg, key, swarm, meta, outlets, vec![dialable])?;
    let full = node.role == Role::Full;
    let task = tokio::spawn(
        async move {
            let _lock = lock;
            node.run(commands, stop).await
        }
        .instrument(span.clone()),
    );
    // Full nodes see every shard's deals: they repair HUDS fragments.
    if full {
        tokio::spawn(crate::huds::repairer(handle.clone()).instrument(span));
    }
    Ok((handle, task))
}

/// A full node's own key, made once and kept in its data directory
/// (`node.key`).
pub fn own_key(dir: &Path) -> Result<Keypair> {
    let path = dir.join("node.key");
    if let Ok(bytes) = std::fs::read(&path) {
        let secret: [u8; 32] = bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("{} is not a 32-byte key", path.display()))?;
        return Ok(Keypair::from_secret(secret));
    }
    let secret = crate::keystore::generate()?.secret_bytes();
    write_private(&path, &secret)?;
    Ok(Keypair::from_secret(secret))
}

/// Writes a file only its owner may read.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).truncate(true).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// Where a node's task reports: its commits, its counters, its own queue.
struct Outlets {
    commits: broadcast::Sender<Arc<CommitEvent>>,
    metrics: Arc<NodeMetrics>,
    commands: mpsc::Sender<Command>,
}

/// Disk work for an inbound HUDS request, run off the node's task: the
/// answer, and the fragment stored (a receipt owed), if any.
type HudsWork = Box<dyn FnOnce() -> (HudsResponse, Option<(ShardId, FragmentId)>) + Send>;

/// What an outbound request was for.
/// How a node follows a shard it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Follow {
    /// On the shard's gossip topics: every proposal, vote and transaction.
    /// Committee members must; a full node does, to serve and relay at once.
    Gossip,
    /// Off the topics: the node asks a member for the blocks finalized
    /// since its height every [`PULL_EVERY_MS`] and checks each one's commit
    /// certificate. A storage provider follows its account shards this way:
    /// it needs their state (deals, audits) a moment late, not their
    /// consensus chatter, which costs every subscriber a check of every
    /// message and a devnet most of its idle CPU.
    Pull,
}

/// A shard followed by [`Follow::Pull`]: when to ask next and whom.
#[derive(Debug, Default)]
struct PullState {
    next_at: TimeMs,
    /// Turns through the shard's peers (a member serves one requester a
    /// sync at most every gossip interval).
    turn: usize,
}

/// How often a pulling node asks for finalized blocks (more often while a
/// response comes back full: it is catching up).
const PULL_EVERY_MS: TimeMs = 400;

enum Pending {
    Shard(ShardId),
    Epochs,
    Forward(oneshot::Sender<Vec<Result<Hash, Refusal>>>, usize),
    Evidence,
}

struct Node {
    role: Role,
    data_dir: PathBuf,
    key: Keypair,
    genesis: Genesis,
    chain_id: String,
    shards: u16,
    replica_config: ReplicaConfig,
    swarm: Swarm<Behaviour>,
    meta: sled::Db,
    epochs: EpochChain,
    /// Every epoch change this node knows (served to peers that missed some).
    changes: BTreeMap<Epoch, Arc<EpochChange>>,
    replicas: BTreeMap<ShardId, Replica>,
    dbs: BTreeMap<ShardId, sled::Db>,
    syncing: BTreeMap<ShardId, FastSync>,
    subscribed: BTreeSet<ShardId>,
    /// Shards followed by pulling finalized blocks ([`Follow::Pull`]).
    pulls: BTreeMap<ShardId, PullState>,
    book: PeerBook,
    pending: HashMap<request_response::OutboundRequestId, Pending>,
    commits: broadcast::Sender<Arc<CommitEvent>>,
    metrics: Arc<NodeMetrics>,
    listen: Vec<Multiaddr>,
    bootstrap: Vec<Multiaddr>,
    last_relay: BTreeMap<ShardId, TimeMs>,
    next_epoch_ask: TimeMs,
    connected: BTreeSet<PeerId>,
    /// A node with no data waits (until this time, at most) for a peer's
    /// epoch changes before it opens shards, so that it joins the network
    /// where it is (fast sync) instead of replaying it from genesis.
    joining: Option<TimeMs>,
    /// Peers that answered a joining node with no newer epoch.
    joining_empty: BTreeSet<PeerId>,
    /// Full nodes see every shard's blocks and relay Atomix steps.
    relayer: Option<Relayer>,
    /// The event loop runs (replicas opened before it were replayed together).
    started: bool,
    /// Inbound request rates of connected peers.
    rpc_rates: HashMap<PeerId, p2p::RateLimit>,
    /// The node's own command queue (work done off its task reports back).
    commands: mpsc::Sender<Command>,
    /// HUDS requests this node sent, by id.
    pending_huds:
        HashMap<request_response::OutboundRequestId, oneshot::Sender<Result<HudsResponse, String>>>,
    /// A storage provider's store, accounts and duties.
    provider: Option<ProviderState>,
}

/// How often a provider gossips its pooled transactions again.
const PROVIDER_REGOSSIP_MS: TimeMs = 3_000;

/// How often a provider compares its store with the chain for fragments
/// it holds but never got a receipt into a block for.
const RECEIPT_SCAN_MS: TimeMs = 10_000;

/// Fragments `p` stores that the chain places on it but shows as not
/// signed for (and not lost): owed again.
fn owed_receipts(p: &mut ProviderState, replicas: &BTreeMap<ShardId, Replica>) {
    let held = match p.store.lock().expect("store lock").list() {
        Ok(h) => h,
        Err(e) => return warn!(error = %e, "listing the fragment store failed"),
    };
    let mut deals: BTreeMap<(ShardId, ios_storage::ContentId), Option<ios_storage::module::Deal>> =
        BTreeMap::new();
    for (id, _) in held {
        for (shard, key) in p.keys.iter() {
            let Some(r) = replicas.get(shard) else {
                continue;
            };
            let deal = deals.entry((*shard, id.content)).or_insert_with(|| {
                ios_chain::committee::read(r.store(), &ios_storage::module::keys::deal(&id.content))
                    .ok()
                    .flatten()
            });
            let Some(d) = deal else {
                continue;
            };
            let (s, i) = (id.segment as usize, usize::from(id.index));
            let mine = d.placement.get(s).and_then(|seg| seg.get(i)) == Some(&key.address());
            if mine && !d.receipted[s][i] && !d.lost[s][i] {
                p.receipts
                    .entry((*shard, id.content))
                    .or_default()
                    .insert((id.segment, id.index));
            }
        }
    }
}

/// How long a fresh node waits for epoch changes before it opens shards.
const JOIN_WAIT_MS: TimeMs = 5_000;

const CHANGES_TREE: &str = "epoch_changes";
/// How often an account shard's missing epoch changes are relayed again.
const RELAY_EVERY_MS: TimeMs = 2_000;
/// How often a node asks a peer for epoch changes it may have missed.
const EPOCH_ASK_MS: TimeMs = 3_000;
/// Housekeeping period: fast sync steps, relays, bans.
const HOUSEKEEPING_MS: u64 = 200;

impl Node {
    fn new(
        cfg: NodeConfig,
        key: Keypair,
        swarm: Swarm<Behaviour>,
        meta: sled::Db,
        outlets: Outlets,
        listen: Vec<Multiaddr>,
    ) -> Result<Node> {
        let Outlets {
            commits,
            metrics,
            commands,
        } = outlets;
        cfg.genesis.validate().context("the genesis is invalid")?;
        let provider = match &cfg.provider {
            Some(pc) => Some(ProviderState::open(
                &cfg.data_dir.join("huds"),
                pc.clone(),
                &key,
                cfg.genesis.params.shards,
            )?),
            None => None,
        };
        let mut epochs = EpochChain::new(&cfg.genesis);
        let mut changes = BTreeMap::new();
        let tree = meta.open_tree(CHANGES_TREE)?;
        for item in tree.iter() {
            let (_, bytes) = item?;
            let change: EpochChange =
                ios_chain::codec::decode("stored epoch change", &bytes, 64 << 20)?;
            if epochs.apply(&change).is_ok() {
                changes.insert(change.info.epoch, Arc::new(change));
            }
        }
        Ok(Node {
            role: cfg.role,
            data_dir: cfg.data_dir,
            key,
            chain_id: cfg.genesis.params.chain_id.0.clone(),
            shards: cfg.genesis.params.shards,
            genesis: cfg.genesis,
            replica_config: cfg.replica,
            swarm,
            meta,
            epochs,
            changes,
            replicas: BTreeMap::new(),
            dbs: BTreeMap::new(),
            syncing: BTreeMap::new(),
            subscribed: BTreeSet::new(),
            pulls: BTreeMap::new(),
            book: PeerBook::default(),
            pending: HashMap::new(),
            commits,
            metrics,
            listen,
            bootstrap: cfg.bootstrap,
            last_relay: BTreeMap::new(),
            next_epoch_ask: 0,
            connected: BTreeSet::new(),
            joining: None,
            joining_empty: BTreeSet::new(),
            relayer: (cfg.role == Role::Full).then(Relayer::new),
            started: false,
            rpc_rates: HashMap::new(),
            commands,
            pending_huds: HashMap::new(),
            provider,
        })
    }

    async fn run(
        &mut self,
        mut commands: mpsc::Receiver<Command>,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<()> {
        let topic = p2p::epoch_topic(&self.chain_id);
        self.swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&topic)
            .map_err(|e| anyhow::anyhow!("subscribing to {topic}: {e}"))?;
        for addr in self.bootstrap.clone() {
            self.dial(addr);
        }
        if !self.bootstrap.is_empty() {
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
        }
        let fresh = (0..=self.shards).all(|s| !self.shard_dir(s).exists());
        if fresh && !self.bootstrap.is_empty() && self.changes.is_empty() {
            self.joining = Some(unix_ms() + JOIN_WAIT_MS);
        }
        self.serve_committees()?;
        self.started = true;
        if let Some(relayer) = self.relayer.as_mut() {
            let stores: Vec<_> = self.replicas.iter().map(|(s, r)| (*s, r.store())).collect();
            let n = replay_relayer(relayer, &stores, unix_ms())?;
            info!(
                blocks = n,
                transfers = relayer.len(),
                "relayer caught up on recent blocks"
            );
        }
        info!(
            peer = %self.swarm.local_peer_id(),
            addr = %self.listen.first().map(|a| a.to_string()).unwrap_or_default(),
            shards = ?self.replicas.keys().collect::<Vec<_>>(),
            "node started"
        );
        if let Some(p) = &self.provider {
            for (shard, key) in &p.keys {
                info!(
                    shard,
                    account = %key.address(),
                    "storage provider account (fund it with the stake to register)"
                );
            }
        }
        let mut housekeeping = tokio::time::interval(Duration::from_millis(HOUSEKEEPING_MS));
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            let deadline = self
                .replicas
                .values()
                .map(|r| r.next_deadline())
                .min()
                .unwrap_or(TimeMs::MAX);
            let wait = deadline.saturating_sub(unix_ms()).min(1_000);
            let wake = tokio::select! {
                ev = self.swarm.select_next_some() => Wake::Swarm(ev),
                cmd = commands.recv() => match cmd {
                    Some(c) => Wake::Command(c),
                    None => break,
                },
                _ = tokio::time::sleep(Duration::from_millis(wait)) => Wake::Tick,
                _ = housekeeping.tick() => Wake::Housekeeping,
                _ = &mut stop => break,
            };
            let started = std::time::Instant::now();
            match wake {
                Wake::Swarm(ev) => self.on_swarm_event(ev)?,
                Wake::Command(c) => self.on_command(c),
                Wake::Tick => self.tick()?,
                Wake::Housekeeping => self.housekeeping()?,
            }
            self.metrics
                .busy_us
                .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        }
        for db in self.dbs.values() {
            let _ = db.flush();
        }
        let _ = self.meta.flush();
        info!("node stopped");
        Ok(())
    }

    // ---- shards this node serves ----------------------------------------

    /// Shards this node must run now, each with how it follows the shard:
    /// by gossip (a committee member, or a full node that serves the API
    /// and relays) or by pulling finalized blocks (a storage provider off
    /// the committee, see [`Follow`]).
    fn needed_shards(&self) -> BTreeMap<ShardId, Follow> {
        if self.role == Role::Full {
            return (0..=self.shards).map(|s| (s, Follow::Gossip)).collect();
        }
        let me = self.key.address();
        let latest = self.epochs.latest();
        let mut out = BTreeMap::new();
        if let Some(p) = &self.provider {
            out.extend(p.keys.keys().map(|s| (*s, Follow::Pull)));
        }
        for s in 0..=self.shards {
            let mut epochs = vec![latest, latest.saturating_sub(1)];
            if let Some(r) = self.replicas.get(&s) {
                epochs.push(r.committee().epoch);
            }
            let member = epochs.iter().any(|e| {
                self.epochs
                    .info(*e)
                    .and_then(|i| i.committee(s).ok())
                    .is_some_and(|c| c.is_member(&me))
            });
            if member {
                out.insert(s, Follow::Gossip);
            }
        }
        out
    }

    fn serve_committees(&mut self) -> Result<()> {
        if self.joining.is_some() {
            return Ok(());
        }
        let needed = self.needed_shards();
        let running: Vec<ShardId> = self
            .replicas
            .keys()
            .chain(self.syncing.keys())
            .copied()
            .collect();
        for s in running {
            if !needed.contains_key(&s) {
                info!(shard = s, "leaving shard (no longer on its committee)");
                self.replicas.remove(&s);
                self.syncing.remove(&s);
                if let Some(db) = self.dbs.remove(&s) {
                    let _ = db.flush();
                }
                self.unsubscribe(s);
                self.pulls.remove(&s);
            }
        }
        for (s, follow) in needed {
            match follow {
                Follow::Gossip => {
                    self.pulls.remove(&s);
                    self.subscribe(s)?;
                }
                Follow::Pull => {
                    self.unsubscribe(s);
                    self.pulls.entry(s).or_default();
                }
            }
            if !self.replicas.contains_key(&s) && !self.syncing.contains_key(&s) {
                self.open_shard(s)?;
            }
        }
        Ok(())
    }

    fn shard_dir(&self, shard: ShardId) -> PathBuf {
        self.data_dir.join(format!("shard-{shard}"))
    }

    fn open_shard(&mut self, shard: ShardId) -> Result<()> {
        let dir = self.shard_dir(shard);
        let db = ios_chain::state::open_db(&dir, Some(500))
            .with_context(|| format!("opening {}", dir.display()))?;
        if !ios_chain::state::has_chain(&db)? && self.epochs.latest() > 0 {
            drop(db);
            let committees = self
                .epochs
                .infos()
                .filter_map(|i| Some((i.epoch, i.committee(shard).ok()?.clone())))
                .collect();
            info!(shard, "joining shard: fast sync from an epoch snapshot");
            self.syncing.insert(
                shard,
                FastSync::new(
                    shard,
                    self.genesis.params.chain_id.clone(),
                    self.genesis.hash(),
                    committees,
                ),
            );
            return Ok(());
        }
        self.start_replica(shard, db)
    }

    fn start_replica(&mut self, shard: ShardId, db: sled::Db) -> Result<()> {
        let replica = Replica::open(
            &db,
            self.key.clone(),
            runtime(&self.genesis, shard)?,
            &self.genesis,
            self.replica_config.clone(),
            unix_ms(),
        )
        .with_context(|| {
            format!(
                "starting shard {shard} from {}",
                self.shard_dir(shard).display()
            )
        })?;
        info!(
            shard,
            height = replica.height(),
            epoch = replica.committee().epoch,
            "replica started"
        );
        // The relayer keeps no state of its own: it reads recent blocks
        // again (all shards' at start, a shard opened later alone), so a
        // restarted full node goes on with transfers in flight.
        if let Some(relayer) = self.relayer.as_mut().filter(|_| self.started) {
            let n = replay_relayer(relayer, &[(shard, replica.store())], unix_ms())?;
            debug!(shard, blocks = n, "relayer caught up on recent blocks");
        }
        self.replicas.insert(shard, replica);
        self.dbs.insert(shard, db);
        Ok(())
    }

    fn subscribe(&mut self, shard: ShardId) -> Result<()> {
        if !self.subscribed.insert(shard) {
            return Ok(());
        }
        for ch in Channel::ALL {
            let t = p2p::shard_topic(&self.chain_id, shard, ch);
            self.swarm
                .behaviour_mut()
                .gossipsub
                .subscribe(&t)
                .map_err(|e| anyhow::anyhow!("subscribing to {t}: {e}"))?;
        }
        Ok(())
    }

    fn unsubscribe(&mut self, shard: ShardId) {
        if self.subscribed.remove(&shard) {
            for ch in Channel::ALL {
                let t = p2p::shard_topic(&self.chain_id, shard, ch);
                self.swarm.behaviour_mut().gossipsub.unsubscribe(&t);
            }
        }
    }

    /// Connected peers that follow `shard` (subscribed to its consensus topic).
    fn shard_peers(&self, shard: ShardId) -> Vec<PeerId> {
        let hash = p2p::shard_topic(&self.chain_id, shard, Channel::Consensus).hash();
        self.swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .filter(|(p, topics)| topics.contains(&&hash) && !self.book.is_banned(p))
            .map(|(p, _)| *p)
            .collect()
    }

    // ---- time ------------------------------------------------------------

    fn tick(&mut self) -> Result<()> {
        let now = unix_ms();
        let due: Vec<ShardId> = self
            .replicas
            .iter()
            .filter(|(_, r)| r.next_deadline() <= now)
            .map(|(s, _)| *s)
            .collect();
        for s in due {
            let out = match self.replicas.get_mut(&s) {
                Some(r) => r.tick(now),
                None => continue,
            };
            match out {
                Ok(out) => self.route(s, out)?,
                Err(e) => warn!(shard = s, error = %e, "replica tick failed"),
            }
        }
        Ok(())
    }

    fn housekeeping(&mut self) -> Result<()> {
        let now = unix_ms();
        self.step_fast_syncs(now)?;
        self.relay_epoch_changes(now);
        self.relay_atomix(now);
        self.provider_duties(now);
        self.pull_blocks(now);
        if self.joining.is_some_and(|t| now >= t) {
            info!("no peer told of later epochs: starting from what this node knows");
            self.joining = None;
            self.serve_committees()?;
        }
        if now >= self.next_epoch_ask {
            self.next_epoch_ask = now + EPOCH_ASK_MS;
            self.ask_epoch_changes();
        }
        for p in self.book.housekeeping(now, &self.connected) {
            let _ = self.swarm.behaviour_mut().blocked.unblock_peer(p);
            self.swarm
                .behaviour_mut()
                .gossipsub
                .remove_blacklisted_peer(&p);
            info!(%p, "ban ended");
        }
        if self.connected.is_empty() && !self.bootstrap.is_empty() && now % 5_000 < HOUSEKEEPING_MS
        {
            for addr in self.bootstrap.clone() {
                self.dial(addr);
            }
        }
        self.metrics
            .peers
            .store(self.connected.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Asks a member of each pulled shard for the blocks finalized since
    /// this replica's height (the answer goes to the replica, which checks
    /// each block's certificate and commits it).
    fn pull_blocks(&mut self, now: TimeMs) {
        let due: Vec<ShardId> = self
            .pulls
            .iter()
            .filter(|(s, p)| now >= p.next_at && self.replicas.contains_key(s))
            .map(|(s, _)| *s)
            .collect();
        for s in due {
            let peers = self.shard_peers(s);
            let Some(height) = self.replicas.get(&s).map(|r| r.height()) else {
                continue;
            };
            let Some(pull) = self.pulls.get_mut(&s) else {
                continue;
            };
            pull.next_at = now + PULL_EVERY_MS;
            if peers.is_empty() {
                continue;
            }
            pull.turn = pull.turn.wrapping_add(1);
            let peer = peers[pull.turn % peers.len()];
            self.send_shard(peer, s, Message::SyncRequest { from: height });
        }
    }

    fn step_fast_syncs(&mut self, now: TimeMs) -> Result<()> {
        let shards: Vec<ShardId> = self.syncing.keys().copied().collect();
        for s in shards {
            let peers: Vec<ios_chain::message::PeerId> = self
                .shard_peers(s)
                .into_iter()
                .map(|p| self.book.handle(p))
                .collect();
            let Some(fs) = self.syncing.get_mut(&s) else {
                continue;
            };
            match fs.progress() {
                Progress::Running => {
                    for (h, msg) in fs.tick(now, &peers) {
                        if let Some(p) = self.book.peer(h) {
                            self.send_shard(p, s, (*msg).clone());
                        }
                    }
                }
                Progress::Complete => {
                    let Some(fs) = self.syncing.remove(&s) else {
                        continue;
                    };
                    let dir = self.shard_dir(s);
                    let db = ios_chain::state::open_db(&dir, Some(500))?;
                    fs.restore(&db)
                        .with_context(|| format!("restoring shard {s} from its snapshot"))?;
                    info!(shard = s, height = ?fs.height(), "fast sync complete");
                    self.metrics.fast_syncs.fetch_add(1, Ordering::Relaxed);
                    self.start_replica(s, db)?;
                }
                Progress::NoSnapshot => {
                    self.syncing.remove(&s);
                    info!(
                        shard = s,
                        "no snapshot offered: syncing blocks from genesis"
                    );
                    let db = ios_chain::state::open_db(&self.shard_dir(s), Some(500))?;
                    self.start_replica(s, db)?;
                }
            }
        }
        Ok(())
    }

    /// Account-shard replicas here relay the epoch changes their shard has
    /// not applied yet, in order.
    fn relay_epoch_changes(&mut self, now: TimeMs) {
        let latest = self.epochs.latest();
        let shards: Vec<ShardId> = self
            .replicas
            .keys()
            .copied()
            .filter(|s| *s != BEACON)
            .collect();
        for s in shards {
            if self
                .last_relay
                .get(&s)
                .is_some_and(|t| now < t + RELAY_EVERY_MS)
            {
                continue;
            }
            let Some(r) = self.replicas.get(&s) else {
                continue;
            };
            let applied = ios_chain::light_client::latest_epoch(r.store()).unwrap_or(latest);
            if applied >= latest {
                continue;
            }
            let txs: Vec<SignedTransaction> = self
                .changes
                .range(applied + 1..)
                .take(4)
                .map(|(_, c)| self.relay_tx(s, &LedgerCall::BeaconUpdate(Box::new((**c).clone()))))
                .collect();
            if txs.is_empty() {
                continue;
            }
            self.last_relay.insert(s, now);
            self.metrics
                .relays_sent
                .fetch_add(txs.len() as u64, Ordering::Relaxed);
            debug!(shard = s, applied, latest, "relaying epoch changes");
            let out = match self.replicas.get_mut(&s) {
                Some(r) => r.submit(txs, now).1,
                None => continue,
            };
            if let Err(e) = self.route(s, out) {
                warn!(shard = s, error = %e, "relaying epoch changes failed");
            }
        }
    }

    /// Carries the Atomix steps that are due, packed into relay batches per
    /// shard (singly if a batch cannot be packed).
    fn relay_atomix(&mut self, now: TimeMs) {
        let Some(relayer) = self.relayer.as_mut() else {
            return;
        };
        let mut by_shard: BTreeMap<ShardId, Vec<Step>> = BTreeMap::new();
        for (shard, step) in relayer.due(now) {
            by_shard.entry(shard).or_default().push(step);
        }
        for (shard, steps) in by_shard {
            let calls: Vec<LedgerCall> = match RelayBatch::pack(steps.clone(), RELAY_BATCH_BYTES) {
                Ok(batches) => batches
                    .into_iter()
                    .map(|b| LedgerCall::AtomixBatch(Box::new(b)))
                    .collect(),
                Err(e) => {
                    debug!(shard, error = %e, "relaying steps singly");
                    steps.into_iter().map(step_call).collect()
                }
            };
            let txs: Vec<SignedTransaction> =
                calls.iter().map(|c| self.relay_tx(shard, c)).collect();
            self.metrics
                .atomix_relays
                .fetch_add(txs.len() as u64, Ordering::Relaxed);
            let Some(r) = self.replicas.get_mut(&shard) else {
                continue;
            };
            let (results, out) = r.submit(txs, now);
            for e in results.into_iter().filter_map(|r| r.err()) {
                debug!(shard, error = %e, "Atomix relay not pooled");
            }
            if let Err(e) = self.route(shard, out) {
                warn!(shard, error = %e, "relaying Atomix steps failed");
            }
        }
    }

    fn relay_tx(&self, shard: ShardId, call: &LedgerCall) -> SignedTransaction {
        Transaction {
            chain_id: self.genesis.params.chain_id.clone(),
            shard,
            sender: self.key.address(),
            nonce: 0,
            fee: 0,
            expires_at: Height::MAX,
            call: LedgerModule::call(call),
        }
        .sign(&self.key)
    }

    fn ask_epoch_changes(&mut self) {
        let Some(peer) = self
            .connected
            .iter()
            .filter(|p| !self.book.is_banned(p))
            .nth((unix_ms() % self.connected.len().max(1) as u64) as usize)
            .copied()
        else {
            return;
        };
        let from = self.epochs.latest() + 1;
        let id = self
            .swarm
            .behaviour_mut()
            .rpc
            .send_request(&peer, Frame::Good(Request::EpochChanges { from }));
        self.pending.insert(id, Pending::Epochs);
    }

    /// Learns an epoch change (from the beacon replica here, gossip or a
    /// peer's answer); announces it when it is new and `announce` is set.
    fn learn_epoch_change(&mut self, change: Arc<EpochChange>, announce: bool) -> Result<bool> {
        let e = change.info.epoch;
        if !self.epochs.apply(&change)? {
            return Ok(false);
        }
        info!(epoch = e, "new epoch");
        self.meta
            .open_tree(CHANGES_TREE)?
            .insert(e.to_be_bytes(), ios_chain::codec::encode(&*change))?;
        if announce {
            let bytes = ios_chain::codec::encode(&*change);
            self.publish(p2p::epoch_topic(&self.chain_id), bytes);
        }
        // Syncing shards may now take snapshots of this epoch.
        for (s, fs) in self.syncing.iter_mut() {
            if let Ok(c) = change.info.committee(*s) {
                fs.trust(e, c.clone());
            }
        }
        self.changes.insert(e, change);
        self.last_relay.clear();
        self.serve_committees()?;
        Ok(true)
    }

    // ---- outputs -----------------------------------------------------------

    fn route(&mut self, shard: ShardId, outs: Vec<Output>) -> Result<()> {
        for o in outs {
            match o {
                Output::Broadcast(m) => {
                    let channel = Channel::of(&m);
                    // Off the shard's consensus topics: no status or vote of
                    // a non-member is worth sending (its own transactions are).
                    if self.pulls.contains_key(&shard) && channel != Channel::Txs {
                        continue;
                    }
                    let t = p2p::shard_topic(&self.chain_id, shard, channel);
                    self.publish(t, m.to_bytes());
                }
                Output::Send(h, m) => {
                    if let Some(p) = self.book.peer(h) {
                        self.send_shard(p, shard, (*m).clone());
                    }
                }
                Output::Committed(cb) => self.on_commit(shard, &cb)?,
                Output::Evidence(ev) => self.carry_evidence(&ev)?,
            }
        }
        Ok(())
    }

    fn on_commit(&mut self, shard: ShardId, cb: &CommittedBlock) -> Result<()> {
        let h = &cb.block.header;
        self.metrics
            .finalized_txs
            .fetch_add(cb.block.txs.len() as u64, Ordering::Relaxed);
        self.metrics
            .finalized_blocks
            .fetch_add(1, Ordering::Relaxed);
        self.metrics
            .observe_finality(unix_ms().saturating_sub(h.time));
        let _ = self.commits.send(Arc::new(CommitEvent {
            shard,
            height: h.height,
            epoch: h.epoch,
            state_root: cb.state_root,
            block_hash: cb.block.hash(),
            txs: cb.block.txs.iter().map(|t| t.id()).collect(),
        }));
        if let Some(r) = &mut self.relayer {
            r.observe(shard, &cb.block, &cb.cert, &cb.receipts, unix_ms());
        }
        if let Some(change) = &cb.epoch_change {
            if let Err(e) = self.learn_epoch_change(change.clone(), true) {
                warn!(error = %e, "the beacon's own epoch change did not verify");
            }
        }
        Ok(())
    }

    /// Equivocation seen on an account shard goes to the beacon, where
    /// stakes live: to this node's beacon replica, or to a beacon peer.
    fn carry_evidence(&mut self, ev: &ios_chain::ledger::Evidence) -> Result<()> {
        if let Some(r) = self.replicas.get_mut(&BEACON) {
            let out = r.report_evidence(ev, unix_ms())?;
            return self.route(BEACON, out);
        }
        for p in self.shard_peers(BEACON).into_iter().take(2) {
            let id = self
                .swarm
                .behaviour_mut()
                .rpc
                .send_request(&p, Frame::Good(Request::Evidence(Box::new(ev.clone()))));
            self.pending.insert(id, Pending::Evidence);
        }
        Ok(())
    }

    fn publish(&mut self, topic: gossipsub::IdentTopic, bytes: Vec<u8>) {
        let len = bytes.len() as u64;
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic.clone(), bytes)
        {
            Ok(_) => {
                self.metrics
                    .gossip_out_bytes
                    .fetch_add(len, Ordering::Relaxed);
            }
            // Alone on the topic (yet): the replica re-gossips what matters.
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic)
            | Err(gossipsub::PublishError::Duplicate) => {}
            Err(e) => debug!(%topic, error = %e, "publish failed"),
        }
    }

    fn send_shard(&mut self, peer: PeerId, shard: ShardId, msg: Message) {
        self.metrics.rpc_out.fetch_add(1, Ordering::Relaxed);
        let id = self
            .swarm
            .behaviour_mut()
            .rpc
            .send_request(&peer, Frame::Good(Request::Shard { shard, msg }));
        self.pending.insert(id, Pending::Shard(shard));
    }

    fn dial(&mut self, addr: Multiaddr) {
        if let Err(e) = self.swarm.dial(addr.clone()) {
            warn!(%addr, error = %e, "dial failed");
        }
    }

    /// A peer's input proved a fault: lower its score; ban it at the line.
    /// A peer's frame refused: a fault if it was not a value, only noted
    /// if it was cut short (see [`Frame::Cut`]).
    fn refused_frame(&mut self, peer: PeerId, what: &str, refusal: &p2p::FrameRefusal) {
        if refusal.fault {
            self.fault(peer, what, refusal);
        } else {
            debug!(%peer, what, reason = %refusal, "frame cut short; not the peer's fault");
        }
    }

    fn fault(&mut self, peer: PeerId, what: &str, error: &dyn std::fmt::Display) {
        self.metrics.faults.fetch_add(1, Ordering::Relaxed);
        warn!(%peer, what, %error, score = self.book.score(&peer) - p2p::FAULT_PENALTY, "bad input from peer");
        if self.book.fault(peer, unix_ms()) {
            self.metrics.bans.fetch_add(1, Ordering::Relaxed);
            warn!(%peer, "peer banned");
            let b = self.swarm.behaviour_mut();
            let _ = b.blocked.block_peer(peer);
            b.gossipsub.blacklist_peer(&peer);
            b.kad.remove_peer(&peer);
        }
    }

    // ---- inputs ------------------------------------------------------------

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Submit { txs, reply } => self.submit(txs, reply),
            Command::Query(q) => {
                let view = View {
                    genesis: &self.genesis,
                    relayer: self.relayer.as_ref(),
                    metrics: &self.metrics,
                    replicas: &self.replicas,
                    epochs: &self.epochs,
                    syncing: self.syncing.keys().copied().collect(),
                    peers: self.connected.len(),
                    connected: &self.connected,
                    peer_id: *self.swarm.local_peer_id(),
                    listen: &self.listen,
                    subscribed: &self.subscribed,
                    pulled: self.pulls.keys().copied().collect(),
                };
                q(&view);
            }
            Command::Dial(addr) => self.dial(addr),
            Command::Huds {
                peer,
                addrs,
                request,
                reply,
            } => {
                if peer == *self.swarm.local_peer_id() {
                    let _ = reply.send(Err("that is this node".into()));
                    return;
                }
                for a in addrs {
                    self.swarm.add_peer_address(peer, a);
                }
                let id = self
                    .swarm
                    .behaviour_mut()
                    .huds
                    .send_request(&peer, Frame::Good(request));
                self.pending_huds.insert(id, reply);
            }
            Command::HudsReply {
                channel,
                response,
                stored,
            } => {
                if let (Some((shard, id)), Some(p)) = (stored, self.provider.as_mut()) {
                    p.receipts
                        .entry((shard, id.content))
                        .or_default()
                        .insert((id.segment, id.index));
                }
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .huds
                    .send_response(channel, response);
            }
            Command::ProviderCall { shard, call } => self.provider_submit(shard, call),
        }
    }

    // ---- HUDS ----------------------------------------------------------------

    /// A HUDS request from `peer`: checked here against chain state, the
    /// disk work done off the node's task (its answer comes back as
    /// [`Command::HudsReply`]).
    fn on_huds_request(
        &mut self,
        peer: PeerId,
        frame: Frame<HudsRequest>,
        channel: request_response::ResponseChannel<HudsResponse>,
    ) {
        let answer = |node: &mut Node, channel, response| {
            let _ = node
                .swarm
                .behaviour_mut()
                .huds
                .send_response(channel, response);
        };
        let request = match frame.into_request() {
            Ok(r) => r,
            Err(refusal) => {
                self.refused_frame(peer, "huds frame", &refusal);
                return answer(
                    self,
                    channel,
                    crate::huds::refused("malformed", refusal.reason),
                );
            }
        };
        let Some(p) = self.provider.as_ref() else {
            return answer(
                self,
                channel,
                crate::huds::refused("not_provider", "this node stores no fragments"),
            );
        };
        let store = p.store.clone();
        let work: HudsWork = match request {
            HudsRequest::Put { shard, id, bytes } => {
                let (Some(key), Some(r)) = (p.keys.get(&shard), self.replicas.get(&shard)) else {
                    return answer(
                        self,
                        channel,
                        crate::huds::refused(
                            "unavailable",
                            format!("this provider does not serve shard {shard} (yet)"),
                        ),
                    );
                };
                let deal = ios_chain::committee::read::<ios_storage::module::Deal>(
                    r.store(),
                    &ios_storage::module::keys::deal(&id.content),
                )
                .ok()
                .flatten();
                let root =
                    match crate::huds::check_put(deal.as_ref(), &key.address(), &id, bytes.len()) {
                        Ok(root) => root,
                        Err(refusal) => return answer(self, channel, refusal),
                    };
                Box::new(move || {
                    let r = store
                        .lock()
                        .expect("store lock")
                        .put(id, root, &bytes, unix_ms());
                    match r {
                        Ok(_) => (HudsResponse::Stored, Some((shard, id))),
                        Err(e) => (crate::huds::refused(e.code(), e.to_string()), None),
                    }
                })
            }
            HudsRequest::Get { id } => {
                Box::new(move || match store.lock().expect("store lock").get(&id) {
                    Ok(b) => (HudsResponse::Fragment(b), None),
                    Err(e) => (crate::huds::refused(e.code(), e.to_string()), None),
                })
            }
            HudsRequest::Chunk { id, chunk } => {
                Box::new(
                    move || match store.lock().expect("store lock").prove(&id, chunk) {
                        Ok(p) => (HudsResponse::Chunk(p), None),
                        Err(e) => (crate::huds::refused(e.code(), e.to_string()), None),
                    },
                )
            }
        };
        let back = self.commands.clone();
        tokio::task::spawn_blocking(move || {
            let (response, stored) = work();
            let _ = back.blocking_send(Command::HudsReply {
                channel,
                response,
                stored,
            });
        });
    }

    /// A provider's duties, once a second: register on every shard it
    /// serves (again when its offer or address changed), sign receipts for
    /// what it stored, answer its audit challenges.
    fn provider_duties(&mut self, now: TimeMs) {
        let Some(p) = self.provider.as_mut() else {
            return;
        };
        if now < p.next_duty {
            return;
        }
        p.next_duty = now + 1_000;
        if now >= p.next_receipt_scan {
            p.next_receipt_scan = now + RECEIPT_SCAN_MS;
            owed_receipts(p, &self.replicas);
        }
        let endpoint = Endpoint {
            peer: self.swarm.local_peer_id().to_bytes(),
            addrs: self
                .listen
                .iter()
                .take(Endpoint::MAX_ADDRS)
                .map(|a| a.to_string())
                .collect(),
        };
        let mut calls = Vec::new();
        let mut proofs = Vec::new();
        for (shard, key) in p.keys.iter() {
            let Some(r) = self.replicas.get(shard) else {
                continue;
            };
            let me = key.address();
            let store = r.store();
            let registered: Option<ios_storage::module::Provider> =
                ios_chain::committee::read(store, &ios_storage::module::keys::provider(&me))
                    .ok()
                    .flatten();
            let current = registered.as_ref().is_some_and(|reg| {
                reg.endpoint == endpoint
                    && reg.capacity == p.config.capacity
                    && reg.price_per_gib_epoch == p.config.price_per_gib_epoch
            });
            let last = p.registered_at.get(shard).copied().unwrap_or(0);
            if !current && now.saturating_sub(last) >= 10_000 {
                p.registered_at.insert(*shard, now);
                calls.push((
                    *shard,
                    StorageCall::RegisterProvider {
                        capacity: p.config.capacity,
                        price_per_gib_epoch: p.config.price_per_gib_epoch,
                        stake: if registered.is_some() {
                            0
                        } else {
                            p.config.stake
                        },
                        endpoint: endpoint.clone(),
                    },
                ));
            }
            let owed: Vec<_> = p
                .receipts
                .keys()
                .filter(|(s, _)| s == shard)
                .copied()
                .collect();
            for k in owed {
                if let Some(frags) = p.receipts.remove(&k) {
                    calls.push((
                        *shard,
                        StorageCall::Receipt {
                            content: k.1,
                            fragments: frags.into_iter().collect(),
                        },
                    ));
                }
            }
            let round: Option<AuditRound> =
                ios_chain::committee::read(store, ios_storage::module::keys::AUDITS)
                    .ok()
                    .flatten();
            if let Some(round) = round {
                let open = !round.settled && r.height() <= round.deadline;
                let mine = round
                    .challenges
                    .iter()
                    .find(|(c, st)| c.provider == me && *st == AuditState::Open);
                if let (true, Some((c, _))) = (open, mine) {
                    if p.proving.insert((*shard, round.epoch)) {
                        proofs.push((*shard, *c));
                    }
                }
            }
        }
        for (shard, c) in proofs {
            let store = p.store.clone();
            let back = self.commands.clone();
            tokio::task::spawn_blocking(move || {
                let id = FragmentId {
                    content: c.content,
                    segment: c.segment,
                    index: c.index,
                };
                match store.lock().expect("store lock").prove(&id, c.chunk) {
                    Ok(proof) => {
                        let _ = back.blocking_send(Command::ProviderCall {
                            shard,
                            call: StorageCall::Prove {
                                content: c.content,
                                proof,
                            },
                        });
                    }
                    Err(e) => warn!(shard, %id, error = %e, "cannot answer this epoch's audit"),
                }
            });
        }
        for (shard, call) in calls {
            self.provider_submit(shard, call);
        }
        // The replica re-gossips only its own key's transactions: the
        // provider's accounts' pooled ones go out again here, in case the
        // first gossip found no peer (a new node's mesh forms over seconds).
        if now
            >= self
                .provider
                .as_ref()
                .map_or(TimeMs::MAX, |p| p.next_regossip)
        {
            let mut out = Vec::new();
            if let Some(p) = self.provider.as_mut() {
                p.next_regossip = now + PROVIDER_REGOSSIP_MS;
                for (shard, key) in p.keys.iter() {
                    if let Some(r) = self.replicas.get(shard) {
                        match r.pooled_from(&key.address(), 8) {
                            Ok(txs) if !txs.is_empty() => out.push((*shard, txs)),
                            Ok(_) => {}
                            Err(e) => warn!(shard, error = %e, "reading the provider's pool"),
                        }
                    }
                }
            }
            for (shard, txs) in out {
                let t = p2p::shard_topic(&self.chain_id, shard, Channel::Txs);
                self.publish(t, Message::Txs(txs).to_bytes());
            }
        }
    }

    /// Signs `call` with this provider's account on `shard` and pools it
    /// in its own replica of the shard (provider duties skip the busy
    /// gate that client submissions meet). A receipt that could not be
    /// pooled is owed again at the next turn.
    fn provider_submit(&mut self, shard: ShardId, call: StorageCall) {
        let (Some(p), Some(r)) = (self.provider.as_mut(), self.replicas.get_mut(&shard)) else {
            return;
        };
        let key = p.keys[&shard].clone();
        let nonce = match r.next_nonce(&key.address()) {
            Ok(n) => n,
            Err(e) => return warn!(shard, error = %e, "no nonce for a provider transaction"),
        };
        let mut tx = Transaction {
            chain_id: self.genesis.params.chain_id.clone(),
            shard,
            sender: key.address(),
            nonce,
            fee: 0,
            expires_at: r.height().saturating_add(600),
            call: call.to_call(),
        };
        let len = ios_chain::codec::encode(&tx.clone().sign(&key)).len() as u64;
        tx.fee = self.genesis.params.min_fee_per_byte.saturating_mul(len);
        let what = match &call {
            StorageCall::RegisterProvider { .. } => "registration",
            StorageCall::Receipt { .. } => "receipt",
            StorageCall::Prove { .. } => "audit proof",
            StorageCall::CreateDeal { .. } => "deal",
        };
        let (mut results, out) = r.submit(vec![tx.sign(&key)], unix_ms());
        match results.pop() {
            Some(Ok(_)) => debug!(shard, what, "provider transaction pooled"),
            Some(Err(e)) => {
                warn!(shard, what, error = %e, "provider transaction not pooled");
                if let StorageCall::Receipt { content, fragments } = call {
                    p.receipts
                        .entry((shard, content))
                        .or_default()
                        .extend(fragments);
                }
            }
            None => {}
        }
        if let Err(e) = self.route(shard, out) {
            warn!(shard, error = %e, "routing a provider transaction failed");
        }
    }

    fn submit(
        &mut self,
        txs: Vec<SignedTransaction>,
        reply: oneshot::Sender<Vec<Result<Hash, Refusal>>>,
    ) {
        // All of one submission go to the shard the first one names.
        let shard = txs.first().map_or(BEACON, |t| t.tx.shard);
        if let Some(r) = self.replicas.get_mut(&shard) {
            if let Some(busy) = busy(r, shard) {
                let _ = reply.send(vec![Err(busy); txs.len()]);
                return;
            }
            let (results, out) = r.submit(txs, unix_ms());
            let results = results
                .into_iter()
                .map(|r| r.map_err(Refusal::from))
                .collect();
            let _ = reply.send(results);
            if let Err(e) = self.route(shard, out) {
                warn!(shard, error = %e, "routing a submission failed");
            }
            return;
        }
        let n = txs.len();
        let Some(peer) = self.shard_peers(shard).first().copied() else {
            let _ = reply.send(vec![
                Err(Refusal::new(
                    "unavailable",
                    format!("no peer of shard {shard} is connected yet")
                ));
                n
            ]);
            return;
        };
        let id = self
            .swarm
            .behaviour_mut()
            .rpc
            .send_request(&peer, Frame::Good(Request::Submit { shard, txs }));
        self.pending.insert(id, Pending::Forward(reply, n));
    }

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) -> Result<()> {
        match ev {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                let verdict = self.on_gossip(propagation_source, &message);
                let acceptance = match &verdict {
                    Ok(true) => gossipsub::MessageAcceptance::Accept,
                    Ok(false) => gossipsub::MessageAcceptance::Ignore,
                    Err(_) => gossipsub::MessageAcceptance::Reject,
                };
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, acceptance);
                // Charged to the peer that sent it to us: gossip carries no
                // transport signature, and an honest peer forwards only
                // what its own replica accepted.
                if let Err(e) = verdict {
                    self.fault(propagation_source, "gossip", &e);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Rpc(request_response::Event::Message {
                peer,
                message,
                ..
            })) => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    self.metrics.rpc_in.fetch_add(1, Ordering::Relaxed);
                    let response = self.on_request(peer, request)?;
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .rpc
                        .send_response(channel, response);
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(p) = self.pending.remove(&request_id) {
                        self.on_response(peer, p, response)?;
                    }
                }
            },
            SwarmEvent::Behaviour(BehaviourEvent::Rpc(
                request_response::Event::OutboundFailure {
                    request_id,
                    peer,
                    error,
                    ..
                },
            )) => {
                debug!(%peer, %error, "request failed");
                // A response that does not decode (or is oversized) is the peer's fault.
                if let request_response::OutboundFailure::Io(e) = &error {
                    if e.kind() == std::io::ErrorKind::InvalidData {
                        self.fault(peer, "rpc response", e);
                    }
                }
                if let Some(Pending::Forward(reply, n)) = self.pending.remove(&request_id) {
                    let _ = reply.send(vec![
                        Err(Refusal::new(
                            "unavailable",
                            format!("forwarding failed: {error}")
                        ));
                        n
                    ]);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Rpc(
                request_response::Event::InboundFailure { peer, error, .. },
            )) => {
                debug!(%peer, %error, "inbound request failed");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Huds(request_response::Event::Message {
                peer,
                message,
                ..
            })) => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.on_huds_request(peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.pending_huds.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            SwarmEvent::Behaviour(BehaviourEvent::Huds(
                request_response::Event::OutboundFailure {
                    request_id, error, ..
                },
            )) => {
                if let Some(reply) = self.pending_huds.remove(&request_id) {
                    let _ = reply.send(Err(error.to_string()));
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                for a in info.listen_addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, a);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::RoutingUpdated {
                peer, ..
            })) if !self.connected.contains(&peer) && !self.book.is_banned(&peer) => {
                let _ = self.swarm.dial(peer);
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                let new = self.connected.insert(peer_id);
                if self.joining.is_some() {
                    self.next_epoch_ask = 0;
                }
                debug!(peer = %peer_id, new, "connection established");
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.connected.remove(&peer_id);
                self.rpc_rates.remove(&peer_id);
            }
            _ => {}
        }
        Ok(())
    }

    /// One gossip message, sent to us by `from`: Ok(true) to forward it,
    /// Ok(false) to drop it quietly (stale, not ours), Err when it proves
    /// the peer that sent it faulty.
    fn on_gossip(
        &mut self,
        from: PeerId,
        message: &gossipsub::Message,
    ) -> Result<bool, ChainError> {
        self.metrics
            .gossip_in_bytes
            .fetch_add(message.data.len() as u64, Ordering::Relaxed);
        if message.topic == p2p::epoch_topic(&self.chain_id).hash() {
            let change: EpochChange =
                ios_chain::codec::decode("epoch change", &message.data, p2p::MAX_GOSSIP_BYTES)?;
            return match self.learn_epoch_change(Arc::new(change), false) {
                Ok(new) => Ok(new),
                // Ahead of us: ask for the ones in between; not a fault.
                Err(e) => match e.downcast::<ChainError>() {
                    Ok(ce) if ce.is_peer_fault() => Err(ce),
                    _ => {
                        self.next_epoch_ask = 0;
                        Ok(false)
                    }
                },
            };
        }
        let Some(shard) = self.topic_shard(&message.topic) else {
            return Ok(false);
        };
        let msg = Message::from_bytes(&message.data)?;
        let (expected, got) = (self.topic_channel(&message.topic), Channel::of(&msg));
        if expected != Some(got) {
            return Err(ChainError::Malformed {
                what: "gossip",
                reason: format!("a {} message on the {:?} topic", msg.kind(), expected),
            });
        }
        if !self.check_signers(shard, &msg)? {
            return Ok(false);
        }
        // Replies go to the peer it came from (connected, unlike its publisher).
        let h = self.book.handle(from);
        let now = unix_ms();
        let Some(r) = self.replicas.get_mut(&shard) else {
            return Ok(false);
        };
        // A relayed quorum for another height cannot be checked here (its
        // votes are not verified), so it is not forwarded either.
        if let Message::Polka { block, .. } | Message::Proposal { block, .. } = &msg {
            let pol = matches!(&msg, Message::Polka { .. })
                || matches!(&msg, Message::Proposal { pol, .. } if !pol.is_empty());
            if pol && block.header.height != r.height() {
                return Ok(false);
            }
        }
        match r.handle(h, &msg, now) {
            Ok(out) => {
                if let Err(e) = self.route(shard, out) {
                    warn!(shard, error = %e, "routing failed");
                }
                Ok(true)
            }
            Err(e) if e.is_peer_fault() => Err(e),
            Err(e) => {
                debug!(shard, kind = msg.kind(), error = %e, "message not taken");
                Ok(false)
            }
        }
    }

    /// Whether every signer of a consensus message sits on `shard`'s
    /// committee in the epoch it signed as (a vote names its epoch; a
    /// proposal's is its block's). Every node can check this against its
    /// epoch chain whatever height it is at, and checks it before forwarding,
    /// so a failure proves the peer that sent the message faulty. Ok(false):
    /// an epoch this node does not know yet; the message is not forwarded.
    fn check_signers(&self, shard: ShardId, msg: &Message) -> Result<bool, ChainError> {
        let member = |epoch: Epoch, signer: &ios_chain::crypto::Address| {
            // The shard's replica may have reached an epoch before the
            // node's epoch chain heard of it.
            let Some(c) = self
                .epochs
                .info(epoch)
                .and_then(|i| i.committee(shard).ok())
                .or_else(|| {
                    let r = self.replicas.get(&shard)?;
                    Some(r.committee()).filter(|c| c.epoch == epoch)
                })
            else {
                return Ok(false);
            };
            if c.is_member(signer) {
                Ok(true)
            } else {
                Err(ChainError::NotMemberOfEpoch {
                    signer: *signer,
                    shard,
                    epoch,
                })
            }
        };
        let votes_of = |epoch: Epoch, votes: &[ios_chain::block::SignedVote]| {
            for v in votes {
                if v.vote.epoch != epoch {
                    return Err(ChainError::Malformed {
                        what: "quorum",
                        reason: format!(
                            "a vote of epoch {} for a block of epoch {epoch}",
                            v.vote.epoch
                        ),
                    });
                }
                if !member(epoch, &v.voter)? {
                    return Ok(false);
                }
            }
            Ok(true)
        };
        match msg {
            Message::Vote(v) => member(v.vote.epoch, &v.voter),
            Message::Proposal {
                proposal,
                block,
                pol,
            } => Ok(member(block.header.epoch, &proposal.proposer)?
                && votes_of(block.header.epoch, pol)?),
            Message::Polka { block, votes, .. } => votes_of(block.header.epoch, votes),
            _ => Ok(true),
        }
    }

    fn topic_shard(&self, topic: &gossipsub::TopicHash) -> Option<ShardId> {
        self.subscribed.iter().copied().find(|s| {
            Channel::ALL
                .iter()
                .any(|c| p2p::shard_topic(&self.chain_id, *s, *c).hash() == *topic)
        })
    }

    fn topic_channel(&self, topic: &gossipsub::TopicHash) -> Option<Channel> {
        let s = self.topic_shard(topic)?;
        Channel::ALL
            .into_iter()
            .find(|c| p2p::shard_topic(&self.chain_id, s, *c).hash() == *topic)
    }

    fn on_request(&mut self, peer: PeerId, frame: Frame) -> Result<Response> {
        if self.book.is_banned(&peer) {
            return Ok(Response::Refused("banned".into()));
        }
        // Taking the request releases the inbound budget it held: it is
        // handled right here, within this call.
        let request = match frame.into_request() {
            Ok(r) => r,
            Err(refusal) => {
                self.refused_frame(peer, "rpc frame", &refusal);
                return Ok(Response::Refused(format!("refused frame: {refusal}")));
            }
        };
        if !matches!(request, Request::Submit { .. }) {
            let now = unix_ms();
            let verdict = self
                .rpc_rates
                .entry(peer)
                .or_insert_with(|| p2p::RateLimit::new(now))
                .admit(now);
            match verdict {
                p2p::Admit::Yes => {}
                p2p::Admit::Refuse => return Ok(Response::Refused("rate limited".into())),
                p2p::Admit::RefuseAndFault => {
                    self.fault(
                        peer,
                        "rpc flood",
                        &format!("over {} requests per second", p2p::RPC_RATE_PER_S),
                    );
                    return Ok(Response::Refused("rate limited".into()));
                }
            }
        }
        let now = unix_ms();
        Ok(match request {
            Request::Shard { shard, msg } => {
                match self.check_signers(shard, &msg) {
                    Ok(true) => {}
                    Ok(false) => {
                        return Ok(Response::Refused(
                            "signed in an epoch this node does not know yet".into(),
                        ))
                    }
                    Err(e) => {
                        self.fault(peer, msg.kind(), &e);
                        return Ok(Response::Refused(e.to_string()));
                    }
                }
                let h = self.book.handle(peer);
                let Some(r) = self.replicas.get_mut(&shard) else {
                    return Ok(Response::Refused(format!(
                        "this node does not run shard {shard}"
                    )));
                };
                match r.handle(h, &msg, now) {
                    Ok(out) => {
                        let mut replies = Vec::new();
                        let mut rest = Vec::new();
                        for o in out {
                            match o {
                                Output::Send(to, m) if to == h => replies.push((*m).clone()),
                                o => rest.push(o),
                            }
                        }
                        self.route(shard, rest)?;
                        Response::Replies(replies)
                    }
                    Err(e) => {
                        if e.is_peer_fault() {
                            self.fault(peer, msg.kind(), &e);
                        }
                        Response::Refused(e.to_string())
                    }
                }
            }
            Request::EpochChanges { from } => Response::EpochChanges(
                self.changes
                    .range(from..)
                    .take(p2p::MAX_EPOCH_CHANGES)
                    .map(|(_, c)| (**c).clone())
                    .collect(),
            ),
            Request::Submit { shard, txs } => {
                let Some(r) = self.replicas.get_mut(&shard) else {
                    return Ok(Response::Refused(format!(
                        "this node does not run shard {shard}"
                    )));
                };
                if let Some(busy) = busy(r, shard) {
                    return Ok(Response::Submitted(vec![Err(busy); txs.len()]));
                }
                let (results, out) = r.submit(txs, now);
                self.route(shard, out)?;
                Response::Submitted(
                    results
                        .into_iter()
                        .map(|r| r.map_err(Refusal::from))
                        .collect(),
                )
            }
            Request::Evidence(ev) => match self.replicas.get_mut(&BEACON) {
                Some(r) => match r.report_evidence(&ev, now) {
                    Ok(out) => {
                        self.route(BEACON, out)?;
                        Response::Replies(vec![])
                    }
                    Err(e) => {
                        if e.is_peer_fault() {
                            self.fault(peer, "evidence", &e);
                        }
                        Response::Refused(e.to_string())
                    }
                },
                None => Response::Refused("this node does not run the beacon".into()),
            },
        })
    }

    fn on_response(&mut self, peer: PeerId, pending: Pending, response: Response) -> Result<()> {
        match (pending, response) {
            (Pending::Shard(shard), Response::Replies(msgs)) => {
                let h = self.book.handle(peer);
                let now = unix_ms();
                // A pulling node that got a full batch is behind: ask again at once.
                if let Some(pull) = self.pulls.get_mut(&shard) {
                    if msgs.iter().any(|m| {
                        matches!(m, Message::SyncResponse { blocks } if blocks.len() >= MAX_SYNC_BLOCKS as usize)
                    }) {
                        pull.next_at = 0;
                    }
                }
                for m in msgs {
                    if let Some(fs) = self.syncing.get_mut(&shard) {
                        if let Err(e) = fs.handle(h, &m) {
                            if e.is_peer_fault() {
                                self.fault(peer, m.kind(), &e);
                            }
                        }
                        continue;
                    }
                    let Some(r) = self.replicas.get_mut(&shard) else {
                        break;
                    };
                    match r.handle(h, &m, now) {
                        Ok(out) => self.route(shard, out)?,
                        Err(e) if e.is_peer_fault() => self.fault(peer, m.kind(), &e),
                        Err(e) => debug!(shard, kind = m.kind(), error = %e, "reply not taken"),
                    }
                }
                if self.pulls.get(&shard).is_some_and(|p| p.next_at == 0) {
                    self.pull_blocks(now);
                }
            }
            (Pending::Epochs, Response::EpochChanges(changes)) => {
                // A fresh node stops waiting on the first answer that taught
                // it an epoch (a fresh or hostile peer's empty answer does not).
                let known = self.epochs.latest();
                let changes_empty = changes.is_empty();
                for c in changes.into_iter().take(p2p::MAX_EPOCH_CHANGES) {
                    if c.info.epoch <= self.epochs.latest() {
                        continue;
                    }
                    if let Err(e) = self.learn_epoch_change(Arc::new(c), false) {
                        match e.downcast_ref::<ChainError>() {
                            Some(ce) if ce.is_peer_fault() => self.fault(peer, "epoch change", ce),
                            _ => debug!(%peer, error = %e, "epoch change not taken"),
                        }
                        break;
                    }
                }
                if changes_empty && self.joining.is_some() {
                    self.joining_empty.insert(peer);
                }
                // Two peers with nothing newer: the network is where we are.
                if self.joining.is_some()
                    && (self.epochs.latest() > known || self.joining_empty.len() >= 2)
                {
                    self.joining = None;
                    info!(epoch = self.epochs.latest(), "joined the network");
                    self.serve_committees()?;
                }
            }
            (Pending::Evidence, Response::Replies(_)) => {}
            (Pending::Forward(reply, _), Response::Submitted(results)) => {
                let _ = reply.send(results);
            }
            (Pending::Forward(reply, n), Response::Refused(why)) => {
                let _ = reply.send(vec![Err(Refusal::new("unavailable", why)); n]);
            }
            (_, Response::Refused(why)) => debug!(%peer, %why, "request refused"),
            (Pending::Forward(reply, n), _) => {
                let _ = reply.send(vec![
                    Err(Refusal::new(
                        "unavailable",
                        "the peer answered something else"
                    ));
                    n
                ]);
                self.fault(peer, "rpc", &"a response that does not answer the request");
            }
            (_, _) => self.fault(peer, "rpc", &"a response that does not answer the request"),
        }
        Ok(())
    }
}
