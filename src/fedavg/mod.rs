//! The built-in federated-averaging aggregator: an [`AggregatorLogic`] with
//! the round semantics of OpenFL 1.6's `Aggregator`
//! (`openfl/component/aggregator/aggregator.py`) for the configuration most
//! plans use: every collaborator runs every task every round, tensors travel
//! uncompressed, full models (no deltas) go both ways.
//!
//! # A round
//!
//! 1. `GetTasks`: a collaborator gets the round's tasks it has not reported
//!    yet (by default OpenFL's trio `aggregated_model_validation`, `train`,
//!    `locally_tuned_model_validation`). When it has reported all of them but
//!    others have not, it gets `sleep_time` (seconds) instead. Once
//!    `rounds_to_train` rounds are done it gets `quit`; each collaborator is
//!    counted once, and [`AggregatorLogic::all_quit_jobs_sent`] turns true
//!    when every collaborator was told.
//! 2. `GetAggregatedTensor`: the collaborator fetches the round's model, one
//!    tensor at a time, as OpenFL 1.6's `Collaborator` does with
//!    `delta_updates: false`: name, `round_number` = the current round,
//!    `report = false`, `tags = ("model",)`, `require_lossless = true`.
//! 3. `SendLocalTaskResults`: after each task the collaborator uploads what
//!    the task produced, with `data_size` (OpenFL's collaborator sends the
//!    training-set size for tasks whose name contains `train`, the
//!    validation-set size for `valid`, -1 otherwise). Metrics are tensors
//!    with `report = true` and tag `metric` (plus `validate_agg` or
//!    `validate_local` for validation tasks); trained weights have
//!    `report = false` and tag `trained`. Every uploaded tensor also carries
//!    the tag `compressed` (OpenFL's name for "encoded by the lossless
//!    pipeline").
//! 4. When every collaborator has reported every task of the round, the round
//!    ends: for each task, each tensor is averaged over the collaborators
//!    weighted by their `data_size` for that task. Averaged metrics are
//!    recorded (origin `"aggregator"`); averaged `trained` tensors become the
//!    next round's model (tensors nobody trained carry over unchanged). The
//!    model validated by the aggregated-model validation task is kept as the
//!    best model when its averaged metric beats every earlier round (higher
//!    is better); the newest model is always available as the last model.
//!
//! # Tensor encoding (OpenFL's `NoCompressionPipeline`)
//!
//! `data_bytes` holds the values as little-endian float32 in C order;
//! `transformer_metadata` has exactly one entry whose `int_list` is the shape
//! (empty for a scalar). Tensors we serve carry the requested tags plus
//! `compressed` (sorted, as OpenFL's `change_tags` leaves them), the
//! requested `round_number` and `report`, and `lossless = true` when the
//! request asked for lossless or for `compressed`. OpenFL's collaborator
//! only decodes a served tensor when its tags contain `compressed` (otherwise
//! it "bypasses the codec" and hands raw bytes to the task runner), so that
//! tag is what makes a served tensor usable by a real OpenFL 1.6 peer.
//!
//! Uploads are decoded the same way. For peers that are not OpenFL (C and Go
//! users) we are lenient: `compressed` may be absent, and a tensor without
//! transformer metadata is taken as one-dimensional.
//!
//! # Errors and ignored results
//!
//! - A caller that is not an authorized collaborator: `PermissionDenied`.
//! - `GetAggregatedTensor` for a tensor that is not there: when it can still
//!   appear (a later round's model while the federation runs) the call waits
//!   up to `tensor_wait`; then, or at once when it can never appear (the
//!   current or an earlier round, or after the last round), it fails with
//!   `FailedPrecondition`, naming the tensor, its round, tags and the
//!   aggregator's round. OpenFL 1.6 polls every 5 s for 60 s in every case
//!   and then fails with UNKNOWN.
//! - A request for something other than a model tensor (tags other than
//!   `model`, e.g. delta updates' `aggregated`/`delta`): `InvalidArgument`.
//! - Results for another round than the current one, results after the last
//!   round, and a second upload for a task already reported this round are
//!   ignored with a `log::warn!` and answered `Ok`, as OpenFL does: OpenFL's
//!   client resends a whole upload after a reconnect, so a duplicate is
//!   normal and must neither count twice nor make the client fail or retry.
//! - Results for a task that is not in the round's task list, and malformed
//!   tensors (byte length not a multiple of 4, shape not matching the
//!   length, several transformer-metadata entries, lossy or delta tags, a
//!   metric with more than one value, a trained tensor whose shape differs
//!   from the model's or another collaborator's, the same tensor twice in
//!   one upload): `InvalidArgument`, and nothing of that upload is kept.
//!
//! # OpenFL 1.6 behaviours left out
//!
//! - Compression pipelines (`KCPipeline`, `STCPipeline`, ...) and lossy
//!   tensors: only the uncompressed float32 encoding is read and written.
//! - Delta updates (`delta_updates: true`): neither delta uploads nor
//!   `("aggregated", "delta")` requests are served.
//! - Task assigners other than "one group of all collaborators, every task":
//!   no per-collaborator task subsets, no group percentages.
//! - Straggler policies (cut-off time, percentage): a round waits for every
//!   collaborator, which is what OpenFL's default policy (cut-off disabled)
//!   does.
//! - Custom aggregation functions: every tensor is a `data_size`-weighted
//!   average (OpenFL's `WeightedAverage`, its default).
//! - OpenFL's persistence: no `init_state_path`/`best_state_path`/
//!   `last_state_path` protobuf files, no `write_logs`/metric callbacks or
//!   metric queue. Models and metrics are read through [`FedAvg`]'s
//!   accessors instead. Crash recovery is ours: with
//!   [`FedAvgConfig::state_dir`], a restarted aggregator resumes the round it
//!   was in (OpenFL 1.6 starts over at round 0 and its collaborators fail).
//! - The tensor store keeps only the current and previous round's models and
//!   the current round's results (OpenFL's `db_store_rounds = 1`).
//!
//! # Deliberate differences
//!
//! - Weights: a negative `data_size` (OpenFL's -1 for "unknown") counts as
//!   0; when all weights of a tensor are 0 the collaborators count equally.
//!   OpenFL divides by the raw sum (and so averages equally for all -1, and
//!   produces nonsense for mixed signs).
//! - A tensor some collaborators did not send is averaged over those that
//!   did; OpenFL requires all.
//! - The next model keeps tensors that no collaborator trained; OpenFL's
//!   next-round model has only the aggregated ones.
//! - Only aggregator-made model tensors are served: OpenFL serves any key of
//!   its store, including other collaborators' uploads.
//! - The best-model metric is chosen by name (or the first by name), not by
//!   comparing every `validate_agg` metric against one running score.
//!
//! # Threads
//!
//! All state sits behind one `Mutex`; every call may come from any thread.
//! No call holds the lock for long or waits: the server asks with
//! [`AggregatorLogic::poll_aggregated_tensor`], which answers at once
//! (the tensor, an error, or "pending" with a `watch` signal that changes
//! whenever results arrive or a round ends), so a waiting request holds no
//! thread and FedAvg's calls run on the server's async workers
//! ([`AggregatorLogic::may_block`] is false). The blocking
//! [`AggregatorLogic::get_aggregated_tensor`] (for direct Rust callers) waits
//! on a `Condvar` that the same changes notify.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

use crate::aggregator::{
    AggregatorLogic, Federation, LogicCall, TaskResults, TasksReply, TensorPoll, TensorRequest, TensorWait,
};
use crate::error::{ofl_code, Error, Result};
use crate::proto::aggregator::Task;
use crate::proto::{MetadataProto, NamedTensor};

mod persist;
mod state_file;

