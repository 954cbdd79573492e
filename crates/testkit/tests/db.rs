//! `TestDb` against real SQLite and (when `SSPR_TEST_POSTGRES_URL` is set) a real PostgreSQL:
//! services connect through `sspr_storage::connect` and each test gets a database of its own.

#![allow(clippy::unwrap_used)]

use sspr_storage::sea_orm::{ConnectionTrait, Statement};
use sspr_testkit::TestDb;

async fn write_and_read(db: &TestDb) {
    let conn = sspr_storage::connect("testkit", &db.settings())
        .await
        .unwrap();
    conn.execute_unprepared("CREATE TABLE probe (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        .await
        .unwrap();
    conn.execute_unprepared("INSERT INTO probe (id, v) VALUES (1, 'x')")
        .await
        .unwrap();
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT COUNT(*) AS n FROM probe",
        ))
        .await
        .unwrap()
        .unwrap();
    let n: i64 = row.try_get("", "n").unwrap();
    assert_eq!(n, 1, "{}", db.backend());
    conn.close().await.unwrap();
}

#[tokio::test]
async fn sqlite_is_fresh_per_test_and_removed_on_drop() {
    let a = TestDb::sqlite().unwrap();
    let b = TestDb::sqlite().unwrap();
    assert_ne!(a.data_dir(), b.data_dir());
    assert!(a.database_url().is_none());
    write_and_read(&a).await;
    // Same table name in another TestDb: no clash.
    write_and_read(&b).await;
    let dir = a.data_dir();
    assert!(dir.join("testkit.db").exists());
    drop(a);
    assert!(!dir.exists());
}

#[tokio::test]
async fn postgres_is_fresh_per_test_and_dropped() {
    let Some(a) = TestDb::postgres().await.unwrap() else {
        return;
    };
    let b = TestDb::postgres().await.unwrap().unwrap();
    assert_eq!(a.backend(), "postgres");
    assert_ne!(a.database_url(), b.database_url());
    write_and_read(&a).await;
    write_and_read(&b).await;

    let url = a.database_url().unwrap().to_owned();
    let name = url.rsplit('/').next().unwrap().to_owned();
    assert!(name.starts_with("sspr_test_"));
    let admin_url = std::env::var(sspr_testkit::TEST_POSTGRES_URL_ENV).unwrap();
    let admin = sspr_storage::sea_orm::Database::connect(admin_url)
        .await
        .unwrap();
    let exists = |name: String| {
        let admin = admin.clone();
        async move {
            admin
                .query_one_raw(Statement::from_string(
                    admin.get_database_backend(),
                    format!("SELECT 1 AS one FROM pg_database WHERE datname = '{name}'"),
                ))
                .await
                .unwrap()
                .is_some()
        }
    };
    assert!(exists(name.clone()).await);
    drop(a); // Drop: best effort, synchronous.
    assert!(!exists(name).await);
    let b_name = b
        .database_url()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    b.cleanup().await.unwrap();
    assert!(!exists(b_name).await);
}

#[tokio::test]
async fn all_covers_each_configured_backend() {
    let dbs = TestDb::all().await.unwrap();
    assert_eq!(dbs[0].backend(), "sqlite");
    let expected = if std::env::var(sspr_testkit::TEST_POSTGRES_URL_ENV).is_ok() {
        2
    } else {
        1
    };
    assert_eq!(dbs.len(), expected);
    for db in &dbs {
        write_and_read(db).await;
    }
}
