//! `sspr-verification`: wiring only; everything else is in the library.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    sspr_runtime::exit_with("sspr-verification", async {
        let common = sspr_runtime::CommonSettings::from_env("127.0.0.1:9103")?;
        let config = sspr_verification::Config::from_env()?;
        let telemetry = sspr_telemetry::init("sspr-verification")?;
        let shutdown = sspr_runtime::shutdown_token();
        let ctx = sspr_runtime::connect(sspr_verification::SERVICE, &common, &shutdown).await?;
        let result = sspr_verification::run(ctx, config, shutdown)
            .await
            .map_err(|e| sspr_runtime::StartError::Other(format!("{e:#}")));
        telemetry.shutdown();
        result
    })
    .await
}
