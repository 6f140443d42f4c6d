//! Atomix across real shard stores: the beacon and two account shards, each
//! block signed into a commit certificate by its shard's genesis committee
//! (no consensus run is needed to make certified blocks). Transfers commit
//! or refund everywhere, IOST is conserved across shards, and every forged,
//! misdirected or replayed proof is a typed error that changes nothing.

use crate::{header_of, next_env, open_db, sign_call, FEE};
use ios_chain::atomix::{
    self, BatchStep, CrossInput, CrossTransfer, Decision, InputState, Outcome, ReceiptProof,
    RelayBatch,
};
use ios_chain::block::{
    Block, BlockHeader, CommitCertificate, Receipt, ReceiptStatus, SignedVote, Vote, VoteKind,
};
use ios_chain::committee;
use ios_chain::crypto::{Address, Keypair};
use ios_chain::error::ChainError;
use ios_chain::execute::{total_supply, Mode, Runtime};
use ios_chain::ledger::Evidence;
use ios_chain::ledger::{LedgerCall, LedgerModule};
use ios_chain::module::{keys, BlockEnv, CallContext, Module};
use ios_chain::params::Genesis;
use ios_chain::relayer::{step_call, Relayer};
use ios_chain::shard::home_shard;
use ios_chain::sim::{sim_genesis, sim_params};
use ios_chain::state::StateStore;
use ios_chain::tx::{Call, ModuleId, PooledTx, SignedTransaction};
use ios_chain::types::{Amount, ShardId};
use std::sync::Arc;

const COMMITTEE: usize = 4;
const SHARDS: u16 = 2;

fn validator_keys() -> Vec<Keypair> {
    (0..COMMITTEE as u64 * (SHARDS as u64 + 1))
        .map(|i| Keypair::from_seed("atomix-validator", i))
        .collect()
}

/// Users until there are two on each account shard.
fn user_keys() -> Vec<Keypair> {
    let mut per_shard = [0usize; SHARDS as usize + 1];
    let mut out = Vec::new();
    for i in 0.. {
        let k = Keypair::from_seed("atomix-user", i);
        let s = home_shard(&k.address(), SHARDS) as usize;
        if per_shard[s] < 2 {
            per_shard[s] += 1;
            out.push(k);
        }
        if per_shard[1..].iter().all(|&c| c == 2) {
            break;
        }
    }
    out
}

fn genesis() -> Genesis {
    let mut params = sim_params(COMMITTEE);
    params.shards = SHARDS;
    sim_genesis(params, &validator_keys(), &user_keys())
}

/// One shard on its own store, committing blocks certified by its committee.
struct Shard {
    id: ShardId,
    store: StateStore,
    runtime: Runtime,
    committee_keys: Vec<Keypair>,
    _disk: (sled::Db, tempfile::TempDir),
}

/// A committed block and what a proof of one of its receipts needs.
struct Certified {
    block: Block,
    header: BlockHeader,
    cert: CommitCertificate,
    receipts: Vec<Receipt>,
}

impl Certified {
    fn proof_of(&self, tx: &SignedTransaction) -> ReceiptProof {
        let index = self
            .receipts
            .iter()
            .position(|r| r.tx == tx.id())
            .expect("the transaction is in the block");
        ReceiptProof::new(&self.header, &self.cert, &self.receipts, index).expect("proof")
    }
}

impl Shard {
    fn open(genesis: &Genesis, id: ShardId, modules: &[Arc<dyn Module>]) -> Shard {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open_db(dir.path());
        let mut store = StateStore::open(&db).expect("store");
        let runtime = modules
            .iter()
            .fold(Runtime::for_shard(genesis.params.clone(), id), |r, m| {
                r.with_module(m.clone())
            });
        runtime.init_genesis(&mut store, genesis).expect("genesis");
        let members = genesis.epoch_zero().committees[id as usize].members.clone();
        let committee_keys = validator_keys()
            .into_iter()
            .filter(|k| members.contains(&k.address()))
            .collect();
        Shard {
            id,
            store,
            runtime,
            committee_keys,
            _disk: (db, dir),
        }
    }

    fn env(&self) -> BlockEnv {
        next_env(&self.store, &self.runtime, None)
    }

    /// Whether `tx` would apply now: relays by `check_relay`, others by the
    /// status of their receipt in a trial block.
    fn check(&self, tx: &SignedTransaction) -> Result<(), String> {
        let ptx = PooledTx::new(tx.clone());
        if ios_chain::execute::is_relay(&ptx) {
            return self
                .runtime
                .check_relay(&self.store, &self.env(), &ptx)
                .map_err(|e| e.code().to_string());
        }
        let ex = self
            .runtime
            .execute(&self.store, &self.env(), vec![ptx], Mode::Propose)
            .expect("execute");
        match &ex.receipts[0].status {
            ReceiptStatus::Success => Ok(()),
            ReceiptStatus::Failed { code, .. } => Err(code.clone()),
        }
    }

