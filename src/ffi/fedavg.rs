//! The built-in federated-averaging aggregator in C: `ofl_fedavg_options`
//! (setters), `ofl_fedavg` (the logic, shared with the server started by
//! `ofl_aggregator_server_start_fedavg`), its metrics (`ofl_metric`) and its
//! models (`ofl_model`).
//!
//! The round semantics are those of [`crate::fedavg`]; the
//! header repeats what a C collaborator must send.

use std::ffi::{c_char, CString};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::aggregator::{server::{ofl_aggregator_server, start_with_logic}, server_options::ofl_aggregator_server_options};
use super::boundary::{
    arg_mut, arg_opt_str, arg_ref, arg_slice, arg_str, c_string, call, check_out, free_boxed, value, write_out,
};
use super::error::ofl_error;
use crate::aggregator::AggregatorLogic;
use crate::fedavg::{FedAvg, FedAvgOptions, FedAvgMetric, Model, Tensor};
use crate::error::{ofl_code, Error, Result};
use crate::proto::aggregator::Task;

/// Settings for `ofl_fedavg_new` (OpenFL's aggregator settings in a plan):
/// identity, collaborators, rounds, tasks, the initial model. Defaults: 10
/// rounds, OpenFL's three default tasks, sleep time 10 s, tensor wait 30 s,
/// the best model chosen by the aggregated-model validation's first metric.
/// Not thread-safe: configure from one thread.
#[allow(non_camel_case_types)]
pub struct ofl_fedavg_options {
    config: FedAvgOptions,
    /// Whether `ofl_fedavg_options_add_task` was called (the first call
    /// replaces the default tasks).
    custom_tasks: bool,
}

/// The FedAvg aggregation logic (see `ofl_fedavg_new`). Thread-safe: read
/// its round, metrics and models from any thread, also while a server runs
/// it. A server started with it keeps its own reference: the handle may be
/// freed before the server.
#[allow(non_camel_case_types)]
pub struct ofl_fedavg {
    inner: Arc<FedAvg>,
    /// Metrics handed to C so far, with their strings; only grows, so the
    /// strings stay where they are until `ofl_fedavg_free`.
    metrics: Mutex<Vec<CachedMetric>>,
}

struct CachedMetric {
    record: FedAvgMetric,
    origin: CString,
    task: CString,
    name: CString,
}

impl CachedMetric {
    fn new(record: FedAvgMetric) -> Self {
        let (origin, task, name) = (c_string(&record.origin), c_string(&record.task), c_string(&record.name));
        Self { record, origin, task, name }
    }
}

/// One metric (OpenFL's metric record): reported by a collaborator, or the
/// `data_size`-weighted average of a round computed by the aggregator.
/// Strings are owned by the `ofl_fedavg` and valid until `ofl_fedavg_free`.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct ofl_metric {
    /// The round the metric belongs to (0 = the initial model's round).
    pub round: i32,
    /// The collaborator that reported it, or "aggregator" for an average.
    pub origin: *const c_char,
    /// True for the aggregator's weighted average over all collaborators.
    pub aggregated: bool,
    /// The task that produced it (e.g. "aggregated_model_validation").
    pub task: *const c_char,
    /// The metric's tensor name (e.g. "accuracy").
    pub name: *const c_char,
    /// Its value.
    pub value: f64,
}

/// A model: float32 tensors by name (in name order). Owned by the caller;
/// free with `ofl_model_free`. Pointers returned by its accessors are valid
/// until then.
#[allow(non_camel_case_types)]
pub struct ofl_model {
    tensors: Vec<ModelTensor>,
}

struct ModelTensor {
    name: CString,
    tensor: Tensor,
}

impl ofl_model {
    pub(crate) fn new(model: Model) -> Self {
        let tensors = model.into_iter().map(|(name, tensor)| ModelTensor { name: c_string(&name), tensor }).collect();
        Self { tensors }
    }
}

fn options_mut<'a>(options: *mut ofl_fedavg_options) -> Result<&'a mut ofl_fedavg_options> {
    arg_mut(options, "options")
}

fn non_empty<'a>(ptr: *const c_char, name: &str) -> Result<&'a str> {
    let s = arg_str(ptr, name)?;
    if s.is_empty() {
        return Err(Error::invalid_argument(format!("{name} is empty")));
    }
    Ok(s)
}

/// New FedAvg options with the defaults above, no collaborators and no
/// model, written to `*out`.
#[no_mangle]
pub extern "C" fn ofl_fedavg_options_new(out: *mut *mut ofl_fedavg_options) -> *mut ofl_error {
    call("ofl_fedavg_options_new", || {
        check_out(out, "out")?;
        write_out(out, ofl_fedavg_options { config: FedAvgOptions::default(), custom_tasks: false });
        Ok(())
    })
}

/// Frees FedAvg options. NULL is a no-op.
#[no_mangle]
pub extern "C" fn ofl_fedavg_options_free(options: *mut ofl_fedavg_options) {
    value((), || free_boxed(options))
}

