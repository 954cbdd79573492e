//! The verification service's own settings.
//!
//! `SSPR_CODE_KEY` is required (the binary exits with a clear line without it); with
//! `SSPR_CODE_KEYS_PREVIOUS` it forms the key ring ([`CodeKeys`]): the current key hashes new
//! codes and seals new deliveries, previous keys still check the codes issued under them.
//! `SSPR_DECOY_KEY` (optional, base64 of 32 bytes) keys the decoy methods; without it the
//! current code key does, so decoys change when that key rotates. Keys never print: they are
//! held in [`Secret`]s.

use chrono::Duration;
use sspr_runtime::CodeKeys;
use sspr_runtime::settings::{self, ConfigError, Secret};

use crate::domain::code::{CodeLength, CodeRules, DEFAULT_CODE_TTL, DEFAULT_MAX_ATTEMPTS};
use crate::domain::session::DEFAULT_SESSION_TTL;

/// Default minimum time between two codes for the same method.
pub const DEFAULT_RESEND_AFTER: Duration = Duration::seconds(30);
/// Largest accepted `SSPR_RESEND_AFTER_SECS`.
const MAX_RESEND_AFTER_SECS: i64 = 3600;

#[derive(Debug, Clone)]
pub struct Config {
    /// Keys the code hashes and the sealed deliveries (shared with notification).
    pub code_keys: CodeKeys,
    /// Keys the decoy methods of unknown users (stable across code-key rotations when set).
    pub decoy_key: Secret<[u8; 32]>,
    /// `SSPR_RESEND_AFTER_SECS` (default 30; 0 turns the wait off, for tests).
    pub resend_after: Duration,
    pub code_ttl: Duration,
    pub max_attempts: u32,
    pub session_ttl: Duration,
    pub code_length: CodeLength,
}

impl Config {
    /// The defaults, with `code_key` as the only code key (id `0`) and the decoy key.
    pub fn new(code_key: Secret<[u8; 32]>) -> Self {
        Self::with_keys(CodeKeys::single(code_key.clone()), code_key)
    }

    /// The defaults, with a key ring and a decoy key.
    pub fn with_keys(code_keys: CodeKeys, decoy_key: Secret<[u8; 32]>) -> Self {
        Self {
            code_keys,
            decoy_key,
            resend_after: DEFAULT_RESEND_AFTER,
            code_ttl: DEFAULT_CODE_TTL,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            session_ttl: DEFAULT_SESSION_TTL,
            code_length: CodeLength::default(),
        }
    }

    /// Reads `SSPR_CODE_KEY` (required), `SSPR_CODE_KEYS_PREVIOUS`, `SSPR_DECOY_KEY` and
    /// `SSPR_RESEND_AFTER_SECS` (optional).
    pub fn from_env() -> Result<Self, ConfigError> {
        let code_keys = CodeKeys::from_env()?;
        let decoy_key = match settings::var("SSPR_DECOY_KEY") {
            Some(raw) => settings::parse_key("SSPR_DECOY_KEY", &raw)?,
            None => code_keys.current().key.clone(),
        };
        let mut config = Self::with_keys(code_keys, decoy_key);
        if let Some(raw) = settings::var("SSPR_RESEND_AFTER_SECS") {
            config.resend_after = parse_resend_after(&raw)?;
        }
        Ok(config)
    }

    pub(crate) fn rules(&self) -> CodeRules {
        CodeRules {
            length: self.code_length,
            ttl: self.code_ttl,
            max_attempts: self.max_attempts,
            resend_after: self.resend_after,
        }
    }
}

fn parse_resend_after(raw: &str) -> Result<Duration, ConfigError> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|s| (0..=MAX_RESEND_AFTER_SECS).contains(s))
        .map(Duration::seconds)
        .ok_or_else(|| {
            ConfigError::new(
                "SSPR_RESEND_AFTER_SECS",
                format!("expected whole seconds from 0 to {MAX_RESEND_AFTER_SECS}, got {raw:?}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resend_after_parsing() {
        assert_eq!(parse_resend_after("0").ok(), Some(Duration::zero()));
        assert_eq!(parse_resend_after(" 45 ").ok(), Some(Duration::seconds(45)));
        assert!(parse_resend_after("-1").is_err());
        assert!(parse_resend_after("3601").is_err());
        assert!(parse_resend_after("soon").is_err());
    }

    #[test]
    fn defaults_and_key_never_printed() {
        let config = Config::new(Secret::new([42u8; 32]));
        assert_eq!(config.code_ttl, Duration::minutes(10));
        assert_eq!(config.max_attempts, 5);
        assert_eq!(config.session_ttl, Duration::minutes(15));
        assert_eq!(config.code_length.get(), 8);
        assert_eq!(config.resend_after, Duration::seconds(30));
        assert!(!format!("{config:?}").contains("42"));
    }
}
