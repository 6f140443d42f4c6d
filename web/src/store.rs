//! HUDS routes: upload (streamed to disk, encoded, held until its deal is
//! on chain, then pushed to the placed providers), object status, ranged
//! download (fragments fetched from providers, checked and decoded as they
//! stream), listing by owner, providers.

use crate::api::{parse_address, ApiError, ApiResult, Gateway};
use crate::types::{
    ObjectView, ProviderView, SearchHit, SearchParams, SearchResponse, StagedUpload, UploadProgress,
};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures::StreamExt;
use ios_chain::committee::read;
use ios_chain::types::ShardId;
use ios_node::huds::{self, Located, Staging};
use ios_storage::deal::Held;
use ios_storage::module::{keys, Deal, Provider, StorageParams};
use ios_storage::ContentId;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

/// How long an upload waits for its deal before the gateway drops it.
pub const DEAL_WAIT: Duration = Duration::from_secs(600);
/// Bytes of uploads a gateway holds at once.
pub const STAGING_BYTES: u64 = 64 << 30;

pub fn configure(scope: &mut web::ServiceConfig) {
    scope
        .route("/store/uploads", web::post().to(upload))
        .route("/store/objects", web::get().to(objects))
        .route("/store/objects/{cid}", web::get().to(object))
        .route("/store/objects/{cid}/content", web::get().to(content))
        .route("/store/search", web::get().to(search))
        .route("/store/providers", web::get().to(providers));
}

/// Sends a staged upload's fragments to their providers once its deal is
/// on chain (in the background).
pub fn spawn_push(node: ios_node::node::NodeHandle, staging: Arc<Staging>, content: ContentId) {
    tokio::spawn(async move {
        if let Err(e) = huds::push(node, staging, content, DEAL_WAIT).await {
            tracing::warn!(%content, error = %e, "upload not stored");
        }
    });
}

fn staging(g: &Gateway) -> Result<&Arc<Staging>, ApiError> {
    g.staging
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("this gateway takes no uploads"))
}

/// A content id given as `what`.
pub(crate) fn parse_cid(what: &str, s: &str) -> Result<ContentId, ApiError> {
    s.trim()
        .parse()
        .map_err(|e: ios_storage::StorageError| ApiError::bad_request(format!("{what}: {e}")))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
pub struct UploadQuery {
    /// Data fragments per segment (default: the network's, 4 on a devnet).
    pub data: Option<u8>,
    /// Parity fragments per segment (default 2).
    pub parity: Option<u8>,
}

#[utoipa::path(post, path = "/api/v1/store/uploads", tag = "storage",
    params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "The object's bytes (a private object: already encrypted by the client)"),
    responses(
        (status = 200, description = "Encoded and held: now make the deal (call StoreDeal)", body = StagedUpload),
        (status = 400, description = "Bad coding parameters", body = crate::types::ErrorBody),
        (status = 413, description = "Over the object size limit", body = crate::types::ErrorBody)))]
pub async fn upload(
    g: web::Data<Gateway>,
    q: web::Query<UploadQuery>,
    mut body: web::Payload,
) -> ApiResult<StagedUpload> {
    let staging = staging(&g)?.clone();
    let coding = huds::upload_coding(q.data.unwrap_or(4), q.parity.unwrap_or(2))
        .map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
    let max = StorageParams::default().max_object_bytes;
    let path = staging.temp_path();
    let mut file = std::fs::File::create(&path)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string()))?;
    let mut size = 0u64;
    let written: Result<(), ApiError> = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| ApiError::bad_request(format!("upload: {e}")))?;
            size += chunk.len() as u64;
            if size > max {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("objects are at most {max} bytes"),
                ));
            }
            file.write_all(&chunk).map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string())
            })?;
        }
        Ok(())
    }
    .await;
    drop(file);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    if size == 0 {
        let _ = std::fs::remove_file(&path);
        return Err(ApiError::bad_request("an empty object needs no storage"));
    }
    let st = staging.clone();
    let layout = web::block(move || st.stage_file(&path, coding, max))
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage",
                format!("{e:#}"),
            )
        })?;
    let content = layout.content;
    spawn_push(g.node.clone(), staging, content);
    Ok(web::Json(StagedUpload {
        content: content.to_hex(),
        size: layout.size,
        segments: layout.segments.len(),
        data: layout.coding.data,
        parity: layout.coding.parity,
        segment_bytes: layout.coding.segment_bytes,
        stored_bytes: layout.coding.stored_bytes(layout.size),
    }))
}

