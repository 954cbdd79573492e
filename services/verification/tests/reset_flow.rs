//! The reset flow through the real service over NATS, with stand-ins for directory, policy and
//! enrolment and the test playing notification (it opens the sealed deliveries).

mod harness;

use std::time::Duration;

use harness::{GOOD_PASSWORD, Harness, WEAK_PASSWORD, World, other_code, session_with_code};
use prost::Message;
use sspr_bus::ErrorCode;
use sspr_bus::subjects::{delivery, events};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::events::v1 as ev;
use sspr_proto::time::from_timestamp;
use sspr_testkit::TestDb;

fn contains(haystack: &[u8], needle: &str) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn full_reset_with_one_method_on_every_backend() {
    for db in TestDb::all().await.expect("test databases") {
        let backend = db.backend();
        let mut h = Harness::start_with(World::one_method(), db, |_| {}).await;
        let now = h.clock_now();

        let started = h.start_reset("alice").await.expect("start_reset");
        assert_eq!(started.methods_required, 1, "{backend}");
        assert_eq!(started.methods.len(), 1);
        assert_eq!(started.methods[0].method_id, "m-email");
        assert_eq!(started.methods[0].masked_destination, "a•••@e•••.com");
        assert_eq!(started.methods[0].kind, MethodKind::Email as i32);
        assert_eq!(started.session_id.len(), 43, "256-bit token in base64url");
        assert!(uuid::Uuid::parse_str(&started.flow_id).is_ok_and(|u| u.get_version_num() == 7));
        assert_ne!(started.flow_id, started.session_id);
        assert_eq!(
            started.expires_at.as_ref().and_then(from_timestamp),
            Some(now + chrono::Duration::minutes(15))
        );

        let sent = h
            .send_code(&started.session_id, "m-email")
            .await
            .expect("send_code");
        assert_eq!(
            sent.expires_at.as_ref().and_then(from_timestamp),
            Some(now + chrono::Duration::minutes(10))
        );
        assert_eq!(
            sent.resend_after.as_ref().and_then(from_timestamp),
            Some(now),
            "resend wait is 0 in tests"
        );

        let received = h.next_delivery().await;
        let d = &received.delivery;
        assert_eq!(received.subject, delivery::EMAIL);
        assert_eq!(
            received.msg_id.as_deref(),
            Some(d.delivery_id.as_str()),
            "Nats-Msg-Id is the delivery id"
        );
        assert_eq!(d.destination, "alice@example.com");
        assert_eq!(d.kind, MethodKind::Email as i32);
        assert_eq!(d.purpose, ev::CodePurpose::Reset as i32);
        assert_eq!(d.user_id, "alice");
        assert_eq!(d.flow_id, started.flow_id);
        assert_eq!(
            d.locale, "de-CH",
            "the user's locale when the request has none"
        );
        assert_eq!(
            d.expires_at.as_ref().and_then(from_timestamp),
            Some(now + chrono::Duration::minutes(10))
        );
        assert_eq!(d.code.len(), 8);
        assert!(d.code.bytes().all(|b| b.is_ascii_digit()));
        assert!(
            !contains(&received.raw, &d.code),
            "code in clear on the delivery stream"
        );
        assert!(
            !contains(&received.raw, "alice@example.com"),
            "destination in clear on the delivery stream"
        );

        let verified = h
            .verify_code(&started.session_id, "m-email", &d.code)
            .await
            .expect("verify_code");
        assert_eq!(verified.methods_remaining, 0);

        h.complete_reset(&started.session_id, GOOD_PASSWORD)
            .await
            .expect("complete_reset");
        {
            let received = h.received.lock().expect("lock");
            assert_eq!(received.set_password.len(), 1);
            let set = &received.set_password[0];
            assert_eq!(set.user_id, "alice");
            assert_eq!(set.new_password, GOOD_PASSWORD);
            assert_eq!(set.flow_id, started.flow_id);
            assert_eq!(set.reason, "self_service_reset");
            assert_eq!(received.get_destination.len(), 1);
        }

        // A completed session is gone for every step.
        for result in [
            h.complete_reset(&started.session_id, GOOD_PASSWORD)
                .await
                .err(),
            h.send_code(&started.session_id, "m-email").await.err(),
            h.verify_code(&started.session_id, "m-email", &d.code)
                .await
                .err(),
        ] {
            let e = result.expect("refused after completion");
            assert_eq!(
                (e.code, e.message.as_str()),
                (ErrorCode::Unauthenticated, "unknown or expired session")
            );
        }

        let events = h.events(4).await;
        let subjects: Vec<&str> = events.iter().map(|e| e.subject.as_str()).collect();
        assert_eq!(
            subjects,
            [
                events::RESET_STARTED,
                events::CODE_ISSUED,
                events::CODE_VERIFIED,
                events::RESET_COMPLETED
            ]
        );
        let started_ev =
            ev::ResetStarted::decode(events[0].payload.as_slice()).expect("ResetStarted");
        let meta = started_ev.meta.expect("meta");
        assert_eq!(
            (
                meta.user_id.as_str(),
                meta.flow_id.as_str(),
                meta.source.as_str()
            ),
            ("alice", started.flow_id.as_str(), "verification")
        );
        assert_eq!(
            events[0].msg_id.as_deref(),
            Some(meta.event_id.as_str()),
            "Nats-Msg-Id is the event id"
        );
        assert_eq!(started_ev.client_ip, "192.0.2.7");
        let issued = ev::CodeIssued::decode(events[1].payload.as_slice()).expect("CodeIssued");
        assert_eq!(issued.delivery_id, d.delivery_id);
        assert_eq!(issued.purpose, ev::CodePurpose::Reset as i32);
        assert_eq!(issued.method_id, "m-email");
        assert_eq!(issued.kind, MethodKind::Email as i32);
        let completed =
            ev::ResetCompleted::decode(events[3].payload.as_slice()).expect("ResetCompleted");
        assert_eq!(completed.verified_method_ids, ["m-email"]);

        // No secret in any event, byte for byte.
        for e in &events {
            for secret in [
                d.code.as_str(),
                started.session_id.as_str(),
                "alice@example.com",
                GOOD_PASSWORD,
            ] {
                assert!(
                    !contains(&e.payload, secret),
                    "{} carries a secret",
                    e.subject
                );
            }
        }
        h.stop().await;
    }
}

