//! sspr-directory: owns user accounts, their groups and their password hashes (the built-in
//! store), and answers on `sspr.rpc.directory.*`:
//!
//! - `get_user`: look an account up (unknown is `found = false`, not an error).
//! - `authenticate`: Argon2id check of a password; the same work and the same
//!   `UNAUTHENTICATED` answer for unknown users, wrong passwords and disabled accounts.
//! - `set_password`: policy check, password history (the last `history_count` passwords of the
//!   policy, stored hashed), Argon2id hash, `password.changed` through the outbox. A refusal is
//!   `INVALID_ARGUMENT` "password rejected: ..." with one `BadRequest` violation per rule.
//! - `upsert_user` / `delete_user`: admin changes; `user.deleted` through the outbox. A lock
//!   change through `upsert_user` emits `account.locked` / `account.unlocked` (reason "admin");
//!   a locked account is refused at `authenticate` exactly like a wrong password.
//! - `unlock`: clears the lock (helpdesk, or a verified reset flow); a self-service
//!   `set_password` unlocks too. `account.unlocked` only when the account was locked.
//! - `upsert_group` / `delete_group` / `list_groups`: groups and their nesting. Every account
//!   record carries `effective_group_ids`: its groups plus every group containing one of them
//!   transitively (cycle-safe, bounded; see [`domain::group`]).
//!
//! Password connector: by default passwords live only in the built-in store. With
//! `SSPR_LDAP_URL` set, every new password is also written to an LDAP directory
//! ([`adapters::ldap`]: OpenLDAP password modify over StartTLS, or Active Directory
//! `unicodePwd` over LDAPS) before it is committed locally; see [`handlers`] for the order.
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

/// Settings of the directory beyond the common ones.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The LDAP password writeback connector (`SSPR_LDAP_*`); `None`: built-in store only.
    pub ldap: Option<adapters::ldap::LdapSettings>,
    /// Tests only: record every Argon2 computation here (see [`hashing::WorkLog`]), to prove
    /// that every sign-in path costs the same work. Never set from the environment.
    pub work_log: Option<Arc<hashing::WorkLog>>,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Ok(Config {
            ldap: adapters::ldap::LdapSettings::from_env()?,
            work_log: None,
        })
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

    let hasher = match config.work_log {
        Some(log) => hashing::Hasher::per_core().with_work_log(log),
        None => hashing::Hasher::per_core(),
    };
    hasher.warm_up();
    let handlers = handlers::DirectoryHandlers::new(
        Arc::new(adapters::store::SqlUserStore::new(ctx.db.clone(), signal)),
        Arc::new(adapters::policy_client::NatsPasswordRules::new(
            ctx.bus.clone(),
        )),
        hasher,
        ctx.clock.clone(),
    );
    let handlers = match config.ldap {
        Some(settings) => {
            tracing::info!(
                url = %settings.url,
                mode = ?settings.mode,
                "password writeback to LDAP enabled"
            );
            handlers.with_writeback(Arc::new(adapters::ldap::LdapWriteback::new(settings)))
        }
        None => handlers,
    };
    let idempotency = sspr_runtime::idempotency::start(&ctx, None, &shutdown);
    let served = sspr_bus::serve(
        &ctx.bus,
        handlers::router(handlers)
            .idempotent(&handlers::IDEMPOTENT)
            .with_idempotency(idempotency),
        shutdown.cancelled_owned(),
    )
    .await;

    emitter.finish(&ctx).await;
    served.context("serving the directory endpoints")?;
    Ok(())
}
