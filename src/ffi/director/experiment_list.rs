//! `ofl_experiment_list`: a frontend's experiments (GetExperimentsList),
//! read by index.

use std::ffi::{c_char, CString};

use super::frontend_client::{frontend_arc, ofl_frontend_client};
use super::types::with_index;
use crate::ffi::boundary::{c_string, check_out, ffi_fn, free_boxed, with_ref, write_out};
use crate::ffi::call_options::{call_options, ofl_call_options};
use crate::proto::director::ExperimentListItem;
use crate::runtime;

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

ffi_fn! {
    /// GetExperimentsList: the experiments this frontend submitted, written
    /// to `*out` (free it with `ofl_experiment_list_free`).
    fn ofl_frontend_client_get_experiments_list(
        client: *const ofl_frontend_client,
        call: *const ofl_call_options,
        out: *mut *mut ofl_experiment_list,
    ) -> *mut ofl_error {
        check_out(out, "out")?;
        let client = frontend_arc(client)?;
        let options = call_options(call)?;
        let items = runtime::block_on(async move { client.get_experiments_list_with(&options).await })??;
        let items = items
            .into_iter()
            .map(|item| ListEntry { name: c_string(&item.name), status: c_string(&item.status), item })
            .collect();
        write_out(out, ofl_experiment_list { items });
        Ok(())
    }
}

/// Runs `f` on experiment `index`; `default` for NULL or out of range.
fn with_item<T>(
    list: *const ofl_experiment_list,
    index: usize,
    default: T,
    f: impl FnOnce(&ListEntry) -> T,
) -> T {
    with_index(list, index, default, |l| &l.items, f)
}

ffi_fn! {
    /// Number of experiments. 0 for NULL.
    fn ofl_experiment_list_len(list: *const ofl_experiment_list) -> usize {
        with_ref(list, 0, |l| l.items.len())
    } ?= 0
}

ffi_fn! {
    /// Name of experiment `index`; NULL when out of range.
    fn ofl_experiment_list_name(list: *const ofl_experiment_list, index: usize) -> *const c_char {
        with_item(list, index, std::ptr::null(), |i| i.name.as_ptr())
    } ?= std::ptr::null()
}

ffi_fn! {
    /// Status of experiment `index` as the wire carries it ("pending",
    /// "in_progress", "finished", "failed", "rejected"); NULL when out of
    /// range.
    fn ofl_experiment_list_status(list: *const ofl_experiment_list, index: usize) -> *const c_char {
        with_item(list, index, std::ptr::null(), |i| i.status.as_ptr())
    } ?= std::ptr::null()
}

ffi_fn! {
    /// Number of collaborators of experiment `index`; 0 when out of range.
    fn ofl_experiment_list_collaborators_amount(list: *const ofl_experiment_list, index: usize) -> u32 {
        with_item(list, index, 0, |i| i.item.collaborators_amount)
    } ?= 0
}

ffi_fn! {
    /// Number of tasks of experiment `index` (as the host set them); 0 when
    /// out of range.
    fn ofl_experiment_list_tasks_amount(list: *const ofl_experiment_list, index: usize) -> u32 {
        with_item(list, index, 0, |i| i.item.tasks_amount)
    } ?= 0
}

ffi_fn! {
    /// Progress of experiment `index`, 0 to 1 (current round / total rounds;
    /// 1 when finished); 0 when out of range.
    fn ofl_experiment_list_progress(list: *const ofl_experiment_list, index: usize) -> f32 {
        with_item(list, index, 0.0, |i| i.item.progress)
    } ?= 0.0
}

ffi_fn! {
    /// Frees an experiment list. NULL is a no-op.
    fn ofl_experiment_list_free(list: *mut ofl_experiment_list) {
        free_boxed(list)
    }
}
