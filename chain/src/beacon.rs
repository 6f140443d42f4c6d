//! The epoch randomness beacon, run on chain by the beacon committee (PVSS,
//! see [`crate::pvss`]). One [`RandomnessRound`] per epoch e produces
//! R_{e+1}:
//!
//! 1. **Deal**: while the dealing window is open, each member posts one
//!    dealing as a transaction; it is verified before it is stored.
//! 2. **Fix Q**: the block at the window's end fixes the qualified set Q of
//!    stored dealings (the window stays open, block by block, until Q has at
//!    least t = f+1 dealers, so at least one honest dealer is in Q).
//! 3. **Reveal**: only once that block is final do members post their
//!    decrypted shares of every dealing in Q, each with a DLEQ proof.
//! 4. **Output**: at or after the epoch's nominal end, once t members have
//!    revealed, each dealer's secret is recovered from any t shares and
//!    `R_{e+1} = blake3("ios-epoch", e+1, sum of the secrets)`.
//!
//! Q is fixed before anyone can know a secret (t shares are needed and
//! honest members reveal only after Q is final), and any t shares recover a
//! secret, so withholding a reveal can delay the output but not change it.
//! Everything needed to check a run is on chain: [`verify_run`].

use crate::codec;
use crate::crypto::Address;
use crate::error::{ChainError, Result};
use crate::hash::Hash;
use crate::module::CallContext;
use crate::pvss::{self, Dealing, DecryptedShare, PvssPublicKey};
use crate::state::StateRead;
use crate::types::{ChainId, Epoch, Height};
use borsh::{BorshDeserialize, BorshSerialize};

/// The round of the current epoch.
pub const K_ROUND: &[u8] = b"core/beacon/round";
/// The last finished round and its output: with the dealings and reveals in
/// the blocks, enough for anyone to check it ([`verify_run`]).
pub const K_LAST_ROUND: &[u8] = b"core/beacon/last";
const DEALING_PREFIX: &[u8] = b"core/beacon/dealing/";
const REVEAL_PREFIX: &[u8] = b"core/beacon/reveal/";
const PVSS_KEY_PREFIX: &[u8] = b"core/pvss/key/";
const PVSS_OWNER_PREFIX: &[u8] = b"core/pvss/owner/";

fn keyed(prefix: &[u8], id: &[u8]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(id);
    k
}

pub fn dealing_key(dealer: &Address) -> Vec<u8> {
    keyed(DEALING_PREFIX, &dealer.0)
}

pub fn reveal_key(member: &Address) -> Vec<u8> {
    keyed(REVEAL_PREFIX, &member.0)
}

/// Where a validator's registered PVSS public key is kept.
pub fn pvss_key_key(validator: &Address) -> Vec<u8> {
    keyed(PVSS_KEY_PREFIX, &validator.0)
}

/// Which validator registered a PVSS key (keys are unique among validators).
pub fn pvss_owner_key(key: &PvssPublicKey) -> Vec<u8> {
    keyed(PVSS_OWNER_PREFIX, &key.0)
}

/// A PVSS key must be a valid, non-identity Ristretto point: shares
/// encrypted to anything else could never be decrypted.
pub fn check_pvss_key(key: &PvssPublicKey) -> Result<()> {
    let point = curve25519_dalek::ristretto::CompressedRistretto(key.0)
        .decompress()
        .ok_or_else(|| phase("the PVSS key is not a valid Ristretto point"))?;
    if point == curve25519_dalek::ristretto::RistrettoPoint::default() {
        return Err(phase("the PVSS key is the identity point"));
    }
    Ok(())
}

/// The randomness round run by epoch `epoch`'s beacon committee.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct RandomnessRound {
    /// The epoch running the round; its output is R_{epoch+1}.
    pub epoch: Epoch,
    /// Dealers and share holders; member i holds share index i+1.
    pub members: Vec<Address>,
    pub keys: Vec<PvssPublicKey>,
    /// t = f+1 shares recover a secret.
    pub threshold: u32,
    /// Dealings are accepted up to and including this height.
    pub window_end: Height,
    /// Q: the dealers whose dealings count, in member order. `None` while
    /// the window is open.
    pub qualified: Option<Vec<Address>>,
    /// Members whose reveals are stored, in the order they were included.
    pub revealed: Vec<Address>,
}

