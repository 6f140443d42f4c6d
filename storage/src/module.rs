//! The storage module: HUDS on chain. Providers register (capacity, price,
//! stake held in custody); owners make deals (the object's layout, a price
//! offer, a number of epochs; the cost is held in escrow and the fragments
//! are placed by [`deal::place_object`]); providers sign receipts for what
//! they stored; each epoch every provider is challenged to prove one 1 KiB
//! chunk of one fragment it holds within `audit_window` blocks. A pass pays
//! the provider, from each deal's escrow, for every fragment it holds and
//! credits Servi per GiB-epoch; a miss or a bad proof is a strike on that
//! fragment, and after `max_strikes` the fragment is lost (repair's input).
//! An expired deal refunds what is left of its escrow.
//!
//! State is per shard: a deal lives on the shard that executes it (its
//! owner's home shard) and is placed among the providers registered there.

use crate::codec::Layout;
use crate::deal::{self, Candidate, Challenge, Held};
use crate::tree::ChunkProof;
use crate::ContentId;
use borsh::{BorshDeserialize, BorshSerialize};
use ios_chain::committee::K_RANDOMNESS;
use ios_chain::crypto::Address;
use ios_chain::error::{ChainError, Result};
use ios_chain::hash::Hash;
use ios_chain::module::{CallContext, Module};
use ios_chain::tx::{Call, ModuleId};
use ios_chain::types::{Amount, Epoch, Height, TimeMs};

/// The storage module's id in `Call`.
pub const STORAGE_MODULE: ModuleId = ModuleId(2);
const NAME: &str = "storage";

/// Consensus parameters of HUDS (the same on every node: part of genesis).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct StorageParams {
    pub min_provider_stake: Amount,
    /// Blocks after a challenge is issued in which its proof must land.
    pub audit_window: Height,
    /// Strikes after which a fragment is declared lost.
    pub max_strikes: u8,
    /// Servi per GiB-epoch held and proven.
    pub servi_per_gib_epoch: u64,
    pub max_object_bytes: u64,
    pub max_deal_epochs: u64,
    /// A segment with fewer than k + this many healthy (not lost)
    /// fragments has its lost ones placed anew (repair).
    pub repair_margin: u8,
    /// Epochs a placed provider has to sign for its fragment before the
    /// fragment counts as lost.
    pub receipt_epochs: u64,
}

impl Default for StorageParams {
    fn default() -> Self {
        StorageParams {
            min_provider_stake: 1_000 * ios_chain::types::UNITS_PER_IOST,
            audit_window: 20,
            max_strikes: 3,
            servi_per_gib_epoch: 1_000,
            max_object_bytes: 64 << 30,
            max_deal_epochs: 10_000,
            repair_margin: 1,
            receipt_epochs: 5,
        }
    }
}

/// A storage module call.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum StorageCall {
    /// Registers the sender as a provider, or updates its offer; `stake`
    /// more IOST goes into custody.
    RegisterProvider {
        capacity: u64,
        price_per_gib_epoch: Amount,
        stake: Amount,
        /// Where clients reach it (replaces what was registered).
        endpoint: Endpoint,
    },
    /// Stores an object: its layout, for `epochs` epochs, at `price` per
    /// GiB-epoch (providers asking more are not chosen).
    CreateDeal {
        layout: Layout,
        epochs: u64,
        price_per_gib_epoch: Amount,
        /// What the object is (public objects are found by search).
        meta: ObjectMeta,
    },
    /// The sender (a placed provider) holds these fragments of `content`.
    Receipt {
        content: ContentId,
        fragments: Vec<(u32, u16)>,
    },
    /// The answer to the sender's challenge of the current audit round.
    Prove {
        content: ContentId,
        proof: ChunkProof,
    },
}

impl StorageCall {
    pub fn to_call(&self) -> Call {
        Call {
            module: STORAGE_MODULE,
            payload: borsh::to_vec(self).expect("borsh to a Vec"),
        }
    }
}

