//! `ios`: the one binary. Thin: parses flags, calls the engines and the node
//! runtime, prints results.

mod bench;
mod devnet;
mod risk;
mod sim;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ios",
    version,
    about = "IOS — the Internet of Services",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a whole network on this machine (validators with a built-in transfer load).
    Devnet(devnet::DevnetArgs),
    /// Run the deterministic simulator: many seeds, faults, safety and liveness checks.
    Sim(sim::SimArgs),
    /// Measure performance against this machine's limits.
    Bench(bench::BenchArgs),
    /// Size shard committees: the chance a random committee has more than f Byzantine members.
    CommitteeRisk(risk::RiskArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("IOS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Devnet(a) => devnet::run(a),
        Command::Sim(a) => sim::run(a),
        Command::Bench(a) => bench::run(a),
        Command::CommitteeRisk(a) => risk::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
