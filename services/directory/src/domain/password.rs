//! Passwords: NFKC normalisation and Argon2id hashing in PHC format.
//!
//! Invariants:
//! - Every password is NFKC-normalised ([`Password::new`]) before it is hashed, verified or
//!   sent to the policy service, so visually identical input always gives the same hash.
//!   Nothing is ever truncated.
//! - Hashes are Argon2id v19, m = 19456 KiB, t = 2, p = 1, with a fresh random 16-byte salt,
//!   stored as PHC strings. Verification uses the parameters recorded in the stored string.
//! - [`verify`] costs one Argon2id computation whether or not there is a hash to check: without
//!   one it verifies against a dummy hash made once with the same parameters, so a caller cannot
//!   tell unknown accounts from real ones by timing.
//! - A [`Password`] or [`PasswordHash`] never prints: `Debug` shows `<redacted>`.
//! - These functions are CPU-bound (tens of milliseconds): call them off the async runtime.

use std::fmt;
use std::sync::OnceLock;

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use unicode_normalization::UnicodeNormalization;

/// Argon2id memory cost in KiB.
pub const M_COST_KIB: u32 = 19_456;
/// Argon2id iterations.
pub const T_COST: u32 = 2;
/// Argon2id lanes.
pub const P_COST: u32 = 1;

const PARAMS: Params = match Params::new(M_COST_KIB, T_COST, P_COST, None) {
    Ok(params) => params,
    // Evaluated at compile time: fixed parameters either build or the crate does not compile.
    Err(_) => panic!("invalid Argon2 parameters"),
};

fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, PARAMS)
}

/// A password in NFKC form. Never logged, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Normalises `raw` to NFKC.
    pub fn new(raw: &str) -> Self {
        Self(raw.nfkc().collect())
    }

    /// The normalised password, for hashing or for the policy check; keep it out of logs.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A stored password hash: a PHC string that parsed when it was built.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Wraps a PHC string read from storage, checking that it parses.
    pub fn from_stored(phc: &str) -> Result<Self, HashError> {
        argon2::PasswordHash::new(phc).map_err(|_| HashError::Malformed)?;
        Ok(Self(phc.to_owned()))
    }

    /// The PHC string, for storage.
    pub fn as_phc(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("argon2 failed: {0}")]
    Argon2(String),
    #[error("the stored password hash is not a valid PHC string")]
    Malformed,
}

/// Hashes `password` with a fresh random salt.
pub fn hash(password: &Password) -> Result<PasswordHash, HashError> {
    let hashed = argon2()
        .hash_password(password.expose().as_bytes())
        .map_err(|e| HashError::Argon2(e.to_string()))?;
    Ok(PasswordHash(hashed.to_string()))
}

/// True when `password` matches `stored`. With no hash (unknown account, disabled account,
/// account without a password, or an unreadable stored hash) it does the same work against a
/// dummy hash and returns false.
pub fn verify(password: &Password, stored: Option<&PasswordHash>) -> bool {
    let parsed = stored.and_then(|h| argon2::PasswordHash::new(h.as_phc()).ok());
    match parsed {
        Some(parsed) => argon2()
            .verify_password(password.expose().as_bytes(), &parsed)
            .is_ok(),
        None => {
            burn(password);
            false
        }
    }
}

/// Computes the dummy hash now, so the first unknown-user sign-in does not pay for it.
pub fn warm_up() {
    let _ = dummy();
}

fn dummy() -> Option<&'static argon2::PasswordHash> {
    static DUMMY: OnceLock<Option<argon2::PasswordHash>> = OnceLock::new();
    DUMMY
        .get_or_init(|| {
            argon2()
                .hash_password(b"sspr: no such account, same cost anyway")
                .ok()
        })
        .as_ref()
}

