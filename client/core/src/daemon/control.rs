//! The control socket server and client.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use super::protocol::{DaemonStatus, Event, Request, Response, State};
use crate::{Error, Result};

/// State shared between the sync loop and socket clients.
pub(super) struct Shared {
    pub(super) status: Mutex<DaemonStatus>,
    pub(super) paused: watch::Sender<bool>,
    pub(super) events: broadcast::Sender<Event>,
    /// Set by `resume --allow-mass-delete`, taken by the next sync.
    pub(super) allow_mass_delete: std::sync::atomic::AtomicBool,
}

impl Shared {
    pub(super) fn new() -> Self {
        Self {
            status: Mutex::new(DaemonStatus {
                state: State::Idle,
                paused: false,
                syncs: 0,
                last_sync: None,
                last_error: None,
                offline: false,
                backend: String::new(),
                last_report: None,
                watch_problem: None,
                transfer: None,
                recent: Vec::new(),
                migration: None,
            }),
            paused: watch::Sender::new(false),
            events: broadcast::Sender::new(256),
            allow_mass_delete: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub(super) fn emit(&self, event: Event) {
        // No subscribers is fine.
        let _ = self.events.send(event);
    }
}

/// Binds the socket (0600) and serves clients until the task is aborted.
pub(super) fn listen(path: &Path, shared: Arc<Shared>) -> Result<JoinHandle<()>> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(Error::io(path)(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "a daemon already runs for this config",
            )));
        }
        std::fs::remove_file(path).map_err(Error::io(path))?;
    }
    let listener = UnixListener::bind(path).map_err(Error::io(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(Error::io(path))?;
    Ok(tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(serve(stream, shared.clone()));
                }
                Err(e) => {
                    tracing::warn!("control socket: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }))
}

async fn serve(stream: UnixStream, shared: Arc<Shared>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let response = match serde_json::from_str::<Request>(&line) {
            Ok(Request::Status) => {
                Response::Status(Box::new(shared.status.lock().expect("status lock").clone()))
            }
            Ok(Request::Pause) => {
                shared.paused.send_replace(true);
                shared.status.lock().expect("status lock").paused = true;
                shared.emit(Event::Paused);
                Response::Ok("paused".into())
            }
            Ok(Request::Resume { allow_mass_delete }) => {
                if allow_mass_delete {
                    shared
                        .allow_mass_delete
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                }
                shared.paused.send_replace(false);
                shared.status.lock().expect("status lock").paused = false;
                shared.emit(Event::Resumed);
                Response::Ok("resumed".into())
            }
            Ok(Request::Subscribe) => {
                let mut events = shared.events.subscribe();
                loop {
                    let event = match events.recv().await {
                        Ok(event) => event,
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return,
                    };
                    let mut text = serde_json::to_string(&event).expect("events serialise");
                    text.push('\n');
                    if write.write_all(text.as_bytes()).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => Response::Error(format!("not a request: {e}")),
        };
        let mut text = serde_json::to_string(&response).expect("responses serialise");
        text.push('\n');
        if write.write_all(text.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Sends one request to the daemon behind `socket` and reads its answer.
/// `Ok(None)` when no daemon listens there.
pub async fn request(socket: &Path, request: &Request) -> Result<Option<Response>> {
    let stream = match UnixStream::connect(socket).await {
        Ok(stream) => stream,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(Error::io(socket)(e)),
    };
    let (read, mut write) = stream.into_split();
    let mut text = serde_json::to_string(request).expect("requests serialise");
    text.push('\n');
    write
        .write_all(text.as_bytes())
        .await
        .map_err(Error::io(socket))?;
    let line = BufReader::new(read)
        .lines()
        .next_line()
        .await
        .map_err(Error::io(socket))?
        .unwrap_or_default();
    serde_json::from_str(&line).map(Some).map_err(|e| {
        Error::io(socket)(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            e.to_string(),
        ))
    })
}