fn object_view(shard: ShardId, d: &Deal, upload: Option<huds::Progress>) -> ObjectView {
    let count = |v: &Vec<Vec<bool>>| v.iter().flatten().filter(|b| **b).count();
    ObjectView {
        content: d.layout.content.to_hex(),
        shard,
        owner: d.owner.to_string(),
        meta: (&d.meta).into(),
        size: d.layout.size,
        segments: d.layout.segments.len(),
        data: d.layout.coding.data,
        parity: d.layout.coding.parity,
        fragments: d.layout.segments.len() * d.layout.coding.fragments(),
        receipted: count(&d.receipted),
        lost: count(&d.lost),
        repairs: d.repairs,
        placement: d
            .placement
            .iter()
            .map(|seg| seg.iter().map(|a| a.to_string()).collect())
            .collect(),
        start_epoch: d.start_epoch,
        end_epoch: d.end_epoch,
        escrow: d.escrow.to_string(),
        price_per_gib_epoch: d.price_per_gib_epoch.to_string(),
        upload: upload.map(|p| UploadProgress {
            state: p.state,
            total: p.total,
            pushed: p.pushed,
            errors: p.errors,
        }),
    }
}

async fn locate(g: &Gateway, content: ContentId) -> Result<Located, ApiError> {
    huds::locate(&g.node, content)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no deal for {content} on this network")))
}

#[utoipa::path(get, path = "/api/v1/store/objects/{cid}", tag = "storage",
    params(("cid" = String, Path, description = "Content id (hex)")),
    responses(
        (status = 200, body = ObjectView),
        (status = 404, description = "No deal (an upload still waiting for its deal is 404 too)", body = crate::types::ErrorBody)))]
pub async fn object(g: web::Data<Gateway>, path: web::Path<String>) -> ApiResult<ObjectView> {
    let content = parse_cid("content id", &path)?;
    let progress = g.staging.as_ref().and_then(|s| s.progress(&content));
    match huds::locate(&g.node, content).await? {
        Some(l) => Ok(web::Json(object_view(l.shard, &l.deal, progress))),
        None => Err(ApiError::not_found(match progress {
            Some(p) => format!("{content} is uploaded but has no deal yet ({})", p.state),
            None => format!("no deal for {content} on this network"),
        })),
    }
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
pub struct ObjectsQuery {
    /// Only this owner's objects (bech32 address).
    pub owner: String,
}

#[utoipa::path(get, path = "/api/v1/store/objects", tag = "storage",
    params(ObjectsQuery),
    responses((status = 200, body = Vec<ObjectView>), (status = 400, body = crate::types::ErrorBody)))]
pub async fn objects(
    g: web::Data<Gateway>,
    q: web::Query<ObjectsQuery>,
) -> ApiResult<Vec<ObjectView>> {
    let owner = parse_address(&q.owner)?;
    let staging = g.staging.clone();
    let list = g
        .node
        .query(move |v| -> Result<Vec<ObjectView>, ApiError> {
            let mut out = Vec::new();
            for (s, r) in v.replicas.iter() {
                let store = r.store();
                let ids: Vec<ContentId> = read(store, keys::DEALS)
                    .map_err(|e| ApiError::chain(&e))?
                    .unwrap_or_default();
                for c in ids {
                    if let Some(d) =
                        read::<Deal>(store, &keys::deal(&c)).map_err(|e| ApiError::chain(&e))?
                    {
                        if d.owner == owner {
                            let p = staging.as_ref().and_then(|st| st.progress(&c));
                            out.push(object_view(*s, &d, p));
                        }
                    }
                }
            }
            Ok(out)
        })
        .await??;
    Ok(web::Json(list))
}

/// `Range: bytes=A-B` (one range; B inclusive) as `[from, to)` within `size`.
fn parse_range(h: &str, size: u64) -> Option<(u64, u64)> {
    let spec = h.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (from, to) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (size.saturating_sub(n), size)
        }
        (a, "") => (a.parse().ok()?, size),
        (a, b) => (
            a.parse().ok()?,
            b.parse::<u64>().ok()?.saturating_add(1).min(size),
        ),
    };
    (from < to && to <= size).then_some((from, to))
}

