//! IssueCode and CheckCode, the code endpoints enrolment uses while a user registers a method.

mod harness;

use harness::{Harness, World, other_code};
use prost::Message;
use sspr_bus::ErrorCode;
use sspr_bus::subjects::{delivery, events, rpc::verification as rpc};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::events::v1::{self as ev, CodePurpose};
use sspr_proto::internal::verification::v1 as ver;
use sspr_proto::time::from_timestamp;
use sspr_testkit::TestDb;

fn issue(method_id: &str, flow_id: &str) -> ver::IssueCodeRequest {
    ver::IssueCodeRequest {
        user_id: "bob".into(),
        method_id: method_id.into(),
        kind: MethodKind::Sms as i32,
        destination: "+41790000042".into(),
        locale: "fr".into(),
        flow_id: flow_id.into(),
        purpose: CodePurpose::Registration as i32,
        ..Default::default()
    }
}

fn check(method_id: &str, flow_id: &str, code: &str) -> ver::CheckCodeRequest {
    ver::CheckCodeRequest {
        user_id: "bob".into(),
        method_id: method_id.into(),
        code: code.into(),
        flow_id: flow_id.into(),
        purpose: CodePurpose::Registration as i32,
    }
}

async fn issue_code(
    h: &Harness,
    req: &ver::IssueCodeRequest,
) -> Result<ver::IssueCodeResponse, sspr_bus::RpcError> {
    h.call(rpc::ISSUE_CODE, req).await
}

async fn check_code(
    h: &Harness,
    req: &ver::CheckCodeRequest,
) -> Result<ver::CheckCodeResponse, sspr_bus::RpcError> {
    h.call(rpc::CHECK_CODE, req).await
}

#[tokio::test]
async fn issue_then_check_a_registration_code() {
    let mut h = Harness::start(World::default()).await;
    let now = h.clock_now();
    let issued = issue_code(&h, &issue("m-new", "reg-flow-1"))
        .await
        .expect("issue_code");
    assert_eq!(
        issued.expires_at.as_ref().and_then(from_timestamp),
        Some(now + chrono::Duration::minutes(10))
    );

    let received = h.next_delivery().await;
    assert_eq!(received.subject, delivery::SMS);
    let d = received.delivery;
    assert_eq!(d.purpose, CodePurpose::Registration as i32);
    assert_eq!(
        (d.user_id.as_str(), d.flow_id.as_str(), d.locale.as_str()),
        ("bob", "reg-flow-1", "fr")
    );
    assert_eq!(d.destination, "+41790000042");

    let e = check_code(&h, &check("m-new", "reg-flow-1", &other_code(&d.code)))
        .await
        .expect_err("wrong");
    assert_eq!(
        (e.code, e.message.as_str()),
        (ErrorCode::InvalidArgument, "wrong code")
    );
    let e = check_code(&h, &check("m-new", "another-flow", &d.code))
        .await
        .expect_err("other flow");
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::FailedPrecondition,
            "no active code, request a new one"
        )
    );
    check_code(&h, &check("m-new", "reg-flow-1", &d.code))
        .await
        .expect("right code");
    let e = check_code(&h, &check("m-new", "reg-flow-1", &d.code))
        .await
        .expect_err("single use");
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::FailedPrecondition,
            "no active code, request a new one"
        )
    );

    let events = h.events(5).await;
    let subjects: Vec<&str> = events.iter().map(|e| e.subject.as_str()).collect();
    assert_eq!(
        subjects,
        [
            events::CODE_ISSUED,
            events::CODE_REJECTED,
            events::CODE_REJECTED,
            events::CODE_VERIFIED,
            events::CODE_REJECTED
        ]
    );
    let issued_ev = ev::CodeIssued::decode(events[0].payload.as_slice()).expect("CodeIssued");
    assert_eq!(issued_ev.purpose, CodePurpose::Registration as i32);
    assert_eq!(issued_ev.meta.expect("meta").flow_id, "reg-flow-1");
    let verified = ev::CodeVerified::decode(events[3].payload.as_slice()).expect("CodeVerified");
    assert_eq!(
        (verified.method_id.as_str(), verified.purpose),
        ("m-new", CodePurpose::Registration as i32)
    );
    for e in &events {
        for secret in [d.code.as_str(), "+41790000042"] {
            assert!(
                !e.payload
                    .windows(secret.len())
                    .any(|w| w == secret.as_bytes()),
                "{} carries a secret",
                e.subject
            );
        }
    }
    h.stop().await;
}

#[tokio::test]
async fn registration_codes_expire_and_new_ones_void_old_ones() {
    let mut h = Harness::start(World::default()).await;
    issue_code(&h, &issue("m-new", "f")).await.expect("first");
    let first = h.next_delivery().await.delivery;
    issue_code(&h, &issue("m-new", "f")).await.expect("second");
    let second = h.next_delivery().await.delivery;
    if first.code != second.code {
        let e = check_code(&h, &check("m-new", "f", &first.code))
            .await
            .expect_err("voided");
        assert_eq!(e.code, ErrorCode::InvalidArgument);
    }
    h.clock.advance(chrono::Duration::minutes(10));
    let e = check_code(&h, &check("m-new", "f", &second.code))
        .await
        .expect_err("expired");
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::FailedPrecondition,
            "the code has expired, request a new one"
        )
    );
    h.stop().await;
}

