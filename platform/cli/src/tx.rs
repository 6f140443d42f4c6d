//! `ios tx`: build, sign and submit transactions, and follow them to finality.

use crate::chain::resolve_address;
use crate::common::{password, print_json, KeystoreOpt, NodeOpt, Progress};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use ios_chain::crypto::Address;
use ios_chain::ledger::{LedgerCall, LedgerModule, Token};
use ios_chain::tx::Transaction;
use ios_chain::types::{parse_iost, Amount};
use ios_web::client::Client;
use ios_web::types::{BuildTxRequest, CallRequest, SubmitTxRequest, TxState, TxStatus};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct TxArgs {
    #[command(subcommand)]
    command: TxCommand,
    #[command(flatten)]
    node: NodeOpt,
    #[command(flatten)]
    keystore: KeystoreOpt,
    /// Print JSON (the final transaction status).
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Args, Debug, Clone)]
struct WaitOpt {
    /// Return once the node pooled it, without waiting for finality.
    #[arg(long)]
    no_wait: bool,
    /// Give up waiting for finality after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

#[derive(Subcommand, Debug)]
enum TxCommand {
    /// Send IOST from one of your keys.
    Transfer {
        /// The sending key's name.
        #[arg(long)]
        from: String,
        /// A bech32 address or a key name.
        #[arg(long)]
        to: String,
        /// IOST, like 12 or 0.5.
        #[arg(long)]
        amount: String,
        /// Fee in IOST (default: the minimum for the transaction's size).
        #[arg(long)]
        fee: Option<String>,
        #[command(flatten)]
        wait: WaitOpt,
    },
    /// Bond IOST as validator stake (validators' accounts live on the beacon).
    Stake {
        #[arg(long)]
        from: String,
        #[arg(long)]
        amount: String,
        /// Start unbonding this much instead.
        #[arg(long)]
        unbond: bool,
        #[arg(long)]
        fee: Option<String>,
        #[command(flatten)]
        wait: WaitOpt,
    },
    /// A transaction's state: pending, finalized, failed or unknown.
    Status {
        /// The transaction id (hex), as `ios tx transfer` printed it.
        id: String,
        /// Wait until it is finalized (or failed).
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
}

fn iost(what: &str, s: &str) -> Result<Amount> {
    parse_iost(s).map_err(|e| anyhow::anyhow!("--{what}: {e}"))
}

pub fn run(a: TxArgs) -> Result<ExitCode> {
    let client = a.node.client();
    match a.command {
        TxCommand::Transfer {
            from,
            to,
            amount,
            fee,
            wait,
        } => {
            let to = resolve_address(&to, &a.keystore)?;
            let to_addr: Address = to.parse()?;
            let amount = iost("amount", &amount)?;
            let fee = fee.map(|f| iost("fee", &f)).transpose()?;
            let from_addr = a.keystore.open().info(&from)?.address;
            let (from_shard, to_shard) = (
                client.account(&from_addr.to_string())?.shard,
                client.account(&to)?.shard,
            );
            if from_shard != to_shard {
                bail!(
                    "{to} lives on shard {to_shard} and {from} on shard {from_shard}: cross-shard transfers (Atomix) are not available from the CLI yet"
                );
            }
            let call = LedgerCall::Transfer {
                to: to_addr,
                amount,
                token: Token::Iost,
            };
            let req = CallRequest::Transfer {
                to,
                amount: amount.to_string(),
                token: None,
            };
            send(&client, &a.keystore, &from, call, req, fee, &wait, a.json)
        }
        TxCommand::Stake {
            from,
            amount,
            unbond,
            fee,
            wait,
        } => {
            let amount = iost("amount", &amount)?;
            let fee = fee.map(|f| iost("fee", &f)).transpose()?;
            let (call, req) = if unbond {
                (
                    LedgerCall::Unstake { amount },
                    CallRequest::Unstake {
                        amount: amount.to_string(),
                    },
                )
            } else {
                (
                    LedgerCall::Stake { amount },
                    CallRequest::Stake {
                        amount: amount.to_string(),
                    },
                )
            };
            send(&client, &a.keystore, &from, call, req, fee, &wait, a.json)
        }
        TxCommand::Status { id, wait, timeout } => {
            let status = if wait {
                wait_final(&client, &id, Duration::from_secs(timeout))?
            } else {
                client.tx_status(&id)?
            };
            report(&status, a.json)
        }
    }
}

/// Builds `call` at the node, checks that what it built is what was asked,
/// signs it with key `from` and submits it; then follows it to finality.
#[allow(clippy::too_many_arguments)]
fn send(
    client: &Client,
    keystore: &KeystoreOpt,
    from: &str,
    call: LedgerCall,
    req: CallRequest,
    fee: Option<Amount>,
    wait: &WaitOpt,
    json: bool,
) -> Result<ExitCode> {
    let ks = keystore.open();
    let sender = ks.info(from)?.address;
    let built = client.build_tx(&BuildTxRequest {
        sender: sender.to_string(),
        nonce: None,
        fee: fee.map(|f| f.to_string()),
        expires_in: None,
        call: req,
    })?;
    // Never sign what we did not ask for: decode the node's bytes and compare.
    let bytes = ios_web::hex::decode(&built.tx).map_err(|e| anyhow::anyhow!("built tx: {e}"))?;
    let tx: Transaction = ios_chain::codec::decode("built transaction", &bytes, 1 << 16)?;
    let asked = LedgerModule::decode(&tx.call);
    if tx.sender != sender || asked.as_ref() != Some(&call) {
        bail!("the node built a different transaction than asked; not signing it");
    }
    if let Some(f) = fee {
        if tx.fee != f {
            bail!(
                "the node built a fee of {} units, not the {f} asked; not signing it",
                tx.fee
            );
        }
    }
    if tx.signing_hash().to_hex() != built.signing_hash {
        bail!("the node's signing hash does not match its transaction; not signing it");
    }
    eprintln!("{}", built.summary);
    let key = ks.open(from, &password(&format!("password for {from:?}: "), false)?)?;
    let signature = key.sign(&tx.signing_hash());
    let submitted = client.submit_tx(&SubmitTxRequest {
        tx: built.tx,
        signature: ios_web::hex::encode(&signature.0),
    })?;
    eprintln!("submitted {} to shard {}", submitted.id, submitted.shard);
    if wait.no_wait {
        if json {
            print_json(&submitted)?;
        } else {
            println!("{}", submitted.id);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let status = wait_final(client, &submitted.id, Duration::from_secs(wait.timeout))?;
    report(&status, json)
}

fn wait_final(client: &Client, id: &str, timeout: Duration) -> Result<TxStatus> {
    let mut progress = Progress::new();
    loop {
        let s = client
            .tx_status(id)
            .context("asking for the transaction's status")?;
        match s.state {
            TxState::Finalized | TxState::Failed => {
                progress.finish();
                return Ok(s);
            }
            TxState::Pending => progress.update("waiting for finality: pooled"),
            TxState::Unknown => progress.update("waiting for finality: not seen yet"),
        }
        if progress.elapsed() > timeout {
            progress.finish();
            bail!(
                "transaction {id} was not finalized within {} s (last state: {:?}); `ios tx status {id} --wait` keeps following it",
                timeout.as_secs(),
                s.state
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn report(s: &TxStatus, json: bool) -> Result<ExitCode> {
    if json {
        print_json(s)?;
    } else {
        match s.state {
            TxState::Finalized => println!(
                "{} finalized on shard {} at height {}",
                s.id,
                s.shard.unwrap_or(0),
                s.height.unwrap_or(0)
            ),
            TxState::Failed => {
                let e = s.error.as_ref();
                println!(
                    "{} FAILED on shard {} at height {}: {} ({})",
                    s.id,
                    s.shard.unwrap_or(0),
                    s.height.unwrap_or(0),
                    e.map_or("", |e| &e.message),
                    e.map_or("", |e| &e.code)
                )
            }
            TxState::Pending => println!("{} pending on shard {}", s.id, s.shard.unwrap_or(0)),
            TxState::Unknown => println!("{} unknown to this node", s.id),
        }
    }
    Ok(match s.state {
        TxState::Failed | TxState::Unknown => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    })
}
