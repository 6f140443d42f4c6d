//! Integration tests of `ios-chain`, in one binary (one `mod` per topic).
//!
//! Shared here: opening sled directories, signing ledger calls, driving a
//! single-validator replica, and the golden-vector check that makes a change
//! of any canonical encoding or hash show up as a diff in `test_data/`.

mod atomix;
mod beacon;
mod encoding;
mod fast_sync;
mod ledger;
mod light_client;
mod pvss;
mod replica;
mod sim;
mod state_proofs;

use ios_chain::block::{BlockHeader, Committee, Receipt};
use ios_chain::committee;
use ios_chain::crypto::Address;
use ios_chain::crypto::Keypair;
use ios_chain::execute::Executed;
use ios_chain::execute::Runtime;
use ios_chain::ledger::{LedgerCall, LedgerModule};
use ios_chain::module::BlockEnv;
use ios_chain::params::Genesis;
use ios_chain::replica::{CommittedBlock, Output, Replica, ReplicaConfig};
use ios_chain::shard::BEACON;
use ios_chain::state::StateStore;
use ios_chain::tx::{Call, SignedTransaction, Transaction};
use ios_chain::types::{Amount, ChainId, Height, ShardId, TimeMs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Fee that covers the minimum (1 unit per byte) of every ordinary test transaction.
pub const FEE: Amount = 10_000;

/// Opens a sled database the way the simulator does (no background flusher):
/// dropping the handle is a crash, only what sled already wrote survives.
pub fn open_db(dir: &Path) -> sled::Db {
    ios_chain::state::open_db(dir, None)
        .unwrap_or_else(|e| panic!("opening sled at {}: {e}", dir.display()))
}

/// A one-validator chain on its own sled directory, after genesis.
pub struct Solo {
    pub replica: Replica,
    pub now: TimeMs,
    pub users: Vec<Keypair>,
    _db: sled::Db,
    _dir: tempfile::TempDir,
}

impl Solo {
    pub fn open(validator: Keypair, users: Vec<Keypair>, genesis: &Genesis) -> Solo {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open_db(dir.path());
        let replica = Replica::open(
            &db,
            validator,
            Runtime::new(genesis.params.clone()),
            genesis,
            ReplicaConfig::default(),
            0,
        )
        .expect("open replica");
        Solo {
            replica,
            now: 0,
            users,
            _db: db,
            _dir: dir,
        }
    }
}

/// The environment of the block after `store`'s head on `runtime`'s shard,
/// in round 0, proposed by `proposer` (by default the committee's first member).
pub fn next_env(store: &StateStore, runtime: &Runtime, proposer: Option<Address>) -> BlockEnv {
    let head = store.head().expect("genesis committed");
    let committee: Committee = committee::read(store, committee::K_COMMITTEE)
        .expect("read")
        .expect("committee");
    BlockEnv {
        chain_id: runtime.params().chain_id.clone(),
        shard: runtime.shard(),
        height: head.height + 1,
        epoch: committee.epoch,
        round: 0,
        time: head.time + 1,
        proposer: proposer.unwrap_or(committee.members[0]),
        prev: head.block,
    }
}

/// The header of the block `executed` for `env`.
pub fn header_of(env: &BlockEnv, executed: &Executed) -> BlockHeader {
    BlockHeader {
        chain_id: env.chain_id.clone(),
        shard: env.shard,
        height: env.height,
        epoch: env.epoch,
        round: env.round,
        prev: env.prev,
        tx_root: executed.tx_root,
        receipts_root: executed.receipts_root,
        state_root: executed.diff.state_root,
        proposer: env.proposer,
        time: env.time,
    }
}

/// Signs `call` from `key` with explicit envelope fields.
pub fn sign_call(
    key: &Keypair,
    shard: ShardId,
    chain_id: &ChainId,
    nonce: u64,
    fee: Amount,
    expires_at: Height,
    call: Call,
) -> SignedTransaction {
    Transaction {
        chain_id: chain_id.clone(),
        shard,
        sender: key.address(),
        nonce,
        fee,
        expires_at,
        call,
    }
    .sign(key)
}

/// An ordinary, valid ledger transaction: fee [`FEE`], expiring far in the future.
pub fn ledger_tx(
    key: &Keypair,
    chain_id: &ChainId,
    nonce: u64,
    call: &LedgerCall,
) -> SignedTransaction {
    sign_call(
        key,
        BEACON,
        chain_id,
        nonce,
        FEE,
        1_000_000,
        LedgerModule::call(call),
    )
}

/// Ticks a replica that is the only member of its committee until it commits
/// one block, and returns that block with its receipts.
pub fn tick_until_commit(replica: &mut Replica, now: &mut TimeMs) -> Arc<CommittedBlock> {
    let start = replica.height();
    for _ in 0..100 {
        *now = (*now).max(replica.next_deadline());
        let outputs = replica.tick(*now).expect("tick");
        for out in outputs {
            if let Output::Committed(cb) = out {
                assert_eq!(cb.block.header.height, start);
                assert_eq!(replica.height(), start + 1);
                return cb;
            }
        }
    }
    panic!("a solo replica did not commit height {start} within 100 ticks");
}

/// The receipt of the transaction `id` in `receipts`.
pub fn receipt_of<'a>(receipts: &'a [Receipt], tx: &SignedTransaction) -> &'a Receipt {
    let id = tx.id();
    receipts
        .iter()
        .find(|r| r.tx == id)
        .unwrap_or_else(|| panic!("no receipt for transaction {id}"))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn test_data(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("test_data")
        .join(file)
}

/// Compares `vectors` with the golden file `test_data/<file>` (lines of
/// `name = value`). With `IOS_UPDATE_GOLDEN=1` it rewrites the file instead,
/// so a deliberate format change is one command and a visible diff.
pub fn check_golden(file: &str, vectors: &[(&str, String)]) {
    let mut actual = String::from(
        "# Golden vectors written by chain/tests/it; regenerate with IOS_UPDATE_GOLDEN=1.\n",
    );
    for (name, value) in vectors {
        actual.push_str(&format!("{name} = {value}\n"));
    }
    let path = test_data(file);
    if std::env::var_os("IOS_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir test_data");
        std::fs::write(&path, &actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with IOS_UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    let parse = |s: &str| -> Vec<(String, String)> {
        s.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let (k, v) = l.split_once(" = ").expect("golden line is `name = value`");
                (k.to_string(), v.to_string())
            })
            .collect()
    };
    let (want, got) = (parse(&expected), parse(&actual));
    for ((wk, wv), (gk, gv)) in want.iter().zip(&got) {
        assert_eq!(wk, gk, "{}: vector names differ", path.display());
        assert_eq!(
            wv,
            gv,
            "{}: `{wk}` changed: a canonical encoding or hash is different \
             (if deliberate, rerun with IOS_UPDATE_GOLDEN=1 and review the diff)",
            path.display()
        );
    }
    assert_eq!(
        want.len(),
        got.len(),
        "{}: number of vectors differs",
        path.display()
    );
}
