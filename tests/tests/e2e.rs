//! The reset flow end to end, through the gateway, across every service over a real NATS,
//! with real SMTP and SMS-webhook deliveries, on SQLite and (when configured) PostgreSQL.

use std::time::Duration;

use prost::Message;
use sspr_proto::admin::v1::{self as admin, Scope};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::events::v1 as events;
use sspr_proto::registration::v1 as registration;
use sspr_proto::reset::v1 as reset;
use sspr_tests::{Backend, World, code_in, on_both_backends, other_code};
use tonic::Code;

const OLD_PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "a brand new passphrase";

on_both_backends! {
    one_method_flow => one_method_reset_sqlite, one_method_reset_postgres;
    two_method_flow => two_method_reset_sqlite, two_method_reset_postgres;
    scope_is_enforced => scope_is_enforced_sqlite, scope_is_enforced_postgres;
    bad_input_gets_the_right_status => bad_input_sqlite, bad_input_postgres;
    deliveries_are_encrypted_on_the_bus => deliveries_encrypted_sqlite, deliveries_encrypted_postgres;
}

/// Secrets that must never appear in an event payload or header.
fn assert_no_secret_in_events(world: &World, secrets: &[&str]) {
    for e in world.events() {
        for s in secrets {
            let needle = s.as_bytes();
            assert!(
                !e.payload.windows(needle.len()).any(|w| w == needle),
                "secret {s:?} found in the payload of {}",
                e.subject
            );
            assert!(
                !e.headers.iter().any(|(_, v)| v.contains(s)),
                "secret {s:?} found in the headers of {}",
                e.subject
            );
        }
    }
}

async fn one_method_flow(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    world
        .set_policy(Scope::All, &[], 1)
        .await
        .expect("set policy");
    world
        .upsert_user("alice", OLD_PASSWORD, &[], false)
        .await
        .expect("upsert");

    // Registration: the code is mailed over SMTP, text/plain part.
    let method_id = world
        .register_email("alice", OLD_PASSWORD, "alice@example.com")
        .await
        .expect("register");
    let registered = world
        .wait_event("sspr.events.v1.method.registered", |_| true)
        .await
        .expect("method.registered");
    let registered: events::MethodRegistered = registered.decode().expect("decode");
    assert_eq!(registered.method_id, method_id);
    assert!(!registered.masked_destination.contains("alice@example.com"));

    // Reset.
    let mut client = world.reset();
    let started = client
        .start_reset(reset::StartResetRequest {
            user_id: "alice".into(),
            locale: "en".into(),
            ..Default::default()
        })
        .await
        .expect("start")
        .into_inner();
    assert_eq!(started.methods_required, 1);
    assert_eq!(started.methods.len(), 1);
    let m = &started.methods[0];
    assert_eq!(m.method_id, method_id);
    assert_eq!(m.kind, MethodKind::Email as i32);
    assert!(
        m.masked_destination.contains('•') && !m.masked_destination.contains("alice@example.com")
    );
    // The session id is a bearer secret of at least 128 random bits (22 base64url characters).
    assert!(started.session_id.len() >= 22, "session id too short");
    assert_ne!(started.session_id, started.flow_id);

    let seen = world.mail_count("alice@example.com");
    let sent = client
        .send_code(reset::SendCodeRequest {
            session_id: started.session_id.clone(),
            method_id: method_id.clone(),
            ..Default::default()
        })
        .await
        .expect("send")
        .into_inner();
    assert!(sent.expires_at.is_some() && sent.resend_after.is_some());
    let mail = world
        .mail_to("alice@example.com", seen)
        .await
        .expect("reset mail");
    let code = code_in(&mail.text_body().expect("text part")).expect("code in mail");
    assert_eq!(code.len(), 8, "codes are 8 digits");

    let verified = client
        .verify_code(reset::VerifyCodeRequest {
            session_id: started.session_id.clone(),
            method_id: method_id.clone(),
            code: code.clone(),
        })
        .await
        .expect("verify")
        .into_inner();
    assert_eq!(verified.methods_remaining, 0);

    client
        .complete_reset(reset::CompleteResetRequest {
            session_id: started.session_id.clone(),
            new_password: NEW_PASSWORD.into(),
        })
        .await
        .expect("complete");

    // The old password no longer authenticates, the new one does.
    let mut reg = world.registration();
    let old = reg
        .begin_registration(registration::BeginRegistrationRequest {
            user_id: "alice".into(),
            password: OLD_PASSWORD.into(),
            locale: String::new(),
        })
        .await
        .expect_err("old password must fail");
    assert_eq!(old.code(), Code::Unauthenticated);
    let new = reg
        .begin_registration(registration::BeginRegistrationRequest {
            user_id: "alice".into(),
            password: NEW_PASSWORD.into(),
            locale: String::new(),
        })
        .await
        .expect("new password works")
        .into_inner();
    assert_eq!(new.registered.len(), 1);
    assert!(!new.registration_required);

    // The events of the flow, each with meta, msg id and trace context.
    let changed = world
        .wait_event("sspr.events.v1.password.changed", |e| {
            e.decode::<events::PasswordChanged>()
                .is_ok_and(|p| p.reason == "self_service_reset")
        })
        .await
        .expect("password.changed");
    let changed: events::PasswordChanged = changed.decode().expect("decode");
    let meta = changed.meta.expect("meta");
    assert_eq!(meta.user_id, "alice");
    assert_eq!(meta.flow_id, started.flow_id);
    for subject in [
        "sspr.events.v1.policy.changed",
        "sspr.events.v1.reset.started",
        "sspr.events.v1.code.issued",
        "sspr.events.v1.code.delivered",
        "sspr.events.v1.code.verified",
        "sspr.events.v1.reset.completed",
    ] {
        let e = world.wait_event(subject, |_| true).await.expect(subject);
        assert!(
            e.header("Nats-Msg-Id").is_some(),
            "{subject} without Nats-Msg-Id"
        );
        assert!(
            e.header("traceparent").is_some(),
            "{subject} without traceparent"
        );
    }
    let delivered = world
        .wait_event("sspr.events.v1.code.delivered", |_| true)
        .await
        .expect("delivered");
    let delivered: events::CodeDelivered = delivered.decode().expect("decode");
    assert!(
        delivered.latency.is_some(),
        "code.delivered carries the delivery latency"
    );
    let completed: events::ResetCompleted = world
        .wait_event("sspr.events.v1.reset.completed", |_| true)
        .await
        .expect("completed")
        .decode()
        .expect("decode");
    assert_eq!(completed.meta.expect("meta").flow_id, started.flow_id);

    assert_no_secret_in_events(
        &world,
        &[
            &code,
            OLD_PASSWORD,
            NEW_PASSWORD,
            &started.session_id,
            "alice@example.com",
        ],
    );
    world.stop().await;
}

