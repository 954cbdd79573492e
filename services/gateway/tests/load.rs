//! Deadlines, load shedding and idempotency keys at the edge, through a real tonic server,
//! a private nats-server and stand-in services.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Gateway, Options, as_admin};
use sspr_bus::subjects::rpc::{policy, verification};
use sspr_proto::admin::v1 as admin;
use sspr_proto::reset::v1::{CheckPasswordRequest, SendCodeRequest, StartResetRequest};
use tonic::Code;

fn send_code() -> SendCodeRequest {
    SendCodeRequest {
        session_id: "0123456789abcdef0123456789abcdef".into(),
        method_id: "m-email-1".into(),
        ..Default::default()
    }
}

fn with_request_id<T>(message: T, key: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("x-request-id", key.parse().unwrap());
    request
}

#[tokio::test]
async fn the_clients_deadline_reaches_the_service_and_ends_the_call() {
    let gw = Gateway::start().await;

    // No grpc-timeout: no deadline travels.
    gw.reset().send_code(send_code()).await.unwrap();
    let seen = gw.recorder.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].budget, None);

    // With one, the service sees what is left of it.
    let mut request = tonic::Request::new(send_code());
    request.set_timeout(Duration::from_secs(2));
    gw.reset().send_code(request).await.unwrap();
    let budget = gw.recorder.seen()[1].budget.expect("a deadline travelled");
    assert!(
        budget <= Duration::from_secs(2) && budget > Duration::from_millis(1500),
        "{budget:?}"
    );

    // A service slower than the deadline: DEADLINE_EXCEEDED at the deadline, not after the
    // 5 s request timeout.
    gw.recorder
        .delay(verification::SEND_CODE, Duration::from_secs(3));
    let mut request = tonic::Request::new(send_code());
    request.set_timeout(Duration::from_millis(400));
    let asked = Instant::now();
    let status = gw.reset().send_code(request).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(asked.elapsed() < Duration::from_millis(1500));
}

#[tokio::test]
async fn a_full_gateway_refuses_at_once_with_retry_after() {
    let gw = Gateway::start_with(Options {
        max_in_flight: 2,
        ..Options::default()
    })
    .await;
    gw.recorder
        .delay(verification::SEND_CODE, Duration::from_secs(2));
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let mut client = gw.reset();
            tokio::spawn(async move { client.send_code(send_code()).await })
        })
        .collect();
    let waited = Instant::now();
    while gw.recorder.seen().len() < 2 {
        assert!(
            waited.elapsed() < Duration::from_secs(5),
            "the slow calls never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let asked = Instant::now();
    let status = gw
        .reset()
        .check_password(CheckPasswordRequest {
            session_id: "0123456789abcdef0123456789abcdef".into(),
            password: "a candidate password".into(),
        })
        .await
        .unwrap_err();
    assert!(
        asked.elapsed() < Duration::from_millis(500),
        "refused at once"
    );
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.metadata().get("retry-after").unwrap(), "1");
    assert_eq!(
        gw.recorder.seen().len(),
        2,
        "the refused call reached no service"
    );

    // Health is never shed.
    let mut health = tonic_health::pb::health_client::HealthClient::new(gw.channel());
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap();

    for call in slow {
        call.await.unwrap().unwrap();
    }
    gw.reset().send_code(send_code()).await.unwrap();
}

#[tokio::test]
async fn a_full_service_is_passed_through_as_unavailable_with_retry_after() {
    let gw = Gateway::start_with(Options {
        stand_in_max_in_flight: Some(1),
        ..Options::default()
    })
    .await;
    gw.recorder
        .delay(verification::SEND_CODE, Duration::from_secs(2));
    let slow = {
        let mut client = gw.reset();
        tokio::spawn(async move { client.send_code(send_code()).await })
    };
    let waited = Instant::now();
    while gw.recorder.seen().is_empty() {
        assert!(
            waited.elapsed() < Duration::from_secs(5),
            "the slow call never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let asked = Instant::now();
    let status = gw.reset().send_code(send_code()).await.unwrap_err();
    assert!(
        asked.elapsed() < Duration::from_millis(500),
        "refused at once"
    );
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.metadata().get("retry-after").unwrap(), "1");
    assert_eq!(gw.recorder.seen().len(), 1, "the refused request never ran");
    slow.await.unwrap().unwrap();
}

#[tokio::test]
async fn mutating_calls_forward_a_valid_request_id_and_refuse_a_bad_one() {
    let gw = Gateway::start().await;
    gw.reset()
        .send_code(with_request_id(send_code(), "retry-key-1"))
        .await
        .unwrap();
    gw.admin()
        .set_policy({
            let mut r = as_admin(admin::SetPolicyRequest {
                policy: Some(common::canned_policy()),
            });
            r.metadata_mut()
                .insert("x-request-id", "admin-key-1".parse().unwrap());
            r
        })
        .await
        .unwrap();
    // A read ignores the key.
    gw.admin()
        .get_policy({
            let mut r = as_admin(admin::GetPolicyRequest {});
            r.metadata_mut()
                .insert("x-request-id", "read-key".parse().unwrap());
            r
        })
        .await
        .unwrap();
    let seen = gw.recorder.seen();
    let ids: Vec<(&str, Option<&str>)> = seen
        .iter()
        .map(|s| (s.subject.as_str(), s.request_id.as_deref()))
        .collect();
    assert_eq!(
        ids,
        [
            (verification::SEND_CODE, Some("retry-key-1")),
            (policy::SET_POLICY, Some("admin-key-1")),
            (policy::GET_POLICY, None),
        ]
    );

    let before = gw.recorder.total();
    for bad in ["has space", &"x".repeat(129)] {
        let status = gw
            .reset()
            .start_reset(with_request_id(
                StartResetRequest {
                    user_id: "alice".into(),
                    ..Default::default()
                },
                bad,
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().contains("x-request-id"),
            "{}",
            status.message()
        );
    }
    assert_eq!(
        gw.recorder.total(),
        before,
        "refused before any NATS traffic"
    );
}
