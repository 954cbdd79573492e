//! Small helpers shared by tests: free ports, random keys, test logging.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Once;

use rand::RngCore;

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is released before returning, so another process may take it in between; fixtures
/// that start a child process therefore retry on "address in use".
pub fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(listener.local_addr()?.port())
}

/// A fresh random 32-byte key, e.g. for `SSPR_CODE_KEY` (base64-encode it for the environment).
pub fn random_code_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    key
}

/// Installs a `fmt` subscriber that writes through the test harness's capture, filtered by
/// `RUST_LOG` (default `info`). Safe to call from every test: only the first call installs it.
pub fn init_test_tracing() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        // Another subscriber may already be installed (e.g. by the code under test): keep it.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}
