//! The REST API under `/api/v1`, served by a gateway node, and its OpenAPI
//! document at `/api/openapi.json` (generated from these handlers).
//!
//! Every route answers JSON; every error is `{error: {code, message}}` with
//! a 4xx status for the caller's mistakes and 503 when the node cannot
//! answer (stopped, shard not served). Bodies are limited to
//! [`MAX_BODY_BYTES`].

use crate::types::*;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use ios_chain::atomix::{CrossInput, CrossTransfer};
use ios_chain::committee::read_account;
use ios_chain::crypto::{Address, Signature};
use ios_chain::hash::Hash;
use ios_chain::hex;
use ios_chain::ledger::{LedgerCall, LedgerModule, Token};
use ios_chain::relayer::AtomixState;
use ios_chain::replica::Replica;
use ios_chain::shard::BEACON;
use ios_chain::tx::{SignedTransaction, Transaction, MAX_TX_BYTES};
use ios_chain::types::{format_iost, Amount, ShardId};
use ios_node::node::{NodeHandle, View};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use utoipa::OpenApi;

/// Largest request body (a signed transaction is at most 64 KiB, hex doubles it).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Blocks a built transaction stays valid for by default.
pub const DEFAULT_EXPIRES_IN: u64 = 600;
/// The longest validity a built transaction may ask for.
pub const MAX_EXPIRES_IN: u64 = 100_000;
/// Output-shard blocks a cross-shard transfer may take to commit before
/// it can be aborted (and its lock refunded).
pub const ATOMIX_EXPIRY_BLOCKS: u64 = 100;

/// A failed request: an HTTP status, a machine-readable code, a message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    pub fn too_many_requests(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
    }

    /// A transaction the chain refuses: the chain's own code, status 422
    /// (400 for input that cannot be a transaction at all).
    pub fn chain(e: &ios_chain::error::ChainError) -> ApiError {
        ApiError::new(status_of(e.code()), e.code(), e.to_string())
    }
}

/// The HTTP status of a chain error, by its code: the client's mistake
/// (400), a well-formed request the chain refuses (422), the node busy or
/// not ready (503), the node's own failure (500).
fn status_of(code: &str) -> StatusCode {
    match code {
        "malformed" | "too_large" | "invalid_address" | "bad_signature" | "wrong_chain_id"
        | "unknown_module" => StatusCode::BAD_REQUEST,
        "unavailable" | "busy" => StatusCode::SERVICE_UNAVAILABLE,
        "storage" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(ErrorBody {
            error: ErrorDetail {
                code: self.code.clone(),
                message: self.message.clone(),
            },
        })
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        ApiError::unavailable(format!("{e:#}"))
    }
}

pub(crate) type ApiResult<T> = Result<web::Json<T>, ApiError>;

/// What the handlers share: the node they answer for.
#[derive(Clone)]
pub struct Gateway {
    pub node: NodeHandle,
    /// HUDS uploads waiting for their deals (None: no uploads taken).
    pub staging: Option<Arc<ios_node::huds::Staging>>,
    /// HUDS search, fed from the chain (None: this gateway does not search).
    pub catalog: Option<ios_node::catalog::Catalog>,
}

impl Gateway {
    /// A gateway for `node`, holding uploads in `<node data>/uploads` (the
    /// ones a restart interrupted are pushed again) and running the search
    /// catalog in `<node data>/search` (call on a tokio runtime: the
    /// pushes and the catalog's feeder start on it).
    pub fn new(node: NodeHandle) -> anyhow::Result<Gateway> {
        let staging = ios_node::huds::Staging::open(
            &node.data_dir.join("uploads"),
            crate::store::STAGING_BYTES,
        )?;
        let staging = Arc::new(staging);
        // Uploads a restart interrupted go on where they were.
        for content in staging.pending() {
            tracing::info!(%content, "taking up a staged upload again");
            crate::store::spawn_push(node.clone(), staging.clone(), content);
        }
        let catalog = ios_node::catalog::Catalog::start(node.clone())?;
        Ok(Gateway {
            node,
            staging: Some(staging),
            catalog: Some(catalog),
        })
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "IOS gateway API",
        description = "Chain and shard status, accounts, blocks and transactions of an IOS network, served by a gateway node. Amounts are strings of base units (1 IOST = 10^8); addresses are bech32; hashes and bytes are hex. Errors are {error: {code, message}}."
    ),
    paths(
        chain_status,
        account,
        block,
        latest_block,
        build_tx,
        submit_tx,
        tx_status,
        atomix_status,
        atomix_list,
        epochs,
        validators,
        peers,
        crate::events::events,
        crate::store::upload,
        crate::store::object,
        crate::store::objects,
        crate::store::content,
        crate::store::search,
        crate::store::providers,
        crate::market::search,
        crate::market::listings,
        crate::market::listing,
        crate::market::orders,
        crate::market::order,
        crate::market::dispute,
        crate::market::disputes,
        crate::market::reputation,
        crate::market::trust
    )
)]
pub struct ApiDoc;

