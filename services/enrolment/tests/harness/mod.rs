//! Starts enrolment for one test: a private nats-server, a fresh SQLite database in a temp dir,
//! the service running in-process through `sspr_enrolment::run`, and small stand-ins for the
//! directory, policy and verification services.
//!
//! The stand-ins are real NATS micro-services (`sspr_bus::Router`) that answer from canned data
//! and record every request, so the tests can check what enrolment asked its peers. The
//! verification stand-in "delivers" a fresh code per issue (voiding the previous one), which the
//! test reads back as a user would read their mail. The end-to-end suite runs the real services.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::Utc;
use prost::Message;
use sspr_bus::{Bus, BusConfig, BusError, Router, RpcError, subjects};
use sspr_clock::{Clock, ManualClock};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::internal::directory::v1::{AuthenticateRequest, AuthenticateResponse, UserRecord};
use sspr_proto::internal::enrolment::v1::{
    AddMethodRequest, AddMethodResponse, BeginRegistrationRequest, BeginRegistrationResponse,
    ConfirmMethodRequest, ConfirmMethodResponse, GetStatusRequest, GetStatusResponse,
    ListMethodsRequest, ListMethodsResponse, ListOwnMethodsRequest, ListOwnMethodsResponse,
    RemoveMethodRequest, RemoveMethodResponse,
};
use sspr_proto::internal::policy::v1::{EvaluateRequest, EvaluateResponse};
use sspr_proto::internal::verification::v1::{
    CheckCodeRequest, CheckCodeResponse, IssueCodeRequest, IssueCodeResponse,
};
use sspr_runtime::ServiceContext;
use sspr_testkit::{NatsServer, TestDb};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A directory account of the stand-in.
pub struct Account {
    pub user_id: &'static str,
    pub password: &'static str,
    pub groups: &'static [&'static str],
    pub is_admin: bool,
    pub locale: &'static str,
}

/// In scope (group `staff`), both kinds allowed, 2 methods required.
pub const ALICE: Account = Account {
    user_id: "alice",
    password: "correct horse battery",
    groups: &["staff"],
    is_admin: false,
    locale: "de-CH",
};
/// Out of scope: not in `staff`.
pub const BOB: Account = Account {
    user_id: "bob",
    password: "bob's password",
    groups: &["contractors"],
    is_admin: false,
    locale: "en",
};
/// In scope, but policy allows email only and requires 1 method.
pub const ERIN: Account = Account {
    user_id: "erin",
    password: "erin's password",
    groups: &["staff", "email-only"],
    is_admin: false,
    locale: "",
};
/// Another in-scope user.
pub const DAVE: Account = Account {
    user_id: "dave",
    password: "dave's password",
    groups: &["staff"],
    is_admin: true,
    locale: "fr",
};

const ACCOUNTS: [&Account; 4] = [&ALICE, &BOB, &ERIN, &DAVE];

/// The stand-in directory's answer to a wrong password or unknown user.
pub const WRONG_PASSWORD: &str = "wrong user id or password";
/// The stand-in verification's answers to a bad code.
pub const WRONG_CODE: &str = "the code is not correct";
pub const EXPIRED_CODE: &str = "the code has expired, request a new one";

/// Everything the stand-ins were asked, and the codes the verification stand-in "sent".
#[derive(Default)]
pub struct Recorded {
    pub authenticate: Vec<AuthenticateRequest>,
    pub evaluate: Vec<EvaluateRequest>,
    pub issue_code: Vec<IssueCodeRequest>,
    pub check_code: Vec<CheckCodeRequest>,
    /// Live code per method id; a new issue replaces it.
    codes: HashMap<String, String>,
    expired: Vec<String>,
    issued: u64,
    /// Accept a code more than once (to race confirmations past verification).
    pub reusable_codes: bool,
    /// What the policy stand-in answers as `reconfirm_after_days`.
    pub reconfirm_after_days: u32,
    /// What the policy stand-in answers as the abuse limits (get_policy and evaluate).
    pub limits: Option<sspr_proto::admin::v1::Limits>,
}

pub struct Harness {
    pub nats: NatsServer,
    /// The test's own connection, playing the gateway.
    pub bus: Bus,
    pub clock: ManualClock,
    recorded: Arc<Mutex<Recorded>>,
    shutdown: CancellationToken,
    service: Option<JoinHandle<anyhow::Result<()>>>,
    stand_ins: Vec<JoinHandle<Result<(), BusError>>>,
    db: TestDb,
}

impl Harness {
    /// On a fresh SQLite database.
    pub async fn start() -> Harness {
        Self::start_on(TestDb::sqlite().expect("sqlite test db")).await
    }

