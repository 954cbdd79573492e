//! The abuse limits of a policy (`sspr.admin.v1.Limits`): per-user, per-destination and
//! per-client-IP throttles, the SMS country allowlist, the SMS budget and its circuit breaker.
//!
//! Invariants:
//! - A [`Limits`] is valid by construction ([`Limits::parse`] or [`Limits::default`]): every
//!   set field is within the range its proto documentation gives ([`RANGES`]), and every phone
//!   prefix is a [`PhonePrefix`] (`+` and 1 to 4 digits, the first not 0), at most
//!   [`MAX_PHONE_PREFIXES`] of them, none repeated.
//! - Only what the admin set is kept: an unset field stays unset (its default lives in
//!   `sspr_proto::limits`, applied by the services that enforce it), so a later change of a
//!   default reaches every policy that did not choose a value.
//! - [`OrganisationPrefixes`] (the service setting `SSPR_ORGANISATION_PHONE_PREFIXES`) fills an
//!   empty allowlist only when limits are answered to the enforcing services; the stored policy
//!   keeps its own (possibly empty) list.

use std::collections::BTreeMap;
use std::fmt;

/// Most phone prefixes a policy may list.
pub const MAX_PHONE_PREFIXES: usize = 100;
/// Most digits in a phone prefix (E.164 country codes have 1 to 3; 4 allows a region such as
/// `+1264`).
pub const MAX_PREFIX_DIGITS: usize = 4;

/// Every numeric limit: its name (the field of `sspr.admin.v1.Limits`) and its inclusive
/// range (from that field's documentation).
pub const RANGES: &[(&str, u32, u32)] = &[
    ("phone_sends_per_hour", 1, 100),
    ("email_sends_per_10_minutes", 1, 100),
    ("failed_verifications_per_day", 1, 100),
    ("block_hours", 1, 168),
    ("destination_sends_per_hour", 1, 1000),
    ("ip_start_reset_per_minute", 1, 10_000),
    ("ip_send_code_per_minute", 1, 10_000),
    ("user_sign_in_checks_per_hour", 1, 1000),
    ("ip_sign_in_checks_per_minute", 1, 10_000),
    ("resend_after_seconds", 0, 3600),
    ("new_method_cooldown_hours", 0, 720),
    ("phone_budget_per_hour", 1, 1_000_000),
    ("phone_budget_per_prefix_per_hour", 1, 1_000_000),
    ("breaker_min_sends", 1, 100_000),
    ("breaker_min_verified_percent", 0, 100),
    ("challenge_ip_starts_per_minute", 0, 10_000),
    ("challenge_ip_failures_per_hour", 0, 10_000),
    ("code_length", 6, 10),
];

/// Limits as an admin submitted them: the numeric limits that are set, by name, and the
/// phone allowlist.
#[derive(Debug, Clone, Default)]
pub struct LimitsDraft {
    pub values: Vec<(String, u32)>,
    pub phone_allowed_prefixes: Vec<String>,
}

/// Why submitted limits were refused. The message names the field and is shown to the admin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    #[error("policy.limits has no limit named {name:?}")]
    UnknownLimit { name: String },
    #[error("policy.limits.{field} is given twice")]
    Repeated { field: &'static str },
    #[error("policy.limits.{field} must be {min} to {max}, got {got}")]
    OutOfRange {
        field: &'static str,
        min: u32,
        max: u32,
        got: u32,
    },
    #[error(
        "policy.limits.phone_allowed_prefixes has {count} entries; at most {MAX_PHONE_PREFIXES} are allowed"
    )]
    TooManyPrefixes { count: usize },
    #[error(
        "policy.limits.phone_allowed_prefixes[{index}] must be '+' and 1 to {MAX_PREFIX_DIGITS} digits, the first not 0 (e.g. \"+44\")"
    )]
    InvalidPrefix { index: usize },
    #[error("policy.limits.phone_allowed_prefixes[{index}] repeats an earlier prefix")]
    DuplicatePrefix { index: usize },
}

/// An E.164 calling-code prefix: `+` and 1 to 4 digits, the first not 0.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhonePrefix(String);

