//! The small helpers: free ports, random keys, idempotent test tracing.

#![allow(clippy::unwrap_used)]

#[test]
fn helpers_work() {
    let port = sspr_testkit::free_port().unwrap();
    assert_ne!(port, 0);
    std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let a = sspr_testkit::random_code_key();
    let b = sspr_testkit::random_code_key();
    assert_ne!(a, b);
    sspr_testkit::init_test_tracing();
    sspr_testkit::init_test_tracing();
    tracing::info!("test tracing works");
}
