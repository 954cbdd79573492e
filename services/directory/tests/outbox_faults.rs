//! Events are never lost nor duplicated when the `sspr-directory` process dies, and the
//! process sets the JetStream streams up with the configured settings. Real binary, real
//! nats-server, real SQLite file kept across restarts.
//!
//! - kill -9 between commit and publish: with `SSPR_EVENTS` deleted the relay cannot get an ack
//!   (no stream answers), so the `user.upserted` row of an `upsert_user` request stays
//!   unpublished in the outbox; the process is killed, the stream restored, the process started
//!   again on the same data directory, and the event is in the stream exactly once.
//! - `SSPR_EVENTS_MAX_AGE_DAYS`, `SSPR_DUPLICATE_WINDOW_SECS`, `SSPR_STREAM_REPLICAS`: a
//!   started process leaves both streams with exactly those settings, and a restart with other
//!   values updates the existing streams.
//! - `SSPR_RETENTION_DAYS`: the retention sweep runs at start and spares unpublished rows.

use std::path::Path;
use std::time::Duration;

use async_nats::jetstream::stream;
use sspr_bus::streams::{self, StreamSettings};
use sspr_bus::subjects::{self, rpc::directory as rpc};
use sspr_bus::{Bus, BusConfig};
use sspr_proto::internal::directory::v1::{
    GetUserRequest, GetUserResponse, UpsertUserRequest, UpsertUserResponse,
};
use sspr_storage::DbSettings;
use sspr_storage::outbox::entity as outbox;
use sspr_storage::sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use sspr_testkit::{NatsServer, RunningService, ServiceBinary, free_port};

const LIMIT: Duration = Duration::from_secs(30);

fn directory() -> ServiceBinary {
    ServiceBinary::new(env!("CARGO_BIN_EXE_sspr-directory"))
}

/// Starts the binary on `data_dir` (kept by the test across restarts) and waits until ready.
async fn start(
    nats: &NatsServer,
    data_dir: &Path,
    vars: &[(&str, &str)],
) -> anyhow::Result<RunningService> {
    let port = free_port()?;
    let mut service = directory()
        .env("SSPR_NATS_URL", nats.url())
        .env("SSPR_DATA_DIR", data_dir)
        .env("SSPR_METRICS_ADDR", format!("127.0.0.1:{port}"))
        .envs(vars.iter().copied())
        .spawn()?;
    service.wait_ready(port, LIMIT).await?;
    // Ready (health) comes before the streams are set up; answering on NATS comes after.
    let bus = Bus::connect(&BusConfig::new(nats.url(), "outbox-faults-probe")).await?;
    let nobody = GetUserRequest {
        user_id: "nobody".into(),
    };
    service
        .eventually(LIMIT, || {
            bus.request::<_, GetUserResponse>(rpc::GET_USER, &nobody)
        })
        .await?;
    Ok(service)
}

/// (unpublished, published) rows of the directory's SQLite outbox with this subject.
async fn outbox_rows(data_dir: &Path, subject: &str) -> anyhow::Result<(usize, usize)> {
    let settings = DbSettings {
        data_dir: data_dir.to_path_buf(),
        database_url: None,
    };
    let db = sspr_storage::connect("directory", &settings).await?;
    let rows = outbox::Entity::find()
        .filter(outbox::Column::Subject.eq(subject))
        .all(&db)
        .await?;
    db.close().await?;
    let unpublished = rows.iter().filter(|r| r.published_at.is_none()).count();
    Ok((unpublished, rows.len() - unpublished))
}

