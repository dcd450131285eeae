//! The loops of one daemon process: the home folder's and one per shared
//! folder mounted into it. Each loop keeps its own control socket, but the
//! home's speaks for the whole group, so a client of that one socket (the
//! tray, `pouch pause`) sees and drives every folder the user has: its
//! status lists each mount, its event stream carries theirs (as
//! [`Event::Mount`]), and pause and resume reach them all. The loops of a
//! group are given one [`crate::limit::Limits`] (`DaemonOptions::limits`),
//! so a bandwidth limit set at any socket paces them all. The group
//! remembers which of its loops are paused, so a loop started again (the
//! daemon reopens its stores when the config changes: a new mount, a
//! migration) starts paused if it was.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use pouch_config::Mount;
use pouch_protocol::{Event, MountStatus};
use tokio::sync::broadcast;

use super::control::Shared;

/// The loops of one daemon process, as the home loop's socket sees them.
pub struct Group {
    /// The home loop's event stream, which the mounts' events join.
    events: broadcast::Sender<Event>,
    mounts: Mutex<Vec<(Mount, Arc<Shared>)>>,
    /// The loops paused now, by [`Membership::key`].
    paused: Mutex<HashSet<String>>,
}

/// Which loop of a [`Group`] a daemon is.
#[derive(Clone)]
pub enum Membership {
    /// The home folder's loop: its socket speaks for the group.
    Home(Arc<Group>),
    /// A mounted shared folder's loop (the config's mount).
    Mount(Arc<Group>, Mount),
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Membership::Home(_) => f.write_str("Home"),
            Membership::Mount(_, mount) => write!(f, "Mount({})", mount.path),
        }
    }
}

impl Membership {
    /// What names this loop across restarts: "" for the home, a mount's
    /// namespace.
    fn key(&self) -> &str {
        match self {
            Membership::Home(_) => "",
            Membership::Mount(_, mount) => &mount.namespace,
        }
    }

    fn group(&self) -> &Group {
        match self {
            Membership::Home(group) | Membership::Mount(group, _) => group,
        }
    }

    /// Whether this loop was paused when it last ran.
    pub(super) fn was_paused(&self) -> bool {
        let paused = self.group().paused.lock().expect("group lock");
        paused.contains(self.key())
    }

    /// Remembers that this loop is paused or not, for its next start.
    pub(super) fn remember_paused(&self, paused: bool) {
        let mut set = self.group().paused.lock().expect("group lock");
        if paused {
            set.insert(self.key().to_owned());
        } else {
            set.remove(self.key());
        }
    }
}

impl Group {
    /// A group with no loops yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            events: broadcast::Sender::new(256),
            mounts: Mutex::new(Vec::new()),
            paused: Mutex::new(HashSet::new()),
        })
    }

    /// The event stream the home loop sends on.
    pub(super) fn events(&self) -> broadcast::Sender<Event> {
        self.events.clone()
    }

    /// Tells the home's subscribers what happened in the mount at `path`.
    pub(super) fn forward(&self, path: &str, event: Event) {
        // No subscribers is fine.
        let _ = self.events.send(Event::Mount {
            path: path.to_owned(),
            happened: Box::new(event),
        });
    }

    /// Adds a mount's loop until the returned guard drops.
    pub(super) fn join(self: &Arc<Self>, mount: Mount, shared: Arc<Shared>) -> Joined {
        self.mounts
            .lock()
            .expect("group lock")
            .push((mount, shared.clone()));
        Joined {
            group: self.clone(),
            shared,
        }
    }

    /// Each running mount's status, in the order they joined.
    pub(super) fn statuses(&self) -> Vec<MountStatus> {
        self.mounts
            .lock()
            .expect("group lock")
            .iter()
            .map(|(mount, shared)| {
                shared.show_limits();
                MountStatus {
                    name: mount.name.clone(),
                    path: mount.path.clone(),
                    role: mount.role.clone(),
                    status: Box::new(shared.status.lock().expect("status lock").clone()),
                }
            })
            .collect()
    }

    /// The running mounts' shared states, for a request that reaches all.
    pub(super) fn members(&self) -> Vec<Arc<Shared>> {
        let mounts = self.mounts.lock().expect("group lock");
        mounts.iter().map(|(_, shared)| shared.clone()).collect()
    }
}

/// A mount's place in its group, given up when its loop ends.
pub(super) struct Joined {
    group: Arc<Group>,
    shared: Arc<Shared>,
}

impl Drop for Joined {
    fn drop(&mut self) {
        self.group
            .mounts
            .lock()
            .expect("group lock")
            .retain(|(_, shared)| !Arc::ptr_eq(shared, &self.shared));
    }
}

#[cfg(test)]
mod tests {
    use pouch_protocol::{Request, Response, State, request, subscribe};

    use super::*;
    use crate::daemon::control;

    fn mount(path: &str) -> Mount {
        Mount {
            namespace: format!("share.{path}"),
            name: format!("{path} share"),
            path: path.into(),
            role: "viewer".into(),
            detached: false,
        }
    }

