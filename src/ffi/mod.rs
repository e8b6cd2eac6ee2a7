//! The C ABI: the only unsafe code of the crate. It converts between C and
//! the Rust API and does nothing else; conventions are in the header's
//! preamble (`include/openfl_transport.h`) and in DESIGN.md §3.
//!
//! Exports take raw pointers from C, where Rust's `unsafe fn` means nothing:
//! the pointer contract is in each function's doc (the header), and every
//! dereference carries a `// SAFETY:` comment. Hence the crate-level allow
//! of clippy's `not_unsafe_ptr_arg_deref` for this module.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

pub mod aggregator_logic;
pub mod aggregator_server;
pub mod borrow;
pub mod boundary;
pub mod client;
pub mod director_client;
pub mod director_hooks;
pub mod director_server;
pub mod director_types;
pub mod error;
pub mod fedavg;
pub mod logging;
pub mod option_values;
pub mod tasks;
pub mod tensor;
pub mod tls_options;

use std::ffi::c_char;

/// The library version, e.g. "0.1.0" (static, NUL-terminated).
#[no_mangle]
pub extern "C" fn ofl_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    /// The committed header must be what cbindgen generates from this source;
    /// refresh it with `OFL_UPDATE_HEADER=1 cargo build`.
    #[test]
    fn committed_header_is_current() {
        let generated = include_str!(concat!(env!("OUT_DIR"), "/openfl_transport.h"));
        let committed = include_str!("../../include/openfl_transport.h");
        assert!(
            generated == committed,
            "include/openfl_transport.h is stale: run `OFL_UPDATE_HEADER=1 cargo build`"
        );
    }
}
