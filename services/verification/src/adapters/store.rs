//! The verification database: reset sessions and codes, with their events and deliveries
//! written through the outbox in the same transaction as the state change.
//!
//! Invariants:
//! - Issuing a code voids every earlier active code for the same (purpose, user, method) and
//!   inserts the new one in one transaction, together with its outbox rows; the resend throttle
//!   is checked again inside that transaction.
//! - State changes on a code or a session are conditional updates (the code must still be
//!   usable; the session's verified list must be what was read): two concurrent verifications
//!   can never both use one code, never spend more attempts than there are, never lose a
//!   verified method. Wrong guesses decrement atomically. A lost race reports it and the caller
//!   reads again and decides again.
//! - Forgetting a deleted user (all reset sessions and codes) and recording the `user.deleted`
//!   event as processed commit together: a redelivered event deletes nothing twice.
//! - A code's delivery state moves only forward (`domain::delivery`): the update is conditional
//!   on the state being one that may precede the new one, and it commits together with the
//!   processed-event row of the event that caused it.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, DatabaseTransaction,
    DbErr, EntityTrait, QueryFilter, QueryOrder,
};
use sspr_storage::outbox::{self, OutboxMessage};

use super::entities::{code, processed_event, reset_session};
use crate::domain::code::{TooSoon, may_resend};
use crate::domain::delivery::DeliveryState;
use crate::domain::questions::QuestionChallenge;
use crate::domain::{
    CodeHash, CodeState, FlowId, Locale, MethodId, Purpose, ResetSession, SessionMethod,
    SessionStatus, UserId,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    /// A row that our own code wrote no longer parses.
    #[error("corrupt {0} row")]
    Corrupt(&'static str),
    #[error("a code was issued too recently")]
    TooSoon,
}

impl From<TooSoon> for StoreError {
    fn from(_: TooSoon) -> Self {
        StoreError::TooSoon
    }
}

/// What a code is looked up by.
#[derive(Debug, Clone, Copy)]
pub struct CodeKey<'a> {
    pub purpose: Purpose,
    pub user_id: &'a UserId,
    pub method_id: &'a MethodId,
}

/// A code about to be stored.
#[derive(Debug, Clone)]
pub struct NewCode {
    pub id: String,
    pub flow_id: FlowId,
    pub hash: CodeHash,
    pub state: CodeState,
    pub created_at: DateTime<Utc>,
    pub delivery_id: String,
    /// Id of the code key that hashed it.
    pub key_id: String,
    /// The idempotent request issuing it, recorded in the same transaction so a retry after a
    /// crash before the answer was stored is answered from this row.
    pub request_tag: Option<String>,
}

/// The latest active code of a binding.
#[derive(Debug, Clone)]
pub struct StoredCode {
    pub id: String,
    pub hash: CodeHash,
    pub state: CodeState,
    /// Id of the code key that hashed it (`0`: the bare key).
    pub key_id: String,
}

/// The last code issued for a method in a flow, as GetCodeStatus reads it.
#[derive(Debug, Clone)]
pub struct LastCode {
    pub delivery_id: String,
    pub delivery_state: DeliveryState,
    pub created_at: DateTime<Utc>,
}

/// What recording a delivery event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryUpdate {
    /// The code moved to the new state.
    Moved,
    /// No code has that delivery id (purged, forgotten, or never ours), or its state is already
    /// final or later: nothing changed (the event is recorded as processed all the same).
    Unchanged,
    /// The event was applied before: nothing changed.
    AlreadyProcessed,
}

/// How the resend throttle is scoped.
#[derive(Debug, Clone, Copy)]
pub enum ResendScope<'a> {
    /// Per (purpose, user, method): registration codes.
    Binding,
    /// Per (purpose, user, method) within one flow: a reset session and one of its methods.
    Flow(&'a FlowId),
}

#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
}

