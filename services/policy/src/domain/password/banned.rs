//! Banned-password analysis, after Microsoft's published description of Entra ID password
//! protection, written for this service.
//!
//! # Algorithm
//!
//! 1. **Normalise** the candidate: NFKC, then lower case, then replace every character of the
//!    leetspeak table below by the letter it stands for. The banned terms go through the same
//!    steps, so `P@ssw0rd` and `password` are the same string to every later step. The table
//!    maps one character to one character, so positions in the normalised form line up with the
//!    lower-cased form [`Normalised::plain`] (the strength estimate uses that).
//!
//!    | from | to | | from | to | | from | to |
//!    |------|----|-|------|----|-|------|----|
//!    | `0`  | o  | | `5`  | s  | | `@`  | a  |
//!    | `1`  | l  | | `7`  | t  | | `$`  | s  |
//!    | `3`  | e  | | `8`  | b  | | `!`  | i  |
//!    | `4`  | a  | | `9`  | g  | | `\|` | l  |
//!    | `€`  | e  | | `(`  | c  | | `+`  | t  |
//!
//! 2. **Find banned terms** in the normalised candidate. Every window of the candidate (any
//!    start, any length of at least [`MIN_TERM_CHARS`]) is compared with:
//!    - the global list of common passwords (`data/common-passwords.txt`) and the admin's custom
//!      list: a window matches a term when it is equal to it or within Levenshtein edit distance
//!      1 of it (one character inserted, deleted or replaced), so the window is the term's
//!      length, one shorter or one longer. An exact match of a term is the substring case.
//!      Two limits keep fuzzy matching from swallowing points that belong to other characters:
//!      an inserted or replaced character must be inside the window, not at its first or last
//!      position (an edit at the edge is the same as a shorter, prefix or suffix match plus one
//!      remaining character, which is how it is scored), and a window containing whitespace
//!      only matches exactly (a space is never an "edit" of a term, so the words of a
//!      passphrase keep their separators' points);
//!    - the user's name parts and the organisation name: substring (exact) matches only, as in
//!      Entra, because names are short and fuzzy matching them would refuse too much.
//!
//!    Lookups are hash-map probes: each term is indexed under itself and under each of its
//!    one-character deletions (the "symmetric delete" trick), and each window is probed with
//!    itself and its own one-character deletions; candidates whose deletions met at different
//!    positions are re-checked with a Hamming distance so that only true edit-distance-1 pairs
//!    count. A check therefore costs O(windows x window length) probes, whatever the list size.
//!
//! 3. **Score**: 1 point per banned term found plus 1 point per remaining character (a
//!    character not covered by a found term). Where found terms overlap, the reading with the
//!    *fewest* points wins (a dynamic programme over positions): the score is what the
//!    cleverest attacker who knows the lists would face. The password passes only at
//!    [`PASSING_SCORE`] points or more. So `xxpasswordxx` scores 5 (x, x, password, x, x) and
//!    passes, `xpasswordx` scores 3 and fails, `P@ssw0rd` scores 1.
//!
//! Invariants: the candidate and the matched terms never leave this module except as the
//! score, the kinds of terms found, and per-position information for the strength estimate;
//! nothing here logs.

use std::collections::HashMap;
use std::sync::LazyLock;

use unicode_normalization::UnicodeNormalization;

/// Shortest banned term and shortest window that can match one, in normalised characters.
pub const MIN_TERM_CHARS: usize = 4;
/// Fewest points a password needs.
pub const PASSING_SCORE: usize = 5;
/// Shortest name part (user id, display-name word, organisation word) searched for.
pub const MIN_NAME_PART_CHARS: usize = 3;

/// The global list: the 10,000 most common passwords, most common first (see `data/README.md`).
const COMMON_PASSWORDS: &str = include_str!("../../../data/common-passwords.txt");

/// The global list, normalised and indexed once per process.
pub static GLOBAL: LazyLock<TermIndex> = LazyLock::new(|| TermIndex::new(COMMON_PASSWORDS.lines()));

/// The leetspeak table of the module header.
fn unleet(c: char) -> char {
    match c {
        '0' => 'o',
        '1' | '|' => 'l',
        '3' | '€' => 'e',
        '4' | '@' => 'a',
        '5' | '$' => 's',
        '7' | '+' => 't',
        '8' => 'b',
        '9' => 'g',
        '!' => 'i',
        '(' => 'c',
        other => other,
    }
}

