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
//! A transfer may carry a **call** (`CrossTransfer::call`, a module's call
//! run as the recipient, who must own every input): the output shard credits
//! the recipient and runs the call in one step, and if the call fails it
//! records `Rejected(X)` instead, so every input is refunded. A buyer on one
//! shard places an order on another this way: the escrow and the order
//! exist together or not at all.
//!
//! A module may also **send from its custody** to an account on another
//! shard (`CallContext::send_across`, a cross-shard refund): step 1 happens
//! inside the module's call, the input being the module's custody address,
//! and a `atomix_send` event names the transfer so relayers can carry it.
//!
//! A proof is a receipt, its Merkle path to the block's `receipts_root`, and
//! the block's header and commit certificate, checked with the shard's
//! beacon light client (any shard, any epoch it has followed). The output
//! shard decides X at most once, and an input is released at most once, so
//! no shard can both commit and refund X.

use crate::block::{BlockHeader, CommitCertificate, Receipt, ReceiptStatus};
use crate::crypto::Address;
use crate::error::{ChainError, Result};
use crate::hash::{hash_value, tag, verify_merkle_path, Hash, MerkleMultiProof, MerklePath};
use crate::light_client::CertCache;
use crate::module::CallContext;
use crate::state::StateRead;
use crate::tx::{Call, ModuleId};
use crate::types::{Amount, ChainId, Height, ShardId};
use borsh::{BorshDeserialize, BorshSerialize};
use std::collections::BTreeMap;

/// Most inputs one cross-shard transfer may have.
pub const MAX_INPUTS: usize = 16;
/// The event kind of every Atomix outcome (its data is a borsh [`Outcome`]).
pub const EVENT: &str = "atomix";
/// The event of a send from a module's custody (its data is the borsh
/// [`CrossTransfer`]): how relayers learn of a transfer no one signed.
pub const SEND_EVENT: &str = "atomix_send";
/// Largest call a cross-shard transfer may carry, in payload bytes.
pub const MAX_CALL_BYTES: usize = 4096;

/// The address that stands for a module's custody as an Atomix input. No
/// key signs for it: only the module's own calls lock it.
pub fn custody_address(module: ModuleId) -> Address {
    Address(crate::hash::hash_tagged(tag::CUSTODY, &module.0.to_be_bytes()).0)
}

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
    /// A module's call the output shard runs as `to` right after crediting
    /// it; if it fails, X is rejected. Only when `to` owns every input.
    pub call: Option<Call>,
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
        if let Some(call) = &self.call {
            if call.module == ModuleId::CORE {
                return bad("a cross-shard transfer carries module calls, not ledger calls".into());
            }
            if call.payload.len() > MAX_CALL_BYTES {
                return Err(ChainError::TooLarge {
                    what: "cross-shard call",
                    len: call.payload.len(),
                    max: MAX_CALL_BYTES,
                });
            }
            if self.inputs.iter().any(|i| i.from != self.to) {
                return bad(
                    "a cross-shard transfer with a call must be paid by its recipient alone".into(),
                );
            }
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
        Self::many(header, cert, receipts, &[index]).pop()
    }

    /// Proofs of receipts `indexes` of one committed block, hashing its
    /// receipts tree once (out-of-range indexes are left out).
    pub fn many(
        header: &BlockHeader,
        cert: &CommitCertificate,
        receipts: &[Receipt],
        indexes: &[usize],
    ) -> Vec<ReceiptProof> {
        let leaves: Vec<Hash> = receipts.iter().map(Receipt::hash).collect();
        let tree = crate::hash::MerkleTree::new(&leaves);
        indexes
            .iter()
            .filter_map(|&i| {
                Some(ReceiptProof {
                    header: header.clone(),
                    cert: cert.clone(),
                    receipt: receipts.get(i)?.clone(),
                    path: tree.path(i)?,
                })
            })
            .collect()
    }

    /// The Atomix outcome about `x` this proof shows, after checking the
    /// certificate (with this shard's light client) and the Merkle path.
    pub fn outcome(
        &self,
        state: &dyn StateRead,
        chain_id: &ChainId,
        x: &Hash,
        certs: &CertCache,
    ) -> Result<Outcome> {
        self.proven(state, chain_id, certs)?.outcome(x)
    }

    /// The receipt in its certified block, certificate and Merkle path checked.
    pub fn proven<'a>(
        &'a self,
        state: &dyn StateRead,
        chain_id: &ChainId,
        certs: &CertCache,
    ) -> Result<ProvenReceipt<'a>> {
        let block = Certified::check(state, chain_id, &self.header, &self.cert, certs)?;
        ProvenReceipt::check(block, &self.receipt, &self.path)
    }
}

