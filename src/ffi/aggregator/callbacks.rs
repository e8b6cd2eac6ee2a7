//! `ofl_aggregator_callbacks`: the aggregation logic a host writes in C,
//! registered with one setter per callback on an opaque object, so that a
//! later release can add a callback without breaking binaries.

use std::ffi::{c_char, c_void};
use std::sync::Arc;

use super::may_block::MayBlock;
use super::reply::{ofl_reply, ofl_tensor_request};
use super::results::ofl_task_results;
use crate::error::{Error, Result};
use crate::ffi::boundary::{arg_mut, check_out, ffi_fn, free_boxed, write_out};
use crate::ffi::error::ofl_error;
use crate::ffi::foreign_data::{ofl_free_fn, ForeignData};

/// GetTasks: fill `reply` with `ofl_reply_add_task`,
/// `ofl_reply_set_round_number`, `ofl_reply_set_sleep_time`,
/// `ofl_reply_set_quit`, and return NULL; or return an error made with
/// `ofl_error_new` (the library takes it): the collaborator gets its code
/// and message as the gRPC status.
#[allow(non_camel_case_types)]
pub type ofl_get_tasks_fn =
    Option<extern "C" fn(user_data: *mut c_void, collaborator_name: *const c_char, reply: *mut ofl_reply) -> *mut ofl_error>;

/// GetAggregatedTensor: set the tensor with `ofl_reply_set_tensor` (or
/// `ofl_reply_set_tensor_borrowed`) and return NULL, or return an error.
#[allow(non_camel_case_types)]
pub type ofl_get_aggregated_tensor_fn = Option<
    extern "C" fn(
        user_data: *mut c_void,
        collaborator_name: *const c_char,
        request: *const ofl_tensor_request,
        reply: *mut ofl_reply,
    ) -> *mut ofl_error,
>;

/// SendLocalTaskResults: read the results (valid during the call only; copy
/// what you keep) and return NULL, or return an error. Each tensor's data
/// starts on a 64-byte boundary: read it in place as `const float *`.
#[allow(non_camel_case_types)]
pub type ofl_send_local_task_results_fn = Option<
    extern "C" fn(user_data: *mut c_void, collaborator_name: *const c_char, results: *const ofl_task_results) -> *mut ofl_error,
>;

/// Answers whether every collaborator has been told to quit.
#[allow(non_camel_case_types)]
pub type ofl_all_quit_jobs_sent_fn = Option<extern "C" fn(user_data: *mut c_void) -> bool>;

/// Answers whether a certificate CN may speak for a header sender.
#[allow(non_camel_case_types)]
pub type ofl_valid_collaborator_fn =
    Option<extern "C" fn(user_data: *mut c_void, cert_common_name: *const c_char, sender: *const c_char) -> bool>;

/// The aggregation logic of a server, in C: made with
/// `ofl_aggregator_callbacks_new`, filled with the `_set_*` functions, given
/// to `ofl_aggregator_server_start` (which copies the function pointers and
/// shares the user data), then freed with `ofl_aggregator_callbacks_free`
/// (also right after the start). Not thread-safe: configure from one thread.
///
/// Callbacks run on library threads, possibly several at once (one per
/// concurrent call): make them thread-safe. They may block (e.g. until a
/// tensor is ready): each blocked callback holds a thread of the library's
/// blocking pool, so the server lets at most 8 calls of one collaborator and
/// one RPC, and 256 in all, run callbacks at once; further calls wait their
/// turn without holding a thread (never refused), so one collaborator cannot
/// starve the others. They must not call `ofl_aggregator_server_free` (use
/// `ofl_aggregator_server_stop`).
///
/// A callback that never blocks can say so with
/// `ofl_aggregator_callbacks_set_may_block(callbacks, call, false)`: it then
/// runs on one of the library's async worker threads (no thread hand-off per
/// call) and must return promptly (brief locks, computation); blocking in it
/// stalls every connection served by that worker. Such callbacks are not
/// bounded by the 8-per-collaborator/256 limits.
#[allow(non_camel_case_types)]
pub struct ofl_aggregator_callbacks {
    user_data: Arc<ForeignData>,
    get_tasks: ofl_get_tasks_fn,
    get_aggregated_tensor: ofl_get_aggregated_tensor_fn,
    send_local_task_results: ofl_send_local_task_results_fn,
    all_quit_jobs_sent: ofl_all_quit_jobs_sent_fn,
    valid_collaborator: ofl_valid_collaborator_fn,
    pub(super) may_block: MayBlock,
}

/// The callbacks a started server uses: required ones checked present.
pub(super) struct CallbackSet {
    pub user_data: Arc<ForeignData>,
    pub get_tasks: extern "C" fn(*mut c_void, *const c_char, *mut ofl_reply) -> *mut ofl_error,
    pub get_aggregated_tensor:
        extern "C" fn(*mut c_void, *const c_char, *const ofl_tensor_request, *mut ofl_reply) -> *mut ofl_error,
    pub send_local_task_results: extern "C" fn(*mut c_void, *const c_char, *const ofl_task_results) -> *mut ofl_error,
    pub all_quit_jobs_sent: ofl_all_quit_jobs_sent_fn,
    pub valid_collaborator: ofl_valid_collaborator_fn,
    pub may_block: MayBlock,
}

fn required<T>(f: Option<T>, name: &str) -> Result<T> {
    f.ok_or_else(|| {
        Error::invalid_argument(format!("the {name} callback is not set: call ofl_aggregator_callbacks_set_{name}"))
    })
}

