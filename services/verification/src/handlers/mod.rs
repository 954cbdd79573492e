//! The NATS endpoints: decode → validate → domain → store → reply.
//!
//! [`Verification`] holds what the endpoints share; [`router`] maps each subject of
//! `sspr.rpc.verification.*` to its handler. The issuing and checking paths are shared by the
//! reset endpoints ([`reset`]) and the registration endpoints ([`registration`]) so both purposes
//! follow the same rules and emit the same events. [`code_status`] answers where a reset code's
//! delivery stands (from the states [`crate::delivery_events`] keeps).
//!
//! Spans carry only `user_id`, `flow_id` and `method_id`; never a code, token, destination or
//! password. The reset steps' answers are counted by [`outcomes`] (decoys as real flows).

mod code_status;
mod outcomes;
mod password_check;
pub(crate) mod phone_guard;
mod questions;
mod registration;
mod reset;
mod throttle;
mod unlock;

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sspr_bus::subjects::{self, rpc::verification as rpc};
use sspr_bus::{Router, RpcError};
use sspr_clock::SharedClock;
use sspr_proto::common::v1 as common;
use sspr_proto::events::v1 as events;
use sspr_proto::internal::notification::v1::Delivery;
use sspr_proto::limits::Effective;
use sspr_proto::time::timestamp;
use sspr_storage::outbox::{OutboxMessage, OutboxSignal};
use uuid::Uuid;

use self::outcomes::Step;
use crate::adapters::peers::Peers;
use crate::adapters::phone_ledger::PhoneLedger;
use crate::adapters::store::{CodeKey, NewCode, ResendScope, Store};
use crate::adapters::throttle::ThrottleStore;
use crate::domain::code::{judge, may_resend};
use crate::domain::{
    Code, CodeBinding, CodeLength, CodeState, FlowId, Locale, MethodId, MethodKind, Purpose,
    Rejection, ResetSession, UserId, Verdict,
};
use crate::{Config, Error, SERVICE};

/// How often a verification re-reads and decides again after losing a race on the same code.
const MAX_RACE_RETRIES: usize = 5;

/// The state shared by every endpoint.
pub struct Verification {
    store: Store,
    peers: Peers,
    clock: SharedClock,
    config: Config,
    signal: OutboxSignal,
    /// Throttle counters and reset blocks, shared by every replica.
    throttles: ThrottleStore,
    /// Phone budgets and the SMS breaker, shared by every replica.
    phone_ledger: PhoneLedger,
}

/// The routes that honour the client's idempotency key (the mutating public calls).
pub const IDEMPOTENT: [&str; 7] = [
    rpc::START_RESET,
    rpc::SEND_CODE,
    rpc::VERIFY_CODE,
    rpc::COMPLETE_RESET,
    rpc::ANSWER_SECURITY_QUESTIONS,
    rpc::UNLOCK_ACCOUNT,
    rpc::CLEAR_BLOCK,
];

/// Maps every `sspr.rpc.verification.*` subject to its handler.
pub fn router(service: Arc<Verification>) -> Router {
    let router = Router::new(
        SERVICE,
        "sspr verification: reset flow, one-time codes, code deliveries",
    );
    let router = route(router, rpc::START_RESET, &service, |s, r| async move {
        measured(Step::Start, s.start_reset(r).await)
    });
    let router = route(router, rpc::SEND_CODE, &service, |s, r| async move {
        measured(Step::SendCode, s.send_code(r).await)
    });
    let router = route(router, rpc::VERIFY_CODE, &service, |s, r| async move {
        measured(Step::Verify, s.verify_code(r).await)
    });
    let router = route(router, rpc::GET_CODE_STATUS, &service, |s, r| async move {
        s.get_code_status(r).await
    });
    let router = route(router, rpc::COMPLETE_RESET, &service, |s, r| async move {
        measured(Step::Complete, s.complete_reset(r).await)
    });
    let router = route(router, rpc::CHECK_PASSWORD, &service, |s, r| async move {
        s.check_password(r).await
    });
    let router = route(router, rpc::UNLOCK_ACCOUNT, &service, |s, r| async move {
        s.unlock_account(r).await
    });
    let router = route(
        router,
        rpc::GET_SECURITY_QUESTIONS,
        &service,
        |s, r| async move { s.get_security_questions(r).await },
    );
    let router = route(
        router,
        rpc::ANSWER_SECURITY_QUESTIONS,
        &service,
        |s, r| async move { measured(Step::Verify, s.answer_security_questions(r).await) },
    );
    let router = route(router, rpc::ISSUE_CODE, &service, |s, r| async move {
        s.issue_code(r).await
    });
    let router = route(router, rpc::CLEAR_BLOCK, &service, |s, r| async move {
        s.clear_block(r).await
    });
    let router = route(router, rpc::GET_BLOCK, &service, |s, r| async move {
        s.get_block(r).await
    });
    route(router, rpc::CHECK_CODE, &service, |s, r| async move {
        s.check_code(r).await
    })
}

