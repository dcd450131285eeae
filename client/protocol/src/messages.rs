//! What a client asks and what the daemon answers or announces.

use serde::{Deserialize, Serialize};

use crate::{DaemonStatus, SyncReport};

/// A request to the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    /// The daemon's state.
    Status,
    /// Stop syncing until resumed (changes keep being noticed).
    Pause,
    /// Sync again, starting with everything noticed meanwhile.
    Resume {
        /// Let the next sync propagate a mass delete the guard stopped.
        #[serde(default)]
        allow_mass_delete: bool,
    },
    /// Stream events until the connection closes.
    Subscribe,
    /// Change the bandwidth limits at once, for the transfer in flight
    /// too. A field left out keeps its limit; 0 lifts it.
    Limit {
        /// Most bytes per second sent to the store.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        up: Option<u64>,
        /// Most bytes per second read from the store.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        down: Option<u64>,
    },
}

/// An answer to one request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Response {
    /// The state, for `status`.
    Status(Box<DaemonStatus>),
    /// Done, with the new state's name, for `pause` and `resume`.
    Ok(String),
    /// The request could not be served.
    Error(String),
}

/// Something that happened, for subscribers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event {
    /// A sync started.
    Syncing,
    /// A sync finished.
    Synced(SyncReport),
    /// A sync failed.
    Failed {
        /// Why.
        message: String,
    },
    /// The user paused syncing.
    Paused,
    /// The user resumed syncing.
    Resumed,
    /// Something that happened in a mounted shared folder, told by the
    /// home folder's daemon, whose loop syncs it too.
    Mount {
        /// Where the shared folder is mounted, relative to the home
        /// folder's root.
        path: String,
        /// What happened there.
        happened: Box<Event>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_keep_their_wire_form() {
        let text = |r: &Request| serde_json::to_string(r).unwrap();
        assert_eq!(text(&Request::Status), r#"{"cmd":"status"}"#);
        assert_eq!(
            text(&Request::Resume {
                allow_mass_delete: false
            }),
            r#"{"cmd":"resume","allow_mass_delete":false}"#
        );
        assert_eq!(
            text(&Request::Limit {
                up: Some(2 << 20),
                down: None
            }),
            r#"{"cmd":"limit","up":2097152}"#
        );
        let resume: Request = serde_json::from_str(r#"{"cmd":"resume"}"#).unwrap();
        assert_eq!(
            resume,
            Request::Resume {
                allow_mass_delete: false
            }
        );
        let ok = serde_json::to_string(&Response::Ok("paused".into())).unwrap();
        assert_eq!(ok, r#"{"ok":"paused"}"#);
        let synced: Event =
            serde_json::from_str(r#"{"event":"synced","uploaded":1,"problems":[]}"#).unwrap();
        assert!(matches!(synced, Event::Synced(r) if r.uploaded == 1));
        let mounted = Event::Mount {
            path: "Projects".into(),
            happened: Box::new(Event::Failed {
                message: "over quota".into(),
            }),
        };
        assert_eq!(
            serde_json::to_string(&mounted).unwrap(),
            r#"{"event":"mount","path":"Projects","happened":{"event":"failed","message":"over quota"}}"#
        );
    }
}
