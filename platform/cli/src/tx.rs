//! `ios tx`: build, sign and submit transactions, and follow them to finality.

use crate::chain::resolve_address;
use crate::common::{password, print_json, KeystoreOpt, NodeOpt, Progress};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use ios_chain::crypto::Address;
use ios_chain::ledger::{LedgerCall, LedgerModule, Token};
use ios_chain::tx::Transaction;
use ios_chain::types::{parse_iost, Amount, ShardId};
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
    /// Send IOST from one of your keys. To an account on another shard it
    /// goes through Atomix (locked here, paid there), followed to the end.
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
    /// Where a cross-shard transfer stands (locking, committed, done, rejected, refunded).
    Atomix {
        /// The transfer's id, as `ios tx transfer` printed it.
        id: String,
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

/// The most a transaction may pay without an explicit --fee (0.01 IOST).
const MAX_DEFAULT_FEE: Amount = 1_000_000;

/// How often a transaction is built again when another one from the same
/// account took its nonce first.
const MAX_ATTEMPTS: u32 = 3;

fn iost(what: &str, s: &str) -> Result<Amount> {
    parse_iost(s).map_err(|e| anyhow::anyhow!("--{what}: {e}"))
}

/// A transfer of `amount` IOST to `to`: the call, and the request that
/// asks the node to build it.
fn transfer_call(to: Address, amount: Amount) -> (LedgerCall, CallRequest) {
    let call = LedgerCall::Transfer {
        to,
        amount,
        token: Token::Iost,
    };
    let req = CallRequest::Transfer {
        to: to.to_string(),
        amount: amount.to_string(),
        token: None,
    };
    (call, req)
}

pub fn run(a: TxArgs) -> Result<ExitCode> {
    let client = a.node.client();
    let out = Out::of(a.json);
    match a.command {
        TxCommand::Transfer {
            from,
            to,
            amount,
            fee,
            wait,
        } => {
            let to: Address = resolve_address(&to, &a.keystore)?.parse()?;
            let fee = fee.map(|f| iost("fee", &f)).transpose()?;
            let (call, req) = transfer_call(to, iost("amount", &amount)?);
            send(&client, &a.keystore, &from, call, req, fee, &wait, out)
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
            send(&client, &a.keystore, &from, call, req, fee, &wait, out)
        }
        TxCommand::Atomix { id } => {
            let v = client.atomix(&id)?;
            if a.json {
                print_json(&v)?;
            } else {
                println!("{} {}: {}", v.id, v.state, v.detail);
            }
            Ok(ExitCode::SUCCESS)
        }
        TxCommand::Status { id, wait, timeout } => {
            let status = if wait {
                match wait_final(&client, &id, None, Duration::from_secs(timeout))? {
                    Waited::Done(s) => s,
                    Waited::Superseded => bail!("transaction {id} was superseded"),
                }
            } else {
                client.tx_status(&id)?
            };
            report(&status, out)
        }
    }
}

/// Where a command's results go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Out {
    /// Lines on stdout.
    Text,
    /// JSON on stdout.
    Json,
    /// Lines on stderr: a step of another command, whose own output is stdout.
    Log,
}

impl Out {
    fn of(json: bool) -> Out {
        if json {
            Out::Json
        } else {
            Out::Text
        }
    }

    fn line(self, s: String) {
        match self {
            Out::Log => eprintln!("{s}"),
            _ => println!("{s}"),
        }
    }
}

/// Sends `amount` IOST from key `from` to `to` (through Atomix to another
/// shard) and follows it to the end, reporting as `ios tx transfer` does;
/// whether it went through.
pub fn transfer(
    client: &Client,
    keystore: &KeystoreOpt,
    from: &str,
    to: Address,
    amount: Amount,
    timeout: Duration,
) -> Result<bool> {
    let (call, req) = transfer_call(to, amount);
    let wait = WaitOpt {
        no_wait: false,
        timeout: timeout.as_secs(),
    };
    let code = send(client, keystore, from, call, req, None, &wait, Out::Log)?;
    Ok(code == ExitCode::SUCCESS)
}

