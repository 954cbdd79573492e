//! Decoy sessions imitate security questions where the policy allows them: some unknown users
//! show a questions method, which answers GetSecurityQuestions like a real one (a stable pick
//! from the policy's questions) and AnswerSecurityQuestions like a wrong answer set.

mod harness;

use harness::{Harness, World};
use sspr_bus::subjects::events;
use sspr_proto::common::v1::MethodKind;
use sspr_testkit::TestDb;
use sspr_verification::domain::UserId;
use sspr_verification::domain::decoy::decoy_methods;

const QUESTIONS_METHOD: &str = "m-questions";

/// Policy: one method of email or security questions (5 questions, 3 to register, 2 at reset);
/// bob answered q1..q3.
fn world(questions_allowed: bool) -> World {
    let mut world = World {
        methods_required: 1,
        allowed: if questions_allowed {
            vec![MethodKind::Email, MethodKind::SecurityQuestions]
        } else {
            vec![MethodKind::Email]
        },
        questions: (1..=5)
            .map(|i| (format!("q{i}"), format!("Question {i}?")))
            .collect(),
        questions_to_register: 3,
        questions_to_reset: 2,
        // Many probes from one address: keep the per-IP limit out of the way.
        limits: Some(sspr_proto::admin::v1::Limits {
            ip_start_reset_per_minute: Some(10_000),
            failed_verifications_per_day: Some(100),
            ..Default::default()
        }),
        ..Default::default()
    };
    world.add_user("bob", true);
    world.add_method(
        "bob",
        QUESTIONS_METHOD,
        MethodKind::SecurityQuestions,
        "3 questions",
        "",
    );
    world.answers.insert(
        "bob".into(),
        (1..=3)
            .map(|i| (format!("q{i}"), format!("answer {i}")))
            .collect(),
    );
    world
}

fn ids(
    picked: &sspr_proto::internal::verification::v1::GetSecurityQuestionsResponse,
) -> Vec<String> {
    picked
        .questions
        .iter()
        .map(|q| q.question_id.clone())
        .collect()
}