/// Registers the API routes and the OpenAPI document on an actix app.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(MAX_BODY_BYTES)
            .error_handler(|e, _| ApiError::bad_request(format!("invalid JSON body: {e}")).into()),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|e, _| ApiError::bad_request(format!("invalid path: {e}")).into()),
    )
    .app_data(
        web::QueryConfig::default()
            .error_handler(|e, _| ApiError::bad_request(format!("invalid query: {e}")).into()),
    )
    .route("/api/openapi.json", web::get().to(openapi))
    .route("/metrics", web::get().to(metrics))
    .service(
        web::scope("/api/v1")
            .route("/status", web::get().to(chain_status))
            .route("/accounts/{address}", web::get().to(account))
            .route("/shards/{shard}/blocks/latest", web::get().to(latest_block))
            .route("/shards/{shard}/blocks/{height}", web::get().to(block))
            .route("/tx/build", web::post().to(build_tx))
            .route("/tx", web::post().to(submit_tx))
            .route("/tx/{id}", web::get().to(tx_status))
            .route("/atomix", web::get().to(atomix_list))
            .route("/atomix/{id}", web::get().to(atomix_status))
            .route("/epochs", web::get().to(epochs))
            .route("/validators", web::get().to(validators))
            .route("/peers", web::get().to(peers))
            .route("/events", web::get().to(crate::events::events))
            .configure(crate::store::configure)
            .configure(crate::market::configure)
            .default_service(web::to(|| async {
                ApiError::not_found("no such API route (see /api/openapi.json)").error_response()
            })),
    );
}

/// Prometheus metrics of this node (text format 0.0.4).
async fn metrics(g: web::Data<Gateway>) -> Result<HttpResponse, ApiError> {
    let text = g.node.query(crate::metrics::render).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

pub(crate) fn replica<'a>(v: &'a View<'_>, shard: ShardId) -> Result<&'a Replica, ApiError> {
    v.replicas.get(&shard).ok_or_else(|| {
        ApiError::unavailable(format!(
            "this node does not run shard {shard}{}",
            if v.syncing.contains(&shard) {
                " yet (it is syncing)"
            } else {
                ""
            }
        ))
    })
}

pub fn parse_address(s: &str) -> Result<Address, ApiError> {
    s.parse()
        .map_err(|e| ApiError::bad_request(format!("invalid address {s:?}: {e}")))
}

/// A 32-byte hash (an id, a commitment, a salt) given as `what`, in hex.
pub(crate) fn parse_hash(what: &str, s: &str) -> Result<Hash, ApiError> {
    Hash::from_hex(s.trim())
        .ok_or_else(|| ApiError::bad_request(format!("{what} must be 64 hex digits, got {s:?}")))
}

pub(crate) fn parse_units(what: &str, s: &str) -> Result<Amount, ApiError> {
    s.trim().parse().map_err(|_| {
        ApiError::bad_request(format!(
            "{what} must be a whole number of base units as a string (1 IOST = 100000000), got {s:?}"
        ))
    })
}

/// The shard that holds `address`'s account (see `ios_node::node::account_shard`).
pub fn account_shard(v: &View<'_>, shards: u16, address: &Address) -> ShardId {
    ios_node::node::account_shard(v.replicas, shards, address)
}

#[utoipa::path(get, path = "/api/v1/status", tag = "chain",
    responses((status = 200, description = "The network as this node sees it", body = ChainStatus)))]
