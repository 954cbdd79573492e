//! The gateway's errors and the one place they become gRPC statuses.
//!
//! A refusal from an internal service (`BusError::Rpc`) passes through with the same code and
//! message: those messages are written for end users, and with its `google.rpc.BadRequest`
//! details, if any (e.g. one field violation per broken password rule, the rule id in
//! `reason`), as the status details. Infrastructure failures are logged here
//! and reach the client only as `UNAVAILABLE` or `INTERNAL` with a fixed message, so no subject,
//! address or other internal detail leaks. Nothing in this module sees a request body.

use sspr_bus::{BusError, RpcError};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

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
    /// Too many failed admin authentications from this client IP; every Admin call from it is
    /// refused until the window ends.
    #[error("too many failed admin authentications from this address; try again later")]
    AdminAuthLimited { retry_after_secs: u64 },
    /// The admin token is valid but its role may not make this call; the message names the
    /// admin, the role and the method (never the token).
    #[error("{0}")]
    PermissionDenied(String),
    /// The internal call failed or was refused.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The thing asked for does not exist; the message says what.
    #[error("{0}")]
    NotFound(&'static str),
    /// An internal service answered without a field it must always set.
    #[error("{0}")]
    MalformedReply(&'static str),
}

impl From<GatewayError> for Status {
    fn from(e: GatewayError) -> Self {
        match e {
            GatewayError::InvalidArgument(field) => Status::invalid_argument(field.to_string()),
            GatewayError::Unauthenticated(message) => Status::unauthenticated(message),
            GatewayError::PermissionDenied(message) => Status::permission_denied(message),
            e @ GatewayError::AdminAuthLimited { retry_after_secs } => refusal(RpcError {
                retry_after_secs: Some(retry_after_secs),
                ..RpcError::resource_exhausted(e.to_string())
            }),
            GatewayError::NotFound(message) => Status::not_found(message),
            GatewayError::Bus(BusError::Rpc(rpc)) => refusal(rpc),
            GatewayError::Bus(BusError::DeadlineExceeded(_)) => {
                Status::deadline_exceeded("deadline exceeded")
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

/// A refusal from an internal service: same code, same message, its details as
/// `google.rpc.BadRequest`.
fn refusal(rpc: RpcError) -> Status {
    let code = Code::from_i32(rpc.code as i32);
    let mut details = ErrorDetails::new();
    let mut any = false;
    if let Some(bad) = rpc.details.filter(|d| !d.field_violations.is_empty()) {
        let violations: Vec<FieldViolation> = bad
            .field_violations
            .into_iter()
            .map(|v| FieldViolation {
                field: v.field,
                description: v.description,
                reason: v.reason,
                localized_message: None,
            })
            .collect();
        details.set_bad_request(violations);
        any = true;
    }
    if let Some(secs) = rpc.retry_after_secs {
        details.set_retry_info(Some(std::time::Duration::from_secs(secs)));
        any = true;
    }
    if let Some(reason) = &rpc.reason {
        details.set_error_info(
            reason.clone(),
            ERROR_DOMAIN,
            std::collections::HashMap::new(),
        );
        any = true;
    }
    let mut status = if any {
        Status::with_error_details(code, rpc.message, details)
    } else {
        Status::new(code, rpc.message)
    };
    if let Some(secs) = rpc.retry_after_secs
        && let Ok(value) = secs.to_string().parse()
    {
        // HTTP's Retry-After convention, for clients that do not read status details.
        status.metadata_mut().insert("retry-after", value);
    }
    status
}

/// `google.rpc.ErrorInfo.domain` of sspr's machine-readable reasons.
pub const ERROR_DOMAIN: &str = "sspr.dev";

#[cfg(test)]
#[allow(clippy::unwrap_used)]
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
    fn refusal_details_become_bad_request_details() {
        let rpc = RpcError::invalid_argument("password rejected: a; b").with_violations(vec![
            sspr_bus::FieldViolation::new("new_password", "a", "banned_password"),
            sspr_bus::FieldViolation::new("new_password", "b", "score_too_low"),
        ]);
        let status: Status = GatewayError::Bus(BusError::Rpc(rpc)).into();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "password rejected: a; b");
        let bad_request = status.get_details_bad_request().unwrap();
        let got: Vec<(&str, &str, &str)> = bad_request
            .field_violations
            .iter()
            .map(|v| (v.field.as_str(), v.description.as_str(), v.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("new_password", "a", "banned_password"),
                ("new_password", "b", "score_too_low")
            ]
        );
        let plain: Status =
            GatewayError::Bus(BusError::Rpc(RpcError::invalid_argument("m"))).into();
        assert!(plain.details().is_empty());
        assert!(plain.get_details_bad_request().is_none());
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
        let status: Status = GatewayError::Bus(BusError::DeadlineExceeded(
            "sspr.rpc.policy.get_policy".into(),
        ))
        .into();
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert_eq!(status.message(), "deadline exceeded");
        let status: Status = GatewayError::MalformedReply("policy missing").into();
        assert_eq!(status.message(), "internal error");
    }
}
