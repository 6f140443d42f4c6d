//! The core ledger on a one-validator chain: admission errors are typed and
//! change nothing, failed calls cost only the fee and the nonce, successful
//! ones move exactly their amounts, supply is conserved by every block, fees
//! go to the proposer, and equivocation evidence slashes exactly once.

use crate::{
    header_of, ledger_tx, next_env, open_db, receipt_of, sign_call, tick_until_commit, Solo, FEE,
};
use ios_chain::account::Account;
use ios_chain::block::{
    Block, CommitCertificate, Proposal, Receipt, ReceiptStatus, SignedProposal, SignedVote, Vote,
    VoteKind,
};
use ios_chain::committee::{self, K_FEE_POOL};
use ios_chain::crypto::{Address, Keypair};
use ios_chain::error::ChainError;
use ios_chain::execute::{total_supply, Executed, Mode, Runtime};
use ios_chain::hash::{hash_tagged, Hash};
use ios_chain::ledger::{Evidence, LedgerCall, LedgerModule, Token};
use ios_chain::module::{keys, BlockEnv};
use ios_chain::params::{ChainParams, Genesis};
use ios_chain::shard::BEACON;
use ios_chain::sim::{sim_genesis, sim_params};
use ios_chain::state::StateStore;
use ios_chain::tx::{Call, ModuleId, PooledTx, SignedTransaction, MAX_TX_BYTES};
use ios_chain::types::{Amount, ChainId, PPM, UNITS_PER_IOST};

const IOST: Amount = UNITS_PER_IOST;

fn validator_key() -> Keypair {
    Keypair::from_seed("ledger-validator", 0)
}

fn user_keys() -> Vec<Keypair> {
    (0..3)
        .map(|i| Keypair::from_seed("ledger-user", i))
        .collect()
}

/// One validator (the proposer of every block) and three funded users.
fn genesis_with(tweak: impl FnOnce(&mut ChainParams)) -> Genesis {
    let mut params = sim_params(1);
    params.unbonding_blocks = 3;
    tweak(&mut params);
    sim_genesis(params, &[validator_key()], &user_keys())
}

fn pooled(txs: &[SignedTransaction]) -> Vec<PooledTx> {
    txs.iter().cloned().map(PooledTx::new).collect()
}

/// A chain driven block by block with `Runtime::execute` + `StateStore::commit_block`.
struct Ledger {
    runtime: Runtime,
    store: StateStore,
    supply: Amount,
    validator: Keypair,
    users: Vec<Keypair>,
    _db: sled::Db,
    _dir: tempfile::TempDir,
}

impl Ledger {
    fn new() -> Ledger {
        Ledger::with(|_| {})
    }

    fn with(tweak: impl FnOnce(&mut ChainParams)) -> Ledger {
        let genesis = genesis_with(tweak);
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open_db(dir.path());
        let mut store = StateStore::open(&db).expect("open store");
        let runtime = Runtime::new(genesis.params.clone());
        runtime.init_genesis(&mut store, &genesis).expect("genesis");
        let supply = genesis.total_supply().expect("supply");
        assert_eq!(total_supply(&store), Ok(supply));
        Ledger {
            runtime,
            store,
            supply,
            validator: validator_key(),
            users: user_keys(),
            _db: db,
            _dir: dir,
        }
    }

    fn chain_id(&self) -> ChainId {
        self.runtime.params().chain_id.clone()
    }

    fn env(&self) -> BlockEnv {
        next_env(&self.store, &self.runtime, Some(self.validator.address()))
    }

    fn execute(&self, txs: &[SignedTransaction], mode: Mode) -> Result<Executed, ChainError> {
        self.runtime
            .execute(&self.store, &self.env(), pooled(txs), mode)
    }

