//! The beacon light client of an account shard: a real beacon committee
//! (four replicas on a FIFO network) runs until it ends epoch 0, and the
//! `EpochChange` it emits is relayed to shard 1, which must then follow the
//! beacon into epoch 1. Every forged or misdirected change is a typed error
//! that changes nothing.

use crate::{next_env, open_db, sign_call};
use ios_chain::block::ReceiptStatus;
use ios_chain::committee::K_COMMITTEE;
use ios_chain::crypto::Keypair;
use ios_chain::error::ChainError;
use ios_chain::execute::{Mode, Runtime};
use ios_chain::ledger::{LedgerCall, LedgerModule};
use ios_chain::light_client::{self, EpochChange};
use ios_chain::message::{Message, PeerId};
use ios_chain::module::BlockEnv;
use ios_chain::params::Genesis;
use ios_chain::replica::{Output, Replica, ReplicaConfig};
use ios_chain::shard::BEACON;
use ios_chain::sim::{sim_genesis, sim_params};
use ios_chain::state::StateStore;
use ios_chain::tx::{PooledTx, SignedTransaction};
use ios_chain::types::{Amount, ShardId, TimeMs};
use std::collections::VecDeque;
use std::sync::Arc;

/// Committee size; the network has the beacon and one account shard.
const COMMITTEE: usize = 4;

fn genesis() -> Genesis {
    let mut params = sim_params(COMMITTEE);
    params.shards = 1;
    let keys: Vec<Keypair> = (0..2 * COMMITTEE as u64)
        .map(|i| Keypair::from_seed("light-validator", i))
        .collect();
    sim_genesis(params, &keys, &[Keypair::from_seed("light-user", 0)])
}

/// Runs the beacon committee of epoch 0 until a block ends the epoch and
/// returns the epoch change the committing replica emitted.
fn beacon_epoch_change(genesis: &Genesis) -> EpochChange {
    let members = genesis.epoch_zero().committees[BEACON as usize]
        .members
        .clone();
    assert_eq!(members.len(), COMMITTEE);
    let keys: Vec<Keypair> = (0..2 * COMMITTEE as u64)
        .map(|i| Keypair::from_seed("light-validator", i))
        .filter(|k| members.contains(&k.address()))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(genesis.params.clone());
    let mut dbs = Vec::new();
    let mut replicas: Vec<Replica> = keys
        .into_iter()
        .enumerate()
        .map(|(i, key)| {
            let db = open_db(&dir.path().join(format!("beacon-{i}")));
            let r = Replica::open(
                &db,
                key,
                runtime.clone(),
                genesis,
                ReplicaConfig::default(),
                0,
            );
            dbs.push(db);
            r.expect("open beacon replica")
        })
        .collect();
    let mut queue: VecDeque<(usize, usize, Arc<Message>)> = VecDeque::new();
    let mut now: TimeMs = 0;
    let route = |queue: &mut VecDeque<_>, from: usize, outputs: Vec<Output>| {
        let mut change = None;
        for out in outputs {
            match out {
                Output::Broadcast(msg) => (0..COMMITTEE)
                    .filter(|&to| to != from)
                    .for_each(|to| queue.push_back((from, to, msg.clone()))),
                Output::Send(PeerId(to), msg) => queue.push_back((from, to as usize, msg)),
                Output::Committed(cb) => change = change.or(cb.epoch_change.clone()),
                Output::Evidence(_) => {}
            }
        }
        change
    };
    loop {
        assert!(
            now <= 300_000,
            "the beacon did not end epoch 0 in 300 virtual s"
        );
        let change = if let Some((from, to, msg)) = queue.pop_front() {
            let out = replicas[to]
                .handle(PeerId(from as u64), &msg, now)
                .unwrap_or_else(|e| panic!("beacon node {to} refused a {}: {e}", msg.kind()));
            route(&mut queue, to, out)
        } else {
            now = now.max(
                replicas
                    .iter()
                    .map(Replica::next_deadline)
                    .min()
                    .expect("nodes"),
            );
            let mut change = None;
            for (i, r) in replicas.iter_mut().enumerate() {
                if r.next_deadline() <= now {
                    change = change.or(route(&mut queue, i, r.tick(now).expect("tick")));
                }
            }
            change
        };
        if let Some(change) = change {
            return (*change).clone();
        }
    }
}

/// Shard 1 right after genesis, on its own store.
struct AccountShard {
    store: StateStore,
    runtime: Runtime,
    _disk: (sled::Db, tempfile::TempDir),
}

impl AccountShard {
    fn open(genesis: &Genesis) -> AccountShard {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open_db(dir.path());
        let mut store = StateStore::open(&db).expect("open store");
        let runtime = Runtime::for_shard(genesis.params.clone(), 1);
        runtime.init_genesis(&mut store, genesis).expect("genesis");
        AccountShard {
            store,
            runtime,
            _disk: (db, dir),
        }
    }

    fn env(&self) -> BlockEnv {
        next_env(&self.store, &self.runtime, None)
    }

