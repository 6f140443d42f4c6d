//! Market pages: search (the home page), a listing, a provider's profile
//! with its charts, selling (create and edit), and the order views with
//! every action a buyer, a provider or a juror can take.

use super::{call, data_json, iost, render, short, stars, who, Ctx, G};
use crate::api::ApiError;
use crate::types::{
    DisputeView, ListingSearchParams, ListingView, ObjectView, OrderView, PartyQuery,
    ReputationView,
};
use actix_web::{web, HttpRequest, HttpResponse};
use maud::{html, Markup};

const CATEGORIES: &[&str] = &[
    "design",
    "writing",
    "development",
    "data",
    "translation",
    "audio",
    "video",
    "other",
];

/// The search form's query: blank fields mean "any"; the price cap is in IOST.
fn search_params(pairs: &[(String, String)]) -> Result<ListingSearchParams, ApiError> {
    let mut p = ListingSearchParams::default();
    for (k, v) in pairs {
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        match k.as_str() {
            "q" => p.q = v.to_string(),
            "category" => p.category = Some(v.to_string()),
            "provider" => p.provider = Some(v.to_string()),
            "sort" => p.sort = Some(v.to_string()),
            "max_price" => {
                p.max_price = Some(
                    ios_chain::types::parse_iost(v)
                        .map_err(|e| ApiError::bad_request(format!("the price cap {v:?}: {e}")))?,
                )
            }
            "offset" => {
                p.offset = v
                    .parse()
                    .map_err(|_| ApiError::bad_request(format!("offset {v:?}")))?
            }
            _ => {}
        }
    }
    Ok(p)
}

pub async fn home(g: G, req: HttpRequest, q: web::Query<Vec<(String, String)>>) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let parsed = search_params(&q);
    let p = parsed.as_ref().cloned().unwrap_or_default();
    let res = match parsed {
        Ok(p) => call(crate::market::search(g.clone(), web::Query(p))).await,
        Err(e) => Err(e),
    };
    let body = html! {
        h1 { "Find a service" }
        form.search method="get" action="/" {
            input type="search" name="q" value=(p.q) placeholder="What do you need done?" autofocus;
            select name="category" {
                option value="" { "any category" }
                @for c in CATEGORIES {
                    option value=(c) selected[p.category.as_deref() == Some(*c)] { (c) }
                }
            }
            input name="max_price" inputmode="decimal" placeholder="max price (IOST)"
                value=[p.max_price.map(|m| ios_chain::types::format_iost(m).trim_end_matches(" IOST").to_string())];
            select name="sort" {
                @for (v, label) in [("relevance", "best match"), ("reputation", "reputation"), ("newest", "newest"), ("price_low", "cheapest"), ("price_high", "dearest")] {
                    option value=(v) selected[p.sort.as_deref() == Some(v)] { (label) }
                }
            }
            button type="submit" { "Search" }
        }
        @match &res {
            Ok(r) => {
                p.small { (r.total) " listing" @if r.total != 1 { "s" } }
                ol.hits #hits {
                    @for h in &r.hits {
                        li.hit {
                            a.title href={"/listings/" (h.id)} { (h.title) }
                            span.price { (iost(&h.price)) }
                            div.small {
                                span.tag { (h.category) } " · by " (who(&h.provider)) " · "
                                (stars(h.provider_score_milli, h.provider_ratings))
                                " · delivered within " (h.delivery_blocks) " blocks"
                            }
                            @if !h.description.is_empty() { p.desc { (h.description) } }
                        }
                    }
                }
                @let limit = p.limit.unwrap_or(20).max(1);
                @if p.offset + limit < r.total {
                    a.more href=(next_page(&p, limit)) { "More results" }
                }
            }
            Err(e) => p.error { (e.to_string()) }
        }
    };
    let mut resp = super::page(&ctx, "Search", body);
    if let Err(e) = &res {
        *resp.status_mut() = actix_web::ResponseError::status_code(e);
    }
    resp
}

fn next_page(p: &ListingSearchParams, limit: usize) -> String {
    let mut q = vec![
        ("q", p.q.clone()),
        ("offset", (p.offset + limit).to_string()),
    ];
    if let Some(c) = &p.category {
        q.push(("category", c.clone()));
    }
    if let Some(s) = &p.sort {
        q.push(("sort", s.clone()));
    }
    if let Some(m) = p.max_price {
        q.push((
            "max_price",
            ios_chain::types::format_iost(m)
                .trim_end_matches(" IOST")
                .to_string(),
        ));
    }
    let enc: Vec<String> = q
        .iter()
        .map(|(k, v)| format!("{k}={}", url_escape(v)))
        .collect();
    format!("/?{}", enc.join("&"))
}

