//! `ServiceBinary`, `Exited` and `RunningService` against `sh` scripts standing in for a
//! service, and a local HTTP listener standing in for its metrics endpoint.

#![allow(clippy::unwrap_used)]

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use sspr_testkit::{Exited, ServiceBinary, UNREACHABLE_NATS_URL};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(20);

/// `sh -c script`: its error lines start with `sh: `.
fn script(script: &str) -> ServiceBinary {
    ServiceBinary::new("sh").arg("-c").arg(script)
}

fn exited(code: i32, stderr: &str) -> Exited {
    Exited {
        binary: "sspr-x".into(),
        status: ExitStatus::from_raw(code << 8),
        stdout: String::new(),
        stderr: stderr.into(),
    }
}

/// Serves `status` to every request on a free port of 127.0.0.1 until the test ends.
async fn metrics_endpoint(status: &'static str) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).await;
            let response =
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = stream.write_all(response.as_bytes()).await;
        }
    });
    port
}

#[tokio::test]
async fn a_config_error_is_recognised() {
    let exited = script(r#"echo "sh: SSPR_X is not valid" >&2; exit 2"#)
        .env("SSPR_X", "hunter2")
        .run_to_exit(LIMIT)
        .await
        .unwrap();
    exited
        .assert_config_error("SSPR_X")
        .assert_mentions("not valid")
        .assert_not_echoed("hunter2");
}

#[tokio::test]
async fn the_environment_is_clean_except_path() {
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    let exited = script("env")
        .env("SSPR_A", "1")
        .env("SSPR_B", "2")
        .env_remove("SSPR_B")
        .run_to_exit(LIMIT)
        .await
        .unwrap();
    exited.assert_clean_exit();
    let vars: Vec<&str> = exited
        .stdout
        .lines()
        .filter_map(|l| l.split('=').next())
        .collect();
    assert!(vars.contains(&"PATH"), "{vars:?}");
    assert!(vars.contains(&"SSPR_A"), "{vars:?}");
    assert!(!vars.contains(&"SSPR_B"), "{vars:?}");
    assert!(!vars.contains(&"CARGO_MANIFEST_DIR"), "{vars:?}");
}

#[tokio::test]
async fn settings_only_isolates_each_run() {
    let bin = script(r#"echo "$SSPR_NATS_URL $SSPR_METRICS_ADDR"; test -d "$SSPR_DATA_DIR" && echo "$SSPR_DATA_DIR""#)
        .settings_only();
    let first = bin.run_with(&[]).await;
    let second = bin.run_with(&[("SSPR_METRICS_ADDR", "127.0.0.1:0")]).await;
    let first: Vec<&str> = first.assert_clean_exit().stdout.lines().collect();
    let second: Vec<&str> = second.assert_clean_exit().stdout.lines().collect();
    assert_eq!(first[0], format!("{UNREACHABLE_NATS_URL} off"));
    assert_eq!(second[0], format!("{UNREACHABLE_NATS_URL} 127.0.0.1:0"));
    assert_ne!(first[1], second[1], "a fresh data dir per run");
    assert!(
        !std::path::Path::new(first[1]).exists(),
        "removed after the run"
    );
}

/// Stands in for a binary that reads `sspr_runtime::CommonSettings` first.
#[tokio::test]
async fn common_settings_scenarios_run_both_checks() {
    script(
        r#"case "$SSPR_METRICS_ADDR" in off) ;; *) echo "sh: bad SSPR_METRICS_ADDR" >&2; exit 2;; esac
        case "$SSPR_DATABASE_URL" in mysql*) echo "sh: bad SSPR_DATABASE_URL" >&2; exit 2;; esac
        exit 0"#,
    )
    .assert_refuses_bad_common_settings()
    .await;
}

#[tokio::test]
#[should_panic(expected = "SSPR_DATABASE_URL")]
async fn common_settings_scenarios_catch_a_missing_check() {
    let metrics_only = r#"case "$SSPR_METRICS_ADDR" in off) ;; *) echo "sh: bad SSPR_METRICS_ADDR" >&2; exit 2;; esac"#;
    script(metrics_only)
        .assert_refuses_bad_common_settings()
        .await;
}

#[tokio::test]
async fn a_binary_that_hangs_fails_run_to_exit() {
    let err = script("exec sleep 30")
        .run_to_exit(Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("did not exit"), "{err}");
}

#[tokio::test]
async fn an_error_line_may_be_surrounded_by_logs() {
    let exited =
        script(r#"echo "INFO starting" >&2; echo "sh: data directory unusable" >&2; exit 1"#)
            .run_to_exit(LIMIT)
            .await
            .unwrap();
    exited.assert_error_line(1, "data directory");
}

#[test]
#[should_panic(expected = "exactly one line")]
fn two_lines_are_not_a_config_error() {
    exited(2, "sspr-x: SSPR_X is bad\nmore\n").assert_config_error("SSPR_X");
}

#[test]
#[should_panic(expected = "exit with 2")]
fn exit_1_is_not_a_config_error() {
    exited(1, "sspr-x: SSPR_X is bad\n").assert_config_error("SSPR_X");
}

#[test]
#[should_panic(expected = "names the binary")]
fn a_line_without_the_binary_name_is_not_a_config_error() {
    exited(2, "error: SSPR_X is bad\n").assert_config_error("SSPR_X");
}

#[test]
#[should_panic(expected = "no panic")]
fn a_panic_is_not_a_config_error() {
    exited(2, "thread 'main' panicked at SSPR_X\n").assert_config_error("SSPR_X");
}

#[test]
#[should_panic(expected = "secret")]
fn an_echoed_secret_is_caught() {
    exited(2, "sspr-x: SSPR_X=hunter2 is bad\n").assert_not_echoed("hunter2");
}

#[tokio::test]
async fn a_ready_service_stops_on_sigterm() {
    let port = metrics_endpoint("200 OK").await;
    let mut service = script(r#"trap 'echo "bye" >&2; exit 0' TERM; while :; do sleep 0.05; done"#)
        .spawn()
        .unwrap();
    service.wait_ready(port, LIMIT).await.unwrap();
    let mut attempts = 0;
    let value = service
        .eventually(LIMIT, || {
            attempts += 1;
            std::future::ready(if attempts < 3 {
                Err("not yet")
            } else {
                Ok(attempts)
            })
        })
        .await
        .unwrap();
    assert_eq!(value, 3);
    let exited = service.terminate(LIMIT).await.unwrap();
    exited.assert_clean_exit();
    assert!(exited.stderr.contains("bye"), "{}", exited.stderr);
}

#[tokio::test]
async fn waiting_fails_early_when_the_process_exits() {
    let port = sspr_testkit::free_port().unwrap();
    let mut service = script(r#"echo "sh: boom" >&2; exit 1"#).spawn().unwrap();
    let err = service.wait_ready(port, LIMIT).await.unwrap_err();
    assert!(err.to_string().contains("sh: boom"), "{err}");
}

#[tokio::test]
async fn a_service_that_never_gets_ready_times_out() {
    let port = metrics_endpoint("503 Service Unavailable").await;
    let mut service = script("exec sleep 30").spawn().unwrap();
    let err = service
        .wait_ready(port, Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/readyz: Some(503)"), "{err}");
}

#[tokio::test]
async fn a_service_killed_by_sigterm_is_not_a_clean_exit() {
    let service = script("exec sleep 30").spawn().unwrap();
    let exited = service.terminate(LIMIT).await.unwrap();
    assert!(!exited.status.success(), "{:?}", exited.status);
}
