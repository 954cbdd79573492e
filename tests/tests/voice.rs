//! The voice-call method end to end through the gateway: a phone number registered with kind
//! VOICE, proved by a code read out in a call, then used to reset; the calls reach the SMS
//! provider's webhook with `"channel": "voice"`. On SQLite and (when configured) PostgreSQL.

use std::time::Duration;

use sspr_proto::admin::v1::{self as admin, Scope};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::events::v1 as events;
use sspr_proto::registration::v1 as registration;
use sspr_proto::reset::v1 as reset;
use sspr_tests::{Backend, World, on_both_backends};

const PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "a brand new passphrase for calls";
const PHONE: &str = "+33612345678";

on_both_backends! {
    voice_register_and_reset => voice_sqlite, voice_postgres;
}

/// Waits for the provider request number `seen` (0-based) and returns the code the call reads
/// out, after checking it is a voice call to the phone that says the code twice, digit by digit.
async fn next_call_code(world: &World, seen: usize) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(r) = world.sms.requests().get(seen) {
            let body = r.json().expect("JSON body");
            assert_eq!(body["channel"], "voice", "{body}");
            assert_eq!(body["to"], PHONE);
            let words = body["body"].as_str().expect("words").to_owned();
            let spoken = words
                .split("code is: ")
                .nth(1)
                .and_then(|rest| rest.split(". I repeat: ").next())
                .expect("the code is read out")
                .to_owned();
            assert!(spoken.contains(", "), "digit by digit: {words}");
            assert_eq!(words.matches(&spoken).count(), 2, "repeated once: {words}");
            return spoken.chars().filter(char::is_ascii_digit).collect();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no call within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn voice_register_and_reset(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    let policy = admin::Policy {
        scope: Scope::All as i32,
        methods_required: 1,
        allowed_methods: vec![MethodKind::Voice as i32],
        ..Default::default()
    };
    let stored = world
        .admin()
        .set_policy(World::as_admin(admin::SetPolicyRequest {
            policy: Some(policy),
        }))
        .await
        .expect("a policy allowing VOICE")
        .into_inner();
    assert_eq!(stored.allowed_methods, vec![MethodKind::Voice as i32]);
    world
        .upsert_user("vic", PASSWORD, &[], false)
        .await
        .expect("user");

    // Register the phone for calls.
    let mut reg = world.registration();
    let begin = reg
        .begin_registration(registration::BeginRegistrationRequest {
            user_id: "vic".into(),
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
            kind: MethodKind::Voice as i32,
            destination: "+33 6 12 34 56 78".into(),
        })
        .await
        .expect("add a voice method")
        .into_inner();
    let code = next_call_code(&world, seen).await;
    let done = reg
        .confirm_method(registration::ConfirmMethodRequest {
            session_id: begin.session_id.clone(),
            method_id: added.method_id.clone(),
            code,
        })
        .await
        .expect("confirm the voice method")
        .into_inner();
    assert!(done.registration_complete);
    let mut listed = reg
        .list_methods(registration::ListMethodsRequest {
            session_id: begin.session_id.clone(),
        })
        .await
        .expect("list")
        .into_inner()
        .methods;
    let method = listed.pop().expect("one method");
    assert_eq!(method.kind, MethodKind::Voice as i32);
    assert_eq!(method.masked_destination, "+•• •••• ••78");

    // Reset with it.
    let mut client = world.reset();
    let started = client
        .start_reset(reset::StartResetRequest {
            user_id: "vic".into(),
            locale: "en".into(),
            ..Default::default()
        })
        .await
        .expect("start")
        .into_inner();
    assert_eq!(started.methods.len(), 1);
    assert_eq!(started.methods[0].kind, MethodKind::Voice as i32);
    assert_eq!(started.methods[0].masked_destination, "+•• •••• ••78");
    let seen = world.sms.requests().len();
    client
        .send_code(reset::SendCodeRequest {
            session_id: started.session_id.clone(),
            method_id: added.method_id.clone(),
            ..Default::default()
        })
        .await
        .expect("call me");
    let code = next_call_code(&world, seen).await;
    let left = client
        .verify_code(reset::VerifyCodeRequest {
            session_id: started.session_id.clone(),
            method_id: added.method_id.clone(),
            code: code.clone(),
        })
        .await
        .expect("verify the spoken code")
        .into_inner();
    assert_eq!(left.methods_remaining, 0);
    let completed = client
        .complete_reset(reset::CompleteResetRequest {
            session_id: started.session_id.clone(),
            new_password: NEW_PASSWORD.into(),
        })
        .await
        .expect("complete")
        .into_inner();
    assert!(completed.strength.is_some());

    // Events name the kind VOICE, never the number or the code.
    let issued = world
        .wait_event("sspr.events.v1.code.issued", |e| {
            e.decode::<events::CodeIssued>()
                .is_ok_and(|c| c.meta.is_some_and(|m| m.flow_id == started.flow_id))
        })
        .await
        .expect("code.issued");
    let issued: events::CodeIssued = issued.decode().expect("decode");
    assert_eq!(issued.kind, MethodKind::Voice as i32);
    world
        .wait_event("sspr.events.v1.code.delivered", |e| {
            e.decode::<events::CodeDelivered>()
                .is_ok_and(|c| c.delivery_id == issued.delivery_id)
        })
        .await
        .map(|e| {
            let d: events::CodeDelivered = e.decode().expect("decode");
            assert_eq!(d.kind, MethodKind::Voice as i32);
        })
        .expect("code.delivered");
    world
        .wait_event("sspr.events.v1.password.changed", |e| {
            e.decode::<events::PasswordChanged>()
                .is_ok_and(|p| p.meta.is_some_and(|m| m.flow_id == started.flow_id))
        })
        .await
        .expect("password.changed");
    for event in world.events() {
        for secret in [PHONE.as_bytes(), code.as_bytes(), NEW_PASSWORD.as_bytes()] {
            assert!(
                !event.payload.windows(secret.len()).any(|w| w == secret),
                "a secret in {}",
                event.subject
            );
        }
    }
    world.stop().await;
}
