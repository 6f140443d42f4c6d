//! The libp2p side of a node: the behaviour (identify, ping, kademlia,
//! gossipsub, request-response, connection limits, a block list), the wire
//! types of the request-response protocol with their bounded codec, gossip
//! topic names, and the score that turns a peer's bad input into a ban.
//!
//! Gossipsub and kademlia keep libp2p's standard protocol ids; only the kad
//! DHT name and the request-response protocol are ours.

use borsh::{BorshDeserialize, BorshSerialize};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use ios_chain::light_client::EpochChange;
use ios_chain::message::Message;
use ios_chain::tx::SignedTransaction;
use ios_chain::types::{Epoch, ShardId};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    allow_block_list, connection_limits, gossipsub, identify, identity, kad, noise, ping,
    request_response, tcp, PeerId, StreamProtocol, Swarm, SwarmBuilder,
};
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The request-response protocol: shard messages, epoch changes, transactions.
pub const RPC_PROTOCOL: StreamProtocol = StreamProtocol::new("/ios/rpc/1");
/// Our kademlia DHT (the protocol is libp2p's; the name keeps IOS peers apart
/// from the public IPFS DHT).
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/ios/kad/1.0.0");
/// Largest response frame. A sync response of many blocks is the biggest
/// thing we send; anything larger is refused before it is decoded.
pub const MAX_FRAME_BYTES: usize = 16 << 20;
/// Largest gossip message (a proposal carries its block).
pub const MAX_GOSSIP_BYTES: usize = 4 << 20;
/// Largest request frame: a shard message as big as the largest gossip
/// (a block pushed to one peer), with room for its envelope.
pub const MAX_REQUEST_BYTES: usize = MAX_GOSSIP_BYTES + 4096;
/// Bytes of inbound requests held at once, from all peers together: read
/// but not yet taken by the node. Past it, new requests are dropped
/// unread (not a fault: the sender may retry) so that many peers each
/// streaming large requests cannot exhaust memory.
pub const INBOUND_BUDGET_BYTES: usize = 64 << 20;
/// Peers (connected or gossip authors) the book keeps handles for; the
/// least recently seen of those not connected are forgotten past it.
pub const MAX_KNOWN_PEERS: usize = 4096;
/// Inbound requests (other than submissions, which the pool's `busy`
/// answer governs) a peer may make per second, sustained, and in a burst.
/// Honest peers stay far below: a few per second each in a loaded devnet.
pub const RPC_RATE_PER_S: u64 = 200;
pub const RPC_BURST: u64 = 2_000;
/// While a peer stays over its rate, one fault per this long (ten seconds
/// of flooding: a ban).
pub const FLOOD_FAULT_MS: u64 = 1_000;
/// A fault score recovers one point per this long (an honest peer's rare
/// fault is forgotten; a steady offender still reaches the ban line).
pub const SCORE_RECOVERY_MS: u64 = 30_000;
/// Epoch changes in one response.
pub const MAX_EPOCH_CHANGES: usize = 16;
/// Score at or below which a peer is banned.
pub const BAN_SCORE: i32 = -100;
/// What one proven fault costs (ten faults: a ban).
pub const FAULT_PENALTY: i32 = 10;
/// How long a ban lasts.
pub const BAN_MS: u64 = 10 * 60 * 1000;

/// The kinds of gossip of one shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Transactions (user and relay).
    Txs,
    /// Votes, status and the rest of the consensus chatter.
    Consensus,
    /// Proposals and polkas: the messages that carry blocks.
    Blocks,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Txs, Channel::Consensus, Channel::Blocks];

    pub fn name(self) -> &'static str {
        match self {
            Channel::Txs => "txs",
            Channel::Consensus => "consensus",
            Channel::Blocks => "blocks",
        }
    }

    /// Where a replica's broadcast goes.
    pub fn of(msg: &Message) -> Channel {
        match msg {
            Message::Txs(_) => Channel::Txs,
            Message::Proposal { .. } | Message::Polka { .. } => Channel::Blocks,
            _ => Channel::Consensus,
        }
    }
}

/// The gossip topic of one shard's channel: `ios/<chain>/shard/<s>/<channel>`.
pub fn shard_topic(chain: &str, shard: ShardId, channel: Channel) -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(format!("ios/{chain}/shard/{shard}/{}", channel.name()))
}

