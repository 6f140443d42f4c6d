//! Market routes: listings, orders, disputes and reputation as the chain
//! holds them, and the conversion of `MarketCallJson` into the module's
//! calls (with the readable summary a signer is shown).
//!
//! Listing and order ids do not name their shard: a gateway (which runs
//! every shard) looks on each account shard in turn.

use crate::api::{
    nonce_for, parse_address, parse_hash, parse_units, replica, ApiError, Gateway, Routed,
    ATOMIX_EXPIRY_BLOCKS,
};
use crate::store::parse_cid;
use crate::types::{
    CaseJson, DisputeView, JurorQuery, JurorView, ListingHit, ListingSearchParams,
    ListingSearchResponse, ListingTermsJson, ListingView, MarketCallJson, OrderView, PartyQuery,
    RatingView, ReputationView, ScoresJson, TrustList, TrustQuery, TrustView,
};
use actix_web::web;
use ios_chain::atomix::{CrossInput, CrossTransfer};
use ios_chain::committee::read_account;
use ios_chain::crypto::Address;
use ios_chain::hash::Hash;
use ios_chain::ledger::{LedgerCall, LedgerModule};
use ios_chain::replica::Replica;
use ios_chain::shard::BEACON;
use ios_chain::types::{format_iost, ShardId};
use ios_market::ftfs::{Rating, Scores, Tally};
use ios_market::jury::{Case, Dispute};
use ios_market::module::{
    keys, list, Listing, ListingStatus, ListingTerms, MarketCall, MarketGenesis, MarketParams,
    RatingRecord, Subject, CROSS_SHARD_FEE_BYTES,
};
use ios_market::order::{Order, OrderState};
use ios_node::node::View;
use ios_node::trust::Ranking;

type ApiResult<T> = Result<web::Json<T>, ApiError>;

pub fn configure(scope: &mut web::ServiceConfig) {
    scope
        .route("/market/search", web::get().to(search))
        .route("/market/listings", web::get().to(listings))
        .route("/market/listings/{id}", web::get().to(listing))
        .route("/market/orders", web::get().to(orders))
        .route("/market/orders/{id}", web::get().to(order))
        .route("/market/disputes", web::get().to(disputes))
        .route("/market/disputes/{order}", web::get().to(dispute))
        .route("/market/reputation/{address}", web::get().to(reputation))
        .route("/market/trust", web::get().to(trust));
}

fn parse_salt(s: &str) -> Result<[u8; 32], ApiError> {
    Ok(parse_hash("salt", s)?.0)
}

fn terms(t: &ListingTermsJson) -> Result<ListingTerms, ApiError> {
    let terms = ListingTerms {
        title: t.title.clone(),
        category: t.category.clone(),
        price: parse_units("price", &t.price)?,
        delivery_blocks: t.delivery_blocks,
        doc: parse_cid("doc", &t.doc)?,
    };
    Ok(terms)
}

fn case(c: &CaseJson) -> Result<Case, ApiError> {
    let case = Case {
        statement: c.statement.clone(),
        evidence: c
            .evidence
            .iter()
            .map(|e| parse_cid("evidence", e))
            .collect::<Result<_, _>>()?,
    };
    case.validate()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(case)
}

fn scores(s: &ScoresJson) -> Scores {
    Scores {
        overall: s.overall,
        quality: s.quality,
        communication: s.communication,
        timeliness: s.timeliness,
    }
}

fn scores_json(s: &Scores) -> ScoresJson {
    ScoresJson {
        overall: s.overall,
        quality: s.quality,
        communication: s.communication,
        timeliness: s.timeliness,
    }
}

