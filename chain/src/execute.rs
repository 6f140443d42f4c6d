//! Deterministic block execution. Given the committed state and a list of
//! transactions, produces receipts and a state diff with its new root. The
//! proposer runs it to build a block (skipping transactions that cannot pay);
//! every validator runs it again to check the block (where any such
//! transaction makes the whole block invalid).

use crate::beacon;
use crate::block::{Committee, Receipt, ReceiptStatus};
use crate::codec;
use crate::committee::{self, K_COMMITTEE, K_EPOCH_START, K_FEE_POOL, K_RANDOMNESS, K_VALIDATORS};
use crate::crypto::Address;
use crate::error::{ChainError, Result};
use crate::hash::Hash;
use crate::ledger::LedgerModule;
use crate::module::{keys, BlockEnv, CallContext, Module};
use crate::params::{ChainParams, Genesis};
use crate::state::{Overlay, StateDiff, StateRead, StateStore};
use crate::tx::{ModuleId, PooledTx, MAX_TX_BYTES};
use crate::types::{Amount, Height, PPM};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Building a block: transactions that fail admission are left out.
    Propose,
    /// Checking a proposed block: a transaction that fails admission invalidates it.
    Validate,
}

/// A block's execution result, held until it commits.
#[derive(Debug)]
pub struct Executed {
    pub txs: Vec<PooledTx>,
    pub receipts: Vec<Receipt>,
    pub diff: StateDiff,
    pub tx_root: Hash,
    pub receipts_root: Hash,
}

/// The modules of a chain and its parameters.
#[derive(Clone)]
pub struct Runtime {
    params: ChainParams,
    modules: BTreeMap<ModuleId, Arc<dyn Module>>,
}

impl Runtime {
    pub fn new(params: ChainParams) -> Runtime {
        let mut modules: BTreeMap<ModuleId, Arc<dyn Module>> = BTreeMap::new();
        modules.insert(ModuleId::CORE, Arc::new(LedgerModule));
        Runtime { params, modules }
    }

    /// Registers another module (storage, market). Ids must be unique.
    pub fn with_module(mut self, module: Arc<dyn Module>) -> Runtime {
        self.modules.insert(module.id(), module);
        self
    }

    pub fn params(&self) -> &ChainParams {
        &self.params
    }

    /// Writes the genesis state into an empty store.
    pub fn init_genesis(&self, store: &mut StateStore, genesis: &Genesis) -> Result<()> {
        genesis.validate()?;
        if genesis.params != self.params {
            return Err(ChainError::InvalidGenesis(
                "genesis parameters differ from the runtime's".into(),
            ));
        }
        if store.head().is_some() {
            if store.genesis_hash()? != Some(genesis.hash()) {
                return Err(ChainError::InvalidGenesis(
                    "the data directory holds another chain".into(),
                ));
            }
            return Ok(());
        }
        let diff = {
            let mut o = Overlay::new(store);
            let mut validators = Vec::new();
            for a in &genesis.accounts {
                let acct = crate::account::Account {
                    balance: a.balance,
                    stake: a.stake,
                    servi: a.servi,
                    reputation: a.reputation,
                    ..Default::default()
                };
                o.put(keys::account(&a.address), codec::encode(&acct));
                if a.stake >= self.params.min_validator_stake {
                    validators.push(a.address);
                }
                if let Some(k) = &a.pvss_key {
                    o.put(beacon::pvss_key_key(&a.address), codec::encode(k));
                    o.put(beacon::pvss_owner_key(k), codec::encode(&a.address));
                }
            }
            validators.sort();
            o.put(K_VALIDATORS.to_vec(), codec::encode(&validators));
            o.put(K_RANDOMNESS.to_vec(), codec::encode(&genesis.randomness));
            o.put(K_FEE_POOL.to_vec(), codec::encode(&0u64));
            let c = committee::elect(&o, &self.params, 0, &[], &genesis.randomness)?;
            let round = self.randomness_round(&o, &c, 1)?;
            o.put(K_COMMITTEE.to_vec(), codec::encode(&c));
            o.put(K_EPOCH_START.to_vec(), codec::encode(&1u64));
            o.put(beacon::K_ROUND.to_vec(), codec::encode(&round));
            store.diff(o.into_writes())?
        };
        store.commit_genesis(genesis.hash(), genesis.time, diff)
    }

