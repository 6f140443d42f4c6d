//! `ios bench huds`: the HUDS codec's encode and decode throughput for the
//! devnet (4+2) and network (10+4) codes on one core, against blake3 and
//! memcpy measured in the same run on the same core.
//!
//! Then search: synthetic object metadata indexed on disk (docs/s), and
//! the latency of a mix of queries over it (p50, p99).
//!
//! Each code is measured twice: the Reed-Solomon coding alone (encode a
//! 16 MiB segment; decode it with m data fragments lost, the worst case),
//! and the whole per-segment pipeline an upload or download runs, which
//! adds blake3 over every fragment (roots) and the object (content id).

use crate::bench::HardwareLimits;
use crate::search::{ObjectDoc, SearchIndex, SearchQuery, SortBy};
use anyhow::{anyhow, Result};
use ios_storage::codec::{Codec, Coding, Layout, ObjectDecoder, ObjectEncoder};
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Serialize)]
pub struct CodecRate {
    pub data: u8,
    pub parity: u8,
    pub segment_mib: u32,
    /// Reed-Solomon coding alone: object bytes per second (GB = 1e9
    /// bytes) split into k fragments and m parity fragments computed.
    pub encode_gb_per_sec: f64,
    /// Reed-Solomon decoding alone with m data fragments lost (every lost
    /// one rebuilt from parity), the segment assembled.
    pub decode_gb_per_sec: f64,
    /// An upload's work per segment: read, code, every fragment's root and
    /// the content id (blake3 over 1 + (k+m)/k bytes per object byte).
    pub encode_pipeline_gb_per_sec: f64,
    /// A download's work per segment with m data fragments lost: every
    /// fragment's root checked, decode, content id.
    pub decode_pipeline_gb_per_sec: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct SearchRate {
    /// Documents in the index (synthetic object metadata, on disk).
    pub docs: u64,
    /// Documents indexed per second, commits included (one writer thread).
    pub index_docs_per_sec: f64,
    /// Queries run (a mix: one and two words, a tag filter, a size range,
    /// newest first, a second page), each returning 20 hits with snippets.
    pub queries: usize,
    pub query_p50_ms: f64,
    pub query_p99_ms: f64,
    /// Whether p99 is under the 10 ms target.
    pub p99_target_met: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct HudsBenchReport {
    pub codecs: Vec<CodecRate>,
    /// None when skipped (`--docs 0`).
    pub search: Option<SearchRate>,
    pub blake3_gb_per_sec: f64,
    pub memcpy_gb_per_sec: f64,
    /// 10+4 Reed-Solomon encode / memcpy (both one core).
    pub encode_vs_memcpy: f64,
    /// Whether 10+4 encode reached the 2 GB/s target on one core.
    pub encode_target_met: bool,
}

/// Segment bytes that do not compress or repeat.
fn pattern(len: usize) -> Vec<u8> {
    let mut r = Rng(0x9E37_79B9);
    (0..len).map(|_| r.next() as u8).collect()
}

/// Runs `f` repeatedly for about `budget`; returns bytes per second.
fn rate(bytes: usize, budget: Duration, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?; // warm-up
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < budget || n == 0 {
        f()?;
        n += bytes as u64;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

fn measure(coding: Coding, budget: Duration) -> Result<CodecRate> {
    let seg = pattern(coding.segment_bytes as usize);
    let codec = Codec::new(coding)?;
    let (k, m) = (usize::from(coding.data), usize::from(coding.parity));
    let mut fragments = Vec::new();
    let encode = rate(seg.len(), budget, || {
        Ok(codec.encode_into(&seg, &mut fragments)?)
    })?;

    let mut slots: Vec<Option<Vec<u8>>> = fragments.iter().cloned().map(Some).collect();
    let mut out = Vec::with_capacity(seg.len());
    let decode = rate(seg.len(), budget, || {
        // The first m data fragments lost (parity takes their place).
        for s in slots.iter_mut().take(m.min(k)) {
            *s = None;
        }
        out.clear();
        codec.decode(seg.len() as u64, &mut slots, &mut out)?;
        Ok(())
    })?;
    anyhow::ensure!(out == seg, "the decoded segment differs");

    let mut spare = Vec::new();
    let encode_pipeline = rate(seg.len(), budget, || {
        let mut enc = ObjectEncoder::new(codec.clone(), &seg[..], u64::MAX);
        enc.recycle(std::mem::take(&mut spare));
        while let Some(s) = enc.next_segment()? {
            spare = s.fragments;
        }
        enc.finish()?;
        Ok(())
    })?;

    let mut enc = ObjectEncoder::new(codec.clone(), &seg[..], u64::MAX);
    let s = enc
        .next_segment()?
        .ok_or_else(|| anyhow!("no segment encoded"))?;
    let layout: Layout = enc.finish()?;
    // The fragments a reader received (k of them: m data fragments lost),
    // reused between rounds as a download reuses its buffers.
    let mut frags: Vec<Option<Vec<u8>>> = s.fragments.iter().cloned().map(Some).collect();
    let decode_pipeline = rate(seg.len(), budget, || {
        for f in frags.iter_mut().take(m.min(k)) {
            *f = None;
        }
        out.clear();
        let mut dec = ObjectDecoder::new(layout.clone(), &mut out)?;
        dec.segment(&mut frags)?;
        dec.finish()?;
        Ok(())
    })?;
    Ok(CodecRate {
        data: coding.data,
        parity: coding.parity,
        segment_mib: coding.segment_bytes >> 20,
        encode_gb_per_sec: encode / 1e9,
        decode_gb_per_sec: decode / 1e9,
        encode_pipeline_gb_per_sec: encode_pipeline / 1e9,
        decode_pipeline_gb_per_sec: decode_pipeline / 1e9,
    })
}

const WORDS: usize = 5_000;

/// A synthetic word: syllables from an index, so the vocabulary is stable.
fn word(i: usize) -> String {
    const SYL: [&str; 16] = [
        "ka", "lo", "mi", "ren", "sto", "vu", "pe", "dar", "ni", "qua", "zel", "to", "bri", "ox",
        "fen", "ul",
    ];
    let mut w = String::new();
    let mut x = i + 16;
    while x > 0 {
        w.push_str(SYL[x % 16]);
        x /= 16;
    }
    w
}

/// A small xorshift generator (the bench is reproducible run to run).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Roughly Zipf-distributed word index: small indexes are common.
    fn zipf(&mut self, n: usize) -> usize {
        let a = (self.next() % n as u64) as usize;
        (self.next() % (a as u64 + 1)) as usize
    }
}

fn synthetic_doc(i: u64, rng: &mut Rng, words: &[String]) -> ObjectDoc {
    let pick = |rng: &mut Rng, n: usize| -> Vec<&str> {
        (0..n)
            .map(|_| words[rng.zipf(words.len())].as_str())
            .collect()
    };
    const MIMES: [&str; 5] = [
        "text/plain",
        "image/jpeg",
        "application/pdf",
        "video/mp4",
        "audio/ogg",
    ];
    ObjectDoc {
        cid: format!("{:064x}", i),
        name: pick(rng, 3).join(" "),
        description: pick(rng, 12).join(" "),
        tags: pick(rng, 2).iter().map(|t| t.to_string()).collect(),
        mime: MIMES[(rng.next() % 5) as usize].to_string(),
        owner: format!("ios1owner{}", rng.next() % 10_000),
        size: rng.next() % (1 << 30),
        created: 1_700_000_000_000 + i,
        shard: 1,
        expires: u64::MAX,
        body: i.is_multiple_of(10).then(|| pick(rng, 60).join(" ")),
    }
}

fn percentile(sorted: &[f64], p: usize) -> f64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// Indexes `docs` synthetic documents on disk in `dir`, then times queries.
pub fn search_rate(docs: u64, dir: &Path, progress: impl Fn(String)) -> Result<SearchRate> {
    let words: Vec<String> = (0..WORDS).map(word).collect();
    let mut ix = SearchIndex::open(dir)?;
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let t = Instant::now();
    for i in 0..docs {
        ix.upsert(&synthetic_doc(i, &mut rng, &words))?;
        if (i + 1) % 200_000 == 0 {
            ix.commit()?;
            progress(format!("indexed {} of {docs} documents", i + 1));
        }
    }
    ix.commit()?;
    let index_rate = docs as f64 / t.elapsed().as_secs_f64();
    let mut lat = Vec::new();
    for n in 0..1_000usize {
        let w = |rng: &mut Rng| words[rng.zipf(200)].clone();
        let q = match n % 6 {
            0 => SearchQuery {
                text: w(&mut rng),
                ..Default::default()
            },
            1 => SearchQuery {
                text: format!("{} {}", w(&mut rng), w(&mut rng)),
                ..Default::default()
            },
            2 => SearchQuery {
                text: w(&mut rng),
                tags: vec![w(&mut rng)],
                ..Default::default()
            },
            3 => SearchQuery {
                text: w(&mut rng),
                min_size: Some(1 << 20),
                max_size: Some(1 << 28),
                ..Default::default()
            },
            4 => SearchQuery {
                text: w(&mut rng),
                sort: SortBy::Newest,
                ..Default::default()
            },
            _ => SearchQuery {
                text: w(&mut rng),
                offset: 20,
                ..Default::default()
            },
        };
        let t = Instant::now();
        std::hint::black_box(ix.search(&q)?);
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    lat.sort_by(f64::total_cmp);
    let p99 = percentile(&lat, 99);
    Ok(SearchRate {
        docs,
        index_docs_per_sec: index_rate,
        queries: lat.len(),
        query_p50_ms: percentile(&lat, 50),
        query_p99_ms: p99,
        p99_target_met: p99 < 10.0,
    })
}

/// `ios bench huds`: the codec (`budget` per measurement), then search over
/// `docs` documents in `dir` (skipped when 0).
pub fn run(
    budget: Duration,
    docs: u64,
    dir: &Path,
    progress: impl Fn(String),
) -> Result<HudsBenchReport> {
    let limits: HardwareLimits = crate::bench::hardware_limits(budget * 4);
    let gib = (1u64 << 30) as f64 / 1e9;
    let mut codecs = Vec::new();
    for coding in [Coding::DEVNET, Coding::NETWORK] {
        progress(format!("codec {}+{}", coding.data, coding.parity));
        codecs.push(measure(coding, budget)?);
    }
    let search = if docs > 0 {
        progress(format!("search: indexing {docs} documents"));
        Some(search_rate(docs, dir, &progress)?)
    } else {
        None
    };
    let memcpy = limits.memcpy_gib_per_sec * gib;
    let network = codecs
        .iter()
        .find(|c| c.data == 10)
        .map_or(0.0, |c| c.encode_gb_per_sec);
    Ok(HudsBenchReport {
        blake3_gb_per_sec: limits.blake3_gib_per_sec * gib,
        memcpy_gb_per_sec: memcpy,
        encode_vs_memcpy: network / memcpy,
        encode_target_met: network >= 2.0,
        codecs,
        search,
    })
}
