//! The market module: listings, escrowed orders and FTFS ratings on chain.
//!
//! A listing lives on its provider's home shard; an order is placed there by
//! a buyer of the same shard (cross-shard buyers, through Atomix, are not
//! built yet), its price held in the module's custody until an end state
//! pays it out: refunded (declined, expired, cancelled, late), paid to the
//! provider less the commission (completed; the commission goes to the fee
//! pool), or split by a verdict. Deadlines are kept in a per-height index
//! and settled by `end_block` in the first block after them.
//!
//! Each side of a completed or resolved order may rate the other once,
//! double-blind: a commitment within `rating_blocks`, then the rating
//! revealed once both sides committed or the commitment window closed,
//! within `reveal_blocks` more. A revealed rating is weighted
//! ([`crate::ftfs::weight`]), added to the rated account's tally, and the
//! rated account's reputation set from it; the rater earns Servi.

use crate::error::MarketError;
use crate::ftfs::{self, Defences, FtfsParams, RaterFacts, Rating, Tally};
use crate::jury::{self, Case, Dispute, Juror};
use crate::order::{Action, Actor, Funded, Money, Order, OrderState, Side, Windows};
use borsh::{BorshDeserialize, BorshSerialize};
use ios_chain::committee::K_RANDOMNESS;
use ios_chain::crypto::Address;
use ios_chain::error::{ChainError, Result};
use ios_chain::hash::Hash;
use ios_chain::module::{CallContext, Module};
use ios_chain::tx::{Call, ModuleId};
use ios_chain::types::{Amount, Height, Ppm, PPM, UNITS_PER_IOST};
use ios_storage::ContentId;
use serde::Serialize;

/// The market module's id in `Call`.
pub const MARKET_MODULE: ModuleId = ModuleId(3);
const NAME: &str = "market";

pub const MAX_TITLE: usize = 128;
/// Accounts the jury pool holds at most (it is one state value, read at
/// every draw).
pub const MAX_JURY_POOL: usize = 10_000;
/// Blocks after which a deadline or jury whose settlement failed is tried again.
pub const RETRY_BLOCKS: Height = 100;
pub const MAX_CATEGORY: usize = 64;

/// Consensus parameters of the market (the same on every node).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct MarketParams {
    /// Share of a paid price that goes to the fee pool, in ppm.
    pub commission: Ppm,
    /// The lowest price a listing may ask.
    pub min_price: Amount,
    /// Blocks a provider has to accept an order.
    pub accept_blocks: Height,
    /// The longest delivery time a listing may promise, in blocks.
    pub max_delivery_blocks: Height,
    /// Blocks a buyer has to confirm or dispute a delivery.
    pub review_blocks: Height,
    /// Blocks after an order ends in which either side may commit a rating.
    pub rating_blocks: Height,
    /// Blocks after that in which committed ratings may still be revealed.
    pub reveal_blocks: Height,
    /// Servi a rater earns for a revealed rating of an order worth at least
    /// `ftfs.value_unit` (less in proportion below it; less for repeats).
    pub servi_per_rating: u64,
    pub ftfs: FtfsParams,
    /// Jurors drawn per dispute.
    pub jury_size: u8,
    /// The believability an opted-in account needs to be drawn, ppm.
    pub juror_floor: Ppm,
    /// Blocks after a draw in which jurors commit their votes.
    pub jury_commit_blocks: Height,
    /// Blocks after that in which they reveal them.
    pub jury_reveal_blocks: Height,
    /// Share of a disputed order's price that pays the jurors who agree with the verdict, ppm.
    pub jury_fee: Ppm,
    /// How close to the verdict a vote must be to earn the fee, ppm.
    pub agree_within: Ppm,
    /// Servi each agreeing juror earns.
    pub juror_servi: u64,
    /// Share of its reputation a drawn juror loses by not revealing, ppm.
    pub no_reveal_penalty: Ppm,
    /// Share of its reputation a rater loses by committing a rating and not
    /// revealing it (say, after reading the other side's), ppm.
    pub withheld_rating_penalty: Ppm,
    /// Draws before a dispute no jury decides is split evenly.
    pub max_draws: u8,
}

impl Default for MarketParams {
    fn default() -> Self {
        MarketParams {
            commission: 20_000,
            min_price: UNITS_PER_IOST / 100,
            accept_blocks: 600,
            max_delivery_blocks: 1_000_000,
            review_blocks: 600,
            rating_blocks: 1_200,
            reveal_blocks: 600,
            servi_per_rating: 100,
            ftfs: FtfsParams::default(),
            jury_size: 5,
            juror_floor: 100_000,
            jury_commit_blocks: 300,
            jury_reveal_blocks: 300,
            jury_fee: 50_000,
            agree_within: 100_000,
            juror_servi: 200,
            no_reveal_penalty: 200_000,
            withheld_rating_penalty: 50_000,
            max_draws: 3,
        }
    }
}

impl MarketParams {
    /// Checks what every node must agree on before the chain starts.
    pub fn validate(&self) -> std::result::Result<(), MarketError> {
        let bad = |m: String| Err(MarketError::Invalid(m));
        for (name, v) in [
            ("commission", self.commission),
            ("juror_floor", self.juror_floor),
            ("jury_fee", self.jury_fee),
            ("agree_within", self.agree_within),
            ("no_reveal_penalty", self.no_reveal_penalty),
            ("withheld_rating_penalty", self.withheld_rating_penalty),
            ("ftfs.base_believability", self.ftfs.base_believability),
        ] {
            if u64::from(v) > PPM {
                return bad(format!("{name} is {v} ppm, over {PPM}"));
            }
        }
        if u64::from(self.commission) + u64::from(self.jury_fee) > PPM {
            return bad("commission and jury fee add up to more than the price".into());
        }
        for (name, v) in [
            ("min_price", self.min_price),
            ("accept_blocks", self.accept_blocks),
            ("max_delivery_blocks", self.max_delivery_blocks),
            ("review_blocks", self.review_blocks),
            ("rating_blocks", self.rating_blocks),
            ("reveal_blocks", self.reveal_blocks),
            ("jury_commit_blocks", self.jury_commit_blocks),
            ("jury_reveal_blocks", self.jury_reveal_blocks),
            ("ftfs.value_unit", self.ftfs.value_unit),
            ("ftfs.prior_weight", self.ftfs.prior_weight),
        ] {
            if v == 0 {
                return bad(format!("{name} is 0"));
            }
        }
        if self.jury_size == 0 || self.max_draws == 0 {
            return bad("juries need at least one juror and one draw".into());
        }
        if !(1_000..=5_000).contains(&self.ftfs.prior_mean_milli) {
            return bad(format!(
                "ftfs.prior_mean_milli is {}, not a score of 1 to 5 stars",
                self.ftfs.prior_mean_milli
            ));
        }
        Ok(())
    }
}