async fn two_method_flow(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    world
        .set_policy(Scope::All, &[], 2)
        .await
        .expect("set policy");
    world
        .upsert_user("bob", OLD_PASSWORD, &[], false)
        .await
        .expect("upsert");

    // Register an email and a phone.
    let mut reg = world.registration();
    let begin = reg
        .begin_registration(registration::BeginRegistrationRequest {
            user_id: "bob".into(),
            password: OLD_PASSWORD.into(),
            locale: "fr".into(),
        })
        .await
        .expect("begin")
        .into_inner();
    assert_eq!(begin.methods_required, 2);
    assert!(begin.registration_required);
    let seen = world.mail_count("bob@example.org");
    let email = reg
        .add_method(registration::AddMethodRequest {
            session_id: begin.session_id.clone(),
            kind: MethodKind::Email as i32,
            destination: "bob@example.org".into(),
        })
        .await
        .expect("add email")
        .into_inner();
    let code = world
        .next_code("bob@example.org", seen)
        .await
        .expect("email code");
    let done = reg
        .confirm_method(registration::ConfirmMethodRequest {
            session_id: begin.session_id.clone(),
            method_id: email.method_id.clone(),
            code,
        })
        .await
        .expect("confirm email")
        .into_inner();
    assert!(
        !done.registration_complete,
        "one of two methods is not complete"
    );

    let sms_seen = world.sms.requests().len();
    let phone = reg
        .add_method(registration::AddMethodRequest {
            session_id: begin.session_id.clone(),
            kind: MethodKind::Sms as i32,
            destination: "+33612345678".into(),
        })
        .await
        .expect("add phone")
        .into_inner();
    let sms_code = next_sms_code(&world, sms_seen).await;
    let done = reg
        .confirm_method(registration::ConfirmMethodRequest {
            session_id: begin.session_id.clone(),
            method_id: phone.method_id.clone(),
            code: sms_code,
        })
        .await
        .expect("confirm phone")
        .into_inner();
    assert!(done.registration_complete);

    // Reset with both.
    let mut client = world.reset();
    let started = client
        .start_reset(reset::StartResetRequest {
            user_id: "bob".into(),
            locale: "fr".into(),
            ..Default::default()
        })
        .await
        .expect("start")
        .into_inner();
    assert_eq!(started.methods_required, 2);
    assert_eq!(started.methods.len(), 2);
    let masked_phone = started
        .methods
        .iter()
        .find(|m| m.kind == MethodKind::Sms as i32)
        .map(|m| m.masked_destination.clone())
        .expect("phone listed");
    assert!(masked_phone.ends_with("78") && !masked_phone.contains("612345"));

    let code = world
        .send_reset_code(&started.session_id, &email.method_id, "bob@example.org")
        .await
        .expect("reset mail");
    let left = client
        .verify_code(reset::VerifyCodeRequest {
            session_id: started.session_id.clone(),
            method_id: email.method_id.clone(),
            code,
        })
        .await
        .expect("verify email")
        .into_inner();
    assert_eq!(left.methods_remaining, 1);

    // One method is not enough.
    let early = client
        .complete_reset(reset::CompleteResetRequest {
            session_id: started.session_id.clone(),
            new_password: NEW_PASSWORD.into(),
        })
        .await
        .expect_err("needs two methods");
    assert_eq!(early.code(), Code::FailedPrecondition);

    let sms_seen = world.sms.requests().len();
    client
        .send_code(reset::SendCodeRequest {
            session_id: started.session_id.clone(),
            method_id: phone.method_id.clone(),
            ..Default::default()
        })
        .await
        .expect("send sms");
    let sms_code = next_sms_code(&world, sms_seen).await;
    let left = client
        .verify_code(reset::VerifyCodeRequest {
            session_id: started.session_id.clone(),
            method_id: phone.method_id.clone(),
            code: sms_code.clone(),
        })
        .await
        .expect("verify sms")
        .into_inner();
    assert_eq!(left.methods_remaining, 0);
    client
        .complete_reset(reset::CompleteResetRequest {
            session_id: started.session_id.clone(),
            new_password: NEW_PASSWORD.into(),
        })
        .await
        .expect("complete");
    world
        .wait_event("sspr.events.v1.password.changed", |e| {
            e.decode::<events::PasswordChanged>().is_ok_and(|p| {
                p.meta
                    .is_some_and(|m| m.user_id == "bob" && m.flow_id == started.flow_id)
            })
        })
        .await
        .expect("password.changed");
    assert_no_secret_in_events(
        &world,
        &[
            &sms_code,
            NEW_PASSWORD,
            &started.session_id,
            "+33612345678",
            "bob@example.org",
        ],
    );
    world.stop().await;
}