pub(super) fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn object(g: &G, cid: &str) -> Option<ObjectView> {
    call(crate::store::object(
        g.clone(),
        web::Path::from(cid.to_string()),
    ))
    .await
    .ok()
}

/// A listing's document: its description, and its images (a listing
/// document written by the UI is JSON naming them; an image document is
/// shown itself).
fn document(doc: Option<&ObjectView>, cid: &str) -> Markup {
    html! {
        @if let Some(d) = doc {
            @if d.meta.mime.starts_with("image/") {
                img.listing-image src={"/api/v1/store/objects/" (cid) "/content"} alt=(d.meta.name);
            }
            @if !d.meta.description.is_empty() { p.desc { (d.meta.description) } }
            @if d.meta.mime == LISTING_DOC_MIME {
                div.images data-listing-doc=(cid) {}
            }
        } @else {
            p.small { "The listing's document " code { (short(cid)) } " is not readable here now." }
        }
    }
}

/// The media type of a listing document the UI writes: `{"description",
/// "images": [content ids]}`.
pub(crate) const LISTING_DOC_MIME: &str = "application/vnd.ios.listing+json";

pub async fn listing(g: G, req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let r = async {
        let l: ListingView = call(crate::market::listing(g.clone(), path)).await?;
        let doc = object(&g, &l.doc).await;
        let mine = ctx.me.as_deref() == Some(l.provider.as_str());
        let body = html! {
            article.listing #listing data-id=(l.id) {
                h1 { (l.title) }
                p {
                    span.price { (iost(&l.price)) } " · " span.tag { (l.category) }
                    " · " span.status { (l.status) }
                }
                p.small {
                    "by " (who(&l.provider)) " · "
                    (stars(l.provider_score_milli as u64, l.provider_ratings as u64))
                    " · delivered within " (l.delivery_blocks) " blocks · "
                    (l.orders) " orders · shard " (l.shard)
                }
                (document(doc.as_ref(), &l.doc))
                @if mine {
                    div.row {
                        a.button href={"/listings/" (l.id) "/edit"} { "Edit" }
                        @for (status, label) in [("active", "Resume"), ("paused", "Pause"), ("closed", "Close for good")] {
                            @if l.status != status && l.status != "closed" {
                                form.call data-kind="set_listing_status" data-listing=(l.id) data-status=(status) {
                                    button.secondary type="submit" { (label) }
                                }
                            }
                        }
                    }
                } @else if l.status == "active" {
                    form.call #order-form data-kind="place_order" data-listing=(l.id) data-price=(l.price) {
                        button type="submit" { "Order for " (iost(&l.price)) }
                        span.small { " The price is held in escrow until you confirm delivery." }
                    }
                } @else {
                    p.small { "This listing takes no orders now." }
                }
            }
        };
        Ok::<_, ApiError>((l.title.clone(), body))
    }
    .await;
    render(&ctx, r)
}

