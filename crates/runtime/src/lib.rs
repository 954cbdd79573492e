//! The process contract shared by every sspr binary.
//!
//! - [`settings`]: typed settings from `SSPR_*` variables, with secrets wrapped so they never
//!   print; a bad value is a [`settings::ConfigError`] naming the variable.
//! - [`code_keys`]: the `SSPR_CODE_KEY` ring (current key with its id, previous keys).
//! - [`idempotency`]: a service router's idempotency store and the purge of old keys.
//! - [`ServiceContext`]: what a service needs to run (bus, database, clock), built by
//!   [`connect`], which also starts `/healthz` and `/readyz`.
//! - [`Emitter`]: migrations, streams, the outbox relay and the retention sweep
//!   ([`retention`]) of a service that owns data.
//! - [`shutdown_token`]: cancelled on SIGTERM or Ctrl-C.
//! - [`exit_with`]: turns a failed start into one line on stderr and a non-zero exit.

pub mod code_keys;
mod emitter;
pub mod idempotency;
pub mod retention;
pub mod settings;

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use sspr_bus::{Bus, BusConfig};
use sspr_clock::SharedClock;
use sspr_storage::sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

pub use code_keys::{CodeKey, CodeKeys};
pub use emitter::Emitter;
pub use settings::{CommonSettings, ConfigError, Secret};

/// What a running service is given.
#[derive(Clone)]
pub struct ServiceContext {
    pub bus: Bus,
    pub db: DatabaseConnection,
    pub clock: SharedClock,
}

/// Why a process could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot connect to NATS at {url}: {message}")]
    Nats { url: String, message: String },
    #[error(transparent)]
    Storage(#[from] sspr_storage::StorageError),
    #[error("cannot serve health endpoints on {addr}: {source}")]
    Health {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Telemetry(#[from] sspr_telemetry::TelemetryError),
    #[error("{0}")]
    Other(String),
}

/// Connects to NATS as `sspr-<service>` with the configured credentials and TLS; replies come
/// back on the service's own inbox prefix (`_INBOX_sspr-<service>`).
pub async fn connect_bus(service: &str, common: &CommonSettings) -> Result<Bus, StartError> {
    Bus::connect(&bus_config(service, common))
        .await
        .map_err(|e| StartError::Nats {
            url: common.nats_url.clone(),
            message: e.to_string(),
        })
}

/// How `service` connects to NATS: as `sspr-<service>`, with `common`'s credentials and TLS,
/// and `_INBOX_sspr-<service>` as its reply prefix (what `deploy/nats/nats-server.conf` lets it
/// subscribe to).
pub fn bus_config(service: &str, common: &CommonSettings) -> BusConfig {
    let name = format!("sspr-{service}");
    let mut config = BusConfig::new(common.nats_url.clone(), name.clone());
    config.auth = common.nats_auth.clone();
    config.tls = common.nats_tls.clone();
    config.inbox_prefix = Some(format!("_INBOX_{name}"));
    config.max_in_flight = common.rpc_max_in_flight;
    config
}

/// Connects to NATS and to the service's database, and serves `/healthz` and `/readyz` on
/// `common.metrics_addr` until `shutdown` is cancelled.
pub async fn connect(
    service: &str,
    common: &CommonSettings,
    shutdown: &CancellationToken,
) -> Result<ServiceContext, StartError> {
    let bus = connect_bus(service, common).await?;
    let db = sspr_storage::connect(service, &common.db).await?;
    let ctx = ServiceContext {
        bus,
        db,
        clock: sspr_clock::system(),
    };
    if let Some(addr) = common.metrics_addr {
        serve_health(
            addr,
            ready_check(ctx.bus.clone(), Some(ctx.db.clone())),
            shutdown,
        )
        .await?;
    }
    Ok(ctx)
}

/// A readiness check: connected to NATS and, when given, the database answers and the
/// service's endpoints are served (which they are only after its migrations ran), so a
/// replica that is still migrating, or already draining on shutdown, takes no traffic.
pub fn ready_check(bus: Bus, db: Option<DatabaseConnection>) -> sspr_telemetry::health::ReadyCheck {
    Arc::new(move || {
        let bus = bus.clone();
        let db = db.clone();
        Box::pin(async move {
            if !bus.is_connected() {
                return Err("not connected to NATS".to_owned());
            }
            if let Some(db) = db {
                db.ping()
                    .await
                    .map_err(|_| "database does not answer".to_owned())?;
                if !sspr_bus::is_serving() {
                    return Err("not serving yet (starting or shutting down)".to_owned());
                }
            }
            Ok(())
        })
    })
}

/// Serves `/healthz` and `/readyz` on `addr` in the background; returns the bound address.
pub async fn serve_health(
    addr: SocketAddr,
    ready: sspr_telemetry::health::ReadyCheck,
    shutdown: &CancellationToken,
) -> Result<SocketAddr, StartError> {
    let token = shutdown.clone();
    let (bound, server) =
        sspr_telemetry::health::bind(addr, ready, async move { token.cancelled().await })
            .await
            .map_err(|source| StartError::Health { addr, source })?;
    tokio::spawn(server);
    tracing::info!(%bound, "health endpoints: /healthz /readyz");
    Ok(bound)
}

/// A token cancelled when the process receives SIGTERM or Ctrl-C.
pub fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let child = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        child.cancel();
    });
    token
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs `main` and maps its outcome to an exit code: an error is one line on stderr, prefixed
/// with the binary name, and exit code 1 (2 for a configuration error).
pub async fn exit_with<E>(binary: &str, main: impl Future<Output = Result<(), E>>) -> ExitCode
where
    E: Into<StartError>,
{
    match main.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let e: StartError = e.into();
            eprintln!("{binary}: {e}");
            match e {
                StartError::Config(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}
