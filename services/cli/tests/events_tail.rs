//! `sspr events tail` against a real nats-server: events published on `SSPR_EVENTS` come out
//! as one JSON line each, decoded by subject, with subject, stream sequence and time; subject
//! filters, `--since`, new-only by default, durable consumers that continue where they stopped,
//! `--limit`, and the `sspr` binary itself.

use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use prost::Message;
use sspr_bus::streams::{self, StreamSettings};
use sspr_bus::subjects::events;
use sspr_bus::{Bus, BusConfig};
use sspr_cli::events::{TailOptions, tail};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::events::v1::{CodeIssued, EventMeta, UserDeleted, UserUpserted};
use sspr_testkit::{NatsServer, ServiceBinary};

fn meta(user: &str) -> (String, Option<EventMeta>) {
    let id = uuid::Uuid::now_v7().to_string();
    let meta = EventMeta {
        event_id: id.clone(),
        occurred_at: Some(sspr_proto::time::timestamp(chrono::Utc::now())),
        user_id: user.into(),
        flow_id: String::new(),
        source: "test".into(),
        actor: String::new(),
    };
    (id, Some(meta))
}

async fn publish(bus: &Bus, subject: &str, id: &str, body: Vec<u8>) -> anyhow::Result<()> {
    bus.publish_durable(subject, id, HeaderMap::new(), Bytes::from(body))
        .await?;
    Ok(())
}

/// Publishes user.upserted, code.issued, user.deleted; returns their event ids.
async fn three_events(bus: &Bus) -> anyhow::Result<Vec<String>> {
    let (a, m) = meta("alice");
    publish(
        bus,
        events::USER_UPSERTED,
        &a,
        UserUpserted {
            meta: m,
            ..Default::default()
        }
        .encode_to_vec(),
    )
    .await?;
    let (b, m) = meta("alice");
    publish(
        bus,
        events::CODE_ISSUED,
        &b,
        CodeIssued {
            meta: m,
            method_id: "m1".into(),
            kind: MethodKind::Email as i32,
            delivery_id: "d1".into(),
            ..Default::default()
        }
        .encode_to_vec(),
    )
    .await?;
    let (c, m) = meta("bob");
    publish(
        bus,
        events::USER_DELETED,
        &c,
        UserDeleted { meta: m }.encode_to_vec(),
    )
    .await?;
    Ok(vec![a, b, c])
}

async fn setup() -> anyhow::Result<(NatsServer, Bus)> {
    let nats = NatsServer::start().await?;
    let bus = Bus::connect(&BusConfig::new(nats.url(), "events-tail-test")).await?;
    streams::ensure(bus.jetstream(), &StreamSettings::default()).await?;
    Ok((nats, bus))
}

/// Runs `tail` until `limit` events or `idle` passed; returns the parsed lines.
async fn run(
    bus: &Bus,
    options: TailOptions,
    idle: Duration,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut lines = Vec::new();
    tail(
        bus.jetstream(),
        &options,
        |l| lines.push(l),
        tokio::time::sleep(idle),
    )
    .await?;
    lines.iter().map(|l| Ok(serde_json::from_str(l)?)).collect()
}

