//! Publicly verifiable secret sharing (PVSS) over Ristretto255, the epoch
//! randomness beacon's commitment scheme. This module owns the member key
//! pairs, dealing a secret to a committee, verifying a dealing and a decrypted
//! share against public data only, recovering the secret from any threshold of
//! shares, and folding the recovered secrets into the beacon output.
//!
//! The scheme is SCRAPE (Cascudo & David, "SCRAPE: Scalable Randomness
//! Attested by Public Entities", ACNS 2017, <https://eprint.iacr.org/2017/216>),
//! DDH variant. With `g` the Ristretto basepoint and `h` a second generator
//! hashed to the curve (so nobody knows log_g h), member `i` (1-based position
//! in the key list) holds `x_i` with public key `y_i = x_i·h`. A dealer with
//! polynomial `p` of degree `t-1` publishes commitments `v_i = p(i)·g`,
//! encrypted shares `ŝ_i = p(i)·y_i` and Chaum–Pedersen proofs that both use
//! the same `p(i)`; anyone checks the proofs and, with one multiscalar
//! multiplication against a random codeword of the dual Reed–Solomon code,
//! that the `v_i` lie on a polynomial of degree below `t`. Member `i` reveals
//! `S_i = x_i^{-1}·ŝ_i = p(i)·h` with a proof, and any `t` revealed shares
//! interpolate the secret `S = p(0)·h`, which the dealer never publishes.
//!
//! Everything is deterministic: randomness comes in as a 32-byte seed and is
//! expanded with blake3 under a domain tag, and every Fiat–Shamir challenge
//! binds a caller-supplied context (the chain passes chain id, epoch and
//! dealer) so nothing can be replayed into another epoch or another dealer's
//! name. No input makes these functions panic; bad input is a [`PvssError`].

use crate::hash::{tag, DomainHasher, Hash};
use borsh::{BorshDeserialize, BorshSerialize};
use curve25519_dalek::constants::RISTRETTO_BASEPOINT_COMPRESSED;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{Identity, IsIdentity, VartimeMultiscalarMul};
use std::fmt;
use std::sync::OnceLock;

/// Largest committee a dealing may address. Verification is O(n) scalar
/// multiplications plus O(n·(n-t)) scalar arithmetic for the degree check, so
/// an unbounded key list would let a caller make verification arbitrarily slow;
/// the chain's committees are far smaller.
pub const MAX_MEMBERS: usize = 1024;

/// Why a dealing, share or secret was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PvssError {
    #[error("threshold {t} is invalid for {n} members: need 1 <= threshold <= members")]
    BadThreshold { t: usize, n: usize },
    #[error("{n} members is over the PVSS limit of {max}")]
    TooManyMembers { n: usize, max: usize },
    #[error("dealing has {got} {what}, expected one per member ({expected})")]
    WrongLength {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("{what} of member {index} is not a valid Ristretto point encoding")]
    InvalidPoint { what: &'static str, index: u32 },
    #[error("{what} of member {index} is the identity point")]
    IdentityPoint { what: &'static str, index: u32 },
    #[error("{what} scalar in the proof of member {index} is not canonical (not reduced mod the group order)")]
    NonCanonicalScalar { what: &'static str, index: u32 },
    #[error("DLEQ proof of member {index} does not verify (wrong context, or a tampered point or proof)")]
    BadDleq { index: u32 },
    #[error("the commitments do not lie on a polynomial of degree below the threshold")]
    DegreeCheckFailed,
    #[error("member index {index} is out of range 1..={n}")]
    IndexOutOfRange { index: u32, n: usize },
    #[error("share index 0 is not a member index (members are numbered from 1)")]
    ZeroIndex,
    #[error("two shares for member index {0}")]
    DuplicateIndex(u32),
    #[error("{have} distinct shares, the threshold needs {need}")]
    TooFewShares { have: usize, need: usize },
    #[error("the dealer's proof for member {index} does not verify under this key: the index is not this key's position, or the dealing is invalid")]
    KeyMismatch { index: u32 },
    #[error("no recovered secrets to combine into a beacon output")]
    NoSecrets,
}

/// A member's public key: the compressed point `x·h`.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, BorshSerialize, BorshDeserialize,
)]
pub struct PvssPublicKey(pub [u8; 32]);

