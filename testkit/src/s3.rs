//! The S3 test server: moto's `moto_server`, on 127.0.0.1.
//!
//! `./scripts/test` installs moto and starts one server for the whole run,
//! naming it in `POUCH_TEST_S3_ENDPOINT`. Without that variable the first
//! test of a test binary starts its own from `PATH`. A missing server fails
//! the test, never skips it.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Keys moto accepts (it checks none); real ones never appear in tests.
pub const ACCESS_KEY_ID: &str = "pouch-test";
/// See [`ACCESS_KEY_ID`].
pub const SECRET_ACCESS_KEY: &str = "pouch-test-secret";

/// A running S3-compatible server.
#[derive(Debug)]
pub struct TestS3 {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// Kept so the server lives as long as the test process.
    _child: Option<Child>,
}

/// The run's server, started on first use.
pub fn server() -> &'static TestS3 {
    static SERVER: OnceLock<TestS3> = OnceLock::new();
    SERVER.get_or_init(|| {
        if let Ok(endpoint) = std::env::var("POUCH_TEST_S3_ENDPOINT") {
            let endpoint = endpoint.trim_end_matches('/').to_string();
            wait_until_listening(&endpoint, Duration::from_secs(30));
            return TestS3 {
                endpoint,
                _child: None,
            };
        }
        start_moto()
    })
}

fn start_moto() -> TestS3 {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        probe.local_addr().expect("local address").port()
    };
    // A small Python parent runs moto and stops it when this test process
    // goes away (static values are never dropped, so no Drop can do it).
    let guard = format!(
        "import os, subprocess, sys, time\n\
         parent = os.getppid()\n\
         server = subprocess.Popen(['moto_server', '-H', '127.0.0.1', '-p', '{port}'],\n\
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n\
         while os.getppid() == parent and server.poll() is None:\n\
         \x20   time.sleep(0.5)\n\
         server.terminate()\n"
    );
    let has_moto = Command::new("moto_server")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_moto,
        "the S3 tests need moto's server: run ./scripts/test, or \
         `pip install 'moto[server]'`, or set POUCH_TEST_S3_ENDPOINT"
    );
    let child = Command::new("python3")
        .args(["-c", &guard])
        .stdin(Stdio::null())
        .spawn()
        .expect("start python3 to run moto_server");
    let endpoint = format!("http://127.0.0.1:{port}");
    wait_until_listening(&endpoint, Duration::from_secs(60));
    TestS3 {
        endpoint,
        _child: Some(child),
    }
}

fn wait_until_listening(endpoint: &str, limit: Duration) {
    let addr = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let start = Instant::now();
    while TcpStream::connect(&addr).is_err() {
        assert!(
            start.elapsed() < limit,
            "the S3 test server at {endpoint} did not start listening"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl TestS3 {
    /// Creates a bucket no other test uses and returns its name.
    pub async fn fresh_bucket(&self) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "pouch-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .subsec_nanos()
        );
        self.create_bucket(&name).await;
        name
    }

    /// Creates bucket `name` (moto needs no signature to do it).
    pub async fn create_bucket(&self, name: &str) {
        pouch_backend::tls::install_provider();
        let response = reqwest::Client::new()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .await
            .expect("reach the S3 test server");
        assert!(
            response.status().is_success(),
            "creating bucket {name}: {}",
            response.status()
        );
    }

    /// Every key in bucket `name`.
    pub async fn keys(&self, name: &str) -> Vec<String> {
        use futures_util::StreamExt;
        use object_store::ObjectStore;
        self.client(name)
            .list(None)
            .map(|meta| meta.expect("list the bucket").location.to_string())
            .collect()
            .await
    }

    /// The bytes every object of bucket `name` holds, together.
    pub async fn bytes(&self, name: &str) -> u64 {
        use futures_util::StreamExt;
        use object_store::ObjectStore;
        self.client(name)
            .list(None)
            .map(|meta| meta.expect("list the bucket").size)
            .fold(0, |sum, size| async move { sum + size })
            .await
    }

    /// Object `key` of bucket `name`.
    pub async fn get(&self, name: &str, key: &str) -> bytes::Bytes {
        use object_store::ObjectStoreExt;
        self.client(name)
            .get(&key.into())
            .await
            .expect("get an object")
            .bytes()
            .await
            .expect("read an object")
    }

    /// Replaces object `key` of bucket `name` behind the backend's back
    /// (to damage it).
    pub async fn put(&self, name: &str, key: &str, bytes: bytes::Bytes) {
        use object_store::ObjectStoreExt;
        self.client(name)
            .put(&key.into(), bytes.into())
            .await
            .expect("put an object");
    }

    fn client(&self, name: &str) -> object_store::aws::AmazonS3 {
        pouch_backend::tls::install_provider();
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_bucket_name(name)
            .with_region("us-east-1")
            .with_access_key_id(ACCESS_KEY_ID)
            .with_secret_access_key(SECRET_ACCESS_KEY)
            .build()
            .expect("an S3 client for the test server")
    }

    /// Deletes every object of bucket `name` (signed requests, as moto
    /// wants for deletes) and then the bucket.
    pub async fn delete_bucket(&self, name: &str) {
        use futures_util::StreamExt;
        use object_store::ObjectStore;
        let store = self.client(name);
        let keys: Vec<_> = store
            .list(None)
            .map(|meta| meta.expect("list the bucket").location)
            .collect()
            .await;
        for key in keys {
            object_store::ObjectStoreExt::delete(&store, &key)
                .await
                .expect("delete an object");
        }
        let done = reqwest::Client::new()
            .delete(format!("{}/{name}", self.endpoint))
            .send()
            .await
            .expect("delete bucket");
        assert!(
            done.status().is_success(),
            "deleting bucket {name}: {}",
            done.status()
        );
    }
}
