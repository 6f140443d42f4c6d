//! `ios provider register|status`: a node as a HUDS storage provider.
//!
//! A provider node registers itself: once a second it makes sure each of
//! its per-shard accounts (`huds::provider_key`) is registered on chain
//! with the offer in its config's `[provider]` section. `register` does
//! what the operator must: writes that offer into the config, funds the
//! accounts (stake and a reserve for the fees of receipts and proofs) from
//! one of the operator's keys, and waits until the running node has
//! registered on every account shard.

use crate::common::{password, print_json, KeystoreOpt, NodeOpt, Progress};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use ios_chain::crypto::{Address, Keypair};
use ios_chain::types::{format_iost, parse_iost, Amount, ShardId};
use ios_node::config::NodeFile;
use ios_node::huds::{provider_key, provider_shards, ProviderConfig};
use ios_node::keystore::Keystore;
use ios_web::client::Client;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct ProviderArgs {
    #[command(subcommand)]
    command: ProviderCommand,
    #[command(flatten)]
    node: NodeOpt,
    #[command(flatten)]
    keystore: KeystoreOpt,
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum ProviderCommand {
    /// Make a node a storage provider on every account shard: write its
    /// offer into the config's [provider] section, fund its per-shard
    /// accounts from --fund-from, and wait until the running node has
    /// registered them (it registers itself once its accounts can pay).
    Register(RegisterArgs),
    /// Registered providers: audits passed, Servi and IOST earned, bytes
    /// held (all, or those whose address or peer id contains FILTER).
    Status { filter: Option<String> },
}

#[derive(Args, Debug)]
struct RegisterArgs {
    /// The provider node's config.
    #[arg(long, default_value = "node.toml")]
    config: PathBuf,
    /// GiB of fragments to keep at most (sets the offer in the config).
    #[arg(long)]
    capacity_gib: Option<u64>,
    /// IOST asked per GiB per epoch (sets the offer in the config).
    #[arg(long)]
    price: Option<String>,
    /// IOST staked on each shard (sets the offer in the config; at least
    /// the network's minimum, 1000; taken at the first registration).
    #[arg(long)]
    stake: Option<String>,
    /// Fund the provider's accounts from this key (its name in the
    /// keystore); without it, the accounts must already hold enough.
    #[arg(long)]
    fund_from: Option<String>,
    /// IOST kept on each account beyond the stake, for the fees of
    /// receipts and audit proofs.
    #[arg(long, default_value = "10")]
    reserve: String,
    /// Seconds to wait for each transfer and for the node to register (0:
    /// do not wait for the node).
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

pub fn run(a: ProviderArgs) -> Result<ExitCode> {
    let client = a.node.client();
    match a.command {
        ProviderCommand::Register(r) => register(&client, &a.keystore, r, a.json),
        ProviderCommand::Status { filter } => status(&client, filter.as_deref(), a.json),
    }
}

fn status(client: &Client, filter: Option<&str>, json: bool) -> Result<ExitCode> {
    let list: Vec<_> = client
        .providers()?
        .into_iter()
        .filter(|p| filter.is_none_or(|f| p.address.contains(f) || p.peer_id.contains(f)))
        .collect();
    if json {
        print_json(&list)?;
    } else if list.is_empty() {
        println!("no providers registered");
    } else {
        for p in list {
            println!(
                "{} (shard {}, peer {}): {} fragments, {} of {} bytes held; audits {} passed, {} failed, {} strikes{}; earned {} and {} Servi",
                p.address,
                p.shard,
                p.peer_id,
                p.held_fragments,
                p.held_bytes,
                p.capacity,
                p.audits_passed,
                p.audits_failed,
                p.strikes,
                if p.failing { " (failing)" } else { "" },
                format_iost(p.iost_earned.parse().unwrap_or(0)),
                p.servi_earned
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `text` (a node config) with its `[provider]` table replaced by `offer`
/// (comments and every other setting kept).
fn with_provider_section(text: &str, offer: &ProviderConfig) -> String {
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with('[') {
            inside = t.starts_with("[provider]");
        }
        if !inside {
            out.push(line);
        }
    }
    while out.last().is_some_and(|l| l.trim().is_empty()) {
        out.pop();
    }
    let mut s = out.join("\n");
    s.push_str(&format!(
        "\n\n[provider]\n# Written by `ios provider register`: what this node offers as a HUDS storage provider.\ncapacity = {}\nprice_per_gib_epoch = {}\nstake = {}\n",
        offer.capacity, offer.price_per_gib_epoch, offer.stake
    ));
    s
}

fn load_config(path: &Path) -> Result<NodeFile> {
    let mut file = NodeFile::load(path)?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    file.resolve(&base);
    Ok(file)
}

/// The node's master key: its validator key from the keystore, or the key
/// a full node keeps in its data directory (made now if it has none yet,
/// as the node itself would).
fn master_key(file: &NodeFile, keystore: &KeystoreOpt) -> Result<Keypair> {
    match &file.key {
        Some(name) => {
            let ks = match &file.keystore {
                Some(dir) => Keystore::new(dir.clone()),
                None => keystore.open(),
            };
            Ok(ks.open(
                name,
                &password(&format!("password for key {name:?}: "), false)?,
            )?)
        }
        None => {
            std::fs::create_dir_all(&file.data_dir)
                .with_context(|| format!("creating {}", file.data_dir.display()))?;
            ios_node::node::own_key(&file.data_dir)
        }
    }
}

/// Whether a node runs on `data_dir` (it holds the directory's lock).
fn node_runs(data_dir: &Path) -> bool {
    ios_node::node::DataLock::acquire(data_dir).is_err()
}

#[derive(serde::Serialize)]
struct ShardAccount {
    shard: ShardId,
    address: String,
    balance: String,
    registered: bool,
}

fn register(
    client: &Client,
    keystore: &KeystoreOpt,
    a: RegisterArgs,
    json: bool,
) -> Result<ExitCode> {
    let iost = |what: &str, s: &str| -> Result<Amount> {
        parse_iost(s).map_err(|e| anyhow::anyhow!("--{what}: {e}"))
    };
    let reserve = iost("reserve", &a.reserve)?;
    let timeout = Duration::from_secs(a.timeout.max(1));
    // The offer: the config's, with what the flags change written back.
    let mut file = load_config(&a.config)?;
    // A new offer is written into the config once the accounts can pay.
    let mut new_offer = None;
    if a.capacity_gib.is_some() || a.price.is_some() || a.stake.is_some() || file.provider.is_none()
    {
        let mut offer = file.provider.clone().unwrap_or_default();
        if let Some(g) = a.capacity_gib {
            offer.capacity = g
                .checked_mul(1 << 30)
                .context("--capacity-gib is too large")?;
        }
        if let Some(p) = &a.price {
            offer.price_per_gib_epoch = iost("price", p)?;
        }
        if let Some(s) = &a.stake {
            offer.stake = iost("stake", s)?;
        }
        let min = ios_storage::module::StorageParams::default().min_provider_stake;
        if offer.stake < min {
            bail!(
                "a stake of {} is below the network's minimum of {}",
                format_iost(offer.stake),
                format_iost(min)
            );
        }
        if offer.capacity == 0 {
            bail!("a capacity of 0 stores nothing");
        }
        let text = std::fs::read_to_string(&a.config)
            .with_context(|| format!("reading {}", a.config.display()))?;
        let new = with_provider_section(&text, &offer);
        NodeFile::parse(&new).context("the updated config does not parse")?;
        new_offer = (file.provider.as_ref() != Some(&offer)).then_some(new);
        file.provider = Some(offer);
    }
    let offer = file.provider.clone().expect("set above");
    let master = master_key(&file, keystore)?;
    let shards = client.status()?.shards;

    // Fund each shard's account: the stake (until registered) and the reserve.
    let registered = |c: &Client, addr: &str| -> Result<bool> {
        Ok(c.providers()?.iter().any(|p| p.address == addr))
    };
    let mut short = Vec::new();
    for shard in provider_shards(shards) {
        let addr: Address = provider_key(&master, shard, shards).address();
        let have: Amount = client
            .account(&addr.to_string())?
            .balance
            .parse()
            .unwrap_or(0);
        let need = if registered(client, &addr.to_string())? {
            reserve
        } else {
            offer.stake.saturating_add(reserve)
        };
        if have >= need {
            continue;
        }
        let missing = need - have;
        match &a.fund_from {
            Some(from) => {
                eprintln!(
                    "shard {shard}: funding {addr} with {}",
                    format_iost(missing)
                );
                if !crate::tx::transfer(client, keystore, from, addr, missing, timeout)? {
                    bail!("funding {addr} on shard {shard} did not go through");
                }
            }
            None => short.push(format!(
                "{addr} (shard {shard}) needs {} more",
                format_iost(missing)
            )),
        }
    }
    if !short.is_empty() {
        bail!(
            "the provider's accounts cannot pay their stake and fees: {}; fund them (--fund-from KEY, or ios tx transfer)",
            short.join(", ")
        );
    }
    let running = node_runs(&file.data_dir);
    if let Some(text) = &new_offer {
        // Whole or not at all: a temporary file renamed over the config.
        let tmp = a.config.with_extension("toml.tmp");
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &a.config)
            .with_context(|| format!("writing {}", a.config.display()))?;
        eprintln!(
            "{}: [provider] capacity {} GiB, {} per GiB-epoch, stake {} per shard",
            a.config.display(),
            offer.capacity >> 30,
            format_iost(offer.price_per_gib_epoch),
            format_iost(offer.stake),
        );
    }

    // The node registers itself; wait until every shard shows it.
    let accounts = |c: &Client| -> Result<Vec<ShardAccount>> {
        let providers = c.providers()?;
        provider_shards(shards)
            .into_iter()
            .map(|shard| {
                let addr = provider_key(&master, shard, shards).address().to_string();
                Ok(ShardAccount {
                    shard,
                    balance: c.account(&addr)?.balance,
                    registered: providers.iter().any(|p| {
                        p.address == addr
                            && p.capacity == offer.capacity
                            && p.price_per_gib_epoch == offer.price_per_gib_epoch.to_string()
                    }),
                    address: addr,
                })
            })
            .collect()
    };
    let mut list = accounts(client)?;
    // A running node reads its offer at start: a new one needs a restart.
    let restart = running && new_offer.is_some();
    if running && !restart && a.timeout > 0 {
        let deadline = Instant::now() + timeout;
        let mut progress = Progress::new();
        while list.iter().any(|s| !s.registered) {
            let done = list.iter().filter(|s| s.registered).count();
            progress.update(&format!(
                "waiting for the node to register: {done} of {} shards",
                list.len()
            ));
            if Instant::now() >= deadline {
                progress.finish();
                bail!(
                    "the node did not register on every shard within {} s (is it connected to the network? its log says why)",
                    a.timeout
                );
            }
            std::thread::sleep(Duration::from_millis(500));
            list = accounts(client)?;
        }
        progress.finish();
    }
    if json {
        print_json(&list)?;
    } else {
        for s in &list {
            println!(
                "shard {}: {} {} (balance {})",
                s.shard,
                s.address,
                if s.registered {
                    "registered"
                } else {
                    "funded, not registered yet"
                },
                format_iost(s.balance.parse().unwrap_or(0))
            );
        }
        if !running {
            println!(
                "start the node (ios node --config {}): it registers on every shard within seconds",
                a.config.display()
            );
        } else if restart {
            println!(
                "restart the node (ios node --config {}) to offer the new terms: it reads its offer at start",
                a.config.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ios_chain::types::UNITS_PER_IOST;

    #[test]
    fn the_provider_section_is_replaced_and_the_rest_kept() {
        let offer = ProviderConfig {
            capacity: 2 << 30,
            price_per_gib_epoch: 5,
            stake: 1_000 * UNITS_PER_IOST,
        };
        let before = "# my node\nname = \"p\"\n\n[provider]\ncapacity = 1\nstake = 2\n";
        let after = with_provider_section(before, &offer);
        assert!(after.starts_with("# my node\nname = \"p\"\n\n[provider]\n"));
        let f = NodeFile::parse(&after).unwrap();
        assert_eq!(f.provider, Some(offer.clone()));
        assert_eq!(f.name, "p");
        // No section yet: one is added; twice is the same as once.
        let added = with_provider_section("name = \"q\"\n", &offer);
        assert_eq!(with_provider_section(&added, &offer), added);
        assert_eq!(NodeFile::parse(&added).unwrap().provider, Some(offer));
    }
}
