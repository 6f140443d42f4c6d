//! Global trust as a derived view: EigenTrust (`ios_market::trust`) over
//! every revealed rating (both ways) and every dispute a jury decided
//! against a provider, on every account shard, from the pre-trusted
//! accounts the genesis names; and the rank keys it gives the listing
//! search. Rebuilt from chain state by the catalog, never a source of truth
//! (the manipulation simulation, `ios sim --market`, ranks the same way).

use anyhow::Result;
use ios_chain::crypto::Address;
use ios_chain::hash::Hash;
use ios_chain::state::StateStore;
use ios_chain::types::{Height, ShardId};
use ios_market::ftfs::{self, Defences, FtfsParams};
use ios_market::module::{keys, MarketGenesis, MarketParams, RatingRecord};
use ios_market::order::{Order, OrderState};
use ios_market::trust::{self, Edge};
use std::collections::BTreeMap;

/// What one account shard gives global trust.
#[derive(Clone, Debug, Default)]
pub struct ShardTrust {
    pub height: Height,
    pub edges: Vec<Edge>,
    /// Providers with listings here.
    pub providers: Vec<Address>,
}

/// Reads the rating graph of one shard's state (a scan of its ratings and
/// disputes: a gateway's periodic work, off consensus).
pub fn shard_trust(store: &StateStore, params: &MarketParams) -> Result<ShardTrust> {
    let mut edges = Vec::new();
    let order = |id: &Hash| -> Result<Option<Order>> {
        Ok(ios_chain::committee::read::<Order>(
            store,
            &keys::order(id),
        )?)
    };
    let rating_prefix = keys::rating(&Hash::ZERO, 0);
    let rating_prefix = &rating_prefix[..rating_prefix.len() - 33];
    for (k, v) in store.scan(rating_prefix)? {
        let Some(rest) = k.get(rating_prefix.len()..).filter(|r| r.len() == 33) else {
            continue;
        };
        let rec: RatingRecord = ios_chain::codec::decode("rating record", &v, 1 << 20)?;
        let Some(revealed) = rec.revealed else {
            continue;
        };
        let mut id = [0u8; 32];
        id.copy_from_slice(&rest[..32]);
        let Some(o) = order(&Hash(id))? else {
            continue;
        };
        // Side 0 is the buyer rating the provider.
        let (rater, ratee) = if rest[32] == 0 {
            (o.buyer, o.provider)
        } else {
            (o.provider, o.buyer)
        };
        edges.push(Edge {
            rater,
            ratee,
            weight: revealed.weight,
            overall: revealed.rating.scores.overall,
        });
    }
    // A verdict against a provider weighs as one-star ratings by the buyer.
    let dispute_prefix = keys::dispute(&Hash::ZERO);
    let dispute_prefix = &dispute_prefix[..dispute_prefix.len() - 32];
    for (k, v) in store.scan(dispute_prefix)? {
        let Some(rest) = k.get(dispute_prefix.len()..).filter(|r| r.len() == 32) else {
            continue;
        };
        let d: ios_market::jury::Dispute = ios_chain::codec::decode("dispute", &v, 1 << 20)?;
        let mut id = [0u8; 32];
        id.copy_from_slice(rest);
        let Some(o) = order(&Hash(id))? else {
            continue;
        };
        let OrderState::Resolved(r) = &o.state else {
            continue;
        };
        let revealed = d.jurors.iter().filter(|j| j.vote.is_some()).count() as u32;
        let w = ftfs::verdict_weight(
            o.price,
            r.buyer_share,
            revealed,
            &params.ftfs,
            &Defences::ALL,
        );
        if w > 0 {
            edges.push(Edge {
                rater: o.buyer,
                ratee: o.provider,
                weight: w,
                overall: 1,
            });
        }
    }
    let providers: Vec<Address> = ios_market::module::list::all(store, keys::PROVIDERS)?;
    Ok(ShardTrust {
        height: store.head().map_or(0, |h| h.height),
        edges,
        providers,
    })
}

/// Global trust over the whole network, and how it ranks providers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ranking {
    /// Every account that rates, is rated or is pre-trusted, in units of
    /// `1 / trust::TRUST_SCALE` of the whole.
    pub trust: BTreeMap<Address, u64>,
    pub pre_trusted: Vec<Address>,
    /// The trust at which a provider's lead over the prior counts fully.
    pub full: u64,
    /// The network's FTFS settings (scores and their prior).
    pub ftfs: FtfsParams,
    /// The shards' heights it was computed at.
    pub heights: BTreeMap<ShardId, Height>,
    /// Ratings and verdicts it was computed from.
    pub edges: usize,
    /// Every nonzero trust, highest first (places are found in it).
    ranked: Vec<u64>,
}

