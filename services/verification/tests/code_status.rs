//! GetCodeStatus and the delivery states behind it, through the real service on every backend.
//! The test plays notification: it pulls the sealed delivery from `SSPR_DELIVERY` (for its
//! delivery id) and publishes notification's events on `SSPR_EVENTS` with the real event
//! messages, as notification's outbox relay would (JetStream, `Nats-Msg-Id` = event id).
//!
//! The end-to-end version, where notification itself emits `code.delivery_failed` after the
//! SMS provider refused a code, is `tests/tests/code_status.rs` in the workspace test crate.

mod harness;

use std::time::Duration;

use harness::{Harness, World};
use prost::Message;
use sea_orm::{EntityTrait, PaginatorTrait};
use sspr_bus::subjects::{self, events, rpc};
use sspr_bus::{Bus, ErrorCode, RpcError};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::events::v1::{CodeDelivered, CodeDeliveryConfirmed, CodeDeliveryFailed, EventMeta};
use sspr_proto::internal::verification::v1 as ver;
use sspr_proto::reset::v1::CodeDeliveryState;
use sspr_testkit::TestDb;
use sspr_verification::adapters::entities::processed_event;

/// alice: an SMS method and an email method; one is enough.
fn world() -> World {
    let mut world = World::one_method();
    world.add_method(
        "alice",
        "m-sms",
        MethodKind::Sms,
        "+•• •••• ••67",
        "+41791234567",
    );
    world
}

fn meta(event_id: &str) -> Option<EventMeta> {
    Some(EventMeta {
        event_id: event_id.into(),
        occurred_at: Some(sspr_proto::time::timestamp(chrono::Utc::now())),
        user_id: "alice".into(),
        flow_id: String::new(),
        source: "notification".into(),
        actor: String::new(),
    })
}

/// `code.delivery_failed` as notification emits it.
fn failed(event_id: &str, delivery_id: &str, reason: &str, method_id: &str) -> Vec<u8> {
    CodeDeliveryFailed {
        meta: meta(event_id),
        delivery_id: delivery_id.into(),
        kind: MethodKind::Sms as i32,
        reason: reason.into(),
        attempts: 1,
        method_id: method_id.into(),
    }
    .encode_to_vec()
}

fn delivered(event_id: &str, delivery_id: &str) -> Vec<u8> {
    CodeDelivered {
        meta: meta(event_id),
        delivery_id: delivery_id.into(),
        kind: MethodKind::Email as i32,
        latency: None,
        attempts: 1,
    }
    .encode_to_vec()
}

