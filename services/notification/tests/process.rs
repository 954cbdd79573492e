//! The `sspr-notification` binary's process contract: a missing or bad setting is one clear line
//! on stderr and a non-zero exit (2 for configuration), never a panic; SIGTERM stops it cleanly.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use base64::Engine;

const BIN: &str = env!("CARGO_BIN_EXE_sspr-notification");

fn key() -> String {
    base64::engine::general_purpose::STANDARD.encode(sspr_testkit::random_code_key())
}

/// Runs the binary with only `vars` set (plus PATH) and returns its output.
fn run_with(vars: &[(&str, &str)]) -> Output {
    let data = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SSPR_DATA_DIR", data.path())
        // Nothing listens here: the process must fail on configuration before connecting.
        .env("SSPR_NATS_URL", "nats://127.0.0.1:1")
        .env("SSPR_METRICS_ADDR", "off");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null()).output().unwrap()
}

fn assert_config_error(out: &Output, must_contain: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    assert!(lines[0].starts_with("sspr-notification: "), "{stderr}");
    for needle in must_contain {
        assert!(lines[0].contains(needle), "{needle:?} not in {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn refuses_to_start_without_an_smtp_server() {
    let key = key();
    let out = run_with(&[("SSPR_CODE_KEY", &key)]);
    assert_config_error(
        &out,
        &["SSPR_SMTP_URL", "refuses to start without an SMTP server"],
    );
}

#[test]
fn rejects_unsupported_or_malformed_smtp_urls() {
    let key = key();
    let out = run_with(&[
        ("SSPR_SMTP_URL", "smtps://mail.example.com:465"),
        ("SSPR_CODE_KEY", &key),
    ]);
    assert_config_error(&out, &["SSPR_SMTP_URL", "not supported yet"]);
    let out = run_with(&[
        ("SSPR_SMTP_URL", "smtp://mail.example.com:99999"),
        ("SSPR_CODE_KEY", &key),
    ]);
    assert_config_error(&out, &["SSPR_SMTP_URL", "port"]);
    let out = run_with(&[
        ("SSPR_SMTP_URL", "smtp://user:s3cret@mail.example.com"),
        ("SSPR_CODE_KEY", &key),
    ]);
    assert_config_error(&out, &["SSPR_SMTP_URL"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("s3cret"));
}

#[test]
fn requires_the_code_key() {
    let out = run_with(&[("SSPR_SMTP_URL", "smtp://127.0.0.1:2525")]);
    assert_config_error(&out, &["SSPR_CODE_KEY"]);
    let out = run_with(&[
        ("SSPR_SMTP_URL", "smtp://127.0.0.1:2525"),
        ("SSPR_CODE_KEY", "c2hvcnQ="),
    ]);
    assert_config_error(&out, &["SSPR_CODE_KEY", "32 bytes"]);
}

#[test]
fn rejects_a_bad_sender_or_sms_webhook() {
    let key = key();
    let smtp = ("SSPR_SMTP_URL", "smtp://127.0.0.1:2525");
    let out = run_with(&[
        smtp,
        ("SSPR_CODE_KEY", &key),
        ("SSPR_MAIL_FROM", "not an address"),
    ]);
    assert_config_error(&out, &["SSPR_MAIL_FROM"]);
    let out = run_with(&[
        smtp,
        ("SSPR_CODE_KEY", &key),
        ("SSPR_SMS_WEBHOOK_URL", "https://sms.example.com/x"),
    ]);
    assert_config_error(&out, &["SSPR_SMS_WEBHOOK_URL", "not supported yet"]);
}

#[tokio::test]
async fn starts_serves_and_stops_on_sigterm() -> anyhow::Result<()> {
    let nats = sspr_testkit::NatsServer::start().await?;
    let smtp = sspr_testkit::SmtpSink::start().await?;
    let data = tempfile::tempdir()?;
    let metrics = format!("127.0.0.1:{}", sspr_testkit::free_port()?);
    let mut child = tokio::process::Command::new(BIN)
        .env("SSPR_NATS_URL", nats.url())
        .env("SSPR_DATA_DIR", data.path())
        .env("SSPR_SMTP_URL", smtp.url())
        .env("SSPR_CODE_KEY", key())
        .env("SSPR_METRICS_ADDR", &metrics)
        .env_remove("SSPR_DATABASE_URL")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;

    // Ready once /readyz answers 200.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if readyz(&metrics).await.is_some_and(|status| status == 200) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never became ready");
        assert!(child.try_wait()?.is_none(), "exited early");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let pid = child.id().map(|p| p.to_string()).unwrap_or_default();
    let killed = Command::new("kill").args(["-TERM", &pid]).status()?;
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait()).await??;
    assert!(status.success(), "exit status {status}");
    Ok(())
}

/// The status code of GET /readyz, if the server answers.
async fn readyz(addr: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(
            format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}
