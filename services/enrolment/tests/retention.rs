//! Retention (`SSPR_RETENTION_DAYS`): processed-event ids and published outbox rows older than
//! the retention are purged, recent ones stay. Manual clock, real SQLite and PostgreSQL.

use std::sync::Arc;

use chrono::{Duration, Utc};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait};
use sspr_clock::{ManualClock, SharedClock};
use sspr_enrolment::adapters::entities::processed_event;
use sspr_enrolment::adapters::migration::Migrator;
use sspr_storage::outbox::{self, OutboxMessage};
use sspr_testkit::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_processed_ids_and_published_outbox_rows_are_purged() -> anyhow::Result<()> {
    for db in TestDb::all().await? {
        let conn = sspr_storage::connect("enrolment", &db.settings()).await?;
        sspr_storage::run_migrations::<Migrator>("enrolment", &conn).await?;
        let manual = ManualClock::new(Utc::now());
        let clock: SharedClock = Arc::new(manual.clone());
        let row = |id: &str| OutboxMessage {
            subject: "sspr.events.v1.test.x".into(),
            msg_id: id.into(),
            payload: vec![1],
            traceparent: None,
            decoy: false,
        };
        for (id, days_ago) in [("old", 8), ("recent", 6)] {
            let at = clock.now() - Duration::days(days_ago);
            processed_event::ActiveModel {
                event_id: Set(id.to_owned()),
                processed_at: Set(at),
            }
            .insert(&conn)
            .await?;
            outbox::enqueue(&conn, row(id).decoy(), at).await?;
        }
        manual.advance(Duration::hours(1));
        let deleted = sspr_runtime::retention::purge_once(
            &conn,
            &clock,
            7,
            sspr_enrolment::retention::purges,
        )
        .await?;
        assert_eq!(deleted, 2, "{}", db.backend());
        let ids: Vec<String> = processed_event::Entity::find()
            .all(&conn)
            .await?
            .into_iter()
            .map(|r| r.event_id)
            .collect();
        assert_eq!(ids, ["recent"]);
        let rows: Vec<String> = outbox::entity::Entity::find()
            .all(&conn)
            .await?
            .into_iter()
            .map(|r| r.msg_id)
            .collect();
        assert_eq!(rows, ["recent"]);
        drop(conn);
        db.cleanup().await?;
    }
    Ok(())
}
