//! Errors that cross the bus.
//!
//! A handler answers with an [`RpcError`]: a gRPC-compatible [`ErrorCode`] and a message that is
//! safe to show to the end user (never a secret, never an internal detail). It travels in the
//! NATS micro-service error headers (`Nats-Service-Error-Code` = the numeric gRPC code,
//! `Nats-Service-Error` = the message), so the gateway can turn it into the same gRPC status.
//!
//! A refusal may also carry structured [`BadRequest`] details (one [`FieldViolation`] per broken
//! rule, e.g. each password rule). They travel in the [`DETAILS_HEADER`] reply header as the
//! lower-case hex of the protobuf encoding of `google.rpc.BadRequest` (the messages below are
//! wire-compatible with it), survive every hop that passes an [`RpcError`] on unchanged, and
//! become `google.rpc.Status` details at the gateway. Like the message, they are written for
//! end users: never a secret, never the rejected value.

/// The subset of gRPC status codes sspr uses, with the same numeric values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

impl ErrorCode {
    /// The code as a lower-case word (`invalid_argument`, `unavailable`, ...): the `status`
    /// label of the RPC metrics and the `error.type` of spans.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidArgument => "invalid_argument",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::NotFound => "not_found",
            Self::AlreadyExists => "already_exists",
            Self::PermissionDenied => "permission_denied",
            Self::ResourceExhausted => "resource_exhausted",
            Self::FailedPrecondition => "failed_precondition",
            Self::Internal => "internal",
            Self::Unavailable => "unavailable",
            Self::Unauthenticated => "unauthenticated",
        }
    }

    /// Whether the code means the server failed (OpenTelemetry marks such spans as errors);
    /// the others are the caller's fault or an expected refusal.
    pub fn is_server_error(self) -> bool {
        matches!(
            self,
            Self::Internal | Self::Unavailable | Self::DeadlineExceeded
        )
    }

    /// Parses the numeric gRPC code; unknown values become `Internal`.
    pub fn from_number(n: usize) -> Self {
        match n {
            3 => Self::InvalidArgument,
            4 => Self::DeadlineExceeded,
            5 => Self::NotFound,
            6 => Self::AlreadyExists,
            7 => Self::PermissionDenied,
            8 => Self::ResourceExhausted,
            9 => Self::FailedPrecondition,
            14 => Self::Unavailable,
            16 => Self::Unauthenticated,
            _ => Self::Internal,
        }
    }
}

/// The reply header carrying an error's [`BadRequest`] details (hex of its protobuf encoding).
pub const DETAILS_HEADER: &str = "Sspr-Error-Details";
/// The reply header carrying [`RpcError::retry_after_secs`] (decimal whole seconds).
pub const RETRY_AFTER_HEADER: &str = "Sspr-Retry-After";
/// The reply header carrying [`RpcError::reason`] (an UPPER_SNAKE_CASE machine-readable reason).
pub const REASON_HEADER: &str = "Sspr-Error-Reason";

/// Largest details accepted from a reply header, in bytes once decoded; larger ones are dropped.
const MAX_DETAILS_BYTES: usize = 32 * 1024;

/// Wire-compatible with `google.rpc.BadRequest`: the fields of a request that broke a rule.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct BadRequest {
    #[prost(message, repeated, tag = "1")]
    pub field_violations: Vec<FieldViolation>,
}

/// Wire-compatible with `google.rpc.BadRequest.FieldViolation`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct FieldViolation {
    /// The request field, e.g. `new_password`.
    #[prost(string, tag = "1")]
    pub field: String,
    /// Why it was refused, for the end user.
    #[prost(string, tag = "2")]
    pub description: String,
    /// A stable identifier of the broken rule, e.g. `banned_term`.
    #[prost(string, tag = "3")]
    pub reason: String,
}

impl FieldViolation {
    pub fn new(
        field: impl Into<String>,
        description: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
            reason: reason.into(),
        }
    }
}

