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
//!   one upload), and tensors FedAvg cannot use (neither a metric, i.e.
//!   `report` or tag `metric`, nor tagged `trained`; OpenFL 1.6 would
//!   aggregate and then silently drop them): `InvalidArgument`, logged at
//!   WARN, and nothing of that upload is kept.
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
//!   [`FedAvgOptions::state_dir`], a restarted aggregator resumes the round it
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
//!
//! # Layout
//!
//! FedAvg sits above the transport: it implements the aggregator server's
//! [`AggregatorLogic`] (in `logic.rs`), and `src/aggregator` never uses it.
//! [`codec`] turns OpenFL's tensor encoding into [`Tensor`]s and back (the
//! only part other layers use); `store.rs` keys tensors as OpenFL does;
//! [`Aggregation`] combines a round's tensors ([`WeightedAverage`]);
//! `round.rs` is the round state machine, `serve.rs` serves model tensors,
//! `options.rs` and `metric.rs` hold [`FedAvgOptions`] and [`FedAvgMetric`];
//! `persist.rs` and `state_file.rs` keep the state directory.
//!
//! [`AggregatorLogic`]: crate::aggregator::AggregatorLogic
//! [`AggregatorLogic::all_quit_jobs_sent`]: crate::aggregator::AggregatorLogic::all_quit_jobs_sent
//! [`AggregatorLogic::poll_aggregated_tensor`]: crate::aggregator::AggregatorLogic::poll_aggregated_tensor
//! [`AggregatorLogic::may_block`]: crate::aggregator::AggregatorLogic::may_block
//! [`AggregatorLogic::get_aggregated_tensor`]: crate::aggregator::AggregatorLogic::get_aggregated_tensor

mod aggregation;
pub mod codec;
mod logic;
mod metric;
mod options;
mod persist;
mod round;
mod serve;
mod state_file;
mod store;
#[cfg(test)]
mod tests;

pub use aggregation::{Aggregation, WeightedAverage};
pub use codec::{F32Values, Model, Tensor};
pub use metric::{FedAvgMetric, AGGREGATOR_METRIC_ORIGIN};
pub use options::{FedAvgOptions, DEFAULT_ROUNDS_TO_TRAIN, DEFAULT_SLEEP_TIME, DEFAULT_TENSOR_WAIT};
pub use round::FedAvg;
