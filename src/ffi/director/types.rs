//! Objects shared by the director's C API: owned strings (`ofl_string`,
//! `ofl_string_list`), models as tensor lists (`ofl_tensor_list`, OpenFL's
//! `ModelProto`), experiment statuses, metrics and CUDA device descriptions;
//! and the small index and output helpers the director's accessors share.

use std::ffi::{c_char, CString};

use crate::fedavg::codec::{Model, Tensor};
use crate::director::{ExperimentStatus, DirectorMetric};
use crate::error::{Error, Result};
use crate::ffi::boundary::{
    arg_opt_str, arg_ref, arg_slice, arg_str, c_string, check_out, ffi_fn, free_boxed, with_ref,
    write_out,
};
use crate::ffi::fedavg::model::ofl_model;
use crate::ffi::tensor::{copied_data, named_tensor_from_view, ofl_tensor, ofl_tensor_view};
use crate::proto::director::CudaDeviceInfo;
use crate::proto::ModelProto;

/// Runs `f` on element `index` of the list `items` picks from the object
/// behind `ptr`; `default` for NULL or an index out of range.
pub(crate) fn with_index<O, E, T>(
    ptr: *const O,
    index: usize,
    default: T,
    items: impl FnOnce(&O) -> &[E],
    f: impl FnOnce(&E) -> T,
) -> T {
    with_ref(ptr, None, |o| items(o).get(index).map(f)).unwrap_or(default)
}

/// The C string at `index` of `items`, or NULL when out of range.
pub(crate) fn item_ptr(items: &[CString], index: usize) -> *const c_char {
    items.get(index).map_or(std::ptr::null(), |s| s.as_ptr())
}

/// Writes `v` to `*out` when `out` is not NULL (an optional output).
pub(crate) fn write_opt<T>(out: *mut T, v: T) {
    if !out.is_null() {
        // SAFETY: a non-NULL optional output points to writable storage for
        // one `T` (documented); `write` does not read the old value.
        unsafe { out.write(v) };
    }
}

/// Writes `v` to `*out`, which was checked non-NULL by [`check_value_out`].
pub(crate) fn write_value<T>(out: *mut T, v: T) {
    debug_assert!(!out.is_null());
    // SAFETY: `out` was checked non-NULL by the caller and points to
    // writable storage for one `T` (documented); `write` does not read the
    // possibly uninitialised old value.
    unsafe { out.write(v) };
}

