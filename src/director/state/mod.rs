//! The director's built-in state (OpenFL 1.6's `Director` and
//! `ExperimentsRegistry`), one concern per file: registered envoys and their
//! health (`envoys.rs`), experiments, their life cycle and the per-envoy
//! experiment queues (`experiments.rs`), the archive store (`archives.rs`),
//! the metric queues (`metrics.rs`) and what frontends and the host read
//! (`views.rs`). It speaks only Rust types (see `types.rs`); the server
//! converts to and from the wire.
//!
//! Everything lives behind one mutex that is never held across an `.await`;
//! every change bumps a version on a `watch` channel, so long polls
//! (WaitExperiment, GetMetricStream, the execution loop) wake at once instead
//! of polling (OpenFL 1.6: every 10 s, or every second).
//!
//! Experiment life cycle (as OpenFL 1.6): a submitted experiment is
//! `pending`; one experiment at a time is taken from the pending queue,
//! reviewed (rejected → `rejected`, archive deleted), then `in_progress` and
//! queued for each of its envoys; the host reports `finished` or `failed`.
//!
//! Experiment names become file names in the archive directory, so they are
//! checked first ([`validate_experiment_name`](super::validate_experiment_name)).

mod archives;
mod envoys;
mod experiments;
mod metrics;
#[cfg(test)]
mod tests;
mod views;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use super::types::{DirectorMetric, ExperimentDetails, ExperimentFailure, ExperimentSnapshot, ExperimentStatus};
use crate::error::{ofl_code, Error, Result};
use crate::proto::ModelProto;

pub(crate) use metrics::MetricPoll;

/// How the state behaves.
#[derive(Clone, Debug)]
pub struct StateConfig {
    /// Where archives are stored (created if missing).
    pub archive_dir: PathBuf,
    /// The sample shape every shard must report to be accepted.
    pub sample_shape: Vec<String>,
    /// The target shape every shard must report to be accepted.
    pub target_shape: Vec<String>,
    /// How often envoys send health checks; an envoy is online for two
    /// periods after its last one (OpenFL's director: 60 s).
    pub envoy_health_check_period: Duration,
    /// Largest archive accepted by SetNewExperiment, in bytes.
    pub max_archive_size: u64,
    /// Metrics kept per experiment until streamed; beyond, the oldest is dropped.
    pub max_queued_metrics: usize,
}

impl Default for StateConfig {
    /// The archive directory defaults to a fresh directory under the system
    /// temporary directory (one per default configuration made), which is
    /// not deleted: set it.
    fn default() -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self {
            archive_dir: std::env::temp_dir().join(format!("openfl-director-{}-{n}", std::process::id())),
            sample_shape: Vec::new(),
            target_shape: Vec::new(),
            envoy_health_check_period: Duration::from_secs(60),
            max_archive_size: 1 << 30,
            max_queued_metrics: 100_000,
        }
    }
}

fn not_found(name: &str) -> Error {
    Error::new(ofl_code::NotFound, format!("no experiment named {name:?} for this caller"))
}

fn no_such_experiment(name: &str) -> Error {
    Error::new(ofl_code::NotFound, format!("no experiment named {name:?}"))
}

struct Experiment {
    info: ExperimentDetails,
    status: ExperimentStatus,
    archive_present: bool,
    best_model: Option<ModelProto>,
    last_model: Option<ModelProto>,
    metrics: VecDeque<DirectorMetric>,
    dropped_metrics: u64,
    /// The newest metric stream: older ones end without taking metrics.
    metric_stream: u64,
    current_round: u32,
    total_rounds: u32,
    /// (name, description), as the host set them.
    tasks: Vec<(String, String)>,
    downloads: BTreeSet<String>,
    failure: Option<ExperimentFailure>,
}

impl Experiment {
    fn visible_to(&self, caller: &str) -> bool {
        self.info.owner == caller
    }

    fn progress(&self) -> f32 {
        match self.status {
            ExperimentStatus::Finished => 1.0,
            ExperimentStatus::InProgress if self.total_rounds > 0 => {
                (self.current_round as f32 / self.total_rounds as f32).min(1.0)
            }
            _ => 0.0,
        }
    }

    fn snapshot(&self) -> ExperimentSnapshot {
        ExperimentSnapshot {
            info: self.info.clone(),
            status: self.status,
            downloads: self.downloads.clone(),
            current_round: self.current_round,
            total_rounds: self.total_rounds,
            queued_metrics: self.metrics.len(),
            dropped_metrics: self.dropped_metrics,
            has_best_model: self.best_model.is_some(),
            has_last_model: self.last_model.is_some(),
            failure: self.failure.clone(),
        }
    }
}

#[derive(Default)]
struct Inner {
    envoys: BTreeMap<String, envoys::Envoy>,
    experiments: HashMap<String, Experiment>,
    /// Experiment names in submission order (for listings).
    order: Vec<String>,
    /// Submitted, not yet taken by the execution loop.
    pending: VecDeque<String>,
    /// The experiment being reviewed or run.
    active: Option<String>,
    /// Per envoy: experiments started for it and not yet handed out.
    queues: HashMap<String, VecDeque<String>>,
    /// Per envoy: the experiment WaitExperiment last handed out (OpenFL's `col_exp`).
    assigned: HashMap<String, String>,
}

impl Inner {
    fn experiment(&self, name: &str) -> Result<&Experiment> {
        self.experiments.get(name).ok_or_else(|| no_such_experiment(name))
    }

    fn experiment_mut(&mut self, name: &str) -> Result<&mut Experiment> {
        self.experiments.get_mut(name).ok_or_else(|| no_such_experiment(name))
    }

    fn visible(&self, caller: &str, name: &str) -> Result<&Experiment> {
        self.experiments.get(name).filter(|e| e.visible_to(caller)).ok_or_else(|| not_found(name))
    }

    fn visible_mut(&mut self, caller: &str, name: &str) -> Result<&mut Experiment> {
        self.experiments.get_mut(name).filter(|e| e.visible_to(caller)).ok_or_else(|| not_found(name))
    }

    fn in_progress(&self, name: &str) -> bool {
        self.experiments.get(name).is_some_and(|e| e.status == ExperimentStatus::InProgress)
    }
}

/// The director's state, shared by the gRPC service, the execution loop and
/// the host's [`DirectorHandle`](super::server::DirectorHandle).
pub struct DirectorState {
    config: StateConfig,
    inner: Mutex<Inner>,
    changed: watch::Sender<u64>,
}

impl DirectorState {
    /// A new, empty state; creates the archive directory.
    pub fn new(config: StateConfig) -> Result<Self> {
        std::fs::create_dir_all(&config.archive_dir).map_err(|e| {
            Error::io(format!("cannot create the archive directory {}: {e}", config.archive_dir.display()))
        })?;
        let (changed, _) = watch::channel(0);
        Ok(Self { config, inner: Mutex::new(Inner::default()), changed })
    }

    /// The configuration.
    pub fn config(&self) -> &StateConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes everything waiting for a change.
    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A receiver that sees every later change (subscribe, then check, then wait).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Applies a host report to experiment `name` (whoever owns it), then
    /// wakes the waiters.
    fn host_update<T>(&self, name: &str, f: impl FnOnce(&mut Experiment) -> Result<T>) -> Result<T> {
        let out = {
            let mut inner = self.lock();
            f(inner.experiment_mut(name)?)?
        };
        self.bump();
        Ok(out)
    }
}
