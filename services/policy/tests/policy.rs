//! The policy service end to end over NATS: a private nats-server with JetStream, a fresh
//! `sspr_testkit::TestDb` per backend (SQLite always, PostgreSQL too when
//! `SSPR_TEST_POSTGRES_URL` is set), the service's `run` in a task, and requests through
//! `Bus::request` exactly as other services send them.

use std::time::{Duration, Instant};

use futures::StreamExt;
use prost::Message;
use sspr_bus::subjects::{EVENTS_STREAM, events, rpc::policy as rpc};
use sspr_bus::{Bus, BusConfig, BusError, ErrorCode};
use sspr_proto::admin::v1::{Policy, Scope};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::events::v1::PolicyChanged;
use sspr_proto::internal::policy::v1::{
    CheckPasswordRequest, CheckPasswordResponse, EvaluateRequest, EvaluateResponse,
    GetPasswordPolicyRequest, GetPasswordPolicyResponse, GetPolicyRequest, GetPolicyResponse,
    PasswordPolicy, SetPasswordPolicyRequest, SetPasswordPolicyResponse, SetPolicyRequest,
    SetPolicyResponse,
};
use sspr_testkit::{NatsServer, TestDb};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const EMAIL: i32 = MethodKind::Email as i32;
const SMS: i32 = MethodKind::Sms as i32;
/// How long to wait for events the outbox relay has yet to publish.
const SETTLE: Duration = Duration::from_secs(15);

/// The policy service running in a task against a private nats-server.
struct Running {
    token: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn stop(self) {
        self.token.cancel();
        let result = tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("run returns after shutdown")
            .expect("run task did not panic");
        result.expect("run ends cleanly");
    }
}

async fn start_policy(nats: &NatsServer, db: &TestDb) -> Running {
    let bus = Bus::connect(&BusConfig::new(nats.url(), "sspr-policy"))
        .await
        .expect("service bus");
    let conn = sspr_storage::connect(sspr_policy::SERVICE, &db.settings())
        .await
        .expect("database");
    let ctx = sspr_runtime::ServiceContext {
        bus,
        db: conn,
        clock: sspr_clock::system(),
    };
    let token = CancellationToken::new();
    let config = sspr_policy::Config::from_env().expect("config");
    let task = tokio::spawn(sspr_policy::run(ctx, config, token.clone()));
    Running { token, task }
}

async fn client(nats: &NatsServer) -> Bus {
    Bus::connect(&BusConfig::new(nats.url(), "policy-test"))
        .await
        .expect("client bus")
}

/// Waits until the service answers (it starts serving after migrations and stream setup).
async fn wait_ready(bus: &Bus) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match bus
            .request::<_, GetPolicyResponse>(rpc::GET_POLICY, &GetPolicyRequest {})
            .await
        {
            Ok(_) => return,
            Err(BusError::NoResponders(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("policy service did not come up: {e}"),
        }
    }
}

struct Fixture {
    nats: NatsServer,
    db: TestDb,
    bus: Bus,
    service: Running,
}

impl Fixture {
    /// `sqlite` or `postgres`, for assertion messages.
    fn backend(&self) -> &'static str {
        self.db.backend()
    }

    async fn stop(self) {
        self.service.stop().await;
        let backend = self.db.backend();
        self.db
            .cleanup()
            .await
            .unwrap_or_else(|e| panic!("cleaning up the {backend} database: {e:#}"));
    }
}

async fn fixture_on(db: TestDb) -> Fixture {
    sspr_testkit::init_test_tracing();
    let nats = NatsServer::start().await.expect("nats-server");
    let service = start_policy(&nats, &db).await;
    let bus = client(&nats).await;
    wait_ready(&bus).await;
    Fixture {
        nats,
        db,
        bus,
        service,
    }
}

/// Every backend to run a test on: SQLite, and PostgreSQL when `SSPR_TEST_POSTGRES_URL` is set.
async fn backends() -> Vec<TestDb> {
    TestDb::all().await.expect("test databases")
}

/// Runs `body` once per backend, each time on a fresh nats-server, database and service.
async fn on_every_backend(body: impl AsyncFn(&Fixture)) {
    for db in backends().await {
        let f = fixture_on(db).await;
        eprintln!("on {}", f.backend());
        body(&f).await;
        f.stop().await;
    }
}

