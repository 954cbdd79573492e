//! One gRPC call as a traced unit of work.
//!
//! Every RPC runs inside a server span named `<package.Service>/<Method>` with the OpenTelemetry
//! RPC attributes, whose parent is the W3C `traceparent`/`tracestate` the client sent, if any:
//! a client that sends the same `traceparent` on its four reset calls gets one trace. The bus
//! injects this span's context into the NATS headers of every request made inside it.
//!
//! Only the service and method names and the status code are recorded: never a request field.
//!
//! A call also carries two things to every NATS request made inside it (task-locals of the bus):
//! - its **deadline**, from the client's `grpc-timeout` (tonic leaves the header in the
//!   metadata): each request waits at most the time left and forwards it
//!   (`sspr_bus::deadline`); a call whose deadline passed answers `DEADLINE_EXCEEDED`;
//! - for the mutating methods ([`MUTATING`]), the client's **idempotency key** from
//!   `x-request-id` (1 to 128 visible ASCII characters, otherwise `INVALID_ARGUMENT` before any
//!   NATS traffic), forwarded as `Sspr-Request-Id` so the owning service answers a retry with
//!   the first attempt's answer (`sspr_bus::idempotency`). The key is never logged.

use std::future::Future;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::metadata::{KeyRef, MetadataMap};
use tonic::{Code, Response, Status};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::domain::input::InvalidField;
use crate::error::GatewayError;

/// The gRPC methods that change state, by service: they honour `x-request-id`.
pub(crate) const MUTATING: [(&str, &[&str]); 3] = [
    (
        "sspr.reset.v1.PasswordReset",
        &[
            "StartReset",
            "SendCode",
            "VerifyCode",
            "CompleteReset",
            "AnswerSecurityQuestions",
            "UnlockAccount",
        ],
    ),
    (
        "sspr.registration.v1.Registration",
        &[
            "BeginRegistration",
            "AddMethod",
            "ConfirmMethod",
            "RemoveMethod",
            "SetSecurityAnswers",
            "SendStepUpCode",
            "VerifyStepUpCode",
        ],
    ),
    (
        "sspr.admin.v1.Admin",
        &[
            "SetPolicy",
            "SetPasswordPolicy",
            "UpsertUser",
            "DeleteUser",
            "UnlockUser",
            "UpsertGroup",
            "DeleteGroup",
            "ClearBlock",
        ],
    ),
];

/// Part of the client's budget kept back to answer `DEADLINE_EXCEEDED` in time: at the
/// deadline itself tonic's own timeout (and the client's) would end the call as `CANCELLED`.
const ANSWER_MARGIN: Duration = Duration::from_millis(25);

/// The metadata key of the client's idempotency key.
pub(crate) const REQUEST_ID_METADATA: &str = "x-request-id";

fn is_mutating(service: &str, method: &str) -> bool {
    MUTATING
        .iter()
        .any(|(s, methods)| *s == service && methods.contains(&method))
}

/// The client's `grpc-timeout` (gRPC over HTTP/2: up to 8 digits and a unit `H M S m u n`);
/// `None` when absent or malformed (tonic's own timeout layer then ignores it too).
pub(crate) fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let raw = metadata.get("grpc-timeout")?.to_str().ok()?;
    if raw.len() < 2 {
        return None;
    }
    let (value, unit) = raw.split_at(raw.len() - 1);
    if value.len() > 8 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u64 = value.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value * 3600),
        "M" => Duration::from_secs(value * 60),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

/// The idempotency key of a mutating call: `Ok(None)` without one.
fn request_id(metadata: &MetadataMap) -> Result<Option<String>, InvalidField> {
    let Some(value) = metadata.get(REQUEST_ID_METADATA) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| sspr_bus::idempotency::parse_request_id(v).ok())
        .map(|v| Some(v.to_owned()))
        .ok_or_else(|| InvalidField {
            field: REQUEST_ID_METADATA,
            problem: "must be 1 to 128 visible ASCII characters".to_owned(),
        })
}

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

/// The span of one RPC, created before the request body is looked at, with the call's
/// deadline and idempotency key.
pub(crate) struct Call {
    span: tracing::Span,
    deadline: Option<tokio::time::Instant>,
    request_id: Result<Option<String>, InvalidField>,
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
        let deadline = grpc_timeout(metadata)
            .map(|t| tokio::time::Instant::now() + t.saturating_sub(ANSWER_MARGIN));
        let request_id = if is_mutating(service, method) {
            request_id(metadata)
        } else {
            Ok(None)
        };
        Self {
            span,
            deadline,
            request_id,
        }
    }

    /// Runs `work` inside the span, with the call's deadline and idempotency key, and records
    /// the resulting gRPC status code. A malformed `x-request-id` is refused without running it.
    pub(crate) async fn run<T>(
        self,
        work: impl Future<Output = Result<T, GatewayError>>,
    ) -> Result<Response<T>, Status> {
        let deadline = self.deadline;
        let request_id = self.request_id;
        let result = async {
            let request_id = request_id?;
            sspr_bus::deadline::scope(deadline, sspr_bus::idempotency::scope(request_id, work))
                .await
        }
        .instrument(self.span.clone())
        .await
        .map_err(Status::from);
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
#[allow(clippy::unwrap_used)]
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
    fn grpc_timeouts_parse_like_tonic() {
        let with = |v: &'static str| {
            let mut metadata = MetadataMap::new();
            metadata.insert(
                "grpc-timeout",
                tonic::metadata::MetadataValue::from_static(v),
            );
            grpc_timeout(&metadata)
        };
        assert_eq!(with("250m"), Some(Duration::from_millis(250)));
        assert_eq!(with("3S"), Some(Duration::from_secs(3)));
        assert_eq!(with("2M"), Some(Duration::from_secs(120)));
        assert_eq!(with("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(with("5000u"), Some(Duration::from_millis(5)));
        assert_eq!(with("7n"), Some(Duration::from_nanos(7)));
        for bad in ["", "m", "123456789m", "10x", "-1S", "1.5S"] {
            assert_eq!(with(bad), None, "{bad:?}");
        }
        assert_eq!(grpc_timeout(&MetadataMap::new()), None);
    }

    #[test]
    fn only_mutating_methods_read_the_request_id() {
        assert!(is_mutating("sspr.reset.v1.PasswordReset", "SendCode"));
        assert!(is_mutating("sspr.admin.v1.Admin", "ClearBlock"));
        assert!(!is_mutating("sspr.reset.v1.PasswordReset", "CheckPassword"));
        assert!(!is_mutating("sspr.admin.v1.Admin", "GetPolicy"));
        let mut metadata = MetadataMap::new();
        assert_eq!(request_id(&metadata), Ok(None));
        metadata.insert(REQUEST_ID_METADATA, "bad key".parse().unwrap());
        assert!(request_id(&metadata).is_err());
        metadata.insert(REQUEST_ID_METADATA, "0f9e-key".parse().unwrap());
        assert_eq!(request_id(&metadata), Ok(Some("0f9e-key".to_owned())));
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
