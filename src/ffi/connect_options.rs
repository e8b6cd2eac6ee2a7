//! `ofl_connect_options`: how a client reaches its server, one object for
//! the aggregator client and the director's envoy and frontend clients,
//! attached with `ofl_<x>_client_options_set_connect` (which copies it).

use std::ffi::c_char;
use std::time::Duration;

use super::boundary::{arg_mut, arg_ref, arg_str, check_out, ffi_fn, free_boxed, write_out};
use super::option_values;
use crate::connect::ConnectConfig;
use crate::error::{Error, Result};
use crate::retry::RetryPolicy;

/// Connection settings of a client; what is not set keeps the client's
/// default (given in each setter's doc). Not thread-safe: configure from
/// one thread; once attached (copied) it may be freed.
#[allow(non_camel_case_types)]
#[derive(Clone, Debug, Default)]
pub struct ofl_connect_options {
    /// Name the server certificate must carry, instead of the host.
    pub server_name: Option<String>,
    /// Time allowed for the TCP and TLS set-up.
    pub connect_timeout: Option<Duration>,
    /// How failed calls are retried.
    pub retry: Option<RetryPolicy>,
    /// Largest message sent or received.
    pub max_message_size: Option<usize>,
    /// Default time limit of every call (`Duration::ZERO`: none).
    pub call_timeout: Option<Duration>,
}

impl ofl_connect_options {
    /// A copy of `*connect`, as a `_set_connect` export stores it
    /// (INVALID_ARGUMENT for NULL).
    pub fn copied(connect: *const ofl_connect_options) -> Result<Self> {
        Ok(arg_ref(connect, "connect")?.clone())
    }

    /// Applies what is set to a client's settings; the rest keeps the
    /// client's default.
    pub fn apply(&self, connect: &mut ConnectConfig, retry: &mut RetryPolicy, max_message_size: &mut usize) {
        if let Some(name) = &self.server_name {
            connect.server_name = Some(name.clone());
        }
        if let Some(timeout) = self.connect_timeout {
            connect.connect_timeout = timeout;
        }
        if let Some(policy) = &self.retry {
            *retry = policy.clone();
        }
        if let Some(size) = self.max_message_size {
            *max_message_size = size;
        }
        if let Some(timeout) = self.call_timeout {
            connect.call_timeout = Some(timeout).filter(|t| !t.is_zero());
        }
    }
}

fn connect_mut<'a>(connect: *mut ofl_connect_options) -> Result<&'a mut ofl_connect_options> {
    arg_mut(connect, "connect")
}

ffi_fn! {
    /// New connection settings (every client default), written to `*out`.
    fn ofl_connect_options_new(out: *mut *mut ofl_connect_options) -> *mut ofl_error {
        check_out(out, "out")?;
        write_out(out, ofl_connect_options::default());
        Ok(())
    }
}

ffi_fn! {
    /// Frees connection settings. NULL is a no-op.
    fn ofl_connect_options_free(connect: *mut ofl_connect_options) {
        free_boxed(connect)
    }
}

ffi_fn! {
    /// The name the server's certificate must carry (OpenFL's TLS target
    /// name override); default: the host the client connects to.
    fn ofl_connect_options_set_server_name(connect: *mut ofl_connect_options, server_name: *const c_char) -> *mut ofl_error {
        let name = arg_str(server_name, "server_name")?;
        if name.is_empty() {
            return Err(Error::invalid_argument("server_name is empty"));
        }
        connect_mut(connect)?.server_name = Some(name.to_owned());
        Ok(())
    }
}

ffi_fn! {
    /// Time allowed to set up a connection (TCP + TLS), default 10 000 ms.
    /// INVALID_ARGUMENT when 0.
    fn ofl_connect_options_set_connect_timeout_ms(connect: *mut ofl_connect_options, timeout_ms: u64) -> *mut ofl_error {
        let timeout = option_values::positive_millis(timeout_ms, "timeout_ms")?;
        connect_mut(connect)?.connect_timeout = Some(timeout);
        Ok(())
    }
}

ffi_fn! {
    /// Retry policy for calls that fail with UNAVAILABLE or a dropped
    /// connection: exponential backoff from `initial_backoff_ms` up to
    /// `max_backoff_ms` with jitter; give up after `deadline_ms` (error
    /// `OFL_CODE_RETRIES_EXHAUSTED`), or never when `deadline_ms` is
    /// negative (the default, like OpenFL; each attempt is logged at info
    /// level). UNAUTHENTICATED and TLS failures are never retried.
    fn ofl_connect_options_set_retry(
        connect: *mut ofl_connect_options,
        initial_backoff_ms: u64,
        max_backoff_ms: u64,
        deadline_ms: i64,
    ) -> *mut ofl_error {
        let policy = option_values::retry_policy(initial_backoff_ms, max_backoff_ms, deadline_ms)?;
        connect_mut(connect)?.retry = Some(policy);
        Ok(())
    }
}

ffi_fn! {
    /// Largest message sent or received, default 1 GiB (2^30, as OpenFL).
    /// INVALID_ARGUMENT below 1024.
    fn ofl_connect_options_set_max_message_size(connect: *mut ofl_connect_options, bytes: u64) -> *mut ofl_error {
        let size = option_values::message_size(bytes)?;
        connect_mut(connect)?.max_message_size = Some(size);
        Ok(())
    }
}

ffi_fn! {
    /// Default time limit of every call of the client, in milliseconds
    /// (every attempt, retry and backoff of a call): when it passes the call
    /// ends with OFL_CODE_DEADLINE_EXCEEDED. 0 (the default, like OpenFL)
    /// means no limit. A call's `ofl_call_options_set_timeout_ms` overrides
    /// it. INVALID_ARGUMENT above a year.
    fn ofl_connect_options_set_call_timeout_ms(connect: *mut ofl_connect_options, timeout_ms: u64) -> *mut ofl_error {
        let timeout = super::call_options::call_timeout(timeout_ms)?;
        connect_mut(connect)?.call_timeout = Some(timeout);
        Ok(())
    }
}
