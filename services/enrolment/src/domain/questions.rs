//! Security-question answers: validation, normalisation and hashing.
//!
//! Invariants:
//! - An answer is a secret. It is compared after NFKC, trimming and lower-casing, stored only as
//!   an Argon2id PHC hash (fresh salt per answer, the directory's password cost) and never
//!   logged, put in an event or echoed in an error: errors name the index of the answer only.
//! - A set of answers to register is exactly as long as the policy requires, names distinct
//!   questions of the policy, and its answers are 3 to 40 characters and distinct after
//!   normalisation.
//! - Checking a set of answers costs one Argon2id computation per answer whatever happens
//!   (unknown question, wrong answer, early mismatch), so the time says nothing about which
//!   answer was wrong.
//! - The method counts (and shows) only the questions still in the policy: an answer to a
//!   removed question no longer counts.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::OnceLock;

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use unicode_normalization::UnicodeNormalization;

/// Shortest and longest answer, in characters after normalisation.
pub const MIN_ANSWER_CHARS: usize = 3;
pub const MAX_ANSWER_CHARS: usize = 40;
/// Longest question id accepted (the policy's limit).
pub const MAX_QUESTION_ID_CHARS: usize = 64;

const PARAMS: Params = match Params::new(19_456, 2, 1, None) {
    Ok(params) => params,
    Err(_) => panic!("invalid Argon2 parameters"),
};

fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, PARAMS)
}

/// An answer in its compared form (NFKC, trimmed, lower-case). Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct NormalisedAnswer(String);

impl fmt::Debug for NormalisedAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NormalisedAnswer(<redacted>)")
    }
}

impl NormalisedAnswer {
    /// NFKC, trimmed, lower-cased; no length check.
    pub fn new(raw: &str) -> Self {
        let nfkc: String = raw.nfkc().collect();
        Self(nfkc.trim().to_lowercase())
    }

    fn chars(&self) -> usize {
        self.0.chars().count()
    }
}

/// The stored form of an answer: an Argon2id PHC string.
#[derive(Clone, PartialEq, Eq)]
pub struct AnswerHash(String);

impl fmt::Debug for AnswerHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AnswerHash(..)")
    }
}

impl AnswerHash {
    pub fn from_stored(phc: String) -> Self {
        Self(phc)
    }

    pub fn as_phc(&self) -> &str {
        &self.0
    }
}

/// Why a set of answers was refused. Messages name indexes, never answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("security questions are not available for this account")]
    NotAllowed,
    #[error("exactly {required} answers are required, got {got}")]
    WrongCount { required: u32, got: usize },
    #[error("answers[{index}].question_id is not one of the policy's questions")]
    UnknownQuestion { index: usize },
    #[error("answers[{index}].question_id repeats an earlier question")]
    DuplicateQuestion { index: usize },
    #[error(
        "answers[{index}].answer must be {MIN_ANSWER_CHARS} to {MAX_ANSWER_CHARS} characters without control characters"
    )]
    BadLength { index: usize },
    #[error("answers[{index}].answer repeats an earlier answer")]
    DuplicateAnswer { index: usize },
}

/// Validates answers to register against the policy's question ids and required count.
/// Returns `(question_id, normalised answer)` in the given order.
pub fn parse_answers<'a>(
    answers: impl IntoIterator<Item = (&'a str, &'a str)>,
    policy_ids: &[String],
    required: u32,
) -> Result<Vec<(String, NormalisedAnswer)>, AnswerError> {
    let answers: Vec<(&str, &str)> = answers.into_iter().collect();
    if required == 0 || policy_ids.is_empty() {
        return Err(AnswerError::NotAllowed);
    }
    if answers.len() != required as usize {
        return Err(AnswerError::WrongCount {
            required,
            got: answers.len(),
        });
    }
    let mut seen_ids = BTreeSet::new();
    let mut seen_answers: Vec<NormalisedAnswer> = Vec::new();
    let mut parsed = Vec::with_capacity(answers.len());
    for (index, (id, raw)) in answers.into_iter().enumerate() {
        if !policy_ids.iter().any(|p| p == id) {
            return Err(AnswerError::UnknownQuestion { index });
        }
        if !seen_ids.insert(id) {
            return Err(AnswerError::DuplicateQuestion { index });
        }
        let answer = NormalisedAnswer::new(raw);
        if !(MIN_ANSWER_CHARS..=MAX_ANSWER_CHARS).contains(&answer.chars())
            || answer.0.chars().any(char::is_control)
        {
            return Err(AnswerError::BadLength { index });
        }
        if seen_answers.contains(&answer) {
            return Err(AnswerError::DuplicateAnswer { index });
        }
        seen_answers.push(answer.clone());
        parsed.push((id.to_owned(), answer));
    }
    Ok(parsed)
}

