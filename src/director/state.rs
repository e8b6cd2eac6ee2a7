//! The director's built-in state (OpenFL 1.6's `Director` and
//! `ExperimentsRegistry`): registered envoys and their health, experiments and
//! their life cycle, the per-envoy experiment queues, the archive store, the
//! trained models and the metric queues.
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
//! checked first ([`validate_experiment_name`]): no path separator, no `..`,
//! no NUL or control character, no leading dot, at most 200 bytes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use rand::Rng;
use tokio::sync::watch;

use crate::error::{ofl_code, Error, Result};
use crate::proto::director::{CudaDeviceInfo, ExperimentListItem, ShardInfo};
use crate::proto::{
    CollaboratorDescription, DownloadStatus, DownloadStatuses, ExperimentDescription, ModelProto, TaskDescription,
};

/// The caller name of a peer without TLS that sends no `client_id` metadata
/// (OpenFL's `CLIENT_ID_DEFAULT`: envoys).
pub fn default_caller() -> &'static str {
    "__default__"
}

/// Longest experiment name accepted, in bytes (it becomes a file name).
const MAX_NAME_LEN: usize = 200;
/// Most collaborator names one experiment may list (duplicates included):
/// SetNewExperiment beyond it is RESOURCE_EXHAUSTED. OpenFL 1.6 has no bound.
pub const MAX_COLLABORATORS: usize = 10_000;
/// Longest collaborator (envoy) name accepted, in bytes: beyond it
/// SetNewExperiment is INVALID_ARGUMENT. OpenFL 1.6 has no bound.
pub const MAX_COLLABORATOR_NAME_LEN: usize = 1024;
/// Extension of stored archives: `<archive_dir>/<experiment name>.archive`.
const ARCHIVE_EXTENSION: &str = "archive";
/// Prefix of archives being uploaded (a leading dot: no experiment name has one).
const UPLOAD_PREFIX: &str = ".upload-";

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
pub struct Metric {
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

/// One envoy as GetEnvoys reports it.
#[derive(Clone, Debug)]
pub struct EnvoyStatus {
    /// What the envoy reported (with the CUDA devices of its last health check).
    pub shard_info: ShardInfo,
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

/// Checks an experiment name before it becomes a file name.
pub fn validate_experiment_name(name: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::invalid_argument(format!("experiment name {name:?}: {why}")));
    if name.is_empty() {
        return Err(Error::invalid_argument("experiment name is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return bad(&format!("longer than {MAX_NAME_LEN} bytes"));
    }
    if name.contains('\0') {
        return bad("contains a NUL character");
    }
    if name.contains('/') || name.contains('\\') {
        return bad("contains a path separator");
    }
    if name.contains("..") {
        return bad("contains '..'");
    }
    if name.starts_with('.') {
        return bad("starts with '.'");
    }
    if name.chars().any(char::is_control) {
        return bad("contains a control character");
    }
    Ok(())
}

/// An experiment's collaborator names checked and deduplicated, in order of
/// first appearance: at most [`MAX_COLLABORATORS`] names
/// (RESOURCE_EXHAUSTED), none empty or longer than
/// [`MAX_COLLABORATOR_NAME_LEN`] bytes (INVALID_ARGUMENT), at least one.
/// Linear time: a long list cannot hold a worker.
pub fn unique_collaborators(experiment: &str, names: &[String]) -> Result<Vec<String>> {
    if names.len() > MAX_COLLABORATORS {
        return Err(Error::new(
            ofl_code::ResourceExhausted,
            format!(
                "experiment {experiment:?} lists {} collaborator names; at most {MAX_COLLABORATORS} are accepted",
                names.len()
            ),
        ));
    }
    let mut seen: HashSet<&str> = HashSet::with_capacity(names.len());
    let mut unique = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() {
            return Err(Error::invalid_argument(format!("collaborator_names holds an empty name (at index {i})")));
        }
        if name.len() > MAX_COLLABORATOR_NAME_LEN {
            return Err(Error::invalid_argument(format!(
                "collaborator name at index {i} is {} bytes long; at most {MAX_COLLABORATOR_NAME_LEN} are accepted",
                name.len()
            )));
        }
        if seen.insert(name.as_str()) {
            unique.push(name.clone());
        }
    }
    if unique.is_empty() {
        return Err(Error::invalid_argument(format!("experiment {experiment:?} names no collaborators")));
    }
    Ok(unique)
}

fn not_found(name: &str) -> Error {
    Error::new(ofl_code::NotFound, format!("no experiment named {name:?} for this caller"))
}

fn no_such_experiment(name: &str) -> Error {
    Error::new(ofl_code::NotFound, format!("no experiment named {name:?}"))
}

struct Envoy {
    shard_info: ShardInfo,
    is_experiment_running: bool,
    last_updated: SystemTime,
    valid_duration: Duration,
}

struct Experiment {
    info: ExperimentDetails,
    status: ExperimentStatus,
    archive_present: bool,
    best_model: Option<ModelProto>,
    last_model: Option<ModelProto>,
    metrics: VecDeque<Metric>,
    dropped_metrics: u64,
    /// The newest metric stream: older ones end without taking metrics.
    metric_stream: u64,
    current_round: u32,
    total_rounds: u32,
    tasks: Vec<TaskDescription>,
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
    envoys: BTreeMap<String, Envoy>,
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

/// What the next step of a metric stream is.
#[derive(Debug, PartialEq)]
pub(crate) enum MetricPoll {
    /// Send this metric.
    Metric(Metric),
    /// Nothing queued yet: wait for a change.
    Wait,
    /// The experiment is over and every metric was sent (or it was removed).
    End,
}

/// The director's state. Shared by the gRPC service, the execution loop and
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