impl BadRequest {
    /// The header value: lower-case hex of the protobuf encoding.
    pub fn to_header_value(&self) -> String {
        use prost::Message;
        let bytes = self.encode_to_vec();
        let mut out = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        out
    }

    /// Parses a header value written by [`Self::to_header_value`]; `None` if it is not one.
    pub fn from_header_value(value: &str) -> Option<Self> {
        use prost::Message;
        let raw = value.trim().as_bytes();
        if !raw.len().is_multiple_of(2) || raw.len() / 2 > MAX_DETAILS_BYTES {
            return None;
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        let bytes = raw
            .chunks_exact(2)
            .map(|pair| Some((nibble(pair[0])? << 4) | nibble(pair[1])?))
            .collect::<Option<Vec<u8>>>()?;
        Self::decode(bytes.as_slice()).ok()
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `google.rpc.Status`, only to find the [`BadRequest`] among a gRPC status's details.
#[derive(Clone, PartialEq, prost::Message)]
struct StatusProto {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

impl BadRequest {
    /// The `Any` type URL of `google.rpc.BadRequest`.
    pub const TYPE_URL: &'static str = "type.googleapis.com/google.rpc.BadRequest";

    /// The first `BadRequest` in the details of a gRPC status (the bytes of the
    /// `grpc-status-details-bin` trailer, an encoded `google.rpc.Status`), for clients.
    pub fn from_status_details(details: &[u8]) -> Option<Self> {
        use prost::Message;
        StatusProto::decode(details)
            .ok()?
            .details
            .into_iter()
            .find(|any| any.type_url == Self::TYPE_URL)
            .and_then(|any| Self::decode(any.value.as_slice()).ok())
    }
}

/// A handler's refusal, safe to forward to the end user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct RpcError {
    pub code: ErrorCode,
    pub message: String,
    /// Structured reasons (e.g. one per broken password rule), if the refusal has any.
    pub details: Option<BadRequest>,
    /// For a throttled call (`ResourceExhausted`): whole seconds until a retry may succeed.
    /// Becomes the gateway's `retry-after` metadata and `google.rpc.RetryInfo`.
    pub retry_after_secs: Option<u64>,
    /// A stable machine-readable reason in UPPER_SNAKE_CASE (e.g. `CHALLENGE_REQUIRED`,
    /// `STEP_UP_REQUIRED`); becomes `google.rpc.ErrorInfo.reason` at the gateway.
    pub reason: Option<String>,
}

impl RpcError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: None,
            retry_after_secs: None,
            reason: None,
        }
    }

    /// The same refusal, telling the caller to retry after `secs` seconds.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// The same refusal with a machine-readable reason (UPPER_SNAKE_CASE).
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// The same refusal with `violations` as its [`BadRequest`] details (none: no details).
    pub fn with_violations(mut self, violations: Vec<FieldViolation>) -> Self {
        self.details = if violations.is_empty() {
            None
        } else {
            Some(BadRequest {
                field_violations: violations,
            })
        };
        self
    }
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn failed_precondition(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::FailedPrecondition, message)
    }
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PermissionDenied, message)
    }
    pub fn resource_exhausted(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ResourceExhausted, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }
    /// An internal failure: the caller only learns that something went wrong. Log the cause
    /// where it happened, not here.
    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "internal error")
    }
}

/// Why a bus call failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The remote handler refused the request.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// Nobody answered on the subject (service down or not yet started).
    #[error("no service is listening on {0}")]
    NoResponders(String),
    #[error("request to {0} timed out")]
    Timeout(String),
    /// The caller's deadline passed before the answer came (or before the request was sent).
    #[error("the caller's deadline passed while calling {0}")]
    DeadlineExceeded(String),
    #[error("nats request to {subject} failed: {source}")]
    Request {
        subject: String,
        source: async_nats::RequestError,
    },
    #[error("could not decode the reply from {subject}: {source}")]
    Decode {
        subject: String,
        source: prost::DecodeError,
    },
    #[error("jetstream publish to {subject} failed: {message}")]
    Publish { subject: String, message: String },
    #[error("jetstream setup failed: {0}")]
    JetStream(String),
}

