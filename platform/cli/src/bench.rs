//! `ios bench`: performance against the machine's limits, measured in the same run.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use ios_node::bench::{self, ChainBenchConfig};
use ios_node::bench_atomix::{self, AtomixBenchConfig};
use ios_node::bench_devnet::{self, DevnetBenchConfig};
use ios_node::bench_huds;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(Subcommand, Debug)]
enum BenchWhat {
    /// The default devnet over libp2p under steady signed transfers, beside the engines alone for the same topology.
    Devnet {
        #[arg(long, default_value_t = 2)]
        shards: u16,
        #[arg(long, default_value_t = 4)]
        committee: usize,
        /// Seconds of load measured (after a warm-up).
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Offered transfers per second (default: the engines' own rate).
        #[arg(long)]
        tps: Option<f64>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// HUDS codec: encode/decode GB/s for 4+2 and 10+4 on one core, vs blake3 and memcpy.
    Huds {
        /// Seconds per codec measurement.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Documents to index for the search measurement (0 skips it).
        #[arg(long, default_value_t = 1_000_000)]
        docs: u64,
        /// MiB of the object put and got through a local devnet of 6
        /// providers (0 skips it).
        #[arg(long, default_value_t = 1024)]
        devnet_mib: u64,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Market order lifecycles through consensus on one shard (place, accept, deliver, confirm,
    /// rate), and a rating's cost against a plain transfer's, with the machine's limits.
    Market {
        #[arg(long, default_value_t = 4)]
        validators: usize,
        /// Order lifecycles to run.
        #[arg(long, default_value_t = 2_000)]
        orders: usize,
        /// Orders each provider takes.
        #[arg(long, default_value_t = 4)]
        orders_per_provider: usize,
        /// Transactions per block.
        #[arg(long, default_value_t = 2_000)]
        block_txs: u32,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// The gateway over HTTP: listing searches and listing pages under concurrent load on
    /// loopback, against the same searches through the handler without HTTP.
    Web {
        /// Listings created before measuring.
        #[arg(long, default_value_t = 200)]
        listings: usize,
        /// Concurrent clients.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// One shard in the simulator's engines with real signatures: TPS, finality, SMT, vs verify rate.
    Chain {
        #[arg(long, default_value_t = 4)]
        validators: usize,
        /// Transactions to finalize.
        #[arg(long, default_value_t = 20_000)]
        txs: usize,
        /// Transactions per block.
        #[arg(long, default_value_t = 2_000)]
        block_txs: u32,
        /// Keys in the tree for the sparse-Merkle measurement (0 skips it).
        #[arg(long, default_value_t = 100_000)]
        smt_keys: u64,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Sharded networks (S = 1, 2, 4, same total validators): TPS at 0/50/100% cross-shard, Atomix latency.
    Atomix {
        /// Validators in the whole network (committees of validators / (S + 1)).
        #[arg(long, default_value_t = 30)]
        validators: usize,
        /// Transfers to finalize per run.
        #[arg(long, default_value_t = 20_000)]
        transfers: usize,
        /// Transactions per block.
        #[arg(long, default_value_t = 1_000)]
        block_txs: u32,
        /// Account-shard counts to run, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
        shards: Vec<u16>,
        /// Cross-shard shares in percent, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "0,50,100")]
        cross: Vec<u8>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Internal: run only this "S,percent" pair and print its JSON
        /// (the benchmark runs each pair in a fresh process this way).
        #[arg(long, hide = true, value_delimiter = ',')]
        only: Option<Vec<u16>>,
    },
}

fn bench_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("ios-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

pub fn run(a: BenchArgs) -> Result<ExitCode> {
    match a.what {
        BenchWhat::Devnet {
            shards,
            committee,
            seconds,
            tps,
            json,
        } => {
            let dir = bench_dir()?;
            let cfg = DevnetBenchConfig {
                shards,
                committee,
                seconds,
                offered_tps: tps,
                ..DevnetBenchConfig::default()
            };
            eprintln!("bench: engines alone, then the devnet over libp2p ({seconds} s of load)...");
            let r = bench_devnet::run(&cfg, &dir);
            let _ = std::fs::remove_dir_all(&dir);
            let r = r?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "topology              beacon + {} shards x {} validators, {} nodes",
                    r.shards, r.committee, r.nodes
                );
                println!(
                    "engines alone         {:.0} transfers/s (one thread, no network)",
                    r.sim_tps
                );
                for l in &r.levels {
                    println!(
                        "offered {:>6.0}/s       finalized {:.0}/s, p50 {} ms, p99 {} ms{}",
                        l.offered_tps,
                        l.finalized_tps,
                        l.latency_p50_ms,
                        l.latency_p99_ms,
                        if l.sustained { " (kept up)" } else { "" }
                    );
                }
                println!(
                    "devnet (libp2p)       {:.0} transfers/s at the highest load it kept up with",
                    r.devnet_tps
                );
                println!(
                    "finality p50 / p99    {} ms / {} ms (submission to commit)",
                    r.latency_p50_ms, r.latency_p99_ms
                );
                println!(
                    "devnet / engines      {:.2} (target >= 0.50: {})",
                    r.devnet_over_sim,
                    if r.target_met { "met" } else { "NOT met" }
                );
                println!(
                    "ed25519 verify/s      {:.0} batch of 1024 (1 core)",
                    r.limits.ed25519_batch_verify_per_sec
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchWhat::Huds {
            seconds,
            docs,
            devnet_mib,
            json,
        } => {
            anyhow::ensure!(
                seconds.is_finite() && (0.05..=600.0).contains(&seconds),
                "--seconds must be between 0.05 and 600"
            );
            let dir = bench_dir()?;
            let r = bench_huds::run(
                std::time::Duration::from_secs_f64(seconds),
                docs,
                &dir.join("search"),
                |p| eprintln!("bench: {p}..."),
            )
            .and_then(|r| {
                let devnet = (devnet_mib > 0)
                    .then(|| {
                        crate::bench_store::devnet_put_get(devnet_mib, &dir, |p| {
                            eprintln!("bench: {p}...")
                        })
                    })
                    .transpose()?;
                Ok((r, devnet))
            });
            let _ = std::fs::remove_dir_all(&dir);
            let (r, devnet) = r?;
            #[derive(serde::Serialize)]
            struct Report {
                #[serde(flatten)]
                local: bench_huds::HudsBenchReport,
                /// None when skipped (`--devnet-mib 0`).
                devnet: Option<crate::bench_store::DevnetRate>,
            }
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&Report { local: r, devnet })?
                );
            } else {
                if let Some(d) = &devnet {
                    println!(
                        "devnet put/get        {} MiB through 6 providers: put {:.1} MB/s, get {:.1} MB/s = {:.2} x file copy ({:.0} MB/s); target 0.25 {}",
                        d.object_mib,
                        d.put_mb_per_sec,
                        d.get_mb_per_sec,
                        d.get_vs_copy,
                        d.file_copy_mb_per_sec,
                        if d.get_target_met { "met" } else { "NOT met" }
                    );
                }
                for c in &r.codecs {
                    println!(
                        "{:>2}+{:<2} {} MiB segments   RS encode {:.2} GB/s, decode {:.2} GB/s ({} lost); with hashing {:.2} / {:.2} GB/s",
                        c.data,
                        c.parity,
                        c.segment_mib,
                        c.encode_gb_per_sec,
                        c.decode_gb_per_sec,
                        c.parity,
                        c.encode_pipeline_gb_per_sec,
                        c.decode_pipeline_gb_per_sec
                    );
                }
                println!(
                    "blake3 / memcpy        {:.2} / {:.2} GB/s (1 core)",
                    r.blake3_gb_per_sec, r.memcpy_gb_per_sec
                );
                println!(
                    "10+4 RS encode         {:.2} x memcpy; target 2 GB/s {}",
                    r.encode_vs_memcpy,
                    if r.encode_target_met {
                        "met"
                    } else {
                        "NOT met"
                    }
                );
                if let Some(s) = &r.search {
                    println!(
                        "search                 {} docs indexed at {:.0}/s; {} queries p50 {:.2} ms, p99 {:.2} ms (target 10 ms {})",
                        s.docs,
                        s.index_docs_per_sec,
                        s.queries,
                        s.query_p50_ms,
                        s.query_p99_ms,
                        if s.p99_target_met { "met" } else { "NOT met" }
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchWhat::Web {
            listings,
            clients,
            seconds,
            json,
        } => {
            let dir = bench_dir()?;
            let cfg = ios_web::bench::WebBenchConfig {
                listings,
                clients,
                seconds,
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let r = rt.block_on(ios_web::bench::run(&cfg, &dir, |p| {
                eprintln!("bench: {p}...")
            }));
            drop(rt);
            let _ = std::fs::remove_dir_all(&dir);
            let r = r?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                let line = |what: &str, l: &ios_web::bench::Load| {
                    println!(
                        "{what:<28} {:>8.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms{}",
                        l.per_sec,
                        l.p50_ms,
                        l.p99_ms,
                        if l.errors > 0 {
                            format!("   {} errors", l.errors)
                        } else {
                            String::new()
                        }
                    )
                };
                println!(
                    "{} listings, {} concurrent clients, {} s each",
                    r.listings, r.clients, r.seconds
                );
                line("search over HTTP", &r.search_http);
                line("listing page over HTTP", &r.listing_page_http);
                line("listing JSON over HTTP", &r.listing_json_http);
                line("search, handler, no HTTP", &r.search_direct);
                println!(
                    "HTTP multiplies the search p99 by {:.2} (target: at most 2): {}",
                    r.http_p99_factor,
                    if r.target_met { "met" } else { "NOT met" }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchWhat::Market {
            validators,
            orders,
            orders_per_provider,
            block_txs,
            json,
        } => {
            let dir = bench_dir()?;
            let cfg = ios_node::bench_market::MarketBenchConfig {
                validators,
                orders,
                orders_per_provider,
                block_txs,
            };
            let r = ios_node::bench_market::run_market(&cfg, &dir, |p| eprintln!("bench: {p}..."));
            let _ = std::fs::remove_dir_all(&dir);
            let r = r?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "order lifecycles/s    {:.1} ({} orders, one shard of {} validators)",
                    r.lifecycles_per_sec, r.orders, r.validators
                );
                for p in &r.phases {
                    println!(
                        "  {:<16}    {:>6} txs in {:.2} s = {:.0}/s",
                        p.phase, p.txs, p.seconds, p.tps
                    );
                }
                if let Some(x) = r.cross_shard_lifecycles_per_sec {
                    println!(
                        "across shards         {x:.1} lifecycles/s (buyers on one shard, providers on another, orders through Atomix)"
                    );
                }
                for p in &r.cross_shard_phases {
                    println!(
                        "  {:<16}    {:>6} txs in {:.2} s = {:.0}/s",
                        p.phase, p.txs, p.seconds, p.tps
                    );
                }
                println!(
                    "rating vs transfer    {:.0} reveals/s vs {:.0} transfers/s: a rating costs {:.2} transfers",
                    r.reveal_tps, r.transfer_tps, r.rating_cost_in_transfers
                );
                println!(
                    "ed25519 verify/s      {:.0} batch of 1024, {:.0} single (1 core)",
                    r.limits.ed25519_batch_verify_per_sec, r.limits.ed25519_single_verify_per_sec
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchWhat::Chain {
            validators,
            txs,
            block_txs,
            smt_keys,
            json,
        } => {
            let dir = bench_dir()?;
            let cfg = ChainBenchConfig {
                validators,
                txs,
                users: 2_000.min(txs.max(1)),
                block_txs,
                smt_keys,
            };
            let r = bench::run_chain(&cfg, &dir, |p| eprintln!("bench: {p}..."));
            let _ = std::fs::remove_dir_all(&dir);
            let r = r?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!("validators            {}", r.validators);
                println!("finalized tps         {:.0}", r.finalized_tps);
                println!(
                    "finality p50 / p99    {:.0} ms / {:.0} ms",
                    r.finality_p50_ms, r.finality_p99_ms
                );
                println!("blocks                {}", r.blocks);
                println!(
                    "smt updates/s         {:.0} ({} keys, in memory as the state uses it)",
                    r.smt_updates_per_sec, r.smt_keys
                );
                println!(
                    "ed25519 verify/s      {:.0} batch of 1024, {:.0} single (1 core)",
                    r.limits.ed25519_batch_verify_per_sec, r.limits.ed25519_single_verify_per_sec
                );
                println!(
                    "blake3 / memcpy       {:.2} / {:.2} GiB/s",
                    r.limits.blake3_gib_per_sec, r.limits.memcpy_gib_per_sec
                );
                println!(
                    "ratio                 {:.3} (tps x validators / verify rate)",
                    r.ratio
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchWhat::Atomix {
            validators,
            transfers,
            block_txs,
            shards,
            cross,
            json,
            only,
        } => {
            let cfg = AtomixBenchConfig {
                total_validators: validators,
                transfers,
                users_per_shard: 300,
                block_txs,
                shards,
                cross_percents: cross,
            };
            if let Some(only) = only {
                let [s, pct] = only[..] else {
                    anyhow::bail!("--only takes S,percent");
                };
                let pct = u8::try_from(pct).context("--only percent")?;
                let dir = bench_dir()?;
                let r = bench_atomix::run_one(&cfg, s, pct, &dir);
                let _ = std::fs::remove_dir_all(&dir);
                println!("{}", serde_json::to_string(&r?)?);
                return Ok(ExitCode::SUCCESS);
            }
            let exe = std::env::current_exe().context("finding the ios binary")?;
            let r = bench_atomix::run_atomix(
                &cfg,
                |p| eprintln!("bench: {p}..."),
                |s, pct| {
                    let out = std::process::Command::new(&exe)
                        .args(["bench", "atomix", "--only", &format!("{s},{pct}")])
                        .args(["--validators", &validators.to_string()])
                        .args(["--transfers", &transfers.to_string()])
                        .args(["--block-txs", &block_txs.to_string()])
                        .stderr(std::process::Stdio::inherit())
                        .output()
                        .context("starting a benchmark run")?;
                    if !out.status.success() {
                        anyhow::bail!(
                            "the run S = {s}, {pct}% cross-shard failed ({})",
                            out.status
                        );
                    }
                    serde_json::from_slice(&out.stdout).context("reading a run's result")
                },
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "validators {} in all; committees of validators / (S + 1)",
                r.total_validators
            );
            println!(
                " S  n  cross      tps  commit p50/p99  end-to-end cross / local p50/p99  relays"
            );
            let blocks = |a: Option<u64>, b: Option<u64>| match (a, b) {
                (Some(a), Some(b)) => format!("{a}/{b}"),
                _ => "-".into(),
            };
            for x in &r.runs {
                println!(
                    "{:>2} {:>2} {:>5}% {:>8.0} {:>15} {:>17} / {:<14} {:>7}",
                    x.shards,
                    x.committee_size,
                    x.cross_percent,
                    x.finalized_tps,
                    blocks(x.commit_latency_blocks_p50, x.commit_latency_blocks_p99),
                    blocks(x.cross_latency_blocks_p50, x.cross_latency_blocks_p99),
                    blocks(x.local_latency_blocks_p50, x.local_latency_blocks_p99),
                    x.relay_txs
                );
            }
            for c in &r.cross_shares {
                println!(
                    "S = {}: 100% cross-shard reaches {:.0}% of the all-local throughput",
                    c.shards,
                    c.cross_100_over_local * 100.0
                );
            }
            println!(
                "targets: Atomix commit latency p50 <= 3 blocks {}; 100%-cross >= 40% of local {}",
                if r.latency_target_met {
                    "met"
                } else {
                    "NOT met"
                },
                if r.throughput_target_met {
                    "met"
                } else {
                    "NOT met"
                }
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
