//! The HUDS codec: an object is cut into segments (default 16 MiB); each
//! segment is Reed-Solomon coded into k data + m parity fragments of equal
//! length, any k of which rebuild it. Encoding and decoding stream one
//! segment at a time, so an object is never held whole in memory.
//!
//! A segment of `len` bytes gives fragments of `ceil(len / k)` bytes; the
//! last data fragment is zero-padded, and the padding is dropped again on
//! decode (the object's size is in its [`Layout`]). Every fragment's root is
//! its plain blake3 hash ([`crate::tree`] proves 1 KiB chunks against it);
//! the object's [`ContentId`] is the blake3 of the bytes stored.

use crate::{blake3_root, ContentId, Result, StorageError};
use borsh::{BorshDeserialize, BorshSerialize};
use ios_chain::hash::Hash;
use reed_solomon_erasure::galois_8::ReedSolomon;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::sync::Arc;

/// Default segment size.
pub const DEFAULT_SEGMENT_BYTES: u32 = 16 << 20;
/// Largest segment a codec accepts (a decoder holds one segment and its
/// fragments in memory).
pub const MAX_SEGMENT_BYTES: u32 = 64 << 20;
/// Reed-Solomon over GF(2^8) has at most 256 fragments per segment.
pub const MAX_FRAGMENTS: usize = 256;
/// Encoding works on columns of this many bytes of every fragment at a
/// time, so the k + m column slices stay in cache.
const COLUMN_BYTES: usize = 64 << 10;

/// How objects are coded: k data fragments, m parity fragments, segment size.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
pub struct Coding {
    pub data: u8,
    pub parity: u8,
    pub segment_bytes: u32,
}

impl Coding {
    /// Devnet default: 4 + 2 (any 4 of 6 providers rebuild a segment).
    pub const DEVNET: Coding = Coding {
        data: 4,
        parity: 2,
        segment_bytes: DEFAULT_SEGMENT_BYTES,
    };
    /// Network default: 10 + 4.
    pub const NETWORK: Coding = Coding {
        data: 10,
        parity: 4,
        segment_bytes: DEFAULT_SEGMENT_BYTES,
    };

    pub fn new(data: u8, parity: u8, segment_bytes: u32) -> Result<Coding> {
        let c = Coding {
            data,
            parity,
            segment_bytes,
        };
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(StorageError::Params(why));
        if self.data == 0 || self.parity == 0 {
            return bad(format!(
                "{}+{}: at least one data and one parity fragment",
                self.data, self.parity
            ));
        }
        if self.fragments() > MAX_FRAGMENTS {
            return bad(format!(
                "{} fragments, at most {MAX_FRAGMENTS}",
                self.fragments()
            ));
        }
        if self.segment_bytes < u32::from(self.data) || self.segment_bytes > MAX_SEGMENT_BYTES {
            return bad(format!(
                "segments of {} bytes (from {} to {MAX_SEGMENT_BYTES})",
                self.segment_bytes, self.data
            ));
        }
        Ok(())
    }

    /// k + m.
    pub fn fragments(&self) -> usize {
        usize::from(self.data) + usize::from(self.parity)
    }

    /// Segments of an object of `size` bytes (none for an empty object).
    pub fn segment_count(&self, size: u64) -> u64 {
        size.div_ceil(u64::from(self.segment_bytes))
    }

    /// Length of segment `index` of an object of `size` bytes.
    pub fn segment_len(&self, size: u64, index: u64) -> u64 {
        let seg = u64::from(self.segment_bytes);
        size.saturating_sub(index * seg).min(seg)
    }

    /// Length of each fragment of a segment of `segment_len` bytes.
    pub fn fragment_len(&self, segment_len: u64) -> u64 {
        segment_len.div_ceil(u64::from(self.data)).max(1)
    }