/// The topic on which beacon members announce finished epochs.
pub fn epoch_topic(chain: &str) -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(format!("ios/{chain}/epochs"))
}

/// A request to a peer.
#[derive(Clone, Debug, BorshSerialize, BorshDeserialize)]
pub enum Request {
    /// A message for the receiver's replica of `shard` (a vote sent to one
    /// peer, a sync request, a block push, a snapshot chunk request). The
    /// response carries whatever the replica answers the sender.
    Shard { shard: ShardId, msg: Message },
    /// The epoch changes from `from` on, oldest first.
    EpochChanges { from: Epoch },
    /// Transactions to pool on `shard` (a gateway forwarding what users submit).
    Submit {
        shard: ShardId,
        txs: Vec<SignedTransaction>,
    },
    /// Equivocation seen on an account shard, for the receiver's beacon
    /// replica to submit (stakes live on the beacon).
    Evidence(Box<ios_chain::ledger::Evidence>),
}

/// A peer's answer.
#[derive(Clone, Debug, BorshSerialize, BorshDeserialize)]
pub enum Response {
    /// What the receiver's replica sent back to the requester.
    Replies(Vec<Message>),
    EpochChanges(Vec<EpochChange>),
    /// Per transaction: its id, or why it was refused.
    Submitted(Vec<Result<ios_chain::hash::Hash, Refusal>>),
    /// The request could not be served (no replica of that shard here, a
    /// message the replica refused); the text says why.
    Refused(String),
}

/// Why a node refused a transaction: the error's machine-readable code and
/// its message.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Refusal {
    pub code: String,
    pub message: String,
}

impl Refusal {
    pub fn new(code: &str, message: impl Into<String>) -> Refusal {
        Refusal {
            code: code.into(),
            message: message.into(),
        }
    }
}

impl From<ios_chain::error::ChainError> for Refusal {
    fn from(e: ios_chain::error::ChainError) -> Refusal {
        Refusal::new(e.code(), e.to_string())
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A request as read off the wire: decoded, or refused (oversized, not a
/// request) with the reason. libp2p reports nothing to the behaviour when
/// reading a request fails, so a bad frame is read as `Bad` and the node
/// answers it, penalizing the sender. `Bad` is never written.
#[derive(Clone, Debug)]
pub enum Frame<R = Request> {
    Good(R),
    /// A request read from a peer, counted against [`INBOUND_BUDGET_BYTES`]
    /// until the node takes it.
    Read(R, Held),
    Bad(String),
    /// A frame that ended before its value did: the sender gave up while
    /// writing (its request timed out under load, its connection went).
    /// Refused, but not a fault: an honest peer on a busy machine sends
    /// these, and banning it for them cut busy networks apart.
    Cut(String),
}

/// Why a peer's frame was refused, and whether it counts against the peer.
#[derive(Debug)]
pub struct FrameRefusal {
    pub reason: String,
    pub fault: bool,
}

impl std::fmt::Display for FrameRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl<R> Frame<R> {
    /// The request, or why the peer's frame was refused (the budget it held
    /// is released here).
    pub fn into_request(self) -> Result<R, FrameRefusal> {
        match self {
            Frame::Good(r) | Frame::Read(r, _) => Ok(r),
            Frame::Bad(reason) => Err(FrameRefusal {
                reason,
                fault: true,
            }),
            Frame::Cut(reason) => Err(FrameRefusal {
                reason,
                fault: false,
            }),
        }
    }
}

/// Whether borsh stopped because the input ended (the frame was cut short)
/// rather than because what was there is not a value.
fn cut_short(e: &io::Error) -> bool {
    e.to_string() == "Unexpected length of input"
}

/// A shared byte budget for what peers send us.
#[derive(Debug)]
struct Budget {
    used: AtomicUsize,
    limit: usize,
}

impl Budget {
    /// Takes `n` bytes; false (taking nothing) when that would pass the limit.
    fn reserve(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|t| *t <= self.limit)
            })
            .is_ok()
    }
}

#[derive(Debug)]
struct Reservation {
    budget: Arc<Budget>,
    n: usize,
}

impl Reservation {
    fn new(budget: &Arc<Budget>) -> Reservation {
        Reservation {
            budget: budget.clone(),
            n: 0,
        }
    }

