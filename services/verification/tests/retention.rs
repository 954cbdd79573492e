//! Retention (`SSPR_RETENTION_DAYS`): expired reset sessions and codes, processed-event ids and
//! published outbox rows older than the retention are purged; recent ones, live ones and
//! unpublished outbox rows stay. Manual clock, real SQLite and PostgreSQL.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, DatabaseConnection, EntityTrait};
use sspr_clock::{ManualClock, SharedClock};
use sspr_storage::outbox::{self, OutboxMessage};
use sspr_testkit::TestDb;
use sspr_verification::adapters::entities::{code, processed_event, reset_session};
use sspr_verification::adapters::migration::Migrator;

async fn session(db: &DatabaseConnection, id: &str, at: DateTime<Utc>) -> anyhow::Result<()> {
    reset_session::ActiveModel {
        token_hash: Set(id.to_owned()),
        flow_id: Set(format!("flow-{id}")),
        user_id: Set("u".into()),
        locale: Set("en".into()),
        decoy: Set(false),
        methods: Set("[]".into()),
        methods_required: Set(1),
        verified_method_ids: Set("[]".into()),
        status: Set("active".into()),
        created_at: Set(at),
        expires_at: Set(at + Duration::minutes(10)),
        question_challenge: Set(String::new()),
        verified_at: Set(None),
        completed_by_request: Set(None),
        completing_since: Set(None),
    }
    .insert(db)
    .await?;
    Ok(())
}

async fn a_code(db: &DatabaseConnection, id: &str, at: DateTime<Utc>) -> anyhow::Result<()> {
    code::ActiveModel {
        id: Set(id.to_owned()),
        purpose: Set("reset".into()),
        user_id: Set("u".into()),
        method_id: Set("m".into()),
        flow_id: Set("f".into()),
        code_hash: Set("00".into()),
        attempts_left: Set(5),
        created_at: Set(at),
        expires_at: Set(at + Duration::minutes(10)),
        used_at: Set(None),
        voided: Set(false),
        delivery_id: Set(format!("d-{id}")),
        key_id: Set("0".into()),
        delivery_state: Set("sent".into()),
        request_tag: Set(None),
        used_by_request: Set(None),
    }
    .insert(db)
    .await?;
    Ok(())
}

async fn processed(db: &DatabaseConnection, id: &str, at: DateTime<Utc>) -> anyhow::Result<()> {
    processed_event::ActiveModel {
        event_id: Set(id.to_owned()),
        processed_at: Set(at),
    }
    .insert(db)
    .await?;
    Ok(())
}

async fn outbox_row(
    db: &DatabaseConnection,
    id: &str,
    at: DateTime<Utc>,
    published: bool,
) -> anyhow::Result<()> {
    let m = OutboxMessage {
        subject: "sspr.events.v1.test.x".into(),
        msg_id: id.into(),
        payload: vec![1],
        traceparent: None,
        decoy: false,
    };
    // A decoy stand-in is stored as published at its creation time.
    outbox::enqueue(db, if published { m.decoy() } else { m }, at).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_sessions_codes_processed_ids_and_outbox_rows_are_purged() -> anyhow::Result<()> {
    for db in TestDb::all().await? {
        let conn = sspr_storage::connect("verification", &db.settings()).await?;
        sspr_storage::run_migrations::<Migrator>("verification", &conn).await?;
        let manual = ManualClock::new(Utc::now());
        let clock: SharedClock = Arc::new(manual.clone());

        let then = clock.now();
        session(&conn, "old", then).await?;
        a_code(&conn, "old", then).await?;
        processed(&conn, "old", then).await?;
        outbox_row(&conn, "old-published", then, true).await?;
        outbox_row(&conn, "old-unpublished", then, false).await?;

        manual.advance(Duration::days(8));
        let recent = clock.now() - Duration::days(6);
        session(&conn, "recent", recent).await?;
        a_code(&conn, "recent", recent).await?;
        processed(&conn, "recent", recent).await?;
        outbox_row(&conn, "recent-published", recent, true).await?;
        session(&conn, "live", clock.now()).await?;
        a_code(&conn, "live", clock.now()).await?;

        let deleted = sspr_runtime::retention::purge_once(
            &conn,
            &clock,
            7,
            sspr_verification::retention::purges,
        )
        .await?;
        assert_eq!(deleted, 4, "{}", db.backend());

        let sessions: Vec<String> = reset_session::Entity::find()
            .all(&conn)
            .await?
            .into_iter()
            .map(|r| r.token_hash)
            .collect();
        assert_eq!(sorted(sessions), ["live", "recent"]);
        let codes: Vec<String> = code::Entity::find()
            .all(&conn)
            .await?
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(sorted(codes), ["live", "recent"]);
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
        assert_eq!(sorted(rows), ["old-unpublished", "recent-published"]);
        drop(conn);
        db.cleanup().await?;
    }
    Ok(())
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// A session left `completing` by a CompleteReset whose replica died (between its claim and the
/// directory's answer) is claimed again once the claim is older than the lease, so the client's
/// retry can finish the reset; a fresh claim is never taken over. Both backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_completion_claim_is_taken_over_after_the_lease() -> anyhow::Result<()> {
    use sea_orm::{ColumnTrait, QueryFilter};
    use sspr_verification::adapters::store::Store;
    for db in TestDb::all().await? {
        let conn = sspr_storage::connect("verification", &db.settings()).await?;
        sspr_storage::run_migrations::<Migrator>("verification", &conn).await?;
        let store = Store::new(conn.clone());
        let now = Utc::now();
        let lease = Duration::seconds(45);
        session(&conn, "claimed", now).await?;
        assert!(
            store.claim_completion("claimed", now, lease).await?,
            "an active session is claimed"
        );
        assert!(
            !store
                .claim_completion("claimed", now + Duration::seconds(10), lease)
                .await?,
            "a claim within its lease is held: {}",
            db.backend()
        );
        assert!(
            store
                .claim_completion("claimed", now + Duration::seconds(46), lease)
                .await?,
            "a claim older than the lease is taken over: {}",
            db.backend()
        );
        let row = reset_session::Entity::find()
            .filter(reset_session::Column::TokenHash.eq("claimed"))
            .one(&conn)
            .await?
            .ok_or_else(|| anyhow::anyhow!("session gone"))?;
        assert_eq!(row.status, "completing");
        assert!(!store.claim_completion("nope", now, lease).await?);
        drop(conn);
        db.cleanup().await?;
    }
    Ok(())
}
