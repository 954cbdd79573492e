//! `Admin.GetDelivery` through the whole stack, on SQLite and (when configured) PostgreSQL: the
//! delivery id of a `code.issued` event is looked up through the gateway and the real
//! notification service: an email code that went out is SENT, an SMS the provider refused is
//! FAILED with the HTTP status as the reason, an unknown id is NOT_FOUND, a malformed one
//! INVALID_ARGUMENT.

use sspr_bus::subjects::events;
use sspr_proto::admin::v1::{self as admin, Scope};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::events::v1 as ev;
use sspr_proto::registration::v1 as registration;
use sspr_tests::{Backend, World, on_both_backends};
use tonic::Code;

const PASSWORD: &str = "correct horse battery";

on_both_backends! {
    deliveries_are_looked_up_through_the_gateway => delivery_status_sqlite, delivery_status_postgres;
}

/// The delivery id of the last `code.issued` event for `method_id`.
async fn delivery_of(world: &World, method_id: &str) -> String {
    world
        .wait_event(events::CODE_ISSUED, |e| {
            e.decode::<ev::CodeIssued>()
                .is_ok_and(|c| c.method_id == method_id)
        })
        .await
        .expect("code.issued")
        .decode::<ev::CodeIssued>()
        .expect("decodes")
        .delivery_id
}

async fn get(world: &World, delivery_id: &str) -> Result<admin::Delivery, tonic::Status> {
    world
        .admin()
        .get_delivery(World::as_admin(admin::GetDeliveryRequest {
            delivery_id: delivery_id.to_owned(),
        }))
        .await
        .map(tonic::Response::into_inner)
}

async fn deliveries_are_looked_up_through_the_gateway(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    world.set_policy(Scope::All, &[], 1).await.expect("policy");
    world
        .upsert_user("dora", PASSWORD, &[], false)
        .await
        .expect("user");
    let email = world
        .register_email("dora", PASSWORD, "dora@example.com")
        .await
        .expect("email registered");

    // The registration code mail went out: SENT, one attempt, no error.
    let id = delivery_of(&world, &email).await;
    world
        .wait_event(events::CODE_DELIVERED, |e| {
            e.decode::<ev::CodeDelivered>()
                .is_ok_and(|d| d.delivery_id == id)
        })
        .await
        .expect("code.delivered");
    let d = get(&world, &id).await.expect("the delivery is known");
    assert_eq!(d.delivery_id, id);
    assert_eq!(d.status, admin::DeliveryStatus::Sent as i32, "{d:?}");
    assert_eq!(d.kind, MethodKind::Email as i32);
    assert_eq!(d.attempts, 1);
    assert_eq!(d.user_id, "dora");
    assert!(d.created_at.is_some() && d.updated_at.is_some());
    assert_eq!(d.last_error, "");

    // An SMS the provider refuses for good: FAILED, with the status code as the reason.
    world.sms.set_status(400).expect("status");
    let mut reg = world.registration();
    let begin = reg
        .begin_registration(registration::BeginRegistrationRequest {
            user_id: "dora".into(),
            password: PASSWORD.into(),
            locale: "en".into(),
        })
        .await
        .expect("begin")
        .into_inner();
    world.step_up(&begin).await.expect("step up with the email");
    let phone = reg
        .add_method(registration::AddMethodRequest {
            session_id: begin.session_id,
            kind: MethodKind::Sms as i32,
            destination: "+33612345678".into(),
        })
        .await
        .expect("add the phone")
        .into_inner()
        .method_id;
    let sms = delivery_of(&world, &phone).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    let failed = loop {
        let d = get(&world, &sms).await;
        if let Ok(d) = d
            && d.status == admin::DeliveryStatus::Failed as i32
        {
            break d;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the refused SMS never became FAILED"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(failed.kind, MethodKind::Sms as i32);
    assert!(failed.last_error.contains("HTTP 400"), "{failed:?}");
    assert!(!failed.last_error.contains("+336"), "{failed:?}");

    let unknown = get(&world, "0190ffff-0000-7000-8000-000000000000")
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    let malformed = get(&world, "not an id").await.expect_err("malformed");
    assert_eq!(malformed.code(), Code::InvalidArgument, "{malformed:?}");
    world.stop().await;
}
