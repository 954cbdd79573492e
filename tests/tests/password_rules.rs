//! The password rules end to end, through the gateway, across every service over a real NATS,
//! on SQLite and (when configured) PostgreSQL: the admin sets the password policy through
//! `Admin.SetPasswordPolicy`; each banned-password case is refused at CompleteReset (and at
//! UpsertUser) with INVALID_ARGUMENT, a message that says why and `google.rpc.BadRequest`
//! details naming each broken rule; a strong passphrase completes the reset; the password
//! history refuses the last passwords.

use sspr_proto::admin::v1::{self as admin, Scope};
use sspr_proto::reset::v1 as reset;
use sspr_tests::{Backend, World, on_both_backends};
use tonic::{Code, Status};

const OLD_PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "a brand new passphrase";
const NEWER_PASSWORD: &str = "violet lanterns over quiet rivers";
const ADDRESS: &str = "alice@example.com";

on_both_backends! {
    banned_passwords_are_refused_with_their_reasons => banned_passwords_sqlite, banned_passwords_postgres;
    the_password_history_is_enforced => password_history_sqlite, password_history_postgres;
}

/// Sets the password policy through the Admin API and checks what was stored.
async fn set_password_policy(world: &World, history_count: u32) -> admin::PasswordPolicy {
    let stored = world
        .admin()
        .set_password_policy(World::as_admin(admin::SetPasswordPolicyRequest {
            policy: Some(admin::PasswordPolicy {
                min_length: 8,
                custom_banned_terms: vec!["Quokkaville".into()],
                organisation_name: "Contoso".into(),
                history_count,
                ..Default::default()
            }),
        }))
        .await
        .expect("set password policy")
        .into_inner();
    assert_eq!(stored.custom_banned_terms, ["Quokkaville"]);
    assert_eq!(stored.organisation_name, "Contoso");
    assert_eq!(stored.history_count, history_count);
    assert_eq!(stored.max_length, 256);
    assert!(stored.version > 0);
    let read = world
        .admin()
        .get_password_policy(World::as_admin(admin::GetPasswordPolicyRequest {}))
        .await
        .expect("get password policy")
        .into_inner();
    assert_eq!(read, stored);
    stored
}

/// Alice (display name "Alice Example") with `OLD_PASSWORD` and a registered email; SSPR for all.
async fn alice(world: &World) -> String {
    world
        .set_policy(Scope::All, &[], 1)
        .await
        .expect("set policy");
    world
        .admin()
        .upsert_user(World::as_admin(admin::UpsertUserRequest {
            user_id: "alice".into(),
            display_name: "Alice Example".into(),
            locale: "en".into(),
            password: OLD_PASSWORD.into(),
            ..Default::default()
        }))
        .await
        .expect("upsert alice");
    world
        .register_email("alice", OLD_PASSWORD, ADDRESS)
        .await
        .expect("register")
}

/// Starts a reset for alice and verifies her email; returns the session id.
async fn verified_session(world: &World, method_id: &str) -> String {
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
    let seen = world.mail_count(ADDRESS);
    client
        .send_code(reset::SendCodeRequest {
            session_id: started.session_id.clone(),
            method_id: method_id.to_owned(),
            ..Default::default()
        })
        .await
        .expect("send");
    let code = world
        .next_code(ADDRESS, seen)
        .await
        .expect("code in a reset mail");
    client
        .verify_code(reset::VerifyCodeRequest {
            session_id: started.session_id.clone(),
            method_id: method_id.to_owned(),
            code,
        })
        .await
        .expect("verify");
    started.session_id
}

async fn complete(world: &World, session_id: &str, password: &str) -> Result<(), Status> {
    world
        .reset()
        .complete_reset(reset::CompleteResetRequest {
            session_id: session_id.to_owned(),
            new_password: password.to_owned(),
        })
        .await
        .map(|_| ())
}

/// Checks a refusal: INVALID_ARGUMENT, "password rejected: " followed by each rule's message,
/// and BadRequest details on `field` whose reasons are `rules`; the password is never echoed.
fn assert_rejected(status: &Status, field: &str, rules: &[&str], password: &str) {
    assert_eq!(
        status.code(),
        Code::InvalidArgument,
        "{password:?}: {status:?}"
    );
    assert!(
        status.message().starts_with("password rejected: "),
        "{password:?}: {}",
        status.message()
    );
    let details = sspr_bus::BadRequest::from_status_details(status.details())
        .unwrap_or_else(|| panic!("{password:?}: no BadRequest details"));
    let reasons: Vec<&str> = details
        .field_violations
        .iter()
        .map(|v| v.reason.as_str())
        .collect();
    assert_eq!(reasons, rules, "{password:?}");
    let messages: Vec<&str> = details
        .field_violations
        .iter()
        .map(|v| v.description.as_str())
        .collect();
    assert_eq!(
        status.message(),
        format!("password rejected: {}", messages.join("; ")),
        "the message lists every rule"
    );
    for v in &details.field_violations {
        assert_eq!(v.field, field);
    }
    assert!(!status.message().contains(password));
    let raw = status.details();
    assert!(
        !raw.windows(password.len())
            .any(|w| w == password.as_bytes()),
        "{password:?} echoed in the details"
    );
}

