//! Named admin tokens end to end: the audit record of an admin change names the admin of the
//! token that made it, a helpdesk token may read the audit log but not change the policy, and
//! an unknown token is refused. Through the gateway's public gRPC API against the real stack,
//! on SQLite and (when configured) PostgreSQL.

use std::time::Duration;

use sspr_proto::admin::v1::{self as admin, Scope};
use sspr_proto::common::v1::MethodKind;
use sspr_tests::{ADMIN_TOKEN, Backend, World, on_both_backends};
use tonic::Code;

const OPS_TOKEN: &str = "e2e-alice-ops-token-0123456789";
const HELPDESK_TOKEN: &str = "e2e-helpdesk-token-0123456789";

on_both_backends! {
    admin_changes_are_audited_with_the_named_admin => named_admin_sqlite, named_admin_postgres;
}

async fn world(backend: Backend) -> Option<World> {
    let named = format!("alice-ops:admin:{OPS_TOKEN},hd-bob:helpdesk:{HELPDESK_TOKEN}");
    World::start_with_or_skip(backend, |o| o.named_admin_tokens = Some(named)).await
}

fn with_token<T>(body: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(body);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    req
}

fn policy(methods_required: u32) -> admin::Policy {
    admin::Policy {
        scope: Scope::All as i32,
        methods_required,
        allowed_methods: vec![MethodKind::Email as i32, MethodKind::Sms as i32],
        ..Default::default()
    }
}

