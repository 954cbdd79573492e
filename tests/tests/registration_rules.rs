//! Registration rules end to end, through the gateway, across every service over a real NATS
//! with real SMTP, on SQLite and (when configured) PostgreSQL: re-confirmation after the
//! policy's days (moved past with the shared ManualClock), `Registration.GetStatus`, and users
//! listing and removing their own methods.

use sspr_proto::admin::v1::{self as admin, Scope};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::events::v1 as events;
use sspr_proto::registration::v1 as registration;
use sspr_tests::{Backend, World, on_both_backends};
use tonic::Code;

const PASSWORD: &str = "correct horse battery";
const METHOD_REMOVED: &str = "sspr.events.v1.method.removed";

on_both_backends! {
    reconfirmation_after_the_configured_days => reconfirmation_sqlite, reconfirmation_postgres;
    status_for_a_sign_in_page => status_sqlite, status_postgres;
    list_and_remove_own_methods => list_and_remove_sqlite, list_and_remove_postgres;
}

/// Scope `staff`, `required` methods, email or SMS, re-confirmation after `days`.
async fn set_policy(world: &World, required: u32, days: u32) -> admin::Policy {
    world
        .admin()
        .set_policy(World::as_admin(admin::SetPolicyRequest {
            policy: Some(admin::Policy {
                scope: Scope::Selected as i32,
                group_ids: vec!["staff".into()],
                methods_required: required,
                allowed_methods: vec![MethodKind::Email as i32, MethodKind::Sms as i32],
                reconfirm_after_days: days,
                ..Default::default()
            }),
        }))
        .await
        .expect("set policy")
        .into_inner()
}

async fn status(world: &World, user_id: &str, password: &str) -> registration::GetStatusResponse {
    world
        .registration()
        .get_status(registration::GetStatusRequest {
            user_id: user_id.into(),
            password: password.into(),
        })
        .await
        .expect("get status")
        .into_inner()
}

async fn begin(world: &World, user_id: &str) -> registration::BeginRegistrationResponse {
    world
        .registration()
        .begin_registration(registration::BeginRegistrationRequest {
            user_id: user_id.into(),
            password: PASSWORD.into(),
            locale: "en".into(),
        })
        .await
        .expect("begin registration")
        .into_inner()
}

async fn reconfirmation_after_the_configured_days(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    let stored = set_policy(&world, 1, 30).await;
    assert_eq!(stored.reconfirm_after_days, 30);
    let got = world
        .admin()
        .get_policy(World::as_admin(admin::GetPolicyRequest {}))
        .await
        .expect("get policy")
        .into_inner();
    assert_eq!(got.reconfirm_after_days, 30);
    world
        .upsert_user("alice", PASSWORD, &["staff"], false)
        .await
        .expect("alice");
    let method_id = world
        .register_email("alice", PASSWORD, "alice@contoso.test")
        .await
        .expect("register");

    let s = status(&world, "alice", PASSWORD).await;
    assert!(!s.registration_required && !s.reconfirm_required);

    world.clock.advance(chrono::Duration::days(29));
    assert!(!status(&world, "alice", PASSWORD).await.reconfirm_required);
    world.clock.advance(chrono::Duration::days(1));
    let s = status(&world, "alice", PASSWORD).await;
    assert!(s.registration_required && s.reconfirm_required);
    let begun = begin(&world, "alice").await;
    assert!(begun.registration_required && begun.reconfirm_required);

    // Re-confirm: a code to the registered address, then ConfirmMethod with it.
    let mut reg = world.registration();
    let seen = world.mail_count("alice@contoso.test");
    let again = reg
        .add_method(registration::AddMethodRequest {
            session_id: begun.session_id.clone(),
            kind: MethodKind::Email as i32,
            destination: "alice@contoso.test".into(),
        })
        .await
        .expect("reconfirmation code")
        .into_inner();
    assert_eq!(again.method_id, method_id);
    let code = world
        .next_code("alice@contoso.test", seen)
        .await
        .expect("code mailed");
    let done = reg
        .confirm_method(registration::ConfirmMethodRequest {
            session_id: begun.session_id.clone(),
            method_id: method_id.clone(),
            code,
        })
        .await
        .expect("reconfirmed")
        .into_inner();
    assert!(done.registration_complete);
    let s = status(&world, "alice", PASSWORD).await;
    assert!(!s.registration_required && !s.reconfirm_required);
    assert!(!begin(&world, "alice").await.reconfirm_required);

    // The clock runs from the re-confirmation.
    world.clock.advance(chrono::Duration::days(30));
    assert!(status(&world, "alice", PASSWORD).await.reconfirm_required);
    world.stop().await;
}

