//! Counting the tensors of a serialized `TaskResults` before decoding it.
//!
//! Decoding a million tiny tensors costs far more memory than their bytes on
//! the wire (each becomes a `NamedTensor` with its own allocations), so the
//! server counts them first (the reassembly counts the top-level `tensors`
//! fields as the upload arrives) and refuses an upload over its cap with
//! RESOURCE_EXHAUSTED.

use crate::error::{ofl_code, Error, Result};

/// Checks a count of tensors (see [`crate::stream::Reassembly::tensor_count`],
/// which counts the top-level `tensors` fields as the upload arrives)
/// against `max`.
pub fn check_count(count: usize, max: usize) -> Result<()> {
    if count > max {
        return Err(Error::new(
            ofl_code::ResourceExhausted,
            format!("the upload holds {count} tensors, more than the limit of {max} per upload"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::aggregator::{MessageHeader, TaskResults};
    use crate::proto::NamedTensor;
    use crate::stream::Reassembly;
    use prost::Message;

    fn results(tensors: usize) -> Vec<u8> {
        TaskResults {
            header: Some(MessageHeader { sender: "col1".into(), ..Default::default() }),
            round_number: 7,
            task_name: "train".into(),
            data_size: 12,
            tensors: (0..tensors)
                .map(|i| NamedTensor { name: format!("t{i}"), data_bytes: vec![1, 2, 3].into(), ..Default::default() })
                .collect(),
        }
        .encode_to_vec()
    }

    /// The count the server checks: the reassembly's, as the bytes arrive.
    fn count_tensors(encoded: &[u8]) -> usize {
        let mut reassembly = Reassembly::new(1 << 20);
        reassembly.push(encoded.len() as u32, encoded).unwrap();
        reassembly.tensor_count()
    }

    #[test]
    fn counts_exactly_the_tensors() {
        for n in [0, 1, 2, 1000] {
            assert_eq!(count_tensors(&results(n)), n);
        }
    }

    #[test]
    fn over_the_cap_is_resource_exhausted() {
        check_count(count_tensors(&results(10)), 10).unwrap();
        assert_eq!(check_count(count_tensors(&results(11)), 10).unwrap_err().code(), ofl_code::ResourceExhausted);
    }
}
