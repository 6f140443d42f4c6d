//! The manipulation simulation as a test: with every defence on, no attack
//! reaches the top quartile of providers and the ranking of honest providers
//! follows their true quality; with each defence off in turn, the attacks it
//! is there for do measurably better. The rendered reports are printed, so a
//! failure shows the whole table.

use ios_market::sim::{run, Attack, Defence, Report, SimConfig};

const SEEDS: [u64; 5] = [1, 2, 3, 4, 5];

fn reports() -> Vec<Report> {
    SEEDS
        .iter()
        .map(|&seed| {
            let r = run(seed, &SimConfig::default());
            println!("{}", r.render());
            r
        })
        .collect()
}

#[test]
fn with_all_defences_no_attack_reaches_the_top_quartile() {
    for r in reports() {
        let all = r.all_defences();
        assert_eq!(all.attacks.len(), Attack::ALL.len(), "seed {}", r.seed);
        for o in &all.attacks {
            assert!(
                o.rank > r.top_quartile(),
                "seed {}: {} ranks #{} of {}",
                r.seed,
                o.attack.name(),
                o.rank,
                r.providers
            );
        }
        assert!(
            all.honest_spearman >= 0.8,
            "seed {}: honest ranking vs true quality {}",
            r.seed,
            all.honest_spearman
        );
        // The cheater had built a top reputation before it cheated, so where
        // it ends is the verdicts' doing, not a reputation it never had.
        assert!(
            all.cheater_rank_before <= r.top_quartile(),
            "seed {}: the cheater was only #{} before cheating",
            r.seed,
            all.cheater_rank_before
        );
        // The bomber's targets stay near the top (ideally ranks 1 to 3).
        assert!(
            all.bomb_victims_mean_rank_milli() <= 6_000,
            "seed {}: bomb victims at {:?}",
            r.seed,
            all.bomb_victim_ranks
        );
    }
}

/// What an attack gains when a defence is off.
#[derive(Clone, Copy, Debug)]
enum Gain {
    /// A higher FTFS score (what the chain shows and what feeds reputation).
    Score,
    /// A better rank than with all defences.
    Rank,
    /// A place in the top quartile.
    TopQuartile,
    /// The bomber's targets fall further (a worse mean rank).
    VictimsFall,
}

/// Each defence and the attacks it is there for.
const TARGETS: &[(Defence, Attack, Gain)] = &[
    (Defence::Believability, Attack::Newcomer, Gain::Score),
    (Defence::Believability, Attack::CheapThenCheat, Gain::Rank),
    (Defence::Value, Attack::CheapThenCheat, Gain::Rank),
    (Defence::Value, Attack::CheapThenCheat, Gain::Score),
    (Defence::Novelty, Attack::SelfDealer, Gain::Score),
    (Defence::Novelty, Attack::SelfDealer, Gain::Rank),
    (Defence::Novelty, Attack::ReviewBomber, Gain::VictimsFall),
    (Defence::Linked, Attack::SybilMesh, Gain::Score),
    (Defence::Linked, Attack::SybilMesh, Gain::Rank),
    (Defence::EigenTrust, Attack::SybilCycle, Gain::TopQuartile),
    (Defence::EigenTrust, Attack::Newcomer, Gain::Rank),
    (Defence::Prior, Attack::Newcomer, Gain::Score),
    (Defence::Prior, Attack::Newcomer, Gain::Rank),
];

fn check(r: &Report, defence: Defence, attack: Attack, gain: Gain) {
    let (on, off) = (r.all_defences(), r.without(Some(defence)));
    let (a, b) = (
        on.outcome(attack).expect("attack present"),
        off.outcome(attack).expect("attack present"),
    );
    let gained = match gain {
        Gain::Score => b.score_milli > a.score_milli,
        Gain::Rank => b.rank < a.rank,
        Gain::TopQuartile => b.rank <= r.top_quartile(),
        Gain::VictimsFall => off.bomb_victims_mean_rank_milli() > on.bomb_victims_mean_rank_milli(),
    };
    assert!(
        gained,
        "seed {}: without {}, {} should gain {gain:?}: rank #{} -> #{}, score {} -> {}",
        r.seed,
        defence.name(),
        attack.name(),
        a.rank,
        b.rank,
        a.score_milli,
        b.score_milli
    );
}

#[test]
fn each_defence_holds_back_the_attacks_it_targets() {
    for r in reports() {
        for &(defence, attack, gain) in TARGETS {
            check(&r, defence, attack, gain);
        }
    }
    // Every defence is exercised by at least one target.
    for d in Defence::ALL {
        assert!(TARGETS.iter().any(|t| t.0 == d), "{} untested", d.name());
    }
}
