//! HUDS on the network: the fragment protocol between clients and storage
//! providers, a provider's duties, and the client side a gateway runs
//! (staging an upload, pushing its fragments to the providers the chain
//! placed them on, reading objects back).
//!
//! - The protocol (`/ios/huds/1`, request-response, borsh frames of at most
//!   [`MAX_FRAME_BYTES`]): `Put` a fragment of a deal, `Get` a fragment,
//!   `Chunk` one 1 KiB chunk with its proof. A provider takes a `Put` only
//!   for a fragment the chain placed on it, whose bytes hash to the root in
//!   the deal's layout; it serves only what its store still verifies.
//! - A provider keeps one account per account shard ([`provider_key`]):
//!   deals live on their owner's home shard and are placed among the
//!   providers registered there, so a provider that serves every shard
//!   registers on each. The node registers it, signs receipts for what it
//!   stored and answers each epoch's audit challenge (see `node.rs`).
//! - Reading asks the k providers of a segment's data fragments (so a
//!   healthy read needs no decoding work and moves no extra bytes), one
//!   more whenever one fails and once the segment is slow ([`HEDGE_AFTER`]:
//!   the slowest is then dropped), checks each fragment against its root,
//!   decodes, and checks the ContentId over the whole object.

use crate::node::NodeHandle;
use crate::p2p::{BorshCodec, Refusal};
use anyhow::{anyhow, bail, Context, Result};
use borsh::{BorshDeserialize, BorshSerialize};
use futures::stream::{FuturesUnordered, StreamExt};
use ios_chain::crypto::{Address, Keypair};
use ios_chain::hash::Hash;
use ios_chain::shard::home_shard;
use ios_chain::types::{Amount, ShardId, UNITS_PER_IOST};
use ios_storage::codec::{Codec, Coding, Layout, ObjectEncoder};
use ios_storage::module::{keys, Deal, Provider};
use ios_storage::store::{FragmentId, FragmentStore};
use ios_storage::tree::ChunkProof;
use ios_storage::ContentId;
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const HUDS_PROTOCOL: StreamProtocol = StreamProtocol::new("/ios/huds/1");
/// Largest fragment one message carries: segments are at most k times this.
pub const MAX_WIRE_FRAGMENT: usize = 4 << 20;
/// Largest HUDS frame: a fragment with its envelope.
pub const MAX_FRAME_BYTES: usize = MAX_WIRE_FRAGMENT + 4096;
/// Bytes of inbound HUDS requests held at once from all peers.
pub const INBOUND_BUDGET_BYTES: usize = 64 << 20;
/// Fragment transfers a client runs at once.
pub const PARALLEL_TRANSFERS: usize = 8;
/// Segments a read fetches at once.
pub const READ_AHEAD: usize = 3;
/// A segment whose k fragments have not all come after this long asks one
/// more provider (a hedged request: the slowest answer is dropped).
pub const HEDGE_AFTER: Duration = Duration::from_millis(750);
/// Tries per fragment push (1, 2, 3, 4 then 5 s apart: about 30 s).
pub const PUT_ATTEMPTS: u64 = 9;

pub type HudsCodec = BorshCodec<HudsRequest, HudsResponse>;

#[derive(Clone, Debug, BorshSerialize, BorshDeserialize)]
pub enum HudsRequest {
    /// Store fragment `id` of the deal that lives on `shard`.
    Put {
        shard: ShardId,
        id: FragmentId,
        bytes: Vec<u8>,
    },
    /// The whole fragment.
    Get { id: FragmentId },
    /// One 1 KiB chunk of a fragment with its proof.
    Chunk { id: FragmentId, chunk: u64 },
}

#[derive(Clone, Debug, BorshSerialize, BorshDeserialize)]
pub enum HudsResponse {
    Stored,
    Fragment(Vec<u8>),
    Chunk(ChunkProof),
    Refused(Refusal),
}

/// Borsh's tag of [`HudsResponse::Fragment`] (its variant index).
const FRAGMENT_TAG: u8 = 1;

/// A fragment goes out as its 5-byte borsh head (tag, length) and then its
/// own buffer, and comes in as the frame's buffer with the head cut off:
/// the same bytes as borsh, with two fewer copies of every fragment.
impl crate::p2p::Wire for HudsResponse {
    fn parts(&self) -> std::io::Result<(Vec<u8>, &[u8])> {
        match self {
            HudsResponse::Fragment(bytes) => {
                let len = u32::try_from(bytes.len()).map_err(std::io::Error::other)?;
                let mut head = vec![FRAGMENT_TAG];
                head.extend_from_slice(&len.to_le_bytes());
                Ok((head, bytes))
            }
            other => Ok((borsh::to_vec(other)?, &[])),
        }
    }