impl PvssPublicKey {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// A member's key pair. The secret never leaves this struct except through
/// the shares it decrypts, and `Debug` prints only the public half.
#[derive(Clone)]
pub struct PvssKeypair {
    secret: Scalar,
    public_point: RistrettoPoint,
    public: PvssPublicKey,
}

impl PvssKeypair {
    /// Derives the key pair from a 32-byte seed: tagged XOF, wide reduction,
    /// and a counter to step past the (negligible) zero scalar, which has no
    /// inverse and so could not decrypt.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let mut counter: u32 = 0;
        loop {
            let mut hasher = DomainHasher::new(tag::PVSS_KEY);
            hasher.update(seed).update(&counter.to_le_bytes());
            let secret = next_scalar(&mut xof(&hasher));
            if secret != Scalar::ZERO {
                let public_point = secret * h().0;
                return PvssKeypair {
                    secret,
                    public_point,
                    public: PvssPublicKey(public_point.compress().to_bytes()),
                };
            }
            counter = counter.wrapping_add(1);
        }
    }

    pub fn public(&self) -> PvssPublicKey {
        self.public
    }
}

impl fmt::Debug for PvssKeypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PvssKeypair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// A non-interactive Chaum–Pedersen proof that `log_G1 A = log_G2 B`:
/// challenge `c` and response `r`, both canonical scalars.
#[derive(BorshSerialize, BorshDeserialize, Clone, Debug, PartialEq, Eq)]
pub struct DleqProof {
    pub c: [u8; 32],
    pub r: [u8; 32],
}

/// One dealer's contribution: per member (in key-list order) a commitment
/// `p(i)·g`, an encrypted share `p(i)·y_i` and the proof tying them together.
#[derive(BorshSerialize, BorshDeserialize, Clone, Debug, PartialEq, Eq)]
pub struct Dealing {
    pub commitments: Vec<[u8; 32]>,
    pub encrypted_shares: Vec<[u8; 32]>,
    pub proofs: Vec<DleqProof>,
}

/// Member `index`'s decryption `p(index)·h` of its share of one dealing, with
/// a proof that it used the secret behind its registered key.
#[derive(BorshSerialize, BorshDeserialize, Clone, Debug, PartialEq, Eq)]
pub struct DecryptedShare {
    /// 1-based member index: position in the dealing's key list plus one.
    pub index: u32,
    pub share: [u8; 32],
    pub proof: DleqProof,
}

/// Deals a secret to the members holding `keys` so that any `threshold` of
/// them can recover it. The polynomial is derived from `seed` together with
/// the context and the key list, so a seed reused in another epoch still
/// yields an unrelated secret.
pub fn deal(
    context: &[u8],
    keys: &[PvssPublicKey],
    threshold: usize,
    seed: &[u8; 32],
) -> Result<Dealing, PvssError> {
    check_shape(keys.len(), threshold)?;
    let points = keys
        .iter()
        .enumerate()
        .map(|(pos, k)| decode_point(&k.0, "public key", index_of(pos)))
        .collect::<Result<Vec<_>, _>>()?;

    let mut hasher = DomainHasher::new(tag::PVSS_POLY);
    hasher.update(seed);
    put_statement(&mut hasher, context, keys, threshold);
    let mut stream = xof(&hasher);
    let poly: Vec<Scalar> = (0..threshold).map(|_| next_scalar(&mut stream)).collect();

    let n = keys.len();
    let mut dealing = Dealing {
        commitments: Vec::with_capacity(n),
        encrypted_shares: Vec::with_capacity(n),
        proofs: Vec::with_capacity(n),
    };
    for (pos, (y, key)) in points.iter().zip(keys).enumerate() {
        let index = index_of(pos);
        let alpha = eval(&poly, &Scalar::from(index));
        let v = RistrettoPoint::mul_base(&alpha);
        let e = alpha * y;
        let statement = Statement {
            base: Base::G,
            a: Pt::new(v),
            g2: Pt {
                p: *y,
                bytes: key.0,
            },
            b: Pt::new(e),
        };
        dealing
            .proofs
            .push(prove(seed, context, index, &alpha, &statement));
        dealing.commitments.push(statement.a.bytes);
        dealing.encrypted_shares.push(statement.b.bytes);
    }
    Ok(dealing)
}

