//! The module boundary. `chain` knows nothing of storage or market, yet their
//! calls are transactions: each registers a `Module` that executes its own
//! borsh-encoded calls against a state view, under its own key prefix.

use crate::account::Account;
use crate::block::Event;
use crate::codec;
use crate::crypto::Address;
use crate::error::{ChainError, Result};
use crate::hash::Hash;
use crate::params::ChainParams;
use crate::state::{Overlay, StateRead};
use crate::tx::ModuleId;
use crate::types::{Amount, ChainId, Epoch, Height, Round, ShardId, TimeMs};
use borsh::{BorshDeserialize, BorshSerialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The modules a runtime executes, by id.
pub type Modules = BTreeMap<ModuleId, Arc<dyn Module>>;

/// Bound on a single decoded state value.
pub const MAX_STATE_VALUE: usize = 16 * 1024 * 1024;

/// Facts about the block being executed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockEnv {
    pub chain_id: ChainId,
    pub shard: ShardId,
    pub height: Height,
    pub epoch: Epoch,
    pub round: Round,
    pub time: TimeMs,
    pub proposer: Address,
    pub prev: Hash,
}

/// State keys shared by all modules.
pub mod keys {
    use crate::crypto::Address;

    pub const ACCOUNT_PREFIX: &[u8] = b"acct/";
    /// IOST a module holds in custody (escrows, stakes): `core/held/<module id BE>`.
    pub const HELD_PREFIX: &[u8] = b"core/held/";

    pub fn held(module: crate::tx::ModuleId) -> Vec<u8> {
        let mut k = HELD_PREFIX.to_vec();
        k.extend_from_slice(&module.0.to_be_bytes());
        k
    }

    pub fn account(a: &Address) -> Vec<u8> {
        let mut k = ACCOUNT_PREFIX.to_vec();
        k.extend_from_slice(&a.0);
        k
    }
}

/// A module's window on state while it executes one call (or its end-of-block hook).
pub struct CallContext<'a, 'b> {
    pub env: &'a BlockEnv,
    pub params: &'a ChainParams,
    /// The transaction's sender; the block proposer in `end_block`.
    pub sender: Address,
    pub tx_id: Hash,
    module: ModuleId,
    prefix: &'static str,
    state: &'a mut Overlay<'b>,
    events: Vec<Event>,
    /// Every module of the runtime, for the calls a cross-shard transfer
    /// carries (see [`CallContext::call_as`]).
    modules: Option<&'a Modules>,
}

impl<'a, 'b> CallContext<'a, 'b> {
    pub fn new(
        env: &'a BlockEnv,
        params: &'a ChainParams,
        sender: Address,
        tx_id: Hash,
        module: &dyn Module,
        state: &'a mut Overlay<'b>,
    ) -> Self {
        CallContext {
            env,
            params,
            sender,
            tx_id,
            module: module.id(),
            prefix: module.name(),
            state,
            events: Vec::new(),
            modules: None,
        }
    }

    /// Lets this call run other modules' calls ([`CallContext::call_as`]).
    pub fn with_modules(mut self, modules: &'a Modules) -> Self {
        self.modules = Some(modules);
        self
    }

    /// Runs `call`, a module's call, as `sender` on a child of this call's
    /// state, with `id` as its transaction id: its writes and events are
    /// kept if it succeeds and dropped if it fails. This is how the output
    /// shard of a cross-shard transfer runs the call the transfer carries
    /// (`atomix::commit`, with the transfer's id); the ledger's own calls
    /// cannot be run this way.
    pub fn call_as(&mut self, sender: Address, id: Hash, call: &crate::tx::Call) -> Result<()> {
        let module = self
            .modules
            .and_then(|m| m.get(&call.module))
            .filter(|_| call.module != ModuleId::CORE)
            .ok_or(ChainError::UnknownModule(call.module.0))?
            .clone();
        let runs_as = (module.id(), module.name(), sender, id);
        self.child(runs_as, |c| module.execute(c, &call.payload))
    }

    /// The module this call runs as.
    pub fn module(&self) -> ModuleId {
        self.module
    }

    /// Reads any key (modules may read each other's state, never write it).
    pub fn get<T: BorshDeserialize>(&self, key: &[u8]) -> Result<Option<T>> {
        match self.state.read(key)? {
            Some(b) => Ok(Some(codec::decode("state value", &b, MAX_STATE_VALUE)?)),
            None => Ok(None),
        }
    }

    /// The state as this call sees it (for pure checks that take a `StateRead`).
    pub fn state(&self) -> &dyn StateRead {
        &*self.state
    }

    fn check_owned(&self, key: &[u8]) -> Result<()> {
        let p = self.prefix.as_bytes();
        if key.len() > p.len() && key.starts_with(p) && key[p.len()] == b'/' {
            Ok(())
        } else {
            Err(ChainError::ForeignKey {
                module: self.prefix,
            })
        }
    }

    /// Writes a key under this module's own prefix `"<name>/"`.
    pub fn put<T: BorshSerialize>(&mut self, key: &[u8], value: &T) -> Result<()> {
        self.check_owned(key)?;
        self.state.put(key.to_vec(), codec::encode(value));
        Ok(())
    }

