//! The core module (id 0): IOST transfers, staking and equivocation evidence.
//! Servi has no transfer: an attempt is the typed error `ServiNotTransferable`.

use crate::atomix::{
    BatchStep, Certified, CrossTransfer, ProvenReceipt, ReceiptProof, RelayBatch, MAX_BATCH_BLOCKS,
    MAX_BATCH_RECEIPTS, MAX_BATCH_STEPS,
};
use crate::block::{SignedProposal, SignedVote};
use crate::committee::{K_FEE_POOL, K_VALIDATORS};
use crate::crypto::Address;
use crate::error::{ChainError, Result};
use crate::hash::{hash_value, tag, Hash};
use crate::light_client::{CertCache, EpochChange};
use crate::module::{CallContext, Module};
use crate::pvss::{Dealing, DecryptedShare, DleqProof, PvssPublicKey};
use crate::shard::BEACON;
use crate::state::StateRead;
use crate::tx::ModuleId;
use crate::types::{Amount, Epoch, PPM};
use crate::types::{ChainId, ShardId};
use borsh::{BorshDeserialize, BorshSerialize};

/// Upper bound on an encoded ledger call (a randomness dealing is the largest).
pub const MAX_LEDGER_CALL: usize = crate::tx::MAX_TX_BYTES;

#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Token {
    Iost,
    Servi,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum LedgerCall {
    Transfer {
        to: Address,
        amount: Amount,
        token: Token,
    },
    Stake {
        amount: Amount,
    },
    Unstake {
        amount: Amount,
    },
    Evidence(Box<Evidence>),
    /// Registers the sender's key for the randomness beacon (needed to serve
    /// in a committee). Keys are unique; a validator may replace its own.
    RegisterPvssKey {
        key: PvssPublicKey,
        /// `pvss::prove_possession` under `beacon::possession_context`.
        proof: DleqProof,
    },
    /// A beacon committee member's PVSS dealing for `epoch`'s round.
    Deal {
        epoch: Epoch,
        dealing: Box<Dealing>,
    },
    /// A member's decrypted shares of every dealing in Q, in Q's order.
    Reveal {
        epoch: Epoch,
        shares: Vec<DecryptedShare>,
    },
    /// Relay: the beacon ended an epoch; an account shard follows it.
    BeaconUpdate(Box<EpochChange>),
    /// Atomix step 1, by the owner of input `input` of `x`, on its shard.
    AtomixLock {
        x: Box<CrossTransfer>,
        input: u32,
    },
    /// Relay, Atomix step 2 on the output shard: a proof of acceptance for
    /// every input commits `x`; one proof of rejection rejects it.
    AtomixCommit {
        x: Box<CrossTransfer>,
        proofs: Vec<ReceiptProof>,
    },
    /// Relay, Atomix step 2': rejects an undecided `x` after its expiry.
    AtomixAbort {
        x: Box<CrossTransfer>,
    },
    /// Relay, Atomix step 3 on an input's shard: release or refund its lock.
    AtomixUnlock {
        x: Box<CrossTransfer>,
        input: u32,
        proof: Box<ReceiptProof>,
    },
    /// Relay: Atomix steps (commit, abort, unlock) under one signature,
    /// their proofs sharing the batch's certified blocks (each checked once).
    /// Each step applies on its own: the ones that no longer apply (another
    /// relayer was first) are skipped and listed in a `relay_skipped` event;
    /// the batch is included only if one applies.
    AtomixBatch(Box<RelayBatch>),
}

impl LedgerCall {
    /// Borsh variant indexes of the relay calls (see `execute::is_relay`).
    const RELAY_VARIANTS: [u8; 5] = [7, 9, 10, 11, 12];

    /// Whether an encoded call is a relay call, from its first byte alone
    /// (borsh writes the enum variant first), so admission need not decode it.
    pub fn is_relay_payload(payload: &[u8]) -> bool {
        payload
            .first()
            .is_some_and(|v| Self::RELAY_VARIANTS.contains(v))
    }
}

/// Proof that a validator signed two conflicting messages for one step.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Evidence {
    DuplicateVote {
        a: SignedVote,
        b: SignedVote,
    },
    DuplicateProposal {
        a: SignedProposal,
        b: SignedProposal,
    },
}

