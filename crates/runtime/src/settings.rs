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

/// The NATS identity from `SSPR_NATS_USER`/`SSPR_NATS_PASSWORD`, `SSPR_NATS_CREDS` (a
/// `.creds` file) or `SSPR_NATS_NKEY_SEED`; anonymous when none is set.
pub fn nats_auth() -> Result<sspr_bus::NatsAuth, ConfigError> {
    nats_auth_from(
        var("SSPR_NATS_USER"),
        var("SSPR_NATS_PASSWORD"),
        var("SSPR_NATS_CREDS"),
        var("SSPR_NATS_NKEY_SEED"),
    )
}

fn nats_auth_from(
    user: Option<String>,
    password: Option<String>,
    creds: Option<String>,
    seed: Option<String>,
) -> Result<sspr_bus::NatsAuth, ConfigError> {
    use sspr_bus::NatsAuth;
    let given = [
        user.is_some() || password.is_some(),
        creds.is_some(),
        seed.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(ConfigError::new(
            "SSPR_NATS_USER",
            "set only one of SSPR_NATS_USER/SSPR_NATS_PASSWORD, SSPR_NATS_CREDS and SSPR_NATS_NKEY_SEED",
        ));
    }
    match (user, password, creds, seed) {
        (Some(user), Some(password), _, _) => Ok(NatsAuth::UserPassword { user, password }),
        (Some(_), None, _, _) => Err(ConfigError::new(
            "SSPR_NATS_PASSWORD",
            "is required when SSPR_NATS_USER is set",
        )),
        (None, Some(_), _, _) => Err(ConfigError::new(
            "SSPR_NATS_USER",
            "is required when SSPR_NATS_PASSWORD is set",
        )),
        (None, None, Some(path), _) => Ok(NatsAuth::CredsFile(PathBuf::from(path))),
        (None, None, None, Some(seed)) => {
            let seed = seed.trim().to_owned();
            if !seed.starts_with("SU") {
                return Err(ConfigError::new(
                    "SSPR_NATS_NKEY_SEED",
                    "must be an nkey user seed (starting with SU; `nk -gen user`)",
                ));
            }
            Ok(NatsAuth::NkeySeed(seed))
        }
        (None, None, None, None) => Ok(NatsAuth::Anonymous),
    }
}

/// Client TLS from `SSPR_NATS_TLS_CA`, `SSPR_NATS_TLS_CERT` and `SSPR_NATS_TLS_KEY` (PEM paths).
pub fn nats_tls() -> Result<sspr_bus::NatsTls, ConfigError> {
    let ca = var("SSPR_NATS_TLS_CA").map(PathBuf::from);
    let client_cert = match (var("SSPR_NATS_TLS_CERT"), var("SSPR_NATS_TLS_KEY")) {
        (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::new(
                "SSPR_NATS_TLS_KEY",
                "is required when SSPR_NATS_TLS_CERT is set",
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::new(
                "SSPR_NATS_TLS_CERT",
                "is required when SSPR_NATS_TLS_KEY is set",
            ));
        }
    };
    for (name, path) in
        [("SSPR_NATS_TLS_CA", ca.as_ref())]
            .into_iter()
            .chain(client_cert.iter().flat_map(|(c, k)| {
                [
                    ("SSPR_NATS_TLS_CERT", Some(c)),
                    ("SSPR_NATS_TLS_KEY", Some(k)),
                ]
            }))
    {
        if let Some(path) = path
            && !path.is_file()
        {
            return Err(ConfigError::new(
                name,
                format!("{} is not a readable file", path.display()),
            ));
        }
    }
    Ok(sspr_bus::NatsTls { ca, client_cert })
}

/// Default of `SSPR_RETENTION_DAYS`.
pub const DEFAULT_RETENTION_DAYS: u32 = 7;
/// Longest `SSPR_RETENTION_DAYS` and `SSPR_EVENTS_MAX_AGE_DAYS` accepted (10 years).
pub const MAX_DAYS: u32 = 3650;
/// Most replicas a JetStream stream can have.
pub const MAX_STREAM_REPLICAS: usize = 5;
/// Longest `SSPR_DUPLICATE_WINDOW_SECS` accepted: a day, which is also the delivery stream's
/// max age (JetStream wants the window within the max age) and never more than
/// `SSPR_RETENTION_DAYS`, so a consumer's processed-event ids outlive any re-publication
/// the window could miss.
pub const MAX_DUPLICATE_WINDOW_SECS: u64 = 24 * 3600;

