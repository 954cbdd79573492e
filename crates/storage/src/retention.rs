//! Batched deletes for retention purges.
//!
//! Invariants:
//! - A purge deletes at most `batch` rows per statement (`DELETE … WHERE key IN (SELECT key …
//!   LIMIT batch)`), each statement committing on its own, so a large backlog never holds a
//!   table's locks (SQLite's write lock, PostgreSQL row locks) for long; other writers get in
//!   between batches.
//! - Only rows matching the caller's condition go; the condition is evaluated again for every
//!   batch, so rows that stop matching meanwhile stay.
//! - Same SQL on SQLite and PostgreSQL (no `DELETE … LIMIT`, which PostgreSQL lacks).

use sea_orm::sea_query::{Alias, Condition, Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, DbErr};

/// Rows deleted per statement by default.
pub const DEFAULT_BATCH: u64 = 1000;

/// What a purge deletes: rows of `table` (primary key column `key`) matching `condition`.
#[derive(Debug, Clone)]
pub struct Purge {
    pub table: &'static str,
    pub key: &'static str,
    pub condition: Condition,
}

impl Purge {
    /// Rows of `table` whose `column` is strictly before `cutoff`.
    pub fn older_than(
        table: &'static str,
        key: &'static str,
        column: &'static str,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        Self {
            table,
            key,
            condition: Condition::all().add(Expr::col(Alias::new(column)).lt(cutoff)),
        }
    }

    /// Adds a condition every deleted row must also meet.
    pub fn and(mut self, condition: impl Into<Condition>) -> Self {
        self.condition = self.condition.add(condition.into());
        self
    }

    /// Deletes every matching row, `batch` at a time; returns how many went.
    pub async fn run<C: ConnectionTrait>(&self, db: &C, batch: u64) -> Result<u64, DbErr> {
        let batch = Ord::max(batch, 1);
        let mut total = 0;
        loop {
            let keys = Query::select()
                .column(Alias::new(self.key))
                .from(Alias::new(self.table))
                .cond_where(self.condition.clone())
                .limit(batch)
                .to_owned();
            let delete = Query::delete()
                .from_table(Alias::new(self.table))
                .and_where(Expr::col(Alias::new(self.key)).in_subquery(keys))
                .to_owned();
            let statement = db.get_database_backend().build(&delete);
            let deleted = db.execute_raw(statement).await?.rows_affected();
            total += deleted;
            if deleted < batch {
                return Ok(total);
            }
            // Let other writers in between two batches.
            tokio::task::yield_now().await;
        }
    }
}
