//! The aggregator server in C (OpenFL's `AggregatorGRPCServer`):
//! `ofl_aggregator_server_options` (setters) and `ofl_aggregator_server`
//! (start, port, serve, stop, free).

use std::ffi::c_char;
use std::sync::Arc;
use std::time::Duration;

use super::aggregator_logic::{ofl_aggregator_callbacks, release, CallbackLogic};
use super::boundary::{arg_mut, arg_ref, arg_opt_str, arg_str, call, check_out, free_boxed, value, write_out};
use super::error::ofl_error;
use super::option_values;
use super::tls_config::TlsOptions;
use crate::aggregator::{AggregatorLogic, AggregatorServer, Federation, AggregatorServerOptions};
use crate::error::{Error, Result};
use crate::runtime;

/// Settings for `ofl_aggregator_server_start`. TLS with client
/// authentication (mTLS) is on by default, as in OpenFL: set certificates, or
/// turn TLS off. Not thread-safe: configure from one thread.
#[allow(non_camel_case_types)]
pub struct ofl_aggregator_server_options {
    config: AggregatorServerOptions,
    tls: TlsOptions,
    federation: Federation,
}

/// A running aggregator server. Thread-safe: `ofl_aggregator_server_stop`
/// may be called from any thread (or a callback) while another thread is in
/// `ofl_aggregator_server_serve`.
#[allow(non_camel_case_types)]
pub struct ofl_aggregator_server {
    inner: Arc<AggregatorServer>,
}

fn options_mut<'a>(options: *mut ofl_aggregator_server_options) -> Result<&'a mut ofl_aggregator_server_options> {
    arg_mut(options, "options")
}

/// New server options (listen on `[::]`, port 0 = any free port, mTLS,
/// random delay up to 5 s before UNAUTHENTICATED, 1 GiB messages), written
/// to `*out`.
#[no_mangle]
pub extern "C" fn ofl_aggregator_server_options_new(out: *mut *mut ofl_aggregator_server_options) -> *mut ofl_error {
    call("ofl_aggregator_server_options_new", || {
        check_out(out, "out")?;
        write_out(
            out,
            ofl_aggregator_server_options {
                config: AggregatorServerOptions::default(),
                tls: TlsOptions::default(),
                federation: Federation::default(),
            },
        );
        Ok(())
    })
}

/// Frees server options. NULL is a no-op.
#[no_mangle]
pub extern "C" fn ofl_aggregator_server_options_free(options: *mut ofl_aggregator_server_options) {
    value((), || free_boxed(options))
}

/// Address and port to listen on: `host` is a name or an IPv4/IPv6 address
/// (`"[::]"` = every interface, IPv4 and IPv6); port 0 picks a free port,
/// reported by `ofl_aggregator_server_port`.
#[no_mangle]
pub extern "C" fn ofl_aggregator_server_options_set_listen(
    options: *mut ofl_aggregator_server_options,
    host: *const c_char,
    port: u16,
) -> *mut ofl_error {
    call("ofl_aggregator_server_options_set_listen", || {
        let host = option_values::host(host)?;
        let options = options_mut(options)?;
        options.config.host = host;
        options.config.port = port;
        Ok(())
    })
}

/// Turns TLS on (default) or off (OpenFL's `tls`). Without TLS anyone can
/// claim to be any collaborator; a warning is logged at start.
#[no_mangle]
pub extern "C" fn ofl_aggregator_server_options_set_tls(options: *mut ofl_aggregator_server_options, enabled: bool) -> *mut ofl_error {
    call("ofl_aggregator_server_options_set_tls", || {
        options_mut(options)?.tls.enabled = enabled;
        Ok(())
    })
}

/// Certificate files (OpenFL's `root_certificate`, `certificate`,
/// `private_key`), all required for a TLS server; read at start.
#[no_mangle]
pub extern "C" fn ofl_aggregator_server_options_set_tls_files(
    options: *mut ofl_aggregator_server_options,
    root_certificate: *const c_char,
    certificate: *const c_char,
    private_key: *const c_char,
) -> *mut ofl_error {
    call("ofl_aggregator_server_options_set_tls_files", || {
        options_mut(options)?.tls.set_files(root_certificate, certificate, private_key)
    })
}

