//! What the handlers need from the outside world, as traits: the account store and the
//! password rules of the policy service.

use chrono::{DateTime, Utc};
use sspr_bus::BusError;
use sspr_storage::outbox::OutboxMessage;

use crate::domain::ids::UserId;
use crate::domain::password::{Password, PasswordHash};
use crate::domain::user::{Profile, User};
use crate::error::Error;

/// Where accounts live. Every write takes the events it causes and commits them with the
/// change in one transaction (transactional outbox); a write that changes nothing enqueues
/// nothing.
#[async_trait::async_trait]
pub trait UserStore: Send + Sync + 'static {
    async fn find(&self, user_id: &UserId) -> Result<Option<User>, Error>;

    /// Creates or updates the account and replaces its groups. `enabled` defaults to true for a
    /// new account and is left alone for an existing one when `None`; `password` is left alone
    /// when `None`.
    async fn upsert(
        &self,
        profile: &Profile,
        enabled: Option<bool>,
        password: Option<&PasswordHash>,
        now: DateTime<Utc>,
        events: Vec<OutboxMessage>,
    ) -> Result<User, Error>;

    /// Replaces the password hash; false (and nothing written) if the account does not exist.
    async fn set_password(
        &self,
        user_id: &UserId,
        password: &PasswordHash,
        now: DateTime<Utc>,
        events: Vec<OutboxMessage>,
    ) -> Result<bool, Error>;

    /// Deletes the account and its group memberships; false (and nothing written) if it does
    /// not exist.
    async fn delete(
        &self,
        user_id: &UserId,
        now: DateTime<Utc>,
        events: Vec<OutboxMessage>,
    ) -> Result<bool, Error>;
}

/// The policy service's verdict on a candidate password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordVerdict {
    pub accepted: bool,
    /// One human-readable message per broken rule, e.g. "must be at least 8 characters".
    pub violations: Vec<String>,
}

/// The password rules, owned by the policy service.
#[async_trait::async_trait]
pub trait PasswordRules: Send + Sync + 'static {
    async fn check(
        &self,
        password: &Password,
        user_id: &UserId,
        display_name: &str,
    ) -> Result<PasswordVerdict, BusError>;
}
