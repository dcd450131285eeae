//! Times on the command line: RFC 3339 in UTC, or Unix seconds.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;

/// `2026-11-24T18:30:00Z` (also without the `Z`, or with a space for the
/// `T`), or plain Unix seconds.
pub fn parse(text: &str) -> anyhow::Result<i64> {
    if let Ok(secs) = text.parse::<i64>() {
        return Ok(secs);
    }
    let when = humantime::parse_rfc3339_weak(text.trim_end_matches('Z')).with_context(|| {
        format!("{text:?} is not a time: use 2026-11-24T18:30:00Z (UTC) or Unix seconds")
    })?;
    Ok(when
        .duration_since(UNIX_EPOCH)
        .context("times before 1970 are not supported")?
        .as_secs() as i64)
}

/// Unix seconds as `2026-11-24T18:30:00Z`.
pub fn format(secs: i64) -> String {
    let when = UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(when).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_utc_times() {
        assert_eq!(parse("1795478400").unwrap(), 1_795_478_400);
        assert_eq!(parse("2026-11-24T00:00:00Z").unwrap(), 1_795_478_400);
        assert_eq!(parse("2026-11-24 00:00:10").unwrap(), 1_795_478_410);
        assert!(parse("yesterday").is_err());
        assert_eq!(format(1_795_478_410), "2026-11-24T00:00:10Z");
    }
}
