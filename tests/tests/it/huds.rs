//! HUDS on a whole devnet: providers register themselves, an object goes
//! up through the gateway's API, its deal is made and signed by the owner,
//! the gateway pushes the fragments to the providers the chain placed them
//! on, providers sign receipts; the object reads back byte-for-byte, whole
//! and by range, while providers serve corrupt bytes or go down (up to m
//! of them), and fails cleanly (an error, never wrong bytes) past that.

use anyhow::{ensure, Context, Result};
use ios_chain::crypto::Keypair;
use ios_node::devnet::{provider_keys, user_keys, Devnet, DevnetConfig};
use ios_node::huds::provider_key;
use ios_web::client::{put_signed, Client};
use ios_web::types::{ObjectMetaJson, SearchParams};
use std::time::{Duration, Instant};

fn wait<T>(what: &str, secs: u64, mut f: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        ensure!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `n` bytes that do not repeat (so that every segment differs).
fn object(n: usize, seed: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; n];
    blake3::Hasher::new()
        .update(seed)
        .finalize_xof()
        .fill(&mut out);
    out
}

fn download(c: &Client, content: &str, range: Option<(u64, u64)>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    c.download(content, range, &mut out, |_| {})?;
    Ok(out)
}

/// Stores `data` as `owner` (upload, deal, every receipt); returns the
/// content id, checked to be the blake3 of the bytes.
fn store(c: &Client, owner: &Keypair, data: &[u8], meta: ObjectMetaJson) -> Result<String> {
    let o = put_signed(
        c,
        owner,
        data,
        (4, 2),
        1_000,
        meta,
        Duration::from_secs(180),
    )?;
    ensure!(
        o.content == blake3::hash(data).to_hex().as_str(),
        "the gateway's content id is not the blake3 of the bytes"
    );
    Ok(o.content)
}