impl Evidence {
    /// Checks the evidence by itself (signatures, same step, different content)
    /// and returns the offender and a key naming the offence.
    pub fn verify(&self) -> Result<(Address, Hash)> {
        let bad = |m: &str| Err(ChainError::InvalidEvidence(m.to_string()));
        match self {
            Evidence::DuplicateVote { a, b } => {
                if a.voter != b.voter {
                    return bad("votes are from different validators");
                }
                let (va, vb) = (&a.vote, &b.vote);
                if (&va.chain_id, va.shard, va.height, va.round, va.kind)
                    != (&vb.chain_id, vb.shard, vb.height, vb.round, vb.kind)
                {
                    return bad("votes are for different steps");
                }
                if va.block == vb.block {
                    return bad("votes do not conflict");
                }
                a.verify()?;
                b.verify()?;
                let key = hash_value(
                    tag::EVIDENCE_KEY,
                    &(a.voter, va.shard, va.height, va.round, va.kind as u8),
                );
                Ok((a.voter, key))
            }
            Evidence::DuplicateProposal { a, b } => {
                if a.proposer != b.proposer {
                    return bad("proposals are from different validators");
                }
                let (pa, pb) = (&a.proposal, &b.proposal);
                if (&pa.chain_id, pa.shard, pa.height, pa.round)
                    != (&pb.chain_id, pb.shard, pb.height, pb.round)
                {
                    return bad("proposals are for different rounds");
                }
                if pa.block == pb.block {
                    return bad("proposals do not conflict");
                }
                a.verify()?;
                b.verify()?;
                let key = hash_value(
                    tag::EVIDENCE_KEY,
                    &(a.proposer, pa.shard, pa.height, pa.round, 2u8),
                );
                Ok((a.proposer, key))
            }
        }
    }
}

/// The core module. It keeps the node's memo of verified certificates
/// (shared by the clones of a runtime), which relayed proofs hit over and over.
#[derive(Default)]
pub struct LedgerModule {
    certs: CertCache,
}

impl LedgerModule {
    /// The core module using `certs` as its memo of verified certificates.
    pub fn new(certs: CertCache) -> LedgerModule {
        LedgerModule { certs }
    }
}

/// The proofs of a relay call, checked against this shard's light client
/// without executing it (see `Runtime::check_relay_proofs`).
pub fn check_relay_proofs(
    state: &dyn StateRead,
    chain_id: &ChainId,
    shards: u16,
    call: &LedgerCall,
    certs: &CertCache,
) -> Result<()> {
    match call {
        LedgerCall::BeaconUpdate(change) => {
            crate::light_client::verify_epoch_change(state, chain_id, shards, change, certs)
        }
        LedgerCall::AtomixCommit { proofs, .. } => proofs
            .iter()
            .try_for_each(|p| p.proven(state, chain_id, certs).map(|_| ())),
        LedgerCall::AtomixUnlock { proof, .. } => proof.proven(state, chain_id, certs).map(|_| ()),
        LedgerCall::AtomixAbort { .. } => Ok(()),
        LedgerCall::AtomixBatch(batch) => prove_batch(state, chain_id, batch, certs).map(|_| ()),
        _ => Err(ChainError::Relay("not a relay call".into())),
    }
}

/// Checks a batch's blocks (certificates) and receipts (Merkle paths), once
/// each, and its size limits; returns the proven receipts in batch order.
/// One bad block or receipt fails the batch: an honest relayer carries only
/// finalized ones.
fn prove_batch<'a>(
    state: &dyn StateRead,
    chain_id: &ChainId,
    batch: &'a RelayBatch,
    certs: &CertCache,
) -> Result<Vec<ProvenReceipt<'a>>> {
    let total = batch.steps.len();
    if total == 0 || total > MAX_BATCH_STEPS {
        return Err(ChainError::Relay(format!(
            "a relay batch has 1 to {MAX_BATCH_STEPS} steps, not {total}"
        )));
    }
    if batch.blocks.len() > MAX_BATCH_BLOCKS {
        return Err(ChainError::Relay(format!(
            "a relay batch refers to at most {MAX_BATCH_BLOCKS} blocks, not {}",
            batch.blocks.len()
        )));
    }
    if batch.receipts.len() > MAX_BATCH_RECEIPTS {
        return Err(ChainError::Relay(format!(
            "a relay batch carries at most {MAX_BATCH_RECEIPTS} receipts, not {}",
            batch.receipts.len()
        )));
    }
    let blocks = batch
        .blocks
        .iter()
        .map(|b| Certified::check(state, chain_id, &b.header, &b.cert, certs))
        .collect::<Result<Vec<Certified<'a>>>>()?;
    // Each block's receipts, checked at once against its multi-proof.
    let mut of_block: Vec<Vec<(u32, &crate::block::Receipt)>> = vec![Vec::new(); blocks.len()];
    let mut position: Vec<Vec<usize>> = vec![Vec::new(); blocks.len()];
    for (k, r) in batch.receipts.iter().enumerate() {
        let b = r.block as usize;
        if b >= blocks.len() {
            return Err(ChainError::Relay(format!(
                "a receipt refers to block {} of a batch of {}",
                r.block,
                blocks.len()
            )));
        }
        of_block[b].push((r.index, &r.receipt));
        position[b].push(k);
    }
    let mut proven: Vec<Option<ProvenReceipt<'a>>> = vec![None; batch.receipts.len()];
    for (b, receipts) in of_block.iter().enumerate() {
        if receipts.is_empty() {
            return Err(ChainError::Relay(format!(
                "block {b} of the batch proves no receipt"
            )));
        }
        let checked = ProvenReceipt::check_many(blocks[b], receipts, &batch.blocks[b].receipts)?;
        for (k, p) in position[b].iter().zip(checked) {
            proven[*k] = Some(p);
        }
    }
    Ok(proven.into_iter().flatten().collect())
}

