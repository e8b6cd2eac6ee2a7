//! `ofl_aggregator_server`: start (with C callbacks), port, serve, stop,
//! free. `ofl_aggregator_server_start_fedavg` (the fedavg area) starts one
//! through [`start_with_logic`] too.

use std::sync::Arc;

use super::callbacks::ofl_aggregator_callbacks;
use super::logic::CallbackLogic;
use super::server_options::ofl_aggregator_server_options;
use crate::aggregator::{AggregatorLogic, AggregatorServer};
use crate::error::Result;
use crate::ffi::boundary::{arg_ref, check_out, ffi_fn, free_boxed, with_ref, write_out};
use crate::runtime;

/// A running aggregator server. Thread-safe: `ofl_aggregator_server_stop`
/// may be called from any thread (or a callback) while another thread is in
/// `ofl_aggregator_server_serve`.
#[allow(non_camel_case_types)]
pub struct ofl_aggregator_server {
    pub(crate) inner: Arc<AggregatorServer>,
}

/// Starts a server with `logic` behind it; certificates are checked and the
/// port is bound before this returns.
pub fn start_with_logic(
    options: &ofl_aggregator_server_options,
    logic: Arc<dyn AggregatorLogic>,
    out: *mut *mut ofl_aggregator_server,
) -> Result<()> {
    let mut config = options.config.clone();
    config.tls = options.tls.resolve("ofl_aggregator_server_options_set_tls")?;
    crate::ffi::logging::init_default();
    let server = runtime::block_on(AggregatorServer::start(config, logic))??;
    write_out(out, ofl_aggregator_server { inner: Arc::new(server) });
    Ok(())
}

ffi_fn! {
    /// Starts an aggregator server whose logic is `callbacks` (the function
    /// pointers are copied and the user data shared: `callbacks` may be
    /// freed after). A required callback not set is INVALID_ARGUMENT naming
    /// its setter. Binds and begins serving in the background before it
    /// returns; call `ofl_aggregator_server_serve` to wait for the
    /// federation's end. Writes the server to `*out`.
    fn ofl_aggregator_server_start(
        options: *const ofl_aggregator_server_options,
        callbacks: *const ofl_aggregator_callbacks,
        out: *mut *mut ofl_aggregator_server,
    ) -> *mut ofl_error {
        check_out(out, "out")?;
        let options = arg_ref(options, "options")?;
        let callbacks = arg_ref(callbacks, "callbacks")?.checked()?;
        let logic = CallbackLogic::new(options.federation.clone(), callbacks);
        start_with_logic(options, Arc::new(logic), out)
    }
}

fn server_arc(server: *const ofl_aggregator_server) -> Result<Arc<AggregatorServer>> {
    Ok(Arc::clone(&arg_ref(server, "server")?.inner))
}

ffi_fn! {
    /// The port the server listens on (the chosen one when 0 was asked); 0
    /// for NULL.
    fn ofl_aggregator_server_port(server: *const ofl_aggregator_server) -> u16 {
        with_ref(server, 0, |s| s.inner.local_addr().port())
    } ?= 0
}

ffi_fn! {
    /// Blocks until the logic reports all quit jobs sent (OpenFL's
    /// `serve`; asked every quit-poll interval:
    /// `ofl_aggregator_server_options_set_quit_poll_interval_ms`), or until
    /// `ofl_aggregator_server_stop`; then stops the server: calls in flight
    /// get the shutdown grace to finish (`ofl_server_limits_set_shutdown_grace_ms`,
    /// default 5 s), then are cancelled (UNAVAILABLE) and their connections
    /// reset. Returns within that grace plus about half a second of the
    /// stop, whatever the peers do. A callback still running then is
    /// abandoned: it runs to its end on its library thread, its answer is
    /// dropped, and no callback starts after the grace.
    fn ofl_aggregator_server_serve(server: *const ofl_aggregator_server) -> *mut ofl_error {
        let server = server_arc(server)?;
        runtime::block_on(async move { server.serve().await })?
    }
}

ffi_fn! {
    /// Asks the server to stop; returns at once. `ofl_aggregator_server_serve`
    /// then returns once the server wound down (within the shutdown grace
    /// plus about half a second). Idempotent; safe from any thread and from
    /// callbacks.
    fn ofl_aggregator_server_stop(server: *const ofl_aggregator_server) -> *mut ofl_error {
        server_arc(server)?.stop();
        Ok(())
    }
}

ffi_fn! {
    /// Stops the server, waits until it wound down as after
    /// `ofl_aggregator_server_stop` (at most the shutdown grace plus about
    /// half a second), and frees it. No callback starts after this returns;
    /// one still running is abandoned (its answer is dropped), and the
    /// server's share of the callbacks' user data is released once it
    /// returned (`free_user_data` may then run on a library thread). Do not
    /// call from a callback. NULL is a no-op.
    fn ofl_aggregator_server_free(server: *mut ofl_aggregator_server) {
        if let Ok(inner) = server_arc(server) {
            let _ = runtime::block_on(async move { inner.shutdown().await });
        }
        free_boxed(server)
    }
}