/// Certificates as PEM bytes in memory (copied).
#[no_mangle]
pub extern "C" fn ofl_aggregator_server_options_set_tls_pem(
    options: *mut ofl_aggregator_server_options,
    root_certificate: *const u8,
    root_certificate_len: usize,
    certificate: *const u8,
    certificate_len: usize,
    private_key: *const u8,
    private_key_len: usize,
) -> *mut ofl_error {
    call("ofl_aggregator_server_options_set_tls_pem", || {
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
/// optional. A client that presents one is checked by its CN as under mTLS;
/// one that presents none is identified by its header sender only.
#[no_mangle]
pub extern "C" fn ofl_aggregator_server_options_set_disable_client_auth(
    options: *mut ofl_aggregator_server_options,
    disable: bool,
) -> *mut ofl_error {
    call("ofl_aggregator_server_options_set_disable_client_auth", || {
        options_mut(options)?.tls.config.disable_client_auth = disable;
        Ok(())
    })
}

/// The aggregator's identity (OpenFL's `Aggregator.uuid`, `federation_uuid`,
/// `single_col_cert_common_name`; the last may be NULL for none).
#[no_mangle]
pub extern "C" fn ofl_aggregator_server_options_set_federation(
    options: *mut ofl_aggregator_server_options,
    aggregator_uuid: *const c_char,
    federation_uuid: *const c_char,
    single_col_cert_common_name: *const c_char,
) -> *mut ofl_error {
    call("ofl_aggregator_server_options_set_federation", || {
        let federation = &mut options_mut(options)?.federation;
        federation.aggregator_uuid = arg_str(aggregator_uuid, "aggregator_uuid")?.to_owned();
        federation.federation_uuid = arg_str(federation_uuid, "federation_uuid")?.to_owned();
        federation.single_col_cert_common_name =
            arg_opt_str(single_col_cert_common_name, "single_col_cert_common_name")?.unwrap_or("").to_owned();
        Ok(())
    })
}

/// Authorizes a collaborator name (OpenFL's `authorized_cols`).
#[no_mangle]
pub extern "C" fn ofl_aggregator_server_options_add_collaborator(
    options: *mut ofl_aggregator_server_options,
    collaborator_name: *const c_char,
) -> *mut ofl_error {
    call("ofl_aggregator_server_options_add_collaborator", || {
        let name = arg_str(collaborator_name, "collaborator_name")?;
        if name.is_empty() {
            return Err(Error::invalid_argument("collaborator_name is empty"));
        }
        let federation = &mut options_mut(options)?.federation;
        if !federation.is_authorized(name) {
            federation.authorized_collaborators.push(name.to_owned());
        }
        Ok(())
    })
}

/// Upper bound of the random delay before an UNAUTHENTICATED answer
/// (default 5000 ms, as OpenFL; 0 answers at once). The delay holds no thread.
#[no_mangle]
pub extern "C" fn ofl_aggregator_server_options_set_auth_failure_max_delay_ms(
    options: *mut ofl_aggregator_server_options,
    delay_ms: u64,
) -> *mut ofl_error {
    call("ofl_aggregator_server_options_set_auth_failure_max_delay_ms", || {
        options_mut(options)?.config.auth_failure_max_delay = Duration::from_millis(delay_ms);
        Ok(())
    })
}

/// Largest message accepted or sent, streamed uploads included (default
/// 1 GiB = 2^30, as OpenFL).
#[no_mangle]
pub extern "C" fn ofl_aggregator_server_options_set_max_message_size(
    options: *mut ofl_aggregator_server_options,
    bytes: u64,
) -> *mut ofl_error {
    call("ofl_aggregator_server_options_set_max_message_size", || {
        let size = option_values::message_size(bytes)?;
        options_mut(options)?.config.max_message_size = size;
        Ok(())
    })
}

/// Concurrent calls (HTTP/2 streams) per connection; more are refused with
/// REFUSED_STREAM (default 100). INVALID_ARGUMENT when 0.
#[no_mangle]
pub extern "C" fn ofl_aggregator_server_options_set_max_concurrent_streams(
    options: *mut ofl_aggregator_server_options,
    max: u32,
) -> *mut ofl_error {
    call("ofl_aggregator_server_options_set_max_concurrent_streams", || {
        let value = option_values::count(u64::from(max), u64::from(u32::MAX), "max_concurrent_streams")? as u32;
        options_mut(options)?.config.limits.max_concurrent_streams = value;
        Ok(())
    })
}

/// Connections served at once; further connections wait in the listen
/// backlog (default 1000, below the common 1024 file-descriptor limit).
/// INVALID_ARGUMENT when 0.
#[no_mangle]
pub extern "C" fn ofl_aggregator_server_options_set_max_connections(
    options: *mut ofl_aggregator_server_options,
    max: u32,
) -> *mut ofl_error {
    call("ofl_aggregator_server_options_set_max_connections", || {
        let value = option_values::count(u64::from(max), u64::from(u32::MAX), "max_connections")?;
        options_mut(options)?.config.limits.max_connections = value;
        Ok(())
    })
}

/// Time a new connection has to finish its TLS handshake and send the HTTP/2
/// preface before it is closed (default 10000 ms). INVALID_ARGUMENT when 0
/// or over a year.
#[no_mangle]
pub extern "C" fn ofl_aggregator_server_options_set_handshake_timeout_ms(
    options: *mut ofl_aggregator_server_options,
    timeout_ms: u64,
) -> *mut ofl_error {
    call("ofl_aggregator_server_options_set_handshake_timeout_ms", || {
        let value = option_values::timeout_millis(timeout_ms, "handshake_timeout")?;
        options_mut(options)?.config.limits.handshake_timeout = value;
        Ok(())
    })
}

/// A connection with no call in flight for this long is closed; clients
/// reconnect on their next call (default 60000 ms). INVALID_ARGUMENT when 0
/// or over a year.
#[no_mangle]
pub extern "C" fn ofl_aggregator_server_options_set_idle_timeout_ms(
    options: *mut ofl_aggregator_server_options,
    timeout_ms: u64,
) -> *mut ofl_error {
    call("ofl_aggregator_server_options_set_idle_timeout_ms", || {
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
pub extern "C" fn ofl_aggregator_server_options_set_max_unary_request_size(
    options: *mut ofl_aggregator_server_options,
    bytes: u64,
) -> *mut ofl_error {
    call("ofl_aggregator_server_options_set_max_unary_request_size", || {
        let value = option_values::byte_size(bytes, 1024, "max_unary_request_size")?;
        options_mut(options)?.config.limits.max_unary_request_size = value;
        Ok(())
    })
}

/// Bytes of SendLocalTaskResults uploads held in memory at once across the
/// server; an upload that would go over gets RESOURCE_EXHAUSTED (default
/// 2 GiB). INVALID_ARGUMENT below 1 MiB.
#[no_mangle]
pub extern "C" fn ofl_aggregator_server_options_set_upload_memory_budget(
    options: *mut ofl_aggregator_server_options,
    bytes: u64,
) -> *mut ofl_error {
    call("ofl_aggregator_server_options_set_upload_memory_budget", || {
        let value = option_values::byte_size(bytes, 1 << 20, "upload_memory_budget")?;
        options_mut(options)?.config.upload_memory_budget = value;
        Ok(())
    })
}

/// Most tensors in one uploaded TaskResults; more get RESOURCE_EXHAUSTED
/// before they are decoded (default 100000). INVALID_ARGUMENT when 0.
#[no_mangle]
pub extern "C" fn ofl_aggregator_server_options_set_max_tensors_per_upload(
    options: *mut ofl_aggregator_server_options,
    max: u64,
) -> *mut ofl_error {
    call("ofl_aggregator_server_options_set_max_tensors_per_upload", || {
        let value = option_values::count(max, u64::from(u32::MAX), "max_tensors_per_upload")?;
        options_mut(options)?.config.max_tensors_per_upload = value;
        Ok(())
    })
}

/// Starts a server with `logic` behind it; certificates are checked and the
/// port is bound before this returns.
pub fn start_with_logic(
    options: &ofl_aggregator_server_options,
    logic: Arc<dyn AggregatorLogic>,
    out: *mut *mut ofl_aggregator_server,
) -> Result<()> {
    let mut config = options.config.clone();
    config.tls = options.tls.resolved();
    super::logging::init_default();
    let server = runtime::block_on(AggregatorServer::start(config, logic))??;
    write_out(out, ofl_aggregator_server { inner: Arc::new(server) });
    Ok(())
}

/// Starts an aggregator server whose logic is `callbacks` (copied; its
/// `user_data` is released with `free_user_data` exactly once, also when the
/// start fails). Binds and begins serving in the background before it
/// returns; call `ofl_aggregator_server_serve` to wait for the federation's
/// end. Writes the server to `*out`.
#[no_mangle]
pub extern "C" fn ofl_aggregator_server_start(
    options: *const ofl_aggregator_server_options,
    callbacks: *const ofl_aggregator_callbacks,
    out: *mut *mut ofl_aggregator_server,
) -> *mut ofl_error {
    call("ofl_aggregator_server_start", || {
        let callbacks = arg_ref(callbacks, "callbacks")?;
        let checked = check_out(out, "out").and_then(|()| arg_ref(options, "options"));
        let options = match checked {
            Ok(options) => options,
            Err(e) => {
                // The callbacks were given: their user_data is released once.
                release(callbacks);
                return Err(e);
            }
        };
        let logic = CallbackLogic::new(options.federation.clone(), callbacks)?;
        start_with_logic(options, Arc::new(logic), out)
    })
}

fn server_arc(server: *const ofl_aggregator_server) -> Result<Arc<AggregatorServer>> {
    Ok(Arc::clone(&arg_ref(server, "server")?.inner))
}

/// The port the server listens on (the chosen one when 0 was asked); 0 for NULL.
#[no_mangle]
pub extern "C" fn ofl_aggregator_server_port(server: *const ofl_aggregator_server) -> u16 {
    value(0, || server_arc(server).map_or(0, |s| s.local_addr().port()))
}

/// Blocks until the logic reports all quit jobs sent (OpenFL's `serve`), or
/// until `ofl_aggregator_server_stop`; then stops the server gracefully
/// (calls in flight finish).
#[no_mangle]
pub extern "C" fn ofl_aggregator_server_serve(server: *const ofl_aggregator_server) -> *mut ofl_error {
    call("ofl_aggregator_server_serve", || {
        let server = server_arc(server)?;
        runtime::block_on(async move { server.serve().await })?
    })
}

/// Asks the server to stop; returns at once. `ofl_aggregator_server_serve`
/// then returns. Idempotent; safe from any thread and from callbacks.
#[no_mangle]
pub extern "C" fn ofl_aggregator_server_stop(server: *const ofl_aggregator_server) -> *mut ofl_error {
    call("ofl_aggregator_server_stop", || {
        server_arc(server)?.stop();
        Ok(())
    })
}

/// Stops the server, waits until it no longer listens, and frees it; the
/// callbacks' `free_user_data` runs once the last call in flight finished.
/// Do not call from a callback. NULL is a no-op.
#[no_mangle]
pub extern "C" fn ofl_aggregator_server_free(server: *mut ofl_aggregator_server) {
    value((), || {
        if let Ok(inner) = server_arc(server) {
            let _ = runtime::block_on(async move { inner.shutdown().await });
        }
        free_boxed(server)
    })
}
