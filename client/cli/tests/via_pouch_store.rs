//! Two devices sync end to end through a real `pouch-store` process.

mod common;

use std::path::Path;
use std::process::Stdio;

use common::{
    Daemon, Device, TOKEN, init_on_server, noise, pouch, s3_fixture, snapshot, start_server, today,
    wait_for,
};

/// A device on the server at `url` whose commands carry the token in the
/// environment; `init` must not write it into the config.
fn init(dir: &Path, name: &str, url: &str) -> Device {
    let device = init_on_server(dir, name, url);
    let text = std::fs::read_to_string(&device.config).unwrap();
    assert!(
        !text.contains(TOKEN),
        "init wrote the token into the config"
    );
    device
}

#[test]
fn two_devices_sync_through_a_pouch_store_process() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir.path().join("server-data"));
    let a = init(dir.path(), "A", &server.url);
    let b = init(dir.path(), "B", &server.url);

    std::fs::create_dir_all(a.root.join("photos/2026")).unwrap();
    std::fs::write(a.root.join("photos/2026/big.raw"), noise(5, 9 << 20)).unwrap();
    std::fs::write(a.root.join("notes.txt"), b"from A").unwrap();
    std::os::unix::fs::symlink("notes.txt", a.root.join("link")).unwrap();
    a.sync();
    b.sync();
    assert_eq!(snapshot(&a.root), snapshot(&b.root));

    std::fs::write(b.root.join("notes.txt"), b"B edits").unwrap();
    std::fs::write(a.root.join("notes.txt"), b"A edits").unwrap();
    std::fs::remove_file(b.root.join("link")).unwrap();
    b.sync();
    let report = a.sync();
    assert_eq!(report["conflicts"], 1, "{report}");
    b.sync();
    assert_eq!(snapshot(&a.root), snapshot(&b.root));
    let copy = format!("notes (A's conflicted copy {}).txt", today());
    assert_eq!(std::fs::read(b.root.join(&copy)).unwrap(), b"A edits");
    assert_eq!(std::fs::read(b.root.join("notes.txt")).unwrap(), b"B edits");
    assert!(!a.root.join("link").exists());

    // A device given the token with --token keeps it in its (0600) config
    // and needs no environment.
    // An empty variable: the token can only come from the config.
    let c = Device::new(
        dir.path(),
        "C",
        vec![("POUCH_STORE_TOKEN".into(), String::new())],
    );
    let c_root = c.root.to_str().unwrap().to_owned();
    c.ok(&[
        "init",
        "--device",
        "C",
        "--url",
        &server.url,
        "--token",
        TOKEN,
        "--root",
        &c_root,
    ]);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&c.config).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    c.ok(&["sync"]);
    assert_eq!(std::fs::read(c.path("notes.txt")).unwrap(), b"B edits");

    // A wrong token is refused with a clear message and changes nothing.
    let out = pouch()
        .env("POUCH_STORE_TOKEN", "not-the-token-at-all")
        .arg("--config")
        .arg(&a.config)
        .arg("sync")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("access denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The move the project is named after: two devices on S3, B's daemon
/// syncing all along; A starts a migration to a `pouch-store` process and
/// both devices write files while the copy runs; then the switch. B's
/// daemon waits for its user (another server), who runs `pouch migrate
/// follow`; the daemon then syncs there. Both end on pouch-store byte-identical with
/// every file, and deleting the S3 bucket changes nothing. The token never
/// enters the journal: each device brings its own.
#[test]
fn two_devices_move_from_s3_to_pouch_store_and_the_bucket_can_go() {
    let (rt, server_s3, bucket) = s3_fixture();
    let dir = tempfile::tempdir().unwrap();
    let store = start_server(&dir.path().join("server-data"));
    let mut a = Device::init_s3(dir.path(), "A", &server_s3.endpoint, &bucket);
    let mut b = Device::init_s3(dir.path(), "B", &server_s3.endpoint, &bucket);
    for device in [&mut a, &mut b] {
        device.env.push(("POUCH_STORE_TOKEN".into(), TOKEN.into()));
    }
    for i in 0..24u64 {
        std::fs::write(a.path(&format!("a{i}.bin")), noise(i, 1 << 20)).unwrap();
    }
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    let _daemon = Daemon::start(&b);

    // Held to 4 MiB/s, the copy of 24 MiB takes six seconds at least:
    // time for both devices to write and sync while it runs.
    let started = std::time::Instant::now();
    let mut migration = pouch()
        .arg("--config")
        .arg(&a.config)
        .args(["migrate", "start", "--to", "own", "--url", &store.url])
        .args(["--max-rate", "4"])
        .envs(a.env.iter().cloned())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Written and synced on both devices while the copy runs.
    std::fs::write(b.path("b-during.txt"), b"written on B during the move").unwrap();
    std::fs::write(a.path("a-during.txt"), b"written on A during the move").unwrap();
    a.ok(&["sync"]);
    assert!(
        migration.try_wait().unwrap().is_none(),
        "the copy ended before A's sync did"
    );
    let out = migration.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "migrate start failed: {said}");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(5),
        "the copy ignored --max-rate: {said}"
    );
    wait_for("B's file on A", || {
        a.ok(&["sync"]);
        a.path("b-during.txt").exists()
    });

    a.ok(&["migrate", "switch", "--to", "own", "--url", &store.url]);
    wait_for("B's daemon to say the move waits for its user", || {
        b.ok(&["status"]).contains("waiting for you")
    });
    assert!(
        !std::fs::read_to_string(&b.config)
            .unwrap()
            .contains(&store.url)
    );
    b.ok(&["migrate", "follow"]);
    wait_for("B's daemon to follow the move", || {
        std::fs::read_to_string(&b.config)
            .unwrap()
            .contains(&store.url)
    });
    std::fs::write(a.path("a-after.txt"), b"written on A after the move").unwrap();
    a.ok(&["sync"]);
    wait_for("A's file after the move on B", || {
        b.path("a-after.txt").exists()
    });
    for name in ["a-during.txt", "b-during.txt", "a-after.txt"] {
        assert!(a.path(name).exists() && b.path(name).exists(), "{name}");
    }
    for config in [&a.config, &b.config] {
        let text = std::fs::read_to_string(config).unwrap();
        assert!(text.contains(&store.url), "{text}");
        assert!(!text.contains(TOKEN), "no token was written: {text}");
    }

    // The bucket goes; syncing through pouch-store does not notice.
    rt.block_on(server_s3.delete_bucket(&bucket));
    std::fs::write(b.path("b-final.txt"), b"after the bucket is gone").unwrap();
    wait_for("B's last file on A", || {
        a.ok(&["sync"]);
        std::fs::read(a.path("b-final.txt")).is_ok_and(|c| c == b"after the bucket is gone")
    });
    wait_for("both folders identical", || {
        a.ok(&["sync"]);
        snapshot(&a.root) == snapshot(&b.root)
    });
}

