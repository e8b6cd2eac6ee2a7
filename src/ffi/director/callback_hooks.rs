//! The C hooks as a [`DirectorHooks`], behind a gate that keeps what the
//! header promises: no hook runs before `ofl_director_server_start` has
//! returned, none runs after `ofl_director_server_free` has returned, and
//! the server drops its share of `user_data` once its last hook returned.

use std::ffi::c_void;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::experiment::ofl_experiment;
use super::hooks::{
    ofl_director_hooks, ofl_experiment_failed_fn, ofl_review_experiment_fn, ofl_start_experiment_fn,
};
use crate::director::{DirectorHooks, ExperimentDetails, ExperimentFailure};
use crate::error::{ofl_code, Error, Result};
use crate::ffi::boundary::c_string;
use crate::ffi::error::take_callback_error;
use crate::ffi::foreign_data::ForeignData;

#[derive(Default)]
struct GateState {
    /// `ofl_director_server_start` has returned the server.
    open: bool,
    /// The server is being freed (or failed to start): no hook is called.
    closed: bool,
    /// Hooks running now.
    running: usize,
    /// The server's share of the host's data, dropped by `close`.
    user_data: Option<Arc<ForeignData>>,
}

/// The hooks a server calls: copied from an `ofl_director_hooks`.
pub struct CallbackHooks {
    review: ofl_review_experiment_fn,
    start: ofl_start_experiment_fn,
    failed: ofl_experiment_failed_fn,
    gate: Mutex<GateState>,
    changed: Condvar,
}

/// A running hook; leaving it wakes a waiting `close`.
struct Running<'a>(&'a CallbackHooks, *mut c_void);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.lock().running -= 1;
        self.0.changed.notify_all();
    }
}

impl CallbackHooks {
    /// Copies the hooks and shares their `user_data`.
    pub fn new(hooks: &ofl_director_hooks) -> Self {
        Self {
            review: hooks.review,
            start: hooks.start,
            failed: hooks.failed,
            gate: Mutex::new(GateState {
                user_data: Some(Arc::clone(&hooks.user_data)),
                ..GateState::default()
            }),
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
    /// drops the server's share of `user_data`.
    pub fn close(&self) {
        let mut gate = self.lock();
        gate.closed = true;
        self.changed.notify_all();
        while gate.running > 0 {
            gate = self.changed.wait(gate).unwrap_or_else(|e| e.into_inner());
        }
        let user_data = gate.user_data.take();
        drop(gate);
        drop(user_data); // may call free_user_data: outside the lock
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
        let user_data = gate
            .user_data
            .as_ref()
            .map_or(std::ptr::null_mut(), |d| d.get());
        gate.running += 1;
        Some(Running(self, user_data))
    }
}

impl DirectorHooks for CallbackHooks {
    fn review_experiment(&self, experiment: &ExperimentDetails) -> bool {
        let Some(review) = self.review else {
            return true;
        };
        let Some(running) = self.enter() else {
            return false;
        };
        review(running.1, &ofl_experiment::new(experiment))
    }

    fn start_experiment(&self, experiment: &ExperimentDetails) -> Result<()> {
        let Some(start) = self.start else {
            return Ok(());
        };
        let Some(running) = self.enter() else {
            return Err(Error::new(
                ofl_code::Cancelled,
                "the director is shutting down",
            ));
        };
        take_callback_error(
            start(running.1, &ofl_experiment::new(experiment)),
            "start_experiment",
        )
    }

    fn experiment_failed(&self, experiment: &ExperimentDetails, failure: &ExperimentFailure) {
        let Some(failed) = self.failed else { return };
        let Some(running) = self.enter() else { return };
        let collaborator = c_string(&failure.collaborator);
        let description = c_string(&failure.description);
        failed(
            running.1,
            &ofl_experiment::new(experiment),
            collaborator.as_ptr(),
            failure.error_code,
            description.as_ptr(),
        );
    }
}
