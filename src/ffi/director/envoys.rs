//! `ofl_envoys`: the envoys GetEnvoys reported, read by index.

use std::ffi::{c_char, CString};

use super::frontend_client::{frontend_arc, ofl_frontend_client};
use super::types::{item_ptr, ofl_cuda_device, with_index, write_value, CudaDeviceStrings};
use crate::ffi::boundary::{c_string, check_out, ffi_fn, free_boxed, with_ref, write_out};
use crate::ffi::call_options::{call_options, ofl_call_options};
use crate::proto::director::EnvoyInfo;
use crate::runtime;

struct EnvoyEntry {
    info: EnvoyInfo,
    name: CString,
    shard_description: CString,
    sample_shape: Vec<CString>,
    target_shape: Vec<CString>,
    experiment_name: CString,
    cuda_devices: Vec<CudaDeviceStrings>,
}

impl EnvoyEntry {
    fn new(info: EnvoyInfo) -> Self {
        let shard = info.shard_info.clone().unwrap_or_default();
        let node = shard.node_info.clone().unwrap_or_default();
        Self {
            name: c_string(&node.name),
            shard_description: c_string(&shard.shard_description),
            sample_shape: shard.sample_shape.iter().map(|s| c_string(s)).collect(),
            target_shape: shard.target_shape.iter().map(|s| c_string(s)).collect(),
            experiment_name: c_string(&info.experiment_name),
            cuda_devices: node
                .cuda_devices
                .into_iter()
                .map(CudaDeviceStrings::new)
                .collect(),
            info,
        }
    }
}

/// The envoys GetEnvoys reported (every registered envoy, online or not, by
/// name). Owned by the caller; free with `ofl_envoys_free`. Accessors take
/// the envoy's index; strings live as long as the object.
#[allow(non_camel_case_types)]
pub struct ofl_envoys {
    envoys: Vec<EnvoyEntry>,
}

ffi_fn! {
    /// GetEnvoys: every registered envoy, written to `*out` (free it with
    /// `ofl_envoys_free`).
    fn ofl_frontend_client_get_envoys(
        client: *const ofl_frontend_client,
        call: *const ofl_call_options,
        out: *mut *mut ofl_envoys,
    ) -> *mut ofl_error {
        check_out(out, "out")?;
        let client = frontend_arc(client)?;
        let options = call_options(call)?;
        let infos = runtime::block_on(async move { client.get_envoys_with(&options).await })??;
        write_out(out, ofl_envoys { envoys: infos.into_iter().map(EnvoyEntry::new).collect() });
        Ok(())
    }
}

/// Runs `f` on envoy `index`; `default` for NULL or out of range.
fn with_envoy<T>(
    envoys: *const ofl_envoys,
    index: usize,
    default: T,
    f: impl FnOnce(&EnvoyEntry) -> T,
) -> T {
    with_index(envoys, index, default, |e| &e.envoys, f)
}

fn millis(seconds: i64, nanos: i32) -> i64 {
    seconds.saturating_mul(1000) + i64::from(nanos) / 1_000_000
}

ffi_fn! {
    /// Number of envoys. 0 for NULL.
    fn ofl_envoys_len(envoys: *const ofl_envoys) -> usize {
        with_ref(envoys, 0, |e| e.envoys.len())
    } ?= 0
}

ffi_fn! {
    /// Name of envoy `index` (its shard name); NULL when out of range.
    fn ofl_envoys_name(envoys: *const ofl_envoys, index: usize) -> *const c_char {
        with_envoy(envoys, index, std::ptr::null(), |e| e.name.as_ptr())
    } ?= std::ptr::null()
}

ffi_fn! {
    /// Shard description of envoy `index`; NULL when out of range.
    fn ofl_envoys_shard_description(envoys: *const ofl_envoys, index: usize) -> *const c_char {
        with_envoy(envoys, index, std::ptr::null(), |e| e.shard_description.as_ptr())
    } ?= std::ptr::null()
}

ffi_fn! {
    /// Number of samples of envoy `index`'s shard; 0 when out of range.
    fn ofl_envoys_n_samples(envoys: *const ofl_envoys, index: usize) -> u64 {
        with_envoy(envoys, index, 0, |e| e.info.shard_info.as_ref().map_or(0, |s| s.n_samples))
    } ?= 0
}

