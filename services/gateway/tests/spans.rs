//! The spans of the real `sspr-gateway` binary, exported by OTLP to the testkit's receiver,
//! follow the OpenTelemetry RPC and messaging conventions: a gRPC call is a server span named
//! `<package.Service>/<Method>` with `rpc.system=grpc`, `rpc.service`, `rpc.method` and
//! `rpc.grpc.status_code`, a child of the client's `traceparent`; the NATS request it makes is
//! a client span `send <subject>` with `messaging.*` and `rpc.*` attributes, a child of the
//! gRPC span. Server-side failures (`UNAVAILABLE`) mark both spans as errors, a client's
//! mistake (`INVALID_ARGUMENT`) does not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Gateway;
use sspr_bus::RpcError;
use sspr_bus::subjects::rpc::verification;
use sspr_proto::reset::v1 as reset;
use sspr_testkit::{OtlpReceiver, ReceivedSpan, ServiceBinary, free_port};
use tonic::Code;
use tonic::transport::Channel;

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN: &str = "b7ad6b7169203331";

fn traced<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE}-{CLIENT_SPAN}-01").parse().unwrap(),
    );
    request
}

fn assert_attributes(span: &ReceivedSpan, expected: &[(&str, &str)]) {
    for (key, value) in expected {
        assert_eq!(
            span.attribute(key),
            Some(*value),
            "{} {key}: {:?}",
            span.name,
            span.attributes
        );
    }
}

#[tokio::test]
async fn grpc_and_nats_spans_follow_the_conventions() {
    let harness = Gateway::start().await;
    let otlp = OtlpReceiver::start().await.unwrap();
    let grpc_port = free_port().unwrap();
    let metrics_port = free_port().unwrap();
    let mut binary = ServiceBinary::new(env!("CARGO_BIN_EXE_sspr-gateway"))
        .env("SSPR_NATS_URL", harness.nats.url())
        .env("SSPR_ADMIN_TOKEN", common::ADMIN_TOKEN)
        .env("SSPR_GRPC_ADDR", format!("127.0.0.1:{grpc_port}"))
        .env("SSPR_METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint())
        .env("OTEL_SERVICE_NAME", "sspr-gateway")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
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
    let mut client =
        reset::password_reset_client::PasswordResetClient::new(channel.expect("gRPC port"));

    client
        .start_reset(traced(reset::StartResetRequest {
            user_id: "alice".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    let refused = client
        .start_reset(traced(reset::StartResetRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    harness.recorder.fail(
        verification::SEND_CODE,
        RpcError::unavailable("try again shortly"),
    );
    let unavailable = client
        .send_code(traced(reset::SendCodeRequest {
            session_id: "0123456789abcdef0123456789abcdef".into(),
            method_id: "m-email-1".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(unavailable.code(), Code::Unavailable);

    // SIGTERM flushes what is still buffered.
    binary
        .terminate(Duration::from_secs(20))
        .await
        .unwrap()
        .assert_clean_exit();
    let spans = otlp.trace(TRACE);
    let named =
        |name: &str| -> Vec<&ReceivedSpan> { spans.iter().filter(|s| s.name == name).collect() };

    let starts = named("sspr.reset.v1.PasswordReset/StartReset");
    assert_eq!(starts.len(), 2, "{spans:#?}");
    for span in &starts {
        assert_eq!(span.kind, "server");
        assert_eq!(span.parent_span_id, CLIENT_SPAN);
        assert_eq!(span.service_name, "sspr-gateway");
        assert_attributes(
            span,
            &[
                ("rpc.system", "grpc"),
                ("rpc.service", "sspr.reset.v1.PasswordReset"),
                ("rpc.method", "StartReset"),
            ],
        );
        assert_ne!(span.status, "error", "{span:?}");
    }
    let ok = starts
        .iter()
        .find(|s| s.attribute("rpc.grpc.status_code") == Some("0"))
        .expect("the answered StartReset");
    assert!(
        starts
            .iter()
            .any(|s| s.attribute("rpc.grpc.status_code") == Some("3")),
        "the refused StartReset records INVALID_ARGUMENT"
    );
    let requests = named("send sspr.rpc.verification.start_reset");
    assert_eq!(requests.len(), 1, "only the valid call reaches NATS");
    let request = requests[0];
    assert_eq!(request.kind, "client");
    assert_eq!(request.parent_span_id, ok.span_id);
    assert_attributes(
        request,
        &[
            ("messaging.system", "nats"),
            ("messaging.operation.type", "send"),
            (
                "messaging.destination.name",
                "sspr.rpc.verification.start_reset",
            ),
            ("rpc.system", "nats"),
            ("rpc.service", "verification"),
            ("rpc.method", "start_reset"),
        ],
    );

    let sends = named("sspr.reset.v1.PasswordReset/SendCode");
    assert_eq!(sends.len(), 1, "{spans:#?}");
    assert_eq!(sends[0].attribute("rpc.grpc.status_code"), Some("14"));
    assert_eq!(sends[0].status, "error");
    let send_request = named("send sspr.rpc.verification.send_code");
    assert_eq!(send_request.len(), 1);
    assert_eq!(send_request[0].parent_span_id, sends[0].span_id);
    assert_eq!(send_request[0].attribute("error.type"), Some("unavailable"));
    assert_eq!(send_request[0].status, "error");
}