async fn next_sms_code(world: &World, seen: usize) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let requests = world.sms.requests();
        if let Some(r) = requests.get(seen) {
            assert!(
                r.body.contains("+33612345678"),
                "SMS addressed to the phone"
            );
            return code_in(&r.body.replace("+33612345678", "")).expect("code in SMS body");
        }
        assert!(tokio::time::Instant::now() < deadline, "no SMS within 15 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start(world: &World, user: &str) -> reset::StartResetResponse {
    world
        .reset()
        .start_reset(reset::StartResetRequest {
            user_id: user.into(),
            locale: String::new(),
            ..Default::default()
        })
        .await
        .expect("start reset answers for every user id")
        .into_inner()
}

/// Scope NONE / SELECTED / ALL and the admin rule are enforced; users who may not reset get a
/// decoy answer of the same shape, and nothing is ever sent to them.
async fn scope_is_enforced(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    world
        .set_policy(Scope::All, &[], 1)
        .await
        .expect("policy all");
    world
        .upsert_user("carol", OLD_PASSWORD, &["helpdesk"], false)
        .await
        .expect("carol");
    world
        .upsert_user("dave", OLD_PASSWORD, &["sales"], false)
        .await
        .expect("dave");
    let carol_method = world
        .register_email("carol", OLD_PASSWORD, "carol@example.com")
        .await
        .expect("carol registers");
    let dave_method = world
        .register_email("dave", OLD_PASSWORD, "dave@example.com")
        .await
        .expect("dave registers");

    // SELECTED helpdesk: carol in, dave out.
    world
        .set_policy(Scope::Selected, &["helpdesk"], 1)
        .await
        .expect("policy selected");
    let carol = start(&world, "carol").await;
    assert_eq!(
        carol.methods.first().map(|m| m.method_id.clone()),
        Some(carol_method.clone())
    );
    let dave = start(&world, "dave").await;
    // One or two methods, as real users have (see attack::enumeration for the full shape).
    assert!(
        (1..=2).contains(&dave.methods.len()),
        "decoy has the same shape"
    );
    assert_eq!(dave.methods_required, carol.methods_required);
    assert_ne!(
        dave.methods[0].method_id, dave_method,
        "out of scope: no real method revealed"
    );
    let unknown = start(&world, "nobody").await;
    assert!((1..=2).contains(&unknown.methods.len()));
    assert_eq!(
        start(&world, "nobody").await.methods[0].masked_destination,
        unknown.methods[0].masked_destination,
        "decoys are deterministic"
    );

    // A decoy send answers like a real one and sends nothing.
    let mails_before = world.smtp.messages().len();
    world
        .reset()
        .send_code(reset::SendCodeRequest {
            session_id: dave.session_id.clone(),
            method_id: dave.methods[0].method_id.clone(),
            ..Default::default()
        })
        .await
        .expect("decoy send answers like a real one");
    let denied = world
        .registration()
        .begin_registration(registration::BeginRegistrationRequest {
            user_id: "dave".into(),
            password: OLD_PASSWORD.into(),
            locale: String::new(),
        })
        .await
        .expect_err("dave is out of scope for registration");
    assert_eq!(denied.code(), Code::FailedPrecondition);

    // NONE: nobody.
    world
        .set_policy(Scope::None, &[], 1)
        .await
        .expect("policy none");
    let carol_none = start(&world, "carol").await;
    assert_ne!(
        carol_none.methods[0].method_id, carol_method,
        "scope NONE: decoy only"
    );
    world
        .reset()
        .send_code(reset::SendCodeRequest {
            session_id: carol_none.session_id.clone(),
            method_id: carol_none.methods[0].method_id.clone(),
            ..Default::default()
        })
        .await
        .expect("decoy send");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        world.smtp.messages().len(),
        mails_before,
        "decoys never send mail"
    );

    // Admins always need two methods, whatever the policy says.
    world
        .set_policy(Scope::All, &[], 1)
        .await
        .expect("policy all");
    world
        .upsert_user("root", OLD_PASSWORD, &[], true)
        .await
        .expect("admin");
    let begin = world
        .registration()
        .begin_registration(registration::BeginRegistrationRequest {
            user_id: "root".into(),
            password: OLD_PASSWORD.into(),
            locale: String::new(),
        })
        .await
        .expect("admin registration")
        .into_inner();
    assert_eq!(begin.methods_required, 2);
    world.stop().await;
}

