//! The director's host hooks in C: `ofl_director_hooks` (function pointers,
//! `user_data` and `free_user_data`) as a [`DirectorHooks`], and the
//! experiment view hooks read (`ofl_experiment`).
//!
//! A gate guarantees what the header promises: no hook runs before
//! `ofl_director_server_start` has returned, none runs after
//! `ofl_director_server_free` has returned, and `free_user_data` runs exactly
//! once: in `ofl_director_server_free` after the last running hook returned,
//! or when the start fails.

use std::ffi::{c_char, c_void, CString};
use std::sync::{Condvar, Mutex, MutexGuard};

use super::aggregator::reply::{ofl_reply, outcome};
use super::boundary::c_string;
use super::director_types::{item_ptr, ofl_tensor_list, with_obj};
use crate::director::{DirectorHooks, ExperimentDetails, ExperimentFailure};
use crate::error::{ofl_code, Error, Result};

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
    fn new(details: &ExperimentDetails) -> Self {
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

/// The experiment's name (what envoys get from WaitExperiment). NULL gives "".
#[no_mangle]
pub extern "C" fn ofl_experiment_name(experiment: *const ofl_experiment) -> *const c_char {
    with_obj(experiment, c"".as_ptr(), |e| e.name.as_ptr())
}

/// Who submitted it: the frontend's certificate CN (TLS) or `client_id`
/// (default "__default__"). NULL gives "".
#[no_mangle]
pub extern "C" fn ofl_experiment_owner(experiment: *const ofl_experiment) -> *const c_char {
    with_obj(experiment, c"".as_ptr(), |e| e.owner.as_ptr())
}

/// Number of collaborators (envoys) that take part, without duplicates.
#[no_mangle]
pub extern "C" fn ofl_experiment_collaborators_len(experiment: *const ofl_experiment) -> usize {
    with_obj(experiment, 0, |e| e.collaborators.len())
}

/// Collaborator `index`, in submission order; NULL when out of range.
#[no_mangle]
pub extern "C" fn ofl_experiment_collaborator(experiment: *const ofl_experiment, index: usize) -> *const c_char {
    with_obj(experiment, std::ptr::null(), |e| item_ptr(&e.collaborators, index))
}

/// The path of the stored archive (the workspace the frontend uploaded).
/// After a rejection or a removal the file is gone. NULL gives "".
#[no_mangle]
pub extern "C" fn ofl_experiment_archive_path(experiment: *const ofl_experiment) -> *const c_char {
    with_obj(experiment, c"".as_ptr(), |e| e.archive_path.as_ptr())
}

/// The archive's size in bytes.
#[no_mangle]
pub extern "C" fn ofl_experiment_archive_size(experiment: *const ofl_experiment) -> u64 {
    with_obj(experiment, 0, |e| e.archive_size)
}

/// The initial model sent with the experiment (borrowed, valid during the
/// hook; copy what you keep), or NULL when none was sent.
#[no_mangle]
pub extern "C" fn ofl_experiment_initial_model(experiment: *const ofl_experiment) -> *const ofl_tensor_list {
    with_obj(experiment, std::ptr::null(), |e| {
        e.initial_model.as_ref().map_or(std::ptr::null(), |m| m as *const ofl_tensor_list)
    })
}

/// Reviews a submitted experiment (OpenFL's `review_plan_callback`): return
/// true to approve it, false to reject it (its archive is then deleted).
#[allow(non_camel_case_types)]
pub type ofl_review_experiment_fn =
    Option<extern "C" fn(user_data: *mut c_void, experiment: *const ofl_experiment) -> bool>;

/// An approved experiment starts: launch its aggregator for its
/// collaborators and return `OFL_CODE_OK` (0); the envoys receive the
/// experiment once this returns. Another `ofl_code` value marks the
/// experiment failed, with the message set by `ofl_reply_set_error_message`
/// (the only `ofl_reply_*` function that applies here).
#[allow(non_camel_case_types)]
pub type ofl_start_experiment_fn =
    Option<extern "C" fn(user_data: *mut c_void, experiment: *const ofl_experiment, reply: *mut ofl_reply) -> i32>;

/// An envoy reported the experiment failed (SetExperimentFailed): stop its
/// aggregator. `collaborator` is the envoy, `error_code` and `description`
/// what it reported; all valid during the call.
#[allow(non_camel_case_types)]
pub type ofl_experiment_failed_fn = Option<
    extern "C" fn(
        user_data: *mut c_void,
        experiment: *const ofl_experiment,
        collaborator: *const c_char,
        error_code: u32,
        description: *const c_char,
    ),
>;

/// What the director asks and tells its host. Every hook may be NULL (the
/// default: approve; nothing to start; nothing to stop); a NULL
/// `ofl_director_hooks *` means all defaults.
///
/// Hooks run on library threads, possibly several at once, never before
/// `ofl_director_server_start` has returned (so a host that passes
/// `&host->server` as `out` finds its server set) and never after
/// `ofl_director_server_free` has returned. One experiment is reviewed and
/// started at a time; the next is taken once it finished or failed. Hooks may
/// block (a review may wait for a human) and may call the
/// `ofl_director_server_*` progress functions and `ofl_director_server_stop`,
/// but not `ofl_director_server_free` (which waits for running hooks).
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct ofl_director_hooks {
    /// Passed to every hook.
    pub user_data: *mut c_void,
    /// Called exactly once with `user_data` when the server no longer needs
    /// it: in `ofl_director_server_free` (after running hooks returned), or
    /// before `ofl_director_server_start` returns an error. May be NULL.
    pub free_user_data: Option<extern "C" fn(user_data: *mut c_void)>,
    /// Approve or reject a submitted experiment. NULL approves everything.
    pub review_experiment: ofl_review_experiment_fn,
    /// Start an approved experiment. NULL: nothing to start (the envoys
    /// receive it; report its end with `ofl_director_server_mark_finished`).
    pub start_experiment: ofl_start_experiment_fn,
    /// An envoy failed the experiment. NULL: nothing to stop.
    pub experiment_failed: ofl_experiment_failed_fn,
}

/// `user_data` as the library carries it between threads.
struct UserData(*mut c_void);
// SAFETY: the C API documents that hooks (the only users of `user_data`)
// run on library threads, concurrently; the host promises thread-safety.
unsafe impl Send for UserData {}
// SAFETY: as above.
unsafe impl Sync for UserData {}

#[derive(Default)]
struct GateState {
    /// `ofl_director_server_start` has returned the server.
    open: bool,
    /// `ofl_director_server_free` began: no hook is called any more.
    closed: bool,
    /// Hooks running now.
    running: usize,
    /// `free_user_data` was called.
    released: bool,
}

/// The C hooks as a [`DirectorHooks`].
pub struct CallbackHooks {
    user_data: UserData,
    free_user_data: Option<extern "C" fn(*mut c_void)>,
    review: ofl_review_experiment_fn,
    start: ofl_start_experiment_fn,
    failed: ofl_experiment_failed_fn,
    gate: Mutex<GateState>,
    changed: Condvar,
}

/// A running hook; leaving it wakes a waiting `close`.
struct Running<'a>(&'a CallbackHooks);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.lock().running -= 1;
        self.0.changed.notify_all();
    }
}

