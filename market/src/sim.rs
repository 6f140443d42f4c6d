//! The manipulation simulation: a market of honest buyers and providers over
//! many epochs, at the level of FTFS (not the chain), with attackers trying
//! to climb the ranking, run once with all defences and once with each
//! defence off, so the report shows what each one buys.
//!
//! A pure function of a seed: a self-contained PRNG (splitmix64), integer
//! math everywhere on the scoring path, sorted collections only. Floats
//! appear only in the final Spearman correlation and the rendered table.
//!
//! **The market.** Honest providers have a hidden true quality spread from
//! one to five stars and a base price. Each epoch every honest buyer orders
//! with some probability: mostly the best-ranked of a few providers drawn at
//! random (a tournament, so better rank means more orders), sometimes any
//! provider (exploration), a package of one to eight times the base price.
//! The buyer rates the true quality with noise; the provider rates the buyer.
//! All orders of an epoch are placed before any of them is rated, as on chain
//! where a rating comes blocks after its order.
//!
//! **The rules, as the chain applies them.** A rating's weight is
//! `ftfs::weight` with the rater's believability at the reveal
//! (`Account::believability` over its Servi, its reputation from every
//! rating it received, and its stake), the order's value, the rater's
//! earlier ratings of the same account, and whether the two are linked:
//! the same account, or two accounts that have each placed an order with the
//! other (an order counts from the moment it is placed, whatever becomes of
//! it; a rating revealed before the link formed keeps its weight). Revealing a rating earns `servi_per_rating` times its novelty
//! (nothing if linked). A dispute lost counts as `ftfs::verdict_weight`.
//!
//! **The attacks** (each provider delivers its true quality to the honest
//! buyers it serves; fake storefronts decline outside orders, since an honest
//! rating would show what they deliver):
//! - *sybil mesh*: fresh providers that order from each other, every pair
//!   both ways, with self-funded orders (they pay only the commission), and
//!   rate each other five stars; a fake storefront;
//! - *sybil cycle*: the same, but member i orders only from the next few
//!   members, so no two have ordered from each other and no link shows;
//! - *self-dealer*: a poor provider whose second account orders its largest
//!   package every epoch and rates it five stars (it rates the shill five);
//! - *review bomber*: a mediocre provider that each epoch buys the cheapest
//!   package of the three best competitors and rates them one star;
//! - *cheap-then-cheat*: an excellent provider of one cheap service that,
//!   once at the top, takes a few large orders and does not deliver: the
//!   buyers rate it one star and win their disputes (all of the escrow);
//! - *newcomer*: a fake storefront that appears two epochs before the end
//!   with a couple of five-star ratings from fresh accounts.
//!
//! **Ranking.** A provider's rank key is its FTFS Bayesian overall score
//! (`Tally::overall_milli`), in thousandths of a star. With EigenTrust on,
//! the part of a score above the prior mean counts in proportion to the
//! provider's global trust, above a floor:
//!
//! ```text
//! key = prior + (score - prior) * (floor + (1 - floor) * min(1, trust / trust_full))
//!       when score > prior, else score
//! ```
//!
//! where `trust_full` is `trust_full_ppm` (25%) of the mean trust of listed
//! providers and `floor` is `trust_floor_ppm` (10%). Low scores need no
//! trust to be believed; a high score from accounts nobody trusts keeps only
//! a tenth of its lead (so a newcomer is not flattened to the prior, but a
//! ring cannot buy its way up). Global trust is recomputed every
//! `trust_every` epochs with the first `pre_trusted` honest buyers
//! (long-standing genesis accounts with stake) as pre-trusted; its edges are
//! all revealed ratings, both ways, and verdicts, with their FTFS weights.

use crate::ftfs::{self, Defences, FtfsParams, RaterFacts, Scores, Tally};
use crate::trust::{self, Edge};
use ios_chain::account::Account;
use ios_chain::crypto::Address;
use ios_chain::params::BelievabilityParams;
use ios_chain::types::{Amount, Ppm, PPM, UNITS_PER_IOST};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

const IOST: Amount = UNITS_PER_IOST;

