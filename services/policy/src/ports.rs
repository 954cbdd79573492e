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
