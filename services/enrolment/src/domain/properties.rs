//! Property tests of the enrolment parsers (`proptest`, run with the unit tests): no input
//! panics a parser, and what a parser accepts is a fixed point (parsing its normalised form
//! again gives the same value), with a mask that never shows the whole destination.

use proptest::prelude::*;

use super::contact::{Destination, Email, MethodKind, PhoneNumber};
use super::ids::{FlowId, Locale, MethodId, UserId};

proptest! {
    #[test]
    fn no_input_panics_a_parser(raw in any::<String>()) {
        let _ = Email::parse(&raw);
        let _ = PhoneNumber::parse(&raw);
        for kind in [MethodKind::Email, MethodKind::Sms, MethodKind::Voice] {
            let _ = Destination::parse(kind, &raw);
        }
        let _ = UserId::parse(&raw);
        let _ = MethodId::parse(&raw);
        let _ = FlowId::parse(&raw);
        let _ = Locale::parse(&raw);
    }

    #[test]
    fn accepted_emails_are_fixed_points_and_masked(
        local in "[a-zA-Z0-9._%+-]{1,20}",
        domain in "[a-zA-Z0-9-]{1,20}\\.[a-zA-Z]{2,6}",
        pad in "[ \t]{0,2}",
    ) {
        let raw = format!("{pad}{local}@{domain}{pad}");
        if let Ok(email) = Email::parse(&raw) {
            let again = Email::parse(email.as_str());
            prop_assert!(again.as_ref().is_ok_and(|e| e == &email));
            let masked = email.masked();
            prop_assert!(!masked.contains(email.as_str()) || email.as_str().len() <= 3);
        }
    }

    #[test]
    fn accepted_phone_numbers_are_fixed_points_in_e164(
        digits in "[1-9][0-9]{7,14}",
        sep in prop::sample::select(vec!["", " ", "-", "."]),
    ) {
        let spaced: String = digits
            .chars()
            .enumerate()
            .flat_map(|(i, c)| {
                let sep = if i > 0 && i % 3 == 0 { sep } else { "" };
                sep.chars().chain(std::iter::once(c)).collect::<Vec<_>>()
            })
            .collect();
        let phone = PhoneNumber::parse(&format!("+{spaced}"));
        prop_assert!(phone.is_ok(), "+{spaced} refused");
        if let Ok(phone) = phone {
            prop_assert_eq!(phone.as_str(), format!("+{digits}"));
            prop_assert!(PhoneNumber::parse(phone.as_str()).is_ok_and(|p| p == phone));
            prop_assert!(!phone.masked().contains(&digits));
        }
    }

    #[test]
    fn accepted_ids_round_trip(raw in "\\PC{0,80}") {
        if let Ok(user) = UserId::parse(&raw) {
            prop_assert!(UserId::parse(user.as_str()).is_ok_and(|u| u == user));
        }
        if let Ok(method) = MethodId::parse(&raw) {
            prop_assert!(MethodId::parse(method.as_str()).is_ok_and(|m| m == method));
        }
    }
}
