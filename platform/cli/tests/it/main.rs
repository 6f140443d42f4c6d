//! End-to-end tests of the `ios` binary as a user runs it.

mod network;

use std::process::{Command, Output};

fn ios(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ios"))
        .args(args)
        .env("IOS_LOG", "error")
        .output()
        .expect("the ios binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs `ios` with `args`, which must succeed, and parses what it printed.
fn ios_json(args: &[&str]) -> serde_json::Value {
    let o = ios(args);
    let out = stdout(&o);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_str(&out).expect("json")
}

fn last_line(o: &Output) -> String {
    stdout(o).lines().last().unwrap_or_default().to_string()
}

/// The lowest of the per-shard heights in a devnet report line
/// (`heights=12,11,13 ...`).
fn min_height(line: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix("heights="))?
        .split(',')
        .map(|h| h.parse::<u64>().ok())
        .collect::<Option<Vec<u64>>>()?
        .into_iter()
        .min()
}

fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
}

#[test]
fn sim_seeds_end_with_the_summary_line_and_exit_zero() {
    let o = ios(&[
        "sim",
        "--seeds",
        "4",
        "--validators",
        "4",
        "--faults",
        "all",
    ]);
    let line = last_line(&o);
    assert!(
        o.status.success(),
        "{line}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        line.starts_with("sim: seeds=4 violations=0 finalized="),
        "{line}"
    );
    assert!(field(&line, "finalized").unwrap() > 0, "{line}");
}

#[test]
fn sim_seed_replays_exactly() {
    let a = ios(&["sim", "--seed", "7"]);
    let b = ios(&["sim", "--seed", "7"]);
    let trace = |o: &Output| {
        stdout(o)
            .lines()
            .find(|l| l.starts_with("sim: seed=7 "))
            .map(|l| l.split("trace=").nth(1).unwrap_or_default().to_string())
            .expect("per-seed line")
    };
    assert!(a.status.success() && b.status.success());
    assert_eq!(trace(&a), trace(&b));
    let c = ios(&["sim", "--seed", "8"]);
    assert_ne!(trace(&a), trace_of(&c, 8));
}

fn trace_of(o: &Output, seed: u64) -> String {
    stdout(o)
        .lines()
        .find(|l| l.starts_with(&format!("sim: seed={seed} ")))
        .map(|l| l.split("trace=").nth(1).unwrap_or_default().to_string())
        .expect("per-seed line")
}

#[test]
fn a_violation_prints_the_seed_and_exits_non_zero() {
    // Demanding more progress than a run can make is a liveness violation.
    let o = ios(&[
        "sim",
        "--seed",
        "3",
        "--faults",
        "none",
        "--min-progress",
        "1000000",
    ]);
    assert!(!o.status.success());
    let out = stdout(&o);
    assert!(out.contains("VIOLATION seed=3"), "{out}");
    assert!(out.contains("replay with: ios sim --seed 3"), "{out}");
    assert!(
        last_line(&o).starts_with("sim: seeds=1 violations="),
        "{out}"
    );
    assert_ne!(field(&last_line(&o), "violations"), Some(0));
}