pub async fn chain_status(g: web::Data<Gateway>) -> ApiResult<ChainStatus> {
    let s = g
        .node
        .query(|v| ChainStatus {
            chain_id: v.genesis.params.chain_id.0.clone(),
            shards: v.genesis.params.shards,
            epoch: v.epochs.latest(),
            peer_id: v.peer_id.to_string(),
            peers: v.peers,
            finalized_txs: v.metrics.finalized_txs.load(Ordering::Relaxed),
            fast_syncs: v.metrics.fast_syncs.load(Ordering::Relaxed),
            syncing: v.syncing.clone(),
            shard_status: v
                .replicas
                .iter()
                .map(|(s, r)| {
                    let head = r.store().head();
                    ShardStatus {
                        shard: *s,
                        height: head.map_or(0, |h| h.height),
                        head: head.map(|h| h.block.to_hex()).unwrap_or_default(),
                        state_root: r.store().state_root().to_hex(),
                        epoch: r.committee().epoch,
                        committee: r
                            .committee()
                            .members
                            .iter()
                            .map(|a| a.to_string())
                            .collect(),
                        mempool: r.mempool_len(),
                        time_ms: head.map_or(0, |h| h.time),
                    }
                })
                .collect(),
        })
        .await?;
    Ok(web::Json(s))
}

#[utoipa::path(get, path = "/api/v1/accounts/{address}", tag = "chain",
    params(("address" = String, Path, description = "bech32 address")),
    responses(
        (status = 200, description = "The account on the shard that holds it", body = AccountView),
        (status = 400, description = "Not an address", body = ErrorBody)))]
pub async fn account(g: web::Data<Gateway>, path: web::Path<String>) -> ApiResult<AccountView> {
    let address = parse_address(&path)?;
    let view = g
        .node
        .query(move |v| -> Result<AccountView, ApiError> {
            let shard = account_shard(v, v.genesis.params.shards, &address);
            let r = replica(v, shard)?;
            let a = read_account(r.store(), &address).map_err(|e| ApiError::chain(&e))?;
            Ok(AccountView {
                address: address.to_string(),
                shard,
                balance: a.balance.to_string(),
                servi: a.servi,
                nonce: a.nonce,
                next_nonce: r.next_nonce(&address).unwrap_or(a.nonce),
                stake: a.stake.to_string(),
                unbonding: a.unbonding.to_string(),
                reputation: a.reputation,
                jailed: a.jailed,
            })
        })
        .await??;
    Ok(web::Json(view))
}

fn block_view(r: &Replica, shard: ShardId, height: u64) -> Result<BlockView, ApiError> {
    let (b, cert) = r
        .store()
        .block(height)
        .map_err(|e| ApiError::chain(&e))?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "shard {shard} has no finalized block {height} here (latest {}; old bodies may be pruned)",
                r.height().saturating_sub(1)
            ))
        })?;
    let receipts = r
        .store()
        .receipts(height)
        .map_err(|e| ApiError::chain(&e))?
        .unwrap_or_default();
    let h = &b.header;
    Ok(BlockView {
        shard,
        height,
        hash: h.hash().to_hex(),
        prev: h.prev.to_hex(),
        epoch: h.epoch,
        round: h.round,
        proposer: h.proposer.to_string(),
        time_ms: h.time,
        state_root: h.state_root.to_hex(),
        signers: cert.signatures.len(),
        txs: b
            .txs
            .iter()
            .enumerate()
            .map(|(i, t)| BlockTx {
                id: t.id().to_hex(),
                sender: t.tx.sender.to_string(),
                kind: LedgerModule::decode(&t.tx.call)
                    .map_or("other", |c| c.kind())
                    .to_string(),
                status: match receipts.get(i).map(|r| &r.status) {
                    Some(ios_chain::block::ReceiptStatus::Success) => "success".into(),
                    Some(ios_chain::block::ReceiptStatus::Failed { code, .. }) => code.clone(),
                    None => "unknown".into(),
                },
            })
            .collect(),
        // A receipt past the transactions' carries the block's own events.
        block_events: receipts
            .get(b.txs.len())
            .map(|r| r.events.iter().map(|e| e.kind.clone()).collect())
            .unwrap_or_default(),
    })
}

#[utoipa::path(get, path = "/api/v1/shards/{shard}/blocks/{height}", tag = "chain",
    params(("shard" = u16, Path, description = "0 is the beacon"), ("height" = u64, Path)),
    responses(
        (status = 200, description = "A finalized block", body = BlockView),
        (status = 404, description = "Not finalized here (yet), or pruned", body = ErrorBody)))]
