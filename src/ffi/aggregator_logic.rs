//! Aggregation logic written in C: `ofl_aggregator_callbacks` (function
//! pointers + `user_data` + `free_user_data`) as an [`AggregatorLogic`], and
//! the objects callbacks read (`ofl_tensor_request`, `ofl_task_results`) and
//! fill (`ofl_reply`).

use std::ffi::{c_char, c_void, CString};

use bytes::Bytes;

use super::boundary::{arg_mut, arg_opt_str, arg_ref, arg_str, c_string, call, value};
use super::error::ofl_error;
use super::tensor::{copied_data, named_tensor_from_view, ofl_tensor, ofl_tensor_view};
use crate::aggregator::{AggregatorLogic, Federation, TaskResults, TasksReply, TensorRequest};
use crate::error::{ofl_code, Error, Result};
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

/// One upload of task results, as the send_local_task_results callback
/// reads it: valid during the callback only; tensors are `ofl_tensor`s
/// (read them with the `ofl_tensor_*` accessors; do not free them).
#[allow(non_camel_case_types)]
pub struct ofl_task_results {
    round_number: i32,
    task_name: CString,
    data_size: i32,
    tensors: Vec<ofl_tensor>,
}

/// What a callback answers: tasks (get_tasks), a tensor
/// (get_aggregated_tensor), and for any callback an error message to go with
/// a non-OK return code. Owned by the library; valid during the callback.
#[allow(non_camel_case_types)]
#[derive(Default)]
pub struct ofl_reply {
    tasks: TasksReply,
    tensor: Option<NamedTensor>,
    error_message: Option<String>,
}

/// A callback returns `OFL_CODE_OK` (0) on success, or another `ofl_code`
/// value: the peer then gets that gRPC error with the reply's error message.
#[allow(non_camel_case_types)]
pub type ofl_get_tasks_fn =
    Option<extern "C" fn(user_data: *mut c_void, collaborator_name: *const c_char, reply: *mut ofl_reply) -> i32>;

/// Serves an aggregated tensor: set it with `ofl_reply_set_tensor` (or
/// `ofl_reply_set_tensor_borrowed`) and return `OFL_CODE_OK`.
#[allow(non_camel_case_types)]
pub type ofl_get_aggregated_tensor_fn = Option<
    extern "C" fn(
        user_data: *mut c_void,
        collaborator_name: *const c_char,
        request: *const ofl_tensor_request,
        reply: *mut ofl_reply,
    ) -> i32,
>;

/// Takes task results; tensor data is valid during the call only (copy what
/// you keep).
#[allow(non_camel_case_types)]
pub type ofl_send_local_task_results_fn = Option<
    extern "C" fn(
        user_data: *mut c_void,
        collaborator_name: *const c_char,
        results: *const ofl_task_results,
        reply: *mut ofl_reply,
    ) -> i32,
>;

/// Returns true once every collaborator has been told to quit.
#[allow(non_camel_case_types)]
pub type ofl_all_quit_jobs_sent_fn = Option<extern "C" fn(user_data: *mut c_void) -> bool>;

/// Decides whether a certificate CN may speak for a header sender.
#[allow(non_camel_case_types)]
pub type ofl_valid_collaborator_fn =
    Option<extern "C" fn(user_data: *mut c_void, cert_common_name: *const c_char, sender: *const c_char) -> bool>;

/// The aggregation logic of a server, in C. Callbacks run on library
/// threads, possibly several at once (one per concurrent call): make them
/// thread-safe. They may block (e.g. until a tensor is ready): each blocked
/// callback holds a thread of the library's blocking pool, so the server lets
/// at most 8 calls of one collaborator and one RPC, and 256 in all, run
/// callbacks at once; further calls wait their turn without holding a
/// thread (never refused), so one collaborator cannot starve the others.
/// They must not call `ofl_aggregator_server_free` (use
/// `ofl_aggregator_server_stop`).
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct ofl_aggregator_callbacks {
    /// Passed to every callback.
    pub user_data: *mut c_void,
    /// Called exactly once with `user_data` when the server no longer needs
    /// it (after `ofl_aggregator_server_free`, or when the start fails). May be NULL.
    pub free_user_data: Option<extern "C" fn(user_data: *mut c_void)>,
    /// GetTasks (required): fill the reply with `ofl_reply_add_task`,
    /// `ofl_reply_set_round_number`, `ofl_reply_set_sleep_time`, `ofl_reply_set_quit`.
    pub get_tasks: ofl_get_tasks_fn,
    /// GetAggregatedTensor (required).
    pub get_aggregated_tensor: ofl_get_aggregated_tensor_fn,
    /// SendLocalTaskResults (required).
    pub send_local_task_results: ofl_send_local_task_results_fn,
    /// Asked periodically by `ofl_aggregator_server_serve`, which returns
    /// once it answers true. NULL: serve until stopped.
    pub all_quit_jobs_sent: ofl_all_quit_jobs_sent_fn,
    /// OpenFL's `valid_collaborator_cn_and_id`. NULL: OpenFL 1.6's rule (CN
    /// equals sender, or the single certificate CN; sender authorized).
    pub valid_collaborator_cn_and_id: ofl_valid_collaborator_fn,
}

