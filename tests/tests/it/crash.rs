//! Crash safety with real processes: validators killed with SIGKILL while
//! transfers flow, a minority stopped and restarted (a partition), and a
//! node that joins late and catches up by fast sync. Every node is an
//! `ios node` process on loopback with its own data directory.

use anyhow::{bail, Context, Result};
use ios_node::devnet::{user_keys, validator_keys, DevnetConfig};
use ios_node::procnet::ProcNet;
use ios_web::client::Client;
use ios_web::types::TxState;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The `ios` binary of this build (cargo builds the workspace's binaries
/// into the directory above the test's own).
fn ios_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let ios = dir.join("ios");
    assert!(
        ios.exists(),
        "{} is missing: build it first (cargo build -p ios-cli; `cargo nextest run --workspace` does)",
        ios.display()
    );
    ios
}

fn heights(c: &Client) -> Result<BTreeMap<u16, u64>> {
    Ok(c.status()?
        .shard_status
        .iter()
        .map(|s| (s.shard, s.height))
        .collect())
}

fn wait_until(what: &str, secs: u64, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let t = Instant::now();
    loop {
        if check().unwrap_or(false) {
            return Ok(());
        }
        if t.elapsed() > Duration::from_secs(secs) {
            bail!("timed out after {secs} s waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits (up to 60 s) until every shard is 3 blocks past where it is now.
fn goes_on(gateway: &Client, what: &str) -> Result<()> {
    let before = heights(gateway)?;
    wait_until(what, 60, || {
        let now = heights(gateway)?;
        Ok(before
            .iter()
            .all(|(s, h)| now.get(s).is_some_and(|n| *n > h + 2)))
    })
}

/// Node `i` has caught up: for every shard it runs, within 3 blocks of the gateway.
fn caught_up(net: &ProcNet, i: usize, gateway: &Client) -> Result<bool> {
    let url = net.nodes[i].api_url().context("no API")?;
    let mine = heights(&Client::new(url))?;
    let theirs = heights(gateway)?;
    Ok(!mine.is_empty()
        && mine
            .iter()
            .all(|(s, h)| theirs.get(s).is_some_and(|g| h + 3 >= *g && *h > 0)))
}

/// One member of each shard's committee (as the gateway sees them), beacon first.
fn one_per_committee(net: &ProcNet, gateway: &Client) -> Result<Vec<usize>> {
    let keys = validator_keys(net.nodes.len() - 1);
    let status = gateway.status()?;
    let mut out = Vec::new();
    for s in &status.shard_status {
        let member = s
            .committee
            .iter()
            .filter_map(|a| keys.iter().position(|k| k.address().to_string() == *a))
            .find(|i| !out.contains(i))
            .context("a committee member among the devnet's validators")?;
        out.push(member);
    }
    Ok(out)
}

#[test]
fn killed_stopped_and_late_nodes_catch_up_and_lose_nothing() -> Result<()> {
    let dir = KeepOnFailure::new()?;
    let cfg = DevnetConfig {
        shards: 2,
        committee: 4,
        data_dir: dir.path().to_path_buf(),
        load_tps: 0,
        users: 64,
        duration: None,
        epoch_length: 20,
        // Validators are what this test kills; HUDS has its own tests.
        providers: 0,
        idle_block_ms: 200,
    };
    let mut net = ProcNet::create(&ios_binary(), &cfg, "127.0.0.1:0".parse()?)?;
    net.start_all()?;
    let gw_url = net.gateway().api_url().context("gateway API")?.to_string();
    let gateway = Client::new(&gw_url);
    wait_until("every shard to finalize", 60, || {
        Ok(heights(&gateway)?.values().filter(|h| **h > 2).count() == 3)
    })?;

    // Transfers flow for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, url) = (stop.clone(), gw_url.clone());
        std::thread::spawn(move || ios_web::load::transfers(&url, &user_keys(64), 40, &stop))
    };
    std::thread::sleep(Duration::from_secs(2));

    // 1. SIGKILL validators mid-step, one at a time (committees rotate each
    //    epoch, so two dead nodes could meet in one committee of 4 and stop
    //    it, as they would on any BFT chain): each shard must go on without
    //    its dead member, and the member must catch up when it is back.
    let victims: Vec<usize> = one_per_committee(&net, &gateway)?
        .into_iter()
        .skip(1)
        .collect();
    for &v in &victims {
        net.kill(v)?;
        goes_on(
            &gateway,
            &format!("the shards to go on without {}", net.nodes[v].name),
        )?;
        net.start(v)?;
        wait_until(
            &format!("{} to catch up after SIGKILL", net.nodes[v].name),
            60,
            || caught_up(&net, v, &gateway),
        )?;
    }

    // 2. A partition: a validator stopped for a while (the rest keep
    //    finalizing without it), then back.
    let minority = vec![one_per_committee(&net, &gateway)?[0]];
    for &v in &minority {
        net.stop(v)?;
    }
    // The majority goes on. Not at once when the stop meets an epoch
    // change: a member joining a committee syncs into its shard only once
    // the epoch starts, and until it has, that committee of 4 misses two.
    goes_on(
        &gateway,
        "the majority to finalize without the stopped node",
    )?;
    for &v in &minority {
        net.start(v)?;
    }
    for &v in &minority {
        wait_until(
            &format!("{} to catch up after the partition", net.nodes[v].name),
            60,
            || caught_up(&net, v, &gateway),
        )?;
    }

    // 3. A node that joins after the network moved epochs fast-syncs.
    wait_until("epoch 2", 60, || Ok(gateway.status()?.epoch >= 2))?;
    let late = net.add_full_node("late")?;
    net.start(late)?;
    let late_client = Client::new(net.nodes[late].api_url().context("late API")?);
    wait_until("the late node to catch up", 90, || {
        caught_up(&net, late, &gateway)
    })?;
    let synced = late_client.status()?.fast_syncs;
    assert!(synced >= 1, "the late node caught up without a fast sync");

    stop.store(true, Ordering::SeqCst);
    let report = load
        .join()
        .map_err(|_| anyhow::anyhow!("the load panicked"))?;
    assert!(
        report.accepted.len() > 100,
        "only {} transfers went in",
        report.accepted.len()
    );

    // No finalized transaction is lost: every transfer the gateway saw
    // finalized is finalized on every restarted validator that runs its shard.
    std::thread::sleep(Duration::from_secs(2));
    let mut finalized: Vec<(String, u16, u64)> = Vec::new();
    for (id, _) in &report.accepted {
        let s = gateway.tx_status(&id.to_hex())?;
        if s.state == TxState::Finalized {
            finalized.push((id.to_hex(), s.shard.unwrap_or(0), s.height.unwrap_or(0)));
        }
    }
    assert!(finalized.len() > 50, "only {} finalized", finalized.len());
    for &v in victims.iter().chain(&minority) {
        let c = Client::new(net.nodes[v].api_url().context("API")?);
        let runs: Vec<u16> = heights(&c)?.keys().copied().collect();
        for (id, shard, height) in finalized.iter().filter(|(_, s, _)| runs.contains(s)) {
            let left = |c: &Client| -> Result<bool> { Ok(!heights(c)?.contains_key(shard)) };
            let s = match c.tx_status(id) {
                Err(e) if e.code() == Some("unavailable") && left(&c)? => continue,
                s => s?,
            };
            // A node that fast-synced into a shard (perhaps before it was
            // killed) has no blocks, and so no index, from before its
            // snapshot; it has their effects. A node whose committee moved
            // on while this loop ran has left the shard (its API answers
            // `unavailable` for the shard's blocks): nothing to ask it.
            if s.state == TxState::Unknown {
                match c.block(*shard, *height) {
                    Err(e) if e.code() == Some("not_found") => continue,
                    Err(e) if e.code() == Some("unavailable") && left(&c)? => continue,
                    _ => {}
                }
            }
            assert_eq!(
                s.state,
                TxState::Finalized,
                "{id} on shard {shard} lost by {}",
                net.nodes[v].name
            );
        }
    }

    // Honest nodes never ban each other, whatever crashed in between.
    for url in net.api_urls() {
        let bans = Client::new(&url).metric("ios_peer_bans_total")?;
        let faults = Client::new(&url).metric("ios_peer_faults_total")?;
        eprintln!("{url}: peer faults {faults:?}, bans {bans:?}");
        assert_eq!(bans, Some(0.0), "{url} banned an honest peer");
    }

    // Every node that runs a shard has the same blocks and state roots.
    assert!(
        ios_node_roots_agree(&net)?,
        "nodes disagree on a finalized block"
    );
    net.stop_all();
    dir.passed();
    Ok(())
}

/// A test directory deleted when the test passes and kept (its path
/// printed) when it fails, so the nodes' logs can be read afterwards.
struct KeepOnFailure(Option<tempfile::TempDir>);

impl KeepOnFailure {
    fn new() -> Result<KeepOnFailure> {
        Ok(KeepOnFailure(Some(tempfile::tempdir()?)))
    }

    fn path(&self) -> &std::path::Path {
        self.0
            .as_ref()
            .expect("the directory lives until drop")
            .path()
    }

    fn passed(mut self) {
        drop(self.0.take());
    }
}

impl Drop for KeepOnFailure {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            eprintln!(
                "the failed test's directory (node logs) is kept: {}",
                d.keep().display()
            );
        }
    }
}

/// The same check `ios devnet --processes` ends with.
fn ios_node_roots_agree(net: &ProcNet) -> Result<bool> {
    let clients: Vec<Client> = net.api_urls().iter().map(|u| Client::new(u)).collect();
    let (agree, compared) = ios_web::client::roots_agree(&clients)?;
    anyhow::ensure!(compared >= 6, "too few nodes to compare ({compared})");
    Ok(agree)
}
