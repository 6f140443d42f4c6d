//! The shard layout (EDS, after OmniLedger): shard 0 is the beacon, shards
//! 1..=S hold accounts, and validators are placed in committees by a
//! permutation seeded with the epoch randomness. TransEpoch bounds how many
//! members of a committee change per epoch, so a committee stays live while
//! its new members catch up by fast sync.
//!
//! Pure functions of their arguments: every replica computes the same layout.

use crate::crypto::Address;
use crate::hash::{tag, DomainHasher, Hash};
use crate::types::ShardId;
use std::collections::{BTreeMap, BTreeSet};

/// The beacon shard: validator registry, stakes, epochs, randomness and each
/// epoch's committees.
pub const BEACON: ShardId = 0;

/// The shard an account lives on. With `shards == 0` the network is one
/// chain and the beacon holds the accounts too.
pub fn home_shard(address: &Address, shards: u16) -> ShardId {
    if shards == 0 {
        return BEACON;
    }
    let h = DomainHasher::new(tag::HOME_SHARD)
        .update(&address.0)
        .finalize();
    1 + u16::from_le_bytes([h.0[0], h.0[1]]) % shards
}

/// f = floor((n-1)/3): the most Byzantine members a committee of `n` tolerates,
/// and so (TransEpoch) the most that may change in one epoch.
pub fn max_faulty(n: usize) -> usize {
    n.saturating_sub(1) / 3
}

/// A deterministic stream of 64-bit draws from `seed` (blake3 in XOF mode).
struct Draws(blake3::OutputReader);

impl Draws {
    fn new(seed: &Hash, what: &[u8]) -> Draws {
        let h = DomainHasher::new(tag::COMMITTEE_PERMUTATION)
            .update(&seed.0)
            .update(what)
            .finalize();
        Draws(blake3::Hasher::new_keyed(&h.0).finalize_xof())
    }

    /// Uniform in `0..bound` (bound > 0), by rejection so there is no modulo bias.
    fn below(&mut self, bound: u64) -> u64 {
        let zone = u64::MAX - (u64::MAX % bound);
        loop {
            let mut b = [0u8; 8];
            self.0.fill(&mut b);
            let x = u64::from_le_bytes(b);
            if x < zone {
                return x % bound;
            }
        }
    }
}

/// A uniformly random permutation of `items` seeded by `seed` (Fisher–Yates).
pub fn permutation<T: Clone>(items: &[T], seed: &Hash) -> Vec<T> {
    let mut out = items.to_vec();
    let mut draws = Draws::new(seed, b"permutation");
    for i in (1..out.len()).rev() {
        let j = draws.below(i as u64 + 1) as usize;
        out.swap(i, j);
    }
    out
}

