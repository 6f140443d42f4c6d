//! `ios devnet`: a whole network on this machine.

use anyhow::{Context, Result};
use clap::Args;
use ios_node::devnet::{self, DevnetConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct DevnetArgs {
    /// Validators in the shard committee.
    #[arg(long, default_value_t = 4)]
    validators: usize,
    /// Keep state in DIR (reused on the next start); default: a fresh directory.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Signed transfers per second of the built-in load (0 turns it off).
    #[arg(long, default_value_t = 500)]
    tps: u32,
    /// Funded accounts the load sends from.
    #[arg(long, default_value_t = 256)]
    users: usize,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    seconds: Option<u64>,
    /// Print each second's report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: DevnetArgs) -> Result<ExitCode> {
    let data_dir = match a.data {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("ios-devnet-{}", ios_node::unix_ms())),
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    eprintln!(
        "devnet: {} validators, data in {} (logs: stderr; IOS_LOG=info for more)",
        a.validators,
        data_dir.display()
    );
    eprintln!("devnet: built-in load {} transfers/s; Ctrl-C stops", a.tps);
    let cfg = DevnetConfig {
        validators: a.validators,
        data_dir: data_dir.clone(),
        load_tps: a.tps,
        users: a.users,
        duration: a.seconds.map(Duration::from_secs),
    };
    let json = a.json;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let summary = rt.block_on(devnet::run(
        cfg,
        async {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("devnet: stopping");
        },
        |t| {
            if json {
                println!("{}", serde_json::to_string(t).unwrap_or_default());
            } else {
                println!(
                    "height={} finalized_tps={} finality_p50={}ms p99={}ms mempool={} dropped_msgs={}",
                    t.height, t.finalized_tps, t.latency_p50_ms, t.latency_p99_ms, t.mempool, t.dropped_messages
                );
            }
        },
    ))?;
    println!(
        "devnet: stopped at height {} after {:.1}s; {} transactions finalized; state roots agree: {}; data kept in {}",
        summary.height,
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
