//! Password rules through the gateway, against stand-in services over a real nats-server:
//! `google.rpc.BadRequest` details of a refused password reach the client unchanged, and the
//! admin password-policy calls map both ways, with edge validation and the admin token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Gateway, as_admin, canned_password_policy, with_token};
use sspr_bus::subjects::rpc::{directory, policy, verification};
use sspr_bus::{FieldViolation, RpcError};
use sspr_proto::admin::v1 as admin;
use sspr_proto::internal::policy::v1 as pol;
use sspr_proto::reset::v1 as reset;
use tonic::Code;
use tonic_types::StatusExt;

const SESSION: &str = "c2Vzc2lvbi1pZC1vZi1hdC1sZWFzdC0xMjgtYml0cw";

fn rejection(field: &str) -> RpcError {
    RpcError::invalid_argument(
        "password rejected: must not be or contain a commonly used password; is too easy to guess",
    )
    .with_violations(vec![
        FieldViolation::new(
            field,
            "must not be or contain a commonly used password",
            "banned_password",
        ),
        FieldViolation::new(field, "is too easy to guess", "score_too_low"),
    ])
}

fn violations(status: &tonic::Status) -> Vec<(String, String, String)> {
    status
        .get_details_bad_request()
        .expect("BadRequest details")
        .field_violations
        .into_iter()
        .map(|v| (v.field, v.description, v.reason))
        .collect()
}

#[tokio::test]
async fn bad_request_details_reach_the_client() {
    let gw = Gateway::start().await;
    gw.recorder
        .fail(verification::COMPLETE_RESET, rejection("new_password"));
    gw.recorder
        .fail(directory::UPSERT_USER, rejection("password"));

    let status = gw
        .reset()
        .complete_reset(reset::CompleteResetRequest {
            session_id: SESSION.into(),
            new_password: "P@ssw0rd".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "password rejected: must not be or contain a commonly used password; is too easy to guess"
    );
    let expected = |field: &str| {
        vec![
            (
                field.to_owned(),
                "must not be or contain a commonly used password".to_owned(),
                "banned_password".to_owned(),
            ),
            (
                field.to_owned(),
                "is too easy to guess".to_owned(),
                "score_too_low".to_owned(),
            ),
        ]
    };
    assert_eq!(violations(&status), expected("new_password"));
    assert!(
        !String::from_utf8_lossy(status.details()).contains("P@ssw0rd"),
        "the password is not echoed"
    );

    let status = gw
        .admin()
        .upsert_user(as_admin(admin::UpsertUserRequest {
            user_id: "alice".into(),
            password: "P@ssw0rd".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violations(&status), expected("password"));

    // A refusal without details has none.
    gw.recorder.fail(
        verification::COMPLETE_RESET,
        RpcError::failed_precondition("verify the required methods before choosing a password"),
    );
    let status = gw
        .reset()
        .complete_reset(reset::CompleteResetRequest {
            session_id: SESSION.into(),
            new_password: "P@ssw0rd".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.get_details_bad_request().is_none());
}

#[tokio::test]
async fn password_policy_calls_map_both_ways() {
    let gw = Gateway::start().await;
    let mut client = gw.admin();

    let got = client
        .get_password_policy(as_admin(admin::GetPasswordPolicyRequest {}))
        .await
        .unwrap()
        .into_inner();
    let canned = canned_password_policy();
    assert_eq!(
        got,
        admin::PasswordPolicy {
            min_length: canned.min_length,
            custom_banned_terms: canned.custom_banned_terms,
            organisation_name: canned.organisation_name,
            history_count: canned.history_count,
            version: canned.version,
            max_length: canned.max_length,
        }
    );
    let _: pol::GetPasswordPolicyRequest = gw.recorder.single(policy::GET_PASSWORD_POLICY);

    let stored = client
        .set_password_policy(as_admin(admin::SetPasswordPolicyRequest {
            policy: Some(admin::PasswordPolicy {
                min_length: 12,
                custom_banned_terms: vec![" quokkaville ".into(), "blue falcon".into()],
                organisation_name: " Contoso ".into(),
                history_count: 2,
                version: 99,
                max_length: 7,
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    let sent: pol::SetPasswordPolicyRequest = gw.recorder.single(policy::SET_PASSWORD_POLICY);
    assert_eq!(
        sent.policy.unwrap(),
        pol::PasswordPolicy {
            min_length: 12,
            custom_banned_terms: vec!["quokkaville".into(), "blue falcon".into()],
            organisation_name: "Contoso".into(),
            history_count: 2,
            version: 0,
            max_length: 0,
        },
        "trimmed, version and max_length not forwarded"
    );
    assert_eq!(stored.version, 4);
    assert_eq!(stored.max_length, 256);
    assert_eq!(stored.min_length, 12);
}

#[tokio::test]
async fn password_policy_input_is_checked_at_the_edge_and_needs_the_token() {
    let gw = Gateway::start().await;
    let mut client = gw.admin();
    let valid = admin::PasswordPolicy {
        min_length: 8,
        ..Default::default()
    };
    let cases: Vec<(admin::SetPasswordPolicyRequest, &str)> = vec![
        (admin::SetPasswordPolicyRequest { policy: None }, "policy"),
        (
            admin::SetPasswordPolicyRequest {
                policy: Some(admin::PasswordPolicy {
                    min_length: 7,
                    ..valid.clone()
                }),
            },
            "policy.min_length",
        ),
        (
            admin::SetPasswordPolicyRequest {
                policy: Some(admin::PasswordPolicy {
                    history_count: 25,
                    ..valid.clone()
                }),
            },
            "policy.history_count",
        ),
        (
            admin::SetPasswordPolicyRequest {
                policy: Some(admin::PasswordPolicy {
                    custom_banned_terms: vec!["x".repeat(65)],
                    ..valid.clone()
                }),
            },
            "policy.custom_banned_terms",
        ),
        (
            admin::SetPasswordPolicyRequest {
                policy: Some(admin::PasswordPolicy {
                    organisation_name: "a\u{7}b".into(),
                    ..valid.clone()
                }),
            },
            "policy.organisation_name",
        ),
    ];
    for (request, field) in cases {
        let status = client
            .set_password_policy(as_admin(request))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}");
        assert!(status.message().starts_with(field), "{}", status.message());
    }
    let status = client
        .set_password_policy(with_token(
            admin::SetPasswordPolicyRequest {
                policy: Some(valid),
            },
            "wrong-token",
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = client
        .get_password_policy(tonic::Request::new(admin::GetPasswordPolicyRequest {}))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(gw.recorder.total(), 0, "nothing reached the policy service");
}
