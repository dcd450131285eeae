//! The parts of the standard AWS credential chain that `object_store` does
//! not read itself: named profiles in the shared credentials and config
//! files (`AWS_PROFILE`, `~/.aws/credentials`, `~/.aws/config`).
//!
//! Order, as the AWS SDKs do it: keys given in Pouch's config; the
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` environment; the profile's
//! keys; then `object_store`'s own chain (web identity, ECS, instance
//! metadata).

use std::path::PathBuf;

/// Static keys. `Debug` never shows the secret or the token.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Credentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
    /// `AWS_SESSION_TOKEN`, for temporary credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// What a profile supplies: keys and/or a region.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Profile {
    pub(crate) credentials: Option<Credentials>,
    pub(crate) region: Option<String>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn home() -> Option<PathBuf> {
    env("HOME").map(PathBuf::from)
}

/// Reads the profile named by `AWS_PROFILE` (or `default`) from the files
/// named by `AWS_SHARED_CREDENTIALS_FILE` / `AWS_CONFIG_FILE` (or their
/// places under `~/.aws`). Missing files are simply empty.
pub(crate) fn profile_from_env() -> Profile {
    let name = env("AWS_PROFILE").unwrap_or_else(|| "default".into());
    let credentials_file = env("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".aws/credentials")));
    let config_file = env("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".aws/config")));
    let read = |p: Option<PathBuf>| p.and_then(|p| std::fs::read_to_string(p).ok());
    load_profile(
        &name,
        read(credentials_file).as_deref(),
        read(config_file).as_deref(),
    )
}

/// The profile `name` from the texts of the two files.
pub(crate) fn load_profile(name: &str, credentials: Option<&str>, config: Option<&str>) -> Profile {
    let creds_section = credentials.map(|t| section(t, name)).unwrap_or_default();
    // In the config file every profile but `default` is `[profile NAME]`.
    let config_name = if name == "default" {
        "default".to_string()
    } else {
        format!("profile {name}")
    };
    let config_section = config.map(|t| section(t, &config_name)).unwrap_or_default();
    let get = |key: &str| {
        creds_section
            .iter()
            .chain(&config_section)
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let credentials = match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        (Some(access_key_id), Some(secret_access_key)) => Some(Credentials {
            access_key_id,
            secret_access_key,
            session_token: get("aws_session_token"),
        }),
        _ => None,
    };
    Profile {
        credentials,
        region: get("region"),
    }
}

/// The `key = value` lines of section `[name]` of an INI text.
fn section(text: &str, name: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = header.trim() == name;
            continue;
        }
        if inside && let Some((key, value)) = line.split_once('=') {
            out.push((key.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREDENTIALS: &str = "\
[default]
aws_access_key_id = AKIDEFAULT
aws_secret_access_key = default-secret

# a comment
[work]
aws_access_key_id=AKIWORK
aws_secret_access_key=work-secret
aws_session_token = tok
";
    const CONFIG: &str = "\
[default]
region = eu-west-1
[profile work]
region = ap-south-1
[work]
region = wrong-section
";

    #[test]
    fn named_profile_keys_and_region_come_from_their_sections() {
        let work = load_profile("work", Some(CREDENTIALS), Some(CONFIG));
        let creds = work.credentials.unwrap();
        assert_eq!(creds.access_key_id, "AKIWORK");
        assert_eq!(creds.secret_access_key, "work-secret");
        assert_eq!(creds.session_token.as_deref(), Some("tok"));
        assert_eq!(work.region.as_deref(), Some("ap-south-1"));

        let default = load_profile("default", Some(CREDENTIALS), Some(CONFIG));
        assert_eq!(default.credentials.unwrap().access_key_id, "AKIDEFAULT");
        assert_eq!(default.region.as_deref(), Some("eu-west-1"));
    }

    #[test]
    fn missing_files_or_profiles_give_nothing() {
        assert_eq!(load_profile("default", None, None), Profile::default());
        let absent = load_profile("nobody", Some(CREDENTIALS), Some(CONFIG));
        assert_eq!(absent, Profile::default());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let creds = load_profile("work", Some(CREDENTIALS), None)
            .credentials
            .unwrap();
        let shown = format!("{creds:?}");
        assert!(shown.contains("AKIWORK"));
        assert!(!shown.contains("work-secret") && !shown.contains("tok"));
    }
}