    /// Bytes providers hold, all fragments of all segments, for `size` bytes.
    pub fn stored_bytes(&self, size: u64) -> u64 {
        let seg = u64::from(self.segment_bytes);
        let (full, rest) = (size / seg, size % seg);
        let mut total = full * self.fragment_len(seg) * self.fragments() as u64;
        if rest > 0 {
            total += self.fragment_len(rest) * self.fragments() as u64;
        }
        total
    }
}

/// The fragment roots of one segment, in fragment order (data first).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SegmentLayout {
    pub roots: Vec<Hash>,
}

/// What coding an object produced: enough to check and decode any k
/// fragments of every segment back into the object.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Layout {
    pub coding: Coding,
    pub size: u64,
    pub content: ContentId,
    pub segments: Vec<SegmentLayout>,
}

impl Layout {
    /// Checks the layout is consistent with its own coding and size.
    pub fn validate(&self) -> Result<()> {
        self.coding.validate()?;
        let want = self.coding.segment_count(self.size);
        if self.segments.len() as u64 != want {
            return Err(StorageError::Malformed {
                what: "layout",
                reason: format!(
                    "{} segments for {} bytes (expected {want})",
                    self.segments.len(),
                    self.size
                ),
            });
        }
        if let Some((i, s)) = self
            .segments
            .iter()
            .enumerate()
            .find(|(_, s)| s.roots.len() != self.coding.fragments())
        {
            return Err(StorageError::Malformed {
                what: "layout",
                reason: format!(
                    "segment {i} has {} roots, expected {}",
                    s.roots.len(),
                    self.coding.fragments()
                ),
            });
        }
        Ok(())
    }

    pub fn segment_len(&self, segment: u32) -> u64 {
        self.coding.segment_len(self.size, u64::from(segment))
    }

    pub fn fragment_len(&self, segment: u32) -> u64 {
        self.coding.fragment_len(self.segment_len(segment))
    }

    /// Checks one fragment's bytes against this layout: its length and root.
    pub fn check_fragment(&self, segment: u32, index: usize, bytes: &[u8]) -> Result<()> {
        let root = self
            .segments
            .get(segment as usize)
            .and_then(|s| s.roots.get(index))
            .ok_or_else(|| {
                StorageError::NotFound(format!("fragment {segment}/{index} of {}", self.content))
            })?;
        let expected = self.fragment_len(segment);
        if bytes.len() as u64 != expected {
            return Err(StorageError::WrongLength {
                what: format!("fragment {segment}/{index} of {}", self.content),
                expected,
                got: bytes.len() as u64,
            });
        }
        let got = blake3_root(bytes);
        if got != *root {
            return Err(StorageError::Corrupt {
                what: format!("fragment {segment}/{index} of {}", self.content),
                expected: *root,
                got,
            });
        }
        Ok(())
    }
}

/// A Reed-Solomon codec for one [`Coding`]. Cheap to clone (shared tables).
#[derive(Clone)]
pub struct Codec {
    coding: Coding,
    rs: Arc<ReedSolomon>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Codec({}+{})", self.coding.data, self.coding.parity)
    }
}

fn rs_error(e: reed_solomon_erasure::Error) -> StorageError {
    StorageError::Params(format!("reed-solomon: {e:?}"))
}

impl Codec {
    pub fn new(coding: Coding) -> Result<Codec> {
        coding.validate()?;
        let rs = ReedSolomon::new(usize::from(coding.data), usize::from(coding.parity))
            .map_err(rs_error)?;
        Ok(Codec {
            coding,
            rs: Arc::new(rs),
        })
    }

    pub fn coding(&self) -> Coding {
        self.coding
    }

    /// Codes one segment into k + m fragments of equal length.
    pub fn encode(&self, segment: &[u8]) -> Result<Vec<Vec<u8>>> {
        let mut fragments = Vec::new();
        self.encode_into(segment, &mut fragments)?;
        Ok(fragments)
    }

