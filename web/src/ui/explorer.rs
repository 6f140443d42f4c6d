//! The explorer: the beacon and the shards (heights, epochs, committees),
//! recent blocks, a block, a transaction, a cross-shard transfer's Atomix
//! state, and this node's place in the network.

use super::{call, render, short, who, Ctx, G};
use crate::api::ApiError;
use crate::types::{
    AtomixView, BlockView, ChainStatus, EpochView, LimitQuery, ProviderView, TxStatus,
    ValidatorView,
};
use actix_web::{web, HttpRequest, HttpResponse};
use maud::html;

/// Blocks shown per shard on the overview.
const RECENT: u64 = 5;

pub async fn overview(g: G, req: HttpRequest) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let r = async {
        let s: ChainStatus = call(crate::api::chain_status(g.clone())).await?;
        let mut recent: Vec<(u16, Vec<BlockView>)> = Vec::new();
        for sh in &s.shard_status {
            let mut blocks = Vec::new();
            for h in (sh.height.saturating_sub(RECENT - 1)..=sh.height).rev().filter(|h| *h > 0) {
                if let Ok(b) = call(crate::api::block(g.clone(), web::Path::from((sh.shard, h)))).await {
                    blocks.push(b);
                }
            }
            recent.push((sh.shard, blocks));
        }
        let epochs: Vec<EpochView> = call(crate::api::epochs(
            g.clone(),
            web::Query(LimitQuery { limit: Some(5) }),
        ))
        .await
        .unwrap_or_default();
        let validators: Vec<ValidatorView> =
            call(crate::api::validators(g.clone())).await.unwrap_or_default();
        let transfers: Vec<AtomixView> = call(crate::api::atomix_list(
            g.clone(),
            web::Query(LimitQuery { limit: Some(10) }),
        ))
        .await
        .unwrap_or_default();
        let body = html! {
            h1 { "Explorer" }
            p { "Chain " code { (s.chain_id) } " · beacon epoch " b #epoch { (s.epoch) } " · "
                (s.shards) " account shards · " (s.finalized_txs) " transactions finalized here" }
            form.search method="get" action="/explorer/tx" #tx-lookup {
                input name="id" placeholder="transaction or cross-shard transfer id (hex)" required;
                button type="submit" { "Look up" }
            }
            table #shards {
                tr { th { "shard" } th { "height" } th { "epoch" } th { "committee" } th { "mempool" } th { "head" } }
                @for sh in &s.shard_status {
                    tr data-shard=(sh.shard) {
                        td { @if sh.shard == 0 { "0 (beacon)" } @else { (sh.shard) } }
                        td.height { a href={"/explorer/shards/" (sh.shard) "/blocks/" (sh.height)} { (sh.height) } }
                        td { (sh.epoch) }
                        td { @for m in &sh.committee { (who(m)) " " } }
                        td { (sh.mempool) }
                        td { code { (short(&sh.head)) } }
                    }
                }
            }
            @if !s.syncing.is_empty() { p.notice { "Syncing shards " (format!("{:?}", s.syncing)) } }
            h2 { "Epochs" }
            table #epochs {
                tr { th { "epoch" } th { "randomness (beacon PVSS)" } th { "committees: beacon, then each shard" } }
                @for e in &epochs {
                    tr {
                        td { (e.epoch) }
                        td { code { (short(&e.randomness)) } }
                        td { @for (i, c) in e.committees.iter().enumerate() {
                            span.small { (i) ": " } @for m in c { (who(m)) " " } br;
                        } }
                    }
                }
            }
            h2 { "Cross-shard transfers" }
            @if transfers.is_empty() { p.small { "None followed right now." } }
            table #transfers {
                tr { th { "id" } th { "from shards" } th { "to" } th { "amount" } th { "Atomix state" } }
                @for t in &transfers {
                    tr {
                        td { a href={"/explorer/atomix/" (t.id)} { (short(&t.id)) } }
                        td { (format!("{:?}", t.input_shards)) }
                        td { (who(&t.to)) " on " (t.output_shard) }
                        td { (super::iost(&t.amount)) }
                        td { b { (t.state) } " " span.small { (t.detail) } }
                    }
                }
            }
            h2 { "Validators" }
            table #validators {
                tr { th { "validator" } th { "stake" } th { "believability" } th { "committees now" } th {} }
                @for v in &validators {
                    tr {
                        td { (who(&v.address)) }
                        td { (super::iost(&v.stake)) }
                        td { (v.believability / 10_000) "." (format!("{:02}", v.believability / 100 % 100)) " %" }
                        td { (v.committees.iter().map(|s| if *s == 0 { "beacon".to_string() } else { format!("shard {s}") }).collect::<Vec<_>>().join(", ")) }
                        td { @if v.jailed { "jailed" } }
                    }
                }
            }
            h2 { "Recent blocks" }
            div.cols {
                @for (shard, blocks) in &recent {
                    div {
                        h3 { "Shard " (shard) }
                        ul.blocks {
                            @for b in blocks {
                                li { a href={"/explorer/shards/" (b.shard) "/blocks/" (b.height)} { "#" (b.height) }
                                    " · " (b.txs.len()) " txs · epoch " (b.epoch) " · round " (b.round) }
                            }
                        }
                    }
                }
            }
        };
        Ok::<_, ApiError>(("Explorer".to_string(), body))
    }
    .await;
    render(&ctx, r)
}

