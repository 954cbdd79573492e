//! What the handlers need from the outside world, as traits: the account store, the
//! password rules of the policy service, and the password connector ([`PasswordWriteback`]:
//! where else a new password must be written, e.g. an LDAP directory).
//!
//! Password history: the store keeps, besides the current hash, up to `keep - 1` previous
//! hashes per account (`keep` = the policy's `history_count`, at most [`MAX_HISTORY`]); each
//! password write moves the replaced hash into the history and trims the rest in the same
//! transaction. `keep = 0` (history off) empties it.

use chrono::{DateTime, Utc};
use sspr_bus::BusError;
use sspr_storage::outbox::OutboxMessage;

use crate::domain::group::Group;
use crate::domain::ids::{GroupId, UserId};
use crate::domain::password::{Password, PasswordHash};
use crate::domain::user::{Profile, User};
use crate::error::Error;

/// What [`UserStore::upsert`] writes.
#[derive(Debug, Clone, Copy)]
pub struct AccountWrite<'a> {
    pub profile: &'a Profile,
    /// Defaults to true for a new account; `None` leaves an existing account's state alone.
    pub enabled: Option<bool>,
    /// Defaults to false for a new account; `None` leaves an existing account's state alone.
    pub locked: Option<bool>,
    /// `None` leaves the password alone.
    pub password: Option<&'a PasswordHash>,
    /// Passwords to remember, as in [`UserStore::set_password`].
    pub keep: u32,
}

/// Builds the event of a lock change: `true` for `account.locked`, `false` for
/// `account.unlocked`.
pub type LockEvent<'a> = &'a (dyn Fn(bool) -> OutboxMessage + Send + Sync);

/// Builds `user.upserted` from the account as stored and whether the write created it.
pub type UpsertedEvent<'a> = &'a (dyn Fn(&User, bool) -> OutboxMessage + Send + Sync);

/// Builds `group.upserted` from the group as stored and whether the write created it.
pub type GroupUpsertedEvent<'a> = &'a (dyn Fn(&Group, bool) -> OutboxMessage + Send + Sync);

/// Where accounts and groups live. Every write takes the events it causes and commits them with the
/// change in one transaction (transactional outbox); a write that changes nothing enqueues
/// nothing.
#[async_trait::async_trait]
pub trait UserStore: Send + Sync + 'static {
    async fn find(&self, user_id: &UserId) -> Result<Option<User>, Error>;

    /// Every enabled administrator account, sorted by user id.
    async fn list_admins(&self) -> Result<Vec<User>, Error>;

    /// At most `limit` accounts whose id sorts after `after` (all when `None`), sorted by user
    /// id: one page of the whole directory.
    async fn list_users(&self, after: Option<&UserId>, limit: u64) -> Result<Vec<User>, Error>;

    /// Creates or updates the account and replaces its groups (see [`AccountWrite`]). A new
    /// `password` is written as in [`UserStore::set_password`], with the same `keep`. When the
    /// locked state changes (read in the same transaction), `lock_event(new_state)` is
    /// committed with the change. `upserted(account, created)` is always committed with it,
    /// after the other events.
    async fn upsert(
        &self,
        write: AccountWrite<'_>,
        now: DateTime<Utc>,
        events: Vec<OutboxMessage>,
        lock_event: LockEvent<'_>,
        upserted: UpsertedEvent<'_>,
    ) -> Result<User, Error>;

    /// Replaces the password hash, keeping the replaced one (and those before it) as the last
    /// `keep` passwords including the new one; false (and nothing written) if the account does
    /// not exist. With `unlock` (`account.unlocked`), a locked account is also unlocked and the
    /// event committed with the change; an unlocked account ignores it.
    async fn set_password(
        &self,
        user_id: &UserId,
        password: &PasswordHash,
        keep: u32,
        now: DateTime<Utc>,
        events: Vec<OutboxMessage>,
        unlock: Option<OutboxMessage>,
    ) -> Result<bool, Error>;

    /// Clears the locked state; `event` is committed only if the account was locked. `None` if
    /// the account does not exist, otherwise the account and whether it was locked.
    async fn unlock(
        &self,
        user_id: &UserId,
        now: DateTime<Utc>,
        event: OutboxMessage,
    ) -> Result<Option<(User, bool)>, Error>;

    /// Creates or replaces the group and its member groups; answers it as stored.
    /// `upserted(group, created)` is committed with the change.
    async fn upsert_group(
        &self,
        group: &Group,
        now: DateTime<Utc>,
        upserted: GroupUpsertedEvent<'_>,
    ) -> Result<Group, Error>;

    /// Deletes the group, the memberships in it (users' and groups') and its own memberships
    /// in other groups; false (and nothing written) if it does not exist. `event`
    /// (`group.deleted`) is committed with the change.
    async fn delete_group(
        &self,
        group_id: &GroupId,
        now: DateTime<Utc>,
        event: OutboxMessage,
    ) -> Result<bool, Error>;

    /// At most `limit` groups sorted by id, starting after `after`.
    async fn list_groups(&self, after: Option<&GroupId>, limit: u64) -> Result<Vec<Group>, Error>;

    /// The previous password hashes of the account (not the current one), newest first, at
    /// most `limit`.
    async fn previous_passwords(
        &self,
        user_id: &UserId,
        limit: u32,
    ) -> Result<Vec<PasswordHash>, Error>;

    /// Deletes the account and its group memberships; false (and nothing written) if it does
    /// not exist.
    async fn delete(
        &self,
        user_id: &UserId,
        now: DateTime<Utc>,
        events: Vec<OutboxMessage>,
    ) -> Result<bool, Error>;
}

