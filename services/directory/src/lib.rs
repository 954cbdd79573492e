//! sspr-directory: owns user accounts, their groups and their password hashes (the built-in
//! store), and answers on `sspr.rpc.directory.*`:
//!
//! - `get_user`: look an account up (unknown is `found = false`, not an error).
//! - `authenticate`: Argon2id check of a password; the same work and the same
//!   `UNAUTHENTICATED` answer for unknown users, wrong passwords and disabled accounts.
//! - `set_password`: policy check, password history (the last `history_count` passwords of the
//!   policy, stored hashed), Argon2id hash, `password.changed` through the outbox. A refusal is
//!   `INVALID_ARGUMENT` "password rejected: ..." with one `BadRequest` violation per rule.
//! - `upsert_user` / `delete_user`: admin changes; `user.deleted` through the outbox.
//!
//! Layout: [`domain`] holds the pure rules (ids, profile, password hashing), [`ports`] the
//! traits the handlers use, [`adapters`] their sea-orm and NATS implementations, [`handlers`]
//! the endpoints, [`events`] the events emitted. Passwords never reach a log, a span, an event
//! or an error message.

pub mod adapters;
pub mod domain;
pub mod error;
pub mod events;
pub mod handlers;
pub mod hashing;
pub mod ports;

use std::sync::Arc;

use anyhow::Context;
use sspr_runtime::{ConfigError, Emitter, ServiceContext};
use tokio_util::sync::CancellationToken;

/// Short name: database name, NATS service `sspr-directory`.
pub const SERVICE: &str = "directory";

/// Settings of the directory beyond the common ones (none yet).
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
    let emitter = Emitter::start::<adapters::migration::Migrator>(SERVICE, &ctx).await?;
    let signal = emitter.signal();

    let hasher = hashing::Hasher::per_core();
    hasher.warm_up();
    let handlers = handlers::DirectoryHandlers::new(
        Arc::new(adapters::store::SqlUserStore::new(ctx.db.clone(), signal)),
        Arc::new(adapters::policy_client::NatsPasswordRules::new(
            ctx.bus.clone(),
        )),
        hasher,
        ctx.clock.clone(),
    );
    let served = sspr_bus::serve(
        &ctx.bus,
        handlers::router(handlers),
        shutdown.cancelled_owned(),
    )
    .await;

    emitter.finish(&ctx).await;
    served.context("serving the directory endpoints")?;
    Ok(())
}
