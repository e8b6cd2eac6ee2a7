//! `ofl_server_limits`: the bounds a server puts on its peers, one object
//! for the aggregator and the director servers, attached with
//! `ofl_<x>_server_options_set_limits` (which copies it).

use super::boundary::{arg_mut, arg_ref, check_out, ffi_fn, free_boxed, write_out};
use super::option_values;
use crate::error::Result;
use crate::limits::ServerLimits;

/// Connection and request bounds of a server (defaults in each setter's
/// doc). Not thread-safe: configure from one thread; once attached
/// (copied) it may be freed.
#[allow(non_camel_case_types)]
pub struct ofl_server_limits {
    /// The bounds as the servers take them.
    pub limits: ServerLimits,
}

impl ofl_server_limits {
    /// A copy of the limits behind `limits`, as a `_set_limits` export
    /// stores it (INVALID_ARGUMENT for NULL).
    pub fn copied(limits: *const ofl_server_limits) -> Result<ServerLimits> {
        Ok(arg_ref(limits, "limits")?.limits.clone())
    }
}

fn limits_mut<'a>(limits: *mut ofl_server_limits) -> Result<&'a mut ServerLimits> {
    Ok(&mut arg_mut(limits, "limits")?.limits)
}

ffi_fn! {
    /// New server limits with every default, written to `*out`.
    fn ofl_server_limits_new(out: *mut *mut ofl_server_limits) -> *mut ofl_error {
        check_out(out, "out")?;
        write_out(out, ofl_server_limits { limits: ServerLimits::default() });
        Ok(())
    }
}

ffi_fn! {
    /// Frees server limits. NULL is a no-op.
    fn ofl_server_limits_free(limits: *mut ofl_server_limits) {
        free_boxed(limits)
    }
}

ffi_fn! {
    /// Concurrent calls (HTTP/2 streams) per connection; more are refused
    /// with REFUSED_STREAM (default 100). INVALID_ARGUMENT when 0.
    fn ofl_server_limits_set_max_concurrent_streams(limits: *mut ofl_server_limits, max: u32) -> *mut ofl_error {
        let value = option_values::count(u64::from(max), u64::from(u32::MAX), "max_concurrent_streams")? as u32;
        limits_mut(limits)?.max_concurrent_streams = value;
        Ok(())
    }
}

ffi_fn! {
    /// Connections served at once; further connections wait in the listen
    /// backlog (default 1000, below the common 1024 file-descriptor limit).
    /// INVALID_ARGUMENT when 0.
    fn ofl_server_limits_set_max_connections(limits: *mut ofl_server_limits, max: u32) -> *mut ofl_error {
        let value = option_values::count(u64::from(max), u64::from(u32::MAX), "max_connections")?;
        limits_mut(limits)?.max_connections = value;
        Ok(())
    }
}

ffi_fn! {
    /// Time a new connection has to finish its TLS handshake and send the
    /// HTTP/2 preface before it is closed (default 10000 ms).
    /// INVALID_ARGUMENT when 0 or over a year.
    fn ofl_server_limits_set_handshake_timeout_ms(limits: *mut ofl_server_limits, timeout_ms: u64) -> *mut ofl_error {
        let value = option_values::timeout_millis(timeout_ms, "handshake_timeout")?;
        limits_mut(limits)?.handshake_timeout = value;
        Ok(())
    }
}

ffi_fn! {
    /// A connection with no call in flight for this long is closed; clients
    /// reconnect on their next call (default 60000 ms). INVALID_ARGUMENT
    /// when 0 or over a year.
    fn ofl_server_limits_set_idle_timeout_ms(limits: *mut ofl_server_limits, timeout_ms: u64) -> *mut ofl_error {
        let value = option_values::timeout_millis(timeout_ms, "idle_timeout")?;
        limits_mut(limits)?.idle_timeout = value;
        Ok(())
    }
}

ffi_fn! {
    /// Largest request body of a call that is not a streamed upload (unary
    /// and server-streaming calls), gRPC framing included; larger gets
    /// RESOURCE_EXHAUSTED before it is buffered (default 4 MiB).
    /// INVALID_ARGUMENT below 1024.
    fn ofl_server_limits_set_max_unary_request_size(limits: *mut ofl_server_limits, bytes: u64) -> *mut ofl_error {
        let value = option_values::byte_size(bytes, 1024, "max_unary_request_size")?;
        limits_mut(limits)?.max_unary_request_size = value;
        Ok(())
    }
}

ffi_fn! {
    /// How long a stopping server lets calls in flight finish (default
    /// 5000 ms; 0 cancels them at once). After it, calls still in flight are
    /// cancelled (their clients see UNAVAILABLE; an upload cut short never
    /// reaches the callbacks) and their connections reset, so `_stop`
    /// followed by `_serve` returning, and `_free`, take at most about this
    /// grace plus half a second whatever the peers do (a stalled upload, a
    /// client that stopped reading). A callback still running then is
    /// abandoned: it runs to its end on its library thread and its answer is
    /// dropped. INVALID_ARGUMENT over a year. (OpenFL 1.6's aggregator stops
    /// with no grace, after checking every 5 s whether to stop.)
    fn ofl_server_limits_set_shutdown_grace_ms(limits: *mut ofl_server_limits, grace_ms: u64) -> *mut ofl_error {
        let value = option_values::grace_millis(grace_ms, "shutdown_grace")?;
        limits_mut(limits)?.shutdown_grace = value;
        Ok(())
    }
}
