//! The four kinds of user id an enumeration attacker probes, set up on a running [`World`]:
//! a real user who may reset, an id that does not exist, a user out of the policy's scope and
//! a disabled user. The last three must get answers (and work) indistinguishable from the
//! first.

use anyhow::Context;
use sspr_proto::admin::v1::{self as admin, Scope};
use sspr_proto::common::v1::MethodKind;

use crate::World;

/// Password of every user in the population.
pub const PASSWORD: &str = "correct horse battery";

/// One probed user id and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub label: &'static str,
    pub user_id: &'static str,
    /// The mailbox of its registered email method, if it has one.
    pub email: Option<&'static str>,
}

pub const REAL: Probe = Probe {
    label: "real",
    user_id: "alice",
    email: Some("alice@example.com"),
};
pub const UNKNOWN: Probe = Probe {
    label: "unknown",
    user_id: "nobody-at-all",
    email: None,
};
pub const OUT_OF_SCOPE: Probe = Probe {
    label: "out of scope",
    user_id: "olivia",
    email: Some("olivia@example.com"),
};
pub const DISABLED: Probe = Probe {
    label: "disabled",
    user_id: "dave",
    email: Some("dave@example.com"),
};

/// Every probe, the real user first.
pub const PROBES: [Probe; 4] = [REAL, UNKNOWN, OUT_OF_SCOPE, DISABLED];

/// The policy of the population: members of `staff` may reset with one email or SMS method,
/// under `limits`.
pub async fn set_policy(world: &World, limits: Option<admin::Limits>) -> anyhow::Result<()> {
    world
        .admin()
        .set_policy(World::as_admin(admin::SetPolicyRequest {
            policy: Some(admin::Policy {
                scope: Scope::Selected as i32,
                group_ids: vec!["staff".to_owned()],
                methods_required: 1,
                allowed_methods: vec![MethodKind::Email as i32, MethodKind::Sms as i32],
                limits,
                ..Default::default()
            }),
        }))
        .await
        .context("set policy")?;
    Ok(())
}

/// Creates the population: every user with a password and, while still in scope and enabled,
/// a registered email; then `olivia` leaves `staff` and `dave` is disabled.
pub async fn populate(world: &World, limits: Option<admin::Limits>) -> anyhow::Result<()> {
    set_policy(world, limits).await?;
    for probe in [REAL, OUT_OF_SCOPE, DISABLED] {
        world
            .upsert_user(probe.user_id, PASSWORD, &["staff"], false)
            .await
            .with_context(|| format!("create {}", probe.user_id))?;
        if let Some(email) = probe.email {
            world
                .register_email(probe.user_id, PASSWORD, email)
                .await
                .with_context(|| format!("register {email}"))?;
        }
    }
    world
        .upsert_user(OUT_OF_SCOPE.user_id, "", &[], false)
        .await
        .context("move olivia out of scope")?;
    world
        .admin()
        .upsert_user(World::as_admin(admin::UpsertUserRequest {
            user_id: DISABLED.user_id.to_owned(),
            display_name: format!("User {}", DISABLED.user_id),
            locale: "en".to_owned(),
            group_ids: vec!["staff".to_owned()],
            enabled: Some(false),
            ..Default::default()
        }))
        .await
        .context("disable dave")?;
    Ok(())
}

/// Limits high enough that probing many times never trips a throttle (for the work and
/// timing measurements, which are about the work done, not about the throttles).
pub fn generous_limits() -> admin::Limits {
    admin::Limits {
        phone_sends_per_hour: Some(100),
        email_sends_per_10_minutes: Some(100),
        failed_verifications_per_day: Some(100),
        destination_sends_per_hour: Some(1000),
        ip_start_reset_per_minute: Some(10_000),
        ip_send_code_per_minute: Some(10_000),
        user_sign_in_checks_per_hour: Some(1000),
        ip_sign_in_checks_per_minute: Some(10_000),
        resend_after_seconds: Some(0),
        ..Default::default()
    }
}
