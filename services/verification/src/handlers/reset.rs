//! The reset endpoints: StartReset, SendCode, VerifyCode, CompleteReset.
//!
//! Every user id gets a session of the same shape: a real one when the user exists, is
//! enabled, is in scope and has registered at least as many allowed methods as the policy
//! requires; a decoy otherwise, with as many methods as the policy requires. The same
//! dependencies are consulted for every user id, and decoys go through the same checks, so the
//! answers (and their statuses and messages) do not tell the two apart.
//!
//! Typed-destination confirmation (policy `require_full_destination`, read at SendCode): the
//! candidate goes to enrolment for a constant-time comparison; a mismatch spends one attempt of
//! the method's active code in this flow (as a wrong code does, `code.rejected` with reason
//! `destination_mismatch`), and nothing is sent. A decoy session asks enrolment the same way
//! and always answers as a mismatch, without spending or emitting anything.

use chrono::SubsecRound;
use sspr_bus::subjects;
use sspr_proto::common::v1 as common;
use sspr_proto::events::v1 as events;
use sspr_proto::internal::directory::v1 as dir;
use sspr_proto::internal::policy::v1 as pol;
use sspr_proto::internal::verification::v1::{
    CompleteResetRequest, CompleteResetResponse, SendCodeRequest, SendCodeResponse,
    StartResetRequest, StartResetResponse, VerifyCodeRequest, VerifyCodeResponse,
};
use sspr_proto::limits::Effective;
use sspr_proto::time::timestamp;
use tracing::field::Empty;
use uuid::Uuid;

use super::throttle::{Send, SendTo};
use super::{Check, CheckPass, Issue, Verification, domain_kind, proto_kind};
use crate::Error;
use crate::adapters::store::{CodeKey, ResendScope};
use crate::domain::decoy::{decoy_method_count, decoy_methods};
use crate::domain::destination::{Gate, gate};
use crate::domain::second_method::same_destination;
use crate::domain::{
    ClientIp, Code, FlowId, InputError, Locale, MethodId, MethodKind, Purpose, ResetSession,
    SessionMethod, SessionStatus, SessionToken, UserId,
};

/// The longest password passed on to the directory, in bytes.
pub(super) const MAX_PASSWORD_BYTES: usize = 1024;

impl Verification {
    /// Loads the session behind a caller's token, if it is still usable.
    pub(super) async fn usable_session(
        &self,
        raw_token: &str,
    ) -> Result<(String, ResetSession), Error> {
        let (token_hash, session) = self.caller_session(raw_token).await?;
        session.ensure_usable(self.clock.now())?;
        Ok((token_hash, session))
    }

    /// Loads the session behind a caller's token, whatever its state, and notes its user and
    /// flow on the current span.
    async fn caller_session(&self, raw_token: &str) -> Result<(String, ResetSession), Error> {
        let token = SessionToken::parse(raw_token).ok_or(Error::UnknownSession)?;
        let token_hash = token.hash();
        let session = self
            .store
            .session(&token_hash)
            .await?
            .ok_or(Error::UnknownSession)?;
        let span = tracing::Span::current();
        span.record("user_id", session.user_id.as_str());
        span.record("flow_id", session.flow_id.as_str());
        Ok((token_hash, session))
    }

