//! Defences against SMS pumping (toll fraud through our SMS/voice provider), as pure rules: the
//! country allowlist, the global and per-prefix phone budgets per hour, and the circuit breaker
//! on the ratio of verified to sent phone codes.
//!
//! Invariants:
//! - Only phone codes (SMS and voice) are judged; email is never refused here.
//! - A real destination is allowed only when its E.164 number starts with an allowed prefix;
//!   an empty allowlist allows every country (the policy service warns about it at start).
//! - A phone code is counted in one prefix bucket: the longest allowed prefix it matches or,
//!   with an empty allowlist, its ITU country calling code ([`country_code`]).
//! - Decoys (unknown users; destination unknown) behave as a number in the first allowed
//!   prefix: never refused by the allowlist, refused by the global budget, that prefix's budget
//!   and the breaker exactly like a real send there. With an empty allowlist a decoy has no
//!   prefix and only the global budget and the breaker apply. Nothing is ever counted for a
//!   decoy (nothing is sent).
//! - Budgets count in fixed windows of one clock hour (UTC): a refusal's retry-after is the end
//!   of the window. The breaker looks at the sliding last hour.
//! - The breaker is open when at least `min_sends` phone codes were sent in the last hour and
//!   fewer than `min_verified_percent` % of them were verified; 0 % turns it off.
//! - Nothing here sees a full phone number in a message, a log line or an error: refusals say
//!   only which defence refused.

use chrono::{DateTime, Duration, DurationRound, Utc};

/// The window of the budgets and the breaker.
pub const WINDOW: Duration = Duration::hours(1);

/// The phone limits of the policy (`sspr.admin.v1.Limits`, defaults filled in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneRules {
    /// E.164 prefixes such as `+44` (validated by the policy service); empty: any country.
    pub allowed_prefixes: Vec<String>,
    pub budget_per_hour: u32,
    pub budget_per_prefix_per_hour: u32,
    pub breaker_min_sends: u32,
    pub breaker_min_verified_percent: u32,
}

/// Where a phone code would go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneDestination<'a> {
    /// The real number, E.164 (`+` and digits).
    Real(&'a str),
    /// A decoy method: the number is unknown.
    Decoy,
}

/// Why a phone code was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PhoneRefusal {
    #[error("codes cannot be sent to phone numbers in this country")]
    CountryNotAllowed,
    #[error(
        "too many codes were sent by SMS or voice call this hour: try again later or use another method"
    )]
    BudgetExhausted { retry_after_secs: u64 },
    #[error(
        "too many codes were sent by SMS or voice call to this country this hour: try again later or use another method"
    )]
    PrefixBudgetExhausted { retry_after_secs: u64 },
    #[error(
        "codes cannot be sent by SMS or voice call right now: try again later or use another method"
    )]
    BreakerOpen { retry_after_secs: u64 },
}

impl PhoneRefusal {
    /// The stable machine-readable reason (gRPC `ErrorInfo.reason`).
    pub fn reason(self) -> &'static str {
        match self {
            PhoneRefusal::CountryNotAllowed => "PHONE_COUNTRY_NOT_ALLOWED",
            PhoneRefusal::BudgetExhausted { .. } => "PHONE_BUDGET_EXHAUSTED",
            PhoneRefusal::PrefixBudgetExhausted { .. } => "PHONE_PREFIX_BUDGET_EXHAUSTED",
            PhoneRefusal::BreakerOpen { .. } => "SMS_BREAKER_OPEN",
        }
    }

    /// The limit's name (as in `reset.throttled` and the metric's `reason` label).
    pub fn limit(self) -> &'static str {
        match self {
            PhoneRefusal::CountryNotAllowed => "phone_country_not_allowed",
            PhoneRefusal::BudgetExhausted { .. } => "phone_budget_per_hour",
            PhoneRefusal::PrefixBudgetExhausted { .. } => "phone_budget_per_prefix_per_hour",
            PhoneRefusal::BreakerOpen { .. } => "sms_breaker_open",
        }
    }

    /// Seconds until a retry may succeed, if that is known.
    pub fn retry_after_secs(self) -> Option<u64> {
        match self {
            PhoneRefusal::CountryNotAllowed => None,
            PhoneRefusal::BudgetExhausted { retry_after_secs }
            | PhoneRefusal::PrefixBudgetExhausted { retry_after_secs }
            | PhoneRefusal::BreakerOpen { retry_after_secs } => Some(retry_after_secs),
        }
    }
}

