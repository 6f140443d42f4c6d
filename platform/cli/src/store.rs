//! `ios store` (put, get, ls, status, search): HUDS through a gateway's
//! API.
//!
//! `put` uploads the file (the gateway encodes it and holds the
//! fragments), builds the deal at the gateway and checks it against its own
//! encoding of the file before signing (never sign what was not asked),
//! waits for the deal to be final and for the providers' receipts. `get`
//! downloads (the gateway fetches and checks fragments from the providers)
//! and checks the ContentId itself before the file takes its name.

use crate::chain::resolve_address;
use crate::common::{password, print_json, KeystoreOpt, NodeOpt, Progress};
use crate::tx::{submit_when_not_busy, wait_final, Waited};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use ios_chain::tx::Transaction;
use ios_chain::types::{format_iost, parse_iost};
use ios_node::huds::upload_coding;
use ios_storage::codec::{Codec, Layout, ObjectEncoder};
use ios_storage::module::{StorageCall, STORAGE_MODULE};
use ios_storage::ContentId;
use ios_web::client::Client;
use ios_web::types::{ObjectMetaJson, SearchParams, SubmitTxRequest, TxState};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
    #[command(flatten)]
    node: NodeOpt,
    #[command(flatten)]
    keystore: KeystoreOpt,
    /// Print JSON.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum StoreCommand {
    /// Store a file on HUDS: upload, make the deal (paid from --from), wait
    /// until every fragment's provider signed for it. A file that is not
    /// --private is public: listed in search (unless --unlisted) under its
    /// name, media type, tags and description (its text too, if it is a
    /// small text file).
    Put(PutArgs),
    /// Fetch a stored object into a file (checked against its content id).
    Get {
        /// The content id (hex).
        content: String,
        #[arg(short, long)]
        output: PathBuf,
        /// Only bytes A to B (inclusive), like 0-1023 (of the stored bytes).
        #[arg(long, conflicts_with = "key")]
        range: Option<String>,
        /// Decrypt a private object with this key (its name in the
        /// keystore); without it a private object is saved encrypted.
        #[arg(long)]
        key: Option<String>,
    },
    /// Objects stored by an account.
    Ls {
        /// A bech32 address or a key name.
        owner: String,
    },
    /// One object's deal and storage state.
    Status { content: String },
    /// Search public objects by words of their name, description, tags or
    /// text (`"a phrase"`, `-without`; no words: every object).
    Search(SearchArgs),
}

#[derive(Args, Debug)]
struct SearchArgs {
    /// Words to find.
    query: Vec<String>,
    /// Only this media type (e.g. text/plain).
    #[arg(long)]
    mime: Option<String>,
    /// Only objects with this tag (repeatable: all of them).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Only this owner's objects (an address or a key name).
    #[arg(long)]
    owner: Option<String>,
    /// Only objects of at least this many bytes.
    #[arg(long)]
    min_size: Option<u64>,
    /// Only objects of at most this many bytes.
    #[arg(long)]
    max_size: Option<u64>,
    /// relevance, newest, oldest, largest or smallest.
    #[arg(long, default_value = "relevance")]
    sort: String,
    /// Hits per page (at most 100).
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Which page (from 1).
    #[arg(long, default_value_t = 1)]
    page: usize,
}