    /// Executes `txs` on top of `store`'s committed state for the block `env`.
    pub fn execute(
        &self,
        store: &StateStore,
        env: &BlockEnv,
        txs: Vec<PooledTx>,
        mode: Mode,
    ) -> Result<Executed> {
        let p = &self.params;
        if mode == Mode::Validate {
            if txs.len() > p.max_block_txs as usize {
                return Err(ChainError::InvalidBlock(format!(
                    "{} transactions, limit {}",
                    txs.len(),
                    p.max_block_txs
                )));
            }
            let bytes: usize = txs.iter().map(|t| t.len).sum();
            if bytes > p.max_block_bytes() {
                return Err(ChainError::TooLarge {
                    what: "block",
                    len: bytes,
                    max: p.max_block_bytes(),
                });
            }
        }
        let mut block = Overlay::new(store);
        let mut included = Vec::with_capacity(txs.len());
        let mut receipts = Vec::with_capacity(txs.len());
        let mut fees: Amount = 0;
        let mut bytes = 0usize;
        for ptx in txs {
            if mode == Mode::Propose
                && (included.len() >= p.max_block_txs as usize
                    || bytes + ptx.len > p.max_block_bytes())
            {
                break;
            }
            match self.admit(&mut block, env, &ptx) {
                Ok(fee) => {
                    fees = fees.checked_add(fee).ok_or(ChainError::Overflow)?;
                }
                Err(e) if mode == Mode::Propose => {
                    tracing::debug!(tx = %ptx.id, error = %e, "left out of block");
                    continue;
                }
                Err(e) => {
                    return Err(ChainError::InvalidBlock(format!(
                        "transaction {}: {e}",
                        ptx.id
                    )));
                }
            }
            let receipt = self.run_call(&mut block, env, &ptx);
            receipts.push(receipt);
            bytes += ptx.len;
            included.push(ptx);
        }
        self.end_block(store, &mut block, env, fees)?;
        let diff = store.diff(block.into_writes())?;
        let leaves: Vec<Hash> = included.iter().map(|t| t.leaf).collect();
        Ok(Executed {
            tx_root: crate::hash::merkle_root(&leaves),
            receipts_root: Receipt::root_of(&receipts),
            txs: included,
            receipts,
            diff,
        })
    }

    /// Admission: expiry, nonce, fee. Charges the fee and bumps the nonce.
    fn admit(&self, state: &mut Overlay<'_>, env: &BlockEnv, ptx: &PooledTx) -> Result<Amount> {
        let tx = &ptx.tx.tx;
        if tx.chain_id != env.chain_id {
            return Err(ChainError::WrongChainId {
                expected: env.chain_id.0.clone(),
                got: tx.chain_id.0.clone(),
            });
        }
        // The mempool enforces this too, but a block from a faulty proposer must not bypass it.
        if ptx.len > MAX_TX_BYTES {
            return Err(ChainError::TooLarge {
                what: "transaction",
                len: ptx.len,
                max: MAX_TX_BYTES,
            });
        }
        if tx.expires_at < env.height {
            return Err(ChainError::Expired {
                expires_at: tx.expires_at,
                height: env.height,
            });
        }
        let min = self.params.min_fee_per_byte.saturating_mul(ptx.len as u64);
        if tx.fee < min {
            return Err(ChainError::FeeTooLow { fee: tx.fee, min });
        }
        let key = keys::account(&tx.sender);
        let mut acct: crate::account::Account = match state.read(&key)? {
            Some(b) => codec::decode("account", &b, 1024)?,
            None => Default::default(),
        };
        acct.release_unbonded(env.height)?;
        if acct.nonce != tx.nonce {
            return Err(ChainError::BadNonce {
                expected: acct.nonce,
                got: tx.nonce,
            });
        }
        acct.debit(tx.fee)?;
        acct.nonce += 1;
        state.put(key, codec::encode(&acct));
        Ok(tx.fee)
    }

