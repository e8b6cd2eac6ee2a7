//! The director's clients in C: `ofl_director_client_options` (setters,
//! shared by both clients), `ofl_envoy_client` (OpenFL's
//! `ShardDirectorClient`, what an envoy calls) and `ofl_frontend_client`
//! (OpenFL's `DirectorClient`, what a data scientist's program calls), with
//! the objects their answers come in (`ofl_envoys`, `ofl_experiment_list`,
//! `ofl_experiment_description`).
//!
//! Why not `ofl_client_options`: those carry the aggregator's federation
//! identity (uuids, single certificate CN) and per-call reconnection, which
//! mean nothing to a director, and lack the director's `client_id` and
//! archive limit. The TLS, retry, timeout and size setters behave exactly
//! as `ofl_client_options_*`.
//!
//! Every call blocks the calling thread while the work runs on the
//! library's runtime threads; `ofl_*_client_close` from another thread
//! cancels it (OFL_CODE_CANCELLED).

use std::ffi::{c_char, c_void, CString};
use std::path::Path;
use std::sync::Arc;

use super::boundary::{arg_mut, arg_opt_str, arg_ref, arg_slice, arg_str, c_string, call, check_out, free_boxed, value, write_out};
use super::director_types::{
    check_value_out, cuda_device_from_c, item_ptr, model_from_views, ofl_cuda_device, ofl_director_metric,
    ofl_experiment_status, ofl_string, ofl_string_list, ofl_tensor_list, with_obj, write_opt, write_value,
    CudaDeviceStrings,
};
use super::error::ofl_error;
use super::option_values;
use super::tensor::{ofl_tensor_view, string_list};
use super::tls_config::TlsOptions;
use crate::connect::ConnectConfig;
use crate::director::{EnvoyClient, EnvoyClientOptions, FrontendClient, FrontendClientOptions, DirectorMetric};
use crate::error::{ofl_code, Error, Result};
use crate::proto::director::{EnvoyInfo, ExperimentListItem, NodeInfo, ShardInfo};
use crate::proto::{ExperimentDescription, ModelProto};
use crate::retry::RetryPolicy;
use crate::runtime;
use crate::stream::DEFAULT_MAX_MESSAGE_SIZE;

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

/// Settings for `ofl_envoy_client_new` and `ofl_frontend_client_new`: the
/// director's address, TLS (mTLS on by default, as in OpenFL), retries,
/// limits, and a frontend's `client_id`. Not thread-safe: configure from one
/// thread; one options object may make several clients.
#[allow(non_camel_case_types)]
pub struct ofl_director_client_options {
    connect: ConnectConfig,
    tls: TlsOptions,
    retry: RetryPolicy,
    max_message_size: usize,
    max_archive_size: u64,
    client_id: Option<String>,
}

impl ofl_director_client_options {
    fn connect(&self) -> ConnectConfig {
        let mut connect = self.connect.clone();
        connect.tls = self.tls.resolved();
        connect
    }
}

fn options_mut<'a>(options: *mut ofl_director_client_options) -> Result<&'a mut ofl_director_client_options> {
    arg_mut(options, "options")
}

/// New client options for the director at `host`:`port` (OpenFL's
/// `director_host`, `director_port`), written to `*out`.
#[no_mangle]
pub extern "C" fn ofl_director_client_options_new(
    host: *const c_char,
    port: u16,
    out: *mut *mut ofl_director_client_options,
) -> *mut ofl_error {
    call("ofl_director_client_options_new", || {
        check_out(out, "out")?;
        let host = option_values::host(host)?;
        write_out(
            out,
            ofl_director_client_options {
                connect: ConnectConfig::new(host, port),
                tls: TlsOptions::default(),
                retry: RetryPolicy::default(),
                max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
                max_archive_size: 1 << 30,
                client_id: None,
            },
        );
        Ok(())
    })
}

/// Frees client options. NULL is a no-op.
#[no_mangle]
pub extern "C" fn ofl_director_client_options_free(options: *mut ofl_director_client_options) {
    value((), || free_boxed(options))
}

/// Turns TLS on (default) or off (OpenFL's `tls`).
#[no_mangle]
pub extern "C" fn ofl_director_client_options_set_tls(options: *mut ofl_director_client_options, enabled: bool) -> *mut ofl_error {
    call("ofl_director_client_options_set_tls", || {
        options_mut(options)?.tls.enabled = enabled;
        Ok(())
    })
}

/// Certificate files (OpenFL's `root_certificate`, `certificate`,
/// `private_key`): `root_certificate` is required; the other two may be NULL
/// when client authentication is disabled. An envoy's certificate CN is its
/// shard name; a frontend's names it to the director. Read by `_new`.
#[no_mangle]
pub extern "C" fn ofl_director_client_options_set_tls_files(
    options: *mut ofl_director_client_options,
    root_certificate: *const c_char,
    certificate: *const c_char,
    private_key: *const c_char,
) -> *mut ofl_error {
    call("ofl_director_client_options_set_tls_files", || {
        options_mut(options)?.tls.set_files(root_certificate, certificate, private_key)
    })
}

