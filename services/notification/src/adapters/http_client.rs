//! The HTTP client every SMS/voice provider adapter uses: rustls with the ring provider and the
//! system's root certificates (so `https://api.twilio.com` works), no redirects (a request
//! carries a code and must not wander), and bounded timeouts shorter than the delivery queue's
//! ack wait.
//!
//! The TLS configuration is handed to reqwest explicitly, so building a client never depends
//! on a process-wide default crypto provider.

use std::sync::Arc;
use std::time::Duration;

/// Longest wait for a provider's answer (shorter than the queue's ack wait).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the TCP (and TLS) connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
    #[error("building the HTTP client failed: {0}")]
    Build(#[from] reqwest::Error),
}

/// A client for provider calls.
pub fn provider_client() -> Result<reqwest::Client, HttpClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        // http:// providers still work; https:// ones will fail with "certificate not trusted".
        tracing::warn!(
            "no system root certificate found (install ca-certificates): https providers cannot be verified"
        );
    }
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(SEND_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// `host:port` of `url`, for spans and operator reasons (never the path or the query, which
/// may carry a provider token).
pub fn server_of(url: &reqwest::Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or(443)
    )
}
