//! `ios committee-risk`: how large a shard committee must be. With N validators of whom K are
//! Byzantine and committees drawn by a uniformly random permutation (the design's election,
//! as in OmniLedger), the number of Byzantine members of one committee of n is hypergeometric,
//! and the committee is unsafe when it exceeds f = floor((n - 1) / 3). This prints that tail
//! for a grid of committee sizes and Byzantine shares. It is an operator's sizing tool, not
//! consensus code, so it computes in f64, in log space so that tails far below 1e-300 neither
//! overflow the binomials nor underflow the sum.

use anyhow::Result;
use clap::Args;
use serde_json::json;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct RiskArgs {
    /// Validators in the pool committees are drawn from (N).
    #[arg(long, default_value_t = 2_000)]
    validators: u64,
    /// Byzantine shares to tabulate, in percent of the validators, comma separated.
    #[arg(long, default_value = "10,15,20,25,30")]
    byzantine: String,
    /// Committee sizes to tabulate, comma separated.
    #[arg(long, default_value = "16,32,64,100,128,200,256,400,600")]
    sizes: String,
    /// Also report, per Byzantine share, the smallest listed size whose tail is below this probability.
    #[arg(long)]
    target: Option<f64>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// The largest pool accepted: the math is O(n) per cell, but a pool beyond every realistic
/// validator set is far more likely a typo than a question.
const MAX_VALIDATORS: u64 = 100_000_000;

/// Below this a cell prints as `< 1e-300`: f64 goes subnormal near 1e-308, and no operator
/// decision depends on the digits that far down.
const FLOOR: f64 = 1e-300;

/// The largest number of Byzantine members a committee of `size` tolerates.
fn faults(size: u64) -> u64 {
    size.saturating_sub(1) / 3
}

/// ln C(a, b), summing ln((a - m + i) / i) for i = 1..=m with m = min(b, a - b), so the cost is
/// O(min(b, a - b)) and no factorial of a large pool is ever formed.
fn ln_choose(a: u64, b: u64) -> f64 {
    if b > a {
        return f64::NEG_INFINITY;
    }
    let m = b.min(a - b);
    (1..=m).map(|i| ((a - m + i) as f64 / i as f64).ln()).sum()
}

/// ln P[X > f] for X hypergeometric (pool `n_total`, `byzantine` marked, `size` drawn) and
/// f = floor((size - 1) / 3); negative infinity when more than f is impossible.
fn ln_tail(n_total: u64, byzantine: u64, size: u64) -> f64 {
    let honest = n_total.saturating_sub(byzantine);
    // X ranges over max(0, size - honest) ..= min(size, byzantine).
    let lo = (faults(size) + 1).max(size.saturating_sub(honest));
    let hi = size.min(byzantine);
    if size == 0 || size > n_total || byzantine > n_total || lo > hi {
        return f64::NEG_INFINITY;
    }
    // The first term directly, the rest by the ratio of consecutive terms
    // t(x+1)/t(x) = (K - x)(n - x) / ((x + 1)(N - K - n + x + 1)): O(size) for the whole tail.
    let mut ln_t =
        ln_choose(byzantine, lo) + ln_choose(honest, size - lo) - ln_choose(n_total, size);
    let mut terms = Vec::with_capacity((hi - lo + 1) as usize);
    terms.push(ln_t);
    for x in lo..hi {
        ln_t += ((byzantine - x) as f64 * (size - x) as f64).ln()
            - ((x + 1) as f64 * (honest + x + 1 - size) as f64).ln();
        terms.push(ln_t);
    }
    // Log-sum-exp: scale by the largest term so the sum neither overflows nor loses the tail.
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = terms.iter().map(|t| (t - max).exp()).sum();
    // Rounding can push a certain event a hair above probability 1.
    (max + sum.ln()).min(0.0)
}

/// P[X > f]: the probability that a uniformly random committee of `size` from `n_total`
/// validators, `byzantine` of them Byzantine, has more Byzantine members than it tolerates.
/// Zero when that is impossible or when the probability underflows f64.
fn tail(n_total: u64, byzantine: u64, size: u64) -> f64 {
    ln_tail(n_total, byzantine, size).exp()
}

/// K = floor(p * N) for p in percent. Decimal shares such as 33.3 are not exact in binary, so
/// a product within 1e-9 of an integer counts as that integer rather than flooring one below.
fn byzantine_count(n_total: u64, pct: f64) -> u64 {
    let k = pct * n_total as f64 / 100.0;
    let r = k.round();
    (if (k - r).abs() < 1e-9 { r } else { k.floor() }) as u64
}

/// One cell: the tail and its natural log, which stays finite where the tail underflows to 0.
#[derive(Clone, Copy)]
struct Cell {
    p: f64,
    ln: f64,
}

fn cell(n_total: u64, byzantine: u64, size: u64) -> Cell {
    let p = tail(n_total, byzantine, size);
    let ln = if p > 0.0 {
        p.ln()
    } else {
        // Only an underflowed or impossible cell needs the log computed again.
        ln_tail(n_total, byzantine, size)
    };
    Cell { p, ln }
}

/// `3.1e-07`: one decimal, a signed two-digit exponent, as papers print tails; `0` only when
/// the event is impossible, `< 1e-300` when it is merely too rare for the digits to matter.
fn sci(c: Cell) -> String {
    if c.ln == f64::NEG_INFINITY {
        return "0".into();
    }
    if c.ln < FLOOR.ln() {
        return "< 1e-300".into();
    }
    let p = c.p;
    let s = format!("{p:.1e}");
    match s.split_once('e') {
        Some((m, e)) => {
            let (sign, digits) = match e.strip_prefix('-') {
                Some(d) => ("-", d),
                None => ("+", e),
            };
            format!("{m}e{sign}{digits:0>2}")
        }
        None => s,
    }
}

fn parse_list<T: std::str::FromStr>(flag: &str, s: &str) -> Result<Vec<T>, String> {
    let items: Vec<&str> = s
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    if items.is_empty() {
        return Err(format!("{flag} needs at least one value"));
    }
    items
        .iter()
        .map(|t| {
            t.parse()
                .map_err(|_| format!("{flag}: {t:?} is not a number"))
        })
        .collect()
}

struct Inputs {
    validators: u64,
    /// (percent, K), ascending.
    shares: Vec<(f64, u64)>,
    /// Ascending, distinct.
    sizes: Vec<u64>,
    target: Option<f64>,
}

fn validate(a: &RiskArgs) -> Result<Inputs, String> {
    let n = a.validators;
    if !(1..=MAX_VALIDATORS).contains(&n) {
        return Err(format!(
            "--validators must be between 1 and {MAX_VALIDATORS}, got {n}"
        ));
    }
    let mut pcts: Vec<f64> = parse_list("--byzantine", &a.byzantine)?;
    for &p in &pcts {
        // NaN fails this too.
        if !(0.0..=100.0).contains(&p) {
            return Err(format!(
                "--byzantine {p} is outside 0..100 (a percentage of the validators)"
            ));
        }
    }
    pcts.sort_by(f64::total_cmp);
    pcts.dedup();
    let mut sizes: Vec<u64> = parse_list("--sizes", &a.sizes)?;
    for &s in &sizes {
        if s == 0 || s > n {
            return Err(format!(
                "--sizes {s}: a committee needs between 1 and --validators ({n}) members"
            ));
        }
    }
    sizes.sort_unstable();
    sizes.dedup();
    if let Some(t) = a.target {
        if !(t > 0.0 && t <= 1.0) {
            return Err(format!("--target {t} is not a probability in (0, 1]"));
        }
    }
    Ok(Inputs {
        validators: n,
        shares: pcts
            .into_iter()
            .map(|p| (p, byzantine_count(n, p)))
            .collect(),
        sizes,
        target: a.target,
    })
}

pub fn run(a: RiskArgs) -> Result<ExitCode> {
    let inp = match validate(&a) {
        Ok(i) => i,
        Err(e) => {
            // Bad input is a usage error, the same exit code clap uses for its own.
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let n_total = inp.validators;
    // grid[row = size][column = share]
    let grid: Vec<Vec<Cell>> = inp
        .sizes
        .iter()
        .map(|&s| {
            inp.shares
                .iter()
                .map(|&(_, k)| cell(n_total, k, s))
                .collect()
        })
        .collect();
    // Per share: the smallest listed size below the target. The tail is not monotone in n
    // (f steps every third size), so this is the smallest that passes, not a threshold above
    // which every size passes.
    let smallest: Vec<Option<u64>> = inp
        .target
        .map(|t| {
            (0..inp.shares.len())
                .map(|c| {
                    inp.sizes
                        .iter()
                        .zip(&grid)
                        .find(|(_, row)| row[c].p < t)
                        .map(|(&s, _)| s)
                })
                .collect()
        })
        .unwrap_or_default();

    if a.json {
        let mut cells = Vec::new();
        for (&s, row) in inp.sizes.iter().zip(&grid) {
            for (&(pct, k), &c) in inp.shares.iter().zip(row) {
                cells.push(json!({
                    "size": s,
                    "f": faults(s),
                    "byzantine_percent": pct,
                    "byzantine": k,
                    "tail": c.p,
                    // null when more than f Byzantine members is impossible.
                    "log10_tail": c.ln / std::f64::consts::LN_10,
                }));
            }
        }
        let mut out = json!({
            "validators": n_total,
            "byzantine_percent": inp.shares.iter().map(|s| s.0).collect::<Vec<_>>(),
            "byzantine": inp.shares.iter().map(|s| s.1).collect::<Vec<_>>(),
            "sizes": inp.sizes,
            "cells": cells,
        });
        if let Some(t) = inp.target {
            out["target"] = json!(t);
            out["smallest_size_below_target"] = json!(inp
                .shares
                .iter()
                .zip(&smallest)
                .map(|(&(pct, _), s)| json!({ "byzantine_percent": pct, "size": s }))
                .collect::<Vec<_>>());
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }

    println!(
        "N = {n_total} validators; cell = P[a uniformly random committee of n has more than f = floor((n-1)/3) Byzantine members]"
    );
    let mut head = format!("{:>6} {:>5} |", "n", "f");
    let mut head_k = format!("{:>6} {:>5} |", "", "");
    for &(pct, k) in &inp.shares {
        head.push_str(&format!(" {:>10}", format!("p={pct}%")));
        head_k.push_str(&format!(" {:>10}", format!("K={k}")));
    }
    println!("{head}");
    println!("{head_k}");
    for (&s, row) in inp.sizes.iter().zip(&grid) {
        let mut line = format!("{:>6} {:>5} |", s, faults(s));
        for &c in row {
            line.push_str(&format!(" {:>10}", sci(c)));
        }
        println!("{line}");
    }
    if let Some(t) = inp.target {
        println!(
            "smallest listed n with a tail below {}:",
            sci(Cell { p: t, ln: t.ln() })
        );
        for (&(pct, _), s) in inp.shares.iter().zip(&smallest) {
            match s {
                Some(s) => println!("  p={pct}%: n = {s} (f = {})", faults(*s)),
                None => println!("  p={pct}%: none of the listed sizes"),
            }
        }
    }
    println!("per committee; for S shards over E epochs the union bound is S x E times a cell");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choose(a: u128, b: u128) -> u128 {
        if b > a {
            return 0;
        }
        // Each prefix product divided by i! is itself a binomial, so the division is exact.
        (0..b).fold(1, |acc, i| acc * (a - i) / (i + 1))
    }

    /// The tail as an exact ratio of integers, then one division.
    fn exact(n: u64, k: u64, size: u64) -> f64 {
        let (n, k, size) = (n as u128, k as u128, size as u128);
        let f = (size - 1) / 3;
        let num: u128 = (f + 1..=size.min(k))
            .map(|x| choose(k, x) * choose(n - k, size - x))
            .sum();
        num as f64 / choose(n, size) as f64
    }

    #[test]
    fn matches_exact_arithmetic_for_a_worked_case() {
        // f = 1: x = 2, 3, 4 give 10*105 + 10*15 + 5*1 = 1205 of C(20,4) = 4845 committees.
        assert_eq!(exact(20, 5, 4), 1205.0 / 4845.0);
        let t = tail(20, 5, 4);
        assert!((t - 1205.0 / 4845.0).abs() < 1e-14, "{t}");
    }

    #[test]
    fn matches_exact_arithmetic_on_every_small_case() {
        for n in 1..=40u64 {
            for k in 0..=n {
                for size in 1..=n {
                    let (got, want) = (tail(n, k, size), exact(n, k, size));
                    let err = if want == 0.0 {
                        got
                    } else {
                        (got - want).abs() / want
                    };
                    assert!(err < 1e-12, "N={n} K={k} n={size}: {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn edge_cases() {
        // Nobody Byzantine: never unsafe. Everybody: always.
        assert_eq!(tail(2_000, 0, 64), 0.0);
        assert_eq!(tail(2_000, 2_000, 64), 1.0);
        // One member tolerates none: unsafe exactly when that member is Byzantine.
        assert!((tail(2_000, 500, 1) - 0.25).abs() < 1e-15);
        // Fewer Byzantine validators than f + 1 cannot break any committee.
        assert_eq!(tail(2_000, 21, 64), 0.0);
        assert_eq!(ln_tail(2_000, 21, 64), f64::NEG_INFINITY);
    }

    #[test]
    fn omniledger_scale_figure() {
        // N = 2000, 25% Byzantine, n = 600 (f = 199): 200+ of a mean 150 with sd ~8.9 is far
        // out in the tail. OmniLedger sizes ~600 for 25% at a 1e-6 failure target.
        let t = tail(2_000, 500, 600);
        assert!(t > 0.0 && t < 1e-6, "{t}");
        // The exact value, from big-integer arithmetic outside this crate, is 2.020e-08.
        assert!((t / 2.020e-8 - 1.0).abs() < 1e-3, "{t}");
        // A larger pool at the same share is closer to the binomial, whose tail is heavier.
        assert!(tail(100_000, 25_000, 600) > t);
        // Larger committees at the same share are safer.
        assert!(tail(2_000, 500, 64) > tail(2_000, 500, 256));
    }

    #[test]
    fn far_tails_stay_finite_in_log_space() {
        // 5% of 20 000 Byzantine, n = 3000 (f = 999): the exact tail, from big-integer
        // arithmetic outside this crate, is 10^-894.90, far below f64's smallest value.
        assert_eq!(tail(20_000, 1_000, 3_000), 0.0);
        let log10 = ln_tail(20_000, 1_000, 3_000) / std::f64::consts::LN_10;
        assert!((log10 + 894.90).abs() < 0.01, "{log10}");
        assert_eq!(sci(cell(20_000, 1_000, 3_000)), "< 1e-300");
        // Impossible (more than f needs more Byzantine validators than exist) prints as 0.
        assert_eq!(sci(cell(2_000, 21, 64)), "0");
    }

    #[test]
    fn large_pools_are_fast_and_sane() {
        let start = std::time::Instant::now();
        for size in [16, 64, 600, 5_000] {
            let t = tail(100_000, 25_000, size);
            assert!((0.0..=1.0).contains(&t), "{size}: {t}");
        }
        assert!(start.elapsed().as_secs_f64() < 1.0);
    }

    #[test]
    fn formats_like_papers_do() {
        let sci = |p: f64| sci(Cell { p, ln: p.ln() });
        assert_eq!(sci(3.1e-7), "3.1e-07");
        assert_eq!(sci(0.25), "2.5e-01");
        assert_eq!(sci(1.0), "1.0e+00");
        assert_eq!(sci(9.96e-7), "1.0e-06");
        assert_eq!(sci(0.0), "0");
        assert_eq!(sci(1e-301), "< 1e-300");
    }

    #[test]
    fn shares_count_whole_validators() {
        assert_eq!(byzantine_count(2_000, 15.0), 300);
        assert_eq!(byzantine_count(2_000, 33.3), 666);
        assert_eq!(byzantine_count(7, 25.0), 1);
    }
}
