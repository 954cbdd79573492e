//! Registration-takeover defences and the sign-in throttle of enrolment, over real NATS and a
//! real database (SQLite, and PostgreSQL when configured), with stand-in peers: the step-up
//! gate, the cool-down of new methods, `list_destinations`, and the per-user and per-IP limits
//! on BeginRegistration and GetStatus.

mod harness;

use chrono::Duration;
use harness::{ALICE, ERIN, Harness};
use sspr_bus::{ErrorCode, subjects};
use sspr_clock::Clock;
use sspr_proto::admin::v1::Limits;
use sspr_proto::common::v1::MethodKind;
use sspr_proto::events::v1::CodePurpose;
use sspr_proto::internal::enrolment::v1::{
    BeginRegistrationRequest, BeginRegistrationResponse, ListDestinationsRequest,
    ListDestinationsResponse,
};

const EMAIL: MethodKind = MethodKind::Email;
const SMS: MethodKind = MethodKind::Sms;

/// Erin (one method required) with a confirmed email, registered in a first session.
async fn erin_with_an_email(h: &Harness) -> String {
    let begun = h.begin(&ERIN).await.expect("begin");
    assert!(
        !begun.step_up_required,
        "a first registration needs no step-up"
    );
    let (id, complete) = h
        .register(&begun.session_id, EMAIL, "erin@contoso.com")
        .await;
    assert!(complete);
    id
}

#[tokio::test]
async fn changing_methods_needs_a_step_up_once_a_method_exists() {
    for db in Harness::backends().await {
        let h = Harness::start_on(db).await;
        eprintln!("on {}", h.backend());
        let email = erin_with_an_email(&h).await;

        let begun = h.begin(&ERIN).await.expect("second session");
        assert!(begun.step_up_required);
        let session = begun.session_id;
        let refused = h
            .add(&session, EMAIL, "attacker@evil.example")
            .await
            .expect_err("a new destination without step-up");
        assert_eq!(refused.code, ErrorCode::FailedPrecondition);
        assert_eq!(refused.reason.as_deref(), Some("STEP_UP_REQUIRED"));
        assert!(
            refused
                .message
                .contains("verify one of your registered methods first")
        );
        let refused = h
            .remove(&session, &email)
            .await
            .expect_err("a removal without step-up");
        assert_eq!(refused.reason.as_deref(), Some("STEP_UP_REQUIRED"));
        assert_eq!(
            h.recorded().issue_code.len(),
            1,
            "nothing was sent to the attacker's address"
        );

        // A wrong step-up code does not open the gate.
        let send = sspr_proto::internal::enrolment::v1::SendStepUpCodeRequest {
            session_id: session.clone(),
            method_id: email.clone(),
            client_ip: "203.0.113.9".into(),
        };
        let _: sspr_proto::internal::enrolment::v1::SendStepUpCodeResponse = h
            .call(subjects::rpc::enrolment::SEND_STEP_UP_CODE, &send)
            .await
            .expect("send step-up code");
        {
            let r = h.recorded();
            let issued = r.issue_code.last().expect("issued");
            assert_eq!(issued.purpose, CodePurpose::StepUp as i32);
            assert_eq!(issued.method_id, email);
            assert_eq!(issued.destination, "erin@contoso.com");
            assert_eq!(issued.client_ip, "203.0.113.9");
        }
        let wrong = sspr_proto::internal::enrolment::v1::VerifyStepUpCodeRequest {
            session_id: session.clone(),
            method_id: email.clone(),
            code: "00000000".into(),
        };
        h.call::<_, sspr_proto::internal::enrolment::v1::VerifyStepUpCodeResponse>(
            subjects::rpc::enrolment::VERIFY_STEP_UP_CODE,
            &wrong,
        )
        .await
        .expect_err("wrong code");
        h.add(&session, EMAIL, "attacker@evil.example")
            .await
            .expect_err("still refused");

        h.step_up(&session, &email).await.expect("step-up");
        assert_eq!(
            h.recorded().check_code.last().map(|c| c.purpose),
            Some(CodePurpose::StepUp as i32)
        );
        h.register(&session, EMAIL, "erin.private@contoso.com")
            .await;
        h.stop().await;
    }
}

