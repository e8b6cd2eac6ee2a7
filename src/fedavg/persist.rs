//! FedAvg's state directory ([`FedAvgOptions::state_dir`](super::FedAvgOptions::state_dir)): what a restarted
//! aggregator needs to resume the round it was in.
//!
//! # Files
//!
//! - `federation.state`: the federation's identity (uuids, collaborators,
//!   tasks, rounds to train), the current round, its model, the metrics of
//!   the rounds that ended, the best model so far. Written when the
//!   aggregator first starts and again whenever a round ends.
//! - `result-<sequence number>.state`: one accepted upload (round,
//!   collaborator, task, data size, the tensors as stored). Written and
//!   flushed to disk *before* the upload is acknowledged; deleted once a
//!   `federation.state` of a later round is on disk.
//! - `quit.state`: the collaborators told to quit after the last round,
//!   written before each first quit answer.
//! - `lock`: locked (`flock`) while an aggregator uses the directory.
//!
//! Every file is written atomically and checksummed
//! ([`super::state_file`]).
//!
//! # Restart
//!
//! A new FedAvg given the same directory reads `federation.state` (refusing
//! it with `DataLoss` when it is damaged, `FailedPrecondition` when it is
//! another federation's), then replays the result files in the order they
//! were accepted through the same code as live uploads: a round whose
//! results were all saved ends again, with the same model, even if the crash
//! came before its `federation.state` was written. So every acknowledged
//! upload is counted once: a collaborator that retries an upload it already
//! sent is answered OK and ignored as a duplicate, and one whose upload was
//! cut by the crash (never acknowledged, never saved) sends it again and it
//! counts then. A collaborator that had reported every task gets
//! `sleep_time`, the others the tasks they still owe.
//!
//! Not kept: the previous round's model (served only to a collaborator that
//! asks for it after its round ended, which OpenFL's collaborator does not)
//! and the initial model of the configuration once `federation.state`
//! exists (the saved model wins).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use prost::Message;

use super::codec::StoredTensor;
use super::metric::{metric_value, FedAvgMetric};
use super::round::{BestModel, DecodedResult, State};
use super::store::{Snapshot, TensorKey};
use super::FedAvg;
use super::state_file::{self, DirLock};
use crate::error::{ofl_code, Error, Result};
use crate::proto::aggregator::Task;

const MANIFEST: &str = "federation.state";
const QUIT: &str = "quit.state";
const RESULT_PREFIX: &str = "result-";
const STATE_SUFFIX: &str = ".state";
const FORMAT: u32 = 1;

// ---------------------------------------------------------------------------
// File contents (protobuf, so a later format can add fields)

#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(bool, tag = "2")]
    report: bool,
    #[prost(string, repeated, tag = "3")]
    tags: Vec<String>,
    #[prost(uint64, repeated, tag = "4")]
    shape: Vec<u64>,
    #[prost(bytes = "bytes", tag = "5")]
    data: Bytes,
}

#[derive(Clone, PartialEq, Message)]
struct IdentityProto {
    #[prost(string, tag = "1")]
    aggregator_uuid: String,
    #[prost(string, tag = "2")]
    federation_uuid: String,
    #[prost(string, tag = "3")]
    single_col_cert_common_name: String,
    #[prost(string, repeated, tag = "4")]
    collaborators: Vec<String>,
    #[prost(message, repeated, tag = "5")]
    tasks: Vec<Task>,
    #[prost(int32, tag = "6")]
    rounds_to_train: i32,
}

#[derive(Clone, PartialEq, Message)]
struct MetricProto {
    #[prost(int32, tag = "1")]
    round: i32,
    #[prost(string, tag = "2")]
    origin: String,
    #[prost(bool, tag = "3")]
    aggregated: bool,
    #[prost(string, tag = "4")]
    task: String,
    #[prost(string, tag = "5")]
    name: String,
    #[prost(double, tag = "6")]
    value: f64,
}

#[derive(Clone, PartialEq, Message)]
struct BestProto {
    #[prost(int32, tag = "1")]
    round: i32,
    #[prost(double, tag = "2")]
    score: f64,
    #[prost(message, repeated, tag = "3")]
    model: Vec<TensorProto>,
}

