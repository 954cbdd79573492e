//! The `sspr-policy` binary: wiring only; everything else is in the library.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    sspr_runtime::exit_with("sspr-policy", async {
        let common = sspr_runtime::CommonSettings::from_env("127.0.0.1:9101")?;
        let config = sspr_policy::Config::from_env()?;
        let telemetry = sspr_telemetry::init("sspr-policy")?;
        let shutdown = sspr_runtime::shutdown_token();
        let ctx = sspr_runtime::connect(sspr_policy::SERVICE, &common, &shutdown).await?;
        let result = sspr_policy::run(ctx, config, shutdown)
            .await
            .map_err(|e| sspr_runtime::StartError::Other(format!("{e:#}")));
        telemetry.shutdown();
        result
    })
    .await
}
