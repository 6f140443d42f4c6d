//! The network commands against a running devnet, as a user types them.

use ios_chain::crypto::Keypair;
use ios_chain::shard::home_shard;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Devnet {
    child: Child,
    url: String,
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `ios devnet` (with `extra` arguments) with its API on a free
/// port; returns once it serves.
fn devnet(data: &Path, extra: &[&str]) -> Devnet {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ios"))
        .args([
            "devnet",
            // Tests wait for heights: an empty block every 200 ms, not 1 s.
            "--idle-block-ms",
            "200",
            "--tps",
            "0",
            "--seconds",
            "120",
            "--epoch-length",
            "20",
            "--web",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(data)
        .args(extra)
        .env("IOS_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ios devnet starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("gateway API on ").nth(1) {
                let url = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let _ = tx.send(url);
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the devnet prints its API address");
    Devnet { child, url }
}

fn ios(net: &Devnet, keys: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ios"))
        .args(args)
        .env("IOS_NODE", &net.url)
        .env("IOS_KEYSTORE", keys)
        .env("IOS_PASSWORD", "test password")
        .env("IOS_LOG", "error")
        .stdin(Stdio::null())
        .output()
        .expect("the ios binary runs")
}

/// `ios chain status` once the gateway runs every shard (beacon + 2).
fn every_shard_runs(net: &Devnet, keys: &Path) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let o = ios(net, keys, &["chain", "status", "--json"]);
        if o.status.success() {
            let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            let shards = s["shard_status"].as_array().cloned().unwrap_or_default();
            if shards.len() == 3 && shards.iter().all(|x| x["height"].as_u64() > Some(0)) {
                return s;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the devnet never served status"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs `ios args`, which must succeed.
/// Polls `done` until it holds, for at most 30 s.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "waited 30 s for {what}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Waits until the devnet's 6 providers registered on both account shards.
fn providers_registered(net: &Devnet, keys: &Path) {
    let started = Instant::now();
    loop {
        let o = ios(net, keys, &["provider", "status", "--json"]);
        if o.status.success() {
            let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            if list.as_array().map(Vec::len) == Some(12) {
                return;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the providers never registered"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn succeeds(net: &Devnet, keys: &Path, args: &[&str]) {
    let o = ios(net, keys, args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Runs `ios args`, which must fail with `needle` in its error.
fn fails_with(net: &Devnet, keys: &Path, args: &[&str], needle: &str) {
    let o = ios(net, keys, args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{args:?} succeeded");
    assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
}

fn ok_json(o: &Output) -> serde_json::Value {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

#[test]
fn keys_transfers_and_chain_queries_through_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let net = devnet(&dir.path().join("devnet"), &[]);
    let keys = dir.path().join("keys");

    let status = every_shard_runs(&net, &keys);
    assert_eq!(status["shards"], 2);

    // Keys: a devnet user (funded) and a fresh one on the same shard.
    let alice = ok_json(&ios(
        &net,
        &keys,
        &["key", "new", "alice", "--devnet-user", "0", "--json"],
    ));
    let alice_addr = alice["address"].as_str().unwrap().to_string();
    let shard = home_shard(&Keypair::from_seed("devnet-user", 0).address(), 2);
    let bob_n = (1..64)
        .find(|n| home_shard(&Keypair::from_seed("devnet-user", *n).address(), 2) == shard)
        .unwrap();
    let bob = ok_json(&ios(
        &net,
        &keys,
        &[
            "key",
            "new",
            "bob",
            "--devnet-user",
            &bob_n.to_string(),
            "--json",
        ],
    ));
    let bob_addr = bob["address"].as_str().unwrap().to_string();
    let listed = ok_json(&ios(&net, &keys, &["key", "list", "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let file = std::fs::read_to_string(alice["file"].as_str().unwrap()).unwrap();
    assert!(file.contains("argon2id") && file.contains(&alice_addr));

    let before = ok_json(&ios(&net, &keys, &["chain", "account", "bob", "--json"]));
    assert_eq!(before["shard"].as_u64(), Some(shard as u64));

    // A transfer, signed locally, followed to finality.
    let done = ok_json(&ios(
        &net,
        &keys,
        &[
            "tx", "transfer", "--from", "alice", "--to", "bob", "--amount", "1.5", "--json",
        ],
    ));
    assert_eq!(done["state"], "finalized", "{done}");
    let after = ok_json(&ios(
        &net,
        &keys,
        &["chain", "account", &bob_addr, "--json"],
    ));
    let bal = |v: &serde_json::Value| v["balance"].as_str().unwrap().parse::<u64>().unwrap();
    assert_eq!(bal(&after), bal(&before) + 150_000_000);

    // A transfer to an account on the other shard goes through Atomix,
    // relayed by the gateway, followed to the end.
    let carol_n = (1..64)
        .find(|n| home_shard(&Keypair::from_seed("devnet-user", *n).address(), 2) != shard)
        .unwrap();
    let carol = Keypair::from_seed("devnet-user", carol_n)
        .address()
        .to_string();
    let carol_before = ok_json(&ios(&net, &keys, &["chain", "account", &carol, "--json"]));
    let cross = ok_json(&ios(
        &net,
        &keys,
        &[
            "tx", "transfer", "--from", "alice", "--to", &carol, "--amount", "2", "--json",
        ],
    ));
    assert_eq!(cross["lock"]["state"], "finalized", "{cross}");
    assert_eq!(cross["atomix"]["state"], "done", "{cross}");
    let carol_after = ok_json(&ios(&net, &keys, &["chain", "account", &carol, "--json"]));
    assert_eq!(bal(&carol_after), bal(&carol_before) + 200_000_000);
    assert_ne!(carol_after["shard"], before["shard"]);
    let x = cross["atomix"]["id"].as_str().unwrap();
    let shown = ok_json(&ios(&net, &keys, &["tx", "atomix", x, "--json"]));
    assert_eq!(shown["state"], "done");

    // A validator bonds more stake: built for and executed on the beacon.
    ok_json(&ios(
        &net,
        &keys,
        &["key", "new", "val", "--devnet-validator", "0", "--json"],
    ));
    let staked = ok_json(&ios(
        &net,
        &keys,
        &["tx", "stake", "--from", "val", "--amount", "1", "--json"],
    ));
    assert_eq!(staked["state"], "finalized", "{staked}");
    assert_eq!(staked["shard"], 0, "{staked}");

    // Its status and its block are there to see.
    let id = done["id"].as_str().unwrap();
    let status = ok_json(&ios(&net, &keys, &["tx", "status", id, "--json"]));
    assert_eq!(status["state"], "finalized");
    let height = status["height"].as_u64().unwrap().to_string();
    let block = ok_json(&ios(
        &net,
        &keys,
        &[
            "chain",
            "block",
            "--shard",
            &shard.to_string(),
            &height,
            "--json",
        ],
    ));
    assert!(block["txs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == id));

    // Mistakes are clear errors, not crashes.
    let o = Command::new(env!("CARGO_BIN_EXE_ios"))
        .args([
            "tx", "transfer", "--from", "alice", "--to", "bob", "--amount", "1",
        ])
        .env("IOS_NODE", &net.url)
        .env("IOS_KEYSTORE", &keys)
        .env("IOS_PASSWORD", "wrong")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("wrong password"));
    let o = ios(
        &net,
        &keys,
        &[
            "tx",
            "transfer",
            "--from",
            "alice",
            "--to",
            "bob",
            "--amount",
            "1.123456789",
        ],
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("more than 8 decimals"));
    let o = ios(
        &net,
        &keys,
        &[
            "tx",
            "transfer",
            "--from",
            "alice",
            "--to",
            "bob",
            "--amount",
            "100000000",
        ],
    );
    // The chain takes it (fee and nonce count) and its call fails.
    assert!(!o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("FAILED") && out.contains("insufficient"),
        "{out}"
    );
    let o = ios(&net, &keys, &["chain", "account", "nobody"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("neither an address nor a stored key"));
    let o = Command::new(env!("CARGO_BIN_EXE_ios"))
        .args(["chain", "status", "--node", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot reach the node"));

    // The gateway's relayer keeps nothing of its own: killed and started
    // again, it learns the cross-shard transfer back from its stored blocks.
    drop(net);
    let x = ios_chain::hash::Hash::from_hex(x).unwrap();
    let mut relayer = ios_chain::relayer::Relayer::new();
    let stores: Vec<_> = (0..=2u16)
        .map(|s| {
            let db = ios_chain::state::open_db(
                &dir.path().join(format!("devnet/gateway/shard-{s}")),
                None,
            )
            .unwrap();
            (s, ios_chain::state::StateStore::open(&db).unwrap())
        })
        .collect();
    let refs: Vec<_> = stores.iter().map(|(s, st)| (*s, st)).collect();
    assert!(ios_node::node::replay_relayer(&mut relayer, &refs, 0).unwrap() > 0);
    let t = relayer.get(&x).expect("the transfer is known again");
    assert!(t.terminal(), "{:?}", t.state());
}

#[test]
fn files_go_up_and_come_back_through_ios_store() {
    let dir = tempfile::tempdir().unwrap();
    let net = devnet(&dir.path().join("devnet"), &[]);
    let keys = dir.path().join("keys");

    // The devnet's providers register themselves on both account shards.
    providers_registered(&net, &keys);
    let carol = ok_json(&ios(
        &net,
        &keys,
        &["key", "new", "carol", "--devnet-user", "1", "--json"],
    ));
    let carol_addr = carol["address"].as_str().unwrap().to_string();

    // Put: upload, deal, receipts; the content id is the file's blake3.
    let file = dir.path().join("report.bin");
    let mut bytes = vec![0u8; 5 << 20];
    blake3::Hasher::new()
        .update(b"ios store test")
        .finalize_xof()
        .fill(&mut bytes);
    std::fs::write(&file, &bytes).unwrap();
    let put = ok_json(&ios(
        &net,
        &keys,
        &[
            "store",
            "put",
            file.to_str().unwrap(),
            "--from",
            "carol",
            "--epochs",
            "5",
            "--tag",
            "quarterly",
            "--description",
            "Figures of the quarterly report",
            "--json",
        ],
    ));
    let cid = put["content"].as_str().unwrap().to_string();
    assert_eq!(put["meta"]["name"], "report.bin");
    assert_eq!(put["meta"]["public"], true);
    assert_eq!(cid, blake3::hash(&bytes).to_hex().as_str());
    assert_eq!(put["receipted"], put["fragments"]);
    assert_eq!(put["owner"], carol_addr.as_str());

    // Get: whole (checked against the id) and a range.
    let out = dir.path().join("back.bin");
    succeeds(
        &net,
        &keys,
        &["store", "get", &cid, "-o", out.to_str().unwrap()],
    );
    assert!(
        std::fs::read(&out).unwrap() == bytes,
        "the file read back differs"
    );
    let part = dir.path().join("part.bin");
    succeeds(
        &net,
        &keys,
        &[
            "store",
            "get",
            &cid,
            "-o",
            part.to_str().unwrap(),
            "--range",
            "1000-1999",
        ],
    );
    assert!(std::fs::read(&part).unwrap() == bytes[1000..2000]);

    // ls and provider status show it.
    let ls = ok_json(&ios(&net, &keys, &["store", "ls", "carol", "--json"]));
    assert_eq!(ls.as_array().map(Vec::len), Some(1), "{ls}");
    let providers = ok_json(&ios(&net, &keys, &["provider", "status", "--json"]));
    let held: u64 = providers
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["held_fragments"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(held, 6, "one segment of 4+2 fragments: {providers}");

    // A private object: encrypted before upload, sealed to carol (the
    // payer) and dave; dave decrypts it, erin cannot, and without a key it
    // is saved as stored (ciphertext).
    for name in ["dave", "erin"] {
        ok_json(&ios(&net, &keys, &["key", "new", name, "--json"]));
    }
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, b"the plan for next quarter, for dave only").unwrap();
    let put = ok_json(&ios(
        &net,
        &keys,
        &[
            "store",
            "put",
            secret.to_str().unwrap(),
            "--from",
            "carol",
            "--private",
            "--reader",
            "dave",
            "--json",
        ],
    ));
    let private_cid = put["content"].as_str().unwrap().to_string();
    let plain = dir.path().join("plain.txt");
    succeeds(
        &net,
        &keys,
        &[
            "store",
            "get",
            &private_cid,
            "-o",
            plain.to_str().unwrap(),
            "--key",
            "dave",
        ],
    );
    assert_eq!(
        std::fs::read(&plain).unwrap(),
        std::fs::read(&secret).unwrap()
    );
    fails_with(
        &net,
        &keys,
        &[
            "store",
            "get",
            &private_cid,
            "-o",
            "erin.txt",
            "--key",
            "erin",
        ],
        "is not a reader",
    );
    assert!(!Path::new("erin.txt").exists());
    let sealed = dir.path().join("sealed.bin");
    succeeds(
        &net,
        &keys,
        &["store", "get", &private_cid, "-o", sealed.to_str().unwrap()],
    );
    let stored = std::fs::read(&sealed).unwrap();
    assert!(stored.starts_with(b"IOSP"), "stored as an envelope");
    assert!(
        !stored.windows(8).any(|w| w == b"the plan"),
        "no plaintext stored"
    );

    // Search: the public report is found by its description and tag; the
    // private object (no name, not listed) is not.
    let mut found = serde_json::Value::Null;
    for _ in 0..100 {
        found = ok_json(&ios(
            &net,
            &keys,
            &[
                "store",
                "search",
                "report",
                "figures",
                "--tag",
                "quarterly",
                "--json",
            ],
        ));
        if found["total"] == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(found["hits"][0]["content"], cid.as_str(), "{found}");
    assert_eq!(found["hits"][0]["name"], "report.bin");
    // Once the catalog has read every block so far, the private object
    // (stored after the report) is known to be left out on purpose.
    let status = ok_json(&ios(&net, &keys, &["chain", "status", "--json"]));
    for _ in 0..100 {
        let seen = ok_json(&ios(&net, &keys, &["store", "search", "--json"]));
        let caught_up = status["shard_status"].as_array().unwrap().iter().all(|s| {
            seen["indexed_heights"][s["shard"].to_string()].as_u64() >= s["height"].as_u64()
        });
        if caught_up {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let everything = ok_json(&ios(&net, &keys, &["store", "search", "--json"]));
    assert_eq!(
        everything["total"], 1,
        "the private object is not listed: {everything}"
    );
    let o = ios(&net, &keys, &["store", "search", "report"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("report.bin") && text.contains("*report*"),
        "{text}"
    );
    fails_with(
        &net,
        &keys,
        &["store", "search", "x", "--limit", "500"],
        "limit 500",
    );
    fails_with(
        &net,
        &keys,
        &[
            "store",
            "put",
            file.to_str().unwrap(),
            "--from",
            "carol",
            "--tag",
            "two words",
        ],
        "metadata: tag",
    );

    // Bad input: clear errors, nothing written.
    let unknown = "ab".repeat(32);
    fails_with(
        &net,
        &keys,
        &["store", "get", &unknown, "-o", "nope.bin"],
        "no deal for",
    );
    assert!(!Path::new("nope.bin").exists());
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    fails_with(
        &net,
        &keys,
        &["store", "put", empty.to_str().unwrap(), "--from", "carol"],
        "is empty",
    );

    // `ios reindex` is refused while the gateway runs; once it is stopped
    // it rebuilds the index from the chain data: the one public object.
    let gateway = dir.path().join("devnet").join("gateway");
    let reindex = |net: &Devnet| {
        ios(
            net,
            &keys,
            &["reindex", "--data", gateway.to_str().unwrap()],
        )
    };
    let o = reindex(&net);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is in use by another ios node"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut net = net;
    let _ = net.child.kill();
    let _ = net.child.wait();
    let o = reindex(&net);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(": 1 public objects"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_node_becomes_a_storage_provider_with_ios_provider_register() {
    let dir = tempfile::tempdir().unwrap();
    let devnet_dir = dir.path().join("devnet");
    let net = devnet(&devnet_dir, &["--providers", "0"]);
    let keys = dir.path().join("keys");
    every_shard_runs(&net, &keys);
    ok_json(&ios(
        &net,
        &keys,
        &["key", "new", "carol", "--devnet-user", "1", "--json"],
    ));

    // A full node of one's own, joining the devnet through its gateway.
    let info: serde_json::Value = serde_json::from_slice(
        &std::fs::read(devnet_dir.join("gateway").join("node.json")).unwrap(),
    )
    .unwrap();
    let bootstrap = info["addrs"][0].as_str().unwrap().to_string();
    let home = dir.path().join("prov");
    std::fs::create_dir_all(&home).unwrap();
    let config = home.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "# my storage node\nname = \"prov\"\nrole = \"full\"\ndata_dir = \"data\"\nlisten = \"/ip4/127.0.0.1/tcp/0\"\nbootstrap = [\"{bootstrap}\"]\ngenesis = \"{}\"\n",
            devnet_dir.join("genesis.bin").display()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();

    // Bad offers are refused before anything is written or sent.
    fails_with(
        &net,
        &keys,
        &["provider", "register", "--config", cfg, "--stake", "5"],
        "below the network's minimum",
    );
    assert!(!std::fs::read_to_string(&config)
        .unwrap()
        .contains("[provider]"));
    // Unfunded accounts and no --fund-from: a clear error naming them.
    fails_with(
        &net,
        &keys,
        &[
            "provider",
            "register",
            "--config",
            cfg,
            "--capacity-gib",
            "2",
        ],
        "cannot pay their stake",
    );

    // The node is not running: the offer goes into the config and both
    // shards' accounts are funded (one of them through Atomix).
    let funded = ok_json(&ios(
        &net,
        &keys,
        &[
            "provider",
            "register",
            "--config",
            cfg,
            "--capacity-gib",
            "2",
            "--fund-from",
            "carol",
            "--json",
        ],
    ));
    assert_eq!(funded.as_array().map(Vec::len), Some(2), "{funded}");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.starts_with("# my storage node") && text.contains("capacity = 2147483648"),
        "{text}"
    );

    // Once the node runs, it registers itself on both shards.
    let log = std::fs::File::create(home.join("node.log")).unwrap();
    let _node = Killed(
        Command::new(env!("CARGO_BIN_EXE_ios"))
            .args(["node", "--config", cfg])
            .env("IOS_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while !home.join("data").join("node.json").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the node never started"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let done = ok_json(&ios(
        &net,
        &keys,
        &[
            "provider",
            "register",
            "--config",
            cfg,
            "--timeout",
            "90",
            "--json",
        ],
    ));
    let list = done.as_array().unwrap();
    assert!(list.iter().all(|s| s["registered"] == true), "{done}");
    let status = ok_json(&ios(&net, &keys, &["provider", "status", "--json"]));
    let caps: Vec<u64> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["capacity"].as_u64().unwrap())
        .collect();
    assert_eq!(caps, vec![2 << 30, 2 << 30], "{status}");
}

/// Runs `ios args`, which must fail with `needle` in what it printed
/// (a transaction the chain refused reports on stdout, other errors on stderr).
fn refused_with(net: &Devnet, keys: &Path, args: &[&str], needle: &str) {
    let o = ios(net, keys, args);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!o.status.success(), "{args:?} succeeded: {all}");
    assert!(all.contains(needle), "{args:?}: {all:?} lacks {needle:?}");
}

#[test]
fn a_service_is_listed_ordered_delivered_confirmed_and_rated_with_ios_market() {
    let dir = tempfile::tempdir().unwrap();
    let net = devnet(&dir.path().join("devnet"), &[]);
    let keys = dir.path().join("keys");
    every_shard_runs(&net, &keys);
    // Listing documents and deliveries are HUDS objects: the devnet's
    // providers register on both shards first.
    providers_registered(&net, &keys);

    // A provider, a buyer on the same shard and one on the other shard.
    // The provider is devnet user 0, pre-trusted; the buyers are not (the
    // devnet pre-trusts users 0 to 3).
    let shard = home_shard(&Keypair::from_seed("devnet-user", 0).address(), 2);
    let buyer_n = (4..64)
        .find(|n| home_shard(&Keypair::from_seed("devnet-user", *n).address(), 2) == shard)
        .unwrap();
    let other_n = (4..64)
        .find(|n| home_shard(&Keypair::from_seed("devnet-user", *n).address(), 2) != shard)
        .unwrap();
    for (name, n) in [("maker", 0), ("client", buyer_n), ("faraway", other_n)] {
        succeeds(
            &net,
            &keys,
            &["key", "new", name, "--devnet-user", &n.to_string()],
        );
    }
    // The listing document goes to HUDS first (public: its description is
    // what search reads), then the listing names it.
    let doc_file = dir.path().join("logo-offer.md");
    std::fs::write(
        &doc_file,
        "# A logo in a day\nThree drafts, one revision.\n",
    )
    .unwrap();
    let created = ok_json(&ios(
        &net,
        &keys,
        &[
            "market",
            "create",
            "--from",
            "maker",
            "--title",
            "A logo in a day",
            "--category",
            "design/logo",
            "--price",
            "5",
            "--delivery-blocks",
            "200",
            "--doc-file",
            doc_file.to_str().unwrap(),
            "--description",
            "Three vector drafts and one revision",
            "--json",
        ],
    ));
    assert_eq!(created["state"], "finalized", "{created}");
    let listing = created["id"].as_str().unwrap().to_string();
    let shown = ok_json(&ios(&net, &keys, &["market", "show", &listing, "--json"]));
    assert_eq!(shown["title"], "A logo in a day");
    assert_eq!(shown["price"], "500000000");
    let doc = shown["doc"].as_str().unwrap().to_string();
    // A listing whose document is not in HUDS, or is someone else's, is refused.
    for (from, bad_doc, why) in [
        ("maker", "ab".repeat(32), "not stored in HUDS"),
        ("client", doc.clone(), "not the sender's"),
    ] {
        refused_with(
            &net,
            &keys,
            &[
                "market",
                "create",
                "--from",
                from,
                "--title",
                "Fake",
                "--category",
                "design",
                "--price",
                "1",
                "--delivery-blocks",
                "10",
                "--doc",
                &bad_doc,
            ],
            why,
        );
    }
    let mine = ok_json(&ios(
        &net,
        &keys,
        &["market", "list", "--provider", "maker", "--json"],
    ));
    assert_eq!(mine.as_array().unwrap().len(), 1);
    // Found by search once the gateway's catalog has read its block.
    let search_until = |args: &[&str], ok: &dyn Fn(&serde_json::Value) -> bool| {
        let started = Instant::now();
        loop {
            let mut a = vec!["market", "search"];
            a.extend_from_slice(args);
            a.push("--json");
            let found = ok_json(&ios(&net, &keys, &a));
            if ok(&found) {
                return found;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "search {args:?} never gave what was expected: {found}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    let found = search_until(&["logos", "--category", "design"], &|f| f["total"] == 1);
    // The document's description is searched too.
    search_until(&["vector drafts"], &|f| f["total"] == 1);
    assert_eq!(found["hits"][0]["id"], listing.as_str());
    search_until(&["--max-price", "4"], &|f| f["total"] == 0);
    refused_with(
        &net,
        &keys,
        &["market", "search", "--sort", "sideways"],
        "unknown sort",
    );
    refused_with(
        &net,
        &keys,
        &[
            "market",
            "create",
            "--from",
            "maker",
            "--title",
            "Free",
            "--category",
            "design",
            "--price",
            "0",
            "--delivery-blocks",
            "10",
            "--doc",
            &doc,
        ],
        "below the minimum",
    );
    // A buyer on the other shard orders through Atomix: its lock carries
    // the order to the listing's shard, which takes both or neither. A
    // declined order refunds it home, through Atomix again.
    let balance = |who: &str| {
        let a = ok_json(&ios(&net, &keys, &["chain", "account", who, "--json"]));
        a["balance"].as_str().unwrap().parse::<u64>().unwrap()
    };
    let home_before = balance("faraway");
    let placed = ok_json(&ios(
        &net,
        &keys,
        &["market", "order", &listing, "--from", "faraway", "--json"],
    ));
    assert_eq!(placed["atomix"]["state"], "done", "{placed}");
    let far_order = placed["atomix"]["id"].as_str().unwrap().to_string();
    let o = ok_json(&ios(&net, &keys, &["market", "show", &far_order, "--json"]));
    assert_eq!(o["state"], "funded", "{o}");
    assert!(balance("faraway") < home_before - 500_000_000);
    succeeds(
        &net,
        &keys,
        &["market", "decline", &far_order, "--from", "maker"],
    );
    wait_until("the refund to come home", || {
        balance("faraway") >= home_before - 100_000_000
    });
    // A second one goes the whole way: the buyer confirms on the order's
    // shard, paying its fee there from what the order brought along.
    let placed = ok_json(&ios(
        &net,
        &keys,
        &["market", "order", &listing, "--from", "faraway", "--json"],
    ));
    let far_order = placed["atomix"]["id"].as_str().unwrap().to_string();
    succeeds(
        &net,
        &keys,
        &["market", "accept", &far_order, "--from", "maker"],
    );
    succeeds(
        &net,
        &keys,
        &[
            "market",
            "deliver",
            &far_order,
            "--file",
            doc_file.to_str().unwrap(),
            "--from",
            "maker",
        ],
    );
    succeeds(
        &net,
        &keys,
        &["market", "confirm", &far_order, "--from", "faraway"],
    );
    let o = ok_json(&ios(&net, &keys, &["market", "show", &far_order, "--json"]));
    assert_eq!(o["state"], "completed", "{o}");

    let placed = ok_json(&ios(
        &net,
        &keys,
        &["market", "order", &listing, "--from", "client", "--json"],
    ));
    let order = placed["id"].as_str().unwrap().to_string();
    let work = dir.path().join("logo.svg");
    std::fs::write(&work, "<svg><circle r='9'/></svg>").unwrap();
    refused_with(
        &net,
        &keys,
        &["market", "accept", &order, "--from", "client"],
        "only the provider may accept",
    );
    succeeds(
        &net,
        &keys,
        &["market", "accept", &order, "--from", "maker"],
    );
    succeeds(
        &net,
        &keys,
        &[
            "market",
            "deliver",
            &order,
            "--file",
            work.to_str().unwrap(),
            "--from",
            "maker",
        ],
    );
    // The delivery is a private HUDS object only the buyer (and the
    // provider) can open.
    let o = ok_json(&ios(&net, &keys, &["market", "show", &order, "--json"]));
    let delivery = o["delivery"].as_str().unwrap().to_string();
    let got = dir.path().join("got.svg");
    succeeds(
        &net,
        &keys,
        &[
            "store",
            "get",
            &delivery,
            "-o",
            got.to_str().unwrap(),
            "--key",
            "client",
        ],
    );
    assert_eq!(std::fs::read(&got).unwrap(), std::fs::read(&work).unwrap());
    let sealed = dir.path().join("sealed.bin");
    refused_with(
        &net,
        &keys,
        &[
            "store",
            "get",
            &delivery,
            "-o",
            sealed.to_str().unwrap(),
            "--key",
            "faraway",
        ],
        "",
    );
    // A public object, or a delivery already stored by someone else, is refused.
    refused_with(
        &net,
        &keys,
        &[
            "market",
            "deliver",
            &order,
            "--delivery",
            &doc,
            "--from",
            "maker",
        ],
        "is public",
    );
    refused_with(
        &net,
        &keys,
        &["market", "confirm", &order, "--from", "maker"],
        "only the buyer may confirm",
    );
    succeeds(
        &net,
        &keys,
        &["market", "confirm", &order, "--from", "client"],
    );
    let o = ok_json(&ios(&net, &keys, &["market", "show", &order, "--json"]));
    assert_eq!(o["state"], "completed", "{o}");

    // Sealed ratings, then revealed by both.
    succeeds(
        &net,
        &keys,
        &[
            "market",
            "rate",
            &order,
            "--from",
            "client",
            "--overall",
            "5",
            "--comment",
            "Quick and clean",
        ],
    );
    refused_with(
        &net,
        &keys,
        &["market", "rate", &order, "--from", "client", "--reveal"],
        "the other side has not rated yet",
    );
    refused_with(
        &net,
        &keys,
        &[
            "market",
            "rate",
            &order,
            "--from",
            "client",
            "--overall",
            "1",
        ],
        "already sealed",
    );
    succeeds(
        &net,
        &keys,
        &[
            "market",
            "rate",
            &order,
            "--from",
            "maker",
            "--overall",
            "4",
        ],
    );
    succeeds(
        &net,
        &keys,
        &["market", "rate", &order, "--from", "client", "--reveal"],
    );
    succeeds(
        &net,
        &keys,
        &["market", "rate", &order, "--from", "maker", "--reveal"],
    );
    succeeds(
        &net,
        &keys,
        &[
            "market", "respond", &order, "--from", "maker", "--text", "Thanks!",
        ],
    );
    let o = ok_json(&ios(&net, &keys, &["market", "show", &order, "--json"]));
    let ratings = o["ratings"].as_array().unwrap();
    assert!(ratings.iter().all(|r| r["revealed"] == true), "{o}");
    let by_buyer = ratings.iter().find(|r| r["by"] == "buyer").unwrap();
    assert_eq!(by_buyer["scores"]["overall"], 5);
    assert_eq!(by_buyer["response"], "Thanks!");
    let rep = ok_json(&ios(
        &net,
        &keys,
        &["market", "reputation", "maker", "--json"],
    ));
    assert_eq!(rep["ratings"], 1);
    assert!(rep["scores_milli"][0].as_u64().unwrap() > 3_000, "{rep}");
    let text = ios(&net, &keys, &["market", "show", &order]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("Quick and clean"));
    // Global trust: maker (devnet user 0) is pre-trusted; its four-star
    // rating of client passes client some trust; faraway, never rated, has
    // none.
    wait_until("client to gain trust", || {
        let rep = ok_json(&ios(
            &net,
            &keys,
            &["market", "reputation", "client", "--json"],
        ));
        assert_eq!(rep["trust"]["pre_trusted"], false, "{rep}");
        rep["trust"]["trust_ppm"].as_u64() > Some(0)
    });
    let maker = ok_json(&ios(
        &net,
        &keys,
        &["market", "reputation", "maker", "--json"],
    ));
    assert_eq!(maker["trust"]["pre_trusted"], true, "{maker}");
    let far = ok_json(&ios(
        &net,
        &keys,
        &["market", "reputation", "faraway", "--json"],
    ));
    assert_eq!(far["trust"]["trust_ppm"], 0, "{far}");
    assert_eq!(far["trust"]["place"], serde_json::Value::Null, "{far}");
    // The listing's search document follows the provider's new score, and
    // a paused listing is no longer found.
    search_until(&["logo", "--sort", "reputation"], &|f| {
        f["hits"][0]["provider_score_milli"].as_u64() > Some(3_000)
    });
    succeeds(
        &net,
        &keys,
        &["market", "pause", &listing, "--from", "maker"],
    );
    search_until(&["logo"], &|f| f["total"] == 0);
}