/// What a transaction must do for the CLI to sign what the node built.
pub(crate) enum Asked {
    /// This ledger call (or, for a transfer to another shard, the Atomix
    /// lock that carries it).
    Ledger(LedgerCall),
    /// Exactly this module call.
    Exact(ios_chain::tx::Call),
    /// Exactly this module call, run on `shard`, paying `amount` there:
    /// from the sender's own shard, the call itself; from another one, the
    /// Atomix lock of `amount` (plus at most [`MAX_CARRIED_FEES`] for the
    /// sender's fees on `shard`) that carries it there.
    ExactOn {
        call: ios_chain::tx::Call,
        shard: ShardId,
        amount: Amount,
    },
}

/// Most fees a cross-shard call may bring along for later transactions.
const MAX_CARRIED_FEES: Amount = 16 * MAX_DEFAULT_FEE;

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
    out: Out,
) -> Result<ExitCode> {
    let wait = (!wait.no_wait).then(|| Duration::from_secs(wait.timeout));
    let (code, _, _) = send_call(
        client,
        keystore,
        from,
        &Asked::Ledger(call),
        req,
        fee,
        wait,
        out,
    )?;
    Ok(code)
}

/// `send` for any call: `wait` None returns once the node pooled it.
/// Returns the exit code and, when it waited, the final status and the id
/// of the cross-shard transfer it started, if it started one.
#[allow(clippy::too_many_arguments)]
pub(crate) fn send_call(
    client: &Client,
    keystore: &KeystoreOpt,
    from: &str,
    call: &Asked,
    req: CallRequest,
    fee: Option<Amount>,
    wait: Option<Duration>,
    out: Out,
) -> Result<(ExitCode, Option<TxStatus>, Option<String>)> {
    let wait = WaitOpt {
        no_wait: wait.is_none(),
        timeout: wait.map_or(60, |w| w.as_secs()),
    };
    let wait = &wait;
    let ks = keystore.open();
    let sender = ks.info(from)?.address;
    let mut first = Some(build_checked(client, &sender, call, &req, fee)?);
    if let Some((_, built)) = &first {
        eprintln!("{}", built.summary);
    }
    let key = ks.open(from, &password(&format!("password for {from:?}: "), false)?)?;
    let mut attempt = 0;
    let (status, built) = loop {
        attempt += 1;
        let (tx, built) = match first.take() {
            Some(b) => b,
            None => build_checked(client, &sender, call, &req, fee)?,
        };
        let signature = key.sign(&tx.signing_hash());
        let submitted = submit_when_not_busy(
            client,
            &SubmitTxRequest {
                tx: built.tx.clone(),
                signature: ios_web::hex::encode(&signature.0),
            },
            Duration::from_secs(wait.timeout),
        )?;
        eprintln!("submitted {} to shard {}", submitted.id, submitted.shard);
        if wait.no_wait {
            if out == Out::Json {
                print_json(&submitted)?;
            } else {
                out.line(submitted.id.to_string());
            }
            return Ok((ExitCode::SUCCESS, None, None));
        }
        let timeout = Duration::from_secs(wait.timeout);
        match wait_final(client, &submitted.id, Some((&sender, tx.nonce)), timeout)? {
            Waited::Done(status) => break (status, built),
            // Another transaction from this account took the nonce (a
            // validator's node signs its own with the same key): this one
            // can never be included, so build it again on a fresh nonce.
            Waited::Superseded if attempt < MAX_ATTEMPTS => eprintln!(
                "nonce {} was used by another transaction from this account; resubmitting",
                tx.nonce
            ),
            Waited::Superseded => bail!(
                "transaction {} was superseded {MAX_ATTEMPTS} times: another transaction from this account took its nonce each time",
                submitted.id
            ),
        }
    };
    match (&built.atomix, &status.state) {
        (Some(x), TxState::Finalized) => {
            let done = follow_atomix(client, x, Duration::from_secs(wait.timeout))?;
            if out == Out::Json {
                print_json(&serde_json::json!({"lock": status, "atomix": done}))?;
            } else {
                out.line(format!(
                    "{} locked on shard {} at height {}; cross-shard transfer {}: {} ({})",
                    status.id,
                    status.shard.unwrap_or(0),
                    status.height.unwrap_or(0),
                    done.id,
                    done.state,
                    done.detail
                ));
            }
            let code = if done.state == "done" {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
            Ok((code, Some(status), Some(done.id)))
        }
        _ => Ok((report(&status, out)?, Some(status), None)),
    }
}

/// Builds `call` at the node and checks that what it built is what was
/// asked, for this chain, at a sane fee: never sign what we did not ask for.
fn build_checked(
    client: &Client,
    sender: &Address,
    asked: &Asked,
    req: &CallRequest,
    fee: Option<Amount>,
) -> Result<(Transaction, ios_web::types::BuiltTx)> {
    let built = client.build_tx(&BuildTxRequest {
        sender: sender.to_string(),
        nonce: None,
        fee: fee.map(|f| f.to_string()),
        expires_in: None,
        call: req.clone(),
    })?;
    // Never sign what we did not ask for: decode the node's bytes and compare.
    let bytes = ios_web::hex::decode(&built.tx).map_err(|e| anyhow::anyhow!("built tx: {e}"))?;
    let tx: Transaction = ios_chain::codec::decode("built transaction", &bytes, 1 << 16)?;
    let got = LedgerModule::decode(&tx.call);
    let same = match asked {
        Asked::Ledger(call) => same_effect(call, got.as_ref(), sender, built.atomix.as_deref()),
        Asked::Exact(call) => tx.call == *call && built.atomix.is_none(),
        Asked::ExactOn {
            call,
            shard,
            amount,
        } => match (&got, built.atomix.as_deref()) {
            (Some(LedgerCall::AtomixLock { x, input: 0 }), Some(id)) => {
                x.call.as_ref() == Some(call)
                    && x.to == *sender
                    && x.output_shard == *shard
                    && x.inputs.len() == 1
                    && x.inputs[0].from == *sender
                    && x.inputs[0]
                        .amount
                        .checked_sub(*amount)
                        .is_some_and(|fees| fees <= MAX_CARRIED_FEES)
                    && x.id().to_hex() == id
            }
            _ => tx.call == *call && built.atomix.is_none() && built.shard == *shard,
        },
    };
    if tx.sender != *sender || !same {
        bail!("the node built a different transaction than asked; not signing it");
    }
    let status = client.status()?;
    if tx.chain_id.0 != status.chain_id {
        bail!(
            "the node built a transaction for chain {:?}, not its own {:?}; not signing it",
            tx.chain_id.0,
            status.chain_id
        );
    }
    match fee {
        Some(f) if tx.fee != f => {
            bail!(
                "the node built a fee of {} units, not the {f} asked; not signing it",
                tx.fee
            )
        }
        // Unasked, the fee is the minimum for the size: anything far above
        // is not what the user expects to pay.
        None if tx.fee > MAX_DEFAULT_FEE => bail!(
            "the node asks a fee of {} (over {}); pass --fee to pay it",
            ios_chain::types::format_iost(tx.fee),
            ios_chain::types::format_iost(MAX_DEFAULT_FEE)
        ),
        _ => {}
    }
    if let Some(LedgerCall::AtomixLock { x, .. }) = &got {
        // A carried call's output shard was checked against the asked one.
        let to_shard = match x.call {
            Some(_) => x.output_shard,
            None => client.account(&x.to.to_string())?.shard,
        };
        let from_shard = client.account(&sender.to_string())?.shard;
        if x.output_shard != to_shard || x.inputs[0].shard != from_shard {
            bail!("the node built a cross-shard transfer between the wrong shards; not signing it");
        }
    }
    if tx.signing_hash().to_hex() != built.signing_hash {
        bail!("the node's signing hash does not match its transaction; not signing it");
    }
    Ok((tx, built))
}

/// Whether the node's call does what was asked: the same call, or for a
/// transfer to another shard, an Atomix lock of exactly that amount from
/// the sender to that recipient, whose id the node named.
fn same_effect(
    asked: &LedgerCall,
    got: Option<&LedgerCall>,
    sender: &Address,
    atomix: Option<&str>,
) -> bool {
    match (asked, got, atomix) {
        (a, Some(g), None) => a == g,
        (
            LedgerCall::Transfer {
                to,
                amount,
                token: Token::Iost,
            },
            Some(LedgerCall::AtomixLock { x, input: 0 }),
            Some(id),
        ) => {
            x.to == *to
                && x.inputs.len() == 1
                && x.inputs[0].from == *sender
                && x.inputs[0].amount == *amount
                && x.id().to_hex() == id
        }
        _ => false,
    }
}

/// Follows a cross-shard transfer at the node's relayer until it is done
/// (paid and released) or refunded.
fn follow_atomix(
    client: &Client,
    id: &str,
    timeout: Duration,
) -> Result<ios_web::types::AtomixView> {
    let mut progress = Progress::new();
    loop {
        match client.atomix(id) {
            Ok(v) if v.terminal => {
                progress.finish();
                return Ok(v);
            }
            Ok(v) => progress.update(&format!("cross-shard transfer: {} ({})", v.state, v.detail)),
            Err(e) if e.code() == Some("not_found") => {
                progress.update("cross-shard transfer: waiting for the relayer to see the lock")
            }
            Err(e) => return Err(e.into()),
        }
        if progress.elapsed() > timeout {
            progress.finish();
            bail!(
                "cross-shard transfer {id} did not finish within {} s; `ios tx atomix {id}` shows where it is",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Submits, and while the node answers that the shard is busy (a backlog
/// waits), tries again every second until `timeout`.
pub(crate) fn submit_when_not_busy(
    client: &Client,
    req: &SubmitTxRequest,
    timeout: Duration,
) -> Result<ios_web::types::SubmittedTx> {
    let mut progress = Progress::new();
    loop {
        match client.submit_tx(req) {
            Err(e) if e.code() == Some("busy") && progress.elapsed() < timeout => {
                progress.update("the shard is busy; submitting again shortly");
                std::thread::sleep(Duration::from_secs(1));
            }
            other => {
                progress.finish();
                return Ok(other?);
            }
        }
    }
}

/// How waiting for a transaction ended.
pub(crate) enum Waited {
    /// Finalized or failed.
    Done(TxStatus),
    /// Never to be included: the sender's committed nonce passed its own.
    Superseded,
}

/// Follows `id` until it is final. With `(sender, nonce)`, also notices a
/// transaction that can no longer be included because another one from
/// the same account took its nonce.
pub(crate) fn wait_final(
    client: &Client,
    id: &str,
    nonce_of: Option<(&Address, u64)>,
    timeout: Duration,
) -> Result<Waited> {
    let mut progress = Progress::new();
    let mut polls = 0u32;
    loop {
        let s = client
            .tx_status(id)
            .context("asking for the transaction's status")?;
        match s.state {
            TxState::Finalized | TxState::Failed => {
                progress.finish();
                return Ok(Waited::Done(s));
            }
            TxState::Pending => progress.update("waiting for finality: pooled"),
            TxState::Unknown => {
                progress.update("waiting for finality: not seen yet");
                // Unknown once pooled means included elsewhere or dropped;
                // look at the account now and then, not on every poll.
                if let Some((sender, nonce)) = nonce_of.filter(|_| polls % 4 == 3) {
                    let account = client.account(&sender.to_string())?;
                    if account.nonce > nonce {
                        // Included meanwhile? Ask once more before giving up on it.
                        let again = client.tx_status(id)?;
                        progress.finish();
                        return Ok(match again.state {
                            TxState::Finalized | TxState::Failed => Waited::Done(again),
                            _ => Waited::Superseded,
                        });
                    }
                }
            }
        }
        polls += 1;
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

fn report(s: &TxStatus, out: Out) -> Result<ExitCode> {
    if out == Out::Json {
        print_json(s)?;
    } else {
        match s.state {
            TxState::Finalized => out.line(format!(
                "{} finalized on shard {} at height {}",
                s.id,
                s.shard.unwrap_or(0),
                s.height.unwrap_or(0)
            )),
            TxState::Failed => {
                let e = s.error.as_ref();
                out.line(format!(
                    "{} FAILED on shard {} at height {}: {} ({})",
                    s.id,
                    s.shard.unwrap_or(0),
                    s.height.unwrap_or(0),
                    e.map_or("", |e| &e.message),
                    e.map_or("", |e| &e.code)
                ))
            }
            TxState::Pending => out.line(format!(
                "{} pending on shard {}",
                s.id,
                s.shard.unwrap_or(0)
            )),
            TxState::Unknown => out.line(format!("{} unknown to this node", s.id)),
        }
    }
    Ok(match s.state {
        TxState::Failed | TxState::Unknown => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    })
}