    /// Every backend to run a test on: SQLite, and PostgreSQL when `SSPR_TEST_POSTGRES_URL` is set.
    pub async fn backends() -> Vec<TestDb> {
        TestDb::all().await.expect("test databases")
    }

    pub async fn start_on(db: TestDb) -> Harness {
        sspr_testkit::init_test_tracing();
        let nats = NatsServer::start().await.expect("nats-server starts");
        let clock = ManualClock::new(Utc::now());
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let shutdown = CancellationToken::new();

        let mut stand_ins = Vec::new();
        for router in [
            directory(&recorded),
            policy(&recorded),
            verification(&recorded, &clock),
        ] {
            let bus = connect(&nats, "stand-in").await;
            let stop = shutdown.clone();
            stand_ins.push(tokio::spawn(async move {
                sspr_bus::serve(&bus, router, stop.cancelled_owned()).await
            }));
        }

        let conn = sspr_storage::connect(sspr_enrolment::SERVICE, &db.settings())
            .await
            .expect("database");
        let ctx = ServiceContext {
            bus: connect(&nats, "sspr-enrolment").await,
            db: conn,
            clock: Arc::new(clock.clone()),
        };
        let service = tokio::spawn(sspr_enrolment::run(
            ctx,
            sspr_enrolment::Config::default(),
            shutdown.clone(),
        ));

        let harness = Harness {
            bus: connect(&nats, "test-client").await,
            nats,
            clock,
            recorded,
            shutdown,
            service: Some(service),
            stand_ins,
            db,
        };
        harness.wait_until_serving().await;
        harness
    }

    async fn wait_until_serving(&self) {
        for _ in 0..200 {
            let answer: Result<ListMethodsResponse, BusError> = self
                .bus
                .request(
                    subjects::rpc::enrolment::LIST_METHODS,
                    &ListMethodsRequest {
                        user_id: "probe".into(),
                        ..Default::default()
                    },
                )
                .await;
            match answer {
                Ok(_) => return,
                Err(BusError::NoResponders(_)) => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("enrolment answered the probe with {e}"),
            }
        }
        panic!("enrolment did not start serving");
    }