    fn grow(&mut self, n: usize) -> bool {
        let ok = self.budget.reserve(n);
        if ok {
            self.n += n;
        }
        ok
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.n, Ordering::AcqRel);
    }
}

/// Bytes of the inbound budget a read request holds (released when the
/// last clone is dropped).
#[derive(Clone, Debug)]
pub struct Held(#[allow(dead_code)] Arc<Reservation>);

/// Borsh frames bounded by [`MAX_FRAME_BYTES`]: a longer stream is refused
/// unread past the limit, a frame that does not decode is refused (a
/// request as [`Frame::Bad`], a response as an `InvalidData` error).
/// Requests share one inbound budget over every stream of every peer.
pub struct BorshCodec<Req, Resp> {
    inbound: Arc<Budget>,
    max_request: usize,
    max_response: usize,
    _messages: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> Clone for BorshCodec<Req, Resp> {
    fn clone(&self) -> Self {
        BorshCodec {
            inbound: self.inbound.clone(),
            max_request: self.max_request,
            max_response: self.max_response,
            _messages: PhantomData,
        }
    }
}

/// The node's protocol: shard messages, epoch changes, submissions.
pub type RpcCodec = BorshCodec<Request, Response>;

impl Default for RpcCodec {
    fn default() -> Self {
        RpcCodec::with_budget(INBOUND_BUDGET_BYTES)
    }
}

impl RpcCodec {
    pub fn with_budget(bytes: usize) -> RpcCodec {
        BorshCodec::new(bytes, MAX_REQUEST_BYTES, MAX_FRAME_BYTES)
    }
}

impl<Req, Resp> BorshCodec<Req, Resp> {
    /// A codec whose inbound requests share `budget` bytes, with these
    /// frame limits.
    pub fn new(budget: usize, max_request: usize, max_response: usize) -> Self {
        BorshCodec {
            inbound: Arc::new(Budget {
                used: AtomicUsize::new(0),
                limit: budget,
            }),
            max_request,
            max_response,
            _messages: PhantomData,
        }
    }

    /// Bytes of inbound requests held now.
    pub fn inbound_held(&self) -> usize {
        self.inbound.used.load(Ordering::Acquire)
    }
}

/// What a frame is read in: memory grows only as the peer really sends.
const READ_CHUNK: usize = 64 << 10;

/// Reads one frame of at most `max` bytes, holding `held` for what it read
/// (when given): an error of kind `OutOfMemory` when the budget runs out.
/// Bytes are read straight into the frame's buffer. A response (no budget:
/// this node asked for it) gets room for the largest frame at once, whose
/// pages the allocator only commits as they fill; a request grows in
/// [`READ_CHUNK`] steps, as the peer really sends.
async fn read_frame<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    max: usize,
    mut held: Option<&mut Reservation>,
) -> io::Result<Vec<u8>> {
    let mut buf = if held.is_none() {
        vec![0u8; max.saturating_add(1)]
    } else {
        Vec::new()
    };
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len + READ_CHUNK.min(max + 1 - len), 0);
        }
        let n = io.read(&mut buf[len..]).await?;
        if n == 0 {
            buf.truncate(len);
            return Ok(buf);
        }
        if len + n > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("frame over {max} bytes"),
            ));
        }
        if let Some(h) = held.as_deref_mut() {
            if !h.grow(n) {
                return Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    "the node's inbound request budget is spent; dropped unread",
                ));
            }
        }
        len += n;
    }
}

