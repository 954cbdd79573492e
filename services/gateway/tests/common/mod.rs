//! Test harness: a private nats-server, stand-in internal services on the real NATS subjects,
//! and the gateway itself on 127.0.0.1:0, reached by the generated tonic clients.
//!
//! The stand-ins are real `sspr_bus::Router` services (same queue groups, same error headers as
//! the real ones) that record every request body they receive and answer with canned replies,
//! or with a refusal set by the test. Everything is torn down when [`Gateway`] is dropped.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use prost::Message;
use sspr_bus::subjects::rpc::{audit, directory, enrolment, policy, verification};
use sspr_bus::{Bus, BusConfig, Router, RpcError};
use sspr_proto::admin::v1 as admin;
use sspr_proto::admin::v1::admin_client::AdminClient;
use sspr_proto::common::v1::{ContactMethod, MethodKind};
use sspr_proto::internal::audit::v1 as aud;
use sspr_proto::internal::directory::v1 as dir;
use sspr_proto::internal::enrolment::v1 as enr;
use sspr_proto::internal::policy::v1 as pol;
use sspr_proto::internal::verification::v1 as ver;
use sspr_proto::registration::v1::registration_client::RegistrationClient;
use sspr_proto::reset::v1::password_reset_client::PasswordResetClient;
use sspr_testkit::NatsServer;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
/// A named admin token (admin id `alice`, role admin).
pub const ALICE_TOKEN: &str = "test-alice-token-0123456789";
/// A named helpdesk token (admin id `hd-bob`, role helpdesk).
pub const HELPDESK_TOKEN: &str = "test-helpdesk-token-0123456789";

/// Every subject a stand-in answers.
pub const SUBJECTS: [&str; 15] = [
    verification::START_RESET,
    verification::SEND_CODE,
    verification::VERIFY_CODE,
    verification::COMPLETE_RESET,
    enrolment::BEGIN_REGISTRATION,
    enrolment::ADD_METHOD,
    enrolment::CONFIRM_METHOD,
    policy::GET_POLICY,
    policy::SET_POLICY,
    policy::GET_PASSWORD_POLICY,
    policy::SET_PASSWORD_POLICY,
    policy::PREVIEW,
    directory::UPSERT_USER,
    directory::DELETE_USER,
    audit::LIST_EVENTS,
];

pub fn ts(seconds: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos: 0 }
}

pub fn masked_email() -> ContactMethod {
    ContactMethod {
        method_id: "m-email-1".into(),
        kind: MethodKind::Email as i32,
        masked_destination: "a•••@e•••.com".into(),
    }
}

/// What the stand-ins received, and the refusals they should answer with.
#[derive(Default)]
pub struct Recorder {
    calls: Mutex<Vec<(String, Vec<u8>)>>,
    failures: Mutex<HashMap<String, RpcError>>,
    delays: Mutex<HashMap<String, Duration>>,
    contexts: Mutex<Vec<Seen>>,
}

/// What a stand-in saw of a request besides its body.
#[derive(Debug, Clone)]
pub struct Seen {
    pub subject: String,
    /// The budget left when the stand-in got the request (from `Sspr-Deadline-Ms`).
    pub budget: Option<Duration>,
    /// `Sspr-Request-Id`.
    pub request_id: Option<String>,
}

impl Recorder {
    fn record(&self, subject: &str, body: Vec<u8>) {
        self.calls.lock().unwrap().push((subject.to_owned(), body));
    }

    fn failure(&self, subject: &str) -> Option<RpcError> {
        self.failures.lock().unwrap().get(subject).cloned()
    }

    /// Makes the stand-in on `subject` refuse every request with `error`.
    pub fn fail(&self, subject: &str, error: RpcError) {
        self.failures
            .lock()
            .unwrap()
            .insert(subject.to_owned(), error);
    }

    /// Makes the stand-in on `subject` wait `delay` before answering.
    pub fn delay(&self, subject: &str, delay: Duration) {
        self.delays
            .lock()
            .unwrap()
            .insert(subject.to_owned(), delay);
    }

    fn delay_of(&self, subject: &str) -> Option<Duration> {
        self.delays.lock().unwrap().get(subject).copied()
    }