/// How a provider is reached on the network: its libp2p peer id (bytes)
/// and listen addresses (multiaddr text). The chain only bounds them;
/// clients dial what they read here.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Endpoint {
    pub peer: Vec<u8>,
    pub addrs: Vec<String>,
}

impl Endpoint {
    pub const MAX_PEER_BYTES: usize = 64;
    pub const MAX_ADDRS: usize = 4;
    pub const MAX_ADDR_BYTES: usize = 256;

    fn validate(&self) -> Result<()> {
        if self.peer.is_empty() || self.peer.len() > Endpoint::MAX_PEER_BYTES {
            return Err(bad(format!(
                "a peer id of {} bytes (1 to {})",
                self.peer.len(),
                Endpoint::MAX_PEER_BYTES
            )));
        }
        if self.addrs.len() > Endpoint::MAX_ADDRS
            || self
                .addrs
                .iter()
                .any(|a| a.is_empty() || a.len() > Endpoint::MAX_ADDR_BYTES)
        {
            return Err(bad(format!(
                "at most {} addresses of 1 to {} bytes each",
                Endpoint::MAX_ADDRS,
                Endpoint::MAX_ADDR_BYTES
            )));
        }
        Ok(())
    }
}

/// What an object is, as its owner describes it. It is on chain in the
/// clear, private objects included (whose bytes are encrypted): a private
/// object's owner says as little here as they like. Public objects are
/// found by search.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ObjectMeta {
    pub name: String,
    /// Media type, e.g. `text/plain`.
    pub mime: String,
    pub tags: Vec<String>,
    pub description: String,
    /// Listed in search (`false`: only those given its content id find it).
    pub public: bool,
}

impl ObjectMeta {
    pub const MAX_NAME_BYTES: usize = 256;
    pub const MAX_MIME_BYTES: usize = 128;
    pub const MAX_TAGS: usize = 16;
    pub const MAX_TAG_BYTES: usize = 64;
    pub const MAX_DESCRIPTION_BYTES: usize = 4_096;