fn an_hour_ago() -> Option<chrono::DateTime<chrono::Utc>> {
    Some(chrono::Utc::now() - chrono::Duration::hours(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prints_each_event_decoded_with_subject_sequence_and_time() -> anyhow::Result<()> {
    let (_nats, bus) = setup().await?;
    let ids = three_events(&bus).await?;
    let lines = run(
        &bus,
        TailOptions {
            since: an_hour_ago(),
            limit: Some(3),
            ..Default::default()
        },
        Duration::from_secs(20),
    )
    .await?;
    assert_eq!(lines.len(), 3);
    let subjects: Vec<&str> = lines
        .iter()
        .map(|l| l["subject"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        subjects,
        [
            events::USER_UPSERTED,
            events::CODE_ISSUED,
            events::USER_DELETED
        ]
    );
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["stream_sequence"], i as u64 + 1);
        assert_eq!(line["event"]["meta"]["event_id"], ids[i].as_str());
        let time = line["time"].as_str().unwrap_or_default();
        assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
    }
    assert_eq!(lines[1]["message"], "sspr.events.v1.CodeIssued");
    assert_eq!(lines[1]["event"]["kind"], "METHOD_KIND_EMAIL");
    assert_eq!(lines[1]["event"]["delivery_id"], "d1");
    assert_eq!(lines[2]["event"]["meta"]["user_id"], "bob");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_filters_new_only_and_durable_consumers() -> anyhow::Result<()> {
    let (_nats, bus) = setup().await?;
    three_events(&bus).await?;

    // A wildcard within the events: only the code event, nothing more within the wait.
    let code = run(
        &bus,
        TailOptions {
            subjects: vec!["sspr.events.v1.code.*".into()],
            since: an_hour_ago(),
            limit: Some(2),
            ..Default::default()
        },
        Duration::from_secs(2),
    )
    .await?;
    let subjects: Vec<&str> = code
        .iter()
        .map(|l| l["subject"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(subjects, [events::CODE_ISSUED]);

    // Without --since: only what is published after the start.
    let bus2 = bus.clone();
    let new_only = tokio::spawn(async move {
        run(
            &bus2,
            TailOptions {
                limit: Some(1),
                ..Default::default()
            },
            Duration::from_secs(20),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (id, m) = meta("carol");
    publish(
        &bus,
        events::USER_DELETED,
        &id,
        UserDeleted { meta: m }.encode_to_vec(),
    )
    .await?;
    let lines = new_only.await??;
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["stream_sequence"], 4);
    assert_eq!(lines[0]["event"]["meta"]["event_id"], id.as_str());

    // A durable consumer continues where the previous run stopped.
    let durable = |limit| TailOptions {
        durable: Some("tail-test".into()),
        since: an_hour_ago(),
        limit: Some(limit),
        ..Default::default()
    };
    let first = run(&bus, durable(2), Duration::from_secs(20)).await?;
    let second = run(&bus, durable(5), Duration::from_secs(3)).await?;
    let seqs = |v: &[serde_json::Value]| -> Vec<u64> {
        v.iter()
            .map(|l| l["stream_sequence"].as_u64().unwrap_or(0))
            .collect()
    };
    assert_eq!(seqs(&first), [1, 2]);
    assert_eq!(seqs(&second), [3, 4]);

    // Subjects outside the events are refused.
    let refused = run(
        &bus,
        TailOptions {
            subjects: vec!["sspr.delivery.v1.>".into()],
            ..Default::default()
        },
        Duration::from_secs(1),
    )
    .await;
    assert!(refused.is_err());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sspr_binary_tails_and_exits_at_the_limit() -> anyhow::Result<()> {
    let (nats, bus) = setup().await?;
    three_events(&bus).await?;
    let sspr = ServiceBinary::new(env!("CARGO_BIN_EXE_sspr")).env("SSPR_NATS_URL", nats.url());
    let with_args = |args: &[&str]| args.iter().fold(sspr.clone(), |b, a| b.arg(a));
    let exited = with_args(&["events", "tail", "--since", "1h", "--limit", "2"])
        .run_to_exit(Duration::from_secs(30))
        .await?;
    exited.assert_clean_exit();
    let lines: Vec<serde_json::Value> = exited
        .stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["subject"], events::CODE_ISSUED);

    let bad = with_args(&["events", "tail", "--subject", "sspr.rpc.>"])
        .run_to_exit(Duration::from_secs(30))
        .await?;
    assert_eq!(bad.status.code(), Some(1), "{}", bad.stderr);
    assert!(bad.stderr.contains("sspr.events.v1.>"), "{}", bad.stderr);
    Ok(())
}
