//! Test fixtures that start REAL components on random local ports: a private `nats-server` with
//! JetStream, an OpenLDAP `slapd` with StartTLS ([`Slapd`]), an SMTP sink, an HTTP sink (SMS webhook), an OTLP trace receiver, and databases;
//! plus [`ServiceBinary`], which runs a service binary for tests of its process contract.
//!
//! Invariants: every fixture owns its process, socket and temporary directory and releases them on
//! drop, so tests never share state and never leak processes; nothing here is a mock of the peer
//! protocol: each fixture speaks the real wire protocol to the real client library.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use std::time::Duration;
//! let nats = sspr_testkit::NatsServer::start().await?; // SSPR_NATS_URL = nats.url()
//! let smtp = sspr_testkit::SmtpSink::start().await?; // SSPR_SMTP_URL = smtp.url()
//! let sms = sspr_testkit::HttpSink::start().await?; // SSPR_SMS_WEBHOOK_URL = sms.url()
//! let otlp = sspr_testkit::OtlpReceiver::start().await?; // OTEL_EXPORTER_OTLP_ENDPOINT
//! let db = sspr_testkit::TestDb::sqlite()?; // db.settings(): sspr_storage::DbSettings
//! // ... start services, drive the flow ...
//! let mail = smtp.wait_for(|m| m.to.iter().any(|t| t == "alice@example.org"), Duration::from_secs(10)).await?;
//! let _code_mail = mail.text_body();
//! # Ok(()) }
//! ```

mod collector;
mod db;
mod http;
pub mod metrics;
mod nats;
mod otlp;
mod postgres;
mod process;
mod slapd;
mod smtp;
mod support;

pub use db::{TEST_POSTGRES_URL_ENV, TestDb};
pub use http::{HttpSink, ReceivedRequest};
pub use nats::{NATS_SERVER_BIN_ENV, NatsConfig, NatsServer};
pub use otlp::{OtlpReceiver, ReceivedMetricPoint, ReceivedSpan};
pub use postgres::PrivatePostgres;
pub use process::{Exited, RunningService, ServiceBinary, UNREACHABLE_NATS_URL};
pub use slapd::{REQUIRE_LDAP_TESTS_ENV, SLAPD_BIN, Slapd};
pub use smtp::{ReceivedMail, SmtpSink, SmtpSinkOptions, SmtpSinkTls};
pub use support::{free_port, init_test_tracing, random_code_key};