    /// Stops the service and the stand-ins; the service must return cleanly.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(service) = self.service.take() {
            let result = tokio::time::timeout(Duration::from_secs(15), service).await;
            result
                .expect("enrolment stops in time")
                .expect("task joins")
                .expect("run returns Ok");
        }
        for s in self.stand_ins.drain(..) {
            let _ = s.await;
        }
        let backend = self.db.backend();
        let db = std::mem::replace(&mut self.db, TestDb::sqlite().expect("placeholder"));
        db.cleanup()
            .await
            .unwrap_or_else(|e| panic!("cleaning up the {backend} database: {e:#}"));
    }

    /// A second connection to the service's database, to look at its rows.
    pub async fn db_connection(&self) -> sea_orm::DatabaseConnection {
        sspr_storage::connect(sspr_enrolment::SERVICE, &self.db.settings())
            .await
            .expect("database")
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        self.db.backend()
    }

    /// Sends a request as the gateway would; a refusal comes back as `Err`.
    pub async fn call<Req: Message, Resp: Message + Default>(
        &self,
        subject: &str,
        request: &Req,
    ) -> Result<Resp, RpcError> {
        match self.bus.request(subject, request).await {
            Ok(r) => Ok(r),
            Err(BusError::Rpc(e)) => Err(e),
            Err(other) => panic!("bus failure calling {subject}: {other}"),
        }
    }

    pub async fn begin(&self, account: &Account) -> Result<BeginRegistrationResponse, RpcError> {
        self.begin_with(account.user_id, account.password).await
    }

    pub async fn begin_with(
        &self,
        user_id: &str,
        password: &str,
    ) -> Result<BeginRegistrationResponse, RpcError> {
        let req = BeginRegistrationRequest {
            user_id: user_id.into(),
            password: password.into(),
            locale: String::new(),
            client_ip: "198.51.100.7".into(),
        };
        self.call(subjects::rpc::enrolment::BEGIN_REGISTRATION, &req)
            .await
    }

    pub async fn add(
        &self,
        session_id: &str,
        kind: MethodKind,
        destination: &str,
    ) -> Result<AddMethodResponse, RpcError> {
        let req = AddMethodRequest {
            session_id: session_id.into(),
            kind: kind as i32,
            destination: destination.into(),
            client_ip: "198.51.100.7".into(),
        };
        self.call(subjects::rpc::enrolment::ADD_METHOD, &req).await
    }

    pub async fn confirm(
        &self,
        session_id: &str,
        method_id: &str,
        code: &str,
    ) -> Result<ConfirmMethodResponse, RpcError> {
        let req = ConfirmMethodRequest {
            session_id: session_id.into(),
            method_id: method_id.into(),
            code: code.into(),
        };
        self.call(subjects::rpc::enrolment::CONFIRM_METHOD, &req)
            .await
    }

    /// Proves the existing method `method_id` in the session (SendStepUpCode, then
    /// VerifyStepUpCode with the code the stand-in "sent"), so it may change the user's methods.
    pub async fn step_up(&self, session_id: &str, method_id: &str) -> Result<(), RpcError> {
        let send = sspr_proto::internal::enrolment::v1::SendStepUpCodeRequest {
            session_id: session_id.into(),
            method_id: method_id.into(),
            client_ip: String::new(),
        };
        let _: sspr_proto::internal::enrolment::v1::SendStepUpCodeResponse = self
            .call(subjects::rpc::enrolment::SEND_STEP_UP_CODE, &send)
            .await?;
        let verify = sspr_proto::internal::enrolment::v1::VerifyStepUpCodeRequest {
            session_id: session_id.into(),
            method_id: method_id.into(),
            code: self.code_for(method_id),
        };
        let _: sspr_proto::internal::enrolment::v1::VerifyStepUpCodeResponse = self
            .call(subjects::rpc::enrolment::VERIFY_STEP_UP_CODE, &verify)
            .await?;
        Ok(())
    }

    /// Adds a destination and confirms it with the code the stand-in "sent".
    pub async fn register(
        &self,
        session_id: &str,
        kind: MethodKind,
        destination: &str,
    ) -> (String, bool) {
        let added = self
            .add(session_id, kind, destination)
            .await
            .expect("add_method");
        let code = self.code_for(&added.method_id);
        let confirmed = self
            .confirm(session_id, &added.method_id, &code)
            .await
            .expect("confirm_method");
        (added.method_id, confirmed.registration_complete)
    }

    pub async fn status(
        &self,
        user_id: &str,
        password: &str,
    ) -> Result<GetStatusResponse, RpcError> {
        let req = GetStatusRequest {
            user_id: user_id.into(),
            password: password.into(),
            client_ip: "198.51.100.7".into(),
        };
        self.call(subjects::rpc::enrolment::GET_STATUS, &req).await
    }

    pub async fn list_own(&self, session_id: &str) -> Result<ListOwnMethodsResponse, RpcError> {
        let req = ListOwnMethodsRequest {
            session_id: session_id.into(),
        };
        self.call(subjects::rpc::enrolment::LIST_OWN_METHODS, &req)
            .await
    }

    pub async fn remove(
        &self,
        session_id: &str,
        method_id: &str,
    ) -> Result<RemoveMethodResponse, RpcError> {
        let req = RemoveMethodRequest {
            session_id: session_id.into(),
            method_id: method_id.into(),
        };
        self.call(subjects::rpc::enrolment::REMOVE_METHOD, &req)
            .await
    }

    pub async fn list(&self, user_id: &str) -> Result<ListMethodsResponse, RpcError> {
        self.call(
            subjects::rpc::enrolment::LIST_METHODS,
            &ListMethodsRequest {
                user_id: user_id.into(),
                ..Default::default()
            },
        )
        .await
    }

    /// The live code the verification stand-in issued for `method_id` (what the user received).
    pub fn code_for(&self, method_id: &str) -> String {
        self.recorded()
            .codes
            .get(method_id)
            .cloned()
            .expect("a code was issued for this method")
    }

    /// Makes the stand-in treat the current code of `method_id` as expired.
    pub fn expire_code(&self, method_id: &str) {
        self.recorded().expired.push(method_id.to_owned());
    }

    pub fn recorded(&self) -> MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every message in the SSPR_EVENTS stream, once at least `min` are on `subject`.
    pub async fn events(
        &self,
        subject: &str,
        min: usize,
    ) -> Vec<async_nats::jetstream::message::StreamMessage> {
        for _ in 0..100 {
            let all = self.all_events().await;
            if all.iter().filter(|m| m.subject.as_str() == subject).count() >= min {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("fewer than {min} events on {subject} after 5s");
    }

    async fn all_events(&self) -> Vec<async_nats::jetstream::message::StreamMessage> {
        let mut stream = self
            .bus
            .jetstream()
            .get_stream(subjects::EVENTS_STREAM)
            .await
            .expect("events stream");
        let last = stream
            .info()
            .await
            .expect("stream info")
            .state
            .last_sequence;
        let mut out = Vec::new();
        for seq in 1..=last {
            if let Ok(m) = stream.get_raw_message(seq).await {
                out.push(m);
            }
        }
        out
    }
}

async fn connect(nats: &NatsServer, name: &str) -> Bus {
    Bus::connect(&BusConfig::new(nats.url(), name))
        .await
        .expect("connect to nats")
}

fn lock(recorded: &Arc<Mutex<Recorded>>) -> MutexGuard<'_, Recorded> {
    recorded.lock().unwrap_or_else(|p| p.into_inner())
}

