//! Checks of option values shared by every options object (client, server,
//! director): hosts, message sizes, retry policies, durations.

use std::ffi::c_char;
use std::time::Duration;

use super::boundary::arg_str;
use crate::error::{Error, Result};
use crate::retry::RetryPolicy;

/// A host name or address: required, not empty.
pub fn host(ptr: *const c_char) -> Result<String> {
    let host = arg_str(ptr, "host")?;
    if host.is_empty() {
        return Err(Error::invalid_argument("host is empty"));
    }
    Ok(host.to_owned())
}

/// A maximum message size: at least 1 KiB and addressable.
pub fn message_size(bytes: u64) -> Result<usize> {
    usize::try_from(bytes)
        .ok()
        .filter(|s| (1024..=usize::MAX / 2).contains(s))
        .ok_or_else(|| Error::invalid_argument(format!("max message size {bytes} is out of range")))
}

/// A retry policy: `0 < initial_backoff_ms <= max_backoff_ms`; a negative
/// `deadline_ms` retries forever.
pub fn retry_policy(initial_backoff_ms: u64, max_backoff_ms: u64, deadline_ms: i64) -> Result<RetryPolicy> {
    if initial_backoff_ms == 0 || max_backoff_ms < initial_backoff_ms {
        return Err(Error::invalid_argument(format!(
            "need 0 < initial_backoff_ms ({initial_backoff_ms}) <= max_backoff_ms ({max_backoff_ms})"
        )));
    }
    Ok(RetryPolicy {
        initial_backoff: Duration::from_millis(initial_backoff_ms),
        max_backoff: Duration::from_millis(max_backoff_ms),
        deadline: u64::try_from(deadline_ms).ok().map(Duration::from_millis),
    })
}

/// A positive number of milliseconds named `name`.
pub fn positive_millis(ms: u64, name: &str) -> Result<Duration> {
    if ms == 0 {
        return Err(Error::invalid_argument(format!("{name} must be positive")));
    }
    Ok(Duration::from_millis(ms))
}

/// Longest handshake or idle timeout accepted: a year (longer would overflow
/// deadlines; a year is "never" for a federation).
const MAX_TIMEOUT_MS: u64 = 365 * 24 * 3600 * 1000;

/// A timeout named `name`: positive, at most a year.
pub fn timeout_millis(ms: u64, name: &str) -> Result<Duration> {
    if ms == 0 || ms > MAX_TIMEOUT_MS {
        return Err(Error::invalid_argument(format!("{name} {ms} ms is out of range (1 to {MAX_TIMEOUT_MS})")));
    }
    Ok(Duration::from_millis(ms))
}

/// A grace named `name`: zero (none) to a year.
pub fn grace_millis(ms: u64, name: &str) -> Result<Duration> {
    if ms > MAX_TIMEOUT_MS {
        return Err(Error::invalid_argument(format!("{name} {ms} ms is out of range (0 to {MAX_TIMEOUT_MS})")));
    }
    Ok(Duration::from_millis(ms))
}

/// A count named `name`: at least 1 and at most `max`.
pub fn count(value: u64, max: u64, name: &str) -> Result<usize> {
    if value == 0 || value > max {
        return Err(Error::invalid_argument(format!("{name} {value} is out of range (1 to {max})")));
    }
    usize::try_from(value).map_err(|_| Error::invalid_argument(format!("{name} {value} is not addressable")))
}

/// A size in bytes named `name`: at least `min` and addressable.
pub fn byte_size(bytes: u64, min: u64, name: &str) -> Result<usize> {
    usize::try_from(bytes)
        .ok()
        .filter(|s| bytes >= min && *s <= usize::MAX / 2)
        .ok_or_else(|| Error::invalid_argument(format!("{name} {bytes} is out of range (at least {min})")))
}
