//! Property tests of the notification parsers (`proptest`, run with the unit tests): no input
//! panics the template parser or a delivery field parser; text without `{{` is a template of
//! literals; a well-formed placeholder of the message parses.

use proptest::prelude::*;

use super::delivery::{Channel, Code, DeliveryId, DeliveryStatus, Destination, Purpose};
use super::templates::{MessageKind, Template};

proptest! {
    #[test]
    fn no_input_panics_a_parser(raw in any::<String>()) {
        for message in MessageKind::ALL {
            let _ = Template::parse(message, &raw);
        }
        let _ = DeliveryId::parse(&raw);
        let _ = Code::parse(&raw);
        for channel in [Channel::Email, Channel::Sms, Channel::Voice] {
            let _ = Destination::parse(channel, &raw);
        }
        let _ = Channel::parse(&raw);
        let _ = Purpose::parse(&raw);
        let _ = DeliveryStatus::parse(&raw);
    }

    #[test]
    fn brace_heavy_templates_never_panic(raw in "[{} a-z_]{0,40}") {
        for message in MessageKind::ALL {
            let _ = Template::parse(message, &raw);
        }
    }

    #[test]
    fn text_without_braces_is_literal(raw in "[^{]{0,200}") {
        for message in MessageKind::ALL {
            prop_assert!(Template::parse(message, &raw).is_ok());
        }
    }

    #[test]
    fn the_code_placeholder_parses_with_any_spacing(
        before in "[^{]{0,40}",
        pad in " {0,3}",
        after in "[^{]{0,40}",
    ) {
        let source = format!("{before}{{{{{pad}code{pad}}}}}{after}");
        prop_assert!(Template::parse(MessageKind::ResetCode, &source).is_ok(), "{}", source);
    }
}
