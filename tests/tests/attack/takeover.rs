//! Attacks on: takeover (see main.rs). An attacker who stole a user's password tries to attach
//! their own method (step-up), to do so unnoticed (announcements), to use it for a reset at once
//! (cool-down), and to find or confirm passwords through the sign-in calls (throttles, equal
//! Argon2id work for unknown users).

use std::sync::Arc;
use std::time::Duration;

use sspr_directory::hashing::{Work, WorkLog};
use sspr_proto::admin::v1::{self as admin, Scope};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::events::v1 as events;
use sspr_proto::registration::v1 as registration;
use sspr_proto::reset::v1 as reset;
use sspr_tests::{Backend, World, code_in, on_both_backends, other_code};
use tonic::{Code, Status};

const PASSWORD: &str = "correct horse battery";
const ALICE_MAIL: &str = "alice@example.com";
const ALICE_PHONE: &str = "+33612345678";

on_both_backends! {
    stolen_password => stolen_password_alone_cannot_add_a_method, stolen_password_alone_cannot_add_a_method_postgres;
    sign_in_throttles => sign_in_password_checks_are_throttled_per_user_and_ip, sign_in_password_checks_are_throttled_per_user_and_ip_postgres;
    cool_down => new_method_is_not_usable_for_reset_during_cool_down, new_method_is_not_usable_for_reset_during_cool_down_postgres;
}

/// Scope ALL, one method of email/SMS/voice required, `limits` (phones: +33 allowed).
async fn set_policy(world: &World, mut limits: admin::Limits) {
    if limits.phone_allowed_prefixes.is_empty() {
        limits.phone_allowed_prefixes = vec!["+33".into()];
    }
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
        .expect("set the policy");
}

