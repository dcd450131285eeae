//! A real `pouch-store` process on port 0: the conformance suite through
//! the HTTP client, auth, metrics, verify, and graceful shutdown.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use pouch_backend::conformance::{Capabilities, run_all};
use pouch_backend::{Backend, BackendExt, Block, Error, Seq};
use pouch_backend_own::RemoteBackend;

const TOKEN: &str = "test-token-0123456789";
const METRICS_TOKEN: &str = "metrics-token-0123456789";

/// A running server, killed when dropped.
struct ServerProcess {
    child: Child,
    url: String,
    data: PathBuf,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, namespaces: usize) -> ServerProcess {
    start_with(dir, namespaces, "", "")
}

/// Starts a server; `top` holds extra top-level TOML keys for its config
/// and `tables` extra tables.
fn start_with(dir: &Path, namespaces: usize, top: &str, tables: &str) -> ServerProcess {
    let data = dir.join("data");
    let config = dir.join("server.toml");
    let mut text = format!(
        "data = {:?}\nmetrics_token = \"{METRICS_TOKEN}\"\n",
        data.to_str().unwrap()
    );
    // Top-level keys must come before the namespace tables.
    text.push_str(top);
    for i in 0..namespaces {
        text.push_str(&format!("[namespaces.ns{i}]\ntoken = \"{TOKEN}-{i}\"\n"));
    }
    text.push_str(tables);
    std::fs::write(&config, text).unwrap();
    let (child, addr) = pouch_testkit::process::spawn_listening(
        Command::new(env!("CARGO_BIN_EXE_pouch-store"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .stderr(Stdio::null()),
        "pouch-store listening on ",
    );
    ServerProcess {
        child,
        url: format!("http://{addr}"),
        data,
    }
}

/// The server's `/metrics` page, as the holder of the metrics token sees
/// it.
async fn metrics(server: &ServerProcess) -> String {
    pouch_backend::tls::install_provider();
    reqwest::Client::new()
        .get(format!("{}/metrics", server.url))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Sends `head` (a request line and headers, no blank line) and whatever
/// body bytes follow, then reads the status line of the answer. Waits at
/// most 10 s: an answer that needs the body never comes.
async fn raw_status(server: &ServerProcess, head: &str, body: &[u8]) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = server.url.strip_prefix("http://").unwrap();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("{head}\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    stream.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
            if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    text.lines().next().map(str::to_owned)
}

fn client(server: &ServerProcess, ns: usize) -> RemoteBackend {
    RemoteBackend::new(&server.url, &format!("ns{ns}"), format!("{TOKEN}-{ns}")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_without_the_token_gets_401_before_any_body_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), 1);
    // A body of 50 MB is announced and never sent: the answer must come
    // from the headers alone.
    for head in [
        "POST /v1/ns0/blocks HTTP/1.1\r\nContent-Length: 50000000",
        "POST /v1/ns0/blocks/has HTTP/1.1\r\nContent-Length: 50000000",
        "PUT /v1/ns0/journal/1 HTTP/1.1\r\nContent-Length: 50000000",
        "PUT /v1/ns0/snapshot HTTP/1.1\r\nContent-Length: 50000000\r\nAuthorization: Bearer wrong-token-0123456789",
    ] {
        let status = raw_status(&server, head, b"").await;
        assert_eq!(
            status.as_deref(),
            Some("HTTP/1.1 401 Unauthorized"),
            "{head}"
        );
    }
    // Malformed requests from a stranger learn nothing of what is wrong.
    for head in [
        "PUT /v1/ns0/journal/not-a-number HTTP/1.1\r\nContent-Length: 1",
        "GET /v1/ns0/journal?after=minus-one HTTP/1.1",
        "GET /v1/ns0/blocks/not-an-id HTTP/1.1",
        "GET /v1/nobody/journal/wait?after=0 HTTP/1.1",
    ] {
        let status = raw_status(&server, head, b"x").await;
        assert_eq!(
            status.as_deref(),
            Some("HTTP/1.1 401 Unauthorized"),
            "{head}"
        );
    }
    // The owner of the token still hears what is wrong.
    let status = raw_status(
        &server,
        &format!("GET /v1/ns0/blocks/not-an-id HTTP/1.1\r\nAuthorization: Bearer {TOKEN}-0"),
        b"",
    )
    .await;
    assert_eq!(status.as_deref(), Some("HTTP/1.1 400 Bad Request"));

    // /metrics names no namespace to a caller without its token.
    pouch_backend::tls::install_provider();
    let public = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        public.contains("pouch_store_unauthorized_total"),
        "{public}"
    );
    assert!(
        !public.contains("ns0") && !public.contains("namespace"),
        "{public}"
    );
    assert!(metrics(&server).await.contains("namespace=\"ns0\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_in_flight_stay_within_the_budget() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    // The smallest budget allowed: one largest body.
    let server = start_with(dir.path(), 1, "bodies_in_flight = 67108864\n", "");
    let addr = server.url.strip_prefix("http://").unwrap().to_owned();
    // An authorized upload announces the largest body and sends nothing:
    // it holds the whole budget.
    let mut hog = tokio::net::TcpStream::connect(&addr).await.unwrap();
    hog.write_all(
        format!(
            "POST /v1/ns0/blocks HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}-0\r\nContent-Length: 67108864\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let good = client(&server, 0);
    let id = Block::encode(Bytes::from_static(b"x")).id();
    // A request with a body waits for room; one without does not.
    assert!(
        tokio::time::timeout(std::time::Duration::from_secs(2), good.has_blocks(&[id]))
            .await
            .is_err(),
        "a body was admitted beyond the budget"
    );
    assert_eq!(good.journal_head().await.unwrap(), Seq::ZERO);
    // The hog goes away: its reservation is returned.
    drop(hog);
    let has = tokio::time::timeout(std::time::Duration::from_secs(20), good.has_blocks(&[id]))
        .await
        .expect("the budget came back");
    assert_eq!(has.unwrap(), [false]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pouch_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    // One namespace per check.
    let server = start(dir.path(), 24);
    let mut n = 0;
    run_all(
        Capabilities {
            push: true,
            gc: true,
        },
        || {
            let backend = Arc::new(client(&server, n)) as Arc<dyn Backend>;
            n += 1;
            async move { backend }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_tokens_get_401_and_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), 2);
    let good = client(&server, 0);
    let block = Block::encode(Bytes::from_static(b"secret"));
    good.put_blocks(vec![block.clone()]).await.unwrap();

    let wrong = RemoteBackend::new(&server.url, "ns0", format!("{TOKEN}-1")).unwrap();
    let unknown = RemoteBackend::new(&server.url, "nope", format!("{TOKEN}-0")).unwrap();
    for bad in [&wrong, &unknown] {
        assert!(matches!(
            bad.get_block(block.id()).await,
            Err(Error::Unauthorized)
        ));
        assert!(matches!(
            bad.has_blocks(&[block.id()]).await,
            Err(Error::Unauthorized)
        ));
        assert!(matches!(
            bad.append(Seq(1), Bytes::from_static(b"x")).await,
            Err(Error::Unauthorized)
        ));
        assert!(matches!(
            bad.put_blocks(vec![Block::encode(Bytes::from_static(b"intruder"))])
                .await,
            Err(Error::Unauthorized)
        ));
    }
    pouch_backend::tls::install_provider();
    let no_token = reqwest::Client::new()
        .get(format!("{}/v1/ns0/blocks/{}", server.url, block.id()))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 401);
    assert_eq!(good.journal_head().await.unwrap(), Seq::ZERO);
    let intruder = Block::encode(Bytes::from_static(b"intruder"));
    assert_eq!(good.has_blocks(&[intruder.id()]).await.unwrap(), [false]);

    let metrics = metrics(&server).await;
    assert!(
        metrics.contains("pouch_store_unauthorized_total 9"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pouch_store_blocks{namespace=\"ns0\"} 1"),
        "{metrics}"
    );
    assert!(!metrics.contains(TOKEN), "a token leaked into /metrics");
}

/// Batched puts stream in and are checked as they arrive: a body over the
/// server's limit, or one that ends inside a block, is refused and stores
/// nothing; a good 40 MiB batch streams through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_puts_are_bounded_and_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), 1);
    let backend = client(&server, 0);
    let big: Vec<Block> = (0..10)
        .map(|i| Block::encode(pouch_backend::conformance::noise(500 + i, 4 << 20)))
        .collect();
    backend.put_blocks(big.clone()).await.unwrap();
    let ids: Vec<_> = big.iter().map(Block::id).collect();
    assert!(backend.has_blocks(&ids).await.unwrap().iter().all(|&h| h));

    pouch_backend::tls::install_provider();
    let http = reqwest::Client::new();
    let post = |body: Vec<u8>| {
        http.post(format!("{}/v1/ns0/blocks", server.url))
            .bearer_auth(format!("{TOKEN}-0"))
            .body(body)
            .send()
    };
    let over: Vec<Block> = (0..5)
        .map(|i| Block::encode(pouch_backend::conformance::noise(600 + i, 14 << 20)))
        .collect();
    // The server answers as soon as the limit is passed and closes the
    // connection without reading the rest, so the client either reads the
    // 400 or, when the close beats it, fails writing the body. Both are a
    // refusal; what matters is below: nothing of the batch was stored.
    match post(pouch_backend_own::wire::encode_blocks(&over).to_vec()).await {
        Ok(too_big) => assert_eq!(too_big.status(), 400, "70 MiB is over the 64 MiB limit"),
        Err(e) => assert!(
            e.is_request() && !e.is_connect() && !e.is_timeout(),
            "the over-limit body should be cut off, not fail otherwise: {e:?}"
        ),
    }
    let cut = pouch_backend_own::wire::encode_blocks(&over[..1]);
    let truncated = post(cut[..cut.len() - 10].to_vec()).await.unwrap();
    assert_eq!(truncated.status(), 400);
    let over_ids: Vec<_> = over.iter().map(Block::id).collect();
    assert_eq!(backend.has_blocks(&over_ids).await.unwrap(), [false; 5]);
}

/// Flips one payload byte of `block`, found through the store's own idea
/// of where it is.
fn damage(store_dir: &Path, block: &Block) {
    use std::os::unix::fs::FileExt;
    let store = pouch_backend_own::storage::Store::open(store_dir, Default::default()).unwrap();
    let loc = store.locate(block.id()).unwrap().unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(store.volume_path(loc.volume))
        .unwrap();
    let at = loc.payload_offset + 777;
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[!byte[0]], at).unwrap();
}

/// A damaged block is refused over HTTP and quarantined: the server then
/// says it is missing, `verify` counts it, and a client's put heals it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_is_refused_over_http_quarantined_and_healed_by_a_put() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(
        dir.path(),
        1,
        "",
        "[maintenance]\nscrub_bytes_per_sec = 0\n",
    );
    let backend = client(&server, 0);
    let raw = pouch_backend::conformance::noise(1, 200_000);
    let block = Block::encode(raw.clone());
    let fine = Block::encode(Bytes::from_static(b"fine"));
    backend
        .put_blocks(vec![block.clone(), fine.clone()])
        .await
        .unwrap();
    damage(&server.data.join("ns0"), &block);

    // A batched read answers the others and refuses the damaged one.
    let batched: Vec<_> = futures_util::StreamExt::collect::<Vec<_>>(backend.get_blocks(vec![
        fine.id(),
        block.id(),
        fine.id(),
    ]))
    .await;
    assert!(
        matches!(
            &batched[..],
            [Ok(a), Err(Error::Corrupt { .. }), Ok(b)] if a == "fine" && b == "fine"
        ),
        "{batched:?}"
    );
    // Quarantined: not there any more.
    assert!(matches!(
        backend.get_block(block.id()).await,
        Err(Error::BlockNotFound(_))
    ));
    assert_eq!(
        backend.has_blocks(&[block.id(), fine.id()]).await.unwrap(),
        [false, true]
    );
    assert_eq!(
        backend.get_block(fine.id()).await.unwrap(),
        Bytes::from_static(b"fine")
    );
    let verify = || {
        let out = Command::new(env!("CARGO_BIN_EXE_pouch-store"))
            .args(["verify", "--data"])
            .arg(&server.data)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, stdout) = verify();
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("checked 1 blocks, 0 corrupt")
            && stdout.contains("1 damaged blocks are quarantined"),
        "{stdout}"
    );

    backend.put_blocks(vec![block.clone()]).await.unwrap();
    assert_eq!(backend.get_block(block.id()).await.unwrap(), raw);
    let (code, stdout) = verify();
    assert_eq!(code, Some(0), "{stdout}");
}

/// The scrubber walks the store in the background, finds damage no read
/// has met, and quarantines it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scrubber_finds_and_quarantines_a_damaged_block() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(
        dir.path(),
        1,
        "",
        "[maintenance]\nscrub_bytes_per_sec = 100000000\nscrub_tick_ms = 20\n",
    );
    let backend = client(&server, 0);
    let block = Block::encode(pouch_backend::conformance::noise(2, 200_000));
    backend.put_blocks(vec![block.clone()]).await.unwrap();
    damage(&server.data.join("ns0"), &block);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while metrics(&server)
        .await
        .contains("pouch_store_scrub_corrupt_total 0")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the scrubber never found the damage"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(backend.has_blocks(&[block.id()]).await.unwrap(), [false]);
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), 1);
    let pid = server.child.id() as i32;
    assert_eq!(send_sigterm(pid), 0);
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// `kill -TERM`, through the kill(1) program: the workspace forbids unsafe.
fn send_sigterm(pid: i32) -> i32 {
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .code()
        .unwrap_or(-1)
}

