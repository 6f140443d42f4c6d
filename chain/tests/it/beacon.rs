//! The epoch randomness beacon on chain, on four replicas: anyone can
//! re-derive epoch 0's output from the committed blocks alone; a member that
//! withholds its reveal neither stops the epoch nor changes the output (its
//! shares, computed offline, and any threshold of reveals give the same
//! value); and every malformed Deal, Reveal or RegisterPvssKey call fails
//! with its typed code and writes no beacon state.

use crate::{open_db, receipt_of, sign_call};
use borsh::BorshDeserialize;
use ios_chain::beacon::{self, RandomnessRound, K_LAST_ROUND, K_ROUND};
use ios_chain::block::ReceiptStatus;
use ios_chain::codec;
use ios_chain::committee::{self, K_RANDOMNESS};
use ios_chain::crypto::{Address, Keypair};
use ios_chain::execute::{Executed, Mode, Runtime};
use ios_chain::hash::Hash;
use ios_chain::ledger::{LedgerCall, LedgerModule, MAX_LEDGER_CALL};
use ios_chain::message::{Message, PeerId};
use ios_chain::module::BlockEnv;
use ios_chain::params::Genesis;
use ios_chain::pvss::{self, Dealing, DecryptedShare, DleqProof, PvssPublicKey};
use ios_chain::replica::{Output, Replica, ReplicaConfig};
use ios_chain::shard::BEACON;
use ios_chain::sim::{sim_genesis, sim_params};
use ios_chain::state::{StateStore, WriteSet};
use ios_chain::tx::{ModuleId, PooledTx, SignedTransaction};
use ios_chain::types::{Amount, ChainId, TimeMs};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

const VALIDATORS: usize = 4;
/// Covers the 1-unit-per-byte minimum of a dealing (~600 bytes for four members).
const BEACON_FEE: Amount = 100_000;
const NOT_MEMBER: &str = "not_committee_member";

fn validator_keys() -> Vec<Keypair> {
    (0..VALIDATORS as u64)
        .map(|i| Keypair::from_seed("beacon-validator", i))
        .collect()
}

/// Funded, but not a validator.
fn user_key() -> Keypair {
    Keypair::from_seed("beacon-user", 0)
}

fn genesis() -> Genesis {
    sim_genesis(sim_params(VALIDATORS), &validator_keys(), &[user_key()])
}

fn chain_id() -> ChainId {
    sim_params(VALIDATORS).chain_id
}

/// A value that must be in `store`.
fn must_read<T: BorshDeserialize>(store: &StateStore, key: &[u8]) -> T {
    committee::read(store, key).expect("read").expect("present")
}

// ---- four replicas ----

/// The replicas after a run, and the databases and directory they live in
/// (fields drop in order: the replicas first).
struct Nodes {
    replicas: Vec<Replica>,
    _disk: (Vec<sled::Db>, tempfile::TempDir),
}

fn route(queue: &mut VecDeque<(usize, usize, Arc<Message>)>, from: usize, outputs: Vec<Output>) {
    for out in outputs {
        match out {
            Output::Broadcast(msg) => (0..VALIDATORS)
                .filter(|&to| to != from)
                .for_each(|to| queue.push_back((from, to, msg.clone()))),
            Output::Send(PeerId(to), msg) => queue.push_back((from, to as usize, msg)),
            Output::Committed(_) | Output::Evidence(_) => {}
        }
    }
}

/// Runs four replicas, wired by a FIFO network on virtual time (the minimal
/// part of replica.rs's `Net`), until `done`. Node `withholder`, if any,
/// never posts its reveals.
fn run_net(withholder: Option<usize>, done: impl Fn(&[Replica]) -> bool) -> Nodes {
    let genesis = genesis();
    let runtime = Runtime::new(genesis.params.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut replicas, mut dbs) = (Vec::new(), Vec::new());
    for (i, key) in validator_keys().into_iter().enumerate() {
        let db = open_db(&dir.path().join(format!("node-{i}")));
        let config = ReplicaConfig {
            reveal_randomness: withholder != Some(i),
            ..ReplicaConfig::default()
        };
        let r = Replica::open(&db, key, runtime.clone(), &genesis, config, 0);
        replicas.push(r.expect("open replica"));
        dbs.push(db);
    }
    let mut queue: VecDeque<(usize, usize, Arc<Message>)> = VecDeque::new();
    let mut now: TimeMs = 0;
    while !done(&replicas) {
        assert!(now <= 300_000, "not done in 300 virtual s");
        if let Some((from, to, msg)) = queue.pop_front() {
            // Honest replicas on a clean network send nothing worth refusing.
            let outputs = replicas[to]
                .handle(PeerId(from as u64), &msg, now)
                .unwrap_or_else(|e| panic!("node {to} refused a {}: {e}", msg.kind()));
            route(&mut queue, to, outputs);
            continue;
        }
        let next = replicas.iter().map(Replica::next_deadline).min();
        now = now.max(next.expect("replicas"));
        for (i, r) in replicas.iter_mut().enumerate() {
            if r.next_deadline() <= now {
                route(&mut queue, i, r.tick(now).expect("tick"));
            }
        }
    }
    let _disk = (dbs, dir);
    Nodes { replicas, _disk }
}

