//! The security-question endpoints of a reset flow: GetSecurityQuestions and
//! AnswerSecurityQuestions.
//!
//! Invariants:
//! - The pick lives in the session (`QuestionChallenge`, persisted with it) and changes only
//!   through a compare-and-set on what was read, so concurrent requests never see two picks or
//!   spend one attempt twice.
//! - A wrong answer set is a failed attempt like a wrong code: `code.rejected` (reason
//!   `wrong_answers`, with the attempts left), and after the last one `too_many_attempts`. A
//!   right set emits `code.verified` and records the method verified, in the same transaction.
//! - Answers go only to enrolment (which holds the hashes); they are never logged, stored or put
//!   in an event or an error here.
//! - A decoy's questions method answers like a real one: its pick (kept in the session the same
//!   way) comes from the policy's questions, keyed by user id and attempt number
//!   ([`decoy_pick`]); its answers are never right, cost an attempt and re-pick like wrong ones,
//!   and (like a decoy's wrong codes) emit nothing. Enrolment is asked the same questions.

use std::collections::BTreeSet;

use sspr_bus::subjects;
use sspr_proto::common::v1 as common;
use sspr_proto::events::v1 as events;
use sspr_proto::internal::policy::v1 as pol;
use sspr_proto::internal::verification::v1::{
    AnswerSecurityQuestionsRequest, AnswerSecurityQuestionsResponse, GetSecurityQuestionsRequest,
    GetSecurityQuestionsResponse,
};
use tracing::field::Empty;

use super::{MAX_RACE_RETRIES, Verification};
use crate::Error;
use crate::domain::decoy::decoy_pick;
use crate::domain::questions::{QuestionChallenge, answers_cover, pick};
use crate::domain::{InputError, MethodKind, Rejection, ResetSession, SessionMethod};

const NOT_QUESTIONS: &str = "this method is not a security-questions method";
const TOO_FEW: &str = "not enough of this method's security questions are in the policy";
const NOT_PICKED: &str = "ask for the security questions first (GetSecurityQuestions)";
/// Longest answer passed on, in characters (enrolment refuses longer ones anyway).
const MAX_ANSWER_CHARS: usize = 160;

impl Verification {
    /// The session and its security-questions method named `raw_method`.
    async fn questions_session(
        &self,
        raw_token: &str,
        raw_method: &str,
    ) -> Result<(String, ResetSession, SessionMethod), Error> {
        let (token_hash, session) = self.usable_session(raw_token).await?;
        self.ensure_not_blocked(&session.user_id).await?;
        let method = session.method(raw_method)?.clone();
        tracing::Span::current().record("method_id", method.method_id.as_str());
        if method.kind != MethodKind::SecurityQuestions {
            return Err(Error::Questions(NOT_QUESTIONS));
        }
        Ok((token_hash, session, method))
    }

    /// The policy's questions for the user (texts by id).
    async fn policy_questions(
        &self,
        session: &ResetSession,
    ) -> Result<pol::EvaluateResponse, Error> {
        Ok(self
            .peers
            .evaluate(pol::EvaluateRequest {
                user_id: session.user_id.as_str().to_owned(),
                ..Default::default()
            })
            .await?)
    }

    #[tracing::instrument(skip_all, fields(user_id = Empty, flow_id = Empty, method_id = Empty))]
    pub(super) async fn get_security_questions(
        &self,
        req: GetSecurityQuestionsRequest,
    ) -> Result<GetSecurityQuestionsResponse, Error> {
        for _ in 0..MAX_RACE_RETRIES {
            let (token_hash, session, method) = self
                .questions_session(&req.session_id, &req.method_id)
                .await?;
            let policy = self.policy_questions(&session).await?;
            let texts = &policy.security_questions;
            let before = self.store.challenge(&token_hash).await?;
            // The same pick until it is answered, while all its questions are in the policy.
            if let Some(picked) = before.as_ref().and_then(|c| c.pending(&method.method_id))
                && let Some(questions) = with_texts(picked, texts)
            {
                return Ok(GetSecurityQuestionsResponse { questions });
            }
            let attempts_left = before
                .as_ref()
                .map(|c| c.attempts_left)
                .unwrap_or(self.config.rules().max_attempts);
            if attempts_left == 0 {
                return Err(Error::Rejected(Rejection::TooManyAttempts));
            }
            let answered = self
                .peers
                .list_answered_questions(session.user_id.as_str(), method.method_id.as_str())
                .await;
            let required = policy.questions_required_to_reset as usize;
            let picked = if session.decoy {
                // Same round trip as a real session; a decoy "answered" as many of the policy's
                // questions as registration requires (a keyed choice).
                let available: Vec<String> = texts.iter().map(|q| q.question_id.clone()).collect();
                let registered = policy.questions_required_to_register as usize;
                let attempt = self
                    .config
                    .rules()
                    .max_attempts
                    .saturating_sub(attempts_left);
                decoy_pick(
                    self.key(),
                    &session.user_id,
                    attempt,
                    &available,
                    registered,
                    required,
                )
            } else {
                let available: Vec<String> = answered?
                    .question_ids
                    .into_iter()
                    .filter(|id| texts.iter().any(|q| q.question_id == *id))
                    .collect();
                pick(&available, required)
            }
            .ok_or(Error::Questions(TOO_FEW))?;
            let questions = with_texts(&picked, texts).ok_or(Error::Questions(TOO_FEW))?;
            let after = QuestionChallenge {
                method_id: method.method_id.clone(),
                picked,
                attempts_left,
            };
            let now = self.clock.now();
            if self
                .store
                .save_challenge(&token_hash, before.as_ref(), &after, None, Vec::new(), now)
                .await?
            {
                tracing::info!(questions = questions.len(), "security questions picked");
                return Ok(GetSecurityQuestionsResponse { questions });
            }
        }
        Err(Error::Internal(
            "too many concurrent question requests in one session",
        ))
    }

