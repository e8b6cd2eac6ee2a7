//! The director server in C (OpenFL's `DirectorGRPCServer` with its
//! built-in `Director`): `ofl_director_server_options` (setters),
//! `ofl_director_server` (start, port, serve, stop, free) and the functions
//! the host reports an experiment's progress with (metrics, models, rounds,
//! tasks, finished / failed).
//!
//! Where the aggregator runs: OpenFL's director builds one from the
//! experiment's plan; here the host does, told by the `start_experiment`
//! hook (see `ofl_director_hooks`).

use std::ffi::{c_char, CString};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::boundary::{arg_mut, arg_opt_str, arg_ref, arg_str, c_string, call, check_out, free_boxed, value, write_out};
use super::director_hooks::{ofl_director_hooks, CallbackHooks};
use super::director_types::{
    check_value_out, metric_from_c, model_from_views, ofl_director_metric, ofl_experiment_status, write_value,
};
use super::error::ofl_error;
use super::option_values;
use super::tensor::{ofl_tensor_view, string_list};
use super::tls_config::TlsOptions;
use crate::director::{DirectorHandle, DirectorServer, DirectorServerOptions};
use crate::error::{ofl_code, Error, Result};
use crate::runtime;

/// Settings for `ofl_director_server_start`. TLS with client authentication
/// (mTLS) is on by default, as in OpenFL: set certificates, or turn TLS off.
/// Not thread-safe: configure from one thread.
#[allow(non_camel_case_types)]
pub struct ofl_director_server_options {
    config: DirectorServerOptions,
    tls: TlsOptions,
}

/// A running director server. Thread-safe: the progress functions and
/// `ofl_director_server_stop` may be called from any thread (and from
/// hooks) while another thread is in `ofl_director_server_serve`.
#[allow(non_camel_case_types)]
pub struct ofl_director_server {
    inner: Arc<DirectorServer>,
    handle: DirectorHandle,
    hooks: Arc<CallbackHooks>,
    archive_dir: CString,
}

fn options_mut<'a>(options: *mut ofl_director_server_options) -> Result<&'a mut ofl_director_server_options> {
    arg_mut(options, "options")
}

/// New director options, written to `*out`: listen on `[::]`, port 0 (any
/// free port; OpenFL's default is 50051), mTLS, empty sample and target
/// shapes, envoy health checks every 60 s, archives under a fresh directory
/// of the system temporary directory (set one:
/// `ofl_director_server_options_set_archive_dir`), archives and messages up
/// to 1 GiB, 100 000 queued metrics per experiment, envoy identity checked.
#[no_mangle]
pub extern "C" fn ofl_director_server_options_new(out: *mut *mut ofl_director_server_options) -> *mut ofl_error {
    call("ofl_director_server_options_new", || {
        check_out(out, "out")?;
        write_out(out, ofl_director_server_options { config: DirectorServerOptions::default(), tls: TlsOptions::default() });
        Ok(())
    })
}

/// Frees director options. NULL is a no-op.
#[no_mangle]
pub extern "C" fn ofl_director_server_options_free(options: *mut ofl_director_server_options) {
    value((), || free_boxed(options))
}

/// Address and port to listen on (OpenFL's `listen_host`, `listen_port`):
/// `host` is a name or an IPv4/IPv6 address (`"[::]"` = every interface);
/// port 0 picks a free port, reported by `ofl_director_server_port`.
#[no_mangle]
pub extern "C" fn ofl_director_server_options_set_listen(
    options: *mut ofl_director_server_options,
    host: *const c_char,
    port: u16,
) -> *mut ofl_error {
    call("ofl_director_server_options_set_listen", || {
        let host = option_values::host(host)?;
        let options = options_mut(options)?;
        options.config.host = host;
        options.config.port = port;
        Ok(())
    })
}

