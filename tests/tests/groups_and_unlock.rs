//! Nested groups, locked accounts and unlock, end to end through the gateway's public gRPC API
//! against the whole stack (real nats-server, SMTP sink, SQLite and PostgreSQL):
//!
//! - SCOPE_SELECTED on a group reaches the members of the groups nested in it; users of an
//!   unrelated group get an answer of the same shape and never a mail.
//! - A locked account cannot sign in (UNAUTHENTICATED, like a wrong password); a verified flow
//!   may unlock it (policy allow_unlock) without changing the password, and the unlock is
//!   audited; without allow_unlock UnlockAccount is FAILED_PRECONDITION.
//! - Admin.GetUser / UnlockUser (helpdesk) and the group admin calls.

use std::time::Duration;

use sspr_proto::admin::v1::{self as admin, Scope};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::registration::v1 as registration;
use sspr_proto::reset::v1 as reset;
use sspr_tests::{Backend, World, on_both_backends};
use tonic::Code;

const OLD_PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "a brand new passphrase";

on_both_backends! {
    selected_scope_follows_nested_groups => nested_scope_sqlite, nested_scope_postgres;
    a_verified_flow_unlocks_a_locked_account => unlock_sqlite, unlock_postgres;
    helpdesk_looks_up_and_unlocks_users => helpdesk_sqlite, helpdesk_postgres;
}

async fn set_policy(world: &World, scope: Scope, groups: &[&str], allow_unlock: bool) {
    let policy = admin::Policy {
        scope: scope as i32,
        group_ids: groups.iter().map(|g| (*g).to_owned()).collect(),
        methods_required: 1,
        allowed_methods: vec![MethodKind::Email as i32],
        allow_unlock,
        ..Default::default()
    };
    let stored = world
        .admin()
        .set_policy(World::as_admin(admin::SetPolicyRequest {
            policy: Some(policy),
        }))
        .await
        .expect("set policy")
        .into_inner();
    assert_eq!(stored.allow_unlock, allow_unlock, "allow_unlock is stored");
}

async fn upsert_group(world: &World, id: &str, members: &[&str]) -> admin::Group {
    world
        .admin()
        .upsert_group(World::as_admin(admin::UpsertGroupRequest {
            group: Some(admin::Group {
                group_id: id.to_owned(),
                display_name: format!("Group {id}"),
                member_group_ids: members.iter().map(|m| (*m).to_owned()).collect(),
            }),
        }))
        .await
        .expect("upsert group")
        .into_inner()
}

/// Upserts `user_id` (an upsert replaces the profile: `groups` are its groups) with `locked`;
/// the password is kept.
async fn set_locked(world: &World, user_id: &str, groups: &[&str], locked: bool) -> admin::User {
    world
        .admin()
        .upsert_user(World::as_admin(admin::UpsertUserRequest {
            user_id: user_id.to_owned(),
            display_name: format!("User {user_id}"),
            locale: "en".to_owned(),
            group_ids: groups.iter().map(|g| (*g).to_owned()).collect(),
            locked: Some(locked),
            ..Default::default()
        }))
        .await
        .expect("lock change")
        .into_inner()
}

async fn start(world: &World, user_id: &str) -> reset::StartResetResponse {
    world
        .reset()
        .start_reset(reset::StartResetRequest {
            user_id: user_id.into(),
            locale: "en".into(),
            ..Default::default()
        })
        .await
        .expect("start reset answers for every user id")
        .into_inner()
}

/// Starts a reset for `user_id` and verifies its one email method.
async fn verified_flow(
    world: &World,
    user_id: &str,
    address: &str,
) -> (reset::StartResetResponse, reset::VerifyCodeResponse) {
    let started = start(world, user_id).await;
    let method_id = started.methods[0].method_id.clone();
    let code = world
        .send_reset_code(&started.session_id, &method_id, address)
        .await
        .expect("code mailed");
    let verified = world
        .reset()
        .verify_code(reset::VerifyCodeRequest {
            session_id: started.session_id.clone(),
            method_id,
            code,
        })
        .await
        .expect("verify")
        .into_inner();
    assert_eq!(verified.methods_remaining, 0);
    (started, verified)
}

