//! PVSS for the epoch beacon: dealings verify and any threshold of shares
//! recovers one secret; every kind of tampering, replay or malformed input is
//! rejected with its specific typed error; outputs are deterministic and
//! pinned by golden hashes.

use crate::hex;
use ios_chain::codec;
use ios_chain::pvss::{
    beacon_output, deal, decrypt_share, prove_possession, recover, verify_dealing,
    verify_possession, verify_share, Dealing, DecryptedShare, DleqProof, PvssError, PvssKeypair,
    PvssPublicKey,
};
use proptest::prelude::*;

/// What the chain binds: borsh of (chain id, epoch, dealer address).
fn context(epoch: u64) -> Vec<u8> {
    codec::encode(&("ios-test".to_string(), epoch, [7u8; 32]))
}

fn member_seed(committee: u8, i: usize) -> [u8; 32] {
    let mut s = [committee; 32];
    s[0] = i as u8;
    s[1] = (i >> 8) as u8;
    s
}

struct Setup {
    keypairs: Vec<PvssKeypair>,
    keys: Vec<PvssPublicKey>,
    dealing: Dealing,
}

fn setup(n: usize, t: usize, seed: [u8; 32]) -> Setup {
    let keypairs: Vec<PvssKeypair> = (0..n)
        .map(|i| PvssKeypair::from_seed(&member_seed(0xa0, i)))
        .collect();
    let keys: Vec<PvssPublicKey> = keypairs.iter().map(PvssKeypair::public).collect();
    let dealing = deal(&context(1), &keys, t, &seed).expect("deal");
    Setup {
        keypairs,
        keys,
        dealing,
    }
}

impl Setup {
    fn all_shares(&self) -> Vec<DecryptedShare> {
        self.keypairs
            .iter()
            .enumerate()
            .map(|(pos, kp)| {
                decrypt_share(&context(1), kp, pos as u32 + 1, &self.dealing).expect("decrypt")
            })
            .collect()
    }
}

/// The `t` shares starting at position `start`, wrapping around.
fn window(shares: &[DecryptedShare], start: usize, t: usize) -> Vec<DecryptedShare> {
    (0..t)
        .map(|k| shares[(start + k) % shares.len()].clone())
        .collect()
}

#[test]
fn pvss_round_trip_for_several_sizes() {
    for (n, t) in [(1, 1), (4, 2), (7, 3), (10, 4), (16, 6), (5, 5)] {
        let s = setup(n, t, [n as u8; 32]);
        verify_dealing(&context(1), &s.keys, t, &s.dealing).expect("honest dealing verifies");
        let shares = s.all_shares();
        for share in &shares {
            verify_share(&context(1), &s.keys, &s.dealing, share).expect("honest share verifies");
        }
        let secret = recover(t, &shares).expect("recover from all");
        for start in 0..n {
            let subset = window(&shares, start, t);
            assert_eq!(recover(t, &subset), Ok(secret), "n={n} t={t} start={start}");
            // Order of arrival does not matter.
            let mut reversed = subset.clone();
            reversed.reverse();
            assert_eq!(
                recover(t, &reversed),
                Ok(secret),
                "n={n} t={t} start={start}"
            );
            assert_eq!(
                recover(t, &subset[1..]),
                Err(PvssError::TooFewShares {
                    have: t - 1,
                    need: t
                })
            );
        }
    }
}

#[test]
fn pvss_withheld_reveals_recover_the_same_secret() {
    let s = setup(7, 3, [9; 32]);
    let shares = s.all_shares();
    let with_all = recover(3, &shares).unwrap();
    // Members 2, 5 and 7 reveal; the other four withhold.
    let few = vec![shares[1].clone(), shares[4].clone(), shares[6].clone()];
    assert_eq!(recover(3, &few), Ok(with_all));
    assert_eq!(
        recover(3, &few[..2]),
        Err(PvssError::TooFewShares { have: 2, need: 3 })
    );
}

