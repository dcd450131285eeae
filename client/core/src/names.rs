//! Names Pouch gives files: the temp-file rule (one rule, in
//! `pouch-config`, shared with the config writer) and conflicted copies.

pub use pouch_config::files::{TEMP_PREFIX, is_temp_name, temp_owner, temp_path};

use crate::Result;
use crate::path::RelPath;

/// The longest file name most file systems take (ext4, XFS, btrfs, APFS:
/// 255 bytes).
pub const MAX_NAME: usize = 255;
/// Longer "extensions" are kept as part of the stem.
const MAX_EXT: usize = 32;

/// The longest prefix of `text` of at most `max` bytes, cut on a
/// character boundary.
fn truncated(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The civil date (year, month, day) of a Unix time, UTC.
pub fn civil_date(unix_secs: i64) -> (i64, u32, u32) {
    // Howard Hinnant's days-to-civil algorithm.
    let z = unix_secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `2026-12-01 22:30 UTC`, for messages.
pub fn format_time(secs: i64) -> String {
    let (year, month, day) = civil_date(secs);
    let rem = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// The name Dropbox users know for the losing side of a conflict:
/// `name (DEVICE's conflicted copy YYYY-MM-DD).ext`, with ` 2`, ` 3`, ...
/// inside the parentheses when `taken` says a name is in use.
pub fn conflict_name(
    path: &RelPath,
    device: &str,
    unix_secs: i64,
    taken: impl Fn(&RelPath) -> bool,
) -> Result<RelPath> {
    let name = path.name();
    let (stem, ext) = match name.rfind('.') {
        Some(dot) if dot > 0 => (&name[..dot], &name[dot..]),
        _ => (name, ""),
    };
    // An extension that long is part of the name, not a type.
    let (stem, ext) = if ext.len() > MAX_EXT {
        (name, "")
    } else {
        (stem, ext)
    };
    let device = device.replace('/', "_");
    let (y, m, d) = civil_date(unix_secs);
    for n in 1.. {
        let counter = if n == 1 {
            String::new()
        } else {
            format!(" {n}")
        };
        let mut suffix = format!(" ({device}'s conflicted copy {y:04}-{m:02}-{d:02}{counter})");
        // The suffix and extension are kept whole (a very long device name
        // is shortened first); the stem gives up what the name limit needs.
        let fixed_room = MAX_NAME.saturating_sub(ext.len() + 1);
        if suffix.len() > fixed_room {
            suffix = format!(" (conflicted copy {y:04}-{m:02}-{d:02}{counter})");
        }
        let room = MAX_NAME.saturating_sub(suffix.len() + ext.len());
        let stem = truncated(stem, room.max(1));
        let candidate = path.with_name(&format!("{stem}{suffix}{ext}"))?;
        if !taken(&candidate) {
            return Ok(candidate);
        }
    }
    unreachable!("some counter is free")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(951_782_400), (2000, 2, 29));
        assert_eq!(civil_date(1_795_478_400), (2026, 11, 24));
        assert_eq!(civil_date(-86_400), (1969, 12, 31));
    }

    #[test]
    fn conflict_names() {
        let day = 1_795_478_400;
        let p = RelPath::parse("docs/report.final.txt").unwrap();
        let name = conflict_name(&p, "B", day, |_| false).unwrap();
        assert_eq!(
            name.as_str(),
            "docs/report.final (B's conflicted copy 2026-11-24).txt"
        );
        let bare = RelPath::parse(".bashrc").unwrap();
        assert_eq!(
            conflict_name(&bare, "B", day, |_| false).unwrap().as_str(),
            ".bashrc (B's conflicted copy 2026-11-24)"
        );
        // A name at the file-system limit still gets a copy that fits,
        // keeping its extension and cutting on a character boundary.
        let long = RelPath::parse(&format!("dir/{}.txt", "é".repeat(125))).unwrap();
        assert_eq!(long.name().len(), 254);
        let copy = conflict_name(&long, "B", day, |_| false).unwrap();
        assert!(copy.name().len() <= MAX_NAME, "{}", copy.name().len());
        assert!(
            copy.name()
                .ends_with(" (B's conflicted copy 2026-11-24).txt"),
            "{copy}"
        );
        assert!(copy.as_str().starts_with("dir/éé"));
        let huge_device = "d".repeat(300);
        let copy = conflict_name(&long, &huge_device, day, |_| false).unwrap();
        assert!(copy.name().len() <= MAX_NAME);
        assert!(
            copy.name().ends_with(" (conflicted copy 2026-11-24).txt"),
            "{copy}"
        );
        let second = conflict_name(&p, "B", day, |c| c == &name).unwrap();
        assert_eq!(
            second.as_str(),
            "docs/report.final (B's conflicted copy 2026-11-24 2).txt"
        );
    }
}