/// Checks a dealing against public data: shape, every point, every DLEQ
/// proof, and that the commitments have degree below `threshold` (SCRAPE's
/// dual-code check), so any `threshold` verified shares recover one secret.
pub fn verify_dealing(
    context: &[u8],
    keys: &[PvssPublicKey],
    threshold: usize,
    dealing: &Dealing,
) -> Result<(), PvssError> {
    check_shape(keys.len(), threshold)?;
    check_lengths(dealing, keys.len())?;
    let mut commitments = Vec::with_capacity(keys.len());
    let entries = keys
        .iter()
        .zip(&dealing.commitments)
        .zip(&dealing.encrypted_shares)
        .zip(&dealing.proofs);
    for (pos, (((key, v), e), proof)) in entries.enumerate() {
        let index = index_of(pos);
        let statement = Statement {
            base: Base::G,
            a: Pt::decode(v, "commitment", index)?,
            g2: Pt::decode(&key.0, "public key", index)?,
            b: Pt::decode(e, "encrypted share", index)?,
        };
        verify_dleq(context, index, &statement, proof)?;
        commitments.push(statement.a.p);
    }
    degree_check(context, keys, threshold, dealing, &commitments)
}

/// Decrypts member `index`'s share of `dealing` with `keypair`. It first
/// checks the dealer's proof for that index under this key, so a member never
/// answers with `x^{-1}·Q` for a point `Q` the dealer could not already open
/// (which would make members a decryption oracle), and a wrong index is caught
/// here rather than by everyone else.
pub fn decrypt_share(
    context: &[u8],
    keypair: &PvssKeypair,
    index: u32,
    dealing: &Dealing,
) -> Result<DecryptedShare, PvssError> {
    let n = dealing.encrypted_shares.len();
    check_lengths(dealing, n)?;
    let pos = position(index, n)?;
    let out_of_range = PvssError::IndexOutOfRange { index, n };
    let v = dealing.commitments.get(pos).ok_or(out_of_range.clone())?;
    let e = dealing
        .encrypted_shares
        .get(pos)
        .ok_or(out_of_range.clone())?;
    let proof = dealing.proofs.get(pos).ok_or(out_of_range)?;
    let y = Pt {
        p: keypair.public_point,
        bytes: keypair.public.0,
    };
    let encrypted = Pt::decode(e, "encrypted share", index)?;
    let dealer_statement = Statement {
        base: Base::G,
        a: Pt::decode(v, "commitment", index)?,
        g2: y,
        b: encrypted,
    };
    verify_dleq(context, index, &dealer_statement, proof).map_err(|e| match e {
        PvssError::BadDleq { index } => PvssError::KeyMismatch { index },
        other => other,
    })?;

    let share = Pt::new(keypair.secret.invert() * encrypted.p);
    let statement = Statement {
        base: Base::H,
        a: y,
        g2: share,
        b: encrypted,
    };
    let proof = prove(
        keypair.secret.as_bytes(),
        context,
        index,
        &keypair.secret,
        &statement,
    );
    Ok(DecryptedShare {
        index,
        share: share.bytes,
        proof,
    })
}

