//! PasswordReset.GetCodeStatus at the edge, against a stand-in verification service over a
//! real nats-server: the mapping both ways, input refused before any request, refusals passed
//! through with their status and message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Gateway, masked_email};
use sspr_bus::RpcError;
use sspr_bus::subjects::rpc::verification;
use sspr_proto::internal::verification::v1 as ver;
use sspr_proto::reset::v1 as reset;
use tonic::Code;

const SESSION: &str = "c2Vzc2lvbi1pZC1vZi1hdC1sZWFzdC0xMjgtYml0cw";

#[tokio::test]
async fn get_code_status_maps_both_ways() {
    let gw = Gateway::start().await;
    let status = gw
        .reset()
        .get_code_status(reset::GetCodeStatusRequest {
            session_id: SESSION.into(),
            method_id: "m-sms-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status,
        reset::GetCodeStatusResponse {
            state: reset::CodeDeliveryState::Failed as i32,
            alternatives: vec![masked_email()],
        }
    );
    assert_eq!(
        gw.recorder
            .single::<ver::GetCodeStatusRequest>(verification::GET_CODE_STATUS),
        ver::GetCodeStatusRequest {
            session_id: SESSION.into(),
            method_id: "m-sms-1".into(),
        }
    );
}

#[tokio::test]
async fn get_code_status_input_is_refused_at_the_edge() {
    let gw = Gateway::start().await;
    let long_session = "s".repeat(129);
    for (session_id, method_id, field) in [
        ("", "m1", "session_id"),
        ("abc+def/ghi=", "m1", "session_id"),
        (long_session.as_str(), "m1", "session_id"),
        (SESSION, "", "method_id"),
        (SESSION, "m.1", "method_id"),
        (SESSION, &"m".repeat(65), "method_id"),
    ] {
        let status = gw
            .reset()
            .get_code_status(reset::GetCodeStatusRequest {
                session_id: session_id.into(),
                method_id: method_id.into(),
            })
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(
            status.message().starts_with(&format!("{field}: ")),
            "{status:?}"
        );
    }
    assert_eq!(gw.recorder.total(), 0, "nothing reached the services");
}

#[tokio::test]
async fn get_code_status_refusals_pass_through() {
    let gw = Gateway::start().await;
    gw.recorder.fail(
        verification::GET_CODE_STATUS,
        RpcError::failed_precondition("no code was sent to this method"),
    );
    let status = gw
        .reset()
        .get_code_status(reset::GetCodeStatusRequest {
            session_id: SESSION.into(),
            method_id: "m1".into(),
        })
        .await
        .expect_err("refused");
    assert_eq!(
        (status.code(), status.message()),
        (Code::FailedPrecondition, "no code was sent to this method")
    );
}
