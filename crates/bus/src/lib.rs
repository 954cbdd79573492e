//! The bus: how sspr services talk to each other over NATS.
//!
//! - [`subjects`]: every subject name, in one place (they are a public contract).
//! - [`Bus`]: protobuf request/reply with W3C trace context in the headers, and JetStream
//!   publishing with `Nats-Msg-Id` de-duplication.
//! - [`Router`] and [`serve`]: a NATS micro-service (`$SRV.PING`/`$SRV.STATS` discovery) whose
//!   endpoints decode protobuf, run a handler inside a span continued from the caller's
//!   `traceparent`, and reply with the result or a coded error.
//! - [`streams`]: the JetStream streams, created or updated at start with explicit settings.
//! - [`work`]: what each served request did (database statements, outgoing requests).
//! - [`deadline`]: the caller's remaining budget, carried from hop to hop.
//! - [`idempotency`]: a retried request with the same key gets the first attempt's answer.
//!
//! Nothing here logs payloads: requests carry passwords and codes.

mod access;
mod client;
pub mod consumer;
pub mod deadline;
mod error;
pub mod idempotency;
pub mod sealed;
mod server;
pub mod streams;
pub mod subjects;
pub mod trace;
pub mod work;

pub use access::{NatsAuth, NatsTls};
pub use client::{Bus, BusConfig, DEFAULT_MAX_IN_FLIGHT, DurableMessage};
pub use error::{
    BadRequest, BusError, DETAILS_HEADER, ErrorCode, FieldViolation, REASON_HEADER,
    RETRY_AFTER_HEADER, RpcError,
};
pub use server::{MAX_REQUEST_BYTES, RequestContext, Router, is_serving, serve};
