//! The password section of the policy: minimum length, the admin's custom banned terms, the
//! organisation name and the history length.
//!
//! Invariants:
//! - A [`PasswordRules`] is valid by construction: built only by [`PasswordRules::parse`] (or
//!   [`PasswordRules::default`]), so `min_length` is within [`MIN_LENGTH_RANGE`], there are at
//!   most [`MAX_CUSTOM_TERMS`] custom terms, each [`CUSTOM_TERM_CHARS`] characters after
//!   normalisation and distinct after normalisation, and `history_count` is at most
//!   [`MAX_HISTORY_COUNT`].
//! - The custom terms are kept as the admin typed them (trimmed), for display and storage, and
//!   indexed in normalised form once, when parsed.

use std::collections::HashSet;
use std::ops::RangeInclusive;

use crate::domain::password::MAX_CHARS;
use crate::domain::password::banned::{TermIndex, normalise};

/// Default shortest password, in characters after NFKC.
pub const DEFAULT_MIN_LENGTH: u32 = 8;
/// The range an admin may choose the shortest password from.
pub const MIN_LENGTH_RANGE: RangeInclusive<u32> = 8..=256;
/// Most custom banned terms.
pub const MAX_CUSTOM_TERMS: usize = 1_000;
/// Length of a custom term, in characters after normalisation.
pub const CUSTOM_TERM_CHARS: RangeInclusive<usize> = 4..=64;
/// Longest organisation name, in characters.
pub const MAX_ORGANISATION_CHARS: usize = 256;
/// Most previous passwords the directory can be asked to refuse.
pub const MAX_HISTORY_COUNT: u32 = 24;

/// The password section as an admin submitted it, not yet validated.
#[derive(Debug, Clone, Default)]
pub struct PasswordRulesDraft {
    pub min_length: u32,
    pub custom_banned_terms: Vec<String>,
    pub organisation_name: String,
    pub history_count: u32,
}

/// Why a submitted password section was refused. The message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRulesError {
    #[error("policy.min_length must be 8 to 256, got {got}")]
    MinLength { got: u32 },
    #[error(
        "policy.custom_banned_terms has {count} entries; at most {MAX_CUSTOM_TERMS} are allowed"
    )]
    TooManyTerms { count: usize },
    #[error(
        "policy.custom_banned_terms[{index}] must be 4 to 64 characters after normalisation, without control characters"
    )]
    InvalidTerm { index: usize },
    #[error("policy.custom_banned_terms[{index}] repeats an earlier term (after normalisation)")]
    DuplicateTerm { index: usize },
    #[error(
        "policy.organisation_name must be at most {MAX_ORGANISATION_CHARS} characters, without control characters"
    )]
    InvalidOrganisation,
    #[error("policy.history_count must be 0 to 24, got {got}")]
    HistoryCount { got: u32 },
}

/// A valid password section, without its version.
#[derive(Debug, Clone)]
pub struct PasswordRules {
    min_length: u32,
    custom_terms: Vec<String>,
    custom_index: TermIndex,
    organisation_name: String,
    history_count: u32,
}

impl PartialEq for PasswordRules {
    fn eq(&self, other: &Self) -> bool {
        // The index is derived from the terms.
        self.min_length == other.min_length
            && self.custom_terms == other.custom_terms
            && self.organisation_name == other.organisation_name
            && self.history_count == other.history_count
    }
}

impl Default for PasswordRules {
    fn default() -> Self {
        Self {
            min_length: DEFAULT_MIN_LENGTH,
            custom_terms: Vec::new(),
            custom_index: TermIndex::default(),
            organisation_name: String::new(),
            history_count: 0,
        }
    }
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

impl PasswordRules {
    /// Validates `draft`; the first problem found is returned.
    pub fn parse(draft: PasswordRulesDraft) -> Result<Self, PasswordRulesError> {
        if !MIN_LENGTH_RANGE.contains(&draft.min_length) {
            return Err(PasswordRulesError::MinLength {
                got: draft.min_length,
            });
        }
        if draft.custom_banned_terms.len() > MAX_CUSTOM_TERMS {
            return Err(PasswordRulesError::TooManyTerms {
                count: draft.custom_banned_terms.len(),
            });
        }
        let mut seen = HashSet::new();
        let mut custom_terms = Vec::with_capacity(draft.custom_banned_terms.len());
        for (index, raw) in draft.custom_banned_terms.iter().enumerate() {
            let term = raw.trim();
            let normalised = normalise(term);
            if has_control(term) || !CUSTOM_TERM_CHARS.contains(&normalised.chars().count()) {
                return Err(PasswordRulesError::InvalidTerm { index });
            }
            if !seen.insert(normalised) {
                return Err(PasswordRulesError::DuplicateTerm { index });
            }
            custom_terms.push(term.to_owned());
        }
        let organisation_name = draft.organisation_name.trim().to_owned();
        if has_control(&organisation_name)
            || organisation_name.chars().count() > MAX_ORGANISATION_CHARS
        {
            return Err(PasswordRulesError::InvalidOrganisation);
        }
        if draft.history_count > MAX_HISTORY_COUNT {
            return Err(PasswordRulesError::HistoryCount {
                got: draft.history_count,
            });
        }
        let custom_index = TermIndex::new(custom_terms.iter().map(String::as_str));
        Ok(Self {
            min_length: draft.min_length,
            custom_terms,
            custom_index,
            organisation_name,
            history_count: draft.history_count,
        })
    }

