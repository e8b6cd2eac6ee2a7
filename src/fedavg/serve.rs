//! Serving model tensors (GetAggregatedTensor): which key a request names,
//! whether a missing tensor may still appear, how long to wait for it.

use std::sync::PoisonError;
use std::time::Instant;

use super::codec::{
    invalid, named_tensor, StoredTensor, TAG_AGGREGATED, TAG_COMPRESSED, TAG_DELTA, TAG_LOSSY_COMPRESSED, TAG_MODEL,
};
use super::round::State;
use super::store::TensorKey;
use super::FedAvg;
use crate::aggregator::TensorRequest;
use crate::error::{ofl_code, Error, Result};
use crate::proto::NamedTensor;

impl FedAvg {
    /// The key a tensor request names, or `InvalidArgument` for anything but
    /// a model tensor.
    pub(super) fn request_key(&self, request: &TensorRequest) -> Result<TensorKey> {
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
    pub(super) fn may_appear(&self, state: &State, round: i32) -> bool {
        !self.finished(state) && round > state.round && round <= self.rounds_to_train
    }

    /// The tensor under `key` if it is there; `None` while it may still
    /// appear and `started + tensor_wait` has not passed; `FailedPrecondition`
    /// otherwise.
    pub(super) fn find_tensor(&self, state: &State, key: &TensorKey, started: Instant) -> Result<Option<StoredTensor>> {
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
    pub(super) fn wait_for_tensor(&self, key: &TensorKey) -> Result<StoredTensor> {
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
    pub(super) fn notify_changed(&self) {
        self.changed.notify_all();
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A served tensor as OpenFL's uncompressed pipeline encodes it.
    pub(super) fn served_tensor(&self, key: &TensorKey, request: &TensorRequest, tensor: StoredTensor) -> NamedTensor {
        let lossless = request.require_lossless || request.tags.iter().any(|t| t == TAG_COMPRESSED);
        let tags = key.with_tag(TAG_COMPRESSED).tags;
        named_tensor(&key.name, key.round, key.report, tags, &tensor.shape, tensor.data, lossless)
    }

    pub(super) fn missing_tensor(&self, key: &TensorKey, state: &State, reason: &str) -> Error {
        Error::new(
            ofl_code::FailedPrecondition,
            format!(
                "tensor {:?} (round {}, report {}, tags {:?}) {reason} (aggregator at round {} of {})",
                key.name, key.round, key.report, key.tags, state.round, self.rounds_to_train
            ),
        )
    }
}
