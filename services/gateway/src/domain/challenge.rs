//! The CAPTCHA ("challenge") token rules at the edge, free of IO: the token's size limit, the
//! form body of a siteverify request and the reading of its answer.
//!
//! The siteverify convention (reCAPTCHA, hCaptcha, Cloudflare Turnstile): POST
//! `secret=..&response=<token>&remoteip=<ip>` form-encoded; the JSON answer passes when its
//! `success` is `true`. Anything else (another value, no JSON, an error) is not passed.
//!
//! Invariant: the token and the secret are secrets: never logged or put in an error message.

use super::input::InvalidField;

/// Largest challenge token accepted, in bytes (larger ones are INVALID_ARGUMENT).
pub const MAX_TOKEN_BYTES: usize = 4096;

/// The `challenge_token` of a StartReset, if it may be passed to the verifier (empty: none).
pub fn token(raw: &str) -> Result<&str, InvalidField> {
    if raw.len() > MAX_TOKEN_BYTES {
        return Err(InvalidField {
            field: "challenge_token",
            problem: format!("must be at most {MAX_TOKEN_BYTES} bytes"),
        });
    }
    Ok(raw)
}

/// `application/x-www-form-urlencoded` body of `fields`, in order.
pub fn form_body(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Form encoding: ASCII letters, digits and `*-._` stay, space becomes `+`, every other byte
/// of the UTF-8 encoding becomes `%XX`.
fn form_encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Whether a siteverify answer says the challenge was passed (`"success": true`).
pub fn passed(answer: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(answer)
        .ok()
        .and_then(|v| v.get("success").and_then(serde_json::Value::as_bool))
        .unwrap_or(false)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_form_body_encodes_every_reserved_byte() {
        assert_eq!(
            form_body(&[
                ("secret", "s3cr3t"),
                ("response", "a b&c=d+é/"),
                ("remoteip", "::1")
            ]),
            "secret=s3cr3t&response=a+b%26c%3Dd%2B%C3%A9%2F&remoteip=%3A%3A1"
        );
        assert_eq!(form_body(&[]), "");
    }

    #[test]
    fn only_success_true_passes() {
        assert!(passed(br#"{"success": true, "hostname": "x"}"#));
        assert!(!passed(br#"{"success": false}"#));
        assert!(!passed(br#"{"success": "true"}"#));
        assert!(!passed(br#"{}"#));
        assert!(!passed(b"<html>ok</html>"));
        assert!(!passed(b""));
    }

    #[test]
    fn tokens_up_to_4096_bytes_are_accepted() {
        assert_eq!(token(""), Ok(""));
        assert!(token(&"x".repeat(MAX_TOKEN_BYTES)).is_ok());
        let err = token(&"x".repeat(MAX_TOKEN_BYTES + 1)).unwrap_err();
        assert_eq!(err.field, "challenge_token");
    }
}