/// The module call a JSON call stands for, checked as far as it can be
/// without state, and a one-line summary of what signing it does.
pub fn market_call(c: &MarketCallJson) -> Result<(MarketCall, String), ApiError> {
    let order = |s: &str| parse_hash("order", s);
    Ok(match c {
        MarketCallJson::CreateListing(t) => {
            let t = terms(t)?;
            let what = format!(
                "list {:?} in {} at {}, delivered within {} blocks",
                t.title,
                t.category,
                format_iost(t.price),
                t.delivery_blocks
            );
            (MarketCall::CreateListing(t), what)
        }
        MarketCallJson::UpdateListing { listing, terms: t } => {
            let listing = parse_hash("listing", listing)?;
            let t = terms(t)?;
            let what = format!(
                "change listing {listing} to {:?} at {}",
                t.title,
                format_iost(t.price)
            );
            (MarketCall::UpdateListing { listing, terms: t }, what)
        }
        MarketCallJson::SetListingStatus { listing, status } => {
            let listing = parse_hash("listing", listing)?;
            let status = match status.as_str() {
                "active" => ListingStatus::Active,
                "paused" => ListingStatus::Paused,
                "closed" => ListingStatus::Closed,
                s => {
                    return Err(ApiError::bad_request(format!(
                        "status {s:?}: active, paused or closed"
                    )))
                }
            };
            let what = format!("mark listing {listing} {}", status.name());
            (MarketCall::SetListingStatus { listing, status }, what)
        }
        MarketCallJson::PlaceOrder { listing, price } => {
            let listing = parse_hash("listing", listing)?;
            let price = parse_units("price", price)?;
            let what = format!(
                "order from listing {listing}: {} into escrow until the order ends",
                format_iost(price)
            );
            (MarketCall::PlaceOrder { listing, price }, what)
        }
        MarketCallJson::Accept { order: o } => {
            let o = order(o)?;
            (MarketCall::Accept { order: o }, format!("accept order {o}"))
        }
        MarketCallJson::Decline { order: o } => {
            let o = order(o)?;
            (
                MarketCall::Decline { order: o },
                format!("decline order {o} (the buyer is refunded)"),
            )
        }
        MarketCallJson::Cancel { order: o } => {
            let o = order(o)?;
            (
                MarketCall::Cancel { order: o },
                format!("cancel accepted order {o} (the buyer is refunded)"),
            )
        }
        MarketCallJson::Deliver { order: o, delivery } => {
            let o = order(o)?;
            let delivery = parse_cid("delivery", delivery)?;
            (
                MarketCall::Deliver { order: o, delivery },
                format!("deliver {delivery} for order {o}"),
            )
        }
        MarketCallJson::Confirm { order: o } => {
            let o = order(o)?;
            (
                MarketCall::Confirm { order: o },
                format!("confirm order {o}: the provider is paid from escrow"),
            )
        }
        MarketCallJson::CommitRating {
            order: o,
            commitment,
        } => {
            let o = order(o)?;
            let commitment = parse_hash("commitment", commitment)?;
            (
                MarketCall::CommitRating {
                    order: o,
                    commitment,
                },
                format!("commit a sealed rating for order {o}"),
            )
        }
        MarketCallJson::RevealRating {
            order: o,
            scores: s,
            comment,
            salt,
        } => {
            let o = order(o)?;
            let rating = Rating {
                scores: scores(s),
                comment: comment.clone(),
            };
            rating
                .validate()
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            let what = format!(
                "reveal your rating of order {o}: {}/5 overall",
                rating.scores.overall
            );
            (
                MarketCall::RevealRating {
                    order: o,
                    rating,
                    salt: parse_salt(salt)?,
                },
                what,
            )
        }
        MarketCallJson::Respond { order: o, text } => {
            let o = order(o)?;
            ios_market::ftfs::check_text("response", text, ios_market::ftfs::MAX_RESPONSE)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            (
                MarketCall::Respond {
                    order: o,
                    text: text.clone(),
                },
                format!("respond publicly to the rating on order {o}"),
            )
        }
        MarketCallJson::Dispute { order: o, case: c } => {
            let o = order(o)?;
            (
                MarketCall::Dispute {
                    order: o,
                    case: case(c)?,
                },
                format!("dispute order {o} (a jury decides the buyer's share)"),
            )
        }
        MarketCallJson::Answer { order: o, case: c } => {
            let o = order(o)?;
            (
                MarketCall::Answer {
                    order: o,
                    case: case(c)?,
                },
                format!("answer the dispute over order {o}"),
            )
        }
        MarketCallJson::JoinJuryPool => (
            MarketCall::JoinJuryPool,
            "offer to serve on juries".to_string(),
        ),
        MarketCallJson::LeaveJuryPool => {
            (MarketCall::LeaveJuryPool, "leave the jury pool".to_string())
        }
        MarketCallJson::JuryCommit {
            order: o,
            commitment,
        } => {
            let o = order(o)?;
            let commitment = parse_hash("commitment", commitment)?;
            (
                MarketCall::JuryCommit {
                    order: o,
                    commitment,
                },
                format!("commit a sealed jury vote on order {o}"),
            )
        }
        MarketCallJson::JuryReveal {
            order: o,
            share,
            salt,
        } => {
            let o = order(o)?;
            if *share > 1_000_000 {
                return Err(ApiError::bad_request(format!(
                    "share is in ppm, 0 to 1000000, got {share}"
                )));
            }
            (
                MarketCall::JuryReveal {
                    order: o,
                    share: *share,
                    salt: parse_salt(salt)?,
                },
                format!(
                    "reveal your jury vote on order {o}: {}.{}% to the buyer",
                    share / 10_000,
                    share % 10_000 / 1_000
                ),
            )
        }
    })
}

