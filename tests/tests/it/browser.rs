//! The web UI in a real browser (Debian's headless Chromium through
//! chromedriver) against a devnet: keys made and kept in the browser,
//! every transaction built by the gateway and signed in the page, private
//! deliveries sealed and opened in the page. Screenshots of each step go to
//! `target/tmp/browser/<test>/`.

use crate::webdriver::{Driver, Session};
use anyhow::{ensure, Context, Result};
use ios_chain::crypto::Keypair;
use ios_node::devnet::{user_keys, Devnet, DevnetConfig};
use ios_web::types::MarketCallJson;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A devnet (one account shard, 6 storage providers) with its gateway's API
/// and UI on a free port.
async fn devnet(dir: &Path) -> Result<(Devnet, ios_web::ApiServer, String)> {
    if let Ok(f) = tracing_subscriber::EnvFilter::try_from_env("IOS_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(f).try_init();
    }
    let cfg = DevnetConfig {
        shards: 1,
        committee: 4,
        data_dir: dir.to_path_buf(),
        load_tps: 0,
        users: 16,
        duration: None,
        epoch_length: 50,
        providers: 6,
        idle_block_ms: 200,
    };
    let net = Devnet::start(&cfg).await?;
    let api = ios_web::serve(net.gateway.clone(), "127.0.0.1:0".parse()?).await?;
    let url = format!("http://{}", api.addr);
    Ok((net, api, url))
}

/// Where a test's screenshots and files go (kept after the run).
fn output(test: &str) -> Result<PathBuf> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("browser")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A user of the UI: one browser with its own profile.
struct User {
    name: &'static str,
    s: Session,
    url: String,
    shots: PathBuf,
    n: std::cell::Cell<u32>,
}

impl User {
    fn new(driver: &Driver, name: &'static str, url: &str, out: &Path) -> Result<User> {
        let profile = out.join(format!("profile-{name}"));
        std::fs::create_dir_all(&profile)?;
        Ok(User {
            name,
            s: driver.session(&profile)?,
            url: url.to_string(),
            shots: out.to_path_buf(),
            n: Default::default(),
        })
    }

    fn open(&self, path: &str) -> Result<()> {
        self.s.goto(&format!("{}{path}", self.url))?;
        self.s.wait_for("main", 10)
    }

    fn shot(&self, what: &str) -> Result<()> {
        self.n.set(self.n.get() + 1);
        let file = self
            .shots
            .join(format!("{:02}-{}-{what}.png", self.n.get(), self.name));
        self.s.screenshot(&file)
    }

    /// Imports `key` through the wallet's backup import, as a user with a
    /// backup file would.
    fn import_key(&self, key: &Keypair) -> Result<()> {
        let file = self.shots.join(format!("key-{}.json", self.name));
        std::fs::write(
            &file,
            serde_json::to_vec(&json!({
                "ios_key": 1,
                "address": key.address().to_string(),
                "seed": ios_chain::hex::encode(&key.secret_bytes()),
            }))?,
        )?;
        self.open("/wallet")?;
        self.s.fill("#key-import", &file.display().to_string())?;
        let want = key.address().to_string();
        wait(&format!("{} holds its key", self.name), 20, || {
            Ok(self.s.text("#key-address").is_ok_and(|t| t.contains(&want)))
        })
    }

    /// Submits the form `css` and signs every transaction it asks for until
    /// `done` holds.
    fn submit_and_sign(&self, css: &str, done: impl Fn(&User) -> bool) -> Result<usize> {
        self.s.click(&format!("{css} button[type=submit]"))?;
        self.sign_until(css, done)
    }

