//! The deterministic rules of storage deals, as pure functions the storage
//! module (and anyone checking it) runs: where fragments go, what a deal
//! costs and pays, and which chunk each provider must prove in an epoch.
//!
//! - **Placement**: the k + m fragments of a segment go to k + m distinct
//!   providers, drawn without replacement with weight `(believability + 1)
//!   x free capacity` among those with room for the fragment and a price
//!   within the owner's offer, seeded by `blake3(R_e, content id, segment)`
//!   under its own domain tag. Anyone with the epoch randomness and the
//!   provider list recomputes it.
//! - **Cost**: `ceil(stored bytes x price per GiB-epoch x epochs / GiB)`
//!   into escrow; a provider that passes an epoch's audit earns
//!   `floor(fragment bytes x price / GiB)` per fragment it holds, and Servi
//!   per GiB-epoch held. All integer, overflow-checked.
//! - **Audits**: each epoch a provider proves one 1 KiB chunk of one of the
//!   fragments it holds, both picked by `blake3(R_e, epoch, provider)`.

use crate::codec::Layout;
use crate::tree::{self, ChunkProof};
use crate::{ContentId, Result, StorageError};
use borsh::{BorshDeserialize, BorshSerialize};
use ios_chain::crypto::Address;
use ios_chain::hash::{DomainHasher, Hash};
use ios_chain::types::{Amount, Epoch, Ppm};

/// Bytes in a GiB, the unit prices are quoted in.
pub const GIB: u128 = 1 << 30;
const PLACEMENT_TAG: &str = "ios/huds/placement";
const AUDIT_TAG: &str = "ios/huds/audit";
const REPAIR_TAG: &str = "ios/huds/repair";

/// A provider as placement sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub address: Address,
    /// Capacity not yet promised to deals (bytes).
    pub free: u64,
    pub believability: Ppm,
    pub price_per_gib_epoch: Amount,
}

/// The seed of one segment's placement.
pub fn placement_seed(randomness: &Hash, content: &ContentId, segment: u32) -> Hash {
    let mut h = DomainHasher::new(PLACEMENT_TAG);
    h.update(randomness.as_bytes())
        .update(content.0.as_bytes())
        .update(&segment.to_le_bytes());
    h.finalize()
}

/// The seed of the placement of a lost fragment anew in `epoch`.
pub fn repair_seed(
    randomness: &Hash,
    content: &ContentId,
    segment: u32,
    index: u16,
    epoch: u64,
) -> Hash {
    let mut h = DomainHasher::new(REPAIR_TAG);
    h.update(randomness.as_bytes())
        .update(content.0.as_bytes())
        .update(&segment.to_le_bytes())
        .update(&index.to_le_bytes())
        .update(&epoch.to_le_bytes());
    h.finalize()
}

fn draw(seed: &Hash, step: u32, total: u128) -> u128 {
    let mut h = DomainHasher::new(PLACEMENT_TAG);
    h.update(seed.as_bytes()).update(&step.to_le_bytes());
    let d = h.finalize();
    let x = u128::from_le_bytes(d.0[..16].try_into().expect("16 bytes"));
    x % total
}

/// Draws `n` distinct providers for fragments of `fragment_len` bytes.
/// Candidates must be distinct and in a canonical order (the caller's
/// provider index), so every node draws the same.
pub fn place(
    candidates: &[Candidate],
    n: usize,
    fragment_len: u64,
    max_price: Amount,
    seed: &Hash,
) -> Result<Vec<Address>> {
    let mut pool: Vec<(Address, u128)> = candidates
        .iter()
        .filter(|c| c.free >= fragment_len && c.price_per_gib_epoch <= max_price)
        .map(|c| {
            let w = (u128::from(c.believability) + 1) * u128::from(c.free);
            (c.address, w)
        })
        .collect();
    if pool.len() < n {
        return Err(StorageError::NotEnoughProviders {
            need: n,
            eligible: pool.len(),
        });
    }
    let mut chosen = Vec::with_capacity(n);
    for step in 0..n {
        let total: u128 = pool.iter().map(|(_, w)| *w).sum();
        let mut r = draw(seed, step as u32, total.max(1));
        let mut pick = pool.len() - 1;
        for (i, (_, w)) in pool.iter().enumerate() {
            if r < *w {
                pick = i;
                break;
            }
            r -= *w;
        }
        chosen.push(pool.remove(pick).0);
    }
    Ok(chosen)
}

/// Places every segment of an object, each provider's free capacity
/// shrinking as it is given fragments. `result[segment][fragment]`.
pub fn place_object(
    candidates: &[Candidate],
    layout: &Layout,
    randomness: &Hash,
    max_price: Amount,
) -> Result<Vec<Vec<Address>>> {
    layout.validate()?;
    let mut pool = candidates.to_vec();
    let n = layout.coding.fragments();
    let mut out = Vec::with_capacity(layout.segments.len());
    for segment in 0..layout.segments.len() as u32 {
        let len = layout.fragment_len(segment);
        let seed = placement_seed(randomness, &layout.content, segment);
        let chosen = place(&pool, n, len, max_price, &seed)?;
        for c in pool.iter_mut().filter(|c| chosen.contains(&c.address)) {
            c.free -= len;
        }
        out.push(chosen);
    }
    Ok(out)
}

