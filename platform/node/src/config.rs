//! `node.toml`: what `ios node --config` reads and `ios init` writes.

use crate::node::{NodeConfig, Role};
use anyhow::{Context, Result};
use ios_chain::params::Genesis;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file as written; relative paths are relative to the file's directory.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    #[serde(default = "default_name")]
    pub name: String,
    #[serde(default = "default_role")]
    pub role: Role,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default)]
    pub bootstrap: Vec<String>,
    #[serde(default = "default_genesis")]
    pub genesis: PathBuf,
    /// Where the REST API listens; empty for none.
    #[serde(default)]
    pub api: String,
    /// Requests per second one API client (address) may make on average,
    /// and at once after being idle; loopback clients are not limited.
    #[serde(default = "default_api_rate")]
    pub api_rate_per_sec: u32,
    #[serde(default = "default_api_burst")]
    pub api_burst: u32,
    /// The validator key's name in the keystore.
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub keystore: Option<PathBuf>,
    /// Serve as a HUDS storage provider.
    #[serde(default)]
    pub provider: Option<crate::huds::ProviderConfig>,
    /// How often an idle shard this node proposes for makes an empty block
    /// (ms); every member of a committee should use the same value.
    #[serde(default = "default_idle_block_ms")]
    pub idle_block_ms: u64,
}

fn default_idle_block_ms() -> u64 {
    crate::devnet::IDLE_BLOCK_MS
}

fn default_api_rate() -> u32 {
    50
}

fn default_api_burst() -> u32 {
    100
}

fn default_name() -> String {
    "node".into()
}
fn default_role() -> Role {
    Role::Full
}
fn default_data_dir() -> PathBuf {
    "ios-data".into()
}
fn default_listen() -> String {
    "/ip4/0.0.0.0/tcp/7700".into()
}
fn default_genesis() -> PathBuf {
    "genesis.bin".into()
}

/// What `ios init` writes: every setting, commented.
pub const DEFAULT_CONFIG: &str = r#"# IOS node configuration, read by `ios node --config FILE`.
# Relative paths are relative to this file's directory.

# A short name for logs.
name = "node"

# "validator": serve the shard committees this node's key sits on (the key
# must be bonded on the beacon). "full": follow every shard without voting
# (a gateway serving the API needs all of them).
role = "full"

# Where this node keeps its data: one sled store per shard, its epoch
# changes, its network key. Only one node may use a directory at a time.
data_dir = "ios-data"

# The libp2p address to listen on (TCP; noise + yamux on top).
listen = "/ip4/0.0.0.0/tcp/7700"

# Peers to start from, as multiaddrs with /p2p/<peer id>; kademlia finds
# the rest. Example: ["/ip4/10.0.0.5/tcp/7700/p2p/12D3KooW..."]
bootstrap = []

# The network's genesis (genesis.bin, as `ios devnet` writes it into its
# data directory). Every node of a network must use the same file.
genesis = "genesis.bin"

# Where to serve the REST API (and /api/openapi.json); "" for no API.
api = ""

# Requests per second one API client (IP address) may make on average, and
# at once after being idle (over it: 429 rate_limited with Retry-After).
# Clients on this machine (loopback) are not limited.
api_rate_per_sec = 50
api_burst = 100

# How often an idle shard makes an empty block, in milliseconds (a block
# with transactions comes 200 ms after the previous one). Every validator
# of a network should use the same value: the others wait this long for an
# idle proposer before they move on.
idle_block_ms = 1000

# For validators: the name of the key in the keystore (`ios key new NAME`).
# Its password comes from IOS_PASSWORD or is asked at start.
# key = "validator"

# The keystore directory (default: $IOS_HOME/keys or ~/.ios/keys).
# keystore = "/home/me/.ios/keys"

# Serve as a HUDS storage provider: keep erasure-coded fragments, answer
# audits, earn IOST and Servi. The provider has one account per account
# shard, derived from this node's key (the node logs them when it starts;
# `ios provider status` lists registered ones); fund each with at least
# `stake` before it can register there.
# [provider]
# capacity = 8589934592          # bytes of fragments kept at most (8 GiB)
# price_per_gib_epoch = 1000000  # base units (0.01 IOST) per GiB per epoch
# stake = 100000000000           # base units (1,000 IOST) held on each shard
"#;

impl NodeFile {
    pub fn load(path: &Path) -> Result<NodeFile> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        NodeFile::parse(&text)
            .with_context(|| format!("{} is not a valid node config", path.display()))
    }

    /// A config from its TOML text.
    pub fn parse(text: &str) -> Result<NodeFile> {
        Ok(toml::from_str(text)?)
    }

    /// Resolves relative paths against `base` (the config file's directory).
    pub fn resolve(&mut self, base: &Path) {
        for p in [&mut self.data_dir, &mut self.genesis] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let Some(k) = &mut self.keystore {
            if k.is_relative() {
                *k = base.join(&*k);
            }
        }
    }

    /// The node configuration, with `key` the opened validator key.
    pub fn node_config(&self, key: Option<ios_chain::crypto::Keypair>) -> Result<NodeConfig> {
        let bytes = std::fs::read(&self.genesis)
            .with_context(|| format!("reading the genesis {}", self.genesis.display()))?;
        let genesis: Genesis = ios_chain::codec::decode("genesis", &bytes, 16 << 20)
            .with_context(|| format!("{} is not a genesis file", self.genesis.display()))?;
        anyhow::ensure!(
            self.role == Role::Full || key.is_some(),
            "a validator needs its key: set `key` in the config"
        );
        Ok(NodeConfig {
            name: self.name.clone(),
            role: self.role,
            data_dir: self.data_dir.clone(),
            listen: self
                .listen
                .parse()
                .with_context(|| format!("listen address {:?}", self.listen))?,
            bootstrap: self
                .bootstrap
                .iter()
                .map(|b| {
                    b.parse()
                        .with_context(|| format!("bootstrap address {b:?}"))
                })
                .collect::<Result<_>>()?,
            genesis,
            key,
            replica: crate::devnet::replica_config(self.idle_block_ms),
            provider: self.provider.clone(),
        })
    }
}

/// What a running node writes into its data directory so scripts and
/// `ios devnet --processes` can find it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    pub peer_id: String,
    pub addrs: Vec<String>,
    /// `http://host:port` of its API, if it serves one.
    pub api: Option<String>,
    pub pid: u32,
}

pub const NODE_INFO_FILE: &str = "node.json";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_parses_to_the_defaults() {
        let f: NodeFile = toml::from_str(DEFAULT_CONFIG).unwrap();
        assert_eq!(f.role, Role::Full);
        assert_eq!(f.listen, default_listen());
        assert!(f.bootstrap.is_empty() && f.key.is_none() && f.api.is_empty());
    }

    #[test]
    fn unknown_settings_and_bad_values_are_errors() {
        let err = toml::from_str::<NodeFile>("rol = \"full\"").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let err = toml::from_str::<NodeFile>("role = \"king\"").unwrap_err();
        assert!(err.to_string().contains("unknown variant"), "{err}");
    }
}
