//! `ios market`: listings, orders, ratings, disputes and juries (talks to
//! --node). Every change is a transaction signed by one of your keys; the
//! CLI signs only what it asked the node to build. Sealed ratings and jury
//! votes keep their salt in `<keystore>/../sealed/` until revealed.

use crate::common::{print_json, KeystoreOpt, NodeOpt, Progress};
use crate::store::{put_object, PutArgs};
use crate::tx::{send_call, Asked, Out};
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use ios_chain::crypto::Address;
use ios_chain::hash::Hash;
use ios_chain::types::{format_iost, parse_iost, Amount};
use ios_market::ftfs::{Rating, Scores};
use ios_web::client::Client;
use ios_web::types::{
    CallRequest, CaseJson, ListingTermsJson, ListingView, MarketCallJson, OrderView, ScoresJson,
    TxState,
};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct MarketArgs {
    #[command(subcommand)]
    command: MarketCommand,
    #[command(flatten)]
    node: NodeOpt,
    #[command(flatten)]
    keystore: KeystoreOpt,
    /// Print JSON.
    #[arg(long, global = true)]
    json: bool,
    /// Give up waiting for finality after this many seconds.
    #[arg(long, default_value_t = 60, global = true)]
    timeout: u64,
}

#[derive(Args, Debug, Clone)]
struct TermsArgs {
    /// One line, at most 128 bytes.
    #[arg(long)]
    title: Option<String>,
    /// Lowercase letters, digits, '-' and '/', like design/logo.
    #[arg(long)]
    category: Option<String>,
    /// IOST, like 25 or 0.5.
    #[arg(long)]
    price: Option<String>,
    /// Blocks the provider has to deliver once it accepts.
    #[arg(long)]
    delivery_blocks: Option<u64>,
    /// The listing document (description, images, terms): the content id
    /// of a public HUDS object of the provider's, from `ios store put`.
    #[arg(long, conflicts_with = "doc_file")]
    doc: Option<String>,
    /// Or a file to store in HUDS first as the listing document (public;
    /// its description is what search reads).
    #[arg(long)]
    doc_file: Option<PathBuf>,
    /// With --doc-file: the document's description, indexed for search.
    #[arg(long, requires = "doc_file", default_value = "")]
    description: String,
}