/// Waits until the audit log holds a record of `kind` satisfying `pred`, read with `token`.
async fn audited(
    world: &World,
    token: &str,
    kind: &str,
    pred: impl Fn(&admin::AuditRecord) -> bool,
) -> admin::AuditRecord {
    let mut client = world.admin();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let page = client
            .list_audit_events(with_token(
                admin::ListAuditEventsRequest {
                    kind: kind.into(),
                    page_size: 500,
                    ..Default::default()
                },
                token,
            ))
            .await
            .expect("list audit events")
            .into_inner();
        if let Some(r) = page.records.into_iter().find(|r| pred(r)) {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no matching {kind} record within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn admin_changes_are_audited_with_the_named_admin(backend: Backend) {
    let Some(world) = world(backend).await else {
        return;
    };
    let mut client = world.admin();

    // A named admin changes the policy; the single SSPR_ADMIN_TOKEN still works as "admin".
    let by_ops = client
        .set_policy(with_token(
            admin::SetPolicyRequest {
                policy: Some(policy(2)),
            },
            OPS_TOKEN,
        ))
        .await
        .expect("alice-ops may set the policy")
        .into_inner();
    let by_single = client
        .set_policy(with_token(
            admin::SetPolicyRequest {
                policy: Some(policy(1)),
            },
            ADMIN_TOKEN,
        ))
        .await
        .expect("the single token may set the policy")
        .into_inner();

    // The helpdesk reads the audit log: each change names its admin.
    let of_version = |r: &admin::AuditRecord, v: u64| {
        let field = format!("\"version\":{v}");
        r.summary_json.contains(&format!("{field},"))
            || r.summary_json.contains(&format!("{field}}}"))
    };
    let record = audited(&world, HELPDESK_TOKEN, "policy.changed", |r| {
        of_version(r, by_ops.version)
    })
    .await;
    assert_eq!(record.actor, "alice-ops");
    let record = audited(&world, HELPDESK_TOKEN, "policy.changed", |r| {
        of_version(r, by_single.version)
    })
    .await;
    assert_eq!(record.actor, "admin");

    // A user created and deleted by the named admin: both recorded as theirs.
    client
        .upsert_user(with_token(
            admin::UpsertUserRequest {
                user_id: "carol".into(),
                display_name: "Carol".into(),
                locale: "en".into(),
                password: "a perfectly fine passphrase".into(),
                ..Default::default()
            },
            OPS_TOKEN,
        ))
        .await
        .expect("upsert");
    client
        .delete_user(with_token(
            admin::DeleteUserRequest {
                user_id: "carol".into(),
            },
            OPS_TOKEN,
        ))
        .await
        .expect("delete");
    let record = audited(&world, ADMIN_TOKEN, "password.changed", |r| {
        r.user_id == "carol"
    })
    .await;
    assert_eq!(record.actor, "alice-ops");
    let record = audited(&world, ADMIN_TOKEN, "user.deleted", |r| {
        r.user_id == "carol"
    })
    .await;
    assert_eq!(record.actor, "alice-ops");
    let record = audited(&world, ADMIN_TOKEN, "user.upserted", |r| {
        r.user_id == "carol"
    })
    .await;
    assert_eq!(record.actor, "alice-ops");
    assert!(
        record.summary_json.contains("\"password_set\":true"),
        "{}",
        record.summary_json
    );
    assert!(!record.summary_json.contains("passphrase"), "no password");

    // Profile, group and state changes without a password, and group changes: all recorded.
    client
        .upsert_user(with_token(
            admin::UpsertUserRequest {
                user_id: "dave".into(),
                display_name: "Dave".into(),
                locale: "en".into(),
                group_ids: vec!["ops-team".into()],
                is_admin: true,
                enabled: Some(false),
                ..Default::default()
            },
            OPS_TOKEN,
        ))
        .await
        .expect("upsert without password");
    client
        .upsert_group(with_token(
            admin::UpsertGroupRequest {
                group: Some(admin::Group {
                    group_id: "ops-team".into(),
                    display_name: "Ops team".into(),
                    member_group_ids: vec!["oncall".into()],
                }),
            },
            OPS_TOKEN,
        ))
        .await
        .expect("upsert group");
    client
        .delete_group(with_token(
            admin::DeleteGroupRequest {
                group_id: "ops-team".into(),
            },
            OPS_TOKEN,
        ))
        .await
        .expect("delete group");
    let record = audited(&world, HELPDESK_TOKEN, "user.upserted", |r| {
        r.user_id == "dave"
    })
    .await;
    assert_eq!(record.actor, "alice-ops");
    for field in [
        "\"created\":true",
        "\"password_set\":false",
        "\"is_admin\":true",
        "\"enabled\":false",
        "\"group_ids\":[\"ops-team\"]",
    ] {
        assert!(
            record.summary_json.contains(field),
            "{field} in {}",
            record.summary_json
        );
    }
    let record = audited(&world, HELPDESK_TOKEN, "group.upserted", |r| {
        r.summary_json.contains("\"group_id\":\"ops-team\"")
    })
    .await;
    assert_eq!(record.actor, "alice-ops");
    assert!(
        record
            .summary_json
            .contains("\"member_group_ids\":[\"oncall\"]"),
        "{}",
        record.summary_json
    );
    let record = audited(&world, HELPDESK_TOKEN, "group.deleted", |r| {
        r.summary_json.contains("\"group_id\":\"ops-team\"")
    })
    .await;
    assert_eq!(record.actor, "alice-ops");
    assert_eq!(record.user_id, "");

    // The helpdesk may not change the policy; nothing changes.
    let status = client
        .set_policy(with_token(
            admin::SetPolicyRequest {
                policy: Some(policy(2)),
            },
            HELPDESK_TOKEN,
        ))
        .await
        .expect_err("helpdesk may not set the policy");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("hd-bob"), "{}", status.message());
    let current = client
        .get_policy(World::as_admin(admin::GetPolicyRequest {}))
        .await
        .expect("get policy")
        .into_inner();
    assert_eq!(current.version, by_single.version);

    // An unknown token is refused, even for what the helpdesk may do.
    let status = client
        .list_audit_events(with_token(
            admin::ListAuditEventsRequest::default(),
            "e2e-nobody-token-0123456789",
        ))
        .await
        .expect_err("unknown token");
    assert_eq!(status.code(), Code::Unauthenticated);

    world.stop().await;
}
