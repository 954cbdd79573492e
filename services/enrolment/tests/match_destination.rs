//! `match_destination` over real NATS and a real database (SQLite, and PostgreSQL when
//! configured): typed destinations are compared after normalisation, only confirmed methods of
//! the named user count, and bad input is refused.

mod harness;

use harness::{ALICE, Harness};
use sspr_bus::{ErrorCode, RpcError, subjects};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::internal::enrolment::v1::{MatchDestinationRequest, MatchDestinationResponse};

async fn matches(
    h: &Harness,
    user_id: &str,
    method_id: &str,
    candidate: &str,
) -> Result<bool, RpcError> {
    let req = MatchDestinationRequest {
        user_id: user_id.into(),
        method_id: method_id.into(),
        candidate: candidate.into(),
    };
    h.call::<_, MatchDestinationResponse>(subjects::rpc::enrolment::MATCH_DESTINATION, &req)
        .await
        .map(|r| r.matches)
}

#[tokio::test]
async fn typed_destinations_are_normalised_and_compared() {
    for db in Harness::backends().await {
        let h = Harness::start_on(db).await;
        eprintln!("on {}", h.backend());
        let session = h.begin(&ALICE).await.expect("begin").session_id;
        let (email_id, _) = h
            .register(&session, MethodKind::Email, "Alice.Smith@Example.com")
            .await;
        let (phone_id, _) = h
            .register(&session, MethodKind::Sms, "+1 202 555 0143")
            .await;

        for typed in ["alice.smith@example.com", "  ALICE.SMITH@EXAMPLE.COM "] {
            assert!(
                matches(&h, "alice", &email_id, typed).await.expect("call"),
                "{typed}"
            );
        }
        for typed in ["", "alice@example.com", "alice.smith@example.co"] {
            assert!(
                !matches(&h, "alice", &email_id, typed).await.expect("call"),
                "{typed}"
            );
        }
        for typed in ["+12025550143", "+1 (202) 555-0143", "1.202.555.0143"] {
            assert!(
                matches(&h, "alice", &phone_id, typed).await.expect("call"),
                "{typed}"
            );
        }
        assert!(
            !matches(&h, "alice", &phone_id, "+12025550144")
                .await
                .expect("call")
        );

        // Another user's method, an unknown id: not found; bad input: invalid.
        let err = matches(&h, "dave", &phone_id, "+12025550143")
            .await
            .expect_err("other user");
        assert_eq!(err.code, ErrorCode::NotFound);
        let err = matches(&h, "alice", "", "x").await.expect_err("empty id");
        assert_eq!(err.code, ErrorCode::InvalidArgument);
        let err = matches(&h, "alice", &email_id, &"a".repeat(321))
            .await
            .expect_err("too long");
        assert_eq!(err.code, ErrorCode::InvalidArgument);
        h.stop().await;
    }
}

#[tokio::test]
async fn pending_methods_do_not_match() {
    let h = Harness::start().await;
    let session = h.begin(&ALICE).await.expect("begin").session_id;
    let added = h
        .add(&session, MethodKind::Email, "alice@example.com")
        .await
        .expect("add");
    let err = matches(&h, "alice", &added.method_id, "alice@example.com")
        .await
        .expect_err("pending");
    assert_eq!(err.code, ErrorCode::NotFound);
    h.stop().await;
}
