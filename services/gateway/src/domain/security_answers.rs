//! Shape checks for security-question answers at the edge (`SetSecurityAnswers`,
//! `AnswerSecurityQuestions`).
//!
//! Only the shape is checked here (counts, id syntax, lengths, control characters); which
//! questions exist, how many must be answered and whether answers repeat are the enrolment and
//! verification services' rules. An answer is a secret: messages name the entry by position and
//! never echo a value.

use sspr_proto::common::v1::SecurityAnswer;

use crate::domain::input::InvalidField;

/// Most answers in one request (the policy never asks for more than 5).
pub const MAX_ANSWERS: usize = 5;
/// Longest question id, in characters.
pub const MAX_QUESTION_ID_CHARS: usize = 64;
/// Shortest and longest answer, in characters after trimming.
pub const MIN_ANSWER_CHARS: usize = 3;
pub const MAX_ANSWER_CHARS: usize = 40;

fn invalid(problem: String) -> InvalidField {
    InvalidField {
        field: "answers",
        problem,
    }
}

/// 1 to 5 answers, each to a question id of 1 to 64 characters of `A-Z a-z 0-9 . _ -`, each
/// 3 to 40 characters (trimmed) without control characters.
pub fn answers(raw: &[SecurityAnswer]) -> Result<(), InvalidField> {
    if raw.is_empty() {
        return Err(invalid("is required".to_owned()));
    }
    if raw.len() > MAX_ANSWERS {
        return Err(invalid(format!("must have at most {MAX_ANSWERS} entries")));
    }
    for (index, answer) in raw.iter().enumerate() {
        let id = &answer.question_id;
        let id_ok = (1..=MAX_QUESTION_ID_CHARS).contains(&id.chars().count())
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !id_ok {
            return Err(invalid(format!(
                "entry {index}: question_id must be 1 to {MAX_QUESTION_ID_CHARS} characters of A-Z, a-z, 0-9, '.', '_' or '-'"
            )));
        }
        let text = answer.answer.trim();
        if !(MIN_ANSWER_CHARS..=MAX_ANSWER_CHARS).contains(&text.chars().count())
            || text.chars().any(char::is_control)
        {
            return Err(invalid(format!(
                "entry {index}: answer must be {MIN_ANSWER_CHARS} to {MAX_ANSWER_CHARS} characters without control characters"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(id: &str, answer: &str) -> SecurityAnswer {
        SecurityAnswer {
            question_id: id.to_owned(),
            answer: answer.to_owned(),
        }
    }

    #[test]
    fn counts_ids_and_lengths_are_checked_without_echoing_answers() {
        assert!(answers(&[a("q1", "rex"), a("pet.name_2-x", &"x".repeat(40))]).is_ok());
        assert_eq!(answers(&[]).map_err(|e| e.field), Err("answers"));
        let six: Vec<SecurityAnswer> = (0..6).map(|i| a(&format!("q{i}"), "abc")).collect();
        assert!(answers(&six).is_err());
        for bad_id in ["", "has space", "ü", &"q".repeat(65)] {
            assert!(answers(&[a(bad_id, "abc")]).is_err(), "{bad_id:?}");
        }
        for bad in ["ab", "  ab ", "a\nbc", &"x".repeat(41)] {
            let e = answers(&[a("q1", "fine"), a("q2", bad)]).expect_err("refused");
            assert!(e.problem.starts_with("entry 1:"), "{}", e.problem);
            assert!(!e.problem.contains(bad.trim()) || bad.trim().is_empty());
        }
    }
}