/// Turns TLS on (default) or off (OpenFL's `tls`). Without TLS callers are
/// named by their `client_id` metadata, which any peer can set (envoys send
/// none: they are all "__default__"); a warning is logged at start.
#[no_mangle]
pub extern "C" fn ofl_director_server_options_set_tls(options: *mut ofl_director_server_options, enabled: bool) -> *mut ofl_error {
    call("ofl_director_server_options_set_tls", || {
        options_mut(options)?.tls.enabled = enabled;
        Ok(())
    })
}

/// Certificate files (OpenFL's `root_certificate`, `certificate`,
/// `private_key`), all required for a TLS server; read at start.
#[no_mangle]
pub extern "C" fn ofl_director_server_options_set_tls_files(
    options: *mut ofl_director_server_options,
    root_certificate: *const c_char,
    certificate: *const c_char,
    private_key: *const c_char,
) -> *mut ofl_error {
    call("ofl_director_server_options_set_tls_files", || {
        options_mut(options)?.tls.set_files(root_certificate, certificate, private_key)
    })
}

/// Certificates as PEM bytes in memory (copied).
#[no_mangle]
pub extern "C" fn ofl_director_server_options_set_tls_pem(
    options: *mut ofl_director_server_options,
    root_certificate: *const u8,
    root_certificate_len: usize,
    certificate: *const u8,
    certificate_len: usize,
    private_key: *const u8,
    private_key_len: usize,
) -> *mut ofl_error {
    call("ofl_director_server_options_set_tls_pem", || {
        options_mut(options)?.tls.set_pem(
            root_certificate,
            root_certificate_len,
            certificate,
            certificate_len,
            private_key,
            private_key_len,
        )
    })
}

/// One-way TLS (OpenFL's `disable_client_auth`): client certificates become
/// optional. A caller that presents one is named by its CN; one that
/// presents none by its `client_id` metadata (a warning is logged at start).
#[no_mangle]
pub extern "C" fn ofl_director_server_options_set_disable_client_auth(
    options: *mut ofl_director_server_options,
    disable: bool,
) -> *mut ofl_error {
    call("ofl_director_server_options_set_disable_client_auth", || {
        options_mut(options)?.tls.config.disable_client_auth = disable;
        Ok(())
    })
}

/// Concurrent calls (HTTP/2 streams) per connection; more are refused with
/// REFUSED_STREAM (default 100). INVALID_ARGUMENT when 0.
#[no_mangle]
pub extern "C" fn ofl_director_server_options_set_max_concurrent_streams(
    options: *mut ofl_director_server_options,
    max: u32,
) -> *mut ofl_error {
    call("ofl_director_server_options_set_max_concurrent_streams", || {
        let value = option_values::count(u64::from(max), u64::from(u32::MAX), "max_concurrent_streams")? as u32;
        options_mut(options)?.config.limits.max_concurrent_streams = value;
        Ok(())
    })
}

/// Connections served at once; further connections wait in the listen
/// backlog (default 1000, below the common 1024 file-descriptor limit).
/// INVALID_ARGUMENT when 0.
#[no_mangle]
pub extern "C" fn ofl_director_server_options_set_max_connections(
    options: *mut ofl_director_server_options,
    max: u32,
) -> *mut ofl_error {
    call("ofl_director_server_options_set_max_connections", || {
        let value = option_values::count(u64::from(max), u64::from(u32::MAX), "max_connections")?;
        options_mut(options)?.config.limits.max_connections = value;
        Ok(())
    })
}

/// Time a new connection has to finish its TLS handshake and send the HTTP/2
/// preface before it is closed (default 10000 ms). INVALID_ARGUMENT when 0
/// or over a year.
#[no_mangle]
pub extern "C" fn ofl_director_server_options_set_handshake_timeout_ms(
    options: *mut ofl_director_server_options,
    timeout_ms: u64,
) -> *mut ofl_error {
    call("ofl_director_server_options_set_handshake_timeout_ms", || {
        let value = option_values::timeout_millis(timeout_ms, "handshake_timeout")?;
        options_mut(options)?.config.limits.handshake_timeout = value;
        Ok(())
    })
}

