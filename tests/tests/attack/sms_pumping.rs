//! Attacks on: sms_pumping (see main.rs).
