//! Typed-destination confirmation and the helpdesk contact, end to end through the gateway
//! across every service over a real NATS and real SMTP, on SQLite and (when configured)
//! PostgreSQL.

use std::time::Duration;

use sspr_proto::admin::v1::{self as admin, Scope};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::reset::v1 as reset;
use sspr_tests::{Backend, World, on_both_backends, other_code};
use tonic::Code;

const PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "a brand new passphrase";
const HELPDESK: &str = "https://help.example.com/reset";
const ADDRESS: &str = "alice@example.com";

on_both_backends! {
    destination_confirmation_flow => destination_confirmation_sqlite, destination_confirmation_postgres;
}

async fn send(
    client: &mut sspr_proto::reset::v1::password_reset_client::PasswordResetClient<
        tonic::transport::Channel,
    >,
    session_id: &str,
    method_id: &str,
    typed: &str,
) -> Result<reset::SendCodeResponse, tonic::Status> {
    client
        .send_code(reset::SendCodeRequest {
            session_id: session_id.to_owned(),
            method_id: method_id.to_owned(),
            destination_confirmation: typed.to_owned(),
        })
        .await
        .map(|r| r.into_inner())
}

fn assert_mismatch(result: Result<reset::SendCodeResponse, tonic::Status>) {
    let status = result.expect_err("a mismatch is refused");
    assert_eq!(
        (status.code(), status.message()),
        (Code::InvalidArgument, "the destination does not match")
    );
}

async fn destination_confirmation_flow(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    world
        .admin()
        .set_policy(World::as_admin(admin::SetPolicyRequest {
            policy: Some(admin::Policy {
                scope: Scope::All as i32,
                methods_required: 1,
                allowed_methods: vec![MethodKind::Email as i32],
                require_full_destination: true,
                helpdesk_contact: HELPDESK.into(),
                // Many failed attempts on one user below: keep the reset block out of the way.
                limits: Some(admin::Limits {
                    failed_verifications_per_day: Some(100),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }))
        .await
        .expect("set policy");
    let stored = world
        .admin()
        .get_policy(World::as_admin(admin::GetPolicyRequest {}))
        .await
        .expect("get policy")
        .into_inner();
    assert!(stored.require_full_destination);
    assert_eq!(stored.helpdesk_contact, HELPDESK);
    world
        .upsert_user("alice", PASSWORD, &[], false)
        .await
        .expect("upsert");
    let method_id = world
        .register_email("alice", PASSWORD, ADDRESS)
        .await
        .expect("register");

    let mut client = world.reset();
    let start = |user: &'static str| {
        let mut client = world.reset();
        async move {
            client
                .start_reset(reset::StartResetRequest {
                    user_id: user.into(),
                    locale: "en".into(),
                    ..Default::default()
                })
                .await
                .expect("start")
                .into_inner()
        }
    };
    let started = start("alice").await;
    assert_eq!(started.helpdesk_contact, HELPDESK, "real session");
    let session = started.session_id.clone();

    // Required: an empty confirmation is refused, a wrong one too, and nothing is mailed.
    let missing = send(&mut client, &session, &method_id, "")
        .await
        .expect_err("missing");
    assert_eq!(
        (missing.code(), missing.message()),
        (
            Code::InvalidArgument,
            "destination_confirmation is required"
        )
    );
    let seen = world.mail_count(ADDRESS);
    assert_mismatch(send(&mut client, &session, &method_id, "bob@example.com").await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        world.mail_count(ADDRESS),
        seen,
        "nothing is sent on a mismatch"
    );
    world
        .wait_event("sspr.events.v1.code.rejected", |e| {
            e.decode::<sspr_proto::events::v1::CodeRejected>()
                .is_ok_and(|r| r.reason == "destination_mismatch")
        })
        .await
        .expect("code.rejected with destination_mismatch");

    // The right destination, typed with other case and spaces, sends the code.
    send(&mut client, &session, &method_id, "  ALICE@Example.COM ")
        .await
        .expect("matching destination");
    let code = world.next_code(ADDRESS, seen).await.expect("code mailed");

    // Attempt accounting, as for wrong codes: 4 mismatches and 1 wrong code spend the 5
    // attempts of the code just sent; even the right code is then refused until a new one.
    for _ in 0..4 {
        assert_mismatch(send(&mut client, &session, &method_id, "eve@example.com").await);
    }
    let wrong = client
        .verify_code(reset::VerifyCodeRequest {
            session_id: session.clone(),
            method_id: method_id.clone(),
            code: other_code(&code),
        })
        .await
        .expect_err("wrong code");
    assert_eq!(wrong.code(), Code::InvalidArgument);
    let used_up = client
        .verify_code(reset::VerifyCodeRequest {
            session_id: session.clone(),
            method_id: method_id.clone(),
            code: code.clone(),
        })
        .await
        .expect_err("attempts spent");
    assert_eq!(
        (used_up.code(), used_up.message()),
        (
            Code::FailedPrecondition,
            "too many wrong codes, request a new one"
        )
    );

    // A decoy (unknown user) answers exactly like a real mismatch and never mails (checked
    // before the reset completes, so no password-changed mail is in flight).
    let before = world.mail_count("@");
    let decoy = start("nobody").await;
    assert_eq!(decoy.helpdesk_contact, HELPDESK, "decoy session");
    let decoy_method = decoy.methods[0].method_id.clone();
    let missing = send(&mut client, &decoy.session_id, &decoy_method, "")
        .await
        .expect_err("missing");
    assert_eq!(
        (missing.code(), missing.message()),
        (
            Code::InvalidArgument,
            "destination_confirmation is required"
        )
    );
    for typed in ["nobody@example.com", ADDRESS] {
        assert_mismatch(send(&mut client, &decoy.session_id, &decoy_method, typed).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(world.mail_count("@"), before, "a decoy never mails");
    assert!(
        !world
            .events()
            .iter()
            .any(|e| e.subject == "sspr.events.v1.code.rejected"
                && e.decode::<sspr_proto::events::v1::CodeRejected>()
                    .is_ok_and(|r| r.meta.is_some_and(|m| m.flow_id == decoy.flow_id))),
        "a decoy emits no event"
    );

    // A fresh code (right destination again) completes the flow.
    let seen = world.mail_count(ADDRESS);
    send(&mut client, &session, &method_id, "alice@example.com")
        .await
        .expect("resend");
    let code = world.next_code(ADDRESS, seen).await.expect("new code");
    client
        .verify_code(reset::VerifyCodeRequest {
            session_id: session.clone(),
            method_id: method_id.clone(),
            code,
        })
        .await
        .expect("verify");
    client
        .complete_reset(reset::CompleteResetRequest {
            session_id: session.clone(),
            new_password: NEW_PASSWORD.into(),
        })
        .await
        .expect("complete");

    world.stop().await;
}
