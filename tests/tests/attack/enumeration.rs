//! Attacks on: enumeration (see main.rs).