pub async fn block(g: G, req: HttpRequest, path: web::Path<(u16, u64)>) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let r = async {
        let b: BlockView = call(crate::api::block(g.clone(), path)).await?;
        let body = html! {
            h1 { "Block " (b.height) " of shard " (b.shard) }
            p.row {
                @if b.height > 1 { a href={"/explorer/shards/" (b.shard) "/blocks/" (b.height - 1)} { "← previous" } }
                a href={"/explorer/shards/" (b.shard) "/blocks/" (b.height + 1)} { "next →" }
            }
            table.kv {
                tr { th { "hash" } td { code { (b.hash) } } }
                tr { th { "previous" } td { code { (b.prev) } } }
                tr { th { "epoch / round" } td { (b.epoch) " / " (b.round) } }
                tr { th { "proposer" } td { (who(&b.proposer)) } }
                tr { th { "time" } td { (b.time_ms) " ms" } }
                tr { th { "state root" } td { code { (b.state_root) } } }
                tr { th { "certificate" } td { (b.signers) " signers" } }
                tr { th { "end-of-block events" } td { (b.block_events.join(", ")) } }
            }
            h2 { "Transactions" }
            table {
                tr { th { "id" } th { "sender" } th { "kind" } th { "status" } }
                @for t in &b.txs {
                    tr { td { a href={"/explorer/tx/" (t.id)} { (short(&t.id)) } } td { (who(&t.sender)) } td { (t.kind) } td { (t.status) } }
                }
            }
        };
        Ok::<_, ApiError>((format!("Block {}/{}", b.shard, b.height), body))
    }
    .await;
    render(&ctx, r)
}

#[derive(serde::Deserialize)]
pub struct Lookup {
    id: Option<String>,
}

/// The explorer's lookup form: on to the transaction's page.
pub async fn lookup(q: web::Query<Lookup>) -> HttpResponse {
    let id = q.id.as_deref().unwrap_or_default().trim();
    let to = if id.is_empty() {
        "/explorer".to_string()
    } else {
        format!("/explorer/tx/{}", super::market::url_escape(id))
    };
    HttpResponse::SeeOther()
        .insert_header(("location", to))
        .finish()
}