/// Counts a reset step's answer (`sspr_reset_outcomes_total`, see [`outcomes`]).
fn measured<T>(step: Step, result: Result<T, Error>) -> Result<T, Error> {
    outcomes::record(step, &result);
    result
}

fn route<Req, Resp, F, Fut>(
    router: Router,
    subject: &'static str,
    service: &Arc<Verification>,
    handler: F,
) -> Router
where
    Req: prost::Message + Default + 'static,
    Resp: prost::Message + 'static,
    F: Fn(Arc<Verification>, Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, Error>> + Send + 'static,
{
    let service = Arc::clone(service);
    router.route(subject, move |_ctx, req: Req| {
        let fut = handler(Arc::clone(&service), req);
        async move { fut.await.map_err(RpcError::from) }
    })
}

/// What a new code is for and where it goes.
struct Issue<'a> {
    purpose: Purpose,
    user_id: &'a UserId,
    method_id: &'a MethodId,
    kind: MethodKind,
    flow_id: &'a FlowId,
    locale: &'a Locale,
    /// `None` for a decoy: the code is stored (so throttles, expiry and attempts behave the
    /// same) but nothing is delivered and no event is emitted.
    destination: Option<String>,
    scope: ResendScope<'a>,
    /// The policy's limits, as the caller read them for this request: the resend wait
    /// ([`Verification::resend_wait`]), the new code's length (`code_length`) and the phone
    /// rules come from here, so issuing asks the policy nothing more.
    limits: &'a Effective,
}

/// When an issued code expires and when the next one may be requested.
struct Issued {
    expires_at: DateTime<Utc>,
    resend_after: DateTime<Utc>,
}

/// A code check to run.
struct Check<'a> {
    purpose: Purpose,
    user_id: &'a UserId,
    method_id: &'a MethodId,
    flow_id: &'a FlowId,
    candidate: &'a Code,
    /// A decoy never matches.
    decoy: bool,
    /// For reset: the session's token hash and the session as read, to record the method.
    session: Option<(&'a str, &'a ResetSession)>,
}

/// The result of one pass of [`Verification::check_once`].
enum CheckPass {
    /// Accepted; for reset, the session with the method recorded.
    Accepted(Option<ResetSession>),
    Rejected(Rejection),
    /// The code or session changed under us: read again.
    Raced,
}

impl Verification {
    pub fn new(
        store: Store,
        peers: Peers,
        clock: SharedClock,
        config: Config,
        signal: OutboxSignal,
        throttles: ThrottleStore,
        phone_ledger: PhoneLedger,
    ) -> Self {
        Self {
            store,
            peers,
            clock,
            config,
            signal,
            throttles,
            phone_ledger,
        }
    }

    /// The key of the decoy methods (`SSPR_DECOY_KEY`, by default the current code key).
    fn key(&self) -> &[u8; 32] {
        self.config.decoy_key.expose()
    }

    fn meta(&self, now: DateTime<Utc>, user_id: &UserId, flow_id: &FlowId) -> events::EventMeta {
        events::EventMeta {
            event_id: Uuid::now_v7().to_string(),
            occurred_at: Some(timestamp(now)),
            user_id: user_id.as_str().to_owned(),
            flow_id: flow_id.as_str().to_owned(),
            source: SERVICE.to_owned(),
            actor: String::new(),
        }
    }

    /// An event for the outbox, with its event id as the message id.
    fn event(
        &self,
        subject: &str,
        meta: &events::EventMeta,
        body: &impl prost::Message,
    ) -> OutboxMessage {
        OutboxMessage::new(subject, meta.event_id.clone(), body)
    }

    /// Fails with the seconds left when a code was issued for the binding within
    /// `resend_after` (the policy's wait, see [`Verification::resend_wait`]).
    async fn ensure_may_resend(
        &self,
        key: CodeKey<'_>,
        scope: ResendScope<'_>,
        resend_after: chrono::Duration,
    ) -> Result<(), Error> {
        let last = self.store.last_issued_at(key, scope).await?;
        let now = self.clock.now();
        may_resend(last, now, resend_after).map_err(|_| {
            let at = last.map_or(now, |l| l + resend_after);
            Error::ResendIn(crate::domain::throttle::retry_after_secs(now, at))
        })
    }

