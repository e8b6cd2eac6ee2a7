//! The C callbacks as an [`AggregatorLogic`]: each call builds the C view
//! of its request, calls the host, and turns the returned `ofl_error *`
//! into the gRPC status the collaborator gets.

use std::ffi::{c_char, c_void, CString};

use super::callbacks::CallbackSet;
use super::reply::{ofl_reply, ofl_tensor_request};
use super::results::ofl_task_results;
use crate::aggregator::{AggregatorLogic, Federation, LogicCall, TaskResults, TasksReply, TensorRequest};
use crate::error::{ofl_code, Error, Result};
use crate::ffi::boundary::c_string;
use crate::ffi::error::take_callback_error;
use crate::proto::NamedTensor;

/// An [`AggregatorLogic`] whose methods call C. Holds the callbacks' user
/// data (shared with the `ofl_aggregator_callbacks` it came from) until
/// the server drops it.
pub(super) struct CallbackLogic {
    federation: Federation,
    callbacks: CallbackSet,
}

impl CallbackLogic {
    pub(super) fn new(federation: Federation, callbacks: CallbackSet) -> Self {
        Self { federation, callbacks }
    }

    fn ud(&self) -> *mut c_void {
        self.callbacks.user_data.get()
    }
}

impl AggregatorLogic for CallbackLogic {
    fn federation(&self) -> &Federation {
        &self.federation
    }

    fn valid_collaborator_cn_and_id(&self, cert_common_name: &str, sender: &str) -> bool {
        match self.callbacks.valid_collaborator {
            Some(f) => f(self.ud(), c_string(cert_common_name).as_ptr(), c_string(sender).as_ptr()),
            None => self.federation.valid_collaborator_cn_and_id(cert_common_name, sender),
        }
    }

    fn refusal_cause(&self, cert_common_name: &str, sender: &str) -> String {
        match self.callbacks.valid_collaborator {
            Some(_) => "refused by the host's valid_collaborator_cn_and_id callback".into(),
            None => self.federation.refusal_cause(cert_common_name, sender),
        }
    }

    fn certificate_may_speak(&self, cert_common_name: &str) -> bool {
        // A host-provided rule may accept any CN: leave the decision to it.
        self.callbacks.valid_collaborator.is_some() || self.federation.certificate_may_speak(cert_common_name)
    }

    fn get_tasks(&self, collaborator: &str) -> Result<TasksReply> {
        let mut reply = ofl_reply::default();
        let error = (self.callbacks.get_tasks)(self.ud(), c_string(collaborator).as_ptr(), &mut reply);
        take_callback_error(error, "get_tasks")?;
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
        let error =
            (self.callbacks.get_aggregated_tensor)(self.ud(), c_string(collaborator).as_ptr(), &c_request, &mut reply);
        take_callback_error(error, "get_aggregated_tensor")?;
        reply.tensor.ok_or_else(|| {
            Error::new(ofl_code::Internal, "get_aggregated_tensor callback returned no error and no tensor")
        })
    }

    fn send_local_task_results(&self, collaborator: &str, results: TaskResults) -> Result<()> {
        let c_results = ofl_task_results::new(results);
        let error = (self.callbacks.send_local_task_results)(self.ud(), c_string(collaborator).as_ptr(), &c_results);
        take_callback_error(error, "send_local_task_results")
    }

    fn may_block(&self, call: LogicCall) -> bool {
        self.callbacks.may_block.get(call)
    }

    fn all_quit_jobs_sent(&self) -> bool {
        self.callbacks.all_quit_jobs_sent.is_some_and(|f| f(self.ud()))
    }
}
