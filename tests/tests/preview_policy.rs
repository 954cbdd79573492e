//! Admin.PreviewPolicy end to end: users with 0, 1 and 2 registered methods, an admin, a
//! disabled account and a group scope are judged under a proposed policy exactly as a reset
//! would judge them; totals and reasons match, paging with page_size 1 walks every unable user
//! in order, a token only works with its own proposal, a bad proposal gets SetPolicy's refusal,
//! and nothing is stored or announced. On SQLite and (when configured) PostgreSQL.

use sspr_proto::admin::v1::{self as admin, Scope};
use sspr_proto::common::v1::MethodKind;
use sspr_tests::{Backend, World, on_both_backends};
use tonic::Code;

const PASSWORD: &str = "correct horse battery";

on_both_backends! {
    preview_reports_who_could_not_reset => preview_sqlite, preview_postgres;
}

fn proposal(scope: Scope, groups: &[&str], methods_required: u32) -> admin::Policy {
    admin::Policy {
        scope: scope as i32,
        group_ids: groups.iter().map(|g| g.to_string()).collect(),
        methods_required,
        allowed_methods: vec![MethodKind::Email as i32, MethodKind::Sms as i32],
        ..Default::default()
    }
}

async fn preview(
    world: &World,
    policy: &admin::Policy,
    page_size: u32,
    page_token: &str,
) -> Result<admin::PreviewPolicyResponse, tonic::Status> {
    world
        .admin()
        .preview_policy(World::as_admin(admin::PreviewPolicyRequest {
            policy: Some(policy.clone()),
            page_size,
            page_token: page_token.to_owned(),
        }))
        .await
        .map(|r| r.into_inner())
}

fn summary(users: &[admin::PreviewedUser]) -> Vec<(String, String, u32, u32)> {
    users
        .iter()
        .map(|u| {
            (
                u.user_id.clone(),
                u.reason.clone(),
                u.usable_methods,
                u.methods_required,
            )
        })
        .collect()
}

fn row(user: &str, reason: &str, usable: u32, required: u32) -> (String, String, u32, u32) {
    (user.to_owned(), reason.to_owned(), usable, required)
}

async fn preview_reports_who_could_not_reset(backend: Backend) {
    let Some(world) = World::start_or_skip(backend).await else {
        return;
    };
    // Everyone may register under the stored policy.
    world.set_policy(Scope::All, &[], 1).await.expect("policy");
    for (user, groups, is_admin) in [
        ("u0-none", &["staff"][..], false),
        ("u1-one", &["staff"][..], false),
        ("u2-two", &["staff"][..], false),
        ("admin-one", &["staff"][..], true),
        ("outsider", &["guests"][..], false),
        ("zz-disabled", &["staff"][..], false),
    ] {
        world
            .upsert_user(user, PASSWORD, groups, is_admin)
            .await
            .expect("upsert");
    }
    for (user, address) in [
        ("u1-one", "u1@example.com"),
        ("u2-two", "u2a@example.com"),
        ("u2-two", "u2b@example.com"),
        ("admin-one", "admin@example.com"),
        ("outsider", "outsider@example.com"),
    ] {
        world
            .register_email(user, PASSWORD, address)
            .await
            .expect("register");
    }
    world
        .admin()
        .upsert_user(World::as_admin(admin::UpsertUserRequest {
            user_id: "zz-disabled".into(),
            display_name: "Disabled".into(),
            locale: "en".into(),
            group_ids: vec!["staff".into()],
            enabled: Some(false),
            ..Default::default()
        }))
        .await
        .expect("disable");
    let stored = world
        .admin()
        .get_policy(World::as_admin(admin::GetPolicyRequest {}))
        .await
        .expect("get policy")
        .into_inner();
    let policy_events = |w: &World| {
        w.events()
            .iter()
            .filter(|e| e.subject == "sspr.events.v1.policy.changed")
            .count()
    };
    let announced = policy_events(&world);

    // Staff only, one method: admins still need two, the disabled account and the outsider
    // cannot, and the user without methods cannot.
    let staff = proposal(Scope::Selected, &["staff"], 1);
    let all = preview(&world, &staff, 0, "").await.expect("preview");
    assert_eq!(
        (all.users_total, all.users_able, all.users_unable),
        (6, 2, 4)
    );
    assert_eq!(all.next_page_token, "");
    assert_eq!(
        summary(&all.unable),
        [
            row("admin-one", "not_enough_methods", 1, 2),
            row("outsider", "out_of_scope", 1, 1),
            row("u0-none", "not_enough_methods", 0, 1),
            row("zz-disabled", "account_disabled", 0, 1),
        ]
    );
    assert!(all.unable[0].is_admin);
    assert_eq!(all.unable[0].display_name, "User admin-one");

    // One by one: the same totals on every page, every unable user once, in order.
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut first_token = String::new();
    loop {
        let page = preview(&world, &staff, 1, &token).await.expect("page");
        assert_eq!(
            (page.users_total, page.users_able, page.users_unable),
            (6, 2, 4)
        );
        assert_eq!(page.unable.len(), 1);
        seen.extend(summary(&page.unable));
        if page.next_page_token.is_empty() {
            break;
        }
        if first_token.is_empty() {
            first_token = page.next_page_token.clone();
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, summary(&all.unable));

    // Two methods for everyone: the one-method user joins; a token of the other proposal is
    // refused.
    let strict = proposal(Scope::All, &[], 2);
    let strict_all = preview(&world, &strict, 0, "").await.expect("preview");
    assert_eq!(
        (
            strict_all.users_total,
            strict_all.users_able,
            strict_all.users_unable
        ),
        (6, 1, 5)
    );
    assert!(
        summary(&strict_all.unable).contains(&row("outsider", "not_enough_methods", 1, 2)),
        "{:?}",
        strict_all.unable
    );
    let status = preview(&world, &strict, 1, &first_token)
        .await
        .expect_err("a token of another proposal");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("page_token"),
        "{}",
        status.message()
    );

    // A bad proposal gets exactly SetPolicy's refusal.
    let bad = admin::Policy {
        methods_required: 3,
        ..proposal(Scope::All, &[], 1)
    };
    let previewed = preview(&world, &bad, 0, "").await.expect_err("bad policy");
    let set = world
        .admin()
        .set_policy(World::as_admin(admin::SetPolicyRequest {
            policy: Some(bad.clone()),
        }))
        .await
        .expect_err("bad policy");
    assert_eq!(previewed.code(), Code::InvalidArgument);
    assert_eq!(
        (previewed.code(), previewed.message()),
        (set.code(), set.message())
    );

    // Nothing was stored or announced.
    let after = world
        .admin()
        .get_policy(World::as_admin(admin::GetPolicyRequest {}))
        .await
        .expect("get policy")
        .into_inner();
    assert_eq!(after, stored);
    assert_eq!(policy_events(&world), announced);

    world.stop().await;
}
