//! One trace per reset across separate OS processes: the six binaries run as their own
//! processes, export spans by OTLP/gRPC to a receiver in this test, and the client sends one
//! `traceparent` on its four reset calls. The trace must hold spans from the gateway,
//! verification, notification and at least one more service, and every raw NATS message of the
//! flow must carry the trace context. Every process must then stop cleanly on SIGTERM.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt;
use sspr_proto::admin::v1::{self as admin, Scope};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::registration::v1 as registration;
use sspr_proto::reset::v1 as reset;
use sspr_testkit::{NatsServer, OtlpReceiver, SmtpSink, free_port};
use sspr_tests::code_in;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

const TOKEN: &str = "trace-test-admin-token-0123";
const SERVICES: [&str; 6] = [
    "directory",
    "policy",
    "enrolment",
    "verification",
    "notification",
    "gateway",
];

fn binary(name: &str) -> PathBuf {
    // Test executables live in target/<profile>/deps; the workspace binaries one level up.
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} not built: run `cargo test --workspace` (which builds every binary) or `cargo build --workspace --bins`",
        path.display()
    );
    path
}

async fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .ok()?;
    let mut buf = String::new();
    stream.read_to_string(&mut buf).await.ok()?;
    Some(buf)
}

struct Process {
    name: &'static str,
    child: Child,
    metrics_port: u16,
}

fn auth<T>(body: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(body);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {TOKEN}").parse().expect("ascii"),
    );
    req
}

