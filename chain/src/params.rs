//! Genesis parameters and the genesis allocation. Everything here is part of
//! consensus: all validators of a network must agree on it byte for byte.

use crate::crypto::{Address, Keypair};
use crate::error::{ChainError, Result};
use crate::hash::{hash_value, tag, Hash};
use crate::pvss::PvssPublicKey;
use crate::types::{Amount, ChainId, Ppm, ShardId, TimeMs, UNITS_PER_IOST};
use borsh::{BorshDeserialize, BorshSerialize};

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct BelievabilityParams {
    pub w_stake: Ppm,
    pub w_reputation: Ppm,
    pub w_servi: Ppm,
    pub stake_cap: Amount,
    pub servi_cap: u64,
    /// Share of the committee in the believable league (proposers).
    pub league: Ppm,
}

impl Default for BelievabilityParams {
    fn default() -> Self {
        BelievabilityParams {
            w_stake: 400_000,
            w_reputation: 300_000,
            w_servi: 300_000,
            stake_cap: 100_000 * UNITS_PER_IOST,
            servi_cap: 1_000_000,
            league: 333_333,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ChainParams {
    pub chain_id: ChainId,
    /// S, the number of account shards (1..=S); shard 0 is the beacon. With
    /// 0 the network is one chain and the beacon holds the accounts too.
    pub shards: u16,
    /// Nominal blocks per epoch. An epoch ends at the first block at or after
    /// this many whose randomness round is complete.
    pub epoch_length: u64,
    /// Target committee size; members are drawn from the bonded validators
    /// by a permutation seeded with the epoch randomness.
    pub committee_size: u16,
    /// TransEpoch: at most this many members of a committee are replaced per
    /// epoch (besides jailed ones); at most floor((committee_size-1)/3).
    pub transepoch_swaps: u16,
    /// Blocks at the start of an epoch in which randomness dealings are taken.
    pub dealing_window: u64,
    pub min_validator_stake: Amount,
    pub believability: BelievabilityParams,
    pub min_fee_per_byte: Amount,
    /// Share of stake slashed for equivocation.
    pub slash: Ppm,
    /// Reputation lost by a proposer whose turn passed without a block.
    pub missed_proposal_decay: Ppm,
    pub unbonding_blocks: u64,
    pub max_block_txs: u32,
    pub max_block_bytes: u32,
    /// A proposal's time may be at most this far ahead of a validator's clock.
    pub max_clock_drift_ms: TimeMs,
    /// From this round on the proposer is drawn from the whole committee, so a
    /// believable league that is down cannot stall the shard.
    pub league_fallback_round: u32,
}

impl ChainParams {
    pub fn devnet(chain_id: &str) -> ChainParams {
        ChainParams {
            chain_id: ChainId(chain_id.to_string()),
            shards: 0,
            epoch_length: 50,
            committee_size: 64,
            transepoch_swaps: 21,
            dealing_window: 20,
            min_validator_stake: 1_000 * UNITS_PER_IOST,
            believability: BelievabilityParams::default(),
            min_fee_per_byte: 1,
            slash: 100_000,
            missed_proposal_decay: 20_000,
            unbonding_blocks: 100,
            max_block_txs: 10_000,
            max_block_bytes: 4 * 1024 * 1024,
            max_clock_drift_ms: 5_000,
            league_fallback_round: 2,
        }
    }

    /// Parameters for a public network, sized by docs/protocol.md section 14
    /// (`ios committee-risk`): committees of 600 keep the chance that a
    /// random committee holds more than f Byzantine members at about 1e-15
    /// per committee and epoch if a fifth of all validators are Byzantine
    /// (2e-8 to 1.4e-6 if a quarter are). At most 64 members (about 10%)
    /// change per epoch, so with up to 20% Byzantine members the members
    /// that have not yet synced never cost the committee its quorum.
    pub fn production(chain_id: &str) -> ChainParams {
        ChainParams {
            epoch_length: 3_600,
            committee_size: 600,
            transepoch_swaps: 64,
            dealing_window: 600,
            unbonding_blocks: 100_800,
            ..ChainParams::devnet(chain_id)
        }
    }

    /// Sets the committee size and the largest TransEpoch swap bound it allows.
    pub fn set_committee_size(&mut self, n: u16) {
        self.committee_size = n;
        self.transepoch_swaps = crate::shard::max_faulty(n as usize) as u16;
    }

    pub fn max_block_bytes(&self) -> usize {
        self.max_block_bytes as usize
    }
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct GenesisAccount {
    pub address: Address,
    pub balance: Amount,
    pub stake: Amount,
    pub servi: u64,
    pub reputation: Ppm,
    /// A validator's key for the randomness beacon; required to serve.
    pub pvss_key: Option<PvssPublicKey>,
}

impl GenesisAccount {
    /// The account as genesis writes it into state.
    pub fn account(&self) -> crate::account::Account {
        crate::account::Account {
            balance: self.balance,
            stake: self.stake,
            servi: self.servi,
            reputation: self.reputation,
            ..Default::default()
        }
    }
}

/// A module's genesis settings (its parameters, say), in the module's own
/// borsh encoding: `chain` carries them and the module reads them.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ModuleGenesis {
    pub module: crate::tx::ModuleId,
    pub config: Vec<u8>,
}

/// Largest module genesis settings, in bytes.
pub const MAX_MODULE_GENESIS: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Genesis {
    pub params: ChainParams,
    pub time: TimeMs,
    /// Seed of epoch 0's randomness.
    pub randomness: Hash,
    pub accounts: Vec<GenesisAccount>,
    /// Module settings, at most one per module (none: the module's defaults).
    pub modules: Vec<ModuleGenesis>,
}

impl Genesis {
    /// A test network's genesis (simulator, devnet, benchmarks): each
    /// validator bonded with 10,000 IOST and 10,000 spendable, reputation
    /// 0.5, Servi rising with its index (so proposer weights differ) and its
    /// PVSS key; each user 1,000,000 IOST.
    pub fn test_network(
        params: ChainParams,
        time: TimeMs,
        randomness: Hash,
        validators: &[Keypair],
        users: &[Address],
    ) -> Genesis {
        let iost = UNITS_PER_IOST;
        let mut accounts: Vec<GenesisAccount> = validators
            .iter()
            .enumerate()
            .map(|(i, k)| GenesisAccount {
                address: k.address(),
                balance: 10_000 * iost,
                stake: 10_000 * iost,
                servi: 100_000 * (i as u64 + 1),
                reputation: 500_000,
                pvss_key: Some(k.pvss().public()),
            })
            .collect();
        accounts.extend(users.iter().map(|a| GenesisAccount {
            address: *a,
            balance: 1_000_000 * iost,
            stake: 0,
            servi: 0,
            reputation: 0,
            pvss_key: None,
        }));
        Genesis {
            params,
            time,
            randomness,
            accounts,
            modules: Vec::new(),
        }
    }

    /// The genesis settings of `module`, if genesis has any.
    pub fn module_config(&self, module: crate::tx::ModuleId) -> Option<&[u8]> {
        self.modules
            .iter()
            .find(|m| m.module == module)
            .map(|m| m.config.as_slice())
    }

    /// Sets `module`'s genesis settings (replacing any).
    pub fn set_module_config(&mut self, module: crate::tx::ModuleId, config: Vec<u8>) {
        self.modules.retain(|m| m.module != module);
        self.modules.push(ModuleGenesis { module, config });
        self.modules.sort_by_key(|m| m.module);
    }

    pub fn hash(&self) -> Hash {
        hash_value(tag::GENESIS, self)
    }

    /// The shard that holds `account` from genesis: validators (staked or
    /// with a PVSS key) on the beacon, which keeps the registry and stakes;
    /// everyone else on their home shard.
    pub fn shard_of(&self, account: &GenesisAccount) -> ShardId {
        if self.params.shards == 0 || account.stake > 0 || account.pvss_key.is_some() {
            crate::shard::BEACON
        } else {
            crate::shard::home_shard(&account.address, self.params.shards)
        }
    }

    /// Epoch 0: every shard's committee, dealt from the genesis randomness.
    /// Every shard computes it alike from the genesis alone: it is the root
    /// of the light client's chain of trust.
    pub fn epoch_zero(&self) -> crate::light_client::EpochInfo {
        let p = &self.params;
        let mut eligible: Vec<&GenesisAccount> = self
            .accounts
            .iter()
            .filter(|a| a.stake >= p.min_validator_stake && a.pvss_key.is_some())
            .collect();
        eligible.sort_by_key(|a| a.address);
        let addresses: Vec<Address> = eligible.iter().map(|a| a.address).collect();
        let assigned = crate::shard::assign_committees(
            &vec![Vec::new(); p.shards as usize + 1],
            &addresses,
            p.committee_size as usize,
            p.transepoch_swaps as usize,
            &self.randomness,
        );
        let committees = assigned
            .into_iter()
            .map(|members| {
                let weights: Vec<u32> = members
                    .iter()
                    .map(|m| {
                        eligible
                            .iter()
                            .find(|a| a.address == *m)
                            .map_or(0, |a| a.account().believability(&p.believability))
                    })
                    .collect();
                crate::committee::with_league(p, 0, members, &weights)
            })
            .collect();
        crate::light_client::EpochInfo {
            epoch: 0,
            randomness: self.randomness,
            committees,
        }
    }

    /// Total IOST in existence, forever (supply is conserved).
    pub fn total_supply(&self) -> Result<Amount> {
        self.accounts.iter().try_fold(0u64, |acc, a| {
            acc.checked_add(a.balance)
                .and_then(|v| v.checked_add(a.stake))
                .ok_or_else(|| ChainError::InvalidGenesis("total supply overflows u64".into()))
        })
    }

    pub fn validate(&self) -> Result<()> {
        self.total_supply()?;
        let id = &self.params.chain_id.0;
        if id.is_empty() || id.len() > ChainId::MAX_LEN {
            return Err(ChainError::InvalidGenesis(format!(
                "chain id {id:?} must be 1 to {} bytes",
                ChainId::MAX_LEN
            )));
        }
        let mut modules = std::collections::BTreeSet::new();
        for m in &self.modules {
            if !modules.insert(m.module) {
                return Err(ChainError::InvalidGenesis(format!(
                    "module {} has two genesis settings",
                    m.module.0
                )));
            }
            if m.config.len() > MAX_MODULE_GENESIS {
                return Err(ChainError::InvalidGenesis(format!(
                    "the genesis settings of module {} are {} bytes, over {MAX_MODULE_GENESIS}",
                    m.module.0,
                    m.config.len()
                )));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut pvss_keys = std::collections::BTreeSet::new();
        for a in &self.accounts {
            if let Some(k) = &a.pvss_key {
                if !pvss_keys.insert(*k) {
                    return Err(ChainError::InvalidGenesis(format!(
                        "the PVSS key of {} is registered twice",
                        a.address
                    )));
                }
            }
            if !seen.insert(a.address) {
                return Err(ChainError::InvalidGenesis(format!(
                    "account {} listed twice",
                    a.address
                )));
            }
            if a.reputation > 1_000_000 {
                return Err(ChainError::InvalidGenesis(format!(
                    "reputation of {} is over 1000000 ppm",
                    a.address
                )));
            }
        }
        let validators = self
            .accounts
            .iter()
            .filter(|a| a.stake >= self.params.min_validator_stake && a.pvss_key.is_some())
            .count();
        if validators == 0 {
            return Err(ChainError::InvalidGenesis(
                "no account has the minimum validator stake and a PVSS key".into(),
            ));
        }
        let p = &self.params;
        let b = &p.believability;
        for (name, v) in [
            ("slash", p.slash),
            ("missed_proposal_decay", p.missed_proposal_decay),
            ("league", b.league),
        ] {
            if v > 1_000_000 {
                return Err(ChainError::InvalidGenesis(format!(
                    "{name} is {v} ppm, over 1000000"
                )));
            }
        }
        if b.w_stake as u64 + b.w_reputation as u64 + b.w_servi as u64 > 1_000_000 {
            return Err(ChainError::InvalidGenesis(
                "believability weights add up to more than 1000000 ppm".into(),
            ));
        }
        if p.epoch_length == 0 || p.committee_size == 0 {
            return Err(ChainError::InvalidGenesis(
                "epoch length and committee size must be positive".into(),
            ));
        }
        if self
            .epoch_zero()
            .committees
            .iter()
            .any(|c| c.members.is_empty())
        {
            return Err(ChainError::InvalidGenesis(format!(
                "{} shards (the beacon and {} account shards) need at least {} eligible validators, one per committee",
                p.shards as usize + 1,
                p.shards,
                p.shards as usize + 1
            )));
        }
        let f = crate::shard::max_faulty(p.committee_size as usize);
        if p.transepoch_swaps as usize > f {
            return Err(ChainError::InvalidGenesis(format!(
                "transepoch_swaps {} is over floor((committee_size-1)/3) = {f}: more changes per epoch could stall a committee",
                p.transepoch_swaps
            )));
        }
        if p.dealing_window == 0 || p.dealing_window >= p.epoch_length {
            return Err(ChainError::InvalidGenesis(format!(
                "dealing_window {} must be at least 1 and below the epoch length {}, leaving blocks for reveals",
                p.dealing_window, p.epoch_length
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn genesis(params: ChainParams) -> Genesis {
        let v = Keypair::from_seed("params-validator", 0);
        Genesis::test_network(params, 0, Hash::ZERO, &[v], &[])
    }

    #[test]
    fn profiles_are_valid() {
        for p in [
            ChainParams::devnet("ios-dev"),
            ChainParams::production("ios-main"),
        ] {
            genesis(p.clone()).validate().expect("valid profile");
            let f = crate::shard::max_faulty(p.committee_size as usize);
            assert!(p.transepoch_swaps as usize <= f);
        }
    }

    #[test]
    fn out_of_range_sharding_parameters_are_rejected() {
        type Tweak = fn(&mut ChainParams);
        let cases: [(&str, Tweak, &str); 4] = [
            (
                "too many swaps",
                |p| p.transepoch_swaps = 22,
                "transepoch_swaps 22",
            ),
            (
                "no dealing window",
                |p| p.dealing_window = 0,
                "dealing_window 0",
            ),
            (
                "window fills the epoch",
                |p| p.dealing_window = 50,
                "dealing_window 50",
            ),
            (
                "empty committee",
                |p| p.committee_size = 0,
                "committee size",
            ),
        ];
        for (name, tweak, want) in cases {
            let mut p = ChainParams::devnet("ios-dev");
            tweak(&mut p);
            match genesis(p).validate() {
                Err(ChainError::InvalidGenesis(m)) => assert!(m.contains(want), "{name}: {m}"),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_validator_without_a_pvss_key_cannot_start_a_network() {
        let mut g = genesis(ChainParams::devnet("ios-dev"));
        g.accounts[0].pvss_key = None;
        assert!(matches!(g.validate(), Err(ChainError::InvalidGenesis(m)) if m.contains("PVSS")));
    }
}
