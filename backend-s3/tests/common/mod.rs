//! Helpers shared by the S3 backend's tests.
// Each test binary uses a part of these.
#![allow(dead_code)]

use std::sync::Arc;

use pouch_backend::Backend;
use pouch_backend_s3::{Credentials, S3Backend, S3Config};
use pouch_testkit::s3;

/// A config for `bucket` behind `endpoint`, with the test keys and quick
/// polling.
pub fn config(endpoint: &str, bucket: &str) -> S3Config {
    let mut config = S3Config::new(bucket);
    config.endpoint = Some(endpoint.to_string());
    config.path_style = true;
    config.prefix = "ns".into();
    config.poll_interval_ms = 50;
    config.credentials = Some(Credentials {
        access_key_id: s3::ACCESS_KEY_ID.into(),
        secret_access_key: s3::SECRET_ACCESS_KEY.into(),
        session_token: None,
    });
    config
}

/// A backend on a fresh bucket of the run's test server.
pub async fn fresh() -> Arc<dyn Backend> {
    let server = s3::server();
    let bucket = server.fresh_bucket().await;
    Arc::new(S3Backend::connect(config(&server.endpoint, &bucket), None).expect("connect"))
}