/// Hashes an answer with a fresh random salt.
pub fn hash_answer(answer: &NormalisedAnswer) -> Result<AnswerHash, String> {
    sspr_telemetry::metrics::argon2("hash", || {
        argon2()
            .hash_password(answer.0.as_bytes())
            .map(|h| AnswerHash(h.to_string()))
            .map_err(|e| e.to_string())
    })
}

/// True when `answer` matches `stored`. Without a stored hash (unknown question) it does the
/// same work against a dummy hash and returns false.
pub fn verify_answer(answer: &NormalisedAnswer, stored: Option<&AnswerHash>) -> bool {
    sspr_telemetry::metrics::argon2("verify", || verify_unmeasured(answer, stored))
}

fn verify_unmeasured(answer: &NormalisedAnswer, stored: Option<&AnswerHash>) -> bool {
    let parsed = stored.and_then(|h| argon2::PasswordHash::new(h.as_phc()).ok());
    match parsed {
        Some(parsed) => argon2()
            .verify_password(answer.0.as_bytes(), &parsed)
            .is_ok(),
        None => {
            if let Some(dummy) = dummy() {
                let _ = argon2().verify_password(answer.0.as_bytes(), dummy);
            } else {
                let _ = argon2().hash_password(answer.0.as_bytes());
            }
            false
        }
    }
}

fn dummy() -> Option<&'static argon2::PasswordHash> {
    static DUMMY: OnceLock<Option<argon2::PasswordHash>> = OnceLock::new();
    DUMMY
        .get_or_init(|| argon2().hash_password(b"sspr: no such answer").ok())
        .as_ref()
}

/// How many of `candidates` are wrong: each is checked against the stored hash of its question
/// (one Argon2id computation each, whatever the outcome). Question ids not answered by the
/// user, and repeated ones, count as wrong.
pub fn count_wrong(candidates: &[(String, String)], stored: &[(String, AnswerHash)]) -> u32 {
    let mut seen = BTreeSet::new();
    let mut wrong = 0u32;
    for (id, raw) in candidates {
        let answer = NormalisedAnswer::new(raw);
        let hash = stored.iter().find(|(q, _)| q == id).map(|(_, h)| h);
        let fresh = seen.insert(id.as_str());
        if !(verify_answer(&answer, hash) && fresh) {
            wrong += 1;
        }
    }
    wrong
}