/// And back: two devices on a `pouch-store` process; A starts a migration
/// to S3 (double writes from then on, every read shadowed) and both keep
/// writing and syncing while it runs; then the switch. Both end on S3 with
/// identical folders, and the pouch-store server can go.
#[test]
fn two_devices_move_from_pouch_store_to_s3_while_syncing() {
    let (_rt, server_s3, bucket) = s3_fixture();
    let dir = tempfile::tempdir().unwrap();
    let store = start_server(&dir.path().join("server-data"));
    let mut a = init(dir.path(), "A", &store.url);
    let mut b = init(dir.path(), "B", &store.url);
    for device in [&mut a, &mut b] {
        device.env.extend(common::s3_keys());
    }
    for i in 0..6u64 {
        std::fs::write(a.path(&format!("a{i}.bin")), noise(i, 300_000)).unwrap();
    }
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    let to_s3 = [
        "--to",
        "s3",
        "--bucket",
        &bucket,
        "--endpoint",
        &server_s3.endpoint,
    ];

    let started = a.ok(&[&["migrate", "start", "--shadow-reads", "1"][..], &to_s3].concat());
    assert!(started.contains("copied to s3://"), "{started}");
    // Both keep working during the migration: A through both stores, B
    // through pouch-store alone.
    std::fs::write(b.path("b-during.bin"), noise(50, 200_000)).unwrap();
    b.ok(&["sync"]);
    std::fs::write(a.path("a-during.txt"), b"written on A during the migration").unwrap();
    let report = a.sync();
    assert_eq!(report["downloaded"], 1, "{report}");
    b.ok(&["sync"]);
    let status = a.json(&["status", "--json"]);
    assert!(
        status["backend"]
            .as_str()
            .unwrap()
            .contains("migrating to s3://"),
        "{status}"
    );

    a.ok(&[&["migrate", "switch"][..], &to_s3].concat());
    std::fs::write(b.path("b-after.txt"), b"written on B after the switch").unwrap();
    // Another server: B's user says yes.
    b.ok(&["migrate", "follow"]);
    a.ok(&["sync"]);
    for device in [&a, &b] {
        let status = device.json(&["status", "--json"]);
        assert!(
            status["backend"].as_str().unwrap().starts_with("s3://"),
            "{status}"
        );
    }
    assert_eq!(snapshot(&a.root), snapshot(&b.root));

    // pouch-store goes; syncing through S3 does not notice.
    drop(store);
    std::fs::write(a.path("a-final.txt"), b"after pouch-store is gone").unwrap();
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    assert_eq!(
        std::fs::read(b.path("a-final.txt")).unwrap(),
        b"after pouch-store is gone"
    );
    assert_eq!(snapshot(&a.root), snapshot(&b.root));
}

