//! `ios node` and `ios init`: one node from a config file.

use crate::common::password;
use anyhow::{bail, Context, Result};
use clap::Args;
use ios_node::config::{NodeFile, NodeInfo, DEFAULT_CONFIG, NODE_INFO_FILE};
use ios_node::keystore::Keystore;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct NodeArgs {
    /// The node's config (`ios init` writes a commented one).
    #[arg(long, default_value = "node.toml")]
    config: PathBuf,
    /// Override the data directory.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Override the libp2p listen address.
    #[arg(long)]
    listen: Option<String>,
    /// Override where the REST API listens ("" for none).
    #[arg(long)]
    api: Option<String>,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Where to write the config.
    #[arg(long, default_value = "node.toml")]
    out: PathBuf,
    /// Replace an existing file.
    #[arg(long)]
    force: bool,
}

#[derive(Args, Debug)]
pub struct ReindexArgs {
    /// The node's config (its data directory is rebuilt).
    #[arg(long, default_value = "node.toml", conflicts_with = "data")]
    config: PathBuf,
    /// The node's data directory (a devnet's gateway: `<devnet dir>/gateway`).
    #[arg(long)]
    data: Option<PathBuf>,
}

/// `ios reindex`: rebuilds a stopped node's search index from its chain
/// data (the text of small text objects is fetched again once it runs).
pub fn reindex(a: ReindexArgs) -> Result<ExitCode> {
    let dir = match a.data {
        Some(d) => d,
        None => {
            let mut file = NodeFile::load(&a.config)?;
            let base = a
                .config
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."));
            file.resolve(&base);
            file.data_dir
        }
    };
    if !dir.is_dir() {
        bail!("{} is not a node's data directory", dir.display());
    }
    let started = std::time::Instant::now();
    let done = ios_node::catalog::rebuild(&dir, |shard, n| {
        eprintln!("shard {shard}: {n} public objects indexed");
    })
    .with_context(|| format!("rebuilding the search index of {}", dir.display()))?;
    let total: usize = done.objects.values().sum();
    let listings: usize = done.listings.values().sum();
    println!(
        "rebuilt the search indexes of {} in {:.1} s: {total} public objects and {listings} active listings from {} account shards",
        dir.display(),
        started.elapsed().as_secs_f64(),
        done.objects.len()
    );
    if done.bodies_pending > 0 {
        println!(
            "the text of {} small text objects is read from their providers once the node runs",
            done.bodies_pending
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn init(a: InitArgs) -> Result<ExitCode> {
    if a.out.exists() && !a.force {
        bail!("{} exists; --force replaces it", a.out.display());
    }
    std::fs::write(&a.out, DEFAULT_CONFIG)
        .with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!(
        "wrote {}: set genesis and bootstrap, then `ios node --config {}`",
        a.out.display(),
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn run(a: NodeArgs) -> Result<ExitCode> {
    let mut file = NodeFile::load(&a.config)?;
    let base = a
        .config
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                p.to_path_buf()
            }
        })
        .unwrap_or_else(|| PathBuf::from("."));
    file.resolve(&base);
    if let Some(d) = a.data {
        file.data_dir = d;
    }
    if let Some(l) = a.listen {
        file.listen = l;
    }
    if let Some(api) = a.api {
        file.api = api;
    }
    let key = match &file.key {
        Some(name) => {
            let ks = Keystore::new(file.keystore.clone().unwrap_or_else(Keystore::default_dir));
            Some(ks.open(
                name,
                &password(&format!("password for key {name:?}: "), false)?,
            )?)
        }
        None => None,
    };
    let cfg = file.node_config(key)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (handle, task) = ios_node::node::start(cfg, async {
            let _ = stop_rx.await;
        })
        .await?;
        let api = if file.api.is_empty() {
            None
        } else {
            let addr = file
                .api
                .parse()
                .with_context(|| format!("api address {:?}", file.api))?;
            let rate = ios_web::limit::RateLimitConfig {
                per_sec: file.api_rate_per_sec,
                burst: file.api_burst,
                exempt_loopback: true,
            };
            Some(ios_web::serve_with(handle.clone(), addr, rate).await?)
        };
        let info = NodeInfo {
            name: file.name.clone(),
            peer_id: handle.peer_id.to_string(),
            addrs: handle.addrs.iter().map(|a| a.to_string()).collect(),
            api: api.as_ref().map(|s| format!("http://{}", s.addr)),
            pid: std::process::id(),
        };
        let info_path = file.data_dir.join(NODE_INFO_FILE);
        std::fs::write(&info_path, serde_json::to_vec_pretty(&info)?)
            .with_context(|| format!("writing {}", info_path.display()))?;
        eprintln!(
            "node {}: peer {} on {}{}; data in {}",
            info.name,
            info.peer_id,
            info.addrs.join(", "),
            info.api
                .as_ref()
                .map(|a| format!(", API on {a}"))
                .unwrap_or_default(),
            file.data_dir.display()
        );
        let mut task = task;
        tokio::select! {
            _ = shutdown_signal() => {}
            // The node stopped by itself (an error): the process exits with
            // it, so a service manager can restart it.
            ended = &mut task => {
                if let Some(api) = api {
                    api.stop().await;
                }
                return match ended {
                    Ok(Ok(())) => Err(anyhow::anyhow!("node {} stopped unexpectedly", info.name)),
                    Ok(Err(e)) => Err(e.context(format!("node {} failed", info.name))),
                    Err(e) => Err(anyhow::anyhow!("node {} crashed: {e}", info.name)),
                };
            }
        }
        eprintln!("node {}: stopping", info.name);
        if let Some(api) = api {
            api.stop().await;
        }
        let _ = stop_tx.send(());
        drop(handle);
        task.await.context("the node task failed")??;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C, or SIGTERM (what service managers and `kill` send).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
