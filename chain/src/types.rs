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

/// Parses an IOST amount as a person writes it (`12`, `12.5`, `0.00000001`,
/// an optional ` IOST` suffix) into base units; at most 8 decimals.
pub fn parse_iost(s: &str) -> std::result::Result<Amount, String> {
    let t = s.trim();
    let t = t.strip_suffix("IOST").unwrap_or(t).trim();
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (!frac.is_empty() && !digits(frac)) || t.ends_with('.') {
        return Err(format!("{s:?} is not an amount of IOST (like 12 or 0.5)"));
    }
    if frac.len() > 8 {
        return Err(format!(
            "{s:?} has more than 8 decimals (1 IOST = 10^8 units)"
        ));
    }
    let too_large = || format!("{s:?} is more IOST than exists");
    let whole: Amount = whole.parse().map_err(|_| too_large())?;
    let frac: Amount = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<8}").parse().map_err(|_| too_large())?
    };
    whole
        .checked_mul(UNITS_PER_IOST)
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(too_large)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_iost_as_people_write_it() {
        for (text, units) in [
            ("0", 0),
            ("1", UNITS_PER_IOST),
            ("12.5", 1_250_000_000),
            ("0.00000001", 1),
            (" 3 IOST", 3 * UNITS_PER_IOST),
        ] {
            assert_eq!(parse_iost(text), Ok(units), "{text}");
            assert_eq!(parse_iost(&format_iost(units)), Ok(units));
        }
        for bad in [
            "",
            ".",
            "1.",
            ".5",
            "-1",
            "1e3",
            "0.123456789",
            "1,5",
            "99999999999999999999",
        ] {
            assert!(parse_iost(bad).is_err(), "{bad:?}");
        }
    }

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
