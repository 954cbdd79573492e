//! sspr enrolment: registration sessions and users' registered contact methods.
//!
//! A user proves their password (directory), policy says what they must register, and they get
//! a registration session: a secret bearer token (stored only as its SHA-256) and a public flow
//! id. With it they add an email address or phone number; verification issues and delivers a
//! code for it, and the method becomes confirmed when verification accepts the code the user
//! typed. Confirming commits the state change and its `method.registered` event together
//! (transactional outbox). Other services read confirmed methods masked (`list_methods`), and
//! verification alone reads a full destination to address a reset code (`get_destination`).
//!
//! Enrolment never sees a code except the one the user typed, which it only forwards; it never
//! logs a token, password, code or unmasked destination.

pub mod adapters;
pub mod domain;
mod error;
pub mod handlers;
pub mod ports;

use std::sync::Arc;

use anyhow::Context;
use sspr_runtime::{ConfigError, Emitter, ServiceContext};
use tokio_util::sync::CancellationToken;

pub use error::Error;

/// Short name: database name, NATS service `sspr-enrolment`, subjects `sspr.rpc.enrolment.*`.
pub const SERVICE: &str = "enrolment";

/// Settings specific to enrolment (none yet; the common ones are in
/// [`sspr_runtime::CommonSettings`]).
#[derive(Debug, Clone, Default)]
pub struct Config {}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Ok(Config {})
    }
}

/// Runs enrolment until `shutdown` is cancelled: migrates its database, makes sure the event
/// stream exists, relays its outbox and serves its NATS endpoints. On shutdown the endpoints
/// finish the requests in flight, then the outbox relay publishes what is left.
pub async fn run(
    ctx: ServiceContext,
    _config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // The storage error already says which database failed to migrate.
    let emitter = Emitter::start::<adapters::migration::Migrator>(SERVICE, &ctx).await?;
    let signal = emitter.signal();
    let store = Arc::new(adapters::store::SeaOrmStore::new(ctx.db.clone(), signal));
    let enrolment = Arc::new(handlers::Enrolment::new(
        store,
        adapters::peers::Peers::new(ctx.bus.clone()),
        ctx.clock.clone(),
    ));
    let served = sspr_bus::serve(
        &ctx.bus,
        handlers::router(enrolment),
        shutdown.cancelled_owned(),
    )
    .await;

    emitter.finish(&ctx).await;
    served.context("serving the enrolment endpoints")
}
