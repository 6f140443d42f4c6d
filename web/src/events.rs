//! Live updates: server-sent events of every block this node finalizes.

use crate::api::Gateway;
use actix_web::{web, HttpResponse};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// A comment line this often keeps idle connections (and proxies) open.
const KEEPALIVE: Duration = Duration::from_secs(15);

#[utoipa::path(get, path = "/api/v1/events", tag = "chain",
    responses((status = 200, content_type = "text/event-stream",
        description = "Server-sent events: `commit` with {shard, height, epoch, txs} for every block this node finalizes; `lagged` with the number of events a slow reader missed")))]
pub async fn events(g: web::Data<Gateway>) -> HttpResponse {
    let rx = g.node.commits();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let text = match tokio::time::timeout(KEEPALIVE, rx.recv()).await {
            Err(_) => ": keepalive\n\n".to_string(),
            Ok(Ok(ev)) => {
                let data = serde_json::json!({
                    "shard": ev.shard,
                    "height": ev.height,
                    "epoch": ev.epoch,
                    "txs": ev.txs.iter().map(|t| t.to_hex()).collect::<Vec<_>>(),
                });
                format!("event: commit\ndata: {data}\n\n")
            }
            Ok(Err(RecvError::Lagged(n))) => format!("event: lagged\ndata: {n}\n\n"),
            Ok(Err(RecvError::Closed)) => return None,
        };
        Some((Ok::<_, std::io::Error>(web::Bytes::from(text)), rx))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(stream)
}
