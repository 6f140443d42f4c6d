//! `ios devnet --demo`: seeds a fresh devnet with a living marketplace
//! through the gateway's API, as its users would: providers list services
//! (each with an image and a document in HUDS), buyers order them, the
//! providers deliver files sealed to the buyers, and both sides rate.
//!
//! Uses the first devnet user accounts only (the built-in load leaves
//! them alone): users 0-3 are the pre-trusted providers, 4-7 the buyers.

use crate::client::{put_signed, send_market, wait_for_providers, Client};
use crate::types::{ListingTermsJson, MarketCallJson, ObjectMetaJson, ScoresJson};
use anyhow::{ensure, Context, Result};
use ios_chain::crypto::Keypair;
use std::time::{Duration, Instant};

/// Devnet user accounts the demo (and people) use, out of the load's way.
pub const DEMO_USERS: usize = 8;
const TX_TIMEOUT: Duration = Duration::from_secs(60);
const STORE_TIMEOUT: Duration = Duration::from_secs(120);

struct Service {
    title: &'static str,
    category: &'static str,
    /// Hundredths of an IOST.
    price_cents: u64,
    description: &'static str,
    tint: [u8; 3],
}

const SERVICES: [Service; 8] = [
    Service { title: "Logo design in three drafts", category: "design", price_cents: 250, description: "Hand-drawn logo concepts for a small business, three drafts and one round of changes.", tint: [220, 80, 60] },
    Service { title: "Landing page copywriting", category: "writing", price_cents: 180, description: "A clear, friendly landing page text of up to 600 words, written for your customers.", tint: [60, 140, 220] },
    Service { title: "Rust code review", category: "development", price_cents: 500, description: "A careful review of up to 1,500 lines of Rust: correctness, error handling, performance.", tint: [230, 120, 30] },
    Service { title: "Spreadsheet cleanup and charts", category: "data", price_cents: 120, description: "Tidy a messy spreadsheet, remove duplicates, and add three clear charts.", tint: [40, 170, 110] },
    Service { title: "English to Spanish translation", category: "translation", price_cents: 200, description: "Up to 2,000 words translated by a native speaker, with a glossary of your terms.", tint: [200, 60, 160] },
    Service { title: "Podcast audio mastering", category: "audio", price_cents: 300, description: "Noise removal, levelling and mastering of one episode up to an hour long.", tint: [110, 90, 220] },
    Service { title: "Product photo retouching", category: "design", price_cents: 90, description: "Background removal and colour correction for up to ten product photos.", tint: [240, 180, 40] },
    Service { title: "Short explainer video edit", category: "video", price_cents: 450, description: "Edit your footage into a 60-second explainer with captions and music.", tint: [30, 120, 140] },
];

/// What the demo made.
#[derive(Debug, Default)]
pub struct DemoReport {
    pub listings: Vec<String>,
    pub orders: Vec<String>,
}

