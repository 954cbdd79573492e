//! The audit service over a real nats-server and real databases (SQLite, and PostgreSQL when
//! `SSPR_TEST_POSTGRES_URL` is set): real events published on JetStream with `Nats-Msg-Id` and
//! `traceparent` headers are recorded once each, and read back with filters and paging.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use chrono::{DateTime, Utc};
use prost::Message;
use sspr_bus::subjects::events as subj;
use sspr_bus::subjects::rpc::audit as rpc;
use sspr_bus::{Bus, BusConfig, ErrorCode, RpcError};
use sspr_clock::{Clock, ManualClock};
use sspr_proto::events::v1 as ev;
use sspr_proto::internal::audit::v1::{AuditRecord, ListEventsRequest, ListEventsResponse};
use sspr_proto::time::timestamp;
use sspr_runtime::ServiceContext;
use sspr_testkit::{NatsServer, TestDb};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const TP_A: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_A: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

struct Harness {
    _nats: NatsServer,
    bus: Bus,
    js: jetstream::Context,
    clock: ManualClock,
    shutdown: CancellationToken,
    service: JoinHandle<anyhow::Result<()>>,
    db: TestDb,
}

impl Harness {
    async fn start(db: TestDb) -> Harness {
        let nats = NatsServer::start().await.expect("nats-server");
        let clock = ManualClock::new(Utc::now());
        let service_bus = Bus::connect(&BusConfig::new(nats.url(), "sspr-audit"))
            .await
            .expect("bus");
        let ctx = ServiceContext {
            bus: service_bus,
            db: sspr_storage::connect(sspr_audit::SERVICE, &db.settings())
                .await
                .expect("db"),
            clock: std::sync::Arc::new(clock.clone()),
        };
        let config = sspr_audit::Config {
            retention_sweep_every: Duration::from_millis(100),
            ..sspr_audit::Config::default()
        };
        let shutdown = CancellationToken::new();
        let service = tokio::spawn(sspr_audit::run(ctx, config, shutdown.clone()));
        let bus = Bus::connect(&BusConfig::new(nats.url(), "audit-test"))
            .await
            .expect("bus");
        let js = jetstream::new(nats.connect().await.expect("client"));
        let h = Harness {
            _nats: nats,
            bus,
            js,
            clock,
            shutdown,
            service,
            db,
        };
        // Serving means migrations ran and the streams exist.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while h.list(ListEventsRequest::default()).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "audit never served");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        h
    }

    async fn list(&self, req: ListEventsRequest) -> Result<ListEventsResponse, RpcError> {
        self.bus
            .request(rpc::LIST_EVENTS, &req)
            .await
            .map_err(|e| e.into_rpc())
    }

    async fn publish(&self, subject: &str, msg_id: &str, traceparent: Option<&str>, body: Vec<u8>) {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id);
        if let Some(tp) = traceparent {
            headers.insert("traceparent", tp);
        }
        self.js
            .publish_with_headers(subject.to_owned(), headers, body.into())
            .await
            .expect("publish")
            .await
            .expect("stream ack");
    }

    /// Publishes `event` (whose meta id is also the `Nats-Msg-Id`).
    async fn emit(
        &self,
        subject: &str,
        meta: &ev::EventMeta,
        traceparent: Option<&str>,
        body: Vec<u8>,
    ) {
        self.publish(subject, &meta.event_id, traceparent, body)
            .await;
    }

    /// Waits until the log holds `n` records for `user_id` (all users when empty).
    async fn wait_for(&self, user_id: &str, n: usize) -> Vec<AuditRecord> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let page = self
                .list(ListEventsRequest {
                    user_id: user_id.into(),
                    page_size: 500,
                    ..Default::default()
                })
                .await
                .expect("list");
            if page.records.len() >= n {
                return page.records;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {n} records for {user_id:?} after 15 s",
                page.records.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.service
            .await
            .expect("service task")
            .expect("service stopped cleanly");
        drop(self.db);
    }
}

