//! Attacks on: codes (see main.rs). One-time codes and the reset session they unlock: what is
//! stored, single use and binding, the try budget, expiry, never delivering an expired code,
//! setting the password exactly once within ten minutes, no replay, a real second factor, and
//! a code-key rotation that loses nothing.
//!
//! The policy here lifts the per-user failure block and the new-method cool-down (both
//! defended and tested elsewhere) so that each test reaches the defence it is about.

use std::time::Duration;

use sspr_proto::admin::v1::{self as admin, Scope};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::events::v1 as events;
use sspr_proto::registration::v1 as registration;
use sspr_proto::reset::v1 as reset;
use sspr_storage::sea_orm::{ConnectionTrait, Statement};
use sspr_tests::{Backend, World, on_both_backends, other_code};
use tonic::Code;

const PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "a brand new passphrase for codes";
const PHONE: &str = "+33612345678";

on_both_backends! {
    hash_at_rest => codes_are_eight_digits_and_only_the_keyed_hash_is_stored, codes_are_eight_digits_and_only_the_keyed_hash_is_stored_postgres;
    concurrent_complete => concurrent_complete_reset_sets_the_password_exactly_once, concurrent_complete_reset_sets_the_password_exactly_once_postgres;
}

/// Limits that keep the neighbouring defences out of the way, plus `code_length` if given.
fn limits(code_length: Option<u32>) -> admin::Limits {
    admin::Limits {
        failed_verifications_per_day: Some(100),
        new_method_cooldown_hours: Some(0),
        phone_sends_per_hour: Some(100),
        phone_allowed_prefixes: vec!["+33".into()],
        code_length,
        ..Default::default()
    }
}

