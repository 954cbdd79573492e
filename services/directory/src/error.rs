//! Errors of the directory and how they reach a caller.
//!
//! Refusals carry a message safe to show to the end user; anything internal (database,
//! hashing, a task that died) is logged here and answered with a bare `INTERNAL`. No message
//! ever contains a password or a hash, and the sign-in refusal is the same text whatever the
//! reason (unknown user, wrong password, disabled account, no password).

use sspr_bus::{BusError, RpcError};
use sspr_storage::sea_orm::DbErr;

use crate::domain::password::HashError;
use crate::domain::user::InvalidInput;

/// The one answer to a failed sign-in.
pub const WRONG_CREDENTIALS: &str = "wrong user id or password";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("unknown user")]
    UnknownUser,
    #[error("{WRONG_CREDENTIALS}")]
    WrongCredentials,
    /// The policy service refused the password; one message per broken rule.
    #[error("password rejected: {}", .0.join("; "))]
    PasswordRejected(Vec<String>),
    #[error(transparent)]
    Bus(#[from] BusError),
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

impl From<Error> for RpcError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(_) | Error::InvalidArgument(_) | Error::PasswordRejected(_) => {
                RpcError::invalid_argument(e.to_string())
            }
            Error::UnknownUser => RpcError::not_found(e.to_string()),
            Error::WrongCredentials => RpcError::unauthenticated(WRONG_CREDENTIALS),
            Error::Bus(e) => e.into_rpc(),
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
