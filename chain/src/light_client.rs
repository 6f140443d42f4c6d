//! The beacon light client every shard runs. The beacon (shard 0) decides each
//! epoch's committees for all shards; every shard keeps the [`EpochInfo`] of
//! every epoch it has followed, so it can check a commit certificate of any
//! shard for any of those epochs. A shard learns epoch e+1 from an
//! [`EpochChange`]: the beacon block that ended epoch e, its certificate by
//! epoch e's beacon committee (which the shard already knows), and a state
//! proof of `EpochInfo(e+1)` under that block's state root. The chain of
//! trust starts at genesis, which every shard computes alike.

use crate::block::{BlockHeader, CommitCertificate, Committee};
use crate::codec;
use crate::error::{ChainError, Result};
use crate::hash::{hash_value, tag, Hash};
use crate::shard::BEACON;
use crate::state::smt::SparseMerkleProof;
use crate::state::{verify_state_proof, StateRead};
use crate::types::{ChainId, Epoch, ShardId};
use borsh::{BorshDeserialize, BorshSerialize};
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

const EPOCHS_PREFIX: &[u8] = b"core/epochs/";
/// The latest epoch this shard knows the committees of.
pub const K_LATEST_EPOCH: &[u8] = b"core/epochs_latest";

/// Where `EpochInfo(epoch)` is kept (big-endian, so epochs scan in order).
pub fn epoch_key(epoch: Epoch) -> Vec<u8> {
    let mut k = EPOCHS_PREFIX.to_vec();
    k.extend_from_slice(&epoch.to_be_bytes());
    k
}

/// What the beacon decided for one epoch: its randomness and every shard's
/// committee (index = shard id; one entry when the network has no account
/// shards).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct EpochInfo {
    pub epoch: Epoch,
    pub randomness: Hash,
    pub committees: Vec<Committee>,
}

impl EpochInfo {
    pub fn committee(&self, shard: ShardId) -> Result<&Committee> {
        self.committees.get(shard as usize).ok_or_else(|| {
            ChainError::Beacon(format!(
                "epoch {} has no committee for shard {shard}",
                self.epoch
            ))
        })
    }
}

/// A beacon block that ended an epoch, carried by relayers to every shard.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct EpochChange {
    pub header: BlockHeader,
    pub cert: CommitCertificate,
    pub info: EpochInfo,
    /// Inclusion of `info` at [`epoch_key`] under `header.state_root`.
    pub proof: SparseMerkleProof,
}

pub fn read_epoch(state: &dyn StateRead, epoch: Epoch) -> Result<Option<EpochInfo>> {
    crate::committee::read(state, &epoch_key(epoch))
}

pub fn latest_epoch(state: &dyn StateRead) -> Result<Epoch> {
    Ok(crate::committee::read(state, K_LATEST_EPOCH)?.unwrap_or(0))
}

/// A node's own beacon light client, outside any shard's state: the chain
/// of [`EpochInfo`]s from genesis, each epoch change checked exactly as a
/// shard checks it ([`verify_epoch_change`]). A node uses it to know which
/// committees it serves on and which certificates to trust while it runs no
/// replica of the beacon.
#[derive(Clone, Debug)]
pub struct EpochChain {
    chain_id: ChainId,
    shards: u16,
    infos: std::collections::BTreeMap<Epoch, EpochInfo>,
    certs: CertCache,
}

impl EpochChain {
    /// Starts from the epoch-0 committees every node computes from genesis.
    pub fn new(genesis: &crate::params::Genesis) -> EpochChain {
        let zero = genesis.epoch_zero();
        EpochChain {
            chain_id: genesis.params.chain_id.clone(),
            shards: genesis.params.shards,
            infos: std::collections::BTreeMap::from([(0, zero)]),
            certs: CertCache::default(),
        }
    }

    /// The newest epoch known.
    pub fn latest(&self) -> Epoch {
        self.infos.keys().next_back().copied().unwrap_or(0)
    }

    pub fn info(&self, epoch: Epoch) -> Option<&EpochInfo> {
        self.infos.get(&epoch)
    }

    /// Every known epoch, oldest first.
    pub fn infos(&self) -> impl Iterator<Item = &EpochInfo> {
        self.infos.values()
    }

    /// Checks `change` and, if it is the next epoch, records it. Returns
    /// false for an epoch already known (a duplicate is not an error).
    pub fn apply(&mut self, change: &EpochChange) -> Result<bool> {
        if self.infos.contains_key(&change.info.epoch) {
            return Ok(false);
        }
        verify_epoch_change(self, &self.chain_id, self.shards, change, &self.certs)?;
        self.infos.insert(change.info.epoch, change.info.clone());
        Ok(true)
    }
}

