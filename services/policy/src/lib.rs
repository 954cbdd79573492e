//! sspr-policy: owns the SSPR policy (who may reset, how many methods, which kinds) and the
//! password rules, and answers on `sspr.rpc.policy.*`:
//!
//! - `get_policy` / `set_policy`: the policy; every change gets the next version and emits
//!   `sspr.events.v1.policy.changed` through the outbox in the same transaction.
//! - `evaluate`: whether a user may reset and with how many methods (admins always need two).
//! - `check_password`: the password rules (length, Entra-style banned passwords, names) under
//!   the stored password section, plus a strength estimate; the candidate is never stored or
//!   logged.
//! - `preview`: which users could not reset under a proposed policy (validated as `set_policy`
//!   does, never stored or announced), from every directory user (`directory.list_users`) and
//!   their confirmed method kinds (`enrolment.list_method_kinds`), judged by the same
//!   evaluation as `evaluate`; paged with a token bound to the proposed policy.
//! - `get_password_policy` / `set_password_policy`: the password section (minimum length,
//!   custom banned terms, organisation name, history length); every change gets the next
//!   version and emits `policy.changed` like `set_policy`.
//!
//! Layout: [`domain`] holds the pure rules, [`ports`] the store trait, [`adapters`] its sea-orm
//! implementation and migrations, [`handlers`] the NATS endpoints.

pub mod adapters;
pub mod domain;
pub mod error;
pub mod handlers;
pub mod ports;

use std::sync::Arc;

use anyhow::Context;
use domain::limits::OrganisationPrefixes;
use sspr_runtime::{ConfigError, Emitter, ServiceContext};
use tokio_util::sync::CancellationToken;

/// Short name: database name, NATS service `sspr-policy`.
pub const SERVICE: &str = "policy";

/// The setting naming the organisation's own phone prefixes.
pub const ORGANISATION_PHONE_PREFIXES: &str = "SSPR_ORGANISATION_PHONE_PREFIXES";

/// Settings of the policy service beyond the common ones.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `SSPR_ORGANISATION_PHONE_PREFIXES` (comma-separated E.164 prefixes such as `+44,+353`):
    /// where SMS and voice codes may go when the policy's `limits.phone_allowed_prefixes` is
    /// empty. Empty: any country (a warning is logged at start).
    pub organisation_phone_prefixes: OrganisationPrefixes,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        let raw = std::env::var(ORGANISATION_PHONE_PREFIXES).unwrap_or_default();
        let organisation_phone_prefixes = OrganisationPrefixes::parse(&raw)
            .map_err(|problem| ConfigError::new(ORGANISATION_PHONE_PREFIXES, problem))?;
        Ok(Config {
            organisation_phone_prefixes,
        })
    }
}

/// Warns once when neither the stored policy nor the setting restricts where phone codes go.
async fn warn_if_phone_codes_go_anywhere(store: &dyn ports::PolicyStore, config: &Config) {
    if !config.organisation_phone_prefixes.is_empty() {
        return;
    }
    match store.current().await {
        Ok(policy) if policy.rules.limits().phone_allowed_prefixes().is_empty() => {
            tracing::warn!(
                "SMS and voice codes may be sent to phone numbers in any country (a door for SMS \
                 pumping): set {ORGANISATION_PHONE_PREFIXES} to the organisation's own E.164 \
                 prefixes (e.g. +44,+353) or limits.phone_allowed_prefixes in the policy"
            );
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "could not read the policy to check the SMS allowlist")
        }
    }
}

/// Migrates the database, makes sure the event stream exists, and serves the NATS endpoints
/// until `shutdown` is cancelled; then drains in-flight requests and the outbox and returns.
pub async fn run(
    ctx: ServiceContext,
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let emitter = Emitter::start::<adapters::migration::Migrator>(SERVICE, &ctx).await?;
    let signal = emitter.signal();

    let store = Arc::new(adapters::store::SqlPolicyStore::new(ctx.db.clone(), signal));
    warn_if_phone_codes_go_anywhere(store.as_ref(), &config).await;
    let population = Arc::new(adapters::peers::BusPopulation::new(ctx.bus.clone()));
    let router = handlers::router(
        handlers::PolicyHandlers::new(store, ctx.clock.clone())
            .with_population(population)
            .with_organisation_prefixes(config.organisation_phone_prefixes),
    );
    let router = router
        .idempotent(&handlers::IDEMPOTENT)
        .with_idempotency(sspr_runtime::idempotency::start(&ctx, None, &shutdown));
    let served = sspr_bus::serve(&ctx.bus, router, shutdown.cancelled_owned()).await;

    emitter.finish(&ctx).await;
    served.context("serving the policy endpoints")?;
    Ok(())
}