    #[tracing::instrument(skip_all, fields(user_id = Empty, flow_id = Empty, decoy = Empty))]
    pub(super) async fn start_reset(
        &self,
        req: StartResetRequest,
    ) -> Result<StartResetResponse, Error> {
        let user_id = UserId::parse(&req.user_id)?;
        let locale = Locale::parse_optional(&req.locale)?;
        let client_ip = ClientIp::parse(&req.client_ip)?;
        let span = tracing::Span::current();
        span.record("user_id", user_id.as_str());

        // Policy and enrolment are asked for every user id, known or not, so an unknown user
        // takes the same path (and about the same time) as a real one.
        let user = self.peers.get_user(user_id.as_str()).await?;
        let evaluation = self
            .peers
            .evaluate(match &user {
                Some(u) => pol::EvaluateRequest {
                    user_id: user_id.as_str().to_owned(),
                    // Nested groups count for SCOPE_SELECTED (direct ones if the directory
                    // sent no effective groups).
                    group_ids: if u.effective_group_ids.is_empty() {
                        u.group_ids.clone()
                    } else {
                        u.effective_group_ids.clone()
                    },
                    is_admin: u.is_admin,
                    enabled: u.enabled,
                },
                None => pol::EvaluateRequest {
                    user_id: user_id.as_str().to_owned(),
                    ..Default::default()
                },
            })
            .await?;
        // The security-questions method is listed only when enough of its questions are still
        // in the policy (evaluation has none for admins, so theirs is never listed).
        let listed = self
            .peers
            .list_methods(
                user_id.as_str(),
                evaluation
                    .security_questions
                    .iter()
                    .map(|q| q.question_id.clone())
                    .collect(),
                evaluation.questions_required_to_reset,
            )
            .await?;

        let allowed: Vec<MethodKind> = evaluation
            .allowed_methods
            .iter()
            .filter_map(|k| domain_kind(*k))
            .collect();
        let methods: Vec<SessionMethod> = listed
            .methods
            .into_iter()
            .filter_map(|m| {
                let kind = domain_kind(m.kind).filter(|k| allowed.contains(k))?;
                let method_id = MethodId::parse(&m.method_id).ok()?;
                Some(SessionMethod {
                    method_id,
                    kind,
                    masked: m.masked_destination,
                })
            })
            .collect();
        // A session must never be completable without verifying anything.
        let required = evaluation.methods_required.max(1);
        let eligible = user.as_ref().is_some_and(|u| u.enabled) && evaluation.eligible;
        // A user with fewer methods than required could never finish; a real session would only
        // tell an onlooker that the account exists.
        let real = eligible && methods.len() >= required as usize;
        // The CAPTCHA thresholds, the client IP's StartReset limit and the user id's block,
        // alike for real and decoy user ids.
        let limits = Effective::of(evaluation.limits.as_ref());
        let origin = self
            .admit_start(&user_id, &client_ip, req.challenge_passed, &limits, real)
            .await?;

        // What the policy asks of everyone: shown for every user id, so the answer never tells
        // an admin (who needs 2; a real admin session still requires them, and says so in
        // methods_remaining once a first method is verified) from anyone else.
        let shown_required = match evaluation.policy_methods_required {
            0 => required,
            n => n.min(required),
        };
        let (methods, methods_required) = if real {
            (methods, required)
        } else {
            // Shaped like a real flow under the same policy: as many methods as it requires, of
            // the kinds it allows; where it allows security questions (never for admins), the
            // last one is a questions method for some user ids, as a real user's may be.
            let contact_kinds: Vec<MethodKind> = allowed
                .iter()
                .copied()
                .filter(|k| *k != MethodKind::SecurityQuestions)
                .collect();
            let questions_allowed = allowed.contains(&MethodKind::SecurityQuestions)
                && evaluation.questions_required_to_reset > 0
                && !evaluation.security_questions.is_empty();
            let count = decoy_method_count(
                self.key(),
                &user_id,
                shown_required,
                contact_kinds.len() + usize::from(questions_allowed),
            );
            let decoys = decoy_methods(
                self.key(),
                &user_id,
                &contact_kinds,
                count,
                if questions_allowed {
                    evaluation.questions_required_to_register
                } else {
                    0
                },
            );
            (decoys, shown_required)
        };
        let locale = locale
            .or_else(|| {
                user.as_ref()
                    .and_then(|u| Locale::parse_optional(&u.locale).ok().flatten())
            })
            .unwrap_or_else(|| Locale::or_default(""));

        let now = self.clock.now();
        let token = SessionToken::generate();
        let flow_id = FlowId::from_uuid(Uuid::now_v7());
        span.record("flow_id", flow_id.as_str());
        span.record("decoy", !real);
        let session = ResetSession {
            flow_id: flow_id.clone(),
            user_id: user_id.clone(),
            locale,
            decoy: !real,
            methods,
            methods_required,
            verified: Vec::new(),
            verified_at: None,
            status: SessionStatus::Active,
            created_at: now,
            expires_at: now + self.config.session_ttl,
        };
        // A decoy writes the same rows as a real flow (its event as a never-published
        // stand-in), so the work before the answer does not depend on the account.
        let meta = self.meta(now, &user_id, &flow_id);
        let started = events::ResetStarted {
            meta: Some(meta.clone()),
            client_ip: client_ip.as_str().to_owned(),
        };
        let event = self.event(subjects::events::RESET_STARTED, &meta, &started);
        let messages = vec![if real { event } else { event.decoy() }];
        self.store
            .create_session(&token.hash(), &session, messages, now)
            .await?;
        if let Some(ip_failures) = origin {
            self.throttles
                .remember_origin(&flow_id, &ip_failures, now)
                .await?;
        }
        self.signal.notify();
        Ok(StartResetResponse {
            session_id: token.expose().to_owned(),
            methods: session
                .methods
                .iter()
                .map(|m| common::ContactMethod {
                    method_id: m.method_id.as_str().to_owned(),
                    kind: proto_kind(m.kind) as i32,
                    masked_destination: m.masked.clone(),
                })
                .collect(),
            methods_required: shown_required,
            expires_at: Some(timestamp(session.expires_at)),
            flow_id: flow_id.as_str().to_owned(),
            helpdesk_contact: evaluation.helpdesk_contact,
        })
    }

