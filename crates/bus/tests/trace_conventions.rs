//! The spans and log lines of bus traffic, under the production telemetry stack
//! (`sspr_telemetry::init_with_exporter`: the same log layer and OpenTelemetry layer as every
//! service, spans handed to memory, log lines captured), over a real private nats-server with
//! JetStream. In a test binary of its own because telemetry is global per process.
//!
//! - A request is a client span `send <subject>` and a server span `process <subject>` in one
//!   trace, with the OpenTelemetry messaging and RPC attributes.
//! - A log line written while a request is handled ends in `trace_id=<the trace id>` of the
//!   exported spans; a line outside any span has none.
//! - A JetStream publish is a producer span; a message published for another trace (the outbox
//!   relay's case) keeps that trace's context and the publish span links to it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;
use opentelemetry::trace::{SpanKind, TraceContextExt};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use sspr_bus::{Bus, BusConfig, RequestContext, Router, RpcError, serve};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

const ECHO: &str = "sspr.rpc.tracetest.echo";
const READY: &str = "sspr.rpc.tracetest.ready";
const EVENT: &str = "sspr.events.v1.tracetest.happened";

#[derive(Debug, Clone, Default)]
struct SpanSink(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for SpanSink {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        self.0.lock().unwrap().extend(batch);
        std::future::ready(Ok(()))
    }
}

#[derive(Clone, Default)]
struct LogSink(Arc<Mutex<Vec<u8>>>);

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Capture {
    spans: SpanSink,
    logs: LogSink,
}

impl Capture {
    fn spans(&self) -> Vec<SpanData> {
        self.spans.0.lock().unwrap().clone()
    }
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.logs.0.lock().unwrap())
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    static TELEMETRY: OnceLock<sspr_telemetry::Telemetry> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let spans = SpanSink::default();
        let logs = LogSink::default();
        let writer = logs.clone();
        let telemetry = sspr_telemetry::init_with_exporter(
            "sspr-bus-trace-test",
            "info",
            spans.clone(),
            sspr_telemetry::BoxMakeWriter::new(move || writer.clone()),
        )
        .expect("install the capturing telemetry");
        let _ = TELEMETRY.set(telemetry);
        Capture { spans, logs }
    })
}

async fn nats_server(dir: &std::path::Path) -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = tokio::process::Command::new(
        std::env::var("SSPR_NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".to_owned()),
    )
    .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
    .arg(dir)
    .kill_on_drop(true)
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("nats-server on PATH");
    for _ in 0..250 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (child, format!("nats://127.0.0.1:{port}"))
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

