//! The NATS endpoints of enrolment: decode -> validate -> domain -> store/peers -> reply.
//!
//! Invariants:
//! - Only a caller holding a live session token may add or confirm a method, and only for the
//!   user that session authenticated.
//! - Responses and log lines show destinations masked; the full destination leaves this service
//!   only towards verification (to address a code) and in `get_destination`.
//! - `match_destination` answers only yes/no for a typed destination; the candidate is never
//!   logged or echoed, and the comparison is constant-time (see `domain::confirm`).
//! - The session token, the password and the code are never logged: spans carry only
//!   `user_id`, `flow_id` and `method_id`.
//! - Registration takeover (see `domain::takeover` and [`crate::takeover`]): once a user has a
//!   method, changing their methods needs a step-up, and new methods wait out a cool-down
//!   before `list_methods` offers them for reset. BeginRegistration and GetStatus are
//!   throttled per user id and client IP before the password is checked.
//! - Re-confirmation: AddMethod with a confirmed destination sends that method a code, and
//!   ConfirmMethod with it moves the method's confirmation date; the registration's last
//!   confirmation is the newest of these dates (see `domain::status`).

use std::sync::Arc;

use sspr_bus::{Router, RpcError, subjects::rpc};
use sspr_clock::SharedClock;
use sspr_proto::common::v1::{ContactMethod, MethodKind as WireKind};
use sspr_proto::events::v1::CodePurpose;
use sspr_proto::internal::directory::v1::UserRecord;
use sspr_proto::internal::enrolment::v1::{
    AddMethodRequest, AddMethodResponse, BeginRegistrationRequest, BeginRegistrationResponse,
    ConfirmMethodRequest, ConfirmMethodResponse, ConfirmedMethodKind, GetDestinationRequest,
    GetDestinationResponse, GetStatusRequest, GetStatusResponse, ListMethodKindsRequest,
    ListMethodKindsResponse, ListMethodsRequest, ListMethodsResponse, ListOwnMethodsRequest,
    ListOwnMethodsResponse, MatchDestinationRequest, MatchDestinationResponse, RemoveMethodRequest,
    RemoveMethodResponse, UserMethodKinds,
};
use sspr_proto::internal::policy::v1::EvaluateResponse;
use sspr_proto::limits::Effective;
use tracing::Span;
use tracing::field::Empty;

use crate::SERVICE;
use crate::adapters::peers::Peers;
use crate::domain::confirm::{MAX_CANDIDATE_CHARS, destination_matches};
use crate::domain::takeover;
use crate::domain::{
    Destination, Locale, MethodChange, MethodId, MethodKind, RegisteredMethod, RegistrationSession,
    RegistrationStatus, Requirements, SessionToken, StepUp, UserId,
};
use crate::error::Error;
use crate::ports::EnrolmentStore;
use crate::security_questions::{self, QuestionPolicy};

/// Longest password accepted for checking; anything longer cannot be a real one.
const MAX_PASSWORD_BYTES: usize = 4096;
/// Longest code forwarded to verification.
const MAX_CODE_CHARS: usize = 64;
/// Most users one `list_method_kinds` request may name.
const MAX_METHOD_KINDS_USERS: usize = 1000;

/// Enrolment's request handlers and what they depend on.
pub struct Enrolment {
    pub(crate) store: Arc<dyn EnrolmentStore>,
    pub(crate) peers: Peers,
    pub(crate) clock: SharedClock,
}

impl Enrolment {
    pub fn new(store: Arc<dyn EnrolmentStore>, peers: Peers, clock: SharedClock) -> Self {
        Self {
            store,
            peers,
            clock,
        }
    }