    /// Over real sockets: the home's lists the running mounts, passes
    /// their events on, and pauses them with itself; a mount's own socket
    /// speaks for itself only.
    #[tokio::test]
    async fn the_home_socket_speaks_for_every_mount() {
        let dir = tempfile::tempdir().unwrap();
        let group = Group::new();
        let limits = crate::limit::Limits::new(None, None);
        let home = Arc::new(Shared::new(
            Some(limits.clone()),
            Some(Membership::Home(group.clone())),
        ));
        let home_socket = dir.path().join("home.sock");
        let _home_server = control::listen(&home_socket, home.clone()).unwrap();
        let projects = Arc::new(Shared::new(
            Some(limits.clone()),
            Some(Membership::Mount(group.clone(), mount("Projects"))),
        ));
        let projects_socket = dir.path().join("projects.sock");
        let _projects_server = control::listen(&projects_socket, projects.clone()).unwrap();
        let joined = group.join(mount("Projects"), projects.clone());
        let other = Arc::new(Shared::new(
            None,
            Some(Membership::Mount(group.clone(), mount("Other"))),
        ));
        let other_joined = group.join(mount("Other"), other.clone());
        projects.status.lock().unwrap().state = State::Syncing;

        let status = |socket: std::path::PathBuf| async move {
            match request(&socket, &Request::Status).await.unwrap() {
                Some(Response::Status(status)) => status,
                other => panic!("{other:?}"),
            }
        };
        let seen = status(home_socket.clone()).await;
        let mounts: Vec<_> = seen
            .mounts
            .iter()
            .map(|m| (m.path.as_str(), m.status.state))
            .collect();
        assert_eq!(
            mounts,
            [("Projects", State::Syncing), ("Other", State::Idle)]
        );
        assert!(status(projects_socket.clone()).await.mounts.is_empty());

        // A mount's events reach the home's subscribers, marked with it.
        let mut events = subscribe(&home_socket).await.unwrap().unwrap();
        // The socket's task subscribes once it reads the request.
        while home.events.receiver_count() == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        projects.emit(Event::Failed {
            message: "over quota".into(),
        });
        match events.next().await.unwrap().unwrap() {
            Event::Mount { path, happened } => {
                assert_eq!(path, "Projects");
                assert!(matches!(*happened, Event::Failed { message } if message == "over quota"));
            }
            other => panic!("{other:?}"),
        }

        // Pause at the home pauses every mount; one mount's own socket
        // resumes it alone.
        let answer = request(&home_socket, &Request::Pause).await.unwrap();
        assert!(matches!(answer, Some(Response::Ok(_))));
        let paused: Vec<bool> = [&home, &projects, &other]
            .iter()
            .map(|s| *s.paused.borrow())
            .collect();
        assert_eq!(paused, [true, true, true]);
        request(
            &projects_socket,
            &Request::Resume {
                allow_mass_delete: false,
            },
        )
        .await
        .unwrap();
        let seen = status(home_socket.clone()).await;
        assert!(seen.paused);
        let paused: Vec<bool> = seen.mounts.iter().map(|m| m.status.paused).collect();
        assert_eq!(paused, [false, true]);

        // `resume --allow-mass-delete` at the home gives the go-ahead to the
        // home and to a mount whose sync stopped, not to one syncing fine.
        other.status.lock().unwrap().state = State::Error;
        request(
            &home_socket,
            &Request::Resume {
                allow_mass_delete: true,
            },
        )
        .await
        .unwrap();
        let allowed: Vec<bool> = [&home, &projects, &other]
            .iter()
            .map(|s| {
                s.allow_mass_delete
                    .load(std::sync::atomic::Ordering::SeqCst)
            })
            .collect();
        assert_eq!(allowed, [true, false, true]);
        assert!(!*other.paused.borrow());

        // A mount whose loop ended leaves the home's status.
        drop(other_joined);
        let seen = status(home_socket.clone()).await;
        assert_eq!(seen.mounts.len(), 1);
        drop(joined);
        assert!(status(home_socket).await.mounts.is_empty());
    }

    /// The daemon reopens its stores (a new mount, a migration) by
    /// starting its loops again in the same group: a folder paused before
    /// is paused after, until resumed.
    #[tokio::test]
    async fn a_paused_folder_stays_paused_when_its_loop_starts_again() {
        let dir = tempfile::tempdir().unwrap();
        let group = Group::new();
        let start = |generation: u32| {
            let home = Arc::new(Shared::new(None, Some(Membership::Home(group.clone()))));
            let socket = dir.path().join(format!("home-{generation}.sock"));
            let server = control::listen(&socket, home.clone()).unwrap();
            let projects = Arc::new(Shared::new(
                None,
                Some(Membership::Mount(group.clone(), mount("Projects"))),
            ));
            let joined = group.join(mount("Projects"), projects.clone());
            (home, projects, socket, server, joined)
        };
        let paused = |shared: &Shared| {
            (
                *shared.paused.borrow(),
                shared.status.lock().unwrap().paused,
            )
        };

        let (home, projects, socket, server, joined) = start(1);
        assert_eq!(
            (paused(&home), paused(&projects)),
            ((false, false), (false, false))
        );
        request(&socket, &Request::Pause).await.unwrap();
        drop((joined, server));

        let (home, projects, socket, server, joined) = start(2);
        assert_eq!(
            (paused(&home), paused(&projects)),
            ((true, true), (true, true))
        );
        let other = Shared::new(None, Some(Membership::Mount(group.clone(), mount("Other"))));
        assert_eq!(
            paused(&other),
            (false, false),
            "a new mount was never paused"
        );
        let resume = Request::Resume {
            allow_mass_delete: false,
        };
        request(&socket, &resume).await.unwrap();
        drop((joined, server));

        let (home, projects, ..) = start(3);
        assert_eq!(
            (paused(&home), paused(&projects)),
            ((false, false), (false, false))
        );
    }
}