    /// Executes, signs a certificate with the committee's keys and commits.
    fn commit(&mut self, txs: &[SignedTransaction]) -> Certified {
        let env = self.env();
        let pooled: Vec<PooledTx> = txs.iter().cloned().map(PooledTx::new).collect();
        let executed = self
            .runtime
            .execute(&self.store, &env, pooled, Mode::Validate)
            .unwrap_or_else(|e| panic!("shard {}: block invalid: {e}", self.id));
        let header = header_of(&env, &executed);
        let block = Block {
            header: header.clone(),
            txs: txs.to_vec(),
        };
        let vote = Vote {
            chain_id: env.chain_id.clone(),
            shard: self.id,
            epoch: header.epoch,
            height: env.height,
            round: 0,
            kind: VoteKind::Precommit,
            block: Some(block.hash()),
        };
        let mut signatures: Vec<_> = self
            .committee_keys
            .iter()
            .map(|k| {
                let sv = SignedVote::new(vote.clone(), k);
                (sv.voter, sv.signature)
            })
            .collect();
        signatures.sort_by_key(|(a, _)| *a);
        let cert = CommitCertificate {
            height: env.height,
            round: 0,
            block: block.hash(),
            signatures,
        };
        self.store
            .commit_block(&block, &cert, &executed.receipts, &executed.diff)
            .expect("commit");
        Certified {
            block,
            header,
            cert,
            receipts: executed.receipts,
        }
    }

    fn balance(&self, a: &Address) -> Amount {
        committee::read_account(&self.store, a)
            .expect("account")
            .balance
    }

    fn read<T: borsh::BorshDeserialize>(&self, key: &[u8]) -> Option<T> {
        committee::read(&self.store, key).expect("read")
    }

    /// The decision this (output) shard recorded for `x`.
    fn decision(&self, x: &CrossTransfer) -> Option<Decision> {
        self.read(&atomix::decided_key(&x.id()))
    }
}

struct Net {
    genesis: Genesis,
    shards: Vec<Shard>,
    users: Vec<Keypair>,
    nonces: std::collections::BTreeMap<Address, u64>,
    relayer: Keypair,
}

impl Net {
    fn new() -> Net {
        Net::with_modules(&[])
    }

    /// Every shard running `modules` besides the ledger.
    fn with_modules(modules: &[Arc<dyn Module>]) -> Net {
        let genesis = genesis();
        let shards = (0..=SHARDS)
            .map(|s| Shard::open(&genesis, s, modules))
            .collect();
        Net {
            genesis,
            shards,
            users: user_keys(),
            nonces: Default::default(),
            relayer: Keypair::from_seed("atomix-relayer", 0),
        }
    }

    /// The first user living on `shard`, and the second.
    fn user(&self, shard: ShardId, n: usize) -> Keypair {
        self.users
            .iter()
            .filter(|k| home_shard(&k.address(), SHARDS) == shard)
            .nth(n)
            .expect("user")
            .clone()
    }

    fn lock_tx(&mut self, who: &Keypair, x: &CrossTransfer, input: u32) -> SignedTransaction {
        let nonce = self.nonces.entry(who.address()).or_default();
        let call = LedgerModule::call(&LedgerCall::AtomixLock {
            x: Box::new(x.clone()),
            input,
        });
        let tx = sign_call(
            who,
            x.inputs[input as usize].shard,
            &self.genesis.params.chain_id,
            *nonce,
            FEE,
            1_000_000,
            call,
        );
        *nonce += 1;
        tx
    }

    /// A relay transaction of `call`, for the shard its step names.
    fn relay(&self, call: LedgerCall) -> SignedTransaction {
        let shard = match &call {
            LedgerCall::AtomixCommit { x, .. } | LedgerCall::AtomixAbort { x } => x.output_shard,
            LedgerCall::AtomixUnlock { x, input, .. } => x.inputs[*input as usize].shard,
            LedgerCall::AtomixBatch(b) => b.steps.first().map_or(0, |s| s.shard()),
            _ => 0,
        };
        self.relay_on(shard, call)
    }

    fn relay_on(&self, shard: ShardId, call: LedgerCall) -> SignedTransaction {
        sign_call(
            &self.relayer,
            shard,
            &self.genesis.params.chain_id,
            0,
            0,
            u64::MAX,
            LedgerModule::call(&call),
        )
    }

    fn commit_tx(&self, x: &CrossTransfer, proofs: Vec<ReceiptProof>) -> SignedTransaction {
        self.relay(LedgerCall::AtomixCommit {
            x: Box::new(x.clone()),
            proofs,
        })
    }

    fn unlock_tx(&self, x: &CrossTransfer, input: u32, proof: ReceiptProof) -> SignedTransaction {
        self.relay(LedgerCall::AtomixUnlock {
            x: Box::new(x.clone()),
            input,
            proof: Box::new(proof),
        })
    }

    /// All IOST on all shards (locks included).
    fn supply(&self) -> Amount {
        self.shards
            .iter()
            .map(|s| total_supply(&s.store).expect("supply"))
            .sum()
    }
}

fn transfer(
    inputs: Vec<(ShardId, Address, Amount)>,
    output: ShardId,
    to: Address,
) -> CrossTransfer {
    CrossTransfer {
        inputs: inputs
            .into_iter()
            .map(|(shard, from, amount)| CrossInput {
                shard,
                from,
                amount,
            })
            .collect(),
        output_shard: output,
        to,
        expires_at: 50,
        salt: 7,
        call: None,
    }
}

/// A commit step for each single-input transfer, proven by its lock in `c`.
fn commit_steps(
    c: &Certified,
    xs: &[CrossTransfer],
    locks: &[SignedTransaction],
) -> Vec<atomix::Step> {
    xs.iter()
        .zip(locks)
        .map(|(x, l)| atomix::Step::Commit {
            x: x.clone(),
            proofs: vec![c.proof_of(l)],
        })
        .collect()
}