/// The market's genesis settings (`Genesis::modules`, module 3): its
/// parameters and the accounts global trust starts from. A genesis without
/// them runs the defaults and pre-trusts no one.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct MarketGenesis {
    pub params: MarketParams,
    /// EigenTrust's pre-trusted accounts (`trust::global_trust`): the
    /// network's long-standing, known-honest participants.
    pub pre_trusted: Vec<Address>,
}

/// Most pre-trusted accounts a genesis may name.
pub const MAX_PRE_TRUSTED: usize = 1_000;

impl MarketGenesis {
    /// The market settings of `genesis`, checked.
    pub fn of(
        genesis: &ios_chain::params::Genesis,
    ) -> std::result::Result<MarketGenesis, MarketError> {
        let g = match genesis.module_config(MARKET_MODULE) {
            Some(bytes) => {
                ios_chain::codec::decode::<MarketGenesis>("market genesis", bytes, 1 << 20)
                    .map_err(|e| {
                        MarketError::Invalid(format!("the market's genesis settings: {e}"))
                    })?
            }
            None => MarketGenesis::default(),
        };
        g.params.validate()?;
        if g.pre_trusted.len() > MAX_PRE_TRUSTED {
            return Err(MarketError::Invalid(format!(
                "{} pre-trusted accounts, over {MAX_PRE_TRUSTED}",
                g.pre_trusted.len()
            )));
        }
        Ok(g)
    }

    /// Writes these settings into `genesis`.
    pub fn write_to(&self, genesis: &mut ios_chain::params::Genesis) {
        genesis.set_module_config(MARKET_MODULE, ios_chain::codec::encode(self));
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ListingStatus {
    Active,
    Paused,
    /// Final: a closed listing takes no orders and cannot reopen.
    Closed,
}

impl ListingStatus {
    pub fn name(&self) -> &'static str {
        match self {
            ListingStatus::Active => "active",
            ListingStatus::Paused => "paused",
            ListingStatus::Closed => "closed",
        }
    }
}

/// What a listing offers; the long form (description, images, terms) is
/// the HUDS object `doc`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct ListingTerms {
    pub title: String,
    pub category: String,
    pub price: Amount,
    pub delivery_blocks: Height,
    pub doc: ContentId,
}

impl ListingTerms {
    pub fn validate(&self, p: &MarketParams) -> std::result::Result<(), MarketError> {
        if self.title.trim().is_empty() {
            return Err(MarketError::Invalid("a listing needs a title".into()));
        }
        ftfs::check_text("title", &self.title, MAX_TITLE)?;
        if self.title.contains(['\n', '\t']) {
            return Err(MarketError::Invalid("the title is one line".into()));
        }
        ftfs::check_text("category", &self.category, MAX_CATEGORY)?;
        if self.category.is_empty()
            || !self
                .category
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '/')
        {
            return Err(MarketError::Invalid(format!(
                "category {:?}: lowercase letters, digits, '-' and '/' only",
                self.category
            )));
        }
        if self.price < p.min_price {
            return Err(MarketError::PriceTooLow {
                price: self.price,
                min: p.min_price,
            });
        }
        if self.delivery_blocks == 0 || self.delivery_blocks > p.max_delivery_blocks {
            return Err(MarketError::Invalid(format!(
                "a delivery time of {} blocks (from 1 to {})",
                self.delivery_blocks, p.max_delivery_blocks
            )));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Listing {
    pub id: Hash,
    pub provider: Address,
    pub terms: ListingTerms,
    pub status: ListingStatus,
    pub created: Height,
    pub updated: Height,
    /// Orders placed on it.
    pub orders: u64,
}

/// One side's rating of the other for one order.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct RatingRecord {
    pub commitment: Hash,
    pub committed: Height,
    pub revealed: Option<Revealed>,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Revealed {
    pub rating: Rating,
    /// Its weight when it was added to the tally.
    pub weight: u64,
    pub at: Height,
    /// The rated side's one public response.
    pub response: Option<String>,
}

/// A market module call.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum MarketCall {
    CreateListing(ListingTerms),
    /// Replaces a listing's terms (its provider only; not once closed).
    UpdateListing {
        listing: Hash,
        terms: ListingTerms,
    },
    /// Pauses, resumes or closes a listing (its provider only).
    SetListingStatus {
        listing: Hash,
        status: ListingStatus,
    },
    /// Orders from a listing at `price`, which must be the listing's
    /// current price (so a price change cannot surprise the buyer); the
    /// price goes into escrow.
    PlaceOrder {
        listing: Hash,
        price: Amount,
    },
    Accept {
        order: Hash,
    },
    Decline {
        order: Hash,
    },
    /// The provider withdraws from an accepted order (the buyer is refunded).
    Cancel {
        order: Hash,
    },
    Deliver {
        order: Hash,
        delivery: ContentId,
    },
    Confirm {
        order: Hash,
    },
    /// Commits to a rating of the other side: `Rating::commitment`.
    CommitRating {
        order: Hash,
        commitment: Hash,
    },
    RevealRating {
        order: Hash,
        rating: Rating,
        salt: [u8; 32],
    },
    /// The rated side's one public answer to the rating it received.
    Respond {
        order: Hash,
        text: String,
    },
    /// Either party disputes a delivered order within its review window.
    Dispute {
        order: Hash,
        case: Case,
    },
    /// The other party's one answer to a dispute.
    Answer {
        order: Hash,
        case: Case,
    },
    /// Offers the sender as a juror (drawn only above the believability floor).
    JoinJuryPool,
    LeaveJuryPool,
    /// A drawn juror's commitment: `jury::vote_commitment`.
    JuryCommit {
        order: Hash,
        commitment: Hash,
    },
    /// A drawn juror's vote: the buyer's share of the price, ppm.
    JuryReveal {
        order: Hash,
        share: Ppm,
        salt: [u8; 32],
    },
}

/// Fees a buyer from another shard brings along with its order, in bytes
/// at the minimum fee rate: room for 16 transactions of 1 KiB on the
/// order's shard (confirm or dispute, rate, reveal, respond).
pub const CROSS_SHARD_FEE_BYTES: u64 = 16 * 1024;

/// What a market call acts on, which decides the shard that runs it: a
/// listing's or an order's own shard (a buyer from another shard orders
/// through Atomix, and then acts on the order where it lives), else the
/// sender's home shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    Listing(Hash),
    Order(Hash),
    Sender,
}

impl MarketCall {
    pub fn subject(&self) -> Subject {
        match self {
            MarketCall::CreateListing(_) | MarketCall::JoinJuryPool | MarketCall::LeaveJuryPool => {
                Subject::Sender
            }
            MarketCall::UpdateListing { listing, .. }
            | MarketCall::SetListingStatus { listing, .. }
            | MarketCall::PlaceOrder { listing, .. } => Subject::Listing(*listing),
            MarketCall::Accept { order }
            | MarketCall::Decline { order }
            | MarketCall::Cancel { order }
            | MarketCall::Deliver { order, .. }
            | MarketCall::Confirm { order }
            | MarketCall::CommitRating { order, .. }
            | MarketCall::RevealRating { order, .. }
            | MarketCall::Respond { order, .. }
            | MarketCall::Dispute { order, .. }
            | MarketCall::Answer { order, .. }
            | MarketCall::JuryCommit { order, .. }
            | MarketCall::JuryReveal { order, .. } => Subject::Order(*order),
        }
    }

