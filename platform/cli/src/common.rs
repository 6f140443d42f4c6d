//! What the network commands share: the node to talk to, passwords, a
//! progress line for waits, JSON or text output.

use anyhow::{bail, Context, Result};
use clap::Args;
use ios_node::keystore::Keystore;
use ios_web::client::Client;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct NodeOpt {
    /// The node's API (a gateway).
    #[arg(long, env = "IOS_NODE", default_value = ios_web::DEFAULT_NODE_URL, global = true)]
    pub node: String,
}

impl NodeOpt {
    pub fn client(&self) -> Client {
        Client::new(&self.node)
    }
}

#[derive(Args, Debug, Clone)]
pub struct KeystoreOpt {
    /// Where keys are kept (default: $IOS_HOME/keys or ~/.ios/keys).
    #[arg(long, env = "IOS_KEYSTORE", global = true)]
    pub keystore: Option<PathBuf>,
}

impl KeystoreOpt {
    pub fn open(&self) -> Keystore {
        Keystore::new(self.keystore.clone().unwrap_or_else(Keystore::default_dir))
    }
}

/// The password from `IOS_PASSWORD`, else asked at the terminal (twice
/// when `confirm`). Never echoed, never logged.
pub fn password(prompt: &str, confirm: bool) -> Result<String> {
    if let Ok(p) = std::env::var("IOS_PASSWORD") {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        bail!("a password is needed: set IOS_PASSWORD or run in a terminal");
    }
    let p = rpassword::prompt_password(prompt).context("reading the password")?;
    if confirm {
        let again =
            rpassword::prompt_password("repeat the password: ").context("reading the password")?;
        if again != p {
            bail!("the passwords differ");
        }
    }
    Ok(p)
}

/// Prints `value` as JSON.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A one-line progress indicator on stderr for waits: redrawn in place on
/// a terminal, a line per change otherwise (logs stay readable).
pub struct Progress {
    started: Instant,
    tty: bool,
    last: String,
    frame: usize,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            started: Instant::now(),
            tty: std::io::stderr().is_terminal(),
            last: String::new(),
            frame: 0,
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn update(&mut self, state: &str) {
        const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
        let secs = self.started.elapsed().as_secs_f64();
        let mut err = std::io::stderr();
        if self.tty {
            self.frame += 1;
            let _ = write!(
                err,
                "\r\x1b[2K{} {state} ({secs:.1} s)",
                FRAMES[self.frame % 4]
            );
            let _ = err.flush();
        } else if state != self.last {
            let _ = writeln!(err, "{state} ({secs:.1} s)");
        }
        self.last = state.to_string();
    }

    pub fn finish(&mut self) {
        if self.tty {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}

/// A writer that also hashes what it writes (a download's ContentId is
/// checked over the bytes as they go to the file).
pub struct Hashed<'a, W: Write> {
    pub out: &'a mut W,
    pub hasher: &'a mut blake3::Hasher,
}

impl<W: Write> Write for Hashed<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// A file written front to back and synced at the end, whose writeback
/// runs behind the writes: every [`WriteBehind::EVERY`] bytes a helper
/// thread syncs what is written so far, so the disk works while the data
/// still arrives and the final sync waits only for the tail. (A download
/// synced only at its end spent ~15% of its time in that one sync, the
/// CPU idle.)
pub struct WriteBehind {
    file: std::fs::File,
    since: u64,
    kick: Option<std::sync::mpsc::SyncSender<()>>,
    helper: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl WriteBehind {
    pub const EVERY: u64 = 64 << 20;

    pub fn new(file: std::fs::File) -> std::io::Result<WriteBehind> {
        let behind = file.try_clone()?;
        let (kick, kicked) = std::sync::mpsc::sync_channel::<()>(1);
        let helper = std::thread::Builder::new()
            .name("write-behind".into())
            .spawn(move || {
                while kicked.recv().is_ok() {
                    behind.sync_data()?;
                }
                Ok(())
            })?;
        Ok(WriteBehind {
            file,
            since: 0,
            kick: Some(kick),
            helper: Some(helper),
        })
    }

    /// Syncs the rest; returns once all of the file is on disk.
    pub fn finish(mut self) -> std::io::Result<()> {
        self.stop()?;
        self.file.sync_all()
    }

    fn stop(&mut self) -> std::io::Result<()> {
        self.kick = None;
        match self.helper.take().map(|h| h.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(std::io::Error::other("the write-behind thread panicked")),
            None => Ok(()),
        }
    }
}

impl Write for WriteBehind {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.since += n as u64;
        if self.since >= Self::EVERY {
            self.since = 0;
            // Busy with the last one: this stretch goes with the next.
            if let Some(k) = &self.kick {
                let _ = k.try_send(());
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Drop for WriteBehind {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
