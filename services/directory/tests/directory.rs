//! The directory end to end over NATS: a private nats-server with JetStream, a fresh
//! `sspr_testkit::TestDb` per backend (SQLite always, PostgreSQL too when
//! `SSPR_TEST_POSTGRES_URL` is set), the directory's and the policy service's `run` in tasks,
//! and requests through `Bus::request` exactly as other services send them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use prost::Message;
use sspr_bus::subjects::{EVENTS_STREAM, events, rpc::directory as rpc};
use sspr_bus::{Bus, BusConfig, BusError, ErrorCode, RpcError};
use sspr_directory::SERVICE;
use sspr_directory::adapters::migration::Migrator;
use sspr_directory::adapters::policy_client::NatsPasswordRules;
use sspr_directory::adapters::store::SqlUserStore;
use sspr_directory::handlers::{DirectoryHandlers, router};
use sspr_directory::hashing::{Cost, Hasher, Work, WorkLog};
use sspr_proto::events::v1::{
    AccountLocked, AccountUnlocked, GroupDeleted, GroupUpserted, PasswordChanged, UserDeleted,
    UserUpserted,
};
use sspr_proto::internal::directory::v1::{
    AuthenticateRequest, AuthenticateResponse, DeleteUserRequest, DeleteUserResponse,
    GetUserRequest, GetUserResponse, ListAdminsRequest, ListAdminsResponse, SetPasswordRequest,
    SetPasswordResponse, UpsertUserRequest, UpsertUserResponse, UserRecord,
};
use sspr_proto::internal::directory::v1::{
    DeleteGroupRequest, DeleteGroupResponse, Group, ListGroupsRequest, ListGroupsResponse,
    UnlockRequest, UnlockResponse, UpsertGroupRequest, UpsertGroupResponse,
};
use sspr_storage::outbox::OutboxSignal;
use sspr_testkit::{NatsServer, TestDb};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long to wait for events the outbox relay has yet to publish.
const SETTLE: Duration = Duration::from_secs(15);
const WRONG: &str = "wrong user id or password";

/// A service running in a task against the test's nats-server.
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

async fn context(nats: &NatsServer, db: &TestDb, service: &str) -> sspr_runtime::ServiceContext {
    let bus = Bus::connect(&BusConfig::new(nats.url(), format!("sspr-{service}")))
        .await
        .expect("service bus");
    let conn = sspr_storage::connect(service, &db.settings())
        .await
        .expect("database");
    sspr_runtime::ServiceContext {
        bus,
        db: conn,
        clock: sspr_clock::system(),
    }
}

async fn start_directory(nats: &NatsServer, db: &TestDb) -> Running {
    let ctx = context(nats, db, sspr_directory::SERVICE).await;
    let token = CancellationToken::new();
    let config = sspr_directory::Config::from_env().expect("config");
    let task = tokio::spawn(sspr_directory::run(ctx, config, token.clone()));
    Running { token, task }
}

/// The directory's own handlers, account store, policy client and hasher, migrated and served
/// on NATS as `sspr_directory::run` does it (minus the outbox relay: events stay queued), with
/// `log` on the hasher: every Argon2 computation a request causes lands in it.
async fn start_directory_with_work_log(
    nats: &NatsServer,
    db: &TestDb,
    log: Arc<WorkLog>,
) -> Running {
    let ctx = context(nats, db, SERVICE).await;
    sspr_storage::run_migrations::<Migrator>(SERVICE, &ctx.db)
        .await
        .expect("migrations");
    let handlers = DirectoryHandlers::new(
        Arc::new(SqlUserStore::new(ctx.db.clone(), OutboxSignal::default())),
        Arc::new(NatsPasswordRules::new(ctx.bus.clone())),
        Hasher::per_core().with_work_log(log),
        ctx.clock.clone(),
    );
    let token = CancellationToken::new();
    let stop = token.clone();
    let task = tokio::spawn(async move {
        sspr_bus::serve(&ctx.bus, router(handlers), stop.cancelled_owned()).await?;
        Ok(())
    });
    Running { token, task }
}

async fn start_policy(nats: &NatsServer, db: &TestDb) -> Running {
    let ctx = context(nats, db, sspr_policy::SERVICE).await;
    let token = CancellationToken::new();
    let config = sspr_policy::Config::from_env().expect("config");
    let task = tokio::spawn(sspr_policy::run(ctx, config, token.clone()));
    Running { token, task }
}

/// Waits until something answers on `subject` (services serve after migrations).
async fn wait_ready(bus: &Bus, subject: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // An empty request: any answer, even a refusal, means the endpoint is up.
        match bus
            .request::<_, GetUserResponse>(subject, &GetUserRequest::default())
            .await
        {
            Err(BusError::NoResponders(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(BusError::NoResponders(_)) => panic!("nothing answers on {subject}"),
            _ => return,
        }
    }
}

struct Fixture {
    _nats: NatsServer,
    db: TestDb,
    bus: Bus,
    directory: Running,
    policy: Option<Running>,
}

impl Fixture {
    /// `sqlite` or `postgres`, for assertion messages.
    fn backend(&self) -> &'static str {
        self.db.backend()
    }

    async fn stop(self) {
        self.directory.stop().await;
        if let Some(policy) = self.policy {
            policy.stop().await;
        }
        let backend = self.db.backend();
        self.db
            .cleanup()
            .await
            .unwrap_or_else(|e| panic!("cleaning up the {backend} database: {e:#}"));
    }
}

/// How the directory runs in a fixture.
enum Directory {
    /// `sspr_directory::run`, as the binary runs it.
    Run,
    /// Its handlers served by hand, with a hasher that records its work in the log.
    WithWorkLog(Arc<WorkLog>),
}

