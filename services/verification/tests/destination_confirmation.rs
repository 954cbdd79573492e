//! Typed-destination confirmation and the helpdesk contact, through the real service over
//! NATS with stand-ins (see the harness): a mismatch is refused, sends nothing and spends an
//! attempt of the active code; decoys answer the same; the helpdesk contact reaches StartReset
//! for real and decoy sessions.

mod harness;

use std::time::Duration;

use harness::{Harness, World, other_code};
use prost::Message;
use sspr_bus::ErrorCode;
use sspr_bus::subjects::events;
use sspr_proto::events::v1 as ev;

fn world() -> World {
    World {
        require_full_destination: true,
        helpdesk_contact: "https://help.example.com".into(),
        ..World::one_method()
    }
}

#[tokio::test]
async fn required_confirmation_gates_the_send() {
    let mut h = Harness::start(world()).await;
    let started = h.start_reset("alice").await.expect("start_reset");
    assert_eq!(started.helpdesk_contact, "https://help.example.com");

    let err = h
        .send_code(&started.session_id, "m-email")
        .await
        .expect_err("missing confirmation");
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    assert_eq!(err.message, "destination_confirmation is required");

    let err = h
        .send_code_confirmed(&started.session_id, "m-email", "bob@example.com")
        .await
        .expect_err("mismatch");
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    assert_eq!(err.message, "the destination does not match");
    assert!(
        h.try_next_delivery(Duration::from_millis(300))
            .await
            .is_none()
    );

    let err = h
        .send_code_confirmed(&started.session_id, "m-email", "a\u{7}b")
        .await
        .expect_err("control character");
    assert_eq!(err.code, ErrorCode::InvalidArgument);

    h.send_code_confirmed(&started.session_id, "m-email", "  ALICE@Example.COM ")
        .await
        .expect("matching destination");
    let code = h.next_delivery().await.delivery.code;

    // A mismatch now spends an attempt of the code just sent, like a wrong code.
    h.send_code_confirmed(&started.session_id, "m-email", "eve@example.com")
        .await
        .expect_err("mismatch");
    let wrong = other_code(&code);
    let err = h
        .verify_code(&started.session_id, "m-email", &wrong)
        .await
        .expect_err("wrong code");
    assert_eq!(err.message, "wrong code");

    // The outbox relay publishes asynchronously: wait for all three rejections.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let rejected = loop {
        let rejected: Vec<ev::CodeRejected> = h
            .events(1)
            .await
            .iter()
            .filter(|e| e.subject == events::CODE_REJECTED)
            .map(|e| ev::CodeRejected::decode(e.payload.as_slice()).expect("decode"))
            .collect();
        let mismatches = rejected
            .iter()
            .filter(|r| r.reason == "destination_mismatch")
            .count();
        let wrong = rejected.iter().any(|r| r.reason == "wrong_code");
        if (mismatches >= 2 && wrong) || std::time::Instant::now() > deadline {
            break rejected;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mismatches: Vec<_> = rejected
        .iter()
        .filter(|r| r.reason == "destination_mismatch")
        .collect();
    assert_eq!(mismatches.len(), 2, "{rejected:?}");
    let config_attempts = rejected
        .iter()
        .find(|r| r.reason == "wrong_code")
        .expect("wrong code event")
        .attempts_left;
    let spent = mismatches
        .iter()
        .map(|r| r.attempts_left)
        .max()
        .expect("one");
    assert_eq!(
        spent,
        config_attempts + 1,
        "mismatch then wrong code each spent one"
    );

    h.verify_code(&started.session_id, "m-email", &code)
        .await
        .expect("right code still works");
    h.stop().await;
}

#[tokio::test]
async fn a_decoy_answers_like_a_mismatch_and_gets_the_helpdesk_contact() {
    let mut h = Harness::start(world()).await;
    let started = h.start_reset("nobody").await.expect("start_reset");
    assert_eq!(started.helpdesk_contact, "https://help.example.com");
    let method = started.methods[0].method_id.clone();

    let err = h
        .send_code(&started.session_id, &method)
        .await
        .expect_err("missing");
    assert_eq!(err.message, "destination_confirmation is required");
    for typed in ["nobody@example.com", "alice@example.com"] {
        let err = h
            .send_code_confirmed(&started.session_id, &method, typed)
            .await
            .expect_err("decoy");
        assert_eq!(err.code, ErrorCode::InvalidArgument);
        assert_eq!(err.message, "the destination does not match");
    }
    assert!(
        h.try_next_delivery(Duration::from_millis(300))
            .await
            .is_none()
    );
    h.stop().await;
}

#[tokio::test]
async fn not_required_ignores_the_confirmation() {
    let mut h = Harness::start(World::one_method()).await;
    let started = h.start_reset("alice").await.expect("start_reset");
    assert_eq!(started.helpdesk_contact, "");
    h.send_code_confirmed(&started.session_id, "m-email", "whatever@example.com")
        .await
        .expect("not required");
    h.next_delivery().await;
    h.stop().await;
}