/// One Argon2id computation whose result is thrown away.
fn burn(password: &Password) {
    let bytes = password.expose().as_bytes();
    match dummy() {
        Some(dummy) => {
            let _ = argon2().verify_password(bytes, dummy);
        }
        // Hashing costs what verifying does: the fallback keeps the timing even.
        None => {
            let _ = argon2().hash_password(bytes);
        }
    }
}

/// Why a password changed, as carried by `password.changed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeReason {
    /// The user reset it through self-service.
    SelfServiceReset,
    /// An admin set it.
    Admin,
}

impl ChangeReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeReason::SelfServiceReset => "self_service_reset",
            ChangeReason::Admin => "admin",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "self_service_reset" => Some(ChangeReason::SelfServiceReset),
            "admin" => Some(ChangeReason::Admin),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_phc_with_the_required_cost_and_a_random_salt() {
        let pw = Password::new("correct horse battery staple");
        let a = hash(&pw).expect("hash");
        let b = hash(&pw).expect("hash");
        assert!(
            a.as_phc().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            a.as_phc()
        );
        assert_ne!(a, b, "each hash gets its own salt");
        assert!(verify(&pw, Some(&a)));
        assert!(verify(&pw, Some(&b)));
    }

    #[test]
    fn wrong_passwords_and_missing_hashes_do_not_verify() {
        let stored = hash(&Password::new("right password")).expect("hash");
        assert!(!verify(&Password::new("wrong password"), Some(&stored)));
        assert!(!verify(&Password::new("right password"), None));
        assert!(!verify(&Password::new(""), None));
    }

    #[test]
    fn passwords_are_nfkc_normalised_before_hashing_and_verifying() {
        // "Å" as one precomposed code point, and as "A" + combining ring above.
        let composed = Password::new("p\u{00C5}ssword-123");
        let decomposed = Password::new("pA\u{030A}ssword-123");
        assert_eq!(composed, decomposed);
        let stored = hash(&composed).expect("hash");
        assert!(verify(&decomposed, Some(&stored)));
        // Compatibility forms: fullwidth digits are the ASCII digits.
        let stored = hash(&Password::new("secret-123")).expect("hash");
        assert!(verify(
            &Password::new("secret-\u{FF11}\u{FF12}\u{FF13}"),
            Some(&stored)
        ));
    }

    #[test]
    fn nothing_is_truncated() {
        let long = "a".repeat(300);
        let longer = format!("{long}b");
        let stored = hash(&Password::new(&long)).expect("hash");
        assert!(verify(&Password::new(&long), Some(&stored)));
        assert!(!verify(&Password::new(&longer), Some(&stored)));
        assert!(!verify(&Password::new(&long[..299]), Some(&stored)));
    }

    #[test]
    fn stored_hashes_must_be_phc_strings() {
        assert_eq!(
            PasswordHash::from_stored("plaintext"),
            Err(HashError::Malformed)
        );
        assert_eq!(PasswordHash::from_stored(""), Err(HashError::Malformed));
        let stored = hash(&Password::new("whatever-it-is")).expect("hash");
        assert_eq!(PasswordHash::from_stored(stored.as_phc()), Ok(stored));
    }

    #[test]
    fn secrets_never_print() {
        let pw = Password::new("hunter2hunter2");
        assert_eq!(format!("{pw:?}"), "Password(<redacted>)");
        let stored = hash(&pw).expect("hash");
        assert_eq!(format!("{stored:?}"), "PasswordHash(<redacted>)");
    }

    #[test]
    fn change_reasons_round_trip() {
        for r in [ChangeReason::SelfServiceReset, ChangeReason::Admin] {
            assert_eq!(ChangeReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(ChangeReason::parse(""), None);
        assert_eq!(ChangeReason::parse("Admin"), None);
    }

    #[test]
    fn the_dummy_hash_uses_the_same_parameters() {
        let dummy = dummy().expect("dummy hash");
        assert!(
            dummy
                .to_string()
                .starts_with("$argon2id$v=19$m=19456,t=2,p=1$")
        );
    }
}
