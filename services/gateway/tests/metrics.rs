//! Per-method RED metrics of the real `sspr-gateway` binary, read from its `/metrics` over HTTP:
//! `sspr_grpc_server_duration_seconds{method,code}` counts every call by its full method name
//! and the status code the client got (validation refusals, missing tokens, load-shed refusals
//! and unknown methods included, the latter under `method="unknown"`), the in-flight gauge is
//! back to 0 once the calls are answered, and the NATS requests the gateway made are counted by
//! endpoint in `sspr_nats_client_duration_seconds`.
//!
//! The binary runs as its own process, so its registry holds its calls only; the internal
//! services are the harness's stand-ins on the same private nats-server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Gateway;
use sspr_bus::subjects::rpc::verification;
use sspr_proto::admin::v1 as admin;
use sspr_proto::reset::v1 as reset;
use sspr_testkit::{ServiceBinary, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic::transport::Channel;

const START_RESET: &str = "sspr.reset.v1.PasswordReset/StartReset";
const SEND_CODE: &str = "sspr.reset.v1.PasswordReset/SendCode";
const GET_POLICY: &str = "sspr.admin.v1.Admin/GetPolicy";

async fn scrape(port: u16) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The value of the series `name{labels}` (labels in any order), 0 if absent.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    wanted.sort_unstable();
    text.lines()
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
            if n != name {
                return None;
            }
            let inside = rest.strip_suffix('}')?;
            let mut pairs: Vec<String> = inside
                .split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect();
            pairs.sort_unstable();
            (pairs == wanted).then(|| v.parse::<f64>().unwrap())
        })
        .sum()
}

fn calls(text: &str, method: &str, code: &str) -> f64 {
    value(
        text,
        "sspr_grpc_server_duration_seconds_count",
        &[("method", method), ("code", code)],
    )
}

fn start_reset(user_id: &str) -> reset::StartResetRequest {
    reset::StartResetRequest {
        user_id: user_id.into(),
        locale: String::new(),
        ..Default::default()
    }
}

#[tokio::test]
async fn every_call_is_counted_by_method_and_code_on_the_binarys_metrics() {
    // The private nats-server and the stand-in services (its in-process gateway is not used).
    let harness = Gateway::start().await;
    let grpc_port = free_port().unwrap();
    let metrics_port = free_port().unwrap();
    let mut binary = ServiceBinary::new(env!("CARGO_BIN_EXE_sspr-gateway"))
        .env("SSPR_NATS_URL", harness.nats.url())
        .env("SSPR_ADMIN_TOKEN", common::ADMIN_TOKEN)
        .env("SSPR_GRPC_ADDR", format!("127.0.0.1:{grpc_port}"))
        .env("SSPR_METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
        // One call at a time, so a second concurrent one is shed.
        .env("SSPR_GATEWAY_MAX_IN_FLIGHT", "1")
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    binary
        .wait_ready(metrics_port, Duration::from_secs(30))
        .await
        .unwrap();
    let mut channel = None;
    for _ in 0..200 {
        match Channel::from_shared(format!("http://127.0.0.1:{grpc_port}"))
            .unwrap()
            .connect()
            .await
        {
            Ok(c) => {
                channel = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
    let channel = channel.expect("the gateway's gRPC port");
    let mut client = reset::password_reset_client::PasswordResetClient::new(channel.clone());

    let before = scrape(metrics_port).await;
    assert_eq!(calls(&before, START_RESET, "OK"), 0.0, "{before}");

    // Two answered calls and one refused at the edge.
    client.start_reset(start_reset("alice")).await.unwrap();
    client.start_reset(start_reset("bob")).await.unwrap();
    let refused = client.start_reset(start_reset("")).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    // An admin call without a token.
    let mut admin_client = admin::admin_client::AdminClient::new(channel.clone());
    let status = admin_client
        .get_policy(admin::GetPolicyRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    // A path that is not one of ours.
    let mut raw = tonic::client::Grpc::new(channel.clone());
    raw.ready().await.unwrap();
    let status = raw
        .unary::<(), (), _>(
            tonic::Request::new(()),
            "/sspr.reset.v1.PasswordReset/NoSuchMethod".parse().unwrap(),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    // A call shed while another holds the only slot.
    harness
        .recorder
        .delay(verification::SEND_CODE, Duration::from_secs(2));
    let seen = harness.recorder.seen().len();
    let held = tokio::spawn({
        let mut client = client.clone();
        async move {
            client
                .send_code(reset::SendCodeRequest {
                    session_id: "0123456789abcdef0123456789abcdef".into(),
                    method_id: "m-email-1".into(),
                    ..Default::default()
                })
                .await
        }
    });
    while harness.recorder.seen().len() == seen {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let shed = client.start_reset(start_reset("carol")).await.unwrap_err();
    assert_eq!(shed.code(), Code::Unavailable, "{shed:?}");
    held.await.unwrap().unwrap();

    let text = scrape(metrics_port).await;
    assert_eq!(calls(&text, START_RESET, "OK"), 2.0, "{text}");
    assert_eq!(calls(&text, START_RESET, "INVALID_ARGUMENT"), 1.0);
    assert_eq!(calls(&text, START_RESET, "UNAVAILABLE"), 1.0);
    assert_eq!(calls(&text, SEND_CODE, "OK"), 1.0);
    assert_eq!(calls(&text, GET_POLICY, "UNAUTHENTICATED"), 1.0);
    assert_eq!(calls(&text, "unknown", "UNIMPLEMENTED"), 1.0);
    assert!(!text.contains("NoSuchMethod"), "{text}");
    assert_eq!(value(&text, "sspr_grpc_server_in_flight", &[]), 0.0);
    // What the gateway asked the services over NATS: only the calls that got that far.
    let nats = |endpoint: &str, status: &str| {
        value(
            &text,
            "sspr_nats_client_duration_seconds_count",
            &[("endpoint", endpoint), ("status", status)],
        )
    };
    assert_eq!(nats("verification.start_reset", "ok"), 2.0);
    assert_eq!(nats("verification.send_code", "ok"), 1.0);

    binary
        .terminate(Duration::from_secs(20))
        .await
        .unwrap()
        .assert_clean_exit();
}
