//! The `sspr-audit` binary: wiring only; everything else is in the library.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    sspr_runtime::exit_with("sspr-audit", async {
        let common = sspr_runtime::CommonSettings::from_env("127.0.0.1:9106")?;
        let config = sspr_audit::Config::from_env()?;
        let telemetry = sspr_telemetry::init("sspr-audit")?;
        let shutdown = sspr_runtime::shutdown_token();
        let ctx = sspr_runtime::connect(sspr_audit::SERVICE, &common, &shutdown).await?;
        let result = sspr_audit::run(ctx, config, shutdown)
            .await
            .map_err(|e| sspr_runtime::StartError::Other(format!("{e:#}")));
        telemetry.shutdown();
        result
    })
    .await
}
