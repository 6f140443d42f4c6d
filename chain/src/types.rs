//! Plain domain scalars shared by every module.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// IOST in base units; 1 IOST = 10^8 units. All arithmetic on it is checked.
pub type Amount = u64;
pub type Height = u64;
pub type Epoch = u64;
pub type Round = u32;
pub type ShardId = u16;
/// Milliseconds: virtual in the simulator, Unix time on a real node.
pub type TimeMs = u64;
/// Parts per million: the fixed-point unit of every fraction in consensus state.
pub type Ppm = u32;

pub const UNITS_PER_IOST: Amount = 100_000_000;
pub const PPM: u64 = 1_000_000;

/// Names the network; part of every signed message so signatures cannot cross chains.
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct ChainId(pub String);

impl ChainId {
    pub const MAX_LEN: usize = 32;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ChainId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Formats base units as IOST with 8 decimals, e.g. `12.5 IOST`.
pub fn format_iost(units: Amount) -> String {
    let whole = units / UNITS_PER_IOST;
    let frac = units % UNITS_PER_IOST;
    if frac == 0 {
        format!("{whole} IOST")
    } else {
        let f = format!("{frac:08}");
        format!("{whole}.{} IOST", f.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_iost() {
        for (units, want) in [
            (0, "0 IOST"),
            (UNITS_PER_IOST, "1 IOST"),
            (UNITS_PER_IOST / 2 * 25, "12.5 IOST"),
            (1, "0.00000001 IOST"),
        ] {
            assert_eq!(format_iost(units), want);
        }
    }
}