fn outcome(c: &Certified, tx: &SignedTransaction) -> Outcome {
    let r = c
        .receipts
        .iter()
        .find(|r| r.tx == tx.id())
        .expect("receipt");
    assert_eq!(r.status, ReceiptStatus::Success, "{r:?}");
    let e = r
        .events
        .iter()
        .find(|e| e.kind == atomix::EVENT)
        .expect("atomix event");
    ios_chain::codec::decode("outcome", &e.data, 4096).expect("outcome")
}

#[test]
fn atomix_two_inputs_commit_everywhere_and_conserve_iost() {
    let mut net = Net::new();
    let supply = net.supply();
    let (a, b, to) = (net.user(1, 0), net.user(2, 0), net.user(2, 1).address());
    let x = transfer(vec![(1, a.address(), 300), (2, b.address(), 200)], 2, to);
    let (a_before, b_before, to_before) = (
        net.shards[1].balance(&a.address()),
        net.shards[2].balance(&b.address()),
        net.shards[2].balance(&to),
    );
    // 1. Lock on both input shards.
    let lock_a = net.lock_tx(&a, &x, 0);
    let lock_b = net.lock_tx(&b, &x, 1);
    let ca = net.shards[1].commit(std::slice::from_ref(&lock_a));
    let cb = net.shards[2].commit(std::slice::from_ref(&lock_b));
    assert_eq!(
        outcome(&ca, &lock_a),
        Outcome::Accepted {
            x: x.id(),
            input: 0
        }
    );
    assert_eq!(
        outcome(&cb, &lock_b),
        Outcome::Accepted {
            x: x.id(),
            input: 1
        }
    );
    assert_eq!(net.shards[1].balance(&a.address()), a_before - 300 - FEE);
    assert_eq!(atomix::locked(&net.shards[1].store), Ok(300));
    // 2. Commit on the output shard with both proofs of acceptance.
    let commit = net.commit_tx(&x, vec![ca.proof_of(&lock_a), cb.proof_of(&lock_b)]);
    assert_eq!(net.shards[2].check(&commit), Ok(()));
    let cc = net.shards[2].commit(std::slice::from_ref(&commit));
    assert_eq!(outcome(&cc, &commit), Outcome::Committed { x: x.id() });
    assert_eq!(net.shards[2].balance(&to), to_before + 500);
    // A second commit is refused and changes nothing.
    assert_eq!(net.shards[2].check(&commit).unwrap_err(), "atomix");
    // 3. Unlock both inputs by the proof of commit: the IOST left them.
    let proof = cc.proof_of(&commit);
    for (shard, input) in [(1usize, 0u32), (2, 1)] {
        let unlock = net.unlock_tx(&x, input, proof.clone());
        net.shards[shard].commit(std::slice::from_ref(&unlock));
        assert_eq!(
            net.shards[shard].read::<InputState>(&atomix::input_key(&x.id(), input)),
            Some(InputState::Released)
        );
        // Released once: a replay, or a refund after the release, is refused.
        assert_eq!(net.shards[shard].check(&unlock).unwrap_err(), "atomix");
    }
    assert_eq!(atomix::locked(&net.shards[1].store), Ok(0));
    assert_eq!(net.shards[2].balance(&b.address()), b_before - 200 - FEE);
    // Fees went to proposers; all IOST is still there.
    assert_eq!(net.supply(), supply);
}

#[test]
fn atomix_a_rejected_input_refunds_everywhere() {
    let mut net = Net::new();
    let supply = net.supply();
    let (a, b, to) = (net.user(1, 0), net.user(2, 0), net.user(1, 1).address());
    // b cannot pay: its input is rejected, a's lock is refunded.
    let x = transfer(
        vec![(1, a.address(), 300), (2, b.address(), Amount::MAX / 2)],
        1,
        to,
    );
    let a_before = net.shards[1].balance(&a.address());
    let lock_a = net.lock_tx(&a, &x, 0);
    let lock_b = net.lock_tx(&b, &x, 1);
    let ca = net.shards[1].commit(std::slice::from_ref(&lock_a));
    let cb = net.shards[2].commit(std::slice::from_ref(&lock_b));
    assert!(matches!(outcome(&cb, &lock_b), Outcome::Rejected { .. }));
    // The output shard cannot commit without b's acceptance...
    let partial = net.commit_tx(&x, vec![ca.proof_of(&lock_a)]);
    assert_eq!(net.shards[1].check(&partial).unwrap_err(), "atomix");
    // ...and records the rejection.
    let reject = net.commit_tx(&x, vec![cb.proof_of(&lock_b)]);
    let cr = net.shards[1].commit(std::slice::from_ref(&reject));
    assert!(matches!(outcome(&cr, &reject), Outcome::Rejected { .. }));
    assert_eq!(net.shards[1].decision(&x), Some(Decision::Rejected));
    // Once rejected, never committed, even with every acceptance.
    let late = net.commit_tx(&x, vec![ca.proof_of(&lock_a)]);
    assert_eq!(net.shards[1].check(&late).unwrap_err(), "atomix");
    // a's lock is refunded by b's rejection (a proof from an input shard).
    let refund = net.unlock_tx(&x, 0, cb.proof_of(&lock_b));
    net.shards[1].commit(&[refund]);
    assert_eq!(net.shards[1].balance(&a.address()), a_before - FEE);
    assert_eq!(net.supply(), supply);
}