/// Two-digit ITU-T E.164 country calling codes; every other code not starting with 1 or 7 has
/// three digits (1 and 7 are the one-digit codes). Country codes are prefix-free, so the first
/// digits of a number decide its code.
const TWO_DIGIT_CODES: &[&str] = &[
    "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46", "47",
    "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63", "64", "65",
    "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98",
];

/// The ITU country calling code of an E.164 number (`+447700900123` → `+44`), or `None` when
/// the number is not `+` and at least 4 digits.
pub fn country_code(number: &str) -> Option<&str> {
    let digits = number.strip_prefix('+')?;
    if digits.len() < 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let len = if digits.starts_with('1') || digits.starts_with('7') {
        1
    } else if TWO_DIGIT_CODES.contains(&&digits[..2]) {
        2
    } else {
        3
    };
    number.get(..=len)
}

/// The prefix bucket a phone code counts in, or the allowlist's refusal. `None` only for a
/// decoy under an empty allowlist (no prefix budget applies then).
pub fn prefix_of(
    rules: &PhoneRules,
    destination: PhoneDestination<'_>,
) -> Result<Option<String>, PhoneRefusal> {
    match destination {
        PhoneDestination::Decoy => Ok(rules.allowed_prefixes.first().cloned()),
        PhoneDestination::Real(number) if rules.allowed_prefixes.is_empty() => Ok(Some(
            country_code(number)
                .ok_or(PhoneRefusal::CountryNotAllowed)?
                .to_owned(),
        )),
        PhoneDestination::Real(number) => {
            let digits_only = number
                .strip_prefix('+')
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
            if !digits_only {
                return Err(PhoneRefusal::CountryNotAllowed);
            }
            rules
                .allowed_prefixes
                .iter()
                .filter(|p| number.starts_with(p.as_str()))
                .max_by_key(|p| p.len())
                .cloned()
                .map(Some)
                .ok_or(PhoneRefusal::CountryNotAllowed)
        }
    }
}

/// Whether the breaker is open for `sent` phone codes in the last hour of which `verified`
/// were verified.
pub fn breaker_open(rules: &PhoneRules, sent: u64, verified: u64) -> bool {
    rules.breaker_min_verified_percent > 0
        && sent >= u64::from(rules.breaker_min_sends)
        && verified.saturating_mul(100)
            < u64::from(rules.breaker_min_verified_percent).saturating_mul(sent)
}

/// The start of the budget window holding `now` (the clock hour).
pub fn window_start(now: DateTime<Utc>) -> DateTime<Utc> {
    now.duration_trunc(WINDOW).unwrap_or(now)
}

/// Whole seconds (at least 1) from `now` until the budget window holding it ends.
pub fn budget_retry_after_secs(now: DateTime<Utc>) -> u64 {
    secs_until(now, window_start(now) + WINDOW)
}

/// Whole seconds (at least 1) until the open breaker may close by itself: when the oldest send
/// of the last hour leaves the window (`None`: an hour).
pub fn breaker_retry_after_secs(now: DateTime<Utc>, oldest_send: Option<DateTime<Utc>>) -> u64 {
    secs_until(now, oldest_send.unwrap_or(now) + WINDOW)
}