#[test]
fn pvss_different_seeds_give_different_secrets() {
    let a = setup(4, 2, [1; 32]);
    let b = setup(4, 2, [2; 32]);
    assert_ne!(recover(2, &a.all_shares()), recover(2, &b.all_shares()));
    // The same seed in another epoch deals an unrelated secret.
    let c = deal(&context(2), &a.keys, 2, &[1; 32]).unwrap();
    assert_ne!(c, a.dealing);
}

type Mutation = fn(&mut Dealing);

#[test]
fn pvss_invalid_dealings_are_rejected_with_their_error() {
    let (n, t) = (7, 3);
    let s = setup(n, t, [5; 32]);
    let other = deal(&context(1), &s.keys, t, &[6; 32]).unwrap();
    let ctx = context(1);
    let check = |name: &str, dealing: &Dealing, want: PvssError| {
        assert_eq!(
            verify_dealing(&ctx, &s.keys, t, dealing),
            Err(want),
            "{name}"
        );
    };

    let cases: Vec<(&str, Mutation, PvssError)> = vec![
        (
            "tampered commitment",
            |d| d.commitments[1] = d.commitments[2],
            PvssError::BadDleq { index: 2 },
        ),
        (
            "tampered encrypted share",
            |d| d.encrypted_shares[3] = d.encrypted_shares[0],
            PvssError::BadDleq { index: 4 },
        ),
        (
            "proofs swapped between members 1 and 2",
            |d| d.proofs.swap(0, 1),
            PvssError::BadDleq { index: 1 },
        ),
        (
            "commitment and share swapped between members, proofs too",
            |d| {
                d.commitments.swap(0, 1);
                d.encrypted_shares.swap(0, 1);
                d.proofs.swap(0, 1);
            },
            PvssError::BadDleq { index: 1 },
        ),
        (
            "missing commitment",
            |d| {
                d.commitments.pop();
            },
            PvssError::WrongLength {
                what: "commitments",
                expected: 7,
                got: 6,
            },
        ),
        (
            "extra encrypted share",
            |d| d.encrypted_shares.push(d.encrypted_shares[0]),
            PvssError::WrongLength {
                what: "encrypted shares",
                expected: 7,
                got: 8,
            },
        ),
        (
            "no proofs",
            |d| d.proofs.clear(),
            PvssError::WrongLength {
                what: "proofs",
                expected: 7,
                got: 0,
            },
        ),
        (
            "non-canonical challenge",
            |d| d.proofs[2].c = [0xff; 32],
            PvssError::NonCanonicalScalar {
                what: "challenge",
                index: 3,
            },
        ),
        (
            "non-canonical response",
            |d| d.proofs[6].r = [0xff; 32],
            PvssError::NonCanonicalScalar {
                what: "response",
                index: 7,
            },
        ),
        (
            "commitment not a point",
            |d| d.commitments[4] = [0xff; 32],
            PvssError::InvalidPoint {
                what: "commitment",
                index: 5,
            },
        ),
        (
            "encrypted share not a point",
            |d| d.encrypted_shares[0] = [0xff; 32],
            PvssError::InvalidPoint {
                what: "encrypted share",
                index: 1,
            },
        ),
        (
            "identity commitment",
            |d| d.commitments[0] = [0; 32],
            PvssError::IdentityPoint {
                what: "commitment",
                index: 1,
            },
        ),
        (
            "identity encrypted share",
            |d| d.encrypted_shares[5] = [0; 32],
            PvssError::IdentityPoint {
                what: "encrypted share",
                index: 6,
            },
        ),
    ];
    for (name, mutate, want) in cases {
        let mut d = s.dealing.clone();
        mutate(&mut d);
        check(name, &d, want);
    }

    // Every entry of a spliced dealing carries a valid proof, but the
    // commitments no longer lie on one low-degree polynomial.
    let mut spliced = s.dealing.clone();
    spliced.commitments[3] = other.commitments[3];
    spliced.encrypted_shares[3] = other.encrypted_shares[3];
    spliced.proofs[3] = other.proofs[3].clone();
    check(
        "entries spliced from two dealings",
        &spliced,
        PvssError::DegreeCheckFailed,
    );

    // A polynomial of degree t, one too many.
    let too_high = deal(&ctx, &s.keys, t + 1, &[5; 32]).unwrap();
    check("degree too high", &too_high, PvssError::DegreeCheckFailed);

    // Replay into another epoch: every proof binds the context.
    assert_eq!(
        verify_dealing(&context(2), &s.keys, t, &s.dealing),
        Err(PvssError::BadDleq { index: 1 })
    );
    // Checked against another committee.
    let mut keys = s.keys.clone();
    keys.swap(0, 1);
    assert_eq!(
        verify_dealing(&ctx, &keys, t, &s.dealing),
        Err(PvssError::BadDleq { index: 1 })
    );
}

