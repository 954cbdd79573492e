//! PasswordReset.CheckPassword, the strength in CompleteReset, and the policy's helpdesk
//! contact in the code mail and the password-changed mail, end to end through the gateway on
//! SQLite and (when configured) PostgreSQL.

use sspr_proto::admin::v1::{self as admin, Scope};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::reset::v1 as reset;
use sspr_tests::{Backend, World, on_both_backends};
use tonic::Code;

const PASSWORD: &str = "correct horse battery";
const STRONG: &str = "velvet quokka tambourine 37 drizzle";
const ADDRESS: &str = "pat@example.com";
const HELPDESK: &str = "Call <IT> & ask for \"Sam\"";

on_both_backends! {
    check_password_flow => check_password_sqlite, check_password_postgres;
    helpdesk_in_mails => helpdesk_in_mails_sqlite, helpdesk_in_mails_postgres;
}

async fn set_policy(world: &World, helpdesk: &str) {
    world
        .admin()
        .set_policy(World::as_admin(admin::SetPolicyRequest {
            policy: Some(admin::Policy {
                scope: Scope::All as i32,
                methods_required: 1,
                allowed_methods: vec![MethodKind::Email as i32],
                helpdesk_contact: helpdesk.to_owned(),
                ..Default::default()
            }),
        }))
        .await
        .expect("policy");
}

/// A user with a registered email, and a started reset flow for them.
async fn started(world: &World) -> (reset::StartResetResponse, String) {
    world
        .upsert_user("pat", PASSWORD, &[], false)
        .await
        .expect("user");
    let method_id = world
        .register_email("pat", PASSWORD, ADDRESS)
        .await
        .expect("register");
    let started = world
        .reset()
        .start_reset(reset::StartResetRequest {
            user_id: "pat".into(),
            locale: "en".into(),
            ..Default::default()
        })
        .await
        .expect("start")
        .into_inner();
    (started, method_id)
}

async fn check(world: &World, session_id: &str, password: &str) -> reset::CheckPasswordResponse {
    world
        .reset()
        .check_password(reset::CheckPasswordRequest {
            session_id: session_id.to_owned(),
            password: password.to_owned(),
        })
        .await
        .expect("check")
        .into_inner()
}