/// Epoch 0's round as the chain recorded it, with its output and the
/// successful Deal and Reveal calls of epoch 0's blocks.
struct Run {
    round: RandomnessRound,
    output: Hash,
    dealings: Vec<(Address, Dealing)>,
    reveals: Vec<(Address, Vec<DecryptedShare>)>,
}

/// Runs until every node is in epoch 1, reads the [`Run`] from node 0's
/// committed blocks, receipts and state only, and checks what must hold of
/// every run: the output re-derived from that data is the recorded one,
/// every node moved to it, and it is not the genesis randomness carried over.
fn check_run(withholder: Option<usize>) -> Run {
    let nodes = run_net(withholder, |rs| rs.iter().all(|r| r.committee().epoch >= 1));
    let store = nodes.replicas[0].store();
    let (round, output) = must_read(store, K_LAST_ROUND);
    let (mut dealings, mut reveals) = (Vec::new(), Vec::new());
    for h in 1..=store.head().expect("head").height {
        let (block, _) = store.block(h).expect("read").expect("stored block");
        let receipts = store.receipts(h).expect("read").expect("stored receipts");
        // Failed calls are in blocks too; only successful ones were checked and stored.
        let ok = |tx: &&SignedTransaction| {
            let core = tx.tx.call.module == ModuleId::CORE && block.header.epoch == 0;
            core && receipt_of(&receipts, tx).status == ReceiptStatus::Success
        };
        for tx in block.txs.iter().filter(ok) {
            let (call, sender) = (&tx.tx.call, tx.tx.sender);
            match codec::decode("ledger call", &call.payload, MAX_LEDGER_CALL).expect("decode") {
                LedgerCall::Deal { dealing, .. } => dealings.push((sender, *dealing)),
                LedgerCall::Reveal { shares, .. } => reveals.push((sender, shares)),
                _ => {}
            }
        }
    }
    let run = Run {
        round,
        output,
        dealings,
        reveals,
    };
    assert_eq!(run.round.epoch, 0, "node 0 is past epoch 1");
    let derived = beacon::verify_run(&chain_id(), &run.round, &run.dealings, &run.reveals);
    assert_eq!(derived, Ok(run.output));
    for (i, r) in nodes.replicas.iter().enumerate() {
        let randomness: Hash = must_read(r.store(), K_RANDOMNESS);
        assert_eq!(randomness, run.output, "node {i}: R_1");
    }
    assert_ne!(run.output, genesis().randomness, "R_1 is R_0");
    // Below the threshold nothing is recoverable: verify_run really used the reveals.
    let few = &run.reveals[..run.round.threshold() - 1];
    let few = beacon::verify_run(&chain_id(), &run.round, &run.dealings, few);
    assert!(few.is_err(), "{few:?}");
    run
}

#[test]
fn beacon_output_verifies_from_chain_data_alone() {
    let run = check_run(None);
    // Everyone dealt well inside the window, so Q is the whole committee.
    assert_eq!(run.round.qualified.as_deref(), Some(&run.round.members[..]));
    assert_eq!(run.reveals.len(), run.round.revealed.len());
}

