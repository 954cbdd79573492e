//! NATS endpoints of the policy service: decode the request, convert it to domain types at
//! this edge, apply the rules, store, reply.
//!
//! Never logged or traced: the candidate password of `check_password`. Span fields carry only
//! the user id. The custom banned terms are not logged either (only their count).

use std::collections::HashMap;
use std::sync::Arc;

use prost::Message;
use sspr_bus::subjects::{events, rpc::policy as subjects};
use sspr_bus::{RequestContext, Router, RpcError};
use sspr_clock::SharedClock;
use sspr_proto::admin::v1 as admin;
use sspr_proto::common::v1 as common;
use sspr_proto::events::v1::{EventMeta, PolicyChanged};
use sspr_proto::internal::policy::v1 as wire;
use sspr_proto::internal::policy::v1::{
    CheckPasswordRequest, CheckPasswordResponse, EvaluateRequest, EvaluateResponse,
    GetPasswordPolicyRequest, GetPasswordPolicyResponse, GetPolicyRequest, GetPolicyResponse,
    PasswordViolation, PreviewRequest, PreviewResponse, SetPasswordPolicyRequest,
    SetPasswordPolicyResponse, SetPolicyRequest, SetPolicyResponse,
};
use sspr_storage::outbox::OutboxMessage;

use crate::SERVICE;
use crate::domain::limits::{Limits, LimitsDraft, OrganisationPrefixes, RANGES};
use crate::domain::password::{self, Account};
use crate::domain::password_policy::{PasswordPolicy, PasswordRules, PasswordRulesDraft};
use crate::domain::policy::{
    MethodKind, Policy, PolicyDraft, PolicyRules, Scope, SecurityQuestion, Subject,
};
use crate::domain::preview::{self, Fingerprint, PageToken, Tally};
use crate::ports::Announce;
use crate::ports::{PolicyStore, Population};

/// Directory users fetched per request while previewing.
const PREVIEW_BATCH: u32 = 500;
/// Most batches one preview reads (5 million users) before giving up.
const PREVIEW_MAX_BATCHES: usize = 10_000;

/// The state every endpoint shares; cheap to clone.
#[derive(Clone)]
pub struct PolicyHandlers {
    store: Arc<dyn PolicyStore>,
    clock: SharedClock,
    /// Where `preview` finds the users; without it `preview` answers `UNAVAILABLE`.
    population: Option<Arc<dyn Population>>,
    /// The SMS allowlist `evaluate` answers when the policy lists none.
    organisation_prefixes: OrganisationPrefixes,
}

impl PolicyHandlers {
    pub fn new(store: Arc<dyn PolicyStore>, clock: SharedClock) -> Self {
        Self {
            store,
            clock,
            population: None,
            organisation_prefixes: OrganisationPrefixes::default(),
        }
    }

    /// The organisation's own phone prefixes (`SSPR_ORGANISATION_PHONE_PREFIXES`): the SMS
    /// allowlist of a policy that lists none.
    pub fn with_organisation_prefixes(mut self, prefixes: OrganisationPrefixes) -> Self {
        self.organisation_prefixes = prefixes;
        self
    }

    /// Lets `preview` judge the users of `population`.
    pub fn with_population(mut self, population: Arc<dyn Population>) -> Self {
        self.population = Some(population);
        self
    }