    /// [`Codec::encode`] into `fragments`, reusing its buffers (fresh
    /// pages for every 16 MiB segment cost more than the coding itself).
    pub fn encode_into(&self, segment: &[u8], fragments: &mut Vec<Vec<u8>>) -> Result<()> {
        let len = segment.len() as u64;
        if segment.is_empty() || len > u64::from(self.coding.segment_bytes) {
            return Err(StorageError::Params(format!(
                "a segment of {len} bytes (from 1 to {})",
                self.coding.segment_bytes
            )));
        }
        let k = usize::from(self.coding.data);
        let frag = self.coding.fragment_len(len) as usize;
        fragments.resize_with(self.coding.fragments(), Vec::new);
        for (i, f) in fragments.iter_mut().enumerate() {
            f.clear();
            if i < k {
                let start = (i * frag).min(segment.len());
                let end = ((i + 1) * frag).min(segment.len());
                f.extend_from_slice(&segment[start..end]);
            }
            f.resize(frag, 0);
        }
        let (data, parity) = fragments.split_at_mut(k);
        let mut off = 0;
        while off < frag {
            let end = (off + COLUMN_BYTES).min(frag);
            let d: Vec<&[u8]> = data.iter().map(|f| &f[off..end]).collect();
            let mut p: Vec<&mut [u8]> = parity.iter_mut().map(|f| &mut f[off..end]).collect();
            self.rs.encode_sep(&d, &mut p).map_err(rs_error)?;
            off = end;
        }
        Ok(())
    }

    /// Rebuilds every missing fragment (data and parity) of a segment of
    /// `segment_len` bytes from any k present ones. Present fragments must
    /// already be checked against their roots.
    pub fn reconstruct(&self, segment_len: u64, fragments: &mut [Option<Vec<u8>>]) -> Result<()> {
        self.check_shape(segment_len, fragments)?;
        self.rs.reconstruct(fragments).map_err(rs_error)
    }

    /// Decodes a segment of `segment_len` bytes from any k checked
    /// fragments, appending it to `out`.
    /// Missing data fragments are rebuilt in place.
    pub fn decode(
        &self,
        segment_len: u64,
        fragments: &mut [Option<Vec<u8>>],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        self.check_shape(segment_len, fragments)?;
        let k = usize::from(self.coding.data);
        if fragments[..k].iter().any(Option::is_none) {
            self.rs.reconstruct_data(fragments).map_err(rs_error)?;
        }
        let mut left = segment_len as usize;
        for f in fragments.iter().take(k).flatten() {
            let n = left.min(f.len());
            out.extend_from_slice(&f[..n]);
            left -= n;
        }
        Ok(())
    }

    /// Decodes a segment as the pieces it is made of, in order: the data
    /// fragments themselves, taken out of `fragments` (missing ones rebuilt
    /// first), the last cut to the segment's end. No byte is copied when
    /// all data fragments came; their concatenation is the segment.
    pub fn decode_pieces(
        &self,
        segment_len: u64,
        fragments: &mut [Option<Vec<u8>>],
    ) -> Result<Vec<Vec<u8>>> {
        self.check_shape(segment_len, fragments)?;
        let k = usize::from(self.coding.data);
        if fragments[..k].iter().any(Option::is_none) {
            self.rs.reconstruct_data(fragments).map_err(rs_error)?;
        }
        let mut left = segment_len as usize;
        let mut pieces = Vec::with_capacity(k);
        for f in fragments.iter_mut().take(k) {
            let Some(mut f) = f.take() else {
                return Err(StorageError::Params(
                    "a data fragment is missing after reconstruction".into(),
                ));
            };
            if left == 0 {
                break;
            }
            f.truncate(left);
            left -= f.len();
            pieces.push(f);
        }
        Ok(pieces)
    }