#[utoipa::path(get, path = "/api/v1/store/objects/{cid}/content", tag = "storage",
    params(("cid" = String, Path, description = "Content id (hex)"),
        ("Range" = Option<String>, Header, description = "One byte range, `bytes=A-B`")),
    responses(
        (status = 200, description = "The whole object, checked against its content id", content_type = "application/octet-stream"),
        (status = 206, description = "The range asked", content_type = "application/octet-stream"),
        (status = 404, body = crate::types::ErrorBody),
        (status = 416, description = "A range outside the object", body = crate::types::ErrorBody)))]
pub async fn content(
    g: web::Data<Gateway>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let content = parse_cid("content id", &path)?;
    let located = locate(&g, content).await?;
    let size = located.deal.layout.size;
    let mime = served_mime(&located.deal.meta);
    let range = match req.headers().get("range") {
        Some(h) => {
            let h = h
                .to_str()
                .map_err(|_| ApiError::bad_request("Range is not text"))?;
            Some(parse_range(h, size).ok_or_else(|| {
                ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "bad_range",
                    format!("{h:?} is not one range within {size} bytes"),
                )
            })?)
        }
        None => None,
    };
    let (from, to) = range.unwrap_or((0, size));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, String>>(2);
    let node = g.node.clone();
    tokio::spawn(async move {
        if let Err(e) = huds::read(&node, &located, from, to, &tx).await {
            tracing::warn!(%content, error = %format!("{e:#}"), "read failed");
            let _ = tx.send(Err(format!("{e:#}"))).await;
        }
    });
    // The first piece decides the status: an object that cannot be read
    // gets an error, not a 200 that breaks off.
    let first = match rx.recv().await {
        Some(Ok(b)) => b,
        Some(Err(e)) => {
            return Err(ApiError::unavailable(format!(
                "{content} cannot be read now: {e}"
            )))
        }
        None => Vec::new(),
    };
    let stream =
        futures::stream::once(async move { Ok(web::Bytes::from(first)) }).chain(tokio_stream(rx));
    let mut resp = if range.is_some() {
        let mut r = HttpResponse::PartialContent();
        r.insert_header(("content-range", format!("bytes {from}-{}/{size}", to - 1)));
        r
    } else {
        HttpResponse::Ok()
    };
    Ok(resp
        .content_type(mime)
        .insert_header(("x-content-type-options", "nosniff"))
        .insert_header(("content-security-policy", "sandbox; default-src 'none'"))
        .insert_header(("accept-ranges", "bytes"))
        .no_chunking(to - from)
        .streaming(stream))
}

/// The media type an object is served with: a public object's own, when
/// it is an image or plain text a browser may show inline (never one that
/// runs script on this origin, such as HTML or SVG); otherwise bytes.
fn served_mime(meta: &ios_storage::module::ObjectMeta) -> &'static str {
    const INLINE: &[&str] = &[
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "text/plain",
        "application/json",
    ];
    match INLINE.iter().find(|m| **m == meta.mime) {
        Some(m) if meta.public => m,
        _ => "application/octet-stream",
    }
}

/// The receiving end of a read as a body stream; an error ends the body
/// early (the client sees a short, failed transfer).
fn tokio_stream(
    rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, String>>,
) -> impl futures::Stream<Item = Result<web::Bytes, std::io::Error>> {
    futures::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Some(Ok(b)) => Some((Ok(web::Bytes::from(b)), rx)),
            Some(Err(e)) => Some((Err(std::io::Error::other(e)), rx)),
            None => None,
        }
    })
}

#[utoipa::path(get, path = "/api/v1/store/providers", tag = "storage",
    responses((status = 200, body = Vec<ProviderView>)))]
pub async fn providers(g: web::Data<Gateway>) -> ApiResult<Vec<ProviderView>> {
    let list = g
        .node
        .query(|v| -> Result<Vec<ProviderView>, ApiError> {
            let mut out = Vec::new();
            for (s, r) in v.replicas.iter() {
                let store = r.store();
                let all: Vec<ios_chain::crypto::Address> = read(store, keys::PROVIDERS)
                    .map_err(|e| ApiError::chain(&e))?
                    .unwrap_or_default();
                for a in all {
                    let Some(p) = read::<Provider>(store, &keys::provider(&a))
                        .map_err(|e| ApiError::chain(&e))?
                    else {
                        continue;
                    };
                    let held: Vec<Held> = read(store, &keys::held(&a))
                        .map_err(|e| ApiError::chain(&e))?
                        .unwrap_or_default();
                    out.push(ProviderView {
                        address: a.to_string(),
                        shard: *s,
                        peer_id: huds::endpoint(&p)
                            .map(|(peer, _)| peer.to_string())
                            .unwrap_or_default(),
                        addrs: p.endpoint.addrs.clone(),
                        capacity: p.capacity,
                        promised: p.promised,
                        held_bytes: held.iter().map(|h| h.len).sum(),
                        held_fragments: held.len(),
                        price_per_gib_epoch: p.price_per_gib_epoch.to_string(),
                        stake: p.stake.to_string(),
                        audits_passed: p.audits_passed,
                        audits_failed: p.audits_failed,
                        strikes: p.strikes,
                        failing: p.failing,
                        iost_earned: p.iost_earned.to_string(),
                        servi_earned: p.servi_earned,
                    });
                }
            }
            Ok(out)
        })
        .await??;
    Ok(web::Json(list))
}

