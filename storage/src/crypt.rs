//! Client-side encryption of private objects, so providers only ever hold
//! ciphertext.
//!
//! An object is encrypted with XChaCha20-Poly1305 under a random per-object
//! key, in frames of [`FRAME_BYTES`] of plaintext, so encryption and
//! decryption stream. The stored bytes are a header (magic, version, a
//! random 16-byte nonce prefix) and then the frames; frame `i`'s nonce is
//! `prefix || i (u32 BE) || last (1 byte) || 0 0 0`, and every frame
//! authenticates the header. Reordering, dropping or truncating frames
//! fails to decrypt: the final frame is marked, and a stream that ends
//! without it is refused.
//!
//! The object key is sealed to each reader's X25519 key: an ephemeral
//! X25519 key agreement, a key-encryption key derived with blake3 from the
//! shared secret and both public keys, and XChaCha20-Poly1305 over the
//! 32-byte object key (a fresh ephemeral key per seal makes each KEK
//! unique, so a zero nonce is safe). A reader's X25519 key is its account
//! key under the standard Edwards-to-Montgomery map (as libsodium and age's
//! ssh-ed25519 recipients do), so an object can be sealed to any address.
//! A private object as stored is an envelope: [`ENVELOPE_MAGIC`], a
//! version, the sealed keys, then the encrypted stream.
//!
//! All randomness (object key, nonce prefix, ephemeral secrets) comes in
//! from the caller.

use crate::{Result, StorageError};
use borsh::{BorshDeserialize, BorshSerialize};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use curve25519_dalek::montgomery::MontgomeryPoint;
use std::io::{Read, Write};

/// Plaintext bytes per frame.
pub const FRAME_BYTES: usize = 64 << 10;
/// Poly1305 tag per frame.
pub const TAG_BYTES: usize = 16;
const MAGIC: &[u8; 4] = b"IOSX";
const VERSION: u8 = 1;
/// Magic, version, nonce prefix.
pub const HEADER_BYTES: usize = 4 + 1 + 16;
const SEAL_CONTEXT: &str = "ios/huds/seal-object-key v1";
/// The first bytes of a private object's envelope.
pub const ENVELOPE_MAGIC: &[u8; 4] = b"IOSP";
/// Readers one envelope seals to at most.
pub const MAX_READERS: usize = 64;

/// A per-object symmetric key.
#[derive(Clone, PartialEq, Eq)]
pub struct ObjectKey(pub [u8; 32]);

impl std::fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ObjectKey(..)")
    }
}

/// Bytes stored for `plain` bytes of plaintext.
pub fn encrypted_len(plain: u64) -> u64 {
    let frames = plain.div_ceil(FRAME_BYTES as u64).max(1);
    HEADER_BYTES as u64 + plain + frames * TAG_BYTES as u64
}

fn nonce(prefix: &[u8; 16], index: u32, last: bool) -> XNonce {
    let mut n = [0u8; 24];
    n[..16].copy_from_slice(prefix);
    n[16..20].copy_from_slice(&index.to_be_bytes());
    n[20] = u8::from(last);
    XNonce::from(n)
}

fn header(prefix: &[u8; 16]) -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[..4].copy_from_slice(MAGIC);
    h[4] = VERSION;
    h[5..].copy_from_slice(prefix);
    h
}

/// Encrypts what `R` yields, as a reader of the stored bytes.
pub struct Encryptor<R> {
    inner: R,
    cipher: XChaCha20Poly1305,
    prefix: [u8; 16],
    header: [u8; HEADER_BYTES],
    /// Plaintext read ahead: the next frame (a frame is last only when
    /// nothing follows it).
    ahead: Vec<u8>,
    eof: bool,
    index: u32,
    out: Vec<u8>,
    pos: usize,
    finished: bool,
}