    fn check_shape(&self, segment_len: u64, fragments: &[Option<Vec<u8>>]) -> Result<()> {
        if fragments.len() != self.coding.fragments() {
            return Err(StorageError::Params(format!(
                "{} fragment slots for a {}+{} code",
                fragments.len(),
                self.coding.data,
                self.coding.parity
            )));
        }
        let frag = self.coding.fragment_len(segment_len);
        if let Some(f) = fragments.iter().flatten().find(|f| f.len() as u64 != frag) {
            return Err(StorageError::WrongLength {
                what: "fragment".into(),
                expected: frag,
                got: f.len() as u64,
            });
        }
        let have = fragments.iter().flatten().count();
        let need = usize::from(self.coding.data);
        if have < need {
            return Err(StorageError::TooFewFragments {
                segment: 0,
                have,
                need,
            });
        }
        Ok(())
    }
}

/// One coded segment: its fragments and their roots.
#[derive(Clone, Debug)]
pub struct EncodedSegment {
    pub index: u32,
    /// Bytes of the object in this segment.
    pub len: u64,
    pub fragments: Vec<Vec<u8>>,
    pub roots: Vec<Hash>,
}

/// Codes an object read from `R` one segment at a time.
pub struct ObjectEncoder<R> {
    codec: Codec,
    reader: R,
    max_size: u64,
    hasher: blake3::Hasher,
    size: u64,
    segments: Vec<SegmentLayout>,
    buf: Vec<u8>,
    spare: Vec<Vec<u8>>,
    done: bool,
}

impl<R: Read> ObjectEncoder<R> {
    /// An encoder of the object `reader` yields, refusing more than
    /// `max_size` bytes.
    pub fn new(codec: Codec, reader: R, max_size: u64) -> ObjectEncoder<R> {
        ObjectEncoder {
            codec,
            reader,
            max_size,
            hasher: blake3::Hasher::new(),
            size: 0,
            segments: Vec::new(),
            buf: Vec::new(),
            spare: Vec::new(),
            done: false,
        }
    }

    /// Hands a segment's fragment buffers back for the next segment (a
    /// caller done with them saves the allocation and its page faults).
    pub fn recycle(&mut self, fragments: Vec<Vec<u8>>) {
        self.spare = fragments;
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.size
    }

