use ios_chain::block::{Receipt, ReceiptStatus};
use ios_chain::committee::{read, read_account};
use ios_chain::crypto::Keypair;
use ios_chain::execute::Runtime;
use ios_chain::light_client::latest_epoch;
use ios_chain::sim::{sim_genesis, sim_params, SoloChain};
use ios_chain::types::{Amount, UNITS_PER_IOST};
use ios_storage::codec::{Codec, Coding, Layout, ObjectEncoder};
use ios_storage::deal::storage_cost;
use ios_storage::module::{
    keys, AuditRound, AuditState, Deal, Endpoint, ObjectMeta, Provider, StorageCall, StorageModule,
    StorageParams,
};
use ios_storage::tree;
use std::collections::BTreeMap;
use std::sync::Arc;

const IOST: Amount = UNITS_PER_IOST;
/// Enough for any call here at the devnet's fee per byte.
const FEE: Amount = 100_000;

struct Chain {
    solo: SoloChain,
    _db: sled::Db,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Chain {
    type Target = SoloChain;
    fn deref(&self) -> &SoloChain {
        &self.solo
    }
}

impl Chain {
    fn new(users: &[Keypair], params: StorageParams) -> Chain {
        let validator = Keypair::from_seed("storage-validator", 0);
        let genesis = sim_genesis(sim_params(1), std::slice::from_ref(&validator), users);
        let dir = tempfile::tempdir().unwrap();
        let db = ios_chain::state::open_db(dir.path(), None).unwrap();
        let runtime =
            Runtime::new(genesis.params.clone()).with_module(Arc::new(StorageModule::new(params)));
        let solo = SoloChain::open(&db, validator, runtime, genesis).unwrap();
        Chain {
            solo,
            _db: db,
            _dir: dir,
        }
    }

    /// Commits one block (conserving IOST); returns its receipts.
    fn block(&mut self) -> Vec<Receipt> {
        self.solo.block().unwrap()
    }

    /// Submits the calls and commits blocks until all of them are in one;
    /// returns each one's status.
    fn run(&mut self, calls: Vec<(&Keypair, StorageCall)>) -> Vec<ReceiptStatus> {
        let txs = calls
            .iter()
            .map(|(k, c)| self.solo.sign(k, c.to_call(), FEE))
            .collect();
        self.solo
            .run(txs)
            .unwrap()
            .into_iter()
            .map(|(_, s)| s)
            .collect()
    }

    /// The epoch the next block executes in.
    fn epoch(&self) -> u64 {
        self.replica.committee().epoch
    }

    fn until_epoch(&mut self, e: u64) {
        for _ in 0..500 {
            if self.epoch() >= e {
                // One block in the new epoch: its end_block opens the round.
                self.block();
                return;
            }
            self.block();
        }
        panic!(
            "epoch {e} never came (at {}, latest known {})",
            self.epoch(),
            latest_epoch(self.replica.store()).unwrap()
        );
    }