    /// Checks the user's password, asks policy what they must register, and opens a session.
    #[tracing::instrument(skip_all, fields(user_id = Empty, flow_id = Empty))]
    pub async fn begin_registration(
        &self,
        req: BeginRegistrationRequest,
    ) -> Result<BeginRegistrationResponse, Error> {
        let requested_locale = if req.locale.trim().is_empty() {
            None
        } else {
            Some(Locale::parse(&req.locale)?)
        };
        let (user_id, user, verdict) = self
            .authenticate(&req.user_id, &req.password, &req.client_ip)
            .await?;
        let requirements = requirements(&verdict).ok_or(Error::NotEligible)?;
        let locale =
            requested_locale.unwrap_or_else(|| Locale::first_valid([user.locale.as_str()]));

        let now = self.clock.now();
        let mut session = RegistrationSession::start(user_id, locale, requirements, now);
        let questions = QuestionPolicy::from_evaluation(&verdict);
        session.questions_allowed = questions.is_some();
        Span::current().record("flow_id", tracing::field::display(session.flow_id));
        let registered = self.store.confirmed_methods(&session.user_id).await?;
        // Registration takeover: a user who already has a method must prove one before changing
        // them, and what they add then waits out the policy's cool-down (domain::takeover).
        let had_answers = self
            .store
            .security_method(&session.user_id)
            .await?
            .is_some();
        session.step_up = StepUp::at_start(!registered.is_empty());
        session.cooldown_hours = takeover::session_cooldown_hours(
            !registered.is_empty() || had_answers,
            Effective::of(verdict.limits.as_ref()).new_method_cooldown_hours,
        );
        let token = SessionToken::generate()?;
        self.store
            .create_session(&token.hash(), &session, now)
            .await?;
        let answered = self
            .counted_questions(&session.user_id, questions.as_ref())
            .await?;
        let status = RegistrationStatus::assess(
            &session.requirements,
            &registered,
            verdict.reconfirm_after_days,
            now,
        )
        .with_questions(&session.requirements, answered.is_some());
        tracing::info!(
            methods_registered = status.methods_registered,
            reconfirm_required = status.reconfirm_required,
            step_up_required = session.step_up.is_pending(),
            "registration session started"
        );

        let mut allowed_kinds: Vec<i32> = session
            .requirements
            .allowed_kinds()
            .iter()
            .map(|k| k.code())
            .collect();
        let mut registered: Vec<ContactMethod> = registered.iter().map(contact_method).collect();
        if let Some(qp) = &questions {
            allowed_kinds.push(WireKind::SecurityQuestions as i32);
            if let Some(m) = &answered {
                registered.push(security_questions::contact_method(m, &qp.ids()));
            }
        }
        Ok(BeginRegistrationResponse {
            session_id: token.expose().to_owned(),
            methods_required: session.requirements.methods_required(),
            allowed_kinds,
            registered,
            registration_required: status.registration_required,
            expires_at: Some(sspr_proto::time::timestamp(session.expires_at)),
            reconfirm_required: status.reconfirm_required,
            step_up_required: session.step_up.is_pending(),
        })
    }

    /// What a sign-in page should do for this user; needs the user's password, opens nothing.
    #[tracing::instrument(skip_all, fields(user_id = Empty))]
    pub async fn get_status(&self, req: GetStatusRequest) -> Result<GetStatusResponse, Error> {
        let (user_id, _user, verdict) = self
            .authenticate(&req.user_id, &req.password, &req.client_ip)
            .await?;
        let Some(requirements) = requirements(&verdict) else {
            return Ok(GetStatusResponse {
                eligible: false,
                ..GetStatusResponse::default()
            });
        };
        let registered = self.store.confirmed_methods(&user_id).await?;
        let questions = QuestionPolicy::from_evaluation(&verdict);
        let answered = self.counted_questions(&user_id, questions.as_ref()).await?;
        let status = RegistrationStatus::assess(
            &requirements,
            &registered,
            verdict.reconfirm_after_days,
            self.clock.now(),
        )
        .with_questions(&requirements, answered.is_some());
        Ok(GetStatusResponse {
            registration_required: status.registration_required,
            reconfirm_required: status.reconfirm_required,
            methods_required: requirements.methods_required(),
            methods_registered: status.methods_registered,
            eligible: true,
        })
    }

    /// The confirmed methods of the session's user, masked, oldest confirmation first.
    #[tracing::instrument(skip_all, fields(user_id = Empty, flow_id = Empty))]
    pub async fn list_own_methods(
        &self,
        req: ListOwnMethodsRequest,
    ) -> Result<ListOwnMethodsResponse, Error> {
        let session = self.live_session(&req.session_id).await?;
        let methods = self.store.confirmed_methods(&session.user_id).await?;
        let mut methods: Vec<ContactMethod> = methods.iter().map(contact_method).collect();
        let questions = self.session_questions(&session).await?;
        if let Some(m) = self
            .counted_questions(&session.user_id, questions.as_ref())
            .await?
        {
            let ids = questions.map(|q| q.ids()).unwrap_or_default();
            methods.push(security_questions::contact_method(&m, &ids));
        }
        Ok(ListOwnMethodsResponse { methods })
    }

