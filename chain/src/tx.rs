//! Transactions: the signed envelope every state change arrives in, and the
//! call envelope that routes it to a module.

use crate::codec;
use crate::crypto::{Address, Keypair, Signature};
use crate::error::{ChainError, Result};
use crate::hash::{hash_value, tag, Hash};
use crate::types::{Amount, ChainId, Height, ShardId};
use borsh::{BorshDeserialize, BorshSerialize};
use std::sync::Arc;

/// Largest encoded signed transaction accepted anywhere.
pub const MAX_TX_BYTES: usize = 64 * 1024;

/// Which module executes a call. `chain` owns 0; storage and market register theirs.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub struct ModuleId(pub u16);

impl ModuleId {
    pub const CORE: ModuleId = ModuleId(0);
}

/// A module id plus that module's own borsh-encoded call.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Call {
    pub module: ModuleId,
    pub payload: Vec<u8>,
}

/// The signed part of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Transaction {
    pub chain_id: ChainId,
    /// The shard that may execute it. Accounts are per shard (an address
    /// may hold IOST on several, funded through Atomix), and their nonces
    /// advance independently, so the shard is signed too: a transaction
    /// signed for one shard can never be replayed on another.
    pub shard: ShardId,
    pub sender: Address,
    pub nonce: u64,
    pub fee: Amount,
    /// Last block height at which the transaction may be included.
    pub expires_at: Height,
    pub call: Call,
}

impl Transaction {
    /// The digest that is signed; also the transaction's id.
    pub fn signing_hash(&self) -> Hash {
        hash_value(tag::TX, self)
    }

    pub fn sign(self, key: &Keypair) -> SignedTransaction {
        let signature = key.sign(&self.signing_hash());
        SignedTransaction {
            tx: self,
            signature,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SignedTransaction {
    pub tx: Transaction,
    pub signature: Signature,
}

impl SignedTransaction {
    pub fn id(&self) -> Hash {
        self.tx.signing_hash()
    }

    /// Hash of the whole signed encoding: what a block's `tx_root` commits
    /// to, so a block hash pins every signature byte, not just the ids.
    pub fn leaf_hash(&self) -> Hash {
        crate::hash::hash_tagged(tag::TX_LEAF, &codec::encode(self))
    }

    pub fn verify_signature(&self) -> Result<()> {
        self.tx
            .sender
            .verify(&self.tx.signing_hash(), &self.signature, "transaction")
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<SignedTransaction> {
        codec::decode("transaction", bytes, MAX_TX_BYTES)
    }

    /// Stateless checks: chain id, size, signature. State checks (nonce, funds)
    /// happen at execution.
    pub fn check_stateless(&self, chain_id: &ChainId, shard: ShardId) -> Result<()> {
        if &self.tx.chain_id != chain_id {
            return Err(ChainError::WrongChainId {
                expected: chain_id.0.clone(),
                got: self.tx.chain_id.0.clone(),
            });
        }
        if self.tx.shard != shard {
            return Err(ChainError::WrongShard {
                expected: shard,
                got: self.tx.shard,
            });
        }
        let len = codec::encode(self).len();
        if len > MAX_TX_BYTES {
            return Err(ChainError::TooLarge {
                what: "transaction",
                len,
                max: MAX_TX_BYTES,
            });
        }
        self.verify_signature()
    }
}

/// A transaction with its id and size computed once; shared cheaply.
#[derive(Clone, Debug)]
pub struct PooledTx {
    pub tx: Arc<SignedTransaction>,
    pub id: Hash,
    /// `SignedTransaction::leaf_hash`.
    pub leaf: Hash,
    pub len: usize,
}

impl PooledTx {
    pub fn new(tx: SignedTransaction) -> PooledTx {
        // One encoding serves both: the id hashes the body, and a signed
        // transaction encodes as its body followed by the 64 signature bytes.
        let body = codec::encode(&tx.tx);
        let id = crate::hash::hash_tagged(tag::TX, &body);
        let mut leaf = crate::hash::DomainHasher::new(tag::TX_LEAF);
        leaf.update(&body).update(&tx.signature.0);
        let len = body.len() + 64;
        PooledTx {
            tx: Arc::new(tx),
            id,
            leaf: leaf.finalize(),
            len,
        }
    }
}

impl crate::mempool::PoolTx for PooledTx {
    type Id = Hash;
    type Sender = Address;
    fn id(&self) -> Hash {
        self.id
    }
    fn sender(&self) -> Address {
        self.tx.tx.sender
    }
    fn nonce(&self) -> u64 {
        self.tx.tx.nonce
    }
    fn fee(&self) -> u64 {
        self.tx.tx.fee
    }
    fn encoded_len(&self) -> usize {
        self.len
    }
    fn expires_at(&self) -> u64 {
        self.tx.tx.expires_at
    }
}
