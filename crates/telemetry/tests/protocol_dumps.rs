//! Even at `RUST_LOG=trace`, async-nats's TRACE protocol dumps (message payloads, the CONNECT
//! line with the NATS password) never reach the log, while everything else at TRACE does.
//! A binary of its own: the subscriber is global per process.

use std::io::Write;
use std::sync::{Arc, Mutex};

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Debug)]
struct Discard;

impl SpanExporter for Discard {
    fn export(
        &self,
        _batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        std::future::ready(Ok(()))
    }
}

#[test]
fn async_nats_trace_dumps_are_never_logged() {
    let lines = Lines::default();
    let writer = lines.clone();
    let _telemetry = sspr_telemetry::init_with_exporter(
        "protocol-dumps-test",
        "trace",
        Discard,
        sspr_telemetry::BoxMakeWriter::new(move || writer.clone()),
    )
    .expect("install");
    tracing::trace!(target: "async_nats::connection", op = "PUB pw=hunter2", "write operation");
    tracing::debug!(target: "async_nats", "connection state changed");
    tracing::trace!(target: "sspr_bus::consumer", "an sspr trace line");
    let text =
        String::from_utf8_lossy(&lines.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    assert!(
        !text.contains("hunter2"),
        "a protocol dump was logged: {text}"
    );
    assert!(text.contains("connection state changed"), "{text}");
    assert!(text.contains("an sspr trace line"), "{text}");
}