pub async fn tx(g: G, req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let id = path.into_inner().trim().to_string();
    let r = async {
        let t: TxStatus = call(crate::api::tx_status(g.clone(), web::Path::from(id.clone()))).await?;
        let atomix: Option<AtomixView> =
            call(crate::api::atomix_status(g.clone(), web::Path::from(id.clone())))
                .await
                .ok();
        let body = html! {
            h1 { "Transaction " span.small { (short(&t.id)) } }
            table.kv {
                tr { th { "id" } td { code { (t.id) } } }
                tr { th { "state" } td #tx-state { (format!("{:?}", t.state).to_lowercase()) } }
                @if let (Some(s), Some(h)) = (t.shard, t.height) {
                    tr { th { "block" } td { a href={"/explorer/shards/" (s) "/blocks/" (h)} { "shard " (s) " #" (h) } } }
                }
                @if let Some(e) = &t.error { tr { th { "error" } td.error { (e.code) ": " (e.message) } } }
                tr { th { "events" } td { (t.events.join(", ")) } }
            }
            @if let Some(a) = atomix { (atomix_table(&a)) }
        };
        Ok::<_, ApiError>((format!("Transaction {}", short(&id)), body))
    }
    .await;
    render(&ctx, r)
}

fn atomix_table(a: &AtomixView) -> maud::Markup {
    html! {
        h2 { "Cross-shard transfer (Atomix)" }
        table.kv #atomix {
            tr { th { "state" } td { b { (a.state) } " · " (a.detail) } }
            tr { th { "input shards" } td { (format!("{:?}", a.input_shards)) } }
            tr { th { "output shard" } td { (a.output_shard) } }
            tr { th { "to" } td { (who(&a.to)) } }
            tr { th { "amount" } td { (super::iost(&a.amount)) } }
            tr { th { "expires after" } td { "height " (a.expires_at) " of the output shard" } }
        }
    }
}

pub async fn atomix(g: G, req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let r = async {
        let a: AtomixView = call(crate::api::atomix_status(g.clone(), path)).await?;
        Ok::<_, ApiError>((
            format!("Atomix {}", short(&a.id)),
            html! { h1 { "Cross-shard transfer " span.small { (short(&a.id)) } } (atomix_table(&a)) },
        ))
    }
    .await;
    render(&ctx, r)
}

pub async fn network(g: G, req: HttpRequest) -> HttpResponse {
    let ctx = Ctx::of(&req);
    let r = async {
        let s: ChainStatus = call(crate::api::chain_status(g.clone())).await?;
        let listen = g
            .node
            .query(|v| v.listen.iter().map(|a| a.to_string()).collect::<Vec<_>>())
            .await
            .map_err(ApiError::from)?;
        let providers: Vec<ProviderView> = call(crate::store::providers(g.clone()))
            .await
            .unwrap_or_default();
        let peers: Vec<String> = call(crate::api::peers(g.clone())).await?;
        let body = html! {
            h1 { "Network" }
            table.kv {
                tr { th { "this node" } td { code { (s.peer_id) } } }
                tr { th { "listening on" } td { @for a in &listen { code { (a) } br; } } }
                tr { th { "connected peers" } td #peers { (s.peers) } }
                tr { th { "shards followed" } td { (s.shard_status.iter().map(|x| x.shard.to_string()).collect::<Vec<_>>().join(", ")) } }
                tr { th { "fast syncs" } td { (s.fast_syncs) } }
            }
            h2 { "Validators by shard" }
            table {
                tr { th { "shard" } th { "committee (epoch)" } }
                @for sh in &s.shard_status { tr { td { (sh.shard) } td { @for m in &sh.committee { (who(m)) " " } " (" (sh.epoch) ")" } } }
            }
            h2 { "Connected peers" }
            ul #peer-list {
                @for p in &peers {
                    li { code { (p) }
                        @for pr in providers.iter().filter(|pr| &pr.peer_id == p).take(1) {
                            " · storage provider " (who(&pr.address))
                        }
                    }
                }
            }
            h2 { "Storage provider peers" }
            table {
                tr { th { "provider" } th { "peer" } th { "addresses" } }
                @for p in &providers { tr { td { (who(&p.address)) } td { code { (short(&p.peer_id)) } } td { (p.addrs.join(" ")) } } }
            }
        };
        Ok::<_, ApiError>(("Network".to_string(), body))
    }
    .await;
    render(&ctx, r)
}