#[utoipa::path(get, path = "/api/v1/store/search", tag = "storage",
    params(SearchParams),
    responses(
        (status = 200, description = "Public objects matching the query, best first, with snippets", body = SearchResponse),
        (status = 400, description = "Bad query, sort, tags or paging", body = crate::types::ErrorBody),
        (status = 503, description = "This gateway does not search", body = crate::types::ErrorBody)))]
pub async fn search(
    g: web::Data<Gateway>,
    p: web::Query<SearchParams>,
) -> ApiResult<SearchResponse> {
    let catalog = catalog_of(&g)?;
    let p = p.into_inner();
    // The canonical form (an address in capitals is the same address).
    let owner = p
        .owner
        .as_deref()
        .map(|o| parse_address(o).map(|a| a.to_string()))
        .transpose()?;
    let bad = |e: ios_node::search::SearchError| ApiError::bad_request(e.to_string());
    let q = ios_node::search::SearchQuery {
        text: p.q,
        mime: p.mime.filter(|m| !m.is_empty()),
        tags: p
            .tags
            .map(|t| {
                t.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        owner,
        min_size: p.min_size,
        max_size: p.max_size,
        sort: p
            .sort
            .as_deref()
            .unwrap_or("relevance")
            .parse()
            .map_err(bad)?,
        offset: p.offset,
        limit: p.limit.unwrap_or(20),
    };
    let status = catalog.status();
    let found = web::block(move || catalog.search(&q))
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?
        .map_err(search_failed)?;
    Ok(web::Json(SearchResponse {
        total: found.total,
        hits: found
            .hits
            .into_iter()
            .map(|h| SearchHit {
                content: h.cid,
                name: h.name,
                description: h.description,
                tags: h.tags,
                mime: h.mime,
                owner: h.owner,
                size: h.size,
                created: h.created,
                snippet: h.snippet,
            })
            .collect(),
        indexed_heights: indexed_heights(&status),
        texts_pending: status.bodies_pending,
    }))
}

/// The gateway's search catalog, or 503.
pub(crate) fn catalog_of(g: &Gateway) -> Result<ios_node::catalog::Catalog, ApiError> {
    g.catalog
        .clone()
        .ok_or_else(|| ApiError::unavailable("this gateway does not search"))
}

/// A failed search: a bad query is the client's (400), the rest the index's (500).
pub(crate) fn search_failed(e: ios_node::search::SearchError) -> ApiError {
    match e {
        ios_node::search::SearchError::BadQuery(_) => ApiError::bad_request(e.to_string()),
        other => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "search",
            other.to_string(),
        ),
    }
}

/// How far the catalog has read each shard, for search answers.
pub(crate) fn indexed_heights(
    status: &ios_node::catalog::CatalogStatus,
) -> std::collections::BTreeMap<String, u64> {
    status
        .heights
        .iter()
        .map(|(s, h)| (s.to_string(), *h))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_parse_within_the_object() {
        assert_eq!(parse_range("bytes=0-99", 1000), Some((0, 100)));
        assert_eq!(parse_range("bytes=900-", 1000), Some((900, 1000)));
        assert_eq!(parse_range("bytes=-10", 1000), Some((990, 1000)));
        assert_eq!(parse_range("bytes=990-5000", 1000), Some((990, 1000)));
        assert_eq!(parse_range("bytes=1000-", 1000), None);
        assert_eq!(parse_range("bytes=5-1", 1000), None);
        assert_eq!(parse_range("items=0-1", 1000), None);
        assert_eq!(parse_range("bytes=a-b", 1000), None);
    }
}
