//! What the gateway serves besides the API methods themselves: gRPC health, server reflection,
//! W3C trace continuation into NATS headers, the client IP, and a clean shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Gateway, Options};
use futures::StreamExt;
use sspr_bus::subjects::rpc::{enrolment, verification};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::internal::enrolment::v1 as enr;
use sspr_proto::internal::verification::v1 as ver;
use sspr_proto::registration::v1 as registration;
use sspr_proto::reset::v1 as reset;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const SESSION: &str = "c2Vzc2lvbi1pZC1vZi1hdC1sZWFzdC0xMjgtYml0cw";

#[tokio::test]
async fn health_reports_serving() {
    let gw = Gateway::start().await;
    let mut health = HealthClient::new(gw.channel());
    for service in [
        "",
        "sspr.reset.v1.PasswordReset",
        "sspr.registration.v1.Registration",
        "sspr.admin.v1.Admin",
    ] {
        let resp = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resp.status(), ServingStatus::Serving, "service {service:?}");
    }
    let status = health
        .check(HealthCheckRequest {
            service: "sspr.nope.v1.Nothing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn reflection_lists_the_public_services() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let gw = Gateway::start().await;
    let mut client = ServerReflectionClient::new(gw.channel());
    let ask = |message: MessageRequest| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(message),
    };
    let requests = vec![
        ask(MessageRequest::ListServices(String::new())),
        ask(MessageRequest::FileContainingSymbol(
            "sspr.reset.v1.PasswordReset".into(),
        )),
        ask(MessageRequest::FileContainingSymbol(
            "sspr.internal.verification.v1.StartResetRequest".into(),
        )),
    ];
    let mut answers = client
        .server_reflection_info(futures::stream::iter(requests))
        .await
        .unwrap()
        .into_inner();

    let first = answers
        .next()
        .await
        .unwrap()
        .unwrap()
        .message_response
        .unwrap();
    let MessageResponse::ListServicesResponse(list) = first else {
        panic!("unexpected {first:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for wanted in [
        "sspr.reset.v1.PasswordReset",
        "sspr.registration.v1.Registration",
        "sspr.admin.v1.Admin",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == wanted),
            "{wanted} missing from {names:?}"
        );
    }

    let second = answers
        .next()
        .await
        .unwrap()
        .unwrap()
        .message_response
        .unwrap();
    let MessageResponse::FileDescriptorResponse(files) = second else {
        panic!("unexpected {second:?}")
    };
    assert!(!files.file_descriptor_proto.is_empty());

    // Internal contracts are not described at the public edge.
    // (tonic-reflection ends the stream with NOT_FOUND rather than sending an ErrorResponse.)
    match answers.next().await.unwrap() {
        Err(status) => assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}"),
        Ok(answer) => assert!(
            matches!(
                answer.message_response,
                Some(MessageResponse::ErrorResponse(_))
            ),
            "unexpected {answer:?}"
        ),
    }
}

#[tokio::test]
async fn reflection_v1alpha_lists_the_public_services() {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    let gw = Gateway::start().await;
    let mut client = ServerReflectionClient::new(gw.channel());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = client
        .server_reflection_info(futures::stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let first = answers
        .next()
        .await
        .unwrap()
        .unwrap()
        .message_response
        .unwrap();
    let MessageResponse::ListServicesResponse(list) = first else {
        panic!("unexpected {first:?}")
    };
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "sspr.reset.v1.PasswordReset")
    );
}

/// The trace id of a `traceparent` header value (`00-<trace id>-<span id>-<flags>`).
fn trace_id(traceparent: &str) -> &str {
    traceparent.split('-').nth(1).unwrap_or_default()
}

fn with_traceparent<T>(message: T, traceparent: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    request
}