impl<R: Read> Encryptor<R> {
    pub fn new(inner: R, key: &ObjectKey, nonce_prefix: [u8; 16]) -> Encryptor<R> {
        let h = header(&nonce_prefix);
        Encryptor {
            inner,
            cipher: XChaCha20Poly1305::new(&key.0.into()),
            prefix: nonce_prefix,
            header: h,
            ahead: Vec::new(),
            eof: false,
            index: 0,
            out: h.to_vec(),
            pos: 0,
            finished: false,
        }
    }

    /// Fills `buf` with up to one frame of plaintext; returns its length.
    fn fill(&mut self, buf: &mut Vec<u8>) -> std::io::Result<()> {
        buf.clear();
        buf.resize(FRAME_BYTES, 0);
        let mut n = 0;
        while n < FRAME_BYTES && !self.eof {
            match self.inner.read(&mut buf[n..]) {
                Ok(0) => self.eof = true,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(n);
        Ok(())
    }

    fn next_frame(&mut self) -> std::io::Result<()> {
        let mut frame = std::mem::take(&mut self.ahead);
        if self.index == 0 && frame.is_empty() {
            self.fill(&mut frame)?;
        }
        let mut next = Vec::new();
        self.fill(&mut next)?;
        let last = next.is_empty();
        let index = self.index;
        if index == u32::MAX {
            return Err(std::io::Error::other("object too large to encrypt"));
        }
        let ct = self
            .cipher
            .encrypt(
                &nonce(&self.prefix, index, last),
                Payload {
                    msg: &frame,
                    aad: &self.header,
                },
            )
            .map_err(|_| std::io::Error::other("encryption failed"))?;
        self.out = ct;
        self.pos = 0;
        self.index += 1;
        self.ahead = next;
        self.finished = last;
        Ok(())
    }
}

impl<R: Read> Read for Encryptor<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.out.len() {
            if self.finished {
                return Ok(0);
            }
            self.next_frame()?;
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Decrypts stored bytes written to it, writing plaintext to `W`.
/// [`Decryptor::finish`] must be called: it checks the final frame came.
pub struct Decryptor<W> {
    inner: W,
    cipher: XChaCha20Poly1305,
    header: Option<[u8; HEADER_BYTES]>,
    buf: Vec<u8>,
    index: u32,
}

impl<W: Write> Decryptor<W> {
    pub fn new(inner: W, key: &ObjectKey) -> Decryptor<W> {
        Decryptor {
            inner,
            cipher: XChaCha20Poly1305::new(&key.0.into()),
            header: None,
            buf: Vec::new(),
            index: 0,
        }
    }

    fn open_frame(&mut self, len: usize, last: bool) -> Result<()> {
        let h = self.header.expect("header parsed before frames");
        let prefix: [u8; 16] = h[5..].try_into().expect("16 bytes");
        let plain = self
            .cipher
            .decrypt(
                &nonce(&prefix, self.index, last),
                Payload {
                    msg: &self.buf[..len],
                    aad: &h,
                },
            )
            .map_err(|_| {
                StorageError::Decrypt(format!(
                    "frame {} does not authenticate (wrong key, tampered or reordered)",
                    self.index
                ))
            })?;
        self.buf.drain(..len);
        self.index += 1;
        self.inner.write_all(&plain)?;
        Ok(())
    }

    fn take(&mut self, bytes: &[u8]) -> Result<()> {
        self.buf.extend_from_slice(bytes);
        if self.header.is_none() {
            if self.buf.len() < HEADER_BYTES {
                return Ok(());
            }
            let h: [u8; HEADER_BYTES] = self.buf[..HEADER_BYTES].try_into().expect("sized");
            if &h[..4] != MAGIC || h[4] != VERSION {
                return Err(StorageError::Decrypt(
                    "not an IOS encrypted object (bad magic or version)".into(),
                ));
            }
            self.header = Some(h);
            self.buf.drain(..HEADER_BYTES);
        }
        // A full frame is known not to be the last once more bytes follow it.
        let frame = FRAME_BYTES + TAG_BYTES;
        while self.buf.len() > frame {
            self.open_frame(frame, false)?;
        }
        Ok(())
    }

    /// Decrypts the final frame; returns the plaintext sink.
    pub fn finish(mut self) -> Result<W> {
        if self.header.is_none() {
            return Err(StorageError::Decrypt("truncated before the header".into()));
        }
        if self.buf.len() < TAG_BYTES {
            return Err(StorageError::Decrypt(
                "truncated: the final frame is missing".into(),
            ));
        }
        let len = self.buf.len();
        self.open_frame(len, true)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for Decryptor<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.take(bytes).map_err(|e| match e {
            StorageError::Io(io) => io,
            other => std::io::Error::new(std::io::ErrorKind::InvalidData, other),
        })?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A reader's X25519 secret.
#[derive(Clone)]
pub struct ReaderSecret([u8; 32]);

/// A reader's X25519 public key: what an object key is sealed to.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, BorshSerialize, BorshDeserialize,
)]
pub struct ReaderKey(pub [u8; 32]);

impl ReaderSecret {
    pub fn from_bytes(bytes: [u8; 32]) -> ReaderSecret {
        ReaderSecret(bytes)
    }

    /// The reader secret of an account: its key's X25519 form, whose public
    /// key is [`ReaderKey::of_address`] of its address.
    pub fn of_account(key: &ios_chain::crypto::Keypair) -> ReaderSecret {
        ReaderSecret(key.x25519_secret())
    }

    pub fn public(&self) -> ReaderKey {
        ReaderKey(MontgomeryPoint::mul_base_clamped(self.0).to_bytes())
    }
}

impl std::fmt::Debug for ReaderSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReaderSecret(for {:?})", self.public())
    }
}

impl ReaderKey {
    /// The X25519 key of an account address (its ed25519 key mapped to
    /// Montgomery form); an address that is not a curve point is refused.
    pub fn of_address(address: &ios_chain::crypto::Address) -> Result<ReaderKey> {
        let point = curve25519_dalek::edwards::CompressedEdwardsY(address.0)
            .decompress()
            .ok_or_else(|| StorageError::Malformed {
                what: "reader address",
                reason: format!("{address} is not a valid public key"),
            })?;
        Ok(ReaderKey(point.to_montgomery().to_bytes()))
    }
}

/// The envelope of a private object, before its encrypted stream: the
/// magic, version 1, then the sealed keys (borsh `Vec<SealedKey>`, its
/// byte length first as u32 LE).
pub fn write_envelope(keys: &[SealedKey], out: &mut impl Write) -> Result<()> {
    if keys.is_empty() || keys.len() > MAX_READERS {
        return Err(StorageError::Params(format!(
            "{} readers (1 to {MAX_READERS})",
            keys.len()
        )));
    }
    let body = borsh::to_vec(keys).map_err(|e| StorageError::Malformed {
        what: "envelope",
        reason: e.to_string(),
    })?;
    out.write_all(ENVELOPE_MAGIC)?;
    out.write_all(&[VERSION])?;
    out.write_all(&(body.len() as u32).to_le_bytes())?;
    out.write_all(&body)?;
    Ok(())
}

/// Reads a private object's envelope (its sealed keys), leaving `input` at
/// the start of the encrypted stream; input that is not one is refused.
pub fn read_envelope(input: &mut impl Read) -> Result<Vec<SealedKey>> {
    let mut head = [0u8; 9];
    input
        .read_exact(&mut head)
        .map_err(|_| StorageError::Decrypt("not a private object (too short)".into()))?;
    if &head[..4] != ENVELOPE_MAGIC || head[4] != VERSION {
        return Err(StorageError::Decrypt(
            "not a private object (no envelope)".into(),
        ));
    }
    let len = u32::from_le_bytes(head[5..9].try_into().expect("4 bytes")) as usize;
    // 4 (count) + per key 32 + 32 + 4 + 48.
    if len > 4 + MAX_READERS * 116 {
        return Err(StorageError::Decrypt(format!("an envelope of {len} bytes")));
    }
    let mut body = vec![0u8; len];
    input
        .read_exact(&mut body)
        .map_err(|_| StorageError::Decrypt("a truncated envelope".into()))?;
    let keys: Vec<SealedKey> = borsh::from_slice(&body).map_err(|e| StorageError::Malformed {
        what: "envelope",
        reason: e.to_string(),
    })?;
    if keys.is_empty() || keys.len() > MAX_READERS {
        return Err(StorageError::Decrypt(format!("{} sealed keys", keys.len())));
    }
    Ok(keys)
}

/// Whether `bytes` begin a private object's envelope.
pub fn is_private(bytes: &[u8]) -> bool {
    bytes.len() >= 5 && &bytes[..4] == ENVELOPE_MAGIC && bytes[4] == VERSION
}

/// An object key sealed to one reader.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SealedKey {
    pub reader: ReaderKey,
    pub ephemeral: [u8; 32],
    /// The object key and its tag (48 bytes).
    pub sealed: Vec<u8>,
}

