//! Property tests of the verification parsers (`proptest`, run with the unit tests): no input
//! panics a parser; accepted ids, codes and tokens round-trip; a code parses exactly when it is
//! 6 to 10 ASCII digits; a generated code of any allowed length parses back.

use proptest::prelude::*;

use super::code::{Code, CodeLength};
use super::ids::{ClientIp, FlowId, Locale, MethodId, UserId};
use super::second_method::same_destination;
use super::session::SessionToken;

proptest! {
    #[test]
    fn no_input_panics_a_parser(raw in any::<String>(), digits in 0usize..20) {
        let _ = UserId::parse(&raw);
        let _ = MethodId::parse(&raw);
        let _ = FlowId::parse(&raw);
        let _ = Locale::parse_optional(&raw);
        let _ = Locale::or_default(&raw);
        let _ = ClientIp::parse(&raw);
        let _ = SessionToken::parse(&raw);
        let _ = Code::parse_any_length(&raw);
        if let Some(length) = CodeLength::new(digits) {
            let _ = Code::parse(&raw, length);
        }
        let _ = same_destination(&raw, &raw);
    }

    #[test]
    fn a_code_is_exactly_six_to_ten_ascii_digits(raw in "[0-9]{0,12}|\\PC{0,12}") {
        let expected = (6..=10).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit());
        let parsed = Code::parse_any_length(&raw);
        prop_assert_eq!(parsed.is_ok(), expected);
        if let Ok(code) = parsed {
            prop_assert_eq!(code.expose(), raw.as_str());
            let debug = format!("{:?}", code);
            prop_assert!(!debug.contains(&raw));
        }
    }

    #[test]
    fn generated_codes_parse_back(digits in 6usize..=10) {
        let length = CodeLength::new(digits).unwrap_or_default();
        let code = Code::generate(length);
        prop_assert!(Code::parse(code.expose(), length).is_ok_and(|c| c == code));
        prop_assert!(Code::parse_any_length(code.expose()).is_ok_and(|c| c == code));
    }

    #[test]
    fn accepted_ids_round_trip(raw in "\\PC{0,300}") {
        if let Ok(id) = UserId::parse(&raw) {
            prop_assert!(UserId::parse(id.as_str()).is_ok_and(|again| again == id));
        }
        if let Ok(id) = MethodId::parse(&raw) {
            prop_assert!(MethodId::parse(id.as_str()).is_ok_and(|again| again == id));
        }
        if let Ok(id) = FlowId::parse(&raw) {
            prop_assert!(FlowId::parse(id.as_str()).is_ok_and(|again| again == id));
        }
        if let Ok(Some(locale)) = Locale::parse_optional(&raw) {
            prop_assert!(Locale::parse_optional(locale.as_str()).is_ok_and(|l| l == Some(locale.clone())));
        }
    }

    #[test]
    fn session_tokens_round_trip(bytes in any::<[u8; 32]>()) {
        use base64::Engine;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let token = SessionToken::parse(&raw);
        prop_assert!(token.as_ref().is_some_and(|t| t.expose() == raw));
        prop_assert!(token.is_some_and(|t| t.hash().len() == 64));
    }
}
