//! Disputes and juries, the pure parts: who is drawn, what a juror commits
//! to, and how revealed votes become a verdict.
//!
//! Jurors are drawn among accounts that opted in, whose believability is at
//! least the floor, excluding the order's parties, by the randomness of the
//! first epoch that begins after the dispute opened (so neither party can
//! know the jury when it opens one). Each juror commits
//! `hash(order, juror, round, share, salt)` to the buyer's share of the
//! price (0 to 1 000 000 ppm), then reveals it; the median of revealed
//! shares is executed. Jurors whose vote is within `agree_within` of the
//! median earn the jury fee and Servi; jurors who did not reveal lose
//! reputation; with fewer than a majority revealed, a new jury is drawn.

use crate::error::MarketError;
use borsh::{BorshDeserialize, BorshSerialize};
use ios_chain::crypto::Address;
use ios_chain::hash::{hash_value, Hash};
use ios_chain::types::{Epoch, Height, Ppm, PPM};
use ios_storage::ContentId;

/// Domain tag of juror vote commitments.
pub const VOTE_TAG: &str = "ios/market/jury-vote";
/// Domain tag of the jury draw.
pub const DRAW_TAG: &str = "ios/market/jury-draw";
/// Bound on a dispute statement, in bytes.
pub const MAX_STATEMENT: usize = 4096;
/// Evidence objects per statement.
pub const MAX_EVIDENCE: usize = 8;

/// One side's case: a statement and HUDS objects as evidence.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Case {
    pub statement: String,
    pub evidence: Vec<ContentId>,
}

impl Case {
    pub fn validate(&self) -> Result<(), MarketError> {
        if self.statement.trim().is_empty() {
            return Err(MarketError::Invalid("a dispute needs a statement".into()));
        }
        crate::ftfs::check_text("statement", &self.statement, MAX_STATEMENT)?;
        if self.evidence.len() > MAX_EVIDENCE {
            return Err(MarketError::Invalid(format!(
                "{} pieces of evidence, at most {MAX_EVIDENCE}",
                self.evidence.len()
            )));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Juror {
    pub address: Address,
    pub commitment: Option<Hash>,
    /// The revealed buyer's share, ppm.
    pub vote: Option<Ppm>,
}

/// A dispute over a delivered order, kept beside the order.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Dispute {
    pub order: Hash,
    pub opened: Height,
    /// The epoch the dispute was opened in: the jury is drawn by a later one's randomness.
    pub opened_epoch: Epoch,
    pub by_buyer: bool,
    pub case: Case,
    /// The other side's answer, once.
    pub answer: Option<Case>,
    /// Draws so far (0 before the first).
    pub round: u8,
    pub jurors: Vec<Juror>,
    /// Commitments are taken up to this block, reveals after it up to `reveal_by`.
    pub commit_by: Height,
    pub reveal_by: Height,
}

impl Dispute {
    pub fn juror_mut(&mut self, who: &Address) -> Result<&mut Juror, MarketError> {
        self.jurors
            .iter_mut()
            .find(|j| j.address == *who)
            .ok_or(MarketError::NotJuror)
    }
}

/// What a juror commits to.
pub fn vote_commitment(
    order: &Hash,
    juror: &Address,
    round: u8,
    share: Ppm,
    salt: &[u8; 32],
) -> Hash {
    hash_value(VOTE_TAG, &(order, juror.0, round, share, salt))
}

/// Draws up to `n` distinct jurors from `candidates` (already filtered and
/// sorted), seeded by the epoch randomness, the order and the round: a
/// partial Fisher-Yates shuffle driven by a hash chain.
pub fn draw(
    candidates: &[Address],
    n: usize,
    randomness: &Hash,
    order: &Hash,
    round: u8,
) -> Vec<Address> {
    let mut pool = candidates.to_vec();
    let take = n.min(pool.len());
    for i in 0..take {
        let h = hash_value(DRAW_TAG, &(randomness, order, round, i as u32));
        let mut b = [0u8; 8];
        b.copy_from_slice(&h.0[..8]);
        let left = (pool.len() - i) as u64;
        let j = i + (u64::from_le_bytes(b) % left) as usize;
        pool.swap(i, j);
    }
    pool.truncate(take);
    pool
}

/// The verdict of the revealed votes: the median (the lower one of an even
/// count), or `None` when fewer than a majority of the jury revealed.
pub fn verdict(jurors: &[Juror]) -> Option<Ppm> {
    let mut votes: Vec<Ppm> = jurors.iter().filter_map(|j| j.vote).collect();
    if votes.is_empty() || votes.len() * 2 <= jurors.len() {
        return None;
    }
    votes.sort_unstable();
    Some(votes[(votes.len() - 1) / 2].min(PPM as Ppm))
}

/// Whether a juror's vote agrees with the verdict closely enough to be paid.
pub fn agrees(vote: Ppm, verdict: Ppm, within: Ppm) -> bool {
    vote.abs_diff(verdict) <= within
}

#[cfg(test)]
mod tests {
    use super::*;

    fn juror(i: u8, vote: Option<Ppm>) -> Juror {
        Juror {
            address: Address([i; 32]),
            commitment: Some(Hash([i; 32])),
            vote,
        }
    }

    #[test]
    fn the_median_of_a_majority_decides() {
        let j = |v: &[Option<Ppm>]| -> Vec<Juror> {
            v.iter()
                .enumerate()
                .map(|(i, v)| juror(i as u8, *v))
                .collect()
        };
        assert_eq!(
            verdict(&j(&[Some(0), Some(1_000_000), Some(400_000)])),
            Some(400_000)
        );
        assert_eq!(
            verdict(&j(&[
                Some(0),
                Some(1_000_000),
                None,
                Some(300_000),
                Some(900_000)
            ])),
            Some(300_000)
        );
        // Two of five revealed: no verdict.
        assert_eq!(verdict(&j(&[Some(0), None, None, Some(1), None])), None);
        // Half is not a majority.
        assert_eq!(verdict(&j(&[Some(0), None])), None);
        assert_eq!(verdict(&[]), None);
        assert!(agrees(450_000, 400_000, 100_000));
        assert!(!agrees(0, 400_000, 100_000));
    }

    #[test]
    fn the_draw_is_deterministic_distinct_and_follows_the_randomness() {
        let cands: Vec<Address> = (0..20u8).map(|i| Address([i; 32])).collect();
        let (r1, r2, o) = (Hash([1; 32]), Hash([2; 32]), Hash([3; 32]));
        let a = draw(&cands, 5, &r1, &o, 1);
        assert_eq!(a, draw(&cands, 5, &r1, &o, 1));
        let mut uniq = a.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), 5);
        assert_ne!(a, draw(&cands, 5, &r2, &o, 1));
        assert_ne!(a, draw(&cands, 5, &r1, &o, 2));
        assert_eq!(draw(&cands[..3], 5, &r1, &o, 1).len(), 3);
        assert!(draw(&[], 5, &r1, &o, 1).is_empty());
    }

    #[test]
    fn cases_are_bounded() {
        let ok = Case {
            statement: "Not what was ordered".into(),
            evidence: vec![ContentId::default()],
        };
        ok.validate().unwrap();
        let empty = Case {
            statement: "  ".into(),
            evidence: vec![],
        };
        assert!(empty.validate().is_err());
        let many = Case {
            evidence: vec![ContentId::default(); MAX_EVIDENCE + 1],
            ..ok.clone()
        };
        assert!(many.validate().is_err());
    }
}