pub async fn profile(g: G, req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let address = path.into_inner();
    let r = async {
        let rep: ReputationView =
            call(crate::market::reputation(g.clone(), web::Path::from(address.clone()))).await?;
        let listings: Vec<ListingView> = call(crate::market::listings(
            g.clone(),
            web::Query(PartyQuery {
                of: address.clone(),
                offset: 0,
                limit: Some(50),
            }),
        ))
        .await?;
        let orders: Vec<OrderView> = call(crate::market::orders(
            g.clone(),
            web::Query(PartyQuery {
                of: address.clone(),
                offset: 0,
                limit: Some(PartyQuery::MAX_LIMIT),
            }),
        ))
        .await?;
        // Ratings this account received as a provider, oldest first.
        let mut received: Vec<(u64, &OrderView, &crate::types::RatingView)> = orders
            .iter()
            .filter(|o| o.provider == address)
            .flat_map(|o| o.ratings.iter().map(move |r| (o, r)))
            .filter(|(_, r)| r.by == "buyer" && r.revealed)
            .map(|(o, r)| (r.committed, o, r))
            .collect();
        received.sort_by_key(|(h, _, _)| *h);
        let body = html! {
            h1 { "Profile " span.small title=(address) { (short(&address)) } }
            div.cards {
                div.card { b { (stars(rep.scores_milli[0] as u64, rep.ratings as u64)) } div.small { "overall (Bayesian)" } }
                div.card { b #reputation { (rep.reputation) } div.small { "reputation" } }
                div.card { b { (rep.believability) } div.small { "believability" } }
                div.card { b { (rep.servi) } div.small { "Servi" } }
                div.card {
                    b { (rep.trust.trust_ppm / 10_000) "." (format!("{:02}", rep.trust.trust_ppm / 100 % 100)) " %" }
                    div.small { "global trust" @if let Some(p) = rep.trust.place { ", #" (p + 1) } @if rep.trust.pre_trusted { ", pre-trusted" } }
                }
            }
            div.charts {
                figure {
                    figcaption { "Rating distribution" }
                    (histogram(&rep.histogram))
                }
                figure {
                    figcaption { "Reputation over time: average rating by block height" }
                    (over_time(&received.iter().map(|(h, _, r)| (*h, r.scores.map_or(0, |s| s.overall))).collect::<Vec<_>>()))
                }
            }
            h2 { "Scores" }
            table {
                tr { th { "overall" } th { "quality" } th { "communication" } th { "timeliness" } }
                tr { @for s in rep.scores_milli { td { (s / 1000) "." (format!("{:02}", s % 1000 / 10)) } } }
            }
            h2 { "Listings" }
            @if listings.is_empty() { p.small { "None." } }
            ul { @for l in &listings { li { a href={"/listings/" (l.id)} { (l.title) } " · " (iost(&l.price)) " · " (l.status) } } }
            h2 { "Reviews" }
            @if received.is_empty() { p.small #reviews { "No reviews yet." } }
            ul.reviews #reviews {
                @for (h, o, r) in received.iter().rev() {
                    li {
                        @if let Some(s) = r.scores { b { (s.overall) " ★" } }
                        " " (r.comment.clone().unwrap_or_default())
                        span.small { " · block " (h) " · order " a href={"/orders/" (o.id)} { (short(&o.id)) } }
                        @if let Some(resp) = &r.response { p.response { "Response: " (resp) } }
                    }
                }
            }
        };
        Ok::<_, ApiError>((format!("Profile {}", short(&address)), body))
    }
    .await;
    render(&ctx, r)
}

/// The rating distribution as bars (1 to 5 stars).
fn histogram(h: &[u32; 5]) -> Markup {
    let max = (*h.iter().max().unwrap_or(&0)).max(1);
    html! {
        svg.chart #histogram viewBox="0 0 260 120" role="img" aria-label="rating distribution" {
            @for (i, n) in h.iter().enumerate() {
                @let height = 80 * n / max;
                rect x=(10 + i * 50) y=(100 - height) width="36" height=(height) {}
                text x=(28 + i * 50) y="115" text-anchor="middle" { (i + 1) "★" }
                text x=(28 + i * 50) y=(95 - height) text-anchor="middle" class="n" { (n) }
            }
        }
    }
}

/// The running average of the overall score, as a line over block heights.
fn over_time(points: &[(u64, u8)]) -> Markup {
    if points.is_empty() {
        return html! { p.small { "No ratings yet." } };
    }
    let (first, last) = (points[0].0, points[points.len() - 1].0);
    let span = (last - first).max(1);
    let mut sum = 0u64;
    let mut path = String::new();
    let mut dots = Vec::new();
    for (i, (h, s)) in points.iter().enumerate() {
        sum += *s as u64;
        // Average in hundredths of a star, 1..5 mapped onto 100..10.
        let avg = sum * 100 / (i as u64 + 1);
        let x = 10 + (h - first) * 240 / span;
        let y = 100 - (avg.saturating_sub(100)) * 90 / 400;
        path.push_str(&format!("{}{x},{y} ", if i == 0 { "M" } else { "L" }));
        dots.push((x, y));
    }
    html! {
        svg.chart #over-time viewBox="0 0 260 120" role="img" aria-label="average rating over time" {
            path d=(path) {}
            @for (x, y) in &dots { circle cx=(x) cy=(y) r="3" {} }
            text x="10" y="115" { (first) }
            text x="250" y="115" text-anchor="end" { (last) }
            text x="2" y="14" { "5★" }
            text x="2" y="100" { "1★" }
        }
    }
}

