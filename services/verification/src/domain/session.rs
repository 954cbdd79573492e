//! Reset sessions: the secret bearer token and the state of one reset flow.
//!
//! Invariants:
//! - A [`SessionToken`] is 32 bytes from the OS CSPRNG, given to the caller as base64url without
//!   padding and stored only as its SHA-256 (hex). It never prints through `Debug`, and it is
//!   never logged or put in an event; the public [`FlowId`] names the flow instead.
//! - A session is usable while it is active and not expired; a completing or completed session
//!   never is.
//! - `methods_remaining` counts distinct verified methods that belong to the session.
//! - A fully verified session can set a password once, within [`COMPLETE_WITHIN`] of the
//!   verification that completed it (`verified_at`); CompleteReset first claims it (`active` →
//!   `completing`, a conditional update) so concurrent calls set the password at most once.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use rand::{RngCore, TryRngCore};
use sha2::{Digest, Sha256};

use super::ids::{FlowId, Locale, MethodId, UserId};

/// A reset session lives this long after StartReset.
pub const DEFAULT_SESSION_TTL: Duration = Duration::minutes(15);
/// A verified session must set its password this long after its last required verification.
pub const COMPLETE_WITHIN: Duration = Duration::minutes(10);

/// The caller's secret bearer for one reset flow.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

impl SessionToken {
    pub const BYTES: usize = 32;

    /// A fresh token: 256 bits from the OS CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; Self::BYTES];
        // As for codes: without an OS generator no secret can be made; panicking is intended.
        rand::rngs::OsRng.unwrap_err().fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Parses a token sent by a caller; anything that is not 32 bytes of base64url is `None`
    /// (and the caller is told the session is unknown, like for any other wrong token).
    pub fn parse(raw: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
        (bytes.len() == Self::BYTES).then(|| Self(raw.to_owned()))
    }

    /// What the caller receives.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What is stored: SHA-256 of the token text, hex. The token has 256 bits of entropy, so a
    /// plain hash is enough (no salt or key needed to resist guessing).
    pub fn hash(&self) -> String {
        super::hex(&Sha256::digest(self.0.as_bytes()))
    }
}

/// A kind of contact method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MethodKind {
    Email,
    Sms,
    /// A phone call that reads the code out (delivered through the SMS provider).
    Voice,
    /// Answers to security questions: nothing is sent, the user answers picked questions.
    #[serde(rename = "security_questions")]
    SecurityQuestions,
}

/// A method offered in a session, as shown to the user (masked).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionMethod {
    pub method_id: MethodId,
    pub kind: MethodKind,
    pub masked: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    Active,
    /// Claimed by one CompleteReset call that is setting the password.
    Completing,
    Completed,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Active => "active",
            SessionStatus::Completing => "completing",
            SessionStatus::Completed => "completed",
        }
    }

    pub fn from_db(raw: &str) -> Option<Self> {
        match raw {
            "active" => Some(SessionStatus::Active),
            "completing" => Some(SessionStatus::Completing),
            "completed" => Some(SessionStatus::Completed),
            _ => None,
        }
    }
}

/// Why a session cannot be used for a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    /// Unknown, expired or completed: the caller cannot tell which.
    Unusable,
    /// The method id is not one of the session's methods.
    UnknownMethod,
    /// CompleteReset before enough methods were verified.
    NotVerified { remaining: u32 },
    /// CompleteReset more than [`COMPLETE_WITHIN`] after the verification that completed it.
    VerificationTooOld,
}

