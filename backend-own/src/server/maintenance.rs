//! Background workers per namespace: the scrubber walks every block at a
//! bounded rate, the garbage collector runs on a timer (for a cell's
//! namespaces too), and compaction runs on a timer and after every sweep
//! of a collector (this server's or a device's; a cell compacts by itself).

use std::sync::Arc;
use std::time::Duration;

use crate::storage::Store;

use super::Server;
use super::config::Maintenance;

/// Starts the workers for every served store.
pub fn spawn(server: &Arc<Server>, settings: &Maintenance) {
    for (name, backend) in server.stores() {
        spawn_store(server, &name, &backend, settings);
    }
    // A cell's namespaces are collected by its front ends (each takes the
    // namespace's lease in turn) and compacted by the cell itself.
    if settings.collect_every_secs > 0 {
        for (name, backend) in server.cell_namespaces() {
            tokio::spawn(collect(name, backend, settings.clone()));
        }
    }
}

/// Starts the workers of one store on this machine's disk (a configured
/// namespace at start, an account's home when first used).
pub fn spawn_store(
    server: &Arc<Server>,
    name: &str,
    backend: &crate::embedded::EmbeddedBackend,
    settings: &Maintenance,
) {
    let store = backend.store().clone();
    if settings.scrub_bytes_per_sec > 0 {
        tokio::spawn(scrub(
            server.clone(),
            name.to_owned(),
            store.clone(),
            settings.clone(),
        ));
    }
    if settings.compact_every_secs > 0 {
        tokio::spawn(compact(name.to_owned(), store, settings.clone()));
    }
    if settings.collect_every_secs > 0 {
        let backend: Arc<dyn pouch_backend::Backend> = Arc::new(backend.clone());
        tokio::spawn(collect(name.to_owned(), backend, settings.clone()));
    }
}

async fn scrub(server: Arc<Server>, namespace: String, store: Arc<Store>, settings: Maintenance) {
    let tick = Duration::from_millis(settings.scrub_tick_ms.max(1));
    let budget = (settings.scrub_bytes_per_sec as u128 * tick.as_millis() / 1000).max(1) as u64;
    let mut cursor = None;
    loop {
        let store = store.clone();
        let step = tokio::task::spawn_blocking(move || store.scrub_step(cursor, budget)).await;
        match step {
            Ok(Ok(step)) => {
                server
                    .metrics
                    .scrubbed(step.bytes, step.corrupt.len() as u64);
                if step.next.is_none() {
                    tracing::debug!(%namespace, "scrub pass complete");
                }
                cursor = step.next;
            }
            Ok(Err(e)) => tracing::warn!(%namespace, "scrub step failed: {e}"),
            Err(e) => tracing::error!(%namespace, "scrub worker failed: {e}"),
        }
        tokio::time::sleep(tick).await;
    }
}

async fn collect(
    namespace: String,
    backend: Arc<dyn pouch_backend::Backend>,
    settings: Maintenance,
) {
    let every = Duration::from_secs(settings.collect_every_secs);
    let mut options =
        pouch_journal::gc::GcOptions::new(format!("pouch-store (pid {})", std::process::id()));
    options.grace = Duration::from_secs(settings.collect_grace_secs);
    loop {
        tokio::time::sleep(every).await;
        options.now = pouch_backend::gc::now_ms() / 1000;
        match pouch_journal::gc::collect(&*backend, &options, &pouch_journal::gc::Quiet).await {
            Ok(report) => tracing::info!(
                %namespace,
                deleted = report.blocks_deleted,
                bytes = report.bytes_deleted,
                waiting = report.blocks_waiting,
                "collected garbage"
            ),
            // Another collector (a device's) holds the lease: its turn.
            Err(pouch_journal::Error::Backend(pouch_backend::Error::Fenced(why))) => {
                tracing::debug!(%namespace, "collection skipped: {why}");
            }
            Err(e) => tracing::warn!(%namespace, "garbage collection failed: {e}"),
        }
    }
}

async fn compact(namespace: String, store: Arc<Store>, settings: Maintenance) {
    let every = Duration::from_secs(settings.compact_every_secs);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = store.swept() => {}
        }
        let store = store.clone();
        let threshold = settings.compact_threshold;
        match tokio::task::spawn_blocking(move || store.compact(threshold)).await {
            Ok(Ok(report)) if report.volumes > 0 => {
                tracing::info!(%namespace, volumes = report.volumes, bytes = report.bytes_reclaimed, "compacted");
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(%namespace, "compaction failed: {e}"),
            Err(e) => tracing::error!(%namespace, "compaction worker failed: {e}"),
        }
    }
}