/// Checks that `share` is the decryption of its member's encrypted share in
/// `dealing` under that member's key. Meant for a dealing that already passed
/// [`verify_dealing`]: only then is a verified share `p(i)·h`.
pub fn verify_share(
    context: &[u8],
    keys: &[PvssPublicKey],
    dealing: &Dealing,
    share: &DecryptedShare,
) -> Result<(), PvssError> {
    let n = keys.len();
    check_lengths(dealing, n)?;
    let index = share.index;
    let pos = position(index, n)?;
    let out_of_range = PvssError::IndexOutOfRange { index, n };
    let key = keys.get(pos).ok_or(out_of_range.clone())?;
    let e = dealing.encrypted_shares.get(pos).ok_or(out_of_range)?;
    let statement = Statement {
        base: Base::H,
        a: Pt::decode(&key.0, "public key", index)?,
        g2: Pt::decode(&share.share, "decrypted share", index)?,
        b: Pt::decode(e, "encrypted share", index)?,
    };
    verify_dleq(context, index, &statement, &share.proof)
}

/// Proof that the holder of `keypair` knows its secret, bound to `context`
/// (the chain binds its id and the registering account): a Schnorr proof,
/// written as the DLEQ statement `log_h y = log_h y` with index 0. Without
/// it anyone could register someone else's key first and lock them out.
pub fn prove_possession(context: &[u8], keypair: &PvssKeypair) -> DleqProof {
    let y = Pt {
        p: keypair.public_point,
        bytes: keypair.public.0,
    };
    let statement = possession_statement(y);
    prove(
        keypair.secret.as_bytes(),
        context,
        0,
        &keypair.secret,
        &statement,
    )
}

/// `log_h y = log_h y`: a Schnorr proof for `y` in the DLEQ machinery.
fn possession_statement(y: Pt) -> Statement {
    let h_pt = Pt {
        p: h().0,
        bytes: h().1,
    };
    Statement {
        base: Base::H,
        a: y,
        g2: h_pt,
        b: y,
    }
}

/// Checks a [`prove_possession`] proof for `key` under `context`.
pub fn verify_possession(
    context: &[u8],
    key: &PvssPublicKey,
    proof: &DleqProof,
) -> Result<(), PvssError> {
    let y = Pt::decode(&key.0, "public key", 0)?;
    let statement = possession_statement(y);
    verify_dleq(context, 0, &statement, proof)
}

/// Recovers the compressed secret `S = p(0)·h` from verified shares by
/// Lagrange interpolation at 0. It uses the `threshold` lowest indices, so
/// the result does not depend on the order shares arrived in; with verified
/// shares any `threshold` of them give the same `S`.
pub fn recover(threshold: usize, shares: &[DecryptedShare]) -> Result<[u8; 32], PvssError> {
    if threshold == 0 {
        return Err(PvssError::BadThreshold {
            t: threshold,
            n: shares.len(),
        });
    }
    let mut sorted: Vec<&DecryptedShare> = shares.iter().collect();
    sorted.sort_by_key(|s| s.index);
    if sorted.first().is_some_and(|s| s.index == 0) {
        return Err(PvssError::ZeroIndex);
    }
    for pair in sorted.windows(2) {
        if let [a, b] = pair {
            if a.index == b.index {
                return Err(PvssError::DuplicateIndex(a.index));
            }
        }
    }
    if sorted.len() < threshold {
        return Err(PvssError::TooFewShares {
            have: sorted.len(),
            need: threshold,
        });
    }
    let chosen = sorted.get(..threshold).unwrap_or(&sorted);
    let points = chosen
        .iter()
        .map(|s| decode_point(&s.share, "decrypted share", s.index))
        .collect::<Result<Vec<_>, _>>()?;
    let xs: Vec<Scalar> = chosen.iter().map(|s| Scalar::from(s.index)).collect();
    let lambdas = lagrange_at_zero(&xs);
    Ok(RistrettoPoint::vartime_multiscalar_mul(&lambdas, &points)
        .compress()
        .to_bytes())
}

