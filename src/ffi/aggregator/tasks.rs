//! The GetTasks answer as a C collaborator reads it (`ofl_tasks`).

use std::ffi::{c_char, CString};

use crate::ffi::boundary::{c_string, ffi_fn, free_boxed, with_ref};
use crate::aggregator::TasksReply;

/// One task of an `ofl_tasks`, with C strings.
struct TaskStrings {
    name: CString,
    function_name: CString,
    task_type: CString,
    apply_local: bool,
}

/// The answer to GetTasks: round, tasks, sleep time, quit. Owned by the
/// caller; free with `ofl_tasks_free`. Strings live as long as the object.
#[allow(non_camel_case_types)]
pub struct ofl_tasks {
    reply: TasksReply,
    tasks: Vec<TaskStrings>,
}

impl ofl_tasks {
    /// Wraps a reply.
    pub fn new(reply: TasksReply) -> Self {
        let tasks = reply
            .tasks
            .iter()
            .map(|t| TaskStrings {
                name: c_string(&t.name),
                function_name: c_string(&t.function_name),
                task_type: c_string(&t.task_type),
                apply_local: t.apply_local,
            })
            .collect();
        Self { reply, tasks }
    }
}

fn task_field(tasks: *const ofl_tasks, index: usize, f: impl Fn(&TaskStrings) -> *const c_char) -> *const c_char {
    with_ref(tasks, std::ptr::null(), |t| t.tasks.get(index).map_or(std::ptr::null(), f))
}

ffi_fn! {
    /// The round the tasks belong to.
    fn ofl_tasks_round_number(tasks: *const ofl_tasks) -> i32 {
        with_ref(tasks, 0, |t| t.reply.round_number)
    } ?= 0
}

ffi_fn! {
    /// Seconds to wait before asking again (when there are no tasks).
    fn ofl_tasks_sleep_time(tasks: *const ofl_tasks) -> i32 {
        with_ref(tasks, 0, |t| t.reply.sleep_time)
    } ?= 0
}

ffi_fn! {
    /// Whether the collaborator must quit.
    fn ofl_tasks_quit(tasks: *const ofl_tasks) -> bool {
        with_ref(tasks, false, |t| t.reply.quit)
    } ?= false
}

ffi_fn! {
    /// Number of tasks.
    fn ofl_tasks_len(tasks: *const ofl_tasks) -> usize {
        with_ref(tasks, 0, |t| t.tasks.len())
    } ?= 0
}

ffi_fn! {
    /// Name of task `index`; NULL when out of range.
    fn ofl_tasks_name(tasks: *const ofl_tasks, index: usize) -> *const c_char {
        task_field(tasks, index, |t| t.name.as_ptr())
    } ?= std::ptr::null()
}

ffi_fn! {
    /// Function name of task `index` (e.g. "train_task"); NULL when out of range.
    fn ofl_tasks_function_name(tasks: *const ofl_tasks, index: usize) -> *const c_char {
        task_field(tasks, index, |t| t.function_name.as_ptr())
    } ?= std::ptr::null()
}

ffi_fn! {
    /// Type of task `index` (e.g. "train"); NULL when out of range.
    fn ofl_tasks_task_type(tasks: *const ofl_tasks, index: usize) -> *const c_char {
        task_field(tasks, index, |t| t.task_type.as_ptr())
    } ?= std::ptr::null()
}

ffi_fn! {
    /// Whether task `index` applies to the locally tuned model; false when out of range.
    fn ofl_tasks_apply_local(tasks: *const ofl_tasks, index: usize) -> bool {
        with_ref(tasks, false, |t| t.tasks.get(index).is_some_and(|t| t.apply_local))
    } ?= false
}

ffi_fn! {
    /// Frees the object. NULL is a no-op.
    fn ofl_tasks_free(tasks: *mut ofl_tasks) {
        free_boxed(tasks)
    }
}