/// The market and the attacks. `Default` is the configuration the report
/// and the tests use.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub honest_providers: u32,
    pub honest_buyers: u32,
    pub epochs: u32,
    /// The first this many honest buyers are genesis accounts: pre-trusted
    /// in EigenTrust and staked (half the believability stake cap).
    pub pre_trusted: u32,
    /// Chance that an honest buyer orders in an epoch.
    pub order_ppm: Ppm,
    /// Chance that an order goes to a provider drawn uniformly, not ranked.
    pub explore_ppm: Ppm,
    /// Providers drawn per ranked choice; the best-ranked one gets the order.
    pub tournament: u32,
    /// Market commission on an order's value (what self-funded orders cost).
    pub commission_ppm: Ppm,
    /// Servi for revealing a first rating of an account (times novelty after).
    pub servi_per_rating: u64,
    /// Jurors per dispute (the weight of a verdict).
    pub jurors: u32,
    pub ftfs: FtfsParams,
    pub believability: BelievabilityParams,
    pub trust_alpha_ppm: Ppm,
    pub trust_iterations: u32,
    pub trust_every: u32,
    /// A provider's lead over the prior counts fully once its trust reaches
    /// this share of the mean trust of listed providers.
    pub trust_full_ppm: Ppm,
    /// The share of its lead that counts for a provider with no trust.
    pub trust_floor_ppm: Ppm,
    pub mesh_size: u32,
    pub cycle_size: u32,
    /// Each cycle member orders from the next `cycle_degree` members; below
    /// `cycle_size / 2` no two members have ordered from each other.
    pub cycle_degree: u32,
    /// Value of each self-funded sybil order.
    pub ring_order_value: Amount,
    pub self_deals_per_epoch: u32,
    pub bomb_targets: u32,
    pub cheats: u32,
    pub cheat_value: Amount,
    pub newcomer_fakes: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            honest_providers: 40,
            honest_buyers: 200,
            epochs: 30,
            pre_trusted: 5,
            order_ppm: 500_000,
            explore_ppm: 150_000,
            tournament: 3,
            commission_ppm: 10_000,
            servi_per_rating: 25_000,
            jurors: 5,
            ftfs: FtfsParams::default(),
            believability: BelievabilityParams::default(),
            trust_alpha_ppm: trust::ALPHA_PPM,
            trust_iterations: trust::ITERATIONS,
            trust_every: 3,
            trust_full_ppm: trust::FULL_PPM,
            trust_floor_ppm: trust::FLOOR_PPM,
            mesh_size: 5,
            cycle_size: 8,
            cycle_degree: 3,
            ring_order_value: 100 * IOST,
            self_deals_per_epoch: 3,
            bomb_targets: 3,
            cheats: 3,
            cheat_value: 400 * IOST,
            newcomer_fakes: 2,
        }
    }
}

/// A defence the report turns off (one at a time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Defence {
    Believability,
    Value,
    Novelty,
    Linked,
    EigenTrust,
    /// The Bayesian prior (`prior_weight = 0`).
    Prior,
}

impl Defence {
    pub const ALL: [Defence; 6] = [
        Defence::Believability,
        Defence::Value,
        Defence::Novelty,
        Defence::Linked,
        Defence::EigenTrust,
        Defence::Prior,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Defence::Believability => "believability",
            Defence::Value => "value",
            Defence::Novelty => "novelty",
            Defence::Linked => "linked",
            Defence::EigenTrust => "eigentrust",
            Defence::Prior => "prior",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Attack {
    SybilMesh,
    SybilCycle,
    SelfDealer,
    ReviewBomber,
    CheapThenCheat,
    Newcomer,
}

impl Attack {
    pub const ALL: [Attack; 6] = [
        Attack::SybilMesh,
        Attack::SybilCycle,
        Attack::SelfDealer,
        Attack::ReviewBomber,
        Attack::CheapThenCheat,
        Attack::Newcomer,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Attack::SybilMesh => "sybil mesh",
            Attack::SybilCycle => "sybil cycle",
            Attack::SelfDealer => "self-dealer",
            Attack::ReviewBomber => "review bomber",
            Attack::CheapThenCheat => "cheap-then-cheat",
            Attack::Newcomer => "newcomer",
        }
    }
}

/// Where an attack's provider ended (for a ring, its best-ranked member).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AttackOutcome {
    pub attack: Attack,
    /// 1 = best; ties count in the attacker's favour.
    pub rank: u32,
    /// In the top `top_percent`% of providers (`ceil(100 * rank / n)`).
    pub top_percent: u32,
    /// FTFS Bayesian overall score, thousandths of a star.
    pub score_milli: u32,
    /// The rank key, thousandths of a star.
    pub key_milli: u32,
    /// `min(1, trust / trust_full)` in ppm: how much of its lead counts.
    pub trust_factor_ppm: Ppm,
    /// What the attack paid: commissions on self-funded orders, or the
    /// price of the orders it placed with others.
    pub cost: Amount,
}

/// One run: all defences, or all but one.
#[derive(Clone, Debug, Serialize)]
pub struct ConfigReport {
    /// `None`: all defences on.
    pub without: Option<Defence>,
    pub attacks: Vec<AttackOutcome>,
    /// Ranks of the review bomber's targets.
    pub bomb_victim_ranks: Vec<u32>,
    /// The cheater's rank when it took the large orders it cheated on (the
    /// reputation it had built); `AttackOutcome::rank` is where it ended.
    pub cheater_rank_before: u32,
    /// Spearman correlation between honest providers' rank keys and their
    /// true quality: 1 when the ranking orders them exactly by quality.
    pub honest_spearman: f64,
}