    /// What the stand-ins saw of each request besides its body, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.contexts.lock().unwrap().clone()
    }

    /// The requests received on `subject`, decoded.
    pub fn calls<M: Message + Default>(&self, subject: &str) -> Vec<M> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, _)| s == subject)
            .map(|(_, body)| M::decode(body.as_slice()).expect("recorded body decodes"))
            .collect()
    }

    /// The only request received on `subject`.
    pub fn single<M: Message + Default>(&self, subject: &str) -> M {
        let mut calls = self.calls::<M>(subject);
        assert_eq!(calls.len(), 1, "expected exactly one call on {subject}");
        calls.remove(0)
    }

    /// How many requests the stand-ins received, on any subject.
    pub fn total(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    fn clear(&self) {
        self.calls.lock().unwrap().clear();
        self.contexts.lock().unwrap().clear();
    }
}

fn stand_in<Req, Resp>(
    router: Router,
    recorder: &Arc<Recorder>,
    subject: &'static str,
    answer: fn(Req) -> Resp,
) -> Router
where
    Req: Message + Default + 'static,
    Resp: Message + 'static,
{
    let recorder = Arc::clone(recorder);
    router.route(subject, move |ctx: sspr_bus::RequestContext, req: Req| {
        let recorder = Arc::clone(&recorder);
        async move {
            recorder.contexts.lock().unwrap().push(Seen {
                subject: subject.to_owned(),
                budget: ctx
                    .deadline
                    .map(|d| d.saturating_duration_since(tokio::time::Instant::now())),
                request_id: ctx.request_id.clone(),
            });
            recorder.record(subject, req.encode_to_vec());
            if let Some(delay) = recorder.delay_of(subject) {
                tokio::time::sleep(delay).await;
            }
            match recorder.failure(subject) {
                Some(error) => Err(error),
                None => Ok(answer(req)),
            }
        }
    })
}

fn verification_stand_in(recorder: &Arc<Recorder>) -> Router {
    let r = Router::new("verification", "stand-in verification service");
    let r = stand_in(
        r,
        recorder,
        verification::START_RESET,
        |req: ver::StartResetRequest| ver::StartResetResponse {
            session_id: format!("session-of-{}", req.user_id.len()),
            methods: vec![masked_email()],
            methods_required: 1,
            expires_at: Some(ts(1_900_000_000)),
            flow_id: "flow-0001".into(),
            ..Default::default()
        },
    );
    let r = stand_in(
        r,
        recorder,
        verification::SEND_CODE,
        |_: ver::SendCodeRequest| ver::SendCodeResponse {
            expires_at: Some(ts(1_900_000_600)),
            resend_after: Some(ts(1_900_000_060)),
        },
    );
    let r = stand_in(
        r,
        recorder,
        verification::VERIFY_CODE,
        |_: ver::VerifyCodeRequest| ver::VerifyCodeResponse {
            methods_remaining: 1,
            unlock_available: true,
        },
    );
    let r = stand_in(
        r,
        recorder,
        verification::GET_CODE_STATUS,
        |_: ver::GetCodeStatusRequest| ver::GetCodeStatusResponse {
            state: sspr_proto::reset::v1::CodeDeliveryState::Failed as i32,
            alternatives: vec![masked_email()],
        },
    );
    stand_in(
        r,
        recorder,
        verification::COMPLETE_RESET,
        |_: ver::CompleteResetRequest| ver::CompleteResetResponse::default(),
    )
}

fn enrolment_stand_in(recorder: &Arc<Recorder>) -> Router {
    let r = Router::new("enrolment", "stand-in enrolment service");
    let r = stand_in(
        r,
        recorder,
        enrolment::BEGIN_REGISTRATION,
        |_: enr::BeginRegistrationRequest| enr::BeginRegistrationResponse {
            session_id: "registration-session".into(),
            methods_required: 2,
            allowed_kinds: vec![MethodKind::Email as i32, MethodKind::Sms as i32],
            registered: vec![masked_email()],
            registration_required: true,
            expires_at: Some(ts(1_900_000_900)),
            reconfirm_required: false,
            ..Default::default()
        },
    );
    let r = stand_in(
        r,
        recorder,
        enrolment::GET_STATUS,
        |_: enr::GetStatusRequest| enr::GetStatusResponse {
            registration_required: true,
            reconfirm_required: true,
            methods_required: 2,
            methods_registered: 2,
            eligible: true,
        },
    );
    let r = stand_in(
        r,
        recorder,
        enrolment::LIST_OWN_METHODS,
        |_: enr::ListOwnMethodsRequest| enr::ListOwnMethodsResponse {
            methods: vec![masked_email()],
        },
    );
    let r = stand_in(
        r,
        recorder,
        enrolment::REMOVE_METHOD,
        |_: enr::RemoveMethodRequest| enr::RemoveMethodResponse {},
    );
    let r = stand_in(
        r,
        recorder,
        enrolment::ADD_METHOD,
        |_: enr::AddMethodRequest| enr::AddMethodResponse {
            method_id: "m-sms-2".into(),
            expires_at: Some(ts(1_900_000_600)),
        },
    );
    stand_in(
        r,
        recorder,
        enrolment::CONFIRM_METHOD,
        |_: enr::ConfirmMethodRequest| enr::ConfirmMethodResponse {
            registration_complete: true,
        },
    )
}