impl ofl_aggregator_callbacks {
    /// What a server started now uses (sharing the user data), or
    /// INVALID_ARGUMENT naming the setter of a missing required callback.
    pub(super) fn checked(&self) -> Result<CallbackSet> {
        Ok(CallbackSet {
            user_data: Arc::clone(&self.user_data),
            get_tasks: required(self.get_tasks, "get_tasks")?,
            get_aggregated_tensor: required(self.get_aggregated_tensor, "get_aggregated_tensor")?,
            send_local_task_results: required(self.send_local_task_results, "send_local_task_results")?,
            all_quit_jobs_sent: self.all_quit_jobs_sent,
            valid_collaborator: self.valid_collaborator,
            may_block: self.may_block,
        })
    }
}

fn callbacks_mut<'a>(callbacks: *mut ofl_aggregator_callbacks) -> Result<&'a mut ofl_aggregator_callbacks> {
    arg_mut(callbacks, "callbacks")
}

ffi_fn! {
    /// A new, empty callback set (no user data, no callbacks, every callback
    /// may block), written to `*out`.
    fn ofl_aggregator_callbacks_new(out: *mut *mut ofl_aggregator_callbacks) -> *mut ofl_error {
        check_out(out, "out")?;
        write_out(
            out,
            ofl_aggregator_callbacks {
                user_data: Arc::new(ForeignData::none()),
                get_tasks: None,
                get_aggregated_tensor: None,
                send_local_task_results: None,
                all_quit_jobs_sent: None,
                valid_collaborator: None,
                may_block: MayBlock::default(),
            },
        );
        Ok(())
    }
}

ffi_fn! {
    /// Frees the callback set. Servers started with it keep what they use;
    /// the user data is freed when the last of them and this set are gone.
    /// NULL is a no-op.
    fn ofl_aggregator_callbacks_free(callbacks: *mut ofl_aggregator_callbacks) {
        free_boxed(callbacks)
    }
}

ffi_fn! {
    /// The pointer passed to every callback, and its destructor (may be
    /// NULL). From this call the library owns it: `free_user_data(user_data)`
    /// runs exactly once, when neither this set nor any server started with
    /// it uses it any more (after `ofl_aggregator_server_free` and
    /// `ofl_aggregator_callbacks_free`; a failed start keeps nothing), on
    /// whichever thread that happens; also at once when `callbacks` is NULL
    /// (the error is INVALID_ARGUMENT). Setting it again releases the
    /// previous one the same way.
    fn ofl_aggregator_callbacks_set_user_data(
        callbacks: *mut ofl_aggregator_callbacks,
        user_data: *mut c_void,
        free_user_data: ofl_free_fn,
    ) -> *mut ofl_error {
        let data = Arc::new(ForeignData::new(user_data, free_user_data));
        callbacks_mut(callbacks)?.user_data = data;
        Ok(())
    }
}

ffi_fn! {
    /// GetTasks (required; NULL unsets it).
    fn ofl_aggregator_callbacks_set_get_tasks(callbacks: *mut ofl_aggregator_callbacks, get_tasks: ofl_get_tasks_fn) -> *mut ofl_error {
        callbacks_mut(callbacks)?.get_tasks = get_tasks;
        Ok(())
    }
}

ffi_fn! {
    /// GetAggregatedTensor (required; NULL unsets it).
    fn ofl_aggregator_callbacks_set_get_aggregated_tensor(
        callbacks: *mut ofl_aggregator_callbacks,
        get_aggregated_tensor: ofl_get_aggregated_tensor_fn,
    ) -> *mut ofl_error {
        callbacks_mut(callbacks)?.get_aggregated_tensor = get_aggregated_tensor;
        Ok(())
    }
}

ffi_fn! {
    /// SendLocalTaskResults (required; NULL unsets it).
    fn ofl_aggregator_callbacks_set_send_local_task_results(
        callbacks: *mut ofl_aggregator_callbacks,
        send_local_task_results: ofl_send_local_task_results_fn,
    ) -> *mut ofl_error {
        callbacks_mut(callbacks)?.send_local_task_results = send_local_task_results;
        Ok(())
    }
}

ffi_fn! {
    /// Asked periodically by `ofl_aggregator_server_serve`, which returns
    /// once it answers true. Not set (or NULL): serve until stopped.
    fn ofl_aggregator_callbacks_set_all_quit_jobs_sent(
        callbacks: *mut ofl_aggregator_callbacks,
        all_quit_jobs_sent: ofl_all_quit_jobs_sent_fn,
    ) -> *mut ofl_error {
        callbacks_mut(callbacks)?.all_quit_jobs_sent = all_quit_jobs_sent;
        Ok(())
    }
}

ffi_fn! {
    /// OpenFL's `valid_collaborator_cn_and_id`. Not set (or NULL): OpenFL
    /// 1.6's rule (CN equals sender, or the single certificate CN; sender
    /// authorized). Always called directly on an async worker thread, once
    /// per request, as a callback declared non-blocking is: it must return
    /// promptly.
    fn ofl_aggregator_callbacks_set_valid_collaborator_cn_and_id(
        callbacks: *mut ofl_aggregator_callbacks,
        valid_collaborator_cn_and_id: ofl_valid_collaborator_fn,
    ) -> *mut ofl_error {
        callbacks_mut(callbacks)?.valid_collaborator = valid_collaborator_cn_and_id;
        Ok(())
    }
}