fn secs_until(now: DateTime<Utc>, then: DateTime<Utc>) -> u64 {
    let millis = u64::try_from((then - now).num_milliseconds()).unwrap_or(0);
    millis.div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(prefixes: &[&str]) -> PhoneRules {
        PhoneRules {
            allowed_prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
            budget_per_hour: 1000,
            budget_per_prefix_per_hour: 300,
            breaker_min_sends: 50,
            breaker_min_verified_percent: 20,
        }
    }

    #[test]
    fn country_codes_follow_the_itu_table() {
        assert_eq!(country_code("+14155550100"), Some("+1"));
        assert_eq!(country_code("+79161234567"), Some("+7"));
        assert_eq!(country_code("+447700900123"), Some("+44"));
        assert_eq!(country_code("+33612345678"), Some("+33"));
        assert_eq!(country_code("+353871234567"), Some("+353"));
        assert_eq!(country_code("+2348012345678"), Some("+234"));
        assert_eq!(country_code("+8801712345678"), Some("+880"));
        assert_eq!(country_code("447700900123"), None);
        assert_eq!(country_code("+44"), None);
        assert_eq!(country_code("+44a7700900"), None);
    }

    #[test]
    fn only_allowed_countries_get_phone_codes() {
        let uk_ie = rules(&["+44", "+353"]);
        assert_eq!(
            prefix_of(&uk_ie, PhoneDestination::Real("+447700900123")),
            Ok(Some("+44".to_owned()))
        );
        assert_eq!(
            prefix_of(&uk_ie, PhoneDestination::Real("+79161234567")),
            Err(PhoneRefusal::CountryNotAllowed)
        );
        assert_eq!(
            prefix_of(&uk_ie, PhoneDestination::Real("+4477x")),
            Err(PhoneRefusal::CountryNotAllowed)
        );
        // The longest matching prefix is the bucket.
        let nanp = rules(&["+1", "+1264"]);
        assert_eq!(
            prefix_of(&nanp, PhoneDestination::Real("+12645551234")),
            Ok(Some("+1264".to_owned()))
        );
        assert_eq!(
            prefix_of(&nanp, PhoneDestination::Real("+14155550100")),
            Ok(Some("+1".to_owned()))
        );
        // No allowlist: any country, counted by its calling code.
        assert_eq!(
            prefix_of(&rules(&[]), PhoneDestination::Real("+79161234567")),
            Ok(Some("+7".to_owned()))
        );
    }

    #[test]
    fn decoys_are_never_refused_by_the_allowlist() {
        assert_eq!(
            prefix_of(&rules(&["+44", "+353"]), PhoneDestination::Decoy),
            Ok(Some("+44".to_owned()))
        );
        assert_eq!(prefix_of(&rules(&[]), PhoneDestination::Decoy), Ok(None));
    }

    #[test]
    fn the_breaker_opens_below_the_verified_ratio_once_enough_were_sent() {
        let r = rules(&[]);
        assert!(!breaker_open(&r, 49, 0), "too few sends to judge");
        assert!(breaker_open(&r, 50, 0));
        assert!(breaker_open(&r, 50, 9), "18 % < 20 %");
        assert!(!breaker_open(&r, 50, 10), "20 % is enough");
        assert!(!breaker_open(&r, 1000, 200));
        assert!(breaker_open(&r, 1000, 199));
        let off = PhoneRules {
            breaker_min_verified_percent: 0,
            ..r
        };
        assert!(!breaker_open(&off, 1_000_000, 0), "0 % turns it off");
    }

    #[test]
    fn retry_after_counts_to_the_end_of_the_window() {
        let t = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .expect("time")
                .with_timezone(&Utc)
        };
        let now = t("2026-11-25T10:59:30Z");
        assert_eq!(window_start(now), t("2026-11-25T10:00:00Z"));
        assert_eq!(budget_retry_after_secs(now), 30);
        assert_eq!(budget_retry_after_secs(t("2026-11-25T10:00:00Z")), 3600);
        assert_eq!(
            breaker_retry_after_secs(now, Some(t("2026-11-25T10:10:00Z"))),
            600 + 30
        );
        assert_eq!(breaker_retry_after_secs(now, None), 3600);
        assert_eq!(
            breaker_retry_after_secs(now, Some(t("2026-11-25T09:00:00Z"))),
            1,
            "at least a second"
        );
    }

    #[test]
    fn refusals_never_name_the_number() {
        for r in [
            PhoneRefusal::CountryNotAllowed,
            PhoneRefusal::BudgetExhausted {
                retry_after_secs: 1,
            },
            PhoneRefusal::PrefixBudgetExhausted {
                retry_after_secs: 1,
            },
            PhoneRefusal::BreakerOpen {
                retry_after_secs: 1,
            },
        ] {
            assert!(!r.to_string().contains('+'));
            assert!(
                r.reason()
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c == '_')
            );
        }
    }
}
