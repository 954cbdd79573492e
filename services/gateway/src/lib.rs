//! sspr gateway: the public gRPC API (`PasswordReset`, `Registration`, `Admin`, gRPC health,
//! server reflection) in front of the internal services.
//!
//! The gateway owns no data and no business rule. For each call it checks the shape of the
//! public input (an `INVALID_ARGUMENT` naming the field, before any NATS traffic), makes one
//! NATS request to the service that owns the answer, and maps the reply or refusal back to gRPC.
//! It determines the client IP (peer address, or `X-Forwarded-For` behind trusted proxies) and
//! continues the caller's W3C trace.
//!
//! Invariants: no password, code, session id or token is ever logged, traced or put in a status
//! message; passwords are forwarded byte for byte (never trimmed or truncated); admin calls are
//! refused with `UNAUTHENTICATED` before their body is looked at unless they carry the admin
//! bearer token.

pub mod api;
mod call;
pub mod domain;
mod error;
mod server;

use std::future::Future;
use std::net::SocketAddr;

use sspr_bus::Bus;
use sspr_runtime::settings::{self, ConfigError, Secret};
use tokio_util::sync::CancellationToken;

pub use error::GatewayError;

/// Short service name: the NATS client is `sspr-gateway`.
pub const SERVICE: &str = "gateway";

/// Default gRPC listen address.
pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:50051";
/// Shortest admin token accepted.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 16;

/// The gateway's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `SSPR_GRPC_ADDR`, default `127.0.0.1:50051`.
    pub grpc_addr: SocketAddr,
    /// `SSPR_ADMIN_TOKEN`: the bearer token of the Admin API (required, at least 16 characters).
    pub admin_token: Secret<String>,
    /// `SSPR_TRUSTED_PROXY_HOPS`: how many reverse proxies in front of the gateway append to
    /// `X-Forwarded-For`; 0 (the default) ignores that header.
    pub trusted_proxy_hops: usize,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Ok(Config {
            grpc_addr: settings::socket_addr("SSPR_GRPC_ADDR", DEFAULT_GRPC_ADDR)?,
            admin_token: admin_token(settings::var("SSPR_ADMIN_TOKEN"))?,
            trusted_proxy_hops: trusted_proxy_hops(settings::var("SSPR_TRUSTED_PROXY_HOPS"))?,
        })
    }
}

fn admin_token(raw: Option<String>) -> Result<Secret<String>, ConfigError> {
    const VAR: &str = "SSPR_ADMIN_TOKEN";
    let Some(raw) = raw else {
        return Err(ConfigError::new(
            VAR,
            format!(
                "is required (the bearer token of the Admin API, at least {MIN_ADMIN_TOKEN_CHARS} characters; generate one with `openssl rand -base64 32`)"
            ),
        ));
    };
    if raw.chars().count() < MIN_ADMIN_TOKEN_CHARS {
        // Never echo the value: it is a secret, even when it is too short.
        return Err(ConfigError::new(
            VAR,
            format!("must be at least {MIN_ADMIN_TOKEN_CHARS} characters"),
        ));
    }
    Ok(Secret::new(raw))
}

fn trusted_proxy_hops(raw: Option<String>) -> Result<usize, ConfigError> {
    match raw {
        None => Ok(0),
        Some(raw) => raw.trim().parse().map_err(|_| {
            ConfigError::new(
                "SSPR_TRUSTED_PROXY_HOPS",
                format!("expected a number of proxies such as 0 or 1, got {raw:?}"),
            )
        }),
    }
}

/// Binds the gRPC listener; returns the bound address and a future serving until `shutdown`
/// is cancelled (then in-flight calls finish and the future resolves).
pub async fn bind(
    bus: Bus,
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, impl Future<Output = anyhow::Result<()>>)> {
    server::bind(bus, config, shutdown).await
}

/// Serves the gRPC API until `shutdown` is cancelled.
pub async fn run(bus: Bus, config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (addr, serve) = bind(bus, config, shutdown).await?;
    tracing::info!(%addr, "gRPC API listening");
    serve.await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn admin_token_is_required_and_long_enough() {
        let err = admin_token(None).unwrap_err();
        assert_eq!(err.variable, "SSPR_ADMIN_TOKEN");
        let err = admin_token(Some("short-secret".into())).unwrap_err();
        assert_eq!(err.variable, "SSPR_ADMIN_TOKEN");
        assert!(!err.to_string().contains("short-secret"));
        let token = admin_token(Some("0123456789abcdef".into())).unwrap();
        assert_eq!(token.expose(), "0123456789abcdef");
        assert_eq!(format!("{token:?}"), "<redacted>");
    }

    #[test]
    fn proxy_hops_default_to_zero() {
        assert_eq!(trusted_proxy_hops(None).unwrap(), 0);
        assert_eq!(trusted_proxy_hops(Some("2".into())).unwrap(), 2);
        let err = trusted_proxy_hops(Some("-1".into())).unwrap_err();
        assert_eq!(err.variable, "SSPR_TRUSTED_PROXY_HOPS");
    }
}
