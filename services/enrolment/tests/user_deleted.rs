//! `user.deleted` through the real service: the test publishes the event on `SSPR_EVENTS` as the
//! directory's outbox relay would (JetStream, `Nats-Msg-Id` = event id) and checks that the
//! user's methods (pending and confirmed) and registration sessions are gone, that a redelivery
//! changes nothing, that a malformed event is dropped, and that other users keep theirs.

mod harness;

use std::time::Duration;

use harness::{ALICE, DAVE, Harness};
use prost::Message;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};
use sspr_bus::subjects::{self, events};
use sspr_bus::{Bus, ErrorCode};
use sspr_enrolment::adapters::entities::{method, processed_event, registration_session};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::events::v1::{EventMeta, UserDeleted};

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
            .consumer_info(subjects::ENROLMENT_USER_DELETED_CONSUMER)
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

/// (methods of any status, registration sessions) stored for `user_id`.
async fn rows(db: &DatabaseConnection, user_id: &str) -> (u64, u64) {
    let methods = method::Entity::find()
        .filter(method::Column::UserId.eq(user_id))
        .count(db)
        .await
        .expect("count methods");
    let sessions = registration_session::Entity::find()
        .filter(registration_session::Column::UserId.eq(user_id))
        .count(db)
        .await
        .expect("count sessions");
    (methods, sessions)
}

#[tokio::test]
async fn a_deleted_user_loses_methods_and_sessions_once_on_every_backend() {
    for db in Harness::backends().await {
        let h = Harness::start_on(db).await;
        let backend = h.backend();
        let conn = h.db_connection().await;

        // alice: two confirmed methods and one pending; dave: one confirmed method.
        let alice = h.begin(&ALICE).await.expect("begin alice").session_id;
        h.register(&alice, MethodKind::Email, "alice@example.com")
            .await;
        h.register(&alice, MethodKind::Sms, "+41791234567").await;
        h.add(&alice, MethodKind::Email, "alice.other@example.com")
            .await
            .expect("pending add");
        let dave = h.begin(&DAVE).await.expect("begin dave").session_id;
        h.register(&dave, MethodKind::Email, "dave@example.com")
            .await;
        assert_eq!(rows(&conn, "alice").await, (3, 1), "{backend}");

        let event_id = uuid::Uuid::now_v7().to_string();
        publish(&h.bus, &event_id, user_deleted(&event_id, "alice")).await;
        wait_consumed(&h.bus).await;

        assert_eq!(rows(&conn, "alice").await, (0, 0), "{backend}");
        assert!(h.list("alice").await.expect("list").methods.is_empty());
        let e = h
            .add(&alice, MethodKind::Email, "alice.third@example.com")
            .await
            .expect_err("the registration session is gone");
        assert_eq!(e.code, ErrorCode::Unauthenticated, "{backend}");
        // dave is untouched.
        assert_eq!(rows(&conn, "dave").await, (1, 1), "{backend}");
        assert_eq!(h.list("dave").await.expect("list").methods.len(), 1);

        // alice (re-created with the same id) registers again; the old event, redelivered
        // under the same and under another Nats-Msg-Id, must not delete the new method.
        let begun = h.begin(&ALICE).await.expect("begin alice again");
        assert!(begun.registered.is_empty(), "{backend}");
        h.register(&begun.session_id, MethodKind::Email, "alice@example.com")
            .await;
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
        publish(
            &h.bus,
            "no-meta",
            UserDeleted { meta: None }.encode_to_vec(),
        )
        .await;
        let dave_event = uuid::Uuid::now_v7().to_string();
        publish(&h.bus, &dave_event, user_deleted(&dave_event, "dave")).await;
        wait_consumed(&h.bus).await;
        assert_eq!(rows(&conn, "dave").await, (0, 0), "{backend}");
        assert_eq!(rows(&conn, "alice").await, (1, 1), "{backend}");

        h.stop().await;
    }
}
