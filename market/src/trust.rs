//! Global trust: EigenTrust (Kamvar, Schlosser and Garcia-Molina, 2003) over
//! the FTFS rating graph, a derived view used for ranking and shown to users.
//! It is rebuilt from revealed ratings and is never the source of truth.
//!
//! Integer math only, so every machine computes the same trust from the same
//! ratings: local trust is normalised in 2^-32 fixed point, trust is kept in
//! units of `1 / TRUST_SCALE` of the whole, and every collection is sorted.
//!
//! - Local trust of rater i in account j: `s_ij = sum of weight * (stars - 3)`
//!   over i's ratings of j; a three-star rating is neutral, fewer stars
//!   distrust. Self-ratings are ignored.
//! - Normalised: `c_ij = max(s_ij, 0) / sum_j max(s_ij, 0)`; a row with no
//!   positive trust (a dangling row) trusts the pre-trusted distribution `p`.
//! - `t_0 = p`, `t_{k+1} = (1 - a) C^T t_k + a p`, until `iterations` rounds
//!   or until the L1 change is below `CONVERGED_L1`.
//!
//! Trust reaches an account only along positive ratings from pre-trusted
//! accounts (directly or through accounts they trust), so a ring of accounts
//! that only rate each other ends with none, however many ratings it fakes.

use ios_chain::crypto::Address;
use ios_chain::types::{Ppm, PPM};
use std::collections::BTreeMap;

/// The total trust of all accounts: each account's trust is its share of
/// the whole in units of 10^-12.
pub const TRUST_SCALE: u64 = 1_000_000_000_000;
/// Iteration stops early once an iteration moves less than this much trust
/// in total (a millionth of the whole).
pub const CONVERGED_L1: u64 = TRUST_SCALE / 1_000_000;
/// Fixed-point unit of the normalised local trust `c_ij`.
const ONE: u128 = 1 << 32;

/// The network's settings of global trust and of ranking by it (the
/// manipulation simulation's defaults; `ios sim --market` shows what they
/// are worth): the weight of the pre-trusted distribution, the rounds run,
/// the share of the listed providers' mean trust at which a provider's lead
/// over the prior counts fully, and the share that counts with no trust.
pub const ALPHA_PPM: Ppm = 150_000;
pub const ITERATIONS: u32 = 30;
pub const FULL_PPM: Ppm = 250_000;
pub const FLOOR_PPM: Ppm = 100_000;

/// The trust at which a provider's lead counts fully: `full_ppm` of the
/// mean of `trusts` (the listed providers').
pub fn trust_full(trusts: impl IntoIterator<Item = u64>, full_ppm: Ppm) -> u64 {
    let (mut sum, mut n) = (0u128, 0u128);
    for t in trusts {
        sum += u128::from(t);
        n += 1;
    }
    let mean = sum / n.max(1);
    (mean * u128::from(full_ppm) / PPM as u128) as u64
}

/// `min(1, trust / full)` in ppm; everything counts when `full` is 0.
pub fn trust_factor(trust: u64, full: u64) -> Ppm {
    if full == 0 {
        return PPM as Ppm;
    }
    let f = u128::from(trust) * PPM as u128 / u128::from(full);
    f.min(PPM as u128) as Ppm
}

/// A provider's rank key, thousandths of a star: its score, of which the
/// part above the prior counts in proportion to its trust, above a floor:
/// `prior + (score - prior) * (floor + (1 - floor) * min(1, trust / full))`
/// when `score > prior`, else `score`. Low scores need no trust to be
/// believed; a high one from accounts nobody trusts keeps only `floor` of
/// its lead.
pub fn rank_key(score: u32, prior: u32, trust: u64, full: u64, floor_ppm: Ppm) -> u32 {
    if score <= prior {
        return score;
    }
    let floor = u64::from(floor_ppm).min(PPM);
    let factor = floor + u64::from(trust_factor(trust, full)) * (PPM - floor) / PPM;
    prior + (u64::from(score - prior) * factor / PPM) as u32
}