/// A connection with no call in flight for this long is closed; clients
/// reconnect on their next call (default 60000 ms). INVALID_ARGUMENT when 0
/// or over a year.
#[no_mangle]
pub extern "C" fn ofl_director_server_options_set_idle_timeout_ms(
    options: *mut ofl_director_server_options,
    timeout_ms: u64,
) -> *mut ofl_error {
    call("ofl_director_server_options_set_idle_timeout_ms", || {
        let value = option_values::timeout_millis(timeout_ms, "idle_timeout")?;
        options_mut(options)?.config.limits.idle_timeout = value;
        Ok(())
    })
}

/// Largest request body of a call that is not a streamed upload (unary and
/// server-streaming calls), gRPC framing included; larger gets
/// RESOURCE_EXHAUSTED before it is buffered (default 4 MiB).
/// INVALID_ARGUMENT below 1024.
#[no_mangle]
pub extern "C" fn ofl_director_server_options_set_max_unary_request_size(
    options: *mut ofl_director_server_options,
    bytes: u64,
) -> *mut ofl_error {
    call("ofl_director_server_options_set_max_unary_request_size", || {
        let value = option_values::byte_size(bytes, 1024, "max_unary_request_size")?;
        options_mut(options)?.config.limits.max_unary_request_size = value;
        Ok(())
    })
}

/// The sample shape every shard must report to be accepted
/// (UpdateShardInfo), as OpenFL writes it: `len` strings such as "28".
/// `dims` may be NULL when `len` is 0. Copied.
#[no_mangle]
pub extern "C" fn ofl_director_server_options_set_sample_shape(
    options: *mut ofl_director_server_options,
    dims: *const *const c_char,
    len: usize,
) -> *mut ofl_error {
    call("ofl_director_server_options_set_sample_shape", || {
        let shape = string_list(dims, len, "dims")?;
        options_mut(options)?.config.sample_shape = shape;
        Ok(())
    })
}

/// The target shape every shard must report, as
/// `ofl_director_server_options_set_sample_shape`.
#[no_mangle]
pub extern "C" fn ofl_director_server_options_set_target_shape(
    options: *mut ofl_director_server_options,
    dims: *const *const c_char,
    len: usize,
) -> *mut ofl_error {
    call("ofl_director_server_options_set_target_shape", || {
        let shape = string_list(dims, len, "dims")?;
        options_mut(options)?.config.target_shape = shape;
        Ok(())
    })
}

/// How often envoys send health checks (OpenFL's
/// `envoy_health_check_period`, default 60 000 ms; OpenFL envoys read whole
/// seconds). An envoy is online for two periods after its last one. Must be
/// positive.
#[no_mangle]
pub extern "C" fn ofl_director_server_options_set_envoy_health_check_period_ms(
    options: *mut ofl_director_server_options,
    period_ms: u64,
) -> *mut ofl_error {
    call("ofl_director_server_options_set_envoy_health_check_period_ms", || {
        if period_ms == 0 {
            return Err(Error::invalid_argument("period_ms must be positive"));
        }
        options_mut(options)?.config.envoy_health_check_period = Duration::from_millis(period_ms);
        Ok(())
    })
}

/// The directory experiment archives are stored in, as
/// `<dir>/<experiment name>.archive` (created at start if missing; OpenFL:
/// the working directory).
#[no_mangle]
pub extern "C" fn ofl_director_server_options_set_archive_dir(
    options: *mut ofl_director_server_options,
    path: *const c_char,
) -> *mut ofl_error {
    call("ofl_director_server_options_set_archive_dir", || {
        let path = arg_str(path, "path")?;
        if path.is_empty() {
            return Err(Error::invalid_argument("path is empty"));
        }
        options_mut(options)?.config.archive_dir = PathBuf::from(path);
        Ok(())
    })
}

