//! FTFS, the trustworthy feedback system: what a rating is, how it is
//! committed and revealed, how much it weighs, and how weighted ratings add
//! up to a score and a reputation. Integer math only: these rules run in
//! consensus (the market module) and in the manipulation simulation alike.
//!
//! A rating's weight is the product of three factors, each of which one
//! defence controls (`Defences` turns them off for the simulation's
//! with/without report):
//! - **believability**: `base + b * (1 - base)` in ppm, so a fresh account
//!   counts a little and a believable one fully;
//! - **order value**: `1 + floor(log2(1 + value / unit))`, so a rating
//!   backed by a larger order counts more, but only logarithmically;
//! - **novelty**: `1 / (1 + n)` for the rater's n-th earlier rating of the
//!   same account, so one buyer cannot outvote many by repetition;
//!
//! and a rating between linked accounts (the same account, or two accounts
//! that have ordered from each other) weighs nothing. The score is a
//! Bayesian average against a prior (`prior_mean_milli` worth
//! `prior_weight`), so little evidence stays near the prior.

use crate::error::MarketError;
use borsh::{BorshDeserialize, BorshSerialize};
use ios_chain::hash::{hash_value, Hash};
use ios_chain::types::{Amount, Ppm, PPM};
use serde::Serialize;

/// Bound on a rating's comment, in bytes.
pub const MAX_COMMENT: usize = 1024;
/// Bound on the rated side's one public response, in bytes.
pub const MAX_RESPONSE: usize = 1024;
/// Domain tag of rating commitments.
pub const COMMIT_TAG: &str = "ios/market/rating";

/// Four scores from 1 (worst) to 5 (best).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Scores {
    pub overall: u8,
    pub quality: u8,
    pub communication: u8,
    pub timeliness: u8,
}

impl Scores {
    /// The same score in all four.
    pub fn all(s: u8) -> Scores {
        Scores {
            overall: s,
            quality: s,
            communication: s,
            timeliness: s,
        }
    }

    pub fn as_array(&self) -> [u8; 4] {
        [
            self.overall,
            self.quality,
            self.communication,
            self.timeliness,
        ]
    }
}

/// One side's rating of the other for one order.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Rating {
    pub scores: Scores,
    pub comment: String,
}

impl Rating {
    pub fn validate(&self) -> Result<(), MarketError> {
        if self.scores.as_array().iter().any(|s| !(1..=5).contains(s)) {
            return Err(MarketError::Invalid(format!(
                "scores run from 1 to 5, got {:?}",
                self.scores.as_array()
            )));
        }
        check_text("comment", &self.comment, MAX_COMMENT)
    }

    /// What a rater commits to before either side's rating is revealed:
    /// bound to the order and the rater, so it cannot be replayed elsewhere.
    pub fn commitment(&self, order: &Hash, rater: &[u8; 32], salt: &[u8; 32]) -> Hash {
        hash_value(COMMIT_TAG, &(order, rater, self, salt))
    }
}

/// Free text on chain: bounded, and no control characters but newlines and tabs.
pub fn check_text(what: &'static str, text: &str, max: usize) -> Result<(), MarketError> {
    if text.len() > max {
        return Err(MarketError::TooLong {
            what,
            len: text.len(),
            max,
        });
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(MarketError::Invalid(format!(
            "the {what} holds control characters"
        )));
    }
    Ok(())
}

/// The constants of weighting and scoring (part of the market's parameters).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct FtfsParams {
    /// The believability factor of a rater with none, in ppm.
    pub base_believability: Ppm,
    /// The order value that counts as one unit in the value factor.
    pub value_unit: Amount,
    /// The prior's mean, in thousandths of a star.
    pub prior_mean_milli: u32,
    /// How much the prior weighs, in weight units (one fully believable
    /// rating of a one-unit order is `PPM`).
    pub prior_weight: u64,
}

impl Default for FtfsParams {
    fn default() -> Self {
        FtfsParams {
            base_believability: 100_000,
            value_unit: ios_chain::types::UNITS_PER_IOST,
            prior_mean_milli: 3_000,
            prior_weight: 2 * PPM,
        }
    }
}

/// Which defences apply. On chain all of them do; the manipulation
/// simulation turns each off in turn to show what it buys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Defences {
    pub believability: bool,
    pub value: bool,
    pub novelty: bool,
    pub linked: bool,
}

impl Defences {
    pub const ALL: Defences = Defences {
        believability: true,
        value: true,
        novelty: true,
        linked: true,
    };
}

/// What the chain knows about a rating when it is revealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaterFacts {
    /// The rater's believability (ppm) at the reveal.
    pub believability: Ppm,
    /// What the order was worth (its escrowed price).
    pub order_value: Amount,
    /// Earlier weighted ratings by this rater of the same account.
    pub previous: u32,
    /// Rater and rated are the same account or linked.
    pub linked: bool,
}