#[tokio::test]
async fn wrong_codes_count_down_and_five_exhaust_the_code() {
    let mut h = Harness::start(World::one_method()).await;
    let (started, d) = session_with_code(&mut h, "alice", "m-email").await;
    let wrong = other_code(&d.code);
    for _ in 0..5 {
        let e = h
            .verify_code(&started.session_id, "m-email", &wrong)
            .await
            .expect_err("wrong code");
        assert_eq!(
            (e.code, e.message.as_str()),
            (ErrorCode::InvalidArgument, "wrong code")
        );
    }
    // Used up: even the right code is refused now.
    let e = h
        .verify_code(&started.session_id, "m-email", &d.code)
        .await
        .expect_err("exhausted");
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::FailedPrecondition,
            "too many wrong codes, request a new one"
        )
    );

    // A new code starts a new budget.
    h.send_code(&started.session_id, "m-email")
        .await
        .expect("send again");
    let fresh = h.next_delivery().await.delivery;
    h.verify_code(&started.session_id, "m-email", &fresh.code)
        .await
        .expect("the new code works");

    let events = h.events(9).await;
    let rejected: Vec<ev::CodeRejected> = events
        .iter()
        .filter(|e| e.subject == events::CODE_REJECTED)
        .map(|e| ev::CodeRejected::decode(e.payload.as_slice()).expect("CodeRejected"))
        .collect();
    let seen: Vec<(&str, u32)> = rejected
        .iter()
        .map(|r| (r.reason.as_str(), r.attempts_left))
        .collect();
    assert_eq!(
        seen,
        [
            ("wrong_code", 4),
            ("wrong_code", 3),
            ("wrong_code", 2),
            ("wrong_code", 1),
            ("wrong_code", 0),
            ("too_many_attempts", 0)
        ]
    );
    h.stop().await;
}

