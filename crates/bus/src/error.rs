//! Errors that cross the bus.
//!
//! A handler answers with an [`RpcError`]: a gRPC-compatible [`ErrorCode`] and a message that is
//! safe to show to the end user (never a secret, never an internal detail). It travels in the
//! NATS micro-service error headers (`Nats-Service-Error-Code` = the numeric gRPC code,
//! `Nats-Service-Error` = the message), so the gateway can turn it into the same gRPC status.

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

/// A handler's refusal, safe to forward to the end user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct RpcError {
    pub code: ErrorCode,
    pub message: String,
}

impl RpcError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
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
    /// The error to hand on to our own caller: a remote refusal passes through unchanged, an
    /// infrastructure failure becomes `UNAVAILABLE` / `INTERNAL` without its details.
    pub fn into_rpc(self) -> RpcError {
        match self {
            BusError::Rpc(e) => e,
            BusError::NoResponders(_) | BusError::Timeout(_) => {
                tracing::warn!(error = %self, "dependency unavailable");
                RpcError::unavailable("a dependency is unavailable, try again shortly")
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