    pub fn to_call(&self) -> Call {
        Call {
            module: MARKET_MODULE,
            payload: borsh::to_vec(self).expect("borsh to a Vec"),
        }
    }
}

/// State keys, all under `market/`.
pub mod keys {
    use ios_chain::crypto::Address;
    use ios_chain::hash::Hash;
    use ios_chain::types::Height;

    fn key(parts: &[&[u8]]) -> Vec<u8> {
        let mut k = b"market/".to_vec();
        for p in parts {
            k.extend_from_slice(p);
        }
        k
    }

    pub fn listing(id: &Hash) -> Vec<u8> {
        key(&[b"listing/", &id.0])
    }
    /// A provider's listing ids, oldest first (a [`super::list`]).
    pub fn listings_of(provider: &Address) -> Vec<u8> {
        key(&[b"listings/", &provider.0])
    }
    /// Accounts that ever listed on this shard, in the order they first did
    /// (a [`super::list`]: what a catalog reads to see every listing).
    pub const PROVIDERS: &[u8] = b"market/providers";
    /// Present once `provider` is in [`PROVIDERS`].
    pub fn provider_listed(provider: &Address) -> Vec<u8> {
        key(&[b"provider_listed/", &provider.0])
    }
    pub fn order(id: &Hash) -> Vec<u8> {
        key(&[b"order/", &id.0])
    }
    /// The ids of orders an account is a party to, oldest first (a
    /// [`super::list`]).
    pub fn orders_of(who: &Address) -> Vec<u8> {
        key(&[b"orders/", &who.0])
    }
    /// Orders whose deadline passes at `height` (settled in that block).
    pub fn due(height: Height) -> Vec<u8> {
        key(&[b"due/", &height.to_be_bytes()])
    }
    /// `side`'s rating of the other side of `order`.
    pub fn rating(order: &Hash, side: u8) -> Vec<u8> {
        key(&[b"rating/", &order.0, &[side]])
    }
    /// Ratings an account received, on either side (its reputation).
    pub fn tally(who: &Address) -> Vec<u8> {
        key(&[b"tally/", &who.0])
    }
    /// Ratings an account received as a provider, and lost disputes (its
    /// score as a seller, shown on its listings and used to rank them).
    pub fn provider_tally(who: &Address) -> Vec<u8> {
        key(&[b"provider_tally/", &who.0])
    }
    /// How many weighted ratings `rater` gave `ratee` (novelty).
    pub fn pair(rater: &Address, ratee: &Address) -> Vec<u8> {
        key(&[b"pair/", &rater.0, &ratee.0])
    }
    /// Present once `buyer` has ordered from `provider` (linked accounts).
    pub fn traded(buyer: &Address, provider: &Address) -> Vec<u8> {
        key(&[b"traded/", &buyer.0, &provider.0])
    }
    /// The dispute over an order.
    pub fn dispute(order: &Hash) -> Vec<u8> {
        key(&[b"dispute/", &order.0])
    }
    /// The FTFS part of an account's reputation, as last applied.
    pub fn ftfs_reputation(who: &Address) -> Vec<u8> {
        key(&[b"ftfs_reputation/", &who.0])
    }
    /// Accounts that offer to serve on juries, sorted.
    pub const JURY_POOL: &[u8] = b"market/jury_pool";
    /// Disputes waiting for a jury to be drawn.
    pub const UNDRAWN: &[u8] = b"market/undrawn";
    /// Committed ratings `(order, side)` whose reveal window closes before
    /// `height`: one still sealed then costs its rater reputation.
    pub fn rating_due(height: Height) -> Vec<u8> {
        key(&[b"rating_due/", &height.to_be_bytes()])
    }
    /// Disputes whose jury's reveal window closes before `height`.
    pub fn jury_due(height: Height) -> Vec<u8> {
        key(&[b"jury_due/", &height.to_be_bytes()])
    }
}

/// Append-only lists kept one item per key: `<list>/n` holds the length and
/// `<list>/<index, u64 BE>` each item, so adding to a list costs the same
/// however long it grew (a busy provider's orders, every provider of a
/// shard) and a page reads only its own items.
pub mod list {
    use ios_chain::committee::read;
    use ios_chain::error::Result;
    use ios_chain::state::StateRead;

    pub fn len_key(list: &[u8]) -> Vec<u8> {
        [list, b"/n"].concat()
    }

    pub fn item_key(list: &[u8], index: u64) -> Vec<u8> {
        [list, b"/", &index.to_be_bytes()].concat()
    }

    pub fn len(state: &dyn StateRead, list: &[u8]) -> Result<u64> {
        Ok(read(state, &len_key(list))?.unwrap_or(0))
    }

    /// Every item, oldest first.
    pub fn all<T: borsh::BorshDeserialize>(state: &dyn StateRead, list: &[u8]) -> Result<Vec<T>> {
        let n = len(state, list)?;
        (0..n)
            .filter_map(|i| read(state, &item_key(list, i)).transpose())
            .collect()
    }

    /// A page, newest first: skip `offset` items from the end, take `limit`.
    pub fn newest<T: borsh::BorshDeserialize>(
        state: &dyn StateRead,
        list: &[u8],
        offset: u64,
        limit: u64,
    ) -> Result<Vec<T>> {
        let n = len(state, list)?;
        let top = n.saturating_sub(offset);
        (top.saturating_sub(limit)..top)
            .rev()
            .filter_map(|i| read(state, &item_key(list, i)).transpose())
            .collect()
    }
}

fn side_byte(s: Side) -> u8 {
    match s {
        Side::Buyer => 0,
        Side::Provider => 1,
    }
}

fn refuse(e: MarketError) -> ChainError {
    ChainError::Module {
        module: NAME,
        reason: e.to_string(),
    }
}

/// The market module.
#[derive(Clone, Debug, Default)]
pub struct MarketModule {
    pub params: MarketParams,
}

type Ctx<'x, 'a, 'b> = &'x mut CallContext<'a, 'b>;

impl MarketModule {
    pub fn new(params: MarketParams) -> MarketModule {
        MarketModule { params }
    }

    /// The module as `genesis` sets it up.
    pub fn from_genesis(
        genesis: &ios_chain::params::Genesis,
    ) -> std::result::Result<MarketModule, MarketError> {
        Ok(MarketModule::new(MarketGenesis::of(genesis)?.params))
    }

    pub fn params(&self) -> &MarketParams {
        &self.params
    }

    fn listing(ctx: &CallContext<'_, '_>, id: &Hash) -> Result<Listing> {
        ctx.get(&keys::listing(id))?
            .ok_or_else(|| refuse(MarketError::UnknownListing(id.to_string())))
    }