    /// Proposes a block of `txs`, checks that it validates, commits it, and
    /// checks that IOST supply is unchanged. Returns the included transactions' receipts.
    fn commit(&mut self, txs: &[SignedTransaction]) -> Vec<Receipt> {
        let env = self.env();
        let executed = self
            .runtime
            .execute(&self.store, &env, pooled(txs), Mode::Propose)
            .expect("propose");
        let included: Vec<SignedTransaction> =
            executed.txs.iter().map(|t| (*t.tx).clone()).collect();
        let again = self
            .runtime
            .execute(&self.store, &env, pooled(&included), Mode::Validate)
            .expect("a proposed block validates");
        assert_eq!(again.diff.state_root, executed.diff.state_root);
        assert_eq!(again.receipts, executed.receipts);
        let block = Block {
            header: header_of(&env, &executed),
            txs: included,
        };
        // commit_block does not check certificates; consensus does before it.
        let cert = CommitCertificate {
            height: env.height,
            round: 0,
            block: block.hash(),
            signatures: vec![],
        };
        self.store
            .commit_block(&block, &cert, &executed.receipts, &executed.diff)
            .expect("commit");
        assert_eq!(self.store.state_root(), block.header.state_root);
        assert_eq!(
            total_supply(&self.store),
            Ok(self.supply),
            "IOST supply changed at height {}",
            env.height
        );
        executed.receipts
    }

    fn account(&self, a: &Address) -> Account {
        committee::read_account(&self.store, a).expect("read account")
    }

    fn fee_pool(&self) -> Amount {
        committee::read(&self.store, K_FEE_POOL)
            .expect("read fee pool")
            .unwrap_or(0)
    }

    /// `call` from user `u` with its next nonce.
    fn tx(&self, u: usize, call: Call) -> SignedTransaction {
        let key = &self.users[u];
        let nonce = self.account(&key.address()).nonce;
        sign_call(key, BEACON, &self.chain_id(), nonce, FEE, 1_000_000, call)
    }
}

fn failed(code: &str) -> impl Fn(&ReceiptStatus) -> bool + '_ {
    move |s| matches!(s, ReceiptStatus::Failed { code: c, .. } if c == code)
}

// ---- calls --------------------------------------------------------------

/// What a call does beyond charging the fee and bumping the nonce.
#[derive(Clone, Copy, Default)]
struct Effect {
    balance: i128,
    stake: i128,
    /// Change of the recipient's balance.
    received: i128,
}

fn add(v: Amount, d: i128) -> Amount {
    Amount::try_from(v as i128 + d).expect("amount stays in range")
}

/// Commits `call` from user `u` alone in a block and checks its receipt and
/// every balance it may touch. `want` is the effect, or the failed receipt's code.
fn check_call(name: &str, u: usize, call: Call, to: Option<Address>, want: Result<Effect, &str>) {
    let mut l = Ledger::new();
    let sender = l.users[u].address();
    let proposer = l.validator.address();
    let before = l.account(&sender);
    let to_before = to.map(|a| l.account(&a));
    let proposer_before = l.account(&proposer);
    assert!(
        proposer_before.servi > 0,
        "genesis gives the validator Servi"
    );

    let tx = l.tx(u, call);
    let receipts = l.commit(std::slice::from_ref(&tx));
    assert_eq!(receipts.len(), 1, "{name}: included");
    let receipt = receipt_of(&receipts, &tx);
    assert_eq!(receipt.fee, FEE, "{name}");
    let effect = match want {
        Ok(effect) => {
            assert_eq!(receipt.status, ReceiptStatus::Success, "{name}");
            effect
        }
        Err(code) => {
            assert!(
                failed(code)(&receipt.status),
                "{name}: {:?}",
                receipt.status
            );
            assert!(
                receipt.events.is_empty(),
                "{name}: a failed call emits nothing"
            );
            Effect::default()
        }
    };

    let after = l.account(&sender);
    let expected = Account {
        nonce: before.nonce + 1,
        balance: add(before.balance, effect.balance - FEE as i128),
        stake: add(before.stake, effect.stake),
        ..before.clone()
    };
    assert_eq!(after, expected, "{name}: sender");
    if let (Some(a), Some(b)) = (to, to_before) {
        assert_eq!(
            l.account(&a).balance,
            add(b.balance, effect.received),
            "{name}: recipient"
        );
    }
    // The proposer earns the fee, and its block spends its Servi.
    let p = l.account(&proposer);
    assert_eq!(
        p.balance,
        proposer_before.balance + FEE,
        "{name}: proposer fee"
    );
    assert_eq!(p.servi, 0, "{name}: proposer Servi");
}

/// (name, sending user, call, recipient to watch, effect or failed receipt's code)
type CallCase = (
    &'static str,
    usize,
    Call,
    Option<Address>,
    Result<Effect, &'static str>,
);

