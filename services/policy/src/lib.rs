//! sspr-policy: owns the SSPR policy (who may reset, how many methods, which kinds) and the
//! password rules, and answers on `sspr.rpc.policy.*`:
//!
//! - `get_policy` / `set_policy`: the policy; every change gets the next version and emits
//!   `sspr.events.v1.policy.changed` through the outbox in the same transaction.
//! - `evaluate`: whether a user may reset and with how many methods (admins always need two).
//! - `check_password`: the password rules; the candidate is never stored or logged.
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
use sspr_runtime::{ConfigError, ServiceContext};
use sspr_storage::outbox::{OutboxRelay, OutboxSignal};
use tokio_util::sync::CancellationToken;

/// Short name: database name, NATS service `sspr-policy`.
pub const SERVICE: &str = "policy";

/// Settings of the policy service beyond the common ones (none yet).
#[derive(Debug, Clone, Default)]
pub struct Config {}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Ok(Config {})
    }
}

/// Migrates the database, makes sure the event stream exists, and serves the NATS endpoints
/// until `shutdown` is cancelled; then drains in-flight requests and the outbox and returns.
pub async fn run(
    ctx: ServiceContext,
    _config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    sspr_storage::run_migrations::<adapters::migration::Migrator>(SERVICE, &ctx.db).await?;
    sspr_bus::streams::ensure(
        ctx.bus.jetstream(),
        &sspr_bus::streams::StreamSettings::default(),
    )
    .await
    .context("setting up the JetStream streams")?;

    let signal = OutboxSignal::default();
    // The relay gets its own token, cancelled after serving stopped, so the events of the last
    // requests are still published before the process exits.
    let relay_stop = CancellationToken::new();
    let relay = tokio::spawn(
        OutboxRelay::new(ctx.db.clone(), ctx.bus.clone(), signal.clone()).run(relay_stop.clone()),
    );

    let store = Arc::new(adapters::store::SqlPolicyStore::new(ctx.db.clone(), signal));
    let router = handlers::router(handlers::PolicyHandlers::new(store, ctx.clock.clone()));
    let served = sspr_bus::serve(&ctx.bus, router, shutdown.cancelled_owned()).await;

    relay_stop.cancel();
    if let Err(e) = relay.await {
        tracing::error!(error = %e, "the outbox relay task failed");
    }
    ctx.bus.flush().await;
    served.context("serving the policy endpoints")?;
    Ok(())
}
