//! `ofl_experiment`: a submitted experiment as the director's hooks see it.

use std::ffi::{c_char, CString};

use super::types::{item_ptr, ofl_tensor_list};
use crate::director::ExperimentDetails;
use crate::ffi::boundary::{c_string, ffi_fn, with_ref};

/// A submitted experiment as the hooks see it; valid during the hook only.
/// Read it with the `ofl_experiment_*` accessors.
#[allow(non_camel_case_types)]
pub struct ofl_experiment {
    name: CString,
    owner: CString,
    collaborators: Vec<CString>,
    archive_path: CString,
    archive_size: u64,
    initial_model: Option<ofl_tensor_list>,
}

impl ofl_experiment {
    /// The C view of an experiment's details (copied).
    pub fn new(details: &ExperimentDetails) -> Self {
        Self {
            name: c_string(&details.name),
            owner: c_string(&details.owner),
            collaborators: details.collaborators.iter().map(|c| c_string(c)).collect(),
            archive_path: c_string(&details.archive_path.to_string_lossy()),
            archive_size: details.archive_size,
            initial_model: details.initial_model.clone().map(ofl_tensor_list::new),
        }
    }
}

ffi_fn! {
    /// The experiment's name (what envoys get from WaitExperiment). NULL
    /// gives "".
    fn ofl_experiment_name(experiment: *const ofl_experiment) -> *const c_char {
        with_ref(experiment, c"".as_ptr(), |e| e.name.as_ptr())
    } ?= c"".as_ptr()
}

ffi_fn! {
    /// Who submitted it: the frontend's certificate CN (TLS) or `client_id`
    /// (default "__default__"). NULL gives "".
    fn ofl_experiment_owner(experiment: *const ofl_experiment) -> *const c_char {
        with_ref(experiment, c"".as_ptr(), |e| e.owner.as_ptr())
    } ?= c"".as_ptr()
}

ffi_fn! {
    /// Number of collaborators (envoys) that take part, without duplicates.
    fn ofl_experiment_collaborators_len(experiment: *const ofl_experiment) -> usize {
        with_ref(experiment, 0, |e| e.collaborators.len())
    } ?= 0
}

ffi_fn! {
    /// Collaborator `index`, in submission order; NULL when out of range.
    fn ofl_experiment_collaborator(experiment: *const ofl_experiment, index: usize) -> *const c_char {
        with_ref(experiment, std::ptr::null(), |e| item_ptr(&e.collaborators, index))
    } ?= std::ptr::null()
}

ffi_fn! {
    /// The path of the stored archive (the workspace the frontend uploaded).
    /// After a rejection or a removal the file is gone. NULL gives "".
    fn ofl_experiment_archive_path(experiment: *const ofl_experiment) -> *const c_char {
        with_ref(experiment, c"".as_ptr(), |e| e.archive_path.as_ptr())
    } ?= c"".as_ptr()
}

ffi_fn! {
    /// The archive's size in bytes.
    fn ofl_experiment_archive_size(experiment: *const ofl_experiment) -> u64 {
        with_ref(experiment, 0, |e| e.archive_size)
    } ?= 0
}

ffi_fn! {
    /// The initial model sent with the experiment (borrowed, valid during
    /// the hook; copy what you keep), or NULL when none was sent.
    fn ofl_experiment_initial_model(experiment: *const ofl_experiment) -> *const ofl_tensor_list {
        with_ref(experiment, std::ptr::null(), |e| {
            e.initial_model.as_ref().map_or(std::ptr::null(), |m| m as *const ofl_tensor_list)
        })
    } ?= std::ptr::null()
}
