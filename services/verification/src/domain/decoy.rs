//! Decoy methods for users who cannot reset (unknown, disabled, out of scope, not enough
//! methods registered), so StartReset answers every user id with the same shape.
//!
//! Invariants:
//! - Decoys are derived only from `HMAC-SHA256(code_key, "decoy" ‖ user_id)` (and, for a second
//!   method, the same with a one-byte index appended): the same user id always gets the same
//!   method ids and masked destinations (asking twice reveals nothing), and without the key
//!   nobody can tell a decoy from a real masked destination.
//! - They look like enrolment's: method ids `m_` + a UUID v7 in simple form with a timestamp in
//!   a plausible past window; emails masked `a•••@c•••.tld`, phones `+•• •••• ••NN`.
//! - A decoy flow shows as many methods as a real user of the same policy would have to verify,
//!   of the kinds that policy allows.

use chrono::{DateTime, Utc};
use hmac::Mac;

use super::code::keyed;
use super::ids::{MethodId, UserId};
use super::session::{MethodKind, SessionMethod};

/// Plausible top-level domains (the last label, as enrolment masks), weighted towards `.com`.
const TLDS: &[&str] = &[
    "com", "com", "com", "com", "net", "org", "de", "io", "uk", "fr", "nl", "ch",
];
/// 2023-01-01T00:00:00Z: decoy method ids claim to have been registered after this.
const ID_EPOCH_MS: u64 = 1_672_531_200_000;
/// Decoy registrations spread over about two years after [`ID_EPOCH_MS`].
const ID_SPREAD_MS: u64 = 2 * 365 * 24 * 3600 * 1000;
/// At most this many decoy methods (the policy never requires more).
pub const MAX_DECOY_METHODS: u32 = 2;

/// The decoy methods shown for `user_id`: `count` (1..=2) methods, cycling through `kinds`
/// (email when none is given).
pub fn decoy_methods(
    key: &[u8; 32],
    user_id: &UserId,
    kinds: &[MethodKind],
    count: u32,
) -> Vec<SessionMethod> {
    let count = count.clamp(1, MAX_DECOY_METHODS);
    (0..count)
        .map(|i| {
            let kind = match kinds {
                [] => MethodKind::Email,
                kinds => kinds[i as usize % kinds.len()],
            };
            decoy_method(key, user_id, i, kind)
        })
        .collect()
}

fn decoy_method(key: &[u8; 32], user_id: &UserId, index: u32, kind: MethodKind) -> SessionMethod {
    let mut mac = keyed(key);
    mac.update(b"decoy");
    mac.update(user_id.as_str().as_bytes());
    if index > 0 {
        mac.update(&[u8::try_from(index).unwrap_or(u8::MAX)]);
    }
    let h: [u8; 32] = mac.finalize().into_bytes().into();

    // Modulo bias here only skews which letters decoys show; nothing secret depends on it.
    let masked = match kind {
        MethodKind::Email => {
            let letter = |b: u8| char::from(b'a' + b % 26);
            let tld = TLDS[usize::from(h[2]) % TLDS.len()];
            format!("{}•••@{}•••.{tld}", letter(h[0]), letter(h[1]))
        }
        MethodKind::Sms | MethodKind::Voice => format!("+•• •••• ••{:02}", h[0] % 100),
        // Not offered as a decoy (see `start_reset`); labelled as enrolment would.
        MethodKind::SecurityQuestions => "3 questions".to_owned(),
    };

    let mut ms_bytes = [0u8; 8];
    ms_bytes.copy_from_slice(&h[3..11]);
    let millis = ID_EPOCH_MS + u64::from_be_bytes(ms_bytes) % ID_SPREAD_MS;
    let mut rand_bytes = [0u8; 10];
    rand_bytes.copy_from_slice(&h[11..21]);
    let id = uuid::Builder::from_unix_timestamp_millis(millis, &rand_bytes).into_uuid();
    let method_id = match MethodId::parse(&format!("m_{}", id.simple())) {
        Ok(id) => id,
        // 34 printable characters: always a valid method id.
        Err(_) => unreachable!("a decoy id is a valid method id"),
    };
    SessionMethod {
        method_id,
        kind,
        masked,
    }
}