/// The epoch's beacon value: blake3 under [`tag::BEACON_OUTPUT`] of the epoch
/// and the sum of the recovered secrets. Summing makes it independent of the
/// order dealings were processed in, and it stays unpredictable as long as one
/// summed secret was dealt honestly.
pub fn beacon_output(epoch: u64, secrets: &[[u8; 32]]) -> Result<Hash, PvssError> {
    if secrets.is_empty() {
        return Err(PvssError::NoSecrets);
    }
    let mut sum = RistrettoPoint::identity();
    for (pos, s) in secrets.iter().enumerate() {
        sum += decode_point(s, "recovered secret", index_of(pos))?;
    }
    let mut hasher = DomainHasher::new(tag::BEACON_OUTPUT);
    hasher
        .update(b"ios-epoch")
        .update(&epoch.to_le_bytes())
        .update(&sum.compress().to_bytes());
    Ok(hasher.finalize())
}

// ---- internals ----

/// The second generator `h`, hashed to the curve so its discrete log to `g`
/// is unknown (if it were known, commitments `p(i)·g` would reveal the shares
/// `p(i)·h`). Computed once.
fn h() -> &'static (RistrettoPoint, [u8; 32]) {
    static H: OnceLock<(RistrettoPoint, [u8; 32])> = OnceLock::new();
    H.get_or_init(|| {
        let mut wide = [0u8; 64];
        xof(&DomainHasher::new(tag::PVSS_H)).fill(&mut wide);
        let p = RistrettoPoint::from_uniform_bytes(&wide);
        (p, p.compress().to_bytes())
    })
}

/// Output stream of a tagged hash. `DomainHasher` yields 32 bytes, while
/// scalars and hashing to the curve want 64 uniform bytes each (wide reduction
/// has negligible bias), so the tagged digest keys a blake3 XOF.
fn xof(hasher: &DomainHasher) -> blake3::OutputReader {
    blake3::Hasher::new_keyed(&hasher.finalize().0).finalize_xof()
}

fn next_scalar(stream: &mut blake3::OutputReader) -> Scalar {
    let mut wide = [0u8; 64];
    stream.fill(&mut wide);
    Scalar::from_bytes_mod_order_wide(&wide)
}

/// Length-prefixed, so context bytes can never be confused with what follows.
fn put_context(hasher: &mut DomainHasher, context: &[u8]) {
    hasher
        .update(&(context.len() as u64).to_le_bytes())
        .update(context);
}

/// Context, committee and threshold: what a dealing is for.
fn put_statement(
    hasher: &mut DomainHasher,
    context: &[u8],
    keys: &[PvssPublicKey],
    threshold: usize,
) {
    put_context(hasher, context);
    hasher
        .update(&(keys.len() as u64).to_le_bytes())
        .update(&(threshold as u64).to_le_bytes());
    for k in keys {
        hasher.update(&k.0);
    }
}

fn check_shape(n: usize, threshold: usize) -> Result<(), PvssError> {
    if n > MAX_MEMBERS {
        return Err(PvssError::TooManyMembers {
            n,
            max: MAX_MEMBERS,
        });
    }
    if threshold == 0 || threshold > n {
        return Err(PvssError::BadThreshold { t: threshold, n });
    }
    Ok(())
}

fn check_lengths(dealing: &Dealing, n: usize) -> Result<(), PvssError> {
    let lengths = [
        ("commitments", dealing.commitments.len()),
        ("encrypted shares", dealing.encrypted_shares.len()),
        ("proofs", dealing.proofs.len()),
    ];
    for (what, got) in lengths {
        if got != n {
            return Err(PvssError::WrongLength {
                what,
                expected: n,
                got,
            });
        }
    }
    Ok(())
}

/// 1-based member index of list position `pos`. Callers have bounded the
/// list (by [`MAX_MEMBERS`] or by a `u32` index), so saturation never bites.
fn index_of(pos: usize) -> u32 {
    u32::try_from(pos).map_or(u32::MAX, |p| p.saturating_add(1))
}