    fn from_frame(mut frame: Vec<u8>) -> std::io::Result<Self> {
        if let [FRAGMENT_TAG, a, b, c, d, ..] = frame[..] {
            if u32::from_le_bytes([a, b, c, d]) as usize == frame.len() - 5 {
                frame.drain(..5);
                return Ok(HudsResponse::Fragment(frame));
            }
        }
        crate::p2p::decode(&frame)
    }
}

/// What a storage provider offers (node config `[provider]`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderConfig {
    /// Bytes of fragments it keeps at most.
    pub capacity: u64,
    /// Base units per GiB per epoch it asks.
    pub price_per_gib_epoch: Amount,
    /// Base units staked (held by the chain) on each shard it serves.
    pub stake: Amount,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig {
            capacity: 8 << 30,
            price_per_gib_epoch: UNITS_PER_IOST / 100,
            stake: 1_000 * UNITS_PER_IOST,
        }
    }
}

/// The account a provider with master key `master` uses on `shard` (of a
/// network of `shards` account shards): derived from the master secret,
/// the first whose home is that shard.
pub fn provider_key(master: &Keypair, shard: ShardId, shards: u16) -> Keypair {
    let secret = master.secret_bytes();
    for n in 0u64.. {
        let mut h = blake3::Hasher::new_derive_key("ios/provider-shard-key");
        h.update(&secret);
        h.update(&shard.to_be_bytes());
        h.update(&n.to_be_bytes());
        let k = Keypair::from_secret(*h.finalize().as_bytes());
        if shards == 0 || home_shard(&k.address(), shards) == shard {
            return k;
        }
    }
    unreachable!("some key lands on every shard")
}

/// The shards a provider serves: every account shard (the beacon when
/// there are none).
pub fn provider_shards(shards: u16) -> Vec<ShardId> {
    if shards == 0 {
        vec![0]
    } else {
        (1..=shards).collect()
    }
}

/// The refusal a provider answers with.
pub fn refused(code: &str, message: impl Into<String>) -> HudsResponse {
    HudsResponse::Refused(Refusal::new(code, message))
}

/// Checks a `Put` against the deal on chain: the fragment is placed on
/// `me` and its bytes are as long as the layout says. Returns its root.
pub fn check_put(
    deal: Option<&Deal>,
    me: &Address,
    id: &FragmentId,
    len: usize,
) -> Result<Hash, HudsResponse> {
    let Some(d) = deal else {
        return Err(refused(
            "unknown_content",
            format!("no deal for {}", id.content),
        ));
    };
    let placed = d
        .placement
        .get(id.segment as usize)
        .and_then(|s| s.get(usize::from(id.index)));
    if placed != Some(me) {
        return Err(refused(
            "not_placed",
            format!("{id} is not placed on this provider"),
        ));
    }
    if d.lost[id.segment as usize][usize::from(id.index)] {
        return Err(refused("lost", format!("{id} was declared lost")));
    }
    let want = d.layout.fragment_len(id.segment);
    if len as u64 != want {
        return Err(refused(
            "wrong_length",
            format!("{id} is {want} bytes, not {len}"),
        ));
    }
    Ok(d.layout.segments[id.segment as usize].roots[usize::from(id.index)])
}

/// The coding a gateway uses for uploads: the network's k + m, with
/// segments as large as the default allows while each fragment still fits
/// one message.
pub fn upload_coding(data: u8, parity: u8) -> Result<Coding> {
    let segment = (u64::from(data) * MAX_WIRE_FRAGMENT as u64)
        .min(u64::from(Coding::DEVNET.segment_bytes)) as u32;
    Ok(Coding::new(data, parity, segment)?)
}

/// A provider node's own state: its store, its account per shard, what
/// it owes the chain.
pub(crate) struct ProviderState {
    pub config: ProviderConfig,
    pub store: Arc<Mutex<FragmentStore>>,
    pub keys: BTreeMap<ShardId, Keypair>,
    /// Fragments stored and not yet receipted, per shard and object.
    pub receipts: BTreeMap<(ShardId, ContentId), std::collections::BTreeSet<(u32, u16)>>,
    /// Audit rounds (shard, epoch) answered or being answered.
    pub proving: std::collections::BTreeSet<(ShardId, ios_chain::types::Epoch)>,
    /// When each shard's registration was last sent.
    pub registered_at: BTreeMap<ShardId, ios_chain::types::TimeMs>,
    pub next_duty: ios_chain::types::TimeMs,
    /// When the store is next compared with the chain for fragments held
    /// but not signed for (a receipt that never made it into a block).
    pub next_receipt_scan: ios_chain::types::TimeMs,
    /// When its pooled transactions are next gossiped again.
    pub next_regossip: ios_chain::types::TimeMs,
}

