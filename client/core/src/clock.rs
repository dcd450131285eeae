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

/// Time since the machine booted, suspend included (`CLOCK_BOOTTIME`):
/// for windows that must hold across a laptop's sleep, such as the commit
/// window (a block checked before a night's sleep is checked again).
pub fn since_boot() -> std::time::Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    std::time::Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}
