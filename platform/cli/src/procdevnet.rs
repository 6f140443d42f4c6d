//! `ios devnet --processes`: every node its own OS process, watched and
//! loaded through the gateway's API.

use anyhow::{Context, Result};
use ios_node::devnet::{user_keys, DevnetConfig};
use ios_node::procnet::ProcNet;
use ios_web::client::Client;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn run(
    cfg: &DevnetConfig,
    web: SocketAddr,
    seconds: Option<u64>,
    json: bool,
) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("finding the ios binary")?;
    let started = Instant::now();
    let mut net = ProcNet::create(&exe, cfg, web)?;
    net.start_all()?;
    let gateway = net
        .gateway()
        .api_url()
        .context("the gateway reported no API address")?
        .to_string();
    eprintln!(
        "devnet: {} node processes; each keeps its data and node.log in {}/<name>; gateway API on {gateway}",
        net.nodes.len(),
        cfg.data_dir.display()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    {
        let stop = stop.clone();
        rt.spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("devnet: stopping");
            stop.store(true, Ordering::SeqCst);
        });
    }
    let load = (cfg.load_tps > 0).then(|| {
        let (stop, url) = (stop.clone(), gateway.clone());
        let (users, tps) = (user_keys(cfg.users), cfg.load_tps);
        std::thread::spawn(move || ios_web::load::transfers(&url, &users, tps, &stop))
    });
    let client = Client::new(&gateway);
    let deadline = seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let mut last_txs = None;
    let mut ready = None;
    let mut heights = Vec::new();
    let mut epoch = 0;
    let mut total = 0;
    while !stop.load(Ordering::SeqCst) && deadline.is_none_or(|d| Instant::now() < d) {
        // Ctrl-C is noticed on the runtime; give it a turn each second.
        rt.block_on(async { tokio::time::sleep(Duration::from_secs(1)).await });
        let Ok(s) = client.status() else { continue };
        heights = s.shard_status.iter().map(|x| x.height).collect();
        epoch = s.epoch;
        total = s.finalized_txs;
        let tps = last_txs.map_or(0, |l| s.finalized_txs.saturating_sub(l));
        last_txs = Some(s.finalized_txs);
        if ready.is_none()
            && heights.len() == cfg.shards as usize + 1
            && heights.iter().all(|h| *h > 0)
        {
            ready = Some(started.elapsed().as_secs_f64());
        }
        let hs: Vec<String> = heights.iter().map(|h| h.to_string()).collect();
        if json {
            println!(
                "{}",
                serde_json::json!({"heights": heights, "epoch": epoch, "finalized_tps": tps, "peers": s.peers})
            );
        } else {
            println!(
                "heights={} epoch={epoch} finalized_tps={tps} peers={}",
                hs.join(","),
                s.peers
            );
        }
    }
    stop.store(true, Ordering::SeqCst);
    if let Some(l) = load {
        let _ = l.join();
    }
    let agree = roots_agree(&net);
    net.stop_all();
    if let Some(r) = ready {
        eprintln!("devnet: every shard was finalizing {r:.1} s after start");
    }
    let hs: Vec<String> = heights.iter().map(|h| h.to_string()).collect();
    println!(
        "devnet: stopped at heights {} (epoch {epoch}) after {:.1}s; {total} transactions finalized (gateway's count); state roots agree: {}; data kept in {}",
        hs.join(","),
        started.elapsed().as_secs_f64(),
        agree.as_ref().map_or_else(|e| format!("unknown ({e})"), |a| a.to_string()),
        cfg.data_dir.display()
    );
    Ok(if matches!(agree, Ok(true)) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Whether every running node agrees on every shard's blocks and roots.
fn roots_agree(net: &ProcNet) -> Result<bool> {
    let clients: Vec<Client> = net.api_urls().iter().map(|u| Client::new(u)).collect();
    Ok(ios_web::client::roots_agree(&clients)?.0)
}
