//! Error objects: every fallible export returns `ofl_error *`, NULL on
//! success. No thread-local "last error" (Go moves goroutines between OS
//! threads between cgo calls).

use std::any::Any;
use std::ffi::{c_char, CString};

use super::boundary::{c_string, free_boxed, value};
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

/// The error's code. NULL gives `OFL_CODE_OK`.
#[no_mangle]
pub extern "C" fn ofl_error_code(error: *const ofl_error) -> ofl_code {
    // SAFETY: NULL or a live error returned by this library.
    value(ofl_code::Panic, || unsafe { error.as_ref() }.map_or(ofl_code::Ok, |e| e.code))
}

/// The error's message: NUL-terminated UTF-8 owned by the error, valid until
/// `ofl_error_free`. NULL gives an empty string.
#[no_mangle]
pub extern "C" fn ofl_error_message(error: *const ofl_error) -> *const c_char {
    value(c"".as_ptr(), || {
        // SAFETY: NULL or a live error returned by this library.
        unsafe { error.as_ref() }.map_or(c"".as_ptr(), |e| e.message.as_ptr())
    })
}

/// Frees an error. NULL is a no-op.
#[no_mangle]
pub extern "C" fn ofl_error_free(error: *mut ofl_error) {
    value((), || free_boxed(error))
}

/// A static, NUL-terminated name for an `ofl_code` value, e.g.
/// "UNAUTHENTICATED"; values that are no code give "UNKNOWN_CODE".
#[no_mangle]
pub extern "C" fn ofl_code_name(code: i32) -> *const c_char {
    value(c"PANIC".as_ptr(), || match ofl_code::from_i32(code) {
        Some(code) => code_name(code).as_ptr(),
        None => c"UNKNOWN_CODE".as_ptr(),
    })
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
    }
}