    /// Removes a confirmed method of the session's user, keeping the required count.
    #[tracing::instrument(skip_all, fields(user_id = Empty, flow_id = Empty, method_id = Empty))]
    pub async fn remove_method(
        &self,
        req: RemoveMethodRequest,
    ) -> Result<RemoveMethodResponse, Error> {
        let session = self.live_session(&req.session_id).await?;
        session.step_up.permits(MethodChange::Remove)?;
        let method_id = parse_method_id(&req.method_id)?;
        Span::current().record("method_id", method_id.as_str());
        let required = session.requirements.methods_required();
        let questions = self.session_questions(&session).await?;
        let own_questions = self.store.security_method(&session.user_id).await?;
        if let Some(m) = own_questions.filter(|m| m.method_id == method_id) {
            // Answers to questions removed from the policy no longer count; the label does not
            // matter once the method is gone, but stays truthful.
            let ids = questions.map(|q| q.ids()).unwrap_or_default();
            let masked = security_questions::contact_method(&m, &ids).masked_destination;
            let left = self
                .store
                .remove_security_method(
                    &session.user_id,
                    &method_id,
                    required,
                    masked,
                    &session.flow_id,
                    self.clock.now(),
                )
                .await?;
            tracing::info!(methods_registered = left, "security questions removed");
            return Ok(RemoveMethodResponse {});
        }
        // A counted security-questions method stands in for one of the required methods.
        let counted = self
            .counted_questions(&session.user_id, questions.as_ref())
            .await?
            .is_some();
        let left = self
            .store
            .remove_confirmed(
                &session.user_id,
                &method_id,
                required.saturating_sub(u32::from(counted)),
                &session.flow_id,
                self.clock.now(),
            )
            .await?;
        tracing::info!(methods_registered = left, "method removed");
        Ok(RemoveMethodResponse {})
    }