#[test]
fn atomix_abort_after_expiry_and_never_both() {
    let mut net = Net::new();
    let (a, to) = (net.user(1, 0), net.user(2, 0).address());
    let mut x = transfer(vec![(1, a.address(), 100)], 2, to);
    x.expires_at = 2;
    let lock = net.lock_tx(&a, &x, 0);
    let cl = net.shards[1].commit(std::slice::from_ref(&lock));
    let abort = net.relay(LedgerCall::AtomixAbort {
        x: Box::new(x.clone()),
    });
    // Too early: the output shard is at height 1.
    assert_eq!(net.shards[2].check(&abort).unwrap_err(), "atomix");
    net.shards[2].commit(&[]);
    net.shards[2].commit(&[]);
    let ca = net.shards[2].commit(std::slice::from_ref(&abort));
    assert!(matches!(outcome(&ca, &abort), Outcome::Rejected { .. }));
    // An abort after the abort, and a commit after it, are refused.
    assert_eq!(net.shards[2].check(&abort).unwrap_err(), "atomix");
    let commit = net.commit_tx(&x, vec![cl.proof_of(&lock)]);
    assert_eq!(net.shards[2].check(&commit).unwrap_err(), "atomix");
    // The input is refunded by the abort's proof.
    let refund = net.unlock_tx(&x, 0, ca.proof_of(&abort));
    assert_eq!(net.shards[1].check(&refund), Ok(()));
}

#[test]
fn atomix_bad_proofs_are_typed_errors_and_change_nothing() {
    let mut net = Net::new();
    let (a, to) = (net.user(1, 0), net.user(2, 0).address());
    let x = transfer(vec![(1, a.address(), 100)], 2, to);
    let lock = net.lock_tx(&a, &x, 0);
    let cl = net.shards[1].commit(std::slice::from_ref(&lock));
    let good = cl.proof_of(&lock);
    // Another transfer, accepted too: its proof must not serve x.
    let y = CrossTransfer {
        salt: 8,
        ..x.clone()
    };
    let lock_y = net.lock_tx(&a, &y, 0);
    let cy = net.shards[1].commit(std::slice::from_ref(&lock_y));

    type Forge = fn(&mut ReceiptProof);
    let cases: Vec<(&str, ReceiptProof, Forge, &str)> = vec![
        (
            "forged certificate",
            good.clone(),
            |p| p.cert.signatures[0].1 .0[0] ^= 1,
            "invalid_certificate",
        ),
        (
            "too few signatures",
            good.clone(),
            |p| p.cert.signatures.truncate(1),
            "invalid_certificate",
        ),
        (
            "another receipt",
            good.clone(),
            |p| p.receipt.fee += 1,
            "proof",
        ),
        ("a wrong path", good.clone(), |p| p.path.index ^= 1, "proof"),
        (
            "an unknown epoch",
            good.clone(),
            |p| p.header.epoch = 9,
            "invalid_certificate",
        ),
        (
            "another shard's header",
            good.clone(),
            |p| p.header.shard = 2,
            "invalid_certificate",
        ),
        (
            "a proof of another transfer",
            cy.proof_of(&lock_y),
            |_| {},
            "atomix",
        ),
    ];
    for (name, proof, forge, code) in cases {
        let mut proof = proof;
        forge(&mut proof);
        let commit = net.commit_tx(&x, vec![proof]);
        assert_eq!(net.shards[2].check(&commit).unwrap_err(), code, "{name}");
    }
    // On the wrong shard, and with no proof at all.
    assert_eq!(
        net.shards[1]
            .check(&net.commit_tx(&x, vec![good.clone()]))
            .unwrap_err(),
        "wrong_shard"
    );
    assert_eq!(
        net.shards[2].check(&net.commit_tx(&x, vec![])).unwrap_err(),
        "atomix"
    );
    // A proof of acceptance is not a proof of commit: no unlock with it.
    assert_eq!(
        net.shards[1]
            .check(&net.unlock_tx(&x, 0, good.clone()))
            .unwrap_err(),
        "atomix"
    );
    // A relay with a fee, and a lock by someone else than the input's owner.
    let mut with_fee = net.commit_tx(&x, vec![good.clone()]);
    with_fee.tx.fee = 1;
    let with_fee = with_fee.tx.sign(&net.relayer);
    assert_eq!(net.shards[2].check(&with_fee).unwrap_err(), "relay");
    let mallory = net.user(1, 1);
    let steal = net.lock_tx(&mallory, &x, 0);
    assert_eq!(net.shards[1].check(&steal).unwrap_err(), "atomix");
    // None of it changed the output shard: x is still undecided, then commits.
    assert_eq!(net.shards[2].decision(&x), None);
    let commit = net.commit_tx(&x, vec![good]);
    net.shards[2].commit(&[commit]);
    assert_eq!(net.shards[2].decision(&x), Some(Decision::Committed));
}

