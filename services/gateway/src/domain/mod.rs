//! Pure edge rules of the gateway: the shape of public input, and who the client is.
//!
//! No IO, no tonic, no NATS here. The gateway owns no business rule: these checks only keep
//! malformed or oversized input away from the internal services, which validate again with
//! their own typed domain values.

pub mod admin_auth_limit;
pub mod admin_tokens;
pub mod challenge;
pub mod client_ip;
pub mod input;
#[cfg(test)]
mod properties;
pub mod security_answers;
