//! Telemetry for every sspr binary: structured logs, OpenTelemetry traces, health endpoints.
//!
//! - [`init`] installs the global `tracing` subscriber (logs to stderr, filter from `RUST_LOG`)
//!   with an OpenTelemetry layer, so every span has a W3C trace id that the bus propagates;
//!   every log line inside a traced span ends in `trace_id=<32 hex digits>`.
//!   Spans are exported over OTLP/gRPC only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//! - [`health`] serves `/healthz` (the process is up), `/readyz` (its dependencies answer) and
//!   `/metrics` (the Prometheus text format of [`metrics::catalogue`]).
//! - [`metrics`]: every metric, recorded to Prometheus and to OpenTelemetry (OTLP) under one name.
//!
//! Never record a secret (code, password, session id, token, key) in a span field or log line.

pub mod health;
mod log_format;
pub mod metrics;
mod tracing_setup;

pub use tracing_setup::{Telemetry, TelemetryError, init, init_with_exporter};
/// The log writer type [`init_with_exporter`] takes.
pub use tracing_subscriber::fmt::writer::BoxMakeWriter;
