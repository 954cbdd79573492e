//! Errors of the policy service and how they reach a caller.
//!
//! A refused policy goes back as `INVALID_ARGUMENT` with its field-naming message; anything
//! internal is logged here and answered with a bare `INTERNAL`, so no detail of the database
//! leaves the service.

use sspr_bus::RpcError;
use sspr_storage::sea_orm::DbErr;

use crate::domain::password_policy::PasswordRulesError;
use crate::domain::policy::PolicyError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    InvalidPolicy(#[from] PolicyError),
    #[error(transparent)]
    InvalidPasswordPolicy(#[from] PasswordRulesError),
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    /// The directory or enrolment service failed to answer (policy preview).
    #[error(transparent)]
    Peer(#[from] sspr_bus::BusError),
    /// The stored row does not parse back into a valid policy.
    #[error("the stored policy is damaged: {0}")]
    CorruptPolicy(String),
}

impl From<Error> for RpcError {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidPolicy(e) => RpcError::invalid_argument(e.to_string()),
            Error::InvalidPasswordPolicy(e) => RpcError::invalid_argument(e.to_string()),
            Error::Peer(e) => e.into_rpc(),
            Error::Db(_) | Error::CorruptPolicy(_) => {
                tracing::error!(error = %e, "policy request failed");
                RpcError::internal()
            }
        }
    }
}