pub async fn block(g: web::Data<Gateway>, path: web::Path<(u16, u64)>) -> ApiResult<BlockView> {
    let (shard, height) = path.into_inner();
    let b = g
        .node
        .query(move |v| block_view(replica(v, shard)?, shard, height))
        .await??;
    Ok(web::Json(b))
}

#[utoipa::path(get, path = "/api/v1/shards/{shard}/blocks/latest", tag = "chain",
    params(("shard" = u16, Path, description = "0 is the beacon")),
    responses((status = 200, description = "The newest finalized block", body = BlockView)))]
pub async fn latest_block(g: web::Data<Gateway>, path: web::Path<u16>) -> ApiResult<BlockView> {
    let shard = path.into_inner();
    let b = g
        .node
        .query(move |v| {
            let r = replica(v, shard)?;
            let h = r.store().head().map_or(0, |h| h.height);
            block_view(r, shard, h)
        })
        .await??;
    Ok(web::Json(b))
}

fn ledger_call(c: &CallRequest) -> Result<LedgerCall, ApiError> {
    Ok(match c {
        CallRequest::Transfer { to, amount, token } => LedgerCall::Transfer {
            to: parse_address(to)?,
            amount: parse_units("amount", amount)?,
            token: match token.as_deref().unwrap_or("iost") {
                "iost" | "IOST" => Token::Iost,
                "servi" | "Servi" => Token::Servi,
                t => {
                    return Err(ApiError::bad_request(format!(
                        "unknown token {t:?} (iost or servi)"
                    )))
                }
            },
        },
        CallRequest::Stake { amount } => LedgerCall::Stake {
            amount: parse_units("amount", amount)?,
        },
        CallRequest::Unstake { amount } => LedgerCall::Unstake {
            amount: parse_units("amount", amount)?,
        },
        CallRequest::StoreDeal { .. } => {
            return Err(ApiError::bad_request("a storage deal is not a ledger call"))
        }
        CallRequest::Market { .. } => {
            return Err(ApiError::bad_request("a market call is not a ledger call"))
        }
    })
}

fn describe(call: &LedgerCall) -> String {
    match call {
        LedgerCall::Transfer { to, amount, token } => match token {
            Token::Iost => format!("send {} to {to}", format_iost(*amount)),
            Token::Servi => {
                format!("send {amount} Servi to {to} (Servi cannot be sent: the chain will refuse)")
            }
        },
        LedgerCall::Stake { amount } => format!("bond {} as validator stake", format_iost(*amount)),
        LedgerCall::Unstake { amount } => format!("start unbonding {}", format_iost(*amount)),
        LedgerCall::AtomixLock { x, .. } => format!(
            "send {} to {} on shard {} (cross-shard: locked here, paid there by Atomix; refunded if not committed by its height {})",
            format_iost(x.total().unwrap_or(0)),
            x.to,
            x.output_shard,
            x.expires_at
        ),
        other => other.kind().to_string(),
    }
}

#[utoipa::path(post, path = "/api/v1/tx/build", tag = "transactions",
    request_body = BuildTxRequest,
    responses(
        (status = 200, description = "Canonical bytes to sign, with a readable summary", body = BuiltTx),
        (status = 400, description = "Invalid request", body = ErrorBody)))]
