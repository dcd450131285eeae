//! Time, injected: the engine asks a [`Clock`], so tests can fix the date
//! of conflicted copies; everything else reads the wall clock through the
//! two helpers here.

/// The wall clock, injected so tests can fix the date of conflicted copies.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn unix_secs(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_secs(&self) -> i64 {
        unix_secs()
    }
}

/// Now, in seconds since the Unix epoch (0 before it).
pub fn unix_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Now, in nanoseconds since the Unix epoch: a scan records when it
/// started, so the next scan can tell racily clean entries.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

pub use pouch_backend::gc::since_boot;