/// What a market call names in HUDS.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Object {
    ListingDoc,
    Delivery,
}

/// That `cid` is a live HUDS object of `sender`'s, public for a listing
/// document (customers read it, search indexes its description) and not
/// public for a delivery (encrypted to the buyer by the client). The chain
/// takes any content id; the gateway that builds the transaction checks,
/// and a delivery that is not what was ordered is what disputes are for.
fn check_object(
    v: &View<'_>,
    sender: &Address,
    cid: &ios_storage::ContentId,
    what: Object,
) -> Result<(), ApiError> {
    let name = match what {
        Object::ListingDoc => "the listing document",
        Object::Delivery => "the delivery",
    };
    let how = match what {
        Object::ListingDoc => "`ios store put FILE --from KEY`, or `ios market create --doc-file FILE`",
        Object::Delivery => "`ios store put FILE --private --reader BUYER --from KEY`, or `ios market deliver --file FILE`",
    };
    let Some((_, r, deal)) =
        find::<ios_storage::module::Deal>(v, &ios_storage::module::keys::deal(cid))?
    else {
        return Err(ApiError::bad_request(format!(
            "{name} {cid} is not stored in HUDS: store it first ({how})"
        )));
    };
    if deal.owner != *sender {
        return Err(ApiError::bad_request(format!(
            "{name} {cid} is {}'s object, not the sender's",
            deal.owner
        )));
    }
    if deal.end_epoch <= r.committee().epoch {
        return Err(ApiError::bad_request(format!(
            "{name} {cid} is no longer stored: its deal ended at epoch {}",
            deal.end_epoch
        )));
    }
    match what {
        Object::ListingDoc if !deal.meta.public => Err(ApiError::bad_request(format!(
            "{name} {cid} is private or unlisted: customers must be able to read it"
        ))),
        Object::Delivery if deal.meta.public => Err(ApiError::bad_request(format!(
            "{name} {cid} is public: a delivery is encrypted to the buyer ({how})"
        ))),
        _ => Ok(()),
    }
}

/// The market's parameters in this network's genesis.
pub fn market_params(v: &View<'_>) -> MarketParams {
    MarketGenesis::of(v.genesis)
        .map(|g| g.params)
        .unwrap_or_default()
}

