//! Typed-destination confirmation and the helpdesk contact at the edge, against stand-in
//! internal services over a real nats-server: mapping, and refusal before any NATS call.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Gateway, as_admin, canned_policy};
use sspr_bus::subjects::rpc::{policy, verification};
use sspr_proto::admin::v1 as admin;
use sspr_proto::internal::policy::v1 as pol;
use sspr_proto::internal::verification::v1 as ver;
use sspr_proto::reset::v1 as reset;
use tonic::Code;

const SESSION: &str = "c2Vzc2lvbi1pZC1vZi1hdC1sZWFzdC0xMjgtYml0cw";

#[tokio::test]
async fn destination_confirmation_is_forwarded_as_typed() {
    let gw = Gateway::start().await;
    let mut client = gw.reset();
    client
        .send_code(reset::SendCodeRequest {
            session_id: SESSION.into(),
            method_id: "m-email-1".into(),
            destination_confirmation: " Alice@Example.com ".into(),
        })
        .await
        .unwrap();
    let forwarded = gw
        .recorder
        .single::<ver::SendCodeRequest>(verification::SEND_CODE);
    assert_eq!(forwarded.destination_confirmation, " Alice@Example.com ");
}

#[tokio::test]
async fn bad_destination_confirmation_never_reaches_nats() {
    let gw = Gateway::start().await;
    let mut client = gw.reset();
    for bad in ["a".repeat(321), "alice@example.com\n".to_owned()] {
        let status = client
            .send_code(reset::SendCodeRequest {
                session_id: SESSION.into(),
                method_id: "m-email-1".into(),
                destination_confirmation: bad.clone(),
            })
            .await
            .expect_err("invalid");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().starts_with("destination_confirmation: "),
            "{status:?}"
        );
        assert!(!status.message().contains("alice"));
    }
    assert!(
        gw.recorder
            .calls::<ver::SendCodeRequest>(verification::SEND_CODE)
            .is_empty()
    );
}

#[tokio::test]
async fn helpdesk_contact_is_validated_trimmed_and_forwarded() {
    let gw = Gateway::start().await;
    let mut client = gw.admin();
    let status = client
        .set_policy(as_admin(admin::SetPolicyRequest {
            policy: Some(admin::Policy {
                helpdesk_contact: "call\u{7}us".into(),
                ..canned_policy()
            }),
        }))
        .await
        .expect_err("control character");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("policy.helpdesk_contact: "));
    assert!(
        gw.recorder
            .calls::<pol::SetPolicyRequest>(policy::SET_POLICY)
            .is_empty()
    );

    client
        .set_policy(as_admin(admin::SetPolicyRequest {
            policy: Some(admin::Policy {
                require_full_destination: true,
                helpdesk_contact: "  helpdesk@example.com ".into(),
                ..canned_policy()
            }),
        }))
        .await
        .unwrap();
    let forwarded = gw
        .recorder
        .single::<pol::SetPolicyRequest>(policy::SET_POLICY)
        .policy
        .expect("policy");
    assert!(forwarded.require_full_destination);
    assert_eq!(forwarded.helpdesk_contact, "helpdesk@example.com");
}