    fn order(ctx: &CallContext<'_, '_>, id: &Hash) -> Result<Order> {
        ctx.get(&keys::order(id))?
            .ok_or_else(|| refuse(MarketError::UnknownOrder(id.to_string())))
    }

    /// Adds `item` at the end of a [`list`].
    fn append<T: BorshSerialize>(ctx: Ctx<'_, '_, '_>, l: &[u8], item: &T) -> Result<()> {
        let n = list::len(ctx.state(), l)?;
        ctx.put(&list::item_key(l, n), item)?;
        ctx.put(&list::len_key(l), &(n + 1))
    }

    fn push(ctx: Ctx<'_, '_, '_>, key: &[u8], id: Hash) -> Result<()> {
        let mut ids: Vec<Hash> = ctx.get(key)?.unwrap_or_default();
        ids.push(id);
        ctx.put(key, &ids)
    }

    fn windows(&self, delivery_blocks: Height) -> Windows {
        Windows {
            delivery_blocks,
            review_blocks: self.params.review_blocks,
            commission: self.params.commission,
            jury_fee: self.params.jury_fee,
        }
    }

    fn create_listing(&self, ctx: Ctx<'_, '_, '_>, terms: ListingTerms) -> Result<()> {
        terms.validate(&self.params).map_err(refuse)?;
        let id = ctx.tx_id;
        let listing = Listing {
            id,
            provider: ctx.sender,
            terms,
            status: ListingStatus::Active,
            created: ctx.env.height,
            updated: ctx.env.height,
            orders: 0,
        };
        ctx.put(&keys::listing(&id), &listing)?;
        MarketModule::append(ctx, &keys::listings_of(&listing.provider), &id)?;
        let listed = keys::provider_listed(&listing.provider);
        if ctx.get::<bool>(&listed)?.is_none() {
            ctx.put(&listed, &true)?;
            MarketModule::append(ctx, keys::PROVIDERS, &listing.provider)?;
        }
        ctx.emit("listing", &(id, listing.provider));
        Ok(())
    }

    fn own_listing(&self, ctx: &CallContext<'_, '_>, id: &Hash) -> Result<Listing> {
        let l = MarketModule::listing(ctx, id)?;
        if l.provider != ctx.sender {
            return Err(refuse(MarketError::NotAllowed {
                role: "the listing's provider",
                action: "change a listing",
            }));
        }
        if l.status == ListingStatus::Closed {
            return Err(refuse(MarketError::Invalid(
                "the listing is closed for good".into(),
            )));
        }
        Ok(l)
    }

    fn update_listing(&self, ctx: Ctx<'_, '_, '_>, id: Hash, terms: ListingTerms) -> Result<()> {
        terms.validate(&self.params).map_err(refuse)?;
        let mut l = self.own_listing(ctx, &id)?;
        l.terms = terms;
        l.updated = ctx.env.height;
        ctx.put(&keys::listing(&id), &l)?;
        ctx.emit("listing", &(id, l.provider));
        Ok(())
    }

    fn set_status(&self, ctx: Ctx<'_, '_, '_>, id: Hash, status: ListingStatus) -> Result<()> {
        let mut l = self.own_listing(ctx, &id)?;
        l.status = status;
        l.updated = ctx.env.height;
        ctx.put(&keys::listing(&id), &l)?;
        ctx.emit("listing", &(id, l.provider));
        Ok(())
    }

    fn place(&self, ctx: Ctx<'_, '_, '_>, listing: Hash, price: Amount) -> Result<()> {
        let mut l = MarketModule::listing(ctx, &listing)?;
        if l.status != ListingStatus::Active {
            return Err(refuse(MarketError::NotTakingOrders(l.status.name())));
        }
        let buyer = ctx.sender;
        if buyer == l.provider {
            return Err(refuse(MarketError::Invalid(
                "a provider cannot order from its own listing".into(),
            )));
        }
        if price != l.terms.price {
            return Err(refuse(MarketError::Invalid(format!(
                "the listing's price is {}, not {price}",
                l.terms.price
            ))));
        }
        ctx.hold(&buyer, price)?;
        let now = ctx.env.height;
        let order = Order {
            id: ctx.tx_id,
            listing,
            buyer,
            provider: l.provider,
            price,
            placed: now,
            delivery_blocks: l.terms.delivery_blocks,
            state: OrderState::Funded(Funded {
                accept_by: now.saturating_add(self.params.accept_blocks),
            }),
        };
        l.orders += 1;
        ctx.put(&keys::listing(&listing), &l)?;
        ctx.put(&keys::traded(&buyer, &l.provider), &true)?;
        MarketModule::append(ctx, &keys::orders_of(&buyer), &order.id)?;
        MarketModule::append(ctx, &keys::orders_of(&l.provider), &order.id)?;
        self.save(ctx, &order)?;
        ctx.emit("order", &(order.id, order.state.name()));
        Ok(())
    }

    /// Stores an order and files it under its next deadline, if any.
    fn save(&self, ctx: Ctx<'_, '_, '_>, order: &Order) -> Result<()> {
        ctx.put(&keys::order(&order.id), order)?;
        if let Some(due) = order.state.due() {
            MarketModule::push(ctx, &keys::due(due), order.id)?;
        }
        Ok(())
    }

    /// Takes `action` on an order and moves its escrow as the machine says;
    /// returns a verdict's jury fee, still in custody, for the caller to pay.
    fn act(
        &self,
        ctx: Ctx<'_, '_, '_>,
        id: Hash,
        action: Action,
        actor: Option<Actor>,
    ) -> Result<Amount> {
        let mut order = MarketModule::order(ctx, &id)?;
        let actor = actor.unwrap_or_else(|| order.actor(&ctx.sender));
        let w = self.windows(order.delivery_blocks);
        let (state, money) = order
            .step(action, actor, ctx.env.height, &w)
            .map_err(refuse)?;
        let mut jury_fee = 0;
        match money {
            Money::Stay => {}
            Money::Refund(amount) => MarketModule::refund(ctx, &order, amount)?,
            Money::Pay {
                provider,
                commission,
            } => {
                ctx.release(&order.provider, provider)?;
                ctx.release_to_fee_pool(commission)?;
            }
            Money::Split {
                buyer,
                provider,
                commission,
                jury,
            } => {
                MarketModule::refund(ctx, &order, buyer)?;
                ctx.release(&order.provider, provider)?;
                ctx.release_to_fee_pool(commission)?;
                jury_fee = jury;
            }
        }
        order.state = state;
        self.save(ctx, &order)?;
        ctx.emit("order", &(order.id, order.state.name()));
        Ok(jury_fee)
    }