impl ProviderState {
    pub fn open(
        dir: &Path,
        config: ProviderConfig,
        master: &Keypair,
        shards: u16,
    ) -> Result<ProviderState> {
        let store = FragmentStore::open(dir, config.capacity)
            .with_context(|| format!("opening the fragment store in {}", dir.display()))?;
        let keys = provider_shards(shards)
            .into_iter()
            .map(|s| (s, provider_key(master, s, shards)))
            .collect();
        Ok(ProviderState {
            config,
            store: Arc::new(Mutex::new(store)),
            keys,
            receipts: BTreeMap::new(),
            proving: Default::default(),
            registered_at: BTreeMap::new(),
            next_duty: 0,
            next_receipt_scan: 0,
            next_regossip: 0,
        })
    }
}

// ---- the client side -------------------------------------------------------

/// A deal as a client finds it: where it lives and how to reach its
/// providers.
#[derive(Clone, Debug)]
pub struct Located {
    pub shard: ShardId,
    pub deal: Deal,
    pub providers: BTreeMap<Address, Provider>,
}

/// Finds the deal for `content` on the account shards the node follows
/// (the first shard that has one).
pub async fn locate(node: &NodeHandle, content: ContentId) -> Result<Option<Located>> {
    locate_on(node, None, content).await
}

/// Finds the deal for `content` on `shard` (None: the first followed
/// shard that has one).
pub async fn locate_on(
    node: &NodeHandle,
    shard: Option<ShardId>,
    content: ContentId,
) -> Result<Option<Located>> {
    node.query(move |v| -> Result<Option<Located>> {
        for (s, r) in v.replicas.iter() {
            if shard.is_some_and(|want| want != *s) {
                continue;
            }
            let store = r.store();
            let Some(deal) = ios_chain::committee::read::<Deal>(store, &keys::deal(&content))?
            else {
                continue;
            };
            let mut providers = BTreeMap::new();
            for a in deal.placement.iter().flatten() {
                if providers.contains_key(a) {
                    continue;
                }
                if let Some(p) = ios_chain::committee::read::<Provider>(store, &keys::provider(a))?
                {
                    providers.insert(*a, p);
                }
            }
            return Ok(Some(Located {
                shard: *s,
                deal,
                providers,
            }));
        }
        Ok(None)
    })
    .await?
}

/// How to reach a provider: its peer id and addresses as registered.
pub fn endpoint(p: &Provider) -> Result<(PeerId, Vec<Multiaddr>)> {
    let peer =
        PeerId::from_bytes(&p.endpoint.peer).map_err(|e| anyhow!("registered peer id: {e}"))?;
    let addrs = p
        .endpoint
        .addrs
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    Ok((peer, addrs))
}

/// An upload encoded and kept by the gateway until its fragments reach the
/// providers the chain placed them on.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    pub total: usize,
    pub pushed: usize,
    /// The deal was not (yet) seen on chain, or pushing stopped.
    pub state: String,
    pub errors: Vec<String>,
}

/// Uploads a gateway holds: fragments in their own store, each upload's
/// layout in `layouts/<cid>` (so a restart takes it up again), progress by
/// content id.
pub struct Staging {
    dir: PathBuf,
    store: Mutex<FragmentStore>,
    uploads: Mutex<BTreeMap<ContentId, (Layout, Progress)>>,
}

