//! State proofs from a committed store verify against its root with the pure
//! `verify_state_proof`, for present and absent keys; anything tampered with
//! (value, root, path, claim) fails with a typed `Proof` error.

use crate::{check_golden, hex, ledger_tx, open_db, tick_until_commit, Solo};
use ios_chain::committee::K_COMMITTEE;
use ios_chain::crypto::Keypair;
use ios_chain::error::ChainError;
use ios_chain::execute::Runtime;
use ios_chain::hash::{hash_tagged, Hash};
use ios_chain::ledger::{LedgerCall, Token};
use ios_chain::module::keys;
use ios_chain::params::{ChainParams, Genesis, GenesisAccount};
use ios_chain::sim::{sim_genesis, sim_params};
use ios_chain::state::smt::{ProofError, SparseMerkleProof};
use ios_chain::state::{verify_state_proof, StateStore};
use ios_chain::types::UNITS_PER_IOST as IOST;

/// A one-validator chain with two users, after genesis.
fn solo() -> Solo {
    let validator = Keypair::from_seed("proof-validator", 0);
    let users: Vec<Keypair> = (0..2)
        .map(|i| Keypair::from_seed("proof-user", i))
        .collect();
    let genesis = sim_genesis(sim_params(1), std::slice::from_ref(&validator), &users);
    Solo::open(validator, users, &genesis)
}

fn proof_error(e: ProofError) -> Result<(), ChainError> {
    Err(ChainError::Proof(e.to_string()))
}

/// One claim about state checked against one root.
struct Claim<'a> {
    name: &'a str,
    root: Hash,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
    proof: SparseMerkleProof,
    want: Result<(), ChainError>,
}

fn check(c: Claim<'_>) {
    assert_eq!(
        verify_state_proof(&c.root, &c.key, c.value.as_deref(), &c.proof),
        c.want,
        "{}",
        c.name
    );
}

#[test]
fn proofs_verify_against_the_committed_root_and_tampering_fails() {
    let mut s = solo();
    let genesis_root = s.replica.store().state_root();
    let (sender, receiver) = (s.users[0].clone(), s.users[1].address());
    let chain_id = s.replica.runtime().params().chain_id.clone();
    let tx = ledger_tx(
        &sender,
        &chain_id,
        0,
        &LedgerCall::Transfer {
            to: receiver,
            amount: 5,
            token: Token::Iost,
        },
    );
    let (results, _) = s.replica.submit(vec![tx.clone()], s.now);
    assert!(results[0].is_ok());
    let committed = tick_until_commit(&mut s.replica, &mut s.now);
    // With the validator's randomness dealing, posted as soon as it started.
    assert!(committed.block.txs.contains(&tx));

    let store = s.replica.store();
    let root = store.state_root();
    assert_ne!(root, genesis_root);
    assert_eq!(root, committed.block.header.state_root);
    assert_eq!(store.head().map(|h| h.height), Some(1));

    let account = keys::account(&sender.address());
    let (value, proof) = store.prove(&account).expect("prove account");
    let value = value.expect("the sender exists");
    let unknown = keys::account(&Keypair::from_seed("proof-nobody", 0).address());
    let (absent, absent_proof) = store.prove(&unknown).expect("prove absence");
    assert_eq!(absent, None);
    let (committee, committee_proof) = store.prove(K_COMMITTEE).expect("prove committee");

    let mut other_value = value.clone();
    other_value[0] ^= 1;
    let mut other_root = root;
    other_root.0[31] ^= 1;
    let mut bent = proof.clone();
    bent.siblings[0].0[0] ^= 1;
    let mut cut = proof.clone();
    cut.siblings.pop();
    let mut too_deep = absent_proof.clone();
    too_deep.siblings = vec![Hash::ZERO; 257];

    // An absence path ends at an empty subtree or at another key's leaf.
    let claimed_present = match absent_proof.leaf {
        None => ProofError::MissingLeaf,
        Some(_) => ProofError::KeyMismatch,
    };
    let claim =
        |name, root, key: &[u8], value: Option<&[u8]>, proof: &SparseMerkleProof, want| Claim {
            name,
            root,
            key: key.to_vec(),
            value: value.map(<[u8]>::to_vec),
            proof: proof.clone(),
            want,
        };
    let cases = vec![
        claim(
            "account is present",
            root,
            &account,
            Some(&value),
            &proof,
            Ok(()),
        ),
        claim(
            "unknown account is absent",
            root,
            &unknown,
            None,
            &absent_proof,
            Ok(()),
        ),
        claim(
            "another key",
            root,
            K_COMMITTEE,
            committee.as_deref(),
            &committee_proof,
            Ok(()),
        ),
        claim(
            "tampered value",
            root,
            &account,
            Some(&other_value),
            &proof,
            proof_error(ProofError::ValueMismatch),
        ),
        claim(
            "tampered root",
            other_root,
            &account,
            Some(&value),
            &proof,
            proof_error(ProofError::RootMismatch),
        ),
        claim(
            "stale root",
            genesis_root,
            &account,
            Some(&value),
            &proof,
            proof_error(ProofError::RootMismatch),
        ),
        claim(
            "tampered sibling",
            root,
            &account,
            Some(&value),
            &bent,
            proof_error(ProofError::RootMismatch),
        ),
        claim(
            "truncated path",
            root,
            &account,
            Some(&value),
            &cut,
            proof_error(ProofError::RootMismatch),
        ),
        claim(
            "present key claimed absent",
            root,
            &account,
            None,
            &proof,
            proof_error(ProofError::NotExcluded),
        ),
        claim(
            "absent key claimed present",
            root,
            &unknown,
            Some(&value),
            &absent_proof,
            proof_error(claimed_present),
        ),
        claim(
            "proof of another key",
            root,
            &unknown,
            Some(&value),
            &proof,
            proof_error(ProofError::KeyMismatch),
        ),
        claim(
            "absence under a tampered root",
            other_root,
            &unknown,
            None,
            &absent_proof,
            proof_error(ProofError::RootMismatch),
        ),
        claim(
            "too many siblings",
            root,
            &unknown,
            None,
            &too_deep,
            proof_error(ProofError::TooManySiblings(257)),
        ),
    ];
    for case in cases {
        check(case);
    }
}

