//! `ios devnet`: a whole network on this machine.

use anyhow::{Context, Result};
use clap::Args;
use ios_node::devnet::{self, DevnetConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct DevnetArgs {
    /// Account shards (the beacon comes on top).
    #[arg(long, default_value_t = 2)]
    shards: u16,
    /// Validators per committee: the devnet runs committee x (shards + 1)
    /// validator nodes, plus a gateway.
    #[arg(long, default_value_t = 4)]
    committee: usize,
    /// Blocks per epoch (committees rotate at each boundary).
    #[arg(long, default_value_t = 50)]
    epoch_length: u64,
    /// Keep state in DIR (reused on the next start); default: a fresh directory.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Signed transfers per second of the built-in load (0 turns it off;
    /// default 200, or 0 with --demo).
    #[arg(long)]
    tps: Option<u32>,
    /// Funded accounts the load sends from.
    #[arg(long, default_value_t = 256)]
    users: usize,
    /// HUDS storage providers (each serves every account shard).
    #[arg(long, default_value_t = 6)]
    providers: usize,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    seconds: Option<u64>,
    /// Where the gateway serves the API.
    #[arg(long, default_value = "127.0.0.1:8700")]
    web: std::net::SocketAddr,
    /// Print each second's report as JSON.
    #[arg(long)]
    json: bool,
    /// Run every node as its own OS process (`ios node --config`), each
    /// logging to node.log in its directory.
    #[arg(long)]
    processes: bool,
    /// Seed a living marketplace through the gateway (providers with
    /// listings, completed and rated orders) and print the web UI's URL.
    #[arg(long)]
    demo: bool,
    /// How often an idle shard makes an empty block, in ms (a block with
    /// transactions comes 200 ms after the previous one).
    #[arg(long, default_value_t = devnet::IDLE_BLOCK_MS)]
    idle_block_ms: u64,
}

impl DevnetArgs {
    fn load_tps(&self) -> u32 {
        self.tps.unwrap_or(if self.demo { 0 } else { 200 })
    }

    fn config(&self, data_dir: PathBuf) -> DevnetConfig {
        DevnetConfig {
            shards: self.shards,
            committee: self.committee,
            epoch_length: self.epoch_length,
            data_dir,
            load_tps: self.load_tps(),
            users: self.users,
            duration: self.seconds.map(Duration::from_secs),
            providers: self.providers,
            idle_block_ms: self.idle_block_ms,
        }
    }
}

pub fn run(a: DevnetArgs) -> Result<ExitCode> {
    let data_dir = match a.data.clone() {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("ios-devnet-{}", ios_node::unix_ms())),
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    if a.processes {
        return crate::procdevnet::run(&a.config(data_dir), a.web, a.seconds, a.json);
    }
    eprintln!(
        "devnet: beacon + {} shards x {} validators over libp2p on 127.0.0.1, {} storage providers and a gateway; data in {} (one directory per node; logs: stderr, IOS_LOG=info for more)",
        a.shards,
        a.committee,
        a.providers,
        data_dir.display()
    );
    eprintln!(
        "devnet: built-in load {} transfers/s; Ctrl-C stops",
        a.load_tps()
    );
    let cfg = a.config(data_dir.clone());
    let json = a.json;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let web = a.web;
    let demo = a.demo;
    let summary = rt.block_on(async move {
        let started = std::time::Instant::now();
        let net = devnet::Devnet::start(&cfg).await?;
        let api = ios_web::serve(net.gateway.clone(), web).await;
        let api = match api {
            Ok(api) => api,
            Err(e) => {
                let _ = net.stop().await;
                return Err(e);
            }
        };
        // Where a node joining this devnet finds the gateway (bootstrap).
        let info = ios_node::config::NodeInfo {
            name: "gateway".into(),
            peer_id: net.gateway.peer_id.to_string(),
            addrs: net.gateway.addrs.iter().map(|a| a.to_string()).collect(),
            api: Some(format!("http://{}", api.addr)),
            pid: std::process::id(),
        };
        let info_path = net
            .gateway
            .data_dir
            .join(ios_node::config::NODE_INFO_FILE);
        if let Err(e) = std::fs::write(&info_path, serde_json::to_vec_pretty(&info)?) {
            eprintln!("devnet: could not write {}: {e}", info_path.display());
        }
        eprintln!(
            "devnet: gateway API on http://{} (OpenAPI: http://{}/api/openapi.json); `ios chain status` talks to it; peer {} (also in {})",
            api.addr,
            api.addr,
            info.addrs.first().map(String::as_str).unwrap_or("?"),
            info_path.display()
        );
        if demo {
            let url = format!("http://{}", api.addr);
            eprintln!("devnet: demo: open {url}/ in a browser; seeding the marketplace now");
            std::thread::spawn(move || {
                let c = ios_web::client::Client::new(&url);
                match ios_web::demo::seed(&c, &|m| eprintln!("devnet: demo: {m}")) {
                    Ok(_) => eprintln!("devnet: demo: ready at {url}/ (keys of devnet users 0-7: `ios key new NAME --devnet-user N`)"),
                    Err(e) => eprintln!("devnet: demo: seeding failed: {e:#}"),
                }
            });
        }
        let summary = devnet::drive(
            net,
            &cfg,
            started,
            async {
                let _ = tokio::signal::ctrl_c().await;
                eprintln!("devnet: stopping");
            },
            |t| {
                if json {
                    println!("{}", serde_json::to_string(t).unwrap_or_default());
                } else {
                    let heights: Vec<String> = t.heights.iter().map(|h| h.to_string()).collect();
                    println!(
                        "heights={} epoch={} finalized_tps={} finality_p50={}ms p99={}ms min_peers={}",
                        heights.join(","), t.epoch, t.finalized_tps, t.latency_p50_ms, t.latency_p99_ms, t.min_peers
                    );
                }
            },
        )
        .await;
        api.stop().await;
        summary
    })?;
    let heights: Vec<String> = summary.heights.iter().map(|h| h.to_string()).collect();
    if let Some(r) = summary.ready_after_s {
        eprintln!("devnet: every shard was finalizing {r:.1} s after start");
    }
    println!(
        "devnet: stopped at heights {} (epoch {}) after {:.1}s; {} transactions finalized; state roots agree: {}; data kept in {}",
        heights.join(","),
        summary.epoch,
        summary.seconds,
        summary.txs,
        summary.state_roots_agree,
        data_dir.display()
    );
    Ok(if summary.state_roots_agree {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
