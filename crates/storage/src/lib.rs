//! Storage shared by the services that own data.
//!
//! - [`connect`]: one database per service. By default a SQLite file `<data_dir>/<service>.db`;
//!   with a PostgreSQL URL, a schema `sspr_<service>` of that database holding the service's
//!   tables and its migration history, so services given the same URL never see each other's
//!   rows. Replicas of one service share its schema.
//! - [`outbox`]: the transactional outbox. A state change and the events it causes commit in
//!   one transaction; [`outbox::OutboxRelay`] publishes them to JetStream with `Nats-Msg-Id` and
//!   marks them sent only after the stream acknowledged them; [`outbox::purge_published`]
//!   deletes published rows once they are old.
//! - [`retention`]: batched deletes for retention purges (both backends).
//! - [`run_migrations`]: on PostgreSQL under a transaction-scoped advisory lock keyed by the
//!   schema, so replicas starting together migrate one after the other.
//! - [`idempotency`]: the `idempotency_keys` table behind the bus's idempotency keys: claims
//!   and sealed answers of idempotent requests, purged after the retention.

mod connect;
pub mod idempotency;
pub mod outbox;
pub mod retention;

pub use connect::{DbSettings, StorageError, begin_write, connect, run_migrations};
pub use sea_orm;
pub use sea_orm_migration;
