//! Typed-destination confirmation before a reset code is sent (Entra-style "type your full
//! phone number / email").
//!
//! Invariants:
//! - When the policy requires it, an empty (or blank) confirmation is refused before anything
//!   else; a confirmation longer than [`MAX_CONFIRMATION_CHARS`] or holding a control
//!   character is bad input whatever the policy.
//! - The comparison itself belongs to enrolment (which holds the destination); this module
//!   only decides whether one is needed. The typed value is never logged or echoed.

use super::InputError;

/// Longest confirmation accepted, in characters (the longest email address plus slack).
pub const MAX_CONFIRMATION_CHARS: usize = 320;

/// What SendCode must do about the typed destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate<'a> {
    /// Not required by the policy: send as before (a typed value is ignored).
    Open,
    /// Required: the code may only be sent if enrolment says this candidate matches.
    Check(&'a str),
    /// Required but not given.
    Missing,
}

/// Decides the [`Gate`] for a SendCode request.
pub fn gate(required: bool, confirmation: &str) -> Result<Gate<'_>, InputError> {
    if confirmation.chars().count() > MAX_CONFIRMATION_CHARS
        || confirmation.chars().any(char::is_control)
    {
        return Err(InputError::new(
            "destination_confirmation",
            "must be at most 320 characters without control characters",
        ));
    }
    if !required {
        return Ok(Gate::Open);
    }
    if confirmation.trim().is_empty() {
        return Ok(Gate::Missing);
    }
    Ok(Gate::Check(confirmation))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_required_is_open_whatever_is_typed() {
        assert_eq!(gate(false, ""), Ok(Gate::Open));
        assert_eq!(gate(false, "a@b.c"), Ok(Gate::Open));
    }

    #[test]
    fn required_needs_a_non_blank_value() {
        assert_eq!(gate(true, ""), Ok(Gate::Missing));
        assert_eq!(gate(true, "   "), Ok(Gate::Missing));
        assert_eq!(gate(true, " A@B.c "), Ok(Gate::Check(" A@B.c ")));
    }

    #[test]
    fn bad_input_is_refused_either_way() {
        let long = "a".repeat(MAX_CONFIRMATION_CHARS + 1);
        for required in [false, true] {
            assert!(gate(required, &long).is_err());
            assert!(gate(required, "a\nb").is_err());
        }
        assert!(gate(true, &"a".repeat(MAX_CONFIRMATION_CHARS)).is_ok());
    }
}