#[tokio::test]
async fn the_callers_trace_continues_into_nats() {
    let gw = Gateway::start().await;
    // A plain core subscription sees the raw NATS messages (headers included) next to the
    // stand-in's queue subscription, which answers them.
    let mut raw = gw
        .bus
        .client()
        .subscribe("sspr.rpc.verification.>")
        .await
        .unwrap();
    // flush() only empties the write buffer; a request answered over the same connection
    // proves the server has registered the subscription before the gateway publishes.
    gw.bus
        .client()
        .request("$SRV.PING", Default::default())
        .await
        .unwrap();

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const CLIENT_SPAN: &str = "00f067aa0ba902b7";
    let traceparent = format!("00-{TRACE}-{CLIENT_SPAN}-01");
    let mut client = gw.reset();
    client
        .start_reset(with_traceparent(
            reset::StartResetRequest {
                user_id: "alice".into(),
                locale: "".into(),
                ..Default::default()
            },
            &traceparent,
        ))
        .await
        .unwrap();
    client
        .send_code(with_traceparent(
            reset::SendCodeRequest {
                session_id: SESSION.into(),
                method_id: "m1".into(),
                ..Default::default()
            },
            &traceparent,
        ))
        .await
        .unwrap();
    client
        .verify_code(with_traceparent(
            reset::VerifyCodeRequest {
                session_id: SESSION.into(),
                method_id: "m1".into(),
                code: "12345678".into(),
            },
            &traceparent,
        ))
        .await
        .unwrap();
    client
        .complete_reset(with_traceparent(
            reset::CompleteResetRequest {
                session_id: SESSION.into(),
                new_password: "a new password".into(),
            },
            &traceparent,
        ))
        .await
        .unwrap();
    // And one call without a traceparent: it starts a trace of its own.
    client
        .start_reset(reset::StartResetRequest {
            user_id: "bob".into(),
            locale: "".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    let mut seen = Vec::new();
    for _ in 0..5 {
        let message = tokio::time::timeout(Duration::from_secs(5), raw.next())
            .await
            .unwrap()
            .unwrap();
        let header = message
            .headers
            .as_ref()
            .and_then(|h| h.get("traceparent"))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_else(|| panic!("no traceparent on {}", message.subject));
        seen.push((message.subject.to_string(), header));
    }
    let subjects: Vec<&str> = seen.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        subjects,
        [
            verification::START_RESET,
            verification::SEND_CODE,
            verification::VERIFY_CODE,
            verification::COMPLETE_RESET,
            verification::START_RESET,
        ]
    );
    for (subject, header) in &seen[..4] {
        assert_eq!(trace_id(header), TRACE, "{subject}: {header}");
        // The parent on the NATS message is the gateway's own span, not the client's.
        assert_ne!(
            header.split('-').nth(2),
            Some(CLIENT_SPAN),
            "{subject}: {header}"
        );
    }
    let (_, lone) = &seen[4];
    assert_ne!(trace_id(lone), TRACE);
    assert_eq!(trace_id(lone).len(), 32);
    assert_ne!(trace_id(lone), "0".repeat(32));
}

#[tokio::test]
async fn client_ip_is_the_peer_without_trusted_proxies() {
    let gw = Gateway::start().await;
    let mut request = tonic::Request::new(reset::StartResetRequest {
        user_id: "alice".into(),
        locale: "".into(),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("x-forwarded-for", "203.0.113.7".parse().unwrap());
    gw.reset().start_reset(request).await.unwrap();
    let call = gw
        .recorder
        .single::<ver::StartResetRequest>(verification::START_RESET);
    assert_eq!(
        call.client_ip, "127.0.0.1",
        "X-Forwarded-For must be ignored without trusted proxies"
    );
}

#[tokio::test]
async fn client_ip_comes_from_x_forwarded_for_behind_one_proxy() {
    let gw = Gateway::start_with(Options {
        trusted_proxy_hops: 1,
        ..Options::default()
    })
    .await;

    let mut request = tonic::Request::new(reset::StartResetRequest {
        user_id: "alice".into(),
        locale: "".into(),
        ..Default::default()
    });
    request.metadata_mut().insert(
        "x-forwarded-for",
        "198.51.100.66, 203.0.113.7".parse().unwrap(),
    );
    gw.reset().start_reset(request).await.unwrap();
    let call = gw
        .recorder
        .single::<ver::StartResetRequest>(verification::START_RESET);
    assert_eq!(call.client_ip, "203.0.113.7");

    let mut request = tonic::Request::new(reset::SendCodeRequest {
        session_id: SESSION.into(),
        method_id: "m1".into(),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("x-forwarded-for", "2001:db8::5".parse().unwrap());
    gw.reset().send_code(request).await.unwrap();
    let call = gw
        .recorder
        .single::<ver::SendCodeRequest>(verification::SEND_CODE);
    assert_eq!(call.client_ip, "2001:db8::5");

    let mut request = tonic::Request::new(registration::BeginRegistrationRequest {
        user_id: "bob".into(),
        password: "pw".into(),
        locale: "".into(),
    });
    request
        .metadata_mut()
        .insert("x-forwarded-for", "192.0.2.44".parse().unwrap());
    gw.registration().begin_registration(request).await.unwrap();
    let call = gw
        .recorder
        .single::<enr::BeginRegistrationRequest>(enrolment::BEGIN_REGISTRATION);
    assert_eq!(call.client_ip, "192.0.2.44");

    // No header behind a proxy: fall back to the peer.
    gw.registration()
        .add_method(registration::AddMethodRequest {
            session_id: SESSION.into(),
            kind: MethodKind::Email as i32,
            destination: "a@example.com".into(),
        })
        .await
        .unwrap();
    let call = gw
        .recorder
        .single::<enr::AddMethodRequest>(enrolment::ADD_METHOD);
    assert_eq!(call.client_ip, "127.0.0.1");
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let mut gw = Gateway::start().await;
    gw.reset()
        .start_reset(reset::StartResetRequest {
            user_id: "alice".into(),
            locale: "".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    gw.shutdown.cancel();
    let server = gw.server.take().unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server stops");
    result.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(gw.addr).await.is_err(),
        "the listener is closed"
    );
}