/// (password, broken rules) for alice, with the custom term "Quokkaville" and organisation
/// "Contoso"; the cases are those of the policy service's unit tests.
const BANNED: &[(&str, &[&str])] = &[
    // Exact common passwords.
    ("qwertyuiop", &["banned_password", "score_too_low"]),
    ("PASSWORD", &["banned_password", "score_too_low"]),
    // Leetspeak.
    ("P@ssw0rd", &["banned_password", "score_too_low"]),
    ("p@$$w0rd", &["banned_password", "score_too_low"]),
    // Edit distance 1.
    ("passwprd", &["banned_password", "score_too_low"]),
    ("passwordd", &["banned_password", "score_too_low"]),
    // The user's name.
    ("ALICE!!!", &["contains_name", "score_too_low"]),
    ("exampleexample", &["contains_name", "score_too_low"]),
    // Score below 5: three common passwords and one character.
    ("dragonmonkeyshadow!", &["banned_password", "score_too_low"]),
    ("qpasswordqq", &["banned_password", "score_too_low"]),
    // The admin's custom term, exactly, in leetspeak and within one edit.
    ("quokkaville", &["banned_term", "score_too_low"]),
    ("Qu0kk@v1lle", &["banned_term", "score_too_low"]),
    ("quokkavxlle", &["banned_term", "score_too_low"]),
    // The organisation name.
    ("C0nt0s0!!", &["contains_organisation", "score_too_low"]),
    // Length.
    ("zq8!kx3", &["too_short"]),
];

async fn banned_passwords_are_refused_with_their_reasons(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    set_password_policy(&world, 0).await;
    let method_id = alice(&world).await;
    let session = verified_session(&world, &method_id).await;

    for (password, rules) in BANNED {
        let status = complete(&world, &session, password)
            .await
            .expect_err(password);
        assert_rejected(&status, "new_password", rules, password);
    }

    // UpsertUser is held to the same rules, with the details on `password`.
    for (password, rules) in [
        ("P@ssw0rd", &["banned_password", "score_too_low"][..]),
        ("ALICE!!!", &["contains_name", "score_too_low"][..]),
    ] {
        let status = world
            .admin()
            .upsert_user(World::as_admin(admin::UpsertUserRequest {
                user_id: "alice".into(),
                display_name: "Alice Example".into(),
                locale: "en".into(),
                password: password.into(),
                ..Default::default()
            }))
            .await
            .expect_err(password);
        assert_rejected(&status, "password", rules, password);
    }

    // The refusals left the session usable: a strong passphrase completes it.
    complete(&world, &session, NEW_PASSWORD)
        .await
        .expect("a strong passphrase is accepted");
    world
        .wait_event("sspr.events.v1.reset.completed", |_| true)
        .await
        .expect("reset.completed");
    let status = complete(&world, &session, NEWER_PASSWORD)
        .await
        .expect_err("the session is used up");
    assert_ne!(status.code(), Code::Ok);
    world
        .register_email("alice", NEW_PASSWORD, "alice2@example.com")
        .await
        .expect("the new password signs in");

    // No refused password reached an event.
    for e in world.events() {
        for (password, _) in BANNED {
            assert!(
                !e.payload
                    .windows(password.len())
                    .any(|w| w == password.as_bytes()),
                "{password:?} in {}",
                e.subject
            );
        }
    }
    world.stop().await;
}

async fn the_password_history_is_enforced(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    set_password_policy(&world, 2).await;
    let method_id = alice(&world).await;

    // First reset: the current password is one of the last 2.
    let session = verified_session(&world, &method_id).await;
    let status = complete(&world, &session, OLD_PASSWORD)
        .await
        .expect_err("the current password");
    assert_rejected(&status, "new_password", &["password_reused"], OLD_PASSWORD);
    assert_eq!(
        status.message(),
        "password rejected: must not be one of your last 2 passwords"
    );
    complete(&world, &session, NEW_PASSWORD)
        .await
        .expect("a new password");

    // Second reset: going back to the previous password is refused, and CheckPassword says
    // so before CompleteReset is tried.
    let session = verified_session(&world, &method_id).await;
    let checked = world
        .reset()
        .check_password(reset::CheckPasswordRequest {
            session_id: session.clone(),
            password: OLD_PASSWORD.into(),
        })
        .await
        .expect("check the previous password")
        .into_inner();
    assert!(!checked.acceptable, "{checked:?}");
    let rules: Vec<&str> = checked.violations.iter().map(|v| v.rule.as_str()).collect();
    assert_eq!(rules, ["password_reused"]);
    let checked = world
        .reset()
        .check_password(reset::CheckPasswordRequest {
            session_id: session.clone(),
            password: NEWER_PASSWORD.into(),
        })
        .await
        .expect("check a new password")
        .into_inner();
    assert!(checked.acceptable, "{checked:?}");
    let status = complete(&world, &session, OLD_PASSWORD)
        .await
        .expect_err("the previous password");
    assert_rejected(&status, "new_password", &["password_reused"], OLD_PASSWORD);
    let status = complete(&world, &session, NEW_PASSWORD)
        .await
        .expect_err("the current password");
    assert_rejected(&status, "new_password", &["password_reused"], NEW_PASSWORD);
    complete(&world, &session, NEWER_PASSWORD)
        .await
        .expect("a third password");
    world
        .register_email("alice", NEWER_PASSWORD, "alice2@example.com")
        .await
        .expect("the newest password signs in");
    world.stop().await;
}
