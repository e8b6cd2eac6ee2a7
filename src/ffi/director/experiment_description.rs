//! `ofl_experiment_description`: one experiment in detail
//! (GetExperimentDescription), its collaborators, tasks, models and logs
//! read by index.

use std::ffi::{c_char, CString};

use super::frontend_client::{frontend_arc, ofl_frontend_client};
use super::types::with_index;
use crate::ffi::boundary::{arg_str, c_string, check_out, ffi_fn, free_boxed, with_ref, write_out};
use crate::ffi::call_options::{call_options, ofl_call_options};
use crate::proto::{DownloadStatus, ExperimentDescription};
use crate::runtime;

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

fn pairs(v: &[DownloadStatus]) -> Vec<(CString, CString)> {
    v.iter()
        .map(|s| (c_string(&s.name), c_string(&s.status)))
        .collect()
}

impl ofl_experiment_description {
    fn new(d: ExperimentDescription) -> Self {
        let downloads = d.download_statuses.unwrap_or_default();
        let collaborator = |c: &crate::proto::CollaboratorDescription| CollaboratorEntry {
            progress: c.progress,
            round: c.round,
            name: c_string(&c.name),
            status: c_string(&c.status),
            current_task: c_string(&c.current_task),
            next_task: c_string(&c.next_task),
        };
        Self {
            progress: d.progress,
            total_rounds: d.total_rounds,
            current_round: d.current_round,
            name: c_string(&d.name),
            status: c_string(&d.status),
            collaborators: d.collaborators.iter().map(collaborator).collect(),
            tasks: d
                .tasks
                .iter()
                .map(|t| (c_string(&t.name), c_string(&t.description)))
                .collect(),
            models: pairs(&downloads.models),
            logs: pairs(&downloads.logs),
        }
    }
}

ffi_fn! {
    /// GetExperimentDescription: the experiment `name` in detail, written to
    /// `*out` (free it with `ofl_experiment_description_free`). Errors:
    /// NOT_FOUND for an experiment this frontend did not submit.
    fn ofl_frontend_client_get_experiment_description(
        client: *const ofl_frontend_client,
        name: *const c_char,
        call: *const ofl_call_options,
        out: *mut *mut ofl_experiment_description,
    ) -> *mut ofl_error {
        check_out(out, "out")?;
        let client = frontend_arc(client)?;
        let name = arg_str(name, "name")?.to_owned();
        let options = call_options(call)?;
        let description =
            runtime::block_on(async move { client.get_experiment_description_with(&name, &options).await })??;
        write_out(out, ofl_experiment_description::new(description));
        Ok(())
    }
}

type Description = ofl_experiment_description;

/// Runs `f` on collaborator `index`; `default` for NULL or out of range.
fn with_collaborator<T>(
    d: *const Description,
    index: usize,
    default: T,
    f: impl FnOnce(&CollaboratorEntry) -> T,
) -> T {
    with_index(d, index, default, |d| &d.collaborators, f)
}

/// The first (`second` false) or second string of pair `index` of the list
/// `pick` chooses; NULL for a NULL object or out of range.
fn pair_ptr(
    d: *const Description,
    index: usize,
    pick: fn(&Description) -> &[(CString, CString)],
    second: bool,
) -> *const c_char {
    with_index(d, index, std::ptr::null(), pick, |(a, b)| {
        if second {
            b.as_ptr()
        } else {
            a.as_ptr()
        }
    })
}

fn tasks(d: &Description) -> &[(CString, CString)] {
    &d.tasks
}
fn models(d: &Description) -> &[(CString, CString)] {
    &d.models
}
fn logs(d: &Description) -> &[(CString, CString)] {
    &d.logs
}

ffi_fn! {
    /// The experiment's name. NULL gives "".
    fn ofl_experiment_description_name(description: *const ofl_experiment_description) -> *const c_char {
        with_ref(description, c"".as_ptr(), |d| d.name.as_ptr())
    } ?= c"".as_ptr()
}

ffi_fn! {
    /// Its status as the wire carries it ("pending", "in_progress", ...).
    /// NULL gives "".
    fn ofl_experiment_description_status(description: *const ofl_experiment_description) -> *const c_char {
        with_ref(description, c"".as_ptr(), |d| d.status.as_ptr())
    } ?= c"".as_ptr()
}

ffi_fn! {
    /// Its progress, 0 to 1.
    fn ofl_experiment_description_progress(description: *const ofl_experiment_description) -> f32 {
        with_ref(description, 0.0, |d| d.progress)
    } ?= 0.0
}

ffi_fn! {
    /// Rounds to train, as the host reported.
    fn ofl_experiment_description_total_rounds(description: *const ofl_experiment_description) -> u32 {
        with_ref(description, 0, |d| d.total_rounds)
    } ?= 0
}

ffi_fn! {
    /// The current round, as the host reported.
    fn ofl_experiment_description_current_round(description: *const ofl_experiment_description) -> u32 {
        with_ref(description, 0, |d| d.current_round)
    } ?= 0
}

