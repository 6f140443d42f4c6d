//! `ios devnet` at this stage: n validator replicas, each in its own tokio
//! task with its own sled directory, connected by bounded in-process channels,
//! with a built-in load of signed transfers. Prints height, finalized TPS and
//! finality latency each second; stops cleanly on Ctrl-C.

use crate::unix_ms;
use anyhow::{Context, Result};
use ios_chain::crypto::{Address, Keypair};
use ios_chain::error::ChainError;
use ios_chain::execute::Runtime;
use ios_chain::hash::{hash_tagged, Hash};
use ios_chain::ledger::{LedgerCall, LedgerModule, Token};
use ios_chain::message::{Message, PeerId};
use ios_chain::params::{ChainParams, Genesis};
use ios_chain::replica::{Output, Replica, ReplicaConfig};
use ios_chain::tx::{SignedTransaction, Transaction};
use ios_chain::types::Height;
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

#[derive(Clone, Debug)]
pub struct DevnetConfig {
    pub validators: usize,
    pub data_dir: PathBuf,
    /// Signed transfers per second offered by the built-in load (0 = none).
    pub load_tps: u32,
    pub users: usize,
    /// Stop after this long (None: until Ctrl-C).
    pub duration: Option<Duration>,
}

/// One line of the per-second report.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DevnetTick {
    pub second: u64,
    pub height: Height,
    pub finalized_tps: u64,
    pub latency_p50_ms: u64,
    pub latency_p99_ms: u64,
    pub mempool: usize,
    pub dropped_messages: u64,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DevnetSummary {
    pub height: Height,
    pub txs: u64,
    pub seconds: f64,
    pub state_roots_agree: bool,
}

enum Inbound {
    Msg {
        from: usize,
        msg: Arc<Message>,
    },
    Submit {
        txs: Vec<SignedTransaction>,
        reply: oneshot::Sender<Vec<Result<Hash, ChainError>>>,
    },
}

struct Commit {
    node: usize,
    height: Height,
    txs: Vec<Hash>,
    state_root: Hash,
    at: Instant,
}

fn devnet_params() -> ChainParams {
    ChainParams::devnet("ios-devnet")
}

fn user_keys(n: usize) -> Vec<Keypair> {
    (0..n as u64)
        .map(|i| Keypair::from_seed("devnet-user", i))
        .collect()
}

fn validator_keys(n: usize) -> Vec<Keypair> {
    (0..n as u64)
        .map(|i| Keypair::from_seed("devnet-validator", i))
        .collect()
}

/// Loads the devnet genesis from `dir`, or writes a new one.
fn load_or_create_genesis(
    dir: &Path,
    validators: &[Keypair],
    users: &[Keypair],
) -> Result<Genesis> {
    let path = dir.join("genesis.bin");
    if path.exists() {
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let g: Genesis = ios_chain::codec::decode("genesis", &bytes, 16 << 20)
            .with_context(|| format!("{} is not a devnet genesis", path.display()))?;
        return Ok(g);
    }
    let now = unix_ms();
    let addrs = |ks: &[Keypair]| ks.iter().map(|k| k.address()).collect::<Vec<_>>();
    let g = Genesis::test_network(
        devnet_params(),
        now,
        hash_tagged("ios/devnet-genesis", &now.to_le_bytes()),
        validators,
        &addrs(users),
    );
    std::fs::create_dir_all(dir)?;
    std::fs::write(&path, ios_chain::codec::encode(&g))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(g)
}

