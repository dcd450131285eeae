//! A single-node `pouch-store` server process and its accounts, for tests
//! that need a store with users (given the binary: each test crate finds
//! its own build of it).

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running `pouch-store serve`, killed on drop.
pub struct PouchStore {
    child: Child,
    /// Its address, `http://127.0.0.1:PORT`.
    pub url: String,
}

impl PouchStore {
    /// Starts `binary serve` on a free port of 127.0.0.1 over `data`,
    /// namespace `default` with `token`.
    pub fn start(binary: &Path, data: &Path, token: &str) -> Self {
        let (child, addr) = crate::process::spawn_listening(
            Command::new(binary)
                .args(["serve", "--listen", "127.0.0.1:0", "--data"])
                .arg(data)
                .env("POUCH_STORE_TOKEN", token)
                .stderr(Stdio::null()),
            "pouch-store listening on ",
        );
        Self {
            child,
            url: format!("http://{addr}"),
        }
    }
}

impl Drop for PouchStore {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `binary user add NAME [--quota QUOTA]` over the store at `data`, the
/// password on standard input.
pub fn add_user(binary: &Path, data: &Path, name: &str, password: &str, quota: Option<&str>) {
    let mut command = Command::new(binary);
    command.args(["user", "add", "--data"]).arg(data).arg(name);
    if let Some(quota) = quota {
        command.args(["--quota", quota]);
    }
    let mut add = command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    writeln!(add.stdin.take().unwrap(), "{password}").unwrap();
    assert!(add.wait().unwrap().success(), "pouch-store user add {name}");
}