impl Store {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Stores a new session (and, for a real flow, its `reset.started` event).
    pub async fn create_session(
        &self,
        token_hash: &str,
        session: &ResetSession,
        messages: Vec<OutboxMessage>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let txn = sspr_storage::begin_write(&self.db).await?;
        reset_session::ActiveModel {
            token_hash: Set(token_hash.to_owned()),
            flow_id: Set(session.flow_id.as_str().to_owned()),
            user_id: Set(session.user_id.as_str().to_owned()),
            locale: Set(session.locale.as_str().to_owned()),
            decoy: Set(session.decoy),
            methods: Set(methods_json(&session.methods)?),
            methods_required: Set(i32::try_from(session.methods_required).unwrap_or(i32::MAX)),
            verified_method_ids: Set(verified_json(&session.verified)?),
            status: Set(session.status.as_str().to_owned()),
            created_at: Set(session.created_at),
            expires_at: Set(session.expires_at),
            question_challenge: Set(String::new()),
            verified_at: Set(session.verified_at),
            completed_by_request: Set(None),
            completing_since: Set(None),
        }
        .insert(&txn)
        .await?;
        enqueue_all(&txn, messages, now).await?;
        txn.commit().await?;
        Ok(())
    }

    /// The session whose token hashes to `token_hash`.
    pub async fn session(&self, token_hash: &str) -> Result<Option<ResetSession>, StoreError> {
        let Some(row) = reset_session::Entity::find_by_id(token_hash.to_owned())
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        session_from_row(row).map(Some)
    }

    /// When the last code for `key` (within `scope`) was issued.
    pub async fn last_issued_at(
        &self,
        key: CodeKey<'_>,
        scope: ResendScope<'_>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        last_issued_at(&self.db, key, scope).await
    }

    /// Voids earlier active codes of `key`, stores `new` and enqueues `messages`, in one
    /// transaction, unless a code was issued within `resend_after` (then nothing changes).
    /// `(created_at, expires_at)` of the code of `key` in `flow_id` issued by the idempotent
    /// request `request_tag`, if one was.
    pub async fn code_issued_by(
        &self,
        key: CodeKey<'_>,
        flow_id: &FlowId,
        request_tag: &str,
    ) -> Result<Option<(DateTime<Utc>, DateTime<Utc>)>, StoreError> {
        let found = code::Entity::find()
            .filter(code::Column::Purpose.eq(key.purpose.as_str()))
            .filter(code::Column::UserId.eq(key.user_id.as_str()))
            .filter(code::Column::MethodId.eq(key.method_id.as_str()))
            .filter(code::Column::FlowId.eq(flow_id.as_str()))
            .filter(code::Column::RequestTag.eq(request_tag))
            .one(&self.db)
            .await?;
        Ok(found.map(|row| (row.created_at, row.expires_at)))
    }

    /// Whether the code of `key` in `flow_id` was used by the idempotent request `request_tag`.
    pub async fn code_used_by(
        &self,
        key: CodeKey<'_>,
        flow_id: &FlowId,
        request_tag: &str,
    ) -> Result<bool, StoreError> {
        let found = code::Entity::find()
            .filter(code::Column::Purpose.eq(key.purpose.as_str()))
            .filter(code::Column::UserId.eq(key.user_id.as_str()))
            .filter(code::Column::MethodId.eq(key.method_id.as_str()))
            .filter(code::Column::FlowId.eq(flow_id.as_str()))
            .filter(code::Column::UsedByRequest.eq(request_tag))
            .one(&self.db)
            .await?;
        Ok(found.is_some())
    }

    /// Whether the session `token_hash` was completed by the idempotent request `request_tag`.
    pub async fn completed_by(
        &self,
        token_hash: &str,
        request_tag: &str,
    ) -> Result<bool, StoreError> {
        let found = reset_session::Entity::find()
            .filter(reset_session::Column::TokenHash.eq(token_hash))
            .filter(reset_session::Column::Status.eq(SessionStatus::Completed.as_str()))
            .filter(reset_session::Column::CompletedByRequest.eq(request_tag))
            .one(&self.db)
            .await?;
        Ok(found.is_some())
    }