use persist::{Persistence, RoundSave};

/// Seconds a collaborator is told to sleep by default (OpenFL 1.6 always
/// sends 10).
pub const DEFAULT_SLEEP_TIME: i32 = 10;

/// How long `get_aggregated_tensor` waits by default for a tensor that is not
/// ready yet.
pub const DEFAULT_TENSOR_WAIT: Duration = Duration::from_secs(30);

/// Rounds trained by default (the `rounds_to_train` of OpenFL's workspace
/// templates).
pub const DEFAULT_ROUNDS_TO_TRAIN: i32 = 10;

const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// The `origin` of averaged metrics (OpenFL's `metric_origin`).
pub const AGGREGATOR_METRIC_ORIGIN: &str = "aggregator";

const TAG_MODEL: &str = "model";
const TAG_TRAINED: &str = "trained";
const TAG_METRIC: &str = "metric";
const TAG_COMPRESSED: &str = "compressed";
const TAG_LOSSY_COMPRESSED: &str = "lossy_compressed";
const TAG_DELTA: &str = "delta";
const TAG_AGGREGATED: &str = "aggregated";

/// A float32 tensor: its shape and its values in C (row-major) order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tensor {
    /// Dimensions; empty for a scalar. Each must fit an `i32` (the wire type).
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values (1 for a scalar).
    pub values: Vec<f32>,
}

/// A model: tensor name → tensor, in name order.
pub type Model = BTreeMap<String, Tensor>;

impl Tensor {
    /// A tensor, checked: the values must number the product of the shape,
    /// and every dimension must fit an `i32`. Errors: `InvalidArgument`.
    pub fn new(shape: Vec<usize>, values: Vec<f32>) -> Result<Self> {
        check_shape("tensor", &shape, values.len())?;
        Ok(Self { shape, values })
    }

    /// A scalar (shape `[]`), as OpenFL's task runners report metrics.
    pub fn scalar(value: f32) -> Self {
        Self { shape: Vec::new(), values: vec![value] }
    }

    /// The values as little-endian float32 bytes (OpenFL's
    /// `Float32NumpyArrayToBytes`).
    pub fn to_le_bytes(&self) -> Bytes {
        encode_f32_le(self.values.iter().copied())
    }

    /// The tensor as OpenFL's lossless pipeline sends it: `tags` plus
    /// `compressed` (sorted, deduplicated), the shape in
    /// `transformer_metadata[0].int_list`, `lossless = true`.
    pub fn to_named_tensor(&self, name: &str, round_number: i32, report: bool, tags: &[&str]) -> NamedTensor {
        let tags = normalize_tags(tags.iter().copied().chain([TAG_COMPRESSED]));
        named_tensor(name, round_number, report, tags, &self.shape, self.to_le_bytes(), true)
    }

    /// Decodes a tensor encoded as OpenFL's uncompressed pipeline does (see
    /// the module docs). Errors: `InvalidArgument` naming the tensor.
    pub fn from_named_tensor(tensor: &NamedTensor) -> Result<Self> {
        Ok(decode_named_tensor(tensor)?.to_tensor())
    }
}

/// One metric: reported by a collaborator, or averaged by the aggregator at
/// the end of a round (OpenFL's metric schema: round, `metric_origin`,
/// `task_name`, `metric_name`, `metric_value`).
#[derive(Clone, Debug, PartialEq)]
pub struct MetricRecord {
    /// The round the metric belongs to.
    pub round: i32,
    /// The collaborator that reported it, or [`AGGREGATOR_METRIC_ORIGIN`].
    pub origin: String,
    /// True for the `data_size`-weighted average over all collaborators.
    pub aggregated: bool,
    /// The task that produced it (e.g. `aggregated_model_validation`).
    pub task: String,
    /// The metric's tensor name (e.g. `acc`, `loss`).
    pub name: String,
    /// Its value.
    pub value: f64,
}

/// Everything [`FedAvg::new`] needs. Start from `FedAvgConfig::default()`
/// and set at least `collaborators` and `initial_model`.
#[derive(Clone, Debug)]
pub struct FedAvgConfig {
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
    /// Non-empty, unique names. Default: [`FedAvgConfig::default_tasks`].
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

impl Default for FedAvgConfig {
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

impl FedAvgConfig {
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

/// Checks that `len` values fill `shape` and that every dimension fits the
/// wire's `i32`.
fn check_shape(what: &str, shape: &[usize], len: usize) -> Result<()> {
    if let Some(d) = shape.iter().find(|&&d| i32::try_from(d).is_err()) {
        return Err(invalid(format!("{what}: dimension {d} does not fit an int32")));
    }
    let product = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if product != Some(len) {
        return Err(invalid(format!("{what}: shape {shape:?} does not hold {len} values")));
    }
    Ok(())
}

fn invalid(message: impl Into<String>) -> Error {
    Error::invalid_argument(message)
}

// ---------------------------------------------------------------------------
// Encoding

/// Little-endian float32 bytes of `values`.
fn encode_f32_le(values: impl Iterator<Item = f32>) -> Bytes {
    let mut out = Vec::with_capacity(values.size_hint().0 * 4);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Bytes::from(out)
}

/// The float32 values of little-endian bytes (length a multiple of 4).
fn decode_f32_le(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}

/// Sorted, deduplicated tags (OpenFL's `change_tags` sorts too).
fn normalize_tags<S: Into<String>>(tags: impl IntoIterator<Item = S>) -> Vec<String> {
    let set: BTreeSet<String> = tags.into_iter().map(Into::into).collect();
    set.into_iter().collect()
}

fn wire_shape(shape: &[usize]) -> Vec<i32> {
    shape.iter().map(|&d| i32::try_from(d).unwrap_or(i32::MAX)).collect()
}

fn named_tensor(
    name: &str,
    round_number: i32,
    report: bool,
    tags: Vec<String>,
    shape: &[usize],
    data_bytes: Bytes,
    lossless: bool,
) -> NamedTensor {
    NamedTensor {
        name: name.to_string(),
        round_number,
        lossless,
        report,
        tags,
        transformer_metadata: vec![MetadataProto { int_list: wire_shape(shape), ..Default::default() }],
        data_bytes,
    }
}

/// A tensor as the aggregator keeps it: shape plus float32 LE bytes (for an
/// upload, a slice of the received buffer: no copy).
#[derive(Clone, Debug, PartialEq)]
struct StoredTensor {
    shape: Vec<usize>,
    data: Bytes,
}

impl StoredTensor {
    fn from_tensor(tensor: &Tensor) -> Self {
        Self { shape: tensor.shape.clone(), data: tensor.to_le_bytes() }
    }

    fn len(&self) -> usize {
        self.data.len() / 4
    }

    fn values(&self) -> impl Iterator<Item = f32> + '_ {
        decode_f32_le(&self.data)
    }

    fn to_tensor(&self) -> Tensor {
        Tensor { shape: self.shape.clone(), values: self.values().collect() }
    }
}

fn decode_named_tensor(tensor: &NamedTensor) -> Result<StoredTensor> {
    let name = &tensor.name;
    if tensor.data_bytes.len() % 4 != 0 {
        return Err(invalid(format!(
            "tensor {name:?}: {} bytes is not a whole number of float32 values",
            tensor.data_bytes.len()
        )));
    }
    let len = tensor.data_bytes.len() / 4;
    let shape = match tensor.transformer_metadata.as_slice() {
        [] => vec![len],
        [metadata] => decode_shape(name, &metadata.int_list)?,
        more => {
            return Err(invalid(format!(
                "tensor {name:?}: {} transformer metadata entries; only the uncompressed \
                 float32 pipeline (one entry) is supported",
                more.len()
            )))
        }
    };
    check_shape(&format!("tensor {name:?}"), &shape, len)?;
    Ok(StoredTensor { shape, data: tensor.data_bytes.clone() })
}

fn decode_shape(name: &str, int_list: &[i32]) -> Result<Vec<usize>> {
    int_list
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| invalid(format!("tensor {name:?}: negative dimension {d}"))))
        .collect()
}