    /// Pays `amount` of an order's escrow back to its buyer: here if this is
    /// the buyer's home shard, else home through Atomix (a buyer from
    /// another shard funded the order through Atomix too). An order refunds
    /// once, so its id makes the transfer unique.
    fn refund(ctx: Ctx<'_, '_, '_>, order: &Order, amount: Amount) -> Result<()> {
        let home = ios_chain::shard::home_shard(&order.buyer, ctx.params.shards);
        if amount == 0 {
            Ok(())
        } else if ctx.params.shards == 0 || home == ctx.env.shard {
            ctx.release(&order.buyer, amount)
        } else {
            let mut salt = [0u8; 8];
            salt.copy_from_slice(&order.id.0[..8]);
            let salt = u64::from_be_bytes(salt);
            let x = ctx.send_across(home, order.buyer, amount, salt)?;
            ctx.emit("refund_sent", &(order.id, home, x));
            Ok(())
        }
    }

    /// Moves `who`'s reputation to the FTFS value `rep` by the change since
    /// the last FTFS value, so what lowered it meanwhile (missed proposals,
    /// slashing, unrevealed jury votes) is not undone.
    fn set_reputation(ctx: Ctx<'_, '_, '_>, who: &Address, rep: Ppm) -> Result<()> {
        let key = keys::ftfs_reputation(who);
        let old: Ppm = ctx.get(&key)?.unwrap_or(0);
        let mut a = ctx.account(who)?;
        let moved = (a.reputation as i64 + rep as i64 - old as i64).clamp(0, PPM as i64);
        a.reputation = moved as Ppm;
        ctx.set_account(who, &a);
        ctx.put(&key, &rep)
    }

    fn by_party(&self, ctx: Ctx<'_, '_, '_>, id: Hash, action: Action) -> Result<()> {
        self.act(ctx, id, action, None).map(|_| ())
    }

    /// The order `sender` may rate, the sender's side, and the block its
    /// commitment window closes.
    fn rateable(&self, ctx: &CallContext<'_, '_>, id: &Hash) -> Result<(Order, Side, Height)> {
        let order = MarketModule::order(ctx, id)?;
        let side = order.side_of(&ctx.sender).ok_or_else(|| {
            refuse(MarketError::NotAllowed {
                role: "the buyer or the provider",
                action: "rate an order",
            })
        })?;
        let since = order
            .state
            .rateable_since()
            .ok_or_else(|| refuse(MarketError::NotRateable))?;
        Ok((order, side, since.saturating_add(self.params.rating_blocks)))
    }

    fn commit_rating(&self, ctx: Ctx<'_, '_, '_>, id: Hash, commitment: Hash) -> Result<()> {
        let (order, side, commit_by) = self.rateable(ctx, &id)?;
        let now = ctx.env.height;
        let key = keys::rating(&order.id, side_byte(side));
        if ctx.get::<RatingRecord>(&key)?.is_some() {
            return Err(refuse(MarketError::AlreadyRated("committed")));
        }
        if now > commit_by {
            return Err(refuse(MarketError::TooLate {
                action: "rate",
                deadline: commit_by,
                now,
            }));
        }
        ctx.put(
            &key,
            &RatingRecord {
                commitment,
                committed: now,
                revealed: None,
            },
        )?;
        // Checked once the reveal window closes: withholding a sealed
        // rating (after reading the other side's, say) is not free.
        let after = commit_by
            .saturating_add(self.params.reveal_blocks)
            .saturating_add(1);
        let due = keys::rating_due(after);
        let mut sealed: Vec<(Hash, u8)> = ctx.get(&due)?.unwrap_or_default();
        sealed.push((order.id, side_byte(side)));
        ctx.put(&due, &sealed)?;
        ctx.emit("rating_committed", &(order.id, side));
        Ok(())
    }

    fn reveal_rating(
        &self,
        ctx: Ctx<'_, '_, '_>,
        id: Hash,
        rating: Rating,
        salt: [u8; 32],
    ) -> Result<()> {
        let (order, side, commit_by) = self.rateable(ctx, &id)?;
        let now = ctx.env.height;
        let key = keys::rating(&order.id, side_byte(side));
        let mut record: RatingRecord = ctx
            .get(&key)?
            .ok_or_else(|| refuse(MarketError::NotCommitted))?;
        if record.revealed.is_some() {
            return Err(refuse(MarketError::AlreadyRated("revealed")));
        }
        let other = match side {
            Side::Buyer => Side::Provider,
            Side::Provider => Side::Buyer,
        };
        let both = ctx
            .get::<RatingRecord>(&keys::rating(&order.id, side_byte(other)))?
            .is_some();
        if !both && now <= commit_by {
            // Double-blind: nothing is revealed while the other side may still commit.
            return Err(refuse(MarketError::TooEarly {
                action: "reveal before the other side commits",
                from: commit_by + 1,
                now,
            }));
        }
        let reveal_by = commit_by.saturating_add(self.params.reveal_blocks);
        if now > reveal_by {
            return Err(refuse(MarketError::TooLate {
                action: "reveal",
                deadline: reveal_by,
                now,
            }));
        }
        rating.validate().map_err(refuse)?;
        let rater = ctx.sender;
        if rating.commitment(&order.id, &rater.0, &salt) != record.commitment {
            return Err(refuse(MarketError::CommitmentMismatch));
        }
        let ratee = match side {
            Side::Buyer => order.provider,
            Side::Provider => order.buyer,
        };
        let p = &self.params.ftfs;
        let linked = rater == ratee
            || (ctx.get::<bool>(&keys::traded(&rater, &ratee))?.is_some()
                && ctx.get::<bool>(&keys::traded(&ratee, &rater))?.is_some());
        let pair_key = keys::pair(&rater, &ratee);
        let previous: u32 = ctx.get(&pair_key)?.unwrap_or(0);
        let mut rater_acct = ctx.account(&rater)?;
        let facts = RaterFacts {
            believability: rater_acct.believability(&ctx.params.believability),
            order_value: order.price,
            previous,
            linked,
        };
        let weight = ftfs::weight(&facts, p, &Defences::ALL);
        let mut tally: Tally = ctx.get(&keys::tally(&ratee))?.unwrap_or_default();
        tally.add(weight, &rating.scores);
        ctx.put(&keys::tally(&ratee), &tally)?;
        if side == Side::Buyer {
            let mut as_provider: Tally =
                ctx.get(&keys::provider_tally(&ratee))?.unwrap_or_default();
            as_provider.add(weight, &rating.scores);
            ctx.put(&keys::provider_tally(&ratee), &as_provider)?;
        }
        if weight > 0 {
            ctx.put(&pair_key, &previous.saturating_add(1))?;
        }
        MarketModule::set_reputation(ctx, &ratee, tally.reputation(p))?;
        // Read again: rater and ratee differ, but the rater's account must
        // not be written from a copy older than the ratee's write.
        rater_acct = ctx.account(&rater)?;
        // Servi as novel as the rating: nothing for a linked pair, less for
        // each repeat, so trading in a ring does not farm believability;
        // and in proportion to the order's value up to one value unit, so
        // farming it with the cheapest orders costs as much commission per
        // Servi as with real ones.
        let servi = if weight == 0 {
            0
        } else {
            let unit = self.params.ftfs.value_unit.max(1);
            let scaled = u128::from(self.params.servi_per_rating)
                * u128::from(order.price.min(unit))
                / u128::from(unit);
            scaled as u64 / (1 + previous as u64)
        };
        rater_acct.servi = rater_acct.servi.saturating_add(servi);
        ctx.set_account(&rater, &rater_acct);
        record.revealed = Some(Revealed {
            rating,
            weight,
            at: now,
            response: None,
        });
        ctx.put(&key, &record)?;
        ctx.emit("rating", &(order.id, side, ratee, weight));
        Ok(())
    }

