//! `ios key`: keys encrypted at rest in the local keystore.

use crate::common::{password, print_json, KeystoreOpt};
use anyhow::{Context, Result};
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
    /// Write a key as the web UI's backup file (`{address, seed}`, not
    /// encrypted: keep it safe), to import in a browser's wallet.
    Export {
        name: String,
        /// Where to write it (0600).
        #[arg(short, long)]
        out: std::path::PathBuf,
    },
    /// Store a web UI backup file (a key made in a browser) under NAME.
    Import {
        file: std::path::PathBuf,
        name: String,
        #[arg(long)]
        json: bool,
    },
}

/// The web UI's key backup: the wallet's *Export a backup* writes it and
/// *Import a backup* reads it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Backup {
    #[serde(default = "backup_version")]
    ios_key: u32,
    address: String,
    /// The ed25519 seed, hex.
    seed: String,
}

fn backup_version() -> u32 {
    1
}

fn info_json(i: &ios_node::keystore::KeyInfo) -> serde_json::Value {
    serde_json::json!({
        "name": i.name,
        "address": i.address.to_string(),
        "file": i.path.display().to_string(),
    })
}

/// Stores `key` under `name`, encrypted with a password asked for (or
/// IOS_PASSWORD), and says so.
fn store(ks: &ios_node::keystore::Keystore, name: &str, key: &Keypair, json: bool) -> Result<()> {
    let pw = password(&format!("password for key {name:?}: "), true)?;
    let info = ks.add(name, key, &pw)?;
    if json {
        print_json(&info_json(&info))?;
    } else {
        println!("{} {}", info.name, info.address);
        eprintln!("stored encrypted in {}", info.path.display());
    }
    Ok(())
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
            store(&ks, &name, &key, json)?;
        }
        KeyCommand::Export { name, out } => {
            let pw = password(&format!("password for key {name:?}: "), false)?;
            let key = ks.open(&name, &pw)?;
            let backup = Backup {
                ios_key: 1,
                address: key.address().to_string(),
                seed: ios_chain::hex::encode(&key.secret_bytes()),
            };
            ios_node::node::write_private(&out, &serde_json::to_vec_pretty(&backup)?)?;
            println!("{} {}", name, backup.address);
            eprintln!(
                "wrote {} (the key in the clear: import it in the web UI's wallet, then delete it)",
                out.display()
            );
        }
        KeyCommand::Import { file, name, json } => {
            let text =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let backup: Backup = serde_json::from_slice(&text)
                .with_context(|| format!("{} is not a key backup", file.display()))?;
            anyhow::ensure!(
                backup.ios_key == 1,
                "a key backup of version {}",
                backup.ios_key
            );
            let seed: [u8; 32] = ios_chain::hex::decode(backup.seed.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .context("the backup's seed is not 32 bytes of hex")?;
            let key = Keypair::from_secret(seed);
            anyhow::ensure!(
                key.address().to_string() == backup.address,
                "the backup's seed gives {}, not its address {}",
                key.address(),
                backup.address
            );
            store(&ks, &name, &key, json)?;
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
