//! The transactional outbox.
//!
//! Invariants:
//! - A row is written with [`enqueue`] inside the same transaction as the state change it
//!   reports, so either both exist or neither does.
//! - The relay publishes rows in insertion order, each with `Nats-Msg-Id` = the row's message
//!   id, and marks a row published only after JetStream acknowledged it. A crash between the ack
//!   and the mark republishes the row; the stream's duplicate window drops the copy.
//! - On a publish failure the relay stops at that row and retries later, so order is kept.
//! - Published rows (and decoy stand-ins, stored as published) are deleted by
//!   [`purge_published`] once older than the retention; an unpublished row is never purged,
//!   however old, so an event cannot be lost to housekeeping.
//! - Rows carry the `traceparent` of the span that wrote them, so the consumer's span joins the
//!   trace of the request that caused the message.
//! - The relay keeps `sspr_outbox_backlog{service}` and `sspr_outbox_oldest_age_seconds{service}`
//!   current from one COUNT and one indexed lookup at most every [`SAMPLE_EVERY`] (also while
//!   publishing fails, which is when they matter), and counts `sspr_outbox_published_total` per
//!   row it marked published.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use sea_orm_migration::prelude::{
    ColumnDef, DeriveIden, Index, MigrationName, MigrationTrait, SchemaManager, Table,
};
use sspr_bus::Bus;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The `outbox` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        #[sea_orm(unique)]
        pub msg_id: String,
        pub subject: String,
        pub payload: Vec<u8>,
        pub traceparent: Option<String>,
        pub created_at: DateTimeUtc,
        pub published_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Migration creating the `outbox` table; include it in every emitting service's migrator.
pub struct CreateOutbox;

impl MigrationName for CreateOutbox {
    fn name(&self) -> &str {
        "m0000_create_outbox"
    }
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    MsgId,
    Subject,
    Payload,
    Traceparent,
    CreatedAt,
    PublishedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateOutbox {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Outbox::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Outbox::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Outbox::MsgId)
                            .string()
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(Outbox::Subject).string().not_null())
                    .col(ColumnDef::new(Outbox::Payload).blob().not_null())
                    .col(ColumnDef::new(Outbox::Traceparent).string().null())
                    .col(
                        ColumnDef::new(Outbox::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Outbox::PublishedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_outbox_unpublished")
                    .table(Outbox::Table)
                    .col(Outbox::PublishedAt)
                    .col(Outbox::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Outbox::Table).to_owned())
            .await
    }
}

/// A message waiting to be published.
#[derive(Debug, Clone)]
pub struct OutboxMessage {
    pub subject: String,
    /// Becomes `Nats-Msg-Id`: the event id for events, the delivery id for deliveries.
    pub msg_id: String,
    pub payload: Vec<u8>,
    pub traceparent: Option<String>,
    /// A stand-in written by a decoy flow so it does the same database work as a real one:
    /// stored already published, so the relay never sends it. See [`OutboxMessage::decoy`].
    pub decoy: bool,
}

impl OutboxMessage {
    /// The stand-in of this message for a decoy flow: same size, zeroed payload, never
    /// published. Decoy flows (unknown users, users who may not reset) must cost the same
    /// writes as real ones so neither the answer nor its timing tells them apart, yet nothing
    /// about them may reach the bus.
    pub fn decoy(self) -> Self {
        Self {
            payload: vec![0; self.payload.len()],
            traceparent: None,
            decoy: true,
            ..self
        }
    }

    /// A message for `subject` carrying `body`, tied to the current span's trace.
    pub fn new(subject: &str, msg_id: impl Into<String>, body: &impl prost::Message) -> Self {
        Self {
            subject: subject.to_owned(),
            msg_id: msg_id.into(),
            payload: body.encode_to_vec(),
            traceparent: sspr_bus::trace::current_traceparent(),
            decoy: false,
        }
    }
}

/// Adds `msg` to the outbox, inside the caller's transaction.
pub async fn enqueue<C: ConnectionTrait>(
    conn: &C,
    msg: OutboxMessage,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), DbErr> {
    entity::ActiveModel {
        msg_id: Set(msg.msg_id),
        subject: Set(msg.subject),
        payload: Set(msg.payload),
        traceparent: Set(msg.traceparent),
        created_at: Set(now),
        published_at: Set(msg.decoy.then_some(now)),
        ..Default::default()
    }
    .insert(conn)
    .await
    .map(|_| ())
}

/// Wakes the relay after a commit; cheap to clone.
#[derive(Clone, Default)]
pub struct OutboxSignal(Arc<Notify>);

impl OutboxSignal {
    /// Call after committing a transaction that enqueued messages.
    pub fn notify(&self) {
        self.0.notify_one();
    }
}

/// How often the running relay samples its backlog (`sspr_outbox_backlog`,
/// `sspr_outbox_oldest_age_seconds`).
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// What waits in the outbox, as [`OutboxRelay::sample_backlog`] read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    /// Rows not yet published.
    pub rows: u64,
    /// Age of the oldest of them (zero when there is none).
    pub oldest_age: Duration,
}

/// Publishes outbox rows to JetStream.
pub struct OutboxRelay {
    /// The service whose outbox this is: the `service` label of the outbox metrics.
    service: String,
    db: DatabaseConnection,
    bus: Bus,
    signal: OutboxSignal,
    batch: u64,
    poll: Duration,
}

impl OutboxRelay {
    /// The relay of `service`'s outbox (its short name, as in its database name).
    pub fn new(service: &str, db: DatabaseConnection, bus: Bus, signal: OutboxSignal) -> Self {
        Self {
            service: service.to_owned(),
            db,
            bus,
            signal,
            batch: 256,
            poll: Duration::from_millis(500),
        }
    }

