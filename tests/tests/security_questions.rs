//! Security questions as a method, end to end through the gateway, every service and a real
//! nats-server, on SQLite and (when configured) PostgreSQL: registering answers (refusals
//! included), a reset with email + questions under `methods_required = 2` (same pick until
//! answered, a wrong set is a failed attempt and voids the pick, a right set verifies), admins
//! never using questions, questions removed from the policy no longer counting, and answers
//! never reaching events or the audit log.

use std::collections::BTreeSet;
use std::time::Duration;

use sspr_proto::admin::v1::{self as admin, Scope};
use sspr_proto::common::v1::{MethodKind, SecurityAnswer, SecurityQuestion};
use sspr_proto::events::v1 as events;
use sspr_proto::registration::v1 as registration;
use sspr_proto::reset::v1 as reset;
use sspr_tests::{Backend, World, on_both_backends};
use tonic::Code;

const PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "a brand new passphrase 42";
const CODE_REJECTED: &str = "sspr.events.v1.code.rejected";
const CODE_VERIFIED: &str = "sspr.events.v1.code.verified";
const METHOD_REGISTERED: &str = "sspr.events.v1.method.registered";

/// Alice's answers, by question id; distinctive so a leak would be found.
const ANSWERS: [(&str, &str); 5] = [
    ("pet", "Rexthedogalpha"),
    ("city", "Springfieldbeta"),
    ("colour", "Lagoongamma blue"),
    ("teacher", "Mrs Smithdelta"),
    ("car", "Volvoepsilon240"),
];

on_both_backends! {
    register_and_reset_with_questions => questions_sqlite, questions_postgres;
    admins_never_use_questions => admins_sqlite, admins_postgres;
}

fn question(id: &str) -> SecurityQuestion {
    SecurityQuestion {
        question_id: id.to_owned(),
        text: format!("What is your {id}?"),
    }
}

