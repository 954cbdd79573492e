//! A cheap strength estimate for a password meter, built on the banned-password analysis
//! (not zxcvbn: the `zxcvbn` crate was left out to keep the service lean; this estimate is
//! deliberately simple and documented here).
//!
//! The estimate counts the guesses an attacker needs who tries the cheapest reading of the
//! password ([`super::banned::Analysis::reading`]) piece by piece:
//! - a common password found costs its rank in the global list (+2) times 3 for the variant
//!   (case, leetspeak, one edit), and only 2 when it repeats the previous term;
//! - a custom term costs 100, a name or organisation part 10;
//! - a remaining character costs the size of its class: 10 for a digit, 26 for an ASCII
//!   letter, 33 for ASCII punctuation or a space, 100 for anything else; but only 2 when it
//!   repeats the previous character or continues a sequence (`abc`, `321`).
//!
//! Guesses map to a score like zxcvbn's: < 10^3 → 0, < 10^6 → 1, < 10^8 → 2, < 10^10 → 3,
//! else 4; the crack time assumes an offline attack on a slow hash at 10^4 guesses per second.
//! Everything is computed in log10 so that long passwords cannot overflow.

use super::banned::{Analysis, Normalised, Segment, TermKind};

/// Guesses per second assumed for [`Strength::crack_time`].
const GUESSES_PER_SECOND_LOG10: f64 = 4.0;

/// The estimate returned to a caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Strength {
    /// 0 (guessed at once) ..= 4 (very hard to guess).
    pub score: u32,
    /// log10 of the estimated number of guesses.
    pub guesses_log10: f64,
}

impl Strength {
    pub fn estimate(candidate: &Normalised, analysis: &Analysis) -> Self {
        let plain = &candidate.plain;
        let mut log10 = 0.0f64;
        // Where the current segment starts, and the characters of the previous term.
        let mut at = 0usize;
        let mut previous_term: Option<&[char]> = None;
        for segment in &analysis.reading {
            if let Segment::Term { chars, .. } = *segment {
                let term = &plain[at..at + chars];
                at += chars;
                if previous_term == Some(term) {
                    log10 += 2f64.log10();
                    continue;
                }
                previous_term = Some(term);
            } else {
                at += 1;
            }
            log10 += match *segment {
                Segment::Term {
                    kind: TermKind::Common { rank },
                    ..
                } => (f64::from(rank) + 2.0).log10() + 0.5,
                Segment::Term {
                    kind: TermKind::Custom,
                    ..
                } => 2.0,
                Segment::Term { .. } => 1.0,
                Segment::Char(i) => {
                    let c = plain[i];
                    let previous = i.checked_sub(1).map(|p| plain[p]);
                    let follows = previous.is_some_and(|p| {
                        let (p, c) = (u32::from(p), u32::from(c));
                        p == c || p + 1 == c || c + 1 == p
                    });
                    if follows {
                        2f64.log10()
                    } else if c.is_ascii_digit() {
                        1.0
                    } else if c.is_ascii_alphabetic() {
                        26f64.log10()
                    } else if c.is_ascii_punctuation() || c == ' ' {
                        33f64.log10()
                    } else {
                        2.0
                    }
                }
            };
        }
        let score = match log10 {
            g if g < 3.0 => 0,
            g if g < 6.0 => 1,
            g if g < 8.0 => 2,
            g if g < 10.0 => 3,
            _ => 4,
        };
        Strength {
            score,
            guesses_log10: log10,
        }
    }

    /// Rough time to guess, e.g. "less than a second", "3 hours", "centuries".
    pub fn crack_time(&self) -> String {
        let seconds_log10 = self.guesses_log10 - GUESSES_PER_SECOND_LOG10;
        if seconds_log10 < 0.0 {
            return "less than a second".to_owned();
        }
        if seconds_log10 > 11.0 {
            return "centuries".to_owned();
        }
        let seconds = 10f64.powf(seconds_log10);
        const MINUTE: f64 = 60.0;
        const HOUR: f64 = 60.0 * MINUTE;
        const DAY: f64 = 24.0 * HOUR;
        const MONTH: f64 = 31.0 * DAY;
        const YEAR: f64 = 12.0 * MONTH;
        const CENTURY: f64 = 100.0 * YEAR;
        let (amount, unit) = match seconds {
            s if s < MINUTE => (s, "second"),
            s if s < HOUR => (s / MINUTE, "minute"),
            s if s < DAY => (s / HOUR, "hour"),
            s if s < MONTH => (s / DAY, "day"),
            s if s < YEAR => (s / MONTH, "month"),
            s if s < CENTURY => (s / YEAR, "year"),
            _ => return "centuries".to_owned(),
        };
        let amount = amount.round().max(1.0);
        if amount == 1.0 {
            format!("1 {unit}")
        } else {
            format!("{amount} {unit}s")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::banned::{GLOBAL, NameTerms, TermIndex, analyse};
    use super::*;

    fn strength(candidate: &str) -> Strength {
        let n = Normalised::new(candidate);
        let a = analyse(&n, &GLOBAL, &TermIndex::default(), &NameTerms::default());
        Strength::estimate(&n, &a)
    }

    #[test]
    fn common_passwords_are_weakest() {
        assert_eq!(strength("password").score, 0);
        assert_eq!(strength("P@ssw0rd").score, 0);
        assert_eq!(strength("password").crack_time(), "less than a second");
    }

    #[test]
    fn repeats_and_sequences_count_little() {
        assert!(strength("aaaaaaaaaa").score <= 1);
        assert!(strength("abcdefghij").score <= 1);
        assert!(strength("zq8!kx3#vw").score >= 3);
    }

    #[test]
    fn long_passphrases_are_strongest() {
        let s = strength("correct horse battery staple");
        assert_eq!(s.score, 4);
        assert_eq!(strength(&"qz".repeat(128)).crack_time(), "centuries");
    }

    #[test]
    fn crack_time_reads_naturally() {
        let at = |g: f64| {
            Strength {
                score: 0,
                guesses_log10: g,
            }
            .crack_time()
        };
        assert_eq!(at(4.0), "1 second");
        assert_eq!(at(6.0), "2 minutes");
        assert_eq!(at(8.0), "3 hours");
        assert_eq!(at(10.0), "12 days");
        assert_eq!(at(12.0), "3 years");
        assert_eq!(at(30.0), "centuries");
    }
}