    #[tracing::instrument(skip_all, fields(user_id = Empty, flow_id = Empty, method_id = Empty))]
    pub(super) async fn send_code(&self, req: SendCodeRequest) -> Result<SendCodeResponse, Error> {
        ClientIp::parse(&req.client_ip)?;
        let (_, session) = self.usable_session(&req.session_id).await?;
        self.ensure_not_blocked(&session.user_id).await?;
        let method = session.method(&req.method_id)?.clone();
        tracing::Span::current().record("method_id", method.method_id.as_str());
        if method.kind == MethodKind::SecurityQuestions {
            return Err(Error::NothingToSend);
        }
        let key = CodeKey {
            purpose: Purpose::Reset,
            user_id: &session.user_id,
            method_id: &method.method_id,
        };
        let scope = ResendScope::Flow(&session.flow_id);
        // Policy-wide settings: the same request for real and decoy sessions.
        let policy = self
            .peers
            .evaluate(pol::EvaluateRequest {
                user_id: session.user_id.as_str().to_owned(),
                ..Default::default()
            })
            .await?;
        match gate(
            policy.require_full_destination,
            &req.destination_confirmation,
        )? {
            Gate::Open => {}
            Gate::Missing => return Err(Error::DestinationRequired),
            Gate::Check(candidate) => {
                self.confirm_destination(&session, &method.method_id, candidate)
                    .await?
            }
        }
        let limits = Effective::of(policy.limits.as_ref());
        let resend_after = self.resend_wait(&limits);
        // A retry of a send whose code was issued (committed) but whose answer was never stored
        // gets that code's answer: no second code, the first one stays valid.
        if let Some(tag) = sspr_bus::idempotency::serving_tag()
            && let Some((issued_at, expires_at)) = self
                .store
                .code_issued_by(key, &session.flow_id, &tag)
                .await?
        {
            return Ok(SendCodeResponse {
                expires_at: Some(timestamp(expires_at.trunc_subsecs(6))),
                resend_after: Some(timestamp((issued_at + resend_after).trunc_subsecs(6))),
            });
        }
        self.ensure_may_resend(key, scope, resend_after).await?;

        // Enrolment is asked for decoys too (it finds nothing), so both take the same path.
        let found = self
            .peers
            .get_destination(session.user_id.as_str(), method.method_id.as_str())
            .await;
        let (kind, destination) = if session.decoy {
            (method.kind, None)
        } else {
            let found = found?;
            if found.destination.is_empty() {
                return Err(Error::Internal("enrolment returned an empty destination"));
            }
            (
                domain_kind(found.kind).unwrap_or(method.kind),
                Some(found.destination),
            )
        };
        self.admit_send(Send {
            user_id: &session.user_id,
            flow_id: Some(&session.flow_id),
            kind,
            to: match destination.as_deref() {
                Some(d) => SendTo::Destination(d),
                None => SendTo::Decoy(&method.method_id),
            },
            client_ip: &req.client_ip,
            limits: &limits,
            real: !session.decoy,
        })
        .await?;
        let issued = self
            .issue(Issue {
                purpose: Purpose::Reset,
                user_id: &session.user_id,
                method_id: &method.method_id,
                kind,
                flow_id: &session.flow_id,
                locale: &session.locale,
                destination,
                scope,
                limits: &limits,
            })
            .await?;
        // Whole microseconds, as PostgreSQL keeps them: the answer rebuilt from the code row
        // for a retry (above) is then the same.
        Ok(SendCodeResponse {
            expires_at: Some(timestamp(issued.expires_at.trunc_subsecs(6))),
            resend_after: Some(timestamp(issued.resend_after.trunc_subsecs(6))),
        })
    }

