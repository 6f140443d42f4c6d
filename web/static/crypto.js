// IOS browser cryptography: what the gateway's UI needs to hold keys and to
// sign, seal and open objects in the browser, so no private key or
// plaintext of a private object ever reaches the server.
//
// Ed25519 signing and X25519 agreement use WebCrypto; BLAKE3, XChaCha20-
// Poly1305, bech32m and the Edwards-to-Montgomery map are written here
// (WebCrypto has none of them), byte-compatible with the Rust crates:
// `ios_chain::hash` (tagged BLAKE3), `ios_storage::crypt` (envelopes and
// frames) and `ios_chain::crypto::Address` (bech32m "ios1...").
"use strict";

const IosCrypto = (() => {
  const enc = new TextEncoder();

  // ---------- bytes ----------
  const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  function unhex(s) {
    if (s.length % 2 || /[^0-9a-fA-F]/.test(s)) throw new Error("not hex: " + s.slice(0, 16));
    const out = new Uint8Array(s.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(s.substr(2 * i, 2), 16);
    return out;
  }
  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  }
  const u32le = (n) => { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, n, true); return b; };
  const random = (n) => crypto.getRandomValues(new Uint8Array(n));
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));
  const rotl = (x, n) => (x << n) | (x >>> (32 - n));
  function words(bytes, at, n) {
    const w = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      let v = 0;
      for (let k = 3; k >= 0; k--) v = (v << 8) | (bytes[at + 4 * i + k] || 0);
      w[i] = v >>> 0;
    }
    return w;
  }
  function wordBytes(w, n) {
    const out = new Uint8Array(4 * n);
    for (let i = 0; i < n; i++) for (let k = 0; k < 4; k++) out[4 * i + k] = (w[i] >>> (8 * k)) & 0xff;
    return out;
  }

  // ---------- BLAKE3 (32-byte output) ----------
  const IV = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
  const PERM = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8];
  const CHUNK_START = 1, CHUNK_END = 2, PARENT = 4, ROOT = 8,
    DERIVE_KEY_CONTEXT = 32, DERIVE_KEY_MATERIAL = 64;
  function g(s, a, b, c, d, x, y) {
    s[a] = (s[a] + s[b] + x) | 0; s[d] = rotr(s[d] ^ s[a], 16);
    s[c] = (s[c] + s[d]) | 0; s[b] = rotr(s[b] ^ s[c], 12);
    s[a] = (s[a] + s[b] + y) | 0; s[d] = rotr(s[d] ^ s[a], 8);
    s[c] = (s[c] + s[d]) | 0; s[b] = rotr(s[b] ^ s[c], 7);
  }
  function compress(cv, m0, counter, len, flags) {
    const s = new Uint32Array([cv[0], cv[1], cv[2], cv[3], cv[4], cv[5], cv[6], cv[7],
      IV[0], IV[1], IV[2], IV[3], counter >>> 0, Math.floor(counter / 4294967296), len, flags]);
    let m = m0;
    for (let r = 0; r < 7; r++) {
      g(s, 0, 4, 8, 12, m[0], m[1]); g(s, 1, 5, 9, 13, m[2], m[3]);
      g(s, 2, 6, 10, 14, m[4], m[5]); g(s, 3, 7, 11, 15, m[6], m[7]);
      g(s, 0, 5, 10, 15, m[8], m[9]); g(s, 1, 6, 11, 12, m[10], m[11]);
      g(s, 2, 7, 8, 13, m[12], m[13]); g(s, 3, 4, 9, 14, m[14], m[15]);
      if (r < 6) m = Uint32Array.from(PERM, (p) => m[p]);
    }
    for (let i = 0; i < 8; i++) s[i] ^= s[i + 8];
    return s.subarray(0, 8);
  }
  // The chaining value of chunk `index` (or the root output when `root`).
  function chunkCV(key, input, index, flags, root) {
    const start = index * 1024, end = Math.min(input.length, start + 1024);
    const blocks = Math.max(1, Math.ceil((end - start) / 64));
    let cv = key;
    for (let j = 0; j < blocks; j++) {
      const at = start + 64 * j, len = Math.min(64, end - at);
      const block = words(input.subarray(at, at + len), 0, 16);
      let f = flags | (j === 0 ? CHUNK_START : 0);
      if (j === blocks - 1) f |= CHUNK_END | (root ? ROOT : 0);
      cv = compress(cv, block, index, len, f);
    }
    return cv;
  }
  function subtree(key, input, lo, hi, flags, root) {
    if (hi - lo === 1) return chunkCV(key, input, lo, flags, root);
    let split = 1;
    while (split * 2 < hi - lo) split *= 2;
    const l = subtree(key, input, lo, lo + split, flags, false);
    const r = subtree(key, input, lo + split, hi, flags, false);
    const block = new Uint32Array(16);
    block.set(l, 0); block.set(r, 8);
    return compress(key, block, 0, 64, flags | PARENT | (root ? ROOT : 0));
  }
  function blake3Raw(input, key, flags) {
    const chunks = Math.max(1, Math.ceil(input.length / 1024));
    return wordBytes(subtree(key, input, 0, chunks, flags, true), 8);
  }
  const blake3 = (input) => blake3Raw(input, IV, 0);
  function deriveKey(context, material) {
    const ck = blake3Raw(enc.encode(context), IV, DERIVE_KEY_CONTEXT);
    return blake3Raw(material, words(ck, 0, 8), DERIVE_KEY_MATERIAL);
  }
  // `ios_chain::hash::hash_tagged`: blake3(len(tag) u32 LE || tag || bytes).
  function hashTagged(tag, bytes) {
    const t = enc.encode(tag);
    return blake3(concat(u32le(t.length), t, bytes));
  }

  // ---------- XChaCha20-Poly1305 ----------
  function qr(s, a, b, c, d) {
    s[a] = (s[a] + s[b]) | 0; s[d] = rotl(s[d] ^ s[a], 16);
    s[c] = (s[c] + s[d]) | 0; s[b] = rotl(s[b] ^ s[c], 12);
    s[a] = (s[a] + s[b]) | 0; s[d] = rotl(s[d] ^ s[a], 8);
    s[c] = (s[c] + s[d]) | 0; s[b] = rotl(s[b] ^ s[c], 7);
  }
  function rounds(s) {
    for (let i = 0; i < 10; i++) {
      qr(s, 0, 4, 8, 12); qr(s, 1, 5, 9, 13); qr(s, 2, 6, 10, 14); qr(s, 3, 7, 11, 15);
      qr(s, 0, 5, 10, 15); qr(s, 1, 6, 11, 12); qr(s, 2, 7, 8, 13); qr(s, 3, 4, 9, 14);
    }
  }
  const SIGMA = [0x61707865, 0x3320646e, 0x79622d32, 0x6b206574];
  function hchacha(key, nonce16) {
    const s = new Uint32Array(16);
    s.set(SIGMA); s.set(words(key, 0, 8), 4); s.set(words(nonce16, 0, 4), 12);
    rounds(s);
    return wordBytes([s[0], s[1], s[2], s[3], s[12], s[13], s[14], s[15]], 8);
  }
  // ChaCha20 (IETF: 32-bit counter, 12-byte nonce) XORed over `data` from block `counter`.
  function chacha20(key, nonce12, counter, data) {
    const k = words(key, 0, 8), n = words(nonce12, 0, 3);
    const out = new Uint8Array(data.length), init = new Uint32Array(16), s = new Uint32Array(16);
    init.set(SIGMA); init.set(k, 4); init.set(n, 13);
    for (let at = 0; at < data.length; at += 64, counter++) {
      init[12] = counter;
      s.set(init); rounds(s);
      for (let i = 0; i < 16; i++) s[i] = (s[i] + init[i]) | 0;
      const ks = wordBytes(s, 16);
      for (let i = 0; i < 64 && at + i < data.length; i++) out[at + i] = data[at + i] ^ ks[i];
    }
    return out;
  }
  const P1305 = (1n << 130n) - 5n;
  function leBig(b) { let v = 0n; for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]); return v; }
  function poly1305(key, msg) {
    const r = leBig(key.subarray(0, 16)) & 0x0ffffffc0ffffffc0ffffffc0fffffffn;
    const s = leBig(key.subarray(16, 32));
    let acc = 0n;
    for (let at = 0; at < msg.length; at += 16) {
      const block = msg.subarray(at, Math.min(at + 16, msg.length));
      acc = ((acc + leBig(block) + (1n << BigInt(8 * block.length))) * r) % P1305;
    }
    acc = (acc + s) & ((1n << 128n) - 1n);
    const tag = new Uint8Array(16);
    for (let i = 0; i < 16; i++) { tag[i] = Number(acc & 0xffn); acc >>= 8n; }
    return tag;
  }
  function macData(aad, ct) {
    const pad = (n) => new Uint8Array((16 - (n % 16)) % 16);
    const lens = new Uint8Array(16);
    const dv = new DataView(lens.buffer);
    dv.setUint32(0, aad.length, true); dv.setUint32(8, ct.length, true);
    return concat(aad, pad(aad.length), ct, pad(ct.length), lens);
  }
  function xparts(key, nonce24) {
    const sub = hchacha(key, nonce24.subarray(0, 16));
    const n12 = concat(new Uint8Array(4), nonce24.subarray(16, 24));
    return [sub, n12, chacha20(sub, n12, 0, new Uint8Array(32))];
  }
  function seal(key, nonce24, plain, aad = new Uint8Array(0)) {
    const [sub, n12, pk] = xparts(key, nonce24);
    const ct = chacha20(sub, n12, 1, plain);
    return concat(ct, poly1305(pk, macData(aad, ct)));
  }
  function open(key, nonce24, sealed, aad = new Uint8Array(0)) {
    if (sealed.length < 16) throw new Error("a sealed message shorter than its tag");
    const [sub, n12, pk] = xparts(key, nonce24);
    const ct = sealed.subarray(0, sealed.length - 16);
    const tag = poly1305(pk, macData(aad, ct));
    let diff = 0;
    for (let i = 0; i < 16; i++) diff |= tag[i] ^ sealed[ct.length + i];
    if (diff) throw new Error("the data does not authenticate (wrong key or altered bytes)");
    return chacha20(sub, n12, 1, ct);
  }

  // ---------- bech32m addresses ----------
  const CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
  function polymod(values) {
    const GEN = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
    let chk = 1;
    for (const v of values) {
      const top = chk >>> 25;
      chk = ((chk & 0x1ffffff) << 5) ^ v;
      for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk ^= GEN[i];
    }
    return chk >>> 0;
  }
  const hrpExpand = (h) => [...h].map((c) => c.charCodeAt(0) >> 5).concat([0], [...h].map((c) => c.charCodeAt(0) & 31));
  function toWords(bytes) {
    const out = []; let acc = 0, bits = 0;
    for (const b of bytes) { acc = (acc << 8) | b; bits += 8; while (bits >= 5) { bits -= 5; out.push((acc >>> bits) & 31); } }
    if (bits) out.push((acc << (5 - bits)) & 31);
    return out;
  }
  function address(publicKey) {
    const data = toWords(publicKey);
    const pm = polymod(hrpExpand("ios").concat(data, [0, 0, 0, 0, 0, 0])) ^ 0x2bc830a3;
    const check = [0, 1, 2, 3, 4, 5].map((i) => (pm >>> (5 * (5 - i))) & 31);
    return "ios1" + data.concat(check).map((v) => CHARSET[v]).join("");
  }
  function addressBytes(addr) {
    const s = addr.trim().toLowerCase();
    if (!s.startsWith("ios1")) throw new Error("an address starts with ios1");
    const vals = [...s.slice(4)].map((c) => CHARSET.indexOf(c));
    if (vals.some((v) => v < 0) || vals.length < 6) throw new Error("not a bech32m address");
    if (polymod(hrpExpand("ios").concat(vals)) !== 0x2bc830a3) throw new Error("the address checksum is wrong");
    const out = []; let acc = 0, bits = 0;
    for (const v of vals.slice(0, -6)) { acc = (acc << 5) | v; bits += 5; if (bits >= 8) { bits -= 8; out.push((acc >>> bits) & 0xff); } }
    if (out.length !== 32) throw new Error("an address holds 32 bytes");
    return new Uint8Array(out);
  }

  // ---------- keys (WebCrypto Ed25519 / X25519) ----------
  const ED_PKCS8 = unhex("302e020100300506032b657004220420");
  const X_PKCS8 = unhex("302e020100300506032b656e04220420");
  const b64url = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
  // An account key from its 32-byte seed: {seed, publicKey, address, privateKey}.
  async function keyFromSeed(seed) {
    if (seed.length !== 32) throw new Error("a key seed is 32 bytes");
    const privateKey = await crypto.subtle.importKey("pkcs8", concat(ED_PKCS8, seed), { name: "Ed25519" }, true, ["sign"]);
    const jwk = await crypto.subtle.exportKey("jwk", privateKey);
    const publicKey = b64url(jwk.x);
    return { seed, publicKey, address: address(publicKey), privateKey };
  }
  async function generateKey() {
    const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
    const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", pair.privateKey));
    return keyFromSeed(pkcs8.slice(pkcs8.length - 32));
  }
  async function sign(key, digest) {
    return new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, key.privateKey, digest));
  }

  // The X25519 key of an address: the Edwards y mapped to Montgomery u = (1+y)/(1-y).
  const P25519 = (1n << 255n) - 19n;
  function modpow(b, e, m) { let r = 1n; b %= m; while (e > 0n) { if (e & 1n) r = (r * b) % m; b = (b * b) % m; e >>= 1n; } return r; }
  function readerKey(publicKey) {
    const yb = Uint8Array.from(publicKey); yb[31] &= 0x7f;
    const y = leBig(yb);
    const u = ((1n + y) * modpow((1n - y + P25519) % P25519, P25519 - 2n, P25519)) % P25519;
    const out = new Uint8Array(32); let v = u;
    for (let i = 0; i < 32; i++) { out[i] = Number(v & 0xffn); v >>= 8n; }
    return out;
  }
  async function x25519(secretKey, publicBytes) {
    const pub = await crypto.subtle.importKey("raw", publicBytes, { name: "X25519" }, false, []);
    return new Uint8Array(await crypto.subtle.deriveBits({ name: "X25519", public: pub }, secretKey, 256));
  }

  // ---------- private objects (ios_storage::crypt) ----------
  const FRAME = 64 << 10, SEAL_CONTEXT = "ios/huds/seal-object-key v1";
  const MAGIC = enc.encode("IOSX"), ENVELOPE = enc.encode("IOSP"), VERSION = 1;
  function frameNonce(prefix, i, last) {
    const n = new Uint8Array(24);
    n.set(prefix); new DataView(n.buffer).setUint32(16, i, false); n[20] = last ? 1 : 0;
    return n;
  }
  // Encrypts `plain` for the readers (addresses): the envelope and stream as stored.
  async function encryptFor(plain, readers) {
    if (!readers.length || readers.length > 64) throw new Error("1 to 64 readers");
    const objectKey = random(32);
    const sealed = [];
    for (const r of readers) {
      const reader = readerKey(addressBytes(r));
      const eph = await crypto.subtle.generateKey({ name: "X25519" }, true, ["deriveBits"]);
      const ephPub = new Uint8Array(await crypto.subtle.exportKey("raw", eph.publicKey));
      const shared = await x25519(eph.privateKey, reader);
      const kek = deriveKey(SEAL_CONTEXT, concat(shared, ephPub, reader));
      sealed.push(concat(reader, ephPub, u32le(48), seal(kek, new Uint8Array(24), objectKey)));
    }
    const body = concat(u32le(sealed.length), ...sealed);
    const prefix = random(16);
    const header = concat(MAGIC, [VERSION], prefix);
    const parts = [ENVELOPE, new Uint8Array([VERSION]), u32le(body.length), body, header];
    const frames = Math.max(1, Math.ceil(plain.length / FRAME));
    for (let i = 0; i < frames; i++) {
      const chunk = plain.subarray(i * FRAME, Math.min(plain.length, (i + 1) * FRAME));
      parts.push(seal(objectKey, frameNonce(prefix, i, i === frames - 1), chunk, header));
    }
    return concat(...parts);
  }
  // Opens a private object with an account key (from keyFromSeed).
  async function decryptWith(stored, key) {
    const dv = new DataView(stored.buffer, stored.byteOffset, stored.byteLength);
    if (stored.length < 9 || hex(stored.subarray(0, 4)) !== hex(ENVELOPE) || stored[4] !== VERSION)
      throw new Error("not a private object");
    const len = dv.getUint32(5, true);
    const count = dv.getUint32(9, true);
    const scalar = new Uint8Array(await crypto.subtle.digest("SHA-512", key.seed)).slice(0, 32);
    const secret = await crypto.subtle.importKey("pkcs8", concat(X_PKCS8, scalar), { name: "X25519" }, false, ["deriveBits"]);
    const mine = readerKey(key.publicKey);
    let objectKey = null;
    for (let i = 0, at = 13; i < count; i++) {
      const reader = stored.subarray(at, at + 32), eph = stored.subarray(at + 32, at + 64);
      const n = dv.getUint32(at + 64, true), box = stored.subarray(at + 68, at + 68 + n);
      at += 68 + n;
      if (hex(reader) !== hex(mine)) continue;
      const kek = deriveKey(SEAL_CONTEXT, concat(await x25519(secret, eph), eph, reader));
      objectKey = open(kek, new Uint8Array(24), box);
    }
    if (!objectKey) throw new Error("this object is not sealed to " + key.address);
    let at = 9 + len;
    const header = stored.subarray(at, at + 21);
    if (hex(header.subarray(0, 4)) !== hex(MAGIC)) throw new Error("a private object without its stream header");
    const prefix = header.subarray(5, 21);
    at += 21;
    const out = [];
    for (let i = 0; at < stored.length; i++) {
      const n = Math.min(FRAME + 16, stored.length - at);
      const last = at + n === stored.length;
      out.push(open(objectKey, frameNonce(prefix, i, last), stored.subarray(at, at + n), header));
      at += n;
    }
    return concat(...out);
  }

  // ---------- commitments (ios_market) ----------
  // `Rating::commitment(order, rater, salt)`: tagged BLAKE3 over the borsh tuple.
  function ratingCommitment(orderHex, raterAddress, scores, comment, salt) {
    const c = enc.encode(comment);
    return hashTagged("ios/market/rating", concat(unhex(orderHex), addressBytes(raterAddress),
      new Uint8Array([scores.overall, scores.quality, scores.communication, scores.timeliness]),
      u32le(c.length), c, salt));
  }
  // `jury::vote_commitment(order, juror, round, share, salt)`.
  function voteCommitment(orderHex, jurorAddress, round, share, salt) {
    return hashTagged("ios/market/jury-vote", concat(unhex(orderHex), addressBytes(jurorAddress),
      new Uint8Array([round]), u32le(share), salt));
  }

  return { hex, unhex, concat, random, blake3, deriveKey, hashTagged, seal, open, address,
    addressBytes, keyFromSeed, generateKey, sign, readerKey, encryptFor, decryptWith,
    ratingCommitment, voteCommitment };
})();
if (typeof module !== "undefined") module.exports = IosCrypto;
