//! What a FedAvg is started with ([`FedAvgOptions`]) and its checks.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use super::codec::{check_shape, invalid, Model};
use crate::error::Result;
use crate::proto::aggregator::Task;

/// Seconds a collaborator is told to sleep by default (OpenFL 1.6 always
/// sends 10).
pub const DEFAULT_SLEEP_TIME: i32 = 10;

/// How long `get_aggregated_tensor` waits by default for a tensor that is not
/// ready yet.
pub const DEFAULT_TENSOR_WAIT: Duration = Duration::from_secs(30);

/// Rounds trained by default (the `rounds_to_train` of OpenFL's workspace
/// templates).
pub const DEFAULT_ROUNDS_TO_TRAIN: i32 = 10;

/// Everything [`FedAvg::new`](super::FedAvg::new) needs. Start from `FedAvgOptions::default()`
/// and set at least `collaborators` and `initial_model`.
#[derive(Clone, Debug)]
pub struct FedAvgOptions {
    /// The aggregator's uuid (requests must name it as receiver; the origin
    /// of every tensor the aggregator holds).
    pub aggregator_uuid: String,
    /// The federation's uuid.
    pub federation_uuid: String,
    /// Shared collaborator certificate CN (OpenFL's test mode); empty when
    /// every collaborator has its own certificate.
    pub single_col_cert_common_name: String,
    /// The collaborators; each must report every task every round. Non-empty,
    /// no duplicates.
    pub collaborators: Vec<String>,
    /// Rounds to train, at least 1.
    pub rounds_to_train: i32,
    /// The tasks of every round, in the order collaborators run them.
    /// Non-empty, unique names. Default: [`FedAvgOptions::default_tasks`].
    pub tasks: Vec<Task>,
    /// The round-0 model. Non-empty.
    pub initial_model: Model,
    /// The metric that picks the best model: a metric of the first task with
    /// `task_type == "validate"` and `apply_local == false` (the
    /// aggregated-model validation), higher is better. `None`: that task's
    /// first metric by name (its only one in OpenFL's task runners).
    pub best_model_metric: Option<String>,
    /// How long `get_aggregated_tensor` waits for a tensor that may still
    /// appear. Default [`DEFAULT_TENSOR_WAIT`].
    pub tensor_wait: Duration,
    /// Seconds a collaborator that has finished the round is told to sleep,
    /// at least 1. Default [`DEFAULT_SLEEP_TIME`].
    pub sleep_time: i32,
    /// A directory where the aggregator keeps what it needs to resume after
    /// a crash (created if missing; one aggregator at a time). Every upload
    /// is saved there before it is acknowledged, and a FedAvg started again
    /// with the same directory and configuration resumes the round: see
    /// `src/fedavg/persist.rs` for what is kept and how. `None` (the default):
    /// nothing is saved.
    pub state_dir: Option<PathBuf>,
}

impl Default for FedAvgOptions {
    fn default() -> Self {
        Self {
            aggregator_uuid: String::new(),
            federation_uuid: String::new(),
            single_col_cert_common_name: String::new(),
            collaborators: Vec::new(),
            rounds_to_train: DEFAULT_ROUNDS_TO_TRAIN,
            tasks: Self::default_tasks(),
            initial_model: Model::new(),
            best_model_metric: None,
            tensor_wait: DEFAULT_TENSOR_WAIT,
            sleep_time: DEFAULT_SLEEP_TIME,
            state_dir: None,
        }
    }
}

impl FedAvgOptions {
    /// OpenFL's default task list: `aggregated_model_validation`
    /// (`validate_task`, `validate`, global model), `train` (`train_task`,
    /// `train`), `locally_tuned_model_validation` (`validate_task`,
    /// `validate`, `apply_local`).
    pub fn default_tasks() -> Vec<Task> {
        vec![
            task("aggregated_model_validation", "validate_task", "validate", false),
            task("train", "train_task", "train", false),
            task("locally_tuned_model_validation", "validate_task", "validate", true),
        ]
    }

    /// Checks the configuration; errors are `InvalidArgument` naming the
    /// field.
    pub fn validate(&self) -> Result<()> {
        check_names("collaborators", self.collaborators.iter().map(String::as_str))?;
        check_names("tasks", self.tasks.iter().map(|t| t.name.as_str()))?;
        if self.rounds_to_train < 1 {
            return Err(invalid(format!("rounds_to_train must be at least 1, got {}", self.rounds_to_train)));
        }
        if self.sleep_time < 1 {
            return Err(invalid(format!("sleep_time must be at least 1 second, got {}", self.sleep_time)));
        }
        if self.best_model_metric.as_deref() == Some("") {
            return Err(invalid("best_model_metric must not be empty (use None for the default)"));
        }
        if self.state_dir.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
            return Err(invalid("state_dir must not be empty (use None for no state directory)"));
        }
        check_model(&self.initial_model)
    }
}

fn task(name: &str, function_name: &str, task_type: &str, apply_local: bool) -> Task {
    Task { name: name.into(), function_name: function_name.into(), task_type: task_type.into(), apply_local }
}

fn check_names<'a>(field: &str, names: impl Iterator<Item = &'a str>) -> Result<()> {
    let mut seen = HashSet::new();
    for name in names {
        if name.is_empty() {
            return Err(invalid(format!("{field}: empty name")));
        }
        if !seen.insert(name) {
            return Err(invalid(format!("{field}: {name:?} appears twice")));
        }
    }
    if seen.is_empty() {
        return Err(invalid(format!("{field} must not be empty")));
    }
    Ok(())
}

fn check_model(model: &Model) -> Result<()> {
    if model.is_empty() {
        return Err(invalid("initial_model must have at least one tensor"));
    }
    for (name, tensor) in model {
        if name.is_empty() {
            return Err(invalid("initial_model: empty tensor name"));
        }
        check_shape(&format!("initial_model tensor {name:?}"), &tensor.shape, tensor.values.len())?;
    }
    Ok(())
}