impl CallbackHooks {
    /// Takes ownership of `hooks.user_data` (NULL `hooks`: the defaults).
    pub fn new(hooks: Option<&ofl_director_hooks>) -> Self {
        let (user_data, free_user_data, review, start, failed) = match hooks {
            Some(h) => (h.user_data, h.free_user_data, h.review_experiment, h.start_experiment, h.experiment_failed),
            None => (std::ptr::null_mut(), None, None, None, None),
        };
        Self {
            user_data: UserData(user_data),
            free_user_data,
            review,
            start,
            failed,
            gate: Mutex::new(GateState::default()),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.gate.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lets hooks run (the server was handed to C).
    pub fn open(&self) {
        self.lock().open = true;
        self.changed.notify_all();
    }

    /// Refuses hooks from now on, waits for running ones to return, then
    /// calls `free_user_data` (once).
    pub fn close(&self) {
        let mut gate = self.lock();
        gate.closed = true;
        self.changed.notify_all();
        while gate.running > 0 {
            gate = self.changed.wait(gate).unwrap_or_else(|e| e.into_inner());
        }
        let release = !std::mem::replace(&mut gate.released, true);
        drop(gate);
        if release {
            self.release();
        }
    }

    fn release(&self) {
        if let Some(free) = self.free_user_data {
            free(self.user_data.0);
        }
    }

    /// Waits until hooks may run; `None` once they may not any more.
    fn enter(&self) -> Option<Running<'_>> {
        let mut gate = self.lock();
        while !gate.open && !gate.closed {
            gate = self.changed.wait(gate).unwrap_or_else(|e| e.into_inner());
        }
        if gate.closed {
            return None;
        }
        gate.running += 1;
        Some(Running(self))
    }

    fn ud(&self) -> *mut c_void {
        self.user_data.0
    }
}

impl DirectorHooks for CallbackHooks {
    fn review_experiment(&self, experiment: &ExperimentDetails) -> bool {
        let Some(review) = self.review else { return true };
        let Some(_running) = self.enter() else { return false };
        review(self.ud(), &ofl_experiment::new(experiment))
    }

    fn start_experiment(&self, experiment: &ExperimentDetails) -> Result<()> {
        let Some(start) = self.start else { return Ok(()) };
        let Some(_running) = self.enter() else {
            return Err(Error::new(ofl_code::Cancelled, "the director is shutting down"));
        };
        let mut reply = ofl_reply::default();
        let code = start(self.ud(), &ofl_experiment::new(experiment), &mut reply);
        outcome("start_experiment", code, &mut reply)
    }

    fn experiment_failed(&self, experiment: &ExperimentDetails, failure: &ExperimentFailure) {
        let Some(failed) = self.failed else { return };
        let Some(_running) = self.enter() else { return };
        let collaborator = c_string(&failure.collaborator);
        let description = c_string(&failure.description);
        failed(
            self.ud(),
            &ofl_experiment::new(experiment),
            collaborator.as_ptr(),
            failure.error_code,
            description.as_ptr(),
        );
    }
}

impl Drop for CallbackHooks {
    /// Releases `user_data` when `close` did not (a failed start).
    fn drop(&mut self) {
        let released = std::mem::replace(&mut self.lock().released, true);
        if !released {
            self.release();
        }
    }
}
