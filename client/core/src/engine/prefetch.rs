//! Prefetch: the blocks of every file an apply will download, asked for in
//! one batched read ([`Backend::get_blocks`]) in the order the files are
//! written, so that a new device's thousands of small files cost a few
//! requests rather than one each, and the network runs while the disk is
//! written. A task drives the read into a bounded channel, so memory stays
//! bounded (a few dozen blocks ahead) whatever the download's size.
//!
//! The plan is a list of (operation, block) pairs. Writing operation `k`
//! takes its blocks from the front of the list; the blocks of operations
//! skipped or failed before it are read and dropped. A block the list does
//! not have where expected is fetched on its own, so the prefetch only
//! ever saves requests, it never decides what is written.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use pouch_backend::{Backend, BlockId, Result};
use tokio::sync::mpsc;

/// Blocks read ahead of the one being written.
const AHEAD: usize = 32;

/// A batched read running ahead of the downloads that use it.
pub(super) struct Prefetch {
    rx: mpsc::Receiver<Result<Bytes>>,
    planned: VecDeque<(usize, BlockId)>,
    current: usize,
    task: tokio::task::JoinHandle<()>,
}

impl Prefetch {
    /// Starts reading `planned`'s blocks from `backend`.
    pub(super) fn start(backend: Arc<dyn Backend>, planned: Vec<(usize, BlockId)>) -> Self {
        let (tx, rx) = mpsc::channel(AHEAD);
        let ids: Vec<BlockId> = planned.iter().map(|(_, id)| *id).collect();
        let task = tokio::spawn(async move {
            let mut blocks = backend.get_blocks(ids);
            while let Some(item) = blocks.next().await {
                if tx.send(item).await.is_err() {
                    return; // the apply is over
                }
            }
        });
        Self {
            rx,
            planned: planned.into(),
            current: 0,
            task,
        }
    }

    /// Operation `op` is written next.
    pub(super) fn begin(&mut self, op: usize) {
        self.current = op;
    }

    /// Block `id` of the operation being written, if it is the next one
    /// read for it; `None` when the caller must fetch it itself.
    pub(super) async fn take(&mut self, id: BlockId) -> Option<Result<Bytes>> {
        while let Some(&(op, _)) = self.planned.front() {
            if op >= self.current {
                break;
            }
            self.planned.pop_front();
            let _earlier_operations_block = self.rx.recv().await?;
        }
        match self.planned.front() {
            Some(&(op, next)) if op == self.current && next == id => {
                self.planned.pop_front();
                self.rx.recv().await
            }
            _ => None,
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