    /// Which users could not reset under the proposed policy, validated exactly as
    /// `set_policy` validates it; nothing is stored or emitted. Every directory user is judged
    /// by the same evaluation as `evaluate`, with their confirmed methods, on every page.
    #[tracing::instrument(skip_all, fields(page_size = req.page_size))]
    pub async fn preview(&self, req: PreviewRequest) -> Result<PreviewResponse, RpcError> {
        let submitted = req
            .policy
            .ok_or_else(|| RpcError::invalid_argument("policy is required"))?;
        let rules = PolicyRules::parse(draft_from_proto(&submitted))
            .map_err(|e| RpcError::invalid_argument(e.to_string()))?;
        let page_size = match req.page_size {
            0 => preview::DEFAULT_PAGE_SIZE,
            n if n <= preview::MAX_PAGE_SIZE => n,
            n => {
                return Err(RpcError::invalid_argument(format!(
                    "page_size must be 1 to {}, got {n}",
                    preview::MAX_PAGE_SIZE
                )));
            }
        };
        let canonical = policy_to_proto(&Policy {
            rules: rules.clone(),
            version: 0,
        });
        let fingerprint = Fingerprint::of(&canonical.encode_to_vec());
        let after = match req.page_token.as_str() {
            "" => None,
            raw => Some(
                PageToken::decode(raw, &fingerprint)
                    .map_err(|e| RpcError::invalid_argument(e.to_string()))?,
            ),
        };
        let population = self
            .population
            .as_ref()
            .ok_or_else(|| RpcError::unavailable("the policy preview is not available"))?;

        let question_ids: Vec<String> = canonical
            .security_questions
            .iter()
            .map(|q| q.question_id.clone())
            .collect();
        let mut tally = Tally::new(after, page_size);
        let mut after_user_id = String::new();
        for _ in 0..PREVIEW_MAX_BATCHES {
            let page = population.list_users(&after_user_id, PREVIEW_BATCH).await?;
            if page.users.is_empty() {
                break;
            }
            let ids = page.users.iter().map(|u| u.user_id.clone()).collect();
            let mut kinds: HashMap<String, Vec<Option<MethodKind>>> = population
                .method_kinds(
                    ids,
                    question_ids.clone(),
                    canonical.questions_required_to_reset,
                )
                .await?
                .users
                .into_iter()
                .map(|u| {
                    let kinds = u.methods.iter().map(|m| kind_from_proto(m.kind)).collect();
                    (u.user_id, kinds)
                })
                .collect();
            for user in &page.users {
                // Nested groups count where the directory reports them.
                let group_ids = if user.effective_group_ids.is_empty() {
                    &user.group_ids
                } else {
                    &user.effective_group_ids
                };
                let registered = kinds.remove(&user.user_id).unwrap_or_default();
                let subject = Subject {
                    group_ids,
                    is_admin: user.is_admin,
                    enabled: user.enabled,
                };
                let judged = preview::readiness(&rules, &subject, &registered);
                tally.add(&user.user_id, &user.display_name, user.is_admin, judged);
            }
            if page.next_after_user_id.is_empty() {
                break;
            }
            after_user_id = page.next_after_user_id;
        }
        let result = tally.finish();
        tracing::info!(
            users_total = result.users_total,
            users_unable = result.users_unable,
            "policy previewed"
        );
        Ok(PreviewResponse {
            users_total: result.users_total,
            users_able: result.users_able,
            users_unable: result.users_unable,
            unable: result
                .unable
                .into_iter()
                .map(|u| admin::PreviewedUser {
                    user_id: u.user_id,
                    display_name: u.display_name,
                    is_admin: u.is_admin,
                    reason: u.inability.as_str().to_owned(),
                    usable_methods: u.usable_methods,
                    methods_required: u.methods_required,
                })
                .collect(),
            next_page_token: result
                .next
                .map(|t| t.encode(&fingerprint))
                .unwrap_or_default(),
        })
    }

    #[tracing::instrument(skip_all)]
    pub async fn get_policy(&self, _req: GetPolicyRequest) -> Result<GetPolicyResponse, RpcError> {
        let policy = self.store.current().await?;
        Ok(GetPolicyResponse {
            policy: Some(policy_to_proto(&policy)),
        })
    }

    #[tracing::instrument(skip_all)]
    pub async fn set_policy(&self, req: SetPolicyRequest) -> Result<SetPolicyResponse, RpcError> {
        let submitted = req
            .policy
            .ok_or_else(|| RpcError::invalid_argument("policy is required"))?;
        let rules = PolicyRules::parse(draft_from_proto(&submitted))
            .map_err(|e| RpcError::invalid_argument(e.to_string()))?;
        let now = self.clock.now();
        let policy = self
            .store
            .replace(rules, now, announce(now, req.actor))
            .await?;
        tracing::info!(
            version = policy.version,
            scope = policy.rules.scope().as_str(),
            methods_required = policy.rules.methods_required(),
            "policy changed"
        );
        Ok(SetPolicyResponse {
            policy: Some(policy_to_proto(&policy)),
        })
    }