    // -----------------------------------------------------------------------
    // Envoys
    // -----------------------------------------------------------------------

    fn valid_duration(&self) -> Duration {
        self.config.envoy_health_check_period.saturating_mul(2)
    }

    /// UpdateShardInfo: registers (or re-registers) the envoy when its sample
    /// and target shapes are the configured ones; `Ok(false)` otherwise.
    pub fn acknowledge_shard(&self, shard_info: ShardInfo) -> Result<bool> {
        let name = shard_info.node_info.as_ref().map(|n| n.name.clone()).unwrap_or_default();
        if name.is_empty() {
            return Err(Error::invalid_argument("shard_info.node_info.name is empty"));
        }
        if shard_info.sample_shape != self.config.sample_shape || shard_info.target_shape != self.config.target_shape {
            log::info!(
                "director did not accept the shard of {name}: shapes {:?}/{:?}, expected {:?}/{:?}",
                shard_info.sample_shape,
                shard_info.target_shape,
                self.config.sample_shape,
                self.config.target_shape
            );
            return Ok(false);
        }
        log::info!("director accepted the shard of {name}");
        let envoy = Envoy {
            shard_info,
            is_experiment_running: false,
            last_updated: SystemTime::now(),
            valid_duration: self.valid_duration(),
        };
        self.lock().envoys.insert(name, envoy);
        self.bump();
        Ok(true)
    }

    /// UpdateEnvoyStatus: a health check. Returns the health-check period;
    /// NOT_FOUND for an envoy that never registered.
    ///
    /// Reported CUDA devices replace the registered ones index by index;
    /// extra ones are added (OpenFL 1.6 raises IndexError there).
    pub fn update_envoy_status(
        &self,
        name: &str,
        is_experiment_running: bool,
        cuda_devices: Vec<CudaDeviceInfo>,
    ) -> Result<Duration> {
        let valid_duration = self.valid_duration();
        {
            let mut inner = self.lock();
            let envoy = inner
                .envoys
                .get_mut(name)
                .ok_or_else(|| Error::new(ofl_code::NotFound, format!("Unknown shard {name}")))?;
            envoy.is_experiment_running = is_experiment_running;
            envoy.last_updated = SystemTime::now();
            envoy.valid_duration = valid_duration;
            if !cuda_devices.is_empty() {
                let node = envoy.shard_info.node_info.get_or_insert_with(Default::default);
                for (i, device) in cuda_devices.into_iter().enumerate() {
                    match node.cuda_devices.get_mut(i) {
                        Some(slot) => *slot = device,
                        None => node.cuda_devices.push(device),
                    }
                }
            }
        }
        self.bump();
        Ok(self.config.envoy_health_check_period)
    }

    /// Whether an envoy registered.
    pub fn envoy_registered(&self, name: &str) -> bool {
        self.lock().envoys.contains_key(name)
    }