/// Checks a required output pointer to a plain value.
pub(crate) fn check_value_out<T>(out: *mut T, name: &str) -> Result<()> {
    if out.is_null() {
        Err(Error::invalid_argument(format!("{name} is NULL")))
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Strings
// ---------------------------------------------------------------------------

/// A string the library returns (e.g. the experiment name WaitExperiment
/// hands an envoy). Owned by the caller; free with `ofl_string_free`.
#[allow(non_camel_case_types)]
pub struct ofl_string {
    value: CString,
}

impl ofl_string {
    /// Wraps a string (cut at an interior NUL, which C could not see anyway).
    pub fn new(s: &str) -> Self {
        Self { value: c_string(s) }
    }
}

ffi_fn! {
    /// The string: NUL-terminated UTF-8, valid until `ofl_string_free`. NULL
    /// gives "".
    fn ofl_string_get(string: *const ofl_string) -> *const c_char {
        with_ref(string, c"".as_ptr(), |s| s.value.as_ptr())
    } ?= c"".as_ptr()
}

ffi_fn! {
    /// Its length in bytes, without the terminating NUL. 0 for NULL.
    fn ofl_string_len(string: *const ofl_string) -> usize {
        with_ref(string, 0, |s| s.value.as_bytes().len())
    } ?= 0
}

ffi_fn! {
    /// Frees a string. NULL is a no-op.
    fn ofl_string_free(string: *mut ofl_string) {
        free_boxed(string)
    }
}

/// A list of strings the library returns (e.g. a shape as OpenFL writes it:
/// `["28", "28"]`). Owned by the caller; free with `ofl_string_list_free`.
#[allow(non_camel_case_types)]
pub struct ofl_string_list {
    items: Vec<CString>,
}

impl ofl_string_list {
    /// Wraps strings.
    pub fn new<S: AsRef<str>>(items: &[S]) -> Self {
        Self {
            items: items.iter().map(|s| c_string(s.as_ref())).collect(),
        }
    }
}

ffi_fn! {
    /// Number of strings. 0 for NULL.
    fn ofl_string_list_len(list: *const ofl_string_list) -> usize {
        with_ref(list, 0, |l| l.items.len())
    } ?= 0
}

ffi_fn! {
    /// String `index` (NUL-terminated UTF-8, valid until
    /// `ofl_string_list_free`); NULL when out of range.
    fn ofl_string_list_get(list: *const ofl_string_list, index: usize) -> *const c_char {
        with_ref(list, std::ptr::null(), |l| item_ptr(&l.items, index))
    } ?= std::ptr::null()
}

ffi_fn! {
    /// Frees a string list. NULL is a no-op.
    fn ofl_string_list_free(list: *mut ofl_string_list) {
        free_boxed(list)
    }
}

// ---------------------------------------------------------------------------
// Tensor lists (models as they travel)
// ---------------------------------------------------------------------------

/// A model as it travels (OpenFL's `ModelProto`): a list of tensors in the
/// order they were sent, each read with the `ofl_tensor_*` accessors (their
/// data 64-byte aligned). For a
/// float32 view by name (OpenFL's uncompressed pipeline), convert it with
/// `ofl_tensor_list_to_model`.
#[allow(non_camel_case_types)]
pub struct ofl_tensor_list {
    tensors: Vec<ofl_tensor>,
}

impl ofl_tensor_list {
    /// Wraps a received model (no copy of tensor data).
    pub fn new(model: ModelProto) -> Self {
        Self {
            tensors: model.tensors.into_iter().map(ofl_tensor::new).collect(),
        }
    }
}

/// A model built from `len` tensor views, their data copied.
pub(crate) fn model_from_views(
    views: *const ofl_tensor_view,
    len: usize,
    name: &str,
) -> Result<ModelProto> {
    let views = arg_slice(views, len, name)?;
    let tensors = views
        .iter()
        .map(|v| named_tensor_from_view(v, copied_data(v)?))
        .collect::<Result<Vec<_>>>()?;
    Ok(ModelProto { tensors })
}

ffi_fn! {
    /// Number of tensors. 0 for NULL.
    fn ofl_tensor_list_len(list: *const ofl_tensor_list) -> usize {
        with_ref(list, 0, |l| l.tensors.len())
    } ?= 0
}

ffi_fn! {
    /// Tensor `index`, borrowed: valid until the list is freed (or, for a
    /// list passed to a hook, until the hook returns); do not free it. NULL
    /// when out of range. Its data starts on a 64-byte boundary (see
    /// `ofl_tensor_data`).
    fn ofl_tensor_list_get(list: *const ofl_tensor_list, index: usize) -> *const ofl_tensor {
        with_index(list, index, std::ptr::null(), |l| &l.tensors, |t| t as *const ofl_tensor)
    } ?= std::ptr::null()
}

ffi_fn! {
    /// Decodes the list as OpenFL's uncompressed float32 pipeline encodes a
    /// model (values little-endian float32, the shape in the `int_list` of
    /// the one transformer-metadata entry; no entry: one dimension) into a
    /// new `ofl_model` written to `*out` (free it with `ofl_model_free`).
    /// Errors: INVALID_ARGUMENT naming a tensor that is not encoded so, or a
    /// name that occurs twice.
    fn ofl_tensor_list_to_model(list: *const ofl_tensor_list, out: *mut *mut ofl_model) -> *mut ofl_error {
        check_out(out, "out")?;
        let list = arg_ref(list, "list")?;
        let mut model = Model::new();
        for t in &list.tensors {
            let named = t.tensor();
            let tensor = Tensor::from_named_tensor(named)?;
            if model.insert(named.name.clone(), tensor).is_some() {
                return Err(Error::invalid_argument(format!("tensor name {:?} occurs twice", named.name)));
            }
        }
        write_out(out, ofl_model::new(model)?);
        Ok(())
    }
}

ffi_fn! {
    /// Frees a tensor list and its tensors. NULL is a no-op.
    fn ofl_tensor_list_free(list: *mut ofl_tensor_list) {
        free_boxed(list)
    }
}

// ---------------------------------------------------------------------------
// Experiment status, metrics, CUDA devices
// ---------------------------------------------------------------------------

/// Where an experiment is in its life cycle (OpenFL 1.6's `Status`).
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ofl_experiment_status {
    /// Submitted, waiting for its turn and for the review ("pending").
    Pending = 0,
    /// Approved and started: its envoys receive it ("in_progress").
    InProgress = 1,
    /// The host reported it finished ("finished").
    Finished = 2,
    /// An envoy or the host reported a failure ("failed").
    Failed = 3,
    /// The review hook rejected it; its archive is deleted ("rejected").
    Rejected = 4,
}

impl From<ExperimentStatus> for ofl_experiment_status {
    fn from(status: ExperimentStatus) -> Self {
        match status {
            ExperimentStatus::Pending => Self::Pending,
            ExperimentStatus::InProgress => Self::InProgress,
            ExperimentStatus::Finished => Self::Finished,
            ExperimentStatus::Failed => Self::Failed,
            ExperimentStatus::Rejected => Self::Rejected,
        }
    }
}

ffi_fn! {
    /// The wire name of an `ofl_experiment_status` value ("pending",
    /// "in_progress", "finished", "failed", "rejected"; static,
    /// NUL-terminated); values that are no status give "unknown".
    fn ofl_experiment_status_name(status: i32) -> *const c_char {
        match status {
            0 => c"pending".as_ptr(),
            1 => c"in_progress".as_ptr(),
            2 => c"finished".as_ptr(),
            3 => c"failed".as_ptr(),
            4 => c"rejected".as_ptr(),
            _ => c"unknown".as_ptr(),
        }
    } ?= c"unknown".as_ptr()
}

/// One metric of an experiment, as GetMetricStream carries it (OpenFL's
/// metric record). Given to the library by `ofl_director_server_push_metric`
/// (strings borrowed for the call) and handed to a frontend's metric
/// callback (strings valid during the callback).
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct ofl_director_metric {
    /// Who computed it: a collaborator name, or the aggregator (OpenFL: its uuid).
    pub origin: *const c_char,
    /// The task that produced it (e.g. "aggregated_model_validation").
    pub task_name: *const c_char,
    /// The metric's name (e.g. "accuracy").
    pub metric_name: *const c_char,
    /// Its value (float32 on the wire).
    pub value: f32,
    /// The round it belongs to.
    pub round: u32,
}

/// The metric described by a C view (strings required).
pub(crate) fn metric_from_c(metric: &ofl_director_metric) -> Result<DirectorMetric> {
    Ok(DirectorMetric {
        origin: arg_str(metric.origin, "metric.origin")?.to_owned(),
        task_name: arg_str(metric.task_name, "metric.task_name")?.to_owned(),
        metric_name: arg_str(metric.metric_name, "metric.metric_name")?.to_owned(),
        value: metric.value,
        round: metric.round,
    })
}

/// One CUDA device of an envoy's node (OpenFL's `CudaDeviceInfo`). As an
/// input (`ofl_envoy_client_send_health_check`) its strings are borrowed for
/// the call and may be NULL for ""; as an output (`ofl_envoys_cuda_device`)
/// they are owned by the object read and never NULL.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct ofl_cuda_device {
    /// Device index.
    pub index: u64,
    /// Total memory, bytes.
    pub memory_total: u64,
    /// Memory in use, bytes.
    pub memory_utilized: u64,
    /// Utilization as the envoy reports it (e.g. "35%").
    pub device_utilization: *const c_char,
    /// CUDA driver version.
    pub cuda_driver_version: *const c_char,
    /// CUDA version.
    pub cuda_version: *const c_char,
    /// Device name.
    pub name: *const c_char,
}

/// The device described by a C view.
pub(crate) fn cuda_device_from_c(d: &ofl_cuda_device, i: usize) -> Result<CudaDeviceInfo> {
    let s = |ptr: *const c_char, field: &str| -> Result<String> {
        Ok(arg_opt_str(ptr, &format!("devices[{i}].{field}"))?
            .unwrap_or("")
            .to_owned())
    };
    Ok(CudaDeviceInfo {
        index: d.index,
        memory_total: d.memory_total,
        memory_utilized: d.memory_utilized,
        device_utilization: s(d.device_utilization, "device_utilization")?,
        cuda_driver_version: s(d.cuda_driver_version, "cuda_driver_version")?,
        cuda_version: s(d.cuda_version, "cuda_version")?,
        name: s(d.name, "name")?,
    })
}

/// `len` devices described by C views (NULL when `len` is 0).
pub(crate) fn devices_from_c(
    devices: *const ofl_cuda_device,
    len: usize,
) -> Result<Vec<CudaDeviceInfo>> {
    arg_slice(devices, len, "cuda_devices")?
        .iter()
        .enumerate()
        .map(|(i, d)| cuda_device_from_c(d, i))
        .collect()
}

/// A received device with C strings, kept by the object that hands it out.
pub(crate) struct CudaDeviceStrings {
    info: CudaDeviceInfo,
    device_utilization: CString,
    cuda_driver_version: CString,
    cuda_version: CString,
    name: CString,
}

impl CudaDeviceStrings {
    pub(crate) fn new(info: CudaDeviceInfo) -> Self {
        Self {
            device_utilization: c_string(&info.device_utilization),
            cuda_driver_version: c_string(&info.cuda_driver_version),
            cuda_version: c_string(&info.cuda_version),
            name: c_string(&info.name),
            info,
        }
    }

    pub(crate) fn view(&self) -> ofl_cuda_device {
        ofl_cuda_device {
            index: self.info.index,
            memory_total: self.info.memory_total,
            memory_utilized: self.info.memory_utilized,
            device_utilization: self.device_utilization.as_ptr(),
            cuda_driver_version: self.cuda_driver_version.as_ptr(),
            cuda_version: self.cuda_version.as_ptr(),
            name: self.name.as_ptr(),
        }
    }
}

