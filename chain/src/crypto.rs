//! Keys, signatures and addresses. An address is the account's ed25519 public
//! key, shown as bech32m with the human-readable part `ios`. Signatures are
//! always over a domain-tagged blake3 digest, never over raw bytes.

use crate::error::{ChainError, Result};
use crate::hash::Hash;
use bech32::{Bech32m, Hrp};
use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock, PoisonError};

const HRP: Hrp = Hrp::parse_unchecked("ios");

/// An account address: the 32-byte ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct Address(pub [u8; 32]);

impl Address {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_bech32(&self) -> String {
        bech32::encode::<Bech32m>(HRP, &self.0).expect("32 bytes always fit a bech32m string")
    }

    /// Parses `ios1...` (bech32m only: a bech32 checksum is rejected).
    pub fn from_bech32(s: &str) -> Result<Address> {
        let checked = bech32::primitives::decode::CheckedHrpstring::new::<Bech32m>(s)
            .map_err(|e| ChainError::InvalidAddress(format!("{s:?}: {e}")))?;
        if checked.hrp() != HRP {
            return Err(ChainError::InvalidAddress(format!(
                "{s:?}: prefix {:?} is not \"ios\"",
                checked.hrp().as_str()
            )));
        }
        let bytes: Vec<u8> = checked.byte_iter().collect();
        let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            ChainError::InvalidAddress(format!("{s:?}: {} bytes, want 32", bytes.len()))
        })?;
        Ok(Address(arr))
    }

    /// The decompressed key. Decompression costs about a fifth of a
    /// verification, and the same senders sign again and again, so valid keys
    /// are remembered (a bounded cache that is simply cleared when full).
    fn verifying_key(&self) -> Result<VerifyingKey> {
        const CAPACITY: usize = 1 << 16;
        static CACHE: OnceLock<Mutex<HashMap<[u8; 32], VerifyingKey>>> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        if let Some(k) = cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&self.0)
        {
            return Ok(*k);
        }
        let key = VerifyingKey::from_bytes(&self.0)
            .map_err(|_| ChainError::InvalidAddress("not a valid ed25519 point".into()))?;
        if key.is_weak() {
            return Err(ChainError::InvalidAddress("weak (small-order) key".into()));
        }
        let mut c = cache.lock().unwrap_or_else(PoisonError::into_inner);
        if c.len() >= CAPACITY {
            c.clear();
        }
        c.insert(self.0, key);
        Ok(key)
    }

    /// Verifies `signature` by this address over `digest`.
    pub fn verify(&self, digest: &Hash, signature: &Signature, what: &'static str) -> Result<()> {
        let key = self
            .verifying_key()
            .map_err(|_| ChainError::BadSignature(what))?;
        key.verify_strict(
            &digest.0,
            &ed25519_dalek::Signature::from_bytes(&signature.0),
        )
        .map_err(|_| ChainError::BadSignature(what))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_bech32())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.to_bech32();
        write!(f, "{}..{}", &s[..8], &s[s.len() - 4..])
    }
}

impl FromStr for Address {
    type Err = ChainError;
    fn from_str(s: &str) -> Result<Self> {
        Address::from_bech32(s)
    }
}

/// A 64-byte ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sig:{:02x}{:02x}{:02x}{:02x}",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

/// A signing key. Never printed: `Debug` shows only the address.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl Keypair {
    /// Derives a key from 32 secret bytes (callers supply the randomness).
    pub fn from_secret(secret: [u8; 32]) -> Keypair {
        Keypair {
            signing: SigningKey::from_bytes(&secret),
        }
    }

    /// A deterministic key for tests, the simulator and devnet accounts.
    pub fn from_seed(label: &str, index: u64) -> Keypair {
        let mut h = blake3::Hasher::new();
        h.update(b"ios/test-key");
        h.update(label.as_bytes());
        h.update(&index.to_le_bytes());
        Keypair::from_secret(*h.finalize().as_bytes())
    }

    pub fn secret_bytes(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The X25519 secret that matches this key's address under the
    /// standard Edwards-to-Montgomery map (the first half of SHA-512 of
    /// the seed, as libsodium and age derive it), so anyone can seal to an
    /// address and only its key opens.
    pub fn x25519_secret(&self) -> [u8; 32] {
        self.signing.to_scalar_bytes()
    }

    pub fn address(&self) -> Address {
        Address(self.signing.verifying_key().to_bytes())
    }

    pub fn sign(&self, digest: &Hash) -> Signature {
        Signature(self.signing.sign(&digest.0).to_bytes())
    }

    /// The validator's randomness-beacon key, derived from its signing key
    /// so one secret backs both (a separate domain keeps them unrelated).
    pub fn pvss(&self) -> crate::pvss::PvssKeypair {
        let seed = crate::hash::hash_tagged(
            crate::hash::tag::PVSS_FROM_SIGNING_KEY,
            &self.secret_bytes(),
        );
        crate::pvss::PvssKeypair::from_seed(&seed.0)
    }

    /// This validator's dealing seed for `epoch`: secret, and unique per
    /// (chain, epoch), so a validator that restarts deals the same dealing
    /// again rather than a second, different one.
    pub fn dealing_seed(&self, chain_id: &crate::types::ChainId, epoch: u64) -> [u8; 32] {
        let mut h = crate::hash::DomainHasher::new(crate::hash::tag::PVSS_DEALING_SEED);
        h.update(&self.secret_bytes())
            .update(chain_id.0.as_bytes())
            .update(&epoch.to_le_bytes());
        h.finalize().0
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({:?})", self.address())
    }
}

