//! PasswordReset.GetCodeStatus through the whole system (gateway → verification, with
//! notification's real `code.delivered` / `code.delivery_failed` events feeding verification's
//! delivery states), on SQLite and (when configured) PostgreSQL:
//!
//! - a code that reached the mail server shows `SENT`; a decoy's shows `PENDING`, then `SENT`,
//!   and never fails;
//! - an SMS that expired in the queue (the provider said "try later", the code expired before
//!   the retry: notification drops it with `code.delivery_failed`, reason `expired`) shows
//!   `EXPIRED` with the email method as the alternative, and the user finishes with it;
//! - an SMS the provider refuses for good (HTTP 400) shows `FAILED` with the email method as the
//!   alternative, and the user finishes the reset with it.

use std::time::Duration;

use sspr_proto::common::v1::MethodKind;
use sspr_proto::registration::v1 as registration;
use sspr_proto::reset::v1::{self as reset, CodeDeliveryState};
use sspr_tests::{Backend, World, code_in, on_both_backends};
use tonic::Code;

const PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "a brand new passphrase after a failed sms";
const PHONE: &str = "+33612345678";
const EMAIL: &str = "dana@example.org";

on_both_backends! {
    sent_and_decoy_codes => sent_and_decoy_sqlite, sent_and_decoy_postgres;
    expired_sms_offers_the_email_method => expired_sms_sqlite, expired_sms_postgres;
}

