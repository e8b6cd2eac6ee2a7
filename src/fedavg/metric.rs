//! FedAvg's metrics: what collaborators report and the round's averages.

use super::codec::{invalid, StoredTensor};
use crate::error::Result;

/// The `origin` of averaged metrics (OpenFL's `metric_origin`).
pub const AGGREGATOR_METRIC_ORIGIN: &str = "aggregator";

/// One metric: reported by a collaborator, or averaged by the aggregator at
/// the end of a round (OpenFL's metric schema: round, `metric_origin`,
/// `task_name`, `metric_name`, `metric_value`).
#[derive(Clone, Debug, PartialEq)]
pub struct FedAvgMetric {
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

pub(super) fn metric_value(name: &str, tensor: &StoredTensor) -> Result<f64> {
    if tensor.len() != 1 {
        return Err(invalid(format!("metric {name:?} must hold one value, has {}", tensor.len())));
    }
    Ok(first_value(tensor))
}

pub(super) fn first_value(tensor: &StoredTensor) -> f64 {
    tensor.values().next().map_or(f64::NAN, f64::from)
}

pub(super) fn aggregated_metric(round: i32, task: &str, name: &str, value: f64) -> FedAvgMetric {
    FedAvgMetric {
        round,
        origin: AGGREGATOR_METRIC_ORIGIN.to_string(),
        aggregated: true,
        task: task.to_string(),
        name: name.to_string(),
        value,
    }
}