/// `user_data` as the library carries it between threads.
struct UserData(*mut c_void);
// SAFETY: the C API documents that callbacks (the only users of `user_data`)
// run on library threads, concurrently; the host promises thread-safety.
unsafe impl Send for UserData {}
// SAFETY: as above.
unsafe impl Sync for UserData {}

/// An [`AggregatorLogic`] whose methods call C.
pub struct CallbackLogic {
    federation: Federation,
    user_data: UserData,
    free_user_data: Option<extern "C" fn(*mut c_void)>,
    get_tasks: extern "C" fn(*mut c_void, *const c_char, *mut ofl_reply) -> i32,
    get_aggregated_tensor: extern "C" fn(*mut c_void, *const c_char, *const ofl_tensor_request, *mut ofl_reply) -> i32,
    send_local_task_results: extern "C" fn(*mut c_void, *const c_char, *const ofl_task_results, *mut ofl_reply) -> i32,
    all_quit_jobs_sent: ofl_all_quit_jobs_sent_fn,
    valid_collaborator: ofl_valid_collaborator_fn,
}

/// Calls `free_user_data` if the callbacks are rejected before a
/// [`CallbackLogic`] owns them, so it runs exactly once either way.
pub(super) fn release(callbacks: &ofl_aggregator_callbacks) {
    if let Some(free) = callbacks.free_user_data {
        free(callbacks.user_data);
    }
}

fn required<T>(f: Option<T>, name: &str) -> Result<T> {
    f.ok_or_else(|| Error::invalid_argument(format!("callbacks.{name} is NULL")))
}

impl CallbackLogic {
    /// Takes ownership of `callbacks.user_data` (released exactly once, now
    /// if the callbacks are incomplete).
    pub fn new(federation: Federation, callbacks: &ofl_aggregator_callbacks) -> Result<Self> {
        let built = (|| {
            Ok(Self {
                federation,
                user_data: UserData(callbacks.user_data),
                free_user_data: callbacks.free_user_data,
                get_tasks: required(callbacks.get_tasks, "get_tasks")?,
                get_aggregated_tensor: required(callbacks.get_aggregated_tensor, "get_aggregated_tensor")?,
                send_local_task_results: required(callbacks.send_local_task_results, "send_local_task_results")?,
                all_quit_jobs_sent: callbacks.all_quit_jobs_sent,
                valid_collaborator: callbacks.valid_collaborator_cn_and_id,
            })
        })();
        if built.is_err() {
            release(callbacks);
        }
        built
    }

    fn ud(&self) -> *mut c_void {
        self.user_data.0
    }
}

/// The result of a callback: OK, or its code with the reply's message.
pub(crate) fn outcome(callback: &str, code: i32, reply: &mut ofl_reply) -> Result<()> {
    if code == 0 {
        return Ok(());
    }
    let code = ofl_code::from_i32(code).unwrap_or(ofl_code::Unknown);
    let message = reply.error_message.take().unwrap_or_else(|| format!("{callback} callback failed"));
    Err(Error::new(code, message))
}

impl AggregatorLogic for CallbackLogic {
    fn federation(&self) -> &Federation {
        &self.federation
    }

    fn valid_collaborator_cn_and_id(&self, cert_common_name: &str, sender: &str) -> bool {
        match self.valid_collaborator {
            Some(f) => f(self.ud(), c_string(cert_common_name).as_ptr(), c_string(sender).as_ptr()),
            None => self.federation.valid_collaborator_cn_and_id(cert_common_name, sender),
        }
    }