ffi_fn! {
    /// Number of collaborators.
    fn ofl_experiment_description_collaborators_len(description: *const ofl_experiment_description) -> usize {
        with_ref(description, 0, |d| d.collaborators.len())
    } ?= 0
}

ffi_fn! {
    /// Name of collaborator `index`; NULL when out of range.
    fn ofl_experiment_description_collaborator_name(description: *const ofl_experiment_description, index: usize) -> *const c_char {
        with_collaborator(description, index, std::ptr::null(), |c| c.name.as_ptr())
    } ?= std::ptr::null()
}

ffi_fn! {
    /// Status of collaborator `index` ("pending", "running" once it
    /// downloaded the archive, "finished", "failed"); NULL when out of range.
    fn ofl_experiment_description_collaborator_status(description: *const ofl_experiment_description, index: usize) -> *const c_char {
        with_collaborator(description, index, std::ptr::null(), |c| c.status.as_ptr())
    } ?= std::ptr::null()
}

ffi_fn! {
    /// Progress of collaborator `index`, 0 to 1; 0 when out of range.
    fn ofl_experiment_description_collaborator_progress(description: *const ofl_experiment_description, index: usize) -> f32 {
        with_collaborator(description, index, 0.0, |c| c.progress)
    } ?= 0.0
}

ffi_fn! {
    /// Round of collaborator `index`; 0 when out of range.
    fn ofl_experiment_description_collaborator_round(description: *const ofl_experiment_description, index: usize) -> u32 {
        with_collaborator(description, index, 0, |c| c.round)
    } ?= 0
}

ffi_fn! {
    /// Current task of collaborator `index` ("" when unknown); NULL when out
    /// of range.
    fn ofl_experiment_description_collaborator_current_task(description: *const ofl_experiment_description, index: usize) -> *const c_char {
        with_collaborator(description, index, std::ptr::null(), |c| c.current_task.as_ptr())
    } ?= std::ptr::null()
}

ffi_fn! {
    /// Next task of collaborator `index` ("" when unknown); NULL when out of
    /// range.
    fn ofl_experiment_description_collaborator_next_task(description: *const ofl_experiment_description, index: usize) -> *const c_char {
        with_collaborator(description, index, std::ptr::null(), |c| c.next_task.as_ptr())
    } ?= std::ptr::null()
}

ffi_fn! {
    /// Number of tasks (as the host set them).
    fn ofl_experiment_description_tasks_len(description: *const ofl_experiment_description) -> usize {
        with_ref(description, 0, |d| d.tasks.len())
    } ?= 0
}

ffi_fn! {
    /// Name of task `index`; NULL when out of range.
    fn ofl_experiment_description_task_name(description: *const ofl_experiment_description, index: usize) -> *const c_char {
        pair_ptr(description, index, tasks, false)
    } ?= std::ptr::null()
}

ffi_fn! {
    /// Description of task `index`; NULL when out of range.
    fn ofl_experiment_description_task_description(description: *const ofl_experiment_description, index: usize) -> *const c_char {
        pair_ptr(description, index, tasks, true)
    } ?= std::ptr::null()
}

ffi_fn! {
    /// Number of model download statuses ("best", "last", "init").
    fn ofl_experiment_description_models_len(description: *const ofl_experiment_description) -> usize {
        with_ref(description, 0, |d| d.models.len())
    } ?= 0
}

ffi_fn! {
    /// Name of model `index` ("best", "last" or "init"); NULL when out of
    /// range.
    fn ofl_experiment_description_model_name(description: *const ofl_experiment_description, index: usize) -> *const c_char {
        pair_ptr(description, index, models, false)
    } ?= std::ptr::null()
}

ffi_fn! {
    /// Download status of model `index` ("ready" or "pending"); NULL when
    /// out of range.
    fn ofl_experiment_description_model_status(description: *const ofl_experiment_description, index: usize) -> *const c_char {
        pair_ptr(description, index, models, true)
    } ?= std::ptr::null()
}

ffi_fn! {
    /// Number of log download statuses.
    fn ofl_experiment_description_logs_len(description: *const ofl_experiment_description) -> usize {
        with_ref(description, 0, |d| d.logs.len())
    } ?= 0
}

ffi_fn! {
    /// Name of log `index` (e.g. "aggregator"); NULL when out of range.
    fn ofl_experiment_description_log_name(description: *const ofl_experiment_description, index: usize) -> *const c_char {
        pair_ptr(description, index, logs, false)
    } ?= std::ptr::null()
}

ffi_fn! {
    /// Download status of log `index`; NULL when out of range.
    fn ofl_experiment_description_log_status(description: *const ofl_experiment_description, index: usize) -> *const c_char {
        pair_ptr(description, index, logs, true)
    } ?= std::ptr::null()
}

ffi_fn! {
    /// Frees an experiment description. NULL is a no-op.
    fn ofl_experiment_description_free(description: *mut ofl_experiment_description) {
        free_boxed(description)
    }
}
