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
    request_response, tcp, yamux, PeerId, StreamProtocol, Swarm, SwarmBuilder,
};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::time::Duration;

/// The request-response protocol: shard messages, epoch changes, transactions.
pub const RPC_PROTOCOL: StreamProtocol = StreamProtocol::new("/ios/rpc/1");
/// Our kademlia DHT (the protocol is libp2p's; the name keeps IOS peers apart
/// from the public IPFS DHT).
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/ios/kad/1.0.0");
/// Largest request or response frame. A sync response of many blocks is the
/// biggest thing we send; anything larger is refused before it is decoded.
pub const MAX_FRAME_BYTES: usize = 16 << 20;
/// Largest gossip message (a proposal carries its block).
pub const MAX_GOSSIP_BYTES: usize = 4 << 20;
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
pub enum Frame {
    Good(Request),
    Bad(String),
}

/// Borsh frames bounded by [`MAX_FRAME_BYTES`]: a longer stream is refused
/// unread past the limit, a frame that does not decode is refused (a
/// request as [`Frame::Bad`], a response as an `InvalidData` error).
#[derive(Clone, Default)]
pub struct RpcCodec;

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io.take(MAX_FRAME_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .await?;
    if buf.len() > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame over {MAX_FRAME_BYTES} bytes"),
        ));
    }
    Ok(buf)
}

fn decode<M: BorshDeserialize>(bytes: &[u8]) -> io::Result<M> {
    borsh::from_slice(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

impl request_response::Codec for RpcCodec {
    type Protocol = StreamProtocol;
    type Request = Frame;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Frame>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bad = |e: io::Error| Ok(Frame::Bad(e.to_string()));
        match read_frame(io).await {
            Ok(bytes) => decode(&bytes).map(Frame::Good).or_else(bad),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => bad(e),
            Err(e) => Err(e),
        }
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        decode(&read_frame(io).await?)
    }

    fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Frame,
    ) -> impl Future<Output = io::Result<()>> + Send
    where
        T: AsyncWrite + Unpin + Send,
    {
        let bytes = match req {
            Frame::Good(r) => borsh::to_vec(&r),
            Frame::Bad(_) => Err(io::Error::other("a refused frame is never sent")),
        };
        async move { io.write_all(&bytes?).await }
    }

    fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Response,
    ) -> impl Future<Output = io::Result<()>> + Send
    where
        T: AsyncWrite + Unpin + Send,
    {
        let bytes = borsh::to_vec(&res);
        async move { io.write_all(&bytes?).await }
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
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Behaviour {
    fn new(key: &identity::Keypair) -> Result<Behaviour, BoxError> {
        let me = key.public().to_peer_id();
        let gossip_config = gossipsub::ConfigBuilder::default()
            .max_transmit_size(MAX_GOSSIP_BYTES)
            .validation_mode(gossipsub::ValidationMode::Strict)
            .validate_messages()
            .heartbeat_interval(Duration::from_millis(500))
            // Small committees: keep every member in the mesh.
            .mesh_n_low(2)
            .mesh_outbound_min(1)
            .connection_handler_queue_len(1_000)
            .build()?;
        let gossipsub = gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Signed(key.clone()),
            gossip_config,
        )?;
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
            rpc: request_response::Behaviour::new(
                [(RPC_PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(15))
                    .with_max_concurrent_streams(32),
            ),
        })
    }
}

/// A swarm on TCP + noise + yamux with the IOS behaviour.
pub fn build_swarm(key: identity::Keypair) -> anyhow::Result<Swarm<Behaviour>> {
    let swarm = SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
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
/// proven faults lower until the peer is banned.
#[derive(Default)]
pub struct PeerBook {
    handles: HashMap<PeerId, u64>,
    peers: Vec<PeerId>,
    scores: HashMap<PeerId, i32>,
    /// Banned peers and when their ban ends.
    banned: HashMap<PeerId, u64>,
}

impl PeerBook {
    /// The replica-facing handle of `peer` (stable for the node's lifetime).
    pub fn handle(&mut self, peer: PeerId) -> ios_chain::message::PeerId {
        let next = self.peers.len() as u64;
        let h = *self.handles.entry(peer).or_insert(next);
        if h == next {
            self.peers.push(peer);
        }
        ios_chain::message::PeerId(h)
    }

    pub fn peer(&self, handle: ios_chain::message::PeerId) -> Option<PeerId> {
        self.peers.get(handle.0 as usize).copied()
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

    /// Bans that have run out (their scores start again from zero).
    pub fn expired_bans(&mut self, now: u64) -> Vec<PeerId> {
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
        done
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
        let mut codec = RpcCodec;
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
            Frame::Good(Request::EpochChanges { from: 7 })
        ));

        let mut garbage = Cursor::new(vec![0xff; 40]);
        let back = codec
            .read_request(&RPC_PROTOCOL, &mut garbage)
            .await
            .unwrap();
        assert!(matches!(back, Frame::Bad(_)), "{back:?}");
        let mut huge = Cursor::new(vec![0u8; MAX_FRAME_BYTES + 10]);
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
        assert!(book.expired_bans(10).is_empty());
        assert_eq!(book.expired_bans(9 + BAN_MS), vec![p]);
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
}