    fn certificate_may_speak(&self, cert_common_name: &str) -> bool {
        // A host-provided rule may accept any CN: leave the decision to it.
        self.valid_collaborator.is_some() || self.federation.certificate_may_speak(cert_common_name)
    }

    fn get_tasks(&self, collaborator: &str) -> Result<TasksReply> {
        let mut reply = ofl_reply::default();
        let code = (self.get_tasks)(self.ud(), c_string(collaborator).as_ptr(), &mut reply);
        outcome("get_tasks", code, &mut reply)?;
        Ok(reply.tasks)
    }

    fn get_aggregated_tensor(&self, collaborator: &str, request: &TensorRequest) -> Result<NamedTensor> {
        let name = c_string(&request.tensor_name);
        let tags: Vec<CString> = request.tags.iter().map(|t| c_string(t)).collect();
        let tag_ptrs: Vec<*const c_char> = tags.iter().map(|t| t.as_ptr()).collect();
        let c_request = ofl_tensor_request {
            tensor_name: name.as_ptr(),
            round_number: request.round_number,
            report: request.report,
            tags: tag_ptrs.as_ptr(),
            tags_len: tag_ptrs.len(),
            require_lossless: request.require_lossless,
        };
        let mut reply = ofl_reply::default();
        let code = (self.get_aggregated_tensor)(self.ud(), c_string(collaborator).as_ptr(), &c_request, &mut reply);
        outcome("get_aggregated_tensor", code, &mut reply)?;
        reply.tensor.ok_or_else(|| {
            Error::new(ofl_code::Internal, "get_aggregated_tensor callback returned OK without setting a tensor")
        })
    }

    fn send_local_task_results(&self, collaborator: &str, results: TaskResults) -> Result<()> {
        let c_results = ofl_task_results {
            round_number: results.round_number,
            task_name: c_string(&results.task_name),
            data_size: results.data_size,
            tensors: results.tensors.into_iter().map(ofl_tensor::new).collect(),
        };
        let mut reply = ofl_reply::default();
        let code = (self.send_local_task_results)(self.ud(), c_string(collaborator).as_ptr(), &c_results, &mut reply);
        outcome("send_local_task_results", code, &mut reply)
    }

    fn all_quit_jobs_sent(&self) -> bool {
        self.all_quit_jobs_sent.is_some_and(|f| f(self.ud()))
    }
}

impl Drop for CallbackLogic {
    fn drop(&mut self) {
        if let Some(free) = self.free_user_data {
            free(self.ud());
        }
    }
}

fn reply_mut<'a>(reply: *mut ofl_reply) -> Result<&'a mut ofl_reply> {
    arg_mut(reply, "reply")
}

/// Adds a task to a get_tasks reply (OpenFL's `Task`: name, function name,
/// type, apply_local). `function_name` and `task_type` may be NULL for "".
#[no_mangle]
pub extern "C" fn ofl_reply_add_task(
    reply: *mut ofl_reply,
    name: *const c_char,
    function_name: *const c_char,
    task_type: *const c_char,
    apply_local: bool,
) -> *mut ofl_error {
    call("ofl_reply_add_task", || {
        let task = Task {
            name: arg_str(name, "name")?.to_owned(),
            function_name: arg_opt_str(function_name, "function_name")?.unwrap_or("").to_owned(),
            task_type: arg_opt_str(task_type, "task_type")?.unwrap_or("").to_owned(),
            apply_local,
        };
        reply_mut(reply)?.tasks.tasks.push(task);
        Ok(())
    })
}

/// Sets the round number of a get_tasks reply.
#[no_mangle]
pub extern "C" fn ofl_reply_set_round_number(reply: *mut ofl_reply, round_number: i32) -> *mut ofl_error {
    call("ofl_reply_set_round_number", || {
        reply_mut(reply)?.tasks.round_number = round_number;
        Ok(())
    })
}

/// Sets the sleep time (seconds) of a get_tasks reply.
#[no_mangle]
pub extern "C" fn ofl_reply_set_sleep_time(reply: *mut ofl_reply, seconds: i32) -> *mut ofl_error {
    call("ofl_reply_set_sleep_time", || {
        reply_mut(reply)?.tasks.sleep_time = seconds;
        Ok(())
    })
}

/// Sets the quit flag of a get_tasks reply.
#[no_mangle]
pub extern "C" fn ofl_reply_set_quit(reply: *mut ofl_reply, quit: bool) -> *mut ofl_error {
    call("ofl_reply_set_quit", || {
        reply_mut(reply)?.tasks.quit = quit;
        Ok(())
    })
}

