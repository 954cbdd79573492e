//! Typed-destination confirmation: does what a user typed name the destination of a method?
//!
//! Invariants:
//! - Both sides are normalised the same way before comparing: an email address is trimmed and
//!   lower-cased as a whole; a phone number is reduced to its digits behind one leading `+`
//!   (so spaces, dashes, dots and parentheses never matter).
//! - The comparison is constant-time over SHA-256 digests of the normalised forms, so neither
//!   the content nor the length of the stored destination leaks through timing.
//! - A candidate is never logged, stored or echoed; it only yields a yes/no.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::MethodKind;

/// Longest candidate considered, in characters (the longest email address the contract takes).
pub const MAX_CANDIDATE_CHARS: usize = 320;

/// The comparison form of a destination of `kind`.
pub fn normalise(kind: MethodKind, raw: &str) -> String {
    match kind {
        MethodKind::Email => raw.trim().to_lowercase(),
        MethodKind::Sms | MethodKind::Voice => {
            let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
            format!("+{digits}")
        }
    }
}

/// Whether `candidate` (typed by the user) names `stored` (the method's destination).
pub fn destination_matches(kind: MethodKind, stored: &str, candidate: &str) -> bool {
    let stored = Sha256::digest(normalise(kind, stored).as_bytes());
    let candidate = Sha256::digest(normalise(kind, candidate).as_bytes());
    stored.as_slice().ct_eq(candidate.as_slice()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_ignores_case_and_surrounding_spaces() {
        let stored = "Alice.Smith@example.com";
        for typed in [
            "alice.smith@example.com",
            "  ALICE.SMITH@EXAMPLE.COM ",
            "Alice.Smith@Example.Com\t",
        ] {
            assert!(
                destination_matches(MethodKind::Email, stored, typed),
                "{typed:?}"
            );
        }
        for typed in [
            "",
            "alice.smith@example.org",
            "alice.smit@example.com",
            "alice .smith@example.com",
            "alice.smith@example.com.",
        ] {
            assert!(
                !destination_matches(MethodKind::Email, stored, typed),
                "{typed:?}"
            );
        }
    }

    #[test]
    fn phone_ignores_formatting() {
        let stored = "+33612345678";
        for typed in [
            "+33612345678",
            "+33 6 12 34 56 78",
            "+33-6-12.34.56(78)",
            " 33612345678 ",
        ] {
            assert!(
                destination_matches(MethodKind::Sms, stored, typed),
                "{typed:?}"
            );
        }
        for typed in ["", "+", "+3361234567", "+336123456789", "+33612345679"] {
            assert!(
                !destination_matches(MethodKind::Sms, stored, typed),
                "{typed:?}"
            );
        }
    }

    #[test]
    fn normal_forms() {
        assert_eq!(normalise(MethodKind::Email, " A@B.Cd "), "a@b.cd");
        assert_eq!(
            normalise(MethodKind::Voice, "+1 (555) 010-9999"),
            "+15550109999"
        );
        assert_eq!(normalise(MethodKind::Sms, "abc"), "+");
    }
}