    /// GetEnvoys: every registered envoy, online or not, by name.
    pub fn envoys(&self) -> Vec<EnvoyStatus> {
        let now = SystemTime::now();
        let inner = self.lock();
        inner
            .envoys
            .iter()
            .map(|(name, e)| EnvoyStatus {
                shard_info: e.shard_info.clone(),
                is_online: now < e.last_updated + e.valid_duration,
                is_experiment_running: e.is_experiment_running,
                last_updated: e.last_updated,
                valid_duration: e.valid_duration,
                experiment_name: inner.assigned.get(name).filter(|n| inner.in_progress(n)).cloned(),
            })
            .collect()
    }

    /// GetDatasetInfo: the configured sample and target shapes.
    pub fn dataset_info(&self) -> (Vec<String>, Vec<String>) {
        (self.config.sample_shape.clone(), self.config.target_shape.clone())
    }

    // -----------------------------------------------------------------------
    // Submitting experiments
    // -----------------------------------------------------------------------

    /// The file an experiment's archive is stored in.
    pub fn archive_path(&self, name: &str) -> PathBuf {
        self.config.archive_dir.join(format!("{name}.{ARCHIVE_EXTENSION}"))
    }

    /// A fresh file name for an upload in progress.
    pub fn upload_path(&self) -> PathBuf {
        let tag: u64 = rand::thread_rng().gen();
        self.config.archive_dir.join(format!("{UPLOAD_PREFIX}{}-{tag:016x}", std::process::id()))
    }

    /// Checks a new experiment's name early: valid and not taken.
    pub fn check_new_name(&self, name: &str) -> Result<()> {
        validate_experiment_name(name)?;
        if self.lock().experiments.contains_key(name) {
            return Err(Error::new(ofl_code::AlreadyExists, format!("an experiment named {name:?} exists")));
        }
        Ok(())
    }

    /// SetNewExperiment, once the archive is on disk at `upload`: moves it to
    /// its place and queues the experiment as pending, owned by `owner`.
    pub fn register_experiment(
        &self,
        name: &str,
        owner: &str,
        collaborators: &[String],
        upload: &Path,
        archive_size: u64,
        initial_model: Option<ModelProto>,
    ) -> Result<()> {
        validate_experiment_name(name)?;
        let unique = unique_collaborators(name, collaborators)?;
        let archive_path = self.archive_path(name);
        {
            let mut inner = self.lock();
            if inner.experiments.contains_key(name) {
                return Err(Error::new(ofl_code::AlreadyExists, format!("an experiment named {name:?} exists")));
            }
            // Under the lock: two uploads of one name cannot both rename.
            std::fs::rename(upload, &archive_path).map_err(|e| {
                Error::io(format!("cannot store the archive of {name:?} at {}: {e}", archive_path.display()))
            })?;
            let experiment = Experiment {
                info: ExperimentDetails {
                    name: name.to_string(),
                    owner: owner.to_string(),
                    collaborators: unique,
                    archive_path,
                    archive_size,
                    initial_model,
                },
                status: ExperimentStatus::Pending,
                archive_present: true,
                best_model: None,
                last_model: None,
                metrics: VecDeque::new(),
                dropped_metrics: 0,
                metric_stream: 0,
                current_round: 0,
                total_rounds: 0,
                tasks: Vec::new(),
                downloads: BTreeSet::new(),
                failure: None,
            };
            inner.experiments.insert(name.to_string(), experiment);
            inner.order.push(name.to_string());
            inner.pending.push_back(name.to_string());
        }
        log::info!("experiment {name:?} registered by {owner:?} ({archive_size} bytes)");
        self.bump();
        Ok(())
    }

    // -----------------------------------------------------------------------
    // The execution loop
    // -----------------------------------------------------------------------

    /// Takes the next pending experiment when none is active; it becomes the
    /// active one (still pending while it is reviewed).
    pub(crate) fn take_next(&self) -> Option<ExperimentDetails> {
        let mut inner = self.lock();
        if inner.active.is_some() {
            return None;
        }
        while let Some(name) = inner.pending.pop_front() {
            if let Some(e) = inner.experiments.get(&name).filter(|e| e.status == ExperimentStatus::Pending) {
                let info = e.info.clone();
                inner.active = Some(name);
                return Some(info);
            }
        }
        None
    }

    /// The review hook rejected the active experiment: its archive is deleted.
    pub(crate) fn reject(&self, name: &str) {
        {
            let mut inner = self.lock();
            if let Some(e) = inner.experiments.get_mut(name) {
                e.status = ExperimentStatus::Rejected;
                if e.archive_present {
                    remove_archive(&e.info.archive_path);
                    e.archive_present = false;
                }
            }
            if inner.active.as_deref() == Some(name) {
                inner.active = None;
            }
        }
        log::info!("experiment {name:?} was rejected by the review");
        self.bump();
    }