fn listing_form(l: Option<&ListingView>, description: &str) -> Markup {
    html! {
        form.call.stack #listing-form data-kind=(if l.is_some() { "update_listing" } else { "create_listing" })
            data-listing=[l.map(|l| l.id.as_str())] data-doc=[l.map(|l| l.doc.as_str())] {
            label { "Title" input name="title" required maxlength="120" value=[l.map(|l| l.title.as_str())]; }
            label { "Category"
                select name="category" {
                    @for c in CATEGORIES { option value=(c) selected[l.is_some_and(|l| l.category == *c)] { (c) } }
                }
            }
            label { "Price (IOST)" input name="price" required inputmode="decimal" pattern="[0-9]+(\\.[0-9]{1,8})?"
                value=[l.map(|l| ios_chain::types::format_iost(l.price.parse().unwrap_or(0)).trim_end_matches(" IOST").to_string())]; }
            label { "Delivered within (blocks)" input name="delivery_blocks" type="number" min="1" required
                value=(l.map_or(600, |l| l.delivery_blocks)); }
            label { "Description" textarea name="description" rows="5" maxlength="4000" { (description) } }
            label { "Image" input name="image" type="file" accept="image/png,image/jpeg,image/gif,image/webp"; }
            div.progress { progress value="0" max="100" hidden {} span {} }
            button type="submit" { @if l.is_some() { "Save" } @else { "Publish listing" } }
            p.small { "The description and image are stored in HUDS as public objects; the listing names them on chain." }
        }
    }
}

pub async fn sell(req: HttpRequest) -> HttpResponse {
    let ctx = Ctx::of(&req);
    super::page(
        &ctx,
        "Sell",
        html! {
            h1 { "List a service" }
            @if ctx.me.is_none() { p.notice { "Create or import a key in the " a href="/wallet" { "wallet" } " first." } }
            (listing_form(None, ""))
        },
    )
}

pub async fn edit(g: G, req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let r = async {
        let l: ListingView = call(crate::market::listing(g.clone(), path)).await?;
        let doc = object(&g, &l.doc).await;
        let description = doc.map(|d| d.meta.description).unwrap_or_default();
        Ok::<_, ApiError>((
            format!("Edit {}", l.title),
            html! { h1 { "Edit " (l.title) } (listing_form(Some(&l), &description)) },
        ))
    }
    .await;
    render(&ctx, r)
}

pub async fn orders(g: G, req: HttpRequest) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let r = async {
        let Some(me) = ctx.me.clone() else {
            return Ok::<_, ApiError>((
                "Orders".into(),
                html! { h1 { "Orders" } p.notice { "Create or import a key in the " a href="/wallet" { "wallet" } " to see your orders." } },
            ));
        };
        let list: Vec<OrderView> = call(crate::market::orders(
            g.clone(),
            web::Query(PartyQuery {
                of: me.clone(),
                offset: 0,
                limit: Some(PartyQuery::MAX_LIMIT),
            }),
        ))
        .await?;
        let body = html! {
            h1 { "Orders" }
            @if list.is_empty() { p.small { "No orders yet: " a href="/" { "find a service" } "." } }
            table #orders {
                tr { th { "order" } th { "as" } th { "with" } th { "price" } th { "state" } th { "placed" } }
                @for o in &list {
                    @let buyer = o.buyer == me;
                    tr data-state=(o.state) {
                        td { a href={"/orders/" (o.id)} { (short(&o.id)) } }
                        td { @if buyer { "buyer" } @else { "provider" } }
                        td { (who(if buyer { &o.provider } else { &o.buyer })) }
                        td { (iost(&o.price)) }
                        td.state { (o.state) }
                        td { (o.placed) }
                    }
                }
            }
        };
        Ok::<_, ApiError>(("Orders".into(), body))
    }
    .await;
    render(&ctx, r)
}