/// A block header whose commit certificate this shard's light client has
/// checked; only [`Certified::check`] makes one.
#[derive(Clone, Copy, Debug)]
pub struct Certified<'a>(&'a BlockHeader);

impl<'a> Certified<'a> {
    pub fn check(
        state: &dyn StateRead,
        chain_id: &ChainId,
        header: &'a BlockHeader,
        cert: &CommitCertificate,
        certs: &CertCache,
    ) -> Result<Certified<'a>> {
        crate::light_client::verify_certified(state, chain_id, header, cert, certs)?;
        Ok(Certified(header))
    }

    pub fn header(&self) -> &'a BlockHeader {
        self.0
    }
}

/// A successful receipt in a certified block (its Merkle path checked),
/// with the Atomix outcomes it records decoded once (a batch's receipt
/// records one per transfer it moved, and each unlock looks up its own);
/// only [`ProvenReceipt::check`] makes one.
#[derive(Clone, Debug)]
pub struct ProvenReceipt<'a> {
    block: Certified<'a>,
    outcomes: std::sync::Arc<Vec<Outcome>>,
}

impl<'a> ProvenReceipt<'a> {
    pub fn check(
        block: Certified<'a>,
        receipt: &Receipt,
        path: &MerklePath,
    ) -> Result<ProvenReceipt<'a>> {
        if !verify_merkle_path(&block.header().receipts_root, &receipt.hash(), path) {
            return Err(ChainError::Proof(
                "the receipt is not in the block's receipts".into(),
            ));
        }
        Self::of_included(block, receipt)
    }

    /// Checks several receipts of one certified block, `(index, receipt)`
    /// in any order, against one multi-proof; returns them in that order.
    pub fn check_many(
        block: Certified<'a>,
        receipts: &[(u32, &Receipt)],
        proof: &MerkleMultiProof,
    ) -> Result<Vec<ProvenReceipt<'a>>> {
        let mut leaves: Vec<(u32, Hash)> = receipts.iter().map(|(i, r)| (*i, r.hash())).collect();
        leaves.sort_by_key(|(i, _)| *i);
        if leaves.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(ChainError::Proof(
                "a batch carries two receipts at one index of a block".into(),
            ));
        }
        if proof.root(&leaves) != Some(block.header().receipts_root) {
            return Err(ChainError::Proof(
                "the receipts are not in the block's receipts".into(),
            ));
        }
        receipts
            .iter()
            .map(|(_, r)| Self::of_included(block, r))
            .collect()
    }

    /// A receipt known to be in `block`: it must be a success.
    fn of_included(block: Certified<'a>, receipt: &Receipt) -> Result<ProvenReceipt<'a>> {
        if receipt.status != ReceiptStatus::Success {
            return Err(ChainError::Atomix(
                "the proven receipt is of a failed call".into(),
            ));
        }
        let outcomes = receipt
            .events
            .iter()
            .filter(|e| e.module == ModuleId::CORE.0 && e.kind == EVENT)
            .filter_map(|e| crate::codec::decode::<Outcome>("atomix outcome", &e.data, 4096).ok())
            .collect();
        Ok(ProvenReceipt {
            block,
            outcomes: std::sync::Arc::new(outcomes),
        })
    }

    /// The shard whose block holds the receipt.
    pub fn shard(&self) -> ShardId {
        self.block.header().shard
    }

    /// The Atomix outcome about `x` the receipt records.
    pub fn outcome(&self, x: &Hash) -> Result<Outcome> {
        self.outcomes
            .iter()
            .find(|o| o.x() == *x)
            .cloned()
            .ok_or_else(|| {
                ChainError::Atomix(format!(
                    "the proven receipt says nothing about transfer {x}"
                ))
            })
    }
}

