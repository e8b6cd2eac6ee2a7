//! Counting the tensors of a serialized `TaskResults` before decoding it.
//!
//! Decoding a million tiny tensors costs far more memory than their bytes on
//! the wire (each becomes a `NamedTensor` with its own allocations), so the
//! server counts them first, by walking the top-level protobuf fields, and
//! refuses an upload over its cap with RESOURCE_EXHAUSTED.

#[cfg(test)]
use prost::encoding::decode_varint;

use crate::error::{ofl_code, Error, Result};

/// `TaskResults.tensors` field number.
#[cfg(test)]
const TENSORS_FIELD: u64 = 5;

/// Checks that `encoded` (a serialized `TaskResults`) holds at most `max`
/// tensors. Malformed input is left for the decoder to report.
#[cfg(test)]
pub fn check_tensor_count(encoded: &[u8], max: usize) -> Result<()> {
    check_count(count_tensors(encoded), max)
}

/// Checks a count of tensors (see [`crate::stream::Reassembly::tensor_count`],
/// which counts as [`count_tensors`] does) against `max`.
pub fn check_count(count: usize, max: usize) -> Result<()> {
    if count > max {
        return Err(Error::new(
            ofl_code::ResourceExhausted,
            format!("the upload holds {count} tensors, more than the limit of {max} per upload"),
        ));
    }
    Ok(())
}

/// The number of `tensors` fields at the top level of `encoded` (up to the
/// first malformed field).
#[cfg(test)]
fn count_tensors(mut buf: &[u8]) -> usize {
    let mut count = 0;
    while !buf.is_empty() {
        let Ok(key) = decode_varint(&mut buf) else { break };
        let skip = match key & 7 {
            0 => decode_varint(&mut buf).map(|_| 0).ok(),
            1 => Some(8),
            2 => decode_varint(&mut buf).ok().and_then(|len| usize::try_from(len).ok()),
            5 => Some(4),
            _ => None,
        };
        let Some(skip) = skip.filter(|skip| *skip <= buf.len()) else { break };
        if key >> 3 == TENSORS_FIELD && key & 7 == 2 {
            count += 1;
        }
        buf = &buf[skip..];
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::aggregator::{MessageHeader, TaskResults};
    use crate::proto::NamedTensor;
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

    #[test]
    fn counts_exactly_the_tensors() {
        for n in [0, 1, 2, 1000] {
            assert_eq!(count_tensors(&results(n)), n);
        }
    }

    #[test]
    fn over_the_cap_is_resource_exhausted() {
        check_tensor_count(&results(10), 10).unwrap();
        assert_eq!(check_tensor_count(&results(11), 10).unwrap_err().code(), ofl_code::ResourceExhausted);
    }

    #[test]
    fn malformed_input_stops_the_count() {
        let mut bytes = results(3);
        bytes.extend_from_slice(&[0x2a, 0xff]); // field 5, a length that runs past the end
        assert_eq!(count_tensors(&bytes), 3);
    }
}