    /// The next segment, coded; None after the last one.
    pub fn next_segment(&mut self) -> Result<Option<EncodedSegment>> {
        if self.done {
            return Ok(None);
        }
        let seg = self.codec.coding.segment_bytes as usize;
        // Kept at full size between segments: no zeroing, no page faults.
        self.buf.resize(seg, 0);
        let mut filled = 0;
        while filled < seg {
            match self.reader.read(&mut self.buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        if filled < seg {
            self.done = true;
        }
        if filled == 0 {
            return Ok(None);
        }
        self.size += filled as u64;
        if self.size > self.max_size {
            return Err(StorageError::TooLarge {
                what: "object",
                len: self.size,
                max: self.max_size,
            });
        }
        let bytes = &self.buf[..filled];
        self.hasher.update(bytes);
        let mut fragments = std::mem::take(&mut self.spare);
        self.codec.encode_into(bytes, &mut fragments)?;
        let roots: Vec<Hash> = fragments.iter().map(|f| blake3_root(f)).collect();
        self.segments.push(SegmentLayout {
            roots: roots.clone(),
        });
        Ok(Some(EncodedSegment {
            index: (self.segments.len() - 1) as u32,
            len: filled as u64,
            fragments,
            roots,
        }))
    }

    /// The object's layout, once every segment was taken.
    pub fn finish(mut self) -> Result<Layout> {
        if !self.done {
            // A reader that ended exactly on a segment boundary.
            if self.next_segment()?.is_some() {
                return Err(StorageError::OutOfOrder(
                    "finish called before the last segment was taken".into(),
                ));
            }
        }
        Ok(Layout {
            coding: self.codec.coding,
            size: self.size,
            content: ContentId(Hash(*self.hasher.finalize().as_bytes())),
            segments: self.segments,
        })
    }
}

/// What decoding one segment found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentReport {
    /// Fragments given that failed their length or root check (the
    /// provider that sent them is at fault).
    pub bad: Vec<(usize, String)>,
    /// Whether parity had to be used (a data fragment was missing or bad).
    pub rebuilt: bool,
}

/// Decodes an object segment by segment into `W`, checking every fragment
/// against the layout and the whole against its content id.
pub struct ObjectDecoder<W> {
    codec: Codec,
    layout: Layout,
    next: u32,
    hasher: blake3::Hasher,
    out: W,
    buf: Vec<u8>,
}

impl<W: Write> ObjectDecoder<W> {
    pub fn new(layout: Layout, out: W) -> Result<ObjectDecoder<W>> {
        layout.validate()?;
        Ok(ObjectDecoder {
            codec: Codec::new(layout.coding)?,
            layout,
            next: 0,
            hasher: blake3::Hasher::new(),
            out,
            buf: Vec::new(),
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The segment the decoder wants next, or None when all are written.
    pub fn next_segment(&self) -> Option<u32> {
        (self.next < self.layout.segments.len() as u32).then_some(self.next)
    }

    /// Takes the fragments gathered for the next segment (None where
    /// missing), drops those that fail their checks (their slots become
    /// None), decodes and writes. Missing data fragments are rebuilt in
    /// their slots, so the caller may reuse the buffers.
    pub fn segment(&mut self, fragments: &mut [Option<Vec<u8>>]) -> Result<SegmentReport> {
        let index = self
            .next_segment()
            .ok_or_else(|| StorageError::OutOfOrder("every segment is decoded already".into()))?;
        let n = self.layout.coding.fragments();
        if fragments.len() != n {
            return Err(StorageError::Params(format!(
                "{} fragment slots for {n} fragments",
                fragments.len()
            )));
        }
        let mut report = SegmentReport::default();
        for (i, slot) in fragments.iter_mut().enumerate() {
            if let Some(f) = slot {
                if let Err(e) = self.layout.check_fragment(index, i, f) {
                    report.bad.push((i, e.to_string()));
                    *slot = None;
                }
            }
        }
        let have = fragments.iter().flatten().count();
        let need = usize::from(self.layout.coding.data);
        if have < need {
            return Err(StorageError::TooFewFragments {
                segment: index,
                have,
                need,
            });
        }
        report.rebuilt = fragments[..need].iter().any(Option::is_none);
        let len = self.layout.segment_len(index);
        self.buf.clear();
        self.codec.decode(len, fragments, &mut self.buf)?;
        self.hasher.update(&self.buf);
        self.out.write_all(&self.buf)?;
        self.next += 1;
        Ok(report)
    }

    /// Checks the content id once every segment is written; returns the sink.
    pub fn finish(mut self) -> Result<W> {
        if let Some(s) = self.next_segment() {
            return Err(StorageError::OutOfOrder(format!(
                "segment {s} of {} was never decoded",
                self.layout.segments.len()
            )));
        }
        let got = ContentId(Hash(*self.hasher.finalize().as_bytes()));
        if got != self.layout.content {
            return Err(StorageError::ContentMismatch {
                expected: self.layout.content,
                got,
            });
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn object(len: usize, seed: u8) -> Vec<u8> {
        let mut x = u32::from(seed) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    fn encode_all(coding: Coding, bytes: &[u8]) -> (Layout, Vec<EncodedSegment>) {
        let mut enc = ObjectEncoder::new(Codec::new(coding).unwrap(), bytes, u64::MAX);
        let mut segs = Vec::new();
        while let Some(s) = enc.next_segment().unwrap() {
            segs.push(s);
        }
        (enc.finish().unwrap(), segs)
    }

    fn small(k: u8, m: u8, seg: u32) -> Coding {
        Coding::new(k, m, seg).unwrap()
    }

    #[test]
    fn any_k_fragments_of_every_segment_rebuild_the_object_byte_for_byte() {
        let coding = small(4, 2, 10_000);
        let bytes = object(35_123, 7);
        let (layout, segs) = encode_all(coding, &bytes);
        assert_eq!(layout.content, ContentId::of(&bytes));
        assert_eq!(layout.segments.len(), 4);
        // Every choice of 2 lost fragments (all C(6,2) = 15).
        for a in 0..6 {
            for b in a + 1..6 {
                let mut dec = ObjectDecoder::new(layout.clone(), Vec::new()).unwrap();
                for s in &segs {
                    let mut f: Vec<Option<Vec<u8>>> =
                        s.fragments.iter().cloned().map(Some).collect();
                    f[a] = None;
                    f[b] = None;
                    dec.segment(&mut f).unwrap();
                }
                assert_eq!(dec.finish().unwrap(), bytes, "lost {a} and {b}");
            }
        }
    }

    #[test]
    fn decoded_pieces_are_the_data_fragments_and_join_to_the_segment() {
        let codec = Codec::new(small(4, 2, 10_000)).unwrap();
        let bytes = object(35_123, 5);
        let (layout, segs) = encode_all(small(4, 2, 10_000), &bytes);
        let mut joined = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            let len = layout.segment_len(i as u32);
            let mut all: Vec<Option<Vec<u8>>> = s.fragments.iter().cloned().map(Some).collect();
            let pieces = codec.decode_pieces(len, &mut all).unwrap();
            // Taken, not copied: the data fragments' own buffers.
            assert!(pieces.len() <= 4 && all[..pieces.len()].iter().all(Option::is_none));
            // Two data fragments lost: rebuilt, same bytes.
            let mut lossy: Vec<Option<Vec<u8>>> = s.fragments.iter().cloned().map(Some).collect();
            lossy[0] = None;
            lossy[3] = None;
            assert_eq!(codec.decode_pieces(len, &mut lossy).unwrap(), pieces);
            let mut whole = Vec::new();
            codec
                .decode(
                    len,
                    &mut s.fragments.iter().cloned().map(Some).collect::<Vec<_>>(),
                    &mut whole,
                )
                .unwrap();
            assert_eq!(pieces.concat(), whole);
            joined.extend(pieces.concat());
        }
        assert_eq!(joined, bytes);
    }

    #[test]
    fn wrong_and_truncated_fragments_are_dropped_and_reported_while_m_or_fewer() {
        let coding = small(4, 2, 8_192);
        let bytes = object(20_000, 3);
        let (layout, segs) = encode_all(coding, &bytes);
        let mut dec = ObjectDecoder::new(layout.clone(), Vec::new()).unwrap();
        for s in &segs {
            let mut f: Vec<Option<Vec<u8>>> = s.fragments.iter().cloned().map(Some).collect();
            f[0].as_mut().unwrap()[0] ^= 1; // wrong bytes
            f[2].as_mut().unwrap().pop(); // truncated
            let report = dec.segment(&mut f).unwrap();
            assert_eq!(report.bad.iter().map(|b| b.0).collect::<Vec<_>>(), [0, 2]);
            assert!(report.rebuilt);
        }
        assert_eq!(dec.finish().unwrap(), bytes);

        // Three bad of a 4+2 code: a typed error, not wrong bytes.
        let mut dec = ObjectDecoder::new(layout, Vec::new()).unwrap();
        let mut f: Vec<Option<Vec<u8>>> = segs[0].fragments.iter().cloned().map(Some).collect();
        for i in [1, 3, 5] {
            f[i].as_mut().unwrap()[7] ^= 0xFF;
        }
        assert!(matches!(
            dec.segment(&mut f),
            Err(StorageError::TooFewFragments {
                segment: 0,
                have: 3,
                need: 4
            })
        ));
    }

    #[test]
    fn a_layout_that_lies_about_the_content_is_caught_at_the_end() {
        let (mut layout, segs) = encode_all(small(2, 1, 4_096), &object(5_000, 9));
        layout.content = ContentId::of(b"something else");
        let mut dec = ObjectDecoder::new(layout, Vec::new()).unwrap();
        for s in &segs {
            dec.segment(&mut s.fragments.iter().cloned().map(Some).collect::<Vec<_>>())
                .unwrap();
        }
        assert!(matches!(
            dec.finish(),
            Err(StorageError::ContentMismatch { .. })
        ));
    }

    #[test]
    fn reconstruct_rebuilds_lost_parity_and_data_for_repair() {
        let codec = Codec::new(small(10, 4, 1 << 16)).unwrap();
        let seg = object(50_001, 1);
        let full = codec.encode(&seg).unwrap();
        let mut f: Vec<Option<Vec<u8>>> = full.iter().cloned().map(Some).collect();
        for i in [0, 5, 11, 13] {
            f[i] = None;
        }
        codec.reconstruct(seg.len() as u64, &mut f).unwrap();
        let rebuilt: Vec<Vec<u8>> = f.into_iter().map(Option::unwrap).collect();
        assert_eq!(rebuilt, full);
    }

    #[test]
    fn bad_parameters_and_oversized_objects_are_typed_errors() {
        assert!(Coding::new(0, 2, 1024).is_err());
        assert!(Coding::new(4, 0, 1024).is_err());
        assert!(Coding::new(200, 57, 1 << 20).is_err());
        assert!(Coding::new(4, 2, MAX_SEGMENT_BYTES + 1).is_err());
        assert!(Coding::new(200, 56, 1 << 20).is_ok());
        let big = object(5_000, 2);
        let mut enc = ObjectEncoder::new(Codec::new(small(4, 2, 1024)).unwrap(), &big[..], 4_000);
        let mut err = None;
        loop {
            match enc.next_segment() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        assert!(matches!(
            err,
            Some(StorageError::TooLarge {
                len: 4_096,
                max: 4_000,
                ..
            })
        ));
    }

    #[test]
    fn an_empty_object_has_no_segments_and_decodes_to_nothing() {
        let (layout, segs) = encode_all(Coding::DEVNET, &[]);
        assert!(segs.is_empty());
        assert_eq!(layout.content, ContentId::of(&[]));
        let dec = ObjectDecoder::new(layout, Vec::new()).unwrap();
        assert_eq!(dec.finish().unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn stored_bytes_match_what_the_encoder_produces() {
        for (coding, len) in [
            (small(4, 2, 4_096), 10_000usize),
            (small(3, 2, 1_000), 3_000),
            (small(10, 4, 7_777), 1),
        ] {
            let (_, segs) = encode_all(coding, &object(len, 5));
            let total: usize = segs.iter().flat_map(|s| &s.fragments).map(Vec::len).sum();
            assert_eq!(coding.stored_bytes(len as u64), total as u64);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn random_objects_and_losses_round_trip(
            len in 0usize..40_000,
            k in 1u8..8,
            m in 1u8..5,
            seg in 1_000u32..16_000,
            lost in proptest::collection::vec(any::<u8>(), 0..5),
        ) {
            let coding = Coding::new(k, m, seg.max(u32::from(k))).unwrap();
            let bytes = object(len, (len % 251) as u8);
            let (layout, segs) = encode_all(coding, &bytes);
            let mut dec = ObjectDecoder::new(layout, Vec::new()).unwrap();
            for s in &segs {
                let mut f: Vec<Option<Vec<u8>>> = s.fragments.iter().cloned().map(Some).collect();
                for l in lost.iter().take(usize::from(m)) {
                    f[usize::from(*l) % coding.fragments()] = None;
                }
                dec.segment(&mut f).unwrap();
            }
            prop_assert_eq!(dec.finish().unwrap(), bytes);
        }
    }
}
