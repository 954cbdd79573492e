//! Secret hygiene (issue 4), in a test binary of its own because telemetry is global per
//! process: this binary installs the production subscriber (`sspr_telemetry::init_with_exporter`:
//! the same log layer and OpenTelemetry layer as every service, logs at TRACE, spans into memory)
//! before any service starts, so it sees exactly what production would emit.
//!
//! It runs the whole flow (registration of an email and an SMS method, StartReset, SendCode on
//! both, a wrong code, VerifyCode, a refused password, CompleteReset) and captures every log
//! line, every span attribute and span event, every gRPC error (message, details, metadata),
//! every NATS message of the system (events, deliveries as raw bytes, rpc requests and replies,
//! JetStream API and acks). Each capture must be non-empty; then no code, password, session id,
//! admin token or code key may appear in any of them in clear, in hex (lower and upper case) or
//! in base64 (standard and URL-safe alphabets, at each of the 3 byte alignments).
//!
//! The only exceptions are requests that must carry a secret to its owner ([`OWNER_ONLY`]): they
//! travel on `sspr.rpc.<owner>.*`, which `deploy/nats/nats-server.conf` lets only the owner
//! subscribe to (checked here; refused subscriptions are shown by `attack::bus_permissions`).
//! Session ids are the client's bearer for its flow and travel only between the gateway and the
//! service that owns the session ([`RESET_SESSION_SUBJECTS`], [`REGISTRATION_SESSION_SUBJECTS`]).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use futures::StreamExt;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use rand::Rng;
use sspr_proto::admin::v1::Scope;
use sspr_proto::common::v1::MethodKind;
use sspr_proto::registration::v1 as registration;
use sspr_proto::reset::v1 as reset;
use sspr_tests::{ADMIN_TOKEN, Backend, World, code_in};

/// Requests that must carry a password or a code to the service that owns it: (subject, owner,
/// what it carries). Nothing else may carry one, and no reply ever does.
const OWNER_ONLY: &[(&str, &str, Kind)] = &[
    (
        "sspr.rpc.enrolment.begin_registration",
        "enrolment",
        Kind::Password,
    ),
    (
        "sspr.rpc.directory.authenticate",
        "directory",
        Kind::Password,
    ),
    (
        "sspr.rpc.verification.check_password",
        "verification",
        Kind::Password,
    ),
    (
        "sspr.rpc.verification.complete_reset",
        "verification",
        Kind::Password,
    ),
    (
        "sspr.rpc.directory.check_password",
        "directory",
        Kind::Password,
    ),
    (
        "sspr.rpc.directory.set_password",
        "directory",
        Kind::Password,
    ),
    ("sspr.rpc.policy.check_password", "policy", Kind::Password),
    (
        "sspr.rpc.directory.upsert_user",
        "directory",
        Kind::Password,
    ),
    (
        "sspr.rpc.verification.verify_code",
        "verification",
        Kind::Code,
    ),
    ("sspr.rpc.enrolment.confirm_method", "enrolment", Kind::Code),
    (
        "sspr.rpc.verification.check_code",
        "verification",
        Kind::Code,
    ),
    (
        "sspr.rpc.enrolment.verify_step_up_code",
        "enrolment",
        Kind::Code,
    ),
];

/// Where a session id may travel: requests to, and replies from, the service owning the session
/// (registration sessions: enrolment; reset sessions: verification), by subject prefix.
const REGISTRATION_SESSION_SUBJECTS: &str = "sspr.rpc.enrolment.";
const RESET_SESSION_SUBJECTS: &str = "sspr.rpc.verification.";

const OLD_PASSWORD: &str = "Hygiene-Old-Passw0rd-7f3k";
const NEW_PASSWORD: &str = "Hygiene-New-Passw0rd-q9z2";
/// Refused by the password rules: a common password around the user's name.
const REFUSED_PASSWORD: &str = "SashaPassword1";
const EMAIL: &str = "sasha.hygiene@example.com";
const PHONE: &str = "+33612345678";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Code,
    Password,
    RegistrationSession,
    ResetSession,
    AdminToken,
    Key,
}

/// One secret and every form it must never take.
struct Secret {
    kind: Kind,
    label: String,
    forms: Vec<(String, Vec<u8>)>,
    /// Digits only: a clear match counts only with no digit right before or after it.
    digits: bool,
}