    /// Checks the bounds (a tag is non-empty, without spaces, commas or
    /// control characters; the media type has no spaces).
    pub fn validate(&self) -> std::result::Result<(), String> {
        let over = |what: &str, len: usize, max: usize| {
            (len > max).then(|| format!("the {what} is {len} bytes, at most {max}"))
        };
        if let Some(e) = over("name", self.name.len(), ObjectMeta::MAX_NAME_BYTES)
            .or_else(|| over("media type", self.mime.len(), ObjectMeta::MAX_MIME_BYTES))
            .or_else(|| {
                over(
                    "description",
                    self.description.len(),
                    ObjectMeta::MAX_DESCRIPTION_BYTES,
                )
            })
        {
            return Err(e);
        }
        if self
            .mime
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "media type {:?} has spaces or control characters",
                self.mime
            ));
        }
        if self.tags.len() > ObjectMeta::MAX_TAGS {
            return Err(format!(
                "{} tags, at most {}",
                self.tags.len(),
                ObjectMeta::MAX_TAGS
            ));
        }
        for t in &self.tags {
            if t.is_empty()
                || t.len() > ObjectMeta::MAX_TAG_BYTES
                || t.chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == ',')
            {
                return Err(format!(
                    "tag {t:?}: 1 to {} bytes without spaces, commas or control characters",
                    ObjectMeta::MAX_TAG_BYTES
                ));
            }
        }
        if self.name.chars().any(char::is_control) {
            return Err("the name has control characters".into());
        }
        if self
            .description
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(
                "the description has control characters (other than newlines and tabs)".into(),
            );
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Provider {
    pub endpoint: Endpoint,
    pub capacity: u64,
    /// Bytes placed on it by live deals (stored or not yet receipted).
    pub promised: u64,
    pub price_per_gib_epoch: Amount,
    pub stake: Amount,
    pub audits_passed: u64,
    pub audits_failed: u64,
    pub strikes: u64,
    pub iost_earned: Amount,
    pub servi_earned: u64,
    /// Its last audit failed (or went unanswered): no new fragments are
    /// placed on it until it passes one.
    pub failing: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Deal {
    pub owner: Address,
    pub layout: Layout,
    pub meta: ObjectMeta,
    /// Time of the block that made the deal.
    pub created: TimeMs,
    /// `[segment][fragment]`: who holds it.
    pub placement: Vec<Vec<Address>>,
    pub receipted: Vec<Vec<bool>>,
    pub strikes: Vec<Vec<u8>>,
    pub lost: Vec<Vec<bool>>,
    /// The epoch each fragment was placed where it is (its receipt is due
    /// `receipt_epochs` later).
    pub since: Vec<Vec<Epoch>>,
    /// Fragments placed anew after they were lost.
    pub repairs: u64,
    pub price_per_gib_epoch: Amount,
    pub start_epoch: Epoch,
    /// The first epoch no longer paid for.
    pub end_epoch: Epoch,
    pub escrow: Amount,
}

/// One epoch's challenges.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct AuditRound {
    pub epoch: Epoch,
    pub deadline: Height,
    pub challenges: Vec<(Challenge, AuditState)>,
    pub settled: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum AuditState {
    Open,
    Passed,
    Failed,
}

pub mod keys {
    use super::*;

    pub const PROVIDERS: &[u8] = b"storage/providers";
    pub const DEALS: &[u8] = b"storage/deals";
    pub const AUDITS: &[u8] = b"storage/audits";

    pub fn provider(a: &Address) -> Vec<u8> {
        [b"storage/p/".as_slice(), a.as_bytes()].concat()
    }

    pub fn deal(c: &ContentId) -> Vec<u8> {
        [b"storage/d/".as_slice(), c.0.as_bytes()].concat()
    }

    pub fn held(a: &Address) -> Vec<u8> {
        [b"storage/h/".as_slice(), a.as_bytes()].concat()
    }
}

fn bad(reason: impl Into<String>) -> ChainError {
    ChainError::Module {
        module: NAME,
        reason: reason.into(),
    }
}

fn storage_err(e: crate::StorageError) -> ChainError {
    bad(e.to_string())
}

/// The HUDS module.
#[derive(Clone, Debug, Default)]
pub struct StorageModule {
    pub params: StorageParams,
}

impl StorageModule {
    pub fn new(params: StorageParams) -> StorageModule {
        StorageModule { params }
    }

    fn provider(ctx: &CallContext<'_, '_>, a: &Address) -> Result<Option<Provider>> {
        ctx.get(&keys::provider(a))
    }

    fn deal(ctx: &CallContext<'_, '_>, content: &ContentId) -> Result<Deal> {
        ctx.get(&keys::deal(content))?
            .ok_or_else(|| bad(format!("no deal for {content}")))
    }

    fn list<T: BorshDeserialize>(ctx: &CallContext<'_, '_>, key: &[u8]) -> Result<Vec<T>> {
        Ok(ctx.get(key)?.unwrap_or_default())
    }

    fn register(
        &self,
        ctx: &mut CallContext<'_, '_>,
        capacity: u64,
        price: Amount,
        stake: Amount,
        endpoint: Endpoint,
    ) -> Result<()> {
        endpoint.validate()?;
        let me = ctx.sender;
        let mut p = StorageModule::provider(ctx, &me)?.unwrap_or_default();
        if capacity < p.promised {
            return Err(bad(format!(
                "capacity {capacity} is below the {} bytes already promised to deals",
                p.promised
            )));
        }
        let total = p.stake.checked_add(stake).ok_or(ChainError::Overflow)?;
        if total < self.params.min_provider_stake {
            return Err(bad(format!(
                "a provider stakes at least {} (would have {total})",
                self.params.min_provider_stake
            )));
        }
        if stake > 0 {
            ctx.hold(&me, stake)?;
        }
        let new = p == Provider::default();
        p.endpoint = endpoint;
        p.capacity = capacity;
        p.price_per_gib_epoch = price;
        p.stake = total;
        ctx.put(&keys::provider(&me), &p)?;
        if new {
            let mut all: Vec<Address> = StorageModule::list(ctx, keys::PROVIDERS)?;
            if let Err(i) = all.binary_search(&me) {
                all.insert(i, me);
            }
            ctx.put(keys::PROVIDERS, &all)?;
        }
        ctx.emit("provider", &(me, capacity, price, total));
        Ok(())
    }

    fn create_deal(
        &self,
        ctx: &mut CallContext<'_, '_>,
        layout: Layout,
        epochs: u64,
        price: Amount,
        meta: ObjectMeta,
    ) -> Result<()> {
        layout.validate().map_err(storage_err)?;
        meta.validate().map_err(bad)?;
        if layout.size > self.params.max_object_bytes {
            return Err(bad(format!(
                "an object of {} bytes is over the limit of {}",
                layout.size, self.params.max_object_bytes
            )));
        }
        if epochs == 0 || epochs > self.params.max_deal_epochs {
            return Err(bad(format!(
                "{epochs} epochs (from 1 to {})",
                self.params.max_deal_epochs
            )));
        }
        if layout.size == 0 {
            return Err(bad("an empty object needs no deal"));
        }
        if ctx.get::<Deal>(&keys::deal(&layout.content))?.is_some() {
            return Err(bad(format!("{} is already stored", layout.content)));
        }
        let providers: Vec<Address> = StorageModule::list(ctx, keys::PROVIDERS)?;
        let mut candidates = Vec::with_capacity(providers.len());
        for a in &providers {
            let p = StorageModule::provider(ctx, a)?.ok_or_else(|| bad("provider index"))?;
            if p.failing {
                continue;
            }
            let acct = ctx.account(a)?;
            candidates.push(Candidate {
                address: *a,
                free: p.capacity.saturating_sub(p.promised),
                believability: acct.believability(&ctx.params.believability),
                price_per_gib_epoch: p.price_per_gib_epoch,
            });
        }
        let randomness: Hash = ctx.get(K_RANDOMNESS)?.unwrap_or_default();
        let placement =
            deal::place_object(&candidates, &layout, &randomness, price).map_err(storage_err)?;
        let cost = deal::storage_cost(layout.coding.stored_bytes(layout.size), price, epochs)
            .map_err(storage_err)?;
        let owner = ctx.sender;
        ctx.hold(&owner, cost)?;
        for (s, seg) in placement.iter().enumerate() {
            let len = layout.fragment_len(s as u32);
            for a in seg {
                let mut p = StorageModule::provider(ctx, a)?.ok_or_else(|| bad("provider"))?;
                p.promised = p.promised.checked_add(len).ok_or(ChainError::Overflow)?;
                ctx.put(&keys::provider(a), &p)?;
            }
        }
        let n = layout.coding.fragments();
        let segs = layout.segments.len();
        let content = layout.content;
        let d = Deal {
            owner,
            layout,
            meta,
            created: ctx.env.time,
            placement,
            receipted: vec![vec![false; n]; segs],
            strikes: vec![vec![0; n]; segs],
            lost: vec![vec![false; n]; segs],
            since: vec![vec![ctx.env.epoch; n]; segs],
            repairs: 0,
            price_per_gib_epoch: price,
            start_epoch: ctx.env.epoch,
            end_epoch: ctx
                .env
                .epoch
                .checked_add(epochs)
                .ok_or(ChainError::Overflow)?,
            escrow: cost,
        };
        ctx.put(&keys::deal(&content), &d)?;
        let mut deals: Vec<ContentId> = StorageModule::list(ctx, keys::DEALS)?;
        if let Err(i) = deals.binary_search(&content) {
            deals.insert(i, content);
        }
        ctx.put(keys::DEALS, &deals)?;
        ctx.emit("deal", &(content, owner, cost, d.end_epoch));
        Ok(())
    }

    fn receipt(
        &self,
        ctx: &mut CallContext<'_, '_>,
        content: ContentId,
        fragments: Vec<(u32, u16)>,
    ) -> Result<()> {
        let me = ctx.sender;
        let mut d = StorageModule::deal(ctx, &content)?;
        if fragments.is_empty() || fragments.len() > d.layout.coding.fragments() * d.placement.len()
        {
            return Err(bad(format!("{} fragments in a receipt", fragments.len())));
        }
        let mut held: Vec<Held> = StorageModule::list(ctx, &keys::held(&me))?;
        for (s, i) in fragments {
            let who = d
                .placement
                .get(s as usize)
                .and_then(|seg| seg.get(usize::from(i)))
                .ok_or_else(|| bad(format!("no fragment {s}/{i} in {content}")))?;
            if *who != me {
                return Err(bad(format!(
                    "fragment {s}/{i} of {content} is placed on another provider"
                )));
            }
            if d.lost[s as usize][usize::from(i)] {
                return Err(bad(format!("fragment {s}/{i} of {content} is lost")));
            }
            if !d.receipted[s as usize][usize::from(i)] {
                d.receipted[s as usize][usize::from(i)] = true;
                let h = Held {
                    content,
                    segment: s,
                    index: i,
                    len: d.layout.fragment_len(s),
                };
                if let Err(at) = held.binary_search(&h) {
                    held.insert(at, h);
                }
            }
        }
        ctx.put(&keys::held(&me), &held)?;
        ctx.put(&keys::deal(&content), &d)?;
        ctx.emit("receipt", &(content, me));
        Ok(())
    }

    fn prove(
        &self,
        ctx: &mut CallContext<'_, '_>,
        content: ContentId,
        proof: ChunkProof,
    ) -> Result<()> {
        let me = ctx.sender;
        let mut round: AuditRound = ctx
            .get(keys::AUDITS)?
            .ok_or_else(|| bad("no audit round is open"))?;
        if round.settled || ctx.env.height > round.deadline {
            return Err(bad(format!(
                "the audit round of epoch {} closed at height {}",
                round.epoch, round.deadline
            )));
        }
        let Some(pos) = round.challenges.iter().position(|(c, _)| c.provider == me) else {
            return Err(bad("no challenge for the sender this round"));
        };
        let (c, state) = round.challenges[pos];
        if state != AuditState::Open {
            return Err(bad("the challenge is already answered"));
        }
        if c.content != content {
            return Err(bad(format!(
                "the challenge is for {}, not {content}",
                c.content
            )));
        }
        let d = StorageModule::deal(ctx, &content)?;
        match deal::check_answer(&d.layout, &c, &proof) {
            Ok(()) => {
                round.challenges[pos].1 = AuditState::Passed;
                ctx.put(keys::AUDITS, &round)?;
                self.pay(ctx, &me)?;
                ctx.emit("audit_passed", &(me, round.epoch));
            }
            Err(e) => {
                // Recorded, not refused: the strike must persist.
                round.challenges[pos].1 = AuditState::Failed;
                ctx.put(keys::AUDITS, &round)?;
                self.strike(ctx, &me, &[(c.content, c.segment, c.index)])?;
                ctx.emit("audit_failed", &(me, round.epoch, e.to_string()));
            }
        }
        Ok(())
    }

    /// Pays `provider` for one epoch of every fragment it holds.
    fn pay(&self, ctx: &mut CallContext<'_, '_>, provider: &Address) -> Result<()> {
        let held: Vec<Held> = StorageModule::list(ctx, &keys::held(provider))?;
        let mut earned: Amount = 0;
        let mut bytes: u64 = 0;
        let mut i = 0;
        while i < held.len() {
            let content = held[i].content;
            let Some(mut d) = ctx.get::<Deal>(&keys::deal(&content))? else {
                i += 1;
                continue;
            };
            while i < held.len() && held[i].content == content {
                let pay = deal::epoch_payment(held[i].len, d.price_per_gib_epoch).min(d.escrow);
                d.escrow -= pay;
                earned = earned.checked_add(pay).ok_or(ChainError::Overflow)?;
                bytes = bytes.saturating_add(held[i].len);
                i += 1;
            }
            ctx.put(&keys::deal(&content), &d)?;
        }
        let servi = deal::epoch_servi(bytes, self.params.servi_per_gib_epoch);
        if earned > 0 {
            ctx.release(provider, earned)?;
        }
        let mut acct = ctx.account(provider)?;
        acct.servi = acct.servi.saturating_add(servi);
        ctx.set_account(provider, &acct);
        let mut p = StorageModule::provider(ctx, provider)?.unwrap_or_default();
        p.audits_passed += 1;
        p.failing = false;
        p.iost_earned = p.iost_earned.saturating_add(earned);
        p.servi_earned = p.servi_earned.saturating_add(servi);
        ctx.put(&keys::provider(provider), &p)?;
        Ok(())
    }

    /// A failed or missed audit of `provider`: one strike on each of
    /// `fragments` (the challenged one for a bad proof, everything it holds
    /// for no answer at all); at `max_strikes` a fragment is lost.
    fn strike(
        &self,
        ctx: &mut CallContext<'_, '_>,
        provider: &Address,
        fragments: &[(ContentId, u32, u16)],
    ) -> Result<()> {
        let mut p = StorageModule::provider(ctx, provider)?.unwrap_or_default();
        p.audits_failed += 1;
        p.strikes += 1;
        p.failing = true;
        ctx.put(&keys::provider(provider), &p)?;
        let mut i = 0;
        while i < fragments.len() {
            let content = fragments[i].0;
            let Some(mut d) = ctx.get::<Deal>(&keys::deal(&content))? else {
                i += 1;
                continue;
            };
            let mut touched = Vec::new();
            while i < fragments.len() && fragments[i].0 == content {
                let (_, seg, idx) = fragments[i];
                let (s, f) = (seg as usize, usize::from(idx));
                i += 1;
                if d.placement[s][f] != *provider || d.lost[s][f] {
                    continue;
                }
                d.strikes[s][f] = d.strikes[s][f].saturating_add(1);
                if d.strikes[s][f] >= self.params.max_strikes {
                    self.lose(ctx, &mut d, seg, idx)?;
                    touched.push(seg);
                }
            }
            for seg in touched {
                self.repair(ctx, &mut d, seg)?;
            }
            ctx.put(&keys::deal(&content), &d)?;
        }
        Ok(())
    }

    /// Declares fragment `segment/index` of `d` lost: off its provider's
    /// holdings and promise (the caller stores `d`).
    fn lose(
        &self,
        ctx: &mut CallContext<'_, '_>,
        d: &mut Deal,
        segment: u32,
        index: u16,
    ) -> Result<()> {
        let (s, f) = (segment as usize, usize::from(index));
        let who = d.placement[s][f];
        let content = d.layout.content;
        d.lost[s][f] = true;
        d.receipted[s][f] = false;
        let mut held: Vec<Held> = StorageModule::list(ctx, &keys::held(&who))?;
        held.retain(|h| !(h.content == content && h.segment == segment && h.index == index));
        ctx.put(&keys::held(&who), &held)?;
        let mut p = StorageModule::provider(ctx, &who)?.unwrap_or_default();
        p.promised = p.promised.saturating_sub(d.layout.fragment_len(segment));
        ctx.put(&keys::provider(&who), &p)?;
        ctx.emit("fragment_lost", &(content, segment, index, who));
        Ok(())
    }

    /// Repair on chain: when `segment` of `d` has fewer than k +
    /// `repair_margin` healthy fragments, each lost one is placed on a new
    /// provider (one that holds no fragment of the segment), due for a
    /// receipt like a fresh placement; a repairer off chain rebuilds the
    /// bytes from k healthy fragments and sends them there. A fragment no
    /// provider can take stays lost.
    fn repair(&self, ctx: &mut CallContext<'_, '_>, d: &mut Deal, segment: u32) -> Result<()> {
        let s = segment as usize;
        let healthy = d.lost[s].iter().filter(|l| !**l).count();
        let k = usize::from(d.layout.coding.data);
        if healthy >= k + usize::from(self.params.repair_margin) {
            return Ok(());
        }
        let len = d.layout.fragment_len(segment);
        let randomness: Hash = ctx.get(K_RANDOMNESS)?.unwrap_or_default();
        let providers: Vec<Address> = StorageModule::list(ctx, keys::PROVIDERS)?;
        // Nobody who holds a fragment of the segment, or just lost one.
        let mut excluded = d.placement[s].clone();
        for f in 0..d.lost[s].len() {
            if !d.lost[s][f] {
                continue;
            }
            let mut candidates = Vec::new();
            for a in providers.iter().filter(|a| !excluded.contains(a)) {
                let p = StorageModule::provider(ctx, a)?.ok_or_else(|| bad("provider index"))?;
                if p.failing {
                    continue;
                }
                candidates.push(Candidate {
                    address: *a,
                    free: p.capacity.saturating_sub(p.promised),
                    believability: ctx.account(a)?.believability(&ctx.params.believability),
                    price_per_gib_epoch: p.price_per_gib_epoch,
                });
            }
            let seed = deal::repair_seed(
                &randomness,
                &d.layout.content,
                segment,
                f as u16,
                ctx.env.epoch,
            );
            let Ok(chosen) = deal::place(&candidates, 1, len, d.price_per_gib_epoch, &seed) else {
                ctx.emit("repair_stalled", &(d.layout.content, segment, f as u16));
                continue;
            };
            let new = chosen[0];
            let mut p = StorageModule::provider(ctx, &new)?.ok_or_else(|| bad("provider"))?;
            p.promised = p.promised.checked_add(len).ok_or(ChainError::Overflow)?;
            ctx.put(&keys::provider(&new), &p)?;
            d.placement[s][f] = new;
            excluded.push(new);
            d.lost[s][f] = false;
            d.receipted[s][f] = false;
            d.strikes[s][f] = 0;
            d.since[s][f] = ctx.env.epoch;
            d.repairs += 1;
            ctx.emit(
                "fragment_replaced",
                &(d.layout.content, segment, f as u16, new),
            );
        }
        Ok(())
    }

    /// Unanswered challenges of a round whose window closed: a strike on
    /// everything each silent provider holds.
    fn settle(&self, ctx: &mut CallContext<'_, '_>, round: &mut AuditRound) -> Result<()> {
        for (c, state) in round.challenges.iter_mut() {
            if *state == AuditState::Open {
                *state = AuditState::Failed;
                let held: Vec<Held> = StorageModule::list(ctx, &keys::held(&c.provider))?;
                let all: Vec<_> = held
                    .iter()
                    .map(|h| (h.content, h.segment, h.index))
                    .collect();
                self.strike(ctx, &c.provider, &all)?;
                ctx.emit("audit_missed", &(c.provider, c.epoch));
            }
        }
        round.settled = true;
        Ok(())
    }

    /// Fragments whose provider never signed for them within
    /// `receipt_epochs` of their placement: lost (and repaired).
    fn overdue(&self, ctx: &mut CallContext<'_, '_>, epoch: Epoch) -> Result<()> {
        let deals: Vec<ContentId> = StorageModule::list(ctx, keys::DEALS)?;
        for cid in deals {
            let Some(mut d) = ctx.get::<Deal>(&keys::deal(&cid))? else {
                continue;
            };
            let mut touched = Vec::new();
            for s in 0..d.placement.len() {
                for f in 0..d.placement[s].len() {
                    let due = d.since[s][f].saturating_add(self.params.receipt_epochs);
                    if !d.receipted[s][f] && !d.lost[s][f] && epoch >= due {
                        self.lose(ctx, &mut d, s as u32, f as u16)?;
                        touched.push(s as u32);
                    }
                }
            }
            if touched.is_empty() {
                continue;
            }
            touched.dedup();
            for seg in touched {
                self.repair(ctx, &mut d, seg)?;
            }
            ctx.put(&keys::deal(&cid), &d)?;
        }
        Ok(())
    }

    /// Deals past their last epoch: the rest of the escrow back to the
    /// owner, the fragments off their providers.
    fn expire(&self, ctx: &mut CallContext<'_, '_>, epoch: Epoch) -> Result<()> {
        let deals: Vec<ContentId> = StorageModule::list(ctx, keys::DEALS)?;
        let mut live = Vec::with_capacity(deals.len());
        for cid in deals {
            let Some(d) = ctx.get::<Deal>(&keys::deal(&cid))? else {
                continue;
            };
            if d.end_epoch > epoch {
                live.push(cid);
                continue;
            }
            if d.escrow > 0 {
                ctx.release(&d.owner, d.escrow)?;
            }
            for (s, seg) in d.placement.iter().enumerate() {
                let len = d.layout.fragment_len(s as u32);
                for (i, a) in seg.iter().enumerate() {
                    let mut p = StorageModule::provider(ctx, a)?.unwrap_or_default();
                    if !d.lost[s][i] {
                        p.promised = p.promised.saturating_sub(len);
                    }
                    ctx.put(&keys::provider(a), &p)?;
                    let mut held: Vec<Held> = StorageModule::list(ctx, &keys::held(a))?;
                    held.retain(|h| h.content != cid);
                    ctx.put(&keys::held(a), &held)?;
                }
            }
            ctx.delete(&keys::deal(&cid))?;
            ctx.emit("deal_expired", &(cid, d.owner, d.escrow));
        }
        ctx.put(keys::DEALS, &live)?;
        Ok(())
    }
}

impl Module for StorageModule {
    fn id(&self) -> ModuleId {
        STORAGE_MODULE
    }

    fn name(&self) -> &'static str {
        NAME
    }

    fn execute(&self, ctx: &mut CallContext<'_, '_>, payload: &[u8]) -> Result<()> {
        let call: StorageCall =
            ios_chain::codec::decode("storage call", payload, ios_chain::tx::MAX_TX_BYTES)?;
        match call {
            StorageCall::RegisterProvider {
                capacity,
                price_per_gib_epoch,
                stake,
                endpoint,
            } => self.register(ctx, capacity, price_per_gib_epoch, stake, endpoint),
            StorageCall::CreateDeal {
                layout,
                epochs,
                price_per_gib_epoch,
                meta,
            } => self.create_deal(ctx, layout, epochs, price_per_gib_epoch, meta),
            StorageCall::Receipt { content, fragments } => self.receipt(ctx, content, fragments),
            StorageCall::Prove { content, proof } => self.prove(ctx, content, proof),
        }
    }

    /// Settles an audit round once its window closes; at each new epoch,
    /// expires deals and issues the next round.
    fn end_block(&self, ctx: &mut CallContext<'_, '_>) -> Result<()> {
        let mut round: AuditRound = ctx.get(keys::AUDITS)?.unwrap_or_default();
        let fresh = round == AuditRound::default();
        let new_epoch = fresh || ctx.env.epoch > round.epoch;
        if !fresh && !round.settled && (new_epoch || ctx.env.height > round.deadline) {
            self.settle(ctx, &mut round)?;
            ctx.put(keys::AUDITS, &round)?;
        }
        if !new_epoch {
            return Ok(());
        }
        self.expire(ctx, ctx.env.epoch)?;
        self.overdue(ctx, ctx.env.epoch)?;
        let randomness: Hash = ctx.get(K_RANDOMNESS)?.unwrap_or_default();
        let providers: Vec<Address> = StorageModule::list(ctx, keys::PROVIDERS)?;
        let mut challenges = Vec::new();
        for a in providers {
            let held: Vec<Held> = StorageModule::list(ctx, &keys::held(&a))?;
            if let Some(c) = deal::challenge(&randomness, ctx.env.epoch, &a, &held) {
                challenges.push((c, AuditState::Open));
            }
        }
        let next = AuditRound {
            epoch: ctx.env.epoch,
            deadline: ctx.env.height.saturating_add(self.params.audit_window),
            challenges,
            settled: false,
        };
        ctx.put(keys::AUDITS, &next)?;
        Ok(())
    }
}