/// Where a market call runs: on the shard of the listing or order it acts
/// on, else the sender's home shard. An order from a listing on another
/// shard is an Atomix lock on the buyer's home shard carrying the order:
/// the listing's shard credits the buyer and places the order in one step,
/// or refuses both and the lock is refunded. The transfer also brings
/// [`CROSS_SHARD_FEE_BYTES`] worth of minimum fees, so the buyer can pay
/// for its later moves on the order's shard; the order's id is the
/// transfer's id.
pub fn route(
    v: &View<'_>,
    home: ShardId,
    sender: Address,
    nonce: Option<u64>,
    call: MarketCall,
    what: String,
) -> Result<Routed, ApiError> {
    let shard = match call.subject() {
        Subject::Sender => home,
        Subject::Listing(id) => find::<Listing>(v, &keys::listing(&id))?
            .map(|(s, _, _)| s)
            .ok_or_else(|| ApiError::not_found(format!("no listing {id}")))?,
        Subject::Order(id) => find::<Order>(v, &keys::order(&id))?
            .map(|(s, _, _)| s)
            .ok_or_else(|| ApiError::not_found(format!("no order {id}")))?,
    };
    match &call {
        MarketCall::CreateListing(terms) | MarketCall::UpdateListing { terms, .. } => {
            terms
                .validate(&market_params(v))
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            check_object(v, &sender, &terms.doc, Object::ListingDoc)?;
        }
        MarketCall::Deliver { delivery, .. } => {
            check_object(v, &sender, delivery, Object::Delivery)?;
        }
        _ => {}
    }
    let price = match &call {
        MarketCall::PlaceOrder { price, .. } if shard != home => price,
        _ => {
            return Ok(Routed {
                shard,
                call: call.to_call(),
                what,
                atomix: None,
            })
        }
    };
    let fees = v
        .genesis
        .params
        .min_fee_per_byte
        .saturating_mul(CROSS_SHARD_FEE_BYTES);
    let amount = price
        .checked_add(fees)
        .ok_or_else(|| ApiError::bad_request("the price is too large"))?;
    let salt = nonce_for(replica(v, home)?, &sender, nonce)?;
    let x = CrossTransfer {
        inputs: vec![CrossInput {
            shard: home,
            from: sender,
            amount,
        }],
        output_shard: shard,
        to: sender,
        expires_at: replica(v, shard)?.height() + ATOMIX_EXPIRY_BLOCKS,
        salt,
        call: Some(call.to_call()),
    };
    let id = x.id();
    Ok(Routed {
        shard: home,
        call: LedgerModule::call(&LedgerCall::AtomixLock {
            x: Box::new(x),
            input: 0,
        }),
        what: format!(
            "{what}, on shard {shard}: {} leaves shard {home} through Atomix ({} of it for your fees there); the order is {id}, refunded here if shard {shard} does not take it",
            format_iost(amount),
            format_iost(fees)
        ),
        atomix: Some(id),
    })
}

/// A page of an account's listings or orders.
fn page(q: &PartyQuery) -> Result<(usize, usize), ApiError> {
    Ok((q.offset, page_limit(q.limit, 50)?))
}

/// A page size asked for (`default` when not), 1 to `PartyQuery::MAX_LIMIT`.
fn page_limit(asked: Option<usize>, default: usize) -> Result<usize, ApiError> {
    let limit = asked.unwrap_or(default);
    if limit == 0 || limit > PartyQuery::MAX_LIMIT {
        return Err(ApiError::bad_request(format!(
            "limit {limit} (from 1 to {})",
            PartyQuery::MAX_LIMIT
        )));
    }
    Ok(limit)
}

/// The account shards in the order they are searched for an id.
fn account_shards(v: &View<'_>) -> Vec<ShardId> {
    let n = v.genesis.params.shards;
    if n == 0 {
        vec![BEACON]
    } else {
        (1..=n).collect()
    }
}