pub(crate) fn decode<M: BorshDeserialize>(bytes: &[u8]) -> io::Result<M> {
    borsh::from_slice(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// A response on the wire: its borsh encoding. One that carries a large
/// byte payload may write a head and then the payload where it lies, and
/// take the payload out of the frame it was read into, instead of passing
/// it through borsh's buffers (a copy each way, plus borsh growing and
/// zeroing a second buffer as it reads).
pub trait Wire: BorshSerialize + BorshDeserialize + Sized {
    /// The encoding as a head and the bytes that follow it.
    fn parts(&self) -> io::Result<(Vec<u8>, &[u8])> {
        Ok((borsh::to_vec(self)?, &[]))
    }

    /// Decodes a whole frame (the same value, or error, as borsh).
    fn from_frame(frame: Vec<u8>) -> io::Result<Self> {
        decode(&frame)
    }
}

impl Wire for Response {}

impl<Req, Resp> request_response::Codec for BorshCodec<Req, Resp>
where
    Req: BorshSerialize + BorshDeserialize + Send + 'static,
    Resp: Wire + Send + 'static,
{
    type Protocol = StreamProtocol;
    type Request = Frame<Req>;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Frame<Req>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bad = |e: io::Error| Ok(Frame::Bad(e.to_string()));
        let mut held = Reservation::new(&self.inbound);
        match read_frame(io, self.max_request, Some(&mut held)).await {
            Ok(bytes) => match decode(&bytes) {
                Ok(r) => Ok(Frame::Read(r, Held(Arc::new(held)))),
                Err(e) if cut_short(&e) => Ok(Frame::Cut(format!(
                    "a frame cut short after {} bytes",
                    bytes.len()
                ))),
                Err(e) => bad(e),
            },
            Err(e) if e.kind() == io::ErrorKind::InvalidData => bad(e),
            Err(e) => Err(e),
        }
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_frame(io, self.max_response, None).await?;
        let len = bytes.len();
        Resp::from_frame(bytes).map_err(|e| {
            if cut_short(&e) {
                // Not the peer's fault (see `Frame::Cut`): not InvalidData.
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("a response cut short after {len} bytes"),
                )
            } else {
                e
            }
        })
    }

    fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Frame<Req>,
    ) -> impl Future<Output = io::Result<()>> + Send
    where
        T: AsyncWrite + Unpin + Send,
    {
        let bytes = match req {
            Frame::Good(r) | Frame::Read(r, _) => borsh::to_vec(&r),
            Frame::Bad(_) | Frame::Cut(_) => Err(io::Error::other("a refused frame is never sent")),
        };
        async move { io.write_all(&bytes?).await }
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Resp,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let (head, body) = res.parts()?;
        io.write_all(&head).await?;
        io.write_all(body).await
    }
}

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub limits: connection_limits::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub gossipsub: gossipsub::Behaviour,
    pub rpc: request_response::Behaviour<RpcCodec>,
    /// HUDS fragments: put, get, chunk proofs ([`crate::huds`]).
    pub huds: request_response::Behaviour<crate::huds::HudsCodec>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A gossip message's id: a hash of its sequence number, claimed source and
/// content. Only the same bytes from the same publish share an id.
pub fn gossip_message_id(m: &gossipsub::Message) -> gossipsub::MessageId {
    let mut h = blake3::Hasher::new_derive_key("ios/gossip-message-id");
    h.update(&m.sequence_number.unwrap_or(0).to_be_bytes());
    h.update(&m.source.map(|p| p.to_bytes()).unwrap_or_default());
    h.update(&m.data);
    gossipsub::MessageId::new(&h.finalize().as_bytes()[..20])
}

impl Behaviour {
    fn new(key: &identity::Keypair) -> Result<Behaviour, BoxError> {
        let me = key.public().to_peer_id();
        // Gossip is not signed by libp2p: every message we carry signs itself
        // (transactions by their senders, votes and proposals by validators),
        // so a transport signature per message and its check on every copy
        // received (9% of a loaded devnet's CPU) bought nothing. As on
        // Ethereum's consensus layer, a message's id is a hash of its content
        // (with the publisher's random sequence number, so a replica may
        // re-gossip the same bytes), and a bad message costs the peer that
        // sent it to us: an honest node forwards only what its replica accepted.
        let gossip_config = gossipsub::ConfigBuilder::default()
            .max_transmit_size(MAX_GOSSIP_BYTES)
            .validation_mode(gossipsub::ValidationMode::Permissive)
            .message_id_fn(gossip_message_id)
            .validate_messages()
            .heartbeat_interval(Duration::from_millis(500))
            // Small committees: keep every member in the mesh.
            .mesh_n_low(2)
            .mesh_outbound_min(1)
            .connection_handler_queue_len(1_000)
            .build()?;
        let gossipsub =
            gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Author(me), gossip_config)?;
        let mut kad_config = kad::Config::new(KAD_PROTOCOL);
        kad_config.set_query_timeout(Duration::from_secs(30));
        let mut kad = kad::Behaviour::with_config(me, kad::store::MemoryStore::new(me), kad_config);
        // Loopback and private networks never confirm an external address,
        // so automatic mode would leave every node a client nobody routes to.
        kad.set_mode(Some(kad::Mode::Server));
        Ok(Behaviour {
            blocked: Default::default(),
            limits: connection_limits::Behaviour::new(
                connection_limits::ConnectionLimits::default()
                    .with_max_established_per_peer(Some(2))
                    .with_max_established(Some(256))
                    .with_max_pending_incoming(Some(64)),
            ),
            identify: identify::Behaviour::new(identify::Config::new(
                "/ios/1.0.0".to_string(),
                key.public(),
            )),
            ping: ping::Behaviour::new(ping::Config::new()),
            kad,
            gossipsub,
            rpc: request_response::Behaviour::with_codec(
                RpcCodec::default(),
                [(RPC_PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(15))
                    .with_max_concurrent_streams(32),
            ),
            huds: request_response::Behaviour::with_codec(
                crate::huds::HudsCodec::new(
                    crate::huds::INBOUND_BUDGET_BYTES,
                    crate::huds::MAX_FRAME_BYTES,
                    crate::huds::MAX_FRAME_BYTES,
                ),
                [(
                    crate::huds::HUDS_PROTOCOL,
                    request_response::ProtocolSupport::Full,
                )],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(60))
                    .with_max_concurrent_streams(16),
            ),
        })
    }
}