impl Ranking {
    /// Computes global trust from the shards' graphs (the pure part).
    pub fn compute(shards: &BTreeMap<ShardId, ShardTrust>, genesis: &MarketGenesis) -> Ranking {
        let edges: Vec<Edge> = shards.values().flat_map(|s| s.edges.clone()).collect();
        let t = trust::global_trust(
            &edges,
            &genesis.pre_trusted,
            trust::ALPHA_PPM,
            trust::ITERATIONS,
        );
        let full = trust::trust_full(
            shards
                .values()
                .flat_map(|s| &s.providers)
                .map(|p| t.get(p).copied().unwrap_or(0)),
            trust::FULL_PPM,
        );
        let mut ranked: Vec<u64> = t.values().copied().filter(|v| *v > 0).collect();
        ranked.sort_unstable_by(|a, b| b.cmp(a));
        Ranking {
            ranked,
            trust: t,
            pre_trusted: genesis.pre_trusted.clone(),
            full,
            ftfs: genesis.params.ftfs.clone(),
            heights: shards.iter().map(|(s, t)| (*s, t.height)).collect(),
            edges: edges.len(),
        }
    }

    pub fn trust_of(&self, a: &Address) -> u64 {
        self.trust.get(a).copied().unwrap_or(0)
    }

    /// A provider's rank key for a seller score (`trust::rank_key`).
    pub fn rank_milli(&self, provider: &Address, score_milli: u32) -> u32 {
        trust::rank_key(
            score_milli,
            self.ftfs.prior_mean_milli,
            self.trust_of(provider),
            self.full,
            trust::FLOOR_PPM,
        )
    }

    /// The account's place by trust (1 = most trusted) among the accounts
    /// with any, and their number; None without trust.
    pub fn place(&self, a: &Address) -> Option<(usize, usize)> {
        let mine = self.trust_of(a);
        let above = self.ranked.partition_point(|t| *t > mine);
        (mine > 0).then_some((above + 1, self.ranked.len()))
    }

    /// How many accounts have any trust.
    pub fn trusted(&self) -> usize {
        self.ranked.len()
    }

    /// Accounts with any trust, most trusted first (ties by address).
    pub fn most_trusted(&self) -> Vec<Address> {
        let mut top: Vec<(&Address, &u64)> = self.trust.iter().filter(|(_, t)| **t > 0).collect();
        top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        top.into_iter().map(|(a, _)| *a).collect()
    }

    /// Trust in parts per million of the whole.
    pub fn ppm(&self, a: &Address) -> u64 {
        self.trust_of(a) / (trust::TRUST_SCALE / 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ios_chain::crypto::Keypair;

    fn addr(i: u64) -> Address {
        Keypair::from_seed("trust-view", i).address()
    }

    fn edge(rater: u64, ratee: u64, overall: u8) -> Edge {
        Edge {
            rater: addr(rater),
            ratee: addr(ratee),
            weight: 1_000_000,
            overall,
        }
    }

    /// Trust flows from the pre-trusted along positive ratings: a ring that
    /// rates itself gets none, and its perfect score counts a tenth.
    #[test]
    fn trust_ranks_a_trusted_provider_above_a_self_rated_ring() {
        let genesis = MarketGenesis {
            params: MarketParams::default(),
            pre_trusted: vec![addr(0)],
        };
        let shard = ShardTrust {
            height: 9,
            // 0 (pre-trusted) rates provider 1 well; 2 and 3 rate each other.
            edges: vec![edge(0, 1, 5), edge(2, 3, 5), edge(3, 2, 5)],
            providers: vec![addr(1), addr(3)],
        };
        let r = Ranking::compute(&BTreeMap::from([(1, shard)]), &genesis);
        assert!(r.trust_of(&addr(1)) > 0);
        assert_eq!(r.trust_of(&addr(3)), 0);
        assert_eq!(r.place(&addr(3)), None);
        assert!(r.place(&addr(1)).is_some());
        assert_eq!(r.edges, 3);
        assert_eq!(r.heights[&1], 9);
        // The same 4.8-star score: the trusted provider keeps its lead.
        let (trusted, ring) = (r.rank_milli(&addr(1), 4_800), r.rank_milli(&addr(3), 4_800));
        assert_eq!(ring, 3_000 + 1_800 / 10);
        assert!(trusted > 4_000, "{trusted}");
        // Below the prior, a score counts whatever the trust.
        assert_eq!(r.rank_milli(&addr(3), 2_000), 2_000);
    }
}