/// Runs the devnet until `shutdown` resolves or `cfg.duration` passes.
pub async fn run(
    cfg: DevnetConfig,
    shutdown: impl Future<Output = ()>,
    mut on_tick: impl FnMut(&DevnetTick),
) -> Result<DevnetSummary> {
    anyhow::ensure!(cfg.validators >= 1, "a devnet needs at least one validator");
    let keys = validator_keys(cfg.validators);
    let users = user_keys(cfg.users);
    let genesis = load_or_create_genesis(&cfg.data_dir, &keys, &users)?;
    let runtime = Runtime::new(genesis.params.clone());
    let replica_config = ReplicaConfig {
        durable: true,
        min_block_interval_ms: 200,
        ..ReplicaConfig::default()
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let (commit_tx, mut commit_rx) = mpsc::unbounded_channel::<Commit>();
    let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mempool_size = Arc::new(std::sync::atomic::AtomicUsize::new(0));

    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..cfg.validators {
        let (tx, rx) = mpsc::channel::<Inbound>(8_192);
        senders.push(tx);
        receivers.push(rx);
    }
    let mut handles = Vec::new();
    for (i, (key, inbox)) in keys.into_iter().zip(receivers).enumerate() {
        let dir = cfg.data_dir.join(format!("validator-{i}"));
        let db = ios_chain::state::open_db(&dir, Some(500))
            .with_context(|| format!("starting validator {i}"))?;
        let replica = Replica::open(
            &db,
            key,
            runtime.clone(),
            &genesis,
            replica_config.clone(),
            unix_ms(),
        )
        .with_context(|| format!("starting validator {i} from {}", dir.display()))?;
        let node = NodeTask {
            index: i,
            replica,
            _db: db,
            peers: senders.clone(),
            commits: commit_tx.clone(),
            dropped: dropped.clone(),
            mempool_size: mempool_size.clone(),
        };
        handles.push(tokio::spawn(node.run(inbox, stop_rx.clone())));
    }
    drop(commit_tx);

    let submitted: Arc<Mutex<HashMap<Hash, Instant>>> = Arc::default();
    let load = if cfg.load_tps > 0 {
        Some(tokio::spawn(load_generator(
            users,
            genesis.params.chain_id.clone(),
            cfg.load_tps,
            senders.clone(),
            submitted.clone(),
            stop_rx.clone(),
        )))
    } else {
        None
    };

    let started = Instant::now();
    let deadline = cfg.duration.map(|d| tokio::time::Instant::now() + d);
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    tokio::pin!(shutdown);
    let mut best: HashMap<Height, Hash> = HashMap::new();
    let mut roots_agree = true;
    let mut height = 0;
    let mut total_txs = 0u64;
    let mut second_txs = 0u64;
    let mut latencies: Vec<u64> = Vec::new();
    let mut second = 0;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => break,
            c = commit_rx.recv() => {
                let Some(c) = c else { break };
                match best.get(&c.height) {
                    Some(root) => {
                        if *root != c.state_root {
                            roots_agree = false;
                            tracing::error!(node = c.node, height = c.height, "state root differs between validators");
                        }
                    }
                    None => {
                        best.insert(c.height, c.state_root);
                        height = height.max(c.height);
                        total_txs += c.txs.len() as u64;
                        second_txs += c.txs.len() as u64;
                        let mut sub = submitted.lock().expect("not poisoned");
                        for id in &c.txs {
                            if let Some(t) = sub.remove(id) {
                                latencies.push(c.at.duration_since(t).as_millis() as u64);
                            }
                        }
                    }
                }
            }
            _ = ticker.tick() => {
                second += 1;
                latencies.sort_unstable();
                let pct = |p: usize| latencies.get((latencies.len().saturating_sub(1)) * p / 100).copied().unwrap_or(0);
                let tick = DevnetTick {
                    second,
                    height,
                    finalized_tps: second_txs,
                    latency_p50_ms: pct(50),
                    latency_p99_ms: pct(99),
                    mempool: mempool_size.load(std::sync::atomic::Ordering::Relaxed),
                    dropped_messages: dropped.load(std::sync::atomic::Ordering::Relaxed),
                };
                on_tick(&tick);
                second_txs = 0;
                latencies.clear();
                // Forget heights well below the head.
                best.retain(|h, _| *h + 100 > height);
            }
        }
    }
    let _ = stop_tx.send(true);
    if let Some(l) = load {
        let _ = l.await;
    }
    for h in handles {
        match h.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("validator stopped with an error: {e:#}"),
            Err(e) => tracing::error!("validator task failed: {e}"),
        }
    }
    Ok(DevnetSummary {
        height,
        txs: total_txs,
        seconds: started.elapsed().as_secs_f64(),
        state_roots_agree: roots_agree,
    })
}

struct NodeTask {
    index: usize,
    replica: Replica,
    _db: sled::Db,
    peers: Vec<mpsc::Sender<Inbound>>,
    commits: mpsc::UnboundedSender<Commit>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
    mempool_size: Arc<std::sync::atomic::AtomicUsize>,
}