fn confirmed(event_id: &str, delivery_id: &str) -> Vec<u8> {
    CodeDeliveryConfirmed {
        meta: meta(event_id),
        delivery_id: delivery_id.into(),
        kind: MethodKind::Sms as i32,
        latency: None,
    }
    .encode_to_vec()
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Publishes on `subject` with `msg_id` as `Nats-Msg-Id`, waiting for the stream's ack.
async fn publish(bus: &Bus, subject: &'static str, msg_id: &str, payload: Vec<u8>) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", msg_id);
    bus.jetstream()
        .publish_with_headers(subject, headers, payload.into())
        .await
        .expect("publish")
        .await
        .expect("stream ack");
}

/// Waits (up to 10 s) until the code-delivery consumer has delivered and settled every message.
async fn wait_consumed(bus: &Bus) {
    let stream = bus
        .jetstream()
        .get_stream(subjects::EVENTS_STREAM)
        .await
        .expect("events stream");
    for _ in 0..200 {
        if let Ok(info) = stream
            .consumer_info(subjects::VERIFICATION_CODE_DELIVERY_CONSUMER)
            .await
            && info.num_pending == 0
            && info.num_ack_pending == 0
            && info.delivered.stream_sequence > 0
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the code-delivery consumer did not catch up in 10 s");
}

async fn status(
    h: &Harness,
    session_id: &str,
    method_id: &str,
) -> Result<ver::GetCodeStatusResponse, RpcError> {
    h.call(
        rpc::verification::GET_CODE_STATUS,
        &ver::GetCodeStatusRequest {
            session_id: session_id.into(),
            method_id: method_id.into(),
        },
    )
    .await
}

fn state_of(resp: &ver::GetCodeStatusResponse) -> CodeDeliveryState {
    CodeDeliveryState::try_from(resp.state).unwrap_or(CodeDeliveryState::Unspecified)
}

#[tokio::test]
async fn a_refused_sms_code_shows_failed_with_the_email_method_as_alternative_on_every_backend() {
    for db in TestDb::all().await.expect("test databases") {
        let backend = db.backend();
        let conn = sspr_storage::connect(sspr_verification::SERVICE, &db.settings())
            .await
            .expect("database");
        let mut h = Harness::start_with(world(), db, |_| {}).await;
        let started = h.start_reset("alice").await.expect("start_reset");
        let session = started.session_id.as_str();

        // Nothing sent yet: the same refusal for either method.
        let e = status(&h, session, "m-sms")
            .await
            .expect_err("nothing sent");
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                ErrorCode::FailedPrecondition,
                "no code was sent to this method"
            ),
            "{backend}"
        );

        h.send_code(session, "m-sms")
            .await
            .expect("send to the phone");
        let sms = h.next_delivery().await.delivery;
        assert_eq!(sms.method_id, "m-sms", "{backend}");
        let pending = status(&h, session, "m-sms").await.expect("status");
        assert_eq!(state_of(&pending), CodeDeliveryState::Pending, "{backend}");
        assert!(pending.alternatives.is_empty(), "{backend}");

        // The provider refused it for good: notification says so.
        let failure = new_id();
        publish(
            &h.bus,
            events::CODE_DELIVERY_FAILED,
            &failure,
            failed(&failure, &sms.delivery_id, "rejected", "m-sms"),
        )
        .await;
        wait_consumed(&h.bus).await;
        let failed_status = status(&h, session, "m-sms").await.expect("status");
        assert_eq!(
            state_of(&failed_status),
            CodeDeliveryState::Failed,
            "{backend}"
        );
        let offered: Vec<(&str, i32, &str)> = failed_status
            .alternatives
            .iter()
            .map(|m| (m.method_id.as_str(), m.kind, m.masked_destination.as_str()))
            .collect();
        assert_eq!(
            offered,
            [("m-email", MethodKind::Email as i32, "a•••@e•••.com")],
            "{backend}"
        );

        // Redelivered (same event id, new message id) and a late code.delivered: still failed,
        // and the redelivery was recorded once.
        let processed_before = processed_event::Entity::find()
            .count(&conn)
            .await
            .expect("count");
        publish(
            &h.bus,
            events::CODE_DELIVERY_FAILED,
            "a-redelivery",
            failed(&failure, &sms.delivery_id, "rejected", "m-sms"),
        )
        .await;
        let late = new_id();
        publish(
            &h.bus,
            events::CODE_DELIVERED,
            &late,
            delivered(&late, &sms.delivery_id),
        )
        .await;
        wait_consumed(&h.bus).await;
        let still = status(&h, session, "m-sms").await.expect("status");
        assert_eq!(state_of(&still), CodeDeliveryState::Failed, "{backend}");
        let processed_after = processed_event::Entity::find()
            .count(&conn)
            .await
            .expect("count");
        assert_eq!(
            processed_after,
            processed_before + 1,
            "only the late code.delivered is new ({backend})"
        );

        // The user picks the email method: it is sent, shown pending, then sent, and verifies.
        h.send_code(session, "m-email")
            .await
            .expect("send to email");
        let email = h.next_delivery().await.delivery;
        let email_status = status(&h, session, "m-email").await.expect("status");
        assert_eq!(
            state_of(&email_status),
            CodeDeliveryState::Pending,
            "{backend}"
        );
        let accepted = new_id();
        publish(
            &h.bus,
            events::CODE_DELIVERED,
            &accepted,
            delivered(&accepted, &email.delivery_id),
        )
        .await;
        wait_consumed(&h.bus).await;
        let sent = status(&h, session, "m-email").await.expect("status");
        assert_eq!(state_of(&sent), CodeDeliveryState::Sent, "{backend}");
        assert!(sent.alternatives.is_empty(), "{backend}");
        let receipt = new_id();
        publish(
            &h.bus,
            events::CODE_DELIVERY_CONFIRMED,
            &receipt,
            confirmed(&receipt, &email.delivery_id),
        )
        .await;
        wait_consumed(&h.bus).await;
        let confirmed_status = status(&h, session, "m-email").await.expect("status");
        assert_eq!(
            state_of(&confirmed_status),
            CodeDeliveryState::Sent,
            "a confirmed delivery shows as sent ({backend})"
        );
        h.verify_code(session, "m-email", &email.code)
            .await
            .expect("the email code verifies");

        // A new code to the phone is the last one sent there: pending again.
        h.send_code(session, "m-sms").await.expect("send again");
        let _ = h.next_delivery().await;
        let again = status(&h, session, "m-sms").await.expect("status");
        assert_eq!(state_of(&again), CodeDeliveryState::Pending, "{backend}");

        h.stop().await;
    }
}

