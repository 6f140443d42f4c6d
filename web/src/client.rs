//! The typed client of the REST API (blocking; the CLI uses it).

use crate::types::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the node at {url}: {reason} (is it running? --node or IOS_NODE picks another)")]
    Unreachable { url: String, reason: String },
    /// The node answered with an error.
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("unexpected answer from {url}: {reason}")]
    Decode { url: String, reason: String },
}

impl ClientError {
    /// The API's error code, when the node answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

pub struct Client {
    base: String,
    agent: ureq::Agent,
    /// For uploads and downloads: no overall time limit, only between reads.
    bulk: ureq::Agent,
}

impl Client {
    /// A client of the node whose API is at `base` (`http://127.0.0.1:8700`).
    pub fn new(base: &str) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build();
        let bulk = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_recv_response(Some(Duration::from_secs(600)))
            .timeout_recv_body(Some(Duration::from_secs(120)))
            // Downloads read the socket in 1 MiB steps (the default 128 KiB
            // took eight reads and copies where one does).
            .input_buffer_size(1 << 20)
            .build();
        Client {
            base: base.trim_end_matches('/').to_string(),
            agent: ureq::Agent::new_with_config(config),
            bulk: ureq::Agent::new_with_config(bulk),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn answer<T: DeserializeOwned>(
        &self,
        url: &str,
        r: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T> {
        let mut resp = r.map_err(|e| ClientError::Unreachable {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| ClientError::Decode {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        if (200..300).contains(&status) {
            return serde_json::from_str(&text).map_err(|e| ClientError::Decode {
                url: url.to_string(),
                reason: e.to_string(),
            });
        }
        match serde_json::from_str::<ErrorBody>(&text) {
            Ok(b) => Err(ClientError::Api {
                status,
                code: b.error.code,
                message: b.error.message,
            }),
            Err(_) => Err(ClientError::Api {
                status,
                code: "http".into(),
                message: text.chars().take(200).collect(),
            }),
        }
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let r = self.agent.get(&url).call();
        self.answer(&url, r)
    }

    fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let r = self.agent.post(&url).send_json(body);
        self.answer(&url, r)
    }

    pub fn status(&self) -> Result<ChainStatus> {
        self.get("/api/v1/status")
    }

    pub fn account(&self, address: &str) -> Result<AccountView> {
        self.get(&format!("/api/v1/accounts/{address}"))
    }

    pub fn block(&self, shard: u16, height: u64) -> Result<BlockView> {
        self.get(&format!("/api/v1/shards/{shard}/blocks/{height}"))
    }

    pub fn latest_block(&self, shard: u16) -> Result<BlockView> {
        self.get(&format!("/api/v1/shards/{shard}/blocks/latest"))
    }

    pub fn build_tx(&self, req: &BuildTxRequest) -> Result<BuiltTx> {
        self.post("/api/v1/tx/build", req)
    }

    /// Builds the storage deal of an upload staged at this node (`price`
    /// in base units per GiB-epoch; None: the node's default).
    pub fn build_deal(
        &self,
        sender: &str,
        content: &str,
        epochs: u64,
        price: Option<u64>,
        meta: ObjectMetaJson,
    ) -> Result<BuiltTx> {
        self.build_tx(&BuildTxRequest {
            sender: sender.to_string(),
            nonce: None,
            fee: None,
            expires_in: None,
            call: CallRequest::StoreDeal {
                content: content.to_string(),
                epochs,
                price_per_gib_epoch: price.map(|p| p.to_string()),
                meta,
            },
        })
    }

    pub fn submit_tx(&self, req: &SubmitTxRequest) -> Result<SubmittedTx> {
        self.post("/api/v1/tx", req)
    }

    pub fn tx_status(&self, id: &str) -> Result<TxStatus> {
        self.get(&format!("/api/v1/tx/{id}"))
    }

    pub fn atomix(&self, id: &str) -> Result<AtomixView> {
        self.get(&format!("/api/v1/atomix/{id}"))
    }

    /// The OpenAPI document, as JSON.
    /// A metric of the node's Prometheus page: the sum of its samples over
    /// all labels, or None when the node does not export it.
    pub fn metric(&self, name: &str) -> Result<Option<f64>> {
        let url = format!("{}/metrics", self.base);
        let mut resp = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| ClientError::Unreachable {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| ClientError::Decode {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let mut sum = None;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            if !rest.starts_with([' ', '{']) {
                continue;
            }
            let value = rest.rsplit(' ').next().unwrap_or_default();
            let v: f64 = value.parse().map_err(|_| ClientError::Decode {
                url: url.clone(),
                reason: format!("{name} has the value {value:?}"),
            })?;
            *sum.get_or_insert(0.0) += v;
        }
        Ok(sum)
    }

    /// Uploads an object's bytes (streamed from `reader`, `progress` told
    /// the bytes sent so far) for a `data`+`parity` code; the gateway
    /// encodes and holds it until its deal is on chain.
    pub fn upload(
        &self,
        reader: impl std::io::Read,
        data: u8,
        parity: u8,
        progress: impl FnMut(u64),
    ) -> Result<StagedUpload> {
        let url = format!(
            "{}/api/v1/store/uploads?data={data}&parity={parity}",
            self.base
        );
        let mut counting = Counting {
            inner: reader,
            n: 0,
            progress,
        };
        let r = self
            .bulk
            .post(&url)
            .header("content-type", "application/octet-stream")
            .send(ureq::SendBody::from_reader(&mut counting));
        self.answer(&url, r)
    }

    pub fn object(&self, content: &str) -> Result<ObjectView> {
        self.get(&format!("/api/v1/store/objects/{content}"))
    }

    pub fn objects(&self, owner: &str) -> Result<Vec<ObjectView>> {
        self.get(&format!("/api/v1/store/objects?owner={owner}"))
    }

    /// GET `url` with a query string.
    fn get_query<T: DeserializeOwned>(&self, url: &str, pairs: &[(&str, String)]) -> Result<T> {
        let r = self
            .agent
            .get(url)
            .query_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())))
            .call();
        self.answer(url, r)
    }

    /// Searches active listings.
    pub fn search_listings(&self, q: &ListingSearchParams) -> Result<ListingSearchResponse> {
        let url = format!("{}/api/v1/market/search", self.base);
        let n = |v: Option<u64>| v.map(|n| n.to_string());
        let pairs = search_pairs(
            &q.q,
            q.offset,
            [
                ("category", q.category.clone()),
                ("provider", q.provider.clone()),
                ("sort", q.sort.clone()),
                ("min_price", n(q.min_price)),
                ("max_price", n(q.max_price)),
                ("limit", q.limit.map(|l| l.to_string())),
            ],
        );
        self.get_query(&url, &pairs)
    }

    pub fn listing(&self, id: &str) -> Result<ListingView> {
        self.get(&format!("/api/v1/market/listings/{id}"))
    }

    /// A provider's listings.
    pub fn listings(&self, provider: &str) -> Result<Vec<ListingView>> {
        self.get(&format!("/api/v1/market/listings?of={provider}"))
    }

    pub fn market_order(&self, id: &str) -> Result<OrderView> {
        self.get(&format!("/api/v1/market/orders/{id}"))
    }

    /// Orders an account is the buyer or provider of.
    pub fn market_orders(&self, party: &str) -> Result<Vec<OrderView>> {
        self.get(&format!("/api/v1/market/orders?of={party}"))
    }

    pub fn dispute(&self, order: &str) -> Result<DisputeView> {
        self.get(&format!("/api/v1/market/disputes/{order}"))
    }

    pub fn reputation(&self, address: &str) -> Result<ReputationView> {
        self.get(&format!("/api/v1/market/reputation/{address}"))
    }

    /// Searches public objects.
    pub fn search(&self, q: &SearchParams) -> Result<SearchResponse> {
        let url = format!("{}/api/v1/store/search", self.base);
        let n = |v: Option<u64>| v.map(|n| n.to_string());
        let pairs = search_pairs(
            &q.q,
            q.offset,
            [
                ("mime", q.mime.clone()),
                ("tags", q.tags.clone()),
                ("owner", q.owner.clone()),
                ("sort", q.sort.clone()),
                ("min_size", n(q.min_size)),
                ("max_size", n(q.max_size)),
                ("limit", q.limit.map(|l| l.to_string())),
            ],
        );
        self.get_query(&url, &pairs)
    }

    pub fn providers(&self) -> Result<Vec<ProviderView>> {
        self.get("/api/v1/store/providers")
    }

    /// Downloads an object (or `range`, `[from, to)`) into `out`, telling
    /// `progress` the bytes written so far; returns how many were.
    pub fn download(
        &self,
        content: &str,
        range: Option<(u64, u64)>,
        out: &mut dyn std::io::Write,
        mut progress: impl FnMut(u64),
    ) -> Result<u64> {
        let url = format!("{}/api/v1/store/objects/{content}/content", self.base);
        let mut req = self.bulk.get(&url);
        if let Some((from, to)) = range {
            req = req.header("range", format!("bytes={from}-{}", to.saturating_sub(1)));
        }
        let mut resp = req.call().map_err(|e| ClientError::Unreachable {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return self.answer::<serde_json::Value>(&url, Ok(resp)).map(|_| 0);
        }
        let mut reader = resp.body_mut().as_reader();
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        let fail = |e: std::io::Error| ClientError::Decode {
            url: url.clone(),
            reason: format!("the download broke off: {e}"),
        };
        loop {
            let got = std::io::Read::read(&mut reader, &mut buf).map_err(fail)?;
            if got == 0 {
                return Ok(n);
            }
            out.write_all(&buf[..got]).map_err(fail)?;
            n += got as u64;
            progress(n);
        }
    }

    pub fn openapi(&self) -> Result<serde_json::Value> {
        self.get("/api/openapi.json")
    }
}

/// Whether every node (by its API) that runs a shard has the same block and
/// state root at the highest height all of them finalized. Returns the
/// verdict and how many (node, shard) blocks were compared; a node that
/// pruned that height (it fast-synced past it) is skipped.
pub fn roots_agree(nodes: &[Client]) -> Result<(bool, usize)> {
    let mut by_shard: std::collections::BTreeMap<u16, Vec<(&Client, u64)>> = Default::default();
    for c in nodes {
        for sh in c.status()?.shard_status {
            by_shard.entry(sh.shard).or_default().push((c, sh.height));
        }
    }
    let mut compared = 0;
    for (shard, nodes) in by_shard {
        let h = nodes.iter().map(|(_, h)| *h).min().unwrap_or(0);
        if h == 0 {
            continue;
        }
        let mut seen = None;
        for (c, _) in nodes {
            let b = match c.block(shard, h) {
                Ok(b) => b,
                // Pruned there, or the node left the shard (its committee
                // moved on) since it was asked for its status.
                Err(e) if matches!(e.code(), Some("not_found" | "unavailable")) => continue,
                Err(e) => return Err(e),
            };
            compared += 1;
            let here = (b.hash, b.state_root);
            match &seen {
                None => seen = Some(here),
                Some(s) if *s != here => {
                    tracing::error!(shard, height = h, "nodes disagree on a finalized block");
                    return Ok((false, compared));
                }
                _ => {}
            }
        }
    }
    Ok((true, compared))
}

/// A reader that reports how much was read.
struct Counting<R, F> {
    inner: R,
    n: u64,
    progress: F,
}

impl<R: std::io::Read, F: FnMut(u64)> std::io::Read for Counting<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let got = self.inner.read(buf)?;
        self.n += got as u64;
        (self.progress)(self.n);
        Ok(got)
    }
}

/// Stores an object as `owner`, whose key the caller holds (tests,
/// benchmarks, programs; the CLI signs from its keystore and checks the
/// layout first): upload, build the deal (`epochs`, the default price,
/// `meta`),
/// sign, submit, wait until it is final and every fragment is signed for
/// by its provider, all within `timeout`. Returns the object as stored.
pub fn put_signed(
    c: &Client,
    owner: &ios_chain::crypto::Keypair,
    reader: impl std::io::Read,
    (data, parity): (u8, u8),
    epochs: u64,
    meta: crate::types::ObjectMetaJson,
    timeout: Duration,
) -> anyhow::Result<ObjectView> {
    use anyhow::ensure;
    let deadline = std::time::Instant::now() + timeout;
    let staged = c.upload(reader, data, parity, |_| {})?;
    let built = c.build_deal(
        &owner.address().to_string(),
        &staged.content,
        epochs,
        None,
        meta,
    )?;
    sign_and_wait(c, owner, built, timeout).map_err(|e| e.context("the deal"))?;
    loop {
        let o = c.object(&staged.content)?;
        if o.receipted == o.fragments {
            return Ok(o);
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "{} of {} fragments signed for within {timeout:?}",
            o.receipted,
            o.fragments
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Builds `call` from `key`'s account at the gateway, checks the node
/// built it for that sender, signs, submits and waits (up to `timeout`)
/// until it is final. Returns what was built (its id, the Atomix id of a
/// cross-shard one) and the final status.
pub fn send_signed(
    c: &Client,
    key: &ios_chain::crypto::Keypair,
    call: crate::types::CallRequest,
    timeout: Duration,
) -> anyhow::Result<(BuiltTx, TxStatus)> {
    let built = c.build_tx(&BuildTxRequest {
        sender: key.address().to_string(),
        nonce: None,
        fee: None,
        expires_in: None,
        call,
    })?;
    let status = sign_and_wait(c, key, built.clone(), timeout)?;
    Ok((built, status))
}

/// A market call from `key` ([`send_signed`]); returns what the call
/// names it by: its transaction's id, or for an order from another shard
/// the Atomix transfer's id (which is the order's).
pub fn send_market(
    c: &Client,
    key: &ios_chain::crypto::Keypair,
    call: MarketCallJson,
    timeout: Duration,
) -> anyhow::Result<String> {
    let (built, _) = send_signed(c, key, CallRequest::Market { call }, timeout)?;
    Ok(built.atomix.unwrap_or(built.signing_hash))
}

/// Waits until at least `n` storage providers are registered (on all
/// account shards together), up to `timeout`.
pub fn wait_for_providers(c: &Client, n: usize, timeout: Duration) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    while !c.providers().is_ok_and(|p| p.len() >= n) {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "fewer than {n} storage providers registered within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn sign_and_wait(
    c: &Client,
    key: &ios_chain::crypto::Keypair,
    built: BuiltTx,
    timeout: Duration,
) -> anyhow::Result<TxStatus> {
    use anyhow::{bail, ensure};
    let deadline = std::time::Instant::now() + timeout;
    let bytes = crate::hex::decode(&built.tx).map_err(|e| anyhow::anyhow!("built tx: {e}"))?;
    let tx: ios_chain::tx::Transaction =
        ios_chain::codec::decode("built transaction", &bytes, ios_chain::tx::MAX_TX_BYTES)?;
    ensure!(
        tx.sender == key.address(),
        "the node built a transaction for another sender"
    );
    let signature = key.sign(&tx.signing_hash());
    let submitted = c.submit_tx(&SubmitTxRequest {
        tx: built.tx,
        signature: crate::hex::encode(&signature.0),
    })?;
    loop {
        let s = c.tx_status(&submitted.id)?;
        match s.state {
            TxState::Finalized => return Ok(s),
            TxState::Failed => bail!(
                "{} failed on chain: {}",
                built.summary,
                s.error.map(|e| e.message).unwrap_or_default()
            ),
            _ => {}
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "{} ({}) was not final within {timeout:?}",
            built.summary,
            submitted.id
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A search's query string: the words, the offset, and the options given.
fn search_pairs<const N: usize>(
    q: &str,
    offset: usize,
    options: [(&'static str, Option<String>); N],
) -> Vec<(&'static str, String)> {
    let mut pairs = vec![("q", q.to_string()), ("offset", offset.to_string())];
    pairs.extend(options.into_iter().filter_map(|(k, v)| Some((k, v?))));
    pairs
}