pub fn canned_policy() -> admin::Policy {
    admin::Policy {
        scope: admin::Scope::Selected as i32,
        group_ids: vec!["staff".into()],
        methods_required: 2,
        allowed_methods: vec![MethodKind::Email as i32, MethodKind::Sms as i32],
        version: 7,
        reconfirm_after_days: 90,
        ..Default::default()
    }
}

fn policy_stand_in(recorder: &Arc<Recorder>) -> Router {
    let r = Router::new("policy", "stand-in policy service");
    let r = stand_in(
        r,
        recorder,
        policy::GET_POLICY,
        |_: pol::GetPolicyRequest| pol::GetPolicyResponse {
            policy: Some(canned_policy()),
        },
    );
    let r = stand_in(
        r,
        recorder,
        policy::SET_POLICY,
        |req: pol::SetPolicyRequest| {
            let mut policy = req.policy.unwrap_or_default();
            policy.version = 8;
            pol::SetPolicyResponse {
                policy: Some(policy),
            }
        },
    );
    let r = stand_in(r, recorder, policy::PREVIEW, |_: pol::PreviewRequest| {
        pol::PreviewResponse {
            users_total: 3,
            users_able: 1,
            users_unable: 2,
            unable: vec![admin::PreviewedUser {
                user_id: "bob".into(),
                display_name: "Bob".into(),
                is_admin: true,
                reason: "not_enough_methods".into(),
                usable_methods: 1,
                methods_required: 2,
            }],
            next_page_token: "next-page_1".into(),
        }
    });
    let r = stand_in(
        r,
        recorder,
        policy::GET_PASSWORD_POLICY,
        |_: pol::GetPasswordPolicyRequest| pol::GetPasswordPolicyResponse {
            policy: Some(canned_password_policy()),
        },
    );
    stand_in(
        r,
        recorder,
        policy::SET_PASSWORD_POLICY,
        |req: pol::SetPasswordPolicyRequest| {
            let mut policy = req.policy.unwrap_or_default();
            policy.version = 4;
            policy.max_length = 256;
            pol::SetPasswordPolicyResponse {
                policy: Some(policy),
            }
        },
    )
}

pub fn canned_password_policy() -> pol::PasswordPolicy {
    pol::PasswordPolicy {
        min_length: 10,
        custom_banned_terms: vec!["contoso".into(), "quokka".into()],
        organisation_name: "Contoso Ltd".into(),
        history_count: 3,
        version: 3,
        max_length: 256,
    }
}

fn directory_stand_in(recorder: &Arc<Recorder>) -> Router {
    let r = Router::new("directory", "stand-in directory service");
    let r = stand_in(
        r,
        recorder,
        directory::UPSERT_USER,
        |req: dir::UpsertUserRequest| dir::UpsertUserResponse {
            user: Some(dir::UserRecord {
                user_id: req.user_id,
                display_name: req.display_name,
                locale: req.locale,
                group_ids: req.group_ids,
                is_admin: req.is_admin,
                enabled: req.enabled.unwrap_or(true),
                has_password: !req.password.is_empty(),
                locked: req.locked.unwrap_or(false),
                ..Default::default()
            }),
        },
    );
    stand_in(
        r,
        recorder,
        directory::DELETE_USER,
        |_: dir::DeleteUserRequest| dir::DeleteUserResponse {},
    )
}

/// The audit record every `list_events` stand-in answer carries.
pub fn canned_audit_record() -> aud::AuditRecord {
    aud::AuditRecord {
        event_id: "0192-event".into(),
        occurred_at: Some(ts(1_700_000_000)),
        kind: "reset.completed".into(),
        user_id: "alice".into(),
        flow_id: "flow-1".into(),
        actor: "alice".into(),
        outcome: "ok".into(),
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        source: "verification".into(),
        summary_json: "{\"verified_method_ids\":[\"m1\"]}".into(),
    }
}

fn audit_stand_in(recorder: &Arc<Recorder>) -> Router {
    stand_in(
        Router::new("audit", "stand-in audit service"),
        recorder,
        audit::LIST_EVENTS,
        |_: aud::ListEventsRequest| aud::ListEventsResponse {
            records: vec![canned_audit_record()],
            next_page_token: "next-page".into(),
        },
    )
}

