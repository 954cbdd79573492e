//! Attacks on the bus permissions: a private nats-server runs the shipped
//! `deploy/nats/nats-server.conf` (test passwords through its environment), `sspr provision`
//! creates the streams and consumers under its own identity, and each test shows that the
//! permitted paths work and that an identity using another's subjects is refused. nats-server
//! reports a permission violation to the offending client as an `-ERR`, which async-nats hands to
//! the event callback; the tests assert on those reports and on what did (not) happen.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use futures::StreamExt;
use sspr_bus::{Bus, BusConfig, NatsAuth, subjects};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::reset::v1 as reset;
use sspr_testkit::{NatsConfig, NatsServer};
use sspr_tests::{Backend, World};

/// Every identity in the shipped config.
const USERS: [&str; 9] = [
    "gateway",
    "policy",
    "enrolment",
    "verification",
    "notification",
    "directory",
    "audit",
    "provision",
    "events-reader",
];

fn password(user: &str) -> String {
    format!("test-password-of-{user}")
}

/// The shipped server config, with every password set in the server's environment.
async fn secured_server() -> NatsServer {
    let file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats/nats-server.conf");
    let env = USERS
        .iter()
        .map(|u| {
            (
                format!("SSPR_NATS_{}_PASSWORD", u.to_uppercase().replace('-', "_")),
                password(u),
            )
        })
        .collect();
    NatsServer::start_with_config(NatsConfig {
        file,
        env,
        probe_user: Some(("events-reader".to_owned(), password("events-reader"))),
        probe_tls_ca: None,
    })
    .await
    .expect("nats-server with deploy/nats/nats-server.conf")
}

/// How `user` connects, exactly as `sspr_runtime::bus_config` would with
/// `SSPR_NATS_USER`/`SSPR_NATS_PASSWORD`.
fn identity(url: &str, user: &str) -> BusConfig {
    let name = format!("sspr-{user}");
    let mut config = BusConfig::new(url.to_owned(), name.clone());
    config.auth = NatsAuth::UserPassword {
        user: user.to_owned(),
        password: password(user),
    };
    config.inbox_prefix = Some(format!("_INBOX_{name}"));
    config
}

/// A client connected as `user` that records the errors the server reports to it.
struct Conn {
    client: async_nats::Client,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Conn {
    async fn open(nats: &NatsServer, user: &str) -> Conn {
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&errors);
        let inbox = if user == "events-reader" {
            "_INBOX".to_owned()
        } else {
            format!("_INBOX_sspr-{user}")
        };
        let client =
            async_nats::ConnectOptions::with_user_and_password(user.to_owned(), password(user))
                .custom_inbox_prefix(inbox)
                .event_callback(move |event| {
                    let sink = Arc::clone(&sink);
                    async move {
                        if let async_nats::Event::ServerError(e) = event {
                            sink.lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(e.to_string());
                        }
                    }
                })
                .connect(nats.url())
                .await
                .unwrap_or_else(|e| panic!("{user} connects with its own password: {e}"));
        Conn { client, errors }
    }