    /// The active experiment starts: `in_progress` (its envoys receive it
    /// after [`dispatch`](Self::dispatch)). False when it is gone (removed
    /// during the review).
    pub(crate) fn begin(&self, name: &str) -> bool {
        {
            let mut inner = self.lock();
            let Some(e) = inner.experiments.get_mut(name).filter(|e| e.status == ExperimentStatus::Pending) else {
                if inner.active.as_deref() == Some(name) {
                    inner.active = None;
                }
                return false;
            };
            e.status = ExperimentStatus::InProgress;
        }
        log::info!("experiment {name:?} started");
        self.bump();
        true
    }

    /// Queues a started experiment for each of its envoys (WaitExperiment).
    pub(crate) fn dispatch(&self, name: &str) {
        {
            let mut inner = self.lock();
            let Some(e) = inner.experiments.get(name).filter(|e| e.status == ExperimentStatus::InProgress) else {
                return;
            };
            for c in e.info.collaborators.clone() {
                inner.queues.entry(c).or_default().push_back(name.to_string());
            }
        }
        self.bump();
    }

    /// Whether the active experiment is over (terminal or removed); clears
    /// `active` then.
    pub(crate) fn active_done(&self, name: &str) -> bool {
        let mut inner = self.lock();
        let done = inner.experiments.get(name).map_or(true, |e| e.status.is_terminal());
        if done && inner.active.as_deref() == Some(name) {
            inner.active = None;
        }
        done
    }

    // -----------------------------------------------------------------------
    // Envoys' experiment RPCs
    // -----------------------------------------------------------------------

    /// WaitExperiment without waiting: the experiment to hand `envoy` now,
    /// if any. An envoy that asks again while the experiment it was given is
    /// in progress gets it again (it reconnected); otherwise the next one of
    /// its queue that is still in progress.
    pub(crate) fn poll_experiment(&self, envoy: &str, first_poll: bool) -> Option<String> {
        let mut inner = self.lock();
        if first_poll {
            if let Some(name) = inner.assigned.get(envoy).cloned() {
                if inner.in_progress(&name) {
                    return Some(name);
                }
                inner.assigned.remove(envoy);
            }
        }
        loop {
            let name = inner.queues.get_mut(envoy)?.pop_front()?;
            if inner.in_progress(&name) {
                inner.assigned.insert(envoy.to_string(), name.clone());
                return Some(name);
            }
        }
    }

    /// GetExperimentData: the archive `collaborator` may download.
    pub(crate) fn archive_for_envoy(&self, name: &str, collaborator: &str) -> Result<PathBuf> {
        let inner = self.lock();
        let e = inner.experiment(name)?;
        if !e.info.collaborators.iter().any(|c| c == collaborator) {
            return Err(Error::new(
                ofl_code::PermissionDenied,
                format!("{collaborator:?} is not a collaborator of experiment {name:?}"),
            ));
        }
        if e.status != ExperimentStatus::InProgress || !e.archive_present {
            return Err(Error::new(
                ofl_code::FailedPrecondition,
                format!("experiment {name:?} is {}, not in_progress: its archive is not served", e.status),
            ));
        }
        Ok(e.info.archive_path.clone())
    }

    /// Records that `collaborator` received the whole archive of `name`.
    pub(crate) fn record_download(&self, name: &str, collaborator: &str) {
        if let Some(e) = self.lock().experiments.get_mut(name) {
            e.downloads.insert(collaborator.to_string());
        }
        self.bump();
    }

    /// SetExperimentFailed from envoy `collaborator`. Returns the experiment
    /// and the failure when this call failed it (false when it had failed
    /// already).
    pub(crate) fn envoy_failed(
        &self,
        name: &str,
        failure: ExperimentFailure,
    ) -> Result<Option<(ExperimentDetails, ExperimentFailure)>> {
        let outcome = {
            let mut inner = self.lock();
            let e = inner.experiment_mut(name)?;
            if !e.info.collaborators.contains(&failure.collaborator) {
                return Err(Error::new(
                    ofl_code::PermissionDenied,
                    format!("{:?} is not a collaborator of experiment {name:?}", failure.collaborator),
                ));
            }
            match e.status {
                ExperimentStatus::Failed => None,
                ExperimentStatus::InProgress => {
                    e.status = ExperimentStatus::Failed;
                    e.failure = Some(failure.clone());
                    Some((e.info.clone(), failure))
                }
                other => {
                    return Err(Error::new(
                        ofl_code::FailedPrecondition,
                        format!("experiment {name:?} is {other}: only one in_progress can fail"),
                    ))
                }
            }
        };
        if outcome.is_some() {
            log::error!("experiment {name:?} failed: reported by an envoy");
            self.bump();
        }
        Ok(outcome)
    }

