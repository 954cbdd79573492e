//! The audit log on the service's own database (SQLite or PostgreSQL through sea-orm).
//!
//! Invariants:
//! - `insert` is `INSERT .. ON CONFLICT (event_id) DO NOTHING`: an event recorded twice (a
//!   redelivery, a re-publication) leaves one row, the first.
//! - `list` returns rows in `(occurred_at_us, event_id)` order, strictly after the cursor, and
//!   says whether more follow.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseConnection, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use crate::adapters::entities::audit_records;
use crate::domain::query::{Cursor, ListQuery};
use crate::domain::record::AuditRecord;
use crate::error::Error;

/// One page of records.
#[derive(Debug)]
pub struct Page {
    pub records: Vec<AuditRecord>,
    /// Where the next page starts, if there is one.
    pub next: Option<Cursor>,
}

/// The audit log; cheap to clone.
#[derive(Clone)]
pub struct AuditStore {
    db: DatabaseConnection,
}

impl AuditStore {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Records `record` unless its event id is already there; `true` when a row was added.
    pub async fn insert(&self, record: &AuditRecord, now: DateTime<Utc>) -> Result<bool, Error> {
        let row = audit_records::ActiveModel {
            event_id: Set(record.event_id.clone()),
            occurred_at_us: Set(record.occurred_at.timestamp_micros()),
            occurred_at: Set(record.occurred_at),
            kind: Set(record.kind.clone()),
            user_id: Set(record.user_id.clone()),
            flow_id: Set(record.flow_id.clone()),
            actor: Set(record.actor.clone()),
            outcome: Set(record.outcome.clone()),
            trace_id: Set(record.trace_id.clone()),
            source: Set(record.source.clone()),
            summary: Set(record.summary.to_string()),
            recorded_at: Set(now),
        };
        let inserted = audit_records::Entity::insert(row)
            .on_conflict(
                OnConflict::column(audit_records::Column::EventId)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await;
        match inserted {
            Ok(rows) => Ok(rows > 0),
            Err(DbErr::RecordNotInserted) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// One page of the records matching `query`.
    pub async fn list(&self, query: &ListQuery) -> Result<Page, Error> {
        use audit_records::Column as C;
        let mut cond = Condition::all();
        if let Some(user_id) = &query.user_id {
            cond = cond.add(C::UserId.eq(user_id.as_str()));
        }
        if let Some(kind) = &query.kind {
            cond = cond.add(C::Kind.eq(kind.as_str()));
        }
        if let Some(from) = query.from_us {
            cond = cond.add(C::OccurredAtUs.gte(from));
        }
        if let Some(to) = query.to_us {
            cond = cond.add(C::OccurredAtUs.lt(to));
        }
        if let Some(after) = &query.after {
            cond = cond.add(
                Condition::any()
                    .add(C::OccurredAtUs.gt(after.occurred_at_us))
                    .add(
                        Condition::all()
                            .add(C::OccurredAtUs.eq(after.occurred_at_us))
                            .add(C::EventId.gt(after.event_id.as_str())),
                    ),
            );
        }
        let limit = u64::from(query.page_size);
        let mut rows = audit_records::Entity::find()
            .filter(cond)
            .order_by_asc(C::OccurredAtUs)
            .order_by_asc(C::EventId)
            .limit(limit + 1)
            .all(&self.db)
            .await?;
        let more = rows.len() as u64 > limit;
        rows.truncate(query.page_size as usize);
        let next = match (more, rows.last()) {
            (true, Some(last)) => Some(Cursor {
                occurred_at_us: last.occurred_at_us,
                event_id: last.event_id.clone(),
            }),
            _ => None,
        };
        let records = rows
            .into_iter()
            .map(record_of)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page { records, next })
    }

    /// Deletes records that occurred before `cutoff`; returns how many.
    pub async fn delete_before(&self, cutoff: DateTime<Utc>) -> Result<u64, Error> {
        // In batches (see `sspr_storage::retention`): a first sweep over a large log must not
        // hold the table's locks against the projector for long.
        use sea_orm::sea_query::{Condition, Expr, ExprTrait};
        let purge = sspr_storage::retention::Purge {
            table: "audit_records",
            key: "event_id",
            condition: Condition::all()
                .add(Expr::col(audit_records::Column::OccurredAtUs).lt(cutoff.timestamp_micros())),
        };
        Ok(purge
            .run(&self.db, sspr_storage::retention::DEFAULT_BATCH)
            .await?)
    }
}

fn record_of(row: audit_records::Model) -> Result<AuditRecord, Error> {
    let summary = serde_json::from_str(&row.summary)
        .map_err(|_| Error::Corrupt(format!("summary of event {}", row.event_id)))?;
    let occurred_at = DateTime::from_timestamp_micros(row.occurred_at_us)
        .ok_or_else(|| Error::Corrupt(format!("time of event {}", row.event_id)))?;
    Ok(AuditRecord {
        event_id: row.event_id,
        occurred_at,
        kind: row.kind,
        user_id: row.user_id,
        flow_id: row.flow_id,
        actor: row.actor,
        outcome: row.outcome,
        trace_id: row.trace_id,
        source: row.source,
        summary,
    })
}
