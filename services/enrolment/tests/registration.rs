//! Enrolment over real NATS with a real SQLite database, its peers played by stand-ins.

mod harness;

use chrono::Duration;
use futures::future::join_all;
use harness::{ALICE, BOB, DAVE, ERIN, EXPIRED_CODE, Harness, WRONG_CODE, WRONG_PASSWORD};
use prost::Message;
use sspr_bus::{ErrorCode, subjects};
use sspr_clock::Clock;
use sspr_proto::common::v1::MethodKind;
use sspr_proto::events::v1::{CodePurpose, MethodRegistered};
use sspr_proto::internal::enrolment::v1::{
    BeginRegistrationRequest, GetDestinationRequest, GetDestinationResponse, ListMethodsResponse,
};

const EMAIL: MethodKind = MethodKind::Email;
const SMS: MethodKind = MethodKind::Sms;

async fn get_destination(
    h: &Harness,
    user_id: &str,
    method_id: &str,
) -> Result<GetDestinationResponse, sspr_bus::RpcError> {
    let req = GetDestinationRequest {
        user_id: user_id.into(),
        method_id: method_id.into(),
    };
    h.call(subjects::rpc::enrolment::GET_DESTINATION, &req)
        .await
}

#[tokio::test]
async fn registers_an_email_and_a_phone() {
    for db in Harness::backends().await {
        let h = Harness::start_on(db).await;
        eprintln!("on {}", h.backend());
        full_registration(&h).await;
        h.stop().await;
    }
}

