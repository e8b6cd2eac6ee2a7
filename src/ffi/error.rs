//! Error objects: every fallible export returns `ofl_error *`, NULL on
//! success. No thread-local "last error" (Go moves goroutines between OS
//! threads between cgo calls).

use std::any::Any;
use std::ffi::{c_char, CString};

use super::boundary::{c_string, ffi_fn, free_boxed, with_ref};
use crate::error::{ofl_code, Error, Result};

/// An error: a code and a message. Owned by the caller, who frees it with
/// `ofl_error_free`.
#[allow(non_camel_case_types)]
pub struct ofl_error {
    code: ofl_code,
    message: CString,
}

impl ofl_error {
    fn boxed(error: Error) -> *mut ofl_error {
        Box::into_raw(Box::new(ofl_error { code: error.code(), message: c_string(error.message()) }))
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".to_string())
}

/// The C result of an export body: NULL on success, an owned error otherwise.
pub fn into_c_error(function: &str, result: std::thread::Result<Result<()>>) -> *mut ofl_error {
    match result {
        Ok(Ok(())) => std::ptr::null_mut(),
        Ok(Err(error)) => ofl_error::boxed(error),
        Err(payload) => ofl_error::boxed(Error::new(
            ofl_code::Panic,
            format!("{function} panicked: {}", panic_message(payload.as_ref())),
        )),
    }
}

ffi_fn! {
    /// A new error with `code` and a copy of `message` (NULL: empty), for a
    /// callback to return: the library takes ownership of what a callback
    /// returns and frees it. `OFL_CODE_OK` gives NULL (no error). A code
    /// that is no `ofl_code` value becomes `OFL_CODE_UNKNOWN`; a message
    /// that is not UTF-8 is converted lossily.
    fn ofl_error_new(code: i32, message: *const c_char) -> *mut ofl_error {
        let code = ofl_code::from_i32(code).unwrap_or(ofl_code::Unknown);
        if code == ofl_code::Ok {
            return std::ptr::null_mut();
        }
        let message = if message.is_null() {
            String::new()
        } else {
            // SAFETY: a non-NULL `message` is a NUL-terminated string valid
            // for the call (documented).
            unsafe { std::ffi::CStr::from_ptr(message) }.to_string_lossy().into_owned()
        };
        ofl_error::boxed(Error::new(code, message))
    } ?= std::ptr::null_mut()
}

ffi_fn! {
    /// The error's code. NULL gives `OFL_CODE_OK`.
    fn ofl_error_code(error: *const ofl_error) -> ofl_code {
        with_ref(error, ofl_code::Ok, |e| e.code)
    } ?= ofl_code::Panic
}

ffi_fn! {
    /// The error's message: NUL-terminated UTF-8 owned by the error, valid
    /// until `ofl_error_free`. NULL gives an empty string.
    fn ofl_error_message(error: *const ofl_error) -> *const c_char {
        with_ref(error, c"".as_ptr(), |e| e.message.as_ptr())
    } ?= c"".as_ptr()
}

ffi_fn! {
    /// Frees an error. NULL is a no-op.
    fn ofl_error_free(error: *mut ofl_error) {
        free_boxed(error)
    }
}

ffi_fn! {
    /// A static, NUL-terminated name for an `ofl_code` value, e.g.
    /// "UNAUTHENTICATED"; values that are no code give "UNKNOWN_CODE".
    fn ofl_code_name(code: i32) -> *const c_char {
        match ofl_code::from_i32(code) {
            Some(code) => code_name(code).as_ptr(),
            None => c"UNKNOWN_CODE".as_ptr(),
        }
    } ?= c"PANIC".as_ptr()
}

/// Takes ownership of what a callback named `callback` returned: NULL is
/// success, an error becomes this library's error (and is freed).
pub fn take_callback_error(error: *mut ofl_error, callback: &str) -> Result<()> {
    if error.is_null() {
        return Ok(());
    }
    // SAFETY: a callback returns NULL or an error made by `ofl_error_new` (or
    // returned by another export), whose ownership passes to the library
    // (documented on every callback type); it is freed once, here.
    let error = unsafe { Box::from_raw(error) };
    let message = error.message.to_string_lossy();
    let message = if message.is_empty() { format!("{callback} callback failed") } else { message.into_owned() };
    Err(Error::new(error.code, message))
}

fn code_name(code: ofl_code) -> &'static std::ffi::CStr {
    use ofl_code::*;
    match code {
        Ok => c"OK",
        Cancelled => c"CANCELLED",
        Unknown => c"UNKNOWN",
        InvalidArgument => c"INVALID_ARGUMENT",
        DeadlineExceeded => c"DEADLINE_EXCEEDED",
        NotFound => c"NOT_FOUND",
        AlreadyExists => c"ALREADY_EXISTS",
        PermissionDenied => c"PERMISSION_DENIED",
        ResourceExhausted => c"RESOURCE_EXHAUSTED",
        FailedPrecondition => c"FAILED_PRECONDITION",
        Aborted => c"ABORTED",
        OutOfRange => c"OUT_OF_RANGE",
        Unimplemented => c"UNIMPLEMENTED",
        Internal => c"INTERNAL",
        Unavailable => c"UNAVAILABLE",
        DataLoss => c"DATA_LOSS",
        Unauthenticated => c"UNAUTHENTICATED",
        Tls => c"TLS",
        Io => c"IO",
        Panic => c"PANIC",
        InvalidResponse => c"INVALID_RESPONSE",
        RetriesExhausted => c"RETRIES_EXHAUSTED",
        ProtocolMismatch => c"PROTOCOL_MISMATCH",
    }
}
