//! Pure rules of the audit log: how an event becomes a record ([`record`]) and what a query
//! may ask ([`query`]). No NATS, no database here.

pub mod query;
pub mod record;
