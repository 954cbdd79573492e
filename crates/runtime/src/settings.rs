//! Settings from the environment: defaults, then `SSPR_*` variables.
//!
//! Every parse error names the variable and what was expected, never the value when it is a
//! secret. [`Secret`] wraps values that must never appear in logs or `Debug` output.

use std::net::SocketAddr;
use std::path::PathBuf;

use base64::Engine;
use sspr_storage::DbSettings;

/// A setting that was missing or malformed.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(variable: &str, problem: impl Into<String>) -> Self {
        Self {
            variable: variable.to_owned(),
            problem: problem.into(),
        }
    }
}

/// A secret value: `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }
    /// The value itself; keep it out of logs.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> std::fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A variable's value, with empty treated as unset.
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A required variable.
pub fn required(name: &str, what: &str) -> Result<String, ConfigError> {
    var(name).ok_or_else(|| ConfigError::new(name, format!("is required ({what})")))
}

/// A socket address such as `127.0.0.1:50051`.
pub fn socket_addr(name: &str, default: &str) -> Result<SocketAddr, ConfigError> {
    let raw = var(name).unwrap_or_else(|| default.to_owned());
    raw.parse().map_err(|_| {
        ConfigError::new(
            name,
            format!("expected host:port such as {default}, got {raw:?}"),
        )
    })
}

/// Parses a 32-byte key given in base64 (standard or URL-safe alphabet).
pub fn parse_key(name: &str, raw: &str) -> Result<Secret<[u8; 32]>, ConfigError> {
    let raw = raw.trim();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(raw))
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw))
        .map_err(|_| {
            ConfigError::new(
                name,
                "is not valid base64 (expected 32 random bytes, base64-encoded)",
            )
        })?;
    let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
        ConfigError::new(
            name,
            format!("must decode to exactly 32 bytes, got {}", b.len()),
        )
    })?;
    Ok(Secret::new(key))
}

/// `SSPR_CODE_KEY`, which verification and notification must share.
pub fn code_key() -> Result<Secret<[u8; 32]>, ConfigError> {
    let raw = required(
        "SSPR_CODE_KEY",
        "32 random bytes in base64, shared by verification and notification; generate one with `openssl rand -base64 32`",
    )?;
    parse_key("SSPR_CODE_KEY", &raw)
}

/// Settings every service reads.
#[derive(Debug, Clone)]
pub struct CommonSettings {
    /// `SSPR_NATS_URL`, default `nats://127.0.0.1:4222`.
    pub nats_url: String,
    /// `SSPR_DATA_DIR` (default `./data`) and `SSPR_DATABASE_URL`.
    pub db: DbSettings,
    /// `SSPR_METRICS_ADDR`: where `/healthz` and `/readyz` are served; `None` when set to `off`.
    pub metrics_addr: Option<SocketAddr>,
}

impl CommonSettings {
    /// Reads the common settings; `default_metrics_addr` differs per binary so that several
    /// services can run on one host without clashing.
    pub fn from_env(default_metrics_addr: &str) -> Result<Self, ConfigError> {
        let nats_url = var("SSPR_NATS_URL").unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned());
        if !(nats_url.starts_with("nats://")
            || nats_url.starts_with("tls://")
            || nats_url.contains(':'))
        {
            return Err(ConfigError::new(
                "SSPR_NATS_URL",
                format!("expected nats://host:port, got {nats_url:?}"),
            ));
        }
        let data_dir = PathBuf::from(var("SSPR_DATA_DIR").unwrap_or_else(|| "./data".to_owned()));
        let database_url = var("SSPR_DATABASE_URL");
        if let Some(url) = &database_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(ConfigError::new(
                "SSPR_DATABASE_URL",
                "must be a PostgreSQL URL (postgres://user@host:5432/db); leave it unset for SQLite files under SSPR_DATA_DIR",
            ));
        }
        let metrics_addr = match var("SSPR_METRICS_ADDR").as_deref() {
            Some("off") => None,
            _ => Some(socket_addr("SSPR_METRICS_ADDR", default_metrics_addr)?),
        };
        Ok(Self {
            nats_url,
            db: DbSettings {
                data_dir,
                database_url,
            },
            metrics_addr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2".to_owned());
        assert_eq!(format!("{s:?}"), "<redacted>");
    }

    #[test]
    fn key_must_be_32_bytes() {
        let short = base64::engine::general_purpose::STANDARD.encode([1u8; 16]);
        let err = parse_key("SSPR_CODE_KEY", &short)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("SSPR_CODE_KEY: must decode to exactly 32 bytes, got 16")
        );
        let ok = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(
            parse_key("SSPR_CODE_KEY", &ok).map(|k| *k.expose()).ok(),
            Some([7u8; 32])
        );
        assert!(parse_key("SSPR_CODE_KEY", "not base64!").is_err());
    }
}
