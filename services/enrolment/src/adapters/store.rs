//! [`EnrolmentStore`] on sea-orm (SQLite or PostgreSQL).
//!
//! Invariants:
//! - Every write transaction starts with a write statement. On SQLite (WAL) a transaction that
//!   reads first and writes later fails at once with `SQLITE_BUSY` if another connection wrote
//!   in between; writing first takes the write lock up front, so concurrent requests queue on
//!   the busy timeout instead.
//! - Removing a method first touches every confirmed method of the user (a no-op update), which
//!   takes the SQLite write lock or the PostgreSQL row locks up front: concurrent removals of one
//!   user's methods queue, and each sees the count the previous one left.
//! - The unique index on (user_id, kind, destination) is the last word on duplicates: a
//!   concurrent insert that loses the race is retried and then sees the winner's row.
//! - Errors that reach the log name tables and ids only; a row's destination is never put in
//!   an error.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, SqlErr,
};
use sspr_storage::outbox::{self, OutboxSignal};

use super::entities::{
    method, processed_event, registration_session, security_answer, security_question_method,
    sign_in_check,
};
use super::events;
use crate::domain::questions::AnswerHash;
use crate::domain::sign_in_throttle::Window;
use crate::domain::{
    AddPlan, Destination, FlowId, Locale, MethodId, MethodKind, MethodStatus, RegisteredMethod,
    RegistrationSession, Requirements, StepUp, TokenHash, UserId, abandoned_cutoff, check_removal,
    plan_add,
};
use crate::error::Error;
use crate::ports::{EnrolmentStore, Forgotten, SecurityMethod};

/// How often an add that lost a race on the unique index is retried.
const ADD_ATTEMPTS: usize = 3;

/// The store over the service's own database.
#[derive(Clone)]
pub struct SeaOrmStore {
    db: DatabaseConnection,
    outbox: OutboxSignal,
}

impl SeaOrmStore {
    /// `outbox` is notified after every commit that enqueued an event.
    pub fn new(db: DatabaseConnection, outbox: OutboxSignal) -> Self {
        Self { db, outbox }
    }

    async fn try_prepare_pending(
        &self,
        user: &UserId,
        destination: &Destination,
        now: DateTime<Utc>,
    ) -> Result<RegisteredMethod, Error> {
        let txn = sspr_storage::begin_write(&self.db).await?;
        // Write first (see the module header), dropping pending methods nobody can confirm.
        method::Entity::delete_many()
            .filter(method::Column::UserId.eq(user.as_str()))
            .filter(method::Column::Status.eq(MethodStatus::Pending.as_str()))
            .filter(method::Column::CreatedAt.lte(abandoned_cutoff(now)))
            .exec(&txn)
            .await?;
        let existing = method::Entity::find()
            .filter(method::Column::UserId.eq(user.as_str()))
            .filter(method::Column::Kind.eq(destination.kind().code()))
            .filter(method::Column::Destination.eq(destination.as_str()))
            .one(&txn)
            .await?
            .map(method_from_row)
            .transpose()?;
        let counted = method::Entity::find()
            .filter(method::Column::UserId.eq(user.as_str()))
            .count(&txn)
            .await?;
        let prepared = match (plan_add(existing.as_ref(), counted)?, existing) {
            // Re-confirmation: the method stays confirmed (and usable) until the new code is
            // checked; only the request is remembered, for one confirmation to use.
            (AddPlan::Reconfirm(_), Some(existing)) => {
                method::Entity::update_many()
                    .col_expr(method::Column::ReconfirmRequested, Expr::value(true))
                    .filter(method::Column::MethodId.eq(existing.method_id.as_str()))
                    .exec(&txn)
                    .await?;
                existing
            }
            (AddPlan::Reuse(_), Some(mut existing)) => {
                // A new code is about to be sent: the pending method starts its life again.
                method::Entity::update_many()
                    .col_expr(method::Column::CreatedAt, Expr::value(now))
                    .filter(method::Column::MethodId.eq(existing.method_id.as_str()))
                    .exec(&txn)
                    .await?;
                existing.created_at = now;
                existing
            }
            _ => {
                let new = RegisteredMethod::pending(user.clone(), destination.clone(), now);
                method::Entity::insert(method::ActiveModel {
                    method_id: Set(new.method_id.as_str().to_owned()),
                    user_id: Set(new.user_id.as_str().to_owned()),
                    kind: Set(new.kind().code()),
                    destination: Set(new.destination.as_str().to_owned()),
                    masked: Set(new.masked()),
                    status: Set(new.status.as_str().to_owned()),
                    created_at: Set(new.created_at),
                    confirmed_at: Set(None),
                    reconfirm_requested: Set(false),
                    usable_from: Set(None),
                })
                .exec_without_returning(&txn)
                .await?;
                new
            }
        };
        txn.commit().await?;
        Ok(prepared)
    }
}

