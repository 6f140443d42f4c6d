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
use crate::light_client;
use crate::light_client::CertCache;
use crate::module::{keys, BlockEnv, CallContext, Module, Modules};
use crate::params::{ChainParams, Genesis};
use crate::shard::BEACON;
use crate::state::{Overlay, StateDiff, StateRead, StateStore};
use crate::tx::{ModuleId, PooledTx, MAX_TX_BYTES};
use crate::types::{Amount, Height, ShardId, PPM};
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
    shard: ShardId,
    modules: Modules,
    /// This node's memo of verified certificates (shared with the core module).
    certs: CertCache,
}

impl Runtime {
    /// The beacon's runtime (the whole chain when `params.shards == 0`).
    pub fn new(params: ChainParams) -> Runtime {
        Runtime::for_shard(params, BEACON)
    }

    /// The runtime of one shard of the network.
    pub fn for_shard(params: ChainParams, shard: ShardId) -> Runtime {
        let certs = CertCache::default();
        let mut modules: BTreeMap<ModuleId, Arc<dyn Module>> = BTreeMap::new();
        modules.insert(ModuleId::CORE, Arc::new(LedgerModule::new(certs.clone())));
        Runtime {
            params,
            shard,
            modules,
            certs,
        }
    }

    pub fn shard(&self) -> ShardId {
        self.shard
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
        if self.shard > self.params.shards {
            return Err(ChainError::InvalidGenesis(format!(
                "shard {} does not exist: the network has the beacon and {} account shards",
                self.shard, self.params.shards
            )));
        }
        let diff = {
            let mut o = Overlay::new(store);
            let mut validators = Vec::new();
            for a in genesis
                .accounts
                .iter()
                .filter(|a| genesis.shard_of(a) == self.shard)
            {
                o.put(keys::account(&a.address), codec::encode(&a.account()));
                if a.stake >= self.params.min_validator_stake {
                    validators.push(a.address);
                }
                if let Some(k) = &a.pvss_key {
                    o.put(beacon::pvss_key_key(&a.address), codec::encode(k));
                    o.put(beacon::pvss_owner_key(k), codec::encode(&a.address));
                }
            }
            let epoch0 = genesis.epoch_zero();
            let c = epoch0.committee(self.shard)?.clone();
            if self.shard == BEACON {
                validators.sort();
                o.put(K_VALIDATORS.to_vec(), codec::encode(&validators));
                let round = self.randomness_round(&o, &c, 1)?;
                o.put(K_EPOCH_START.to_vec(), codec::encode(&1u64));
                o.put(beacon::K_ROUND.to_vec(), codec::encode(&round));
            }
            o.put(K_RANDOMNESS.to_vec(), codec::encode(&genesis.randomness));
            o.put(K_FEE_POOL.to_vec(), codec::encode(&0u64));
            o.put(K_COMMITTEE.to_vec(), codec::encode(&c));
            o.put(light_client::epoch_key(0), codec::encode(&epoch0));
            o.put(light_client::K_LATEST_EPOCH.to_vec(), codec::encode(&0u64));
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
            let admitted = if is_relay(&ptx) {
                self.apply_relay(&mut block, env, &ptx)
            } else {
                match self.admit(&mut block, env, &ptx) {
                    Ok(fee) => {
                        fees = fees.checked_add(fee).ok_or(ChainError::Overflow)?;
                        Ok(self.run_call(&mut block, env, &ptx))
                    }
                    Err(e) => Err(e),
                }
            };
            let receipt = match admitted {
                Ok(receipt) => receipt,
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
            };
            receipts.push(receipt);
            bytes += ptx.len;
            included.push(ptx);
        }
        let events = self.end_block(store, &mut block, env, fees)?;
        if !events.is_empty() {
            // The block-level hooks' events (a module's deadlines settling,
            // a refund sent across shards) get a receipt of their own after
            // the transactions' ones, so they are provable like any other.
            receipts.push(Receipt {
                tx: Hash::ZERO,
                status: ReceiptStatus::Success,
                fee: 0,
                events,
            });
        }
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

    /// What every transaction in a block must meet: this chain, the size
    /// limit, not expired.
    fn check_envelope(env: &BlockEnv, ptx: &PooledTx) -> Result<()> {
        let tx = &ptx.tx.tx;
        if tx.chain_id != env.chain_id {
            return Err(ChainError::WrongChainId {
                expected: env.chain_id.0.clone(),
                got: tx.chain_id.0.clone(),
            });
        }
        if tx.shard != env.shard {
            return Err(ChainError::WrongShard {
                expected: env.shard,
                got: tx.shard,
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
        Ok(())
    }

    /// Admission: expiry, nonce, fee. Charges the fee and bumps the nonce.
    fn admit(&self, state: &mut Overlay<'_>, env: &BlockEnv, ptx: &PooledTx) -> Result<Amount> {
        Self::check_envelope(env, ptx)?;
        let tx = &ptx.tx.tx;
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

    /// Runs the transaction's call in a child overlay of `block`: its events
    /// and writes, or why it failed (the writes are then dropped).
    fn call(
        &self,
        block: &Overlay<'_>,
        env: &BlockEnv,
        ptx: &PooledTx,
    ) -> Result<(Vec<crate::block::Event>, crate::state::WriteSet)> {
        let tx = &ptx.tx.tx;
        let module = self
            .modules
            .get(&tx.call.module)
            .ok_or(ChainError::UnknownModule(tx.call.module.0))?;
        let mut child = Overlay::new(block);
        let events = {
            let mut ctx = CallContext::new(
                env,
                &self.params,
                tx.sender,
                ptx.id,
                module.as_ref(),
                &mut child,
            )
            .with_modules(&self.modules);
            module.execute(&mut ctx, &tx.call.payload)?;
            ctx.into_events()
        };
        Ok((events, child.into_writes()))
    }

    fn run_call(&self, block: &mut Overlay<'_>, env: &BlockEnv, ptx: &PooledTx) -> Receipt {
        let fee = ptx.tx.tx.fee;
        match self.call(block, env, ptx) {
            Ok((events, writes)) => {
                block.merge(writes);
                Receipt {
                    tx: ptx.id,
                    status: ReceiptStatus::Success,
                    fee,
                    events,
                }
            }
            Err(e) => Receipt {
                tx: ptx.id,
                status: ReceiptStatus::Failed {
                    code: e.code().to_string(),
                    message: e.to_string(),
                },
                fee,
                events: Vec::new(),
            },
        }
    }

    /// A relay transaction (see [`is_relay`]) carries a proof that pays for
    /// itself by being useful: no fee and no nonce, but it is included only if
    /// its call succeeds, so a free call never leaves a failed receipt behind
    /// (after Polkadot's unsigned, self-validating extrinsics). Replays fail
    /// because the state it proves is already applied.
    fn apply_relay(
        &self,
        block: &mut Overlay<'_>,
        env: &BlockEnv,
        ptx: &PooledTx,
    ) -> Result<Receipt> {
        Self::check_envelope(env, ptx)?;
        if ptx.tx.tx.fee != 0 {
            return Err(ChainError::Relay(
                "a relay transaction pays no fee; set fee to 0".into(),
            ));
        }
        let (events, writes) = self.call(block, env, ptx)?;
        block.merge(writes);
        Ok(Receipt {
            tx: ptx.id,
            status: ReceiptStatus::Success,
            fee: 0,
            events,
        })
    }

    /// The checks of a relay transaction that need no execution: its
    /// envelope, and that every proof it carries verifies against this
    /// shard's light client (certificates, Merkle paths, epoch changes).
    /// Replicas admit relays gossiped by peers with this; whether the steps
    /// still apply is checked when a proposer builds a block (a stale one
    /// is left out) and when the pool is re-checked.
    pub fn check_relay_proofs(
        &self,
        store: &StateStore,
        env: &BlockEnv,
        ptx: &PooledTx,
    ) -> Result<()> {
        Self::check_envelope(env, ptx)?;
        if ptx.tx.tx.fee != 0 {
            return Err(ChainError::Relay(
                "a relay transaction pays no fee; set fee to 0".into(),
            ));
        }
        let call: crate::ledger::LedgerCall = crate::codec::decode(
            "ledger call",
            &ptx.tx.tx.call.payload,
            crate::ledger::MAX_LEDGER_CALL,
        )?;
        crate::ledger::check_relay_proofs(
            store,
            &env.chain_id,
            self.params.shards,
            &call,
            &self.certs,
        )
    }

    /// Whether `ptx`, a relay transaction, would apply on top of `store`'s
    /// committed state in a block `env`: the pool admits only those.
    pub fn check_relay(&self, store: &StateStore, env: &BlockEnv, ptx: &PooledTx) -> Result<()> {
        let mut block = Overlay::new(store);
        self.apply_relay(&mut block, env, ptx).map(|_| ())
    }

    /// Block-level rules: missed proposals, fees and Servi of the proposer,
    /// epoch transitions, then every module's end-of-block hook, whose
    /// events it returns.
    fn end_block(
        &self,
        committed: &StateStore,
        block: &mut Overlay<'_>,
        env: &BlockEnv,
        fees: Amount,
    ) -> Result<Vec<crate::block::Event>> {
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

        if self.shard == BEACON {
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
                self.end_beacon_epoch(block, env, &committee, &round, next_randomness)?;
            }
        } else if light_client::latest_epoch(block)? > committee.epoch {
            // An account shard moves one epoch per block, as the beacon
            // decided (learned through an `EpochChange` in this or an earlier block).
            let info = light_client::read_epoch(block, committee.epoch + 1)?.ok_or_else(|| {
                ChainError::Storage(format!("epoch {} info missing", committee.epoch + 1))
            })?;
            self.share_fee_pool(block, &committee)?;
            block.put(K_RANDOMNESS.to_vec(), codec::encode(&info.randomness));
            block.put(
                K_COMMITTEE.to_vec(),
                codec::encode(info.committee(self.shard)?),
            );
        }

        let mut events = Vec::new();
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
                )
                .with_modules(&self.modules);
                module.end_block(&mut ctx)?;
                events.extend(ctx.into_events());
            }
            let writes = child.into_writes();
            block.merge(writes);
        }
        Ok(events)
    }

    /// The fee pool (commissions, slashed stake) shared by the members of
    /// the ending epoch's committee that are not jailed.
    fn share_fee_pool(&self, block: &mut Overlay<'_>, committee: &Committee) -> Result<()> {
        let pool: Amount = committee::read(block, K_FEE_POOL)?.unwrap_or(0);
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
        Ok(())
    }

    /// The beacon's epoch transition: the fee pool to the committee,
    /// R_{e+1} in place, every shard's next committee (TransEpoch) recorded as
    /// `EpochInfo(e+1)` for the shards to follow, and the next randomness round.
    fn end_beacon_epoch(
        &self,
        block: &mut Overlay<'_>,
        env: &BlockEnv,
        committee: &Committee,
        round: &beacon::RandomnessRound,
        randomness: Hash,
    ) -> Result<()> {
        let p = &self.params;
        let next_epoch = env.epoch + 1;
        self.share_fee_pool(block, committee)?;
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
        let current = light_client::read_epoch(block, env.epoch)?
            .ok_or_else(|| ChainError::Storage(format!("epoch {} info missing", env.epoch)))?;
        let mut committees =
            committee::elect_all(block, p, next_epoch, &current.committees, &randomness)?;
        for (shard, c) in committees.iter_mut().enumerate() {
            if c.members.is_empty() {
                // Nobody is eligible (all unstaked or jailed): the old committee
                // carries on rather than halting the shard for good.
                tracing::warn!(
                    epoch = next_epoch,
                    shard,
                    "no eligible validators; committee carries over"
                );
                *c = Committee {
                    epoch: next_epoch,
                    ..current
                        .committees
                        .get(shard)
                        .cloned()
                        .unwrap_or_else(|| committee.clone())
                };
            }
        }
        let info = light_client::EpochInfo {
            epoch: next_epoch,
            randomness,
            committees,
        };
        let own = info.committee(BEACON)?.clone();
        let next_round = self.randomness_round(block, &own, env.height + 1)?;
        block.put(K_COMMITTEE.to_vec(), codec::encode(&own));
        block.put(light_client::epoch_key(next_epoch), codec::encode(&info));
        block.put(
            light_client::K_LATEST_EPOCH.to_vec(),
            codec::encode(&next_epoch),
        );
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

/// Whether a transaction is a relay transaction: a core call that carries
/// a proof (an epoch change) and is valid only if it applies.
pub fn is_relay(ptx: &PooledTx) -> bool {
    let call = &ptx.tx.tx.call;
    call.module == ModuleId::CORE && crate::ledger::LedgerCall::is_relay_payload(&call.payload)
}

/// Sum of all IOST in a shard's state: every account's balance, stake and
/// unbonding, the fee pool and the Atomix locks. Conserved by every block
/// of a shard without cross-shard transfers; across shards, conserved up to
/// the transfers committed on their output shard whose inputs are not yet
/// released.
pub fn total_supply(store: &StateStore) -> Result<Amount> {
    let mut total: Amount = committee::read::<Amount>(store, K_FEE_POOL)?
        .unwrap_or(0)
        .checked_add(crate::atomix::locked(store)?)
        .ok_or(ChainError::Overflow)?;
    for (_, v) in store.scan(keys::HELD_PREFIX)? {
        let held: Amount = codec::decode("module custody", &v, 16)?;
        total = total.checked_add(held).ok_or(ChainError::Overflow)?;
    }
    for (_, v) in store.scan(keys::ACCOUNT_PREFIX)? {
        let acct: crate::account::Account = codec::decode("account", &v, 1024)?;
        total = total
            .checked_add(acct.total_iost()?)
            .ok_or(ChainError::Overflow)?;
    }
    Ok(total)
}