/// The committees of the next epoch, one member list (sorted) per shard.
///
/// `current` holds this epoch's committees (empty lists at genesis),
/// `eligible` the bonded, unjailed validators, `size` the target committee
/// size and `swaps` the TransEpoch bound (at most floor((size-1)/3)).
///
/// Members who are no longer eligible leave. Then, by the permutation seeded
/// with `randomness`, up to `swaps` members minus those forced out rotate
/// out of each committee and vacancies are filled from the permuted pool of
/// validators in no committee plus those rotating out elsewhere, one seat at
/// a time into the smallest committee with room (so too few validators
/// shrink every committee alike). So a
/// committee gains at most `max(swaps, forced out)` new members per epoch,
/// except at genesis (all `current` empty) when the committees are dealt
/// from the permutation. A committee never takes back a member it just
/// rotated out unless nobody else is free.
pub fn assign_committees(
    current: &[Vec<Address>],
    eligible: &[Address],
    size: usize,
    swaps: usize,
    randomness: &Hash,
) -> Vec<Vec<Address>> {
    let eligible_set: BTreeSet<Address> = eligible.iter().copied().collect();
    let mut sorted: Vec<Address> = eligible_set.iter().copied().collect();
    sorted.sort();
    let order = permutation(&sorted, randomness);
    let rank: BTreeMap<Address, usize> = order.iter().enumerate().map(|(i, a)| (*a, i)).collect();
    let by_rank = |v: &mut Vec<Address>| v.sort_by_key(|a| rank.get(a).copied().unwrap_or(0));

    let genesis = current.iter().all(|c| c.is_empty());
    let mut staying: Vec<Vec<Address>> = Vec::with_capacity(current.len());
    let mut leaving: Vec<Vec<Address>> = Vec::with_capacity(current.len());
    let mut budget: Vec<usize> = Vec::with_capacity(current.len());
    let mut taken: BTreeSet<Address> = BTreeSet::new();
    for members in current {
        let mut kept: Vec<Address> = members
            .iter()
            .filter(|a| eligible_set.contains(*a) && !taken.contains(*a))
            .copied()
            .collect();
        kept.dedup();
        let forced = members.len() - kept.len();
        by_rank(&mut kept);
        // Rotate out the members the permutation puts first, and any beyond `size`.
        let voluntary = swaps.saturating_sub(forced).min(kept.len());
        let mut out: Vec<Address> = kept.drain(..voluntary).collect();
        if kept.len() > size {
            out.extend(kept.drain(size..));
        }
        taken.extend(kept.iter().copied());
        budget.push(if genesis { size } else { swaps.max(forced) });
        staying.push(kept);
        leaving.push(out);
    }

    // The free pool, in permutation order: nobody's staying member.
    let mut pool: Vec<Address> = order
        .iter()
        .filter(|a| !taken.contains(*a))
        .copied()
        .collect();
    // Vacancies are filled one seat at a time, always in the smallest
    // committee that has room (ties: lowest shard), so when fewer validators
    // are eligible than there are seats every committee shrinks alike rather
    // than the last ones emptying. A committee prefers anyone but the members
    // it is rotating out; those stay only if nobody else is free.
    let mut next = staying.clone();
    let mut room: Vec<usize> = next
        .iter()
        .zip(&budget)
        .map(|(m, b)| size.saturating_sub(m.len()).min(*b))
        .collect();
    for rotated_out_too in [false, true] {
        let mut stuck: BTreeSet<usize> = BTreeSet::new();
        while let Some(shard) = (0..next.len())
            .filter(|s| room[*s] > 0 && !stuck.contains(s))
            .min_by_key(|s| (next[*s].len(), *s))
        {
            let pick = pool
                .iter()
                .position(|a| !leaving[shard].contains(a) || rotated_out_too);
            match pick {
                Some(i) => {
                    next[shard].push(pool.remove(i));
                    room[shard] -= 1;
                }
                None => {
                    stuck.insert(shard);
                }
            }
        }
    }
    for members in &mut next {
        members.sort();
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addrs(n: usize) -> Vec<Address> {
        (0..n)
            .map(|i| {
                let mut a = [0u8; 32];
                a[..8].copy_from_slice(&(i as u64).to_le_bytes());
                Address(a)
            })
            .collect()
    }

    fn seed(i: u64) -> Hash {
        crate::hash::hash_tagged("test", &i.to_le_bytes())
    }

    #[test]
    fn home_shard_is_in_range_and_spreads() {
        let a = addrs(4000);
        assert!(a.iter().all(|x| home_shard(x, 0) == BEACON));
        let mut counts = [0usize; 5];
        for x in &a {
            let s = home_shard(x, 4);
            assert!((1..=4).contains(&s));
            counts[s as usize] += 1;
        }
        // 1000 expected per shard; 5 sigma is about 137.
        for c in &counts[1..] {
            assert!((860..1140).contains(c), "{counts:?}");
        }
    }

    #[test]
    fn permutation_is_a_permutation_and_depends_on_the_seed() {
        let a = addrs(50);
        let p = permutation(&a, &seed(1));
        let mut sorted = p.clone();
        sorted.sort();
        assert_eq!(sorted, a);
        assert_eq!(p, permutation(&a, &seed(1)));
        assert_ne!(p, permutation(&a, &seed(2)));
    }

    #[test]
    fn genesis_deals_disjoint_full_committees() {
        let a = addrs(20);
        let c = assign_committees(&vec![Vec::new(); 3], &a, 6, 1, &seed(7));
        assert!(c.iter().all(|m| m.len() == 6));
        let all: BTreeSet<Address> = c.iter().flatten().copied().collect();
        assert_eq!(all.len(), 18);
    }

    #[test]
    fn a_full_network_with_no_spare_validators_still_rotates() {
        // 3 committees of 4 from exactly 12 validators: members move between committees.
        let a = addrs(12);
        let mut c = assign_committees(&vec![Vec::new(); 3], &a, 4, 1, &seed(1));
        let mut moved = 0;
        for e in 2..20 {
            let next = assign_committees(&c, &a, 4, 1, &seed(e));
            for (old, new) in c.iter().zip(&next) {
                assert_eq!(new.len(), 4);
                let incoming = new.iter().filter(|x| !old.contains(x)).count();
                assert!(incoming <= 1, "{incoming} new members");
                moved += incoming;
            }
            c = next;
        }
        assert!(moved > 0, "nothing ever rotated");
    }

    #[test]
    fn jailed_members_leave_at_once() {
        let a = addrs(30);
        let c = assign_committees(&vec![Vec::new(); 2], &a, 10, 3, &seed(3));
        let jailed: Vec<Address> = c[0][..5].to_vec();
        let eligible: Vec<Address> = a.iter().filter(|x| !jailed.contains(x)).copied().collect();
        let next = assign_committees(&c, &eligible, 10, 3, &seed(4));
        assert!(next[0].iter().all(|x| !jailed.contains(x)));
        assert_eq!(next[0].len(), 10, "5 forced out are all replaced");
    }

    #[test]
    fn too_few_validators_shrink_every_committee_alike() {
        // 3 committees of 4, then 5 of the 12 jailed: 7 left for 12 seats.
        let a = addrs(12);
        let c = assign_committees(&vec![Vec::new(); 3], &a, 4, 1, &seed(5));
        assert!(c.iter().all(|m| m.len() == 4));
        let eligible: Vec<Address> = a[5..].to_vec();
        let next = assign_committees(&c, &eligible, 4, 1, &seed(6));
        let sizes: Vec<usize> = next.iter().map(Vec::len).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 7, "{sizes:?}");
        assert!(
            sizes.iter().all(|&n| n >= 2),
            "a committee emptied: {sizes:?}"
        );
        // A committee whose members are all jailed is refilled from the
        // others' rotation until the committees are even.
        let c = vec![a[..4].to_vec(), a[4..8].to_vec(), a[8..12].to_vec()];
        let mut eligible = a[..8].to_vec();
        eligible.extend(addrs(14)[12..].iter().copied());
        let next = assign_committees(&c, &eligible, 4, 1, &seed(8));
        let sizes: Vec<usize> = next.iter().map(Vec::len).collect();
        assert_eq!(sizes, [4, 3, 3], "10 validators for 12 seats, spread");
    }

    proptest! {
        #[test]
        fn transepoch_bounds_the_change(
            validators in 4usize..60,
            shards in 1usize..5,
            size in 1usize..16,
            epochs in 1u64..8,
            jail_every in 0usize..7,
            s in any::<u64>(),
        ) {
            let swaps = max_faulty(size);
            let all = addrs(validators);
            let mut c = assign_committees(&vec![Vec::new(); shards], &all, size, swaps, &seed(s));
            for e in 0..epochs {
                let eligible: Vec<Address> = all
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| jail_every == 0 || !(i + e as usize).is_multiple_of(jail_every + 3))
                    .map(|(_, a)| *a)
                    .collect();
                let next = assign_committees(&c, &eligible, size, swaps, &seed(s ^ (e + 1)));
                let mut seen = BTreeSet::new();
                for (old, new) in c.iter().zip(&next) {
                    prop_assert!(new.len() <= size);
                    prop_assert!(new.windows(2).all(|w| w[0] < w[1]));
                    for m in new {
                        prop_assert!(eligible.contains(m), "ineligible member");
                        prop_assert!(seen.insert(*m), "member in two committees");
                    }
                    let forced = old.iter().filter(|m| !eligible.contains(m)).count();
                    let incoming = new.iter().filter(|m| !old.contains(m)).count();
                    prop_assert!(incoming <= swaps.max(forced), "{incoming} new, bound {swaps}, forced {forced}");
                }
                c = next;
            }
        }
    }
}
