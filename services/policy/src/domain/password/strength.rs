//! A zxcvbn-like strength estimate for a password meter, written for this service on top of the
//! banned-password analysis (the `zxcvbn` crate is deliberately not used).
//!
//! The estimate counts the guesses an attacker needs who knows the lists and common patterns,
//! reading the password as the cheapest reading of [`super::banned::Analysis::reading`] and
//! pricing each piece (all in log10, so that long passwords cannot overflow):
//! - **dictionary**: a common password costs its rank in the global list (+2) times 3 for the
//!   variant (case, leetspeak, one edit); a custom term costs 100, a name or organisation part
//!   10; a term that repeats the previous term costs only 2;
//! - **repeats**: a block of characters that repeats the block just before it (`abcabc`) costs
//!   2 for the whole block; a character equal to the previous one costs 2;
//! - **sequences**: a character that continues an alphabetical or numerical run (`abc`, `321`)
//!   costs 2;
//! - **keyboard runs**: a character on a key next to the previous one on a QWERTY keyboard
//!   (`qwer`, `asdf`, `1qaz`) costs 5 (about the number of neighbouring keys);
//! - **brute force** otherwise: the size of the character's class, 10 for a digit, 26 for an
//!   ASCII letter, 33 for ASCII punctuation or a space, 100 for anything else.
//!
//! Guesses map to a score like zxcvbn's: < 10^3 → 0, < 10^6 → 1, < 10^8 → 2, < 10^10 → 3,
//! else 4; the crack time assumes an offline attack on a slow hash at 10^4 guesses per second.
//! Suggestions are short English hints naming the patterns found; a score of 4 gets none.
//!
//! Invariant: nothing derived from the candidate leaves except the numbers and fixed hints.

use super::banned::{Analysis, Normalised, Segment, TermKind};

/// Guesses per second assumed for [`Strength::crack_time`].
const GUESSES_PER_SECOND_LOG10: f64 = 4.0;

/// Shortest block that counts as a repeated block (single characters are handled apart).
const MIN_REPEAT_BLOCK: usize = 2;

/// QWERTY rows, each shifted half a key right of the row above.
const KEYBOARD_ROWS: [&str; 4] = ["1234567890-=", "qwertyuiop[]", "asdfghjkl;'", "zxcvbnm,./"];

/// The hints, fixed strings so that nothing of the candidate can slip into one.
pub const ADD_WORDS: &str = "Add another word or two. Uncommon words are better.";
pub const AVOID_COMMON: &str =
    "Avoid common passwords, even with capitals or symbols in place of letters.";
pub const AVOID_NAMES: &str = "Avoid your name, your user id and your organisation's name.";
pub const AVOID_CUSTOM: &str = "Avoid the words your organisation does not allow.";
pub const AVOID_REPEATS: &str = "Avoid repeated words and characters.";
pub const AVOID_SEQUENCES: &str = "Avoid sequences such as abc or 6543.";
pub const AVOID_KEYBOARD: &str = "Avoid runs of neighbouring keys such as qwerty or asdf.";

/// The estimate returned to a caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Strength {
    /// 0 (guessed at once) ..= 4 (very hard to guess).
    pub score: u32,
    /// log10 of the estimated number of guesses.
    pub guesses_log10: f64,
    /// Short English hints, most useful first; empty for a score of 4.
    pub suggestions: Vec<&'static str>,
}

/// Patterns met while pricing, for the suggestions.
#[derive(Debug, Default)]
struct Patterns {
    common: bool,
    names: bool,
    custom: bool,
    repeats: bool,
    sequences: bool,
    keyboard: bool,
}

/// The (row, column) of a key on [`KEYBOARD_ROWS`].
fn key_position(c: char) -> Option<(usize, usize)> {
    KEYBOARD_ROWS
        .iter()
        .enumerate()
        .find_map(|(row, keys)| keys.chars().position(|k| k == c).map(|col| (row, col)))
}

