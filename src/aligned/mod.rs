//! Received tensor data starts on a 64-byte boundary.
//!
//! Hosts read tensor bytes in place (C: `const float *` over
//! `ofl_tensor_data`), so every receive path places each `data_bytes`
//! payload aligned while making the one copy it makes anyway (from the
//! HTTP/2 frames, or from tonic's buffer, into the message's own storage):
//! [`Placement`] scans the protobuf encoding as it arrives and gives each
//! payload an aligned buffer; [`Segments`] lets prost decode the result with
//! each `data_bytes` a slice of that buffer. [`ensure_aligned`] is the
//! fallback for what the scanner could not follow (logged at DEBUG).
//!
//! The paths covered: SendLocalTaskResults uploads (server), the
//! GetAggregatedTensor and GetTrainedModel responses (clients, read from the
//! HTTP/2 body by [`unary`]), and the model of SetNewExperiment (director).

#[allow(unsafe_code)]
mod block;
pub(crate) mod frames;
mod placement;
mod segments;
pub(crate) mod unary;

use prost::Message;

pub(crate) use block::{aligned_copy, ensure_aligned, AlignedF32};
pub use block::is_aligned;
pub use placement::Placement;
pub use segments::Segments;

use crate::proto::NamedTensor;

/// The alignment of received tensor data, in bytes.
pub const ALIGN: usize = 64;

/// `NamedTensor.data_bytes`.
const DATA_BYTES: u32 = 7;
/// Path to tensor data in `TaskResults` (`tensors` = 5).
pub const TASK_RESULTS: &[u32] = &[5, DATA_BYTES];
/// Path to tensor data in `GetAggregatedTensorResponse` (`tensor` = 3).
pub const AGGREGATED_TENSOR: &[u32] = &[3, DATA_BYTES];
/// Path to tensor data in `TrainedModelResponse` (`model_proto` = 1,
/// `ModelProto.tensors` = 1).
pub const TRAINED_MODEL: &[u32] = &[1, 1, DATA_BYTES];
/// Path to tensor data in `ExperimentInfo` (`model_proto` = 4).
pub const EXPERIMENT_INFO: &[u32] = &[4, 1, DATA_BYTES];

/// For a response that carries no tensor: field 0 never occurs in protobuf.
pub const NO_TENSOR: &[u32] = &[0];

/// Decodes a placed message.
pub fn decode<M: Message + Default>(segments: Segments) -> Result<M, prost::DecodeError> {
    M::decode(segments)
}

/// Makes every tensor's data 64-byte aligned, copying what is not (see
/// [`ensure_aligned`]); `what` names the message in the DEBUG log.
pub(crate) fn align_tensors<'a>(
    tensors: impl IntoIterator<Item = &'a mut NamedTensor>,
    what: &str,
) -> crate::Result<()> {
    for tensor in tensors {
        if !is_aligned(&tensor.data_bytes) {
            let data = std::mem::take(&mut tensor.data_bytes);
            tensor.data_bytes = ensure_aligned(data, &format!("{what}, tensor {:?}", tensor.name))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
