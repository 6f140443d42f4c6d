//! Atomix: cross-shard atomic commit (after OmniLedger, Kokoris-Kogias et
//! al., IEEE S&P 2018). A [`CrossTransfer`] X moves IOST from inputs on one
//! or more shards to one account on exactly one output shard, the decider:
//!
//! 1. **Lock** (a signed transaction of the input's owner, on the input's
//!    shard): the amount moves into `lock[X, i]` and the receipt records
//!    `Accepted(X, i)`, or, if the owner cannot pay, `Rejected(X)`. Each
//!    input is decided once.
//! 2. **Commit** (a relay transaction on the output shard) with a proof of
//!    acceptance for every input: the output is credited once and the receipt
//!    records `Committed(X)`; with any proof of rejection it records
//!    `Rejected(X)` instead. **Abort**: after X's expiry height, an output
//!    shard that has not decided records `Rejected(X)`.
//! 3. **Unlock** (a relay transaction on an input's shard): a proof of
//!    `Committed(X)` releases the lock (the IOST now lives on the output
//!    shard); a proof of any `Rejected(X)` refunds it.
//!
//! A proof is a receipt, its Merkle path to the block's `receipts_root`, and
//! the block's header and commit certificate, checked with the shard's
//! beacon light client (any shard, any epoch it has followed). The output
//! shard decides X at most once, and an input is released at most once, so
//! no shard can both commit and refund X.

use crate::block::{BlockHeader, CommitCertificate, Receipt, ReceiptStatus};
use crate::crypto::Address;
use crate::error::{ChainError, Result};
use crate::hash::{hash_value, tag, verify_merkle_path, Hash, MerklePath};
use crate::module::CallContext;
use crate::state::StateRead;
use crate::tx::ModuleId;
use crate::types::{Amount, ChainId, Height, ShardId};
use borsh::{BorshDeserialize, BorshSerialize};

/// Most inputs one cross-shard transfer may have.
pub const MAX_INPUTS: usize = 16;
/// The event kind of every Atomix outcome (its data is a borsh [`Outcome`]).
pub const EVENT: &str = "atomix";

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct CrossInput {
    pub shard: ShardId,
    pub from: Address,
    pub amount: Amount,
}

/// X: IOST from `inputs` to `to` on `output_shard`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct CrossTransfer {
    pub inputs: Vec<CrossInput>,
    pub output_shard: ShardId,
    pub to: Address,
    /// Output-shard height after which X may be aborted.
    pub expires_at: Height,
    /// Makes otherwise equal transfers distinct.
    pub salt: u64,
}

impl CrossTransfer {
    pub fn id(&self) -> Hash {
        hash_value(tag::ATOMIX_TX, self)
    }

    /// What the output receives: the sum of the inputs.
    pub fn total(&self) -> Result<Amount> {
        self.inputs.iter().try_fold(0u64, |acc, i| {
            acc.checked_add(i.amount).ok_or(ChainError::Overflow)
        })
    }

    /// Shape checks every step makes first.
    pub fn check(&self, shards: u16) -> Result<()> {
        let bad = |m: String| Err(ChainError::Atomix(m));
        if shards == 0 {
            return bad("the network has no account shards".into());
        }
        if self.inputs.is_empty() || self.inputs.len() > MAX_INPUTS {
            return bad(format!(
                "{} inputs; a cross-shard transfer has 1 to {MAX_INPUTS}",
                self.inputs.len()
            ));
        }
        if !(1..=shards).contains(&self.output_shard) {
            return bad(format!("output shard {} does not exist", self.output_shard));
        }
        for (i, input) in self.inputs.iter().enumerate() {
            if !(1..=shards).contains(&input.shard) {
                return bad(format!(
                    "input {i} is on shard {}, which does not exist",
                    input.shard
                ));
            }
            if input.amount == 0 {
                return Err(ChainError::ZeroAmount);
            }
            if self.inputs[..i]
                .iter()
                .any(|o| o.shard == input.shard && o.from == input.from)
            {
                return bad(format!("input {i} repeats an earlier input"));
            }
        }
        self.total().map(|_| ())
    }

    fn input(&self, index: u32) -> Result<&CrossInput> {
        self.inputs.get(index as usize).ok_or_else(|| {
            ChainError::Atomix(format!(
                "input {index} of {} does not exist",
                self.inputs.len()
            ))
        })
    }
}

/// What a shard recorded about X, as an event in the receipt of the step.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Outcome {
    Accepted { x: Hash, input: u32 },
    Rejected { x: Hash, reason: String },
    Committed { x: Hash },
}

impl Outcome {
    fn x(&self) -> Hash {
        match self {
            Outcome::Accepted { x, .. }
            | Outcome::Rejected { x, .. }
            | Outcome::Committed { x } => *x,
        }
    }
}

/// A receipt of a finalized block of some shard, with what proves it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ReceiptProof {
    pub header: BlockHeader,
    pub cert: CommitCertificate,
    pub receipt: Receipt,
    /// Path of `receipt.hash()` to `header.receipts_root`.
    pub path: MerklePath,
}

