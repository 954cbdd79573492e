//! The spans of the real `sspr-gateway` binary, exported by OTLP to the testkit's receiver,
//! follow the OpenTelemetry RPC and messaging conventions: a gRPC call is a server span named
//! `<package.Service>/<Method>` with `rpc.system=grpc`, `rpc.service`, `rpc.method` and
//! `rpc.grpc.status_code`, a child of the client's `traceparent`; the NATS request it makes is
//! a client span `send <subject>` with `messaging.*` and `rpc.*` attributes, a child of the
//! gRPC span. Server-side failures (`UNAVAILABLE`) mark both spans as errors, a client's
//! mistake (`INVALID_ARGUMENT`) does not. The calls' metrics reach OTLP too, under the names and
//! labels `/metrics` serves.
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

    // The same calls reached OTLP as metrics (flushed on SIGTERM), under exactly the names and
    // labels `/metrics` serves.
    let points = otlp.metric_points();
    let names = sspr_telemetry::metrics::DESCRIPTORS;
    for p in points.iter().filter(|p| p.name.starts_with("sspr_")) {
        let d = names
            .iter()
            .find(|d| d.name == p.name)
            .unwrap_or_else(|| panic!("OTLP metric {} is not in the catalogue", p.name));
        let mut keys: Vec<&str> = p.attributes.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        let mut want = d.labels.to_vec();
        want.sort_unstable();
        assert_eq!(keys, want, "attributes of {}", p.name);
        assert_eq!(p.service_name, "sspr-gateway");
    }
    let grpc = |method: &str, code: &str| {
        points
            .iter()
            .filter(|p| {
                p.name == "sspr_grpc_server_duration_seconds"
                    && p.attribute("method") == Some(method)
                    && p.attribute("code") == Some(code)
            })
            .map(|p| p.value)
            .fold(0.0, f64::max)
    };
    let start = "sspr.reset.v1.PasswordReset/StartReset";
    assert_eq!(grpc(start, "OK"), 1.0, "{points:#?}");
    assert_eq!(grpc(start, "INVALID_ARGUMENT"), 1.0);
    assert_eq!(
        grpc("sspr.reset.v1.PasswordReset/SendCode", "UNAVAILABLE"),
        1.0
    );
    let histogram = points
        .iter()
        .find(|p| p.name == "sspr_grpc_server_duration_seconds")
        .expect("the gRPC histogram");
    assert_eq!(
        (histogram.kind.as_str(), histogram.unit.as_str()),
        ("histogram", "s")
    );
    assert!(
        points
            .iter()
            .any(|p| p.name == "sspr_nats_client_duration_seconds"
                && p.attribute("endpoint") == Some("verification.start_reset")
                && p.attribute("status") == Some("ok")
                && p.value == 1.0),
        "the NATS request's duration: {points:#?}"
    );
}
