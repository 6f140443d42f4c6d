//! Canonical encoding: every value round-trips, decoding any bytes is a typed
//! error (never a panic), size limits apply before decoding, and the byte
//! forms and hashes of fixed values are pinned by golden vectors.

use crate::{check_golden, hex};
use ios_chain::block::{
    Block, BlockHeader, CommitCertificate, Proposal, SignedProposal, SignedVote, Vote, VoteKind,
};
use ios_chain::codec;
use ios_chain::crypto::{Address, Keypair, Signature};
use ios_chain::error::ChainError;
use ios_chain::hash::Hash;
use ios_chain::ledger::{LedgerCall, LedgerModule, Token};
use ios_chain::message::{Message, MAX_MESSAGE_BYTES};
use ios_chain::tx::{Call, ModuleId, SignedTransaction, Transaction, MAX_TX_BYTES};
use ios_chain::types::{ChainId, UNITS_PER_IOST};
use proptest::collection::vec;
use proptest::prelude::*;

// ---- strategies -------------------------------------------------------

fn hash() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>().prop_map(Hash)
}

fn address() -> impl Strategy<Value = Address> {
    any::<[u8; 32]>().prop_map(Address)
}

fn signature() -> impl Strategy<Value = Signature> {
    (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(a, b)| {
        let mut s = [0u8; 64];
        s[..32].copy_from_slice(&a);
        s[32..].copy_from_slice(&b);
        Signature(s)
    })
}

fn chain_id() -> impl Strategy<Value = ChainId> {
    // Any unicode, not just ASCII: borsh strings are length-prefixed UTF-8.
    "\\PC{0,12}".prop_map(ChainId)
}

fn call() -> impl Strategy<Value = Call> {
    (any::<u16>(), vec(any::<u8>(), 0..64)).prop_map(|(m, payload)| Call {
        module: ModuleId(m),
        payload,
    })
}

fn signed_tx() -> impl Strategy<Value = SignedTransaction> {
    (
        chain_id(),
        address(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        call(),
        signature(),
    )
        .prop_map(
            |(chain_id, sender, nonce, fee, expires_at, call, signature)| SignedTransaction {
                tx: Transaction {
                    chain_id,
                    shard: (nonce % 5) as u16,
                    sender,
                    nonce,
                    fee,
                    expires_at,
                    call,
                },
                signature,
            },
        )
}

fn header() -> impl Strategy<Value = BlockHeader> {
    (
        (
            chain_id(),
            any::<u16>(),
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
        ),
        (hash(), hash(), hash(), hash()),
        (address(), any::<u64>()),
    )
        .prop_map(
            |(
                (chain_id, shard, height, epoch, round),
                (prev, tx_root, receipts_root, state_root),
                (proposer, time),
            )| BlockHeader {
                chain_id,
                shard,
                height,
                epoch,
                round,
                prev,
                tx_root,
                receipts_root,
                state_root,
                proposer,
                time,
            },
        )
}

fn block() -> impl Strategy<Value = Block> {
    (header(), vec(signed_tx(), 0..4)).prop_map(|(header, txs)| Block { header, txs })
}

fn vote_kind() -> impl Strategy<Value = VoteKind> {
    prop_oneof![Just(VoteKind::Prevote), Just(VoteKind::Precommit)]
}

fn signed_vote() -> impl Strategy<Value = SignedVote> {
    (
        chain_id(),
        any::<u16>(),
        (any::<u64>(), any::<u64>()),
        any::<u32>(),
        vote_kind(),
        proptest::option::of(hash()),
        address(),
        signature(),
    )
        .prop_map(
            |(chain_id, shard, (epoch, height), round, kind, block, voter, signature)| SignedVote {
                vote: Vote {
                    chain_id,
                    shard,
                    epoch,
                    height,
                    round,
                    kind,
                    block,
                },
                voter,
                signature,
            },
        )
}

fn signed_proposal() -> impl Strategy<Value = SignedProposal> {
    (
        chain_id(),
        any::<u16>(),
        any::<u64>(),
        any::<u32>(),
        hash(),
        proptest::option::of(any::<u32>()),
        address(),
        signature(),
    )
        .prop_map(
            |(chain_id, shard, height, round, block, valid_round, proposer, signature)| {
                SignedProposal {
                    proposal: Proposal {
                        chain_id,
                        shard,
                        height,
                        round,
                        block,
                        valid_round,
                    },
                    proposer,
                    signature,
                }
            },
        )
}

fn cert() -> impl Strategy<Value = CommitCertificate> {
    (
        any::<u64>(),
        any::<u32>(),
        hash(),
        vec((address(), signature()), 0..4),
    )
        .prop_map(|(height, round, block, signatures)| CommitCertificate {
            height,
            round,
            block,
            signatures,
        })
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (signed_proposal(), block(), vec(signed_vote(), 0..3)).prop_map(
            |(proposal, block, pol)| Message::Proposal {
                proposal,
                block: std::sync::Arc::new(block),
                pol
            }
        ),
        signed_vote().prop_map(Message::Vote),
        (any::<u32>(), block(), vec(signed_vote(), 0..3)).prop_map(|(round, block, votes)| {
            Message::Polka {
                round,
                block: std::sync::Arc::new(block),
                votes,
            }
        }),
        vec(signed_tx(), 0..4).prop_map(Message::Txs),
        (any::<u64>(), any::<u32>()).prop_map(|(height, round)| Message::Status { height, round }),
        any::<u64>().prop_map(|from| Message::SyncRequest { from }),
        vec((block(), cert()), 0..3).prop_map(|blocks| Message::SyncResponse { blocks }),
    ]
}

