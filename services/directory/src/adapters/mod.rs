//! Adapters of the directory: its sea-orm tables and migrations, the store implementing
//! [`crate::ports::UserStore`] on them, the NATS client of the policy service, and the LDAP
//! password writeback connector.

pub mod entities;
pub mod ldap;
pub mod migration;
pub mod policy_client;
pub mod store;