/// The first account shard whose state holds `key`, with the value.
pub fn find<'v, T: borsh::BorshDeserialize>(
    v: &'v View<'_>,
    key: &[u8],
) -> Result<Option<(ShardId, &'v Replica, T)>, ApiError> {
    for s in account_shards(v) {
        let Some(r) = v.replicas.get(&s) else {
            continue;
        };
        if let Some(t) =
            ios_chain::committee::read::<T>(r.store(), key).map_err(|e| ApiError::chain(&e))?
        {
            return Ok(Some((s, r, t)));
        }
    }
    Ok(None)
}

fn listing_view(
    shard: ShardId,
    r: &Replica,
    l: &Listing,
    p: &MarketParams,
) -> Result<ListingView, ApiError> {
    let tally: Tally = ios_chain::committee::read(r.store(), &keys::provider_tally(&l.provider))
        .map_err(|e| ApiError::chain(&e))?
        .unwrap_or_default();
    Ok(ListingView {
        id: l.id.to_hex(),
        shard,
        provider: l.provider.to_string(),
        title: l.terms.title.clone(),
        category: l.terms.category.clone(),
        price: l.terms.price.to_string(),
        delivery_blocks: l.terms.delivery_blocks,
        doc: l.terms.doc.to_string(),
        status: l.status.name().into(),
        created: l.created,
        updated: l.updated,
        orders: l.orders,
        provider_score_milli: tally.overall_milli(&p.ftfs),
        provider_ratings: tally.count,
    })
}

fn order_view(
    shard: ShardId,
    r: &Replica,
    o: &Order,
    p: &MarketParams,
) -> Result<OrderView, ApiError> {
    let mut ratings = Vec::new();
    for (side, by) in [(0u8, "buyer"), (1u8, "provider")] {
        let rec: Option<RatingRecord> =
            ios_chain::committee::read(r.store(), &keys::rating(&o.id, side))
                .map_err(|e| ApiError::chain(&e))?;
        if let Some(rec) = rec {
            let rv = rec.revealed.as_ref();
            ratings.push(RatingView {
                by: by.into(),
                committed: rec.committed,
                revealed: rv.is_some(),
                scores: rv.map(|x| scores_json(&x.rating.scores)),
                comment: rv.map(|x| x.rating.comment.clone()),
                weight: rv.map(|x| x.weight),
                response: rv.and_then(|x| x.response.clone()),
            });
        }
    }
    let (delivery, buyer_share) = match o.state {
        OrderState::Delivered(d) => (Some(d.delivery.to_string()), None),
        OrderState::Disputed(d) => (Some(d.delivery.to_string()), None),
        OrderState::Resolved(r) => (None, Some(r.buyer_share)),
        _ => (None, None),
    };
    Ok(OrderView {
        id: o.id.to_hex(),
        shard,
        listing: o.listing.to_hex(),
        buyer: o.buyer.to_string(),
        provider: o.provider.to_string(),
        price: o.price.to_string(),
        placed: o.placed,
        state: o.state.name().into(),
        due: o.state.due(),
        delivery,
        buyer_share,
        rate_by: o
            .state
            .rateable_since()
            .map(|h| h.saturating_add(p.rating_blocks)),
        ratings,
    })
}

#[utoipa::path(get, path = "/api/v1/market/listings/{id}", tag = "market",
    params(("id" = String, Path, description = "listing id (hex)")),
    responses(
        (status = 200, description = "The listing", body = ListingView),
        (status = 404, description = "No such listing", body = crate::types::ErrorBody)))]
pub async fn listing(g: web::Data<Gateway>, path: web::Path<String>) -> ApiResult<ListingView> {
    let id = parse_hash("listing id", &path)?;
    let view = g
        .node
        .query(move |v| -> Result<ListingView, ApiError> {
            let (s, r, l) = find::<Listing>(v, &keys::listing(&id))?
                .ok_or_else(|| ApiError::not_found(format!("no listing {id}")))?;
            listing_view(s, r, &l, &market_params(v))
        })
        .await??;
    Ok(web::Json(view))
}