/// Encoded bytes a relayer packs into one [`RelayBatch`]: room for the
/// transaction envelope under `tx::MAX_TX_BYTES`.
pub const RELAY_BATCH_BYTES: usize = crate::tx::MAX_TX_BYTES - 4_096;

/// Most steps in one [`RelayBatch`].
pub const MAX_BATCH_STEPS: usize = 512;
/// Most certified blocks one [`RelayBatch`] refers to.
pub const MAX_BATCH_BLOCKS: usize = 64;
/// Most receipts one [`RelayBatch`] carries.
pub const MAX_BATCH_RECEIPTS: usize = 512;

/// Receipt `index` of block `block` of a [`RelayBatch`] (proven by that
/// block's multi-proof).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ReceiptRef {
    pub block: u32,
    pub index: u32,
    pub receipt: Receipt,
}

/// A certified block of a [`RelayBatch`], with one multi-proof of all the
/// batch's receipts from it against its `receipts_root`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct BatchBlock {
    pub header: BlockHeader,
    pub cert: CommitCertificate,
    pub receipts: MerkleMultiProof,
}

/// One Atomix step of a batch; proofs are indexes into the batch's receipts.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum BatchStep {
    Commit {
        x: CrossTransfer,
        proofs: Vec<u32>,
    },
    Abort {
        x: CrossTransfer,
    },
    Unlock {
        x: CrossTransfer,
        input: u32,
        proof: u32,
    },
}

impl BatchStep {
    /// The shard that executes the step: the output shard decides, each
    /// input's shard unlocks.
    pub fn shard(&self) -> ShardId {
        match self {
            BatchStep::Commit { x, .. } | BatchStep::Abort { x } => x.output_shard,
            BatchStep::Unlock { x, input, .. } => {
                x.inputs.get(*input as usize).map_or(0, |i| i.shard)
            }
        }
    }
}

/// Atomix steps under one relay signature whose proofs share certified
/// blocks and receipts: every transfer locked in one block is proven by
/// that block's header and certificate, and every transfer one relay
/// committed by that relay's receipt, which the batch carries, and a shard
/// checks, once each. Each step applies on its own; see
/// `LedgerCall::AtomixBatch`.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct RelayBatch {
    pub blocks: Vec<BatchBlock>,
    pub receipts: Vec<ReceiptRef>,
    pub steps: Vec<BatchStep>,
}

/// A step with self-contained proofs, as a relayer collects them.
#[derive(Clone, Debug)]
pub enum Step {
    Commit {
        x: CrossTransfer,
        proofs: Vec<ReceiptProof>,
    },
    Abort {
        x: CrossTransfer,
    },
    Unlock {
        x: CrossTransfer,
        input: u32,
        proof: Box<ReceiptProof>,
    },
}

impl RelayBatch {
    /// Packs steps into batches of at most `max_bytes` encoded bytes (and
    /// the step, block and receipt limits), each certified block carried
    /// once per batch with one multi-proof of its receipts, each receipt
    /// once. Fails only if two proofs of one block disagree on its tree.
    pub fn pack(steps: Vec<Step>, max_bytes: usize) -> Result<Vec<RelayBatch>> {
        let mut out: Vec<RelayBatch> = Vec::new();
        let mut b = Packer::new();
        for step in steps {
            let proofs: Vec<&ReceiptProof> = match &step {
                Step::Commit { proofs, .. } => proofs.iter().collect(),
                Step::Abort { .. } => Vec::new(),
                Step::Unlock { proof, .. } => vec![proof],
            };
            let (new_blocks, new_receipts, added) = b.cost(&proofs);
            let step_bytes = crate::codec::encode(&b.shape(&step)).len();
            let full = !b.batch.steps.is_empty()
                && (b.batch.steps.len() >= MAX_BATCH_STEPS
                    || b.batch.blocks.len() + new_blocks > MAX_BATCH_BLOCKS
                    || b.batch.receipts.len() + new_receipts > MAX_BATCH_RECEIPTS
                    || b.bytes + added + step_bytes > max_bytes);
            if full {
                out.push(std::mem::replace(&mut b, Packer::new()).finish()?);
            }
            let batch_step = match step {
                Step::Commit { x, proofs } => BatchStep::Commit {
                    x,
                    proofs: proofs.iter().map(|p| b.receipt(p)).collect(),
                },
                Step::Abort { x } => BatchStep::Abort { x },
                Step::Unlock { x, input, proof } => BatchStep::Unlock {
                    x,
                    input,
                    proof: b.receipt(&proof),
                },
            };
            b.bytes += step_bytes;
            b.batch.steps.push(batch_step);
        }
        if !b.batch.steps.is_empty() {
            out.push(b.finish()?);
        }
        Ok(out)
    }

