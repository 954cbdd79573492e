//! A user's registered contact methods and the rules for adding and confirming them.
//!
//! Invariants:
//! - A user has at most one method per (kind, destination): adding a destination that is
//!   pending reuses that method (with a new code); adding one that is confirmed sends that method
//!   a code to re-confirm it (its confirmation date moves when the code is checked).
//! - Removing a confirmed method never leaves fewer confirmed methods than required.
//! - A user has at most [`MAX_METHODS_PER_USER`] methods, pending and confirmed together.
//!   Pending methods untouched for [`PENDING_TTL`] no longer count and may be removed: no code
//!   for them can still be valid, and abandoned typos must not lock a user out.
//! - Only a confirmed method is ever shown (masked) or used to address a reset code.

use chrono::{DateTime, Duration, Utc};

use super::contact::{Destination, MethodKind};
use super::ids::{MethodId, UserId};

/// Upper bound of pending + confirmed methods per user.
pub const MAX_METHODS_PER_USER: u64 = 10;

/// After this long without a new code, a pending method is abandoned. Longer than a code lives
/// (10 minutes) and as long as a session, so a method someone is still confirming never expires.
pub const PENDING_TTL: Duration = Duration::minutes(30);

/// Pending methods last touched at or before this instant are abandoned.
pub fn abandoned_cutoff(now: DateTime<Utc>) -> DateTime<Utc> {
    now - PENDING_TTL
}

/// Whether the user has proved they receive codes at the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodStatus {
    Pending,
    Confirmed,
}

impl MethodStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MethodStatus::Pending => "pending",
            MethodStatus::Confirmed => "confirmed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "pending" => Some(MethodStatus::Pending),
            "confirmed" => Some(MethodStatus::Confirmed),
            _ => None,
        }
    }
}

/// One contact method of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredMethod {
    pub method_id: MethodId,
    pub user_id: UserId,
    pub destination: Destination,
    pub status: MethodStatus,
    /// When the method was added, or for a pending one, when its last code was requested.
    pub created_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
    /// When the method may be used for reset (its first confirmation plus the session's
    /// cool-down, see `domain::takeover`); `None` while pending, or for a method confirmed
    /// before cool-downs existed (usable).
    pub usable_from: Option<DateTime<Utc>>,
}

impl RegisteredMethod {
    /// A new pending method.
    pub fn pending(user_id: UserId, destination: Destination, now: DateTime<Utc>) -> Self {
        Self {
            method_id: MethodId::new(),
            user_id,
            destination,
            status: MethodStatus::Pending,
            created_at: now,
            confirmed_at: None,
            usable_from: None,
        }
    }

    pub fn kind(&self) -> MethodKind {
        self.destination.kind()
    }

    pub fn masked(&self) -> String {
        self.destination.masked()
    }

    pub fn is_confirmed(&self) -> bool {
        self.status == MethodStatus::Confirmed
    }

    /// Confirmed and past its cool-down at `now`: may be offered for reset.
    pub fn is_usable(&self, now: DateTime<Utc>) -> bool {
        self.is_confirmed() && super::takeover::is_usable(self.usable_from, now)
    }

    /// A pending method nobody can still confirm.
    pub fn is_abandoned(&self, now: DateTime<Utc>) -> bool {
        self.status == MethodStatus::Pending && self.created_at <= abandoned_cutoff(now)
    }
}

/// What adding a destination leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddPlan {
    /// The destination is pending already: send a new code for this method.
    Reuse(MethodId),
    /// The destination is confirmed already: send a code to re-confirm this method.
    Reconfirm(MethodId),
    /// A new pending method.
    Insert,
}

/// Why a destination cannot be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddRefusal {
    #[error("too many contact methods: remove one before adding another")]
    TooManyMethods,
}

/// Decides what adding a destination does, given the user's method with the same destination
/// (if any) and how many methods the user has that still count towards the limit.
pub fn plan_add(
    existing: Option<&RegisteredMethod>,
    counted_methods: u64,
) -> Result<AddPlan, AddRefusal> {
    match existing {
        Some(m) if m.is_confirmed() => Ok(AddPlan::Reconfirm(m.method_id.clone())),
        Some(m) => Ok(AddPlan::Reuse(m.method_id.clone())),
        None if counted_methods >= MAX_METHODS_PER_USER => Err(AddRefusal::TooManyMethods),
        None => Ok(AddPlan::Insert),
    }
}

/// Why a confirmed method cannot be removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RemoveRefusal {
    #[error("at least {required} contact methods must stay registered")]
    BelowRequired { required: u32 },
}

/// Whether a user with `confirmed` methods may remove one of them when `required` must stay.
pub fn check_removal(confirmed: u64, required: u32) -> Result<(), RemoveRefusal> {
    if confirmed.saturating_sub(1) < u64::from(required) {
        Err(RemoveRefusal::BelowRequired { required })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(mins: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + mins * 60, 0).unwrap_or_default()
    }

    fn method(status: MethodStatus, created: i64) -> RegisteredMethod {
        let dest = Destination::parse(MethodKind::Email, "alice@contoso.com").expect("valid");
        let mut m =
            RegisteredMethod::pending(UserId::parse("alice").expect("valid"), dest, at(created));
        m.status = status;
        m
    }

    #[test]
    fn status_round_trips() {
        for s in [MethodStatus::Pending, MethodStatus::Confirmed] {
            assert_eq!(MethodStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(MethodStatus::parse("CONFIRMED"), None);
    }

    #[test]
    fn confirmed_destination_is_reconfirmed_not_added_twice() {
        let m = method(MethodStatus::Confirmed, 0);
        assert_eq!(
            plan_add(Some(&m), MAX_METHODS_PER_USER),
            Ok(AddPlan::Reconfirm(m.method_id.clone()))
        );
    }

    #[test]
    fn removal_keeps_the_required_count() {
        assert_eq!(check_removal(2, 1), Ok(()));
        assert_eq!(check_removal(3, 2), Ok(()));
        assert_eq!(
            check_removal(2, 2),
            Err(RemoveRefusal::BelowRequired { required: 2 })
        );
        assert_eq!(
            check_removal(0, 1),
            Err(RemoveRefusal::BelowRequired { required: 1 })
        );
    }

    #[test]
    fn pending_destination_is_reused_even_at_the_limit() {
        let m = method(MethodStatus::Pending, 0);
        assert_eq!(
            plan_add(Some(&m), MAX_METHODS_PER_USER),
            Ok(AddPlan::Reuse(m.method_id.clone()))
        );
    }

    #[test]
    fn new_destination_respects_the_limit() {
        assert_eq!(plan_add(None, 0), Ok(AddPlan::Insert));
        assert_eq!(
            plan_add(None, MAX_METHODS_PER_USER - 1),
            Ok(AddPlan::Insert)
        );
        assert_eq!(
            plan_add(None, MAX_METHODS_PER_USER),
            Err(AddRefusal::TooManyMethods)
        );
    }

    #[test]
    fn only_old_pending_methods_are_abandoned() {
        assert!(!method(MethodStatus::Pending, 0).is_abandoned(at(29)));
        assert!(method(MethodStatus::Pending, 0).is_abandoned(at(30)));
        assert!(!method(MethodStatus::Confirmed, 0).is_abandoned(at(60 * 24 * 365)));
    }

    #[test]
    fn masked_view_of_a_method() {
        let m = method(MethodStatus::Confirmed, 0);
        assert_eq!(m.kind(), MethodKind::Email);
        assert_eq!(m.masked(), "a•••@c•••.com");
    }
}