impl BusError {
    /// What the caller saw, as one word: the remote refusal's code word, or `timeout`,
    /// `no_responders`, `deadline_exceeded`, `malformed_reply`, `request_failed`,
    /// `publish_failed`, `jetstream_failed`. The `status` label of the client RPC metrics.
    pub fn status_word(&self) -> &'static str {
        match self {
            BusError::Rpc(e) => e.code.as_str(),
            BusError::NoResponders(_) => "no_responders",
            BusError::Timeout(_) => "timeout",
            BusError::DeadlineExceeded(_) => "deadline_exceeded",
            BusError::Request { .. } => "request_failed",
            BusError::Decode { .. } => "malformed_reply",
            BusError::Publish { .. } => "publish_failed",
            BusError::JetStream(_) => "jetstream_failed",
        }
    }

    /// The error to hand on to our own caller: a remote refusal passes through unchanged, an
    /// infrastructure failure becomes `UNAVAILABLE` / `INTERNAL` without its details.
    pub fn into_rpc(self) -> RpcError {
        match self {
            BusError::Rpc(e) => e,
            BusError::NoResponders(_) | BusError::Timeout(_) => {
                tracing::warn!(error = %self, "dependency unavailable");
                RpcError::unavailable("a dependency is unavailable, try again shortly")
            }
            BusError::DeadlineExceeded(_) => {
                RpcError::new(ErrorCode::DeadlineExceeded, "deadline exceeded")
            }
            other => {
                tracing::error!(error = %other, "bus failure");
                RpcError::internal()
            }
        }
    }
}

impl From<BusError> for RpcError {
    fn from(e: BusError) -> Self {
        e.into_rpc()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn details_round_trip_through_the_header_value() {
        let details = BadRequest {
            field_violations: vec![
                FieldViolation::new(
                    "new_password",
                    "contains a commonly used password",
                    "banned_term",
                ),
                FieldViolation::new("new_password", "é ü — non-ASCII survives", "score_too_low"),
            ],
        };
        let value = details.to_header_value();
        assert!(value.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(BadRequest::from_header_value(&value), Some(details));
        assert_eq!(BadRequest::from_header_value("abc"), None);
        assert_eq!(BadRequest::from_header_value("zz"), None);
        assert_eq!(
            BadRequest::from_header_value(""),
            Some(BadRequest::default())
        );
    }

    #[test]
    fn bad_request_is_found_among_status_details() {
        use prost::Message;
        let details = BadRequest {
            field_violations: vec![FieldViolation::new("password", "too short", "too_short")],
        };
        let status = StatusProto {
            code: 3,
            message: "password rejected: too short".into(),
            details: vec![
                prost_types::Any {
                    type_url: "type.googleapis.com/google.rpc.ErrorInfo".into(),
                    value: vec![1, 2, 3],
                },
                prost_types::Any {
                    type_url: BadRequest::TYPE_URL.into(),
                    value: details.encode_to_vec(),
                },
            ],
        };
        assert_eq!(
            BadRequest::from_status_details(&status.encode_to_vec()),
            Some(details)
        );
        assert_eq!(BadRequest::from_status_details(&[]), None);
        assert_eq!(BadRequest::from_status_details(&[0xff, 0xff]), None);
    }

    #[test]
    fn no_violations_means_no_details() {
        let e = RpcError::invalid_argument("m").with_violations(Vec::new());
        assert_eq!(e.details, None);
        let e = RpcError::invalid_argument("m").with_violations(vec![FieldViolation::new(
            "password",
            "too short",
            "too_short",
        )]);
        assert_eq!(e.details.unwrap().field_violations.len(), 1);
    }

    #[test]
    fn a_remote_refusal_passes_through_with_its_details() {
        let e = RpcError::invalid_argument("password rejected: x").with_violations(vec![
            FieldViolation::new("new_password", "x", "banned_term"),
        ]);
        assert_eq!(BusError::Rpc(e.clone()).into_rpc(), e);
        assert_eq!(RpcError::from(BusError::Rpc(e.clone())), e);
    }
}