/// When a decoy method id claims to have been created.
pub fn decoy_id_time(method: &SessionMethod) -> Option<DateTime<Utc>> {
    let hex = method.method_id.as_str().strip_prefix("m_")?;
    let id = uuid::Uuid::try_parse(hex).ok()?;
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

    const EMAIL: &[MethodKind] = &[MethodKind::Email];

    #[test]
    fn deterministic_per_key_and_user() {
        let key = [3u8; 32];
        let a = decoy_methods(&key, &user("nobody"), EMAIL, 1);
        assert_eq!(a.len(), 1);
        assert_eq!(a, decoy_methods(&key, &user("nobody"), EMAIL, 1));
        assert_ne!(
            a[0].method_id,
            decoy_methods(&key, &user("nobody2"), EMAIL, 1)[0].method_id
        );
        assert_ne!(
            a[0].method_id,
            decoy_methods(&[4u8; 32], &user("nobody"), EMAIL, 1)[0].method_id
        );
        assert_eq!(a[0].kind, MethodKind::Email);
        // The first method is the same whether one or two are shown.
        assert_eq!(decoy_methods(&key, &user("nobody"), EMAIL, 2)[0], a[0]);
    }

    #[test]
    fn count_and_kinds_follow_the_policy() {
        let key = [6u8; 32];
        let both = [MethodKind::Email, MethodKind::Sms];
        let two = decoy_methods(&key, &user("x"), &both, 2);
        assert_eq!(two.iter().map(|m| m.kind).collect::<Vec<_>>(), both);
        assert_ne!(two[0].method_id, two[1].method_id);
        let sms = decoy_methods(&key, &user("x"), &[MethodKind::Sms], 1);
        assert_eq!(sms[0].kind, MethodKind::Sms);
        let tail = sms[0]
            .masked
            .strip_prefix("+•• •••• ••")
            .unwrap_or_else(|| panic!("{}", sms[0].masked));
        assert!(tail.len() == 2 && tail.bytes().all(|b| b.is_ascii_digit()));
        let voice = decoy_methods(&key, &user("x"), &[MethodKind::Voice], 1);
        assert_eq!(voice[0].kind, MethodKind::Voice);
        assert!(voice[0].masked.starts_with("+•• •••• ••"));
        assert_eq!(
            decoy_methods(&key, &user("x"), &[], 0).len(),
            1,
            "at least one, email by default"
        );
        assert_eq!(
            decoy_methods(&key, &user("x"), &[], 0)[0].kind,
            MethodKind::Email
        );
        assert_eq!(decoy_methods(&key, &user("x"), EMAIL, 7).len(), 2, "capped");
    }

    #[test]
    fn masked_and_identified_like_a_real_method() {
        let key = [5u8; 32];
        let mut tlds = HashSet::new();
        for i in 0..500 {
            let m = decoy_methods(&key, &user(&format!("user{i}")), EMAIL, 1).remove(0);
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
            // `m_` + a UUID v7 (simple form) from a plausible past, like enrolment's ids.
            let hex = m
                .method_id
                .as_str()
                .strip_prefix("m_")
                .unwrap_or_else(|| panic!("{}", m.method_id));
            assert_eq!(hex.len(), 32);
            assert!(hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
            let id = uuid::Uuid::try_parse(hex).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(id.get_version_num(), 7);
            let t = decoy_id_time(&m).unwrap_or_else(|| panic!("no time"));
            assert!(t.timestamp_millis() >= ID_EPOCH_MS as i64);
            assert!(t.timestamp_millis() < (ID_EPOCH_MS + ID_SPREAD_MS) as i64);
        }
        assert!(tlds.len() > 5, "tlds vary: {tlds:?}");
    }
}
