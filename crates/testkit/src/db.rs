//! A fresh database per test: a SQLite data directory, or a PostgreSQL database of its own.
//!
//! Services given the same [`DbSettings`] keep their tables apart (one SQLite file or one
//! PostgreSQL schema per service), so one `TestDb` serves every service of a test.
//! Invariants: no two `TestDb`s share anything (new temp dir, or a new database named
//! `sspr_test_<uuid>`); the temp dir is removed and the PostgreSQL database dropped (best effort)
//! when the `TestDb` is dropped. The PostgreSQL URL is never printed (it may hold a password).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use sspr_storage::DbSettings;
use sspr_storage::sea_orm::{ConnectOptions, ConnectionTrait, Database};
use tempfile::TempDir;

/// Environment variable with an admin URL of a PostgreSQL server for tests, e.g.
/// `postgres://postgres@127.0.0.1:5432/postgres`.
pub const TEST_POSTGRES_URL_ENV: &str = "SSPR_TEST_POSTGRES_URL";

/// A database for one test; cleaned up on drop.
#[derive(Debug)]
pub struct TestDb {
    settings: DbSettings,
    _data_dir: TempDir,
    postgres: Option<PostgresDb>,
}

struct PostgresDb {
    /// Admin URL to connect to for dropping the database (never printed).
    admin_url: String,
    name: String,
}

impl TestDb {
    /// SQLite files in a new temporary directory.
    pub fn sqlite() -> anyhow::Result<TestDb> {
        let dir = data_dir()?;
        Ok(TestDb {
            settings: DbSettings {
                data_dir: dir.path().to_path_buf(),
                database_url: None,
            },
            _data_dir: dir,
            postgres: None,
        })
    }

    /// A new, empty PostgreSQL database on the server named by `SSPR_TEST_POSTGRES_URL`;
    /// `Ok(None)` (and a note on stderr) when that variable is unset, so a test can skip its
    /// PostgreSQL variant. An error when the variable is set but the server cannot be used.
    pub async fn postgres() -> anyhow::Result<Option<TestDb>> {
        let Some(admin_url) = std::env::var(TEST_POSTGRES_URL_ENV)
            .ok()
            .filter(|u| !u.is_empty())
        else {
            eprintln!("{TEST_POSTGRES_URL_ENV} unset: PostgreSQL variant skipped");
            return Ok(None);
        };
        let name = format!("sspr_test_{}", uuid::Uuid::new_v4().simple());
        let admin = connect_admin(&admin_url).await?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .with_context(|| format!("creating test database {name}"))?;
        let _ = admin.close().await;
        let url = with_database(&admin_url, &name)?;
        // Services on PostgreSQL still get a data dir (the process contract always has one).
        let dir = data_dir()?;
        Ok(Some(TestDb {
            settings: DbSettings {
                data_dir: dir.path().to_path_buf(),
                database_url: Some(url),
            },
            _data_dir: dir,
            postgres: Some(PostgresDb { admin_url, name }),
        }))
    }

    /// SQLite, plus PostgreSQL when `SSPR_TEST_POSTGRES_URL` is set: run a test body once per
    /// entry to cover both backends.
    pub async fn all() -> anyhow::Result<Vec<TestDb>> {
        let mut dbs = vec![TestDb::sqlite()?];
        dbs.extend(TestDb::postgres().await?);
        Ok(dbs)
    }

    /// The settings to give services (`SSPR_DATA_DIR` / `SSPR_DATABASE_URL`).
    pub fn settings(&self) -> DbSettings {
        self.settings.clone()
    }

    /// The data directory (`SSPR_DATA_DIR`).
    pub fn data_dir(&self) -> PathBuf {
        self.settings.data_dir.clone()
    }

    /// The PostgreSQL URL of this test's database (`SSPR_DATABASE_URL`), if on PostgreSQL.
    pub fn database_url(&self) -> Option<&str> {
        self.settings.database_url.as_deref()
    }

    /// `"sqlite"` or `"postgres"`, for test messages.
    pub fn backend(&self) -> &'static str {
        if self.postgres.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }

    /// Drops the PostgreSQL database now, reporting errors (Drop does the same silently).
    pub async fn cleanup(mut self) -> anyhow::Result<()> {
        match self.postgres.take() {
            Some(pg) => pg.drop_database().await,
            None => Ok(()),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(pg) = self.postgres.take() else {
            return;
        };
        // Drop may run inside a runtime (cannot block on it) or outside any: use a thread with a
        // runtime of its own, and wait for it so the database is gone when the test ends.
        let dropper = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot drop test database {}: {e}", pg.name);
                    return;
                }
            };
            if let Err(e) = runtime.block_on(pg.drop_database()) {
                eprintln!("cannot drop test database: {e:#}");
            }
        });
        let _ = dropper.join();
    }
}

impl std::fmt::Debug for PostgresDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The admin URL may hold a password.
        f.debug_struct("PostgresDb")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PostgresDb {
    async fn drop_database(self) -> anyhow::Result<()> {
        let admin = connect_admin(&self.admin_url).await?;
        // FORCE (PostgreSQL >= 13) disconnects services that still hold pooled connections.
        admin
            .execute_unprepared(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .await
            .with_context(|| format!("dropping test database {}", self.name))?;
        let _ = admin.close().await;
        Ok(())
    }
}

fn data_dir() -> anyhow::Result<TempDir> {
    tempfile::Builder::new()
        .prefix("sspr-data-")
        .tempdir()
        .context("creating a temp data dir")
}

async fn connect_admin(
    admin_url: &str,
) -> anyhow::Result<sspr_storage::sea_orm::DatabaseConnection> {
    let mut options = ConnectOptions::new(admin_url.to_owned());
    options
        .max_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .sqlx_logging(false);
    Database::connect(options)
        .await
        .with_context(|| format!("connecting to PostgreSQL ({TEST_POSTGRES_URL_ENV})"))
}

/// `postgres://u@h:5432/postgres?x=y` with database `name` -> `postgres://u@h:5432/name?x=y`.
fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base
        .find("://")
        .map(|i| i + 3)
        .with_context(|| format!("{TEST_POSTGRES_URL_ENV} is not a URL"))?;
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1").unwrap(),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgresql://u:p@h/db?sslmode=disable", "t2").unwrap(),
            "postgresql://u:p@h/t2?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:1", "t3").unwrap(),
            "postgres://h:1/t3"
        );
        assert!(with_database("nonsense", "t").is_err());
    }
}