fn meta(id: &str, user: &str, flow: &str, at: DateTime<Utc>, source: &str) -> ev::EventMeta {
    ev::EventMeta {
        event_id: id.into(),
        occurred_at: Some(timestamp(at)),
        user_id: user.into(),
        flow_id: flow.into(),
        source: source.into(),
        actor: String::new(),
    }
}

fn id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A reset flow of `user`, one second per step from `start`; returns the event ids in order.
async fn reset_flow(h: &Harness, user: &str, start: DateTime<Utc>) -> Vec<String> {
    let flow = format!("flow-{user}");
    let at = |s: i64| start + chrono::Duration::seconds(s);
    let mut ids = Vec::new();
    let m = meta(&id(), user, &flow, at(0), "verification");
    let body = ev::ResetStarted {
        meta: Some(m.clone()),
        client_ip: "192.0.2.7".into(),
    }
    .encode_to_vec();
    h.emit(subj::RESET_STARTED, &m, Some(TP_A), body).await;
    ids.push(m.event_id);
    let m = meta(&id(), user, &flow, at(1), "verification");
    let body = ev::CodeIssued {
        meta: Some(m.clone()),
        method_id: "m1".into(),
        kind: sspr_proto::common::v1::MethodKind::Email as i32,
        purpose: ev::CodePurpose::Reset as i32,
        expires_at: Some(timestamp(at(601))),
        delivery_id: "d1".into(),
    }
    .encode_to_vec();
    h.emit(subj::CODE_ISSUED, &m, Some(TP_A), body).await;
    ids.push(m.event_id);
    let m = meta(&id(), user, &flow, at(2), "verification");
    let body = ev::CodeRejected {
        meta: Some(m.clone()),
        method_id: "m1".into(),
        purpose: ev::CodePurpose::Reset as i32,
        reason: "wrong_code".into(),
        attempts_left: 4,
    }
    .encode_to_vec();
    h.emit(subj::CODE_REJECTED, &m, Some(TP_A), body).await;
    ids.push(m.event_id);
    let m = meta(&id(), user, &flow, at(3), "verification");
    let body = ev::CodeVerified {
        meta: Some(m.clone()),
        method_id: "m1".into(),
        purpose: ev::CodePurpose::Reset as i32,
    }
    .encode_to_vec();
    h.emit(subj::CODE_VERIFIED, &m, Some(TP_A), body).await;
    ids.push(m.event_id);
    let m = meta(&id(), user, &flow, at(4), "verification");
    let body = ev::ResetCompleted {
        meta: Some(m.clone()),
        verified_method_ids: vec!["m1".into()],
    }
    .encode_to_vec();
    h.emit(subj::RESET_COMPLETED, &m, Some(TP_A), body).await;
    ids.push(m.event_id);
    let m = meta(&id(), user, &flow, at(4), "directory");
    let body = ev::PasswordChanged {
        meta: Some(m.clone()),
        reason: "self_service_reset".into(),
    }
    .encode_to_vec();
    h.emit(subj::PASSWORD_CHANGED, &m, None, body).await;
    ids.push(m.event_id);
    ids
}

