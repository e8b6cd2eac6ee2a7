//! `ofl_envoy_client` (OpenFL's `ShardDirectorClient`): what an envoy
//! calls. Every call blocks the calling thread while the work runs on the
//! library's runtime threads; `ofl_envoy_client_close` from another thread
//! cancels it (OFL_CODE_CANCELLED).

use std::ffi::c_char;
use std::path::Path;
use std::sync::Arc;

use super::client_options::ofl_director_client_options;
use super::types::{
    check_value_out, devices_from_c, ofl_cuda_device, ofl_string, write_opt, write_value,
};
use crate::director::{EnvoyClient, EnvoyClientOptions};
use crate::error::{Error, Result};
use crate::ffi::boundary::{
    arg_opt_str, arg_ref, arg_str, check_out, ffi_fn, free_boxed, with_ref, write_out,
};
use crate::ffi::call_options::{call_options, ofl_call_options};
use crate::ffi::tensor::string_list;
use crate::proto::director::{NodeInfo, ShardInfo};
use crate::runtime;

/// An envoy's connection to the director (OpenFL's `ShardDirectorClient`).
/// Thread-safe: calls may be made from several threads at once (e.g. health
/// checks while another thread waits for an experiment).
#[allow(non_camel_case_types)]
pub struct ofl_envoy_client {
    pub(crate) inner: Arc<EnvoyClient>,
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

ffi_fn! {
    /// A new envoy client for the shard `shard_name` (OpenFL's `shard_name`:
    /// its collaborator name in experiments; under mTLS the certificate CN
    /// must be it), written to `*out`. Certificates are read and checked
    /// now; the connection is made on the first call. `options` may be freed
    /// after. Errors: INVALID_ARGUMENT (also when TLS is on with nothing
    /// attached, naming `ofl_director_client_options_set_tls`), TLS.
    fn ofl_envoy_client_new(
        options: *const ofl_director_client_options,
        shard_name: *const c_char,
        out: *mut *mut ofl_envoy_client,
    ) -> *mut ofl_error {
        check_out(out, "out")?;
        let options = arg_ref(options, "options")?;
        let shard_name = arg_str(shard_name, "shard_name")?;
        if shard_name.is_empty() {
            return Err(Error::invalid_argument("shard_name is empty"));
        }
        let settings = options.settings()?;
        crate::ffi::logging::init_default();
        let _ = runtime::handle();
        let config = EnvoyClientOptions {
            connect: settings.connect,
            shard_name: shard_name.to_owned(),
            retry: settings.retry,
            max_message_size: settings.max_message_size,
            max_archive_size: options.max_archive_size,
        };
        write_out(out, ofl_envoy_client { inner: Arc::new(EnvoyClient::new(config)?) });
        Ok(())
    }
}

ffi_fn! {
    /// Cancels calls in progress on other threads (a WaitExperiment long
    /// poll too: they return OFL_CODE_CANCELLED) and refuses new ones. Safe
    /// from any thread; call it, join the threads that use the client, then
    /// free it.
    fn ofl_envoy_client_close(client: *const ofl_envoy_client) -> *mut ofl_error {
        arg_ref(client, "client")?.inner.close();
        Ok(())
    }
}

ffi_fn! {
    /// Closes (as `ofl_envoy_client_close`) and frees the client. NULL is a
    /// no-op.
    fn ofl_envoy_client_free(client: *mut ofl_envoy_client) {
        with_ref(client, (), |c| c.inner.close());
        free_boxed(client)
    }
}

fn envoy_arc(client: *const ofl_envoy_client) -> Result<Arc<EnvoyClient>> {
    Ok(Arc::clone(&arg_ref(client, "client")?.inner))
}

fn shard_from_c(client: &EnvoyClient, info: &ofl_shard_info) -> Result<ShardInfo> {
    Ok(ShardInfo {
        node_info: Some(NodeInfo {
            name: client.shard_name().to_owned(),
            cuda_devices: devices_from_c(info.cuda_devices, info.cuda_devices_len)?,
        }),
        shard_description: arg_opt_str(info.shard_description, "shard_description")?
            .unwrap_or("")
            .to_owned(),
        n_samples: info.n_samples,
        sample_shape: string_list(info.sample_shape, info.sample_shape_len, "sample_shape")?,
        target_shape: string_list(info.target_shape, info.target_shape_len, "target_shape")?,
    })
}

ffi_fn! {
    /// UpdateShardInfo: registers the shard (under the client's shard name).
    /// Writes to `*accepted` whether the director accepted it (its sample
    /// and target shapes are the director's).
    fn ofl_envoy_client_update_shard_info(
        client: *const ofl_envoy_client,
        shard_info: *const ofl_shard_info,
        call: *const ofl_call_options,
        accepted: *mut bool,
    ) -> *mut ofl_error {
        check_value_out(accepted, "accepted")?;
        let client = envoy_arc(client)?;
        let shard = shard_from_c(&client, arg_ref(shard_info, "shard_info")?)?;
        let options = call_options(call)?;
        let ok = runtime::block_on(async move { client.report_shard_info_with(shard, &options).await })??;
        write_value(accepted, ok);
        Ok(())
    }
}

ffi_fn! {
    /// WaitExperiment: blocks until the director has an experiment for this
    /// envoy, then writes its name to `*out` (free it with
    /// `ofl_string_free`). Asking again while that experiment runs returns
    /// it again (a reconnect). `ofl_envoy_client_close` from another thread
    /// cancels the wait, as does `call`'s cancel token; `call`'s time limit
    /// bounds it (OFL_CODE_DEADLINE_EXCEEDED). `call` may be NULL.
    fn ofl_envoy_client_wait_experiment(
        client: *const ofl_envoy_client,
        call: *const ofl_call_options,
        out: *mut *mut ofl_string,
    ) -> *mut ofl_error {
        check_out(out, "out")?;
        let client = envoy_arc(client)?;
        let options = call_options(call)?;
        let name = runtime::block_on(async move { client.wait_experiment_with(&options).await })??;
        write_out(out, ofl_string::new(&name));
        Ok(())
    }
}

ffi_fn! {
    /// GetExperimentData: downloads the archive of `experiment_name` into
    /// the file `dest_path` (written as `dest_path` + ".part", renamed when
    /// complete; an existing file is replaced). Writes its size to `*size`
    /// when `size` is not NULL. Errors: PERMISSION_DENIED when this envoy is
    /// not one of its collaborators, FAILED_PRECONDITION when it is not in
    /// progress, RESOURCE_EXHAUSTED beyond the maximum archive size, IO for
    /// the file. `call`: per-call settings (NULL for the client's
    /// defaults); its progress counts the archive bytes received (total
    /// unknown, 0, until the last report).
    fn ofl_envoy_client_get_experiment_data(
        client: *const ofl_envoy_client,
        experiment_name: *const c_char,
        dest_path: *const c_char,
        call: *const ofl_call_options,
        size: *mut u64,
    ) -> *mut ofl_error {
        let client = envoy_arc(client)?;
        let name = arg_str(experiment_name, "experiment_name")?.to_owned();
        let dest = arg_str(dest_path, "dest_path")?;
        if dest.is_empty() {
            return Err(Error::invalid_argument("dest_path is empty"));
        }
        let dest = Path::new(dest).to_path_buf();
        let options = call_options(call)?;
        let total =
            runtime::block_on(async move { client.get_experiment_data_with(&name, &dest, &options).await })??;
        write_opt(size, total);
        Ok(())
    }
}

ffi_fn! {
    /// UpdateEnvoyStatus: a health check, with whether an experiment runs
    /// and `cuda_devices_len` devices (may be NULL when 0; they replace the
    /// reported ones index by index). Writes the director's health-check
    /// period in milliseconds to `*period_ms` when not NULL: send the next
    /// check within it. Errors: NOT_FOUND when the director does not know
    /// this envoy (report the shard again).
    fn ofl_envoy_client_send_health_check(
        client: *const ofl_envoy_client,
        is_experiment_running: bool,
        cuda_devices: *const ofl_cuda_device,
        cuda_devices_len: usize,
        call: *const ofl_call_options,
        period_ms: *mut u64,
    ) -> *mut ofl_error {
        let client = envoy_arc(client)?;
        let devices = devices_from_c(cuda_devices, cuda_devices_len)?;
        let options = call_options(call)?;
        let period = runtime::block_on(async move {
            client.send_health_check_with(is_experiment_running, devices, &options).await
        })??;
        write_opt(period_ms, u64::try_from(period.as_millis()).unwrap_or(u64::MAX));
        Ok(())
    }
}

ffi_fn! {
    /// SetExperimentFailed: tells the director this envoy failed
    /// `experiment_name` with `error_code` and `description` (may be NULL).
    /// Errors: PERMISSION_DENIED when this envoy is not its collaborator
    /// (or, without TLS, when a `client_id` was sent), FAILED_PRECONDITION
    /// when it is not in progress, NOT_FOUND.
    fn ofl_envoy_client_set_experiment_failed(
        client: *const ofl_envoy_client,
        experiment_name: *const c_char,
        error_code: u32,
        description: *const c_char,
        call: *const ofl_call_options,
    ) -> *mut ofl_error {
        let client = envoy_arc(client)?;
        let name = arg_str(experiment_name, "experiment_name")?.to_owned();
        let description = arg_opt_str(description, "description")?.unwrap_or("").to_owned();
        let options = call_options(call)?;
        runtime::block_on(async move {
            client.set_experiment_failed_with(&name, error_code, &description, &options).await
        })?
    }
}