    /// Issues a code: voids earlier ones, stores the keyed hash and, for a real destination,
    /// enqueues `code.issued` and the sealed delivery, all in one transaction.
    async fn issue(&self, issue: Issue<'_>) -> Result<Issued, Error> {
        let mut rules = self.config.rules();
        rules.resend_after = self.resend_wait(issue.limits);
        let now = self.clock.now();
        let code = Code::generate(CodeLength::from_policy(issue.limits.code_length));
        // New codes and deliveries use the current key; earlier ones keep theirs (key id).
        let current = self.config.code_keys.current();
        let binding = CodeBinding {
            purpose: issue.purpose,
            user_id: issue.user_id,
            method_id: issue.method_id,
            flow_id: issue.flow_id,
        };
        let state = CodeState::fresh(&rules, now);
        let delivery_id = Uuid::now_v7().to_string();
        // A decoy (no destination) builds and seals the same messages and stores them as
        // never-published stand-ins: the same work as a real send, and nothing leaves.
        let decoy = issue.destination.is_none();
        // SMS pumping: the allowlist, budgets and breaker for phone codes (decoys alike).
        let code_id = Uuid::now_v7().to_string();
        self.guard_phone_send(
            issue.kind,
            issue.destination.as_deref(),
            issue.user_id,
            issue.limits,
            &code_id,
        )
        .await?;
        let mut messages = Vec::new();
        {
            let destination = issue.destination.unwrap_or_default();
            let meta = self.meta(now, issue.user_id, issue.flow_id);
            let issued = events::CodeIssued {
                meta: Some(meta.clone()),
                method_id: issue.method_id.as_str().to_owned(),
                kind: proto_kind(issue.kind) as i32,
                purpose: proto_purpose(issue.purpose) as i32,
                expires_at: Some(timestamp(state.expires_at)),
                delivery_id: delivery_id.clone(),
            };
            messages.push(self.event(subjects::events::CODE_ISSUED, &meta, &issued));
            let delivery = Delivery {
                delivery_id: delivery_id.clone(),
                kind: proto_kind(issue.kind) as i32,
                destination,
                code: code.expose().to_owned(),
                purpose: proto_purpose(issue.purpose) as i32,
                locale: issue.locale.as_str().to_owned(),
                user_id: issue.user_id.as_str().to_owned(),
                flow_id: issue.flow_id.as_str().to_owned(),
                issued_at: Some(timestamp(now)),
                expires_at: Some(timestamp(state.expires_at)),
                method_id: issue.method_id.as_str().to_owned(),
            };
            let sealed =
                sspr_bus::sealed::seal_with_id(&current.id, current.key.expose(), &delivery)?;
            let subject = match issue.kind {
                MethodKind::Email => subjects::delivery::EMAIL,
                MethodKind::Sms => subjects::delivery::SMS,
                MethodKind::Voice => subjects::delivery::VOICE,
                MethodKind::SecurityQuestions => return Err(Error::NothingToSend),
            };
            messages.push(OutboxMessage::new(subject, delivery_id.clone(), &sealed));
        }
        if decoy {
            messages = messages.into_iter().map(OutboxMessage::decoy).collect();
        }
        let expires_at = state.expires_at;
        let new = NewCode {
            id: code_id,
            flow_id: issue.flow_id.clone(),
            hash: binding.hash(current.key.expose(), &code),
            state,
            created_at: now,
            delivery_id,
            key_id: current.id.clone(),
            request_tag: sspr_bus::idempotency::serving_tag(),
        };
        let key = CodeKey {
            purpose: issue.purpose,
            user_id: issue.user_id,
            method_id: issue.method_id,
        };
        let notify = !messages.is_empty();
        self.store
            .issue_code(key, issue.scope, rules.resend_after, new, messages)
            .await?;
        if notify {
            self.signal.notify();
        }
        Ok(Issued {
            expires_at,
            resend_after: now + rules.resend_after,
        })
    }

    /// Checks a code, re-reading after a lost race. Returns the updated session for reset.
    async fn check(&self, check: Check<'_>) -> Result<Option<ResetSession>, Error> {
        for _ in 0..MAX_RACE_RETRIES {
            match self.check_once(&check).await? {
                CheckPass::Accepted(session) => return Ok(session),
                CheckPass::Rejected(r) => return Err(Error::Rejected(r)),
                CheckPass::Raced => continue,
            }
        }
        Err(Error::Internal(
            "too many concurrent verifications of one code",
        ))
    }