fn wrong(picked: &[String]) -> Vec<(String, String)> {
    picked
        .iter()
        .map(|q| (q.clone(), "not it".to_owned()))
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn decoy_questions_answer_like_real_ones_on_every_backend() {
    for db in TestDb::all().await.expect("test databases") {
        let backend = db.backend();
        let h = Harness::start_with(world(true), db, |_| {}).await;

        // Some unknown users show a questions method, others an email; asking again is the same.
        let (mut with, mut without) = (Vec::new(), Vec::new());
        for i in 0..16 {
            let user = format!("ghost{i}");
            let started = h.start_reset(&user).await.expect("start_reset");
            // One or two methods (as real users register one or more), the same every time.
            assert!((1..=2).contains(&started.methods.len()), "{backend}");
            assert_eq!(started.methods_required, 1);
            let again = h.start_reset(&user).await.expect("start_reset");
            assert_eq!(started.methods, again.methods);
            let m = started.methods.last().expect("a method");
            if m.kind == MethodKind::SecurityQuestions as i32 {
                // Masked as enrolment masks bob's, with an id shaped like enrolment's.
                assert_eq!(m.masked_destination, "3 questions");
                let hex = m.method_id.strip_prefix("m_").expect("m_ prefix");
                let id = uuid::Uuid::try_parse(hex).expect("uuid");
                assert_eq!((hex.len(), id.get_version_num()), (32, 7));
                with.push((user, started));
            } else {
                assert_eq!(m.kind, MethodKind::Email as i32);
                without.push(started);
            }
        }
        assert!(
            !with.is_empty() && !without.is_empty(),
            "{} with, {} without",
            with.len(),
            without.len()
        );

        // The real user, for comparison: a wrong answer set.
        let real = h.start_reset("bob").await.expect("start_reset");
        assert_eq!(real.methods[0].method_id, QUESTIONS_METHOD);
        let real_pick = h
            .get_security_questions(&real.session_id, QUESTIONS_METHOD)
            .await
            .expect("questions");
        let real_wrong = h
            .answer_security_questions(&real.session_id, QUESTIONS_METHOD, wrong(&ids(&real_pick)))
            .await
            .expect_err("wrong answers");

        // A decoy: the same pick twice, two of the policy's questions with their texts.
        let (user, decoy) = &with[0];
        let method = &decoy.methods.last().expect("a method").method_id;
        let first = h
            .get_security_questions(&decoy.session_id, method)
            .await
            .expect("decoy questions");
        assert_eq!(first.questions.len(), 2, "{backend}");
        for q in &first.questions {
            let n = q.question_id.strip_prefix('q').expect("a policy question");
            assert_eq!(q.text, format!("Question {n}?"));
        }
        let twice = h
            .get_security_questions(&decoy.session_id, method)
            .await
            .expect("decoy questions");
        assert_eq!(first, twice);

        // Answers that do not cover the pick: refused like a real session's.
        let partial = wrong(&ids(&first)[..1]);
        let decoy_partial = h
            .answer_security_questions(&decoy.session_id, method, partial)
            .await
            .expect_err("partial");
        let real_again = h
            .get_security_questions(&real.session_id, QUESTIONS_METHOD)
            .await
            .expect("re-pick");
        let real_partial = h
            .answer_security_questions(
                &real.session_id,
                QUESTIONS_METHOD,
                wrong(&ids(&real_again)[..1]),
            )
            .await
            .expect_err("partial");
        assert_eq!(
            (decoy_partial.code, &decoy_partial.message),
            (real_partial.code, &real_partial.message)
        );

        // Any answers are wrong, exactly as a real user's wrong answers.
        let decoy_wrong = h
            .answer_security_questions(&decoy.session_id, method, wrong(&ids(&first)))
            .await
            .expect_err("a decoy never succeeds");
        assert_eq!(
            (decoy_wrong.code, &decoy_wrong.message),
            (real_wrong.code, &real_wrong.message),
            "{backend}"
        );
        // Even the pick's ids answered with anything else: the pick is gone, asking again
        // re-picks (keyed by attempt: a new session of the same user picks the same again).
        let gone = h
            .answer_security_questions(&decoy.session_id, method, wrong(&ids(&first)))
            .await
            .expect_err("no pick pending");
        let real_gone = h
            .answer_security_questions(&real.session_id, QUESTIONS_METHOD, wrong(&ids(&real_again)))
            .await
            .expect_err("wrong answers");
        assert_eq!(real_gone.code, real_wrong.code);
        let real_not_picked = h
            .answer_security_questions(&real.session_id, QUESTIONS_METHOD, wrong(&ids(&real_again)))
            .await
            .expect_err("no pick pending");
        assert_eq!(
            (gone.code, &gone.message),
            (real_not_picked.code, &real_not_picked.message)
        );
        let repicked = h
            .get_security_questions(&decoy.session_id, method)
            .await
            .expect("re-pick");
        assert_eq!(repicked.questions.len(), 2);
        assert_eq!(
            repicked,
            h.get_security_questions(&decoy.session_id, method)
                .await
                .expect("same re-pick")
        );
        let fresh = h.start_reset(user).await.expect("start_reset");
        let fresh_first = h
            .get_security_questions(&fresh.session_id, method)
            .await
            .expect("questions");
        assert_eq!(fresh_first, first, "keyed per user and attempt");

        // Attempts count down as for wrong codes; then too_many_attempts, like a real user.
        let mut last = None;
        for _ in 0..5 {
            let picked = h.get_security_questions(&fresh.session_id, method).await;
            last = Some(match picked {
                Ok(p) => h
                    .answer_security_questions(&fresh.session_id, method, wrong(&ids(&p)))
                    .await
                    .expect_err("wrong"),
                Err(e) => e,
            });
        }
        let exhausted = h
            .get_security_questions(&fresh.session_id, method)
            .await
            .expect_err("too many attempts");
        assert_eq!(last.map(|e| e.code), Some(real_wrong.code));
        assert_eq!(exhausted.message, "too many wrong codes, request a new one");

        // Like a decoy's wrong codes, nothing about a decoy is emitted; bob's were.
        let emitted = h.settled_events().await;
        assert!(
            emitted
                .iter()
                .any(|e| e.subject == events::CODE_REJECTED && contains(&e.payload, "bob"))
        );
        for e in &emitted {
            assert!(!contains(&e.payload, "ghost"), "{}", e.subject);
        }
        h.stop().await;
    }
}

#[tokio::test]
async fn without_questions_in_the_policy_decoys_are_unchanged() {
    let h = Harness::start(world(false)).await;
    for i in 0..16 {
        let user = format!("ghost{i}");
        let started = h.start_reset(&user).await.expect("start_reset");
        let expected = decoy_methods(
            &h.key,
            &UserId::parse(&user).expect("user id"),
            &[sspr_verification::domain::MethodKind::Email],
            1,
            0,
        );
        assert_eq!(started.methods.len(), 1);
        assert_eq!(started.methods[0].kind, MethodKind::Email as i32);
        assert_eq!(started.methods[0].method_id, expected[0].method_id.as_str());
        assert_eq!(started.methods[0].masked_destination, expected[0].masked);
        let refused = h
            .get_security_questions(&started.session_id, &started.methods[0].method_id)
            .await
            .expect_err("not a questions method");
        assert!(refused.message.contains("not a security-questions method"));
    }
    h.stop().await;
}
