//! `ios bench web`: the gateway's HTTP cost. A devnet with listings, then
//! concurrent clients on loopback asking for listing searches (the API) and
//! listing pages (the UI), and the same searches through the Rust handler
//! without HTTP, at the same concurrency, in the same run. Target: HTTP at
//! most doubles the p99 of a search.

use crate::client::{put_signed, send_market, wait_for_providers, Client};
use crate::types::{ListingSearchParams, ListingTermsJson, MarketCallJson, ObjectMetaJson};
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

/// Latencies of the requests answered, and the failures, over `seconds`.
#[derive(Default)]
struct Sample {
    latencies: Vec<Duration>,
    errors: usize,
    seconds: f64,
}

impl Sample {
    /// One sample of `seconds` from what each client measured.
    fn of(seconds: f64, parts: impl IntoIterator<Item = (Vec<Duration>, usize)>) -> Sample {
        let mut sample = Sample {
            seconds,
            ..Default::default()
        };
        for (latencies, errors) in parts {
            sample.latencies.extend(latencies);
            sample.errors += errors;
        }
        sample
    }

    fn add(&mut self, other: Sample) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        self.seconds += other.seconds;
    }

    fn load(mut self) -> Load {
        self.latencies.sort();
        let n = self.latencies.len();
        let q = |p: usize| {
            self.latencies
                .get((n * p / 100).min(n.saturating_sub(1)))
                .map_or(0.0, |d| d.as_secs_f64() * 1e3)
        };
        Load {
            requests: n,
            per_sec: n as f64 / self.seconds.max(1e-9),
            p50_ms: q(50),
            p99_ms: q(99),
            errors: self.errors,
        }
    }
}

/// The search comparison runs in this many alternating slices (HTTP, then
/// the handler), so both meet the same background (blocks, gossip).
const SLICES: usize = 10;

/// A minimal HTTP/1.1 keep-alive client, as load generators (wrk, ab)
/// are: so the client's own work takes as little of the machine the server
/// shares as it can. GETs only; bodies with a Content-Length.
struct RawClient {
    addr: std::net::SocketAddr,
    conn: Option<std::io::BufReader<std::net::TcpStream>>,
}

impl RawClient {
    fn get(&mut self, path: &str) -> std::io::Result<u16> {
        use std::io::{BufRead, Read, Write};
        if self.conn.is_none() {
            let s = std::net::TcpStream::connect(self.addr)?;
            s.set_nodelay(true)?;
            self.conn = Some(std::io::BufReader::new(s));
        }
        let r = self.conn.as_mut().expect("connected");
        let sent = write!(r.get_mut(), "GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n");
        let result = sent.and_then(|_| {
            let mut line = String::new();
            r.read_line(&mut line)?;
            let status: u16 = line
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| std::io::Error::other(format!("status line {line:?}")))?;
            let mut len = 0usize;
            loop {
                line.clear();
                if r.read_line(&mut line)? == 0 {
                    return Err(std::io::Error::other("connection closed"));
                }
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                if let Some((k, v)) = l.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().map_err(std::io::Error::other)?;
                    }
                }
            }
            let mut body = vec![0u8; len];
            r.read_exact(&mut body)?;
            Ok(status)
        });
        if result.is_err() {
            self.conn = None;
        }
        result
    }
}

/// `clients` threads asking for `path(i)` for `seconds` over kept-alive connections.
fn http_load(
    addr: std::net::SocketAddr,
    clients: usize,
    seconds: f64,
    path: impl Fn(usize) -> String + Sync,
) -> Sample {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let results: Vec<(Vec<Duration>, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let path = &path;
                s.spawn(move || {
                    let mut client = RawClient { addr, conn: None };
                    let (mut lat, mut errors, mut i) = (Vec::new(), 0, c);
                    while Instant::now() < deadline {
                        let p = path(i);
                        i += clients;
                        let t = Instant::now();
                        match client.get(&p) {
                            Ok(200) => lat.push(t.elapsed()),
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
    Sample::of(seconds, results)
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
        shards: 1,
        committee: 4,
        data_dir: dir.join("devnet"),
        load_tps: 0,
        users: 16,
        duration: None,
        epoch_length: 1_000,
        providers: 6,
        idle_block_ms: ios_node::devnet::IDLE_BLOCK_MS,
    };
    progress("starting a devnet (1 account shard, 6 storage providers)".into());
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
    let (clients, seconds, addr) = (cfg.clients, cfg.seconds, api.addr);
    progress(format!(
        "{clients} clients searching over HTTP, and {clients} tasks through the handler without HTTP, {seconds} s each in {SLICES} alternating slices"
    ));
    let (mut http, mut direct) = (Sample::default(), Sample::default());
    let slice = seconds / SLICES as f64;
    for _ in 0..SLICES {
        http.add(
            tokio::task::spawn_blocking(move || {
                http_load(addr, clients, slice, |i| {
                    format!("/api/v1/market/search?q={}", WORDS[i % WORDS.len()])
                })
            })
            .await?,
        );
        direct.add(direct_search(api.gateway(), clients, slice).await);
    }
    let (search_http, search_direct) = (http.load(), direct.load());
    let ids2 = ids.clone();
    progress(format!(
        "{clients} clients loading listing pages for {seconds} s"
    ));
    let listing_page_http = tokio::task::spawn_blocking(move || {
        http_load(addr, clients, seconds, move |i| {
            format!("/listings/{}", ids2[i % ids2.len()])
        })
    })
    .await?
    .load();
    let ids2 = ids.clone();
    progress(format!(
        "{clients} clients loading listings as JSON for {seconds} s"
    ));
    let listing_json_http = tokio::task::spawn_blocking(move || {
        http_load(addr, clients, seconds, move |i| {
            format!("/api/v1/market/listings/{}", ids2[i % ids2.len()])
        })
    })
    .await?
    .load();
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
) -> Sample {
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
    let mut parts = Vec::new();
    for t in tasks {
        if let Ok(part) = t.await {
            parts.push(part);
        }
    }
    Sample::of(seconds, parts)
}

/// Creates `n` listings from devnet users 0-3 (one stored document each,
/// shared by its listings), in parallel; returns their ids once searchable.
fn seed(url: &str, n: usize, progress: &(dyn Fn(String) + Sync)) -> Result<Vec<String>> {
    let c = Client::new(url);
    wait_for_providers(&c, 6, Duration::from_secs(180))?;
    let deadline = Instant::now() + Duration::from_secs(180);
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
                        ids.push(send_market(
                            c,
                            key,
                            MarketCallJson::CreateListing(terms),
                            Duration::from_secs(60),
                        )?);
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