// ---- checks -----------------------------------------------------------

/// How one consensus type is encoded and decoded at its public entry point.
struct Codec<T> {
    what: &'static str,
    max: usize,
    encode: fn(&T) -> Vec<u8>,
    decode: fn(&[u8]) -> Result<T, ChainError>,
}

const TX: Codec<SignedTransaction> = Codec {
    what: "transaction",
    max: MAX_TX_BYTES,
    encode: SignedTransaction::to_bytes,
    decode: SignedTransaction::from_bytes,
};

const MESSAGE: Codec<Message> = Codec {
    what: "message",
    max: MAX_MESSAGE_BYTES,
    encode: Message::to_bytes,
    decode: Message::from_bytes,
};

/// Blocks have no fixed limit; callers pass theirs. One MiB here.
const BLOCK_MAX: usize = 1 << 20;
const BLOCK: Codec<Block> = Codec {
    what: "block",
    max: BLOCK_MAX,
    encode: codec::encode::<Block>,
    decode: |b| Block::from_bytes(b, BLOCK_MAX),
};

const VOTE: Codec<SignedVote> = Codec {
    what: "vote",
    max: 4096,
    encode: codec::encode::<SignedVote>,
    decode: |b| codec::decode("vote", b, 4096),
};

/// `value` survives encode -> decode, and its encoding is the only one:
/// re-encoding gives the same bytes, and no proper prefix or extension of
/// them decodes.
fn check_round_trip<T: PartialEq + std::fmt::Debug>(c: &Codec<T>, value: &T) {
    let bytes = (c.encode)(value);
    let decoded = (c.decode)(&bytes).unwrap_or_else(|e| panic!("{}: {e}", c.what));
    assert_eq!(&decoded, value);
    assert_eq!(
        (c.encode)(&decoded),
        bytes,
        "{}: re-encoding differs",
        c.what
    );

    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(
        matches!((c.decode)(&trailing), Err(ChainError::Malformed { what, .. }) if what == c.what),
        "{}: a trailing byte was accepted",
        c.what
    );
    if !bytes.is_empty() {
        assert!(
            matches!(
                (c.decode)(&bytes[..bytes.len() - 1]),
                Err(ChainError::Malformed { .. })
            ),
            "{}: a truncated encoding was accepted",
            c.what
        );
    }
}

