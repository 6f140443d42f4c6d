//! The catalog: HUDS search ([`crate::search`]) fed from the chain.
//!
//! A derived view, never the source of truth. A gateway runs a feeder that
//! follows each account shard's finalized blocks: a `deal` event of the
//! storage module names an object whose deal it then reads from state (its
//! metadata, owner, size, block time); a public object is indexed, with the
//! text of a small text object fetched from its providers (retried while
//! its fragments are still on their way). When a shard's epoch moves, the
//! objects whose deals ended are dropped. A shard the catalog has not seen
//! (a new index, `ios reindex`) or whose old blocks are gone (fast sync,
//! pruning) is read whole from state instead.
//!
//! The same feeder keeps the market's listing search ([`crate::listings`]):
//! a market `listing` event re-reads that listing (indexed while active),
//! and a rating of a provider or a verdict against one re-reads its
//! listings with its new seller score.
//!
//! On disk: the tantivy indexes in `<data>/search` and `<data>/listings`
//! and the cursor (height and
//! epoch seen per shard, bodies still to fetch) in `<data>/catalog.json`,
//! written after each index commit (and every 10 s while blocks bring
//! nothing to index): a crash replays some blocks, and indexing an object
//! twice is harmless.

use crate::listings::{ListingDoc, ListingIndex, ListingQuery, ListingReader, ListingResults};
use crate::node::NodeHandle;
use crate::search::{ObjectDoc, SearchIndex, SearchQuery, SearchReader, SearchResults};
use crate::trust::{shard_trust, Ranking};
use anyhow::{Context, Result};
use ios_chain::block::Receipt;
use ios_chain::crypto::Address;
use ios_chain::hash::Hash;
use ios_chain::state::StateStore;
use ios_chain::types::{Epoch, Height, ShardId};
use ios_market::ftfs::Tally;
use ios_market::module::{self as market, Listing, ListingStatus, MARKET_MODULE};
use ios_market::order::Order;
use ios_storage::module::{keys, Deal, STORAGE_MODULE};
use ios_storage::ContentId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{debug, info, warn};

/// How often the feeder looks for new blocks.
pub const POLL: Duration = Duration::from_secs(1);
/// Blocks read per shard per look.
pub const BATCH_BLOCKS: u64 = 256;
/// Objects at most this big whose media type is text have their text indexed.
pub const MAX_BODY_BYTES: u64 = crate::search::MAX_BODY_BYTES as u64;
/// Tries to fetch a body before giving up (the waits double from 2 s, at
/// most 2 min apart: about 15 minutes in all).
pub const BODY_TRIES: u32 = 12;
/// Bodies fetched per look.
const BODIES_PER_LOOK: usize = 4;
/// How long one body's fetch may hold up the look.
const BODY_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the cursor is written when blocks bring nothing to index.
const CURSOR_EVERY: Duration = Duration::from_secs(10);
/// Global trust is computed at most this often (when ratings came).
const TRUST_EVERY: Duration = Duration::from_secs(3);
/// The cursor's format; another one (an older node) means: rebuild.
const CURSOR_VERSION: u32 = 4;

/// Where a node keeps its catalog.
pub fn index_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("search")
}

/// Where a node keeps its listing search.
pub fn listings_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("listings")
}

fn cursor_path(data_dir: &Path) -> PathBuf {
    data_dir.join("catalog.json")
}

/// How far the catalog has read, and what it still has to fetch.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Cursor {
    version: u32,
    /// Last block read, per account shard.
    heights: BTreeMap<ShardId, Height>,
    /// Epoch up to which ended deals were dropped, per account shard.
    epochs: BTreeMap<ShardId, Epoch>,
    /// Text objects whose text is still to fetch, as `shard:cid`.
    bodies: Vec<String>,
}

impl Cursor {
    fn load(data_dir: &Path) -> Cursor {
        let path = cursor_path(data_dir);
        match std::fs::read(&path) {
            Ok(b) => match serde_json::from_slice::<Cursor>(&b) {
                Ok(c) if c.version == CURSOR_VERSION => c,
                _ => {
                    warn!(path = %path.display(), "catalog cursor unreadable or of another version: rebuilding the search index");
                    Cursor::default()
                }
            },
            Err(_) => Cursor::default(),
        }
    }

