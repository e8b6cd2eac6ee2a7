//! Experiments and their life cycle: submission (SetNewExperiment), the
//! execution loop's steps (take the next pending one, review, start, hand
//! to envoys, wait for its end), the per-envoy experiment queues
//! (WaitExperiment), failures, the host's reports and removal.

use std::collections::{BTreeSet, VecDeque};
use std::path::Path;

use super::archives::remove_archive;
use super::{DirectorState, Experiment};
use crate::director::names::{unique_collaborators, validate_experiment_name};
use crate::director::types::{ExperimentDetails, ExperimentFailure, ExperimentStatus};
use crate::error::{ofl_code, Error, Result};
use crate::proto::ModelProto;

impl DirectorState {
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
    // The host's reports (see DirectorHandle)
    // -----------------------------------------------------------------------

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
            e.tasks = tasks;
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

    // -----------------------------------------------------------------------
    // Frontends
    // -----------------------------------------------------------------------

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
}
