//! Decoy methods for users who cannot reset (unknown, disabled, out of scope, nothing
//! registered), so StartReset answers every user id with the same shape.
//!
//! Invariants:
//! - The decoy is derived only from `HMAC-SHA256(code_key, "decoy" ‖ user_id)`: the same user id
//!   always gets the same method id and masked address (asking twice reveals nothing), and
//!   without the key nobody can tell a decoy from a real masked address.
//! - The method id has the shape of the UUID v7 ids enrolment gives real methods, with a
//!   timestamp in a plausible past window.

use chrono::{DateTime, Utc};
use hmac::Mac;

use super::code::keyed;
use super::ids::{MethodId, UserId};
use super::session::{MethodKind, SessionMethod};

/// Plausible top-level domains, weighted towards `.com` by repetition.
const TLDS: &[&str] = &[
    "com", "com", "com", "com", "net", "org", "de", "io", "co.uk", "fr", "nl", "ch",
];
/// 2023-01-01T00:00:00Z: decoy method ids claim to have been registered after this.
const ID_EPOCH_MS: u64 = 1_672_531_200_000;
/// Decoy registrations spread over about two years after [`ID_EPOCH_MS`].
const ID_SPREAD_MS: u64 = 2 * 365 * 24 * 3600 * 1000;

/// The decoy email method shown for `user_id`.
pub fn decoy_method(key: &[u8; 32], user_id: &UserId) -> SessionMethod {
    let mut mac = keyed(key);
    mac.update(b"decoy");
    mac.update(user_id.as_str().as_bytes());
    let h: [u8; 32] = mac.finalize().into_bytes().into();

    // Modulo bias here only skews which letters decoys show; nothing secret depends on it.
    let letter = |b: u8| char::from(b'a' + b % 26);
    let tld = TLDS[usize::from(h[2]) % TLDS.len()];
    let masked = format!("{}•••@{}•••.{tld}", letter(h[0]), letter(h[1]));

    let mut ms_bytes = [0u8; 8];
    ms_bytes.copy_from_slice(&h[3..11]);
    let millis = ID_EPOCH_MS + u64::from_be_bytes(ms_bytes) % ID_SPREAD_MS;
    let mut rand_bytes = [0u8; 10];
    rand_bytes.copy_from_slice(&h[11..21]);
    let id = uuid::Builder::from_unix_timestamp_millis(millis, &rand_bytes).into_uuid();
    let method_id = match MethodId::parse(&id.to_string()) {
        Ok(id) => id,
        // A UUID is 36 printable characters, always a valid method id.
        Err(_) => unreachable!("a UUID is a valid method id"),
    };
    SessionMethod {
        method_id,
        kind: MethodKind::Email,
        masked,
    }
}

/// When the decoy method id claims to have been created (for tests of plausibility).
pub fn decoy_id_time(method: &SessionMethod) -> Option<DateTime<Utc>> {
    let id = uuid::Uuid::parse_str(method.method_id.as_str()).ok()?;
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    DateTime::from_timestamp(i64::try_from(secs).ok()?, nanos)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn deterministic_per_key_and_user() {
        let key = [3u8; 32];
        let a = decoy_method(&key, &user("nobody"));
        assert_eq!(a, decoy_method(&key, &user("nobody")));
        assert_ne!(a.method_id, decoy_method(&key, &user("nobody2")).method_id);
        assert_ne!(
            a.method_id,
            decoy_method(&[4u8; 32], &user("nobody")).method_id
        );
        assert_eq!(a.kind, MethodKind::Email);
    }

    #[test]
    fn masked_like_a_real_address() {
        let key = [5u8; 32];
        let mut tlds = HashSet::new();
        for i in 0..500 {
            let m = decoy_method(&key, &user(&format!("user{i}")));
            let (local, domain) = m
                .masked
                .split_once('@')
                .unwrap_or_else(|| panic!("{}", m.masked));
            let mut chars = local.chars();
            assert!(chars.next().is_some_and(|c| c.is_ascii_lowercase()));
            assert_eq!(chars.as_str(), "•••");
            let (host, tld) = domain
                .split_once('.')
                .unwrap_or_else(|| panic!("{}", m.masked));
            assert!(host.starts_with(|c: char| c.is_ascii_lowercase()) && host.ends_with("•••"));
            assert!(TLDS.contains(&tld));
            tlds.insert(tld.to_owned());
            // A UUID v7 from a plausible past.
            let id = uuid::Uuid::parse_str(m.method_id.as_str()).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(id.get_version_num(), 7);
            let t = decoy_id_time(&m).unwrap_or_else(|| panic!("no time"));
            assert!(t.timestamp_millis() >= ID_EPOCH_MS as i64);
            assert!(t.timestamp_millis() < (ID_EPOCH_MS + ID_SPREAD_MS) as i64);
        }
        assert!(tlds.len() > 5, "tlds vary: {tlds:?}");
    }
}
