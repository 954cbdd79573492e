//! Registration sessions: the secret bearer token a user gets after proving their password, and
//! the requirements (from policy) fixed for the life of the session.
//!
//! Invariants:
//! - A [`SessionToken`] is 32 bytes from the OS CSPRNG, base64url without padding (256 bits).
//!   It is handed to the client once and stored only as its SHA-256 ([`TokenHash`]). It has no
//!   `Display`, its `Debug` is redacted, and it must never be logged or put in an event; the
//!   public handle of a flow is its [`FlowId`].
//! - A session lives [`SESSION_TTL`] from its creation; after that it is unknown.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use rand::TryRngCore;
use sha2::{Digest, Sha256};

use super::contact::MethodKind;
use super::ids::{FlowId, Locale, UserId};
use super::takeover::StepUp;

/// How long a registration session stays usable.
pub const SESSION_TTL: Duration = Duration::minutes(30);

/// The operating system could not provide random bytes.
#[derive(Debug, thiserror::Error)]
#[error("the operating system random number generator failed: {0}")]
pub struct EntropyError(String);

/// A client presented something that cannot be a session token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown or expired session")]
pub struct MalformedToken;

/// The secret bearer token of a registration session.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    const RANDOM_BYTES: usize = 32;
    /// base64url without padding of 32 bytes.
    const ENCODED_LEN: usize = 43;

    /// A fresh token from the OS CSPRNG.
    pub fn generate() -> Result<Self, EntropyError> {
        let mut bytes = [0u8; Self::RANDOM_BYTES];
        rand::rngs::OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(|e| EntropyError(e.to_string()))?;
        Ok(Self::from_random(bytes))
    }

    /// A token from 32 bytes that the caller drew from a CSPRNG.
    pub fn from_random(bytes: [u8; 32]) -> Self {
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// A token as presented by a client. Anything that is not 43 base64url characters cannot
    /// have been issued by us.
    pub fn parse(raw: &str) -> Result<Self, MalformedToken> {
        let ok = raw.len() == Self::ENCODED_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(MalformedToken)
        }
    }

    /// The token itself, to hand to the client exactly once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What is stored and looked up instead of the token.
    pub fn hash(&self) -> TokenHash {
        let digest = Sha256::digest(self.0.as_bytes());
        let mut hex = String::with_capacity(64);
        for byte in digest.iter() {
            hex.push(char::from(HEX[usize::from(byte >> 4)]));
            hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        TokenHash(hex)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

/// SHA-256 of a session token, lower-case hex: the session's primary key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(String);

impl TokenHash {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What policy requires of this user's registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirements {
    methods_required: u32,
    allowed_kinds: Vec<MethodKind>,
}

impl Requirements {
    /// From a policy verdict: `None` when the user may not use self-service reset (not eligible,
    /// or no method kind they could register). At least one method is always required.
    pub fn from_policy(
        eligible: bool,
        methods_required: u32,
        allowed: impl IntoIterator<Item = MethodKind>,
    ) -> Option<Self> {
        let mut allowed_kinds: Vec<MethodKind> = allowed.into_iter().collect();
        allowed_kinds.sort();
        allowed_kinds.dedup();
        if !eligible || allowed_kinds.is_empty() {
            return None;
        }
        Some(Self {
            methods_required: methods_required.max(1),
            allowed_kinds,
        })
    }

    pub fn methods_required(&self) -> u32 {
        self.methods_required
    }

    /// Sorted, without duplicates, never empty.
    pub fn allowed_kinds(&self) -> &[MethodKind] {
        &self.allowed_kinds
    }

    pub fn allows(&self, kind: MethodKind) -> bool {
        self.allowed_kinds.contains(&kind)
    }

    /// True when `confirmed` methods meet the requirement.
    pub fn satisfied_by(&self, confirmed: u32) -> bool {
        confirmed >= self.methods_required
    }
}

/// A live registration flow of one authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationSession {
    pub flow_id: FlowId,
    pub user_id: UserId,
    pub locale: Locale,
    pub requirements: Requirements,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Policy allowed security questions for this user when the session began (never for an
    /// admin account); the questions themselves are read from the policy in force.
    pub questions_allowed: bool,
    /// Whether the session must prove an existing method before changing the user's methods.
    pub step_up: StepUp,
    /// Hours before a method confirmed in this session may be used for reset (0 for a user's
    /// first methods).
    pub cooldown_hours: u32,
}

impl RegistrationSession {
    /// A new session for a user who just proved their password; a fresh public flow id.
    pub fn start(
        user_id: UserId,
        locale: Locale,
        requirements: Requirements,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            flow_id: FlowId::new(),
            user_id,
            locale,
            requirements,
            created_at: now,
            expires_at: now + SESSION_TTL,
            questions_allowed: false,
            step_up: StepUp::NotNeeded,
            cooldown_hours: 0,
        }
    }

    /// Usable at `now`: strictly before its expiry.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        now < self.expires_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap_or_default()
    }

    #[test]
    fn generated_tokens_are_long_random_and_url_safe() {
        let a = SessionToken::generate().expect("os rng");
        let b = SessionToken::generate().expect("os rng");
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 43);
        assert!(
            a.expose()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_eq!(SessionToken::parse(a.expose()).ok(), Some(a));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = SessionToken::from_random([7u8; 32]);
        for bad in [
            "",
            "short",
            &format!("{}=", good.expose()),
            &format!("{}A", good.expose()),
        ] {
            assert_eq!(SessionToken::parse(bad), Err(MalformedToken), "{bad:?}");
        }
        let with_plus = format!("+{}", &good.expose()[1..]);
        assert_eq!(SessionToken::parse(&with_plus), Err(MalformedToken));
    }

    #[test]
    fn token_is_stored_as_sha256_hex() {
        let token = SessionToken::from_random([0u8; 32]);
        assert_eq!(
            token.expose(),
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        );
        let hash = token.hash();
        assert_eq!(hash.as_str().len(), 64);
        assert!(
            hash.as_str()
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert!(!hash.as_str().contains(token.expose()));
        assert_eq!(hash, SessionToken::from_random([0u8; 32]).hash());
        assert_ne!(hash, SessionToken::from_random([1u8; 32]).hash());
    }

    #[test]
    fn known_sha256_vector() {
        // The hex encoding must be the standard one: check against a published vector.
        let token = SessionToken("abc".to_owned());
        assert_eq!(
            token.hash().as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn token_debug_is_redacted() {
        let token = SessionToken::from_random([9u8; 32]);
        let dbg = format!("{token:?}");
        assert!(!dbg.contains(token.expose()));
        assert!(dbg.contains("redacted"));
    }

    #[test]
    fn requirements_from_policy() {
        use MethodKind::*;
        assert_eq!(Requirements::from_policy(false, 1, [Email]), None);
        assert_eq!(Requirements::from_policy(true, 1, []), None);
        let r = Requirements::from_policy(true, 0, [Sms, Email, Sms]).expect("eligible");
        assert_eq!(r.methods_required(), 1);
        assert_eq!(r.allowed_kinds(), &[Email, Sms]);
        assert!(r.allows(Sms));
        let only_email = Requirements::from_policy(true, 2, [Email]).expect("eligible");
        assert!(!only_email.allows(Sms));
        assert!(!only_email.satisfied_by(1));
        assert!(only_email.satisfied_by(2));
        assert!(only_email.satisfied_by(3));
    }

    #[test]
    fn session_expires_after_thirty_minutes() {
        let req = Requirements::from_policy(true, 1, [MethodKind::Email]).expect("eligible");
        let user = UserId::parse("alice").expect("user id");
        let s = RegistrationSession::start(user, Locale::first_valid(["en"]), req, at(0));
        assert_eq!(s.expires_at, at(30 * 60));
        assert!(s.is_live(at(0)));
        assert!(s.is_live(at(30 * 60 - 1)));
        assert!(!s.is_live(at(30 * 60)));
        let other = RegistrationSession::start(
            s.user_id.clone(),
            s.locale.clone(),
            s.requirements.clone(),
            at(0),
        );
        assert_ne!(s.flow_id, other.flow_id);
    }
}
