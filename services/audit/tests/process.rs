//! The `sspr-audit` binary keeps the process contract: a bad setting is one clear line on
//! stderr naming the variable and exit code 2, never a panic; a started binary serves
//! `/healthz` and `/readyz` and its NATS endpoint, and stops cleanly on SIGTERM.

use std::time::Duration;

use sspr_bus::subjects::rpc::audit as rpc;
use sspr_bus::{Bus, BusConfig};
use sspr_proto::internal::audit::v1::{ListEventsRequest, ListEventsResponse};
use sspr_testkit::ServiceBinary;

const TIMEOUT: Duration = Duration::from_secs(30);

fn binary() -> ServiceBinary {
    ServiceBinary::new(env!("CARGO_BIN_EXE_sspr-audit"))
}

#[tokio::test]
async fn bad_retention_exits_with_one_clear_line() {
    for bad in ["0", "forever", "99999"] {
        binary()
            .env("SSPR_METRICS_ADDR", "off")
            .env("SSPR_NATS_URL", "nats://127.0.0.1:1")
            .env("SSPR_AUDIT_RETENTION_DAYS", bad)
            .run_to_exit(TIMEOUT)
            .await
            .expect("run sspr-audit")
            .assert_config_error("SSPR_AUDIT_RETENTION_DAYS");
    }
}

#[tokio::test]
async fn bad_metrics_address_and_database_url_exit_with_one_clear_line() {
    binary()
        .env("SSPR_METRICS_ADDR", "not-an-address")
        .env("SSPR_NATS_URL", "nats://127.0.0.1:1")
        .run_to_exit(TIMEOUT)
        .await
        .expect("run sspr-audit")
        .assert_config_error("SSPR_METRICS_ADDR");
    binary()
        .env("SSPR_METRICS_ADDR", "off")
        .env("SSPR_DATABASE_URL", "mysql://nope")
        .run_to_exit(TIMEOUT)
        .await
        .expect("run sspr-audit")
        .assert_config_error("SSPR_DATABASE_URL");
}

#[tokio::test]
async fn serves_health_and_nats_then_stops_cleanly_on_sigterm() {
    let nats = sspr_testkit::NatsServer::start()
        .await
        .expect("nats-server");
    let data = tempfile::tempdir().expect("temp dir");
    let port = sspr_testkit::free_port().expect("free port");
    let mut service = binary()
        .env("SSPR_NATS_URL", nats.url())
        .env("SSPR_DATA_DIR", data.path())
        .env("SSPR_METRICS_ADDR", format!("127.0.0.1:{port}"))
        .spawn()
        .expect("start sspr-audit");
    service.wait_ready(port, TIMEOUT).await.expect("ready");

    let bus = Bus::connect(&BusConfig::new(nats.url(), "process-test"))
        .await
        .expect("bus");
    let request = ListEventsRequest::default();
    let page: ListEventsResponse = service
        .eventually(TIMEOUT, || bus.request(rpc::LIST_EVENTS, &request))
        .await
        .expect("answers on NATS");
    assert!(page.records.is_empty());

    service
        .terminate(Duration::from_secs(20))
        .await
        .expect("exits on SIGTERM")
        .assert_clean_exit();
}