/// A swarm on TCP + noise + yamux (frames sized for noise, see [`crate::mux`])
/// with the IOS behaviour.
pub fn build_swarm(key: identity::Keypair) -> anyhow::Result<Swarm<Behaviour>> {
    let swarm = SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            crate::mux::Config::default,
        )?
        .with_behaviour(Behaviour::new)
        .map_err(|e| anyhow::anyhow!("building the network behaviour: {e}"))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    Ok(swarm)
}

/// The network identity of a validator: derived from its signing key in a
/// separate domain, so the transport key and the consensus key differ but
/// one secret backs both.
pub fn network_key(validator: &ios_chain::crypto::Keypair) -> anyhow::Result<identity::Keypair> {
    let seed = ios_chain::hash::hash_tagged("ios/p2p-key", &validator.secret_bytes());
    identity::Keypair::ed25519_from_bytes(seed.0)
        .map_err(|e| anyhow::anyhow!("deriving the network key: {e}"))
}

/// Per-peer standing: the short handles replicas see, and a score that
/// proven faults lower until the peer is banned. Bounded: handles of peers
/// long unseen and not connected are forgotten (a forgotten handle never
/// comes back: a returning peer gets a new one), scores recover with time,
/// and past [`MAX_KNOWN_PEERS`] scores the mildest are dropped.
#[derive(Default)]
pub struct PeerBook {
    /// Each known peer's handle and when it was last used (a use counter).
    handles: HashMap<PeerId, (u64, u64)>,
    peers: HashMap<u64, PeerId>,
    next_handle: u64,
    uses: u64,
    scores: HashMap<PeerId, i32>,
    /// Banned peers and when their ban ends.
    banned: HashMap<PeerId, u64>,
    /// When scores last recovered.
    recovered_at: Option<u64>,
}

impl PeerBook {
    /// The replica-facing handle of `peer` (stable while the book keeps it).
    pub fn handle(&mut self, peer: PeerId) -> ios_chain::message::PeerId {
        self.uses += 1;
        let (next, uses) = (self.next_handle, self.uses);
        let entry = self.handles.entry(peer).or_insert((next, uses));
        entry.1 = uses;
        let h = entry.0;
        if h == next {
            self.next_handle += 1;
            self.peers.insert(h, peer);
        }
        ios_chain::message::PeerId(h)
    }

    pub fn peer(&self, handle: ios_chain::message::PeerId) -> Option<PeerId> {
        self.peers.get(&handle.0).copied()
    }

    /// Peers the book holds a handle for.
    pub fn known(&self) -> usize {
        self.handles.len()
    }

    /// Lowers `peer`'s score; true when it just fell to the ban line.
    pub fn fault(&mut self, peer: PeerId, now: u64) -> bool {
        let s = self.scores.entry(peer).or_insert(0);
        *s -= FAULT_PENALTY;
        if *s <= BAN_SCORE && !self.banned.contains_key(&peer) {
            self.banned.insert(peer, now + BAN_MS);
            return true;
        }
        false
    }