    #[tracing::instrument(skip_all, fields(user_id = %req.user_id))]
    pub async fn evaluate(&self, req: EvaluateRequest) -> Result<EvaluateResponse, RpcError> {
        let policy = self.store.current().await?;
        let evaluation = policy.rules.evaluate(&Subject {
            group_ids: &req.group_ids,
            is_admin: req.is_admin,
            enabled: req.enabled,
        });
        tracing::debug!(
            eligible = evaluation.eligible,
            methods_required = evaluation.methods_required,
            policy_version = policy.version,
            "evaluated"
        );
        Ok(EvaluateResponse {
            eligible: evaluation.eligible,
            methods_required: evaluation.methods_required,
            policy_methods_required: policy.rules.methods_required(),
            allowed_methods: evaluation
                .allowed_methods
                .iter()
                .map(|m| kind_to_proto(*m))
                .collect(),
            reconfirm_after_days: evaluation.reconfirm_after_days,
            require_full_destination: evaluation.require_full_destination,
            helpdesk_contact: evaluation.helpdesk_contact,
            security_questions: questions_to_proto(&evaluation.security_questions),
            questions_required_to_register: evaluation.questions_required_to_register,
            questions_required_to_reset: evaluation.questions_required_to_reset,
            limits: Some(limits_to_proto(
                policy.rules.limits(),
                policy
                    .rules
                    .limits()
                    .enforced_prefixes(&self.organisation_prefixes),
            )),
        })
    }

    /// Checks a candidate against the stored password section. Never logs the candidate.
    #[tracing::instrument(skip_all, fields(user_id = %req.user_id))]
    pub async fn check_password(
        &self,
        req: CheckPasswordRequest,
    ) -> Result<CheckPasswordResponse, RpcError> {
        let policy = self.store.current_password_policy().await?;
        let account = Account {
            user_id: &req.user_id,
            display_name: &req.display_name,
        };
        let assessment = password::check(&req.password, account, &policy.rules);
        tracing::debug!(
            accepted = assessment.accepted(),
            violations = assessment.violations.len(),
            strength = assessment.strength.score,
            password_policy_version = policy.version,
            "password checked"
        );
        Ok(CheckPasswordResponse {
            estimate: Some(common::PasswordStrength {
                score: assessment.strength.score,
                guesses_log10: assessment.strength.guesses_log10,
                suggestions: assessment
                    .strength
                    .suggestions
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
            }),
            accepted: assessment.accepted(),
            crack_time: assessment.strength.crack_time(),
            strength: assessment.strength.score,
            history_count: policy.rules.history_count(),
            violations: assessment
                .violations
                .into_iter()
                .map(|v| PasswordViolation {
                    rule: v.rule.as_str().to_owned(),
                    message: v.message,
                })
                .collect(),
        })
    }

    #[tracing::instrument(skip_all)]
    pub async fn get_password_policy(
        &self,
        _req: GetPasswordPolicyRequest,
    ) -> Result<GetPasswordPolicyResponse, RpcError> {
        let policy = self.store.current_password_policy().await?;
        Ok(GetPasswordPolicyResponse {
            policy: Some(password_policy_to_proto(&policy)),
        })
    }

    /// Validates and stores the password section as its next version and emits
    /// `policy.changed` (carrying the SSPR policy in force: the public event has no password
    /// section yet).
    #[tracing::instrument(skip_all)]
    pub async fn set_password_policy(
        &self,
        req: SetPasswordPolicyRequest,
    ) -> Result<SetPasswordPolicyResponse, RpcError> {
        let submitted = req
            .policy
            .ok_or_else(|| RpcError::invalid_argument("policy is required"))?;
        let rules = PasswordRules::parse(PasswordRulesDraft {
            min_length: submitted.min_length,
            custom_banned_terms: submitted.custom_banned_terms,
            organisation_name: submitted.organisation_name,
            history_count: submitted.history_count,
        })
        .map_err(|e| RpcError::invalid_argument(e.to_string()))?;
        let now = self.clock.now();
        let policy = self
            .store
            .replace_password_policy(rules, now, announce(now, req.actor))
            .await?;
        tracing::info!(
            version = policy.version,
            min_length = policy.rules.min_length(),
            custom_banned_terms = policy.rules.custom_terms().len(),
            history_count = policy.rules.history_count(),
            "password policy changed"
        );
        Ok(SetPasswordPolicyResponse {
            policy: Some(password_policy_to_proto(&policy)),
        })
    }
}

/// The `policy.changed` event for a change made at `now` by the admin `actor`, carrying the
/// stored SSPR policy.
fn announce(now: chrono::DateTime<chrono::Utc>, actor: String) -> Announce {
    Box::new(move |stored: &Policy| {
        let event_id = uuid::Uuid::now_v7().to_string();
        let event = PolicyChanged {
            meta: Some(EventMeta {
                event_id: event_id.clone(),
                occurred_at: Some(sspr_proto::time::timestamp(now)),
                user_id: String::new(),
                flow_id: String::new(),
                source: SERVICE.to_owned(),
                actor,
            }),
            policy: Some(policy_to_proto(stored)),
        };
        OutboxMessage::new(events::POLICY_CHANGED, event_id, &event)
    })
}

