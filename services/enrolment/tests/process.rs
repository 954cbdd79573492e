//! The `sspr-enrolment` binary honours the process contract: a bad setting is one clear line on
//! stderr and a non-zero exit (never a panic); with good settings it serves, reports ready, and
//! stops cleanly on SIGTERM.

use std::time::Duration;

use sspr_bus::{Bus, BusConfig, subjects};
use sspr_proto::internal::enrolment::v1::{ListMethodsRequest, ListMethodsResponse};
use sspr_testkit::{NatsServer, ServiceBinary};

const LIMIT: Duration = Duration::from_secs(30);

/// Logging on, so the assertions also hold once telemetry is up and writes to stderr.
fn enrolment() -> ServiceBinary {
    ServiceBinary::new(env!("CARGO_BIN_EXE_sspr-enrolment")).env("RUST_LOG", "info")
}

#[tokio::test]
async fn bad_metrics_address_is_one_line_and_exit_2() {
    // Settings are read before anything else: nothing but the error line.
    let bad_address = ("SSPR_METRICS_ADDR", "not-an-address");
    let exited = enrolment().run_with(&[bad_address]).await;
    exited.assert_config_error("SSPR_METRICS_ADDR");
}

#[tokio::test]
async fn non_postgres_database_url_is_refused() {
    let mysql = ("SSPR_DATABASE_URL", "mysql://root@localhost/sspr");
    let exited = enrolment().run_with(&[mysql]).await;
    exited.assert_config_error("SSPR_DATABASE_URL");
}

#[tokio::test]
async fn unusable_data_dir_is_one_line() -> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let dir = tempfile::tempdir()?;
    let not_a_dir = dir.path().join("a-file");
    std::fs::write(&not_a_dir, b"")?;
    // Telemetry is up by then: log lines may surround the one error line; exit 1, not 2.
    let exited = enrolment()
        .env("SSPR_NATS_URL", nats.url())
        .env("SSPR_DATA_DIR", &not_a_dir)
        .env("SSPR_METRICS_ADDR", "off")
        .run_to_exit(LIMIT)
        .await?;
    exited.assert_error_line(1, "data directory");
    Ok(())
}

#[tokio::test]
async fn serves_then_stops_cleanly_on_sigterm() -> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    // Ready (/healthz and /readyz answer 200)...
    let mut service = enrolment().start(&nats, LIMIT).await?;
    // ...answers on the bus...
    let bus = Bus::connect(&BusConfig::new(nats.url(), "process-test")).await?;
    let alice = ListMethodsRequest {
        user_id: "alice".into(),
        ..Default::default()
    };
    let list_methods = || {
        let subject = subjects::rpc::enrolment::LIST_METHODS;
        bus.request::<_, ListMethodsResponse>(subject, &alice)
    };
    let answered = service.eventually(LIMIT, list_methods).await?;
    assert!(answered.methods.is_empty());
    // ...and created its SQLite file.
    let data_dir = service.data_dir().expect("start gives a data dir");
    assert!(data_dir.join("enrolment.db").exists());

    service
        .terminate(Duration::from_secs(20))
        .await?
        .assert_clean_exit();
    Ok(())
}