/// List position of 1-based member `index` among `n`.
fn position(index: u32, n: usize) -> Result<usize, PvssError> {
    let pos = usize::try_from(index)
        .ok()
        .and_then(|i| i.checked_sub(1))
        .filter(|&p| p < n);
    pos.ok_or(PvssError::IndexOutOfRange { index, n })
}

/// Decompresses a point, rejecting the identity: no honest key, commitment or
/// share is the identity, and accepting it would let `0` stand in for a share.
fn decode_point(
    bytes: &[u8; 32],
    what: &'static str,
    index: u32,
) -> Result<RistrettoPoint, PvssError> {
    let p = CompressedRistretto(*bytes)
        .decompress()
        .ok_or(PvssError::InvalidPoint { what, index })?;
    if p.is_identity() {
        return Err(PvssError::IdentityPoint { what, index });
    }
    Ok(p)
}

fn decode_scalar(bytes: &[u8; 32], what: &'static str, index: u32) -> Result<Scalar, PvssError> {
    Option::from(Scalar::from_canonical_bytes(*bytes))
        .ok_or(PvssError::NonCanonicalScalar { what, index })
}

/// `p(x)` by Horner's rule; coefficients lowest degree first.
fn eval(coefficients: &[Scalar], x: &Scalar) -> Scalar {
    coefficients
        .iter()
        .rev()
        .fold(Scalar::ZERO, |acc, c| acc * x + c)
}

/// A point with its compressed form, which every transcript hashes.
#[derive(Clone, Copy)]
struct Pt {
    p: RistrettoPoint,
    bytes: [u8; 32],
}

impl Pt {
    fn new(p: RistrettoPoint) -> Pt {
        Pt {
            p,
            bytes: p.compress().to_bytes(),
        }
    }

    fn decode(bytes: &[u8; 32], what: &'static str, index: u32) -> Result<Pt, PvssError> {
        Ok(Pt {
            p: decode_point(bytes, what, index)?,
            bytes: *bytes,
        })
    }
}

/// The fixed first base of a DLEQ statement: `g` for the dealer's proofs
/// (commitment vs encrypted share), `h` for a member's (key vs decryption).
#[derive(Clone, Copy)]
enum Base {
    G,
    H,
}

impl Base {
    fn bytes(self) -> [u8; 32] {
        match self {
            Base::G => RISTRETTO_BASEPOINT_COMPRESSED.to_bytes(),
            Base::H => h().1,
        }
    }

    fn mul(self, s: &Scalar) -> RistrettoPoint {
        match self {
            Base::G => RistrettoPoint::mul_base(s),
            Base::H => s * h().0,
        }
    }

    /// `r·base + c·a`, using the basepoint tables when the base is `g`.
    fn lincomb(self, r: &Scalar, c: &Scalar, a: &RistrettoPoint) -> RistrettoPoint {
        match self {
            Base::G => RistrettoPoint::vartime_double_scalar_mul_basepoint(c, a, r),
            Base::H => RistrettoPoint::vartime_multiscalar_mul([r, c], [&h().0, a]),
        }
    }
}

/// `log_base a == log_g2 b`.
struct Statement {
    base: Base,
    a: Pt,
    g2: Pt,
    b: Pt,
}

/// Fiat–Shamir challenge: binds the context, the member index, the whole
/// statement and both announcements.
fn challenge(context: &[u8], index: u32, st: &Statement, a1: &[u8; 32], a2: &[u8; 32]) -> Scalar {
    let mut hasher = DomainHasher::new(tag::PVSS_DLEQ);
    put_context(&mut hasher, context);
    hasher
        .update(&index.to_le_bytes())
        .update(&st.base.bytes())
        .update(&st.a.bytes)
        .update(&st.g2.bytes)
        .update(&st.b.bytes)
        .update(a1)
        .update(a2);
    next_scalar(&mut xof(&hasher))
}

