//! What frontends and the host read: an experiment's status, its trained
//! models, the experiment list and description (a caller sees only the
//! experiments it submitted), and the host's views of any experiment.

use super::{DirectorState, Experiment};
use crate::director::types::{
    CollaboratorStatus, ExperimentListEntry, ExperimentOverview, ExperimentSnapshot, ExperimentStatus,
};
use crate::error::Result;
use crate::proto::ModelProto;

impl DirectorState {
    /// GetExperimentStatus: `None` when `caller` has no experiment of that
    /// name (unknown, or another caller's), which OpenFL 1.6 answers with an
    /// empty status; its client then sees an empty string, not an error.
    pub fn experiment_status(&self, caller: &str, name: &str) -> Option<ExperimentStatus> {
        self.lock().visible(caller, name).ok().map(|e| e.status)
    }

    /// GetTrainedModel: the best or last model; `None` while there is none.
    pub fn trained_model(&self, caller: &str, name: &str, best: bool) -> Result<Option<ModelProto>> {
        let inner = self.lock();
        let e = inner.visible(caller, name)?;
        Ok(if best { e.best_model.clone() } else { e.last_model.clone() })
    }

    /// GetExperimentsList: the caller's experiments in submission order.
    pub fn experiments_list(&self, caller: &str) -> Vec<ExperimentListEntry> {
        let inner = self.lock();
        inner
            .order
            .iter()
            .filter_map(|n| inner.experiments.get(n))
            .filter(|e| e.visible_to(caller))
            .map(|e| ExperimentListEntry {
                name: e.info.name.clone(),
                status: e.status,
                collaborators: e.info.collaborators.len(),
                tasks: e.tasks.len(),
                progress: e.progress(),
            })
            .collect()
    }

    /// GetExperimentDescription.
    pub fn experiment_description(&self, caller: &str, name: &str) -> Result<ExperimentOverview> {
        let inner = self.lock();
        let e = inner.visible(caller, name)?;
        let collaborators = e.info.collaborators.iter().map(|c| (c.clone(), collaborator_status(e, c))).collect();
        Ok(ExperimentOverview {
            name: e.info.name.clone(),
            status: e.status,
            progress: e.progress(),
            total_rounds: e.total_rounds,
            current_round: e.current_round,
            has_best_model: e.best_model.is_some(),
            has_last_model: e.last_model.is_some(),
            has_initial_model: e.info.initial_model.is_some(),
            collaborators,
            tasks: e.tasks.clone(),
        })
    }

    /// A view of one experiment, whoever owns it.
    pub fn snapshot(&self, name: &str) -> Option<ExperimentSnapshot> {
        self.lock().experiments.get(name).map(Experiment::snapshot)
    }

    /// Names of all experiments, in submission order.
    pub fn experiment_names(&self) -> Vec<String> {
        self.lock().order.clone()
    }
}

/// Where collaborator `c` of experiment `e` is, as GetExperimentDescription
/// reports it.
fn collaborator_status(e: &Experiment, c: &str) -> CollaboratorStatus {
    if e.failure.as_ref().is_some_and(|f| f.collaborator == c) {
        CollaboratorStatus::Failed
    } else if e.status == ExperimentStatus::Finished {
        CollaboratorStatus::Finished
    } else if e.downloads.contains(c) {
        CollaboratorStatus::Running
    } else {
        CollaboratorStatus::Pending
    }
}