#[derive(Args, Debug, Clone)]
struct CaseArgs {
    /// What happened, at most 4096 bytes.
    #[arg(long)]
    statement: String,
    /// HUDS content ids backing it (up to 8).
    #[arg(long = "evidence")]
    evidence: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum MarketCommand {
    /// Create a listing from your key.
    Create {
        #[arg(long)]
        from: String,
        #[command(flatten)]
        terms: TermsArgs,
    },
    /// Change a listing's terms (what is not given stays).
    Update {
        listing: String,
        #[arg(long)]
        from: String,
        #[command(flatten)]
        terms: TermsArgs,
    },
    /// Stop taking orders for a while.
    Pause {
        listing: String,
        #[arg(long)]
        from: String,
    },
    /// Take orders again.
    Resume {
        listing: String,
        #[arg(long)]
        from: String,
    },
    /// Close a listing for good.
    Close {
        listing: String,
        #[arg(long)]
        from: String,
    },
    /// Find active listings by words, category, price and provider.
    Search {
        /// Words in titles, categories and listing descriptions (none: all).
        #[arg(default_value = "")]
        query: String,
        /// This category or any under it (design finds design/logo).
        #[arg(long)]
        category: Option<String>,
        /// A bech32 address or a key name.
        #[arg(long)]
        provider: Option<String>,
        /// IOST.
        #[arg(long)]
        min_price: Option<String>,
        #[arg(long)]
        max_price: Option<String>,
        /// relevance, newest, price_low, price_high or reputation.
        #[arg(long, default_value = "relevance")]
        sort: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long, default_value_t = 0)]
        offset: usize,
    },
    /// A provider's listings.
    List {
        /// A bech32 address or a key name.
        #[arg(long)]
        provider: String,
    },
    /// Orders an account is the buyer or provider of.
    Orders {
        /// A bech32 address or a key name.
        account: String,
    },
    /// A listing, or an order with its ratings and dispute.
    Show { id: String },
    /// Order from a listing at its current price (held in escrow until the order ends).
    Order {
        listing: String,
        #[arg(long)]
        from: String,
    },
    /// Accept an order (the provider).
    Accept {
        order: String,
        #[arg(long)]
        from: String,
    },
    /// Decline an order (the provider; the buyer is refunded).
    Decline {
        order: String,
        #[arg(long)]
        from: String,
    },
    /// Withdraw from an accepted order (the provider; the buyer is refunded).
    Cancel {
        order: String,
        #[arg(long)]
        from: String,
    },
    /// Deliver an accepted order (the provider): a private HUDS object
    /// encrypted to the buyer (`--file` stores and seals one).
    Deliver {
        order: String,
        /// The delivery's content id, stored already (`ios store put FILE
        /// --private --reader BUYER`).
        #[arg(long, required_unless_present = "file", conflicts_with = "file")]
        delivery: Option<String>,
        /// Or a file: encrypted to the buyer, stored in HUDS, delivered.
        #[arg(long)]
        file: Option<PathBuf>,
        #[arg(long)]
        from: String,
    },
    /// Confirm a delivery (the buyer): the provider is paid.
    Confirm {
        order: String,
        #[arg(long)]
        from: String,
    },
    /// Dispute a delivered order within its review window; a jury decides.
    Dispute {
        order: String,
        #[arg(long)]
        from: String,
        #[command(flatten)]
        case: CaseArgs,
    },
    /// Answer a dispute the other party opened (once).
    Answer {
        order: String,
        #[arg(long)]
        from: String,
        #[command(flatten)]
        case: CaseArgs,
    },
    /// Offer to serve on juries, or stop.
    Jury {
        #[arg(value_parser = ["join", "leave"])]
        action: String,
        #[arg(long)]
        from: String,
    },
    /// Vote as a drawn juror on the buyer's share: sealed, then revealed
    /// once the jury's commitment window allows.
    Vote {
        order: String,
        /// The buyer's share of the price, in percent (0 to 100).
        #[arg(long)]
        share: Option<f64>,
        #[arg(long)]
        from: String,
        /// Reveal the vote sealed earlier (without --share).
        #[arg(long)]
        reveal: bool,
        /// Seal only; reveal later with --reveal.
        #[arg(long)]
        no_wait: bool,
    },
    /// Rate the other side of a completed or resolved order: sealed now,
    /// revealed when both sides have rated or the window closes.
    Rate {
        order: String,
        #[arg(long)]
        from: String,
        /// 1 to 5.
        #[arg(long)]
        overall: Option<u8>,
        /// 1 to 5 (default: overall).
        #[arg(long)]
        quality: Option<u8>,
        #[arg(long)]
        communication: Option<u8>,
        #[arg(long)]
        timeliness: Option<u8>,
        /// At most 1024 bytes.
        #[arg(long, default_value = "")]
        comment: String,
        /// Reveal the rating sealed earlier.
        #[arg(long)]
        reveal: bool,
        /// After sealing, wait (up to --timeout) until it can be revealed, and reveal it.
        #[arg(long)]
        wait: bool,
    },
    /// Answer publicly the rating the other side gave you (once).
    Respond {
        order: String,
        #[arg(long)]
        text: String,
        #[arg(long)]
        from: String,
    },
    /// An account's FTFS scores, rating distribution and reputation.
    Reputation {
        /// A bech32 address or a key name.
        account: String,
    },
}

/// A sealed rating or vote, kept until it is revealed.
#[derive(Serialize, Deserialize)]
struct Sealed {
    salt: String,
    #[serde(default)]
    share: Option<u32>,
    #[serde(default)]
    rating: Option<(ScoresJson, String)>,
    #[serde(default)]
    round: Option<u8>,
}

