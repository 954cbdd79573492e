//! The public API against stand-in internal services over a real nats-server: request and
//! response mapping of every RPC, edge validation, admin authentication, error mapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    Gateway, Options, as_admin, canned_audit_record, canned_policy, masked_email, ts, with_token,
};
use sspr_bus::RpcError;
use sspr_bus::subjects::rpc::{audit, directory, enrolment, policy, verification};
use sspr_proto::admin::v1 as admin;
use sspr_proto::common::v1::MethodKind;
use sspr_proto::internal::audit::v1 as aud;
use sspr_proto::internal::directory::v1 as dir;
use sspr_proto::internal::enrolment::v1 as enr;
use sspr_proto::internal::policy::v1 as pol;
use sspr_proto::internal::verification::v1 as ver;
use sspr_proto::registration::v1 as registration;
use sspr_proto::reset::v1 as reset;
use tonic::Code;

const SESSION: &str = "c2Vzc2lvbi1pZC1vZi1hdC1sZWFzdC0xMjgtYml0cw";

#[tokio::test]
async fn reset_calls_map_both_ways() {
    let gw = Gateway::start().await;
    let mut client = gw.reset();

    let started = client
        .start_reset(reset::StartResetRequest {
            user_id: "  alice  ".into(),
            locale: "fr-CA".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        started,
        reset::StartResetResponse {
            session_id: "session-of-5".into(),
            methods: vec![masked_email()],
            methods_required: 1,
            expires_at: Some(ts(1_900_000_000)),
            flow_id: "flow-0001".into(),
            ..Default::default()
        }
    );
    assert_eq!(
        gw.recorder
            .single::<ver::StartResetRequest>(verification::START_RESET),
        ver::StartResetRequest {
            user_id: "alice".into(),
            locale: "fr-CA".into(),
            client_ip: "127.0.0.1".into(),
            ..Default::default()
        }
    );

    let sent = client
        .send_code(reset::SendCodeRequest {
            session_id: SESSION.into(),
            method_id: "m-email-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        sent,
        reset::SendCodeResponse {
            expires_at: Some(ts(1_900_000_600)),
            resend_after: Some(ts(1_900_000_060))
        }
    );
    assert_eq!(
        gw.recorder
            .single::<ver::SendCodeRequest>(verification::SEND_CODE),
        ver::SendCodeRequest {
            session_id: SESSION.into(),
            method_id: "m-email-1".into(),
            client_ip: "127.0.0.1".into(),
            ..Default::default()
        }
    );

    let verified = client
        .verify_code(reset::VerifyCodeRequest {
            session_id: SESSION.into(),
            method_id: "m-email-1".into(),
            code: "01234567".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        verified,
        reset::VerifyCodeResponse {
            methods_remaining: 1,
            unlock_available: true,
        }
    );
    assert_eq!(
        gw.recorder
            .single::<ver::VerifyCodeRequest>(verification::VERIFY_CODE),
        ver::VerifyCodeRequest {
            session_id: SESSION.into(),
            method_id: "m-email-1".into(),
            code: "01234567".into()
        }
    );

    // The longest allowed password, multi-byte, with spaces at both ends: forwarded unchanged.
    let password = format!(" {} ", "é".repeat(511));
    assert_eq!(password.len(), 1024);
    let completed = client
        .complete_reset(reset::CompleteResetRequest {
            session_id: SESSION.into(),
            new_password: password.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(completed, reset::CompleteResetResponse::default());
    assert_eq!(
        gw.recorder
            .single::<ver::CompleteResetRequest>(verification::COMPLETE_RESET),
        ver::CompleteResetRequest {
            session_id: SESSION.into(),
            new_password: password
        }
    );
}

#[tokio::test]
async fn registration_calls_map_both_ways() {
    let gw = Gateway::start().await;
    let mut client = gw.registration();

    let begun = client
        .begin_registration(registration::BeginRegistrationRequest {
            user_id: "bob".into(),
            password: "correct horse battery staple".into(),
            locale: "".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        begun,
        registration::BeginRegistrationResponse {
            session_id: "registration-session".into(),
            methods_required: 2,
            allowed_kinds: vec![MethodKind::Email as i32, MethodKind::Sms as i32],
            registered: vec![masked_email()],
            registration_required: true,
            expires_at: Some(ts(1_900_000_900)),
            reconfirm_required: false,
            ..Default::default()
        }
    );
    assert_eq!(
        gw.recorder
            .single::<enr::BeginRegistrationRequest>(enrolment::BEGIN_REGISTRATION),
        enr::BeginRegistrationRequest {
            user_id: "bob".into(),
            password: "correct horse battery staple".into(),
            locale: "".into(),
            client_ip: "127.0.0.1".into(),
        }
    );

    let added = client
        .add_method(registration::AddMethodRequest {
            session_id: SESSION.into(),
            kind: MethodKind::Sms as i32,
            destination: "+33612345678".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        added,
        registration::AddMethodResponse {
            method_id: "m-sms-2".into(),
            expires_at: Some(ts(1_900_000_600))
        }
    );
    assert_eq!(
        gw.recorder
            .single::<enr::AddMethodRequest>(enrolment::ADD_METHOD),
        enr::AddMethodRequest {
            session_id: SESSION.into(),
            kind: MethodKind::Sms as i32,
            destination: "+33612345678".into(),
            client_ip: "127.0.0.1".into(),
        }
    );

    let confirmed = client
        .confirm_method(registration::ConfirmMethodRequest {
            session_id: SESSION.into(),
            method_id: "m-sms-2".into(),
            code: "987654".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        confirmed,
        registration::ConfirmMethodResponse {
            registration_complete: true
        }
    );
    assert_eq!(
        gw.recorder
            .single::<enr::ConfirmMethodRequest>(enrolment::CONFIRM_METHOD),
        enr::ConfirmMethodRequest {
            session_id: SESSION.into(),
            method_id: "m-sms-2".into(),
            code: "987654".into()
        }
    );
}

#[tokio::test]
async fn admin_calls_map_both_ways() {
    let gw = Gateway::start().await;
    let mut client = gw.admin();

    let policy = client
        .get_policy(as_admin(admin::GetPolicyRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(policy, canned_policy());
    assert_eq!(
        gw.recorder
            .calls::<pol::GetPolicyRequest>(policy::GET_POLICY)
            .len(),
        1
    );

    let wanted = admin::Policy {
        scope: admin::Scope::All as i32,
        group_ids: vec![],
        methods_required: 1,
        allowed_methods: vec![MethodKind::Email as i32],
        version: 0,
        reconfirm_after_days: 180,
        ..Default::default()
    };
    let stored = client
        .set_policy(as_admin(admin::SetPolicyRequest {
            policy: Some(wanted.clone()),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        stored,
        admin::Policy {
            version: 8,
            ..wanted.clone()
        }
    );
    assert_eq!(
        gw.recorder
            .single::<pol::SetPolicyRequest>(policy::SET_POLICY),
        pol::SetPolicyRequest {
            policy: Some(wanted),
            actor: "admin".into(),
        }
    );

    let user = client
        .upsert_user(as_admin(admin::UpsertUserRequest {
            user_id: "carol".into(),
            display_name: "Carol Danvers".into(),
            locale: "en".into(),
            group_ids: vec!["staff".into(), "admins".into()],
            is_admin: true,
            password: "initial password!".into(),
            enabled: Some(false),
            locked: Some(true),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        user,
        admin::User {
            user_id: "carol".into(),
            display_name: "Carol Danvers".into(),
            locale: "en".into(),
            group_ids: vec!["staff".into(), "admins".into()],
            is_admin: true,
            enabled: false,
            has_password: true,
            locked: true,
            ..Default::default()
        }
    );
    assert_eq!(
        gw.recorder
            .single::<dir::UpsertUserRequest>(directory::UPSERT_USER),
        dir::UpsertUserRequest {
            user_id: "carol".into(),
            display_name: "Carol Danvers".into(),
            locale: "en".into(),
            group_ids: vec!["staff".into(), "admins".into()],
            is_admin: true,
            password: "initial password!".into(),
            enabled: Some(false),
            locked: Some(true),
            actor: "admin".into(),
        }
    );

    // No password and no `enabled`: both stay unset, for the directory to keep what it has.
    let user = client
        .upsert_user(as_admin(admin::UpsertUserRequest {
            user_id: "dave".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(user.enabled && !user.has_password);
    let calls = gw
        .recorder
        .calls::<dir::UpsertUserRequest>(directory::UPSERT_USER);
    assert_eq!(calls[1].password, "");
    assert_eq!(calls[1].enabled, None);
    assert_eq!(calls[1].locked, None);

    let deleted = client
        .delete_user(as_admin(admin::DeleteUserRequest {
            user_id: "dave".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted, admin::DeleteUserResponse {});
    assert_eq!(
        gw.recorder
            .single::<dir::DeleteUserRequest>(directory::DELETE_USER),
        dir::DeleteUserRequest {
            user_id: "dave".into(),
            actor: "admin".into(),
        }
    );
}

fn assert_invalid(result: Result<impl std::fmt::Debug, tonic::Status>, field: &str) {
    let status = result.expect_err("expected INVALID_ARGUMENT");
    assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
    assert!(
        status.message().starts_with(&format!("{field}: ")),
        "message should name {field}: {:?}",
        status.message()
    );
}

#[tokio::test]
async fn invalid_input_is_refused_at_the_edge() {
    let gw = Gateway::start().await;
    let mut reset_client = gw.reset();
    let mut registration_client = gw.registration();
    let mut admin_client = gw.admin();

    let long_id = "u".repeat(129);
    for (user_id, locale, field) in [
        ("", "en", "user_id"),
        ("   ", "en", "user_id"),
        (long_id.as_str(), "en", "user_id"),
        ("al\u{0}ice", "en", "user_id"),
        ("ali\nce", "en", "user_id"),
        ("alice", "en US", "locale"),
        ("alice", "en;DROP", "locale"),
        ("alice", &"x".repeat(36), "locale"),
    ] {
        let r = reset_client
            .start_reset(reset::StartResetRequest {
                user_id: user_id.into(),
                locale: locale.into(),
                ..Default::default()
            })
            .await;
        assert_invalid(r, field);
    }

    let long_session = "s".repeat(129);
    for (session_id, method_id, field) in [
        ("", "m1", "session_id"),
        ("abc+def/ghi=", "m1", "session_id"),
        (long_session.as_str(), "m1", "session_id"),
        (SESSION, "", "method_id"),
        (SESSION, "m.1", "method_id"),
        (SESSION, &"m".repeat(65), "method_id"),
    ] {
        let r = reset_client
            .send_code(reset::SendCodeRequest {
                session_id: session_id.into(),
                method_id: method_id.into(),
                ..Default::default()
            })
            .await;
        assert_invalid(r, field);
    }

    for (code, field) in [
        ("", "code"),
        ("12345", "code"),
        ("12345678901", "code"),
        ("12a456", "code"),
        (" 123456", "code"),
    ] {
        let r = reset_client
            .verify_code(reset::VerifyCodeRequest {
                session_id: SESSION.into(),
                method_id: "m1".into(),
                code: code.into(),
            })
            .await;
        assert_invalid(r, field);
        let r = registration_client
            .confirm_method(registration::ConfirmMethodRequest {
                session_id: SESSION.into(),
                method_id: "m1".into(),
                code: code.into(),
            })
            .await;
        assert_invalid(r, field);
    }

    for password in [String::new(), "p".repeat(1025), "é".repeat(513)] {
        let r = reset_client
            .complete_reset(reset::CompleteResetRequest {
                session_id: SESSION.into(),
                new_password: password.clone(),
            })
            .await;
        assert_invalid(r, "new_password");
        let r = registration_client
            .begin_registration(registration::BeginRegistrationRequest {
                user_id: "bob".into(),
                password: password.clone(),
                locale: "".into(),
            })
            .await;
        assert_invalid(r, "password");
    }
    let r = reset_client
        .complete_reset(reset::CompleteResetRequest {
            session_id: "bad session".into(),
            new_password: "pw".into(),
        })
        .await;
    assert_invalid(r, "session_id");
    let r = registration_client
        .begin_registration(registration::BeginRegistrationRequest {
            user_id: "".into(),
            password: "pw".into(),
            locale: "".into(),
        })
        .await;
    assert_invalid(r, "user_id");

    let long_destination = "d".repeat(321);
    for (kind, destination, field) in [
        (MethodKind::Unspecified as i32, "a@example.com", "kind"),
        (42, "a@example.com", "kind"),
        (MethodKind::Email as i32, "", "destination"),
        (
            MethodKind::Email as i32,
            long_destination.as_str(),
            "destination",
        ),
        (
            MethodKind::Email as i32,
            "a@example.com\r\nBcc: b@example.com",
            "destination",
        ),
    ] {
        let r = registration_client
            .add_method(registration::AddMethodRequest {
                session_id: SESSION.into(),
                kind,
                destination: destination.into(),
            })
            .await;
        assert_invalid(r, field);
    }
    let r = registration_client
        .add_method(registration::AddMethodRequest {
            session_id: "".into(),
            kind: MethodKind::Email as i32,
            destination: "a@example.com".into(),
        })
        .await;
    assert_invalid(r, "session_id");
    let r = registration_client
        .confirm_method(registration::ConfirmMethodRequest {
            session_id: SESSION.into(),
            method_id: "m 1".into(),
            code: "123456".into(),
        })
        .await;
    assert_invalid(r, "method_id");

    let r = admin_client
        .set_policy(as_admin(admin::SetPolicyRequest { policy: None }))
        .await;
    assert_invalid(r, "policy");
    let r = admin_client
        .set_policy(as_admin(admin::SetPolicyRequest {
            policy: Some(admin::Policy {
                group_ids: vec!["".into()],
                ..canned_policy()
            }),
        }))
        .await;
    assert_invalid(r, "policy.group_ids");
    let r = admin_client
        .set_policy(as_admin(admin::SetPolicyRequest {
            policy: Some(admin::Policy {
                reconfirm_after_days: 731,
                ..canned_policy()
            }),
        }))
        .await;
    assert_invalid(r, "policy.reconfirm_after_days");
    for (request, field) in [
        (
            admin::UpsertUserRequest {
                user_id: "".into(),
                ..Default::default()
            },
            "user_id",
        ),
        (
            admin::UpsertUserRequest {
                user_id: "u".into(),
                password: "p".repeat(1025),
                ..Default::default()
            },
            "password",
        ),
        (
            admin::UpsertUserRequest {
                user_id: "u".into(),
                locale: "en US".into(),
                ..Default::default()
            },
            "locale",
        ),
        (
            admin::UpsertUserRequest {
                user_id: "u".into(),
                display_name: "a\u{1b}[31m".into(),
                ..Default::default()
            },
            "display_name",
        ),
        (
            admin::UpsertUserRequest {
                user_id: "u".into(),
                group_ids: vec!["\u{7}".into()],
                ..Default::default()
            },
            "group_ids",
        ),
    ] {
        let r = admin_client.upsert_user(as_admin(request)).await;
        assert_invalid(r, field);
    }
    let r = admin_client
        .delete_user(as_admin(admin::DeleteUserRequest {
            user_id: "\t".into(),
        }))
        .await;
    assert_invalid(r, "user_id");

    assert_eq!(
        gw.recorder.total(),
        0,
        "no invalid request may reach an internal service"
    );
}

#[tokio::test]
async fn status_messages_never_echo_secrets() {
    let gw = Gateway::start().await;
    let secret_password = format!("Sup3rS3cret-{}", "x".repeat(1020));
    let status = gw
        .reset()
        .complete_reset(reset::CompleteResetRequest {
            session_id: SESSION.into(),
            new_password: secret_password,
        })
        .await
        .unwrap_err();
    assert!(!status.message().contains("Sup3rS3cret"));
    let status = gw
        .reset()
        .verify_code(reset::VerifyCodeRequest {
            session_id: SESSION.into(),
            method_id: "m1".into(),
            code: "98765x321".into(),
        })
        .await
        .unwrap_err();
    assert!(!status.message().contains("98765"));
    let status = gw
        .admin()
        .get_policy(with_token(
            admin::GetPolicyRequest {},
            "guess-guess-guess-1",
        ))
        .await
        .unwrap_err();
    assert!(!status.message().contains("guess"));
    assert!(!status.message().contains(common::ADMIN_TOKEN));
}

fn wrong<T>(message: T) -> tonic::Request<T> {
    with_token(message, "not-the-admin-token-at-all")
}

#[tokio::test]
async fn admin_calls_need_the_bearer_token() {
    let gw = Gateway::start().await;
    let mut client = gw.admin();

    for request in [
        tonic::Request::new(admin::GetPolicyRequest {}),
        wrong(admin::GetPolicyRequest {}),
        with_token(admin::GetPolicyRequest {}, ""),
        with_token(admin::GetPolicyRequest {}, &common::ADMIN_TOKEN[1..]),
        with_token(
            admin::GetPolicyRequest {},
            &format!("{}x", common::ADMIN_TOKEN),
        ),
    ] {
        let status = client.get_policy(request).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    let mut basic = tonic::Request::new(admin::GetPolicyRequest {});
    basic.metadata_mut().insert(
        "authorization",
        format!("Basic {}", common::ADMIN_TOKEN).parse().unwrap(),
    );
    assert_eq!(
        client.get_policy(basic).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    // Authentication comes before anything else, even before input validation.
    let status = client
        .set_policy(tonic::Request::new(admin::SetPolicyRequest {
            policy: None,
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = client
        .upsert_user(wrong(admin::UpsertUserRequest {
            user_id: "".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = client
        .upsert_user(tonic::Request::new(admin::UpsertUserRequest {
            user_id: "eve".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = client
        .delete_user(wrong(admin::DeleteUserRequest {
            user_id: "alice".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(
        gw.recorder.total(),
        0,
        "unauthenticated calls must not reach any service"
    );

    // The scheme is case-insensitive, the token is not.
    let mut lower = tonic::Request::new(admin::GetPolicyRequest {});
    lower.metadata_mut().insert(
        "authorization",
        format!("bearer {}", common::ADMIN_TOKEN).parse().unwrap(),
    );
    assert!(client.get_policy(lower).await.is_ok());
    assert!(
        client
            .get_policy(as_admin(admin::GetPolicyRequest {}))
            .await
            .is_ok()
    );
    assert_eq!(gw.recorder.total(), 2);
}

#[tokio::test]
async fn refusals_pass_through_with_their_code_and_message() {
    let gw = Gateway::start().await;
    gw.recorder.fail(
        verification::COMPLETE_RESET,
        RpcError::failed_precondition("verify the required methods before choosing a password"),
    );
    gw.recorder.fail(
        verification::VERIFY_CODE,
        RpcError::invalid_argument("that code is not right"),
    );
    gw.recorder.fail(
        verification::SEND_CODE,
        RpcError::resource_exhausted("too many codes, try again later"),
    );
    gw.recorder.fail(
        enrolment::BEGIN_REGISTRATION,
        RpcError::unauthenticated("wrong user id or password"),
    );
    gw.recorder
        .fail(directory::DELETE_USER, RpcError::not_found("no such user"));
    gw.recorder.fail(policy::SET_POLICY, RpcError::internal());

    let status = gw
        .reset()
        .complete_reset(reset::CompleteResetRequest {
            session_id: SESSION.into(),
            new_password: "new pw".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(
        status.message(),
        "verify the required methods before choosing a password"
    );

    let status = gw
        .reset()
        .verify_code(reset::VerifyCodeRequest {
            session_id: SESSION.into(),
            method_id: "m1".into(),
            code: "000000".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::InvalidArgument, "that code is not right")
    );

    let status = gw
        .reset()
        .send_code(reset::SendCodeRequest {
            session_id: SESSION.into(),
            method_id: "m1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::ResourceExhausted, "too many codes, try again later")
    );

    let status = gw
        .registration()
        .begin_registration(registration::BeginRegistrationRequest {
            user_id: "bob".into(),
            password: "wrong".into(),
            locale: "".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::Unauthenticated, "wrong user id or password")
    );

    let status = gw
        .admin()
        .delete_user(as_admin(admin::DeleteUserRequest {
            user_id: "nobody".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::NotFound, "no such user")
    );

    let status = gw
        .admin()
        .set_policy(as_admin(admin::SetPolicyRequest {
            policy: Some(canned_policy()),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::Internal, "internal error")
    );
}

#[tokio::test]
async fn no_responder_is_unavailable() {
    let gw = Gateway::start_with(Options {
        stand_ins: false,
        ..Options::default()
    })
    .await;
    let status = gw
        .reset()
        .start_reset(reset::StartResetRequest {
            user_id: "alice".into(),
            locale: "".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "service temporarily unavailable");
    let status = gw
        .admin()
        .get_policy(as_admin(admin::GetPolicyRequest {}))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    let status = gw
        .registration()
        .confirm_method(registration::ConfirmMethodRequest {
            session_id: SESSION.into(),
            method_id: "m1".into(),
            code: "123456".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
}

#[tokio::test]
async fn list_audit_events_maps_both_ways_and_checks_its_input() {
    let gw = Gateway::start().await;
    let mut client = gw.admin();

    let listed = client
        .list_audit_events(as_admin(admin::ListAuditEventsRequest {
            user_id: " alice ".into(),
            kind: "reset.completed".into(),
            from: Some(ts(1_600_000_000)),
            to: Some(ts(1_800_000_000)),
            page_size: 20,
            page_token: "dG9rZW4".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    let r = canned_audit_record();
    assert_eq!(
        listed,
        admin::ListAuditEventsResponse {
            records: vec![admin::AuditRecord {
                event_id: r.event_id,
                occurred_at: r.occurred_at,
                kind: r.kind,
                user_id: r.user_id,
                flow_id: r.flow_id,
                actor: r.actor,
                outcome: r.outcome,
                trace_id: r.trace_id,
                source: r.source,
                summary_json: r.summary_json,
            }],
            next_page_token: "next-page".into(),
        }
    );
    assert_eq!(
        gw.recorder
            .single::<aud::ListEventsRequest>(audit::LIST_EVENTS),
        aud::ListEventsRequest {
            user_id: "alice".into(),
            kind: "reset.completed".into(),
            from: Some(ts(1_600_000_000)),
            to: Some(ts(1_800_000_000)),
            page_size: 20,
            page_token: "dG9rZW4".into(),
        }
    );
    let before = gw.recorder.total();

    for (request, field) in [
        (
            admin::ListAuditEventsRequest {
                page_size: 501,
                ..Default::default()
            },
            "page_size",
        ),
        (
            admin::ListAuditEventsRequest {
                kind: "reset".into(),
                ..Default::default()
            },
            "kind",
        ),
        (
            admin::ListAuditEventsRequest {
                user_id: "a\u{7}".into(),
                ..Default::default()
            },
            "user_id",
        ),
        (
            admin::ListAuditEventsRequest {
                page_token: "not a token".into(),
                ..Default::default()
            },
            "page_token",
        ),
        (
            admin::ListAuditEventsRequest {
                from: Some(ts(20)),
                to: Some(ts(10)),
                ..Default::default()
            },
            "to",
        ),
    ] {
        let r = client.list_audit_events(as_admin(request)).await;
        assert_invalid(r, field);
    }

    let status = client
        .list_audit_events(tonic::Request::new(admin::ListAuditEventsRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = client
        .list_audit_events(with_token(
            admin::ListAuditEventsRequest::default(),
            "not-the-admin-token",
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(
        gw.recorder.total(),
        before,
        "neither invalid nor unauthenticated calls reach the audit service"
    );
}

#[tokio::test]
async fn registration_status_list_and_remove_are_forwarded() {
    let gw = Gateway::start().await;
    let mut client = gw.registration();
    let status = client
        .get_status(registration::GetStatusRequest {
            user_id: " bob ".into(),
            password: "correct horse battery staple".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status,
        registration::GetStatusResponse {
            registration_required: true,
            reconfirm_required: true,
            methods_required: 2,
            methods_registered: 2,
            eligible: true,
        }
    );
    let sent = gw
        .recorder
        .single::<enr::GetStatusRequest>(enrolment::GET_STATUS);
    assert_eq!(sent.user_id, "bob");
    assert_eq!(sent.password, "correct horse battery staple");

    let session = "A".repeat(43);
    let listed = client
        .list_methods(registration::ListMethodsRequest {
            session_id: session.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.methods, vec![masked_email()]);
    client
        .remove_method(registration::RemoveMethodRequest {
            session_id: session.clone(),
            method_id: "m-sms-2".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        gw.recorder
            .single::<enr::RemoveMethodRequest>(enrolment::REMOVE_METHOD),
        enr::RemoveMethodRequest {
            session_id: session.clone(),
            method_id: "m-sms-2".into(),
        }
    );

    // Bad input stops at the edge.
    let before = gw.recorder.total();
    let r = client
        .get_status(registration::GetStatusRequest {
            user_id: "bob".into(),
            password: String::new(),
        })
        .await;
    assert_eq!(r.unwrap_err().code(), tonic::Code::InvalidArgument);
    let r = client
        .list_methods(registration::ListMethodsRequest {
            session_id: "not a session".into(),
        })
        .await;
    assert_eq!(r.unwrap_err().code(), tonic::Code::InvalidArgument);
    let r = client
        .remove_method(registration::RemoveMethodRequest {
            session_id: session,
            method_id: String::new(),
        })
        .await;
    assert_eq!(r.unwrap_err().code(), tonic::Code::InvalidArgument);
    assert_eq!(gw.recorder.total(), before);
}