    /// Checks the password with the directory and asks policy about the user. The user id
    /// returned is the directory's spelling, which methods are kept under.
    ///
    /// Every well-formed attempt is first counted by the sign-in throttle (per user id and per
    /// client IP), the same for known and unknown user ids, before the password is checked.
    async fn authenticate(
        &self,
        raw_user_id: &str,
        password: &str,
        client_ip: &str,
    ) -> Result<(UserId, UserRecord, EvaluateResponse), Error> {
        let user_id = UserId::parse(raw_user_id)?;
        Span::current().record("user_id", user_id.as_str());
        if password.is_empty() {
            return Err(Error::InvalidArgument("password is required".into()));
        }
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(Error::InvalidArgument("password is too long".into()));
        }
        self.throttle_sign_in(&user_id, client_ip).await?;
        let user =
            self.peers
                .authenticate(&user_id, password)
                .await?
                .ok_or(Error::BadPeerReply(
                    "directory authenticated a user but sent no user record",
                ))?;
        let user_id = match UserId::parse(&user.user_id) {
            Ok(canonical) if canonical != user_id => {
                Span::current().record("user_id", canonical.as_str());
                canonical
            }
            _ => user_id,
        };
        let verdict = self.peers.evaluate(&user).await?;
        Ok((user_id, user, verdict))
    }

    /// Adds (or re-sends a code for) a destination of the session's user.
    #[tracing::instrument(skip_all, fields(user_id = Empty, flow_id = Empty, method_id = Empty))]
    pub async fn add_method(&self, req: AddMethodRequest) -> Result<AddMethodResponse, Error> {
        let session = self.live_session(&req.session_id).await?;
        let kind = MethodKind::from_code(req.kind).ok_or_else(|| {
            Error::InvalidArgument("kind must be METHOD_KIND_EMAIL or METHOD_KIND_SMS".into())
        })?;
        if !session.requirements.allows(kind) {
            return Err(Error::KindNotAllowed(kind));
        }
        let destination = Destination::parse(kind, &req.destination)?;
        // Re-confirming a confirmed destination sends the code to a method the user already
        // had; anything else needs the session's step-up first.
        let reconfirms = self
            .store
            .confirmed_methods(&session.user_id)
            .await?
            .iter()
            .any(|m| m.destination == destination);
        session.step_up.permits(if reconfirms {
            MethodChange::Reconfirm
        } else {
            MethodChange::AddNew
        })?;
        let method = self
            .store
            .prepare_pending(&session.user_id, &destination, self.clock.now())
            .await?;
        Span::current().record("method_id", method.method_id.as_str());
        let issued = self
            .peers
            .issue_code(&session, &method, CodePurpose::Registration, &req.client_ip)
            .await?;
        tracing::info!(kind = %kind, masked = %method.masked(), "registration code requested");
        Ok(AddMethodResponse {
            method_id: method.method_id.as_str().to_owned(),
            expires_at: issued.expires_at,
        })
    }

    /// Confirms a pending method, or re-confirms a confirmed one, with the code the user received.
    #[tracing::instrument(skip_all, fields(user_id = Empty, flow_id = Empty, method_id = Empty))]
    pub async fn confirm_method(
        &self,
        req: ConfirmMethodRequest,
    ) -> Result<ConfirmMethodResponse, Error> {
        let session = self.live_session(&req.session_id).await?;
        let method_id = parse_method_id(&req.method_id)?;
        Span::current().record("method_id", method_id.as_str());
        let code = req.code.trim();
        if code.is_empty() {
            return Err(Error::InvalidArgument("code is required".into()));
        }
        if code.chars().count() > MAX_CODE_CHARS {
            return Err(Error::InvalidArgument("code is too long".into()));
        }
        let method = self
            .store
            .find_method(&session.user_id, &method_id)
            .await?
            .ok_or(Error::UnknownMethod)?;
        let reconfirms = method.is_confirmed();
        session.step_up.permits(if reconfirms {
            MethodChange::Reconfirm
        } else {
            MethodChange::ConfirmNew
        })?;
        self.peers
            .check_code(&session, &method, code, CodePurpose::Registration)
            .await?;
        let now = self.clock.now();
        let confirmed = self
            .store
            .confirm(
                &method,
                &session.flow_id,
                now,
                takeover::usable_from(now, session.cooldown_hours),
            )
            .await?;
        if reconfirms && session.step_up.is_pending() {
            // The code reached a method the user already had: the session proved possession.
            self.store.mark_stepped_up(&session.flow_id).await?;
        }
        let questions = self.session_questions(&session).await?;
        let counted = self
            .counted_questions(&session.user_id, questions.as_ref())
            .await?
            .is_some();
        let complete = session
            .requirements
            .satisfied_by(confirmed.saturating_add(u32::from(counted)));
        tracing::info!(
            methods_registered = confirmed,
            registration_complete = complete,
            reconfirmed = method.is_confirmed(),
            "method confirmed"
        );
        Ok(ConfirmMethodResponse {
            registration_complete: complete,
        })
    }

    /// The user's confirmed methods, masked, oldest first.
    #[tracing::instrument(skip_all, fields(user_id = Empty))]
    pub async fn list_methods(
        &self,
        req: ListMethodsRequest,
    ) -> Result<ListMethodsResponse, Error> {
        let user_id = UserId::parse(&req.user_id)?;
        Span::current().record("user_id", user_id.as_str());
        // Methods still in their cool-down are not offered for reset (domain::takeover).
        let now = self.clock.now();
        let usable: Vec<RegisteredMethod> = self
            .store
            .confirmed_methods(&user_id)
            .await?
            .into_iter()
            .filter(|m| m.is_usable(now))
            .collect();
        let mut methods: Vec<ContactMethod> = usable.iter().map(contact_method).collect();
        let mut usable_from: Vec<prost_types::Timestamp> = usable
            .iter()
            .map(|m| {
                sspr_proto::time::timestamp(
                    m.usable_from.or(m.confirmed_at).unwrap_or(m.created_at),
                )
            })
            .collect();
        // Listed for reset only when enough answered questions are still in the policy.
        let required = req.questions_required_to_reset as usize;
        if required > 0
            && let Some(m) = self.store.security_method(&user_id).await?
            && m.answered_among(&req.security_question_ids) >= required
        {
            methods.push(security_questions::contact_method(
                &m,
                &req.security_question_ids,
            ));
            usable_from.push(sspr_proto::time::timestamp(m.registered_at));
        }
        Ok(ListMethodsResponse {
            methods,
            usable_from,
        })
    }

    /// The kinds of each user's confirmed methods and when each was confirmed (for the policy
    /// preview): no destination, masked or not. Users without methods, known or not, answer an
    /// empty list.
    #[tracing::instrument(skip_all, fields(users = req.user_ids.len()))]
    pub async fn list_method_kinds(
        &self,
        req: ListMethodKindsRequest,
    ) -> Result<ListMethodKindsResponse, Error> {
        if req.user_ids.len() > MAX_METHOD_KINDS_USERS {
            return Err(Error::InvalidArgument(format!(
                "user_ids may name at most {MAX_METHOD_KINDS_USERS} users"
            )));
        }
        let mut users = Vec::with_capacity(req.user_ids.len());
        for raw in &req.user_ids {
            let user_id = UserId::parse(raw)?;
            let methods = self.store.confirmed_methods(&user_id).await?;
            let mut kinds: Vec<ConfirmedMethodKind> = methods
                .iter()
                .map(|m| ConfirmedMethodKind {
                    kind: m.kind().code(),
                    confirmed_at: m.confirmed_at.map(sspr_proto::time::timestamp),
                })
                .collect();
            // Usable for reset only with enough answered questions still in the policy, as in
            // list_methods.
            let required = req.questions_required_to_reset as usize;
            if required > 0
                && let Some(m) = self.store.security_method(&user_id).await?
                && m.answered_among(&req.security_question_ids) >= required
            {
                kinds.push(ConfirmedMethodKind {
                    kind: sspr_proto::common::v1::MethodKind::SecurityQuestions as i32,
                    confirmed_at: Some(sspr_proto::time::timestamp(m.registered_at)),
                });
            }
            users.push(UserMethodKinds {
                user_id: user_id.as_str().to_owned(),
                methods: kinds,
            });
        }
        Ok(ListMethodKindsResponse { users })
    }

    /// Where to send a code for one confirmed method (for verification only).
    #[tracing::instrument(skip_all, fields(user_id = Empty, method_id = Empty))]
    pub async fn get_destination(
        &self,
        req: GetDestinationRequest,
    ) -> Result<GetDestinationResponse, Error> {
        let user_id = UserId::parse(&req.user_id)?;
        Span::current().record("user_id", user_id.as_str());
        let method_id = parse_method_id(&req.method_id)?;
        Span::current().record("method_id", method_id.as_str());
        let method = self
            .store
            .find_method(&user_id, &method_id)
            .await?
            .filter(RegisteredMethod::is_confirmed)
            .ok_or(Error::UnknownMethod)?;
        Ok(GetDestinationResponse {
            kind: method.kind().code(),
            destination: method.destination.as_str().to_owned(),
        })
    }

    /// Whether a typed destination names one confirmed method's destination (for verification
    /// only). Unknown and unconfirmed methods are NOT_FOUND, as in `get_destination`.
    #[tracing::instrument(skip_all, fields(user_id = Empty, method_id = Empty))]
    pub async fn match_destination(
        &self,
        req: MatchDestinationRequest,
    ) -> Result<MatchDestinationResponse, Error> {
        let user_id = UserId::parse(&req.user_id)?;
        Span::current().record("user_id", user_id.as_str());
        let method_id = parse_method_id(&req.method_id)?;
        Span::current().record("method_id", method_id.as_str());
        if req.candidate.chars().count() > MAX_CANDIDATE_CHARS {
            return Err(Error::InvalidArgument(format!(
                "candidate must be at most {MAX_CANDIDATE_CHARS} characters"
            )));
        }
        let method = self
            .store
            .find_method(&user_id, &method_id)
            .await?
            .filter(RegisteredMethod::is_confirmed)
            .ok_or(Error::UnknownMethod)?;
        let matches =
            destination_matches(method.kind(), method.destination.as_str(), &req.candidate);
        tracing::debug!(matches, "destination confirmation checked");
        Ok(MatchDestinationResponse { matches })
    }

    /// The live session the client's token names; unknown and expired look the same.
    pub(crate) async fn live_session(&self, raw_token: &str) -> Result<RegistrationSession, Error> {
        let token = SessionToken::parse(raw_token)?;
        let session = self
            .store
            .find_session(&token.hash())
            .await?
            .ok_or(Error::UnknownSession)?;
        if !session.is_live(self.clock.now()) {
            return Err(Error::UnknownSession);
        }
        Span::current().record("user_id", session.user_id.as_str());
        Span::current().record("flow_id", tracing::field::display(session.flow_id));
        Ok(session)
    }
}

