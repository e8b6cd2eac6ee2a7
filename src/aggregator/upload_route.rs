//! SendLocalTaskResults read from the HTTP/2 body.
//!
//! tonic's decoder gathers every `DataStream` message (a 2 MiB chunk) in a
//! buffer of its own before prost decodes it, and the reassembly then copies
//! the chunk again into the aligned buffers: two copies of the whole upload,
//! and a fresh 2 MiB buffer per chunk that the allocator keeps handing back
//! to the kernel. This route keeps each message as the body frames that
//! brought it (slices, no copy), walks its two fields in place, and hands the
//! `npbytes` pieces to the reassembly, which copies them once, into place.
//! The handling itself is [`Service::task_results`], as through tonic.

use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures_util::future::BoxFuture;
use http_body_util::BodyExt;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::Status;

use super::server::Service;
use crate::aligned::frames;
use crate::method_route::{refuse_compression, MethodHandler, PREFIX_LEN};
use crate::proto::aggregator::aggregator_server::SERVICE_NAME;
use crate::stream::Reassembly;

/// `DataStream.size` and `DataStream.npbytes` field numbers.
const SIZE_FIELD: u64 = 1;
const NPBYTES_FIELD: u64 = 2;

/// SendLocalTaskResults' handler.
pub(super) struct StreamedUploads(pub(super) Arc<Service>);

impl MethodHandler for StreamedUploads {
    const SERVICE: &'static str = SERVICE_NAME;
    const PATH: &'static str = "/openfl.aggregator.Aggregator/SendLocalTaskResults";

    fn answer(self: Arc<Self>, request: http::Request<Body>) -> BoxFuture<'static, Result<http::Response<Body>, Status>> {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            refuse_compression(&parts.headers)?;
            let peer = crate::tls::peer_certificate(&parts.extensions);
            let max_message_size = self.0.max_message_size();
            let response = self
                .0
                .task_results(peer, move |reassembly| read_chunks(body, reassembly, max_message_size))
                .await?;
            Ok(frames::unary_response(&response))
        })
    }
}

/// Reads every `DataStream` message of `body` into `reassembly`. A body
/// error (the client reset the stream) or a message cut by the end of the
/// body is an error: a cut upload is never a complete one.
async fn read_chunks(mut body: Body, mut reassembly: Reassembly, max_message_size: usize) -> Result<Reassembly, Status> {
    let mut messages = MessageSplitter::new(max_message_size);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Status::from_error(e.into()))?;
        let Ok(data) = frame.into_data() else { continue };
        messages.feed(data)?;
        while let Some(message) = messages.next_message() {
            let chunk = DataStreamChunk::parse(message)?;
            reassembly.push_pieces(chunk.declared_size, &chunk.npbytes).map_err(Status::from)?;
        }
    }
    messages.finish()?;
    Ok(reassembly)
}

/// Splits body frames into gRPC messages, each kept as slices of the frames.
struct MessageSplitter {
    prefix: [u8; PREFIX_LEN],
    prefix_len: usize,
    /// Bytes of the current message still to come.
    left: usize,
    current: Vec<Bytes>,
    done: Vec<Vec<Bytes>>,
    max_size: usize,
}

impl MessageSplitter {
    fn new(max_size: usize) -> Self {
        Self { prefix: [0; PREFIX_LEN], prefix_len: 0, left: 0, current: Vec::new(), done: Vec::new(), max_size }
    }

    fn feed(&mut self, mut data: Bytes) -> Result<(), Status> {
        while !data.is_empty() {
            if self.prefix_len < PREFIX_LEN {
                let n = (PREFIX_LEN - self.prefix_len).min(data.len());
                self.prefix[self.prefix_len..self.prefix_len + n].copy_from_slice(&data[..n]);
                self.prefix_len += n;
                data.advance(n);
                if self.prefix_len == PREFIX_LEN {
                    self.start_message()?;
                }
                continue;
            }
            let n = self.left.min(data.len());
            self.current.push(data.split_to(n));
            self.left -= n;
            self.end_message_if_complete();
        }
        Ok(())
    }

