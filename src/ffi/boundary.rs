//! The one export pattern ([`ffi_fn!`]), its panic boundary, and the
//! argument conversions every export goes through.
//!
//! No panic unwinds into C: [`ffi_fn!`] runs each export's body under
//! `catch_unwind` ([`call`], [`value`]) and turns a panic into an
//! `OFL_CODE_PANIC` error naming the export (or a documented value for
//! functions that return no error).

/// Defines a C export, in the style of hyper's `ffi_fn!`: it emits
/// `#[no_mangle] pub extern "C"`, runs the body under the panic boundary and
/// names the function in panic messages. Three shapes:
///
/// ```ignore
/// ffi_fn! {
///     /// Fallible: the body is a `Result<()>`; C gets NULL or an owned error.
///     fn ofl_thing_set_size(thing: *mut ofl_thing, size: u64) -> *mut ofl_error {
///         arg_mut(thing, "thing")?.size = size;
///         Ok(())
///     }
/// }
/// ffi_fn! {
///     /// A value: a panic returns the value after `?=`.
///     fn ofl_thing_size(thing: *const ofl_thing) -> u64 {
///         with_ref(thing, 0, |t| t.size)
///     } ?= 0
/// }
/// ffi_fn! {
///     /// No value (`_free` functions): a panic is contained.
///     fn ofl_thing_free(thing: *mut ofl_thing) {
///         free_boxed(thing)
///     }
/// }
/// ```
///
/// build.rs expands these invocations for cbindgen (which does not expand
/// macros on stable Rust), so their doc comments become the header's docs.
macro_rules! ffi_fn {
    ($(#[$attr:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> *mut ofl_error $body:block) => {
        $(#[$attr])*
        #[no_mangle]
        pub extern "C" fn $name($($arg: $ty),*) -> *mut $crate::ffi::error::ofl_error {
            $crate::ffi::boundary::call(stringify!($name), move || -> $crate::error::Result<()> { $body })
        }
    };
    ($(#[$attr:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty $body:block ?= $on_panic:expr) => {
        $(#[$attr])*
        #[no_mangle]
        pub extern "C" fn $name($($arg: $ty),*) -> $ret {
            $crate::ffi::boundary::value($on_panic, move || -> $ret { $body })
        }
    };
    ($(#[$attr:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$attr])*
        #[no_mangle]
        pub extern "C" fn $name($($arg: $ty),*) {
            $crate::ffi::boundary::value((), move || $body)
        }
    };
}
pub(crate) use ffi_fn;

use std::ffi::{c_char, CStr};

use super::error::ofl_error;
use crate::error::{Error, Result};

/// Runs the body of an export that returns `ofl_error *`: NULL on success,
/// an owned error otherwise; a panic becomes an `OFL_CODE_PANIC` error.
pub fn call(function: &str, body: impl FnOnce() -> Result<()>) -> *mut ofl_error {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
    super::error::into_c_error(function, result)
}

/// Runs the body of an export that returns a plain value; a panic returns
/// `on_panic` instead of unwinding into C.
pub fn value<T>(on_panic: T, body: impl FnOnce() -> T) -> T {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(on_panic)
}

/// Runs `f` on the object behind a handle, or returns `default` for NULL:
/// the shape of every accessor (run inside [`ffi_fn!`]'s panic boundary).
pub fn with_ref<O, T>(ptr: *const O, default: T, f: impl FnOnce(&O) -> T) -> T {
    // SAFETY: NULL or a live object handed out by this library, of this type
    // (the documented contract of every accessor).
    match unsafe { ptr.as_ref() } {
        Some(o) => f(o),
        None => default,
    }
}

/// A required, NUL-terminated UTF-8 string argument.
pub fn arg_str<'a>(ptr: *const c_char, name: &str) -> Result<&'a str> {
    if ptr.is_null() {
        return Err(Error::invalid_argument(format!("{name} is NULL")));
    }
    // SAFETY: the caller passes a NUL-terminated string that stays valid for
    // the duration of the call (the documented contract of every export).
    let cstr = unsafe { CStr::from_ptr(ptr) };
    cstr.to_str().map_err(|e| Error::invalid_argument(format!("{name} is not valid UTF-8: {e}")))
}

/// An optional string argument: NULL is `None`.
pub fn arg_opt_str<'a>(ptr: *const c_char, name: &str) -> Result<Option<&'a str>> {
    if ptr.is_null() {
        Ok(None)
    } else {
        arg_str(ptr, name).map(Some)
    }
}

/// A required pointer to a value the library only reads.
pub fn arg_ref<'a, T>(ptr: *const T, name: &str) -> Result<&'a T> {
    // SAFETY: a non-NULL pointer passed to an export points to a live,
    // properly aligned object of the documented type for the call's duration.
    unsafe { ptr.as_ref() }.ok_or_else(|| Error::invalid_argument(format!("{name} is NULL")))
}

/// A required pointer to a value the library changes.
pub fn arg_mut<'a, T>(ptr: *mut T, name: &str) -> Result<&'a mut T> {
    // SAFETY: as `arg_ref`; the caller does not use the object from another
    // thread during the call (documented on every setter).
    unsafe { ptr.as_mut() }.ok_or_else(|| Error::invalid_argument(format!("{name} is NULL")))
}

/// A borrowed array of `len` elements; NULL is allowed only when `len` is 0.
pub fn arg_slice<'a, T>(ptr: *const T, len: usize, name: &str) -> Result<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Error::invalid_argument(format!("{name} is NULL but its length is {len}")));
    }
    // SAFETY: the caller passes `len` readable, initialised elements at `ptr`
    // that stay valid and unchanged for the duration of the call.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Checks an output pointer before any work is done.
pub fn check_out<T>(out: *mut *mut T, name: &str) -> Result<()> {
    if out.is_null() {
        Err(Error::invalid_argument(format!("{name} is NULL")))
    } else {
        Ok(())
    }
}

/// Hands a new object to C through `out` (checked by [`check_out`]).
pub fn write_out<T>(out: *mut *mut T, value: T) {
    // SAFETY: `out` was checked non-NULL and points to writable storage for
    // one pointer, as documented on every function with an `out` argument.
    unsafe { *out = Box::into_raw(Box::new(value)) };
}

/// Frees an object created by [`write_out`]; NULL is a no-op.
pub fn free_boxed<T>(ptr: *mut T) {
    if !ptr.is_null() {
        // SAFETY: non-NULL pointers given to `_free` functions came from
        // `write_out` for this same type and are freed once (documented).
        drop(unsafe { Box::from_raw(ptr) });
    }
}

/// A string as C reads it: owned, NUL-terminated (interior NULs are cut).
pub fn c_string(s: &str) -> std::ffi::CString {
    let end = s.find('\0').unwrap_or(s.len());
    std::ffi::CString::new(&s[..end]).expect("no interior NUL after cutting")
}
