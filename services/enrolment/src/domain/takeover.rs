//! Defences against registration takeover: a stolen password alone must not let an attacker
//! attach their own method to someone else's account.
//!
//! Invariants:
//! - A session opened for a user who already had a confirmed contact method is
//!   [`StepUp::Required`]: adding a NEW destination, confirming a pending one, replacing the
//!   security answers and removing a method are refused until the session proved possession of
//!   one of the existing methods (a step-up code, or the re-confirmation of an existing method,
//!   which sends a code to that very method).
//! - Re-confirming an existing method (AddMethod with its own destination, then ConfirmMethod)
//!   is always allowed: the code goes to a method the user already had.
//! - A session for a user with no confirmed method (their first registration) needs nothing.
//! - A method confirmed in a session whose user already had a method becomes usable for reset
//!   only `cooldown_hours` after its confirmation ([`usable_from`]); first methods at once. A
//!   re-confirmation keeps the method's usability date.

use chrono::{DateTime, Duration, Utc};

/// Whether a registration session must prove an existing method before changing methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepUp {
    /// The user had no confirmed contact method when the session began.
    NotNeeded,
    /// The user had one; the session has not proved it yet.
    Required,
    /// The session proved one of the user's existing methods.
    Done,
}

impl StepUp {
    /// At the start of a session: required when the user already has a confirmed contact method.
    pub fn at_start(has_confirmed_contact_method: bool) -> Self {
        if has_confirmed_contact_method {
            StepUp::Required
        } else {
            StepUp::NotNeeded
        }
    }

    /// What the client is told in `step_up_required`.
    pub fn is_pending(self) -> bool {
        self == StepUp::Required
    }

    /// The session may change the user's methods.
    pub fn permits(self, change: MethodChange) -> Result<(), StepUpRequired> {
        match (self, change) {
            (_, MethodChange::Reconfirm) => Ok(()),
            (StepUp::Required, _) => Err(StepUpRequired),
            (StepUp::NotNeeded | StepUp::Done, _) => Ok(()),
        }
    }

    /// Stored as `(required, done)`.
    pub fn from_flags(required: bool, done: bool) -> Self {
        match (required, done) {
            (false, _) => StepUp::NotNeeded,
            (true, false) => StepUp::Required,
            (true, true) => StepUp::Done,
        }
    }

    /// `(required, done)`, as stored.
    pub fn flags(self) -> (bool, bool) {
        match self {
            StepUp::NotNeeded => (false, false),
            StepUp::Required => (true, false),
            StepUp::Done => (true, true),
        }
    }
}

/// A change to a user's methods, as the step-up gate sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodChange {
    /// AddMethod with a destination the user has not confirmed (new or pending).
    AddNew,
    /// ConfirmMethod of a pending method.
    ConfirmNew,
    /// AddMethod/ConfirmMethod with the destination of a confirmed method.
    Reconfirm,
    /// SetSecurityAnswers.
    SetAnswers,
    /// RemoveMethod.
    Remove,
}

/// A change was refused because the session has not proved an existing method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "verify one of your registered methods first (SendStepUpCode, then VerifyStepUpCode) before changing your methods"
)]
pub struct StepUpRequired;

/// The reason code of [`StepUpRequired`] at the gateway (`google.rpc.ErrorInfo.reason`).
pub const STEP_UP_REQUIRED_REASON: &str = "STEP_UP_REQUIRED";

/// Longest cool-down policy accepts (30 days); anything larger is clamped.
pub const MAX_COOLDOWN_HOURS: u32 = 720;

/// The cool-down a session applies to the methods it confirms: the policy's when the user
/// already had a method (contact method or security answers) at its start, none otherwise.
pub fn session_cooldown_hours(had_any_method: bool, policy_hours: u32) -> u32 {
    if had_any_method {
        policy_hours.min(MAX_COOLDOWN_HOURS)
    } else {
        0
    }
}

/// When a method first confirmed at `confirmed_at` may be used for reset.
pub fn usable_from(confirmed_at: DateTime<Utc>, cooldown_hours: u32) -> DateTime<Utc> {
    confirmed_at + Duration::hours(i64::from(cooldown_hours.min(MAX_COOLDOWN_HOURS)))
}

/// Whether a method usable from `from` (none: stored before cool-downs existed, so usable) may
/// be offered for reset at `now`.
pub fn is_usable(from: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    from.is_none_or(|from| from <= now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hours: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default() + Duration::hours(hours)
    }

    #[test]
    fn a_first_registration_needs_no_step_up() {
        let s = StepUp::at_start(false);
        assert!(!s.is_pending());
        for change in [
            MethodChange::AddNew,
            MethodChange::ConfirmNew,
            MethodChange::Reconfirm,
            MethodChange::SetAnswers,
            MethodChange::Remove,
        ] {
            assert_eq!(s.permits(change), Ok(()), "{change:?}");
        }
    }

    #[test]
    fn a_user_with_a_method_must_step_up_except_to_reconfirm() {
        let s = StepUp::at_start(true);
        assert!(s.is_pending());
        assert_eq!(s.permits(MethodChange::Reconfirm), Ok(()));
        for change in [
            MethodChange::AddNew,
            MethodChange::ConfirmNew,
            MethodChange::SetAnswers,
            MethodChange::Remove,
        ] {
            assert_eq!(s.permits(change), Err(StepUpRequired), "{change:?}");
        }
        let done = StepUp::Done;
        assert!(!done.is_pending());
        assert_eq!(done.permits(MethodChange::AddNew), Ok(()));
        assert_eq!(done.permits(MethodChange::Remove), Ok(()));
    }

    #[test]
    fn step_up_flags_round_trip() {
        for s in [StepUp::NotNeeded, StepUp::Required, StepUp::Done] {
            let (required, done) = s.flags();
            assert_eq!(StepUp::from_flags(required, done), s);
        }
        assert_eq!(StepUp::from_flags(false, true), StepUp::NotNeeded);
    }

    #[test]
    fn refusal_says_what_to_do() {
        let m = StepUpRequired.to_string();
        assert!(
            m.contains("verify one of your registered methods first"),
            "{m}"
        );
    }

    #[test]
    fn cool_down_applies_only_after_a_first_method() {
        assert_eq!(session_cooldown_hours(false, 24), 0);
        assert_eq!(session_cooldown_hours(true, 24), 24);
        assert_eq!(session_cooldown_hours(true, 0), 0);
        assert_eq!(session_cooldown_hours(true, 100_000), MAX_COOLDOWN_HOURS);
    }

    #[test]
    fn a_new_method_is_usable_once_its_cool_down_passed() {
        let from = usable_from(at(0), 24);
        assert_eq!(from, at(24));
        assert!(!is_usable(Some(from), at(23)));
        assert!(!is_usable(Some(from), at(24) - Duration::seconds(1)));
        assert!(is_usable(Some(from), at(24)));
        assert!(is_usable(Some(usable_from(at(0), 0)), at(0)));
        assert!(is_usable(None, at(0)));
    }
}
