//! The JSON shapes of the REST API, shared by the server and the typed
//! client. Amounts are strings of base units (1 IOST = 10^8), so that no
//! JSON reader loses precision; addresses are bech32 (`ios1...`); hashes
//! and byte strings are lowercase hex.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every error: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable (`not_found`, `bad_request`, `bad_nonce`, ...).
    pub code: String,
    pub message: String,
}

/// The network as this node sees it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ChainStatus {
    pub chain_id: String,
    /// Account shards (the beacon, shard 0, comes on top).
    pub shards: u16,
    /// The newest epoch this node's beacon light client knows.
    pub epoch: u64,
    pub peer_id: String,
    pub peers: usize,
    /// Transactions in blocks this node finalized since it started (all shards).
    pub finalized_txs: u64,
    /// Fast syncs this node completed since it started.
    pub fast_syncs: u64,
    /// Shards this node is fast-syncing now.
    pub syncing: Vec<u16>,
    /// The shards this node runs.
    pub shard_status: Vec<ShardStatus>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ShardStatus {
    pub shard: u16,
    /// Last finalized height.
    pub height: u64,
    /// Hash of the last finalized block.
    pub head: String,
    pub state_root: String,
    /// The committee epoch this shard is in.
    pub epoch: u64,
    /// The committee's members (bech32).
    pub committee: Vec<String>,
    /// Transactions waiting in this node's pool for the shard.
    pub mempool: usize,
    /// Unix milliseconds of the last finalized block.
    pub time_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AccountView {
    pub address: String,
    /// The shard that holds the account.
    pub shard: u16,
    /// Spendable IOST, base units.
    pub balance: String,
    /// Non-transferable contribution credit.
    pub servi: u64,
    /// Next nonce the chain expects (committed).
    pub nonce: u64,
    /// Nonce for a new transaction: after the committed one and any pooled here.
    pub next_nonce: u64,
    /// Bonded IOST, base units.
    pub stake: String,
    pub unbonding: String,
    /// Reputation, parts per million.
    pub reputation: u32,
    pub jailed: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BlockView {
    pub shard: u16,
    pub height: u64,
    pub hash: String,
    pub prev: String,
    pub epoch: u64,
    pub round: u32,
    pub proposer: String,
    pub time_ms: u64,
    pub state_root: String,
    /// Commit certificate signers.
    pub signers: usize,
    pub txs: Vec<BlockTx>,
    /// What the block's own end-of-block work did (deadlines settled,
    /// refunds sent across shards): its events' kinds, in order.
    #[serde(default)]
    pub block_events: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BlockTx {
    pub id: String,
    pub sender: String,
    /// `transfer`, `stake`, `atomix_lock`, ...
    pub kind: String,
    /// `success` or the failure code.
    pub status: String,
}

/// What a transaction does.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CallRequest {
    /// Sends IOST (or, refused by the chain, Servi) to `to`.
    Transfer {
        to: String,
        /// Base units.
        amount: String,
        /// `iost` (default).
        #[serde(default)]
        token: Option<String>,
    },
    /// Bonds IOST (validators; on the beacon).
    Stake { amount: String },
    /// Starts unbonding IOST.
    Unstake { amount: String },
    /// Stores an object uploaded to this gateway (`POST
    /// /api/v1/store/uploads`) for `epochs` epochs: its layout goes into a
    /// HUDS deal, its cost into escrow.
    StoreDeal {
        /// The upload's content id (hex).
        content: String,
        epochs: u64,
        /// Most base units per GiB-epoch to pay (default 0.01 IOST);
        /// providers asking more are not chosen.
        #[serde(default)]
        price_per_gib_epoch: Option<String>,
        /// What the object is; public objects are found by search.
        #[serde(default)]
        meta: ObjectMetaJson,
    },
    /// A market call (listings, orders, ratings, disputes), executed on
    /// the sender's home shard.
    Market { call: MarketCallJson },
}

/// An object's metadata, on chain in the clear (a private object's owner
/// says as little as they like). Bounds: name 256 bytes, mime 128, 16 tags
/// of 64 without spaces, description 4096.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ObjectMetaJson {
    #[serde(default)]
    pub name: String,
    /// Media type, e.g. `text/plain`.
    #[serde(default)]
    pub mime: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub description: String,
    /// Listed in search.
    #[serde(default)]
    pub public: bool,
}

impl From<ObjectMetaJson> for ios_storage::module::ObjectMeta {
    fn from(m: ObjectMetaJson) -> Self {
        ios_storage::module::ObjectMeta {
            name: m.name,
            mime: m.mime,
            tags: m.tags,
            description: m.description,
            public: m.public,
        }
    }
}

impl From<&ios_storage::module::ObjectMeta> for ObjectMetaJson {
    fn from(m: &ios_storage::module::ObjectMeta) -> Self {
        ObjectMetaJson {
            name: m.name.clone(),
            mime: m.mime.clone(),
            tags: m.tags.clone(),
            description: m.description.clone(),
            public: m.public,
        }
    }
}

/// Ask the node to build a transaction's canonical bytes.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BuildTxRequest {
    pub sender: String,
    /// Default: the sender's next nonce as this node sees it.
    #[serde(default)]
    pub nonce: Option<u64>,
    /// Base units; default: the minimum for the transaction's size.
    #[serde(default)]
    pub fee: Option<String>,
    /// Blocks the transaction stays valid for (default 600).
    #[serde(default)]
    pub expires_in: Option<u64>,
    pub call: CallRequest,
}