    fn respond(&self, ctx: Ctx<'_, '_, '_>, id: Hash, text: String) -> Result<()> {
        ftfs::check_text("response", &text, ftfs::MAX_RESPONSE).map_err(refuse)?;
        let order = MarketModule::order(ctx, &id)?;
        // The rated side answers the other side's rating.
        let rated = order.side_of(&ctx.sender).ok_or_else(|| {
            refuse(MarketError::NotAllowed {
                role: "the rated side",
                action: "respond to a rating",
            })
        })?;
        let rater = match rated {
            Side::Buyer => Side::Provider,
            Side::Provider => Side::Buyer,
        };
        let key = keys::rating(&order.id, side_byte(rater));
        let mut record: RatingRecord = ctx.get(&key)?.ok_or_else(|| {
            refuse(MarketError::Invalid(
                "there is no rating to respond to".into(),
            ))
        })?;
        let Some(revealed) = record.revealed.as_mut() else {
            return Err(refuse(MarketError::Invalid(
                "the rating is not revealed yet".into(),
            )));
        };
        if revealed.response.is_some() {
            return Err(refuse(MarketError::AlreadyResponded));
        }
        revealed.response = Some(text);
        ctx.put(&key, &record)?;
        ctx.emit("response", &(order.id, rated));
        Ok(())
    }
}

/// Disputes and juries.
impl MarketModule {
    fn dispute_of(ctx: &CallContext<'_, '_>, order: &Hash) -> Result<Dispute> {
        ctx.get(&keys::dispute(order))?
            .ok_or_else(|| refuse(MarketError::UnknownDispute(order.to_string())))
    }

    fn open_dispute(&self, ctx: Ctx<'_, '_, '_>, id: Hash, case: Case) -> Result<()> {
        case.validate().map_err(refuse)?;
        let order = MarketModule::order(ctx, &id)?;
        let by_buyer = order.side_of(&ctx.sender) == Some(Side::Buyer);
        self.act(ctx, id, Action::Dispute, None)?;
        let d = Dispute {
            order: id,
            opened: ctx.env.height,
            opened_epoch: ctx.env.epoch,
            by_buyer,
            case,
            answer: None,
            round: 0,
            jurors: Vec::new(),
            commit_by: 0,
            reveal_by: 0,
        };
        ctx.put(&keys::dispute(&id), &d)?;
        MarketModule::push(ctx, keys::UNDRAWN, id)?;
        ctx.emit("dispute", &(id, d.by_buyer));
        Ok(())
    }

    fn answer(&self, ctx: Ctx<'_, '_, '_>, id: Hash, case: Case) -> Result<()> {
        case.validate().map_err(refuse)?;
        let order = MarketModule::order(ctx, &id)?;
        let mut d = MarketModule::dispute_of(ctx, &id)?;
        let answering = if d.by_buyer {
            Side::Provider
        } else {
            Side::Buyer
        };
        if order.side_of(&ctx.sender) != Some(answering) {
            return Err(refuse(MarketError::NotAllowed {
                role: "the other party",
                action: "answer a dispute",
            }));
        }
        if !matches!(order.state, OrderState::Disputed(_)) {
            return Err(refuse(MarketError::WrongState {
                action: "answer",
                state: order.state.name(),
            }));
        }
        if d.answer.is_some() {
            return Err(refuse(MarketError::Invalid(
                "the dispute was already answered".into(),
            )));
        }
        d.answer = Some(case);
        ctx.put(&keys::dispute(&id), &d)?;
        ctx.emit("dispute_answer", &id);
        Ok(())
    }

    fn jury_pool(&self, ctx: Ctx<'_, '_, '_>, join: bool) -> Result<()> {
        let mut pool: Vec<Address> = ctx.get(keys::JURY_POOL)?.unwrap_or_default();
        if join {
            let b = ctx
                .account(&ctx.sender)?
                .believability(&ctx.params.believability);
            if b < self.params.juror_floor {
                return Err(refuse(MarketError::Invalid(format!(
                    "a juror needs a believability of {} ppm; this account has {b}",
                    self.params.juror_floor
                ))));
            }
            if pool.len() >= MAX_JURY_POOL {
                return Err(refuse(MarketError::Invalid(format!(
                    "the jury pool is full ({MAX_JURY_POOL} accounts)"
                ))));
            }
        }
        match (pool.binary_search(&ctx.sender), join) {
            (Err(i), true) => pool.insert(i, ctx.sender),
            (Ok(i), false) => {
                pool.remove(i);
            }
            (Ok(_), true) => {
                return Err(refuse(MarketError::Invalid(
                    "already in the jury pool".into(),
                )))
            }
            (Err(_), false) => {
                return Err(refuse(MarketError::Invalid("not in the jury pool".into())))
            }
        }
        ctx.put(keys::JURY_POOL, &pool)?;
        ctx.emit("jury_pool", &(ctx.sender, join));
        Ok(())
    }

    fn jury_commit(&self, ctx: Ctx<'_, '_, '_>, id: Hash, commitment: Hash) -> Result<()> {
        let mut d = MarketModule::dispute_of(ctx, &id)?;
        let now = ctx.env.height;
        let (commit_by, sender) = (d.commit_by, ctx.sender);
        let j = d.juror_mut(&sender).map_err(refuse)?;
        if j.commitment.is_some() {
            return Err(refuse(MarketError::AlreadyVoted("committed")));
        }
        if now > commit_by {
            return Err(refuse(MarketError::TooLate {
                action: "commit a vote",
                deadline: commit_by,
                now,
            }));
        }
        j.commitment = Some(commitment);
        ctx.put(&keys::dispute(&id), &d)?;
        ctx.emit("jury_commit", &(id, sender));
        Ok(())
    }

