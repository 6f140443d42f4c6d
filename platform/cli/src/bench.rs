//! `ios bench`: performance against the machine's limits, measured in the same run.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use ios_node::bench::{self, ChainBenchConfig};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(Subcommand, Debug)]
enum BenchWhat {
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
}

pub fn run(a: BenchArgs) -> Result<ExitCode> {
    match a.what {
        BenchWhat::Chain {
            validators,
            txs,
            block_txs,
            smt_keys,
            json,
        } => {
            let dir = std::env::temp_dir().join(format!("ios-bench-{}", std::process::id()));
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
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
    }
}
