//! The crate's error type and its mapping to the status a caller sees.
//!
//! Messages of the user-facing variants are fixed strings that never contain a code, session
//! id, destination or password. Infrastructure failures are logged here (without secrets) and
//! reach the caller only as `INTERNAL`; refusals from other services pass through unchanged.

use sspr_bus::sealed::SealError;
use sspr_bus::{BusError, RpcError};

use crate::adapters::store::StoreError;
use crate::domain::{InputError, Rejection, SessionError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field broke its rule.
    #[error(transparent)]
    Input(#[from] InputError),
    /// Unknown, malformed, expired or completed session token: the caller cannot tell which.
    #[error("unknown or expired session")]
    UnknownSession,
    #[error("unknown method")]
    UnknownMethod,
    #[error("wait before requesting another code")]
    TooSoon,
    /// The resend wait, with the whole seconds left until a new code may be requested.
    #[error("wait before requesting another code")]
    ResendIn(u64),
    /// A throttle (per user, destination or client IP) is full; same text for every limit,
    /// real and decoy sessions alike.
    #[error("too many requests: try again later")]
    Throttled { retry_after_secs: u64 },
    /// The user id is blocked from self-service reset after too many failed verifications
    /// (never sign-in); the same for real and decoy user ids.
    #[error(
        "self-service reset is blocked for now after too many failed attempts: try again later or contact the helpdesk"
    )]
    Blocked { retry_after_secs: u64 },
    /// The client's recent activity crossed the policy's challenge thresholds.
    #[error("complete the challenge (CAPTCHA) and try again")]
    ChallengeRequired,
    #[error("{}", .0.message())]
    Rejected(Rejection),
    /// The policy requires the typed destination and none was given.
    #[error("destination_confirmation is required")]
    DestinationRequired,
    /// The typed destination does not name the method's destination (a failed attempt).
    #[error("the destination does not match")]
    DestinationMismatch,
    /// A code was asked for a method that has none (security questions).
    #[error("security questions have no code to send: answer them instead")]
    NothingToSend,
    /// GetCodeStatus for a method of the flow that no code was sent to.
    #[error("no code was sent to this method")]
    NoCodeSent,
    /// A security-questions step that cannot run now; the text says why.
    #[error("{0}")]
    Questions(&'static str),
    /// At least one answer was wrong (a failed attempt); never says which.
    #[error("the answers are not right")]
    WrongAnswers { attempts_left: u32 },
    #[error("verify {0} more method(s) first")]
    NotVerified(u32),
    /// CompleteReset more than 10 minutes after the verification that completed the session.
    #[error("the verification is too old: start the reset again")]
    VerificationTooOld,
    /// A second method that reaches a destination already verified in this session.
    #[error("this method reaches a destination already verified: verify a different one")]
    SameDestination,
    /// Unlocking the account is not possible in this flow (not locked, or not allowed).
    #[error("{0}")]
    Unavailable(&'static str),
    /// An SMS-pumping defence refused a phone code (see `handlers::phone_guard`).
    #[error("{0}")]
    PhoneRefused(crate::domain::phone_guard::PhoneRefusal),
    /// Another service refused or could not be reached.
    #[error(transparent)]
    Peer(#[from] BusError),
    #[error(transparent)]
    Store(StoreError),
    #[error("sealing a delivery failed: {0}")]
    Seal(#[from] SealError),
    /// Something that should not happen (inconsistent data from a peer, lost races in a loop).
    #[error("{0}")]
    Internal(&'static str),
}

impl From<SessionError> for Error {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Unusable => Error::UnknownSession,
            SessionError::UnknownMethod => Error::UnknownMethod,
            SessionError::NotVerified { remaining } => Error::NotVerified(remaining),
            SessionError::VerificationTooOld => Error::VerificationTooOld,
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::TooSoon => Error::TooSoon,
            other => Error::Store(other),
        }
    }
}

impl From<Error> for RpcError {
    fn from(e: Error) -> Self {
        match e {
            Error::Input(e) => RpcError::invalid_argument(e.to_string()),
            Error::UnknownSession => RpcError::unauthenticated(Error::UnknownSession.to_string()),
            Error::UnknownMethod => RpcError::invalid_argument(Error::UnknownMethod.to_string()),
            Error::TooSoon => RpcError::resource_exhausted(Error::TooSoon.to_string()),
            e @ Error::ResendIn(secs) => {
                RpcError::resource_exhausted(e.to_string()).with_retry_after(secs)
            }
            e @ (Error::Throttled { retry_after_secs } | Error::Blocked { retry_after_secs }) => {
                RpcError::resource_exhausted(e.to_string()).with_retry_after(retry_after_secs)
            }
            e @ Error::ChallengeRequired => {
                RpcError::failed_precondition(e.to_string()).with_reason("CHALLENGE_REQUIRED")
            }
            e @ (Error::DestinationRequired | Error::DestinationMismatch) => {
                RpcError::invalid_argument(e.to_string())
            }
            Error::Rejected(r @ Rejection::Wrong { .. }) => RpcError::invalid_argument(r.message()),
            Error::Rejected(r) => RpcError::failed_precondition(r.message()),
            e @ (Error::NothingToSend | Error::NoCodeSent | Error::Questions(_)) => {
                RpcError::failed_precondition(e.to_string())
            }
            e @ Error::WrongAnswers { .. } => RpcError::invalid_argument(e.to_string()),
            e @ (Error::NotVerified(_)
            | Error::Unavailable(_)
            | Error::VerificationTooOld
            | Error::SameDestination) => RpcError::failed_precondition(e.to_string()),
            Error::PhoneRefused(r) => crate::handlers::phone_guard::refusal_status(r),
            Error::Peer(e) => e.into_rpc(),
            e @ (Error::Store(_) | Error::Seal(_) | Error::Internal(_)) => {
                tracing::error!(error = %e, "verification failed internally");
                RpcError::internal()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use sspr_bus::ErrorCode;

    use super::*;

    #[test]
    fn throttled_answers_carry_retry_after_and_the_challenge_a_reason() {
        for e in [
            Error::ResendIn(30),
            Error::Throttled {
                retry_after_secs: 30,
            },
            Error::Blocked {
                retry_after_secs: 30,
            },
        ] {
            let rpc = RpcError::from(e);
            assert_eq!(rpc.code, ErrorCode::ResourceExhausted);
            assert_eq!(rpc.retry_after_secs, Some(30));
        }
        let rpc = RpcError::from(Error::ChallengeRequired);
        assert_eq!(rpc.code, ErrorCode::FailedPrecondition);
        assert_eq!(rpc.reason.as_deref(), Some("CHALLENGE_REQUIRED"));
    }

    #[test]
    fn statuses_and_messages() {
        let cases: Vec<(Error, ErrorCode, &str)> = vec![
            (
                Error::UnknownSession,
                ErrorCode::Unauthenticated,
                "unknown or expired session",
            ),
            (
                Error::UnknownMethod,
                ErrorCode::InvalidArgument,
                "unknown method",
            ),
            (
                Error::DestinationRequired,
                ErrorCode::InvalidArgument,
                "destination_confirmation is required",
            ),
            (
                Error::DestinationMismatch,
                ErrorCode::InvalidArgument,
                "the destination does not match",
            ),
            (
                Error::TooSoon,
                ErrorCode::ResourceExhausted,
                "wait before requesting another code",
            ),
            (
                Error::Rejected(Rejection::Wrong { attempts_left: 2 }),
                ErrorCode::InvalidArgument,
                "wrong code",
            ),
            (
                Error::Rejected(Rejection::NoActiveCode),
                ErrorCode::FailedPrecondition,
                "no active code, request a new one",
            ),
            (
                Error::Rejected(Rejection::Expired),
                ErrorCode::FailedPrecondition,
                "the code has expired, request a new one",
            ),
            (
                Error::Rejected(Rejection::TooManyAttempts),
                ErrorCode::FailedPrecondition,
                "too many wrong codes, request a new one",
            ),
            (
                Error::NoCodeSent,
                ErrorCode::FailedPrecondition,
                "no code was sent to this method",
            ),
            (
                Error::NotVerified(1),
                ErrorCode::FailedPrecondition,
                "verify 1 more method(s) first",
            ),
            (
                Error::VerificationTooOld,
                ErrorCode::FailedPrecondition,
                "the verification is too old: start the reset again",
            ),
            (
                Error::SameDestination,
                ErrorCode::FailedPrecondition,
                "this method reaches a destination already verified: verify a different one",
            ),
            (Error::Internal("x"), ErrorCode::Internal, "internal error"),
            (
                Error::Peer(BusError::Rpc(RpcError::invalid_argument(
                    "password rejected: too short",
                ))),
                ErrorCode::InvalidArgument,
                "password rejected: too short",
            ),
            (
                Error::Peer(BusError::NoResponders("s".into())),
                ErrorCode::Unavailable,
                "a dependency is unavailable, try again shortly",
            ),
        ];
        for (e, code, message) in cases {
            let rpc = RpcError::from(e);
            assert_eq!((rpc.code, rpc.message.as_str()), (code, message));
        }
    }
}
