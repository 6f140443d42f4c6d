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

/// Elects the committee for `epoch`: the `committee_size` largest stakes among
/// bonded validators that are not jailed (ties by address), then the top
/// `league` share of them by believability forms the believable league.
pub fn elect(state: &dyn StateRead, params: &ChainParams, epoch: Epoch) -> Result<Committee> {
    let mut candidates = Vec::new();
    for a in validators(state)? {
        let acct = read_account(state, &a)?;
        if !acct.jailed && acct.stake >= params.min_validator_stake {
            candidates.push((a, acct));
        }
    }
    candidates.sort_by(|(a, x), (b, y)| y.stake.cmp(&x.stake).then(a.cmp(b)));
    candidates.truncate(params.committee_size as usize);

    let mut by_b: Vec<(Address, u32)> = candidates
        .iter()
        .map(|(a, acct)| (*a, acct.believability(&params.believability)))
        .collect();
    by_b.sort_by(|(a, x), (b, y)| y.cmp(x).then(a.cmp(b)));
    let n = by_b.len() as u64;
    let league = (n * params.believability.league as u64)
        .div_ceil(PPM)
        .clamp(n.min(1), n);
    let mut believable: Vec<Address> = by_b.iter().take(league as usize).map(|(a, _)| *a).collect();
    believable.sort();

    let mut members: Vec<Address> = candidates.into_iter().map(|(a, _)| a).collect();
    members.sort();
    Ok(Committee {
        epoch,
        members,
        believable,
    })
}

/// The proposer of `(height, round)`: drawn from the believable league (the
/// whole committee from `league_fallback_round` on), weighted by current
/// believability, seeded by `blake3(randomness, shard, height, round)`.
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
        let b = read_account(state, a)?.believability(&params.believability) as u128;
        total += b;
        weights.push(b);
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

/// Provisional epoch randomness: a hash chain over finalized block hashes.
/// The PVSS beacon (sharding issue) replaces it; until then a proposer at an
/// epoch boundary can grind it, which docs/protocol.md states.
pub fn next_randomness(current: &Hash, epoch: Epoch, boundary_block_prev: &Hash) -> Hash {
    let mut h = DomainHasher::new(tag::EPOCH_RANDOMNESS);
    h.update(&current.0)
        .update(&epoch.to_le_bytes())
        .update(&boundary_block_prev.0);
    h.finalize()
}