/// One revealed rating, as global trust sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    pub rater: Address,
    pub ratee: Address,
    /// The rating's FTFS weight (`ftfs::weight`); zero adds nothing.
    pub weight: u64,
    /// Overall stars; values outside 1..=5 are clamped.
    pub overall: u8,
}

/// Global trust of every account that rates, is rated or is pre-trusted,
/// in units of `1 / TRUST_SCALE`; the values add up to exactly `TRUST_SCALE`
/// (rounding residue returns through the pre-trusted distribution).
///
/// `alpha_ppm` is the weight of the pre-trusted distribution in each round
/// (values above `PPM` count as `PPM`). Without pre-trusted accounts `p` is
/// uniform over all accounts, which gives no resistance to Sybil rings:
/// genesis should always name some.
pub fn global_trust(
    edges: &[Edge],
    pre_trusted: &[Address],
    alpha_ppm: Ppm,
    iterations: u32,
) -> BTreeMap<Address, u64> {
    let mut nodes: Vec<Address> = edges
        .iter()
        .flat_map(|e| [e.rater, e.ratee])
        .chain(pre_trusted.iter().copied())
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    if nodes.is_empty() {
        return BTreeMap::new();
    }
    let index = |a: &Address| nodes.binary_search(a).unwrap_or_default();
    let n = nodes.len();

    let p = pre_trusted_distribution(&nodes, pre_trusted);
    let rows = normalised_local_trust(n, edges, index);

    let a = u128::from(alpha_ppm).min(PPM as u128);
    let mut t = p.clone();
    let mut spread = vec![0u128; n];
    for _ in 0..iterations {
        spread.iter_mut().for_each(|s| *s = 0);
        let mut dangling = 0u128;
        for (row, &ti) in rows.iter().zip(&t) {
            if ti == 0 {
                continue;
            }
            if row.is_empty() {
                dangling += u128::from(ti);
            }
            for &(j, c) in row {
                // ti < 2^40 and c <= 2^32: no overflow.
                spread[j as usize] += (u128::from(ti) * c) >> 32;
            }
        }
        let mut next: Vec<u64> = spread
            .iter()
            .zip(&p)
            .map(|(&s, &pj)| {
                let followed = s + dangling * u128::from(pj) / u128::from(TRUST_SCALE);
                (followed * (PPM as u128 - a) / PPM as u128) as u64
            })
            .collect();
        // What is not followed (a, plus rounding) teleports to p.
        let kept: u64 = next.iter().sum();
        let teleport = TRUST_SCALE.saturating_sub(kept);
        distribute(&mut next, &p, teleport);
        let change: u64 = next.iter().zip(&t).map(|(x, y)| x.abs_diff(*y)).sum();
        t = next;
        if change < CONVERGED_L1 {
            break;
        }
    }
    nodes.into_iter().zip(t).collect()
}

/// `p`: the whole trust split evenly over the pre-trusted accounts (over all
/// accounts if there are none), the remainder to the first ones.
fn pre_trusted_distribution(nodes: &[Address], pre_trusted: &[Address]) -> Vec<u64> {
    let chosen: Vec<bool> = if pre_trusted.is_empty() {
        vec![true; nodes.len()]
    } else {
        nodes
            .iter()
            .map(|a| pre_trusted.contains(a))
            .collect::<Vec<_>>()
    };
    let count = chosen.iter().filter(|&&c| c).count() as u64;
    let mut p = vec![0u64; nodes.len()];
    let mut remainder = TRUST_SCALE % count;
    for (pj, _) in p.iter_mut().zip(&chosen).filter(|(_, &c)| c) {
        *pj = TRUST_SCALE / count + u64::from(remainder > 0);
        remainder = remainder.saturating_sub(1);
    }
    p
}

/// Adds `amount` to `t` in proportion to `p` (which adds up to
/// `TRUST_SCALE`), the rounding remainder to the first account of `p`.
fn distribute(t: &mut [u64], p: &[u64], amount: u64) {
    let mut given = 0u64;
    for (tj, &pj) in t.iter_mut().zip(p) {
        let share = (u128::from(amount) * u128::from(pj) / u128::from(TRUST_SCALE)) as u64;
        *tj += share;
        given += share;
    }
    if let Some(first) = p.iter().position(|&pj| pj > 0) {
        t[first] += amount - given;
    }
}

