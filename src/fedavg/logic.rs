//! FedAvg as the transport sees it: the [`AggregatorLogic`] the aggregator
//! server calls.

use std::sync::PoisonError;
use std::time::{Duration, Instant};

use super::FedAvg;
use crate::aggregator::{
    AggregatorLogic, Federation, LogicCall, TaskResults, TasksReply, TensorPoll, TensorRequest, TensorWait,
};
use crate::error::Result;
use crate::proto::NamedTensor;

const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

impl AggregatorLogic for FedAvg {
    fn federation(&self) -> &Federation {
        &self.federation
    }

    /// The round's tasks `collaborator` has not reported; `sleep_time` when it
    /// has reported all of them; `quit` after the last round.
    fn get_tasks(&self, collaborator: &str) -> Result<TasksReply> {
        self.check_collaborator(collaborator)?;
        let mut state = self.lock();
        if self.finished(&state) {
            if self.persists() && !state.quit_sent.contains(collaborator) {
                // Saved before it is told: a restarted aggregator must not
                // wait for a collaborator that has gone.
                drop(state);
                self.save_quit(collaborator)?;
                state = self.lock();
            }
            return Ok(self.quit_reply(&mut state, collaborator));
        }
        let tasks = self.pending_tasks(&state, collaborator);
        let sleep_time = if tasks.is_empty() { self.sleep_time } else { 0 };
        Ok(TasksReply { round_number: state.round, tasks, sleep_time, quit: false })
    }

    /// A model tensor, encoded as OpenFL's uncompressed pipeline does; waits
    /// up to `tensor_wait` for one that may still appear, then
    /// `FailedPrecondition`.
    fn get_aggregated_tensor(&self, collaborator: &str, request: &TensorRequest) -> Result<NamedTensor> {
        self.check_collaborator(collaborator)?;
        let key = self.request_key(request)?;
        let tensor = self.wait_for_tensor(&key)?;
        Ok(self.served_tensor(&key, request, tensor))
    }

    /// As `get_aggregated_tensor`, without waiting: a tensor that may still
    /// appear is [`TensorPoll::Pending`] until `started + tensor_wait`.
    fn poll_aggregated_tensor(
        &self,
        collaborator: &str,
        request: &TensorRequest,
        started: Instant,
    ) -> Result<TensorPoll> {
        self.check_collaborator(collaborator)?;
        let key = self.request_key(request)?;
        let state = self.lock();
        // Subscribed under the lock: any change after this check wakes us.
        let changed = self.changes.subscribe();
        match self.find_tensor(&state, &key, started)? {
            Some(tensor) => Ok(TensorPoll::Ready(self.served_tensor(&key, request, tensor))),
            None => {
                // A wait too long to represent ends in a year (and polls again).
                let deadline = started.checked_add(self.tensor_wait).unwrap_or(started + YEAR);
                Ok(TensorPoll::Pending(TensorWait { changed, deadline }))
            }
        }
    }

    /// FedAvg's calls never block, except, with a state directory, the
    /// uploads and GetTasks that write to it.
    fn may_block(&self, call: LogicCall) -> bool {
        self.persists() && matches!(call, LogicCall::SendLocalTaskResults | LogicCall::GetTasks)
    }

    /// Stores an upload, records its metrics, and ends the round when every
    /// collaborator has reported every task. Late, early and duplicate
    /// uploads are ignored with a warning and answered `Ok`; an upload FedAvg
    /// cannot use (unknown task, malformed tensor, a tensor neither metric
    /// nor `trained`) is refused whole with `InvalidArgument`, also with a
    /// warning.
    ///
    /// With a state directory the upload is saved before it is counted and
    /// acknowledged; the state lock is not held while saving, so other calls
    /// go on meanwhile (uploads take turns).
    fn send_local_task_results(&self, collaborator: &str, results: TaskResults) -> Result<()> {
        let task = results.task_name.clone();
        self.take_results(collaborator, results).inspect_err(|e| {
            log::warn!("FedAvg: results of {collaborator} for task {task:?} not taken: {}", e.message());
        })
    }

    /// True once every collaborator has been told to quit.
    fn all_quit_jobs_sent(&self) -> bool {
        let state = self.lock();
        self.federation.authorized_collaborators.iter().all(|c| state.quit_sent.contains(c))
    }
}

impl FedAvg {
    /// `send_local_task_results` before its warning.
    fn take_results(&self, collaborator: &str, results: TaskResults) -> Result<()> {
        self.check_collaborator(collaborator)?;
        // Only uploads change the round and its results: while this turn is
        // held, what was checked below stays true.
        let _turn = self.uploads.lock().unwrap_or_else(PoisonError::into_inner);
        let (round, decoded) = {
            let state = self.lock();
            if !self.accepts(&state, collaborator, &results)? {
                return Ok(());
            }
            (state.round, self.decode_results(&state, collaborator, &results)?)
        };
        let (task, data_size) = (results.task_name.as_str(), results.data_size);
        self.save_result(round, collaborator, task, data_size, &decoded)?;
        let ended = self.accept(&mut self.lock(), collaborator, task, data_size, decoded);
        self.notify_changed();
        if let Some(save) = ended {
            self.save_round(save);
        }
        Ok(())
    }
}