    /// Publishes until `shutdown` is cancelled, then drains what is left once.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut sampled: Option<Instant> = None;
        loop {
            let drained = self.drain_once().await;
            if sampled.is_none_or(|at| at.elapsed() >= SAMPLE_EVERY) {
                sampled = Some(Instant::now());
                self.sample_quietly().await;
            }
            let more = match drained {
                Ok(n) => n as u64 == self.batch,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay: publishing failed, will retry");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    continue;
                }
            };
            if more {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.signal.0.notified() => {}
                _ = tokio::time::sleep(self.poll) => {}
            }
        }
        if let Err(e) = self.drain_once().await {
            tracing::warn!(error = %e, "outbox relay: final drain incomplete; rows stay for the next start");
        }
        self.sample_quietly().await;
    }

    async fn sample_quietly(&self) {
        if let Err(e) = self.sample_backlog().await {
            tracing::debug!(error = %e, "outbox relay: could not sample the backlog");
        }
    }

    /// Reads the backlog (a COUNT of the unpublished rows and the creation time of the first
    /// of them, both on the `published_at, id` index) and sets `sspr_outbox_backlog` and
    /// `sspr_outbox_oldest_age_seconds` for this service.
    pub async fn sample_backlog(&self) -> Result<Backlog, DbErr> {
        let unpublished = || entity::Entity::find().filter(entity::Column::PublishedAt.is_null());
        let rows = unpublished().count(&self.db).await?;
        let oldest: Option<chrono::DateTime<chrono::Utc>> = unpublished()
            .order_by_asc(entity::Column::Id)
            .select_only()
            .column(entity::Column::CreatedAt)
            .into_tuple()
            .one(&self.db)
            .await?;
        let oldest_age = oldest
            .and_then(|at| (chrono::Utc::now() - at).to_std().ok())
            .unwrap_or_default();
        let metrics = sspr_telemetry::metrics::catalogue();
        let service = [self.service.as_str()];
        metrics
            .outbox_backlog
            .set(&service, i64::try_from(rows).unwrap_or(i64::MAX));
        metrics.outbox_oldest_age.set(
            &service,
            i64::try_from(oldest_age.as_secs()).unwrap_or(i64::MAX),
        );
        Ok(Backlog { rows, oldest_age })
    }

    /// Publishes one batch in order; returns how many rows were published.
    pub async fn drain_once(&self) -> Result<usize, RelayError> {
        let rows = entity::Entity::find()
            .filter(entity::Column::PublishedAt.is_null())
            .order_by_asc(entity::Column::Id)
            .limit(self.batch)
            .all(&self.db)
            .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        // One span per batch: each row's publish span is its child and links to the trace the
        // row was committed under (its stored traceparent), as batched work should.
        let span = tracing::info_span!(
            "outbox relay",
            otel.kind = "internal",
            messaging.system = "nats",
            messaging.batch.message_count = rows.len(),
            sspr.service = %self.service,
        );
        self.publish_rows(rows).instrument(span).await
    }

    async fn publish_rows(&self, rows: Vec<entity::Model>) -> Result<usize, RelayError> {
        // Pipelined: the whole batch goes out before any ack is awaited, then every row that
        // reached the stream is marked in one statement. A row that failed stays unpublished
        // for the next pass (a copy that did reach the stream is dropped as a duplicate).
        let mut ids = Vec::with_capacity(rows.len());
        let mut messages = Vec::with_capacity(rows.len());
        for row in rows {
            let mut headers = async_nats::HeaderMap::new();
            if let Some(tp) = &row.traceparent {
                headers.insert("traceparent", tp.as_str());
            }
            ids.push(row.id);
            messages.push(sspr_bus::DurableMessage {
                subject: row.subject,
                msg_id: row.msg_id,
                headers,
                payload: Bytes::from(row.payload),
            });
        }
        let results = self.bus.publish_durable_batch(messages).await;
        let mut first_error = None;
        let mut sent = Vec::with_capacity(ids.len());
        for (id, result) in ids.into_iter().zip(results) {
            match result {
                Ok(()) => sent.push(id),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if !sent.is_empty() {
            entity::Entity::update_many()
                .col_expr(
                    entity::Column::PublishedAt,
                    sea_orm::sea_query::Expr::value(chrono::Utc::now()),
                )
                .filter(entity::Column::Id.is_in(sent.iter().copied()))
                .exec(&self.db)
                .await?;
            tracing::debug!(rows = sent.len(), "outbox rows published");
            sspr_telemetry::metrics::catalogue()
                .outbox_published
                .add(&[self.service.as_str()], sent.len() as u64);
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(sent.len()),
        }
    }
}

/// Deletes rows published before `cutoff`, `batch` per statement (see [`crate::retention`]);
/// rows still waiting to be published stay whatever their age. Returns how many went.
pub async fn purge_published<C: ConnectionTrait>(
    db: &C,
    cutoff: chrono::DateTime<chrono::Utc>,
    batch: u64,
) -> Result<u64, DbErr> {
    published_before(cutoff).run(db, batch).await
}

/// The purge of rows published before `cutoff` (unpublished rows never match).
pub fn published_before(cutoff: chrono::DateTime<chrono::Utc>) -> crate::retention::Purge {
    crate::retention::Purge::older_than("outbox", "id", "published_at", cutoff)
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error(transparent)]
    Bus(#[from] sspr_bus::BusError),
}
