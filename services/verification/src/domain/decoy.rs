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
//! - When the policy allows security questions, whether a decoy's last method is a
//!   security-questions method ("N questions", as enrolment masks it, N the questions required
//!   to register) depends only on the key, the user id and the policy (one bit of
//!   `HMAC(code_key, "decoy-questions" ‖ user_id)`). Its picks ([`decoy_pick`]) come from a keyed
//!   choice, per user id, of as many of the policy's questions as registration requires, and
//!   are keyed by the user id and the attempt number.

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
/// (contact kinds; email when none is given). When `questions_to_register` is not 0 (the policy
/// allows security questions for this user), the last method is, for about half of the user ids
/// (always when no contact kind is allowed), a security-questions method masked as enrolment
/// masks one with that many answers.
pub fn decoy_methods(
    key: &[u8; 32],
    user_id: &UserId,
    kinds: &[MethodKind],
    count: u32,
    questions_to_register: u32,
) -> Vec<SessionMethod> {
    let count = count.clamp(1, MAX_DECOY_METHODS);
    let questions =
        questions_to_register > 0 && (kinds.is_empty() || shows_questions(key, user_id));
    (0..count)
        .map(|i| {
            if questions && i + 1 == count {
                let mut method = decoy_method(key, user_id, i, MethodKind::SecurityQuestions);
                method.masked = masked_questions(questions_to_register);
                return method;
            }
            let kind = match kinds {
                [] => MethodKind::Email,
                kinds => kinds[i as usize % kinds.len()],
            };
            decoy_method(key, user_id, i, kind)
        })
        .collect()
}

/// How many methods a decoy shows when the policy requires `required` and `available` kinds
/// could be shown: at least `required`; when one is required and two kinds are available, a
/// keyed choice per user id shows two for about half of the ids, as real users often register
/// more than the minimum (a decoy that always showed the minimum would stand out).
pub fn decoy_method_count(
    key: &[u8; 32],
    user_id: &UserId,
    required: u32,
    available: usize,
) -> u32 {
    let required = required.clamp(1, MAX_DECOY_METHODS);
    if required >= MAX_DECOY_METHODS || available < 2 {
        return required;
    }
    let mut mac = keyed(key);
    mac.update(b"decoy-count");
    mac.update(user_id.as_str().as_bytes());
    let h: [u8; 32] = mac.finalize().into_bytes().into();
    if h[0] & 1 == 1 { 2 } else { 1 }
}

/// One keyed bit per user id: does the decoy show a security-questions method?
fn shows_questions(key: &[u8; 32], user_id: &UserId) -> bool {
    let mut mac = keyed(key);
    mac.update(b"decoy-questions");
    mac.update(user_id.as_str().as_bytes());
    let h: [u8; 32] = mac.finalize().into_bytes().into();
    h[0] & 1 == 1
}

/// As enrolment masks a security-questions method with `answered` answers.
fn masked_questions(answered: u32) -> String {
    if answered == 1 {
        "1 question".to_owned()
    } else {
        format!("{answered} questions")
    }
}

/// The questions a decoy is asked at its `attempt`-th pick (0 for the first): `count` distinct
/// ids among the `answered` of `available` that the decoy "registered" (a keyed choice per user
/// id, as a real user answered only that many), the same for the same key, user id, attempt and
/// questions; `None` when there are too few.
pub fn decoy_pick(
    key: &[u8; 32],
    user_id: &UserId,
    attempt: u32,
    available: &[String],
    answered: usize,
    count: usize,
) -> Option<Vec<String>> {
    let mut pool: Vec<&String> = available.iter().collect();
    pool.sort();
    pool.dedup();
    if count == 0 || pool.len() < count {
        return None;
    }
    let registered = keyed_order(key, user_id, b"decoy-answered", &pool);
    let registered: Vec<&String> = registered.into_iter().take(answered.max(count)).collect();
    let mut label = b"decoy-pick".to_vec();
    label.extend_from_slice(&attempt.to_be_bytes());
    Some(
        keyed_order(key, user_id, &label, &registered)
            .into_iter()
            .take(count)
            .cloned()
            .collect(),
    )
}