async fn full_registration(h: &Harness) {
    let started = h.clock.now();

    let req = BeginRegistrationRequest {
        user_id: ALICE.user_id.into(),
        password: ALICE.password.into(),
        locale: "fr-CH".into(),
        client_ip: "198.51.100.7".into(),
    };
    let begun: sspr_proto::internal::enrolment::v1::BeginRegistrationResponse = h
        .call(subjects::rpc::enrolment::BEGIN_REGISTRATION, &req)
        .await
        .expect("begin");
    let session = begun.session_id.clone();
    assert!(session.len() >= 43, "session id carries at least 256 bits");
    assert_eq!(begun.methods_required, 2);
    assert_eq!(begun.allowed_kinds, vec![EMAIL as i32, SMS as i32]);
    assert!(begun.registered.is_empty());
    assert!(begun.registration_required);
    let expires = begun
        .expires_at
        .as_ref()
        .and_then(sspr_proto::time::from_timestamp)
        .expect("expires_at");
    assert_eq!(expires, started + Duration::minutes(30));
    {
        let r = h.recorded();
        assert_eq!(r.authenticate.len(), 1);
        assert_eq!(r.authenticate[0].user_id, "alice");
        assert_eq!(r.authenticate[0].password, ALICE.password);
        assert_eq!(r.evaluate.len(), 1);
        assert_eq!(r.evaluate[0].user_id, "alice");
        assert_eq!(r.evaluate[0].group_ids, vec!["staff".to_owned()]);
        assert!(r.evaluate[0].enabled);
        assert!(!r.evaluate[0].is_admin);
    }

    // Email: typed with spaces and an upper-case domain.
    let added = h
        .add(&session, EMAIL, "  Alice.Example@Contoso.COM ")
        .await
        .expect("add email");
    assert!(added.method_id.starts_with("m_"));
    assert!(
        added.expires_at.is_some(),
        "verification's expiry is passed on"
    );
    let flow_id = {
        let r = h.recorded();
        let issued = r.issue_code.last().expect("issue_code called");
        assert_eq!(issued.user_id, "alice");
        assert_eq!(issued.method_id, added.method_id);
        assert_eq!(issued.kind, EMAIL as i32);
        assert_eq!(issued.destination, "Alice.Example@contoso.com");
        assert_eq!(issued.locale, "fr-CH");
        assert_eq!(issued.purpose, CodePurpose::Registration as i32);
        assert!(uuid::Uuid::parse_str(&issued.flow_id).is_ok());
        assert_ne!(issued.flow_id, session);
        issued.flow_id.clone()
    };
    let code = h.code_for(&added.method_id);
    let confirmed = h
        .confirm(&session, &added.method_id, &format!(" {code} "))
        .await
        .expect("confirm email");
    assert!(!confirmed.registration_complete, "one of two methods");
    {
        let r = h.recorded();
        let checked = r.check_code.last().expect("check_code called");
        assert_eq!(checked.code, code, "the typed code is forwarded, trimmed");
        assert_eq!(checked.method_id, added.method_id);
        assert_eq!(checked.flow_id, flow_id);
        assert_eq!(checked.purpose, CodePurpose::Registration as i32);
    }

    // Phone, in local formatting.
    let (phone_id, complete) = h.register(&session, SMS, "+41 (79) 123-45.67").await;
    assert!(complete, "two of two methods");
    assert_eq!(
        h.recorded()
            .issue_code
            .last()
            .map(|r| r.destination.clone())
            .as_deref(),
        Some("+41791234567")
    );

    // Listed masked, oldest first.
    let listed: ListMethodsResponse = h.list("alice").await.expect("list");
    let shown: Vec<(String, i32, String)> = listed
        .methods
        .iter()
        .map(|m| (m.method_id.clone(), m.kind, m.masked_destination.clone()))
        .collect();
    assert_eq!(
        shown,
        vec![
            (
                added.method_id.clone(),
                EMAIL as i32,
                "A•••@c•••.com".to_owned()
            ),
            (phone_id.clone(), SMS as i32, "+•• •••• ••67".to_owned()),
        ]
    );

    // Verification can address both.
    let email = get_destination(h, "alice", &added.method_id)
        .await
        .expect("email destination");
    assert_eq!(
        (email.kind, email.destination.as_str()),
        (EMAIL as i32, "Alice.Example@contoso.com")
    );
    let phone = get_destination(h, "alice", &phone_id)
        .await
        .expect("phone destination");
    assert_eq!(
        (phone.kind, phone.destination.as_str()),
        (SMS as i32, "+41791234567")
    );

    // A new registration session shows what is registered and asks for nothing more.
    let again = h.begin(&ALICE).await.expect("begin again");
    assert_eq!(again.registered.len(), 2);
    assert!(!again.registration_required);
    assert_ne!(again.session_id, session);

    // Events: one method.registered per confirmation, masked, tied to the public flow id.
    let events = h.events(subjects::events::METHOD_REGISTERED, 2).await;
    let registered: Vec<MethodRegistered> = events
        .iter()
        .filter(|m| m.subject.as_str() == subjects::events::METHOD_REGISTERED)
        .map(|m| MethodRegistered::decode(m.payload.clone()).expect("decodes"))
        .collect();
    assert_eq!(registered.len(), 2);
    assert_eq!(registered[0].method_id, added.method_id);
    assert_eq!(registered[0].kind, EMAIL as i32);
    assert_eq!(registered[0].masked_destination, "A•••@c•••.com");
    assert_eq!(registered[0].methods_registered, 1);
    assert_eq!(registered[1].method_id, phone_id);
    assert_eq!(registered[1].masked_destination, "+•• •••• ••67");
    assert_eq!(registered[1].methods_registered, 2);
    for (event, raw) in registered.iter().zip(
        events
            .iter()
            .filter(|m| m.subject.as_str() == subjects::events::METHOD_REGISTERED),
    ) {
        let meta = event.meta.clone().expect("meta");
        assert_eq!(meta.user_id, "alice");
        assert_eq!(meta.flow_id, flow_id);
        assert_eq!(meta.source, "enrolment");
        assert!(uuid::Uuid::parse_str(&meta.event_id).is_ok());
        assert_eq!(
            raw.headers
                .get("Nats-Msg-Id")
                .map(|v| v.as_str().to_owned()),
            Some(meta.event_id.clone())
        );
    }

    // No event anywhere carries a session token, a code or a full destination.
    let secrets = [
        session.as_str(),
        again.session_id.as_str(),
        code.as_str(),
        "Alice.Example",
        "contoso",
        "791234567",
    ];
    for m in &events {
        let headers = format!("{:?}", m.headers);
        for secret in secrets {
            let bytes = secret.as_bytes();
            assert!(
                !m.payload.windows(bytes.len()).any(|w| w == bytes),
                "event {} carries a secret in its payload",
                m.subject
            );
            assert!(
                !headers.contains(secret),
                "event {} carries a secret in its headers",
                m.subject
            );
        }
    }
}

