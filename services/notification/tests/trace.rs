//! The delivery span continues the caller's trace: `sspr-notification` runs as its own process,
//! exporting to an OTLP receiver; a delivery published with a `traceparent` yields a consumer
//! span that is a child of that span, with the SMTP send as its child. The process logs never
//! show the code or the destination.

#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use prost::Message;
use sspr_bus::{Bus, BusConfig, BusError, subjects};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::events::v1::CodePurpose;
use sspr_proto::internal::notification::v1::{Delivery, GetDeliveryRequest, GetDeliveryResponse};
use sspr_testkit::{NatsServer, OtlpReceiver, SmtpSink};
use tokio::io::AsyncReadExt;

const BIN: &str = env!("CARGO_BIN_EXE_sspr-notification");
const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn delivery_span_is_a_child_of_the_publishers_traceparent() -> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let smtp = SmtpSink::start().await?;
    let otlp = OtlpReceiver::start().await?;
    let data = tempfile::tempdir()?;
    let key = sspr_testkit::random_code_key();
    let mut child = tokio::process::Command::new(BIN)
        .env("SSPR_NATS_URL", nats.url())
        .env("SSPR_DATA_DIR", data.path())
        .env("SSPR_SMTP_URL", smtp.url())
        .env(
            "SSPR_CODE_KEY",
            base64::engine::general_purpose::STANDARD.encode(key),
        )
        .env("SSPR_METRICS_ADDR", "off")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint())
        .env(
            "RUST_LOG",
            "debug,async_nats=info,h2=info,tonic=info,tower=info,hyper=info",
        )
        .env_remove("SSPR_DATABASE_URL")
        .env_remove("OTEL_SERVICE_NAME")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stderr = child.stderr.take().unwrap();
    let logs = tokio::spawn(async move {
        let mut out = Vec::new();
        let _ = stderr.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    });

    let bus = Bus::connect(&BusConfig::new(nats.url(), "trace-test")).await?;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let probe: Result<GetDeliveryResponse, BusError> = bus
            .request(
                subjects::rpc::notification::GET_DELIVERY,
                &GetDeliveryRequest {
                    delivery_id: "probe".into(),
                },
            )
            .await;
        if matches!(probe, Err(BusError::Rpc(_))) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "service never answered: {probe:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let parent_span = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    let issued = chrono::Utc::now();
    let delivery = Delivery {
        delivery_id: uuid::Uuid::now_v7().to_string(),
        kind: MethodKind::Email as i32,
        destination: "carol@example.org".into(),
        code: "70707070".into(),
        purpose: CodePurpose::Reset as i32,
        locale: "en".into(),
        user_id: "carol".into(),
        flow_id: "flow-trace".into(),
        issued_at: Some(sspr_proto::time::timestamp(issued)),
        expires_at: Some(sspr_proto::time::timestamp(
            issued + chrono::Duration::minutes(10),
        )),
        method_id: "method-trace".into(),
    };
    let sealed = sspr_bus::sealed::seal(&key, &delivery)?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        "traceparent",
        format!("00-{trace_id}-{parent_span}-01").as_str(),
    );
    bus.publish_durable(
        subjects::delivery::EMAIL,
        &delivery.delivery_id,
        headers,
        Bytes::from(sealed.encode_to_vec()),
    )
    .await?;
    smtp.wait_for(|m| m.to == ["carol@example.org"], WAIT)
        .await?;

    let process = otlp
        .wait_for(
            |s| s.trace_id == trace_id && s.name == "process sspr.delivery.v1.email",
            WAIT,
        )
        .await?;
    assert_eq!(process.parent_span_id, parent_span);
    assert_eq!(process.kind, "consumer");
    assert_eq!(process.service_name, "sspr-notification");
    assert_eq!(process.attribute("messaging.system"), Some("nats"));
    let send = otlp
        .wait_for(|s| s.trace_id == trace_id && s.name == "smtp send", WAIT)
        .await?;
    assert_eq!(send.parent_span_id, process.span_id);
    assert_eq!(send.kind, "client");

    // No span of the trace carries the code or the destination.
    for span in otlp.trace(&trace_id) {
        let text = format!("{span:?}");
        assert!(
            !text.contains("70707070") && !text.contains("carol@example.org"),
            "{text}"
        );
    }

    let pid = child.id().map(|p| p.to_string()).unwrap_or_default();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()?;
    let status = tokio::time::timeout(WAIT, child.wait()).await??;
    assert!(status.success(), "exit status {status}");
    let logs = logs.await?;
    assert!(logs.contains("code delivered"), "{logs}");
    assert!(!logs.contains("70707070"), "the code leaked into the logs");
    assert!(
        !logs.contains("carol@example.org"),
        "the destination leaked into the logs"
    );
    Ok(())
}
