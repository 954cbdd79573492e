//! Starts the verification service in-process against a private nats-server and a fresh SQLite
//! (or PostgreSQL) database, with small stand-ins for directory, policy and enrolment that
//! answer from a canned [`World`] and record what they were asked.
//!
//! The stand-in for notification is the test itself: it pulls deliveries from `SSPR_DELIVERY`
//! and opens them with the code key, as notification would.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, pull};
use futures::StreamExt;
use prost::Message;
use sspr_bus::subjects::{self, rpc};
use sspr_bus::{Bus, BusError, Router, RpcError};
use sspr_clock::ManualClock;
use sspr_proto::common::v1::{ContactMethod, MethodKind, SecurityQuestion};
use sspr_proto::internal::directory::v1 as dir;
use sspr_proto::internal::enrolment::v1 as enr;
use sspr_proto::internal::notification::v1::{Delivery, SealedDelivery};
use sspr_proto::internal::policy::v1 as pol;
use sspr_proto::internal::verification::v1 as ver;
use sspr_runtime::{Secret, ServiceContext};
use sspr_testkit::{NatsServer, TestDb};
use tokio_util::sync::CancellationToken;

/// A password the directory stand-in refuses (shorter than 12 characters).
pub const WEAK_PASSWORD: &str = "short";
pub const GOOD_PASSWORD: &str = "correct horse battery staple";

/// What the stand-ins know.
#[derive(Clone, Debug, Default)]
pub struct World {
    pub users: Vec<dir::UserRecord>,
    /// Per user: registered methods and their full destinations.
    pub methods: HashMap<String, Vec<(ContactMethod, String)>>,
    pub methods_required: u32,
    pub allowed: Vec<MethodKind>,
    /// Users the policy does not cover.
    pub out_of_scope: Vec<String>,
    /// Policy: type the full destination before a code is sent.
    pub require_full_destination: bool,
    /// Policy: helpdesk contact.
    pub helpdesk_contact: String,
    /// Policy: security questions (id, text), when `allowed` has them (never for admins).
    pub questions: Vec<(String, String)>,
    pub questions_to_register: u32,
    pub questions_to_reset: u32,
    /// Per user: answers (question id, answer) of their security-questions method.
    pub answers: HashMap<String, Vec<(String, String)>>,
    /// Policy: abuse limits (`None`: every default).
    pub limits: Option<sspr_proto::admin::v1::Limits>,
}

impl World {
    /// alice: enabled, one email method `m-email`; policy ALL, one method, email and SMS allowed.
    pub fn one_method() -> Self {
        let mut world = World {
            methods_required: 1,
            allowed: vec![MethodKind::Email, MethodKind::Sms],
            // These tests spend many wrong codes on one user: the reset block after 5 failed
            // verifications (tested in the attack suite) would cut them short.
            limits: Some(sspr_proto::admin::v1::Limits {
                failed_verifications_per_day: Some(100),
                ..Default::default()
            }),
            ..Default::default()
        };
        world.add_user("alice", true);
        world.add_method(
            "alice",
            "m-email",
            MethodKind::Email,
            "a•••@e•••.com",
            "alice@example.com",
        );
        world
    }

    /// alice with an email and a phone; the policy requires both.
    pub fn two_methods() -> Self {
        let mut world = Self::one_method();
        world.methods_required = 2;
        world.add_method(
            "alice",
            "m-sms",
            MethodKind::Sms,
            "+•• •••• ••67",
            "+41791234567",
        );
        world
    }

    /// Whether `method_id` is `user_id`'s security-questions method.
    pub fn has_questions(&self, user_id: &str, method_id: &str) -> bool {
        self.methods.get(user_id).is_some_and(|ms| {
            ms.iter().any(|(m, _)| {
                m.method_id == method_id && m.kind == MethodKind::SecurityQuestions as i32
            })
        })
    }