/// The most previous passwords the directory keeps (the policy allows 0..=24).
pub const MAX_HISTORY: u32 = 24;

/// One broken password rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleViolation {
    /// Stable rule id, e.g. "too_short", "banned_term", "password_reused".
    pub rule: String,
    /// Human-readable, e.g. "must be at least 8 characters"; never echoes the password.
    pub message: String,
}

/// The policy service's verdict on a candidate password.
#[derive(Debug, Clone, PartialEq)]
pub struct PasswordVerdict {
    pub accepted: bool,
    /// One entry per broken rule.
    pub violations: Vec<RuleViolation>,
    /// How many of the last passwords (the current one included) may not be reused; 0 = off.
    pub history_count: u32,
    /// The policy's strength estimate of the candidate, passed back to the caller.
    pub strength: Option<sspr_proto::common::v1::PasswordStrength>,
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

/// Why a password connector could not write a password. The detail is for operators (logged,
/// never shown to users) and never contains the password.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The external directory could not be reached or did not answer in time: retry later.
    #[error("{connector} unreachable: {detail}")]
    Unavailable {
        connector: &'static str,
        detail: String,
    },
    /// The external directory answered and refused the change (access rights, no such
    /// entry, its own password policy, ...): needs an operator.
    #[error("{connector} refused the password change: {detail}")]
    Refused {
        connector: &'static str,
        detail: String,
    },
}

/// The password connector: writes a new password to where accounts live besides the built-in
/// store. Called after the policy accepted the password and before the local commit.
#[async_trait::async_trait]
pub trait PasswordWriteback: Send + Sync + 'static {
    /// Short name for logs, e.g. "builtin", "ldap".
    fn name(&self) -> &'static str;

    /// Sets `new_password` as the password of `user_id`; `Ok` only once it is in effect.
    async fn set_password(
        &self,
        user_id: &UserId,
        new_password: &Password,
    ) -> Result<(), ConnectorError>;
}

/// The default connector: the built-in store is the only place passwords live, so there is
/// nothing to write elsewhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuiltInOnly;

#[async_trait::async_trait]
impl PasswordWriteback for BuiltInOnly {
    fn name(&self) -> &'static str {
        "builtin"
    }

    async fn set_password(&self, _: &UserId, _: &Password) -> Result<(), ConnectorError> {
        Ok(())
    }
}