impl ReceiptProof {
    /// Builds the proof of receipt `index` of a committed block.
    pub fn new(
        header: &BlockHeader,
        cert: &CommitCertificate,
        receipts: &[Receipt],
        index: usize,
    ) -> Option<ReceiptProof> {
        let leaves: Vec<Hash> = receipts.iter().map(Receipt::hash).collect();
        Some(ReceiptProof {
            header: header.clone(),
            cert: cert.clone(),
            receipt: receipts.get(index)?.clone(),
            path: crate::hash::merkle_path(&leaves, index)?,
        })
    }

    /// The Atomix outcome about `x` this proof shows, after checking the
    /// certificate (with this shard's light client) and the Merkle path.
    pub fn outcome(&self, state: &dyn StateRead, chain_id: &ChainId, x: &Hash) -> Result<Outcome> {
        crate::light_client::verify_certified(state, chain_id, &self.header, &self.cert)?;
        if !verify_merkle_path(&self.header.receipts_root, &self.receipt.hash(), &self.path) {
            return Err(ChainError::Proof(
                "the receipt is not in the block's receipts".into(),
            ));
        }
        if self.receipt.status != ReceiptStatus::Success {
            return Err(ChainError::Atomix(
                "the proven receipt is of a failed call".into(),
            ));
        }
        self.receipt
            .events
            .iter()
            .filter(|e| e.module == ModuleId::CORE.0 && e.kind == EVENT)
            .filter_map(|e| crate::codec::decode::<Outcome>("atomix outcome", &e.data, 4096).ok())
            .find(|o| o.x() == *x)
            .ok_or_else(|| {
                ChainError::Atomix(format!(
                    "the proven receipt says nothing about transfer {x}"
                ))
            })
    }
}

/// An input's state on its shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum InputState {
    /// The amount is in the lock.
    Locked,
    /// The owner could not pay; nothing was locked.
    Rejected,
    /// X committed: the locked IOST left for the output shard.
    Released,
    /// X was rejected: the lock went back to its owner.
    Refunded,
}

/// The output shard's decision on X.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Decision {
    Committed,
    Rejected,
}

const INPUT_PREFIX: &[u8] = b"core/atomix/input/";
const DECIDED_PREFIX: &[u8] = b"core/atomix/decided/";
/// Sum of every lock on this shard: part of its IOST supply.
pub const K_LOCKED: &[u8] = b"core/atomix/locked";

pub fn input_key(x: &Hash, input: u32) -> Vec<u8> {
    let mut k = INPUT_PREFIX.to_vec();
    k.extend_from_slice(&x.0);
    k.extend_from_slice(&input.to_be_bytes());
    k
}

pub fn decided_key(x: &Hash) -> Vec<u8> {
    let mut k = DECIDED_PREFIX.to_vec();
    k.extend_from_slice(&x.0);
    k
}

/// IOST held in locks on this shard.
pub fn locked(state: &dyn StateRead) -> Result<Amount> {
    Ok(crate::committee::read(state, K_LOCKED)?.unwrap_or(0))
}

fn add_locked(ctx: &mut CallContext<'_, '_>, delta: Amount, add: bool) -> Result<()> {
    let now: Amount = ctx.get(K_LOCKED)?.unwrap_or(0);
    let next = if add {
        now.checked_add(delta)
    } else {
        now.checked_sub(delta)
    };
    ctx.put(K_LOCKED, &next.ok_or(ChainError::Overflow)?)
}

fn emit(ctx: &mut CallContext<'_, '_>, outcome: &Outcome) {
    ctx.emit(EVENT, outcome);
}

/// Input `index` of a well-formed `x`, which must live on this shard.
fn input_here(ctx: &CallContext<'_, '_>, x: &CrossTransfer, index: u32) -> Result<CrossInput> {
    x.check(ctx.params.shards)?;
    let input = x.input(index)?.clone();
    if input.shard != ctx.env.shard {
        return Err(ChainError::WrongShard {
            expected: input.shard,
            got: ctx.env.shard,
        });
    }
    Ok(input)
}

/// Step 1 on an input's shard, by its owner.
pub fn lock(ctx: &mut CallContext<'_, '_>, x: &CrossTransfer, index: u32) -> Result<()> {
    let input = input_here(ctx, x, index)?;
    if input.from != ctx.sender {
        return Err(ChainError::Atomix(format!(
            "input {index} belongs to {}, not the sender",
            input.from
        )));
    }
    let id = x.id();
    let key = input_key(&id, index);
    if let Some(state) = ctx.get::<InputState>(&key)? {
        return Err(ChainError::Atomix(format!(
            "input {index} of {id} is already decided ({state:?})"
        )));
    }
    let mut owner = ctx.account(&input.from)?;
    match owner.debit(input.amount) {
        Ok(()) => {
            ctx.set_account(&input.from, &owner);
            add_locked(ctx, input.amount, true)?;
            ctx.put(&key, &InputState::Locked)?;
            emit(
                ctx,
                &Outcome::Accepted {
                    x: id,
                    input: index,
                },
            );
        }
        Err(e) => {
            ctx.put(&key, &InputState::Rejected)?;
            emit(
                ctx,
                &Outcome::Rejected {
                    x: id,
                    reason: e.to_string(),
                },
            );
        }
    }
    Ok(())
}