#[test]
fn a_first_run_needs_no_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pouch-store"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .env_remove("POUCH_STORE_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("POUCH_STORE_TOKEN"));
}

/// A tiny deterministic generator, seeded per run (set POUCH_TEST_SEED to
/// replay one).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_puts_survive_30_server_kills() {
    let seed = std::env::var("POUCH_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("POUCH_TEST_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let acked = Arc::new(std::sync::Mutex::new(Vec::<(
        pouch_backend::BlockId,
        u64,
        usize,
    )>::new()));
    let mut next_seed = 1u64;

    for round in 0..30 {
        // Small volumes, so kills also land in the middle of volume rolls.
        let server = start_with(dir.path(), 1, "volume_size = 2097152\n", "");
        let backend = Arc::new(client(&server, 0).with_attempts(1));
        // Everything acknowledged before any kill reads back byte-identical
        // and the whole store verifies, after every restart.
        let so_far = acked.lock().unwrap().clone();
        for (id, i, size) in &so_far {
            let got = backend
                .get_block(*id)
                .await
                .unwrap_or_else(|e| panic!("round {round}: block {id}: {e} (seed {seed})"));
            assert!(
                got == pouch_backend::conformance::noise(*i, *size),
                "round {round}: block {id} differs (seed {seed})"
            );
        }
        let out = Command::new(env!("CARGO_BIN_EXE_pouch-store"))
            .args(["verify", "--data"])
            .arg(&server.data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stdout)
        );

        let writers: Vec<_> = (0..4)
            .map(|_| {
                let backend = backend.clone();
                let acked = acked.clone();
                let first = next_seed;
                next_seed += 1_000_000;
                let sizes: Vec<usize> = (0..64)
                    .map(|_| 4096 + rng.below(256 << 10) as usize)
                    .collect();
                tokio::spawn(async move {
                    for (i, size) in (first..).zip(sizes.iter().cycle()) {
                        let raw = pouch_backend::conformance::noise(i, *size);
                        let block = Block::encode(raw);
                        if backend.put_blocks(vec![block.clone()]).await.is_err() {
                            return;
                        }
                        acked.lock().unwrap().push((block.id(), i, *size));
                    }
                })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(20 + rng.below(150))).await;
        drop(server); // SIGKILL, mid-load
        for writer in writers {
            writer.await.unwrap();
        }
    }

    let server = start(dir.path(), 1);
    let backend = client(&server, 0);
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 30,
        "too little load to prove anything: {}",
        acked.len()
    );
    for (id, i, size) in &acked {
        let got = backend
            .get_block(*id)
            .await
            .unwrap_or_else(|e| panic!("block {id} (seed {seed}): {e}"));
        assert!(
            got == pouch_backend::conformance::noise(*i, *size),
            "block {id} differs (seed {seed})"
        );
    }
    drop(server);
    let out = Command::new(env!("CARGO_BIN_EXE_pouch-store"))
        .args(["verify", "--data"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A client meeting a server from before batched reads (which answers the
/// batched read's path with 405, taking it for a block's) still gets every
/// block, asking for them one by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batched_read_falls_back_to_single_reads_on_an_older_server() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stored: Vec<Bytes> = vec![Bytes::from_static(b"first"), Bytes::from_static(b"second")];
    let ids: Vec<_> = stored
        .iter()
        .map(|b| pouch_backend::BlockId::of(b))
        .collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let known: Vec<(String, Bytes)> = ids
        .iter()
        .zip(&stored)
        .map(|(id, bytes)| (format!("GET /v1/default/blocks/{id} "), bytes.clone()))
        .collect();
    let batched_asked = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let asked = batched_asked.clone();
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8];
                if conn.read(&mut byte).await.unwrap_or(0) == 0 {
                    break;
                }
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let answer = match known.iter().find(|(line, _)| head.starts_with(line)) {
                Some((_, bytes)) => {
                    let mut answer = format!(
                        "HTTP/1.1 200 OK\r\nx-pouch-codec: raw\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        bytes.len()
                    )
                    .into_bytes();
                    answer.extend_from_slice(bytes);
                    answer
                }
                None if head.starts_with("POST /v1/default/blocks/read ") => {
                    asked.store(true, std::sync::atomic::Ordering::SeqCst);
                    b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec()
                }
                None => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    .to_vec(),
            };
            let _ = conn.write_all(&answer).await;
        }
    });
    let backend = RemoteBackend::new(&url, "default", TOKEN.to_owned()).unwrap();
    let missing = pouch_backend::BlockId::of(b"never stored");
    let got: Vec<_> = futures_util::StreamExt::collect::<Vec<_>>(
        backend.get_blocks(vec![ids[1], missing, ids[0]]),
    )
    .await;
    assert!(
        batched_asked.load(std::sync::atomic::Ordering::SeqCst),
        "the batched read was not tried"
    );
    assert!(
        matches!(
            &got[..],
            [Ok(a), Err(Error::BlockNotFound(_)), Ok(b)] if *a == stored[1] && *b == stored[0]
        ),
        "{got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_collects_garbage_on_its_timer() {
    use pouch_journal::commit::{COMMIT_VERSION, Change, Commit};
    use pouch_journal::node::{BlockRef, Node};
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(
        dir.path(),
        1,
        "",
        "[maintenance]\ncollect_every_secs = 1\ncollect_grace_secs = 0\ncompact_every_secs = 3600\n",
    );
    let backend = client(&server, 0);
    let kept = Block::encode(pouch_backend::conformance::noise(31, 300_000));
    let garbage = Block::encode(pouch_backend::conformance::noise(32, 300_000));
    backend
        .put_blocks(vec![kept.clone(), garbage.clone()])
        .await
        .unwrap();
    // A journal naming the first block: a device's commit.
    let commit = Commit {
        v: COMMIT_VERSION,
        device: "d".into(),
        time: Some(pouch_backend::gc::now_ms() / 1000),
        changes: vec![Change {
            path: "kept.bin".into(),
            node: Some(Node::File {
                size: 300_000,
                mtime_ns: 0,
                exec: false,
                mode: None,
                blocks: vec![BlockRef {
                    id: kept.id(),
                    len: 300_000,
                }],
            }),
        }],
        moved_to: None,
        migration: None,
        missing: Vec::new(),
        retention: None,
    };
    backend.append(Seq(1), commit.encode()).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while backend.has_blocks(&[garbage.id()]).await.unwrap() == [true] {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never collected the unreferenced block"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(backend.has_blocks(&[kept.id()]).await.unwrap(), [true]);
    assert_eq!(
        backend.get_block(kept.id()).await.unwrap(),
        pouch_backend::conformance::noise(31, 300_000)
    );
}

/// `pouch-store user add` (the password on standard input).
fn add_user(server: &ServerProcess, name: &str, password: &str) {
    let binary = Path::new(env!("CARGO_BIN_EXE_pouch-store"));
    pouch_testkit::pouch_store::add_user(binary, &server.data, name, password, None);
}

/// `POST /v1/login`: the credential, or the status refusing it.
async fn login(
    server: &ServerProcess,
    user: &str,
    password: &str,
    device: &str,
) -> Result<String, u16> {
    pouch_backend::tls::install_provider();
    let response = reqwest::Client::new()
        .post(format!("{}/v1/login", server.url))
        .body(serde_json::json!({"user": user, "password": password, "device": device}).to_string())
        .send()
        .await
        .unwrap();
    if !response.status().is_success() {
        return Err(response.status().as_u16());
    }
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body["namespace"], format!("home.{user}"));
    Ok(body["credential"].as_str().unwrap().to_owned())
}

