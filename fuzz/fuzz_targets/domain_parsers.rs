//! Every domain parser of sspr on arbitrary text: none may panic, whatever the input. (The
//! same parsers have `proptest` properties in their crates; this target explores further.)
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    verification(raw);
    gateway(raw);
    enrolment(raw);
    notification(raw);
});

fn verification(raw: &str) {
    use sspr_verification::domain::code::{Code, CodeLength};
    use sspr_verification::domain::ids::{ClientIp, FlowId, Locale, MethodId, UserId};
    use sspr_verification::domain::session::SessionToken;
    let _ = UserId::parse(raw);
    let _ = MethodId::parse(raw);
    let _ = FlowId::parse(raw);
    let _ = Locale::parse_optional(raw);
    let _ = ClientIp::parse(raw);
    let _ = SessionToken::parse(raw);
    let _ = Code::parse_any_length(raw);
    let _ = Code::parse(raw, CodeLength::default());
}

fn gateway(raw: &str) {
    use sspr_gateway::domain::{admin_tokens, input};
    let _ = input::user_id(raw);
    let _ = input::session_id(raw);
    let _ = input::method_id(raw);
    let _ = input::code(raw);
    let _ = input::destination(raw);
    let _ = input::destination_confirmation(raw);
    let _ = input::locale("locale", raw);
    let _ = input::password("password", raw);
    let _ = input::display_name(raw);
    let _ = input::audit_kind(raw);
    let _ = input::page_token(raw);
    let _ = admin_tokens::parse_list(raw);
    let lines: Vec<String> = raw.lines().map(str::to_owned).collect();
    let _ = input::group_ids("group_ids", &lines);
    let _ = input::banned_terms(&lines);
    let _ = input::phone_prefixes(&lines);
    let _ = sspr_gateway::domain::client_ip::resolve(raw.split('\n'), None, 2);
}

fn enrolment(raw: &str) {
    use sspr_enrolment::domain::contact::{Destination, Email, MethodKind, PhoneNumber};
    use sspr_enrolment::domain::ids::{FlowId, Locale, MethodId, UserId};
    let _ = Email::parse(raw).map(|e| e.masked());
    let _ = PhoneNumber::parse(raw).map(|p| p.masked());
    for kind in [MethodKind::Email, MethodKind::Sms, MethodKind::Voice] {
        let _ = Destination::parse(kind, raw);
    }
    let _ = UserId::parse(raw);
    let _ = MethodId::parse(raw);
    let _ = FlowId::parse(raw);
    let _ = Locale::parse(raw);
}

fn notification(raw: &str) {
    use sspr_notification::domain::delivery::{Channel, Code, DeliveryId, Destination};
    use sspr_notification::domain::templates::{MessageKind, Template};
    for message in MessageKind::ALL {
        let _ = Template::parse(message, raw);
    }
    let _ = DeliveryId::parse(raw);
    let _ = Code::parse(raw);
    for channel in [Channel::Email, Channel::Sms, Channel::Voice] {
        let _ = Destination::parse(channel, raw);
    }
}