#[derive(Clone, PartialEq, Message)]
struct ManifestProto {
    #[prost(uint32, tag = "1")]
    format: u32,
    #[prost(message, optional, tag = "2")]
    identity: Option<IdentityProto>,
    #[prost(int32, tag = "3")]
    round: i32,
    #[prost(message, repeated, tag = "4")]
    model: Vec<TensorProto>,
    #[prost(message, repeated, tag = "5")]
    metrics: Vec<MetricProto>,
    #[prost(message, optional, tag = "6")]
    best: Option<BestProto>,
    #[prost(uint64, tag = "7")]
    next_sequence: u64,
}

#[derive(Clone, PartialEq, Message)]
struct ResultProto {
    #[prost(int32, tag = "1")]
    round: i32,
    #[prost(uint64, tag = "2")]
    sequence: u64,
    #[prost(string, tag = "3")]
    collaborator: String,
    #[prost(string, tag = "4")]
    task: String,
    #[prost(int32, tag = "5")]
    data_size: i32,
    #[prost(message, repeated, tag = "6")]
    tensors: Vec<TensorProto>,
}

#[derive(Clone, PartialEq, Message)]
struct QuitProto {
    #[prost(string, repeated, tag = "1")]
    collaborators: Vec<String>,
}

// ---------------------------------------------------------------------------
// Conversions

fn tensor_proto(name: &str, report: bool, tags: &[String], tensor: &StoredTensor) -> TensorProto {
    TensorProto {
        name: name.to_string(),
        report,
        tags: tags.to_vec(),
        shape: tensor.shape.iter().map(|&d| d as u64).collect(),
        data: tensor.data.clone(),
    }
}

fn model_proto(model: &Snapshot) -> Vec<TensorProto> {
    model.iter().map(|(name, tensor)| tensor_proto(name, false, &[], tensor)).collect()
}

fn corrupt(file: &Path, why: impl std::fmt::Display) -> Error {
    Error::new(ofl_code::DataLoss, format!("state file {} is inconsistent: {why}", file.display()))
}

fn stored_tensor(file: &Path, proto: &TensorProto) -> Result<StoredTensor> {
    let shape: Vec<usize> = proto.shape.iter().map(|&d| usize::try_from(d).unwrap_or(usize::MAX)).collect();
    let len = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if proto.data.len() % 4 != 0 || len != Some(proto.data.len() / 4) {
        return Err(corrupt(file, format!("tensor {:?} has shape {shape:?} and {} bytes", proto.name, proto.data.len())));
    }
    Ok(StoredTensor { shape, data: proto.data.clone() })
}

fn snapshot(file: &Path, protos: &[TensorProto]) -> Result<Snapshot> {
    protos.iter().map(|p| Ok((p.name.clone(), stored_tensor(file, p)?))).collect()
}

fn metric_proto(m: &FedAvgMetric) -> MetricProto {
    MetricProto {
        round: m.round,
        origin: m.origin.clone(),
        aggregated: m.aggregated,
        task: m.task.clone(),
        name: m.name.clone(),
        value: m.value,
    }
}

fn metric_record(m: MetricProto) -> FedAvgMetric {
    FedAvgMetric { round: m.round, origin: m.origin, aggregated: m.aggregated, task: m.task, name: m.name, value: m.value }
}

/// What a round-end save writes, taken under the state lock (cheap clones:
/// tensors are shared bytes), written outside it.
pub(super) struct RoundSave {
    round: i32,
    model: Snapshot,
    metrics: Vec<FedAvgMetric>,
    best: Option<BestModel>,
}

impl RoundSave {
    pub(super) fn of(state: &State) -> Self {
        Self { round: state.round, model: state.model.clone(), metrics: state.metrics.clone(), best: state.best.clone() }
    }
}

// ---------------------------------------------------------------------------
// The directory

/// What a restarted aggregator found.
struct Found {
    manifest: ManifestProto,
    results: Vec<(PathBuf, ResultProto)>,
    quit: Vec<String>,
}

/// The (sequence number, round) of the result files on disk.
#[derive(Debug, Default)]
struct ResultFiles {
    next_sequence: u64,
    on_disk: Vec<(u64, i32)>,
}