/// Installs the real telemetry stack once per test binary: logs, and the OpenTelemetry layer
/// whose trace context the bus injects into NATS headers.
pub fn init_telemetry() {
    static TELEMETRY: OnceLock<sspr_telemetry::Telemetry> = OnceLock::new();
    TELEMETRY.get_or_init(|| sspr_telemetry::init("sspr-gateway-test").expect("telemetry"));
}

/// How to start the harness.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Start the stand-in services (false: nobody answers on the internal subjects).
    pub stand_ins: bool,
    pub trusted_proxy_hops: usize,
    /// `Config::max_in_flight` of the gateway.
    pub max_in_flight: usize,
    /// In-flight limit of each stand-in service (`None`: the bus default).
    pub stand_in_max_in_flight: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            stand_ins: true,
            trusted_proxy_hops: 0,
            max_in_flight: sspr_gateway::DEFAULT_MAX_IN_FLIGHT,
            stand_in_max_in_flight: None,
        }
    }
}

/// A running gateway with its NATS server and stand-ins; everything stops on drop.
pub struct Gateway {
    pub nats: NatsServer,
    /// A bus connection of the test itself (also used by the stand-ins).
    pub bus: Bus,
    pub addr: SocketAddr,
    pub recorder: Arc<Recorder>,
    pub shutdown: CancellationToken,
    pub server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    channel: Channel,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn connect_bus(nats: &NatsServer, name: &str) -> Bus {
    let mut config = BusConfig::new(nats.url(), name);
    config.request_timeout = Duration::from_secs(5);
    Bus::connect(&config).await.expect("connect to nats")
}

impl Gateway {
    pub async fn start() -> Gateway {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Gateway {
        init_telemetry();
        let nats = NatsServer::start().await.expect("start nats-server");
        let bus = connect_bus(&nats, "gateway-test").await;
        let recorder = Arc::new(Recorder::default());
        let shutdown = CancellationToken::new();

        if options.stand_ins {
            for router in [
                verification_stand_in(&recorder),
                enrolment_stand_in(&recorder),
                policy_stand_in(&recorder),
                directory_stand_in(&recorder),
                audit_stand_in(&recorder),
            ] {
                let router = match options.stand_in_max_in_flight {
                    Some(n) => router.max_in_flight(n),
                    None => router,
                };
                let bus = bus.clone();
                let token = shutdown.clone();
                tokio::spawn(async move {
                    sspr_bus::serve(&bus, router, token.cancelled_owned())
                        .await
                        .expect("stand-in serves");
                });
            }
            wait_for_stand_ins(&bus).await;
            recorder.clear();
        }

        let config = sspr_gateway::Config {
            grpc_addr: "127.0.0.1:0".parse().unwrap(),
            admin_tokens: sspr_gateway::admin_tokens(
                Some(ADMIN_TOKEN.to_owned()),
                Some(format!(
                    "alice:admin:{ALICE_TOKEN}, hd-bob:helpdesk:{HELPDESK_TOKEN}"
                )),
                None,
            )
            .expect("valid admin tokens"),
            trusted_proxy_hops: options.trusted_proxy_hops,
            challenge: None,
            tls: None,
            max_in_flight: options.max_in_flight,
        };
        let gateway_bus = connect_bus(&nats, "sspr-gateway").await;
        let (addr, serve) = sspr_gateway::bind(gateway_bus, config, shutdown.clone())
            .await
            .expect("bind the gateway");
        let server = tokio::spawn(serve);
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .expect("connect to the gateway");
        Gateway {
            nats,
            bus,
            addr,
            recorder,
            shutdown,
            server: Some(server),
            channel,
        }
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    pub fn reset(&self) -> PasswordResetClient<Channel> {
        PasswordResetClient::new(self.channel())
    }

    pub fn registration(&self) -> RegistrationClient<Channel> {
        RegistrationClient::new(self.channel())
    }

    pub fn admin(&self) -> AdminClient<Channel> {
        AdminClient::new(self.channel())
    }
}

/// Waits until every stand-in subject has a responder (the endpoints subscribe asynchronously).
async fn wait_for_stand_ins(bus: &Bus) {
    for subject in SUBJECTS {
        let mut tries = 0;
        while bus
            .client()
            .request(subject, Default::default())
            .await
            .is_err()
        {
            tries += 1;
            assert!(tries < 200, "stand-in on {subject} never answered");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// A request carrying `authorization: Bearer <token>`.
pub fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// A request carrying the right admin token.
pub fn as_admin<T>(message: T) -> tonic::Request<T> {
    with_token(message, ADMIN_TOKEN)
}