/// The aggregator's identity (OpenFL's `Aggregator.uuid`, `federation_uuid`,
/// `single_col_cert_common_name`; the last may be NULL for none). A server
/// started with `ofl_aggregator_server_start_fedavg` checks requests against
/// this identity. Default: empty uuids.
#[no_mangle]
pub extern "C" fn ofl_fedavg_options_set_federation(
    options: *mut ofl_fedavg_options,
    aggregator_uuid: *const c_char,
    federation_uuid: *const c_char,
    single_col_cert_common_name: *const c_char,
) -> *mut ofl_error {
    call("ofl_fedavg_options_set_federation", || {
        let aggregator_uuid = arg_str(aggregator_uuid, "aggregator_uuid")?;
        let federation_uuid = arg_str(federation_uuid, "federation_uuid")?;
        let single_cn = arg_opt_str(single_col_cert_common_name, "single_col_cert_common_name")?.unwrap_or("");
        let config = &mut options_mut(options)?.config;
        config.aggregator_uuid = aggregator_uuid.to_owned();
        config.federation_uuid = federation_uuid.to_owned();
        config.single_col_cert_common_name = single_cn.to_owned();
        Ok(())
    })
}

/// Adds a collaborator (OpenFL's `authorized_cols`): authorized to call, and
/// every round waits for its results of every task. Adding a name twice
/// adds it once. At least one is required.
#[no_mangle]
pub extern "C" fn ofl_fedavg_options_add_collaborator(
    options: *mut ofl_fedavg_options,
    collaborator_name: *const c_char,
) -> *mut ofl_error {
    call("ofl_fedavg_options_add_collaborator", || {
        let name = non_empty(collaborator_name, "collaborator_name")?;
        let collaborators = &mut options_mut(options)?.config.collaborators;
        if !collaborators.iter().any(|c| c == name) {
            collaborators.push(name.to_owned());
        }
        Ok(())
    })
}

/// Rounds to train (OpenFL's `rounds_to_train`), at least 1; default 10.
#[no_mangle]
pub extern "C" fn ofl_fedavg_options_set_rounds_to_train(
    options: *mut ofl_fedavg_options,
    rounds: i32,
) -> *mut ofl_error {
    call("ofl_fedavg_options_set_rounds_to_train", || {
        if rounds < 1 {
            return Err(Error::invalid_argument(format!("rounds must be at least 1, got {rounds}")));
        }
        options_mut(options)?.config.rounds_to_train = rounds;
        Ok(())
    })
}

/// Appends a task that every collaborator runs every round, in the order
/// added (a task of OpenFL's plan: `name`, `function_name`, `task_type`
/// "train" or "validate", `apply_local`). The first call replaces the
/// default tasks: `aggregated_model_validation` (validate_task, validate),
/// `train` (train_task, train), `locally_tuned_model_validation`
/// (validate_task, validate, apply_local). Names must be unique
/// (INVALID_ARGUMENT otherwise).
#[no_mangle]
pub extern "C" fn ofl_fedavg_options_add_task(
    options: *mut ofl_fedavg_options,
    name: *const c_char,
    function_name: *const c_char,
    task_type: *const c_char,
    apply_local: bool,
) -> *mut ofl_error {
    call("ofl_fedavg_options_add_task", || {
        let task = Task {
            name: non_empty(name, "name")?.to_owned(),
            function_name: arg_str(function_name, "function_name")?.to_owned(),
            task_type: arg_str(task_type, "task_type")?.to_owned(),
            apply_local,
        };
        let options = options_mut(options)?;
        if !options.custom_tasks {
            options.config.tasks.clear();
            options.custom_tasks = true;
        }
        if options.config.tasks.iter().any(|t| t.name == task.name) {
            return Err(Error::invalid_argument(format!("task {:?} was already added", task.name)));
        }
        options.config.tasks.push(task);
        Ok(())
    })
}

/// Adds a tensor of the initial (round-0) model: `shape_len` dimensions at
/// `shape` (0 for a scalar; `shape` may then be NULL) and `values_len`
/// float32 values in C (row-major) order, which must be the product of the
/// dimensions (1 for a scalar). Both arrays are copied. Each dimension must
/// fit an int32 (the wire type). A name may be added once; at least one
/// tensor is required.
#[no_mangle]
pub extern "C" fn ofl_fedavg_options_add_model_tensor(
    options: *mut ofl_fedavg_options,
    name: *const c_char,
    shape: *const usize,
    shape_len: usize,
    values: *const f32,
    values_len: usize,
) -> *mut ofl_error {
    call("ofl_fedavg_options_add_model_tensor", || {
        let name = non_empty(name, "name")?;
        let shape = arg_slice(shape, shape_len, "shape")?.to_vec();
        let values = arg_slice(values, values_len, "values")?.to_vec();
        let tensor = Tensor::new(shape, values)
            .map_err(|e| Error::invalid_argument(format!("model tensor {name:?} is invalid ({})", e.message())))?;
        let model = &mut options_mut(options)?.config.initial_model;
        if model.contains_key(name) {
            return Err(Error::invalid_argument(format!("model tensor {name:?} was already added")));
        }
        model.insert(name.to_owned(), tensor);
        Ok(())
    })
}

