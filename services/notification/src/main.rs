//! `sspr-notification`: wiring only (settings, telemetry, connections), then
//! [`sspr_notification::run`] until SIGTERM.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    sspr_runtime::exit_with("sspr-notification", async {
        let common = sspr_runtime::CommonSettings::from_env("127.0.0.1:9104")?;
        let config = sspr_notification::Config::from_env()?;
        let telemetry = sspr_telemetry::init("sspr-notification")?;
        let shutdown = sspr_runtime::shutdown_token();
        let ctx = sspr_runtime::connect(sspr_notification::SERVICE, &common, &shutdown).await?;
        let result = sspr_notification::run(ctx, config, shutdown)
            .await
            .map_err(|e| sspr_runtime::StartError::Other(format!("{e:#}")));
        telemetry.shutdown();
        result
    })
    .await
}