/// The requirements policy sets for the user; `None` when they may not use self-service reset.
fn requirements(verdict: &EvaluateResponse) -> Option<Requirements> {
    Requirements::from_policy(
        verdict.eligible,
        verdict.methods_required,
        verdict
            .allowed_methods
            .iter()
            .filter_map(|&k| MethodKind::from_code(k)),
    )
}

/// An empty id is bad input; an id that cannot be one of ours names no method.
fn parse_method_id(raw: &str) -> Result<MethodId, Error> {
    if raw.is_empty() {
        return Err(Error::InvalidArgument("method_id is required".into()));
    }
    MethodId::parse(raw).map_err(|_| Error::UnknownMethod)
}

fn contact_method(m: &RegisteredMethod) -> ContactMethod {
    ContactMethod {
        method_id: m.method_id.as_str().to_owned(),
        kind: m.kind().code(),
        masked_destination: m.masked(),
    }
}

/// The routes that honour the client's idempotency key. BeginRegistration is not among them:
/// its request carries the user's password and nothing unguessable, and enrolment has no secret
/// to key the stored request hash with, so a stored row would let someone holding the database
/// test password guesses quickly; a retried BeginRegistration simply opens another session.
pub const IDEMPOTENT: [&str; 6] = [
    rpc::enrolment::ADD_METHOD,
    rpc::enrolment::CONFIRM_METHOD,
    rpc::enrolment::REMOVE_METHOD,
    rpc::enrolment::SET_SECURITY_ANSWERS,
    rpc::enrolment::SEND_STEP_UP_CODE,
    rpc::enrolment::VERIFY_STEP_UP_CODE,
];