    #[tracing::instrument(skip_all, fields(user_id = Empty, flow_id = Empty, method_id = Empty))]
    pub(super) async fn answer_security_questions(
        &self,
        req: AnswerSecurityQuestionsRequest,
    ) -> Result<AnswerSecurityQuestionsResponse, Error> {
        let (token_hash, session, method) = self
            .questions_session(&req.session_id, &req.method_id)
            .await?;
        let before = self
            .store
            .challenge(&token_hash)
            .await?
            .ok_or(Error::Questions(NOT_PICKED))?;
        let now = self.clock.now();
        let meta = self.meta(now, &session.user_id, &session.flow_id);
        let rejected = |reason: &str, attempts_left: u32| {
            let event = events::CodeRejected {
                meta: Some(meta.clone()),
                method_id: method.method_id.as_str().to_owned(),
                purpose: events::CodePurpose::Reset as i32,
                reason: reason.to_owned(),
                attempts_left,
            };
            vec![self.event(subjects::events::CODE_REJECTED, &meta, &event)]
        };
        if before.method_id == method.method_id && before.attempts_left == 0 {
            let reason = Rejection::TooManyAttempts;
            if !session.decoy {
                self.store
                    .record_events(rejected(reason.reason(), 0), now)
                    .await?;
                self.signal.notify();
            }
            return Err(Error::Rejected(reason));
        }
        let picked = before
            .pending(&method.method_id)
            .ok_or(Error::Questions(NOT_PICKED))?
            .to_vec();
        let ids: Vec<&str> = req.answers.iter().map(|a| a.question_id.as_str()).collect();
        if !answers_cover(&picked, &ids) {
            return Err(InputError::new(
                "answers",
                "must answer each picked question exactly once",
            )
            .into());
        }
        if req
            .answers
            .iter()
            .any(|a| a.answer.is_empty() || a.answer.chars().count() > MAX_ANSWER_CHARS)
        {
            return Err(
                InputError::new("answers", "every answer must be 1 to 40 characters").into(),
            );
        }
        let checked = self
            .peers
            .check_security_answers(
                session.user_id.as_str(),
                method.method_id.as_str(),
                req.answers,
            )
            .await;
        // Same round trip for a decoy, whose answers are never right.
        if !session.decoy && checked?.ok {
            let mut after_session = session.clone();
            after_session.record_verified(&method.method_id, now);
            let after = QuestionChallenge {
                picked: Vec::new(),
                ..before.clone()
            };
            let verified = events::CodeVerified {
                meta: Some(meta.clone()),
                method_id: method.method_id.as_str().to_owned(),
                purpose: events::CodePurpose::Reset as i32,
            };
            let messages = vec![self.event(subjects::events::CODE_VERIFIED, &meta, &verified)];
            if !self
                .store
                .save_challenge(
                    &token_hash,
                    Some(&before),
                    &after,
                    Some((&session, &after_session)),
                    messages,
                    now,
                )
                .await?
            {
                // Answered (or re-picked) concurrently: this answer is for a stale pick.
                return Err(Error::Questions(NOT_PICKED));
            }
            self.signal.notify();
            tracing::info!("security questions answered");
            return Ok(AnswerSecurityQuestionsResponse {
                methods_remaining: after_session.methods_remaining(),
                unlock_available: self.unlock_available(&after_session).await,
            });
        }
        let attempts_left = before.attempts_left.saturating_sub(1);
        let after = QuestionChallenge {
            method_id: method.method_id.clone(),
            picked: Vec::new(),
            attempts_left,
        };
        let messages = if session.decoy {
            Vec::new()
        } else {
            rejected("wrong_answers", attempts_left)
        };
        if !self
            .store
            .save_challenge(&token_hash, Some(&before), &after, None, messages, now)
            .await?
        {
            return Err(Error::Questions(NOT_PICKED));
        }
        if !session.decoy {
            self.signal.notify();
        }
        tracing::info!(attempts_left, "security answers rejected");
        self.count_failure(&session).await?;
        Err(Error::WrongAnswers { attempts_left })
    }
}

/// The picked ids with their texts, in pick order; `None` if one is no longer in the policy.
fn with_texts(
    picked: &[String],
    texts: &[common::SecurityQuestion],
) -> Option<Vec<common::SecurityQuestion>> {
    let distinct: BTreeSet<&String> = picked.iter().collect();
    if distinct.len() != picked.len() {
        return None;
    }
    picked
        .iter()
        .map(|id| texts.iter().find(|q| q.question_id == *id).cloned())
        .collect()
}
