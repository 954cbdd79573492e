//! Attacks on: bad_input (see main.rs). Guessing the admin token, and messages too large to
//! be worth reading, at the gRPC edge and on NATS. (The domain parsers are fuzzed under `fuzz/`
//! and have `proptest` properties in their crates.)

use std::time::Duration;

use sspr_proto::admin::v1 as admin;
use sspr_proto::reset::v1 as reset;
use sspr_tests::{ADMIN_TOKEN, Backend, World};
use tonic::Code;

/// An admin request from `ip` (the gateway trusts one proxy hop in these tests) with `token`.
fn admin_request<T>(body: T, ip: &str, token: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(body);
    req.metadata_mut()
        .insert("x-forwarded-for", ip.parse().expect("ip"));
    if let Some(token) = token {
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
    }
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_admin_auth_is_rate_limited_and_audited() {
    let Some(world) =
        World::start_with_or_skip(Backend::Sqlite, |o| o.trusted_proxy_hops = 1).await
    else {
        return;
    };
    let attacker = "203.0.113.7";
    let guess = "not-the-admin-token-0000";
    // Ten failures a minute are allowed; the eleventh blocks the address.
    for i in 0..11 {
        let token = if i == 0 { None } else { Some(guess) };
        let e = world
            .admin()
            .get_policy(admin_request(admin::GetPolicyRequest {}, attacker, token))
            .await
            .expect_err("a wrong token");
        assert_eq!(e.code(), Code::Unauthenticated, "attempt {i}: {e:?}");
    }
    // Then every call is refused before the token is looked at: the right one too.
    let limited = world
        .admin()
        .get_policy(admin_request(
            admin::GetPolicyRequest {},
            attacker,
            Some(ADMIN_TOKEN),
        ))
        .await
        .expect_err("the right token from a limited address");
    assert_eq!(limited.code(), Code::ResourceExhausted, "{limited:?}");
    let retry_after: u64 = limited
        .metadata()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("retry-after metadata");
    assert!((1..=60).contains(&retry_after), "retry-after {retry_after}");
    assert!(!limited.message().contains(ADMIN_TOKEN));

    // Another address is not limited.
    let other = "198.51.100.1";
    world
        .admin()
        .get_policy(admin_request(
            admin::GetPolicyRequest {},
            other,
            Some(ADMIN_TOKEN),
        ))
        .await
        .expect("another address with the right token");

    // Audited: one summary event (never the token), recorded by the audit service.
    let event = world
        .wait_event("sspr.events.v1.admin.auth_failed", |_| true)
        .await
        .expect("admin.auth_failed");
    let failed: sspr_proto::events::v1::AdminAuthFailed = event.decode().expect("decode");
    assert_eq!(failed.client_ip, attacker);
    assert_eq!(failed.method, "GetPolicy");
    assert_eq!(failed.reason, "missing_token");
    for secret in [guess, ADMIN_TOKEN] {
        assert!(
            !event
                .payload
                .windows(secret.len())
                .any(|w| w == secret.as_bytes()),
            "a token in the event"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let published = world
        .events()
        .iter()
        .filter(|e| e.subject == "sspr.events.v1.admin.auth_failed")
        .count();
    assert_eq!(published, 1, "one event per address and minute");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let records = world
            .admin()
            .list_audit_events(admin_request(
                admin::ListAuditEventsRequest {
                    kind: "admin.auth_failed".into(),
                    ..Default::default()
                },
                other,
                Some(ADMIN_TOKEN),
            ))
            .await
            .expect("list audit events")
            .into_inner()
            .records;
        if let Some(r) = records.first() {
            assert_eq!(r.outcome, "failed:missing_token");
            assert!(r.summary_json.contains(attacker), "{}", r.summary_json);
            assert!(!r.summary_json.contains(guess));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the audit did not record admin.auth_failed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_grpc_messages_are_refused() {
    let Some(world) = World::start_or_skip(Backend::Sqlite).await else {
        return;
    };
    let huge = "a".repeat(300 * 1024);
    let refused = world
        .reset()
        .start_reset(reset::StartResetRequest {
            user_id: huge.clone(),
            ..Default::default()
        })
        .await
        .expect_err("a 300 KiB request");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(refused.message(), "message too large");
    let admin = world
        .admin()
        .upsert_user(World::as_admin(admin::UpsertUserRequest {
            user_id: "big".into(),
            display_name: huge,
            ..Default::default()
        }))
        .await
        .expect_err("a 300 KiB admin request");
    assert_eq!(admin.code(), Code::ResourceExhausted, "{admin:?}");
    // The gateway is still serving.
    world
        .reset()
        .start_reset(reset::StartResetRequest {
            user_id: "someone".into(),
            ..Default::default()
        })
        .await
        .expect("a normal request after the oversized ones");
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_nats_requests_are_refused() {
    let Some(world) = World::start_or_skip(Backend::Sqlite).await else {
        return;
    };
    let client = world.nats.connect().await.expect("nats");
    let subject = sspr_bus::subjects::rpc::verification::START_RESET;
    // Over the bus Router's limit: INVALID_ARGUMENT without decoding.
    let body = vec![0x0a_u8; sspr_bus::MAX_REQUEST_BYTES + 1];
    let reply = client
        .request(subject.to_owned(), body.into())
        .await
        .expect("a reply");
    let headers = reply.headers.expect("error headers");
    let code = headers
        .get(async_nats::service::NATS_SERVICE_ERROR_CODE)
        .map(|v| v.to_string());
    assert_eq!(
        code.as_deref(),
        Some(
            (sspr_bus::ErrorCode::InvalidArgument as usize)
                .to_string()
                .as_str()
        ),
        "{headers:?}"
    );
    assert_eq!(
        headers
            .get(async_nats::service::NATS_SERVICE_ERROR)
            .map(|v| v.to_string())
            .as_deref(),
        Some("request too large")
    );
    // Over nats-server's max_payload (1 MiB by default): refused before it is sent.
    let body = vec![0_u8; 2 * 1024 * 1024];
    assert!(
        client
            .request(subject.to_owned(), body.into())
            .await
            .is_err(),
        "a 2 MiB request was sent"
    );
    // The service still answers.
    let started: sspr_proto::internal::verification::v1::StartResetResponse =
        sspr_bus::Bus::from_client(client.clone(), Duration::from_secs(5))
            .request(
                subject,
                &sspr_proto::internal::verification::v1::StartResetRequest {
                    user_id: "someone".into(),
                    ..Default::default()
                },
            )
            .await
            .expect("a normal request");
    assert!(!started.session_id.is_empty());
    world.stop().await;
}
