//! `ios chain`: what a node knows of the chain.

use crate::common::{print_json, NodeOpt};
use anyhow::Result;
use clap::{Args, Subcommand};
use ios_chain::types::format_iost;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ChainArgs {
    #[command(subcommand)]
    command: ChainCommand,
    #[command(flatten)]
    node: NodeOpt,
    /// Print JSON (the API's own shapes).
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum ChainCommand {
    /// The network, epoch and every shard's height, as the node sees them.
    Status,
    /// A finalized block of a shard (latest if no height).
    Block {
        /// 0 is the beacon.
        #[arg(long, default_value_t = 0)]
        shard: u16,
        height: Option<u64>,
    },
    /// An account (by address or key name) on the shard that holds it.
    Account {
        /// A bech32 address, or the name of a key in the keystore.
        who: String,
        #[command(flatten)]
        keystore: crate::common::KeystoreOpt,
    },
}

/// An address as typed, or the address of the key with that name.
pub fn resolve_address(who: &str, ks: &crate::common::KeystoreOpt) -> Result<String> {
    if who.parse::<ios_chain::crypto::Address>().is_ok() {
        return Ok(who.to_string());
    }
    match ks.open().info(who) {
        Ok(i) => Ok(i.address.to_string()),
        Err(e) => anyhow::bail!("{who:?} is neither an address nor a stored key: {e}"),
    }
}

pub fn run(a: ChainArgs) -> Result<ExitCode> {
    let client = a.node.client();
    match a.command {
        ChainCommand::Status => {
            let s = client.status()?;
            if a.json {
                return print_json(&s).map(|_| ExitCode::SUCCESS);
            }
            println!(
                "chain {}: beacon + {} shards, epoch {}, {} peers",
                s.chain_id, s.shards, s.epoch, s.peers
            );
            for sh in &s.shard_status {
                println!(
                    "  shard {}: height {} (epoch {}, {} members, {} pooled) state {}",
                    sh.shard,
                    sh.height,
                    sh.epoch,
                    sh.committee.len(),
                    sh.mempool,
                    &sh.state_root[..16.min(sh.state_root.len())]
                );
            }
        }
        ChainCommand::Block { shard, height } => {
            let b = match height {
                Some(h) => client.block(shard, h)?,
                None => client.latest_block(shard)?,
            };
            if a.json {
                return print_json(&b).map(|_| ExitCode::SUCCESS);
            }
            println!("shard {} block {} ({})", b.shard, b.height, b.hash);
            println!(
                "  epoch {} round {} proposer {}",
                b.epoch, b.round, b.proposer
            );
            println!(
                "  time {} ms, state {}, {} signers",
                b.time_ms, b.state_root, b.signers
            );
            println!("  {} transactions", b.txs.len());
            for t in b.txs.iter().take(20) {
                println!("    {} {} from {} [{}]", t.id, t.kind, t.sender, t.status);
            }
            if b.txs.len() > 20 {
                println!("    ... {} more (--json lists all)", b.txs.len() - 20);
            }
        }
        ChainCommand::Account { who, keystore } => {
            let address = resolve_address(&who, &keystore)?;
            let acct = client.account(&address)?;
            if a.json {
                return print_json(&acct).map(|_| ExitCode::SUCCESS);
            }
            let units = |s: &str| s.parse().map(format_iost).unwrap_or_else(|_| s.to_string());
            println!("{} (shard {})", acct.address, acct.shard);
            println!("  balance    {}", units(&acct.balance));
            println!("  stake      {}", units(&acct.stake));
            println!("  servi      {}", acct.servi);
            println!("  reputation {} ppm", acct.reputation);
            println!("  nonce      {} (next {})", acct.nonce, acct.next_nonce);
            if acct.jailed {
                println!("  JAILED (proven equivocation)");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
