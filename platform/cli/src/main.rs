//! `ios`: the one binary. Thin: parses flags, calls the engines and the node
//! runtime, prints results.

mod bench;
mod bench_store;
mod chain;
mod common;
mod devnet;
mod key;
mod market;
mod node;
mod procdevnet;
mod provider;
mod risk;
mod sim;
mod store;
mod tx;

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
    /// Run a whole network on this machine: beacon + shards of libp2p validators and a gateway.
    Devnet(devnet::DevnetArgs),
    /// Run one node from its config file.
    Node(node::NodeArgs),
    /// Write a commented default node config.
    Init(node::InitArgs),
    /// Rebuild a stopped node's derived data (the search index) from its chain data.
    Reindex(node::ReindexArgs),
    /// Keys in the local keystore (encrypted at rest).
    Key(key::KeyArgs),
    /// Build, sign, submit and follow transactions (talks to --node).
    Tx(tx::TxArgs),
    /// HUDS storage: put, get, ls, status, search (talks to --node).
    Store(store::StoreArgs),
    /// The market: listings, orders, ratings, disputes and juries (talks to --node).
    Market(market::MarketArgs),
    /// HUDS storage providers: register a node as one, status of all (talks to --node).
    Provider(provider::ProviderArgs),
    /// Chain status, blocks and accounts (talks to --node).
    Chain(chain::ChainArgs),
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
        Command::Node(a) => node::run(a),
        Command::Init(a) => node::init(a),
        Command::Reindex(a) => node::reindex(a),
        Command::Key(a) => key::run(a),
        Command::Tx(a) => tx::run(a),
        Command::Store(a) => store::run(a),
        Command::Market(a) => market::run(a),
        Command::Provider(a) => provider::run(a),
        Command::Chain(a) => chain::run(a),
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