    fn sign_until(&self, what: &str, done: impl Fn(&User) -> bool) -> Result<usize> {
        let t = Instant::now();
        let mut signed = 0;
        loop {
            if done(self) {
                return Ok(signed);
            }
            let open = self
                .s
                .exec(
                    "const d = document.querySelector('#sign'); return !!(d && d.open);",
                    json!([]),
                )
                .ok()
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            if open {
                let summary = self.text("#sign-summary");
                self.s.click("#sign-ok")?;
                signed += 1;
                eprintln!(
                    "  {} signed {summary:?} after {:.1} s",
                    self.name,
                    t.elapsed().as_secs_f64()
                );
            } else if let Some(msg) = self.s.toast().filter(|m| !m.starts_with("Signed")) {
                if !msg.is_empty() && !msg.starts_with("Decrypted") {
                    let _ = self.shot("error");
                    anyhow::bail!("{}: {what} failed in the page: {msg}", self.name);
                }
            }
            ensure!(
                t.elapsed() < Duration::from_secs(150),
                "{}: {what} did not finish in 150 s (at {})",
                self.name,
                self.s.url()?
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn path(&self) -> String {
        self.s
            .url()
            .unwrap_or_default()
            .trim_start_matches(&self.url)
            .to_string()
    }

    fn text(&self, css: &str) -> String {
        self.s.text(css).unwrap_or_default()
    }
}

fn wait(what: &str, secs: u64, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    let t = Instant::now();
    while !f().unwrap_or(false) {
        ensure!(
            t.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(())
}

fn on_order_page(u: &User) -> bool {
    u.path().starts_with("/orders/") && u.s.element_exists("#order")
}

fn order_state(u: &User) -> String {
    u.text("#order-state")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_finds_orders_receives_and_rates_a_service_in_the_browser() -> Result<()> {
    on_devnet("market", market_flow).await
}

/// Runs `flow(url, output)` against a fresh devnet, off the async runtime.
async fn on_devnet(test: &str, flow: fn(&str, &Path) -> Result<()>) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = output(test)?;
    let (net, api, url) = devnet(dir.path()).await?;
    let run = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || flow(&url, &out))
    };
    let result = run.await.context("the browser run panicked")?;
    api.stop().await;
    net.stop().await?;
    result
}

fn market_flow(url: &str, out: &Path) -> Result<()> {
    let t0 = Instant::now();
    let step = |what: &str| eprintln!("[{:6.1} s] {what}", t0.elapsed().as_secs_f64());
    let client = ios_web::client::Client::new(url);
    ios_web::client::wait_for_providers(&client, 6, Duration::from_secs(180))?;
    let keys = user_keys(8);
    let (provider_key, customer_key) = (&keys[1], &keys[5]);
    let driver = Driver::start()?;
    let provider = User::new(&driver, "provider", url, out)?;
    let customer = User::new(&driver, "customer", url, out)?;
    provider.import_key(provider_key)?;
    customer.import_key(customer_key)?;
    provider.shot("wallet")?;
    step("keys imported into both browsers");

    // The provider lists a service with an image.
    let image = out.join("logo.png");
    std::fs::write(&image, ios_web::demo::png(320, 200, [90, 160, 240]))?;
    provider.open("/sell")?;
    provider
        .s
        .fill("#listing-form [name=title]", "Hand-drawn logo design")?;
    provider.s.fill("#listing-form [name=price]", "2.5")?;
    provider
        .s
        .fill("#listing-form [name=delivery_blocks]", "400")?;
    provider.s.fill(
        "#listing-form [name=description]",
        "A hand-drawn logo for your heliograph workshop, three drafts included.",
    )?;
    provider
        .s
        .fill("#listing-form [name=image]", &image.display().to_string())?;
    provider.shot("sell-form")?;
    let signed = provider.submit_and_sign("#listing-form", |u| {
        u.path().starts_with("/listings/") && u.s.element_exists("#listing")
    })?;
    ensure!(
        signed == 3,
        "listing asked for {signed} signatures, not 3 (image deal, document deal, listing)"
    );
    let listing_path = provider.path();
    wait("the listing's image", 60, || {
        Ok(provider
            .s
            .exec(
                "const i = document.querySelector('.listing-image'); return !!(i && i.complete && i.naturalWidth === 320);",
                json!([]),
            )?
            .as_bool()
            == Some(true))
    })?;
    provider.shot("listing")?;
    step(&format!("listing published at {listing_path}"));

    // The customer finds it by search and orders it.
    wait("the listing to be searchable", 30, || {
        customer.open("/?q=heliograph")?;
        Ok(customer.text("#hits").contains("Hand-drawn logo design"))
    })?;
    customer.shot("search")?;
    customer.s.click("#hits a.title")?;
    customer.s.wait_for("#order-form", 10)?;
    customer.shot("listing")?;
    customer.submit_and_sign("#order-form", on_order_page)?;
    let order_path = customer.path();
    ensure!(
        order_state(&customer) == "funded",
        "a new order is {}",
        order_state(&customer)
    );
    customer.shot("order-placed")?;
    step(&format!("order placed: {order_path}"));

    // The provider accepts and delivers a file, sealed to the buyer here.
    provider.open(&order_path)?;
    provider.submit_and_sign("form[data-kind=accept]", |u| order_state(u) == "accepted")?;
    let delivery = out.join("logo-final.txt");
    std::fs::write(
        &delivery,
        "Three drafts of the heliograph logo, final version attached.\n",
    )?;
    provider
        .s
        .fill("#deliver-form [name=file]", &delivery.display().to_string())?;
    provider.shot("deliver-form")?;
    provider.submit_and_sign("#deliver-form", |u| order_state(u) == "delivered")?;
    provider.shot("delivered")?;
    step("accepted and delivered");

    // The customer opens the delivery in the browser and confirms.
    customer.open(&order_path)?;
    customer.s.wait_for("#open-delivery", 30)?;
    let content = customer.s.exec(
        "return document.querySelector('#open-delivery').dataset.content;",
        json!([]),
    )?;
    let plain = customer.s.exec_async(
        "const done = arguments[arguments.length - 1];
         IOS.openPrivate(arguments[0], 'delivery.txt')
           .then((b) => done(new TextDecoder().decode(b)), (e) => done('ERROR ' + e.message));",
        json!([content]),
    )?;
    ensure!(
        plain.as_str() == Some("Three drafts of the heliograph logo, final version attached.\n"),
        "the buyer's browser opened the delivery as {plain}"
    );
    customer.submit_and_sign("form[data-kind=confirm]", |u| order_state(u) == "completed")?;
    step("delivery decrypted in the buyer's browser and confirmed");

    // Both rate (sealed), then both reveal.
    customer.s.fill("#rate-form [name=quality]", "4")?;
    customer
        .s
        .fill("#rate-form [name=comment]", "Lovely drafts, quick replies.")?;
    customer.shot("rating")?;
    customer.submit_and_sign("#rate-form", |u| u.text("#ratings").contains("sealed"))?;
    provider.open(&order_path)?;
    provider.submit_and_sign("#rate-form", |u| {
        u.text("#ratings").matches("sealed").count() == 2
    })?;
    for u in [&customer, &provider] {
        u.open(&order_path)?;
        u.submit_and_sign("form[data-kind=reveal_rating]", |u| {
            !u.s.element_exists("form[data-kind=reveal_rating]") && u.path() == order_path
        })?;
    }
    customer.open(&order_path)?;
    ensure!(
        customer
            .text("#ratings")
            .contains("Lovely drafts, quick replies."),
        "the order shows ratings {:?}",
        customer.text("#ratings")
    );
    customer.shot("rated")?;
    step("both ratings committed and revealed");

    // The provider's profile shows the rating and its charts.
    customer.open(&format!("/providers/{}", provider_key.address()))?;
    ensure!(
        customer
            .text("#reviews")
            .contains("Lovely drafts, quick replies."),
        "the profile's reviews: {:?}",
        customer.text("#reviews")
    );
    ensure!(
        customer.s.element_exists("#histogram rect"),
        "no rating histogram"
    );
    ensure!(
        customer.s.element_exists("#over-time path"),
        "no rating-over-time chart"
    );
    customer.shot("profile")?;
    step("the provider's profile shows the rating");

    // Storage: a private file shared with the provider, sealed in the
    // browser, listed, and opened again in the browser.
    let notes = out.join("brief.txt");
    std::fs::write(
        &notes,
        "Brief for the next logo: warm colours, a heliograph.\n",
    )?;
    customer.open("/storage")?;
    customer
        .s
        .fill("#upload-form [name=file]", &notes.display().to_string())?;
    customer.s.click("#upload-form [name=public]")?;
    customer.s.fill(
        "#upload-form [name=readers]",
        &provider_key.address().to_string(),
    )?;
    customer.submit_and_sign("#upload-form", |u| u.text("#objects").contains("brief.txt"))?;
    ensure!(
        customer.text("#objects").contains("private"),
        "{}",
        customer.text("#objects")
    );
    customer.shot("storage")?;
    let content = customer.s.exec(
        "return document.querySelector('#objects .open-private').dataset.content;",
        json!([]),
    )?;
    for u in [&customer, &provider] {
        let plain = u.s.exec_async(
            "const done = arguments[arguments.length - 1];
             IOS.openPrivate(arguments[0], 'brief.txt')
               .then((b) => done(new TextDecoder().decode(b)), (e) => done('ERROR ' + e.message));",
            json!([content]),
        )?;
        ensure!(
            plain.as_str() == Some("Brief for the next logo: warm colours, a heliograph.\n"),
            "{} opened the shared file as {plain}",
            u.name
        );
    }
    step("a private file stored from the storage page and opened by both readers");
    Ok(())
}

/// The page's JavaScript crypto against the Rust crates it must match:
/// BLAKE3 (long inputs too), derived keys, rating and vote commitments,
/// addresses, and private objects sealed by each side and opened by the other.
#[test]
fn the_browsers_crypto_matches_the_rust_crates() -> Result<()> {
    let out = output("crypto")?;
    let page = out.join("crypto.html");
    std::fs::write(
        &page,
        format!(
            "<!DOCTYPE html><html><body><script>{}</script></body></html>",
            include_str!("../../../web/static/crypto.js")
        ),
    )?;
    let driver = Driver::start()?;
    let s = driver.session(&out.join("profile"))?;
    s.goto(&format!("file://{}", page.display()))?;
    let js = |script: &str, args: Value| -> Result<Value> {
        s.exec_async(
            &format!(
                "const done = arguments[arguments.length - 1]; const C = IosCrypto;
                 (async () => {{ {script} }})().then(done, (e) => done('ERROR ' + e.message));"
            ),
            args,
        )
    };

    for n in [0usize, 1, 64, 1023, 1024, 1025, 5000, 70_000] {
        let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        let got = js(
            "const d = new Uint8Array(arguments[0]).map((_, i) => i % 251); return C.hex(C.blake3(d));",
            json!([n]),
        )?;
        ensure!(
            got.as_str() == Some(blake3::hash(&data).to_hex().as_str()),
            "blake3 of {n} bytes: {got}"
        );
    }
    let got = js(
        "return C.hex(C.deriveKey('ios/huds/seal-object-key v1', new Uint8Array(96).fill(7)));",
        json!([]),
    )?;
    ensure!(
        got.as_str()
            == Some(
                ios_chain::hex::encode(&blake3::derive_key(
                    "ios/huds/seal-object-key v1",
                    &[7u8; 96]
                ))
                .as_str()
            )
    );

    let key = Keypair::from_seed("browser-test", 1);
    let addr = key.address().to_string();
    let got = js(
        "const k = await C.keyFromSeed(C.unhex(arguments[0])); return k.address;",
        json!([ios_chain::hex::encode(&key.secret_bytes())]),
    )?;
    ensure!(got.as_str() == Some(addr.as_str()), "address {got}");

    let order = ios_chain::hash::Hash([9u8; 32]);
    let salt = [5u8; 32];
    let rating = ios_market::ftfs::Rating {
        scores: ios_market::ftfs::Scores {
            overall: 5,
            quality: 4,
            communication: 3,
            timeliness: 2,
        },
        comment: "Très bien, merci ✓".into(),
    };
    let want = rating.commitment(&order, &key.address().0, &salt);
    let got = js(
        "return C.hex(C.ratingCommitment(arguments[0], arguments[1],
            {overall: 5, quality: 4, communication: 3, timeliness: 2}, 'Très bien, merci ✓', new Uint8Array(32).fill(5)));",
        json!([order.to_hex(), addr]),
    )?;
    ensure!(
        got.as_str() == Some(want.to_hex().as_str()),
        "rating commitment {got}"
    );
    let want = ios_market::jury::vote_commitment(&order, &key.address(), 1, 250_000, &salt);
    let got = js(
        "return C.hex(C.voteCommitment(arguments[0], arguments[1], 1, 250000, new Uint8Array(32).fill(5)));",
        json!([order.to_hex(), addr]),
    )?;
    ensure!(
        got.as_str() == Some(want.to_hex().as_str()),
        "vote commitment {got}"
    );

    // Sealed in the browser, opened by Rust (three frames, two readers).
    let plain: Vec<u8> = (0..150_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let other = Keypair::from_seed("browser-test", 2);
    let sealed = js(
        "const p = new Uint8Array(150000).map((_, i) => (i * 7) % 256);
         return C.hex(await C.encryptFor(p, [arguments[0], arguments[1]]));",
        json!([addr, other.address().to_string()]),
    )?;
    let sealed = ios_chain::hex::decode(sealed.as_str().context("no ciphertext")?)
        .map_err(anyhow::Error::msg)?;
    for k in [&key, &other] {
        ensure!(
            rust_open(&sealed, k)? == plain,
            "Rust did not open the browser's object"
        );
    }
    // Sealed by Rust, opened in the browser.
    let by_rust = rust_seal(&plain, &other.address())?;
    let opened = js(
        "const k = await C.keyFromSeed(C.unhex(arguments[0]));
         return C.hex(await C.decryptWith(C.unhex(arguments[1]), k));",
        json!([
            ios_chain::hex::encode(&other.secret_bytes()),
            ios_chain::hex::encode(&by_rust)
        ]),
    )?;
    ensure!(
        opened.as_str() == Some(ios_chain::hex::encode(&plain).as_str()),
        "the browser did not open Rust's object: {}",
        opened
            .as_str()
            .unwrap_or("?")
            .chars()
            .take(80)
            .collect::<String>()
    );
    // Not sealed to this key: a clear error, not garbage.
    let refused = js(
        "const k = await C.keyFromSeed(new Uint8Array(32).fill(3));
         try { await C.decryptWith(C.unhex(arguments[0]), k); return 'opened'; } catch (e) { return e.message; }",
        json!([ios_chain::hex::encode(&by_rust)]),
    )?;
    ensure!(
        refused
            .as_str()
            .is_some_and(|m| m.contains("not sealed to")),
        "a stranger's key: {refused}"
    );
    Ok(())
}

fn rust_open(sealed: &[u8], key: &Keypair) -> Result<Vec<u8>> {
    use ios_storage::crypt::{open, read_envelope, Decryptor, ReaderSecret};
    let mut input = sealed;
    let keys = read_envelope(&mut input)?;
    let me = ReaderSecret::of_account(key);
    let object_key = keys
        .iter()
        .find_map(|k| open(k, &me).ok())
        .context("no key sealed to this reader")?;
    let mut d = Decryptor::new(Vec::new(), &object_key);
    std::io::Write::write_all(&mut d, input)?;
    Ok(d.finish()?)
}

fn rust_seal(plain: &[u8], reader: &ios_chain::crypto::Address) -> Result<Vec<u8>> {
    use ios_storage::crypt::{write_private, ReaderKey};
    let mut out = Vec::new();
    let mut n = 0u8;
    let fixed = |b: &mut [u8]| {
        n += 1;
        b.fill(n);
        Ok(())
    };
    write_private(plain, &[ReaderKey::of_address(reader)?], fixed, &mut out)?;
    Ok(out)
}

/// A market call signed in Rust (the parts of a scene the browser is not
/// the subject of); returns the transaction's id (or its Atomix id).
fn call(c: &ios_web::client::Client, key: &Keypair, call: MarketCallJson) -> Result<String> {
    ios_web::client::send_market(c, key, call, Duration::from_secs(60))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispute_goes_to_a_jury_and_its_verdict_splits_the_price() -> Result<()> {
    on_devnet("dispute", dispute_flow).await
}

fn dispute_flow(url: &str, out: &Path) -> Result<()> {
    let t0 = Instant::now();
    let step = |what: &str| eprintln!("[{:6.1} s] {what}", t0.elapsed().as_secs_f64());
    let c = ios_web::client::Client::new(url);
    ios_web::client::wait_for_providers(&c, 6, Duration::from_secs(180))?;
    let keys = user_keys(16);
    let (provider_key, buyer_key) = (&keys[2], &keys[6]);
    let jurors = [&keys[8], &keys[9], &keys[10]];

    // The scene, set up through the API: a listing, an order, a delivery,
    // and two jurors in the pool.
    let doc = ios_web::client::put_signed(
        &c,
        provider_key,
        &b"Weekly garden care, two hours a visit."[..],
        (4, 2),
        1_000,
        ios_web::types::ObjectMetaJson {
            name: "offer.txt".into(),
            mime: "text/plain".into(),
            public: true,
            ..Default::default()
        },
        Duration::from_secs(120),
    )?
    .content;
    let listing = call(
        &c,
        provider_key,
        MarketCallJson::CreateListing(ios_web::types::ListingTermsJson {
            title: "Garden care".into(),
            category: "other".into(),
            price: "1000000000".into(),
            delivery_blocks: 600,
            doc,
        }),
    )?;
    let order = call(
        &c,
        buyer_key,
        MarketCallJson::PlaceOrder {
            listing,
            price: "1000000000".into(),
        },
    )?;
    call(
        &c,
        provider_key,
        MarketCallJson::Accept {
            order: order.clone(),
        },
    )?;
    let sealed = ios_web::demo::seal_for(
        b"Photos of the garden after the visit.",
        &[buyer_key.address(), provider_key.address()],
    )?;
    let delivery = ios_web::client::put_signed(
        &c,
        provider_key,
        &sealed[..],
        (4, 2),
        1_000,
        Default::default(),
        Duration::from_secs(120),
    )?
    .content;
    call(
        &c,
        provider_key,
        MarketCallJson::Deliver {
            order: order.clone(),
            delivery,
        },
    )?;
    for j in &jurors[1..] {
        call(&c, j, MarketCallJson::JoinJuryPool)?;
    }
    step("listing, order and delivery made; two jurors in the pool");

    let driver = Driver::start()?;
    let buyer = User::new(&driver, "buyer", url, out)?;
    let provider = User::new(&driver, "provider", url, out)?;
    let juror = User::new(&driver, "juror", url, out)?;
    buyer.import_key(buyer_key)?;
    provider.import_key(provider_key)?;
    juror.import_key(jurors[0])?;

    // The third juror opts in from the wallet page.
    juror.open("/wallet")?;
    juror.submit_and_sign("form[data-kind=join_jury_pool]", |u| {
        u.s.element_exists("#in-jury-pool")
    })?;
    step("a juror joined the pool in the browser");

    // The buyer disputes the delivery; the provider answers.
    let order_path = format!("/orders/{order}");
    buyer.open(&order_path)?;
    buyer.s.fill(
        "#dispute-form [name=statement]",
        "Only half of the garden was done.",
    )?;
    buyer.shot("dispute-form")?;
    buyer.submit_and_sign("#dispute-form", |u| order_state(u) == "disputed")?;
    provider.open(&order_path)?;
    provider.s.fill(
        "#answer-form [name=statement]",
        "The back garden was locked; I did the rest.",
    )?;
    provider.submit_and_sign("#answer-form", |u| {
        u.s.element_exists("#dispute") && !u.s.element_exists("#answer-form")
    })?;
    provider.shot("answered")?;
    step("disputed and answered");

    // The jury is drawn at the next epoch; the juror finds the case in the wallet.
    let opened = c.status()?.shard_status[1].epoch;
    wait("the jury to be drawn", 120, || {
        juror.open("/wallet")?;
        Ok(juror.s.element_exists("#jury-duties a"))
    })
    .with_context(|| {
        format!(
            "opened in epoch {opened}, now {:?}; the dispute: {:?}",
            c.status().map(|s| s
                .shard_status
                .iter()
                .map(|x| (x.shard, x.height, x.epoch))
                .collect::<Vec<_>>()),
            c.dispute(&order)
        )
    })?;
    juror.shot("jury-duty")?;
    let d = c.dispute(&order)?;
    ensure!(d.jurors.len() == 3, "jurors drawn: {:?}", d.jurors);
    // The two jurors outside the browser seal 60% and 80%; the one in it 70%.
    let mut salts = Vec::new();
    for (j, share) in jurors[1..].iter().zip([600_000u32, 800_000]) {
        let salt = [share as u8; 32];
        let id = ios_chain::hash::Hash::from_hex(&order).context("order id")?;
        let commitment =
            ios_market::jury::vote_commitment(&id, &j.address(), d.round, share, &salt).to_hex();
        call(
            &c,
            j,
            MarketCallJson::JuryCommit {
                order: order.clone(),
                commitment,
            },
        )?;
        salts.push((j, share, salt));
    }
    juror.s.click("#jury-duties a")?;
    juror.s.wait_for("#vote-form", 10)?;
    juror.s.fill("#vote-form [name=share]", "70")?;
    juror.shot("vote")?;
    juror.submit_and_sign("#vote-form", |u| {
        u.s.element_exists("form[data-kind=jury_reveal]")
    })?;
    juror.submit_and_sign("form[data-kind=jury_reveal]", |u| {
        u.path() == order_path && u.text("#jurors").contains("voted 70%")
    })?;
    for (j, share, salt) in salts {
        call(
            &c,
            j,
            MarketCallJson::JuryReveal {
                order: order.clone(),
                share,
                salt: ios_chain::hex::encode(&salt),
            },
        )?;
    }
    step("three votes sealed and revealed");

    // After the reveal window, the median is executed.
    wait("the verdict", 120, || {
        buyer.open(&order_path)?;
        Ok(order_state(&buyer) == "resolved")
    })?;
    ensure!(
        buyer
            .text("#timeline")
            .contains("the buyer got 70% of the price"),
        "the timeline: {}",
        buyer.text("#timeline")
    );
    buyer.shot("verdict")?;
    let o = c.market_order(&order)?;
    ensure!(
        o.buyer_share == Some(700_000),
        "the buyer's share: {:?}",
        o.buyer_share
    );
    step("the jury's median (70%) was executed");
    Ok(())
}
