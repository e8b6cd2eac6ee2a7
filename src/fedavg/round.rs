//! The round state machine: FedAvg's state, uploads counted into it, and the
//! end of a round (aggregation, metrics, next model, best model).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use super::aggregation::{Aggregation, WeightedAverage};
use super::codec::{decode_named_tensor, encode_f32_le, invalid, upload_tags, StoredTensor, TAG_TRAINED};
use super::metric::{aggregated_metric, first_value, metric_value, FedAvgMetric};
use super::options::FedAvgOptions;
use super::persist::{Persistence, RoundSave};
use super::store::{snapshot_to_model, Snapshot, TensorKey, TensorStore};
use crate::aggregator::{Federation, TaskResults, TasksReply};
use crate::error::{ofl_code, Error, Result};
use super::codec::Model;
use crate::proto::aggregator::Task;
use crate::proto::NamedTensor;

/// What one collaborator reported for one task in the current round.
#[derive(Debug)]
pub(super) struct TaskResult {
    pub(super) data_size: i32,
    /// Store keys of the uploaded tensors (tagged with the collaborator).
    pub(super) keys: Vec<TensorKey>,
}

#[derive(Clone, Debug)]
pub(super) struct BestModel {
    pub(super) round: i32,
    pub(super) score: f64,
    pub(super) model: Snapshot,
}

#[derive(Debug)]
pub(super) struct State {
    pub(super) round: i32,
    pub(super) store: TensorStore,
    /// The current round's model.
    pub(super) model: Snapshot,
    /// (task, collaborator) → result, current round only.
    pub(super) results: BTreeMap<(String, String), TaskResult>,
    /// Collaborators that reported every task of the current round.
    pub(super) done: BTreeSet<String>,
    pub(super) quit_sent: BTreeSet<String>,
    pub(super) metrics: Vec<FedAvgMetric>,
    pub(super) best: Option<BestModel>,
}

/// A decoded upload, checked and ready to store.
pub(super) struct DecodedResult {
    pub(super) key: TensorKey,
    pub(super) tensor: StoredTensor,
    pub(super) metric: Option<f64>,
}

/// The federated-averaging aggregator (see the [module docs](crate::fedavg)). Share it as an
/// `Arc<FedAvg>` between the server and whoever reads the results.
#[derive(Debug)]
pub struct FedAvg {
    pub(super) federation: Federation,
    pub(super) rounds_to_train: i32,
    pub(super) tasks: Vec<Task>,
    /// The task whose metric picks the best model, if any.
    pub(super) best_task: Option<String>,
    pub(super) best_metric: Option<String>,
    pub(super) tensor_wait: Duration,
    pub(super) sleep_time: i32,
    pub(super) state: Mutex<State>,
    pub(super) changed: Condvar,
    /// Bumped with every change of `state` that may make a tensor appear.
    pub(super) changes: watch::Sender<u64>,
    /// One upload at a time (held across saving it, not across `state`).
    pub(super) uploads: Mutex<()>,
    /// The state directory, if any.
    pub(super) persist: Option<Persistence>,
    /// How each tensor's versions are combined at the end of a round.
    pub(super) aggregation: Box<dyn Aggregation>,
}

impl FedAvg {
    /// An aggregator at round 0 serving `config.initial_model`, or, with a
    /// `state_dir` that holds a saved federation, at the saved round.
    /// Errors: `InvalidArgument` from [`FedAvgOptions::validate`]; with a
    /// state directory, `Io` when it cannot be read or written,
    /// `FailedPrecondition` when another aggregator uses it or it holds
    /// another federation, `DataLoss` when a state file is damaged.
    pub fn new(config: FedAvgOptions) -> Result<Self> {
        config.validate()?;
        let state_dir = config.state_dir.clone();
        let fedavg = Self::fresh(config);
        match state_dir {
            Some(dir) => fedavg.open_state_dir(&dir),
            None => Ok(fedavg),
        }
    }