#[test]
fn calls_move_exactly_their_amounts_or_only_the_fee() {
    let users = user_keys();
    let other = users[1].address();
    let fresh = Keypair::from_seed("ledger-fresh", 0).address();
    let transfer =
        |to, amount, token| LedgerModule::call(&LedgerCall::Transfer { to, amount, token });
    let stake = |amount| LedgerModule::call(&LedgerCall::Stake { amount });
    let unstake = |amount| LedgerModule::call(&LedgerCall::Unstake { amount });
    let moved = |a: Amount| Effect {
        balance: -(a as i128),
        received: a as i128,
        ..Effect::default()
    };
    let cases: Vec<CallCase> = vec![
        (
            "transfer",
            0,
            transfer(other, 5 * IOST, Token::Iost),
            Some(other),
            Ok(moved(5 * IOST)),
        ),
        (
            "transfer of one unit",
            0,
            transfer(other, 1, Token::Iost),
            Some(other),
            Ok(moved(1)),
        ),
        (
            "transfer to a new account",
            0,
            transfer(fresh, 7, Token::Iost),
            Some(fresh),
            Ok(moved(7)),
        ),
        (
            "transfer of everything left after the fee",
            2,
            transfer(other, 1_000_000 * IOST - FEE, Token::Iost),
            Some(other),
            Ok(moved(1_000_000 * IOST - FEE)),
        ),
        (
            "stake",
            0,
            stake(2_000 * IOST),
            None,
            Ok(Effect {
                balance: -2_000 * IOST as i128,
                stake: 2_000 * IOST as i128,
                ..Effect::default()
            }),
        ),
        (
            "Servi transfer",
            0,
            transfer(other, 1, Token::Servi),
            Some(other),
            Err("servi_not_transferable"),
        ),
        (
            "zero transfer",
            0,
            transfer(other, 0, Token::Iost),
            Some(other),
            Err("zero_amount"),
        ),
        ("zero stake", 0, stake(0), None, Err("zero_amount")),
        ("zero unstake", 0, unstake(0), None, Err("zero_amount")),
        // Supply fits in u64, so a credit can never overflow: the debit fails first.
        (
            "amount u64::MAX",
            0,
            transfer(other, Amount::MAX, Token::Iost),
            Some(other),
            Err("insufficient_funds"),
        ),
        (
            "transfer of the balance, fee already paid",
            2,
            transfer(other, 1_000_000 * IOST, Token::Iost),
            Some(other),
            Err("insufficient_funds"),
        ),
        (
            "stake u64::MAX",
            0,
            stake(Amount::MAX),
            None,
            Err("insufficient_funds"),
        ),
        (
            "unstake without stake",
            0,
            unstake(1),
            None,
            Err("insufficient_funds"),
        ),
        (
            "garbage payload",
            0,
            Call {
                module: ModuleId::CORE,
                payload: vec![0xff, 1, 2],
            },
            None,
            Err("malformed"),
        ),
        (
            "unknown module",
            0,
            Call {
                module: ModuleId(777),
                payload: vec![],
            },
            None,
            Err("unknown_module"),
        ),
    ];
    for (name, u, call, to, want) in cases {
        check_call(name, u, call, to, want);
    }
}

#[test]
fn staking_bonds_and_unbonded_funds_return_after_the_delay() {
    let mut l = Ledger::new();
    let user = l.users[0].address();
    let start = l.account(&user);
    let min = l.runtime.params().min_validator_stake;
    assert!(!committee::validators(&l.store)
        .expect("bonded")
        .contains(&user));

    let stake = l.tx(0, LedgerModule::call(&LedgerCall::Stake { amount: min }));
    l.commit(&[stake]);
    assert!(committee::validators(&l.store)
        .expect("bonded")
        .contains(&user));

    // Dropping below the minimum unbonds the validator.
    let unstake = l.tx(0, LedgerModule::call(&LedgerCall::Unstake { amount: 1 }));
    l.commit(&[unstake]);
    let unstaked_at = l.store.head().expect("head").height;
    let a = l.account(&user);
    assert!(!committee::validators(&l.store)
        .expect("bonded")
        .contains(&user));
    assert_eq!(
        (a.stake, a.unbonding, a.unbonding_release),
        (min - 1, 1, unstaked_at + 3)
    );
    assert_eq!(a.balance, start.balance - min - 2 * FEE);

    // The next transaction before release leaves the funds unbonding.
    let early = l.tx(0, LedgerModule::call(&LedgerCall::Stake { amount: 1 }));
    l.commit(&[early]);
    assert_eq!(l.account(&user).unbonding, 1);
    l.commit(&[]);
    assert_eq!(l.store.head().expect("head").height, unstaked_at + 2);

    // At the release height, the sender's next transaction releases them first.
    let release = l.tx(0, LedgerModule::call(&LedgerCall::Stake { amount: 1 }));
    l.commit(&[release]);
    let a = l.account(&user);
    assert_eq!(a.unbonding, 0);
    assert_eq!(a.stake, min + 1);
    assert_eq!(a.balance, start.balance - min - 2 - 4 * FEE + 1);
    assert!(committee::validators(&l.store)
        .expect("bonded")
        .contains(&user));
}