/// Proves `alpha` is the common log. The nonce is a hash of the prover's
/// secret material, the witness and the full statement (as in RFC 6979), so
/// it is never reused across different statements: reuse would reveal `alpha`.
fn prove(
    secret_material: &[u8; 32],
    context: &[u8],
    index: u32,
    alpha: &Scalar,
    st: &Statement,
) -> DleqProof {
    let mut hasher = DomainHasher::new(tag::PVSS_NONCE);
    hasher.update(secret_material).update(alpha.as_bytes());
    put_context(&mut hasher, context);
    hasher
        .update(&index.to_le_bytes())
        .update(&st.base.bytes())
        .update(&st.a.bytes)
        .update(&st.g2.bytes)
        .update(&st.b.bytes);
    let w = next_scalar(&mut xof(&hasher));
    let a1 = st.base.mul(&w).compress().to_bytes();
    let a2 = (w * st.g2.p).compress().to_bytes();
    let c = challenge(context, index, st, &a1, &a2);
    let r = w - c * alpha;
    DleqProof {
        c: c.to_bytes(),
        r: r.to_bytes(),
    }
}

fn verify_dleq(
    context: &[u8],
    index: u32,
    st: &Statement,
    proof: &DleqProof,
) -> Result<(), PvssError> {
    let c = decode_scalar(&proof.c, "challenge", index)?;
    let r = decode_scalar(&proof.r, "response", index)?;
    let a1 = st.base.lincomb(&r, &c, &st.a.p);
    let a2 = RistrettoPoint::vartime_multiscalar_mul([&r, &c], [&st.g2.p, &st.b.p]);
    let expected = challenge(
        context,
        index,
        st,
        &a1.compress().to_bytes(),
        &a2.compress().to_bytes(),
    );
    if expected == c {
        Ok(())
    } else {
        Err(PvssError::BadDleq { index })
    }
}

/// SCRAPE's degree check. The dual of the Reed–Solomon code
/// `{(p(1),…,p(n)) : deg p < t}` is `{(c_i·m(i))_i : deg m < n-t}` with
/// `c_i = Π_{j≠i} 1/(i-j)`; the commitments are a codeword "in the exponent"
/// iff they are orthogonal to every dual codeword, and orthogonality to one
/// random dual codeword (chosen by Fiat–Shamir after the commitments are
/// fixed) fails for a non-codeword except with probability 1/|group|.
fn degree_check(
    context: &[u8],
    keys: &[PvssPublicKey],
    threshold: usize,
    dealing: &Dealing,
    commitments: &[RistrettoPoint],
) -> Result<(), PvssError> {
    let n = commitments.len();
    let dual_len = n.saturating_sub(threshold);
    if dual_len == 0 {
        // n values always interpolate a polynomial of degree < n.
        return Ok(());
    }
    let mut hasher = DomainHasher::new(tag::PVSS_DEGREE_CHECK);
    put_statement(&mut hasher, context, keys, threshold);
    for (v, e) in dealing.commitments.iter().zip(&dealing.encrypted_shares) {
        hasher.update(v).update(e);
    }
    let mut stream = xof(&hasher);
    let m: Vec<Scalar> = (0..dual_len).map(|_| next_scalar(&mut stream)).collect();
    let coefficients = dual_coefficients(n, &m);
    let sum = RistrettoPoint::vartime_multiscalar_mul(&coefficients, commitments);
    if sum.is_identity() {
        Ok(())
    } else {
        Err(PvssError::DegreeCheckFailed)
    }
}

