//! The control socket's server side: the daemon's state shared with
//! clients, and one task per connection speaking `pouch-protocol`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use pouch_protocol::{DaemonStatus, Event, Request, Response, State, read_message, write_message};
use tokio::io::BufReader;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use super::group::Membership;
use crate::{Error, Result};

/// State shared between the sync loop and socket clients.
pub(super) struct Shared {
    pub(super) status: Mutex<DaemonStatus>,
    pub(super) paused: watch::Sender<bool>,
    pub(super) events: broadcast::Sender<Event>,
    /// Set by `resume --allow-mass-delete`, taken by the next sync.
    pub(super) allow_mass_delete: std::sync::atomic::AtomicBool,
    /// The bandwidth limits the daemon's store keeps to, when it has any.
    pub(super) limits: Option<Arc<crate::limit::Limits>>,
    /// The group this loop is in, and which of its loops it is.
    pub(super) membership: Option<Membership>,
}

impl Shared {
    pub(super) fn new(
        limits: Option<Arc<crate::limit::Limits>>,
        membership: Option<Membership>,
    ) -> Self {
        let events = match &membership {
            Some(Membership::Home(group)) => group.events(),
            _ => broadcast::Sender::new(256),
        };
        // Paused as it was when its loop last ran in this process.
        let paused = membership.as_ref().is_some_and(Membership::was_paused);
        let mut status = DaemonStatus::starting(String::new());
        status.paused = paused;
        let shared = Self {
            status: Mutex::new(status),
            paused: watch::Sender::new(paused),
            events,
            allow_mass_delete: std::sync::atomic::AtomicBool::new(false),
            limits,
            membership,
        };
        shared.show_limits();
        shared
    }

    /// The loops a request to this one's socket reaches: itself, and for
    /// the home loop every mount's.
    fn reached(self: &Arc<Self>) -> Vec<Arc<Self>> {
        let mut reached = vec![self.clone()];
        if let Some(Membership::Home(group)) = &self.membership {
            reached.extend(group.members());
        }
        reached
    }

    /// The status, with every mount's for the home loop.
    fn current_status(&self) -> DaemonStatus {
        // The config's `[limits]` may have changed them meanwhile.
        self.show_limits();
        let mut status = self.status.lock().expect("status lock").clone();
        if let Some(Membership::Home(group)) = &self.membership {
            status.mounts = group.statuses();
        }
        status
    }

    fn pause(&self) {
        self.paused.send_replace(true);
        self.status.lock().expect("status lock").paused = true;
        if let Some(membership) = &self.membership {
            membership.remember_paused(true);
        }
        self.emit(Event::Paused);
    }

    fn resume(&self, allow_mass_delete: bool) {
        if allow_mass_delete {
            self.allow_mass_delete
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        self.paused.send_replace(false);
        self.status.lock().expect("status lock").paused = false;
        if let Some(membership) = &self.membership {
            membership.remember_paused(false);
        }
        self.emit(Event::Resumed);
    }

    /// Copies the limits in force into the status.
    pub(super) fn show_limits(&self) {
        if let Some(limits) = &self.limits {
            self.status.lock().expect("status lock").limits = pouch_protocol::Limits {
                up: limits.up.rate(),
                down: limits.down.rate(),
            };
        }
    }

    pub(super) fn emit(&self, event: Event) {
        if let Some(Membership::Mount(group, mount)) = &self.membership {
            group.forward(&mount.path, event.clone());
        }
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
    let mut read = BufReader::new(read);
    while let Ok(Some(request)) = read_message::<_, Request>(&mut read).await {
        let response = match request {
            Ok(Request::Status) => Response::Status(Box::new(shared.current_status())),
            Ok(Request::Pause) => {
                shared.reached().iter().for_each(|loop_| loop_.pause());
                Response::Ok("paused".into())
            }
            Ok(Request::Resume { allow_mass_delete }) => {
                for loop_ in shared.reached() {
                    // The go-ahead for a mass delete is for the folders
                    // whose last sync stopped (the guard's stop is an
                    // error): a mount syncing fine is not handed one to
                    // keep for a delete the user never saw.
                    let stopped = Arc::ptr_eq(&loop_, &shared)
                        || loop_.status.lock().expect("status lock").state == State::Error;
                    loop_.resume(allow_mass_delete && stopped);
                }
                Response::Ok("resumed".into())
            }
            // A daemon's loops share one set of limits (see `group`): set
            // here, it paces them all.
            Ok(Request::Limit { up, down }) => match &shared.limits {
                Some(limits) => {
                    let rate = |r: u64| Some(r).filter(|r| *r > 0);
                    if let Some(up) = up {
                        limits.up.set(rate(up));
                    }
                    if let Some(down) = down {
                        limits.down.set(rate(down));
                    }
                    shared.show_limits();
                    tracing::info!(up = ?limits.up.rate(), down = ?limits.down.rate(), "bandwidth limits changed");
                    Response::Ok(format!(
                        "limits: up {}, down {}",
                        pouch_config::show_rate(limits.up.rate()),
                        pouch_config::show_rate(limits.down.rate())
                    ))
                }
                None => Response::Error("this daemon's store has no bandwidth limits".into()),
            },
            Ok(Request::Subscribe) => {
                let mut events = shared.events.subscribe();
                loop {
                    let event = match events.recv().await {
                        Ok(event) => event,
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return,
                    };
                    if write_message(&mut write, &event).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => Response::Error(format!("not a request: {e}")),
        };
        if write_message(&mut write, &response).await.is_err() {
            return;
        }
    }
}
