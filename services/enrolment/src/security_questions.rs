//! Security questions as a registration method: the endpoints that list the policy's questions,
//! register a user's answers, and let verification pick and check answers at reset.
//!
//! Invariants:
//! - Answers are secrets: they are hashed (see `domain::questions`) off the async runtime and
//!   never logged, traced, put in an event or echoed in an error.
//! - Security questions are offered only when the policy allowed them for the user when the
//!   session began (never for an admin account: policy drops them from an admin's evaluation)
//!   and the policy in force still allows them.
//! - A user's answers make ONE method, with a stable method id. It counts toward
//!   `methods_required` only while enough of its questions are still in the policy: at least
//!   `questions_required_to_register` for registration, `questions_required_to_reset` at reset.

use sspr_proto::admin::v1::Policy;
use sspr_proto::common::v1::{ContactMethod, MethodKind as WireKind, SecurityQuestion};
use sspr_proto::internal::enrolment::v1::{
    CheckSecurityAnswersRequest, CheckSecurityAnswersResponse, ListAnsweredQuestionsRequest,
    ListAnsweredQuestionsResponse, ListSecurityQuestionsRequest, ListSecurityQuestionsResponse,
    SetSecurityAnswersRequest, SetSecurityAnswersResponse,
};
use sspr_proto::internal::policy::v1::EvaluateResponse;
use tracing::Span;
use tracing::field::Empty;

use crate::domain::questions::{
    self, AnswerHash, MAX_ANSWER_CHARS, MAX_QUESTION_ID_CHARS, count_wrong, hash_answer,
    parse_answers,
};
use crate::domain::{MethodChange, MethodId, RegistrationSession, UserId};
use crate::error::Error;
use crate::handlers::Enrolment;
use crate::ports::SecurityMethod;

/// Most answers accepted in one check (the policy never asks for more than 5).
const MAX_CHECKED_ANSWERS: usize = 10;

/// The security-question part of the policy for one user.
#[derive(Debug, Clone)]
pub struct QuestionPolicy {
    pub questions: Vec<SecurityQuestion>,
    pub to_register: u32,
    pub to_reset: u32,
}

impl QuestionPolicy {
    /// From the user's evaluation: `None` unless security questions are allowed for them.
    pub fn from_evaluation(v: &EvaluateResponse) -> Option<Self> {
        let allowed = v
            .allowed_methods
            .contains(&(WireKind::SecurityQuestions as i32));
        (allowed && !v.security_questions.is_empty()).then(|| Self {
            questions: v.security_questions.clone(),
            to_register: v.questions_required_to_register,
            to_reset: v.questions_required_to_reset,
        })
    }

    /// From the policy in force: `None` unless it allows security questions.
    fn from_policy(p: &Policy) -> Option<Self> {
        let allowed = p
            .allowed_methods
            .contains(&(WireKind::SecurityQuestions as i32));
        (allowed && !p.security_questions.is_empty()).then(|| Self {
            questions: p.security_questions.clone(),
            to_register: p.questions_required_to_register,
            to_reset: p.questions_required_to_reset,
        })
    }

    pub fn ids(&self) -> Vec<String> {
        self.questions
            .iter()
            .map(|q| q.question_id.clone())
            .collect()
    }
}

/// The method as users see it: "N questions", counting only questions still in `ids`.
pub fn contact_method(method: &SecurityMethod, ids: &[String]) -> ContactMethod {
    ContactMethod {
        method_id: method.method_id.as_str().to_owned(),
        kind: WireKind::SecurityQuestions as i32,
        masked_destination: questions::masked(method.answered_among(ids)),
    }
}

impl Enrolment {
    /// The question policy for a session's user: `None` when the session did not allow
    /// security questions or the policy in force no longer does.
    pub(crate) async fn session_questions(
        &self,
        session: &RegistrationSession,
    ) -> Result<Option<QuestionPolicy>, Error> {
        if !session.questions_allowed {
            return Ok(None);
        }
        let policy = self.peers.policy().await?;
        Ok(QuestionPolicy::from_policy(&policy))
    }

    /// The user's security-questions method when it counts toward registration under `qp`.
    pub(crate) async fn counted_questions(
        &self,
        user: &UserId,
        qp: Option<&QuestionPolicy>,
    ) -> Result<Option<SecurityMethod>, Error> {
        let Some(qp) = qp else {
            return Ok(None);
        };
        let ids = qp.ids();
        Ok(self
            .store
            .security_method(user)
            .await?
            .filter(|m| qp.to_register > 0 && m.answered_among(&ids) >= qp.to_register as usize))
    }