/// Seeds the devnet behind `c`; `progress` hears each step.
pub fn seed(c: &Client, progress: &(dyn Fn(&str) + Sync)) -> Result<DemoReport> {
    let t0 = Instant::now();
    let users = ios_node::devnet::user_keys(DEMO_USERS);
    let (providers, buyers) = users.split_at(4);
    let accounts = c.status()?.shards as usize;
    wait_for_providers(c, 6 * accounts, Duration::from_secs(180))?;
    // Each provider lists two services (in parallel: one account each).
    let listed: Vec<Result<Vec<String>>> = std::thread::scope(|s| {
        let handles: Vec<_> = providers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                s.spawn(move || -> Result<Vec<String>> {
                    let mut ids = Vec::new();
                    for svc in [&SERVICES[i], &SERVICES[i + 4]] {
                        ids.push(list(c, p, svc)?);
                        progress(&format!("listed {:?}", svc.title));
                    }
                    Ok(ids)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a demo thread panicked"))
            .collect()
    });
    let mut report = DemoReport::default();
    for l in listed {
        report.listings.extend(l?);
    }
    // Each buyer orders from one provider; all complete and are rated.
    let orders: Vec<Result<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = buyers
            .iter()
            .zip(providers)
            .enumerate()
            .map(|(i, (b, p))| {
                let listing = report.listings[2 * i].clone();
                s.spawn(move || -> Result<String> {
                    let id = trade(c, b, p, &listing, 5 - (i % 2) as u8)?;
                    progress(&format!("order {} completed and rated", &id[..12]));
                    Ok(id)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a demo thread panicked"))
            .collect()
    });
    for o in orders {
        report.orders.push(o?);
    }
    progress(&format!(
        "{} listings and {} rated orders in {:.0} s",
        report.listings.len(),
        report.orders.len(),
        t0.elapsed().as_secs_f64()
    ));
    Ok(report)
}

fn market(c: &Client, key: &Keypair, call: MarketCallJson) -> Result<String> {
    send_market(c, key, call, TX_TIMEOUT)
}

fn store(c: &Client, key: &Keypair, bytes: &[u8], meta: ObjectMetaJson) -> Result<String> {
    Ok(put_signed(c, key, bytes, (4, 2), 1_000, meta, STORE_TIMEOUT)?.content)
}

/// Lists `svc` as `p`: its image and its document in HUDS, then the listing.
fn list(c: &Client, p: &Keypair, svc: &Service) -> Result<String> {
    let image = store(
        c,
        p,
        &png(320, 200, svc.tint),
        ObjectMetaJson {
            name: format!("{}.png", svc.category),
            mime: "image/png".into(),
            tags: vec!["listing-image".into()],
            description: String::new(),
            public: true,
        },
    )?;
    let doc = serde_json::json!({"description": svc.description, "images": [image]});
    let doc = store(
        c,
        p,
        doc.to_string().as_bytes(),
        ObjectMetaJson {
            name: svc.title.into(),
            mime: crate::ui::LISTING_DOC_MIME.into(),
            tags: vec!["listing".into()],
            description: svc.description.into(),
            public: true,
        },
    )?;
    market(
        c,
        p,
        MarketCallJson::CreateListing(ListingTermsJson {
            title: svc.title.into(),
            category: svc.category.into(),
            price: (svc.price_cents * 1_000_000).to_string(),
            delivery_blocks: 600,
            doc,
        }),
    )
}

/// One whole order: placed, accepted, delivered (sealed to the buyer),
/// confirmed, rated by both sides and revealed.
fn trade(c: &Client, buyer: &Keypair, p: &Keypair, listing: &str, stars: u8) -> Result<String> {
    let l = c.listing(listing)?;
    let order = market(
        c,
        buyer,
        MarketCallJson::PlaceOrder {
            listing: listing.into(),
            price: l.price.clone(),
        },
    )?;
    // A buyer on another shard pays through Atomix: the order exists on
    // the listing's shard once the transfer commits there.
    let deadline = Instant::now() + TX_TIMEOUT;
    while c.market_order(&order).is_err() {
        ensure!(
            Instant::now() < deadline,
            "order {order} did not reach the listing's shard"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    market(
        c,
        p,
        MarketCallJson::Accept {
            order: order.clone(),
        },
    )?;
    let sealed = seal_for(
        format!(
            "Delivery for {:?}: the finished work, as agreed.\n",
            l.title
        )
        .as_bytes(),
        &[buyer.address(), p.address()],
    )?;
    let delivery = store(
        c,
        p,
        &sealed,
        ObjectMetaJson {
            name: "delivery.txt".into(),
            mime: "text/plain".into(),
            ..Default::default()
        },
    )?;
    market(
        c,
        p,
        MarketCallJson::Deliver {
            order: order.clone(),
            delivery,
        },
    )?;
    market(
        c,
        buyer,
        MarketCallJson::Confirm {
            order: order.clone(),
        },
    )?;
    let id = ios_chain::hash::Hash::from_hex(&order).context("an order id")?;
    let mut revealed = Vec::new();
    for (who, s, comment) in [
        (buyer, stars, "Clear communication and delivered on time."),
        (p, 5, "Prompt payment, a pleasure to work with."),
    ] {
        let rating = ios_market::ftfs::Rating {
            scores: ios_market::ftfs::Scores {
                overall: s,
                quality: s,
                communication: 5,
                timeliness: s,
            },
            comment: comment.into(),
        };
        let mut salt = [0u8; 32];
        getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let commitment = rating.commitment(&id, &who.address().0, &salt).to_hex();
        market(
            c,
            who,
            MarketCallJson::CommitRating {
                order: order.clone(),
                commitment,
            },
        )?;
        revealed.push((who, rating, salt));
    }
    for (who, rating, salt) in revealed {
        let s = rating.scores;
        market(
            c,
            who,
            MarketCallJson::RevealRating {
                order: order.clone(),
                scores: ScoresJson {
                    overall: s.overall,
                    quality: s.quality,
                    communication: s.communication,
                    timeliness: s.timeliness,
                },
                comment: rating.comment,
                salt: ios_chain::hex::encode(&salt),
            },
        )?;
    }
    Ok(order)
}

/// `plain` as a private object sealed to `readers` (as the CLI and the
/// browser make them).
pub fn seal_for(plain: &[u8], readers: &[ios_chain::crypto::Address]) -> Result<Vec<u8>> {
    let readers = readers
        .iter()
        .map(ios_storage::crypt::ReaderKey::of_address)
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mut out = Vec::new();
    ios_storage::crypt::write_private(
        plain,
        &readers,
        |b| getrandom::fill(b).map_err(std::io::Error::other),
        &mut out,
    )?;
    Ok(out)
}

/// A `w` x `h` PNG: a gradient from `tint` (stored deflate, no compression
/// library needed).
pub fn png(w: u32, h: u32, tint: [u8; 3]) -> Vec<u8> {
    fn crc(data: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for b in data {
            c ^= *b as u32;
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let c = crc(&out[start..]);
        out.extend_from_slice(&c.to_be_bytes());
    }
    let mut raw = Vec::with_capacity((h * (1 + 3 * w)) as usize);
    for y in 0..h {
        raw.push(0);
        for x in 0..w {
            let shade = |t: u8, f: u32| (t as u32 * (2 * w + h - f) / (2 * w + h)) as u8;
            raw.extend_from_slice(&[
                shade(tint[0], x),
                shade(tint[1], y),
                shade(tint[2], (x + y) / 2),
            ]);
        }
    }
    let (mut a, mut b) = (1u32, 0u32);
    for x in &raw {
        a = (a + *x as u32) % 65521;
        b = (b + a) % 65521;
    }
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65535).collect();
    for (i, block) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        z.extend_from_slice(&(block.len() as u16).to_le_bytes());
        z.extend_from_slice(&(!(block.len() as u16)).to_le_bytes());
        z.extend_from_slice(block);
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}
