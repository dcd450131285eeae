//! The watcher's news for the daemon's loop, bounded: while a long sync
//! runs (a new device downloading a million files) the kernel reports
//! every write, the loop reads nothing, and an unbounded queue of those
//! events grew by hundreds of MiB. Here the paths waiting are kept once
//! each, and past [`MAX_PATHS`] (by default) they become "lost": a whole scan, which the
//! loop would have chosen for that many paths anyway.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Mutex;

use tokio::sync::Notify;

use super::dirty::MAX_PATHS;

/// What the watcher tells the loop.
#[derive(Debug, PartialEq, Eq)]
pub enum FsNews {
    /// These paths changed.
    Paths(Vec<PathBuf>),
    /// Events were lost: only a whole scan is sure to see everything.
    Lost,
}

/// News from the watcher's thread, waiting for the loop.
#[derive(Debug)]
pub struct Inbox {
    waiting: Mutex<Waiting>,
    ready: Notify,
    /// Paths held at most before they count as lost.
    limit: usize,
}

impl Default for Inbox {
    fn default() -> Self {
        Self::with_limit(MAX_PATHS)
    }
}

#[derive(Debug, Default)]
struct Waiting {
    paths: HashSet<PathBuf>,
    lost: bool,
}

impl Inbox {
    /// One that holds `limit` paths before they count as lost.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            waiting: Mutex::default(),
            ready: Notify::new(),
            limit,
        }
    }

    /// `paths` changed.
    pub fn paths(&self, paths: Vec<PathBuf>) {
        {
            let mut waiting = self.waiting.lock().expect("inbox lock");
            if waiting.lost {
                return;
            }
            waiting.paths.extend(paths);
            if waiting.paths.len() > self.limit {
                waiting.paths = HashSet::new();
                waiting.lost = true;
            }
        }
        self.ready.notify_one();
    }

    /// Events were lost.
    pub fn lost(&self) {
        {
            let mut waiting = self.waiting.lock().expect("inbox lock");
            waiting.paths = HashSet::new();
            waiting.lost = true;
        }
        self.ready.notify_one();
    }

    /// Forgets the news waiting: a whole scan is about to see everything
    /// it could name (the echoes of a large download, say).
    pub fn clear(&self) {
        *self.waiting.lock().expect("inbox lock") = Waiting::default();
    }

    /// Waits for news and takes all of it. Cancel-safe: news is taken
    /// only when it is returned.
    pub async fn next(&self) -> FsNews {
        loop {
            {
                let mut waiting = self.waiting.lock().expect("inbox lock");
                if std::mem::take(&mut waiting.lost) {
                    return FsNews::Lost;
                }
                if !waiting.paths.is_empty() {
                    return FsNews::Paths(std::mem::take(&mut waiting.paths).into_iter().collect());
                }
            }
            // A permit stored by a send after the look above wakes this.
            self.ready.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn paths_are_kept_once_and_too_many_are_lost() {
        let inbox = Inbox::default();
        inbox.paths(vec!["/r/a".into(), "/r/b".into()]);
        inbox.paths(vec!["/r/a".into()]);
        let FsNews::Paths(mut paths) = inbox.next().await else {
            panic!("paths expected");
        };
        paths.sort();
        assert_eq!(paths, vec![PathBuf::from("/r/a"), PathBuf::from("/r/b")]);

        for i in 0..=MAX_PATHS {
            inbox.paths(vec![format!("/r/{i}").into()]);
        }
        inbox.paths(vec!["/r/after".into()]);
        assert_eq!(inbox.next().await, FsNews::Lost);
        // Taken: the next news is new.
        inbox.paths(vec!["/r/c".into()]);
        assert_eq!(inbox.next().await, FsNews::Paths(vec!["/r/c".into()]));
        // Cleared before a whole scan: what came before is forgotten.
        inbox.lost();
        inbox.clear();
        inbox.paths(vec!["/r/d".into()]);
        assert_eq!(inbox.next().await, FsNews::Paths(vec!["/r/d".into()]));
    }

    #[tokio::test]
    async fn the_loop_wakes_for_news_sent_while_it_waits() {
        let inbox = std::sync::Arc::new(Inbox::default());
        let sender = inbox.clone();
        let waiter = tokio::spawn(async move { inbox.next().await });
        tokio::task::yield_now().await;
        std::thread::spawn(move || sender.lost()).join().unwrap();
        assert_eq!(waiter.await.unwrap(), FsNews::Lost);
    }
}