    // -----------------------------------------------------------------------
    // Frontends' RPCs (a caller sees only the experiments it submitted)
    // -----------------------------------------------------------------------

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

    /// GetMetricStream, first call: checks that `caller` may stream `name`
    /// and makes this stream the experiment's only one. A cancelled stream
    /// is noticed by the server only a moment later; ending older streams
    /// keeps such a dead stream from taking metrics meant for its successor.
    pub(crate) fn open_metric_stream(&self, caller: &str, name: &str) -> Result<u64> {
        let generation = {
            let mut inner = self.lock();
            let e = inner.visible_mut(caller, name)?;
            e.metric_stream += 1;
            e.metric_stream
        };
        self.bump();
        Ok(generation)
    }

    /// GetMetricStream, each step of stream `generation`: the next queued
    /// metric (consumed, as OpenFL's queue), wait, or end once the experiment
    /// is over and drained, or a newer stream was opened.
    pub(crate) fn poll_metric(&self, name: &str, generation: u64) -> MetricPoll {
        let mut inner = self.lock();
        let Some(e) = inner.experiments.get_mut(name) else {
            return MetricPoll::End;
        };
        if e.metric_stream != generation {
            return MetricPoll::End;
        }
        if let Some(metric) = e.metrics.pop_front() {
            return MetricPoll::Metric(metric);
        }
        if e.status.is_terminal() {
            MetricPoll::End
        } else {
            MetricPoll::Wait
        }
    }

    /// RemoveExperimentData: forgets a pending or finished experiment and
    /// deletes its archive. FAILED_PRECONDITION while it is being reviewed or
    /// run (OpenFL 1.6 removes it from under its aggregator). An experiment
    /// the caller does not have (unknown, or another caller's) is left alone
    /// and the call succeeds, as in OpenFL 1.6 (it acknowledges with True):
    /// `Ok(false)` then, `Ok(true)` when removed.
    pub fn remove_experiment(&self, caller: &str, name: &str) -> Result<bool> {
        {
            let mut inner = self.lock();
            let active = inner.active.as_deref() == Some(name);
            let Ok(e) = inner.visible(caller, name) else {
                log::debug!("RemoveExperimentData from {caller:?}: no experiment {name:?} of theirs (nothing removed)");
                return Ok(false);
            };
            if active || e.status == ExperimentStatus::InProgress {
                return Err(Error::new(
                    ofl_code::FailedPrecondition,
                    format!("experiment {name:?} is being reviewed or run: it cannot be removed now"),
                ));
            }
            let e = inner.experiments.remove(name).expect("checked above");
            if e.archive_present {
                remove_archive(&e.info.archive_path);
            }
            inner.order.retain(|n| n != name);
            inner.pending.retain(|n| n != name);
            for queue in inner.queues.values_mut() {
                queue.retain(|n| n != name);
            }
            inner.assigned.retain(|_, n| n != name);
        }
        log::info!("experiment {name:?} removed by {caller:?}");
        self.bump();
        Ok(true)
    }

    /// GetExperimentsList: the caller's experiments in submission order.
    pub fn experiments_list(&self, caller: &str) -> Vec<ExperimentListItem> {
        let inner = self.lock();
        inner
            .order
            .iter()
            .filter_map(|n| inner.experiments.get(n))
            .filter(|e| e.visible_to(caller))
            .map(|e| ExperimentListItem {
                name: e.info.name.clone(),
                status: e.status.as_str().to_string(),
                collaborators_amount: e.info.collaborators.len() as u32,
                tasks_amount: e.tasks.len() as u32,
                progress: e.progress(),
            })
            .collect()
    }