impl LedgerModule {
    pub fn call(call: &LedgerCall) -> crate::tx::Call {
        crate::tx::Call {
            module: ModuleId::CORE,
            payload: crate::codec::encode(call),
        }
    }

    /// The ledger call a transaction's call carries, if it is one.
    pub fn decode(call: &crate::tx::Call) -> Option<LedgerCall> {
        if call.module != ModuleId::CORE {
            return None;
        }
        crate::codec::decode("ledger call", &call.payload, crate::tx::MAX_TX_BYTES).ok()
    }
}

impl LedgerCall {
    /// A short name for explorers and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            LedgerCall::Transfer { .. } => "transfer",
            LedgerCall::Stake { .. } => "stake",
            LedgerCall::Unstake { .. } => "unstake",
            LedgerCall::Evidence(_) => "evidence",
            LedgerCall::RegisterPvssKey { .. } => "register_pvss_key",
            LedgerCall::Deal { .. } => "deal",
            LedgerCall::Reveal { .. } => "reveal",
            LedgerCall::BeaconUpdate(_) => "beacon_update",
            LedgerCall::AtomixLock { .. } => "atomix_lock",
            LedgerCall::AtomixCommit { .. } => "atomix_commit",
            LedgerCall::AtomixAbort { .. } => "atomix_abort",
            LedgerCall::AtomixUnlock { .. } => "atomix_unlock",
            LedgerCall::AtomixBatch(_) => "atomix_batch",
        }
    }
}

fn set_validator(ctx: &mut CallContext<'_, '_>, a: &Address, bonded: bool) -> Result<()> {
    let mut set = validators_of(ctx)?;
    match (set.binary_search(a), bonded) {
        (Err(i), true) => set.insert(i, *a),
        (Ok(i), false) => {
            set.remove(i);
        }
        _ => return Ok(()),
    }
    ctx.put(K_VALIDATORS, &set)
}