/// A string after step 1, as characters.
pub struct Normalised {
    /// NFKC, lower case.
    pub plain: Vec<char>,
    /// `plain` through the leetspeak table; same length as `plain`.
    pub chars: Vec<char>,
}

impl Normalised {
    pub fn new(raw: &str) -> Self {
        let plain: Vec<char> = raw.nfkc().flat_map(char::to_lowercase).collect();
        let chars = plain.iter().copied().map(unleet).collect();
        Self { plain, chars }
    }
}

/// The normalised form of a term, as a string.
pub fn normalise(raw: &str) -> String {
    Normalised::new(raw).chars.into_iter().collect()
}

/// A list of banned terms, normalised, deduplicated and indexed for edit-distance-1 lookups.
#[derive(Debug, Clone, Default)]
pub struct TermIndex {
    /// Normalised terms; the position is the term's id (and its rank for the global list).
    terms: Vec<Vec<char>>,
    /// Term -> id.
    exact: HashMap<String, u32>,
    /// Term with one character deleted -> ids.
    deletions: HashMap<String, Vec<u32>>,
    min_chars: usize,
    max_chars: usize,
}

impl TermIndex {
    /// Indexes `raw` terms; terms shorter than [`MIN_TERM_CHARS`] after normalisation and
    /// repeats are skipped.
    pub fn new<'a>(raw: impl IntoIterator<Item = &'a str>) -> Self {
        let mut index = TermIndex {
            min_chars: usize::MAX,
            ..TermIndex::default()
        };
        let mut key = String::new();
        for term in raw {
            let chars = Normalised::new(term.trim()).chars;
            if chars.len() < MIN_TERM_CHARS {
                continue;
            }
            let text: String = chars.iter().collect();
            if index.exact.contains_key(&text) {
                continue;
            }
            let Ok(id) = u32::try_from(index.terms.len()) else {
                break;
            };
            for skip in 0..chars.len() {
                if skip > 0 && chars[skip] == chars[skip - 1] {
                    continue;
                }
                fill_without(&mut key, &chars, skip);
                index.deletions.entry(key.clone()).or_default().push(id);
            }
            index.min_chars = index.min_chars.min(chars.len());
            index.max_chars = index.max_chars.max(chars.len());
            index.exact.insert(text, id);
            index.terms.push(chars);
        }
        index
    }

    /// Number of distinct normalised terms.
    pub fn len(&self) -> usize {
        self.terms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The id (rank) of a term equal to `window` or within edit distance 1 of it, if any;
    /// the lowest id when several match. `scratch` is reused to avoid allocating.
    fn lookup(&self, window: &[char], scratch: &mut String) -> Option<u32> {
        let mut best: Option<u32> = None;
        let mut consider = |id: u32| best = Some(best.map_or(id, |b| b.min(id)));
        fill(scratch, window);
        if let Some(&id) = self.exact.get(scratch.as_str()) {
            consider(id);
        }
        // A separator is never edited into or out of a term (see the module header).
        if window.iter().any(|c| c.is_whitespace()) {
            return best;
        }
        // A term one longer than the window: the window is the term with one deletion.
        if let Some(ids) = self.deletions.get(scratch.as_str()) {
            for &id in ids {
                if self.terms[id as usize].len() == window.len() + 1 {
                    consider(id);
                }
            }
        }
        for skip in 0..window.len() {
            if skip > 0 && window[skip] == window[skip - 1] {
                continue;
            }
            fill_without(scratch, window, skip);
            // A term one shorter: the term is the window with one deletion. Not when the extra
            // character is at an edge: that is the term as a substring plus a neighbouring
            // character, which must keep its own point.
            if let Some(&id) = self.exact.get(scratch.as_str()) {
                let term = &self.terms[id as usize][..];
                if window[1..] != *term && window[..window.len() - 1] != *term {
                    consider(id);
                }
            }
            // A term of the same length sharing a deletion: a substitution if they differ at
            // exactly this position (deletions at different positions can meet at distance 2),
            // and only inside the window (an edge substitution is a deletion match plus a
            // remaining character).
            if skip == 0 || skip + 1 == window.len() {
                continue;
            }
            if let Some(ids) = self.deletions.get(scratch.as_str()) {
                for &id in ids {
                    let term = &self.terms[id as usize];
                    if term.len() == window.len()
                        && term
                            .iter()
                            .zip(window)
                            .enumerate()
                            .all(|(i, (a, b))| i == skip || a == b)
                    {
                        consider(id);
                    }
                }
            }
        }
        best
    }

    /// Windows of lengths that can match some term: one shorter to one longer than the terms
    /// (meaningful only for a non-empty index).
    fn window_lengths(&self) -> std::ops::RangeInclusive<usize> {
        self.min_chars.saturating_sub(1).max(MIN_TERM_CHARS)..=self.max_chars + 1
    }
}

