//! Attacks on: throttles (see main.rs).