async fn begin(
    world: &World,
    user_id: &str,
    password: &str,
) -> Result<registration::BeginRegistrationResponse, Status> {
    world
        .registration()
        .begin_registration(registration::BeginRegistrationRequest {
            user_id: user_id.into(),
            password: password.into(),
            locale: "en".into(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn add(
    world: &World,
    session: &str,
    kind: MethodKind,
    destination: &str,
) -> Result<String, Status> {
    world
        .registration()
        .add_method(registration::AddMethodRequest {
            session_id: session.into(),
            kind: kind as i32,
            destination: destination.into(),
        })
        .await
        .map(|r| r.into_inner().method_id)
}

async fn confirm(world: &World, session: &str, method_id: &str, code: String) {
    world
        .registration()
        .confirm_method(registration::ConfirmMethodRequest {
            session_id: session.into(),
            method_id: method_id.into(),
            code,
        })
        .await
        .expect("confirm");
}

/// Waits for the SMS beyond the first `seen` ones and returns its body.
async fn next_sms(world: &World, seen: usize) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(r) = world.sms.requests().get(seen) {
            return r.body.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "no SMS within 15 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn assert_step_up_required(status: &Status) {
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status
            .message()
            .contains("verify one of your registered methods first"),
        "{status:?}"
    );
    assert!(
        String::from_utf8_lossy(status.details()).contains("STEP_UP_REQUIRED"),
        "ErrorInfo reason STEP_UP_REQUIRED: {status:?}"
    );
}

/// The methods a reset for `user_id` offers.
async fn reset_methods(world: &World, user_id: &str) -> Vec<String> {
    world
        .reset()
        .start_reset(reset::StartResetRequest {
            user_id: user_id.into(),
            locale: "en".into(),
            ..Default::default()
        })
        .await
        .expect("start reset")
        .into_inner()
        .methods
        .into_iter()
        .map(|m| m.method_id)
        .collect()
}

/// Alice with her email, registered at her first sign-in.
async fn alice_with_email(world: &World) -> String {
    world
        .upsert_user("alice", PASSWORD, &[], false)
        .await
        .expect("upsert");
    world
        .register_email("alice", PASSWORD, ALICE_MAIL)
        .await
        .expect("first registration needs no step-up")
}

async fn stolen_password(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    set_policy(&world, admin::Limits::default()).await;
    let email = alice_with_email(&world).await;

    // The attacker signs in with the stolen password.
    let session = begin(&world, "alice", PASSWORD).await.expect("begin");
    assert!(session.step_up_required);
    let sms_before = world.sms.requests().len();
    for (kind, destination) in [
        (MethodKind::Sms, "+33698765432"),
        (MethodKind::Email, "attacker@evil.example"),
    ] {
        let refused = add(&world, &session.session_id, kind, destination)
            .await
            .expect_err("adding without a step-up");
        assert_step_up_required(&refused);
    }
    let refused = world
        .registration()
        .remove_method(registration::RemoveMethodRequest {
            session_id: session.session_id.clone(),
            method_id: email.clone(),
        })
        .await
        .expect_err("removing without a step-up");
    assert_step_up_required(&refused);
    // A guessed step-up code does not help.
    world
        .registration()
        .send_step_up_code(registration::SendStepUpCodeRequest {
            session_id: session.session_id.clone(),
            method_id: email.clone(),
        })
        .await
        .expect("the code goes to alice, not to the attacker");
    let guessed = world
        .registration()
        .verify_step_up_code(registration::VerifyStepUpCodeRequest {
            session_id: session.session_id.clone(),
            method_id: email.clone(),
            code: "12345678".into(),
        })
        .await
        .expect_err("a guessed code");
    assert_ne!(guessed.code(), Code::Ok);
    let refused = add(
        &world,
        &session.session_id,
        MethodKind::Email,
        "attacker@evil.example",
    )
    .await
    .expect_err("still no step-up");
    assert_step_up_required(&refused);

    // Nothing reached the attacker, and reset still offers only alice's email.
    assert_eq!(world.mail_count("attacker@evil.example"), 0);
    assert_eq!(world.sms.requests().len(), sms_before);
    assert_eq!(reset_methods(&world, "alice").await, vec![email]);
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_up_code_from_an_existing_method_allows_adding_one() {
    let Some(world) = World::start_or_skip(Backend::Sqlite).await else {
        return;
    };
    set_policy(
        &world,
        admin::Limits {
            new_method_cooldown_hours: Some(0),
            ..Default::default()
        },
    )
    .await;
    let email = alice_with_email(&world).await;

    let session = begin(&world, "alice", PASSWORD).await.expect("begin");
    assert!(session.step_up_required);
    let seen = world.mail_count(ALICE_MAIL);
    let sent = world
        .registration()
        .send_step_up_code(registration::SendStepUpCodeRequest {
            session_id: session.session_id.clone(),
            method_id: email.clone(),
        })
        .await
        .expect("step-up code")
        .into_inner();
    assert!(sent.expires_at.is_some());
    let mail = world.mail_to(ALICE_MAIL, seen).await.expect("step-up mail");
    let text = mail.text_body().expect("text");
    assert!(text.contains("confirm it is you"), "{text}");
    let code = code_in(&text).expect("code");
    let wrong = world
        .registration()
        .verify_step_up_code(registration::VerifyStepUpCodeRequest {
            session_id: session.session_id.clone(),
            method_id: email.clone(),
            code: other_code(&code),
        })
        .await
        .expect_err("wrong code");
    assert_eq!(wrong.code(), Code::InvalidArgument, "{wrong:?}");
    world
        .registration()
        .verify_step_up_code(registration::VerifyStepUpCodeRequest {
            session_id: session.session_id.clone(),
            method_id: email.clone(),
            code,
        })
        .await
        .expect("step-up");

    let seen = world.mail_count("alice.home@example.net");
    let added = add(
        &world,
        &session.session_id,
        MethodKind::Email,
        "alice.home@example.net",
    )
    .await
    .expect("add after the step-up");
    let code = world
        .next_code("alice.home@example.net", seen)
        .await
        .expect("registration code");
    confirm(&world, &session.session_id, &added, code).await;
    let mut offered = reset_methods(&world, "alice").await;
    offered.sort();
    let mut expected = vec![email, added];
    expected.sort();
    assert_eq!(offered, expected, "cool-down 0: usable at once");
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfirming_an_existing_method_needs_no_step_up() {
    let Some(world) = World::start_or_skip(Backend::Sqlite).await else {
        return;
    };
    set_policy(&world, admin::Limits::default()).await;
    let email = alice_with_email(&world).await;
    let session = begin(&world, "alice", PASSWORD).await.expect("begin");
    let seen = world.mail_count(ALICE_MAIL);
    let again = add(&world, &session.session_id, MethodKind::Email, ALICE_MAIL)
        .await
        .expect("re-confirmation needs no step-up");
    assert_eq!(again, email);
    let code = world.next_code(ALICE_MAIL, seen).await.expect("code");
    confirm(&world, &session.session_id, &again, code).await;
    // Proving the existing address stepped the session up.
    add(
        &world,
        &session.session_id,
        MethodKind::Email,
        "alice.home@example.net",
    )
    .await
    .expect("add after a re-confirmation");
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_changes_are_announced_to_every_existing_method() {
    let Some(world) = World::start_or_skip(Backend::Sqlite).await else {
        return;
    };
    set_policy(&world, admin::Limits::default()).await;
    world
        .upsert_user("alice", PASSWORD, &[], false)
        .await
        .expect("upsert");
    // First registration: an email and a phone, in one session (no step-up, no announcement
    // to the method being added).
    let first = begin(&world, "alice", PASSWORD).await.expect("begin");
    let seen = world.mail_count(ALICE_MAIL);
    let email = add(&world, &first.session_id, MethodKind::Email, ALICE_MAIL)
        .await
        .expect("add email");
    let code = world.next_code(ALICE_MAIL, seen).await.expect("code");
    confirm(&world, &first.session_id, &email, code).await;
    let sms_seen = world.sms.requests().len();
    let phone = add(&world, &first.session_id, MethodKind::Sms, ALICE_PHONE)
        .await
        .expect("add phone");
    let body = next_sms(&world, sms_seen).await;
    let code = code_in(&body.replace(ALICE_PHONE, "")).expect("code in SMS");
    confirm(&world, &first.session_id, &phone, code).await;
    // The phone's addition is announced to the email only (never to the phone itself).
    let notice = world
        .wait_event(events_subject(), |e| {
            e.decode::<events::MethodChangeAnnounced>()
                .is_ok_and(|a| a.method_id == phone)
        })
        .await
        .expect("phone announced")
        .decode::<events::MethodChangeAnnounced>()
        .expect("decodes");
    assert_eq!((notice.change.as_str(), notice.notified), ("registered", 1));

    // Later, a new email (after a step-up): the two existing methods hear of it, masked.
    let session = begin(&world, "alice", PASSWORD).await.expect("begin");
    world.step_up(&session).await.expect("step-up");
    let mails_before = world.mail_count(ALICE_MAIL);
    let sms_before = world.sms.requests().len();
    let new_address = "alice.private@example.net";
    let seen = world.mail_count(new_address);
    let added = add(&world, &session.session_id, MethodKind::Email, new_address)
        .await
        .expect("add");
    let code = world.next_code(new_address, seen).await.expect("code");
    confirm(&world, &session.session_id, &added, code).await;
    let announced = world
        .wait_event(events_subject(), |e| {
            e.decode::<events::MethodChangeAnnounced>()
                .is_ok_and(|a| a.method_id == added)
        })
        .await
        .expect("announced")
        .decode::<events::MethodChangeAnnounced>()
        .expect("decodes");
    assert_eq!(announced.change, "registered");
    assert_eq!(announced.notified, 2, "the email and the phone");

    let mail = world
        .mail_to(ALICE_MAIL, mails_before)
        .await
        .expect("announcement mail");
    let text = mail.text_body().expect("text");
    assert!(
        mail.data
            .contains("A contact method of your account changed"),
        "subject"
    );
    assert!(text.contains("a•••@e•••.net"), "masked: {text}");
    assert!(!mail.data.contains("alice.private") && !mail.data.contains("example.net"));
    assert!(code_in(&text).is_none(), "an announcement carries no code");
    let sms = world
        .sms
        .requests()
        .get(sms_before)
        .cloned()
        .expect("announcement SMS");
    assert!(sms.body.contains("a•••@e•••.net"), "{}", sms.body);
    assert!(!sms.body.contains("alice.private"));
    assert_eq!(
        world.mail_count(new_address),
        1,
        "the new method gets only its registration code"
    );

    // A removal is announced to the methods left.
    world
        .registration()
        .remove_method(registration::RemoveMethodRequest {
            session_id: session.session_id.clone(),
            method_id: phone.clone(),
        })
        .await
        .expect("remove the phone (stepped up)");
    let removed = world
        .wait_event(events_subject(), |e| {
            e.decode::<events::MethodChangeAnnounced>()
                .is_ok_and(|a| a.method_id == phone && a.change == "removed")
        })
        .await
        .expect("removal announced")
        .decode::<events::MethodChangeAnnounced>()
        .expect("decodes");
    assert_eq!(removed.notified, 2, "both emails");

    // A redelivered event sends nothing twice.
    let registered = world
        .events()
        .into_iter()
        .find(|e| {
            e.subject == "sspr.events.v1.method.registered"
                && e.decode::<events::MethodRegistered>()
                    .is_ok_and(|r| r.method_id == added)
        })
        .expect("method.registered recorded");
    let mails = world.smtp.messages().len();
    let texts = world.sms.requests().len();
    let client = world.nats.connect().await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "redelivery-of-the-same-event");
    js.publish_with_headers(
        registered.subject.clone(),
        headers,
        registered.payload.clone().into(),
    )
    .await
    .expect("publish")
    .await
    .expect("stored");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(world.smtp.messages().len(), mails, "no mail twice");
    assert_eq!(world.sms.requests().len(), texts, "no SMS twice");
    world.stop().await;
}

fn events_subject() -> &'static str {
    "sspr.events.v1.method.change_announced"
}

async fn cool_down(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    set_policy(&world, admin::Limits::default()).await;
    let email = alice_with_email(&world).await;
    let added = world
        .register_email("alice", PASSWORD, "alice.new@example.net")
        .await
        .expect("a second email, with a step-up");
    assert_eq!(
        reset_methods(&world, "alice").await,
        vec![email.clone()],
        "the new method is not offered during the 24 h cool-down"
    );
    world.clock.advance(chrono::Duration::hours(23));
    assert_eq!(reset_methods(&world, "alice").await, vec![email.clone()]);
    world.clock.advance(chrono::Duration::hours(1));
    let mut offered = reset_methods(&world, "alice").await;
    offered.sort();
    let mut both = vec![email, added];
    both.sort();
    assert_eq!(offered, both, "usable once the cool-down passed");
    world.stop().await;
}

/// Each BeginRegistration/GetStatus attempt with `user_id`; the gRPC code it got.
async fn sign_in(
    world: &World,
    user_id: &str,
    password: &str,
    status_call: bool,
) -> Result<(), Status> {
    if status_call {
        world
            .registration()
            .get_status(registration::GetStatusRequest {
                user_id: user_id.into(),
                password: password.into(),
            })
            .await
            .map(|_| ())
    } else {
        begin(world, user_id, password).await.map(|_| ())
    }
}

async fn sign_in_throttles(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    set_policy(&world, admin::Limits::default()).await;
    world
        .upsert_user("alice", PASSWORD, &[], false)
        .await
        .expect("upsert");
    let mut attempts = 0;
    // Per user id: 10 password checks an hour, then refused the same way for a real and an
    // unknown user id, whatever the password.
    let mut refusals = Vec::new();
    for user in ["alice", "ghost"] {
        for i in 0..10 {
            attempts += 1;
            let got = sign_in(&world, user, "wrong guess", i % 2 == 1).await;
            assert_eq!(
                got.err().map(|s| s.code()),
                Some(Code::Unauthenticated),
                "{user} attempt {i}"
            );
        }
        attempts += 1;
        let refused = sign_in(&world, user, PASSWORD, false)
            .await
            .expect_err("the eleventh check");
        assert_eq!(refused.code(), Code::ResourceExhausted, "{user}");
        let retry: u64 = refused
            .metadata()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("retry-after metadata");
        assert!((1..=3600).contains(&retry), "{retry}");
        refusals.push(refused.message().to_owned());
    }
    assert_eq!(
        refusals[0], refusals[1],
        "same refusal for known and unknown"
    );
    assert!(!refusals[0].contains("alice"));

    // Per client IP (the gateway's peer address): 30 checks a minute across user ids.
    let mut n = 0;
    let refused = loop {
        attempts += 1;
        n += 1;
        match sign_in(&world, &format!("sprayed{n}"), "Winter2026!", false).await {
            Err(s) if s.code() == Code::ResourceExhausted => break s,
            Err(s) => assert_eq!(s.code(), Code::Unauthenticated),
            Ok(()) => panic!("an unknown user signed in"),
        }
        assert!(n < 100, "never throttled per IP");
    };
    assert_eq!(attempts, 31, "the 31st check in the minute is refused");
    assert!(refused.metadata().get("retry-after").is_some());
    // A minute later the IP may try again (alice's own hour is not over).
    world.clock.advance(chrono::Duration::minutes(1));
    let after = sign_in(&world, "sprayed-after", "x", false)
        .await
        .expect_err("unknown user");
    assert_eq!(after.code(), Code::Unauthenticated);
    world.stop().await;
}

/// The directory's Argon2 work counted per authenticate: the same for a real user, an unknown
/// user id and a user without a password (one Argon2id verification each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_costs_the_same_argon2_work() {
    let log = Arc::new(WorkLog::default());
    let configured = Arc::clone(&log);
    let Some(world) = World::start_with_or_skip(Backend::Sqlite, move |o| {
        o.directory.work_log = Some(configured);
    })
    .await
    else {
        return;
    };
    set_policy(&world, admin::Limits::default()).await;
    world
        .upsert_user("alice", PASSWORD, &[], false)
        .await
        .expect("upsert");
    world
        .upsert_user("nopassword", "", &[], false)
        .await
        .expect("upsert");
    log.take();
    let mut work = Vec::new();
    for (user, password) in [
        ("alice", "wrong guess"),
        ("ghost", "wrong guess"),
        ("nopassword", "wrong guess"),
        ("alice", PASSWORD),
    ] {
        let _ = begin(&world, user, password).await;
        let done = log.take();
        assert_eq!(done.len(), 1, "{user}: {done:?}");
        assert!(matches!(done[0], Work::Verify(_)), "{user}: {done:?}");
        work.push(done);
    }
    assert!(work.windows(2).all(|w| w[0] == w[1]), "{work:?}");
    world.stop().await;
}
