//! `ios bench web`: the gateway's HTTP cost. A devnet with listings, then
//! concurrent clients on loopback asking for listing searches (the API) and
//! listing pages (the UI), and the same searches through the Rust handler
//! without HTTP, at the same concurrency, in the same run. Target: HTTP at
//! most doubles the p99 of a search.

use crate::client::{put_signed, send_signed, Client};
use crate::types::{
    CallRequest, ListingSearchParams, ListingTermsJson, MarketCallJson, ObjectMetaJson,
};
use anyhow::{ensure, Context, Result};
use ios_node::devnet::{user_keys, Devnet, DevnetConfig};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct WebBenchConfig {
    /// Listings created (by 4 providers) before measuring.
    pub listings: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Seconds each measurement runs.
    pub seconds: f64,
}

/// One measured load.
#[derive(Clone, Debug, Serialize)]
pub struct Load {
    pub requests: usize,
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Requests answered with anything but 200 (none expected).
    pub errors: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct WebBenchReport {
    pub listings: usize,
    pub clients: usize,
    pub seconds: f64,
    /// `GET /api/v1/market/search?q=WORD` over HTTP on loopback.
    pub search_http: Load,
    /// `GET /listings/{id}` (the UI's server-rendered page) over HTTP.
    pub listing_page_http: Load,
    /// `GET /api/v1/market/listings/{id}` over HTTP.
    pub listing_json_http: Load,
    /// The same searches through `market::search` in the process, no HTTP.
    pub search_direct: Load,
    /// `search_http.p99_ms / search_direct.p99_ms`.
    pub http_p99_factor: f64,
    /// Whether HTTP adds no more than 2x to the search p99.
    pub target_met: bool,
}

const WORDS: [&str; 12] = [
    "logo",
    "audit",
    "translation",
    "podcast",
    "spreadsheet",
    "review",
    "portrait",
    "website",
    "mixing",
    "resume",
    "illustration",
    "subtitles",
];
const CATEGORIES: [&str; 6] = ["design", "development", "writing", "audio", "data", "video"];

fn load(latencies: &mut [Duration], errors: usize, seconds: f64) -> Load {
    latencies.sort();
    let q = |p: usize| {
        latencies
            .get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    Load {
        requests: latencies.len(),
        per_sec: latencies.len() as f64 / seconds,
        p50_ms: q(50),
        p99_ms: q(99),
        errors,
    }
}

/// `clients` threads asking for `url(i)` for `seconds` over kept-alive connections.
fn http_load(clients: usize, seconds: f64, url: impl Fn(usize) -> String + Sync) -> Load {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let results: Vec<(Vec<Duration>, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let url = &url;
                s.spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .build()
                        .into();
                    let (mut lat, mut errors, mut i) = (Vec::new(), 0, c);
                    while Instant::now() < deadline {
                        let u = url(i);
                        i += clients;
                        let t = Instant::now();
                        match agent.get(&u).call() {
                            Ok(mut r) if r.status() == 200 => {
                                let _ = r.body_mut().read_to_vec();
                                lat.push(t.elapsed());
                            }
                            _ => errors += 1,
                        }
                    }
                    (lat, errors)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a load thread panicked"))
            .collect()
    });
    let errors = results.iter().map(|r| r.1).sum();
    let mut all: Vec<Duration> = results.into_iter().flat_map(|r| r.0).collect();
    load(&mut all, errors, seconds)
}

/// Runs the benchmark on a devnet in `dir`.
pub async fn run(
    cfg: &WebBenchConfig,
    dir: &Path,
    progress: impl Fn(String) + Send + Sync + 'static,
) -> Result<WebBenchReport> {
    ensure!(
        cfg.clients > 0 && cfg.seconds > 0.0,
        "clients and seconds must be positive"
    );
    let progress = Arc::new(progress);
    let dcfg = DevnetConfig {
        shards: 2,
        committee: 4,
        data_dir: dir.join("devnet"),
        load_tps: 0,
        users: 16,
        duration: None,
        epoch_length: 1_000,
        providers: 6,
    };
    progress("starting a devnet (2 shards, 6 storage providers)".into());
    let net = Devnet::start(&dcfg).await?;
    let api = crate::serve(net.gateway.clone(), "127.0.0.1:0".parse()?).await?;
    let url = format!("http://{}", api.addr);
    let result = measure(cfg, &api, &url, progress).await;
    api.stop().await;
    net.stop().await?;
    result
}

async fn measure(
    cfg: &WebBenchConfig,
    api: &crate::ApiServer,
    url: &str,
    progress: Arc<impl Fn(String) + Send + Sync + 'static>,
) -> Result<WebBenchReport> {
    let (u, n, p) = (url.to_string(), cfg.listings, progress.clone());
    let ids = tokio::task::spawn_blocking(move || seed(&u, n, &*p))
        .await
        .context("seeding")??;
    let (clients, seconds) = (cfg.clients, cfg.seconds);
    let search_url = {
        let u = url.to_string();
        move |i: usize| format!("{u}/api/v1/market/search?q={}", WORDS[i % WORDS.len()])
    };
    progress(format!(
        "{clients} clients searching over HTTP for {seconds} s"
    ));
    let search_http =
        tokio::task::spawn_blocking(move || http_load(clients, seconds, search_url)).await?;
    let (u, ids2) = (url.to_string(), ids.clone());
    progress(format!(
        "{clients} clients loading listing pages for {seconds} s"
    ));
    let listing_page_http = tokio::task::spawn_blocking(move || {
        http_load(clients, seconds, move |i| {
            format!("{u}/listings/{}", ids2[i % ids2.len()])
        })
    })
    .await?;
    let (u, ids2) = (url.to_string(), ids.clone());
    progress(format!(
        "{clients} clients loading listings as JSON for {seconds} s"
    ));
    let listing_json_http = tokio::task::spawn_blocking(move || {
        http_load(clients, seconds, move |i| {
            format!("{u}/api/v1/market/listings/{}", ids2[i % ids2.len()])
        })
    })
    .await?;
    progress(format!(
        "{clients} tasks searching through the handler (no HTTP) for {seconds} s"
    ));
    let search_direct = direct_search(api.gateway(), clients, seconds).await;
    let factor = search_http.p99_ms / search_direct.p99_ms.max(1e-6);
    Ok(WebBenchReport {
        listings: ids.len(),
        clients,
        seconds,
        search_http,
        listing_page_http,
        listing_json_http,
        search_direct,
        http_p99_factor: factor,
        target_met: factor <= 2.0,
    })
}

async fn direct_search(
    g: actix_web::web::Data<crate::api::Gateway>,
    clients: usize,
    seconds: f64,
) -> Load {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let g = g.clone();
            tokio::spawn(async move {
                let (mut lat, mut errors, mut i) = (Vec::new(), 0, c);
                while Instant::now() < deadline {
                    let p = ListingSearchParams {
                        q: WORDS[i % WORDS.len()].to_string(),
                        ..Default::default()
                    };
                    i += clients;
                    let t = Instant::now();
                    match crate::market::search(g.clone(), actix_web::web::Query(p)).await {
                        // What HTTP would send: the JSON body.
                        Ok(r) => match serde_json::to_vec(&r.into_inner()) {
                            Ok(_) => lat.push(t.elapsed()),
                            Err(_) => errors += 1,
                        },
                        Err(_) => errors += 1,
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        if let Ok((lat, e)) = t.await {
            all.extend(lat);
            errors += e;
        }
    }
    load(&mut all, errors, seconds)
}

/// Creates `n` listings from devnet users 0-3 (one stored document each,
/// shared by its listings), in parallel; returns their ids once searchable.
fn seed(url: &str, n: usize, progress: &(dyn Fn(String) + Sync)) -> Result<Vec<String>> {
    let c = Client::new(url);
    let deadline = Instant::now() + Duration::from_secs(180);
    while !c.providers().map(|p| p.len() >= 12).unwrap_or(false) {
        ensure!(
            Instant::now() < deadline,
            "the storage providers did not register in 180 s"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    progress(format!("creating {n} listings"));
    let keys = user_keys(4);
    let per = n.div_ceil(keys.len());
    let made: Vec<Result<Vec<String>>> = std::thread::scope(|s| {
        let handles: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(k, key)| {
                let c = &c;
                s.spawn(move || -> Result<Vec<String>> {
                    let doc = put_signed(
                        c,
                        key,
                        format!("Services of provider {k}: careful work, quick replies.")
                            .as_bytes(),
                        (4, 2),
                        10_000,
                        ObjectMetaJson {
                            name: format!("provider-{k}.txt"),
                            mime: "text/plain".into(),
                            description: "Careful work, quick replies, fair prices.".into(),
                            public: true,
                            ..Default::default()
                        },
                        Duration::from_secs(120),
                    )?
                    .content;
                    let mut ids = Vec::new();
                    for i in (k * per)..((k + 1) * per).min(n) {
                        let terms = ListingTermsJson {
                            title: format!(
                                "{} {} number {i}",
                                WORDS[i % WORDS.len()],
                                WORDS[(i / WORDS.len()) % WORDS.len()]
                            ),
                            category: CATEGORIES[i % CATEGORIES.len()].into(),
                            price: (1_000_000 * (1 + i as u64 % 50)).to_string(),
                            delivery_blocks: 600,
                            doc: doc.clone(),
                        };
                        let (built, _) = send_signed(
                            c,
                            key,
                            CallRequest::Market {
                                call: MarketCallJson::CreateListing(terms),
                            },
                            Duration::from_secs(60),
                        )?;
                        ids.push(built.signing_hash);
                    }
                    Ok(ids)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a seeding thread panicked"))
            .collect()
    });
    let mut ids = Vec::new();
    for m in made {
        ids.extend(m?);
    }
    while c
        .search_listings(&ListingSearchParams {
            limit: Some(1),
            ..Default::default()
        })
        .map(|r| r.total < ids.len())
        .unwrap_or(true)
    {
        ensure!(
            Instant::now() < deadline + Duration::from_secs(120),
            "the listings were not all indexed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(ids)
}