    pub fn score(&self, peer: &PeerId) -> i32 {
        self.scores.get(peer).copied().unwrap_or(0)
    }

    pub fn is_banned(&self, peer: &PeerId) -> bool {
        self.banned.contains_key(peer)
    }

    /// Periodic upkeep: ends bans that ran out (their scores start again
    /// from zero) and returns those peers; lets scores recover; forgets
    /// what is over the bounds, never a `connected` or banned peer.
    pub fn housekeeping(&mut self, now: u64, connected: &BTreeSet<PeerId>) -> Vec<PeerId> {
        let done: Vec<PeerId> = self
            .banned
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(p, _)| *p)
            .collect();
        for p in &done {
            self.banned.remove(p);
            self.scores.remove(p);
        }
        let since = *self.recovered_at.get_or_insert(now);
        let steps = now.saturating_sub(since) / SCORE_RECOVERY_MS;
        if steps > 0 {
            self.recovered_at = Some(since + steps * SCORE_RECOVERY_MS);
            let up = i32::try_from(steps).unwrap_or(i32::MAX);
            let banned = &self.banned;
            self.scores.retain(|p, s| {
                if !banned.contains_key(p) {
                    *s = s.saturating_add(up).min(0);
                }
                *s < 0
            });
        }
        if self.scores.len() > MAX_KNOWN_PEERS {
            let mut mild: Vec<(i32, PeerId)> = self
                .scores
                .iter()
                .filter(|(p, _)| !self.banned.contains_key(p))
                .map(|(p, s)| (-*s, *p))
                .collect();
            mild.sort_unstable();
            let excess = self.scores.len() - MAX_KNOWN_PEERS * 3 / 4;
            for (_, p) in mild.into_iter().take(excess) {
                self.scores.remove(&p);
            }
        }
        if self.handles.len() > MAX_KNOWN_PEERS {
            let mut idle: Vec<(u64, PeerId)> = self
                .handles
                .iter()
                .filter(|(p, _)| !connected.contains(p) && !self.banned.contains_key(p))
                .map(|(p, (_, used))| (*used, *p))
                .collect();
            idle.sort_unstable();
            let excess = self.handles.len() - MAX_KNOWN_PEERS * 3 / 4;
            for (_, p) in idle.into_iter().take(excess) {
                if let Some((h, _)) = self.handles.remove(&p) {
                    self.peers.remove(&h);
                }
            }
        }
        done
    }
}

/// A token bucket of one peer's inbound requests.
#[derive(Clone, Debug)]
pub struct RateLimit {
    /// Thousandths of a request.
    tokens_milli: u64,
    at: u64,
    last_fault: Option<u64>,
}

/// What to do with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// Over the rate: refuse it.
    Refuse,
    /// Over the rate, and a fault is due (at most one per [`FLOOD_FAULT_MS`]).
    RefuseAndFault,
}

impl RateLimit {
    pub fn new(now: u64) -> RateLimit {
        RateLimit {
            tokens_milli: RPC_BURST * 1000,
            at: now,
            last_fault: None,
        }
    }