/// The metric that picks the best model: a metric reported by the first
/// "validate" task without `apply_local` (the aggregated-model validation);
/// higher is better. NULL restores the default: that task's first metric by
/// name.
#[no_mangle]
pub extern "C" fn ofl_fedavg_options_set_best_model_metric(
    options: *mut ofl_fedavg_options,
    metric_name: *const c_char,
) -> *mut ofl_error {
    call("ofl_fedavg_options_set_best_model_metric", || {
        let metric = match arg_opt_str(metric_name, "metric_name")? {
            Some("") => return Err(Error::invalid_argument("metric_name is empty (pass NULL for the default)")),
            m => m.map(str::to_owned),
        };
        options_mut(options)?.config.best_model_metric = metric;
        Ok(())
    })
}

/// How long a GetAggregatedTensor call for a later round's model (not ready
/// yet) waits before FAILED_PRECONDITION; default 30 000 ms.
#[no_mangle]
pub extern "C" fn ofl_fedavg_options_set_tensor_wait_ms(
    options: *mut ofl_fedavg_options,
    wait_ms: u64,
) -> *mut ofl_error {
    call("ofl_fedavg_options_set_tensor_wait_ms", || {
        options_mut(options)?.config.tensor_wait = Duration::from_millis(wait_ms);
        Ok(())
    })
}

/// Seconds a collaborator that has finished the round is told to sleep
/// before asking again (GetTasks' `sleep_time`), at least 1; default 10
/// (OpenFL 1.6 always sends 10).
#[no_mangle]
pub extern "C" fn ofl_fedavg_options_set_sleep_time(options: *mut ofl_fedavg_options, seconds: i32) -> *mut ofl_error {
    call("ofl_fedavg_options_set_sleep_time", || {
        if seconds < 1 {
            return Err(Error::invalid_argument(format!("sleep time must be at least 1 second, got {seconds}")));
        }
        options_mut(options)?.config.sleep_time = seconds;
        Ok(())
    })
}

/// A directory where the aggregator keeps what it needs to resume after a
/// crash (created if missing); NULL (the default) keeps nothing. Every
/// upload is saved there (written to a temporary file, flushed, renamed,
/// the directory flushed) before it is acknowledged, the new model when a
/// round ends, and each first quit answer before it is sent. `ofl_fedavg_new`
/// with the same directory and the same identity, collaborators, tasks and
/// rounds resumes the saved round: no acknowledged upload is lost, none
/// counts twice (a resent one is answered OK and ignored), and collaborators
/// that retry go on with the federation. One aggregator may use a directory
/// at a time. Errors: INVALID_ARGUMENT for an empty path or invalid UTF-8.
#[no_mangle]
pub extern "C" fn ofl_fedavg_options_set_state_dir(
    options: *mut ofl_fedavg_options,
    path: *const c_char,
) -> *mut ofl_error {
    call("ofl_fedavg_options_set_state_dir", || {
        let dir = match arg_opt_str(path, "path")? {
            Some("") => return Err(Error::invalid_argument("path is empty (pass NULL for no state directory)")),
            dir => dir.map(std::path::PathBuf::from),
        };
        options_mut(options)?.config.state_dir = dir;
        Ok(())
    })
}

/// A FedAvg aggregator at round 0 (or, with a state directory that holds a
/// saved federation, at the saved round), written to `*out` (`options` may be freed
/// after). Errors: INVALID_ARGUMENT naming what is missing or wrong (no
/// collaborators, no model tensor, ...); with a state directory, IO when it
/// cannot be read or written, FAILED_PRECONDITION when another aggregator
/// uses it or it holds another federation, DATA_LOSS when a state file is
/// damaged (the message names the file).
///
/// Every round, each collaborator runs every task; the round ends when all
/// have reported all tasks, and each uploaded tensor is averaged over the
/// collaborators weighted by their `data_size`. What a collaborator sends
/// (as OpenFL 1.6's `Collaborator` with `delta_updates: false` and no
/// compression): model tensors are fetched with the round's number,
/// `report` false, tags {"model"}; they come as little-endian float32 bytes
/// with the shape in `int_list` of their one metadata entry. Uploads use
/// the same encoding with the tag "compressed" added (optional for non-OpenFL
/// peers): trained weights with `report` false and tag "trained" (they
/// become the next round's model), metrics as one-value tensors with
/// `report` true and tag "metric" (plus "validate_agg" or "validate_local"
/// for validation tasks); `data_size` is the number of samples the task
/// used (its weight in the average). A collaborator that has reported every
/// task of the round gets `sleep_time` instead of tasks until the round ends.
#[no_mangle]
pub extern "C" fn ofl_fedavg_new(options: *const ofl_fedavg_options, out: *mut *mut ofl_fedavg) -> *mut ofl_error {
    call("ofl_fedavg_new", || {
        check_out(out, "out")?;
        let options = arg_ref(options, "options")?;
        let inner = Arc::new(FedAvg::new(options.config.clone())?);
        write_out(out, ofl_fedavg { inner, metrics: Mutex::new(Vec::new()) });
        Ok(())
    })
}