    /// The steps again with self-contained proofs (each receipt's path
    /// recovered from its block's multi-proof), so a relayer can re-split a
    /// batch. Fails if a reference or a multi-proof does not fit.
    pub fn into_steps(self) -> Result<Vec<Step>> {
        let mut leaves: Vec<Vec<(u32, Hash)>> = vec![Vec::new(); self.blocks.len()];
        for r in &self.receipts {
            leaves
                .get_mut(r.block as usize)
                .ok_or_else(|| bad_ref("block", r.block, self.blocks.len()))?
                .push((r.index, r.receipt.hash()));
        }
        let mut paths: BTreeMap<(u32, u32), MerklePath> = BTreeMap::new();
        for (i, (block, mut l)) in self.blocks.iter().zip(leaves).enumerate() {
            l.sort();
            l.dedup();
            if l.windows(2).any(|w| w[0].0 == w[1].0) {
                return Err(ChainError::Proof(format!(
                    "block {i} of the batch has two receipts at one index"
                )));
            }
            let got = block.receipts.paths(&l).ok_or_else(|| {
                ChainError::Proof(format!("block {i}'s multi-proof does not fit its receipts"))
            })?;
            paths.extend(got.into_iter().map(|p| ((i as u32, p.index), p)));
        }
        let full = |i: u32| -> Result<ReceiptProof> {
            let r = self
                .receipts
                .get(i as usize)
                .ok_or_else(|| bad_ref("receipt", i, self.receipts.len()))?;
            let block = &self.blocks[r.block as usize];
            Ok(ReceiptProof {
                header: block.header.clone(),
                cert: block.cert.clone(),
                receipt: r.receipt.clone(),
                path: paths[&(r.block, r.index)].clone(),
            })
        };
        self.steps
            .iter()
            .map(|s| {
                Ok(match s {
                    BatchStep::Commit { x, proofs } => Step::Commit {
                        x: x.clone(),
                        proofs: proofs.iter().map(|i| full(*i)).collect::<Result<_>>()?,
                    },
                    BatchStep::Abort { x } => Step::Abort { x: x.clone() },
                    BatchStep::Unlock { x, input, proof } => Step::Unlock {
                        x: x.clone(),
                        input: *input,
                        proof: Box::new(full(*proof)?),
                    },
                })
            })
            .collect()
    }
}

fn bad_ref(what: &str, i: u32, len: usize) -> ChainError {
    ChainError::Relay(format!("a batch refers to {what} {i} of {len}"))
}

/// A batch being filled, with where its blocks and receipts are, the
/// single paths of each block's receipts (joined into one multi-proof when
/// the batch is done) and an upper bound of its encoded size so far.
struct Packer {
    batch: RelayBatch,
    blocks: BTreeMap<Hash, u32>,
    receipts: BTreeMap<(Hash, Hash), u32>,
    paths: Vec<Vec<MerklePath>>,
    bytes: usize,
}

impl Packer {
    fn new() -> Packer {
        Packer {
            batch: RelayBatch::default(),
            blocks: BTreeMap::new(),
            receipts: BTreeMap::new(),
            paths: Vec::new(),
            // The three vectors' length prefixes.
            bytes: 12,
        }
    }