    pub fn admit(&mut self, now: u64) -> Admit {
        let elapsed = now.saturating_sub(self.at);
        self.at = self.at.max(now);
        // RPC_RATE_PER_S requests per second are as many thousandths per ms.
        self.tokens_milli = self
            .tokens_milli
            .saturating_add(elapsed.saturating_mul(RPC_RATE_PER_S))
            .min(RPC_BURST * 1000);
        if self.tokens_milli >= 1000 {
            self.tokens_milli -= 1000;
            return Admit::Yes;
        }
        if self.last_fault.is_none_or(|t| now >= t + FLOOD_FAULT_MS) {
            self.last_fault = Some(now);
            return Admit::RefuseAndFault;
        }
        Admit::Refuse
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;
    use request_response::Codec;

    #[test]
    fn the_network_key_is_derived_from_the_validator_key() {
        let k = ios_chain::crypto::Keypair::from_seed("t", 1);
        let a = network_key(&k).unwrap().public().to_peer_id();
        assert_eq!(a, network_key(&k).unwrap().public().to_peer_id());
        let other = ios_chain::crypto::Keypair::from_seed("t", 2);
        assert_ne!(a, network_key(&other).unwrap().public().to_peer_id());
    }

    #[tokio::test]
    async fn frames_round_trip_and_bad_frames_are_refused() {
        let mut codec = RpcCodec::default();
        let req = Frame::Good(Request::EpochChanges { from: 7 });
        let mut out = Cursor::new(Vec::new());
        codec
            .write_request(&RPC_PROTOCOL, &mut out, req)
            .await
            .unwrap();
        let mut input = Cursor::new(out.into_inner());
        let back = codec.read_request(&RPC_PROTOCOL, &mut input).await.unwrap();
        assert!(matches!(
            back,
            Frame::Read(Request::EpochChanges { from: 7 }, _)
        ));

        // A frame cut short (the sender gave up mid-write) is refused
        // without counting as the peer's fault.
        let mut whole = Cursor::new(Vec::new());
        codec
            .write_request(
                &RPC_PROTOCOL,
                &mut whole,
                Frame::Good(Request::EpochChanges { from: 7 }),
            )
            .await
            .unwrap();
        let bytes = whole.into_inner();
        let mut cut = Cursor::new(bytes[..bytes.len() - 3].to_vec());
        let back = codec.read_request(&RPC_PROTOCOL, &mut cut).await.unwrap();
        assert!(matches!(back, Frame::Cut(_)), "{back:?}");
        assert!(!back.into_request().unwrap_err().fault);

        let mut garbage = Cursor::new(vec![0xff; 40]);
        let back = codec
            .read_request(&RPC_PROTOCOL, &mut garbage)
            .await
            .unwrap();
        assert!(matches!(back, Frame::Bad(_)), "{back:?}");
        assert!(back.into_request().unwrap_err().fault);
        let mut huge = Cursor::new(vec![0u8; MAX_REQUEST_BYTES + 10]);
        let back = codec.read_request(&RPC_PROTOCOL, &mut huge).await.unwrap();
        assert!(
            matches!(&back, Frame::Bad(r) if r.contains("frame over")),
            "{back:?}"
        );

        let mut huge = Cursor::new(vec![0u8; MAX_FRAME_BYTES + 10]);
        let err = codec
            .read_response(&RPC_PROTOCOL, &mut huge)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("frame over"), "{err}");
    }

    #[test]
    fn ten_faults_ban_a_peer_until_the_ban_runs_out() {
        let mut book = PeerBook::default();
        let p = PeerId::random();
        for i in 0..9 {
            assert!(!book.fault(p, i), "fault {i}");
        }
        assert!(book.fault(p, 9));
        assert!(book.is_banned(&p));
        let none = BTreeSet::new();
        assert!(book.housekeeping(10, &none).is_empty());
        assert_eq!(book.housekeeping(9 + BAN_MS, &none), vec![p]);
        assert!(!book.is_banned(&p));
        assert_eq!(book.score(&p), 0);
    }

    #[test]
    fn handles_are_stable_and_map_back() {
        let mut book = PeerBook::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        let ha = book.handle(a);
        let hb = book.handle(b);
        assert_ne!(ha, hb);
        assert_eq!(book.handle(a), ha);
        assert_eq!(book.peer(hb), Some(b));
    }

    #[test]
    fn scores_recover_with_time_but_bans_run_their_course() {
        let mut book = PeerBook::default();
        let none = BTreeSet::new();
        let (p, q) = (PeerId::random(), PeerId::random());
        book.housekeeping(0, &none);
        book.fault(p, 0);
        for _ in 0..10 {
            book.fault(q, 0);
        }
        book.housekeeping(SCORE_RECOVERY_MS, &none);
        assert_eq!(book.score(&p), -FAULT_PENALTY + 1);
        assert_eq!(book.score(&q), -10 * FAULT_PENALTY, "a ban does not shrink");
        book.housekeeping(SCORE_RECOVERY_MS * FAULT_PENALTY as u64, &none);
        assert!(BAN_MS > SCORE_RECOVERY_MS * FAULT_PENALTY as u64);
        assert_eq!(book.score(&p), 0);
        assert!(book.is_banned(&q));
    }

