//! Attacks on: bad_input (see main.rs).