struct Ctx {
    client: Client,
    keystore: KeystoreOpt,
    out: Out,
    timeout: Duration,
}

impl Ctx {
    /// Signs and sends `call` from `from`; the final status if it finalized.
    /// Sends a market call; returns the id of what it made once final (a
    /// transaction's, or for an order from another shard, the cross-shard
    /// transfer's, which is the order's id).
    fn send(&self, from: &str, call: MarketCallJson) -> Result<Option<String>> {
        self.send_as(from, call, None)
    }

    /// `send`, for a call that must run on `shard` paying `amount` there
    /// (an order, which may come from another shard through Atomix).
    fn send_as(
        &self,
        from: &str,
        call: MarketCallJson,
        on: Option<(u16, Amount)>,
    ) -> Result<Option<String>> {
        let (module_call, _) = ios_web::market::market_call(&call).map_err(|e| anyhow!("{e}"))?;
        let asked = match on {
            Some((shard, amount)) => Asked::ExactOn {
                call: module_call.to_call(),
                shard,
                amount,
            },
            None => Asked::Exact(module_call.to_call()),
        };
        let (code, status, atomix) = send_call(
            &self.client,
            &self.keystore,
            from,
            &asked,
            CallRequest::Market { call },
            None,
            Some(self.timeout),
            self.out,
        )?;
        Ok(match status {
            Some(s) if code == ExitCode::SUCCESS && s.state == TxState::Finalized => {
                Some(atomix.unwrap_or(s.id))
            }
            _ => None,
        })
    }

    fn address(&self, name_or_address: &str) -> Result<Address> {
        crate::chain::resolve_address(name_or_address, &self.keystore)?
            .parse()
            .map_err(|e| anyhow!("{name_or_address}: {e}"))
    }

    /// The last finalized height of `shard` at the node.
    fn height(&self, shard: u16) -> Result<u64> {
        Ok(self
            .client
            .status()?
            .shard_status
            .iter()
            .find(|s| s.shard == shard)
            .map_or(0, |s| s.height))
    }

    fn sealed_path(&self, kind: &str, order: &Hash, who: &Address) -> PathBuf {
        let keys = self
            .keystore
            .keystore
            .clone()
            .unwrap_or_else(ios_node::keystore::Keystore::default_dir);
        let dir = keys
            .parent()
            .map_or_else(|| keys.join("sealed"), |p| p.join("sealed"));
        dir.join(format!("{kind}-{}-{who}.json", order.to_hex()))
    }
}

