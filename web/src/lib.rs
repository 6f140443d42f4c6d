//! ios-web: the gateway's REST API (actix-web), its OpenAPI document, and
//! the typed client the CLI uses, and the web UI ([`ui`]).
//!
//! Only this crate defines HTTP routes and the JSON shapes of the API
//! ([`types`]); the CLI reaches a node only through [`client::Client`].

pub mod api;
pub mod bench;
pub mod client;
pub mod demo;
pub mod events;
pub mod limit;
pub mod load;
pub mod market;
pub mod metrics;
pub mod store;
pub mod types;
pub mod ui;

pub use ios_chain::hex;
pub use ios_node as node;

use anyhow::{Context, Result};
use ios_node::node::NodeHandle;
use std::net::SocketAddr;

/// The default address of a gateway's API (the devnet's gateway).
pub const DEFAULT_NODE_URL: &str = "http://127.0.0.1:8700";

/// A running API server.
pub struct ApiServer {
    /// Where it listens (a port 0 request becomes the real port).
    pub addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    catalog: Option<ios_node::catalog::Catalog>,
    gateway: actix_web::web::Data<api::Gateway>,
}

impl ApiServer {
    /// What the handlers share (for calling them without HTTP).
    pub fn gateway(&self) -> actix_web::web::Data<api::Gateway> {
        self.gateway.clone()
    }

    /// Stops accepting, lets requests in flight finish, stops the search
    /// catalog, and waits.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        let _ = self.task.await;
        if let Some(c) = self.catalog {
            c.stop().await;
        }
    }
}

/// The access log (`ios_web::access` at info: client, request line,
/// status, milliseconds), costing nothing when that level is off.
async fn access_log(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    if !tracing::enabled!(target: "ios_web::access", tracing::Level::INFO) {
        return next.call(req).await.map(|r| r.map_into_boxed_body());
    }
    let start = std::time::Instant::now();
    let client = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let line = format!("{} {} {:?}", req.method(), req.uri(), req.version());
    let res = next.call(req).await?;
    tracing::info!(
        target: "ios_web::access",
        "{client} \"{line}\" {} {:.3}ms",
        res.status().as_u16(),
        start.elapsed().as_secs_f64() * 1e3
    );
    Ok(res.map_into_boxed_body())
}

/// Serves the API for `node` on `addr` (on the current tokio runtime),
/// with the default per-client rate limit.
pub async fn serve(node: NodeHandle, addr: SocketAddr) -> Result<ApiServer> {
    serve_with(node, addr, limit::RateLimitConfig::default()).await
}

/// [`serve`] with a chosen per-client rate limit.
pub async fn serve_with(
    node: NodeHandle,
    addr: SocketAddr,
    rate: limit::RateLimitConfig,
) -> Result<ApiServer> {
    let gateway = actix_web::web::Data::new(api::Gateway::new(node)?);
    let limiter = actix_web::web::Data::new(limit::RateLimiter::new(rate));
    let catalog = gateway.catalog.clone();
    let shared = gateway.clone();
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(gateway.clone())
            .app_data(limiter.clone())
            .wrap(actix_web::middleware::from_fn(ui::csrf))
            .wrap(actix_web::middleware::from_fn(limit::timeout))
            .wrap(actix_web::middleware::from_fn(limit::limit))
            .wrap(actix_web::middleware::from_fn(access_log))
            .configure(api::configure)
            .configure(ui::configure)
    })
    .workers(2)
    .client_request_timeout(std::time::Duration::from_secs(10))
    .disable_signals()
    .bind(addr)
    .with_context(|| format!("binding the API to {addr} (is another devnet or node using it?)"))?;
    let bound = server
        .addrs()
        .first()
        .copied()
        .context("the API server bound no address")?;
    let server = server.run();
    let handle = server.handle();
    let task = tokio::spawn(server);
    Ok(ApiServer {
        addr: bound,
        handle,
        task,
        catalog,
        gateway: shared,
    })
}