/// Largest archive SetNewExperiment accepts, in bytes (default 1 GiB;
/// larger uploads get RESOURCE_EXHAUSTED). Must be positive.
#[no_mangle]
pub extern "C" fn ofl_director_server_options_set_max_archive_size(
    options: *mut ofl_director_server_options,
    bytes: u64,
) -> *mut ofl_error {
    call("ofl_director_server_options_set_max_archive_size", || {
        if bytes == 0 {
            return Err(Error::invalid_argument("max archive size must be positive"));
        }
        options_mut(options)?.config.max_archive_size = bytes;
        Ok(())
    })
}

/// Largest gRPC message received or sent (default 1 GiB = 2^30, as OpenFL).
#[no_mangle]
pub extern "C" fn ofl_director_server_options_set_max_message_size(
    options: *mut ofl_director_server_options,
    bytes: u64,
) -> *mut ofl_error {
    call("ofl_director_server_options_set_max_message_size", || {
        let size = option_values::message_size(bytes)?;
        options_mut(options)?.config.max_message_size = size;
        Ok(())
    })
}

/// Metrics kept per experiment until a frontend streams them (default
/// 100 000); beyond, the oldest is dropped. Must be positive.
#[no_mangle]
pub extern "C" fn ofl_director_server_options_set_max_queued_metrics(
    options: *mut ofl_director_server_options,
    count: usize,
) -> *mut ofl_error {
    call("ofl_director_server_options_set_max_queued_metrics", || {
        if count == 0 {
            return Err(Error::invalid_argument("count must be positive"));
        }
        options_mut(options)?.config.max_queued_metrics = count;
        Ok(())
    })
}

/// Under mTLS, whether envoy RPCs must come from a certificate whose CN is
/// the envoy name they carry (default true; OpenFL checks nothing, so any
/// certified peer could download any archive or fail any experiment).
#[no_mangle]
pub extern "C" fn ofl_director_server_options_set_check_envoy_identity(
    options: *mut ofl_director_server_options,
    enabled: bool,
) -> *mut ofl_error {
    call("ofl_director_server_options_set_check_envoy_identity", || {
        options_mut(options)?.config.check_envoy_identity = enabled;
        Ok(())
    })
}

/// Starts a director: checks the certificates, creates the archive
/// directory, binds and begins serving and running experiments in the
/// background before it returns; writes the server to `*out`. `hooks` is
/// copied; NULL means the defaults (approve every experiment, nothing to
/// start or stop). Its `user_data` is released with `free_user_data`
/// exactly once: by `ofl_director_server_free`, or before this returns an
/// error. Call `ofl_director_server_serve` to wait until the server is
/// stopped.
#[no_mangle]
pub extern "C" fn ofl_director_server_start(
    options: *const ofl_director_server_options,
    hooks: *const ofl_director_hooks,
    out: *mut *mut ofl_director_server,
) -> *mut ofl_error {
    call("ofl_director_server_start", || {
        // SAFETY: NULL (the defaults) or a live hooks struct for the call.
        let hooks = Arc::new(CallbackHooks::new(unsafe { hooks.as_ref() }));
        let started = start(options, Arc::clone(&hooks), out);
        if started.is_err() {
            // Releases user_data now, whichever thread drops the last reference.
            hooks.close();
        }
        started
    })
}

fn start(
    options: *const ofl_director_server_options,
    hooks: Arc<CallbackHooks>,
    out: *mut *mut ofl_director_server,
) -> Result<()> {
    check_out(out, "out")?;
    let options = arg_ref(options, "options")?;
    let mut config = options.config.clone();
    config.tls = options.tls.resolved();
    super::logging::init_default();
    let dyn_hooks: Arc<dyn crate::director::DirectorHooks> = Arc::clone(&hooks) as _;
    let server = runtime::block_on(DirectorServer::start(config, dyn_hooks))??;
    let archive_dir = c_string(&server.archive_dir().to_string_lossy());
    let handle = server.handle();
    write_out(out, ofl_director_server { inner: Arc::new(server), handle, hooks: Arc::clone(&hooks), archive_dir });
    hooks.open();
    Ok(())
}

fn server_ref<'a>(server: *const ofl_director_server) -> Result<&'a ofl_director_server> {
    arg_ref(server, "server")
}