/// What storing `stored_bytes` for `epochs` epochs costs at `price` per
/// GiB-epoch, rounded up.
pub fn storage_cost(stored_bytes: u64, price: Amount, epochs: u64) -> Result<Amount> {
    let units = u128::from(stored_bytes)
        .checked_mul(u128::from(price))
        .and_then(|v| v.checked_mul(u128::from(epochs)))
        .ok_or(StorageError::Overflow("storage cost"))?;
    Amount::try_from(units.div_ceil(GIB)).map_err(|_| StorageError::Overflow("storage cost"))
}

/// What holding a fragment of `len` bytes for one epoch earns at `price`,
/// rounded down (the escrow always covers every payment).
pub fn epoch_payment(len: u64, price: Amount) -> Amount {
    // The product of two u64 fits in u128; a quotient past u64 (which no
    // escrow could have been charged for) saturates.
    let v = u128::from(len) * u128::from(price) / GIB;
    Amount::try_from(v).unwrap_or(Amount::MAX)
}

/// Servi earned for holding `bytes` for one epoch at `per_gib` Servi per
/// GiB-epoch, rounded down.
pub fn epoch_servi(bytes: u64, per_gib: u64) -> u64 {
    let v = u128::from(bytes) * u128::from(per_gib) / GIB;
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// One fragment a provider holds, as audits see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
pub struct Held {
    pub content: ContentId,
    pub segment: u32,
    pub index: u16,
    pub len: u64,
}

/// What a provider must prove in an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Challenge {
    pub provider: Address,
    pub epoch: Epoch,
    pub content: ContentId,
    pub segment: u32,
    pub index: u16,
    pub chunk: u64,
}

/// The challenge of `provider` in `epoch`, over the fragments it holds (in
/// their canonical, sorted order); None if it holds none.
pub fn challenge(
    randomness: &Hash,
    epoch: Epoch,
    provider: &Address,
    held: &[Held],
) -> Option<Challenge> {
    if held.is_empty() {
        return None;
    }
    let mut h = DomainHasher::new(AUDIT_TAG);
    h.update(randomness.as_bytes())
        .update(&epoch.to_le_bytes())
        .update(provider.as_bytes());
    let d = h.finalize();
    let a = u64::from_le_bytes(d.0[..8].try_into().expect("8 bytes"));
    let b = u64::from_le_bytes(d.0[8..16].try_into().expect("8 bytes"));
    let f = held[(a % held.len() as u64) as usize];
    Some(Challenge {
        provider: *provider,
        epoch,
        content: f.content,
        segment: f.segment,
        index: f.index,
        chunk: b % tree::chunk_count(f.len),
    })
}