#[tokio::test]
async fn records_every_event_with_its_trace_and_reads_back_filtered_and_paged() {
    for db in TestDb::all().await.expect("test databases") {
        eprintln!("on {}", db.backend());
        let h = Harness::start(db).await;
        let start = h.clock.now() - chrono::Duration::hours(1);
        let alice = reset_flow(&h, "alice", start).await;
        let bob = reset_flow(&h, "bob", start + chrono::Duration::milliseconds(500)).await;
        let m = meta(
            &id(),
            "bob",
            "",
            start + chrono::Duration::seconds(10),
            "directory",
        );
        h.emit(
            subj::USER_DELETED,
            &m,
            Some(TP_A),
            ev::UserDeleted {
                meta: Some(m.clone()),
            }
            .encode_to_vec(),
        )
        .await;

        let all = h.wait_for("", 13).await;
        assert_eq!(all.len(), 13);
        let records = h.wait_for("alice", 6).await;
        let ids: Vec<&str> = records.iter().map(|r| r.event_id.as_str()).collect();
        assert_eq!(ids, alice.iter().map(String::as_str).collect::<Vec<_>>());
        let kinds: Vec<&str> = records.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "reset.started",
                "code.issued",
                "code.rejected",
                "code.verified",
                "reset.completed",
                "password.changed"
            ]
        );
        for r in &records {
            assert_eq!(r.user_id, "alice");
            assert_eq!(r.actor, "alice");
            assert_eq!(r.flow_id, "flow-alice");
            assert!(r.occurred_at.is_some());
        }
        assert_eq!(records[0].trace_id, TRACE_A);
        assert_eq!(records[0].source, "verification");
        assert_eq!(records[5].trace_id, "", "no traceparent, no trace id");
        assert_eq!(records[5].source, "directory");
        assert_eq!(records[2].outcome, "rejected:wrong_code");
        assert_eq!(records[3].outcome, "ok");
        let summary: serde_json::Value =
            serde_json::from_str(&records[1].summary_json).expect("json");
        assert_eq!(summary["method_id"], "m1");
        assert_eq!(summary["kind"], "email");
        assert_eq!(summary["delivery_id"], "d1");
        let deleted = all
            .iter()
            .find(|r| r.kind == "user.deleted")
            .expect("user.deleted");
        assert_eq!(
            (deleted.actor.as_str(), deleted.user_id.as_str()),
            ("admin", "bob")
        );

        // Kind filter.
        let page = h
            .list(ListEventsRequest {
                kind: "reset.completed".into(),
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(page.records.len(), 2);
        assert!(page.next_page_token.is_empty());
        let page = h
            .list(ListEventsRequest {
                kind: "reset.completed".into(),
                user_id: "bob".into(),
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(page.records.len(), 1);
        assert_eq!(page.records[0].event_id, bob[4]);

        // Time range [from, to): alice's second and third steps (at +1 s and +2 s).
        let page = h
            .list(ListEventsRequest {
                user_id: "alice".into(),
                from: Some(timestamp(start + chrono::Duration::seconds(1))),
                to: Some(timestamp(start + chrono::Duration::seconds(3))),
                ..Default::default()
            })
            .await
            .expect("list");
        let ids: Vec<&str> = page.records.iter().map(|r| r.event_id.as_str()).collect();
        assert_eq!(ids, [alice[1].as_str(), alice[2].as_str()]);

        // Paging walks the whole ordered log exactly once.
        let mut paged = Vec::new();
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let page = h
                .list(ListEventsRequest {
                    page_size: 4,
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await
                .expect("list");
            assert!(page.records.len() <= 4);
            pages += 1;
            paged.extend(page.records.into_iter().map(|r| r.event_id));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(pages, 4);
        assert_eq!(
            paged,
            all.iter().map(|r| r.event_id.clone()).collect::<Vec<_>>()
        );
        let mut sorted = all.clone();
        sorted.sort_by_key(|r| {
            let t = r.occurred_at.unwrap_or_default();
            (t.seconds, t.nanos, r.event_id.clone())
        });
        assert_eq!(sorted, all, "ordered by (occurred_at, event_id)");
        h.stop().await;
    }
}

#[tokio::test]
async fn an_event_published_twice_is_recorded_once() {
    for db in TestDb::all().await.expect("test databases") {
        let h = Harness::start(db).await;
        let m = meta(&id(), "carol", "flow-c", h.clock.now(), "verification");
        let body = ev::ResetStarted {
            meta: Some(m.clone()),
            client_ip: "192.0.2.9".into(),
        }
        .encode_to_vec();
        h.emit(subj::RESET_STARTED, &m, Some(TP_A), body.clone())
            .await;
        h.wait_for("carol", 1).await;
        // After the stream's duplicate window a re-publication gets through with another
        // Nats-Msg-Id (simulated here); the event id is the same.
        h.publish(
            subj::RESET_STARTED,
            &format!("{}-again", m.event_id),
            None,
            body,
        )
        .await;
        // A later event: once it is recorded, the re-publication before it was processed.
        let later = meta(&id(), "carol", "flow-c", h.clock.now(), "verification");
        let body = ev::CodeVerified {
            meta: Some(later.clone()),
            method_id: "m".into(),
            purpose: 1,
        }
        .encode_to_vec();
        h.emit(subj::CODE_VERIFIED, &later, None, body).await;
        let records = h.wait_for("carol", 2).await;
        assert_eq!(records.len(), 2, "{records:?}");
        assert_eq!(records[0].event_id, m.event_id);
        assert_eq!(records[0].trace_id, TRACE_A, "the first recording is kept");
        h.stop().await;
    }
}

#[tokio::test]
async fn a_malformed_event_is_dropped_without_blocking_the_log() {
    let h = Harness::start(TestDb::sqlite().expect("db")).await;
    h.publish(
        subj::RESET_STARTED,
        "garbage-1",
        None,
        vec![0xff, 0xff, 0xff],
    )
    .await;
    let m = meta(&id(), "dave", "flow-d", h.clock.now(), "verification");
    let body = ev::ResetStarted {
        meta: Some(m.clone()),
        client_ip: String::new(),
    }
    .encode_to_vec();
    h.emit(subj::RESET_STARTED, &m, None, body).await;
    let records = h.wait_for("", 1).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].event_id, m.event_id);
    h.stop().await;
}

#[tokio::test]
async fn bad_queries_are_invalid_argument() {
    let h = Harness::start(TestDb::sqlite().expect("db")).await;
    let t = |s: i64| {
        Some(prost_types::Timestamp {
            seconds: s,
            nanos: 0,
        })
    };
    let cases = [
        (
            ListEventsRequest {
                page_size: 501,
                ..Default::default()
            },
            "page_size",
        ),
        (
            ListEventsRequest {
                page_token: "bm9wZQ".into(),
                ..Default::default()
            },
            "page_token",
        ),
        (
            ListEventsRequest {
                kind: "reset".into(),
                ..Default::default()
            },
            "kind",
        ),
        (
            ListEventsRequest {
                from: t(20),
                to: t(10),
                ..Default::default()
            },
            "to",
        ),
        (
            ListEventsRequest {
                from: Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: -5,
                }),
                ..Default::default()
            },
            "from",
        ),
    ];
    for (req, field) in cases {
        let err = h.list(req).await.expect_err("refused");
        assert_eq!(err.code, ErrorCode::InvalidArgument, "{field}: {err:?}");
        assert!(err.message.contains(field), "{field}: {}", err.message);
    }
    h.stop().await;
}