#[tokio::test]
async fn an_expired_code_is_refused() {
    let mut h = Harness::start(World::one_method()).await;
    let (started, d) = session_with_code(&mut h, "alice", "m-email").await;
    h.clock.advance(chrono::Duration::minutes(10));
    let e = h
        .verify_code(&started.session_id, "m-email", &d.code)
        .await
        .expect_err("expired");
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::FailedPrecondition,
            "the code has expired, request a new one"
        )
    );
    let events = h.events(3).await;
    let rejected = ev::CodeRejected::decode(events[2].payload.as_slice()).expect("CodeRejected");
    assert_eq!(rejected.reason, "expired");
    h.stop().await;
}

#[tokio::test]
async fn a_code_is_single_use_and_a_new_code_voids_the_old_one() {
    let mut h = Harness::start(World::one_method()).await;
    let (started, first) = session_with_code(&mut h, "alice", "m-email").await;

    h.send_code(&started.session_id, "m-email")
        .await
        .expect("second code");
    let second = h.next_delivery().await.delivery;
    assert_ne!(first.delivery_id, second.delivery_id);
    if first.code != second.code {
        let e = h
            .verify_code(&started.session_id, "m-email", &first.code)
            .await
            .expect_err("voided");
        assert_eq!(
            (e.code, e.message.as_str()),
            (ErrorCode::InvalidArgument, "wrong code")
        );
    }
    h.verify_code(&started.session_id, "m-email", &second.code)
        .await
        .expect("latest code");
    let e = h
        .verify_code(&started.session_id, "m-email", &second.code)
        .await
        .expect_err("reused");
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::FailedPrecondition,
            "no active code, request a new one"
        )
    );
    h.stop().await;
}

#[tokio::test]
async fn a_code_from_another_session_does_not_work() {
    let mut h = Harness::start(World::one_method()).await;
    let (one, code_one) = session_with_code(&mut h, "alice", "m-email").await;
    let two = h.start_reset("alice").await.expect("second session");
    // No code was sent in session two yet.
    let e = h
        .verify_code(&two.session_id, "m-email", &code_one.code)
        .await
        .expect_err("bound to session one");
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::FailedPrecondition,
            "no active code, request a new one"
        )
    );
    h.verify_code(&one.session_id, "m-email", &code_one.code)
        .await
        .expect("still valid in its own session");
    h.stop().await;
}

#[tokio::test]
async fn unknown_malformed_and_expired_sessions() {
    let mut h = Harness::start(World::one_method()).await;
    let (started, d) = session_with_code(&mut h, "alice", "m-email").await;
    let forged = "A".repeat(43);
    for token in ["", "not-a-token", forged.as_str(), &"x".repeat(5000)] {
        let errors = [
            h.send_code(token, "m-email").await.err(),
            h.verify_code(token, "m-email", "12345678").await.err(),
            h.complete_reset(token, GOOD_PASSWORD).await.err(),
        ];
        for e in errors {
            let e = e.expect("refused");
            assert_eq!(
                (e.code, e.message.as_str()),
                (ErrorCode::Unauthenticated, "unknown or expired session")
            );
        }
    }
    h.clock.advance(chrono::Duration::minutes(15));
    let e = h
        .verify_code(&started.session_id, "m-email", &d.code)
        .await
        .expect_err("expired session");
    assert_eq!(
        (e.code, e.message.as_str()),
        (ErrorCode::Unauthenticated, "unknown or expired session")
    );
    h.stop().await;
}

#[tokio::test]
async fn a_method_outside_the_session_is_refused() {
    let mut h = Harness::start(World::one_method()).await;
    let (started, d) = session_with_code(&mut h, "alice", "m-email").await;
    for method in ["m-other", "", "m-sms"] {
        let e = h
            .send_code(&started.session_id, method)
            .await
            .expect_err("unknown method");
        assert_eq!(
            (e.code, e.message.as_str()),
            (ErrorCode::InvalidArgument, "unknown method")
        );
        let e = h
            .verify_code(&started.session_id, method, &d.code)
            .await
            .expect_err("unknown method");
        assert_eq!(
            (e.code, e.message.as_str()),
            (ErrorCode::InvalidArgument, "unknown method")
        );
    }
    h.stop().await;
}

