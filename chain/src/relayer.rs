//! An Atomix relayer, sans-IO: it reads finalized blocks of every shard it
//! follows, learns cross-shard transfers from their lock transactions (and
//! a module's sends from its custody from their `atomix_send` events), keeps
//! the proofs their steps need, and says which steps are due: the commit
//! (or rejection) on the output shard once every input is accepted (or one
//! refused), the abort once the output shard passed the expiry, the
//! unlocks on the input shards once the output shard decided. The driver
//! turns each step into a relay transaction of the shard it names.
//!
//! Relaying is idempotent on chain (a step that no longer applies is not
//! included), so any number of relayers may run; one honest one suffices.

use crate::atomix::{
    CrossTransfer, Decision, InputState, Outcome, ReceiptProof, Step, EVENT, SEND_EVENT,
};
use crate::block::{Block, CommitCertificate, Receipt, ReceiptStatus};
use crate::hash::{Hash, MerkleTree};
use crate::ledger::{LedgerCall, LedgerModule};
use crate::types::{Height, ShardId, TimeMs};
use std::collections::BTreeMap;

/// A step not yet carried is sent again after this long.
pub const RESEND_MS: TimeMs = 1_000;
/// A finished transfer is forgotten this long after it finished.
pub const KEEP_DONE_MS: TimeMs = 10 * 60 * 1000;
/// Transfers followed at once at most (the oldest are dropped beyond).
pub const MAX_TRACKED: usize = 100_000;

/// Where a cross-shard transfer stands, as the relayer has seen it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum AtomixState {
    /// Inputs locking: `accepted` of `inputs` are locked.
    Locking { accepted: usize, inputs: usize },
    /// The output shard committed: the recipient is paid; `released` of
    /// `inputs` locks are released so far.
    Committed { released: usize, inputs: usize },
    /// Rejected (an input refused, or expired): `refunded` of the accepted
    /// locks are refunded so far.
    Rejected { refunded: usize, accepted: usize },
    /// Committed and every lock released.
    Done,
    /// Rejected and every accepted lock refunded.
    Refunded,
}

#[derive(Clone, Debug)]
pub struct Tracked {
    pub x: CrossTransfer,
    accepted: Vec<Option<ReceiptProof>>,
    /// A lock's refusal: enough to reject at the output shard.
    rejection: Option<ReceiptProof>,
    decision: Option<(Decision, ReceiptProof)>,
    unlocked: Vec<bool>,
    /// When the last step went out, and the progress it carried.
    relayed: Option<(TimeMs, usize)>,
    /// When the relayer last saw it move.
    pub progressed: TimeMs,
}

impl Tracked {
    fn new(x: CrossTransfer, now: TimeMs) -> Tracked {
        let n = x.inputs.len();
        Tracked {
            x,
            accepted: vec![None; n],
            rejection: None,
            decision: None,
            unlocked: vec![false; n],
            relayed: None,
            progressed: now,
        }
    }

    /// A number that grows with every event seen.
    fn progress(&self) -> usize {
        self.accepted.iter().flatten().count()
            + usize::from(self.rejection.is_some())
            + 2 * usize::from(self.decision.is_some())
            + self.unlocked.iter().filter(|u| **u).count()
    }

    pub fn state(&self) -> AtomixState {
        let accepted = self.accepted.iter().flatten().count();
        let released = self
            .accepted
            .iter()
            .zip(&self.unlocked)
            .filter(|(a, u)| a.is_some() && **u)
            .count();
        match &self.decision {
            None => AtomixState::Locking {
                accepted,
                inputs: self.x.inputs.len(),
            },
            Some((Decision::Committed, _)) if released == self.x.inputs.len() => AtomixState::Done,
            Some((Decision::Committed, _)) => AtomixState::Committed {
                released,
                inputs: self.x.inputs.len(),
            },
            Some((Decision::Rejected, _)) if released == accepted => AtomixState::Refunded,
            Some((Decision::Rejected, _)) => AtomixState::Rejected {
                refunded: released,
                accepted,
            },
        }
    }

    pub fn terminal(&self) -> bool {
        matches!(self.state(), AtomixState::Done | AtomixState::Refunded)
    }
}

#[derive(Debug, Default)]
pub struct Relayer {
    transfers: BTreeMap<Hash, Tracked>,
    /// Latest finalized height seen per shard.
    heights: BTreeMap<ShardId, Height>,
}

impl Relayer {
    pub fn new() -> Relayer {
        Relayer::default()
    }

    pub fn get(&self, x: &Hash) -> Option<&Tracked> {
        self.transfers.get(x)
    }

    /// Every transfer followed (finished ones for a while after), by id.
    pub fn iter(&self) -> impl Iterator<Item = (&Hash, &Tracked)> {
        self.transfers.iter()
    }

    pub fn len(&self) -> usize {
        self.transfers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.transfers.is_empty()
    }