fn key_encryption_key(shared: &[u8; 32], ephemeral: &[u8; 32], reader: &[u8; 32]) -> [u8; 32] {
    let mut ikm = [0u8; 96];
    ikm[..32].copy_from_slice(shared);
    ikm[32..64].copy_from_slice(ephemeral);
    ikm[64..].copy_from_slice(reader);
    blake3::derive_key(SEAL_CONTEXT, &ikm)
}

fn agree(secret: [u8; 32], public: [u8; 32]) -> Result<[u8; 32]> {
    let shared = MontgomeryPoint(public).mul_clamped(secret).to_bytes();
    if shared == [0u8; 32] {
        return Err(StorageError::Decrypt(
            "a low-order X25519 key (no shared secret)".into(),
        ));
    }
    Ok(shared)
}

/// Seals `key` to `reader`, with fresh random `ephemeral_secret` bytes.
pub fn seal(key: &ObjectKey, reader: &ReaderKey, ephemeral_secret: [u8; 32]) -> Result<SealedKey> {
    let ephemeral = MontgomeryPoint::mul_base_clamped(ephemeral_secret).to_bytes();
    let shared = agree(ephemeral_secret, reader.0)?;
    let kek = key_encryption_key(&shared, &ephemeral, &reader.0);
    let sealed = XChaCha20Poly1305::new(&kek.into())
        .encrypt(&XNonce::default(), key.0.as_slice())
        .map_err(|_| StorageError::Decrypt("sealing failed".into()))?;
    Ok(SealedKey {
        reader: *reader,
        ephemeral,
        sealed,
    })
}