#[tokio::test]
async fn registration_and_reset_codes_do_not_mix() {
    let mut h = Harness::start(World::one_method()).await;
    // A reset code for alice's m-email...
    let started = h.start_reset("alice").await.expect("start");
    h.send_code(&started.session_id, "m-email")
        .await
        .expect("send");
    let reset_code = h.next_delivery().await.delivery;
    // ...does not pass as a registration code for the same user and method and flow id.
    let e = h
        .call::<_, ver::CheckCodeResponse>(
            rpc::CHECK_CODE,
            &ver::CheckCodeRequest {
                user_id: "alice".into(),
                method_id: "m-email".into(),
                code: reset_code.code.clone(),
                flow_id: started.flow_id.clone(),
                purpose: CodePurpose::Registration as i32,
            },
        )
        .await
        .expect_err("purpose-bound");
    assert_eq!(e.code, ErrorCode::FailedPrecondition);
    // ...and enrolment cannot issue or check reset codes at all.
    let mut req = issue("m-email", "f");
    req.purpose = CodePurpose::Reset as i32;
    let e = issue_code(&h, &req).await.expect_err("reset purpose");
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::InvalidArgument,
            "purpose must be CODE_PURPOSE_REGISTRATION or CODE_PURPOSE_STEP_UP"
        )
    );
    let mut req = check("m-email", &started.flow_id, &reset_code.code);
    req.user_id = "alice".into();
    req.purpose = CodePurpose::Reset as i32;
    let e = check_code(&h, &req).await.expect_err("reset purpose");
    assert_eq!(e.code, ErrorCode::InvalidArgument);
    // The reset code is still good in its session.
    h.verify_code(&started.session_id, "m-email", &reset_code.code)
        .await
        .expect("reset code intact");
    h.stop().await;
}

#[tokio::test]
async fn issue_code_validates_its_input_and_throttles_per_method() {
    let h = Harness::start_with(World::default(), TestDb::sqlite().expect("db"), |c| {
        c.resend_after = chrono::Duration::seconds(30);
    })
    .await;
    let cases: Vec<(ver::IssueCodeRequest, &str)> = vec![
        (
            ver::IssueCodeRequest {
                user_id: String::new(),
                ..issue("m", "f")
            },
            "user_id ",
        ),
        (
            ver::IssueCodeRequest {
                method_id: String::new(),
                ..issue("m", "f")
            },
            "method_id ",
        ),
        (
            ver::IssueCodeRequest {
                flow_id: String::new(),
                ..issue("m", "f")
            },
            "flow_id ",
        ),
        (
            ver::IssueCodeRequest {
                kind: MethodKind::Unspecified as i32,
                ..issue("m", "f")
            },
            "kind ",
        ),
        (
            ver::IssueCodeRequest {
                kind: 99,
                ..issue("m", "f")
            },
            "kind ",
        ),
        (
            ver::IssueCodeRequest {
                destination: String::new(),
                ..issue("m", "f")
            },
            "destination ",
        ),
        (
            ver::IssueCodeRequest {
                destination: "x".repeat(321),
                ..issue("m", "f")
            },
            "destination ",
        ),
        (
            ver::IssueCodeRequest {
                locale: "en US".into(),
                ..issue("m", "f")
            },
            "locale ",
        ),
        (
            ver::IssueCodeRequest {
                purpose: CodePurpose::Unspecified as i32,
                ..issue("m", "f")
            },
            "purpose ",
        ),
    ];
    for (req, prefix) in cases {
        let e = issue_code(&h, &req).await.expect_err("bad input");
        assert_eq!(e.code, ErrorCode::InvalidArgument, "{prefix}");
        assert!(e.message.starts_with(prefix), "{}", e.message);
    }
    for (req, prefix) in [
        (check("m", "f", "123"), "code "),
        (
            ver::CheckCodeRequest {
                user_id: String::new(),
                ..check("m", "f", "12345678")
            },
            "user_id ",
        ),
    ] {
        let e = check_code(&h, &req).await.expect_err("bad input");
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(e.message.starts_with(prefix), "{}", e.message);
    }

    issue_code(&h, &issue("m-1", "f")).await.expect("first");
    // Per (purpose, user, method): another flow does not reset the wait, another method is free.
    let e = issue_code(&h, &issue("m-1", "g"))
        .await
        .expect_err("too soon");
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            ErrorCode::ResourceExhausted,
            "wait before requesting another code"
        )
    );
    issue_code(&h, &issue("m-2", "f"))
        .await
        .expect("another method");
    h.clock.advance(chrono::Duration::seconds(30));
    issue_code(&h, &issue("m-1", "f"))
        .await
        .expect("after the wait");
    h.stop().await;
}

#[tokio::test]
async fn voice_codes_go_on_the_voice_delivery_subject() {
    let mut h = Harness::start(World::default()).await;
    let req = ver::IssueCodeRequest {
        kind: MethodKind::Voice as i32,
        ..issue("m-voice", "reg-flow-v")
    };
    issue_code(&h, &req).await.expect("issue a voice code");
    let received = h.next_delivery().await;
    assert_eq!(received.subject, delivery::VOICE);
    let d = received.delivery;
    assert_eq!(d.kind, MethodKind::Voice as i32);
    assert_eq!(d.destination, "+41790000042");
    check_code(&h, &check("m-voice", "reg-flow-v", &d.code))
        .await
        .expect("the code read out is accepted");
    h.stop().await;
}