impl NodeTask {
    async fn run(
        mut self,
        mut inbox: mpsc::Receiver<Inbound>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<()> {
        loop {
            let deadline = self.replica.next_deadline();
            let wait = Duration::from_millis(deadline.saturating_sub(unix_ms()));
            let outputs = tokio::select! {
                _ = stop.changed() => break,
                m = inbox.recv() => match m {
                    None => break,
                    Some(Inbound::Msg { from, msg }) => {
                        match self.replica.handle(PeerId(from as u64), &msg, unix_ms()) {
                            Ok(out) => out,
                            Err(e) => {
                                tracing::debug!(node = self.index, from, kind = msg.kind(), error = %e, "rejected message");
                                Vec::new()
                            }
                        }
                    }
                    Some(Inbound::Submit { txs, reply }) => {
                        let (results, out) = self.replica.submit(txs, unix_ms());
                        let _ = reply.send(results);
                        out
                    }
                },
                _ = tokio::time::sleep(wait) => self.replica.tick(unix_ms())?,
            };
            if self.index == 0 {
                self.mempool_size.store(
                    self.replica.mempool_len(),
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
            self.route(outputs);
        }
        Ok(())
    }

    fn route(&mut self, outputs: Vec<Output>) {
        for out in outputs {
            match out {
                Output::Broadcast(msg) => {
                    for (j, peer) in self.peers.iter().enumerate() {
                        if j != self.index {
                            self.deliver(peer, msg.clone());
                        }
                    }
                }
                Output::Send(PeerId(j), msg) => {
                    if let Some(peer) = self.peers.get(j as usize) {
                        self.deliver(peer, msg);
                    }
                }
                Output::Committed(c) => {
                    let _ = self.commits.send(Commit {
                        node: self.index,
                        height: c.block.header.height,
                        txs: c.receipts.iter().map(|r| r.tx).collect(),
                        state_root: c.block.header.state_root,
                        at: Instant::now(),
                    });
                }
                // The devnet is one chain (the beacon): its replicas submit
                // evidence themselves and never hand it out.
                Output::Evidence(_) => {}
            }
        }
    }

    /// Bounded queues: a peer that cannot keep up loses messages (the
    /// protocol re-sends what matters) instead of growing our memory.
    fn deliver(&self, peer: &mpsc::Sender<Inbound>, msg: Arc<Message>) {
        if peer
            .try_send(Inbound::Msg {
                from: self.index,
                msg,
            })
            .is_err()
        {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

async fn load_generator(
    users: Vec<Keypair>,
    chain_id: ios_chain::types::ChainId,
    tps: u32,
    nodes: Vec<mpsc::Sender<Inbound>>,
    submitted: Arc<Mutex<HashMap<Hash, Instant>>>,
    mut stop: watch::Receiver<bool>,
) {
    if users.is_empty() {
        return;
    }
    let addrs: Vec<Address> = users.iter().map(|k| k.address()).collect();
    let mut nonces = vec![0u64; users.len()];
    let per_tick = (tps as usize / 20).max(1);
    let mut interval = tokio::time::interval(Duration::from_millis(50));
    let mut next_user = 0usize;
    let mut next_node = 0usize;
    let mut counter = 0u64;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = interval.tick() => {}
        }
        let mut batch = Vec::with_capacity(per_tick);
        let mut who = Vec::with_capacity(per_tick);
        for _ in 0..per_tick {
            let u = next_user % users.len();
            next_user += 1;
            counter += 1;
            let to = addrs[(u + 1 + counter as usize) % addrs.len()];
            let tx = Transaction {
                chain_id: chain_id.clone(),
                sender: addrs[u],
                nonce: nonces[u],
                fee: 1_000,
                expires_at: u64::MAX,
                call: LedgerModule::call(&LedgerCall::Transfer {
                    to,
                    amount: 1 + counter % 1000,
                    token: Token::Iost,
                }),
            };
            nonces[u] += 1;
            batch.push(tx.sign(&users[u]));
            who.push(u);
        }
        let ids: Vec<Hash> = batch.iter().map(|t| t.id()).collect();
        let (reply_tx, reply_rx) = oneshot::channel();
        let node = &nodes[next_node % nodes.len()];
        next_node += 1;
        let now = Instant::now();
        if node
            .send(Inbound::Submit {
                txs: batch,
                reply: reply_tx,
            })
            .await
            .is_err()
        {
            return;
        }
        let Ok(results) = reply_rx.await else { return };
        let mut sub = submitted.lock().expect("not poisoned");
        for ((r, u), id) in results.into_iter().zip(who).zip(ids) {
            match r {
                Ok(_) => {
                    sub.insert(id, now);
                }
                // A restarted devnet keeps its state, and a lost submission
                // leaves a gap: either way the refusal names the nonce to use.
                Err(ChainError::BadNonce { expected, .. }) => nonces[u] = expected,
                Err(e) => tracing::debug!("load transaction refused: {e}"),
            }
        }
        if sub.len() > 1_000_000 {
            sub.clear();
        }
    }
}
