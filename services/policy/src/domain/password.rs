//! The password rules a candidate password must pass.
//!
//! Invariants:
//! - The candidate is NFKC-normalised before any rule looks at it (the directory hashes the
//!   same normalised form), and lengths are counted in characters of that form.
//! - Nothing is ever truncated: a candidate over [`MAX_CHARS`] is refused, not shortened.
//! - The candidate never leaves this module except as the yes/no of each rule: it is not in a
//!   violation message, a `Debug` output or a log line.

use unicode_normalization::UnicodeNormalization;

/// Shortest accepted password, in characters after NFKC.
pub const MIN_CHARS: usize = 8;
/// Longest accepted password, in characters after NFKC.
pub const MAX_CHARS: usize = 256;
/// A user id shorter than this is not searched for in the password (too many false hits).
pub const MIN_USER_ID_CHARS_CHECKED: usize = 3;

/// A rule a password can break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    TooShort,
    TooLong,
    ContainsUserId,
}

impl Rule {
    /// Stable machine-readable name, sent to callers.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::TooShort => "too_short",
            Rule::TooLong => "too_long",
            Rule::ContainsUserId => "contains_user_id",
        }
    }

    /// What the user must change, phrased to follow "The password ...".
    pub fn message(self) -> String {
        match self {
            Rule::TooShort => format!("must be at least {MIN_CHARS} characters"),
            Rule::TooLong => format!("must be at most {MAX_CHARS} characters"),
            Rule::ContainsUserId => "must not contain the user id".to_owned(),
        }
    }
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: Rule,
    pub message: String,
}

impl From<Rule> for Violation {
    fn from(rule: Rule) -> Self {
        Self {
            rule,
            message: rule.message(),
        }
    }
}

/// Checks `candidate` for the account `user_id`; an empty list means accepted.
pub fn check(candidate: &str, user_id: &str) -> Vec<Violation> {
    let normalised: String = candidate.nfkc().collect();
    let chars = normalised.chars().count();
    let mut broken = Vec::new();
    if chars < MIN_CHARS {
        broken.push(Rule::TooShort);
    }
    if chars > MAX_CHARS {
        broken.push(Rule::TooLong);
    }
    let user_id: String = user_id.nfkc().collect();
    if user_id.chars().count() >= MIN_USER_ID_CHARS_CHECKED
        && normalised.to_lowercase().contains(&user_id.to_lowercase())
    {
        broken.push(Rule::ContainsUserId);
    }
    broken.into_iter().map(Violation::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(candidate: &str, user_id: &str) -> Vec<Rule> {
        check(candidate, user_id)
            .into_iter()
            .map(|v| v.rule)
            .collect()
    }

    #[test]
    fn a_good_password_passes() {
        assert!(check("correct horse battery", "alice").is_empty());
    }

    #[test]
    fn length_limits_are_inclusive() {
        assert_eq!(rules("1234567", "alice"), vec![Rule::TooShort]);
        assert!(rules("12345678", "alice").is_empty());
        assert!(rules(&"x".repeat(256), "alice").is_empty());
        assert_eq!(rules(&"x".repeat(257), "alice"), vec![Rule::TooLong]);
        assert_eq!(rules("", "alice"), vec![Rule::TooShort]);
    }

    #[test]
    fn long_passwords_are_refused_never_truncated() {
        // 300 characters whose first 256 would pass: the whole is refused.
        let long = format!("{}{}", "a".repeat(256), "b".repeat(44));
        assert_eq!(rules(&long, "zed"), vec![Rule::TooLong]);
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        // Eight two-byte characters: 16 bytes, 8 characters.
        assert!(rules("éééééééé", "alice").is_empty());
        // Seven four-byte characters: 28 bytes, still too short.
        assert_eq!(rules("😀😀😀😀😀😀😀", "alice"), vec![Rule::TooShort]);
    }

    #[test]
    fn length_is_counted_after_nfkc() {
        // U+FB03 (ffi ligature) is one character and becomes "ffi" under NFKC.
        assert_eq!(rules("\u{FB03}\u{FB03}a", "alice"), vec![Rule::TooShort]);
        assert!(rules("\u{FB03}\u{FB03}ab", "alice").is_empty());
        // "e" + combining acute composes to one character: 8 pairs are 8 characters.
        assert!(rules(&"e\u{301}".repeat(8), "alice").is_empty());
        assert_eq!(rules(&"e\u{301}".repeat(7), "alice"), vec![Rule::TooShort]);
    }

    #[test]
    fn user_id_inside_is_refused_case_insensitively() {
        assert_eq!(
            rules("my-ALICE-password", "alice"),
            vec![Rule::ContainsUserId]
        );
        assert_eq!(rules("xxAlIcExx", "ALICE"), vec![Rule::ContainsUserId]);
        // Fullwidth letters normalise to ASCII under NFKC.
        assert_eq!(
            rules("\u{FF41}\u{FF4C}\u{FF49}\u{FF43}\u{FF45}12345", "alice"),
            vec![Rule::ContainsUserId]
        );
    }

    #[test]
    fn short_user_ids_are_not_searched() {
        assert!(rules("bobcat-123456", "bo").is_empty());
        assert_eq!(rules("bobcat-123456", "bob"), vec![Rule::ContainsUserId]);
        assert!(rules("anything-goes", "").is_empty());
    }

    #[test]
    fn several_rules_can_break_at_once() {
        assert_eq!(
            rules("alice", "alice"),
            vec![Rule::TooShort, Rule::ContainsUserId]
        );
    }

    #[test]
    fn messages_never_echo_the_password() {
        let secret = "s3cret";
        for v in check(secret, "s3cret") {
            assert!(!v.message.contains(secret));
        }
        assert_eq!(Rule::TooShort.message(), "must be at least 8 characters");
        assert_eq!(Rule::TooLong.message(), "must be at most 256 characters");
        assert_eq!(Rule::TooShort.as_str(), "too_short");
        assert_eq!(Rule::TooLong.as_str(), "too_long");
        assert_eq!(Rule::ContainsUserId.as_str(), "contains_user_id");
    }
}
