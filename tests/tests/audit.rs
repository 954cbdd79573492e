//! The audit log end to end: a reset through the gateway, every service and a real nats-server
//! ends up, step by step and with its trace id, in `Admin.ListAuditEvents`, which needs the
//! admin token. On SQLite and (when configured) PostgreSQL.

use std::time::Duration;

use sspr_proto::admin::v1::{self as admin, Scope};
use sspr_proto::reset::v1 as reset;
use sspr_tests::{Backend, World, on_both_backends};
use tonic::Code;

const OLD_PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "a brand new passphrase";
const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// The steps of a one-method reset, from every service that takes part: verification, notification
/// (the delivery, reached through the JetStream delivery queue and notification's own outbox) and
/// directory. Each must carry the trace id of the client's calls.
const FLOW_STEPS: [&str; 6] = [
    "reset.started",
    "code.issued",
    "code.delivered",
    "code.verified",
    "reset.completed",
    "password.changed",
];

on_both_backends! {
    reset_steps_are_audited => reset_steps_are_audited_sqlite, reset_steps_are_audited_postgres;
}

fn traced<T>(body: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(body);
    req.metadata_mut()
        .insert("traceparent", TRACEPARENT.parse().expect("ascii"));
    req
}

async fn reset_steps_are_audited(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    world
        .set_policy(Scope::All, &[], 1)
        .await
        .expect("set policy");
    world
        .upsert_user("alice", OLD_PASSWORD, &[], false)
        .await
        .expect("upsert");
    let method_id = world
        .register_email("alice", OLD_PASSWORD, "alice@example.com")
        .await
        .expect("register");

    // A reset whose four calls share one trace.
    let mut client = world.reset();
    let started = client
        .start_reset(traced(reset::StartResetRequest {
            user_id: "alice".into(),
            locale: "en".into(),
            ..Default::default()
        }))
        .await
        .expect("start")
        .into_inner();
    let seen = world.mail_count("alice@example.com");
    client
        .send_code(traced(reset::SendCodeRequest {
            session_id: started.session_id.clone(),
            method_id: method_id.clone(),
            ..Default::default()
        }))
        .await
        .expect("send");
    let code = world
        .next_code("alice@example.com", seen)
        .await
        .expect("code");
    client
        .verify_code(traced(reset::VerifyCodeRequest {
            session_id: started.session_id.clone(),
            method_id: method_id.clone(),
            code: code.clone(),
        }))
        .await
        .expect("verify");
    client
        .complete_reset(traced(reset::CompleteResetRequest {
            session_id: started.session_id.clone(),
            new_password: NEW_PASSWORD.into(),
        }))
        .await
        .expect("complete");

    // The projection is asynchronous: wait until every step of the flow is in.
    let mut admin_client = world.admin();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let records = loop {
        let page = admin_client
            .list_audit_events(World::as_admin(admin::ListAuditEventsRequest {
                user_id: "alice".into(),
                page_size: 500,
                ..Default::default()
            }))
            .await
            .expect("list audit events")
            .into_inner();
        let flow: Vec<admin::AuditRecord> = page
            .records
            .into_iter()
            .filter(|r| r.flow_id == started.flow_id)
            .collect();
        // Every step, not just the last committed one: the services commit independently.
        if FLOW_STEPS
            .iter()
            .all(|step| flow.iter().any(|r| r.kind == *step))
        {
            break flow;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reset was not fully audited within 20 s: {flow:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let kinds: Vec<&str> = records.iter().map(|r| r.kind.as_str()).collect();
    // The test clock stands still, so records of one instant come in event-id (creation) order:
    // the directory changes the password before verification marks the flow completed.
    for step in FLOW_STEPS {
        assert_eq!(
            kinds.iter().filter(|k| **k == step).count(),
            1,
            "{step} recorded once: {kinds:?}"
        );
    }
    assert_eq!(kinds[0], "reset.started", "{kinds:?}");
    for r in &records {
        assert_eq!(r.user_id, "alice");
        assert_eq!(r.actor, "alice", "{}", r.kind);
        assert_eq!(
            r.trace_id, TRACE_ID,
            "{} carries the flow's trace id",
            r.kind
        );
        assert!(r.occurred_at.is_some());
        assert!(!r.source.is_empty());
        assert_eq!(r.outcome, "ok", "{}", r.kind);
        let summary = r.summary_json.clone();
        for secret in [
            code.as_str(),
            NEW_PASSWORD,
            OLD_PASSWORD,
            started.session_id.as_str(),
            "alice@example.com",
        ] {
            assert!(
                !summary.contains(secret),
                "{} summary holds a secret: {summary}",
                r.kind
            );
        }
    }
    let by_kind = |kind: &str| {
        records
            .iter()
            .find(|r| r.kind == kind)
            .expect("record of kind")
    };
    assert_eq!(by_kind("reset.started").source, "verification");
    assert_eq!(by_kind("code.delivered").source, "notification");
    assert_eq!(by_kind("password.changed").source, "directory");

    // A kind filter through the gateway.
    let completed = admin_client
        .list_audit_events(World::as_admin(admin::ListAuditEventsRequest {
            kind: "reset.completed".into(),
            ..Default::default()
        }))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(completed.records.len(), 1);
    assert_eq!(completed.records[0].flow_id, started.flow_id);

    // The admin change is there too, made by the admin.
    let policy = admin_client
        .list_audit_events(World::as_admin(admin::ListAuditEventsRequest {
            kind: "policy.changed".into(),
            ..Default::default()
        }))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(policy.records.len(), 1);
    assert_eq!(policy.records[0].actor, "admin");

    // Without the admin token: UNAUTHENTICATED.
    let status = admin_client
        .list_audit_events(admin::ListAuditEventsRequest::default())
        .await
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated);

    world.stop().await;
}