/// How many messages of `SSPR_EVENTS` have `subject`.
async fn in_stream(bus: &Bus, subject: &str) -> anyhow::Result<u64> {
    use futures::TryStreamExt;
    let stream = bus.jetstream().get_stream(subjects::EVENTS_STREAM).await?;
    let mut counts = stream.info_with_subjects(subject).await?;
    let mut n = 0;
    while let Some((s, count)) = counts.try_next().await? {
        if s == subject {
            n += count as u64;
        }
    }
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_committed_before_a_kill_9_is_published_once_after_restart() -> anyhow::Result<()>
{
    let nats = NatsServer::start().await?;
    let data = tempfile::tempdir()?;
    let bus = Bus::connect(&BusConfig::new(nats.url(), "outbox-faults-test")).await?;
    let service = start(&nats, data.path(), &[]).await?;

    // From now on no publish to SSPR_EVENTS is acknowledged.
    bus.jetstream()
        .delete_stream(subjects::EVENTS_STREAM)
        .await?;
    let request = UpsertUserRequest {
        user_id: "crash-user".into(),
        display_name: "Crash".into(),
        locale: "en".into(),
        ..Default::default()
    };
    let mut answered = None;
    for _ in 0..50 {
        match bus
            .request::<_, UpsertUserResponse>(rpc::UPSERT_USER, &request)
            .await
        {
            Ok(r) => {
                answered = Some(r);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    anyhow::ensure!(answered.is_some(), "upsert_user never answered");
    let event = subjects::events::USER_UPSERTED;
    // Give the relay time to try (and fail) a few times.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        outbox_rows(data.path(), event).await?,
        (1, 0),
        "the event is committed and waits unpublished"
    );

    let killed = service.kill().await?;
    assert!(!killed.status.success(), "killed, not exited");

    streams::ensure(bus.jetstream(), &StreamSettings::default()).await?;
    assert_eq!(in_stream(&bus, event).await?, 0);
    let service = start(&nats, data.path(), &[]).await?;
    let deadline = tokio::time::Instant::now() + LIMIT;
    while in_stream(&bus, event).await? == 0 {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the event was not published after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let a wrong second publication show up if there were one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    service.terminate(LIMIT).await?.assert_clean_exit();
    assert_eq!(in_stream(&bus, event).await?, 1, "published exactly once");
    assert_eq!(outbox_rows(data.path(), event).await?, (0, 1));
    Ok(())
}

/// The settings sspr sets, as the server reports them.
fn chosen(c: &stream::Config) -> (Vec<String>, String, String, u64, u64, usize, String) {
    (
        c.subjects.clone(),
        format!("{:?}", c.retention),
        format!("{:?}", c.storage),
        c.max_age.as_secs(),
        c.duplicate_window.as_secs(),
        c.num_replicas,
        format!("{:?}", c.discard),
    )
}

async fn stream_config(bus: &Bus, name: &str) -> anyhow::Result<stream::Config> {
    Ok(bus
        .jetstream()
        .get_stream(name)
        .await?
        .cached_info()
        .config
        .clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_get_the_configured_settings_and_a_change_updates_them() -> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let data = tempfile::tempdir()?;
    let bus = Bus::connect(&BusConfig::new(nats.url(), "stream-settings-test")).await?;
    let events = |days: u64, window: u64| {
        (
            vec!["sspr.events.v1.>".to_owned()],
            "Limits".to_owned(),
            "File".to_owned(),
            days * 86_400,
            window,
            1,
            "Old".to_owned(),
        )
    };
    let delivery = |window: u64| {
        (
            vec!["sspr.delivery.v1.>".to_owned()],
            "WorkQueue".to_owned(),
            "File".to_owned(),
            86_400,
            window,
            1,
            "New".to_owned(),
        )
    };
    for (days, window) in [(3u64, 60u64), (5, 90)] {
        let (d, w) = (days.to_string(), window.to_string());
        let service = start(
            &nats,
            data.path(),
            &[
                ("SSPR_EVENTS_MAX_AGE_DAYS", d.as_str()),
                ("SSPR_DUPLICATE_WINDOW_SECS", w.as_str()),
                ("SSPR_STREAM_REPLICAS", "1"),
            ],
        )
        .await?;
        assert_eq!(
            chosen(&stream_config(&bus, subjects::EVENTS_STREAM).await?),
            events(days, window)
        );
        assert_eq!(
            chosen(&stream_config(&bus, subjects::DELIVERY_STREAM).await?),
            delivery(window)
        );
        service.terminate(LIMIT).await?.assert_clean_exit();
    }
    // A bad value is a configuration error naming the variable.
    directory()
        .settings_only()
        .run_with(&[("SSPR_DUPLICATE_WINDOW_SECS", "0")])
        .await
        .assert_config_error("SSPR_DUPLICATE_WINDOW_SECS");
    Ok(())
}

/// The retention sweep runs at start (`SSPR_RETENTION_DAYS`): a published outbox row older than
/// the retention is gone once the process is up; one still waiting to be published is never
/// purged (the relay publishes it instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retention_sweep_runs_at_start_and_spares_unpublished_rows() -> anyhow::Result<()> {
    use sspr_storage::outbox::{self as ob, OutboxMessage};
    let nats = NatsServer::start().await?;
    let data = tempfile::tempdir()?;
    // First start creates the database; then rows are added while the process is down.
    start(&nats, data.path(), &[])
        .await?
        .terminate(LIMIT)
        .await?
        .assert_clean_exit();
    let settings = DbSettings {
        data_dir: data.path().to_path_buf(),
        database_url: None,
    };
    let db = sspr_storage::connect("directory", &settings).await?;
    let old = chrono::Utc::now() - chrono::Duration::days(4);
    let row = |id: &str| OutboxMessage {
        subject: "sspr.events.v1.test.retention".into(),
        msg_id: id.into(),
        payload: vec![1],
        traceparent: None,
        decoy: false,
    };
    ob::enqueue(&db, row("old-published").decoy(), old).await?;
    ob::enqueue(&db, row("old-unpublished"), old).await?;
    db.close().await?;

    let service = start(&nats, data.path(), &[("SSPR_RETENTION_DAYS", "3")]).await?;
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let (waiting, published) =
            outbox_rows(data.path(), "sspr.events.v1.test.retention").await?;
        if (waiting, published) == (0, 1) {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "outbox rows (unpublished, published) = {:?}",
            (waiting, published)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let db = sspr_storage::connect("directory", &settings).await?;
    let left: Vec<String> = outbox::Entity::find()
        .filter(outbox::Column::Subject.eq("sspr.events.v1.test.retention"))
        .all(&db)
        .await?
        .into_iter()
        .map(|r| r.msg_id)
        .collect();
    db.close().await?;
    assert_eq!(
        left,
        ["old-unpublished"],
        "published by the relay, not purged"
    );
    service.terminate(LIMIT).await?.assert_clean_exit();

    directory()
        .settings_only()
        .run_with(&[("SSPR_RETENTION_DAYS", "0")])
        .await
        .assert_config_error("SSPR_RETENTION_DAYS");
    Ok(())
}