/// Three transfers locked in one block, committed by one batch that shares
/// the block (one of them was already committed alone: that step is
/// skipped), then unlocked by one batch that shares the commit receipt.
#[test]
fn atomix_batches_share_proofs_and_skip_what_already_applied() {
    let mut net = Net::new();
    let supply = net.supply();
    let (a, b, to) = (net.user(1, 0), net.user(1, 1), net.user(2, 0).address());
    let to_before = net.shards[2].balance(&to);
    let xs: Vec<CrossTransfer> = [
        (a.address(), 10, 1),
        (a.address(), 20, 2),
        (b.address(), 30, 3),
    ]
    .into_iter()
    .map(|(from, amount, salt)| CrossTransfer {
        salt,
        ..transfer(vec![(1, from, amount)], 2, to)
    })
    .collect();
    let locks = vec![
        net.lock_tx(&a, &xs[0], 0),
        net.lock_tx(&a, &xs[1], 0),
        net.lock_tx(&b, &xs[2], 0),
    ];
    let cl = net.shards[1].commit(&locks);
    // x0 commits alone first, as another relayer would.
    let alone = net.commit_tx(&xs[0], vec![cl.proof_of(&locks[0])]);
    let c_alone = net.shards[2].commit(std::slice::from_ref(&alone));

    let steps = commit_steps(&cl, &xs, &locks);
    let batches = RelayBatch::pack(steps, 60_000).expect("pack");
    assert_eq!(batches.len(), 1);
    assert_eq!((batches[0].blocks.len(), batches[0].receipts.len()), (1, 3));
    let batch = net.relay(LedgerCall::AtomixBatch(Box::new(batches[0].clone())));
    assert_eq!(net.shards[2].check(&batch), Ok(()));
    let cb = net.shards[2].commit(std::slice::from_ref(&batch));
    let receipt = cb
        .receipts
        .iter()
        .find(|r| r.tx == batch.id())
        .expect("receipt");
    let committed: Vec<Outcome> = receipt
        .events
        .iter()
        .filter(|e| e.kind == atomix::EVENT)
        .map(|e| ios_chain::codec::decode("outcome", &e.data, 4096).expect("outcome"))
        .collect();
    assert_eq!(
        committed,
        vec![
            Outcome::Committed { x: xs[1].id() },
            Outcome::Committed { x: xs[2].id() }
        ]
    );
    let skipped = receipt
        .events
        .iter()
        .find(|e| e.kind == "relay_skipped")
        .expect("skipped event");
    let skipped: Vec<(u32, String)> =
        ios_chain::codec::decode("skipped", &skipped.data, 4096).expect("decode");
    assert_eq!(skipped, vec![(0, "atomix".to_string())]);
    assert_eq!(net.shards[2].balance(&to), to_before + 60);
    // Nothing left to apply: the same batch again is refused as a whole, but
    // its proofs still verify (what a replica checks on gossip).
    assert_eq!(net.shards[2].check(&batch).unwrap_err(), "relay");
    let shard2 = &net.shards[2];
    let ptx = PooledTx::new(batch.clone());
    assert_eq!(
        shard2
            .runtime
            .check_relay_proofs(&shard2.store, &shard2.env(), &ptx),
        Ok(())
    );

    // Unlock all three in one batch: x1 and x2 share the batch's receipt.
    let unlocks: Vec<atomix::Step> = vec![
        atomix::Step::Unlock {
            x: xs[0].clone(),
            input: 0,
            proof: Box::new(c_alone.proof_of(&alone)),
        },
        atomix::Step::Unlock {
            x: xs[1].clone(),
            input: 0,
            proof: Box::new(cb.proof_of(&batch)),
        },
        atomix::Step::Unlock {
            x: xs[2].clone(),
            input: 0,
            proof: Box::new(cb.proof_of(&batch)),
        },
    ];
    let packed = RelayBatch::pack(unlocks, 60_000).expect("pack");
    assert_eq!((packed[0].blocks.len(), packed[0].receipts.len()), (2, 2));
    let unlock = net.relay(LedgerCall::AtomixBatch(Box::new(packed[0].clone())));
    net.shards[1].commit(&[unlock]);
    for x in &xs {
        assert_eq!(
            net.shards[1].read::<InputState>(&atomix::input_key(&x.id(), 0)),
            Some(InputState::Released)
        );
    }
    assert_eq!(atomix::locked(&net.shards[1].store), Ok(0));
    assert_eq!(net.supply(), supply);
}

#[test]
fn atomix_bad_batches_are_typed_errors_and_change_nothing() {
    let mut net = Net::new();
    let (a, to) = (net.user(1, 0), net.user(2, 0).address());
    let x = transfer(vec![(1, a.address(), 100)], 2, to);
    let lock = net.lock_tx(&a, &x, 0);
    let cl = net.shards[1].commit(std::slice::from_ref(&lock));
    let good = RelayBatch::pack(
        vec![atomix::Step::Commit {
            x: x.clone(),
            proofs: vec![cl.proof_of(&lock)],
        }],
        60_000,
    )
    .expect("pack")
    .remove(0);
    type Forge = fn(&mut RelayBatch);
    let cases: Vec<(&str, Forge, &str)> = vec![
        (
            "a forged certificate",
            |b| b.blocks[0].cert.signatures[0].1 .0[0] ^= 1,
            "invalid_certificate",
        ),
        (
            "a tampered receipt",
            |b| b.receipts[0].receipt.fee += 1,
            "proof",
        ),
        (
            "a receipt at another index",
            |b| b.receipts[0].index += 1,
            "proof",
        ),
        (
            "a multi-proof with a sibling too many",
            |b| b.blocks[0].receipts.siblings.push(Default::default()),
            "proof",
        ),
        (
            "the same receipt twice",
            |b| {
                let r = b.receipts[0].clone();
                b.receipts.push(r);
            },
            "proof",
        ),
        (
            "a block no receipt is of",
            |b| {
                let block = b.blocks[0].clone();
                b.blocks.push(block);
            },
            "relay",
        ),
        (
            "a receipt of a missing block",
            |b| b.receipts[0].block = 3,
            "relay",
        ),
        (
            "a step with a missing receipt",
            |b| {
                if let BatchStep::Commit { proofs, .. } = &mut b.steps[0] {
                    proofs[0] = 9;
                }
            },
            "relay",
        ),
        ("no steps", |b| b.steps.clear(), "relay"),
        (
            "a step of another shard's transfer",
            |b| {
                if let BatchStep::Commit { x, .. } = &mut b.steps[0] {
                    x.output_shard = 1;
                }
            },
            "relay",
        ),
    ];
    for (name, forge, code) in cases {
        let mut batch = good.clone();
        forge(&mut batch);
        let tx = net.relay_on(2, LedgerCall::AtomixBatch(Box::new(batch)));
        assert_eq!(net.shards[2].check(&tx).unwrap_err(), code, "{name}");
    }
    // A batch whose proofs are forged fails the gossip check too.
    let mut forged = good.clone();
    forged.blocks[0].cert.signatures[0].1 .0[0] ^= 1;
    let tx = PooledTx::new(net.relay(LedgerCall::AtomixBatch(Box::new(forged))));
    let shard2 = &net.shards[2];
    assert!(shard2
        .runtime
        .check_relay_proofs(&shard2.store, &shard2.env(), &tx)
        .is_err());
    // Nothing changed: the good batch still commits.
    assert_eq!(net.shards[2].decision(&x), None);
    let tx = net.relay(LedgerCall::AtomixBatch(Box::new(good)));
    net.shards[2].commit(&[tx]);
    assert_eq!(net.shards[2].decision(&x), Some(Decision::Committed));
}

