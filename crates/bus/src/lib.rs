//! The bus: how sspr services talk to each other over NATS.
//!
//! - [`subjects`]: every subject name, in one place (they are a public contract).
//! - [`Bus`]: protobuf request/reply with W3C trace context in the headers, and JetStream
//!   publishing with `Nats-Msg-Id` de-duplication.
//! - [`Router`] and [`serve`]: a NATS micro-service (`$SRV.PING`/`$SRV.STATS` discovery) whose
//!   endpoints decode protobuf, run a handler inside a span continued from the caller's
//!   `traceparent`, and reply with the result or a coded error.
//! - [`streams`]: the JetStream streams, created or updated at start with explicit settings.
//!
//! Nothing here logs payloads: requests carry passwords and codes.

mod client;
pub mod consumer;
mod error;
pub mod sealed;
mod server;
pub mod streams;
pub mod subjects;
pub mod trace;

pub use client::{Bus, BusConfig};
pub use error::{
    BadRequest, BusError, DETAILS_HEADER, ErrorCode, FieldViolation, REASON_HEADER,
    RETRY_AFTER_HEADER, RpcError,
};
pub use server::{RequestContext, Router, serve};
