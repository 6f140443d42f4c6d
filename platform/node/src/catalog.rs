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
//! On disk: the tantivy index in `<data>/search` and the cursor (height and
//! epoch seen per shard, bodies still to fetch) in `<data>/catalog.json`,
//! written after each index commit (and every 10 s while blocks bring
//! nothing to index): a crash replays some blocks, and indexing an object
//! twice is harmless.

use crate::node::NodeHandle;
use crate::search::{ObjectDoc, SearchIndex, SearchQuery, SearchReader, SearchResults};
use anyhow::{Context, Result};
use ios_chain::block::Receipt;
use ios_chain::state::StateStore;
use ios_chain::types::{Epoch, Height, ShardId};
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
/// The cursor's format; another one (an older node) means: rebuild.
const CURSOR_VERSION: u32 = 2;

/// Where a node keeps its catalog.
pub fn index_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("search")
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

/// Content ids of the deals made in these blocks' receipts.
fn deals_made(receipts: &[Receipt]) -> Vec<ContentId> {
    let mut out = Vec::new();
    for r in receipts {
        for e in &r.events {
            if e.module == STORAGE_MODULE.0 && e.kind == "deal" {
                // (content, owner, cost, end epoch): the content id leads.
                if let Some(b) = e.data.get(..32) {
                    let mut h = [0u8; 32];
                    h.copy_from_slice(b);
                    out.push(ContentId(ios_chain::hash::Hash(h)));
                }
            }
        }
    }
    out
}

