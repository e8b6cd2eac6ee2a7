//! Code shared by the example programs (`interop_*.rs`, `bench_transfer.rs`),
//! included by each as `#[path = "support/mod.rs"] mod support;`.
//!
//! - [`cli`]: the command line of the interop peers (flags, usage errors,
//!   the options every peer takes, TLS from a certificates directory, the
//!   watchdog);
//! - [`json`]: the one-JSON-object-per-line output the interop tests read;
//! - [`payload`]: the deterministic tensors of the interop tests, as
//!   `tests/interop/common.py` builds them.

// Every example uses only part of this module.
#![allow(dead_code)]

pub mod cli;
pub mod json;
pub mod payload;