#[tokio::test]
async fn wrong_password_and_unknown_user_are_unauthenticated() {
    let h = Harness::start().await;
    let err = h
        .begin_with("alice", "not the password")
        .await
        .expect_err("wrong password");
    assert_eq!(err.code, ErrorCode::Unauthenticated);
    assert_eq!(
        err.message, WRONG_PASSWORD,
        "the directory's answer passes through"
    );
    let unknown = h
        .begin_with("mallory", "whatever")
        .await
        .expect_err("unknown user");
    assert_eq!(unknown, err);
    assert!(
        h.recorded().evaluate.is_empty(),
        "policy is not asked about unauthenticated users"
    );
    h.stop().await;
}

#[tokio::test]
async fn bad_begin_requests_are_invalid_arguments() {
    let h = Harness::start().await;
    for (user_id, password) in [
        ("", "pw"),
        (&*"u".repeat(129), "pw"),
        ("alice", ""),
        ("alice", &*"p".repeat(5000)),
    ] {
        let err = h.begin_with(user_id, password).await.expect_err("refused");
        assert_eq!(err.code, ErrorCode::InvalidArgument, "{user_id:?}");
    }
    let bad_locale = BeginRegistrationRequest {
        user_id: "alice".into(),
        password: ALICE.password.into(),
        locale: "<script>".into(),
        client_ip: String::new(),
    };
    let err = h
        .call::<_, sspr_proto::internal::enrolment::v1::BeginRegistrationResponse>(
            subjects::rpc::enrolment::BEGIN_REGISTRATION,
            &bad_locale,
        )
        .await
        .expect_err("bad locale");
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    assert!(
        h.recorded().authenticate.is_empty(),
        "bad input never reaches the directory"
    );
    h.stop().await;
}

#[tokio::test]
async fn user_out_of_scope_is_refused() {
    let h = Harness::start().await;
    let err = h.begin(&BOB).await.expect_err("out of scope");
    assert_eq!(err.code, ErrorCode::FailedPrecondition);
    assert_eq!(
        err.message,
        "self-service password reset is not enabled for this account"
    );
    assert_eq!(h.recorded().evaluate.len(), 1);
    h.stop().await;
}

#[tokio::test]
async fn unknown_and_expired_sessions_are_unauthenticated() {
    let h = Harness::start().await;
    let forged = "A".repeat(43);
    for session in ["", "garbage", forged.as_str()] {
        let err = h
            .add(session, EMAIL, "alice@contoso.com")
            .await
            .expect_err("unknown session");
        assert_eq!(err.code, ErrorCode::Unauthenticated);
        assert_eq!(err.message, "unknown or expired session");
        let err = h
            .confirm(session, "m_0190f0e4c8a87e3a9f0c2b1d4e5f6a7b", "12345678")
            .await
            .expect_err("unknown");
        assert_eq!(err.code, ErrorCode::Unauthenticated);
    }

    let begun = h.begin(&ALICE).await.expect("begin");
    let added = h
        .add(&begun.session_id, EMAIL, "alice@contoso.com")
        .await
        .expect("add while live");
    h.clock.advance(Duration::minutes(30));
    let err = h
        .add(&begun.session_id, SMS, "+41791234567")
        .await
        .expect_err("expired");
    assert_eq!(
        (err.code, err.message.as_str()),
        (ErrorCode::Unauthenticated, "unknown or expired session")
    );
    let code = h.code_for(&added.method_id);
    let err = h
        .confirm(&begun.session_id, &added.method_id, &code)
        .await
        .expect_err("expired");
    assert_eq!(err.code, ErrorCode::Unauthenticated);
    assert_eq!(h.recorded().issue_code.len(), 1);
    assert!(h.recorded().check_code.is_empty());
    h.stop().await;
}