/// Frees the handle. A server started with it keeps running (it holds its
/// own reference). NULL is a no-op.
#[no_mangle]
pub extern "C" fn ofl_fedavg_free(fedavg: *mut ofl_fedavg) {
    value((), || free_boxed(fedavg))
}

/// Starts an aggregator server (as `ofl_aggregator_server_start`) whose
/// logic is `fedavg`, shared: read its progress through `fedavg` while and
/// after the server runs. `ofl_aggregator_server_serve` returns once every
/// collaborator has been told to quit after the last round.
///
/// The server checks requests against the FedAvg's identity and
/// collaborators (`ofl_fedavg_options_set_federation`,
/// `ofl_fedavg_options_add_collaborator`); identity and collaborators set on
/// `server_options` are not used. Everything else (listen address, TLS,
/// limits) comes from `server_options`.
#[no_mangle]
pub extern "C" fn ofl_aggregator_server_start_fedavg(
    server_options: *const ofl_aggregator_server_options,
    fedavg: *const ofl_fedavg,
    out: *mut *mut ofl_aggregator_server,
) -> *mut ofl_error {
    call("ofl_aggregator_server_start_fedavg", || {
        check_out(out, "out")?;
        let options = arg_ref(server_options, "server_options")?;
        let logic: Arc<dyn AggregatorLogic> = Arc::clone(&arg_ref(fedavg, "fedavg")?.inner) as _;
        start_with_logic(options, logic, out)
    })
}

fn with_fedavg<T: Copy>(fedavg: *const ofl_fedavg, default: T, f: impl FnOnce(&ofl_fedavg) -> T) -> T {
    value(default, || {
        // SAFETY: NULL or a live handle from `ofl_fedavg_new` (documented).
        match unsafe { fedavg.as_ref() } {
            Some(fa) => f(fa),
            None => default,
        }
    })
}

/// The current round: 0 at the start, the number of rounds to train once
/// training is over. 0 for NULL.
#[no_mangle]
pub extern "C" fn ofl_fedavg_current_round(fedavg: *const ofl_fedavg) -> i32 {
    with_fedavg(fedavg, 0, |fa| fa.inner.current_round())
}

/// The number of rounds to train. 0 for NULL.
#[no_mangle]
pub extern "C" fn ofl_fedavg_rounds_to_train(fedavg: *const ofl_fedavg) -> i32 {
    with_fedavg(fedavg, 0, |fa| fa.inner.rounds_to_train())
}

/// Whether every round has been trained (collaborators now get quit).
/// False for NULL.
#[no_mangle]
pub extern "C" fn ofl_fedavg_is_finished(fedavg: *const ofl_fedavg) -> bool {
    with_fedavg(fedavg, false, |fa| fa.inner.is_finished())
}

impl ofl_fedavg {
    /// The metric cache, extended with every metric recorded since the last
    /// call (metrics are only ever appended).
    fn refreshed_metrics(&self) -> std::sync::MutexGuard<'_, Vec<CachedMetric>> {
        let mut cache = self.metrics.lock().unwrap_or_else(PoisonError::into_inner);
        let all = self.inner.metrics();
        let known = cache.len();
        cache.extend(all.into_iter().skip(known).map(CachedMetric::new));
        cache
    }
}

/// The number of metrics recorded so far: each collaborator's as they
/// arrived, then each round's averages (origin "aggregator") when the round
/// ends. Grows while a server runs; indices stay stable. 0 for NULL.
#[no_mangle]
pub extern "C" fn ofl_fedavg_metrics_len(fedavg: *const ofl_fedavg) -> usize {
    with_fedavg(fedavg, 0, |fa| fa.refreshed_metrics().len())
}

/// Metric `index` (below `ofl_fedavg_metrics_len`), written to `*out`; its
/// strings are owned by `fedavg` and valid until `ofl_fedavg_free`.
/// Errors: OUT_OF_RANGE for an index not recorded yet.
#[no_mangle]
pub extern "C" fn ofl_fedavg_metric(fedavg: *const ofl_fedavg, index: usize, out: *mut ofl_metric) -> *mut ofl_error {
    call("ofl_fedavg_metric", || {
        if out.is_null() {
            return Err(Error::invalid_argument("out is NULL"));
        }
        let fedavg = arg_ref(fedavg, "fedavg")?;
        let cache = fedavg.refreshed_metrics();
        let m = cache.get(index).ok_or_else(|| {
            Error::new(ofl_code::OutOfRange, format!("metric index {index} is out of range ({} metrics)", cache.len()))
        })?;
        let metric = ofl_metric {
            round: m.record.round,
            origin: m.origin.as_ptr(),
            aggregated: m.record.aggregated,
            task: m.task.as_ptr(),
            name: m.name.as_ptr(),
            value: m.record.value,
        };
        // SAFETY: `out` was checked non-NULL and points to writable storage
        // for one `ofl_metric` (documented); `write` does not read the
        // possibly uninitialised old value.
        unsafe { out.write(metric) };
        Ok(())
    })
}