    pub fn add_user(&mut self, user_id: &str, enabled: bool) {
        self.users.push(dir::UserRecord {
            user_id: user_id.into(),
            display_name: user_id.into(),
            locale: "de-CH".into(),
            group_ids: vec!["staff".into()],
            is_admin: false,
            enabled,
            has_password: true,
            ..Default::default()
        });
    }

    pub fn add_method(
        &mut self,
        user_id: &str,
        method_id: &str,
        kind: MethodKind,
        masked: &str,
        destination: &str,
    ) {
        self.methods.entry(user_id.into()).or_default().push((
            ContactMethod {
                method_id: method_id.into(),
                kind: kind as i32,
                masked_destination: masked.into(),
            },
            destination.into(),
        ));
    }
}

/// What the stand-ins received.
#[derive(Debug, Default)]
pub struct Received {
    pub get_user: Vec<String>,
    pub evaluate: Vec<pol::EvaluateRequest>,
    pub list_methods: Vec<String>,
    pub get_destination: Vec<enr::GetDestinationRequest>,
    pub set_password: Vec<dir::SetPasswordRequest>,
}

/// A delivery as notification would see it.
#[derive(Debug)]
pub struct ReceivedDelivery {
    pub subject: String,
    pub msg_id: Option<String>,
    pub raw: Vec<u8>,
    pub delivery: Delivery,
}

/// A raw event from `SSPR_EVENTS`.
#[derive(Debug, Clone)]
pub struct RawEvent {
    pub subject: String,
    pub payload: Vec<u8>,
    pub msg_id: Option<String>,
}

pub struct Harness {
    pub nats: NatsServer,
    pub db: TestDb,
    pub bus: Bus,
    pub clock: ManualClock,
    pub key: [u8; 32],
    pub received: Arc<Mutex<Received>>,
    shutdown: CancellationToken,
    service: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    deliveries: Option<async_nats::jetstream::consumer::Consumer<pull::Config>>,
}

impl Harness {
    /// SQLite, resend wait 0.
    pub async fn start(world: World) -> Harness {
        Self::start_with(world, TestDb::sqlite().expect("sqlite test db"), |_| {}).await
    }

    pub async fn start_with(
        world: World,
        db: TestDb,
        tune: impl FnOnce(&mut sspr_verification::Config),
    ) -> Harness {
        sspr_testkit::init_test_tracing();
        let nats = NatsServer::start().await.expect("nats-server");
        let bus = Bus::connect(&sspr_bus::BusConfig::new(nats.url(), "verification-test"))
            .await
            .expect("bus");
        let key = sspr_testkit::random_code_key();
        let clock =
            ManualClock::new(chrono::DateTime::from_timestamp(1_750_000_000, 0).expect("time"));
        let received = Arc::new(Mutex::new(Received::default()));
        let shutdown = CancellationToken::new();

        start_stand_ins(&bus, Arc::new(world), Arc::clone(&received), &shutdown);

        let mut config = sspr_verification::Config::new(Secret::new(key));
        config.resend_after = chrono::Duration::zero();
        tune(&mut config);
        let service_bus = Bus::connect(&sspr_bus::BusConfig::new(nats.url(), "sspr-verification"))
            .await
            .expect("bus");
        let database = sspr_storage::connect(sspr_verification::SERVICE, &db.settings())
            .await
            .expect("database");
        let ctx = ServiceContext {
            bus: service_bus,
            db: database,
            clock: Arc::new(clock.clone()),
        };
        let service = tokio::spawn(sspr_verification::run(ctx, config, shutdown.clone()));

        let harness = Harness {
            nats,
            db,
            bus,
            clock,
            key,
            received,
            shutdown,
            service: Some(service),
            deliveries: None,
        };
        for name in ["verification", "directory", "policy", "enrolment"] {
            harness.wait_for_service(name).await;
        }
        harness
    }