#[utoipa::path(get, path = "/api/v1/market/listings", tag = "market",
    params(PartyQuery),
    responses(
        (status = 200, description = "A provider's listings, newest first (paged)", body = [ListingView]),
        (status = 400, description = "Not an address", body = crate::types::ErrorBody)))]
pub async fn listings(
    g: web::Data<Gateway>,
    q: web::Query<PartyQuery>,
) -> ApiResult<Vec<ListingView>> {
    party_page(&g, &q, keys::listings_of, keys::listing, listing_view).await
}

/// A page of one of an account's id lists (`module::list`), newest first,
/// each id read from `item` and shown by `view`, on whichever shard holds
/// the list.
async fn party_page<T, V>(
    g: &Gateway,
    q: &PartyQuery,
    of: fn(&Address) -> Vec<u8>,
    item: fn(&Hash) -> Vec<u8>,
    view: fn(ShardId, &Replica, &T, &MarketParams) -> Result<V, ApiError>,
) -> ApiResult<Vec<V>>
where
    T: borsh::BorshDeserialize + 'static,
    V: serde::Serialize + Send + 'static,
{
    let who = parse_address(&q.of)?;
    let (offset, limit) = page(q)?;
    let views = g
        .node
        .query(move |v| -> Result<Vec<V>, ApiError> {
            let of = of(&who);
            let Some((s, r, _)) = find::<u64>(v, &list::len_key(&of))? else {
                return Ok(Vec::new());
            };
            let ids: Vec<Hash> = list::newest(r.store(), &of, offset as u64, limit as u64)
                .map_err(|e| ApiError::chain(&e))?;
            let p = market_params(v);
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(t) = ios_chain::committee::read::<T>(r.store(), &item(&id))
                    .map_err(|e| ApiError::chain(&e))?
                {
                    out.push(view(s, r, &t, &p)?);
                }
            }
            Ok(out)
        })
        .await??;
    Ok(web::Json(views))
}

#[utoipa::path(get, path = "/api/v1/market/orders/{id}", tag = "market",
    params(("id" = String, Path, description = "order id (hex)")),
    responses(
        (status = 200, description = "The order, its deadlines and ratings", body = OrderView),
        (status = 404, description = "No such order", body = crate::types::ErrorBody)))]
pub async fn order(g: web::Data<Gateway>, path: web::Path<String>) -> ApiResult<OrderView> {
    let id = parse_hash("order id", &path)?;
    let view = g
        .node
        .query(move |v| -> Result<OrderView, ApiError> {
            let (s, r, o) = find::<Order>(v, &keys::order(&id))?
                .ok_or_else(|| ApiError::not_found(format!("no order {id}")))?;
            order_view(s, r, &o, &market_params(v))
        })
        .await??;
    Ok(web::Json(view))
}

#[utoipa::path(get, path = "/api/v1/market/orders", tag = "market",
    params(PartyQuery),
    responses(
        (status = 200, description = "Orders the account is buyer or provider of, newest first (paged)", body = [OrderView]),
        (status = 400, description = "Not an address", body = crate::types::ErrorBody)))]
pub async fn orders(g: web::Data<Gateway>, q: web::Query<PartyQuery>) -> ApiResult<Vec<OrderView>> {
    party_page(&g, &q, keys::orders_of, keys::order, order_view).await
}

#[utoipa::path(get, path = "/api/v1/market/disputes/{order}", tag = "market",
    params(("order" = String, Path, description = "the disputed order's id (hex)")),
    responses(
        (status = 200, description = "The dispute, its cases and its jury", body = DisputeView),
        (status = 404, description = "No dispute over that order", body = crate::types::ErrorBody)))]
pub async fn dispute(g: web::Data<Gateway>, path: web::Path<String>) -> ApiResult<DisputeView> {
    let id = parse_hash("order id", &path)?;
    let view = g
        .node
        .query(move |v| -> Result<DisputeView, ApiError> {
            let (_, _, d) = find::<Dispute>(v, &keys::dispute(&id))?
                .ok_or_else(|| ApiError::not_found(format!("no dispute over order {id}")))?;
            Ok(dispute_view(&id, &d))
        })
        .await??;
    Ok(web::Json(view))
}

