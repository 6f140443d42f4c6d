//! `ios devnet`: a whole network on this machine. Every validator is a full
//! libp2p node on 127.0.0.1 with its own port and data directory: a beacon
//! plus S account shards of `committee` validators each, and a gateway that
//! follows every shard (the API is served from it). A built-in load of signed
//! transfers goes in through the gateway. Prints per-shard heights, finalized
//! TPS and finality latency each second; stops cleanly on Ctrl-C.

use crate::node::{self, CommitEvent, NodeConfig, NodeHandle, Role};
use crate::unix_ms;
use anyhow::{Context, Result};
use ios_chain::crypto::{Address, Keypair};
use ios_chain::hash::{hash_tagged, Hash};
use ios_chain::ledger::{LedgerCall, LedgerModule, Token};
use ios_chain::params::{ChainParams, Genesis};
use ios_chain::replica::ReplicaConfig;
use ios_chain::shard::home_shard;
use ios_chain::tx::Transaction;
use ios_chain::types::{Epoch, Height, ShardId};
use libp2p::Multiaddr;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};

#[derive(Clone, Debug)]
pub struct DevnetConfig {
    /// Account shards (the beacon comes on top).
    pub shards: u16,
    /// Validators per committee; the devnet has committee x (shards + 1).
    pub committee: usize,
    pub data_dir: PathBuf,
    /// Signed transfers per second offered by the built-in load (0 = none).
    pub load_tps: u32,
    pub users: usize,
    /// Stop after this long (None: until Ctrl-C).
    pub duration: Option<Duration>,
    /// Blocks per epoch (committees rotate at each boundary).
    pub epoch_length: u64,
    /// HUDS storage providers (each serves every account shard).
    pub providers: usize,
    /// How often an idle shard makes an empty block (ms); a block with
    /// transactions comes 200 ms after the previous one.
    pub idle_block_ms: u64,
}

/// The devnet's default [`DevnetConfig::idle_block_ms`]: an idle devnet
/// makes one empty block a second per shard (a fifth of the CPU it spent at
/// one every 200 ms). Tests that wait for heights use 200.
pub const IDLE_BLOCK_MS: u64 = 1_000;

impl Default for DevnetConfig {
    fn default() -> Self {
        DevnetConfig {
            shards: 2,
            committee: 4,
            data_dir: PathBuf::from("ios-devnet"),
            load_tps: 200,
            users: 256,
            duration: None,
            epoch_length: 50,
            providers: 6,
            idle_block_ms: IDLE_BLOCK_MS,
        }
    }
}

/// One line of the per-second report.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DevnetTick {
    pub second: u64,
    /// Finalized height per shard (index = shard id; 0 is the beacon).
    pub heights: Vec<Height>,
    pub epoch: Epoch,
    pub finalized_tps: u64,
    pub latency_p50_ms: u64,
    pub latency_p99_ms: u64,
    /// Fewest peers any node has.
    pub min_peers: u64,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DevnetSummary {
    pub heights: Vec<Height>,
    pub epoch: Epoch,
    pub txs: u64,
    pub seconds: f64,
    pub state_roots_agree: bool,
    /// Seconds from start until every shard finalized a block.
    pub ready_after_s: Option<f64>,
}

fn params(cfg: &DevnetConfig) -> ChainParams {
    let mut p = ChainParams::devnet("ios-devnet");
    p.shards = cfg.shards;
    p.set_committee_size(cfg.committee as u16);
    p.epoch_length = cfg.epoch_length;
    p.dealing_window = (cfg.epoch_length / 3).max(2);
    // Blocks a devnet's 2-core machine checks well inside a round's
    // timeout: with a backlog, 10 000-transaction blocks took longer to
    // execute on every replica than the proposal timeout, rounds failed,
    // and the backlog grew (throughput collapsed to half under overload).
    p.max_block_txs = DEVNET_MAX_BLOCK_TXS;
    p
}

/// Most transactions in one devnet block (a block every 200 ms or more:
/// ample for the machine the devnet runs on).
pub const DEVNET_MAX_BLOCK_TXS: u32 = 2_000;

/// Devnet users the market pre-trusts (the first ones).
pub const DEVNET_PRE_TRUSTED: usize = 4;

/// Devnet users the built-in load never sends from: kept for people
/// (`ios key new NAME --devnet-user N`), the web UI and `--demo`, whose
/// transactions would otherwise race the load's nonces.
pub const RESERVED_USERS: usize = 16;