async fn fixture_on(db: TestDb, with_policy: bool, directory: Directory) -> Fixture {
    sspr_testkit::init_test_tracing();
    let nats = NatsServer::start().await.expect("nats-server");
    let directory = match directory {
        Directory::Run => start_directory(&nats, &db).await,
        Directory::WithWorkLog(log) => start_directory_with_work_log(&nats, &db, log).await,
    };
    let policy = if with_policy {
        Some(start_policy(&nats, &db).await)
    } else {
        None
    };
    let bus = Bus::connect(&BusConfig::new(nats.url(), "directory-test"))
        .await
        .expect("client bus");
    wait_ready(&bus, rpc::GET_USER).await;
    if with_policy {
        wait_ready(&bus, sspr_bus::subjects::rpc::policy::GET_POLICY).await;
    }
    Fixture {
        _nats: nats,
        db,
        bus,
        directory,
        policy,
    }
}

/// Every backend to run a test on: SQLite, and PostgreSQL when `SSPR_TEST_POSTGRES_URL` is set.
async fn backends() -> Vec<TestDb> {
    TestDb::all().await.expect("test databases")
}

/// Runs `body` once per backend, each time on a fresh nats-server and database with the
/// directory's `run` (and the policy service's when `with_policy`).
async fn on_every_backend(with_policy: bool, body: impl AsyncFn(&Fixture)) {
    for db in backends().await {
        let f = fixture_on(db, with_policy, Directory::Run).await;
        eprintln!("on {}", f.backend());
        body(&f).await;
        f.stop().await;
    }
}

fn upsert_req(user_id: &str, password: &str) -> UpsertUserRequest {
    UpsertUserRequest {
        user_id: user_id.to_owned(),
        display_name: "Alice Example".to_owned(),
        locale: "en-GB".to_owned(),
        group_ids: vec!["staff".to_owned(), "admins".to_owned()],
        is_admin: false,
        password: password.to_owned(),
        enabled: None,
        ..Default::default()
    }
}

async fn upsert(bus: &Bus, req: &UpsertUserRequest) -> Result<UserRecord, RpcError> {
    bus.request::<_, UpsertUserResponse>(rpc::UPSERT_USER, req)
        .await
        .map(|r| r.user.expect("a user record"))
        .map_err(rpc_error)
}

async fn authenticate(bus: &Bus, user_id: &str, password: &str) -> Result<UserRecord, RpcError> {
    let req = AuthenticateRequest {
        user_id: user_id.to_owned(),
        password: password.to_owned(),
    };
    bus.request::<_, AuthenticateResponse>(rpc::AUTHENTICATE, &req)
        .await
        .map(|r| r.user.expect("a user record"))
        .map_err(rpc_error)
}

async fn get_user(bus: &Bus, user_id: &str) -> Result<GetUserResponse, RpcError> {
    bus.request(
        rpc::GET_USER,
        &GetUserRequest {
            user_id: user_id.to_owned(),
        },
    )
    .await
    .map_err(rpc_error)
}

async fn set_password(
    bus: &Bus,
    user_id: &str,
    password: &str,
    flow_id: &str,
    reason: &str,
) -> Result<SetPasswordResponse, RpcError> {
    let req = SetPasswordRequest {
        user_id: user_id.to_owned(),
        new_password: password.to_owned(),
        flow_id: flow_id.to_owned(),
        reason: reason.to_owned(),
    };
    bus.request(rpc::SET_PASSWORD, &req)
        .await
        .map_err(rpc_error)
}

async fn delete_user(bus: &Bus, user_id: &str) -> Result<DeleteUserResponse, RpcError> {
    bus.request(
        rpc::DELETE_USER,
        &DeleteUserRequest {
            user_id: user_id.to_owned(),
            actor: "test-admin".to_owned(),
        },
    )
    .await
    .map_err(rpc_error)
}

fn rpc_error(e: BusError) -> RpcError {
    match e {
        BusError::Rpc(e) => e,
        other => panic!("expected a refusal from the service, got {other}"),
    }
}