/// Checks a provider's answer to `challenge` against the deal's layout.
pub fn check_answer(layout: &Layout, challenge: &Challenge, proof: &ChunkProof) -> Result<()> {
    if layout.content != challenge.content {
        return Err(StorageError::BadProof(format!(
            "the layout is of {}, the challenge of {}",
            layout.content, challenge.content
        )));
    }
    if proof.index != challenge.chunk {
        return Err(StorageError::BadProof(format!(
            "chunk {} proven, chunk {} asked",
            proof.index, challenge.chunk
        )));
    }
    let root = layout
        .segments
        .get(challenge.segment as usize)
        .and_then(|s| s.roots.get(usize::from(challenge.index)))
        .ok_or_else(|| {
            StorageError::BadProof(format!(
                "no fragment {}/{} in the layout",
                challenge.segment, challenge.index
            ))
        })?;
    tree::verify(root, layout.fragment_len(challenge.segment), proof)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Codec, Coding, ObjectEncoder};
    use proptest::prelude::*;

    fn addr(i: u8) -> Address {
        Address([i; 32])
    }

    fn candidates(n: u8) -> Vec<Candidate> {
        (1..=n)
            .map(|i| Candidate {
                address: addr(i),
                free: 10 << 30,
                believability: 500_000,
                price_per_gib_epoch: 100,
            })
            .collect()
    }

    fn object(len: usize) -> (Layout, Vec<Vec<Vec<u8>>>) {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 13 % 251) as u8).collect();
        let coding = Coding::new(4, 2, 64 << 10).unwrap();
        let mut enc = ObjectEncoder::new(Codec::new(coding).unwrap(), &bytes[..], u64::MAX);
        let mut frags = Vec::new();
        while let Some(s) = enc.next_segment().unwrap() {
            frags.push(s.fragments);
        }
        (enc.finish().unwrap(), frags)
    }

    #[test]
    fn placement_is_deterministic_distinct_and_needs_enough_providers() {
        let (layout, _) = object(300_000);
        let r = Hash([7; 32]);
        let a = place_object(&candidates(8), &layout, &r, 100).unwrap();
        assert_eq!(a, place_object(&candidates(8), &layout, &r, 100).unwrap());
        for seg in &a {
            let mut s = seg.clone();
            s.sort();
            s.dedup();
            assert_eq!(s.len(), 6, "k+m distinct providers: {seg:?}");
        }
        assert_ne!(
            a,
            place_object(&candidates(8), &layout, &Hash([8; 32]), 100).unwrap()
        );
        // 4+2 over 5 providers: a typed error.
        assert!(matches!(
            place_object(&candidates(5), &layout, &r, 100),
            Err(StorageError::NotEnoughProviders {
                need: 6,
                eligible: 5
            })
        ));
        // Too expensive or too full providers are not eligible.
        let mut c = candidates(6);
        c[0].price_per_gib_epoch = 101;
        assert!(place_object(&c, &layout, &r, 100).is_err());
        let mut c = candidates(6);
        c[1].free = 10;
        assert!(place_object(&c, &layout, &r, 100).is_err());
    }

    #[test]
    fn placement_follows_weight_and_spends_capacity() {
        // One provider with 100x the weight of the others gets most first picks.
        let mut c = candidates(10);
        c[0].believability = 1_000_000;
        c[0].free = 1_000 << 30;
        let mut first = 0;
        for s in 0..200u32 {
            let seed = placement_seed(&Hash([1; 32]), &ContentId::of(&[]), s);
            if place(&c, 1, 1, 100, &seed).unwrap()[0] == addr(1) {
                first += 1;
            }
        }
        assert!(first > 150, "{first} of 200");
        // Capacity for exactly one segment each: the second segment fails.
        let (layout, _) = object(100_000); // 2 segments of 64 KiB + rest
        let mut c = candidates(6);
        for x in &mut c {
            x.free = layout.fragment_len(0);
        }
        assert!(matches!(
            place_object(&c, &layout, &Hash([2; 32]), 100),
            Err(StorageError::NotEnoughProviders { .. })
        ));
    }

    #[test]
    fn costs_and_payments_are_integer_and_escrow_covers_payments() {
        assert_eq!(storage_cost(1 << 30, 1_000, 10).unwrap(), 10_000);
        assert_eq!(storage_cost(1, 1, 1).unwrap(), 1, "rounded up");
        assert_eq!(epoch_payment(1 << 30, 1_000), 1_000);
        assert_eq!(epoch_payment(1, 1_000), 0, "rounded down");
        assert!(matches!(
            storage_cost(u64::MAX, u64::MAX, u64::MAX),
            Err(StorageError::Overflow(_))
        ));
        assert_eq!(epoch_servi(3 << 30, 10), 30);
    }

    #[test]
    fn challenges_are_deterministic_and_honest_answers_pass_forged_fail() {
        let (layout, frags) = object(200_000);
        let p = addr(3);
        let held: Vec<Held> = (0..layout.segments.len() as u32)
            .map(|s| Held {
                content: layout.content,
                segment: s,
                index: 1,
                len: layout.fragment_len(s),
            })
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        for epoch in 0..20 {
            let c = challenge(&Hash([9; 32]), epoch, &p, &held).unwrap();
            assert_eq!(Some(c), challenge(&Hash([9; 32]), epoch, &p, &held));
            seen.insert((c.segment, c.chunk));
            let frag = &frags[c.segment as usize][usize::from(c.index)];
            let proof = tree::prove(frag, c.chunk).unwrap();
            check_answer(&layout, &c, &proof).unwrap();
            // Another chunk, a tampered chunk: refused.
            let other =
                tree::prove(frag, (c.chunk + 1) % tree::chunk_count(frag.len() as u64)).unwrap();
            if other.index != c.chunk {
                assert!(check_answer(&layout, &c, &other).is_err());
            }
            let mut bad = proof;
            bad.chunk[0] ^= 1;
            assert!(matches!(
                check_answer(&layout, &c, &bad),
                Err(StorageError::BadProof(_))
            ));
        }
        assert!(seen.len() > 5, "epochs pick different chunks: {seen:?}");
        assert_eq!(challenge(&Hash([9; 32]), 0, &p, &[]), None);
    }

    proptest! {
        #[test]
        fn any_placement_is_distinct_and_within_capacity(
            n in 6u8..20, seed in any::<[u8; 32]>(), free in proptest::collection::vec(1u64..1_000_000, 20)
        ) {
            let c: Vec<Candidate> = (0..n).map(|i| Candidate {
                address: addr(i + 1),
                free: free[i as usize],
                believability: u32::from(i) * 50_000,
                price_per_gib_epoch: 1,
            }).collect();
            let len = 10_000;
            match place(&c, 6, len, 1, &Hash(seed)) {
                Ok(chosen) => {
                    let mut s = chosen.clone();
                    s.sort();
                    s.dedup();
                    prop_assert_eq!(s.len(), 6);
                    for a in chosen {
                        prop_assert!(c.iter().any(|x| x.address == a && x.free >= len));
                    }
                }
                Err(StorageError::NotEnoughProviders { eligible, .. }) => {
                    prop_assert_eq!(eligible, c.iter().filter(|x| x.free >= len).count());
                    prop_assert!(eligible < 6);
                }
                Err(e) => prop_assert!(false, "{e}"),
            }
        }
    }
}