impl PhonePrefix {
    pub fn parse(raw: &str) -> Option<Self> {
        let digits = raw.strip_prefix('+')?;
        let valid = (1..=MAX_PREFIX_DIGITS).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        valid.then(|| PhonePrefix(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PhonePrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Valid limits, holding only what the admin set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    values: BTreeMap<&'static str, u32>,
    phone_allowed_prefixes: Vec<PhonePrefix>,
}

impl Limits {
    /// Validates submitted limits; the first problem found is returned.
    pub fn parse(draft: LimitsDraft) -> Result<Self, LimitsError> {
        let mut values = BTreeMap::new();
        for (name, got) in draft.values {
            let Some(&(field, min, max)) = RANGES.iter().find(|(n, _, _)| *n == name) else {
                return Err(LimitsError::UnknownLimit { name });
            };
            if !(min..=max).contains(&got) {
                return Err(LimitsError::OutOfRange {
                    field,
                    min,
                    max,
                    got,
                });
            }
            if values.insert(field, got).is_some() {
                return Err(LimitsError::Repeated { field });
            }
        }
        let phone_allowed_prefixes = parse_prefixes(&draft.phone_allowed_prefixes)?;
        Ok(Self {
            values,
            phone_allowed_prefixes,
        })
    }

    /// The set numeric limits by name (in name order); unset ones are absent.
    pub fn values(&self) -> impl Iterator<Item = (&'static str, u32)> + '_ {
        self.values.iter().map(|(k, v)| (*k, *v))
    }

    /// The value of the limit `name` if set.
    pub fn get(&self, name: &str) -> Option<u32> {
        self.values.get(name).copied()
    }

    /// The allowlist as stored (empty: the organisation's own prefixes).
    pub fn phone_allowed_prefixes(&self) -> &[PhonePrefix] {
        &self.phone_allowed_prefixes
    }

    /// The allowlist the enforcing services get: this policy's, or the organisation's when the
    /// policy lists none (empty when neither is set: any country).
    pub fn enforced_prefixes(&self, organisation: &OrganisationPrefixes) -> Vec<String> {
        let list = if self.phone_allowed_prefixes.is_empty() {
            &organisation.0
        } else {
            &self.phone_allowed_prefixes
        };
        list.iter().map(|p| p.as_str().to_owned()).collect()
    }
}

fn parse_prefixes(raw: &[String]) -> Result<Vec<PhonePrefix>, LimitsError> {
    if raw.len() > MAX_PHONE_PREFIXES {
        return Err(LimitsError::TooManyPrefixes { count: raw.len() });
    }
    let mut prefixes: Vec<PhonePrefix> = Vec::with_capacity(raw.len());
    for (index, item) in raw.iter().enumerate() {
        let prefix = PhonePrefix::parse(item).ok_or(LimitsError::InvalidPrefix { index })?;
        if prefixes.contains(&prefix) {
            return Err(LimitsError::DuplicatePrefix { index });
        }
        prefixes.push(prefix);
    }
    Ok(prefixes)
}

/// The organisation's own countries (`SSPR_ORGANISATION_PHONE_PREFIXES`): the SMS allowlist of
/// a policy that lists none. Empty: phone codes may go to any country.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrganisationPrefixes(Vec<PhonePrefix>);

impl OrganisationPrefixes {
    /// Parses a comma-separated list such as `+44, +353` (blanks around entries ignored;
    /// an empty string is the empty list). The error says what is wrong, for the setting's
    /// error message.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut prefixes: Vec<PhonePrefix> = Vec::new();
        for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let prefix = PhonePrefix::parse(item).ok_or_else(|| {
                format!(
                    "{item:?} is not a phone prefix ('+' and 1 to {MAX_PREFIX_DIGITS} digits, e.g. +44)"
                )
            })?;
            if !prefixes.contains(&prefix) {
                prefixes.push(prefix);
            }
        }
        if prefixes.len() > MAX_PHONE_PREFIXES {
            return Err(format!("at most {MAX_PHONE_PREFIXES} prefixes are allowed"));
        }
        Ok(Self(prefixes))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_strings(&self) -> Vec<String> {
        self.0.iter().map(|p| p.as_str().to_owned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_value(name: &str, value: u32) -> Result<Limits, LimitsError> {
        Limits::parse(LimitsDraft {
            values: vec![(name.to_owned(), value)],
            ..Default::default()
        })
    }

    fn with_prefixes(list: &[&str]) -> Result<Limits, LimitsError> {
        Limits::parse(LimitsDraft {
            phone_allowed_prefixes: list.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
    }

    #[test]
    fn unset_limits_are_valid_and_stay_unset() {
        let limits = Limits::parse(LimitsDraft::default()).expect("valid");
        assert_eq!(limits.values().count(), 0);
        assert_eq!(limits, Limits::default());
        let one = with_value("phone_sends_per_hour", 3).expect("valid");
        assert_eq!(one.get("phone_sends_per_hour"), Some(3));
        assert_eq!(one.get("code_length"), None);
    }

    #[test]
    fn every_range_is_enforced_at_both_ends() {
        for &(field, min, max) in RANGES {
            assert!(with_value(field, min).is_ok(), "{field} = {min}");
            assert!(with_value(field, max).is_ok(), "{field} = {max}");
            assert_eq!(
                with_value(field, max + 1),
                Err(LimitsError::OutOfRange {
                    field,
                    min,
                    max,
                    got: max + 1
                })
            );
            if min > 0 {
                assert!(with_value(field, min - 1).is_err(), "{field} = {}", min - 1);
            }
        }
    }

    #[test]
    fn the_error_names_the_field_and_its_range() {
        let err = with_value("phone_sends_per_hour", 0).expect_err("0 is out of range");
        assert_eq!(
            err.to_string(),
            "policy.limits.phone_sends_per_hour must be 1 to 100, got 0"
        );
        assert!(matches!(
            with_value("sms_per_year", 1),
            Err(LimitsError::UnknownLimit { .. })
        ));
        let twice = Limits::parse(LimitsDraft {
            values: vec![("block_hours".into(), 2), ("block_hours".into(), 3)],
            ..Default::default()
        });
        assert_eq!(
            twice,
            Err(LimitsError::Repeated {
                field: "block_hours"
            })
        );
    }

    #[test]
    fn prefixes_must_be_plus_and_one_to_four_digits() {
        for good in ["+1", "+44", "+353", "+1264"] {
            assert!(PhonePrefix::parse(good).is_some(), "{good}");
        }
        for bad in [
            "",
            "+",
            "44",
            "+0",
            "+12345",
            "+4a",
            " +44",
            "+44 ",
            "++44",
            "+\u{664}\u{664}",
        ] {
            assert!(PhonePrefix::parse(bad).is_none(), "{bad:?}");
        }
        assert!(with_prefixes(&["+44", "+1"]).is_ok());
        assert_eq!(
            with_prefixes(&["+44", "44"]),
            Err(LimitsError::InvalidPrefix { index: 1 })
        );
        assert_eq!(
            with_prefixes(&["+44", "+44"]),
            Err(LimitsError::DuplicatePrefix { index: 1 })
        );
        let many: Vec<String> = (1000..1101).map(|n| format!("+{n}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(
            with_prefixes(&refs),
            Err(LimitsError::TooManyPrefixes { count: 101 })
        );
    }

    #[test]
    fn organisation_prefixes_fill_only_an_empty_allowlist() {
        let org = OrganisationPrefixes::parse(" +44, +353,,+44 ").expect("valid");
        assert_eq!(org.as_strings(), vec!["+44", "+353"]);
        assert!(OrganisationPrefixes::parse("").expect("empty").is_empty());
        assert!(OrganisationPrefixes::parse("+44,44").is_err());

        let empty = Limits::default();
        assert_eq!(empty.enforced_prefixes(&org), vec!["+44", "+353"]);
        let own = with_prefixes(&["+1"]).expect("valid");
        assert_eq!(own.enforced_prefixes(&org), vec!["+1"]);
        assert!(
            empty
                .enforced_prefixes(&OrganisationPrefixes::default())
                .is_empty()
        );
    }
}
