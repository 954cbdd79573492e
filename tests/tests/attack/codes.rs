//! Attacks on: codes (see main.rs).
