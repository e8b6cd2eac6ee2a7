//! Per-call settings (`ofl_call_options`): a time limit of the whole call,
//! a cancel token (`ofl_cancel_token`) and a progress callback
//! (`ofl_progress_fn`), given to any client call as its `call` argument.

use std::ffi::c_void;
use std::sync::Arc;
use std::time::Duration;

use super::boundary::{arg_mut, arg_ref, check_out, ffi_fn, free_boxed, with_ref, write_out};
use crate::call::{CallOptions, CancelToken, Progress};
use crate::error::{Error, Result};

/// A cancellation token: cancels one call, or every call sharing it, from
/// any thread. Shared, not copied: `ofl_call_options_set_cancel_token`
/// keeps a reference, so the token may be freed while a call uses it.
/// Thread-safe.
#[allow(non_camel_case_types)]
pub struct ofl_cancel_token {
    inner: CancelToken,
}

/// Progress of one transfer: `bytes_done` of `bytes_total` (0 when the
/// total is unknown; the last report has `bytes_done == bytes_total`).
/// Called on a library thread, at most once per 4 MiB and once at the end,
/// never with a smaller `bytes_done` than before, and never after the call
/// returned; keep it short (it holds up the transfer). `user_data` is the
/// pointer given to `ofl_call_options_set_progress`. Return true to go on,
/// false to abort the call with OFL_CODE_CANCELLED (an upload is then reset:
/// the server never counts it).
#[allow(non_camel_case_types)]
pub type ofl_progress_fn = Option<extern "C" fn(user_data: *mut c_void, bytes_done: u64, bytes_total: u64) -> bool>;

/// Settings of one call. Passing NULL as a call's `call` argument means
/// the client's defaults. The object is only read during the call that
/// receives it: it may be reused for other calls and freed after. Not
/// thread-safe: do not change it while a call that received it runs.
#[allow(non_camel_case_types)]
#[derive(Default)]
pub struct ofl_call_options {
    timeout: Option<Duration>,
    cancel: Option<CancelToken>,
    progress: Option<(extern "C" fn(*mut c_void, u64, u64) -> bool, *mut c_void)>,
}

/// The host's `user_data` of a progress callback.
#[derive(Clone, Copy)]
struct HostPointer(*mut c_void);

// SAFETY: the header says the progress callback runs on a library thread
// with `user_data` during the call: the host hands it over for that. The
// library never dereferences it and stops calling back before the call
// returns (`Meter::close`).
unsafe impl Send for HostPointer {}
// SAFETY: as above; reports of one call never run concurrently.
unsafe impl Sync for HostPointer {}

/// The Rust options of `call` (NULL: the client's defaults).
pub fn call_options(call: *const ofl_call_options) -> Result<CallOptions> {
    if call.is_null() {
        return Ok(CallOptions::default());
    }
    let call = arg_ref(call, "call")?;
    let progress = call.progress.map(|(callback, user_data)| {
        let user_data = HostPointer(user_data);
        let progress: Progress = Arc::new(move |done, total| {
            let user_data = user_data;
            callback(user_data.0, done, total)
        });
        progress
    });
    Ok(CallOptions { timeout: call.timeout, cancel: call.cancel.clone(), progress })
}

/// Longest time limit accepted: a year ("never" for a federation; longer
/// would overflow deadlines).
const MAX_CALL_TIMEOUT_MS: u64 = 365 * 24 * 3600 * 1000;

/// A call time limit in milliseconds: 0 is "no limit" (`Duration::ZERO`).
pub fn call_timeout(timeout_ms: u64) -> Result<Duration> {
    if timeout_ms > MAX_CALL_TIMEOUT_MS {
        return Err(Error::invalid_argument(format!(
            "timeout_ms {timeout_ms} is out of range (0 for none, up to {MAX_CALL_TIMEOUT_MS})"
        )));
    }
    Ok(Duration::from_millis(timeout_ms))
}

ffi_fn! {
    /// A new cancel token, not cancelled, written to `*out`.
    fn ofl_cancel_token_new(out: *mut *mut ofl_cancel_token) -> *mut ofl_error {
        check_out(out, "out")?;
        write_out(out, ofl_cancel_token { inner: CancelToken::new() });
        Ok(())
    }
}

ffi_fn! {
    /// Cancels the token, from any thread (idempotent): every call that
    /// carries it ends with OFL_CODE_CANCELLED as soon as possible, and
    /// later calls carrying it fail so at once. An upload in flight is reset:
    /// the server never counts it as complete.
    fn ofl_cancel_token_cancel(token: *const ofl_cancel_token) -> *mut ofl_error {
        arg_ref(token, "token")?.inner.cancel();
        Ok(())
    }
}

ffi_fn! {
    /// Whether the token was cancelled (false for NULL).
    fn ofl_cancel_token_is_cancelled(token: *const ofl_cancel_token) -> bool {
        with_ref(token, false, |t| t.inner.is_cancelled())
    } ?= false
}

ffi_fn! {
    /// Frees the caller's reference to the token; calls (and call options)
    /// holding it keep theirs. NULL is a no-op.
    fn ofl_cancel_token_free(token: *mut ofl_cancel_token) {
        free_boxed(token)
    }
}

ffi_fn! {
    /// New call settings (the client's defaults), written to `*out`.
    fn ofl_call_options_new(out: *mut *mut ofl_call_options) -> *mut ofl_error {
        check_out(out, "out")?;
        write_out(out, ofl_call_options::default());
        Ok(())
    }
}

ffi_fn! {
    /// Frees call settings (and their reference to a cancel token). NULL is
    /// a no-op.
    fn ofl_call_options_free(call: *mut ofl_call_options) {
        free_boxed(call)
    }
}

ffi_fn! {
    /// Time limit of the whole call (every attempt, retry and backoff), in
    /// milliseconds: when it passes the call ends with
    /// OFL_CODE_DEADLINE_EXCEEDED, and each attempt tells the server the
    /// time left (gRPC `grpc-timeout`). 0 means no limit. Overrides
    /// `ofl_connect_options_set_call_timeout_ms`. Distinct from the retry
    /// deadline of `ofl_connect_options_set_retry`, which only bounds
    /// retrying. INVALID_ARGUMENT above a year.
    fn ofl_call_options_set_timeout_ms(call: *mut ofl_call_options, timeout_ms: u64) -> *mut ofl_error {
        let timeout = call_timeout(timeout_ms)?;
        arg_mut(call, "call")?.timeout = Some(timeout);
        Ok(())
    }
}

ffi_fn! {
    /// The cancel token of the call: shared (reference counted), not
    /// copied, so cancelling it later cancels the call. NULL removes it.
    fn ofl_call_options_set_cancel_token(call: *mut ofl_call_options, token: *const ofl_cancel_token) -> *mut ofl_error {
        let call = arg_mut(call, "call")?;
        call.cancel = with_ref(token, None, |t| Some(t.inner.clone()));
        Ok(())
    }
}

ffi_fn! {
    /// The progress callback of the call's transfer (the aggregated tensor
    /// download, the task results upload, the director's archive and model
    /// transfers; other calls ignore it). `user_data` is borrowed for the
    /// duration of each call that receives these settings (the library never
    /// frees it). A NULL `progress` removes the callback.
    fn ofl_call_options_set_progress(
        call: *mut ofl_call_options,
        progress: ofl_progress_fn,
        user_data: *mut c_void,
    ) -> *mut ofl_error {
        arg_mut(call, "call")?.progress = progress.map(|p| (p, user_data));
        Ok(())
    }
}