/// A server the test owns that counts every connection made to it and
/// keeps what was sent: a move pointing here must never reach it.
struct Trap {
    url: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Trap {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
                let mut buf = vec![0u8; 8192];
                let n = std::io::Read::read(&mut stream, &mut buf).unwrap_or(0);
                record
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        });
        Self { url, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// Appends raw `entry` at `seq` to namespace `default` of the server at
/// `url`, with the namespace token: what anyone holding it can do.
fn append_raw(url: &str, seq: u64, entry: &str) {
    use std::io::{Read, Write};
    let addr = url.strip_prefix("http://").unwrap();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "PUT /v1/default/journal/{seq} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{entry}",
        entry.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 2"), "{answer}");
}

/// A hostile move: someone holding the namespace token (or the server
/// itself) appends an entry saying the folder moved to a server they own.
/// No device follows it by itself and none ever connects there, so no
/// token leaks; each says what waits, and a user who did not make the move
/// refuses it and keeps syncing with the configured store.
#[test]
fn a_hostile_move_to_another_server_never_receives_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir.path().join("server-data"));
    let a = init(dir.path(), "A", &server.url);
    let b = init(dir.path(), "B", &server.url);
    std::fs::write(a.path("mine.txt"), b"my file").unwrap();
    a.ok(&["sync"]);
    b.ok(&["sync"]);
    let configs = [&a, &b].map(|d| std::fs::read_to_string(&d.config).unwrap());

    let trap = Trap::start();
    let head = b.json(&["status", "--json"])["remote_head"]
        .as_u64()
        .unwrap();
    let entry = format!(
        r#"{{"v":1,"device":"A","changes":[],"moved_to":{{"kind":"own","url":"{}","namespace":"default"}}}}"#,
        trap.url
    );
    append_raw(&server.url, head + 1, &entry);

    let out = b.run(&["sync"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&trap.url) && stderr.contains("pouch migrate refuse"),
        "{stderr}"
    );
    // A daemon waits too, saying so, and never connects there either.
    let daemon = Daemon::start(&b);
    wait_for("the daemon to say the move waits", || {
        b.ok(&["status"]).contains("waiting for you")
    });
    wait_for(
        "the daemon's status (what the tray shows) to name it",
        || {
            b.json(&["status", "--json"])["daemon"]["move_waiting"]
                .as_str()
                .is_some_and(|to| to.contains(&trap.url))
        },
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    daemon.stop();
    assert!(!a.run(&["sync"]).status.success());
    assert_eq!(
        trap.seen(),
        Vec::<String>::new(),
        "a device connected to the trap"
    );
    for (device, before) in [&a, &b].iter().zip(&configs) {
        assert_eq!(&std::fs::read_to_string(&device.config).unwrap(), before);
    }
    assert_eq!(std::fs::read(b.path("mine.txt")).unwrap(), b"my file");

    // Neither user made that move: both refuse it and go on syncing.
    b.ok(&["migrate", "refuse"]);
    std::fs::write(b.path("after.txt"), b"after the refusal").unwrap();
    b.ok(&["sync"]);
    a.ok(&["migrate", "refuse"]);
    a.ok(&["sync"]);
    assert_eq!(
        std::fs::read(a.path("after.txt")).unwrap(),
        b"after the refusal"
    );
    assert!(!b.ok(&["status"]).contains("waiting for you"));
    assert!(trap.seen().is_empty());
}

/// Accounts: the operator makes one (`pouch-store user add`, the password
/// on standard input); two devices `pouch init --user` with the password
/// (from POUCH_PASSWORD here) and sync the account's home; the config holds
/// each device's own credential, never the password, and is 0600. One
/// device revokes the other (`pouch devices revoke`): its next sync is
/// refused at once with a clear message and its files stay; after `pouch
/// login` it syncs again.
#[test]
fn devices_of_an_account_sync_its_home_and_a_revoked_one_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server-data");
    let store = start_server(&data);
    let password = "correct horse battery";
    add_user(&data, "alice", password, None);
    let device = |name: &str| account_device(dir.path(), &store.url, password, "alice", name);
    let (a, b) = (device("A"), device("B"));
    for device in [&a, &b] {
        let text = std::fs::read_to_string(&device.config).unwrap();
        assert!(
            text.contains("home.alice") && text.contains("pouchdev_"),
            "{text}"
        );
        assert!(!text.contains(password), "the password was kept: {text}");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&device.config).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
    std::fs::write(a.path("from-a.txt"), b"alice's laptop").unwrap();
    a.sync();
    b.sync();
    assert_eq!(
        std::fs::read(b.path("from-a.txt")).unwrap(),
        b"alice's laptop"
    );

    let listed = a.ok(&["devices"]);
    assert!(
        listed.contains("A  since") && listed.contains("B  since"),
        "{listed}"
    );
    a.ok(&["devices", "revoke", "B"]);
    std::fs::write(b.path("from-b.txt"), b"written after the revoke").unwrap();
    let refused = b.run(&["sync"]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("access denied"), "{said}");
    assert!(b.path("from-b.txt").exists());
    a.sync();
    assert!(!a.path("from-b.txt").exists());

    b.ok(&["login"]);
    b.sync();
    a.sync();
    assert_eq!(
        std::fs::read(a.path("from-b.txt")).unwrap(),
        b"written after the revoke"
    );
}

/// Makes account `name` with `password` (and a quota, if given) on the
/// server whose data folder is `data`.
fn add_user(data: &Path, name: &str, password: &str, quota: Option<&str>) {
    pouch_testkit::pouch_store::add_user(
        &common::pouch_store_binary(),
        data,
        name,
        password,
        quota,
    );
}

/// A device `name` of account `user` on the server at `url`, logged in.
fn account_device(dir: &Path, url: &str, password: &str, user: &str, name: &str) -> Device {
    let device = Device::new(dir, name, vec![("POUCH_PASSWORD".into(), password.into())]);
    let root = device.root.to_str().unwrap().to_owned();
    device.ok(&[
        "init", "--device", name, "--url", url, "--user", user, "--root", &root,
    ]);
    device
}

/// A hand-written HTTP/1.1 request to `url` (`http://host:port`): the
/// answer's status and body (the path is sent exactly as given, nothing
/// normalised or escaped).
fn http(
    url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let addr = url.strip_prefix("http://").unwrap();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    // Read to the end of the body its length says (ChromeDriver answers
    // `Connection: close` yet keeps the connection open).
    let mut answer = Vec::new();
    let mut piece = [0u8; 64 << 10];
    let (split, head) = loop {
        let n = stream.read(&mut piece).unwrap();
        assert!(n > 0, "the connection closed before the headers ended");
        answer.extend_from_slice(&piece[..n]);
        if let Some(split) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            break (
                split,
                String::from_utf8_lossy(&answer[..split]).to_lowercase(),
            );
        }
    };
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse::<usize>().unwrap());
    match length {
        Some(length) => {
            while answer.len() < split + 4 + length {
                let n = stream.read(&mut piece).unwrap();
                assert!(n > 0, "the connection closed mid-body");
                answer.extend_from_slice(&piece[..n]);
            }
        }
        None => {
            stream.read_to_end(&mut answer).unwrap();
        }
    }
    let mut rest = &answer[split + 4..];
    if !head.contains("transfer-encoding: chunked") {
        return (status, rest.to_vec());
    }
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16)
                .unwrap();
        if size == 0 {
            return (status, body);
        }
        body.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
        rest = &rest[line_end + 4 + size..];
    }
}