    pub async fn issue_code(
        &self,
        key: CodeKey<'_>,
        scope: ResendScope<'_>,
        resend_after: chrono::Duration,
        new: NewCode,
        messages: Vec<OutboxMessage>,
    ) -> Result<(), StoreError> {
        let now = new.created_at;
        let txn = sspr_storage::begin_write(&self.db).await?;
        // Write first: on SQLite the first write takes the database's write lock (waiting for it
        // under busy_timeout), so the read below cannot be invalidated by a concurrent writer.
        code::Entity::update_many()
            .col_expr(code::Column::Voided, Expr::value(true))
            .filter(code::Column::Purpose.eq(key.purpose.as_str()))
            .filter(code::Column::UserId.eq(key.user_id.as_str()))
            .filter(code::Column::MethodId.eq(key.method_id.as_str()))
            .filter(code::Column::Voided.eq(false))
            .filter(code::Column::UsedAt.is_null())
            .exec(&txn)
            .await?;
        // Checked inside the transaction so two concurrent requests cannot both pass; returning
        // early drops the transaction, which rolls the voiding back.
        may_resend(last_issued_at(&txn, key, scope).await?, now, resend_after)?;
        code::ActiveModel {
            id: Set(new.id),
            purpose: Set(key.purpose.as_str().to_owned()),
            user_id: Set(key.user_id.as_str().to_owned()),
            method_id: Set(key.method_id.as_str().to_owned()),
            flow_id: Set(new.flow_id.as_str().to_owned()),
            code_hash: Set(new.hash.to_hex()),
            attempts_left: Set(i32::try_from(new.state.attempts_left).unwrap_or(i32::MAX)),
            created_at: Set(new.created_at),
            expires_at: Set(new.state.expires_at),
            used_at: Set(None),
            voided: Set(false),
            delivery_id: Set(new.delivery_id),
            key_id: Set(new.key_id),
            delivery_state: Set(DeliveryState::Pending.as_str().to_owned()),
            request_tag: Set(new.request_tag),
            used_by_request: Set(None),
        }
        .insert(&txn)
        .await?;
        enqueue_all(&txn, messages, now).await?;
        txn.commit().await?;
        Ok(())
    }

    /// The latest code of `key` in `flow` that is neither voided nor used.
    pub async fn active_code(
        &self,
        key: CodeKey<'_>,
        flow: &FlowId,
    ) -> Result<Option<StoredCode>, StoreError> {
        let row = code::Entity::find()
            .filter(code::Column::Purpose.eq(key.purpose.as_str()))
            .filter(code::Column::UserId.eq(key.user_id.as_str()))
            .filter(code::Column::MethodId.eq(key.method_id.as_str()))
            .filter(code::Column::FlowId.eq(flow.as_str()))
            .filter(code::Column::Voided.eq(false))
            .filter(code::Column::UsedAt.is_null())
            .order_by_desc(code::Column::CreatedAt)
            .order_by_desc(code::Column::Id)
            .one(&self.db)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let hash = CodeHash::from_hex(&row.code_hash).ok_or(StoreError::Corrupt("codes"))?;
        let state = CodeState {
            attempts_left: u32::try_from(row.attempts_left)
                .map_err(|_| StoreError::Corrupt("codes"))?,
            expires_at: row.expires_at,
            used_at: row.used_at,
            voided: row.voided,
        };
        Ok(Some(StoredCode {
            id: row.id,
            hash,
            state,
            key_id: row.key_id,
        }))
    }