async fn build_tx(g: web::Data<Gateway>, req: web::Json<BuildTxRequest>) -> ApiResult<BuiltTx> {
    let req = req.into_inner();
    let sender = parse_address(&req.sender)?;
    if let CallRequest::StoreDeal {
        content,
        epochs,
        price_per_gib_epoch,
        meta,
    } = &req.call
    {
        let meta: ios_storage::module::ObjectMeta = meta.clone().into();
        meta.validate().map_err(ApiError::bad_request)?;
        let content: ios_storage::ContentId = content
            .parse()
            .map_err(|e: ios_storage::StorageError| ApiError::bad_request(e.to_string()))?;
        let layout = g
            .staging
            .as_ref()
            .and_then(|s| s.layout(&content))
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "{content} was not uploaded to this gateway (POST /api/v1/store/uploads first)"
                ))
            })?;
        let price = match price_per_gib_epoch {
            Some(p) => parse_units("price_per_gib_epoch", p)?,
            None => ios_node::huds::ProviderConfig::default().price_per_gib_epoch,
        };
        let cost = ios_storage::deal::storage_cost(
            layout.coding.stored_bytes(layout.size),
            price,
            *epochs,
        )
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let listed = if meta.public {
            "public: listed in search"
        } else {
            "not listed"
        };
        let what = format!(
            "store {:?} {content} ({} bytes, {}+{}, {listed}) for {epochs} epochs at up to {} per GiB-epoch: {} into escrow",
            meta.name,
            layout.size,
            layout.coding.data,
            layout.coding.parity,
            format_iost(price),
            format_iost(cost)
        );
        let call = ios_storage::module::StorageCall::CreateDeal {
            layout,
            epochs: *epochs,
            price_per_gib_epoch: price,
            meta,
        }
        .to_call();
        return module_tx(&g, &req, sender, move |_, shard, _| {
            Ok(Routed {
                shard,
                call,
                what,
                atomix: None,
            })
        })
        .await;
    }
    if let CallRequest::Market { call } = &req.call {
        let (call, what) = crate::market::market_call(call)?;
        return module_tx(&g, &req, sender, move |v, home, nonce| {
            crate::market::route(v, home, sender, nonce, call, what)
        })
        .await;
    }
    let call = ledger_call(&req.call)?;
    let fee = asked_fee(&req)?;
    let built = g
        .node
        .query(move |v| -> Result<BuiltTx, ApiError> {
            let params = &v.genesis.params;
            let shard = match call {
                LedgerCall::Stake { .. } | LedgerCall::Unstake { .. } => BEACON,
                _ => account_shard(v, params.shards, &sender),
            };
            let r = replica(v, shard)?;
            let nonce = nonce_for(r, &sender, req.nonce)?;
            // A transfer to an account on another shard goes through Atomix:
            // this transaction locks the amount on the sender's shard;
            // relayers carry the commit to the recipient's shard.
            let mut atomix = None;
            let call = match call {
                LedgerCall::Transfer {
                    to,
                    amount,
                    token: Token::Iost,
                } if account_shard(v, params.shards, &to) != shard => {
                    let output_shard = account_shard(v, params.shards, &to);
                    let out_height = replica(v, output_shard)?.height();
                    let x = CrossTransfer {
                        inputs: vec![CrossInput {
                            shard,
                            from: sender,
                            amount,
                        }],
                        output_shard,
                        to,
                        expires_at: out_height + ATOMIX_EXPIRY_BLOCKS,
                        // The sender's nonce makes each of its transfers distinct.
                        salt: nonce,
                        call: None,
                    };
                    atomix = Some(x.id().to_hex());
                    LedgerCall::AtomixLock {
                        x: Box::new(x),
                        input: 0,
                    }
                }
                other => other,
            };
            let what = describe(&call);
            finish_tx(
                v,
                r,
                shard,
                sender,
                nonce,
                fee,
                req.expires_in,
                LedgerModule::call(&call),
                what,
                atomix,
            )
        })
        .await??;
    Ok(web::Json(built))
}

/// Where a module transaction runs and what it carries: its call as
/// asked, or wrapped in the Atomix lock that carries it to another shard.
pub struct Routed {
    pub shard: ShardId,
    pub call: ios_chain::tx::Call,
    pub what: String,
    /// The id of the cross-shard transfer the transaction starts, if any.
    pub atomix: Option<Hash>,
}