    /// GetExperimentDescription.
    pub fn experiment_description(&self, caller: &str, name: &str) -> Result<ExperimentDescription> {
        let inner = self.lock();
        let e = inner.visible(caller, name)?;
        let ready = |present: bool| if present { "ready" } else { "pending" }.to_string();
        let models = vec![
            DownloadStatus { name: "best".into(), status: ready(e.best_model.is_some()) },
            DownloadStatus { name: "last".into(), status: ready(e.last_model.is_some()) },
            DownloadStatus { name: "init".into(), status: ready(e.info.initial_model.is_some()) },
        ];
        let logs = vec![DownloadStatus { name: "aggregator".into(), status: "ready".into() }];
        let progress = e.progress();
        let collaborators = e
            .info
            .collaborators
            .iter()
            .map(|c| {
                let failed = e.failure.as_ref().is_some_and(|f| f.collaborator == *c);
                let status = if failed {
                    "failed"
                } else if e.status == ExperimentStatus::Finished {
                    "finished"
                } else if e.downloads.contains(c) {
                    "running"
                } else {
                    "pending"
                };
                CollaboratorDescription {
                    name: c.clone(),
                    status: status.into(),
                    progress,
                    round: e.current_round,
                    current_task: String::new(),
                    next_task: String::new(),
                }
            })
            .collect();
        Ok(ExperimentDescription {
            name: e.info.name.clone(),
            status: e.status.as_str().to_string(),
            progress,
            total_rounds: e.total_rounds,
            current_round: e.current_round,
            download_statuses: Some(DownloadStatuses { models, logs }),
            collaborators,
            tasks: e.tasks.clone(),
        })
    }

    // -----------------------------------------------------------------------
    // The host's reports (see DirectorHandle)
    // -----------------------------------------------------------------------

    fn host_update<T>(&self, name: &str, f: impl FnOnce(&mut Experiment) -> Result<T>) -> Result<T> {
        let out = {
            let mut inner = self.lock();
            f(inner.experiment_mut(name)?)?
        };
        self.bump();
        Ok(out)
    }

    /// Queues a metric for the experiment's metric streams.
    pub fn push_metric(&self, name: &str, metric: Metric) -> Result<()> {
        let max = self.config.max_queued_metrics.max(1);
        self.host_update(name, |e| {
            if e.metrics.len() >= max {
                e.metrics.pop_front();
                e.dropped_metrics += 1;
            }
            e.metrics.push_back(metric);
            Ok(())
        })
    }

    /// Sets the best model (GetTrainedModel BEST_MODEL).
    pub fn set_best_model(&self, name: &str, model: ModelProto) -> Result<()> {
        self.host_update(name, |e| {
            e.best_model = Some(model);
            Ok(())
        })
    }

    /// Sets the last model (GetTrainedModel LAST_MODEL).
    pub fn set_last_model(&self, name: &str, model: ModelProto) -> Result<()> {
        self.host_update(name, |e| {
            e.last_model = Some(model);
            Ok(())
        })
    }

    /// Sets the round progress shown by GetExperimentsList / Description.
    pub fn set_round(&self, name: &str, current_round: u32, total_rounds: u32) -> Result<()> {
        self.host_update(name, |e| {
            e.current_round = current_round;
            e.total_rounds = total_rounds;
            Ok(())
        })
    }

    /// Sets the task list shown by GetExperimentDescription (name, description).
    pub fn set_tasks(&self, name: &str, tasks: Vec<(String, String)>) -> Result<()> {
        self.host_update(name, |e| {
            e.tasks = tasks.into_iter().map(|(name, description)| TaskDescription { name, description }).collect();
            Ok(())
        })
    }

    /// The experiment finished (OpenFL: all quit jobs sent). Only from
    /// `in_progress`; idempotent.
    pub fn mark_finished(&self, name: &str) -> Result<()> {
        self.host_update(name, |e| match e.status {
            ExperimentStatus::InProgress | ExperimentStatus::Finished => {
                e.status = ExperimentStatus::Finished;
                Ok(())
            }
            other => Err(Error::new(
                ofl_code::FailedPrecondition,
                format!("experiment {name:?} is {other}: only one in_progress can finish"),
            )),
        })?;
        log::info!("experiment {name:?} finished");
        Ok(())
    }

