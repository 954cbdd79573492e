//! What the handlers need from storage, as a trait, so the rules in `handlers` read as the
//! protocol and the sea-orm details stay in `adapters::store`.
//!
//! Invariants every implementation keeps:
//! - sessions are stored and found only by the hash of their token, never the token;
//! - adding a destination and confirming a method are each one transaction, so concurrent
//!   requests cannot register a destination twice or confirm a method twice;
//! - confirming a method and enqueueing its `method.registered` event commit together;
//! - removing a method, checking the count left and enqueueing `method.removed` commit together,
//!   and concurrent removals of one user's methods are serialised, so the count never drops
//!   below what is required;
//! - a sign-in check is counted by one atomic increment of its window's row, so concurrent
//!   checks on any replica each see a distinct count;
//! - forgetting a deleted user and recording the event as processed commit together, so a
//!   redelivered `user.deleted` changes nothing.

use chrono::{DateTime, Utc};

use crate::domain::questions::AnswerHash;
use crate::domain::sign_in_throttle::Window;
use crate::domain::{
    Destination, FlowId, MethodId, RegisteredMethod, RegistrationSession, TokenHash, UserId,
};
use crate::error::Error;

/// What forgetting a deleted user removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forgotten {
    pub methods: u64,
    pub sessions: u64,
}

/// A user's security-questions method as stored: its stable id and one hash per answered
/// question (answers are never stored).
#[derive(Debug, Clone)]
pub struct SecurityMethod {
    pub method_id: MethodId,
    pub registered_at: DateTime<Utc>,
    pub answers: Vec<(String, AnswerHash)>,
}

impl SecurityMethod {
    /// How many answered questions are among `policy_ids`.
    pub fn answered_among(&self, policy_ids: &[String]) -> usize {
        self.answers
            .iter()
            .filter(|(q, _)| policy_ids.contains(q))
            .count()
    }
}

#[async_trait::async_trait]
pub trait EnrolmentStore: Send + Sync + 'static {
    /// Stores a new session under `hash`, and forgets sessions that expired before `now`.
    async fn create_session(
        &self,
        hash: &TokenHash,
        session: &RegistrationSession,
        now: DateTime<Utc>,
    ) -> Result<(), Error>;

    /// The session stored under `hash`, live or not.
    async fn find_session(&self, hash: &TokenHash) -> Result<Option<RegistrationSession>, Error>;

    /// The user's confirmed methods, oldest confirmation first.
    async fn confirmed_methods(&self, user: &UserId) -> Result<Vec<RegisteredMethod>, Error>;

    /// One method of the user, whatever its status.
    async fn find_method(
        &self,
        user: &UserId,
        method: &MethodId,
    ) -> Result<Option<RegisteredMethod>, Error>;

    /// The method a code should be sent to for `destination`: the user's existing confirmed one
    /// (to re-confirm it), the existing pending one (its clock restarted) or a new pending one.
    /// Refuses with `TooManyMethods` per [`crate::domain::plan_add`]; drops the user's abandoned
    /// pending methods first.
    async fn prepare_pending(
        &self,
        user: &UserId,
        destination: &Destination,
        now: DateTime<Utc>,
    ) -> Result<RegisteredMethod, Error>;

    /// Marks `method` confirmed now (a pending one for the first time, a confirmed one again)
    /// and enqueues `method.registered`, in one transaction. Returns how many confirmed methods
    /// the user has now; `AlreadyConfirmed` if another request (re)confirmed it since `method`
    /// was read.
    /// A first confirmation also stores `usable_from` (when the method may be used for reset);
    /// a re-confirmation keeps the method's earlier date.
    async fn confirm(
        &self,
        method: &RegisteredMethod,
        flow_id: &FlowId,
        now: DateTime<Utc>,
        usable_from: DateTime<Utc>,
    ) -> Result<u32, Error>;

    /// Records that the session `flow_id` proved one of its user's existing methods.
    async fn mark_stepped_up(&self, flow_id: &FlowId) -> Result<(), Error>;

    /// Counts one sign-in password check in `window` (atomically, shared by every replica) and
    /// returns the window's count including it. Forgets windows that ended long ago.
    async fn count_sign_in_check(&self, window: &Window, now: DateTime<Utc>) -> Result<u64, Error>;

    /// Deletes one confirmed method of `user` and enqueues `method.removed`, in one
    /// transaction. `UnknownMethod` when it is not a confirmed method of the user;
    /// `BelowRequired` (nothing deleted) when fewer than `required` confirmed methods would be
    /// left. Returns how many confirmed methods are left.
    async fn remove_confirmed(
        &self,
        user: &UserId,
        method: &MethodId,
        required: u32,
        flow_id: &FlowId,
        now: DateTime<Utc>,
    ) -> Result<u32, Error>;

    /// The user's security-questions method, if any.
    async fn security_method(&self, user: &UserId) -> Result<Option<SecurityMethod>, Error>;

    /// Replaces the user's answers (keeping the method id if there is one already, else a new
    /// one) and enqueues `method.registered` (masked as `masked`), in one transaction.
    /// `methods_registered` is the event's count of the user's methods, computed by the caller
    /// from the confirmed contact methods it read plus this one. Returns the method id.
    async fn set_security_answers(
        &self,
        user: &UserId,
        answers: Vec<(String, AnswerHash)>,
        masked: String,
        flow_id: &FlowId,
        now: DateTime<Utc>,
    ) -> Result<(MethodId, u32), Error>;

    /// Deletes the user's security-questions method `method` and its answers, and enqueues
    /// `method.removed`, in one transaction. `UnknownMethod` when it is not theirs;
    /// `BelowRequired` (nothing deleted) when fewer than `required` confirmed contact methods
    /// would be left. Returns how many confirmed contact methods are left.
    async fn remove_security_method(
        &self,
        user: &UserId,
        method: &MethodId,
        required: u32,
        masked: String,
        flow_id: &FlowId,
        now: DateTime<Utc>,
    ) -> Result<u32, Error>;

    /// Deletes all of `user`'s methods (pending and confirmed) and registration sessions, and
    /// records `event_id` as processed, in one transaction. `None` when `event_id` was already
    /// processed (then nothing is deleted).
    async fn forget_user(
        &self,
        event_id: &uuid::Uuid,
        user: &UserId,
        now: DateTime<Utc>,
    ) -> Result<Option<Forgotten>, Error>;
}