pub fn user_keys(n: usize) -> Vec<Keypair> {
    (0..n as u64)
        .map(|i| Keypair::from_seed("devnet-user", i))
        .collect()
}

/// The master keys of a devnet's storage providers (node keys; each
/// provider's account on a shard is derived from it).
pub fn provider_keys(n: usize) -> Vec<Keypair> {
    (0..n as u64)
        .map(|i| Keypair::from_seed("devnet-provider", i))
        .collect()
}

/// What a devnet provider offers: 4 GiB, 0.01 IOST per GiB-epoch.
pub fn provider_config() -> crate::huds::ProviderConfig {
    crate::huds::ProviderConfig {
        capacity: 4 << 30,
        ..Default::default()
    }
}

pub fn validator_keys(n: usize) -> Vec<Keypair> {
    (0..n as u64)
        .map(|i| Keypair::from_seed("devnet-validator", i))
        .collect()
}

/// The market's settings on a devnet: the defaults, but any opted-in
/// account may sit on a jury (on a real network the believability floor
/// keeps juries to accounts with a stake or a record; a devnet's users have
/// neither) and juries get 50 blocks to seal their votes and 50 to reveal
/// them (10 s each at devnet speed, not a minute), so a dispute is settled
/// while one watches.
pub fn market_params() -> ios_market::module::MarketParams {
    ios_market::module::MarketParams {
        juror_floor: 0,
        jury_commit_blocks: 50,
        jury_reveal_blocks: 50,
        ..Default::default()
    }
}

/// Loads the devnet genesis from `dir`, or writes a new one.
pub fn load_or_create_genesis(cfg: &DevnetConfig) -> Result<Genesis> {
    let dir = &cfg.data_dir;
    let path = dir.join("genesis.bin");
    if path.exists() {
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let g: Genesis = ios_chain::codec::decode("genesis", &bytes, 16 << 20)
            .with_context(|| format!("{} is not a devnet genesis", path.display()))?;
        return Ok(g);
    }
    let validators = validator_keys(cfg.committee * (cfg.shards as usize + 1));
    let mut users: Vec<Address> = user_keys(cfg.users).iter().map(|k| k.address()).collect();
    // Every provider's account on every shard it serves starts funded.
    for m in provider_keys(cfg.providers) {
        for s in crate::huds::provider_shards(cfg.shards) {
            users.push(crate::huds::provider_key(&m, s, cfg.shards).address());
        }
    }
    let now = unix_ms();
    let mut g = Genesis::test_network(
        params(cfg),
        now,
        hash_tagged("ios/devnet-genesis", &now.to_le_bytes()),
        &validators,
        &users,
    );
    // The first devnet users are the market's pre-trusted accounts: global
    // trust starts from them (`ios key new --devnet-user N` holds their keys).
    ios_market::module::MarketGenesis {
        params: market_params(),
        pre_trusted: user_keys(cfg.users.min(DEVNET_PRE_TRUSTED))
            .iter()
            .map(|k| k.address())
            .collect(),
    }
    .write_to(&mut g);
    g.validate().context("the devnet genesis is invalid")?;
    std::fs::create_dir_all(dir)?;
    std::fs::write(&path, ios_chain::codec::encode(&g))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(g)
}

/// Validators of a devnet genesis (each has a PVSS key); their keys are
/// `validator_keys(n)`.
pub fn validator_count(genesis: &Genesis) -> usize {
    genesis
        .accounts
        .iter()
        .filter(|a| a.pvss_key.is_some())
        .count()
}

/// The replica settings of a devnet node: durable votes, short rounds, an
/// empty block every `idle_block_ms` when there is nothing to include.
pub fn replica_config(idle_block_ms: u64) -> ReplicaConfig {
    ReplicaConfig {
        durable: true,
        min_block_interval_ms: 200,
        empty_block_interval_ms: idle_block_ms,
        ..ReplicaConfig::default()
    }
}

/// A running devnet: validators and a gateway, all on loopback.
pub struct Devnet {
    pub genesis: Genesis,
    pub validators: Vec<NodeHandle>,
    pub gateway: NodeHandle,
    /// HUDS storage providers.
    pub providers: Vec<NodeHandle>,
    provider_stops: Vec<watch::Sender<bool>>,
    pub data_dir: PathBuf,
    stop: watch::Sender<bool>,
    tasks: Vec<(String, tokio::task::JoinHandle<Result<()>>)>,
}

