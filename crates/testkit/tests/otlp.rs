//! `OtlpReceiver` against the real opentelemetry-otlp tonic exporter, set up like the services
//! set it up (batch exporter, `service.name` resource).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer, TracerProvider};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use sspr_testkit::OtlpReceiver;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receives_spans_from_the_otlp_exporter() {
    let receiver = OtlpReceiver::start().await.unwrap();
    assert!(receiver.endpoint().starts_with("http://127.0.0.1:"));

    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(receiver.endpoint())
        .build()
        .unwrap();
    let provider = SdkTracerProvider::builder()
        .with_resource(
            Resource::builder()
                .with_service_name("sspr-testkit-test")
                .build(),
        )
        .with_batch_exporter(exporter)
        .build();
    let tracer = provider.tracer("testkit");

    let (trace_id, parent_id) = tracer.in_span("parent-op", |cx| {
        let parent = cx.span().span_context().clone();
        tracer
            .span_builder("child-op")
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("rpc.system", "nats"),
                KeyValue::new("retries", 2_i64),
                KeyValue::new("ok", true),
            ])
            .start_with_context(&tracer, &cx);
        (parent.trace_id().to_string(), parent.span_id().to_string())
    });

    // The batch processor flushes on its own thread; flushing blocks, so not on a runtime thread.
    tokio::task::spawn_blocking(move || {
        provider.force_flush().unwrap();
        provider.shutdown().unwrap();
    })
    .await
    .unwrap();

    let child = receiver
        .wait_for(|s| s.name == "child-op", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(child.trace_id, trace_id);
    assert_eq!(child.parent_span_id, parent_id);
    assert_eq!(child.service_name, "sspr-testkit-test");
    assert_eq!(child.kind, "server");
    assert_eq!(child.scope_name, "testkit");
    assert_eq!(child.attribute("rpc.system"), Some("nats"));
    assert_eq!(child.attribute("retries"), Some("2"));
    assert_eq!(child.attribute("ok"), Some("true"));
    assert!(!child.is_root());

    let parent = receiver
        .wait_for(|s| s.name == "parent-op", Duration::from_secs(10))
        .await
        .unwrap();
    assert!(parent.is_root());
    assert_eq!(parent.span_id, parent_id);
    assert_eq!(parent.kind, "internal");
    assert_eq!(receiver.trace(&trace_id).len(), 2);
}