/// Builds a module transaction from `sender`. `route` (run on the node's
/// task with the sender's home shard and the nonce the request asks for)
/// says where it runs; the nonce is then that shard's next one for the
/// sender unless the request names it.
async fn module_tx(
    g: &Gateway,
    req: &BuildTxRequest,
    sender: Address,
    route: impl FnOnce(&View<'_>, ShardId, Option<u64>) -> Result<Routed, ApiError> + Send + 'static,
) -> ApiResult<BuiltTx> {
    let fee = asked_fee(req)?;
    let (nonce, expires_in) = (req.nonce, req.expires_in);
    let built = g
        .node
        .query(move |v| -> Result<BuiltTx, ApiError> {
            let home = account_shard(v, v.genesis.params.shards, &sender);
            let Routed {
                shard,
                call,
                what,
                atomix,
            } = route(v, home, nonce)?;
            let r = replica(v, shard)?;
            let nonce = nonce_for(r, &sender, nonce)?;
            let atomix = atomix.map(|x| x.to_hex());
            finish_tx(
                v, r, shard, sender, nonce, fee, expires_in, call, what, atomix,
            )
        })
        .await??;
    Ok(web::Json(built))
}

/// The fee the request asks for, if any (base units).
fn asked_fee(req: &BuildTxRequest) -> Result<Option<Amount>, ApiError> {
    req.fee
        .as_deref()
        .map(|f| parse_units("fee", f))
        .transpose()
}

/// The nonce asked for, else the sender's next one as `r` sees it.
pub(crate) fn nonce_for(
    r: &Replica,
    sender: &Address,
    asked: Option<u64>,
) -> Result<u64, ApiError> {
    match asked {
        Some(n) => Ok(n),
        None => r.next_nonce(sender).map_err(|e| ApiError::chain(&e)),
    }
}

/// The transaction of `call` from `sender` at `nonce` on `shard` (whose
/// replica is `r`), at the minimum fee for its size unless `fee` is given.
#[allow(clippy::too_many_arguments)]
fn finish_tx(
    v: &View<'_>,
    r: &Replica,
    shard: ShardId,
    sender: Address,
    nonce: u64,
    fee: Option<Amount>,
    expires_in: Option<u64>,
    call: ios_chain::tx::Call,
    what: String,
    atomix: Option<String>,
) -> Result<BuiltTx, ApiError> {
    let params = &v.genesis.params;
    let expires_in = expires_in.unwrap_or(DEFAULT_EXPIRES_IN);
    if expires_in == 0 || expires_in > MAX_EXPIRES_IN {
        return Err(ApiError::bad_request(format!(
            "expires_in must be 1 to {MAX_EXPIRES_IN} blocks, got {expires_in}"
        )));
    }
    let mut tx = Transaction {
        chain_id: params.chain_id.clone(),
        shard,
        sender,
        nonce,
        fee: fee.unwrap_or(0),
        expires_at: r.height().saturating_add(expires_in),
        call,
    };
    if fee.is_none() {
        // The fee covers the signed encoding (the signature is 64 bytes).
        let len = SignedTransaction {
            tx: tx.clone(),
            signature: Signature([0; 64]),
        }
        .to_bytes()
        .len() as u64;
        tx.fee = params.min_fee_per_byte.saturating_mul(len);
    }
    Ok(BuiltTx {
        tx: hex::encode(&ios_chain::codec::encode(&tx)),
        signing_hash: tx.signing_hash().to_hex(),
        shard,
        nonce,
        fee: tx.fee.to_string(),
        summary: format!(
            "{sender}: {what}; fee {} (shard {shard})",
            format_iost(tx.fee)
        ),
        atomix,
    })
}

#[utoipa::path(post, path = "/api/v1/tx", tag = "transactions",
    request_body = SubmitTxRequest,
    responses(
        (status = 200, description = "Pooled; poll /api/v1/tx/{id} for finality", body = SubmittedTx),
        (status = 400, description = "Not a transaction, or a bad signature", body = ErrorBody),
        (status = 422, description = "Refused by the chain (nonce, funds, fee...)", body = ErrorBody),
        (status = 503, description = "The shard is busy (a backlog waits) or not reachable from this node yet; retry", body = ErrorBody)))]
async fn submit_tx(
    g: web::Data<Gateway>,
    req: web::Json<SubmitTxRequest>,
) -> ApiResult<SubmittedTx> {
    let bytes = hex::decode(&req.tx).map_err(|e| ApiError::bad_request(format!("tx: {e}")))?;
    if bytes.len() > MAX_TX_BYTES {
        return Err(ApiError::bad_request(format!(
            "tx is {} bytes, over the limit of {MAX_TX_BYTES}",
            bytes.len()
        )));
    }
    let tx: Transaction = ios_chain::codec::decode("transaction", &bytes, MAX_TX_BYTES)
        .map_err(|e| ApiError::chain(&e))?;
    let sig: [u8; 64] = hex::decode(&req.signature)
        .map_err(|e| ApiError::bad_request(format!("signature: {e}")))?
        .try_into()
        .map_err(|_| ApiError::bad_request("signature must be 64 bytes (128 hex digits)"))?;
    let signed = SignedTransaction {
        tx,
        signature: Signature(sig),
    };
    signed.verify_signature().map_err(|e| ApiError::chain(&e))?;
    let id = signed.id();
    let results = g.node.submit(vec![signed]).await?;
    match results.into_iter().next() {
        Some(Ok(_)) => {}
        Some(Err(r)) => {
            return Err(ApiError::new(status_of(&r.code), &r.code, r.message));
        }
        None => return Err(ApiError::unavailable("the node returned no result")),
    }
    let shard = g
        .node
        .query(move |v| {
            v.replicas
                .iter()
                .find(|(_, r)| r.is_pooled(&id))
                .map(|(s, _)| *s)
        })
        .await?
        .unwrap_or(BEACON);
    Ok(web::Json(SubmittedTx {
        id: id.to_hex(),
        shard,
    }))
}