/// Whether `a` and `b` are neighbouring keys (same row, or the row above or below).
fn keyboard_neighbours(a: char, b: char) -> bool {
    let (Some((ra, ca)), Some((rb, cb))) = (key_position(a), key_position(b)) else {
        return false;
    };
    if ra == rb {
        return ca.abs_diff(cb) == 1;
    }
    // Row r+1 is shifted right: key (r, c) touches (r+1, c-1) and (r+1, c).
    let (upper, lower) = if ra < rb {
        ((ra, ca), (rb, cb))
    } else {
        ((rb, cb), (ra, ca))
    };
    lower.0 == upper.0 + 1 && (lower.1 == upper.1 || lower.1 + 1 == upper.1)
}

/// For each position, whether it lies in a block that repeats the block right before it, and
/// whether it starts such a block. The longest repeating block wins at each position.
fn repeated_blocks(plain: &[char]) -> (Vec<bool>, Vec<bool>) {
    let n = plain.len();
    let (mut covered, mut starts) = (vec![false; n], vec![false; n]);
    let mut i = MIN_REPEAT_BLOCK;
    while i < n {
        let longest = (MIN_REPEAT_BLOCK..=i.min(n - i))
            .rev()
            .find(|&len| plain[i - len..i] == plain[i..i + len]);
        match longest {
            Some(len) => {
                starts[i] = true;
                covered[i..i + len].iter_mut().for_each(|c| *c = true);
                i += len;
            }
            None => i += 1,
        }
    }
    (covered, starts)
}

impl Strength {
    /// The estimate of a password too long to analyse (it is refused anyway).
    pub fn unrated() -> Self {
        Strength {
            score: 0,
            guesses_log10: 0.0,
            suggestions: Vec::new(),
        }
    }

