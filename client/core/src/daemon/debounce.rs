//! Coalescing bursts of file-system events into one sync.
//!
//! A sync starts once the tree has been quiet for `quiet`, or `max_delay`
//! after the first unsynced event if it never goes quiet. Time is passed in,
//! so the merging is tested from data without sleeping.

use std::time::Duration;

use tokio::time::Instant;

/// Decides when a burst of events is over.
#[derive(Debug, Clone)]
pub struct Debouncer {
    quiet: Duration,
    max_delay: Duration,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Debouncer {
    /// A debouncer with the given quiet period and longest delay.
    pub fn new(quiet: Duration, max_delay: Duration) -> Self {
        Self {
            quiet,
            max_delay,
            first: None,
            last: None,
        }
    }

    /// An event happened at `now`.
    pub fn event(&mut self, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    /// When the pending burst is due, `None` if nothing is pending.
    pub fn deadline(&self) -> Option<Instant> {
        Some((self.last? + self.quiet).min(self.first? + self.max_delay))
    }

    /// Whether the pending burst is due at `now`; if so it is consumed.
    pub fn take_if_due(&mut self, now: Instant) -> bool {
        match self.deadline() {
            Some(deadline) if deadline <= now => {
                self.first = None;
                self.last = None;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds events at the given milliseconds, stepping a virtual clock
    /// one millisecond at a time, and returns when syncs fire.
    fn fires(quiet: u64, max_delay: u64, events: &[u64], until: u64) -> Vec<u64> {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut debouncer = Debouncer::new(
            Duration::from_millis(quiet),
            Duration::from_millis(max_delay),
        );
        let mut fired = Vec::new();
        for ms in 0..=until {
            for _ in events.iter().filter(|&&e| e == ms) {
                debouncer.event(at(ms));
            }
            if debouncer.take_if_due(at(ms)) {
                fired.push(ms);
            }
        }
        fired
    }

    #[test]
    fn bursts_merge_into_one_sync() {
        // (quiet, max delay, events at ms, expected syncs at ms)
        let cases: &[(u64, u64, &[u64], &[u64])] = &[
            // Nothing happens, nothing fires.
            (100, 1000, &[], &[]),
            // One event: fires once the quiet period passes.
            (100, 1000, &[10], &[110]),
            // An editor's save: write temp, fsync, rename within a few ms.
            (100, 1000, &[10, 12, 15, 16], &[116]),
            // Two separate edits: two syncs.
            (100, 1000, &[10, 500], &[110, 600]),
            // A writer that never stops: capped by the max delay. The event
            // at 1000 rides with the sync at 1000; the next burst starts at
            // 1050, and the last one ends quietly at 2450 + 100.
            (
                100,
                1000,
                &(0..2500).step_by(50).collect::<Vec<_>>(),
                &[1000, 2050, 2550],
            ),
        ];
        for (quiet, max_delay, events, expected) in cases {
            assert_eq!(
                fires(*quiet, *max_delay, events, 3000),
                *expected,
                "events {events:?}"
            );
        }
    }
}