async fn get(bus: &Bus) -> Policy {
    bus.request::<_, GetPolicyResponse>(rpc::GET_POLICY, &GetPolicyRequest {})
        .await
        .expect("get_policy")
        .policy
        .expect("a policy")
}

async fn set(bus: &Bus, policy: Policy) -> Result<Policy, BusError> {
    bus.request::<_, SetPolicyResponse>(
        rpc::SET_POLICY,
        &SetPolicyRequest {
            policy: Some(policy),
            actor: "alice".into(),
        },
    )
    .await
    .map(|r| r.policy.expect("a policy"))
}

fn policy(scope: Scope, groups: &[&str], required: u32, methods: &[i32]) -> Policy {
    Policy {
        scope: scope as i32,
        group_ids: groups.iter().map(|g| (*g).to_owned()).collect(),
        methods_required: required,
        allowed_methods: methods.to_vec(),
        version: 0,
        reconfirm_after_days: 0,
        ..Default::default()
    }
}

async fn evaluate(
    bus: &Bus,
    user: &str,
    groups: &[&str],
    is_admin: bool,
    enabled: bool,
) -> EvaluateResponse {
    bus.request(
        rpc::EVALUATE,
        &EvaluateRequest {
            user_id: user.to_owned(),
            group_ids: groups.iter().map(|g| (*g).to_owned()).collect(),
            is_admin,
            enabled,
        },
    )
    .await
    .expect("evaluate")
}