    fn js(&self) -> jetstream::Context {
        jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(2))
            .build(self.client.clone())
    }

    /// Waits for the server's permission-violation report naming `subject`.
    async fn refused(&self, subject: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let _ = self.client.flush().await;
            if let Some(e) = self
                .errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .find(|e| e.to_lowercase().contains("permissions violation") && e.contains(subject))
            {
                return e.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no permission violation reported for {subject}; errors: {:?}",
                self.errors.lock().unwrap_or_else(|p| p.into_inner())
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn violations(&self) -> Vec<String> {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Starts the secured server and runs `sspr provision` against it with the `provision` identity.
async fn provisioned() -> NatsServer {
    let nats = secured_server().await;
    let bus = Bus::connect(&identity(&nats.url(), "provision"))
        .await
        .expect("provision connects");
    let done = sspr_cli::provision::provision(
        bus.jetstream(),
        &sspr_bus::streams::StreamSettings::default(),
    )
    .await
    .expect("sspr provision");
    assert!(
        done.iter()
            .any(|l| l.contains("SSPR_DELIVERY/sspr-notification"))
    );
    nats
}

async fn stream_messages(nats: &NatsServer, stream: &str) -> u64 {
    let provision = Conn::open(nats, "provision").await;
    let mut s = provision.js().get_stream(stream).await.expect("stream");
    s.info().await.expect("stream info").state.messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_provision_identity_may_create_or_change_streams() {
    let nats = provisioned().await;
    // A service at start finds the provisioned streams and does not need to change them.
    let verification = Bus::connect(&identity(&nats.url(), "verification"))
        .await
        .expect("verification connects");
    sspr_bus::streams::ensure(
        verification.jetstream(),
        &sspr_bus::streams::StreamSettings::default(),
    )
    .await
    .expect("a service starts on provisioned streams without the right to manage them");

    let enrolment = Conn::open(&nats, "enrolment").await;
    let created = enrolment
        .js()
        .create_stream(stream::Config {
            name: "STOLEN".to_owned(),
            subjects: vec!["sspr.rpc.>".to_owned()],
            ..Default::default()
        })
        .await;
    assert!(created.is_err(), "enrolment created a stream");
    enrolment.refused("$JS.API.STREAM.CREATE.STOLEN").await;
    let update = enrolment
        .js()
        .update_stream(stream::Config {
            name: subjects::DELIVERY_STREAM.to_owned(),
            subjects: vec![
                subjects::DELIVERY_WILDCARD.to_owned(),
                "sspr.rpc.>".to_owned(),
            ],
            ..Default::default()
        })
        .await;
    assert!(update.is_err(), "enrolment changed SSPR_DELIVERY");
    enrolment
        .refused("$JS.API.STREAM.UPDATE.SSPR_DELIVERY")
        .await;
    let provision = Conn::open(&nats, "provision").await;
    assert!(provision.js().get_stream("STOLEN").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_verification_publishes_deliveries_and_only_notification_consumes_them() {
    let nats = provisioned().await;

    // Permitted: verification publishes a (sealed) delivery through the bus code path.
    let verification = Bus::connect(&identity(&nats.url(), "verification"))
        .await
        .expect("verification connects");
    verification
        .publish_durable(
            subjects::delivery::EMAIL,
            "delivery-1",
            Default::default(),
            bytes_of("sealed delivery"),
        )
        .await
        .expect("verification may publish a delivery");
    assert_eq!(stream_messages(&nats, subjects::DELIVERY_STREAM).await, 1);

    // Refused: another service publishing a delivery.
    let enrolment = Conn::open(&nats, "enrolment").await;
    enrolment
        .client
        .publish(subjects::delivery::EMAIL, bytes_of("forged delivery"))
        .await
        .expect("the client sends; the server refuses");
    enrolment.refused(subjects::delivery::EMAIL).await;
    assert_eq!(stream_messages(&nats, subjects::DELIVERY_STREAM).await, 1);

    // Refused: audit pulling notification's deliveries, or making a consumer of its own.
    let audit = Conn::open(&nats, "audit").await;
    let next = "$JS.API.CONSUMER.MSG.NEXT.SSPR_DELIVERY.sspr-notification";
    let pulled = tokio::time::timeout(
        Duration::from_secs(2),
        audit.client.request(next, bytes_of("{\"batch\":1}")),
    )
    .await;
    assert!(!matches!(pulled, Ok(Ok(_))), "audit pulled a delivery");
    audit.refused(next).await;
    let own = audit
        .js()
        .get_stream(subjects::DELIVERY_STREAM)
        .await
        .expect("stream info (settings and counts, no content) is open to every service")
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("audit-steals".to_owned()),
            ..Default::default()
        })
        .await;
    assert!(own.is_err(), "audit created a consumer on SSPR_DELIVERY");
    audit
        .refused("$JS.API.CONSUMER.CREATE.SSPR_DELIVERY.audit-steals")
        .await;

    // Permitted: notification consumes it with its durable consumer, and acknowledges it.
    let notification = Conn::open(&nats, "notification").await;
    let (_, config) = sspr_cli::provision::durable_consumers()
        .into_iter()
        .find(|(s, _)| *s == subjects::DELIVERY_STREAM)
        .expect("the delivery consumer");
    let consumer = notification
        .js()
        .get_stream(subjects::DELIVERY_STREAM)
        .await
        .expect("notification opens SSPR_DELIVERY")
        .create_consumer(config)
        .await
        .expect("notification (re)creates its own durable consumer");
    let mut batch = consumer
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .expect("notification pulls");
    let message = batch
        .next()
        .await
        .expect("one delivery")
        .expect("a message");
    assert_eq!(&message.payload[..], b"sealed delivery");
    message.ack().await.expect("notification acknowledges");
    assert!(
        notification.violations().is_empty(),
        "notification was refused something: {:?}",
        notification.violations()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_reader_may_read_events_but_never_publish_or_take_sspr_consumers() {
    let nats = provisioned().await;
    let directory = Bus::connect(&identity(&nats.url(), "directory"))
        .await
        .expect("directory connects");
    directory
        .publish_durable(
            subjects::events::USER_DELETED,
            "event-1",
            Default::default(),
            bytes_of("an event"),
        )
        .await
        .expect("directory may publish its events");

    let reader = Conn::open(&nats, "events-reader").await;
    // Permitted: a consumer of its own on SSPR_EVENTS.
    let consumer = reader
        .js()
        .get_stream(subjects::EVENTS_STREAM)
        .await
        .expect("the reader opens SSPR_EVENTS")
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("team-sessions".to_owned()),
            ..Default::default()
        })
        .await
        .expect("the reader creates its own consumer");
    let mut batch = consumer
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .expect("the reader pulls");
    let message = batch.next().await.expect("one event").expect("a message");
    assert_eq!(&message.payload[..], b"an event");
    message.ack().await.expect("the reader acknowledges");

    // Refused: publishing an event (a forged password.changed would revoke sessions elsewhere).
    reader
        .client
        .publish(subjects::events::PASSWORD_CHANGED, bytes_of("forged"))
        .await
        .expect("the client sends; the server refuses");
    reader.refused(subjects::events::PASSWORD_CHANGED).await;
    // Refused: taking audit's events from its durable consumer.
    let next = "$JS.API.CONSUMER.MSG.NEXT.SSPR_EVENTS.sspr-audit";
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        reader.client.request(next, bytes_of("{\"batch\":1}")),
    )
    .await;
    reader.refused(next).await;
    // Refused: touching SSPR_DELIVERY at all.
    assert!(
        reader
            .js()
            .get_stream(subjects::DELIVERY_STREAM)
            .await
            .is_err()
    );
    reader.refused("$JS.API.STREAM.INFO.SSPR_DELIVERY").await;
    assert_eq!(stream_messages(&nats, subjects::EVENTS_STREAM).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_owner_may_receive_requests_that_carry_passwords_or_replies() {
    let nats = provisioned().await;
    let gateway = Conn::open(&nats, "gateway").await;
    // The subscription is refused by the server (the client only learns it from the -ERR).
    let _sub = gateway
        .client
        .subscribe(subjects::rpc::directory::SET_PASSWORD)
        .await
        .expect("the client sends SUB");
    gateway
        .refused(subjects::rpc::directory::SET_PASSWORD)
        .await;
    // Nor another service's replies (a StartReset reply carries the session id to the gateway).
    let verification = Conn::open(&nats, "verification").await;
    let _sub = verification
        .client
        .subscribe("_INBOX_sspr-gateway.>")
        .await
        .expect("the client sends SUB");
    verification.refused("_INBOX_sspr-gateway.>").await;
    // Nor can an events reader listen to any request.
    let reader = Conn::open(&nats, "events-reader").await;
    let _sub = reader
        .client
        .subscribe("sspr.rpc.>")
        .await
        .expect("the client sends SUB");
    reader.refused("sspr.rpc.>").await;
    // And a service cannot call what it never needs: enrolment setting a password.
    let enrolment = Conn::open(&nats, "enrolment").await;
    enrolment
        .client
        .publish(subjects::rpc::directory::SET_PASSWORD, bytes_of("x"))
        .await
        .expect("the client sends; the server refuses");
    enrolment
        .refused(subjects::rpc::directory::SET_PASSWORD)
        .await;
    // The server logs each refusal too (what the whole-flow test checks is absent).
    let log = nats.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("Violation") && l.contains("sspr.rpc.directory.set_password")),
        "nats-server did not log the violation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_reset_flow_runs_with_each_service_on_its_own_nats_identity() {
    let nats = provisioned().await;
    let url = nats.url();
    let Some(world) = World::start_with_or_skip(Backend::Sqlite, move |opts| {
        opts.nats_url = url.clone();
        opts.bus_config = Some(Arc::new(move |service: &str| identity(&url, service)));
    })
    .await
    else {
        return;
    };
    world
        .set_policy(sspr_proto::admin::v1::Scope::All, &[], 1)
        .await
        .expect("set policy");
    world
        .upsert_user("carol", "Lighthouse-Cobalt-Fern-17", &[], false)
        .await
        .expect("upsert user");
    let method_id = world
        .register_email("carol", "Lighthouse-Cobalt-Fern-17", "carol@example.com")
        .await
        .expect("register an email method");
    let mut client = world.reset();
    let started = client
        .start_reset(reset::StartResetRequest {
            user_id: "carol".into(),
            locale: "en".into(),
            ..Default::default()
        })
        .await
        .expect("start")
        .into_inner();
    assert_eq!(started.methods[0].kind, MethodKind::Email as i32);
    let code = world
        .send_reset_code(&started.session_id, &method_id, "carol@example.com")
        .await
        .expect("a code is delivered through SSPR_DELIVERY");
    client
        .verify_code(reset::VerifyCodeRequest {
            session_id: started.session_id.clone(),
            method_id,
            code,
        })
        .await
        .expect("verify");
    client
        .complete_reset(reset::CompleteResetRequest {
            session_id: started.session_id.clone(),
            new_password: "Tangerine-Orbit-Walrus-42".into(),
        })
        .await
        .expect("complete");
    // The password-changed notice: notification consumes password.changed and asks enrolment
    // and directory for the user's methods.
    world
        .mail_to("carol@example.com", 2)
        .await
        .expect("the password-changed notice");
    world.stop().await;
    // No service was refused anything along the way (consumers, events, rpc, replies).
    let log = nats.log_text();
    let refused: Vec<&str> = log.lines().filter(|l| l.contains("Violation")).collect();
    assert!(
        refused.is_empty(),
        "permission violations:\n{}",
        refused.join("\n")
    );
}

/// Every durable consumer `sspr provision` creates is granted to its service and kept from the
/// events reader (a new consumer added to a service without a grant here would be refused in
/// production).
#[test]
fn every_durable_consumer_is_granted_to_its_service_and_kept_from_readers() {
    let config = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats/nats-server.conf"),
    )
    .expect("deploy/nats/nats-server.conf");
    for (stream, consumer) in sspr_cli::provision::durable_consumers() {
        let durable = consumer.durable_name.unwrap_or_default();
        for grant in [
            format!("\"$JS.API.CONSUMER.CREATE.{stream}.{durable}.>\""),
            format!("\"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}\""),
            format!("\"$JS.ACK.{stream}.{durable}.>\""),
        ] {
            assert!(config.contains(&grant), "{grant} is not granted");
        }
        if stream == subjects::EVENTS_STREAM {
            let deny = format!("\"$JS.API.CONSUMER.*.SSPR_EVENTS.{durable}\"");
            assert!(
                config.contains(&deny),
                "events-reader is not denied {durable}"
            );
        }
    }
}

fn bytes_of(s: &str) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(s.as_bytes())
}

/// Every rpc subject a service's code names (`<service>::<CONST>` of `sspr_bus::subjects::rpc`)
/// is granted to that service in the shipped config: a call added without its grant would be
/// refused in production, and this names it.
#[test]
fn every_rpc_subject_a_service_calls_is_granted_to_it() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let config =
        std::fs::read_to_string(root.join("deploy/nats/nats-server.conf")).expect("config");
    let subjects = rpc_subjects(
        &std::fs::read_to_string(root.join("crates/bus/src/subjects.rs")).expect("subjects.rs"),
    );
    assert!(
        subjects.len() > 40,
        "parsed only {} rpc subjects",
        subjects.len()
    );
    let mut missing = Vec::new();
    for service in [
        "gateway",
        "policy",
        "enrolment",
        "verification",
        "notification",
        "directory",
        "audit",
    ] {
        let block = permission_block(&config, service);
        let mut code = String::new();
        read_sources(&root.join("services").join(service).join("src"), &mut code);
        for (target, name, subject) in &subjects {
            let named = code.contains(&format!("{target}::{name}"))
                || (code.contains(&format!("subjects::rpc::{target} as subject"))
                    && code.contains(&format!("subject::{name}")));
            if named && target != service && !block.contains(&format!("\"{subject}\"")) {
                missing.push(format!("{service} calls {subject}"));
            }
        }
    }
    assert!(missing.is_empty(), "not granted:\n{}", missing.join("\n"));
}

/// (service, CONST, subject) for each constant of `pub mod rpc`.
fn rpc_subjects(text: &str) -> Vec<(String, String, String)> {
    let rpc = &text[text.find("pub mod rpc").expect("pub mod rpc")..];
    let mut out = Vec::new();
    let mut module = String::new();
    let mut rest = rpc;
    while let Some(at) = rest.find("pub ") {
        rest = &rest[at + 4..];
        if let Some(m) = rest.strip_prefix("mod ") {
            module = m.split_whitespace().next().unwrap_or_default().to_owned();
        } else if let Some(c) = rest.strip_prefix("const ") {
            let name = c.split(':').next().unwrap_or_default().trim().to_owned();
            let value = c.split('"').nth(1).unwrap_or_default().to_owned();
            if name != "SERVICE" && value.starts_with("sspr.rpc.") {
                out.push((module.clone(), name, value));
            }
        }
    }
    out
}

/// The text of `NAME = { ... }` for a service in the config.
fn permission_block(config: &str, service: &str) -> String {
    let start = config
        .find(&format!("\n  {} = {{", service.to_uppercase()))
        .unwrap_or_else(|| panic!("no permission block for {service}"));
    let end = config[start + 1..]
        .find("\n  }")
        .map_or(config.len(), |e| start + 1 + e);
    config[start..end].to_owned()
}

fn read_sources(dir: &std::path::Path, into: &mut String) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            read_sources(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push_str(&std::fs::read_to_string(&path).expect("read source"));
        }
    }
}