#[tokio::test]
async fn bad_input_gets_invalid_argument() {
    let mut h = Harness::start(World::one_method()).await;
    for user in ["", &"u".repeat(129), "ali\nce", "ali\u{7}ce"] {
        let e = h.start_reset(user).await.expect_err("bad user id");
        assert_eq!(e.code, ErrorCode::InvalidArgument, "{user:?}");
        assert!(e.message.starts_with("user_id "), "{}", e.message);
    }
    let (started, d) = session_with_code(&mut h, "alice", "m-email").await;
    // Any 6 to 10 digits may be a code (a code keeps the length it was issued with), so
    // only other lengths and non-digits are malformed.
    for code in [
        "",
        "12345",
        "12345678901",
        "1234567a",
        " 1234567",
        "12 34 5678",
    ] {
        let e = h
            .verify_code(&started.session_id, "m-email", code)
            .await
            .expect_err("bad code");
        assert_eq!(e.code, ErrorCode::InvalidArgument, "{code:?}");
        assert!(e.message.starts_with("code "), "{}", e.message);
    }
    // Malformed codes cost no attempt: the right code still works.
    h.verify_code(&started.session_id, "m-email", &d.code)
        .await
        .expect("right code");
    for password in [String::new(), "p".repeat(1025)] {
        let e = h
            .complete_reset(&started.session_id, &password)
            .await
            .expect_err("bad password");
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                ErrorCode::InvalidArgument,
                "new_password must be 1 to 1024 bytes"
            )
        );
    }
    assert!(
        h.received.lock().expect("lock").set_password.is_empty(),
        "nothing sent to the directory"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_rejected_password_passes_through_and_the_session_stays_usable() {
    let mut h = Harness::start(World::one_method()).await;
    let (started, d) = session_with_code(&mut h, "alice", "m-email").await;
    let e = h
        .complete_reset(&started.session_id, GOOD_PASSWORD)
        .await
        .expect_err("not verified yet");
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::FailedPrecondition,
            "verify 1 more method(s) first"
        )
    );
    h.verify_code(&started.session_id, "m-email", &d.code)
        .await
        .expect("verify");
    let e = h
        .complete_reset(&started.session_id, WEAK_PASSWORD)
        .await
        .expect_err("weak");
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::InvalidArgument,
            "password rejected: must be at least 12 characters"
        )
    );
    h.complete_reset(&started.session_id, GOOD_PASSWORD)
        .await
        .expect("second try");
    assert_eq!(h.received.lock().expect("lock").set_password.len(), 2);
    h.stop().await;
}

#[tokio::test]
async fn two_methods_are_required_when_the_policy_says_so() {
    let mut h = Harness::start(World::two_methods()).await;
    let started = h.start_reset("alice").await.expect("start");
    assert_eq!(started.methods_required, 2);
    let ids: Vec<&str> = started
        .methods
        .iter()
        .map(|m| m.method_id.as_str())
        .collect();
    assert_eq!(ids, ["m-email", "m-sms"]);

    h.send_code(&started.session_id, "m-email")
        .await
        .expect("send email");
    let email = h.next_delivery().await;
    assert_eq!(email.subject, delivery::EMAIL);
    let left = h
        .verify_code(&started.session_id, "m-email", &email.delivery.code)
        .await
        .expect("verify email");
    assert_eq!(left.methods_remaining, 1);
    let e = h
        .complete_reset(&started.session_id, GOOD_PASSWORD)
        .await
        .expect_err("one more");
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::FailedPrecondition,
            "verify 1 more method(s) first"
        )
    );

    h.send_code(&started.session_id, "m-sms")
        .await
        .expect("send sms");
    let sms = h.next_delivery().await;
    assert_eq!(sms.subject, delivery::SMS);
    assert_eq!(sms.delivery.destination, "+41791234567");
    assert_eq!(sms.delivery.kind, MethodKind::Sms as i32);
    assert!(!contains(&sms.raw, "+41791234567"));
    let left = h
        .verify_code(&started.session_id, "m-sms", &sms.delivery.code)
        .await
        .expect("verify sms");
    assert_eq!(left.methods_remaining, 0);
    h.complete_reset(&started.session_id, GOOD_PASSWORD)
        .await
        .expect("complete");

    let events = h.events(6).await;
    let completed = events
        .iter()
        .find(|e| e.subject == events::RESET_COMPLETED)
        .expect("reset.completed");
    let completed =
        ev::ResetCompleted::decode(completed.payload.as_slice()).expect("ResetCompleted");
    assert_eq!(completed.verified_method_ids, ["m-email", "m-sms"]);
    for e in &events {
        for secret in [
            email.delivery.code.as_str(),
            sms.delivery.code.as_str(),
            started.session_id.as_str(),
            "+41791234567",
            "alice@example.com",
        ] {
            assert!(
                !contains(&e.payload, secret),
                "{} carries a secret",
                e.subject
            );
        }
    }
    h.stop().await;
}

