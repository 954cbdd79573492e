//! The `sspr` command as a library.
//!
//! - [`dev`]: the whole system in one process ([`dev::Stack`]), used by `sspr dev` and by the
//!   end-to-end tests.
//! - [`client`]: the `admin`, `register` and `reset` subcommands, thin gRPC clients of the
//!   gateway that print JSON.
//! - [`events`]: `sspr events tail`, the public events as JSON lines.
//! - [`bench`]: `sspr bench`, the open-loop load generator with the machine's physical floors.
//! - [`provision`]: `sspr provision`, the streams and durable consumers under their own identity.

pub mod bench;
pub mod client;
pub mod dev;
pub mod events;
pub mod nats_server;
pub mod provision;