/// Decoding any bytes never panics: it is `TooLarge` over the limit,
/// otherwise `Malformed`, or a value whose encoding is exactly those bytes.
fn check_any_bytes<T: std::fmt::Debug>(c: &Codec<T>, bytes: &[u8]) {
    match (c.decode)(bytes) {
        Ok(v) => assert_eq!(
            (c.encode)(&v),
            bytes,
            "{}: non-canonical bytes decoded",
            c.what
        ),
        Err(ChainError::TooLarge { what, len, max }) => {
            assert_eq!((what, len, max), (c.what, bytes.len(), c.max));
        }
        Err(ChainError::Malformed { what, .. }) => {
            assert_eq!(what, c.what);
            assert!(
                bytes.len() <= c.max,
                "{}: oversized input was decoded",
                c.what
            );
        }
        Err(e) => panic!("{}: unexpected error {e:?}", c.what),
    }
}

/// A valid encoding with one byte changed, inserted or removed.
fn mutate(mut bytes: Vec<u8>, op: u8, at: usize, byte: u8) -> Vec<u8> {
    if bytes.is_empty() {
        return vec![byte];
    }
    let i = at % bytes.len();
    match op % 3 {
        0 => bytes[i] ^= byte.max(1),
        1 => bytes.insert(i, byte),
        _ => {
            bytes.remove(i);
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn signed_transactions_round_trip(tx in signed_tx()) {
        check_round_trip(&TX, &tx);
    }

    #[test]
    fn blocks_round_trip(block in block()) {
        check_round_trip(&BLOCK, &block);
    }

    #[test]
    fn signed_votes_round_trip(vote in signed_vote()) {
        check_round_trip(&VOTE, &vote);
    }

    #[test]
    fn messages_round_trip(msg in message()) {
        check_round_trip(&MESSAGE, &msg);
    }

    #[test]
    fn arbitrary_bytes_are_a_typed_error(bytes in vec(any::<u8>(), 0..512)) {
        check_any_bytes(&TX, &bytes);
        check_any_bytes(&MESSAGE, &bytes);
        check_any_bytes(&BLOCK, &bytes);
        check_any_bytes(&VOTE, &bytes);
    }

    #[test]
    fn mutated_encodings_are_a_typed_error(
        msg in message(),
        tx in signed_tx(),
        block in block(),
        op in any::<u8>(),
        at in any::<usize>(),
        byte in any::<u8>(),
    ) {
        check_any_bytes(&MESSAGE, &mutate((MESSAGE.encode)(&msg), op, at, byte));
        check_any_bytes(&TX, &mutate((TX.encode)(&tx), op, at, byte));
        check_any_bytes(&BLOCK, &mutate((BLOCK.encode)(&block), op, at, byte));
    }

    #[test]
    fn addresses_round_trip_through_bech32m(key in any::<[u8; 32]>()) {
        let a = Address(key);
        let s = a.to_bech32();
        prop_assert!(s.starts_with("ios1"), "{s}");
        prop_assert_eq!(Address::from_bech32(&s), Ok(a));
        prop_assert_eq!(s.parse::<Address>(), Ok(a));
    }

    /// bech32m detects every single-character error.
    #[test]
    fn a_mistyped_address_is_rejected(key in any::<[u8; 32]>(), at in any::<usize>(), c in 0usize..32) {
        const CHARSET: &[u8] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
        let s = Address(key).to_bech32();
        let mut bytes = s.clone().into_bytes();
        let i = 4 + at % (bytes.len() - 4);
        let replacement = if CHARSET[c] == bytes[i] { CHARSET[(c + 1) % 32] } else { CHARSET[c] };
        bytes[i] = replacement;
        let typo = String::from_utf8(bytes).expect("ascii");
        prop_assert!(
            matches!(Address::from_bech32(&typo), Err(ChainError::InvalidAddress(_))),
            "{} accepted as a typo of {}", typo, s
        );
    }
}

// ---- size limits --------------------------------------------------------

/// A transaction whose encoding is exactly `len` bytes (padding its payload).
fn tx_of_len(len: usize) -> SignedTransaction {
    let key = Keypair::from_seed("encoding", 0);
    let make = |payload: Vec<u8>| {
        Transaction {
            chain_id: ChainId("ios-test".into()),
            shard: 0,
            sender: key.address(),
            nonce: 0,
            fee: 1,
            expires_at: 1,
            call: Call {
                module: ModuleId(9),
                payload,
            },
        }
        .sign(&key)
    };
    let base = make(Vec::new()).to_bytes().len();
    let tx = make(vec![0xab; len - base]);
    assert_eq!(tx.to_bytes().len(), len);
    tx
}

/// Checks that a valid encoding of `len` bytes decodes, and one byte more is
/// `TooLarge` although it is otherwise well formed: the limit applies first.
fn check_limit<T: std::fmt::Debug>(c: &Codec<T>, at_limit: Vec<u8>, over_limit: Vec<u8>) {
    assert_eq!(at_limit.len(), c.max);
    assert_eq!(over_limit.len(), c.max + 1);
    assert!((c.decode)(&at_limit).is_ok(), "{}: at the limit", c.what);
    assert_eq!(
        (c.decode)(&over_limit).map(|_| ()),
        Err(ChainError::TooLarge {
            what: c.what,
            len: c.max + 1,
            max: c.max
        })
    );
}

#[test]
fn oversized_input_is_too_large_before_decoding() {
    check_limit(
        &TX,
        tx_of_len(MAX_TX_BYTES).to_bytes(),
        tx_of_len(MAX_TX_BYTES + 1).to_bytes(),
    );

    // A message of exactly the limit: one transaction padded to fill it.
    let msg_of_len = |len: usize| {
        let overhead = Message::Txs(vec![tx_of_len(1_000)]).to_bytes().len() - 1_000;
        let m = Message::Txs(vec![tx_of_len(len - overhead)]);
        m.to_bytes()
    };
    check_limit(
        &MESSAGE,
        msg_of_len(MAX_MESSAGE_BYTES),
        msg_of_len(MAX_MESSAGE_BYTES + 1),
    );

    // Zero bytes over the limit: the length alone decides, nothing is parsed.
    assert_eq!(
        SignedTransaction::from_bytes(&vec![0u8; MAX_TX_BYTES + 1]).map(|_| ()),
        Err(ChainError::TooLarge {
            what: "transaction",
            len: MAX_TX_BYTES + 1,
            max: MAX_TX_BYTES
        })
    );
    let block = Block {
        header: golden_header(),
        txs: vec![golden_tx()],
    };
    let bytes = codec::encode(&block);
    assert_eq!(Block::from_bytes(&bytes, bytes.len()), Ok(block));
    assert_eq!(
        Block::from_bytes(&bytes, bytes.len() - 1),
        Err(ChainError::TooLarge {
            what: "block",
            len: bytes.len(),
            max: bytes.len() - 1
        })
    );
}

/// The stateless checks of a transaction each name what is wrong.
#[test]
fn stateless_checks_are_typed() {
    let chain = ChainId("ios-golden".into());
    let good = golden_tx();
    let mut bad_sig = good.clone();
    bad_sig.signature.0[10] ^= 1;
    let mut other_sender = good.clone();
    other_sender.tx.sender = Keypair::from_seed("golden", 9).address();
    let big = {
        let key = Keypair::from_seed("golden", 0);
        let mut t = golden_tx().tx;
        t.call.payload = vec![0; MAX_TX_BYTES];
        t.sign(&key)
    };
    let big_len = big.to_bytes().len();
    let other_shard = {
        let key = Keypair::from_seed("golden", 0);
        let mut t = golden_tx().tx;
        t.shard = 2;
        t.sign(&key)
    };
    let cases: Vec<(&str, SignedTransaction, ChainId, Result<(), ChainError>)> = vec![
        ("valid", good.clone(), chain.clone(), Ok(())),
        (
            "signed for another shard",
            other_shard,
            chain.clone(),
            Err(ChainError::WrongShard {
                expected: 1,
                got: 2,
            }),
        ),
        (
            "wrong chain",
            good,
            ChainId("ios-other".into()),
            Err(ChainError::WrongChainId {
                expected: "ios-other".into(),
                got: "ios-golden".into(),
            }),
        ),
        (
            "flipped signature bit",
            bad_sig,
            chain.clone(),
            Err(ChainError::BadSignature("transaction")),
        ),
        (
            "signed by someone else",
            other_sender,
            chain.clone(),
            Err(ChainError::BadSignature("transaction")),
        ),
        (
            "too large",
            big,
            chain,
            Err(ChainError::TooLarge {
                what: "transaction",
                len: big_len,
                max: MAX_TX_BYTES,
            }),
        ),
    ];
    for (name, tx, chain, want) in cases {
        assert_eq!(tx.check_stateless(&chain, 1), want, "{name}");
    }
}

// ---- golden vectors ------------------------------------------------------

fn golden_tx() -> SignedTransaction {
    let from = Keypair::from_seed("golden", 0);
    let to = Keypair::from_seed("golden", 1).address();
    Transaction {
        chain_id: ChainId("ios-golden".into()),
        shard: 1,
        sender: from.address(),
        nonce: 7,
        fee: 1_000,
        expires_at: 100,
        call: LedgerModule::call(&LedgerCall::Transfer {
            to,
            amount: 12 * UNITS_PER_IOST + 34,
            token: Token::Iost,
        }),
    }
    .sign(&from)
}

fn golden_header() -> BlockHeader {
    let tx = golden_tx();
    BlockHeader {
        chain_id: ChainId("ios-golden".into()),
        shard: 1,
        height: 42,
        epoch: 2,
        round: 1,
        prev: ios_chain::hash::hash_tagged("golden", b"prev"),
        tx_root: Block::tx_root_of(std::slice::from_ref(&tx)),
        receipts_root: ios_chain::hash::hash_tagged("golden", b"receipts"),
        state_root: ios_chain::hash::hash_tagged("golden", b"state"),
        proposer: Keypair::from_seed("golden", 2).address(),
        time: 1_700_000_000_000,
    }
}

#[test]
fn golden_vectors() {
    let tx = golden_tx();
    let header = golden_header();
    let vote = SignedVote::new(
        Vote {
            chain_id: ChainId("ios-golden".into()),
            shard: 1,
            epoch: 3,
            height: 42,
            round: 1,
            kind: VoteKind::Precommit,
            block: Some(header.hash()),
        },
        &Keypair::from_seed("golden", 2),
    );
    // The golden values must still be valid, not just stable.
    tx.verify_signature().expect("golden transaction signature");
    vote.verify().expect("golden vote signature");
    check_golden(
        "encoding.txt",
        &[
            (
                "address_golden_0",
                Keypair::from_seed("golden", 0).address().to_bech32(),
            ),
            ("tx_transfer_borsh", hex(&tx.to_bytes())),
            ("tx_transfer_id", tx.id().to_hex()),
            ("block_header_borsh", hex(&codec::encode(&header))),
            ("block_header_hash", header.hash().to_hex()),
            ("vote_precommit_borsh", hex(&codec::encode(&vote))),
            (
                "message_status_borsh",
                hex(&Message::Status {
                    height: 42,
                    round: 3,
                }
                .to_bytes()),
            ),
        ],
    );
}