pub async fn order(g: G, req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let r = async {
        let o: OrderView = call(crate::market::order(g.clone(), path)).await?;
        let listing = call(crate::market::listing(
            g.clone(),
            web::Path::from(o.listing.clone()),
        ))
        .await
        .ok();
        let dispute: Option<DisputeView> =
            call(crate::market::dispute(g.clone(), web::Path::from(o.id.clone())))
                .await
                .ok();
        let status = call(crate::api::chain_status(g.clone())).await?;
        let now = status
            .shard_status
            .iter()
            .find(|s| s.shard == o.shard)
            .map_or(0, |s| s.height);
        let me = ctx.me.clone().unwrap_or_default();
        let role = if me == o.buyer {
            "buyer"
        } else if me == o.provider {
            "provider"
        } else {
            "viewer"
        };
        let body = html! {
            (data_json("order-data", &o))
            article #order data-id=(o.id) data-state=(o.state) data-role=(role) data-shard=(o.shard) {
                h1 { "Order " span.small { (short(&o.id)) } }
                p {
                    @if let Some(l) = &listing { a href={"/listings/" (l.id)} { (l.title) } " · " }
                    (iost(&o.price)) " · state " b #order-state { (o.state) }
                    @if let Some(d) = o.due { " · moves on by itself at block " (d) }
                }
                p.small { "buyer " (who(&o.buyer)) " · provider " (who(&o.provider)) " · shard " (o.shard) " at height " (now) }
                (timeline(&o, dispute.as_ref()))
                (actions(&o, dispute.as_ref(), role, &me, now))
                @if let Some(d) = &dispute { (dispute_view(d)) }
                h2 { "Ratings" }
                @if o.ratings.is_empty() { p.small { "None yet." } }
                ul #ratings {
                    @for r in &o.ratings {
                        li {
                            "by the " (r.by) ": "
                            @if let (Some(s), true) = (r.scores, r.revealed) {
                                b { (s.overall) " ★" } " (quality " (s.quality) ", communication " (s.communication) ", timeliness " (s.timeliness) ") "
                                (r.comment.clone().unwrap_or_default())
                                @if let Some(w) = r.weight { span.small { " · weight " (w) } }
                                @if let Some(resp) = &r.response { p.response { "Response: " (resp) } }
                            } @else {
                                "committed at block " (r.committed) ", sealed until both sides have rated"
                            }
                        }
                    }
                }
            }
        };
        Ok::<_, ApiError>((format!("Order {}", short(&o.id)), body))
    }
    .await;
    render(&ctx, r)
}

fn timeline(o: &OrderView, d: Option<&DisputeView>) -> Markup {
    let mut steps: Vec<(u64, String)> = vec![(o.placed, "placed, price held in escrow".into())];
    for r in &o.ratings {
        steps.push((r.committed, format!("rated by the {}", r.by)));
    }
    if let Some(d) = d {
        steps.push((d.opened, format!("disputed by the {}", d.opened_by)));
        steps.push((
            d.commit_by,
            format!("jury round {}: votes committed by", d.round + 1),
        ));
        steps.push((d.reveal_by, "jury votes revealed by".into()));
    }
    steps.sort_by_key(|(h, _)| *h);
    html! {
        ol.timeline #timeline {
            @for (h, what) in &steps { li { span.h { "block " (h) } " " (what) } }
            li.now { span.h { "now" } " " (o.state)
                @if let Some(d) = o.due { " (until block " (d) ")" }
                @if let Some(s) = o.buyer_share { ": the buyer got " (s / 10_000) "% of the price" }
                @if let Some(by) = o.rate_by { "; ratings until block " (by) }
            }
        }
    }
}

