//! Code shared by the interop peers (`tests/interop/peers/*.rs`, each a
//! `mod support;`).
//!
//! - [`cli`]: the command line of the interop peers (flags, usage errors,
//!   the options every peer takes, TLS from a certificates directory, the
//!   watchdog);
//! - [`json`]: the one-JSON-object-per-line output the interop tests read;
//! - [`payload`]: the deterministic tensors of the interop tests, as
//!   `tests/interop/common.py` builds them.

// Every program uses only part of this module.
#![allow(dead_code)]

pub mod cli;
pub mod json;
pub mod payload;