fn number_in<T>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: T,
    range: std::ops::RangeInclusive<T>,
    unit: &str,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(raw) = lookup(name) else {
        return Ok(default);
    };
    match raw.trim().parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(ConfigError::new(
            name,
            format!(
                "expected a number of {unit} from {} to {}, got {raw:?}",
                range.start(),
                range.end()
            ),
        )),
    }
}

/// The JetStream stream settings from `SSPR_STREAM_REPLICAS` (default 1),
/// `SSPR_EVENTS_MAX_AGE_DAYS` (30) and `SSPR_DUPLICATE_WINDOW_SECS` (120).
pub fn stream_settings() -> Result<sspr_bus::streams::StreamSettings, ConfigError> {
    stream_settings_from(var)
}

/// [`stream_settings`] reading variables through `lookup` (tests).
pub fn stream_settings_from(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<sspr_bus::streams::StreamSettings, ConfigError> {
    use std::time::Duration;
    let defaults = sspr_bus::streams::StreamSettings::default();
    let replicas = number_in(
        &lookup,
        "SSPR_STREAM_REPLICAS",
        defaults.replicas,
        1..=MAX_STREAM_REPLICAS,
        "replicas",
    )?;
    let max_age_days = number_in(
        &lookup,
        "SSPR_EVENTS_MAX_AGE_DAYS",
        (defaults.events_max_age.as_secs() / 86_400) as u32,
        1..=MAX_DAYS,
        "days",
    )?;
    let window = number_in(
        &lookup,
        "SSPR_DUPLICATE_WINDOW_SECS",
        defaults.duplicate_window.as_secs(),
        1..=MAX_DUPLICATE_WINDOW_SECS,
        "seconds",
    )?;
    Ok(sspr_bus::streams::StreamSettings {
        replicas,
        events_max_age: Duration::from_secs(u64::from(max_age_days) * 86_400),
        duplicate_window: Duration::from_secs(window),
    })
}

/// `SSPR_RETENTION_DAYS` (default 7): how long finished sessions, codes, published outbox
/// rows, processed-event ids, delivery records and dead letters are kept.
pub fn retention_days() -> Result<u32, ConfigError> {
    retention_days_from(var)
}

/// [`retention_days`] reading variables through `lookup` (tests).
pub fn retention_days_from(lookup: impl Fn(&str) -> Option<String>) -> Result<u32, ConfigError> {
    number_in(
        &lookup,
        "SSPR_RETENTION_DAYS",
        DEFAULT_RETENTION_DAYS,
        1..=MAX_DAYS,
        "days",
    )
}

/// Settings every service reads.
#[derive(Debug, Clone)]
pub struct CommonSettings {
    /// `SSPR_NATS_URL`, default `nats://127.0.0.1:4222`.
    pub nats_url: String,
    /// The service's NATS identity: `SSPR_NATS_USER` + `SSPR_NATS_PASSWORD`, `SSPR_NATS_CREDS`
    /// or `SSPR_NATS_NKEY_SEED` (at most one of the three).
    pub nats_auth: sspr_bus::NatsAuth,
    /// `SSPR_NATS_TLS_CA`, `SSPR_NATS_TLS_CERT`, `SSPR_NATS_TLS_KEY`.
    pub nats_tls: sspr_bus::NatsTls,
    /// `SSPR_DATA_DIR` (default `./data`) and `SSPR_DATABASE_URL`.
    pub db: DbSettings,
    /// `SSPR_METRICS_ADDR`: where `/healthz` and `/readyz` are served; `None` when set to `off`.
    pub metrics_addr: Option<SocketAddr>,
    /// `SSPR_STREAM_REPLICAS`, `SSPR_EVENTS_MAX_AGE_DAYS`, `SSPR_DUPLICATE_WINDOW_SECS`.
    pub streams: sspr_bus::streams::StreamSettings,
    /// `SSPR_RETENTION_DAYS`.
    pub retention_days: u32,
    /// `SSPR_RPC_MAX_IN_FLIGHT` (default 256): most NATS requests a service handles at once;
    /// more are answered `UNAVAILABLE` at once.
    pub rpc_max_in_flight: usize,
    /// `SSPR_IDEMPOTENCY_HOURS` (default 24): how long idempotency keys and their answers are
    /// kept before the purge deletes them.
    pub idempotency_hours: u32,
}

/// Reads a whole number between `min` and `max` from `name`, `default` when unset.
pub fn bounded<T>(name: &str, default: T, min: T, max: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    match var(name) {
        None => Ok(default),
        Some(raw) => match raw.trim().parse::<T>() {
            Ok(v) if v >= min && v <= max => Ok(v),
            _ => Err(ConfigError::new(
                name,
                format!("expected a whole number from {min} to {max}, got {raw:?}"),
            )),
        },
    }
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
            nats_auth: nats_auth()?,
            nats_tls: nats_tls()?,
            db: DbSettings {
                data_dir,
                database_url,
            },
            metrics_addr,
            streams: stream_settings()?,
            retention_days: retention_days()?,
            rpc_max_in_flight: bounded(
                "SSPR_RPC_MAX_IN_FLIGHT",
                sspr_bus::DEFAULT_MAX_IN_FLIGHT,
                1,
                1_000_000,
            )?,
            idempotency_hours: bounded("SSPR_IDEMPOTENCY_HOURS", 24, 1, 24 * 365)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_identity_is_exactly_one_kind() {
        let s = |v: &str| Some(v.to_owned());
        assert!(matches!(
            nats_auth_from(s("gateway"), s("pw"), None, None),
            Ok(sspr_bus::NatsAuth::UserPassword { .. })
        ));
        assert!(matches!(
            nats_auth_from(None, None, s("/etc/sspr/gw.creds"), None),
            Ok(sspr_bus::NatsAuth::CredsFile(_))
        ));
        assert!(matches!(
            nats_auth_from(None, None, None, s("SUAEXAMPLE")),
            Ok(sspr_bus::NatsAuth::NkeySeed(_))
        ));
        assert!(matches!(
            nats_auth_from(None, None, None, None),
            Ok(sspr_bus::NatsAuth::Anonymous)
        ));
        assert!(nats_auth_from(s("gateway"), None, None, None).is_err());
        assert!(nats_auth_from(s("gateway"), s("pw"), s("x.creds"), None).is_err());
        let bad_seed = nats_auth_from(None, None, None, s("not-a-seed")).err();
        assert!(bad_seed.is_some_and(|e| !e.to_string().contains("not-a-seed")));
    }

    #[test]
    fn stream_and_retention_settings_have_defaults_and_bounds() {
        use std::time::Duration;
        let none = |_: &str| None;
        let s = stream_settings_from(none).expect("valid");
        assert_eq!(s.replicas, 1);
        assert_eq!(s.events_max_age, Duration::from_secs(30 * 86_400));
        assert_eq!(s.duplicate_window, Duration::from_secs(120));
        assert_eq!(retention_days_from(none).expect("valid"), 7);
        let given = |name: &str| match name {
            "SSPR_STREAM_REPLICAS" => Some("3".to_owned()),
            "SSPR_EVENTS_MAX_AGE_DAYS" => Some("90".to_owned()),
            "SSPR_DUPLICATE_WINDOW_SECS" => Some(" 600 ".to_owned()),
            "SSPR_RETENTION_DAYS" => Some("14".to_owned()),
            _ => None,
        };
        let s = stream_settings_from(given).expect("valid");
        assert_eq!(s.replicas, 3);
        assert_eq!(s.events_max_age, Duration::from_secs(90 * 86_400));
        assert_eq!(s.duplicate_window, Duration::from_secs(600));
        assert_eq!(retention_days_from(given).expect("valid"), 14);
        for (name, bad) in [
            ("SSPR_STREAM_REPLICAS", "0"),
            ("SSPR_STREAM_REPLICAS", "6"),
            ("SSPR_EVENTS_MAX_AGE_DAYS", "0"),
            ("SSPR_EVENTS_MAX_AGE_DAYS", "ten"),
            ("SSPR_DUPLICATE_WINDOW_SECS", "0"),
            ("SSPR_DUPLICATE_WINDOW_SECS", "86401"),
        ] {
            let err = stream_settings_from(|n: &str| (n == name).then(|| bad.to_owned()))
                .err()
                .map(|e| e.variable);
            assert_eq!(err.as_deref(), Some(name), "{name}={bad}");
        }
        for bad in ["0", "3651", "-1", "week"] {
            let err = retention_days_from(|_: &str| Some(bad.to_owned())).err();
            assert!(err.is_some_and(|e| e.variable == "SSPR_RETENTION_DAYS"));
        }
    }

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