impl Devnet {
    /// Starts every node; returns once all listen (not yet in consensus).
    pub async fn start(cfg: &DevnetConfig) -> Result<Devnet> {
        anyhow::ensure!(
            cfg.committee >= 1,
            "a committee needs at least one validator"
        );
        let genesis = load_or_create_genesis(cfg)?;
        let keys = validator_keys(validator_count(&genesis));
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut validators: Vec<NodeHandle> = Vec::new();
        let mut bootstrap = Vec::new();
        // One node of the devnet: on loopback, in its own directory.
        let node_config = |name: &str,
                           role: Role,
                           key: Option<Keypair>,
                           bootstrap: &[Multiaddr],
                           provider: Option<crate::huds::ProviderConfig>|
         -> Result<NodeConfig> {
            Ok(NodeConfig {
                name: name.to_string(),
                role,
                data_dir: cfg.data_dir.join(name),
                listen: "/ip4/127.0.0.1/tcp/0".parse()?,
                bootstrap: bootstrap.to_vec(),
                genesis: genesis.clone(),
                key,
                replica: replica_config(cfg.idle_block_ms),
                provider,
            })
        };
        for (i, key) in keys.into_iter().enumerate() {
            let name = format!("validator-{i}");
            let (h, task) = node::start(
                node_config(&name, Role::Validator, Some(key), &bootstrap, None)?,
                stopped(stop_rx.clone()),
            )
            .await
            .with_context(|| format!("starting {name}"))?;
            if bootstrap.is_empty() {
                bootstrap = h.addrs.clone();
            }
            validators.push(h);
            tasks.push((name, task));
        }
        let (gateway, task) = node::start(
            node_config("gateway", Role::Full, None, &bootstrap, None)?,
            stopped(stop_rx.clone()),
        )
        .await
        .context("starting the gateway")?;
        tasks.push(("gateway".into(), task));
        let mut providers = Vec::new();
        let mut provider_stops = Vec::new();
        for (i, key) in provider_keys(cfg.providers).into_iter().enumerate() {
            let name = format!("provider-{i}");
            // Each provider also stops alone (tests take them down one by one).
            let (own_stop, own_rx) = watch::channel(false);
            let all = stop_rx.clone();
            provider_stops.push(own_stop);
            // Not on any committee: it follows the account shards it serves.
            let (h, task) = node::start(
                node_config(
                    &name,
                    Role::Validator,
                    Some(key),
                    &bootstrap,
                    Some(provider_config()),
                )?,
                async move {
                    tokio::select! {
                        _ = stopped(all) => {}
                        _ = stopped(own_rx) => {}
                    }
                },
            )
            .await
            .with_context(|| format!("starting {name}"))?;
            providers.push(h);
            tasks.push((name, task));
        }
        Ok(Devnet {
            genesis,
            validators,
            gateway,
            providers,
            provider_stops,
            data_dir: cfg.data_dir.clone(),
            stop,
            tasks,
        })
    }

    /// Stops provider `i` (its node shuts down; its data stays).
    pub fn stop_provider(&self, i: usize) {
        if let Some(s) = self.provider_stops.get(i) {
            let _ = s.send(true);
        }
    }

    pub fn shards(&self) -> u16 {
        self.genesis.params.shards
    }