async fn status_for_a_sign_in_page(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    set_policy(&world, 1, 0).await;
    world
        .upsert_user("alice", PASSWORD, &["staff"], false)
        .await
        .expect("alice");
    world
        .upsert_user("bob", PASSWORD, &["contractors"], false)
        .await
        .expect("bob");

    let s = status(&world, "alice", PASSWORD).await;
    assert_eq!(
        s,
        registration::GetStatusResponse {
            registration_required: true,
            reconfirm_required: false,
            methods_required: 1,
            methods_registered: 0,
            eligible: true,
        }
    );
    world
        .register_email("alice", PASSWORD, "alice@contoso.test")
        .await
        .expect("register");
    let s = status(&world, "alice", PASSWORD).await;
    assert!(s.eligible && !s.registration_required);
    assert_eq!(s.methods_registered, 1);

    let bob = status(&world, "bob", PASSWORD).await;
    assert!(!bob.eligible && !bob.registration_required);

    // A wrong password is refused exactly like BeginRegistration refuses it.
    let mut reg = world.registration();
    let wrong = reg
        .get_status(registration::GetStatusRequest {
            user_id: "alice".into(),
            password: "not the password".into(),
        })
        .await
        .expect_err("wrong password");
    let begin_wrong = reg
        .begin_registration(registration::BeginRegistrationRequest {
            user_id: "alice".into(),
            password: "not the password".into(),
            locale: String::new(),
        })
        .await
        .expect_err("wrong password");
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert_eq!(wrong.message(), begin_wrong.message());
    let unknown = reg
        .get_status(registration::GetStatusRequest {
            user_id: "nobody".into(),
            password: PASSWORD.into(),
        })
        .await
        .expect_err("unknown user");
    assert_eq!(
        (unknown.code(), unknown.message()),
        (wrong.code(), wrong.message())
    );
    world.stop().await;
}

async fn list_and_remove_own_methods(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    set_policy(&world, 2, 0).await;
    world
        .upsert_user("alice", PASSWORD, &["staff"], false)
        .await
        .expect("alice");
    let first = world
        .register_email("alice", PASSWORD, "alice@contoso.test")
        .await
        .expect("first");
    let second = world
        .register_email("alice", PASSWORD, "alice.home@contoso.test")
        .await
        .expect("second");
    let third = world
        .register_email("alice", PASSWORD, "alice.work@contoso.test")
        .await
        .expect("third");

    let begun = begin(&world, "alice").await;
    // Removing a method changes alice's methods: prove one first (registration takeover).
    world.step_up(&begun).await.expect("step-up");
    let session = begun.session_id;
    let mut reg = world.registration();
    let listed = reg
        .list_methods(registration::ListMethodsRequest {
            session_id: session.clone(),
        })
        .await
        .expect("list")
        .into_inner();
    let ids: Vec<&str> = listed
        .methods
        .iter()
        .map(|m| m.method_id.as_str())
        .collect();
    assert_eq!(ids, [&first, &second, &third]);
    assert!(
        listed
            .methods
            .iter()
            .all(|m| !m.masked_destination.contains("contoso"))
    );

    reg.remove_method(registration::RemoveMethodRequest {
        session_id: session.clone(),
        method_id: third.clone(),
    })
    .await
    .expect("the third may go");
    let refused = reg
        .remove_method(registration::RemoveMethodRequest {
            session_id: session.clone(),
            method_id: second.clone(),
        })
        .await
        .expect_err("below two");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(
        refused.message(),
        "at least 2 contact methods must stay registered"
    );
    let listed = reg
        .list_methods(registration::ListMethodsRequest {
            session_id: session.clone(),
        })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.methods.len(), 2);

    let event = world
        .wait_event(METHOD_REMOVED, |_| true)
        .await
        .expect("method.removed");
    let removed: events::MethodRemoved = event.decode().expect("decodes");
    assert_eq!(removed.method_id, third);
    assert_eq!(removed.methods_registered, 2);
    assert_eq!(removed.kind, MethodKind::Email as i32);
    assert!(!removed.masked_destination.contains("contoso"));
    assert_eq!(removed.meta.map(|m| m.user_id).as_deref(), Some("alice"));
    assert_eq!(
        world
            .events()
            .iter()
            .filter(|e| e.subject == METHOD_REMOVED)
            .count(),
        1
    );

    // A removed method is gone from the reset flow too; a bad session is refused.
    let bad = reg
        .list_methods(registration::ListMethodsRequest {
            session_id: "A".repeat(43),
        })
        .await
        .expect_err("unknown session");
    assert_eq!(bad.code(), Code::Unauthenticated);
    world.stop().await;
}