#[test]
fn fees_of_a_block_go_to_its_proposer() {
    let mut l = Ledger::new();
    let proposer = l.validator.address();
    let before = l.account(&proposer);
    let chain_id = l.chain_id();
    let to = l.users[2].address();
    let fees = [FEE, 3 * FEE, 7 * FEE];
    let txs: Vec<SignedTransaction> = fees
        .iter()
        .enumerate()
        .map(|(u, &fee)| {
            let call = LedgerModule::call(&LedgerCall::Transfer {
                to,
                amount: 1,
                token: Token::Servi, // fails: the fee is paid anyway
            });
            sign_call(&l.users[u], BEACON, &chain_id, 0, fee, 1_000, call)
        })
        .collect();
    let receipts = l.commit(&txs);
    assert_eq!(receipts.iter().map(|r| r.fee).collect::<Vec<_>>(), fees);
    let after = l.account(&proposer);
    assert_eq!(after.balance, before.balance + fees.iter().sum::<Amount>());
    assert_eq!((before.servi > 0, after.servi), (true, 0));
    // An empty block pays nothing but still spends the (now zero) Servi.
    l.commit(&[]);
    assert_eq!(l.account(&proposer).balance, after.balance);
}

// ---- admission ------------------------------------------------------------

/// The admission path (`submit`) of a one-validator replica, and its store.
impl Solo {
    fn new(genesis: &Genesis) -> Solo {
        Solo::open(validator_key(), user_keys(), genesis)
    }

    fn chain_id(&self) -> ChainId {
        self.replica.runtime().params().chain_id.clone()
    }

    fn execute(&self, txs: &[SignedTransaction], mode: Mode) -> Result<Executed, ChainError> {
        let store = self.replica.store();
        let runtime = self.replica.runtime();
        let env = next_env(store, runtime, Some(validator_key().address()));
        runtime.execute(store, &env, pooled(txs), mode)
    }
}

/// A transaction every layer refuses: `submit` with `at_submit`; a block
/// holding it, with `in_block` (None: execution alone does not see the fault).
struct Refused {
    name: &'static str,
    tx: SignedTransaction,
    at_submit: ChainError,
    in_block: Option<ChainError>,
}

fn check_refused(solo: &mut Solo, case: Refused) {
    let name = case.name;
    let root = solo.replica.store().state_root();
    let height = solo.replica.height();
    let pooled_before = solo.replica.mempool_len();
    let sender = case.tx.tx.sender;
    let account_before = committee::read_account(solo.replica.store(), &sender).expect("read");

    let (results, outputs) = solo.replica.submit(vec![case.tx.clone()], solo.now);
    assert_eq!(results, vec![Err(case.at_submit)], "{name}");
    assert!(
        outputs.is_empty(),
        "{name}: a refused transaction is not gossiped"
    );
    assert_eq!(solo.replica.mempool_len(), pooled_before, "{name}: mempool");
    assert_eq!(solo.replica.store().state_root(), root, "{name}: state");
    assert_eq!(solo.replica.height(), height, "{name}: height");

    let txs = std::slice::from_ref(&case.tx);
    match case.in_block {
        Some(e) => {
            assert_eq!(
                solo.execute(txs, Mode::Validate).map(|_| ()),
                Err(ChainError::InvalidBlock(format!(
                    "transaction {}: {e}",
                    case.tx.id()
                ))),
                "{name}: validating a block that holds it"
            );
            let built = solo.execute(txs, Mode::Propose).expect("propose");
            assert!(
                built.txs.is_empty() && built.receipts.is_empty(),
                "{name}: left out"
            );
            let key = keys::account(&sender);
            assert!(
                !built.diff.writes.contains_key(&key),
                "{name}: sender untouched"
            );
        }
        None => {
            assert!(solo.execute(txs, Mode::Validate).is_ok(), "{name}");
        }
    }
    assert_eq!(
        committee::read_account(solo.replica.store(), &sender).expect("read"),
        account_before,
        "{name}: account"
    );
}

