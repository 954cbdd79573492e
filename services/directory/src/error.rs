//! Errors of the directory and how they reach a caller.
//!
//! Refusals carry a message safe to show to the end user; anything internal (database,
//! hashing, a task that died) is logged here and answered with a bare `INTERNAL`. No message
//! ever contains a password or a hash, and the sign-in refusal is the same text whatever the
//! reason (unknown user, wrong password, disabled account, no password).

use sspr_bus::{BusError, FieldViolation, RpcError};
use sspr_storage::sea_orm::DbErr;

use crate::domain::group::InvalidGroup;
use crate::domain::password::HashError;
use crate::domain::user::InvalidInput;
use crate::ports::{ConnectorError, RuleViolation};

/// The one answer to a failed sign-in.
pub const WRONG_CREDENTIALS: &str = "wrong user id or password";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error(transparent)]
    InvalidGroup(#[from] InvalidGroup),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("unknown user")]
    UnknownUser,
    #[error("unknown group")]
    UnknownGroup,
    #[error("{WRONG_CREDENTIALS}")]
    WrongCredentials,
    /// The password broke rules of the policy (or is in the history); one entry per rule.
    /// `field` is the request field that held it, for the `BadRequest` details.
    #[error("password rejected: {}", messages(.violations))]
    PasswordRejected {
        field: &'static str,
        violations: Vec<RuleViolation>,
    },
    #[error(transparent)]
    Bus(#[from] BusError),
    /// The password connector (e.g. LDAP writeback) failed; nothing was committed locally.
    #[error("password writeback failed: {0}")]
    Writeback(#[from] ConnectorError),
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    #[error("password hashing failed: {0}")]
    Hash(#[from] HashError),
    #[error("a blocking task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("the password hashing pool is closed")]
    HashPoolClosed,
    /// A stored row does not parse back into a valid account.
    #[error("a stored account is damaged: {0}")]
    Corrupt(String),
}

fn messages(violations: &[RuleViolation]) -> String {
    violations
        .iter()
        .map(|v| v.message.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<Error> for RpcError {
    fn from(e: Error) -> Self {
        match e {
            Error::PasswordRejected { field, violations } => {
                let message = format!("password rejected: {}", messages(&violations));
                RpcError::invalid_argument(message).with_violations(
                    violations
                        .into_iter()
                        .map(|v| FieldViolation::new(field, v.message, v.rule))
                        .collect(),
                )
            }
            Error::Invalid(_) | Error::InvalidGroup(_) | Error::InvalidArgument(_) => {
                RpcError::invalid_argument(e.to_string())
            }
            Error::UnknownUser | Error::UnknownGroup => RpcError::not_found(e.to_string()),
            Error::WrongCredentials => RpcError::unauthenticated(WRONG_CREDENTIALS),
            Error::Bus(e) => e.into_rpc(),
            Error::Writeback(ConnectorError::Unavailable { .. }) => {
                tracing::error!(error = %e, "password not changed");
                RpcError::unavailable(
                    "the password could not be changed right now; please try again later",
                )
            }
            Error::Writeback(ConnectorError::Refused { .. }) => {
                tracing::error!(error = %e, "password not changed");
                RpcError::internal()
            }
            Error::Db(_)
            | Error::Hash(_)
            | Error::Task(_)
            | Error::HashPoolClosed
            | Error::Corrupt(_) => {
                tracing::error!(error = %e, "directory request failed");
                RpcError::internal()
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use sspr_bus::ErrorCode;

    use super::*;

    #[test]
    fn a_rejected_password_lists_each_rule_in_message_and_details() {
        let e = Error::PasswordRejected {
            field: "new_password",
            violations: vec![
                RuleViolation {
                    rule: "too_short".into(),
                    message: "must be at least 8 characters".into(),
                },
                RuleViolation {
                    rule: "banned_term".into(),
                    message: "contains a commonly used password".into(),
                },
            ],
        };
        let rpc = RpcError::from(e);
        assert_eq!(rpc.code, ErrorCode::InvalidArgument);
        assert_eq!(
            rpc.message,
            "password rejected: must be at least 8 characters; contains a commonly used password"
        );
        let details = rpc.details.unwrap().field_violations;
        assert_eq!(
            details,
            vec![
                FieldViolation::new("new_password", "must be at least 8 characters", "too_short"),
                FieldViolation::new(
                    "new_password",
                    "contains a commonly used password",
                    "banned_term"
                ),
            ]
        );
    }
}
