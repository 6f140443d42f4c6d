//! The visitor's own pages: the wallet (keys kept in the browser, balances,
//! transfers, the jury pool), storage (upload with progress, my objects,
//! private sharing) and the storage-provider dashboard.

use super::{call, iost, render, short, Ctx, G};
use crate::api::ApiError;
use crate::store::ObjectsQuery;
use crate::types::{
    AccountView, DisputeView, JurorQuery, ObjectView, ProviderView, ReputationView,
};
use actix_web::{web, HttpRequest, HttpResponse};
use maud::{html, Markup};

fn no_key() -> Markup {
    html! { p.notice { "This browser holds no key yet: create or import one in the " a href="/wallet" { "wallet" } "." } }
}

pub async fn wallet(g: G, req: HttpRequest) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let r = async {
        let account: Option<AccountView> = match &ctx.me {
            Some(me) => Some(call(crate::api::account(g.clone(), web::Path::from(me.clone()))).await?),
            None => None,
        };
        let rep: Option<ReputationView> = match &ctx.me {
            Some(me) => call(crate::market::reputation(g.clone(), web::Path::from(me.clone())))
                .await
                .ok(),
            None => None,
        };
        let duties: Vec<DisputeView> = match &ctx.me {
            Some(me) => call(crate::market::disputes(
                g.clone(),
                web::Query(JurorQuery { juror: me.clone() }),
            ))
            .await
            .unwrap_or_default(),
            None => Vec::new(),
        };
        let body = html! {
            h1 { "Wallet" }
            section #keys {
                h2 { "Your key" }
                p.small { "Keys are made and kept in this browser (WebCrypto Ed25519); the gateway only ever sees signatures. Export a backup: a lost browser profile is a lost key." }
                p #key-address { @if let Some(me) = &ctx.me { code { (me) } } @else { "No key in this browser." } }
                div.row {
                    button #key-new type="button" { "Create a new key" }
                    button #key-export.secondary type="button" { "Export a backup" }
                    label.button.secondary { "Import a backup" input #key-import type="file" accept=".json,application/json" hidden; }
                    button #key-forget.secondary type="button" { "Forget this key" }
                }
            }
            @if let Some(a) = &account {
                section #balances {
                    h2 { "Balances" }
                    div.cards {
                        div.card { b #balance { (iost(&a.balance)) } div.small { "on shard " (a.shard) } }
                        div.card { b #servi { (a.servi) } div.small { "Servi (earned, not transferable)" } }
                        @if let Some(r) = &rep { div.card { b { (r.believability) } div.small { "believability" } } }
                        div.card { b { (a.reputation) } div.small { "reputation" } }
                        div.card { b { (iost(&a.stake)) } div.small { "staked" } }
                    }
                    p.small { "Next nonce " (a.next_nonce) @if a.jailed { " · jailed" } }
                }
                section {
                    h2 { "Send IOST" }
                    form.call.stack #transfer-form data-kind="transfer" {
                        label { "To (address)" input name="to" required pattern="ios1[02-9ac-hj-np-z]{58}"; }
                        label { "Amount (IOST)" input name="amount" required inputmode="decimal" pattern="[0-9]+(\\.[0-9]{1,8})?"; }
                        button type="submit" { "Send" }
                        p.small { "To an account on another shard this is an Atomix transfer: locked here, committed there." }
                    }
                }
                section {
                    h2 { "Jury duty" }
                    p.small { "Jurors are drawn by the epoch's randomness among opted-in accounts above the believability floor; they earn fees and Servi for revealed votes." }
                    @if !duties.is_empty() {
                        p { "You sit on the jury of:" }
                        ul #jury-duties {
                            @for d in &duties {
                                li { a href={"/orders/" (d.order)} { "order " (short(&d.order)) }
                                    " · round " (d.round) " · seal your vote by block " (d.commit_by) ", reveal it by " (d.reveal_by) }
                            }
                        }
                    }
                    @if rep.as_ref().is_some_and(|r| r.jury_pool) {
                        p #in-jury-pool { "You are in the jury pool." }
                        form.call data-kind="leave_jury_pool" { button.secondary type="submit" { "Leave the jury pool" } }
                    } @else {
                        form.call data-kind="join_jury_pool" { button.secondary type="submit" { "Join the jury pool" } }
                    }
                }
            }
        };
        Ok::<_, ApiError>(("Wallet".to_string(), body))
    }
    .await;
    render(&ctx, r)
}