    fn get<T: borsh::BorshDeserialize>(&self, key: &[u8]) -> Option<T> {
        read(self.replica.store(), key).unwrap()
    }
}

fn ok(s: &ReceiptStatus) {
    assert_eq!(*s, ReceiptStatus::Success);
}

fn refused(s: &ReceiptStatus, needle: &str) {
    match s {
        ReceiptStatus::Failed { message, .. } => {
            assert!(message.contains(needle), "{message:?} lacks {needle:?}")
        }
        ReceiptStatus::Success => panic!("succeeded; expected a refusal with {needle:?}"),
    }
}

/// `n` providers and an owner on a fresh chain; the providers registered
/// with `capacity` at `price`, staking `stake`.
fn market(
    n: u64,
    owner_seed: u64,
    params: StorageParams,
    capacity: u64,
    price: Amount,
    stake: Amount,
) -> (Chain, Vec<Keypair>, Keypair) {
    let providers: Vec<Keypair> = (0..n).map(|i| Keypair::from_seed("provider", i)).collect();
    let owner = Keypair::from_seed("owner", owner_seed);
    let mut users = providers.clone();
    users.push(owner.clone());
    let mut c = Chain::new(&users, params);
    let regs = providers
        .iter()
        .map(|p| {
            (
                p,
                StorageCall::RegisterProvider {
                    capacity,
                    price_per_gib_epoch: price,
                    stake,
                    endpoint: endpoint(),
                },
            )
        })
        .collect();
    c.run(regs).iter().for_each(ok);
    (c, providers, owner)
}

fn endpoint() -> Endpoint {
    Endpoint {
        peer: vec![7; 38],
        addrs: vec!["/ip4/127.0.0.1/tcp/1".into()],
    }
}

fn encode(bytes: &[u8]) -> (Layout, Vec<Vec<Vec<u8>>>) {
    let coding = Coding::new(4, 2, 32 << 10).unwrap();
    let mut enc = ObjectEncoder::new(Codec::new(coding).unwrap(), bytes, u64::MAX);
    let mut frags = Vec::new();
    while let Some(s) = enc.next_segment().unwrap() {
        frags.push(s.fragments);
    }
    (enc.finish().unwrap(), frags)
}

#[test]
fn deals_audits_payments_strikes_and_losses_on_a_real_chain() {
    let providers: Vec<Keypair> = (0..7).map(|i| Keypair::from_seed("provider", i)).collect();
    let owner = Keypair::from_seed("owner", 0);
    let mut users = providers.clone();
    users.push(owner.clone());
    let params = StorageParams {
        min_provider_stake: 100 * IOST,
        audit_window: 5,
        max_strikes: 2,
        servi_per_gib_epoch: 1 << 20,
        ..StorageParams::default()
    };
    let mut c = Chain::new(&users, params);

    // Registration: under the minimum stake is refused; 7 providers join.
    let st = c.run(vec![(
        &providers[0],
        StorageCall::RegisterProvider {
            capacity: 1 << 30,
            price_per_gib_epoch: 1_000 * IOST,
            stake: 10 * IOST,
            endpoint: endpoint(),
        },
    )]);
    refused(&st[0], "stakes at least");
    let regs = providers
        .iter()
        .map(|p| {
            (
                p,
                StorageCall::RegisterProvider {
                    capacity: 1 << 30,
                    price_per_gib_epoch: 1_000 * IOST,
                    stake: 100 * IOST,
                    endpoint: endpoint(),
                },
            )
        })
        .collect();
    c.run(regs).iter().for_each(ok);
    let before = read_account(c.replica.store(), &owner.address())
        .unwrap()
        .balance;

    // A deal: placed on 6 of the 7, its cost held in escrow.
    let object: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let (layout, frags) = encode(&object);
    let price = 1_000 * IOST;
    let meta = ObjectMeta {
        name: "numbers.bin".into(),
        mime: "application/octet-stream".into(),
        tags: vec!["test".into(), "numbers".into()],
        description: "A hundred thousand numbers".into(),
        public: true,
    };
    let st = c.run(vec![(
        &owner,
        StorageCall::CreateDeal {
            layout: layout.clone(),
            epochs: 50,
            price_per_gib_epoch: price,
            meta: meta.clone(),
        },
    )]);
    ok(&st[0]);
    let cost = storage_cost(layout.coding.stored_bytes(layout.size), price, 50).unwrap();
    let after = read_account(c.replica.store(), &owner.address())
        .unwrap()
        .balance;
    assert_eq!(before - after, cost + FEE, "cost and fee");
    let deal: Deal = c.get(&keys::deal(&layout.content)).unwrap();
    assert_eq!(deal.escrow, cost);
    assert_eq!(deal.meta, meta, "the metadata is on chain as given");
    assert_eq!(deal.placement.len(), 4, "100 000 bytes in 32 KiB segments");
    // The same object again, and a deal below every provider's price: refused.
    let st = c.run(vec![
        (
            &owner,
            StorageCall::CreateDeal {
                layout: layout.clone(),
                epochs: 5,
                price_per_gib_epoch: price,
                meta: ObjectMeta::default(),
            },
        ),
        (
            &owner,
            StorageCall::CreateDeal {
                layout: encode(b"another object").0,
                epochs: 5,
                price_per_gib_epoch: price - 1,
                meta: ObjectMeta::default(),
            },
        ),
        (
            &owner,
            StorageCall::CreateDeal {
                layout: encode(b"a third object").0,
                epochs: 5,
                price_per_gib_epoch: price,
                meta: ObjectMeta {
                    tags: vec!["two words".into()],
                    ..ObjectMeta::default()
                },
            },
        ),
        (
            &owner,
            StorageCall::CreateDeal {
                layout: encode(b"a fourth object").0,
                epochs: 5,
                price_per_gib_epoch: price,
                meta: ObjectMeta {
                    description: "x".repeat(ObjectMeta::MAX_DESCRIPTION_BYTES + 1),
                    ..ObjectMeta::default()
                },
            },
        ),
    ]);
    refused(&st[0], "already stored");
    refused(&st[1], "are eligible");
    refused(&st[2], "without spaces");
    refused(&st[3], "description is 4097 bytes");
    let st = c.run(vec![(
        &owner,
        StorageCall::CreateDeal {
            layout: encode(b"a fifth object").0,
            epochs: 5,
            price_per_gib_epoch: price,
            meta: ObjectMeta {
                description: "red \u{1b}[31m text".into(),
                ..ObjectMeta::default()
            },
        },
    )]);
    refused(&st[0], "control characters");

    // Receipts: each placed provider for its own fragments; a receipt for a
    // fragment placed elsewhere is refused.
    let key_of =
        |a: &ios_chain::crypto::Address| providers.iter().find(|p| p.address() == *a).unwrap();
    let mut by_provider: BTreeMap<[u8; 32], Vec<(u32, u16)>> = BTreeMap::new();
    for (s, seg) in deal.placement.iter().enumerate() {
        for (i, a) in seg.iter().enumerate() {
            by_provider
                .entry(a.0)
                .or_default()
                .push((s as u32, i as u16));
        }
    }
    let stranger = providers
        .iter()
        .find(|p| deal.placement[0].iter().all(|a| *a != p.address()))
        .unwrap();
    let st = c.run(vec![(
        stranger,
        StorageCall::Receipt {
            content: layout.content,
            fragments: vec![(0, 0)],
        },
    )]);
    refused(&st[0], "placed on another provider");
    let receipts = by_provider
        .iter()
        .map(|(a, f)| {
            (
                key_of(&ios_chain::crypto::Address(*a)),
                StorageCall::Receipt {
                    content: layout.content,
                    fragments: f.clone(),
                },
            )
        })
        .collect();
    c.run(receipts).iter().for_each(ok);

    // The next epoch opens an audit round: one challenge per holder.
    let e = c.epoch() + 1;
    c.until_epoch(e);
    let round: AuditRound = c.get(keys::AUDITS).unwrap();
    assert_eq!(round.epoch, e);
    assert_eq!(round.challenges.len(), by_provider.len());
    let holders: Vec<ios_chain::crypto::Address> =
        round.challenges.iter().map(|(ch, _)| ch.provider).collect();
    let (lazy, forger) = (holders[0], holders[1]);
    let mut calls = Vec::new();
    for (ch, _) in &round.challenges {
        if ch.provider == lazy {
            continue;
        }
        let frag = &frags[ch.segment as usize][usize::from(ch.index)];
        let mut proof = tree::prove(frag, ch.chunk).unwrap();
        if ch.provider == forger {
            proof.chunk[0] ^= 1;
        }
        calls.push((
            key_of(&ch.provider),
            StorageCall::Prove {
                content: layout.content,
                proof,
            },
        ));
    }
    let servi_before: Vec<u64> = holders
        .iter()
        .map(|a| read_account(c.replica.store(), a).unwrap().servi)
        .collect();
    c.run(calls).iter().for_each(ok);
    // Past the window: the lazy one is struck too.
    for _ in 0..6 {
        c.block();
    }
    let round: AuditRound = c.get(keys::AUDITS).unwrap();
    assert!(round.settled);
    for (i, (ch, state)) in round.challenges.iter().enumerate() {
        let p: Provider = c.get(&keys::provider(&ch.provider)).unwrap();
        let servi = read_account(c.replica.store(), &ch.provider).unwrap().servi;
        if ch.provider == lazy || ch.provider == forger {
            assert_eq!(*state, AuditState::Failed);
            assert_eq!((p.audits_failed, p.strikes, p.audits_passed), (1, 1, 0));
            assert_eq!(p.iost_earned, 0);
        } else {
            assert_eq!(*state, AuditState::Passed);
            assert_eq!(p.audits_passed, 1);
            assert!(p.iost_earned > 0, "paid from escrow");
            assert!(servi > servi_before[i], "Servi credited");
        }
    }
    let deal2: Deal = c.get(&keys::deal(&layout.content)).unwrap();
    let paid: Amount = holders
        .iter()
        .map(|a| c.get::<Provider>(&keys::provider(a)).unwrap().iost_earned)
        .sum();
    assert_eq!(deal2.escrow, cost - paid, "payments come out of the escrow");

    // The lazy provider misses again: a missed audit strikes everything it
    // holds, so at two strikes all its fragments are lost and leave its
    // holdings and promise. (One loss per segment leaves 5 of 6 healthy:
    // no repair at margin 1.)
    let promised_before = c.get::<Provider>(&keys::provider(&lazy)).unwrap().promised;
    let mine: Vec<(usize, usize)> = deal
        .placement
        .iter()
        .enumerate()
        .flat_map(|(s, seg)| {
            seg.iter()
                .enumerate()
                .filter(|(_, a)| **a == lazy)
                .map(move |(i, _)| (s, i))
        })
        .collect();
    let e = c.epoch() + 1;
    c.until_epoch(e);
    for _ in 0..6 {
        c.block();
    }
    // Everyone missed this round, so the forger (struck once already)
    // loses its fragments too: a segment where both lost one is down to 4
    // of 6 healthy, and its lost fragments are placed anew (only the one
    // provider outside the segment can take one; the other stays lost).
    let d: Deal = c.get(&keys::deal(&layout.content)).unwrap();
    let mut moved = 0;
    for &(s, i) in &mine {
        if d.placement[s][i] == lazy {
            assert!(d.lost[s][i], "{s}/{i} lost");
            assert_eq!(d.strikes[s][i], 2);
        } else {
            assert!(
                !deal.placement[s].contains(&d.placement[s][i]),
                "a new provider"
            );
            assert!(!d.lost[s][i] && !d.receipted[s][i] && d.strikes[s][i] == 0);
            moved += 1;
        }
    }
    let forger_lost = deal
        .placement
        .iter()
        .flatten()
        .filter(|a| **a == forger)
        .count();
    assert!(forger_lost > 0);
    assert!(d.repairs >= moved as u64);
    let p: Provider = c.get(&keys::provider(&lazy)).unwrap();
    let freed: u64 = mine
        .iter()
        .map(|(s, _)| layout.fragment_len(*s as u32))
        .sum();
    assert_eq!(p.promised, promised_before - freed);
    let held: Vec<ios_storage::deal::Held> = c.get(&keys::held(&lazy)).unwrap();
    assert!(held.is_empty(), "{held:?}");
}

#[test]
fn lost_fragments_are_placed_anew_until_no_provider_is_left() {
    let params = StorageParams {
        min_provider_stake: IOST,
        // Audits play no part here: only missing receipts lose fragments.
        max_strikes: 100,
        receipt_epochs: 1,
        // Any loss repairs (6 < 4 + 3).
        repair_margin: 3,
        ..StorageParams::default()
    };
    let (mut c, providers, owner) = market(8, 1, params, 1 << 20, IOST, IOST);
    let (layout, _) = encode(&[9u8; 20_000]);
    c.run(vec![(
        &owner,
        StorageCall::CreateDeal {
            layout: layout.clone(),
            epochs: 20,
            price_per_gib_epoch: IOST,
            meta: ObjectMeta::default(),
        },
    )])
    .iter()
    .for_each(ok);
    let d: Deal = c.get(&keys::deal(&layout.content)).unwrap();
    let key_of =
        |a: &ios_chain::crypto::Address| providers.iter().find(|p| p.address() == *a).unwrap();
    // Five sign for their fragment; the sixth never does.
    let absent = d.placement[0][5];
    let receipts = (0..5)
        .map(|i| {
            (
                key_of(&d.placement[0][i]),
                StorageCall::Receipt {
                    content: layout.content,
                    fragments: vec![(0, i as u16)],
                },
            )
        })
        .collect();
    c.run(receipts).iter().for_each(ok);
    let promised = |c: &Chain, a: &ios_chain::crypto::Address| {
        c.get::<Provider>(&keys::provider(a)).unwrap().promised
    };
    let len = layout.fragment_len(0);
    assert_eq!(promised(&c, &absent), len);

    // Past its receipt deadline (the next epoch) the fragment is lost and
    // placed on one of the two providers that hold nothing of the segment.
    let e = c.epoch() + 1;
    c.until_epoch(e);
    let d2: Deal = c.get(&keys::deal(&layout.content)).unwrap();
    let second = d2.placement[0][5];
    assert_ne!(second, absent, "{d2:?} at epoch {}", c.epoch());
    assert_eq!(d2.since[0][5], e);
    assert!(!d.placement[0].contains(&second));
    assert!(!d2.lost[0][5] && !d2.receipted[0][5]);
    assert_eq!(d2.repairs, 1);
    assert_eq!(
        promised(&c, &absent),
        0,
        "the absent provider's promise is freed"
    );
    assert_eq!(promised(&c, &second), len);
    // The new provider signs for it: held, like any other.
    c.run(vec![(
        key_of(&second),
        StorageCall::Receipt {
            content: layout.content,
            fragments: vec![(0, 5)],
        },
    )])
    .iter()
    .for_each(ok);
    let d3: Deal = c.get(&keys::deal(&layout.content)).unwrap();
    assert!(d3.receipted[0][5]);
    // The absent provider cannot sign for it any more.
    let st = c.run(vec![(
        key_of(&absent),
        StorageCall::Receipt {
            content: layout.content,
            fragments: vec![(0, 5)],
        },
    )]);
    refused(&st[0], "placed on another provider");

    // Now fragment 4's provider goes silent too... it signed already, so
    // only audits could catch it (max_strikes is high here): nothing moves.
    let e = c.epoch() + 2;
    c.until_epoch(e);
    let d4: Deal = c.get(&keys::deal(&layout.content)).unwrap();
    assert_eq!(d4.repairs, 1);
    assert_eq!(d4.placement, d3.placement);
}

#[test]
fn an_expired_deal_refunds_its_escrow_and_frees_capacity() {
    let params = StorageParams {
        min_provider_stake: IOST,
        ..StorageParams::default()
    };
    let (mut c, providers, owner) = market(6, 1, params, 1 << 20, 10 * IOST, IOST);
    let (layout, _) = encode(&[5u8; 40_000]);
    let start = read_account(c.replica.store(), &owner.address())
        .unwrap()
        .balance;
    c.run(vec![(
        &owner,
        StorageCall::CreateDeal {
            layout: layout.clone(),
            epochs: 1,
            price_per_gib_epoch: 10 * IOST,
            meta: ObjectMeta::default(),
        },
    )])
    .iter()
    .for_each(ok);
    let promised: u64 = providers
        .iter()
        .map(|p| {
            c.get::<Provider>(&keys::provider(&p.address()))
                .unwrap()
                .promised
        })
        .sum();
    assert_eq!(promised, layout.coding.stored_bytes(layout.size));
    let e = c.epoch() + 2;
    c.until_epoch(e);
    assert!(
        c.get::<Deal>(&keys::deal(&layout.content)).is_none(),
        "expired"
    );
    let end = read_account(c.replica.store(), &owner.address())
        .unwrap()
        .balance;
    assert_eq!(
        start - end,
        FEE,
        "only the fee: nothing was received, nothing paid"
    );
    for p in &providers {
        assert_eq!(
            c.get::<Provider>(&keys::provider(&p.address()))
                .unwrap()
                .promised,
            0
        );
    }
}

#[test]
fn bad_calls_are_refused_with_typed_errors_and_change_nothing() {
    let params = StorageParams {
        min_provider_stake: IOST,
        max_object_bytes: 50_000,
        max_deal_epochs: 100,
        ..StorageParams::default()
    };
    let (mut c, providers, owner) = market(6, 2, params, 1 << 20, IOST, IOST);
    let (small, _) = encode(&[1u8; 10_000]);
    let (big, _) = encode(&[2u8; 60_000]);
    let mut inconsistent = small.clone();
    inconsistent.segments.pop();
    let unknown = ios_storage::ContentId::of(b"never stored");
    let st = c.run(vec![
        (
            &owner,
            StorageCall::CreateDeal {
                layout: big,
                epochs: 5,
                price_per_gib_epoch: IOST,
                meta: ObjectMeta::default(),
            },
        ),
        (
            &owner,
            StorageCall::CreateDeal {
                layout: small.clone(),
                epochs: 0,
                price_per_gib_epoch: IOST,
                meta: ObjectMeta::default(),
            },
        ),
        (
            &owner,
            StorageCall::CreateDeal {
                layout: small.clone(),
                epochs: 101,
                price_per_gib_epoch: IOST,
                meta: ObjectMeta::default(),
            },
        ),
        (
            &owner,
            StorageCall::CreateDeal {
                layout: inconsistent,
                epochs: 5,
                price_per_gib_epoch: IOST,
                meta: ObjectMeta::default(),
            },
        ),
        (
            &providers[0],
            StorageCall::Receipt {
                content: unknown,
                fragments: vec![(0, 0)],
            },
        ),
        (
            &providers[0],
            StorageCall::Prove {
                content: unknown,
                proof: tree::prove(&[0u8; 10], 0).unwrap(),
            },
        ),
        (
            &providers[0],
            StorageCall::RegisterProvider {
                capacity: 1 << 20,
                price_per_gib_epoch: IOST,
                stake: u64::MAX,
                endpoint: endpoint(),
            },
        ),
        (
            &providers[0],
            StorageCall::RegisterProvider {
                capacity: 1 << 20,
                price_per_gib_epoch: IOST,
                stake: 0,
                endpoint: Endpoint {
                    peer: vec![1; 65],
                    addrs: vec![],
                },
            },
        ),
    ]);
    refused(&st[0], "over the limit");
    refused(&st[1], "0 epochs");
    refused(&st[2], "101 epochs");
    refused(&st[3], "segments for");
    refused(&st[4], "no deal for");
    refused(&st[5], "no challenge for the sender");
    assert!(matches!(&st[6], ReceiptStatus::Failed { .. }));
    refused(&st[7], "a peer id of 65 bytes");
    // Garbage in the call payload: a typed decode error in the receipt.
    let garbage = ios_chain::tx::Call {
        module: ios_storage::module::STORAGE_MODULE,
        payload: vec![0xFF, 0x00, 0x13],
    };
    let tx = c.solo.sign(&owner, garbage, FEE);
    match c.solo.run(vec![tx]).unwrap().remove(0).1 {
        ReceiptStatus::Failed { code, .. } => assert_eq!(code, "malformed"),
        s => panic!("{s:?}"),
    }
    assert!(c
        .get::<Vec<ios_storage::ContentId>>(keys::DEALS)
        .unwrap_or_default()
        .is_empty());
}
