//! sspr gateway: the public gRPC API (`PasswordReset`, `Registration`, `Admin`, gRPC health,
//! server reflection) in front of the internal services.
//!
//! The gateway owns no data and no business rule. For each call it checks the shape of the
//! public input (an `INVALID_ARGUMENT` naming the field, before any NATS traffic), makes one
//! NATS request to the service that owns the answer, and maps the reply or refusal back to gRPC.
//! It determines the client IP (peer address, or `X-Forwarded-For` behind trusted proxies) and
//! continues the caller's W3C trace. It passes the client's deadline (`grpc-timeout`) and, on
//! mutating calls, its idempotency key (`x-request-id`) on to the services, and sheds load
//! beyond `SSPR_GATEWAY_MAX_IN_FLIGHT` concurrent calls with `UNAVAILABLE`. Every call is
//! counted and timed by method and status code (`sspr_grpc_server_duration_seconds`).
//!
//! Invariants: no password, code, session id or token is ever logged, traced or put in a status
//! message; passwords are forwarded byte for byte (never trimmed or truncated); admin calls are
//! refused with `UNAUTHENTICATED` before their body is looked at unless they carry one of the
//! configured admin bearer tokens, and with `PERMISSION_DENIED` when that token's role may not
//! make the call.

pub mod api;
mod call;
pub mod challenge;
pub mod domain;
mod error;
mod grpc_metrics;
mod oversized;
mod server;
mod shed;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;

use sspr_bus::Bus;
use sspr_runtime::settings::{self, ConfigError, Secret};
use tokio_util::sync::CancellationToken;

pub use domain::admin_tokens::{
    AdminId, AdminToken, AdminTokens, MIN_ADMIN_TOKEN_CHARS, Role, TokenError,
};
pub use error::GatewayError;
pub use shed::DEFAULT_MAX_IN_FLIGHT;

/// Short service name: the NATS client is `sspr-gateway`.
pub const SERVICE: &str = "gateway";

/// Default gRPC listen address.
pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:50051";

/// The gateway's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `SSPR_GRPC_ADDR`, default `127.0.0.1:50051`.
    pub grpc_addr: SocketAddr,
    /// The bearer tokens of the Admin API: `SSPR_ADMIN_TOKEN` (admin id `admin`, role admin)
    /// and the named tokens of `SSPR_ADMIN_TOKENS` / `SSPR_ADMIN_TOKENS_FILE`; at least one.
    pub admin_tokens: AdminTokens,
    /// `SSPR_TRUSTED_PROXY_HOPS`: how many reverse proxies in front of the gateway append to
    /// `X-Forwarded-For`; 0 (the default) ignores that header.
    pub trusted_proxy_hops: usize,
    /// `SSPR_CHALLENGE_VERIFY_URL` and `SSPR_CHALLENGE_SECRET`: the CAPTCHA verifier that
    /// StartReset's `challenge_token` is checked with; `None`: tokens are never passed.
    pub challenge: Option<challenge::ChallengeConfig>,
    /// `SSPR_GRPC_TLS_CERT` and `SSPR_GRPC_TLS_KEY`: serve gRPC over TLS; `None`: plaintext
    /// (behind a TLS-terminating proxy, or for development).
    pub tls: Option<tls::GrpcTls>,
    /// `SSPR_GATEWAY_MAX_IN_FLIGHT` (default [`DEFAULT_MAX_IN_FLIGHT`]): most public calls
    /// served at once; more are answered `UNAVAILABLE` with `retry-after` at once.
    pub max_in_flight: usize,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Ok(Config {
            grpc_addr: settings::socket_addr("SSPR_GRPC_ADDR", DEFAULT_GRPC_ADDR)?,
            admin_tokens: admin_tokens(
                settings::var("SSPR_ADMIN_TOKEN"),
                settings::var("SSPR_ADMIN_TOKENS"),
                settings::var("SSPR_ADMIN_TOKENS_FILE"),
            )?,
            trusted_proxy_hops: trusted_proxy_hops(settings::var("SSPR_TRUSTED_PROXY_HOPS"))?,
            challenge: challenge::ChallengeConfig::parse(
                settings::var("SSPR_CHALLENGE_VERIFY_URL"),
                settings::var("SSPR_CHALLENGE_SECRET"),
            )?,
            tls: tls::GrpcTls::from_env()?,
            max_in_flight: settings::bounded(
                "SSPR_GATEWAY_MAX_IN_FLIGHT",
                DEFAULT_MAX_IN_FLIGHT,
                1,
                1_000_000,
            )?,
        })
    }
}