/// A hand-written HTTP request to `url` with bearer `token`; the status
/// line of the answer.
fn raw_request(url: &str, method: &str, path: &str, token: &str, body: &[u8]) -> String {
    let auth = format!("Bearer {token}");
    let (status, _) = http(url, method, path, &[("Authorization", &auth)], body);
    format!("HTTP/1.1 {status}")
}

/// The value of `key = "..."` in a device's config.
fn config_value(device: &Device, key: &str) -> String {
    let text = std::fs::read_to_string(&device.config).unwrap();
    let table: toml::Table = toml::from_str(&text).unwrap();
    match key {
        "token" => table["backend"]["token"].as_str().unwrap().to_owned(),
        "namespace" => table["mounts"].as_array().unwrap()[0]["namespace"]
            .as_str()
            .unwrap()
            .to_owned(),
        _ => unreachable!(),
    }
}

/// One `pouch-store`, three accounts, two devices each. Alice shares a
/// folder of her home with Bob (editor) and Carol (viewer): its files stay
/// where they are on her devices and reach theirs; edits by owner and
/// editor reach everyone; the viewer's edits never leave its device and
/// survive as conflicted copies, and its credential gets 403 for writes by
/// hand; shares do not nest; an upload over quota fails clearly and loses
/// nothing; a transfer leaves exactly one owner; a removed member is cut
/// off at once and keeps its copy.
#[test]
fn a_shared_folder_syncs_between_accounts_by_role() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server-data");
    let store = start_server(&data);
    let password = "correct horse battery";
    add_user(&data, "alice", password, None);
    add_user(&data, "bob", password, Some("300000"));
    add_user(&data, "carol", password, None);
    let device =
        |user: &str, name: &str| account_device(dir.path(), &store.url, password, user, name);
    let (a1, a2) = (device("alice", "a1"), device("alice", "a2"));
    let (b1, b2) = (device("bob", "b1"), device("bob", "b2"));
    let (c1, c2) = (device("carol", "c1"), device("carol", "c2"));
    let everyone = [&a1, &a2, &b1, &b2, &c1, &c2];

    std::fs::create_dir_all(a1.path("Projects/sub")).unwrap();
    std::fs::write(a1.path("Projects/plan.txt"), b"the plan, v1").unwrap();
    std::fs::write(a1.path("Projects/sub/notes.txt"), noise(7, 200_000)).unwrap();
    std::fs::write(a1.path("private.txt"), b"alice only").unwrap();
    a1.sync();
    a2.sync();
    let said = a1.ok(&["share", "Projects", "--with", "bob", "--role", "editor"]);
    assert!(
        said.contains("shared Projects with bob as editor"),
        "{said}"
    );
    a1.ok(&["share", "Projects", "--with", "carol", "--role", "viewer"]);
    // Alice's other device learns of the mount and keeps its files.
    a2.sync();
    assert_eq!(
        std::fs::read(a2.path("Projects/plan.txt")).unwrap(),
        b"the plan, v1"
    );

    let listed = b1.ok(&["shares"]);
    assert!(
        listed.contains("invitation") && listed.contains("Projects"),
        "{listed}"
    );
    b1.ok(&["shares", "accept", "Projects"]);
    c1.ok(&["shares", "accept", "Projects", "--at", "From Alice"]);
    for device in [&b2, &c2] {
        device.ok(&["sync"]);
    }
    for (device, at) in [
        (&b1, "Projects"),
        (&b2, "Projects"),
        (&c1, "From Alice"),
        (&c2, "From Alice"),
    ] {
        assert_eq!(
            std::fs::read(device.path(&format!("{at}/sub/notes.txt"))).unwrap(),
            noise(7, 200_000)
        );
        assert!(!device.path("private.txt").exists());
    }

    // The owner's and the editor's edits reach everyone.
    std::fs::write(b1.path("Projects/plan.txt"), b"the plan, v2 by bob").unwrap();
    b1.ok(&["sync"]);
    std::fs::write(a2.path("Projects/from-alice.txt"), b"hello all").unwrap();
    a2.ok(&["sync"]);
    for device in everyone {
        let _ = device.run(&["sync"]);
    }
    for (device, at) in [(&a1, "Projects"), (&b2, "Projects"), (&c2, "From Alice")] {
        assert_eq!(
            std::fs::read(device.path(&format!("{at}/plan.txt"))).unwrap(),
            b"the plan, v2 by bob"
        );
        assert_eq!(
            std::fs::read(device.path(&format!("{at}/from-alice.txt"))).unwrap(),
            b"hello all"
        );
    }

    // A move from the home into the share is a delete in one and a new
    // file in the other.
    std::fs::rename(a1.path("private.txt"), a1.path("Projects/moved.txt")).unwrap();
    a1.ok(&["sync"]);
    a2.ok(&["sync"]);
    b2.ok(&["sync"]);
    assert!(!a2.path("private.txt").exists());
    for device in [&a2, &b2] {
        assert_eq!(
            std::fs::read(device.path("Projects/moved.txt")).unwrap(),
            b"alice only"
        );
    }

    // The viewer's edits stay on its device, as conflicted copies.
    std::fs::write(c1.path("From Alice/plan.txt"), b"carol's idea").unwrap();
    std::fs::write(c1.path("From Alice/carol.txt"), b"carol's own").unwrap();
    std::fs::remove_file(c1.path("From Alice/from-alice.txt")).unwrap();
    let viewer = c1.run(&["sync"]);
    let said = String::from_utf8_lossy(&viewer.stderr);
    assert!(!viewer.status.success());
    assert!(said.contains("may only view"), "{said}");
    assert_eq!(
        std::fs::read(c1.path("From Alice/plan.txt")).unwrap(),
        b"the plan, v2 by bob"
    );
    assert_eq!(
        std::fs::read(c1.path("From Alice/from-alice.txt")).unwrap(),
        b"hello all"
    );
    let copies: Vec<String> = std::fs::read_dir(c1.path("From Alice"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("conflicted copy"))
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(
        std::fs::read(c1.path(&format!("From Alice/{}", copies[0]))).unwrap(),
        b"carol's idea"
    );
    assert!(c1.path("From Alice/carol.txt").exists());
    let _ = c1.run(&["sync"]);
    let status = c1.ok(&["status"]);
    assert!(
        status.contains("shared:  Projects at From Alice (viewer)")
            && status.contains("carol.txt: kept on this device only"),
        "{status}"
    );
    for device in [&a1, &b1] {
        device.ok(&["sync"]);
        assert!(!device.path("Projects/carol.txt").exists());
        assert_eq!(
            std::fs::read(device.path("Projects/plan.txt")).unwrap(),
            b"the plan, v2 by bob"
        );
    }

    // By hand, with the viewer's credential: reads yes, writes 403.
    let (token, share) = (config_value(&c1, "token"), config_value(&c1, "namespace"));
    assert!(
        raw_request(
            &store.url,
            "GET",
            &format!("/v1/{share}/journal?after=0"),
            &token,
            b""
        )
        .contains("200")
    );
    for (method, path) in [
        ("PUT", format!("/v1/{share}/journal/1000")),
        ("POST", format!("/v1/{share}/blocks")),
        ("POST", format!("/v1/{share}/blocks/delete")),
        ("PUT", format!("/v1/{share}/snapshot")),
    ] {
        let status = raw_request(&store.url, method, &path, &token, b"{}");
        assert!(status.contains("403"), "{method} {path}: {status}");
    }
    // Nor another account's home, with any role.
    let status = raw_request(
        &store.url,
        "GET",
        "/v1/home.alice/journal?after=0",
        &token,
        b"",
    );
    assert!(status.contains("403"), "{status}");

    // No shared folder inside another, from either side.
    for (device, folder) in [(&a1, "Projects/sub"), (&b1, "Projects/sub")] {
        let refused = device.run(&["share", folder, "--with", "carol"]);
        assert!(!refused.status.success());
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(said.contains("do not nest"), "{said}");
    }

    // Over quota: the share Bob mounted counts (200 kB of it) with his
    // home, so 150 kB more is too much; a clear message, the file stays.
    std::fs::write(b1.path("big.bin"), noise(8, 150_000)).unwrap();
    let over = b1.run(&["sync"]);
    assert!(!over.status.success());
    let said = String::from_utf8_lossy(&over.stderr);
    assert!(said.contains("over its quota"), "{said}");
    assert_eq!(
        std::fs::read(b1.path("big.bin")).unwrap(),
        noise(8, 150_000)
    );
    std::fs::remove_file(b1.path("big.bin")).unwrap();

    // Ownership moves to Bob: exactly one owner.
    a1.ok(&["shares", "transfer", "Projects", "bob"]);
    let listed = c2.ok(&["shares"]);
    assert_eq!(listed.matches("(owner)").count(), 1, "{listed}");
    assert!(
        listed.contains("bob (owner)") && listed.contains("alice (editor)"),
        "{listed}"
    );
    assert!(
        !a1.run(&["shares", "remove", "Projects", "carol"])
            .status
            .success()
    );

    // Bob removes Carol: her devices are cut off at once, their copies stay.
    b1.ok(&["shares", "remove", "Projects", "carol"]);
    let status = raw_request(
        &store.url,
        "GET",
        &format!("/v1/{share}/journal?after=0"),
        &token,
        b"",
    );
    assert!(status.contains("403"), "{status}");
    std::fs::write(a1.path("Projects/after.txt"), b"carol is gone").unwrap();
    a1.ok(&["sync"]);
    let cut = c2.run(&["sync"]);
    let said = String::from_utf8_lossy(&cut.stderr);
    assert!(said.contains("no longer has the shared folder"), "{said}");
    assert!(!c2.path("From Alice/after.txt").exists());
    assert_eq!(
        std::fs::read(c2.path("From Alice/plan.txt")).unwrap(),
        b"the plan, v2 by bob"
    );
    b2.ok(&["sync"]);
    assert_eq!(
        std::fs::read(b2.path("Projects/after.txt")).unwrap(),
        b"carol is gone"
    );
}

