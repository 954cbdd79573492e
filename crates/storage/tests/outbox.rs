//! The outbox relay under faults, against a real nats-server and real databases (SQLite, and
//! PostgreSQL when `SSPR_TEST_POSTGRES_URL` is set):
//! - NATS down while rows are committed: nothing is marked published, and once NATS is back the
//!   rows reach the stream exactly once each, in insertion order;
//! - published but not yet marked (a crash between ack and mark): the next drain republishes
//!   the row and the stream's duplicate window drops the copy;
//! - a batch is pipelined (sent whole, then acked) and keeps its order; a row no stream takes
//!   fails alone;
//! - retention: published rows older than the cutoff go in batches; unpublished rows stay
//!   whatever their age.

use std::time::Duration;

use sspr_bus::streams::{self, StreamSettings};
use sspr_bus::{Bus, BusConfig, subjects};
use sspr_storage::outbox::{self, OutboxMessage, OutboxRelay, OutboxSignal, entity};
use sspr_storage::sea_orm::sea_query::Expr;
use sspr_storage::sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
};
use sspr_storage::sea_orm_migration::{MigrationTrait, MigratorTrait};
use sspr_testkit::{NatsServer, TestDb};
use tokio_util::sync::CancellationToken;

struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(outbox::CreateOutbox)]
    }
}

async fn database(db: &TestDb) -> anyhow::Result<DatabaseConnection> {
    let conn = sspr_storage::connect("outboxtest", &db.settings()).await?;
    sspr_storage::run_migrations::<Migrator>("outboxtest", &conn).await?;
    Ok(conn)
}

fn message(subject: &str, msg_id: &str) -> OutboxMessage {
    OutboxMessage {
        subject: subject.to_owned(),
        msg_id: msg_id.to_owned(),
        payload: msg_id.as_bytes().to_vec(),
        traceparent: None,
        decoy: false,
    }
}

fn published_total(service: &str) -> u64 {
    sspr_telemetry::metrics::catalogue()
        .outbox_published
        .get(&[service])
}

async fn unpublished(conn: &DatabaseConnection) -> anyhow::Result<u64> {
    Ok(entity::Entity::find()
        .filter(entity::Column::PublishedAt.is_null())
        .count(conn)
        .await?)
}

/// Every message of `SSPR_EVENTS` as (subject, Nats-Msg-Id), in stream order.
async fn stream_messages(bus: &Bus) -> anyhow::Result<Vec<(String, String)>> {
    let mut stream = bus.jetstream().get_stream(subjects::EVENTS_STREAM).await?;
    let info = stream.info().await?.state.clone();
    let mut out = Vec::new();
    if info.messages == 0 {
        return Ok(out);
    }
    for seq in info.first_sequence..=info.last_sequence {
        let m = stream.get_raw_message(seq).await?;
        let id = m
            .headers
            .get("Nats-Msg-Id")
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        out.push((m.subject.to_string(), id));
    }
    Ok(out)
}

