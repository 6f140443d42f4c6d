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
