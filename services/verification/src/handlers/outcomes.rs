//! Counts the steps of the reset flow in `sspr_reset_outcomes_total{outcome,reason}`: what
//! each reset endpoint answered, as one closed-set word pair.
//!
//! Invariants:
//! - The pair is derived from the endpoint's answer alone (success, or which [`Error`]), never
//!   from whether the session is a decoy. Decoy flows answer exactly as real ones (see
//!   [`super::reset`]), so they count exactly as real ones: a decoy StartReset is
//!   `started/ok`, its wrong code `failed/wrong_code`. Nothing here can tell an SRE, or anyone
//!   reading the metrics, which user ids exist.
//! - Every [`Error`] variant maps to a fixed word (the match has no catch-all, so a new
//!   variant must be given one); no label carries request data.

use sspr_bus::{BusError, ErrorCode};

use crate::Error;
use crate::domain::phone_guard::PhoneRefusal;

/// A reset endpoint, by the outcome its success counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// StartReset.
    Start,
    /// SendCode.
    SendCode,
    /// VerifyCode and AnswerSecurityQuestions.
    Verify,
    /// CompleteReset.
    Complete,
}

impl Step {
    fn success(self) -> &'static str {
        match self {
            Step::Start => "started",
            Step::SendCode => "code_sent",
            Step::Verify => "verified",
            Step::Complete => "completed",
        }
    }
}

/// The `(outcome, reason)` of one answer of `step`.
pub(crate) fn classify<T>(step: Step, result: &Result<T, Error>) -> (&'static str, &'static str) {
    let error = match result {
        Ok(_) => return (step.success(), "ok"),
        Err(e) => e,
    };
    let blocked = |reason| ("blocked", reason);
    let failed = |reason| ("failed", reason);
    match error {
        Error::Throttled { .. } => blocked("throttled"),
        Error::Blocked { .. } => blocked("locked"),
        Error::ChallengeRequired => blocked("challenge_required"),
        Error::TooSoon | Error::ResendIn(_) => blocked("resend_wait"),
        Error::PhoneRefused(refusal) => blocked(match refusal {
            PhoneRefusal::BreakerOpen { .. } => "breaker_open",
            PhoneRefusal::CountryNotAllowed => "country_not_allowed",
            PhoneRefusal::BudgetExhausted { .. } | PhoneRefusal::PrefixBudgetExhausted { .. } => {
                "throttled"
            }
        }),
        Error::Rejected(rejection) => failed(rejection.reason()),
        Error::WrongAnswers { .. } => failed("wrong_answers"),
        Error::DestinationRequired => failed("destination_required"),
        Error::DestinationMismatch => failed("destination_mismatch"),
        Error::UnknownSession => failed("unknown_session"),
        Error::UnknownMethod => failed("unknown_method"),
        Error::Input(_) => failed("invalid_input"),
        Error::NotVerified(_) => failed("not_verified"),
        Error::VerificationTooOld => failed("verification_too_old"),
        Error::SameDestination => failed("same_destination"),
        Error::NothingToSend => failed("nothing_to_send"),
        Error::NoCodeSent => failed("no_code_sent"),
        Error::Questions(_) => failed("questions_unavailable"),
        Error::Unavailable(_) => failed("not_available"),
        // The directory refusing the new password is the only refusal CompleteReset passes on.
        Error::Peer(BusError::Rpc(e))
            if step == Step::Complete
                && matches!(
                    e.code,
                    ErrorCode::InvalidArgument | ErrorCode::FailedPrecondition
                ) =>
        {
            failed("policy_rejected")
        }
        Error::Peer(_) => failed("dependency"),
        Error::Store(_) | Error::Seal(_) | Error::Internal(_) => failed("internal"),
    }
}

/// Counts one answer of `step`.
pub(crate) fn record<T>(step: Step, result: &Result<T, Error>) {
    let (outcome, reason) = classify(step, result);
    sspr_telemetry::metrics::catalogue()
        .reset_outcomes
        .inc(&[outcome, reason]);
}

#[cfg(test)]
mod tests {
    use sspr_bus::RpcError;

    use super::*;
    use crate::domain::Rejection;

    #[test]
    fn successes_count_as_their_step() {
        let ok: Result<(), Error> = Ok(());
        assert_eq!(classify(Step::Start, &ok), ("started", "ok"));
        assert_eq!(classify(Step::SendCode, &ok), ("code_sent", "ok"));
        assert_eq!(classify(Step::Verify, &ok), ("verified", "ok"));
        assert_eq!(classify(Step::Complete, &ok), ("completed", "ok"));
    }

    #[test]
    fn refusals_are_blocked_and_errors_failed_with_a_fixed_word() {
        let cases: Vec<(Step, Error, (&str, &str))> = vec![
            (
                Step::Start,
                Error::Throttled {
                    retry_after_secs: 1,
                },
                ("blocked", "throttled"),
            ),
            (
                Step::Verify,
                Error::Blocked {
                    retry_after_secs: 1,
                },
                ("blocked", "locked"),
            ),
            (
                Step::SendCode,
                Error::PhoneRefused(PhoneRefusal::BreakerOpen {
                    retry_after_secs: 1,
                }),
                ("blocked", "breaker_open"),
            ),
            (
                Step::SendCode,
                Error::ResendIn(3),
                ("blocked", "resend_wait"),
            ),
            (
                Step::Verify,
                Error::Rejected(Rejection::Wrong { attempts_left: 2 }),
                ("failed", "wrong_code"),
            ),
            (
                Step::Verify,
                Error::Rejected(Rejection::Expired),
                ("failed", "expired"),
            ),
            (
                Step::Complete,
                Error::Peer(BusError::Rpc(RpcError::invalid_argument(
                    "password rejected: too short",
                ))),
                ("failed", "policy_rejected"),
            ),
            (
                Step::Start,
                Error::Peer(BusError::Rpc(RpcError::invalid_argument("x"))),
                ("failed", "dependency"),
            ),
            (
                Step::Complete,
                Error::Peer(BusError::NoResponders("s".into())),
                ("failed", "dependency"),
            ),
            (Step::Complete, Error::Internal("x"), ("failed", "internal")),
        ];
        for (step, error, expected) in cases {
            let result: Result<(), Error> = Err(error);
            assert_eq!(classify(step, &result), expected, "{result:?}");
        }
    }
}