    fn start_message(&mut self) -> Result<(), Status> {
        if self.prefix[0] != 0 {
            return Err(Status::internal(
                "protocol error: received message with compressed-flag but no grpc-encoding was specified",
            ));
        }
        let len = u32::from_be_bytes(self.prefix[1..].try_into().expect("4 bytes")) as usize;
        if len > self.max_size {
            // Counted as a refusal by the caller (`Service::task_results`).
            return Err(Status::resource_exhausted(format!(
                "decoded message length too large: found {len} bytes, the limit is: {} bytes",
                self.max_size
            )));
        }
        self.left = len;
        self.end_message_if_complete();
        Ok(())
    }

    fn end_message_if_complete(&mut self) {
        if self.left == 0 {
            self.done.push(std::mem::take(&mut self.current));
            self.prefix_len = 0;
        }
    }

    /// The next message read whole, oldest first.
    fn next_message(&mut self) -> Option<Vec<Bytes>> {
        if self.done.is_empty() {
            None
        } else {
            Some(self.done.remove(0))
        }
    }

    /// Checks that the body did not end inside a message.
    fn finish(&self) -> Result<(), Status> {
        if self.prefix_len == 0 {
            Ok(())
        } else {
            Err(Status::internal("the body ended in the middle of a message"))
        }
    }
}

/// One `DataStream` message: its `size` field and its `npbytes` as slices
/// of the frames that carried it.
#[derive(Debug, Default)]
struct DataStreamChunk {
    declared_size: u32,
    npbytes: Vec<Bytes>,
}

impl DataStreamChunk {
    /// Protobuf rules as prost applies them: fields in any order, a repeated
    /// scalar field keeps its last value, unknown fields are skipped.
    fn parse(message: Vec<Bytes>) -> Result<Self, Status> {
        let mut reader = Pieces { pieces: message.into_iter().collect() };
        let mut chunk = DataStreamChunk::default();
        while reader.has_remaining() {
            let key = reader.varint()?;
            let (field, wire_type) = (key >> 3, key & 7);
            match (field, wire_type) {
                (SIZE_FIELD, 0) => chunk.declared_size = reader.varint()? as u32,
                (NPBYTES_FIELD, 2) => {
                    let len = reader.length()?;
                    chunk.npbytes = reader.take(len)?;
                }
                (0, _) => return Err(not_a_data_stream("field number 0")),
                (SIZE_FIELD | NPBYTES_FIELD, _) => return Err(not_a_data_stream(&format!("wire type {wire_type}"))),
                (_, 0) => {
                    reader.varint()?;
                }
                (_, 1) => drop(reader.take(8)?),
                (_, 2) => {
                    let len = reader.length()?;
                    drop(reader.take(len)?);
                }
                (_, 5) => drop(reader.take(4)?),
                (_, other) => return Err(not_a_data_stream(&format!("wire type {other}"))),
            }
        }
        Ok(chunk)
    }
}

fn not_a_data_stream(what: &str) -> Status {
    Status::internal(format!("failed to decode Protobuf message: DataStream: invalid {what}"))
}

/// A cursor over a message held as several `Bytes`.
struct Pieces {
    pieces: std::collections::VecDeque<Bytes>,
}

impl Pieces {
    fn has_remaining(&mut self) -> bool {
        while self.pieces.front().is_some_and(Bytes::is_empty) {
            self.pieces.pop_front();
        }
        !self.pieces.is_empty()
    }

    fn byte(&mut self) -> Result<u8, Status> {
        if !self.has_remaining() {
            return Err(not_a_data_stream("message: it ends inside a field"));
        }
        let front = self.pieces.front_mut().expect("checked above");
        let byte = front[0];
        front.advance(1);
        Ok(byte)
    }

    fn varint(&mut self) -> Result<u64, Status> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            if shift == 63 && byte > 1 {
                break;
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(not_a_data_stream("varint"))
    }

    fn length(&mut self) -> Result<usize, Status> {
        usize::try_from(self.varint()?).map_err(|_| not_a_data_stream("length"))
    }