/// The newest model, copied into a new `ofl_model` written to `*out`: the
/// initial model before the first round ends, the final aggregate after the
/// last.
#[no_mangle]
pub extern "C" fn ofl_fedavg_last_model(fedavg: *const ofl_fedavg, out: *mut *mut ofl_model) -> *mut ofl_error {
    call("ofl_fedavg_last_model", || {
        check_out(out, "out")?;
        let model = arg_ref(fedavg, "fedavg")?.inner.last_model();
        write_out(out, ofl_model::new(model));
        Ok(())
    })
}

/// The model that scored best in the aggregated-model validation (see
/// `ofl_fedavg_options_set_best_model_metric`), copied into a new
/// `ofl_model` written to `*out`. Errors: FAILED_PRECONDITION until a round
/// with that metric has ended.
#[no_mangle]
pub extern "C" fn ofl_fedavg_best_model(fedavg: *const ofl_fedavg, out: *mut *mut ofl_model) -> *mut ofl_error {
    call("ofl_fedavg_best_model", || {
        check_out(out, "out")?;
        let model = arg_ref(fedavg, "fedavg")?.inner.best_model().ok_or_else(|| {
            Error::new(ofl_code::FailedPrecondition, "no best model yet: no round with the best-model metric has ended")
        })?;
        write_out(out, ofl_model::new(model));
        Ok(())
    })
}

/// The round whose model is the best model and its score, written to
/// `*round` and `*score` (each may be NULL); returns false (writing
/// nothing) when there is no best model yet or `fedavg` is NULL.
#[no_mangle]
pub extern "C" fn ofl_fedavg_best_model_score(fedavg: *const ofl_fedavg, round: *mut i32, score: *mut f64) -> bool {
    value(false, || {
        let best = with_fedavg(fedavg, None, |fa| fa.inner.best_model_score());
        let Some((best_round, best_score)) = best else { return false };
        if !round.is_null() {
            // SAFETY: a non-NULL `round` points to writable storage (documented).
            unsafe { *round = best_round };
        }
        if !score.is_null() {
            // SAFETY: a non-NULL `score` points to writable storage (documented).
            unsafe { *score = best_score };
        }
        true
    })
}

fn with_model<T: Copy>(model: *const ofl_model, default: T, f: impl FnOnce(&ofl_model) -> T) -> T {
    value(default, || {
        // SAFETY: NULL or a live model handed out by this library (documented).
        match unsafe { model.as_ref() } {
            Some(m) => f(m),
            None => default,
        }
    })
}

fn with_model_tensor<T: Copy>(
    model: *const ofl_model,
    index: usize,
    default: T,
    f: impl FnOnce(&ModelTensor) -> T,
) -> T {
    with_model(model, None, |m| m.tensors.get(index).map(f)).unwrap_or(default)
}

fn write_len(len: *mut usize, n: usize) {
    if !len.is_null() {
        // SAFETY: a non-NULL `len` points to writable storage (documented).
        unsafe { *len = n };
    }
}

/// Number of tensors in the model. 0 for NULL.
#[no_mangle]
pub extern "C" fn ofl_model_len(model: *const ofl_model) -> usize {
    with_model(model, 0, |m| m.tensors.len())
}

/// Name of tensor `index` (tensors are in name order); NULL when out of range.
#[no_mangle]
pub extern "C" fn ofl_model_tensor_name(model: *const ofl_model, index: usize) -> *const c_char {
    with_model_tensor(model, index, std::ptr::null(), |t| t.name.as_ptr())
}

/// Finds the tensor called `name`: writes its index to `*index` (when not
/// NULL) and returns true, or returns false when there is none.
#[no_mangle]
pub extern "C" fn ofl_model_find(model: *const ofl_model, name: *const c_char, index: *mut usize) -> bool {
    let found = with_model(model, None, |m| {
        let name = arg_str(name, "name").ok()?;
        m.tensors.iter().position(|t| t.name.to_bytes() == name.as_bytes())
    });
    match found {
        Some(i) => {
            write_len(index, i);
            true
        }
        None => false,
    }
}

/// The shape of tensor `index`: writes the number of dimensions to `*len`
/// (when not NULL; 0 for a scalar) and returns the dimensions. The pointer
/// is non-NULL for every index below `ofl_model_len` (also for a scalar) and
/// valid until `ofl_model_free`; out of range: NULL and length 0.
#[no_mangle]
pub extern "C" fn ofl_model_tensor_shape(model: *const ofl_model, index: usize, len: *mut usize) -> *const usize {
    let (ptr, n) =
        with_model_tensor(model, index, (std::ptr::null(), 0), |t| (t.tensor.shape.as_ptr(), t.tensor.shape.len()));
    write_len(len, n);
    ptr
}

/// The values of tensor `index` in C (row-major) order: writes their number
/// to `*len` (when not NULL) and returns them, as `ofl_model_tensor_shape`.
#[no_mangle]
pub extern "C" fn ofl_model_tensor_values(model: *const ofl_model, index: usize, len: *mut usize) -> *const f32 {
    let (ptr, n) =
        with_model_tensor(model, index, (std::ptr::null(), 0), |t| (t.tensor.values.as_ptr(), t.tensor.values.len()));
    write_len(len, n);
    ptr
}