    /// Spends one attempt of `code` if it is still usable, and enqueues the messages built from
    /// the attempts left after it. `None` when the code was used up, used, voided or expired
    /// meanwhile (the caller reads again and decides again).
    pub async fn record_wrong(
        &self,
        code: &StoredCode,
        now: DateTime<Utc>,
        messages: impl FnOnce(u32) -> Vec<OutboxMessage>,
    ) -> Result<Option<u32>, StoreError> {
        let txn = sspr_storage::begin_write(&self.db).await?;
        // An atomic decrement, not a compare-and-set on the value read: concurrent wrong guesses
        // each spend exactly one attempt and none of them has to retry.
        let updated = code::Entity::update_many()
            .col_expr(
                code::Column::AttemptsLeft,
                Expr::col(code::Column::AttemptsLeft).sub(1),
            )
            .filter(still_usable(code, now))
            .exec_with_returning(&txn)
            .await?;
        let [row] = updated.as_slice() else {
            txn.rollback().await?;
            return Ok(None);
        };
        let left = u32::try_from(row.attempts_left).map_err(|_| StoreError::Corrupt("codes"))?;
        enqueue_all(&txn, messages(left), now).await?;
        txn.commit().await?;
        Ok(Some(left))
    }

    /// Marks `code` used if it is still usable, records the verified method on the session when
    /// given (`before` as read, `after` with the method added), and enqueues `messages`. `false`
    /// when the code or the session changed since they were read.
    pub async fn record_accepted(
        &self,
        code: &StoredCode,
        session: Option<(&str, &ResetSession, &ResetSession)>,
        messages: Vec<OutboxMessage>,
        now: DateTime<Utc>,
        request_tag: Option<String>,
    ) -> Result<bool, StoreError> {
        let txn = sspr_storage::begin_write(&self.db).await?;
        let updated = code::Entity::update_many()
            .col_expr(code::Column::UsedAt, Expr::value(now))
            .col_expr(code::Column::UsedByRequest, Expr::value(request_tag))
            .filter(still_usable(code, now))
            .exec(&txn)
            .await?;
        if updated.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        if let Some((token_hash, before, after)) = session {
            let updated = reset_session::Entity::update_many()
                .col_expr(
                    reset_session::Column::VerifiedMethodIds,
                    Expr::value(verified_json(&after.verified)?),
                )
                .col_expr(
                    reset_session::Column::VerifiedAt,
                    Expr::value(after.verified_at),
                )
                .filter(reset_session::Column::TokenHash.eq(token_hash))
                .filter(
                    reset_session::Column::VerifiedMethodIds.eq(verified_json(&before.verified)?),
                )
                .filter(reset_session::Column::Status.eq(SessionStatus::Active.as_str()))
                .exec(&txn)
                .await?;
            if updated.rows_affected != 1 {
                txn.rollback().await?;
                return Ok(false);
            }
        }
        enqueue_all(&txn, messages, now).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// The security-question state of the session whose token hashes to `token_hash`.
    pub async fn challenge(
        &self,
        token_hash: &str,
    ) -> Result<Option<QuestionChallenge>, StoreError> {
        let Some(row) = reset_session::Entity::find_by_id(token_hash.to_owned())
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        challenge_from_json(&row.question_challenge)
    }

    /// Replaces the session's security-question state `before` (as read) with `after`, and,
    /// when `verified` is given (`before`, `after` sessions), records the verified method too;
    /// enqueues `messages`; all in one transaction. `false` when the session changed since it
    /// was read (or is no longer active).
    pub async fn save_challenge(
        &self,
        token_hash: &str,
        before: Option<&QuestionChallenge>,
        after: &QuestionChallenge,
        verified: Option<(&ResetSession, &ResetSession)>,
        messages: Vec<OutboxMessage>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let txn = sspr_storage::begin_write(&self.db).await?;
        let mut update = reset_session::Entity::update_many()
            .col_expr(
                reset_session::Column::QuestionChallenge,
                Expr::value(challenge_json(Some(after))?),
            )
            .filter(reset_session::Column::TokenHash.eq(token_hash))
            .filter(reset_session::Column::QuestionChallenge.eq(challenge_json(before)?))
            .filter(reset_session::Column::Status.eq(SessionStatus::Active.as_str()));
        if let Some((before, after)) = verified {
            update = update
                .col_expr(
                    reset_session::Column::VerifiedMethodIds,
                    Expr::value(verified_json(&after.verified)?),
                )
                .col_expr(
                    reset_session::Column::VerifiedAt,
                    Expr::value(after.verified_at),
                )
                .filter(
                    reset_session::Column::VerifiedMethodIds.eq(verified_json(&before.verified)?),
                );
        }
        if update.exec(&txn).await?.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        enqueue_all(&txn, messages, now).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Enqueues messages that report no state change of ours (e.g. a rejection of an expired code).
    pub async fn record_events(
        &self,
        messages: Vec<OutboxMessage>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let txn = sspr_storage::begin_write(&self.db).await?;
        enqueue_all(&txn, messages, now).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Claims an active session for one CompleteReset call (`active` → `completing`); `false`
    /// when it was not active (completed, or claimed by a concurrent call). Only the claimer
    /// sets the password, so it is set at most once per session.
    ///
    /// A session left `completing` by a call that died between its claim and its end (a replica
    /// killed while the directory set the password) is claimed again once the claim is older
    /// than `lease`, so the client's retry can still finish the reset.
    pub async fn claim_completion(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<bool, StoreError> {
        use sea_orm::Condition;
        let abandoned = Condition::all()
            .add(reset_session::Column::Status.eq(SessionStatus::Completing.as_str()))
            .add(
                Condition::any()
                    .add(reset_session::Column::CompletingSince.is_null())
                    .add(reset_session::Column::CompletingSince.lt(now - lease)),
            );
        let updated = reset_session::Entity::update_many()
            .col_expr(
                reset_session::Column::Status,
                Expr::value(SessionStatus::Completing.as_str()),
            )
            .col_expr(
                reset_session::Column::CompletingSince,
                Expr::value(Some(now)),
            )
            .filter(reset_session::Column::TokenHash.eq(token_hash))
            .filter(
                Condition::any()
                    .add(reset_session::Column::Status.eq(SessionStatus::Active.as_str()))
                    .add(abandoned),
            )
            .exec(&self.db)
            .await?;
        Ok(updated.rows_affected == 1)
    }

    /// Gives a claimed session back (`completing` → `active`), e.g. when the directory refused
    /// the password, so the user can try another.
    pub async fn release_completion(&self, token_hash: &str) -> Result<bool, StoreError> {
        self.move_status(token_hash, SessionStatus::Completing, SessionStatus::Active)
            .await
    }

    /// Marks a claimed session completed (`completing` → `completed`) and enqueues `messages`;
    /// `false` when it was not claimed.
    pub async fn finish_completion(
        &self,
        token_hash: &str,
        messages: Vec<OutboxMessage>,
        now: DateTime<Utc>,
        request_tag: Option<String>,
    ) -> Result<bool, StoreError> {
        let txn = sspr_storage::begin_write(&self.db).await?;
        let updated = reset_session::Entity::update_many()
            .col_expr(
                reset_session::Column::Status,
                Expr::value(SessionStatus::Completed.as_str()),
            )
            .col_expr(
                reset_session::Column::CompletedByRequest,
                Expr::value(request_tag),
            )
            .filter(reset_session::Column::TokenHash.eq(token_hash))
            .filter(reset_session::Column::Status.eq(SessionStatus::Completing.as_str()))
            .exec(&txn)
            .await?;
        if updated.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        enqueue_all(&txn, messages, now).await?;
        txn.commit().await?;
        Ok(true)
    }

    async fn move_status(
        &self,
        token_hash: &str,
        from: SessionStatus,
        to: SessionStatus,
    ) -> Result<bool, StoreError> {
        let updated = reset_session::Entity::update_many()
            .col_expr(reset_session::Column::Status, Expr::value(to.as_str()))
            .filter(reset_session::Column::TokenHash.eq(token_hash))
            .filter(reset_session::Column::Status.eq(from.as_str()))
            .exec(&self.db)
            .await?;
        Ok(updated.rows_affected == 1)
    }

    /// Marks an active session completed and enqueues `messages`; `false` when it was not active.
    pub async fn complete_session(
        &self,
        token_hash: &str,
        messages: Vec<OutboxMessage>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let txn = sspr_storage::begin_write(&self.db).await?;
        let updated = reset_session::Entity::update_many()
            .col_expr(
                reset_session::Column::Status,
                Expr::value(SessionStatus::Completed.as_str()),
            )
            .filter(reset_session::Column::TokenHash.eq(token_hash))
            .filter(reset_session::Column::Status.eq(SessionStatus::Active.as_str()))
            .exec(&txn)
            .await?;
        if updated.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        enqueue_all(&txn, messages, now).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Deletes every reset session (real or decoy, in any state) and every code (reset and
    /// registration) of `user`, and records `event_id` as processed, in one transaction.
    /// Returns how many sessions and codes went; `None` when `event_id` was already processed
    /// (then nothing is deleted).
    pub async fn forget_user(
        &self,
        event_id: &uuid::Uuid,
        user: &UserId,
        now: DateTime<Utc>,
    ) -> Result<Option<(u64, u64)>, StoreError> {
        let txn = sspr_storage::begin_write(&self.db).await?;
        if !mark_processed(&txn, event_id, now).await? {
            txn.rollback().await?;
            return Ok(None);
        }
        let sessions = reset_session::Entity::delete_many()
            .filter(reset_session::Column::UserId.eq(user.as_str()))
            .exec(&txn)
            .await?;
        let codes = code::Entity::delete_many()
            .filter(code::Column::UserId.eq(user.as_str()))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(Some((sessions.rows_affected, codes.rows_affected)))
    }

    /// Moves the code of `delivery_id` to `state` if its current state may precede it, and
    /// records `event_id` as processed, in one transaction.
    pub async fn record_delivery_state(
        &self,
        event_id: &uuid::Uuid,
        delivery_id: &str,
        state: DeliveryState,
        now: DateTime<Utc>,
    ) -> Result<DeliveryUpdate, StoreError> {
        let txn = sspr_storage::begin_write(&self.db).await?;
        if !mark_processed(&txn, event_id, now).await? {
            txn.rollback().await?;
            return Ok(DeliveryUpdate::AlreadyProcessed);
        }
        let updated = code::Entity::update_many()
            .col_expr(code::Column::DeliveryState, Expr::value(state.as_str()))
            .filter(code::Column::DeliveryId.eq(delivery_id))
            .filter(
                code::Column::DeliveryState.is_in(state.predecessors().iter().map(|s| s.as_str())),
            )
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(if updated.rows_affected > 0 {
            DeliveryUpdate::Moved
        } else {
            DeliveryUpdate::Unchanged
        })
    }

    /// The last code issued for `key` in `flow` (used, voided or not).
    pub async fn last_code(
        &self,
        key: CodeKey<'_>,
        flow: &FlowId,
    ) -> Result<Option<LastCode>, StoreError> {
        let row = code::Entity::find()
            .filter(code::Column::Purpose.eq(key.purpose.as_str()))
            .filter(code::Column::UserId.eq(key.user_id.as_str()))
            .filter(code::Column::MethodId.eq(key.method_id.as_str()))
            .filter(code::Column::FlowId.eq(flow.as_str()))
            .order_by_desc(code::Column::CreatedAt)
            .order_by_desc(code::Column::Id)
            .one(&self.db)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(LastCode {
            delivery_state: DeliveryState::from_db(&row.delivery_state)
                .ok_or(StoreError::Corrupt("codes"))?,
            delivery_id: row.delivery_id,
            created_at: row.created_at,
        }))
    }

    /// Deletes sessions and codes that expired before `before`; returns how many rows went.
    pub async fn purge_expired(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let sessions = reset_session::Entity::delete_many()
            .filter(reset_session::Column::ExpiresAt.lt(before))
            .exec(&self.db)
            .await?;
        let codes = code::Entity::delete_many()
            .filter(code::Column::ExpiresAt.lt(before))
            .exec(&self.db)
            .await?;
        Ok(sessions.rows_affected + codes.rows_affected)
    }
}

/// The row of `code`, still usable: not used, not voided, not expired, attempts left.
fn still_usable(code: &StoredCode, now: DateTime<Utc>) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(code::Column::Id.eq(code.id.as_str()))
        .add(code::Column::UsedAt.is_null())
        .add(code::Column::Voided.eq(false))
        .add(code::Column::AttemptsLeft.gt(0))
        .add(code::Column::ExpiresAt.gt(now))
}

async fn last_issued_at<C: sea_orm::ConnectionTrait>(
    conn: &C,
    key: CodeKey<'_>,
    scope: ResendScope<'_>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let mut query = code::Entity::find()
        .filter(code::Column::Purpose.eq(key.purpose.as_str()))
        .filter(code::Column::UserId.eq(key.user_id.as_str()))
        .filter(code::Column::MethodId.eq(key.method_id.as_str()));
    if let ResendScope::Flow(flow) = scope {
        query = query.filter(code::Column::FlowId.eq(flow.as_str()));
    }
    let row = query
        .order_by_desc(code::Column::CreatedAt)
        .one(conn)
        .await?;
    Ok(row.map(|r| r.created_at))
}

/// Records `event_id` as processed; `false` when it already was. Written first in a
/// transaction: the row is the idempotency key (and takes the SQLite write lock up front).
async fn mark_processed(
    txn: &DatabaseTransaction,
    event_id: &uuid::Uuid,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let inserted = processed_event::Entity::insert(processed_event::ActiveModel {
        event_id: Set(event_id.to_string()),
        processed_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(processed_event::Column::EventId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(inserted > 0)
}

async fn enqueue_all(
    txn: &DatabaseTransaction,
    messages: Vec<OutboxMessage>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    for m in messages {
        outbox::enqueue(txn, m, now).await?;
    }
    Ok(())
}

fn methods_json(methods: &[SessionMethod]) -> Result<String, StoreError> {
    serde_json::to_string(methods).map_err(|_| StoreError::Corrupt("reset_sessions"))
}

fn verified_json(ids: &[MethodId]) -> Result<String, StoreError> {
    serde_json::to_string(ids).map_err(|_| StoreError::Corrupt("reset_sessions"))
}

fn challenge_json(challenge: Option<&QuestionChallenge>) -> Result<String, StoreError> {
    match challenge {
        None => Ok(String::new()),
        Some(c) => serde_json::to_string(c).map_err(|_| StoreError::Corrupt("reset_sessions")),
    }
}

fn challenge_from_json(raw: &str) -> Result<Option<QuestionChallenge>, StoreError> {
    if raw.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(raw)
        .map(Some)
        .map_err(|_| StoreError::Corrupt("reset_sessions"))
}

fn session_from_row(row: reset_session::Model) -> Result<ResetSession, StoreError> {
    let corrupt = || StoreError::Corrupt("reset_sessions");
    Ok(ResetSession {
        flow_id: FlowId::parse(&row.flow_id).map_err(|_| corrupt())?,
        user_id: UserId::parse(&row.user_id).map_err(|_| corrupt())?,
        locale: Locale::or_default(&row.locale),
        decoy: row.decoy,
        methods: serde_json::from_str(&row.methods).map_err(|_| corrupt())?,
        methods_required: u32::try_from(row.methods_required).map_err(|_| corrupt())?,
        verified: serde_json::from_str(&row.verified_method_ids).map_err(|_| corrupt())?,
        verified_at: row.verified_at,
        status: SessionStatus::from_db(&row.status).ok_or_else(corrupt)?,
        created_at: row.created_at,
        expires_at: row.expires_at,
    })
}