#[tokio::test]
async fn an_expired_code_shows_expired_and_verified_methods_are_not_offered_on_every_backend() {
    for db in TestDb::all().await.expect("test databases") {
        let backend = db.backend();
        let mut world = world();
        world.add_method(
            "alice",
            "m-voice",
            MethodKind::Voice,
            "+•• •••• ••68",
            "+41791234568",
        );
        // Voice is not allowed by the policy: never offered (nor listed).
        let mut h = Harness::start_with(world, db, |_| {}).await;
        let started = h.start_reset("alice").await.expect("start_reset");
        let session = started.session_id.as_str();
        assert_eq!(started.methods.len(), 2, "{backend}");

        h.send_code(session, "m-email").await.expect("send email");
        let email = h.next_delivery().await.delivery;
        h.verify_code(session, "m-email", &email.code)
            .await
            .expect("verifies");
        h.send_code(session, "m-sms").await.expect("send sms");
        let sms = h.next_delivery().await.delivery;
        let dropped = new_id();
        publish(
            &h.bus,
            events::CODE_DELIVERY_FAILED,
            &dropped,
            failed(&dropped, &sms.delivery_id, "expired", "m-sms"),
        )
        .await;
        wait_consumed(&h.bus).await;
        let expired = status(&h, session, "m-sms").await.expect("status");
        assert_eq!(state_of(&expired), CodeDeliveryState::Expired, "{backend}");
        assert!(
            expired.alternatives.is_empty(),
            "the email method is verified already ({backend})"
        );
        h.stop().await;
    }
}

#[tokio::test]
async fn sessions_and_methods_are_checked_like_verify_code() {
    let h = Harness::start(world()).await;
    let started = h.start_reset("alice").await.expect("start_reset");
    for (session, method) in [
        ("not-a-token", "m-email"),
        ("", "m-email"),
        ("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "m-email"),
        (started.session_id.as_str(), "m-nope"),
        (started.session_id.as_str(), ""),
    ] {
        let got = status(&h, session, method).await.expect_err("refused");
        let verify = h
            .verify_code(session, method, "12345678")
            .await
            .expect_err("refused");
        assert_eq!(
            (got.code, got.message.as_str()),
            (verify.code, verify.message.as_str()),
            "{session:?} {method:?}"
        );
    }
    // Once expired, the session is unknown to both.
    h.clock.advance(chrono::Duration::minutes(16));
    let got = status(&h, &started.session_id, "m-email")
        .await
        .expect_err("expired");
    assert_eq!(got.code, ErrorCode::Unauthenticated);
    assert_eq!(got.message, "unknown or expired session");
    h.stop().await;
}

#[tokio::test]
async fn a_decoy_code_is_pending_then_sent_and_never_fails_on_every_backend() {
    for db in TestDb::all().await.expect("test databases") {
        let backend = db.backend();
        let mut h = Harness::start_with(world(), db, |_| {}).await;
        let started = h.start_reset("nobody").await.expect("a decoy flow");
        let method = started.methods[0].method_id.clone();
        let e = status(&h, &started.session_id, &method)
            .await
            .expect_err("nothing sent");
        assert_eq!(e.message, "no code was sent to this method", "{backend}");
        h.send_code(&started.session_id, &method)
            .await
            .expect("a decoy send answers like a real one");
        let now = status(&h, &started.session_id, &method)
            .await
            .expect("status");
        assert_eq!(state_of(&now), CodeDeliveryState::Pending, "{backend}");
        h.clock.advance(chrono::Duration::seconds(4));
        let later = status(&h, &started.session_id, &method)
            .await
            .expect("status");
        assert_eq!(state_of(&later), CodeDeliveryState::Sent, "{backend}");
        assert!(later.alternatives.is_empty(), "{backend}");
        assert!(
            h.try_next_delivery(Duration::from_millis(300))
                .await
                .is_none(),
            "a decoy delivers nothing ({backend})"
        );
        h.stop().await;
    }
}

#[tokio::test]
async fn no_alternative_when_the_flow_cannot_finish_without_the_failed_method_on_every_backend() {
    for db in TestDb::all().await.expect("test databases") {
        let backend = db.backend();
        // Both of alice's methods are required: nothing can stand in for a failed one.
        let mut h = Harness::start_with(World::two_methods(), db, |_| {}).await;
        let started = h.start_reset("alice").await.expect("start_reset");
        let session = started.session_id.as_str();
        h.send_code(session, "m-sms").await.expect("send sms");
        let sms = h.next_delivery().await.delivery;
        let failure = new_id();
        publish(
            &h.bus,
            events::CODE_DELIVERY_FAILED,
            &failure,
            failed(&failure, &sms.delivery_id, "retries_exhausted", "m-sms"),
        )
        .await;
        wait_consumed(&h.bus).await;
        let resp = status(&h, session, "m-sms").await.expect("status");
        assert_eq!(state_of(&resp), CodeDeliveryState::Failed, "{backend}");
        assert!(resp.alternatives.is_empty(), "{backend}");
        h.stop().await;
    }
}
