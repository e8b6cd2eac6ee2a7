//! `ofl_director_server` (OpenFL's `DirectorGRPCServer` with its built-in
//! `Director`): start, port, serve, stop, free. The host's progress reports
//! are in `reports.rs`.
//!
//! Where the aggregator runs: OpenFL's director builds one from the
//! experiment's plan; here the host does, told by the `start_experiment`
//! hook (see `ofl_director_hooks`).

use std::ffi::{c_char, CString};
use std::sync::Arc;

use super::callback_hooks::CallbackHooks;
use super::hooks::ofl_director_hooks;
use super::server_options::ofl_director_server_options;
use crate::director::{DirectorHandle, DirectorHooks, DirectorServer};
use crate::error::Result;
use crate::ffi::boundary::{arg_ref, c_string, check_out, ffi_fn, free_boxed, with_ref, write_out};
use crate::runtime;

/// A running director server. Thread-safe: the progress functions and
/// `ofl_director_server_stop` may be called from any thread (and from
/// hooks) while another thread is in `ofl_director_server_serve`.
#[allow(non_camel_case_types)]
pub struct ofl_director_server {
    pub(crate) inner: Arc<DirectorServer>,
    pub(crate) handle: DirectorHandle,
    hooks: Arc<CallbackHooks>,
    archive_dir: CString,
}

ffi_fn! {
    /// Starts a director: checks the options, hooks and certificates,
    /// creates the archive directory, binds and begins serving and running
    /// experiments in the background before it returns; writes the server
    /// to `*out`. The server shares `hooks` (their functions and their
    /// `user_data`): `hooks` may be freed once this returns. When the start
    /// fails the server's share is dropped at once. Errors:
    /// INVALID_ARGUMENT for NULL arguments, hooks without
    /// `start_experiment` (naming `ofl_director_hooks_set_start_experiment`)
    /// or TLS on with nothing attached (naming
    /// `ofl_director_server_options_set_tls`); TLS for unreadable
    /// certificates; IO when the address cannot be bound. Call
    /// `ofl_director_server_serve` to wait until the server is stopped.
    fn ofl_director_server_start(
        options: *const ofl_director_server_options,
        hooks: *const ofl_director_hooks,
        out: *mut *mut ofl_director_server,
    ) -> *mut ofl_error {
        let hooks = arg_ref(hooks, "hooks")?;
        hooks.check()?;
        let hooks = Arc::new(CallbackHooks::new(hooks));
        let started = start(options, Arc::clone(&hooks), out);
        if started.is_err() {
            hooks.close(); // drops the server's share of user_data now
        }
        started
    }
}

fn start(
    options: *const ofl_director_server_options,
    hooks: Arc<CallbackHooks>,
    out: *mut *mut ofl_director_server,
) -> Result<()> {
    check_out(out, "out")?;
    let options = arg_ref(options, "options")?;
    let mut config = options.config.clone();
    config.tls = options.tls.resolve("ofl_director_server_options_set_tls")?;
    crate::ffi::logging::init_default();
    let dyn_hooks: Arc<dyn DirectorHooks> = Arc::clone(&hooks) as _;
    let server = runtime::block_on(DirectorServer::start(config, dyn_hooks))??;
    let archive_dir = c_string(&server.archive_dir().to_string_lossy());
    let handle = server.handle();
    write_out(
        out,
        ofl_director_server {
            inner: Arc::new(server),
            handle,
            hooks: Arc::clone(&hooks),
            archive_dir,
        },
    );
    hooks.open();
    Ok(())
}

pub(crate) fn server_ref<'a>(
    server: *const ofl_director_server,
) -> Result<&'a ofl_director_server> {
    arg_ref(server, "server")
}

ffi_fn! {
    /// The port the server listens on (the chosen one when 0 was asked); 0
    /// for NULL.
    fn ofl_director_server_port(server: *const ofl_director_server) -> u16 {
        with_ref(server, 0, |s| s.inner.local_addr().port())
    } ?= 0
}

ffi_fn! {
    /// The directory archives are stored in (valid as long as the server).
    /// NULL gives "".
    fn ofl_director_server_archive_dir(server: *const ofl_director_server) -> *const c_char {
        with_ref(server, c"".as_ptr(), |s| s.archive_dir.as_ptr())
    } ?= c"".as_ptr()
}

ffi_fn! {
    /// Blocks until `ofl_director_server_stop` (a director serves until told
    /// to stop; OpenFL's `start`), then shuts the server down: long polls
    /// (WaitExperiment, GetMetricStream) end at once with UNAVAILABLE, other
    /// calls in flight get the shutdown grace to finish
    /// (`ofl_server_limits_set_shutdown_grace_ms`, default 5 s), then are
    /// cancelled (UNAVAILABLE; an archive upload cut short registers no
    /// experiment) and their connections reset. Returns within that grace
    /// plus about half a second of the stop, whatever the peers do; it does
    /// not wait for hooks still running (see `ofl_director_server_free`).
    fn ofl_director_server_serve(server: *const ofl_director_server) -> *mut ofl_error {
        let server = Arc::clone(&server_ref(server)?.inner);
        runtime::block_on(async move { server.serve().await })?
    }
}

ffi_fn! {
    /// Asks the server to stop; returns at once. `ofl_director_server_serve`
    /// then returns once the server wound down (within the shutdown grace
    /// plus about half a second). Idempotent; safe from any thread and from
    /// hooks.
    fn ofl_director_server_stop(server: *const ofl_director_server) -> *mut ofl_error {
        server_ref(server)?.inner.stop();
        Ok(())
    }
}

ffi_fn! {
    /// Stops the server, waits until it wound down (as after
    /// `ofl_director_server_stop`: at most the shutdown grace plus about half
    /// a second, whatever the peers do) and until running hooks have
    /// returned (hooks are host code: a hook that never returns holds this),
    /// drops its share of the hooks' `user_data`
    /// (released now when the hooks object was freed already), and frees
    /// the server. No hook runs after this returns. Do not call from a hook.
    /// NULL is a no-op.
    fn ofl_director_server_free(server: *mut ofl_director_server) {
        if let Ok(s) = server_ref(server) {
            let inner = Arc::clone(&s.inner);
            let _ = runtime::block_on(async move { inner.shutdown().await });
            s.hooks.close();
        }
        free_boxed(server)
    }
}