/// Verifies many (address, digest, signature) triples at once with ed25519 batch
/// verification (two to three times the single rate, more for larger batches). On failure it falls back to
/// single verification to name the first bad index, so the outcome is the same
/// as verifying one by one.
pub fn verify_batch(items: &[(Address, Hash, Signature)]) -> std::result::Result<(), usize> {
    if items.is_empty() {
        return Ok(());
    }
    let mut keys = Vec::with_capacity(items.len());
    for (i, (addr, _, _)) in items.iter().enumerate() {
        match addr.verifying_key() {
            Ok(k) => keys.push(k),
            Err(_) => return Err(i),
        }
    }
    let msgs: Vec<&[u8]> = items.iter().map(|(_, d, _)| d.0.as_slice()).collect();
    let sigs: Vec<ed25519_dalek::Signature> = items
        .iter()
        .map(|(_, _, s)| ed25519_dalek::Signature::from_bytes(&s.0))
        .collect();
    if ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok() {
        // Known gap: ed25519-dalek's batch equation is cofactorless but not
        // strict, so a signature crafted with a small-order component in R can
        // pass a batch (with probability about 1/8) and fail `verify_strict`.
        // Honest signatures pass both. Moving to ZIP-215 rules everywhere
        // (ed25519-zebra) closes it; see docs/protocol.md.
        return Ok(());
    }
    for (i, (addr, digest, sig)) in items.iter().enumerate() {
        if addr.verify(digest, sig, "batch item").is_err() {
            return Err(i);
        }
    }
    // The batch failed but every single check passed: treat as invalid rather
    // than let two verifiers disagree.
    Err(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::hash_tagged;

    #[test]
    fn address_round_trips_through_bech32m() {
        let kp = Keypair::from_seed("t", 1);
        let a = kp.address();
        let s = a.to_bech32();
        assert!(s.starts_with("ios1"));
        assert_eq!(Address::from_bech32(&s).unwrap(), a);
    }

    #[test]
    fn bad_addresses_are_typed_errors() {
        let good = Keypair::from_seed("t", 1).address().to_bech32();
        let mut flipped = good.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'q' { b'p' } else { b'q' };
        let bech32_not_m = bech32::encode::<bech32::Bech32>(HRP, &[7u8; 32]).expect("encodes");
        let other_hrp =
            bech32::encode::<Bech32m>(Hrp::parse_unchecked("btc"), &[7u8; 32]).expect("encodes");
        let short = bech32::encode::<Bech32m>(HRP, &[7u8; 31]).expect("encodes");
        for bad in [
            String::new(),
            "ios1".into(),
            String::from_utf8(flipped).unwrap(),
            bech32_not_m,
            other_hrp,
            short,
        ] {
            assert!(
                matches!(
                    Address::from_bech32(&bad),
                    Err(ChainError::InvalidAddress(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn signatures_verify_singly_and_in_batch() {
        let kps: Vec<Keypair> = (0..8).map(|i| Keypair::from_seed("b", i)).collect();
        let mut items: Vec<(Address, Hash, Signature)> = kps
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let d = hash_tagged("test", &[i as u8]);
                (k.address(), d, k.sign(&d))
            })
            .collect();
        for (a, d, s) in &items {
            a.verify(d, s, "t").unwrap();
        }
        assert_eq!(verify_batch(&items), Ok(()));
        items[5].1 = hash_tagged("test", b"other");
        assert_eq!(verify_batch(&items), Err(5));
        assert!(items[5].0.verify(&items[5].1, &items[5].2, "t").is_err());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let kp = Keypair::from_seed("t", 9);
        let dbg = format!("{kp:?}");
        let secret_hex: String = kp
            .secret_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(!dbg.contains(&secret_hex[..16]));
    }
}
