//! sspr-audit: owns the audit log, a projection of the public events on `SSPR_EVENTS`.
//!
//! - [`projector`]: the durable JetStream pull consumer [`sspr_bus::subjects::AUDIT_CONSUMER`]
//!   (every event since the stream began, explicit ack) turns each event into one
//!   [`domain::record::AuditRecord`]; the event id is the primary key, so a redelivered or
//!   re-published event is acknowledged without a second row.
//! - [`handlers`]: `sspr.rpc.audit.list_events` (filters, stable paging).
//! - [`retention`]: deletes records older than `SSPR_AUDIT_RETENTION_DAYS` (default 30).
//!
//! Invariants: records hold only the safe fields of events (events carry no code, password,
//! session id, token or unmasked destination, and nothing else is added); time comes from the
//! service clock; audit emits no event.

pub mod adapters;
pub mod domain;
pub mod error;
pub mod handlers;
pub mod projector;
pub mod retention;

use std::time::Duration;

use anyhow::Context;
use sspr_runtime::{ConfigError, ServiceContext, settings};
use tokio_util::sync::CancellationToken;

use crate::adapters::store::AuditStore;

/// Short name: database name, NATS service `sspr-audit`.
pub const SERVICE: &str = "audit";

/// Default number of days records are kept.
pub const DEFAULT_RETENTION_DAYS: u32 = 30;
/// Longest retention accepted (10 years).
pub const MAX_RETENTION_DAYS: u32 = 3650;

/// Settings of the audit service.
#[derive(Debug, Clone)]
pub struct Config {
    /// `SSPR_AUDIT_RETENTION_DAYS`: records older than this are deleted (1..=3650, default 30).
    pub retention_days: u32,
    /// How often old records are looked for (not a setting; tests shorten it).
    pub retention_sweep_every: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            retention_days: DEFAULT_RETENTION_DAYS,
            retention_sweep_every: Duration::from_secs(3600),
        }
    }
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Ok(Config {
            retention_days: retention_days(settings::var("SSPR_AUDIT_RETENTION_DAYS"))?,
            ..Config::default()
        })
    }
}

fn retention_days(raw: Option<String>) -> Result<u32, ConfigError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_RETENTION_DAYS);
    };
    match raw.trim().parse::<u32>() {
        Ok(days) if (1..=MAX_RETENTION_DAYS).contains(&days) => Ok(days),
        _ => Err(ConfigError::new(
            "SSPR_AUDIT_RETENTION_DAYS",
            format!("expected a number of days from 1 to {MAX_RETENTION_DAYS}, got {raw:?}"),
        )),
    }
}

/// Migrates the database, makes sure the streams exist, then runs the projection, the
/// retention sweep and the NATS endpoint until `shutdown` is cancelled; then stops pulling,
/// finishes the event in hand, drains in-flight requests and returns.
pub async fn run(
    ctx: ServiceContext,
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    sspr_storage::run_migrations::<adapters::migration::Migrator>(SERVICE, &ctx.db).await?;
    sspr_bus::streams::ensure(
        ctx.bus.jetstream(),
        &sspr_runtime::settings::stream_settings()?,
    )
    .await
    .context("setting up the JetStream streams")?;

    let store = AuditStore::new(ctx.db.clone());
    let stop = shutdown.child_token();
    let projector = tokio::spawn(projector::consume(
        ctx.bus.jetstream().clone(),
        store.clone(),
        ctx.clock.clone(),
        stop.clone(),
    ));
    let sweeper = tokio::spawn(retention::sweep(
        store.clone(),
        ctx.clock.clone(),
        config.retention_days,
        config.retention_sweep_every,
        stop.clone(),
    ));

    let served = sspr_bus::serve(
        &ctx.bus,
        handlers::router(store),
        stop.clone().cancelled_owned(),
    )
    .await;
    stop.cancel();
    for (name, task) in [("projector", projector), ("retention sweep", sweeper)] {
        if let Err(e) = task.await {
            tracing::error!(task = name, error = %e, "an audit task panicked");
        }
    }
    ctx.bus.flush().await;
    served.context("serving the audit endpoints")?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn retention_days_default_and_bounds() {
        assert_eq!(retention_days(None).unwrap(), 30);
        assert_eq!(retention_days(Some("7".into())).unwrap(), 7);
        assert_eq!(retention_days(Some(" 3650 ".into())).unwrap(), 3650);
        for bad in ["0", "3651", "-1", "a week"] {
            let err = retention_days(Some(bad.into())).unwrap_err();
            assert_eq!(err.variable, "SSPR_AUDIT_RETENTION_DAYS");
        }
    }
}