#[tokio::test]
async fn methods_the_policy_does_not_allow_are_not_offered() {
    let mut world = World::two_methods();
    world.methods_required = 1;
    world.allowed = vec![MethodKind::Sms];
    let h = Harness::start(world).await;
    let started = h.start_reset("alice").await.expect("start");
    let ids: Vec<&str> = started
        .methods
        .iter()
        .map(|m| m.method_id.as_str())
        .collect();
    assert_eq!(ids, ["m-sms"]);
    h.stop().await;
}

#[tokio::test]
async fn the_resend_wait_is_enforced() {
    let h = Harness::start_with(World::one_method(), TestDb::sqlite().expect("db"), |c| {
        c.resend_after = chrono::Duration::seconds(30);
    })
    .await;
    let now = h.clock_now();
    let started = h.start_reset("alice").await.expect("start");
    let sent = h
        .send_code(&started.session_id, "m-email")
        .await
        .expect("first");
    assert_eq!(
        sent.resend_after.as_ref().and_then(from_timestamp),
        Some(now + chrono::Duration::seconds(30))
    );
    h.clock.advance(chrono::Duration::seconds(29));
    let e = h
        .send_code(&started.session_id, "m-email")
        .await
        .expect_err("too soon");
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::ResourceExhausted,
            "wait before requesting another code"
        )
    );
    h.clock.advance(chrono::Duration::seconds(1));
    h.send_code(&started.session_id, "m-email")
        .await
        .expect("after the wait");
    assert_eq!(h.deliveries_published(2).await, 2);

    // The same for a decoy.
    let decoy = h.start_reset("nobody").await.expect("decoy start");
    let method = decoy.methods[0].method_id.clone();
    h.send_code(&decoy.session_id, &method)
        .await
        .expect("decoy first");
    let e = h
        .send_code(&decoy.session_id, &method)
        .await
        .expect_err("decoy too soon");
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::ResourceExhausted,
            "wait before requesting another code"
        )
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        h.deliveries_published(2).await,
        2,
        "the decoy delivered nothing"
    );
    h.stop().await;
}