fn password_policy_to_proto(p: &PasswordPolicy) -> wire::PasswordPolicy {
    wire::PasswordPolicy {
        min_length: p.rules.min_length(),
        custom_banned_terms: p.rules.custom_terms().to_vec(),
        organisation_name: p.rules.organisation_name().to_owned(),
        history_count: p.rules.history_count(),
        version: p.version,
        max_length: p.rules.max_length(),
    }
}

/// The routes that honour the client's idempotency key (the Admin API's changes).
pub const IDEMPOTENT: [&str; 2] = [subjects::SET_POLICY, subjects::SET_PASSWORD_POLICY];

/// The service's NATS endpoints.
pub fn router(handlers: PolicyHandlers) -> Router {
    let get = handlers.clone();
    let set = handlers.clone();
    let eval = handlers.clone();
    let check = handlers.clone();
    let get_password = handlers.clone();
    let preview = handlers.clone();
    let set_password = handlers;
    Router::new(
        SERVICE,
        "sspr policy: SSPR policy, eligibility and password rules",
    )
    .route(subjects::GET_POLICY, move |_: RequestContext, req| {
        let h = get.clone();
        async move { h.get_policy(req).await }
    })
    .route(subjects::SET_POLICY, move |_: RequestContext, req| {
        let h = set.clone();
        async move { h.set_policy(req).await }
    })
    .route(subjects::EVALUATE, move |_: RequestContext, req| {
        let h = eval.clone();
        async move { h.evaluate(req).await }
    })
    .route(subjects::CHECK_PASSWORD, move |_: RequestContext, req| {
        let h = check.clone();
        async move { h.check_password(req).await }
    })
    .route(
        sspr_bus::subjects::rpc::policy::GET_PASSWORD_POLICY,
        move |_: RequestContext, req| {
            let h = get_password.clone();
            async move { h.get_password_policy(req).await }
        },
    )
    .route(
        sspr_bus::subjects::rpc::policy::SET_PASSWORD_POLICY,
        move |_: RequestContext, req| {
            let h = set_password.clone();
            async move { h.set_password_policy(req).await }
        },
    )
    .route(subjects::PREVIEW, move |_: RequestContext, req| {
        let h = preview.clone();
        async move { h.preview(req).await }
    })
}

fn scope_from_proto(raw: i32) -> Option<Scope> {
    match admin::Scope::try_from(raw).ok()? {
        admin::Scope::Unspecified => None,
        admin::Scope::None => Some(Scope::None),
        admin::Scope::Selected => Some(Scope::Selected),
        admin::Scope::All => Some(Scope::All),
    }
}

fn scope_to_proto(scope: Scope) -> admin::Scope {
    match scope {
        Scope::None => admin::Scope::None,
        Scope::Selected => admin::Scope::Selected,
        Scope::All => admin::Scope::All,
    }
}

fn kind_from_proto(raw: i32) -> Option<MethodKind> {
    match common::MethodKind::try_from(raw).ok()? {
        common::MethodKind::Unspecified => None,
        common::MethodKind::Email => Some(MethodKind::Email),
        common::MethodKind::Sms => Some(MethodKind::Sms),
        common::MethodKind::SecurityQuestions => Some(MethodKind::SecurityQuestions),
        common::MethodKind::Voice => Some(MethodKind::Voice),
    }
}

fn kind_to_proto(kind: MethodKind) -> i32 {
    match kind {
        MethodKind::Email => common::MethodKind::Email as i32,
        MethodKind::Sms => common::MethodKind::Sms as i32,
        MethodKind::Voice => common::MethodKind::Voice as i32,
        MethodKind::SecurityQuestions => common::MethodKind::SecurityQuestions as i32,
    }
}

/// The submitted policy as a draft; `version` is ignored (the store assigns it).
fn draft_from_proto(p: &admin::Policy) -> PolicyDraft {
    PolicyDraft {
        scope: scope_from_proto(p.scope),
        group_ids: p.group_ids.clone(),
        methods_required: p.methods_required,
        allowed_methods: p
            .allowed_methods
            .iter()
            .map(|m| kind_from_proto(*m))
            .collect(),
        reconfirm_after_days: p.reconfirm_after_days,
        require_full_destination: p.require_full_destination,
        helpdesk_contact: p.helpdesk_contact.clone(),
        allow_unlock: p.allow_unlock,
        security_questions: p
            .security_questions
            .iter()
            .map(|q| (q.question_id.clone(), q.text.clone()))
            .collect(),
        questions_required_to_register: p.questions_required_to_register,
        questions_required_to_reset: p.questions_required_to_reset,
        limits: limits_from_proto(p.limits.as_ref()),
    }
}