/// Scope `staff`, email or security questions, `required` methods, the given questions.
async fn set_policy(
    world: &World,
    required: u32,
    question_ids: &[&str],
    to_register: u32,
    to_reset: u32,
) -> Result<admin::Policy, tonic::Status> {
    world
        .admin()
        .set_policy(World::as_admin(admin::SetPolicyRequest {
            policy: Some(admin::Policy {
                scope: Scope::Selected as i32,
                group_ids: vec!["staff".into()],
                methods_required: required,
                allowed_methods: vec![
                    MethodKind::Email as i32,
                    MethodKind::SecurityQuestions as i32,
                ],
                security_questions: question_ids.iter().map(|id| question(id)).collect(),
                questions_required_to_register: to_register,
                questions_required_to_reset: to_reset,
                // Methods added later are usable at once (the cool-down is tested in the
                // attack suite).
                // This file spends many attempts on one user: keep the 24 h block (tested in
                // attack::throttles) out of the way.
                limits: Some(admin::Limits {
                    new_method_cooldown_hours: Some(0),
                    failed_verifications_per_day: Some(100),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }))
        .await
        .map(tonic::Response::into_inner)
}

/// Admin.PreviewPolicy of `policy`, every page: the users who could not reset under it.
async fn preview_unable(world: &World, policy: &admin::Policy) -> Vec<admin::PreviewedUser> {
    let mut unable = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = world
            .admin()
            .preview_policy(World::as_admin(admin::PreviewPolicyRequest {
                policy: Some(policy.clone()),
                page_size: 0,
                page_token: page_token.clone(),
            }))
            .await
            .expect("preview")
            .into_inner();
        unable.extend(page.unable);
        if page.next_page_token.is_empty() {
            return unable;
        }
        page_token = page.next_page_token;
    }
}

fn answers(pairs: &[(&str, &str)]) -> Vec<SecurityAnswer> {
    pairs
        .iter()
        .map(|(q, a)| SecurityAnswer {
            question_id: (*q).to_owned(),
            answer: (*a).to_owned(),
        })
        .collect()
}

fn right_answers(questions: &[SecurityQuestion]) -> Vec<SecurityAnswer> {
    questions
        .iter()
        .map(|q| SecurityAnswer {
            question_id: q.question_id.clone(),
            answer: ANSWERS
                .iter()
                .find(|(id, _)| *id == q.question_id)
                .map(|(_, a)| a.to_uppercase())
                .unwrap_or_default(),
        })
        .collect()
}

async fn begin(world: &World, user_id: &str) -> registration::BeginRegistrationResponse {
    world
        .registration()
        .begin_registration(registration::BeginRegistrationRequest {
            user_id: user_id.into(),
            password: PASSWORD.into(),
            locale: "en".into(),
        })
        .await
        .expect("begin registration")
        .into_inner()
}

async fn set_answers(
    world: &World,
    session_id: &str,
    pairs: &[(&str, &str)],
) -> Result<registration::SetSecurityAnswersResponse, tonic::Status> {
    world
        .registration()
        .set_security_answers(registration::SetSecurityAnswersRequest {
            session_id: session_id.into(),
            answers: answers(pairs),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn start(world: &World, user_id: &str) -> reset::StartResetResponse {
    world
        .reset()
        .start_reset(reset::StartResetRequest {
            user_id: user_id.into(),
            locale: "en".into(),
            ..Default::default()
        })
        .await
        .expect("start reset")
        .into_inner()
}

async fn questions(world: &World, session_id: &str, method_id: &str) -> Vec<SecurityQuestion> {
    world
        .reset()
        .get_security_questions(reset::GetSecurityQuestionsRequest {
            session_id: session_id.into(),
            method_id: method_id.into(),
        })
        .await
        .expect("get security questions")
        .into_inner()
        .questions
}

async fn answer(
    world: &World,
    session_id: &str,
    method_id: &str,
    answers: Vec<SecurityAnswer>,
) -> Result<reset::AnswerSecurityQuestionsResponse, tonic::Status> {
    world
        .reset()
        .answer_security_questions(reset::AnswerSecurityQuestionsRequest {
            session_id: session_id.into(),
            method_id: method_id.into(),
            answers,
        })
        .await
        .map(tonic::Response::into_inner)
}

fn ids(questions: &[SecurityQuestion]) -> Vec<String> {
    questions.iter().map(|q| q.question_id.clone()).collect()
}

async fn register_and_reset_with_questions(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    let all: Vec<&str> = ANSWERS.iter().map(|(id, _)| *id).collect();

    // The policy service refuses bad question settings, naming the field.
    let refused = set_policy(&world, 2, &all[..2], 3, 3)
        .await
        .expect_err("too few");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("policy.security_questions"),
        "{refused:?}"
    );
    let refused = set_policy(&world, 2, &all, 3, 4)
        .await
        .expect_err("reset > register");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("questions_required_to_reset"),
        "{refused:?}"
    );
    let policy = set_policy(&world, 2, &all, 5, 3).await.expect("set policy");
    assert_eq!(policy.security_questions.len(), 5);
    assert_eq!(policy.questions_required_to_register, 5);
    assert_eq!(policy.questions_required_to_reset, 3);

    world
        .upsert_user("alice", PASSWORD, &["staff"], false)
        .await
        .expect("alice");
    let email_id = world
        .register_email("alice", PASSWORD, "alice@example.com")
        .await
        .expect("register email");

    let begun = begin(&world, "alice").await;
    assert!(
        begun
            .allowed_kinds
            .contains(&(MethodKind::SecurityQuestions as i32))
    );
    assert!(begun.registration_required, "one of two methods so far");
    // Alice has an email already: setting answers needs a step-up (registration takeover).
    world.step_up(&begun).await.expect("step-up");
    let listed = world
        .registration()
        .list_security_questions(registration::ListSecurityQuestionsRequest {
            session_id: begun.session_id.clone(),
        })
        .await
        .expect("list questions")
        .into_inner();
    assert_eq!(listed.questions.len(), 5);
    assert_eq!(listed.answers_required, 5);

    // Refusals: duplicate answers (after normalisation), too short, wrong count, unknown id.
    let mut duplicate = ANSWERS.to_vec();
    duplicate[1].1 = "  REXTHEDOGALPHA ";
    let e = set_answers(&world, &begun.session_id, &duplicate)
        .await
        .expect_err("duplicate answers");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("repeats"), "{e:?}");
    assert!(!e.message().to_lowercase().contains("rexthedog"));
    let mut short = ANSWERS.to_vec();
    short[2].1 = "ab";
    let e = set_answers(&world, &begun.session_id, &short)
        .await
        .expect_err("too short");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let e = set_answers(&world, &begun.session_id, &ANSWERS[..4])
        .await
        .expect_err("wrong count");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("exactly 5"), "{e:?}");
    let mut unknown = ANSWERS.to_vec();
    unknown[4].0 = "shoe";
    let e = set_answers(&world, &begun.session_id, &unknown)
        .await
        .expect_err("unknown question");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    let set = set_answers(&world, &begun.session_id, &ANSWERS)
        .await
        .expect("set answers");
    assert!(set.registration_complete, "email + questions = 2 methods");
    let registered = world
        .wait_event(METHOD_REGISTERED, |e| {
            e.decode::<events::MethodRegistered>()
                .is_ok_and(|m| m.method_id == set.method_id)
        })
        .await
        .expect("method.registered")
        .decode::<events::MethodRegistered>()
        .expect("decodes");
    assert_eq!(registered.kind, MethodKind::SecurityQuestions as i32);
    assert_eq!(registered.masked_destination, "5 questions");
    assert_eq!(registered.methods_registered, 2);
    // Replacing the answers keeps the method id.
    let again = set_answers(&world, &begun.session_id, &ANSWERS)
        .await
        .expect("replace answers");
    assert_eq!(again.method_id, set.method_id);

    // The policy preview counts the questions as alice's second method.
    let unable = preview_unable(&world, &policy).await;
    assert!(
        unable.iter().all(|u| u.user_id != "alice"),
        "email + questions is enough: {unable:?}"
    );
    let mut without_questions = policy.clone();
    without_questions.allowed_methods = vec![MethodKind::Email as i32];
    without_questions.security_questions.clear();
    without_questions.questions_required_to_register = 0;
    without_questions.questions_required_to_reset = 0;
    let unable = preview_unable(&world, &without_questions).await;
    let alice = unable
        .iter()
        .find(|u| u.user_id == "alice")
        .unwrap_or_else(|| panic!("alice cannot reset with email alone: {unable:?}"));
    assert_eq!(alice.reason, "not_enough_methods");
    assert_eq!((alice.usable_methods, alice.methods_required), (1, 2));

    // Reset: email + questions.
    let started = start(&world, "alice").await;
    assert_eq!(started.methods_required, 2);
    let sq = started
        .methods
        .iter()
        .find(|m| m.kind == MethodKind::SecurityQuestions as i32)
        .unwrap_or_else(|| panic!("no questions method: {:?}", started.methods));
    assert_eq!(sq.method_id, set.method_id);
    assert_eq!(sq.masked_destination, "5 questions");
    let sid = started.session_id.clone();

    // Nothing to send for questions.
    let e = world
        .reset()
        .send_code(reset::SendCodeRequest {
            session_id: sid.clone(),
            method_id: sq.method_id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("no code for questions");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    // Answering before asking is refused without spending an attempt.
    let e = answer(
        &world,
        &sid,
        &sq.method_id,
        right_answers(&[question("pet")]),
    )
    .await
    .expect_err("nothing picked");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    let code = world
        .send_reset_code(&sid, &email_id, "alice@example.com")
        .await
        .expect("email code");
    let verified = world
        .reset()
        .verify_code(reset::VerifyCodeRequest {
            session_id: sid.clone(),
            method_id: email_id.clone(),
            code,
        })
        .await
        .expect("verify email")
        .into_inner();
    assert_eq!(verified.methods_remaining, 1);

    let first = questions(&world, &sid, &sq.method_id).await;
    assert_eq!(first.len(), 3);
    assert_eq!(ids(&first).iter().collect::<BTreeSet<_>>().len(), 3);
    assert!(first.iter().all(|q| all.contains(&q.question_id.as_str())));
    assert_eq!(
        first[0].text,
        format!("What is your {}?", first[0].question_id)
    );
    // Asking again before answering returns the same pick.
    assert_eq!(questions(&world, &sid, &sq.method_id).await, first);

    // A wrong set is a failed attempt and voids the pick; the next request picks again.
    let mut previous = first;
    let mut repicked = false;
    for attempt in 1..=4u32 {
        let mut wrong = right_answers(&previous);
        let which = attempt as usize % wrong.len();
        wrong[which].answer = "not the answer".into();
        let e = answer(&world, &sid, &sq.method_id, wrong)
            .await
            .expect_err("wrong answers");
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        let rejected = world
            .wait_event(CODE_REJECTED, |e| {
                e.decode::<events::CodeRejected>()
                    .is_ok_and(|r| r.method_id == sq.method_id && r.attempts_left == 5 - attempt)
            })
            .await
            .expect("code.rejected")
            .decode::<events::CodeRejected>()
            .expect("decodes");
        assert_eq!(rejected.reason, "wrong_answers");
        assert_eq!(rejected.meta.unwrap_or_default().flow_id, started.flow_id);
        if attempt == 1 {
            // The pick is gone: the same answers cannot be tried again without asking.
            let e = answer(&world, &sid, &sq.method_id, right_answers(&previous))
                .await
                .expect_err("voided pick");
            assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        }
        let next = questions(&world, &sid, &sq.method_id).await;
        assert_eq!(next.len(), 3);
        let (a, b): (BTreeSet<String>, BTreeSet<String>) = (
            ids(&previous).into_iter().collect(),
            ids(&next).into_iter().collect(),
        );
        repicked |= a != b;
        previous = next;
    }
    // 10 possible picks of 3 among 5: four re-picks all equal to the one before is 1 in 10^4.
    assert!(repicked, "the questions were never picked again");

    let done = answer(&world, &sid, &sq.method_id, right_answers(&previous))
        .await
        .expect("right answers");
    assert_eq!(done.methods_remaining, 0);
    world
        .wait_event(CODE_VERIFIED, |e| {
            e.decode::<events::CodeVerified>()
                .is_ok_and(|v| v.method_id == sq.method_id)
        })
        .await
        .expect("code.verified");
    world
        .reset()
        .complete_reset(reset::CompleteResetRequest {
            session_id: sid.clone(),
            new_password: NEW_PASSWORD.into(),
        })
        .await
        .expect("complete reset");

    // A used-up method: five wrong sets end it for the flow.
    let second = start(&world, "alice").await;
    for _ in 0..5 {
        let picked = questions(&world, &second.session_id, &sq.method_id).await;
        let mut wrong = right_answers(&picked);
        wrong[0].answer = "still wrong".into();
        answer(&world, &second.session_id, &sq.method_id, wrong)
            .await
            .expect_err("wrong");
    }
    let e = world
        .reset()
        .get_security_questions(reset::GetSecurityQuestionsRequest {
            session_id: second.session_id.clone(),
            method_id: sq.method_id.clone(),
        })
        .await
        .expect_err("no attempts left");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    // Questions removed from the policy no longer count: with 1 of alice's questions left,
    // the method is not offered any more.
    set_policy(&world, 2, &["pet", "q6", "q7"], 3, 3)
        .await
        .expect("new questions");
    // (Alice, one method short, now gets a decoy flow, which may show a decoy questions method
    // like any decoy: never hers.)
    let third = start(&world, "alice").await;
    assert!(
        third.methods.iter().all(|m| m.method_id != sq.method_id),
        "{:?}",
        third.methods
    );
    let status = world
        .registration()
        .get_status(registration::GetStatusRequest {
            user_id: "alice".into(),
            password: NEW_PASSWORD.into(),
        })
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.methods_registered, 1, "only the email counts now");
    assert!(status.registration_required);

    // No answer anywhere in events or the audit log.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let secrets: Vec<String> = ANSWERS
        .iter()
        .flat_map(|(_, a)| [a.to_string(), a.to_lowercase(), a.to_uppercase()])
        .collect();
    for event in world.events() {
        let raw = String::from_utf8_lossy(&event.payload).to_lowercase();
        for s in &secrets {
            assert!(
                !raw.contains(&s.to_lowercase()),
                "{} carries an answer",
                event.subject
            );
        }
    }
    let records = world
        .admin()
        .list_audit_events(World::as_admin(admin::ListAuditEventsRequest {
            user_id: "alice".into(),
            page_size: 500,
            ..Default::default()
        }))
        .await
        .expect("audit")
        .into_inner()
        .records;
    assert!(
        records.iter().any(|r| r.kind == "method.registered"
            && r.summary_json.contains("security_questions")
            && r.summary_json.contains("5 questions")),
        "{:?}",
        records.iter().map(|r| &r.summary_json).collect::<Vec<_>>()
    );
    assert!(
        records.iter().any(|r| r.kind == "code.rejected"),
        "{:?}",
        records.iter().map(|r| &r.kind).collect::<Vec<_>>()
    );
    for r in &records {
        let summary = r.summary_json.to_lowercase();
        for s in &secrets {
            assert!(
                !summary.contains(&s.to_lowercase()),
                "{} summary holds an answer",
                r.kind
            );
        }
    }
    world.stop().await;
}

async fn admins_never_use_questions(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    let all: Vec<&str> = ANSWERS.iter().map(|(id, _)| *id).collect();
    set_policy(&world, 1, &all, 3, 3).await.expect("set policy");

    // Bob registers answers while an ordinary user, then becomes an admin.
    world
        .upsert_user("bob", PASSWORD, &["staff"], false)
        .await
        .expect("bob");
    let begun = begin(&world, "bob").await;
    let set = set_answers(&world, &begun.session_id, &ANSWERS[..3])
        .await
        .expect("answers as a user");
    assert!(set.registration_complete, "one method is enough for a user");
    let as_user = start(&world, "bob").await;
    assert!(
        as_user
            .methods
            .iter()
            .any(|m| m.kind == MethodKind::SecurityQuestions as i32)
    );

    // RemoveMethod works for the questions method, never below the required count.
    let e = world
        .registration()
        .remove_method(registration::RemoveMethodRequest {
            session_id: begun.session_id.clone(),
            method_id: set.method_id.clone(),
        })
        .await
        .expect_err("the only method");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    world
        .register_email("bob", PASSWORD, "bob@example.com")
        .await
        .expect("an email");
    world
        .registration()
        .remove_method(registration::RemoveMethodRequest {
            session_id: begun.session_id.clone(),
            method_id: set.method_id.clone(),
        })
        .await
        .expect("remove the questions");
    let removed = world
        .wait_event("sspr.events.v1.method.removed", |e| {
            e.decode::<events::MethodRemoved>()
                .is_ok_and(|m| m.method_id == set.method_id)
        })
        .await
        .expect("method.removed")
        .decode::<events::MethodRemoved>()
        .expect("decodes");
    assert_eq!(removed.kind, MethodKind::SecurityQuestions as i32);
    assert_eq!(removed.methods_registered, 1);
    let begun = begin(&world, "bob").await;
    assert_eq!(begun.registered.len(), 1, "{:?}", begun.registered);
    world.step_up(&begun).await.expect("step-up");

    // user.deleted removes the answers: a new account of the same id has none.
    set_answers(&world, &begun.session_id, &ANSWERS[..3])
        .await
        .expect("answers again");
    world
        .admin()
        .delete_user(World::as_admin(admin::DeleteUserRequest {
            user_id: "bob".into(),
        }))
        .await
        .expect("delete bob");
    world
        .wait_event("sspr.events.v1.user.deleted", |_| true)
        .await
        .expect("user.deleted");
    world
        .upsert_user("bob", PASSWORD, &["staff"], false)
        .await
        .expect("bob again");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if begin(&world, "bob").await.registered.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "answers survived user.deleted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let begun = begin(&world, "bob").await;
    let set = set_answers(&world, &begun.session_id, &ANSWERS[..3])
        .await
        .expect("answers for the new bob");
    assert_ne!(set.method_id, "", "{set:?}");

    world
        .upsert_user("bob", PASSWORD, &["staff"], true)
        .await
        .expect("bob the admin");
    let begun = begin(&world, "bob").await;
    assert_eq!(begun.methods_required, 2, "admins need two methods");
    assert!(
        !begun
            .allowed_kinds
            .contains(&(MethodKind::SecurityQuestions as i32))
    );
    assert!(
        begun.registered.is_empty(),
        "answers never count for an admin: {:?}",
        begun.registered
    );
    let listed = world
        .registration()
        .list_security_questions(registration::ListSecurityQuestionsRequest {
            session_id: begun.session_id.clone(),
        })
        .await
        .expect("list questions")
        .into_inner();
    assert!(listed.questions.is_empty());
    assert_eq!(listed.answers_required, 0);
    let e = set_answers(&world, &begun.session_id, &ANSWERS[..3])
        .await
        .expect_err("admins cannot register answers");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    // One email is not enough, and the answers do not make up the difference.
    let first = world
        .register_email("bob", PASSWORD, "bob@example.com")
        .await
        .expect("first email");
    let status = world
        .registration()
        .get_status(registration::GetStatusRequest {
            user_id: "bob".into(),
            password: PASSWORD.into(),
        })
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.methods_required, 2);
    assert_eq!(status.methods_registered, 1);
    assert!(status.registration_required);
    let second = world
        .register_email("bob", PASSWORD, "bob.two@example.com")
        .await
        .expect("second email");

    let started = start(&world, "bob").await;
    // StartReset shows what the policy asks of everyone (1): an admin is not revealed before
    // a first method is verified (attack::enumeration); the session still needs both emails.
    assert_eq!(started.methods_required, 1);
    let listed: BTreeSet<&str> = started
        .methods
        .iter()
        .map(|m| m.method_id.as_str())
        .collect();
    assert_eq!(
        listed,
        BTreeSet::from([first.as_str(), second.as_str()]),
        "only the two emails"
    );
    let e = world
        .reset()
        .get_security_questions(reset::GetSecurityQuestionsRequest {
            session_id: started.session_id.clone(),
            method_id: set.method_id.clone(),
        })
        .await
        .expect_err("not a method of the admin's flow");
    assert_ne!(e.code(), Code::Ok);
    world.stop().await;
}