/// Row i: `(j, c_ij)` with `c_ij` in units of 2^-32, for every j that i
/// trusts on balance; empty if i trusts no one.
fn normalised_local_trust(
    n: usize,
    edges: &[Edge],
    index: impl Fn(&Address) -> usize,
) -> Vec<Vec<(u32, u128)>> {
    let mut local: Vec<(u32, u32, i128)> = edges
        .iter()
        .filter(|e| e.rater != e.ratee && e.weight > 0)
        .map(|e| {
            let stars = i128::from(e.overall.clamp(1, 5)) - 3;
            (
                index(&e.rater) as u32,
                index(&e.ratee) as u32,
                i128::from(e.weight) * stars,
            )
        })
        .collect();
    local.sort_unstable_by_key(|&(i, j, _)| (i, j));
    // s_ij summed, then only its positive part kept.
    let mut positive: Vec<(u32, u32, u128)> = Vec::new();
    let mut k = 0;
    while k < local.len() {
        let (i, j, _) = local[k];
        let mut s = 0i128;
        while k < local.len() && (local[k].0, local[k].1) == (i, j) {
            s = s.saturating_add(local[k].2);
            k += 1;
        }
        if s > 0 {
            positive.push((i, j, s as u128));
        }
    }
    let mut rows = vec![Vec::new(); n];
    for row_entries in positive.chunk_by(|x, y| x.0 == y.0) {
        let i = row_entries[0].0 as usize;
        let sum = row_entries
            .iter()
            .fold(0u128, |acc, e| acc.saturating_add(e.2));
        // Keep s_ij <= sum < 2^64 so that s_ij * 2^32 cannot overflow.
        let shift = 64u32.saturating_sub(sum.leading_zeros());
        let sum = (sum >> shift).max(1);
        rows[i] = row_entries
            .iter()
            .map(|&(_, j, s)| (j, (s >> shift) * ONE / sum))
            .filter(|&(_, c)| c > 0)
            .collect();
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addr(i: u8) -> Address {
        Address([i; 32])
    }

    fn edge(rater: u8, ratee: u8, weight: u64, overall: u8) -> Edge {
        Edge {
            rater: addr(rater),
            ratee: addr(ratee),
            weight,
            overall,
        }
    }

    /// Runs global trust and checks what must hold for every input.
    fn trust(edges: &[Edge], pre: &[u8]) -> BTreeMap<Address, u64> {
        let pre: Vec<Address> = pre.iter().map(|&i| addr(i)).collect();
        let t = global_trust(edges, &pre, 150_000, 50);
        if !t.is_empty() {
            assert_eq!(t.values().sum::<u64>(), TRUST_SCALE);
        }
        t
    }

    fn of(t: &BTreeMap<Address, u64>, i: u8) -> u64 {
        t.get(&addr(i)).copied().unwrap_or(0)
    }

    #[test]
    fn trust_flows_from_the_pre_trusted_along_good_ratings() {
        // 1 is pre-trusted and rates 2 well; 2 rates 3 well; 1 rates 4 badly.
        let t = trust(
            &[
                edge(1, 2, 1_000_000, 5),
                edge(2, 3, 1_000_000, 4),
                edge(1, 4, 1_000_000, 1),
            ],
            &[1],
        );
        assert!(of(&t, 1) > 0 && of(&t, 2) > 0 && of(&t, 3) > 0);
        assert_eq!(of(&t, 4), 0);
        // Trust follows the chain: 1 keeps a share, 2 gets most of the rest.
        assert!(of(&t, 2) > of(&t, 4));
    }

    #[test]
    fn an_isolated_ring_gets_nothing_however_much_it_rates_itself() {
        let mut edges = vec![edge(1, 2, 1_000_000, 5), edge(2, 1, 1_000_000, 5)];
        for round in 0..50 {
            for i in 10..16u8 {
                let j = 10 + (i - 10 + 1) % 6;
                edges.push(edge(i, j, 50_000_000 + round, 5));
            }
        }
        let t = trust(&edges, &[1]);
        for i in 10..16 {
            assert_eq!(of(&t, i), 0, "ring member {i}");
        }
        assert!(of(&t, 1) + of(&t, 2) == TRUST_SCALE);
        // One honest good rating of a ring member lets trust in, and the
        // ring keeps it circulating; that is why ranking also needs scores.
        edges.push(edge(2, 10, 1_000_000, 4));
        let t = trust(&edges, &[1]);
        assert!(of(&t, 11) > 0);
    }

    #[test]
    fn neutral_and_bad_ratings_give_no_trust_and_weight_counts() {
        let t = trust(
            &[
                edge(1, 2, 1_000_000, 3),
                edge(1, 3, 3_000_000, 4),
                edge(1, 4, 1_000_000, 4),
                edge(1, 5, 0, 5),
                edge(1, 6, 5_000_000, 5),
                edge(1, 6, 5_000_000, 1),
            ],
            &[1],
        );
        assert_eq!(of(&t, 2), 0);
        assert_eq!(of(&t, 5), 0);
        assert_eq!(of(&t, 6), 0, "a good and a bad rating cancel out");
        // 3 is trusted three times as much as 4 (up to rounding).
        let (t3, t4) = (of(&t, 3), of(&t, 4));
        assert!(t3.abs_diff(3 * t4) < 10, "{t3} vs {t4}");
    }

    #[test]
    fn empty_and_degenerate_inputs() {
        assert!(global_trust(&[], &[], 150_000, 10).is_empty());
        // Only pre-trusted accounts: they share everything.
        let t = trust(&[], &[1, 2, 3]);
        assert_eq!(of(&t, 1) + of(&t, 2) + of(&t, 3), TRUST_SCALE);
        assert_eq!(of(&t, 1), 333_333_333_334);
        // No iterations: the pre-trusted distribution itself.
        let t = global_trust(&[edge(1, 2, 1, 5)], &[addr(1)], 150_000, 0);
        assert_eq!((of(&t, 1), of(&t, 2)), (TRUST_SCALE, 0));
        // Self-ratings are ignored, stars are clamped, alpha is capped.
        let t = trust(&[edge(1, 1, 9, 5), edge(1, 2, 9, 200)], &[1]);
        assert!(of(&t, 2) > 0);
        let t = global_trust(&[edge(1, 2, 9, 5)], &[addr(1)], u32::MAX, 10);
        assert_eq!((of(&t, 1), of(&t, 2)), (TRUST_SCALE, 0));
        // Without pre-trusted accounts p is uniform.
        let t = trust(&[edge(1, 2, 9, 2)], &[]);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn the_result_does_not_depend_on_the_order_of_ratings() {
        let mut edges: Vec<Edge> = (0..40u8)
            .map(|k| edge(k % 7, (k * 3 + 1) % 9, 1_000 + u64::from(k), 1 + k % 5))
            .collect();
        let a = trust(&edges, &[0, 1]);
        edges.reverse();
        assert_eq!(a, trust(&edges, &[0, 1]));
        edges.rotate_left(13);
        assert_eq!(a, trust(&edges, &[0, 1]));
    }

    proptest! {
        #[test]
        fn never_panics_and_always_adds_up(
            raw in proptest::collection::vec((0u8..12, 0u8..12, any::<u64>(), any::<u8>()), 0..60),
            pre in proptest::collection::vec(0u8..14, 0..4),
            alpha in any::<u32>(),
            iterations in 0u32..30,
        ) {
            let edges: Vec<Edge> = raw.iter().map(|&(i, j, w, s)| edge(i, j, w, s)).collect();
            let pre: Vec<Address> = pre.iter().map(|&i| addr(i)).collect();
            let t = global_trust(&edges, &pre, alpha, iterations);
            if !t.is_empty() {
                prop_assert_eq!(t.values().sum::<u64>(), TRUST_SCALE);
            }
            prop_assert_eq!(&t, &global_trust(&edges, &pre, alpha, iterations));
        }
    }
}