fn dispute_view(id: &Hash, d: &Dispute) -> DisputeView {
    let case_json = |c: &Case| CaseJson {
        statement: c.statement.clone(),
        evidence: c.evidence.iter().map(|e| e.to_string()).collect(),
    };
    DisputeView {
        order: id.to_hex(),
        opened_by: if d.by_buyer { "buyer" } else { "provider" }.into(),
        opened: d.opened,
        statement: d.case.statement.clone(),
        evidence: d.case.evidence.iter().map(|e| e.to_string()).collect(),
        answer: d.answer.as_ref().map(case_json),
        round: d.round,
        jurors: d
            .jurors
            .iter()
            .map(|j| JurorView {
                address: j.address.to_string(),
                committed: j.commitment.is_some(),
                vote: j.vote,
            })
            .collect(),
        commit_by: d.commit_by,
        reveal_by: d.reveal_by,
    }
}

#[utoipa::path(get, path = "/api/v1/market/disputes", tag = "market",
    params(JurorQuery),
    responses(
        (status = 200, description = "Open disputes the account sits on the jury of", body = [DisputeView]),
        (status = 400, description = "Not an address", body = crate::types::ErrorBody)))]
pub async fn disputes(
    g: web::Data<Gateway>,
    q: web::Query<JurorQuery>,
) -> ApiResult<Vec<DisputeView>> {
    let juror = parse_address(&q.juror)?;
    let list = g
        .node
        .query(move |v| -> Result<Vec<DisputeView>, ApiError> {
            // Disputes live while they are open; a scan of the account
            // shards' dispute keys finds the juror's (fine while open
            // disputes are few; an index by juror would replace it).
            let prefix = keys::dispute(&Hash::ZERO);
            let prefix = &prefix[..prefix.len() - 32];
            let mut out = Vec::new();
            for s in account_shards(v) {
                let r = replica(v, s)?;
                for (k, bytes) in r.store().scan(prefix).map_err(|e| ApiError::chain(&e))? {
                    let Ok(d) = borsh::from_slice::<Dispute>(&bytes) else {
                        continue;
                    };
                    if d.jurors.iter().any(|j| j.address == juror) {
                        let id: [u8; 32] = k[k.len() - 32..].try_into().expect("32 bytes");
                        out.push(dispute_view(&Hash(id), &d));
                    }
                }
            }
            Ok(out)
        })
        .await??;
    Ok(web::Json(list))
}

#[utoipa::path(get, path = "/api/v1/market/reputation/{address}", tag = "market",
    params(("address" = String, Path, description = "bech32 address")),
    responses(
        (status = 200, description = "FTFS scores, rating distribution and reputation", body = ReputationView),
        (status = 400, description = "Not an address", body = crate::types::ErrorBody)))]
pub async fn reputation(
    g: web::Data<Gateway>,
    path: web::Path<String>,
) -> ApiResult<ReputationView> {
    let who = parse_address(&path)?;
    let ranking = g.catalog.as_ref().map(|c| c.ranking()).unwrap_or_default();
    let view = g
        .node
        .query(move |v| -> Result<ReputationView, ApiError> {
            let shard = crate::api::account_shard(v, v.genesis.params.shards, &who);
            let r = v.replicas.get(&shard).ok_or_else(|| {
                ApiError::unavailable(format!("this node does not run shard {shard}"))
            })?;
            let tally: Tally = ios_chain::committee::read(r.store(), &keys::tally(&who))
                .map_err(|e| ApiError::chain(&e))?
                .unwrap_or_default();
            let a = read_account(r.store(), &who).map_err(|e| ApiError::chain(&e))?;
            let pool: Vec<Address> = ios_chain::committee::read(r.store(), keys::JURY_POOL)
                .map_err(|e| ApiError::chain(&e))?
                .unwrap_or_default();
            let p = market_params(v).ftfs;
            Ok(ReputationView {
                address: who.to_string(),
                shard,
                ratings: tally.count,
                scores_milli: tally.scores_milli(&p),
                histogram: tally.histogram,
                reputation: a.reputation,
                believability: a.believability(&v.genesis.params.believability),
                servi: a.servi,
                trust: trust_view(&ranking, &who),
                jury_pool: pool.contains(&who),
            })
        })
        .await??;
    Ok(web::Json(view))
}

