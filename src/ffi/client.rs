//! The collaborator client in C: `ofl_client_options` (setters), `ofl_client`
//! and its calls (OpenFL's `AggregatorGRPCClient`).
//!
//! Every call blocks the calling thread while the work runs on the library's
//! runtime threads; `ofl_client_free` from another thread cancels it.

use std::ffi::c_char;
use std::sync::Arc;

use super::borrow::Loan;
use super::boundary::{arg_mut, arg_ref, arg_slice, arg_str, arg_opt_str, call, check_out, free_boxed, value, write_out};
use super::error::ofl_error;
use super::option_values;
use super::tasks::ofl_tasks;
use super::tensor::{named_tensor_from_view, ofl_tensor, ofl_tensor_view, string_list};
use super::tls_config::TlsOptions;
use crate::aggregator::{AggregatorClient, AggregatorClientOptions, TaskResults, TensorRequest};
use crate::error::Result;
use crate::proto::NamedTensor;
use crate::runtime;

/// Settings for `ofl_client_new`. TLS with client authentication (mTLS) is
/// on by default, as in OpenFL: set certificates, or turn TLS off.
/// Not thread-safe: configure from one thread, then pass to `ofl_client_new`.
#[allow(non_camel_case_types)]
pub struct ofl_client_options {
    config: AggregatorClientOptions,
    tls: TlsOptions,
}

/// A collaborator's connection to an aggregator. Thread-safe: calls may be
/// made from several threads at once over the one shared connection.
#[allow(non_camel_case_types)]
pub struct ofl_client {
    inner: Arc<AggregatorClient>,
}

fn options_mut<'a>(options: *mut ofl_client_options) -> Result<&'a mut ofl_client_options> {
    arg_mut(options, "options")
}

/// New client options for the aggregator at `host`:`port` (OpenFL's
/// `agg_addr`, `agg_port`), written to `*out`.
#[no_mangle]
pub extern "C" fn ofl_client_options_new(host: *const c_char, port: u16, out: *mut *mut ofl_client_options) -> *mut ofl_error {
    call("ofl_client_options_new", || {
        check_out(out, "out")?;
        let host = option_values::host(host)?;
        write_out(out, ofl_client_options { config: AggregatorClientOptions::new(host, port), tls: TlsOptions::default() });
        Ok(())
    })
}

/// Frees client options. NULL is a no-op.
#[no_mangle]
pub extern "C" fn ofl_client_options_free(options: *mut ofl_client_options) {
    value((), || free_boxed(options))
}

/// Turns TLS on (default) or off (OpenFL's `tls`). Without TLS the connection
/// is plain text and the aggregator cannot authenticate this collaborator.
#[no_mangle]
pub extern "C" fn ofl_client_options_set_tls(options: *mut ofl_client_options, enabled: bool) -> *mut ofl_error {
    call("ofl_client_options_set_tls", || {
        options_mut(options)?.tls.enabled = enabled;
        Ok(())
    })
}

/// Certificate files (OpenFL's `root_certificate`, `certificate`,
/// `private_key`): `root_certificate` is required; the other two may be NULL
/// when client authentication is disabled. Files are read by `ofl_client_new`.
#[no_mangle]
pub extern "C" fn ofl_client_options_set_tls_files(
    options: *mut ofl_client_options,
    root_certificate: *const c_char,
    certificate: *const c_char,
    private_key: *const c_char,
) -> *mut ofl_error {
    call("ofl_client_options_set_tls_files", || {
        options_mut(options)?.tls.set_files(root_certificate, certificate, private_key)
    })
}