#[tokio::test]
async fn invalid_destinations_are_refused_with_a_reason() {
    let h = Harness::start().await;
    let session = h.begin(&ALICE).await.expect("begin").session_id;
    let cases: &[(MethodKind, &str, &str)] = &[
        (EMAIL, "", "required"),
        (EMAIL, "alice", "exactly one '@'"),
        (EMAIL, "alice@@contoso.com", "exactly one '@'"),
        (EMAIL, "@contoso.com", "before the '@'"),
        (EMAIL, "alice@localhost", "dot"),
        (EMAIL, "alice smith@contoso.com", "spaces"),
        (EMAIL, &*format!("{}@contoso.com", "a".repeat(65)), "64"),
        (
            EMAIL,
            &*format!("a@{}.com", vec!["b".repeat(60); 5].join(".")),
            "254",
        ),
        (SMS, "", "required"),
        (SMS, "079 123 45 67", "international format"),
        (SMS, "+41 79 CALL ME", "digits"),
        (SMS, "+1234567", "8 to 15 digits"),
        (SMS, "+1234567890123456", "8 to 15 digits"),
        (SMS, "alice@contoso.com", "international format"),
    ];
    for (kind, destination, reason) in cases {
        let err = h
            .add(&session, *kind, destination)
            .await
            .expect_err("refused");
        assert_eq!(err.code, ErrorCode::InvalidArgument, "{destination:?}");
        assert!(
            err.message.contains(reason),
            "{destination:?}: {:?} should mention {reason:?}",
            err.message
        );
        if destination.len() > 3 {
            assert!(
                !err.message.contains(destination),
                "the reason must not echo the destination"
            );
        }
    }
    let err = h
        .add(&session, MethodKind::Unspecified, "alice@contoso.com")
        .await
        .expect_err("no kind");
    assert_eq!(err.code, ErrorCode::InvalidArgument);

    // A kind policy does not allow for this user.
    let erin = h.begin(&ERIN).await.expect("begin erin");
    assert_eq!(erin.allowed_kinds, vec![EMAIL as i32]);
    assert_eq!(erin.methods_required, 1);
    let err = h
        .add(&erin.session_id, SMS, "+41791234567")
        .await
        .expect_err("sms not allowed");
    assert_eq!(err.code, ErrorCode::FailedPrecondition);
    assert_eq!(
        err.message,
        "sms is not an allowed contact method for this account"
    );

    assert!(
        h.recorded().issue_code.is_empty(),
        "no code is issued for refused input"
    );
    assert!(h.list("alice").await.expect("list").methods.is_empty());
    h.stop().await;
}

#[tokio::test]
async fn duplicates_and_pending_reuse() {
    let h = Harness::start().await;
    let session = h.begin(&ALICE).await.expect("begin").session_id;
    let (email_id, _) = h.register(&session, EMAIL, "alice@contoso.com").await;

    // The same address again, spelled with an upper-case domain: the same method, re-confirmed.
    let again = h
        .add(&session, EMAIL, "alice@CONTOSO.com")
        .await
        .expect("reconfirmation code");
    assert_eq!(again.method_id, email_id);
    // Another user may register the same address.
    let dave = h.begin(&DAVE).await.expect("begin dave").session_id;
    h.register(&dave, EMAIL, "alice@contoso.com").await;

    // A pending destination added twice is the same method with a new code.
    let first = h
        .add(&session, SMS, "+41791234567")
        .await
        .expect("add phone");
    let first_code = h.code_for(&first.method_id);
    let second = h
        .add(&session, SMS, "+41 79 123 45 67")
        .await
        .expect("add phone again");
    assert_eq!(second.method_id, first.method_id);
    let second_code = h.code_for(&second.method_id);
    assert_ne!(first_code, second_code);
    assert_eq!(
        h.recorded()
            .issue_code
            .iter()
            .filter(|r| r.method_id == first.method_id)
            .count(),
        2
    );
    let err = h
        .confirm(&session, &first.method_id, &first_code)
        .await
        .expect_err("voided code");
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    let done = h
        .confirm(&session, &first.method_id, &second_code)
        .await
        .expect("new code works");
    assert!(done.registration_complete);

    let again = h
        .add(&session, SMS, "+41791234567")
        .await
        .expect("now confirmed: a reconfirmation code");
    assert_eq!(again.method_id, first.method_id);
    let listed = h.list("alice").await.expect("list");
    assert_eq!(listed.methods.len(), 2);
    assert_eq!(listed.methods[0].method_id, email_id);
    h.stop().await;
}

