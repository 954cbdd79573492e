//! What every service that owns data and emits events does around serving: migrate its
//! database, make sure the JetStream streams exist with the configured settings, run the outbox
//! relay — which must keep running until the endpoints have stopped, so the events of the last
//! requests still leave — and run the retention sweep (see [`crate::retention`]). The relay
//! keeps the outbox metrics (`sspr_outbox_backlog`, `sspr_outbox_oldest_age_seconds`,
//! `sspr_outbox_published_total`) under the service's short name as its `service` label.

use anyhow::Context;
use sspr_storage::outbox::{OutboxRelay, OutboxSignal};
use sspr_storage::sea_orm_migration::MigratorTrait;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::ServiceContext;
use crate::retention::{self, Purges};

/// The running outbox relay and retention sweep of a service.
pub struct Emitter {
    signal: OutboxSignal,
    stop: CancellationToken,
    relay: JoinHandle<()>,
    sweep: JoinHandle<()>,
}

impl Emitter {
    /// [`Emitter::start_with`] for a service whose only purge is its published outbox rows.
    pub async fn start<M: MigratorTrait>(
        service: &str,
        ctx: &ServiceContext,
    ) -> anyhow::Result<Self> {
        Self::start_with::<M>(service, ctx, retention::no_purges).await
    }

    /// Applies the pending migrations of `M`; creates or updates the streams to the settings of
    /// `SSPR_STREAM_REPLICAS`, `SSPR_EVENTS_MAX_AGE_DAYS` and `SSPR_DUPLICATE_WINDOW_SECS`;
    /// starts the relay, and the retention sweep of `purges` plus published outbox rows after
    /// `SSPR_RETENTION_DAYS` (at once, then hourly).
    pub async fn start_with<M: MigratorTrait>(
        service: &str,
        ctx: &ServiceContext,
        purges: Purges,
    ) -> anyhow::Result<Self> {
        let streams = crate::settings::stream_settings()?;
        let days = crate::settings::retention_days()?;
        sspr_storage::run_migrations::<M>(service, &ctx.db).await?;
        sspr_bus::streams::ensure(ctx.bus.jetstream(), &streams)
            .await
            .context("setting up the JetStream streams")?;
        let signal = OutboxSignal::default();
        // Its own token, not the service's shutdown: see `finish`.
        let stop = CancellationToken::new();
        let relay = tokio::spawn(
            OutboxRelay::new(service, ctx.db.clone(), ctx.bus.clone(), signal.clone())
                .run(stop.clone()),
        );
        let sweep = tokio::spawn(retention::sweep(
            ctx.db.clone(),
            ctx.clock.clone(),
            days,
            purges,
            retention::SWEEP_EVERY,
            stop.clone(),
        ));
        Ok(Self {
            signal,
            stop,
            relay,
            sweep,
        })
    }

    /// Wakes the relay; hand it to whatever commits outbox rows.
    pub fn signal(&self) -> OutboxSignal {
        self.signal.clone()
    }

    /// Call once the endpoints stopped: the relay publishes what is left, then stops, and the
    /// connection is flushed.
    pub async fn finish(self, ctx: &ServiceContext) {
        self.stop.cancel();
        if let Err(e) = self.relay.await {
            tracing::error!(error = %e, "the outbox relay task failed");
        }
        if let Err(e) = self.sweep.await {
            tracing::error!(error = %e, "the retention sweep task failed");
        }
        ctx.bus.flush().await;
    }
}
