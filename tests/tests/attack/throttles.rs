//! Attacks on: throttles (see main.rs). Email and SMS bombing of one user, of one destination
//! across users, floods from one client IP, guessing until blocked, SMS pumping through
//! registration, and the same limits against decoys and across two verification replicas.
//! Every refusal must be RESOURCE_EXHAUSTED with `retry-after` metadata.

use std::time::Duration;

use sspr_proto::admin::v1::{self as admin, Scope};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::events::v1 as events;
use sspr_proto::registration::v1 as registration;
use sspr_proto::reset::v1 as reset;
use sspr_tests::{Backend, World, on_both_backends, other_code};
use tonic::{Code, Status};

const PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "a brand new passphrase for throttles";

on_both_backends! {
    phone_sends_per_user => phone_sends_per_user_are_capped_per_hour, phone_sends_per_user_are_capped_per_hour_postgres;
    email_sends_per_user => email_sends_per_user_are_capped_per_ten_minutes, email_sends_per_user_are_capped_per_ten_minutes_postgres;
    failures_block_reset => five_failed_verifications_block_reset_for_a_day_but_not_sign_in, five_failed_verifications_block_reset_for_a_day_but_not_sign_in_postgres;
    admin_clear_block => admin_clear_block_lifts_the_block, admin_clear_block_lifts_the_block_postgres;
    reset_clears_counters => successful_reset_clears_the_counters, successful_reset_clears_the_counters_postgres;
    destination_sends => destination_sends_are_capped_across_users, destination_sends_are_capped_across_users_postgres;
    client_ip_limits => client_ip_is_limited_on_start_reset_and_send_code, client_ip_is_limited_on_start_reset_and_send_code_postgres;
    registration_codes_count => registration_codes_count_against_the_user_budget, registration_codes_count_against_the_user_budget_postgres;
    resend_after => resend_after_is_enforced_and_a_new_code_voids_the_old, resend_after_is_enforced_and_a_new_code_voids_the_old_postgres;
    decoys_obey => decoys_obey_the_throttles_and_block, decoys_obey_the_throttles_and_block_postgres;
    two_replicas => limits_hold_across_two_verification_replicas, limits_hold_across_two_verification_replicas_postgres;
    challenge => challenge_required_above_the_ip_threshold, challenge_required_above_the_ip_threshold_postgres;
}

/// Scope ALL, one method (email or SMS), and `limits`.
async fn set_policy(world: &World, limits: admin::Limits) {
    set_policy_for(world, limits, &[MethodKind::Email, MethodKind::Sms]).await;
}

