//! The web UI: server-rendered pages (maud) over the same handlers the REST
//! API serves, with small plain JavaScript (`web/static`, no build step)
//! that keeps the user's keys in the browser, signs what the gateway
//! builds, and seals and opens private objects.
//!
//! Trust: the browser trusts the gateway that serves it its JavaScript (as
//! any web wallet trusts its origin); it never sends a private key or the
//! plaintext of a private object. Identity on pages is the public address
//! the browser keeps in the `ios_address` cookie; it only chooses what a
//! page shows, never what anyone may do (that takes a signature).
//!
//! CSRF: every page sets a random `ios_csrf` cookie (SameSite=Strict,
//! HttpOnly) and carries the same token in `<meta name=csrf>`; [`csrf`]
//! refuses any state-changing request a browser sends (it names an
//! `Origin`, a `Sec-Fetch-Site` or a cookie) without the matching
//! `X-CSRF-Token` header. Programs that are not browsers (the CLI) send
//! none of those and are not asked for a token: a signature authorizes
//! their transactions.

mod account;
mod explorer;
mod market;

pub(crate) use market::LISTING_DOC_MIME;

use crate::api::{ApiError, Gateway};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use maud::{html, Markup, PreEscaped, DOCTYPE};

const CSRF_COOKIE: &str = "ios_csrf";
const ADDRESS_COOKIE: &str = "ios_address";
pub const CSRF_HEADER: &str = "x-csrf-token";

const APP_JS: &str = include_str!("../../static/app.js");
const CRYPTO_JS: &str = include_str!("../../static/crypto.js");
const APP_CSS: &str = include_str!("../../static/app.css");

/// Registers the UI's pages and static files.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(market::home))
        .route("/listings/{id}", web::get().to(market::listing))
        .route("/listings/{id}/edit", web::get().to(market::edit))
        .route("/sell", web::get().to(market::sell))
        .route("/providers/{address}", web::get().to(market::profile))
        .route("/orders", web::get().to(market::orders))
        .route("/orders/{id}", web::get().to(market::order))
        .route("/wallet", web::get().to(account::wallet))
        .route("/storage", web::get().to(account::storage))
        .route("/provider", web::get().to(account::provider))
        .route("/explorer", web::get().to(explorer::overview))
        .route(
            "/explorer/shards/{shard}/blocks/{height}",
            web::get().to(explorer::block),
        )
        .route("/explorer/tx", web::get().to(explorer::lookup))
        .route("/explorer/tx/{id}", web::get().to(explorer::tx))
        .route("/explorer/atomix/{id}", web::get().to(explorer::atomix))
        .route("/network", web::get().to(explorer::network))
        .route("/static/{file}", web::get().to(static_file));
}

async fn static_file(path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let (body, mime) = match path.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "crypto.js" => (CRYPTO_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        other => return Err(ApiError::not_found(format!("no static file {other:?}"))),
    };
    Ok(HttpResponse::Ok()
        .content_type(mime)
        .insert_header(("cache-control", "no-cache"))
        .body(body))
}

/// What every page knows of its visitor.
pub(crate) struct Ctx {
    csrf: String,
    new_csrf: bool,
    /// The address the browser says it holds the key of.
    pub me: Option<String>,
}

impl Ctx {
    pub fn of(req: &HttpRequest) -> Ctx {
        let (csrf, new_csrf) = match req.cookie(CSRF_COOKIE) {
            Some(c) if c.value().len() == 64 && ios_chain::hex::decode(c.value()).is_ok() => {
                (c.value().to_string(), false)
            }
            _ => (new_token(), true),
        };
        let me = req
            .cookie(ADDRESS_COOKIE)
            .map(|c| c.value().to_string())
            .filter(|a| a.parse::<ios_chain::crypto::Address>().is_ok());
        Ctx { csrf, new_csrf, me }
    }
}

fn new_token() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the operating system's randomness");
    ios_chain::hex::encode(&b)
}