/// The field of `limits` named `name` (one of [`RANGES`]); `None` for an unknown name. Public
/// for the CLI's `--limit NAME=VALUE`.
pub fn limit_slot<'a>(limits: &'a mut admin::Limits, name: &str) -> Option<&'a mut Option<u32>> {
    Some(match name {
        "phone_sends_per_hour" => &mut limits.phone_sends_per_hour,
        "email_sends_per_10_minutes" => &mut limits.email_sends_per_10_minutes,
        "failed_verifications_per_day" => &mut limits.failed_verifications_per_day,
        "block_hours" => &mut limits.block_hours,
        "destination_sends_per_hour" => &mut limits.destination_sends_per_hour,
        "ip_start_reset_per_minute" => &mut limits.ip_start_reset_per_minute,
        "ip_send_code_per_minute" => &mut limits.ip_send_code_per_minute,
        "user_sign_in_checks_per_hour" => &mut limits.user_sign_in_checks_per_hour,
        "ip_sign_in_checks_per_minute" => &mut limits.ip_sign_in_checks_per_minute,
        "resend_after_seconds" => &mut limits.resend_after_seconds,
        "new_method_cooldown_hours" => &mut limits.new_method_cooldown_hours,
        "phone_budget_per_hour" => &mut limits.phone_budget_per_hour,
        "phone_budget_per_prefix_per_hour" => &mut limits.phone_budget_per_prefix_per_hour,
        "breaker_min_sends" => &mut limits.breaker_min_sends,
        "breaker_min_verified_percent" => &mut limits.breaker_min_verified_percent,
        "challenge_ip_starts_per_minute" => &mut limits.challenge_ip_starts_per_minute,
        "challenge_ip_failures_per_hour" => &mut limits.challenge_ip_failures_per_hour,
        "code_length" => &mut limits.code_length,
        _ => return None,
    })
}

/// The submitted limits as a draft: every set numeric field by name, and the allowlist.
fn limits_from_proto(limits: Option<&admin::Limits>) -> LimitsDraft {
    let Some(limits) = limits else {
        return LimitsDraft::default();
    };
    let mut copy = limits.clone();
    LimitsDraft {
        values: RANGES
            .iter()
            .filter_map(|(name, _, _)| {
                let value = (*limit_slot(&mut copy, name)?)?;
                Some(((*name).to_owned(), value))
            })
            .collect(),
        phone_allowed_prefixes: limits.phone_allowed_prefixes.clone(),
    }
}

/// `limits` on the wire, with `prefixes` as the allowlist.
fn limits_to_proto(limits: &Limits, prefixes: Vec<String>) -> admin::Limits {
    let mut wire = admin::Limits {
        phone_allowed_prefixes: prefixes,
        ..Default::default()
    };
    for (name, value) in limits.values() {
        if let Some(slot) = limit_slot(&mut wire, name) {
            *slot = Some(value);
        }
    }
    wire
}

/// The limits of a stored policy as the admin set them (unset fields stay unset).
fn stored_limits_to_proto(limits: &Limits) -> admin::Limits {
    limits_to_proto(
        limits,
        limits
            .phone_allowed_prefixes()
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect(),
    )
}

fn questions_to_proto(questions: &[SecurityQuestion]) -> Vec<common::SecurityQuestion> {
    questions
        .iter()
        .map(|q| common::SecurityQuestion {
            question_id: q.id().to_owned(),
            text: q.text().to_owned(),
        })
        .collect()
}

