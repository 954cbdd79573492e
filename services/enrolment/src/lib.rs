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
//! When the directory deletes a user, the `user.deleted` consumer ([`user_deleted`]) forgets the
//! user's methods and registration sessions.
//!
//! Enrolment never sees a code except the one the user typed, which it only forwards; it never
//! logs a token, password, code or unmasked destination.

pub mod adapters;
pub mod domain;
mod error;
pub mod handlers;
pub mod ports;
pub mod retention;
pub mod security_questions;
pub mod takeover;
pub mod user_deleted;

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
/// stream exists, relays its outbox, consumes `user.deleted` and serves its NATS endpoints. On
/// shutdown the endpoints finish the requests in flight and the consumer the event in hand, then
/// the outbox relay publishes what is left.
pub async fn run(
    ctx: ServiceContext,
    _config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // The storage error already says which database failed to migrate.
    let emitter =
        Emitter::start_with::<adapters::migration::Migrator>(SERVICE, &ctx, retention::purges)
            .await?;
    let signal = emitter.signal();
    let store: Arc<dyn ports::EnrolmentStore> =
        Arc::new(adapters::store::SeaOrmStore::new(ctx.db.clone(), signal));
    // A child token: it also stops the consumer when serving ends on its own (an error).
    let stop_forgetting = shutdown.child_token();
    let forgetting = tokio::spawn(user_deleted::consume(
        ctx.bus.clone(),
        Arc::clone(&store),
        ctx.clock.clone(),
        stop_forgetting.clone(),
    ));
    let enrolment = Arc::new(handlers::Enrolment::new(
        store,
        adapters::peers::Peers::new(ctx.bus.clone()),
        ctx.clock.clone(),
    ));
    // No service secret: see handlers::IDEMPOTENT for why BeginRegistration is not listed.
    let idempotency = sspr_runtime::idempotency::start(&ctx, None, &shutdown);
    let served = sspr_bus::serve(
        &ctx.bus,
        handlers::router(enrolment)
            .idempotent(&handlers::IDEMPOTENT)
            .with_idempotency(idempotency),
        shutdown.cancelled_owned(),
    )
    .await;

    // The consumer finishes the message in hand and returns.
    stop_forgetting.cancel();
    if let Err(e) = forgetting.await {
        tracing::error!(error = %e, "the user.deleted consumer panicked");
    }
    emitter.finish(&ctx).await;
    served.context("serving the enrolment endpoints")
}
