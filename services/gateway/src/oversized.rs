//! Oversized requests: refused with `RESOURCE_EXHAUSTED` ("message too large").
//!
//! Every public service is built with `max_decoding_message_size`, so tonic reads a request's
//! 5-byte gRPC frame header and refuses a message longer than the limit before reading or
//! allocating its body. tonic reports that as `OUT_OF_RANGE` with a message naming its own
//! internals; this response mapper (a tower layer on the whole server) turns exactly that
//! refusal into `RESOURCE_EXHAUSTED` with a fixed message, the status sspr uses for every
//! "too much" (rate limits included). Nothing else is touched.

use tonic::codegen::http::{self, HeaderValue};

/// What tonic's decoder says, percent-encoded as in the `grpc-message` header.
const TONIC_TOO_LARGE: &str = "decoded%20message%20length%20too%20large";
const OUT_OF_RANGE: &str = "11";
const RESOURCE_EXHAUSTED: &str = "8";

/// Rewrites tonic's "decoded message length too large" refusal; passes anything else through.
pub fn map_response<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    let too_large = headers
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == OUT_OF_RANGE.as_bytes())
        && headers
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|m| m.contains(TONIC_TOO_LARGE));
    if too_large {
        headers.insert("grpc-status", HeaderValue::from_static(RESOURCE_EXHAUSTED));
        headers.insert(
            "grpc-message",
            HeaderValue::from_static("message%20too%20large"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: &'static str, message: &'static str) -> http::Response<()> {
        let mut r = http::Response::new(());
        r.headers_mut()
            .insert("grpc-status", HeaderValue::from_static(status));
        r.headers_mut()
            .insert("grpc-message", HeaderValue::from_static(message));
        r
    }

    #[test]
    fn only_the_decoder_size_refusal_is_rewritten() {
        let mapped = map_response(response(
            "11",
            "Error,%20decoded%20message%20length%20too%20large:%20found%201%20bytes",
        ));
        assert_eq!(mapped.headers()["grpc-status"], "8");
        assert_eq!(mapped.headers()["grpc-message"], "message%20too%20large");
        let other = map_response(response("11", "page%20out%20of%20range"));
        assert_eq!(other.headers()["grpc-status"], "11");
        let ok = map_response(http::Response::new(()));
        assert!(ok.headers().get("grpc-status").is_none());
    }
}