/// Sets the tensor of a get_aggregated_tensor reply, copying `tensor` (its
/// data included) so the caller may free it after this returns.
#[no_mangle]
pub extern "C" fn ofl_reply_set_tensor(reply: *mut ofl_reply, tensor: *const ofl_tensor_view) -> *mut ofl_error {
    call("ofl_reply_set_tensor", || {
        let view = arg_ref(tensor, "tensor")?;
        let named = named_tensor_from_view(view, copied_data(view)?)?;
        reply_mut(reply)?.tensor = Some(named);
        Ok(())
    })
}

/// Called with `context` when the library no longer reads borrowed data.
#[allow(non_camel_case_types)]
pub type ofl_release_fn = Option<extern "C" fn(context: *mut c_void)>;

/// Keeps borrowed tensor data alive until the library is done with it.
struct BorrowedData {
    data: *const u8,
    len: usize,
    release: ofl_release_fn,
    context: UserData,
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
        // valid by the caller until `release` runs in `drop`.
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }
}

impl Drop for BorrowedData {
    fn drop(&mut self) {
        if let Some(release) = self.release {
            release(self.context.0);
        }
    }
}

/// Sets the tensor of a get_aggregated_tensor reply without copying its
/// data: the library reads `tensor->data` until it has sent the reply, then
/// calls `release(release_context)` exactly once, from any thread (also when
/// this function fails). Other fields are copied now.
#[no_mangle]
pub extern "C" fn ofl_reply_set_tensor_borrowed(
    reply: *mut ofl_reply,
    tensor: *const ofl_tensor_view,
    release: ofl_release_fn,
    release_context: *mut c_void,
) -> *mut ofl_error {
    call("ofl_reply_set_tensor_borrowed", || {
        let guard = BorrowedData { data: std::ptr::null(), len: 0, release, context: UserData(release_context) };
        let view = arg_ref(tensor, "tensor")?;
        if view.data.is_null() && view.data_len > 0 {
            return Err(Error::invalid_argument("tensor.data is NULL but its length is not 0"));
        }
        let mut owner = guard;
        owner.data = view.data;
        owner.len = view.data_len;
        let named = named_tensor_from_view(view, Bytes::from_owner(owner))?;
        reply_mut(reply)?.tensor = Some(named);
        Ok(())
    })
}

/// Sets the message that goes with a non-OK return code (copied).
#[no_mangle]
pub extern "C" fn ofl_reply_set_error_message(reply: *mut ofl_reply, message: *const c_char) -> *mut ofl_error {
    call("ofl_reply_set_error_message", || {
        let message = arg_str(message, "message")?.to_owned();
        reply_mut(reply)?.error_message = Some(message);
        Ok(())
    })
}

fn with_results<T: Copy>(results: *const ofl_task_results, default: T, f: impl FnOnce(&ofl_task_results) -> T) -> T {
    value(default, || {
        // SAFETY: NULL or the live object passed to the callback (documented).
        match unsafe { results.as_ref() } {
            Some(r) => f(r),
            None => default,
        }
    })
}

/// Round of the results.
#[no_mangle]
pub extern "C" fn ofl_task_results_round_number(results: *const ofl_task_results) -> i32 {
    with_results(results, 0, |r| r.round_number)
}

/// Name of the task that produced the results.
#[no_mangle]
pub extern "C" fn ofl_task_results_task_name(results: *const ofl_task_results) -> *const c_char {
    with_results(results, c"".as_ptr(), |r| r.task_name.as_ptr())
}

/// Number of samples the results were computed on.
#[no_mangle]
pub extern "C" fn ofl_task_results_data_size(results: *const ofl_task_results) -> i32 {
    with_results(results, 0, |r| r.data_size)
}

/// Number of tensors.
#[no_mangle]
pub extern "C" fn ofl_task_results_tensors_len(results: *const ofl_task_results) -> usize {
    with_results(results, 0, |r| r.tensors.len())
}

/// Tensor `index` (borrowed: valid during the callback; do not free); NULL
/// when out of range.
#[no_mangle]
pub extern "C" fn ofl_task_results_tensor(results: *const ofl_task_results, index: usize) -> *const ofl_tensor {
    with_results(results, std::ptr::null(), |r| r.tensors.get(index).map_or(std::ptr::null(), |t| t as *const _))
}
