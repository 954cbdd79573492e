//! The verification rules, free of IO: codes and their state machine, reset sessions and
//! their tokens, decoys, code delivery states, typed request values. Time always comes from
//! the caller (a clock), randomness from the OS CSPRNG.

pub mod code;
pub mod decoy;
pub mod delivery;
pub mod destination;
pub mod ids;
pub mod phone_guard;
#[cfg(test)]
mod properties;
pub mod questions;
pub mod second_method;
pub mod session;
pub mod throttle;

pub use code::{
    Code, CodeBinding, CodeHash, CodeLength, CodeRules, CodeState, Purpose, Rejection, Verdict,
};
pub use ids::{ClientIp, FlowId, InputError, Locale, MethodId, UserId};
pub use session::{
    MethodKind, ResetSession, SessionError, SessionMethod, SessionStatus, SessionToken,
};

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Bytes of lower- or upper-case hex; `None` for anything else.
pub(crate) fn unhex(raw: &str) -> Option<Vec<u8>> {
    if !raw.len().is_multiple_of(2) || !raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..raw.len())
        .step_by(2)
        .map(|i| {
            raw.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_round_trip() {
        assert_eq!(super::hex(&[0, 15, 255]), "000fff");
        assert_eq!(super::unhex("000fff"), Some(vec![0, 15, 255]));
        assert_eq!(super::unhex("0"), None);
        assert_eq!(super::unhex("zz"), None);
        assert_eq!(super::unhex("+1"), None);
    }
}
