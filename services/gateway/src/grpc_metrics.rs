//! Rate, errors and duration of every gRPC call: `sspr_grpc_server_duration_seconds{method,code}`
//! and `sspr_grpc_server_in_flight`.
//!
//! A tower layer on the whole server, outside load shedding and the oversized-request mapping,
//! so it counts what the client really got: a call refused as busy is an `UNAVAILABLE`, an
//! oversized one a `RESOURCE_EXHAUSTED`. The code is read where gRPC puts it: in the response
//! headers of a refusal (a "trailers-only" response), otherwise in the trailers at the end of
//! the body; a body dropped before its trailers (the client went away) counts as `CANCELLED`.
//! The duration runs from the request's arrival to that point, and the call is in flight
//! until then.
//!
//! `method` is the full method name without the leading slash
//! (`sspr.reset.v1.PasswordReset/StartReset`) for the methods this server serves (the public
//! services, gRPC health and reflection) and `unknown` for any other path, so a client cannot
//! create label values. `code` is the gRPC status code name (`OK`, `INVALID_ARGUMENT`, ...).

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::Frame;
use prost::Message;
use sspr_telemetry::metrics::{InFlight, catalogue};
use tonic::codegen::http::{self, HeaderMap};

/// The `method` label of a path that is not one of ours.
const UNKNOWN_METHOD: &str = "unknown";

/// Methods of the gRPC services that are not sspr's own but served beside them.
const INFRASTRUCTURE_METHODS: [&str; 4] = [
    "grpc.health.v1.Health/Check",
    "grpc.health.v1.Health/Watch",
    "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// Every method this server serves, `package.Service/Method`.
fn known_methods() -> &'static HashSet<String> {
    static METHODS: OnceLock<HashSet<String>> = OnceLock::new();
    METHODS.get_or_init(|| {
        let mut methods: HashSet<String> = INFRASTRUCTURE_METHODS
            .iter()
            .map(|m| (*m).to_owned())
            .collect();
        // The public services, as the descriptor set compiled into the binary describes them.
        if let Ok(set) = prost_types::FileDescriptorSet::decode(sspr_proto::FILE_DESCRIPTOR_SET) {
            for file in set
                .file
                .iter()
                .filter(|f| !f.package().starts_with("sspr.internal."))
            {
                for service in &file.service {
                    for method in &service.method {
                        methods.insert(format!(
                            "{}.{}/{}",
                            file.package(),
                            service.name(),
                            method.name()
                        ));
                    }
                }
            }
        }
        methods
    })
}

/// The `method` label of a request path.
pub(crate) fn method_label(path: &str) -> &'static str {
    path.strip_prefix('/')
        .and_then(|method| known_methods().get(method))
        .map_or(UNKNOWN_METHOD, String::as_str)
}

/// The gRPC status code name of a `grpc-status` value (`UNKNOWN` for anything else).
pub(crate) fn code_name(status: &[u8]) -> &'static str {
    let code = std::str::from_utf8(status)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .unwrap_or(2);
    match code {
        0 => "OK",
        1 => "CANCELLED",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

/// Records every call; see the module documentation.
#[derive(Clone, Copy, Default)]
pub(crate) struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics { inner }
    }
}

#[derive(Clone)]
pub(crate) struct GrpcMetrics<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqB, ResB> tower::Service<http::Request<ReqB>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<ReqB>, Response = http::Response<ResB>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<MeasuredBody<ResB>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqB>) -> Self::Future {
        let mut call = Call {
            method: method_label(request.uri().path()),
            started: Instant::now(),
            in_flight: Some(catalogue().grpc_server_in_flight.track(&[])),
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            // A refusal is a trailers-only response: its code is in the headers.
            let done = match response.headers().get("grpc-status") {
                Some(status) => {
                    call.finish(code_name(status.as_bytes()));
                    None
                }
                None => Some(call),
            };
            Ok(response.map(|body| MeasuredBody {
                inner: body,
                call: done,
            }))
        })
    }
}

/// One call being measured.
struct Call {
    method: &'static str,
    started: Instant,
    in_flight: Option<InFlight>,
}

impl Call {
    fn finish(&mut self, code: &str) {
        if self.in_flight.take().is_some() {
            catalogue()
                .grpc_server_duration
                .observe_since(&[self.method, code], self.started);
        }
    }
}

impl Drop for Call {
    /// A call whose response never reached its trailers: the client (or the connection) went
    /// away first.
    fn drop(&mut self) {
        self.finish("CANCELLED");
    }
}

/// The response body, watched for the trailers that carry the call's status code.
pub(crate) struct MeasuredBody<B> {
    inner: B,
    call: Option<Call>,
}

impl<B> http_body::Body for MeasuredBody<B>
where
    B: http_body::Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Some(call) = this.call.as_mut() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(trailers) = frame.trailers_ref() {
                        call.finish(code_of(trailers));
                    }
                }
                // The body failed: the stream is reset, the client sees no status.
                Poll::Ready(Some(Err(_))) => call.finish("UNKNOWN"),
                // Ended without trailers: not a gRPC response we can read a code from.
                Poll::Ready(None) => call.finish("UNKNOWN"),
                Poll::Pending => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn code_of(trailers: &HeaderMap) -> &'static str {
    trailers
        .get("grpc-status")
        .map_or("UNKNOWN", |status| code_name(status.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_served_methods_become_labels() {
        assert_eq!(
            method_label("/sspr.reset.v1.PasswordReset/StartReset"),
            "sspr.reset.v1.PasswordReset/StartReset"
        );
        assert_eq!(
            method_label("/sspr.admin.v1.Admin/SetPolicy"),
            "sspr.admin.v1.Admin/SetPolicy"
        );
        assert_eq!(
            method_label("/grpc.health.v1.Health/Check"),
            "grpc.health.v1.Health/Check"
        );
        for other in [
            "/sspr.reset.v1.PasswordReset/NoSuchMethod",
            "/sspr.internal.verification.v1.Verification/StartReset",
            "sspr.reset.v1.PasswordReset/StartReset",
            "/",
            "",
            "/x?user=alice",
        ] {
            assert_eq!(method_label(other), UNKNOWN_METHOD, "{other:?}");
        }
    }

    #[test]
    fn status_codes_have_their_names() {
        assert_eq!(code_name(b"0"), "OK");
        assert_eq!(code_name(b"3"), "INVALID_ARGUMENT");
        assert_eq!(code_name(b"14"), "UNAVAILABLE");
        assert_eq!(code_name(b"16"), "UNAUTHENTICATED");
        for odd in [&b"17"[..], b"-1", b"", b"x"] {
            assert_eq!(code_name(odd), "UNKNOWN");
        }
    }
}