async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await? {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_committed_while_nats_is_down_are_published_in_order_once_it_is_back()
-> anyhow::Result<()> {
    for db in TestDb::all().await? {
        let mut nats = NatsServer::start().await?;
        let bus = Bus::connect(&BusConfig::new(nats.url(), "outbox-test")).await?;
        streams::ensure(bus.jetstream(), &StreamSettings::default()).await?;
        let conn = database(&db).await?;

        // Its own label, so the other tests of this binary do not move its series.
        let service = format!("outbox-down-{}", db.backend());
        let published_before = published_total(&service);

        nats.stop().await?;
        let ids: Vec<String> = (0..6).map(|i| format!("event-{i}")).collect();
        let a_minute_ago = chrono::Utc::now() - chrono::Duration::seconds(60);
        for (i, id) in ids.iter().enumerate() {
            let subject = format!("sspr.events.v1.test.n{}", i % 3);
            outbox::enqueue(&conn, message(&subject, id), a_minute_ago).await?;
        }
        let signal = OutboxSignal::default();
        let stop = CancellationToken::new();
        let relay = tokio::spawn(
            OutboxRelay::new(&service, conn.clone(), bus.clone(), signal.clone()).run(stop.clone()),
        );
        signal.notify();
        // Long enough for several failed attempts (ack time-outs, retries).
        tokio::time::sleep(Duration::from_secs(8)).await;
        assert_eq!(
            unpublished(&conn).await?,
            6,
            "{}: nothing is marked published while NATS is down",
            db.backend()
        );
        let metrics = sspr_telemetry::metrics::catalogue();
        assert_eq!(
            metrics.outbox_backlog.get(&[&service]),
            6,
            "{}: the relay samples its backlog while it cannot publish",
            db.backend()
        );
        assert!(
            metrics.outbox_oldest_age.get(&[&service]) >= 60,
            "{}: the oldest row's age",
            db.backend()
        );
        assert_eq!(published_total(&service), published_before);

        nats.restart().await?;
        eventually("every row published", Duration::from_secs(60), || async {
            Ok(unpublished(&conn).await? == 0)
        })
        .await?;
        eventually(
            "the backlog sampled empty",
            Duration::from_secs(10),
            || async {
                Ok(metrics.outbox_backlog.get(&[&service]) == 0
                    && metrics.outbox_oldest_age.get(&[&service]) == 0)
            },
        )
        .await?;
        assert_eq!(
            published_total(&service),
            published_before + 6,
            "{}: one count per published row",
            db.backend()
        );
        let seen = stream_messages(&bus).await?;
        let seen_ids: Vec<&str> = seen.iter().map(|(_, id)| id.as_str()).collect();
        assert_eq!(
            seen_ids,
            ids.iter().map(String::as_str).collect::<Vec<_>>(),
            "{}: each row exactly once, in insertion order",
            db.backend()
        );
        stop.cancel();
        relay.await?;
        db.cleanup().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_published_but_not_marked_is_dropped_as_a_duplicate() -> anyhow::Result<()> {
    for db in TestDb::all().await? {
        let nats = NatsServer::start().await?;
        let bus = Bus::connect(&BusConfig::new(nats.url(), "outbox-test")).await?;
        streams::ensure(bus.jetstream(), &StreamSettings::default()).await?;
        let conn = database(&db).await?;
        outbox::enqueue(
            &conn,
            message("sspr.events.v1.test.once", "event-once"),
            chrono::Utc::now(),
        )
        .await?;
        let relay = OutboxRelay::new(
            "outboxtest",
            conn.clone(),
            bus.clone(),
            OutboxSignal::default(),
        );
        assert_eq!(relay.drain_once().await?, 1);
        // The crash window: the stream has the message, the row does not say so.
        entity::Entity::update_many()
            .col_expr(
                entity::Column::PublishedAt,
                Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
            )
            .exec(&conn)
            .await?;
        assert_eq!(unpublished(&conn).await?, 1);
        assert_eq!(relay.drain_once().await?, 1, "the row is published again");
        assert_eq!(unpublished(&conn).await?, 0, "and marked this time");
        let seen = stream_messages(&bus).await?;
        assert_eq!(
            seen,
            vec![(
                "sspr.events.v1.test.once".to_owned(),
                "event-once".to_owned()
            )],
            "{}: the duplicate window keeps one copy",
            db.backend()
        );
        db.cleanup().await?;
    }
    Ok(())
}

/// The relay sends a whole batch before it awaits the acks (one round trip per batch, not per
/// row) and marks what reached the stream in one statement: order is kept across batches, and
/// a row no stream takes fails alone, staying unpublished while the rest are marked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_batch_keeps_order_and_a_refused_row_stays_alone() -> anyhow::Result<()> {
    for db in TestDb::all().await? {
        let nats = NatsServer::start().await?;
        let bus = Bus::connect(&BusConfig::new(nats.url(), "outbox-test")).await?;
        streams::ensure(bus.jetstream(), &StreamSettings::default()).await?;
        let conn = database(&db).await?;
        // 300 rows: more than one batch (256); row 100 goes to a subject no stream holds.
        let mut want = Vec::new();
        for i in 0..300 {
            let (subject, id) = if i == 100 {
                ("sspr.nostream.v1.test".to_owned(), format!("event-{i}"))
            } else {
                (
                    format!("sspr.events.v1.test.n{}", i % 7),
                    format!("event-{i}"),
                )
            };
            outbox::enqueue(&conn, message(&subject, &id), chrono::Utc::now()).await?;
            if i != 100 {
                want.push((subject, id));
            }
        }
        let relay = OutboxRelay::new(
            "outboxbatch",
            conn.clone(),
            bus.clone(),
            OutboxSignal::default(),
        );
        let before = published_total("outboxbatch");
        let first = relay.drain_once().await;
        assert!(first.is_err(), "the refused row fails the pass: {first:?}");
        assert_eq!(
            unpublished(&conn).await?,
            300 - 255,
            "{}: the 255 others of the first batch are marked",
            db.backend()
        );
        assert_eq!(published_total("outboxbatch") - before, 255);
        // Next passes: the refused row fails again on its own; the rest go.
        let second = relay.drain_once().await;
        assert!(second.is_err(), "{second:?}");
        assert_eq!(unpublished(&conn).await?, 1, "only the refused row is left");
        let seen = stream_messages(&bus).await?;
        assert_eq!(seen, want, "{}: every row once, in order", db.backend());
        db.cleanup().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_published_rows_are_purged_and_unpublished_ones_stay() -> anyhow::Result<()> {
    for db in TestDb::all().await? {
        let conn = database(&db).await?;
        let now = chrono::Utc::now();
        let days = |d: i64| now - chrono::Duration::days(d);
        // Published 10 days ago (decoy stand-ins are stored as published at their creation).
        for i in 0..5 {
            let m = message("sspr.events.v1.test.old", &format!("old-{i}")).decoy();
            outbox::enqueue(&conn, m, days(10)).await?;
        }
        // Never published, 10 days old: must stay.
        outbox::enqueue(
            &conn,
            message("sspr.events.v1.test.stuck", "stuck"),
            days(10),
        )
        .await?;
        // Published yesterday: must stay.
        let recent = message("sspr.events.v1.test.recent", "recent").decoy();
        outbox::enqueue(&conn, recent, days(1)).await?;

        let deleted = outbox::purge_published(&conn, days(7), 2).await?;
        assert_eq!(
            deleted,
            5,
            "{}: old published rows, in batches of 2",
            db.backend()
        );
        let left: Vec<String> = entity::Entity::find()
            .order_by_asc(entity::Column::Id)
            .all(&conn)
            .await?
            .into_iter()
            .map(|r| r.msg_id)
            .collect();
        assert_eq!(left, vec!["stuck".to_owned(), "recent".to_owned()]);
        assert_eq!(outbox::purge_published(&conn, days(7), 2).await?, 0);
        db.cleanup().await?;
    }
    Ok(())
}
