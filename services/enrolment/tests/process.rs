//! The `sspr-enrolment` binary honours the process contract: a bad setting is one clear line on
//! stderr and a non-zero exit (never a panic); with good settings it serves, reports ready, and
//! stops cleanly on SIGTERM.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sspr_bus::{Bus, BusConfig, subjects};
use sspr_proto::internal::enrolment::v1::{ListMethodsRequest, ListMethodsResponse};
use sspr_testkit::NatsServer;

const BIN: &str = env!("CARGO_BIN_EXE_sspr-enrolment");

/// The binary with a clean environment plus `vars`.
fn command(vars: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

/// Runs to completion, killing the process if it hangs.
fn run_to_exit(mut cmd: Command) -> Output {
    let child = cmd.spawn().expect("spawn sspr-enrolment");
    wait_with_deadline(child, Duration::from_secs(30))
}

fn wait_with_deadline(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("poll child").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("sspr-enrolment did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("collect output")
}

/// Fails with exactly one error line, `sspr-enrolment: ...`, on stderr. Once telemetry is up,
/// ordinary log lines (e.g. the NATS client's) may surround it.
fn assert_one_clear_line(output: &Output, mentions: &str) {
    assert!(
        !output.status.success(),
        "must fail, got {:?}",
        output.status
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "panicked: {stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("sspr-enrolment: "))
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "exactly one error line on stderr, got: {stderr}"
    );
    assert!(
        errors[0].contains(mentions),
        "{:?} should mention {mentions:?}",
        errors[0]
    );
}

#[test]
fn bad_metrics_address_is_one_line_and_exit_2() {
    let output = run_to_exit(command(&[("SSPR_METRICS_ADDR", "not-an-address")]));
    assert_one_clear_line(&output, "SSPR_METRICS_ADDR");
    // Settings are read before anything else: nothing but the error line.
    assert_eq!(String::from_utf8_lossy(&output.stderr).lines().count(), 1);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn non_postgres_database_url_is_refused() {
    let output = run_to_exit(command(&[(
        "SSPR_DATABASE_URL",
        "mysql://root@localhost/sspr",
    )]));
    assert_one_clear_line(&output, "SSPR_DATABASE_URL");
    assert_eq!(output.status.code(), Some(2));
}

#[tokio::test]
async fn unusable_data_dir_is_one_line() {
    let nats = NatsServer::start().await.expect("nats-server");
    let dir = tempfile::tempdir().expect("temp dir");
    let not_a_dir = dir.path().join("a-file");
    std::fs::write(&not_a_dir, b"").expect("write file");
    let url = nats.url();
    let data_dir = not_a_dir.display().to_string();
    let output = tokio::task::spawn_blocking(move || {
        run_to_exit(command(&[
            ("SSPR_NATS_URL", &url),
            ("SSPR_DATA_DIR", &data_dir),
            ("SSPR_METRICS_ADDR", "off"),
        ]))
    })
    .await
    .expect("join");
    assert_one_clear_line(&output, "data directory");
    assert_eq!(output.status.code(), Some(1));
}

#[tokio::test]
async fn serves_then_stops_cleanly_on_sigterm() {
    let nats = NatsServer::start().await.expect("nats-server");
    let data = tempfile::tempdir().expect("temp dir");
    let port = sspr_testkit::free_port().expect("free port");
    let metrics = format!("127.0.0.1:{port}");
    let child = command(&[
        ("SSPR_NATS_URL", &nats.url()),
        ("SSPR_DATA_DIR", &data.path().display().to_string()),
        ("SSPR_METRICS_ADDR", &metrics),
    ])
    .spawn()
    .expect("spawn sspr-enrolment");
    let pid = child.id();

    // It answers on the bus...
    let bus = Bus::connect(&BusConfig::new(nats.url(), "process-test"))
        .await
        .expect("connect");
    let mut answered = None;
    for _ in 0..200 {
        let reply: Result<ListMethodsResponse, _> = bus
            .request(
                subjects::rpc::enrolment::LIST_METHODS,
                &ListMethodsRequest {
                    user_id: "alice".into(),
                },
            )
            .await;
        match reply {
            Ok(r) => {
                answered = Some(r);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let answered = answered.expect("sspr-enrolment answers list_methods");
    assert!(answered.methods.is_empty());
    // ...is ready, and created its SQLite file.
    let ready = tokio::task::spawn_blocking(move || http_get(&metrics, "/readyz"))
        .await
        .expect("join");
    assert!(ready.starts_with("HTTP/1.1 200"), "readyz: {ready}");
    assert!(data.path().join("enrolment.db").exists());

    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let output =
        tokio::task::spawn_blocking(move || wait_with_deadline(child, Duration::from_secs(20)))
            .await
            .expect("join");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit after SIGTERM: {:?}\n{stderr}",
        output.status
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn http_get(addr: &str, path: &str) -> String {
    for _ in 0..50 {
        if let Ok(mut s) = TcpStream::connect(addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            if s.write_all(request.as_bytes()).is_ok() {
                let mut response = String::new();
                let _ = s.read_to_string(&mut response);
                if !response.is_empty() {
                    return response;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no answer from http://{addr}{path}");
}