#[derive(Args, Debug)]
pub(crate) struct PutArgs {
    pub(crate) file: PathBuf,
    /// The paying key's name.
    #[arg(long)]
    pub(crate) from: String,
    /// Epochs to keep it for.
    #[arg(long, default_value_t = 100)]
    pub(crate) epochs: u64,
    /// Most IOST per GiB-epoch to pay.
    #[arg(long, default_value = "0.01")]
    pub(crate) price: String,
    /// Data fragments per segment.
    #[arg(long, default_value_t = 4)]
    pub(crate) data: u8,
    /// Parity fragments per segment (that many may be lost).
    #[arg(long, default_value_t = 2)]
    pub(crate) parity: u8,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub(crate) timeout: u64,
    /// Encrypt before upload (XChaCha20-Poly1305 under a random key
    /// sealed to each reader; the payer always reads it too).
    #[arg(long)]
    pub(crate) private: bool,
    /// Another reader of a private object: an address or a key name
    /// (repeatable).
    #[arg(long, requires = "private")]
    pub(crate) reader: Vec<String>,
    /// The name it is found by (default: the file's name; a private
    /// object has none unless given: metadata is public on chain).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Media type (default: from the file's extension).
    #[arg(long)]
    pub(crate) mime: Option<String>,
    /// A tag (repeatable; no spaces).
    #[arg(long = "tag")]
    pub(crate) tags: Vec<String>,
    /// A description (public on chain).
    #[arg(long, default_value = "")]
    pub(crate) description: String,
    /// Keep a public object out of search (anyone with its content id
    /// still reads it).
    #[arg(long, conflicts_with = "private")]
    pub(crate) unlisted: bool,
}

impl PutArgs {
    /// `ios store put FILE --from FROM` with every default.
    pub(crate) fn new(file: PathBuf, from: &str) -> PutArgs {
        PutArgs {
            file,
            from: from.to_string(),
            epochs: 100,
            price: "0.01".into(),
            data: 4,
            parity: 2,
            timeout: 300,
            private: false,
            reader: Vec::new(),
            name: None,
            mime: None,
            tags: Vec::new(),
            description: String::new(),
            unlisted: false,
        }
    }
}