impl ConfigReport {
    pub fn name(&self) -> String {
        match self.without {
            None => "all defences".into(),
            Some(d) => format!("-{}", d.name()),
        }
    }

    /// `None` only if the configuration gave the attack no account.
    pub fn outcome(&self, attack: Attack) -> Option<&AttackOutcome> {
        self.attacks.iter().find(|o| o.attack == attack)
    }

    pub fn bomb_victims_mean_rank_milli(&self) -> u32 {
        let n = self.bomb_victim_ranks.len().max(1) as u32;
        self.bomb_victim_ranks.iter().sum::<u32>() * 1_000 / n
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub seed: u64,
    /// Providers ranked at the end (honest and attackers).
    pub providers: u32,
    pub honest_providers: u32,
    pub honest_buyers: u32,
    pub epochs: u32,
    pub configs: Vec<ConfigReport>,
}

impl Report {
    pub fn all_defences(&self) -> &ConfigReport {
        self.without(None)
    }

    pub fn without(&self, defence: Option<Defence>) -> &ConfigReport {
        self.configs
            .iter()
            .find(|c| c.without == defence)
            .expect("every configuration is run")
    }

    /// Ranks no better than this are outside the top quartile.
    pub fn top_quartile(&self) -> u32 {
        self.providers / 4
    }

    /// A table for humans: attacks down, configurations across; each cell is
    /// the attack's rank and FTFS score in stars.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "FTFS manipulation, seed {}: {} providers ({} honest), {} honest buyers, {} epochs; \
             top quartile = rank <= {}",
            self.seed,
            self.providers,
            self.honest_providers,
            self.honest_buyers,
            self.epochs,
            self.top_quartile()
        );
        let _ = write!(out, "{:<18}", "rank / score");
        for c in &self.configs {
            let _ = write!(out, "{:>15}", c.name());
        }
        out.push('\n');
        for attack in Attack::ALL {
            let _ = write!(out, "{:<18}", attack.name());
            for c in &self.configs {
                let cell = c.outcome(attack).map_or("-".into(), |o| {
                    format!("#{} {:.2}", o.rank, f64::from(o.score_milli) / 1_000.0)
                });
                let _ = write!(out, "{cell:>15}");
            }
            out.push('\n');
        }
        let _ = write!(out, "{:<18}", "bomb victims' rank");
        for c in &self.configs {
            let mean = f64::from(c.bomb_victims_mean_rank_milli()) / 1_000.0;
            let _ = write!(out, "{:>15}", format!("{mean:.1}"));
        }
        out.push('\n');
        let _ = write!(out, "{:<18}", "cheater before");
        for c in &self.configs {
            let _ = write!(out, "{:>15}", format!("#{}", c.cheater_rank_before));
        }
        out.push('\n');
        let _ = write!(out, "{:<18}", "honest spearman");
        for c in &self.configs {
            let _ = write!(out, "{:>15}", format!("{:.3}", c.honest_spearman));
        }
        out.push('\n');
        let all = self.all_defences();
        let _ = write!(out, "cost of each attack (IOST):");
        for o in &all.attacks {
            let _ = write!(
                out,
                " {} {:.0};",
                o.attack.name(),
                o.cost as f64 / IOST as f64
            );
        }
        out.push('\n');
        out
    }
}

/// Runs the market once with all defences and once without each of them.
pub fn run(seed: u64, config: &SimConfig) -> Report {
    let variants = std::iter::once(None).chain(Defence::ALL.map(Some));
    let configs: Vec<ConfigReport> = variants
        .map(|without| Market::new(seed, config, without).run())
        .collect();
    Report {
        seed,
        providers: Layout::new(config).providers().len() as u32,
        honest_providers: config.honest_providers,
        honest_buyers: config.honest_buyers,
        epochs: config.epochs,
        configs,
    }
}

/// splitmix64: tiny, fast and good enough for a simulation.
struct Rng(u64);

impl Rng {
    /// An independent stream per (purpose, a, b), so that the runs of
    /// different configurations draw the same numbers for the same event.
    fn new(seed: u64, purpose: u64, a: u64, b: u64) -> Rng {
        let mut r = Rng(seed ^ purpose.wrapping_mul(0xA076_1D64_78BD_642F));
        r.0 ^= r.next().wrapping_add(a);
        r.0 ^= r.next().wrapping_add(b.wrapping_mul(0xE703_7ED1_A0B4_28DB));
        r
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 if n is 0).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    fn chance(&mut self, ppm: Ppm) -> bool {
        self.below(PPM) < u64::from(ppm)
    }

    /// Uniform in `-r..=r`.
    fn spread(&mut self, r: i64) -> i64 {
        self.below(2 * r.unsigned_abs() + 1) as i64 - r
    }
}

