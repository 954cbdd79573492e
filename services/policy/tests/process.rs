//! The `sspr-policy` binary keeps the process contract: a bad setting is one clear line on
//! stderr naming the variable and a non-zero exit (2 for configuration), never a panic; a
//! started binary serves `/healthz` and `/readyz` and its NATS endpoints, and stops cleanly on
//! SIGTERM.

use std::time::Duration;

use sspr_bus::subjects::rpc::policy as rpc;
use sspr_bus::{Bus, BusConfig};
use sspr_proto::internal::policy::v1::{GetPolicyRequest, GetPolicyResponse};
use sspr_testkit::{NatsServer, ServiceBinary};

const LIMIT: Duration = Duration::from_secs(30);

fn policy() -> ServiceBinary {
    ServiceBinary::new(env!("CARGO_BIN_EXE_sspr-policy"))
}

/// A bad `SSPR_METRICS_ADDR`, a non-PostgreSQL `SSPR_DATABASE_URL`.
#[tokio::test]
async fn bad_common_settings_exit_with_one_clear_line() {
    policy().assert_refuses_bad_common_settings().await;
}

#[tokio::test]
async fn serves_health_and_nats_then_stops_cleanly_on_sigterm() -> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let bus = Bus::connect(&BusConfig::new(nats.url(), "process-test")).await?;
    let mut service = policy().start(&nats, LIMIT).await?;
    service
        .eventually(LIMIT, || {
            bus.request::<_, GetPolicyResponse>(rpc::GET_POLICY, &GetPolicyRequest {})
        })
        .await?;
    let exited = service.terminate(Duration::from_secs(20)).await?;
    exited.assert_clean_exit();
    Ok(())
}

/// A malformed `SSPR_ORGANISATION_PHONE_PREFIXES` is a configuration error naming it.
#[tokio::test]
async fn a_bad_organisation_phone_prefix_is_refused() {
    policy()
        .run_with(&[("SSPR_ORGANISATION_PHONE_PREFIXES", "+44,0033")])
        .await
        .assert_config_error("SSPR_ORGANISATION_PHONE_PREFIXES");
}
