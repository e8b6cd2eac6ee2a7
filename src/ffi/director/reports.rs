//! What the host reports about an experiment it runs (metrics, models,
//! rounds, tasks, finished / failed) and asks about it (status).

use std::ffi::c_char;

use super::server::{ofl_director_server, server_ref};
use super::types::{
    check_value_out, metric_from_c, model_from_views, ofl_director_metric, ofl_experiment_status,
    write_value,
};
use crate::director::DirectorHandle;
use crate::error::{ofl_code, Error, Result};
use crate::ffi::boundary::{arg_opt_str, arg_ref, arg_str, ffi_fn};
use crate::ffi::tensor::{ofl_tensor_view, string_list};

/// Runs `f` with the server's handle and the experiment name.
fn report(
    server: *const ofl_director_server,
    experiment: *const c_char,
    f: impl FnOnce(&DirectorHandle, &str) -> Result<()>,
) -> Result<()> {
    let server = server_ref(server)?;
    let experiment = arg_str(experiment, "experiment")?;
    f(&server.handle, experiment)
}

ffi_fn! {
    /// Queues a metric of `experiment` for the frontends' metric streams
    /// (GetMetricStream; a streamed metric leaves the queue). Its strings
    /// are copied and required. Errors: NOT_FOUND for an unknown experiment.
    fn ofl_director_server_push_metric(
        server: *const ofl_director_server,
        experiment: *const c_char,
        metric: *const ofl_director_metric,
    ) -> *mut ofl_error {
        report(server, experiment, |handle, name| {
            let metric = metric_from_c(arg_ref(metric, "metric")?)?;
            handle.push_metric(name, metric)
        })
    }
}

ffi_fn! {
    /// Sets the model GetTrainedModel(BEST_MODEL) returns for `experiment`:
    /// `tensors_len` tensors, copied (data included), sent as they are.
    /// OpenFL's frontend expects its uncompressed float32 encoding:
    /// little-endian values, the shape in the `int_list` of one metadata
    /// entry. Errors: NOT_FOUND for an unknown experiment.
    fn ofl_director_server_set_best_model(
        server: *const ofl_director_server,
        experiment: *const c_char,
        tensors: *const ofl_tensor_view,
        tensors_len: usize,
    ) -> *mut ofl_error {
        report(server, experiment, |handle, name| {
            handle.set_best_model(name, model_from_views(tensors, tensors_len, "tensors")?)
        })
    }
}

ffi_fn! {
    /// Sets the model GetTrainedModel(LAST_MODEL) returns, as
    /// `ofl_director_server_set_best_model`.
    fn ofl_director_server_set_last_model(
        server: *const ofl_director_server,
        experiment: *const c_char,
        tensors: *const ofl_tensor_view,
        tensors_len: usize,
    ) -> *mut ofl_error {
        report(server, experiment, |handle, name| {
            handle.set_last_model(name, model_from_views(tensors, tensors_len, "tensors")?)
        })
    }
}

ffi_fn! {
    /// Sets the round progress frontends see (GetExperimentsList's progress,
    /// GetExperimentDescription's rounds). Errors: NOT_FOUND.
    fn ofl_director_server_set_round(
        server: *const ofl_director_server,
        experiment: *const c_char,
        current_round: u32,
        total_rounds: u32,
    ) -> *mut ofl_error {
        report(server, experiment, |handle, name| handle.set_round(name, current_round, total_rounds))
    }
}

ffi_fn! {
    /// Sets the task list frontends see (GetExperimentDescription): `len`
    /// task names and as many descriptions; `descriptions` may be NULL (all
    /// empty). Replaces the previous list. Copied. Errors: NOT_FOUND.
    fn ofl_director_server_set_tasks(
        server: *const ofl_director_server,
        experiment: *const c_char,
        names: *const *const c_char,
        descriptions: *const *const c_char,
        len: usize,
    ) -> *mut ofl_error {
        report(server, experiment, |handle, name| {
            let names = string_list(names, len, "names")?;
            let descriptions = if descriptions.is_null() {
                vec![String::new(); len]
            } else {
                string_list(descriptions, len, "descriptions")?
            };
            handle.set_tasks(name, names.into_iter().zip(descriptions).collect())
        })
    }
}

ffi_fn! {
    /// The experiment finished (OpenFL: its aggregator sent every quit job):
    /// metric streams end once drained, envoys stop receiving it, and the
    /// next experiment may start. Only from in_progress; idempotent. Errors:
    /// NOT_FOUND, FAILED_PRECONDITION (e.g. it failed already).
    fn ofl_director_server_mark_finished(
        server: *const ofl_director_server,
        experiment: *const c_char,
    ) -> *mut ofl_error {
        report(server, experiment, |handle, name| handle.mark_finished(name))
    }
}

ffi_fn! {
    /// The experiment failed (reported by the host; `description` may be
    /// NULL). From pending or in_progress; idempotent (the first description
    /// stays). Errors: NOT_FOUND, FAILED_PRECONDITION (it finished or was
    /// rejected).
    fn ofl_director_server_mark_failed(
        server: *const ofl_director_server,
        experiment: *const c_char,
        description: *const c_char,
    ) -> *mut ofl_error {
        report(server, experiment, |handle, name| {
            let description = arg_opt_str(description, "description")?.unwrap_or("");
            handle.mark_failed(name, description)
        })
    }
}

ffi_fn! {
    /// The status of `experiment` (whoever submitted it), written to `*out`.
    /// Errors: NOT_FOUND for an unknown (or removed) experiment.
    fn ofl_director_server_experiment_status(
        server: *const ofl_director_server,
        experiment: *const c_char,
        out: *mut ofl_experiment_status,
    ) -> *mut ofl_error {
        check_value_out(out, "out")?;
        report(server, experiment, |handle, name| {
            let status = handle
                .experiment_status(name)
                .ok_or_else(|| Error::new(ofl_code::NotFound, format!("no experiment named {name:?}")))?;
            write_value(out, ofl_experiment_status::from(status));
            Ok(())
        })
    }
}
