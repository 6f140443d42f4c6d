//! `ios sim`: runs seeds of the deterministic simulator in parallel and prints
//! one summary line; any violation prints its seed and how to replay it.

use anyhow::{Context, Result};
use clap::Args;
use ios_chain::sim::{self, Faults, SimConfig, SimReport};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Run seeds 0..N.
    #[arg(long, default_value_t = 20, conflicts_with = "seed")]
    seeds: u64,
    /// Replay exactly one seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Validators per committee (the network has this many per shard, the beacon included).
    #[arg(long, default_value_t = 4)]
    validators: usize,
    /// Account shards besides the beacon (0: one chain).
    #[arg(long, default_value_t = 0)]
    shards: u16,
    /// Faults to inject: all, none, or a list of loss,delay,duplicate,reorder,partition,crash,byzantine.
    #[arg(long, default_value = "all", value_parser = Faults::parse)]
    faults: Faults,
    /// Virtual milliseconds with faults active, per seed.
    #[arg(long, default_value_t = SimConfig::default().run_ms)]
    run_ms: u64,
    /// Virtual milliseconds after healing in which progress is required.
    #[arg(long, default_value_t = SimConfig::default().heal_ms)]
    heal_ms: u64,
    /// Offered load in transactions per virtual second.
    #[arg(long, default_value_t = SimConfig::default().load_tps)]
    load_tps: u32,
    /// Blocks every honest node must finalize after all faults heal.
    #[arg(long, default_value_t = SimConfig::default().min_progress)]
    min_progress: u64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Print one line per seed.
    #[arg(long, short)]
    verbose: bool,
    /// Run the FTFS manipulation simulation instead (a market of honest
    /// providers and attackers): each seed's table of attacker ranks and
    /// scores with all defences and with each one off.
    #[arg(long)]
    market: bool,
    /// With --market: print the reports as JSON.
    #[arg(long, requires = "market")]
    json: bool,
}