/// `m(i)·Π_{j≠i, 1≤j≤n} 1/(i-j)` for `i = 1..=n`. The product is
/// `(-1)^(n-i)·(i-1)!·(n-i)!`, so one batch inversion of the factorials
/// `0!..(n-1)!` gives every denominator in O(n).
fn dual_coefficients(n: usize, m: &[Scalar]) -> Vec<Scalar> {
    let mut inv_fact = Vec::with_capacity(n);
    let mut acc = Scalar::ONE;
    for k in 0..n {
        if k > 0 {
            acc *= Scalar::from(k as u64);
        }
        inv_fact.push(acc);
    }
    // All factorials below the group order (~2^252) are nonzero mod it.
    Scalar::invert_batch_alloc(&mut inv_fact);
    inv_fact
        .iter()
        .zip(inv_fact.iter().rev())
        .enumerate()
        .map(|(pos, (inv_left, inv_right))| {
            let i = pos as u64 + 1;
            let c = eval(m, &Scalar::from(i)) * inv_left * inv_right;
            // (n - i) is odd exactly when (n - 1 - pos) is.
            if (n - 1 - pos) % 2 == 1 {
                -c
            } else {
                c
            }
        })
        .collect()
}

/// Lagrange coefficients at 0 for the distinct nonzero points `xs`:
/// `λ_i = Π_{j≠i} x_j / (x_j - x_i)`.
fn lagrange_at_zero(xs: &[Scalar]) -> Vec<Scalar> {
    let mut numerators = Vec::with_capacity(xs.len());
    let mut denominators = Vec::with_capacity(xs.len());
    for (i, xi) in xs.iter().enumerate() {
        let mut num = Scalar::ONE;
        let mut den = Scalar::ONE;
        for (j, xj) in xs.iter().enumerate() {
            if i != j {
                num *= xj;
                den *= xj - xi;
            }
        }
        numerators.push(num);
        denominators.push(den);
    }
    // Distinct indices below the group order make every difference nonzero.
    Scalar::invert_batch_alloc(&mut denominators);
    numerators
        .iter()
        .zip(&denominators)
        .map(|(n, d)| n * d)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT;

    fn scalars(seed: u8, count: usize) -> Vec<Scalar> {
        let mut hasher = DomainHasher::new("test");
        hasher.update(&[seed]);
        let mut stream = xof(&hasher);
        (0..count).map(|_| next_scalar(&mut stream)).collect()
    }

    /// The dual-code coefficients annihilate exactly the polynomials of
    /// degree below t, checked on scalars (no group needed).
    #[test]
    fn dual_code_annihilates_low_degree_only() {
        for n in 1..=12usize {
            for t in 1..n {
                let m = scalars(n as u8, n - t);
                let c = dual_coefficients(n, &m);
                let dot = |p: &[Scalar]| -> Scalar {
                    c.iter()
                        .enumerate()
                        .map(|(pos, ci)| ci * eval(p, &Scalar::from(pos as u64 + 1)))
                        .sum()
                };
                assert_eq!(dot(&scalars(100 + t as u8, t)), Scalar::ZERO, "n={n} t={t}");
                assert_ne!(
                    dot(&scalars(200 + t as u8, t + 1)),
                    Scalar::ZERO,
                    "n={n} t={t}"
                );
            }
        }
    }

    #[test]
    fn lagrange_recovers_constant_term() {
        let p = scalars(7, 4);
        let xs: Vec<Scalar> = [2u64, 5, 9, 11].iter().map(|&x| Scalar::from(x)).collect();
        let l = lagrange_at_zero(&xs);
        let at_zero: Scalar = l.iter().zip(&xs).map(|(li, x)| li * eval(&p, x)).sum();
        assert_eq!(at_zero, p[0]);
    }

    #[test]
    fn h_is_fixed_and_independent_of_g() {
        assert_ne!(h().0, RISTRETTO_BASEPOINT_POINT);
        assert!(!h().0.is_identity());
        assert_eq!(h().1, h().0.compress().to_bytes());
    }

    #[test]
    fn keypair_debug_hides_the_secret() {
        let kp = PvssKeypair::from_seed(&[3; 32]);
        let shown = format!("{kp:?}");
        assert!(!shown.contains(&format!("{:?}", kp.secret)));
        assert!(shown.contains("public"));
    }
}