async fn check_password_flow(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    set_policy(&world, "").await;
    let (started, method_id) = started(&world).await;
    let session_id = started.session_id.clone();

    // Not before the flow is verified, and not with a malformed request.
    let early = world
        .reset()
        .check_password(reset::CheckPasswordRequest {
            session_id: session_id.clone(),
            password: STRONG.into(),
        })
        .await
        .expect_err("not verified yet");
    assert_eq!(early.code(), Code::FailedPrecondition, "{early:?}");
    let empty = world
        .reset()
        .check_password(reset::CheckPasswordRequest {
            session_id: session_id.clone(),
            password: String::new(),
        })
        .await
        .expect_err("no password");
    assert_eq!(empty.code(), Code::InvalidArgument);

    let code = world
        .send_reset_code(&session_id, &method_id, ADDRESS)
        .await
        .expect("code");
    world
        .reset()
        .verify_code(reset::VerifyCodeRequest {
            session_id: session_id.clone(),
            method_id: method_id.clone(),
            code,
        })
        .await
        .expect("verify");

    // A banned password: its rules, as CompleteReset would name them, and a low score.
    let weak = check(&world, &session_id, "P@ssw0rd1").await;
    assert!(!weak.acceptable);
    let rules: Vec<&str> = weak.violations.iter().map(|v| v.rule.as_str()).collect();
    assert!(rules.contains(&"banned_password"), "{rules:?}");
    assert!(
        weak.violations.iter().all(
            |v| !v.description.is_empty() && !v.description.to_lowercase().contains("p@ssw0rd")
        )
    );
    let strength = weak.strength.expect("strength");
    assert!(strength.score <= 1, "{strength:?}");
    assert!(!strength.suggestions.is_empty());
    let refused = world
        .reset()
        .complete_reset(reset::CompleteResetRequest {
            session_id: session_id.clone(),
            new_password: "P@ssw0rd1".into(),
        })
        .await
        .expect_err("CompleteReset refuses it too");
    let details =
        sspr_bus::BadRequest::from_status_details(refused.details()).expect("BadRequest details");
    let complete_rules: Vec<&str> = details
        .field_violations
        .iter()
        .map(|v| v.reason.as_str())
        .collect();
    assert_eq!(complete_rules, rules, "the same rule ids as CompleteReset");

    // The user's own name is a rule of its own.
    let named = check(&world, &session_id, "patpatpat1").await;
    assert!(!named.acceptable);
    assert!(named.violations.iter().any(|v| v.rule == "contains_name"));

    // A strong one is acceptable, with a high score.
    let strong = check(&world, &session_id, STRONG).await;
    assert!(strong.acceptable, "{:?}", strong.violations);
    assert!(strong.violations.is_empty());
    let strength = strong.strength.expect("strength");
    assert!(strength.score >= 3, "{strength:?}");
    assert!(strength.guesses_log10 > 8.0);

    // Checking changed nothing: the flow completes, with the strength of what was set.
    let completed = world
        .reset()
        .complete_reset(reset::CompleteResetRequest {
            session_id: session_id.clone(),
            new_password: STRONG.into(),
        })
        .await
        .expect("complete")
        .into_inner();
    let strength = completed.strength.expect("strength at completion");
    assert!(strength.score >= 3, "{strength:?}");
    // The flow is over: no more checks with it.
    let after = world
        .reset()
        .check_password(reset::CheckPasswordRequest {
            session_id,
            password: STRONG.into(),
        })
        .await
        .expect_err("completed flow");
    assert_eq!(after.code(), Code::Unauthenticated);
    for event in world.events() {
        for secret in [STRONG.as_bytes(), b"P@ssw0rd1".as_slice()] {
            assert!(
                !event.payload.windows(secret.len()).any(|w| w == secret),
                "a password in {}",
                event.subject
            );
        }
    }
    world.stop().await;
}

async fn helpdesk_in_mails(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    set_policy(&world, HELPDESK).await;
    let (started, method_id) = started(&world).await;
    let seen = world.mail_count(ADDRESS);
    let code = world
        .send_reset_code(&started.session_id, &method_id, ADDRESS)
        .await
        .expect("code");
    let code_mail = world.mail_to(ADDRESS, seen).await.expect("code mail");
    let text = code_mail.text_body().expect("text");
    assert!(text.contains(&code), "the code mail: {text}");
    assert!(
        text.contains(&format!("Contact your helpdesk: {HELPDESK}")),
        "{text}"
    );
    let html = code_mail.html_body().expect("html");
    assert!(
        html.contains("Contact your helpdesk: Call &lt;IT&gt; &amp; ask for &quot;Sam&quot;"),
        "{html}"
    );
    assert!(!html.contains("<IT>"));

    world
        .reset()
        .verify_code(reset::VerifyCodeRequest {
            session_id: started.session_id.clone(),
            method_id,
            code,
        })
        .await
        .expect("verify");
    let seen = world.mail_count(ADDRESS);
    world
        .reset()
        .complete_reset(reset::CompleteResetRequest {
            session_id: started.session_id,
            new_password: STRONG.into(),
        })
        .await
        .expect("complete");
    let changed = world
        .mail_to(ADDRESS, seen)
        .await
        .expect("password-changed mail");
    assert_eq!(
        changed.subject().as_deref(),
        Some("Your password was changed")
    );
    let text = changed.text_body().expect("text");
    assert!(
        text.contains(&format!("Contact your helpdesk: {HELPDESK}")),
        "{text}"
    );
    let html = changed.html_body().expect("html");
    assert!(
        html.contains("Call &lt;IT&gt; &amp; ask for &quot;Sam&quot;"),
        "{html}"
    );
    world.stop().await;
}
