//! Enumeration: nothing a client sees tells an existing account (that may reset) from an id
//! that does not exist, a user out of scope or a disabled user, nor an admin from anyone else.
//! (The work done per call and the latency figures are in the `attack_enumeration` binary,
//! which must run alone in its process.)

use std::time::Duration;

use sspr_clock::Clock;
use sspr_proto::admin::v1::{self as admin, Scope};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::registration::v1 as registration;
use sspr_proto::reset::v1 as reset;
use sspr_tests::population::{self, PASSWORD, PROBES, Probe, REAL};
use sspr_tests::{Backend, World, on_both_backends};
use tonic::Code;

on_both_backends! {
    start_reset_answers_alike => start_reset_answers_alike_for_every_kind_of_user_sqlite,
        start_reset_answers_alike_for_every_kind_of_user_postgres;
    decoys_obey_resend_after => decoys_obey_resend_after_like_real_methods_sqlite,
        decoys_obey_resend_after_like_real_methods_postgres;
    admins_are_not_revealed => methods_required_does_not_reveal_an_admin_sqlite,
        methods_required_does_not_reveal_an_admin_postgres;
    refusals_alike => refusals_do_not_depend_on_the_account_sqlite,
        refusals_do_not_depend_on_the_account_postgres;
}

async fn verify(world: &World, session: &str, method: &str, code: &str) -> tonic::Status {
    match world
        .reset()
        .verify_code(reset::VerifyCodeRequest {
            session_id: session.to_owned(),
            method_id: method.to_owned(),
            code: code.to_owned(),
        })
        .await
    {
        Ok(_) => panic!("a made-up code was accepted"),
        Err(s) => s,
    }
}

/// The shape of a masked destination: which characters are letters, digits, bullets or
/// punctuation, so `a•••@e•••.com` and `o•••@e•••.com` compare equal.
fn shape(masked: &str) -> String {
    masked
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' => 'a',
            '0'..='9' => '9',
            other => other,
        })
        .collect()
}

/// Seconds from the stack's clock to a timestamp's `seconds` (`i64::MIN` when unset).
fn seconds_from_now(seconds: Option<i64>, world: &World) -> i64 {
    seconds.map_or(i64::MIN, |s| s - world.clock.now().timestamp())
}

