//! Attacks on: sms_pumping (see main.rs). Toll fraud through our SMS provider: codes to premium
//! numbers abroad (the country allowlist), floods of codes to many numbers (the global and
//! per-prefix budgets per hour) and bursts of codes nobody verifies (the circuit breaker on the
//! verified/sent ratio). Registration (AddMethod) is the door used here: it needs no existing
//! method, so it is the classic pumping door. Email keeps working throughout.

use std::time::Duration;

use sspr_proto::admin::v1::{self as admin, Scope};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::events::v1 as events;
use sspr_proto::registration::v1 as registration;
use sspr_tests::{Backend, World, on_both_backends};
use tonic::{Code, Status};

const PASSWORD: &str = "correct horse battery";

on_both_backends! {
    allowed_countries => phone_codes_only_go_to_allowed_countries, phone_codes_only_go_to_allowed_countries_postgres;
    global_budget => global_phone_budget_stops_sms_but_not_email, global_phone_budget_stops_sms_but_not_email_postgres;
    per_prefix_budget => per_prefix_phone_budget, per_prefix_phone_budget_postgres;
    breaker => breaker_opens_when_few_codes_are_verified_and_email_still_works, breaker_opens_when_few_codes_are_verified_and_email_still_works_postgres;
    limits_validated => limits_are_validated_and_stored, limits_are_validated_and_stored_postgres;
    two_replicas => phone_budget_holds_across_two_verification_replicas, phone_budget_holds_across_two_verification_replicas_postgres;
    decoys_alike => decoy_phone_sends_count_nowhere_and_are_refused_like_real_ones, decoy_phone_sends_count_nowhere_and_are_refused_like_real_ones_postgres;
}

/// Scope ALL, email or SMS, and `limits`.
async fn set_policy(world: &World, limits: admin::Limits) -> Result<admin::Policy, Status> {
    let policy = admin::Policy {
        scope: Scope::All as i32,
        methods_required: 1,
        allowed_methods: vec![MethodKind::Email as i32, MethodKind::Sms as i32],
        limits: Some(limits),
        ..Default::default()
    };
    world
        .admin()
        .set_policy(World::as_admin(admin::SetPolicyRequest {
            policy: Some(policy),
        }))
        .await
        .map(tonic::Response::into_inner)
}

/// Generous per-user, per-destination and per-IP limits, so only the defence under test bites.
fn roomy() -> admin::Limits {
    admin::Limits {
        phone_sends_per_hour: Some(100),
        email_sends_per_10_minutes: Some(100),
        destination_sends_per_hour: Some(1000),
        ip_send_code_per_minute: Some(10_000),
        ip_sign_in_checks_per_minute: Some(10_000),
        resend_after_seconds: Some(0),
        ..Default::default()
    }
}

/// A new user with a password (no method yet) and a registration session for them.
async fn signed_in(world: &World, user_id: &str) -> String {
    world
        .upsert_user(user_id, PASSWORD, &[], false)
        .await
        .expect("user");
    world
        .registration()
        .begin_registration(registration::BeginRegistrationRequest {
            user_id: user_id.to_owned(),
            password: PASSWORD.to_owned(),
            locale: "en".to_owned(),
        })
        .await
        .expect("begin registration")
        .into_inner()
        .session_id
}

