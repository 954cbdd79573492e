//! sspr-verification: the reset flow's state machine and every one-time code.
//!
//! It owns reset sessions, codes (for reset and for registration, stored only as keyed hashes),
//! attempt counters and the resend throttle, and it queues code deliveries, sealed with
//! `SSPR_CODE_KEY`, on the `SSPR_DELIVERY` work queue. It answers on
//! `sspr.rpc.verification.*` and consults directory, policy and enrolment over NATS.
//!
//! Invariants:
//! - Every state change and the events and deliveries it causes commit in one transaction
//!   (outbox); the relay publishes them afterwards.
//! - No code, session token, destination or password appears in a log line, span field, event or
//!   error message.
//! - Unknown, disabled, out-of-scope and unregistered users get decoy flows with the same shape,
//!   statuses and messages as real ones; a decoy never delivers anything and never verifies.
//! - A `user.deleted` event ([`user_deleted`]) deletes the user's reset sessions and codes, once.
//! - Notification's delivery events ([`delivery_events`]) move each code's delivery state
//!   forward, once; GetCodeStatus answers from it and, after a failure, offers other methods.
//! - The mutating calls ([`handlers::IDEMPOTENT`]) honour the client's idempotency key: a retry
//!   gets the first attempt's answer (stored sealed in `idempotency_keys`).

pub mod adapters;
mod config;
pub mod delivery_events;
pub mod domain;
mod error;
pub mod handlers;
pub mod retention;
pub mod user_deleted;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sspr_runtime::{Emitter, ServiceContext};
use tokio_util::sync::CancellationToken;

pub use config::{Config, DEFAULT_RESEND_AFTER};
pub use error::Error;

/// Short name: database name and NATS service `sspr-verification`.
pub const SERVICE: &str = "verification";

/// How often expired sessions and codes are purged, and how long after expiry they are kept.
const PURGE_EVERY: Duration = Duration::from_secs(600);
const KEEP_EXPIRED_FOR: chrono::Duration = chrono::Duration::hours(24);

/// Migrates, ensures the streams, starts the outbox relay, the `user.deleted` and code-delivery
/// consumers and serves the NATS endpoints until `shutdown` is cancelled; then drains
/// requests, the events in hand and the outbox.
pub async fn run(
    ctx: ServiceContext,
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let emitter =
        Emitter::start_with::<adapters::migration::Migrator>(SERVICE, &ctx, retention::purges)
            .await?;
    let signal = emitter.signal();

    let store = adapters::store::Store::new(ctx.db.clone());
    let throttles = adapters::throttle::ThrottleStore::new(ctx.db.clone());
    let purge = tokio::spawn(purge_loop(
        store.clone(),
        throttles.clone(),
        ctx.clock.clone(),
        shutdown.clone(),
    ));

    // A child token: it also stops the consumers when serving ends on its own (an error).
    let stop_forgetting = shutdown.child_token();
    let forgetting = tokio::spawn(user_deleted::consume(
        ctx.bus.clone(),
        store.clone(),
        ctx.clock.clone(),
        stop_forgetting.clone(),
    ));
    let tracking = tokio::spawn(delivery_events::consume(
        ctx.bus.clone(),
        store.clone(),
        ctx.clock.clone(),
        stop_forgetting.clone(),
    ));

    // Keyed by the decoy key: stable across code-key rotations when SSPR_DECOY_KEY is set.
    let idempotency = sspr_runtime::idempotency::start(
        &ctx,
        Some(sspr_bus::idempotency::secret_from(
            config.decoy_key.expose(),
        )),
        &shutdown,
    );
    let service = Arc::new(handlers::Verification::new(
        store,
        adapters::peers::Peers::new(ctx.bus.clone()),
        ctx.clock.clone(),
        config,
        signal,
        throttles,
        adapters::phone_ledger::PhoneLedger::new(ctx.db.clone()),
    ));
    let served = sspr_bus::serve(
        &ctx.bus,
        handlers::router(service)
            .idempotent(&handlers::IDEMPOTENT)
            .with_idempotency(idempotency),
        shutdown.clone().cancelled_owned(),
    )
    .await;

    // The consumers finish the message in hand and return.
    stop_forgetting.cancel();
    if let Err(e) = forgetting.await {
        tracing::error!(error = %e, "the user.deleted consumer panicked");
    }
    if let Err(e) = tracking.await {
        tracing::error!(error = %e, "the code-delivery consumer panicked");
    }
    let _ = purge.await;
    emitter.finish(&ctx).await;
    served.context("serving the verification endpoints")?;
    Ok(())
}

async fn purge_loop(
    store: adapters::store::Store,
    throttles: adapters::throttle::ThrottleStore,
    clock: sspr_clock::SharedClock,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(PURGE_EVERY) => {}
        }
        match store.purge_expired(clock.now() - KEEP_EXPIRED_FOR).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "purged expired sessions and codes"),
            Err(e) => tracing::warn!(error = %e, "purging expired sessions and codes failed"),
        }
        // Counts older than the longest window are never read again.
        let before = clock.now() - domain::throttle::Limit::longest_window() - KEEP_EXPIRED_FOR;
        if let Err(e) = throttles.purge(before).await {
            tracing::warn!(error = %e, "purging old throttle counts failed");
        }
    }
}
