//! The aggregator's tensors, keyed as OpenFL's `TensorDB` keys them.

use std::collections::{BTreeMap, HashMap};

use super::codec::{normalize_tags, Model, StoredTensor, TAG_METRIC, TAG_MODEL};

/// OpenFL's `TensorKey`: name, origin, round, report, tags (sorted).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct TensorKey {
    pub(super) name: String,
    pub(super) origin: String,
    pub(super) round: i32,
    pub(super) report: bool,
    pub(super) tags: Vec<String>,
}

impl TensorKey {
    pub(super) fn new<S: Into<String>>(
        name: &str,
        origin: &str,
        round: i32,
        report: bool,
        tags: impl IntoIterator<Item = S>,
    ) -> Self {
        Self { name: name.into(), origin: origin.into(), round, report, tags: normalize_tags(tags) }
    }

    pub(super) fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    pub(super) fn with_tag(&self, tag: &str) -> Self {
        let tags = self.tags.iter().map(String::as_str).chain([tag]);
        Self { tags: normalize_tags(tags), ..self.clone() }
    }

    pub(super) fn without_tag(&self, tag: &str) -> Self {
        Self { tags: self.tags.iter().filter(|t| *t != tag).cloned().collect(), ..self.clone() }
    }

    pub(super) fn is_metric(&self) -> bool {
        self.report || self.has_tag(TAG_METRIC)
    }
}

/// The aggregator's tensors, keyed like OpenFL's `TensorDB`: model tensors
/// as `(name, aggregator, round, false, ("model",))`, uploads as
/// `(name, aggregator, round, report, tags + collaborator)`.
#[derive(Debug, Default)]
pub(super) struct TensorStore {
    tensors: HashMap<TensorKey, StoredTensor>,
}

impl TensorStore {
    pub(super) fn get(&self, key: &TensorKey) -> Option<&StoredTensor> {
        self.tensors.get(key)
    }

    pub(super) fn insert(&mut self, key: TensorKey, tensor: StoredTensor) {
        self.tensors.insert(key, tensor);
    }

    /// Stores `model` as the model of `round`.
    pub(super) fn insert_model(&mut self, origin: &str, round: i32, model: &Snapshot) {
        for (name, tensor) in model {
            self.insert(TensorKey::new(name, origin, round, false, [TAG_MODEL]), tensor.clone());
        }
    }

    /// Keeps the models of `round - 1` and later, everything else of `round`
    /// and later.
    pub(super) fn clean_up(&mut self, round: i32) {
        self.tensors.retain(|key, _| key.round >= round - i32::from(key.has_tag(TAG_MODEL)));
    }
}

/// A model as stored: name → tensor.
pub(super) type Snapshot = BTreeMap<String, StoredTensor>;

pub(super) fn snapshot_to_model(snapshot: &Snapshot) -> Model {
    snapshot.iter().map(|(name, t)| (name.clone(), t.to_tensor())).collect()
}