#[tokio::test]
async fn records_older_than_the_retention_are_deleted() {
    for db in TestDb::all().await.expect("test databases") {
        let h = Harness::start(db).await;
        let now = h.clock.now();
        let old = meta(
            &id(),
            "erin",
            "f",
            now - chrono::Duration::days(10),
            "verification",
        );
        h.emit(
            subj::USER_DELETED,
            &old,
            None,
            ev::UserDeleted {
                meta: Some(old.clone()),
            }
            .encode_to_vec(),
        )
        .await;
        let recent = meta(
            &id(),
            "erin",
            "f",
            now - chrono::Duration::days(1),
            "verification",
        );
        h.emit(
            subj::USER_DELETED,
            &recent,
            None,
            ev::UserDeleted {
                meta: Some(recent.clone()),
            }
            .encode_to_vec(),
        )
        .await;
        h.wait_for("erin", 2).await;

        // 25 days later the first is 35 days old (> 30), the second 26.
        h.clock.advance(chrono::Duration::days(25));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let page = h
                .list(ListEventsRequest {
                    user_id: "erin".into(),
                    ..Default::default()
                })
                .await
                .expect("list");
            if page.records.len() == 1 {
                assert_eq!(page.records[0].event_id, recent.event_id);
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "old record never deleted"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        h.stop().await;
    }
}