/// An open state directory (locked while this lives).
#[derive(Debug)]
pub(super) struct Persistence {
    dir: PathBuf,
    identity: IdentityProto,
    _lock: DirLock,
    results: Mutex<ResultFiles>,
    quit: Mutex<BTreeSet<String>>,
    /// Tests: pretend to crash before each round-end save.
    #[cfg(test)]
    skip_round_saves: std::sync::atomic::AtomicBool,
}

fn result_file_name(sequence: u64) -> String {
    format!("{RESULT_PREFIX}{sequence:020}{STATE_SUFFIX}")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn decode<M: Message + Default>(path: &Path, payload: Bytes) -> Result<M> {
    M::decode(payload).map_err(|e| corrupt(path, format!("does not decode ({e})")))
}

impl Persistence {
    /// Opens (creating it if needed) and locks `dir`, and reads what an
    /// earlier aggregator left there.
    fn open(dir: &Path, identity: IdentityProto) -> Result<(Self, Option<Found>)> {
        fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating state directory {}: {e}", dir.display())))?;
        let lock = DirLock::acquire(dir)?;
        state_file::remove_temporary_files(dir)?;
        let persistence = Self {
            dir: dir.to_path_buf(),
            identity,
            _lock: lock,
            results: Mutex::default(),
            quit: Mutex::default(),
            #[cfg(test)]
            skip_round_saves: Default::default(),
        };
        let found = persistence.read()?;
        Ok((persistence, found))
    }

    fn read(&self) -> Result<Option<Found>> {
        let manifest_path = self.dir.join(MANIFEST);
        let mut results = Vec::new();
        for (rest, path) in state_file::list_with_prefix(&self.dir, RESULT_PREFIX)? {
            if rest.ends_with(STATE_SUFFIX) {
                let result: ResultProto = decode(&path, state_file::read_checked(&path)?)?;
                results.push((path, result));
            }
        }
        if !manifest_path.exists() {
            if let Some((path, _)) = results.first() {
                return Err(Error::new(
                    ofl_code::DataLoss,
                    format!("state directory {} has {} but no {MANIFEST}", self.dir.display(), path.display()),
                ));
            }
            return Ok(None);
        }
        let manifest: ManifestProto = decode(&manifest_path, state_file::read_checked(&manifest_path)?)?;
        self.check_identity(&manifest_path, &manifest)?;
        results.sort_by_key(|(_, r)| r.sequence);
        let quit_path = self.dir.join(QUIT);
        let quit = if quit_path.exists() {
            decode::<QuitProto>(&quit_path, state_file::read_checked(&quit_path)?)?.collaborators
        } else {
            Vec::new()
        };
        let mut files = lock(&self.results);
        files.next_sequence = results.iter().map(|(_, r)| r.sequence + 1).max().unwrap_or(0).max(manifest.next_sequence);
        files.on_disk = results.iter().map(|(_, r)| (r.sequence, r.round)).collect();
        lock(&self.quit).extend(quit.iter().cloned());
        drop(files);
        Ok(Some(Found { manifest, results, quit }))
    }

    fn check_identity(&self, path: &Path, manifest: &ManifestProto) -> Result<()> {
        if manifest.format != FORMAT {
            return Err(corrupt(path, format!("format {} (this library reads format {FORMAT})", manifest.format)));
        }
        let saved = manifest.identity.as_ref().ok_or_else(|| corrupt(path, "no federation identity"))?;
        if *saved != self.identity {
            return Err(Error::new(
                ofl_code::FailedPrecondition,
                format!(
                    "state directory {} belongs to another federation or configuration (saved: {}; \
                     configured: {}); use another directory or the same configuration",
                    self.dir.display(),
                    describe(saved),
                    describe(&self.identity)
                ),
            ));
        }
        Ok(())
    }

    /// Saves an accepted upload; it is counted after a restart from now on.
    fn save_result(&self, round: i32, collaborator: &str, task: &str, data_size: i32, decoded: &[DecodedResult]) -> Result<()> {
        let mut files = lock(&self.results);
        let sequence = files.next_sequence;
        let proto = ResultProto {
            round,
            sequence,
            collaborator: collaborator.to_string(),
            task: task.to_string(),
            data_size,
            tensors: decoded.iter().map(|d| tensor_proto(&d.key.name, d.key.report, &d.key.tags, &d.tensor)).collect(),
        };
        state_file::write_atomic(&self.dir, &result_file_name(sequence), &proto.encode_to_vec())?;
        files.next_sequence += 1;
        files.on_disk.push((sequence, round));
        Ok(())
    }

    /// Saves the federation at the start of `save.round`, then deletes the
    /// result files of earlier rounds.
    fn save_round(&self, save: RoundSave) -> Result<()> {
        #[cfg(test)]
        if self.skip_round_saves.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        let mut files = lock(&self.results);
        let manifest = ManifestProto {
            format: FORMAT,
            identity: Some(self.identity.clone()),
            round: save.round,
            model: model_proto(&save.model),
            metrics: save.metrics.iter().map(metric_proto).collect(),
            best: save.best.map(|b| BestProto { round: b.round, score: b.score, model: model_proto(&b.model) }),
            next_sequence: files.next_sequence,
        };
        state_file::write_atomic(&self.dir, MANIFEST, &manifest.encode_to_vec())?;
        let (stale, kept): (Vec<_>, Vec<_>) = files.on_disk.iter().partition(|(_, round)| *round < save.round);
        files.on_disk = kept;
        for (sequence, _) in stale {
            let path = self.dir.join(result_file_name(sequence));
            if let Err(e) = fs::remove_file(&path) {
                log::warn!("FedAvg: could not remove {} (no longer needed): {e}", path.display());
            }
        }
        Ok(())
    }

    /// Whether result files of rounds before `round` are still on disk.
    fn has_results_before(&self, round: i32) -> bool {
        lock(&self.results).on_disk.iter().any(|(_, r)| *r < round)
    }

    /// Saves that `collaborator` was told to quit (before it is told).
    fn save_quit(&self, collaborator: &str) -> Result<()> {
        let mut quit = lock(&self.quit);
        if quit.contains(collaborator) {
            return Ok(());
        }
        let mut collaborators: Vec<String> = quit.iter().cloned().collect();
        collaborators.push(collaborator.to_string());
        state_file::write_atomic(&self.dir, QUIT, &QuitProto { collaborators }.encode_to_vec())?;
        quit.insert(collaborator.to_string());
        Ok(())
    }
}

fn describe(identity: &IdentityProto) -> String {
    let tasks: Vec<&str> = identity.tasks.iter().map(|t| t.name.as_str()).collect();
    format!(
        "aggregator {:?}, federation {:?}, single certificate CN {:?}, collaborators {:?}, tasks {tasks:?}, {} rounds",
        identity.aggregator_uuid,
        identity.federation_uuid,
        identity.single_col_cert_common_name,
        identity.collaborators,
        identity.rounds_to_train
    )
}

/// An error for a save that failed: the call is not acknowledged, and the
/// collaborator retries (UNAVAILABLE is what OpenFL's client retries).
fn unsaved(what: &str, error: Error) -> Error {
    log::error!("FedAvg: could not save {what} to the state directory: {error}");
    Error::new(
        ofl_code::Unavailable,
        format!("the aggregator could not save {what} to its state directory ({}); try again", error.message()),
    )
}

// ---------------------------------------------------------------------------
// FedAvg's side

impl FedAvg {
    fn identity(&self) -> IdentityProto {
        IdentityProto {
            aggregator_uuid: self.federation.aggregator_uuid.clone(),
            federation_uuid: self.federation.federation_uuid.clone(),
            single_col_cert_common_name: self.federation.single_col_cert_common_name.clone(),
            collaborators: self.federation.authorized_collaborators.to_vec(),
            tasks: self.tasks.clone(),
            rounds_to_train: self.rounds_to_train,
        }
    }

    /// Opens the state directory: resumes what it holds, or saves the
    /// initial state there.
    pub(super) fn open_state_dir(mut self, dir: &Path) -> Result<Self> {
        let (persistence, found) = Persistence::open(dir, self.identity())?;
        match found {
            None => {
                let save = RoundSave::of(self.state.get_mut().unwrap_or_else(|e| e.into_inner()));
                persistence.save_round(save)?;
                log::info!("FedAvg: saving state in {} (new federation)", dir.display());
            }
            Some(found) => {
                let round = self.resume(found)?;
                let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
                if state.round != round || persistence.has_results_before(state.round) {
                    persistence.save_round(RoundSave::of(state))?;
                }
                log::info!(
                    "FedAvg: resumed from {}: round {} of {}, {} result(s) of this round",
                    dir.display(),
                    state.round,
                    self.rounds_to_train,
                    state.results.len()
                );
            }
        }
        self.persist = Some(persistence);
        Ok(self)
    }

    /// Restores the saved round, then replays the saved results in order;
    /// returns the saved round.
    fn resume(&self, found: Found) -> Result<i32> {
        let manifest_path = PathBuf::from(MANIFEST);
        let manifest = found.manifest;
        let model = snapshot(&manifest_path, &manifest.model)?;
        let best = match manifest.best {
            Some(b) => Some(BestModel { round: b.round, score: b.score, model: snapshot(&manifest_path, &b.model)? }),
            None => None,
        };
        let origin = self.federation.aggregator_uuid.clone();
        let mut state = self.lock();
        state.round = manifest.round;
        state.store = Default::default();
        state.store.insert_model(&origin, manifest.round, &model);
        state.model = model;
        state.metrics = manifest.metrics.into_iter().map(metric_record).collect();
        state.best = best;
        state.quit_sent = found.quit.into_iter().collect();
        drop(state);
        for (path, result) in found.results {
            self.replay(&path, result)?;
        }
        Ok(manifest.round)
    }

    /// Counts a saved result again, as when it was accepted.
    fn replay(&self, path: &Path, result: ResultProto) -> Result<()> {
        let mut state = self.lock();
        if result.round < state.round {
            return Ok(()); // already in the saved round's model; deleted later
        }
        if result.round > state.round {
            return Err(corrupt(path, format!("round {} while the federation is at round {}", result.round, state.round)));
        }
        if !self.federation.is_authorized(&result.collaborator) || !self.tasks.iter().any(|t| t.name == result.task) {
            return Err(corrupt(path, format!("unknown collaborator {:?} or task {:?}", result.collaborator, result.task)));
        }
        if state.results.contains_key(&(result.task.clone(), result.collaborator.clone())) {
            log::warn!("FedAvg: {} repeats a result already counted; ignored", path.display());
            return Ok(());
        }
        let mut decoded = Vec::with_capacity(result.tensors.len());
        for proto in &result.tensors {
            let key = TensorKey {
                name: proto.name.clone(),
                origin: self.federation.aggregator_uuid.clone(),
                round: result.round,
                report: proto.report,
                tags: proto.tags.clone(),
            };
            let tensor = stored_tensor(path, proto)?;
            let metric = if key.is_metric() { Some(metric_value(&key.name, &tensor)?) } else { None };
            decoded.push(DecodedResult { key, tensor, metric });
        }
        self.accept(&mut state, &result.collaborator, &result.task, result.data_size, decoded);
        Ok(())
    }

    /// Saves an accepted upload before it is counted (no-op without a state
    /// directory). Errors are UNAVAILABLE: nothing was counted, retry.
    pub(super) fn save_result(
        &self,
        round: i32,
        collaborator: &str,
        task: &str,
        data_size: i32,
        decoded: &[DecodedResult],
    ) -> Result<()> {
        match &self.persist {
            Some(p) => p.save_result(round, collaborator, task, data_size, decoded).map_err(|e| unsaved("the results", e)),
            None => Ok(()),
        }
    }

    /// Saves the new round after a round ended. A failure only logs: the
    /// round's results are on disk, so a restart ends the round again.
    pub(super) fn save_round(&self, save: RoundSave) {
        if let Some(p) = &self.persist {
            if let Err(e) = p.save_round(save) {
                log::error!("FedAvg: could not save the new round (its results are kept and replayed on restart): {e}");
            }
        }
    }

    /// Saves that `collaborator` is told to quit, before it is told.
    pub(super) fn save_quit(&self, collaborator: &str) -> Result<()> {
        match &self.persist {
            Some(p) => p.save_quit(collaborator).map_err(|e| unsaved("the quit answer", e)),
            None => Ok(()),
        }
    }

    /// Whether a state directory is in use.
    pub(super) fn persists(&self) -> bool {
        self.persist.is_some()
    }

    #[cfg(test)]
    pub(super) fn skip_round_saves(&self, skip: bool) {
        if let Some(p) = &self.persist {
            p.skip_round_saves.store(skip, std::sync::atomic::Ordering::SeqCst);
        }
    }
}
