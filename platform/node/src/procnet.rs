//! A devnet of OS processes: each node is `ios node --config` in its own
//! process, with its own config, data directory and log file. Used by
//! `ios devnet --processes` and by the crash tests, which kill nodes with
//! SIGKILL and start them again on the same data.
//!
//! Validator keys go into a keystore in the devnet's directory under the
//! password [`DEVNET_PASSWORD`] (devnet keys are public test keys anyway).

use crate::config::{NodeFile, NodeInfo, NODE_INFO_FILE};
use crate::devnet::{
    load_or_create_genesis, provider_keys, validator_count, validator_keys, DevnetConfig,
};
use crate::keystore::{Keystore, KeystoreError};
use crate::node::Role;
use anyhow::{bail, Context, Result};
use ios_chain::params::Genesis;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The password of a process devnet's keystore.
pub const DEVNET_PASSWORD: &str = "ios-devnet";

pub struct ProcNode {
    pub name: String,
    pub role: Role,
    pub dir: PathBuf,
    /// Where its API should listen (`127.0.0.1:0` picks a port).
    pub api: SocketAddr,
    /// A HUDS storage provider (its key is named after it in the keystore).
    pub provider: bool,
    child: Option<Child>,
    /// What the running node reported (addresses, API URL).
    pub info: Option<NodeInfo>,
}

impl ProcNode {
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    pub fn api_url(&self) -> Option<&str> {
        self.info.as_ref().and_then(|i| i.api.as_deref())
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("node.log")
    }
}

pub struct ProcNet {
    exe: PathBuf,
    pub dir: PathBuf,
    pub genesis: Genesis,
    /// Validators first, then the gateway, then providers (and nodes
    /// added later).
    pub nodes: Vec<ProcNode>,
    idle_block_ms: u64,
}

impl ProcNet {
    /// Prepares the devnet in `cfg.data_dir` (genesis, keystore); `exe` is
    /// the `ios` binary; the gateway's API listens on `web`.
    pub fn create(exe: &Path, cfg: &DevnetConfig, web: SocketAddr) -> Result<ProcNet> {
        let genesis = load_or_create_genesis(cfg)?;
        let n = validator_count(&genesis);
        let ks = Keystore::new(cfg.data_dir.join("keys"));
        let mut nodes = Vec::new();
        let mut gateway = Some(ProcNode {
            name: "gateway".into(),
            role: Role::Full,
            dir: cfg.data_dir.join("gateway"),
            api: web,
            provider: false,
            child: None,
            info: None,
        });
        let validators = validator_keys(n)
            .into_iter()
            .enumerate()
            .map(|(i, k)| (format!("validator-{i}"), k, false));
        let providers = provider_keys(cfg.providers)
            .into_iter()
            .enumerate()
            .map(|(i, k)| (format!("provider-{i}"), k, true));
        // Providers run as validators on no committee (they follow the
        // account shards they serve, their key from the keystore), and
        // start after the gateway: the network is up before they join.
        for (name, key, provider) in validators.chain(providers) {
            match ks.add(&name, &key, DEVNET_PASSWORD) {
                Ok(_) | Err(KeystoreError::Exists(_)) => {}
                Err(e) => return Err(e).context("writing the devnet keystore"),
            }
            if let Some(g) = gateway.take_if(|_| provider) {
                nodes.push(g);
            }
            nodes.push(ProcNode {
                dir: cfg.data_dir.join(&name),
                name,
                role: Role::Validator,
                api: "127.0.0.1:0".parse()?,
                provider,
                child: None,
                info: None,
            });
        }
        nodes.extend(gateway);
        Ok(ProcNet {
            exe: exe.to_path_buf(),
            dir: cfg.data_dir.clone(),
            genesis,
            nodes,
            idle_block_ms: cfg.idle_block_ms,
        })
    }

