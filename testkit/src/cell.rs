//! A `pouch-store` cell of real processes: PostgreSQL initdb'd into a
//! temp folder on a free port (as the `postgres` user when the tests run as
//! root: PostgreSQL refuses root), `pouch-store node` processes and
//! `pouch-store serve --db` front ends. The `pouch-store` binary is passed
//! in: each test crate knows where its build put it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// The cell's secret between front ends and nodes, in tests.
pub const TOKEN: &str = "cell-test-token-0123456789";
/// The token front ends' `/metrics` wants before it shows the cell's
/// redundancy.
pub const METRICS_TOKEN: &str = "cell-metrics-token-0123456789";

/// PostgreSQL's programs: Debian's, or whatever is on the PATH.
fn pg_bin(name: &str) -> PathBuf {
    let debian = Path::new("/usr/lib/postgresql");
    if let Ok(versions) = std::fs::read_dir(debian) {
        let mut found: Vec<PathBuf> = versions
            .filter_map(|v| v.ok())
            .map(|v| v.path().join("bin").join(name))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        if let Some(newest) = found.pop() {
            return newest;
        }
    }
    PathBuf::from(name)
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs `command` (PostgreSQL's program `what`) and returns its output;
/// panics with what it said unless it succeeded.
fn succeed(command: &mut Command, what: &str) -> std::process::Output {
    let out = command.output().unwrap_or_else(|e| {
        panic!("{what}: {e} (is PostgreSQL installed? ./scripts/test installs it)")
    });
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A command for PostgreSQL's programs, which refuse to run as root: as
/// the `postgres` user then.
fn pg_command(name: &str) -> Command {
    if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(pg_bin(name));
        command
    } else {
        Command::new(pg_bin(name))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A PostgreSQL server of its own, stopped (immediately) when dropped.
pub struct Postgres {
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Postgres {
    /// Makes and starts one; panics with what went wrong otherwise.
    pub fn start() -> Self {
        let dir = Self::folder();
        succeed(
            pg_command("initdb")
                .arg("-D")
                .arg(dir.path().join("data"))
                .args(["-U", "pouch", "--auth=trust", "-E", "UTF8"]),
            "initdb",
        );
        Self::launch(dir)
    }

    /// A temp folder the server's user owns.
    fn folder() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        if running_as_root() {
            let status = Command::new("chown")
                .arg("postgres")
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success());
        }
        dir
    }

    /// Starts a server on the cluster in `dir`'s `data`, on a free port.
    fn launch(dir: tempfile::TempDir) -> Self {
        let port = free_port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1",
            dir.path().display()
        );
        succeed(
            pg_command("pg_ctl")
                .arg("-D")
                .arg(dir.path().join("data"))
                .args(["-o", &options, "-w", "-l"])
                .arg(dir.path().join("log"))
                .arg("start"),
            "pg_ctl start",
        );
        Self { dir, port }
    }

    /// Restarts it (a fast shutdown: sessions are cut), on the same port.
    pub fn restart(&self) {
        succeed(
            pg_command("pg_ctl")
                .arg("-D")
                .arg(self.dir.path().join("data"))
                .args(["-m", "fast", "-w", "-l"])
                // The server's output goes to its log: a pipe it inherited
                // would keep this call waiting for as long as it runs.
                .arg(self.dir.path().join("log"))
                .arg("restart"),
            "pg_ctl restart",
        );
    }

    /// Starts a streaming replica of this server on a port of its own
    /// (`pg_basebackup -R`), and makes replication synchronous: a commit
    /// is acknowledged once the replica has it.
    pub fn start_standby(&self) -> Self {
        let dir = Self::folder();
        succeed(
            pg_command("pg_basebackup")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "pouch",
                    "-R",
                    "-X",
                    "stream",
                    "-D",
                ])
                .arg(dir.path().join("data")),
            "pg_basebackup",
        );
        let standby = Self::launch(dir);
        self.psql("ALTER SYSTEM SET synchronous_standby_names = '*'");
        self.psql("SELECT pg_reload_conf()");
        // Until the standby streams, a synchronous commit would wait.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.psql("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'") != "1"
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the standby never streamed"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        standby
    }

    /// Runs `sql` with psql and returns its output, trimmed.
    pub fn psql(&self, sql: &str) -> String {
        let out = succeed(
            pg_command("psql").args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "pouch",
                "-d",
                "postgres",
                "-tAc",
                sql,
            ]),
            "psql",
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Stops it as a crash would (`pg_ctl stop -m immediate`).
    pub fn crash(&self) {
        let _ = pg_command("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }

    /// Promotes a standby to primary (`pg_ctl promote`), once it accepts
    /// writes.
    pub fn promote(&self) {
        succeed(
            pg_command("pg_ctl")
                .arg("-D")
                .arg(self.dir.path().join("data"))
                .args(["-w", "promote"]),
            "pg_ctl promote",
        );
    }

    /// The URL of database `postgres`.
    pub fn url(&self) -> String {
        format!(
            "postgres://pouch@127.0.0.1:{}/postgres?connect_timeout=5",
            self.port
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.crash();
    }
}

/// `pouch-store cell init` on `url`.
pub fn init(store_bin: &Path, url: &str) {
    let out = Command::new(store_bin)
        .args(["cell", "init", "--db", url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cell init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `command` with the cell's token and quiet logs; see
/// [`crate::process::spawn_listening`].
fn spawn_listening(mut command: Command, prefix: &str) -> (Child, String) {
    command
        .env("POUCH_CELL_TOKEN", TOKEN)
        .env("POUCH_STORE_LOG", "warn");
    crate::process::spawn_listening(&mut command, prefix)
}

/// A `pouch-store node` process, killed when dropped.
pub struct Node {
    child: Child,
    /// Its data folder.
    pub data: PathBuf,
}

impl Node {
    /// Starts one on a free port with its data in `data`, once it listens.
    pub fn start(store_bin: &Path, url: &str, data: &Path) -> Self {
        Self::start_with(store_bin, url, data, &[])
    }

    /// [`Node::start`] with more arguments (`--scrub-every 1`, ...).
    pub fn start_with(store_bin: &Path, url: &str, data: &Path, args: &[&str]) -> Self {
        let mut command = Command::new(store_bin);
        command
            .args(["node", "--db", url, "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(args);
        let (child, _) = spawn_listening(command, "pouch-store node listening on ");
        Self {
            child,
            data: data.to_owned(),
        }
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `pouch-store serve --db` front end, killed when dropped.
pub struct FrontEnd {
    child: Child,
    /// Where clients reach it.
    pub url: String,
}

impl FrontEnd {
    /// Starts one on a free port serving `namespaces` (name, token), with
    /// its config in `dir`, once it listens.
    pub fn start(store_bin: &Path, db: &str, dir: &Path, namespaces: &[(String, String)]) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("front.toml");
        let mut text = format!("data = \"unused\"\nmetrics_token = \"{METRICS_TOKEN}\"\n");
        for (name, token) in namespaces {
            text.push_str(&format!("[namespaces.{name}]\ntoken = \"{token}\"\n"));
        }
        std::fs::write(&config, text).unwrap();
        std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let mut command = Command::new(store_bin);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--db", db, "--config"])
            .arg(&config);
        let (child, addr) = spawn_listening(command, "pouch-store listening on ");
        Self {
            child,
            url: format!("http://{addr}"),
        }
    }
}

impl Drop for FrontEnd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