#[test]
fn beacon_withheld_reveal_is_recovered_and_the_output_is_unchanged() {
    // Withhold share index 1: recovery takes the lowest t indices, so with
    // all four reveals the withheld share is really used.
    let keys = validator_keys();
    let w = (0..VALIDATORS).min_by_key(|&i| keys[i].address());
    let w = w.expect("validators");
    let run = check_run(Some(w));
    let (round, me) = (&run.round, keys[w].address());
    let q = round.qualified.clone().expect("Q fixed");
    assert_eq!(round.index_of(&me), Some(0));
    assert!(q.contains(&me), "the withholder still dealt");
    assert!(!round.revealed.contains(&me), "the withholder revealed");

    let pvss_key = keys[w].pvss();
    let dealing_of: BTreeMap<Address, Dealing> = run.dealings.iter().cloned().collect();
    let withheld = q.iter().map(|dealer| {
        let dealing = &dealing_of[dealer];
        let cx = beacon::context(&chain_id(), round.epoch, dealer);
        pvss::decrypt_share(&cx, &pvss_key, 1, dealing).expect("decrypt")
    });
    let mut all = run.reveals.clone();
    all.push((me, withheld.collect()));
    assert_eq!(all.len(), VALIDATORS);
    let check = |what: String, reveals: &[(Address, Vec<DecryptedShare>)]| {
        let got = beacon::verify_run(&chain_id(), round, &run.dealings, reveals);
        assert_eq!(got, Ok(run.output), "{what}");
    };
    check("all four reveals".into(), &all);
    // Every pair (t = 2 of 4): the honest ones alone, and each with the withheld share.
    assert_eq!(round.threshold(), 2);
    for a in 0..all.len() {
        for b in a + 1..all.len() {
            let pair = [all[a].clone(), all[b].clone()];
            check(format!("reveals {a}, {b}"), &pair);
        }
    }
}

// ---- single calls, executed directly on a replica's committed state ----

/// Blocks executed with `Runtime::execute` (as ledger.rs's harness does) on
/// a replica's committed state but never committed, so a test decides which
/// calls a block holds and every case starts from the same state.
struct Chain<'a> {
    store: &'a StateStore,
    runtime: &'a Runtime,
}

impl Chain<'_> {
    fn of(replica: &Replica) -> Chain<'_> {
        let (store, runtime) = (replica.store(), replica.runtime());
        Chain { store, runtime }
    }

    fn round(&self) -> RandomnessRound {
        must_read(self.store, K_ROUND)
    }

    /// The block after the head, proposed by validator 0 in round 0.
    fn env(&self) -> BlockEnv {
        let head = self.store.head().expect("genesis committed");
        BlockEnv {
            chain_id: chain_id(),
            shard: self.runtime.shard(),
            height: head.height + 1,
            epoch: self.round().epoch,
            round: 0,
            time: head.time + 1,
            proposer: validator_keys()[0].address(),
            prev: head.block,
        }
    }

    fn execute(&self, txs: &[SignedTransaction]) -> Executed {
        let pooled = txs.iter().cloned().map(PooledTx::new).collect();
        let executed = self
            .runtime
            .execute(self.store, &self.env(), pooled, Mode::Propose);
        let executed = executed.expect("execute");
        // Admission (nonce, fee) must pass, or the call under test never ran.
        assert_eq!(executed.txs.len(), txs.len(), "a transaction was left out");
        executed
    }

    /// `call` from `key` with its next nonce plus `later`.
    fn tx(&self, key: &Keypair, later: u64, call: LedgerCall) -> SignedTransaction {
        let nonce = committee::read_account(self.store, &key.address())
            .expect("read")
            .nonce;
        let call = LedgerModule::call(&call);
        sign_call(
            key,
            BEACON,
            &chain_id(),
            nonce + later,
            BEACON_FEE,
            1_000_000,
            call,
        )
    }

    /// A valid epoch-0 dealing from validator `seed_of`'s seed, made for validator `dealer`.
    fn dealing(&self, seed_of: usize, dealer: usize) -> Dealing {
        let (round, keys) = (self.round(), validator_keys());
        let cx = beacon::context(&chain_id(), 0, &keys[dealer].address());
        let seed = keys[seed_of].dealing_seed(&chain_id(), 0);
        pvss::deal(&cx, &round.keys, round.threshold(), &seed).expect("deal")
    }

    /// Validator `v`'s share (index `index`) of `dealer`'s dealing `dealing`.
    fn share(&self, v: usize, index: u32, dealer: &Address, dealing: &Dealing) -> DecryptedShare {
        let (cx, key) = (
            beacon::context(&chain_id(), 0, dealer),
            validator_keys()[v].pvss(),
        );
        pvss::decrypt_share(&cx, &key, index, dealing).expect("decrypt")
    }

    /// Validator `v`'s reveal: its shares of every dealing in Q, in Q's order.
    fn shares(&self, v: usize) -> Vec<DecryptedShare> {
        let round = self.round();
        let index = round.index_of(&validator_keys()[v].address());
        let index = index.expect("member") as u32 + 1;
        let q = round.qualified.expect("Q fixed");
        let dealing = |d| must_read::<Dealing>(self.store, &beacon::dealing_key(d));
        q.iter()
            .map(|d| self.share(v, index, d, &dealing(d)))
            .collect()
    }
}