/// A headless Chromium (Debian's `chromium`) driven through ChromeDriver
/// (`chromium-driver`): WebDriver's JSON over HTTP.
struct Browser {
    driver: std::process::Child,
    url: String,
    session: String,
}

impl Browser {
    /// Starts one that saves downloads into `downloads`.
    fn start(downloads: &Path, profile: &Path) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = std::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; scripts/test installs it)");
        let url = format!("http://127.0.0.1:{port}");
        wait_for("chromedriver to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        let capabilities = serde_json::json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update",
                         "--disable-sync", format!("--user-data-dir={}", profile.display())],
                "prefs": {
                    "download.default_directory": downloads,
                    "download.prompt_for_download": false,
                    "download.directory_upgrade": true,
                    "safebrowsing.enabled": false,
                },
            },
        }}});
        let (status, body) = http(
            &url,
            "POST",
            "/session",
            &[("Content-Type", "application/json")],
            capabilities.to_string().as_bytes(),
        );
        let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status, 200, "no browser session: {answer}");
        let session = answer["value"]["sessionId"].as_str().unwrap().to_owned();
        Browser {
            driver,
            url,
            session,
        }
    }

    fn call(&self, method: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
        let (status, answer) = http(
            &self.url,
            method,
            &format!("/session/{}{path}", self.session),
            &[("Content-Type", "application/json")],
            // A GET has no body (ChromeDriver refuses `null`).
            if body.is_null() {
                Vec::new()
            } else {
                body.to_string().into_bytes()
            }
            .as_slice(),
        );
        let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(status, 200, "{method} {path}: {answer}");
        answer["value"].clone()
    }

    fn go(&self, url: &str) {
        self.call("POST", "/url", serde_json::json!({ "url": url }));
    }

    fn source(&self) -> String {
        self.call("GET", "/source", serde_json::Value::Null)
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The elements `css` selects, by their WebDriver ids.
    fn elements(&self, css: &str) -> Vec<String> {
        let found = self.call(
            "POST",
            "/elements",
            serde_json::json!({"using": "css selector", "value": css}),
        );
        found
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                e["element-6066-11e4-a52e-4f735466cecf"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    fn text(&self, element: &str) -> String {
        self.call(
            "GET",
            &format!("/element/{element}/text"),
            serde_json::Value::Null,
        )
        .as_str()
        .unwrap()
        .to_owned()
    }

    fn click(&self, element: &str) {
        self.call(
            "POST",
            &format!("/element/{element}/click"),
            serde_json::json!({}),
        );
    }

    fn type_into(&self, element: &str, text: &str) {
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            serde_json::json!({ "text": text }),
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http(
            &self.url,
            "DELETE",
            &format!("/session/{}", self.session),
            &[],
            b"",
        );
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The file `name` once a download into `dir` finished.
fn downloaded(dir: &Path, name: &str) -> Vec<u8> {
    let path = dir.join(name);
    wait_for("the download to finish", || {
        path.exists()
            && !std::fs::read_dir(dir).unwrap().any(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".crdownload")
            })
    });
    std::fs::read(path).unwrap()
}

/// Share links in a real browser: a folder's link opens a page listing its
/// files (nothing outside it), a download is the file byte for byte and
/// the .zip holds every file; a wrong password, an expired link and a
/// revoked link are refused; no request reaches outside the link's path.
#[test]
fn share_links_work_in_a_browser_and_reach_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server-data");
    let store = start_server(&data);
    let password = "correct horse battery";
    add_user(&data, "alice", password, None);
    let a = Device::new(
        dir.path(),
        "a1",
        vec![
            ("POUCH_PASSWORD".into(), password.into()),
            ("POUCH_LINK_PASSWORD".into(), "open sesame".into()),
        ],
    );
    let root = a.root.to_str().unwrap().to_owned();
    a.ok(&[
        "init", "--device", "a1", "--url", &store.url, "--user", "alice", "--root", &root,
    ]);
    std::fs::create_dir_all(a.path("Docs/img")).unwrap();
    std::fs::write(a.path("Docs/report.txt"), b"the quarterly report").unwrap();
    std::fs::write(a.path("Docs/img/photo.bin"), noise(9, 300_000)).unwrap();
    std::fs::write(a.path("secret.txt"), b"not for links").unwrap();
    a.sync();
    let link = |args: &[&str]| {
        let out = a.run(&[&["share", "link"][..], args].concat());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = String::from_utf8_lossy(&out.stderr)
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_owned();
        (String::from_utf8(out.stdout).unwrap().trim().to_owned(), id)
    };
    let (folder, _) = link(&["Docs"]);
    let (locked, _) = link(&["Docs", "--password"]);
    let (expiring, _) = link(&["Docs/report.txt", "--expires", "1s"]);
    let (revoked, revoked_id) = link(&["Docs"]);
    let (one_file, _) = link(&["Docs/report.txt"]);
    a.ok(&["share", "unlink", &revoked_id]);
    assert!(a.ok(&["share", "links"]).contains("home.alice:/Docs"));

    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let browser = Browser::start(&downloads, &dir.path().join("profile"));
    browser.go(&folder);
    let listed: Vec<String> = browser
        .elements("a.file")
        .iter()
        .map(|e| browser.text(e))
        .collect();
    assert_eq!(
        listed,
        [
            "Docs/img/photo.bin".replacen("Docs/", "", 1),
            "report.txt".into()
        ]
    );
    assert!(!browser.source().contains("secret"));
    let photo = browser.elements("a.file")[0].clone();
    browser.click(&photo);
    assert_eq!(downloaded(&downloads, "photo.bin"), noise(9, 300_000));
    let zip = browser.elements("#zip")[0].clone();
    browser.click(&zip);
    downloaded(&downloads, "Docs.zip");
    let unzip = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); \
             print(sorted(z.namelist())); sys.stdout.flush(); \
             sys.stdout.buffer.write(z.read('img/photo.bin'))",
        ])
        .arg(downloads.join("Docs.zip"))
        .output()
        .unwrap();
    assert!(
        unzip.status.success(),
        "{}",
        String::from_utf8_lossy(&unzip.stderr)
    );
    let (names, bytes) = unzip
        .stdout
        .split_at(unzip.stdout.iter().position(|b| *b == b'\n').unwrap() + 1);
    assert_eq!(
        String::from_utf8_lossy(names).trim(),
        "['img/photo.bin', 'report.txt']"
    );
    assert_eq!(bytes, noise(9, 300_000));

    // A password: wrong, then right.
    browser.go(&locked);
    assert!(browser.elements("a.file").is_empty());
    let field = browser.elements("input[name=password]")[0].clone();
    browser.type_into(&field, "open sesame?");
    browser.click(&browser.elements("button")[0]);
    // The answer to a wrong one is held half a second.
    wait_for("the wrong password's answer", || {
        browser.source().contains("Wrong password")
    });
    assert!(browser.elements("a.file").is_empty());
    let field = browser.elements("input[name=password]")[0].clone();
    browser.type_into(&field, "open sesame");
    browser.click(&browser.elements("button")[0]);
    wait_for("the unlocked page", || {
        browser.elements("a.file").len() == 2
    });

    // Expired and revoked links show nothing.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    browser.go(&expiring);
    assert!(browser.source().contains("expired"));
    assert!(browser.elements("a.file").is_empty());
    browser.go(&revoked);
    assert!(browser.source().contains("does not work"));
    assert!(browser.elements("a.file").is_empty());

    // By hand: nothing outside the link's path, however the path is spelt.
    let path_of = |url: &str| url.strip_prefix(&store.url).unwrap().to_owned();
    let (folder, one_file) = (path_of(&folder), path_of(&one_file));
    assert_eq!(
        http(
            &store.url,
            "GET",
            &format!("{folder}/f/report.txt"),
            &[],
            b""
        )
        .1,
        b"the quarterly report"
    );
    for attempt in [
        format!("{folder}/f/../secret.txt"),
        format!("{folder}/f/..%2Fsecret.txt"),
        format!("{folder}/f/%2e%2e/secret.txt"),
        format!("{folder}/f/%2e%2e%2fsecret.txt"),
        format!("{folder}/f/img/../../secret.txt"),
        format!("{folder}/f//secret.txt"),
        format!("{folder}/f/%2Fsecret.txt"),
        format!("{one_file}/f/../img/photo.bin"),
        format!("{one_file}/f/img%2Fphoto.bin"),
        format!("{one_file}/f/img/photo.bin"),
    ] {
        let (status, body) = http(&store.url, "GET", &attempt, &[], b"");
        assert!(status == 404 || status == 400, "{attempt}: {status}");
        assert!(
            !body.windows(13).any(|w| w == b"not for links"),
            "{attempt}"
        );
        assert_ne!(body, noise(9, 300_000), "{attempt}");
    }
    // The password is asked for by every route of a locked link.
    let locked = path_of(&locked);
    for route in ["", "/zip", "/f/report.txt"] {
        let (status, body) = http(&store.url, "GET", &format!("{locked}{route}"), &[], b"");
        assert_eq!(status, 401, "{route}");
        assert!(!body.windows(8).any(|w| w == b"quarterl"), "{route}");
    }
}