/// Certificates as PEM bytes in memory (copied): `root_certificate` is
/// required; the other two may be NULL with length 0.
#[no_mangle]
pub extern "C" fn ofl_client_options_set_tls_pem(
    options: *mut ofl_client_options,
    root_certificate: *const u8,
    root_certificate_len: usize,
    certificate: *const u8,
    certificate_len: usize,
    private_key: *const u8,
    private_key_len: usize,
) -> *mut ofl_error {
    call("ofl_client_options_set_tls_pem", || {
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

/// One-way TLS (OpenFL's `disable_client_auth`): present no client certificate.
#[no_mangle]
pub extern "C" fn ofl_client_options_set_disable_client_auth(options: *mut ofl_client_options, disable: bool) -> *mut ofl_error {
    call("ofl_client_options_set_disable_client_auth", || {
        options_mut(options)?.tls.config.disable_client_auth = disable;
        Ok(())
    })
}

/// The name the server certificate must carry (default: the host).
#[no_mangle]
pub extern "C" fn ofl_client_options_set_server_name(options: *mut ofl_client_options, server_name: *const c_char) -> *mut ofl_error {
    call("ofl_client_options_set_server_name", || {
        let name = arg_str(server_name, "server_name")?;
        options_mut(options)?.config.connect.server_name = Some(name.to_owned());
        Ok(())
    })
}

/// The identity requests carry and replies must match (OpenFL's
/// `aggregator_uuid`, `federation_uuid`, `single_col_cert_common_name`; the
/// last may be NULL for none).
#[no_mangle]
pub extern "C" fn ofl_client_options_set_federation(
    options: *mut ofl_client_options,
    aggregator_uuid: *const c_char,
    federation_uuid: *const c_char,
    single_col_cert_common_name: *const c_char,
) -> *mut ofl_error {
    call("ofl_client_options_set_federation", || {
        let options = options_mut(options)?;
        let federation = &mut options.config.federation;
        federation.aggregator_uuid = arg_str(aggregator_uuid, "aggregator_uuid")?.to_owned();
        federation.federation_uuid = arg_str(federation_uuid, "federation_uuid")?.to_owned();
        federation.single_col_cert_common_name =
            arg_opt_str(single_col_cert_common_name, "single_col_cert_common_name")?.unwrap_or("").to_owned();
        Ok(())
    })
}

/// Retry while the aggregator is unreachable: exponential backoff from
/// `initial_backoff_ms` up to `max_backoff_ms` with jitter; give up after
/// `deadline_ms` (error `OFL_CODE_RETRIES_EXHAUSTED`), or never when
/// `deadline_ms` is negative (the default, like OpenFL; each attempt is
/// logged at info level). UNAUTHENTICATED and TLS failures are never retried.
#[no_mangle]
pub extern "C" fn ofl_client_options_set_retry(
    options: *mut ofl_client_options,
    initial_backoff_ms: u64,
    max_backoff_ms: u64,
    deadline_ms: i64,
) -> *mut ofl_error {
    call("ofl_client_options_set_retry", || {
        options_mut(options)?.config.retry = option_values::retry_policy(initial_backoff_ms, max_backoff_ms, deadline_ms)?;
        Ok(())
    })
}

/// Time allowed to set up a connection (TCP + TLS), default 10 000 ms.
#[no_mangle]
pub extern "C" fn ofl_client_options_set_connect_timeout_ms(options: *mut ofl_client_options, timeout_ms: u64) -> *mut ofl_error {
    call("ofl_client_options_set_connect_timeout_ms", || {
        options_mut(options)?.config.connect.connect_timeout = option_values::positive_millis(timeout_ms, "timeout_ms")?;
        Ok(())
    })
}

/// Largest message sent or received, default 1 GiB (2^30, as OpenFL).
#[no_mangle]
pub extern "C" fn ofl_client_options_set_max_message_size(options: *mut ofl_client_options, bytes: u64) -> *mut ofl_error {
    call("ofl_client_options_set_max_message_size", || {
        let size = option_values::message_size(bytes)?;
        options_mut(options)?.config.max_message_size = size;
        Ok(())
    })
}

/// Open a new connection for every call, as OpenFL 1.6 does (default off:
/// one connection is reused).
#[no_mangle]
pub extern "C" fn ofl_client_options_set_reconnect_every_call(options: *mut ofl_client_options, enabled: bool) -> *mut ofl_error {
    call("ofl_client_options_set_reconnect_every_call", || {
        options_mut(options)?.config.reconnect_every_call = enabled;
        Ok(())
    })
}

/// A new client, written to `*out`. Certificates are read and checked now;
/// the connection is made on the first call. `options` may be freed after.
#[no_mangle]
pub extern "C" fn ofl_client_new(options: *const ofl_client_options, out: *mut *mut ofl_client) -> *mut ofl_error {
    call("ofl_client_new", || {
        check_out(out, "out")?;
        let options = arg_ref(options, "options")?;
        let mut config = options.config.clone();
        config.connect.tls = options.tls.resolved();
        super::logging::init_default();
        let _ = runtime::handle();
        let inner = Arc::new(AggregatorClient::new(config)?);
        write_out(out, ofl_client { inner });
        Ok(())
    })
}

/// Frees the client, cancelling calls in progress on other threads (they
/// return `OFL_CODE_CANCELLED`). NULL is a no-op.
#[no_mangle]
pub extern "C" fn ofl_client_free(client: *mut ofl_client) {
    value((), || {
        if let Some(client) = ptr_or_none(client) {
            client.inner.close();
        }
        free_boxed(client)
    })
}

/// Closes the client without freeing it: calls in progress on other threads
/// return `OFL_CODE_CANCELLED` at once, later calls fail the same way. Safe
/// to call while other threads use the handle (unlike `ofl_client_free`,
/// which must not race with a call that is just starting). Idempotent.
#[no_mangle]
pub extern "C" fn ofl_client_close(client: *const ofl_client) -> *mut ofl_error {
    call("ofl_client_close", || {
        client_arc(client)?.close();
        Ok(())
    })
}

fn ptr_or_none<'a, T>(ptr: *mut T) -> Option<&'a T> {
    // SAFETY: NULL or a live object from this library (documented).
    unsafe { ptr.as_ref() }
}

fn client_arc(client: *const ofl_client) -> Result<Arc<AggregatorClient>> {
    Ok(Arc::clone(&arg_ref(client, "client")?.inner))
}

/// Closes the connection (OpenFL's `disconnect`); the next call reconnects.
#[no_mangle]
pub extern "C" fn ofl_client_disconnect(client: *const ofl_client) -> *mut ofl_error {
    call("ofl_client_disconnect", || {
        client_arc(client)?.disconnect();
        Ok(())
    })
}

/// Replaces the connection with a new one (OpenFL's `reconnect`).
#[no_mangle]
pub extern "C" fn ofl_client_reconnect(client: *const ofl_client) -> *mut ofl_error {
    call("ofl_client_reconnect", || client_arc(client)?.reconnect())
}

/// GetTasks for `collaborator_name`: writes the answer to `*out` (free it
/// with `ofl_tasks_free`).
#[no_mangle]
pub extern "C" fn ofl_client_get_tasks(
    client: *const ofl_client,
    collaborator_name: *const c_char,
    out: *mut *mut ofl_tasks,
) -> *mut ofl_error {
    call("ofl_client_get_tasks", || {
        check_out(out, "out")?;
        let client = client_arc(client)?;
        let name = arg_str(collaborator_name, "collaborator_name")?.to_owned();
        let reply = runtime::block_on(async move { client.get_tasks(&name).await })??;
        write_out(out, ofl_tasks::new(reply));
        Ok(())
    })
}

/// GetAggregatedTensor: the tensor `tensor_name` of `round_number` with the
/// given `report` flag and `tags_len` tags, written to `*out` (free it with
/// `ofl_tensor_free`; its data points into the received buffer, no copy).
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn ofl_client_get_aggregated_tensor(
    client: *const ofl_client,
    collaborator_name: *const c_char,
    tensor_name: *const c_char,
    round_number: i32,
    report: bool,
    tags: *const *const c_char,
    tags_len: usize,
    require_lossless: bool,
    out: *mut *mut ofl_tensor,
) -> *mut ofl_error {
    call("ofl_client_get_aggregated_tensor", || {
        check_out(out, "out")?;
        let client = client_arc(client)?;
        let name = arg_str(collaborator_name, "collaborator_name")?.to_owned();
        let request = TensorRequest {
            tensor_name: arg_str(tensor_name, "tensor_name")?.to_owned(),
            round_number,
            report,
            tags: string_list(tags, tags_len, "tags")?,
            require_lossless,
        };
        let tensor = runtime::block_on(async move { client.get_aggregated_tensor(&name, &request).await })??;
        write_out(out, ofl_tensor::new(tensor));
        Ok(())
    })
}

/// SendLocalTaskResults: sends `tensors_len` tensors as the results of
/// `task_name` in `round_number`, computed on `data_size` samples. The
/// tensors are borrowed for the call only: their data is streamed straight
/// from the caller's memory (no copy) in chunks of at most 2 MiB, resent
/// whole after a reconnect, and no longer referenced when this returns.
#[no_mangle]
pub extern "C" fn ofl_client_send_local_task_results(
    client: *const ofl_client,
    collaborator_name: *const c_char,
    round_number: i32,
    task_name: *const c_char,
    data_size: i32,
    tensors: *const ofl_tensor_view,
    tensors_len: usize,
) -> *mut ofl_error {
    call("ofl_client_send_local_task_results", || {
        let client = client_arc(client)?;
        let name = arg_str(collaborator_name, "collaborator_name")?.to_owned();
        let views = arg_slice(tensors, tensors_len, "tensors")?;
        let task_name = arg_str(task_name, "task_name")?.to_owned();
        let loan = Loan::new();
        let tensors = lend_tensors(&loan, views)?;
        let results = TaskResults { round_number, task_name, data_size, tensors };
        let outcome = runtime::block_on(async move { client.send_local_task_results(&name, &results).await });
        // The caller's tensor memory must not be referenced once we return.
        loan.wait_until_returned();
        outcome?
    })
}

/// The caller's tensors as `NamedTensor`s whose data is lent, not copied.
fn lend_tensors(loan: &Arc<Loan>, views: &[ofl_tensor_view]) -> Result<Vec<NamedTensor>> {
    views
        .iter()
        .map(|view| {
            let data = arg_slice(view.data, view.data_len, "tensor.data")?;
            named_tensor_from_view(view, loan.lend(data))
        })
        .collect()
}