#[test]
fn refused_transactions_are_typed_errors_and_change_nothing() {
    let mut solo = Solo::new(&genesis_with(|_| {}));
    let chain_id = solo.chain_id();
    let key = solo.users[0].clone();
    let to = solo.users[1].address();
    let transfer = LedgerCall::Transfer {
        to,
        amount: 1,
        token: Token::Iost,
    };

    // Commit nonce 0 so that it can be replayed.
    let first = ledger_tx(&key, &chain_id, 0, &transfer);
    let (results, _) = solo.replica.submit(vec![first.clone()], solo.now);
    assert_eq!(results, vec![Ok(first.id())]);
    let committed = tick_until_commit(&mut solo.replica, &mut solo.now);
    // The validator's own randomness dealing may share the block.
    let ours: Vec<_> = committed
        .block
        .txs
        .iter()
        .filter(|t| t.tx.sender == key.address())
        .cloned()
        .collect();
    assert_eq!(ours, vec![first.clone()]);
    assert_eq!(
        receipt_of(&committed.receipts, &first).status,
        ReceiptStatus::Success
    );
    assert_eq!(solo.replica.height(), 2);
    assert_eq!(solo.replica.mempool_len(), 0);

    let call = LedgerModule::call(&transfer);
    let sign = |nonce, fee, expires_at, call: Call| {
        sign_call(&key, BEACON, &chain_id, nonce, fee, expires_at, call)
    };
    let mut bad_sig = sign(1, FEE, 1_000, call.clone());
    bad_sig.signature.0[0] ^= 1;
    let other_shard = sign_call(&key, 2, &chain_id, 1, FEE, 1_000, call.clone());
    let other_chain = sign_call(
        &key,
        BEACON,
        &ChainId("ios-other".into()),
        1,
        FEE,
        1_000,
        call.clone(),
    );
    let free = sign(1, 0, 1_000, call.clone());
    let free_len = free.to_bytes().len() as Amount;
    let huge = sign(
        1,
        10 * MAX_TX_BYTES as Amount,
        1_000,
        Call {
            module: ModuleId::CORE,
            payload: vec![0; MAX_TX_BYTES],
        },
    );
    let huge_len = huge.to_bytes().len();
    let too_large = ChainError::TooLarge {
        what: "transaction",
        len: huge_len,
        max: MAX_TX_BYTES,
    };
    let cases = vec![
        Refused {
            name: "bad signature",
            tx: bad_sig,
            at_submit: ChainError::BadSignature("transaction"),
            // The replica checks signatures before executing a block.
            in_block: None,
        },
        Refused {
            name: "wrong chain id",
            tx: other_chain,
            at_submit: ChainError::WrongChainId {
                expected: "ios-sim".into(),
                got: "ios-other".into(),
            },
            in_block: Some(ChainError::WrongChainId {
                expected: "ios-sim".into(),
                got: "ios-other".into(),
            }),
        },
        Refused {
            // Signed for shard 2 at the next nonce: valid there, never here.
            name: "signed for another shard",
            tx: other_shard,
            at_submit: ChainError::WrongShard {
                expected: BEACON,
                got: 2,
            },
            in_block: Some(ChainError::WrongShard {
                expected: BEACON,
                got: 2,
            }),
        },
        Refused {
            name: "replayed nonce",
            tx: first,
            at_submit: ChainError::BadNonce {
                expected: 1,
                got: 0,
            },
            in_block: Some(ChainError::BadNonce {
                expected: 1,
                got: 0,
            }),
        },
        Refused {
            name: "nonce too far ahead",
            tx: sign(1 + 257, FEE, 1_000, call.clone()),
            at_submit: ChainError::BadNonce {
                expected: 1,
                got: 258,
            },
            in_block: Some(ChainError::BadNonce {
                expected: 1,
                got: 258,
            }),
        },
        Refused {
            name: "expired",
            tx: sign(1, FEE, 1, call.clone()),
            at_submit: ChainError::Expired {
                expires_at: 1,
                height: 2,
            },
            in_block: Some(ChainError::Expired {
                expires_at: 1,
                height: 2,
            }),
        },
        Refused {
            name: "fee below the minimum",
            tx: free,
            at_submit: ChainError::FeeTooLow {
                fee: 0,
                min: free_len,
            },
            in_block: Some(ChainError::FeeTooLow {
                fee: 0,
                min: free_len,
            }),
        },
        Refused {
            name: "oversized",
            tx: huge,
            at_submit: too_large.clone(),
            in_block: Some(too_large),
        },
    ];
    for case in cases {
        check_refused(&mut solo, case);
    }

    // A nonce at the edge of the gap is still pooled (so the one above is the real limit).
    let (results, _) = solo
        .replica
        .submit(vec![sign(1 + 256, FEE, 1_000, call)], solo.now);
    assert!(results[0].is_ok(), "{results:?}");
}