    /// Asks enrolment whether `candidate` names the method's destination; a mismatch spends an
    /// attempt of the active code (if any) and is [`Error::DestinationMismatch`].
    async fn confirm_destination(
        &self,
        session: &ResetSession,
        method_id: &MethodId,
        candidate: &str,
    ) -> Result<(), Error> {
        let answer = self
            .peers
            .match_destination(session.user_id.as_str(), method_id.as_str(), candidate)
            .await;
        // A decoy never matches; it then spends an attempt exactly as a real mismatch does,
        // with its event as a never-published stand-in.
        if !session.decoy && answer?.matches {
            return Ok(());
        }
        let now = self.clock.now();
        let meta = self.meta(now, &session.user_id, &session.flow_id);
        let event = |attempts_left: u32| {
            let rejected = events::CodeRejected {
                meta: Some(meta.clone()),
                method_id: method_id.as_str().to_owned(),
                purpose: events::CodePurpose::Reset as i32,
                reason: "destination_mismatch".to_owned(),
                attempts_left,
            };
            let event = self.event(subjects::events::CODE_REJECTED, &meta, &rejected);
            vec![if session.decoy { event.decoy() } else { event }]
        };
        let key = CodeKey {
            purpose: Purpose::Reset,
            user_id: &session.user_id,
            method_id,
        };
        let active = self
            .store
            .active_code(key, &session.flow_id)
            .await?
            .filter(|c| {
                !c.state.voided
                    && c.state.used_at.is_none()
                    && c.state.attempts_left > 0
                    && now < c.state.expires_at
            });
        match active {
            // A lost race with a concurrent attempt still spent an attempt there: nothing to redo.
            Some(code) => {
                self.store.record_wrong(&code, now, event).await?;
            }
            None => self.store.record_events(event(0), now).await?,
        }
        self.signal.notify();
        tracing::info!("destination confirmation did not match");
        self.count_failure(session).await?;
        Err(Error::DestinationMismatch)
    }

    /// Refuses a method of a real session whose destination was already verified in it by
    /// another method (SMS and voice to one phone), so it cannot count as a second factor.
    async fn ensure_new_destination(
        &self,
        session: &ResetSession,
        method: &SessionMethod,
    ) -> Result<(), Error> {
        let verified: Vec<&SessionMethod> = session
            .methods
            .iter()
            .filter(|m| {
                session.verified.contains(&m.method_id)
                    && m.method_id != method.method_id
                    && m.kind != MethodKind::SecurityQuestions
            })
            .collect();
        if session.decoy || method.kind == MethodKind::SecurityQuestions || verified.is_empty() {
            return Ok(());
        }
        let user = session.user_id.as_str();
        let this = self
            .peers
            .get_destination(user, method.method_id.as_str())
            .await?;
        for other in verified {
            let theirs = self
                .peers
                .get_destination(user, other.method_id.as_str())
                .await?;
            if same_destination(&this.destination, &theirs.destination) {
                tracing::info!("second method reaches an already verified destination");
                return Err(Error::SameDestination);
            }
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(user_id = Empty, flow_id = Empty, method_id = Empty))]
    pub(super) async fn verify_code(
        &self,
        req: VerifyCodeRequest,
    ) -> Result<VerifyCodeResponse, Error> {
        for _ in 0..super::MAX_RACE_RETRIES {
            let (token_hash, session) = self.usable_session(&req.session_id).await?;
            self.ensure_not_blocked(&session.user_id).await?;
            let method = session.method(&req.method_id)?.clone();
            tracing::Span::current().record("method_id", method.method_id.as_str());
            // A retry of a verification that committed but whose answer was never stored: the
            // code was used by this very request, so it succeeded.
            if let Some(tag) = sspr_bus::idempotency::serving_tag() {
                let key = CodeKey {
                    purpose: Purpose::Reset,
                    user_id: &session.user_id,
                    method_id: &method.method_id,
                };
                if self.store.code_used_by(key, &session.flow_id, &tag).await? {
                    return Ok(VerifyCodeResponse {
                        methods_remaining: session.methods_remaining(),
                        unlock_available: self.unlock_available(&session).await,
                    });
                }
            }
            // Any 6 to 10 digits: a code keeps the length it was issued with.
            let candidate = Code::parse_any_length(&req.code)?;
            self.ensure_new_destination(&session, &method).await?;
            let pass = self
                .check_once(&Check {
                    purpose: Purpose::Reset,
                    user_id: &session.user_id,
                    method_id: &method.method_id,
                    flow_id: &session.flow_id,
                    candidate: &candidate,
                    decoy: session.decoy,
                    session: Some((&token_hash, &session)),
                })
                .await?;
            match pass {
                CheckPass::Accepted(Some(after)) => {
                    return Ok(VerifyCodeResponse {
                        methods_remaining: after.methods_remaining(),
                        unlock_available: self.unlock_available(&after).await,
                    });
                }
                CheckPass::Accepted(None) => {
                    return Err(Error::Internal("reset check returned no session"));
                }
                CheckPass::Rejected(r) => {
                    // A wrong guess counts towards the block (expired or used-up codes do not).
                    if matches!(r, crate::domain::Rejection::Wrong { .. }) {
                        self.count_failure(&session).await?;
                    }
                    return Err(Error::Rejected(r));
                }
                // The code or the session changed meanwhile (a concurrent verification): re-read.
                CheckPass::Raced => continue,
            }
        }
        Err(Error::Internal(
            "too many concurrent verifications in one session",
        ))
    }

