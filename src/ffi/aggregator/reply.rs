//! What the aggregator callbacks read (`ofl_tensor_request`) and fill
//! (`ofl_reply`): tasks for get_tasks, a tensor for get_aggregated_tensor,
//! copied or borrowed (the borrowed memory's release is a [`ForeignData`]).

use std::ffi::{c_char, c_void};

use bytes::Bytes;

use crate::aggregator::TasksReply;
use crate::error::{Error, Result};
use crate::ffi::boundary::{arg_mut, arg_opt_str, arg_ref, arg_str, ffi_fn};
use crate::ffi::foreign_data::{ofl_free_fn, ForeignData};
use crate::ffi::tensor::{copied_data, named_tensor_from_view, ofl_tensor_view};
use crate::proto::aggregator::Task;
use crate::proto::NamedTensor;

/// What GetAggregatedTensor asks for; valid during the callback only.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct ofl_tensor_request {
    /// Tensor name.
    pub tensor_name: *const c_char,
    /// Round the tensor belongs to.
    pub round_number: i32,
    /// Whether a report (metric) tensor is asked for.
    pub report: bool,
    /// `tags_len` tags.
    pub tags: *const *const c_char,
    /// Number of tags.
    pub tags_len: usize,
    /// Whether the collaborator requires a lossless encoding.
    pub require_lossless: bool,
}

/// What a callback answers: tasks (get_tasks) or a tensor
/// (get_aggregated_tensor). Owned by the library; valid during the callback.
#[allow(non_camel_case_types)]
#[derive(Default)]
pub struct ofl_reply {
    pub(super) tasks: TasksReply,
    pub(super) tensor: Option<NamedTensor>,
}

fn reply_mut<'a>(reply: *mut ofl_reply) -> Result<&'a mut ofl_reply> {
    arg_mut(reply, "reply")
}

ffi_fn! {
    /// Adds a task to a get_tasks reply (OpenFL's `Task`: name, function
    /// name, type, apply_local). `function_name` and `task_type` may be NULL
    /// for "".
    fn ofl_reply_add_task(
        reply: *mut ofl_reply,
        name: *const c_char,
        function_name: *const c_char,
        task_type: *const c_char,
        apply_local: bool,
    ) -> *mut ofl_error {
        let task = Task {
            name: arg_str(name, "name")?.to_owned(),
            function_name: arg_opt_str(function_name, "function_name")?.unwrap_or("").to_owned(),
            task_type: arg_opt_str(task_type, "task_type")?.unwrap_or("").to_owned(),
            apply_local,
        };
        reply_mut(reply)?.tasks.tasks.push(task);
        Ok(())
    }
}

ffi_fn! {
    /// Sets the round number of a get_tasks reply.
    fn ofl_reply_set_round_number(reply: *mut ofl_reply, round_number: i32) -> *mut ofl_error {
        reply_mut(reply)?.tasks.round_number = round_number;
        Ok(())
    }
}

ffi_fn! {
    /// Sets the sleep time (seconds) of a get_tasks reply.
    fn ofl_reply_set_sleep_time(reply: *mut ofl_reply, seconds: i32) -> *mut ofl_error {
        reply_mut(reply)?.tasks.sleep_time = seconds;
        Ok(())
    }
}

ffi_fn! {
    /// Sets the quit flag of a get_tasks reply.
    fn ofl_reply_set_quit(reply: *mut ofl_reply, quit: bool) -> *mut ofl_error {
        reply_mut(reply)?.tasks.quit = quit;
        Ok(())
    }
}

ffi_fn! {
    /// Sets the tensor of a get_aggregated_tensor reply, copying `tensor`
    /// (its data included) so the caller may free it after this returns.
    fn ofl_reply_set_tensor(reply: *mut ofl_reply, tensor: *const ofl_tensor_view) -> *mut ofl_error {
        let view = arg_ref(tensor, "tensor")?;
        let named = named_tensor_from_view(view, copied_data(view)?)?;
        reply_mut(reply)?.tensor = Some(named);
        Ok(())
    }
}

/// Borrowed tensor bytes, kept valid by the host until `owner` (its release
/// function and context) is dropped.
struct BorrowedData {
    data: *const u8,
    len: usize,
    _owner: ForeignData,
}
// SAFETY: the data is only read, and the caller of
// `ofl_reply_set_tensor_borrowed` promises it stays valid and unchanged until
// `release` is called, from whichever thread.
unsafe impl Send for BorrowedData {}
// SAFETY: as above (read-only).
unsafe impl Sync for BorrowedData {}

impl AsRef<[u8]> for BorrowedData {
    fn as_ref(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: non-NULL (checked at creation), `len` readable bytes kept
        // valid by the caller until `release` runs when `_owner` drops.
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }
}

ffi_fn! {
    /// Sets the tensor of a get_aggregated_tensor reply without copying its
    /// data: the library reads `tensor->data` until it has sent the reply,
    /// then calls `release(release_context)` exactly once, from any thread
    /// (also when this function fails; `release` may be NULL). Other fields
    /// are copied now.
    fn ofl_reply_set_tensor_borrowed(
        reply: *mut ofl_reply,
        tensor: *const ofl_tensor_view,
        release: ofl_free_fn,
        release_context: *mut c_void,
    ) -> *mut ofl_error {
        // Owned from here: every error path below drops (releases) it.
        let owner = ForeignData::new(release_context, release);
        let view = arg_ref(tensor, "tensor")?;
        if view.data.is_null() && view.data_len > 0 {
            return Err(Error::invalid_argument("tensor.data is NULL but its length is not 0"));
        }
        let data = BorrowedData { data: view.data, len: view.data_len, _owner: owner };
        let named = named_tensor_from_view(view, Bytes::from_owner(data))?;
        reply_mut(reply)?.tensor = Some(named);
        Ok(())
    }
}
