//! Idempotency keys through the whole system (gateway, every service, a real nats-server and
//! SMTP sink), on SQLite and PostgreSQL: a retried call with the same `x-request-id` gets the
//! first call's answer and does not act twice.

use std::time::Duration;

use sspr_bus::subjects::rpc::verification;
use sspr_proto::admin::v1::{self as admin, Scope};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::registration::v1 as registration;
use sspr_proto::reset::v1 as reset;
use sspr_storage::sea_orm::EntityTrait;
use sspr_tests::{Backend, World, on_both_backends};
use tonic::Code;

const PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "a brand new passphrase";
const ADDRESS: &str = "alice@example.com";

on_both_backends! {
    retried_calls_get_the_first_answer => retried_calls_get_the_first_answer_sqlite, retried_calls_get_the_first_answer_postgres;
    registration_and_admin_retries_act_once => registration_and_admin_retries_act_once_sqlite, registration_and_admin_retries_act_once_postgres;
}

fn keyed<T>(message: T, key: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("x-request-id", key.parse().expect("ascii key"));
    request
}

/// The verification database, to look at what sits at rest and to lose a stored answer.
async fn verification_db(world: &World) -> sspr_storage::sea_orm::DatabaseConnection {
    sspr_storage::connect("verification", &world.db_settings())
        .await
        .expect("verification database")
}

async fn retried_calls_get_the_first_answer(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    world.set_policy(Scope::All, &[], 1).await.expect("policy");
    world
        .upsert_user("alice", PASSWORD, &[], false)
        .await
        .expect("user");
    let method_id = world
        .register_email("alice", PASSWORD, ADDRESS)
        .await
        .expect("register");
    let mut client = world.reset();

    // StartReset twice with one key: the same session; its id is not stored in clear.
    let start = reset::StartResetRequest {
        user_id: "alice".into(),
        locale: "en".into(),
        ..Default::default()
    };
    let first = client
        .start_reset(keyed(start.clone(), "start-1"))
        .await
        .expect("start")
        .into_inner();
    let again = client
        .start_reset(keyed(start.clone(), "start-1"))
        .await
        .expect("start retried")
        .into_inner();
    assert_eq!(again, first, "the retry got the first answer");
    let other = client
        .start_reset(keyed(start, "start-2"))
        .await
        .expect("another start")
        .into_inner();
    assert_ne!(
        other.session_id, first.session_id,
        "another key starts anew"
    );
    let db = verification_db(&world).await;
    let rows = sspr_storage::idempotency::entity::Entity::find()
        .all(&db)
        .await
        .expect("rows");
    assert!(rows.len() >= 2);
    for row in &rows {
        let answer = row.answer.clone().unwrap_or_default();
        let needle = first.session_id.as_bytes();
        assert!(
            !answer.windows(needle.len()).any(|w| w == needle),
            "a session id sits in clear at rest"
        );
        assert!(!row.lookup.contains("start-1"));
    }

    // SendCode twice with one key: one code mail, the same answer.
    let session_id = first.session_id.clone();
    let send = reset::SendCodeRequest {
        session_id: session_id.clone(),
        method_id: method_id.clone(),
        ..Default::default()
    };
    let seen = world.mail_count(ADDRESS);
    let sent = client
        .send_code(keyed(send.clone(), "send-1"))
        .await
        .expect("send")
        .into_inner();
    let code = world.next_code(ADDRESS, seen).await.expect("the code mail");
    let resent = client
        .send_code(keyed(send.clone(), "send-1"))
        .await
        .expect("send retried")
        .into_inner();
    assert_eq!(resent, sent);

    // The same key for another request: refused, nothing sent.
    let status = client
        .send_code(keyed(
            reset::SendCodeRequest {
                method_id: "another-method".into(),
                ..send.clone()
            },
            "send-1",
        ))
        .await
        .expect_err("a reused key");
    assert_eq!(status.code(), Code::InvalidArgument);

    // The first attempt's state committed but its answer was lost (a crash between the two):
    // the retry is answered from the code row, without a second code.
    let forgotten = sspr_storage::idempotency::forget_answers(&db, verification::SEND_CODE)
        .await
        .expect("forget");
    assert_eq!(forgotten, 1);
    let recovered = client
        .send_code(keyed(send, "send-1"))
        .await
        .expect("send retried after the answer was lost")
        .into_inner();
    assert_eq!(recovered, sent);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(world.mail_count(ADDRESS), seen + 1, "exactly one code mail");

    // The first code still verifies, and the retried verification and completion get the
    // first answers.
    let verify = reset::VerifyCodeRequest {
        session_id: session_id.clone(),
        method_id: method_id.clone(),
        code,
    };
    let verified = client
        .verify_code(keyed(verify.clone(), "verify-1"))
        .await
        .expect("the first code verifies")
        .into_inner();
    assert_eq!(verified.methods_remaining, 0);
    let verified_again = client
        .verify_code(keyed(verify.clone(), "verify-1"))
        .await
        .expect("verify retried")
        .into_inner();
    assert_eq!(verified_again, verified);
    // Its answer lost: the used code records this request, so the retry still succeeds.
    sspr_storage::idempotency::forget_answers(&db, verification::VERIFY_CODE)
        .await
        .expect("forget");
    let verified_from_state = client
        .verify_code(keyed(verify.clone(), "verify-1"))
        .await
        .expect("verify retried after the answer was lost")
        .into_inner();
    assert_eq!(verified_from_state, verified);
    // Another key with the used code is refused as before.
    let status = client
        .verify_code(keyed(verify, "verify-2"))
        .await
        .expect_err("a used code");
    assert_ne!(status.code(), Code::Ok);
    let complete = reset::CompleteResetRequest {
        session_id,
        new_password: NEW_PASSWORD.into(),
    };
    let completed = client
        .complete_reset(keyed(complete.clone(), "complete-1"))
        .await
        .expect("complete")
        .into_inner();
    let completed_again = client
        .complete_reset(keyed(complete.clone(), "complete-1"))
        .await
        .expect("complete retried")
        .into_inner();
    assert_eq!(completed_again, completed);
    // Its answer lost: the session records the completion by this request; success again
    // (without the strength estimate, which only the password check computes).
    sspr_storage::idempotency::forget_answers(&db, verification::COMPLETE_RESET)
        .await
        .expect("forget");
    let completed_from_state = client
        .complete_reset(keyed(complete.clone(), "complete-1"))
        .await
        .expect("complete retried after the answer was lost")
        .into_inner();
    assert_eq!(completed_from_state.strength, None);
    // Without the key the completed session cannot be replayed.
    let replay = client
        .complete_reset(complete)
        .await
        .expect_err("a completed session is done");
    assert_ne!(replay.code(), Code::Ok);
    world.stop().await;
}

