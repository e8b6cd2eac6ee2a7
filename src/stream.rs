//! Messages that travel as a stream of chunks (OpenFL's `DataStream`):
//! slicing one serialized buffer into chunks, and reassembling received
//! chunks without quadratic copying.
//!
//! Reassembly copies each chunk, as it arrives, to where it belongs in a
//! [`Placement`] (each chunk is released at once): tensor data goes to
//! 64-byte aligned buffers of its announced size, the rest to one small
//! growing buffer. prost then decodes the [`Segments`] with every tensor's
//! data a zero-copy slice of its aligned buffer. Peak memory is about the
//! payload size, and each byte is copied once (no buffer growth copies
//! tensor data).

use bytes::Bytes;

use crate::aligned::{Placement, Segments, TASK_RESULTS};

use crate::error::{Error, Result};
#[cfg(test)]
use crate::error::ofl_code;

/// Lets the HTTP/2 layer drop a handler whose client reset its upload;
/// await it after a client stream ended and before anything is committed.
///
/// tonic ends a request stream that the client reset with RST_STREAM(CANCEL)
/// exactly like one the client finished with END_STREAM (its decoder turns
/// the CANCELLED body error into the end of the stream), and hyper does the
/// same for RST_STREAM(NO_ERROR). A cancelled upload whose chunks end on a
/// message boundary would then decode and count as complete. hyper checks
/// for a reset every time a handler's future is pending, and drops that
/// future when the stream was reset, whatever the reason: yielding once here
/// makes that check happen, so a handler that gets past this point is
/// answering a stream that ended with END_STREAM.
pub async fn client_stream_finished() {
    tokio::task::yield_now().await;
}

/// OpenFL's chunk size for streamed messages: 2 MiB.
pub const CHUNK_SIZE: usize = 2 * 1024 * 1024;

/// OpenFL's maximum gRPC message size in each direction: 1 GiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 30;

/// Slices `payload` into chunks of at most `chunk_size` bytes (no copies).
/// An empty payload gives no chunk.
pub fn slice_chunks(payload: &Bytes, chunk_size: usize) -> Vec<Bytes> {
    let chunk_size = chunk_size.max(1);
    (0..payload.len())
        .step_by(chunk_size)
        .map(|start| payload.slice(start..(start + chunk_size).min(payload.len())))
        .collect()
}

/// Collects the chunks of one streamed `TaskResults`, checking the total
/// against a maximum and placing tensor data 64-byte aligned.
///
/// A chunk's `size` field is not checked against its bytes: OpenFL 1.6's
/// aggregator ignores it (`datastream_to_proto` concatenates `npbytes`), so a
/// peer that fills it differently still interoperates. The bytes decide.
pub struct Reassembly {
    placement: Placement,
    chunks_seen: usize,
}

impl Reassembly {
    /// An empty reassembly that refuses more than `max_size` bytes in total.
    pub fn new(max_size: usize) -> Self {
        Self { placement: Placement::new(TASK_RESULTS, max_size), chunks_seen: 0 }
    }

    /// Adds one chunk whose `size` field said `declared_size` bytes (ignored,
    /// as OpenFL 1.6 does; a mismatch is only logged at debug level).
    pub fn push(&mut self, declared_size: u32, bytes: &[u8]) -> Result<()> {
        self.note_chunk(declared_size, bytes.len());
        self.placement.push(bytes)
    }

    /// Adds one chunk that arrived as several pieces (the body frames that
    /// carried it), copying each piece once, into place.
    pub fn push_pieces(&mut self, declared_size: u32, pieces: &[Bytes]) -> Result<()> {
        let len: usize = pieces.iter().map(Bytes::len).sum();
        self.note_chunk(declared_size, len);
        pieces.iter().try_for_each(|piece| self.placement.push(piece))
    }

    fn note_chunk(&mut self, declared_size: u32, len: usize) {
        let index = self.chunks_seen;
        self.chunks_seen += 1;
        if declared_size as usize != len {
            log::debug!(
                "chunk {index}: size field says {declared_size} bytes, npbytes holds {len} (ignored, as OpenFL does)"
            );
        }
    }

    /// Tensors seen so far at the top level of the message (see
    /// [`Placement::top_count`]).
    pub fn tensor_count(&self) -> usize {
        self.placement.top_count()
    }

    /// The reassembled message, for prost; an empty stream is an error.
    pub fn finish(self) -> Result<Segments> {
        if self.placement.received() == 0 {
            return Err(Error::invalid_argument(format!(
                "empty stream: {} chunk(s) carried no data",
                self.chunks_seen
            )));
        }
        Ok(self.placement.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;
    use prost::Message;

    #[test]
    fn slicing_covers_the_payload_exactly() {
        let payload = Bytes::from((0..10u8).collect::<Vec<_>>());
        let chunks = slice_chunks(&payload, 4);
        assert_eq!(chunks.iter().map(Bytes::len).collect::<Vec<_>>(), vec![4, 4, 2]);
        assert_eq!(chunks.concat(), payload.to_vec());
        assert!(slice_chunks(&Bytes::new(), 4).is_empty());
    }

    #[test]
    fn reassembled_message_decodes_across_chunk_boundaries() {
        let tensor = crate::proto::aggregator::TaskResults {
            task_name: "t".into(),
            tensors: vec![crate::proto::NamedTensor {
                name: "w".into(),
                data_bytes: Bytes::from((0..10_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>()),
                tags: vec!["model".into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        let encoded = Bytes::from(tensor.encode_to_vec());
        let mut r = Reassembly::new(1 << 20);
        for chunk in slice_chunks(&encoded, 777) {
            r.push(chunk.len() as u32, &chunk).unwrap();
        }
        let decoded = crate::proto::aggregator::TaskResults::decode(r.finish().unwrap()).unwrap();
        assert_eq!(decoded, tensor);
    }

    #[test]
    fn the_size_field_is_ignored_as_openfl_does() {
        let mut r = Reassembly::new(8);
        r.push(3, b"ab").unwrap();
        r.push(0, b"cd").unwrap();
        r.push(u32::MAX, b"").unwrap();
        let mut all = r.finish().unwrap();
        assert_eq!(&all.copy_to_bytes(4)[..], b"abcd");
    }

    #[test]
    fn bad_streams_are_rejected_with_specific_codes() {
        let mut r = Reassembly::new(8);
        r.push(5, b"abcde").unwrap();
        assert_eq!(r.push(4, b"fghi").unwrap_err().code(), ofl_code::ResourceExhausted);

        let mut r = Reassembly::new(8);
        r.push(0, b"").unwrap();
        assert_eq!(r.finish().unwrap_err().code(), ofl_code::InvalidArgument);
    }
}
