//! The end-to-end part of `ios bench huds`: one object put and got through
//! a local devnet's gateway API (6 providers, 4+2), against a plain copy of
//! the same file on the same disk, measured in the same run.

use anyhow::{ensure, Context, Result};
use ios_node::devnet::{user_keys, Devnet, DevnetConfig};
use ios_web::client::Client;
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Serialize)]
pub struct DevnetRate {
    pub object_mib: u64,
    pub providers: usize,
    /// `std::fs::copy` of the object's file, synced, the best of three
    /// (MB = 1e6 bytes).
    pub file_copy_mb_per_sec: f64,
    /// Upload, deal final, every fragment on its provider and receipted.
    pub put_mb_per_sec: f64,
    /// Download of the whole object into a file, synced, content id checked.
    pub get_mb_per_sec: f64,
    pub get_vs_copy: f64,
    /// Whether get reached 25% of the file copy rate.
    pub get_target_met: bool,
}

fn wait<T>(what: &str, secs: u64, mut f: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        ensure!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn mb_per_sec(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9)
}

/// Puts and gets an object of `mib` MiB through a devnet in `dir`.
pub fn devnet_put_get(mib: u64, dir: &Path, progress: impl Fn(String)) -> Result<DevnetRate> {
    let bytes = mib << 20;
    let file = dir.join("object.bin");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file)?);
        let mut xof = blake3::Hasher::new()
            .update(b"ios bench huds")
            .finalize_xof();
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..mib {
            xof.fill(&mut buf);
            f.write_all(&buf)?;
        }
        f.into_inner()?.sync_all()?;
    }
    // The machine's limit for this: the best of three synced copies (a
    // single copy's rate varies with what the disk is still flushing).
    progress(format!("file copy of {mib} MiB, 3 times"));
    let copy = dir.join("copy.bin");
    let mut copy_rate = 0f64;
    for _ in 0..3 {
        let t = Instant::now();
        std::fs::copy(&file, &copy)?;
        std::fs::File::open(&copy)?.sync_all()?;
        copy_rate = copy_rate.max(mb_per_sec(bytes, t.elapsed()));
        std::fs::remove_file(&copy)?;
    }

    let cfg = DevnetConfig {
        shards: 2,
        committee: 4,
        data_dir: dir.join("devnet"),
        load_tps: 0,
        users: 1,
        duration: None,
        epoch_length: 1_000,
        providers: 6,
        // As `ios devnet` runs: one empty block a second while idle.
        idle_block_ms: ios_node::devnet::IDLE_BLOCK_MS,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (net, api) = rt.block_on(async {
        let net = Devnet::start(&cfg).await?;
        let api = ios_web::serve(net.gateway.clone(), "127.0.0.1:0".parse()?).await?;
        anyhow::Ok((net, api))
    })?;
    let url = format!("http://{}", api.addr);
    let result = (|| {
        let c = Client::new(&url);
        progress("devnet: waiting for 6 providers on each shard".into());
        wait("the providers to register", 120, || {
            Ok((c.providers().map(|p| p.len()).unwrap_or(0) == 12).then_some(()))
        })?;
        progress(format!("devnet put of {mib} MiB"));
        let owner = user_keys(1).remove(0);
        let t = Instant::now();
        let stored = ios_web::client::put_signed(
            &c,
            &owner,
            std::fs::File::open(&file)?,
            (4, 2),
            10,
            Default::default(),
            Duration::from_secs(900),
        )?;
        let put = t.elapsed();
        progress(format!("devnet get of {mib} MiB"));
        let back = dir.join("back.bin");
        let t = Instant::now();
        let mut out = crate::common::WriteBehind::new(std::fs::File::create(&back)?)?;
        let mut hasher = blake3::Hasher::new();
        let n = c.download(
            &stored.content,
            None,
            &mut crate::common::Hashed {
                out: &mut out,
                hasher: &mut hasher,
            },
            |_| {},
        )?;
        out.finish()?;
        let get = t.elapsed();
        ensure!(n == bytes, "got {n} of {bytes} bytes");
        ensure!(
            hasher.finalize().to_hex().as_str() == stored.content,
            "the object read back differs"
        );
        let get_rate = mb_per_sec(bytes, get);
        Ok(DevnetRate {
            object_mib: mib,
            providers: 6,
            file_copy_mb_per_sec: copy_rate,
            put_mb_per_sec: mb_per_sec(bytes, put),
            get_mb_per_sec: get_rate,
            get_vs_copy: get_rate / copy_rate,
            get_target_met: get_rate >= 0.25 * copy_rate,
        })
    })();
    rt.block_on(async {
        api.stop().await;
        let _ = net.stop().await;
    });
    result
}