/// Packing keeps under the byte limit, carries each block once per batch,
/// and unpacking gives the steps back.
#[test]
fn atomix_pack_keeps_batches_under_the_byte_limit() {
    let mut net = Net::new();
    let (a, to) = (net.user(1, 0), net.user(2, 0).address());
    let xs: Vec<CrossTransfer> = (0..40)
        .map(|salt| CrossTransfer {
            salt,
            ..transfer(vec![(1, a.address(), 1)], 2, to)
        })
        .collect();
    let locks: Vec<SignedTransaction> = xs.iter().map(|x| net.lock_tx(&a, x, 0)).collect();
    let cl = net.shards[1].commit(&locks);
    let steps = commit_steps(&cl, &xs, &locks);
    let max = 8_000;
    let batches = RelayBatch::pack(steps, max).expect("pack");
    assert!(batches.len() > 1);
    // Unpacked, each batch gives back its steps with their single proofs.
    let mut again = Vec::new();
    for b in &batches {
        again.extend(b.clone().into_steps().expect("unpack"));
    }
    assert_eq!(
        RelayBatch::pack(again, max).expect("pack again"),
        batches,
        "the same batches from the unpacked steps"
    );
    assert_eq!(batches.iter().map(|b| b.steps.len()).sum::<usize>(), 40);
    for b in &batches {
        assert!(ios_chain::codec::encode(b).len() <= max);
        assert_eq!(b.blocks.len(), 1);
    }
    // And every batch commits its part.
    let txs: Vec<SignedTransaction> = batches
        .into_iter()
        .map(|b| net.relay(LedgerCall::AtomixBatch(Box::new(b))))
        .collect();
    net.shards[2].commit(&txs);
    for x in &xs {
        assert_eq!(net.shards[2].decision(x), Some(Decision::Committed));
    }
}

/// The memo of verified certificates returns what verifying returns: a
/// tampered copy of a remembered certificate still fails.
#[test]
fn cert_cache_remembers_only_what_verified() {
    let mut net = Net::new();
    let (a, to) = (net.user(1, 0), net.user(2, 0).address());
    let x = transfer(vec![(1, a.address(), 5)], 2, to);
    let lock = net.lock_tx(&a, &x, 0);
    let cl = net.shards[1].commit(std::slice::from_ref(&lock));
    let chain_id = &net.genesis.params.chain_id;
    let committee = net.genesis.epoch_zero().committees[1].clone();
    let cache = ios_chain::light_client::CertCache::default();
    assert!(cache.is_empty());
    for _ in 0..2 {
        assert_eq!(cache.verify(chain_id, 1, &committee, &cl.cert), Ok(()));
        assert_eq!(cache.len(), 1);
    }
    let mut bad = cl.cert.clone();
    bad.signatures[0].1 .0[0] ^= 1;
    assert!(cache.verify(chain_id, 1, &committee, &bad).is_err());
    assert!(cache.verify(chain_id, 2, &committee, &cl.cert).is_err());
    assert_eq!(cache.len(), 1);
}

/// Equivocation on an account shard is judged on the beacon, where stakes
/// live: the offender, on that shard's committee, is slashed and jailed
/// there; the account shard refuses evidence; a signer who is not on the
/// shard's committee is not slashed for that shard's votes.
#[test]
fn account_shard_equivocation_is_slashed_on_the_beacon() {
    let mut net = Net::new();
    let chain_id = net.genesis.params.chain_id.clone();
    let offender = net.shards[1].committee_keys[0].clone();
    let outsider = net.shards[2].committee_keys[0].clone();
    let evidence = |k: &Keypair| {
        let vote = |b: u8| {
            let v = Vote {
                chain_id: chain_id.clone(),
                shard: 1,
                epoch: 0,
                height: 5,
                round: 0,
                kind: VoteKind::Precommit,
                block: Some(ios_chain::hash::Hash([b; 32])),
            };
            SignedVote::new(v, k)
        };
        LedgerModule::call(&LedgerCall::Evidence(Box::new(Evidence::DuplicateVote {
            a: vote(1),
            b: vote(2),
        })))
    };
    // A validator (funded on the beacon) reports; a user reports on shard 1.
    let reporter = net.shards[0].committee_keys[0].clone();
    let user = net.user(1, 0);
    let on_shard = sign_call(&user, 1, &chain_id, 0, FEE, 1_000, evidence(&offender));
    assert_eq!(net.shards[1].check(&on_shard).unwrap_err(), "wrong_shard");
    let outsider_tx = sign_call(&reporter, 0, &chain_id, 0, FEE, 1_000, evidence(&outsider));
    assert_eq!(
        net.shards[0].check(&outsider_tx).unwrap_err(),
        "invalid_evidence"
    );
    let before =
        committee::read_account(&net.shards[0].store, &offender.address()).expect("account");
    assert!(before.stake > 0 && !before.jailed);
    let tx = sign_call(&reporter, 0, &chain_id, 0, FEE, 1_000, evidence(&offender));
    assert_eq!(net.shards[0].check(&tx), Ok(()));
    net.shards[0].commit(&[tx]);
    let after =
        committee::read_account(&net.shards[0].store, &offender.address()).expect("account");
    assert!(after.stake < before.stake, "slashed");
    assert!(after.jailed && after.reputation == 0);
}