#[tokio::test]
async fn decoys_look_like_real_flows_and_deliver_nothing() {
    let mut world = World::one_method();
    world.add_user("disabled", false);
    world.add_method(
        "disabled",
        "m-d",
        MethodKind::Email,
        "d•••@e•••.com",
        "d@example.com",
    );
    world.add_user("outsider", true);
    world.out_of_scope.push("outsider".into());
    world.add_method(
        "outsider",
        "m-o",
        MethodKind::Email,
        "o•••@e•••.com",
        "o@example.com",
    );
    world.add_user("unregistered", true);
    let h = Harness::start(world).await;

    for user in ["nobody", "disabled", "outsider", "unregistered"] {
        let started = h.start_reset(user).await.expect("decoy start");
        assert_eq!(started.methods_required, 1, "{user}");
        // One or two methods (a keyed choice per user id, as real users register one or more).
        assert!((1..=2).contains(&started.methods.len()), "{user}");
        let m = &started.methods[0];
        assert_eq!(m.kind, MethodKind::Email as i32);
        let (local, domain) = m.masked_destination.split_once('@').expect("masked email");
        assert!(
            local.ends_with("•••") && domain.contains("•••."),
            "{}",
            m.masked_destination
        );
        let id = m
            .method_id
            .strip_prefix("m_")
            .expect("enrolment-style method id");
        assert!(uuid::Uuid::try_parse(id).is_ok_and(|u| u.get_version_num() == 7));
        assert_eq!(started.session_id.len(), 43);
        assert!(
            !m.method_id.starts_with("m-"),
            "a real method leaked for {user}"
        );

        // Stable: the same user id gets the same decoy every time.
        let again = h.start_reset(user).await.expect("decoy again");
        assert_eq!(again.methods, started.methods);
        assert_ne!(again.session_id, started.session_id);

        // Same statuses and messages as a real flow, step by step.
        let e = h
            .verify_code(&started.session_id, &m.method_id, "12345678")
            .await
            .expect_err("nothing sent yet");
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                ErrorCode::FailedPrecondition,
                "no active code, request a new one"
            )
        );
        let sent = h
            .send_code(&started.session_id, &m.method_id)
            .await
            .expect("decoy send");
        assert!(sent.expires_at.is_some() && sent.resend_after.is_some());
        let e = h
            .send_code(&started.session_id, "m-email")
            .await
            .expect_err("unknown method");
        assert_eq!(
            (e.code, e.message.as_str()),
            (ErrorCode::InvalidArgument, "unknown method")
        );
        for _ in 0..5 {
            let e = h
                .verify_code(&started.session_id, &m.method_id, "12345678")
                .await
                .expect_err("never verifies");
            assert_eq!(
                (e.code, e.message.as_str()),
                (ErrorCode::InvalidArgument, "wrong code")
            );
        }
        let e = h
            .verify_code(&started.session_id, &m.method_id, "12345678")
            .await
            .expect_err("used up");
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                ErrorCode::FailedPrecondition,
                "too many wrong codes, request a new one"
            )
        );
        let e = h
            .complete_reset(&started.session_id, GOOD_PASSWORD)
            .await
            .expect_err("never completes");
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                ErrorCode::FailedPrecondition,
                "verify 1 more method(s) first"
            )
        );
    }
    // Policy and enrolment were consulted for every user id, known or not.
    {
        let received = h.received.lock().expect("lock");
        // 8 StartReset calls, and every later call reading the policy-wide settings and limits
        // (counted per call kind by attack_enumeration, which checks real and decoy alike).
        assert!(
            received.evaluate.len() >= 8 + 4,
            "{}",
            received.evaluate.len()
        );
        assert_eq!(received.list_methods.len(), 8);
        // Enrolment is asked for the destination of each decoy send, as for a real one (it
        // finds nothing), so both take the same path.
        assert_eq!(received.get_destination.len(), 4);
        assert!(received.set_password.is_empty());
    }
    assert!(
        h.settled_events().await.is_empty(),
        "a decoy emits no event"
    );
    assert_eq!(
        h.deliveries_published(0).await,
        0,
        "a decoy delivers nothing"
    );
    h.stop().await;
}

#[tokio::test]
async fn decoys_follow_the_policy_shape() {
    // Two methods required: an unknown user sees two, like every real user.
    let mut world = World::two_methods();
    // bob registered only one of the two required methods: he could never finish a reset.
    world.add_user("bob", true);
    world.add_method(
        "bob",
        "m-bob",
        MethodKind::Email,
        "b•••@e•••.com",
        "bob@example.com",
    );
    let h = Harness::start(world).await;
    for user in ["nobody", "bob"] {
        let started = h.start_reset(user).await.expect("start");
        assert_eq!(started.methods_required, 2, "{user}");
        let kinds: Vec<i32> = started.methods.iter().map(|m| m.kind).collect();
        assert_eq!(
            kinds,
            [MethodKind::Email as i32, MethodKind::Sms as i32],
            "{user}"
        );
        assert!(
            started
                .methods
                .iter()
                .all(|m| m.method_id.starts_with("m_")),
            "{user}: a real method leaked"
        );
        assert!(
            started.methods[1]
                .masked_destination
                .starts_with("+•• •••• ••")
        );
    }
    h.stop().await;

    // Only SMS allowed: the decoy is a phone.
    let mut world = World::one_method();
    world.allowed = vec![MethodKind::Sms];
    let h = Harness::start(world).await;
    let started = h.start_reset("nobody").await.expect("start");
    assert_eq!(started.methods_required, 1);
    assert_eq!(started.methods.len(), 1);
    assert_eq!(started.methods[0].kind, MethodKind::Sms as i32);
    h.stop().await;
}