    /// Every block any node finalizes from now on, merged (a reader that
    /// falls behind a node's stream misses some of its events).
    pub fn commits(&self) -> tokio::sync::mpsc::Receiver<Arc<CommitEvent>> {
        let (commit_tx, commit_rx) = tokio::sync::mpsc::channel::<Arc<CommitEvent>>(65_536);
        for h in self.nodes() {
            let mut rx = h.commits();
            let tx = commit_tx.clone();
            tokio::spawn(async move {
                loop {
                    match rx.recv().await {
                        Ok(c) => {
                            if tx.send(c).await.is_err() {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            });
        }
        commit_rx
    }

    /// Every node: validators, the gateway, providers.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeHandle> {
        self.validators
            .iter()
            .chain(std::iter::once(&self.gateway))
            .chain(&self.providers)
    }

    /// Stops every node and waits for them (each flushes its stores).
    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(true);
        let mut first_error = None;
        for (name, t) in self.tasks {
            match t.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!("{name} stopped with an error: {e:#}");
                    first_error.get_or_insert(e.context(name));
                }
                Err(e) => {
                    tracing::error!("{name} failed: {e}");
                    first_error.get_or_insert(anyhow::anyhow!("{name} failed: {e}"));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Checks that every node that finalized a (shard, height) reached the
/// same block and state root.
#[derive(Default)]
pub struct Agreement {
    seen: BTreeMap<(ShardId, Height), (Hash, Hash)>,
    pub disagreements: u64,
}

impl Agreement {
    /// Records one commit; true the first time this (shard, height) is seen.
    pub fn record(&mut self, c: &CommitEvent) -> bool {
        match self.seen.get(&(c.shard, c.height)) {
            Some(&(block, root)) => {
                if block != c.block_hash || root != c.state_root {
                    self.disagreements += 1;
                    tracing::error!(
                        shard = c.shard,
                        height = c.height,
                        "two nodes disagree on a finalized block or state root"
                    );
                }
                false
            }
            None => {
                self.seen
                    .insert((c.shard, c.height), (c.block_hash, c.state_root));
                true
            }
        }
    }

    /// Forgets heights far below `heights` (per shard).
    pub fn prune(&mut self, heights: &[Height]) {
        self.seen
            .retain(|(s, h), _| heights.get(*s as usize).is_none_or(|top| *h + 1_000 > *top));
    }
}

/// Starts the devnet and runs it until `shutdown` resolves or
/// `cfg.duration` passes.
pub async fn run(
    cfg: DevnetConfig,
    shutdown: impl Future<Output = ()>,
    on_tick: impl FnMut(&DevnetTick),
) -> Result<DevnetSummary> {
    let started = Instant::now();
    let net = Devnet::start(&cfg).await?;
    drive(net, &cfg, started, shutdown, on_tick).await
}

/// Runs a started devnet (load, reports, agreement checks) until
/// `shutdown` resolves or `cfg.duration` passes, then stops it.
pub async fn drive(
    net: Devnet,
    cfg: &DevnetConfig,
    started: Instant,
    shutdown: impl Future<Output = ()>,
    mut on_tick: impl FnMut(&DevnetTick),
) -> Result<DevnetSummary> {
    let shards = net.shards();
    let mut commit_rx = net.commits();

    let (load_stop, load_stop_rx) = watch::channel(false);
    let submitted: Arc<Mutex<HashMap<Hash, Instant>>> = Arc::default();
    let load = (cfg.load_tps > 0).then(|| {
        tokio::spawn(load_generator(
            user_keys(cfg.users).split_off(cfg.users.min(RESERVED_USERS)),
            net.genesis.params.chain_id.clone(),
            shards,
            cfg.load_tps,
            net.gateway.clone(),
            submitted.clone(),
            load_stop_rx,
        ))
    });

    let deadline = cfg.duration.map(|d| tokio::time::Instant::now() + d);
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    tokio::pin!(shutdown);
    let mut agreement = Agreement::default();
    // A restarted devnet starts from the heights its gateway already has.
    let mut heights: Vec<Height> = net
        .gateway
        .query(move |v| {
            (0..=shards)
                .map(|s| {
                    v.replicas
                        .get(&s)
                        .and_then(|r| r.store().head().map(|h| h.height))
                        .unwrap_or(0)
                })
                .collect()
        })
        .await?;
    let mut epoch = 0;
    let mut total_txs = 0u64;
    let mut second_txs = 0u64;
    let mut latencies: Vec<u64> = Vec::new();
    let mut second = 0;
    let mut ready_after_s = None;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => break,
            c = commit_rx.recv() => {
                let Some(c) = c else { break };
                if agreement.record(&c) {
                    let s = c.shard as usize;
                    if s < heights.len() {
                        heights[s] = heights[s].max(c.height);
                    }
                    if c.shard == ios_chain::shard::BEACON {
                        epoch = epoch.max(c.epoch);
                    }
                    total_txs += c.txs.len() as u64;
                    second_txs += c.txs.len() as u64;
                    let now = Instant::now();
                    let mut sub = submitted.lock().unwrap_or_else(|e| e.into_inner());
                    for id in &c.txs {
                        if let Some(t) = sub.remove(id) {
                            latencies.push(now.duration_since(t).as_millis() as u64);
                        }
                    }
                    if ready_after_s.is_none() && heights.iter().all(|h| *h > 0) {
                        let s = started.elapsed().as_secs_f64();
                        ready_after_s = Some(s);
                        tracing::info!("devnet ready: every shard finalized a block after {s:.1} s");
                    }
                }
            }
            _ = ticker.tick() => {
                second += 1;
                latencies.sort_unstable();
                let pct = |p: usize| latencies.get((latencies.len().saturating_sub(1)) * p / 100).copied().unwrap_or(0);
                let min_peers = net
                    .nodes()
                    .map(|h| h.metrics.peers.load(std::sync::atomic::Ordering::Relaxed))
                    .min()
                    .unwrap_or(0);
                on_tick(&DevnetTick {
                    second,
                    heights: heights.clone(),
                    epoch,
                    finalized_tps: second_txs,
                    latency_p50_ms: pct(50),
                    latency_p99_ms: pct(99),
                    min_peers,
                });
                second_txs = 0;
                latencies.clear();
                agreement.prune(&heights);
            }
        }
    }
    let _ = load_stop.send(true);
    if let Some(l) = load {
        let _ = l.await;
    }
    net.stop().await?;
    Ok(DevnetSummary {
        heights,
        epoch,
        txs: total_txs,
        seconds: started.elapsed().as_secs_f64(),
        state_roots_agree: agreement.disagreements == 0,
        ready_after_s,
    })
}

/// Signed transfers between users of the same home shard, submitted
/// through the gateway.
async fn load_generator(
    users: Vec<Keypair>,
    chain_id: ios_chain::types::ChainId,
    shards: u16,
    tps: u32,
    gateway: NodeHandle,
    submitted: Arc<Mutex<HashMap<Hash, Instant>>>,
    mut stop: watch::Receiver<bool>,
) {
    if users.len() < 2 {
        return;
    }
    // Users grouped by home shard; a transfer stays on its sender's shard.
    let mut by_shard: BTreeMap<ShardId, Vec<usize>> = BTreeMap::new();
    for (i, k) in users.iter().enumerate() {
        by_shard
            .entry(home_shard(&k.address(), shards))
            .or_default()
            .push(i);
    }
    let mut nonces = vec![0u64; users.len()];
    let per_tick = (tps as usize / 20).max(1);
    let mut interval = tokio::time::interval(Duration::from_millis(50));
    let mut counter = 0u64;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = interval.tick() => {}
        }
        // One batch per shard per tick (a submission goes to one shard).
        for group in by_shard.values().filter(|g| g.len() >= 2) {
            let n = (per_tick / by_shard.len()).max(1);
            let mut batch = Vec::with_capacity(n);
            let mut who = Vec::with_capacity(n);
            for _ in 0..n {
                counter += 1;
                let u = group[counter as usize % group.len()];
                let to =
                    group[(counter as usize + 1 + counter as usize / group.len()) % group.len()];
                let to = if to == u {
                    group[(counter as usize + 1) % group.len()]
                } else {
                    to
                };
                let tx = Transaction {
                    chain_id: chain_id.clone(),
                    shard: home_shard(&users[u].address(), shards),
                    sender: users[u].address(),
                    nonce: nonces[u],
                    fee: 1_000,
                    expires_at: u64::MAX,
                    call: LedgerModule::call(&LedgerCall::Transfer {
                        to: users[to].address(),
                        amount: 1 + counter % 1000,
                        token: Token::Iost,
                    }),
                };
                nonces[u] += 1;
                batch.push(tx.sign(&users[u]));
                who.push(u);
            }
            let ids: Vec<Hash> = batch.iter().map(|t| t.id()).collect();
            let now = Instant::now();
            let Ok(results) = gateway.submit(batch).await else {
                return;
            };
            let mut resync = Vec::new();
            {
                let mut sub = submitted.lock().unwrap_or_else(|e| e.into_inner());
                for ((r, u), id) in results.into_iter().zip(who).zip(ids) {
                    match r {
                        Ok(_) => {
                            sub.insert(id, now);
                        }
                        Err(e) => {
                            tracing::debug!("load transaction refused: {e}");
                            resync.push(u);
                        }
                    }
                }
                if sub.len() > 1_000_000 {
                    sub.clear();
                }
            }
            // A restarted devnet keeps its state, and a refused transfer
            // leaves a gap: start again from the committed nonce.
            for u in resync {
                let (addr, shard) = (users[u].address(), home_shard(&users[u].address(), shards));
                let committed = gateway
                    .query(move |v| {
                        v.replicas
                            .get(&shard)
                            .and_then(|r| ios_chain::committee::read_account(r.store(), &addr).ok())
                    })
                    .await;
                if let Ok(Some(acct)) = committed {
                    nonces[u] = acct.nonce;
                }
            }
        }
    }
}