#[async_trait]
impl EnrolmentStore for SeaOrmStore {
    async fn create_session(
        &self,
        hash: &TokenHash,
        session: &RegistrationSession,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let txn = sspr_storage::begin_write(&self.db).await?;
        registration_session::Entity::delete_many()
            .filter(registration_session::Column::ExpiresAt.lte(now))
            .exec(&txn)
            .await?;
        registration_session::Entity::insert(registration_session::ActiveModel {
            token_hash: Set(hash.as_str().to_owned()),
            flow_id: Set(session.flow_id.to_string()),
            user_id: Set(session.user_id.as_str().to_owned()),
            locale: Set(session.locale.as_str().to_owned()),
            methods_required: Set(
                i32::try_from(session.requirements.methods_required()).unwrap_or(i32::MAX)
            ),
            allowed_kinds: Set(encode_kinds(session.requirements.allowed_kinds())),
            created_at: Set(session.created_at),
            expires_at: Set(session.expires_at),
            questions_allowed: Set(session.questions_allowed),
            step_up_required: Set(session.step_up.flags().0),
            stepped_up: Set(session.step_up.flags().1),
            cooldown_hours: Set(i32::try_from(session.cooldown_hours).unwrap_or(i32::MAX)),
        })
        .exec_without_returning(&txn)
        .await?;
        txn.commit().await?;
        Ok(())
    }

    async fn find_session(&self, hash: &TokenHash) -> Result<Option<RegistrationSession>, Error> {
        registration_session::Entity::find_by_id(hash.as_str().to_owned())
            .one(&self.db)
            .await?
            .map(session_from_row)
            .transpose()
    }

    async fn confirmed_methods(&self, user: &UserId) -> Result<Vec<RegisteredMethod>, Error> {
        method::Entity::find()
            .filter(method::Column::UserId.eq(user.as_str()))
            .filter(method::Column::Status.eq(MethodStatus::Confirmed.as_str()))
            .order_by_asc(method::Column::ConfirmedAt)
            .order_by_asc(method::Column::MethodId)
            .all(&self.db)
            .await?
            .into_iter()
            .map(method_from_row)
            .collect()
    }

    async fn find_method(
        &self,
        user: &UserId,
        id: &MethodId,
    ) -> Result<Option<RegisteredMethod>, Error> {
        method::Entity::find_by_id(id.as_str().to_owned())
            .filter(method::Column::UserId.eq(user.as_str()))
            .one(&self.db)
            .await?
            .map(method_from_row)
            .transpose()
    }