/// The genesis root and one account proof are pinned: any change to account
/// encoding, key hashing or tree hashing shows up as a diff. The genesis is
/// spelled out here so that simulator tweaks do not move it.
#[test]
fn golden_genesis_root_and_proof() {
    let validator_key = Keypair::from_seed("golden-validator", 0);
    let validator = validator_key.address();
    let user = Keypair::from_seed("golden-user", 0).address();
    let account = |address, balance, stake, servi, reputation| GenesisAccount {
        address,
        balance,
        stake,
        servi,
        reputation,
        pvss_key: (address == validator).then(|| validator_key.pvss().public()),
    };
    let genesis = Genesis {
        params: ChainParams::devnet("ios-golden"),
        time: 1_700_000_000_000,
        randomness: hash_tagged("golden", b"randomness"),
        accounts: vec![
            account(validator, 1_000 * IOST, 10_000 * IOST, 5, 500_000),
            account(user, 1_000_000 * IOST, 0, 0, 0),
        ],
        modules: Vec::new(),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open_db(dir.path());
    let mut store = StateStore::open(&db).expect("open store");
    Runtime::new(genesis.params.clone())
        .init_genesis(&mut store, &genesis)
        .expect("genesis");

    let key = keys::account(&user);
    let (value, proof) = store.prove(&key).expect("prove");
    let value = value.expect("funded at genesis");
    verify_state_proof(&store.state_root(), &key, Some(&value), &proof).expect("verifies");
    let siblings: Vec<String> = proof.siblings.iter().map(Hash::to_hex).collect();
    let (leaf_key, leaf_value) = proof.leaf.expect("an inclusion proof ends at a leaf");
    check_golden(
        "state_proofs.txt",
        &[
            ("genesis_state_root", store.state_root().to_hex()),
            ("user_account_borsh", hex(&value)),
            ("user_proof_leaf_key", leaf_key.to_hex()),
            ("user_proof_leaf_value", leaf_value.to_hex()),
            ("user_proof_siblings", siblings.join(",")),
        ],
    );
}