    #[tracing::instrument(skip_all, fields(user_id = Empty, flow_id = Empty))]
    pub(super) async fn complete_reset(
        &self,
        req: CompleteResetRequest,
    ) -> Result<CompleteResetResponse, Error> {
        // A retry of a completion that committed but whose answer was never stored succeeded
        // (without the strength estimate, which only the directory's check computes).
        if let Some(tag) = sspr_bus::idempotency::serving_tag()
            && let Some(token) = SessionToken::parse(&req.session_id)
            && self.store.completed_by(&token.hash(), &tag).await?
        {
            return Ok(CompleteResetResponse { strength: None });
        }
        // Active, or claimed by a CompleteReset that may have died (the claim below decides).
        let (token_hash, session) = self.caller_session(&req.session_id).await?;
        // Fully verified, and within 10 minutes of the verification that completed it.
        session.ensure_completable_by_claim(self.clock.now())?;
        if req.new_password.is_empty() || req.new_password.len() > MAX_PASSWORD_BYTES {
            return Err(InputError::new("new_password", "must be 1 to 1024 bytes").into());
        }
        // Claim the session before touching the password: of concurrent calls only the one
        // that moved it from active to completing sets the password; the others are told the
        // session is unknown, as after completion.
        if !self
            .store
            .claim_completion(&token_hash, self.clock.now(), completion_lease())
            .await?
        {
            return Err(Error::UnknownSession);
        }
        // The directory checks the password against the policy; a rejection ("password
        // rejected: ...") passes through and the claim is released, so the session stays
        // usable for another try.
        let set = match self
            .peers
            .set_password(&dir::SetPasswordRequest {
                user_id: session.user_id.as_str().to_owned(),
                new_password: req.new_password,
                flow_id: session.flow_id.as_str().to_owned(),
                reason: "self_service_reset".to_owned(),
            })
            .await
        {
            Ok(set) => set,
            Err(e) => {
                if let Err(release) = self.store.release_completion(&token_hash).await {
                    tracing::warn!(error = %release, "could not release a completion claim");
                }
                return Err(e.into());
            }
        };
        let now = self.clock.now();
        let meta = self.meta(now, &session.user_id, &session.flow_id);
        let completed = events::ResetCompleted {
            meta: Some(meta.clone()),
            verified_method_ids: session
                .verified
                .iter()
                .map(|m| m.as_str().to_owned())
                .collect(),
        };
        let messages = vec![self.event(subjects::events::RESET_COMPLETED, &meta, &completed)];
        if !self
            .store
            .finish_completion(
                &token_hash,
                messages,
                now,
                sspr_bus::idempotency::serving_tag(),
            )
            .await?
        {
            // Only this call holds the claim; losing it means the row changed under us.
            return Err(Error::Internal("a claimed reset session changed"));
        }
        self.signal.notify();
        self.clear_after_reset(&session).await;
        Ok(CompleteResetResponse {
            strength: set.strength,
        })
    }
}

/// How long a CompleteReset holds its claim on a session: far longer than the call can run
/// (its requests end with the caller's deadline, at most the bus's request timeout), shorter
/// than the idempotency lease after which the client's retry of a call whose replica died is
/// let through, so that retry finds the session claimable again.
pub(crate) const COMPLETION_LEASE: std::time::Duration = std::time::Duration::from_secs(45);

fn completion_lease() -> chrono::Duration {
    chrono::Duration::from_std(COMPLETION_LEASE).unwrap_or(chrono::Duration::seconds(45))
}

const _: () = assert!(COMPLETION_LEASE.as_secs() < sspr_bus::idempotency::LEASE.as_secs());