    fn run_call(&self, block: &mut Overlay<'_>, env: &BlockEnv, ptx: &PooledTx) -> Receipt {
        let tx = &ptx.tx.tx;
        let result = match self.modules.get(&tx.call.module) {
            None => Err(ChainError::UnknownModule(tx.call.module.0)),
            Some(module) => {
                let mut child = Overlay::new(block);
                let outcome = {
                    let mut ctx = CallContext::new(
                        env,
                        &self.params,
                        tx.sender,
                        ptx.id,
                        module.as_ref(),
                        &mut child,
                    );
                    module
                        .execute(&mut ctx, &tx.call.payload)
                        .map(|()| ctx.into_events())
                };
                outcome.map(|events| (events, child.into_writes()))
            }
        };
        match result {
            Ok((events, writes)) => {
                block.merge(writes);
                Receipt {
                    tx: ptx.id,
                    status: ReceiptStatus::Success,
                    fee: tx.fee,
                    events,
                }
            }
            Err(e) => Receipt {
                tx: ptx.id,
                status: ReceiptStatus::Failed {
                    code: e.code().to_string(),
                    message: e.to_string(),
                },
                fee: tx.fee,
                events: Vec::new(),
            },
        }
    }

    /// Block-level rules: missed proposals, fees and Servi of the proposer,
    /// epoch transitions, then every module's end-of-block hook.
    fn end_block(
        &self,
        committed: &StateStore,
        block: &mut Overlay<'_>,
        env: &BlockEnv,
        fees: Amount,
    ) -> Result<()> {
        let p = &self.params;
        let committee: Committee = committee::read(committed, K_COMMITTEE)?
            .ok_or_else(|| ChainError::Storage("no committee in state".into()))?;
        let randomness: Hash = committee::read(committed, K_RANDOMNESS)?.unwrap_or_default();

        // Proposers whose round passed without this block lose reputation.
        let mut missed = Vec::new();
        for r in 0..env.round {
            let who = committee::proposer(
                &committee,
                committed,
                p,
                &randomness,
                env.shard,
                env.height,
                r,
            )?;
            if who != env.proposer && !missed.contains(&who) {
                missed.push(who);
            }
        }
        for who in missed {
            self.update_account(block, &who, |a| {
                a.reputation =
                    (a.reputation as u64 * (PPM - p.missed_proposal_decay as u64) / PPM) as u32;
                Ok(())
            })?;
        }

        // Fees to the proposer; its Servi is spent by this block finalizing.
        self.update_account(block, &env.proposer, |a| {
            a.credit(fees)?;
            a.servi = 0;
            Ok(())
        })?;

        // The randomness round: fix Q when the dealing window closes.
        let mut round: beacon::RandomnessRound = committee::read(block, beacon::K_ROUND)?
            .ok_or_else(|| ChainError::Storage("no randomness round in state".into()))?;
        if let Some(next) = beacon::close_window(block, &round, env.height)? {
            block.put(beacon::K_ROUND.to_vec(), codec::encode(&next));
            round = next;
        }
        // The epoch ends at its nominal length once its randomness is complete.
        let start: Height = committee::read(block, K_EPOCH_START)?.unwrap_or(1);
        if env.height + 1 >= start + p.epoch_length && round.complete() {
            let next_randomness = beacon::output(block, &round)?;
            self.end_epoch(block, env, &committee, &round, next_randomness)?;
        }

        for module in self.modules.values() {
            if module.id() == ModuleId::CORE {
                continue;
            }
            let mut child = Overlay::new(block);
            {
                let mut ctx = CallContext::new(
                    env,
                    p,
                    env.proposer,
                    Hash::ZERO,
                    module.as_ref(),
                    &mut child,
                );
                module.end_block(&mut ctx)?;
            }
            let writes = child.into_writes();
            block.merge(writes);
        }
        Ok(())
    }

