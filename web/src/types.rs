//! The JSON shapes of the REST API, shared by the server and the typed
//! client. Amounts are strings of base units (1 IOST = 10^8), so that no
//! JSON reader loses precision; addresses are bech32 (`ios1...`); hashes
//! and byte strings are lowercase hex.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every error: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable (`not_found`, `bad_request`, `bad_nonce`, ...).
    pub code: String,
    pub message: String,
}

/// The network as this node sees it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ChainStatus {
    pub chain_id: String,
    /// Account shards (the beacon, shard 0, comes on top).
    pub shards: u16,
    /// The newest epoch this node's beacon light client knows.
    pub epoch: u64,
    pub peer_id: String,
    pub peers: usize,
    /// Transactions in blocks this node finalized since it started (all shards).
    pub finalized_txs: u64,
    /// Fast syncs this node completed since it started.
    pub fast_syncs: u64,
    /// Shards this node is fast-syncing now.
    pub syncing: Vec<u16>,
    /// The shards this node runs.
    pub shard_status: Vec<ShardStatus>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ShardStatus {
    pub shard: u16,
    /// Last finalized height.
    pub height: u64,
    /// Hash of the last finalized block.
    pub head: String,
    pub state_root: String,
    /// The committee epoch this shard is in.
    pub epoch: u64,
    /// The committee's members (bech32).
    pub committee: Vec<String>,
    /// Transactions waiting in this node's pool for the shard.
    pub mempool: usize,
    /// Unix milliseconds of the last finalized block.
    pub time_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AccountView {
    pub address: String,
    /// The shard that holds the account.
    pub shard: u16,
    /// Spendable IOST, base units.
    pub balance: String,
    /// Non-transferable contribution credit.
    pub servi: u64,
    /// Next nonce the chain expects (committed).
    pub nonce: u64,
    /// Nonce for a new transaction: after the committed one and any pooled here.
    pub next_nonce: u64,
    /// Bonded IOST, base units.
    pub stake: String,
    pub unbonding: String,
    /// Reputation, parts per million.
    pub reputation: u32,
    pub jailed: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BlockView {
    pub shard: u16,
    pub height: u64,
    pub hash: String,
    pub prev: String,
    pub epoch: u64,
    pub round: u32,
    pub proposer: String,
    pub time_ms: u64,
    pub state_root: String,
    /// Commit certificate signers.
    pub signers: usize,
    pub txs: Vec<BlockTx>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BlockTx {
    pub id: String,
    pub sender: String,
    /// `transfer`, `stake`, `atomix_lock`, ...
    pub kind: String,
    /// `success` or the failure code.
    pub status: String,
}

/// What a transaction does.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CallRequest {
    /// Sends IOST (or, refused by the chain, Servi) to `to`.
    Transfer {
        to: String,
        /// Base units.
        amount: String,
        /// `iost` (default).
        #[serde(default)]
        token: Option<String>,
    },
    /// Bonds IOST (validators; on the beacon).
    Stake { amount: String },
    /// Starts unbonding IOST.
    Unstake { amount: String },
}

/// Ask the node to build a transaction's canonical bytes.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BuildTxRequest {
    pub sender: String,
    /// Default: the sender's next nonce as this node sees it.
    #[serde(default)]
    pub nonce: Option<u64>,
    /// Base units; default: the minimum for the transaction's size.
    #[serde(default)]
    pub fee: Option<String>,
    /// Blocks the transaction stays valid for (default 600).
    #[serde(default)]
    pub expires_in: Option<u64>,
    pub call: CallRequest,
}

/// A transaction ready to sign: sign `signing_hash` (32 bytes, ed25519)
/// and submit `tx` with the signature.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BuiltTx {
    /// Hex of the canonical (borsh) transaction.
    pub tx: String,
    /// Hex of the digest to sign; also the transaction's id.
    pub signing_hash: String,
    /// The shard it will execute on.
    pub shard: u16,
    pub nonce: u64,
    pub fee: String,
    /// What it does, in words, to show before signing.
    pub summary: String,
    /// For a transfer to another shard (an Atomix lock): the cross-shard
    /// transfer's id, to follow at `/api/v1/atomix/{id}`.
    pub atomix: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SubmitTxRequest {
    /// Hex of the canonical transaction (as built).
    pub tx: String,
    /// Hex of the 64-byte ed25519 signature of its signing hash.
    pub signature: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SubmittedTx {
    pub id: String,
    pub shard: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TxState {
    /// Waiting in the pool of the node asked.
    Pending,
    /// In a finalized block, executed successfully.
    Finalized,
    /// In a finalized block; the call failed (fee and nonce still count).
    Failed,
    /// Neither pooled here nor in a finalized block this node knows.
    Unknown,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TxStatus {
    pub id: String,
    pub state: TxState,
    pub shard: Option<u16>,
    pub height: Option<u64>,
    pub index: Option<u32>,
    /// For a failed call: its code and message.
    pub error: Option<ErrorDetail>,
    /// Events the transaction emitted (`kind` only).
    pub events: Vec<String>,
}

/// A cross-shard transfer, as the node's relayer follows it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AtomixView {
    pub id: String,
    /// `locking`, `committed`, `rejected`, `done` (paid, locks released)
    /// or `refunded`.
    pub state: String,
    pub detail: String,
    /// `done` or `refunded`.
    pub terminal: bool,
    pub input_shards: Vec<u16>,
    pub output_shard: u16,
    pub to: String,
    /// Base units.
    pub amount: String,
    /// Output-shard height after which it may be aborted.
    pub expires_at: u64,
}