ffi_fn! {
    /// Number of sample-shape dimensions of envoy `index`; 0 when out of
    /// range.
    fn ofl_envoys_sample_shape_len(envoys: *const ofl_envoys, index: usize) -> usize {
        with_envoy(envoys, index, 0, |e| e.sample_shape.len())
    } ?= 0
}

ffi_fn! {
    /// Sample-shape dimension `dim` of envoy `index`; NULL when out of range.
    fn ofl_envoys_sample_shape(envoys: *const ofl_envoys, index: usize, dim: usize) -> *const c_char {
        with_envoy(envoys, index, std::ptr::null(), |e| item_ptr(&e.sample_shape, dim))
    } ?= std::ptr::null()
}

ffi_fn! {
    /// Number of target-shape dimensions of envoy `index`; 0 when out of
    /// range.
    fn ofl_envoys_target_shape_len(envoys: *const ofl_envoys, index: usize) -> usize {
        with_envoy(envoys, index, 0, |e| e.target_shape.len())
    } ?= 0
}

ffi_fn! {
    /// Target-shape dimension `dim` of envoy `index`; NULL when out of range.
    fn ofl_envoys_target_shape(envoys: *const ofl_envoys, index: usize, dim: usize) -> *const c_char {
        with_envoy(envoys, index, std::ptr::null(), |e| item_ptr(&e.target_shape, dim))
    } ?= std::ptr::null()
}

ffi_fn! {
    /// Whether envoy `index` sent a health check (or registered) within the
    /// last two health-check periods; false when out of range.
    fn ofl_envoys_is_online(envoys: *const ofl_envoys, index: usize) -> bool {
        with_envoy(envoys, index, false, |e| e.info.is_online)
    } ?= false
}

ffi_fn! {
    /// Whether envoy `index` last reported an experiment running; false when
    /// out of range.
    fn ofl_envoys_is_experiment_running(envoys: *const ofl_envoys, index: usize) -> bool {
        with_envoy(envoys, index, false, |e| e.info.is_experiment_running)
    } ?= false
}

ffi_fn! {
    /// Time of envoy `index`'s last health check (or registration), in
    /// milliseconds since the Unix epoch; 0 when unknown or out of range.
    fn ofl_envoys_last_updated_ms(envoys: *const ofl_envoys, index: usize) -> i64 {
        with_envoy(envoys, index, 0, |e| e.info.last_updated.as_ref().map_or(0, |t| millis(t.seconds, t.nanos)))
    } ?= 0
}

ffi_fn! {
    /// How long envoy `index` stays online after its last health check (two
    /// periods), in milliseconds; 0 when unknown or out of range.
    fn ofl_envoys_valid_duration_ms(envoys: *const ofl_envoys, index: usize) -> i64 {
        with_envoy(envoys, index, 0, |e| e.info.valid_duration.as_ref().map_or(0, |d| millis(d.seconds, d.nanos)))
    } ?= 0
}

ffi_fn! {
    /// The in-progress experiment envoy `index` was last given ("" when
    /// none); NULL when out of range.
    fn ofl_envoys_experiment_name(envoys: *const ofl_envoys, index: usize) -> *const c_char {
        with_envoy(envoys, index, std::ptr::null(), |e| e.experiment_name.as_ptr())
    } ?= std::ptr::null()
}

ffi_fn! {
    /// Number of CUDA devices envoy `index` reported; 0 when out of range.
    fn ofl_envoys_cuda_devices_len(envoys: *const ofl_envoys, index: usize) -> usize {
        with_envoy(envoys, index, 0, |e| e.cuda_devices.len())
    } ?= 0
}

ffi_fn! {
    /// CUDA device `device` of envoy `index`, written to `*out` (its strings
    /// live as long as `envoys`); returns false (writing nothing) when out
    /// of range or `out` is NULL.
    fn ofl_envoys_cuda_device(envoys: *const ofl_envoys, index: usize, device: usize, out: *mut ofl_cuda_device) -> bool {
        if out.is_null() {
            return false;
        }
        match with_envoy(envoys, index, None, |e| e.cuda_devices.get(device).map(CudaDeviceStrings::view)) {
            Some(view) => {
                write_value(out, view);
                true
            }
            None => false,
        }
    } ?= false
}

ffi_fn! {
    /// Frees an envoy list. NULL is a no-op.
    fn ofl_envoys_free(envoys: *mut ofl_envoys) {
        free_boxed(envoys)
    }
}
