//! Attacks on: takeover (see main.rs).
