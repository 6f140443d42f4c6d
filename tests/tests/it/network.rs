//! Whole networks of real libp2p nodes on loopback.

use anyhow::{Context, Result};
use ios_chain::committee::read_account;
use ios_chain::ledger::{LedgerCall, LedgerModule, Token};
use ios_chain::light_client::latest_epoch;
use ios_chain::shard::home_shard;
use ios_chain::tx::Transaction;
use ios_chain::types::{Epoch, Height, ShardId};
use ios_node::devnet::{user_keys, Agreement, Devnet, DevnetConfig};
use ios_node::node::{CommitEvent, NodeHandle};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn config(dir: &std::path::Path, epoch_length: u64) -> DevnetConfig {
    DevnetConfig {
        shards: 2,
        committee: 4,
        data_dir: dir.to_path_buf(),
        load_tps: 0,
        users: 32,
        duration: None,
        epoch_length,
        providers: 0,
        idle_block_ms: 200,
    }
}

/// Every commit of every node, checked for agreement as it arrives.
fn watch_agreement(net: &Devnet) -> Arc<Mutex<Agreement>> {
    let agreement = Arc::new(Mutex::new(Agreement::default()));
    for h in net.nodes() {
        let mut rx = h.commits();
        let a = agreement.clone();
        tokio::spawn(async move {
            while let Ok(c) = rx.recv().await {
                let c: Arc<CommitEvent> = c;
                a.lock().unwrap().record(&c);
            }
        });
    }
    agreement
}

/// (height, epoch applied) of each shard as the gateway sees it.
async fn shard_state(gateway: &NodeHandle) -> Result<Vec<(Height, Epoch)>> {
    gateway
        .query(|v| {
            v.replicas
                .values()
                .map(|r| {
                    (
                        r.height().saturating_sub(1),
                        latest_epoch(r.store()).unwrap_or(0),
                    )
                })
                .collect()
        })
        .await
}