/// A whole page: the layout around `body`, with the CSRF cookie set when new.
pub(crate) fn page(ctx: &Ctx, title: &str, body: Markup) -> HttpResponse {
    let nav = [
        ("/", "Search"),
        ("/sell", "Sell"),
        ("/orders", "Orders"),
        ("/wallet", "Wallet"),
        ("/storage", "Storage"),
        ("/provider", "Provide storage"),
        ("/explorer", "Explorer"),
        ("/network", "Network"),
    ];
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="csrf" content=(ctx.csrf);
                title { (title) " · IOS" }
                link rel="stylesheet" href="/static/app.css";
                script src="/static/crypto.js" defer {}
                script src="/static/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "IOS" }
                    nav { @for (href, label) in nav { a href=(href) { (label) } } }
                    span.me #me {
                        @if let Some(me) = &ctx.me {
                            a href="/wallet" title=(me) { (short(me)) }
                        } @else {
                            a href="/wallet" { "No key yet" }
                        }
                    }
                    span.live #live title="Finalized heights, live" {}
                }
                main { (body) }
                div #toast role="status" {}
                dialog #sign {
                    h3 { "Sign this transaction?" }
                    p #sign-summary {}
                    p.small #sign-detail {}
                    div.row {
                        button #sign-ok type="button" { "Sign and send" }
                        button #sign-cancel.secondary type="button" { "Cancel" }
                    }
                }
            }
        }
    };
    let mut resp = HttpResponse::Ok();
    resp.content_type("text/html; charset=utf-8")
        .insert_header(("x-content-type-options", "nosniff"))
        .insert_header(("referrer-policy", "same-origin"))
        .insert_header((
            "content-security-policy",
            "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'",
        ));
    if ctx.new_csrf {
        resp.cookie(
            Cookie::build(CSRF_COOKIE, ctx.csrf.clone())
                .path("/")
                .same_site(SameSite::Strict)
                .http_only(true)
                .finish(),
        );
    }
    resp.body(markup.into_string())
}

/// A page that could not be made: the error, in the layout.
pub(crate) fn error_page(ctx: &Ctx, e: &ApiError) -> HttpResponse {
    let mut resp = page(
        ctx,
        "Error",
        html! {
            h1 { "Something is not right" }
            p.error { (e.to_string()) }
            p { a href="/" { "Back to search" } }
        },
    );
    *resp.status_mut() = e.status_code();
    resp
}

/// Renders `f`'s page, or its error as a page.
pub(crate) fn render(ctx: &Ctx, r: Result<(String, Markup), ApiError>) -> HttpResponse {
    match r {
        Ok((title, body)) => page(ctx, &title, body),
        Err(e) => error_page(ctx, &e),
    }
}

/// `ios1abcd…wxyz`.
pub(crate) fn short(s: &str) -> String {
    if s.len() <= 16 {
        return s.to_string();
    }
    format!("{}…{}", &s[..8], &s[s.len() - 6..])
}

/// Base units as IOST.
pub(crate) fn iost(units: &str) -> String {
    match units.parse::<u64>() {
        Ok(u) => ios_chain::types::format_iost(u),
        Err(_) => units.to_string(),
    }
}

/// Thousandths of a star as `4.25 ★`, or `no ratings`.
pub(crate) fn stars(milli: u64, ratings: u64) -> String {
    if ratings == 0 {
        "no ratings".into()
    } else {
        format!("{}.{:02} ★ ({ratings})", milli / 1000, (milli % 1000) / 10)
    }
}

/// A link to an account's profile.
pub(crate) fn who(addr: &str) -> Markup {
    html! { a.addr href={"/providers/" (addr)} title=(addr) { (short(addr)) } }
}

/// A JSON value for the page's script (`<script type=application/json>`,
/// with `<` escaped so no text can close the element).
pub(crate) fn data_json(id: &str, value: &impl serde::Serialize) -> Markup {
    let json = serde_json::to_string(value)
        .unwrap_or_else(|_| "null".into())
        .replace('<', "\\u003c");
    html! { script type="application/json" id=(id) { (PreEscaped(json)) } }
}

fn is_safe(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The CSRF middleware (see the module's documentation).
pub async fn csrf(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if !is_safe(req.method()) {
        let h = req.headers();
        let browser = h.contains_key("origin")
            || h.contains_key("sec-fetch-site")
            || h.contains_key("cookie");
        if browser {
            let cookie = req.cookie(CSRF_COOKIE).map(|c| c.value().to_string());
            let sent = h.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            let ok = matches!((&cookie, sent), (Some(c), Some(s)) if !c.is_empty() && c == s);
            if !ok {
                let e = ApiError::new(
                    actix_web::http::StatusCode::FORBIDDEN,
                    "csrf",
                    if cookie.is_none() {
                        "a browser request that changes state needs the page's CSRF cookie: load a page of this gateway first"
                    } else {
                        "missing or wrong X-CSRF-Token header (reload the page)"
                    },
                );
                return Ok(req.into_response(e.error_response()));
            }
        }
    }
    next.call(req).await.map(|r| r.map_into_boxed_body())
}

/// Runs an API handler for a page: its JSON value, or its error.
pub(crate) async fn call<T>(
    f: impl std::future::Future<Output = Result<web::Json<T>, ApiError>>,
) -> Result<T, ApiError> {
    f.await.map(|j| j.into_inner())
}

/// The gateway's shared state, as handlers take it.
pub(crate) type G = web::Data<Gateway>;