#[tokio::test]
async fn reconfirming_an_existing_method_needs_no_step_up_and_counts_as_one() {
    let h = Harness::start().await;
    let email = erin_with_an_email(&h).await;
    let session = h.begin(&ERIN).await.expect("begin").session_id;
    let (again, _) = h.register(&session, EMAIL, " erin@Contoso.com ").await;
    assert_eq!(again, email, "the same method, re-confirmed");
    // The session proved possession of the existing method.
    h.register(&session, EMAIL, "erin.private@contoso.com")
        .await;

    // A security-questions-less step-up target: unknown and pending ids are NOT_FOUND.
    let session = h.begin(&ERIN).await.expect("begin").session_id;
    let pending = h
        .add(&session, EMAIL, "erin@contoso.com")
        .await
        .expect("re-confirmation code")
        .method_id;
    assert_eq!(pending, email);
    let err = h
        .step_up(&session, "m_0190f0e4c8a87e3a9f0c2b1d4e5f6a7b")
        .await
        .expect_err("not a method of hers");
    assert_eq!(err.code, ErrorCode::NotFound);
    h.stop().await;
}

#[tokio::test]
async fn methods_added_later_wait_out_the_cool_down_before_reset() {
    for db in Harness::backends().await {
        let h = Harness::start_on(db).await;
        eprintln!("on {}", h.backend());
        let email = erin_with_an_email(&h).await;
        let listed = h.list("erin").await.expect("list");
        assert_eq!(listed.methods.len(), 1, "a first method is usable at once");
        assert_eq!(listed.usable_from.len(), 1);
        assert_eq!(
            listed.usable_from[0].seconds,
            h.clock.now().timestamp(),
            "usable from its confirmation"
        );

        let session = h.begin(&ERIN).await.expect("begin").session_id;
        h.step_up(&session, &email).await.expect("step-up");
        let (added, _) = h
            .register(&session, EMAIL, "erin.private@contoso.com")
            .await;
        let confirmed_at = h.clock.now();
        let listed = h.list("erin").await.expect("list");
        assert_eq!(listed.methods.len(), 1, "the new method is not offered yet");
        assert_eq!(listed.methods[0].method_id, email);

        h.clock.advance(Duration::hours(24) - Duration::seconds(1));
        assert_eq!(h.list("erin").await.expect("list").methods.len(), 1);
        h.clock.advance(Duration::seconds(1));
        let listed = h.list("erin").await.expect("list");
        assert_eq!(listed.methods.len(), 2, "usable once 24 h passed");
        let at = listed
            .methods
            .iter()
            .position(|m| m.method_id == added)
            .expect("listed");
        assert_eq!(
            listed.usable_from[at].seconds,
            (confirmed_at + Duration::hours(24)).timestamp()
        );
        h.stop().await;
    }
}

#[tokio::test]
async fn the_cool_down_is_the_policys_and_zero_means_at_once() {
    let h = Harness::start().await;
    h.recorded().limits = Some(Limits {
        new_method_cooldown_hours: Some(0),
        ..Default::default()
    });
    let email = erin_with_an_email(&h).await;
    let session = h.begin(&ERIN).await.expect("begin").session_id;
    h.step_up(&session, &email).await.expect("step-up");
    h.register(&session, EMAIL, "erin.private@contoso.com")
        .await;
    assert_eq!(h.list("erin").await.expect("list").methods.len(), 2);
    h.stop().await;
}

#[tokio::test]
async fn list_destinations_gives_every_confirmed_contact_method_in_full() {
    let h = Harness::start().await;
    let session = h.begin(&ALICE).await.expect("begin").session_id;
    let (email, _) = h.register(&session, EMAIL, "Alice@Contoso.com").await;
    let (phone, _) = h.register(&session, SMS, "+41 79 123 45 67").await;
    h.add(&session, EMAIL, "pending@contoso.com")
        .await
        .expect("pending");
    let listed: ListDestinationsResponse = h
        .call(
            subjects::rpc::enrolment::LIST_DESTINATIONS,
            &ListDestinationsRequest {
                user_id: "alice".into(),
            },
        )
        .await
        .expect("list_destinations");
    let got: Vec<(String, i32, String)> = listed
        .destinations
        .into_iter()
        .map(|d| (d.method_id, d.kind, d.destination))
        .collect();
    assert_eq!(
        got,
        vec![
            (email, EMAIL as i32, "Alice@contoso.com".to_owned()),
            (phone, SMS as i32, "+41791234567".to_owned()),
        ]
    );
    h.stop().await;
}

