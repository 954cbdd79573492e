//! Registration status (GetStatus, re-confirmation after the policy's days) and users listing
//! and removing their own methods, against the real enrolment service with stand-in peers.

mod harness;

use chrono::Duration;
use harness::{ALICE, BOB, ERIN, Harness, WRONG_PASSWORD};
use prost::Message;
use sspr_bus::{ErrorCode, subjects};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::events::v1::MethodRemoved;

const EMAIL: MethodKind = MethodKind::Email;
const SMS: MethodKind = MethodKind::Sms;

#[tokio::test]
async fn status_and_reconfirmation_after_the_configured_days() {
    for db in Harness::backends().await {
        let h = Harness::start_on(db).await;
        let backend = h.backend();
        h.recorded().reconfirm_after_days = 30;

        let s = h.status("alice", ALICE.password).await.expect("status");
        assert!(s.eligible && s.registration_required && !s.reconfirm_required);
        assert_eq!((s.methods_required, s.methods_registered), (2, 0));

        let session = h.begin(&ALICE).await.expect("begin").session_id;
        let (email_id, _) = h.register(&session, EMAIL, "alice@contoso.com").await;
        h.register(&session, SMS, "+41791234567").await;
        let s = h.status("alice", ALICE.password).await.expect("status");
        assert!(
            !s.registration_required && !s.reconfirm_required,
            "{backend}"
        );
        assert_eq!(s.methods_registered, 2);

        h.clock.advance(Duration::days(30));
        let s = h.status("alice", ALICE.password).await.expect("status");
        assert!(s.registration_required && s.reconfirm_required, "{backend}");
        let begun = h.begin(&ALICE).await.expect("begin");
        assert!(begun.registration_required && begun.reconfirm_required);

        // Re-confirming one method: a code to the confirmed destination, then checked.
        let again = h
            .add(&begun.session_id, EMAIL, "alice@contoso.com")
            .await
            .expect("reconfirmation code");
        assert_eq!(again.method_id, email_id);
        let code = h.code_for(&email_id);
        let done = h
            .confirm(&begun.session_id, &email_id, &code)
            .await
            .expect("reconfirmed");
        assert!(done.registration_complete);
        let s = h.status("alice", ALICE.password).await.expect("status");
        assert!(
            !s.registration_required && !s.reconfirm_required,
            "{backend}"
        );

        // 0 days means never.
        h.recorded().reconfirm_after_days = 0;
        h.clock.advance(Duration::days(5000));
        let s = h.status("alice", ALICE.password).await.expect("status");
        assert!(!s.reconfirm_required);
        h.stop().await;
    }
}

#[tokio::test]
async fn status_needs_the_password_and_says_when_out_of_scope() {
    let h = Harness::start().await;
    let err = h
        .status("alice", "wrong")
        .await
        .expect_err("wrong password");
    assert_eq!(
        (err.code, err.message.as_str()),
        (ErrorCode::Unauthenticated, WRONG_PASSWORD)
    );
    let err = h.status("alice", "").await.expect_err("no password");
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    let bob = h.status("bob", BOB.password).await.expect("status");
    assert!(!bob.eligible && !bob.registration_required);
    let erin = h.status("erin", ERIN.password).await.expect("status");
    assert!(erin.eligible && erin.registration_required);
    assert_eq!(erin.methods_required, 1);
    h.stop().await;
}

#[tokio::test]
async fn list_and_remove_own_methods_keeps_the_required_count() {
    for db in Harness::backends().await {
        let h = Harness::start_on(db).await;
        let backend = h.backend();
        let session = h.begin(&ALICE).await.expect("begin").session_id;
        let (email_id, _) = h.register(&session, EMAIL, "alice@contoso.com").await;
        let (sms_id, _) = h.register(&session, SMS, "+41791234567").await;
        let (extra_id, _) = h.register(&session, EMAIL, "alice2@contoso.com").await;
        // A pending method is not listed and cannot be removed.
        let pending = h
            .add(&session, EMAIL, "alice3@contoso.com")
            .await
            .expect("pending");

        let listed = h.list_own(&session).await.expect("list");
        let ids: Vec<&str> = listed
            .methods
            .iter()
            .map(|m| m.method_id.as_str())
            .collect();
        assert_eq!(ids, [&email_id, &sms_id, &extra_id], "{backend}");
        assert_eq!(listed.methods[0].masked_destination, "a•••@c•••.com");

        let err = h
            .remove(&session, &pending.method_id)
            .await
            .expect_err("pending");
        assert_eq!(err.code, ErrorCode::NotFound);
        h.remove(&session, &extra_id).await.expect("third may go");
        let err = h.remove(&session, &sms_id).await.expect_err("below two");
        assert_eq!(
            (err.code, err.message.as_str()),
            (
                ErrorCode::FailedPrecondition,
                "at least 2 contact methods must stay registered"
            ),
            "{backend}"
        );
        assert_eq!(h.list_own(&session).await.expect("list").methods.len(), 2);

        // Another user's session cannot touch alice's methods; a bad session is refused.
        let erin = h.begin(&ERIN).await.expect("erin").session_id;
        let err = h.remove(&erin, &email_id).await.expect_err("not erin's");
        assert_eq!(err.code, ErrorCode::NotFound);
        let err = h.list_own("nope").await.expect_err("bad session");
        assert_eq!(err.code, ErrorCode::Unauthenticated);

        let events = h.events(subjects::events::METHOD_REMOVED, 1).await;
        let removed: Vec<MethodRemoved> = events
            .iter()
            .filter(|m| m.subject.as_str() == subjects::events::METHOD_REMOVED)
            .map(|m| MethodRemoved::decode(m.payload.as_ref()).expect("decodes"))
            .collect();
        assert_eq!(removed.len(), 1, "{backend}");
        assert_eq!(removed[0].method_id, extra_id);
        assert_eq!(removed[0].methods_registered, 2);
        assert_eq!(removed[0].masked_destination, "a•••@c•••.com");
        let meta = removed[0].meta.clone().unwrap_or_default();
        assert_eq!(
            (meta.user_id.as_str(), meta.source.as_str()),
            ("alice", "enrolment")
        );
        h.stop().await;
    }
}
