//! A steady load of signed transfers through a node's API, for devnets,
//! benchmarks and end-to-end tests.

use crate::client::Client;
use crate::types::SubmitTxRequest;
use ios_chain::crypto::{Address, Keypair};
use ios_chain::hash::Hash;
use ios_chain::ledger::{LedgerCall, LedgerModule, Token};
use ios_chain::shard::home_shard;
use ios_chain::tx::Transaction;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What a load run submitted.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Ids the node accepted, with when they were submitted.
    pub accepted: Vec<(Hash, Instant)>,
    pub refused: u64,
}

/// Sends `tps` transfers a second between `users` of the same home shard
/// through the API at `url`, signed here, until `stop` is set.
pub fn transfers(url: &str, users: &[Keypair], tps: u32, stop: &AtomicBool) -> LoadReport {
    let client = Client::new(url);
    let mut report = LoadReport::default();
    let status = loop {
        match client.status() {
            Ok(s) => break s,
            Err(_) if !stop.load(Ordering::SeqCst) => {
                std::thread::sleep(Duration::from_millis(200))
            }
            Err(_) => return report,
        }
    };
    let chain_id = ios_chain::types::ChainId(status.chain_id.clone());
    let mut by_shard: BTreeMap<u16, Vec<&Keypair>> = BTreeMap::new();
    for u in users {
        by_shard
            .entry(home_shard(&u.address(), status.shards))
            .or_default()
            .push(u);
    }
    by_shard.retain(|_, g| g.len() >= 2);
    if by_shard.is_empty() {
        return report;
    }
    let mut nonces: BTreeMap<Address, u64> = BTreeMap::new();
    let period = Duration::from_secs_f64(1.0 / tps.max(1) as f64);
    let mut k = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let t = Instant::now();
        k += 1;
        let group = by_shard
            .values()
            .nth(k % by_shard.len())
            .cloned()
            .unwrap_or_default();
        let from = group[(k / by_shard.len()) % group.len()];
        let to = group[(k / by_shard.len() + 1) % group.len()];
        let nonce = match nonces.get(&from.address()) {
            Some(n) => *n,
            None => match client.account(&from.address().to_string()) {
                Ok(a) => a.next_nonce,
                Err(_) => {
                    std::thread::sleep(period);
                    continue;
                }
            },
        };
        let tx = Transaction {
            chain_id: chain_id.clone(),
            shard: home_shard(&from.address(), status.shards),
            sender: from.address(),
            nonce,
            fee: 1_000,
            expires_at: u64::MAX,
            call: LedgerModule::call(&LedgerCall::Transfer {
                to: to.address(),
                amount: 1,
                token: Token::Iost,
            }),
        };
        let sig = from.sign(&tx.signing_hash());
        let r = client.submit_tx(&SubmitTxRequest {
            tx: crate::hex::encode(&ios_chain::codec::encode(&tx)),
            signature: crate::hex::encode(&sig.0),
        });
        match r {
            Ok(_) => {
                nonces.insert(from.address(), nonce + 1);
                report.accepted.push((tx.signing_hash(), t));
            }
            Err(e) => {
                tracing::debug!("load transfer refused: {e}");
                report.refused += 1;
                // Ask the node for the nonce next time.
                nonces.remove(&from.address());
            }
        }
        if let Some(rest) = period.checked_sub(t.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    report
}
