//! Messages that travel as a stream of chunks (OpenFL's `DataStream`):
//! slicing one serialized buffer into chunks, and reassembling received
//! chunks without quadratic copying.
//!
//! Reassembly keeps the received chunks as they are ([`ChunkedBuf`]) and lets
//! prost decode straight from them: a tensor that lies inside one chunk is a
//! zero-copy slice; one that spans chunks is copied once, and each chunk is
//! released as soon as decoding moves past it, so peak memory stays close to
//! the payload size.

use std::collections::VecDeque;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{ofl_code, Error, Result};

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

/// A sequence of received chunks readable as one contiguous [`Buf`].
#[derive(Debug, Default)]
pub struct ChunkedBuf {
    chunks: VecDeque<Bytes>,
    remaining: usize,
}

impl ChunkedBuf {
    fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.remaining += chunk.len();
            self.chunks.push_back(chunk);
        }
    }
}

impl Buf for ChunkedBuf {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.chunks.front().map_or(&[], |c| c.as_ref())
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.remaining, "advance past the end of a ChunkedBuf");
        while cnt > 0 {
            let front = self.chunks.front_mut().expect("remaining > 0 implies a chunk");
            if cnt < front.len() {
                front.advance(cnt);
                self.remaining -= cnt;
                return;
            }
            cnt -= front.len();
            self.remaining -= front.len();
            self.chunks.pop_front();
        }
    }

    fn copy_to_bytes(&mut self, len: usize) -> Bytes {
        assert!(len <= self.remaining, "copy_to_bytes past the end of a ChunkedBuf");
        if let Some(front) = self.chunks.front_mut() {
            if len <= front.len() {
                let out = front.split_to(len);
                self.remaining -= len;
                if front.is_empty() {
                    self.chunks.pop_front();
                }
                return out;
            }
        }
        let mut out = BytesMut::with_capacity(len);
        out.put((&mut *self).take(len));
        out.freeze()
    }
}

/// Collects the chunks of one streamed message, checking each chunk's
/// declared size and the total against a maximum.
#[derive(Debug)]
pub struct Reassembly {
    buf: ChunkedBuf,
    max_size: usize,
    chunks_seen: usize,
}

impl Reassembly {
    /// An empty reassembly that refuses more than `max_size` bytes in total.
    pub fn new(max_size: usize) -> Self {
        Self { buf: ChunkedBuf::default(), max_size, chunks_seen: 0 }
    }

    /// Adds one chunk whose `size` field declared `declared_size` bytes.
    pub fn push(&mut self, declared_size: u32, bytes: Bytes) -> Result<()> {
        let index = self.chunks_seen;
        self.chunks_seen += 1;
        if declared_size as usize != bytes.len() {
            return Err(Error::invalid_argument(format!(
                "chunk {index}: size field says {declared_size} bytes but npbytes holds {}",
                bytes.len()
            )));
        }
        if self.buf.remaining() + bytes.len() > self.max_size {
            return Err(Error::new(
                ofl_code::ResourceExhausted,
                format!("stream exceeds the maximum message size of {} bytes", self.max_size),
            ));
        }
        self.buf.push(bytes);
        Ok(())
    }

    /// The reassembled bytes; an empty stream is an error.
    pub fn finish(self) -> Result<ChunkedBuf> {
        if self.buf.remaining() == 0 {
            return Err(Error::invalid_argument(format!(
                "empty stream: {} chunk(s) carried no data",
                self.chunks_seen
            )));
        }
        Ok(self.buf)
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
            r.push(chunk.len() as u32, chunk).unwrap();
        }
        let decoded = crate::proto::NamedTensor::decode(r.finish().unwrap()).unwrap();
        assert_eq!(decoded, tensor);
    }

    #[test]
    fn bad_streams_are_rejected_with_specific_codes() {
        let mut r = Reassembly::new(8);
        let e = r.push(3, Bytes::from_static(b"ab")).unwrap_err();
        assert_eq!(e.code(), ofl_code::InvalidArgument);
        assert!(e.message().contains("chunk 0"));

        let mut r = Reassembly::new(8);
        r.push(5, Bytes::from_static(b"abcde")).unwrap();
        assert_eq!(r.push(4, Bytes::from_static(b"fghi")).unwrap_err().code(), ofl_code::ResourceExhausted);

        let mut r = Reassembly::new(8);
        r.push(0, Bytes::new()).unwrap();
        assert_eq!(r.finish().unwrap_err().code(), ofl_code::InvalidArgument);
    }
}
