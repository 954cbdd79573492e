//! Enrolment's IO: sea-orm tables and migration, the store implementing
//! [`crate::ports::EnrolmentStore`], the `method.registered` event, and the NATS clients of the
//! directory, policy and verification services.

pub mod entities;
pub mod events;
pub mod migration;
pub mod peers;
pub mod store;
