//! `user.deleted` through the real service: the test publishes the event on `SSPR_EVENTS` as the
//! directory's outbox relay would (JetStream, `Nats-Msg-Id` = event id) and checks that the
//! user's reset sessions and codes are gone, that a redelivery changes nothing, that a
//! malformed event is dropped, and that other users keep theirs.

mod harness;

use std::time::Duration;

use harness::{Harness, World, session_with_code};
use prost::Message;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};
use sspr_bus::subjects::{self, events, rpc};
use sspr_bus::{Bus, ErrorCode};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::events::v1::{CodePurpose, EventMeta, UserDeleted};
use sspr_proto::internal::verification::v1 as ver;
use sspr_testkit::TestDb;
use sspr_verification::adapters::entities::{code, processed_event, reset_session};

fn world() -> World {
    let mut world = World::one_method();
    world.add_user("carol", true);
    world.add_method(
        "carol",
        "m-carol",
        MethodKind::Email,
        "c•••@e•••.com",
        "carol@example.com",
    );
    world
}

fn user_deleted(event_id: &str, user_id: &str) -> Vec<u8> {
    UserDeleted {
        meta: Some(EventMeta {
            event_id: event_id.into(),
            occurred_at: Some(sspr_proto::time::timestamp(chrono::Utc::now())),
            user_id: user_id.into(),
            flow_id: String::new(),
            source: "directory".into(),
            actor: String::new(),
        }),
    }
    .encode_to_vec()
}

/// Publishes on `user.deleted` with `msg_id` as `Nats-Msg-Id`, waiting for the stream's ack.
async fn publish(bus: &Bus, msg_id: &str, payload: Vec<u8>) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", msg_id);
    bus.jetstream()
        .publish_with_headers(events::USER_DELETED, headers, payload.into())
        .await
        .expect("publish")
        .await
        .expect("stream ack");
}

/// Waits (up to 10 s) until the service's consumer has delivered and settled every message.
async fn wait_consumed(bus: &Bus) {
    let stream = bus
        .jetstream()
        .get_stream(subjects::EVENTS_STREAM)
        .await
        .expect("events stream");
    for _ in 0..200 {
        if let Ok(info) = stream
            .consumer_info(subjects::VERIFICATION_USER_DELETED_CONSUMER)
            .await
            && info.num_pending == 0
            && info.num_ack_pending == 0
            && info.delivered.stream_sequence > 0
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the user.deleted consumer did not catch up in 10 s");
}

async fn rows(db: &DatabaseConnection, user_id: &str) -> (u64, u64) {
    let sessions = reset_session::Entity::find()
        .filter(reset_session::Column::UserId.eq(user_id))
        .count(db)
        .await
        .expect("count sessions");
    let codes = code::Entity::find()
        .filter(code::Column::UserId.eq(user_id))
        .count(db)
        .await
        .expect("count codes");
    (sessions, codes)
}

#[tokio::test]
async fn a_deleted_user_loses_sessions_and_codes_once_on_every_backend() {
    for db in TestDb::all().await.expect("test databases") {
        let backend = db.backend();
        let conn = sspr_storage::connect(sspr_verification::SERVICE, &db.settings())
            .await
            .expect("database");
        let mut h = Harness::start_with(world(), db, |_| {}).await;

        // alice: a reset session with a code sent, and a registration code; carol: a session.
        let (alice, alice_code) = session_with_code(&mut h, "alice", "m-email").await;
        let issued: Result<ver::IssueCodeResponse, _> = h
            .call(
                rpc::verification::ISSUE_CODE,
                &ver::IssueCodeRequest {
                    user_id: "alice".into(),
                    method_id: "m-new".into(),
                    kind: MethodKind::Email as i32,
                    destination: "alice.new@example.com".into(),
                    locale: "en".into(),
                    flow_id: "reg-flow-1".into(),
                    purpose: CodePurpose::Registration as i32,
                    ..Default::default()
                },
            )
            .await;
        issued.expect("issue_code");
        let registration_code = h.next_delivery().await.delivery.code;
        let (carol, carol_code) = session_with_code(&mut h, "carol", "m-carol").await;
        assert_eq!(rows(&conn, "alice").await, (1, 2), "{backend}");

        let event_id = uuid::Uuid::now_v7().to_string();
        publish(&h.bus, &event_id, user_deleted(&event_id, "alice")).await;
        wait_consumed(&h.bus).await;

        assert_eq!(rows(&conn, "alice").await, (0, 0), "{backend}");
        let e = h
            .verify_code(&alice.session_id, "m-email", &alice_code.code)
            .await
            .expect_err("the session is gone");
        assert_eq!(e.code, ErrorCode::Unauthenticated, "{backend}");
        assert_eq!(e.message, "unknown or expired session", "{backend}");
        let checked: Result<ver::CheckCodeResponse, _> = h
            .call(
                rpc::verification::CHECK_CODE,
                &ver::CheckCodeRequest {
                    user_id: "alice".into(),
                    method_id: "m-new".into(),
                    code: registration_code,
                    flow_id: "reg-flow-1".into(),
                    purpose: CodePurpose::Registration as i32,
                },
            )
            .await;
        assert!(checked.is_err(), "a pending code cannot verify ({backend})");

        // carol is untouched.
        let verified = h
            .verify_code(&carol.session_id, "m-carol", &carol_code.code)
            .await
            .expect("carol verifies");
        assert_eq!(verified.methods_remaining, 0, "{backend}");

        // alice (re-created with the same id) starts again; the old event, redelivered under
        // the same and under another Nats-Msg-Id, must not delete the new session.
        let (again, again_code) = session_with_code(&mut h, "alice", "m-email").await;
        publish(&h.bus, &event_id, user_deleted(&event_id, "alice")).await;
        publish(&h.bus, "another-msg-id", user_deleted(&event_id, "alice")).await;
        wait_consumed(&h.bus).await;
        assert_eq!(rows(&conn, "alice").await, (1, 1), "{backend}");
        let processed = processed_event::Entity::find()
            .count(&conn)
            .await
            .expect("count processed events");
        assert_eq!(processed, 1, "{backend}");

        // A malformed event is dropped and the consumer goes on with the next one.
        publish(&h.bus, "garbage", b"\xff\xff not protobuf".to_vec()).await;
        let no_meta = UserDeleted { meta: None }.encode_to_vec();
        publish(&h.bus, "no-meta", no_meta).await;
        let carol_event = uuid::Uuid::now_v7().to_string();
        publish(&h.bus, &carol_event, user_deleted(&carol_event, "carol")).await;
        wait_consumed(&h.bus).await;
        assert_eq!(rows(&conn, "carol").await, (0, 0), "{backend}");
        let verified = h
            .verify_code(&again.session_id, "m-email", &again_code.code)
            .await
            .expect("alice's new session still works");
        assert_eq!(verified.methods_remaining, 0, "{backend}");

        h.stop().await;
    }
}