/// A transaction ready to sign: sign `signing_hash` (32 bytes, ed25519)
/// and submit `tx` with the signature.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BuiltTx {
    /// Hex of the canonical (borsh) transaction.
    pub tx: String,
    /// Hex of the digest to sign; also the transaction's id.
    pub signing_hash: String,
    /// The shard it will execute on.
    pub shard: u16,
    pub nonce: u64,
    pub fee: String,
    /// What it does, in words, to show before signing.
    pub summary: String,
    /// For a transfer to another shard (an Atomix lock): the cross-shard
    /// transfer's id, to follow at `/api/v1/atomix/{id}`.
    pub atomix: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SubmitTxRequest {
    /// Hex of the canonical transaction (as built).
    pub tx: String,
    /// Hex of the 64-byte ed25519 signature of its signing hash.
    pub signature: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SubmittedTx {
    pub id: String,
    pub shard: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TxState {
    /// Waiting in the pool of the node asked.
    Pending,
    /// In a finalized block, executed successfully.
    Finalized,
    /// In a finalized block; the call failed (fee and nonce still count).
    Failed,
    /// Neither pooled here nor in a finalized block this node knows.
    Unknown,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TxStatus {
    pub id: String,
    pub state: TxState,
    pub shard: Option<u16>,
    pub height: Option<u64>,
    pub index: Option<u32>,
    /// For a failed call: its code and message.
    pub error: Option<ErrorDetail>,
    /// Events the transaction emitted (`kind` only).
    pub events: Vec<String>,
}

/// A cross-shard transfer, as the node's relayer follows it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AtomixView {
    pub id: String,
    /// `locking`, `committed`, `rejected`, `done` (paid, locks released)
    /// or `refunded`.
    pub state: String,
    pub detail: String,
    /// `done` or `refunded`.
    pub terminal: bool,
    pub input_shards: Vec<u16>,
    pub output_shard: u16,
    pub to: String,
    /// Base units.
    pub amount: String,
    /// Output-shard height after which it may be aborted.
    pub expires_at: u64,
}

/// Paging of a list: how many (default and bounds per route).
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
pub struct LimitQuery {
    #[serde(default)]
    pub limit: Option<usize>,
}

/// One epoch of the beacon.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct EpochView {
    pub epoch: u64,
    /// The epoch's randomness (hex), from the PVSS round that closed the last one.
    pub randomness: String,
    /// Every shard's committee, beacon first.
    pub committees: Vec<Vec<String>>,
}

/// A validator on the beacon.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ValidatorView {
    pub address: String,
    /// Base units.
    pub stake: String,
    pub unbonding: String,
    pub believability: u32,
    pub reputation: u32,
    pub jailed: bool,
    /// Shards whose committee it sits on in the latest epoch (0: the beacon).
    pub committees: Vec<u16>,
}