const DRAW_QUALITY: u64 = 1;
const DRAW_PRICE: u64 = 2;
const DRAW_ORDER: u64 = 3;
const DRAW_RATING: u64 = 4;
const DRAW_CHEAT: u64 = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    HonestProvider,
    HonestBuyer,
    Mesh,
    Cycle,
    SelfDealer,
    Shill,
    Bomber,
    Cheater,
    Newcomer,
    NewcomerShill,
}

/// Which account ids play which part: honest providers first, then honest
/// buyers, then the attackers' accounts.
struct Layout {
    kinds: Vec<Kind>,
}

impl Layout {
    fn new(c: &SimConfig) -> Layout {
        let mut kinds = Vec::new();
        let mut add = |kind: Kind, n: u32| kinds.extend((0..n).map(|_| kind));
        add(Kind::HonestProvider, c.honest_providers);
        add(Kind::HonestBuyer, c.honest_buyers);
        add(Kind::Mesh, c.mesh_size);
        add(Kind::Cycle, c.cycle_size);
        add(Kind::SelfDealer, 1);
        add(Kind::Shill, 1);
        add(Kind::Bomber, 1);
        add(Kind::Cheater, 1);
        add(Kind::Newcomer, 1);
        add(Kind::NewcomerShill, c.newcomer_fakes);
        Layout { kinds }
    }

    fn of(&self, kind: Kind) -> Vec<u32> {
        (0..self.kinds.len() as u32)
            .filter(|&i| self.kinds[i as usize] == kind)
            .collect()
    }

    fn one(&self, kind: Kind) -> u32 {
        self.of(kind)[0]
    }

    fn providers(&self) -> Vec<u32> {
        (0..self.kinds.len() as u32)
            .filter(|&i| {
                !matches!(
                    self.kinds[i as usize],
                    Kind::HonestBuyer | Kind::Shill | Kind::NewcomerShill
                )
            })
            .collect()
    }
}

/// The address of account `id` (sorted like the ids).
fn address(id: u32) -> Address {
    let mut a = [0u8; 32];
    a[..4].copy_from_slice(&id.to_be_bytes());
    Address(a)
}

struct Party {
    kind: Kind,
    /// True quality delivered, thousandths of a star (providers).
    quality: u32,
    /// Base price of the provider's service.
    price: Amount,
    stake: Amount,
    servi: u64,
    /// Ratings and verdicts received as a provider: the ranked score.
    as_provider: Tally,
    /// Everything received, as provider or buyer: the reputation.
    received: Tally,
    /// First epoch in which the provider is listed.
    listed_from: u32,
}

struct Order {
    buyer: u32,
    provider: u32,
    value: Amount,
    /// The provider takes the money and does not deliver.
    cheat: bool,
}

/// One run of the market under one set of defences.
struct Market<'a> {
    cfg: &'a SimConfig,
    seed: u64,
    without: Option<Defence>,
    defences: Defences,
    params: FtfsParams,
    eigentrust: bool,
    layout: Layout,
    parties: Vec<Party>,
    /// (buyer, provider) pairs with at least one order placed.
    ordered: BTreeSet<(u32, u32)>,
    /// Ratings that weighed, so far, per (rater, rated).
    previous: BTreeMap<(u32, u32), u32>,
    edges: Vec<Edge>,
    /// Global trust per account, from the last recomputation.
    trust: Vec<u64>,
    /// Commissions (or prices) paid per attack.
    cost: BTreeMap<Kind, Amount>,
    cheater_rank_before: u32,
}