#[test]
fn block_limits_apply_when_validating() {
    const MAX_BYTES: u32 = 600;
    let l = Ledger::with(|p| p.max_block_txs = 3);
    let chain_id = l.chain_id();
    let transfer = LedgerCall::Transfer {
        to: l.users[2].address(),
        amount: 1,
        token: Token::Iost,
    };
    let txs: Vec<SignedTransaction> = (0..5)
        .map(|n| ledger_tx(&l.users[0], &chain_id, n, &transfer))
        .collect();
    let len = txs[0].to_bytes().len();
    assert!(txs.iter().all(|t| t.to_bytes().len() == len));
    assert!(
        3 * len <= MAX_BYTES as usize && 4 * len > MAX_BYTES as usize,
        "tx is {len} bytes"
    );

    assert_eq!(
        l.execute(&txs[..4], Mode::Validate).map(|_| ()),
        Err(ChainError::InvalidBlock("4 transactions, limit 3".into()))
    );
    assert!(l.execute(&txs[..3], Mode::Validate).is_ok());
    // A proposer stops at the limit instead.
    let built = l.execute(&txs, Mode::Propose).expect("propose");
    assert_eq!(built.txs.len(), 3);

    let l = Ledger::with(|p| p.max_block_bytes = MAX_BYTES);
    assert_eq!(
        l.execute(&txs, Mode::Validate).map(|_| ()),
        Err(ChainError::TooLarge {
            what: "block",
            len: 5 * len,
            max: MAX_BYTES as usize,
        })
    );
    assert!(l.execute(&txs[..3], Mode::Validate).is_ok());
    let built = l.execute(&txs, Mode::Propose).expect("propose");
    assert_eq!(built.txs.len(), 3);
}

#[test]
fn a_transaction_that_cannot_pay_its_fee_is_left_out() {
    let mut l = Ledger::new();
    let chain_id = l.chain_id();
    let poor = Keypair::from_seed("ledger-poor", 0);
    // Fund the account with less than one fee.
    let fund = l.tx(
        0,
        LedgerModule::call(&LedgerCall::Transfer {
            to: poor.address(),
            amount: FEE - 1,
            token: Token::Iost,
        }),
    );
    l.commit(&[fund]);
    let tx = ledger_tx(
        &poor,
        &chain_id,
        0,
        &LedgerCall::Transfer {
            to: l.users[0].address(),
            amount: 1,
            token: Token::Iost,
        },
    );
    let want = ChainError::InsufficientFunds {
        need: FEE,
        have: FEE - 1,
    };
    assert_eq!(
        l.execute(std::slice::from_ref(&tx), Mode::Validate)
            .map(|_| ()),
        Err(ChainError::InvalidBlock(format!(
            "transaction {}: {want}",
            tx.id()
        )))
    );
    assert!(l.commit(&[tx]).is_empty());
    assert_eq!(l.account(&poor.address()).balance, FEE - 1);
}

// ---- evidence ---------------------------------------------------------------

fn vote(key: &Keypair, chain: &str, round: u32, kind: VoteKind, block: Option<Hash>) -> SignedVote {
    SignedVote::new(
        Vote {
            chain_id: ChainId(chain.into()),
            shard: 0,
            epoch: 0,
            height: 5,
            round,
            kind,
            block,
        },
        key,
    )
}