// ---- calls carried by transfers, and sends from a module's custody --------

/// A module that holds deposits and sends them across shards, at once or
/// at the end of the block.
struct Vault;

const VAULT: ModuleId = ModuleId(77);
const VAULT_LATER: &[u8] = b"vault/later";

#[derive(borsh::BorshSerialize, borsh::BorshDeserialize)]
enum VaultCall {
    Deposit(Amount),
    Send(ShardId, Address, Amount),
    SendAtEndOfBlock(ShardId, Address, Amount),
}

impl Module for Vault {
    fn id(&self) -> ModuleId {
        VAULT
    }

    fn name(&self) -> &'static str {
        "vault"
    }

    fn execute(
        &self,
        ctx: &mut CallContext<'_, '_>,
        payload: &[u8],
    ) -> ios_chain::error::Result<()> {
        match ios_chain::codec::decode::<VaultCall>("vault call", payload, 1024)? {
            VaultCall::Deposit(0) => Err(ChainError::ZeroAmount),
            VaultCall::Deposit(amount) => {
                let sender = ctx.sender;
                ctx.hold(&sender, amount)
            }
            VaultCall::Send(shard, to, amount) => ctx.send_across(shard, to, amount, 1).map(|_| ()),
            VaultCall::SendAtEndOfBlock(shard, to, amount) => {
                ctx.put(VAULT_LATER, &(shard, to, amount))
            }
        }
    }

    fn end_block(&self, ctx: &mut CallContext<'_, '_>) -> ios_chain::error::Result<()> {
        if let Some((shard, to, amount)) = ctx.get::<(ShardId, Address, Amount)>(VAULT_LATER)? {
            ctx.delete(VAULT_LATER)?;
            ctx.send_across(shard, to, amount, 2)?;
        }
        Ok(())
    }
}

fn vault_call(call: &VaultCall) -> Call {
    Call {
        module: VAULT,
        payload: ios_chain::codec::encode(call),
    }
}

impl Net {
    /// A vault call signed by `who` for its home shard.
    fn vault_tx(&mut self, who: &Keypair, call: &VaultCall) -> SignedTransaction {
        let shard = home_shard(&who.address(), SHARDS);
        let nonce = self.nonces.entry(who.address()).or_default();
        let tx = sign_call(
            who,
            shard,
            &self.genesis.params.chain_id,
            *nonce,
            FEE,
            1_000_000,
            vault_call(call),
        );
        *nonce += 1;
        tx
    }

    /// Feeds `c`, a block of `shard`, to `relayer` and commits every step it
    /// says is due on the shards they name; returns those blocks.
    fn relay_due(
        &mut self,
        relayer: &mut Relayer,
        shard: ShardId,
        c: &Certified,
        now: u64,
    ) -> Vec<Certified> {
        relayer.observe(shard, &c.block, &c.cert, &c.receipts, now);
        let mut out = Vec::new();
        for (s, step) in relayer.due(now) {
            let tx = self.relay_on(s, step_call(step));
            assert_eq!(self.shards[s as usize].check(&tx), Ok(()));
            out.push((s, self.shards[s as usize].commit(std::slice::from_ref(&tx))));
        }
        for (s, c) in &out {
            relayer.observe(*s, &c.block, &c.cert, &c.receipts, now);
        }
        out.into_iter().map(|(_, c)| c).collect()
    }
}

fn held(s: &Shard, module: ModuleId) -> Amount {
    s.read(&keys::held(module)).unwrap_or(0)
}

