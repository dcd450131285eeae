//! `/metrics` in Prometheus text format: request counters (and a cell
//! front end's repair and verifier findings), plus each namespace's store
//! figures and the cell's redundancy (read at scrape time) for a caller
//! with the metrics token.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use super::Server;

/// Counters of served requests.
#[derive(Debug, Default)]
pub struct Metrics {
    unauthorized: AtomicU64,
    blocks_put: AtomicU64,
    block_gets: AtomicU64,
    corrupt_reads: AtomicU64,
    appends: AtomicU64,
    scrubbed_bytes: AtomicU64,
    scrub_corrupt: AtomicU64,
}

impl Metrics {
    pub(super) fn unauthorized(&self) {
        self.unauthorized.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn blocks_put(&self, n: usize) {
        self.blocks_put.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub(super) fn block_get(&self) {
        self.block_gets.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn corrupt_read(&self) {
        self.corrupt_reads.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn scrubbed(&self, bytes: u64, corrupt: u64) {
        self.scrubbed_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.scrub_corrupt.fetch_add(corrupt, Ordering::Relaxed);
    }
    pub(super) fn appended(&self) {
        self.appends.fetch_add(1, Ordering::Relaxed);
    }
}

/// Per-namespace figures name the namespaces, so they are shown only to a
/// caller with the metrics token.
pub(super) async fn serve(
    State(server): State<Arc<Server>>,
    headers: HeaderMap,
) -> Result<String, StatusCode> {
    let m = &server.metrics;
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP pouch_store_{name} {help}\n# TYPE pouch_store_{name} counter"
        );
        let _ = writeln!(out, "pouch_store_{name} {value}");
    };
    counter(
        "unauthorized_total",
        "Requests refused for a missing or wrong token.",
        m.unauthorized.load(Ordering::Relaxed),
    );
    counter(
        "blocks_received_total",
        "Blocks received in put requests.",
        m.blocks_put.load(Ordering::Relaxed),
    );
    counter(
        "block_gets_total",
        "Block get requests.",
        m.block_gets.load(Ordering::Relaxed),
    );
    counter(
        "corrupt_reads_total",
        "Gets refused because the stored block is corrupt.",
        m.corrupt_reads.load(Ordering::Relaxed),
    );
    counter(
        "scrubbed_bytes_total",
        "Payload bytes re-read and re-hashed by the scrubber.",
        m.scrubbed_bytes.load(Ordering::Relaxed),
    );
    counter(
        "scrub_corrupt_total",
        "Corrupt blocks found by the scrubber.",
        m.scrub_corrupt.load(Ordering::Relaxed),
    );
    counter(
        "journal_appends_total",
        "Journal entries appended.",
        m.appends.load(Ordering::Relaxed),
    );

    if let Some(cell) = &server.cell {
        for (name, help, value) in cell.findings().counters() {
            counter(&format!("cell_{name}"), help, value);
        }
    }

    if !server.may_see_namespaces(&headers) {
        return Ok(out);
    }
    if let Some(cell) = &server.cell {
        // Read from the database at scrape time: only for the holder of
        // the metrics token (it costs a look at every volume).
        let status = cell
            .status()
            .await
            .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
        let up = status.nodes.iter().filter(|n| n.up).count() as u64;
        for (name, help, value) in [
            (
                "cell_nodes_up",
                "Storage nodes with a recent heartbeat.",
                up,
            ),
            (
                "cell_nodes_down",
                "Storage nodes silent past the timeout.",
                status.nodes.len() as u64 - up,
            ),
            (
                "cell_blocks_redundant",
                "Blocks with every copy (or shard) on a live node.",
                status.blocks_redundant,
            ),
            (
                "cell_blocks_degraded",
                "Blocks with some copies on dead nodes.",
                status.blocks_degraded,
            ),
            (
                "cell_blocks_lost",
                "Blocks with no copy on a live node.",
                status.blocks_lost,
            ),
            (
                "cell_volumes_to_repair",
                "Volumes with a copy or shard on a dead or draining node.",
                status.volumes_to_repair,
            ),
            (
                "cell_volumes_coded",
                "Volumes erasure-coded into shards.",
                status.volumes_coded,
            ),
            (
                "cell_logical_bytes",
                "Bytes of the cell's volumes as written.",
                status.logical_bytes,
            ),
            (
                "cell_stored_bytes",
                "Bytes the nodes hold for them: every replica and shard.",
                status.stored_bytes,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP pouch_store_{name} {help}\n# TYPE pouch_store_{name} gauge\npouch_store_{name} {value}"
            );
        }
    }
    let gauges = [
        ("blocks", "Blocks stored."),
        ("payload_bytes", "Payload bytes of the stored blocks."),
        ("volumes", "Volume files."),
        (
            "garbage_bytes",
            "Bytes of dead records awaiting compaction.",
        ),
        ("journal_head", "The journal's last entry."),
    ];
    for (name, help) in gauges {
        let _ = writeln!(
            out,
            "# HELP pouch_store_{name} {help}\n# TYPE pouch_store_{name} gauge"
        );
    }
    for (ns, backend) in server.stores() {
        let store = backend.store().clone();
        let stats = tokio::task::spawn_blocking(move || store.stats())
            .await
            .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?
            .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
        for (name, value) in [
            ("blocks", stats.blocks),
            ("payload_bytes", stats.payload_bytes),
            ("volumes", stats.volumes),
            ("garbage_bytes", stats.garbage_bytes),
            ("journal_head", stats.journal_head.0),
        ] {
            let _ = writeln!(out, "pouch_store_{name}{{namespace=\"{ns}\"}} {value}");
        }
    }
    Ok(out)
}