    fn check(&self, tx: &SignedTransaction) -> Result<(), ChainError> {
        let ptx = PooledTx::new(tx.clone());
        self.runtime.check_relay(&self.store, &self.env(), &ptx)
    }
}

fn relay_tx(genesis: &Genesis, change: EpochChange, fee: Amount) -> SignedTransaction {
    relay_tx_on(1, genesis, change, fee)
}

fn relay_tx_on(
    shard: ShardId,
    genesis: &Genesis,
    change: EpochChange,
    fee: Amount,
) -> SignedTransaction {
    let relayer = Keypair::from_seed("light-relayer", 0);
    let call = LedgerModule::call(&LedgerCall::BeaconUpdate(Box::new(change)));
    sign_call(
        &relayer,
        shard,
        &genesis.params.chain_id,
        0,
        fee,
        1_000_000,
        call,
    )
}

#[test]
fn light_client_follows_the_beacon_into_the_next_epoch() {
    let genesis = genesis();
    let change = beacon_epoch_change(&genesis);
    assert_eq!(change.info.epoch, 1);
    let shard = AccountShard::open(&genesis);
    let tx = relay_tx(&genesis, change.clone(), 0);
    assert_eq!(shard.check(&tx), Ok(()));

    let executed = shard
        .runtime
        .execute(
            &shard.store,
            &shard.env(),
            vec![PooledTx::new(tx.clone())],
            Mode::Validate,
        )
        .expect("a block with the epoch change is valid");
    assert_eq!(executed.receipts.len(), 1);
    assert_eq!(executed.receipts[0].status, ReceiptStatus::Success);
    assert_eq!(executed.receipts[0].fee, 0, "relays pay no fee");
    // The shard switches to the beacon's committee for it in the same block.
    let committee = executed
        .diff
        .writes
        .get(K_COMMITTEE)
        .cloned()
        .flatten()
        .expect("new committee");
    let committee: ios_chain::block::Committee =
        ios_chain::codec::decode("committee", &committee, 1 << 20).expect("decode");
    assert_eq!(&committee, change.info.committee(1).expect("shard 1"));
    assert_eq!(committee.epoch, 1);
    let latest = executed
        .diff
        .writes
        .get(light_client::K_LATEST_EPOCH)
        .cloned()
        .flatten();
    assert_eq!(latest, Some(ios_chain::codec::encode(&1u64)));
}

#[test]
fn light_client_refuses_forged_and_misdirected_changes() {
    let genesis = genesis();
    let change = beacon_epoch_change(&genesis);
    let shard = AccountShard::open(&genesis);
    type Forge = fn(&mut EpochChange);
    let cases: [(&str, Forge, &str); 6] = [
        (
            "forged signature",
            |c| c.cert.signatures[0].1 .0[0] ^= 1,
            "invalid_certificate",
        ),
        (
            "too few signatures",
            |c| c.cert.signatures.truncate(1),
            "invalid_certificate",
        ),
        (
            "certificate of another block",
            |c| c.header.time += 1,
            "invalid_certificate",
        ),
        (
            "tampered committees",
            |c| c.info.committees.swap(0, 1),
            "proof",
        ),
        ("not the next epoch", |c| c.info.epoch = 2, "beacon"),
        ("not a beacon block", |c| c.header.shard = 1, "wrong_shard"),
    ];
    for (name, forge, code) in cases {
        let mut forged = change.clone();
        forge(&mut forged);
        let err = shard.check(&relay_tx(&genesis, forged, 0)).expect_err(name);
        assert_eq!(err.code(), code, "{name}: {err}");
    }
    // A fee on a relay is refused rather than silently burnt.
    let err = shard
        .check(&relay_tx(&genesis, change.clone(), 5))
        .expect_err("fee");
    assert_eq!(err.code(), "relay");
    // A proposer cannot slip a bad relay in: the block is invalid, nothing applies.
    let mut forged = change.clone();
    forged.cert.signatures[0].1 .0[0] ^= 1;
    let bad = PooledTx::new(relay_tx(&genesis, forged, 0));
    let err = shard
        .runtime
        .execute(
            &shard.store,
            &shard.env(),
            vec![bad.clone()],
            Mode::Validate,
        )
        .expect_err("invalid block");
    assert_eq!(err.code(), "invalid_block");
    let left_out = shard
        .runtime
        .execute(&shard.store, &shard.env(), vec![bad], Mode::Propose)
        .expect("propose");
    assert!(left_out.txs.is_empty() && left_out.receipts.is_empty());
    // The beacon does not follow itself.
    let beacon_dir = tempfile::tempdir().expect("tempdir");
    let db = open_db(beacon_dir.path());
    let mut store = StateStore::open(&db).expect("store");
    let beacon = Runtime::new(genesis.params.clone());
    beacon.init_genesis(&mut store, &genesis).expect("genesis");
    let mut env = shard.env();
    env.shard = BEACON;
    let ptx = PooledTx::new(relay_tx_on(BEACON, &genesis, change, 0));
    assert_eq!(
        beacon.check_relay(&store, &env, &ptx).map_err(|e| e.code()),
        Err("relay")
    );
}