/// One reset flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetSession {
    pub flow_id: FlowId,
    pub user_id: UserId,
    pub locale: Locale,
    /// A stand-in for an unknown or ineligible user: answers like a real flow, delivers nothing,
    /// never verifies.
    pub decoy: bool,
    pub methods: Vec<SessionMethod>,
    pub methods_required: u32,
    pub verified: Vec<MethodId>,
    /// When the last required method was verified; `None` while methods remain.
    pub verified_at: Option<DateTime<Utc>>,
    pub status: SessionStatus,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl ResetSession {
    /// Fails unless the session is active and not expired.
    pub fn ensure_usable(&self, now: DateTime<Utc>) -> Result<(), SessionError> {
        if self.status == SessionStatus::Active && now < self.expires_at {
            Ok(())
        } else {
            Err(SessionError::Unusable)
        }
    }

    /// As [`ResetSession::ensure_usable`], also accepting a session a CompleteReset claimed:
    /// whether that claim is still held (or was abandoned by a call that died) is the claim's
    /// decision, made atomically by the store.
    pub fn ensure_usable_for_completion(&self, now: DateTime<Utc>) -> Result<(), SessionError> {
        let open = matches!(
            self.status,
            SessionStatus::Active | SessionStatus::Completing
        );
        if open && now < self.expires_at {
            Ok(())
        } else {
            Err(SessionError::Unusable)
        }
    }

    /// The session's method with this id.
    pub fn method(&self, method_id: &str) -> Result<&SessionMethod, SessionError> {
        self.methods
            .iter()
            .find(|m| m.method_id.as_str() == method_id)
            .ok_or(SessionError::UnknownMethod)
    }

    /// Records a verified method (idempotent), and when the session became fully verified.
    pub fn record_verified(&mut self, method_id: &MethodId, now: DateTime<Utc>) {
        if !self.verified.contains(method_id) {
            self.verified.push(method_id.clone());
        }
        if self.verified_at.is_none() && self.methods_remaining() == 0 {
            self.verified_at = Some(now);
        }
    }

    /// How many more distinct methods must be verified.
    pub fn methods_remaining(&self) -> u32 {
        let verified = self
            .methods
            .iter()
            .filter(|m| self.verified.contains(&m.method_id))
            .count();
        self.methods_required
            .saturating_sub(u32::try_from(verified).unwrap_or(u32::MAX))
    }

    /// Fails unless enough methods were verified to set a new password.
    pub fn ensure_complete(&self) -> Result<(), SessionError> {
        match self.methods_remaining() {
            0 => Ok(()),
            remaining => Err(SessionError::NotVerified { remaining }),
        }
    }

    /// Fails unless the session may set its password now: usable, fully verified, and within
    /// [`COMPLETE_WITHIN`] of the verification that completed it.
    pub fn ensure_completable(&self, now: DateTime<Utc>) -> Result<(), SessionError> {
        self.ensure_usable(now)?;
        self.ensure_verified_recently(now)
    }

    /// As [`ResetSession::ensure_completable`] for CompleteReset itself, which may also find the
    /// session claimed by an earlier CompleteReset (see
    /// [`ResetSession::ensure_usable_for_completion`]).
    pub fn ensure_completable_by_claim(&self, now: DateTime<Utc>) -> Result<(), SessionError> {
        self.ensure_usable_for_completion(now)?;
        self.ensure_verified_recently(now)
    }

    fn ensure_verified_recently(&self, now: DateTime<Utc>) -> Result<(), SessionError> {
        self.ensure_complete()?;
        match self.verified_at {
            Some(at) if now < at + COMPLETE_WITHIN => Ok(()),
            _ => Err(SessionError::VerificationTooOld),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default()
    }

    fn method(id: &str) -> SessionMethod {
        SessionMethod {
            method_id: MethodId::parse(id).unwrap_or_else(|e| panic!("{e}")),
            kind: MethodKind::Email,
            masked: "a•••@c•••.com".into(),
        }
    }

    fn session(required: u32) -> ResetSession {
        ResetSession {
            flow_id: FlowId::parse("f").unwrap_or_else(|e| panic!("{e}")),
            user_id: UserId::parse("alice").unwrap_or_else(|e| panic!("{e}")),
            locale: Locale::or_default("en"),
            decoy: false,
            methods: vec![method("m1"), method("m2")],
            methods_required: required,
            verified: vec![],
            verified_at: None,
            status: SessionStatus::Active,
            created_at: t0(),
            expires_at: t0() + DEFAULT_SESSION_TTL,
        }
    }

    #[test]
    fn tokens_are_256_bit_base64url_and_stored_hashed() {
        let tokens: Vec<SessionToken> = (0..200).map(|_| SessionToken::generate()).collect();
        let distinct: HashSet<&str> = tokens.iter().map(|t| t.expose()).collect();
        assert_eq!(distinct.len(), tokens.len());
        for t in &tokens {
            assert_eq!(
                t.expose().len(),
                43,
                "32 bytes in base64url without padding"
            );
            assert!(
                t.expose()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
            assert_eq!(SessionToken::parse(t.expose()).as_ref(), Some(t));
            let hash = t.hash();
            assert_eq!(hash.len(), 64);
            assert!(!hash.contains(t.expose()));
            assert!(!format!("{t:?}").contains(t.expose()));
        }
        // Byte-level spread: over 200 tokens every byte value shows up (6400 random bytes).
        let bytes: HashSet<u8> = tokens
            .iter()
            .flat_map(|t| URL_SAFE_NO_PAD.decode(t.expose()).unwrap_or_default())
            .collect();
        assert!(bytes.len() > 250, "{} distinct byte values", bytes.len());
    }

    #[test]
    fn malformed_tokens_are_refused() {
        assert_eq!(SessionToken::parse(""), None);
        assert_eq!(SessionToken::parse("abc"), None);
        assert_eq!(SessionToken::parse(&"A".repeat(44)), None);
        assert_eq!(SessionToken::parse(&format!("{}=", "A".repeat(43))), None);
        assert_eq!(SessionToken::parse(&"+".repeat(43)), None);
    }

    #[test]
    fn usable_only_while_active_and_not_expired() {
        let mut s = session(1);
        assert_eq!(s.ensure_usable(t0()), Ok(()));
        assert_eq!(
            s.ensure_usable(t0() + Duration::minutes(15)),
            Err(SessionError::Unusable)
        );
        s.status = SessionStatus::Completed;
        assert_eq!(s.ensure_usable(t0()), Err(SessionError::Unusable));
    }

    #[test]
    fn methods_and_completion() {
        let mut s = session(2);
        assert!(s.method("m1").is_ok());
        assert_eq!(s.method("nope"), Err(SessionError::UnknownMethod));
        assert_eq!(
            s.ensure_complete(),
            Err(SessionError::NotVerified { remaining: 2 })
        );
        let m1 = MethodId::parse("m1").unwrap_or_else(|e| panic!("{e}"));
        s.record_verified(&m1, t0());
        s.record_verified(&m1, t0());
        assert_eq!(s.verified.len(), 1, "idempotent");
        assert_eq!(s.methods_remaining(), 1);
        assert_eq!(s.verified_at, None);
        s.record_verified(
            &MethodId::parse("m2").unwrap_or_else(|e| panic!("{e}")),
            t0() + Duration::minutes(1),
        );
        assert_eq!(s.methods_remaining(), 0);
        assert_eq!(s.verified_at, Some(t0() + Duration::minutes(1)));
        assert_eq!(s.ensure_complete(), Ok(()));
        let mut one = session(1);
        one.record_verified(&m1, t0());
        one.record_verified(
            &MethodId::parse("m2").unwrap_or_else(|e| panic!("{e}")),
            t0() + Duration::minutes(5),
        );
        assert_eq!(
            one.verified_at,
            Some(t0()),
            "set once, by the completing method"
        );
        assert_eq!(one.methods_remaining(), 0, "saturating");
    }

    #[test]
    fn a_verified_session_completes_once_within_ten_minutes_of_verification() {
        let mut s = session(1);
        assert_eq!(
            s.ensure_completable(t0()),
            Err(SessionError::NotVerified { remaining: 1 })
        );
        let at = t0() + Duration::minutes(2);
        s.record_verified(&MethodId::parse("m1").unwrap_or_else(|e| panic!("{e}")), at);
        assert_eq!(s.ensure_completable(at), Ok(()));
        assert_eq!(
            s.ensure_completable(at + Duration::minutes(10) - Duration::seconds(1)),
            Ok(())
        );
        assert_eq!(
            s.ensure_completable(at + Duration::minutes(10)),
            Err(SessionError::VerificationTooOld)
        );
        s.status = SessionStatus::Completing;
        assert_eq!(s.ensure_completable(at), Err(SessionError::Unusable));
        s.status = SessionStatus::Completed;
        assert_eq!(s.ensure_completable(at), Err(SessionError::Unusable));
    }

    #[test]
    fn statuses_round_trip() {
        for s in [
            SessionStatus::Active,
            SessionStatus::Completing,
            SessionStatus::Completed,
        ] {
            assert_eq!(SessionStatus::from_db(s.as_str()), Some(s));
        }
    }
}
