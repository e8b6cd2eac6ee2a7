//! The GetTasks answer as a C collaborator reads it (`ofl_tasks`).

use std::ffi::{c_char, CString};

use super::boundary::{c_string, free_boxed, value};
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

fn with_tasks<T: Copy>(tasks: *const ofl_tasks, default: T, f: impl FnOnce(&ofl_tasks) -> T) -> T {
    value(default, || {
        // SAFETY: NULL or a live object handed out by this library (documented).
        match unsafe { tasks.as_ref() } {
            Some(t) => f(t),
            None => default,
        }
    })
}

fn task_field(tasks: *const ofl_tasks, index: usize, f: impl Fn(&TaskStrings) -> *const c_char) -> *const c_char {
    with_tasks(tasks, std::ptr::null(), |t| t.tasks.get(index).map_or(std::ptr::null(), f))
}

/// The round the tasks belong to.
#[no_mangle]
pub extern "C" fn ofl_tasks_round_number(tasks: *const ofl_tasks) -> i32 {
    with_tasks(tasks, 0, |t| t.reply.round_number)
}

/// Seconds to wait before asking again (when there are no tasks).
#[no_mangle]
pub extern "C" fn ofl_tasks_sleep_time(tasks: *const ofl_tasks) -> i32 {
    with_tasks(tasks, 0, |t| t.reply.sleep_time)
}

/// Whether the collaborator must quit.
#[no_mangle]
pub extern "C" fn ofl_tasks_quit(tasks: *const ofl_tasks) -> bool {
    with_tasks(tasks, false, |t| t.reply.quit)
}

/// Number of tasks.
#[no_mangle]
pub extern "C" fn ofl_tasks_len(tasks: *const ofl_tasks) -> usize {
    with_tasks(tasks, 0, |t| t.tasks.len())
}

/// Name of task `index`; NULL when out of range.
#[no_mangle]
pub extern "C" fn ofl_tasks_name(tasks: *const ofl_tasks, index: usize) -> *const c_char {
    task_field(tasks, index, |t| t.name.as_ptr())
}

/// Function name of task `index` (e.g. "train_task"); NULL when out of range.
#[no_mangle]
pub extern "C" fn ofl_tasks_function_name(tasks: *const ofl_tasks, index: usize) -> *const c_char {
    task_field(tasks, index, |t| t.function_name.as_ptr())
}

/// Type of task `index` (e.g. "train"); NULL when out of range.
#[no_mangle]
pub extern "C" fn ofl_tasks_task_type(tasks: *const ofl_tasks, index: usize) -> *const c_char {
    task_field(tasks, index, |t| t.task_type.as_ptr())
}

/// Whether task `index` applies to the locally tuned model; false when out of range.
#[no_mangle]
pub extern "C" fn ofl_tasks_apply_local(tasks: *const ofl_tasks, index: usize) -> bool {
    with_tasks(tasks, false, |t| t.tasks.get(index).is_some_and(|t| t.apply_local))
}

/// Frees the object. NULL is a no-op.
#[no_mangle]
pub extern "C" fn ofl_tasks_free(tasks: *mut ofl_tasks) {
    value((), || free_boxed(tasks))
}
