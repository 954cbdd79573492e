//! The code key ring: `SSPR_CODE_KEY` (the current key, with its id) and
//! `SSPR_CODE_KEYS_PREVIOUS` (keys rotated out, still accepted), shared by verification and
//! notification.
//!
//! Rotation without downtime: the current key seals new deliveries and hashes new codes; a
//! previous key still opens the deliveries and checks the codes issued under it until those
//! expire (10 minutes), after which it can be dropped from the list.
//!
//! Formats: `SSPR_CODE_KEY` is `<kid>:<base64 of 32 bytes>`, or the bare base64 key (kid `0`,
//! the form used before key ids existed); `SSPR_CODE_KEYS_PREVIOUS` is a comma-separated list of
//! `<kid>:<base64>`. A kid is 1 to 32 characters of `A-Z a-z 0-9 _ . -`; kids are unique.
//!
//! Invariants: keys never print (they are [`Secret`]s and errors never echo a value); a lookup
//! by an empty kid means kid `0` (deliveries and codes from before key ids).

use crate::settings::{self, ConfigError, Secret};

/// The kid of a key given without one.
pub const BARE_KEY_ID: &str = "0";
/// The current key's variable.
pub const CODE_KEY_VAR: &str = "SSPR_CODE_KEY";
/// The previous keys' variable.
pub const PREVIOUS_KEYS_VAR: &str = "SSPR_CODE_KEYS_PREVIOUS";
const MAX_KID_LEN: usize = 32;

/// One key of the ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeKey {
    pub id: String,
    pub key: Secret<[u8; 32]>,
}

/// The current key and the previous ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeKeys {
    current: CodeKey,
    previous: Vec<CodeKey>,
}

impl CodeKeys {
    /// A ring of one key with the bare-key id `0`.
    pub fn single(key: Secret<[u8; 32]>) -> Self {
        Self {
            current: CodeKey {
                id: BARE_KEY_ID.to_owned(),
                key,
            },
            previous: Vec::new(),
        }
    }

    /// A ring from parts; `None` when a kid is malformed or appears twice.
    pub fn new(current: CodeKey, previous: Vec<CodeKey>) -> Option<Self> {
        let mut seen: Vec<&str> = Vec::new();
        for k in std::iter::once(&current).chain(&previous) {
            if !valid_kid(&k.id) || seen.contains(&k.id.as_str()) {
                return None;
            }
            seen.push(&k.id);
        }
        Some(Self { current, previous })
    }

    /// Parses the two variables' values.
    pub fn parse(current: &str, previous: Option<&str>) -> Result<Self, ConfigError> {
        let current = match current.trim().split_once(':') {
            Some(_) => parse_entry(CODE_KEY_VAR, current)?,
            None => CodeKey {
                id: BARE_KEY_ID.to_owned(),
                key: settings::parse_key(CODE_KEY_VAR, current)?,
            },
        };
        let previous = previous
            .unwrap_or_default()
            .split(',')
            .filter(|e| !e.trim().is_empty())
            .map(|e| parse_entry(PREVIOUS_KEYS_VAR, e))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(current, previous).ok_or_else(|| {
            ConfigError::new(
                PREVIOUS_KEYS_VAR,
                "every key id must be unique across SSPR_CODE_KEY and SSPR_CODE_KEYS_PREVIOUS",
            )
        })
    }

    /// Reads `SSPR_CODE_KEY` (required) and `SSPR_CODE_KEYS_PREVIOUS` (optional).
    pub fn from_env() -> Result<Self, ConfigError> {
        let current = settings::required(
            CODE_KEY_VAR,
            "`<key id>:<32 random bytes in base64>` (or the bare base64 key), shared by verification and notification; generate a key with `openssl rand -base64 32`",
        )?;
        Self::parse(&current, settings::var(PREVIOUS_KEYS_VAR).as_deref())
    }

    /// The key new codes and deliveries use.
    pub fn current(&self) -> &CodeKey {
        &self.current
    }

    /// The key with this id, current or previous (empty means `0`).
    pub fn get(&self, kid: &str) -> Option<&[u8; 32]> {
        let kid = if kid.is_empty() { BARE_KEY_ID } else { kid };
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == kid)
            .map(|k| k.key.expose())
    }

    /// The previous keys, newest first as configured.
    pub fn previous(&self) -> &[CodeKey] {
        &self.previous
    }
}

fn valid_kid(kid: &str) -> bool {
    (1..=MAX_KID_LEN).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn parse_entry(variable: &str, raw: &str) -> Result<CodeKey, ConfigError> {
    let Some((kid, key)) = raw.trim().split_once(':') else {
        return Err(ConfigError::new(
            variable,
            "expected `<key id>:<base64 key>` entries",
        ));
    };
    if !valid_kid(kid) {
        return Err(ConfigError::new(
            variable,
            "a key id must be 1 to 32 characters of A-Z a-z 0-9 _ . -",
        ));
    }
    Ok(CodeKey {
        id: kid.to_owned(),
        key: settings::parse_key(variable, key)?,
    })
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    fn b64(byte: u8) -> String {
        base64::engine::general_purpose::STANDARD.encode([byte; 32])
    }

    #[test]
    fn bare_key_is_kid_zero_and_kids_are_read() {
        let bare = CodeKeys::parse(&b64(1), None).expect("bare key");
        assert_eq!(bare.current().id, "0");
        assert_eq!(bare.get(""), Some(&[1u8; 32]));
        assert_eq!(bare.get("0"), Some(&[1u8; 32]));

        let ring = CodeKeys::parse(
            &format!("k2:{}", b64(2)),
            Some(&format!("k1:{}, 0:{}", b64(1), b64(0))),
        )
        .expect("ring");
        assert_eq!(ring.current().id, "k2");
        assert_eq!(ring.current().key.expose(), &[2u8; 32]);
        assert_eq!(ring.get("k1"), Some(&[1u8; 32]));
        assert_eq!(ring.get(""), Some(&[0u8; 32]));
        assert_eq!(ring.get("k3"), None);
        assert_eq!(ring.previous().len(), 2);
    }

    #[test]
    fn malformed_rings_are_refused_without_echoing_keys() {
        let secret = b64(9);
        for (current, previous) in [
            (format!("bad kid:{secret}"), None),
            (format!("k1:{secret}"), Some(format!("k1:{secret}"))),
            (format!("k1:{secret}"), Some(secret.clone())),
            (format!("k1:{}", "short"), None),
            (format!("{}:{secret}", "x".repeat(33)), None),
        ] {
            let err = CodeKeys::parse(&current, previous.as_deref())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_else(|| panic!("{current:?} accepted"));
            assert!(!err.contains(&secret), "{err}");
        }
        assert!(format!("{:?}", CodeKeys::parse(&secret, None)).contains("redacted"));
    }
}