/// Opens the index in `data_dir`, starting over (with a fresh cursor) if
/// it is of another version or damaged.
fn open_index(data_dir: &Path) -> Result<(SearchIndex, Cursor)> {
    let dir = index_dir(data_dir);
    let cursor = Cursor::load(data_dir);
    if cursor.version == CURSOR_VERSION {
        match SearchIndex::open(&dir) {
            Ok(ix) => return Ok((ix, cursor)),
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
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let ix = SearchIndex::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
    Ok((ix, Cursor::default()))
}

/// What `ios reindex` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rebuilt {
    /// Public objects indexed, per account shard.
    pub objects: BTreeMap<ShardId, usize>,
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
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let mut ix = SearchIndex::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
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
        progress(shard, docs.len());
        out.objects.insert(shard, docs.len());
        cursor.heights.insert(shard, head.height);
    }
    ix.commit()?;
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
    status: Arc<Mutex<CatalogStatus>>,
    stop: tokio::sync::watch::Sender<bool>,
    feeder: Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Catalog {
    /// Opens the node's catalog (rebuilding it if needed) and starts its
    /// feeder on the current tokio runtime.
    pub fn start(node: NodeHandle) -> Result<Catalog> {
        let (index, cursor) = open_index(&node.data_dir)?;
        let status = Arc::new(Mutex::new(CatalogStatus {
            docs: index.num_docs(),
            heights: cursor.heights.clone(),
            bodies_pending: cursor.bodies.len(),
            error: None,
        }));
        let reader = index.reader();
        let bodies = cursor
            .bodies
            .iter()
            .filter_map(|b| parse_body_key(b))
            .map(|k| (k, Retry::default()))
            .collect();
        let feeder = Feeder {
            node,
            index: Some(index),
            cursor,
            bodies,
            status: status.clone(),
            saved: tokio::time::Instant::now(),
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(feeder.run(stopped));
        Ok(Catalog {
            reader,
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
}

struct Feeder {
    node: NodeHandle,
    /// Taken while a blocking task writes it.
    index: Option<SearchIndex>,
    cursor: Cursor,
    bodies: BTreeMap<(ShardId, ContentId), Retry>,
    status: Arc<Mutex<CatalogStatus>>,
    /// When the cursor was last written.
    saved: tokio::time::Instant,
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
    Read(Height, Vec<ObjectDoc>),
}

/// What reading a shard's receipts gave.
enum Scanned {
    /// Blocks up to this height read; these content ids had deals made.
    Made(Height, Vec<ContentId>),
    /// Read whole at this height.
    Whole(Height, Vec<ObjectDoc>),
    /// Blocks were pruned meanwhile: to be read whole.
    Gone,
}

/// What one shard's look found.
enum Found {
    /// Blocks up to this height read; these deals were made in them.
    Events(Height, Vec<Deal>),
    /// The shard read whole at this height.
    Whole(Height, Vec<ObjectDoc>),
}

impl Feeder {
    async fn run(mut self, mut stopped: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = stopped.changed() => return,
            }
            match self.look().await {
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
                        _ => Plan::Read(tip, docs_in(store, shard)?),
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
                        Plan::Read(h, docs) => Scanned::Whole(h, docs),
                        Plan::Scan { from, to, reader } => {
                            let mut made = Vec::new();
                            let mut gone = false;
                            for h in from..=to {
                                match reader.receipts(h)? {
                                    Some(receipts) => made.extend(deals_made(&receipts)),
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
        let found = self
            .node
            .query(move |v| -> Result<Vec<(ShardId, Epoch, Found)>> {
                let mut out = Vec::new();
                for (shard, epoch, s) in scanned {
                    let Some(r) = v.replicas.get(&shard) else {
                        continue;
                    };
                    let store = r.store();
                    let found = match s {
                        Scanned::Whole(h, docs) => Found::Whole(h, docs),
                        Scanned::Gone => Found::Whole(
                            store.head().map_or(0, |h| h.height),
                            docs_in(store, shard)?,
                        ),
                        Scanned::Made(h, made) => {
                            let mut deals = Vec::new();
                            for cid in made {
                                if let Some(d) =
                                    ios_chain::committee::read::<Deal>(store, &keys::deal(&cid))?
                                {
                                    deals.push(d);
                                }
                            }
                            Found::Events(h, deals)
                        }
                    };
                    out.push((shard, epoch, found));
                }
                Ok(out)
            })
            .await??;

        let mut batch = Batch::default();
        let mut cursor = self.cursor.clone();
        for (shard, epoch, f) in found {
            let docs = match f {
                Found::Whole(h, docs) => {
                    info!(
                        shard,
                        height = h,
                        objects = docs.len(),
                        "catalog: read the shard's objects whole"
                    );
                    batch.rescanned.push(shard);
                    cursor.heights.insert(shard, h);
                    docs
                }
                Found::Events(h, deals) => {
                    cursor.heights.insert(shard, h);
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
        let changed =
            !batch.upserts.is_empty() || !batch.rescanned.is_empty() || !batch.expire.is_empty();
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
        if let Some(ix) = &self.index {
            st.docs = ix.num_docs();
        }
        Ok(())
    }

    /// Writes the batch and commits the index (on a blocking thread), then
    /// the cursor.
    async fn apply(&mut self, batch: Batch, cursor: Cursor) -> Result<()> {
        let mut ix = self.index.take().context("the search index is in use")?;
        let data_dir = self.node.data_dir.clone();
        let (ix, res) = tokio::task::spawn_blocking(move || {
            let res = (|| -> Result<()> {
                for s in &batch.rescanned {
                    ix.remove_shard(*s);
                }
                for d in &batch.upserts {
                    ix.upsert(d)?;
                }
                // After the upserts: a delete reaches only documents added before it.
                for (s, e) in &batch.expire {
                    ix.expire(*s, *e)?;
                }
                ix.commit()?;
                cursor.save(&data_dir)
            })();
            if res.is_err() {
                ix.rollback();
            }
            (ix, res.map(|()| cursor))
        })
        .await
        .context("the catalog's writer panicked")?;
        self.index = Some(ix);
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
        let pieces = located.deal.layout.segments.len() + 1;
        let (tx, mut rx) = tokio::sync::mpsc::channel(pieces);
        crate::huds::read(&self.node, &located, 0, size, &tx).await?;
        drop(tx);
        let mut bytes = Vec::with_capacity(size as usize);
        while let Some(piece) = rx.recv().await {
            bytes.extend(piece.map_err(|e| anyhow::anyhow!(e))?);
        }
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
    fn the_content_id_leads_a_deal_event() {
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
            ],
        };
        assert_eq!(deals_made(&[r]), vec![cid]);
    }
}