async fn begin_from(
    h: &Harness,
    user_id: &str,
    password: &str,
    client_ip: &str,
) -> Result<BeginRegistrationResponse, sspr_bus::RpcError> {
    let req = BeginRegistrationRequest {
        user_id: user_id.into(),
        password: password.into(),
        locale: String::new(),
        client_ip: client_ip.into(),
    };
    h.call(subjects::rpc::enrolment::BEGIN_REGISTRATION, &req)
        .await
}

#[tokio::test]
async fn sign_in_checks_are_limited_per_user_id_known_or_not() {
    for db in Harness::backends().await {
        let h = Harness::start_on(db).await;
        eprintln!("on {}", h.backend());
        for (user, password) in [("erin", "erin's password"), ("nobody", "whatever")] {
            for i in 0..10 {
                // Alternate the two password-checking calls, and the client IP.
                let ip = format!("192.0.2.{i}");
                if i % 2 == 0 {
                    let r = begin_from(&h, user, password, &ip).await;
                    assert_ne!(r.err().map(|e| e.code), Some(ErrorCode::ResourceExhausted));
                } else {
                    let r = h.status(user, password).await;
                    assert_ne!(r.err().map(|e| e.code), Some(ErrorCode::ResourceExhausted));
                }
            }
            let refused = begin_from(&h, user, password, "192.0.2.200")
                .await
                .expect_err("the eleventh check in the hour");
            assert_eq!(refused.code, ErrorCode::ResourceExhausted, "{user}");
            let retry = refused.retry_after_secs.expect("retry-after");
            assert!((1..=3600).contains(&retry), "{retry}");
            // Case does not make a new counter.
            let refused = h
                .status(&user.to_uppercase(), password)
                .await
                .expect_err("same user, other case");
            assert_eq!(refused.code, ErrorCode::ResourceExhausted);
        }
        let authenticated = h.recorded().authenticate.len();
        assert_eq!(
            authenticated, 20,
            "refused checks never reach the directory"
        );
        // The next hour starts afresh.
        h.clock.advance(Duration::hours(1));
        h.begin(&ERIN).await.expect("a new hour");
        h.stop().await;
    }
}

#[tokio::test]
async fn sign_in_checks_are_limited_per_client_ip() {
    let h = Harness::start().await;
    h.recorded().limits = Some(Limits {
        ip_sign_in_checks_per_minute: Some(5),
        ..Default::default()
    });
    for i in 0..5 {
        let err = begin_from(&h, &format!("user{i}"), "guess", "203.0.113.5")
            .await
            .expect_err("unknown users");
        assert_eq!(err.code, ErrorCode::Unauthenticated);
    }
    let refused = begin_from(&h, "erin", "erin's password", "203.0.113.5")
        .await
        .expect_err("the sixth check from that IP in the minute");
    assert_eq!(refused.code, ErrorCode::ResourceExhausted);
    assert!(refused.retry_after_secs.is_some_and(|s| s <= 60));
    begin_from(&h, "erin", "erin's password", "203.0.113.6")
        .await
        .expect("another IP");
    h.clock.advance(Duration::minutes(1));
    begin_from(&h, "erin", "erin's password", "203.0.113.5")
        .await
        .expect("the next minute");
    h.stop().await;
}

#[tokio::test]
async fn concurrent_sign_in_checks_cannot_slip_past_the_limit() {
    for db in Harness::backends().await {
        let h = Harness::start_on(db).await;
        eprintln!("on {}", h.backend());
        let ips: Vec<String> = (0..25).map(|i| format!("192.0.2.{i}")).collect();
        let attempts =
            futures::future::join_all(ips.iter().map(|ip| begin_from(&h, "nobody", "guess", ip)))
                .await;
        let throttled = attempts
            .iter()
            .filter(|r| {
                r.as_ref()
                    .err()
                    .is_some_and(|e| e.code == ErrorCode::ResourceExhausted)
            })
            .count();
        assert_eq!(throttled, 15, "exactly the limit of 10 got through");
        h.stop().await;
    }
}
