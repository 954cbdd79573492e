//! `Admin.DeleteUser` cascades end to end: the directory's `user.deleted` event makes enrolment
//! forget the user's methods and registration sessions and verification forget the user's reset
//! sessions and codes. Through the gateway, every service over a real NATS, real SMTP, on SQLite
//! and (when configured) PostgreSQL.

use std::time::Duration;

use sspr_bus::subjects;
use sspr_proto::admin::v1::{self as admin, Scope};
use sspr_proto::registration::v1 as registration;
use sspr_proto::reset::v1 as reset;
use sspr_tests::{Backend, World, on_both_backends};
use tonic::Code;

const PASSWORD: &str = "correct horse battery";

on_both_backends! {
    delete_user_cascades => delete_user_cascades_sqlite, delete_user_cascades_postgres;
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

/// Waits (up to 15 s) until the durable consumer `durable` has delivered at least one
/// `user.deleted` message and settled everything it was given.
async fn wait_consumed(world: &World, durable: &str) {
    let client = world.nats.connect().await.expect("nats");
    let js = async_nats::jetstream::new(client);
    let stream = js
        .get_stream(subjects::EVENTS_STREAM)
        .await
        .expect("events stream");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(info) = stream.consumer_info(durable).await
            && info.delivered.consumer_sequence > 0
            && info.num_pending == 0
            && info.num_ack_pending == 0
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{durable} did not process user.deleted within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn delete_user_cascades(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    world
        .set_policy(Scope::All, &[], 1)
        .await
        .expect("set policy");
    for user in ["alice", "bob"] {
        world
            .upsert_user(user, PASSWORD, &[], false)
            .await
            .expect("upsert");
    }
    let alice_method = world
        .register_email("alice", PASSWORD, "alice@example.com")
        .await
        .expect("alice registers");
    let bob_method = world
        .register_email("bob", PASSWORD, "bob@example.com")
        .await
        .expect("bob registers");

    // alice is in the middle of a reset, with a code in her mailbox.
    let started = start(&world, "alice").await;
    assert_eq!(
        started.methods.first().map(|m| m.method_id.clone()),
        Some(alice_method.clone())
    );
    let code = world
        .send_reset_code(&started.session_id, &alice_method, "alice@example.com")
        .await
        .expect("reset code mailed");

    world
        .admin()
        .delete_user(World::as_admin(admin::DeleteUserRequest {
            user_id: "alice".into(),
        }))
        .await
        .expect("delete user");
    world
        .wait_event(subjects::events::USER_DELETED, |_| true)
        .await
        .expect("user.deleted published");
    wait_consumed(&world, subjects::ENROLMENT_USER_DELETED_CONSUMER).await;
    wait_consumed(&world, subjects::VERIFICATION_USER_DELETED_CONSUMER).await;

    // The reset session in flight is gone: like an unknown session, even with the mailed code.
    let e = world
        .reset()
        .verify_code(reset::VerifyCodeRequest {
            session_id: started.session_id.clone(),
            method_id: alice_method.clone(),
            code,
        })
        .await
        .expect_err("the session of a deleted user does not work");
    assert_eq!(e.code(), Code::Unauthenticated, "{}", e.message());

    // Re-created under the same id, alice has nothing registered.
    world
        .upsert_user("alice", PASSWORD, &[], false)
        .await
        .expect("re-create alice");
    let again = start(&world, "alice").await;
    assert!(
        (1..=2).contains(&again.methods.len()),
        "a decoy has the shape of a real flow"
    );
    assert!(
        again.methods.iter().all(|m| m.method_id != alice_method),
        "no real method is left"
    );
    let begun = world
        .registration()
        .begin_registration(registration::BeginRegistrationRequest {
            user_id: "alice".into(),
            password: PASSWORD.into(),
            locale: "en".into(),
        })
        .await
        .expect("begin registration")
        .into_inner();
    assert!(begun.registered.is_empty(), "{:?}", begun.registered);
    assert!(begun.registration_required);

    // bob is untouched.
    let bob = start(&world, "bob").await;
    assert_eq!(
        bob.methods.first().map(|m| m.method_id.clone()),
        Some(bob_method)
    );

    world.stop().await;
}