    /// The experiment failed (reported by the host). From `pending` or
    /// `in_progress`; idempotent.
    pub fn mark_failed(&self, name: &str, description: &str) -> Result<()> {
        self.host_update(name, |e| match e.status {
            ExperimentStatus::Pending | ExperimentStatus::InProgress | ExperimentStatus::Failed => {
                if e.status != ExperimentStatus::Failed {
                    e.status = ExperimentStatus::Failed;
                    e.failure = Some(ExperimentFailure { description: description.to_string(), ..Default::default() });
                }
                Ok(())
            }
            other => Err(Error::new(
                ofl_code::FailedPrecondition,
                format!("experiment {name:?} is {other}: it cannot fail any more"),
            )),
        })?;
        log::error!("experiment {name:?} failed: {description}");
        Ok(())
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

fn remove_archive(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            log::warn!("cannot delete the archive {}: {e}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::director::NodeInfo;

    fn state(dir: &Path) -> DirectorState {
        DirectorState::new(StateConfig {
            archive_dir: dir.to_path_buf(),
            sample_shape: vec!["28".into(), "28".into()],
            target_shape: vec!["1".into()],
            envoy_health_check_period: Duration::from_millis(100),
            ..Default::default()
        })
        .unwrap()
    }

    fn shard(name: &str, sample: &[&str]) -> ShardInfo {
        ShardInfo {
            node_info: Some(NodeInfo { name: name.into(), cuda_devices: vec![] }),
            shard_description: "mnist".into(),
            n_samples: 10,
            sample_shape: sample.iter().map(|s| s.to_string()).collect(),
            target_shape: vec!["1".into()],
        }
    }

    fn submit(s: &DirectorState, name: &str, owner: &str, cols: &[&str]) {
        let upload = s.upload_path();
        std::fs::write(&upload, b"archive").unwrap();
        let cols: Vec<String> = cols.iter().map(|c| c.to_string()).collect();
        s.register_experiment(name, owner, &cols, &upload, 7, None).unwrap();
    }

    #[test]
    fn names_that_escape_the_archive_directory_are_rejected() {
        for bad in ["", "a/b", "../x", "..", ".", "a\\b", "x\0y", ".hidden", "tab\tname", &"n".repeat(201)] {
            let e = validate_experiment_name(bad).unwrap_err();
            assert_eq!(e.code(), ofl_code::InvalidArgument, "{bad:?}");
        }
        for good in ["mnist", "exp-1_2 (b)", "a.b", "données"] {
            validate_experiment_name(good).unwrap();
        }
    }

    #[test]
    fn shards_are_accepted_only_with_the_configured_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let s = state(dir.path());
        assert!(!s.acknowledge_shard(shard("col1", &["28"])).unwrap());
        assert!(s.acknowledge_shard(shard("col1", &["28", "28"])).unwrap());
        assert_eq!(s.acknowledge_shard(shard("", &["28", "28"])).unwrap_err().code(), ofl_code::InvalidArgument);
        assert_eq!(s.envoys().len(), 1);
        assert!(s.envoys()[0].is_online);
        assert_eq!(s.update_envoy_status("nope", false, vec![]).unwrap_err().code(), ofl_code::NotFound);
    }

    #[test]
    fn health_checks_keep_an_envoy_online_for_two_periods() {
        let dir = tempfile::tempdir().unwrap();
        let s = state(dir.path());
        s.acknowledge_shard(shard("col1", &["28", "28"])).unwrap();
        assert_eq!(s.envoys()[0].valid_duration, Duration::from_millis(200));
        std::thread::sleep(Duration::from_millis(250));
        assert!(!s.envoys()[0].is_online);
        let devices = vec![CudaDeviceInfo { index: 0, name: "gpu".into(), ..Default::default() }];
        assert_eq!(s.update_envoy_status("col1", true, devices).unwrap(), Duration::from_millis(100));
        let envoy = &s.envoys()[0];
        assert!(envoy.is_online && envoy.is_experiment_running);
        assert_eq!(envoy.shard_info.node_info.as_ref().unwrap().cuda_devices[0].name, "gpu");
    }

    #[test]
    fn life_cycle_queues_reassignment_and_isolation() {
        let dir = tempfile::tempdir().unwrap();
        let s = state(dir.path());
        submit(&s, "e1", "alice", &["col1", "col2", "col1"]);
        assert_eq!(s.experiment_status("alice", "e1"), Some(ExperimentStatus::Pending));
        assert_eq!(s.experiment_status("bob", "e1"), None, "another caller's: OpenFL's empty status");
        assert_eq!(s.experiment_status("alice", "nope"), None);
        assert!(s.experiments_list("bob").is_empty());
        assert_eq!(s.poll_experiment("col1", true), None);

        let info = s.take_next().unwrap();
        assert_eq!(info.collaborators, vec!["col1".to_string(), "col2".to_string()]);
        assert!(s.take_next().is_none(), "one active experiment at a time");
        assert_eq!(s.remove_experiment("alice", "e1").unwrap_err().code(), ofl_code::FailedPrecondition);
        assert!(s.begin("e1"));
        assert_eq!(s.poll_experiment("col1", true), None, "not handed out before dispatch");
        s.dispatch("e1");
        assert_eq!(s.poll_experiment("col1", true).as_deref(), Some("e1"));
        // Reconnecting into a running experiment hands it out again.
        assert_eq!(s.poll_experiment("col1", true).as_deref(), Some("e1"));
        assert_eq!(s.poll_experiment("col1", false), None);
        assert!(!s.active_done("e1"));

        s.push_metric("e1", Metric { metric_name: "acc".into(), value: 0.5, ..Default::default() }).unwrap();
        assert_eq!(s.open_metric_stream("bob", "e1").unwrap_err().code(), ofl_code::NotFound);
        let stream = s.open_metric_stream("alice", "e1").unwrap();
        assert!(matches!(s.poll_metric("e1", stream), MetricPoll::Metric(m) if m.value == 0.5));
        assert_eq!(s.poll_metric("e1", stream), MetricPoll::Wait);
        // A newer stream takes over: the older one (perhaps cancelled by its
        // client, not yet noticed) ends and takes nothing.
        s.push_metric("e1", Metric { metric_name: "acc".into(), value: 0.75, ..Default::default() }).unwrap();
        let newer = s.open_metric_stream("alice", "e1").unwrap();
        assert_eq!(s.poll_metric("e1", stream), MetricPoll::End);
        assert!(matches!(s.poll_metric("e1", newer), MetricPoll::Metric(m) if m.value == 0.75));
        s.mark_finished("e1").unwrap();
        assert_eq!(s.poll_metric("e1", newer), MetricPoll::End);
        assert!(s.active_done("e1"));
        assert_eq!(s.poll_experiment("col1", true), None, "a finished experiment is not handed out again");
        assert_eq!(s.poll_experiment("col2", true), None, "nor one that finished before the envoy asked");
        assert_eq!(s.mark_failed("e1", "late").unwrap_err().code(), ofl_code::FailedPrecondition);

        assert!(!s.remove_experiment("bob", "e1").unwrap(), "another caller's: a no-op, as OpenFL");
        assert!(s.snapshot("e1").is_some());
        assert!(s.remove_experiment("alice", "e1").unwrap());
        assert!(!s.remove_experiment("alice", "e1").unwrap(), "already gone: a no-op");
        assert!(!s.archive_path("e1").exists());
    }

    #[test]
    fn rejection_deletes_the_archive_and_duplicates_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = state(dir.path());
        submit(&s, "e1", "alice", &["col1"]);
        assert!(s.archive_path("e1").exists());
        let upload = s.upload_path();
        std::fs::write(&upload, b"x").unwrap();
        let e = s.register_experiment("e1", "bob", &["col1".into()], &upload, 1, None).unwrap_err();
        assert_eq!(e.code(), ofl_code::AlreadyExists);
        s.take_next().unwrap();
        s.reject("e1");
        assert_eq!(s.experiment_status("alice", "e1"), Some(ExperimentStatus::Rejected));
        assert!(!s.archive_path("e1").exists());
        assert!(!s.begin("e1"));
    }

    #[test]
    fn collaborator_names_are_bounded_and_deduplicated_in_linear_time() {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(unique_collaborators("e", &names(&["b", "a", "b", "c", "a"])).unwrap(), names(&["b", "a", "c"]));
        let code = |list: &[String]| unique_collaborators("e", list).unwrap_err().code();
        assert_eq!(code(&[]), ofl_code::InvalidArgument);
        assert_eq!(code(&names(&["a", ""])), ofl_code::InvalidArgument);
        assert_eq!(code(&["x".repeat(MAX_COLLABORATOR_NAME_LEN + 1)]), ofl_code::InvalidArgument);
        unique_collaborators("e", &["x".repeat(MAX_COLLABORATOR_NAME_LEN)]).unwrap();
        let many: Vec<String> = (0..MAX_COLLABORATORS).map(|i| format!("envoy-{i}")).collect();
        assert_eq!(unique_collaborators("e", &many).unwrap().len(), MAX_COLLABORATORS);
        let too_many: Vec<String> = (0..=MAX_COLLABORATORS).map(|i| format!("envoy-{}", i % 3)).collect();
        assert_eq!(code(&too_many), ofl_code::ResourceExhausted);
    }
}