fn deal(epoch: u64, dealing: Dealing) -> LedgerCall {
    LedgerCall::Deal {
        epoch,
        dealing: Box::new(dealing),
    }
}

fn reveal(epoch: u64, shares: Vec<DecryptedShare>) -> LedgerCall {
    LedgerCall::Reveal { epoch, shares }
}

fn register(key: [u8; 32], proof: DleqProof) -> LedgerCall {
    LedgerCall::RegisterPvssKey {
        key: PvssPublicKey(key),
        proof,
    }
}

/// `owner`'s PVSS key with a proof of possession made for `account`.
fn possession(owner: &Keypair, account: &Keypair) -> ([u8; 32], DleqProof) {
    let cx = beacon::possession_context(&sim_params(VALIDATORS).chain_id, &account.address());
    let pvss = owner.pvss();
    (pvss.public().0, pvss::prove_possession(&cx, &pvss))
}

/// One block of calls: each one's expected outcome (`None` = success), and
/// the beacon and PVSS-key writes the block makes beyond an empty block's.
struct Case {
    name: &'static str,
    txs: Vec<SignedTransaction>,
    want: Vec<Option<&'static str>>,
    writes: WriteSet,
}

/// A case of one transaction that fails with `code` and writes nothing.
fn fails(name: &'static str, tx: SignedTransaction, code: &'static str) -> Case {
    let (txs, want, writes) = (vec![tx], vec![Some(code)], WriteSet::new());
    Case {
        name,
        txs,
        want,
        writes,
    }
}

fn beacon_writes(executed: &Executed) -> WriteSet {
    let mut w = executed.diff.writes.clone();
    w.retain(|k, _| k.starts_with(b"core/beacon/") || k.starts_with(b"core/pvss/"));
    w
}

/// Executes `case` as the next block (not committed) and checks every
/// receipt and the beacon state it writes. Returns the round after the block.
fn check(chain: &Chain<'_>, case: &Case) -> RandomnessRound {
    let name = case.name;
    // end_block may touch the round by itself (e.g. fix Q): that is not the calls' doing.
    let baseline = beacon_writes(&chain.execute(&[]));
    let executed = chain.execute(&case.txs);
    assert_eq!(
        case.want.len(),
        case.txs.len(),
        "{name}: one outcome per call"
    );
    for (tx, want) in case.txs.iter().zip(&case.want) {
        let status = &receipt_of(&executed.receipts, tx).status;
        let ok = match (want, status) {
            (None, ReceiptStatus::Success) => true,
            (Some(want), ReceiptStatus::Failed { code, .. }) => code == want,
            _ => false,
        };
        assert!(ok, "{name}: want {want:?}, got {status:?}");
    }
    let mut written = beacon_writes(&executed);
    written.retain(|k, v| baseline.get(k) != Some(v));
    assert_eq!(written, case.writes, "{name}: beacon state written");
    match executed.diff.writes.get(K_ROUND) {
        Some(Some(bytes)) => codec::decode("round", bytes, usize::MAX).expect("decode round"),
        _ => chain.round(),
    }
}

