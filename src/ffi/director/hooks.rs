//! `ofl_director_hooks`: what the director asks and tells its host, as an
//! opaque object filled with setters (a later release can add a hook
//! without breaking binaries built against this one).

use std::ffi::{c_char, c_void};
use std::sync::Arc;

use super::experiment::ofl_experiment;
use crate::error::{Error, Result};
use crate::ffi::boundary::{arg_mut, check_out, ffi_fn, free_boxed, write_out};
use crate::ffi::error::ofl_error;
use crate::ffi::foreign_data::{ofl_free_fn, ForeignData};

/// Reviews a submitted experiment (OpenFL's `review_plan_callback`): return
/// true to approve it, false to reject it (its archive is then deleted).
#[allow(non_camel_case_types)]
pub type ofl_review_experiment_fn =
    Option<extern "C" fn(user_data: *mut c_void, experiment: *const ofl_experiment) -> bool>;

/// An approved experiment starts: launch its aggregator for its
/// collaborators and return NULL; the envoys receive the experiment once
/// this returns. An error (made with `ofl_error_new`; the library takes
/// ownership and frees it) marks the experiment failed; the director logs
/// its code and message (error level) and frontends see the status
/// "failed".
#[allow(non_camel_case_types)]
pub type ofl_start_experiment_fn = Option<
    extern "C" fn(user_data: *mut c_void, experiment: *const ofl_experiment) -> *mut ofl_error,
>;

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

/// The director's host hooks, given to `ofl_director_server_start` (which
/// shares them: the object may be freed right after the start). Made with
/// `ofl_director_hooks_new`, filled with the `ofl_director_hooks_set_*`
/// setters. `start_experiment` is required; the others default to: approve
/// every experiment; nothing to stop.
///
/// Hooks run on library threads, possibly several at once, never before
/// `ofl_director_server_start` has returned (so a host that passes
/// `&host->server` as `out` finds its server set) and never after
/// `ofl_director_server_free` has returned. One experiment is reviewed and
/// started at a time; the next is taken once it finished or failed. Hooks
/// may block (a review may wait for a human) and may call the
/// `ofl_director_server_*` progress functions and `ofl_director_server_stop`,
/// but not `ofl_director_server_free` (which waits for running hooks).
/// Not thread-safe: configure from one thread.
#[allow(non_camel_case_types)]
pub struct ofl_director_hooks {
    pub(crate) user_data: Arc<ForeignData>,
    pub(crate) review: ofl_review_experiment_fn,
    pub(crate) start: ofl_start_experiment_fn,
    pub(crate) failed: ofl_experiment_failed_fn,
}

impl ofl_director_hooks {
    /// Checks that every required hook is set.
    pub(crate) fn check(&self) -> Result<()> {
        if self.start.is_none() {
            return Err(Error::invalid_argument(
                "hooks lack start_experiment: set it with ofl_director_hooks_set_start_experiment",
            ));
        }
        Ok(())
    }
}

fn hooks_mut<'a>(hooks: *mut ofl_director_hooks) -> Result<&'a mut ofl_director_hooks> {
    arg_mut(hooks, "hooks")
}

ffi_fn! {
    /// New director hooks with none set and no user data, written to `*out`.
    fn ofl_director_hooks_new(out: *mut *mut ofl_director_hooks) -> *mut ofl_error {
        check_out(out, "out")?;
        let hooks = ofl_director_hooks {
            user_data: Arc::new(ForeignData::none()),
            review: None,
            start: None,
            failed: None,
        };
        write_out(out, hooks);
        Ok(())
    }
}

ffi_fn! {
    /// Frees the hooks object. Servers started with it keep their share: its
    /// `user_data` is released (with `free_user_data`, exactly once) when
    /// neither this object nor any such server holds it any more. NULL is a
    /// no-op.
    fn ofl_director_hooks_free(hooks: *mut ofl_director_hooks) {
        free_boxed(hooks)
    }
}

ffi_fn! {
    /// The pointer every hook gets, and its destructor (may be NULL). From
    /// this call the library owns the pair: it calls
    /// `free_user_data(user_data)` exactly once, when neither the hooks
    /// object nor a server started with it can call a hook any more (after
    /// `ofl_director_hooks_free` and `ofl_director_server_free` of every
    /// such server, or a failed start, whichever comes last; or at once when
    /// `hooks` is NULL, or when a later call replaces the pair).
    fn ofl_director_hooks_set_user_data(
        hooks: *mut ofl_director_hooks,
        user_data: *mut c_void,
        free_user_data: ofl_free_fn,
    ) -> *mut ofl_error {
        let data = Arc::new(ForeignData::new(user_data, free_user_data));
        hooks_mut(hooks)?.user_data = data;
        Ok(())
    }
}

ffi_fn! {
    /// Approve or reject a submitted experiment. NULL (the default) approves
    /// everything.
    fn ofl_director_hooks_set_review_experiment(
        hooks: *mut ofl_director_hooks,
        review_experiment: ofl_review_experiment_fn,
    ) -> *mut ofl_error {
        hooks_mut(hooks)?.review = review_experiment;
        Ok(())
    }
}

ffi_fn! {
    /// Start an approved experiment. Required: `ofl_director_server_start`
    /// refuses hooks without it (INVALID_ARGUMENT naming this setter).
    fn ofl_director_hooks_set_start_experiment(
        hooks: *mut ofl_director_hooks,
        start_experiment: ofl_start_experiment_fn,
    ) -> *mut ofl_error {
        hooks_mut(hooks)?.start = start_experiment;
        Ok(())
    }
}

ffi_fn! {
    /// An envoy failed the experiment. NULL (the default): nothing to stop.
    fn ofl_director_hooks_set_experiment_failed(
        hooks: *mut ofl_director_hooks,
        experiment_failed: ofl_experiment_failed_fn,
    ) -> *mut ofl_error {
        hooks_mut(hooks)?.failed = experiment_failed;
        Ok(())
    }
}