    /// The policy's questions for the session's user, and how many to answer.
    #[tracing::instrument(skip_all, fields(user_id = Empty, flow_id = Empty))]
    pub async fn list_security_questions(
        &self,
        req: ListSecurityQuestionsRequest,
    ) -> Result<ListSecurityQuestionsResponse, Error> {
        let session = self.live_session(&req.session_id).await?;
        Ok(match self.session_questions(&session).await? {
            Some(qp) => ListSecurityQuestionsResponse {
                questions: qp.questions,
                answers_required: qp.to_register,
            },
            None => ListSecurityQuestionsResponse::default(),
        })
    }

    /// Registers (or replaces) the session's user's answers as one method.
    #[tracing::instrument(skip_all, fields(user_id = Empty, flow_id = Empty, method_id = Empty))]
    pub async fn set_security_answers(
        &self,
        req: SetSecurityAnswersRequest,
    ) -> Result<SetSecurityAnswersResponse, Error> {
        let session = self.live_session(&req.session_id).await?;
        session.step_up.permits(MethodChange::SetAnswers)?;
        let qp = self
            .session_questions(&session)
            .await?
            .ok_or(questions::AnswerError::NotAllowed)?;
        let parsed = parse_answers(
            req.answers
                .iter()
                .map(|a| (a.question_id.as_str(), a.answer.as_str())),
            &qp.ids(),
            qp.to_register,
        )?;
        let count = parsed.len();
        let hashed = tokio::task::spawn_blocking(move || {
            parsed
                .into_iter()
                .map(|(id, answer)| hash_answer(&answer).map(|h| (id, h)))
                .collect::<Result<Vec<(String, AnswerHash)>, String>>()
        })
        .await
        .map_err(|e| Error::Hashing(e.to_string()))?
        .map_err(Error::Hashing)?;
        let (method_id, registered) = self
            .store
            .set_security_answers(
                &session.user_id,
                hashed,
                questions::masked(count),
                &session.flow_id,
                self.clock.now(),
            )
            .await?;
        Span::current().record("method_id", method_id.as_str());
        let complete = session.requirements.satisfied_by(registered);
        tracing::info!(
            questions = count,
            methods_registered = registered,
            registration_complete = complete,
            "security answers registered"
        );
        Ok(SetSecurityAnswersResponse {
            method_id: method_id.as_str().to_owned(),
            registration_complete: complete,
        })
    }

    /// The question ids the user answered (for verification to pick from).
    #[tracing::instrument(skip_all, fields(user_id = Empty, method_id = Empty))]
    pub async fn list_answered_questions(
        &self,
        req: ListAnsweredQuestionsRequest,
    ) -> Result<ListAnsweredQuestionsResponse, Error> {
        let (_, method) = self.own_questions(&req.user_id, &req.method_id).await?;
        Ok(ListAnsweredQuestionsResponse {
            question_ids: method.answers.into_iter().map(|(id, _)| id).collect(),
        })
    }

    /// Whether every answer matches (all are checked, whatever fails first).
    #[tracing::instrument(skip_all, fields(user_id = Empty, method_id = Empty))]
    pub async fn check_security_answers(
        &self,
        req: CheckSecurityAnswersRequest,
    ) -> Result<CheckSecurityAnswersResponse, Error> {
        let (_, method) = self.own_questions(&req.user_id, &req.method_id).await?;
        if req.answers.is_empty() || req.answers.len() > MAX_CHECKED_ANSWERS {
            return Err(Error::InvalidArgument(format!(
                "answers must have 1 to {MAX_CHECKED_ANSWERS} entries"
            )));
        }
        if req.answers.iter().any(|a| {
            a.question_id.chars().count() > MAX_QUESTION_ID_CHARS
                || a.answer.chars().count() > MAX_ANSWER_CHARS * 4
        }) {
            return Err(Error::InvalidArgument("an answer is too long".into()));
        }
        let candidates: Vec<(String, String)> = req
            .answers
            .into_iter()
            .map(|a| (a.question_id, a.answer))
            .collect();
        let stored = method.answers;
        let wrong = tokio::task::spawn_blocking(move || count_wrong(&candidates, &stored))
            .await
            .map_err(|e| Error::Hashing(e.to_string()))?;
        tracing::debug!(wrong, "security answers checked");
        Ok(CheckSecurityAnswersResponse {
            ok: wrong == 0,
            wrong,
        })
    }

    /// The user's security-questions method named `raw_method`; `UnknownMethod` otherwise.
    async fn own_questions(
        &self,
        raw_user: &str,
        raw_method: &str,
    ) -> Result<(UserId, SecurityMethod), Error> {
        let user_id = UserId::parse(raw_user)?;
        Span::current().record("user_id", user_id.as_str());
        let method_id = MethodId::parse(raw_method).map_err(|_| Error::UnknownMethod)?;
        Span::current().record("method_id", method_id.as_str());
        let method = self
            .store
            .security_method(&user_id)
            .await?
            .filter(|m| m.method_id == method_id)
            .ok_or(Error::UnknownMethod)?;
        Ok((user_id, method))
    }
}