/// Signs in through the public API (Registration.GetStatus authenticates).
async fn sign_in(world: &World, user_id: &str, password: &str) -> Result<(), tonic::Status> {
    world
        .registration()
        .get_status(registration::GetStatusRequest {
            user_id: user_id.into(),
            password: password.into(),
        })
        .await
        .map(|_| ())
}

async fn unlock_account(world: &World, session_id: &str) -> Result<(), tonic::Status> {
    world
        .reset()
        .unlock_account(reset::UnlockAccountRequest {
            session_id: session_id.into(),
        })
        .await
        .map(|_| ())
}

/// Waits until the audit log holds a record of `kind` about `user_id` matching `pred`.
async fn audited(
    world: &World,
    kind: &str,
    user_id: &str,
    pred: impl Fn(&admin::AuditRecord) -> bool,
) -> admin::AuditRecord {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let page = world
            .admin()
            .list_audit_events(World::as_admin(admin::ListAuditEventsRequest {
                user_id: user_id.into(),
                kind: kind.into(),
                page_size: 500,
                ..Default::default()
            }))
            .await
            .expect("list audit events")
            .into_inner();
        if let Some(r) = page.records.into_iter().find(|r| pred(r)) {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {kind} record for {user_id} within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SCOPE_SELECTED on "staff", with "engineering" nested in it: a user only in "engineering"
/// registers and resets; a user only in "sales" is out of scope and is never mailed.
async fn selected_scope_follows_nested_groups(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    let staff = upsert_group(&world, "staff", &["engineering"]).await;
    assert_eq!(staff.member_group_ids, vec!["engineering"]);
    upsert_group(&world, "engineering", &[]).await;
    world
        .upsert_user("erin", OLD_PASSWORD, &["engineering"], false)
        .await
        .expect("erin");
    let sam = world
        .upsert_user("sam", OLD_PASSWORD, &["sales"], false)
        .await
        .expect("sam");
    assert_eq!(sam.effective_group_ids, vec!["sales"]);

    // Sam registers while everybody is in scope, so he has a real method to (not) mail.
    set_policy(&world, Scope::All, &[], false).await;
    let sam_method = world
        .register_email("sam", OLD_PASSWORD, "sam@example.com")
        .await
        .expect("sam registers under ALL");

    set_policy(&world, Scope::Selected, &["staff"], false).await;
    let erin_method = world
        .register_email("erin", OLD_PASSWORD, "erin@example.com")
        .await
        .expect("erin is in scope through engineering ⊂ staff");
    let (started, _) = verified_flow(&world, "erin", "erin@example.com").await;
    assert_eq!(started.methods[0].method_id, erin_method, "a real flow");
    world
        .reset()
        .complete_reset(reset::CompleteResetRequest {
            session_id: started.session_id,
            new_password: NEW_PASSWORD.into(),
        })
        .await
        .expect("erin resets");
    sign_in(&world, "erin", NEW_PASSWORD)
        .await
        .expect("the new password works");

    // Out of scope: the same shape of answer, a decoy method, and no mail at all.
    let mails_to_sam = world.mail_count("sam@example.com");
    let denied = world
        .registration()
        .begin_registration(registration::BeginRegistrationRequest {
            user_id: "sam".into(),
            password: OLD_PASSWORD.into(),
            locale: String::new(),
        })
        .await
        .expect_err("sam is out of scope for registration");
    assert_eq!(denied.code(), Code::FailedPrecondition);
    let sam_flow = start(&world, "sam").await;
    assert_eq!(sam_flow.methods.len(), 1, "same shape as a real flow");
    assert_eq!(sam_flow.methods_required, 1);
    assert!(!sam_flow.session_id.is_empty() && !sam_flow.flow_id.is_empty());
    assert_ne!(sam_flow.methods[0].method_id, sam_method, "no real method");
    world
        .reset()
        .send_code(reset::SendCodeRequest {
            session_id: sam_flow.session_id.clone(),
            method_id: sam_flow.methods[0].method_id.clone(),
            ..Default::default()
        })
        .await
        .expect("a decoy send answers like a real one");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        world.mail_count("sam@example.com"),
        mails_to_sam,
        "out of scope users get nothing mailed"
    );

    // Un-nesting engineering takes erin out of scope at once.
    upsert_group(&world, "staff", &[]).await;
    let erin_flow = start(&world, "erin").await;
    assert_ne!(erin_flow.methods[0].method_id, erin_method, "now a decoy");
    world.stop().await;
}

/// A locked user cannot sign in; with allow_unlock a verified flow unlocks the account and the
/// old password works again; without it UnlockAccount is refused.
async fn a_verified_flow_unlocks_a_locked_account(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    set_policy(&world, Scope::All, &[], true).await;
    world
        .upsert_user("lee", OLD_PASSWORD, &[], false)
        .await
        .expect("lee");
    world
        .register_email("lee", OLD_PASSWORD, "lee@example.com")
        .await
        .expect("lee registers");

    // Not locked: no unlock on offer, and UnlockAccount is refused.
    let (open, verified) = verified_flow(&world, "lee", "lee@example.com").await;
    assert!(!verified.unlock_available, "lee is not locked");
    let err = unlock_account(&world, &open.session_id)
        .await
        .expect_err("nothing to unlock");
    assert_eq!(err.code(), Code::FailedPrecondition);

    let locked = set_locked(&world, "lee", &[], true).await;
    assert!(locked.locked);
    let err = world
        .registration()
        .begin_registration(registration::BeginRegistrationRequest {
            user_id: "lee".into(),
            password: OLD_PASSWORD.into(),
            locale: String::new(),
        })
        .await
        .expect_err("a locked account cannot sign in");
    assert_eq!(err.code(), Code::Unauthenticated);
    let wrong = sign_in(&world, "lee", "not the password at all")
        .await
        .expect_err("wrong password");
    assert_eq!(
        err.message(),
        wrong.message(),
        "locked looks exactly like a wrong password"
    );

    // Before verification: refused.
    let early = start(&world, "lee").await;
    let err = unlock_account(&world, &early.session_id)
        .await
        .expect_err("not verified yet");
    assert_eq!(err.code(), Code::FailedPrecondition);

    // Verified with allow_unlock: unlock without a new password.
    let (started, verified) = verified_flow(&world, "lee", "lee@example.com").await;
    assert!(verified.unlock_available);
    unlock_account(&world, &started.session_id)
        .await
        .expect("unlock");
    sign_in(&world, "lee", OLD_PASSWORD)
        .await
        .expect("the old password works again");
    let err = unlock_account(&world, &started.session_id)
        .await
        .expect_err("the flow has ended");
    assert_eq!(err.code(), Code::Unauthenticated);
    let record = audited(&world, "account.unlocked", "lee", |r| {
        r.flow_id == started.flow_id
    })
    .await;
    assert_eq!(record.outcome, "ok");
    assert_eq!(record.actor, "lee");
    assert!(record.summary_json.contains("self_service"), "{record:?}");
    audited(&world, "account.locked", "lee", |_| true).await;

    // Without allow_unlock: no unlock on offer, refused; a reset still works and unlocks.
    set_policy(&world, Scope::All, &[], false).await;
    set_locked(&world, "lee", &[], true).await;
    let (started, verified) = verified_flow(&world, "lee", "lee@example.com").await;
    assert!(!verified.unlock_available, "the policy does not allow it");
    let err = unlock_account(&world, &started.session_id)
        .await
        .expect_err("not allowed");
    assert_eq!(err.code(), Code::FailedPrecondition);
    world
        .reset()
        .complete_reset(reset::CompleteResetRequest {
            session_id: started.session_id,
            new_password: NEW_PASSWORD.into(),
        })
        .await
        .expect("reset");
    sign_in(&world, "lee", NEW_PASSWORD)
        .await
        .expect("a self-service reset unlocks the account");
    world.stop().await;
}

/// Admin.GetUser and Admin.UnlockUser for the helpdesk, and the group admin calls.
async fn helpdesk_looks_up_and_unlocks_users(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    upsert_group(&world, "staff", &["engineering"]).await;
    world
        .upsert_user("max", OLD_PASSWORD, &["engineering"], false)
        .await
        .expect("max");
    set_locked(&world, "max", &["engineering"], true).await;

    let mut admin_client = world.admin();
    let max = admin_client
        .get_user(World::as_admin(admin::GetUserRequest {
            user_id: "max".into(),
        }))
        .await
        .expect("get user")
        .into_inner();
    assert!(max.locked);
    assert!(max.has_password && max.enabled);
    assert_eq!(max.group_ids, vec!["engineering"]);
    assert_eq!(max.effective_group_ids, vec!["engineering", "staff"]);
    assert_eq!(
        sign_in(&world, "max", OLD_PASSWORD)
            .await
            .expect_err("locked")
            .code(),
        Code::Unauthenticated
    );

    let unlocked = admin_client
        .unlock_user(World::as_admin(admin::UnlockUserRequest {
            user_id: "max".into(),
        }))
        .await
        .expect("unlock user")
        .into_inner();
    assert!(!unlocked.locked);
    assert_eq!(unlocked.effective_group_ids, vec!["engineering", "staff"]);
    sign_in(&world, "max", OLD_PASSWORD)
        .await
        .expect("unlocked by the helpdesk");
    let record = audited(&world, "account.unlocked", "max", |_| true).await;
    assert_eq!(record.outcome, "ok");
    assert!(record.summary_json.contains("admin"), "{record:?}");

    for (code, result) in [
        (
            Code::NotFound,
            admin_client
                .get_user(World::as_admin(admin::GetUserRequest {
                    user_id: "nobody".into(),
                }))
                .await
                .map(|_| ()),
        ),
        (
            Code::NotFound,
            admin_client
                .unlock_user(World::as_admin(admin::UnlockUserRequest {
                    user_id: "nobody".into(),
                }))
                .await
                .map(|_| ()),
        ),
        (
            Code::InvalidArgument,
            admin_client
                .get_user(World::as_admin(admin::GetUserRequest::default()))
                .await
                .map(|_| ()),
        ),
        (
            Code::Unauthenticated,
            admin_client
                .unlock_user(tonic::Request::new(admin::UnlockUserRequest {
                    user_id: "max".into(),
                }))
                .await
                .map(|_| ()),
        ),
        (
            Code::InvalidArgument,
            admin_client
                .upsert_group(World::as_admin(admin::UpsertGroupRequest { group: None }))
                .await
                .map(|_| ()),
        ),
        (
            Code::InvalidArgument,
            admin_client
                .upsert_group(World::as_admin(admin::UpsertGroupRequest {
                    group: Some(admin::Group {
                        group_id: "no spaces".into(),
                        ..Default::default()
                    }),
                }))
                .await
                .map(|_| ()),
        ),
        (
            Code::InvalidArgument,
            admin_client
                .list_groups(World::as_admin(admin::ListGroupsRequest {
                    page_size: 501,
                    ..Default::default()
                }))
                .await
                .map(|_| ()),
        ),
        (
            Code::NotFound,
            admin_client
                .delete_group(World::as_admin(admin::DeleteGroupRequest {
                    group_id: "nope".into(),
                }))
                .await
                .map(|_| ()),
        ),
    ] {
        assert_eq!(result.expect_err("refused").code(), code);
    }

    upsert_group(&world, "everyone", &["staff"]).await;
    let page = admin_client
        .list_groups(World::as_admin(admin::ListGroupsRequest {
            page_size: 1,
            ..Default::default()
        }))
        .await
        .expect("list groups")
        .into_inner();
    assert_eq!(page.groups.len(), 1);
    assert_eq!(page.groups[0].group_id, "everyone");
    let rest = admin_client
        .list_groups(World::as_admin(admin::ListGroupsRequest {
            page_size: 1,
            page_token: page.next_page_token,
        }))
        .await
        .expect("list groups")
        .into_inner();
    assert_eq!(rest.groups[0].group_id, "staff");
    assert_eq!(rest.groups[0].member_group_ids, vec!["engineering"]);
    assert!(rest.next_page_token.is_empty());

    admin_client
        .delete_group(World::as_admin(admin::DeleteGroupRequest {
            group_id: "staff".into(),
        }))
        .await
        .expect("delete group");
    let max = admin_client
        .get_user(World::as_admin(admin::GetUserRequest {
            user_id: "max".into(),
        }))
        .await
        .expect("get user")
        .into_inner();
    assert_eq!(max.effective_group_ids, vec!["engineering"]);
    world.stop().await;
}
