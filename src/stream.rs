//! Messages that travel as a stream of chunks (OpenFL's `DataStream`):
//! slicing one serialized buffer into chunks, and reassembling received
//! chunks without quadratic copying.
//!
//! Reassembly appends each chunk to one growing buffer as it arrives (each
//! chunk is released at once, growth is amortized doubling), then hands prost
//! that buffer as `Bytes`: decoded tensors are zero-copy slices of it. Peak
//! memory is about the payload size, and each byte is copied once.

use bytes::Bytes;

use crate::error::{ofl_code, Error, Result};

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

/// Collects the chunks of one streamed message, checking the total against
/// a maximum.
///
/// A chunk's `size` field is not checked against its bytes: OpenFL 1.6's
/// aggregator ignores it (`datastream_to_proto` concatenates `npbytes`), so a
/// peer that fills it differently still interoperates. The bytes decide.
#[derive(Debug)]
pub struct Reassembly {
    buf: Vec<u8>,
    max_size: usize,
    chunks_seen: usize,
}

impl Reassembly {
    /// An empty reassembly that refuses more than `max_size` bytes in total.
    pub fn new(max_size: usize) -> Self {
        Self { buf: Vec::new(), max_size, chunks_seen: 0 }
    }

    /// Adds one chunk whose `size` field said `declared_size` bytes (ignored,
    /// as OpenFL 1.6 does; a mismatch is only logged at debug level).
    pub fn push(&mut self, declared_size: u32, bytes: &[u8]) -> Result<()> {
        let index = self.chunks_seen;
        self.chunks_seen += 1;
        if declared_size as usize != bytes.len() {
            log::debug!(
                "chunk {index}: size field says {declared_size} bytes, npbytes holds {} (ignored, as OpenFL does)",
                bytes.len()
            );
        }
        if self.buf.len() + bytes.len() > self.max_size {
            return Err(Error::new(
                ofl_code::ResourceExhausted,
                format!("stream exceeds the maximum message size of {} bytes", self.max_size),
            ));
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// The reassembled bytes; an empty stream is an error.
    pub fn finish(self) -> Result<Bytes> {
        if self.buf.is_empty() {
            return Err(Error::invalid_argument(format!(
                "empty stream: {} chunk(s) carried no data",
                self.chunks_seen
            )));
        }
        Ok(Bytes::from(self.buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let tensor = crate::proto::NamedTensor {
            name: "w".into(),
            data_bytes: Bytes::from((0..10_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>()),
            tags: vec!["model".into()],
            ..Default::default()
        };
        let encoded = Bytes::from(tensor.encode_to_vec());
        let mut r = Reassembly::new(1 << 20);
        for chunk in slice_chunks(&encoded, 777) {
            r.push(chunk.len() as u32, &chunk).unwrap();
        }
        let buffer = r.finish().unwrap();
        let decoded = crate::proto::NamedTensor::decode(buffer.clone()).unwrap();
        assert_eq!(decoded, tensor);
        // The tensor's bytes are a slice of the reassembled buffer, not a copy.
        let inside = buffer.as_ptr_range();
        assert!(inside.contains(&decoded.data_bytes.as_ptr()));
    }

    #[test]
    fn the_size_field_is_ignored_as_openfl_does() {
        let mut r = Reassembly::new(8);
        r.push(3, b"ab").unwrap();
        r.push(0, b"cd").unwrap();
        r.push(u32::MAX, b"").unwrap();
        assert_eq!(&r.finish().unwrap()[..], b"abcd");
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
