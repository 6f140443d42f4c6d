//! `/metrics`: the node's counters in the Prometheus text format (0.0.4).

use ios_node::node::{View, FINALITY_BUCKETS_MS};
use std::fmt::Write;
use std::sync::atomic::Ordering;

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders what a node knows of itself.
pub fn render(v: &View<'_>) -> String {
    let m = v.metrics;
    let mut out = String::new();
    let counter = |out: &mut String, name: &str, help: &str, value: u64| {
        family(out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    };
    family(
        &mut out,
        "ios_shard_height",
        "gauge",
        "Last finalized height of each shard this node runs.",
    );
    for (s, r) in v.replicas {
        let h = r.store().head().map_or(0, |h| h.height);
        let _ = writeln!(out, "ios_shard_height{{shard=\"{s}\"}} {h}");
    }
    family(
        &mut out,
        "ios_shard_epoch",
        "gauge",
        "Committee epoch of each shard this node runs.",
    );
    for (s, r) in v.replicas {
        let _ = writeln!(
            out,
            "ios_shard_epoch{{shard=\"{s}\"}} {}",
            r.committee().epoch
        );
    }
    family(
        &mut out,
        "ios_mempool_transactions",
        "gauge",
        "Transactions waiting in this node's pool, per shard.",
    );
    for (s, r) in v.replicas {
        let _ = writeln!(
            out,
            "ios_mempool_transactions{{shard=\"{s}\"}} {}",
            r.mempool_len()
        );
    }
    family(
        &mut out,
        "ios_beacon_epoch",
        "gauge",
        "Newest epoch this node's beacon light client knows.",
    );
    let _ = writeln!(out, "ios_beacon_epoch {}", v.epochs.latest());
    family(&mut out, "ios_peers", "gauge", "Connected peers.");
    let _ = writeln!(out, "ios_peers {}", v.peers);
    family(
        &mut out,
        "ios_shards_syncing",
        "gauge",
        "Shards this node is fast-syncing.",
    );
    let _ = writeln!(out, "ios_shards_syncing {}", v.syncing.len());

    family(
        &mut out,
        "ios_finality_latency_seconds",
        "histogram",
        "Time from a block's timestamp to its local commit.",
    );
    let mut cumulative = 0;
    for (i, b) in FINALITY_BUCKETS_MS.iter().enumerate() {
        cumulative += m.finality_buckets[i].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "ios_finality_latency_seconds_bucket{{le=\"{}\"}} {cumulative}",
            *b as f64 / 1000.0
        );
    }
    cumulative += m.finality_buckets[FINALITY_BUCKETS_MS.len()].load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "ios_finality_latency_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
    );
    let _ = writeln!(
        out,
        "ios_finality_latency_seconds_sum {}",
        m.finality_sum_ms.load(Ordering::Relaxed) as f64 / 1000.0
    );
    let _ = writeln!(out, "ios_finality_latency_seconds_count {cumulative}");

    let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    counter(
        &mut out,
        "ios_finalized_blocks_total",
        "Blocks this node finalized (all shards).",
        l(&m.finalized_blocks),
    );
    family(
        &mut out,
        "ios_node_busy_seconds_total",
        "counter",
        "Time the node's event loop spent handling events (1 per second: saturated).",
    );
    let _ = writeln!(
        out,
        "ios_node_busy_seconds_total {}",
        l(&m.busy_us) as f64 / 1e6
    );
    counter(
        &mut out,
        "ios_finalized_transactions_total",
        "Transactions in blocks this node finalized.",
        l(&m.finalized_txs),
    );
    counter(
        &mut out,
        "ios_gossip_received_bytes_total",
        "Gossip payload bytes received.",
        l(&m.gossip_in_bytes),
    );
    counter(
        &mut out,
        "ios_gossip_sent_bytes_total",
        "Gossip payload bytes published.",
        l(&m.gossip_out_bytes),
    );
    counter(
        &mut out,
        "ios_rpc_received_total",
        "Request-response requests received.",
        l(&m.rpc_in),
    );
    counter(
        &mut out,
        "ios_rpc_sent_total",
        "Request-response requests sent.",
        l(&m.rpc_out),
    );
    counter(
        &mut out,
        "ios_peer_faults_total",
        "Inputs that proved their sender faulty.",
        l(&m.faults),
    );
    counter(&mut out, "ios_peer_bans_total", "Peers banned.", l(&m.bans));
    counter(
        &mut out,
        "ios_fast_syncs_total",
        "Fast syncs completed.",
        l(&m.fast_syncs),
    );
    counter(
        &mut out,
        "ios_relays_sent_total",
        "Epoch-change relay transactions submitted.",
        l(&m.relays_sent),
    );
    out
}