fn with_traceparent<T>(body: T, traceparent: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(body);
    req.metadata_mut()
        .insert("traceparent", traceparent.parse().expect("ascii"));
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_across_processes() {
    sspr_testkit::init_test_tracing();
    let nats = NatsServer::start().await.expect("nats");
    let smtp = SmtpSink::start().await.expect("smtp");
    let otlp = OtlpReceiver::start().await.expect("otlp receiver");
    let data = tempfile::tempdir().expect("tempdir");
    let code_key =
        base64::engine::general_purpose::STANDARD.encode(sspr_testkit::random_code_key());
    let grpc_port = free_port().expect("port");

    let mut processes = Vec::new();
    for name in SERVICES {
        let metrics_port = free_port().expect("port");
        let child = Command::new(binary(&format!("sspr-{name}")))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("SSPR_NATS_URL", nats.url())
            .env("SSPR_DATA_DIR", data.path())
            .env("SSPR_SMTP_URL", smtp.url())
            .env("SSPR_CODE_KEY", &code_key)
            .env("SSPR_ADMIN_TOKEN", TOKEN)
            .env("SSPR_GRPC_ADDR", format!("127.0.0.1:{grpc_port}"))
            .env("SSPR_METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
            .env("SSPR_RESEND_AFTER_SECS", "0")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint())
            .env("OTEL_SERVICE_NAME", format!("sspr-{name}"))
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn sspr-{name}: {e}"));
        processes.push(Process {
            name,
            child,
            metrics_port,
        });
    }

    // Every process reports ready on /readyz (connected to NATS and, but the gateway, its database).
    for p in &mut processes {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(resp) = http_get(p.metrics_port, "/readyz").await
                && resp.starts_with("HTTP/1.1 200")
            {
                break;
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("sspr-{} exited early with {status}", p.name);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "sspr-{} not ready within 30 s",
                p.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let health = http_get(p.metrics_port, "/healthz")
            .await
            .unwrap_or_default();
        assert!(
            health.starts_with("HTTP/1.1 200"),
            "sspr-{} /healthz: {health}",
            p.name
        );
    }
    // The services answer NATS discovery.
    let nc = nats.connect().await.expect("nats client");
    for name in [
        "directory",
        "policy",
        "enrolment",
        "verification",
        "notification",
    ] {
        let subject = format!("$SRV.PING.sspr-{name}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while nc.request(subject.clone(), "".into()).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "sspr-{name} does not answer {subject}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{grpc_port}"))
        .expect("url")
        .connect()
        .await
        .expect("gateway");
    let mut admin_client = admin::admin_client::AdminClient::new(channel.clone());
    let policy = admin::Policy {
        scope: Scope::All as i32,
        methods_required: 1,
        allowed_methods: vec![MethodKind::Email as i32],
        ..Default::default()
    };
    admin_client
        .set_policy(auth(admin::SetPolicyRequest {
            policy: Some(policy),
        }))
        .await
        .expect("policy");
    admin_client
        .upsert_user(auth(admin::UpsertUserRequest {
            user_id: "grace".into(),
            password: "correct horse battery".into(),
            ..Default::default()
        }))
        .await
        .expect("user");
    let mut reg = registration::registration_client::RegistrationClient::new(channel.clone());
    let begin = reg
        .begin_registration(registration::BeginRegistrationRequest {
            user_id: "grace".into(),
            password: "correct horse battery".into(),
            locale: String::new(),
        })
        .await
        .expect("begin")
        .into_inner();
    let added = reg
        .add_method(registration::AddMethodRequest {
            session_id: begin.session_id.clone(),
            kind: MethodKind::Email as i32,
            destination: "grace@example.com".into(),
        })
        .await
        .expect("add")
        .into_inner();
    let mail = smtp
        .wait_for(
            |m| m.to.iter().any(|t| t.contains("grace@example.com")),
            Duration::from_secs(15),
        )
        .await
        .expect("registration mail");
    let code = code_in(&mail.text_body().expect("text")).expect("code");
    // Notification announces the new method (its own lookups, in the registration's trace):
    // let that finish before watching the reset's traffic.
    let mut announced = nc
        .subscribe("sspr.events.v1.method.change_announced")
        .await
        .expect("sub announced");
    nc.flush().await.expect("flush");
    reg.confirm_method(registration::ConfirmMethodRequest {
        session_id: begin.session_id,
        method_id: added.method_id.clone(),
        code,
    })
    .await
    .expect("confirm");
    tokio::time::timeout(Duration::from_secs(15), announced.next())
        .await
        .expect("method change announced");

    // Watch the raw NATS traffic of the reset.
    let mut rpc = nc.subscribe("sspr.rpc.>").await.expect("sub rpc");
    let mut deliveries = nc
        .subscribe("sspr.delivery.v1.>")
        .await
        .expect("sub delivery");
    nc.flush().await.expect("flush");

    // The four reset calls, one traceparent.
    let trace_id = format!("{:032x}", rand_u128());
    let traceparent = format!("00-{trace_id}-{:016x}-01", rand_u128() as u64 | 1);
    let mut client = reset::password_reset_client::PasswordResetClient::new(channel.clone());
    let started = client
        .start_reset(with_traceparent(
            reset::StartResetRequest {
                user_id: "grace".into(),
                locale: String::new(),
                ..Default::default()
            },
            &traceparent,
        ))
        .await
        .expect("start")
        .into_inner();
    let before = smtp.messages().len();
    client
        .send_code(with_traceparent(
            reset::SendCodeRequest {
                session_id: started.session_id.clone(),
                method_id: added.method_id.clone(),
                ..Default::default()
            },
            &traceparent,
        ))
        .await
        .expect("send");
    smtp.wait_for_count(before + 1, Duration::from_secs(15))
        .await
        .expect("reset mail");
    let mail = smtp.messages().pop().expect("mail");
    let code = code_in(&mail.text_body().expect("text")).expect("code");
    client
        .verify_code(with_traceparent(
            reset::VerifyCodeRequest {
                session_id: started.session_id.clone(),
                method_id: added.method_id.clone(),
                code,
            },
            &traceparent,
        ))
        .await
        .expect("verify");
    client
        .complete_reset(with_traceparent(
            reset::CompleteResetRequest {
                session_id: started.session_id.clone(),
                new_password: "a brand new passphrase".into(),
            },
            &traceparent,
        ))
        .await
        .expect("complete");

    // Every raw NATS message of the flow carries our trace id in `traceparent`.
    let mut rpc_subjects = BTreeSet::new();
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(300), rpc.next()).await {
        if msg.subject.as_str().starts_with("sspr.rpc.") {
            let tp = msg
                .headers
                .as_ref()
                .and_then(|h| h.get("traceparent"))
                .map(|v| v.to_string());
            assert!(
                tp.as_deref().is_some_and(|tp| tp.contains(&trace_id)),
                "{} without our traceparent: {tp:?}",
                msg.subject
            );
            rpc_subjects.insert(msg.subject.to_string());
        }
    }
    for expected in [
        "sspr.rpc.verification.start_reset",
        "sspr.rpc.verification.send_code",
        "sspr.rpc.enrolment.get_destination",
        "sspr.rpc.directory.set_password",
    ] {
        assert!(
            rpc_subjects.contains(expected),
            "no {expected} seen; saw {rpc_subjects:?}"
        );
    }
    let delivery = tokio::time::timeout(Duration::from_secs(5), deliveries.next())
        .await
        .expect("delivery message")
        .expect("open");
    let tp = delivery
        .headers
        .as_ref()
        .and_then(|h| h.get("traceparent"))
        .map(|v| v.to_string());
    assert!(
        tp.as_deref().is_some_and(|tp| tp.contains(&trace_id)),
        "delivery without our traceparent: {tp:?}"
    );

    // SIGTERM: every process stops cleanly and flushes its spans.
    for p in &processes {
        let pid = p.child.id().expect("pid");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }
    for p in &mut processes {
        let status = tokio::time::timeout(Duration::from_secs(20), p.child.wait())
            .await
            .unwrap_or_else(|_| panic!("sspr-{} did not stop within 20 s of SIGTERM", p.name))
            .expect("wait");
        assert!(
            status.success(),
            "sspr-{} exited with {status} on SIGTERM",
            p.name
        );
    }

    // One trace holds spans of the gateway, verification, notification and more.
    let spans = otlp.spans();
    let ours: Vec<_> = spans.iter().filter(|s| s.trace_id == trace_id).collect();
    let services: BTreeSet<&str> = ours.iter().map(|s| s.service_name.as_str()).collect();
    for required in ["sspr-gateway", "sspr-verification", "sspr-notification"] {
        assert!(
            services.contains(required),
            "trace lacks {required}: {services:?}"
        );
    }
    assert!(
        services.contains("sspr-enrolment") || services.contains("sspr-directory"),
        "trace lacks a fourth service: {services:?}"
    );
    // Span names, kinds and attributes follow the OpenTelemetry RPC and messaging conventions.
    let one = |service: &str, name: &str| {
        ours.iter()
            .find(|s| s.service_name == service && s.name == name)
            .unwrap_or_else(|| {
                let names: BTreeSet<(&str, &str)> = ours
                    .iter()
                    .map(|s| (s.service_name.as_str(), s.name.as_str()))
                    .collect();
                panic!("no span {name} in {service}: {names:?}")
            })
    };
    let grpc = one("sspr-gateway", "sspr.reset.v1.PasswordReset/StartReset");
    assert_eq!(grpc.kind, "server");
    for (key, value) in [
        ("rpc.system", "grpc"),
        ("rpc.service", "sspr.reset.v1.PasswordReset"),
        ("rpc.method", "StartReset"),
        ("rpc.grpc.status_code", "0"),
    ] {
        assert_eq!(grpc.attribute(key), Some(value), "{key}: {grpc:?}");
    }
    let request = one("sspr-gateway", "send sspr.rpc.verification.start_reset");
    assert_eq!(request.kind, "client");
    assert_eq!(request.parent_span_id, grpc.span_id);
    let process = one(
        "sspr-verification",
        "process sspr.rpc.verification.start_reset",
    );
    assert_eq!(process.kind, "server");
    assert_eq!(process.parent_span_id, request.span_id);
    for span in [request, process] {
        for (key, value) in [
            ("messaging.system", "nats"),
            (
                "messaging.destination.name",
                "sspr.rpc.verification.start_reset",
            ),
            ("rpc.service", "verification"),
            ("rpc.method", "start_reset"),
        ] {
            assert_eq!(span.attribute(key), Some(value), "{key}: {span:?}");
        }
    }
    // The outbox relay publishes rows of many requests in a batch: its publish of the code's
    // delivery is a producer span of its own, linked to this trace rather than inside it.
    let publish = spans
        .iter()
        .find(|s| {
            s.service_name == "sspr-verification"
                && s.name.starts_with("send sspr.delivery.v1.")
                && s.links_to_trace(&trace_id)
        })
        .expect("the relay's publish of the delivery, linked to the reset's trace");
    assert_eq!(publish.kind, "producer");
    assert_ne!(publish.trace_id, trace_id);
    assert_eq!(publish.attribute("messaging.operation.type"), Some("send"));
    // ... inside the span of the relay's batch.
    let batch = spans
        .iter()
        .find(|s| s.span_id == publish.parent_span_id)
        .expect("the publish is a child of the relay's batch span");
    assert_eq!(batch.name, "outbox relay", "{batch:?}");
    assert_eq!(batch.service_name, "sspr-verification");
    assert_eq!(batch.trace_id, publish.trace_id);

    // The delivery span in notification is a child of a span of the SendCode call.
    let span_ids: BTreeSet<&str> = ours.iter().map(|s| s.span_id.as_str()).collect();
    let delivery_span = ours
        .iter()
        .find(|s| s.service_name == "sspr-notification" && s.name.contains("sspr.delivery.v1"))
        .expect("a delivery span in notification");
    assert!(
        span_ids.contains(delivery_span.parent_span_id.as_str()),
        "the delivery span's parent is not in the trace"
    );
}

fn rand_u128() -> u128 {
    rand::random::<u128>()
}