fn find<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
        panic!("no span {name}: {names:?}")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_follow_the_conventions_and_every_line_inside_carries_the_trace_id() {
    let capture = capture();
    let dir = tempfile::tempdir().unwrap();
    let (_nats, url) = nats_server(dir.path()).await;
    let bus = Bus::connect(&BusConfig::new(&url, "trace-test"))
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let router = Router::new("tracetest", "trace conventions test")
        .route(ECHO, |_: RequestContext, req: String| async move {
            tracing::warn!("handling the echo request");
            Ok::<_, RpcError>(req)
        })
        .route(READY, |_: RequestContext, _: String| async move {
            Ok::<_, RpcError>(String::new())
        });
    let served = bus.clone();
    let token = stop.clone();
    tokio::spawn(async move { serve(&served, router, token.cancelled_owned()).await });
    for _ in 0..250 {
        match bus.client().request(READY, Default::default()).await {
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            _ => break,
        }
    }
    tracing::warn!("a line outside any span");

    let root = tracing::info_span!("test.caller");
    let echoed: String = bus
        .request(ECHO, &"hi".to_owned())
        .instrument(root.clone())
        .await
        .unwrap();
    assert_eq!(echoed, "hi");
    let trace_id = root.context().span().span_context().trace_id();
    drop(root);

    // The server span ends after the reply is sent: wait for it.
    let mut spans = Vec::new();
    for _ in 0..250 {
        spans = capture.spans();
        if spans.iter().any(|s| s.name == format!("process {ECHO}")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let client = find(&spans, &format!("send {ECHO}"));
    assert_eq!(client.span_kind, SpanKind::Client);
    assert_eq!(client.span_context.trace_id(), trace_id);
    for (key, value) in [
        ("messaging.system", "nats"),
        ("messaging.operation.type", "send"),
        ("messaging.destination.name", ECHO),
        ("rpc.system", "nats"),
        ("rpc.service", "tracetest"),
        ("rpc.method", "echo"),
    ] {
        assert_eq!(
            attribute(client, key).as_deref(),
            Some(value),
            "client span {key}"
        );
    }
    let server = find(&spans, &format!("process {ECHO}"));
    assert_eq!(server.span_kind, SpanKind::Server);
    assert_eq!(server.span_context.trace_id(), trace_id);
    assert_eq!(server.parent_span_id, client.span_context.span_id());
    for (key, value) in [
        ("messaging.system", "nats"),
        ("messaging.operation.type", "process"),
        ("messaging.destination.name", ECHO),
        ("messaging.consumer.group.name", "sspr-tracetest"),
        ("rpc.system", "nats"),
        ("rpc.service", "tracetest"),
        ("rpc.method", "echo"),
    ] {
        assert_eq!(
            attribute(server, key).as_deref(),
            Some(value),
            "server span {key}"
        );
    }

    let lines = capture.lines();
    let handled = lines
        .iter()
        .find(|l| l.contains("handling the echo request"))
        .unwrap_or_else(|| panic!("no handler line in {lines:#?}"));
    assert!(
        handled.ends_with(&format!(" trace_id={trace_id}")),
        "the handler's line carries the trace id {trace_id}: {handled}"
    );
    let outside = lines
        .iter()
        .find(|l| l.contains("a line outside any span"))
        .unwrap_or_else(|| panic!("no outside line in {lines:#?}"));
    assert!(!outside.contains("trace_id="), "{outside}");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_for_another_trace_links_to_it_and_keeps_its_context() {
    let capture = capture();
    let dir = tempfile::tempdir().unwrap();
    let (_nats, url) = nats_server(dir.path()).await;
    let bus = Bus::connect(&BusConfig::new(&url, "trace-test"))
        .await
        .unwrap();
    bus.jetstream()
        .create_stream(async_nats::jetstream::stream::Config {
            name: "TRACETEST".into(),
            subjects: vec!["sspr.events.v1.tracetest.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let mut raw = bus.client().subscribe(EVENT).await.unwrap();
    bus.client().flush().await.unwrap();

    // A row written earlier under another request: its traceparent travels with it.
    const ORIGIN_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const ORIGIN_SPAN: &str = "00f067aa0ba902b7";
    let origin = format!("00-{ORIGIN_TRACE}-{ORIGIN_SPAN}-01");
    let mut headers = HeaderMap::new();
    headers.insert("traceparent", origin.as_str());
    bus.publish_durable(EVENT, "event-1", headers, Bytes::from_static(b"one"))
        .await
        .unwrap();
    // A message published inside a request of its own carries the publish span's context.
    let root = tracing::info_span!("test.request");
    bus.publish_durable(
        EVENT,
        "event-2",
        HeaderMap::new(),
        Bytes::from_static(b"two"),
    )
    .instrument(root.clone())
    .await
    .unwrap();
    let request_trace = root.context().span().span_context().trace_id();
    drop(root);

    let first = tokio::time::timeout(Duration::from_secs(5), raw.next())
        .await
        .unwrap()
        .unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), raw.next())
        .await
        .unwrap()
        .unwrap();
    let traceparent = |m: &async_nats::Message| {
        m.headers
            .as_ref()
            .and_then(|h| h.get("traceparent"))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(
        traceparent(&first),
        origin,
        "the origin's context stays on the message"
    );

    let spans = capture.spans();
    let publishes: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name == format!("send {EVENT}"))
        .collect();
    assert_eq!(publishes.len(), 2, "{publishes:#?}");
    for span in &publishes {
        assert_eq!(span.span_kind, SpanKind::Producer);
        for (key, value) in [
            ("messaging.system", "nats"),
            ("messaging.operation.type", "send"),
            ("messaging.destination.name", EVENT),
        ] {
            assert_eq!(attribute(span, key).as_deref(), Some(value), "{key}");
        }
    }
    let batch = publishes
        .iter()
        .find(|s| s.span_context.trace_id().to_string() != request_trace.to_string())
        .expect("the publish outside the request");
    assert_ne!(batch.span_context.trace_id().to_string(), ORIGIN_TRACE);
    let links: Vec<String> = batch
        .links
        .iter()
        .map(|l| format!("{}-{}", l.span_context.trace_id(), l.span_context.span_id()))
        .collect();
    assert_eq!(links, vec![format!("{ORIGIN_TRACE}-{ORIGIN_SPAN}")]);

    let own = publishes
        .iter()
        .find(|s| s.span_context.trace_id() == request_trace)
        .expect("the publish inside the request");
    assert!(own.links.is_empty());
    assert_eq!(
        traceparent(&second),
        format!(
            "00-{}-{}-01",
            own.span_context.trace_id(),
            own.span_context.span_id()
        ),
        "a message without a context gets the publish span's"
    );
}