/// Frees a model. NULL is a no-op.
#[no_mangle]
pub extern "C" fn ofl_model_free(model: *mut ofl_model) {
    value((), || free_boxed(model))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregator::TaskResults;
    use crate::ffi::aggregator::server::{ofl_aggregator_server_free, ofl_aggregator_server_port};
    use crate::ffi::aggregator::server_options::{
        ofl_aggregator_server_options_free, ofl_aggregator_server_options_new,
        ofl_aggregator_server_options_set_listen, ofl_aggregator_server_options_set_tls,
    };
    use crate::ffi::error::{ofl_error_code, ofl_error_free, ofl_error_message};
    use std::ffi::CStr;
    use std::ptr::{null, null_mut};

    /// The error's code (OK for NULL), freeing it.
    fn code(err: *mut ofl_error) -> ofl_code {
        let code = ofl_error_code(err);
        ofl_error_free(err);
        code
    }

    fn ok(err: *mut ofl_error) {
        if !err.is_null() {
            // SAFETY: a live error's message is a NUL-terminated string it owns.
            let message = unsafe { CStr::from_ptr(ofl_error_message(err)) }.to_string_lossy().into_owned();
            ofl_error_free(err);
            panic!("unexpected error: {message}");
        }
    }

    fn s(ptr: *const c_char) -> String {
        assert!(!ptr.is_null());
        // SAFETY: a non-NULL string from an accessor is NUL-terminated and live.
        unsafe { CStr::from_ptr(ptr) }.to_str().unwrap().to_owned()
    }

    /// Options for collaborators a and b, 2 rounds, w = [1, 2], b = 0.5.
    fn options() -> *mut ofl_fedavg_options {
        let mut options = null_mut();
        ok(ofl_fedavg_options_new(&mut options));
        ok(ofl_fedavg_options_set_federation(options, c"agg".as_ptr(), c"fed".as_ptr(), null()));
        ok(ofl_fedavg_options_add_collaborator(options, c"a".as_ptr()));
        ok(ofl_fedavg_options_add_collaborator(options, c"b".as_ptr()));
        ok(ofl_fedavg_options_add_collaborator(options, c"a".as_ptr())); // once
        ok(ofl_fedavg_options_set_rounds_to_train(options, 2));
        ok(ofl_fedavg_options_add_model_tensor(
            options,
            c"w".as_ptr(),
            [2usize].as_ptr(),
            1,
            [1.0f32, 2.0].as_ptr(),
            2,
        ));
        ok(ofl_fedavg_options_add_model_tensor(options, c"b".as_ptr(), null(), 0, [0.5f32].as_ptr(), 1));
        ok(ofl_fedavg_options_set_tensor_wait_ms(options, 10));
        ok(ofl_fedavg_options_set_sleep_time(options, 1));
        options
    }

    fn fedavg() -> *mut ofl_fedavg {
        let options = options();
        let mut fedavg = null_mut();
        ok(ofl_fedavg_new(options, &mut fedavg));
        ofl_fedavg_options_free(options);
        fedavg
    }

    fn inner<'a>(fedavg: *const ofl_fedavg) -> &'a FedAvg {
        // SAFETY: a live handle from `fedavg()`.
        unsafe { &(*fedavg).inner }
    }

    /// One collaborator's round with OpenFL's default tasks.
    fn run_round(fa: &FedAvg, col: &str, round: i32, acc: f32, w: [f32; 2]) {
        let send = |task: &str, tensors| {
            let results = TaskResults { round_number: round, task_name: task.into(), data_size: 1, tensors };
            fa.send_local_task_results(col, results).unwrap();
        };
        let metric = |name: &str, value: f32, tag: &str| {
            Tensor::scalar(value).to_named_tensor(name, round, true, &["metric", tag])
        };
        send("aggregated_model_validation", vec![metric("accuracy", acc, "validate_agg")]);
        let trained = Tensor::new(vec![2], w.to_vec()).unwrap().to_named_tensor("w", round, false, &["trained"]);
        send("train", vec![trained]);
        send("locally_tuned_model_validation", vec![metric("accuracy", acc, "validate_local")]);
    }

    #[test]
    fn bad_options_are_refused_with_invalid_argument() {
        use ofl_code::InvalidArgument;
        assert_eq!(code(ofl_fedavg_options_new(null_mut())), InvalidArgument);
        let o = options();
        assert_eq!(code(ofl_fedavg_options_add_collaborator(o, c"".as_ptr())), InvalidArgument);
        assert_eq!(code(ofl_fedavg_options_add_collaborator(o, null())), InvalidArgument);
        assert_eq!(code(ofl_fedavg_options_add_collaborator(null_mut(), c"c".as_ptr())), InvalidArgument);
        assert_eq!(code(ofl_fedavg_options_set_rounds_to_train(o, 0)), InvalidArgument);
        assert_eq!(code(ofl_fedavg_options_set_sleep_time(o, 0)), InvalidArgument);
        assert_eq!(code(ofl_fedavg_options_set_federation(o, null(), c"f".as_ptr(), null())), InvalidArgument);
        assert_eq!(code(ofl_fedavg_options_set_best_model_metric(o, c"".as_ptr())), InvalidArgument);
        let values = [0.0f32; 3];
        let add = |name: &CStr, shape: &[usize], values: *const f32, len: usize| {
            code(ofl_fedavg_options_add_model_tensor(o, name.as_ptr(), shape.as_ptr(), shape.len(), values, len))
        };
        assert_eq!(add(c"v", &[2, 2], values.as_ptr(), 3), InvalidArgument); // 4 values needed
        assert_eq!(add(c"v", &[1 << 31], values.as_ptr(), 3), InvalidArgument); // not an int32
        assert_eq!(add(c"v", &[3], null(), 3), InvalidArgument);
        assert_eq!(add(c"w", &[3], values.as_ptr(), 3), InvalidArgument); // added twice
        assert_eq!(add(c"", &[3], values.as_ptr(), 3), InvalidArgument);
        assert_eq!(add(c"v", &[3], values.as_ptr(), 3), ofl_code::Ok);
        assert_eq!(
            code(ofl_fedavg_options_add_model_tensor(o, c"s".as_ptr(), [1usize].as_ptr(), 0, values.as_ptr(), 1)),
            ofl_code::Ok
        );
        let task = |name: &CStr| {
            code(ofl_fedavg_options_add_task(o, name.as_ptr(), c"train_task".as_ptr(), c"train".as_ptr(), false))
        };
        assert_eq!(task(c"train"), ofl_code::Ok);
        assert_eq!(task(c"train"), InvalidArgument); // added twice
        assert_eq!(task(c""), InvalidArgument);
        let mut fedavg = null_mut();
        assert_eq!(code(ofl_fedavg_new(o, null_mut())), InvalidArgument);
        assert_eq!(code(ofl_fedavg_new(null(), &mut fedavg)), InvalidArgument);
        ok(ofl_fedavg_new(o, &mut fedavg));
        ofl_fedavg_options_free(o);
        ofl_fedavg_free(fedavg);
        ofl_fedavg_options_free(null_mut());
        ofl_fedavg_free(null_mut());

        // Missing collaborators or model: refused by ofl_fedavg_new.
        let mut empty = null_mut();
        ok(ofl_fedavg_options_new(&mut empty));
        assert_eq!(code(ofl_fedavg_new(empty, &mut fedavg)), InvalidArgument);
        ok(ofl_fedavg_options_add_collaborator(empty, c"a".as_ptr()));
        assert_eq!(code(ofl_fedavg_new(empty, &mut fedavg)), InvalidArgument);
        ofl_fedavg_options_free(empty);
    }

    #[test]
    fn first_added_task_replaces_the_defaults() {
        let o = options();
        ok(ofl_fedavg_options_add_task(o, c"train".as_ptr(), c"train_task".as_ptr(), c"train".as_ptr(), false));
        // SAFETY: a live options object from `options()`.
        let tasks = unsafe { &(*o).config.tasks };
        assert_eq!(tasks.len(), 1);
        assert_eq!((tasks[0].name.as_str(), tasks[0].function_name.as_str()), ("train", "train_task"));
        ofl_fedavg_options_free(o);
    }

    #[test]
    fn rounds_metrics_and_models_read_through_c() {
        let fedavg = fedavg();
        assert_eq!((ofl_fedavg_current_round(fedavg), ofl_fedavg_rounds_to_train(fedavg)), (0, 2));
        assert!(!ofl_fedavg_is_finished(fedavg));
        assert_eq!(ofl_fedavg_metrics_len(fedavg), 0);
        let mut model = null_mut();
        assert_eq!(code(ofl_fedavg_best_model(fedavg, &mut model)), ofl_code::FailedPrecondition);
        assert!(model.is_null());
        assert!(!ofl_fedavg_best_model_score(fedavg, null_mut(), null_mut()));

        // The initial model, in name order: b (scalar), w.
        ok(ofl_fedavg_last_model(fedavg, &mut model));
        assert_eq!(ofl_model_len(model), 2);
        assert_eq!(s(ofl_model_tensor_name(model, 0)), "b");
        let mut len = 99;
        assert!(!ofl_model_tensor_shape(model, 0, &mut len).is_null());
        assert_eq!(len, 0);
        let values = ofl_model_tensor_values(model, 0, &mut len);
        // SAFETY: `len` values at a non-NULL pointer owned by the live model.
        assert_eq!(unsafe { std::slice::from_raw_parts(values, len) }, [0.5]);
        let mut index = 9;
        assert!(ofl_model_find(model, c"w".as_ptr(), &mut index));
        assert_eq!(index, 1);
        assert!(!ofl_model_find(model, c"nope".as_ptr(), &mut index));
        assert!(ofl_model_tensor_name(model, 2).is_null());
        assert!(ofl_model_tensor_values(model, 2, &mut len).is_null());
        assert_eq!(len, 0);
        ofl_model_free(model);

        // Round 0: a scores 0.5, b 0.7; the model trains to the average.
        let fa = inner(fedavg);
        run_round(fa, "a", 0, 0.5, [3.0, 3.0]);
        assert_eq!(ofl_fedavg_metrics_len(fedavg), 2);
        let mut first =
            ofl_metric { round: -1, origin: null(), aggregated: true, task: null(), name: null(), value: 0.0 };
        ok(ofl_fedavg_metric(fedavg, 0, &mut first));
        run_round(fa, "b", 0, 0.7, [5.0, 7.0]);
        assert_eq!(ofl_fedavg_current_round(fedavg), 1);
        let n = ofl_fedavg_metrics_len(fedavg);
        assert_eq!(n, 6); // 2 per collaborator, then 2 averages
        let mut m = ofl_metric { round: -1, origin: null(), aggregated: false, task: null(), name: null(), value: 0.0 };
        ok(ofl_fedavg_metric(fedavg, 4, &mut m));
        assert_eq!(
            (m.round, m.aggregated, s(m.origin), s(m.task), s(m.name)),
            (0, true, "aggregator".into(), "aggregated_model_validation".into(), "accuracy".into())
        );
        assert!((m.value - 0.6).abs() < 1e-6, "{}", m.value);
        assert_eq!(code(ofl_fedavg_metric(fedavg, n, &mut m)), ofl_code::OutOfRange);
        assert_eq!(code(ofl_fedavg_metric(fedavg, 0, null_mut())), ofl_code::InvalidArgument);
        assert_eq!(code(ofl_fedavg_metric(null(), 0, &mut m)), ofl_code::InvalidArgument);
        // Strings handed out earlier are still valid.
        assert_eq!(
            (first.round, first.aggregated, s(first.origin), s(first.name)),
            (0, false, "a".into(), "accuracy".into())
        );

        let (mut round, mut score) = (-1, 0.0);
        assert!(ofl_fedavg_best_model_score(fedavg, &mut round, &mut score));
        assert_eq!(round, 0);
        assert!((score - 0.6).abs() < 1e-6);
        ok(ofl_fedavg_best_model(fedavg, &mut model)); // round 0's model: the initial one
        assert!(ofl_model_find(model, c"w".as_ptr(), &mut index));
        // SAFETY: as above.
        assert_eq!(
            unsafe { std::slice::from_raw_parts(ofl_model_tensor_values(model, index, &mut len), 2) },
            [1.0, 2.0]
        );
        ofl_model_free(model);
        ok(ofl_fedavg_last_model(fedavg, &mut model));
        assert!(ofl_model_find(model, c"w".as_ptr(), &mut index));
        // SAFETY: as above.
        assert_eq!(
            unsafe { std::slice::from_raw_parts(ofl_model_tensor_values(model, index, &mut len), 2) },
            [4.0, 5.0]
        );
        ofl_model_free(model);

        run_round(fa, "a", 1, 0.9, [1.0, 1.0]);
        run_round(fa, "b", 1, 0.9, [1.0, 1.0]);
        assert!(ofl_fedavg_is_finished(fedavg));
        assert_eq!(ofl_fedavg_current_round(fedavg), 2);
        ofl_fedavg_free(fedavg);
    }

    #[test]
    fn null_handles_give_documented_defaults() {
        assert_eq!(ofl_fedavg_current_round(null()), 0);
        assert_eq!(ofl_fedavg_metrics_len(null()), 0);
        assert!(!ofl_fedavg_is_finished(null()));
        let mut model = null_mut();
        assert_eq!(code(ofl_fedavg_last_model(null(), &mut model)), ofl_code::InvalidArgument);
        assert_eq!(ofl_model_len(null()), 0);
        assert!(ofl_model_tensor_name(null(), 0).is_null());
        assert!(!ofl_model_find(null(), c"w".as_ptr(), null_mut()));
        assert!(ofl_model_tensor_shape(null(), 0, null_mut()).is_null());
        ofl_model_free(null_mut());
    }

    #[test]
    fn server_starts_with_the_fedavg() {
        let fedavg = fedavg();
        let mut so = null_mut();
        ok(ofl_aggregator_server_options_new(&mut so));
        ok(ofl_aggregator_server_options_set_listen(so, c"127.0.0.1".as_ptr(), 0));
        ok(ofl_aggregator_server_options_set_tls(so, null()));
        let mut server = null_mut();
        assert_eq!(code(ofl_aggregator_server_start_fedavg(null(), fedavg, &mut server)), ofl_code::InvalidArgument);
        assert_eq!(code(ofl_aggregator_server_start_fedavg(so, null(), &mut server)), ofl_code::InvalidArgument);
        assert_eq!(code(ofl_aggregator_server_start_fedavg(so, fedavg, null_mut())), ofl_code::InvalidArgument);
        ok(ofl_aggregator_server_start_fedavg(so, fedavg, &mut server));
        ofl_aggregator_server_options_free(so);
        ofl_fedavg_free(fedavg); // the server keeps its own reference
        assert_ne!(ofl_aggregator_server_port(server), 0);
        ofl_aggregator_server_free(server);
    }
}