/// Accounts on a real server process: a device logs in with the account's
/// password and gets a credential of its own that opens the account's home
/// namespace (made at first use) and nothing else (another account's home
/// and a configured namespace: 403); a wrong password and a revoked
/// credential get 401 at once; the namespace tokens of the config keep
/// working beside accounts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_credential_opens_its_accounts_home_until_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), 1);
    add_user(&server, "alice", "correct horse battery");
    add_user(&server, "bob", "bob's long password");

    assert_eq!(
        login(&server, "alice", "wrong password", "laptop").await,
        Err(401)
    );
    assert_eq!(
        login(&server, "carol", "correct horse battery", "laptop").await,
        Err(401)
    );
    let laptop = login(&server, "alice", "correct horse battery", "laptop")
        .await
        .unwrap();
    let phone = login(&server, "alice", "correct horse battery", "phone")
        .await
        .unwrap();
    let bobs = login(&server, "bob", "bob's long password", "desktop")
        .await
        .unwrap();

    let home = RemoteBackend::new(&server.url, "home.alice", laptop.clone()).unwrap();
    let block = Block::encode(Bytes::from_static(b"alice's first block"));
    home.put_blocks(vec![block.clone()]).await.unwrap();
    home.append(Seq(1), Bytes::from_static(b"entry"))
        .await
        .unwrap();
    let from_phone = RemoteBackend::new(&server.url, "home.alice", phone.clone()).unwrap();
    assert_eq!(from_phone.journal_head().await.unwrap(), Seq(1));
    assert!(server.data.join("home.alice").is_dir());

    // Bob's credential opens Bob's home only; no credential opens a
    // configured namespace (a good credential where its account has no
    // role is refused as such: 403).
    let intruder = RemoteBackend::new(&server.url, "home.alice", bobs.clone())
        .unwrap()
        .with_attempts(1);
    assert!(matches!(
        intruder.journal_head().await,
        Err(Error::Forbidden(_))
    ));
    let configured = RemoteBackend::new(&server.url, "ns0", laptop.clone())
        .unwrap()
        .with_attempts(1);
    assert!(matches!(
        configured.journal_head().await,
        Err(Error::Forbidden(_))
    ));
    assert_eq!(client(&server, 0).journal_head().await.unwrap(), Seq(0));

    // The account's devices, listed and revoked over the API.
    let http = reqwest::Client::new();
    let devices: serde_json::Value = serde_json::from_slice(
        &http
            .get(format!("{}/v1/account/devices", server.url))
            .bearer_auth(&phone)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    let names: Vec<&str> = devices
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["laptop", "phone"]);
    let revoked = http
        .delete(format!("{}/v1/account/devices/laptop", server.url))
        .bearer_auth(&phone)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status().as_u16(), 204);
    let cut_off = RemoteBackend::new(&server.url, "home.alice", laptop)
        .unwrap()
        .with_attempts(1);
    assert!(matches!(
        cut_off.journal_head().await,
        Err(Error::Unauthorized)
    ));
    assert_eq!(
        from_phone.get_block(block.id()).await.unwrap(),
        Bytes::from_static(b"alice's first block")
    );

    // The operator removes the account: its last device is cut off too.
    let out = Command::new(env!("CARGO_BIN_EXE_pouch-store"))
        .args(["user", "remove", "--data"])
        .arg(&server.data)
        .arg("alice")
        .output()
        .unwrap();
    assert!(out.status.success());
    let from_phone = from_phone.with_attempts(1);
    assert!(matches!(
        from_phone.journal_head().await,
        Err(Error::Unauthorized)
    ));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(server.data.join("accounts.sqlite"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}
