//! The host's handle on a running director ([`DirectorHandle`]).

use std::sync::Arc;

use crate::director::state::DirectorState;
use crate::director::types::{DirectorMetric, EnvoyStatus, ExperimentSnapshot, ExperimentStatus};
use crate::error::Result;
use crate::proto::ModelProto;

/// What the host uses to report an experiment's progress and to look at the
/// director's state. Cheap to clone; usable from any thread.
#[derive(Clone)]
pub struct DirectorHandle {
    pub(super) state: Arc<DirectorState>,
}

impl DirectorHandle {
    /// Queues a metric for the experiment's GetMetricStream.
    pub fn push_metric(&self, experiment: &str, metric: DirectorMetric) -> Result<()> {
        self.state.push_metric(experiment, metric)
    }

    /// Sets the model GetTrainedModel(BEST_MODEL) returns.
    pub fn set_best_model(&self, experiment: &str, model: ModelProto) -> Result<()> {
        self.state.set_best_model(experiment, model)
    }

    /// Sets the model GetTrainedModel(LAST_MODEL) returns.
    pub fn set_last_model(&self, experiment: &str, model: ModelProto) -> Result<()> {
        self.state.set_last_model(experiment, model)
    }

    /// Sets the round progress frontends see.
    pub fn set_round(&self, experiment: &str, current_round: u32, total_rounds: u32) -> Result<()> {
        self.state.set_round(experiment, current_round, total_rounds)
    }

    /// Sets the task list (name, description) frontends see.
    pub fn set_tasks(&self, experiment: &str, tasks: Vec<(String, String)>) -> Result<()> {
        self.state.set_tasks(experiment, tasks)
    }

    /// The experiment finished; metric streams end once drained and the
    /// next experiment may start.
    pub fn mark_finished(&self, experiment: &str) -> Result<()> {
        self.state.mark_finished(experiment)
    }

    /// The experiment failed.
    pub fn mark_failed(&self, experiment: &str, description: &str) -> Result<()> {
        self.state.mark_failed(experiment, description)
    }

    /// A view of one experiment (whoever owns it).
    pub fn experiment(&self, experiment: &str) -> Option<ExperimentSnapshot> {
        self.state.snapshot(experiment)
    }

    /// Status of an experiment (whoever owns it).
    pub fn experiment_status(&self, experiment: &str) -> Option<ExperimentStatus> {
        self.state.snapshot(experiment).map(|s| s.status)
    }

    /// Names of all experiments, in submission order.
    pub fn experiment_names(&self) -> Vec<String> {
        self.state.experiment_names()
    }

    /// Registered envoys, as GetEnvoys reports them.
    pub fn envoys(&self) -> Vec<EnvoyStatus> {
        self.state.envoys()
    }

    /// Waits until `condition` holds, re-checking after every change of the
    /// state. Unbounded: wrap it in a timeout.
    pub async fn wait_until(&self, mut condition: impl FnMut(&DirectorHandle) -> bool) {
        let mut changes = self.state.subscribe();
        while !condition(self) {
            if changes.changed().await.is_err() {
                return;
            }
        }
    }
}