    fn fresh(config: FedAvgOptions) -> Self {
        let model: Snapshot = config
            .initial_model
            .iter()
            .map(|(name, t)| (name.clone(), StoredTensor::from_tensor(t)))
            .collect();
        let mut store = TensorStore::default();
        store.insert_model(&config.aggregator_uuid, 0, &model);
        let best_task =
            config.tasks.iter().find(|t| t.task_type == "validate" && !t.apply_local).map(|t| t.name.clone());
        Self {
            federation: Federation {
                aggregator_uuid: config.aggregator_uuid,
                federation_uuid: config.federation_uuid,
                single_col_cert_common_name: config.single_col_cert_common_name,
                authorized_collaborators: config.collaborators.into(),
            },
            rounds_to_train: config.rounds_to_train,
            tasks: config.tasks,
            best_task,
            best_metric: config.best_model_metric,
            tensor_wait: config.tensor_wait,
            sleep_time: config.sleep_time,
            state: Mutex::new(State {
                round: 0,
                store,
                model,
                results: BTreeMap::new(),
                done: BTreeSet::new(),
                quit_sent: BTreeSet::new(),
                metrics: Vec::new(),
                best: None,
            }),
            changed: Condvar::new(),
            changes: watch::Sender::new(0),
            uploads: Mutex::new(()),
            persist: None,
            aggregation: Box::new(WeightedAverage),
        }
    }

    /// The current round: 0 at the start, `rounds_to_train` once training is
    /// over.
    pub fn current_round(&self) -> i32 {
        self.lock().round
    }

    /// The number of rounds to train.
    pub fn rounds_to_train(&self) -> i32 {
        self.rounds_to_train
    }

    /// Whether every round has been trained (collaborators now get `quit`).
    pub fn is_finished(&self) -> bool {
        self.lock().round >= self.rounds_to_train
    }

    /// Every metric so far, in the order recorded: each collaborator's as it
    /// arrived, then the round's averages (origin
    /// [`AGGREGATOR_METRIC_ORIGIN`](super::AGGREGATOR_METRIC_ORIGIN)) when the round ends.
    pub fn metrics(&self) -> Vec<FedAvgMetric> {
        self.lock().metrics.clone()
    }

    /// The model that scored best in the aggregated-model validation (see
    /// [`FedAvgOptions::best_model_metric`]); `None` until a round with that
    /// metric has ended.
    pub fn best_model(&self) -> Option<Model> {
        self.lock().best.as_ref().map(|b| snapshot_to_model(&b.model))
    }

    /// The round of the best model and its score; `None` as for
    /// [`FedAvg::best_model`].
    pub fn best_model_score(&self) -> Option<(i32, f64)> {
        self.lock().best.as_ref().map(|b| (b.round, b.score))
    }

    /// The newest model: the initial model before the first round ends, the
    /// final aggregate after the last.
    pub fn last_model(&self) -> Model {
        snapshot_to_model(&self.lock().model)
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // No code path panics while holding the lock; if one ever did, the
        // state is still consistent enough to read.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn check_collaborator(&self, collaborator: &str) -> Result<()> {
        if self.federation.is_authorized(collaborator) {
            Ok(())
        } else {
            Err(Error::new(ofl_code::PermissionDenied, self.federation.not_authorized(collaborator)))
        }
    }

    pub(super) fn finished(&self, state: &State) -> bool {
        state.round >= self.rounds_to_train
    }

    pub(super) fn origin(&self) -> &str {
        &self.federation.aggregator_uuid
    }

    // --- get_tasks ---------------------------------------------------------

    pub(super) fn pending_tasks(&self, state: &State, collaborator: &str) -> Vec<Task> {
        self.tasks
            .iter()
            .filter(|t| !state.results.contains_key(&(t.name.clone(), collaborator.to_string())))
            .cloned()
            .collect()
    }

    pub(super) fn quit_reply(&self, state: &mut State, collaborator: &str) -> TasksReply {
        if state.quit_sent.insert(collaborator.to_string()) {
            log::info!("FedAvg: telling collaborator {collaborator} to quit");
        }
        TasksReply { round_number: state.round, quit: true, ..Default::default() }
    }

    // --- send_local_task_results -------------------------------------------