/// The port the server listens on (the chosen one when 0 was asked); 0 for NULL.
#[no_mangle]
pub extern "C" fn ofl_director_server_port(server: *const ofl_director_server) -> u16 {
    value(0, || server_ref(server).map_or(0, |s| s.inner.local_addr().port()))
}

/// The directory archives are stored in (valid as long as the server). NULL
/// gives "".
#[no_mangle]
pub extern "C" fn ofl_director_server_archive_dir(server: *const ofl_director_server) -> *const c_char {
    value(c"".as_ptr(), || server_ref(server).map_or(c"".as_ptr(), |s| s.archive_dir.as_ptr()))
}

/// Blocks until `ofl_director_server_stop` (a director serves until told to
/// stop; OpenFL's `start`), then shuts the server down: long polls
/// (WaitExperiment, GetMetricStream) end with UNAVAILABLE, other calls in
/// flight finish.
#[no_mangle]
pub extern "C" fn ofl_director_server_serve(server: *const ofl_director_server) -> *mut ofl_error {
    call("ofl_director_server_serve", || {
        let server = Arc::clone(&server_ref(server)?.inner);
        runtime::block_on(async move { server.serve().await })?
    })
}

/// Asks the server to stop; returns at once. `ofl_director_server_serve`
/// then returns. Idempotent; safe from any thread and from hooks.
#[no_mangle]
pub extern "C" fn ofl_director_server_stop(server: *const ofl_director_server) -> *mut ofl_error {
    call("ofl_director_server_stop", || {
        server_ref(server)?.inner.stop();
        Ok(())
    })
}

/// Stops the server, waits until it no longer listens and until running
/// hooks have returned, calls the hooks' `free_user_data`, and frees the
/// server. No hook runs after this returns. Do not call from a hook. NULL is
/// a no-op.
#[no_mangle]
pub extern "C" fn ofl_director_server_free(server: *mut ofl_director_server) {
    value((), || {
        if let Ok(s) = server_ref(server) {
            let inner = Arc::clone(&s.inner);
            let _ = runtime::block_on(async move { inner.shutdown().await });
            s.hooks.close();
        }
        free_boxed(server)
    })
}

// ---------------------------------------------------------------------------
// The host's reports
// ---------------------------------------------------------------------------

/// Runs `f` with the server's handle and the experiment name.
fn report(
    function: &str,
    server: *const ofl_director_server,
    experiment: *const c_char,
    f: impl FnOnce(&DirectorHandle, &str) -> Result<()>,
) -> *mut ofl_error {
    call(function, || {
        let server = server_ref(server)?;
        let experiment = arg_str(experiment, "experiment")?;
        f(&server.handle, experiment)
    })
}

/// Queues a metric of `experiment` for the frontends' metric streams
/// (GetMetricStream; a streamed metric leaves the queue). Its strings are
/// copied and required. Errors: NOT_FOUND for an unknown experiment.
#[no_mangle]
pub extern "C" fn ofl_director_server_push_metric(
    server: *const ofl_director_server,
    experiment: *const c_char,
    metric: *const ofl_director_metric,
) -> *mut ofl_error {
    report("ofl_director_server_push_metric", server, experiment, |handle, name| {
        let metric = metric_from_c(arg_ref(metric, "metric")?)?;
        handle.push_metric(name, metric)
    })
}

/// Sets the model GetTrainedModel(BEST_MODEL) returns for `experiment`:
/// `tensors_len` tensors, copied (data included), sent as they are. OpenFL's
/// frontend expects its uncompressed float32 encoding: little-endian values,
/// the shape in the `int_list` of one metadata entry. Errors: NOT_FOUND for
/// an unknown experiment.
#[no_mangle]
pub extern "C" fn ofl_director_server_set_best_model(
    server: *const ofl_director_server,
    experiment: *const c_char,
    tensors: *const ofl_tensor_view,
    tensors_len: usize,
) -> *mut ofl_error {
    report("ofl_director_server_set_best_model", server, experiment, |handle, name| {
        handle.set_best_model(name, model_from_views(tensors, tensors_len, "tensors")?)
    })
}