fn actions(o: &OrderView, d: Option<&DisputeView>, role: &str, me: &str, now: u64) -> Markup {
    let id = o.id.as_str();
    let state = o.state.as_str();
    let my_side = if role == "buyer" { "buyer" } else { "provider" };
    let mine = o.ratings.iter().find(|r| r.by == my_side);
    let theirs = o.ratings.iter().find(|r| r.by != my_side);
    let can_rate = o.rate_by.is_some_and(|b| now <= b);
    let juror = d.and_then(|d| d.jurors.iter().find(|j| j.address == me));
    html! {
        div.actions #actions {
            @if role == "provider" && state == "funded" {
                form.call data-kind="accept" data-order=(id) { button type="submit" { "Accept" } }
                form.call data-kind="decline" data-order=(id) { button.secondary type="submit" { "Decline (refund the buyer)" } }
            }
            @if role == "buyer" && state == "funded" {
                p.small { "Waiting for the provider to accept; if they do not by block " (o.due.unwrap_or(0)) ", you are refunded." }
            }
            @if role == "provider" && state == "accepted" {
                form.call data-kind="cancel" data-order=(id) { button.secondary type="submit" { "Withdraw (refund the buyer)" } }
                form.call.stack #deliver-form data-kind="deliver" data-order=(id) data-buyer=(o.buyer) {
                    label { "Delivery file (encrypted to the buyer in this browser)" input name="file" type="file" required; }
                    div.progress { progress value="0" max="100" hidden {} span {} }
                    button type="submit" { "Deliver" }
                }
            }
            @if role == "buyer" && state == "delivered" {
                form.call data-kind="confirm" data-order=(id) { button type="submit" { "Confirm delivery (release payment)" } }
            }
            @if role != "viewer" && (state == "delivered" || (role == "buyer" && state == "late")) {
                form.call.stack #dispute-form data-kind="dispute" data-order=(id) {
                    label { "Open a dispute: what went wrong" textarea name="statement" rows="3" required maxlength="2000" {} }
                    label { "Evidence (content ids, one per line)" textarea name="evidence" rows="2" {} }
                    button.secondary type="submit" { "Dispute" }
                }
            }
            @if let Some(d) = d {
                @if role != "viewer" && d.opened_by != role && d.answer.is_none() && state == "disputed" {
                    form.call.stack #answer-form data-kind="answer" data-order=(id) {
                        label { "Your side of the case" textarea name="statement" rows="3" required maxlength="2000" {} }
                        label { "Evidence (content ids, one per line)" textarea name="evidence" rows="2" {} }
                        button type="submit" { "Answer the dispute" }
                    }
                }
                @if let Some(j) = juror {
                    @if state == "disputed" {
                        @if !j.committed {
                            form.call.stack #vote-form data-kind="jury_commit" data-order=(id) data-round=(d.round) {
                                label { "You are on the jury. The buyer's share of the price (%)"
                                    input name="share" type="number" min="0" max="100" required; }
                                button type="submit" { "Commit my vote" }
                            }
                        } @else if j.vote.is_none() {
                            form.call data-kind="jury_reveal" data-order=(id) data-round=(d.round) {
                                button type="submit" { "Reveal my vote" }
                            }
                        }
                    }
                }
            }
            @if o.delivery.is_some() && role == "buyer" {
                button #open-delivery type="button" data-content=(o.delivery.clone().unwrap_or_default()) { "Download the delivery" }
            }
            @if role != "viewer" && can_rate && mine.is_none() {
                form.call.stack #rate-form data-kind="commit_rating" data-order=(id) {
                    @for (name, label) in [("overall", "Overall"), ("quality", "Quality"), ("communication", "Communication"), ("timeliness", "Timeliness")] {
                        label { (label) " (1-5)" input name=(name) type="number" min="1" max="5" value="5" required; }
                    }
                    label { "Comment" textarea name="comment" rows="2" maxlength="1000" {} }
                    button type="submit" { "Rate (sealed until both have rated)" }
                }
            }
            @if let Some(m) = mine {
                @if !m.revealed && (theirs.is_some() || o.rate_by.is_some_and(|b| now > b)) {
                    form.call data-kind="reveal_rating" data-order=(id) { button type="submit" { "Reveal my rating" } }
                }
            }
            @if role == "provider" {
                @if let Some(t) = theirs {
                    @if t.revealed && t.response.is_none() {
                        form.call.stack #respond-form data-kind="respond" data-order=(id) {
                            label { "Respond publicly to the buyer's rating" textarea name="text" rows="2" required maxlength="1000" {} }
                            button.secondary type="submit" { "Respond" }
                        }
                    }
                }
            }
        }
    }
}

fn dispute_view(d: &DisputeView) -> Markup {
    html! {
        section #dispute {
            h2 { "Dispute" }
            p { "Opened by the " (d.opened_by) " at block " (d.opened) ": " (d.statement) }
            @for e in &d.evidence { p.small { "evidence " code { (e) } } }
            @if let Some(a) = &d.answer { p { "Answer: " (a.statement) } }
            p.small { "Jury round " (d.round + 1) ": votes committed by block " (d.commit_by) ", revealed by " (d.reveal_by) }
            ul #jurors {
                @for j in &d.jurors {
                    li { (who(&j.address)) " · "
                        @match (j.committed, j.vote) {
                            (_, Some(v)) => { "voted " (v / 10_000) "% to the buyer" }
                            (true, None) => { "committed" }
                            _ => { "not voted yet" }
                        }
                    }
                }
            }
        }
    }
}
