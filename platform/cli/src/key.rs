//! `ios key`: keys encrypted at rest in the local keystore.

use crate::common::{password, print_json, KeystoreOpt};
use anyhow::Result;
use clap::{Args, Subcommand};
use ios_chain::crypto::Keypair;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct KeyArgs {
    #[command(subcommand)]
    command: KeyCommand,
    #[command(flatten)]
    keystore: KeystoreOpt,
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Make a new key (or store a devnet account's) under NAME, encrypted
    /// with a password (asked, or IOS_PASSWORD).
    New {
        name: String,
        /// Store the devnet's funded user N instead of a fresh key. Devnet
        /// keys are public test keys: never use them on a real network.
        #[arg(long, value_name = "N")]
        devnet_user: Option<u64>,
        /// Store devnet validator N (public test key, as above).
        #[arg(long, value_name = "N", conflicts_with = "devnet_user")]
        devnet_validator: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// List stored keys (names and addresses; no password needed).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one key's address and file.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

fn info_json(i: &ios_node::keystore::KeyInfo) -> serde_json::Value {
    serde_json::json!({
        "name": i.name,
        "address": i.address.to_string(),
        "file": i.path.display().to_string(),
    })
}

pub fn run(a: KeyArgs) -> Result<ExitCode> {
    let ks = a.keystore.open();
    match a.command {
        KeyCommand::New {
            name,
            devnet_user,
            devnet_validator,
            json,
        } => {
            let key = match (devnet_user, devnet_validator) {
                (Some(n), _) => Keypair::from_seed("devnet-user", n),
                (_, Some(n)) => Keypair::from_seed("devnet-validator", n),
                _ => ios_node::keystore::generate()?,
            };
            let pw = password(&format!("password for key {name:?}: "), true)?;
            let info = ks.add(&name, &key, &pw)?;
            if json {
                print_json(&info_json(&info))?;
            } else {
                println!("{} {}", info.name, info.address);
                eprintln!("stored encrypted in {}", info.path.display());
            }
        }
        KeyCommand::List { json } => {
            let keys = ks.list()?;
            if json {
                print_json(&keys.iter().map(info_json).collect::<Vec<_>>())?;
            } else if keys.is_empty() {
                eprintln!(
                    "no keys in {} (ios key new NAME makes one)",
                    ks.dir().display()
                );
            } else {
                for k in keys {
                    println!("{:<20} {}", k.name, k.address);
                }
            }
        }
        KeyCommand::Show { name, json } => {
            let info = ks.info(&name)?;
            if json {
                print_json(&info_json(&info))?;
            } else {
                println!("name:    {}", info.name);
                println!("address: {}", info.address);
                println!("file:    {}", info.path.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
