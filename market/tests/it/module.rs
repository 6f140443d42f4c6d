use ios_chain::block::{Receipt, ReceiptStatus};
use ios_chain::committee::{read, read_account, K_FEE_POOL};
use ios_chain::crypto::Keypair;
use ios_chain::execute::Runtime;
use ios_chain::hash::Hash;
use ios_chain::sim::{sim_genesis, sim_params, SoloChain};
use ios_chain::types::{Amount, Height, PPM, UNITS_PER_IOST};
use ios_market::ftfs::{Rating, Scores, Tally};
use ios_market::module::{
    keys, list, Listing, ListingStatus, ListingTerms, MarketCall, MarketModule, MarketParams,
    RatingRecord,
};
use ios_market::order::{Order, OrderState};
use ios_storage::ContentId;
use std::sync::Arc;

const IOST: Amount = UNITS_PER_IOST;
const FEE: Amount = 100_000;
const PRICE: Amount = 50 * IOST;

struct Chain {
    solo: SoloChain,
    _db: sled::Db,
    _dir: tempfile::TempDir,
}

impl Chain {
    fn new(users: &[Keypair], params: MarketParams) -> Chain {
        let validator = Keypair::from_seed("market-validator", 0);
        let genesis = sim_genesis(sim_params(1), std::slice::from_ref(&validator), users);
        let dir = tempfile::tempdir().unwrap();
        let db = ios_chain::state::open_db(dir.path(), None).unwrap();
        let runtime =
            Runtime::new(genesis.params.clone()).with_module(Arc::new(MarketModule::new(params)));
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

    fn until(&mut self, height: Height) {
        self.solo.until(height).unwrap()
    }

    /// Submits one call and commits blocks until it is in one: its id
    /// (which names what it creates) and status.
    fn run(&mut self, key: &Keypair, call: MarketCall) -> (Hash, ReceiptStatus) {
        let tx = self.solo.sign(key, call.to_call(), FEE);
        self.solo.run(vec![tx]).unwrap().remove(0)
    }

    fn get<T: borsh::BorshDeserialize>(&self, key: &[u8]) -> Option<T> {
        read(self.solo.replica.store(), key).unwrap()
    }

    fn balance(&self, k: &Keypair) -> Amount {
        read_account(self.solo.replica.store(), &k.address())
            .unwrap()
            .balance
    }

    fn account(&self, k: &Keypair) -> ios_chain::account::Account {
        read_account(self.solo.replica.store(), &k.address()).unwrap()
    }

    fn order(&self, id: &Hash) -> Order {
        self.get(&keys::order(id)).expect("order stored")
    }
}

#[track_caller]
fn ok((id, s): (Hash, ReceiptStatus)) -> Hash {
    assert_eq!(s, ReceiptStatus::Success);
    id
}

#[track_caller]
fn refused((_, s): (Hash, ReceiptStatus), needle: &str) {
    match s {
        ReceiptStatus::Failed { message, .. } => {
            assert!(message.contains(needle), "{message:?} lacks {needle:?}")
        }
        ReceiptStatus::Success => panic!("succeeded; expected a refusal with {needle:?}"),
    }
}

fn params() -> MarketParams {
    MarketParams {
        accept_blocks: 4,
        review_blocks: 4,
        rating_blocks: 6,
        reveal_blocks: 6,
        ..MarketParams::default()
    }
}

fn terms(title: &str) -> ListingTerms {
    ListingTerms {
        title: title.into(),
        category: "design/logo".into(),
        price: PRICE,
        delivery_blocks: 10,
        doc: ContentId(Hash([3; 32])),
    }
}

struct World {
    chain: Chain,
    provider: Keypair,
    buyer: Keypair,
    stranger: Keypair,
    listing: Hash,
}

fn world() -> World {
    let provider = Keypair::from_seed("provider", 0);
    let buyer = Keypair::from_seed("buyer", 0);
    let stranger = Keypair::from_seed("stranger", 0);
    let mut chain = Chain::new(
        &[provider.clone(), buyer.clone(), stranger.clone()],
        params(),
    );
    let listing = ok(chain.run(
        &provider,
        MarketCall::CreateListing(terms("A logo in a day")),
    ));
    World {
        chain,
        provider,
        buyer,
        stranger,
        listing,
    }
}

fn place(w: &mut World) -> Hash {
    ok(w.chain.run(
        &w.buyer,
        MarketCall::PlaceOrder {
            listing: w.listing,
            price: PRICE,
        },
    ))
}

/// An order taken through to Completed by the buyer's confirmation.
fn completed(w: &mut World) -> Hash {
    let order = place(w);
    complete(w, order)
}

/// A placed order accepted, delivered and confirmed.
fn complete(w: &mut World, order: Hash) -> Hash {
    ok(w.chain.run(&w.provider, MarketCall::Accept { order }));
    ok(w.chain.run(
        &w.provider,
        MarketCall::Deliver {
            order,
            delivery: ContentId(Hash([4; 32])),
        },
    ));
    ok(w.chain.run(&w.buyer, MarketCall::Confirm { order }));
    order
}

fn rating(stars: u8, comment: &str) -> Rating {
    Rating {
        scores: Scores::all(stars),
        comment: comment.into(),
    }
}

fn commit(chain: &mut Chain, who: &Keypair, order: Hash, r: &Rating, salt: [u8; 32]) {
    let commitment = r.commitment(&order, &who.address().0, &salt);
    ok(chain.run(who, MarketCall::CommitRating { order, commitment }));
}

fn reveal(chain: &mut Chain, who: &Keypair, order: Hash, r: &Rating, salt: [u8; 32]) {
    let rating = r.clone();
    ok(chain.run(
        who,
        MarketCall::RevealRating {
            order,
            rating,
            salt,
        },
    ));
}

#[test]
fn an_order_runs_its_lifecycle_with_escrow_and_commission() {
    let mut w = world();
    let listing: Listing = w.chain.get(&keys::listing(&w.listing)).unwrap();
    assert_eq!(listing.provider, w.provider.address());
    assert_eq!(listing.status, ListingStatus::Active);

    let (buyer0, provider0) = (w.chain.balance(&w.buyer), w.chain.balance(&w.provider));
    let pool0: Amount = w.chain.get(K_FEE_POOL).unwrap_or(0);
    let order = place(&mut w);
    assert_eq!(
        w.chain.balance(&w.buyer),
        buyer0 - PRICE - FEE,
        "price held in escrow"
    );
    assert!(matches!(w.chain.order(&order).state, OrderState::Funded(_)));
    ok(w.chain.run(&w.provider, MarketCall::Accept { order }));
    assert!(matches!(
        w.chain.order(&order).state,
        OrderState::Accepted(_)
    ));
    ok(w.chain.run(
        &w.provider,
        MarketCall::Deliver {
            order,
            delivery: ContentId(Hash([4; 32])),
        },
    ));
    ok(w.chain.run(&w.buyer, MarketCall::Confirm { order }));
    assert!(matches!(
        w.chain.order(&order).state,
        OrderState::Completed(_)
    ));
    let commission = PRICE * 2 / 100;
    assert_eq!(
        w.chain.balance(&w.provider),
        provider0 + PRICE - commission - 2 * FEE
    );
    let pool: Amount = w.chain.get(K_FEE_POOL).unwrap_or(0);
    // The pool also took this run's transaction fees; the commission is in it.
    assert!(pool >= pool0 + commission, "pool {pool0} -> {pool}");
    let orders = keys::orders_of(&w.buyer.address());
    assert_eq!(w.chain.get::<u64>(&list::len_key(&orders)), Some(1));
    assert_eq!(
        w.chain.get::<Hash>(&list::item_key(&orders, 0)),
        Some(order)
    );
}

#[test]
fn deadlines_expire_refund_and_complete_by_themselves() {
    let mut w = world();
    let buyer0 = w.chain.balance(&w.buyer);
    // Never accepted: expired, refunded.
    let order = place(&mut w);
    let OrderState::Funded(f) = w.chain.order(&order).state else {
        panic!("funded")
    };
    w.chain.until(f.accept_by + 1);
    assert_eq!(w.chain.order(&order).state.name(), "expired");
    assert_eq!(w.chain.balance(&w.buyer), buyer0 - FEE);
    // Accepting an expired order is refused, and changes nothing.
    let before = w.chain.order(&order);
    refused(
        w.chain.run(&w.provider, MarketCall::Accept { order }),
        "cannot accept an order that is expired",
    );
    assert_eq!(w.chain.order(&order), before);

    // Accepted, never delivered: late, refunded.
    let order = place(&mut w);
    ok(w.chain.run(&w.provider, MarketCall::Accept { order }));
    let OrderState::Accepted(a) = w.chain.order(&order).state else {
        panic!("accepted")
    };
    w.chain.until(a.deliver_by + 1);
    assert_eq!(w.chain.order(&order).state.name(), "late");

    // Delivered, never confirmed: completed once the review window is over.
    let order = place(&mut w);
    ok(w.chain.run(&w.provider, MarketCall::Accept { order }));
    ok(w.chain.run(
        &w.provider,
        MarketCall::Deliver {
            order,
            delivery: ContentId(Hash([4; 32])),
        },
    ));
    let OrderState::Delivered(d) = w.chain.order(&order).state else {
        panic!("delivered")
    };
    w.chain.until(d.review_by + 1);
    assert!(matches!(
        w.chain.order(&order).state,
        OrderState::Completed(c) if c.automatic
    ));
    // A declined order refunds at once.
    let order = place(&mut w);
    ok(w.chain.run(&w.provider, MarketCall::Decline { order }));
    assert_eq!(w.chain.order(&order).state.name(), "declined");
}

#[test]
fn ratings_are_double_blind_weighted_and_feed_reputation() {
    let mut w = world();
    let order = completed(&mut w);
    let (five, three) = (rating(5, "great work"), rating(3, "paid late"));
    let (salt_b, salt_p) = ([1; 32], [2; 32]);
    let servi0 = w.chain.account(&w.buyer).servi;
    commit(&mut w.chain, &w.buyer, order, &five, salt_b);
    // The provider has not committed: the buyer's rating stays sealed.
    refused(
        w.chain.run(
            &w.buyer,
            MarketCall::RevealRating {
                order,
                rating: five.clone(),
                salt: salt_b,
            },
        ),
        "reveal before the other side commits",
    );
    commit(&mut w.chain, &w.provider, order, &three, salt_p);
    // A reveal that does not match its commitment.
    refused(
        w.chain.run(
            &w.buyer,
            MarketCall::RevealRating {
                order,
                rating: rating(1, "great work"),
                salt: salt_b,
            },
        ),
        "does not match its commitment",
    );
    ok(w.chain.run(
        &w.buyer,
        MarketCall::RevealRating {
            order,
            rating: five.clone(),
            salt: salt_b,
        },
    ));
    ok(w.chain.run(
        &w.provider,
        MarketCall::RevealRating {
            order,
            rating: three.clone(),
            salt: salt_p,
        },
    ));
    let tally: Tally = w.chain.get(&keys::tally(&w.provider.address())).unwrap();
    assert_eq!(tally.count, 1);
    assert_eq!(tally.histogram, [0, 0, 0, 0, 1]);
    let p = MarketParams::default().ftfs;
    assert!(tally.overall_milli(&p) > 3_000);
    let rep = w.chain.account(&w.provider).reputation;
    assert_eq!(rep, tally.reputation(&p));
    assert!(rep > 0);
    let buyer_tally: Tally = w.chain.get(&keys::tally(&w.buyer.address())).unwrap();
    assert_eq!(buyer_tally.histogram, [0, 0, 1, 0, 0]);
    let servi = w.chain.account(&w.buyer).servi;
    assert_eq!(servi, servi0 + MarketParams::default().servi_per_rating);

    // Once per side per order.
    refused(
        w.chain.run(
            &w.buyer,
            MarketCall::CommitRating {
                order,
                commitment: Hash([0; 32]),
            },
        ),
        "already committed",
    );
    refused(
        w.chain.run(
            &w.buyer,
            MarketCall::RevealRating {
                order,
                rating: five,
                salt: salt_b,
            },
        ),
        "already revealed",
    );
    // One public response by the rated side.
    ok(w.chain.run(
        &w.provider,
        MarketCall::Respond {
            order,
            text: "Thank you!".into(),
        },
    ));
    refused(
        w.chain.run(
            &w.provider,
            MarketCall::Respond {
                order,
                text: "Again".into(),
            },
        ),
        "already responded",
    );
    let record: RatingRecord = w.chain.get(&keys::rating(&order, 0)).unwrap();
    assert_eq!(
        record.revealed.unwrap().response.as_deref(),
        Some("Thank you!")
    );
}

#[test]
fn a_rating_alone_is_revealed_after_the_window_and_not_after_the_reveal_deadline() {
    let mut w = world();
    let order = completed(&mut w);
    let since = w.chain.order(&order).state.rateable_since().unwrap();
    let r = rating(4, "");
    commit(&mut w.chain, &w.buyer, order, &r, [9; 32]);
    let p = params();
    w.chain.until(since + p.rating_blocks + 1);
    // The provider missed the window.
    refused(
        w.chain.run(
            &w.provider,
            MarketCall::CommitRating {
                order,
                commitment: Hash([1; 32]),
            },
        ),
        "deadline to rate",
    );
    ok(w.chain.run(
        &w.buyer,
        MarketCall::RevealRating {
            order,
            rating: r.clone(),
            salt: [9; 32],
        },
    ));

    // A second order whose buyer reveals too late.
    let order = completed(&mut w);
    let since = w.chain.order(&order).state.rateable_since().unwrap();
    commit(&mut w.chain, &w.buyer, order, &r, [9; 32]);
    w.chain.until(since + p.rating_blocks + p.reveal_blocks + 1);
    let tally_before: Tally = w.chain.get(&keys::tally(&w.provider.address())).unwrap();
    refused(
        w.chain.run(
            &w.buyer,
            MarketCall::RevealRating {
                order,
                rating: r,
                salt: [9; 32],
            },
        ),
        "deadline to reveal",
    );
    let tally: Tally = w.chain.get(&keys::tally(&w.provider.address())).unwrap();
    assert_eq!(tally, tally_before);
}

/// Withholding a sealed rating once the other side's is read costs the
/// withholder a share of its reputation when the reveal window closes.
#[test]
fn a_rating_committed_and_never_revealed_costs_reputation() {
    let mut w = world();
    // An earlier five-star order gives the provider reputation to lose.
    let first = completed(&mut w);
    let five = rating(5, "");
    commit(&mut w.chain, &w.buyer, first, &five, [1; 32]);
    commit(&mut w.chain, &w.provider, first, &five, [2; 32]);
    reveal(&mut w.chain, &w.buyer, first, &five, [1; 32]);
    reveal(&mut w.chain, &w.provider, first, &five, [2; 32]);
    let order = completed(&mut w);
    let since = w.chain.order(&order).state.rateable_since().unwrap();
    let two = rating(2, "late");
    commit(&mut w.chain, &w.buyer, order, &two, [3; 32]);
    commit(&mut w.chain, &w.provider, order, &five, [4; 32]);
    // The buyer reveals a bad rating; the provider keeps its own sealed.
    reveal(&mut w.chain, &w.buyer, order, &two, [3; 32]);
    let p = params();
    let closes = since + p.rating_blocks + p.reveal_blocks;
    w.chain.until(closes);
    let (provider0, buyer0) = (
        w.chain.account(&w.provider).reputation,
        w.chain.account(&w.buyer).reputation,
    );
    assert!(provider0 > 0);
    w.chain.until(closes + 1);
    let kept = PPM - u64::from(p.withheld_rating_penalty);
    assert_eq!(
        u64::from(w.chain.account(&w.provider).reputation),
        u64::from(provider0) * kept / PPM
    );
    assert_eq!(w.chain.account(&w.buyer).reputation, buyer0);
}

#[test]
fn bad_input_is_refused_with_a_reason_and_changes_nothing() {
    let mut w = world();
    // Listings: a price of zero, oversized or empty text, a stranger's change.
    refused(
        w.chain.run(
            &w.provider,
            MarketCall::CreateListing(ListingTerms {
                price: 0,
                ..terms("free")
            }),
        ),
        "below the minimum",
    );
    refused(
        w.chain.run(
            &w.provider,
            MarketCall::CreateListing(terms(&"x".repeat(129))),
        ),
        "over the limit of 128",
    );
    refused(
        w.chain
            .run(&w.provider, MarketCall::CreateListing(terms(" "))),
        "needs a title",
    );
    let listing_before: Listing = w.chain.get(&keys::listing(&w.listing)).unwrap();
    refused(
        w.chain.run(
            &w.stranger,
            MarketCall::UpdateListing {
                listing: w.listing,
                terms: terms("mine now"),
            },
        ),
        "only the listing's provider",
    );
    refused(
        w.chain.run(
            &w.stranger,
            MarketCall::SetListingStatus {
                listing: w.listing,
                status: ListingStatus::Closed,
            },
        ),
        "only the listing's provider",
    );
    assert_eq!(
        w.chain.get::<Listing>(&keys::listing(&w.listing)).unwrap(),
        listing_before
    );
    // Orders: the wrong price, one's own listing, unknown ids.
    refused(
        w.chain.run(
            &w.buyer,
            MarketCall::PlaceOrder {
                listing: w.listing,
                price: PRICE - 1,
            },
        ),
        "the listing's price is",
    );
    refused(
        w.chain.run(
            &w.provider,
            MarketCall::PlaceOrder {
                listing: w.listing,
                price: PRICE,
            },
        ),
        "its own listing",
    );
    refused(
        w.chain.run(
            &w.buyer,
            MarketCall::Accept {
                order: Hash([7; 32]),
            },
        ),
        "no order",
    );
    // Rating without an order, or before it completed.
    refused(
        w.chain.run(
            &w.buyer,
            MarketCall::CommitRating {
                order: Hash([7; 32]),
                commitment: Hash([0; 32]),
            },
        ),
        "no order",
    );
    let order = place(&mut w);
    refused(
        w.chain.run(
            &w.buyer,
            MarketCall::CommitRating {
                order,
                commitment: Hash([0; 32]),
            },
        ),
        "no rating without a completed or resolved order",
    );
    // A stranger cannot move an order; the buyer cannot accept it.
    let before = w.chain.order(&order);
    refused(
        w.chain.run(&w.stranger, MarketCall::Accept { order }),
        "only the provider may accept",
    );
    refused(
        w.chain.run(&w.buyer, MarketCall::Accept { order }),
        "only the provider may accept",
    );
    ok(w.chain.run(&w.provider, MarketCall::Accept { order }));
    ok(w.chain.run(
        &w.provider,
        MarketCall::Deliver {
            order,
            delivery: ContentId(Hash([4; 32])),
        },
    ));
    let delivered = w.chain.order(&order);
    refused(
        w.chain.run(&w.stranger, MarketCall::Confirm { order }),
        "only the buyer may confirm",
    );
    refused(
        w.chain.run(&w.provider, MarketCall::Confirm { order }),
        "only the buyer may confirm",
    );
    assert_eq!(w.chain.order(&order), delivered);
    assert_ne!(before, delivered);
    // A stranger cannot rate a completed order.
    ok(w.chain.run(&w.buyer, MarketCall::Confirm { order }));
    refused(
        w.chain.run(
            &w.stranger,
            MarketCall::CommitRating {
                order,
                commitment: Hash([0; 32]),
            },
        ),
        "only the buyer or the provider may rate",
    );
    // A paused listing takes no orders; a closed one cannot reopen.
    ok(w.chain.run(
        &w.provider,
        MarketCall::SetListingStatus {
            listing: w.listing,
            status: ListingStatus::Paused,
        },
    ));
    refused(
        w.chain.run(
            &w.buyer,
            MarketCall::PlaceOrder {
                listing: w.listing,
                price: PRICE,
            },
        ),
        "the listing is paused",
    );
    ok(w.chain.run(
        &w.provider,
        MarketCall::SetListingStatus {
            listing: w.listing,
            status: ListingStatus::Closed,
        },
    ));
    refused(
        w.chain.run(
            &w.provider,
            MarketCall::SetListingStatus {
                listing: w.listing,
                status: ListingStatus::Active,
            },
        ),
        "closed for good",
    );
    // Garbage instead of a call: included, a typed decode error in the receipt.
    let garbage = ios_chain::tx::Call {
        module: ios_market::module::MARKET_MODULE,
        payload: vec![0xFF, 0x00, 0x13],
    };
    let tx = w.chain.solo.sign(&w.buyer, garbage, FEE);
    match w.chain.solo.run(vec![tx]).unwrap().remove(0).1 {
        ReceiptStatus::Failed { code, .. } => assert_eq!(code, "malformed"),
        s => panic!("{s:?}"),
    }
}

fn jury_params() -> MarketParams {
    MarketParams {
        jury_size: 3,
        juror_floor: 0,
        jury_commit_blocks: 4,
        jury_reveal_blocks: 4,
        max_draws: 2,
        ..params()
    }
}

/// A delivered order and three accounts in the jury pool.
fn disputed_world() -> (World, Vec<Keypair>, Hash) {
    let provider = Keypair::from_seed("provider", 0);
    let buyer = Keypair::from_seed("buyer", 0);
    let stranger = Keypair::from_seed("stranger", 0);
    let jurors: Vec<Keypair> = (0..3).map(|i| Keypair::from_seed("juror", i)).collect();
    let mut users = vec![provider.clone(), buyer.clone(), stranger.clone()];
    users.extend(jurors.iter().cloned());
    let mut chain = Chain::new(&users, jury_params());
    let listing = ok(chain.run(
        &provider,
        MarketCall::CreateListing(terms("A logo in a day")),
    ));
    let mut w = World {
        chain,
        provider,
        buyer,
        stranger,
        listing,
    };
    for j in &jurors {
        ok(w.chain.run(j, MarketCall::JoinJuryPool));
    }
    refused(
        w.chain.run(&jurors[0], MarketCall::JoinJuryPool),
        "already in the jury pool",
    );
    let order = place(&mut w);
    ok(w.chain.run(&w.provider, MarketCall::Accept { order }));
    ok(w.chain.run(
        &w.provider,
        MarketCall::Deliver {
            order,
            delivery: ContentId(Hash([4; 32])),
        },
    ));
    (w, jurors, order)
}

fn case(text: &str) -> ios_market::jury::Case {
    ios_market::jury::Case {
        statement: text.into(),
        evidence: vec![ContentId(Hash([6; 32]))],
    }
}

fn until_drawn(w: &mut World, order: &Hash) -> ios_market::jury::Dispute {
    for _ in 0..100 {
        let d: ios_market::jury::Dispute = w.chain.get(&keys::dispute(order)).unwrap();
        if !d.jurors.is_empty() {
            return d;
        }
        w.chain.block();
    }
    panic!("no jury drawn");
}

#[test]
fn a_dispute_is_judged_by_a_drawn_jury_and_the_median_executed() {
    let (mut w, jurors, order) = disputed_world();
    let buyer0 = w.chain.balance(&w.buyer);
    refused(
        w.chain.run(
            &w.stranger,
            MarketCall::Dispute {
                order,
                case: case("mine"),
            },
        ),
        "only the buyer or the provider may dispute",
    );
    ok(w.chain.run(
        &w.buyer,
        MarketCall::Dispute {
            order,
            case: case("The logo is a stock image"),
        },
    ));
    assert_eq!(w.chain.order(&order).state.name(), "disputed");
    refused(
        w.chain.run(
            &w.buyer,
            MarketCall::Answer {
                order,
                case: case("me too"),
            },
        ),
        "only the other party may answer",
    );
    ok(w.chain.run(
        &w.provider,
        MarketCall::Answer {
            order,
            case: case("It was drawn by hand"),
        },
    ));
    let d = until_drawn(&mut w, &order);
    assert_eq!(d.jurors.len(), 3, "all three in the pool are drawn");
    // Voting when not drawn.
    refused(
        w.chain.run(
            &w.stranger,
            MarketCall::JuryCommit {
                order,
                commitment: Hash([0; 32]),
            },
        ),
        "not drawn as a juror",
    );
    let votes = [300_000u32, 400_000, 1_000_000];
    let salt = |i: usize| [i as u8 + 1; 32];
    for (i, j) in jurors.iter().enumerate() {
        let commitment =
            ios_market::jury::vote_commitment(&order, &j.address(), d.round, votes[i], &salt(i));
        ok(w.chain.run(j, MarketCall::JuryCommit { order, commitment }));
    }
    // A reveal that does not match.
    refused(
        w.chain.run(
            &jurors[0],
            MarketCall::JuryReveal {
                order,
                share: 0,
                salt: salt(0),
            },
        ),
        "does not match its commitment",
    );
    let j0 = w.chain.balance(&jurors[0]);
    for (i, j) in jurors.iter().enumerate() {
        ok(w.chain.run(
            j,
            MarketCall::JuryReveal {
                order,
                share: votes[i],
                salt: salt(i),
            },
        ));
    }
    let d: ios_market::jury::Dispute = w.chain.get(&keys::dispute(&order)).unwrap();
    w.chain.until(d.reveal_by + 1);
    let OrderState::Resolved(r) = w.chain.order(&order).state else {
        panic!("resolved: {:?}", w.chain.order(&order).state)
    };
    assert_eq!(r.buyer_share, 400_000, "the median");
    // The jury's 5% goes to the two jurors within 10 points of the median.
    let jury = PRICE * 5 / 100;
    let back = (PRICE - jury) * 4 / 10;
    assert_eq!(w.chain.balance(&w.buyer), buyer0 + back - 2 * FEE);
    assert_eq!(w.chain.balance(&jurors[0]), j0 + jury / 2 - FEE);
    // The lost dispute counts against the provider's score as a seller.
    let as_provider: Tally = w
        .chain
        .get(&keys::provider_tally(&w.provider.address()))
        .unwrap();
    assert!(as_provider.weight > 0 && as_provider.count == 0);
    assert!(as_provider.overall_milli(&MarketParams::default().ftfs) < 3_000);
    // A resolved order can be rated.
    commit(
        &mut w.chain,
        &w.buyer,
        order,
        &rating(2, "half right"),
        [5; 32],
    );
}

#[test]
fn a_jury_that_does_not_reveal_is_redrawn_then_the_order_split() {
    let (mut w, jurors, order) = disputed_world();
    ok(w.chain.run(
        &w.provider,
        MarketCall::Dispute {
            order,
            case: case("The buyer asks for more than agreed"),
        },
    ));
    // Meanwhile juror 0 earns some reputation: it sells to the stranger, who rates it 5.
    let side = ok(w
        .chain
        .run(&jurors[0], MarketCall::CreateListing(terms("Proofreading"))));
    let sale = ok(w.chain.run(
        &w.stranger,
        MarketCall::PlaceOrder {
            listing: side,
            price: PRICE,
        },
    ));
    ok(w.chain.run(&jurors[0], MarketCall::Accept { order: sale }));
    ok(w.chain.run(
        &jurors[0],
        MarketCall::Deliver {
            order: sale,
            delivery: ContentId(Hash([4; 32])),
        },
    ));
    ok(w.chain
        .run(&w.stranger, MarketCall::Confirm { order: sale }));
    commit(&mut w.chain, &w.stranger, sale, &rating(5, ""), [3; 32]);
    let since = w.chain.order(&sale).state.rateable_since().unwrap();
    w.chain.until(since + params().rating_blocks + 1);
    ok(w.chain.run(
        &w.stranger,
        MarketCall::RevealRating {
            order: sale,
            rating: rating(5, ""),
            salt: [3; 32],
        },
    ));
    let rep = |w: &World| w.chain.account(&jurors[0]).reputation;
    let first = until_drawn(&mut w, &order);
    let earned = rep(&w);
    assert!(earned > 0);
    assert_eq!(first.round, 1);
    // Nobody votes: after the reveal window a new jury is drawn.
    w.chain.until(first.reveal_by + 1);
    let d: ios_market::jury::Dispute = w.chain.get(&keys::dispute(&order)).unwrap();
    assert!(d.jurors.is_empty(), "jury dismissed");
    // A drawn juror who did not reveal lost a fifth of its reputation.
    assert_eq!(rep(&w), earned - earned / 5);
    let second = until_drawn(&mut w, &order);
    assert_eq!(second.round, 2);
    // Still nobody: with max_draws reached, an even split.
    w.chain.until(second.reveal_by + 1);
    let OrderState::Resolved(r) = w.chain.order(&order).state else {
        panic!("resolved: {:?}", w.chain.order(&order).state)
    };
    assert_eq!(r.buyer_share, 500_000);
}

#[test]
fn an_order_keeps_the_delivery_time_it_was_placed_with() {
    let mut w = world();
    let order = place(&mut w);
    // The provider lengthens the delivery time after the order came in.
    ok(w.chain.run(
        &w.provider,
        MarketCall::UpdateListing {
            listing: w.listing,
            terms: ListingTerms {
                delivery_blocks: 100_000,
                ..terms("A logo in a day")
            },
        },
    ));
    ok(w.chain.run(&w.provider, MarketCall::Accept { order }));
    let OrderState::Accepted(a) = w.chain.order(&order).state else {
        panic!("accepted")
    };
    assert_eq!(
        a.deliver_by,
        a.accepted + 10,
        "the 10 blocks the buyer ordered with"
    );
    // A juror needs believability; the pool refuses one without.
    let fresh = Keypair::from_seed("stranger", 0);
    refused(
        w.chain.run(&fresh, MarketCall::JoinJuryPool),
        "a juror needs a believability",
    );
}

/// Servi for a rating follows the order's value up to one value unit (1
/// IOST): farming it with the cheapest orders costs as much commission per
/// Servi as real trade.
#[test]
fn servi_for_a_rating_scales_with_the_order_value_below_one_unit() {
    let mut w = world();
    let cheap = IOST / 4;
    let mut t = terms("A quick sketch");
    t.price = cheap;
    ok(w.chain.run(
        &w.provider,
        MarketCall::UpdateListing {
            listing: w.listing,
            terms: t,
        },
    ));
    let order = ok(w.chain.run(
        &w.buyer,
        MarketCall::PlaceOrder {
            listing: w.listing,
            price: cheap,
        },
    ));
    complete(&mut w, order);
    let servi0 = w.chain.account(&w.buyer).servi;
    let r = rating(4, "fine");
    commit(&mut w.chain, &w.buyer, order, &r, [5; 32]);
    commit(&mut w.chain, &w.provider, order, &r, [6; 32]);
    reveal(&mut w.chain, &w.buyer, order, &r, [5; 32]);
    assert_eq!(
        w.chain.account(&w.buyer).servi,
        servi0 + MarketParams::default().servi_per_rating / 4
    );
}