    /// Adds a node that is not started yet (a late joiner); returns its index.
    pub fn add_full_node(&mut self, name: &str) -> Result<usize> {
        self.nodes.push(ProcNode {
            name: name.into(),
            role: Role::Full,
            dir: self.dir.join(name),
            api: "127.0.0.1:0".parse()?,
            provider: false,
            child: None,
            info: None,
        });
        Ok(self.nodes.len() - 1)
    }

    /// Starts every node that is not running, the first one alone first
    /// (the others bootstrap from it).
    pub fn start_all(&mut self) -> Result<()> {
        for i in 0..self.nodes.len() {
            if !self.nodes[i].running() {
                self.start(i)?;
            }
        }
        Ok(())
    }

    /// Starts node `i` (on its existing data, if any) and waits until it
    /// reports its addresses.
    pub fn start(&mut self, i: usize) -> Result<()> {
        let bootstrap: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.running())
            .filter_map(|n| n.info.as_ref()?.addrs.first().cloned())
            .take(3)
            .collect();
        let node = &mut self.nodes[i];
        std::fs::create_dir_all(&node.dir)?;
        let file = NodeFile {
            name: node.name.clone(),
            role: node.role,
            data_dir: ".".into(),
            listen: "/ip4/127.0.0.1/tcp/0".into(),
            bootstrap,
            genesis: "../genesis.bin".into(),
            api: node.api.to_string(),
            api_rate_per_sec: 50,
            api_burst: 100,
            key: (node.role == Role::Validator).then(|| node.name.clone()),
            keystore: Some("../keys".into()),
            provider: node.provider.then(crate::devnet::provider_config),
            idle_block_ms: self.idle_block_ms,
        };
        let config = node.dir.join("node.toml");
        std::fs::write(&config, toml::to_string_pretty(&file)?)
            .with_context(|| format!("writing {}", config.display()))?;
        let info_path = node.dir.join(NODE_INFO_FILE);
        let _ = std::fs::remove_file(&info_path);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.log_path())
            .with_context(|| format!("opening {}", node.log_path().display()))?;
        let child = Command::new(&self.exe)
            .arg("node")
            .arg("--config")
            .arg(&config)
            .env("IOS_PASSWORD", DEVNET_PASSWORD)
            .env(
                "IOS_LOG",
                std::env::var("IOS_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} ({})", node.name, self.exe.display()))?;
        node.child = Some(child);
        let started = Instant::now();
        loop {
            if let Ok(bytes) = std::fs::read(&info_path) {
                if let Ok(info) = serde_json::from_slice::<NodeInfo>(&bytes) {
                    node.info = Some(info);
                    return Ok(());
                }
            }
            if let Some(c) = node.child.as_mut() {
                if let Some(status) = c.try_wait()? {
                    node.child = None;
                    bail!(
                        "{} exited at start ({status}); its log: {}",
                        node.name,
                        node.log_path().display()
                    );
                }
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!(
                    "{} did not report its address within 30 s; its log: {}",
                    node.name,
                    node.log_path().display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: the node dies mid-step, as in a power cut.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        if let Some(mut c) = self.nodes[i].child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL if the node has not stopped within 10 s.
    pub fn stop(&mut self, i: usize) -> Result<()> {
        let Some(mut c) = self.nodes[i].child.take() else {
            return Ok(());
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if c.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        c.kill()?;
        c.wait()?;
        Ok(())
    }

    pub fn stop_all(&mut self) {
        for i in (0..self.nodes.len()).rev() {
            if let Err(e) = self.stop(i) {
                tracing::warn!("stopping {}: {e:#}", self.nodes[i].name);
            }
        }
    }

    /// The API URLs of the nodes running now.
    pub fn api_urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.running())
            .filter_map(|n| n.api_url().map(str::to_string))
            .collect()
    }

    pub fn gateway(&self) -> &ProcNode {
        self.nodes
            .iter()
            .find(|n| n.name == "gateway")
            .unwrap_or(&self.nodes[self.nodes.len() - 1])
    }
}

impl Drop for ProcNet {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
