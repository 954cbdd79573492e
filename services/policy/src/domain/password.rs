//! The password rules a candidate password must pass, and the strength estimate returned with
//! the verdict.
//!
//! Rules (each broken rule is one [`Violation`] with a stable id, see [`Rule::as_str`]):
//! - length: at least the policy's `min_length` (default 8) and at most [`MAX_CHARS`] (256)
//!   characters after NFKC; no composition rules (no "one digit, one capital");
//! - banned passwords, Entra-style (see [`banned`] for the algorithm): the candidate is
//!   normalised and searched for common passwords, the admin's custom terms, the user's name
//!   and the organisation name; it passes only with a score of at least
//!   [`banned::PASSING_SCORE`]. When it fails, each kind of term found is a violation
//!   (`banned_password`, `banned_term`, `contains_name`, `contains_organisation`) and
//!   `score_too_low` says that there is too little else. These are reported only when the
//!   length is right: a too-short password is told just that, so the message stays short and
//!   the next attempt is judged in full.
//!
//! Invariants:
//! - The candidate is NFKC-normalised before any rule looks at it (the directory hashes the
//!   same normalised form), and lengths are counted in characters of that form.
//! - Nothing is ever truncated: a candidate over [`MAX_CHARS`] is refused, not shortened (and
//!   not analysed further, which also bounds the work a request can cause).
//! - The candidate never leaves this module except as the yes/no of each rule and the strength:
//!   it is not in a violation message, a `Debug` output or a log line. Messages do not name the
//!   banned term that matched either.

pub mod banned;
pub mod strength;

use unicode_normalization::UnicodeNormalization;

use crate::domain::password_policy::PasswordRules;
use banned::{GLOBAL, NameTerms, Normalised, TermKind};
pub use strength::Strength;

/// Longest accepted password, in characters after NFKC.
pub const MAX_CHARS: usize = 256;

/// A rule a password can break, in the order violations are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    TooShort,
    TooLong,
    /// Contains (or is, or is one edit from) a password of the global list.
    BannedPassword,
    /// Contains a term of the admin's custom list.
    BannedTerm,
    /// Contains the user's id or a part of their display name.
    ContainsName,
    /// Contains the organisation name or a part of it.
    ContainsOrganisation,
    /// Too little besides the terms found (score below 5).
    ScoreTooLow,
}

impl Rule {
    /// Stable machine-readable name, sent to callers.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::TooShort => "too_short",
            Rule::TooLong => "too_long",
            Rule::BannedPassword => "banned_password",
            Rule::BannedTerm => "banned_term",
            Rule::ContainsName => "contains_name",
            Rule::ContainsOrganisation => "contains_organisation",
            Rule::ScoreTooLow => "score_too_low",
        }
    }
}

/// One broken rule. `message` is phrased to follow "The password ..." and never contains the
/// password or a banned term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: Rule,
    pub message: String,
}

impl Violation {
    fn new(rule: Rule, min_length: u32) -> Self {
        let message = match rule {
            Rule::TooShort => format!("must be at least {min_length} characters"),
            Rule::TooLong => format!("must be at most {MAX_CHARS} characters"),
            Rule::BannedPassword => "must not be or contain a commonly used password".to_owned(),
            Rule::BannedTerm => {
                "must not contain a word your organisation does not allow".to_owned()
            }
            Rule::ContainsName => "must not contain your name or user id".to_owned(),
            Rule::ContainsOrganisation => "must not contain the organisation's name".to_owned(),
            Rule::ScoreTooLow => "is too easy to guess: add more words or characters that are \
                                  not common passwords or names"
                .to_owned(),
        };
        Self { rule, message }
    }
}

/// Whose password it is: the names a password must not be built from.
#[derive(Debug, Clone, Copy)]
pub struct Account<'a> {
    pub user_id: &'a str,
    pub display_name: &'a str,
}