impl Secret {
    fn new(kind: Kind, label: &str, raw: &[u8]) -> Secret {
        let mut forms = vec![
            ("clear".to_owned(), raw.to_vec()),
            ("hex".to_owned(), hex(raw, false).into_bytes()),
            ("HEX".to_owned(), hex(raw, true).into_bytes()),
        ];
        for (alphabet, engine) in [
            ("base64", &base64::engine::general_purpose::STANDARD_NO_PAD),
            (
                "base64url",
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ),
        ] {
            // Inside a longer encoded message the secret starts at one of 3 byte alignments;
            // for each, the whole 3-byte groups it fully covers encode the same way.
            for skip in 0..3usize {
                let rest = raw.get(skip..).unwrap_or_default();
                let whole = rest.len() / 3 * 3;
                if whole >= 6 {
                    forms.push((
                        format!("{alphabet} (alignment {skip})"),
                        engine.encode(&rest[..whole]).into_bytes(),
                    ));
                }
            }
        }
        Secret {
            kind,
            label: label.to_owned(),
            forms,
            digits: raw.iter().all(u8::is_ascii_digit),
        }
    }

    /// The first form of this secret found in `haystack`.
    fn found_in(&self, haystack: &[u8]) -> Option<&str> {
        for (name, form) in &self.forms {
            let clear_digits = self.digits && name == "clear";
            let hit = haystack
                .windows(form.len())
                .enumerate()
                .any(|(at, window)| {
                    window == form.as_slice()
                        && (!clear_digits || digit_bounded(haystack, at, form.len()))
                });
            if hit {
                return Some(name);
            }
        }
        None
    }
}

/// Whether `haystack[at..at + len]` is a whole number: no digit right after it, and before it
/// no digit, unless that digit ends a `\xNN` escape (how `Debug` prints a protobuf length byte).
fn digit_bounded(haystack: &[u8], at: usize, len: usize) -> bool {
    let after = haystack.get(at + len).is_some_and(u8::is_ascii_digit);
    let before = match at.checked_sub(1).and_then(|i| haystack.get(i)) {
        Some(b) if b.is_ascii_digit() => !(at >= 4 && &haystack[at - 4..at - 2] == b"\\x"),
        _ => false,
    };
    !after && !before
}

fn hex(bytes: &[u8], upper: bool) -> String {
    bytes
        .iter()
        .map(|b| {
            if upper {
                format!("{b:02X}")
            } else {
                format!("{b:02x}")
            }
        })
        .collect()
}

/// Log lines, written by the production fmt layer.
#[derive(Clone, Default)]
struct LogSink(Arc<Mutex<Vec<u8>>>);

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Finished spans, handed over by the production tracer provider (simple processor).
#[derive(Debug, Clone, Default)]
struct SpanSink(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for SpanSink {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(batch);
        std::future::ready(Ok(()))
    }
}

/// One message seen on the bus.
#[derive(Debug, Clone)]
struct BusMessage {
    subject: String,
    reply: Option<String>,
    headers: String,
    payload: Vec<u8>,
}