impl<'a> Market<'a> {
    fn new(seed: u64, cfg: &'a SimConfig, without: Option<Defence>) -> Market<'a> {
        let mut defences = Defences::ALL;
        let mut params = cfg.ftfs.clone();
        match without {
            Some(Defence::Believability) => defences.believability = false,
            Some(Defence::Value) => defences.value = false,
            Some(Defence::Novelty) => defences.novelty = false,
            Some(Defence::Linked) => defences.linked = false,
            Some(Defence::Prior) => params.prior_weight = 0,
            Some(Defence::EigenTrust) | None => {}
        }
        let layout = Layout::new(cfg);
        let parties = Self::parties(seed, cfg, &layout);
        Market {
            cfg,
            seed,
            without,
            defences,
            params,
            eigentrust: without != Some(Defence::EigenTrust),
            trust: vec![0; parties.len()],
            layout,
            parties,
            ordered: BTreeSet::new(),
            previous: BTreeMap::new(),
            edges: Vec::new(),
            cost: BTreeMap::new(),
            cheater_rank_before: 0,
        }
    }

    /// Honest qualities are spread evenly over 1..5 stars and shuffled;
    /// attackers deliver fixed qualities (poor to mediocre, the cheater
    /// excellent on its cheap service).
    fn parties(seed: u64, cfg: &SimConfig, layout: &Layout) -> Vec<Party> {
        let n = u64::from(cfg.honest_providers.max(1));
        let mut qualities: Vec<u32> = (0..n)
            .map(|k| (1_000 + 4_000 * (2 * k + 1) / (2 * n)) as u32)
            .collect();
        let mut r = Rng::new(seed, DRAW_QUALITY, 0, 0);
        for i in (1..qualities.len()).rev() {
            qualities.swap(i, r.below(i as u64 + 1) as usize);
        }
        let mut honest = qualities.into_iter();
        layout
            .kinds
            .iter()
            .enumerate()
            .map(|(id, &kind)| {
                let mut r = Rng::new(seed, DRAW_PRICE, id as u64, 0);
                let (quality, price) = match kind {
                    Kind::HonestProvider => {
                        (honest.next().unwrap_or(3_000), (1 + r.below(20)) * IOST)
                    }
                    Kind::Mesh | Kind::Cycle | Kind::SelfDealer => (2_500, 5 * IOST),
                    Kind::Bomber => (3_000, 5 * IOST),
                    Kind::Cheater => (4_800, IOST),
                    Kind::Newcomer => (2_000, 5 * IOST),
                    Kind::HonestBuyer | Kind::Shill | Kind::NewcomerShill => (0, 0),
                };
                let genesis = kind == Kind::HonestBuyer
                    && (id as u32) < cfg.honest_providers + cfg.pre_trusted;
                Party {
                    kind,
                    quality,
                    price,
                    stake: if genesis {
                        cfg.believability.stake_cap / 2
                    } else {
                        0
                    },
                    servi: 0,
                    as_provider: Tally::default(),
                    received: Tally::default(),
                    listed_from: if kind == Kind::Newcomer {
                        cfg.epochs.saturating_sub(2)
                    } else {
                        0
                    },
                }
            })
            .collect()
    }

    fn run(mut self) -> ConfigReport {
        for epoch in 0..self.cfg.epochs {
            if self.eigentrust && epoch % self.cfg.trust_every.max(1) == 0 {
                self.recompute_trust();
            }
            let listed = self.listed(epoch);
            let keys = self.keys(&listed);
            if epoch == self.cheat_epoch() {
                let cheater = self.layout.one(Kind::Cheater);
                self.cheater_rank_before = rank_in(&keys, cheater);
            }
            let mut orders = self.honest_orders(epoch, &listed, &keys);
            self.attack_orders(epoch, &listed, &keys, &mut orders);
            for o in &orders {
                self.ordered.insert((o.buyer, o.provider));
            }
            for o in &orders {
                self.settle(epoch, o);
            }
        }
        self.recompute_trust();
        self.report()
    }

    fn listed(&self, epoch: u32) -> Vec<u32> {
        self.layout
            .providers()
            .into_iter()
            .filter(|&p| self.parties[p as usize].listed_from <= epoch)
            .collect()
    }

    fn recompute_trust(&mut self) {
        let pre: Vec<Address> = (0..self.cfg.pre_trusted.min(self.cfg.honest_buyers))
            .map(|k| address(self.cfg.honest_providers + k))
            .collect();
        let t = trust::global_trust(
            &self.edges,
            &pre,
            self.cfg.trust_alpha_ppm,
            self.cfg.trust_iterations,
        );
        for (id, slot) in self.trust.iter_mut().enumerate() {
            *slot = t.get(&address(id as u32)).copied().unwrap_or(0);
        }
    }

    /// `trust_full`: the trust at which a provider's lead counts fully.
    fn trust_full(&self, listed: &[u32]) -> u64 {
        trust::trust_full(
            listed.iter().map(|&p| self.trust[p as usize]),
            self.cfg.trust_full_ppm,
        )
    }

    fn trust_factor(&self, id: u32, trust_full: u64) -> Ppm {
        trust::trust_factor(self.trust[id as usize], trust_full)
    }

    fn score(&self, id: u32) -> u32 {
        self.parties[id as usize]
            .as_provider
            .overall_milli(&self.params)
    }

    /// The rank key (see the module documentation), thousandths of a star.
    fn key(&self, id: u32, trust_full: u64) -> u32 {
        let score = self.score(id);
        if !self.eigentrust {
            return score;
        }
        trust::rank_key(
            score,
            self.params.prior_mean_milli,
            self.trust[id as usize],
            trust_full,
            self.cfg.trust_floor_ppm,
        )
    }

    /// Rank keys of the listed providers, by account id.
    fn keys(&self, listed: &[u32]) -> BTreeMap<u32, u32> {
        let full = self.trust_full(listed);
        listed.iter().map(|&p| (p, self.key(p, full))).collect()
    }

    fn honest_orders(&self, epoch: u32, listed: &[u32], keys: &BTreeMap<u32, u32>) -> Vec<Order> {
        let mut orders = Vec::new();
        if listed.is_empty() {
            return orders;
        }
        for buyer in self.layout.of(Kind::HonestBuyer) {
            let mut r = Rng::new(self.seed, DRAW_ORDER, epoch.into(), buyer.into());
            if !r.chance(self.cfg.order_ppm) {
                continue;
            }
            let explore = r.chance(self.cfg.explore_ppm);
            let mut pick = || listed[r.below(listed.len() as u64) as usize];
            let provider = if explore {
                pick()
            } else {
                let mut best = pick();
                for _ in 1..self.cfg.tournament {
                    let other = pick();
                    if keys[&other] > keys[&best] {
                        best = other;
                    }
                }
                best
            };
            let party = &self.parties[provider as usize];
            if matches!(party.kind, Kind::Mesh | Kind::Cycle | Kind::Newcomer) {
                // Fake storefronts decline outside orders: an honest rating
                // would show what they deliver.
                continue;
            }
            // The cheater sells one cheap package only (until it cheats).
            let package = if party.kind == Kind::Cheater {
                1
            } else {
                1 << r.below(4)
            };
            orders.push(Order {
                buyer,
                provider,
                value: party.price * package,
                cheat: false,
            });
        }
        orders
    }

    fn attack_orders(
        &mut self,
        epoch: u32,
        listed: &[u32],
        keys: &BTreeMap<u32, u32>,
        orders: &mut Vec<Order>,
    ) {
        let cfg = self.cfg;
        let mut funded = |this: &mut Self, kind: Kind, buyer: u32, provider: u32, value| {
            let commission =
                (u128::from(value) * u128::from(cfg.commission_ppm) / u128::from(PPM)) as Amount;
            *this.cost.entry(kind).or_default() += commission;
            orders.push(Order {
                buyer,
                provider,
                value,
                cheat: false,
            });
        };
        let mesh = self.layout.of(Kind::Mesh);
        for &a in &mesh {
            for &b in mesh.iter().filter(|&&b| b != a) {
                funded(self, Kind::Mesh, a, b, cfg.ring_order_value);
            }
        }
        let cycle = self.layout.of(Kind::Cycle);
        for (k, &a) in cycle.iter().enumerate() {
            for step in 1..=cfg.cycle_degree as usize {
                let b = cycle[(k + step) % cycle.len()];
                if b != a {
                    funded(self, Kind::Cycle, a, b, cfg.ring_order_value);
                }
            }
        }
        let dealer = self.layout.one(Kind::SelfDealer);
        let shill = self.layout.one(Kind::Shill);
        let value = self.parties[dealer as usize].price * 8;
        for _ in 0..cfg.self_deals_per_epoch {
            funded(self, Kind::SelfDealer, shill, dealer, value);
        }
        let newcomer = self.layout.one(Kind::Newcomer);
        if epoch == self.parties[newcomer as usize].listed_from {
            let value = self.parties[newcomer as usize].price;
            for fake in self.layout.of(Kind::NewcomerShill) {
                funded(self, Kind::Newcomer, fake, newcomer, value);
            }
        }
        // The bomber pays the full (cheapest) price to its victims.
        let bomber = self.layout.one(Kind::Bomber);
        for victim in self.bomb_victims() {
            if !listed.contains(&victim) || !keys.contains_key(&victim) {
                continue;
            }
            let value = self.parties[victim as usize].price;
            *self.cost.entry(Kind::Bomber).or_default() += value;
            orders.push(Order {
                buyer: bomber,
                provider: victim,
                value,
                cheat: false,
            });
        }
        if epoch == self.cheat_epoch() {
            let cheater = self.layout.one(Kind::Cheater);
            let buyers = self.layout.of(Kind::HonestBuyer);
            for k in 0..cfg.cheats {
                let mut r = Rng::new(self.seed, DRAW_CHEAT, epoch.into(), k.into());
                if buyers.is_empty() {
                    break;
                }
                orders.push(Order {
                    buyer: buyers[r.below(buyers.len() as u64) as usize],
                    provider: cheater,
                    value: cfg.cheat_value,
                    cheat: true,
                });
            }
        }
    }

    /// The epoch in which the cheater takes large orders and cheats (two
    /// more follow, in which it serves small orders well again).
    fn cheat_epoch(&self) -> u32 {
        self.cfg.epochs.saturating_sub(3)
    }

    /// The bomber's targets: the best honest providers by true quality.
    fn bomb_victims(&self) -> Vec<u32> {
        let mut honest = self.layout.of(Kind::HonestProvider);
        honest.sort_by_key(|&p| (std::cmp::Reverse(self.parties[p as usize].quality), p));
        honest.truncate(self.cfg.bomb_targets as usize);
        honest
    }

    /// Delivery (or not), both sides' ratings, and a verdict if disputed.
    fn settle(&mut self, epoch: u32, o: &Order) {
        let mut r = Rng::new(
            self.seed,
            DRAW_RATING,
            epoch.into(),
            u64::from(o.buyer) << 32 | u64::from(o.provider),
        );
        let buyer_kind = self.parties[o.buyer as usize].kind;
        let provider = &self.parties[o.provider as usize];
        let (provider_kind, quality) = (provider.kind, provider.quality);
        let stars = if o.cheat {
            1
        } else {
            match buyer_kind {
                Kind::HonestBuyer => {
                    let seen = i64::from(quality) + r.spread(600) + r.spread(600);
                    ((seen + 500) / 1_000).clamp(1, 5) as u8
                }
                Kind::Bomber => 1,
                _ => 5,
            }
        };
        self.reveal(o.buyer, o.provider, stars, o.value, true);
        if o.cheat {
            let w = ftfs::verdict_weight(
                o.value,
                PPM as Ppm,
                self.cfg.jurors,
                &self.params,
                &self.defences,
            );
            let p = &mut self.parties[o.provider as usize];
            p.as_provider.add_verdict(w);
            p.received.add_verdict(w);
            self.edges.push(Edge {
                rater: address(o.buyer),
                ratee: address(o.provider),
                weight: w,
                overall: 1,
            });
        }
        let honest_view = match r.below(20) {
            0 => 3,
            1..=5 => 4,
            _ => 5,
        };
        let back = match (provider_kind, buyer_kind) {
            _ if o.cheat => Some(1),
            (Kind::Mesh, Kind::Mesh) | (Kind::Cycle, Kind::Cycle) => Some(5),
            (Kind::SelfDealer, Kind::Shill) | (Kind::Newcomer, Kind::NewcomerShill) => Some(5),
            // Sybils keep their trust to themselves.
            (Kind::Mesh | Kind::Cycle, _) => None,
            _ => Some(honest_view),
        };
        if let Some(s) = back {
            self.reveal(o.provider, o.buyer, s, o.value, false);
        }
    }

    fn believability(&self, id: u32) -> Ppm {
        let p = &self.parties[id as usize];
        Account {
            stake: p.stake,
            servi: p.servi,
            reputation: p.received.reputation(&self.params),
            ..Account::default()
        }
        .believability(&self.cfg.believability)
    }

    fn linked(&self, a: u32, b: u32) -> bool {
        a == b || (self.ordered.contains(&(a, b)) && self.ordered.contains(&(b, a)))
    }

    /// `rater` reveals its rating of `rated` for an order worth `value`.
    fn reveal(&mut self, rater: u32, rated: u32, stars: u8, value: Amount, of_provider: bool) {
        let previous = self.previous.get(&(rater, rated)).copied().unwrap_or(0);
        let facts = RaterFacts {
            believability: self.believability(rater),
            order_value: value,
            previous,
            linked: self.linked(rater, rated),
        };
        let w = ftfs::weight(&facts, &self.params, &self.defences);
        // Servi for revealing: novelty only (nothing when linked).
        let novelty = ftfs::weight(
            &RaterFacts {
                believability: PPM as Ppm,
                order_value: 0,
                ..facts
            },
            &self.params,
            &self.defences,
        );
        let servi = self.cfg.servi_per_rating.saturating_mul(novelty) / PPM;
        let r = &mut self.parties[rater as usize];
        r.servi = r.servi.saturating_add(servi);
        let scores = Scores::all(stars);
        let p = &mut self.parties[rated as usize];
        p.received.add(w, &scores);
        if of_provider {
            p.as_provider.add(w, &scores);
        }
        // As on chain, only ratings that weighed count as earlier ratings.
        if w > 0 {
            self.previous.insert((rater, rated), previous + 1);
        }
        self.edges.push(Edge {
            rater: address(rater),
            ratee: address(rated),
            weight: w,
            overall: stars,
        });
    }

    fn report(&self) -> ConfigReport {
        let listed = self.listed(self.cfg.epochs);
        let full = self.trust_full(&listed);
        let keys = self.keys(&listed);
        let rank = |id: u32| rank_in(&keys, id);
        let n = listed.len().max(1) as u32;
        let outcome = |attack: Attack, members: &[u32], kind: Kind| {
            let best = members.iter().copied().min_by_key(|&m| (rank(m), m))?;
            let rank = rank(best);
            Some(AttackOutcome {
                attack,
                rank,
                top_percent: (rank * 100).div_ceil(n),
                score_milli: self.score(best),
                key_milli: keys[&best],
                trust_factor_ppm: self.trust_factor(best, full),
                cost: self.cost.get(&kind).copied().unwrap_or(0),
            })
        };
        let l = &self.layout;
        let attacks = [
            outcome(Attack::SybilMesh, &l.of(Kind::Mesh), Kind::Mesh),
            outcome(Attack::SybilCycle, &l.of(Kind::Cycle), Kind::Cycle),
            outcome(
                Attack::SelfDealer,
                &l.of(Kind::SelfDealer),
                Kind::SelfDealer,
            ),
            outcome(Attack::ReviewBomber, &l.of(Kind::Bomber), Kind::Bomber),
            outcome(Attack::CheapThenCheat, &l.of(Kind::Cheater), Kind::Cheater),
            outcome(Attack::Newcomer, &l.of(Kind::Newcomer), Kind::Newcomer),
        ]
        .into_iter()
        .flatten()
        .collect();
        let honest = l.of(Kind::HonestProvider);
        let honest_keys: Vec<u32> = honest.iter().map(|p| keys[p]).collect();
        let qualities: Vec<u32> = honest
            .iter()
            .map(|&p| self.parties[p as usize].quality)
            .collect();
        ConfigReport {
            without: self.without,
            attacks,
            bomb_victim_ranks: self.bomb_victims().into_iter().map(rank).collect(),
            cheater_rank_before: self.cheater_rank_before,
            honest_spearman: spearman(&honest_keys, &qualities),
        }
    }
}

/// 1 + the number of providers with a strictly better key: ties count in
/// the account's favour, so an attacker's rank is never understated.
fn rank_in(keys: &BTreeMap<u32, u32>, id: u32) -> u32 {
    let key = keys.get(&id).copied().unwrap_or(0);
    1 + keys.values().filter(|&&k| k > key).count() as u32
}

/// Ranks from 1, ties sharing their mean rank (as halves: doubled values).
fn doubled_ranks(values: &[u32]) -> Vec<u64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by_key(|&i| values[i]);
    let mut ranks = vec![0u64; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start;
        while end + 1 < order.len() && values[order[end + 1]] == values[order[start]] {
            end += 1;
        }
        // Mean of ranks start+1..=end+1, doubled.
        let doubled = (start + end + 2) as u64;
        for &i in &order[start..=end] {
            ranks[i] = doubled;
        }
        start = end + 1;
    }
    ranks
}