    async fn prepare_pending(
        &self,
        user: &UserId,
        destination: &Destination,
        now: DateTime<Utc>,
    ) -> Result<RegisteredMethod, Error> {
        let mut attempt = 1;
        loop {
            match self.try_prepare_pending(user, destination, now).await {
                Err(Error::Db(e)) if is_unique_violation(&e) && attempt < ADD_ATTEMPTS => {
                    tracing::debug!(user_id = %user, "concurrent add of the same destination; retrying");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn confirm(
        &self,
        m: &RegisteredMethod,
        flow_id: &FlowId,
        now: DateTime<Utc>,
        usable_from: DateTime<Utc>,
    ) -> Result<u32, Error> {
        let txn = sspr_storage::begin_write(&self.db).await?;
        // Only from the state the caller read: a concurrent (re)confirmation wins once. A
        // confirmed method is re-confirmed only by the one confirmation that uses the
        // re-confirmation AddMethod requested; a caller that read the method just after a
        // racing first confirmation committed finds nothing requested.
        let from_state = match m.status {
            MethodStatus::Confirmed => sea_orm::Condition::all()
                .add(method::Column::Status.eq(MethodStatus::Confirmed.as_str()))
                .add(method::Column::ReconfirmRequested.eq(true)),
            _ => sea_orm::Condition::all()
                .add(method::Column::Status.eq(MethodStatus::Pending.as_str())),
        };
        let mut update = method::Entity::update_many()
            .col_expr(
                method::Column::Status,
                Expr::value(MethodStatus::Confirmed.as_str()),
            )
            .col_expr(method::Column::ConfirmedAt, Expr::value(Some(now)))
            .col_expr(method::Column::ReconfirmRequested, Expr::value(false));
        if !m.is_confirmed() {
            // A re-confirmation keeps the usability date of the first confirmation.
            update = update.col_expr(method::Column::UsableFrom, Expr::value(Some(usable_from)));
        }
        let updated = update
            .filter(method::Column::MethodId.eq(m.method_id.as_str()))
            .filter(method::Column::UserId.eq(m.user_id.as_str()))
            .filter(from_state)
            .exec(&txn)
            .await?;
        if updated.rows_affected == 0 {
            // Someone else got there first, or the method is gone.
            let still_there = method::Entity::find_by_id(m.method_id.as_str().to_owned())
                .one(&txn)
                .await?;
            return Err(match still_there {
                Some(row) if row.status == MethodStatus::Confirmed.as_str() => {
                    Error::AlreadyConfirmed
                }
                _ => Error::UnknownMethod,
            });
        }
        let confirmed = method::Entity::find()
            .filter(method::Column::UserId.eq(m.user_id.as_str()))
            .filter(method::Column::Status.eq(MethodStatus::Confirmed.as_str()))
            .count(&txn)
            .await?;
        let confirmed = u32::try_from(confirmed).unwrap_or(u32::MAX);
        outbox::enqueue(
            &txn,
            events::method_registered(m, flow_id, confirmed, now),
            now,
        )
        .await?;
        txn.commit().await?;
        self.outbox.notify();
        Ok(confirmed)
    }

    async fn mark_stepped_up(&self, flow_id: &FlowId) -> Result<(), Error> {
        registration_session::Entity::update_many()
            .col_expr(registration_session::Column::SteppedUp, Expr::value(true))
            .filter(registration_session::Column::FlowId.eq(flow_id.to_string()))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    async fn count_sign_in_check(&self, window: &Window, now: DateTime<Utc>) -> Result<u64, Error> {
        let txn = sspr_storage::begin_write(&self.db).await?;
        // Write first (see the module header): the increment is the lock.
        sign_in_check::Entity::insert(sign_in_check::ActiveModel {
            key: Set(window.key.clone()),
            window_start: Set(window.start),
            count: Set(1),
        })
        .on_conflict(
            OnConflict::columns([
                sign_in_check::Column::Key,
                sign_in_check::Column::WindowStart,
            ])
            .value(
                sign_in_check::Column::Count,
                Expr::col((sign_in_check::Entity, sign_in_check::Column::Count)).add(1),
            )
            .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        let count = sign_in_check::Entity::find_by_id((window.key.clone(), window.start))
            .one(&txn)
            .await?
            .map_or(1, |row| row.count);
        // Windows are at most an hour long: older rows count for nothing.
        sign_in_check::Entity::delete_many()
            .filter(sign_in_check::Column::WindowStart.lt(now - chrono::Duration::hours(2)))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn remove_confirmed(
        &self,
        user: &UserId,
        id: &MethodId,
        required: u32,
        flow_id: &FlowId,
        now: DateTime<Utc>,
    ) -> Result<u32, Error> {
        let txn = sspr_storage::begin_write(&self.db).await?;
        // Write first (see the module header): lock the user's confirmed methods.
        method::Entity::update_many()
            .col_expr(
                method::Column::Status,
                Expr::value(MethodStatus::Confirmed.as_str()),
            )
            .filter(method::Column::UserId.eq(user.as_str()))
            .filter(method::Column::Status.eq(MethodStatus::Confirmed.as_str()))
            .exec(&txn)
            .await?;
        let target = method::Entity::find_by_id(id.as_str().to_owned())
            .filter(method::Column::UserId.eq(user.as_str()))
            .filter(method::Column::Status.eq(MethodStatus::Confirmed.as_str()))
            .one(&txn)
            .await?
            .map(method_from_row)
            .transpose()?
            .ok_or(Error::UnknownMethod)?;
        let confirmed = method::Entity::find()
            .filter(method::Column::UserId.eq(user.as_str()))
            .filter(method::Column::Status.eq(MethodStatus::Confirmed.as_str()))
            .count(&txn)
            .await?;
        check_removal(confirmed, required)?;
        method::Entity::delete_by_id(target.method_id.as_str().to_owned())
            .exec(&txn)
            .await?;
        let left = u32::try_from(confirmed.saturating_sub(1)).unwrap_or(u32::MAX);
        outbox::enqueue(
            &txn,
            events::method_removed(&target, flow_id, left, now),
            now,
        )
        .await?;
        txn.commit().await?;
        self.outbox.notify();
        Ok(left)
    }

    async fn security_method(&self, user: &UserId) -> Result<Option<SecurityMethod>, Error> {
        self.read_security_method(user).await
    }

    async fn set_security_answers(
        &self,
        user: &UserId,
        answers: Vec<(String, AnswerHash)>,
        masked: String,
        flow_id: &FlowId,
        now: DateTime<Utc>,
    ) -> Result<(MethodId, u32), Error> {
        let txn = sspr_storage::begin_write(&self.db).await?;
        // Write first (see the module header): the method row, keeping an existing id.
        security_question_method::Entity::insert(security_question_method::ActiveModel {
            user_id: Set(user.as_str().to_owned()),
            method_id: Set(MethodId::new().as_str().to_owned()),
            registered_at: Set(now),
        })
        .on_conflict(
            OnConflict::column(security_question_method::Column::UserId)
                .update_column(security_question_method::Column::RegisteredAt)
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        let row = security_question_method::Entity::find_by_id(user.as_str().to_owned())
            .one(&txn)
            .await?
            .ok_or_else(|| Error::Corrupt(format!("security_question_methods row of {user}")))?;
        let method_id = MethodId::parse(&row.method_id).map_err(|_| {
            Error::Corrupt(format!(
                "security_question_methods row of {user}: method_id"
            ))
        })?;
        security_answer::Entity::delete_many()
            .filter(security_answer::Column::UserId.eq(user.as_str()))
            .exec(&txn)
            .await?;
        for (question_id, hash) in answers {
            security_answer::Entity::insert(security_answer::ActiveModel {
                user_id: Set(user.as_str().to_owned()),
                question_id: Set(question_id),
                answer_hash: Set(hash.as_phc().to_owned()),
                created_at: Set(now),
            })
            .exec_without_returning(&txn)
            .await?;
        }
        let registered =
            u32::try_from(confirmed_count(&txn, user).await?.saturating_add(1)).unwrap_or(u32::MAX);
        outbox::enqueue(
            &txn,
            events::questions_registered(user, &method_id, masked, flow_id, registered, now),
            now,
        )
        .await?;
        txn.commit().await?;
        self.outbox.notify();
        Ok((method_id, registered))
    }

    async fn remove_security_method(
        &self,
        user: &UserId,
        id: &MethodId,
        required: u32,
        masked: String,
        flow_id: &FlowId,
        now: DateTime<Utc>,
    ) -> Result<u32, Error> {
        let txn = sspr_storage::begin_write(&self.db).await?;
        // Write first (see the module header): lock the user's confirmed methods, as
        // `remove_confirmed` does, so the count below cannot change under us.
        method::Entity::update_many()
            .col_expr(
                method::Column::Status,
                Expr::value(MethodStatus::Confirmed.as_str()),
            )
            .filter(method::Column::UserId.eq(user.as_str()))
            .filter(method::Column::Status.eq(MethodStatus::Confirmed.as_str()))
            .exec(&txn)
            .await?;
        let deleted = security_question_method::Entity::delete_many()
            .filter(security_question_method::Column::UserId.eq(user.as_str()))
            .filter(security_question_method::Column::MethodId.eq(id.as_str()))
            .exec(&txn)
            .await?;
        if deleted.rows_affected != 1 {
            txn.rollback().await?;
            return Err(Error::UnknownMethod);
        }
        let left = confirmed_count(&txn, user).await?;
        if left < u64::from(required) {
            txn.rollback().await?;
            return Err(Error::BelowRequired { required });
        }
        security_answer::Entity::delete_many()
            .filter(security_answer::Column::UserId.eq(user.as_str()))
            .exec(&txn)
            .await?;
        let left = u32::try_from(left).unwrap_or(u32::MAX);
        outbox::enqueue(
            &txn,
            events::questions_removed(user, id, masked, flow_id, left, now),
            now,
        )
        .await?;
        txn.commit().await?;
        self.outbox.notify();
        Ok(left)
    }

    async fn forget_user(
        &self,
        event_id: &uuid::Uuid,
        user: &UserId,
        now: DateTime<Utc>,
    ) -> Result<Option<Forgotten>, Error> {
        let txn = sspr_storage::begin_write(&self.db).await?;
        // Write first (see the module header): the processed-event row is the idempotency key.
        let inserted = processed_event::Entity::insert(processed_event::ActiveModel {
            event_id: Set(event_id.to_string()),
            processed_at: Set(now),
        })
        .on_conflict(
            OnConflict::column(processed_event::Column::EventId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
        if inserted == 0 {
            txn.rollback().await?;
            return Ok(None);
        }
        let methods = method::Entity::delete_many()
            .filter(method::Column::UserId.eq(user.as_str()))
            .exec(&txn)
            .await?;
        let sessions = registration_session::Entity::delete_many()
            .filter(registration_session::Column::UserId.eq(user.as_str()))
            .exec(&txn)
            .await?;
        security_answer::Entity::delete_many()
            .filter(security_answer::Column::UserId.eq(user.as_str()))
            .exec(&txn)
            .await?;
        let questions = security_question_method::Entity::delete_many()
            .filter(security_question_method::Column::UserId.eq(user.as_str()))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(Some(Forgotten {
            methods: methods.rows_affected + questions.rows_affected,
            sessions: sessions.rows_affected,
        }))
    }
}

/// How many confirmed contact methods `user` has, through `conn`.
async fn confirmed_count(
    conn: &impl sea_orm::ConnectionTrait,
    user: &UserId,
) -> Result<u64, DbErr> {
    method::Entity::find()
        .filter(method::Column::UserId.eq(user.as_str()))
        .filter(method::Column::Status.eq(MethodStatus::Confirmed.as_str()))
        .count(conn)
        .await
}

impl SeaOrmStore {
    pub(crate) async fn read_security_method(
        &self,
        user: &UserId,
    ) -> Result<Option<SecurityMethod>, Error> {
        let Some(row) = security_question_method::Entity::find_by_id(user.as_str().to_owned())
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let method_id = MethodId::parse(&row.method_id).map_err(|_| {
            Error::Corrupt(format!(
                "security_question_methods row of {user}: method_id"
            ))
        })?;
        let answers = security_answer::Entity::find()
            .filter(security_answer::Column::UserId.eq(user.as_str()))
            .order_by_asc(security_answer::Column::QuestionId)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|a| (a.question_id, AnswerHash::from_stored(a.answer_hash)))
            .collect();
        Ok(Some(SecurityMethod {
            method_id,
            registered_at: row.registered_at,
            answers,
        }))
    }
}

fn is_unique_violation(e: &DbErr) -> bool {
    matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// `[Email, Sms]` -> `"1,2"`.
fn encode_kinds(kinds: &[MethodKind]) -> String {
    kinds
        .iter()
        .map(|k| k.code().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// `"1,2"` -> `[Email, Sms]`; `None` if any part is not a known kind.
fn decode_kinds(raw: &str) -> Option<Vec<MethodKind>> {
    if raw.is_empty() {
        return Some(Vec::new());
    }
    raw.split(',')
        .map(|part| part.trim().parse().ok().and_then(MethodKind::from_code))
        .collect()
}

fn session_from_row(row: registration_session::Model) -> Result<RegistrationSession, Error> {
    let corrupt = |what: &str| {
        Error::Corrupt(format!(
            "registration_sessions row of flow {}: {what}",
            row.flow_id
        ))
    };
    let kinds = decode_kinds(&row.allowed_kinds).ok_or_else(|| corrupt("allowed_kinds"))?;
    let methods_required =
        u32::try_from(row.methods_required).map_err(|_| corrupt("methods_required"))?;
    Ok(RegistrationSession {
        flow_id: FlowId::parse(&row.flow_id).map_err(|_| corrupt("flow_id"))?,
        user_id: UserId::parse(&row.user_id).map_err(|_| corrupt("user_id"))?,
        locale: Locale::parse(&row.locale).map_err(|_| corrupt("locale"))?,
        requirements: Requirements::from_policy(true, methods_required, kinds)
            .ok_or_else(|| corrupt("no allowed kinds"))?,
        created_at: row.created_at,
        expires_at: row.expires_at,
        questions_allowed: row.questions_allowed,
        step_up: StepUp::from_flags(row.step_up_required, row.stepped_up),
        cooldown_hours: u32::try_from(row.cooldown_hours).map_err(|_| corrupt("cooldown_hours"))?,
    })
}

fn method_from_row(row: method::Model) -> Result<RegisteredMethod, Error> {
    let corrupt = |what: &str| Error::Corrupt(format!("methods row {}: {what}", row.method_id));
    let kind = MethodKind::from_code(row.kind).ok_or_else(|| corrupt("kind"))?;
    Ok(RegisteredMethod {
        method_id: MethodId::parse(&row.method_id).map_err(|_| corrupt("method_id"))?,
        user_id: UserId::parse(&row.user_id).map_err(|_| corrupt("user_id"))?,
        destination: Destination::parse(kind, &row.destination)
            .map_err(|_| corrupt("destination"))?,
        status: MethodStatus::parse(&row.status).ok_or_else(|| corrupt("status"))?,
        created_at: row.created_at,
        confirmed_at: row.confirmed_at,
        usable_from: row.usable_from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        let all = [MethodKind::Email, MethodKind::Sms];
        assert_eq!(encode_kinds(&all), "1,2");
        assert_eq!(decode_kinds("1,2").as_deref(), Some(&all[..]));
        assert_eq!(decode_kinds("2").as_deref(), Some(&[MethodKind::Sms][..]));
        assert_eq!(decode_kinds(""), Some(Vec::new()));
        assert_eq!(decode_kinds("1,0"), None);
        assert_eq!(decode_kinds("1,x"), None);
    }
}