    pub fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        sspr_clock::Clock::now(&self.clock)
    }

    async fn wait_for_service(&self, name: &str) {
        let subject = format!("$SRV.PING.sspr-{name}");
        for _ in 0..200 {
            if self
                .bus
                .client()
                .request(subject.clone(), "".into())
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("service sspr-{name} did not come up");
    }

    /// Calls the verification service; a refusal comes back as its `RpcError`.
    pub async fn call<Req: Message, Resp: Message + Default>(
        &self,
        subject: &str,
        req: &Req,
    ) -> Result<Resp, RpcError> {
        match self.bus.request::<Req, Resp>(subject, req).await {
            Ok(resp) => Ok(resp),
            Err(BusError::Rpc(e)) => Err(e),
            Err(e) => panic!("bus failure calling {subject}: {e}"),
        }
    }

    pub async fn start_reset(&self, user_id: &str) -> Result<ver::StartResetResponse, RpcError> {
        self.call(
            rpc::verification::START_RESET,
            &ver::StartResetRequest {
                user_id: user_id.into(),
                locale: String::new(),
                client_ip: "192.0.2.7".into(),
                ..Default::default()
            },
        )
        .await
    }

    pub async fn send_code(
        &self,
        session_id: &str,
        method_id: &str,
    ) -> Result<ver::SendCodeResponse, RpcError> {
        self.call(
            rpc::verification::SEND_CODE,
            &ver::SendCodeRequest {
                session_id: session_id.into(),
                method_id: method_id.into(),
                client_ip: "192.0.2.7".into(),
                ..Default::default()
            },
        )
        .await
    }

    /// SendCode with a typed destination confirmation.
    pub async fn send_code_confirmed(
        &self,
        session_id: &str,
        method_id: &str,
        confirmation: &str,
    ) -> Result<ver::SendCodeResponse, RpcError> {
        self.call(
            rpc::verification::SEND_CODE,
            &ver::SendCodeRequest {
                session_id: session_id.into(),
                method_id: method_id.into(),
                client_ip: "192.0.2.7".into(),
                destination_confirmation: confirmation.into(),
            },
        )
        .await
    }

    pub async fn verify_code(
        &self,
        session_id: &str,
        method_id: &str,
        code: &str,
    ) -> Result<ver::VerifyCodeResponse, RpcError> {
        self.call(
            rpc::verification::VERIFY_CODE,
            &ver::VerifyCodeRequest {
                session_id: session_id.into(),
                method_id: method_id.into(),
                code: code.into(),
            },
        )
        .await
    }

    pub async fn complete_reset(
        &self,
        session_id: &str,
        new_password: &str,
    ) -> Result<ver::CompleteResetResponse, RpcError> {
        self.call(
            rpc::verification::COMPLETE_RESET,
            &ver::CompleteResetRequest {
                session_id: session_id.into(),
                new_password: new_password.into(),
            },
        )
        .await
    }

    pub async fn get_security_questions(
        &self,
        session_id: &str,
        method_id: &str,
    ) -> Result<ver::GetSecurityQuestionsResponse, RpcError> {
        self.call(
            rpc::verification::GET_SECURITY_QUESTIONS,
            &ver::GetSecurityQuestionsRequest {
                session_id: session_id.into(),
                method_id: method_id.into(),
            },
        )
        .await
    }

    pub async fn answer_security_questions(
        &self,
        session_id: &str,
        method_id: &str,
        answers: Vec<(String, String)>,
    ) -> Result<ver::AnswerSecurityQuestionsResponse, RpcError> {
        self.call(
            rpc::verification::ANSWER_SECURITY_QUESTIONS,
            &ver::AnswerSecurityQuestionsRequest {
                session_id: session_id.into(),
                method_id: method_id.into(),
                answers: answers
                    .into_iter()
                    .map(
                        |(question_id, answer)| sspr_proto::common::v1::SecurityAnswer {
                            question_id,
                            answer,
                        },
                    )
                    .collect(),
            },
        )
        .await
    }

    /// Pulls the next delivery from `SSPR_DELIVERY` (acking it) and opens it with the key.
    pub async fn next_delivery(&mut self) -> ReceivedDelivery {
        self.try_next_delivery(Duration::from_secs(10))
            .await
            .expect("a delivery on SSPR_DELIVERY")
    }

    pub async fn try_next_delivery(&mut self, wait: Duration) -> Option<ReceivedDelivery> {
        if self.deliveries.is_none() {
            let stream = self
                .bus
                .jetstream()
                .get_stream(subjects::DELIVERY_STREAM)
                .await
                .expect("delivery stream");
            let consumer = stream
                .get_or_create_consumer(
                    "verification-test",
                    pull::Config {
                        durable_name: Some("verification-test".into()),
                        ack_policy: AckPolicy::Explicit,
                        ..Default::default()
                    },
                )
                .await
                .expect("delivery consumer");
            self.deliveries = Some(consumer);
        }
        let consumer = self.deliveries.as_ref().expect("consumer");
        let mut batch = consumer
            .fetch()
            .max_messages(1)
            .expires(wait)
            .messages()
            .await
            .expect("fetch");
        let message = batch.next().await?.expect("delivery message");
        message.ack().await.expect("ack");
        let raw = message.payload.to_vec();
        let sealed = SealedDelivery::decode(message.payload.clone()).expect("a SealedDelivery");
        let delivery = sspr_bus::sealed::open(&self.key, &sealed).expect("opens with the code key");
        let msg_id = message
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_owned());
        Some(ReceivedDelivery {
            subject: message.subject.to_string(),
            msg_id,
            raw,
            delivery,
        })
    }

    /// How many messages were ever published to `SSPR_DELIVERY`, waiting (up to 10 s) until
    /// there are at least `at_least`.
    pub async fn deliveries_published(&self, at_least: u64) -> u64 {
        let mut stream = self
            .bus
            .jetstream()
            .get_stream(subjects::DELIVERY_STREAM)
            .await
            .expect("delivery stream");
        let mut last = 0;
        for _ in 0..200 {
            last = stream
                .info()
                .await
                .expect("stream info")
                .state
                .last_sequence;
            if last >= at_least {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        last
    }

    /// Every event published so far, waiting until at least `at_least` are there.
    pub async fn events(&self, at_least: u64) -> Vec<RawEvent> {
        let mut stream = self
            .bus
            .jetstream()
            .get_stream(subjects::EVENTS_STREAM)
            .await
            .expect("events stream");
        let mut last = 0;
        for _ in 0..200 {
            last = stream
                .info()
                .await
                .expect("stream info")
                .state
                .last_sequence;
            if last >= at_least {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            last >= at_least,
            "expected at least {at_least} events, found {last}"
        );
        let mut out = Vec::new();
        for seq in 1..=last {
            let m = stream.get_raw_message(seq).await.expect("event message");
            out.push(RawEvent {
                subject: m.subject.to_string(),
                payload: m.payload.to_vec(),
                msg_id: m.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_owned()),
            });
        }
        out
    }

    /// Events once the outbox had time to drain: for asserting that something was NOT emitted.
    pub async fn settled_events(&self) -> Vec<RawEvent> {
        tokio::time::sleep(Duration::from_millis(800)).await;
        self.events(0).await
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(service) = self.service.take() {
            service
                .await
                .expect("service task")
                .expect("service ran cleanly");
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Full reset up to the code: StartReset, SendCode, and the delivered code.
pub async fn session_with_code(
    h: &mut Harness,
    user: &str,
    method: &str,
) -> (ver::StartResetResponse, Delivery) {
    let started = h.start_reset(user).await.expect("start_reset");
    h.send_code(&started.session_id, method)
        .await
        .expect("send_code");
    let delivery = h.next_delivery().await.delivery;
    (started, delivery)
}

/// A code that is not `code` (same length).
pub fn other_code(code: &str) -> String {
    code.chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect()
}

fn start_stand_ins(
    bus: &Bus,
    world: Arc<World>,
    received: Arc<Mutex<Received>>,
    shutdown: &CancellationToken,
) {
    let directory = {
        let (w1, r1, r2) = (
            Arc::clone(&world),
            Arc::clone(&received),
            Arc::clone(&received),
        );
        Router::new(rpc::directory::SERVICE, "stand-in directory")
            .route(
                rpc::directory::GET_USER,
                move |_ctx, req: dir::GetUserRequest| {
                    let (w, r) = (Arc::clone(&w1), Arc::clone(&r1));
                    async move {
                        r.lock().expect("lock").get_user.push(req.user_id.clone());
                        let user = w.users.iter().find(|u| u.user_id == req.user_id).cloned();
                        Ok::<_, RpcError>(dir::GetUserResponse {
                            found: user.is_some(),
                            user,
                        })
                    }
                },
            )
            .route(
                rpc::directory::SET_PASSWORD,
                move |_ctx, req: dir::SetPasswordRequest| {
                    let r = Arc::clone(&r2);
                    async move {
                        let weak = req.new_password.chars().count() < 12;
                        r.lock().expect("lock").set_password.push(req);
                        if weak {
                            return Err(RpcError::invalid_argument(
                                "password rejected: must be at least 12 characters",
                            ));
                        }
                        Ok(dir::SetPasswordResponse::default())
                    }
                },
            )
    };
    let policy = {
        let (w, r) = (Arc::clone(&world), Arc::clone(&received));
        Router::new(rpc::policy::SERVICE, "stand-in policy").route(
            rpc::policy::EVALUATE,
            move |_ctx, req: pol::EvaluateRequest| {
                let (w, r) = (Arc::clone(&w), Arc::clone(&r));
                async move {
                    let eligible = req.enabled && !w.out_of_scope.contains(&req.user_id);
                    let is_admin = req.is_admin;
                    // Like the real policy: questions only where allowed, never for admins.
                    let questions = !is_admin && w.allowed.contains(&MethodKind::SecurityQuestions);
                    let allowed: Vec<i32> = w
                        .allowed
                        .iter()
                        .filter(|k| !is_admin || **k != MethodKind::SecurityQuestions)
                        .map(|k| *k as i32)
                        .collect();
                    r.lock().expect("lock").evaluate.push(req);
                    Ok::<_, RpcError>(pol::EvaluateResponse {
                        eligible,
                        // Like the real policy: the requirement does not depend on eligibility.
                        methods_required: if is_admin { 2 } else { w.methods_required },
                        allowed_methods: allowed,
                        reconfirm_after_days: 0,
                        require_full_destination: w.require_full_destination,
                        helpdesk_contact: w.helpdesk_contact.clone(),
                        security_questions: if questions {
                            w.questions
                                .iter()
                                .map(|(id, text)| SecurityQuestion {
                                    question_id: id.clone(),
                                    text: text.clone(),
                                })
                                .collect()
                        } else {
                            Vec::new()
                        },
                        questions_required_to_register: if questions {
                            w.questions_to_register
                        } else {
                            0
                        },
                        questions_required_to_reset: if questions {
                            w.questions_to_reset
                        } else {
                            0
                        },
                        limits: w.limits.clone(),
                        ..Default::default()
                    })
                }
            },
        )
    };
    let enrolment = {
        let (w4, w5) = (Arc::clone(&world), Arc::clone(&world));
        let w3 = Arc::clone(&world);
        let (w1, w2, r1, r2) = (
            Arc::clone(&world),
            Arc::clone(&world),
            Arc::clone(&received),
            Arc::clone(&received),
        );
        Router::new(rpc::enrolment::SERVICE, "stand-in enrolment")
            .route(
                rpc::enrolment::LIST_METHODS,
                move |_ctx, req: enr::ListMethodsRequest| {
                    let (w, r) = (Arc::clone(&w1), Arc::clone(&r1));
                    async move {
                        r.lock()
                            .expect("lock")
                            .list_methods
                            .push(req.user_id.clone());
                        let methods = w
                            .methods
                            .get(&req.user_id)
                            .map(|ms| ms.iter().map(|(m, _)| m.clone()).collect())
                            .unwrap_or_default();
                        Ok::<_, RpcError>(enr::ListMethodsResponse {
                            methods,
                            ..Default::default()
                        })
                    }
                },
            )
            .route(
                rpc::enrolment::GET_DESTINATION,
                move |_ctx, req: enr::GetDestinationRequest| {
                    let (w, r) = (Arc::clone(&w2), Arc::clone(&r2));
                    async move {
                        r.lock().expect("lock").get_destination.push(req.clone());
                        let found = w
                            .methods
                            .get(&req.user_id)
                            .and_then(|ms| ms.iter().find(|(m, _)| m.method_id == req.method_id))
                            .cloned();
                        match found {
                            Some((m, destination)) => Ok(enr::GetDestinationResponse {
                                kind: m.kind,
                                destination,
                            }),
                            None => Err(RpcError::not_found("unknown method")),
                        }
                    }
                },
            )
            .route(
                rpc::enrolment::MATCH_DESTINATION,
                move |_ctx, req: enr::MatchDestinationRequest| {
                    let w = Arc::clone(&w3);
                    async move {
                        // Like enrolment for email: trimmed and lower-cased on both sides.
                        let norm = |s: &str| s.trim().to_lowercase();
                        match w
                            .methods
                            .get(&req.user_id)
                            .and_then(|ms| ms.iter().find(|(m, _)| m.method_id == req.method_id))
                        {
                            Some((_, destination)) => Ok(enr::MatchDestinationResponse {
                                matches: norm(destination) == norm(&req.candidate),
                            }),
                            None => Err(RpcError::not_found("unknown method")),
                        }
                    }
                },
            )
            .route(
                rpc::enrolment::LIST_ANSWERED_QUESTIONS,
                move |_ctx, req: enr::ListAnsweredQuestionsRequest| {
                    let w = Arc::clone(&w4);
                    async move {
                        // Like enrolment: only the user's own questions method is known.
                        match w.answers.get(&req.user_id) {
                            Some(answers) if w.has_questions(&req.user_id, &req.method_id) => {
                                Ok(enr::ListAnsweredQuestionsResponse {
                                    question_ids: answers.iter().map(|(q, _)| q.clone()).collect(),
                                })
                            }
                            _ => Err(RpcError::not_found("unknown method")),
                        }
                    }
                },
            )
            .route(
                rpc::enrolment::CHECK_SECURITY_ANSWERS,
                move |_ctx, req: enr::CheckSecurityAnswersRequest| {
                    let w = Arc::clone(&w5);
                    async move {
                        match w.answers.get(&req.user_id) {
                            Some(stored) if w.has_questions(&req.user_id, &req.method_id) => {
                                let wrong = req
                                    .answers
                                    .iter()
                                    .filter(|a| {
                                        !stored
                                            .iter()
                                            .any(|(q, s)| *q == a.question_id && *s == a.answer)
                                    })
                                    .count() as u32;
                                Ok(enr::CheckSecurityAnswersResponse {
                                    ok: wrong == 0,
                                    wrong,
                                })
                            }
                            _ => Err(RpcError::not_found("unknown method")),
                        }
                    }
                },
            )
    };
    for router in [directory, policy, enrolment] {
        let bus = bus.clone();
        let token = shutdown.clone();
        tokio::spawn(async move { sspr_bus::serve(&bus, router, token.cancelled_owned()).await });
    }
}