    /// New blocks, new receipts and (at most) the bytes they add for these
    /// proofs: a receipt's multi-proof share is at most its path.
    fn cost(&self, proofs: &[&ReceiptProof]) -> (usize, usize, usize) {
        let mut blocks = BTreeMap::new();
        let mut receipts = BTreeMap::new();
        for p in proofs {
            let h = p.header.hash();
            if !self.blocks.contains_key(&h) {
                // Header, certificate, the multi-proof's count and length prefix.
                blocks.insert(h, crate::codec::encode(&(&p.header, &p.cert)).len() + 8);
            }
            if !self.receipts.contains_key(&(h, p.receipt.tx)) {
                // A `ReceiptRef` (block, index, receipt) and the path's siblings.
                let r = 8 + crate::codec::encode(&p.receipt).len() + 32 * p.path.siblings.len();
                receipts.insert((h, p.receipt.tx), r);
            }
        }
        let bytes = blocks.values().sum::<usize>() + receipts.values().sum::<usize>();
        (blocks.len(), receipts.len(), bytes)
    }

    /// The index of `p`'s receipt in the batch, adding it (and its block).
    fn receipt(&mut self, p: &ReceiptProof) -> u32 {
        let h = p.header.hash();
        let (batch, bytes, paths) = (&mut self.batch, &mut self.bytes, &mut self.paths);
        let block = *self.blocks.entry(h).or_insert_with(|| {
            batch.blocks.push(BatchBlock {
                header: p.header.clone(),
                cert: p.cert.clone(),
                receipts: MerkleMultiProof::default(),
            });
            paths.push(Vec::new());
            *bytes += crate::codec::encode(&(&p.header, &p.cert)).len() + 8;
            (batch.blocks.len() - 1) as u32
        });
        *self.receipts.entry((h, p.receipt.tx)).or_insert_with(|| {
            let r = ReceiptRef {
                block,
                index: p.path.index,
                receipt: p.receipt.clone(),
            };
            *bytes += crate::codec::encode(&r).len() + 32 * p.path.siblings.len();
            paths[block as usize].push(p.path.clone());
            batch.receipts.push(r);
            (batch.receipts.len() - 1) as u32
        })
    }

    /// The batch with each block's multi-proof joined from its paths.
    fn finish(mut self) -> Result<RelayBatch> {
        for (block, paths) in self.batch.blocks.iter_mut().zip(&self.paths) {
            let refs: Vec<&MerklePath> = paths.iter().collect();
            block.receipts = MerkleMultiProof::from_paths(&refs).ok_or_else(|| {
                ChainError::Proof(format!(
                    "the receipt proofs of block {} disagree on its receipts tree",
                    block.header.hash()
                ))
            })?;
        }
        Ok(self.batch)
    }

    /// The step as it will sit in the batch, for its encoded size.
    fn shape(&self, step: &Step) -> BatchStep {
        match step {
            Step::Commit { x, proofs } => BatchStep::Commit {
                x: x.clone(),
                proofs: vec![0; proofs.len()],
            },
            Step::Abort { x } => BatchStep::Abort { x: x.clone() },
            Step::Unlock { x, input, .. } => BatchStep::Unlock {
                x: x.clone(),
                input: *input,
                proof: 0,
            },
        }
    }
}

/// An input's state on its shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum InputState {
    /// The amount is in the lock.
    Locked,
    /// The amount is in the lock, out of this module's custody (a send
    /// by the module itself); a refund goes back to the custody.
    LockedCustody(ModuleId),
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