async fn registration_and_admin_retries_act_once(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    // Admin: a retried SetPolicy is not a second change (the version moves once).
    let policy = admin::SetPolicyRequest {
        policy: Some(admin::Policy {
            scope: Scope::All as i32,
            methods_required: 1,
            allowed_methods: vec![MethodKind::Email as i32],
            ..Default::default()
        }),
    };
    let mut admin_client = world.admin();
    let with_key = |body: admin::SetPolicyRequest, key: &str| {
        let mut request = World::as_admin(body);
        request
            .metadata_mut()
            .insert("x-request-id", key.parse().expect("ascii"));
        request
    };
    let set = admin_client
        .set_policy(with_key(policy.clone(), "policy-1"))
        .await
        .expect("set policy")
        .into_inner();
    let set_again = admin_client
        .set_policy(with_key(policy, "policy-1"))
        .await
        .expect("set policy retried")
        .into_inner();
    assert_eq!(set_again, set);
    let current = admin_client
        .get_policy(World::as_admin(admin::GetPolicyRequest {}))
        .await
        .expect("get policy")
        .into_inner();
    assert_eq!(current.version, set.version, "changed once");

    // Registration: a retried AddMethod sends one code and names the same method; a retried
    // ConfirmMethod gets the same answer.
    world
        .upsert_user("bob", PASSWORD, &[], false)
        .await
        .expect("user");
    let mut reg = world.registration();
    let begin = reg
        .begin_registration(registration::BeginRegistrationRequest {
            user_id: "bob".into(),
            password: PASSWORD.into(),
            locale: "en".into(),
        })
        .await
        .expect("begin")
        .into_inner();
    let address = "bob@example.com";
    let seen = world.mail_count(address);
    let add = registration::AddMethodRequest {
        session_id: begin.session_id.clone(),
        kind: MethodKind::Email as i32,
        destination: address.into(),
    };
    let added = reg
        .add_method(keyed(add.clone(), "add-1"))
        .await
        .expect("add")
        .into_inner();
    let code = world.next_code(address, seen).await.expect("code mail");
    let added_again = reg
        .add_method(keyed(add, "add-1"))
        .await
        .expect("add retried")
        .into_inner();
    assert_eq!(added_again, added);
    let confirm = registration::ConfirmMethodRequest {
        session_id: begin.session_id,
        method_id: added.method_id,
        code,
    };
    let confirmed = reg
        .confirm_method(keyed(confirm.clone(), "confirm-1"))
        .await
        .expect("the first code confirms")
        .into_inner();
    let confirmed_again = reg
        .confirm_method(keyed(confirm, "confirm-1"))
        .await
        .expect("confirm retried")
        .into_inner();
    assert_eq!(confirmed_again, confirmed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(world.mail_count(address), seen + 1, "one code mail");
    world.stop().await;
}
