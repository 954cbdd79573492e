//! Security questions at reset: which of the user's questions are asked, and how many wrong
//! answer sets a flow may give.
//!
//! Invariants:
//! - The pick is `questions_required_to_reset` distinct questions drawn uniformly at random
//!   (thread-local CSPRNG) from the user's answered questions that are still in the policy.
//! - A pick stays the same until it is answered (asking again returns it); any answer, right or
//!   wrong, ends it, so the next request after a failure picks again.
//! - A flow allows as many wrong answer sets as a code allows wrong codes; then the method is
//!   refused for the rest of the flow (`too_many_attempts`).
//! - Nothing here ever holds an answer.

use rand::seq::SliceRandom;

use super::ids::MethodId;

/// The security-question state of one reset flow, persisted with its session.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QuestionChallenge {
    pub method_id: MethodId,
    /// The question ids to answer, in the order asked; empty when no pick is pending.
    pub picked: Vec<String>,
    /// Wrong answer sets still allowed in this flow.
    pub attempts_left: u32,
}

impl QuestionChallenge {
    /// The pending pick for `method_id`, if any.
    pub fn pending(&self, method_id: &MethodId) -> Option<&[String]> {
        (self.method_id == *method_id && !self.picked.is_empty()).then_some(&self.picked[..])
    }
}

/// `count` distinct ids drawn at random from `available`; `None` when there are too few.
pub fn pick(available: &[String], count: usize) -> Option<Vec<String>> {
    let mut pool: Vec<String> = available.to_vec();
    pool.sort();
    pool.dedup();
    if count == 0 || pool.len() < count {
        return None;
    }
    pool.shuffle(&mut rand::rng());
    pool.truncate(count);
    Some(pool)
}

/// True when `answered` names exactly the picked questions, each once.
pub fn answers_cover(picked: &[String], answered: &[&str]) -> bool {
    answered.len() == picked.len()
        && picked
            .iter()
            .all(|p| answered.iter().filter(|a| **a == p).count() == 1)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("q{i}")).collect()
    }

    #[test]
    fn picks_distinct_questions_among_the_available_ones() {
        let available = ids(5);
        for _ in 0..50 {
            let p = pick(&available, 3).expect("enough");
            assert_eq!(p.len(), 3);
            assert_eq!(p.iter().collect::<HashSet<_>>().len(), 3);
            assert!(p.iter().all(|q| available.contains(q)));
        }
        assert_eq!(pick(&ids(2), 3), None);
        assert_eq!(pick(&available, 0), None);
        let dup = vec!["a".to_owned(), "a".to_owned(), "b".to_owned()];
        assert_eq!(pick(&dup, 3), None, "duplicates are one question");
    }

    #[test]
    fn picks_vary() {
        let available = ids(5);
        let seen: HashSet<Vec<String>> = (0..200)
            .map(|_| {
                let mut p = pick(&available, 3).unwrap_or_default();
                p.sort();
                p
            })
            .collect();
        // 10 possible subsets; 200 draws miss one with negligible probability.
        assert_eq!(seen.len(), 10);
    }

    #[test]
    fn answers_must_cover_the_pick_exactly() {
        let picked = ids(3);
        assert!(answers_cover(&picked, &["q3", "q1", "q2"]));
        assert!(!answers_cover(&picked, &["q1", "q2"]));
        assert!(!answers_cover(&picked, &["q1", "q1", "q2"]));
        assert!(!answers_cover(&picked, &["q1", "q2", "q4"]));
    }

    #[test]
    fn pending_only_for_its_method() {
        let m = MethodId::parse("m_1").unwrap_or_else(|e| panic!("{e}"));
        let other = MethodId::parse("m_2").unwrap_or_else(|e| panic!("{e}"));
        let c = QuestionChallenge {
            method_id: m.clone(),
            picked: ids(3),
            attempts_left: 5,
        };
        assert_eq!(c.pending(&m).map(<[String]>::len), Some(3));
        assert_eq!(c.pending(&other), None);
        let answered = QuestionChallenge {
            picked: Vec::new(),
            ..c
        };
        assert_eq!(answered.pending(&m), None);
    }
}