async fn set_policy_for(world: &World, limits: admin::Limits, kinds: &[MethodKind]) {
    let policy = admin::Policy {
        scope: Scope::All as i32,
        methods_required: 1,
        allowed_methods: kinds.iter().map(|k| *k as i32).collect(),
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

/// A user with one email method; returns its method id.
async fn user_with_email(world: &World, user_id: &str, address: &str) -> String {
    world
        .upsert_user(user_id, PASSWORD, &[], false)
        .await
        .expect("user");
    world
        .register_email(user_id, PASSWORD, address)
        .await
        .expect("register the email")
}

async fn verify(
    world: &World,
    session_id: &str,
    method_id: &str,
    code: &str,
) -> Result<(), Status> {
    world
        .reset()
        .verify_code(reset::VerifyCodeRequest {
            session_id: session_id.to_owned(),
            method_id: method_id.to_owned(),
            code: code.to_owned(),
        })
        .await
        .map(|_| ())
}

/// Asserts a throttled answer: RESOURCE_EXHAUSTED with `retry-after` seconds; returns them.
fn throttled(status: &Status) -> u64 {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let secs: u64 = status
        .metadata()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("retry-after metadata on {status:?}"));
    assert!(secs >= 1, "{status:?}");
    secs
}

/// `n` wrong guesses in a fresh flow of `user_id` whose only method is `method_id`.
async fn fail_verifications(world: &World, user_id: &str, n: usize) -> reset::StartResetResponse {
    let flow = world.start_reset(user_id).await;
    let method = flow.methods[0].method_id.clone();
    world
        .send_code(&flow.session_id, &method)
        .await
        .expect("send");
    for _ in 0..n {
        let status = verify(world, &flow.session_id, &method, "00000000")
            .await
            .expect_err("a wrong code");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }
    flow
}

async fn get_block(world: &World, user_id: &str) -> admin::GetBlockResponse {
    world
        .admin()
        .get_block(World::as_admin(admin::GetBlockRequest {
            user_id: user_id.to_owned(),
        }))
        .await
        .expect("get block")
        .into_inner()
}

async fn sign_in_works(world: &World, user_id: &str) {
    world
        .registration()
        .begin_registration(registration::BeginRegistrationRequest {
            user_id: user_id.to_owned(),
            password: PASSWORD.to_owned(),
            locale: "en".to_owned(),
        })
        .await
        .expect("sign-in (BeginRegistration) still works");
}

/// The phone budget per user: 5 SMS/voice codes an hour (registration's included), then
/// RESOURCE_EXHAUSTED with retry-after; an hour later sends work again; a `reset.throttled`
/// event once, not per refused call.
async fn phone_sends_per_user(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    set_policy(&world, admin::Limits::default()).await;
    world
        .upsert_user("pat", PASSWORD, &[], false)
        .await
        .expect("user");
    let mut reg = world.registration();
    let begin = reg
        .begin_registration(registration::BeginRegistrationRequest {
            user_id: "pat".into(),
            password: PASSWORD.into(),
            locale: "en".into(),
        })
        .await
        .expect("begin")
        .into_inner();
    let seen = world.sms.requests().len();
    let added = reg
        .add_method(registration::AddMethodRequest {
            session_id: begin.session_id.clone(),
            kind: MethodKind::Sms as i32,
            destination: "+33612345678".into(),
        })
        .await
        .expect("add a phone")
        .into_inner();
    let code = world.next_phone_code(seen).await;
    reg.confirm_method(registration::ConfirmMethodRequest {
        session_id: begin.session_id,
        method_id: added.method_id.clone(),
        code,
    })
    .await
    .expect("confirm the phone");

    // One send for registration; four more for reset, then the fifth reset send is refused.
    let flow = world.start_reset("pat").await;
    for i in 0..4 {
        world
            .send_code(&flow.session_id, &added.method_id)
            .await
            .unwrap_or_else(|s| panic!("send #{i}: {s:?}"));
    }
    for _ in 0..3 {
        let refused = world
            .send_code(&flow.session_id, &added.method_id)
            .await
            .expect_err("the sixth phone code in an hour is refused");
        let secs = throttled(&refused);
        assert!((3500..=3600).contains(&secs), "about an hour: {secs}");
    }
    let event = world
        .wait_event("sspr.events.v1.reset.throttled", |_| true)
        .await
        .expect("reset.throttled");
    let body: events::ResetThrottled = event.decode().expect("decode");
    assert_eq!(body.limit, "phone_sends_per_hour");
    assert_eq!(body.meta.expect("meta").user_id, "pat");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let throttled_events = world
        .events()
        .iter()
        .filter(|e| e.subject == "sspr.events.v1.reset.throttled")
        .count();
    assert_eq!(throttled_events, 1, "one event per limit and window");

    world.clock.advance(chrono::Duration::minutes(61));
    let flow = world.start_reset("pat").await;
    world
        .send_code(&flow.session_id, &added.method_id)
        .await
        .expect("an hour later a phone code goes out again");
    world.stop().await;
}

/// The email budget per user: 10 codes per 10 minutes.
async fn email_sends_per_user(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    // The destination's own limit (10 an hour by default) would stop the eleventh too.
    set_policy(
        &world,
        admin::Limits {
            destination_sends_per_hour: Some(100),
            ..Default::default()
        },
    )
    .await;
    // The registration code is the first of the ten.
    let method = user_with_email(&world, "eve", "eve@example.com").await;
    let flow = world.start_reset("eve").await;
    for i in 0..9 {
        world
            .send_code(&flow.session_id, &method)
            .await
            .unwrap_or_else(|s| panic!("send #{i}: {s:?}"));
    }
    let refused = world
        .send_code(&flow.session_id, &method)
        .await
        .expect_err("the eleventh email in 10 minutes is refused");
    let secs = throttled(&refused);
    assert!((500..=600).contains(&secs), "about 10 minutes: {secs}");
    world.clock.advance(chrono::Duration::minutes(11));
    let flow = world.start_reset("eve").await;
    world
        .send_code(&flow.session_id, &method)
        .await
        .expect("10 minutes later emails go out again");
    world.stop().await;
}

/// Five wrong codes block the user id from self-service reset for 24 hours (StartReset,
/// SendCode, VerifyCode all RESOURCE_EXHAUSTED with retry-after, a `reset.blocked` event),
/// while sign-in keeps working; the block ends on its own.
async fn failures_block_reset(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    set_policy(&world, admin::Limits::default()).await;
    let method = user_with_email(&world, "bob", "bob@example.com").await;
    let flow = fail_verifications(&world, "bob", 4).await;
    assert_eq!(get_block(&world, "bob").await.failed_verifications, 4);
    // A second flow: its fifth wrong guess blocks.
    let second = world.start_reset("bob").await;
    world
        .send_code(&second.session_id, &method)
        .await
        .expect("send");
    let fifth = verify(&world, &second.session_id, &method, "00000000")
        .await
        .expect_err("wrong");
    assert_eq!(fifth.code(), Code::InvalidArgument);

    let secs = throttled(&world.try_start_reset("bob").await.expect_err("blocked"));
    assert!((86_000..=86_400).contains(&secs), "about a day: {secs}");
    throttled(
        &world
            .send_code(&flow.session_id, &method)
            .await
            .expect_err("blocked"),
    );
    throttled(
        &verify(&world, &second.session_id, &method, "00000000")
            .await
            .expect_err("blocked"),
    );
    let event = world
        .wait_event("sspr.events.v1.reset.blocked", |_| true)
        .await
        .expect("reset.blocked");
    let body: events::ResetBlocked = event.decode().expect("decode");
    assert_eq!(body.reason, "failed_verifications");
    assert_eq!(body.failed_verifications, 5);
    assert_eq!(body.meta.expect("meta").user_id, "bob");
    let block = get_block(&world, "bob").await;
    assert!(block.blocked && block.blocked_until.is_some());

    // Sign-in is not blocked, nor is the account locked.
    sign_in_works(&world, "bob").await;
    let user = world
        .admin()
        .get_user(World::as_admin(admin::GetUserRequest {
            user_id: "bob".into(),
        }))
        .await
        .expect("user")
        .into_inner();
    assert!(!user.locked, "the directory lock is untouched");

    world
        .clock
        .advance(chrono::Duration::hours(24) + chrono::Duration::seconds(1));
    world.start_reset("bob").await;
    world.stop().await;
}

/// Admin.ClearBlock lifts the block at once, says it was in force, emits `reset.unblocked`
/// with the admin as actor; GetBlock reports before and after.
async fn admin_clear_block(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    set_policy(&world, admin::Limits::default()).await;
    user_with_email(&world, "cat", "cat@example.com").await;
    fail_verifications(&world, "cat", 5).await;
    throttled(&world.try_start_reset("cat").await.expect_err("blocked"));
    let block = get_block(&world, "cat").await;
    assert!(block.blocked);
    assert_eq!(block.failed_verifications, 5);

    let cleared = world
        .admin()
        .clear_block(World::as_admin(admin::ClearBlockRequest {
            user_id: "cat".into(),
        }))
        .await
        .expect("clear block")
        .into_inner();
    assert!(cleared.was_blocked);
    world.start_reset("cat").await;
    let block = get_block(&world, "cat").await;
    assert!(!block.blocked && block.blocked_until.is_none());
    assert_eq!(block.failed_verifications, 0);
    let event = world
        .wait_event("sspr.events.v1.reset.unblocked", |_| true)
        .await
        .expect("reset.unblocked");
    let body: events::ResetUnblocked = event.decode().expect("decode");
    assert_eq!(body.reason, "admin");
    assert!(body.was_blocked);
    let meta = body.meta.expect("meta");
    assert_eq!(meta.user_id, "cat");
    assert_eq!(meta.actor, "admin");
    world.stop().await;
}

/// A successful reset clears the user's counters: four failures before it, then four more
/// after it do not block.
async fn reset_clears_counters(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    set_policy(&world, admin::Limits::default()).await;
    let method = user_with_email(&world, "dan", "dan@example.com").await;
    let seen = world.mail_count("dan@example.com");
    fail_verifications(&world, "dan", 4).await;
    assert_eq!(get_block(&world, "dan").await.failed_verifications, 4);
    // Let the code of that flow arrive first, so it is not taken for the next one.
    world
        .next_code("dan@example.com", seen)
        .await
        .expect("the first flow's code");

    let flow = world.start_reset("dan").await;
    let code = world
        .send_reset_code(&flow.session_id, &method, "dan@example.com")
        .await
        .expect("code");
    verify(&world, &flow.session_id, &method, &code)
        .await
        .expect("the right code");
    world
        .reset()
        .complete_reset(reset::CompleteResetRequest {
            session_id: flow.session_id.clone(),
            new_password: NEW_PASSWORD.into(),
        })
        .await
        .expect("complete");
    assert_eq!(get_block(&world, "dan").await.failed_verifications, 0);
    let event = world
        .wait_event("sspr.events.v1.reset.unblocked", |_| true)
        .await
        .expect("reset.unblocked");
    let body: events::ResetUnblocked = event.decode().expect("decode");
    assert_eq!(body.reason, "reset_completed");

    fail_verifications(&world, "dan", 4).await;
    world.start_reset("dan").await;
    world.stop().await;
}

/// One address shared by many accounts: 10 codes an hour reach it, whoever asks.
async fn destination_sends(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    set_policy(&world, admin::Limits::default()).await;
    let address = "shared@example.com";
    let mut methods = Vec::new();
    for i in 0..5 {
        let user = format!("shared{i}");
        methods.push((user.clone(), user_with_email(&world, &user, address).await));
    }
    // Five registration codes so far; five reset codes from five users (one each) still go.
    for (user, method) in &methods {
        let flow = world.start_reset(user).await;
        world
            .send_code(&flow.session_id, method)
            .await
            .unwrap_or_else(|s| panic!("{user}: {s:?}"));
    }
    // Every user is far below their own budget, yet the address is full.
    for (user, method) in &methods {
        let flow = world.start_reset(user).await;
        let refused = world
            .send_code(&flow.session_id, method)
            .await
            .expect_err("the address got 10 codes this hour");
        throttled(&refused);
    }
    // Normalised: the same address in other case counts too (registration of a sixth user).
    world
        .upsert_user("shared5", PASSWORD, &[], false)
        .await
        .expect("user");
    let refused = world
        .register_email("shared5", PASSWORD, "SHARED@example.com")
        .await
        .expect_err("registration to the full address is refused");
    let status = refused
        .downcast_ref::<Status>()
        .unwrap_or_else(|| panic!("a status: {refused:#}"));
    throttled(status);
    world.stop().await;
}

/// One client IP: 30 StartReset calls a minute, then 20 SendCode calls a minute (many users,
/// each far below their own limits).
async fn client_ip_limits(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    set_policy(&world, admin::Limits::default()).await;
    let mut flows = Vec::new();
    for i in 0..30 {
        flows.push(world.start_reset(&format!("nobody{i}")).await);
    }
    let refused = world
        .try_start_reset("nobody-more")
        .await
        .expect_err("the 31st StartReset from one IP in a minute is refused");
    assert!(throttled(&refused) <= 60);

    world.clock.advance(chrono::Duration::seconds(61));
    world.start_reset("nobody-later").await;
    for (i, flow) in flows.iter().take(20).enumerate() {
        world
            .send_code(&flow.session_id, &flow.methods[0].method_id)
            .await
            .unwrap_or_else(|s| panic!("send #{i}: {s:?}"));
    }
    let flow = &flows[20];
    let refused = world
        .send_code(&flow.session_id, &flow.methods[0].method_id)
        .await
        .expect_err("the 21st SendCode from one IP in a minute is refused");
    assert!(throttled(&refused) <= 60);
    world.clock.advance(chrono::Duration::seconds(61));
    world
        .send_code(&flow.session_id, &flow.methods[0].method_id)
        .await
        .expect("a minute later");
    world.stop().await;
}

/// Registration codes (AddMethod) spend the same per-user budget as reset codes: five phone
/// numbers added in an hour, the sixth is refused (SMS pumping through registration).
async fn registration_codes_count(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    set_policy(&world, admin::Limits::default()).await;
    world
        .upsert_user("reg", PASSWORD, &[], false)
        .await
        .expect("user");
    let mut reg = world.registration();
    let begin = reg
        .begin_registration(registration::BeginRegistrationRequest {
            user_id: "reg".into(),
            password: PASSWORD.into(),
            locale: "en".into(),
        })
        .await
        .expect("begin")
        .into_inner();
    let mut refused = None;
    for i in 0..6 {
        match reg
            .add_method(registration::AddMethodRequest {
                session_id: begin.session_id.clone(),
                kind: MethodKind::Sms as i32,
                destination: format!("+3361234567{i}"),
            })
            .await
        {
            Ok(_) => assert!(i < 5, "add #{i} went through"),
            Err(status) => {
                assert_eq!(i, 5, "refused at #{i}: {status:?}");
                refused = Some(status);
                break;
            }
        }
    }
    let secs = throttled(&refused.expect("the sixth phone code in an hour is refused"));
    assert!((3500..=3600).contains(&secs), "{secs}");
    world.stop().await;
}

/// The policy's resend wait holds (RESOURCE_EXHAUSTED with retry-after), and the code sent
/// after it voids the earlier one.
async fn resend_after(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    set_policy(
        &world,
        admin::Limits {
            resend_after_seconds: Some(30),
            ..Default::default()
        },
    )
    .await;
    let method = user_with_email(&world, "rex", "rex@example.com").await;
    let flow = world.start_reset("rex").await;
    let first = world
        .send_reset_code(&flow.session_id, &method, "rex@example.com")
        .await
        .expect("first code");
    let refused = world
        .send_code(&flow.session_id, &method)
        .await
        .expect_err("a resend within 30 s");
    let secs = throttled(&refused);
    assert!((1..=30).contains(&secs), "{secs}");
    world.clock.advance(chrono::Duration::seconds(31));
    let second = world
        .send_reset_code(&flow.session_id, &method, "rex@example.com")
        .await
        .expect("second code");
    if first != second {
        let old = verify(&world, &flow.session_id, &method, &first)
            .await
            .expect_err("the old code is void");
        assert_ne!(old.code(), Code::Ok);
    } else {
        // Equal by chance: the void code cannot be told apart; a wrong one still fails.
        verify(&world, &flow.session_id, &method, &other_code(&first))
            .await
            .expect_err("wrong");
    }
    verify(&world, &flow.session_id, &method, &second)
        .await
        .expect("the new code works");
    world.stop().await;
}

/// An unknown user id gets the same limits, the same answers and the same block as a real one.
async fn decoys_obey(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    // Email only, so the decoy's method is an email method like the real one.
    set_policy_for(
        &world,
        admin::Limits {
            destination_sends_per_hour: Some(100),
            ..Default::default()
        },
        &[MethodKind::Email],
    )
    .await;
    let method = user_with_email(&world, "real", "real@example.com").await;
    // The registration code was one send: nine more for the real user, ten for the decoy.
    let real = world.start_reset("real").await;
    for _ in 0..9 {
        world
            .send_code(&real.session_id, &method)
            .await
            .expect("real send");
    }
    let decoy = world.start_reset("ghost").await;
    let ghost_method = decoy.methods[0].method_id.clone();
    assert_eq!(decoy.methods[0].kind, MethodKind::Email as i32, "{decoy:?}");
    for _ in 0..10 {
        world
            .send_code(&decoy.session_id, &ghost_method)
            .await
            .expect("decoy send");
    }
    let real_refused = world
        .send_code(&real.session_id, &method)
        .await
        .expect_err("real throttled");
    let decoy_refused = world
        .send_code(&decoy.session_id, &ghost_method)
        .await
        .expect_err("decoy throttled");
    assert_eq!(real_refused.code(), decoy_refused.code());
    assert_eq!(real_refused.message(), decoy_refused.message());
    assert_eq!(throttled(&real_refused), throttled(&decoy_refused));

    // The block: five wrong codes each (the code sent above is still active).
    world.clock.advance(chrono::Duration::minutes(11));
    for (flow, m) in [(&real, &method), (&decoy, &ghost_method)] {
        world.send_code(&flow.session_id, m).await.expect("send");
        for _ in 0..5 {
            let wrong = verify(&world, &flow.session_id, m, "00000000")
                .await
                .expect_err("wrong");
            assert_eq!(wrong.code(), Code::InvalidArgument);
        }
    }
    let real_blocked = world
        .try_start_reset("real")
        .await
        .expect_err("real blocked");
    let decoy_blocked = world
        .try_start_reset("ghost")
        .await
        .expect_err("decoy blocked");
    assert_eq!(real_blocked.message(), decoy_blocked.message());
    assert_eq!(throttled(&real_blocked), throttled(&decoy_blocked));
    // Events for the real user only.
    world
        .wait_event("sspr.events.v1.reset.blocked", |_| true)
        .await
        .expect("reset.blocked");
    tokio::time::sleep(Duration::from_millis(300)).await;
    for e in world.events() {
        if e.subject.starts_with("sspr.events.v1.reset.") {
            assert!(
                !String::from_utf8_lossy(&e.payload).contains("ghost"),
                "no event about the decoy on {}",
                e.subject
            );
        }
    }
    world.stop().await;
}

/// Two verification replicas on one database and one NATS: 30 concurrent email sends for one
/// user still let exactly 10 codes (registration's included) through in 10 minutes.
async fn two_replicas(backend: Backend) {
    let Some(world) = World::start_with_or_skip(backend, |o| o.verification_replicas = 2).await
    else {
        return;
    };
    set_policy(
        &world,
        admin::Limits {
            ip_send_code_per_minute: Some(1000),
            ..Default::default()
        },
    )
    .await;
    let method = user_with_email(&world, "twin", "twin@example.com").await;
    let mut flows = Vec::new();
    for _ in 0..3 {
        flows.push(world.start_reset("twin").await);
    }
    let mut calls = Vec::new();
    for i in 0..30 {
        let session = flows[i % flows.len()].session_id.clone();
        let method = method.clone();
        let mut client = world.reset();
        calls.push(tokio::spawn(async move {
            client
                .send_code(reset::SendCodeRequest {
                    session_id: session,
                    method_id: method,
                    ..Default::default()
                })
                .await
        }));
    }
    let mut sent = 0;
    for call in calls {
        match call.await.expect("joined") {
            Ok(_) => sent += 1,
            Err(status) => {
                throttled(&status);
            }
        }
    }
    assert_eq!(
        sent, 9,
        "nine reset codes after the registration code, across both replicas"
    );
    world.stop().await;
}

/// Above the policy's IP threshold, StartReset without a passed challenge is
/// FAILED_PRECONDITION / CHALLENGE_REQUIRED; with a token the verifier accepts, it goes on.
async fn challenge(backend: Backend) {
    let verifier = sspr_testkit::HttpSink::start().await.expect("verifier");
    let url = format!("http://{}/siteverify", verifier.addr());
    let Some(world) = World::start_with_or_skip(backend, |o| {
        o.challenge_verify_url = Some(url);
        o.challenge_secret = Some("verifier-secret".into());
    })
    .await
    else {
        return;
    };
    set_policy(
        &world,
        admin::Limits {
            challenge_ip_starts_per_minute: Some(3),
            ..Default::default()
        },
    )
    .await;
    for i in 0..3 {
        world.start_reset(&format!("probe{i}")).await;
    }
    let refused = world
        .try_start_reset("probe3")
        .await
        .expect_err("a challenge is required");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let details = refused.details();
    assert!(
        details
            .windows(b"CHALLENGE_REQUIRED".len())
            .any(|w| w == b"CHALLENGE_REQUIRED"),
        "ErrorInfo reason CHALLENGE_REQUIRED"
    );

    // A token the verifier rejects (its default answer is `{}`) does not pass.
    let with_token = |token: &str| reset::StartResetRequest {
        user_id: "probe3".into(),
        locale: "en".into(),
        challenge_token: token.into(),
    };
    let refused = world
        .reset()
        .start_reset(with_token("bad-token"))
        .await
        .expect_err("the verifier said no");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    verifier
        .respond_next(1, 200, r#"{"success": true}"#)
        .expect("script the verifier");
    world
        .reset()
        .start_reset(with_token("good-token"))
        .await
        .expect("a passed challenge lets the call through");
    let call = verifier
        .requests()
        .into_iter()
        .find(|r| r.body.contains("good-token"))
        .expect("the verifier was asked");
    assert_eq!(call.method, "POST");
    assert_eq!(
        call.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert!(
        call.body
            .starts_with("secret=verifier-secret&response=good-token&remoteip=")
    );
    // Oversized tokens are bad input.
    let refused = world
        .reset()
        .start_reset(with_token(&"x".repeat(4097)))
        .await
        .expect_err("too big");
    assert_eq!(refused.code(), Code::InvalidArgument);
    world.stop().await;
}
