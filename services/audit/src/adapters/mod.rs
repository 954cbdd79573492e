//! The audit log's storage: sea-orm entities, migrations and the store.

pub mod entities;
pub mod migration;
pub mod store;