fn fill(buf: &mut String, chars: &[char]) {
    buf.clear();
    buf.extend(chars);
}

fn fill_without(buf: &mut String, chars: &[char], skip: usize) {
    buf.clear();
    buf.extend(
        chars
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, c)| c),
    );
}

/// Which list a found term came from. The order is the preference when several terms explain
/// the same characters equally well: the most specific first (a name is more useful to report
/// than the same string on the global list), then the more common password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TermKind {
    /// The user's id or a part of their display name.
    Name,
    /// The organisation name or a part of it.
    Organisation,
    /// The admin's custom list.
    Custom,
    /// The global list; `rank` 0 is the most common password.
    Common { rank: u32 },
}

/// One segment of the cheapest reading of the candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// A found term covering `chars` characters.
    Term { kind: TermKind, chars: usize },
    /// A remaining character, at this position of [`Normalised::chars`].
    Char(usize),
}

/// The result of steps 2 and 3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    pub score: usize,
    /// The cheapest reading, in order.
    pub reading: Vec<Segment>,
}

impl Analysis {
    pub fn passes(&self) -> bool {
        self.score >= PASSING_SCORE
    }

    /// The kinds of terms in the reading, each once, in [`TermKind`] order (ranks dropped).
    pub fn kinds_found(&self) -> Vec<TermKind> {
        let mut kinds: Vec<TermKind> = self
            .reading
            .iter()
            .filter_map(|s| match s {
                Segment::Term {
                    kind: TermKind::Common { .. },
                    ..
                } => Some(TermKind::Common { rank: 0 }),
                Segment::Term { kind, .. } => Some(*kind),
                Segment::Char(_) => None,
            })
            .collect();
        kinds.sort();
        kinds.dedup();
        kinds
    }
}

/// Name-like terms searched as exact substrings: the user id and display-name parts, the
/// organisation name and its parts.
#[derive(Debug, Clone, Default)]
pub struct NameTerms {
    terms: Vec<(Vec<char>, TermKind)>,
}

impl NameTerms {
    /// The user id (whole and in parts), the display name's parts split on whitespace and
    /// punctuation, and the organisation name (whole and in parts); parts shorter than
    /// [`MIN_NAME_PART_CHARS`] are ignored.
    pub fn new(user_id: &str, display_name: &str, organisation: &str) -> Self {
        let mut terms = Vec::new();
        let mut add = |raw: &str, kind: TermKind, whole: bool| {
            let lowered: String = raw.nfkc().flat_map(char::to_lowercase).collect();
            let parts: Vec<&str> = lowered
                .split(|c: char| !c.is_alphanumeric())
                .filter(|p| !p.is_empty())
                .collect();
            let mut candidates: Vec<String> = parts.iter().map(|p| (*p).to_owned()).collect();
            if whole && parts.len() > 1 {
                candidates.push(parts.concat());
                candidates.push(lowered.clone());
            }
            for c in candidates {
                let chars = Normalised::new(&c).chars;
                if chars.len() >= MIN_NAME_PART_CHARS && !terms.iter().any(|(t, _)| *t == chars) {
                    terms.push((chars, kind));
                }
            }
        };
        add(user_id, TermKind::Name, true);
        add(display_name, TermKind::Name, true);
        add(organisation, TermKind::Organisation, true);
        Self { terms }
    }
}