fn proposal(key: &Keypair, block: Hash) -> SignedProposal {
    SignedProposal::new(
        Proposal {
            chain_id: ChainId("ios-sim".into()),
            shard: 0,
            height: 5,
            round: 0,
            block,
            valid_round: None,
        },
        key,
    )
}

fn evidence_tx(l: &Ledger, u: usize, ev: Evidence) -> SignedTransaction {
    l.tx(u, LedgerModule::call(&LedgerCall::Evidence(Box::new(ev))))
}

#[test]
fn equivocation_is_slashed_once_per_offence() {
    let mut l = Ledger::new();
    let offender = l.validator.address();
    let (x, y) = (hash_tagged("t", b"x"), hash_tagged("t", b"y"));
    let prevote = |b| vote(&validator_key(), "ios-sim", 0, VoteKind::Prevote, b);
    let ev = Evidence::DuplicateVote {
        a: prevote(Some(x)),
        b: prevote(Some(y)),
    };
    assert_eq!(ev.verify().map(|(a, _)| a), Ok(offender));
    assert!(committee::validators(&l.store)
        .expect("bonded")
        .contains(&offender));

    let before = l.account(&offender);
    let slash = before.stake * l.runtime.params().slash as Amount / PPM;
    assert!(slash > 0);
    let tx = evidence_tx(&l, 0, ev.clone());
    let receipts = l.commit(std::slice::from_ref(&tx));
    let r = receipt_of(&receipts, &tx);
    assert_eq!(r.status, ReceiptStatus::Success);
    assert!(r.events.iter().any(|e| e.kind == "slashed"));
    let after = l.account(&offender);
    assert_eq!(after.stake, before.stake - slash);
    assert_eq!(l.fee_pool(), slash);
    assert_eq!(
        (after.reputation, after.penalty, after.jailed),
        (0, PPM as u32, true)
    );
    assert_eq!(after.believability(&l.runtime.params().believability), 0);
    assert!(!committee::validators(&l.store)
        .expect("bonded")
        .contains(&offender));

    // The same offence again, in either order, from anyone: refused, nothing moves.
    let swapped = Evidence::DuplicateVote {
        a: prevote(Some(y)),
        b: prevote(Some(x)),
    };
    let with_nil = Evidence::DuplicateVote {
        a: prevote(Some(x)),
        b: prevote(None),
    };
    for (u, ev) in [(0, ev), (1, swapped), (2, with_nil)] {
        let tx = evidence_tx(&l, u, ev);
        let receipts = l.commit(std::slice::from_ref(&tx));
        assert!(failed("duplicate_evidence")(
            &receipt_of(&receipts, &tx).status
        ));
        assert_eq!(l.account(&offender).stake, after.stake);
        assert_eq!(l.fee_pool(), slash);
    }

    // A different offence (conflicting proposals) is slashed again, from what is left.
    let ev = Evidence::DuplicateProposal {
        a: proposal(&validator_key(), x),
        b: proposal(&validator_key(), y),
    };
    let tx = evidence_tx(&l, 0, ev);
    let receipts = l.commit(std::slice::from_ref(&tx));
    assert_eq!(receipt_of(&receipts, &tx).status, ReceiptStatus::Success);
    let second = after.stake * l.runtime.params().slash as Amount / PPM;
    assert_eq!(l.account(&offender).stake, after.stake - second);
    assert_eq!(l.fee_pool(), slash + second);
}