    pub fn estimate(candidate: &Normalised, analysis: &Analysis) -> Self {
        let plain = &candidate.plain;
        let (in_repeat, repeat_start) = repeated_blocks(plain);
        let mut seen = Patterns::default();
        let mut log10 = 0.0f64;
        // Where the current segment starts, and the characters of the previous term.
        let mut at = 0usize;
        let mut previous_term: Option<&[char]> = None;
        for segment in &analysis.reading {
            match *segment {
                Segment::Term { kind, chars } => {
                    let term = &plain[at..at + chars];
                    at += chars;
                    match kind {
                        TermKind::Common { .. } => seen.common = true,
                        TermKind::Custom => seen.custom = true,
                        TermKind::Name | TermKind::Organisation => seen.names = true,
                    }
                    if previous_term == Some(term) {
                        seen.repeats = true;
                        log10 += 2f64.log10();
                        continue;
                    }
                    previous_term = Some(term);
                    log10 += match kind {
                        TermKind::Common { rank } => (f64::from(rank) + 2.0).log10() + 0.5,
                        TermKind::Custom => 2.0,
                        TermKind::Name | TermKind::Organisation => 1.0,
                    };
                }
                Segment::Char(i) => {
                    at += 1;
                    log10 += char_cost(plain, i, &in_repeat, &repeat_start, &mut seen);
                }
            }
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
            suggestions: suggestions(score, &seen),
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

/// The log10 price of the remaining character at `i`: the cheapest pattern it continues, else
/// the size of its class.
fn char_cost(
    plain: &[char],
    i: usize,
    in_repeat: &[bool],
    repeat_start: &[bool],
    seen: &mut Patterns,
) -> f64 {
    if in_repeat[i] {
        seen.repeats = true;
        // The whole block costs one "repeat it" decision, paid at its first character.
        return if repeat_start[i] { 2f64.log10() } else { 0.0 };
    }
    let c = plain[i];
    if let Some(p) = i.checked_sub(1).map(|p| plain[p]) {
        let (pv, cv) = (u32::from(p), u32::from(c));
        if pv == cv {
            seen.repeats = true;
            return 2f64.log10();
        }
        if pv + 1 == cv || cv + 1 == pv {
            seen.sequences = true;
            return 2f64.log10();
        }
        if keyboard_neighbours(p, c) {
            seen.keyboard = true;
            return 5f64.log10();
        }
    }
    if c.is_ascii_digit() {
        1.0
    } else if c.is_ascii_alphabetic() {
        26f64.log10()
    } else if c.is_ascii_punctuation() || c == ' ' {
        33f64.log10()
    } else {
        2.0
    }
}

fn suggestions(score: u32, seen: &Patterns) -> Vec<&'static str> {
    if score >= 4 {
        return Vec::new();
    }
    let mut hints = Vec::new();
    if score < 3 {
        hints.push(ADD_WORDS);
    }
    let patterns = [
        (seen.common, AVOID_COMMON),
        (seen.names, AVOID_NAMES),
        (seen.custom, AVOID_CUSTOM),
        (seen.repeats, AVOID_REPEATS),
        (seen.sequences, AVOID_SEQUENCES),
        (seen.keyboard, AVOID_KEYBOARD),
    ];
    hints.extend(patterns.iter().filter(|(found, _)| *found).map(|(_, h)| *h));
    if hints.is_empty() {
        hints.push(ADD_WORDS);
    }
    hints
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
        for weak in ["password", "P@ssw0rd", "123456", "qwerty", "iloveyou"] {
            let s = strength(weak);
            assert_eq!(s.score, 0, "{weak}");
            assert!(s.suggestions.contains(&AVOID_COMMON), "{weak}");
            assert!(s.suggestions.contains(&ADD_WORDS), "{weak}");
        }
        assert_eq!(strength("password").crack_time(), "less than a second");
    }

    #[test]
    fn repeats_sequences_and_keyboard_runs_count_little() {
        let repeated = strength("aaaaaaaaaa");
        assert!(repeated.score <= 1);
        assert!(repeated.suggestions.contains(&AVOID_REPEATS));
        let sequence = strength("abcdefghij");
        assert!(sequence.score <= 1);
        assert!(sequence.suggestions.contains(&AVOID_SEQUENCES));
        let keyboard = strength("wsxcdevfr");
        let random = strength("wpxmdlvhr");
        assert!(
            keyboard.guesses_log10 + 3.0 < random.guesses_log10,
            "{keyboard:?}"
        );
        assert!(keyboard.suggestions.contains(&AVOID_KEYBOARD));
        let blocks = strength("k9#vk9#vk9#vk9#v");
        assert!(blocks.guesses_log10 < strength("k9#v").guesses_log10 + 1.0);
        assert!(blocks.suggestions.contains(&AVOID_REPEATS));
        assert!(strength("zq8!kx3#vw").score >= 3);
    }

    #[test]
    fn long_random_passphrases_are_strongest() {
        for strong in [
            "correct horse battery staple",
            "velvet quokka tambourine 37 drizzle",
            "Tq7#mZ2!pL9$wX4&",
        ] {
            let s = strength(strong);
            assert_eq!(s.score, 4, "{strong}");
            assert!(s.suggestions.is_empty(), "{strong}");
        }
        assert_eq!(
            strength("velvet quokka tambourine 37 drizzle").crack_time(),
            "centuries"
        );
        assert!(
            strength(&"qz".repeat(128)).score <= 1,
            "a repeated block stays weak"
        );
    }

    #[test]
    fn more_unpredictable_characters_never_make_it_weaker() {
        let mut previous = 0.0;
        let mut candidate = String::new();
        for c in "mv8#tq2!rk7%wz".chars() {
            candidate.push(c);
            let s = strength(&candidate);
            assert!(s.guesses_log10 >= previous, "{candidate}");
            previous = s.guesses_log10;
        }
        assert!(strength("password").score <= strength("passwordmv8#tq").score);
        assert!(strength("mv8#tq2!").score <= strength("mv8#tq2!rk7%wz").score);
    }

    #[test]
    fn keyboard_neighbours_follow_the_layout() {
        assert!(keyboard_neighbours('q', 'w'));
        assert!(keyboard_neighbours('q', 'a'));
        assert!(keyboard_neighbours('1', 'q'));
        assert!(keyboard_neighbours('2', 'q'));
        assert!(keyboard_neighbours('s', 'z'));
        assert!(!keyboard_neighbours('q', 'p'));
        assert!(!keyboard_neighbours('1', 'a'));
        assert!(!keyboard_neighbours('é', 'a'));
    }

    #[test]
    fn crack_time_reads_naturally() {
        let at = |g: f64| {
            Strength {
                guesses_log10: g,
                ..Strength::unrated()
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
