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
    GetPolicyRequest, GetPolicyResponse, SetPolicyRequest, SetPolicyResponse,
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

fn rpc_error(result: Result<Policy, BusError>) -> (ErrorCode, String) {
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
            .request::<_, SetPolicyResponse>(rpc::SET_POLICY, &SetPolicyRequest { policy: None })
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

#[tokio::test]
async fn check_password_over_nats() {
    // Pure rules, no storage: SQLite is enough.
    let f = fixture_on(TestDb::sqlite().expect("sqlite test db")).await;
    let check = |password: &str| {
        let bus = f.bus.clone();
        let req = CheckPasswordRequest {
            password: password.to_owned(),
            user_id: "alice".to_owned(),
            display_name: "Alice Example".to_owned(),
        };
        async move {
            bus.request::<_, CheckPasswordResponse>(rpc::CHECK_PASSWORD, &req)
                .await
                .expect("check")
        }
    };
    let ok = check("correct horse battery staple").await;
    assert!(ok.accepted);
    assert!(ok.violations.is_empty());

    let short = check("Alice1").await;
    assert!(!short.accepted);
    let rules: Vec<&str> = short.violations.iter().map(|v| v.rule.as_str()).collect();
    assert_eq!(rules, vec!["too_short", "contains_user_id"]);
    assert_eq!(short.violations[0].message, "must be at least 8 characters");

    let long = check(&"x".repeat(257)).await;
    assert!(!long.accepted);
    assert_eq!(long.violations[0].rule, "too_long");
    f.stop().await;
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