impl StateRead for EpochChain {
    fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if key == K_LATEST_EPOCH {
            return Ok(Some(codec::encode(&self.latest())));
        }
        Ok(key
            .strip_prefix(EPOCHS_PREFIX)
            .and_then(|e| <[u8; 8]>::try_from(e).ok())
            .and_then(|e| self.infos.get(&Epoch::from_be_bytes(e)))
            .map(codec::encode))
    }
}

/// Certificates most recently verified that a [`CertCache`] remembers.
pub const CERT_CACHE_ENTRIES: usize = 4_096;

/// A node's memo of the certificates it has verified, shared by the clones
/// of one runtime. Verifying a certificate is a pure function of the chain
/// id, the shard, the committee's members and the certificate, and the memo
/// is keyed by all four, so a hit returns exactly what verifying again
/// would: it changes the cost, never the result. It matters for Atomix,
/// where every transfer locked in one block is proven by that block's
/// certificate, and a relayed proof is checked on admission, on every pool
/// refresh, in the proposal and in each replica's validation.
#[derive(Clone, Debug, Default)]
pub struct CertCache(Arc<Mutex<CertMemo>>);

#[derive(Debug, Default)]
struct CertMemo {
    seen: HashSet<Hash>,
    order: VecDeque<Hash>,
}

impl CertCache {
    /// `cert.verify(chain_id, shard, committee)`, remembered when it passes.
    pub fn verify(
        &self,
        chain_id: &ChainId,
        shard: ShardId,
        committee: &Committee,
        cert: &CommitCertificate,
    ) -> Result<()> {
        let key = hash_value(tag::CERT_MEMO, &(chain_id, shard, &committee.members, cert));
        // A poisoned lock only means another thread panicked mid-insert;
        // the set is still a set of verified keys.
        let lock = || self.0.lock().unwrap_or_else(|e| e.into_inner());
        if lock().seen.contains(&key) {
            return Ok(());
        }
        cert.verify(chain_id, shard, committee)?;
        let mut memo = lock();
        if memo.seen.insert(key) {
            memo.order.push_back(key);
            if memo.order.len() > CERT_CACHE_ENTRIES {
                if let Some(old) = memo.order.pop_front() {
                    memo.seen.remove(&old);
                }
            }
        }
        Ok(())
    }

    /// Certificates remembered.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Checks that `cert` finalizes `header` under the committee of the
/// header's shard and epoch, as this shard knows it.
pub fn verify_certified(
    state: &dyn StateRead,
    chain_id: &ChainId,
    header: &BlockHeader,
    cert: &CommitCertificate,
    certs: &CertCache,
) -> Result<()> {
    if &header.chain_id != chain_id {
        return Err(ChainError::WrongChainId {
            expected: chain_id.0.clone(),
            got: header.chain_id.0.clone(),
        });
    }
    if cert.block != header.hash() || cert.height != header.height {
        return Err(ChainError::InvalidCertificate(format!(
            "the certificate is for block {} at height {}, not this header ({} at {})",
            cert.block,
            cert.height,
            header.hash(),
            header.height
        )));
    }
    let info = match read_epoch(state, header.epoch)? {
        Some(info) => info,
        None => {
            let known = latest_epoch(state)?;
            if header.epoch > known {
                return Err(ChainError::UnknownEpoch {
                    epoch: header.epoch,
                    known,
                });
            }
            return Err(ChainError::Beacon(format!(
                "epoch {} is no longer kept by this shard",
                header.epoch
            )));
        }
    };
    certs.verify(chain_id, header.shard, info.committee(header.shard)?, cert)
}

/// Checks an epoch change against what this shard knows: the next epoch
/// in sequence, a beacon block of the epoch before it, certified by that
/// epoch's beacon committee, with a valid proof of the new `EpochInfo`.
pub fn verify_epoch_change(
    state: &dyn StateRead,
    chain_id: &ChainId,
    shards: u16,
    change: &EpochChange,
    certs: &CertCache,
) -> Result<()> {
    let known = latest_epoch(state)?;
    let e = change.info.epoch;
    if e != known + 1 {
        return Err(ChainError::Beacon(format!(
            "epoch change to {e}, but this shard knows epoch {known}: changes apply in order"
        )));
    }
    if change.header.shard != BEACON {
        return Err(ChainError::WrongShard {
            expected: BEACON,
            got: change.header.shard,
        });
    }
    if change.header.epoch + 1 != e {
        return Err(ChainError::Beacon(format!(
            "a block of epoch {} cannot end epoch {}",
            change.header.epoch,
            e - 1
        )));
    }
    if change.info.committees.len() != shards as usize + 1 {
        return Err(ChainError::Beacon(format!(
            "{} committees for {} shards",
            change.info.committees.len(),
            shards as usize + 1
        )));
    }
    verify_certified(state, chain_id, &change.header, &change.cert, certs)?;
    verify_state_proof(
        &change.header.state_root,
        &epoch_key(e),
        Some(&codec::encode(&change.info)),
        &change.proof,
    )
}