    /// Whether an upload is for now; `Ok(false)` when it is to be ignored
    /// (logged), `InvalidArgument` for an unknown task.
    pub(super) fn accepts(&self, state: &State, collaborator: &str, results: &TaskResults) -> Result<bool> {
        let task = &results.task_name;
        if self.finished(state) {
            log::warn!("FedAvg: {collaborator} sent results for {task} after the last round; ignored");
            return Ok(false);
        }
        if results.round_number != state.round {
            log::warn!(
                "FedAvg: {collaborator} sent results for {task} of round {} during round {}; ignored",
                results.round_number,
                state.round
            );
            return Ok(false);
        }
        if !self.tasks.iter().any(|t| &t.name == task) {
            return Err(invalid(format!("results for unknown task {task:?}")));
        }
        if state.results.contains_key(&(task.clone(), collaborator.to_string())) {
            log::warn!(
                "FedAvg: {collaborator} already sent results for {task} in round {}; ignored",
                state.round
            );
            return Ok(false);
        }
        Ok(true)
    }

    /// Decodes and checks a whole upload before anything is stored.
    pub(super) fn decode_results(
        &self,
        state: &State,
        collaborator: &str,
        results: &TaskResults,
    ) -> Result<Vec<DecodedResult>> {
        let mut seen = HashSet::new();
        let mut decoded = Vec::with_capacity(results.tensors.len());
        for tensor in &results.tensors {
            let item = self.decode_result(state, collaborator, &results.task_name, tensor)?;
            if !seen.insert(item.key.clone()) {
                return Err(invalid(format!(
                    "tensor {:?} (tags {:?}) appears twice",
                    tensor.name, tensor.tags
                )));
            }
            decoded.push(item);
        }
        Ok(decoded)
    }

    pub(super) fn decode_result(
        &self,
        state: &State,
        collaborator: &str,
        task: &str,
        tensor: &NamedTensor,
    ) -> Result<DecodedResult> {
        let tags = upload_tags(tensor)?;
        let stored = decode_named_tensor(tensor)?;
        let identity = TensorKey::new(&tensor.name, self.origin(), state.round, tensor.report, tags);
        let metric = if identity.is_metric() { Some(metric_value(&tensor.name, &stored)?) } else { None };
        if !identity.is_metric() {
            if !identity.has_tag(TAG_TRAINED) {
                return Err(invalid(format!(
                    "tensor {:?} (tags {:?}) is neither a metric (report, or tag \"metric\") nor trained \
                     weights (tag \"trained\"): FedAvg cannot use it",
                    tensor.name, tensor.tags
                )));
            }
            self.check_trained_shape(state, task, &identity, &stored)?;
        }
        Ok(DecodedResult { key: identity.with_tag(collaborator), tensor: stored, metric })
    }

    /// A trained tensor must have the model's shape, or (for a tensor not in
    /// the model) the shape other collaborators sent.
    pub(super) fn check_trained_shape(
        &self,
        state: &State,
        task: &str,
        identity: &TensorKey,
        tensor: &StoredTensor,
    ) -> Result<()> {
        let expected = state.model.get(&identity.name).map(|t| &t.shape).or_else(|| {
            self.federation
                .authorized_collaborators
                .iter()
                .filter(|c| state.results.contains_key(&(task.to_string(), (*c).clone())))
                .find_map(|c| state.store.get(&identity.with_tag(c)).map(|t| &t.shape))
        });
        match expected {
            Some(shape) if *shape != tensor.shape => Err(invalid(format!(
                "trained tensor {:?} has shape {:?}, expected {shape:?}",
                identity.name, tensor.shape
            ))),
            _ => Ok(()),
        }
    }

    pub(super) fn record_results(
        &self,
        state: &mut State,
        collaborator: &str,
        task: &str,
        data_size: i32,
        decoded: Vec<DecodedResult>,
    ) {
        let mut keys = Vec::with_capacity(decoded.len());
        for item in decoded {
            if let Some(value) = item.metric {
                state.metrics.push(FedAvgMetric {
                    round: state.round,
                    origin: collaborator.to_string(),
                    aggregated: false,
                    task: task.to_string(),
                    name: item.key.name.clone(),
                    value,
                });
            }
            keys.push(item.key.clone());
            state.store.insert(item.key, item.tensor);
        }
        let result = TaskResult { data_size, keys };
        state.results.insert((task.to_string(), collaborator.to_string()), result);
        log::info!("FedAvg: {collaborator} sent results for {task} in round {} (data size {data_size})", state.round);
    }

