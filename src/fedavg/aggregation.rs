//! How a round combines the collaborators' versions of one tensor: the
//! [`Aggregation`] trait and its first implementation, [`WeightedAverage`]
//! (OpenFL's default aggregation function, `WeightedAverage`), which FedAvg
//! uses for every tensor and metric.

use std::fmt;

use super::codec::F32Values;

/// Combines the versions of one tensor (or metric) of one task that the
/// collaborators sent in a round into the aggregator's version.
pub trait Aggregation: fmt::Debug + Send + Sync {
    /// The aggregate of `inputs`: for each collaborator that sent the
    /// tensor, its `data_size` for the task (as sent: OpenFL's collaborator
    /// sends -1 when it does not know) and the tensor's values. There is at
    /// least one input and all hold the same number of values; the result
    /// must hold that many values too.
    fn aggregate(&self, inputs: &[(i32, F32Values<'_>)]) -> Vec<f32>;
}

/// The `data_size`-weighted average (OpenFL's `WeightedAverage`),
/// accumulated in f64 as numpy's `average` of float32 with float64 weights
/// is. A negative `data_size` counts as 0; when every weight is 0 the
/// collaborators count equally (OpenFL divides by the raw sum).
#[derive(Clone, Copy, Debug, Default)]
pub struct WeightedAverage;

impl Aggregation for WeightedAverage {
    fn aggregate(&self, inputs: &[(i32, F32Values<'_>)]) -> Vec<f32> {
        let sizes: Vec<i32> = inputs.iter().map(|(size, _)| *size).collect();
        let weights = normalized_weights(&sizes);
        let mut acc = vec![0f64; inputs.first().map_or(0, |(_, values)| values.len())];
        for ((_, values), weight) in inputs.iter().zip(weights) {
            for (a, x) in acc.iter_mut().zip(values.iter()) {
                *a += weight * f64::from(x);
            }
        }
        acc.into_iter().map(|a| a as f32).collect()
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_ignore_negative_and_fall_back_to_equal() {
        assert_eq!(normalized_weights(&[1, 3]), vec![0.25, 0.75]);
        assert_eq!(normalized_weights(&[-1, 2]), vec![0.0, 1.0]);
        assert_eq!(normalized_weights(&[-1, -1]), vec![0.5, 0.5]);
    }

    #[test]
    fn weighted_average_of_values() {
        let a: Vec<u8> = [1.0f32, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let b: Vec<u8> = [3.0f32, 6.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let inputs = [(1, F32Values::from_le_bytes(&a).unwrap()), (3, F32Values::from_le_bytes(&b).unwrap())];
        assert_eq!(WeightedAverage.aggregate(&inputs), vec![2.5, 4.0]);
        assert_eq!(WeightedAverage.aggregate(&inputs[..1]), vec![1.0, -2.0]);
    }
}