/// Bad input of every kind gets the right status, and codes are single use, expire and are
/// bound to their method.
async fn bad_input_gets_the_right_status(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    let mut policy = world.set_policy(Scope::All, &[], 1).await.expect("policy");
    // Many wrong codes on one user below: keep the reset block (5 failures) out of the way.
    policy.limits = Some(admin::Limits {
        failed_verifications_per_day: Some(100),
        ..Default::default()
    });
    world
        .admin()
        .set_policy(World::as_admin(admin::SetPolicyRequest {
            policy: Some(policy),
        }))
        .await
        .expect("policy with limits");
    world
        .upsert_user("erin", OLD_PASSWORD, &[], false)
        .await
        .expect("user");
    let method_id = world
        .register_email("erin", OLD_PASSWORD, "erin@example.com")
        .await
        .expect("register");
    let mut client = world.reset();

    let status = |r: Result<tonic::Response<reset::StartResetResponse>, tonic::Status>| {
        r.err().map(|s| s.code())
    };
    assert_eq!(
        status(
            client
                .start_reset(reset::StartResetRequest {
                    user_id: String::new(),
                    locale: String::new(),
                    ..Default::default()
                })
                .await
        ),
        Some(Code::InvalidArgument)
    );
    assert_eq!(
        status(
            client
                .start_reset(reset::StartResetRequest {
                    user_id: "x".repeat(10_000),
                    locale: String::new(),
                    ..Default::default()
                })
                .await
        ),
        Some(Code::InvalidArgument)
    );

    let unknown = client
        .send_code(reset::SendCodeRequest {
            session_id: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
            method_id: method_id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("unknown session");
    assert_eq!(unknown.code(), Code::Unauthenticated);

    let started = start(&world, "erin").await;
    let wrong_method = client
        .send_code(reset::SendCodeRequest {
            session_id: started.session_id.clone(),
            method_id: "m_not_mine".into(),
            ..Default::default()
        })
        .await
        .expect_err("wrong method id");
    assert_eq!(wrong_method.code(), Code::InvalidArgument);

    let code = world
        .send_reset_code(&started.session_id, &method_id, "erin@example.com")
        .await
        .expect("code");
    let wrong = other_code(&code);
    let verify = |code: &str| reset::VerifyCodeRequest {
        session_id: started.session_id.clone(),
        method_id: method_id.clone(),
        code: code.to_owned(),
    };
    assert_eq!(
        client
            .verify_code(verify(&wrong))
            .await
            .expect_err("wrong code")
            .code(),
        Code::InvalidArgument
    );
    assert_eq!(
        client
            .verify_code(verify("12ab"))
            .await
            .expect_err("malformed code")
            .code(),
        Code::InvalidArgument
    );
    client
        .verify_code(verify(&code))
        .await
        .expect("right code after one wrong try");
    let reused = client
        .verify_code(verify(&code))
        .await
        .expect_err("codes are single use");
    assert_eq!(reused.code(), Code::FailedPrecondition);

    // An expired code is refused.
    let again = start(&world, "erin").await;
    let code = world
        .send_reset_code(&again.session_id, &method_id, "erin@example.com")
        .await
        .expect("code");
    world.clock.advance(chrono::Duration::minutes(11));
    let expired = client
        .verify_code(reset::VerifyCodeRequest {
            session_id: again.session_id.clone(),
            method_id: method_id.clone(),
            code,
        })
        .await
        .expect_err("expired");
    // The session (15 minutes) is still valid: it is the code that expired.
    assert_eq!(expired.code(), Code::FailedPrecondition, "{expired:?}");

    // Five wrong tries use the code up.
    let third = start(&world, "erin").await;
    let code = world
        .send_reset_code(&third.session_id, &method_id, "erin@example.com")
        .await
        .expect("code");
    let wrong = other_code(&code);
    for _ in 0..5 {
        let _ = client
            .verify_code(reset::VerifyCodeRequest {
                session_id: third.session_id.clone(),
                method_id: method_id.clone(),
                code: wrong.clone(),
            })
            .await;
    }
    let exhausted = client
        .verify_code(reset::VerifyCodeRequest {
            session_id: third.session_id.clone(),
            method_id: method_id.clone(),
            code,
        })
        .await
        .expect_err("tries exhausted");
    assert_eq!(exhausted.code(), Code::FailedPrecondition);

    // Admin API without the token.
    let anonymous = world
        .admin()
        .get_policy(admin::GetPolicyRequest {})
        .await
        .expect_err("no token");
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    // A policy the service cannot accept.
    let bad_policy = world
        .set_policy(Scope::All, &[], 3)
        .await
        .expect_err("3 methods");
    assert_eq!(
        bad_policy.downcast_ref::<tonic::Status>().map(|s| s.code()),
        Some(Code::InvalidArgument)
    );
    world.stop().await;
}

/// The delivery to notification travels on SSPR_DELIVERY encrypted: the code never appears on
/// the bus in clear.
async fn deliveries_are_encrypted_on_the_bus(backend: Backend) {
    use futures::StreamExt;
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    let client = world.nats.connect().await.expect("nats");
    let mut deliveries = client
        .subscribe("sspr.delivery.v1.>")
        .await
        .expect("subscribe");
    client.flush().await.expect("flush");
    world.set_policy(Scope::All, &[], 1).await.expect("policy");
    world
        .upsert_user("frank", OLD_PASSWORD, &[], false)
        .await
        .expect("user");
    world
        .register_email("frank", OLD_PASSWORD, "frank@example.com")
        .await
        .expect("register");
    let mail = world.mail_to("frank@example.com", 0).await.expect("mail");
    let code = code_in(&mail.text_body().expect("text")).expect("code");
    let msg = tokio::time::timeout(Duration::from_secs(5), deliveries.next())
        .await
        .expect("a delivery message")
        .expect("stream open");
    assert!(msg.subject.as_str().starts_with("sspr.delivery.v1.email"));
    let raw = msg.payload.to_vec();
    assert!(
        !raw.windows(code.len()).any(|w| w == code.as_bytes()),
        "code in clear on the bus"
    );
    assert!(
        !raw.windows(17).any(|w| w == b"frank@example.com"),
        "destination in clear on the bus"
    );
    let sealed = sspr_proto::internal::notification::v1::SealedDelivery::decode(raw.as_slice())
        .expect("sealed delivery");
    let opened = sspr_bus::sealed::open(&world.code_key, &sealed).expect("opens with the key");
    assert_eq!(opened.code, code);
    assert!(
        sspr_bus::sealed::open(&[0u8; 32], &sealed).is_err(),
        "another key cannot open it"
    );
    world.stop().await;
}