/// Step 1 of a send from the custody of the module running `ctx` to `to`
/// on `shard` (see [`CallContext::send_across`]). It never expires: its
/// output only credits an account, which cannot fail.
pub(crate) fn send_from_custody(
    ctx: &mut CallContext<'_, '_>,
    shard: ShardId,
    to: Address,
    amount: Amount,
    salt: u64,
) -> Result<Hash> {
    if shard == ctx.env.shard {
        return Err(ChainError::Atomix(format!(
            "a send to this shard ({shard}) is a plain release, not a cross-shard transfer"
        )));
    }
    let module = ctx.module();
    let x = CrossTransfer {
        inputs: vec![CrossInput {
            shard: ctx.env.shard,
            from: custody_address(module),
            amount,
        }],
        output_shard: shard,
        to,
        expires_at: Height::MAX,
        salt,
        call: None,
    };
    x.check(ctx.params.shards)?;
    let id = x.id();
    let key = input_key(&id, 0);
    if ctx.get::<InputState>(&key)?.is_some() {
        return Err(ChainError::Atomix(format!(
            "{id} was already sent (reuse of salt {salt})"
        )));
    }
    let left = ctx.held_after(amount)?;
    let locked = locked(ctx.state())?
        .checked_add(amount)
        .ok_or(ChainError::Overflow)?;
    ctx.set_held(module, left);
    ctx.put_core(K_LOCKED, &locked);
    ctx.put_core(&key, &InputState::LockedCustody(module));
    ctx.emit_core(SEND_EVENT, &x);
    ctx.emit_core(EVENT, &Outcome::Accepted { x: id, input: 0 });
    Ok(id)
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
    proofs: &[ProvenReceipt<'_>],
) -> Result<()> {
    let id = undecided(ctx, x)?;
    let mut accepted = vec![false; x.inputs.len()];
    for proof in proofs {
        match proof.outcome(&id)? {
            Outcome::Accepted { input, .. } => {
                let expected = x.input(input)?.shard;
                if proof.shard() != expected {
                    return Err(ChainError::WrongShard {
                        expected,
                        got: proof.shard(),
                    });
                }
                accepted[input as usize] = true;
            }
            Outcome::Rejected { reason, .. } => {
                if !x.inputs.iter().any(|i| i.shard == proof.shard()) {
                    return Err(ChainError::Atomix(format!(
                        "a rejection from shard {}, which holds no input",
                        proof.shard()
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
    let total = x.total()?;
    let credited = ctx.nested(|c| {
        let mut to = c.account(&x.to)?;
        to.credit(total)?;
        c.set_account(&x.to, &to);
        match &x.call {
            Some(call) => c.call_as(x.to, id, call),
            None => Ok(()),
        }
    });
    if let Err(e) = credited {
        return decide_rejected(ctx, id, format!("its call failed: {e}"));
    }
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
    proof: &ProvenReceipt<'_>,
) -> Result<()> {
    let input = input_here(ctx, x, index)?;
    let id = x.id();
    let key = input_key(&id, index);
    let custody = match ctx.get::<InputState>(&key)? {
        Some(InputState::Locked) => None,
        Some(InputState::LockedCustody(module)) => Some(module),
        other => {
            return Err(ChainError::Atomix(format!(
                "input {index} of {id} is not locked here ({other:?})"
            )))
        }
    };
    let next = match proof.outcome(&id)? {
        Outcome::Committed { .. } if proof.shard() == x.output_shard => InputState::Released,
        Outcome::Rejected { .. }
            if proof.shard() == x.output_shard
                || x.inputs.iter().any(|i| i.shard == proof.shard()) =>
        {
            InputState::Refunded
        }
        other => {
            return Err(ChainError::Atomix(format!(
                "{other:?} from shard {} neither commits nor rejects {id}",
                proof.shard()
            )))
        }
    };
    add_locked(ctx, input.amount, false)?;
    if next == InputState::Refunded {
        match custody {
            Some(module) => {
                let held: Amount = ctx.get(&crate::module::keys::held(module))?.unwrap_or(0);
                let held = held.checked_add(input.amount).ok_or(ChainError::Overflow)?;
                ctx.set_held(module, held);
            }
            None => {
                let mut owner = ctx.account(&input.from)?;
                owner.credit(input.amount)?;
                ctx.set_account(&input.from, &owner);
            }
        }
    }
    ctx.put(&key, &next)?;
    ctx.emit("atomix_unlock", &(id, index, next));
    Ok(())
}
