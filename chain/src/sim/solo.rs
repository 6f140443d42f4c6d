//! One validator proposing and committing its own blocks in virtual time,
//! with no network: how module tests run a real chain (the replica, the
//! runtime with its modules, state on disk) without the simulator's
//! faults. Every block is checked to conserve IOST.

use crate::block::{Receipt, ReceiptStatus};
use crate::crypto::Keypair;
use crate::error::{ChainError, Result};
use crate::execute::{total_supply, Runtime};
use crate::hash::Hash;
use crate::params::Genesis;
use crate::replica::{Output, Replica, ReplicaConfig};
use crate::tx::{Call, SignedTransaction, Transaction};
use crate::types::{Amount, Height, TimeMs};
use std::collections::BTreeMap;

/// Blocks a transaction may wait for inclusion in [`SoloChain::run`].
const INCLUDE_WITHIN: usize = 10;

pub struct SoloChain {
    pub replica: Replica,
    pub genesis: Genesis,
    now: TimeMs,
    nonces: BTreeMap<[u8; 32], u64>,
    supply: Amount,
}

impl SoloChain {
    /// The chain of `genesis` on `db`, run by `validator` with `runtime`.
    pub fn open(
        db: &sled::Db,
        validator: Keypair,
        runtime: Runtime,
        genesis: Genesis,
    ) -> Result<SoloChain> {
        let replica = Replica::open(
            db,
            validator,
            runtime,
            &genesis,
            ReplicaConfig::default(),
            0,
        )?;
        let supply = genesis.total_supply()?;
        Ok(SoloChain {
            replica,
            genesis,
            now: 0,
            nonces: BTreeMap::new(),
            supply,
        })
    }

    /// Virtual time now.
    pub fn now(&self) -> TimeMs {
        self.now
    }

    /// The height the next block will have.
    pub fn height(&self) -> Height {
        self.replica.height()
    }

    /// Commits one block; returns its receipts. An error if no block was
    /// committed or the block did not conserve IOST.
    pub fn block(&mut self) -> Result<Vec<Receipt>> {
        let start = self.replica.height();
        for _ in 0..200 {
            self.now = self.now.max(self.replica.next_deadline());
            for out in self.replica.tick(self.now)? {
                if let Output::Committed(cb) = out {
                    let supply = total_supply(self.replica.store())?;
                    if supply != self.supply {
                        return Err(ChainError::Storage(format!(
                            "block {start} changed the IOST supply from {} to {supply}",
                            self.supply
                        )));
                    }
                    return Ok(cb.receipts.clone());
                }
            }
        }
        Err(ChainError::Storage(format!("no commit of height {start}")))
    }

    /// Commits blocks until the next block's height is past `height`.
    pub fn until(&mut self, height: Height) -> Result<()> {
        while self.replica.height() <= height {
            self.block()?;
        }
        Ok(())
    }

    /// `call` signed by `key` at its next nonce (counted here), paying `fee`.
    pub fn sign(&mut self, key: &Keypair, call: Call, fee: Amount) -> SignedTransaction {
        let n = self.nonces.entry(key.address().0).or_insert(0);
        let tx = Transaction {
            chain_id: self.genesis.params.chain_id.clone(),
            shard: self.replica.runtime().shard(),
            sender: key.address(),
            nonce: *n,
            fee,
            expires_at: u64::MAX,
            call,
        }
        .sign(key);
        *n += 1;
        tx
    }

    /// Submits the transactions and commits blocks until every one is in a
    /// block; returns each one's id and status, in order.
    pub fn run(&mut self, txs: Vec<SignedTransaction>) -> Result<Vec<(Hash, ReceiptStatus)>> {
        let ids: Vec<Hash> = txs.iter().map(|t| t.id()).collect();
        let (results, _) = self.replica.submit(txs, self.now);
        if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
            return Err(e);
        }
        let mut got: BTreeMap<Hash, ReceiptStatus> = BTreeMap::new();
        for _ in 0..INCLUDE_WITHIN {
            for r in self.block()? {
                got.insert(r.tx, r.status);
            }
            if ids.iter().all(|i| got.contains_key(i)) {
                return Ok(ids.iter().map(|i| (*i, got[i].clone())).collect());
            }
        }
        Err(ChainError::Storage(format!(
            "transactions not included within {INCLUDE_WITHIN} blocks"
        )))
    }
}