async fn status(
    world: &World,
    session_id: &str,
    method_id: &str,
) -> Result<reset::GetCodeStatusResponse, tonic::Status> {
    world
        .reset()
        .get_code_status(reset::GetCodeStatusRequest {
            session_id: session_id.into(),
            method_id: method_id.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

fn state(resp: &reset::GetCodeStatusResponse) -> CodeDeliveryState {
    CodeDeliveryState::try_from(resp.state).unwrap_or(CodeDeliveryState::Unspecified)
}

/// Polls GetCodeStatus (up to 15 s) until it shows `want`.
async fn wait_state(
    world: &World,
    session_id: &str,
    method_id: &str,
    want: CodeDeliveryState,
) -> reset::GetCodeStatusResponse {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let resp = status(world, session_id, method_id)
            .await
            .expect("GetCodeStatus answers");
        if state(&resp) == want {
            return resp;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {:?} after 15 s, want {want:?}",
            state(&resp)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start(world: &World, user: &str) -> reset::StartResetResponse {
    world
        .reset()
        .start_reset(reset::StartResetRequest {
            user_id: user.into(),
            locale: "en".into(),
            ..Default::default()
        })
        .await
        .expect("start reset answers for every user id")
        .into_inner()
}

async fn sent_and_decoy_codes(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    world
        .set_policy(sspr_proto::admin::v1::Scope::All, &[], 1)
        .await
        .expect("policy");
    world
        .upsert_user("dana", PASSWORD, &[], false)
        .await
        .expect("user");
    let email = world
        .register_email("dana", PASSWORD, EMAIL)
        .await
        .expect("email registered");

    // A real code: the mail server took it, so it shows SENT.
    let started = start(&world, "dana").await;
    let e = status(&world, &started.session_id, &email)
        .await
        .expect_err("nothing sent yet");
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(e.message(), "no code was sent to this method");
    let code = world
        .send_reset_code(&started.session_id, &email, EMAIL)
        .await
        .expect("the code mail");
    let sent = wait_state(&world, &started.session_id, &email, CodeDeliveryState::Sent).await;
    assert!(sent.alternatives.is_empty());
    world
        .reset()
        .verify_code(reset::VerifyCodeRequest {
            session_id: started.session_id.clone(),
            method_id: email.clone(),
            code,
        })
        .await
        .expect("verifies");

    // A decoy: pending for a few seconds, then sent; nothing is mailed.
    let mails = world.smtp.messages().len();
    let decoy = start(&world, "nobody-here").await;
    let method = decoy.methods[0].method_id.clone();
    world
        .reset()
        .send_code(reset::SendCodeRequest {
            session_id: decoy.session_id.clone(),
            method_id: method.clone(),
            ..Default::default()
        })
        .await
        .expect("a decoy send answers like a real one");
    let pending = status(&world, &decoy.session_id, &method)
        .await
        .expect("status");
    assert_eq!(state(&pending), CodeDeliveryState::Pending);
    world.clock.advance(chrono::Duration::seconds(4));
    let later = status(&world, &decoy.session_id, &method)
        .await
        .expect("status");
    assert_eq!(state(&later), CodeDeliveryState::Sent);
    assert!(later.alternatives.is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(world.smtp.messages().len(), mails, "a decoy mails nothing");

    // Bad input is refused at the edge.
    let e = status(&world, &decoy.session_id, "not a method id")
        .await
        .expect_err("invalid");
    assert_eq!(e.code(), Code::InvalidArgument);
    world.stop().await;
}

/// Waits for the provider request number `seen` (0-based) and returns the code it carries.
async fn next_sms_code(world: &World, seen: usize) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(r) = world.sms.requests().get(seen) {
            return code_in(&r.body.replace(PHONE, "")).expect("code in SMS body");
        }
        assert!(tokio::time::Instant::now() < deadline, "no SMS within 15 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Dana, with an email and a phone registered in her first registration (no cool-down), under
/// a policy that needs one method; returns (email method id, phone method id).
async fn dana_with_email_and_phone(world: &World) -> (String, String) {
    world
        .set_policy(sspr_proto::admin::v1::Scope::All, &[], 1)
        .await
        .expect("policy");
    world
        .upsert_user("dana", PASSWORD, &[], false)
        .await
        .expect("user");
    let mut reg = world.registration();
    let begin = reg
        .begin_registration(registration::BeginRegistrationRequest {
            user_id: "dana".into(),
            password: PASSWORD.into(),
            locale: "en".into(),
        })
        .await
        .expect("begin")
        .into_inner();
    let seen = world.mail_count(EMAIL);
    let email = reg
        .add_method(registration::AddMethodRequest {
            session_id: begin.session_id.clone(),
            kind: MethodKind::Email as i32,
            destination: EMAIL.into(),
        })
        .await
        .expect("add email")
        .into_inner();
    let code = world.next_code(EMAIL, seen).await.expect("email code");
    reg.confirm_method(registration::ConfirmMethodRequest {
        session_id: begin.session_id.clone(),
        method_id: email.method_id.clone(),
        code,
    })
    .await
    .expect("confirm email");
    let sms_seen = world.sms.requests().len();
    let phone = reg
        .add_method(registration::AddMethodRequest {
            session_id: begin.session_id.clone(),
            kind: MethodKind::Sms as i32,
            destination: PHONE.into(),
        })
        .await
        .expect("add phone")
        .into_inner();
    let code = next_sms_code(world, sms_seen).await;
    reg.confirm_method(registration::ConfirmMethodRequest {
        session_id: begin.session_id.clone(),
        method_id: phone.method_id.clone(),
        code,
    })
    .await
    .expect("confirm phone");

    (email.method_id, phone.method_id)
}

async fn expired_sms_offers_the_email_method(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    let (email, phone) = dana_with_email_and_phone(&world).await;
    let started = start(&world, "dana").await;
    // The provider answers "try later" once; the code expires before the retry.
    world.sms.respond_next(1, 503, "{}").expect("sink reply");
    let calls = world.sms.requests().len();
    world
        .reset()
        .send_code(reset::SendCodeRequest {
            session_id: started.session_id.clone(),
            method_id: phone.clone(),
            ..Default::default()
        })
        .await
        .expect("send to the phone");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while world.sms.requests().len() == calls {
        assert!(tokio::time::Instant::now() < deadline, "no SMS attempt");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    world.clock.advance(chrono::Duration::minutes(11));
    let expired = wait_state(
        &world,
        &started.session_id,
        &phone,
        CodeDeliveryState::Expired,
    )
    .await;
    let offered: Vec<(&str, i32)> = expired
        .alternatives
        .iter()
        .map(|m| (m.method_id.as_str(), m.kind))
        .collect();
    assert_eq!(offered, [(email.as_str(), MethodKind::Email as i32)]);

    let code = world
        .send_reset_code(&started.session_id, &email, EMAIL)
        .await
        .expect("the code mail");
    let sent = wait_state(&world, &started.session_id, &email, CodeDeliveryState::Sent).await;
    assert!(sent.alternatives.is_empty());
    // The phone's code stays expired, whatever comes later.
    let still = status(&world, &started.session_id, &phone)
        .await
        .expect("status");
    assert_eq!(state(&still), CodeDeliveryState::Expired);
    world
        .reset()
        .verify_code(reset::VerifyCodeRequest {
            session_id: started.session_id.clone(),
            method_id: email.clone(),
            code,
        })
        .await
        .expect("verifies");
    world
        .reset()
        .complete_reset(reset::CompleteResetRequest {
            session_id: started.session_id.clone(),
            new_password: NEW_PASSWORD.into(),
        })
        .await
        .expect("the password is set");
    world.stop().await;
}

/// The end-to-end failure path: notification emits `code.delivery_failed` (reason `rejected`,
/// with the method id) when the SMS provider refuses a code for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_sms_offers_the_email_method_sqlite() {
    refused_sms_offers_the_email_method(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_sms_offers_the_email_method_postgres() {
    refused_sms_offers_the_email_method(Backend::Postgres).await;
}

async fn refused_sms_offers_the_email_method(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    let (email, phone) = dana_with_email_and_phone(&world).await;

    // From now on the SMS provider refuses every message for good.
    world.sms.set_status(400).expect("sink status");
    let started = start(&world, "dana").await;
    assert_eq!(started.methods.len(), 2);
    world
        .reset()
        .send_code(reset::SendCodeRequest {
            session_id: started.session_id.clone(),
            method_id: phone.clone(),
            ..Default::default()
        })
        .await
        .expect("the send is accepted (delivery is asynchronous)");
    let failed = wait_state(
        &world,
        &started.session_id,
        &phone,
        CodeDeliveryState::Failed,
    )
    .await;
    let offered: Vec<&str> = failed
        .alternatives
        .iter()
        .map(|m| m.method_id.as_str())
        .collect();
    assert_eq!(offered, [email.as_str()]);
    assert_eq!(failed.alternatives[0].kind, MethodKind::Email as i32);
    assert!(
        !failed.alternatives[0].masked_destination.contains("dana"),
        "masked"
    );

    // Dana switches to her email and finishes.
    let code = world
        .send_reset_code(&started.session_id, &email, EMAIL)
        .await
        .expect("the code mail");
    wait_state(&world, &started.session_id, &email, CodeDeliveryState::Sent).await;
    world
        .reset()
        .verify_code(reset::VerifyCodeRequest {
            session_id: started.session_id.clone(),
            method_id: email.clone(),
            code,
        })
        .await
        .expect("verifies");
    world
        .reset()
        .complete_reset(reset::CompleteResetRequest {
            session_id: started.session_id.clone(),
            new_password: NEW_PASSWORD.into(),
        })
        .await
        .expect("the password is set");
    // Completed: the session is unknown to GetCodeStatus as to every other call.
    let e = status(&world, &started.session_id, &phone)
        .await
        .expect_err("the session is completed");
    assert_eq!(e.code(), Code::Unauthenticated);
    world.stop().await;
}
