//! The director's Rust types: what the state holds and reports, what the
//! host's hooks and handle see, what the clients return. Conversions to and
//! from the wire types live in `convert.rs`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::proto::ModelProto;

/// Where an experiment is in its life cycle (OpenFL 1.6's `Status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExperimentStatus {
    /// Submitted, waiting for its turn (and for review).
    Pending,
    /// Approved and started: its envoys receive it.
    InProgress,
    /// The host reported it finished.
    Finished,
    /// An envoy or the host reported a failure.
    Failed,
    /// The review hook rejected it (its archive is deleted).
    Rejected,
}

impl ExperimentStatus {
    /// The wire string OpenFL 1.6 uses: `pending`, `in_progress`, `finished`,
    /// `failed`, `rejected`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExperimentStatus::Pending => "pending",
            ExperimentStatus::InProgress => "in_progress",
            ExperimentStatus::Finished => "finished",
            ExperimentStatus::Failed => "failed",
            ExperimentStatus::Rejected => "rejected",
        }
    }

    /// The status named by a wire string.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Pending, Self::InProgress, Self::Finished, Self::Failed, Self::Rejected]
            .into_iter()
            .find(|s| s.as_str() == text)
    }

    /// Finished, failed or rejected: nothing more happens to it.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Finished | Self::Failed | Self::Rejected)
    }
}

impl std::fmt::Display for ExperimentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One metric reported by the host's aggregator (OpenFL's metric dict).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DirectorMetric {
    /// Who computed it: a collaborator name, or `aggregator`.
    pub origin: String,
    /// The task that produced it.
    pub task_name: String,
    /// The metric's name, e.g. `accuracy`.
    pub metric_name: String,
    /// Its value.
    pub value: f32,
    /// The round it belongs to.
    pub round: u32,
}

/// Why an experiment failed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExperimentFailure {
    /// The envoy that reported it; empty when the host did.
    pub collaborator: String,
    /// The envoy's error code (SetExperimentFailed), 0 from the host.
    pub error_code: u32,
    /// What went wrong.
    pub description: String,
}

/// An experiment as the host hooks see it.
#[derive(Clone, Debug)]
pub struct ExperimentDetails {
    /// The experiment's name (also what envoys receive from WaitExperiment).
    pub name: String,
    /// The caller that submitted it.
    pub owner: String,
    /// The envoys that take part, in submission order, without duplicates.
    pub collaborators: Vec<String>,
    /// The archive as uploaded (deleted after a rejection or a removal).
    pub archive_path: PathBuf,
    /// Its size in bytes.
    pub archive_size: u64,
    /// The initial model sent with the experiment, if any.
    pub initial_model: Option<ModelProto>,
}

/// A point-in-time view of one experiment, for the host.
#[derive(Clone, Debug)]
pub struct ExperimentSnapshot {
    /// Name, owner, collaborators, archive and initial model.
    pub info: ExperimentDetails,
    /// Current status.
    pub status: ExperimentStatus,
    /// Envoys that downloaded the whole archive (GetExperimentData).
    pub downloads: BTreeSet<String>,
    /// Progress reported by the host.
    pub current_round: u32,
    /// Rounds to train, as reported by the host.
    pub total_rounds: u32,
    /// Metrics pushed and not yet streamed to a frontend.
    pub queued_metrics: usize,
    /// Metrics dropped because the queue was full.
    pub dropped_metrics: u64,
    /// Whether a best / last model was set.
    pub has_best_model: bool,
    /// See `has_best_model`.
    pub has_last_model: bool,
    /// Why it failed, when it did.
    pub failure: Option<ExperimentFailure>,
}

/// One CUDA device of an envoy's node (OpenFL's `CudaDeviceInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CudaDevice {
    /// The device's index on its node.
    pub index: u64,
    /// Total memory, in bytes.
    pub memory_total: u64,
    /// Memory in use, in bytes.
    pub memory_utilized: u64,
    /// Utilization as the envoy reports it (e.g. `"12%"`).
    pub device_utilization: String,
    /// CUDA driver version.
    pub cuda_driver_version: String,
    /// CUDA version.
    pub cuda_version: String,
    /// The device's name.
    pub name: String,
}

/// What an envoy reports about its shard (OpenFL's `ShardInfo` with its
/// `NodeInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardDetails {
    /// The envoy's name (`node_info.name`).
    pub name: String,
    /// The node's CUDA devices (of its last health check).
    pub cuda_devices: Vec<CudaDevice>,
    /// What the shard holds.
    pub description: String,
    /// How many samples it holds.
    pub n_samples: u64,
    /// The shape of one sample, one dimension per string.
    pub sample_shape: Vec<String>,
    /// The shape of one target.
    pub target_shape: Vec<String>,
}

/// One envoy as GetEnvoys reports it.
#[derive(Clone, Debug)]
pub struct EnvoyStatus {
    /// What the envoy reported (with the CUDA devices of its last health check).
    pub shard_info: ShardDetails,
    /// Its last health check (or registration) is younger than `valid_duration`.
    pub is_online: bool,
    /// As the envoy last reported.
    pub is_experiment_running: bool,
    /// Time of its last health check (or registration).
    pub last_updated: SystemTime,
    /// Two health-check periods.
    pub valid_duration: Duration,
    /// The experiment it was last given by WaitExperiment and that is still
    /// in progress.
    pub experiment_name: Option<String>,
}

/// One experiment as GetExperimentsList reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct ExperimentListEntry {
    /// The experiment's name.
    pub name: String,
    /// Its status.
    pub status: ExperimentStatus,
    /// How many collaborators take part.
    pub collaborators: usize,
    /// How many tasks the host reported.
    pub tasks: usize,
    /// Progress from 0 to 1.
    pub progress: f32,
}

/// A collaborator's state as GetExperimentDescription reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CollaboratorStatus {
    /// It has not downloaded the archive yet.
    Pending,
    /// It downloaded the archive.
    Running,
    /// The experiment finished.
    Finished,
    /// It reported the experiment failed.
    Failed,
}

impl CollaboratorStatus {
    /// The wire string: `pending`, `running`, `finished`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            CollaboratorStatus::Pending => "pending",
            CollaboratorStatus::Running => "running",
            CollaboratorStatus::Finished => "finished",
            CollaboratorStatus::Failed => "failed",
        }
    }
}

/// One experiment as GetExperimentDescription reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct ExperimentOverview {
    /// The experiment's name.
    pub name: String,
    /// Its status.
    pub status: ExperimentStatus,
    /// Progress from 0 to 1.
    pub progress: f32,
    /// Rounds to train, as reported by the host.
    pub total_rounds: u32,
    /// Progress reported by the host.
    pub current_round: u32,
    /// Whether a best model was set.
    pub has_best_model: bool,
    /// Whether a last model was set.
    pub has_last_model: bool,
    /// Whether the experiment came with an initial model.
    pub has_initial_model: bool,
    /// Its collaborators in submission order, with their state.
    pub collaborators: Vec<(String, CollaboratorStatus)>,
    /// The task list (name, description) the host reported.
    pub tasks: Vec<(String, String)>,
}