/// A running daemon syncs the account's shared folders too: one accepted
/// on another device is mounted within seconds, the owner's edits arrive
/// by themselves, and its own edits there go up.
#[test]
fn a_daemon_mounts_and_syncs_a_shared_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server-data");
    let store = start_server(&data);
    let password = "correct horse battery";
    add_user(&data, "alice", password, None);
    add_user(&data, "bob", password, None);
    let device =
        |user: &str, name: &str| account_device(dir.path(), &store.url, password, user, name);
    let (a1, b1, b2) = (
        device("alice", "a1"),
        device("bob", "b1"),
        device("bob", "b2"),
    );
    std::fs::create_dir_all(a1.path("Team")).unwrap();
    std::fs::write(a1.path("Team/first.txt"), b"first").unwrap();
    a1.sync();
    a1.ok(&["share", "Team", "--with", "bob"]);
    let daemon = Daemon::start(&b2);
    b1.ok(&["shares", "accept", "Team"]);
    wait_for("the daemon to mount the share", || {
        std::fs::read(b2.path("Team/first.txt")).is_ok_and(|b| b == b"first")
    });
    std::fs::write(a1.path("Team/second.txt"), b"second").unwrap();
    a1.ok(&["sync"]);
    wait_for("the owner's edit", || {
        std::fs::read(b2.path("Team/second.txt")).is_ok_and(|b| b == b"second")
    });
    std::fs::write(b2.path("Team/from-b2.txt"), b"bob's daemon").unwrap();
    wait_for("the daemon's upload", || {
        a1.ok(&["sync"]);
        std::fs::read(a1.path("Team/from-b2.txt")).is_ok_and(|b| b == b"bob's daemon")
    });

    // The home's control socket (what the tray and `pouch pause` speak to)
    // shows the mount, and pausing it pauses the mount too.
    let daemon_status = || -> serde_json::Value {
        let status: serde_json::Value =
            serde_json::from_str(&b2.ok(&["status", "--json"])).unwrap();
        status["daemon"].clone()
    };
    let seen = daemon_status();
    let mounts = seen["mounts"].as_array().unwrap();
    assert_eq!(mounts.len(), 1, "{seen:#}");
    assert_eq!(
        (&mounts[0]["name"], &mounts[0]["path"], &mounts[0]["role"]),
        (&"Team".into(), &"Team".into(), &"editor".into())
    );
    assert!(mounts[0]["status"]["syncs"].as_u64() >= Some(1), "{seen:#}");
    b2.ok(&["pause"]);
    let seen = daemon_status();
    assert_eq!(
        (&seen["paused"], &seen["mounts"][0]["status"]["paused"]),
        (&true.into(), &true.into()),
        "{seen:#}"
    );
    std::fs::write(a1.path("Team/while-paused.txt"), b"later").unwrap();
    a1.ok(&["sync"]);
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(
        !b2.path("Team/while-paused.txt").exists(),
        "a paused daemon's mount went on syncing"
    );
    b2.ok(&["resume"]);
    wait_for("the mount to sync again on resume", || {
        std::fs::read(b2.path("Team/while-paused.txt")).is_ok_and(|b| b == b"later")
    });
    daemon.stop();
}

