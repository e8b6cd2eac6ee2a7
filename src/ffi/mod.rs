//! The C ABI: the only unsafe code of the crate. It converts between C and
//! the Rust API and does nothing else; conventions are in the header's
//! preamble (`include/openfl_transport.h`) and in DESIGN.md §3.
//!
//! Exports take raw pointers from C, where Rust's `unsafe fn` means nothing:
//! the pointer contract is in each function's doc (the header), and every
//! dereference carries a `// SAFETY:` comment. Hence the crate-level allow
//! of clippy's `not_unsafe_ptr_arg_deref` for this module.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

// Module order is the header's order: errors, version and logging first,
// then the shared types, then one section per area.
pub mod boundary;
pub mod error;

use std::ffi::c_char;

use boundary::ffi_fn;

ffi_fn! {
    /// The library version, e.g. "0.2.0" (static, NUL-terminated).
    fn ofl_version() -> *const c_char {
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
    } ?= c"".as_ptr()
}

pub mod logging;
pub mod foreign_data;
pub mod option_values;
pub mod tls_config;
pub mod connect_options;
pub mod call_options;
pub mod server_limits;
pub mod tensor;
pub mod borrow;
pub mod aggregator;
pub mod fedavg;
pub mod director;
pub mod metrics;

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