async fn wait_for<T>(
    what: &str,
    secs: u64,
    mut check: impl AsyncFnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A steady tick every `ms`, whatever else the loop is woken by.
fn ticker(ms: u64) -> tokio::time::Interval {
    let mut t = tokio::time::interval(Duration::from_millis(ms));
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_network_over_libp2p_finalizes_follows_the_beacon_and_agrees() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = config(dir.path(), 20);
    let net = Devnet::start(&cfg).await?;
    let agreement = watch_agreement(&net);

    // Every shard finalizes, and the account shards apply the beacon's
    // first epoch change (relayed by their own members).
    let gw = net.gateway.clone();
    wait_for("every shard in epoch 1", 90, async || {
        let s = shard_state(&gw).await?;
        Ok((s.len() == 3 && s.iter().all(|(h, e)| *h > 0 && *e >= 1)).then_some(()))
    })
    .await?;

    // A signed transfer submitted at the gateway finalizes on its shard.
    let users = user_keys(cfg.users);
    let (from, to) = (
        &users[0],
        &users[1..]
            .iter()
            .find(|u| home_shard(&u.address(), 2) == home_shard(&users[0].address(), 2))
            .context("two users on one shard")?,
    );
    let shard: ShardId = home_shard(&from.address(), 2);
    let tx = Transaction {
        chain_id: net.genesis.params.chain_id.clone(),
        shard,
        sender: from.address(),
        nonce: 0,
        fee: 1_000,
        expires_at: u64::MAX,
        call: LedgerModule::call(&LedgerCall::Transfer {
            to: to.address(),
            amount: 12_345,
            token: Token::Iost,
        }),
    }
    .sign(from);
    let before = {
        let a = to.address();
        gw.query(move |v| read_account(v.replicas[&shard].store(), &a).map(|x| x.balance))
            .await??
    };
    let results = gw.submit(vec![tx]).await?;
    assert!(results[0].is_ok(), "{results:?}");
    let to_addr = to.address();
    let after = wait_for("the transfer to finalize", 30, async || {
        let b = gw
            .query(move |v| read_account(v.replicas[&shard].store(), &to_addr).map(|x| x.balance))
            .await??;
        Ok((b != before).then_some(b))
    })
    .await?;
    assert_eq!(after, before + 12_345);

    // A second node on a running node's data directory is refused.
    let err = ios_node::node::DataLock::acquire(&dir.path().join("validator-0"))
        .err()
        .context("a second lock on a running node's directory")?;
    assert!(
        err.to_string().contains("in use by another ios node"),
        "{err}"
    );

    net.stop().await?;
    let a = agreement.lock().unwrap();
    assert_eq!(a.disagreements, 0, "nodes disagreed on a finalized block");
    Ok(())
}

/// A peer that sends garbage gossip and an oversized frame is penalized and
/// banned; the network goes on finalizing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_peer_is_banned_and_the_network_goes_on() -> Result<()> {
    use futures::StreamExt;
    use ios_node::p2p::{self, Channel, Request};
    use libp2p::swarm::SwarmEvent;
    use std::sync::atomic::Ordering;

    let dir = tempfile::tempdir()?;
    let cfg = config(dir.path(), 10_000);
    let net = Devnet::start(&cfg).await?;
    let gw = net.gateway.clone();
    wait_for("every shard finalizing", 60, async || {
        let s = shard_state(&gw).await?;
        Ok((s.len() == 3 && s.iter().all(|(h, _)| *h > 0)).then_some(()))
    })
    .await?;
    let target = net.validators[0].clone();
    let shard = target
        .query(|v| v.replicas.keys().next().copied())
        .await?
        .context("validator-0 runs a shard")?;
    let chain = net.genesis.params.chain_id.0.clone();
    let topic = p2p::shard_topic(&chain, shard, Channel::Consensus);

    // Garbage on the shard's consensus topic, signed by the hostile peer.
    let mut bad = p2p::build_swarm(libp2p::identity::Keypair::generate_ed25519())?;
    bad.behaviour_mut()
        .gossipsub
        .subscribe(&topic)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    bad.dial(target.addrs[0].clone())?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut sent = 0u32;
    // One ticker for the whole loop: the swarm hears the shard's votes more
    // often than a fresh 100 ms sleep per turn would ever fire.
    let mut tick = ticker(100);
    while tokio::time::Instant::now() < deadline && target.metrics.bans.load(Ordering::Relaxed) == 0
    {
        tokio::select! {
            _ = bad.select_next_some() => {}
            _ = tick.tick() => {
                let garbage = vec![0xA5u8, sent as u8, 0xFF, 0x00, 0x13];
                if bad.behaviour_mut().gossipsub.publish(topic.clone(), garbage).is_ok() {
                    sent += 1;
                }
            }
        }
    }
    assert!(
        target.metrics.bans.load(Ordering::Relaxed) >= 1,
        "the target never banned the peer ({sent} garbage messages sent)"
    );
    // The ban closes the connections and refuses new ones.
    let settle = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < settle {
        tokio::select! {
            _ = bad.select_next_some() => {}
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    assert!(
        !bad.is_connected(&target.peer_id),
        "the banned peer is still connected"
    );
    assert!(target.metrics.faults.load(Ordering::Relaxed) >= 10);
    assert!(target.metrics.bans.load(Ordering::Relaxed) >= 1);

    // An oversized frame from another peer: refused before decoding, a fault.
    let faults_before = target.metrics.faults.load(Ordering::Relaxed);
    let mut big = p2p::build_swarm(libp2p::identity::Keypair::generate_ed25519())?;
    big.dial(target.addrs[0].clone())?;
    let users = user_keys(2);
    let tx = Transaction {
        chain_id: net.genesis.params.chain_id.clone(),
        shard: 1,
        sender: users[0].address(),
        nonce: 0,
        fee: 1_000,
        expires_at: u64::MAX,
        call: LedgerModule::call(&LedgerCall::Transfer {
            to: users[1].address(),
            amount: 1,
            token: Token::Iost,
        }),
    }
    .sign(&users[0]);
    let n = p2p::MAX_FRAME_BYTES / tx.to_bytes().len() + 1_000;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut asked = false;
    while tokio::time::Instant::now() < deadline
        && target.metrics.faults.load(Ordering::Relaxed) == faults_before
    {
        tokio::select! {
            ev = big.select_next_some() => {
                if let SwarmEvent::ConnectionEstablished { peer_id, .. } = ev {
                    if peer_id == target.peer_id && !asked {
                        asked = true;
                        big.behaviour_mut().rpc.send_request(
                            &peer_id,
                            p2p::Frame::Good(Request::Submit { shard, txs: vec![tx.clone(); n] }),
                        );
                    }
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    assert!(
        target.metrics.faults.load(Ordering::Relaxed) > faults_before,
        "the oversized frame was not counted as a fault"
    );

    // A peer that floods requests past the burst: refused, a fault.
    let faults_before = target.metrics.faults.load(Ordering::Relaxed);
    let mut flood = p2p::build_swarm(libp2p::identity::Keypair::generate_ed25519())?;
    flood.dial(target.addrs[0].clone())?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut sent = 0u64;
    let mut connected = false;
    // Cheap requests (no epoch that far: an empty answer), a steady stream
    // of them well over the sustained rate, whatever this machine's speed.
    let ask = p2p::Frame::Good(Request::EpochChanges { from: u64::MAX });
    let mut tick = ticker(50);
    while tokio::time::Instant::now() < deadline
        && target.metrics.faults.load(Ordering::Relaxed) == faults_before
    {
        tokio::select! {
            ev = flood.select_next_some() => {
                if let SwarmEvent::ConnectionEstablished { peer_id, .. } = ev {
                    connected |= peer_id == target.peer_id;
                }
            }
            _ = tick.tick() => {
                if connected && flood.is_connected(&target.peer_id) {
                    for _ in 0..p2p::RPC_RATE_PER_S {
                        flood.behaviour_mut().rpc.send_request(&target.peer_id, ask.clone());
                        sent += 1;
                    }
                }
            }
        }
    }
    assert!(
        target.metrics.faults.load(Ordering::Relaxed) > faults_before,
        "{sent} requests at once were not counted as a flood"
    );

    // Votes signed by a key that is on no committee, gossiped on the shard's
    // consensus topic and sent directly: each is a fault of the peer that
    // sent it (every node checks a vote's signer against the epoch it names
    // before forwarding it), and the direct one is refused.
    let (height, epoch) = target
        .query(move |v| {
            let r = &v.replicas[&shard];
            (r.height(), r.committee().epoch)
        })
        .await?;
    let outsider = ios_chain::crypto::Keypair::from_seed("not-a-member", 0);
    let vote = |round: u32| {
        let v = ios_chain::block::Vote {
            chain_id: net.genesis.params.chain_id.clone(),
            shard,
            epoch,
            height,
            round,
            kind: ios_chain::block::VoteKind::Prevote,
            block: None,
        };
        ios_chain::message::Message::Vote(ios_chain::block::SignedVote::new(v, &outsider))
    };
    let faults_before = target.metrics.faults.load(Ordering::Relaxed);
    let mut forger = p2p::build_swarm(libp2p::identity::Keypair::generate_ed25519())?;
    forger
        .behaviour_mut()
        .gossipsub
        .subscribe(&topic)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    forger.dial(target.addrs[0].clone())?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut round = 0u32;
    let mut tick = ticker(100);
    while tokio::time::Instant::now() < deadline
        && target.metrics.faults.load(Ordering::Relaxed) == faults_before
    {
        tokio::select! {
            _ = forger.select_next_some() => {}
            _ = tick.tick() => {
                let bytes = vote(round).to_bytes();
                if forger.behaviour_mut().gossipsub.publish(topic.clone(), bytes).is_ok() {
                    round += 1;
                }
            }
        }
    }
    assert!(
        target.metrics.faults.load(Ordering::Relaxed) > faults_before,
        "{round} gossiped votes by a non-member were not counted as faults"
    );
    let faults_before = target.metrics.faults.load(Ordering::Relaxed);
    let id = forger.behaviour_mut().rpc.send_request(
        &target.peer_id,
        p2p::Frame::Good(Request::Shard {
            shard,
            msg: vote(1_000),
        }),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let answer = loop {
        tokio::select! {
            ev = forger.select_next_some() => {
                if let SwarmEvent::Behaviour(p2p::BehaviourEvent::Rpc(
                    libp2p::request_response::Event::Message {
                        message: libp2p::request_response::Message::Response { request_id, response },
                        ..
                    },
                )) = ev
                {
                    if request_id == id {
                        break response;
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => anyhow::bail!("no answer to the direct vote"),
        }
    };
    assert!(
        matches!(&answer, p2p::Response::Refused(why) if why.contains("not one")),
        "the direct vote by a non-member was answered {answer:?}"
    );
    assert!(
        target.metrics.faults.load(Ordering::Relaxed) > faults_before,
        "the direct vote by a non-member was not counted as a fault"
    );

    // The network goes on.
    let before = shard_state(&gw).await?;
    wait_for("more blocks on every shard", 30, async || {
        let now = shard_state(&gw).await?;
        Ok(now
            .iter()
            .zip(&before)
            .all(|((h, _), (b, _))| h > b)
            .then_some(()))
    })
    .await?;
    net.stop().await?;
    Ok(())
}
