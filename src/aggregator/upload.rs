//! Serializing `TaskResults` for SendLocalTaskResults as a list of chunks
//! without copying tensor data.
//!
//! The receiver concatenates chunks and parses the result, so chunk
//! boundaries are free: small fields are serialized into short buffers, and
//! each tensor's `data_bytes` is sent as slices of the tensor's own `Bytes`.
//! The concatenation is byte-identical to prost's encoding of the message
//! (tensor data is the last field of `NamedTensor`, and prost writes fields
//! in field-number order).

use bytes::Bytes;
use prost::encoding::{encode_key, encode_varint, WireType};
use prost::Message;

use crate::proto::aggregator::TaskResults;
use crate::proto::NamedTensor;

/// Tensor data shorter than this is copied into the surrounding chunk rather
/// than sent as chunks of its own (metrics are 4 bytes).
const INLINE_DATA_LIMIT: usize = 64 * 1024;

/// `TaskResults.tensors` field number.
const TENSORS_FIELD: u32 = 5;
/// `NamedTensor.data_bytes` field number.
const DATA_BYTES_FIELD: u32 = 7;
/// `DataStream.size` and `DataStream.npbytes` field numbers.
const DATA_STREAM_SIZE_FIELD: u32 = 1;
const DATA_STREAM_NPBYTES_FIELD: u32 = 2;

/// Collects chunks of at most `chunk_size` bytes.
struct ChunkWriter {
    chunk_size: usize,
    pending: Vec<u8>,
    chunks: Vec<Bytes>,
}

impl ChunkWriter {
    fn new(chunk_size: usize) -> Self {
        Self { chunk_size: chunk_size.max(1), pending: Vec::new(), chunks: Vec::new() }
    }

    /// Appends serialized bytes, cutting full chunks as they fill up.
    fn copy(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = self.chunk_size - self.pending.len();
            let (now, later) = bytes.split_at(room.min(bytes.len()));
            self.pending.extend_from_slice(now);
            bytes = later;
            if self.pending.len() == self.chunk_size {
                self.flush();
            }
        }
    }

    /// Appends tensor data: small data is copied, large data is sliced.
    fn data(&mut self, data: &Bytes) {
        if data.len() < INLINE_DATA_LIMIT {
            self.copy(data);
            return;
        }
        self.flush();
        self.chunks.extend(crate::stream::slice_chunks(data, self.chunk_size));
    }

    fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.chunks.push(Bytes::from(std::mem::take(&mut self.pending)));
        }
    }

    fn finish(mut self) -> Vec<Bytes> {
        self.flush();
        self.chunks
    }
}

/// The serialization of `tensor` as field `field` of its parent message, up
/// to (and including) the length prefix of its data: everything but the data
/// bytes themselves, which follow it on the wire.
pub(crate) fn tensor_head(field: u32, tensor: &NamedTensor) -> Vec<u8> {
    let mut head = Vec::new();
    encode_key(field, WireType::LengthDelimited, &mut head);
    encode_varint(tensor.encoded_len() as u64, &mut head);
    let without_data = NamedTensor { data_bytes: Bytes::new(), ..tensor.clone() };
    without_data.encode(&mut head).expect("a Vec grows as needed");
    if !tensor.data_bytes.is_empty() {
        encode_key(DATA_BYTES_FIELD, WireType::LengthDelimited, &mut head);
        encode_varint(tensor.data_bytes.len() as u64, &mut head);
    }
    head
}