impl RandomnessRound {
    /// A round for `members` (with their PVSS keys) whose window closes
    /// `window` blocks after `start`.
    pub fn new(
        epoch: Epoch,
        members: Vec<(Address, PvssPublicKey)>,
        start: Height,
        window: u64,
    ) -> RandomnessRound {
        let n = members.len();
        let (members, keys) = members.into_iter().unzip();
        RandomnessRound {
            epoch,
            members,
            keys,
            threshold: (crate::shard::max_faulty(n) + 1) as u32,
            window_end: start + window.max(1) - 1,
            qualified: None,
            revealed: Vec::new(),
        }
    }

    pub fn index_of(&self, a: &Address) -> Option<usize> {
        self.members.iter().position(|m| m == a)
    }

    pub fn threshold(&self) -> usize {
        self.threshold as usize
    }

    /// Whether enough members revealed for every dealing in Q to be recovered.
    pub fn complete(&self) -> bool {
        self.qualified.is_some() && self.revealed.len() >= self.threshold()
    }
}

/// What a dealing's and a share's proofs are bound to: the network, the
/// epoch and the dealer, so neither can be replayed elsewhere.
pub fn context(chain_id: &ChainId, epoch: Epoch, dealer: &Address) -> Vec<u8> {
    codec::encode(&("ios/beacon", chain_id, epoch, dealer))
}

/// What a PVSS key's proof of possession is bound to: the network and the
/// account registering it, so a proof cannot be replayed by another account.
pub fn possession_context(chain_id: &ChainId, account: &Address) -> Vec<u8> {
    codec::encode(&("ios/pvss-possession", chain_id, account))
}

fn phase(m: impl Into<String>) -> ChainError {
    ChainError::Beacon(m.into())
}

fn round_of(ctx: &CallContext<'_, '_>, epoch: Epoch) -> Result<RandomnessRound> {
    let round: RandomnessRound = ctx
        .get(K_ROUND)?
        .ok_or_else(|| phase("this shard runs no randomness beacon"))?;
    if round.epoch != epoch {
        return Err(phase(format!(
            "the current randomness round is epoch {}, not {epoch}",
            round.epoch
        )));
    }
    Ok(round)
}

/// Executes a `Deal` call: a member's dealing while the window is open.
pub fn deal(ctx: &mut CallContext<'_, '_>, epoch: Epoch, dealing: &Dealing) -> Result<()> {
    let round = round_of(ctx, epoch)?;
    let dealer = ctx.sender;
    if round.index_of(&dealer).is_none() {
        return Err(ChainError::NotCommitteeMember(dealer));
    }
    if round.qualified.is_some() || ctx.env.height > round.window_end {
        return Err(phase(format!(
            "the dealing window of epoch {epoch} closed at height {}",
            round.window_end
        )));
    }
    let key = dealing_key(&dealer);
    if ctx.get::<Dealing>(&key)?.is_some() {
        return Err(phase(format!("{dealer} already dealt in epoch {epoch}")));
    }
    let cx = context(&ctx.env.chain_id, epoch, &dealer);
    pvss::verify_dealing(&cx, &round.keys, round.threshold(), dealing)?;
    ctx.put(&key, dealing)?;
    ctx.emit("dealing", &(epoch, dealer));
    Ok(())
}

/// Executes a `Reveal` call: a member's decrypted shares of every dealing
/// in Q (in Q's order), once Q is final.
pub fn reveal(
    ctx: &mut CallContext<'_, '_>,
    epoch: Epoch,
    shares: &[DecryptedShare],
) -> Result<()> {
    let mut round = round_of(ctx, epoch)?;
    let member = ctx.sender;
    let index = round
        .index_of(&member)
        .ok_or(ChainError::NotCommitteeMember(member))?;
    let qualified = round.qualified.clone().ok_or_else(|| {
        phase(format!(
            "the qualified set of epoch {epoch} is not fixed yet"
        ))
    })?;
    if round.revealed.contains(&member) {
        return Err(phase(format!("{member} already revealed in epoch {epoch}")));
    }
    if shares.len() != qualified.len() {
        return Err(phase(format!(
            "{} shares for {} qualified dealings",
            shares.len(),
            qualified.len()
        )));
    }
    for (dealer, share) in qualified.iter().zip(shares) {
        if share.index as usize != index + 1 {
            return Err(phase(format!(
                "share index {} is not the sender's index {}",
                share.index,
                index + 1
            )));
        }
        let dealing: Dealing = ctx
            .get(&dealing_key(dealer))?
            .ok_or_else(|| ChainError::Storage(format!("qualified dealing of {dealer} missing")))?;
        let cx = context(&ctx.env.chain_id, epoch, dealer);
        pvss::verify_share(&cx, &round.keys, &dealing, share)?;
    }
    ctx.put(&reveal_key(&member), &shares.to_vec())?;
    round.revealed.push(member);
    ctx.put(K_ROUND, &round)?;
    ctx.emit("reveal", &(epoch, member));
    Ok(())
}