fn trust_view(r: &Ranking, who: &Address) -> TrustView {
    let place = r.place(who);
    TrustView {
        address: who.to_string(),
        trust_ppm: r.ppm(who),
        place: place.map(|(p, _)| p as u64),
        trusted_accounts: r.trusted() as u64,
        pre_trusted: r.pre_trusted.contains(who),
        ratings: r.edges as u64,
        heights: r.heights.clone(),
    }
}

#[utoipa::path(get, path = "/api/v1/market/trust", tag = "market",
    params(TrustQuery),
    responses(
        (status = 200, description = "The most trusted accounts, most trusted first", body = TrustList),
        (status = 400, description = "Bad limit", body = crate::types::ErrorBody),
        (status = 503, description = "This gateway keeps no catalog", body = crate::types::ErrorBody)))]
pub async fn trust(g: web::Data<Gateway>, q: web::Query<TrustQuery>) -> ApiResult<TrustList> {
    let limit = page_limit(q.limit, 20)?;
    let r = crate::store::catalog_of(&g)?.ranking();
    Ok(web::Json(TrustList {
        accounts: r
            .most_trusted()
            .iter()
            .take(limit)
            .map(|a| trust_view(&r, a))
            .collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/market/search", tag = "market",
    params(ListingSearchParams),
    responses(
        (status = 200, description = "Active listings matching the query", body = ListingSearchResponse),
        (status = 400, description = "Bad query, sort, prices or paging", body = crate::types::ErrorBody),
        (status = 503, description = "This gateway does not search", body = crate::types::ErrorBody)))]
pub async fn search(
    g: web::Data<Gateway>,
    p: web::Query<ListingSearchParams>,
) -> ApiResult<ListingSearchResponse> {
    use ios_node::listings::ListingQuery;
    use ios_node::search::SearchError;
    let catalog = crate::store::catalog_of(&g)?;
    let p = p.into_inner();
    let provider = p
        .provider
        .as_deref()
        .map(|o| parse_address(o).map(|a| a.to_string()))
        .transpose()?;
    let bad = |e: SearchError| ApiError::bad_request(e.to_string());
    let q = ListingQuery {
        text: p.q,
        category: p.category.filter(|c| !c.is_empty()),
        provider,
        min_price: p.min_price,
        max_price: p.max_price,
        sort: p
            .sort
            .as_deref()
            .unwrap_or("relevance")
            .parse()
            .map_err(bad)?,
        offset: p.offset,
        limit: p.limit.unwrap_or(20),
    };
    let status = catalog.status();
    let found = web::block(move || catalog.search_listings(&q))
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?
        .map_err(crate::store::search_failed)?;
    Ok(web::Json(ListingSearchResponse {
        total: found.total,
        hits: found
            .hits
            .into_iter()
            .map(|h| ListingHit {
                id: h.id,
                shard: h.shard,
                provider: h.provider,
                title: h.title,
                category: h.category,
                description: h.description,
                price: h.price.to_string(),
                delivery_blocks: h.delivery_blocks,
                provider_score_milli: h.score_milli,
                provider_ratings: h.ratings,
                provider_trust_ppm: h.trust_ppm,
                rank_milli: h.rank_milli,
                created: h.created,
                doc: h.doc,
            })
            .collect(),
        indexed_heights: crate::store::indexed_heights(&status),
    }))
}