async fn start_reset_answers_alike(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    population::populate(&world, Some(population::generous_limits()))
        .await
        .expect("population");
    let real = world.start_reset(REAL.user_id).await;
    assert_eq!(real.methods_required, 1);
    let mails_before: Vec<usize> = PROBES
        .iter()
        .map(|p| p.email.map_or(0, |e| world.mail_count(e)))
        .collect();

    let mut wrong_code_statuses = Vec::new();
    for probe in PROBES {
        let got = world.start_reset(probe.user_id).await;
        let who = probe.label;
        assert_eq!(got.session_id.len(), real.session_id.len(), "{who}");
        assert_eq!(got.flow_id.len(), real.flow_id.len(), "{who}");
        assert_eq!(got.methods_required, real.methods_required, "{who}");
        assert_eq!(got.helpdesk_contact, real.helpdesk_contact, "{who}");
        assert_eq!(
            seconds_from_now(got.expires_at.as_ref().map(|t| t.seconds), &world),
            seconds_from_now(real.expires_at.as_ref().map(|t| t.seconds), &world),
            "{who}: session lifetime"
        );
        assert!((1..=2).contains(&got.methods.len()), "{who}: {got:?}");
        for m in &got.methods {
            assert!(!m.method_id.is_empty(), "{who}");
            assert!(m.masked_destination.contains('•'), "{who}: {m:?}");
            if m.kind == MethodKind::Email as i32 {
                let r = &real.methods[0];
                assert_eq!(
                    shape(&m.masked_destination).contains('@'),
                    shape(&r.masked_destination).contains('@'),
                    "{who}"
                );
            }
        }
        // A send answers like a real one...
        let method = got.methods[0].method_id.clone();
        let sent = world
            .send_code(&got.session_id, &method)
            .await
            .unwrap_or_else(|s| panic!("{who}: send_code refused: {s:?}"));
        assert!(
            sent.expires_at.is_some() && sent.resend_after.is_some(),
            "{who}"
        );
        // ...and a wrong code is refused in the same words.
        wrong_code_statuses.push((
            who,
            verify(&world, &got.session_id, &method, "00000000").await,
        ));
    }
    let (_, first) = &wrong_code_statuses[0];
    for (who, status) in &wrong_code_statuses {
        assert_eq!(status.code(), first.code(), "{who}: {status:?}");
        assert_eq!(status.message(), first.message(), "{who}");
    }

    // Only the real user was mailed a code; nobody else got anything.
    tokio::time::timeout(Duration::from_secs(15), async {
        while world.mail_count("alice@example.com") <= mails_before[0] {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the real user's code arrives");
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (probe, before) in PROBES.iter().zip(&mails_before).skip(1) {
        if let Some(email) = probe.email {
            assert_eq!(world.mail_count(email), *before, "{}: mailed", probe.label);
        }
    }
    assert!(world.sms.requests().is_empty(), "no SMS at all");
    world.stop().await;
}

/// A method whose code was sent `resend_after` ago may be sent again; before that it may not,
/// for decoys exactly as for real methods.
async fn decoys_obey_resend_after(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    let limits = admin::Limits {
        resend_after_seconds: Some(30),
        ..population::generous_limits()
    };
    population::populate(&world, Some(limits))
        .await
        .expect("population");
    let mut refusals = Vec::new();
    for probe in PROBES {
        let got = world.start_reset(probe.user_id).await;
        let method = &got.methods[0].method_id;
        let first = world
            .send_code(&got.session_id, method)
            .await
            .unwrap_or_else(|s| panic!("{}: {s:?}", probe.label));
        assert_eq!(
            seconds_from_now(first.resend_after.as_ref().map(|t| t.seconds), &world),
            30,
            "{}",
            probe.label
        );
        let again = world
            .send_code(&got.session_id, method)
            .await
            .expect_err("a resend within 30 s is refused");
        refusals.push((probe.label, again));
    }
    let (_, real) = &refusals[0];
    for (who, status) in &refusals {
        assert_eq!(status.code(), real.code(), "{who}: {status:?}");
        assert_eq!(status.message(), real.message(), "{who}");
        assert_eq!(
            status
                .metadata()
                .get("retry-after")
                .map(|v| v.as_bytes().to_vec()),
            real.metadata()
                .get("retry-after")
                .map(|v| v.as_bytes().to_vec()),
            "{who}"
        );
    }
    world.clock.advance(chrono::Duration::seconds(31));
    for probe in PROBES {
        let got = world.start_reset(probe.user_id).await;
        let method = &got.methods[0].method_id;
        world
            .send_code(&got.session_id, method)
            .await
            .unwrap_or_else(|s| panic!("{}: {s:?}", probe.label));
    }
    world.stop().await;
}

/// Registers every address as an email method of `user_id` in one registration session.
async fn register_emails(world: &World, user_id: &str, addresses: &[&str]) -> Vec<String> {
    let mut reg = world.registration();
    let begin = reg
        .begin_registration(registration::BeginRegistrationRequest {
            user_id: user_id.to_owned(),
            password: PASSWORD.to_owned(),
            locale: "en".to_owned(),
        })
        .await
        .expect("begin registration")
        .into_inner();
    let mut ids = Vec::new();
    for address in addresses {
        let seen = world.mail_count(address);
        let added = reg
            .add_method(registration::AddMethodRequest {
                session_id: begin.session_id.clone(),
                kind: MethodKind::Email as i32,
                destination: (*address).to_owned(),
            })
            .await
            .expect("add method")
            .into_inner();
        let code = world.next_code(address, seen).await.expect("code");
        reg.confirm_method(registration::ConfirmMethodRequest {
            session_id: begin.session_id.clone(),
            method_id: added.method_id.clone(),
            code,
        })
        .await
        .expect("confirm");
        ids.push(added.method_id);
    }
    ids
}

/// Under a one-method policy an admin (who needs two) and a user look the same at StartReset:
/// the admin's second method is asked for only once the first is verified.
async fn admins_are_not_revealed(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    world.set_policy(Scope::All, &[], 1).await.expect("policy");
    world
        .upsert_user("root", PASSWORD, &[], true)
        .await
        .expect("admin");
    world
        .upsert_user("bob", PASSWORD, &[], false)
        .await
        .expect("user");
    register_emails(&world, "root", &["root@example.com", "root2@example.com"]).await;
    register_emails(&world, "bob", &["bob@example.com", "bob2@example.com"]).await;

    let admin = world.start_reset("root").await;
    let user = world.start_reset("bob").await;
    let unknown = world.start_reset("nobody-at-all").await;
    assert_eq!(admin.methods_required, 1, "an admin looks like anyone else");
    assert_eq!(user.methods_required, 1);
    assert_eq!(unknown.methods_required, 1);
    assert_eq!(admin.methods.len(), user.methods.len());

    let mut remaining = Vec::new();
    for (session, address) in [(&admin, "root@example.com"), (&user, "bob@example.com")] {
        let method = session
            .methods
            .iter()
            .find(|m| {
                let local = address.chars().next().unwrap_or('?');
                m.masked_destination.starts_with(local) && !m.masked_destination.contains('2')
            })
            .unwrap_or(&session.methods[0])
            .method_id
            .clone();
        let seen = world.mail_count(address);
        world
            .send_code(&session.session_id, &method)
            .await
            .expect("send");
        let code = world.next_code(address, seen).await.expect("code");
        let verified = world
            .reset()
            .verify_code(reset::VerifyCodeRequest {
                session_id: session.session_id.clone(),
                method_id: method,
                code,
            })
            .await
            .expect("verify")
            .into_inner();
        remaining.push(verified.methods_remaining);
    }
    assert_eq!(
        remaining,
        vec![1, 0],
        "the admin's second method is asked for now"
    );
    world.stop().await;
}

/// Every refusal a flow can meet reads the same for a decoy as for a real session.
async fn refusals_alike(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    population::populate(&world, Some(population::generous_limits()))
        .await
        .expect("population");
    let mut per_probe: Vec<(Probe, Vec<(Code, String)>)> = Vec::new();
    for probe in PROBES {
        let s = world.start_reset(probe.user_id).await;
        let method = s.methods[0].method_id.clone();
        let mut seen = Vec::new();
        let mut note = |r: Result<(), tonic::Status>| {
            let status = r.expect_err("refused");
            seen.push((status.code(), status.message().to_owned()));
        };
        // A method id that is not in the flow.
        note(
            world
                .send_code(&s.session_id, "m-0000000000000000")
                .await
                .map(|_| ()),
        );
        // Completing before any method is verified.
        note(
            world
                .reset()
                .complete_reset(reset::CompleteResetRequest {
                    session_id: s.session_id.clone(),
                    new_password: "a brand new passphrase".to_owned(),
                })
                .await
                .map(|_| ()),
        );
        // Checking a password before any method is verified.
        note(
            world
                .reset()
                .check_password(reset::CheckPasswordRequest {
                    session_id: s.session_id.clone(),
                    password: "a brand new passphrase".to_owned(),
                })
                .await
                .map(|_| ()),
        );
        // Verifying a method that was sent no code.
        note(Err(verify(&world, &s.session_id, &method, "12345678").await));
        // A malformed code.
        note(Err(verify(&world, &s.session_id, &method, "12").await));
        per_probe.push((probe, seen));
    }
    let (_, real) = &per_probe[0];
    for (probe, seen) in &per_probe {
        assert_eq!(seen, real, "{}", probe.label);
    }
    world.stop().await;
}