/// What users and events see instead of the answers, e.g. "3 questions".
pub fn masked(answered: usize) -> String {
    if answered == 1 {
        "1 question".to_owned()
    } else {
        format!("{answered} questions")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("q{i}")).collect()
    }

    #[test]
    fn normalisation_is_nfkc_trimmed_lower_case() {
        assert_eq!(
            NormalisedAnswer::new("  Rex \t"),
            NormalisedAnswer::new("rex")
        );
        // Fullwidth letters fold to ASCII under NFKC.
        assert_eq!(
            NormalisedAnswer::new("ＲＥＸ"),
            NormalisedAnswer::new("rex")
        );
        assert_eq!(NormalisedAnswer::new("ﬁdo"), NormalisedAnswer::new("FIDO"));
        assert_ne!(NormalisedAnswer::new("rex"), NormalisedAnswer::new("r ex"));
        assert!(!format!("{:?}", NormalisedAnswer::new("secret")).contains("secret"));
    }

    #[test]
    fn answers_must_match_the_required_count() {
        let e = parse_answers([("q1", "aaa"), ("q2", "bbb")], &ids(5), 3).expect_err("count");
        assert_eq!(
            e,
            AnswerError::WrongCount {
                required: 3,
                got: 2
            }
        );
        assert!(parse_answers([("q1", "aaa"), ("q2", "bbb"), ("q3", "ccc")], &ids(5), 3).is_ok());
        assert_eq!(
            parse_answers([("q1", "aaa")], &[], 0),
            Err(AnswerError::NotAllowed)
        );
    }

    #[test]
    fn answers_are_3_to_40_characters_after_normalisation() {
        let long = "x".repeat(41);
        let max = "x".repeat(40);
        for bad in ["ab", "  ab  ", long.as_str(), "a\u{7}b"] {
            let e = parse_answers([("q1", "aaa"), ("q2", bad), ("q3", "ccc")], &ids(3), 3)
                .expect_err(bad);
            assert_eq!(e, AnswerError::BadLength { index: 1 });
            assert!(!e.to_string().contains(bad.trim()));
        }
        assert!(
            parse_answers(
                [("q1", "aaa"), ("q2", max.as_str()), ("q3", "ccc")],
                &ids(3),
                3
            )
            .is_ok()
        );
    }

    #[test]
    fn duplicates_are_refused() {
        let e = parse_answers([("q1", "Rex"), ("q2", " rex "), ("q3", "ccc")], &ids(3), 3)
            .expect_err("same answer");
        assert_eq!(e, AnswerError::DuplicateAnswer { index: 1 });
        assert!(!e.to_string().to_lowercase().contains("rex"));
        let e = parse_answers([("q1", "aaa"), ("q1", "bbb"), ("q3", "ccc")], &ids(3), 3)
            .expect_err("same question");
        assert_eq!(e, AnswerError::DuplicateQuestion { index: 1 });
        let e = parse_answers([("q1", "aaa"), ("zz", "bbb"), ("q3", "ccc")], &ids(3), 3)
            .expect_err("unknown question");
        assert_eq!(e, AnswerError::UnknownQuestion { index: 1 });
    }

    #[test]
    fn hashes_are_salted_argon2id_and_verify_normalised_answers() {
        let answer = NormalisedAnswer::new("Rex");
        let a = hash_answer(&answer).expect("hash");
        let b = hash_answer(&answer).expect("hash");
        assert!(a.as_phc().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_ne!(a, b, "fresh salt per hash");
        assert!(!a.as_phc().contains("rex"));
        assert!(verify_answer(&NormalisedAnswer::new("  REX "), Some(&a)));
        assert!(!verify_answer(&NormalisedAnswer::new("rex2"), Some(&a)));
        assert!(!verify_answer(&answer, None));
        let stored = vec![("q1".to_owned(), a)];
        assert_eq!(count_wrong(&[("q1".into(), "rex".into())], &stored), 0);
        assert_eq!(count_wrong(&[("q1".into(), "max".into())], &stored), 1);
        assert_eq!(count_wrong(&[("q9".into(), "rex".into())], &stored), 1);
        assert_eq!(
            count_wrong(
                &[("q1".into(), "rex".into()), ("q1".into(), "rex".into())],
                &stored
            ),
            1
        );
    }

    fn argon2_count(operation: &str) -> f64 {
        sspr_testkit::metrics::series_value(
            &sspr_telemetry::metrics::encode(),
            "sspr_argon2_duration_seconds_count",
            &[("operation", operation)],
        )
    }

    #[test]
    fn every_hash_and_verify_is_measured() {
        // Other tests of this binary hash too, in parallel: at least, never exactly.
        let (hashes, verifies) = (argon2_count("hash"), argon2_count("verify"));
        let answer = NormalisedAnswer::new("Rex");
        let stored = hash_answer(&answer).expect("hash");
        assert!(argon2_count("hash") >= hashes + 1.0);
        assert!(verify_answer(&answer, Some(&stored)));
        assert!(!verify_answer(&answer, None));
        assert!(argon2_count("verify") >= verifies + 2.0);
        let in_flight = sspr_telemetry::metrics::argon2("hash", || {
            sspr_telemetry::metrics::catalogue()
                .argon2_in_flight
                .get(&[])
        });
        assert!(in_flight >= 1, "counted while it runs");
    }

    #[test]
    fn masked_label_shows_a_count_only() {
        assert_eq!(masked(3), "3 questions");
        assert_eq!(masked(1), "1 question");
    }
}
