//! Whether a user's registration is complete and current.
//!
//! Invariants:
//! - The registration's last confirmation is the newest `confirmed_at` of the user's confirmed
//!   methods: confirming any method again (a new code sent to it and checked) refreshes it.
//! - Re-confirmation is required only for a user who has confirmed methods, when the policy sets
//!   `reconfirm_after_days` (0 = never) and that many days have passed since the last
//!   confirmation (the deadline itself counts as passed).
//! - Registration is required when the user has fewer confirmed methods than required, or must
//!   re-confirm.

use chrono::{DateTime, Duration, Utc};

use super::method::RegisteredMethod;
use super::session::Requirements;

/// The registration status of one user at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrationStatus {
    /// Confirmed methods the user has.
    pub methods_registered: u32,
    pub reconfirm_required: bool,
    pub registration_required: bool,
}

impl RegistrationStatus {
    /// The status of a user with `confirmed` methods under `requirements`.
    pub fn assess(
        requirements: &Requirements,
        confirmed: &[RegisteredMethod],
        reconfirm_after_days: u32,
        now: DateTime<Utc>,
    ) -> Self {
        let methods_registered =
            u32::try_from(confirmed.iter().filter(|m| m.is_confirmed()).count())
                .unwrap_or(u32::MAX);
        let last = confirmed
            .iter()
            .filter(|m| m.is_confirmed())
            .filter_map(|m| m.confirmed_at)
            .max();
        let reconfirm_required = match (reconfirm_after_days, last) {
            (0, _) | (_, None) => false,
            (days, Some(last)) => now >= last + Duration::days(i64::from(days)),
        };
        Self {
            methods_registered,
            reconfirm_required,
            registration_required: reconfirm_required
                || !requirements.satisfied_by(methods_registered),
        }
    }
}

impl RegistrationStatus {
    /// The status with the user's security-questions method counted as one more method when
    /// `counted` (it has no confirmation date: re-confirmation follows the contact methods).
    pub fn with_questions(self, requirements: &Requirements, counted: bool) -> Self {
        if !counted {
            return self;
        }
        let methods_registered = self.methods_registered.saturating_add(1);
        Self {
            methods_registered,
            reconfirm_required: self.reconfirm_required,
            registration_required: self.reconfirm_required
                || !requirements.satisfied_by(methods_registered),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Destination, MethodKind, MethodStatus, UserId};

    fn day(n: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + n * 86_400, 0).unwrap_or_default()
    }

    fn confirmed(address: &str, at: DateTime<Utc>) -> RegisteredMethod {
        let dest = Destination::parse(MethodKind::Email, address).expect("valid");
        let mut m = RegisteredMethod::pending(UserId::parse("alice").expect("valid"), dest, at);
        m.status = MethodStatus::Confirmed;
        m.confirmed_at = Some(at);
        m
    }

    fn two_required() -> Requirements {
        Requirements::from_policy(true, 2, [MethodKind::Email]).expect("eligible")
    }

    #[test]
    fn too_few_methods_require_registration() {
        let s = RegistrationStatus::assess(&two_required(), &[], 30, day(0));
        assert_eq!(
            s,
            RegistrationStatus {
                methods_registered: 0,
                reconfirm_required: false,
                registration_required: true,
            }
        );
        let one = [confirmed("a@contoso.com", day(0))];
        let s = RegistrationStatus::assess(&two_required(), &one, 0, day(1));
        assert!(s.registration_required && !s.reconfirm_required);
        assert_eq!(s.methods_registered, 1);
    }

    #[test]
    fn reconfirmation_is_due_after_the_configured_days_from_the_newest_confirmation() {
        let methods = [
            confirmed("a@contoso.com", day(0)),
            confirmed("b@contoso.com", day(10)),
        ];
        let at = |d| RegistrationStatus::assess(&two_required(), &methods, 30, day(d));
        assert!(!at(39).reconfirm_required);
        assert!(!at(39).registration_required);
        assert!(at(40).reconfirm_required);
        assert!(at(40).registration_required);
        assert_eq!(at(40).methods_registered, 2);
    }

    #[test]
    fn zero_days_means_never() {
        let methods = [
            confirmed("a@contoso.com", day(0)),
            confirmed("b@contoso.com", day(0)),
        ];
        let s = RegistrationStatus::assess(&two_required(), &methods, 0, day(10_000));
        assert!(!s.reconfirm_required && !s.registration_required);
    }

    #[test]
    fn pending_methods_do_not_count() {
        let mut pending = confirmed("a@contoso.com", day(0));
        pending.status = MethodStatus::Pending;
        let s = RegistrationStatus::assess(&two_required(), &[pending], 1, day(5));
        assert_eq!(s.methods_registered, 0);
        assert!(!s.reconfirm_required);
    }
}
