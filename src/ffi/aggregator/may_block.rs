//! `ofl_logic_call` and `ofl_aggregator_callbacks_set_may_block`: a host
//! says which of its callbacks never block, so the server calls them on its
//! async workers instead of handing each call to a blocking thread.

use super::callbacks::ofl_aggregator_callbacks;
use crate::aggregator::LogicCall;
use crate::error::{Error, Result};
use crate::ffi::boundary::{arg_mut, ffi_fn};

/// The callbacks `ofl_aggregator_callbacks_set_may_block` can declare
/// non-blocking.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ofl_logic_call {
    /// The get_tasks callback (GetTasks).
    GetTasks = 0,
    /// The get_aggregated_tensor callback (GetAggregatedTensor).
    GetAggregatedTensor = 1,
    /// The send_local_task_results callback (SendLocalTaskResults).
    SendLocalTaskResults = 2,
    /// The all_quit_jobs_sent callback (asked by the quit poll).
    AllQuitJobsSent = 3,
}

impl ofl_logic_call {
    /// The call an `ofl_logic_call` number names (C passes enums as
    /// integers), or INVALID_ARGUMENT naming the value.
    fn from_c(call: i32) -> Result<Self> {
        const ALL: [ofl_logic_call; 4] = [
            ofl_logic_call::GetTasks,
            ofl_logic_call::GetAggregatedTensor,
            ofl_logic_call::SendLocalTaskResults,
            ofl_logic_call::AllQuitJobsSent,
        ];
        ALL.into_iter()
            .find(|c| *c as i32 == call)
            .ok_or_else(|| Error::invalid_argument(format!("logic call {call} is not an ofl_logic_call value")))
    }
}

/// Which callbacks may block: all of them unless the host says otherwise.
/// Copied into a server at its start, with the function pointers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct MayBlock {
    get_tasks: bool,
    get_aggregated_tensor: bool,
    send_local_task_results: bool,
    all_quit_jobs_sent: bool,
}

impl Default for MayBlock {
    fn default() -> Self {
        Self { get_tasks: true, get_aggregated_tensor: true, send_local_task_results: true, all_quit_jobs_sent: true }
    }
}

impl MayBlock {
    fn set(&mut self, call: ofl_logic_call, may_block: bool) {
        let flag = match call {
            ofl_logic_call::GetTasks => &mut self.get_tasks,
            ofl_logic_call::GetAggregatedTensor => &mut self.get_aggregated_tensor,
            ofl_logic_call::SendLocalTaskResults => &mut self.send_local_task_results,
            ofl_logic_call::AllQuitJobsSent => &mut self.all_quit_jobs_sent,
        };
        *flag = may_block;
    }

    /// Whether the server must run `call` on its blocking pool. The
    /// certificate pre-check never runs C code that could block (the
    /// valid_collaborator callback is not called for it): never.
    pub(super) fn get(&self, call: LogicCall) -> bool {
        match call {
            LogicCall::GetTasks => self.get_tasks,
            LogicCall::GetAggregatedTensor => self.get_aggregated_tensor,
            LogicCall::SendLocalTaskResults => self.send_local_task_results,
            LogicCall::AllQuitJobsSent => self.all_quit_jobs_sent,
            LogicCall::CertificateMaySpeak => false,
        }
    }
}

ffi_fn! {
    /// Whether the callback of `call` (an `ofl_logic_call` value; anything
    /// else is INVALID_ARGUMENT) may block. True (the default, always safe):
    /// each call runs on a thread of the library's blocking pool, within the
    /// 8-per-collaborator and 256-in-all bounds (see
    /// `ofl_aggregator_callbacks`). False: the server calls it directly on
    /// one of the library's async worker threads, which saves a hand-off to
    /// another thread per call (a large part of the server's CPU per
    /// GetTasks). Such a callback must return promptly (brief locks,
    /// computation): blocking in it (waiting for a tensor, I/O, a lock held
    /// long) stalls every connection served by that worker. Non-blocking
    /// callbacks are not bounded by the 8-per-collaborator/256 limits. Copied
    /// by `ofl_aggregator_server_start`, like the callbacks: later calls do
    /// not change a started server.
    fn ofl_aggregator_callbacks_set_may_block(
        callbacks: *mut ofl_aggregator_callbacks,
        call: i32,
        may_block: bool,
    ) -> *mut ofl_error {
        let call = ofl_logic_call::from_c(call)?;
        arg_mut(callbacks, "callbacks")?.may_block.set(call, may_block);
        Ok(())
    }
}