#[test]
fn pvss_bad_parameters_and_keys_are_rejected() {
    let s = setup(4, 2, [3; 32]);
    let ctx = context(1);
    for t in [0, 5] {
        assert_eq!(
            deal(&ctx, &s.keys, t, &[1; 32]),
            Err(PvssError::BadThreshold { t, n: 4 })
        );
        assert_eq!(
            verify_dealing(&ctx, &s.keys, t, &s.dealing),
            Err(PvssError::BadThreshold { t, n: 4 })
        );
    }
    assert_eq!(
        deal(&ctx, &[], 1, &[1; 32]),
        Err(PvssError::BadThreshold { t: 1, n: 0 })
    );
    let many = vec![s.keys[0]; 1025];
    assert_eq!(
        deal(&ctx, &many, 1, &[1; 32]),
        Err(PvssError::TooManyMembers { n: 1025, max: 1024 })
    );

    let mut keys = s.keys.clone();
    keys[2] = PvssPublicKey([0xff; 32]);
    let not_a_point = PvssError::InvalidPoint {
        what: "public key",
        index: 3,
    };
    assert_eq!(deal(&ctx, &keys, 2, &[1; 32]), Err(not_a_point.clone()));
    assert_eq!(verify_dealing(&ctx, &keys, 2, &s.dealing), Err(not_a_point));
    keys[2] = PvssPublicKey([0; 32]);
    assert_eq!(
        deal(&ctx, &keys, 2, &[1; 32]),
        Err(PvssError::IdentityPoint {
            what: "public key",
            index: 3
        })
    );
}

#[test]
fn pvss_invalid_shares_are_rejected_with_their_error() {
    let (n, t) = (7, 3);
    let s = setup(n, t, [4; 32]);
    let ctx = context(1);
    let shares = s.all_shares();
    let verify = |share: &DecryptedShare| verify_share(&ctx, &s.keys, &s.dealing, share);

    // Member 2 decrypting member 1's share: its key does not match the
    // dealer's proof for index 1, so it refuses.
    assert_eq!(
        decrypt_share(&ctx, &s.keypairs[1], 1, &s.dealing),
        Err(PvssError::KeyMismatch { index: 1 })
    );
    // A share of member 2 relabelled as member 1's.
    let mut relabelled = shares[1].clone();
    relabelled.index = 1;
    assert_eq!(verify(&relabelled), Err(PvssError::BadDleq { index: 1 }));
    // Another valid point in place of the share.
    let mut tampered = shares[0].clone();
    tampered.share = shares[1].share;
    assert_eq!(verify(&tampered), Err(PvssError::BadDleq { index: 1 }));
    // A proof from another share.
    let mut wrong_proof = shares[0].clone();
    wrong_proof.proof = shares[1].proof.clone();
    assert_eq!(verify(&wrong_proof), Err(PvssError::BadDleq { index: 1 }));
    let mut bad_scalar = shares[0].clone();
    bad_scalar.proof.r = [0xff; 32];
    assert_eq!(
        verify(&bad_scalar),
        Err(PvssError::NonCanonicalScalar {
            what: "response",
            index: 1
        })
    );
    let mut not_a_point = shares[0].clone();
    not_a_point.share = [0xff; 32];
    assert_eq!(
        verify(&not_a_point),
        Err(PvssError::InvalidPoint {
            what: "decrypted share",
            index: 1
        })
    );
    let mut identity = shares[0].clone();
    identity.share = [0; 32];
    assert_eq!(
        verify(&identity),
        Err(PvssError::IdentityPoint {
            what: "decrypted share",
            index: 1
        })
    );
    // Replayed into another epoch, or against another dealing.
    assert_eq!(
        verify_share(&context(2), &s.keys, &s.dealing, &shares[0]),
        Err(PvssError::BadDleq { index: 1 })
    );
    let other = deal(&ctx, &s.keys, t, &[8; 32]).unwrap();
    assert_eq!(
        verify_share(&ctx, &s.keys, &other, &shares[0]),
        Err(PvssError::BadDleq { index: 1 })
    );

    for index in [0, 8, u32::MAX] {
        let mut out = shares[0].clone();
        out.index = index;
        assert_eq!(verify(&out), Err(PvssError::IndexOutOfRange { index, n }));
        assert_eq!(
            decrypt_share(&ctx, &s.keypairs[0], index, &s.dealing),
            Err(PvssError::IndexOutOfRange { index, n })
        );
    }

    let mut short = s.dealing.clone();
    short.proofs.pop();
    assert_eq!(
        decrypt_share(&ctx, &s.keypairs[0], 1, &short),
        Err(PvssError::WrongLength {
            what: "proofs",
            expected: 7,
            got: 6
        })
    );
    assert_eq!(
        decrypt_share(&context(2), &s.keypairs[0], 1, &s.dealing),
        Err(PvssError::KeyMismatch { index: 1 })
    );
}

