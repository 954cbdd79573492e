//! The `idempotency_keys` table on SQLite and (with `SSPR_TEST_POSTGRES_URL`) PostgreSQL:
//! one claim per key, a stale claim taken over once, answers kept, releases and the purge.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sea_orm_migration::prelude::*;
use sspr_bus::idempotency::{Claim, Existing, IdempotencyStore};
use sspr_storage::idempotency::{CreateIdempotencyKeys, IdempotencyTable, purge};
use sspr_testkit::TestDb;

struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateIdempotencyKeys)]
    }
}

const LEASE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn claims_answers_takeovers_and_purge_on_every_backend() -> anyhow::Result<()> {
    for test_db in TestDb::all().await? {
        let backend = test_db.backend();
        let db = sspr_storage::connect("idemtest", &test_db.settings()).await?;
        sspr_storage::run_migrations::<Migrator>("idemtest", &db).await?;
        let table = IdempotencyTable::new(db.clone());

        // One claim per key; a second attempt sees it pending, with its request hash.
        assert_eq!(
            table.claim("l1", "r", "h1", LEASE).await?,
            Claim::Claimed,
            "{backend}"
        );
        assert_eq!(
            table.claim("l1", "r", "h1", LEASE).await?,
            Claim::Existing(Existing::Pending {
                request_hash: "h1".into()
            })
        );
        // Concurrent claims of a new key: exactly one wins.
        let (a, b) = tokio::join!(
            table.claim("l2", "r", "h2", LEASE),
            table.claim("l2", "r", "h2", LEASE)
        );
        let won = [a?, b?].iter().filter(|c| **c == Claim::Claimed).count();
        assert_eq!(won, 1, "{backend}");

        // The answer is kept and returned.
        table.complete("l1", vec![1, 2, 3]).await?;
        assert_eq!(
            table.claim("l1", "r", "h1", LEASE).await?,
            Claim::Existing(Existing::Done {
                request_hash: "h1".into(),
                sealed: vec![1, 2, 3]
            })
        );
        // A release deletes a pending claim only.
        table.release("l1").await?;
        table.release("l2").await?;
        assert!(matches!(
            table.claim("l1", "r", "h1", LEASE).await?,
            Claim::Existing(Existing::Done { .. })
        ));
        assert_eq!(table.claim("l2", "r", "h2", LEASE).await?, Claim::Claimed);

        // A stale claim (its replica died) is taken over by one attempt, not by a different
        // request.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let short = Duration::from_millis(1);
        assert!(matches!(
            table.claim("l2", "r", "other", short).await?,
            Claim::Existing(Existing::Pending { .. })
        ));
        let (a, b) = tokio::join!(
            table.claim("l2", "r", "h2", short),
            table.claim("l2", "r", "h2", LEASE)
        );
        assert_eq!(a?, Claim::Claimed, "{backend}");
        assert!(matches!(b?, Claim::Existing(Existing::Pending { .. })));

        // The purge deletes rows created before the cut-off.
        assert_eq!(
            purge(&db, chrono::Utc::now() - chrono::Duration::hours(1)).await?,
            0
        );
        assert_eq!(
            purge(&db, chrono::Utc::now() + chrono::Duration::seconds(1)).await?,
            2
        );
        assert_eq!(table.claim("l1", "r", "h1", LEASE).await?, Claim::Claimed);
        db.close().await?;
        test_db.cleanup().await?;
    }
    Ok(())
}
