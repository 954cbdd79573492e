//! The `idempotency_keys` table: claims and sealed answers of idempotent requests
//! (`sspr_bus::idempotency`), in the owning service's own database so every replica sees them.
//!
//! Invariants:
//! - A row is claimed by exactly one attempt: the insert of a new `lookup` either happens or
//!   conflicts; a pending claim older than the lease is taken over by a conditional update on
//!   its `claimed_at`, which only one attempt can win.
//! - Rows hold no key, no request and no answer in clear: `lookup` is a hash of (route, key),
//!   `request_hash` an HMAC of the request, `answer` the sealed answer (see the bus module).
//! - Rows are deleted by [`purge`] once older than the retention (`SSPR_IDEMPOTENCY_HOURS`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter,
};
use sea_orm_migration::prelude::{
    ColumnDef, DeriveIden, Index, MigrationName, MigrationTrait, SchemaManager, Table,
};
use sspr_bus::idempotency::{Claim, Existing, IdempotencyStore, StoreError};

/// The `idempotency_keys` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "idempotency_keys")]
    pub struct Model {
        /// Hex SHA-256 of (route, key).
        #[sea_orm(primary_key, auto_increment = false)]
        pub lookup: String,
        /// The NATS subject the key was used on.
        pub route: String,
        /// Hex HMAC of (route, key, request body).
        pub request_hash: String,
        /// The sealed answer; `None` while the claiming attempt runs.
        pub answer: Option<Vec<u8>>,
        pub created_at: DateTimeUtc,
        /// When the current claim was taken (a claim older than the lease may be taken over).
        pub claimed_at: DateTimeUtc,
        pub completed_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Migration creating `idempotency_keys`; include it in the migrator of every service with
/// idempotent routes.
pub struct CreateIdempotencyKeys;

impl MigrationName for CreateIdempotencyKeys {
    fn name(&self) -> &str {
        "m0000_create_idempotency_keys"
    }
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    Lookup,
    Route,
    RequestHash,
    Answer,
    CreatedAt,
    ClaimedAt,
    CompletedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateIdempotencyKeys {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKeys::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(IdempotencyKeys::Lookup)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(IdempotencyKeys::Route).string().not_null())
                    .col(
                        ColumnDef::new(IdempotencyKeys::RequestHash)
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(IdempotencyKeys::Answer).blob().null())
                    .col(
                        ColumnDef::new(IdempotencyKeys::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IdempotencyKeys::ClaimedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IdempotencyKeys::CompletedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_idempotency_keys_created")
                    .table(IdempotencyKeys::Table)
                    .col(IdempotencyKeys::CreatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(IdempotencyKeys::Table).to_owned())
            .await
    }
}

/// [`IdempotencyStore`] on the service's database.
#[derive(Clone)]
pub struct IdempotencyTable {
    db: DatabaseConnection,
}

impl IdempotencyTable {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    async fn try_claim(
        &self,
        lookup: &str,
        route: &str,
        request_hash: &str,
        lease: Duration,
    ) -> Result<Claim, DbErr> {
        // Wall-clock time: the lease is about real replicas dying, not about the domain clock.
        let now = Utc::now();
        for _ in 0..3 {
            let inserted = entity::Entity::insert(entity::ActiveModel {
                lookup: Set(lookup.to_owned()),
                route: Set(route.to_owned()),
                request_hash: Set(request_hash.to_owned()),
                answer: Set(None),
                created_at: Set(now),
                claimed_at: Set(now),
                completed_at: Set(None),
            })
            .on_conflict(
                OnConflict::column(entity::Column::Lookup)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await?;
            if inserted == 1 {
                return Ok(Claim::Claimed);
            }
            let Some(row) = entity::Entity::find_by_id(lookup.to_owned())
                .one(&self.db)
                .await?
            else {
                // Released between our insert and our read: try again.
                continue;
            };
            if let Some(sealed) = row.answer {
                return Ok(Claim::Existing(Existing::Done {
                    request_hash: row.request_hash,
                    sealed,
                }));
            }
            let stale = row.claimed_at + lease_of(lease) < now;
            if stale && row.request_hash == request_hash {
                let taken = entity::Entity::update_many()
                    .col_expr(entity::Column::ClaimedAt, Expr::value(now))
                    .filter(entity::Column::Lookup.eq(lookup))
                    .filter(entity::Column::Answer.is_null())
                    .filter(entity::Column::ClaimedAt.eq(row.claimed_at))
                    .exec(&self.db)
                    .await?;
                if taken.rows_affected == 1 {
                    return Ok(Claim::Claimed);
                }
                continue;
            }
            return Ok(Claim::Existing(Existing::Pending {
                request_hash: row.request_hash,
            }));
        }
        Err(DbErr::Custom(
            "the idempotency row kept changing under the claim".to_owned(),
        ))
    }
}

fn lease_of(lease: Duration) -> chrono::Duration {
    chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX)
}

fn store_error(e: DbErr) -> StoreError {
    StoreError(e.to_string())
}

impl IdempotencyStore for IdempotencyTable {
    fn claim<'a>(
        &'a self,
        lookup: &'a str,
        route: &'a str,
        request_hash: &'a str,
        lease: Duration,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Claim, StoreError>> + Send + 'a>> {
        Box::pin(async move {
            self.try_claim(lookup, route, request_hash, lease)
                .await
                .map_err(store_error)
        })
    }

    fn complete<'a>(
        &'a self,
        lookup: &'a str,
        sealed: Vec<u8>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>> {
        Box::pin(async move {
            entity::Entity::update_many()
                .col_expr(entity::Column::Answer, Expr::value(sealed))
                .col_expr(entity::Column::CompletedAt, Expr::value(Utc::now()))
                .filter(entity::Column::Lookup.eq(lookup))
                .exec(&self.db)
                .await
                .map_err(store_error)?;
            Ok(())
        })
    }

    fn release<'a>(
        &'a self,
        lookup: &'a str,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>> {
        Box::pin(async move {
            entity::Entity::delete_many()
                .filter(entity::Column::Lookup.eq(lookup))
                .filter(entity::Column::Answer.is_null())
                .exec(&self.db)
                .await
                .map_err(store_error)?;
            Ok(())
        })
    }
}

/// Deletes the rows created before `before`; returns how many.
pub async fn purge(db: &impl ConnectionTrait, before: DateTime<Utc>) -> Result<u64, DbErr> {
    let deleted = entity::Entity::delete_many()
        .filter(entity::Column::CreatedAt.lt(before))
        .exec(db)
        .await?;
    Ok(deleted.rows_affected)
}

/// Deletes the stored answer of every row on `route` (tests: simulates an attempt whose state
/// change committed but whose answer was never stored).
pub async fn forget_answers(db: &impl ConnectionTrait, route: &str) -> Result<u64, DbErr> {
    let deleted = entity::Entity::delete_many()
        .filter(entity::Column::Route.eq(route))
        .exec(db)
        .await?;
    Ok(deleted.rows_affected)
}