// ---------------------------------------------------------------------------
// Tensor store

/// OpenFL's `TensorKey`: name, origin, round, report, tags (sorted).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct TensorKey {
    name: String,
    origin: String,
    round: i32,
    report: bool,
    tags: Vec<String>,
}

impl TensorKey {
    fn new<S: Into<String>>(
        name: &str,
        origin: &str,
        round: i32,
        report: bool,
        tags: impl IntoIterator<Item = S>,
    ) -> Self {
        Self { name: name.into(), origin: origin.into(), round, report, tags: normalize_tags(tags) }
    }

    fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    fn with_tag(&self, tag: &str) -> Self {
        let tags = self.tags.iter().map(String::as_str).chain([tag]);
        Self { tags: normalize_tags(tags), ..self.clone() }
    }

    fn without_tag(&self, tag: &str) -> Self {
        Self { tags: self.tags.iter().filter(|t| *t != tag).cloned().collect(), ..self.clone() }
    }

    fn is_metric(&self) -> bool {
        self.report || self.has_tag(TAG_METRIC)
    }
}

/// The aggregator's tensors, keyed like OpenFL's `TensorDB`: model tensors
/// as `(name, aggregator, round, false, ("model",))`, uploads as
/// `(name, aggregator, round, report, tags + collaborator)`.
#[derive(Debug, Default)]
struct TensorStore {
    tensors: HashMap<TensorKey, StoredTensor>,
}

impl TensorStore {
    fn get(&self, key: &TensorKey) -> Option<&StoredTensor> {
        self.tensors.get(key)
    }

    fn insert(&mut self, key: TensorKey, tensor: StoredTensor) {
        self.tensors.insert(key, tensor);
    }

    /// Stores `model` as the model of `round`.
    fn insert_model(&mut self, origin: &str, round: i32, model: &Snapshot) {
        for (name, tensor) in model {
            self.insert(TensorKey::new(name, origin, round, false, [TAG_MODEL]), tensor.clone());
        }
    }

    /// Keeps the models of `round - 1` and later, everything else of `round`
    /// and later.
    fn clean_up(&mut self, round: i32) {
        self.tensors.retain(|key, _| key.round >= round - i32::from(key.has_tag(TAG_MODEL)));
    }
}

/// A model as stored: name → tensor.
type Snapshot = BTreeMap<String, StoredTensor>;

fn snapshot_to_model(snapshot: &Snapshot) -> Model {
    snapshot.iter().map(|(name, t)| (name.clone(), t.to_tensor())).collect()
}

// ---------------------------------------------------------------------------
// Aggregation

/// Weights proportional to `data_sizes`, summing to 1: negative sizes count
/// as 0, and all-zero sizes count equally.
fn normalized_weights(data_sizes: &[i32]) -> Vec<f64> {
    let sizes: Vec<f64> = data_sizes.iter().map(|&s| f64::from(s.max(0))).collect();
    let total: f64 = sizes.iter().sum();
    if total > 0.0 {
        sizes.iter().map(|s| s / total).collect()
    } else {
        if !sizes.is_empty() {
            log::warn!("FedAvg: all data sizes are 0 or negative; averaging with equal weights");
        }
        vec![1.0 / sizes.len().max(1) as f64; sizes.len()]
    }
}

/// The weighted average of same-shaped tensors (accumulated in f64, as
/// numpy's `average` of float32 with float64 weights).
fn weighted_average(parts: &[(i32, &StoredTensor)]) -> StoredTensor {
    let sizes: Vec<i32> = parts.iter().map(|(size, _)| *size).collect();
    let weights = normalized_weights(&sizes);
    let first = parts[0].1;
    let mut acc = vec![0f64; first.len()];
    for ((_, tensor), weight) in parts.iter().zip(weights) {
        for (a, x) in acc.iter_mut().zip(tensor.values()) {
            *a += weight * f64::from(x);
        }
    }
    StoredTensor { shape: first.shape.clone(), data: encode_f32_le(acc.into_iter().map(|a| a as f32)) }
}

// ---------------------------------------------------------------------------
// State

/// What one collaborator reported for one task in the current round.
#[derive(Debug)]
struct TaskResult {
    data_size: i32,
    /// Store keys of the uploaded tensors (tagged with the collaborator).
    keys: Vec<TensorKey>,
}

#[derive(Clone, Debug)]
struct BestModel {
    round: i32,
    score: f64,
    model: Snapshot,
}

#[derive(Debug)]
struct State {
    round: i32,
    store: TensorStore,
    /// The current round's model.
    model: Snapshot,
    /// (task, collaborator) → result, current round only.
    results: BTreeMap<(String, String), TaskResult>,
    /// Collaborators that reported every task of the current round.
    done: BTreeSet<String>,
    quit_sent: BTreeSet<String>,
    metrics: Vec<MetricRecord>,
    best: Option<BestModel>,
}

/// A decoded upload, checked and ready to store.
struct DecodedResult {
    key: TensorKey,
    tensor: StoredTensor,
    metric: Option<f64>,
}

/// The federated-averaging aggregator (see the module docs). Share it as an
/// `Arc<FedAvg>` between the server and whoever reads the results.
#[derive(Debug)]
pub struct FedAvg {
    federation: Federation,
    rounds_to_train: i32,
    tasks: Vec<Task>,
    /// The task whose metric picks the best model, if any.
    best_task: Option<String>,
    best_metric: Option<String>,
    tensor_wait: Duration,
    sleep_time: i32,
    state: Mutex<State>,
    changed: Condvar,
    /// Bumped with every change of `state` that may make a tensor appear.
    changes: watch::Sender<u64>,
    /// One upload at a time (held across saving it, not across `state`).
    uploads: Mutex<()>,
    /// The state directory, if any.
    persist: Option<Persistence>,
}

impl FedAvg {
    /// An aggregator at round 0 serving `config.initial_model`, or, with a
    /// `state_dir` that holds a saved federation, at the saved round.
    /// Errors: `InvalidArgument` from [`FedAvgConfig::validate`]; with a
    /// state directory, `Io` when it cannot be read or written,
    /// `FailedPrecondition` when another aggregator uses it or it holds
    /// another federation, `DataLoss` when a state file is damaged.
    pub fn new(config: FedAvgConfig) -> Result<Self> {
        config.validate()?;
        let state_dir = config.state_dir.clone();
        let fedavg = Self::fresh(config);
        match state_dir {
            Some(dir) => fedavg.open_state_dir(&dir),
            None => Ok(fedavg),
        }
    }

    fn fresh(config: FedAvgConfig) -> Self {
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
                authorized_collaborators: config.collaborators,
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
    /// [`AGGREGATOR_METRIC_ORIGIN`]) when the round ends.
    pub fn metrics(&self) -> Vec<MetricRecord> {
        self.lock().metrics.clone()
    }

    /// The model that scored best in the aggregated-model validation (see
    /// [`FedAvgConfig::best_model_metric`]); `None` until a round with that
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

    fn lock(&self) -> MutexGuard<'_, State> {
        // No code path panics while holding the lock; if one ever did, the
        // state is still consistent enough to read.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn check_collaborator(&self, collaborator: &str) -> Result<()> {
        if self.federation.is_authorized(collaborator) {
            Ok(())
        } else {
            Err(Error::new(
                ofl_code::PermissionDenied,
                format!("{collaborator:?} is not an authorized collaborator"),
            ))
        }
    }

