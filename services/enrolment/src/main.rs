//! `sspr-enrolment`: wiring only. Settings, telemetry, connections, then the library's `run`
//! until SIGTERM or Ctrl-C.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    sspr_runtime::exit_with("sspr-enrolment", async {
        let common = sspr_runtime::CommonSettings::from_env("127.0.0.1:9102")?;
        let config = sspr_enrolment::Config::from_env()?;
        let telemetry = sspr_telemetry::init("sspr-enrolment")?;
        let shutdown = sspr_runtime::shutdown_token();
        let ctx = sspr_runtime::connect(sspr_enrolment::SERVICE, &common, &shutdown).await?;
        let result = sspr_enrolment::run(ctx, config, shutdown)
            .await
            .map_err(|e| sspr_runtime::StartError::Other(format!("{e:#}")));
        telemetry.shutdown();
        result
    })
    .await
}