    /// The next `len` bytes, as slices of the pieces.
    fn take(&mut self, mut len: usize) -> Result<Vec<Bytes>, Status> {
        let mut taken = Vec::new();
        while len > 0 {
            if !self.has_remaining() {
                return Err(not_a_data_stream("length: it runs past the end of the message"));
            }
            let front = self.pieces.front_mut().expect("checked above");
            let n = len.min(front.len());
            taken.push(front.split_to(n));
            len -= n;
        }
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::DataStream;
    use prost::Message;

    /// `bytes` cut into pieces of `piece` bytes.
    fn pieces(bytes: &[u8], piece: usize) -> Vec<Bytes> {
        bytes.chunks(piece.max(1)).map(Bytes::copy_from_slice).collect()
    }

    #[test]
    fn chunks_parse_as_prost_decodes_them_at_every_split() {
        let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let cases = [
            DataStream { size: 3000, npbytes: Bytes::from(data.clone()) },
            DataStream { size: 0, npbytes: Bytes::new() },
            DataStream { size: 7, npbytes: Bytes::from_static(b"abc") },
        ];
        for message in cases {
            let encoded = message.encode_to_vec();
            for piece in [1, 2, 5, 300, 4096] {
                let chunk = DataStreamChunk::parse(pieces(&encoded, piece)).unwrap();
                assert_eq!(chunk.declared_size, message.size);
                assert_eq!(chunk.npbytes.concat(), message.npbytes.to_vec(), "pieces of {piece}");
            }
        }
    }

    #[test]
    fn repeated_npbytes_keeps_the_last_and_unknown_fields_are_skipped() {
        let mut encoded = DataStream { size: 1, npbytes: Bytes::from_static(b"first") }.encode_to_vec();
        encoded.extend_from_slice(&[0x18, 0x96, 0x01]); // field 3, varint 150
        encoded.extend_from_slice(&[0x22, 0x02, b'x', b'y']); // field 4, 2 bytes
        encoded.extend_from_slice(&[0x2d, 1, 2, 3, 4]); // field 5, fixed32
        encoded.extend_from_slice(&[0x31, 1, 2, 3, 4, 5, 6, 7, 8]); // field 6, fixed64
        encoded.extend(DataStream { size: 0, npbytes: Bytes::from_static(b"last") }.encode_to_vec());
        let decoded = DataStream::decode(&encoded[..]).unwrap();
        let chunk = DataStreamChunk::parse(pieces(&encoded, 3)).unwrap();
        assert_eq!(chunk.npbytes.concat(), decoded.npbytes.to_vec());
        assert_eq!(&chunk.npbytes.concat()[..], b"last");
    }

    #[test]
    fn malformed_messages_are_refused_like_prost_refuses_them() {
        let bad_cases: [&[u8]; 7] = [
            &[0x12, 0x05, b'a'],
            &[0x08],
            &[0x0b],
            &[0x02],
            &[0x12, 0xff],
            &[0x0a, 0x00],
            &[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
        ];
        for bad in bad_cases {
            assert!(DataStream::decode(bad).is_err(), "{bad:?} decodes with prost");
            let status = DataStreamChunk::parse(vec![Bytes::copy_from_slice(bad)]).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Internal, "{bad:?}");
        }
    }

    #[test]
    fn messages_are_split_at_their_prefixes_across_frames() {
        let mut body = Vec::new();
        let payloads: [&[u8]; 3] = [b"hello", b"", b"world!"];
        for payload in payloads {
            body.push(0);
            body.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            body.extend_from_slice(payload);
        }
        for frame in [1, 3, 7, body.len()] {
            let mut splitter = MessageSplitter::new(100);
            let mut seen = Vec::new();
            for piece in pieces(&body, frame) {
                splitter.feed(piece).unwrap();
                while let Some(message) = splitter.next_message() {
                    seen.push(message.concat());
                }
            }
            splitter.finish().unwrap();
            assert_eq!(seen, payloads.iter().map(|p| p.to_vec()).collect::<Vec<_>>(), "frames of {frame}");
        }
    }

    #[test]
    fn cut_compressed_and_oversized_messages_are_errors() {
        let mut cut = MessageSplitter::new(100);
        cut.feed(Bytes::from_static(&[0, 0, 0, 0, 9, b'a'])).unwrap();
        assert_eq!(cut.finish().unwrap_err().code(), tonic::Code::Internal);
        let mut cut_prefix = MessageSplitter::new(100);
        cut_prefix.feed(Bytes::from_static(&[0, 0])).unwrap();
        assert!(cut_prefix.finish().is_err());
        let mut compressed = MessageSplitter::new(100);
        assert_eq!(compressed.feed(Bytes::from_static(&[1, 0, 0, 0, 0])).unwrap_err().code(), tonic::Code::Internal);
        let mut oversized = MessageSplitter::new(100);
        let status = oversized.feed(Bytes::from_static(&[0, 0, 0, 0, 101])).unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    }
}