/// The weight of one rating, in weight units (ppm-scaled).
pub fn weight(f: &RaterFacts, p: &FtfsParams, d: &Defences) -> u64 {
    if d.linked && f.linked {
        return 0;
    }
    let base = p.base_believability.min(PPM as u32) as u64;
    let b = if d.believability {
        base + (f.believability.min(PPM as u32) as u64) * (PPM - base) / PPM
    } else {
        PPM
    };
    let v = if d.value {
        let units = f.order_value / p.value_unit.max(1);
        1 + u64::from(units.saturating_add(1).ilog2())
    } else {
        1
    };
    let novelty = if d.novelty {
        PPM / (1 + f.previous as u64)
    } else {
        PPM
    };
    // b <= 1e6, v <= 65, novelty <= 1e6: the product fits in u64.
    b * v * novelty / PPM
}

/// The weight of a dispute the provider lost: the jury's verdict counts as
/// `jurors` fully believable first ratings of the order's value, times the
/// buyer's share of the escrow (ppm) that the verdict awarded. It enters the
/// provider's tally as one star (`Tally::add_verdict`). A verdict is not a
/// rater's opinion, so believability, novelty and links do not apply; the
/// value factor does (and goes with `Defences::value`), which is what makes
/// cheating on one large order after many small ones cost its reputation.
pub fn verdict_weight(
    order_value: Amount,
    buyer_share: Ppm,
    jurors: u32,
    p: &FtfsParams,
    d: &Defences,
) -> u64 {
    let one = weight(
        &RaterFacts {
            believability: PPM as Ppm,
            order_value,
            previous: 0,
            linked: false,
        },
        p,
        d,
    );
    let share = u128::from(buyer_share.min(PPM as Ppm));
    let w = u128::from(one) * u128::from(jurors) * share / PPM as u128;
    w.min(u64::MAX as u128) as u64
}

/// Weighted ratings received by one account, as kept on chain.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Tally {
    /// Sum of weights.
    pub weight: u128,
    /// Per score (overall, quality, communication, timeliness): sum of weight x stars.
    pub sums: [u128; 4],
    /// Revealed ratings, weighted or not.
    pub count: u32,
    /// How many revealed ratings gave 1..5 stars overall (unweighted).
    pub histogram: [u32; 5],
}

impl Tally {
    pub fn add(&mut self, w: u64, s: &Scores) {
        let w = w as u128;
        self.weight += w;
        for (sum, star) in self.sums.iter_mut().zip(s.as_array()) {
            *sum += w * star as u128;
        }
        self.count += 1;
        if let Some(h) = self
            .histogram
            .get_mut(usize::from(s.overall.clamp(1, 5)) - 1)
        {
            *h += 1;
        }
    }

    /// A lost dispute (`verdict_weight`): one star in every score with that
    /// weight. It is not a revealed rating, so `count` and `histogram` stay.
    pub fn add_verdict(&mut self, w: u64) {
        let w = w as u128;
        self.weight += w;
        for sum in &mut self.sums {
            *sum += w;
        }
    }

    /// The Bayesian average of each score, in thousandths of a star.
    pub fn scores_milli(&self, p: &FtfsParams) -> [u32; 4] {
        let prior_w = p.prior_weight as u128;
        let prior = p.prior_mean_milli as u128 * prior_w;
        let total = prior_w + self.weight;
        self.sums.map(|sum| {
            if total == 0 {
                return p.prior_mean_milli;
            }
            ((prior + sum * 1_000) / total) as u32
        })
    }

    /// The Bayesian average overall score, in thousandths of a star.
    pub fn overall_milli(&self, p: &FtfsParams) -> u32 {
        self.scores_milli(p)[0]
    }

