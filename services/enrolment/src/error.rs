//! The enrolment error type and its one mapping to the status a caller sees.
//!
//! Refusals carry a message safe for the end user; infrastructure failures are logged here (with
//! no secret and no destination: messages are built from fixed text and ids only) and reach the
//! caller as a bare `INTERNAL`. A peer service's refusal passes through unchanged.

use sspr_bus::{BusError, RpcError};

use crate::domain::questions::AnswerError;
use crate::domain::sign_in_throttle::Throttled;
use crate::domain::takeover::STEP_UP_REQUIRED_REASON;
use crate::domain::{
    AddRefusal, DestinationError, EntropyError, IdError, MalformedToken, MethodKind, RemoveRefusal,
    StepUpRequired,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input; the text says what is wrong and is shown to the user.
    #[error("{0}")]
    InvalidArgument(String),
    #[error("unknown or expired session")]
    UnknownSession,
    #[error("self-service password reset is not enabled for this account")]
    NotEligible,
    #[error("{0} is not an allowed contact method for this account")]
    KindNotAllowed(MethodKind),
    #[error("at least {required} contact methods must stay registered")]
    BelowRequired { required: u32 },
    #[error("too many contact methods: at most 10 may be registered or pending")]
    TooManyMethods,
    #[error("unknown method")]
    UnknownMethod,
    /// A concurrent request confirmed the method first, with the same code.
    #[error("this method is already confirmed")]
    AlreadyConfirmed,
    /// Answers to security questions were refused; the text names indexes, never answers.
    #[error(transparent)]
    Answers(#[from] AnswerError),
    /// Hashing an answer failed.
    #[error("hashing failed: {0}")]
    Hashing(String),
    /// A call to another service failed or was refused.
    #[error(transparent)]
    Peer(#[from] BusError),
    /// Another service answered something we cannot use.
    #[error("{0}")]
    BadPeerReply(&'static str),
    #[error("database error: {0}")]
    Db(#[from] sea_orm::DbErr),
    /// A stored row does not parse; the text names the row, never its contents.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Entropy(#[from] EntropyError),
    /// The session must prove one of the user's existing methods first.
    #[error(transparent)]
    StepUpRequired(#[from] StepUpRequired),
    /// Too many sign-in password checks for this user id or client IP.
    #[error(transparent)]
    Throttled(#[from] Throttled),
}

impl From<DestinationError> for Error {
    fn from(e: DestinationError) -> Self {
        Error::InvalidArgument(e.reason().to_owned())
    }
}

impl From<IdError> for Error {
    fn from(e: IdError) -> Self {
        Error::InvalidArgument(e.to_string())
    }
}

impl From<MalformedToken> for Error {
    fn from(_: MalformedToken) -> Self {
        Error::UnknownSession
    }
}

impl From<AddRefusal> for Error {
    fn from(e: AddRefusal) -> Self {
        match e {
            AddRefusal::TooManyMethods => Error::TooManyMethods,
        }
    }
}

impl From<RemoveRefusal> for Error {
    fn from(e: RemoveRefusal) -> Self {
        match e {
            RemoveRefusal::BelowRequired { required } => Error::BelowRequired { required },
        }
    }
}

impl From<Error> for RpcError {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidArgument(m) => RpcError::invalid_argument(m),
            Error::UnknownSession => RpcError::unauthenticated(e.to_string()),
            Error::NotEligible
            | Error::KindNotAllowed(_)
            | Error::AlreadyConfirmed
            | Error::BelowRequired { .. } => RpcError::failed_precondition(e.to_string()),
            Error::TooManyMethods => RpcError::resource_exhausted(e.to_string()),
            Error::StepUpRequired(_) => {
                RpcError::failed_precondition(e.to_string()).with_reason(STEP_UP_REQUIRED_REASON)
            }
            Error::Throttled(t) => RpcError::resource_exhausted(e.to_string())
                .with_retry_after(t.retry_after_secs)
                .with_reason("SIGN_IN_THROTTLED"),
            Error::UnknownMethod => RpcError::not_found(e.to_string()),
            Error::Answers(AnswerError::NotAllowed) => RpcError::failed_precondition(e.to_string()),
            Error::Answers(e) => RpcError::invalid_argument(e.to_string()),
            Error::Peer(e) => e.into_rpc(),
            Error::BadPeerReply(_)
            | Error::Db(_)
            | Error::Corrupt(_)
            | Error::Entropy(_)
            | Error::Hashing(_) => {
                tracing::error!(error = %e, "enrolment request failed");
                RpcError::internal()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use sspr_bus::ErrorCode;

    use super::*;

    fn code(e: Error) -> ErrorCode {
        RpcError::from(e).code
    }

    #[test]
    fn codes() {
        assert_eq!(
            code(Error::InvalidArgument("x".into())),
            ErrorCode::InvalidArgument
        );
        assert_eq!(code(Error::UnknownSession), ErrorCode::Unauthenticated);
        assert_eq!(code(Error::NotEligible), ErrorCode::FailedPrecondition);
        assert_eq!(
            code(Error::KindNotAllowed(MethodKind::Sms)),
            ErrorCode::FailedPrecondition
        );
        assert_eq!(code(Error::AlreadyConfirmed), ErrorCode::FailedPrecondition);
        assert_eq!(
            code(Error::BelowRequired { required: 2 }),
            ErrorCode::FailedPrecondition
        );
        assert_eq!(code(Error::TooManyMethods), ErrorCode::ResourceExhausted);
        assert_eq!(code(Error::UnknownMethod), ErrorCode::NotFound);
        assert_eq!(
            code(Error::Corrupt("methods row m_1".into())),
            ErrorCode::Internal
        );
    }

    #[test]
    fn step_up_and_throttle_refusals_carry_their_reason_and_retry_after() {
        let e = RpcError::from(Error::StepUpRequired(StepUpRequired));
        assert_eq!(e.code, ErrorCode::FailedPrecondition);
        assert_eq!(e.reason.as_deref(), Some("STEP_UP_REQUIRED"));
        assert!(
            e.message
                .contains("verify one of your registered methods first")
        );
        let e = RpcError::from(Error::Throttled(Throttled {
            retry_after_secs: 42,
        }));
        assert_eq!(e.code, ErrorCode::ResourceExhausted);
        assert_eq!(e.retry_after_secs, Some(42));
    }

    #[test]
    fn peer_refusals_pass_through() {
        let refused = RpcError::unauthenticated("wrong user id or password");
        assert_eq!(
            RpcError::from(Error::Peer(BusError::Rpc(refused.clone()))),
            refused
        );
        let down = RpcError::from(Error::Peer(BusError::NoResponders(
            "sspr.rpc.directory.authenticate".into(),
        )));
        assert_eq!(down.code, ErrorCode::Unavailable);
    }

    #[test]
    fn internal_details_stay_inside() {
        let e = RpcError::from(Error::Db(sea_orm::DbErr::Custom(
            "table methods is locked".into(),
        )));
        assert_eq!(e, RpcError::internal());
    }

    #[test]
    fn messages() {
        assert_eq!(
            RpcError::from(Error::NotEligible).message,
            "self-service password reset is not enabled for this account"
        );
        assert_eq!(
            RpcError::from(Error::UnknownSession).message,
            "unknown or expired session"
        );
        assert_eq!(
            RpcError::from(Error::KindNotAllowed(MethodKind::Sms)).message,
            "sms is not an allowed contact method for this account"
        );
    }
}