#[utoipa::path(get, path = "/api/v1/tx/{id}", tag = "transactions",
    params(("id" = String, Path, description = "hex transaction id (its signing hash)")),
    responses((status = 200, description = "Pending, finalized, failed or unknown", body = TxStatus)))]
pub async fn tx_status(g: web::Data<Gateway>, path: web::Path<String>) -> ApiResult<TxStatus> {
    let id = parse_hash("the id", &path)?;
    let status = g
        .node
        .query(move |v| -> Result<TxStatus, ApiError> {
            let mut status = TxStatus {
                id: id.to_hex(),
                state: TxState::Unknown,
                shard: None,
                height: None,
                index: None,
                error: None,
                events: vec![],
            };
            for (s, r) in v.replicas {
                if let Some(loc) = r
                    .store()
                    .tx_location(&id)
                    .map_err(|e| ApiError::chain(&e))?
                {
                    let receipt = r
                        .store()
                        .receipts(loc.height)
                        .map_err(|e| ApiError::chain(&e))?
                        .and_then(|rs| rs.into_iter().nth(loc.index as usize));
                    status.shard = Some(*s);
                    status.height = Some(loc.height);
                    status.index = Some(loc.index);
                    status.state = TxState::Finalized;
                    if let Some(rc) = receipt {
                        status.events = rc.events.iter().map(|e| e.kind.clone()).collect();
                        if let ios_chain::block::ReceiptStatus::Failed { code, message } = rc.status
                        {
                            status.state = TxState::Failed;
                            status.error = Some(ErrorDetail { code, message });
                        }
                    }
                    return Ok(status);
                }
                if r.is_pooled(&id) {
                    status.state = TxState::Pending;
                    status.shard = Some(*s);
                }
            }
            Ok(status)
        })
        .await??;
    Ok(web::Json(status))
}

fn atomix_view(id: &Hash, t: &ios_chain::relayer::Tracked) -> AtomixView {
    let (name, detail) = match t.state() {
        AtomixState::Locking { accepted, inputs } => {
            ("locking", format!("{accepted} of {inputs} inputs locked"))
        }
        AtomixState::Committed { released, inputs } => (
            "committed",
            format!(
                "recipient paid on shard {}; {released} of {inputs} locks released",
                t.x.output_shard
            ),
        ),
        AtomixState::Rejected { refunded, accepted } => (
            "rejected",
            format!("{refunded} of {accepted} locks refunded"),
        ),
        AtomixState::Done => (
            "done",
            format!(
                "recipient paid on shard {}; every lock released",
                t.x.output_shard
            ),
        ),
        AtomixState::Refunded => ("refunded", "rejected; every lock refunded".to_string()),
    };
    AtomixView {
        id: id.to_hex(),
        state: name.into(),
        detail,
        terminal: t.terminal(),
        input_shards: t.x.inputs.iter().map(|i| i.shard).collect(),
        output_shard: t.x.output_shard,
        to: t.x.to.to_string(),
        amount: t.x.total().unwrap_or(0).to_string(),
        expires_at: t.x.expires_at,
    }
}

#[utoipa::path(get, path = "/api/v1/atomix", tag = "chain",
    params(LimitQuery),
    responses(
        (status = 200, description = "Cross-shard transfers this node's relayer follows (finished ones for a while), the most recently moved first", body = [AtomixView]),
        (status = 503, description = "Not a full node", body = ErrorBody)))]
pub async fn atomix_list(
    g: web::Data<Gateway>,
    q: web::Query<LimitQuery>,
) -> ApiResult<Vec<AtomixView>> {
    let limit = q.limit.unwrap_or(20).clamp(1, 200);
    let list = g
        .node
        .query(move |v| -> Result<Vec<AtomixView>, ApiError> {
            let relayer = v.relayer.ok_or_else(|| {
                ApiError::unavailable(
                    "this node relays no cross-shard transfers (only full nodes do)",
                )
            })?;
            let mut all: Vec<_> = relayer.iter().collect();
            all.sort_by_key(|(id, t)| (std::cmp::Reverse(t.progressed), **id));
            Ok(all
                .into_iter()
                .take(limit)
                .map(|(id, t)| atomix_view(id, t))
                .collect())
        })
        .await??;
    Ok(web::Json(list))
}