#[test]
fn pvss_recover_rejects_bad_share_sets() {
    let s = setup(7, 3, [2; 32]);
    let shares = s.all_shares();
    let dup = vec![shares[0].clone(), shares[2].clone(), shares[0].clone()];
    assert_eq!(recover(3, &dup), Err(PvssError::DuplicateIndex(1)));
    let mut zero = shares[..3].to_vec();
    zero[1].index = 0;
    assert_eq!(recover(3, &zero), Err(PvssError::ZeroIndex));
    let mut bad = shares[..3].to_vec();
    bad[2].share = [0xff; 32];
    assert_eq!(
        recover(3, &bad),
        Err(PvssError::InvalidPoint {
            what: "decrypted share",
            index: 3
        })
    );
    assert_eq!(
        recover(0, &shares),
        Err(PvssError::BadThreshold { t: 0, n: 7 })
    );
    assert_eq!(
        recover(1, &[]),
        Err(PvssError::TooFewShares { have: 0, need: 1 })
    );
}

#[test]
fn pvss_is_deterministic_and_pinned() {
    let a = setup(4, 2, [42; 32]);
    let b = setup(4, 2, [42; 32]);
    assert_eq!(a.keys, b.keys);
    assert_eq!(codec::encode(&a.dealing), codec::encode(&b.dealing));
    let shares = a.all_shares();
    assert_eq!(shares, b.all_shares());
    let secret = recover(2, &shares).unwrap();
    let beacon = beacon_output(1, &[secret]).unwrap();

    // Golden values: a change to key derivation, `h`, the polynomial or nonce
    // derivation, a transcript or the encoding shows up here.
    assert_eq!(
        hex(a.keys[0].as_bytes()),
        "12468a9653914105dd4f8d50d6143b515ecee0dc076ac899ddddecb01d863b1e"
    );
    assert_eq!(
        hex(blake3::hash(&codec::encode(&a.dealing)).as_bytes()),
        "6eefa2522e86bd1a03f43a4fd02148ec70144978495f5386717cec4819e97c07"
    );
    assert_eq!(
        hex(&secret),
        "86006d7133206a7fff7489d785d8f22aeeeeed6726c5715e85be60c2c22cdb17"
    );
    assert_eq!(
        beacon.to_hex(),
        "bc73a39f7a8125ec2d25ff55e7108b2fb6e1848f4152205887a43996d26c3237"
    );
}

#[test]
fn pvss_beacon_output_is_order_independent_and_epoch_bound() {
    let secrets: Vec<[u8; 32]> = (0..3u8)
        .map(|k| {
            let s = setup(4, 2, [k; 32]);
            recover(2, &s.all_shares()).unwrap()
        })
        .collect();
    let forward = beacon_output(9, &secrets).unwrap();
    let mut reversed = secrets.clone();
    reversed.reverse();
    assert_eq!(beacon_output(9, &reversed), Ok(forward));
    assert_ne!(beacon_output(10, &secrets), Ok(forward));
    assert_ne!(beacon_output(9, &secrets[..2]), Ok(forward));
    assert_eq!(beacon_output(9, &[]), Err(PvssError::NoSecrets));
    assert_eq!(
        beacon_output(9, &[secrets[0], [0xff; 32]]),
        Err(PvssError::InvalidPoint {
            what: "recovered secret",
            index: 2
        })
    );
}