    fn jury_reveal(
        &self,
        ctx: Ctx<'_, '_, '_>,
        id: Hash,
        share: Ppm,
        salt: [u8; 32],
    ) -> Result<()> {
        if share as u64 > PPM {
            return Err(refuse(MarketError::Invalid(format!(
                "a share of {share} ppm is over 1000000"
            ))));
        }
        let mut d = MarketModule::dispute_of(ctx, &id)?;
        let now = ctx.env.height;
        let all_committed = d.jurors.iter().all(|j| j.commitment.is_some());
        let (commit_by, reveal_by, round, sender) = (d.commit_by, d.reveal_by, d.round, ctx.sender);
        let j = d.juror_mut(&sender).map_err(refuse)?;
        let Some(commitment) = j.commitment else {
            return Err(refuse(MarketError::NotCommitted));
        };
        if j.vote.is_some() {
            return Err(refuse(MarketError::AlreadyVoted("revealed")));
        }
        if now <= commit_by && !all_committed {
            return Err(refuse(MarketError::TooEarly {
                action: "reveal a vote while jurors may still commit",
                from: commit_by + 1,
                now,
            }));
        }
        if now > reveal_by {
            return Err(refuse(MarketError::TooLate {
                action: "reveal a vote",
                deadline: reveal_by,
                now,
            }));
        }
        if jury::vote_commitment(&id, &sender, round, share, &salt) != commitment {
            return Err(refuse(MarketError::CommitmentMismatch));
        }
        j.vote = Some(share);
        ctx.put(&keys::dispute(&id), &d)?;
        ctx.emit("jury_reveal", &(id, sender));
        Ok(())
    }

    /// Draws juries for disputes opened (or redrawn) in an earlier epoch.
    fn draw_juries(&self, ctx: Ctx<'_, '_, '_>) -> Result<()> {
        let undrawn: Vec<Hash> = ctx.get(keys::UNDRAWN)?.unwrap_or_default();
        if undrawn.is_empty() {
            return Ok(());
        }
        let epoch = ctx.env.epoch;
        let (ready, waiting): (Vec<Hash>, Vec<Hash>) = undrawn.into_iter().partition(|id| {
            ctx.get::<Dispute>(&keys::dispute(id))
                .ok()
                .flatten()
                // Not the next epoch's randomness, which the beacon may have
                // made public before this shard switched: the one after.
                .is_some_and(|d| d.opened_epoch.saturating_add(2) <= epoch)
        });
        if ready.is_empty() {
            return Ok(());
        }
        ctx.put(keys::UNDRAWN, &waiting)?;
        let pool: Vec<Address> = ctx.get(keys::JURY_POOL)?.unwrap_or_default();
        let randomness: Hash = ctx.get(K_RANDOMNESS)?.unwrap_or_default();
        for id in ready {
            if let Err(e) = ctx.nested(|c| self.draw_one(c, id, &pool, &randomness)) {
                ctx.emit("settle_failed", &(id, e.to_string()));
            }
        }
        Ok(())
    }

    fn draw_one(
        &self,
        ctx: Ctx<'_, '_, '_>,
        id: Hash,
        pool: &[Address],
        randomness: &Hash,
    ) -> Result<()> {
        let (epoch, now) = (ctx.env.epoch, ctx.env.height);
        {
            let Some(mut d) = ctx.get::<Dispute>(&keys::dispute(&id))? else {
                return Ok(());
            };
            let order = MarketModule::order(ctx, &id)?;
            let mut candidates = Vec::new();
            for a in pool {
                if *a == order.buyer || *a == order.provider {
                    continue;
                }
                let b = ctx.account(a)?.believability(&ctx.params.believability);
                if b >= self.params.juror_floor {
                    candidates.push(*a);
                }
            }
            d.round = d.round.saturating_add(1);
            let drawn = jury::draw(
                &candidates,
                self.params.jury_size as usize,
                randomness,
                &id,
                d.round,
            );
            if drawn.is_empty() {
                // Nobody to draw: try again next epoch, up to the limit.
                if d.round >= self.params.max_draws {
                    self.settle_dispute(ctx, d)?;
                } else {
                    d.opened_epoch = epoch;
                    ctx.put(&keys::dispute(&id), &d)?;
                    MarketModule::push(ctx, keys::UNDRAWN, id)?;
                }
                return Ok(());
            }
            d.jurors = drawn
                .into_iter()
                .map(|address| Juror {
                    address,
                    commitment: None,
                    vote: None,
                })
                .collect();
            d.commit_by = now.saturating_add(self.params.jury_commit_blocks);
            d.reveal_by = d.commit_by.saturating_add(self.params.jury_reveal_blocks);
            ctx.put(&keys::dispute(&id), &d)?;
            MarketModule::push(ctx, &keys::jury_due(d.reveal_by + 1), id)?;
            let names: Vec<Address> = d.jurors.iter().map(|j| j.address).collect();
            ctx.emit("jury", &(id, d.round, names));
        }
        Ok(())
    }

    /// Ends a jury's reveal window: the verdict executed and the jurors
    /// paid, or, with too few votes, a new draw (an even split after
    /// `max_draws`).
    fn settle_dispute(&self, ctx: Ctx<'_, '_, '_>, mut d: Dispute) -> Result<()> {
        let id = d.order;
        // Drawn jurors who did not reveal lose reputation.
        for j in d.jurors.iter().filter(|j| j.vote.is_none()) {
            let mut a = ctx.account(&j.address)?;
            let keep = (PPM - self.params.no_reveal_penalty.min(PPM as Ppm) as u64) as u128;
            a.reputation = (a.reputation as u128 * keep / PPM as u128) as Ppm;
            ctx.set_account(&j.address, &a);
        }
        let (verdict, decided) = match jury::verdict(&d.jurors) {
            Some(v) => (v, true),
            // No jury decided, draw after draw: an even split (and no
            // verdict against anyone).
            None if d.round >= self.params.max_draws => (PPM as Ppm / 2, false),
            None => {
                // Too few revealed: a new jury from the next epoch's randomness.
                d.jurors.clear();
                d.opened_epoch = ctx.env.epoch;
                ctx.put(&keys::dispute(&id), &d)?;
                MarketModule::push(ctx, keys::UNDRAWN, id)?;
                ctx.emit("jury_redraw", &(id, d.round));
                return Ok(());
            }
        };
        let fee = self.act(ctx, id, Action::Verdict(verdict), Some(Actor::Chain))?;
        // A dispute the provider lost counts against it as the jurors'
        // one-star rating, weighed by the order's value and the share lost.
        if decided && verdict > 0 {
            let order = MarketModule::order(ctx, &id)?;
            let p = &self.params.ftfs;
            let revealed = d.jurors.iter().filter(|j| j.vote.is_some()).count() as u32;
            let w = ftfs::verdict_weight(order.price, verdict, revealed, p, &Defences::ALL);
            for key in [
                keys::tally(&order.provider),
                keys::provider_tally(&order.provider),
            ] {
                let mut t: Tally = ctx.get(&key)?.unwrap_or_default();
                t.add_verdict(w);
                ctx.put(&key, &t)?;
            }
            let t: Tally = ctx.get(&keys::tally(&order.provider))?.unwrap_or_default();
            MarketModule::set_reputation(ctx, &order.provider, t.reputation(p))?;
        }
        let agreeing: Vec<Address> = d
            .jurors
            .iter()
            .filter(|j| {
                j.vote
                    .is_some_and(|v| jury::agrees(v, verdict, self.params.agree_within))
            })
            .map(|j| j.address)
            .collect();
        let each = if agreeing.is_empty() {
            0
        } else {
            fee / agreeing.len() as Amount
        };
        for a in &agreeing {
            if each > 0 {
                ctx.release(a, each)?;
            }
            let mut acct = ctx.account(a)?;
            acct.servi = acct.servi.saturating_add(self.params.juror_servi);
            ctx.set_account(a, &acct);
        }
        let rest = fee - each * agreeing.len() as Amount;
        if rest > 0 {
            ctx.release_to_fee_pool(rest)?;
        }
        ctx.put(&keys::dispute(&id), &d)?;
        ctx.emit("verdict", &(id, verdict, agreeing));
        Ok(())
    }