fn done(id: Option<String>) -> ExitCode {
    if id.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The terms asked, completed from `base` (an update); a `--doc-file` is
/// stored in HUDS first, as a public object of `from`'s.
fn terms_json(
    c: &Ctx,
    from: &str,
    t: &TermsArgs,
    base: Option<&ListingView>,
) -> Result<ListingTermsJson> {
    let need = |what: &str| anyhow!("--{what} (or --doc-file) is required");
    let doc = match (&t.doc, &t.doc_file) {
        (Some(d), _) => Some(d.clone()),
        (None, Some(file)) => {
            let mut put = PutArgs::new(file.clone(), from);
            put.name = t.title.clone().or_else(|| base.map(|b| b.title.clone()));
            put.description = t.description.clone();
            put.tags = t
                .category
                .clone()
                .or_else(|| base.map(|b| b.category.clone()))
                .map(|c| c.replace('/', "-"))
                .into_iter()
                .collect();
            let o = put_object(&c.client, &c.keystore, &put)?;
            eprintln!("stored the listing document as {}", o.content);
            Some(o.content)
        }
        (None, None) => None,
    };
    let price = match (&t.price, base) {
        (Some(p), _) => parse_iost(p)
            .map_err(|e| anyhow!("--price: {e}"))?
            .to_string(),
        (None, Some(b)) => b.price.clone(),
        (None, None) => return Err(need("price")),
    };
    Ok(ListingTermsJson {
        title: t
            .title
            .clone()
            .or_else(|| base.map(|b| b.title.clone()))
            .ok_or_else(|| need("title"))?,
        category: t
            .category
            .clone()
            .or_else(|| base.map(|b| b.category.clone()))
            .ok_or_else(|| need("category"))?,
        price,
        delivery_blocks: t
            .delivery_blocks
            .or_else(|| base.map(|b| b.delivery_blocks))
            .ok_or_else(|| need("delivery-blocks"))?,
        doc: doc
            .or_else(|| base.map(|b| b.doc.clone()))
            .ok_or_else(|| need("doc"))?,
    })
}

fn case_json(c: &CaseArgs) -> CaseJson {
    CaseJson {
        statement: c.statement.clone(),
        evidence: c.evidence.clone(),
    }
}

fn salt() -> Result<[u8; 32]> {
    let mut s = [0u8; 32];
    getrandom::fill(&mut s).map_err(|e| anyhow!("no randomness for a salt: {e}"))?;
    Ok(s)
}

fn parse_hash(what: &str, s: &str) -> Result<Hash> {
    Hash::from_hex(s.trim()).ok_or_else(|| anyhow!("{what} must be 64 hex digits, got {s:?}"))
}

/// Keeps a new sealed rating or vote; never replaces one (its salt is the
/// only way to reveal what was committed).
fn write_sealed(path: &PathBuf, sealed: &Sealed, what: &str) -> Result<()> {
    if path.exists() {
        bail!(
            "a {what} for this order is already sealed ({}); reveal it with --reveal",
            path.display()
        );
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(&serde_json::to_vec_pretty(sealed)?)?;
        // On disk before the commitment is sent: it is the only way to reveal.
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

fn read_sealed(path: &PathBuf, what: &str) -> Result<Sealed> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "no sealed {what} at {} (it is written when the {what} is sealed, by this machine's CLI)",
            path.display()
        )
    })?;
    serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))
}

fn show_listing(l: &ListingView, out: Out) -> Result<()> {
    if out == Out::Json {
        return print_json(l);
    }
    let price: u64 = l.price.parse().unwrap_or(0);
    println!("listing {} ({}, shard {})", l.id, l.status, l.shard);
    println!("  {} [{}]", l.title, l.category);
    println!(
        "  {} by {}, delivered within {} blocks; {} orders",
        format_iost(price),
        l.provider,
        l.delivery_blocks,
        l.orders
    );
    println!(
        "  provider score {:.2}/5 from {} ratings; document {}",
        l.provider_score_milli as f64 / 1000.0,
        l.provider_ratings,
        l.doc
    );
    Ok(())
}

fn show_order(o: &OrderView, out: Out) -> Result<()> {
    if out == Out::Json {
        return print_json(o);
    }
    let price: u64 = o.price.parse().unwrap_or(0);
    println!("order {} ({}, shard {})", o.id, o.state, o.shard);
    println!("  listing {}; {} in escrow", o.listing, format_iost(price));
    println!("  buyer {}\n  provider {}", o.buyer, o.provider);
    if let Some(d) = o.due {
        println!("  moves by itself at block {d}");
    }
    if let Some(d) = &o.delivery {
        println!("  delivery {d}");
    }
    if let Some(s) = o.buyer_share {
        println!("  resolved: {:.1}% back to the buyer", s as f64 / 10_000.0);
    }
    if let Some(r) = o.rate_by {
        println!("  ratings committed until block {r}");
    }
    for r in &o.ratings {
        match (&r.scores, &r.comment) {
            (Some(s), Some(c)) => println!(
                "  {} rated {}/5 (quality {}, communication {}, timeliness {}), weight {}: {}",
                r.by,
                s.overall,
                s.quality,
                s.communication,
                s.timeliness,
                r.weight.unwrap_or(0),
                crate::store::printable(c)
            ),
            _ => println!("  {} sealed a rating at block {}", r.by, r.committed),
        }
        if let Some(resp) = &r.response {
            println!("    response: {}", crate::store::printable(resp));
        }
    }
    Ok(())
}

