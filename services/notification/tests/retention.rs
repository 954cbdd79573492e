//! Retention (`SSPR_RETENTION_DAYS`): delivery records (dead letters included), processed-event
//! ids and published outbox rows older than the retention are purged; recent ones stay.
//! Manual clock, real SQLite and PostgreSQL.

use std::sync::Arc;

use chrono::{Duration, Utc};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait};
use sspr_clock::{ManualClock, SharedClock};
use sspr_notification::adapters::db::{dead_letters, entity as delivery, processed};
use sspr_notification::adapters::migration::Migrator;
use sspr_testkit::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// `..Default::default()` keeps the inserts valid when the table gains nullable columns.
#[allow(clippy::needless_update)]
async fn old_deliveries_dead_letters_and_processed_ids_are_purged() -> anyhow::Result<()> {
    for db in TestDb::all().await? {
        let conn = sspr_storage::connect("notification", &db.settings()).await?;
        sspr_storage::run_migrations::<Migrator>("notification", &conn).await?;
        let manual = ManualClock::new(Utc::now());
        let clock: SharedClock = Arc::new(manual.clone());
        for (id, status, days_ago) in [
            ("old-sent", "sent", 9),
            ("old-dead", "failed", 8),
            ("recent-sent", "sent", 6),
            ("recent-dead", "failed", 1),
        ] {
            let at = clock.now() - Duration::days(days_ago);
            delivery::ActiveModel {
                delivery_id: Set(id.to_owned()),
                kind: Set("email".into()),
                purpose: Set("reset".into()),
                status: Set(status.into()),
                attempts: Set(1),
                user_id: Set("u".into()),
                flow_id: Set("f".into()),
                created_at: Set(at),
                updated_at: Set(at),
                last_error: Set(None),
                ..Default::default()
            }
            .insert(&conn)
            .await?;
            if status == "failed" {
                dead_letters::ActiveModel {
                    delivery_id: Set(id.to_owned()),
                    channel: Set("email".into()),
                    purpose: Set("reset".into()),
                    user_id: Set("u".into()),
                    flow_id: Set("f".into()),
                    method_id: Set("m".into()),
                    reason: Set("rejected".into()),
                    attempts: Set(1),
                    created_at: Set(at),
                }
                .insert(&conn)
                .await?;
            }
            processed::ActiveModel {
                event_id: Set(id.to_owned()),
                user_id: Set("u".into()),
                mails: Set(1),
                processed_at: Set(at),
            }
            .insert(&conn)
            .await?;
        }
        let deleted = sspr_runtime::retention::purge_once(
            &conn,
            &clock,
            7,
            sspr_notification::retention::purges,
        )
        .await?;
        assert_eq!(deleted, 5, "{}", db.backend());
        let mut left: Vec<String> = delivery::Entity::find()
            .all(&conn)
            .await?
            .into_iter()
            .map(|r| r.delivery_id)
            .collect();
        left.sort();
        assert_eq!(left, ["recent-dead", "recent-sent"]);
        let mut ids: Vec<String> = processed::Entity::find()
            .all(&conn)
            .await?
            .into_iter()
            .map(|r| r.event_id)
            .collect();
        ids.sort();
        assert_eq!(ids, ["recent-dead", "recent-sent"]);
        let dead: Vec<String> = dead_letters::Entity::find()
            .all(&conn)
            .await?
            .into_iter()
            .map(|r| r.delivery_id)
            .collect();
        assert_eq!(dead, ["recent-dead"]);
        manual.advance(Duration::days(2));
        let later = sspr_runtime::retention::purge_once(
            &conn,
            &clock,
            7,
            sspr_notification::retention::purges,
        )
        .await?;
        assert_eq!(later, 2, "recent-sent is now older than 7 days");
        drop(conn);
        db.cleanup().await?;
    }
    Ok(())
}