    /// Epoch transition: the fee pool to the committee, R_{e+1} in place,
    /// the next committee (TransEpoch) and its randomness round.
    fn end_epoch(
        &self,
        block: &mut Overlay<'_>,
        env: &BlockEnv,
        committee: &Committee,
        round: &beacon::RandomnessRound,
        randomness: Hash,
    ) -> Result<()> {
        let p = &self.params;
        let next_epoch = env.epoch + 1;
        // The shard's fee pool (commissions, slashed stake) is shared by the committee.
        let pool: Amount = committee::read(block, K_FEE_POOL)?.unwrap_or(0);
        // Members proven to have equivocated get no share.
        let mut paid = Vec::new();
        for m in &committee.members {
            if !committee::read_account(block, m)?.jailed {
                paid.push(*m);
            }
        }
        let n = paid.len() as u64;
        if n > 0 && pool >= n {
            let share = pool / n;
            for m in &paid {
                self.update_account(block, m, |a| a.credit(share))?;
            }
            block.put(K_FEE_POOL.to_vec(), codec::encode(&(pool - share * n)));
        }
        // The finished round's pieces stay in the blocks; state keeps only the record.
        for m in &round.members {
            block.delete(beacon::dealing_key(m));
            block.delete(beacon::reveal_key(m));
        }
        block.put(K_RANDOMNESS.to_vec(), codec::encode(&randomness));
        block.put(
            beacon::K_LAST_ROUND.to_vec(),
            codec::encode(&(round, randomness)),
        );
        let mut c = committee::elect(block, p, next_epoch, &committee.members, &randomness)?;
        if c.members.is_empty() {
            // Nobody is eligible (all unstaked or jailed): the old committee
            // carries on rather than halting the shard for good.
            tracing::warn!(
                epoch = next_epoch,
                "no eligible validators; committee carries over"
            );
            c = Committee {
                epoch: next_epoch,
                ..committee.clone()
            };
        }
        let next_round = self.randomness_round(block, &c, env.height + 1)?;
        block.put(K_COMMITTEE.to_vec(), codec::encode(&c));
        block.put(K_EPOCH_START.to_vec(), codec::encode(&(env.height + 1)));
        block.put(beacon::K_ROUND.to_vec(), codec::encode(&next_round));
        Ok(())
    }

    /// The randomness round the committee runs in its epoch, starting at `start`.
    fn randomness_round(
        &self,
        state: &dyn StateRead,
        c: &Committee,
        start: Height,
    ) -> Result<beacon::RandomnessRound> {
        let mut members = Vec::with_capacity(c.members.len());
        for m in &c.members {
            // Members without a key (a carried-over committee) take no part.
            if let Some(k) = committee::read(state, &beacon::pvss_key_key(m))? {
                members.push((*m, k));
            }
        }
        Ok(beacon::RandomnessRound::new(
            c.epoch,
            members,
            start,
            self.params.dealing_window,
        ))
    }

    fn update_account(
        &self,
        state: &mut Overlay<'_>,
        a: &Address,
        f: impl FnOnce(&mut crate::account::Account) -> Result<()>,
    ) -> Result<()> {
        let key = keys::account(a);
        let mut acct: crate::account::Account = match state.read(&key)? {
            Some(b) => codec::decode("account", &b, 1024)?,
            None => Default::default(),
        };
        f(&mut acct)?;
        state.put(key, codec::encode(&acct));
        Ok(())
    }
}

/// Sum of all IOST in a shard's state: every account's balance, stake and
/// unbonding, plus the fee pool. Conserved by every block.
pub fn total_supply(store: &StateStore) -> Result<Amount> {
    let mut total: Amount = committee::read(store, K_FEE_POOL)?.unwrap_or(0);
    for (_, v) in store.scan(keys::ACCOUNT_PREFIX)? {
        let acct: crate::account::Account = codec::decode("account", &v, 1024)?;
        total = total
            .checked_add(acct.total_iost()?)
            .ok_or(ChainError::Overflow)?;
    }
    Ok(total)
}
