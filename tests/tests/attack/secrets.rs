//! Attacks on: secrets (see main.rs).
//!
//! The secret-hygiene test lives in a test binary of its own, `tests/tests/attack_secrets.rs`
//! (`cargo test -p sspr-tests --test attack_secrets`): telemetry is global per process, and it
//! must install its capturing subscriber (logs at TRACE, spans in memory) before any service of
//! the process starts, which the other attack tests here would race. The bus permissions
//! (per-service NATS identities) are attacked in `bus_permissions.rs`; gRPC over TLS in
//! `services/gateway/tests/tls.rs`.
