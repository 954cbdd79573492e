//! The `sspr-policy` binary keeps the process contract: a bad setting is one clear line on
//! stderr naming the variable and a non-zero exit (2 for configuration), never a panic; a
//! started binary serves `/healthz` and `/readyz` and its NATS endpoints, and stops cleanly on
//! SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sspr_bus::subjects::rpc::policy as rpc;
use sspr_bus::{Bus, BusConfig};
use sspr_proto::internal::policy::v1::{GetPolicyRequest, GetPolicyResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn bad_metrics_address_exits_with_one_clear_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_sspr-policy"))
        .env("SSPR_METRICS_ADDR", "not-an-address")
        .env("SSPR_NATS_URL", "nats://127.0.0.1:1")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .output()
        .expect("run sspr-policy");
    assert_eq!(
        output.status.code(),
        Some(2),
        "configuration errors exit with 2"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "exactly one line on stderr, got {stderr:?}");
    assert!(
        lines[0].contains("SSPR_METRICS_ADDR"),
        "the line names the variable: {stderr:?}"
    );
    assert!(
        lines[0].starts_with("sspr-policy:"),
        "the line names the binary: {stderr:?}"
    );
    assert!(!stderr.contains("panicked"), "no panic: {stderr:?}");
}

#[test]
fn bad_database_url_exits_with_one_clear_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_sspr-policy"))
        .env("SSPR_DATABASE_URL", "mysql://nope")
        .env("SSPR_METRICS_ADDR", "off")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .output()
        .expect("run sspr-policy");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr:?}");
    assert!(stderr.contains("SSPR_DATABASE_URL"), "{stderr:?}");
    assert!(!stderr.contains("panicked"), "{stderr:?}");
}

/// The status line of `GET <path>` on 127.0.0.1:`port`, if anything answers.
async fn http_status(port: u16, path: &str) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    String::from_utf8_lossy(&response)
        .lines()
        .next()
        .map(str::to_owned)
}

#[tokio::test]
async fn serves_health_and_nats_then_stops_cleanly_on_sigterm() {
    let nats = sspr_testkit::NatsServer::start()
        .await
        .expect("nats-server");
    let data = tempfile::tempdir().expect("temp dir");
    let port = sspr_testkit::free_port().expect("free port");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sspr-policy"))
        .env("SSPR_NATS_URL", nats.url())
        .env("SSPR_DATA_DIR", data.path())
        .env("SSPR_METRICS_ADDR", format!("127.0.0.1:{port}"))
        .env_remove("SSPR_DATABASE_URL")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start sspr-policy");

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = http_status(port, "/readyz").await;
        if status.as_deref().is_some_and(|s| s.contains(" 200")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never answered 200 (last: {status:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let healthz = http_status(port, "/healthz").await.unwrap_or_default();
    assert!(healthz.contains(" 200"), "{healthz}");

    let bus = Bus::connect(&BusConfig::new(nats.url(), "process-test"))
        .await
        .expect("bus");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match bus
            .request::<_, GetPolicyResponse>(rpc::GET_POLICY, &GetPolicyRequest {})
            .await
        {
            Ok(_) => break,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "the binary never answered on NATS: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    let pid = child.id().expect("pid").to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    assert!(sent.success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits within 20 s of SIGTERM")
        .expect("wait");
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr).await;
    }
    assert!(status.success(), "exit status {status}; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
