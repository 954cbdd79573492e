//! Errors of the audit service and how they reach a caller: bad query input is
//! `INVALID_ARGUMENT` naming the field; anything internal is logged here and answered with a
//! bare `INTERNAL`.

use sspr_bus::RpcError;
use sspr_storage::sea_orm::DbErr;

use crate::domain::query::InvalidQuery;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] InvalidQuery),
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    /// A stored row does not parse back into a record.
    #[error("a stored audit record is damaged: {0}")]
    Corrupt(String),
}

impl From<Error> for RpcError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(_) => RpcError::invalid_argument(e.to_string()),
            Error::Db(_) | Error::Corrupt(_) => {
                tracing::error!(error = %e, "audit request failed");
                RpcError::internal()
            }
        }
    }
}