pub fn run(a: StoreArgs) -> Result<ExitCode> {
    let client = a.node.client();
    match a.command {
        StoreCommand::Put(p) => put(&client, &a.keystore, p, a.json),
        StoreCommand::Search(q) => search(&client, &a.keystore, q, a.json),
        StoreCommand::Get {
            content,
            output,
            range,
            key,
        } => get(
            &client,
            &a.keystore,
            &content,
            &output,
            range.as_deref(),
            key.as_deref(),
            a.json,
        ),
        StoreCommand::Ls { owner } => {
            let owner = resolve_address(&owner, &a.keystore)?;
            let list = client.objects(&owner)?;
            if a.json {
                print_json(&list)?;
            } else if list.is_empty() {
                println!("no objects stored by {owner}");
            } else {
                for o in list {
                    println!(
                        "{}  {:>12} bytes  {}+{}  {}/{} fragments held  epochs {}..{}",
                        o.content,
                        o.size,
                        o.data,
                        o.parity,
                        o.receipted - o.lost.min(o.receipted),
                        o.fragments,
                        o.start_epoch,
                        o.end_epoch
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        StoreCommand::Status { content } => {
            let o = client.object(&content)?;
            if a.json {
                print_json(&o)?;
            } else {
                println!(
                    "{}: {} bytes on shard {}, owner {}\n{}+{} code, {} segments; {} of {} fragments receipted, {} lost\nepochs {}..{}, escrow {}",
                    o.content,
                    o.size,
                    o.shard,
                    o.owner,
                    o.data,
                    o.parity,
                    o.segments,
                    o.receipted,
                    o.fragments,
                    o.lost,
                    o.start_epoch,
                    o.end_epoch,
                    format_iost(o.escrow.parse().unwrap_or(0))
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn mib_per_s(bytes: u64, since: Instant) -> f64 {
    bytes as f64 / (1 << 20) as f64 / since.elapsed().as_secs_f64().max(1e-3)
}

/// The layout this CLI computes for `file` itself.
fn local_layout(file: &Path, data: u8, parity: u8) -> Result<Layout> {
    let coding = upload_coding(data, parity)?;
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut enc = ObjectEncoder::new(
        Codec::new(coding)?,
        std::io::BufReader::with_capacity(1 << 20, f),
        u64::MAX,
    );
    while let Some(seg) = enc.next_segment()? {
        enc.recycle(seg.fragments);
    }
    Ok(enc.finish()?)
}

/// A file removed when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
    Ok(b)
}

/// Encrypts `file` for `readers` into a private object's envelope, in a
/// temporary file of the system's temp directory.
fn encrypt(file: &Path, readers: &[ios_chain::crypto::Address]) -> Result<TempFile> {
    let readers = readers
        .iter()
        .map(ios_storage::crypt::ReaderKey::of_address)
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let tmp = TempFile(std::env::temp_dir().join(format!(
        "ios-private-{}-{}.iosp",
        std::process::id(),
        u64::from_le_bytes(random()?)
    )));
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&tmp.0).with_context(|| format!("creating {}", tmp.0.display()))?,
    );
    let input = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    ios_storage::crypt::write_private(
        std::io::BufReader::new(input),
        &readers,
        |b| getrandom::fill(b).map_err(std::io::Error::other),
        &mut out,
    )
    .context("encrypting")?;
    out.into_inner()?.sync_all()?;
    Ok(tmp)
}

/// A media type from a file's extension (the common ones; otherwise
/// `application/octet-stream`).
fn guess_mime(file: &Path) -> &'static str {
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "txt" | "text" | "log" => "text/plain",
        "md" | "markdown" => "text/markdown",
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "csv" => "text/csv",
        "rs" | "py" | "c" | "h" | "go" | "js" | "ts" | "sh" | "toml" | "yaml" | "yml" => {
            "text/plain"
        }
        "json" => "application/json",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        _ => "application/octet-stream",
    }
}

/// The metadata `put` asks for: a private object says nothing it was not
/// told to (it is public on chain).
fn put_meta(p: &PutArgs) -> Result<ObjectMetaJson> {
    let private = p.private;
    let name = match &p.name {
        Some(n) => n.clone(),
        None if private => String::new(),
        None => p
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let mime = match &p.mime {
        Some(m) => m.clone(),
        None if private => String::new(),
        None => guess_mime(&p.file).to_string(),
    };
    let meta = ObjectMetaJson {
        name,
        mime,
        tags: p.tags.clone(),
        description: p.description.clone(),
        public: !private && !p.unlisted,
    };
    ios_storage::module::ObjectMeta::from(meta.clone())
        .validate()
        .map_err(|e| anyhow::anyhow!("metadata: {e}"))?;
    Ok(meta)
}

/// Text from the network, safe to print on a terminal: control
/// characters (escape sequences) become spaces.
pub(crate) fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A search snippet for a terminal: matches between `*`, HTML unescaped,
/// control characters dropped.
fn plain_snippet(html: &str) -> String {
    printable(html)
        .replace("<b>", "*")
        .replace("</b>", "*")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn search(client: &Client, keystore: &KeystoreOpt, a: SearchArgs, json: bool) -> Result<ExitCode> {
    if a.page == 0 {
        bail!("--page counts from 1");
    }
    let owner = a.owner.map(|o| resolve_address(&o, keystore)).transpose()?;
    let offset = (a.page - 1).saturating_mul(a.limit);
    let r = client.search(&SearchParams {
        q: a.query.join(" "),
        mime: a.mime,
        tags: (!a.tags.is_empty()).then(|| a.tags.join(",")),
        owner,
        min_size: a.min_size,
        max_size: a.max_size,
        sort: Some(a.sort),
        offset,
        limit: Some(a.limit),
    })?;
    if json {
        print_json(&r)?;
        return Ok(ExitCode::SUCCESS);
    }
    if r.hits.is_empty() {
        println!("nothing found ({} matches in all)", r.total);
    }
    for h in &r.hits {
        let name = if h.name.is_empty() {
            "(no name)".to_string()
        } else {
            printable(&h.name)
        };
        println!("{}  {name}", printable(&h.content));
        let tags = if h.tags.is_empty() {
            String::new()
        } else {
            format!(", tags {}", printable(&h.tags.join(" ")))
        };
        let mime = if h.mime.is_empty() {
            "no media type".to_string()
        } else {
            printable(&h.mime)
        };
        println!(
            "    {} bytes, {mime}{tags}, owner {}",
            h.size,
            printable(&h.owner)
        );
        let snippet = plain_snippet(&h.snippet);
        if !snippet.is_empty() {
            println!("    {snippet}");
        }
    }
    if !r.hits.is_empty() {
        println!(
            "{}-{} of {} (page {} of {})",
            offset + 1,
            offset + r.hits.len(),
            r.total,
            a.page,
            r.total.div_ceil(a.limit.max(1))
        );
    }
    if r.texts_pending > 0 {
        eprintln!(
            "({} new text objects are still being read for their words)",
            r.texts_pending
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn put(client: &Client, keystore: &KeystoreOpt, p: PutArgs, json: bool) -> Result<ExitCode> {
    let object = put_object(client, keystore, &p)?;
    if json {
        print_json(&object)?;
    } else {
        println!("{}", object.content);
    }
    Ok(ExitCode::SUCCESS)
}

/// Stores a file in HUDS as `ios store put` does (encrypting it first if
/// private), with progress on stderr; returns the stored object once every
/// fragment is signed for.
pub(crate) fn put_object(
    client: &Client,
    keystore: &KeystoreOpt,
    p: &PutArgs,
) -> Result<ios_web::types::ObjectView> {
    let meta = put_meta(p)?;
    let readers = p
        .private
        .then(|| {
            p.reader
                .iter()
                .map(|r| resolve_address(r, keystore))
                .collect::<Result<Vec<_>>>()
        })
        .transpose()?;
    let (file, from, epochs) = (p.file.as_path(), p.from.as_str(), p.epochs);
    let (data, parity) = (p.data, p.parity);
    let timeout = Duration::from_secs(p.timeout);
    let price = parse_iost(&p.price).map_err(|e| anyhow::anyhow!("--price: {e}"))?;
    let ks = keystore.open();
    let sender = ks.info(from)?.address;
    // A private object: the envelope goes up, never the plaintext.
    let encrypted = match readers {
        Some(rs) => {
            let mut all = vec![sender];
            for r in rs {
                let a: ios_chain::crypto::Address =
                    r.parse().map_err(|e| anyhow::anyhow!("reader {r}: {e}"))?;
                if !all.contains(&a) {
                    all.push(a);
                }
            }
            if std::fs::metadata(file).map(|m| m.len()).unwrap_or(0) == 0 {
                bail!("{} is empty: nothing to store", file.display());
            }
            let t = encrypt(file, &all)?;
            eprintln!("encrypted for {} reader(s)", all.len());
            Some(t)
        }
        None => None,
    };
    let file = encrypted.as_ref().map_or(file, |t| t.0.as_path());
    let size = std::fs::metadata(file)
        .with_context(|| format!("reading {}", file.display()))?
        .len();
    if size == 0 {
        bail!("{} is empty: nothing to store", file.display());
    }
    let key = ks.open(from, &password(&format!("password for {from:?}: "), false)?)?;
    // Upload, then encode locally to check what the gateway will put in the deal.
    let started = Instant::now();
    let mut progress = Progress::new();
    let reader = std::io::BufReader::with_capacity(
        1 << 20,
        std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?,
    );
    let mut last = Instant::now();
    let staged = client.upload(reader, data, parity, |n| {
        if last.elapsed() > Duration::from_millis(200) || n == size {
            last = Instant::now();
            progress.update(&format!(
                "uploading: {} of {size} bytes ({:.0}%, {:.1} MiB/s)",
                n,
                n as f64 * 100.0 / size as f64,
                mib_per_s(n, started)
            ));
        }
    })?;
    progress.finish();
    eprintln!(
        "uploaded {} bytes in {:.1} s: {} ({} segments, {}+{})",
        staged.size,
        started.elapsed().as_secs_f64(),
        staged.content,
        staged.segments,
        staged.data,
        staged.parity
    );
    let layout = local_layout(file, data, parity)?;
    if layout.content.to_hex() != staged.content {
        bail!(
            "the gateway stored {} but the file is {}: the file changed, or the gateway is wrong",
            staged.content,
            layout.content
        );
    }
    let built = client.build_deal(
        &sender.to_string(),
        &staged.content,
        epochs,
        Some(price),
        meta.clone(),
    )?;
    let bytes = ios_web::hex::decode(&built.tx).map_err(|e| anyhow::anyhow!("built tx: {e}"))?;
    let tx: Transaction = ios_chain::codec::decode("built transaction", &bytes, 1 << 16)?;
    let asked = StorageCall::CreateDeal {
        layout,
        epochs,
        price_per_gib_epoch: price,
        meta: meta.into(),
    };
    let got: Option<StorageCall> = (tx.call.module == STORAGE_MODULE)
        .then(|| borsh::from_slice(&tx.call.payload).ok())
        .flatten();
    if tx.sender != sender || got.as_ref() != Some(&asked) {
        bail!("the gateway built a different deal than asked; not signing it");
    }
    if tx.signing_hash().to_hex() != built.signing_hash {
        bail!("the gateway's signing hash does not match its transaction; not signing it");
    }
    let max_fee = 1_000_000 + bytes.len() as u64 * 10;
    if tx.fee > max_fee {
        bail!(
            "the gateway asks a fee of {} for the deal; refusing",
            format_iost(tx.fee)
        );
    }
    eprintln!("{}", built.summary);
    let signature = key.sign(&tx.signing_hash());
    let submitted = submit_when_not_busy(
        client,
        &SubmitTxRequest {
            tx: built.tx.clone(),
            signature: ios_web::hex::encode(&signature.0),
        },
        timeout,
    )?;
    let status = match wait_final(client, &submitted.id, Some((&sender, tx.nonce)), timeout)? {
        Waited::Done(s) => s,
        Waited::Superseded => bail!(
            "the deal {} lost its nonce to another transaction from {from}; run `ios store put` again",
            submitted.id
        ),
    };
    if status.state != TxState::Finalized {
        bail!(
            "the deal failed on chain: {}",
            status
                .error
                .map(|e| format!("{} ({})", e.message, e.code))
                .unwrap_or_else(|| format!("{:?}", status.state))
        );
    }
    eprintln!(
        "deal {} final on shard {} at height {}",
        status.id,
        status.shard.unwrap_or(0),
        status.height.unwrap_or(0)
    );
    // The gateway now pushes the fragments; providers sign receipts.
    let mut progress = Progress::new();
    let object = loop {
        let o = client.object(&staged.content)?;
        let pushed = o.upload.as_ref().map(|u| u.pushed).unwrap_or(o.fragments);
        progress.update(&format!(
            "storing: {pushed} of {} fragments sent to providers, {} signed for",
            o.fragments, o.receipted
        ));
        if o.receipted == o.fragments {
            break o;
        }
        if let Some(u) = o
            .upload
            .as_ref()
            .filter(|u| !u.errors.is_empty() && u.state != "pushing")
        {
            progress.finish();
            bail!("{}: {} (first: {})", staged.content, u.state, u.errors[0]);
        }
        if progress.elapsed() > timeout {
            progress.finish();
            bail!(
                "{} of {} fragments signed for after {} s; `ios store status {}` follows it",
                o.receipted,
                o.fragments,
                timeout.as_secs(),
                staged.content
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    progress.finish();
    eprintln!(
        "stored {} bytes in {:.1} s ({:.1} MiB/s end to end)",
        object.size,
        started.elapsed().as_secs_f64(),
        mib_per_s(object.size, started)
    );
    Ok(object)
}

/// Opens the envelope at `input` with key `name` and writes the plaintext
/// to `output` (through `output.dec`, renamed once the last frame checked).
fn decrypt(keystore: &KeystoreOpt, name: &str, input: &Path, output: &Path) -> Result<()> {
    use ios_storage::crypt::{open, read_envelope, Decryptor, ReaderSecret};
    let ks = keystore.open();
    let me = ks.open(name, &password(&format!("password for {name:?}: "), false)?)?;
    let secret = ReaderSecret::of_account(&me);
    let mut r = std::io::BufReader::new(std::fs::File::open(input)?);
    let sealed = read_envelope(&mut r)?;
    let mine = secret.public();
    let s = sealed
        .iter()
        .find(|s| s.reader == mine)
        .with_context(|| format!("{name} ({}) is not a reader of this object", me.address()))?;
    let object_key = open(s, &secret)?;
    let tmp = output.with_extension("dec");
    let result = (|| {
        let out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        let mut dec = Decryptor::new(out, &object_key);
        std::io::copy(&mut r, &mut dec).context("decrypting")?;
        let out = dec.finish()?;
        out.into_inner()?.sync_all()?;
        std::fs::rename(&tmp, output)?;
        anyhow::Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn parse_range(r: &str) -> Result<(u64, u64)> {
    let (a, b) = r
        .split_once('-')
        .with_context(|| format!("--range {r:?}: expected A-B"))?;
    let (a, b): (u64, u64) = (
        a.trim().parse().context("--range start")?,
        b.trim().parse().context("--range end")?,
    );
    if b < a {
        bail!("--range {r:?}: the end is before the start");
    }
    Ok((a, b + 1))
}

fn get(
    client: &Client,
    keystore: &KeystoreOpt,
    content: &str,
    output: &Path,
    range: Option<&str>,
    key: Option<&str>,
    json: bool,
) -> Result<ExitCode> {
    let cid: ContentId = content.parse()?;
    let range = range.map(parse_range).transpose()?;
    let object = client.object(content)?;
    let want = match range {
        Some((a, b)) => b.min(object.size).saturating_sub(a),
        None => object.size,
    };
    let part = output.with_extension("part");
    let file =
        std::fs::File::create(&part).with_context(|| format!("creating {}", part.display()))?;
    // Synced before it takes the output's name: a finished download
    // survives a crash whole or not at all.
    let mut out = crate::common::WriteBehind::new(file)?;
    let started = Instant::now();
    let mut progress = Progress::new();
    let mut last = Instant::now();
    let mut hasher = blake3::Hasher::new();
    let result = client.download(
        content,
        range,
        &mut crate::common::Hashed {
            out: &mut out,
            hasher: &mut hasher,
        },
        |n| {
            if last.elapsed() > Duration::from_millis(200) {
                last = Instant::now();
                progress.update(&format!(
                    "downloading: {n} of {want} bytes ({:.0}%, {:.1} MiB/s)",
                    n as f64 * 100.0 / want.max(1) as f64,
                    mib_per_s(n, started)
                ));
            }
        },
    );
    progress.finish();
    let n = match result.map_err(anyhow::Error::from).and_then(|n| {
        out.finish()?;
        Ok(n)
    }) {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(e.context(format!("fetching {content}")));
        }
    };
    if n != want {
        let _ = std::fs::remove_file(&part);
        bail!("got {n} bytes of the {want} expected; nothing written");
    }
    if range.is_none() && ContentId(ios_chain::hash::Hash(*hasher.finalize().as_bytes())) != cid {
        let _ = std::fs::remove_file(&part);
        bail!("the bytes received do not hash to {content}; nothing written");
    }
    let head = {
        let mut h = [0u8; 5];
        let mut f = std::fs::File::open(&part)?;
        let n = std::io::Read::read(&mut f, &mut h)?;
        h[..n].to_vec()
    };
    let private = range.is_none() && ios_storage::crypt::is_private(&head);
    match (private, key) {
        (true, Some(name)) => {
            let r = decrypt(keystore, name, &part, output);
            let _ = std::fs::remove_file(&part);
            r?;
        }
        (false, Some(_)) => {
            let _ = std::fs::remove_file(&part);
            bail!("{content} is not a private object: get it without --key");
        }
        (true, None) => {
            std::fs::rename(&part, output)?;
            eprintln!(
                "{content} is private: saved encrypted; --key NAME decrypts it for one of its readers"
            );
        }
        (false, None) => std::fs::rename(&part, output)
            .with_context(|| format!("renaming {} to {}", part.display(), output.display()))?,
    }
    if json {
        print_json(&serde_json::json!({"content": content, "bytes": n, "file": output}))?;
    }
    eprintln!(
        "{n} bytes into {} in {:.1} s ({:.1} MiB/s){}",
        output.display(),
        started.elapsed().as_secs_f64(),
        mib_per_s(n, started),
        if range.is_none() {
            ", content id checked"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}
