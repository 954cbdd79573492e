//! What every service that owns data and emits events does around serving: migrate its
//! database, make sure the JetStream streams exist, and run the outbox relay — which must keep
//! running until the endpoints have stopped, so the events of the last requests still leave.

use anyhow::Context;
use sspr_storage::outbox::{OutboxRelay, OutboxSignal};
use sspr_storage::sea_orm_migration::MigratorTrait;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::ServiceContext;

/// The running outbox relay of a service.
pub struct Emitter {
    signal: OutboxSignal,
    stop: CancellationToken,
    relay: JoinHandle<()>,
}

impl Emitter {
    /// Applies the pending migrations of `M`, creates or updates the streams, starts the relay.
    pub async fn start<M: MigratorTrait>(
        service: &str,
        ctx: &ServiceContext,
    ) -> anyhow::Result<Self> {
        sspr_storage::run_migrations::<M>(service, &ctx.db).await?;
        sspr_bus::streams::ensure(
            ctx.bus.jetstream(),
            &sspr_bus::streams::StreamSettings::default(),
        )
        .await
        .context("setting up the JetStream streams")?;
        let signal = OutboxSignal::default();
        // Its own token, not the service's shutdown: see `finish`.
        let stop = CancellationToken::new();
        let relay = tokio::spawn(
            OutboxRelay::new(ctx.db.clone(), ctx.bus.clone(), signal.clone()).run(stop.clone()),
        );
        Ok(Self {
            signal,
            stop,
            relay,
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
        ctx.bus.flush().await;
    }
}