/// Sets the model GetTrainedModel(LAST_MODEL) returns, as
/// `ofl_director_server_set_best_model`.
#[no_mangle]
pub extern "C" fn ofl_director_server_set_last_model(
    server: *const ofl_director_server,
    experiment: *const c_char,
    tensors: *const ofl_tensor_view,
    tensors_len: usize,
) -> *mut ofl_error {
    report("ofl_director_server_set_last_model", server, experiment, |handle, name| {
        handle.set_last_model(name, model_from_views(tensors, tensors_len, "tensors")?)
    })
}

/// Sets the round progress frontends see (GetExperimentsList's progress,
/// GetExperimentDescription's rounds). Errors: NOT_FOUND.
#[no_mangle]
pub extern "C" fn ofl_director_server_set_round(
    server: *const ofl_director_server,
    experiment: *const c_char,
    current_round: u32,
    total_rounds: u32,
) -> *mut ofl_error {
    report("ofl_director_server_set_round", server, experiment, |handle, name| {
        handle.set_round(name, current_round, total_rounds)
    })
}

/// Sets the task list frontends see (GetExperimentDescription): `len` task
/// names and as many descriptions; `descriptions` may be NULL (all empty).
/// Replaces the previous list. Copied. Errors: NOT_FOUND.
#[no_mangle]
pub extern "C" fn ofl_director_server_set_tasks(
    server: *const ofl_director_server,
    experiment: *const c_char,
    names: *const *const c_char,
    descriptions: *const *const c_char,
    len: usize,
) -> *mut ofl_error {
    report("ofl_director_server_set_tasks", server, experiment, |handle, name| {
        let names = string_list(names, len, "names")?;
        let descriptions =
            if descriptions.is_null() { vec![String::new(); len] } else { string_list(descriptions, len, "descriptions")? };
        handle.set_tasks(name, names.into_iter().zip(descriptions).collect())
    })
}

/// The experiment finished (OpenFL: its aggregator sent every quit job):
/// metric streams end once drained, envoys stop receiving it, and the next
/// experiment may start. Only from in_progress; idempotent. Errors:
/// NOT_FOUND, FAILED_PRECONDITION (e.g. it failed already).
#[no_mangle]
pub extern "C" fn ofl_director_server_mark_finished(
    server: *const ofl_director_server,
    experiment: *const c_char,
) -> *mut ofl_error {
    report("ofl_director_server_mark_finished", server, experiment, |handle, name| handle.mark_finished(name))
}

/// The experiment failed (reported by the host; `description` may be NULL).
/// From pending or in_progress; idempotent (the first description stays).
/// Errors: NOT_FOUND, FAILED_PRECONDITION (it finished or was rejected).
#[no_mangle]
pub extern "C" fn ofl_director_server_mark_failed(
    server: *const ofl_director_server,
    experiment: *const c_char,
    description: *const c_char,
) -> *mut ofl_error {
    report("ofl_director_server_mark_failed", server, experiment, |handle, name| {
        let description = arg_opt_str(description, "description")?.unwrap_or("");
        handle.mark_failed(name, description)
    })
}

/// The status of `experiment` (whoever submitted it), written to `*out`.
/// Errors: NOT_FOUND for an unknown (or removed) experiment.
#[no_mangle]
pub extern "C" fn ofl_director_server_experiment_status(
    server: *const ofl_director_server,
    experiment: *const c_char,
    out: *mut ofl_experiment_status,
) -> *mut ofl_error {
    call("ofl_director_server_experiment_status", || {
        check_value_out(out, "out")?;
        let server = server_ref(server)?;
        let name = arg_str(experiment, "experiment")?;
        let status = server
            .handle
            .experiment_status(name)
            .ok_or_else(|| Error::new(ofl_code::NotFound, format!("no experiment named {name:?}")))?;
        write_value(out, ofl_experiment_status::from(status));
        Ok(())
    })
}