/// An upload the gateway encoded and holds until its deal is on chain:
/// make the deal (`StoreDeal`) and the gateway sends the fragments to the
/// providers the chain places them on.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StagedUpload {
    /// blake3 of the bytes (hex): the object's address.
    pub content: String,
    pub size: u64,
    pub segments: usize,
    /// Reed-Solomon data and parity fragments per segment.
    pub data: u8,
    pub parity: u8,
    pub segment_bytes: u32,
    /// Bytes stored over all fragments (what a deal pays for).
    pub stored_bytes: u64,
}

/// A stored object, as its deal on chain says, with the gateway's upload
/// progress while it still pushes fragments.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ObjectView {
    pub content: String,
    pub shard: u16,
    pub owner: String,
    pub meta: ObjectMetaJson,
    pub size: u64,
    pub segments: usize,
    pub data: u8,
    pub parity: u8,
    /// Fragments in all (segments x (data + parity)).
    pub fragments: usize,
    /// Fragments whose providers signed a receipt.
    pub receipted: usize,
    /// Fragments declared lost (after repeated failed audits or a missing
    /// receipt) and not placed anew.
    pub lost: usize,
    /// Fragments placed anew on other providers after they were lost.
    pub repairs: u64,
    /// Who holds each fragment: `placement[segment][index]` (provider
    /// account addresses on the deal's shard).
    pub placement: Vec<Vec<String>>,
    pub start_epoch: u64,
    /// The first epoch not paid for.
    pub end_epoch: u64,
    /// Base units left in escrow.
    pub escrow: String,
    pub price_per_gib_epoch: String,
    /// While the gateway pushes the fragments: how far it is.
    #[serde(default)]
    pub upload: Option<UploadProgress>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct UploadProgress {
    pub state: String,
    pub total: usize,
    pub pushed: usize,
    pub errors: Vec<String>,
}

/// A search of public objects (`GET /api/v1/store/search`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
pub struct SearchParams {
    /// Words to find in names, descriptions, tags and the text of small
    /// text objects (`"a phrase"`, `-not`; empty: every public object).
    #[serde(default)]
    pub q: String,
    /// Only this media type.
    pub mime: Option<String>,
    /// Only objects with every one of these tags (comma-separated).
    pub tags: Option<String>,
    /// Only this owner's objects (address).
    pub owner: Option<String>,
    pub min_size: Option<u64>,
    pub max_size: Option<u64>,
    /// relevance (default), newest, oldest, largest, smallest.
    pub sort: Option<String>,
    #[serde(default)]
    pub offset: usize,
    /// Hits per page (default 20, at most 100).
    pub limit: Option<usize>,
}

/// One public object found by search.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SearchHit {
    pub content: String,
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    pub mime: String,
    pub owner: String,
    pub size: u64,
    /// Unix ms of the block that made its deal.
    pub created: u64,
    /// Part of the description or text with the matched words in `<b>`
    /// (HTML-escaped otherwise).
    pub snippet: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SearchResponse {
    /// Matches in all (not only this page).
    pub total: usize,
    pub hits: Vec<SearchHit>,
    /// Last block the index has read, per account shard (objects stored
    /// after it are not found yet).
    pub indexed_heights: std::collections::BTreeMap<String, u64>,
    /// Small text objects whose text is still being fetched from providers.
    pub texts_pending: usize,
}

/// A storage provider on one shard.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ProviderView {
    pub address: String,
    pub shard: u16,
    pub peer_id: String,
    pub addrs: Vec<String>,
    pub capacity: u64,
    /// Bytes placed on it by live deals.
    pub promised: u64,
    /// Bytes of fragments it holds (receipted).
    pub held_bytes: u64,
    pub held_fragments: usize,
    pub price_per_gib_epoch: String,
    pub stake: String,
    pub audits_passed: u64,
    pub audits_failed: u64,
    pub strikes: u64,
    /// Its last audit failed: no new fragments go to it until one passes.
    pub failing: bool,
    pub iost_earned: String,
    pub servi_earned: u64,
}

// ---- market ------------------------------------------------------------

