//! Database per service on a shared PostgreSQL: each service gets its own schema with its own
//! migration history, and replicas of one service starting at the same moment all come up.

use sspr_storage::sea_orm::{ConnectionTrait, DbBackend, Statement};
use sspr_testkit::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_share_one_schema() {
    let Some(db) = TestDb::postgres().await.expect("postgres") else {
        eprintln!("SSPR_TEST_POSTGRES_URL unset: skipped");
        return;
    };
    let settings = db.settings();
    let connects = (0..6).map(|_| {
        let settings = settings.clone();
        tokio::spawn(async move { sspr_storage::connect("replicated", &settings).await })
    });
    for joined in futures::future::join_all(connects).await {
        let conn = joined.expect("task").expect("every replica connects");
        let row = conn
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT current_schema()",
            ))
            .await
            .expect("query")
            .expect("a row");
        let schema: String = row.try_get_by_index(0).expect("schema name");
        assert_eq!(schema, "sspr_replicated");
    }
    db.cleanup().await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_on_one_database_never_see_each_others_tables() {
    let Some(db) = TestDb::postgres().await.expect("postgres") else {
        eprintln!("SSPR_TEST_POSTGRES_URL unset: skipped");
        return;
    };
    let settings = db.settings();
    let a = sspr_storage::connect("alpha", &settings)
        .await
        .expect("alpha");
    let b = sspr_storage::connect("beta", &settings)
        .await
        .expect("beta");
    a.execute_unprepared("CREATE TABLE things (id INT)")
        .await
        .expect("alpha table");
    let seen_by_b = b
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'things' AND table_schema = current_schema()",
        ))
        .await
        .expect("query")
        .expect("row");
    let n: i64 = seen_by_b.try_get_by_index(0).expect("count");
    assert_eq!(n, 0, "beta must not see alpha's table in its schema");
    b.execute_unprepared("CREATE TABLE things (id INT)")
        .await
        .expect("beta can have a table of the same name");
    drop((a, b));
    db.cleanup().await.expect("cleanup");
}