/// `ids` ordered by a keyed score per (`label`, user id, id).
fn keyed_order<'a>(
    key: &[u8; 32],
    user_id: &UserId,
    label: &[u8],
    ids: &[&'a String],
) -> Vec<&'a String> {
    let mut scored: Vec<([u8; 32], &String)> = ids
        .iter()
        .map(|id| {
            let mut mac = keyed(key);
            mac.update(label);
            mac.update(user_id.as_str().as_bytes());
            mac.update(&[0]);
            mac.update(id.as_bytes());
            (mac.finalize().into_bytes().into(), *id)
        })
        .collect();
    scored.sort();
    scored.into_iter().map(|(_, id)| id).collect()
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
        // Replaced by the caller with the policy's count (see `decoy_methods`).
        MethodKind::SecurityQuestions => masked_questions(3),
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
        let a = decoy_methods(&key, &user("nobody"), EMAIL, 1, 0);
        assert_eq!(a.len(), 1);
        assert_eq!(a, decoy_methods(&key, &user("nobody"), EMAIL, 1, 0));
        assert_ne!(
            a[0].method_id,
            decoy_methods(&key, &user("nobody2"), EMAIL, 1, 0)[0].method_id
        );
        assert_ne!(
            a[0].method_id,
            decoy_methods(&[4u8; 32], &user("nobody"), EMAIL, 1, 0)[0].method_id
        );
        assert_eq!(a[0].kind, MethodKind::Email);
        // The first method is the same whether one or two are shown.
        assert_eq!(decoy_methods(&key, &user("nobody"), EMAIL, 2, 0)[0], a[0]);
    }

    #[test]
    fn count_and_kinds_follow_the_policy() {
        let key = [6u8; 32];
        let both = [MethodKind::Email, MethodKind::Sms];
        let two = decoy_methods(&key, &user("x"), &both, 2, 0);
        assert_eq!(two.iter().map(|m| m.kind).collect::<Vec<_>>(), both);
        assert_ne!(two[0].method_id, two[1].method_id);
        let sms = decoy_methods(&key, &user("x"), &[MethodKind::Sms], 1, 0);
        assert_eq!(sms[0].kind, MethodKind::Sms);
        let tail = sms[0]
            .masked
            .strip_prefix("+•• •••• ••")
            .unwrap_or_else(|| panic!("{}", sms[0].masked));
        assert!(tail.len() == 2 && tail.bytes().all(|b| b.is_ascii_digit()));
        let voice = decoy_methods(&key, &user("x"), &[MethodKind::Voice], 1, 0);
        assert_eq!(voice[0].kind, MethodKind::Voice);
        assert!(voice[0].masked.starts_with("+•• •••• ••"));
        assert_eq!(
            decoy_methods(&key, &user("x"), &[], 0, 0).len(),
            1,
            "at least one, email by default"
        );
        assert_eq!(
            decoy_methods(&key, &user("x"), &[], 0, 0)[0].kind,
            MethodKind::Email
        );
        assert_eq!(
            decoy_methods(&key, &user("x"), EMAIL, 7, 0).len(),
            2,
            "capped"
        );
    }

    #[test]
    fn a_questions_method_for_some_users_when_the_policy_allows_them() {
        let key = [7u8; 32];
        let both = [MethodKind::Email, MethodKind::Sms];
        let (mut with, mut without) = (0, 0);
        for i in 0..200 {
            let u = user(&format!("user{i}"));
            let two = decoy_methods(&key, &u, &both, 2, 3);
            assert_eq!(two.len(), 2, "as many as required");
            // Deterministic, and decided only by key and user id (not by the count).
            assert_eq!(two, decoy_methods(&key, &u, &both, 2, 3));
            let one = decoy_methods(&key, &u, &both, 1, 3);
            let questions: Vec<_> = two
                .iter()
                .filter(|m| m.kind == MethodKind::SecurityQuestions)
                .collect();
            match questions[..] {
                [] => {
                    without += 1;
                    assert_eq!(one[0].kind, MethodKind::Email);
                    assert_eq!(two, decoy_methods(&key, &u, &both, 2, 0));
                }
                [q] => {
                    with += 1;
                    // Last, as enrolment lists it, masked as enrolment masks it.
                    assert_eq!(two[1], *q);
                    assert_eq!(two[0].kind, MethodKind::Email);
                    assert_eq!(q.masked, "3 questions");
                    assert_eq!(one[0].kind, MethodKind::SecurityQuestions);
                    assert_ne!(q.method_id, two[0].method_id);
                    let hex = q.method_id.as_str().strip_prefix("m_").unwrap_or_default();
                    let id = uuid::Uuid::try_parse(hex).unwrap_or_else(|e| panic!("{e}"));
                    assert_eq!((hex.len(), id.get_version_num()), (32, 7));
                    assert!(decoy_id_time(q).is_some());
                }
                _ => panic!("at most one questions method: {two:?}"),
            }
            // Not allowed: never.
            assert!(
                decoy_methods(&key, &u, &both, 2, 0)
                    .iter()
                    .all(|m| m.kind != MethodKind::SecurityQuestions)
            );
        }
        assert!(with > 50 && without > 50, "{with} with, {without} without");
        // Enrolment's format ("N questions", "1 question") for the policy's register count.
        let u = user("only-questions");
        let only = decoy_methods(&key, &u, &[], 1, 4);
        assert_eq!(only[0].kind, MethodKind::SecurityQuestions);
        assert_eq!(only[0].masked, "4 questions");
        assert_eq!(decoy_methods(&key, &u, &[], 1, 1)[0].masked, "1 question");
        // Another key decides differently for some user.
        assert!((0..50).any(|i| {
            let u = user(&format!("user{i}"));
            let kinds = |k: &[u8; 32]| {
                decoy_methods(k, &u, &both, 1, 3)
                    .iter()
                    .map(|m| m.kind)
                    .collect::<Vec<_>>()
            };
            kinds(&key) != kinds(&[8u8; 32])
        }));
    }

    #[test]
    fn decoy_picks_are_keyed_per_user_and_attempt() {
        let key = [9u8; 32];
        let available: Vec<String> = (1..=6).map(|i| format!("q{i}")).collect();
        let u = user("nobody");
        let first = decoy_pick(&key, &u, 0, &available, 4, 3).unwrap_or_default();
        assert_eq!(first.len(), 3);
        assert_eq!(first.iter().collect::<HashSet<_>>().len(), 3);
        assert!(first.iter().all(|q| available.contains(q)));
        assert_eq!(
            Some(&first),
            decoy_pick(&key, &u, 0, &available, 4, 3).as_ref()
        );
        // Each attempt picks again, always among the same 4 "registered" questions.
        let picks: HashSet<Vec<String>> = (0..20)
            .filter_map(|a| decoy_pick(&key, &u, a, &available, 4, 3))
            .collect();
        assert!(picks.len() > 1, "{picks:?}");
        let asked: HashSet<&String> = picks.iter().flatten().collect();
        assert_eq!(asked.len(), 4, "{asked:?}");
        assert!((0..20).any(|i| {
            decoy_pick(&key, &user(&format!("u{i}")), 0, &available, 4, 3) != Some(first.clone())
        }));
        assert_eq!(decoy_pick(&key, &u, 0, &available[..2], 3, 3), None);
        assert_eq!(decoy_pick(&key, &u, 0, &available, 3, 0), None);
    }

    #[test]
    fn masked_and_identified_like_a_real_method() {
        let key = [5u8; 32];
        let mut tlds = HashSet::new();
        for i in 0..500 {
            let m = decoy_methods(&key, &user(&format!("user{i}")), EMAIL, 1, 0).remove(0);
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

    #[test]
    fn decoy_counts_are_stable_at_least_required_and_vary_across_ids() {
        let key = [7u8; 32];
        let mut twos = 0;
        for i in 0..200 {
            let id = UserId::parse(&format!("user{i}")).expect("id");
            let n = decoy_method_count(&key, &id, 1, 2);
            assert_eq!(n, decoy_method_count(&key, &id, 1, 2), "stable");
            assert!((1..=2).contains(&n));
            twos += usize::from(n == 2);
            assert_eq!(decoy_method_count(&key, &id, 2, 2), 2);
            assert_eq!(decoy_method_count(&key, &id, 1, 1), 1);
        }
        assert!((60..=140).contains(&twos), "about half show two: {twos}");
    }
}