    pub fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.check_owned(key)?;
        self.state.delete(key.to_vec());
        Ok(())
    }

    /// The account at `a` (a fresh default account if it never held anything).
    pub fn account(&self, a: &Address) -> Result<Account> {
        Ok(self.get(&keys::account(a))?.unwrap_or_default())
    }

    /// Accounts are shared by all modules; the ledger rules (checked
    /// arithmetic, non-transferable Servi) are enforced by `Account`'s methods.
    pub fn set_account(&mut self, a: &Address, account: &Account) {
        self.state.put(keys::account(a), codec::encode(account));
    }

    /// IOST this module holds in custody.
    pub fn held(&self) -> Result<Amount> {
        Ok(self.get(&keys::held(self.module))?.unwrap_or(0))
    }

    /// Moves `amount` of `from`'s balance into this module's custody (an
    /// escrow, a stake). Supply counts custody, so IOST stays conserved.
    pub fn hold(&mut self, from: &Address, amount: Amount) -> Result<()> {
        let mut a = self.account(from)?;
        a.debit(amount)?;
        let held = self
            .held()?
            .checked_add(amount)
            .ok_or(ChainError::Overflow)?;
        self.set_account(from, &a);
        self.state
            .put(keys::held(self.module), codec::encode(&held));
        Ok(())
    }

    /// What this module's custody keeps once `amount` leaves it.
    pub(crate) fn held_after(&self, amount: Amount) -> Result<Amount> {
        let held = self.held()?;
        held.checked_sub(amount)
            .ok_or(ChainError::InsufficientFunds {
                need: amount,
                have: held,
            })
    }

    /// Pays `amount` out of this module's custody to `to`'s balance.
    pub fn release(&mut self, to: &Address, amount: Amount) -> Result<()> {
        let left = self.held_after(amount)?;
        let mut a = self.account(to)?;
        a.credit(amount)?;
        self.set_account(to, &a);
        self.state
            .put(keys::held(self.module), codec::encode(&left));
        Ok(())
    }

    /// Sends `amount` out of this module's custody to `to`'s account on
    /// `shard` through Atomix (a refund to a buyer on another shard): the
    /// amount is locked here at once, and relayers carry the transfer to
    /// its output shard like any other. Returns the transfer's id.
    pub fn send_across(
        &mut self,
        shard: ShardId,
        to: Address,
        amount: Amount,
        salt: u64,
    ) -> Result<Hash> {
        crate::atomix::send_from_custody(self, shard, to, amount, salt)
    }

    /// Sets the custody of `module` (the Atomix steps that lock or refund it).
    pub(crate) fn set_held(&mut self, module: ModuleId, amount: Amount) {
        self.state.put(keys::held(module), codec::encode(&amount));
    }

    /// Writes a core key on behalf of a chain-level step run from another
    /// module's call (an Atomix lock of that module's custody).
    pub(crate) fn put_core<T: BorshSerialize>(&mut self, key: &[u8], value: &T) {
        debug_assert!(key.starts_with(b"core/"));
        self.state.put(key.to_vec(), codec::encode(value));
    }

    /// An event of the ledger (module 0), whichever module runs.
    pub(crate) fn emit_core<T: BorshSerialize>(&mut self, kind: &str, data: &T) {
        self.events.push(Event {
            module: ModuleId::CORE.0,
            kind: kind.to_string(),
            data: codec::encode(data),
        });
    }

    /// Pays `amount` out of this module's custody into the fee pool (a
    /// commission), which validators share as they share transaction fees.
    pub fn release_to_fee_pool(&mut self, amount: Amount) -> Result<()> {
        let left = self.held_after(amount)?;
        let pool: Amount = self.get(crate::committee::K_FEE_POOL)?.unwrap_or(0);
        let pool = pool.checked_add(amount).ok_or(ChainError::Overflow)?;
        self.state
            .put(crate::committee::K_FEE_POOL.to_vec(), codec::encode(&pool));
        self.state
            .put(keys::held(self.module), codec::encode(&left));
        Ok(())
    }

    pub fn emit<T: BorshSerialize>(&mut self, kind: &str, data: &T) {
        self.events.push(Event {
            module: self.module.0,
            kind: kind.to_string(),
            data: codec::encode(data),
        });
    }

    /// Runs `f` on a child of this call's state: its writes and events are
    /// kept if it succeeds and dropped if it fails (one step of a batch).
    pub fn nested<R>(
        &mut self,
        f: impl FnOnce(&mut CallContext<'_, '_>) -> Result<R>,
    ) -> Result<R> {
        let runs_as = (self.module, self.prefix, self.sender, self.tx_id);
        self.child(runs_as, f)
    }

    /// Runs `f` on a child state as `(module, prefix, sender, tx_id)`,
    /// keeping its writes and events only if it succeeds.
    fn child<R>(
        &mut self,
        (module, prefix, sender, tx_id): (ModuleId, &'static str, Address, Hash),
        f: impl FnOnce(&mut CallContext<'_, '_>) -> Result<R>,
    ) -> Result<R> {
        let mut child = Overlay::new(&*self.state);
        let (result, events) = {
            let mut c = CallContext {
                env: self.env,
                params: self.params,
                sender,
                tx_id,
                module,
                prefix,
                state: &mut child,
                events: Vec::new(),
                modules: self.modules,
            };
            let result = f(&mut c);
            (result, c.events)
        };
        if result.is_ok() {
            let writes = child.into_writes();
            self.state.merge(writes);
            self.events.extend(events);
        }
        result
    }

    pub fn into_events(self) -> Vec<Event> {
        self.events
    }
}

/// A state-machine module. Implementations must be deterministic: no clock,
/// no randomness beyond `env`, no floating point, no IO besides the context.
pub trait Module: Send + Sync {
    fn id(&self) -> ModuleId;
    /// Also the state key prefix this module owns (`"<name>/..."`).
    fn name(&self) -> &'static str;
    /// Executes one call. An `Err` discards the call's writes; the fee is still paid.
    fn execute(&self, ctx: &mut CallContext<'_, '_>, payload: &[u8]) -> Result<()>;
    /// Runs after the block's transactions, before the state root is computed.
    fn end_block(&self, _ctx: &mut CallContext<'_, '_>) -> Result<()> {
        Ok(())
    }
}