    fn save(&self, data_dir: &Path) -> Result<()> {
        let path = cursor_path(data_dir);
        let tmp = path.with_extension("json.tmp");
        let mut c = self.clone();
        c.version = CURSOR_VERSION;
        std::fs::write(&tmp, serde_json::to_vec_pretty(&c)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

/// `shard:cid` back to its parts.
fn parse_body_key(s: &str) -> Option<(ShardId, ContentId)> {
    let (shard, cid) = s.split_once(':')?;
    Some((shard.parse().ok()?, cid.parse().ok()?))
}

/// Whether the text of an object of this media type and size is indexed.
pub fn wants_body(mime: &str, size: u64) -> bool {
    let base = mime.split(';').next().unwrap_or("").trim();
    size > 0
        && size <= MAX_BODY_BYTES
        && (base.starts_with("text/")
            || matches!(
                base,
                "application/json" | "application/xml" | "application/toml"
            ))
}

/// The search document of a deal, if its object is public.
pub fn doc_of(shard: ShardId, d: &Deal) -> Option<ObjectDoc> {
    d.meta.public.then(|| ObjectDoc {
        cid: d.layout.content.to_hex(),
        name: d.meta.name.clone(),
        description: d.meta.description.clone(),
        tags: d.meta.tags.clone(),
        mime: d.meta.mime.clone(),
        owner: d.owner.to_string(),
        size: d.layout.size,
        created: d.created,
        shard,
        expires: d.end_epoch,
        body: None,
    })
}

/// Every public object whose deal is live on `store`'s shard.
pub fn docs_in(store: &StateStore, shard: ShardId) -> Result<Vec<ObjectDoc>> {
    let ids: Vec<ContentId> = ios_chain::committee::read(store, keys::DEALS)?.unwrap_or_default();
    let mut docs = Vec::new();
    for cid in ids {
        if let Some(d) = ios_chain::committee::read::<Deal>(store, &keys::deal(&cid))? {
            docs.extend(doc_of(shard, &d));
        }
    }
    Ok(docs)
}

/// The search document of an active listing: its provider's seller score,
/// ranked by `ranking`'s global trust, and, when the listing document is a
/// public object on this shard, that object's description. None for a
/// paused or closed listing.
pub fn listing_doc(
    store: &StateStore,
    shard: ShardId,
    l: &Listing,
    ranking: &Ranking,
) -> Result<Option<ListingDoc>> {
    if l.status != ListingStatus::Active {
        return Ok(None);
    }
    let tally: Tally =
        ios_chain::committee::read(store, &market::keys::provider_tally(&l.provider))?
            .unwrap_or_default();
    let score = tally.overall_milli(&ranking.ftfs);
    let description = ios_chain::committee::read::<Deal>(store, &keys::deal(&l.terms.doc))?
        .filter(|d| d.meta.public)
        .map(|d| d.meta.description)
        .unwrap_or_default();
    Ok(Some(ListingDoc {
        id: l.id.to_hex(),
        shard,
        provider: l.provider.to_string(),
        title: l.terms.title.clone(),
        category: l.terms.category.clone(),
        description,
        price: l.terms.price,
        delivery_blocks: l.terms.delivery_blocks,
        score_milli: u64::from(score),
        rank_milli: u64::from(ranking.rank_milli(&l.provider, score)),
        trust_ppm: ranking.ppm(&l.provider),
        ratings: u64::from(tally.count),
        created: l.created,
        doc: l.terms.doc.to_string(),
    }))
}

/// The listings of `provider` on `store`'s shard: the active ones'
/// documents, and the ids of the others (to drop).
fn listings_of(
    store: &StateStore,
    shard: ShardId,
    provider: &Address,
    ranking: &Ranking,
) -> Result<(Vec<ListingDoc>, Vec<String>)> {
    let ids: Vec<Hash> = market::list::all(store, &market::keys::listings_of(provider))?;
    let (mut docs, mut gone) = (Vec::new(), Vec::new());
    for id in ids {
        if let Some(l) = ios_chain::committee::read::<Listing>(store, &market::keys::listing(&id))?
        {
            match listing_doc(store, shard, &l, ranking)? {
                Some(d) => docs.push(d),
                None => gone.push(id.to_hex()),
            }
        }
    }
    Ok((docs, gone))
}

/// Every active listing on `store`'s shard.
pub fn listings_in(
    store: &StateStore,
    shard: ShardId,
    ranking: &Ranking,
) -> Result<Vec<ListingDoc>> {
    let providers: Vec<Address> = market::list::all(store, market::keys::PROVIDERS)?;
    let mut out = Vec::new();
    for p in providers {
        out.extend(listings_of(store, shard, &p, ranking)?.0);
    }
    Ok(out)
}

/// What the catalog follows in blocks' receipts.
#[derive(Default)]
struct Events {
    /// Deals made (their content ids).
    deals: Vec<ContentId>,
    /// Listings created or changed.
    listings: Vec<Hash>,
    /// Providers whose seller score changed.
    providers: Vec<Address>,
    /// Orders a jury decided (their providers' scores changed).
    verdicts: Vec<Hash>,
    /// A rating was revealed or a verdict given: global trust changed.
    rated: bool,
}

fn lead_hash(data: &[u8], at: usize) -> Option<Hash> {
    let b = data.get(at..at + 32)?;
    let mut h = [0u8; 32];
    h.copy_from_slice(b);
    Some(Hash(h))
}

/// What these blocks' receipts tell the catalog.
fn events_in(receipts: &[Receipt], ev: &mut Events) {
    for r in receipts {
        for e in &r.events {
            match (e.module, e.kind.as_str()) {
                // (content, owner, cost, end epoch): the content id leads.
                (m, "deal") if m == STORAGE_MODULE.0 => {
                    ev.deals.extend(lead_hash(&e.data, 0).map(ContentId));
                }
                // (listing id, provider).
                (m, "listing") if m == MARKET_MODULE.0 => {
                    ev.listings.extend(lead_hash(&e.data, 0));
                }
                // (order, side, ratee, weight): side 0 is the buyer rating the provider.
                (m, "rating") if m == MARKET_MODULE.0 => {
                    ev.rated = true;
                    if e.data.get(32) == Some(&0) {
                        ev.providers
                            .extend(lead_hash(&e.data, 33).map(|h| Address(h.0)));
                    }
                }
                (m, "verdict") if m == MARKET_MODULE.0 => {
                    ev.rated = true;
                    ev.verdicts.extend(lead_hash(&e.data, 0));
                }
                _ => {}
            }
        }
    }
}

/// Opens the index in `data_dir`, starting over (with a fresh cursor) if
/// it is of another version or damaged.
fn open_index(data_dir: &Path) -> Result<(SearchIndex, ListingIndex, Cursor)> {
    let dir = index_dir(data_dir);
    let ldir = listings_dir(data_dir);
    let cursor = Cursor::load(data_dir);
    if cursor.version == CURSOR_VERSION {
        match SearchIndex::open(&dir).and_then(|ix| Ok((ix, ListingIndex::open(&ldir)?))) {
            Ok((ix, lx)) => return Ok((ix, lx, cursor)),
            // Another writer (a catalog still stopping) holds it: not damage.
            Err(crate::search::SearchError::Index(e @ tantivy::TantivyError::LockFailure(..))) => {
                return Err(anyhow::anyhow!(
                    "the search index {} is in use: {e}",
                    dir.display()
                ))
            }
            Err(e) => {
                warn!(error = %e, dir = %dir.display(), "search index unreadable: rebuilding it")
            }
        }
    }
    for d in [&dir, &ldir] {
        if d.exists() {
            std::fs::remove_dir_all(d).with_context(|| format!("removing {}", d.display()))?;
        }
    }
    let ix = SearchIndex::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
    let lx = ListingIndex::open(&ldir).with_context(|| format!("opening {}", ldir.display()))?;
    Ok((ix, lx, Cursor::default()))
}

/// What `ios reindex` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rebuilt {
    /// Public objects indexed, per account shard.
    pub objects: BTreeMap<ShardId, usize>,
    /// Active listings indexed, per account shard.
    pub listings: BTreeMap<ShardId, usize>,
    /// Text objects whose text the node fetches from providers when it runs.
    pub bodies_pending: usize,
}

/// Rebuilds a stopped node's search index from its chain data: drops the
/// index and cursor, reads every shard's live deals from state, indexes
/// the public objects and leaves their text to the node (fetched from
/// providers once it runs). Refused while the node runs.
pub fn rebuild(data_dir: &Path, mut progress: impl FnMut(ShardId, usize)) -> Result<Rebuilt> {
    // Nothing is deleted in a directory that is not a node's.
    let shards = shard_dirs(data_dir)?;
    if shards.is_empty() && !data_dir.join("node").is_dir() {
        anyhow::bail!(
            "{} is not a node's data directory (no shard-N or node inside)",
            data_dir.display()
        );
    }
    let _lock = crate::node::DataLock::acquire(data_dir)?;
    let _ = std::fs::remove_file(cursor_path(data_dir));
    let dir = index_dir(data_dir);
    let ldir = listings_dir(data_dir);
    for d in [&dir, &ldir] {
        if d.exists() {
            std::fs::remove_dir_all(d).with_context(|| format!("removing {}", d.display()))?;
        }
    }
    let mut ix = SearchIndex::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
    let mut lx =
        ListingIndex::open(&ldir).with_context(|| format!("opening {}", ldir.display()))?;
    let mut cursor = Cursor::default();
    let mut out = Rebuilt::default();
    for (shard, path) in shards {
        let db = ios_chain::state::open_db(&path, None)
            .with_context(|| format!("opening {}", path.display()))?;
        let store = StateStore::open(&db).with_context(|| format!("reading {}", path.display()))?;
        let Some(head) = store.head().cloned() else {
            continue;
        };
        let docs = docs_in(&store, shard)?;
        for d in &docs {
            ix.upsert(d)?;
            if wants_body(&d.mime, d.size) {
                cursor.bodies.push(format!("{}:{}", d.shard, d.cid));
            }
        }
        // Ranked by score alone: the node computes global trust when it
        // runs and ranks every listing again.
        let listings = listings_in(&store, shard, &Ranking::default())?;
        for l in &listings {
            lx.upsert(l)?;
        }
        progress(shard, docs.len());
        out.objects.insert(shard, docs.len());
        out.listings.insert(shard, listings.len());
        cursor.heights.insert(shard, head.height);
    }
    ix.commit()?;
    lx.commit()?;
    out.bodies_pending = cursor.bodies.len();
    cursor.save(data_dir)?;
    Ok(out)
}

/// The `shard-N` directories of a node's data directory.
fn shard_dirs(data_dir: &Path) -> Result<Vec<(ShardId, PathBuf)>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(data_dir)
        .with_context(|| format!("reading the data directory {}", data_dir.display()))?;
    for e in entries {
        let e = e?;
        let name = e.file_name();
        let Some(n) = name.to_str().and_then(|n| n.strip_prefix("shard-")) else {
            continue;
        };
        if let Ok(shard) = n.parse::<ShardId>() {
            out.push((shard, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// How the catalog is doing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CatalogStatus {
    /// Objects searchable now.
    pub docs: u64,
    /// Listings searchable now.
    pub listings: u64,
    /// Last block read, per account shard.
    pub heights: BTreeMap<ShardId, Height>,
    /// Text objects whose text is still to fetch.
    pub bodies_pending: usize,
    /// The last look's error, if it failed.
    pub error: Option<String>,
}

/// A running catalog: search it from anywhere; its feeder runs until the
/// node stops.
#[derive(Clone, Debug)]
pub struct Catalog {
    reader: SearchReader,
    listings: ListingReader,
    ranking: Arc<Mutex<Arc<Ranking>>>,
    status: Arc<Mutex<CatalogStatus>>,
    stop: tokio::sync::watch::Sender<bool>,
    feeder: Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Catalog {
    /// Opens the node's catalog (rebuilding it if needed) and starts its
    /// feeder on the current tokio runtime.
    pub fn start(node: NodeHandle) -> Result<Catalog> {
        let (index, listing_index, cursor) = open_index(&node.data_dir)?;
        let status = Arc::new(Mutex::new(CatalogStatus {
            docs: index.num_docs(),
            listings: listing_index.num_docs(),
            heights: cursor.heights.clone(),
            bodies_pending: cursor.bodies.len(),
            error: None,
        }));
        let reader = index.reader();
        let listings = listing_index.reader();
        let bodies = cursor
            .bodies
            .iter()
            .filter_map(|b| parse_body_key(b))
            .map(|k| (k, Retry::default()))
            .collect();
        let ranking = Arc::new(Mutex::new(Arc::new(Ranking::default())));
        let feeder = Feeder {
            node,
            index: Some((index, listing_index)),
            cursor,
            bodies,
            status: status.clone(),
            saved: tokio::time::Instant::now(),
            ranking: ranking.clone(),
            trust_due: true,
            trust_at: None,
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(feeder.run(stopped));
        Ok(Catalog {
            reader,
            listings,
            ranking,
            status,
            stop,
            feeder: Arc::new(tokio::sync::Mutex::new(Some(task))),
        })
    }

    /// Stops the feeder and waits until it has let go of the index (a
    /// look in progress finishes first).
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.feeder.lock().await.take() {
            let _ = task.await;
        }
    }

    pub fn search(&self, q: &SearchQuery) -> crate::search::Result<SearchResults> {
        self.reader.search(q)
    }

    /// Global trust as last computed (empty until the first computation).
    pub fn ranking(&self) -> Arc<Ranking> {
        self.ranking.lock().expect("catalog ranking").clone()
    }

    /// Searches the market's active listings.
    pub fn search_listings(&self, q: &ListingQuery) -> crate::search::Result<ListingResults> {
        self.listings.search(q)
    }

    pub fn status(&self) -> CatalogStatus {
        self.status.lock().expect("catalog status").clone()
    }
}

/// When a body fetch is tried next.
#[derive(Clone, Copy, Debug, Default)]
struct Retry {
    tries: u32,
    next: Option<tokio::time::Instant>,
}

/// Changes gathered by one look, applied to the index at once.
#[derive(Default)]
struct Batch {
    upserts: Vec<ObjectDoc>,
    /// Shards read whole: their documents are dropped first.
    rescanned: Vec<ShardId>,
    expire: Vec<(ShardId, Epoch)>,
    listings: Vec<ListingDoc>,
    /// Listings no longer active: (shard, id).
    unlisted: Vec<(ShardId, String)>,
}

struct Feeder {
    node: NodeHandle,
    /// Taken while a blocking task writes them: objects, listings.
    index: Option<(SearchIndex, ListingIndex)>,
    cursor: Cursor,
    bodies: BTreeMap<(ShardId, ContentId), Retry>,
    status: Arc<Mutex<CatalogStatus>>,
    /// When the cursor was last written.
    saved: tokio::time::Instant,
    /// Global trust, shared with the API.
    ranking: Arc<Mutex<Arc<Ranking>>>,
    /// Ratings or verdicts came since trust was last computed.
    trust_due: bool,
    trust_at: Option<tokio::time::Instant>,
}

/// What a look does for one shard.
enum Plan {
    /// Read the receipts of blocks `from..=to` (none when `to < from`).
    Scan {
        from: Height,
        to: Height,
        reader: ios_chain::state::ReceiptsReader,
    },
    /// The shard was read whole at this height.
    Read(Height, Vec<ObjectDoc>, Vec<ListingDoc>),
}

/// What reading a shard's receipts gave.
enum Scanned {
    /// Blocks up to this height read; what they held.
    Made(Height, Events),
    /// Read whole at this height.
    Whole(Height, Vec<ObjectDoc>, Vec<ListingDoc>),
    /// Blocks were pruned meanwhile: to be read whole.
    Gone,
}

/// What each shard's look found, and whether any rating or verdict came.
type Looked = (Vec<(ShardId, Epoch, Found)>, bool);

/// What one shard's look found.
enum Found {
    /// Blocks up to this height read; these deals were made in them;
    /// these listings changed (active ones, and ids of the others).
    Events(Height, Vec<Deal>, Vec<ListingDoc>, Vec<String>),
    /// The shard read whole at this height.
    Whole(Height, Vec<ObjectDoc>, Vec<ListingDoc>),
}

impl Feeder {
    async fn run(mut self, mut stopped: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = stopped.changed() => return,
            }
            let looked = match self.look().await {
                Ok(()) => self.rank().await,
                Err(e) => Err(e),
            };
            match looked {
                Ok(()) => self.status.lock().expect("catalog status").error = None,
                Err(e) => {
                    if self.node.query(|_| ()).await.is_err() {
                        debug!("catalog: the node stopped");
                        return;
                    }
                    warn!(error = %format!("{e:#}"), "catalog: a look failed; trying again");
                    self.status.lock().expect("catalog status").error = Some(format!("{e:#}"));
                }
            }
        }
    }

    async fn look(&mut self) -> Result<()> {
        let heights = self.cursor.heights.clone();
        let ranking = self.ranking.lock().expect("catalog ranking").clone();
        let ranked = ranking.clone();
        // 1. On the node's task, only what is cheap: each shard's tip and
        //    epoch, a handle on its stored receipts (a shard to read whole
        //    is read now: new to the catalog, or its old blocks pruned).
        let plan = self
            .node
            .query(move |v| -> Result<Vec<(ShardId, Epoch, Plan)>> {
                let mut out = Vec::new();
                // Every shard: the beacon of a one-shard network holds the
                // deals; on others it simply has none.
                for (&shard, r) in v.replicas.iter() {
                    let store = r.store();
                    // The last committed block (the replica's own height is
                    // the one being decided).
                    let tip = store.head().map_or(0, |h| h.height);
                    let epoch = r.committee().epoch;
                    let plan = match heights.get(&shard).copied() {
                        Some(seen) if seen + 1 >= store.base()? => Plan::Scan {
                            from: seen + 1,
                            to: tip.min(seen + BATCH_BLOCKS),
                            reader: store.receipts_reader(),
                        },
                        _ => Plan::Read(
                            tip,
                            docs_in(store, shard)?,
                            listings_in(store, shard, &ranked)?,
                        ),
                    };
                    out.push((shard, epoch, plan));
                }
                Ok(out)
            })
            .await??;
        // 2. Off it: the receipts of the new blocks, for the deals they made.
        let scanned =
            tokio::task::spawn_blocking(move || -> Result<Vec<(ShardId, Epoch, Scanned)>> {
                let mut out = Vec::new();
                for (shard, epoch, plan) in plan {
                    let scanned = match plan {
                        Plan::Read(h, docs, listings) => Scanned::Whole(h, docs, listings),
                        Plan::Scan { from, to, reader } => {
                            let mut made = Events::default();
                            let mut gone = false;
                            for h in from..=to {
                                match reader.receipts(h)? {
                                    Some(receipts) => events_in(&receipts, &mut made),
                                    // Pruned meanwhile: read the shard whole.
                                    None => {
                                        gone = true;
                                        break;
                                    }
                                }
                            }
                            if gone {
                                Scanned::Gone
                            } else {
                                Scanned::Made(to.max(from - 1), made)
                            }
                        }
                    };
                    out.push((shard, epoch, scanned));
                }
                Ok(out)
            })
            .await
            .context("the catalog's reader panicked")??;
        // 3. On the node's task again: the deals those blocks made, read
        //    at the tip (a deal already ended is not indexed).
        let (found, rated) = self
            .node
            .query(move |v| -> Result<Looked> {
                let mut out = Vec::new();
                let mut rated = false;
                for (shard, epoch, s) in scanned {
                    let Some(r) = v.replicas.get(&shard) else {
                        continue;
                    };
                    let store = r.store();
                    let found = match s {
                        Scanned::Whole(h, docs, listings) => Found::Whole(h, docs, listings),
                        Scanned::Gone => Found::Whole(
                            store.head().map_or(0, |h| h.height),
                            docs_in(store, shard)?,
                            listings_in(store, shard, &ranking)?,
                        ),
                        Scanned::Made(h, made) => {
                            rated |= made.rated;
                            let mut deals = Vec::new();
                            for cid in made.deals {
                                if let Some(d) =
                                    ios_chain::committee::read::<Deal>(store, &keys::deal(&cid))?
                                {
                                    deals.push(d);
                                }
                            }
                            let (mut listings, mut unlisted) = (Vec::new(), Vec::new());
                            let mut providers: std::collections::BTreeSet<Address> =
                                made.providers.into_iter().collect();
                            for o in made.verdicts {
                                if let Some(o) = ios_chain::committee::read::<Order>(
                                    store,
                                    &market::keys::order(&o),
                                )? {
                                    providers.insert(o.provider);
                                }
                            }
                            for p in &providers {
                                let (docs, gone) = listings_of(store, shard, p, &ranking)?;
                                listings.extend(docs);
                                unlisted.extend(gone);
                            }
                            for id in made.listings {
                                if let Some(l) = ios_chain::committee::read::<Listing>(
                                    store,
                                    &market::keys::listing(&id),
                                )? {
                                    match listing_doc(store, shard, &l, &ranking)? {
                                        Some(d) => listings.push(d),
                                        None => unlisted.push(id.to_hex()),
                                    }
                                }
                            }
                            Found::Events(h, deals, listings, unlisted)
                        }
                    };
                    out.push((shard, epoch, found));
                }
                Ok((out, rated))
            })
            .await??;
        self.trust_due |= rated;

        let mut batch = Batch::default();
        let mut cursor = self.cursor.clone();
        for (shard, epoch, f) in found {
            let docs = match f {
                Found::Whole(h, docs, listings) => {
                    info!(
                        shard,
                        height = h,
                        objects = docs.len(),
                        "catalog: read the shard's objects whole"
                    );
                    batch.rescanned.push(shard);
                    batch.listings.extend(listings);
                    self.trust_due = true;
                    cursor.heights.insert(shard, h);
                    docs
                }
                Found::Events(h, deals, listings, unlisted) => {
                    cursor.heights.insert(shard, h);
                    batch.listings.extend(listings);
                    batch
                        .unlisted
                        .extend(unlisted.into_iter().map(|id| (shard, id)));
                    deals.iter().filter_map(|d| doc_of(shard, d)).collect()
                }
            };
            for d in &docs {
                if wants_body(&d.mime, d.size) {
                    if let Ok(c) = d.cid.parse::<ContentId>() {
                        self.bodies.entry((shard, c)).or_default();
                    }
                }
            }
            // A deal read at the tip may end with the epoch being decided.
            batch
                .upserts
                .extend(docs.into_iter().filter(|d| d.expires > epoch));
            if cursor.epochs.get(&shard) != Some(&epoch) {
                batch.expire.push((shard, epoch));
                cursor.epochs.insert(shard, epoch);
            }
        }
        let fetched = self.fetch_bodies().await;
        let refetch: Vec<(ShardId, ContentId)> = fetched
            .iter()
            .filter_map(|d| Some((d.shard, d.cid.parse().ok()?)))
            .collect();
        batch.upserts.extend(fetched);
        let changed = !batch.upserts.is_empty()
            || !batch.rescanned.is_empty()
            || !batch.expire.is_empty()
            || !batch.listings.is_empty()
            || !batch.unlisted.is_empty();
        cursor.bodies = self
            .bodies
            .keys()
            .map(|(s, c)| format!("{s}:{}", c.to_hex()))
            .collect();
        if changed {
            if let Err(e) = self.apply(batch, cursor).await {
                // The texts fetched this time were not kept: fetch them again.
                for k in refetch {
                    self.bodies.entry(k).or_default();
                }
                return Err(e);
            }
            self.saved = tokio::time::Instant::now();
        } else if cursor.heights != self.cursor.heights || cursor.bodies != self.cursor.bodies {
            // Nothing to index: no commit, and the cursor is written now
            // and then (a crash only replays the blocks since).
            self.cursor = cursor;
            if self.saved.elapsed() >= CURSOR_EVERY {
                let (c, dir) = (self.cursor.clone(), self.node.data_dir.clone());
                tokio::task::spawn_blocking(move || c.save(&dir))
                    .await
                    .context("the catalog's writer panicked")??;
                self.saved = tokio::time::Instant::now();
            }
        }
        let mut st = self.status.lock().expect("catalog status");
        st.heights = self.cursor.heights.clone();
        st.bodies_pending = self.bodies.len();
        if let Some((ix, lx)) = &self.index {
            st.docs = ix.num_docs();
            st.listings = lx.num_docs();
        }
        Ok(())
    }

    /// Computes global trust again when ratings or verdicts came since the
    /// last time (at most every [`TRUST_EVERY`]), and when it changed ranks
    /// every active listing by it.
    async fn rank(&mut self) -> Result<()> {
        if !self.trust_due || self.trust_at.is_some_and(|t| t.elapsed() < TRUST_EVERY) {
            return Ok(());
        }
        self.trust_due = false;
        self.trust_at = Some(tokio::time::Instant::now());
        // The graph is read on the node's task, EigenTrust runs off it.
        let (shards, genesis) = self
            .node
            .query(|v| -> Result<_> {
                let genesis = ios_market::module::MarketGenesis::of(v.genesis)
                    .map_err(|e| anyhow::anyhow!("the genesis' market settings: {e}"))?;
                let mut shards = BTreeMap::new();
                for (&shard, r) in v.replicas.iter() {
                    if shard != ios_chain::shard::BEACON || v.genesis.params.shards == 0 {
                        shards.insert(shard, shard_trust(r.store(), &genesis.params)?);
                    }
                }
                Ok((shards, genesis))
            })
            .await??;
        let ranking = tokio::task::spawn_blocking(move || Ranking::compute(&shards, &genesis))
            .await
            .context("computing global trust panicked")?;
        let old = self.ranking.lock().expect("catalog ranking").clone();
        let changed = ranking.trust != old.trust || ranking.full != old.full;
        let ranking = Arc::new(ranking);
        *self.ranking.lock().expect("catalog ranking") = ranking.clone();
        if !changed {
            return Ok(());
        }
        info!(
            accounts = ranking.trust.len(),
            ratings = ranking.edges,
            "catalog: global trust changed; ranking the listings again"
        );
        let listings = self
            .node
            .query(move |v| -> Result<Vec<ListingDoc>> {
                let mut out = Vec::new();
                for (&shard, r) in v.replicas.iter() {
                    out.extend(listings_in(r.store(), shard, &ranking)?);
                }
                Ok(out)
            })
            .await??;
        let batch = Batch {
            listings,
            ..Batch::default()
        };
        self.apply(batch, self.cursor.clone()).await
    }

    /// Writes the batch and commits the index (on a blocking thread), then
    /// the cursor.
    async fn apply(&mut self, batch: Batch, cursor: Cursor) -> Result<()> {
        let (mut ix, mut lx) = self.index.take().context("the search index is in use")?;
        let data_dir = self.node.data_dir.clone();
        let (ix, lx, res) = tokio::task::spawn_blocking(move || {
            let res = (|| -> Result<()> {
                for s in &batch.rescanned {
                    ix.remove_shard(*s);
                    lx.remove_shard(*s);
                }
                for d in &batch.upserts {
                    ix.upsert(d)?;
                }
                // After the upserts: a delete reaches only documents added before it.
                for (s, e) in &batch.expire {
                    ix.expire(*s, *e)?;
                }
                for l in &batch.listings {
                    lx.upsert(l)?;
                }
                for (s, id) in &batch.unlisted {
                    lx.remove(*s, id);
                }
                // Listings first: the cursor moves only once both hold the batch
                // (a crash between the two commits replays it, which is harmless).
                lx.commit()?;
                ix.commit()?;
                cursor.save(&data_dir)
            })();
            if res.is_err() {
                ix.rollback();
                lx.rollback();
            }
            (ix, lx, res.map(|()| cursor))
        })
        .await
        .context("the catalog's writer panicked")?;
        self.index = Some((ix, lx));
        self.cursor = res?;
        Ok(())
    }

    /// Fetches the text of a few text objects whose turn has come; gives
    /// one up after [`BODY_TRIES`] failures.
    async fn fetch_bodies(&mut self) -> Vec<ObjectDoc> {
        let now = tokio::time::Instant::now();
        let due: Vec<(ShardId, ContentId)> = self
            .bodies
            .iter()
            .filter(|(_, r)| r.next.is_none_or(|t| t <= now))
            .map(|(k, _)| *k)
            .take(BODIES_PER_LOOK)
            .collect();
        let mut docs = Vec::new();
        for (shard, cid) in due {
            let fetched = tokio::time::timeout(BODY_TIMEOUT, self.fetch_body(shard, cid))
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {BODY_TIMEOUT:?}")));
            match fetched {
                Ok(doc) => {
                    self.bodies.remove(&(shard, cid));
                    docs.extend(doc);
                }
                Err(e) => {
                    let r = self.bodies.entry((shard, cid)).or_default();
                    r.tries += 1;
                    if r.tries >= BODY_TRIES {
                        info!(content = %cid, error = %format!("{e:#}"), "catalog: gave up fetching the object's text; its metadata stays searchable");
                        self.bodies.remove(&(shard, cid));
                    } else {
                        let wait = Duration::from_secs(2u64 << r.tries.min(6))
                            .min(Duration::from_secs(120));
                        debug!(content = %cid, error = %format!("{e:#}"), tries = r.tries, "catalog: the object's text is not readable yet");
                        r.next = Some(now + wait);
                    }
                }
            }
        }
        docs
    }

    /// The object's document with its text, or None if it is no longer a
    /// public text object.
    async fn fetch_body(&self, shard: ShardId, cid: ContentId) -> Result<Option<ObjectDoc>> {
        let Some(located) = crate::huds::locate_on(&self.node, Some(shard), cid).await? else {
            return Ok(None);
        };
        let Some(mut doc) = doc_of(located.shard, &located.deal) else {
            return Ok(None);
        };
        let size = located.deal.layout.size;
        if !wants_body(&doc.mime, size) {
            return Ok(None);
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, String>>(4);
        let collect = async {
            let mut bytes = Vec::with_capacity(size as usize);
            while let Some(piece) = rx.recv().await {
                bytes.extend(piece.map_err(|e| anyhow::anyhow!(e))?);
            }
            anyhow::Ok(bytes)
        };
        let read = async {
            let r = crate::huds::read(&self.node, &located, 0, size, &tx).await;
            drop(tx);
            r
        };
        let (read, bytes) = tokio::join!(read, collect);
        read?;
        let bytes = bytes?;
        // Not UTF-8 (a mislabelled binary): its metadata alone is indexed.
        doc.body = String::from_utf8(bytes).ok();
        Ok(Some(doc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_bodies_are_wanted_for_small_text_objects_only() {
        assert!(wants_body("text/plain", 10));
        assert!(wants_body("text/markdown; charset=utf-8", 10));
        assert!(wants_body("application/json", MAX_BODY_BYTES));
        assert!(!wants_body("text/plain", MAX_BODY_BYTES + 1));
        assert!(!wants_body("text/plain", 0));
        assert!(!wants_body("image/png", 10));
        assert!(!wants_body("", 10));
    }

    #[test]
    fn the_events_the_catalog_follows_are_read_from_receipts() {
        use ios_chain::block::{Event, ReceiptStatus};
        let cid = ContentId(ios_chain::hash::Hash([7; 32]));
        let owner = ios_chain::crypto::Keypair::from_secret([1; 32]).address();
        let data = ios_chain::codec::encode(&(cid, owner, 5u64, 9u64));
        let r = Receipt {
            tx: ios_chain::hash::Hash::ZERO,
            status: ReceiptStatus::Success,
            fee: 0,
            events: vec![
                Event {
                    module: STORAGE_MODULE.0,
                    kind: "receipt".into(),
                    data: data.clone(),
                },
                Event {
                    module: STORAGE_MODULE.0,
                    kind: "deal".into(),
                    data,
                },
                // The market's events: a listing, a buyer's rating of its
                // provider (side 0), a provider's rating of a buyer (side 1,
                // no listing changes), a verdict.
                Event {
                    module: MARKET_MODULE.0,
                    kind: "listing".into(),
                    data: ios_chain::codec::encode(&(Hash([7; 32]), owner)),
                },
                Event {
                    module: MARKET_MODULE.0,
                    kind: "rating".into(),
                    data: ios_chain::codec::encode(&(
                        Hash([8; 32]),
                        ios_market::order::Side::Buyer,
                        owner,
                        5u64,
                    )),
                },
                Event {
                    module: MARKET_MODULE.0,
                    kind: "rating".into(),
                    data: ios_chain::codec::encode(&(
                        Hash([8; 32]),
                        ios_market::order::Side::Provider,
                        Address([1; 32]),
                        5u64,
                    )),
                },
                Event {
                    module: MARKET_MODULE.0,
                    kind: "verdict".into(),
                    data: ios_chain::codec::encode(&(Hash([9; 32]), 5u32, Vec::<Address>::new())),
                },
            ],
        };
        let mut ev = Events::default();
        events_in(&[r], &mut ev);
        assert_eq!(ev.deals, vec![cid]);
        assert_eq!(ev.listings, vec![Hash([7; 32])]);
        assert_eq!(ev.providers, vec![owner]);
        assert_eq!(ev.verdicts, vec![Hash([9; 32])]);
    }
}