#[utoipa::path(get, path = "/api/v1/epochs", tag = "chain",
    params(LimitQuery),
    responses((status = 200, description = "The beacon's epochs this node has followed, newest first: randomness and every shard's committee", body = [EpochView])))]
pub async fn epochs(g: web::Data<Gateway>, q: web::Query<LimitQuery>) -> ApiResult<Vec<EpochView>> {
    let limit = q.limit.unwrap_or(10).clamp(1, 200);
    let list = g
        .node
        .query(move |v| {
            let mut infos: Vec<_> = v.epochs.infos().collect();
            infos.sort_by_key(|i| std::cmp::Reverse(i.epoch));
            infos
                .into_iter()
                .take(limit)
                .map(|i| EpochView {
                    epoch: i.epoch,
                    randomness: i.randomness.to_hex(),
                    committees: i
                        .committees
                        .iter()
                        .map(|c| c.members.iter().map(|a| a.to_string()).collect())
                        .collect(),
                })
                .collect::<Vec<_>>()
        })
        .await?;
    Ok(web::Json(list))
}

#[utoipa::path(get, path = "/api/v1/peers", tag = "chain",
    responses((status = 200, description = "The libp2p peers this node is connected to now (peer ids)", body = [String])))]
pub async fn peers(g: web::Data<Gateway>) -> ApiResult<Vec<String>> {
    let list = g
        .node
        .query(|v| {
            v.connected
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
        })
        .await?;
    Ok(web::Json(list))
}

#[utoipa::path(get, path = "/api/v1/validators", tag = "chain",
    responses(
        (status = 200, description = "The validator set on the beacon: stake, believability, and the shards whose committee each sits on in the latest epoch", body = [ValidatorView]),
        (status = 503, description = "This node does not run the beacon", body = ErrorBody)))]
pub async fn validators(g: web::Data<Gateway>) -> ApiResult<Vec<ValidatorView>> {
    let list = g
        .node
        .query(|v| -> Result<Vec<ValidatorView>, ApiError> {
            let r = replica(v, BEACON)?;
            let set =
                ios_chain::committee::validators(r.store()).map_err(|e| ApiError::chain(&e))?;
            let latest = v.epochs.info(v.epochs.latest());
            let mut out = Vec::new();
            for a in set {
                let acct = read_account(r.store(), &a).map_err(|e| ApiError::chain(&e))?;
                out.push(ValidatorView {
                    address: a.to_string(),
                    stake: acct.stake.to_string(),
                    unbonding: acct.unbonding.to_string(),
                    believability: acct.believability(&v.genesis.params.believability),
                    reputation: acct.reputation,
                    jailed: acct.jailed,
                    committees: latest
                        .map(|i| {
                            i.committees
                                .iter()
                                .enumerate()
                                .filter(|(_, c)| c.members.contains(&a))
                                .map(|(s, _)| s as u16)
                                .collect()
                        })
                        .unwrap_or_default(),
                });
            }
            Ok(out)
        })
        .await??;
    Ok(web::Json(list))
}

#[utoipa::path(get, path = "/api/v1/atomix/{id}", tag = "transactions",
    params(("id" = String, Path, description = "hex id of the cross-shard transfer (BuiltTx.atomix)")),
    responses(
        (status = 200, description = "Where the cross-shard transfer stands", body = AtomixView),
        (status = 404, description = "Not seen by this node's relayer (yet)", body = ErrorBody)))]
pub async fn atomix_status(
    g: web::Data<Gateway>,
    path: web::Path<String>,
) -> ApiResult<AtomixView> {
    let id = parse_hash("the id", &path)?;
    let view = g
        .node
        .query(move |v| -> Result<AtomixView, ApiError> {
            let relayer = v.relayer.ok_or_else(|| {
                ApiError::unavailable("this node relays no cross-shard transfers (only full nodes do)")
            })?;
            let t = relayer.get(&id).ok_or_else(|| {
                ApiError::not_found(format!(
                    "cross-shard transfer {id} not seen yet (its lock is not finalized, or it finished long ago)"
                ))
            })?;
            Ok(atomix_view(&id, t))
        })
        .await??;
    Ok(web::Json(view))
}