    /// Counts a checked upload; ends the round when it was the last one
    /// missing, and then returns what to save.
    pub(super) fn accept(
        &self,
        state: &mut State,
        collaborator: &str,
        task: &str,
        data_size: i32,
        decoded: Vec<DecodedResult>,
    ) -> Option<RoundSave> {
        self.record_results(state, collaborator, task, data_size, decoded);
        self.mark_if_done(state, collaborator);
        if state.done.len() < self.federation.authorized_collaborators.len() {
            return None;
        }
        self.end_round(state);
        Some(RoundSave::of(state))
    }

    pub(super) fn mark_if_done(&self, state: &mut State, collaborator: &str) {
        if self.pending_tasks(state, collaborator).is_empty() && state.done.insert(collaborator.to_string()) {
            log::info!("FedAvg: round {}: {collaborator} has completed all tasks", state.round);
        }
    }

    // --- end of round --------------------------------------------------------

    /// Each tensor of `task`, averaged over the collaborators that sent it,
    /// keyed without the collaborator tag.
    pub(super) fn aggregate_task(&self, state: &State, task: &str) -> BTreeMap<TensorKey, StoredTensor> {
        let mut groups: BTreeMap<TensorKey, Vec<(i32, &StoredTensor)>> = BTreeMap::new();
        for collaborator in &self.federation.authorized_collaborators {
            let Some(result) = state.results.get(&(task.to_string(), collaborator.clone())) else { continue };
            for key in &result.keys {
                if let Some(tensor) = state.store.get(key) {
                    groups.entry(key.without_tag(collaborator)).or_default().push((result.data_size, tensor));
                }
            }
        }
        groups.into_iter().map(|(key, parts)| (key, self.combine(&parts))).collect()
    }

    /// One tensor's versions, combined by the aggregation (each with its
    /// collaborator's `data_size`).
    fn combine(&self, parts: &[(i32, &StoredTensor)]) -> StoredTensor {
        let inputs: Vec<_> = parts.iter().map(|(size, tensor)| (*size, tensor.f32_values())).collect();
        let values = self.aggregation.aggregate(&inputs);
        debug_assert_eq!(values.len(), inputs[0].1.len(), "{:?} changed the number of values", self.aggregation);
        StoredTensor { shape: parts[0].1.shape.clone(), data: encode_f32_le(values.into_iter()) }
    }

    /// Ends the round: averages, records metrics, builds the next model,
    /// updates the best model, and moves to the next round.
    pub(super) fn end_round(&self, state: &mut State) {
        let round = state.round;
        let mut next_model = state.model.clone();
        let mut score = None;
        for task in &self.tasks {
            for (key, tensor) in self.aggregate_task(state, &task.name) {
                if key.is_metric() {
                    let value = first_value(&tensor);
                    state.metrics.push(aggregated_metric(round, &task.name, &key.name, value));
                    if score.is_none() && self.scores_best(&task.name, &key.name) {
                        score = Some(value);
                    }
                } else if key.has_tag(TAG_TRAINED) {
                    next_model.insert(key.name, tensor);
                }
            }
        }
        if let Some(score) = score {
            self.update_best(state, score);
        }
        self.advance(state, next_model);
    }

    pub(super) fn scores_best(&self, task: &str, metric: &str) -> bool {
        self.best_task.as_deref() == Some(task) && self.best_metric.as_deref().map_or(true, |m| m == metric)
    }

    pub(super) fn update_best(&self, state: &mut State, score: f64) {
        let better = state.best.as_ref().map_or(true, |b| score > b.score);
        if better {
            log::info!("FedAvg: round {}: best model so far, score {score}", state.round);
            state.best = Some(BestModel { round: state.round, score, model: state.model.clone() });
        }
    }

    pub(super) fn advance(&self, state: &mut State, next_model: Snapshot) {
        state.round += 1;
        state.store.insert_model(&self.federation.aggregator_uuid, state.round, &next_model);
        state.model = next_model;
        state.results.clear();
        state.done.clear();
        state.store.clean_up(state.round);
        if self.finished(state) {
            log::info!("FedAvg: all {} rounds trained", self.rounds_to_train);
        } else {
            log::info!("FedAvg: starting round {}", state.round);
        }
    }
}