/// The verdict on a candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// Empty means accepted.
    pub violations: Vec<Violation>,
    pub strength: Strength,
}

impl Assessment {
    pub fn accepted(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Checks `candidate` for `account` under `rules`.
pub fn check(candidate: &str, account: Account<'_>, rules: &PasswordRules) -> Assessment {
    let min_length = rules.min_length();
    let chars = candidate.nfkc().count();
    let mut broken = Vec::new();
    if chars < usize::try_from(min_length).unwrap_or(usize::MAX) {
        broken.push(Rule::TooShort);
    }
    if chars > MAX_CHARS {
        broken.push(Rule::TooLong);
        return Assessment {
            violations: broken
                .into_iter()
                .map(|r| Violation::new(r, min_length))
                .collect(),
            strength: Strength::unrated(),
        };
    }
    let normalised = Normalised::new(candidate);
    let names = NameTerms::new(
        account.user_id,
        account.display_name,
        rules.organisation_name(),
    );
    let analysis = banned::analyse(&normalised, &GLOBAL, rules.custom_index(), &names);
    let found = analysis.kinds_found();
    // A too-short password gets only that reason: the next attempt is judged in full.
    if broken.is_empty() && !analysis.passes() && !found.is_empty() {
        broken.extend(found.iter().map(|kind| match kind {
            TermKind::Common { .. } => Rule::BannedPassword,
            TermKind::Custom => Rule::BannedTerm,
            TermKind::Name => Rule::ContainsName,
            TermKind::Organisation => Rule::ContainsOrganisation,
        }));
        broken.push(Rule::ScoreTooLow);
        broken.sort();
    }
    Assessment {
        violations: broken
            .into_iter()
            .map(|r| Violation::new(r, min_length))
            .collect(),
        strength: Strength::estimate(&normalised, &analysis),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::password_policy::PasswordRulesDraft;

    const ALICE: Account<'static> = Account {
        user_id: "alice",
        display_name: "Alice Example",
    };

    fn rules_of(candidate: &str, account: Account<'_>, rules: &PasswordRules) -> Vec<Rule> {
        check(candidate, account, rules)
            .violations
            .into_iter()
            .map(|v| v.rule)
            .collect()
    }

    fn rules(candidate: &str) -> Vec<Rule> {
        rules_of(candidate, ALICE, &PasswordRules::default())
    }

    fn custom(terms: &[&str], organisation: &str) -> PasswordRules {
        PasswordRules::parse(PasswordRulesDraft {
            min_length: 8,
            custom_banned_terms: terms.iter().map(|t| (*t).to_owned()).collect(),
            organisation_name: organisation.to_owned(),
            history_count: 0,
        })
        .expect("valid rules")
    }

    const BANNED: [Rule; 2] = [Rule::BannedPassword, Rule::ScoreTooLow];

    #[test]
    fn a_strong_passphrase_is_accepted() {
        let a = check(
            "correct horse battery staple",
            ALICE,
            &PasswordRules::default(),
        );
        assert!(a.accepted(), "{:?}", a.violations);
        assert_eq!(a.strength.score, 4);
    }

    #[test]
    fn an_exact_common_password_is_refused() {
        assert_eq!(rules("password"), BANNED);
        assert_eq!(rules("qwertyuiop"), BANNED);
        assert_eq!(rules("PASSWORD"), BANNED, "case does not matter");
    }

    #[test]
    fn a_leetspeak_variant_is_refused() {
        assert_eq!(rules("P@ssw0rd"), BANNED);
        assert_eq!(rules("p@$$w0rd"), BANNED);
        assert_eq!(rules("Dr@g0n!!"), BANNED);
    }

    #[test]
    fn one_edit_away_is_refused() {
        assert_eq!(rules("passwprd"), BANNED, "substitution");
        assert_eq!(rules("passwordd"), BANNED, "insertion");
        assert_eq!(rules("footbal1"), BANNED, "leetspeak and fuzzy together");
    }

    #[test]
    fn substrings_score_one_point_plus_the_rest() {
        // q, q, password, q, q: 5 points, accepted (as in Entra).
        assert!(rules("qqpasswordqq").is_empty());
        // 4 points: refused.
        assert_eq!(rules("qpasswordqq"), BANNED);
        // "xxpass" and "word" are themselves common: xxpass + word + x + x is 4 points.
        assert_eq!(rules("xxpasswordxx"), BANNED);
        assert_eq!(rules("mypassword"), BANNED);
    }

    #[test]
    fn score_below_five_is_refused_even_when_every_term_is_long() {
        // Three common passwords and one extra character: 4 points for 19 characters.
        assert_eq!(rules("dragonmonkeyshadow!"), BANNED);
        assert!(
            rules("dragon, monkey, shadow").is_empty(),
            "separators add points"
        );
    }

    #[test]
    fn the_users_name_is_refused() {
        // alice + 2, o, 2, a, i, i: 7 points, accepted as in Entra (the name costs 4 points).
        assert!(rules("alice2024!!").is_empty());
        // alice + i, i, i: 4 points.
        assert_eq!(
            rules("ALICE!!!"),
            vec![Rule::ContainsName, Rule::ScoreTooLow]
        );
        assert_eq!(
            rules("exampleexample"),
            vec![Rule::ContainsName, Rule::ScoreTooLow]
        );
        // The user id is a name too.
        let bob = Account {
            user_id: "bsmith42",
            display_name: "",
        };
        assert_eq!(
            rules_of("Bsmith42!", bob, &PasswordRules::default()),
            vec![Rule::ContainsName, Rule::ScoreTooLow]
        );
        // A name inside a long passphrase is fine.
        assert!(rules("alice likes long walks").is_empty());
    }

    #[test]
    fn the_organisation_name_is_refused() {
        let with_org = custom(&[], "Contoso");
        assert_eq!(
            rules_of("C0nt0s0!!", ALICE, &with_org),
            vec![Rule::ContainsOrganisation, Rule::ScoreTooLow]
        );
        assert!(rules_of("C0nt0s0!!", ALICE, &PasswordRules::default()).is_empty());
    }

    #[test]
    fn custom_terms_are_refused_exactly_fuzzily_and_as_substrings() {
        let with_terms = custom(&["Quokkaville", "blue falcon"], "");
        for candidate in [
            "quokkaville",
            "Qu0kk@v1lle",
            "quokkavxlle",
            "xquokkavillex",
            "bluefalcon!",
            "blue falcon",
        ] {
            let broken = rules_of(candidate, ALICE, &with_terms);
            assert_eq!(
                broken,
                vec![Rule::BannedTerm, Rule::ScoreTooLow],
                "{candidate}"
            );
        }
        assert!(rules_of("quokkaville", ALICE, &PasswordRules::default()).is_empty());
        assert!(rules_of("xxquokkavillexx", ALICE, &with_terms).is_empty());
        // Custom and global terms together.
        assert_eq!(
            rules_of("quokkavilledragon", ALICE, &with_terms),
            vec![Rule::BannedPassword, Rule::BannedTerm, Rule::ScoreTooLow]
        );
    }

    #[test]
    fn length_limits_are_inclusive_and_follow_the_policy() {
        assert_eq!(rules("zq8!kx3"), vec![Rule::TooShort]);
        assert!(rules("zq8!kx3#").is_empty());
        let long_min = custom(&[], "");
        assert!(rules_of("zq8!kx3#", ALICE, &long_min).is_empty());
        let twelve = PasswordRules::parse(PasswordRulesDraft {
            min_length: 12,
            ..PasswordRulesDraft::default()
        })
        .expect("valid");
        let a = check("zq8!kx3#vw", ALICE, &twelve);
        assert_eq!(a.violations[0].rule, Rule::TooShort);
        assert_eq!(a.violations[0].message, "must be at least 12 characters");
        assert_eq!(rules(""), vec![Rule::TooShort]);
    }

    #[test]
    fn a_256_character_password_is_checked_whole_and_257_refused() {
        let unit = "Tq7#mZ!r";
        let max = unit.repeat(32);
        assert_eq!(max.chars().count(), 256);
        assert!(rules(&max).is_empty());
        // Not truncated: a 257th character makes the whole refused.
        assert_eq!(rules(&format!("{max}x")), vec![Rule::TooLong]);
        // A password is not truncated before the banned check either: a banned tail counts.
        let mut tail = "zq8!kx3#".repeat(31);
        tail.push_str("password");
        assert_eq!(tail.chars().count(), 256);
        assert!(rules(&tail).is_empty());
    }

    #[test]
    fn length_counts_characters_after_nfkc() {
        // U+FB03 (ffi ligature) is one character and becomes "ffi" under NFKC.
        assert_eq!(rules("\u{FB03}\u{FB03}q"), vec![Rule::TooShort]);
        assert!(rules("\u{FB03}\u{FB03}qz").is_empty());
        // "e" + combining acute composes to one character.
        assert!(rules(&"e\u{301}".repeat(8)).is_empty());
        assert_eq!(rules(&"e\u{301}".repeat(7)), vec![Rule::TooShort]);
        // Eight two-byte characters: 8 characters.
        assert!(rules("éèêëēĕėę").is_empty());
    }

    #[test]
    fn nfkc_forms_of_banned_passwords_are_refused() {
        // Fullwidth "password".
        assert_eq!(
            rules("\u{FF50}\u{FF41}\u{FF53}\u{FF53}\u{FF57}\u{FF4F}\u{FF52}\u{FF44}"),
            BANNED
        );
        // Fullwidth user id.
        assert!(rules("\u{FF41}\u{FF4C}\u{FF49}\u{FF43}\u{FF45}!!!").contains(&Rule::ContainsName));
    }

    #[test]
    fn realistic_passphrases_from_the_test_suites_pass() {
        for p in [
            "correct horse battery",
            "correct horse battery staple",
            "a brand new passphrase",
            "a long secret phrase",
            "first password 1",
            "second password 2",
            "first secret phrase",
            "initial password!",
            "a fine password",
            "a new password",
            "new password works",
            "dave's password",
            "erin's password",
            "bob's password",
        ] {
            let a = check(p, ALICE, &PasswordRules::default());
            assert!(a.accepted(), "{p:?}: {:?}", a.violations);
        }
    }

    #[test]
    fn messages_never_echo_the_password_or_the_term() {
        let with_terms = custom(&["quokkaville"], "Contoso");
        for (candidate, secret) in [
            ("s3cret", "s3cret"),
            ("dragon12", "dragon"),
            ("quokkaville!", "quokkaville"),
            ("contoso!!", "contoso"),
            ("alice!!!", "alice"),
        ] {
            let a = check(candidate, ALICE, &with_terms);
            assert!(!a.accepted());
            for v in a.violations {
                assert!(!v.message.to_lowercase().contains(secret), "{v:?}");
            }
        }
        assert_eq!(Rule::TooLong.as_str(), "too_long");
        assert_eq!(Rule::ContainsOrganisation.as_str(), "contains_organisation");
    }

    #[test]
    fn a_too_short_password_is_told_only_that() {
        assert_eq!(rules("alice"), vec![Rule::TooShort]);
        assert_eq!(rules("short"), vec![Rule::TooShort]);
    }

    #[test]
    fn several_banned_rules_can_break_at_once() {
        let with_org = custom(&["quokkaville"], "Contoso");
        assert_eq!(
            rules_of("alicecontosoquokkavilledragon", ALICE, &with_org),
            vec![
                Rule::BannedPassword,
                Rule::BannedTerm,
                Rule::ContainsName,
                Rule::ContainsOrganisation,
                Rule::ScoreTooLow
            ]
        );
    }
}