async fn set_policy(world: &World, required: u32, kinds: &[MethodKind], code_length: Option<u32>) {
    let policy = admin::Policy {
        scope: Scope::All as i32,
        methods_required: required,
        allowed_methods: kinds.iter().map(|k| *k as i32).collect(),
        limits: Some(limits(code_length)),
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

/// Registers `methods` for a new user in one registration session; returns their method ids.
async fn user_with(world: &World, user: &str, methods: &[(MethodKind, &str)]) -> Vec<String> {
    world
        .upsert_user(user, PASSWORD, &[], false)
        .await
        .expect("user");
    let mut reg = world.registration();
    let begin = reg
        .begin_registration(registration::BeginRegistrationRequest {
            user_id: user.into(),
            password: PASSWORD.into(),
            locale: "en".into(),
        })
        .await
        .expect("begin registration")
        .into_inner();
    let mut ids = Vec::new();
    for (kind, destination) in methods {
        let (mails, calls) = (world.mail_count(destination), world.sms.requests().len());
        let added = reg
            .add_method(registration::AddMethodRequest {
                session_id: begin.session_id.clone(),
                kind: *kind as i32,
                destination: (*destination).into(),
            })
            .await
            .expect("add a method")
            .into_inner();
        let code = match kind {
            MethodKind::Email => world.next_code(destination, mails).await.expect("mail"),
            _ => world.next_phone_code(calls).await,
        };
        reg.confirm_method(registration::ConfirmMethodRequest {
            session_id: begin.session_id.clone(),
            method_id: added.method_id.clone(),
            code,
        })
        .await
        .expect("confirm the method");
        ids.push(added.method_id);
    }
    ids
}

async fn verify(
    world: &World,
    session: &str,
    method: &str,
    code: &str,
) -> Result<reset::VerifyCodeResponse, tonic::Status> {
    world
        .reset()
        .verify_code(reset::VerifyCodeRequest {
            session_id: session.into(),
            method_id: method.into(),
            code: code.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn complete(world: &World, session: &str, password: &str) -> Result<(), tonic::Status> {
    world
        .reset()
        .complete_reset(reset::CompleteResetRequest {
            session_id: session.into(),
            new_password: password.into(),
        })
        .await
        .map(|_| ())
}

/// Every row of verification's `codes` table, as (code_hash, key_id, the other text columns).
async fn stored_codes(world: &World) -> Vec<(String, String, Vec<String>)> {
    let db = sspr_storage::connect("verification", &world.db_settings())
        .await
        .expect("verification database");
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT id, purpose, user_id, method_id, flow_id, code_hash, delivery_id, key_id FROM codes",
        ))
        .await
        .expect("read codes");
    rows.iter()
        .map(|r| {
            let col = |c: &str| r.try_get::<String>("", c).expect("text column");
            (
                col("code_hash"),
                col("key_id"),
                [
                    "id",
                    "purpose",
                    "user_id",
                    "method_id",
                    "flow_id",
                    "delivery_id",
                ]
                .iter()
                .map(|c| col(c))
                .collect(),
            )
        })
        .collect()
}

async fn hash_at_rest(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    set_policy(&world, 1, &[MethodKind::Email], None).await;
    let address = "hash@example.com";
    let ids = user_with(&world, "hash", &[(MethodKind::Email, address)]).await;
    let before = world.start_reset("hash").await;
    let code = world
        .send_reset_code(&before.session_id, &ids[0], address)
        .await
        .expect("code");
    assert_eq!(code.len(), 8, "8 digits by default");
    assert!(code.bytes().all(|b| b.is_ascii_digit()));

    let rows = stored_codes(&world).await;
    assert!(rows.len() >= 2, "a registration code and a reset code");
    for (hash, key_id, others) in &rows {
        assert_eq!(hash.len(), 64, "HMAC-SHA256 in hex");
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!hash.contains(&code), "the code in its hash column");
        assert_eq!(key_id, "0", "the bare SSPR_CODE_KEY is key id 0");
        for value in others {
            assert!(!value.contains(&code), "the code in a column: {value}");
        }
    }

    // The policy asks for 6 digits: a code sent before keeps its 8, new codes have 6.
    set_policy(&world, 1, &[MethodKind::Email], Some(6)).await;
    let verified = verify(&world, &before.session_id, &ids[0], &code)
        .await
        .expect("an 8-digit code issued before the change still verifies");
    assert_eq!(verified.methods_remaining, 0);
    let after = world.start_reset("hash").await;
    let short = world
        .send_reset_code(&after.session_id, &ids[0], address)
        .await
        .expect("code");
    assert_eq!(short.len(), 6, "the policy's code_length");
    verify(&world, &after.session_id, &ids[0], &short)
        .await
        .expect("a 6-digit code verifies");
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_is_single_use_and_bound_to_its_session_and_method() {
    let Some(world) = World::start_or_skip(Backend::Sqlite).await else {
        return;
    };
    set_policy(&world, 1, &[MethodKind::Email], None).await;
    let ids = user_with(
        &world,
        "bound",
        &[
            (MethodKind::Email, "bound-a@example.com"),
            (MethodKind::Email, "bound-b@example.com"),
        ],
    )
    .await;
    let (a, b) = (&ids[0], &ids[1]);
    let first = world.start_reset("bound").await;
    let other = world.start_reset("bound").await;
    let code = world
        .send_reset_code(&first.session_id, a, "bound-a@example.com")
        .await
        .expect("code");

    // Another method of the same session, the same method in another session of the user.
    let wrong_method = verify(&world, &first.session_id, b, &code)
        .await
        .expect_err("a code for A verifies B");
    assert_eq!(
        wrong_method.code(),
        Code::FailedPrecondition,
        "{wrong_method:?}"
    );
    let wrong_session = verify(&world, &other.session_id, a, &code)
        .await
        .expect_err("a code verifies in another session");
    assert_eq!(
        wrong_session.code(),
        Code::FailedPrecondition,
        "{wrong_session:?}"
    );

    // Its own session and method: once.
    verify(&world, &first.session_id, a, &code)
        .await
        .expect("the right session and method");
    let again = verify(&world, &first.session_id, a, &code)
        .await
        .expect_err("a used code verifies again");
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");
    assert_eq!(again.message(), "no active code, request a new one");
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_dies_after_five_wrong_tries() {
    let Some(world) = World::start_or_skip(Backend::Sqlite).await else {
        return;
    };
    set_policy(&world, 1, &[MethodKind::Email], None).await;
    let address = "tries@example.com";
    let ids = user_with(&world, "tries", &[(MethodKind::Email, address)]).await;
    let s = world.start_reset("tries").await;
    let code = world
        .send_reset_code(&s.session_id, &ids[0], address)
        .await
        .expect("code");
    let wrong = other_code(&code);
    for _ in 0..5 {
        let e = verify(&world, &s.session_id, &ids[0], &wrong)
            .await
            .expect_err("a wrong code");
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    }
    let dead = verify(&world, &s.session_id, &ids[0], &code)
        .await
        .expect_err("the right code after five wrong ones");
    assert_eq!(dead.code(), Code::FailedPrecondition, "{dead:?}");
    assert_eq!(dead.message(), "too many wrong codes, request a new one");
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_expires_after_ten_minutes() {
    let Some(world) = World::start_or_skip(Backend::Sqlite).await else {
        return;
    };
    set_policy(&world, 1, &[MethodKind::Email], None).await;
    let address = "expiry@example.com";
    let ids = user_with(&world, "expiry", &[(MethodKind::Email, address)]).await;
    let s = world.start_reset("expiry").await;
    let code = world
        .send_reset_code(&s.session_id, &ids[0], address)
        .await
        .expect("code");
    world.clock.advance(chrono::Duration::minutes(10));
    let expired = verify(&world, &s.session_id, &ids[0], &code)
        .await
        .expect_err("a code ten minutes old");
    assert_eq!(expired.code(), Code::FailedPrecondition, "{expired:?}");
    assert_eq!(expired.message(), "the code has expired, request a new one");
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_queued_delivery_is_dropped_with_an_event() {
    let Some(world) = World::start_or_skip(Backend::Sqlite).await else {
        return;
    };
    set_policy(&world, 1, &[MethodKind::Email], None).await;
    let address = "queued@example.com";
    let ids = user_with(&world, "queued", &[(MethodKind::Email, address)]).await;
    let s = world.start_reset("queued").await;
    let seen = world.mail_count(address);
    // The mail server answers "try later" to the first attempt; the delivery waits in the
    // queue for its retry while the code expires.
    world.smtp.reject_next(1, 451);
    world
        .reset()
        .send_code(reset::SendCodeRequest {
            session_id: s.session_id.clone(),
            method_id: ids[0].clone(),
            ..Default::default()
        })
        .await
        .expect("send");
    world.clock.advance(chrono::Duration::minutes(11));
    let issued: events::CodeIssued = world
        .wait_event("sspr.events.v1.code.issued", |e| {
            e.decode::<events::CodeIssued>()
                .is_ok_and(|i| i.meta.is_some_and(|m| m.flow_id == s.flow_id))
        })
        .await
        .expect("code.issued")
        .decode()
        .expect("decode");
    let failed: events::CodeDeliveryFailed = world
        .wait_event("sspr.events.v1.code.delivery_failed", |e| {
            e.decode::<events::CodeDeliveryFailed>()
                .is_ok_and(|f| f.delivery_id == issued.delivery_id)
        })
        .await
        .expect("code.delivery_failed")
        .decode()
        .expect("decode");
    assert_eq!(failed.reason, "expired");
    assert_eq!(failed.kind, MethodKind::Email as i32);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        world.mail_count(address),
        seen,
        "an expired code was mailed"
    );
    assert!(
        !world
            .events()
            .iter()
            .any(|e| e.subject == "sspr.events.v1.code.delivered"
                && e.decode::<events::CodeDelivered>()
                    .is_ok_and(|d| d.delivery_id == issued.delivery_id)),
        "an expired delivery reported delivered"
    );
    world.stop().await;
}

/// A user with one verified email method in a fresh session; returns the session id.
async fn verified_session(world: &World, user: &str, address: &str) -> String {
    let ids = user_with(world, user, &[(MethodKind::Email, address)]).await;
    let s = world.start_reset(user).await;
    let code = world
        .send_reset_code(&s.session_id, &ids[0], address)
        .await
        .expect("code");
    let v = verify(world, &s.session_id, &ids[0], &code)
        .await
        .expect("verify");
    assert_eq!(v.methods_remaining, 0);
    s.session_id
}

async fn concurrent_complete(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    set_policy(&world, 1, &[MethodKind::Email], None).await;
    let session = verified_session(&world, "racer", "racer@example.com").await;
    let calls = (0..8).map(|i| {
        let mut client = world.reset();
        let session = session.clone();
        async move {
            client
                .complete_reset(reset::CompleteResetRequest {
                    session_id: session,
                    new_password: format!("{NEW_PASSWORD} number {i}"),
                })
                .await
        }
    });
    let results = futures::future::join_all(calls).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 1, "exactly one CompleteReset succeeds: {results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(r.code(), Code::Unauthenticated, "{r:?}");
    }
    world
        .wait_event("sspr.events.v1.password.changed", |e| {
            e.decode::<events::PasswordChanged>()
                .is_ok_and(|p| p.reason == "self_service_reset")
        })
        .await
        .expect("password.changed");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let changed = world
        .events()
        .iter()
        .filter(|e| e.subject == "sspr.events.v1.password.changed")
        .filter(|e| {
            e.decode::<events::PasswordChanged>().is_ok_and(|p| {
                p.reason == "self_service_reset" && p.meta.is_some_and(|m| m.user_id == "racer")
            })
        })
        .count();
    assert_eq!(changed, 1, "the password was set {changed} times");
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_session_cannot_be_replayed() {
    let Some(world) = World::start_or_skip(Backend::Sqlite).await else {
        return;
    };
    set_policy(&world, 1, &[MethodKind::Email], None).await;
    let session = verified_session(&world, "replay", "replay@example.com").await;
    // A refused password keeps the session usable for another try.
    let refused = complete(&world, &session, "x")
        .await
        .expect_err("a one-letter password");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    complete(&world, &session, NEW_PASSWORD)
        .await
        .expect("complete");
    let replay = complete(&world, &session, "another passphrase entirely")
        .await
        .expect_err("CompleteReset again");
    assert_eq!(replay.code(), Code::Unauthenticated, "{replay:?}");
    let send = world
        .reset()
        .send_code(reset::SendCodeRequest {
            session_id: session.clone(),
            method_id: "any".into(),
            ..Default::default()
        })
        .await
        .expect_err("SendCode on a completed session");
    assert_eq!(send.code(), Code::Unauthenticated, "{send:?}");
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_session_sets_the_password_within_ten_minutes() {
    let Some(world) = World::start_or_skip(Backend::Sqlite).await else {
        return;
    };
    set_policy(&world, 1, &[MethodKind::Email], None).await;
    let session = verified_session(&world, "late", "late@example.com").await;
    world.clock.advance(chrono::Duration::minutes(10));
    let late = complete(&world, &session, NEW_PASSWORD)
        .await
        .expect_err("ten minutes after the verification");
    assert_eq!(late.code(), Code::FailedPrecondition, "{late:?}");
    assert_eq!(
        late.message(),
        "the verification is too old: start the reset again"
    );
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_method_cannot_be_the_same_method_or_destination() {
    let Some(world) = World::start_or_skip(Backend::Sqlite).await else {
        return;
    };
    let kinds = [MethodKind::Email, MethodKind::Sms, MethodKind::Voice];
    set_policy(&world, 2, &kinds, None).await;
    // One phone registered twice (SMS and voice: distinct methods, one destination).
    let ids = user_with(
        &world,
        "twice",
        &[
            (MethodKind::Sms, PHONE),
            (MethodKind::Voice, PHONE),
            (MethodKind::Email, "twice@example.com"),
        ],
    )
    .await;
    let (sms, voice, email) = (&ids[0], &ids[1], &ids[2]);
    let s = world.start_reset("twice").await;
    assert_eq!(s.methods.len(), 3);

    let send = |method: &str| {
        let mut client = world.reset();
        let (session, method) = (s.session_id.clone(), method.to_owned());
        async move {
            client
                .send_code(reset::SendCodeRequest {
                    session_id: session,
                    method_id: method,
                    ..Default::default()
                })
                .await
                .expect("send")
        }
    };
    // The same method twice counts once.
    for _ in 0..2 {
        let seen = world.sms.requests().len();
        send(sms).await;
        let code = world.next_phone_code(seen).await;
        let v = verify(&world, &s.session_id, sms, &code)
            .await
            .expect("verify the SMS method");
        assert_eq!(v.methods_remaining, 1, "one method verified twice");
    }
    let early = complete(&world, &s.session_id, NEW_PASSWORD)
        .await
        .expect_err("complete with one method");
    assert_eq!(early.code(), Code::FailedPrecondition, "{early:?}");

    // Another method to the same phone does not count either.
    let seen = world.sms.requests().len();
    send(voice).await;
    let code = world.next_phone_code(seen).await;
    let same = verify(&world, &s.session_id, voice, &code)
        .await
        .expect_err("a second method to the same phone");
    assert_eq!(same.code(), Code::FailedPrecondition, "{same:?}");
    assert_eq!(
        same.message(),
        "this method reaches a destination already verified: verify a different one"
    );

    // A second destination does.
    let code = world
        .send_reset_code(&s.session_id, email, "twice@example.com")
        .await
        .expect("mail");
    let v = verify(&world, &s.session_id, email, &code)
        .await
        .expect("verify the email");
    assert_eq!(v.methods_remaining, 0);
    complete(&world, &s.session_id, NEW_PASSWORD)
        .await
        .expect("complete with two destinations");
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_survive_a_key_rotation() {
    use base64::Engine;
    let Some(mut world) = World::start_or_skip(Backend::Sqlite).await else {
        return;
    };
    let b64 = |k: &[u8; 32]| base64::engine::general_purpose::STANDARD.encode(k);
    let key_a = world.code_key;
    let key_b = sspr_testkit::random_code_key();
    let ring_a = sspr_runtime::CodeKeys::parse(&format!("a:{}", b64(&key_a)), None).expect("A");
    let ring_b = sspr_runtime::CodeKeys::parse(
        &format!("b:{}", b64(&key_b)),
        Some(&format!("a:{}", b64(&key_a))),
    )
    .expect("B, then A");
    world
        .restart_with(|o| o.code_key_ring = Some(ring_a))
        .await
        .expect("run under key A");
    set_policy(&world, 1, &[MethodKind::Email], None).await;
    let (first, second) = ("rot-1@example.com", "rot-2@example.com");
    let ids = user_with(
        &world,
        "rotate",
        &[(MethodKind::Email, first), (MethodKind::Email, second)],
    )
    .await;

    // A code verified after the rotation.
    let s = world.start_reset("rotate").await;
    let code = world
        .send_reset_code(&s.session_id, &ids[0], first)
        .await
        .expect("code under A");
    // A delivery still queued at the rotation: the mail server says "try later" until then.
    world.smtp.reject_next(1000, 451);
    let seen = world.mail_count(second);
    let queued_session = world.start_reset("rotate").await;
    world
        .reset()
        .send_code(reset::SendCodeRequest {
            session_id: queued_session.session_id.clone(),
            method_id: ids[1].clone(),
            ..Default::default()
        })
        .await
        .expect("send under A");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while world.smtp.pending_rejections() == 1000 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no delivery attempt"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    world
        .restart_with(|o| o.code_key_ring = Some(ring_b))
        .await
        .expect("run under key B with A previous");
    world.smtp.clear_rejections();
    let queued = world
        .next_code(second, seen)
        .await
        .expect("the delivery sealed under A is delivered after the rotation");
    verify(&world, &queued_session.session_id, &ids[1], &queued)
        .await
        .expect("its code verifies");
    verify(&world, &s.session_id, &ids[0], &code)
        .await
        .expect("a code hashed under A verifies after the rotation");

    // New codes use B (and their deliveries are sealed under B: notification opens them).
    let fresh = world.start_reset("rotate").await;
    world
        .send_reset_code(&fresh.session_id, &ids[0], first)
        .await
        .expect("code under B");
    let rows = stored_codes(&world).await;
    assert!(
        rows.iter().any(|(_, k, _)| k == "a"),
        "codes hashed under A"
    );
    assert!(
        rows.iter().any(|(_, k, _)| k == "b"),
        "codes hashed under B"
    );
    world.stop().await;
}