#[test]
fn pvss_types_round_trip_through_borsh() {
    let s = setup(4, 2, [11; 32]);
    let share = decrypt_share(&context(1), &s.keypairs[2], 3, &s.dealing).unwrap();
    let bytes = codec::encode(&s.dealing);
    assert_eq!(
        codec::decode::<Dealing>("dealing", &bytes, 1 << 20),
        Ok(s.dealing.clone())
    );
    let bytes = codec::encode(&share);
    assert_eq!(
        codec::decode::<DecryptedShare>("share", &bytes, 1 << 10),
        Ok(share)
    );
    let bytes = codec::encode(&s.keys[0]);
    assert_eq!(
        codec::decode::<PvssPublicKey>("key", &bytes, 32),
        Ok(s.keys[0])
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn pvss_any_committee_recovers_one_secret(
        (n, t) in (1usize..=10).prop_flat_map(|n| (Just(n), 1..=n)),
        dealer_seed in any::<[u8; 32]>(),
        committee in any::<u8>(),
        start_a in 0usize..10,
        start_b in 0usize..10,
    ) {
        let keypairs: Vec<PvssKeypair> = (0..n)
            .map(|i| PvssKeypair::from_seed(&member_seed(committee, i)))
            .collect();
        let keys: Vec<PvssPublicKey> = keypairs.iter().map(PvssKeypair::public).collect();
        let ctx = context(3);
        let dealing = deal(&ctx, &keys, t, &dealer_seed).unwrap();
        prop_assert_eq!(verify_dealing(&ctx, &keys, t, &dealing), Ok(()));
        let shares: Vec<DecryptedShare> = keypairs
            .iter()
            .enumerate()
            .map(|(pos, kp)| decrypt_share(&ctx, kp, pos as u32 + 1, &dealing).unwrap())
            .collect();
        for share in &shares {
            prop_assert_eq!(verify_share(&ctx, &keys, &dealing, share), Ok(()));
        }
        let a = recover(t, &window(&shares, start_a % n, t)).unwrap();
        let b = recover(t, &window(&shares, start_b % n, t)).unwrap();
        prop_assert_eq!(a, b);
        if t < n {
            let too_high = deal(&ctx, &keys, t + 1, &dealer_seed).unwrap();
            prop_assert_eq!(
                verify_dealing(&ctx, &keys, t, &too_high),
                Err(PvssError::DegreeCheckFailed)
            );
        }
    }
}

#[test]
fn pvss_possession_proofs_bind_key_and_context() {
    let a = PvssKeypair::from_seed(&member_seed(9, 0));
    let b = PvssKeypair::from_seed(&member_seed(9, 1));
    let proof = prove_possession(b"account a", &a);
    assert_eq!(verify_possession(b"account a", &a.public(), &proof), Ok(()));
    let mut tampered = proof.clone();
    tampered.r[0] ^= 1;
    let cases: [(&str, &[u8], PvssPublicKey, &DleqProof, PvssError); 4] = [
        (
            "another context",
            b"account b",
            a.public(),
            &proof,
            PvssError::BadDleq { index: 0 },
        ),
        (
            "another key",
            b"account a",
            b.public(),
            &proof,
            PvssError::BadDleq { index: 0 },
        ),
        (
            "tampered response",
            b"account a",
            a.public(),
            &tampered,
            PvssError::BadDleq { index: 0 },
        ),
        (
            "not a point",
            b"account a",
            PvssPublicKey([0xff; 32]),
            &proof,
            PvssError::InvalidPoint {
                what: "public key",
                index: 0,
            },
        ),
    ];
    for (name, cx, key, proof, want) in cases {
        assert_eq!(verify_possession(cx, &key, proof), Err(want), "{name}");
    }
}