#[test]
fn atomix_a_carried_call_runs_with_the_commit_or_rejects_it() {
    let mut net = Net::with_modules(&[Arc::new(Vault)]);
    let supply = net.supply();
    let (a, b) = (net.user(1, 0), net.user(1, 1));
    let a_home = net.shards[1].balance(&a.address());
    let mut x = transfer(vec![(1, a.address(), 500)], 2, a.address());
    x.call = Some(vault_call(&VaultCall::Deposit(300)));
    // Commit: a is credited on shard 2 and the deposit holds 300 of it.
    let lock = net.lock_tx(&a, &x, 0);
    let cl = net.shards[1].commit(std::slice::from_ref(&lock));
    let commit = net.commit_tx(&x, vec![cl.proof_of(&lock)]);
    let cc = net.shards[2].commit(std::slice::from_ref(&commit));
    assert_eq!(outcome(&cc, &commit), Outcome::Committed { x: x.id() });
    assert_eq!(net.shards[2].balance(&a.address()), 200);
    assert_eq!(held(&net.shards[2], VAULT), 300);
    let unlock = net.unlock_tx(&x, 0, cc.proof_of(&commit));
    net.shards[1].commit(std::slice::from_ref(&unlock));
    assert_eq!(net.shards[1].balance(&a.address()), a_home - 500 - FEE);
    assert_eq!(net.supply(), supply);

    // A call that fails rejects the transfer: nothing on shard 2, refund on 1.
    let mut y = transfer(vec![(1, a.address(), 500)], 2, a.address());
    y.salt = 8;
    y.call = Some(vault_call(&VaultCall::Deposit(0)));
    let lock = net.lock_tx(&a, &y, 0);
    let cl = net.shards[1].commit(std::slice::from_ref(&lock));
    let commit = net.commit_tx(&y, vec![cl.proof_of(&lock)]);
    let cc = net.shards[2].commit(std::slice::from_ref(&commit));
    match outcome(&cc, &commit) {
        Outcome::Rejected { reason, .. } => {
            assert!(reason.contains("its call failed"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(net.shards[2].balance(&a.address()), 200);
    assert_eq!(held(&net.shards[2], VAULT), 300);
    let unlock = net.unlock_tx(&y, 0, cc.proof_of(&commit));
    net.shards[1].commit(std::slice::from_ref(&unlock));
    assert_eq!(
        net.shards[1].read::<InputState>(&atomix::input_key(&y.id(), 0)),
        Some(InputState::Refunded)
    );
    assert_eq!(net.shards[1].balance(&a.address()), a_home - 500 - 2 * FEE);
    assert_eq!(net.supply(), supply);

    // Shapes refused at the lock: a call run as someone who did not pay,
    // a ledger call, an oversized call.
    let mut for_b = transfer(vec![(1, a.address(), 5)], 2, b.address());
    for_b.call = Some(vault_call(&VaultCall::Deposit(5)));
    let mut ledger = transfer(vec![(1, a.address(), 5)], 2, a.address());
    ledger.call = Some(LedgerModule::call(&LedgerCall::Unstake { amount: 1 }));
    let mut big = transfer(vec![(1, a.address(), 5)], 2, a.address());
    big.call = Some(Call {
        module: VAULT,
        payload: vec![0; atomix::MAX_CALL_BYTES + 1],
    });
    for (name, bad, code) in [
        ("paid by another", for_b, "atomix"),
        ("a ledger call", ledger, "atomix"),
        ("too large", big, "too_large"),
    ] {
        let lock = net.lock_tx(&a, &bad, 0);
        assert_eq!(net.shards[1].check(&lock).unwrap_err(), code, "{name}");
        *net.nonces.get_mut(&a.address()).expect("nonce") -= 1;
    }
}

#[test]
fn atomix_a_module_sends_from_its_custody_across_shards() {
    let mut net = Net::with_modules(&[Arc::new(Vault)]);
    let supply = net.supply();
    let (a, b) = (net.user(1, 0), net.user(2, 0));
    let b_before = net.shards[2].balance(&b.address());
    let mut relayer = Relayer::new();
    let deposit = net.vault_tx(&a, &VaultCall::Deposit(400));
    net.shards[1].commit(&[deposit]);
    // A send inside a call: locked at once out of the custody.
    let send = net.vault_tx(&a, &VaultCall::Send(2, b.address(), 150));
    let cs = net.shards[1].commit(std::slice::from_ref(&send));
    assert_eq!(held(&net.shards[1], VAULT), 250);
    assert_eq!(atomix::locked(&net.shards[1].store), Ok(150));
    assert_eq!(net.supply(), supply);
    // The relayer learns it from its event: commit on 2, then unlock on 1.
    let done = net.relay_due(&mut relayer, 1, &cs, 1_000);
    assert_eq!(done.len(), 1);
    assert_eq!(net.shards[2].balance(&b.address()), b_before + 150);
    let done = net.relay_due(&mut relayer, 2, &done[0], 3_000);
    assert_eq!(done.len(), 1);
    assert_eq!(atomix::locked(&net.shards[1].store), Ok(0));
    assert_eq!(net.supply(), supply);

    // A send from the end-of-block hook: its events get a receipt of their
    // own after the transactions' ones, which proves it the same way.
    let later = net.vault_tx(&a, &VaultCall::SendAtEndOfBlock(2, b.address(), 50));
    let cl = net.shards[1].commit(std::slice::from_ref(&later));
    assert_eq!(cl.receipts.len(), 2);
    assert_eq!(cl.receipts[1].tx, ios_chain::hash::Hash::ZERO);
    assert!(cl.receipts[1]
        .events
        .iter()
        .any(|e| e.kind == atomix::SEND_EVENT));
    let done = net.relay_due(&mut relayer, 1, &cl, 5_000);
    assert_eq!(done.len(), 1);
    assert_eq!(net.shards[2].balance(&b.address()), b_before + 200);
    net.relay_due(&mut relayer, 2, &done[0], 7_000);
    assert_eq!(held(&net.shards[1], VAULT), 200);
    assert_eq!(atomix::locked(&net.shards[1].store), Ok(0));
    assert_eq!(net.supply(), supply);

    // Not more than the custody holds, and not to this same shard.
    let broke = net.vault_tx(&a, &VaultCall::Send(2, b.address(), 201));
    assert_eq!(
        net.shards[1].check(&broke).unwrap_err(),
        "insufficient_funds"
    );
    *net.nonces.get_mut(&a.address()).expect("nonce") -= 1;
    let here = net.vault_tx(&a, &VaultCall::Send(1, b.address(), 1));
    assert_eq!(net.shards[1].check(&here).unwrap_err(), "atomix");
}
