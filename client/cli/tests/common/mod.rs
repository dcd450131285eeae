//! Helpers for driving the real `pouch` binary on real folders.

#![allow(dead_code, missing_docs)]

pub mod scenarios;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use pouch_testkit::pouch_store::PouchStore;

/// One device: its config file and synced folder.
pub struct Device {
    pub config: PathBuf,
    pub root: PathBuf,
    /// Environment every command of this device runs with (credentials).
    pub env: Vec<(String, String)>,
}

pub fn pouch() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pouch"));
    cmd.env("POUCH_LOG", "warn");
    // Never the user's own folders (a `Device` names its own).
    let own = std::env::temp_dir().join(format!("pouch-tests-{}", std::process::id()));
    cmd.env("XDG_CONFIG_HOME", own.join("config"));
    cmd.env("XDG_DATA_HOME", own.join("data"));
    cmd
}

/// The `pouch-store` binary next to `pouch`, built first if this test runs
/// without the rest of the workspace.
pub fn pouch_store_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_pouch")).with_file_name("pouch-store");
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "pouch-backend-own", "--bin", "pouch-store"])
            .status()
            .unwrap();
        assert!(status.success(), "could not build pouch-store");
    }
    path
}

/// The test S3 server's keys, as environment for a device.
pub fn s3_keys() -> Vec<(String, String)> {
    vec![
        (
            "AWS_ACCESS_KEY_ID".into(),
            pouch_testkit::s3::ACCESS_KEY_ID.into(),
        ),
        (
            "AWS_SECRET_ACCESS_KEY".into(),
            pouch_testkit::s3::SECRET_ACCESS_KEY.into(),
        ),
    ]
}

impl Device {
    /// A device named `name` under `dir` (config `NAME.toml`, folder
    /// `NAME`) whose commands run with `env`; not initialised. The
    /// machine's list of synced folders is `dir`'s own, as if every test
    /// ran on a machine of its own.
    pub fn new(dir: &Path, name: &str, mut env: Vec<(String, String)>) -> Self {
        env.push((
            "XDG_CONFIG_HOME".into(),
            dir.join(".config-home").to_str().unwrap().into(),
        ));
        Self {
            config: dir.join(format!("{name}.toml")),
            root: dir.join(name),
            env,
        }
    }

    /// Inits a device named `name` under `dir`, sharing `store`.
    pub fn init(dir: &Path, name: &str, store: &Path) -> Self {
        let device = Self::new(dir, name, Vec::new());
        let (root, store) = (device.root_arg(), store.to_str().unwrap());
        device.ok(&["init", "--device", name, "--root", &root, "--store", store]);
        device
    }

    /// Inits a device named `name` under `dir` on S3 bucket `bucket` at
    /// `endpoint`, with the test server's keys in its environment.
    pub fn init_s3(dir: &Path, name: &str, endpoint: &str, bucket: &str) -> Self {
        let device = Self::new(dir, name, s3_keys());
        let root = device.root_arg();
        device.ok(&[
            "init",
            "--device",
            name,
            "--root",
            &root,
            "--backend",
            "s3",
            "--bucket",
            bucket,
            "--endpoint",
            endpoint,
            "--prefix",
            "folder",
        ]);
        device
    }

    fn root_arg(&self) -> String {
        self.root.to_str().unwrap().to_owned()
    }

    pub fn run(&self, args: &[&str]) -> Output {
        pouch()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{} {args:?} failed: {}",
            self.root.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command that must succeed and prints JSON; returns it.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    /// Syncs once and returns the JSON report; the sync must succeed.
    pub fn sync(&self) -> serde_json::Value {
        self.json(&["sync", "--json"])
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

/// Two devices, A and B, sharing one embedded store in a temp folder.
pub fn pair() -> (tempfile::TempDir, Device, Device) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let a = Device::init(dir.path(), "A", &store);
    let b = Device::init(dir.path(), "B", &store);
    (dir, a, b)
}

/// What a folder holds, for comparing two devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Dir,
    File { hash: String, len: u64, exec: bool },
    Link(String),
}

pub fn snapshot(root: &Path) -> BTreeMap<String, Item> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Item>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            out.insert(rel, Item::Dir);
            walk(root, &path, out);
        } else if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).unwrap();
            out.insert(rel, Item::Link(target.to_str().unwrap().to_owned()));
        } else {
            let bytes = std::fs::read(&path).unwrap();
            out.insert(
                rel,
                Item::File {
                    hash: blake3::hash(&bytes).to_hex().to_string(),
                    len: bytes.len() as u64,
                    exec: meta.permissions().mode() & 0o100 != 0,
                },
            );
        }
    }
}

pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    pouch_backend::conformance::noise(seed, len).to_vec()
}

pub fn set_exec(path: &Path) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Today's date as conflicted copies spell it.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (y, m, d) = pouch_core::names::civil_date(secs);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A `pouch daemon` for a device (with its environment), killed when
/// dropped unless stopped.
pub struct Daemon(pub std::process::Child);

impl Daemon {
    /// Starts it and waits for its control socket.
    pub fn start(device: &Device) -> Self {
        Self::start_with(device, &[])
    }

    /// Starts it with extra `pouch daemon` arguments.
    pub fn start_with(device: &Device, args: &[&str]) -> Self {
        let child = pouch()
            .arg("--config")
            .arg(&device.config)
            .arg("daemon")
            .args(args)
            .envs(device.env.iter().cloned())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let socket = device.config.with_extension("journal.sock");
        wait_for("the daemon's control socket", || socket.exists());
        Self(child)
    }

    /// Stops it with SIGTERM; it must exit cleanly.
    pub fn stop(mut self) {
        let pid = self.0.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.0.wait().unwrap();
        assert!(
            status.success(),
            "the daemon did not stop cleanly: {status}"
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `cond` until it holds; fails after a generous deadline.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The token of every namespace a test's `pouch-store` serves.
pub const TOKEN: &str = "end-to-end-token-0123456789";

/// Starts `pouch-store serve` on a free port of 127.0.0.1 over `data`,
/// namespace `default` with [`TOKEN`].
pub fn start_server(data: &Path) -> PouchStore {
    PouchStore::start(&pouch_store_binary(), data, TOKEN)
}

/// A device on the `pouch-store` at `url`, the token in its environment.
pub fn init_on_server(dir: &Path, name: &str, url: &str) -> Device {
    let device = Device::new(dir, name, vec![("POUCH_STORE_TOKEN".into(), TOKEN.into())]);
    let root = device.root.to_str().unwrap().to_owned();
    device.ok(&["init", "--device", name, "--url", url, "--root", &root]);
    device
}

/// Bytes of every file under `dir`, recursively (what a store takes on
/// disk, apparent size).
pub fn bytes_under(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            bytes_under(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

/// A runtime for the test's own S3 calls, the S3 test server and a fresh
/// bucket on it.
pub fn s3_fixture() -> (
    tokio::runtime::Runtime,
    &'static pouch_testkit::s3::TestS3,
    String,
) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = pouch_testkit::s3::server();
    let bucket = rt.block_on(server.fresh_bucket());
    (rt, server, bucket)
}
