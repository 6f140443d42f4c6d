//! Accounts and believability. Believability is the integer (ppm) score that
//! decides who proposes blocks: stake, reputation and Servi, minus penalties.

use crate::error::{ChainError, Result};
use crate::params::BelievabilityParams;
use crate::types::{Amount, Height, Ppm, PPM};
use borsh::{BorshDeserialize, BorshSerialize};
use serde::Serialize;

#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Account {
    /// Spendable IOST.
    pub balance: Amount,
    /// Non-transferable contribution credit; cleared when this account's block finalizes.
    pub servi: u64,
    /// Next expected transaction nonce.
    pub nonce: u64,
    /// Bonded IOST (validators need `min_validator_stake`).
    pub stake: Amount,
    /// IOST leaving stake; slashable until `unbonding_release`.
    pub unbonding: Amount,
    pub unbonding_release: Height,
    /// Reputation in ppm (FTFS feeds it; missed proposals decay it).
    pub reputation: Ppm,
    /// Believability penalty in ppm, set by slashing.
    pub penalty: Ppm,
    /// Proven equivocator: never again in a committee.
    pub jailed: bool,
}

impl Account {
    /// All IOST the account holds in any form (for supply conservation).
    pub fn total_iost(&self) -> Result<Amount> {
        self.balance
            .checked_add(self.stake)
            .and_then(|v| v.checked_add(self.unbonding))
            .ok_or(ChainError::Overflow)
    }

    pub fn debit(&mut self, amount: Amount) -> Result<()> {
        self.balance = self
            .balance
            .checked_sub(amount)
            .ok_or(ChainError::InsufficientFunds {
                need: amount,
                have: self.balance,
            })?;
        Ok(())
    }

    pub fn credit(&mut self, amount: Amount) -> Result<()> {
        self.balance = self
            .balance
            .checked_add(amount)
            .ok_or(ChainError::Overflow)?;
        Ok(())
    }

    /// Moves matured unbonding funds back to the balance.
    pub fn release_unbonded(&mut self, height: Height) -> Result<()> {
        if self.unbonding > 0 && height >= self.unbonding_release {
            let amount = std::mem::take(&mut self.unbonding);
            self.credit(amount)?;
        }
        Ok(())
    }

    /// Believability in ppm:
    /// `(w_stake*min(1, stake/cap) + w_rep*rep + w_servi*min(1, servi/cap)) * (1 - penalty)`.
    pub fn believability(&self, p: &BelievabilityParams) -> Ppm {
        let frac = |v: u64, cap: u64| -> u128 {
            if cap == 0 {
                return PPM as u128;
            }
            (v.min(cap) as u128) * (PPM as u128) / (cap as u128)
        };
        let stake = frac(self.stake, p.stake_cap);
        let servi = frac(self.servi, p.servi_cap);
        let rep = (self.reputation as u128).min(PPM as u128);
        let raw =
            (p.w_stake as u128 * stake + p.w_reputation as u128 * rep + p.w_servi as u128 * servi)
                / PPM as u128;
        let penalty = (self.penalty as u128).min(PPM as u128);
        let b = raw * (PPM as u128 - penalty) / PPM as u128;
        b.min(PPM as u128) as Ppm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> BelievabilityParams {
        BelievabilityParams::default()
    }

    #[test]
    fn believability_follows_the_formula() {
        let p = params();
        let check = |stake: u64, rep: u32, servi: u64, penalty: u32, want: u32| {
            let a = Account {
                stake,
                reputation: rep,
                servi,
                penalty,
                ..Default::default()
            };
            assert_eq!(
                a.believability(&p),
                want,
                "stake={stake} rep={rep} servi={servi}"
            );
        };
        check(0, 0, 0, 0, 0);
        check(p.stake_cap, 1_000_000, p.servi_cap, 0, 1_000_000);
        // caps saturate
        check(p.stake_cap * 10, 1_000_000, p.servi_cap * 10, 0, 1_000_000);
        check(p.stake_cap / 2, 0, 0, 0, 200_000);
        check(0, 500_000, 0, 0, 150_000);
        check(0, 0, p.servi_cap / 4, 0, 75_000);
        check(p.stake_cap, 1_000_000, p.servi_cap, 500_000, 500_000);
        check(p.stake_cap, 1_000_000, p.servi_cap, 1_000_000, 0);
    }

    #[test]
    fn debit_beyond_balance_is_an_error_and_changes_nothing() {
        let mut a = Account {
            balance: 5,
            ..Default::default()
        };
        assert_eq!(
            a.debit(6),
            Err(ChainError::InsufficientFunds { need: 6, have: 5 })
        );
        assert_eq!(a.balance, 5);
        a.balance = u64::MAX;
        assert_eq!(a.credit(1), Err(ChainError::Overflow));
        assert_eq!(a.balance, u64::MAX);
    }
}
