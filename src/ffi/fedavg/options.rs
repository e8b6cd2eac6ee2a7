//! `ofl_fedavg_options`: the settings of `ofl_fedavg_new` (OpenFL's
//! aggregator settings in a plan).

use std::ffi::c_char;
use std::time::Duration;

use crate::fedavg::{FedAvgOptions, Tensor};
use crate::error::{Error, Result};
use crate::ffi::boundary::{
    arg_mut, arg_opt_str, arg_slice, arg_str, check_out, ffi_fn, free_boxed, write_out,
};
use crate::proto::aggregator::Task;

/// Settings for `ofl_fedavg_new` (OpenFL's aggregator settings in a plan):
/// identity, collaborators, rounds, tasks, the initial model. Defaults: 10
/// rounds, OpenFL's three default tasks, sleep time 10 s, tensor wait 30 s,
/// the best model chosen by the aggregated-model validation's first metric.
/// Not thread-safe: configure from one thread.
#[allow(non_camel_case_types)]
pub struct ofl_fedavg_options {
    pub(crate) config: FedAvgOptions,
    /// Whether `ofl_fedavg_options_add_task` was called (the first call
    /// replaces the default tasks).
    pub(crate) custom_tasks: bool,
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

ffi_fn! {
    /// New FedAvg options with the defaults above, no collaborators and no
    /// model, written to `*out`.
    fn ofl_fedavg_options_new(out: *mut *mut ofl_fedavg_options) -> *mut ofl_error {
        check_out(out, "out")?;
        write_out(out, ofl_fedavg_options { config: FedAvgOptions::default(), custom_tasks: false });
        Ok(())
    }
}

ffi_fn! {
    /// Frees FedAvg options. NULL is a no-op.
    fn ofl_fedavg_options_free(options: *mut ofl_fedavg_options) {
        free_boxed(options)
    }
}

ffi_fn! {
    /// The aggregator's identity (OpenFL's `Aggregator.uuid`, `federation_uuid`,
    /// `single_col_cert_common_name`; the last may be NULL for none). A server
    /// started with `ofl_aggregator_server_start_fedavg` checks requests against
    /// this identity. Default: empty uuids.
    fn ofl_fedavg_options_set_federation(
        options: *mut ofl_fedavg_options,
        aggregator_uuid: *const c_char,
        federation_uuid: *const c_char,
        single_col_cert_common_name: *const c_char,
    ) -> *mut ofl_error {
        let aggregator_uuid = arg_str(aggregator_uuid, "aggregator_uuid")?;
        let federation_uuid = arg_str(federation_uuid, "federation_uuid")?;
        let single_cn = arg_opt_str(single_col_cert_common_name, "single_col_cert_common_name")?.unwrap_or("");
        let config = &mut options_mut(options)?.config;
        config.aggregator_uuid = aggregator_uuid.to_owned();
        config.federation_uuid = federation_uuid.to_owned();
        config.single_col_cert_common_name = single_cn.to_owned();
        Ok(())
    }
}

ffi_fn! {
    /// Adds a collaborator (OpenFL's `authorized_cols`): authorized to call, and
    /// every round waits for its results of every task. Adding a name twice
    /// adds it once. At least one is required.
    fn ofl_fedavg_options_add_collaborator(
        options: *mut ofl_fedavg_options,
        collaborator_name: *const c_char,
    ) -> *mut ofl_error {
        let name = non_empty(collaborator_name, "collaborator_name")?;
        let collaborators = &mut options_mut(options)?.config.collaborators;
        if !collaborators.iter().any(|c| c == name) {
            collaborators.push(name.to_owned());
        }
        Ok(())
    }
}

ffi_fn! {
    /// Rounds to train (OpenFL's `rounds_to_train`), at least 1; default 10.
    fn ofl_fedavg_options_set_rounds_to_train(
        options: *mut ofl_fedavg_options,
        rounds: i32,
    ) -> *mut ofl_error {
        if rounds < 1 {
            return Err(Error::invalid_argument(format!("rounds must be at least 1, got {rounds}")));
        }
        options_mut(options)?.config.rounds_to_train = rounds;
        Ok(())
    }
}

ffi_fn! {
    /// Appends a task that every collaborator runs every round, in the order
    /// added (a task of OpenFL's plan: `name`, `function_name`, `task_type`
    /// "train" or "validate", `apply_local`). The first call replaces the
    /// default tasks: `aggregated_model_validation` (validate_task, validate),
    /// `train` (train_task, train), `locally_tuned_model_validation`
    /// (validate_task, validate, apply_local). Names must be unique
    /// (INVALID_ARGUMENT otherwise).
    fn ofl_fedavg_options_add_task(
        options: *mut ofl_fedavg_options,
        name: *const c_char,
        function_name: *const c_char,
        task_type: *const c_char,
        apply_local: bool,
    ) -> *mut ofl_error {
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
    }
}

ffi_fn! {
    /// Adds a tensor of the initial (round-0) model: `shape_len` dimensions at
    /// `shape` (0 for a scalar; `shape` may then be NULL) and `values_len`
    /// float32 values in C (row-major) order, which must be the product of the
    /// dimensions (1 for a scalar). Both arrays are copied. Each dimension must
    /// fit an int32 (the wire type). A name may be added once; at least one
    /// tensor is required.
    fn ofl_fedavg_options_add_model_tensor(
        options: *mut ofl_fedavg_options,
        name: *const c_char,
        shape: *const usize,
        shape_len: usize,
        values: *const f32,
        values_len: usize,
    ) -> *mut ofl_error {
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
    }
}

ffi_fn! {
    /// The metric that picks the best model: a metric reported by the first
    /// "validate" task without `apply_local` (the aggregated-model validation);
    /// higher is better. NULL restores the default: that task's first metric by
    /// name.
    fn ofl_fedavg_options_set_best_model_metric(
        options: *mut ofl_fedavg_options,
        metric_name: *const c_char,
    ) -> *mut ofl_error {
        let metric = match arg_opt_str(metric_name, "metric_name")? {
            Some("") => return Err(Error::invalid_argument("metric_name is empty (pass NULL for the default)")),
            m => m.map(str::to_owned),
        };
        options_mut(options)?.config.best_model_metric = metric;
        Ok(())
    }
}

ffi_fn! {
    /// How long a GetAggregatedTensor call for a later round's model (not ready
    /// yet) waits before FAILED_PRECONDITION; default 30 000 ms.
    fn ofl_fedavg_options_set_tensor_wait_ms(
        options: *mut ofl_fedavg_options,
        wait_ms: u64,
    ) -> *mut ofl_error {
        options_mut(options)?.config.tensor_wait = Duration::from_millis(wait_ms);
        Ok(())
    }
}

ffi_fn! {
    /// Seconds a collaborator that has finished the round is told to sleep
    /// before asking again (GetTasks' `sleep_time`), at least 1; default 10
    /// (OpenFL 1.6 always sends 10).
    fn ofl_fedavg_options_set_sleep_time(options: *mut ofl_fedavg_options, seconds: i32) -> *mut ofl_error {
        if seconds < 1 {
            return Err(Error::invalid_argument(format!("sleep time must be at least 1 second, got {seconds}")));
        }
        options_mut(options)?.config.sleep_time = seconds;
        Ok(())
    }
}

ffi_fn! {
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
    fn ofl_fedavg_options_set_state_dir(
        options: *mut ofl_fedavg_options,
        path: *const c_char,
    ) -> *mut ofl_error {
        let dir = match arg_opt_str(path, "path")? {
            Some("") => return Err(Error::invalid_argument("path is empty (pass NULL for no state directory)")),
            dir => dir.map(std::path::PathBuf::from),
        };
        options_mut(options)?.config.state_dir = dir;
        Ok(())
    }
}
