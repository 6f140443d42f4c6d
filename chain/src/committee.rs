//! Committee election, believable leagues and the weighted proposer draw.
//! Pure functions of committed state and the epoch randomness, so every
//! replica computes the same committee and the same proposer.

use crate::account::Account;
use crate::block::Committee;
use crate::codec;
use crate::crypto::Address;
use crate::error::Result;
use crate::hash::{tag, DomainHasher, Hash};
use crate::module::{keys, MAX_STATE_VALUE};
use crate::params::ChainParams;
use crate::state::StateRead;
use crate::types::{Epoch, Height, Round, ShardId, PPM};

pub const K_COMMITTEE: &[u8] = b"core/committee";
pub const K_RANDOMNESS: &[u8] = b"core/randomness";
pub const K_VALIDATORS: &[u8] = b"core/validators";
pub const K_FEE_POOL: &[u8] = b"core/fee_pool";
/// First height of the current epoch.
pub const K_EPOCH_START: &[u8] = b"core/epoch_start";

pub fn read<T: borsh::BorshDeserialize>(state: &dyn StateRead, key: &[u8]) -> Result<Option<T>> {
    match state.read(key)? {
        Some(b) => Ok(Some(codec::decode("state value", &b, MAX_STATE_VALUE)?)),
        None => Ok(None),
    }
}

pub fn read_account(state: &dyn StateRead, a: &Address) -> Result<Account> {
    Ok(read(state, &keys::account(a))?.unwrap_or_default())
}

/// Bonded, unjailed validators (sorted by address).
pub fn validators(state: &dyn StateRead) -> Result<Vec<Address>> {
    Ok(read(state, K_VALIDATORS)?.unwrap_or_default())
}

/// Validators that may serve: bonded (stake at least the minimum), not
/// jailed, and with a registered PVSS key (committee members deal and
/// decrypt randomness). Sorted by address.
pub fn eligible(state: &dyn StateRead, params: &ChainParams) -> Result<Vec<Address>> {
    let mut out = Vec::new();
    for a in validators(state)? {
        let acct = read_account(state, &a)?;
        if !acct.jailed
            && acct.stake >= params.min_validator_stake
            && state.read(&crate::beacon::pvss_key_key(&a))?.is_some()
        {
            out.push(a);
        }
    }
    Ok(out)
}

/// Elects every shard's committee for `epoch` seeded by its randomness:
/// TransEpoch rotation of `current` (one committee per shard, index = shard;
/// empty at genesis) over the eligible validators (see
/// [`crate::shard::assign_committees`]), each with its believable league.
pub fn elect_all(
    state: &dyn StateRead,
    params: &ChainParams,
    epoch: Epoch,
    current: &[Committee],
    randomness: &Hash,
) -> Result<Vec<Committee>> {
    let eligible = eligible(state, params)?;
    let current: Vec<Vec<Address>> = current.iter().map(|c| c.members.clone()).collect();
    let assigned = crate::shard::assign_committees(
        &current,
        &eligible,
        params.committee_size as usize,
        params.transepoch_swaps as usize,
        randomness,
    );
    assigned
        .into_iter()
        .map(|members| {
            let weights = members
                .iter()
                .map(|a| Ok(read_account(state, a)?.believability(&params.believability)))
                .collect::<Result<Vec<u32>>>()?;
            Ok(with_league(params, epoch, members, &weights))
        })
        .collect()
}

/// A committee of `members` (sorted) whose top `league` share by
/// `weights` (believability, aligned with `members`) is the believable league.
pub fn with_league(
    params: &ChainParams,
    epoch: Epoch,
    members: Vec<Address>,
    weights: &[u32],
) -> Committee {
    let mut by_b: Vec<(Address, u32)> = members
        .iter()
        .copied()
        .zip(weights.iter().copied())
        .collect();
    by_b.sort_by(|(a, x), (b, y)| y.cmp(x).then(a.cmp(b)));
    let n = by_b.len() as u64;
    let league = (n * params.believability.league as u64)
        .div_ceil(PPM)
        .clamp(n.min(1), n);
    let mut believable: Vec<Address> = by_b.iter().take(league as usize).map(|(a, _)| *a).collect();
    believable.sort();
    Committee {
        epoch,
        members,
        believable,
        weights: weights.to_vec(),
    }
}

/// The proposer of `(height, round)`: drawn from the believable league (the
/// whole committee from `league_fallback_round` on), weighted by
/// believability, seeded by `blake3(randomness, shard, height, round)`.
/// The beacon, which holds the validators' accounts, weighs by current
/// believability (so a proposer's spent Servi lowers its weight at once);
/// account shards by the snapshot taken when the committee was elected.
pub fn proposer(
    committee: &Committee,
    state: &dyn StateRead,
    params: &ChainParams,
    randomness: &Hash,
    shard: ShardId,
    height: Height,
    round: Round,
) -> Result<Address> {
    let pool = if round >= params.league_fallback_round || committee.believable.is_empty() {
        &committee.members
    } else {
        &committee.believable
    };
    if pool.is_empty() {
        return Err(crate::error::ChainError::InvalidGenesis(
            "the committee is empty".into(),
        ));
    }
    let mut weights = Vec::with_capacity(pool.len());
    let mut total: u128 = 0;
    for a in pool {
        let b = if shard == crate::shard::BEACON {
            read_account(state, a)?.believability(&params.believability)
        } else {
            committee
                .members
                .binary_search(a)
                .ok()
                .and_then(|i| committee.weights.get(i).copied())
                .unwrap_or(0)
        };
        total += b as u128;
        weights.push(b as u128);
    }
    let mut h = DomainHasher::new(tag::PROPOSER_DRAW);
    h.update(&randomness.0)
        .update(&shard.to_le_bytes())
        .update(&height.to_le_bytes())
        .update(&round.to_le_bytes());
    let seed = h.finalize();
    let mut draw_bytes = [0u8; 16];
    draw_bytes.copy_from_slice(&seed.0[..16]);
    let draw = u128::from_le_bytes(draw_bytes);
    if total == 0 {
        return Ok(pool[(draw % pool.len() as u128) as usize]);
    }
    let mut x = draw % total;
    for (a, w) in pool.iter().zip(weights) {
        if x < w {
            return Ok(*a);
        }
        x -= w;
    }
    Ok(pool[pool.len() - 1])
}