#[tokio::test]
async fn code_errors_pass_through_and_method_checks() {
    let h = Harness::start().await;
    let session = h.begin(&ALICE).await.expect("begin").session_id;
    let added = h
        .add(&session, EMAIL, "alice@contoso.com")
        .await
        .expect("add");

    let err = h
        .confirm(&session, &added.method_id, "99999999")
        .await
        .expect_err("wrong code");
    assert_eq!(
        (err.code, err.message.as_str()),
        (ErrorCode::InvalidArgument, WRONG_CODE)
    );
    h.expire_code(&added.method_id);
    let code = h.code_for(&added.method_id);
    let err = h
        .confirm(&session, &added.method_id, &code)
        .await
        .expect_err("expired code");
    assert_eq!(
        (err.code, err.message.as_str()),
        (ErrorCode::FailedPrecondition, EXPIRED_CODE)
    );
    assert!(
        h.list("alice").await.expect("list").methods.is_empty(),
        "still pending"
    );
    let err = get_destination(&h, "alice", &added.method_id)
        .await
        .expect_err("pending is not addressable");
    assert_eq!(err.code, ErrorCode::NotFound);

    // Bad method ids and codes never reach verification.
    let checks_before = h.recorded().check_code.len();
    let err = h
        .confirm(&session, "", "12345678")
        .await
        .expect_err("empty id");
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    for unknown in ["m_nope", "m_0190f0e4c8a87e3a9f0c2b1d4e5f6a7b"] {
        let err = h
            .confirm(&session, unknown, "12345678")
            .await
            .expect_err("unknown method");
        assert_eq!(
            (err.code, err.message.as_str()),
            (ErrorCode::NotFound, "unknown method")
        );
    }
    let err = h
        .confirm(&session, &added.method_id, "  ")
        .await
        .expect_err("empty code");
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    let err = h
        .confirm(&session, &added.method_id, &"1".repeat(65))
        .await
        .expect_err("long code");
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    // Someone else's method is unknown to this session.
    let dave = h.begin(&DAVE).await.expect("begin dave").session_id;
    let err = h
        .confirm(&dave, &added.method_id, &code)
        .await
        .expect_err("not dave's");
    assert_eq!(
        (err.code, err.message.as_str()),
        (ErrorCode::NotFound, "unknown method")
    );
    assert_eq!(h.recorded().check_code.len(), checks_before);

    // A new code, then success, then confirming again is refused.
    h.add(&session, EMAIL, "alice@contoso.com")
        .await
        .expect("resend");
    let code = h.code_for(&added.method_id);
    let ok = h
        .confirm(&session, &added.method_id, &code)
        .await
        .expect("confirm");
    assert!(!ok.registration_complete);
    let err = h
        .confirm(&session, &added.method_id, &code)
        .await
        .expect_err("the code is used up");
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    h.stop().await;
}

#[tokio::test]
async fn at_most_ten_methods_per_user() {
    let h = Harness::start().await;
    // The SMS added in the second session is listed for reset at once.
    h.recorded().limits = Some(sspr_proto::admin::v1::Limits {
        new_method_cooldown_hours: Some(0),
        ..Default::default()
    });
    let session = h.begin(&ALICE).await.expect("begin").session_id;
    let (first, _) = h.register(&session, EMAIL, "alice0@contoso.com").await;
    for i in 1..10 {
        h.add(&session, EMAIL, &format!("alice{i}@contoso.com"))
            .await
            .expect("under the limit");
    }
    let err = h
        .add(&session, EMAIL, "alice10@contoso.com")
        .await
        .expect_err("over the limit");
    assert_eq!(err.code, ErrorCode::ResourceExhausted);
    // A pending one can still get a new code.
    h.add(&session, EMAIL, "alice9@contoso.com")
        .await
        .expect("resend to a pending method");

    // Abandoned pending methods stop counting once no code for them can be valid.
    h.clock.advance(Duration::minutes(31));
    let session = h.begin(&ALICE).await.expect("new session").session_id;
    h.step_up(&session, &first).await.expect("step-up");
    let (_, complete) = h.register(&session, SMS, "+41791234567").await;
    assert!(complete);
    assert_eq!(h.list("alice").await.expect("list").methods.len(), 2);
    h.stop().await;
}

