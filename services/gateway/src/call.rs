//! One gRPC call as a traced unit of work.
//!
//! Every RPC runs inside a server span named `<package.Service>/<Method>` with the OpenTelemetry
//! RPC attributes, whose parent is the W3C `traceparent`/`tracestate` the client sent, if any:
//! a client that sends the same `traceparent` on its four reset calls gets one trace. The bus
//! injects this span's context into the NATS headers of every request made inside it.
//!
//! Only the service and method names and the status code are recorded: never a request field.

use std::future::Future;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::metadata::{KeyRef, MetadataMap};
use tonic::{Code, Response, Status};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::error::GatewayError;

/// Reads W3C trace-context entries from gRPC metadata.
struct MetadataExtractor<'a>(&'a MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                KeyRef::Ascii(k) => Some(k.as_str()),
                KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// The span of one RPC, created before the request body is looked at.
pub(crate) struct Call {
    span: tracing::Span,
}

impl Call {
    /// Opens the span of `service`/`method` (e.g. `sspr.reset.v1.PasswordReset`, `StartReset`),
    /// continuing the caller's trace when `metadata` carries one.
    pub(crate) fn start(
        service: &'static str,
        method: &'static str,
        metadata: &MetadataMap,
    ) -> Self {
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = %format!("{service}/{method}"),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        let parent = TraceContextPropagator::new().extract(&MetadataExtractor(metadata));
        // Fails only when no OpenTelemetry layer is installed; the span then simply has no
        // trace to join, which is what such a process asked for.
        let _ = span.set_parent(parent);
        Self { span }
    }

    /// Runs `work` inside the span and records the resulting gRPC status code.
    pub(crate) async fn run<T>(
        self,
        work: impl Future<Output = Result<T, GatewayError>>,
    ) -> Result<Response<T>, Status> {
        let result = async { work.await.map_err(Status::from) }
            .instrument(self.span.clone())
            .await;
        let code = match &result {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        };
        self.span.record("rpc.grpc.status_code", code as i32);
        if is_server_error(code) {
            self.span.record("otel.status_code", "ERROR");
        }
        result.map(Response::new)
    }
}

/// The codes OpenTelemetry's RPC conventions count as a server-side error.
fn is_server_error(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extractor_reads_ascii_metadata() {
        let mut metadata = MetadataMap::new();
        metadata.insert(
            "traceparent",
            tonic::metadata::MetadataValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        let extractor = MetadataExtractor(&metadata);
        assert_eq!(
            extractor.get("traceparent"),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
        assert_eq!(extractor.keys(), vec!["traceparent"]);
        assert_eq!(extractor.get("tracestate"), None);
    }

    #[test]
    fn client_errors_are_not_server_errors() {
        assert!(!is_server_error(Code::InvalidArgument));
        assert!(!is_server_error(Code::Unauthenticated));
        assert!(!is_server_error(Code::FailedPrecondition));
        assert!(is_server_error(Code::Unavailable));
        assert!(is_server_error(Code::Internal));
    }
}
