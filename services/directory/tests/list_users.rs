//! `list_users` (the policy preview's view of the directory) on both backends: every account
//! exactly once, sorted by user id, in pages chained by `next_after_user_id`, with groups and
//! flags; bad page sizes and cursors are refused.

use std::sync::Arc;

use sspr_bus::{BusError, ErrorCode, RpcError};
use sspr_directory::SERVICE;
use sspr_directory::adapters::migration::Migrator;
use sspr_directory::adapters::store::SqlUserStore;
use sspr_directory::domain::ids::UserId;
use sspr_directory::domain::password::Password;
use sspr_directory::handlers::DirectoryHandlers;
use sspr_directory::hashing::Hasher;
use sspr_directory::ports::{PasswordRules, PasswordVerdict};
use sspr_proto::internal::directory::v1::{ListUsersRequest, UpsertUserRequest};
use sspr_storage::outbox::OutboxSignal;
use sspr_testkit::TestDb;

/// No password is set in this test; the rules are never asked.
struct NoPasswords;

#[async_trait::async_trait]
impl PasswordRules for NoPasswords {
    async fn check(&self, _: &Password, _: &UserId, _: &str) -> Result<PasswordVerdict, BusError> {
        Err(BusError::Rpc(RpcError::internal()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_users_pages_through_every_account_in_order() {
    for db in TestDb::all().await.expect("test databases") {
        let backend = db.backend();
        let conn = sspr_storage::connect(SERVICE, &db.settings())
            .await
            .expect("database");
        sspr_storage::run_migrations::<Migrator>(SERVICE, &conn)
            .await
            .expect("migrations");
        let handlers = DirectoryHandlers::new(
            Arc::new(SqlUserStore::new(conn, OutboxSignal::default())),
            Arc::new(NoPasswords),
            Hasher::per_core(),
            sspr_clock::system(),
        );
        // Created out of order.
        let ids = ["carol", "alice", "erin", "bob", "dave"];
        for (i, id) in ids.iter().enumerate() {
            handlers
                .upsert_user(UpsertUserRequest {
                    user_id: (*id).into(),
                    display_name: format!("User {id}"),
                    locale: "en".into(),
                    group_ids: vec!["staff".into()],
                    is_admin: i == 0,
                    enabled: Some(i != 1),
                    ..Default::default()
                })
                .await
                .expect("upsert");
        }

        let mut seen = Vec::new();
        let mut after = String::new();
        let mut pages = 0;
        loop {
            let page = handlers
                .list_users(ListUsersRequest {
                    page_size: 2,
                    after_user_id: after.clone(),
                })
                .await
                .expect("list_users");
            pages += 1;
            assert!(page.users.len() <= 2, "{backend}");
            seen.extend(page.users.iter().cloned());
            if page.next_after_user_id.is_empty() {
                break;
            }
            assert_eq!(
                Some(&page.next_after_user_id),
                page.users.last().map(|u| &u.user_id),
                "{backend}"
            );
            after = page.next_after_user_id;
        }
        assert_eq!(pages, 3, "{backend}");
        let listed: Vec<&str> = seen.iter().map(|u| u.user_id.as_str()).collect();
        assert_eq!(
            listed,
            ["alice", "bob", "carol", "dave", "erin"],
            "{backend}"
        );
        let carol = &seen[2];
        assert!(carol.is_admin && carol.enabled, "{backend}");
        assert_eq!(carol.group_ids, ["staff"], "{backend}");
        assert!(!seen[0].enabled, "{backend}: alice was created disabled");

        // The whole directory in one default page.
        let all = handlers
            .list_users(ListUsersRequest::default())
            .await
            .expect("list_users");
        assert_eq!(all.users.len(), 5, "{backend}");
        assert_eq!(all.next_after_user_id, "", "{backend}");

        for bad in [
            ListUsersRequest {
                page_size: 1001,
                ..Default::default()
            },
            ListUsersRequest {
                page_size: 1,
                after_user_id: "\u{0}".into(),
            },
        ] {
            let err = RpcError::from(handlers.list_users(bad).await.expect_err("refused"));
            assert_eq!(err.code, ErrorCode::InvalidArgument, "{backend}");
        }
        db.cleanup().await.expect("cleanup");
    }
}
