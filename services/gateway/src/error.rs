//! The gateway's errors and the one place they become gRPC statuses.
//!
//! A refusal from an internal service (`BusError::Rpc`) passes through with the same code and
//! message: those messages are written for end users. Infrastructure failures are logged here
//! and reach the client only as `UNAVAILABLE` or `INTERNAL` with a fixed message, so no subject,
//! address or other internal detail leaks. Nothing in this module sees a request body.

use sspr_bus::BusError;
use tonic::{Code, Status};

use crate::domain::input::InvalidField;

/// Why a gateway call failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Public input broke an edge rule; the message names the field.
    #[error(transparent)]
    InvalidArgument(#[from] InvalidField),
    /// The admin bearer token was missing or wrong.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The internal call failed or was refused.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// An internal service answered without a field it must always set.
    #[error("{0}")]
    MalformedReply(&'static str),
}

impl From<GatewayError> for Status {
    fn from(e: GatewayError) -> Self {
        match e {
            GatewayError::InvalidArgument(field) => Status::invalid_argument(field.to_string()),
            GatewayError::Unauthenticated(message) => Status::unauthenticated(message),
            GatewayError::Bus(BusError::Rpc(rpc)) => {
                Status::new(Code::from_i32(rpc.code as i32), rpc.message)
            }
            GatewayError::Bus(e @ (BusError::NoResponders(_) | BusError::Timeout(_))) => {
                tracing::warn!(error = %e, "internal service unavailable");
                Status::unavailable("service temporarily unavailable")
            }
            GatewayError::Bus(e) => {
                tracing::error!(error = %e, "internal call failed");
                Status::internal("internal error")
            }
            GatewayError::MalformedReply(what) => {
                tracing::error!(problem = what, "malformed reply from an internal service");
                Status::internal("internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use sspr_bus::{ErrorCode, RpcError};

    use super::*;

    #[test]
    fn refusals_keep_their_code_and_message() {
        let status: Status = GatewayError::Bus(BusError::Rpc(RpcError::failed_precondition(
            "verify a method first",
        )))
        .into();
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(status.message(), "verify a method first");
        for code in [
            ErrorCode::InvalidArgument,
            ErrorCode::NotFound,
            ErrorCode::ResourceExhausted,
            ErrorCode::Unauthenticated,
            ErrorCode::PermissionDenied,
        ] {
            let status: Status = GatewayError::Bus(BusError::Rpc(RpcError::new(code, "m"))).into();
            assert_eq!(status.code() as i32, code as i32);
        }
    }

    #[test]
    fn infrastructure_failures_hide_their_details() {
        let status: Status =
            GatewayError::Bus(BusError::NoResponders("sspr.rpc.policy.get_policy".into())).into();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "service temporarily unavailable");
        let status: Status =
            GatewayError::Bus(BusError::Timeout("sspr.rpc.policy.get_policy".into())).into();
        assert_eq!(status.code(), Code::Unavailable);
        let status: Status =
            GatewayError::Bus(BusError::JetStream("stream SSPR_EVENTS broke".into())).into();
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error");
        let status: Status = GatewayError::MalformedReply("policy missing").into();
        assert_eq!(status.message(), "internal error");
    }
}