    #[test]
    fn the_book_forgets_idle_peers_past_its_bound_but_never_connected_ones() {
        let mut book = PeerBook::default();
        let first = PeerId::random();
        let h_first = book.handle(first);
        let idle = PeerId::random();
        let h_idle = book.handle(idle);
        for _ in 0..MAX_KNOWN_PEERS {
            book.handle(PeerId::random());
        }
        let connected = BTreeSet::from([first]);
        book.housekeeping(1, &connected);
        assert!(
            book.known() <= MAX_KNOWN_PEERS * 3 / 4 + 1,
            "{}",
            book.known()
        );
        assert_eq!(book.peer(h_first), Some(first), "connected: kept");
        assert_eq!(book.peer(h_idle), None, "the least recently seen go first");
        let again = book.handle(idle);
        assert_ne!(again, h_idle, "a forgotten handle is never reused");
        assert_eq!(book.peer(again), Some(idle));
    }

    #[test]
    fn scores_past_the_bound_drop_the_mildest_first() {
        let mut book = PeerBook::default();
        let worst = PeerId::random();
        for _ in 0..5 {
            book.fault(worst, 0);
        }
        for _ in 0..MAX_KNOWN_PEERS {
            book.fault(PeerId::random(), 0);
        }
        book.housekeeping(1, &BTreeSet::new());
        assert_eq!(book.score(&worst), -5 * FAULT_PENALTY);
    }

    #[tokio::test]
    async fn inbound_requests_share_one_byte_budget() {
        let mut codec = RpcCodec::with_budget(256 << 10);
        let mut peer = codec.clone();
        let key = ios_chain::crypto::Keypair::from_seed("t", 1);
        let big = Request::Submit {
            shard: 1,
            txs: vec![ios_chain::tx::Transaction {
                chain_id: ios_chain::types::ChainId("t".into()),
                shard: 1,
                sender: key.address(),
                nonce: 0,
                fee: 0,
                expires_at: 1,
                call: ios_chain::tx::Call {
                    module: ios_chain::tx::ModuleId(0),
                    payload: vec![7; 200 << 10],
                },
            }
            .sign(&key)],
        };
        let mut out = Cursor::new(Vec::new());
        peer.write_request(&RPC_PROTOCOL, &mut out, Frame::Good(big))
            .await
            .unwrap();
        let bytes = out.into_inner();
        let first = codec
            .read_request(&RPC_PROTOCOL, &mut Cursor::new(bytes.clone()))
            .await
            .unwrap();
        assert!(matches!(first, Frame::Read(..)));
        assert_eq!(codec.inbound_held(), bytes.len());
        // A second one while the first is held: over the budget, dropped
        // unread, and not called a fault.
        let err = peer
            .read_request(&RPC_PROTOCOL, &mut Cursor::new(bytes.clone()))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::OutOfMemory, "{err}");
        assert_eq!(
            codec.inbound_held(),
            bytes.len(),
            "the failed read gave back its bytes"
        );
        // Taking the first releases its bytes; the next one fits.
        first.into_request().unwrap();
        assert_eq!(codec.inbound_held(), 0);
        let again = peer
            .read_request(&RPC_PROTOCOL, &mut Cursor::new(bytes))
            .await
            .unwrap();
        assert!(matches!(again, Frame::Read(..)));
    }

    #[test]
    fn a_flooding_peer_is_refused_and_faulted_once_a_second() {
        let mut r = RateLimit::new(0);
        // The burst passes at once.
        for i in 0..RPC_BURST {
            assert_eq!(r.admit(0), Admit::Yes, "request {i}");
        }
        assert_eq!(r.admit(0), Admit::RefuseAndFault);
        assert_eq!(r.admit(1), Admit::Refuse);
        // Refilled at the sustained rate: 200 per second, one per 5 ms.
        assert_eq!(r.admit(5), Admit::Yes);
        assert_eq!(r.admit(5), Admit::Refuse);
        // Still flooding a second later: the next fault.
        let mut faults = 1;
        for now in 6..10_000 {
            for _ in 0..2 {
                if r.admit(now) == Admit::RefuseAndFault {
                    faults += 1;
                }
            }
        }
        assert_eq!(faults, 10, "one fault per second of flooding");
        // A peer that keeps to the rate is never refused.
        let mut calm = RateLimit::new(0);
        for k in 0..100_000u64 {
            assert_eq!(calm.admit(k * 1000 / RPC_RATE_PER_S), Admit::Yes);
        }
    }
}