#[tokio::test]
async fn ineligible_users_with_methods_get_a_decoy_not_their_methods() {
    let mut world = World::one_method();
    world.out_of_scope.push("alice".into());
    let h = Harness::start(world).await;
    let started = h.start_reset("alice").await.expect("start");
    assert_ne!(started.methods[0].method_id, "m-email");
    assert_ne!(started.methods[0].masked_destination, "a•••@e•••.com");
    h.stop().await;
}

async fn fresh_db(backend: &str) -> TestDb {
    if backend == "postgres" {
        TestDb::postgres()
            .await
            .expect("postgres")
            .expect("SSPR_TEST_POSTGRES_URL set")
    } else {
        TestDb::sqlite().expect("sqlite")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_verifications_never_overspend_on_every_backend() {
    for db in TestDb::all().await.expect("test databases") {
        let backend = db.backend();
        let mut h = Harness::start_with(World::one_method(), db, |_| {}).await;

        // Ten wrong guesses at once: exactly five are counted, the rest find the code used up.
        let (started, d) = session_with_code(&mut h, "alice", "m-email").await;
        let wrong = other_code(&d.code);
        let results = futures::future::join_all(
            (0..10).map(|_| h.verify_code(&started.session_id, "m-email", &wrong)),
        )
        .await;
        let wrong_count = results
            .iter()
            .filter(|r| r.as_ref().err().is_some_and(|e| e.message == "wrong code"))
            .count();
        let exhausted = results
            .iter()
            .filter(|r| {
                r.as_ref()
                    .err()
                    .is_some_and(|e| e.message == "too many wrong codes, request a new one")
            })
            .count();
        assert_eq!((wrong_count, exhausted), (5, 5), "{backend}: {results:?}");

        // The right code sent ten times at once: exactly one use.
        h.send_code(&started.session_id, "m-email")
            .await
            .expect("new code");
        let fresh = h.next_delivery().await.delivery;
        let results = futures::future::join_all(
            (0..10).map(|_| h.verify_code(&started.session_id, "m-email", &fresh.code)),
        )
        .await;
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{backend}: {results:?}"
        );
        for e in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(
                (e.code, e.message.as_str()),
                (
                    ErrorCode::FailedPrecondition,
                    "no active code, request a new one"
                )
            );
        }

        // Many flows issuing codes at once all succeed (no lock error surfaces as INTERNAL).
        let sessions = futures::future::join_all((0..8).map(|_| h.start_reset("alice"))).await;
        let sends = futures::future::join_all(
            sessions
                .iter()
                .map(|s| h.send_code(&s.as_ref().expect("start").session_id, "m-email")),
        )
        .await;
        assert!(sends.iter().all(|r| r.is_ok()), "{backend}: {sends:?}");

        // Two methods verified at the same moment: neither is lost.
        drop(h);
        let mut h =
            Harness::start_with(World::two_methods(), fresh_db(backend).await, |_| {}).await;
        let started = h.start_reset("alice").await.expect("start");
        h.send_code(&started.session_id, "m-email")
            .await
            .expect("email");
        let email = h.next_delivery().await.delivery;
        h.send_code(&started.session_id, "m-sms")
            .await
            .expect("sms");
        let sms = h.next_delivery().await.delivery;
        let (a, b) = tokio::join!(
            h.verify_code(&started.session_id, "m-email", &email.code),
            h.verify_code(&started.session_id, "m-sms", &sms.code)
        );
        let mut remaining = [
            a.expect("email").methods_remaining,
            b.expect("sms").methods_remaining,
        ];
        remaining.sort();
        assert_eq!(remaining, [0, 1]);
        h.complete_reset(&started.session_id, GOOD_PASSWORD)
            .await
            .expect("both recorded");
        h.stop().await;
    }
}
