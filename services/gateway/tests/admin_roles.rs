//! Named admin tokens at the gateway: each call is made by the admin of its token (forwarded as
//! the `actor` of the change), a helpdesk token may only call GetUser, UnlockUser and
//! ListAuditEvents, and an unknown token is UNAUTHENTICATED; plus PreviewPolicy's edge.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ADMIN_TOKEN, ALICE_TOKEN, Gateway, HELPDESK_TOKEN, canned_policy, with_token};
use sspr_bus::subjects::rpc::{audit, directory, policy};
use sspr_proto::admin::v1 as admin;
use sspr_proto::internal::directory::v1 as dir;
use sspr_proto::internal::policy::v1 as pol;
use tonic::Code;

#[tokio::test]
async fn helpdesk_tokens_are_refused_admin_only_calls_before_any_internal_request() {
    let gw = Gateway::start().await;
    let mut client = gw.admin();
    let status = client
        .set_policy(with_token(
            admin::SetPolicyRequest {
                policy: Some(canned_policy()),
            },
            HELPDESK_TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("hd-bob"), "{}", status.message());
    assert!(
        status.message().contains("SetPolicy"),
        "{}",
        status.message()
    );
    assert!(!status.message().contains(HELPDESK_TOKEN));
    for status in [
        client
            .delete_user(with_token(
                admin::DeleteUserRequest {
                    user_id: "bob".into(),
                },
                HELPDESK_TOKEN,
            ))
            .await
            .unwrap_err(),
        client
            .preview_policy(with_token(
                admin::PreviewPolicyRequest {
                    policy: Some(canned_policy()),
                    ..Default::default()
                },
                HELPDESK_TOKEN,
            ))
            .await
            .unwrap_err(),
        client
            .get_policy(with_token(admin::GetPolicyRequest {}, HELPDESK_TOKEN))
            .await
            .unwrap_err(),
    ] {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    }
    assert_eq!(
        gw.recorder.total(),
        0,
        "nothing reached an internal service"
    );

    // The audit log is the helpdesk's to read.
    let listed = client
        .list_audit_events(with_token(
            admin::ListAuditEventsRequest::default(),
            HELPDESK_TOKEN,
        ))
        .await
        .expect("helpdesk may list audit events")
        .into_inner();
    assert_eq!(listed.records.len(), 1);
    assert_eq!(
        gw.recorder
            .calls::<sspr_proto::internal::audit::v1::ListEventsRequest>(audit::LIST_EVENTS)
            .len(),
        1
    );
}

#[tokio::test]
async fn an_unknown_token_is_unauthenticated_whatever_the_method() {
    let gw = Gateway::start().await;
    let mut client = gw.admin();
    let wrong = "test-nobody-token-0123456789";
    let status = client
        .list_audit_events(with_token(admin::ListAuditEventsRequest::default(), wrong))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(!status.message().contains(wrong));
    let status = client
        .set_policy(with_token(
            admin::SetPolicyRequest {
                policy: Some(canned_policy()),
            },
            wrong,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(gw.recorder.total(), 0);
}

#[tokio::test]
async fn changes_carry_the_admin_of_the_token_as_actor() {
    let gw = Gateway::start().await;
    let mut client = gw.admin();
    client
        .set_policy(with_token(
            admin::SetPolicyRequest {
                policy: Some(canned_policy()),
            },
            ALICE_TOKEN,
        ))
        .await
        .expect("alice is an admin");
    client
        .set_policy(with_token(
            admin::SetPolicyRequest {
                policy: Some(canned_policy()),
            },
            ADMIN_TOKEN,
        ))
        .await
        .expect("the single token is an admin");
    let actors: Vec<String> = gw
        .recorder
        .calls::<pol::SetPolicyRequest>(policy::SET_POLICY)
        .into_iter()
        .map(|r| r.actor)
        .collect();
    assert_eq!(actors, ["alice", "admin"]);

    client
        .delete_user(with_token(
            admin::DeleteUserRequest {
                user_id: "bob".into(),
            },
            ALICE_TOKEN,
        ))
        .await
        .unwrap();
    let deleted: dir::DeleteUserRequest = gw.recorder.single(directory::DELETE_USER);
    assert_eq!(deleted.actor, "alice");
    client
        .upsert_user(with_token(
            admin::UpsertUserRequest {
                user_id: "carol".into(),
                display_name: "Carol".into(),
                locale: "en".into(),
                ..Default::default()
            },
            ALICE_TOKEN,
        ))
        .await
        .unwrap();
    let upserted: dir::UpsertUserRequest = gw.recorder.single(directory::UPSERT_USER);
    assert_eq!(upserted.actor, "alice");
    client
        .set_password_policy(with_token(
            admin::SetPasswordPolicyRequest {
                policy: Some(admin::PasswordPolicy {
                    min_length: 10,
                    ..Default::default()
                }),
            },
            ALICE_TOKEN,
        ))
        .await
        .unwrap();
    let set: pol::SetPasswordPolicyRequest = gw.recorder.single(policy::SET_PASSWORD_POLICY);
    assert_eq!(set.actor, "alice");
}

#[tokio::test]
async fn preview_policy_checks_its_input_at_the_edge_and_maps_the_answer() {
    let gw = Gateway::start().await;
    let mut client = gw.admin();
    let bad = [
        admin::PreviewPolicyRequest {
            policy: None,
            ..Default::default()
        },
        admin::PreviewPolicyRequest {
            policy: Some(canned_policy()),
            page_size: 501,
            ..Default::default()
        },
        admin::PreviewPolicyRequest {
            policy: Some(canned_policy()),
            page_token: "not a token!".into(),
            ..Default::default()
        },
        admin::PreviewPolicyRequest {
            policy: Some(admin::Policy {
                reconfirm_after_days: 731,
                ..canned_policy()
            }),
            ..Default::default()
        },
    ];
    for request in bad {
        let status = client
            .preview_policy(with_token(request.clone(), ADMIN_TOKEN))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{request:?}");
    }
    assert_eq!(gw.recorder.total(), 0);

    let answer = client
        .preview_policy(with_token(
            admin::PreviewPolicyRequest {
                policy: Some(canned_policy()),
                page_size: 1,
                page_token: "abc_DEF-123".into(),
            },
            ALICE_TOKEN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (answer.users_total, answer.users_able, answer.users_unable),
        (3, 1, 2)
    );
    assert_eq!(answer.unable.len(), 1);
    assert_eq!(answer.unable[0].user_id, "bob");
    assert_eq!(answer.unable[0].reason, "not_enough_methods");
    assert_eq!(answer.next_page_token, "next-page_1");
    let forwarded: pol::PreviewRequest = gw.recorder.single(policy::PREVIEW);
    assert_eq!(forwarded.page_size, 1);
    assert_eq!(forwarded.page_token, "abc_DEF-123");
    assert_eq!(forwarded.policy.unwrap().scope, canned_policy().scope);
}