async fn add(
    world: &World,
    session_id: &str,
    kind: MethodKind,
    destination: &str,
) -> Result<registration::AddMethodResponse, Status> {
    world
        .registration()
        .add_method(registration::AddMethodRequest {
            session_id: session_id.to_owned(),
            kind: kind as i32,
            destination: destination.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// A fresh user adds `phone` as an SMS method; returns the outcome and the method id.
async fn add_phone(world: &World, user_id: &str, phone: &str) -> Result<(String, String), Status> {
    let session = signed_in(world, user_id).await;
    add(world, &session, MethodKind::Sms, phone)
        .await
        .map(|added| (session, added.method_id))
}

/// A fresh user adds an email method and the code arrives.
async fn email_still_works(world: &World, user_id: &str) {
    let address = format!("{user_id}@example.com");
    let session = signed_in(world, user_id).await;
    let seen = world.mail_count(&address);
    add(world, &session, MethodKind::Email, &address)
        .await
        .expect("email codes keep working");
    world
        .next_code(&address, seen)
        .await
        .expect("the email code arrives");
}

/// Gives the outbox and notification time to deliver anything queued.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(800)).await;
}

fn has_reason(status: &Status, reason: &str) -> bool {
    status
        .details()
        .windows(reason.len())
        .any(|w| w == reason.as_bytes())
}

/// RESOURCE_EXHAUSTED with `retry-after` seconds, for a budget.
fn budget_refusal(status: &Status) -> u64 {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let secs: u64 = status
        .metadata()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("retry-after metadata on {status:?}"));
    assert!((1..=3600).contains(&secs), "{status:?}");
    secs
}

/// The organisation's countries (+44, from the policy service's setting) get codes; a +7
/// number is refused before anything is queued; a policy's own list overrides the setting.
async fn allowed_countries(backend: Backend) {
    let Some(world) = World::start_with_or_skip(backend, |opts| {
        opts.policy.organisation_phone_prefixes =
            sspr_policy::domain::limits::OrganisationPrefixes::parse("+44").expect("prefixes");
    })
    .await
    else {
        return;
    };
    set_policy(&world, roomy()).await.expect("policy");

    let refused = add_phone(&world, "ivan", "+79161234567")
        .await
        .expect_err("a +7 number is not in the organisation's countries");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert_eq!(
        refused.message(),
        "codes cannot be sent to phone numbers in this country"
    );
    assert!(
        has_reason(&refused, "PHONE_COUNTRY_NOT_ALLOWED"),
        "{refused:?}"
    );
    assert!(
        !refused.message().contains("+7"),
        "the number is not echoed"
    );

    add_phone(&world, "alice", "+447700900123")
        .await
        .expect("a +44 number gets its code");
    world.next_phone_code(0).await;
    settle().await;
    assert_eq!(world.sms.requests().len(), 1, "nothing went to +7");
    let to: Vec<String> = world
        .sms
        .requests()
        .iter()
        .map(|r| {
            r.json().expect("json")["to"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert!(to.iter().all(|t| !t.starts_with("+7")), "{to:?}");

    // The policy's own allowlist wins over the organisation's.
    set_policy(
        &world,
        admin::Limits {
            phone_allowed_prefixes: vec!["+7".into()],
            ..roomy()
        },
    )
    .await
    .expect("policy");
    add_phone(&world, "olga", "+79161234568")
        .await
        .expect("+7 is allowed by the policy now");
    let refused = add_phone(&world, "bob", "+447700900124")
        .await
        .expect_err("+44 is no longer allowed");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    world.stop().await;
}

/// Two phone codes an hour in all: the third number is refused with retry-after, email still
/// works, and the next hour phone codes flow again.
async fn global_budget(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    set_policy(
        &world,
        admin::Limits {
            phone_budget_per_hour: Some(2),
            ..roomy()
        },
    )
    .await
    .expect("policy");

    add_phone(&world, "p1", "+447700900001").await.expect("1st");
    add_phone(&world, "p2", "+14155550002").await.expect("2nd");
    let refused = add_phone(&world, "p3", "+33612345603")
        .await
        .expect_err("the hour's phone budget is spent");
    let secs = budget_refusal(&refused);
    assert!(
        has_reason(&refused, "PHONE_BUDGET_EXHAUSTED"),
        "{refused:?}"
    );
    add_phone(&world, "p3b", "+33612345605")
        .await
        .expect_err("still spent");
    world
        .wait_event("sspr.events.v1.reset.throttled", |e| {
            e.decode::<events::ResetThrottled>()
                .is_ok_and(|t| t.limit == "phone_budget_per_hour")
        })
        .await
        .expect("reset.throttled for the budget");

    email_still_works(&world, "mailer").await;
    settle().await;
    assert_eq!(world.sms.requests().len(), 2, "only the budget's two SMS");
    let announced = world
        .events()
        .iter()
        .filter(|e| {
            e.subject == "sspr.events.v1.reset.throttled"
                && e.decode::<events::ResetThrottled>()
                    .is_ok_and(|t| t.limit == "phone_budget_per_hour")
        })
        .count();
    assert_eq!(announced, 1, "once per window, not per refused call");

    world.clock.advance(chrono::Duration::seconds(
        i64::try_from(secs).expect("secs"),
    ));
    add_phone(&world, "p4", "+33612345604")
        .await
        .expect("a new hour, a new budget");
    world.next_phone_code(2).await;
    world.stop().await;
}

/// One code per country prefix an hour: a second +44 number is refused while +353 still works.
async fn per_prefix_budget(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    set_policy(
        &world,
        admin::Limits {
            phone_allowed_prefixes: vec!["+44".into(), "+353".into()],
            phone_budget_per_prefix_per_hour: Some(1),
            ..roomy()
        },
    )
    .await
    .expect("policy");

    add_phone(&world, "uk1", "+447700900011")
        .await
        .expect("+44");
    let refused = add_phone(&world, "uk2", "+447700900012")
        .await
        .expect_err("+44's budget is spent");
    budget_refusal(&refused);
    assert!(
        has_reason(&refused, "PHONE_PREFIX_BUDGET_EXHAUSTED"),
        "{refused:?}"
    );
    add_phone(&world, "ie1", "+353871234567")
        .await
        .expect("+353 has its own budget");
    settle().await;
    assert_eq!(world.sms.requests().len(), 2);
    world.stop().await;
}

/// Three phone codes sent and none verified (< 50 %): phone sends stop with SMS_BREAKER_OPEN
/// and an `sms.breaker_opened` event on NATS, email keeps working; once two of the codes are
/// verified (66 %) the next phone send goes out and `sms.breaker_closed` is announced.
async fn breaker(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    set_policy(
        &world,
        admin::Limits {
            breaker_min_sends: Some(3),
            breaker_min_verified_percent: Some(50),
            ..roomy()
        },
    )
    .await
    .expect("policy");

    let mut pending = Vec::new();
    for (i, phone) in ["+447700900021", "+447700900022", "+447700900023"]
        .into_iter()
        .enumerate()
    {
        let (session, method) = add_phone(&world, &format!("pump{i}"), phone)
            .await
            .expect("sent before the breaker opens");
        let code = world.next_phone_code(i).await;
        pending.push((session, method, code));
    }

    let refused = add_phone(&world, "pump3", "+447700900024")
        .await
        .expect_err("the breaker is open");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(has_reason(&refused, "SMS_BREAKER_OPEN"), "{refused:?}");
    let opened = world
        .wait_event("sspr.events.v1.sms.breaker_opened", |_| true)
        .await
        .expect("sms.breaker_opened on NATS");
    let body: events::SmsBreakerOpened = opened.decode().expect("SmsBreakerOpened");
    assert_eq!(
        (
            body.sent_last_hour,
            body.verified_last_hour,
            body.min_verified_percent
        ),
        (3, 0, 50)
    );
    assert!(body.reopens_at.is_some());
    // Announced once, however many sends are refused.
    add_phone(&world, "pump4", "+447700900025")
        .await
        .expect_err("still open");
    email_still_works(&world, "mailer").await;
    settle().await;
    assert_eq!(
        world
            .events()
            .iter()
            .filter(|e| e.subject == "sspr.events.v1.sms.breaker_opened")
            .count(),
        1
    );
    assert_eq!(world.sms.requests().len(), 3, "no SMS while open");

    // Real users confirm their phones: the ratio recovers and the breaker closes.
    for (session, method, code) in pending.iter().take(2) {
        world
            .registration()
            .confirm_method(registration::ConfirmMethodRequest {
                session_id: session.clone(),
                method_id: method.clone(),
                code: code.clone(),
            })
            .await
            .expect("confirm the phone");
    }
    add_phone(&world, "real", "+447700900026")
        .await
        .expect("the breaker closed");
    world.next_phone_code(3).await;
    world
        .wait_event("sspr.events.v1.sms.breaker_closed", |_| true)
        .await
        .expect("sms.breaker_closed on NATS");
    world.stop().await;
}

/// Out-of-range limits and malformed prefixes are refused with the field named; valid ones
/// round-trip through GetPolicy.
async fn limits_validated(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    for (limits, field) in [
        (
            admin::Limits {
                phone_sends_per_hour: Some(0),
                ..Default::default()
            },
            "limits.phone_sends_per_hour must be 1 to 100",
        ),
        (
            admin::Limits {
                phone_budget_per_hour: Some(1_000_001),
                ..Default::default()
            },
            "limits.phone_budget_per_hour",
        ),
        (
            admin::Limits {
                breaker_min_verified_percent: Some(101),
                ..Default::default()
            },
            "limits.breaker_min_verified_percent",
        ),
        (
            admin::Limits {
                phone_allowed_prefixes: vec!["0044".into()],
                ..Default::default()
            },
            "limits.phone_allowed_prefixes[0]",
        ),
    ] {
        let refused = set_policy(&world, limits).await.expect_err("out of range");
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(
            refused.message().contains(field),
            "{:?} names {field}",
            refused.message()
        );
    }
    let limits = admin::Limits {
        phone_allowed_prefixes: vec!["+44".into(), "+1264".into()],
        phone_budget_per_hour: Some(500),
        phone_budget_per_prefix_per_hour: Some(100),
        breaker_min_sends: Some(20),
        breaker_min_verified_percent: Some(30),
        ..Default::default()
    };
    set_policy(&world, limits.clone()).await.expect("valid");
    let stored = world
        .admin()
        .get_policy(World::as_admin(admin::GetPolicyRequest {}))
        .await
        .expect("get policy")
        .into_inner();
    assert_eq!(stored.limits, Some(limits));
    world.stop().await;
}

/// Starts a reset of `user_id`; returns the session and its first SMS method, if any.
async fn reset_with_sms(world: &World, user_id: &str) -> (String, Option<String>) {
    let started = world
        .reset()
        .start_reset(sspr_proto::reset::v1::StartResetRequest {
            user_id: user_id.to_owned(),
            locale: "en".to_owned(),
            ..Default::default()
        })
        .await
        .expect("start reset")
        .into_inner();
    let sms = started
        .methods
        .iter()
        .find(|m| m.kind == MethodKind::Sms as i32)
        .map(|m| m.method_id.clone());
    (started.session_id, sms)
}

async fn send_code(world: &World, session_id: &str, method_id: &str) -> Result<(), Status> {
    world
        .reset()
        .send_code(sspr_proto::reset::v1::SendCodeRequest {
            session_id: session_id.to_owned(),
            method_id: method_id.to_owned(),
            ..Default::default()
        })
        .await
        .map(|_| ())
}

/// Decoy SMS methods (unknown users) send nothing and count nowhere, and once the budget is
/// spent they are refused exactly like a real user's phone.
async fn decoys_alike(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    set_policy(
        &world,
        admin::Limits {
            phone_budget_per_hour: Some(2),
            ..roomy()
        },
    )
    .await
    .expect("policy");
    // An unknown user id whose decoy methods include an SMS one.
    let mut decoy = None;
    for i in 0..64 {
        if let (session, Some(method)) = reset_with_sms(&world, &format!("ghost{i}")).await {
            decoy = Some((session, method));
            break;
        }
    }
    let (decoy_session, decoy_method) = decoy.expect("some decoy shows an SMS method");
    for _ in 0..3 {
        send_code(&world, &decoy_session, &decoy_method)
            .await
            .expect("a decoy send answers like a real one");
    }

    // The budget is untouched by the decoys: the real user gets both of the hour's codes.
    let (session, method) = add_phone(&world, "alice", "+447700900031")
        .await
        .expect("first code");
    let code = world.next_phone_code(0).await;
    world
        .registration()
        .confirm_method(registration::ConfirmMethodRequest {
            session_id: session,
            method_id: method,
            code,
        })
        .await
        .expect("confirm");
    let (real_session, real_method) = reset_with_sms(&world, "alice").await;
    let real_method = real_method.expect("alice's phone");
    send_code(&world, &real_session, &real_method)
        .await
        .expect("second code");

    let real = send_code(&world, &real_session, &real_method)
        .await
        .expect_err("the budget is spent");
    let fake = send_code(&world, &decoy_session, &decoy_method)
        .await
        .expect_err("and the decoy is refused alike");
    assert_eq!((real.code(), real.message()), (fake.code(), fake.message()));
    budget_refusal(&real);
    budget_refusal(&fake);
    assert!(has_reason(&fake, "PHONE_BUDGET_EXHAUSTED"));
    settle().await;
    assert_eq!(world.sms.requests().len(), 2, "decoys sent nothing");
    world.stop().await;
}

/// Ten numbers racing for a budget of three through two verification replicas: exactly three
/// codes go out (the counts live in the shared database, not in a replica).
async fn two_replicas(backend: Backend) {
    let Some(world) = World::start_with_or_skip(backend, |o| o.verification_replicas = 2).await
    else {
        return;
    };
    set_policy(
        &world,
        admin::Limits {
            phone_budget_per_hour: Some(3),
            ..roomy()
        },
    )
    .await
    .expect("policy");
    let mut sessions = Vec::new();
    for i in 0..10 {
        sessions.push(signed_in(&world, &format!("racer{i}")).await);
    }
    let mut calls = Vec::new();
    for (i, session) in sessions.into_iter().enumerate() {
        let mut client = world.registration();
        calls.push(tokio::spawn(async move {
            client
                .add_method(registration::AddMethodRequest {
                    session_id: session,
                    kind: MethodKind::Sms as i32,
                    destination: format!("+4477009001{i:02}"),
                })
                .await
        }));
    }
    let mut sent = 0;
    for call in calls {
        match call.await.expect("task") {
            Ok(_) => sent += 1,
            Err(status) => {
                budget_refusal(&status);
            }
        }
    }
    assert_eq!(sent, 3, "exactly the budget, across replicas");
    world.next_phone_code(2).await;
    settle().await;
    assert_eq!(world.sms.requests().len(), 3);
    world.stop().await;
}