/// A listing's terms. Bounds: title 128 bytes on one line, category 64 of
/// lowercase letters, digits, `-` and `/`; price at least the market's
/// minimum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ListingTermsJson {
    pub title: String,
    pub category: String,
    /// Base units.
    pub price: String,
    /// Blocks the provider has to deliver once it accepts.
    pub delivery_blocks: u64,
    /// The listing document (description, images, terms): a HUDS content id.
    pub doc: String,
}

/// One to five stars in four respects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScoresJson {
    pub overall: u8,
    pub quality: u8,
    pub communication: u8,
    pub timeliness: u8,
}

/// A statement and HUDS objects as evidence (at most 8).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CaseJson {
    pub statement: String,
    #[serde(default)]
    pub evidence: Vec<String>,
}

/// A market call; ids are hex (listing and order ids are the ids of the
/// transactions that created them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MarketCallJson {
    CreateListing(ListingTermsJson),
    UpdateListing {
        listing: String,
        terms: ListingTermsJson,
    },
    /// `active`, `paused` or `closed` (final).
    SetListingStatus {
        listing: String,
        status: String,
    },
    /// `price` must be the listing's current price (base units).
    PlaceOrder {
        listing: String,
        price: String,
    },
    Accept {
        order: String,
    },
    Decline {
        order: String,
    },
    Cancel {
        order: String,
    },
    /// `delivery`: a HUDS content id, encrypted to the buyer.
    Deliver {
        order: String,
        delivery: String,
    },
    Confirm {
        order: String,
    },
    /// `commitment`: hex of `Rating::commitment(order, rater, salt)`.
    CommitRating {
        order: String,
        commitment: String,
    },
    /// `salt`: the 32 bytes (hex) the commitment was made with.
    RevealRating {
        order: String,
        scores: ScoresJson,
        #[serde(default)]
        comment: String,
        salt: String,
    },
    Respond {
        order: String,
        text: String,
    },
    Dispute {
        order: String,
        case: CaseJson,
    },
    Answer {
        order: String,
        case: CaseJson,
    },
    JoinJuryPool,
    LeaveJuryPool,
    /// `commitment`: hex of `jury::vote_commitment(order, juror, round, share, salt)`.
    JuryCommit {
        order: String,
        commitment: String,
    },
    /// `share`: the buyer's share of the price in ppm (0 to 1000000).
    JuryReveal {
        order: String,
        share: u32,
        salt: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ListingView {
    pub id: String,
    pub shard: u16,
    pub provider: String,
    pub title: String,
    pub category: String,
    /// Base units.
    pub price: String,
    pub delivery_blocks: u64,
    pub doc: String,
    /// `active`, `paused` or `closed`.
    pub status: String,
    pub created: u64,
    pub updated: u64,
    pub orders: u64,
    /// The provider's Bayesian score, thousandths of a star.
    pub provider_score_milli: u32,
    /// The provider's revealed ratings.
    pub provider_ratings: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RatingView {
    /// The side that rated: `buyer` (of the provider) or `provider` (of the buyer).
    pub by: String,
    pub committed: u64,
    pub revealed: bool,
    #[serde(default)]
    pub scores: Option<ScoresJson>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub weight: Option<u64>,
    #[serde(default)]
    pub response: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OrderView {
    pub id: String,
    pub shard: u16,
    pub listing: String,
    pub buyer: String,
    pub provider: String,
    /// Base units held in escrow until the order ends.
    pub price: String,
    pub placed: u64,
    /// funded, accepted, declined, expired, cancelled, late, delivered,
    /// completed, disputed or resolved.
    pub state: String,
    /// The block from which the order moves by itself (expires, is late,
    /// completes), while it can.
    #[serde(default)]
    pub due: Option<u64>,
    #[serde(default)]
    pub delivery: Option<String>,
    /// A resolved order: the buyer's share (ppm).
    #[serde(default)]
    pub buyer_share: Option<u32>,
    /// Last block to commit a rating, once the order can be rated.
    #[serde(default)]
    pub rate_by: Option<u64>,
    pub ratings: Vec<RatingView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JurorView {
    pub address: String,
    pub committed: bool,
    #[serde(default)]
    pub vote: Option<u32>,
}

/// Whose jury duties to list.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::IntoParams)]
pub struct JurorQuery {
    /// A juror's bech32 address.
    pub juror: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DisputeView {
    pub order: String,
    /// `buyer` or `provider`.
    pub opened_by: String,
    pub opened: u64,
    pub statement: String,
    pub evidence: Vec<String>,
    #[serde(default)]
    pub answer: Option<CaseJson>,
    /// Draws so far (0: waiting for the next epoch's randomness).
    pub round: u8,
    pub jurors: Vec<JurorView>,
    pub commit_by: u64,
    pub reveal_by: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReputationView {
    pub address: String,
    pub shard: u16,
    /// Revealed ratings received.
    pub ratings: u32,
    /// Overall, quality, communication, timeliness: Bayesian averages in
    /// thousandths of a star.
    pub scores_milli: [u32; 4],
    /// Ratings by overall stars, 1 to 5.
    pub histogram: [u32; 5],
    /// Reputation (ppm), which feeds believability.
    pub reputation: u32,
    pub believability: u32,
    pub servi: u64,
    pub trust: TrustView,
    /// Whether the account offers to serve on juries.
    #[serde(default)]
    pub jury_pool: bool,
}

/// An account's global trust: EigenTrust over every revealed rating and
/// verdict, from the genesis' pre-trusted accounts (a gateway's derived
/// view, computed again a few seconds after ratings come in).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TrustView {
    pub address: String,
    /// Its share of all trust, ppm.
    pub trust_ppm: u64,
    /// Its place by trust (1 = most trusted), if it has any.
    #[serde(default)]
    pub place: Option<u64>,
    /// Accounts with any trust.
    pub trusted_accounts: u64,
    pub pre_trusted: bool,
    /// Ratings and verdicts it was computed from.
    pub ratings: u64,
    /// Each shard's height it was computed at (empty: not computed yet).
    pub heights: std::collections::BTreeMap<u16, u64>,
}

/// `GET /market/trust`: how many of the most trusted accounts.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
pub struct TrustQuery {
    /// 1 to 200 (default 20).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// `GET /market/trust`: the most trusted accounts.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TrustList {
    pub accounts: Vec<TrustView>,
}

/// `GET /market/listings` and `/market/orders`: whose.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
pub struct PartyQuery {
    /// bech32 address.
    pub of: String,
    /// Newest first: skip this many.
    #[serde(default)]
    pub offset: usize,
    /// At most this many (default 50, at most 200).
    pub limit: Option<usize>,
}

impl PartyQuery {
    pub const MAX_LIMIT: usize = 200;
}

/// A search of active listings (`GET /api/v1/market/search`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
pub struct ListingSearchParams {
    /// Words to find in titles, categories and listing descriptions
    /// (empty: every active listing).
    #[serde(default)]
    pub q: String,
    /// This category or any under it (`design` finds `design/logo`).
    pub category: Option<String>,
    /// Only this provider's listings (address).
    pub provider: Option<String>,
    /// Base units.
    pub min_price: Option<u64>,
    pub max_price: Option<u64>,
    /// relevance (default), newest, price_low, price_high, reputation.
    pub sort: Option<String>,
    #[serde(default)]
    pub offset: usize,
    /// Hits per page (default 20, at most 100).
    pub limit: Option<usize>,
}

/// One active listing found by search.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ListingHit {
    pub id: String,
    pub shard: u16,
    pub provider: String,
    pub title: String,
    pub category: String,
    /// The listing document's description, when it is a public object.
    pub description: String,
    /// Base units.
    pub price: String,
    pub delivery_blocks: u64,
    pub provider_score_milli: u64,
    pub provider_ratings: u64,
    /// The provider's global trust (EigenTrust), ppm of the whole.
    pub provider_trust_ppm: u64,
    /// What `sort=reputation` ranks by: the score, of which the lead over
    /// the prior counts as far as global trust backs it.
    pub rank_milli: u64,
    /// The block it was listed in.
    pub created: u64,
    pub doc: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ListingSearchResponse {
    /// Matches in all (not only this page).
    pub total: usize,
    pub hits: Vec<ListingHit>,
    /// How far the catalog has read each shard (a listing made after
    /// that is not found yet).
    pub indexed_heights: std::collections::BTreeMap<String, u64>,
}