fn undecided(ctx: &CallContext<'_, '_>, x: &CrossTransfer) -> Result<Hash> {
    x.check(ctx.params.shards)?;
    if x.output_shard != ctx.env.shard {
        return Err(ChainError::WrongShard {
            expected: x.output_shard,
            got: ctx.env.shard,
        });
    }
    let id = x.id();
    if let Some(d) = ctx.get::<Decision>(&decided_key(&id))? {
        return Err(ChainError::Atomix(format!(
            "{id} is already decided: {d:?}"
        )));
    }
    Ok(id)
}

fn decide_rejected(ctx: &mut CallContext<'_, '_>, id: Hash, reason: String) -> Result<()> {
    ctx.put(&decided_key(&id), &Decision::Rejected)?;
    emit(ctx, &Outcome::Rejected { x: id, reason });
    Ok(())
}

/// Step 2 on the output shard: commit with a proof of acceptance of every
/// input, or reject with one proof of rejection.
pub fn commit(
    ctx: &mut CallContext<'_, '_>,
    x: &CrossTransfer,
    proofs: &[ReceiptProof],
) -> Result<()> {
    let id = undecided(ctx, x)?;
    let chain_id = ctx.env.chain_id.clone();
    let mut accepted = vec![false; x.inputs.len()];
    for proof in proofs {
        match proof.outcome(ctx.state(), &chain_id, &id)? {
            Outcome::Accepted { input, .. } => {
                let expected = x.input(input)?.shard;
                if proof.header.shard != expected {
                    return Err(ChainError::WrongShard {
                        expected,
                        got: proof.header.shard,
                    });
                }
                accepted[input as usize] = true;
            }
            Outcome::Rejected { reason, .. } => {
                if !x.inputs.iter().any(|i| i.shard == proof.header.shard) {
                    return Err(ChainError::Atomix(format!(
                        "a rejection from shard {}, which holds no input",
                        proof.header.shard
                    )));
                }
                return decide_rejected(ctx, id, format!("input rejected: {reason}"));
            }
            Outcome::Committed { .. } => {
                return Err(ChainError::Atomix(
                    "a commit is not a proof of acceptance".into(),
                ))
            }
        }
    }
    if let Some(missing) = accepted.iter().position(|a| !a) {
        return Err(ChainError::Atomix(format!(
            "no proof of acceptance for input {missing}"
        )));
    }
    let mut to = ctx.account(&x.to)?;
    to.credit(x.total()?)?;
    ctx.set_account(&x.to, &to);
    ctx.put(&decided_key(&id), &Decision::Committed)?;
    emit(ctx, &Outcome::Committed { x: id });
    Ok(())
}

/// Step 2': after expiry, an undecided output shard rejects X.
pub fn abort(ctx: &mut CallContext<'_, '_>, x: &CrossTransfer) -> Result<()> {
    let id = undecided(ctx, x)?;
    if ctx.env.height <= x.expires_at {
        return Err(ChainError::Atomix(format!(
            "{id} expires after height {}; this is {}",
            x.expires_at, ctx.env.height
        )));
    }
    decide_rejected(ctx, id, "expired".into())
}

/// Step 3 on an input's shard: release the lock on a proof of `Committed`
/// from the output shard, refund it on a proof of any `Rejected`.
pub fn unlock(
    ctx: &mut CallContext<'_, '_>,
    x: &CrossTransfer,
    index: u32,
    proof: &ReceiptProof,
) -> Result<()> {
    let input = input_here(ctx, x, index)?;
    let id = x.id();
    let key = input_key(&id, index);
    match ctx.get::<InputState>(&key)? {
        Some(InputState::Locked) => {}
        other => {
            return Err(ChainError::Atomix(format!(
                "input {index} of {id} is not locked here ({other:?})"
            )))
        }
    }
    let chain_id = ctx.env.chain_id.clone();
    let next = match proof.outcome(ctx.state(), &chain_id, &id)? {
        Outcome::Committed { .. } if proof.header.shard == x.output_shard => InputState::Released,
        Outcome::Rejected { .. }
            if proof.header.shard == x.output_shard
                || x.inputs.iter().any(|i| i.shard == proof.header.shard) =>
        {
            InputState::Refunded
        }
        other => {
            return Err(ChainError::Atomix(format!(
                "{other:?} from shard {} neither commits nor rejects {id}",
                proof.header.shard
            )))
        }
    };
    add_locked(ctx, input.amount, false)?;
    if next == InputState::Refunded {
        let mut owner = ctx.account(&input.from)?;
        owner.credit(input.amount)?;
        ctx.set_account(&input.from, &owner);
    }
    ctx.put(&key, &next)?;
    ctx.emit("atomix_unlock", &(id, index, next));
    Ok(())
}