    /// Reputation in ppm: the score's place between 1 and 5 stars, times
    /// the confidence `weight / (weight + prior_weight)`, so an account
    /// earns reputation only with evidence behind it.
    pub fn reputation(&self, p: &FtfsParams) -> Ppm {
        let score = self.overall_milli(p).clamp(1_000, 5_000) as u128 - 1_000;
        let total = self.weight + p.prior_weight as u128;
        if total == 0 {
            return 0;
        }
        let r = score * PPM as u128 / 4_000 * self.weight / total;
        r.min(PPM as u128) as Ppm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(b: Ppm, value_iost: u64, previous: u32, linked: bool) -> RaterFacts {
        RaterFacts {
            believability: b,
            order_value: value_iost * ios_chain::types::UNITS_PER_IOST,
            previous,
            linked,
        }
    }

    #[test]
    fn weight_follows_its_three_factors() {
        let p = FtfsParams::default();
        let all = Defences::ALL;
        // A fresh rater of a 1-IOST order: base believability, value factor 2.
        assert_eq!(weight(&facts(0, 1, 0, false), &p, &all), 200_000);
        // Fully believable: the whole ppm.
        assert_eq!(weight(&facts(1_000_000, 1, 0, false), &p, &all), 2_000_000);
        // 1023 IOST: log2(1024) = 10, factor 11.
        assert_eq!(
            weight(&facts(1_000_000, 1023, 0, false), &p, &all),
            11_000_000
        );
        // The third rating of the same account counts a third.
        assert_eq!(weight(&facts(1_000_000, 1, 2, false), &p, &all), 666_666);
        // Linked accounts count nothing, unless that defence is off.
        assert_eq!(weight(&facts(1_000_000, 1, 0, true), &p, &all), 0);
        let open = Defences {
            linked: false,
            ..all
        };
        assert_eq!(weight(&facts(1_000_000, 1, 0, true), &p, &open), 2_000_000);
        // Extremes do not overflow.
        assert!(weight(&facts(u32::MAX, u64::MAX / 100_000_000, 0, false), &p, &all) > 0);
    }

    #[test]
    fn the_score_starts_at_the_prior_and_moves_with_evidence() {
        let p = FtfsParams::default();
        let mut t = Tally::default();
        assert_eq!(t.overall_milli(&p), 3_000);
        assert_eq!(t.reputation(&p), 0);
        t.add(p.prior_weight, &Scores::all(5));
        assert_eq!(t.overall_milli(&p), 4_000);
        for _ in 0..98 {
            t.add(p.prior_weight, &Scores::all(5));
        }
        assert_eq!(t.overall_milli(&p), 4_980);
        assert_eq!(t.histogram, [0, 0, 0, 0, 99]);
        // 99 of 100 parts evidence, all five stars: 0.995 * 0.99.
        assert_eq!(t.reputation(&p), 985_050);
    }

    #[test]
    fn a_lost_dispute_weighs_as_the_jury_and_the_order_value() {
        let p = FtfsParams::default();
        let all = Defences::ALL;
        let iost = ios_chain::types::UNITS_PER_IOST;
        // Five jurors, a 1023-IOST order, all to the buyer: 5 x 11 ppm-units.
        assert_eq!(
            verdict_weight(1023 * iost, 1_000_000, 5, &p, &all),
            55_000_000
        );
        // Half to the buyer: half the weight; shares above 100% are capped.
        assert_eq!(
            verdict_weight(1023 * iost, 500_000, 5, &p, &all),
            27_500_000
        );
        assert_eq!(
            verdict_weight(1023 * iost, u32::MAX, 5, &p, &all),
            55_000_000
        );
        // Without the value defence the order's size does not matter.
        let flat = Defences {
            value: false,
            ..all
        };
        assert_eq!(
            verdict_weight(1023 * iost, 1_000_000, 5, &p, &flat),
            5_000_000
        );
        assert!(verdict_weight(u64::MAX, u32::MAX, u32::MAX, &p, &all) > 0);
        // It drags the score towards one star without counting as a rating.
        let mut t = Tally::default();
        t.add(2 * PPM, &Scores::all(5));
        t.add_verdict(4 * PPM);
        assert_eq!(t.overall_milli(&p), (3 * 2 + 5 * 2 + 4) * 1_000 / 8);
        assert_eq!((t.count, t.histogram), (1, [0, 0, 0, 0, 1]));
    }

    #[test]
    fn ratings_are_validated_and_commitments_bind_order_and_rater() {
        let r = Rating {
            scores: Scores::all(4),
            comment: "fast and friendly\n".into(),
        };
        r.validate().unwrap();
        let bad = Rating {
            scores: Scores {
                timeliness: 6,
                ..Scores::all(4)
            },
            comment: String::new(),
        };
        assert!(matches!(bad.validate(), Err(MarketError::Invalid(_))));
        let long = Rating {
            scores: Scores::all(4),
            comment: "x".repeat(MAX_COMMENT + 1),
        };
        assert!(matches!(long.validate(), Err(MarketError::TooLong { .. })));
        let escape = Rating {
            scores: Scores::all(4),
            comment: "\u{1b}[2J".into(),
        };
        assert!(matches!(escape.validate(), Err(MarketError::Invalid(_))));
        let (o1, o2) = (Hash([1; 32]), Hash([2; 32]));
        let salt = [7; 32];
        assert_ne!(
            r.commitment(&o1, &[0; 32], &salt),
            r.commitment(&o2, &[0; 32], &salt)
        );
        assert_ne!(
            r.commitment(&o1, &[0; 32], &salt),
            r.commitment(&o1, &[1; 32], &salt)
        );
        assert_eq!(
            r.commitment(&o1, &[0; 32], &salt),
            r.commitment(&o1, &[0; 32], &salt)
        );
    }
}