    fn finished(&self, state: &State) -> bool {
        state.round >= self.rounds_to_train
    }

    fn origin(&self) -> &str {
        &self.federation.aggregator_uuid
    }

    // --- get_tasks ---------------------------------------------------------

    fn pending_tasks(&self, state: &State, collaborator: &str) -> Vec<Task> {
        self.tasks
            .iter()
            .filter(|t| !state.results.contains_key(&(t.name.clone(), collaborator.to_string())))
            .cloned()
            .collect()
    }

    fn quit_reply(&self, state: &mut State, collaborator: &str) -> TasksReply {
        if state.quit_sent.insert(collaborator.to_string()) {
            log::info!("FedAvg: telling collaborator {collaborator} to quit");
        }
        TasksReply { round_number: state.round, quit: true, ..Default::default() }
    }

    // --- get_aggregated_tensor --------------------------------------------

    /// The key a tensor request names, or `InvalidArgument` for anything but
    /// a model tensor.
    fn request_key(&self, request: &TensorRequest) -> Result<TensorKey> {
        let tags: Vec<&str> = request
            .tags
            .iter()
            .map(String::as_str)
            .filter(|t| *t != TAG_COMPRESSED && *t != TAG_LOSSY_COMPRESSED)
            .collect();
        if tags.iter().any(|t| *t == TAG_DELTA || *t == TAG_AGGREGATED) {
            return Err(invalid(format!(
                "tensor {:?}: tags {:?} ask for a model delta; delta updates are not supported \
                 (set delta_updates: false for the collaborator)",
                request.tensor_name, request.tags
            )));
        }
        let key =
            TensorKey::new(&request.tensor_name, self.origin(), request.round_number, request.report, tags);
        if key.tags != [TAG_MODEL] {
            return Err(invalid(format!(
                "tensor {:?}: only model tensors (tags [\"model\"]) are served, not tags {:?}",
                request.tensor_name, request.tags
            )));
        }
        Ok(key)
    }

    /// Whether a missing tensor of `round` can still appear: a later round's
    /// model while training goes on.
    fn may_appear(&self, state: &State, round: i32) -> bool {
        !self.finished(state) && round > state.round && round <= self.rounds_to_train
    }

    /// The tensor under `key` if it is there; `None` while it may still
    /// appear and `started + tensor_wait` has not passed; `FailedPrecondition`
    /// otherwise.
    fn find_tensor(&self, state: &State, key: &TensorKey, started: Instant) -> Result<Option<StoredTensor>> {
        if let Some(tensor) = state.store.get(key) {
            return Ok(Some(tensor.clone()));
        }
        if !self.may_appear(state, key.round) {
            return Err(self.missing_tensor(key, state, "does not exist and cannot appear any more"));
        }
        if started.elapsed() >= self.tensor_wait {
            let reason = format!("is not ready after waiting {:?}", self.tensor_wait);
            return Err(self.missing_tensor(key, state, &reason));
        }
        Ok(None)
    }