    async fn check_once(&self, check: &Check<'_>) -> Result<CheckPass, Error> {
        let now = self.clock.now();
        let key = CodeKey {
            purpose: check.purpose,
            user_id: check.user_id,
            method_id: check.method_id,
        };
        let binding = CodeBinding {
            purpose: check.purpose,
            user_id: check.user_id,
            method_id: check.method_id,
            flow_id: check.flow_id,
        };
        let stored = self.store.active_code(key, check.flow_id).await?;
        let verdict = judge(stored.as_ref().map(|c| &c.state), now, || match &stored {
            // Compared for decoys too (then ignored), so both take the same work. The key is the
            // one the code was hashed with; a key dropped from the ring matches nothing.
            Some(c) => {
                self.config
                    .code_keys
                    .get(&c.key_id)
                    .is_some_and(|key| binding.matches(key, check.candidate, &c.hash))
                    && !check.decoy
            }
            None => false,
        });
        let meta = self.meta(now, check.user_id, check.flow_id);
        let purpose = proto_purpose(check.purpose) as i32;
        match (verdict, stored) {
            (Verdict::Accepted, Some(code)) => {
                let verified = events::CodeVerified {
                    meta: Some(meta.clone()),
                    method_id: check.method_id.as_str().to_owned(),
                    purpose,
                };
                let messages = vec![self.event(subjects::events::CODE_VERIFIED, &meta, &verified)];
                let after = check.session.map(|(_, before)| {
                    let mut after = before.clone();
                    after.record_verified(check.method_id, now);
                    after
                });
                let session = check
                    .session
                    .zip(after.as_ref())
                    .map(|((hash, before), after)| (hash, before, after));
                if !self
                    .store
                    .record_accepted(
                        &code,
                        session,
                        messages,
                        now,
                        sspr_bus::idempotency::serving_tag(),
                    )
                    .await?
                {
                    return Ok(CheckPass::Raced);
                }
                self.signal.notify();
                self.record_phone_verified(&code.id, now).await;
                Ok(CheckPass::Accepted(after))
            }
            (Verdict::Accepted, None) => Err(Error::Internal("accepted without a code")),
            (Verdict::Rejected(rejection), stored) => {
                // A decoy's rejection is recorded as a never-published stand-in, so it costs
                // the same writes as a real one.
                let event = |attempts_left: u32| {
                    let rejected = events::CodeRejected {
                        meta: Some(meta.clone()),
                        method_id: check.method_id.as_str().to_owned(),
                        purpose,
                        reason: rejection.reason().to_owned(),
                        attempts_left,
                    };
                    let event = self.event(subjects::events::CODE_REJECTED, &meta, &rejected);
                    vec![if check.decoy { event.decoy() } else { event }]
                };
                let rejection = match (rejection, stored) {
                    (Rejection::Wrong { .. }, Some(code)) => {
                        match self.store.record_wrong(&code, now, event).await? {
                            Some(attempts_left) => Rejection::Wrong { attempts_left },
                            None => return Ok(CheckPass::Raced),
                        }
                    }
                    (rejection, stored) => {
                        let messages =
                            event(rejection.attempts_left(stored.as_ref().map(|c| &c.state)));
                        if !messages.is_empty() {
                            self.store.record_events(messages, now).await?;
                        }
                        rejection
                    }
                };
                self.signal.notify();
                Ok(CheckPass::Rejected(rejection))
            }
        }
    }
}

fn proto_kind(kind: MethodKind) -> common::MethodKind {
    match kind {
        MethodKind::Email => common::MethodKind::Email,
        MethodKind::Sms => common::MethodKind::Sms,
        MethodKind::Voice => common::MethodKind::Voice,
        MethodKind::SecurityQuestions => common::MethodKind::SecurityQuestions,
    }
}

fn domain_kind(kind: i32) -> Option<MethodKind> {
    match common::MethodKind::try_from(kind).ok()? {
        common::MethodKind::Email => Some(MethodKind::Email),
        common::MethodKind::Sms => Some(MethodKind::Sms),
        common::MethodKind::Voice => Some(MethodKind::Voice),
        common::MethodKind::SecurityQuestions => Some(MethodKind::SecurityQuestions),
        common::MethodKind::Unspecified => None,
    }
}

fn proto_purpose(purpose: Purpose) -> events::CodePurpose {
    match purpose {
        Purpose::Reset => events::CodePurpose::Reset,
        Purpose::Registration => events::CodePurpose::Registration,
        Purpose::StepUp => events::CodePurpose::StepUp,
    }
}
