//! The second-method rule: when a reset needs two methods, the second must reach another
//! destination than the first, so two methods on one phone (SMS and voice) or one mailbox
//! never count as two factors.
//!
//! Enrolment stores destinations normalised (E.164 numbers, trimmed addresses) and refuses the
//! same (kind, destination) twice for a user, so the same method id verified twice is the only
//! other way to repeat a factor, and [`super::ResetSession::methods_remaining`] counts distinct
//! method ids. Destinations are compared here without regard to case or surrounding space (the
//! domain part of an address is case-insensitive, and mailboxes nearly always are).

/// Whether two registered destinations reach the same place.
pub fn same_destination(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim(), b.trim());
    a.len() == b.len()
        && a.chars()
            .zip(b.chars())
            .all(|(x, y)| x.to_lowercase().eq(y.to_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_phone_or_mailbox_in_any_case_is_the_same_destination() {
        assert!(same_destination("+15551234567", "+15551234567"));
        assert!(same_destination("Bob@Example.com", "bob@example.COM "));
        assert!(!same_destination("+15551234567", "+15551234568"));
        assert!(!same_destination("bob@example.com", "bob@example.org"));
        assert!(!same_destination("", "a"));
    }
}