    /// The tensor under `key`, waiting (on this thread) up to `tensor_wait`
    /// while it may still appear; `FailedPrecondition` otherwise.
    fn wait_for_tensor(&self, key: &TensorKey) -> Result<StoredTensor> {
        let started = Instant::now();
        let mut state = self.lock();
        loop {
            if let Some(tensor) = self.find_tensor(&state, key, started)? {
                return Ok(tensor);
            }
            let left = self.tensor_wait.saturating_sub(started.elapsed());
            state = self.changed.wait_timeout(state, left).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    /// Wakes every waiting tensor request (blocking and polling).
    fn notify_changed(&self) {
        self.changed.notify_all();
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A served tensor as OpenFL's uncompressed pipeline encodes it.
    fn served_tensor(&self, key: &TensorKey, request: &TensorRequest, tensor: StoredTensor) -> NamedTensor {
        let lossless = request.require_lossless || request.tags.iter().any(|t| t == TAG_COMPRESSED);
        let tags = key.with_tag(TAG_COMPRESSED).tags;
        named_tensor(&key.name, key.round, key.report, tags, &tensor.shape, tensor.data, lossless)
    }

    fn missing_tensor(&self, key: &TensorKey, state: &State, reason: &str) -> Error {
        Error::new(
            ofl_code::FailedPrecondition,
            format!(
                "tensor {:?} (round {}, report {}, tags {:?}) {reason} (aggregator at round {} of {})",
                key.name, key.round, key.report, key.tags, state.round, self.rounds_to_train
            ),
        )
    }

    // --- send_local_task_results -------------------------------------------

    /// Whether an upload is for now; `Ok(false)` when it is to be ignored
    /// (logged), `InvalidArgument` for an unknown task.
    fn accepts(&self, state: &State, collaborator: &str, results: &TaskResults) -> Result<bool> {
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
    fn decode_results(
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

    fn decode_result(
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
        if !identity.is_metric() && identity.has_tag(TAG_TRAINED) {
            self.check_trained_shape(state, task, &identity, &stored)?;
        }
        Ok(DecodedResult { key: identity.with_tag(collaborator), tensor: stored, metric })
    }

    /// A trained tensor must have the model's shape, or (for a tensor not in
    /// the model) the shape other collaborators sent.
    fn check_trained_shape(
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

    fn record_results(
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
                state.metrics.push(MetricRecord {
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
    fn accept(
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

    fn mark_if_done(&self, state: &mut State, collaborator: &str) {
        if self.pending_tasks(state, collaborator).is_empty() && state.done.insert(collaborator.to_string()) {
            log::info!("FedAvg: round {}: {collaborator} has completed all tasks", state.round);
        }
    }

    // --- end of round --------------------------------------------------------

    /// Each tensor of `task`, averaged over the collaborators that sent it,
    /// keyed without the collaborator tag.
    fn aggregate_task(&self, state: &State, task: &str) -> BTreeMap<TensorKey, StoredTensor> {
        let mut groups: BTreeMap<TensorKey, Vec<(i32, &StoredTensor)>> = BTreeMap::new();
        for collaborator in &self.federation.authorized_collaborators {
            let Some(result) = state.results.get(&(task.to_string(), collaborator.clone())) else { continue };
            for key in &result.keys {
                if let Some(tensor) = state.store.get(key) {
                    groups.entry(key.without_tag(collaborator)).or_default().push((result.data_size, tensor));
                }
            }
        }
        groups.into_iter().map(|(key, parts)| (key, weighted_average(&parts))).collect()
    }

    /// Ends the round: averages, records metrics, builds the next model,
    /// updates the best model, and moves to the next round.
    fn end_round(&self, state: &mut State) {
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

    fn scores_best(&self, task: &str, metric: &str) -> bool {
        self.best_task.as_deref() == Some(task) && self.best_metric.as_deref().map_or(true, |m| m == metric)
    }

    fn update_best(&self, state: &mut State, score: f64) {
        let better = state.best.as_ref().map_or(true, |b| score > b.score);
        if better {
            log::info!("FedAvg: round {}: best model so far, score {score}", state.round);
            state.best = Some(BestModel { round: state.round, score, model: state.model.clone() });
        }
    }

    fn advance(&self, state: &mut State, next_model: Snapshot) {
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

/// The tags an upload is stored under: `compressed` dropped; lossy and delta
/// encodings refused.
fn upload_tags(tensor: &NamedTensor) -> Result<Vec<String>> {
    for refused in [TAG_LOSSY_COMPRESSED, TAG_DELTA] {
        if tensor.tags.iter().any(|t| t == refused) {
            return Err(invalid(format!(
                "tensor {:?}: tag {refused:?} is not supported (only uncompressed full tensors: \
                 no compression pipeline, delta_updates: false)",
                tensor.name
            )));
        }
    }
    Ok(normalize_tags(tensor.tags.iter().filter(|t| *t != TAG_COMPRESSED).cloned()))
}

fn metric_value(name: &str, tensor: &StoredTensor) -> Result<f64> {
    if tensor.len() != 1 {
        return Err(invalid(format!("metric {name:?} must hold one value, has {}", tensor.len())));
    }
    Ok(first_value(tensor))
}

fn first_value(tensor: &StoredTensor) -> f64 {
    tensor.values().next().map_or(f64::NAN, f64::from)
}

fn aggregated_metric(round: i32, task: &str, name: &str, value: f64) -> MetricRecord {
    MetricRecord {
        round,
        origin: AGGREGATOR_METRIC_ORIGIN.to_string(),
        aggregated: true,
        task: task.to_string(),
        name: name.to_string(),
        value,
    }
}

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
    /// uploads are ignored with a warning and answered `Ok`.
    ///
    /// With a state directory the upload is saved before it is counted and
    /// acknowledged; the state lock is not held while saving, so other calls
    /// go on meanwhile (uploads take turns).
    fn send_local_task_results(&self, collaborator: &str, results: TaskResults) -> Result<()> {
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

    /// True once every collaborator has been told to quit.
    fn all_quit_jobs_sent(&self) -> bool {
        let state = self.lock();
        self.federation.authorized_collaborators.iter().all(|c| state.quit_sent.contains(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const AGG: &str = "aggregator_uuid";
    const VALIDATE: &str = "aggregated_model_validation";
    const TRAIN: &str = "train";
    const LOCAL: &str = "locally_tuned_model_validation";

    fn config(collaborators: &[&str], rounds: i32) -> FedAvgConfig {
        let mut initial_model = Model::new();
        initial_model.insert("w".into(), Tensor::new(vec![2], vec![0.0, 0.0]).unwrap());
        initial_model.insert("b".into(), Tensor::scalar(7.0));
        FedAvgConfig {
            aggregator_uuid: AGG.into(),
            federation_uuid: "federation_uuid".into(),
            collaborators: collaborators.iter().map(|c| c.to_string()).collect(),
            rounds_to_train: rounds,
            initial_model,
            tensor_wait: Duration::from_millis(200),
            sleep_time: 3,
            ..Default::default()
        }
    }

    fn fedavg(collaborators: &[&str], rounds: i32) -> FedAvg {
        FedAvg::new(config(collaborators, rounds)).unwrap()
    }

    /// A metric as OpenFL's PyTorch task runner sends it.
    fn metric(name: &str, round: i32, value: f32, tags: &[&str]) -> NamedTensor {
        Tensor::scalar(value).to_named_tensor(name, round, true, tags)
    }

    fn trained(name: &str, round: i32, values: &[f32]) -> NamedTensor {
        Tensor::new(vec![values.len()], values.to_vec()).unwrap().to_named_tensor(
            name,
            round,
            false,
            &["trained"],
        )
    }

    fn send(
        fa: &FedAvg,
        col: &str,
        round: i32,
        task: &str,
        data_size: i32,
        tensors: Vec<NamedTensor>,
    ) -> Result<()> {
        let results = TaskResults { round_number: round, task_name: task.into(), data_size, tensors };
        fa.send_local_task_results(col, results)
    }

    /// One collaborator's whole round: validation of the global model with
    /// `acc`, training to `w`, local validation.
    fn run_round(fa: &FedAvg, col: &str, round: i32, acc: f32, w: &[f32], data_size: i32) {
        send(
            fa,
            col,
            round,
            VALIDATE,
            data_size,
            vec![metric("acc", round, acc, &["metric", "validate_agg"])],
        )
        .unwrap();
        let train = vec![trained("w", round, w), metric("loss", round, 1.0 - acc, &["metric"])];
        send(fa, col, round, TRAIN, data_size, train).unwrap();
        send(
            fa,
            col,
            round,
            LOCAL,
            data_size,
            vec![metric("acc", round, acc, &["metric", "validate_local"])],
        )
        .unwrap();
    }

    fn model_request(name: &str, round: i32) -> TensorRequest {
        TensorRequest {
            tensor_name: name.into(),
            round_number: round,
            report: false,
            tags: vec!["model".into()],
            require_lossless: true,
        }
    }

    fn fetch(fa: &FedAvg, col: &str, name: &str, round: i32) -> Result<Tensor> {
        fa.get_aggregated_tensor(col, &model_request(name, round)).and_then(|t| Tensor::from_named_tensor(&t))
    }

    fn assert_close(actual: &[f32], expected: &[f32]) {
        assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
        for (a, e) in actual.iter().zip(expected) {
            assert!((a - e).abs() <= 1e-6, "{actual:?} vs {expected:?}");
        }
    }

    fn task_names(reply: &TasksReply) -> Vec<&str> {
        reply.tasks.iter().map(|t| t.name.as_str()).collect()
    }

    #[test]
    fn averages_weighted_by_data_size() {
        let fa = fedavg(&["a", "b"], 2);
        run_round(&fa, "a", 0, 0.5, &[1.0, -2.0], 1);
        assert_eq!(fa.current_round(), 0);
        run_round(&fa, "b", 0, 0.9, &[3.0, 6.0], 3);
        assert_eq!(fa.current_round(), 1);
        // 0.25 * a + 0.75 * b
        let w = fetch(&fa, "a", "w", 1).unwrap();
        assert_eq!(w.shape, vec![2]);
        assert_close(&w.values, &[2.5, 4.0]);
        assert_close(&fa.last_model()["w"].values, &[2.5, 4.0]);
        // Untrained tensors carry over.
        assert_eq!(fa.last_model()["b"], Tensor::scalar(7.0));
        let averaged: Vec<_> = fa.metrics().into_iter().filter(|m| m.aggregated).collect();
        let acc = averaged.iter().find(|m| m.task == VALIDATE && m.name == "acc").unwrap();
        assert_eq!((acc.round, acc.origin.as_str()), (0, AGGREGATOR_METRIC_ORIGIN));
        assert!((acc.value - (0.25 * 0.5 + 0.75 * 0.9)).abs() < 1e-6, "{acc:?}");
        assert_eq!(averaged.len(), 3);
    }

    #[test]
    fn weights_ignore_negative_and_fall_back_to_equal() {
        assert_eq!(normalized_weights(&[1, 3]), vec![0.25, 0.75]);
        assert_eq!(normalized_weights(&[-1, 2]), vec![0.0, 1.0]);
        assert_eq!(normalized_weights(&[-1, -1]), vec![0.5, 0.5]);
    }

    #[test]
    fn f32_encoding_round_trips() {
        let values =
            vec![0.0, -0.0, 1.0, -1.5, f32::MIN_POSITIVE / 2.0, f32::MAX, f32::INFINITY, f32::NAN, 0.1];
        let tensor = Tensor::new(vec![3, 3], values.clone()).unwrap();
        let bytes = tensor.to_le_bytes();
        assert_eq!(bytes.len(), 36);
        assert_eq!(&bytes[8..12], &[0x00, 0x00, 0x80, 0x3f]); // 1.0f32, little-endian
        let decoded = Tensor::from_named_tensor(&tensor.to_named_tensor("t", 0, false, &[])).unwrap();
        assert_eq!(decoded.shape, vec![3, 3]);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&decoded.values), bits(&values));
    }

    #[test]
    fn decoding_rejects_malformed_tensors() {
        let mut t = Tensor::new(vec![2], vec![1.0, 2.0]).unwrap().to_named_tensor("t", 0, false, &[]);
        t.data_bytes = Bytes::from_static(&[0; 7]);
        assert_eq!(Tensor::from_named_tensor(&t).unwrap_err().code(), ofl_code::InvalidArgument);
        t.data_bytes = Bytes::from_static(&[0; 12]);
        assert_eq!(Tensor::from_named_tensor(&t).unwrap_err().code(), ofl_code::InvalidArgument);
        t.transformer_metadata[0].int_list = vec![-3];
        assert_eq!(Tensor::from_named_tensor(&t).unwrap_err().code(), ofl_code::InvalidArgument);
        t.transformer_metadata.clear(); // no metadata: one-dimensional
        assert_eq!(Tensor::from_named_tensor(&t).unwrap().shape, vec![3]);
        t.transformer_metadata = vec![MetadataProto::default(), MetadataProto::default()];
        assert_eq!(Tensor::from_named_tensor(&t).unwrap_err().code(), ofl_code::InvalidArgument);
    }

    #[test]
    fn tags_follow_openfl() {
        // Uploads: OpenFL's lossless pipeline adds "compressed"; tags sorted.
        let nt = metric("acc", 0, 0.5, &["validate_agg", "metric"]);
        assert_eq!(nt.tags, ["compressed", "metric", "validate_agg"]);
        assert!(nt.lossless && nt.report);
        assert_eq!(nt.transformer_metadata[0].int_list, Vec::<i32>::new());
        // Stored without "compressed", with the collaborator's name.
        let fa = fedavg(&["a", "b"], 1);
        send(&fa, "a", 0, TRAIN, 1, vec![trained("w", 0, &[1.0, 2.0])]).unwrap();
        let key = TensorKey::new("w", AGG, 0, false, ["trained", "a"]);
        assert!(fa.lock().store.get(&key).is_some());
        // Served: the request's tags plus "compressed", shape in int_list.
        let served = fa.get_aggregated_tensor("a", &model_request("w", 0)).unwrap();
        assert_eq!(served.tags, ["compressed", "model"]);
        assert_eq!(
            (served.name.as_str(), served.round_number, served.report, served.lossless),
            ("w", 0, false, true)
        );
        assert_eq!(served.transformer_metadata.len(), 1);
        assert_eq!(served.transformer_metadata[0].int_list, vec![2]);
        assert_eq!(served.data_bytes.len(), 8);
        let scalar = fa.get_aggregated_tensor("a", &model_request("b", 0)).unwrap();
        assert!(scalar.transformer_metadata[0].int_list.is_empty());
    }

    #[test]
    fn non_model_requests_are_refused() {
        let fa = fedavg(&["a"], 1);
        let mut request = model_request("w", 0);
        request.tags = vec!["aggregated".into(), "compressed".into(), "delta".into()];
        assert_eq!(fa.get_aggregated_tensor("a", &request).unwrap_err().code(), ofl_code::InvalidArgument);
        request.tags = vec!["trained".into(), "a".into()];
        assert_eq!(fa.get_aggregated_tensor("a", &request).unwrap_err().code(), ofl_code::InvalidArgument);
        request.tags = vec!["model".into(), "compressed".into()];
        assert!(fa.get_aggregated_tensor("a", &request).is_ok());
    }

    #[test]
    fn wrong_round_results_are_ignored() {
        let fa = fedavg(&["a"], 2);
        send(&fa, "a", 1, TRAIN, 1, vec![trained("w", 1, &[9.0, 9.0])]).unwrap();
        assert_eq!(task_names(&fa.get_tasks("a").unwrap()), [VALIDATE, TRAIN, LOCAL]);
        run_round(&fa, "a", 0, 0.5, &[1.0, 1.0], 1);
        send(&fa, "a", 0, TRAIN, 1, vec![trained("w", 0, &[9.0, 9.0])]).unwrap(); // late
        assert_eq!(fa.current_round(), 1);
        assert_eq!(task_names(&fa.get_tasks("a").unwrap()), [VALIDATE, TRAIN, LOCAL]);
        assert_close(&fa.last_model()["w"].values, &[1.0, 1.0]);
    }

    #[test]
    fn duplicate_results_count_once() {
        let fa = fedavg(&["a", "b"], 1);
        let upload = || vec![trained("w", 0, &[1.0, 1.0]), metric("loss", 0, 0.5, &["metric"])];
        send(&fa, "a", 0, TRAIN, 1, upload()).unwrap();
        send(&fa, "a", 0, TRAIN, 1, vec![trained("w", 0, &[100.0, 100.0])]).unwrap();
        assert_eq!(fa.metrics().len(), 1);
        run_round(&fa, "a", 0, 0.5, &[5.0, 5.0], 1); // train part is a duplicate too
        run_round(&fa, "b", 0, 0.5, &[3.0, 3.0], 1);
        assert_close(&fa.last_model()["w"].values, &[2.0, 2.0]);
        let a_train = fa.metrics().iter().filter(|m| m.origin == "a" && m.task == TRAIN).count();
        assert_eq!(a_train, 1);
    }

    #[test]
    fn missing_collaborator_keeps_round_open() {
        let fa = fedavg(&["a", "b"], 1);
        run_round(&fa, "a", 0, 0.5, &[1.0, 1.0], 1);
        let reply = fa.get_tasks("a").unwrap();
        assert_eq!((reply.round_number, reply.sleep_time, reply.quit), (0, 3, false));
        assert!(reply.tasks.is_empty());
        assert_eq!(fa.current_round(), 0);
        let reply = fa.get_tasks("b").unwrap();
        assert_eq!((task_names(&reply), reply.sleep_time), (vec![VALIDATE, TRAIN, LOCAL], 0));
        send(&fa, "b", 0, VALIDATE, 1, vec![metric("acc", 0, 0.5, &["metric", "validate_agg"])]).unwrap();
        assert_eq!(task_names(&fa.get_tasks("b").unwrap()), [TRAIN, LOCAL]);
    }

    #[test]
    fn quit_after_last_round_counts_each_collaborator_once() {
        let fa = fedavg(&["a", "b"], 1);
        run_round(&fa, "a", 0, 0.5, &[1.0, 1.0], 1);
        run_round(&fa, "b", 0, 0.5, &[1.0, 1.0], 1);
        assert!(fa.is_finished());
        assert!(!fa.all_quit_jobs_sent());
        for _ in 0..2 {
            let reply = fa.get_tasks("a").unwrap();
            assert!(reply.quit && reply.tasks.is_empty());
            assert_eq!(reply.round_number, 1);
            assert!(!fa.all_quit_jobs_sent());
        }
        assert!(fa.get_tasks("b").unwrap().quit);
        assert!(fa.all_quit_jobs_sent());
        // Results after the end are ignored.
        assert!(send(&fa, "a", 1, TRAIN, 1, vec![trained("w", 1, &[1.0, 1.0])]).is_ok());
    }

    #[test]
    fn missing_tensor_fails_after_bounded_wait() {
        let fa = fedavg(&["a"], 2);
        // A later round's model may still appear: wait, then fail.
        let start = Instant::now();
        let err = fetch(&fa, "a", "nope", 1).unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(200), "{:?}", start.elapsed());
        assert_eq!(err.code(), ofl_code::FailedPrecondition);
        assert!(err.message().contains("\"nope\"") && err.message().contains("not ready"), "{err}");
        // The current round's model is complete: no wait.
        let start = Instant::now();
        let err = fetch(&fa, "a", "nope", 0).unwrap_err();
        assert!(start.elapsed() < Duration::from_millis(150));
        assert_eq!(err.code(), ofl_code::FailedPrecondition);
    }

    #[test]
    fn waiting_request_gets_tensor_when_round_ends() {
        let mut cfg = config(&["a"], 2);
        cfg.tensor_wait = Duration::from_secs(10);
        let fa = Arc::new(FedAvg::new(cfg).unwrap());
        let waiter = {
            let fa = Arc::clone(&fa);
            std::thread::spawn(move || fetch(&fa, "a", "w", 1))
        };
        std::thread::sleep(Duration::from_millis(50));
        run_round(&fa, "a", 0, 0.5, &[4.0, 2.0], 1);
        assert_close(&waiter.join().unwrap().unwrap().values, &[4.0, 2.0]);
    }

    #[test]
    fn best_and_last_model() {
        let fa = fedavg(&["a"], 3);
        assert_eq!(fa.best_model(), None);
        assert_close(&fa.last_model()["w"].values, &[0.0, 0.0]);
        // Round r validates the round-r model, then trains it to [r+1, r+1].
        for (round, acc) in [(0, 0.5), (1, 0.9), (2, 0.7)] {
            let w = (round + 1) as f32;
            run_round(&fa, "a", round, acc, &[w, w], 10);
        }
        let (best_round, score) = fa.best_model_score().unwrap();
        assert_eq!(best_round, 1);
        assert!((score - 0.9).abs() < 1e-6);
        assert_close(&fa.best_model().unwrap()["w"].values, &[1.0, 1.0]);
        assert_close(&fa.last_model()["w"].values, &[3.0, 3.0]);
        assert_eq!(fa.current_round(), 3);
    }

    #[test]
    fn best_model_metric_is_configurable() {
        let mut cfg = config(&["a"], 2);
        cfg.best_model_metric = Some("f1".into());
        let fa = FedAvg::new(cfg).unwrap();
        for (round, f1) in [(0, 0.8f32), (1, 0.2)] {
            let validate = vec![
                metric("acc", round, 1.0 - f1, &["metric", "validate_agg"]),
                metric("f1", round, f1, &["metric", "validate_agg"]),
            ];
            send(&fa, "a", round, VALIDATE, 1, validate).unwrap();
            send(&fa, "a", round, TRAIN, 1, vec![trained("w", round, &[5.0, 5.0])]).unwrap();
            send(&fa, "a", round, LOCAL, 1, vec![]).unwrap();
        }
        assert_eq!(fa.best_model_score().map(|(r, _)| r), Some(0));
    }

    #[test]
    fn bad_uploads_are_rejected_whole() {
        let fa = fedavg(&["a", "b"], 1);
        let code = |tensors: Vec<NamedTensor>| send(&fa, "a", 0, TRAIN, 1, tensors).unwrap_err().code();
        let good = || trained("w", 0, &[1.0, 1.0]);
        assert_eq!(code(vec![good(), trained("w", 0, &[1.0, 2.0, 3.0])]), ofl_code::InvalidArgument);
        assert_eq!(code(vec![good(), good()]), ofl_code::InvalidArgument);
        let long_metric =
            Tensor::new(vec![2], vec![1.0, 2.0]).unwrap().to_named_tensor("acc", 0, true, &["metric"]);
        assert_eq!(code(vec![good(), long_metric]), ofl_code::InvalidArgument);
        let mut lossy = good();
        lossy.tags = vec!["lossy_compressed".into(), "trained".into()];
        assert_eq!(code(vec![lossy]), ofl_code::InvalidArgument);
        let mut delta = good();
        delta.tags = vec!["compressed".into(), "delta".into(), "trained".into()];
        assert_eq!(code(vec![delta]), ofl_code::InvalidArgument);
        let unknown_task = send(&fa, "a", 0, "bogus", 1, vec![good()]).unwrap_err();
        assert_eq!(unknown_task.code(), ofl_code::InvalidArgument);
        // Nothing was kept: the task is still pending.
        assert_eq!(task_names(&fa.get_tasks("a").unwrap()), [VALIDATE, TRAIN, LOCAL]);
        assert!(fa.metrics().is_empty());
        // Tensors outside the model must agree between collaborators.
        send(&fa, "a", 0, TRAIN, 1, vec![good(), trained("opt", 0, &[1.0])]).unwrap();
        let err = send(&fa, "b", 0, TRAIN, 1, vec![good(), trained("opt", 0, &[1.0, 2.0])]).unwrap_err();
        assert_eq!(err.code(), ofl_code::InvalidArgument);
    }

    #[test]
    fn unauthorized_collaborator_is_refused() {
        let fa = fedavg(&["a"], 1);
        assert_eq!(fa.get_tasks("mallory").unwrap_err().code(), ofl_code::PermissionDenied);
        assert_eq!(fetch(&fa, "mallory", "w", 0).unwrap_err().code(), ofl_code::PermissionDenied);
        let err = send(&fa, "mallory", 0, TRAIN, 1, vec![]).unwrap_err();
        assert_eq!(err.code(), ofl_code::PermissionDenied);
    }

    /// Spoils one field of a valid configuration.
    type Spoil = fn(&mut FedAvgConfig);

    #[test]
    fn config_validation() {
        let check = |change: Spoil| {
            let mut cfg = config(&["a", "b"], 1);
            change(&mut cfg);
            FedAvg::new(cfg).unwrap_err().code()
        };
        let cases: Vec<(&str, Spoil)> = vec![
            ("no collaborators", |c| c.collaborators.clear()),
            ("duplicate collaborator", |c| c.collaborators.push("a".into())),
            ("empty collaborator", |c| c.collaborators.push(String::new())),
            ("zero rounds", |c| c.rounds_to_train = 0),
            ("no tasks", |c| c.tasks.clear()),
            ("duplicate task", |c| c.tasks.push(FedAvgConfig::default_tasks()[1].clone())),
            ("empty model", |c| c.initial_model.clear()),
            ("length mismatch", |c| c.initial_model.get_mut("w").unwrap().values.push(1.0)),
            ("scalar with two values", |c| c.initial_model.get_mut("b").unwrap().values.push(1.0)),
            ("huge dimension", |c| c.initial_model.get_mut("w").unwrap().shape = vec![1 << 31, 0]),
            ("zero sleep", |c| c.sleep_time = 0),
            ("empty best metric", |c| c.best_model_metric = Some(String::new())),
        ];
        for (what, change) in cases {
            assert_eq!(check(change), ofl_code::InvalidArgument, "{what}");
        }
        assert!(FedAvg::new(config(&["a"], 1)).is_ok());
        assert_eq!(Tensor::new(vec![2, 2], vec![0.0; 3]).unwrap_err().code(), ofl_code::InvalidArgument);
    }

    #[test]
    fn default_tasks_match_openfl() {
        let tasks = FedAvgConfig::default_tasks();
        let fields: Vec<_> = tasks
            .iter()
            .map(|t| (t.name.as_str(), t.function_name.as_str(), t.task_type.as_str(), t.apply_local))
            .collect();
        assert_eq!(
            fields,
            [
                (VALIDATE, "validate_task", "validate", false),
                (TRAIN, "train_task", "train", false),
                (LOCAL, "validate_task", "validate", true),
            ]
        );
        let cfg = FedAvgConfig::default();
        assert_eq!((cfg.sleep_time, cfg.tensor_wait, cfg.rounds_to_train), (10, Duration::from_secs(30), 10));
    }

    // --- state directory ------------------------------------------------------

    fn persistent_config(dir: &std::path::Path) -> FedAvgConfig {
        FedAvgConfig { state_dir: Some(dir.to_path_buf()), ..config(&["a", "b"], 3) }
    }

    /// Round 0 by both, then round 1 by a, and b's validation of round 1.
    fn part_of_two_rounds(fa: &FedAvg) {
        run_round(fa, "a", 0, 0.5, &[1.0, 2.0], 1);
        run_round(fa, "b", 0, 0.7, &[3.0, 4.0], 3);
        run_round(fa, "a", 1, 0.6, &[5.0, 6.0], 1);
        send(fa, "b", 1, VALIDATE, 3, vec![metric("acc", 1, 0.8, &["metric", "validate_agg"])]).unwrap();
    }

    /// The rest of the federation after `part_of_two_rounds`.
    fn rest_of_federation(fa: &FedAvg) {
        let train = vec![trained("w", 1, &[7.0, 8.0]), metric("loss", 1, 0.2, &["metric"])];
        send(fa, "b", 1, TRAIN, 3, train).unwrap();
        send(fa, "b", 1, LOCAL, 3, vec![metric("acc", 1, 0.8, &["metric", "validate_local"])]).unwrap();
        run_round(fa, "a", 2, 0.4, &[9.0, 9.5], 1);
        run_round(fa, "b", 2, 0.9, &[1.5, 2.5], 3);
    }

    fn bits(model: &Model) -> Vec<(String, Vec<usize>, Vec<u32>)> {
        model.iter().map(|(n, t)| (n.clone(), t.shape.clone(), t.values.iter().map(|v| v.to_bits()).collect())).collect()
    }

    /// The outcome of the federation without any restart.
    fn undisturbed() -> FedAvg {
        let fa = fedavg(&["a", "b"], 3);
        part_of_two_rounds(&fa);
        rest_of_federation(&fa);
        fa
    }

    fn assert_same_outcome(fa: &FedAvg, reference: &FedAvg) {
        assert_eq!(fa.current_round(), reference.current_round());
        assert_eq!(bits(&fa.last_model()), bits(&reference.last_model()));
        assert_eq!(fa.best_model().as_ref().map(bits), reference.best_model().as_ref().map(bits));
        assert_eq!(fa.best_model_score(), reference.best_model_score());
        assert_eq!(fa.metrics(), reference.metrics());
    }

    #[test]
    fn state_dir_resumes_the_round_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let first = FedAvg::new(persistent_config(dir.path())).unwrap();
        part_of_two_rounds(&first);
        let metrics_before = first.metrics();
        drop(first); // the process dies; only the directory is left

        let fa = FedAvg::new(persistent_config(dir.path())).unwrap();
        assert_eq!(fa.current_round(), 1);
        assert_eq!(fa.metrics(), metrics_before);
        // a reported everything: it sleeps; b still owes two tasks.
        let reply = fa.get_tasks("a").unwrap();
        assert_eq!((reply.round_number, reply.tasks.len(), reply.sleep_time), (1, 0, 3));
        assert_eq!(task_names(&fa.get_tasks("b").unwrap()), [TRAIN, LOCAL]);
        // The round-1 model is served; a's resent upload counts once.
        assert_close(&fetch(&fa, "a", "w", 1).unwrap().values, &[2.5, 3.5]);
        send(&fa, "a", 1, TRAIN, 1, vec![trained("w", 1, &[100.0, 100.0])]).unwrap();
        rest_of_federation(&fa);
        assert_same_outcome(&fa, &undisturbed());
        // Old rounds' result files are gone once a later round is saved.
        let results = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("result-"))
            .count();
        assert_eq!(results, 0);
    }

    #[test]
    fn a_round_whose_end_was_not_saved_ends_again() {
        let dir = tempfile::tempdir().unwrap();
        let first = FedAvg::new(persistent_config(dir.path())).unwrap();
        first.skip_round_saves(true); // crash right before each round-end save
        part_of_two_rounds(&first);
        drop(first);

        let fa = FedAvg::new(persistent_config(dir.path())).unwrap();
        assert_eq!(fa.current_round(), 1);
        assert_eq!(task_names(&fa.get_tasks("b").unwrap()), [TRAIN, LOCAL]);
        rest_of_federation(&fa);
        assert_same_outcome(&fa, &undisturbed());
    }

    #[test]
    fn quit_answers_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let first = FedAvg::new(persistent_config(dir.path())).unwrap();
        part_of_two_rounds(&first);
        rest_of_federation(&first);
        assert!(first.get_tasks("a").unwrap().quit);
        drop(first);

        let fa = FedAvg::new(persistent_config(dir.path())).unwrap();
        assert!(fa.is_finished());
        assert!(!fa.all_quit_jobs_sent());
        assert!(fa.get_tasks("b").unwrap().quit);
        assert!(fa.all_quit_jobs_sent(), "a was told before the restart");
        assert_same_outcome(&fa, &undisturbed());
    }

    #[test]
    fn damaged_or_foreign_state_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = FedAvg::new(persistent_config(dir.path())).unwrap();
        run_round(&first, "a", 0, 0.5, &[1.0, 2.0], 1);
        // In use by a running aggregator.
        let in_use = FedAvg::new(persistent_config(dir.path())).unwrap_err();
        assert_eq!(in_use.code(), ofl_code::FailedPrecondition);
        assert!(in_use.message().contains("in use"), "{in_use}");
        drop(first);

        // A half-written temporary file (crash during a save) is ignored.
        std::fs::write(dir.path().join(".federation.state.tmp"), b"OFLSTATE\x10").unwrap();
        assert_eq!(FedAvg::new(persistent_config(dir.path())).unwrap().metrics().len(), 3);
        assert!(!dir.path().join(".federation.state.tmp").exists());

        // Another federation's directory.
        let mut other = persistent_config(dir.path());
        other.collaborators = vec!["a".into(), "c".into()];
        let foreign = FedAvg::new(other).unwrap_err();
        assert_eq!(foreign.code(), ofl_code::FailedPrecondition);
        assert!(foreign.message().contains("another federation"), "{foreign}");

        // A damaged result file, then a damaged federation.state.
        let result = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("result-"))
            .unwrap();
        let bytes = std::fs::read(&result).unwrap();
        std::fs::write(&result, &bytes[..bytes.len() / 2]).unwrap();
        let damaged = FedAvg::new(persistent_config(dir.path())).unwrap_err();
        assert_eq!(damaged.code(), ofl_code::DataLoss);
        assert!(damaged.message().contains(&result.display().to_string()), "{damaged}");
        std::fs::write(&result, &bytes).unwrap();
        let manifest = dir.path().join("federation.state");
        let mut bytes = std::fs::read(&manifest).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        std::fs::write(&manifest, &bytes).unwrap();
        let damaged = FedAvg::new(persistent_config(dir.path())).unwrap_err();
        assert_eq!(damaged.code(), ofl_code::DataLoss);
        assert!(damaged.message().contains("federation.state") && damaged.message().contains("checksum"), "{damaged}");
    }

    #[test]
    fn waits_are_polled_without_blocking() {
        let fa = fedavg(&["a"], 2);
        assert!(!fa.may_block(LogicCall::GetAggregatedTensor) && !fa.may_block(LogicCall::GetTasks));
        let started = Instant::now();
        let TensorPoll::Pending(wait) = fa.poll_aggregated_tensor("a", &model_request("w", 1), started).unwrap()
        else {
            panic!("round 1's model is not there yet")
        };
        assert_eq!(wait.deadline, started + Duration::from_millis(200));
        assert!(!wait.changed.has_changed().unwrap());
        run_round(&fa, "a", 0, 0.5, &[4.0, 2.0], 1);
        assert!(wait.changed.has_changed().unwrap(), "the round's end must wake the waiter");
        let poll = fa.poll_aggregated_tensor("a", &model_request("w", 1), started).unwrap();
        assert!(matches!(poll, TensorPoll::Ready(_)));
        let expired = Instant::now() - Duration::from_secs(1);
        let err = fa.poll_aggregated_tensor("a", &model_request("w", 2), expired).unwrap_err();
        assert!(err.message().contains("not ready after waiting"), "{err}");
    }
}
