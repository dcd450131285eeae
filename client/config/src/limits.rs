//! Bandwidth limits: how fast a device may send and receive blocks.
//!
//! Written as sizes per second (`"2 MiB"`, `"500 KB"`, a plain number of
//! bytes) or `"off"`, in the config's `[limits]` table, on the command
//! line, and through the daemon's control socket.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Upload and download limits in bytes per second; `None`: unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Blocks sent to the store.
    #[serde(default, with = "as_text", skip_serializing_if = "Option::is_none")]
    pub up: Option<u64>,
    /// Blocks read from the store.
    #[serde(default, with = "as_text", skip_serializing_if = "Option::is_none")]
    pub down: Option<u64>,
}

impl Limits {
    /// Whether neither direction is limited.
    pub fn is_unlimited(&self) -> bool {
        self.up.is_none() && self.down.is_none()
    }
}

/// Reads a rate: a size per second (`2MiB`, `2 MiB/s`, `500KB`, `1048576`)
/// or `off` (also `0`, `none`, `unlimited`).
pub fn parse_rate(text: &str) -> Result<Option<u64>, String> {
    let trimmed = text.trim();
    let size = trimmed
        .strip_suffix("/s")
        .or_else(|| trimmed.strip_suffix("ps"))
        .unwrap_or(trimmed)
        .trim();
    if ["off", "none", "unlimited", "0"]
        .iter()
        .any(|word| size.eq_ignore_ascii_case(word))
    {
        return Ok(None);
    }
    let bytes: bytesize::ByteSize = size.parse().map_err(|_| {
        format!("{text:?} is not a rate: write a size per second such as 2MiB or 500KB, or off")
    })?;
    match bytes.as_u64() {
        0 => Ok(None),
        // A limit below one kibibyte a second would stall a block for hours.
        n if n < 1024 => Err(format!(
            "{text:?} is too low a rate: the least is 1KiB a second"
        )),
        n => Ok(Some(n)),
    }
}

/// A rate as people read it: `2.0 MiB/s`, or `off`.
pub fn show_rate(rate: Option<u64>) -> String {
    match rate {
        Some(bytes) => format!("{}/s", bytesize::ByteSize(bytes).display().iec()),
        None => "off".to_owned(),
    }
}

mod as_text {
    use super::*;

    pub fn serialize<S: Serializer>(rate: &Option<u64>, out: S) -> Result<S::Ok, S::Error> {
        match rate {
            // Exact, and still readable by `parse_rate`.
            Some(bytes) => out.serialize_str(&bytes.to_string()),
            None => out.serialize_str("off"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(input: D) -> Result<Option<u64>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Bytes(u64),
            Text(String),
        }
        match Written::deserialize(input)? {
            Written::Bytes(0) => Ok(None),
            Written::Bytes(bytes) => {
                parse_rate(&bytes.to_string()).map_err(serde::de::Error::custom)
            }
            Written::Text(text) => parse_rate(&text).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_people_write_them() {
        assert_eq!(parse_rate("2MiB"), Ok(Some(2 << 20)));
        assert_eq!(parse_rate("2 MiB/s"), Ok(Some(2 << 20)));
        assert_eq!(parse_rate("500KB"), Ok(Some(500_000)));
        assert_eq!(parse_rate("1.5 MiB"), Ok(Some(1_572_864)));
        assert_eq!(parse_rate("1048576"), Ok(Some(1 << 20)));
        for off in ["off", "OFF", "0", "none", "unlimited"] {
            assert_eq!(parse_rate(off), Ok(None), "{off}");
        }
        assert!(parse_rate("fast").unwrap_err().contains("not a rate"));
        assert!(parse_rate("100").unwrap_err().contains("too low"));
        assert_eq!(show_rate(Some(2 << 20)), "2.0 MiB/s");
        assert_eq!(show_rate(None), "off");
    }

    #[test]
    fn limits_keep_their_config_form() {
        let limits: Limits = toml::from_str("up = \"2 MiB\"\ndown = \"off\"").unwrap();
        assert_eq!(
            limits,
            Limits {
                up: Some(2 << 20),
                down: None
            }
        );
        let text = toml::to_string(&limits).unwrap();
        assert_eq!(toml::from_str::<Limits>(&text).unwrap(), limits);
        assert!(
            toml::from_str::<Limits>("up = \"lots\"")
                .unwrap_err()
                .to_string()
                .contains("not a rate")
        );
        assert!(toml::from_str::<Limits>("").unwrap().is_unlimited());
    }
}