/// Certificates as PEM bytes in memory (copied): `root_certificate` is
/// required; the other two may be NULL with length 0.
#[no_mangle]
pub extern "C" fn ofl_director_client_options_set_tls_pem(
    options: *mut ofl_director_client_options,
    root_certificate: *const u8,
    root_certificate_len: usize,
    certificate: *const u8,
    certificate_len: usize,
    private_key: *const u8,
    private_key_len: usize,
) -> *mut ofl_error {
    call("ofl_director_client_options_set_tls_pem", || {
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

/// One-way TLS (OpenFL's `disable_client_auth`): present no client
/// certificate (the director then names this caller by its `client_id`).
#[no_mangle]
pub extern "C" fn ofl_director_client_options_set_disable_client_auth(
    options: *mut ofl_director_client_options,
    disable: bool,
) -> *mut ofl_error {
    call("ofl_director_client_options_set_disable_client_auth", || {
        options_mut(options)?.tls.config.disable_client_auth = disable;
        Ok(())
    })
}

/// The name the director's certificate must carry (default: the host).
#[no_mangle]
pub extern "C" fn ofl_director_client_options_set_server_name(
    options: *mut ofl_director_client_options,
    server_name: *const c_char,
) -> *mut ofl_error {
    call("ofl_director_client_options_set_server_name", || {
        let name = arg_str(server_name, "server_name")?;
        options_mut(options)?.connect.server_name = Some(name.to_owned());
        Ok(())
    })
}

/// Retry while the director is unreachable, as `ofl_client_options_set_retry`:
/// exponential backoff from `initial_backoff_ms` up to `max_backoff_ms` with
/// jitter; give up after `deadline_ms` (OFL_CODE_RETRIES_EXHAUSTED), or
/// never when negative (the default, like OpenFL). A call is repeated whole:
/// an upload or download restarts from its first byte.
#[no_mangle]
pub extern "C" fn ofl_director_client_options_set_retry(
    options: *mut ofl_director_client_options,
    initial_backoff_ms: u64,
    max_backoff_ms: u64,
    deadline_ms: i64,
) -> *mut ofl_error {
    call("ofl_director_client_options_set_retry", || {
        options_mut(options)?.retry = option_values::retry_policy(initial_backoff_ms, max_backoff_ms, deadline_ms)?;
        Ok(())
    })
}

/// Time allowed to set up a connection (TCP + TLS), default 10 000 ms.
#[no_mangle]
pub extern "C" fn ofl_director_client_options_set_connect_timeout_ms(
    options: *mut ofl_director_client_options,
    timeout_ms: u64,
) -> *mut ofl_error {
    call("ofl_director_client_options_set_connect_timeout_ms", || {
        options_mut(options)?.connect.connect_timeout = option_values::positive_millis(timeout_ms, "timeout_ms")?;
        Ok(())
    })
}

/// Largest message sent or received, default 1 GiB (2^30, as OpenFL).
#[no_mangle]
pub extern "C" fn ofl_director_client_options_set_max_message_size(
    options: *mut ofl_director_client_options,
    bytes: u64,
) -> *mut ofl_error {
    call("ofl_director_client_options_set_max_message_size", || {
        let size = option_values::message_size(bytes)?;
        options_mut(options)?.max_message_size = size;
        Ok(())
    })
}

/// Envoys only: the largest archive `ofl_envoy_client_get_experiment_data`
/// writes (default 1 GiB; beyond, RESOURCE_EXHAUSTED). Must be positive.
#[no_mangle]
pub extern "C" fn ofl_director_client_options_set_max_archive_size(
    options: *mut ofl_director_client_options,
    bytes: u64,
) -> *mut ofl_error {
    call("ofl_director_client_options_set_max_archive_size", || {
        if bytes == 0 {
            return Err(Error::invalid_argument("max archive size must be positive"));
        }
        options_mut(options)?.max_archive_size = bytes;
        Ok(())
    })
}

/// Frontends only: the `client_id` metadata sent with every call (printable
/// ASCII), which names the caller to a director without TLS or to one that
/// gets no client certificate (under mTLS the certificate CN does). NULL
/// sends none (the director then says "__default__"). Envoys never send one,
/// as in OpenFL.
#[no_mangle]
pub extern "C" fn ofl_director_client_options_set_client_id(
    options: *mut ofl_director_client_options,
    client_id: *const c_char,
) -> *mut ofl_error {
    call("ofl_director_client_options_set_client_id", || {
        let id = arg_opt_str(client_id, "client_id")?;
        if let Some(id) = id {
            if id.is_empty() || !id.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                return Err(Error::invalid_argument(format!("client_id {id:?} is not non-empty printable ASCII")));
            }
        }
        options_mut(options)?.client_id = id.map(str::to_owned);
        Ok(())
    })
}

fn ptr_or_none<'a, T>(ptr: *mut T) -> Option<&'a T> {
    // SAFETY: NULL or a live object from this library (documented).
    unsafe { ptr.as_ref() }
}

// ---------------------------------------------------------------------------
// Envoy
// ---------------------------------------------------------------------------

/// An envoy's connection to the director (OpenFL's `ShardDirectorClient`).
/// Thread-safe: calls may be made from several threads at once (e.g. health
/// checks while another thread waits for an experiment).
#[allow(non_camel_case_types)]
pub struct ofl_envoy_client {
    inner: Arc<EnvoyClient>,
}

/// What an envoy reports about its shard (OpenFL's `ShardInfo`), borrowed
/// for the call.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct ofl_shard_info {
    /// Free text describing the data (may be NULL for "").
    pub shard_description: *const c_char,
    /// Number of samples.
    pub n_samples: u64,
    /// `sample_shape_len` dimensions as strings (e.g. "28"); must equal the
    /// director's for the shard to be accepted.
    pub sample_shape: *const *const c_char,
    /// Number of sample dimensions.
    pub sample_shape_len: usize,
    /// `target_shape_len` dimensions as strings; must equal the director's.
    pub target_shape: *const *const c_char,
    /// Number of target dimensions.
    pub target_shape_len: usize,
    /// `cuda_devices_len` devices of the envoy's node (may be NULL when 0).
    pub cuda_devices: *const ofl_cuda_device,
    /// Number of devices.
    pub cuda_devices_len: usize,
}

fn devices_from_c(devices: *const ofl_cuda_device, len: usize) -> Result<Vec<crate::proto::director::CudaDeviceInfo>> {
    arg_slice(devices, len, "cuda_devices")?.iter().enumerate().map(|(i, d)| cuda_device_from_c(d, i)).collect()
}

/// A new envoy client for the shard `shard_name` (OpenFL's `shard_name`: its
/// collaborator name in experiments; under mTLS the certificate CN must be
/// it), written to `*out`. Certificates are read and checked now; the
/// connection is made on the first call. `options` may be freed after.
#[no_mangle]
pub extern "C" fn ofl_envoy_client_new(
    options: *const ofl_director_client_options,
    shard_name: *const c_char,
    out: *mut *mut ofl_envoy_client,
) -> *mut ofl_error {
    call("ofl_envoy_client_new", || {
        check_out(out, "out")?;
        let options = arg_ref(options, "options")?;
        let shard_name = arg_str(shard_name, "shard_name")?;
        if shard_name.is_empty() {
            return Err(Error::invalid_argument("shard_name is empty"));
        }
        super::logging::init_default();
        let _ = runtime::handle();
        let config = EnvoyClientOptions {
            connect: options.connect(),
            shard_name: shard_name.to_owned(),
            retry: options.retry.clone(),
            max_message_size: options.max_message_size,
            max_archive_size: options.max_archive_size,
        };
        write_out(out, ofl_envoy_client { inner: Arc::new(EnvoyClient::new(config)?) });
        Ok(())
    })
}

/// Cancels calls in progress on other threads (a WaitExperiment long poll
/// too: they return OFL_CODE_CANCELLED) and refuses new ones. Safe from any
/// thread; call it, join the threads that use the client, then free it.
#[no_mangle]
pub extern "C" fn ofl_envoy_client_close(client: *const ofl_envoy_client) -> *mut ofl_error {
    call("ofl_envoy_client_close", || {
        arg_ref(client, "client")?.inner.close();
        Ok(())
    })
}

/// Closes (as `ofl_envoy_client_close`) and frees the client. NULL is a no-op.
#[no_mangle]
pub extern "C" fn ofl_envoy_client_free(client: *mut ofl_envoy_client) {
    value((), || {
        if let Some(client) = ptr_or_none(client) {
            client.inner.close();
        }
        free_boxed(client)
    })
}

fn envoy_arc(client: *const ofl_envoy_client) -> Result<Arc<EnvoyClient>> {
    Ok(Arc::clone(&arg_ref(client, "client")?.inner))
}

/// UpdateShardInfo: registers the shard (under the client's shard name).
/// Writes to `*accepted` whether the director accepted it (its sample and
/// target shapes are the director's).
#[no_mangle]
pub extern "C" fn ofl_envoy_client_update_shard_info(
    client: *const ofl_envoy_client,
    shard_info: *const ofl_shard_info,
    accepted: *mut bool,
) -> *mut ofl_error {
    call("ofl_envoy_client_update_shard_info", || {
        check_value_out(accepted, "accepted")?;
        let client = envoy_arc(client)?;
        let info = arg_ref(shard_info, "shard_info")?;
        let shard = ShardInfo {
            node_info: Some(NodeInfo {
                name: client.shard_name().to_owned(),
                cuda_devices: devices_from_c(info.cuda_devices, info.cuda_devices_len)?,
            }),
            shard_description: arg_opt_str(info.shard_description, "shard_description")?.unwrap_or("").to_owned(),
            n_samples: info.n_samples,
            sample_shape: string_list(info.sample_shape, info.sample_shape_len, "sample_shape")?,
            target_shape: string_list(info.target_shape, info.target_shape_len, "target_shape")?,
        };
        let ok = runtime::block_on(async move { client.report_shard_info(shard).await })??;
        write_value(accepted, ok);
        Ok(())
    })
}

/// WaitExperiment: blocks until the director has an experiment for this
/// envoy, then writes its name to `*out` (free it with `ofl_string_free`).
/// Asking again while that experiment runs returns it again (a reconnect).
/// `ofl_envoy_client_close` from another thread cancels the wait.
#[no_mangle]
pub extern "C" fn ofl_envoy_client_wait_experiment(
    client: *const ofl_envoy_client,
    out: *mut *mut ofl_string,
) -> *mut ofl_error {
    call("ofl_envoy_client_wait_experiment", || {
        check_out(out, "out")?;
        let client = envoy_arc(client)?;
        let name = runtime::block_on(async move { client.wait_experiment().await })??;
        write_out(out, ofl_string::new(&name));
        Ok(())
    })
}

/// GetExperimentData: downloads the archive of `experiment_name` into the
/// file `dest_path` (written as `dest_path` + ".part", renamed when complete;
/// an existing file is replaced). Writes its size to `*size` when `size` is
/// not NULL. Errors: PERMISSION_DENIED when this envoy is not one of its
/// collaborators, FAILED_PRECONDITION when it is not in progress,
/// RESOURCE_EXHAUSTED beyond the maximum archive size, IO for the file.
#[no_mangle]
pub extern "C" fn ofl_envoy_client_get_experiment_data(
    client: *const ofl_envoy_client,
    experiment_name: *const c_char,
    dest_path: *const c_char,
    size: *mut u64,
) -> *mut ofl_error {
    call("ofl_envoy_client_get_experiment_data", || {
        let client = envoy_arc(client)?;
        let name = arg_str(experiment_name, "experiment_name")?.to_owned();
        let dest = arg_str(dest_path, "dest_path")?;
        if dest.is_empty() {
            return Err(Error::invalid_argument("dest_path is empty"));
        }
        let dest = Path::new(dest).to_path_buf();
        let total = runtime::block_on(async move { client.get_experiment_data(&name, &dest).await })??;
        write_opt(size, total);
        Ok(())
    })
}

/// UpdateEnvoyStatus: a health check, with whether an experiment runs and
/// `cuda_devices_len` devices (may be NULL when 0; they replace the reported
/// ones index by index). Writes the director's health-check period in
/// milliseconds to `*period_ms` when not NULL: send the next check within
/// it. Errors: NOT_FOUND when the director does not know this envoy (report
/// the shard again).
#[no_mangle]
pub extern "C" fn ofl_envoy_client_send_health_check(
    client: *const ofl_envoy_client,
    is_experiment_running: bool,
    cuda_devices: *const ofl_cuda_device,
    cuda_devices_len: usize,
    period_ms: *mut u64,
) -> *mut ofl_error {
    call("ofl_envoy_client_send_health_check", || {
        let client = envoy_arc(client)?;
        let devices = devices_from_c(cuda_devices, cuda_devices_len)?;
        let period =
            runtime::block_on(async move { client.send_health_check(is_experiment_running, devices).await })??;
        write_opt(period_ms, u64::try_from(period.as_millis()).unwrap_or(u64::MAX));
        Ok(())
    })
}

/// SetExperimentFailed: tells the director this envoy failed
/// `experiment_name` with `error_code` and `description` (may be NULL).
/// Errors: PERMISSION_DENIED when this envoy is not its collaborator (or,
/// without TLS, when a `client_id` was sent), FAILED_PRECONDITION when it is
/// not in progress, NOT_FOUND.
#[no_mangle]
pub extern "C" fn ofl_envoy_client_set_experiment_failed(
    client: *const ofl_envoy_client,
    experiment_name: *const c_char,
    error_code: u32,
    description: *const c_char,
) -> *mut ofl_error {
    call("ofl_envoy_client_set_experiment_failed", || {
        let client = envoy_arc(client)?;
        let name = arg_str(experiment_name, "experiment_name")?.to_owned();
        let description = arg_opt_str(description, "description")?.unwrap_or("").to_owned();
        runtime::block_on(async move { client.set_experiment_failed(&name, error_code, &description).await })?
    })
}

// ---------------------------------------------------------------------------
// Frontend
// ---------------------------------------------------------------------------

/// A frontend's connection to the director (OpenFL's `DirectorClient`).
/// Thread-safe: calls may be made from several threads at once. A frontend
/// sees only the experiments it submitted (same certificate CN or client_id).
#[allow(non_camel_case_types)]
pub struct ofl_frontend_client {
    inner: Arc<FrontendClient>,
}

/// A new frontend client, written to `*out`. Certificates are read and
/// checked now; the connection is made on the first call. `options` may be
/// freed after.
#[no_mangle]
pub extern "C" fn ofl_frontend_client_new(
    options: *const ofl_director_client_options,
    out: *mut *mut ofl_frontend_client,
) -> *mut ofl_error {
    call("ofl_frontend_client_new", || {
        check_out(out, "out")?;
        let options = arg_ref(options, "options")?;
        super::logging::init_default();
        let _ = runtime::handle();
        let mut config = FrontendClientOptions::new(options.connect.host.clone(), options.connect.port);
        config.connect = options.connect();
        config.client_id = options.client_id.clone();
        config.retry = options.retry.clone();
        config.max_message_size = options.max_message_size;
        write_out(out, ofl_frontend_client { inner: Arc::new(FrontendClient::new(config)?) });
        Ok(())
    })
}

/// Cancels calls in progress on other threads (a metric stream too: they
/// return OFL_CODE_CANCELLED) and refuses new ones. Safe from any thread.
#[no_mangle]
pub extern "C" fn ofl_frontend_client_close(client: *const ofl_frontend_client) -> *mut ofl_error {
    call("ofl_frontend_client_close", || {
        arg_ref(client, "client")?.inner.close();
        Ok(())
    })
}

/// Closes (as `ofl_frontend_client_close`) and frees the client. NULL is a no-op.
#[no_mangle]
pub extern "C" fn ofl_frontend_client_free(client: *mut ofl_frontend_client) {
    value((), || {
        if let Some(client) = ptr_or_none(client) {
            client.inner.close();
        }
        free_boxed(client)
    })
}

fn frontend_arc(client: *const ofl_frontend_client) -> Result<Arc<FrontendClient>> {
    Ok(Arc::clone(&arg_ref(client, "client")?.inner))
}

/// SetNewExperiment: submits the experiment `name` for `collaborators_len`
/// envoys, uploading the archive file `archive_path` (OpenFL's workspace
/// archive; streamed from the file in 2 MiB chunks, never whole in memory)
/// and an initial model of `initial_model_len` tensors (copied; NULL and 0
/// for none). On success the experiment is pending. Errors:
/// INVALID_ARGUMENT (bad name, no collaborators, empty archive),
/// ALREADY_EXISTS, RESOURCE_EXHAUSTED (archive too large), IO (the file).
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn ofl_frontend_client_set_new_experiment(
    client: *const ofl_frontend_client,
    name: *const c_char,
    collaborators: *const *const c_char,
    collaborators_len: usize,
    archive_path: *const c_char,
    initial_model: *const ofl_tensor_view,
    initial_model_len: usize,
) -> *mut ofl_error {
    call("ofl_frontend_client_set_new_experiment", || {
        let client = frontend_arc(client)?;
        let name = arg_str(name, "name")?.to_owned();
        let collaborators = string_list(collaborators, collaborators_len, "collaborators")?;
        let archive = Path::new(arg_str(archive_path, "archive_path")?).to_path_buf();
        let model = if initial_model_len == 0 {
            None
        } else {
            Some(model_from_views(initial_model, initial_model_len, "initial_model")?)
        };
        let accepted = runtime::block_on(async move {
            client.set_new_experiment(&name, &collaborators, &archive, model.as_ref()).await
        })??;
        if !accepted {
            return Err(Error::new(ofl_code::FailedPrecondition, "the director did not accept the experiment"));
        }
        Ok(())
    })
}

/// GetExperimentStatus: writes the status of `name` to `*out`. Errors:
/// NOT_FOUND for an experiment this frontend did not submit.
#[no_mangle]
pub extern "C" fn ofl_frontend_client_get_experiment_status(
    client: *const ofl_frontend_client,
    name: *const c_char,
    out: *mut ofl_experiment_status,
) -> *mut ofl_error {
    call("ofl_frontend_client_get_experiment_status", || {
        check_value_out(out, "out")?;
        let client = frontend_arc(client)?;
        let name = arg_str(name, "name")?.to_owned();
        let status = runtime::block_on(async move { client.get_experiment_status(&name).await })??;
        write_value(out, ofl_experiment_status::from(status));
        Ok(())
    })
}

/// GetDatasetInfo: the director's sample and target shapes, written to
/// `*sample_shape` and `*target_shape` (free each with `ofl_string_list_free`).
#[no_mangle]
pub extern "C" fn ofl_frontend_client_get_dataset_info(
    client: *const ofl_frontend_client,
    sample_shape: *mut *mut ofl_string_list,
    target_shape: *mut *mut ofl_string_list,
) -> *mut ofl_error {
    call("ofl_frontend_client_get_dataset_info", || {
        check_out(sample_shape, "sample_shape")?;
        check_out(target_shape, "target_shape")?;
        let client = frontend_arc(client)?;
        let (sample, target) = runtime::block_on(async move { client.get_dataset_info().await })??;
        write_out(sample_shape, ofl_string_list::new(&sample));
        write_out(target_shape, ofl_string_list::new(&target));
        Ok(())
    })
}

fn trained_model(
    function: &str,
    client: *const ofl_frontend_client,
    name: *const c_char,
    best: bool,
    out: *mut *mut ofl_tensor_list,
) -> *mut ofl_error {
    call(function, || {
        check_out(out, "out")?;
        let client = frontend_arc(client)?;
        let name = arg_str(name, "name")?.to_owned();
        let model: Option<ModelProto> = runtime::block_on(async move {
            if best {
                client.get_best_model(&name).await
            } else {
                client.get_last_model(&name).await
            }
        })??;
        let which = if best { "best" } else { "last" };
        let model = model.ok_or_else(|| {
            Error::new(ofl_code::FailedPrecondition, format!("the director has no {which} model of this experiment yet"))
        })?;
        write_out(out, ofl_tensor_list::new(model));
        Ok(())
    })
}

/// GetTrainedModel(BEST_MODEL): the best model of `name` as the host set it,
/// written to `*out` (free it with `ofl_tensor_list_free`; decode it with
/// `ofl_tensor_list_to_model`). Errors: FAILED_PRECONDITION while there is
/// none, NOT_FOUND for an experiment this frontend did not submit.
#[no_mangle]
pub extern "C" fn ofl_frontend_client_get_best_model(
    client: *const ofl_frontend_client,
    name: *const c_char,
    out: *mut *mut ofl_tensor_list,
) -> *mut ofl_error {
    trained_model("ofl_frontend_client_get_best_model", client, name, true, out)
}

/// GetTrainedModel(LAST_MODEL), as `ofl_frontend_client_get_best_model`.
#[no_mangle]
pub extern "C" fn ofl_frontend_client_get_last_model(
    client: *const ofl_frontend_client,
    name: *const c_char,
    out: *mut *mut ofl_tensor_list,
) -> *mut ofl_error {
    trained_model("ofl_frontend_client_get_last_model", client, name, false, out)
}

/// Receives one metric of a stream; `metric` and its strings are valid
/// during the call only. Return true for more, false to end the stream.
#[allow(non_camel_case_types)]
pub type ofl_director_metric_fn =
    Option<extern "C" fn(user_data: *mut c_void, metric: *const ofl_director_metric) -> bool>;

/// What the stream task tells the calling thread.
enum StreamEvent {
    Metric(DirectorMetric),
    Done(Result<()>),
}

/// GetMetricStream: calls `callback(user_data, metric)` for each metric of
/// `name` until the experiment is over and every metric was delivered, then
/// returns. The callback runs on the calling thread, one metric at a time;
/// when it returns false the stream is cancelled and this returns success
/// (metrics the director had already sent are dropped: a streamed metric
/// leaves the director's queue). A broken connection reopens the stream
/// within the retry budget. `ofl_frontend_client_close` from another thread
/// ends it with OFL_CODE_CANCELLED. One stream per experiment: a newer
/// stream on the same experiment (from any client of its owner) ends this
/// one, which then returns success. Errors: NOT_FOUND for an experiment this
/// frontend did not submit.
#[no_mangle]
pub extern "C" fn ofl_frontend_client_stream_metrics(
    client: *const ofl_frontend_client,
    name: *const c_char,
    callback: ofl_director_metric_fn,
    user_data: *mut c_void,
) -> *mut ofl_error {
    call("ofl_frontend_client_stream_metrics", || {
        let callback = callback.ok_or_else(|| Error::invalid_argument("callback is NULL"))?;
        let client = frontend_arc(client)?;
        let name = arg_str(name, "name")?.to_owned();
        let (tx, rx) = std::sync::mpsc::channel::<StreamEvent>();
        let task = runtime::handle().spawn(async move {
            let metrics = tx.clone();
            let result =
                client.stream_metrics(&name, move |m| metrics.send(StreamEvent::Metric(m)).is_ok()).await;
            let _ = tx.send(StreamEvent::Done(result));
        });
        loop {
            match rx.recv() {
                Ok(StreamEvent::Metric(m)) => {
                    let (origin, task_name, metric_name) =
                        (c_string(&m.origin), c_string(&m.task_name), c_string(&m.metric_name));
                    let metric = ofl_director_metric {
                        origin: origin.as_ptr(),
                        task_name: task_name.as_ptr(),
                        metric_name: metric_name.as_ptr(),
                        value: m.value,
                        round: m.round,
                    };
                    if !callback(user_data, &metric) {
                        task.abort();
                        return Ok(());
                    }
                }
                Ok(StreamEvent::Done(result)) => return result,
                Err(_) => return Err(Error::new(ofl_code::Panic, "the library's metric stream task panicked")),
            }
        }
    })
}

/// RemoveExperimentData: forgets a finished, failed, rejected or pending
/// experiment and deletes its archive. Errors: FAILED_PRECONDITION while it
/// is being reviewed or run. An experiment this frontend did not submit (or
/// an unknown one) is left alone and the call succeeds: the director
/// acknowledges it, as OpenFL 1.6's does.
#[no_mangle]
pub extern "C" fn ofl_frontend_client_remove_experiment(
    client: *const ofl_frontend_client,
    name: *const c_char,
) -> *mut ofl_error {
    call("ofl_frontend_client_remove_experiment", || {
        let client = frontend_arc(client)?;
        let name = arg_str(name, "name")?.to_owned();
        let acknowledged = runtime::block_on(async move { client.remove_experiment_data(&name).await })??;
        if !acknowledged {
            return Err(Error::new(ofl_code::FailedPrecondition, "the director did not remove the experiment"));
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// Envoy list
// ---------------------------------------------------------------------------

struct EnvoyEntry {
    info: EnvoyInfo,
    name: CString,
    shard_description: CString,
    sample_shape: Vec<CString>,
    target_shape: Vec<CString>,
    experiment_name: CString,
    cuda_devices: Vec<CudaDeviceStrings>,
}

/// The envoys GetEnvoys reported (every registered envoy, online or not, by
/// name). Owned by the caller; free with `ofl_envoys_free`. Accessors take
/// the envoy's index; strings live as long as the object.
#[allow(non_camel_case_types)]
pub struct ofl_envoys {
    envoys: Vec<EnvoyEntry>,
}

impl ofl_envoys {
    fn new(infos: Vec<EnvoyInfo>) -> Self {
        let envoys = infos
            .into_iter()
            .map(|info| {
                let shard = info.shard_info.clone().unwrap_or_default();
                let node = shard.node_info.clone().unwrap_or_default();
                EnvoyEntry {
                    name: c_string(&node.name),
                    shard_description: c_string(&shard.shard_description),
                    sample_shape: shard.sample_shape.iter().map(|s| c_string(s)).collect(),
                    target_shape: shard.target_shape.iter().map(|s| c_string(s)).collect(),
                    experiment_name: c_string(&info.experiment_name),
                    cuda_devices: node.cuda_devices.into_iter().map(CudaDeviceStrings::new).collect(),
                    info,
                }
            })
            .collect();
        Self { envoys }
    }
}

/// GetEnvoys: every registered envoy, written to `*out` (free it with
/// `ofl_envoys_free`).
#[no_mangle]
pub extern "C" fn ofl_frontend_client_get_envoys(
    client: *const ofl_frontend_client,
    out: *mut *mut ofl_envoys,
) -> *mut ofl_error {
    call("ofl_frontend_client_get_envoys", || {
        check_out(out, "out")?;
        let client = frontend_arc(client)?;
        let infos = runtime::block_on(async move { client.get_envoys().await })??;
        write_out(out, ofl_envoys::new(infos));
        Ok(())
    })
}

fn with_envoy<T: Copy>(envoys: *const ofl_envoys, index: usize, default: T, f: impl FnOnce(&EnvoyEntry) -> T) -> T {
    with_obj(envoys, None, |e| e.envoys.get(index).map(f)).unwrap_or(default)
}

/// Number of envoys. 0 for NULL.
#[no_mangle]
pub extern "C" fn ofl_envoys_len(envoys: *const ofl_envoys) -> usize {
    with_obj(envoys, 0, |e| e.envoys.len())
}

/// Name of envoy `index` (its shard name); NULL when out of range.
#[no_mangle]
pub extern "C" fn ofl_envoys_name(envoys: *const ofl_envoys, index: usize) -> *const c_char {
    with_envoy(envoys, index, std::ptr::null(), |e| e.name.as_ptr())
}

/// Shard description of envoy `index`; NULL when out of range.
#[no_mangle]
pub extern "C" fn ofl_envoys_shard_description(envoys: *const ofl_envoys, index: usize) -> *const c_char {
    with_envoy(envoys, index, std::ptr::null(), |e| e.shard_description.as_ptr())
}

/// Number of samples of envoy `index`'s shard; 0 when out of range.
#[no_mangle]
pub extern "C" fn ofl_envoys_n_samples(envoys: *const ofl_envoys, index: usize) -> u64 {
    with_envoy(envoys, index, 0, |e| e.info.shard_info.as_ref().map_or(0, |s| s.n_samples))
}

/// Number of sample-shape dimensions of envoy `index`; 0 when out of range.
#[no_mangle]
pub extern "C" fn ofl_envoys_sample_shape_len(envoys: *const ofl_envoys, index: usize) -> usize {
    with_envoy(envoys, index, 0, |e| e.sample_shape.len())
}

/// Sample-shape dimension `dim` of envoy `index`; NULL when out of range.
#[no_mangle]
pub extern "C" fn ofl_envoys_sample_shape(envoys: *const ofl_envoys, index: usize, dim: usize) -> *const c_char {
    with_envoy(envoys, index, std::ptr::null(), |e| item_ptr(&e.sample_shape, dim))
}

/// Number of target-shape dimensions of envoy `index`; 0 when out of range.
#[no_mangle]
pub extern "C" fn ofl_envoys_target_shape_len(envoys: *const ofl_envoys, index: usize) -> usize {
    with_envoy(envoys, index, 0, |e| e.target_shape.len())
}

/// Target-shape dimension `dim` of envoy `index`; NULL when out of range.
#[no_mangle]
pub extern "C" fn ofl_envoys_target_shape(envoys: *const ofl_envoys, index: usize, dim: usize) -> *const c_char {
    with_envoy(envoys, index, std::ptr::null(), |e| item_ptr(&e.target_shape, dim))
}

/// Whether envoy `index` sent a health check (or registered) within the
/// last two health-check periods; false when out of range.
#[no_mangle]
pub extern "C" fn ofl_envoys_is_online(envoys: *const ofl_envoys, index: usize) -> bool {
    with_envoy(envoys, index, false, |e| e.info.is_online)
}

/// Whether envoy `index` last reported an experiment running; false when
/// out of range.
#[no_mangle]
pub extern "C" fn ofl_envoys_is_experiment_running(envoys: *const ofl_envoys, index: usize) -> bool {
    with_envoy(envoys, index, false, |e| e.info.is_experiment_running)
}

/// Time of envoy `index`'s last health check (or registration), in
/// milliseconds since the Unix epoch; 0 when unknown or out of range.
#[no_mangle]
pub extern "C" fn ofl_envoys_last_updated_ms(envoys: *const ofl_envoys, index: usize) -> i64 {
    with_envoy(envoys, index, 0, |e| {
        e.info.last_updated.as_ref().map_or(0, |t| t.seconds.saturating_mul(1000) + i64::from(t.nanos) / 1_000_000)
    })
}

/// How long envoy `index` stays online after its last health check (two
/// periods), in milliseconds; 0 when unknown or out of range.
#[no_mangle]
pub extern "C" fn ofl_envoys_valid_duration_ms(envoys: *const ofl_envoys, index: usize) -> i64 {
    with_envoy(envoys, index, 0, |e| {
        e.info.valid_duration.as_ref().map_or(0, |d| d.seconds.saturating_mul(1000) + i64::from(d.nanos) / 1_000_000)
    })
}

/// The in-progress experiment envoy `index` was last given ("" when none);
/// NULL when out of range.
#[no_mangle]
pub extern "C" fn ofl_envoys_experiment_name(envoys: *const ofl_envoys, index: usize) -> *const c_char {
    with_envoy(envoys, index, std::ptr::null(), |e| e.experiment_name.as_ptr())
}

/// Number of CUDA devices envoy `index` reported; 0 when out of range.
#[no_mangle]
pub extern "C" fn ofl_envoys_cuda_devices_len(envoys: *const ofl_envoys, index: usize) -> usize {
    with_envoy(envoys, index, 0, |e| e.cuda_devices.len())
}

/// CUDA device `device` of envoy `index`, written to `*out` (its strings
/// live as long as `envoys`); returns false (writing nothing) when out of
/// range or `out` is NULL.
#[no_mangle]
pub extern "C" fn ofl_envoys_cuda_device(
    envoys: *const ofl_envoys,
    index: usize,
    device: usize,
    out: *mut ofl_cuda_device,
) -> bool {
    value(false, || {
        if out.is_null() {
            return false;
        }
        // The view holds raw pointers only; `with_envoy` needs a Copy value.
        let found = with_envoy(envoys, index, None, |e| e.cuda_devices.get(device).map(|d| d as *const CudaDeviceStrings));
        match found {
            Some(d) => {
                // SAFETY: `d` points into `envoys`, live for this call (documented).
                write_value(out, unsafe { &*d }.view());
                true
            }
            None => false,
        }
    })
}

/// Frees an envoy list. NULL is a no-op.
#[no_mangle]
pub extern "C" fn ofl_envoys_free(envoys: *mut ofl_envoys) {
    value((), || free_boxed(envoys))
}

// ---------------------------------------------------------------------------
// Experiment list
// ---------------------------------------------------------------------------

struct ListEntry {
    item: ExperimentListItem,
    name: CString,
    status: CString,
}

/// The frontend's experiments (GetExperimentsList), in submission order.
/// Owned by the caller; free with `ofl_experiment_list_free`. Strings live
/// as long as the object.
#[allow(non_camel_case_types)]
pub struct ofl_experiment_list {
    items: Vec<ListEntry>,
}

/// GetExperimentsList: the experiments this frontend submitted, written to
/// `*out` (free it with `ofl_experiment_list_free`).
#[no_mangle]
pub extern "C" fn ofl_frontend_client_get_experiments_list(
    client: *const ofl_frontend_client,
    out: *mut *mut ofl_experiment_list,
) -> *mut ofl_error {
    call("ofl_frontend_client_get_experiments_list", || {
        check_out(out, "out")?;
        let client = frontend_arc(client)?;
        let items = runtime::block_on(async move { client.get_experiments_list().await })??;
        let items = items
            .into_iter()
            .map(|item| ListEntry { name: c_string(&item.name), status: c_string(&item.status), item })
            .collect();
        write_out(out, ofl_experiment_list { items });
        Ok(())
    })
}

fn with_item<T: Copy>(list: *const ofl_experiment_list, index: usize, default: T, f: impl FnOnce(&ListEntry) -> T) -> T {
    with_obj(list, None, |l| l.items.get(index).map(f)).unwrap_or(default)
}

/// Number of experiments. 0 for NULL.
#[no_mangle]
pub extern "C" fn ofl_experiment_list_len(list: *const ofl_experiment_list) -> usize {
    with_obj(list, 0, |l| l.items.len())
}

/// Name of experiment `index`; NULL when out of range.
#[no_mangle]
pub extern "C" fn ofl_experiment_list_name(list: *const ofl_experiment_list, index: usize) -> *const c_char {
    with_item(list, index, std::ptr::null(), |i| i.name.as_ptr())
}

/// Status of experiment `index` as the wire carries it ("pending",
/// "in_progress", "finished", "failed", "rejected"); NULL when out of range.
#[no_mangle]
pub extern "C" fn ofl_experiment_list_status(list: *const ofl_experiment_list, index: usize) -> *const c_char {
    with_item(list, index, std::ptr::null(), |i| i.status.as_ptr())
}

/// Number of collaborators of experiment `index`; 0 when out of range.
#[no_mangle]
pub extern "C" fn ofl_experiment_list_collaborators_amount(list: *const ofl_experiment_list, index: usize) -> u32 {
    with_item(list, index, 0, |i| i.item.collaborators_amount)
}

/// Number of tasks of experiment `index` (as the host set them); 0 when out
/// of range.
#[no_mangle]
pub extern "C" fn ofl_experiment_list_tasks_amount(list: *const ofl_experiment_list, index: usize) -> u32 {
    with_item(list, index, 0, |i| i.item.tasks_amount)
}

/// Progress of experiment `index`, 0 to 1 (current round / total rounds; 1
/// when finished); 0 when out of range.
#[no_mangle]
pub extern "C" fn ofl_experiment_list_progress(list: *const ofl_experiment_list, index: usize) -> f32 {
    with_item(list, index, 0.0, |i| i.item.progress)
}

/// Frees an experiment list. NULL is a no-op.
#[no_mangle]
pub extern "C" fn ofl_experiment_list_free(list: *mut ofl_experiment_list) {
    value((), || free_boxed(list))
}

// ---------------------------------------------------------------------------
// Experiment description
// ---------------------------------------------------------------------------

struct CollaboratorEntry {
    progress: f32,
    round: u32,
    name: CString,
    status: CString,
    current_task: CString,
    next_task: CString,
}

/// One experiment in detail (GetExperimentDescription). Owned by the
/// caller; free with `ofl_experiment_description_free`. Strings live as long
/// as the object.
#[allow(non_camel_case_types)]
pub struct ofl_experiment_description {
    progress: f32,
    total_rounds: u32,
    current_round: u32,
    name: CString,
    status: CString,
    collaborators: Vec<CollaboratorEntry>,
    /// (name, description)
    tasks: Vec<(CString, CString)>,
    /// (name, status) of the "best", "last" and "init" models.
    models: Vec<(CString, CString)>,
    /// (name, status) of the logs.
    logs: Vec<(CString, CString)>,
}

impl ofl_experiment_description {
    fn new(d: ExperimentDescription) -> Self {
        let pairs = |v: Vec<crate::proto::DownloadStatus>| -> Vec<(CString, CString)> {
            v.iter().map(|s| (c_string(&s.name), c_string(&s.status))).collect()
        };
        let downloads = d.download_statuses.unwrap_or_default();
        Self {
            progress: d.progress,
            total_rounds: d.total_rounds,
            current_round: d.current_round,
            name: c_string(&d.name),
            status: c_string(&d.status),
            collaborators: d
                .collaborators
                .iter()
                .map(|c| CollaboratorEntry {
                    progress: c.progress,
                    round: c.round,
                    name: c_string(&c.name),
                    status: c_string(&c.status),
                    current_task: c_string(&c.current_task),
                    next_task: c_string(&c.next_task),
                })
                .collect(),
            tasks: d.tasks.iter().map(|t| (c_string(&t.name), c_string(&t.description))).collect(),
            models: pairs(downloads.models),
            logs: pairs(downloads.logs),
        }
    }
}

/// GetExperimentDescription: the experiment `name` in detail, written to
/// `*out` (free it with `ofl_experiment_description_free`). Errors:
/// NOT_FOUND for an experiment this frontend did not submit.
#[no_mangle]
pub extern "C" fn ofl_frontend_client_get_experiment_description(
    client: *const ofl_frontend_client,
    name: *const c_char,
    out: *mut *mut ofl_experiment_description,
) -> *mut ofl_error {
    call("ofl_frontend_client_get_experiment_description", || {
        check_out(out, "out")?;
        let client = frontend_arc(client)?;
        let name = arg_str(name, "name")?.to_owned();
        let description = runtime::block_on(async move { client.get_experiment_description(&name).await })??;
        write_out(out, ofl_experiment_description::new(description));
        Ok(())
    })
}

fn with_collaborator<T: Copy>(
    d: *const ofl_experiment_description,
    index: usize,
    default: T,
    f: impl FnOnce(&CollaboratorEntry) -> T,
) -> T {
    with_obj(d, None, |d| d.collaborators.get(index).map(f)).unwrap_or(default)
}

fn pair_ptr(pairs: &[(CString, CString)], index: usize, second: bool) -> *const c_char {
    pairs.get(index).map_or(std::ptr::null(), |(a, b)| if second { b.as_ptr() } else { a.as_ptr() })
}

/// The experiment's name. NULL gives "".
#[no_mangle]
pub extern "C" fn ofl_experiment_description_name(description: *const ofl_experiment_description) -> *const c_char {
    with_obj(description, c"".as_ptr(), |d| d.name.as_ptr())
}

/// Its status as the wire carries it ("pending", "in_progress", ...). NULL
/// gives "".
#[no_mangle]
pub extern "C" fn ofl_experiment_description_status(description: *const ofl_experiment_description) -> *const c_char {
    with_obj(description, c"".as_ptr(), |d| d.status.as_ptr())
}

/// Its progress, 0 to 1.
#[no_mangle]
pub extern "C" fn ofl_experiment_description_progress(description: *const ofl_experiment_description) -> f32 {
    with_obj(description, 0.0, |d| d.progress)
}

/// Rounds to train, as the host reported.
#[no_mangle]
pub extern "C" fn ofl_experiment_description_total_rounds(description: *const ofl_experiment_description) -> u32 {
    with_obj(description, 0, |d| d.total_rounds)
}

/// The current round, as the host reported.
#[no_mangle]
pub extern "C" fn ofl_experiment_description_current_round(description: *const ofl_experiment_description) -> u32 {
    with_obj(description, 0, |d| d.current_round)
}

/// Number of collaborators.
#[no_mangle]
pub extern "C" fn ofl_experiment_description_collaborators_len(description: *const ofl_experiment_description) -> usize {
    with_obj(description, 0, |d| d.collaborators.len())
}

/// Name of collaborator `index`; NULL when out of range.
#[no_mangle]
pub extern "C" fn ofl_experiment_description_collaborator_name(
    description: *const ofl_experiment_description,
    index: usize,
) -> *const c_char {
    with_collaborator(description, index, std::ptr::null(), |c| c.name.as_ptr())
}

/// Status of collaborator `index` ("pending", "running" once it downloaded
/// the archive, "finished", "failed"); NULL when out of range.
#[no_mangle]
pub extern "C" fn ofl_experiment_description_collaborator_status(
    description: *const ofl_experiment_description,
    index: usize,
) -> *const c_char {
    with_collaborator(description, index, std::ptr::null(), |c| c.status.as_ptr())
}

/// Progress of collaborator `index`, 0 to 1; 0 when out of range.
#[no_mangle]
pub extern "C" fn ofl_experiment_description_collaborator_progress(description: *const ofl_experiment_description, index: usize) -> f32 {
    with_collaborator(description, index, 0.0, |c| c.progress)
}

/// Round of collaborator `index`; 0 when out of range.
#[no_mangle]
pub extern "C" fn ofl_experiment_description_collaborator_round(description: *const ofl_experiment_description, index: usize) -> u32 {
    with_collaborator(description, index, 0, |c| c.round)
}

/// Current task of collaborator `index` ("" when unknown); NULL when out of range.
#[no_mangle]
pub extern "C" fn ofl_experiment_description_collaborator_current_task(
    description: *const ofl_experiment_description,
    index: usize,
) -> *const c_char {
    with_collaborator(description, index, std::ptr::null(), |c| c.current_task.as_ptr())
}

/// Next task of collaborator `index` ("" when unknown); NULL when out of range.
#[no_mangle]
pub extern "C" fn ofl_experiment_description_collaborator_next_task(
    description: *const ofl_experiment_description,
    index: usize,
) -> *const c_char {
    with_collaborator(description, index, std::ptr::null(), |c| c.next_task.as_ptr())
}

/// Number of tasks (as the host set them).
#[no_mangle]
pub extern "C" fn ofl_experiment_description_tasks_len(description: *const ofl_experiment_description) -> usize {
    with_obj(description, 0, |d| d.tasks.len())
}

/// Name of task `index`; NULL when out of range.
#[no_mangle]
pub extern "C" fn ofl_experiment_description_task_name(description: *const ofl_experiment_description, index: usize) -> *const c_char {
    with_obj(description, std::ptr::null(), |d| pair_ptr(&d.tasks, index, false))
}

/// ofl_experiment_description of task `index`; NULL when out of range.
#[no_mangle]
pub extern "C" fn ofl_experiment_description_task_description(
    description: *const ofl_experiment_description,
    index: usize,
) -> *const c_char {
    with_obj(description, std::ptr::null(), |d| pair_ptr(&d.tasks, index, true))
}

/// Number of model download statuses ("best", "last", "init").
#[no_mangle]
pub extern "C" fn ofl_experiment_description_models_len(description: *const ofl_experiment_description) -> usize {
    with_obj(description, 0, |d| d.models.len())
}

/// Name of model `index` ("best", "last" or "init"); NULL when out of range.
#[no_mangle]
pub extern "C" fn ofl_experiment_description_model_name(description: *const ofl_experiment_description, index: usize) -> *const c_char {
    with_obj(description, std::ptr::null(), |d| pair_ptr(&d.models, index, false))
}

/// Download status of model `index` ("ready" or "pending"); NULL when out of range.
#[no_mangle]
pub extern "C" fn ofl_experiment_description_model_status(
    description: *const ofl_experiment_description,
    index: usize,
) -> *const c_char {
    with_obj(description, std::ptr::null(), |d| pair_ptr(&d.models, index, true))
}

/// Number of log download statuses.
#[no_mangle]
pub extern "C" fn ofl_experiment_description_logs_len(description: *const ofl_experiment_description) -> usize {
    with_obj(description, 0, |d| d.logs.len())
}

/// Name of log `index` (e.g. "aggregator"); NULL when out of range.
#[no_mangle]
pub extern "C" fn ofl_experiment_description_log_name(description: *const ofl_experiment_description, index: usize) -> *const c_char {
    with_obj(description, std::ptr::null(), |d| pair_ptr(&d.logs, index, false))
}

/// Download status of log `index`; NULL when out of range.
#[no_mangle]
pub extern "C" fn ofl_experiment_description_log_status(description: *const ofl_experiment_description, index: usize) -> *const c_char {
    with_obj(description, std::ptr::null(), |d| pair_ptr(&d.logs, index, true))
}

/// Frees an experiment description. NULL is a no-op.
#[no_mangle]
pub extern "C" fn ofl_experiment_description_free(description: *mut ofl_experiment_description) {
    value((), || free_boxed(description))
}