fn policy_to_proto(p: &Policy) -> admin::Policy {
    admin::Policy {
        scope: scope_to_proto(p.rules.scope()) as i32,
        group_ids: p
            .rules
            .group_ids()
            .iter()
            .map(|g| g.as_str().to_owned())
            .collect(),
        methods_required: p.rules.methods_required(),
        allowed_methods: p
            .rules
            .allowed_methods()
            .iter()
            .map(|m| kind_to_proto(*m))
            .collect(),
        version: p.version,
        reconfirm_after_days: p.rules.reconfirm_after_days(),
        allow_unlock: p.rules.allow_unlock(),
        security_questions: questions_to_proto(p.rules.security_questions()),
        questions_required_to_register: p.rules.questions_required_to_register(),
        questions_required_to_reset: p.rules.questions_required_to_reset(),
        limits: Some(stored_limits_to_proto(p.rules.limits())),
        require_full_destination: p.rules.require_full_destination(),
        helpdesk_contact: p.rules.helpdesk_contact().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_unspecified_enum_values_become_none() {
        assert_eq!(scope_from_proto(0), None);
        assert_eq!(scope_from_proto(99), None);
        assert_eq!(
            scope_from_proto(admin::Scope::Selected as i32),
            Some(Scope::Selected)
        );
        assert_eq!(kind_from_proto(0), None);
        assert_eq!(kind_from_proto(-1), None);
        assert_eq!(
            kind_from_proto(common::MethodKind::Sms as i32),
            Some(MethodKind::Sms)
        );
        assert_eq!(
            kind_from_proto(common::MethodKind::Voice as i32),
            Some(MethodKind::Voice)
        );
        assert_eq!(
            kind_to_proto(MethodKind::Voice),
            common::MethodKind::Voice as i32
        );
    }

    #[test]
    fn policy_round_trips_through_proto() {
        let rules = PolicyRules::parse(PolicyDraft {
            scope: Some(Scope::Selected),
            group_ids: vec!["staff".into()],
            methods_required: 2,
            allowed_methods: vec![Some(MethodKind::Sms), Some(MethodKind::Email)],
            reconfirm_after_days: 90,
            require_full_destination: true,
            helpdesk_contact: "https://help.example.com".into(),
            allow_unlock: true,
            security_questions: Vec::new(),
            questions_required_to_register: 0,
            questions_required_to_reset: 0,
            limits: LimitsDraft {
                values: vec![
                    ("phone_sends_per_hour".into(), 3),
                    ("breaker_min_verified_percent".into(), 0),
                ],
                phone_allowed_prefixes: vec!["+44".into()],
            },
        })
        .expect("valid");
        let policy = Policy {
            rules: rules.clone(),
            version: 7,
        };
        let wire = policy_to_proto(&policy);
        assert_eq!(wire.version, 7);
        let limits = wire.limits.clone().expect("limits answered");
        assert_eq!(limits.phone_sends_per_hour, Some(3));
        assert_eq!(limits.breaker_min_verified_percent, Some(0));
        assert_eq!(limits.code_length, None);
        assert_eq!(limits.phone_allowed_prefixes, vec!["+44"]);
        assert_eq!(PolicyRules::parse(draft_from_proto(&wire)), Ok(rules));
    }

    #[test]
    fn every_limit_name_has_a_proto_field() {
        let mut wire = admin::Limits::default();
        for (name, _, max) in RANGES {
            *limit_slot(&mut wire, name).expect(name) = Some(*max);
        }
        let draft = limits_from_proto(Some(&wire));
        assert_eq!(draft.values.len(), RANGES.len());
        let limits = Limits::parse(draft).expect("every maximum is valid");
        assert_eq!(stored_limits_to_proto(&limits), wire);
        assert!(limit_slot(&mut wire, "no_such_limit").is_none());
    }

    #[test]
    fn security_questions_round_trip_through_proto() {
        let rules = PolicyRules::parse(PolicyDraft {
            scope: Some(Scope::All),
            methods_required: 2,
            allowed_methods: vec![Some(MethodKind::Email), Some(MethodKind::SecurityQuestions)],
            security_questions: (1..=4)
                .map(|i| (format!("q{i}"), format!("Question number {i}?")))
                .collect(),
            questions_required_to_register: 4,
            questions_required_to_reset: 3,
            ..PolicyDraft::default()
        })
        .expect("valid");
        let wire = policy_to_proto(&Policy {
            rules: rules.clone(),
            version: 1,
        });
        assert_eq!(wire.security_questions.len(), 4);
        assert_eq!(wire.security_questions[0].question_id, "q1");
        assert_eq!(wire.questions_required_to_register, 4);
        assert_eq!(wire.questions_required_to_reset, 3);
        assert_eq!(
            kind_from_proto(common::MethodKind::SecurityQuestions as i32),
            Some(MethodKind::SecurityQuestions)
        );
        assert_eq!(PolicyRules::parse(draft_from_proto(&wire)), Ok(rules));
    }
}