#[test]
fn beacon_bad_calls_are_typed_errors_and_change_nothing() {
    // At genesis the window of epoch 0 is open and nobody has dealt yet.
    let nodes = run_net(None, |_| true);
    let chain = Chain::of(&nodes.replicas[0]);
    let keys = validator_keys();
    let (v0, v1, user) = (&keys[0], &keys[1], &user_key());
    let honest = chain.dealing(0, 0);
    let mut flipped = honest.clone();
    flipped.commitments[1][0] ^= 1;
    let mut swapped = honest.clone();
    swapped.proofs.swap(0, 1);
    // A well-formed share of v0's own dealing: refused only for being early.
    let index = chain.round().index_of(&v0.address()).expect("member") as u32 + 1;
    let early = chain.share(0, index, &v0.address(), &honest);
    let (_, own_proof) = possession(v0, v0);
    let (v1_key, v1_proof) = possession(v1, v1);
    let user_key = possession(user, user);
    let f = |name, call, code| fails(name, chain.tx(v0, 0, call), code);
    let u = |name, call| fails(name, chain.tx(user, 0, call), NOT_MEMBER);
    let cases = [
        f("tampered commitment", deal(0, flipped), "pvss"),
        f("swapped proofs", deal(0, swapped), "pvss"),
        f("another's context", deal(0, chain.dealing(0, 1)), "pvss"),
        f("wrong epoch", deal(1, honest.clone()), "beacon"),
        f("reveal before Q", reveal(0, vec![early]), "beacon"),
        f(
            "key not a point",
            register([0xff; 32], own_proof.clone()),
            "beacon",
        ),
        f(
            "identity key",
            register([0; 32], own_proof.clone()),
            "beacon",
        ),
        // v1's key with v0's own proof: v0 cannot prove it holds v1's secret.
        f("another's key", register(v1_key, own_proof.clone()), "pvss"),
        // v1's real proof is bound to v1's address: replayed by v0 it fails.
        f("replayed proof", register(v1_key, v1_proof), "pvss"),
        u("not a member", deal(0, honest.clone())),
        // Anyone may register a key it can prove it holds (it serves once bonded).
        Case {
            name: "user registers its own key",
            txs: vec![chain.tx(user, 0, register(user_key.0, user_key.1.clone()))],
            want: vec![None],
            writes: WriteSet::from([
                (
                    beacon::pvss_key_key(&user.address()),
                    Some(codec::encode(&PvssPublicKey(user_key.0))),
                ),
                (
                    beacon::pvss_owner_key(&PvssPublicKey(user_key.0)),
                    Some(codec::encode(&user.address())),
                ),
            ]),
        },
        // The first dealing is kept; a second, different one is refused.
        Case {
            name: "second dealing in the block",
            txs: vec![
                chain.tx(v0, 0, deal(0, honest.clone())),
                chain.tx(v0, 1, deal(0, chain.dealing(1, 0))),
            ],
            want: vec![None, Some("beacon")],
            writes: WriteSet::from([(
                beacon::dealing_key(&v0.address()),
                Some(codec::encode(&honest)),
            )]),
        },
    ];
    for case in &cases {
        check(&chain, case);
    }
}

#[test]
fn beacon_reveal_with_a_bad_share_is_rejected() {
    // The replicas run until node 0 has committed the block that fixes Q;
    // node 0 withholds its reveals, so the crafted ones below, executed on
    // its state, race no honest reveal of the same member.
    let fixed = |rs: &[Replica]| Chain::of(&rs[0]).round().qualified.is_some();
    let nodes = run_net(Some(0), fixed);
    let chain = Chain::of(&nodes.replicas[0]);
    let round = chain.round();
    assert_eq!(round.qualified.as_deref(), Some(&round.members[..]));
    assert_eq!(chain.store.head().expect("head").height, round.window_end);

    let (keys, user) = (validator_keys(), user_key());
    let m = &keys[0];
    let good = chain.shares(0);
    // The honest reveal with one thing changed.
    let bad = |f: fn(&mut Vec<DecryptedShare>)| {
        let mut s = good.clone();
        f(&mut s);
        reveal(0, s)
    };
    let mut revealed = round.clone();
    revealed.revealed.push(m.address());
    let f = |name, call, code| fails(name, chain.tx(m, 0, call), code);
    let u = |name, call| fails(name, chain.tx(&user, 0, call), NOT_MEMBER);
    let cases = [
        f("tampered share", bad(|s| s[1].share[0] ^= 1), "pvss"),
        f("tampered proof", bad(|s| s[0].proof.r[0] ^= 1), "pvss"),
        f("out of Q's order", bad(|s| s.swap(0, 1)), "pvss"),
        f("wrong index", bad(|s| s[2].index += 1), "beacon"),
        f("too few shares", bad(|s| s.truncate(2)), "beacon"),
        f("someone else's", reveal(0, chain.shares(1)), "beacon"),
        f("wrong epoch", reveal(1, good.clone()), "beacon"),
        u("not a member", reveal(0, good.clone())),
        // The control: the same shares untampered are stored, once.
        Case {
            name: "valid, then again",
            txs: vec![
                chain.tx(m, 0, reveal(0, good.clone())),
                chain.tx(m, 1, reveal(0, good.clone())),
            ],
            want: vec![None, Some("beacon")],
            writes: WriteSet::from([
                (beacon::reveal_key(&m.address()), Some(codec::encode(&good))),
                (K_ROUND.to_vec(), Some(codec::encode(&revealed))),
            ]),
        },
    ];
    for case in &cases {
        let stored = check(&chain, case).revealed.contains(&m.address());
        assert_eq!(stored, case.want.contains(&None), "{}: revealed", case.name);
    }
}