/// A devnet with its gateway's API on a free port; IOS_LOG shows its logs.
async fn devnet(cfg: &DevnetConfig) -> Result<(Devnet, ios_web::ApiServer, String)> {
    if let Ok(f) = tracing_subscriber::EnvFilter::try_from_env("IOS_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(f).try_init();
    }
    let net = Devnet::start(cfg).await?;
    let api = ios_web::serve(net.gateway.clone(), "127.0.0.1:0".parse()?).await?;
    let url = format!("http://{}", api.addr);
    Ok((net, api, url))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_are_stored_and_read_back_while_providers_fail() -> Result<()> {
    let t0 = Instant::now();
    let step = |what: &str| eprintln!("[{:6.1} s] {what}", t0.elapsed().as_secs_f64());
    let dir = tempfile::tempdir()?;
    let cfg = DevnetConfig {
        shards: 2,
        committee: 4,
        data_dir: dir.path().to_path_buf(),
        load_tps: 0,
        users: 4,
        duration: None,
        epoch_length: 20,
        providers: 6,
        idle_block_ms: 200,
    };
    let (net, api, url) = devnet(&cfg).await?;
    let owner = user_keys(cfg.users)[0].clone();
    let data = object(20 << 20, b"huds-e2e");
    let started = (net.providers[0].clone(), net.gateway.clone());
    // A small public text object: found by search by the words of its text.
    let small = b"Field notes: the heliotrope by the north wall flowered early.\n".repeat(16);

    // Up to the first failure: store three objects and read them back.
    let (u, o, d, sm) = (url.clone(), owner.clone(), data.clone(), small.clone());
    let (big, little) = tokio::task::spawn_blocking(move || -> Result<(String, String)> {
        let c = Client::new(&u);
        wait("6 providers registered on each account shard", 180, || {
            Ok((c.providers()?.len() == 12).then_some(()))
        })?;
        eprintln!("providers registered");
        providers_follow_by_pulling(&started.0, &started.1)?;
        let meta =
            |name: &str, mime: &str, tags: &[&str], description: &str, public| ObjectMetaJson {
                name: name.into(),
                mime: mime.into(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                description: description.into(),
                public,
            };
        let big = store(
            &c,
            &o,
            &d,
            meta(
                "survey.bin",
                "application/octet-stream",
                &["survey", "raw"],
                "Raw lidar survey of the north field",
                true,
            ),
        )?;
        eprintln!("stored 20 MiB");
        let little = store(
            &c,
            &o,
            &sm,
            meta("notes.txt", "text/plain", &["notes"], "Garden notes", true),
        )?;
        eprintln!("stored {} bytes of text", sm.len());
        let unlisted = store(
            &c,
            &o,
            b"an unlisted plan",
            meta("secret-plan.txt", "text/plain", &[], "", false),
        )?;
        search_finds_public_objects(&c, &big, &little, &unlisted)?;
        eprintln!("search finds the public objects");
        let obj = c.object(&big)?;
        ensure!(obj.segments == 2 && obj.fragments == 12, "{obj:?}");
        ensure!(
            download(&c, &big, None)? == d,
            "the object read back differs"
        );
        eprintln!("read back");
        ensure!(
            download(&c, &little, None)? == sm,
            "the small object differs"
        );
        let range = (16_777_000u64, 16_778_000u64);
        ensure!(
            download(&c, &big, Some(range))? == d[range.0 as usize..range.1 as usize],
            "a range across two segments differs"
        );
        let listed = c.objects(&o.address().to_string())?;
        ensure!(listed.len() == 3, "ls shows {listed:?}");
        ensure!(
            listed
                .iter()
                .any(|l| l.meta.name == "secret-plan.txt" && !l.meta.public),
            "the unlisted object's metadata: {listed:?}"
        );
        let held: usize = c.providers()?.iter().map(|p| p.held_fragments).sum();
        ensure!(held == 12 + 6 + 6, "providers hold {held} fragments");
        // The next epochs' audits: providers prove chunks and are paid.
        wait("an audit passed and paid", 90, || {
            Ok(c.providers()?
                .iter()
                .any(|p| p.audits_passed > 0 && p.servi_earned > 0 && p.iost_earned != "0")
                .then_some(()))
        })?;
        eprintln!("audits passed");
        // Unknown content: a typed 404.
        let unknown = "00".repeat(32);
        let e = c.object(&unknown).unwrap_err();
        ensure!(e.code() == Some("not_found"), "{e}");
        Ok((big, little))
    })
    .await??;

    // A provider whose disk corrupted every fragment: detected on read,
    // never served; the reader takes the others.
    let frags = dir.path().join("provider-5").join("huds").join("fragments");
    let mut corrupted = 0;
    for e in std::fs::read_dir(&frags).with_context(|| format!("{}", frags.display()))? {
        let p = e?.path();
        if p.is_file() && p.file_name().is_some_and(|n| n.len() > 64) {
            let mut b = std::fs::read(&p)?;
            b[0] ^= 0xFF;
            std::fs::write(&p, b)?;
            corrupted += 1;
        }
    }
    ensure!(corrupted == 4, "provider-5 held {corrupted} fragment files");
    step("provider-5's fragments corrupted");
    // Its next audit fails (it cannot prove a chunk of a corrupt
    // fragment): a strike on chain.
    let shard = ios_chain::shard::home_shard(&owner.address(), cfg.shards);
    let p5 = provider_key(&provider_keys(6)[5], shard, cfg.shards)
        .address()
        .to_string();
    let (u, p) = (url.clone(), p5.clone());
    tokio::task::spawn_blocking(move || {
        let c = Client::new(&u);
        wait("a strike on the corrupt provider", 90, || {
            Ok(c.providers()?
                .iter()
                .any(|v| v.address == p && v.strikes > 0 && v.audits_failed > 0)
                .then_some(()))
        })
    })
    .await??;
    step("its audit failed: a strike");
    // Then providers go down one by one: with m = 2 bad, still readable.
    for down in 0..2 {
        if down > 0 {
            net.stop_provider(down - 1);
        }
        let (u, b, d) = (url.clone(), big.clone(), data.clone());
        tokio::task::spawn_blocking(move || -> Result<()> {
            let c = Client::new(&u);
            ensure!(
                download(&c, &b, None)? == d,
                "with {down} providers down and one corrupt, the object differs"
            );
            Ok(())
        })
        .await??;
        step(&format!("read with {down} providers down and one corrupt"));
    }
    // Three bad of six: more than m. The read fails; no wrong bytes.
    net.stop_provider(1);
    let (u, l) = (url.clone(), little.clone());
    tokio::task::spawn_blocking(move || -> Result<()> {
        let c = Client::new(&u);
        let mut out = Vec::new();
        match c.download(&l, None, &mut out, |_| {}) {
            Ok(n) => anyhow::bail!("read {n} bytes with 3 of 6 fragments bad"),
            Err(e) => ensure!(e.code() == Some("unavailable"), "{e}"),
        }
        ensure!(out.is_empty(), "wrote bytes of an unreadable object");
        Ok(())
    })
    .await??;
    api.stop().await;
    let gateway_dir = net.gateway.data_dir.clone();
    net.stop().await?;
    // `ios reindex`: the stopped gateway's index is rebuilt from its chain
    // data: the two public objects, the text one's words to fetch again.
    let rebuilt = ios_node::catalog::rebuild(&gateway_dir, |_, _| {})?;
    ensure!(
        rebuilt.objects.values().sum::<usize>() == 2 && rebuilt.bodies_pending == 1,
        "{rebuilt:?}"
    );
    Ok(())
}

/// Search over what the devnet stored: by words of a description, a name
/// and a text object's text (once the catalog fetched it), by tag and media
/// type, sorted by size; the unlisted object is never found; a bad query
/// is a 400.
/// A provider is on no shard's gossip: it pulls the account shards' finalized
/// blocks, and keeps within a few blocks of the gateway (which gossips).
fn providers_follow_by_pulling(
    provider: &ios_node::node::NodeHandle,
    gateway: &ios_node::node::NodeHandle,
) -> Result<()> {
    let rt = tokio::runtime::Handle::current();
    let heights = |n: &ios_node::node::NodeHandle| {
        rt.block_on(n.query(|v| {
            let h: Vec<(u16, u64)> = v.replicas.iter().map(|(s, r)| (*s, r.height())).collect();
            (
                h,
                v.subscribed.iter().copied().collect::<Vec<_>>(),
                v.pulled.clone(),
            )
        }))
    };
    let (_, subscribed, pulled) = heights(provider)?;
    ensure!(
        subscribed.is_empty() && pulled == vec![1, 2],
        "the provider is subscribed to {subscribed:?} and pulls {pulled:?}"
    );
    let (_, on_gateway, pulled) = heights(gateway)?;
    ensure!(
        on_gateway == vec![0, 1, 2] && pulled.is_empty(),
        "the gateway gossips on {on_gateway:?} and pulls {pulled:?}"
    );
    wait("the provider to keep up with the gateway", 30, || {
        let (mine, ..) = heights(provider)?;
        let (theirs, ..) = heights(gateway)?;
        Ok(mine
            .iter()
            .all(|(s, h)| {
                theirs
                    .iter()
                    .any(|(t, g)| t == s && h + 10 >= *g && *h >= 20)
            })
            .then_some(()))
    })
}

fn search_finds_public_objects(c: &Client, big: &str, little: &str, unlisted: &str) -> Result<()> {
    let find = |q: &str| -> Result<Vec<String>> {
        Ok(c.search(&SearchParams {
            q: q.into(),
            ..Default::default()
        })?
        .hits
        .into_iter()
        .map(|h| h.content)
        .collect())
    };
    wait("the catalog to index the text object's words", 90, || {
        Ok((find("heliotrope")? == [little]).then_some(()))
    })?;
    // Everything stored so far has been read by the catalog (so that what
    // it does not find, it left out on purpose).
    let heights = c.status()?.shard_status;
    wait("the catalog to read every stored deal", 60, || {
        let seen = c.search(&SearchParams::default())?.indexed_heights;
        Ok(heights
            .iter()
            .all(|h| {
                seen.get(&h.shard.to_string())
                    .is_some_and(|s| *s >= h.height)
            })
            .then_some(()))
    })?;
    let r = c.search(&SearchParams {
        q: "lidar".into(),
        ..Default::default()
    })?;
    ensure!(r.hits.len() == 1 && r.hits[0].content == big, "{r:?}");
    ensure!(r.hits[0].snippet.contains("<b>lidar</b>"), "{r:?}");
    ensure!(r.hits[0].name == "survey.bin" && r.hits[0].size == 20 << 20);
    ensure!(find("notes.txt")? == [little], "by name");
    ensure!(
        find("secret")?.is_empty() && find("plan")?.is_empty(),
        "unlisted"
    );
    let all = c.search(&SearchParams {
        sort: Some("largest".into()),
        ..Default::default()
    })?;
    let order: Vec<&str> = all.hits.iter().map(|h| h.content.as_str()).collect();
    ensure!(order == [big, little] && all.total == 2, "{all:?}");
    ensure!(!order.contains(&unlisted));
    let tagged = c.search(&SearchParams {
        tags: Some("survey,raw".into()),
        ..Default::default()
    })?;
    ensure!(tagged.hits.len() == 1 && tagged.hits[0].content == big);
    let text = c.search(&SearchParams {
        mime: Some("text/plain".into()),
        ..Default::default()
    })?;
    ensure!(text.hits.len() == 1 && text.hits[0].content == little);
    let e = c
        .search(&SearchParams {
            limit: Some(1_000),
            ..Default::default()
        })
        .unwrap_err();
    ensure!(e.code() == Some("bad_request"), "{e}");
    Ok(())
}

/// Repair: with 8 providers, two holders of one segment go down; their
/// missed audits lose their fragments, the chain places them on the two
/// providers outside the segment, the gateway's repairer rebuilds them
/// there; a third holder of the segment then goes down and the objects
/// still read byte-for-byte (without repair, 3 of 6 would be gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_fragments_are_rebuilt_on_other_providers() -> Result<()> {
    let t0 = Instant::now();
    let step = |what: &str| eprintln!("[{:6.1} s] {what}", t0.elapsed().as_secs_f64());
    let dir = tempfile::tempdir()?;
    // One account shard: 8 providers on 2 shards would run 16 more
    // replicas on a 2-core machine that runs other tests beside this one.
    let cfg = DevnetConfig {
        shards: 1,
        committee: 4,
        data_dir: dir.path().to_path_buf(),
        load_tps: 0,
        users: 4,
        duration: None,
        epoch_length: 16,
        providers: 8,
        idle_block_ms: 200,
    };
    let (net, api, url) = devnet(&cfg).await?;
    let owner = user_keys(cfg.users)[1].clone();
    let shard = ios_chain::shard::home_shard(&owner.address(), cfg.shards);
    let masters = provider_keys(cfg.providers);
    let data = object(20 << 20, b"huds-repair");
    let small = object(300_000, b"huds-repair-small");

    let (u, o, d, sm) = (url.clone(), owner.clone(), data.clone(), small.clone());
    let (big, little, holders) =
        tokio::task::spawn_blocking(move || -> Result<(String, String, Vec<String>)> {
            let c = Client::new(&u);
            wait("8 providers registered", 180, || {
                Ok((c.providers()?.len() == 8).then_some(()))
            })?;
            let big = store(&c, &o, &d, ObjectMetaJson::default())?;
            let little = store(&c, &o, &sm, ObjectMetaJson::default())?;
            // Segment 0's holders, from the chain's placement.
            let holders = ios_web_placement(&c, &big)?;
            Ok((big, little, holders))
        })
        .await??;
    step("stored; segment 0 placed on 6 of the 8 providers");
    // Provider index (node) of an account on this shard.
    let node_of = |address: &str| -> Result<usize> {
        masters
            .iter()
            .position(|m| provider_key(m, shard, cfg.shards).address().to_string() == address)
            .context("a provider account of no devnet provider")
    };
    let read_both = |what: String| {
        let (u, b, l, d, sm) = (
            url.clone(),
            big.clone(),
            little.clone(),
            data.clone(),
            small.clone(),
        );
        async move {
            tokio::task::spawn_blocking(move || -> Result<()> {
                let c = Client::new(&u);
                ensure!(
                    download(&c, &b, None)? == d,
                    "{what}: the big object differs"
                );
                ensure!(
                    download(&c, &l, None)? == sm,
                    "{what}: the small object differs"
                );
                Ok(())
            })
            .await?
        }
    };
    for (n, h) in holders.iter().take(2).enumerate() {
        net.stop_provider(node_of(h)?);
        read_both(format!("{} holders down", n + 1)).await?;
        step(&format!(
            "provider of fragment 0/{n} down; both objects read back"
        ));
    }
    // Their missed audits lose their fragments; segment 0 is down to 4 of
    // 6 and its two lost fragments are placed anew and rebuilt.
    let (u, b, was) = (url.clone(), big.clone(), holders.clone());
    tokio::task::spawn_blocking(move || {
        let c = Client::new(&u);
        wait("segment 0 repaired on chain and rebuilt", 150, || {
            let o = c.object(&b)?;
            let moved = o.placement[0][0] != was[0] && o.placement[0][1] != was[1];
            // Every fragment not lost is signed for: the rebuilt ones too.
            Ok((moved && o.repairs >= 2 && o.receipted + o.lost == o.fragments).then_some(()))
        })
    })
    .await??;
    step("repaired: the lost fragments are on other providers, signed for");
    net.stop_provider(node_of(&holders[2])?);
    read_both("a third holder of segment 0 down, after repair".into()).await?;
    step("a third holder down: both objects still read back");
    api.stop().await;
    net.stop().await
}

/// The providers of segment 0 of `content`, in fragment order, as the
/// gateway's API reports the chain's deal.
fn ios_web_placement(c: &Client, content: &str) -> Result<Vec<String>> {
    Ok(c.object(content)?.placement.remove(0))
}
