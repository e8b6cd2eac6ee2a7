//! Routing the library's log records to the host: a C callback, or stderr
//! (warnings and errors) when none is set.
//!
//! The records of the crates under the transport reach the host too, at
//! their level: rustls and tokio-rustls log through `log`; tonic, h2, tower
//! and hyper-util through `tracing`, whose `log` feature (enabled in
//! Cargo.toml) makes each event a `log` record while no tracing subscriber
//! is installed. Both check the level before formatting anything, so
//! filtered-out events cost an atomic load.

use std::ffi::{c_char, c_void};
use std::io::Write;
use std::sync::RwLock;

use super::boundary::{c_string, ffi_fn};
use crate::error::{Error, Result};

/// Severity of a log record.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ofl_log_level {
    /// Nothing is logged.
    Off = 0,
    /// Failures.
    Error = 1,
    /// Things the user should know (e.g. running without TLS).
    Warn = 2,
    /// Life-cycle events (server listening, retries).
    Info = 3,
    /// Details for debugging.
    Debug = 4,
    /// Everything.
    Trace = 5,
}

/// Receives one log record: `target` names the library module, `message` the
/// event; both are valid only during the call. May be called from any
/// library thread, concurrently; must not call back into the library.
#[allow(non_camel_case_types)]
pub type ofl_log_fn = Option<
    extern "C" fn(user_data: *mut c_void, level: ofl_log_level, target: *const c_char, message: *const c_char),
>;

struct Sink {
    callback: ofl_log_fn,
    user_data: usize,
}

static SINK: RwLock<Sink> = RwLock::new(Sink { callback: None, user_data: 0 });

struct Logger;

/// Targets (module paths) whose records reach the host: this library and
/// the crates it runs on. Other crates of a Rust host's process are not ours
/// to forward.
const TARGETS: &[&str] =
    &["openfl_transport", "tonic", "h2", "hyper", "hyper_util", "tower", "rustls", "tokio_rustls"];

/// Whether `target` is one of [`TARGETS`] or a module of one.
fn forwarded(target: &str) -> bool {
    TARGETS.iter().any(|t| {
        target.strip_prefix(t).is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

fn level_of(level: log::Level) -> ofl_log_level {
    match level {
        log::Level::Error => ofl_log_level::Error,
        log::Level::Warn => ofl_log_level::Warn,
        log::Level::Info => ofl_log_level::Info,
        log::Level::Debug => ofl_log_level::Debug,
        log::Level::Trace => ofl_log_level::Trace,
    }
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        forwarded(metadata.target())
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let sink = SINK.read().unwrap_or_else(|e| e.into_inner());
        match sink.callback {
            Some(callback) => {
                let target = c_string(record.target());
                let message = c_string(&record.args().to_string());
                callback(sink.user_data as *mut c_void, level_of(record.level()), target.as_ptr(), message.as_ptr());
            }
            None => {
                let _ = writeln!(std::io::stderr(), "[openfl_transport {}] {}", record.level(), record.args());
            }
        }
    }

    fn flush(&self) {}
}

/// Installs the logger (once) with stderr output for warnings and errors.
pub fn init_default() {
    static LOGGER: Logger = Logger;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
}

/// The filter for an `ofl_log_level` number (C passes enums as integers).
fn filter_of(level: i32) -> Result<log::LevelFilter> {
    Ok(match level {
        0 => log::LevelFilter::Off,
        1 => log::LevelFilter::Error,
        2 => log::LevelFilter::Warn,
        3 => log::LevelFilter::Info,
        4 => log::LevelFilter::Debug,
        5 => log::LevelFilter::Trace,
        _ => return Err(Error::invalid_argument(format!("max_level {level} is no ofl_log_level"))),
    })
}

fn set_sink(max_level: i32, callback: ofl_log_fn, user_data: *mut c_void) -> Result<()> {
    let filter = filter_of(max_level)?;
    init_default();
    *SINK.write().unwrap_or_else(|e| e.into_inner()) = Sink { callback, user_data: user_data as usize };
    log::set_max_level(filter);
    Ok(())
}

ffi_fn! {
    /// Sends the library's log records up to `max_level` (an `ofl_log_level`)
    /// to `callback` with `user_data`; a NULL `callback` writes them to
    /// stderr. Without a call, warnings and errors go to stderr.
    /// Process-wide; may be called again to change the level or the
    /// callback. The previous `user_data` is no longer used once this
    /// returns. `user_data` stays the host's (it is never freed by the
    /// library).
    fn ofl_set_log_callback(max_level: i32, callback: ofl_log_fn, user_data: *mut c_void) -> *mut ofl_error {
        set_sink(max_level, callback, user_data)
    }
}

#[cfg(test)]
mod tests {
    use super::forwarded;

    #[test]
    fn the_transport_crates_are_forwarded_and_others_not() {
        for target in ["openfl_transport::listen", "h2::proto::connection", "rustls::client::hs", "tonic", "hyper_util::client"] {
            assert!(forwarded(target), "{target}");
        }
        for target in ["tracing::span", "h2o", "mio::poll", "hyperloop"] {
            assert!(!forwarded(target), "{target}");
        }
    }
}
