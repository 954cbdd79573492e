//! What the handlers need from the outside world, as traits, so the rules stay apart from
//! sea-orm and NATS.

use chrono::{DateTime, Utc};
use sspr_storage::outbox::OutboxMessage;

use crate::domain::password_policy::{PasswordPolicy, PasswordRules};
use crate::domain::policy::{Policy, PolicyRules};
use crate::error::Error;

/// Builds the event announcing a stored policy (it needs the version the store assigned). For a
/// change of the password section it is given the SSPR policy in force, which the event carries.
pub type Announce = Box<dyn FnOnce(&Policy) -> OutboxMessage + Send>;

/// Where the policy lives.
#[async_trait::async_trait]
pub trait PolicyStore: Send + Sync + 'static {
    /// The policy in force: the stored one, or the default (version 0) if none was ever set.
    async fn current(&self) -> Result<Policy, Error>;

    /// Stores `rules` as the next version and enqueues the event `announce` builds from the
    /// stored policy, in one transaction: both are written or neither is. Concurrent calls
    /// get distinct, increasing versions.
    async fn replace(
        &self,
        rules: PolicyRules,
        now: DateTime<Utc>,
        announce: Announce,
    ) -> Result<Policy, Error>;

    /// The password section in force: the stored one, or the default (version 0).
    async fn current_password_policy(&self) -> Result<PasswordPolicy, Error>;

    /// Stores `rules` as the next version of the password section and enqueues the event
    /// `announce` builds from the SSPR policy in force, in one transaction.
    async fn replace_password_policy(
        &self,
        rules: PasswordRules,
        now: DateTime<Utc>,
        announce: Announce,
    ) -> Result<PasswordPolicy, Error>;
}

/// The users a policy preview judges: every directory account (from the directory service) and
/// the kinds of their confirmed methods (from enrolment). Answers are the owners' wire records;
/// the handler turns them into domain values.
#[async_trait::async_trait]
pub trait Population: Send + Sync + 'static {
    /// At most `limit` accounts whose id sorts after `after_user_id` (from the start when
    /// empty), sorted by user id, and where the next page starts (empty after the last).
    async fn list_users(
        &self,
        after_user_id: &str,
        limit: u32,
    ) -> Result<sspr_proto::internal::directory::v1::ListUsersResponse, Error>;

    /// For each of `user_ids`, the kinds of their confirmed methods, with their
    /// security-questions method when at least `questions_required_to_reset` of their answered
    /// questions are among `security_question_ids`.
    async fn method_kinds(
        &self,
        user_ids: Vec<String>,
        security_question_ids: Vec<String>,
        questions_required_to_reset: u32,
    ) -> Result<sspr_proto::internal::enrolment::v1::ListMethodKindsResponse, Error>;
}
