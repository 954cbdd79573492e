//! Notifications end to end, through the gateway, on SQLite and (when configured) PostgreSQL:
//! a completed reset mails "your password was changed" to the user's registered email in the
//! user's locale, and an administrator's reset alerts the other administrators.

use std::time::Duration;

use sspr_proto::admin::v1::{self as admin, Scope};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::registration::v1 as registration;
use sspr_proto::reset::v1 as reset;
use sspr_tests::{Backend, World, code_in, on_both_backends};

const OLD_PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "a brand new passphrase";

on_both_backends! {
    user_is_told_after_a_reset => password_changed_mail_sqlite, password_changed_mail_postgres;
    french_user_gets_french_mail => french_mail_sqlite, french_mail_postgres;
    admin_reset_alerts_other_admins => admin_alert_sqlite, admin_alert_postgres;
}

async fn upsert(world: &World, user_id: &str, locale: &str, is_admin: bool) {
    world
        .admin()
        .upsert_user(World::as_admin(admin::UpsertUserRequest {
            user_id: user_id.into(),
            display_name: format!("User {user_id}"),
            locale: locale.into(),
            group_ids: vec![],
            is_admin,
            password: OLD_PASSWORD.into(),
            enabled: None,
            locked: None,
        }))
        .await
        .expect("upsert");
}

/// Registers `email` (and `phone` when given) for `user_id`; returns the method ids and the
/// registration code mail.
async fn register(
    world: &World,
    user_id: &str,
    locale: &str,
    email: &str,
    phone: Option<&str>,
) -> (String, Option<String>, sspr_testkit::ReceivedMail) {
    let mut reg = world.registration();
    let begin = reg
        .begin_registration(registration::BeginRegistrationRequest {
            user_id: user_id.into(),
            password: OLD_PASSWORD.into(),
            locale: locale.into(),
        })
        .await
        .expect("begin")
        .into_inner();
    let seen = world.mail_count(email);
    let added = reg
        .add_method(registration::AddMethodRequest {
            session_id: begin.session_id.clone(),
            kind: MethodKind::Email as i32,
            destination: email.into(),
        })
        .await
        .expect("add email")
        .into_inner();
    let mail = world.mail_to(email, seen).await.expect("registration mail");
    let code = code_in(&mail.text_body().expect("text")).expect("code");
    reg.confirm_method(registration::ConfirmMethodRequest {
        session_id: begin.session_id.clone(),
        method_id: added.method_id.clone(),
        code,
    })
    .await
    .expect("confirm email");
    let phone_id = match phone {
        None => None,
        Some(phone) => {
            let seen = world.sms.requests().len();
            let added = reg
                .add_method(registration::AddMethodRequest {
                    session_id: begin.session_id.clone(),
                    kind: MethodKind::Sms as i32,
                    destination: phone.into(),
                })
                .await
                .expect("add phone")
                .into_inner();
            let code = next_sms_code(world, phone, seen).await;
            reg.confirm_method(registration::ConfirmMethodRequest {
                session_id: begin.session_id.clone(),
                method_id: added.method_id.clone(),
                code,
            })
            .await
            .expect("confirm phone");
            Some(added.method_id)
        }
    };
    (added.method_id, phone_id, mail)
}

