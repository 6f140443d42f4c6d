//! Per-client rate limits for the API: a token bucket per client address,
//! refilled continuously at `per_sec` and holding at most `burst`. A
//! request over the limit gets `429 rate_limited` with `Retry-After` before
//! any handler runs, so one client cannot take a gateway's time from the
//! others. Loopback clients (the node's own CLI, its tests and benchmarks
//! on the same machine) are exempt unless configured otherwise.

use crate::api::ApiError;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::ResponseError;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Clients followed at once; past it, those with full buckets (idle) are
/// forgotten first.
const MAX_CLIENTS: usize = 100_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Requests per second a client may make on average.
    pub per_sec: u32,
    /// Requests a client may make at once after being idle.
    pub burst: u32,
    pub exempt_loopback: bool,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_sec: 50,
            burst: 100,
            exempt_loopback: true,
        }
    }
}

/// A client's bucket: tokens in thousandths, as of `at`.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    milli: u64,
    at: Instant,
}

#[derive(Debug)]
pub struct RateLimiter {
    cfg: RateLimitConfig,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    pub fn new(cfg: RateLimitConfig) -> RateLimiter {
        RateLimiter {
            cfg,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request's token for `client` at `now`: None if allowed,
    /// else how many milliseconds until one is there.
    pub fn take(&self, client: IpAddr, now: Instant) -> Option<u64> {
        if self.cfg.exempt_loopback && client.is_loopback() {
            return None;
        }
        let full = u64::from(self.cfg.burst.max(1)) * 1000;
        let rate = u64::from(self.cfg.per_sec.max(1));
        let mut buckets = self.buckets.lock().expect("rate limiter");
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&client) {
            buckets.retain(|_, b| refill(b, now, rate, full) < full);
        }
        let b = buckets.entry(client).or_insert(Bucket {
            milli: full,
            at: now,
        });
        let milli = refill(b, now, rate, full);
        *b = Bucket { milli, at: now };
        if milli >= 1000 {
            b.milli -= 1000;
            None
        } else {
            Some((1000 - milli).div_ceil(rate).max(1))
        }
    }
}

/// The bucket's tokens at `now` (thousandths), refilled at `rate` per second.
fn refill(b: &Bucket, now: Instant, rate: u64, full: u64) -> u64 {
    let ms = now.saturating_duration_since(b.at).as_millis() as u64;
    b.milli.saturating_add(ms.saturating_mul(rate)).min(full)
}

/// The middleware: refuses a client over its limit.
pub async fn limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let limiter = req.app_data::<actix_web::web::Data<RateLimiter>>().cloned();
    let client = req.peer_addr().map(|a| a.ip());
    if let (Some(limiter), Some(client)) = (limiter, client) {
        if let Some(wait_ms) = limiter.take(client, Instant::now()) {
            let e = ApiError::too_many_requests(format!(
                "too many requests from {client}: at most {} a second (bursts of {}); try again in {wait_ms} ms",
                limiter.cfg.per_sec, limiter.cfg.burst
            ));
            let mut resp = e.error_response();
            resp.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from(wait_ms.div_ceil(1000).max(1)),
            );
            return Ok(req.into_response(resp));
        }
    }
    next.call(req).await.map(|r| r.map_into_boxed_body())
}

/// How long a request may take before the gateway answers `503 timeout`
/// instead: the node's queries and transaction builds answer in
/// milliseconds; a request still running after this is stuck behind
/// something (a node busy syncing, a provider that does not answer) and
/// the client is better told so.
pub const ROUTE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Routes whose bodies stream for as long as the data takes (uploads,
/// downloads, live events): no timeout over the whole response.
fn streams(path: &str) -> bool {
    path == "/api/v1/events"
        || path == "/api/v1/store/uploads"
        || (path.starts_with("/api/v1/store/objects/") && path.ends_with("/content"))
}

/// The middleware: every other route is cut at [`ROUTE_TIMEOUT`].
pub async fn timeout(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if streams(req.path()) {
        return next.call(req).await.map(|r| r.map_into_boxed_body());
    }
    let path = req.path().to_string();
    match tokio::time::timeout(ROUTE_TIMEOUT, next.call(req)).await {
        Ok(r) => r.map(|r| r.map_into_boxed_body()),
        // An error is answered with its own response (the JSON error body).
        Err(_) => Err(ApiError::new(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "{path} took over {} s: the node is busy; try again",
                ROUTE_TIMEOUT.as_secs()
            ),
        )
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_client_gets_its_burst_then_its_rate_and_others_are_apart() {
        let l = RateLimiter::new(RateLimitConfig {
            per_sec: 10,
            burst: 3,
            exempt_loopback: true,
        });
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.take(a, t), None);
        }
        // Empty: the next token is 100 ms away.
        assert_eq!(l.take(a, t), Some(100));
        assert_eq!(l.take(a, t + Duration::from_millis(40)), Some(60));
        assert_eq!(l.take(a, t + Duration::from_millis(100)), None);
        // Another client has its own bucket; loopback is exempt.
        assert_eq!(l.take(b, t), None);
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..100 {
            assert_eq!(l.take(lo, t), None);
        }
        // An idle client is full again, never over its burst.
        let later = t + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(l.take(a, later), None);
        }
        assert!(l.take(a, later).is_some());
    }

    /// Over its limit a client gets 429 `rate_limited` JSON with
    /// Retry-After, before the route runs; another client is still served.
    #[actix_web::test]
    async fn the_middleware_refuses_a_client_over_its_limit() {
        use actix_web::{test, web, App, HttpResponse};
        let limiter = web::Data::new(RateLimiter::new(RateLimitConfig {
            per_sec: 1,
            burst: 2,
            exempt_loopback: true,
        }));
        let app = test::init_service(
            App::new()
                .app_data(limiter)
                .wrap(actix_web::middleware::from_fn(limit))
                .route("/", web::get().to(HttpResponse::Ok)),
        )
        .await;
        let from = |ip: &str| {
            test::TestRequest::get()
                .uri("/")
                .peer_addr(format!("{ip}:4000").parse().unwrap())
                .to_request()
        };
        for _ in 0..2 {
            assert_eq!(
                test::call_service(&app, from("10.1.1.1")).await.status(),
                200
            );
        }
        let refused = test::call_service(&app, from("10.1.1.1")).await;
        assert_eq!(refused.status(), 429);
        assert_eq!(refused.headers().get("retry-after").unwrap(), "1");
        let body: serde_json::Value = test::read_body_json(refused).await;
        assert_eq!(body["error"]["code"], "rate_limited");
        assert_eq!(
            test::call_service(&app, from("10.1.1.2")).await.status(),
            200
        );
        assert_eq!(
            test::call_service(&app, from("127.0.0.1")).await.status(),
            200
        );
    }
}