    /// Reads a finalized block of `shard` with its certificate and receipts.
    pub fn observe(
        &mut self,
        shard: ShardId,
        block: &Block,
        cert: &CommitCertificate,
        receipts: &[Receipt],
        now: TimeMs,
    ) {
        let h = self.heights.entry(shard).or_insert(0);
        *h = (*h).max(block.header.height);
        // The block's receipts tree, hashed once when a first proof needs it
        // (a block may prove thousands of outcomes).
        let mut tree: Option<MerkleTree> = None;
        // A last receipt past the transactions' carries the block's own events.
        for (index, r) in receipts.iter().enumerate() {
            if r.status != ReceiptStatus::Success {
                continue;
            }
            let call = block
                .txs
                .get(index)
                .and_then(|tx| LedgerModule::decode(&tx.tx.call));
            let from_lock = matches!(call, Some(LedgerCall::AtomixLock { .. }));
            if let Some(LedgerCall::AtomixLock { x, .. }) = &call {
                self.track(x, now);
            }
            for e in &r.events {
                if e.module != 0 {
                    continue;
                }
                if e.kind == SEND_EVENT {
                    if let Ok(x) =
                        crate::codec::decode::<CrossTransfer>("send event", &e.data, 1 << 16)
                    {
                        self.track(&x, now);
                    }
                    continue;
                }
                if e.kind == "atomix_unlock" {
                    if let Ok((x, input, _)) = crate::codec::decode::<(Hash, u32, InputState)>(
                        "unlock event",
                        &e.data,
                        4096,
                    ) {
                        if let Some(t) = self.transfers.get_mut(&x) {
                            if let Some(u) = t.unlocked.get_mut(input as usize) {
                                *u = true;
                                t.progressed = now;
                            }
                        }
                    }
                    continue;
                }
                if e.kind != EVENT {
                    continue;
                }
                let Ok(outcome) = crate::codec::decode::<Outcome>("atomix event", &e.data, 4096)
                else {
                    continue;
                };
                let x = match &outcome {
                    Outcome::Accepted { x, .. }
                    | Outcome::Rejected { x, .. }
                    | Outcome::Committed { x } => *x,
                };
                let Some(t) = self.transfers.get_mut(&x) else {
                    continue;
                };
                let tree = tree.get_or_insert_with(|| {
                    MerkleTree::new(&receipts.iter().map(Receipt::hash).collect::<Vec<_>>())
                });
                let Some(path) = tree.path(index) else {
                    continue;
                };
                let proof = ReceiptProof {
                    header: block.header.clone(),
                    cert: cert.clone(),
                    receipt: r.clone(),
                    path,
                };
                t.progressed = now;
                match outcome {
                    Outcome::Accepted { input, .. } => {
                        if let Some(a) = t.accepted.get_mut(input as usize) {
                            *a = Some(proof);
                        }
                    }
                    Outcome::Rejected { .. } if from_lock => t.rejection = Some(proof),
                    Outcome::Rejected { .. } if shard == t.x.output_shard => {
                        t.decision = Some((Decision::Rejected, proof));
                    }
                    Outcome::Committed { .. } if shard == t.x.output_shard => {
                        t.decision = Some((Decision::Committed, proof));
                    }
                    _ => {}
                }
            }
        }
    }

    fn track(&mut self, x: &CrossTransfer, now: TimeMs) {
        let id = x.id();
        if !self.transfers.contains_key(&id) {
            if self.transfers.len() >= MAX_TRACKED {
                self.forget_oldest();
            }
            self.transfers.insert(id, Tracked::new(x.clone(), now));
        }
    }

    fn forget_oldest(&mut self) {
        if let Some(id) = self
            .transfers
            .iter()
            .min_by_key(|(_, t)| t.progressed)
            .map(|(id, _)| *id)
        {
            self.transfers.remove(&id);
        }
    }

    /// The steps due now, each for the shard that executes it: new
    /// progress at once, anything still waiting again every [`RESEND_MS`].
    /// Forgets transfers finished [`KEEP_DONE_MS`] ago.
    pub fn due(&mut self, now: TimeMs) -> Vec<(ShardId, Step)> {
        self.transfers
            .retain(|_, t| !(t.terminal() && now > t.progressed + KEEP_DONE_MS));
        let heights = &self.heights;
        let mut out = Vec::new();
        for t in self.transfers.values_mut().filter(|t| !t.terminal()) {
            let progress = t.progress();
            if t.relayed
                .is_some_and(|(at, p)| p == progress && now < at + RESEND_MS)
            {
                continue;
            }
            let before = out.len();
            match &t.decision {
                None => {
                    if let Some(p) = &t.rejection {
                        out.push((
                            t.x.output_shard,
                            Step::Commit {
                                x: t.x.clone(),
                                proofs: vec![p.clone()],
                            },
                        ));
                    } else if t.accepted.iter().all(Option::is_some) {
                        out.push((
                            t.x.output_shard,
                            Step::Commit {
                                x: t.x.clone(),
                                proofs: t.accepted.iter().flatten().cloned().collect(),
                            },
                        ));
                    } else if heights
                        .get(&t.x.output_shard)
                        .is_some_and(|h| *h > t.x.expires_at)
                    {
                        out.push((t.x.output_shard, Step::Abort { x: t.x.clone() }));
                    }
                }
                Some((_, proof)) => {
                    for (i, input) in t.x.inputs.iter().enumerate() {
                        if t.accepted[i].is_some() && !t.unlocked[i] {
                            out.push((
                                input.shard,
                                Step::Unlock {
                                    x: t.x.clone(),
                                    input: i as u32,
                                    proof: Box::new(proof.clone()),
                                },
                            ));
                        }
                    }
                }
            }
            if out.len() > before {
                t.relayed = Some((now, progress));
            }
        }
        out
    }
}

/// A step as the ledger call that carries it alone.
pub fn step_call(step: Step) -> LedgerCall {
    match step {
        Step::Commit { x, proofs } => LedgerCall::AtomixCommit {
            x: Box::new(x),
            proofs,
        },
        Step::Abort { x } => LedgerCall::AtomixAbort { x: Box::new(x) },
        Step::Unlock { x, input, proof } => LedgerCall::AtomixUnlock {
            x: Box::new(x),
            input,
            proof,
        },
    }
}