#[tokio::test]
async fn list_methods_and_get_destination_checks() {
    let h = Harness::start().await;
    assert!(
        h.list("nobody")
            .await
            .expect("unknown user")
            .methods
            .is_empty()
    );
    for bad in ["", &*"u".repeat(129)] {
        let err = h.list(bad).await.expect_err("bad user id");
        assert_eq!(err.code, ErrorCode::InvalidArgument);
    }
    let session = h.begin(&ALICE).await.expect("begin").session_id;
    let (phone_id, _) = h.register(&session, SMS, "+12025550143").await;
    let listed = h.list("alice").await.expect("list");
    assert_eq!(listed.methods.len(), 1);
    assert_eq!(listed.methods[0].masked_destination, "+•• •••• ••43");

    let found = get_destination(&h, "alice", &phone_id)
        .await
        .expect("found");
    assert_eq!(found.destination, "+12025550143");
    for (user, method) in [
        ("dave", phone_id.as_str()),
        ("alice", "m_0190f0e4c8a87e3a9f0c2b1d4e5f6a7b"),
        ("alice", "x"),
    ] {
        let err = get_destination(&h, user, method)
            .await
            .expect_err("not found");
        assert_eq!(err.code, ErrorCode::NotFound, "{user} {method}");
    }
    let err = get_destination(&h, "alice", "")
        .await
        .expect_err("empty method id");
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_keep_one_method_per_destination() {
    for db in Harness::backends().await {
        let h = Harness::start_on(db).await;
        eprintln!("on {}", h.backend());
        let backend = h.backend();
        let session = h.begin(&ALICE).await.expect("begin").session_id;

        // The same destination added many times at once is one pending method.
        let adds = join_all((0..8).map(|_| h.add(&session, SMS, "+41791234567"))).await;
        let ids: Vec<String> = adds
            .into_iter()
            .map(|r| r.expect("every add succeeds").method_id)
            .collect();
        assert!(
            ids.iter().all(|id| *id == ids[0]),
            "{backend}: one method for one destination: {ids:?}"
        );

        // Different destinations at once all land, up to the limit.
        let adds = join_all((0..9).map(|i| {
            let destination = format!("alice{i}@contoso.com");
            let h = &h;
            let session = &session;
            async move { h.add(session, EMAIL, &destination).await }
        }))
        .await;
        let ok = adds.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 9, "{backend}: {adds:?}");

        // Racing confirmations of one method: exactly one wins, one event.
        h.recorded().reusable_codes = true;
        let code = h.code_for(&ids[0]);
        let confirms = join_all((0..6).map(|_| h.confirm(&session, &ids[0], &code))).await;
        let won = confirms.iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "{backend}: {confirms:?}");
        for lost in confirms.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(
                lost.code,
                ErrorCode::FailedPrecondition,
                "{backend}: {lost:?}"
            );
        }
        h.events(subjects::events::METHOD_REGISTERED, 1).await;
        // Give a wrongly duplicated event time to show up before counting.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let events = h.events(subjects::events::METHOD_REGISTERED, 1).await;
        let registered = events
            .iter()
            .filter(|m| m.subject.as_str() == subjects::events::METHOD_REGISTERED)
            .count();
        assert_eq!(
            registered, 1,
            "{backend}: one method.registered per confirmation"
        );
        assert_eq!(h.list("alice").await.expect("list").methods.len(), 1);
        h.stop().await;
    }
}

#[tokio::test]
async fn a_confirmed_method_is_reconfirmed_only_after_a_new_code_was_requested() {
    for db in Harness::backends().await {
        let h = Harness::start_on(db).await;
        let backend = h.backend();
        // The verifier accepts a code again and again here: only the store can refuse.
        h.recorded().reusable_codes = true;
        let session = h.begin(&ALICE).await.expect("begin").session_id;
        let (id, _) = h.register(&session, SMS, "+41791234567").await;
        h.events(subjects::events::METHOD_REGISTERED, 1).await;

        let code = h.code_for(&id);
        let err = h
            .confirm(&session, &id, &code)
            .await
            .expect_err("no re-confirmation was requested");
        assert_eq!(err.code, ErrorCode::FailedPrecondition, "{backend}");

        // AddMethod with the same destination asks for a re-confirmation: one confirmation
        // uses it, the next one finds nothing requested.
        let again = h.add(&session, SMS, "+41791234567").await.expect("re-add");
        assert_eq!(again.method_id, id, "{backend}");
        let code = h.code_for(&id);
        h.confirm(&session, &id, &code).await.expect("reconfirm");
        let err = h
            .confirm(&session, &id, &code)
            .await
            .expect_err("the request was used");
        assert_eq!(err.code, ErrorCode::FailedPrecondition, "{backend}");
        h.events(subjects::events::METHOD_REGISTERED, 2).await;
        h.stop().await;
    }
}
