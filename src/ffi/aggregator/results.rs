//! `ofl_task_results`: one upload of task results as the
//! send_local_task_results callback reads it.

use std::ffi::{c_char, CString};

use crate::aggregator::TaskResults;
use crate::ffi::boundary::{c_string, ffi_fn, with_ref};
use crate::ffi::tensor::ofl_tensor;

/// One upload of task results: valid during the callback only; tensors are
/// `ofl_tensor`s (read them with the `ofl_tensor_*` accessors; do not free
/// them), their data 64-byte aligned and not copied since it was received.
#[allow(non_camel_case_types)]
pub struct ofl_task_results {
    round_number: i32,
    task_name: CString,
    data_size: i32,
    tensors: Vec<ofl_tensor>,
}

impl ofl_task_results {
    /// The C view of received results.
    pub(super) fn new(results: TaskResults) -> Self {
        Self {
            round_number: results.round_number,
            task_name: c_string(&results.task_name),
            data_size: results.data_size,
            tensors: results.tensors.into_iter().map(ofl_tensor::new).collect(),
        }
    }
}

ffi_fn! {
    /// Round of the results.
    fn ofl_task_results_round_number(results: *const ofl_task_results) -> i32 {
        with_ref(results, 0, |r| r.round_number)
    } ?= 0
}

ffi_fn! {
    /// Name of the task that produced the results. NULL gives "".
    fn ofl_task_results_task_name(results: *const ofl_task_results) -> *const c_char {
        with_ref(results, c"".as_ptr(), |r| r.task_name.as_ptr())
    } ?= c"".as_ptr()
}

ffi_fn! {
    /// Number of samples the results were computed on.
    fn ofl_task_results_data_size(results: *const ofl_task_results) -> i32 {
        with_ref(results, 0, |r| r.data_size)
    } ?= 0
}

ffi_fn! {
    /// Number of tensors.
    fn ofl_task_results_tensors_len(results: *const ofl_task_results) -> usize {
        with_ref(results, 0, |r| r.tensors.len())
    } ?= 0
}

ffi_fn! {
    /// Tensor `index` (borrowed: valid during the callback; do not free);
    /// NULL when out of range. Its data starts on a 64-byte boundary (see
    /// `ofl_tensor_data`).
    fn ofl_task_results_tensor(results: *const ofl_task_results, index: usize) -> *const ofl_tensor {
        with_ref(results, std::ptr::null(), |r| r.tensors.get(index).map_or(std::ptr::null(), |t| t as *const _))
    } ?= std::ptr::null()
}