/// Steps 2 and 3 on `candidate` with the global list, `custom` and `names`.
pub fn analyse(
    candidate: &Normalised,
    global: &TermIndex,
    custom: &TermIndex,
    names: &NameTerms,
) -> Analysis {
    let text = &candidate.chars;
    let n = text.len();
    // matches[i]: (end, kind) of every term found starting at i.
    let mut matches: Vec<Vec<(usize, TermKind)>> = vec![Vec::new(); n];
    let mut scratch = String::new();
    for (index, kind_of) in [
        (
            global,
            (|rank| TermKind::Common { rank }) as fn(u32) -> TermKind,
        ),
        (custom, |_| TermKind::Custom),
    ] {
        if index.is_empty() {
            continue;
        }
        let lengths = index.window_lengths();
        for (start, found) in matches.iter_mut().enumerate() {
            for len in lengths.clone() {
                let end = start + len;
                if end > n {
                    break;
                }
                if let Some(id) = index.lookup(&text[start..end], &mut scratch) {
                    found.push((end, kind_of(id)));
                }
            }
        }
    }
    for (term, kind) in &names.terms {
        if term.len() > n {
            continue;
        }
        for start in 0..=(n - term.len()) {
            if text[start..start + term.len()] == term[..] {
                matches[start].push((start + term.len(), *kind));
            }
        }
    }

    // best[i]: fewest points for text[i..]; choice[i]: the segment that achieves it. On a tie
    // a term is preferred to a single character (it explains the score better).
    let mut best = vec![0usize; n + 1];
    let mut choice: Vec<Option<(usize, TermKind)>> = vec![None; n + 1];
    for i in (0..n).rev() {
        best[i] = 1 + best[i + 1];
        for &(end, kind) in &matches[i] {
            let points = 1 + best[end];
            let better = match choice[i] {
                _ if points < best[i] => true,
                None => points == best[i],
                // Among terms of equal points, the preferred kind (see [`TermKind`]).
                Some((_, current)) => points == best[i] && kind < current,
            };
            if better {
                best[i] = points;
                choice[i] = Some((end, kind));
            }
        }
    }
    let mut reading = Vec::new();
    let mut i = 0;
    while i < n {
        match choice[i] {
            Some((end, kind)) => {
                reading.push(Segment::Term {
                    kind,
                    chars: end - i,
                });
                i = end;
            }
            None => {
                reading.push(Segment::Char(i));
                i += 1;
            }
        }
    }
    Analysis {
        score: best[0],
        reading,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(candidate: &str) -> usize {
        analyse(
            &Normalised::new(candidate),
            &GLOBAL,
            &TermIndex::default(),
            &NameTerms::default(),
        )
        .score
    }

    #[test]
    fn the_table_maps_leetspeak_to_letters() {
        assert_eq!(normalise("P@$$w0rd"), "password");
        assert_eq!(normalise("1|!3457+89(€"), "llieasttbgce");
        assert_eq!(normalise("ＰＡＳＳ"), "pass");
        let n = Normalised::new("A1b");
        assert_eq!(n.plain, vec!['a', '1', 'b']);
        assert_eq!(n.chars, vec!['a', 'l', 'b']);
    }

    #[test]
    fn the_global_list_is_loaded_normalised_and_deduplicated() {
        assert!(GLOBAL.len() > 9_000, "{}", GLOBAL.len());
        assert!(GLOBAL.len() <= 10_000);
        assert_eq!(GLOBAL.exact.get("password"), Some(&1));
        // "123456" is stored as its normalised form.
        assert_eq!(GLOBAL.exact.get("l2eas6"), Some(&0));
        assert!(GLOBAL.min_chars >= MIN_TERM_CHARS);
    }

    #[test]
    fn lookup_finds_exact_and_edit_distance_one_only() {
        let index = TermIndex::new(["abcdef"]);
        let mut s = String::new();
        let probe = |w: &str, s: &mut String| {
            let chars: Vec<char> = w.chars().collect();
            index.lookup(&chars, s)
        };
        assert_eq!(probe("abcdef", &mut s), Some(0));
        assert_eq!(probe("abxdef", &mut s), Some(0), "substitution inside");
        assert_eq!(probe("abcxdef", &mut s), Some(0), "insertion inside");
        assert_eq!(probe("abcde", &mut s), Some(0), "deletion (a prefix)");
        assert_eq!(probe("bcdef", &mut s), Some(0), "deletion (a suffix)");
        assert_eq!(probe("abdef", &mut s), Some(0), "deletion inside");
        assert_eq!(
            probe("abcdeg", &mut s),
            None,
            "edge substitution: abcde + g"
        );
        assert_eq!(probe("abcdefg", &mut s), None, "edge insertion: abcdef + g");
        assert_eq!(
            probe("bacdef", &mut s),
            None,
            "a transposition is distance 2"
        );
        assert_eq!(probe("abxdxf", &mut s), None, "two substitutions");
        assert_eq!(probe("abcd", &mut s), None, "two deletions");
        assert_eq!(
            probe("abc def", &mut s),
            None,
            "no fuzzy match across a space"
        );
        assert_eq!(probe("zzzzzz", &mut s), None);
    }

    #[test]
    fn lookup_handles_repeated_letters() {
        let index = TermIndex::new(["aaaa", "bookkeeper"]);
        let mut s = String::new();
        for w in [
            "aaa",
            "aaaa",
            "aaba",
            "bokkeeper",
            "bookkkeeper",
            "bookkeepxr",
        ] {
            let chars: Vec<char> = w.chars().collect();
            assert!(index.lookup(&chars, &mut s).is_some(), "{w}");
        }
        for w in ["aabb", "aaaaa", "bookkeepers"] {
            let chars: Vec<char> = w.chars().collect();
            assert!(index.lookup(&chars, &mut s).is_none(), "{w}");
        }
    }

    #[test]
    fn exact_leetspeak_and_fuzzy_common_passwords_score_one() {
        assert_eq!(score("password"), 1);
        assert_eq!(score("P@ssw0rd"), 1);
        assert_eq!(score("PASSWORD"), 1);
        assert_eq!(score("passwprd"), 1, "edit distance 1");
        assert_eq!(score("passwrd"), 1, "one deleted");
    }

    #[test]
    fn substrings_score_one_plus_the_remaining_characters() {
        assert_eq!(score("qpasswordq"), 3);
        assert_eq!(score("qqpasswordqq"), 5);
        // "xxpass" and "word" are both on the global list: xxpass + word + x + x.
        assert_eq!(score("xxpasswordxx"), 4);
    }

    #[test]
    fn fuzzy_matches_never_swallow_a_neighbour_or_a_separator() {
        // An edit at the edge of a window would let "password" absorb the "q".
        assert_eq!(score("qqdragonqq"), 5);
        // Spaces keep their points: "password l" is not one edit from "password1".
        assert_eq!(score("first password 1"), 5);
        // An edit inside still matches.
        assert_eq!(score("passw-rd"), 1);
    }

    #[test]
    fn the_cheapest_reading_counts() {
        // Two common passwords side by side are two points, not sixteen.
        assert_eq!(score("passworddragon"), 2);
        let a = analyse(
            &Normalised::new("qqdragonqq"),
            &GLOBAL,
            &TermIndex::default(),
            &NameTerms::default(),
        );
        assert_eq!(a.score, 5);
        assert_eq!(a.kinds_found(), vec![TermKind::Common { rank: 0 }]);
        assert_eq!(a.reading.len(), 5);
    }

    #[test]
    fn custom_terms_match_like_global_ones() {
        let custom = TermIndex::new(["Contoso", "  fabrikam  ", "abc", "CONTOSO"]);
        assert_eq!(custom.len(), 2, "short terms and repeats are skipped");
        let run = |c: &str| analyse(&Normalised::new(c), &GLOBAL, &custom, &NameTerms::default());
        let a = run("C0nt0s0");
        assert_eq!(a.score, 1);
        assert_eq!(a.kinds_found(), vec![TermKind::Custom]);
        assert_eq!(run("contozo").score, 1);
        assert_eq!(run("zz-fabrikam-zz").kinds_found(), vec![TermKind::Custom]);
    }

    #[test]
    fn names_match_as_exact_substrings_only() {
        let names = NameTerms::new("asmith", "Alice Smith-Jones", "Contoso Ltd");
        let run = |c: &str| {
            analyse(
                &Normalised::new(c),
                &TermIndex::default(),
                &TermIndex::default(),
                &names,
            )
        };
        let a = run("alice!!!");
        assert_eq!(a.score, 4);
        assert_eq!(a.kinds_found(), vec![TermKind::Name]);
        assert_eq!(run("xjonesx").kinds_found(), vec![TermKind::Name]);
        assert_eq!(run("ASMITH").score, 1);
        assert_eq!(run("c0nt0s0").kinds_found(), vec![TermKind::Organisation]);
        assert_eq!(run("ltd").kinds_found(), vec![TermKind::Organisation]);
        // No fuzzy matching of names.
        assert!(run("alyce").kinds_found().is_empty());
    }

    #[test]
    fn short_name_parts_are_ignored() {
        let names = NameTerms::new("al", "Al Bo", "");
        assert!(
            names
                .terms
                .iter()
                .all(|(t, _)| t.len() >= MIN_NAME_PART_CHARS)
        );
        // "Al Bo" as a whole is "al bo" and "albo".
        assert_eq!(names.terms.len(), 2);
    }

    #[test]
    fn an_empty_candidate_scores_zero() {
        assert_eq!(score(""), 0);
    }
}
