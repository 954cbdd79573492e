//! Connecting to the service's own database.

use std::path::PathBuf;
use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend};
use sea_orm_migration::MigratorTrait;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot connect to the {service} database: {source}")]
    Connect {
        service: String,
        source: sea_orm::DbErr,
    },
    #[error("migrating the {service} database failed: {source}")]
    Migrate {
        service: String,
        source: sea_orm::DbErr,
    },
    #[error("SSPR_DATABASE_URL must start with postgres:// or postgresql://")]
    UnsupportedUrl,
}

/// Where a service keeps its data.
#[derive(Clone)]
pub struct DbSettings {
    /// Directory of the SQLite files (`SSPR_DATA_DIR`).
    pub data_dir: PathBuf,
    /// PostgreSQL URL (`SSPR_DATABASE_URL`); when set, SQLite is not used.
    pub database_url: Option<String>,
}

impl std::fmt::Debug for DbSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.debug_struct("DbSettings")
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self.database_url.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Opens the database of `service` (a short name such as `verification`).
pub async fn connect(
    service: &str,
    settings: &DbSettings,
) -> Result<DatabaseConnection, StorageError> {
    let err = |source| StorageError::Connect {
        service: service.to_owned(),
        source,
    };
    match &settings.database_url {
        Some(url) => {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(StorageError::UnsupportedUrl);
            }
            let schema = format!("sspr_{}", service.replace('-', "_"));
            // Create the schema with a plain connection, then connect with it on the search path
            // so the service's tables and migration table live there.
            let mut bootstrap = ConnectOptions::new(url.clone());
            bootstrap
                .max_connections(1)
                .sqlx_logging(false)
                .connect_timeout(Duration::from_secs(10));
            let admin = Database::connect(bootstrap).await.map_err(err)?;
            // Replicas starting together may race on CREATE SCHEMA (a unique violation even with
            // IF NOT EXISTS); losing that race is fine once the schema exists.
            if let Err(e) = admin
                .execute_unprepared(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                .await
            {
                let exists = admin
                    .query_one_raw(sea_orm::Statement::from_sql_and_values(
                        DbBackend::Postgres,
                        "SELECT 1 FROM information_schema.schemata WHERE schema_name = $1",
                        [schema.clone().into()],
                    ))
                    .await
                    .map_err(err)?
                    .is_some();
                if !exists {
                    return Err(err(e));
                }
            }
            admin.close().await.map_err(err)?;
            let mut opts = ConnectOptions::new(url.clone());
            opts.max_connections(16)
                .min_connections(1)
                .connect_timeout(Duration::from_secs(10))
                .acquire_timeout(Duration::from_secs(10))
                .set_schema_search_path(schema)
                .sqlx_logging(false);
            let mut db = Database::connect(opts).await.map_err(err)?;
            db.set_metric_callback(|_| sspr_bus::work::record_db_statement());
            Ok(db)
        }
        None => {
            std::fs::create_dir_all(&settings.data_dir).map_err(|source| {
                StorageError::DataDir {
                    path: settings.data_dir.clone(),
                    source,
                }
            })?;
            let path = settings.data_dir.join(format!("{service}.db"));
            let url = format!("sqlite://{}?mode=rwc", path.display());
            let mut opts = ConnectOptions::new(url);
            opts.max_connections(8)
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(10))
                .sqlx_logging(false)
                .map_sqlx_sqlite_opts(|o| {
                    o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                        .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                        .busy_timeout(Duration::from_secs(10))
                        .foreign_keys(true)
                });
            let mut db = Database::connect(opts).await.map_err(err)?;
            debug_assert_eq!(db.get_database_backend(), DbBackend::Sqlite);
            // Each statement counts toward the work of the request being served, if any.
            db.set_metric_callback(|_| sspr_bus::work::record_db_statement());
            Ok(db)
        }
    }
}

/// Applies the service's pending migrations.
///
/// On PostgreSQL, replicas of a service share its schema and may start together: the whole
/// migration runs in one transaction holding `pg_advisory_xact_lock` on a key derived from the
/// schema name, so one replica migrates while the others wait, then find nothing pending. The
/// lock goes with the transaction (commit, rollback or a dropped connection), so a replica that
/// dies while migrating cannot leave it held. PostgreSQL's DDL is transactional, so a failed
/// migration leaves nothing half-applied. On SQLite a database is one file of one service
/// instance (SQLite is not for replicas), and SQLite's own file lock serialises writers.
pub async fn run_migrations<M: MigratorTrait>(
    service: &str,
    db: &DatabaseConnection,
) -> Result<(), StorageError> {
    let err = |source| StorageError::Migrate {
        service: service.to_owned(),
        source,
    };
    if db.get_database_backend() != DbBackend::Postgres {
        return M::up(db, None).await.map_err(err);
    }
    use sea_orm::TransactionTrait;
    let txn = db.begin().await.map_err(err)?;
    // hashtext gives a stable 32-bit key per schema; the prefix keeps it apart from any other
    // advisory lock an operator might take on the same schema name.
    txn.execute_unprepared(
        "SELECT pg_advisory_xact_lock(hashtext('sspr.migrations:' || current_schema()))",
    )
    .await
    .map_err(err)?;
    M::up(&txn, None).await.map_err(err)?;
    txn.commit().await.map_err(err)
}

/// Begins a transaction that will write. On SQLite it takes the write lock at `BEGIN`
/// (`BEGIN IMMEDIATE`), so it waits for other writers under the busy timeout instead of failing
/// with "database is locked" when a deferred transaction that already read tries to upgrade.
/// On PostgreSQL it is a plain transaction.
pub async fn begin_write(
    db: &DatabaseConnection,
) -> Result<sea_orm::DatabaseTransaction, sea_orm::DbErr> {
    use sea_orm::TransactionTrait;
    db.begin_with_options(sea_orm::TransactionOptions {
        sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}
