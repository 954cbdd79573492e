//! The attack suite (issue 4): each test attacks one defence of sspr through its public gRPC
//! API (or, for the bus defences, through NATS) on real components, and would fail if that
//! defence were removed. One module per family of defences; the README's "Defences" section
//! lists each with its default and the test that proves it.

mod bad_input;
mod bus_permissions;
mod codes;
mod enumeration;
mod secrets;
mod sms_pumping;
mod takeover;
mod throttles;