/// Whether `who` is on `shard`'s committee in the beacon's latest epoch or
/// the one before (evidence from an account shard arrives within that).
fn recent_member(ctx: &CallContext<'_, '_>, shard: ShardId, who: &Address) -> Result<bool> {
    let latest = crate::light_client::latest_epoch(ctx.state())?;
    for e in [latest, latest.saturating_sub(1)] {
        if let Some(info) = crate::light_client::read_epoch(ctx.state(), e)? {
            if info.committee(shard)?.is_member(who) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn validators_of(ctx: &CallContext<'_, '_>) -> Result<Vec<Address>> {
    Ok(ctx.get(K_VALIDATORS)?.unwrap_or_default())
}

impl Module for LedgerModule {
    fn id(&self) -> ModuleId {
        ModuleId::CORE
    }

    fn name(&self) -> &'static str {
        "core"
    }

    fn execute(&self, ctx: &mut CallContext<'_, '_>, payload: &[u8]) -> Result<()> {
        let call: LedgerCall = crate::codec::decode("ledger call", payload, MAX_LEDGER_CALL)?;
        self.apply(ctx, call)
    }
}

impl LedgerModule {
    /// Applies each step of a relay batch on its own (see [`LedgerCall::AtomixBatch`]).
    fn apply_batch(&self, ctx: &mut CallContext<'_, '_>, batch: &RelayBatch) -> Result<()> {
        let chain_id = ctx.env.chain_id.clone();
        let receipts = prove_batch(ctx.state(), &chain_id, batch, &self.certs)?;
        let total = batch.steps.len();
        let proven = |i: &u32| -> Result<ProvenReceipt<'_>> {
            receipts.get(*i as usize).cloned().ok_or_else(|| {
                ChainError::Relay(format!(
                    "a step refers to receipt {i} of a batch of {}",
                    receipts.len()
                ))
            })
        };
        let mut skipped: Vec<(u32, String)> = Vec::new();
        let mut first_error = None;
        for (i, step) in batch.steps.iter().enumerate() {
            let applied = ctx.nested(|c| match step {
                BatchStep::Commit { x, proofs } => {
                    let proofs = proofs.iter().map(proven).collect::<Result<Vec<_>>>()?;
                    crate::atomix::commit(c, x, &proofs)
                }
                BatchStep::Abort { x } => crate::atomix::abort(c, x),
                BatchStep::Unlock { x, input, proof } => {
                    crate::atomix::unlock(c, x, *input, &proven(proof)?)
                }
            });
            if let Err(e) = applied {
                skipped.push((i as u32, e.code().to_string()));
                first_error.get_or_insert(e);
            }
        }
        if skipped.len() == total {
            let e = first_error.map(|e| e.to_string()).unwrap_or_default();
            return Err(ChainError::Relay(format!(
                "none of the relay batch's {total} steps applies (step 0: {e})"
            )));
        }
        if !skipped.is_empty() {
            ctx.emit("relay_skipped", &skipped);
        }
        Ok(())
    }

    fn apply(&self, ctx: &mut CallContext<'_, '_>, call: LedgerCall) -> Result<()> {
        let sender = ctx.sender;
        match call {
            LedgerCall::Transfer { to, amount, token } => {
                if token == Token::Servi {
                    return Err(ChainError::ServiNotTransferable);
                }
                if amount == 0 {
                    return Err(ChainError::ZeroAmount);
                }
                let mut from = ctx.account(&sender)?;
                from.debit(amount)?;
                ctx.set_account(&sender, &from);
                let mut dest = ctx.account(&to)?;
                dest.credit(amount)?;
                ctx.set_account(&to, &dest);
                ctx.emit("transfer", &(sender, to, amount));
            }
            LedgerCall::Stake { amount } => {
                if amount == 0 {
                    return Err(ChainError::ZeroAmount);
                }
                let mut acct = ctx.account(&sender)?;
                acct.debit(amount)?;
                acct.stake = acct.stake.checked_add(amount).ok_or(ChainError::Overflow)?;
                let bonded = acct.stake >= ctx.params.min_validator_stake && !acct.jailed;
                ctx.set_account(&sender, &acct);
                set_validator(ctx, &sender, bonded)?;
                ctx.emit("stake", &(sender, amount));
            }
            LedgerCall::Unstake { amount } => {
                if amount == 0 {
                    return Err(ChainError::ZeroAmount);
                }
                let mut acct = ctx.account(&sender)?;
                acct.stake =
                    acct.stake
                        .checked_sub(amount)
                        .ok_or(ChainError::InsufficientFunds {
                            need: amount,
                            have: acct.stake,
                        })?;
                acct.unbonding = acct
                    .unbonding
                    .checked_add(amount)
                    .ok_or(ChainError::Overflow)?;
                acct.unbonding_release = ctx.env.height + ctx.params.unbonding_blocks;
                let bonded = acct.stake >= ctx.params.min_validator_stake && !acct.jailed;
                ctx.set_account(&sender, &acct);
                set_validator(ctx, &sender, bonded)?;
                ctx.emit("unstake", &(sender, amount));
            }
            LedgerCall::Evidence(ev) => {
                let (offender, key) = ev.verify()?;
                let (chain_id, shard, height) = match &*ev {
                    Evidence::DuplicateVote { a, .. } => {
                        (&a.vote.chain_id, a.vote.shard, a.vote.height)
                    }
                    Evidence::DuplicateProposal { a, .. } => {
                        (&a.proposal.chain_id, a.proposal.shard, a.proposal.height)
                    }
                };
                // Stakes live on the beacon, so evidence is judged there,
                // for an offence on any shard.
                if ctx.env.shard != BEACON {
                    return Err(ChainError::WrongShard {
                        expected: BEACON,
                        got: ctx.env.shard,
                    });
                }
                if shard > ctx.params.shards {
                    return Err(ChainError::WrongShard {
                        expected: ctx.env.shard,
                        got: shard,
                    });
                }
                if shard == BEACON {
                    // Evidence counts while the offender's stake is surely
                    // still slashable: within one unbonding period.
                    if height.saturating_add(ctx.params.unbonding_blocks) < ctx.env.height {
                        return Err(ChainError::InvalidEvidence(format!(
                            "the offence at height {height} is older than the unbonding period ({} blocks)",
                            ctx.params.unbonding_blocks
                        )));
                    }
                } else if !recent_member(ctx, shard, &offender)? {
                    // Another shard's heights mean nothing here; what the
                    // beacon knows is who sat on that shard's committee.
                    return Err(ChainError::InvalidEvidence(format!(
                        "{offender} is not on shard {shard}'s committee in this or the last epoch"
                    )));
                }
                if chain_id != &ctx.env.chain_id {
                    return Err(ChainError::WrongChainId {
                        expected: ctx.env.chain_id.0.clone(),
                        got: chain_id.0.clone(),
                    });
                }
                let mut record = b"core/evidence/".to_vec();
                record.extend_from_slice(&key.0);
                if ctx.get::<()>(&record)?.is_some() {
                    return Err(ChainError::DuplicateEvidence);
                }
                let mut acct = ctx.account(&offender)?;
                if acct.stake == 0 && acct.unbonding == 0 {
                    return Err(ChainError::InvalidEvidence(
                        "the signer has no stake to slash".into(),
                    ));
                }
                let slash =
                    |v: Amount| (v as u128 * ctx.params.slash as u128 / PPM as u128) as Amount;
                let from_stake = slash(acct.stake);
                let from_unbonding = slash(acct.unbonding);
                acct.stake -= from_stake;
                acct.unbonding -= from_unbonding;
                acct.reputation = 0;
                acct.penalty = PPM as u32;
                acct.jailed = true;
                ctx.set_account(&offender, &acct);
                set_validator(ctx, &offender, false)?;
                let pool: Amount = ctx.get(K_FEE_POOL)?.unwrap_or(0);
                let pool = pool
                    .checked_add(from_stake + from_unbonding)
                    .ok_or(ChainError::Overflow)?;
                ctx.put(K_FEE_POOL, &pool)?;
                ctx.put(&record, &())?;
                ctx.emit("slashed", &(offender, from_stake + from_unbonding));
            }
            LedgerCall::RegisterPvssKey { key, proof } => {
                crate::beacon::check_pvss_key(&key)?;
                let cx = crate::beacon::possession_context(&ctx.env.chain_id, &sender);
                crate::pvss::verify_possession(&cx, &key, &proof)?;
                let owner_key = crate::beacon::pvss_owner_key(&key);
                if let Some(owner) = ctx.get::<Address>(&owner_key)? {
                    if owner != sender {
                        return Err(ChainError::Beacon(format!(
                            "PVSS key already registered by {owner}"
                        )));
                    }
                }
                let own = crate::beacon::pvss_key_key(&sender);
                if let Some(old) = ctx.get::<PvssPublicKey>(&own)? {
                    ctx.delete(&crate::beacon::pvss_owner_key(&old))?;
                }
                ctx.put(&own, &key)?;
                ctx.put(&owner_key, &sender)?;
                ctx.emit("pvss_key", &(sender, key));
            }
            LedgerCall::BeaconUpdate(change) => {
                if ctx.env.shard == crate::shard::BEACON {
                    return Err(ChainError::Relay(
                        "the beacon does not follow itself: epoch changes go to account shards"
                            .into(),
                    ));
                }
                crate::light_client::verify_epoch_change(
                    ctx.state(),
                    &ctx.env.chain_id,
                    ctx.params.shards,
                    &change,
                    &self.certs,
                )?;
                let e = change.info.epoch;
                ctx.put(&crate::light_client::epoch_key(e), &change.info)?;
                ctx.put(crate::light_client::K_LATEST_EPOCH, &e)?;
                ctx.emit("epoch", &e);
            }
            LedgerCall::AtomixLock { x, input } => crate::atomix::lock(ctx, &x, input)?,
            LedgerCall::AtomixCommit { x, proofs } => {
                let chain_id = ctx.env.chain_id.clone();
                let proofs = proofs
                    .iter()
                    .map(|p| p.proven(ctx.state(), &chain_id, &self.certs))
                    .collect::<Result<Vec<_>>>()?;
                crate::atomix::commit(ctx, &x, &proofs)?
            }
            LedgerCall::AtomixAbort { x } => crate::atomix::abort(ctx, &x)?,
            LedgerCall::AtomixUnlock { x, input, proof } => {
                let chain_id = ctx.env.chain_id.clone();
                let proof = proof.proven(ctx.state(), &chain_id, &self.certs)?;
                crate::atomix::unlock(ctx, &x, input, &proof)?
            }
            LedgerCall::Deal { epoch, dealing } => crate::beacon::deal(ctx, epoch, &dealing)?,
            LedgerCall::Reveal { epoch, shares } => crate::beacon::reveal(ctx, epoch, &shares)?,
            LedgerCall::AtomixBatch(batch) => self.apply_batch(ctx, &batch)?,
        }
        Ok(())
    }
}