/// Everything one capture holds, as named haystacks.
struct Capture {
    name: &'static str,
    items: Vec<(String, Vec<u8>)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_logs_traces_events_errors_or_the_bus() {
    let logs = LogSink::default();
    let spans = SpanSink::default();
    let writer = logs.clone();
    let _telemetry = sspr_telemetry::init_with_exporter(
        "sspr-secret-hygiene",
        "trace",
        spans.clone(),
        sspr_telemetry::BoxMakeWriter::new(move || writer.clone()),
    )
    .expect("install the capturing telemetry");

    let world = World::start_or_skip(Backend::Sqlite)
        .await
        .expect("SQLite is always available");
    let bus = capture_bus(&world).await;
    let mut grpc_errors: Vec<(String, Vec<u8>)> = Vec::new();
    let mut secrets: Vec<Secret> = vec![
        Secret::new(Kind::Password, "old password", OLD_PASSWORD.as_bytes()),
        Secret::new(Kind::Password, "new password", NEW_PASSWORD.as_bytes()),
        Secret::new(
            Kind::Password,
            "refused password",
            REFUSED_PASSWORD.as_bytes(),
        ),
        Secret::new(Kind::AdminToken, "admin token", ADMIN_TOKEN.as_bytes()),
        Secret::new(Kind::Key, "SSPR_CODE_KEY", &world.code_key),
        Secret::new(
            Kind::Key,
            "SSPR_CODE_KEY (as configured, base64)",
            base64::engine::general_purpose::STANDARD
                .encode(world.code_key)
                .as_bytes(),
        ),
    ];

    world
        .set_policy(Scope::All, &[], 1)
        .await
        .expect("set policy");
    world
        .upsert_user("sasha", OLD_PASSWORD, &[], false)
        .await
        .expect("upsert user");

    // Registration: an email and an SMS method, each proved by a code.
    let mut reg = world.registration();
    let begin = reg
        .begin_registration(registration::BeginRegistrationRequest {
            user_id: "sasha".into(),
            password: OLD_PASSWORD.into(),
            locale: "en".into(),
        })
        .await
        .expect("begin registration")
        .into_inner();
    secrets.push(Secret::new(
        Kind::RegistrationSession,
        "registration session id",
        begin.session_id.as_bytes(),
    ));
    let seen = world.mail_count(EMAIL);
    let email = reg
        .add_method(registration::AddMethodRequest {
            session_id: begin.session_id.clone(),
            kind: MethodKind::Email as i32,
            destination: EMAIL.into(),
        })
        .await
        .expect("add email")
        .into_inner();
    let code = world.next_code(EMAIL, seen).await.expect("email code");
    secrets.push(Secret::new(
        Kind::Code,
        "registration email code",
        code.as_bytes(),
    ));
    reg.confirm_method(registration::ConfirmMethodRequest {
        session_id: begin.session_id.clone(),
        method_id: email.method_id.clone(),
        code,
    })
    .await
    .expect("confirm email");
    let sms_seen = world.sms.requests().len();
    let phone = reg
        .add_method(registration::AddMethodRequest {
            session_id: begin.session_id.clone(),
            kind: MethodKind::Sms as i32,
            destination: PHONE.into(),
        })
        .await
        .expect("add phone")
        .into_inner();
    let code = next_sms_code(&world, sms_seen).await;
    secrets.push(Secret::new(
        Kind::Code,
        "registration SMS code",
        code.as_bytes(),
    ));
    reg.confirm_method(registration::ConfirmMethodRequest {
        session_id: begin.session_id.clone(),
        method_id: phone.method_id.clone(),
        code,
    })
    .await
    .expect("confirm phone");

    // Reset: codes to both methods, a wrong code, the right one, a refused password, success.
    let mut client = world.reset();
    let started = client
        .start_reset(reset::StartResetRequest {
            user_id: "sasha".into(),
            locale: "en".into(),
            ..Default::default()
        })
        .await
        .expect("start reset")
        .into_inner();
    secrets.push(Secret::new(
        Kind::ResetSession,
        "reset session id",
        started.session_id.as_bytes(),
    ));
    let sms_seen = world.sms.requests().len();
    client
        .send_code(reset::SendCodeRequest {
            session_id: started.session_id.clone(),
            method_id: phone.method_id.clone(),
            ..Default::default()
        })
        .await
        .expect("send an SMS code");
    let sms_code = next_sms_code(&world, sms_seen).await;
    secrets.push(Secret::new(
        Kind::Code,
        "reset SMS code",
        sms_code.as_bytes(),
    ));
    let code = world
        .send_reset_code(&started.session_id, &email.method_id, EMAIL)
        .await
        .expect("an email code");
    secrets.push(Secret::new(Kind::Code, "reset email code", code.as_bytes()));
    let wrong = loop {
        let guess = format!("{:08}", rand::rng().random_range(0..100_000_000u32));
        if guess != code && guess != sms_code {
            break guess;
        }
    };
    secrets.push(Secret::new(Kind::Code, "wrong code", wrong.as_bytes()));
    let refused = client
        .verify_code(reset::VerifyCodeRequest {
            session_id: started.session_id.clone(),
            method_id: email.method_id.clone(),
            code: wrong,
        })
        .await
        .expect_err("a wrong code is refused");
    grpc_errors.push(status_capture("VerifyCode (wrong code)", &refused));
    client
        .verify_code(reset::VerifyCodeRequest {
            session_id: started.session_id.clone(),
            method_id: email.method_id.clone(),
            code,
        })
        .await
        .expect("the right code");
    let refused = client
        .complete_reset(reset::CompleteResetRequest {
            session_id: started.session_id.clone(),
            new_password: REFUSED_PASSWORD.into(),
        })
        .await
        .expect_err("a weak password is refused");
    grpc_errors.push(status_capture("CompleteReset (refused password)", &refused));
    client
        .complete_reset(reset::CompleteResetRequest {
            session_id: started.session_id.clone(),
            new_password: NEW_PASSWORD.into(),
        })
        .await
        .expect("complete reset");
    world
        .wait_event("sspr.events.v1.password.changed", |_| true)
        .await
        .expect("password.changed");
    // Let the last asynchronous work (deliveries, notices, audit) finish and log.
    tokio::time::sleep(Duration::from_secs(2)).await;
    world.stop().await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let messages = bus.lock().unwrap_or_else(|p| p.into_inner()).clone();
    check_owner_only_subjects();
    let captures = [
        Capture {
            name: "log lines",
            items: logs
                .0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .split(|b| *b == b'\n')
                .filter(|line| !line.is_empty())
                .map(|line| {
                    let shown: String = String::from_utf8_lossy(line).chars().take(400).collect();
                    (format!("log line {shown}"), line.to_vec())
                })
                .collect(),
        },
        Capture {
            name: "span attributes and events",
            items: spans
                .0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(render_span)
                .collect(),
        },
        Capture {
            name: "gRPC errors",
            items: grpc_errors,
        },
        bus_capture("events (sspr.events.>)", &messages, |m| {
            m.subject.starts_with("sspr.events.")
        }),
        bus_capture("deliveries (SSPR_DELIVERY raw bytes)", &messages, |m| {
            m.subject.starts_with("sspr.delivery.")
                || m.reply
                    .as_deref()
                    .is_some_and(|r| r.starts_with("$JS.ACK.SSPR_DELIVERY."))
        }),
        bus_capture("rpc requests and replies", &messages, |m| {
            m.subject.starts_with("sspr.rpc.")
        }),
        bus_capture("all other bus traffic", &messages, |m| {
            !m.subject.starts_with("sspr.")
        }),
    ];
    let replies = reply_subjects(&messages);

    let mut leaks = Vec::new();
    for capture in &captures {
        assert!(
            !capture.items.is_empty() && capture.items.iter().any(|(_, b)| !b.is_empty()),
            "the {} capture is empty: the test would prove nothing",
            capture.name
        );
        for (what, haystack) in &capture.items {
            for secret in &secrets {
                let Some(form) = secret.found_in(haystack) else {
                    continue;
                };
                if allowed(secret.kind, what, &replies) {
                    continue;
                }
                leaks.push(format!(
                    "{} ({form}) in {}: {what}",
                    secret.label, capture.name
                ));
            }
        }
    }
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
}

/// Subscribes to everything on the world's (authorization-free) server.
async fn capture_bus(world: &World) -> Arc<Mutex<Vec<BusMessage>>> {
    let client = world.nats.connect().await.expect("capture client");
    let mut all = client.subscribe(">").await.expect("subscribe to >");
    client.flush().await.expect("flush");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    tokio::spawn(async move {
        let _client = client;
        while let Some(m) = all.next().await {
            let headers = m
                .headers
                .as_ref()
                .map(|h| {
                    h.iter()
                        .flat_map(|(k, vs)| vs.iter().map(move |v| format!("{k}: {v}\n")))
                        .collect::<String>()
                })
                .unwrap_or_default();
            sink.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(BusMessage {
                    subject: m.subject.to_string(),
                    reply: m.reply.as_ref().map(|r| r.to_string()),
                    headers,
                    payload: m.payload.to_vec(),
                });
        }
    });
    seen
}

/// Reply subject of each rpc request → the request's subject.
fn reply_subjects(messages: &[BusMessage]) -> Vec<(String, String)> {
    messages
        .iter()
        .filter(|m| m.subject.starts_with("sspr.rpc."))
        .filter_map(|m| Some((m.reply.clone()?, m.subject.clone())))
        .collect()
}

fn bus_capture(
    name: &'static str,
    messages: &[BusMessage],
    pick: impl Fn(&BusMessage) -> bool,
) -> Capture {
    let replies = reply_subjects(messages);
    let items = messages
        .iter()
        .filter(|m| {
            // Replies to rpc requests belong to the rpc capture.
            let is_reply = replies.iter().any(|(r, _)| *r == m.subject);
            if name.starts_with("rpc") {
                pick(m) || is_reply
            } else {
                pick(m) && !is_reply
            }
        })
        .map(|m| {
            let mut bytes = m.headers.clone().into_bytes();
            bytes.extend_from_slice(&m.payload);
            let what = match replies.iter().find(|(r, _)| *r == m.subject) {
                Some((_, request)) => format!("reply to {request}"),
                None => format!("message on {}", m.subject),
            };
            (what, bytes)
        })
        .collect();
    Capture { name, items }
}

/// Whether a secret of `kind` may be in the item described by `what` (see the module docs).
fn allowed(kind: Kind, what: &str, _replies: &[(String, String)]) -> bool {
    let request = what.strip_prefix("message on ");
    let reply_to = what.strip_prefix("reply to ");
    match kind {
        Kind::Code | Kind::Password => request.is_some_and(|subject| {
            OWNER_ONLY
                .iter()
                .any(|(s, _, k)| *s == subject && *k == kind)
        }),
        Kind::RegistrationSession => request
            .or(reply_to)
            .is_some_and(|subject| subject.starts_with(REGISTRATION_SESSION_SUBJECTS)),
        Kind::ResetSession => request
            .or(reply_to)
            .is_some_and(|subject| subject.starts_with(RESET_SESSION_SUBJECTS)),
        Kind::AdminToken | Kind::Key => false,
    }
}

/// Each owner-only subject is the owner's, and the shipped NATS config lets only the owner
/// subscribe to `sspr.rpc.<owner>.>`.
fn check_owner_only_subjects() {
    let config = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats/nats-server.conf"),
    )
    .expect("deploy/nats/nats-server.conf");
    for (subject, owner, _) in OWNER_ONLY {
        assert!(
            subject.starts_with(&format!("sspr.rpc.{owner}.")),
            "{subject} is not a subject of {owner}"
        );
        let pattern = format!("\"sspr.rpc.{owner}.>\"");
        let places: Vec<usize> = config.match_indices(&pattern).map(|(i, _)| i).collect();
        assert_eq!(places.len(), 1, "{pattern} granted more than once");
        // The permission block (`  NAME = {`) the grant sits in.
        let block = config[..places[0]]
            .lines()
            .filter_map(|line| line.trim().strip_suffix(" = {"))
            .rfind(|name| name.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
            .unwrap_or_default();
        assert_eq!(
            block.to_lowercase(),
            owner.to_string(),
            "{pattern} is granted to {block}"
        );
        assert!(
            !config.contains("\"sspr.rpc.>\"") && !config.contains("\"sspr.>\""),
            "a wildcard over every rpc subject is granted"
        );
    }
}

fn status_capture(what: &str, status: &tonic::Status) -> (String, Vec<u8>) {
    let mut bytes = format!("{:?} {}\n", status.code(), status.message()).into_bytes();
    bytes.extend_from_slice(status.details());
    for (name, value) in status.metadata().clone().into_headers().iter() {
        bytes.extend_from_slice(format!("\n{name}: ").as_bytes());
        bytes.extend_from_slice(value.as_bytes());
    }
    (what.to_owned(), bytes)
}

fn render_span(span: &SpanData) -> (String, Vec<u8>) {
    let mut text = format!("{} {:?}\n", span.name, span.status);
    for kv in &span.attributes {
        text.push_str(&format!("{}={}\n", kv.key, kv.value));
    }
    for event in span.events.iter() {
        text.push_str(&format!("event {}\n", event.name));
        for kv in &event.attributes {
            text.push_str(&format!("  {}={}\n", kv.key, kv.value));
        }
    }
    for link in span.links.iter() {
        for kv in &link.attributes {
            text.push_str(&format!("link {}={}\n", kv.key, kv.value));
        }
    }
    (format!("span {}", span.name), text.into_bytes())
}

async fn next_sms_code(world: &World, seen: usize) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(r) = world.sms.requests().get(seen) {
            return code_in(&r.body.replace(PHONE, "")).expect("code in SMS body");
        }
        assert!(tokio::time::Instant::now() < deadline, "no SMS within 15 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