/// Routes every enrolment subject to `enrolment`.
pub fn router(enrolment: Arc<Enrolment>) -> Router {
    macro_rules! endpoint {
        ($method:ident) => {{
            let enrolment = Arc::clone(&enrolment);
            move |_ctx, req| {
                let enrolment = Arc::clone(&enrolment);
                async move { enrolment.$method(req).await.map_err(RpcError::from) }
            }
        }};
    }
    Router::new(
        SERVICE,
        "sspr enrolment: registration sessions and users' contact methods",
    )
    .route(
        rpc::enrolment::BEGIN_REGISTRATION,
        endpoint!(begin_registration),
    )
    .route(rpc::enrolment::ADD_METHOD, endpoint!(add_method))
    .route(rpc::enrolment::CONFIRM_METHOD, endpoint!(confirm_method))
    .route(rpc::enrolment::LIST_METHODS, endpoint!(list_methods))
    .route(rpc::enrolment::GET_DESTINATION, endpoint!(get_destination))
    .route(rpc::enrolment::GET_STATUS, endpoint!(get_status))
    .route(
        rpc::enrolment::MATCH_DESTINATION,
        endpoint!(match_destination),
    )
    .route(
        rpc::enrolment::LIST_OWN_METHODS,
        endpoint!(list_own_methods),
    )
    .route(rpc::enrolment::REMOVE_METHOD, endpoint!(remove_method))
    .route(
        rpc::enrolment::LIST_SECURITY_QUESTIONS,
        endpoint!(list_security_questions),
    )
    .route(
        rpc::enrolment::SET_SECURITY_ANSWERS,
        endpoint!(set_security_answers),
    )
    .route(
        rpc::enrolment::LIST_ANSWERED_QUESTIONS,
        endpoint!(list_answered_questions),
    )
    .route(
        rpc::enrolment::CHECK_SECURITY_ANSWERS,
        endpoint!(check_security_answers),
    )
    .route(
        rpc::enrolment::LIST_METHOD_KINDS,
        endpoint!(list_method_kinds),
    )
    .route(
        rpc::enrolment::SEND_STEP_UP_CODE,
        endpoint!(send_step_up_code),
    )
    .route(
        rpc::enrolment::VERIFY_STEP_UP_CODE,
        endpoint!(verify_step_up_code),
    )
    .route(
        rpc::enrolment::LIST_DESTINATIONS,
        endpoint!(list_destinations),
    )
}