#[test]
fn bad_flags_are_clear_errors() {
    let o = ios(&["sim", "--faults", "lightning"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("unknown fault \"lightning\""), "{err}");
}

#[test]
fn devnet_finalizes_transfers_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("devnet");
    let o = ios(&[
        "devnet",
        "--idle-block-ms",
        "200",
        // Long enough for a beacon round lost to a loaded machine (the
        // next round's timeouts are longer) and two more blocks after it.
        "--seconds",
        "8",
        "--tps",
        "200",
        "--web",
        "127.0.0.1:0",
        "--data",
        data.to_str().unwrap(),
    ]);
    let out = stdout(&o);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let reports: Vec<&str> = out.lines().filter(|l| l.starts_with("heights=")).collect();
    assert!(reports.len() >= 3, "{out}");
    let last = out.lines().last().unwrap();
    assert!(last.contains("state roots agree: true"), "{last}");
    let height = min_height(reports.last().unwrap()).unwrap();
    assert!(
        height >= 3,
        "every shard finalizes: {out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let txs: u64 = last
        .split("; ")
        .find_map(|p| p.strip_suffix(" transactions finalized"))
        .and_then(|v| v.parse().ok())
        .expect("summary names finalized transactions");
    assert!(txs > 0, "{last}");

    // Restarting on the same data continues the same chain.
    let o2 = ios(&[
        "devnet",
        "--idle-block-ms",
        "200",
        "--seconds",
        "6",
        "--tps",
        "0",
        "--web",
        "127.0.0.1:0",
        "--data",
        data.to_str().unwrap(),
    ]);
    let out2 = stdout(&o2);
    assert!(
        o2.status.success(),
        "{out2}\n{}",
        String::from_utf8_lossy(&o2.stderr)
    );
    let h2 = out2
        .lines()
        .rev()
        .find_map(min_height)
        .expect("height lines");
    assert!(h2 > height, "restart went from {height} to {h2}");
}

#[test]
fn bench_chain_prints_its_ratio_as_json() {
    let o = ios(&[
        "bench",
        "chain",
        "--json",
        "--txs",
        "2000",
        "--block-txs",
        "500",
    ]);
    let out = stdout(&o);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for key in [
        "\"finalized_tps\"",
        "\"finality_p50_ms\"",
        "\"finality_p99_ms\"",
        "\"smt_updates_per_sec\"",
        "\"ed25519_batch_verify_per_sec\"",
        "\"ratio\"",
    ] {
        assert!(out.contains(key), "missing {key} in {out}");
    }
}

/// The HUDS bench measures both codes (checking its own round trip),
/// search, and a put and get through a devnet (in the networks test group:
/// its name says devnet).
#[test]
fn bench_huds_reports_codes_search_and_devnet_as_json() {
    let v = ios_json(&[
        "bench",
        "huds",
        "--json",
        "--seconds",
        "0.05",
        "--docs",
        "2000",
        "--devnet-mib",
        "8",
    ]);
    let codes: Vec<(u64, u64)> = v["codecs"]
        .as_array()
        .expect("codecs")
        .iter()
        .map(|c| (c["data"].as_u64().unwrap(), c["parity"].as_u64().unwrap()))
        .collect();
    assert_eq!(codes, vec![(4, 2), (10, 4)]);
    for c in v["codecs"].as_array().unwrap() {
        for key in [
            "encode_gb_per_sec",
            "decode_gb_per_sec",
            "encode_pipeline_gb_per_sec",
            "decode_pipeline_gb_per_sec",
        ] {
            assert!(c[key].as_f64().expect(key) > 0.0, "{key} in {v}");
        }
    }
    assert!(v["blake3_gb_per_sec"].as_f64().expect("blake3") > 0.0);
    assert!(v["memcpy_gb_per_sec"].as_f64().expect("memcpy") > 0.0);
    assert_eq!(v["search"]["docs"], 2000);
    assert_eq!(v["search"]["queries"], 1000);
    assert!(v["search"]["query_p99_ms"].as_f64().expect("p99") > 0.0);
    assert_eq!(v["devnet"]["object_mib"], 8);
    for key in ["file_copy_mb_per_sec", "put_mb_per_sec", "get_mb_per_sec"] {
        assert!(v["devnet"][key].as_f64().expect(key) > 0.0, "{key} in {v}");
    }
    let bad = ios(&["bench", "huds", "--seconds", "0"]);
    assert!(!bad.status.success(), "zero seconds is refused");
}

/// Order lifecycles run on one shard and across shards (every order placed
/// through Atomix); the report parses, with a rating's cost in transfers.
#[test]
fn bench_market_runs_lifecycles_on_one_shard_and_across_shards() {
    let v = ios_json(&[
        "bench",
        "market",
        "--json",
        "--orders",
        "40",
        "--block-txs",
        "100",
    ]);
    assert!(v["lifecycles_per_sec"].as_f64().unwrap() > 0.0, "{v}");
    assert!(
        v["cross_shard_lifecycles_per_sec"].as_f64().unwrap() > 0.0,
        "{v}"
    );
    let phases = |k: &str| -> Vec<String> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|p| p["phase"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        phases("phases").last().map(String::as_str),
        Some("transfers")
    );
    assert_eq!(phases("cross_shard_phases")[0], "place");
    assert_eq!(v["cross_shard_phases"][0]["txs"], 40);
    assert!(v["rating_cost_in_transfers"].as_f64().unwrap() > 0.0);
}

/// Each (S, share) runs in its own process; the report parses and every
/// cross-shard transfer of the 100% run committed (its latency is measured).
#[test]
fn bench_atomix_reports_every_run_as_json() {
    let v = ios_json(&[
        "bench",
        "atomix",
        "--json",
        "--validators",
        "12",
        "--transfers",
        "400",
        "--block-txs",
        "200",
        "--shards",
        "1,2",
        "--cross",
        "0,100",
    ]);
    let runs = v["runs"].as_array().expect("runs");
    // S = 1 has no 100% run: there is no other shard to cross to.
    let pairs: Vec<(u64, u64)> = runs
        .iter()
        .map(|r| {
            (
                r["shards"].as_u64().unwrap(),
                r["cross_percent"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(pairs, vec![(1, 0), (2, 0), (2, 100)]);
    let cross = &runs[2];
    assert_eq!(cross["cross_transfers"], 400);
    assert!(
        cross["commit_latency_blocks_p50"]
            .as_u64()
            .expect("latency")
            >= 1
    );
    assert!(cross["finalized_tps"].as_f64().expect("tps") > 0.0);
    assert!(runs[0]["commit_latency_blocks_p50"].is_null());
    assert!(v["cross_shares"][0]["cross_100_over_local"]
        .as_f64()
        .is_some());
    assert!(v["limits"]["ed25519_batch_verify_per_sec"]
        .as_f64()
        .is_some());
}

#[test]
fn committee_risk_json_shrinks_with_the_committee() {
    let o = ios(&[
        "committee-risk",
        "--json",
        "--validators",
        "400",
        "--sizes",
        "16,64",
        "--byzantine",
        "20",
    ]);
    let out = stdout(&o);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
    assert_eq!(v["validators"], 400);
    assert_eq!(v["sizes"], serde_json::json!([16, 64]));
    assert_eq!(v["byzantine"], serde_json::json!([80]));
    let cells = v["cells"].as_array().expect("cells");
    assert_eq!(cells.len(), 2, "{out}");
    let tail_of = |size: u64| {
        let c = cells
            .iter()
            .find(|c| c["size"] == size)
            .unwrap_or_else(|| panic!("no cell for {size} in {out}"));
        assert_eq!(c["byzantine_percent"], 20.0);
        assert_eq!(c["f"], (size - 1) / 3);
        c["tail"].as_f64().expect("tail is a number")
    };
    let (t16, t64) = (tail_of(16), tail_of(64));
    assert!(0.0 < t64 && t64 < t16 && t16 < 1.0, "{t16} {t64}");
}

#[test]
fn committee_risk_rejects_a_share_over_100_percent() {
    let o = ios(&["committee-risk", "--byzantine", "150"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty(), "{}", stdout(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--byzantine 150 is outside 0..100"), "{err}");
}

/// `ios key export` writes the web UI's backup file and `ios key import`
/// reads one back (a key moves between the CLI and a browser); a backup
/// whose seed does not give its address is refused.
#[test]
fn keys_move_between_the_cli_and_the_web_ui_backup_format() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ios"))
            .args(args)
            .env("IOS_LOG", "error")
            .env("IOS_PASSWORD", "test password")
            .env("IOS_KEYSTORE", &keys)
            .output()
            .expect("the ios binary runs")
    };
    let o = run(&["key", "new", "carol", "--devnet-user", "3"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let file = dir.path().join("carol.json");
    let o = run(&["key", "export", "carol", "-o", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let backup: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let devnet = ios_chain::crypto::Keypair::from_seed("devnet-user", 3);
    assert_eq!(backup["address"], devnet.address().to_string());
    assert_eq!(
        backup["seed"],
        ios_chain::hex::encode(&devnet.secret_bytes())
    );
    assert_eq!(backup["ios_key"], 1);

    let o = run(&["key", "import", file.to_str().unwrap(), "dave", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(info["address"], devnet.address().to_string());

    // A seed that does not give the address: refused, nothing stored.
    let other = ios_chain::crypto::Keypair::from_seed("devnet-user", 4);
    let forged = dir.path().join("forged.json");
    std::fs::write(
        &forged,
        serde_json::json!({"ios_key": 1, "address": devnet.address().to_string(), "seed": ios_chain::hex::encode(&other.secret_bytes())}).to_string(),
    )
    .unwrap();
    let o = run(&["key", "import", forged.to_str().unwrap(), "eve"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not its address"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run(&["key", "show", "eve"]);
    assert!(!o.status.success(), "a refused import stored nothing");
}
