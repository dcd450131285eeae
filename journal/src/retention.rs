//! Retention: which versions of a path stay restorable. One rule, used by
//! the collector (what it keeps), `pouch history` (what it shows as
//! expired) and `pouch restore` (what it refuses).
//!
//! The policy is the namespace's, recorded in its journal (the last entry
//! carrying one wins), so every device and every collector agrees on it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A namespace's retention policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// How long a replaced or deleted version stays restorable, in seconds
    /// from when it was replaced (or its file deleted).
    pub keep_secs: u64,
    /// At least this many of the latest versions of each path that exists
    /// now are kept, however old. Deleted files are kept only for
    /// `keep_secs`, like Dropbox's deleted-files view.
    #[serde(default)]
    pub keep_last: u32,
}

impl Default for Retention {
    /// Thirty days, as Dropbox's basic plans.
    fn default() -> Self {
        Self {
            keep_secs: 30 * 24 * 60 * 60,
            keep_last: 0,
        }
    }
}

impl Retention {
    /// The retention period.
    pub fn period(&self) -> Duration {
        Duration::from_secs(self.keep_secs)
    }

    /// "30 days", "0 days (only the current tree)", "36 hours", with the
    /// keep-last rule when there is one.
    pub fn describe(&self) -> String {
        let days = self.keep_secs / 86_400;
        let period = if self.keep_secs == 0 {
            "0 days (only the current tree)".to_owned()
        } else if self.keep_secs.is_multiple_of(86_400) {
            format!("{days} day{}", if days == 1 { "" } else { "s" })
        } else if self.keep_secs.is_multiple_of(3600) {
            format!("{} hours", self.keep_secs / 3600)
        } else {
            format!("{} seconds", self.keep_secs)
        };
        match self.keep_last {
            0 => period,
            n => format!("{period}, and at least the last {n} versions of each file"),
        }
    }
}

/// One version of a path, oldest first, as the rule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    /// When the next version replaced it (seconds since the epoch); `None`
    /// for the current version.
    pub replaced_at: Option<i64>,
    /// Whether it holds content (a file or a link), not a folder or a
    /// delete.
    pub content: bool,
    /// Whether it is a delete.
    pub deleted: bool,
}

/// Which of a path's `versions` (oldest first) are retained at `now`.
///
/// The current version always is. An older one is while it was replaced
/// less than the period ago; and, if the path exists now (its current
/// version is not a delete), the last `keep_last` content versions are,
/// whatever their age.
pub fn retained(policy: &Retention, versions: &[Version], now: i64) -> Vec<bool> {
    let keep = i64::try_from(policy.keep_secs).unwrap_or(i64::MAX);
    let exists = versions.last().is_some_and(|v| !v.deleted);
    let mut out: Vec<bool> = versions
        .iter()
        .map(|v| match v.replaced_at {
            None => true,
            Some(at) => at.saturating_add(keep) > now,
        })
        .collect();
    if exists && policy.keep_last > 0 {
        let mut left = policy.keep_last;
        for (i, v) in versions.iter().enumerate().rev() {
            if left == 0 {
                break;
            }
            if v.content {
                out[i] = true;
                left -= 1;
            }
        }
    }
    out
}

/// When each journal entry happened, for retention: the committing
/// device's clock, never earlier than an entry before it (a device whose
/// clock is behind cannot make versions expire early), and for entries
/// with no time (from before times were recorded) the next known time
/// (they happened no later), or `now`.
pub fn entry_times(raw: &[Option<i64>], now: i64) -> Vec<i64> {
    let mut out = vec![0; raw.len()];
    let mut next_known = now;
    for i in (0..raw.len()).rev() {
        if let Some(t) = raw[i] {
            next_known = t;
        }
        out[i] = raw[i].unwrap_or(next_known);
    }
    let mut latest = i64::MIN;
    for t in &mut out {
        latest = latest.max(*t);
        *t = latest;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn v(replaced_at: Option<i64>, content: bool) -> Version {
        Version {
            replaced_at,
            content,
            deleted: false,
        }
    }

    fn deletion(replaced_at: Option<i64>) -> Version {
        Version {
            replaced_at,
            content: false,
            deleted: true,
        }
    }

    #[test]
    fn a_replaced_version_lasts_the_period() {
        let policy = Retention::default();
        let now = 100 * DAY;
        let versions = [
            v(Some(now - 31 * DAY), true),
            v(Some(now - 29 * DAY), true),
            v(None, true),
        ];
        assert_eq!(retained(&policy, &versions, now), [false, true, true]);
    }

    #[test]
    fn zero_days_keeps_only_the_current_version() {
        let policy = Retention {
            keep_secs: 0,
            keep_last: 0,
        };
        let now = 10 * DAY;
        let versions = [v(Some(now), true), v(None, true)];
        assert_eq!(retained(&policy, &versions, now), [false, true]);
        // A deleted file is gone at once.
        let deleted = [v(Some(now - 1), true), deletion(None)];
        assert_eq!(retained(&policy, &deleted, now), [false, true]);
    }

    #[test]
    fn keep_last_holds_old_versions_of_existing_files_only() {
        let policy = Retention {
            keep_secs: DAY as u64,
            keep_last: 2,
        };
        let now = 100 * DAY;
        let old = |d| Some(now - d * DAY);
        let living = [
            v(old(50), true),
            v(old(40), true),
            v(old(30), false), // a folder for a while
            v(None, true),
        ];
        assert_eq!(
            retained(&policy, &living, now),
            [false, true, false, true],
            "the current and the one content version before it"
        );
        let deleted = [v(old(50), true), v(old(40), true), deletion(None)];
        assert_eq!(
            retained(&policy, &deleted, now),
            [false, false, true],
            "a file deleted longer ago than the period goes, keep-last or not"
        );
    }

    #[test]
    fn times_never_go_back_and_unknown_times_take_the_next() {
        assert_eq!(
            entry_times(&[None, Some(10), Some(5), None, Some(20), None], 99),
            [10, 10, 10, 20, 20, 99]
        );
        assert!(entry_times(&[], 0).is_empty());
    }

    #[test]
    fn policies_read_plainly() {
        assert_eq!(Retention::default().describe(), "30 days");
        let zero = Retention {
            keep_secs: 0,
            keep_last: 3,
        };
        assert_eq!(
            zero.describe(),
            "0 days (only the current tree), and at least the last 3 versions of each file"
        );
    }
}