/// The admin tokens from `SSPR_ADMIN_TOKEN` (`single`), `SSPR_ADMIN_TOKENS` (`list`) and the
/// file named by `SSPR_ADMIN_TOKENS_FILE` (`file`), validated together: at least one token,
/// each long enough, names unique, tokens distinct. Errors never echo a token.
pub fn admin_tokens(
    single: Option<String>,
    list: Option<String>,
    file: Option<String>,
) -> Result<AdminTokens, ConfigError> {
    let mut all = Vec::new();
    if let Some(raw) = single {
        // Never echo the value: it is a secret, even when it is too short.
        let single = AdminToken::single(Secret::new(raw)).map_err(|_| {
            ConfigError::new(
                "SSPR_ADMIN_TOKEN",
                format!(
                    "must be at least {MIN_ADMIN_TOKEN_CHARS} visible ASCII characters, without spaces or commas"
                ),
            )
        })?;
        all.push(single);
    }
    if let Some(raw) = list {
        all.extend(
            domain::admin_tokens::parse_list(&raw)
                .map_err(|e| ConfigError::new("SSPR_ADMIN_TOKENS", e.to_string()))?,
        );
    }
    if let Some(path) = file {
        const VAR: &str = "SSPR_ADMIN_TOKENS_FILE";
        let raw = std::fs::read_to_string(&path)
            .map_err(|e| ConfigError::new(VAR, format!("cannot read {path:?}: {e}")))?;
        all.extend(
            domain::admin_tokens::parse_list(&raw)
                .map_err(|e| ConfigError::new(VAR, format!("{path:?}: {e}")))?,
        );
    }
    if all.is_empty() {
        return Err(ConfigError::new(
            "SSPR_ADMIN_TOKEN",
            format!(
                "is required, or SSPR_ADMIN_TOKENS / SSPR_ADMIN_TOKENS_FILE (the bearer tokens of the Admin API, at least {MIN_ADMIN_TOKEN_CHARS} characters; generate one with `openssl rand -base64 32`)"
            ),
        ));
    }
    AdminTokens::new(all).map_err(|e| ConfigError::new("SSPR_ADMIN_TOKENS", e.to_string()))
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
        let err = admin_tokens(None, None, None).unwrap_err();
        assert_eq!(err.variable, "SSPR_ADMIN_TOKEN");
        let err = admin_tokens(Some("short-secret".into()), None, None).unwrap_err();
        assert_eq!(err.variable, "SSPR_ADMIN_TOKEN");
        assert!(!err.to_string().contains("short-secret"));
        let tokens = admin_tokens(Some("0123456789abcdef".into()), None, None).unwrap();
        let admin = tokens.identify("0123456789abcdef").unwrap();
        assert_eq!(
            (admin.admin_id().as_str(), admin.role()),
            ("admin", Role::Admin)
        );
        assert!(!format!("{tokens:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn named_tokens_come_from_the_list_and_the_file_and_must_be_distinct() {
        let dir = std::env::temp_dir().join(format!("sspr-gw-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tokens");
        std::fs::write(&file, "# helpdesk\ncarol:helpdesk:carol-token-0123456789\n").unwrap();
        let file = Some(file.to_string_lossy().into_owned());
        let tokens = admin_tokens(
            Some("the-single-admin-token".into()),
            Some("alice:admin:alice-token-0123456789".into()),
            file.clone(),
        )
        .unwrap();
        assert_eq!(tokens.len(), 3);
        let carol = tokens.identify("carol-token-0123456789").unwrap();
        assert_eq!(
            (carol.admin_id().as_str(), carol.role()),
            ("carol", Role::Helpdesk)
        );
        // Only named tokens, no single one.
        assert_eq!(admin_tokens(None, None, file).unwrap().len(), 1);
        // The same secret twice, even across variables, is refused without echoing it.
        let err = admin_tokens(
            Some("alice-token-0123456789".into()),
            Some("alice:admin:alice-token-0123456789".into()),
            None,
        )
        .unwrap_err();
        assert_eq!(err.variable, "SSPR_ADMIN_TOKENS");
        assert!(!err.to_string().contains("alice-token-0123456789"));
        let err = admin_tokens(None, Some("bob:helpdesk:short".into()), None).unwrap_err();
        assert_eq!(err.variable, "SSPR_ADMIN_TOKENS");
        assert!(!err.to_string().contains("short"));
        let err = admin_tokens(None, None, Some("/nonexistent/sspr-tokens".into())).unwrap_err();
        assert_eq!(err.variable, "SSPR_ADMIN_TOKENS_FILE");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn proxy_hops_default_to_zero() {
        assert_eq!(trusted_proxy_hops(None).unwrap(), 0);
        assert_eq!(trusted_proxy_hops(Some("2".into())).unwrap(), 2);
        let err = trusted_proxy_hops(Some("-1".into())).unwrap_err();
        assert_eq!(err.variable, "SSPR_TRUSTED_PROXY_HOPS");
    }
}