fn assert_wrong_credentials(result: Result<UserRecord, RpcError>) {
    let err = result.expect_err("sign-in must fail");
    assert_eq!(err.code, ErrorCode::Unauthenticated);
    assert_eq!(err.message, WRONG);
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

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn upsert_then_authenticate_and_look_up() {
    on_every_backend(true, async |f| {
        let user = upsert(&f.bus, &upsert_req("alice", "correct horse battery"))
            .await
            .expect("upsert");
        assert_eq!(user.user_id, "alice");
        assert_eq!(user.display_name, "Alice Example");
        assert_eq!(user.locale, "en-GB");
        assert_eq!(
            user.group_ids,
            vec!["admins", "staff"],
            "groups come back sorted"
        );
        assert!(user.enabled, "a new account is enabled by default");
        assert!(user.has_password);
        assert!(!user.is_admin);

        let signed_in = authenticate(&f.bus, "alice", "correct horse battery")
            .await
            .expect("sign-in");
        assert_eq!(signed_in, user);

        let found = get_user(&f.bus, "alice").await.expect("get_user");
        assert!(found.found);
        assert_eq!(found.user.as_ref(), Some(&user));
        let unknown = get_user(&f.bus, "nobody")
            .await
            .expect("get_user of an unknown user");
        assert!(!unknown.found);
        assert!(unknown.user.is_none());
        let bad = get_user(&f.bus, "not a valid id")
            .await
            .expect_err("malformed id");
        assert_eq!(bad.code, ErrorCode::InvalidArgument);
        assert!(bad.message.starts_with("user_id"), "{}", bad.message);
    })
    .await;
}

#[tokio::test]
async fn every_failed_sign_in_gets_the_same_answer() {
    on_every_backend(true, async |f| {
        upsert(&f.bus, &upsert_req("alice", "correct horse battery"))
            .await
            .expect("upsert");
        let mut no_password = upsert_req("bob", "");
        no_password.display_name = "Bob".into();
        assert!(
            !upsert(&f.bus, &no_password)
                .await
                .expect("upsert")
                .has_password
        );
        let mut disabled = upsert_req("carol", "a long secret phrase");
        disabled.enabled = Some(false);
        assert!(!upsert(&f.bus, &disabled).await.expect("upsert").enabled);

        assert_wrong_credentials(authenticate(&f.bus, "alice", "wrong password").await);
        assert_wrong_credentials(authenticate(&f.bus, "alice", "").await);
        assert_wrong_credentials(authenticate(&f.bus, "nobody", "correct horse battery").await);
        assert_wrong_credentials(authenticate(&f.bus, "not a valid id", "whatever").await);
        assert_wrong_credentials(authenticate(&f.bus, "", "").await);
        assert_wrong_credentials(authenticate(&f.bus, "bob", "").await);
        assert_wrong_credentials(authenticate(&f.bus, "bob", "anything at all").await);
        assert_wrong_credentials(authenticate(&f.bus, "carol", "a long secret phrase").await);

        // Re-enabling (with no password given) keeps the stored password.
        let mut enable = disabled.clone();
        enable.password.clear();
        enable.enabled = Some(true);
        let carol = upsert(&f.bus, &enable).await.expect("re-enable");
        assert!(carol.enabled && carol.has_password);
        authenticate(&f.bus, "carol", "a long secret phrase")
            .await
            .expect("sign-in after re-enable");
    })
    .await;
}

/// Every sign-in path does the same Argon2 work: exactly one verification, at the service's
/// Argon2id cost, whether the account exists, has a password, is enabled, or the password is
/// right. Counted by the hasher the handlers really call, not timed.
#[tokio::test]
async fn every_sign_in_path_costs_one_argon2id_verification() {
    let service_cost = Cost {
        algorithm: "argon2id".into(),
        version: Some(19),
        m_cost_kib: Some(19_456),
        t_cost: Some(2),
        p_cost: Some(1),
    };
    assert_eq!(Cost::service(), service_cost);
    let one_verification = vec![Work::Verify(service_cost.clone())];

    for db in backends().await {
        let log = Arc::new(WorkLog::default());
        let f = fixture_on(db, true, Directory::WithWorkLog(Arc::clone(&log))).await;
        let backend = f.backend();
        eprintln!("on {backend}");

        // Setting a password costs one hash with the same parameters; no password, no work.
        upsert(&f.bus, &upsert_req("alice", "correct horse battery"))
            .await
            .expect("upsert");
        assert_eq!(
            log.take(),
            vec![Work::Hash(service_cost.clone())],
            "{backend}"
        );
        let mut no_password = upsert_req("bob", "");
        no_password.display_name = "Bob".into();
        upsert(&f.bus, &no_password).await.expect("upsert");
        assert_eq!(log.take(), vec![], "{backend}");
        let mut disabled = upsert_req("carol", "a long secret phrase");
        disabled.enabled = Some(false);
        upsert(&f.bus, &disabled).await.expect("upsert");
        assert_eq!(
            log.take(),
            vec![Work::Hash(service_cost.clone())],
            "{backend}"
        );

        for (user_id, password, path) in [
            (
                "alice",
                "wrong password",
                "a real user with a wrong password",
            ),
            ("alice", "", "a real user with an empty password"),
            ("nobody", "correct horse battery", "an unknown user"),
            ("not a valid id", "whatever", "a malformed user id"),
            ("", "", "an empty user id"),
            (
                "carol",
                "a long secret phrase",
                "a disabled user with the right password",
            ),
            ("bob", "anything at all", "a user without a password"),
            ("bob", "", "a user without a password, empty password"),
        ] {
            assert_wrong_credentials(authenticate(&f.bus, user_id, password).await);
            assert_eq!(log.take(), one_verification, "{backend}: {path}");
        }

        let user = authenticate(&f.bus, "alice", "correct horse battery")
            .await
            .expect("sign-in");
        assert_eq!(user.user_id, "alice");
        assert_eq!(
            log.take(),
            one_verification,
            "{backend}: a successful sign-in"
        );
        f.stop().await;
    }
}

#[tokio::test]
async fn set_password_checks_policy_hashes_and_announces_without_the_password() {
    on_every_backend(true, async |f| {
        upsert(&f.bus, &upsert_req("alice", "first password 1"))
            .await
            .expect("upsert");

        let short = set_password(&f.bus, "alice", "short", "flow-1", "self_service_reset")
            .await
            .expect_err("too short");
        assert_eq!(short.code, ErrorCode::InvalidArgument);
        assert_eq!(
            short.message,
            "password rejected: must be at least 8 characters"
        );
        let both = set_password(&f.bus, "alice", "Alice!!!", "flow-1", "self_service_reset")
            .await
            .expect_err("contains the user id and too little else");
        assert_eq!(
            both.message,
            "password rejected: must not contain your name or user id; is too easy to guess: \
             add more words or characters that are not common passwords or names"
        );
        authenticate(&f.bus, "alice", "first password 1")
            .await
            .expect("old password still works");

        set_password(
            &f.bus,
            "alice",
            "second password 2",
            "flow-1",
            "self_service_reset",
        )
        .await
        .expect("set_password");
        assert_wrong_credentials(authenticate(&f.bus, "alice", "first password 1").await);
        authenticate(&f.bus, "alice", "second password 2")
            .await
            .expect("new password works");

        // One event from the upsert (reason admin), one from set_password.
        let messages = events_on(&f.bus, events::PASSWORD_CHANGED, 2, SETTLE).await;
        assert_eq!(messages.len(), 2);
        for msg in &messages {
            for secret in ["first password 1", "second password 2", "$argon2id$"] {
                assert!(!contains(&msg.payload, secret), "event carries {secret:?}");
            }
        }
        let admin = PasswordChanged::decode(messages[0].payload.clone()).expect("PasswordChanged");
        assert_eq!(admin.reason, "admin");
        let meta = admin.meta.expect("meta");
        assert_eq!(meta.user_id, "alice");
        assert_eq!(meta.source, "directory");
        let reset = PasswordChanged::decode(messages[1].payload.clone()).expect("PasswordChanged");
        assert_eq!(reset.reason, "self_service_reset");
        let meta = reset.meta.expect("meta");
        assert_eq!(meta.user_id, "alice");
        assert_eq!(meta.flow_id, "flow-1");
        assert!(meta.occurred_at.is_some());
        let headers = messages[1].headers.as_ref().expect("headers");
        assert_eq!(
            headers.get("Nats-Msg-Id").map(|v| v.as_str()),
            Some(meta.event_id.as_str())
        );
    })
    .await;
}

#[tokio::test]
async fn set_password_refusals() {
    on_every_backend(true, async |f| {
        upsert(&f.bus, &upsert_req("alice", ""))
            .await
            .expect("upsert");
        let unknown = set_password(&f.bus, "nobody", "a fine password", "", "admin")
            .await
            .expect_err("unknown user");
        assert_eq!(unknown.code, ErrorCode::NotFound);
        assert_eq!(unknown.message, "unknown user");
        let reason = set_password(&f.bus, "alice", "a fine password", "", "because")
            .await
            .expect_err("bad reason");
        assert_eq!(reason.code, ErrorCode::InvalidArgument);
        assert!(reason.message.starts_with("reason"), "{}", reason.message);
        let flow = set_password(
            &f.bus,
            "alice",
            "a fine password",
            &"f".repeat(129),
            "admin",
        )
        .await
        .expect_err("long flow id");
        assert_eq!(flow.code, ErrorCode::InvalidArgument);
        let id = set_password(&f.bus, "a b", "a fine password", "", "admin")
            .await
            .expect_err("bad id");
        assert_eq!(id.code, ErrorCode::InvalidArgument);

        // No password was set and nothing was announced.
        assert!(
            !get_user(&f.bus, "alice")
                .await
                .expect("get")
                .user
                .expect("user")
                .has_password
        );
        assert!(
            events_on(&f.bus, events::PASSWORD_CHANGED, 1, Duration::from_secs(2))
                .await
                .is_empty()
        );
    })
    .await;
}

#[tokio::test]
async fn passwords_are_nfkc_normalised() {
    on_every_backend(true, async |f| {
        // "Å" precomposed when set, decomposed ("A" + combining ring) when signing in.
        upsert(&f.bus, &upsert_req("alice", "p\u{00C5}ssword-123"))
            .await
            .expect("upsert");
        authenticate(&f.bus, "alice", "pA\u{030A}ssword-123")
            .await
            .expect("same password after NFKC");
        // Fullwidth digits are the ASCII digits under NFKC.
        authenticate(&f.bus, "alice", "p\u{00C5}ssword-\u{FF11}\u{FF12}\u{FF13}")
            .await
            .expect("fullwidth digits");
    })
    .await;
}

#[tokio::test]
async fn without_policy_no_password_is_set() {
    on_every_backend(false, async |f| {
        let err = upsert(&f.bus, &upsert_req("alice", "correct horse battery"))
            .await
            .expect_err("policy is down");
        assert_eq!(err.code, ErrorCode::Unavailable);
        assert!(
            get_user(&f.bus, "alice").await.expect("get").user.is_none(),
            "nothing was written"
        );

        // Without a password, upsert needs no policy.
        upsert(&f.bus, &upsert_req("alice", ""))
            .await
            .expect("upsert without password");
        let err = set_password(
            &f.bus,
            "alice",
            "correct horse battery",
            "flow",
            "self_service_reset",
        )
        .await
        .expect_err("policy is down");
        assert_eq!(err.code, ErrorCode::Unavailable);
        assert!(
            !get_user(&f.bus, "alice")
                .await
                .expect("get")
                .user
                .expect("user")
                .has_password
        );
    })
    .await;
}

#[tokio::test]
async fn upsert_validates_and_updates_in_place() {
    on_every_backend(true, async |f| {
        let cases: Vec<(UpsertUserRequest, &str)> = vec![
            (
                UpsertUserRequest {
                    user_id: String::new(),
                    ..upsert_req("x", "")
                },
                "user_id",
            ),
            (
                UpsertUserRequest {
                    user_id: "a/b".into(),
                    ..upsert_req("x", "")
                },
                "user_id",
            ),
            (
                UpsertUserRequest {
                    user_id: "u".repeat(129),
                    ..upsert_req("x", "")
                },
                "user_id",
            ),
            (
                UpsertUserRequest {
                    display_name: "d".repeat(257),
                    ..upsert_req("x", "")
                },
                "display_name",
            ),
            (
                UpsertUserRequest {
                    locale: "l".repeat(36),
                    ..upsert_req("x", "")
                },
                "locale",
            ),
            (
                UpsertUserRequest {
                    locale: "en GB".into(),
                    ..upsert_req("x", "")
                },
                "locale",
            ),
            (
                UpsertUserRequest {
                    group_ids: vec!["ok".into(), "no way".into()],
                    ..upsert_req("x", "")
                },
                "group_ids[1]",
            ),
            (
                UpsertUserRequest {
                    group_ids: (0..101).map(|i| format!("g{i}")).collect(),
                    ..upsert_req("x", "")
                },
                "group_ids",
            ),
            (
                upsert_req("x", "short"),
                "password rejected: must be at least 8 characters",
            ),
        ];
        for (req, field) in cases {
            let err = upsert(&f.bus, &req).await.expect_err("invalid upsert");
            assert_eq!(err.code, ErrorCode::InvalidArgument, "{field}");
            assert!(
                err.message.starts_with(field),
                "{:?} should start with {field:?}",
                err.message
            );
        }
        assert!(
            !get_user(&f.bus, "x").await.expect("get").found,
            "nothing was created"
        );

        let mut req = upsert_req("dave", "first secret phrase");
        req.is_admin = true;
        upsert(&f.bus, &req).await.expect("create");
        let mut update = upsert_req("dave", "");
        update.display_name = "Dave Renamed".into();
        update.group_ids = vec!["ops".into()];
        update.locale = "de-CH".into();
        let updated = upsert(&f.bus, &update).await.expect("update");
        assert_eq!(updated.display_name, "Dave Renamed");
        assert_eq!(updated.locale, "de-CH");
        assert_eq!(updated.group_ids, vec!["ops"], "groups are replaced");
        assert!(!updated.is_admin);
        assert!(updated.enabled, "enabled is kept when not given");
        assert!(updated.has_password, "the password is kept when empty");
        authenticate(&f.bus, "dave", "first secret phrase")
            .await
            .expect("password kept");

        update.enabled = Some(false);
        assert!(!upsert(&f.bus, &update).await.expect("disable").enabled);
        update.enabled = None;
        assert!(
            !upsert(&f.bus, &update).await.expect("update").enabled,
            "still disabled"
        );
    })
    .await;
}

#[tokio::test]
async fn delete_user_removes_the_account_and_announces_it() {
    on_every_backend(true, async |f| {
        upsert(&f.bus, &upsert_req("alice", "correct horse battery"))
            .await
            .expect("upsert");
        delete_user(&f.bus, "alice").await.expect("delete");
        assert!(!get_user(&f.bus, "alice").await.expect("get").found);
        assert_wrong_credentials(authenticate(&f.bus, "alice", "correct horse battery").await);
        let again = delete_user(&f.bus, "alice")
            .await
            .expect_err("already gone");
        assert_eq!(again.code, ErrorCode::NotFound);
        assert_eq!(again.message, "unknown user");

        let deleted = events_on(&f.bus, events::USER_DELETED, 1, SETTLE).await;
        assert_eq!(deleted.len(), 1, "one user.deleted for one deletion");
        let event = UserDeleted::decode(deleted[0].payload.clone()).expect("UserDeleted");
        let meta = event.meta.expect("meta");
        assert_eq!(meta.user_id, "alice");
        assert_eq!(meta.source, "directory");

        // The id can be used again, with fresh groups.
        let mut again = upsert_req("alice", "");
        again.group_ids = vec!["new".into()];
        assert_eq!(
            upsert(&f.bus, &again).await.expect("re-create").group_ids,
            vec!["new"]
        );
    })
    .await;
}

#[tokio::test]
async fn list_admins_returns_enabled_admins_only() {
    on_every_backend(false, async |f| {
        let list = async || -> Vec<String> {
            f.bus
                .request::<_, ListAdminsResponse>(rpc::LIST_ADMINS, &ListAdminsRequest {})
                .await
                .expect("list_admins")
                .users
                .into_iter()
                .map(|u| {
                    assert!(u.is_admin && u.enabled, "{u:?}");
                    u.user_id
                })
                .collect()
        };
        assert!(list().await.is_empty(), "no admins yet");
        for (id, admin, enabled) in [
            ("zoe", true, None),
            ("bob", true, None),
            ("carol", true, Some(false)),
            ("alice", false, None),
        ] {
            let mut req = upsert_req(id, "");
            req.is_admin = admin;
            req.enabled = enabled;
            upsert(&f.bus, &req).await.expect("upsert");
        }
        assert_eq!(list().await, vec!["bob", "zoe"], "enabled admins, sorted");
        let found = f
            .bus
            .request::<_, ListAdminsResponse>(rpc::LIST_ADMINS, &ListAdminsRequest {})
            .await
            .expect("list_admins");
        assert_eq!(found.users[0].locale, "en-GB");
        assert_eq!(found.users[0].display_name, "Alice Example");
    })
    .await;
}

async fn set_history(bus: &Bus, history_count: u32) {
    use sspr_proto::internal::policy::v1::{
        PasswordPolicy, SetPasswordPolicyRequest, SetPasswordPolicyResponse,
    };
    let req = SetPasswordPolicyRequest {
        policy: Some(PasswordPolicy {
            min_length: 8,
            history_count,
            ..PasswordPolicy::default()
        }),
        actor: String::new(),
    };
    let resp: SetPasswordPolicyResponse = bus
        .request(sspr_bus::subjects::rpc::policy::SET_PASSWORD_POLICY, &req)
        .await
        .expect("set_password_policy");
    assert_eq!(resp.policy.expect("policy").history_count, history_count);
}

fn assert_reused(err: RpcError, field: &str, n: u32) {
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    assert_eq!(
        err.message,
        format!("password rejected: must not be one of your last {n} passwords")
    );
    let details = err.details.expect("BadRequest details").field_violations;
    assert_eq!(details.len(), 1);
    assert_eq!(details[0].field, field);
    assert_eq!(details[0].reason, "password_reused");
    assert_eq!(
        details[0].description,
        format!("must not be one of your last {n} passwords")
    );
}

#[tokio::test]
async fn a_policy_refusal_carries_one_violation_per_rule() {
    on_every_backend(true, async |f| {
        upsert(&f.bus, &upsert_req("alice", ""))
            .await
            .expect("upsert");
        let err = set_password(&f.bus, "alice", "P@ssw0rd", "", "admin")
            .await
            .expect_err("common password");
        assert_eq!(err.code, ErrorCode::InvalidArgument);
        assert!(
            err.message.starts_with("password rejected: "),
            "{}",
            err.message
        );
        let details = err.details.expect("details").field_violations;
        let reasons: Vec<&str> = details.iter().map(|v| v.reason.as_str()).collect();
        assert_eq!(reasons, ["banned_password", "score_too_low"]);
        assert!(details.iter().all(|v| v.field == "new_password"));
        for v in &details {
            assert!(err.message.contains(&v.description), "{}", err.message);
        }
        let err = upsert(&f.bus, &upsert_req("bob", "short"))
            .await
            .expect_err("too short");
        let details = err.details.expect("details").field_violations;
        assert_eq!(details[0].field, "password");
        assert_eq!(details[0].reason, "too_short");
    })
    .await;
}

#[tokio::test]
async fn the_last_passwords_cannot_be_reused() {
    const FIRST: &str = "first granite meadow";
    const SECOND: &str = "second copper lantern";
    const THIRD: &str = "third velvet harbour";
    on_every_backend(true, async |f| {
        // History off: the current password may be set again.
        upsert(&f.bus, &upsert_req("alice", FIRST))
            .await
            .expect("upsert");
        set_password(&f.bus, "alice", FIRST, "", "admin")
            .await
            .expect("no history: same password again");

        set_history(&f.bus, 2).await;
        let err = set_password(&f.bus, "alice", FIRST, "f1", "self_service_reset")
            .await
            .expect_err("the current password");
        assert_reused(err, "new_password", 2);
        set_password(&f.bus, "alice", SECOND, "f2", "self_service_reset")
            .await
            .expect("a new password");
        let err = set_password(&f.bus, "alice", FIRST, "f3", "self_service_reset")
            .await
            .expect_err("the previous password");
        assert_reused(err, "new_password", 2);
        let err = upsert(&f.bus, &upsert_req("alice", SECOND))
            .await
            .expect_err("the current password through upsert");
        assert_reused(err, "password", 2);
        authenticate(&f.bus, "alice", SECOND)
            .await
            .expect("the refusals changed nothing");

        // Only the last 2 count: after a third password, the first is allowed again.
        set_password(&f.bus, "alice", THIRD, "f4", "self_service_reset")
            .await
            .expect("a third password");
        let err = set_password(&f.bus, "alice", SECOND, "f5", "self_service_reset")
            .await
            .expect_err("the previous password");
        assert_reused(err, "new_password", 2);
        set_password(&f.bus, "alice", FIRST, "f6", "self_service_reset")
            .await
            .expect("older than the last 2");
        authenticate(&f.bus, "alice", FIRST).await.expect("sign in");

        // Turning history off forgets it.
        set_history(&f.bus, 0).await;
        set_password(&f.bus, "alice", FIRST, "f7", "admin")
            .await
            .expect("history off");
        set_history(&f.bus, 3).await;
        set_password(&f.bus, "alice", THIRD, "f8", "admin")
            .await
            .expect("forgotten while history was off");
        delete_user(&f.bus, "alice")
            .await
            .expect("delete with history");
    })
    .await;
}

async fn upsert_group(bus: &Bus, id: &str, members: &[&str]) -> Result<Group, RpcError> {
    let req = UpsertGroupRequest {
        group: Some(Group {
            group_id: id.to_owned(),
            display_name: format!("Group {id}"),
            member_group_ids: members.iter().map(|m| (*m).to_owned()).collect(),
        }),
        actor: String::new(),
    };
    bus.request::<_, UpsertGroupResponse>(rpc::UPSERT_GROUP, &req)
        .await
        .map(|r| r.group.expect("a group"))
        .map_err(rpc_error)
}

async fn delete_group(bus: &Bus, id: &str) -> Result<DeleteGroupResponse, RpcError> {
    let req = DeleteGroupRequest {
        group_id: id.to_owned(),
        actor: String::new(),
    };
    bus.request(rpc::DELETE_GROUP, &req)
        .await
        .map_err(rpc_error)
}

async fn list_groups(bus: &Bus, size: u32, token: &str) -> Result<ListGroupsResponse, RpcError> {
    let req = ListGroupsRequest {
        page_size: size,
        page_token: token.to_owned(),
    };
    bus.request(rpc::LIST_GROUPS, &req).await.map_err(rpc_error)
}

async fn unlock(
    bus: &Bus,
    user_id: &str,
    flow_id: &str,
    reason: &str,
) -> Result<UnlockResponse, RpcError> {
    let req = UnlockRequest {
        user_id: user_id.to_owned(),
        flow_id: flow_id.to_owned(),
        reason: reason.to_owned(),
        actor: String::new(),
    };
    bus.request(rpc::UNLOCK, &req).await.map_err(rpc_error)
}

fn member_of(user_id: &str, groups: &[&str]) -> UpsertUserRequest {
    UpsertUserRequest {
        group_ids: groups.iter().map(|g| (*g).to_owned()).collect(),
        ..upsert_req(user_id, "")
    }
}

#[tokio::test]
async fn nested_groups_make_effective_groups_through_cycles() {
    on_every_backend(false, async |f| {
        // backend ⊂ engineering ⊂ staff, and (a mistake) staff ⊂ backend: a cycle.
        let staff = upsert_group(&f.bus, "staff", &["engineering", "sales"])
            .await
            .expect("staff");
        assert_eq!(staff.member_group_ids, vec!["engineering", "sales"]);
        assert_eq!(staff.display_name, "Group staff");
        upsert_group(&f.bus, "engineering", &["backend"])
            .await
            .expect("engineering");
        upsert_group(&f.bus, "backend", &["staff"])
            .await
            .expect("backend");
        upsert_group(&f.bus, "everyone", &["staff"])
            .await
            .expect("everyone");

        let bob = upsert(&f.bus, &member_of("bob", &["backend"]))
            .await
            .expect("bob");
        assert_eq!(bob.group_ids, vec!["backend"]);
        assert_eq!(
            bob.effective_group_ids,
            vec!["backend", "engineering", "everyone", "staff"]
        );
        // A group nobody created is fine: it just has no parents. sales ⊂ staff, and through
        // the cycle staff ⊂ backend ⊂ engineering ⊂ staff.
        let carol = upsert(&f.bus, &member_of("carol", &["ghost", "sales"]))
            .await
            .expect("carol");
        assert_eq!(
            carol.effective_group_ids,
            vec![
                "backend",
                "engineering",
                "everyone",
                "ghost",
                "sales",
                "staff"
            ]
        );
        let found = get_user(&f.bus, "bob").await.expect("get_user");
        assert_eq!(
            found.user.expect("bob").effective_group_ids,
            bob.effective_group_ids
        );

        // Replacing a group's members takes effect at once for every member.
        upsert_group(&f.bus, "engineering", &[])
            .await
            .expect("engineering emptied");
        let bob = get_user(&f.bus, "bob")
            .await
            .expect("get_user")
            .user
            .expect("bob");
        assert_eq!(
            bob.effective_group_ids,
            vec!["backend"],
            "nothing contains backend now"
        );
        let carol = get_user(&f.bus, "carol")
            .await
            .expect("get_user")
            .user
            .expect("carol");
        assert_eq!(
            carol.effective_group_ids,
            vec!["backend", "everyone", "ghost", "sales", "staff"]
        );

        // Deleting a group removes it from users and from other groups.
        delete_group(&f.bus, "backend")
            .await
            .expect("delete backend");
        let bob = get_user(&f.bus, "bob")
            .await
            .expect("get_user")
            .user
            .expect("bob");
        assert!(bob.group_ids.is_empty(), "{:?}", bob.group_ids);
        assert!(bob.effective_group_ids.is_empty());
        let missing = delete_group(&f.bus, "backend").await.expect_err("gone");
        assert_eq!(missing.code, ErrorCode::NotFound);

        // Paged, sorted by id.
        let first = list_groups(&f.bus, 2, "").await.expect("page 1");
        let ids: Vec<&str> = first.groups.iter().map(|g| g.group_id.as_str()).collect();
        assert_eq!(ids, vec!["engineering", "everyone"]);
        assert!(!first.next_page_token.is_empty());
        let second = list_groups(&f.bus, 2, &first.next_page_token)
            .await
            .expect("page 2");
        let ids: Vec<&str> = second.groups.iter().map(|g| g.group_id.as_str()).collect();
        assert_eq!(ids, vec!["staff"]);
        assert!(second.next_page_token.is_empty());
        assert_eq!(
            second.groups[0].member_group_ids,
            vec!["engineering", "sales"]
        );
        let all = list_groups(&f.bus, 0, "").await.expect("default page");
        assert_eq!(all.groups.len(), 3);

        // Refusals name the field.
        for (id, members, field) in [
            ("not valid", vec![], "group.group_id"),
            ("g", vec!["a", "a"], "group.member_group_ids[1]"),
            ("g", vec!["ok", "no way"], "group.member_group_ids[1]"),
        ] {
            let err = upsert_group(&f.bus, id, &members)
                .await
                .expect_err("invalid");
            assert_eq!(err.code, ErrorCode::InvalidArgument);
            assert!(err.message.starts_with(field), "{}", err.message);
        }
        let err = list_groups(&f.bus, 501, "").await.expect_err("too big");
        assert_eq!(err.code, ErrorCode::InvalidArgument);
        let err = list_groups(&f.bus, 1, "zz").await.expect_err("bad token");
        assert_eq!(err.code, ErrorCode::InvalidArgument);
    })
    .await;
}

#[tokio::test]
async fn locked_accounts_cannot_sign_in_and_unlocking_is_announced() {
    on_every_backend(true, async |f| {
        let alice = upsert(&f.bus, &upsert_req("alice", "correct horse battery"))
            .await
            .expect("alice");
        assert!(!alice.locked, "a new account is unlocked");

        let locked = upsert(
            &f.bus,
            &UpsertUserRequest {
                locked: Some(true),
                ..upsert_req("alice", "")
            },
        )
        .await
        .expect("lock");
        assert!(locked.locked);
        // Refused exactly like a wrong password: no way to tell it is locked.
        assert_wrong_credentials(authenticate(&f.bus, "alice", "correct horse battery").await);
        // Absent keeps the state; locking again changes (and announces) nothing.
        let kept = upsert(&f.bus, &upsert_req("alice", ""))
            .await
            .expect("upsert");
        assert!(kept.locked);
        upsert(
            &f.bus,
            &UpsertUserRequest {
                locked: Some(true),
                ..upsert_req("alice", "")
            },
        )
        .await
        .expect("lock again");

        // An admin's password change does not unlock.
        set_password(&f.bus, "alice", "second password 2", "", "admin")
            .await
            .expect("admin set");
        assert!(
            get_user(&f.bus, "alice")
                .await
                .expect("get")
                .user
                .expect("alice")
                .locked
        );

        let unlocked = unlock(&f.bus, "alice", "", "admin").await.expect("unlock");
        assert!(unlocked.was_locked);
        assert!(!unlocked.user.expect("alice").locked);
        authenticate(&f.bus, "alice", "second password 2")
            .await
            .expect("signs in again");
        let again = unlock(&f.bus, "alice", "", "admin")
            .await
            .expect("unlock again");
        assert!(!again.was_locked, "nothing to unlock");

        // A self-service reset unlocks a locked account too.
        upsert(
            &f.bus,
            &UpsertUserRequest {
                locked: Some(true),
                ..upsert_req("alice", "")
            },
        )
        .await
        .expect("lock");
        set_password(
            &f.bus,
            "alice",
            "third password 3",
            "flow-9",
            "self_service_reset",
        )
        .await
        .expect("reset");
        authenticate(&f.bus, "alice", "third password 3")
            .await
            .expect("unlocked by the reset");
        // A reset of an account that is not locked announces no unlock.
        set_password(
            &f.bus,
            "alice",
            "fourth password 4",
            "flow-10",
            "self_service_reset",
        )
        .await
        .expect("reset");

        let err = unlock(&f.bus, "nobody", "", "admin")
            .await
            .expect_err("unknown");
        assert_eq!(err.code, ErrorCode::NotFound);
        let err = unlock(&f.bus, "alice", "", "because")
            .await
            .expect_err("reason");
        assert_eq!(err.code, ErrorCode::InvalidArgument);

        let locks = events_on(&f.bus, events::ACCOUNT_LOCKED, 2, SETTLE).await;
        assert_eq!(locks.len(), 2);
        let more = events_on(&f.bus, events::ACCOUNT_LOCKED, 3, Duration::from_secs(2)).await;
        assert_eq!(more.len(), 2, "one per real change");
        for msg in &locks {
            let e = AccountLocked::decode(msg.payload.clone()).expect("AccountLocked");
            assert_eq!(e.reason, "admin");
            assert_eq!(e.meta.expect("meta").user_id, "alice");
        }
        let unlocks = events_on(&f.bus, events::ACCOUNT_UNLOCKED, 2, SETTLE).await;
        assert_eq!(unlocks.len(), 2);
        let more = events_on(&f.bus, events::ACCOUNT_UNLOCKED, 3, Duration::from_secs(2)).await;
        assert_eq!(more.len(), 2, "one per real change");
        let admin = AccountUnlocked::decode(unlocks[0].payload.clone()).expect("unlocked");
        assert_eq!(admin.reason, "admin");
        let reset = AccountUnlocked::decode(unlocks[1].payload.clone()).expect("unlocked");
        assert_eq!(reset.reason, "self_service");
        let meta = reset.meta.expect("meta");
        assert_eq!(
            (meta.user_id.as_str(), meta.flow_id.as_str()),
            ("alice", "flow-9")
        );
    })
    .await;
}

#[tokio::test]
async fn admin_changes_to_users_and_groups_are_announced_with_their_actor() {
    on_every_backend(true, async |f| {
        let secret = "correct horse battery";
        upsert(
            &f.bus,
            &UpsertUserRequest {
                actor: "alice-helpdesk".into(),
                ..upsert_req("alice", secret)
            },
        )
        .await
        .expect("create");
        upsert(
            &f.bus,
            &UpsertUserRequest {
                actor: "bob-admin".into(),
                is_admin: true,
                enabled: Some(false),
                locked: Some(true),
                group_ids: vec!["zeta".into(), "alpha".into()],
                ..upsert_req("alice", "")
            },
        )
        .await
        .expect("update");
        // A refused upsert changes nothing and announces nothing.
        upsert(&f.bus, &upsert_req("bad id!", ""))
            .await
            .expect_err("invalid");

        let users = events_on(&f.bus, events::USER_UPSERTED, 2, SETTLE).await;
        let more = events_on(&f.bus, events::USER_UPSERTED, 3, Duration::from_secs(2)).await;
        assert_eq!(more.len(), 2, "one user.upserted per upsert");
        for msg in &users {
            assert!(!contains(&msg.payload, secret), "no password in events");
            assert!(!contains(&msg.payload, "argon2"), "no hash in events");
        }
        let created = UserUpserted::decode(users[0].payload.clone()).expect("UserUpserted");
        let meta = created.meta.clone().expect("meta");
        assert_eq!(
            (
                meta.user_id.as_str(),
                meta.actor.as_str(),
                meta.source.as_str()
            ),
            ("alice", "alice-helpdesk", "directory")
        );
        assert!(created.created && created.password_set && created.enabled);
        assert!(!created.is_admin && !created.locked);
        assert_eq!(created.group_ids, vec!["admins", "staff"]);
        let updated = UserUpserted::decode(users[1].payload.clone()).expect("UserUpserted");
        assert_eq!(updated.meta.expect("meta").actor, "bob-admin");
        assert!(!updated.created && !updated.password_set && !updated.enabled);
        assert!(updated.is_admin && updated.locked);
        assert_eq!(updated.group_ids, vec!["alpha", "zeta"]);

        let req = |members: &[&str]| UpsertGroupRequest {
            group: Some(Group {
                group_id: "staff".into(),
                display_name: "Staff".into(),
                member_group_ids: members.iter().map(|m| (*m).to_owned()).collect(),
            }),
            actor: "carol-admin".into(),
        };
        for members in [&["b", "a"][..], &["c"][..]] {
            f.bus
                .request::<_, UpsertGroupResponse>(rpc::UPSERT_GROUP, &req(members))
                .await
                .expect("upsert group");
        }
        f.bus
            .request::<_, DeleteGroupResponse>(
                rpc::DELETE_GROUP,
                &DeleteGroupRequest {
                    group_id: "staff".into(),
                    actor: "dave-admin".into(),
                },
            )
            .await
            .expect("delete group");
        // Deleting a missing group deletes and announces nothing.
        delete_group(&f.bus, "staff").await.expect_err("gone");

        let upserts = events_on(&f.bus, events::GROUP_UPSERTED, 2, SETTLE).await;
        assert_eq!(upserts.len(), 2);
        let first = GroupUpserted::decode(upserts[0].payload.clone()).expect("GroupUpserted");
        let meta = first.meta.expect("meta");
        assert_eq!(
            (meta.actor.as_str(), meta.user_id.as_str()),
            ("carol-admin", "")
        );
        assert_eq!(first.group_id, "staff");
        assert!(first.created);
        assert_eq!(first.member_group_ids, vec!["a", "b"]);
        let second = GroupUpserted::decode(upserts[1].payload.clone()).expect("GroupUpserted");
        assert!(!second.created);
        assert_eq!(second.member_group_ids, vec!["c"]);

        let deletes = events_on(&f.bus, events::GROUP_DELETED, 2, Duration::from_secs(5)).await;
        assert_eq!(deletes.len(), 1, "one group.deleted per real deletion");
        let deleted = GroupDeleted::decode(deletes[0].payload.clone()).expect("GroupDeleted");
        assert_eq!(deleted.group_id, "staff");
        assert_eq!(deleted.meta.expect("meta").actor, "dave-admin");
    })
    .await;
}
