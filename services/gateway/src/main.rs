//! `sspr-gateway`: wiring only. Reads the settings, starts telemetry, connects to NATS, serves
//! `/healthz` and `/readyz`, then the public gRPC API until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use sspr_runtime::StartError;

#[tokio::main]
async fn main() -> ExitCode {
    sspr_runtime::exit_with("sspr-gateway", async {
        let common = sspr_runtime::CommonSettings::from_env("127.0.0.1:9100")?;
        let config = sspr_gateway::Config::from_env()?;
        let telemetry = sspr_telemetry::init("sspr-gateway")?;
        let shutdown = sspr_runtime::shutdown_token();
        let bus = sspr_runtime::connect_bus(sspr_gateway::SERVICE, &common).await?;
        if let Some(addr) = common.metrics_addr {
            sspr_runtime::serve_health(
                addr,
                sspr_runtime::ready_check(bus.clone(), None),
                &shutdown,
            )
            .await?;
        }
        let result = sspr_gateway::run(bus.clone(), config, shutdown)
            .await
            .map_err(|e| StartError::Other(format!("{e:#}")));
        bus.flush().await;
        telemetry.shutdown();
        result
    })
    .await
}