fn account(user_id: &str) -> Option<&'static Account> {
    ACCOUNTS.into_iter().find(|a| a.user_id == user_id)
}

fn directory(recorded: &Arc<Mutex<Recorded>>) -> Router {
    let recorded = Arc::clone(recorded);
    Router::new("directory", "stand-in directory").route(
        subjects::rpc::directory::AUTHENTICATE,
        move |_ctx, req: AuthenticateRequest| {
            let recorded = Arc::clone(&recorded);
            async move {
                lock(&recorded).authenticate.push(req.clone());
                match account(&req.user_id) {
                    Some(a) if a.password == req.password => Ok(AuthenticateResponse {
                        user: Some(UserRecord {
                            user_id: a.user_id.into(),
                            display_name: a.user_id.to_uppercase(),
                            locale: a.locale.into(),
                            group_ids: a.groups.iter().map(|g| g.to_string()).collect(),
                            is_admin: a.is_admin,
                            enabled: true,
                            has_password: true,
                            ..Default::default()
                        }),
                    }),
                    _ => Err(RpcError::unauthenticated(WRONG_PASSWORD)),
                }
            }
        },
    )
}

fn policy(recorded: &Arc<Mutex<Recorded>>) -> Router {
    let policy_recorded = Arc::clone(recorded);
    let recorded = Arc::clone(recorded);
    Router::new("policy", "stand-in policy")
        .route(
            subjects::rpc::policy::GET_POLICY,
            move |_ctx, _req: sspr_proto::internal::policy::v1::GetPolicyRequest| {
                let limits = lock(&policy_recorded).limits.clone();
                async move {
                    Ok(sspr_proto::internal::policy::v1::GetPolicyResponse {
                        policy: Some(sspr_proto::admin::v1::Policy {
                            limits,
                            ..Default::default()
                        }),
                    })
                }
            },
        )
        .route(
            subjects::rpc::policy::EVALUATE,
            move |_ctx, req: EvaluateRequest| {
                let recorded = Arc::clone(&recorded);
                async move {
                    let (reconfirm_after_days, limits) = {
                        let mut r = lock(&recorded);
                        r.evaluate.push(req.clone());
                        (r.reconfirm_after_days, r.limits.clone())
                    };
                    let in_scope = req.enabled && req.group_ids.iter().any(|g| g == "staff");
                    let email_only = req.group_ids.iter().any(|g| g == "email-only");
                    Ok(EvaluateResponse {
                        eligible: in_scope,
                        methods_required: if email_only { 1 } else { 2 },
                        allowed_methods: if email_only {
                            vec![MethodKind::Email as i32]
                        } else {
                            vec![MethodKind::Email as i32, MethodKind::Sms as i32]
                        },
                        reconfirm_after_days,
                        limits,
                        ..Default::default()
                    })
                }
            },
        )
}

fn verification(recorded: &Arc<Mutex<Recorded>>, clock: &ManualClock) -> Router {
    let issue_recorded = Arc::clone(recorded);
    let check_recorded = Arc::clone(recorded);
    let clock = clock.clone();
    Router::new("verification", "stand-in verification")
        .route(
            subjects::rpc::verification::ISSUE_CODE,
            move |_ctx, req: IssueCodeRequest| {
                let recorded = Arc::clone(&issue_recorded);
                let now = clock.now();
                async move {
                    let mut r = lock(&recorded);
                    r.issued += 1;
                    let code = format!("{:08}", (r.issued * 48_271 + 12_345) % 100_000_000);
                    r.codes.insert(req.method_id.clone(), code);
                    r.expired.retain(|m| m != &req.method_id);
                    r.issue_code.push(req);
                    Ok(IssueCodeResponse {
                        expires_at: Some(sspr_proto::time::timestamp(
                            now + chrono::Duration::minutes(10),
                        )),
                        resend_after: Some(sspr_proto::time::timestamp(
                            now + chrono::Duration::seconds(60),
                        )),
                    })
                }
            },
        )
        .route(
            subjects::rpc::verification::CHECK_CODE,
            move |_ctx, req: CheckCodeRequest| {
                let recorded = Arc::clone(&check_recorded);
                async move {
                    let mut r = lock(&recorded);
                    r.check_code.push(req.clone());
                    if r.expired.contains(&req.method_id) {
                        return Err(RpcError::failed_precondition(EXPIRED_CODE));
                    }
                    match r.codes.get(&req.method_id) {
                        Some(code) if *code == req.code => {
                            if !r.reusable_codes {
                                r.codes.remove(&req.method_id);
                            }
                            Ok(CheckCodeResponse {})
                        }
                        _ => Err(RpcError::invalid_argument(WRONG_CODE)),
                    }
                }
            },
        )
}