    /// Shortest accepted password, in characters after NFKC.
    pub fn min_length(&self) -> u32 {
        self.min_length
    }

    /// Longest accepted password (fixed), in characters after NFKC.
    pub fn max_length(&self) -> u32 {
        // MAX_CHARS is 256: the conversion cannot fail.
        u32::try_from(MAX_CHARS).unwrap_or(u32::MAX)
    }

    /// The custom terms as the admin typed them (trimmed), in order.
    pub fn custom_terms(&self) -> &[String] {
        &self.custom_terms
    }

    /// The custom terms, normalised and indexed.
    pub fn custom_index(&self) -> &TermIndex {
        &self.custom_index
    }

    pub fn organisation_name(&self) -> &str {
        &self.organisation_name
    }

    pub fn history_count(&self) -> u32 {
        self.history_count
    }
}

/// The password section in force, with the version the store assigned (0 = never set).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PasswordPolicy {
    pub rules: PasswordRules,
    pub version: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> PasswordRulesDraft {
        PasswordRulesDraft {
            min_length: 8,
            custom_banned_terms: vec!["contoso".into(), "fabrikam".into()],
            organisation_name: "Contoso Ltd".into(),
            history_count: 5,
        }
    }

    #[test]
    fn a_valid_draft_parses() {
        let rules = PasswordRules::parse(draft()).expect("valid");
        assert_eq!(rules.min_length(), 8);
        assert_eq!(rules.max_length(), 256);
        assert_eq!(rules.custom_terms(), ["contoso", "fabrikam"]);
        assert_eq!(rules.custom_index().len(), 2);
        assert_eq!(rules.organisation_name(), "Contoso Ltd");
        assert_eq!(rules.history_count(), 5);
    }

    #[test]
    fn the_default_is_eight_characters_no_terms_no_history() {
        let rules = PasswordRules::default();
        assert_eq!(rules.min_length(), DEFAULT_MIN_LENGTH);
        assert!(rules.custom_terms().is_empty());
        assert!(rules.organisation_name().is_empty());
        assert_eq!(rules.history_count(), 0);
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases: Vec<(PasswordRulesDraft, PasswordRulesError)> = vec![
            (
                PasswordRulesDraft {
                    min_length: 7,
                    ..draft()
                },
                PasswordRulesError::MinLength { got: 7 },
            ),
            (
                PasswordRulesDraft {
                    min_length: 257,
                    ..draft()
                },
                PasswordRulesError::MinLength { got: 257 },
            ),
            (
                PasswordRulesDraft {
                    custom_banned_terms: (0..1001).map(|i| format!("term{i}")).collect(),
                    ..draft()
                },
                PasswordRulesError::TooManyTerms { count: 1001 },
            ),
            (
                PasswordRulesDraft {
                    custom_banned_terms: vec!["good".into(), "abc".into()],
                    ..draft()
                },
                PasswordRulesError::InvalidTerm { index: 1 },
            ),
            (
                PasswordRulesDraft {
                    custom_banned_terms: vec!["x".repeat(65)],
                    ..draft()
                },
                PasswordRulesError::InvalidTerm { index: 0 },
            ),
            (
                PasswordRulesDraft {
                    custom_banned_terms: vec!["bad\nterm".into()],
                    ..draft()
                },
                PasswordRulesError::InvalidTerm { index: 0 },
            ),
            (
                PasswordRulesDraft {
                    custom_banned_terms: vec!["contoso".into(), "C0NT0S0".into()],
                    ..draft()
                },
                PasswordRulesError::DuplicateTerm { index: 1 },
            ),
            (
                PasswordRulesDraft {
                    organisation_name: "x".repeat(257),
                    ..draft()
                },
                PasswordRulesError::InvalidOrganisation,
            ),
            (
                PasswordRulesDraft {
                    history_count: 25,
                    ..draft()
                },
                PasswordRulesError::HistoryCount { got: 25 },
            ),
        ];
        for (bad, expected) in cases {
            let err = PasswordRules::parse(bad).expect_err("invalid");
            assert_eq!(err, expected);
            assert!(err.to_string().starts_with("policy."), "{err}");
        }
    }

    #[test]
    fn limits_are_inclusive() {
        for min_length in [8, 256] {
            assert!(
                PasswordRules::parse(PasswordRulesDraft {
                    min_length,
                    ..draft()
                })
                .is_ok()
            );
        }
        let ok = PasswordRulesDraft {
            custom_banned_terms: (0..1000).map(|i| format!("term{i}")).collect(),
            history_count: 24,
            ..draft()
        };
        assert!(PasswordRules::parse(ok).is_ok());
        let edges = PasswordRulesDraft {
            custom_banned_terms: vec!["abcd".into(), "y".repeat(64)],
            ..draft()
        };
        assert!(PasswordRules::parse(edges).is_ok());
    }

    #[test]
    fn terms_are_trimmed() {
        let rules = PasswordRules::parse(PasswordRulesDraft {
            custom_banned_terms: vec!["  spaced  ".into()],
            organisation_name: "  Org  ".into(),
            ..draft()
        })
        .expect("valid");
        assert_eq!(rules.custom_terms(), ["spaced"]);
        assert_eq!(rules.organisation_name(), "Org");
    }
}
