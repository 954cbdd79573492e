//! Everything that talks to the outside: the database (entities, migration, store) and the
//! other services over NATS (peers).

pub mod entities;
pub mod migration;
pub mod peers;
pub mod phone_ledger;
pub mod store;
pub mod throttle;
