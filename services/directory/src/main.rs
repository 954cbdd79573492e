//! The `sspr-directory` binary: wiring only; everything else is in the library.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    sspr_runtime::exit_with("sspr-directory", async {
        let common = sspr_runtime::CommonSettings::from_env("127.0.0.1:9105")?;
        let config = sspr_directory::Config::from_env()?;
        let telemetry = sspr_telemetry::init("sspr-directory")?;
        let shutdown = sspr_runtime::shutdown_token();
        let ctx = sspr_runtime::connect(sspr_directory::SERVICE, &common, &shutdown).await?;
        let result = sspr_directory::run(ctx, config, shutdown)
            .await
            .map_err(|e| sspr_runtime::StartError::Other(format!("{e:#}")));
        telemetry.shutdown();
        result
    })
    .await
}