pub async fn storage(g: G, req: HttpRequest) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let r = async {
        let objects: Vec<ObjectView> = match &ctx.me {
            Some(me) => call(crate::store::objects(
                g.clone(),
                web::Query(ObjectsQuery { owner: me.clone() }),
            ))
            .await?,
            None => Vec::new(),
        };
        let body = html! {
            h1 { "Storage" }
            @if ctx.me.is_none() { (no_key()) }
            section {
                h2 { "Store a file" }
                form.call.stack #upload-form data-kind="store" {
                    label { "File" input name="file" type="file" required; }
                    label { "Description" input name="description" maxlength="4000"; }
                    label { "Tags (space separated)" input name="tags"; }
                    label { "Epochs to keep it" input name="epochs" type="number" min="1" value="100" required; }
                    label.check { input name="public" type="checkbox" checked; " Public (found by search)" }
                    label { "Private: readers' addresses (one per line; you are always one)" textarea name="readers" rows="2" {} }
                    div.progress { progress value="0" max="100" hidden {} span {} }
                    button type="submit" { "Upload" }
                    p.small { "A private file is encrypted in this browser (XChaCha20-Poly1305, its key sealed to each reader) before it leaves it; providers only hold ciphertext." }
                }
            }
            section {
                h2 { "My objects" }
                @if objects.is_empty() { p.small { "None yet." } }
                table #objects {
                    tr { th { "name" } th { "content id" } th { "size" } th { "kind" } th { "fragments" } th {} }
                    @for o in &objects {
                        tr {
                            td { (o.meta.name) }
                            td { code title=(o.content) { (short(&o.content)) } }
                            td { (o.size) " B" }
                            td { @if o.meta.public { "public" } @else { "private" } }
                            td { (o.receipted) "/" (o.fragments) @if o.lost > 0 { " (" (o.lost) " lost)" } }
                            td {
                                @if o.meta.public {
                                    a href={"/api/v1/store/objects/" (o.content) "/content"} download=(o.meta.name) { "download" }
                                } @else {
                                    button.open-private type="button" data-content=(o.content) data-name=(o.meta.name) { "decrypt and download" }
                                }
                            }
                        }
                    }
                }
            }
        };
        Ok::<_, ApiError>(("Storage".to_string(), body))
    }
    .await;
    render(&ctx, r)
}

pub async fn provider(g: G, req: HttpRequest) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let r = async {
        let all: Vec<ProviderView> = call(crate::store::providers(g.clone())).await?;
        let mine = ctx
            .me
            .as_ref()
            .and_then(|me| all.iter().find(|p| &p.address == me));
        let body = html! {
            h1 { "Storage providers" }
            @if let Some(p) = mine {
                section #my-provider {
                    h2 { "You" }
                    div.cards {
                        div.card { b { (p.held_bytes) " B" } div.small { (p.held_fragments) " fragments held of " (p.capacity) " B" } }
                        div.card { b { (p.audits_passed) } div.small { "audits passed (" (p.audits_failed) " failed, " (p.strikes) " strikes)" } }
                        div.card { b { (p.servi_earned) } div.small { "Servi earned" } }
                        div.card { b { (iost(&p.iost_earned)) } div.small { "earned" } }
                    }
                }
            } @else {
                p.small { "To provide storage, run a node with the provider role: "
                    code { "ios node --provider --capacity 100GiB" } " then " code { "ios provider register" }
                    " (see the guide). Its stats show here once this browser holds its key." }
            }
            table #providers {
                tr { th { "provider" } th { "shard" } th { "held" } th { "capacity" } th { "price / GiB-epoch" } th { "audits" } th { "Servi" } th { "state" } }
                @for p in &all {
                    tr {
                        td { (super::who(&p.address)) }
                        td { (p.shard) }
                        td { (p.held_bytes) " B" }
                        td { (p.capacity) " B" }
                        td { (iost(&p.price_per_gib_epoch)) }
                        td { (p.audits_passed) " / " (p.audits_passed + p.audits_failed) }
                        td { (p.servi_earned) }
                        td { @if p.failing { "failing" } @else { "ok" } }
                    }
                }
            }
        };
        Ok::<_, ApiError>(("Storage providers".to_string(), body))
    }
    .await;
    render(&ctx, r)
}