pub fn run(a: MarketArgs) -> Result<ExitCode> {
    let out = if a.json { Out::Json } else { Out::Text };
    let c = Ctx {
        client: a.node.client(),
        keystore: a.keystore.clone(),
        out,
        timeout: Duration::from_secs(a.timeout),
    };
    Ok(match a.command {
        MarketCommand::Create { from, terms } => {
            let t = terms_json(&c, &from, &terms, None)?;
            let id = c.send(&from, MarketCallJson::CreateListing(t))?;
            if let (Some(id), Out::Text) = (&id, out) {
                println!("listing {id}");
            }
            done(id)
        }
        MarketCommand::Update {
            listing,
            from,
            terms,
        } => {
            let base = c.client.listing(&listing)?;
            let t = terms_json(&c, &from, &terms, Some(&base))?;
            done(c.send(&from, MarketCallJson::UpdateListing { listing, terms: t })?)
        }
        MarketCommand::Pause { listing, from } => {
            done(c.send(&from, status_call(listing, "paused"))?)
        }
        MarketCommand::Resume { listing, from } => {
            done(c.send(&from, status_call(listing, "active"))?)
        }
        MarketCommand::Close { listing, from } => {
            done(c.send(&from, status_call(listing, "closed"))?)
        }
        MarketCommand::Search {
            query,
            category,
            provider,
            min_price,
            max_price,
            sort,
            limit,
            offset,
        } => {
            let price = |p: &Option<String>, what: &str| -> Result<Option<u64>> {
                p.as_deref()
                    .map(|p| parse_iost(p).map_err(|e| anyhow!("--{what}: {e}")))
                    .transpose()
            };
            let provider = provider
                .map(|p| c.address(&p).map(|a| a.to_string()))
                .transpose()?;
            let found = c
                .client
                .search_listings(&ios_web::types::ListingSearchParams {
                    q: query,
                    category,
                    provider,
                    min_price: price(&min_price, "min-price")?,
                    max_price: price(&max_price, "max-price")?,
                    sort: Some(sort),
                    offset,
                    limit: Some(limit),
                })?;
            if out == Out::Json {
                print_json(&found)?;
            } else {
                println!("{} listings found", found.total);
                for h in &found.hits {
                    let price: u64 = h.price.parse().unwrap_or(0);
                    println!(
                        "{}  {}  [{}]  {}  score {:.2} ({} ratings)  by {}",
                        h.id,
                        crate::store::printable(&h.title),
                        h.category,
                        format_iost(price),
                        h.provider_score_milli as f64 / 1000.0,
                        h.provider_ratings,
                        h.provider
                    );
                }
            }
            ExitCode::SUCCESS
        }
        MarketCommand::List { provider } => {
            let who = c.address(&provider)?;
            let ls = c.client.listings(&who.to_string())?;
            if out == Out::Json {
                print_json(&ls)?;
            } else if ls.is_empty() {
                println!("{who} has no listings");
            }
            if out == Out::Text {
                for l in &ls {
                    show_listing(l, out)?;
                }
            }
            ExitCode::SUCCESS
        }
        MarketCommand::Orders { account } => {
            let who = c.address(&account)?;
            let os = c.client.market_orders(&who.to_string())?;
            if out == Out::Json {
                print_json(&os)?;
            } else if os.is_empty() {
                println!("{who} has no orders");
            } else {
                for o in &os {
                    show_order(o, out)?;
                }
            }
            ExitCode::SUCCESS
        }
        MarketCommand::Show { id } => {
            parse_hash("the id", &id)?;
            match c.client.listing(&id) {
                Ok(l) => show_listing(&l, out)?,
                Err(e) if e.code() == Some("not_found") => {
                    let o = c
                        .client
                        .market_order(&id)
                        .with_context(|| format!("{id} is neither a listing nor an order"))?;
                    show_order(&o, out)?;
                    if o.state == "disputed" || o.state == "resolved" {
                        if let Ok(d) = c.client.dispute(&id) {
                            if out == Out::Json {
                                print_json(&d)?;
                            } else {
                                println!(
                                    "  dispute by the {} at block {}: {}",
                                    d.opened_by,
                                    d.opened,
                                    crate::store::printable(&d.statement)
                                );
                                println!(
                                    "  jury (draw {}): {} jurors, votes committed by block {}, revealed by {}",
                                    d.round,
                                    d.jurors.len(),
                                    d.commit_by,
                                    d.reveal_by
                                );
                            }
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            }
            ExitCode::SUCCESS
        }
        MarketCommand::Order { listing, from } => {
            let l = c.client.listing(&listing)?;
            if l.status != "active" {
                bail!("listing {listing} is {}, not taking orders", l.status);
            }
            let price: Amount = l
                .price
                .parse()
                .map_err(|e| anyhow!("listing {listing} has price {:?}: {e}", l.price))?;
            let id = c.send_as(
                &from,
                MarketCallJson::PlaceOrder {
                    listing,
                    price: l.price.clone(),
                },
                Some((l.shard, price)),
            )?;
            if let (Some(id), Out::Text) = (&id, out) {
                println!("order {id}");
            }
            done(id)
        }
        MarketCommand::Accept { order, from } => {
            done(c.send(&from, MarketCallJson::Accept { order })?)
        }
        MarketCommand::Decline { order, from } => {
            done(c.send(&from, MarketCallJson::Decline { order })?)
        }
        MarketCommand::Cancel { order, from } => {
            done(c.send(&from, MarketCallJson::Cancel { order })?)
        }
        MarketCommand::Deliver {
            order,
            delivery,
            file,
            from,
        } => {
            let delivery = match (delivery, file) {
                (Some(d), _) => d,
                (None, Some(file)) => {
                    let buyer = c.client.market_order(&order)?.buyer;
                    let mut put = PutArgs::new(file, &from);
                    put.private = true;
                    put.reader = vec![buyer.clone()];
                    let o = put_object(&c.client, &c.keystore, &put)?;
                    eprintln!("stored the delivery as {}, readable by {buyer}", o.content);
                    o.content
                }
                (None, None) => bail!("give --delivery CID or --file FILE"),
            };
            done(c.send(&from, MarketCallJson::Deliver { order, delivery })?)
        }
        MarketCommand::Confirm { order, from } => {
            done(c.send(&from, MarketCallJson::Confirm { order })?)
        }
        MarketCommand::Dispute { order, from, case } => done(c.send(
            &from,
            MarketCallJson::Dispute {
                order,
                case: case_json(&case),
            },
        )?),
        MarketCommand::Answer { order, from, case } => done(c.send(
            &from,
            MarketCallJson::Answer {
                order,
                case: case_json(&case),
            },
        )?),
        MarketCommand::Jury { action, from } => done(c.send(
            &from,
            if action == "join" {
                MarketCallJson::JoinJuryPool
            } else {
                MarketCallJson::LeaveJuryPool
            },
        )?),
        MarketCommand::Vote {
            order,
            share,
            from,
            reveal,
            no_wait,
        } => vote(&c, order, share, &from, reveal, no_wait)?,
        MarketCommand::Rate {
            order,
            from,
            overall,
            quality,
            communication,
            timeliness,
            comment,
            reveal,
            wait,
        } => {
            let scores = overall.map(|o| ScoresJson {
                overall: o,
                quality: quality.unwrap_or(o),
                communication: communication.unwrap_or(o),
                timeliness: timeliness.unwrap_or(o),
            });
            rate(&c, order, &from, scores, comment, reveal, wait)?
        }
        MarketCommand::Respond { order, text, from } => {
            done(c.send(&from, MarketCallJson::Respond { order, text })?)
        }
        MarketCommand::Reputation { account } => {
            let who = c.address(&account)?;
            let r = c.client.reputation(&who.to_string())?;
            if out == Out::Json {
                print_json(&r)?;
            } else {
                let s = r.scores_milli.map(|m| m as f64 / 1000.0);
                println!("{} (shard {})", r.address, r.shard);
                println!(
                    "  {} ratings: overall {:.2}, quality {:.2}, communication {:.2}, timeliness {:.2}",
                    r.ratings, s[0], s[1], s[2], s[3]
                );
                println!(
                    "  stars 1..5: {:?}; reputation {:.1}%, believability {:.1}%, Servi {}",
                    r.histogram,
                    r.reputation as f64 / 10_000.0,
                    r.believability as f64 / 10_000.0,
                    r.servi
                );
                let t = &r.trust;
                if t.heights.is_empty() {
                    println!("  global trust: not computed yet at this gateway");
                } else {
                    let place = t.place.map_or_else(
                        || "no trust".to_string(),
                        |p| format!("#{p} of {}", t.trusted_accounts),
                    );
                    println!(
                        "  global trust {:.4}% ({place}{}; from {} ratings)",
                        t.trust_ppm as f64 / 10_000.0,
                        if t.pre_trusted { ", pre-trusted" } else { "" },
                        t.ratings
                    );
                }
            }
            ExitCode::SUCCESS
        }
    })
}

fn status_call(listing: String, status: &str) -> MarketCallJson {
    MarketCallJson::SetListingStatus {
        listing,
        status: status.into(),
    }
}

fn vote(
    c: &Ctx,
    order: String,
    share: Option<f64>,
    from: &str,
    reveal: bool,
    no_wait: bool,
) -> Result<ExitCode> {
    let me = c.address(from)?;
    let id = parse_hash("the order", &order)?;
    let order = id.to_hex();
    let round = c.client.dispute(&order)?.round;
    let path = c.sealed_path(&format!("vote{round}"), &id, &me);
    if !reveal {
        let pct = share.ok_or_else(|| anyhow!("--share (0 to 100) is required to vote"))?;
        if !(0.0..=100.0).contains(&pct) {
            bail!("--share is a percentage from 0 to 100, got {pct}");
        }
        let ppm = (pct * 10_000.0).round() as u32;
        let d = c.client.dispute(&order)?;
        if !d.jurors.iter().any(|j| j.address == me.to_string()) {
            bail!(
                "{me} is not drawn as a juror of this dispute (draw {})",
                d.round
            );
        }
        let s = salt()?;
        let commitment = ios_market::jury::vote_commitment(&id, &me, d.round, ppm, &s);
        // Kept before sending: a vote sealed on chain must stay revealable.
        write_sealed(
            &path,
            &Sealed {
                salt: ios_web::hex::encode(&s),
                share: Some(ppm),
                rating: None,
                round: Some(d.round),
            },
            "vote",
        )?;
        let sent = c.send(
            from,
            MarketCallJson::JuryCommit {
                order: order.clone(),
                commitment: commitment.to_hex(),
            },
        );
        // Refused by the chain: the salt is of no use. (An error while
        // waiting keeps it: the commitment may still land.)
        if sent?.is_none() {
            // Refused: the salt is of no use, unless a commitment from an
            // earlier try is what the chain holds.
            let held = c
                .client
                .dispute(&order)?
                .jurors
                .iter()
                .any(|j| j.address == me.to_string() && j.committed);
            if !held {
                let _ = std::fs::remove_file(&path);
            }
            return Ok(ExitCode::FAILURE);
        }
        if no_wait {
            eprintln!(
                "vote sealed; reveal it after block {} with --reveal",
                d.commit_by
            );
            return Ok(ExitCode::SUCCESS);
        }
    }
    let sealed = read_sealed(&path, "vote")?;
    let shard = c.client.market_order(&order)?.shard;
    let mut progress = Progress::new();
    loop {
        let d = c.client.dispute(&order)?;
        let all = d.jurors.iter().all(|j| j.committed);
        if all || c.height(shard)? > d.commit_by {
            break;
        }
        if progress.elapsed() > c.timeout {
            bail!(
                "the jury's commitment window runs to block {}; reveal after it with `ios market vote {order} --reveal --from {from}`",
                d.commit_by
            );
        }
        progress.update(&format!(
            "waiting for the other jurors or block {}",
            d.commit_by
        ));
        std::thread::sleep(Duration::from_secs(1));
    }
    progress.finish();
    let id = c.send(
        from,
        MarketCallJson::JuryReveal {
            order,
            share: sealed.share.unwrap_or(0),
            salt: sealed.salt,
        },
    )?;
    if id.is_some() {
        let _ = std::fs::remove_file(&path);
    }
    Ok(done(id))
}

fn rate(
    c: &Ctx,
    order: String,
    from: &str,
    scores: Option<ScoresJson>,
    comment: String,
    reveal: bool,
    wait: bool,
) -> Result<ExitCode> {
    let me = c.address(from)?;
    let id = parse_hash("the order", &order)?;
    let order = id.to_hex();
    let path = c.sealed_path("rating", &id, &me);
    if !reveal {
        let s = scores.ok_or_else(|| anyhow!("--overall (1 to 5) is required to rate"))?;
        let rating = Rating {
            scores: Scores {
                overall: s.overall,
                quality: s.quality,
                communication: s.communication,
                timeliness: s.timeliness,
            },
            comment: comment.clone(),
        };
        rating.validate()?;
        let o = c.client.market_order(&order)?;
        if o.buyer != me.to_string() && o.provider != me.to_string() {
            bail!("{me} is neither the buyer nor the provider of order {order}");
        }
        let salt = salt()?;
        let commitment = rating.commitment(&id, &me.0, &salt);
        write_sealed(
            &path,
            &Sealed {
                salt: ios_web::hex::encode(&salt),
                share: None,
                rating: Some((s, comment)),
                round: None,
            },
            "rating",
        )?;
        let sent = c.send(
            from,
            MarketCallJson::CommitRating {
                order: order.clone(),
                commitment: commitment.to_hex(),
            },
        );
        if sent?.is_none() {
            // Refused: the salt is of no use, unless a commitment from an
            // earlier try is what the chain holds.
            let side = if o.buyer == me.to_string() {
                "buyer"
            } else {
                "provider"
            };
            let held = c
                .client
                .market_order(&order)?
                .ratings
                .iter()
                .any(|r| r.by == side);
            if !held {
                let _ = std::fs::remove_file(&path);
            }
            return Ok(ExitCode::FAILURE);
        }
        if !wait {
            eprintln!(
                "rating sealed; reveal it once the other side has rated (or after block {}) with `ios market rate {order} --reveal --from {from}`",
                o.rate_by.unwrap_or(0)
            );
            return Ok(ExitCode::SUCCESS);
        }
    }
    let sealed = read_sealed(&path, "rating")?;
    let (scores, comment) = sealed
        .rating
        .ok_or_else(|| anyhow!("{} holds no rating", path.display()))?;
    let mut progress = Progress::new();
    loop {
        let o = c.client.market_order(&order)?;
        let both = o.ratings.len() == 2;
        if both
            || o.rate_by
                .is_some_and(|r| c.height(o.shard).unwrap_or(0) > r)
        {
            break;
        }
        if !wait || progress.elapsed() > c.timeout {
            progress.finish();
            bail!(
                "the other side has not rated yet; the rating can be revealed once it has, or after block {}",
                o.rate_by.unwrap_or(0)
            );
        }
        progress.update("waiting for the other side's rating");
        std::thread::sleep(Duration::from_secs(1));
    }
    progress.finish();
    let id = c.send(
        from,
        MarketCallJson::RevealRating {
            order,
            scores,
            comment,
            salt: sealed.salt,
        },
    )?;
    if id.is_some() {
        let _ = std::fs::remove_file(&path);
    }
    Ok(done(id))
}
