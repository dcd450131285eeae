//! Child processes for multi-process tests: the test binary re-runs itself
//! with one `child_*` test selected and a role in the environment, so the
//! tests need no extra binaries. Children speak to the parent in stdout
//! lines that start with `@@ ` (the test harness prints other lines).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Lines};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

const ROLE: &str = "POUCH_TEST_ROLE";
const STORE: &str = "POUCH_TEST_STORE";

/// Runs `body` with the store folder when this process is a child in
/// `role`, then exits; does nothing in a normal test run.
pub fn run(role: &str, body: impl FnOnce(&Path)) {
    if std::env::var(ROLE).as_deref() != Ok(role) {
        return;
    }
    let dir = PathBuf::from(std::env::var(STORE).expect("store folder"));
    body(&dir);
    std::process::exit(0);
}

/// Starts a child in `role` on store `dir` with extra environment.
pub fn spawn(role: &str, dir: &Path, env: &[(&str, String)]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            &format!("child_{role}"),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, role)
        .env(STORE, dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn child")
}

/// Prints a protocol line for the parent.
pub fn say(line: impl std::fmt::Display) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "@@ {line}").unwrap();
    out.flush().unwrap();
}

/// The protocol lines of a child, without the `@@ ` marker.
pub struct Said(Lines<BufReader<ChildStdout>>);

impl Said {
    /// Reads the child's stdout.
    pub fn of(child: &mut Child) -> Self {
        Self(BufReader::new(child.stdout.take().unwrap()).lines())
    }
}

impl Iterator for Said {
    type Item = String;
    fn next(&mut self) -> Option<String> {
        loop {
            let line = self.0.next()?.ok()?;
            // libtest prints "test child_x ... " without a newline before
            // the child's first line, so the marker may be mid-line.
            if let Some((_, said)) = line.split_once("@@ ") {
                return Some(said.to_owned());
            }
        }
    }
}
