//! `ios bench huds`: the HUDS codec's encode and decode throughput for the
//! devnet (4+2) and network (10+4) codes on one core, against blake3 and
//! memcpy measured in the same run on the same core.
//!
//! Each code is measured twice: the Reed-Solomon coding alone (encode a
//! 16 MiB segment; decode it with m data fragments lost, the worst case),
//! and the whole per-segment pipeline an upload or download runs, which
//! adds blake3 over every fragment (roots) and the object (content id).

use crate::bench::HardwareLimits;
use anyhow::{anyhow, Result};
use ios_storage::codec::{Codec, Coding, Layout, ObjectDecoder, ObjectEncoder};
use serde::Serialize;
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
pub struct HudsBenchReport {
    pub codecs: Vec<CodecRate>,
    pub blake3_gb_per_sec: f64,
    pub memcpy_gb_per_sec: f64,
    /// 10+4 Reed-Solomon encode / memcpy (both one core).
    pub encode_vs_memcpy: f64,
    /// Whether 10+4 encode reached the 2 GB/s target on one core.
    pub encode_target_met: bool,
}

fn pattern(len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9u32;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
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

/// The codec part of `ios bench huds`, `budget` per measurement.
pub fn run(budget: Duration) -> Result<HudsBenchReport> {
    let limits: HardwareLimits = crate::bench::hardware_limits(budget * 4);
    let gib = (1u64 << 30) as f64 / 1e9;
    let mut codecs = Vec::new();
    for coding in [Coding::DEVNET, Coding::NETWORK] {
        codecs.push(measure(coding, budget)?);
    }
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
    })
}
