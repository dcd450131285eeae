//! The one TLS-provider installer.

/// Installs ring as rustls's process-wide crypto provider, which every
/// reqwest client in the process needs before it is built (reqwest is built
/// without a bundled provider, keeping aws-lc's C build out of the tree).
/// Idempotent: an error only means a provider is installed already.
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