#[test]
fn invalid_evidence_is_refused_and_slashes_nothing() {
    let v = validator_key();
    let user = user_keys()[0].clone();
    let (x, y) = (Some(hash_tagged("t", b"x")), Some(hash_tagged("t", b"y")));
    let mut forged = vote(&v, "ios-sim", 0, VoteKind::Prevote, y);
    forged.signature.0[3] ^= 1;
    let invalid = |m: &str| Err(ChainError::InvalidEvidence(m.into()));
    let pair = |a, b| Evidence::DuplicateVote { a, b };
    // (name, evidence, Evidence::verify, failed receipt code)
    let cases: Vec<(&str, Evidence, Result<(), ChainError>, &str)> = vec![
        (
            "different rounds",
            pair(
                vote(&v, "ios-sim", 0, VoteKind::Prevote, x),
                vote(&v, "ios-sim", 1, VoteKind::Prevote, y),
            ),
            invalid("votes are for different steps"),
            "invalid_evidence",
        ),
        (
            "different kinds",
            pair(
                vote(&v, "ios-sim", 0, VoteKind::Prevote, x),
                vote(&v, "ios-sim", 0, VoteKind::Precommit, y),
            ),
            invalid("votes are for different steps"),
            "invalid_evidence",
        ),
        (
            "same block",
            pair(
                vote(&v, "ios-sim", 0, VoteKind::Prevote, x),
                vote(&v, "ios-sim", 0, VoteKind::Prevote, x),
            ),
            invalid("votes do not conflict"),
            "invalid_evidence",
        ),
        (
            "different voters",
            pair(
                vote(&v, "ios-sim", 0, VoteKind::Prevote, x),
                vote(&user, "ios-sim", 0, VoteKind::Prevote, y),
            ),
            invalid("votes are from different validators"),
            "invalid_evidence",
        ),
        (
            "forged signature",
            pair(vote(&v, "ios-sim", 0, VoteKind::Prevote, x), forged),
            Err(ChainError::BadSignature("vote")),
            "bad_signature",
        ),
        (
            "proposals for different rounds",
            Evidence::DuplicateProposal {
                a: proposal(&v, hash_tagged("t", b"x")),
                b: {
                    let mut p = proposal(&v, hash_tagged("t", b"y")).proposal;
                    p.round = 1;
                    SignedProposal::new(p, &v)
                },
            },
            invalid("proposals are for different rounds"),
            "invalid_evidence",
        ),
        (
            "an account with nothing staked",
            pair(
                vote(&user, "ios-sim", 0, VoteKind::Prevote, x),
                vote(&user, "ios-sim", 0, VoteKind::Prevote, y),
            ),
            Ok(()),
            "invalid_evidence",
        ),
        (
            "another chain's votes",
            pair(
                vote(&v, "ios-other", 0, VoteKind::Prevote, x),
                vote(&v, "ios-other", 0, VoteKind::Prevote, y),
            ),
            Ok(()),
            "wrong_chain_id",
        ),
    ];
    for (name, ev, verified, code) in cases {
        assert_eq!(ev.verify().map(|_| ()), verified, "{name}");
        let mut l = Ledger::new();
        let before = l.account(&v.address());
        let tx = evidence_tx(&l, 1, ev);
        let receipts = l.commit(std::slice::from_ref(&tx));
        let status = &receipt_of(&receipts, &tx).status;
        assert!(failed(code)(status), "{name}: {status:?}");
        let after = l.account(&v.address());
        assert_eq!(
            (after.stake, after.jailed, after.reputation),
            (before.stake, false, before.reputation),
            "{name}"
        );
        assert_eq!(l.fee_pool(), 0, "{name}");
    }
}

/// Evidence counts only within one unbonding period of the offence, and only
/// for this shard.
#[test]
fn stale_or_foreign_evidence_is_refused() {
    let v = validator_key();
    let (x, y) = (Some(hash_tagged("t", b"x")), Some(hash_tagged("t", b"y")));
    let double = |shard: u16| {
        let mut a = vote(&v, "ios-sim", 0, VoteKind::Prevote, x).vote;
        let mut b = vote(&v, "ios-sim", 0, VoteKind::Prevote, y).vote;
        a.shard = shard;
        b.shard = shard;
        Evidence::DuplicateVote {
            a: SignedVote::new(a, &v),
            b: SignedVote::new(b, &v),
        }
    };
    // The offence is at height 5; with a 2-block unbonding period it expires after height 7.
    let mut l = Ledger::with(|p| p.unbonding_blocks = 2);
    while l.env().height <= 7 {
        l.commit(&[]);
    }
    for (name, ev, code) in [
        (
            "older than the unbonding period",
            double(0),
            "invalid_evidence",
        ),
        ("another shard's votes", double(2), "wrong_shard"),
    ] {
        let before = l.account(&v.address());
        let tx = evidence_tx(&l, 1, ev);
        let receipts = l.commit(std::slice::from_ref(&tx));
        let status = &receipt_of(&receipts, &tx).status;
        assert!(failed(code)(status), "{name}: {status:?}");
        let after = l.account(&v.address());
        assert_eq!((after.stake, after.jailed), (before.stake, false), "{name}");
    }
}