/// Every message on `subject` in SSPR_EVENTS, waiting up to `wait` until there are `expected`.
async fn events_on(
    bus: &Bus,
    subject: &str,
    expected: usize,
    wait: Duration,
) -> Vec<async_nats::jetstream::Message> {
    use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
    let stream = bus
        .jetstream()
        .get_stream(EVENTS_STREAM)
        .await
        .expect("SSPR_EVENTS exists");
    let consumer = stream
        .create_consumer(pull::Config {
            filter_subject: subject.to_owned(),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut got = Vec::new();
    let deadline = Instant::now() + wait;
    while got.len() < expected && Instant::now() < deadline {
        let mut batch = consumer
            .fetch()
            .max_messages(expected - got.len())
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .expect("fetch");
        while let Some(msg) = batch.next().await {
            got.push(msg.expect("message"));
        }
    }
    got
}

fn rpc_error<T: std::fmt::Debug>(result: Result<T, BusError>) -> (ErrorCode, String) {
    match result {
        Err(BusError::Rpc(e)) => (e.code, e.message),
        other => panic!("expected an RPC error, got {other:?}"),
    }
}

#[tokio::test]
async fn default_policy_until_one_is_set() {
    on_every_backend(async |f| {
        let p = get(&f.bus).await;
        assert_eq!(p.scope, Scope::None as i32);
        assert_eq!(p.methods_required, 1);
        assert_eq!(p.allowed_methods, vec![EMAIL, SMS]);
        assert!(p.group_ids.is_empty());
        assert_eq!(p.version, 0);
    })
    .await;
}

#[tokio::test]
async fn set_then_get_bumps_version_and_emits_policy_changed() {
    on_every_backend(async |f| {
        let stored = set(
            &f.bus,
            policy(Scope::Selected, &["staff", "ops"], 2, &[SMS]),
        )
        .await
        .expect("set");
        assert_eq!(stored.version, 1);
        assert_eq!(stored.scope, Scope::Selected as i32);
        assert_eq!(stored.group_ids, vec!["staff", "ops"]);
        assert_eq!(stored.methods_required, 2);
        assert_eq!(stored.allowed_methods, vec![SMS]);
        assert_eq!(get(&f.bus).await, stored);

        // The version the caller sends is ignored: the store assigns the next one.
        let mut second = policy(Scope::All, &[], 1, &[EMAIL, SMS]);
        second.version = 42;
        let second = set(&f.bus, second).await.expect("set again");
        assert_eq!(second.version, 2);
        assert_eq!(get(&f.bus).await, second);

        let messages = events_on(&f.bus, events::POLICY_CHANGED, 2, SETTLE).await;
        assert_eq!(messages.len(), 2, "one policy.changed per set_policy");
        for (msg, expected) in messages.iter().zip([&stored, &second]) {
            let event = PolicyChanged::decode(msg.payload.clone()).expect("PolicyChanged");
            let meta = event.meta.expect("meta");
            assert_eq!(meta.source, "policy");
            assert_eq!(meta.actor, "alice", "the admin who made the change");
            assert!(meta.user_id.is_empty());
            assert!(meta.occurred_at.is_some());
            assert!(uuid::Uuid::parse_str(&meta.event_id).is_ok());
            let headers = msg.headers.as_ref().expect("headers");
            assert_eq!(
                headers.get("Nats-Msg-Id").map(|v| v.as_str()),
                Some(meta.event_id.as_str())
            );
            assert_eq!(event.policy.as_ref(), Some(expected));
        }
    })
    .await;
}

#[tokio::test]
async fn invalid_policies_are_refused_with_the_field_named() {
    on_every_backend(async |f| {
        let cases: Vec<(Policy, &str)> = vec![
            (policy(Scope::Unspecified, &[], 1, &[EMAIL]), "policy.scope"),
            (
                Policy {
                    scope: 17,
                    ..policy(Scope::All, &[], 1, &[EMAIL])
                },
                "policy.scope",
            ),
            (
                policy(Scope::Selected, &[], 1, &[EMAIL]),
                "policy.group_ids",
            ),
            (
                policy(Scope::Selected, &["ok", "not ok"], 1, &[EMAIL]),
                "policy.group_ids[1]",
            ),
            (
                policy(Scope::Selected, &["a", "a"], 1, &[EMAIL]),
                "policy.group_ids[1]",
            ),
            (
                policy(Scope::All, &[], 0, &[EMAIL]),
                "policy.methods_required",
            ),
            (
                policy(Scope::All, &[], 3, &[EMAIL]),
                "policy.methods_required",
            ),
            (policy(Scope::All, &[], 1, &[]), "policy.allowed_methods"),
            (
                policy(Scope::All, &[], 1, &[EMAIL, 0]),
                "policy.allowed_methods[1]",
            ),
            (
                policy(Scope::All, &[], 1, &[EMAIL, 9]),
                "policy.allowed_methods[1]",
            ),
            (
                policy(Scope::All, &[], 1, &[SMS, SMS]),
                "policy.allowed_methods[1]",
            ),
            (
                Policy {
                    reconfirm_after_days: 731,
                    ..policy(Scope::All, &[], 1, &[EMAIL])
                },
                "policy.reconfirm_after_days",
            ),
        ];
        let too_many: Vec<String> = (0..101).map(|i| format!("g{i}")).collect();
        let too_many = Policy {
            group_ids: too_many,
            ..policy(Scope::Selected, &[], 1, &[EMAIL])
        };
        for (bad, field) in cases.into_iter().chain([(too_many, "policy.group_ids")]) {
            let (code, message) = rpc_error(set(&f.bus, bad.clone()).await);
            assert_eq!(code, ErrorCode::InvalidArgument, "{bad:?}");
            assert!(
                message.starts_with(field),
                "{message:?} should name {field}"
            );
        }
        let missing = f
            .bus
            .request::<_, SetPolicyResponse>(
                rpc::SET_POLICY,
                &SetPolicyRequest {
                    policy: None,
                    actor: String::new(),
                },
            )
            .await
            .map(|r| r.policy.unwrap_or_default());
        assert_eq!(rpc_error(missing).0, ErrorCode::InvalidArgument);

        // Nothing was stored and nothing announced.
        assert_eq!(get(&f.bus).await.version, 0);
        assert!(
            events_on(&f.bus, events::POLICY_CHANGED, 1, Duration::from_secs(2))
                .await
                .is_empty()
        );
    })
    .await;
}

#[tokio::test]
async fn evaluate_applies_scope_admin_rule_and_enabled_flag() {
    on_every_backend(async |f| {
        // Default policy: scope NONE.
        let e = evaluate(&f.bus, "alice", &["staff"], false, true).await;
        assert!(!e.eligible);
        assert_eq!(e.methods_required, 1);
        assert_eq!(e.allowed_methods, vec![EMAIL, SMS]);

        set(&f.bus, policy(Scope::Selected, &["staff"], 1, &[EMAIL]))
            .await
            .expect("set");
        let member = evaluate(&f.bus, "alice", &["other", "staff"], false, true).await;
        assert!(member.eligible);
        assert_eq!(member.methods_required, 1);
        assert_eq!(member.allowed_methods, vec![EMAIL]);
        assert!(
            !evaluate(&f.bus, "bob", &["other"], false, true)
                .await
                .eligible
        );
        assert!(
            !evaluate(&f.bus, "carol", &["staff"], false, false)
                .await
                .eligible
        );
        let admin = evaluate(&f.bus, "root", &["staff"], true, true).await;
        assert!(admin.eligible);
        assert_eq!(admin.methods_required, 2);

        set(&f.bus, policy(Scope::All, &[], 1, &[EMAIL, SMS]))
            .await
            .expect("set");
        assert!(evaluate(&f.bus, "bob", &[], false, true).await.eligible);
        assert!(!evaluate(&f.bus, "bob", &[], false, false).await.eligible);
        assert_eq!(
            evaluate(&f.bus, "root", &[], true, true)
                .await
                .methods_required,
            2
        );
    })
    .await;
}

async fn check(bus: &Bus, password: &str) -> CheckPasswordResponse {
    bus.request::<_, CheckPasswordResponse>(
        rpc::CHECK_PASSWORD,
        &CheckPasswordRequest {
            password: password.to_owned(),
            user_id: "alice".to_owned(),
            display_name: "Alice Example".to_owned(),
        },
    )
    .await
    .expect("check_password")
}

fn rules_of(r: &CheckPasswordResponse) -> Vec<&str> {
    r.violations.iter().map(|v| v.rule.as_str()).collect()
}

async fn get_password_policy(bus: &Bus) -> PasswordPolicy {
    bus.request::<_, GetPasswordPolicyResponse>(
        sspr_bus::subjects::rpc::policy::GET_PASSWORD_POLICY,
        &GetPasswordPolicyRequest {},
    )
    .await
    .expect("get_password_policy")
    .policy
    .expect("a password policy")
}

async fn set_password_policy(
    bus: &Bus,
    policy: Option<PasswordPolicy>,
) -> Result<PasswordPolicy, BusError> {
    bus.request::<_, SetPasswordPolicyResponse>(
        sspr_bus::subjects::rpc::policy::SET_PASSWORD_POLICY,
        &SetPasswordPolicyRequest {
            policy,
            actor: "alice".into(),
        },
    )
    .await
    .map(|r| r.policy.expect("a password policy"))
}

fn password_policy(min: u32, terms: &[&str], organisation: &str, history: u32) -> PasswordPolicy {
    PasswordPolicy {
        min_length: min,
        custom_banned_terms: terms.iter().map(|t| (*t).to_owned()).collect(),
        organisation_name: organisation.to_owned(),
        history_count: history,
        version: 0,
        max_length: 0,
    }
}

#[tokio::test]
async fn check_password_over_nats() {
    // Default password policy; no storage written: SQLite is enough.
    let f = fixture_on(TestDb::sqlite().expect("sqlite test db")).await;
    let ok = check(&f.bus, "correct horse battery staple").await;
    assert!(ok.accepted);
    assert!(ok.violations.is_empty());
    assert_eq!(ok.strength, 4);
    assert_eq!(ok.crack_time, "centuries");
    assert_eq!(ok.history_count, 0);
    let estimate = ok.estimate.expect("full estimate");
    assert_eq!(estimate.score, 4);
    assert!(estimate.guesses_log10 >= 10.0);
    assert!(estimate.suggestions.is_empty());
    let weak = check(&f.bus, "password").await.estimate.expect("estimate");
    assert_eq!(weak.score, 0);
    assert!(!weak.suggestions.is_empty());

    // Only the length is reported for a too-short password.
    let short = check(&f.bus, "Alice1").await;
    assert!(!short.accepted);
    assert_eq!(rules_of(&short), vec!["too_short"]);
    assert_eq!(short.violations[0].message, "must be at least 8 characters");

    for banned in ["password", "P@ssw0rd", "passwprd", "qpasswordqq"] {
        let r = check(&f.bus, banned).await;
        assert!(!r.accepted, "{banned}");
        assert_eq!(
            rules_of(&r),
            vec!["banned_password", "score_too_low"],
            "{banned}"
        );
        assert_eq!(
            r.violations[0].message,
            "must not be or contain a commonly used password"
        );
        assert!(r.strength <= 1, "{banned}");
    }
    assert!(check(&f.bus, "qqpasswordqq").await.accepted, "5 points");
    let name = check(&f.bus, "Alice!!!").await;
    assert_eq!(rules_of(&name), vec!["contains_name", "score_too_low"]);

    let long = check(&f.bus, &"x".repeat(257)).await;
    assert!(!long.accepted);
    assert_eq!(rules_of(&long), vec!["too_long"]);
    f.stop().await;
}

#[tokio::test]
async fn password_policy_defaults_set_get_and_announce() {
    on_every_backend(async |f| {
        let default = get_password_policy(&f.bus).await;
        assert_eq!(
            default,
            PasswordPolicy {
                max_length: 256,
                ..password_policy(8, &[], "", 0)
            }
        );

        let mut submitted = password_policy(12, &["Quokkaville", " blue falcon "], " Contoso ", 5);
        submitted.version = 99;
        submitted.max_length = 1;
        let stored = set_password_policy(&f.bus, Some(submitted))
            .await
            .expect("set_password_policy");
        assert_eq!(stored.version, 1, "the store assigns the version");
        assert_eq!(stored.min_length, 12);
        assert_eq!(
            stored.custom_banned_terms,
            vec!["Quokkaville", "blue falcon"]
        );
        assert_eq!(stored.organisation_name, "Contoso");
        assert_eq!(stored.history_count, 5);
        assert_eq!(stored.max_length, 256);
        assert_eq!(get_password_policy(&f.bus).await, stored);

        let second = set_password_policy(&f.bus, Some(password_policy(8, &[], "", 0)))
            .await
            .expect("set again");
        assert_eq!(second.version, 2);
        assert_eq!(get_password_policy(&f.bus).await, second);
        // The SSPR policy is untouched and keeps its own version.
        assert_eq!(get(&f.bus).await.version, 0);

        let messages = events_on(&f.bus, events::POLICY_CHANGED, 2, SETTLE).await;
        assert_eq!(
            messages.len(),
            2,
            "one policy.changed per set_password_policy"
        );
        for msg in &messages {
            let event = PolicyChanged::decode(msg.payload.clone()).expect("PolicyChanged");
            let meta = event.meta.expect("meta");
            assert_eq!(meta.source, "policy");
            assert!(uuid::Uuid::parse_str(&meta.event_id).is_ok());
            // The event carries the SSPR policy in force.
            assert_eq!(event.policy.expect("policy").version, 0);
        }
    })
    .await;
}

#[tokio::test]
async fn invalid_password_policies_are_refused_with_the_field_named() {
    on_every_backend(async |f| {
        let too_many: Vec<String> = (0..1001).map(|i| format!("term{i}")).collect();
        let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();
        let long_term = "y".repeat(65);
        let long_org = "o".repeat(257);
        let cases: Vec<(PasswordPolicy, &str)> = vec![
            (password_policy(0, &[], "", 0), "policy.min_length"),
            (password_policy(7, &[], "", 0), "policy.min_length"),
            (password_policy(257, &[], "", 0), "policy.min_length"),
            (
                password_policy(8, &too_many, "", 0),
                "policy.custom_banned_terms",
            ),
            (
                password_policy(8, &["fine", "abc"], "", 0),
                "policy.custom_banned_terms[1]",
            ),
            (
                password_policy(8, &[long_term.as_str()], "", 0),
                "policy.custom_banned_terms[0]",
            ),
            (
                password_policy(8, &["contoso", "C0NT0S0"], "", 0),
                "policy.custom_banned_terms[1]",
            ),
            (
                password_policy(8, &[], long_org.as_str(), 0),
                "policy.organisation_name",
            ),
            (
                password_policy(8, &[], "a\nb", 0),
                "policy.organisation_name",
            ),
            (password_policy(8, &[], "", 25), "policy.history_count"),
        ];
        for (bad, field) in cases {
            let (code, message) = rpc_error(set_password_policy(&f.bus, Some(bad.clone())).await);
            assert_eq!(code, ErrorCode::InvalidArgument, "{field}");
            assert!(
                message.starts_with(field),
                "{message:?} should name {field}"
            );
        }
        let (code, _) = rpc_error(set_password_policy(&f.bus, None).await);
        assert_eq!(code, ErrorCode::InvalidArgument);

        // Nothing was stored and nothing announced.
        assert_eq!(get_password_policy(&f.bus).await.version, 0);
        assert!(
            events_on(&f.bus, events::POLICY_CHANGED, 1, Duration::from_secs(2))
                .await
                .is_empty()
        );
    })
    .await;
}

#[tokio::test]
async fn check_password_applies_the_stored_password_policy() {
    on_every_backend(async |f| {
        // Before: accepted under the default policy.
        assert!(check(&f.bus, "quokkaville!").await.accepted);
        assert!(check(&f.bus, "C0nt0s0!!").await.accepted);
        assert!(check(&f.bus, "zq8!kx3#vw").await.accepted);

        set_password_policy(
            &f.bus,
            Some(password_policy(12, &["Quokkaville"], "Contoso", 3)),
        )
        .await
        .expect("set_password_policy");

        let custom = check(&f.bus, "Qu0kk@v1lle!").await;
        assert!(!custom.accepted);
        assert_eq!(rules_of(&custom), vec!["banned_term", "score_too_low"]);
        assert!(
            !custom.violations[0]
                .message
                .to_lowercase()
                .contains("quokka")
        );
        assert_eq!(custom.history_count, 3);

        // Contoso + "-" + dragon (a common password): 3 points.
        let org = check(&f.bus, "Contoso-dragon").await;
        assert!(!org.accepted);
        assert_eq!(
            rules_of(&org),
            vec!["banned_password", "contains_organisation", "score_too_low"]
        );
        // Contoso + 5 more characters: 6 points.
        assert!(check(&f.bus, "C0nt0s0!!123").await.accepted);

        let short = check(&f.bus, "zq8!kx3#vw").await;
        assert_eq!(rules_of(&short), vec!["too_short"]);
        assert_eq!(
            short.violations[0].message,
            "must be at least 12 characters"
        );

        let ok = check(&f.bus, "quokkas live on rottnest island").await;
        assert!(ok.accepted, "{ok:?}");
        assert_eq!(ok.history_count, 3);
    })
    .await;
}

#[tokio::test]
async fn concurrent_changes_get_distinct_versions_and_survive_a_restart() {
    for db in backends().await {
        let mut f = fixture_on(db).await;
        let backend = f.backend();
        eprintln!("on {backend}");
        let mut tasks = Vec::new();
        for i in 0..8u32 {
            let bus = f.bus.clone();
            tasks.push(tokio::spawn(async move {
                set(&bus, policy(Scope::All, &[], 1 + i % 2, &[EMAIL]))
                    .await
                    .expect("set")
                    .version
            }));
        }
        let mut versions = Vec::new();
        for t in tasks {
            versions.push(t.await.expect("task"));
        }
        versions.sort_unstable();
        assert_eq!(versions, (1..=8).collect::<Vec<u64>>(), "{backend}");
        assert_eq!(
            events_on(&f.bus, events::POLICY_CHANGED, 8, SETTLE)
                .await
                .len(),
            8,
            "{backend}"
        );

        let before = get(&f.bus).await;
        f.service.stop().await;
        f.service = start_policy(&f.nats, &f.db).await;
        wait_ready(&f.bus).await;
        assert_eq!(
            get(&f.bus).await,
            before,
            "{backend}: kept across a restart"
        );
        f.stop().await;
    }
}

#[tokio::test]
async fn reconfirm_after_days_is_stored_and_evaluated() {
    on_every_backend(async |f| {
        assert_eq!(get(&f.bus).await.reconfirm_after_days, 0);
        assert_eq!(
            evaluate(&f.bus, "alice", &[], false, true)
                .await
                .reconfirm_after_days,
            0
        );
        let stored = set(
            &f.bus,
            Policy {
                reconfirm_after_days: 730,
                ..policy(Scope::All, &[], 1, &[EMAIL])
            },
        )
        .await
        .expect("valid");
        assert_eq!(stored.reconfirm_after_days, 730);
        assert_eq!(get(&f.bus).await.reconfirm_after_days, 730);
        assert_eq!(
            evaluate(&f.bus, "alice", &[], false, true)
                .await
                .reconfirm_after_days,
            730
        );
    })
    .await;
}

#[tokio::test]
async fn destination_and_helpdesk_are_validated_stored_and_evaluated() {
    on_every_backend(async |f| {
        let current = get(&f.bus).await;
        assert!(!current.require_full_destination);
        assert_eq!(current.helpdesk_contact, "");
        let e = evaluate(&f.bus, "alice", &[], false, true).await;
        assert!(!e.require_full_destination);
        assert_eq!(e.helpdesk_contact, "");

        let (code, message) = rpc_error(
            set(
                &f.bus,
                Policy {
                    helpdesk_contact: "call\nus".into(),
                    ..policy(Scope::All, &[], 1, &[EMAIL])
                },
            )
            .await,
        );
        assert_eq!(code, ErrorCode::InvalidArgument);
        assert!(message.contains("policy.helpdesk_contact"), "{message}");
        assert!(
            set(
                &f.bus,
                Policy {
                    helpdesk_contact: "h".repeat(257),
                    ..policy(Scope::All, &[], 1, &[EMAIL])
                },
            )
            .await
            .is_err()
        );

        let stored = set(
            &f.bus,
            Policy {
                require_full_destination: true,
                helpdesk_contact: " https://help.example.com/reset ".into(),
                ..policy(Scope::All, &[], 1, &[EMAIL])
            },
        )
        .await
        .expect("valid");
        assert!(stored.require_full_destination);
        assert_eq!(stored.helpdesk_contact, "https://help.example.com/reset");
        let current = get(&f.bus).await;
        assert!(current.require_full_destination);
        assert_eq!(current.helpdesk_contact, "https://help.example.com/reset");
        // Policy-wide: the same for an ineligible account.
        let e = evaluate(&f.bus, "mallory", &[], false, false).await;
        assert!(e.require_full_destination);
        assert_eq!(e.helpdesk_contact, "https://help.example.com/reset");
    })
    .await;
}

/// The service with an explicit config, for the organisation's phone prefixes.
async fn fixture_with(db: TestDb, config: sspr_policy::Config) -> Fixture {
    sspr_testkit::init_test_tracing();
    let nats = NatsServer::start().await.expect("nats-server");
    let bus = Bus::connect(&BusConfig::new(nats.url(), "sspr-policy"))
        .await
        .expect("service bus");
    let conn = sspr_storage::connect(sspr_policy::SERVICE, &db.settings())
        .await
        .expect("database");
    let ctx = sspr_runtime::ServiceContext {
        bus,
        db: conn,
        clock: sspr_clock::system(),
    };
    let token = CancellationToken::new();
    let task = tokio::spawn(sspr_policy::run(ctx, config, token.clone()));
    let service = Running { token, task };
    let bus = client(&nats).await;
    wait_ready(&bus).await;
    Fixture {
        nats,
        db,
        bus,
        service,
    }
}

fn with_limits(limits: sspr_proto::admin::v1::Limits) -> Policy {
    Policy {
        limits: Some(limits),
        ..policy(Scope::All, &[], 1, &[EMAIL, SMS])
    }
}

#[tokio::test]
async fn limits_out_of_range_are_refused_with_the_field_named() {
    use sspr_proto::admin::v1::Limits;
    use sspr_proto::internal::policy::v1::PreviewRequest;
    on_every_backend(async |f| {
        let cases: Vec<(Limits, &str)> = vec![
            (
                Limits {
                    phone_sends_per_hour: Some(0),
                    ..Default::default()
                },
                "limits.phone_sends_per_hour must be 1 to 100",
            ),
            (
                Limits {
                    code_length: Some(12),
                    ..Default::default()
                },
                "limits.code_length must be 6 to 10",
            ),
            (
                Limits {
                    breaker_min_verified_percent: Some(101),
                    ..Default::default()
                },
                "limits.breaker_min_verified_percent must be 0 to 100",
            ),
            (
                Limits {
                    phone_allowed_prefixes: vec!["+44".into(), "44".into()],
                    ..Default::default()
                },
                "limits.phone_allowed_prefixes[1]",
            ),
            (
                Limits {
                    phone_allowed_prefixes: (1000..1101).map(|n| format!("+{n}")).collect(),
                    ..Default::default()
                },
                "limits.phone_allowed_prefixes has 101 entries",
            ),
        ];
        for (limits, expected) in cases {
            let (code, message) = rpc_error(set(&f.bus, with_limits(limits.clone())).await);
            assert_eq!(code, ErrorCode::InvalidArgument, "{expected}");
            assert!(message.contains(expected), "{message:?} names {expected:?}");
            // Preview validates exactly as set_policy does.
            let previewed = f
                .bus
                .request::<_, sspr_proto::internal::policy::v1::PreviewResponse>(
                    rpc::PREVIEW,
                    &PreviewRequest {
                        policy: Some(with_limits(limits)),
                        ..Default::default()
                    },
                )
                .await;
            let (code, message) = rpc_error(previewed);
            assert_eq!(code, ErrorCode::InvalidArgument, "preview: {expected}");
            assert!(message.contains(expected), "preview: {message:?}");
        }
        assert_eq!(get(&f.bus).await.version, 0, "nothing was stored");
    })
    .await;
}

#[tokio::test]
async fn limits_are_stored_announced_and_answered_to_evaluate() {
    use sspr_proto::admin::v1::Limits;
    on_every_backend(async |f| {
        let before = get(&f.bus).await;
        assert_eq!(
            before.limits,
            Some(Limits::default()),
            "no limit set: every default"
        );
        let limits = Limits {
            phone_sends_per_hour: Some(3),
            resend_after_seconds: Some(0),
            breaker_min_verified_percent: Some(0),
            phone_budget_per_hour: Some(1_000_000),
            phone_allowed_prefixes: vec!["+44".into(), "+1264".into()],
            ..Default::default()
        };
        let stored = set(&f.bus, with_limits(limits.clone()))
            .await
            .expect("valid limits");
        assert_eq!(stored.limits.as_ref(), Some(&limits));
        assert_eq!(get(&f.bus).await.limits.as_ref(), Some(&limits));
        let e = evaluate(&f.bus, "alice", &[], false, true).await;
        assert_eq!(e.limits.as_ref(), Some(&limits));

        let messages = events_on(&f.bus, events::POLICY_CHANGED, 1, SETTLE).await;
        let event = PolicyChanged::decode(messages[0].payload.clone()).expect("PolicyChanged");
        assert_eq!(
            event.policy.and_then(|p| p.limits).as_ref(),
            Some(&limits),
            "policy.changed carries the limits"
        );

        // Unset again: back to every default.
        let cleared = set(&f.bus, with_limits(Limits::default()))
            .await
            .expect("set");
        assert_eq!(cleared.limits, Some(Limits::default()));
        let e = evaluate(&f.bus, "alice", &[], false, true).await;
        assert!(
            e.limits.expect("limits").phone_allowed_prefixes.is_empty(),
            "no organisation prefixes configured: any country"
        );
    })
    .await;
}

#[tokio::test]
async fn evaluate_answers_the_organisation_prefixes_when_the_policy_lists_none() {
    use sspr_proto::admin::v1::Limits;
    for db in backends().await {
        let config = sspr_policy::Config {
            organisation_phone_prefixes: sspr_policy::domain::limits::OrganisationPrefixes::parse(
                "+44, +353",
            )
            .expect("prefixes"),
        };
        let f = fixture_with(db, config).await;
        let e = evaluate(&f.bus, "alice", &[], false, true).await;
        assert_eq!(
            e.limits.expect("limits").phone_allowed_prefixes,
            vec!["+44", "+353"]
        );
        // The stored policy keeps its own (empty) list.
        assert!(
            get(&f.bus)
                .await
                .limits
                .expect("limits")
                .phone_allowed_prefixes
                .is_empty()
        );
        // A policy's own list wins.
        set(
            &f.bus,
            with_limits(Limits {
                phone_allowed_prefixes: vec!["+1".into()],
                ..Default::default()
            }),
        )
        .await
        .expect("set");
        let e = evaluate(&f.bus, "alice", &[], false, true).await;
        assert_eq!(e.limits.expect("limits").phone_allowed_prefixes, vec!["+1"]);
        f.stop().await;
    }
}