    fn settle_deadlines(&self, ctx: Ctx<'_, '_, '_>) -> Result<()> {
        let h = ctx.env.height;
        let due: Vec<Hash> = ctx.get(&keys::due(h))?.unwrap_or_default();
        if due.is_empty() {
            return Ok(());
        }
        ctx.delete(&keys::due(h))?;
        for id in due {
            let Some(order) = ctx.get::<Order>(&keys::order(&id))? else {
                continue;
            };
            // Filed under the deadline of a state it has since left.
            if order.state.due().is_none_or(|d| d > h) {
                continue;
            }
            if let Err(e) = ctx.nested(|c| self.act(c, id, Action::Deadline, Some(Actor::Chain))) {
                ctx.emit("settle_failed", &(id, e.to_string()));
                MarketModule::push(ctx, &keys::due(h.saturating_add(RETRY_BLOCKS)), id)?;
            }
        }
        Ok(())
    }

    /// Raters who committed a rating whose reveal window closed at this
    /// height without revealing it lose `withheld_rating_penalty` of their
    /// reputation.
    fn settle_withheld(&self, ctx: Ctx<'_, '_, '_>) -> Result<()> {
        let due = keys::rating_due(ctx.env.height);
        let sealed: Vec<(Hash, u8)> = ctx.get(&due)?.unwrap_or_default();
        if sealed.is_empty() {
            return Ok(());
        }
        ctx.delete(&due)?;
        let keep = (PPM - u64::from(self.params.withheld_rating_penalty).min(PPM)) as u128;
        for (id, side) in sealed {
            let record: Option<RatingRecord> = ctx.get(&keys::rating(&id, side))?;
            let Some(order) = ctx.get::<Order>(&keys::order(&id))? else {
                continue;
            };
            if record.is_none_or(|r| r.revealed.is_some()) {
                continue;
            }
            let rater = if side == 0 {
                order.buyer
            } else {
                order.provider
            };
            let mut a = ctx.account(&rater)?;
            let before = a.reputation;
            a.reputation = (u128::from(a.reputation) * keep / PPM as u128) as Ppm;
            ctx.set_account(&rater, &a);
            ctx.emit("rating_withheld", &(id, side, rater, before - a.reputation));
        }
        Ok(())
    }

    fn settle_juries(&self, ctx: Ctx<'_, '_, '_>) -> Result<()> {
        let h = ctx.env.height;
        let due: Vec<Hash> = ctx.get(&keys::jury_due(h))?.unwrap_or_default();
        if due.is_empty() {
            return Ok(());
        }
        ctx.delete(&keys::jury_due(h))?;
        for id in due {
            let Some(d) = ctx.get::<Dispute>(&keys::dispute(&id))? else {
                continue;
            };
            if d.reveal_by.saturating_add(1) > h || d.jurors.is_empty() {
                continue;
            }
            if let Err(e) = ctx.nested(|c| self.settle_dispute(c, d)) {
                ctx.emit("settle_failed", &(id, e.to_string()));
                MarketModule::push(ctx, &keys::jury_due(h.saturating_add(RETRY_BLOCKS)), id)?;
            }
        }
        Ok(())
    }
}

impl Module for MarketModule {
    fn id(&self) -> ModuleId {
        MARKET_MODULE
    }

    fn name(&self) -> &'static str {
        NAME
    }

    fn execute(&self, ctx: &mut CallContext<'_, '_>, payload: &[u8]) -> Result<()> {
        let call: MarketCall =
            ios_chain::codec::decode("market call", payload, ios_chain::tx::MAX_TX_BYTES)?;
        match call {
            MarketCall::CreateListing(terms) => self.create_listing(ctx, terms),
            MarketCall::UpdateListing { listing, terms } => {
                self.update_listing(ctx, listing, terms)
            }
            MarketCall::SetListingStatus { listing, status } => {
                self.set_status(ctx, listing, status)
            }
            MarketCall::PlaceOrder { listing, price } => self.place(ctx, listing, price),
            MarketCall::Accept { order } => self.by_party(ctx, order, Action::Accept),
            MarketCall::Decline { order } => self.by_party(ctx, order, Action::Decline),
            MarketCall::Cancel { order } => self.by_party(ctx, order, Action::Cancel),
            MarketCall::Deliver { order, delivery } => {
                self.by_party(ctx, order, Action::Deliver(delivery))
            }
            MarketCall::Confirm { order } => self.by_party(ctx, order, Action::Confirm),
            MarketCall::CommitRating { order, commitment } => {
                self.commit_rating(ctx, order, commitment)
            }
            MarketCall::RevealRating {
                order,
                rating,
                salt,
            } => self.reveal_rating(ctx, order, rating, salt),
            MarketCall::Respond { order, text } => self.respond(ctx, order, text),
            MarketCall::Dispute { order, case } => self.open_dispute(ctx, order, case),
            MarketCall::Answer { order, case } => self.answer(ctx, order, case),
            MarketCall::JoinJuryPool => self.jury_pool(ctx, true),
            MarketCall::LeaveJuryPool => self.jury_pool(ctx, false),
            MarketCall::JuryCommit { order, commitment } => {
                self.jury_commit(ctx, order, commitment)
            }
            MarketCall::JuryReveal { order, share, salt } => {
                self.jury_reveal(ctx, order, share, salt)
            }
        }
    }

    /// Draws juries due, settles juries whose reveal window closed, and
    /// settles the orders whose deadline passed with this block.
    fn end_block(&self, ctx: &mut CallContext<'_, '_>) -> Result<()> {
        // Nothing here may stop the block (nor the chain): each part, and
        // each order in it, runs nested; a failure drops its writes, is
        // recorded as an event and is tried again later.
        for (part, r) in [
            ("draw", ctx.nested(|c| self.draw_juries(c))),
            ("juries", ctx.nested(|c| self.settle_juries(c))),
            ("deadlines", ctx.nested(|c| self.settle_deadlines(c))),
            ("withheld ratings", ctx.nested(|c| self.settle_withheld(c))),
        ] {
            if let Err(e) = r {
                ctx.emit("end_block_failed", &(part.to_string(), e.to_string()));
            }
        }
        Ok(())
    }
}