/// End-of-block step of the round at `height`: fixes Q when the window
/// closes (or extends the window while fewer than t dealt). Returns the
/// updated round if it changed.
pub fn close_window(
    state: &dyn StateRead,
    round: &RandomnessRound,
    height: Height,
) -> Result<Option<RandomnessRound>> {
    if round.qualified.is_some() || height < round.window_end {
        return Ok(None);
    }
    let mut q = Vec::new();
    for m in &round.members {
        if state.read(&dealing_key(m))?.is_some() {
            q.push(*m);
        }
    }
    let mut next = round.clone();
    if q.len() >= round.threshold() {
        next.qualified = Some(q);
    } else {
        next.window_end = height + 1;
    }
    Ok(Some(next))
}

/// The round's output from state, once [`RandomnessRound::complete`]:
/// every qualified secret recovered from the first t reveals.
pub fn output(state: &dyn StateRead, round: &RandomnessRound) -> Result<Hash> {
    let q = round
        .qualified
        .as_ref()
        .ok_or_else(|| phase("the qualified set is not fixed"))?;
    let t = round.threshold();
    let mut reveals = Vec::with_capacity(t);
    for m in round.revealed.iter().take(t) {
        let shares: Vec<DecryptedShare> = crate::committee::read(state, &reveal_key(m))?
            .ok_or_else(|| ChainError::Storage(format!("reveal of {m} missing")))?;
        reveals.push(shares);
    }
    recover_output(round.epoch, q.len(), t, &reveals)
}

fn recover_output(
    epoch: Epoch,
    qualified: usize,
    t: usize,
    reveals: &[Vec<DecryptedShare>],
) -> Result<Hash> {
    let mut secrets = Vec::with_capacity(qualified);
    for j in 0..qualified {
        let shares: Vec<DecryptedShare> =
            reveals.iter().filter_map(|r| r.get(j).cloned()).collect();
        secrets.push(pvss::recover(t, &shares)?);
    }
    Ok(pvss::beacon_output(epoch + 1, &secrets)?)
}

/// Checks a whole round from chain data alone (the round record with its
/// members' keys and Q, the dealings of Q and any reveals) and returns
/// R_{epoch+1}. Used by auditors and light clients; the chain itself checks
/// each piece as it is included.
pub fn verify_run(
    chain_id: &ChainId,
    round: &RandomnessRound,
    dealings: &[(Address, Dealing)],
    reveals: &[(Address, Vec<DecryptedShare>)],
) -> Result<Hash> {
    let q = round
        .qualified
        .as_ref()
        .ok_or_else(|| phase("the qualified set is not fixed"))?;
    let t = round.threshold();
    if q.len() < t {
        return Err(phase(format!("{} qualified dealers, need {t}", q.len())));
    }
    let mut qualified = Vec::with_capacity(q.len());
    for dealer in q {
        let (_, dealing) = dealings
            .iter()
            .find(|(d, _)| d == dealer)
            .ok_or_else(|| phase(format!("the dealing of {dealer} is missing")))?;
        let cx = context(chain_id, round.epoch, dealer);
        pvss::verify_dealing(&cx, &round.keys, t, dealing)?;
        qualified.push((dealer, dealing));
    }
    let mut good = Vec::new();
    for (member, shares) in reveals {
        let index = round
            .index_of(member)
            .ok_or(ChainError::NotCommitteeMember(*member))?;
        if shares.len() != q.len() {
            return Err(phase(format!(
                "the reveal of {member} has the wrong length"
            )));
        }
        for ((dealer, dealing), share) in qualified.iter().zip(shares) {
            if share.index as usize != index + 1 {
                return Err(phase(format!("the reveal of {member} has a wrong index")));
            }
            let cx = context(chain_id, round.epoch, dealer);
            pvss::verify_share(&cx, &round.keys, dealing, share)?;
        }
        good.push(shares.clone());
    }
    if good.len() < t {
        return Err(phase(format!("{} reveals, need {t}", good.len())));
    }
    recover_output(round.epoch, q.len(), t, &good)
}