/// The mounted path of a device's (first attached) shared folder, if any.
fn mounted_at(device: &Device) -> Option<String> {
    let text = std::fs::read_to_string(&device.config).unwrap();
    let table: toml::Table = toml::from_str(&text).unwrap();
    table
        .get("mounts")?
        .as_array()?
        .iter()
        .find(|m| !m.get("detached").and_then(|d| d.as_bool()).unwrap_or(false))
        .map(|m| m["path"].as_str().unwrap().to_owned())
}

/// Every file under `dir`, by its path relative to it, with its bytes.
fn files_under(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(folder) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                files.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// A seeded random run (`POUCH_SEED` repeats one): members join, leave,
/// unmount and mount again at new places while the others write into the
/// shared folder and sync in any order. At the end every mounted copy is
/// the same, and every file any editor wrote is in it or, for a writer no
/// longer mounted, still on the writer's disk.
#[test]
fn members_coming_and_going_while_others_edit_converge_and_lose_nothing() {
    let seed: u64 = std::env::var("POUCH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("POUCH_SEED={seed}");
    let mut state = seed;
    let mut next = move |n: usize| {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % n as u64) as usize
    };

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server-data");
    let store = start_server(&data);
    let password = "correct horse battery";
    for user in ["alice", "bob", "carol"] {
        add_user(&data, user, password, None);
    }
    let device = |user: &str, name: &str| {
        (
            user.to_owned(),
            account_device(dir.path(), &store.url, password, user, name),
        )
    };
    let devices = [
        device("alice", "a1"),
        device("alice", "a2"),
        device("bob", "b1"),
        device("bob", "b2"),
        device("carol", "c1"),
    ];
    let (_, a1) = &devices[0];
    std::fs::create_dir_all(a1.path("S")).unwrap();
    std::fs::write(a1.path("S/start.txt"), b"start").unwrap();
    a1.sync();
    a1.ok(&["share", "S", "--with", "bob"]);
    a1.ok(&["share", "S", "--with", "carol"]);
    devices[2].1.ok(&["shares", "accept", "S"]);
    devices[4].1.ok(&["shares", "accept", "S"]);

    // Every file written, with the device that wrote it.
    let mut written: Vec<(usize, String, Vec<u8>)> = Vec::new();
    let mut places = 0;
    for round in 0..120 {
        let d = next(devices.len());
        let (user, device) = &devices[d];
        match next(10) {
            0..=4 => {
                if let Some(at) = mounted_at(device) {
                    let name = format!(
                        "{}-{round}.txt",
                        device.root.file_name().unwrap().to_string_lossy()
                    );
                    let content = format!("round {round} by {user}").into_bytes();
                    std::fs::write(device.path(&format!("{at}/{name}")), &content).unwrap();
                    written.push((d, name, content));
                }
                let _ = device.run(&["sync"]);
            }
            5 | 6 => {
                let _ = device.run(&["sync"]);
            }
            7 if user != "alice" => {
                let _ = device.run(&["shares", "unmount", "S"]);
            }
            8 if user != "alice" => {
                let _ = device.run(&["shares", "leave", "S"]);
            }
            _ if user != "alice" => {
                // Back in: invited again if need be, mounted at a new place.
                let _ = devices[0].1.run(&["share", "S", "--with", user]);
                places += 1;
                let _ = device.run(&["shares", "accept", "S", "--at", &format!("S{places}")]);
            }
            _ => {
                let _ = device.run(&["sync"]);
            }
        }
    }

    // Everyone syncs until quiet; every mounted copy is then the same.
    for _ in 0..3 {
        for (_, device) in &devices {
            let _ = device.run(&["sync"]);
        }
    }
    let mut copies = Vec::new();
    for (i, (_, device)) in devices.iter().enumerate() {
        if let Some(at) = mounted_at(device) {
            copies.push((i, files_under(&device.path(&at))));
        }
    }
    assert!(!copies.is_empty());
    for (i, copy) in &copies {
        assert_eq!(
            copy, &copies[0].1,
            "device {i}'s copy differs (POUCH_SEED={seed})"
        );
    }
    let share = &copies[0].1;
    eprintln!(
        "{} files written, {} mounted copies of {} files at the end",
        written.len(),
        copies.len(),
        share.len()
    );
    assert_eq!(
        share.get("start.txt").map(Vec::as_slice),
        Some(&b"start"[..])
    );
    for (d, name, content) in &written {
        let in_share = share.values().any(|c| c == content);
        let on_disk = files_under(&devices[*d].1.root)
            .iter()
            .any(|(path, c)| path.ends_with(name.as_str()) && c == content);
        assert!(
            in_share || on_disk,
            "{name} by device {d} is lost (POUCH_SEED={seed})"
        );
    }
}