impl Staging {
    /// Opens the staging area in `dir`. Uploads staged by an earlier run
    /// (their layout in `layouts/`, every fragment still in the store) are
    /// taken up again: [`Staging::pending`] lists them for [`push`]; half
    /// received uploads and incomplete ones are dropped.
    pub fn open(dir: &Path, capacity: u64) -> Result<Staging> {
        std::fs::create_dir_all(dir.join("layouts"))
            .with_context(|| format!("creating {}", dir.display()))?;
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "part") {
                let _ = std::fs::remove_file(&p);
            }
        }
        let store = FragmentStore::open(&dir.join("fragments"), capacity)?;
        let mut uploads = BTreeMap::new();
        for e in std::fs::read_dir(dir.join("layouts"))? {
            let p = e?.path();
            let layout = std::fs::read(&p).ok().and_then(|b| {
                ios_chain::codec::decode::<Layout>("staged layout", &b, 1 << 20).ok()
            });
            let whole = layout.as_ref().is_some_and(|l| {
                let have = store.of_object(&l.content).map(|f| f.len()).unwrap_or(0);
                p.file_name().and_then(|n| n.to_str()) == Some(l.content.to_hex().as_str())
                    && have == l.segments.len() * l.coding.fragments()
            });
            match layout {
                Some(l) if whole => {
                    let total = l.segments.len() * l.coding.fragments();
                    let progress = Progress {
                        total,
                        state: "taken up again after a restart".into(),
                        ..Progress::default()
                    };
                    uploads.insert(l.content, (l, progress));
                }
                _ => {
                    tracing::warn!(path = %p.display(), "dropping an incomplete staged upload");
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
        let staging = Staging {
            store: Mutex::new(store),
            dir: dir.to_path_buf(),
            uploads: Mutex::new(uploads),
        };
        // Fragments of no staged upload (a crash before the layout was
        // written, or after it was removed) are dropped.
        {
            let mut store = staging.store.lock().expect("staging lock");
            let keep: Vec<ContentId> = staging
                .uploads
                .lock()
                .expect("uploads lock")
                .keys()
                .copied()
                .collect();
            for (id, _) in store.list().unwrap_or_default() {
                if !keep.contains(&id.content) {
                    let _ = store.remove(&id);
                }
            }
        }
        Ok(staging)
    }

    /// Uploads staged but not yet pushed to their providers.
    pub fn pending(&self) -> Vec<ContentId> {
        self.uploads
            .lock()
            .expect("uploads lock")
            .iter()
            .filter(|(_, (_, p))| p.state != "stored" && !p.state.starts_with("no deal"))
            .map(|(c, _)| *c)
            .collect()
    }

    fn layout_path(&self, content: &ContentId) -> PathBuf {
        self.dir.join("layouts").join(content.to_hex())
    }

    /// A fresh path for an upload's bytes.
    pub fn temp_path(&self) -> PathBuf {
        let mut n = [0u8; 8];
        let _ = getrandom::fill(&mut n);
        self.dir
            .join(format!("upload-{}.part", u64::from_le_bytes(n)))
    }

    /// Encodes the file at `path` (removed afterwards) into fragments kept
    /// here; returns its layout. Blocking.
    pub fn stage_file(&self, path: &Path, coding: Coding, max_size: u64) -> Result<Layout> {
        let result = (|| {
            // The content id first (one read at blake3's speed), so that
            // fragments are stored under their real ids as they are made.
            let mut hasher = blake3::Hasher::new();
            hasher.update_reader(std::fs::File::open(path)?)?;
            let content = ContentId(Hash(*hasher.finalize().as_bytes()));
            let file = std::fs::File::open(path)?;
            let mut enc = ObjectEncoder::new(
                Codec::new(coding)?,
                std::io::BufReader::with_capacity(1 << 20, file),
                max_size,
            );
            while let Some(seg) = enc.next_segment()? {
                let mut store = self.store.lock().expect("staging lock");
                for (i, (f, root)) in seg.fragments.iter().zip(&seg.roots).enumerate() {
                    let id = FragmentId {
                        content,
                        segment: seg.index,
                        index: i as u16,
                    };
                    store.put(id, *root, f, crate::unix_ms())?;
                }
                drop(store);
                enc.recycle(seg.fragments);
            }
            let layout = enc.finish()?;
            if layout.content != content {
                bail!("{} changed while it was encoded", path.display());
            }
            anyhow::Ok(layout)
        })();
        let _ = std::fs::remove_file(path);
        let layout = result?;
        // Durable before the client is told: a restart takes it up again.
        crate::node::write_private(
            &self.layout_path(&layout.content),
            &ios_chain::codec::encode(&layout),
        )?;
        let total = layout.segments.len() * layout.coding.fragments();
        self.uploads.lock().expect("uploads lock").insert(
            layout.content,
            (
                layout.clone(),
                Progress {
                    total,
                    state: "waiting for the deal".into(),
                    ..Progress::default()
                },
            ),
        );
        Ok(layout)
    }

    pub fn layout(&self, content: &ContentId) -> Option<Layout> {
        self.uploads
            .lock()
            .expect("uploads lock")
            .get(content)
            .map(|(l, _)| l.clone())
    }

    pub fn progress(&self, content: &ContentId) -> Option<Progress> {
        self.uploads
            .lock()
            .expect("uploads lock")
            .get(content)
            .map(|(_, p)| p.clone())
    }

    fn update(&self, content: &ContentId, f: impl FnOnce(&mut Progress)) {
        if let Some((_, p)) = self.uploads.lock().expect("uploads lock").get_mut(content) {
            f(p);
        }
    }

    fn fragment(&self, id: &FragmentId) -> Result<Vec<u8>> {
        Ok(self.store.lock().expect("staging lock").get(id)?)
    }

    /// Drops what is staged for `content`.
    fn forget(&self, content: &ContentId) {
        let _ = std::fs::remove_file(self.layout_path(content));
        let mut store = self.store.lock().expect("staging lock");
        if let Ok(frags) = store.of_object(content) {
            for (id, _) in frags {
                let _ = store.remove(&id);
            }
        }
    }
}

/// Waits (up to `wait`) for the deal of a staged upload to be final, then
/// sends every fragment to the provider it is placed on. Progress is kept
/// in `staging`; the staged copy is dropped once every fragment is stored.
pub async fn push(
    node: NodeHandle,
    staging: Arc<Staging>,
    content: ContentId,
    wait: Duration,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + wait;
    let located = loop {
        if let Some(l) = locate(&node, content).await? {
            break l;
        }
        if tokio::time::Instant::now() >= deadline {
            staging.update(&content, |p| {
                p.state = "no deal on chain: upload dropped".into()
            });
            staging.forget(&content);
            bail!("no deal for {content} within {wait:?}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    staging.update(&content, |p| p.state = "pushing".into());
    let mut jobs = Vec::new();
    for (s, seg) in located.deal.placement.iter().enumerate() {
        for (i, a) in seg.iter().enumerate() {
            // Signed for already (a push taken up again after a restart).
            if located.deal.receipted[s][i] {
                staging.update(&content, |p| p.pushed += 1);
                continue;
            }
            jobs.push((
                FragmentId {
                    content,
                    segment: s as u32,
                    index: i as u16,
                },
                *a,
            ));
        }
    }
    let mut running = FuturesUnordered::new();
    let mut jobs = jobs.into_iter();
    let mut failed = 0usize;
    loop {
        while running.len() < PARALLEL_TRANSFERS {
            let Some((id, a)) = jobs.next() else { break };
            let node = node.clone();
            let staging = staging.clone();
            let provider = located.providers.get(&a).cloned();
            let shard = located.shard;
            running.push(async move {
                let put = || async {
                    let p = provider
                        .clone()
                        .ok_or_else(|| anyhow!("provider {a} is not registered"))?;
                    let (peer, addrs) = endpoint(&p)?;
                    let st = staging.clone();
                    let bytes = tokio::task::spawn_blocking(move || st.fragment(&id)).await??;
                    match node
                        .huds(peer, addrs, HudsRequest::Put { shard, id, bytes })
                        .await?
                    {
                        HudsResponse::Stored => Ok(()),
                        HudsResponse::Refused(r) => Err(anyhow!("{a} refused {id}: {r}")),
                        _ => Err(anyhow!("{a} answered a put with something else")),
                    }
                };
                // A provider a block behind the gateway does not know the
                // deal yet; one restarting is briefly away: try again.
                let mut r = put().await;
                for attempt in 1..PUT_ATTEMPTS {
                    if r.is_ok() {
                        break;
                    }
                    if let Err(e) = &r {
                        tracing::debug!(%id, attempt, error = %format!("{e:#}"), "push failed; trying again");
                    }
                    tokio::time::sleep(Duration::from_secs(attempt.min(5))).await;
                    r = put().await;
                }
                (id, r)
            });
        }
        let Some((id, r)) = running.next().await else {
            break;
        };
        match r {
            Ok(()) => staging.update(&content, |p| p.pushed += 1),
            Err(e) => {
                failed += 1;
                tracing::warn!(%id, error = %e, "pushing a fragment failed");
                staging.update(&content, |p| p.errors.push(e.to_string()));
            }
        }
    }
    if failed == 0 {
        staging.update(&content, |p| p.state = "stored".into());
        staging.forget(&content);
        Ok(())
    } else {
        staging.update(&content, |p| {
            p.state = format!("{failed} fragments not stored")
        });
        bail!("{failed} fragments of {content} were not stored")
    }
}

/// One segment's fragments, gathered from providers: k that match their
/// roots, asking k at first, one more for each that fails and one more
/// every [`HEDGE_AFTER`] while some are still missing. `bad` collects what
/// each failing provider did.
pub async fn fetch_segment(
    node: &NodeHandle,
    located: &Located,
    segment: u32,
    bad: &mut Vec<String>,
) -> Result<Vec<Option<Vec<u8>>>> {
    let layout = &located.deal.layout;
    let n = layout.coding.fragments();
    let k = usize::from(layout.coding.data);
    let placement = &located.deal.placement[segment as usize];
    // Fragments providers signed for before those still due, data
    // fragments first within each (no decoding work when all come back).
    let receipted = &located.deal.receipted[segment as usize];
    let mut slots_in_order: Vec<usize> = (0..n)
        .filter(|i| !located.deal.lost[segment as usize][*i])
        .collect();
    slots_in_order.sort_by_key(|i| !receipted[*i]);
    let mut order = slots_in_order.into_iter();
    let mut slots: Vec<Option<Vec<u8>>> = vec![None; n];
    let mut have = 0;
    let mut running = FuturesUnordered::new();
    let ask = |i: usize| {
        let id = FragmentId {
            content: layout.content,
            segment,
            index: i as u16,
        };
        let provider = located.providers.get(&placement[i]).cloned();
        let node = node.clone();
        async move {
            let r = async {
                let p = provider.ok_or_else(|| anyhow!("not registered"))?;
                let (peer, addrs) = endpoint(&p)?;
                match node.huds(peer, addrs, HudsRequest::Get { id }).await? {
                    HudsResponse::Fragment(b) => Ok(b),
                    HudsResponse::Refused(r) => Err(anyhow!("refused: {r}")),
                    _ => Err(anyhow!("answered a get with something else")),
                }
            }
            .await;
            (i, r)
        }
    };
    for i in order.by_ref().take(k) {
        running.push(ask(i));
    }
    let mut hedge =
        tokio::time::interval_at(tokio::time::Instant::now() + HEDGE_AFTER, HEDGE_AFTER);
    while have < k {
        let next = tokio::select! {
            next = running.next() => next,
            _ = hedge.tick() => {
                if let Some(more) = order.next() {
                    running.push(ask(more));
                }
                continue;
            }
        };
        let Some((i, r)) = next else {
            bail!(
                "segment {segment} of {}: {have} good fragments of the {k} needed ({})",
                layout.content,
                bad.join("; ")
            );
        };
        let r = r.and_then(|b| {
            layout.check_fragment(segment, i, &b)?;
            Ok(b)
        });
        match r {
            Ok(b) => {
                slots[i] = Some(b);
                have += 1;
            }
            Err(e) => {
                bad.push(format!("fragment {segment}/{i} from {}: {e}", placement[i]));
                if let Some(next) = order.next() {
                    running.push(ask(next));
                }
            }
        }
    }
    // Whatever is still in flight (the slowest) is dropped here.
    Ok(slots)
}

/// Reads bytes `[from, to)` of an object, segment by segment, sending its
/// pieces in order to `out` (a closed `out` stops the read): a segment goes
/// as its k data fragments' own buffers (cut to the range), not copied
/// into one. A whole-object read also checks the ContentId, and holds its
/// last piece back until the check passes.
pub async fn read(
    node: &NodeHandle,
    located: &Located,
    from: u64,
    to: u64,
    out: &tokio::sync::mpsc::Sender<Result<Vec<u8>, String>>,
) -> Result<()> {
    let layout = &located.deal.layout;
    let seg_bytes = u64::from(layout.coding.segment_bytes);
    let to = to.min(layout.size);
    if from >= to {
        return Ok(());
    }
    let whole = from == 0 && to == layout.size;
    let mut hasher = blake3::Hasher::new();
    let codec = Codec::new(layout.coding)?;
    // Segments are fetched and decoded READ_AHEAD at a time, handed on in order.
    let mut segments = futures::stream::iter((from / seg_bytes)..=((to - 1) / seg_bytes))
        .map(|s| {
            let codec = codec.clone();
            async move {
                let mut bad = Vec::new();
                let mut slots = fetch_segment(node, located, s as u32, &mut bad).await?;
                if !bad.is_empty() {
                    tracing::warn!(content = %layout.content, segment = s, problems = %bad.join("; "), "some providers failed; read from the others");
                }
                let len = layout.segment_len(s as u32);
                let k = usize::from(layout.coding.data);
                // All data fragments came: the segment is those buffers, no
                // work. Otherwise Reed-Solomon rebuilds them, off this task.
                let pieces = if slots[..k].iter().all(Option::is_some) {
                    codec.decode_pieces(len, &mut slots)?
                } else {
                    tokio::task::spawn_blocking(move || codec.decode_pieces(len, &mut slots))
                        .await??
                };
                anyhow::Ok((s, pieces))
            }
        })
        .buffered(READ_AHEAD);
    // The last piece waits for the ContentId check: an object whose bytes
    // do not hash to its id ends short (an error), never whole.
    let mut held: Option<Vec<u8>> = None;
    while let Some(next) = segments.next().await {
        let (s, pieces) = next?;
        let mut at = s * seg_bytes;
        for p in pieces {
            let (start, end) = (at, at + p.len() as u64);
            at = end;
            if whole {
                hasher.update(&p);
            }
            if end <= from || start >= to {
                continue;
            }
            let piece = if start >= from && end <= to {
                p
            } else {
                p[(from.max(start) - start) as usize..(to.min(end) - start) as usize].to_vec()
            };
            if let Some(ready) = held.replace(piece) {
                if out.send(Ok(ready)).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
    if whole && ContentId(Hash(*hasher.finalize().as_bytes())) != layout.content {
        bail!("the decoded object does not hash to {}", layout.content);
    }
    if let Some(last) = held {
        let _ = out.send(Ok(last)).await;
    }
    Ok(())
}

/// How often the repairer looks for fragments placed anew.
pub const REPAIR_EVERY: Duration = Duration::from_secs(2);
/// How long before a repair that did not take is tried again.
pub const REPAIR_RETRY: Duration = Duration::from_secs(20);

/// A fragment the chain placed anew (after it was lost) that its new
/// provider has not signed for yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct RepairJob {
    shard: ShardId,
    id: FragmentId,
    provider: Address,
}

/// The repairer a full node runs: every [`REPAIR_EVERY`] it looks for
/// fragments the chain re-placed (a slot not signed for whose placement
/// is newer than the deal), fetches k good fragments of the segment from
/// the other providers, rebuilds the missing one, checks it against its
/// root and sends it to its new provider (who signs a receipt: the repair
/// is then on chain). Ends when the node stops.
pub async fn repairer(node: NodeHandle) {
    let mut tried: BTreeMap<RepairJob, tokio::time::Instant> = BTreeMap::new();
    loop {
        tokio::time::sleep(REPAIR_EVERY).await;
        let found = node
            .query(|v| -> Result<Vec<(RepairJob, Located)>> {
                let mut out = Vec::new();
                for (shard, r) in v.replicas.iter() {
                    let store = r.store();
                    let Some(ids) =
                        ios_chain::committee::read::<Vec<ContentId>>(store, keys::DEALS)?
                    else {
                        continue;
                    };
                    for cid in ids {
                        let Some(deal) =
                            ios_chain::committee::read::<Deal>(store, &keys::deal(&cid))?
                        else {
                            continue;
                        };
                        let mut jobs = Vec::new();
                        for (s, seg) in deal.placement.iter().enumerate() {
                            for (i, a) in seg.iter().enumerate() {
                                if !deal.receipted[s][i]
                                    && !deal.lost[s][i]
                                    && deal.since[s][i] > deal.start_epoch
                                {
                                    jobs.push(RepairJob {
                                        shard: *shard,
                                        id: FragmentId {
                                            content: cid,
                                            segment: s as u32,
                                            index: i as u16,
                                        },
                                        provider: *a,
                                    });
                                }
                            }
                        }
                        if jobs.is_empty() {
                            continue;
                        }
                        let mut providers = BTreeMap::new();
                        for a in deal.placement.iter().flatten() {
                            if let Some(p) =
                                ios_chain::committee::read::<Provider>(store, &keys::provider(a))?
                            {
                                providers.insert(*a, p);
                            }
                        }
                        let located = Located {
                            shard: *shard,
                            deal,
                            providers,
                        };
                        out.extend(jobs.into_iter().map(|j| (j, located.clone())));
                    }
                }
                Ok(out)
            })
            .await;
        let found = match found {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "repairer: reading deals failed");
                continue;
            }
            // The node stopped.
            Err(_) => return,
        };
        let now = tokio::time::Instant::now();
        tried.retain(|_, at| now.duration_since(*at) < REPAIR_RETRY);
        for (job, located) in found {
            if tried.contains_key(&job) {
                continue;
            }
            tried.insert(job, now);
            match repair_one(&node, &located, &job).await {
                Ok(()) => {
                    tracing::info!(id = %job.id, provider = %job.provider, "repaired a fragment")
                }
                Err(e) => {
                    tracing::warn!(id = %job.id, provider = %job.provider, error = %format!("{e:#}"), "repair failed; trying again later")
                }
            }
        }
    }
}

/// Rebuilds one fragment from k others of its segment and sends it to
/// the provider the chain placed it on.
async fn repair_one(node: &NodeHandle, located: &Located, job: &RepairJob) -> Result<()> {
    let layout = &located.deal.layout;
    let mut bad = Vec::new();
    let mut slots = fetch_segment(node, located, job.id.segment, &mut bad).await?;
    let len = layout.segment_len(job.id.segment);
    let codec = Codec::new(layout.coding)?;
    let i = usize::from(job.id.index);
    let bytes = tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
        slots[i] = None;
        codec.reconstruct(len, &mut slots)?;
        slots[i].take().context("the rebuilt fragment")
    })
    .await??;
    layout.check_fragment(job.id.segment, i, &bytes)?;
    let p = located
        .providers
        .get(&job.provider)
        .context("the new provider is not registered")?;
    let (peer, addrs) = endpoint(p)?;
    match node
        .huds(
            peer,
            addrs,
            HudsRequest::Put {
                shard: job.shard,
                id: job.id,
                bytes,
            },
        )
        .await?
    {
        HudsResponse::Stored => Ok(()),
        HudsResponse::Refused(r) => Err(anyhow!("refused: {r}")),
        _ => Err(anyhow!("answered a put with something else")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p2p::Wire;

    #[test]
    fn responses_on_the_wire_are_borsh_and_read_back_as_borsh_reads_them() {
        let all = [
            HudsResponse::Stored,
            HudsResponse::Fragment(Vec::new()),
            HudsResponse::Fragment((0..70_000u32).map(|i| i as u8).collect()),
            HudsResponse::Chunk(ChunkProof {
                index: 3,
                chunk: vec![7; 1024],
                siblings: vec![[1; 32]],
            }),
            refused("busy", "later"),
        ];
        for r in &all {
            let (head, body) = r.parts().unwrap();
            let wire = [head, body.to_vec()].concat();
            assert_eq!(wire, borsh::to_vec(r).unwrap(), "{r:?}");
            let back = HudsResponse::from_frame(wire.clone()).unwrap();
            assert_eq!(borsh::to_vec(&back).unwrap(), wire);
            // Cut anywhere or given a byte too many: refused as borsh
            // refuses it (a cut frame is told apart from a bad one).
            for cut in [1, wire.len() / 2, wire.len() - 1] {
                if cut == 0 || cut >= wire.len() {
                    continue;
                }
                let ours = HudsResponse::from_frame(wire[..cut].to_vec()).unwrap_err();
                let theirs = crate::p2p::decode::<HudsResponse>(&wire[..cut]).unwrap_err();
                assert_eq!(ours.to_string(), theirs.to_string());
            }
            let mut long = wire.clone();
            long.push(0);
            assert!(HudsResponse::from_frame(long).is_err());
        }
    }

    #[test]
    fn provider_keys_live_on_their_shard_and_differ() {
        let master = Keypair::from_seed("provider-test", 1);
        let a = provider_key(&master, 1, 4);
        let b = provider_key(&master, 2, 4);
        assert_eq!(home_shard(&a.address(), 4), 1);
        assert_eq!(home_shard(&b.address(), 4), 2);
        assert_ne!(a.address(), b.address());
        assert_eq!(
            provider_key(&master, 1, 4).address(),
            a.address(),
            "deterministic"
        );
    }

    #[test]
    fn staged_uploads_survive_a_restart_and_half_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let coding = upload_coding(4, 2).unwrap();
        let content = {
            let st = Staging::open(dir.path(), 1 << 30).unwrap();
            let path = st.temp_path();
            std::fs::write(&path, &bytes).unwrap();
            let layout = st.stage_file(&path, coding, u64::MAX).unwrap();
            assert!(
                !path.exists(),
                "the received bytes are dropped once encoded"
            );
            // A second upload whose receiving was cut short by the crash.
            std::fs::write(st.temp_path(), b"half an upload").unwrap();
            layout.content
        };
        let st = Staging::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(st.pending(), vec![content]);
        let layout = st.layout(&content).expect("the layout is back");
        assert_eq!(layout.size, bytes.len() as u64);
        let id = FragmentId {
            content,
            segment: 0,
            index: 5,
        };
        assert!(st.fragment(&id).is_ok(), "and its fragments");
        let parts = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "part")
            })
            .count();
        assert_eq!(parts, 0, "half-received uploads are dropped");
        // Once pushed it is forgotten, layout and all: a restart finds nothing.
        st.forget(&content);
        drop(st);
        let st = Staging::open(dir.path(), 1 << 30).unwrap();
        assert!(st.pending().is_empty());
        // A layout whose fragments are gone is dropped.
        std::fs::write(
            dir.path().join("layouts").join(content.to_hex()),
            ios_chain::codec::encode(&layout),
        )
        .unwrap();
        drop(st);
        assert!(Staging::open(dir.path(), 1 << 30)
            .unwrap()
            .pending()
            .is_empty());
    }

    #[test]
    fn upload_coding_keeps_fragments_within_one_message() {
        let c = upload_coding(4, 2).unwrap();
        assert!(u64::from(c.segment_bytes) / 4 <= MAX_WIRE_FRAGMENT as u64);
        let c = upload_coding(1, 1).unwrap();
        assert_eq!(c.segment_bytes as usize, MAX_WIRE_FRAGMENT);
    }
}