/// Writes `plain` as a private object sealed to `readers` (the envelope,
/// then the encrypted stream), streaming. `random` fills buffers with
/// fresh random bytes: the object key, each seal's ephemeral secret, the
/// nonce prefix.
pub fn write_private(
    plain: impl Read,
    readers: &[ReaderKey],
    mut random: impl FnMut(&mut [u8]) -> std::io::Result<()>,
    out: &mut impl Write,
) -> Result<()> {
    let mut fresh = || -> Result<[u8; 32]> {
        let mut b = [0u8; 32];
        random(&mut b)?;
        Ok(b)
    };
    let key = ObjectKey(fresh()?);
    let mut sealed = Vec::with_capacity(readers.len());
    for r in readers {
        sealed.push(seal(&key, r, fresh()?)?);
    }
    write_envelope(&sealed, out)?;
    let prefix: [u8; 16] = fresh()?[..16].try_into().expect("16 of 32 bytes");
    std::io::copy(&mut Encryptor::new(plain, &key, prefix), out)?;
    Ok(())
}

/// Opens a key sealed to `me`.
pub fn open(sealed: &SealedKey, me: &ReaderSecret) -> Result<ObjectKey> {
    let mine = me.public();
    if sealed.reader != mine {
        return Err(StorageError::Decrypt(
            "the key is sealed to another reader".into(),
        ));
    }
    let shared = agree(me.0, sealed.ephemeral)?;
    let kek = key_encryption_key(&shared, &sealed.ephemeral, &mine.0);
    let plain = XChaCha20Poly1305::new(&kek.into())
        .decrypt(&XNonce::default(), sealed.sealed.as_slice())
        .map_err(|_| StorageError::Decrypt("the sealed key does not open".into()))?;
    let bytes: [u8; 32] = plain
        .try_into()
        .map_err(|_| StorageError::Decrypt("a sealed key of the wrong length".into()))?;
    Ok(ObjectKey(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encrypt(plain: &[u8], key: &ObjectKey) -> Vec<u8> {
        let mut out = Vec::new();
        Encryptor::new(plain, key, [7u8; 16])
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn decrypt(stored: &[u8], key: &ObjectKey, step: usize) -> Result<Vec<u8>> {
        let mut d = Decryptor::new(Vec::new(), key);
        for c in stored.chunks(step.max(1)) {
            d.write_all(c)
                .map_err(|e| StorageError::Decrypt(e.to_string()))?;
        }
        d.finish()
    }

    #[test]
    fn round_trips_at_frame_boundaries_and_the_length_is_predicted() {
        let key = ObjectKey([3u8; 32]);
        for len in [
            0,
            1,
            FRAME_BYTES - 1,
            FRAME_BYTES,
            FRAME_BYTES + 1,
            3 * FRAME_BYTES,
        ] {
            let plain: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let stored = encrypt(&plain, &key);
            assert_eq!(stored.len() as u64, encrypted_len(len as u64), "len {len}");
            assert_ne!(&stored[HEADER_BYTES..], &plain[..], "ciphertext differs");
            for step in [1usize, 1000, 1 << 20] {
                if len > FRAME_BYTES && step == 1 {
                    continue;
                }
                assert_eq!(
                    decrypt(&stored, &key, step).unwrap(),
                    plain,
                    "len {len} step {step}"
                );
            }
        }
    }

    #[test]
    fn wrong_key_tampering_truncation_and_reordering_fail() {
        let key = ObjectKey([1u8; 32]);
        let plain = vec![9u8; 2 * FRAME_BYTES + 10];
        let stored = encrypt(&plain, &key);
        assert!(decrypt(&stored, &ObjectKey([2u8; 32]), 4096).is_err());
        let mut t = stored.clone();
        t[HEADER_BYTES + 5] ^= 1;
        assert!(decrypt(&t, &key, 4096).is_err());
        // Dropping the last frame: the one before is not marked last.
        let f = FRAME_BYTES + TAG_BYTES;
        assert!(decrypt(&stored[..HEADER_BYTES + 2 * f], &key, 4096).is_err());
        assert!(decrypt(&stored[..HEADER_BYTES + 3], &key, 4096).is_err());
        assert!(decrypt(&stored[..3], &key, 4096).is_err());
        let mut swapped = stored[..HEADER_BYTES].to_vec();
        swapped.extend_from_slice(&stored[HEADER_BYTES + f..HEADER_BYTES + 2 * f]);
        swapped.extend_from_slice(&stored[HEADER_BYTES..HEADER_BYTES + f]);
        swapped.extend_from_slice(&stored[HEADER_BYTES + 2 * f..]);
        assert!(decrypt(&swapped, &key, 4096).is_err());
        let mut header = stored.clone();
        header[0] = b'X';
        assert!(decrypt(&header, &key, 4096).is_err());
    }

    #[test]
    fn a_private_object_written_whole_opens_for_each_reader_only() {
        let (carol, dave, eve) = (
            ios_chain::crypto::Keypair::from_seed("carol", 0),
            ios_chain::crypto::Keypair::from_seed("dave", 0),
            ios_chain::crypto::Keypair::from_seed("eve", 0),
        );
        let readers = [carol.address(), dave.address()].map(|a| ReaderKey::of_address(&a).unwrap());
        let plain: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let mut counter = 0u8;
        let mut out = Vec::new();
        write_private(
            plain.as_slice(),
            &readers,
            |b| {
                counter += 1;
                b.fill(counter);
                Ok(())
            },
            &mut out,
        )
        .unwrap();
        // The object key, two ephemeral secrets, the nonce prefix.
        assert_eq!(counter, 4);
        for (who, opens) in [(&carol, true), (&dave, true), (&eve, false)] {
            let mut r = out.as_slice();
            let keys = read_envelope(&mut r).unwrap();
            let me = ReaderSecret::of_account(who);
            let key = keys.iter().find_map(|k| open(k, &me).ok());
            assert_eq!(key.is_some(), opens);
            if let Some(key) = key {
                let mut d = Decryptor::new(Vec::new(), &key);
                d.write_all(r).unwrap();
                assert_eq!(d.finish().unwrap(), plain);
            }
        }
        // No randomness, no object.
        let failing = |_: &mut [u8]| Err(std::io::Error::other("no entropy"));
        assert!(write_private(&b"x"[..], &readers, failing, &mut Vec::new()).is_err());
    }

    #[test]
    fn an_address_is_enough_to_seal_and_envelopes_round_trip() {
        let carol = ios_chain::crypto::Keypair::from_seed("carol", 0);
        let dave = ios_chain::crypto::Keypair::from_seed("dave", 0);
        let to_carol = ReaderKey::of_address(&carol.address()).unwrap();
        assert_eq!(to_carol, ReaderSecret::of_account(&carol).public());
        let key = ObjectKey([7u8; 32]);
        let sealed = vec![
            seal(&key, &to_carol, [1u8; 32]).unwrap(),
            seal(
                &key,
                &ReaderKey::of_address(&dave.address()).unwrap(),
                [2u8; 32],
            )
            .unwrap(),
        ];
        let mut bytes = Vec::new();
        write_envelope(&sealed, &mut bytes).unwrap();
        assert!(is_private(&bytes));
        bytes.extend_from_slice(b"the encrypted stream");
        let mut r = bytes.as_slice();
        assert_eq!(read_envelope(&mut r).unwrap(), sealed);
        assert_eq!(r, b"the encrypted stream");
        assert_eq!(
            open(&sealed[1], &ReaderSecret::of_account(&dave)).unwrap(),
            key
        );
        // Not an envelope, a truncated one, an oversized one, none at all.
        assert!(read_envelope(&mut &b"IOSX...."[..]).is_err());
        assert!(read_envelope(&mut &bytes[..20]).is_err());
        let mut huge = bytes[..5].to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(read_envelope(&mut huge.as_slice()).is_err());
        assert!(write_envelope(&[], &mut Vec::new()).is_err());
        // An address that is no curve point cannot be sealed to.
        let mut bad = [0u8; 32];
        bad[0] = 2;
        bad[31] = 0x7f;
        let not_a_point = (0u8..=255)
            .map(|b| {
                let mut a = bad;
                a[1] = b;
                ios_chain::crypto::Address(a)
            })
            .find(|a| ReaderKey::of_address(a).is_err());
        assert!(not_a_point.is_some(), "some 32-byte strings are not points");
    }

    #[test]
    fn a_sealed_key_opens_only_for_its_reader() {
        let alice = ReaderSecret::of_account(&ios_chain::crypto::Keypair::from_seed("alice", 0));
        let bob = ReaderSecret::of_account(&ios_chain::crypto::Keypair::from_seed("bob", 0));
        let key = ObjectKey([42u8; 32]);
        let s = seal(&key, &alice.public(), [5u8; 32]).unwrap();
        assert_eq!(open(&s, &alice).unwrap(), key);
        assert!(open(&s, &bob).is_err());
        let mut forged = s.clone();
        forged.reader = bob.public();
        assert!(open(&forged, &bob).is_err());
        let mut t = s;
        t.sealed[0] ^= 1;
        assert!(open(&t, &alice).is_err());
        // A low-order point gives no shared secret.
        assert!(seal(&key, &ReaderKey([0u8; 32]), [5u8; 32]).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn random_plaintexts_round_trip(len in 0usize..200_000, step in 1usize..70_000) {
            let key = ObjectKey([len as u8; 32]);
            let plain: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let stored = encrypt(&plain, &key);
            prop_assert_eq!(decrypt(&stored, &key, step).unwrap(), plain);
        }
    }
}