/// `ios sim --market`: fails when, with every defence on, an attack
/// reaches the top quartile or honest providers' ranking stops following
/// their quality (Spearman < 0.8).
fn market(a: &SimArgs) -> Result<ExitCode> {
    let seeds: Vec<u64> = match a.seed {
        Some(s) => vec![s],
        None => (0..a.seeds).collect(),
    };
    let cfg = ios_market::sim::SimConfig::default();
    let mut failed = Vec::new();
    let mut reports = Vec::new();
    for seed in seeds {
        let r = ios_market::sim::run(seed, &cfg);
        let all = r.all_defences();
        let worst = all.attacks.iter().map(|o| o.rank).min().unwrap_or(u32::MAX);
        if worst <= r.top_quartile() || all.honest_spearman < 0.8 {
            failed.push(seed);
        }
        if !a.json {
            println!("{}", r.render());
        }
        reports.push(r);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    if failed.is_empty() {
        eprintln!(
            "market sim: {} seeds; with every defence no attack reached the top quartile",
            reports.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "market sim: defences failed on seeds {failed:?} (replay with --market --seed N)"
        );
        Ok(ExitCode::FAILURE)
    }
}

pub fn run(a: SimArgs) -> Result<ExitCode> {
    if a.market {
        return market(&a);
    }
    anyhow::ensure!(a.validators >= 1, "--validators must be at least 1");
    anyhow::ensure!(a.shards <= 64, "--shards must be at most 64");
    let cfg = SimConfig {
        validators: a.validators,
        shards: a.shards,
        faults: a.faults,
        run_ms: a.run_ms,
        heal_ms: a.heal_ms,
        load_tps: a.load_tps,
        min_progress: a.min_progress,
        ..SimConfig::default()
    };
    let seeds: Vec<u64> = match a.seed {
        Some(s) => vec![s],
        None => (0..a.seeds).collect(),
    };
    let dir = std::env::temp_dir().join(format!("ios-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let jobs = a
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, seeds.len().max(1));
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let results: Arc<Mutex<Vec<Result<SimReport, String>>>> =
        Arc::new(Mutex::new(Vec::with_capacity(seeds.len())));
    let total = seeds.len() as u64;
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(&seed) = seeds.get(i as usize) else { break };
                let r = sim::run(seed, &cfg, &dir).map_err(|e| format!("seed {seed}: {e}"));
                let finished = done.fetch_add(1, Ordering::SeqCst) + 1;
                if a.verbose {
                    match &r {
                        Ok(rep) => eprintln!(
                            "seed {seed}: finalized={} txs={} crashes={} partitions={} byzantine={} slashed={} violations={} trace={}",
                            rep.finalized, rep.txs, rep.crashes, rep.partitions, rep.byzantine, rep.slashed,
                            rep.violations.len(), &rep.trace.to_hex()[..16]
                        ),
                        Err(e) => eprintln!("{e}"),
                    }
                } else if finished.is_multiple_of(10) || finished == total {
                    eprintln!("sim: {finished}/{total} seeds done");
                }
                results.lock().expect("not poisoned").push(r);
            });
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
    let mut results = Arc::try_unwrap(results)
        .map_err(|_| anyhow::anyhow!("worker still holds results"))?
        .into_inner()
        .expect("not poisoned");
    results.sort_by_key(|r| match r {
        Ok(rep) => rep.seed,
        Err(_) => u64::MAX,
    });
    let mut violations = 0usize;
    let mut errors = 0usize;
    let (mut finalized, mut txs, mut crashes, mut partitions, mut slashed, mut byz_runs) =
        (0, 0, 0, 0, 0, 0);
    let mut epochs = 0;
    let (mut shard_epoch_changes, mut relays_dropped) = (0, 0);
    let (mut cross_started, mut cross_committed, mut cross_refunded, mut forged) = (0, 0, 0, 0);
    let (mut fast_syncs, mut forged_chunks, mut evidence_relayed) = (0, 0, 0);
    let replay = |seed: u64| {
        format!(
            "ios sim --seed {seed} --shards {} --validators {} --faults {} --run-ms {} --heal-ms {} --load-tps {} --min-progress {}",
            a.shards,
            a.validators,
            fault_list(&a.faults),
            a.run_ms,
            a.heal_ms,
            a.load_tps,
            a.min_progress
        )
    };
    for r in &results {
        match r {
            Ok(rep) => {
                finalized += rep.finalized;
                epochs += rep.epochs;
                shard_epoch_changes += rep.shard_epoch_changes;
                relays_dropped += rep.relays_dropped;
                cross_started += rep.cross_started;
                cross_committed += rep.cross_committed;
                cross_refunded += rep.cross_refunded;
                forged += rep.forged_proofs;
                fast_syncs += rep.fast_syncs;
                evidence_relayed += rep.evidence_relayed;
                forged_chunks += rep.forged_chunks;
                txs += rep.txs;
                crashes += rep.crashes as u64;
                partitions += rep.partitions as u64;
                slashed += rep.slashed;
                byz_runs += (rep.byzantine > 0) as u64;
                for v in &rep.violations {
                    violations += 1;
                    println!(
                        "sim: VIOLATION seed={} t={}ms: {}",
                        rep.seed, v.time, v.message
                    );
                }
                if !rep.violations.is_empty() {
                    println!("sim: replay with: {}", replay(rep.seed));
                }
                if seeds.len() == 1 {
                    println!(
                        "sim: seed={} finalized={} epochs={} shard_epoch_changes={} relays_dropped={} forged_proofs={} cross_started={} cross_committed={} cross_refunded={} fast_syncs={} fast_sync_fallbacks={} superseded_snapshots={} forged_chunks={} refused_chunks={} evidence_relayed={} txs={} failed_receipts={} rejected={} messages={} dropped={} crashes={} partitions={} byzantine={} slashed={} trace={}",
                        rep.seed, rep.finalized, rep.epochs, rep.shard_epoch_changes, rep.relays_dropped, rep.forged_proofs, rep.cross_started, rep.cross_committed, rep.cross_refunded, rep.fast_syncs, rep.fast_sync_fallbacks, rep.superseded_snapshots, rep.forged_chunks, rep.refused_chunks, rep.evidence_relayed, rep.txs, rep.failed_receipts, rep.rejected_submissions,
                        rep.messages, rep.dropped, rep.crashes, rep.partitions, rep.byzantine, rep.slashed, rep.trace
                    );
                }
            }
            Err(e) => {
                errors += 1;
                println!("sim: ERROR {e}");
            }
        }
    }
    println!(
        "sim: seeds={} violations={} finalized={} epochs={} shard_epoch_changes={} relays_dropped={} cross_started={} cross_committed={} cross_refunded={} forged_proofs={} fast_syncs={} forged_chunks={} evidence_relayed={} txs={} crashes={} partitions={} byzantine_runs={} slashed={} errors={} elapsed={:.1}s",
        results.len(),
        violations,
        finalized,
        epochs,
        shard_epoch_changes,
        relays_dropped,
        cross_started,
        cross_committed,
        cross_refunded,
        forged,
        fast_syncs,
        forged_chunks,
        evidence_relayed,
        txs,
        crashes,
        partitions,
        byz_runs,
        slashed,
        errors,
        started.elapsed().as_secs_f64()
    );
    Ok(if violations == 0 && errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn fault_list(f: &Faults) -> String {
    if *f == Faults::all() {
        return "all".into();
    }
    let on = [
        f.loss,
        f.delay,
        f.duplicate,
        f.reorder,
        f.partition,
        f.crash,
        f.byzantine,
    ];
    let names: Vec<&str> = Faults::NAMES
        .iter()
        .zip(on)
        .filter(|(_, on)| *on)
        .map(|(n, _)| *n)
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(",")
    }
}
