//! Property tests of the gateway's edge parsers (`proptest`, run with the unit tests): no input
//! panics a parser; an accepted value comes back as sent or trimmed, and parses again (the
//! edge checks, it never rewrites more);
//! `code` takes exactly 6 to 10 ASCII digits; the client IP is always an IP address or empty.

use std::net::{IpAddr, SocketAddr};

use proptest::prelude::*;

use super::admin_tokens;
use super::client_ip;
use super::input;

/// An edge parser that hands back the accepted text.
type Parser = fn(&str) -> Result<&str, input::InvalidField>;

proptest! {
    #[test]
    fn no_input_panics_a_parser(raw in any::<String>(), kind in any::<i32>(), n in any::<u32>()) {
        let _ = input::user_id(&raw);
        let _ = input::optional_user_id(&raw);
        let _ = input::session_id(&raw);
        let _ = input::method_id(&raw);
        let _ = input::code(&raw);
        let _ = input::destination(&raw);
        let _ = input::destination_confirmation(&raw);
        let _ = input::locale("locale", &raw);
        let _ = input::password("password", &raw);
        let _ = input::display_name(&raw);
        let _ = input::audit_kind(&raw);
        let _ = input::page_token(&raw);
        let _ = input::helpdesk_contact(&raw);
        let _ = input::organisation_name(&raw);
        let _ = input::method_kind("kind", kind);
        let _ = input::page_size(n);
        let _ = input::group_ids("group_ids", std::slice::from_ref(&raw));
        let _ = input::banned_terms(std::slice::from_ref(&raw));
        let _ = input::phone_prefixes(std::slice::from_ref(&raw));
        let _ = admin_tokens::parse_list(&raw);
    }

    #[test]
    fn accepted_values_come_back_as_sent_or_trimmed_and_parse_again(raw in "\\PC{0,80}") {
        let parsers: [Parser; 5] = [
            input::user_id,
            input::session_id,
            input::method_id,
            input::code,
            input::destination,
        ];
        for parse in parsers {
            if let Ok(parsed) = parse(&raw) {
                prop_assert!(parsed == raw || parsed == raw.trim(), "{:?} -> {:?}", raw, parsed);
                prop_assert_eq!(parse(parsed).ok(), Some(parsed));
            }
        }
    }

    #[test]
    fn a_code_is_exactly_six_to_ten_ascii_digits(raw in "[0-9]{0,12}|\\PC{0,12}") {
        let expected = (6..=10).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit());
        prop_assert_eq!(input::code(&raw).is_ok(), expected);
    }

    #[test]
    fn the_client_ip_is_an_address_or_empty(
        header in prop::collection::vec(any::<String>(), 0..3),
        peer in any::<Option<(u32, u16)>>(),
        hops in 0usize..4,
    ) {
        let peer = peer.map(|(ip, port)| SocketAddr::from((std::net::Ipv4Addr::from(ip), port)));
        let ip = client_ip::resolve(header.iter().map(String::as_str), peer, hops);
        prop_assert!(ip.is_empty() || ip.parse::<IpAddr>().is_ok(), "{ip:?}");
        if hops == 0 {
            prop_assert_eq!(ip, peer.map(|p| p.ip().to_string()).unwrap_or_default());
        }
    }
}