/// Spearman's rank correlation (Pearson over ranks, ties averaged); 0 when
/// either side is constant.
pub fn spearman(x: &[u32], y: &[u32]) -> f64 {
    let n = x.len().min(y.len());
    if n < 2 {
        return 0.0;
    }
    let (rx, ry) = (doubled_ranks(&x[..n]), doubled_ranks(&y[..n]));
    let mean = |r: &[u64]| r.iter().sum::<u64>() as f64 / n as f64;
    let (mx, my) = (mean(&rx), mean(&ry));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (&a, &b) in rx.iter().zip(&ry) {
        let (dx, dy) = (a as f64 - mx, b as f64 - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return 0.0;
    }
    sxy / (sxx * syy).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_of_known_orders() {
        let check = |x: &[u32], y: &[u32], want: f64| {
            let got = spearman(x, y);
            assert!((got - want).abs() < 1e-9, "{x:?} {y:?}: {got} != {want}");
        };
        check(&[1, 2, 3, 4], &[10, 20, 30, 40], 1.0);
        check(&[1, 2, 3, 4], &[40, 30, 20, 10], -1.0);
        check(&[1, 1, 1], &[1, 2, 3], 0.0);
        check(&[], &[], 0.0);
        // Ties share their mean rank: x ranks 1, 2.5, 2.5, 4.
        check(&[1, 2, 2, 3], &[1, 2, 3, 4], 0.948_683_298_050_513_8);
    }

    #[test]
    fn the_prng_is_fixed_and_streams_differ() {
        let mut r = Rng::new(1, 2, 3, 4);
        let first = r.next();
        assert_eq!(first, Rng::new(1, 2, 3, 4).next());
        assert_ne!(first, Rng::new(1, 2, 3, 5).next());
        assert_ne!(first, Rng::new(2, 2, 3, 4).next());
        for n in [1, 2, 7, 1_000] {
            assert!((0..100).all(|_| r.below(n) < n));
        }
        assert_eq!(r.below(0), 0);
        assert!((0..100).all(|_| r.spread(3).abs() <= 3));
    }

    #[test]
    fn a_run_is_a_pure_function_of_its_seed() {
        let cfg = SimConfig {
            honest_providers: 12,
            honest_buyers: 40,
            epochs: 6,
            ..SimConfig::default()
        };
        let a = run(7, &cfg);
        assert_eq!(a.render(), run(7, &cfg).render());
        assert_ne!(a.render(), run(8, &cfg).render());
        assert_eq!(a.configs.len(), 7);
    }

    #[test]
    fn degenerate_configurations_do_not_panic() {
        let tiny = SimConfig {
            honest_providers: 0,
            honest_buyers: 0,
            epochs: 3,
            pre_trusted: 0,
            mesh_size: 0,
            cycle_size: 1,
            newcomer_fakes: 0,
            tournament: 0,
            trust_every: 0,
            ..SimConfig::default()
        };
        let r = run(1, &tiny);
        assert_eq!(r.configs.len(), 7);
        let none = SimConfig { epochs: 0, ..tiny };
        run(1, &none).render();
    }
}