/// `chunk` as one `DataStream { size, npbytes: chunk }` gRPC message of a
/// request body: the 5-byte message prefix and the two field headers in a
/// small buffer, then the chunk itself, not copied (tonic's encoder would
/// copy every chunk into its own buffer). Byte for byte prost's encoding.
pub(crate) fn framed_chunk(chunk: &Bytes) -> [Bytes; 2] {
    let size = chunk.len() as u64;
    let mut fields = Vec::with_capacity(2 * (1 + 10));
    if size > 0 {
        encode_key(DATA_STREAM_SIZE_FIELD, WireType::Varint, &mut fields);
        encode_varint(size, &mut fields);
        encode_key(DATA_STREAM_NPBYTES_FIELD, WireType::LengthDelimited, &mut fields);
        encode_varint(size, &mut fields);
    }
    let len = u32::try_from(fields.len() + chunk.len()).expect("a chunk is far below 4 GiB");
    let mut head = Vec::with_capacity(crate::method_route::PREFIX_LEN + fields.len());
    head.push(0);
    head.extend_from_slice(&len.to_be_bytes());
    head.extend_from_slice(&fields);
    [Bytes::from(head), chunk.clone()]
}

/// `results` serialized as chunks of at most `chunk_size` bytes whose
/// concatenation is `results.encode_to_vec()`; large tensor data is not copied.
pub fn encode_in_chunks(results: &TaskResults, chunk_size: usize) -> Vec<Bytes> {
    let mut writer = ChunkWriter::new(chunk_size);
    let fields = TaskResults {
        header: results.header.clone(),
        round_number: results.round_number,
        task_name: results.task_name.clone(),
        data_size: results.data_size,
        tensors: Vec::new(),
    };
    writer.copy(&fields.encode_to_vec());
    for tensor in &results.tensors {
        writer.copy(&tensor_head(TENSORS_FIELD, tensor));
        writer.data(&tensor.data_bytes);
    }
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::aggregator::MessageHeader;
    use crate::proto::MetadataProto;

    fn tensor(name: &str, len: usize) -> NamedTensor {
        NamedTensor {
            name: name.into(),
            round_number: 3,
            lossless: true,
            tags: vec!["trained".into()],
            transformer_metadata: vec![MetadataProto { int_list: vec![len as i32], ..Default::default() }],
            data_bytes: Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>()),
            ..Default::default()
        }
    }

    fn results(tensors: Vec<NamedTensor>) -> TaskResults {
        TaskResults {
            header: Some(MessageHeader { sender: "col1".into(), receiver: "agg".into(), ..Default::default() }),
            round_number: 3,
            task_name: "train".into(),
            data_size: 100,
            tensors,
        }
    }

    #[test]
    fn chunks_concatenate_to_prost_encoding() {
        let cases = vec![
            results(vec![]),
            results(vec![tensor("empty", 0), tensor("metric", 4)]),
            results(vec![tensor("w", 300_000), tensor("loss", 4), tensor("b", 70_000)]),
        ];
        for message in cases {
            for chunk_size in [1000, 65_536, 2 << 20] {
                let chunks = encode_in_chunks(&message, chunk_size);
                assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= chunk_size));
                assert_eq!(chunks.concat(), message.encode_to_vec(), "chunk size {chunk_size}");
            }
        }
    }

    #[test]
    fn framed_chunks_are_prost_encoded_data_stream_messages() {
        for chunk in [Bytes::new(), Bytes::from_static(b"abc"), Bytes::from(vec![7u8; 300_000])] {
            let message = crate::proto::DataStream { size: chunk.len() as u32, npbytes: chunk.clone() };
            let encoded = message.encode_to_vec();
            let [head, data] = framed_chunk(&chunk);
            assert_eq!(head[0], 0);
            assert_eq!(u32::from_be_bytes(head[1..5].try_into().unwrap()) as usize, encoded.len());
            assert_eq!([&head[5..], &data[..]].concat(), encoded);
            assert_eq!(data.as_ptr(), chunk.as_ptr(), "the chunk is sent as it is");
        }
    }

    #[test]
    fn large_tensor_data_is_sliced_not_copied() {
        let message = results(vec![tensor("w", 5 << 20)]);
        let data = message.tensors[0].data_bytes.as_ptr_range();
        let chunks = encode_in_chunks(&message, 2 << 20);
        let sliced: usize =
            chunks.iter().filter(|c| data.contains(&c.as_ptr())).map(Bytes::len).sum();
        assert_eq!(sliced, 5 << 20);
    }
}
