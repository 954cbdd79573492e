//! Decoding what arrives at sspr's edges from arbitrary bytes: the public gRPC requests the
//! gateway decodes, the internal requests a bus `Router` decodes, and a sealed delivery that
//! notification opens. Decoding may fail; it must never panic (nor allocate without bound:
//! libFuzzer's RSS limit catches that).
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use sspr_proto::admin::v1 as admin;
use sspr_proto::internal::notification::v1::SealedDelivery;
use sspr_proto::internal::verification::v1 as verification;
use sspr_proto::registration::v1 as registration;
use sspr_proto::reset::v1 as reset;

fuzz_target!(|data: &[u8]| {
    let _ = reset::StartResetRequest::decode(data);
    let _ = reset::SendCodeRequest::decode(data);
    let _ = reset::VerifyCodeRequest::decode(data);
    let _ = reset::CompleteResetRequest::decode(data);
    let _ = registration::BeginRegistrationRequest::decode(data);
    let _ = registration::AddMethodRequest::decode(data);
    let _ = registration::ConfirmMethodRequest::decode(data);
    let _ = admin::SetPolicyRequest::decode(data);
    let _ = admin::UpsertUserRequest::decode(data);
    let _ = admin::ListAuditEventsRequest::decode(data);
    let _ = verification::StartResetRequest::decode(data);
    let _ = verification::VerifyCodeRequest::decode(data);
    let _ = verification::IssueCodeRequest::decode(data);
    if let Ok(sealed) = SealedDelivery::decode(data) {
        let key = [7u8; 32];
        let _ = sspr_bus::sealed::open_with(|_| Some(&key), &sealed);
    }
});
