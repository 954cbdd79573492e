//! The `sspr-gateway` binary refuses bad settings with one clear line and a non-zero exit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output, Stdio};

fn run_gateway(env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sspr-gateway"));
    command
        .env_remove("SSPR_ADMIN_TOKEN")
        .env_remove("SSPR_GRPC_ADDR")
        .env_remove("SSPR_TRUSTED_PROXY_HOPS")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        // Nothing listens here: the process must fail on its settings before it tries NATS.
        .env("SSPR_NATS_URL", "nats://127.0.0.1:1")
        .env("SSPR_METRICS_ADDR", "off")
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run sspr-gateway")
}

fn assert_one_line_naming(output: &Output, variable: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "exit code; stderr: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one line on stderr: {stderr}"
    );
    assert!(stderr.starts_with("sspr-gateway: "), "{stderr}");
    assert!(
        stderr.contains(variable),
        "should name {variable}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn missing_admin_token_exits_2_naming_it() {
    let output = run_gateway(&[]);
    assert_one_line_naming(&output, "SSPR_ADMIN_TOKEN");
}

#[test]
fn short_admin_token_exits_2_without_echoing_it() {
    let output = run_gateway(&[("SSPR_ADMIN_TOKEN", "tooShortSecret")]);
    assert_one_line_naming(&output, "SSPR_ADMIN_TOKEN");
    assert!(!String::from_utf8_lossy(&output.stderr).contains("tooShortSecret"));
}

#[test]
fn bad_listen_address_exits_2_naming_it() {
    let output = run_gateway(&[
        ("SSPR_ADMIN_TOKEN", "a-long-enough-admin-token"),
        ("SSPR_GRPC_ADDR", "not an address"),
    ]);
    assert_one_line_naming(&output, "SSPR_GRPC_ADDR");
}

#[test]
fn bad_proxy_hops_exits_2_naming_it() {
    let output = run_gateway(&[
        ("SSPR_ADMIN_TOKEN", "a-long-enough-admin-token"),
        ("SSPR_TRUSTED_PROXY_HOPS", "many"),
    ]);
    assert_one_line_naming(&output, "SSPR_TRUSTED_PROXY_HOPS");
}