async fn next_sms_code(world: &World, phone: &str, seen: usize) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(r) = world.sms.requests().get(seen) {
            return code_in(&r.body.replace(phone, "")).expect("code in SMS body");
        }
        assert!(tokio::time::Instant::now() < deadline, "no SMS within 15 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A full reset of `user_id` with the given methods (the phone, if any, by SMS).
async fn reset_password(
    world: &World,
    user_id: &str,
    email: (&str, &str),
    phone: Option<(&str, &str)>,
) {
    let mut client = world.reset();
    let started = client
        .start_reset(reset::StartResetRequest {
            user_id: user_id.into(),
            locale: "en".into(),
            ..Default::default()
        })
        .await
        .expect("start")
        .into_inner();
    let code = world
        .send_reset_code(&started.session_id, email.0, email.1)
        .await
        .expect("reset mail");
    client
        .verify_code(reset::VerifyCodeRequest {
            session_id: started.session_id.clone(),
            method_id: email.0.into(),
            code,
        })
        .await
        .expect("verify email");
    if let Some((method_id, number)) = phone {
        let seen = world.sms.requests().len();
        client
            .send_code(reset::SendCodeRequest {
                session_id: started.session_id.clone(),
                method_id: method_id.into(),
                ..Default::default()
            })
            .await
            .expect("send sms");
        let code = next_sms_code(world, number, seen).await;
        client
            .verify_code(reset::VerifyCodeRequest {
                session_id: started.session_id.clone(),
                method_id: method_id.into(),
                code,
            })
            .await
            .expect("verify sms");
    }
    client
        .complete_reset(reset::CompleteResetRequest {
            session_id: started.session_id.clone(),
            new_password: NEW_PASSWORD.into(),
        })
        .await
        .expect("complete");
}

/// The next mail to `to` whose subject is `subject`.
async fn mail_with_subject(world: &World, to: &str, subject: &str) -> sspr_testkit::ReceivedMail {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(m) = world
            .smtp
            .messages()
            .into_iter()
            .find(|m| m.to.iter().any(|t| t == to) && m.subject().as_deref() == Some(subject))
        {
            return m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no mail {subject:?} to {to} within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn user_is_told_after_a_reset(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    world
        .set_policy(Scope::All, &[], 1)
        .await
        .expect("set policy");
    upsert(&world, "alice", "en-GB", false).await;
    let (email, _, _) = register(&world, "alice", "en", "alice@example.com", None).await;
    reset_password(&world, "alice", (&email, "alice@example.com"), None).await;
    let mail = mail_with_subject(&world, "alice@example.com", "Your password was changed").await;
    let text = mail.text_body().expect("text");
    assert!(text.contains("Hello User alice,"), "{text}");
    assert!(text.contains("UTC"), "{text}");
    assert!(text.contains("contact your helpdesk"), "{text}");
    assert!(!text.contains(NEW_PASSWORD) && !text.contains(OLD_PASSWORD));
    assert!(mail.html_body().expect("html").contains("helpdesk"));
    world.stop().await;
}

async fn french_user_gets_french_mail(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    world
        .set_policy(Scope::All, &[], 1)
        .await
        .expect("set policy");
    upsert(&world, "zoe", "fr-FR", false).await;
    let (email, _, registration_mail) =
        register(&world, "zoe", "fr-FR", "zoe@example.fr", None).await;
    assert_eq!(
        registration_mail.subject().as_deref(),
        Some("Confirmez votre adresse e-mail")
    );
    reset_password(&world, "zoe", (&email, "zoe@example.fr"), None).await;
    let mail =
        mail_with_subject(&world, "zoe@example.fr", "Votre mot de passe a été modifié").await;
    let text = mail.text_body().expect("text");
    assert!(text.contains("Bonjour User zoe,"), "{text}");
    assert!(text.contains("support informatique"), "{text}");
    world.stop().await;
}

async fn admin_reset_alerts_other_admins(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    world
        .set_policy(Scope::All, &[], 2)
        .await
        .expect("set policy");
    upsert(&world, "root", "en", true).await;
    upsert(&world, "marie", "fr-FR", true).await;
    upsert(&world, "alice", "en", false).await;
    let (root_email, root_phone, _) = register(
        &world,
        "root",
        "en",
        "root@example.com",
        Some("+33600000001"),
    )
    .await;
    register(&world, "marie", "fr-FR", "marie@example.fr", None).await;
    register(&world, "alice", "en", "alice@example.com", None).await;
    let alice_before = world.mail_count("alice@example.com");

    reset_password(
        &world,
        "root",
        (&root_email, "root@example.com"),
        Some((&root_phone.expect("phone"), "+33600000001")),
    )
    .await;
    mail_with_subject(&world, "root@example.com", "Your password was changed").await;
    let alert = mail_with_subject(
        &world,
        "marie@example.fr",
        "Réinitialisation du mot de passe d'un administrateur : root",
    )
    .await;
    let text = alert.text_body().expect("text");
    assert!(text.contains("root (User root)"), "{text}");
    assert!(text.contains("UTC"), "{text}");
    // Only administrators are alerted, and root is not alerted about itself.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(world.mail_count("alice@example.com"), alice_before);
    assert!(
        !world
            .smtp
            .messages()
            .iter()
            .any(|m| m.to.iter().any(|t| t == "root@example.com")
                && m.subject().is_some_and(|s| s.starts_with("Administrator"))),
        "root is not alerted about its own reset"
    );
    world.stop().await;
}
