//! gRPC messages read from HTTP/2 body frames straight into [`Placement`]s:
//! one copy of each byte, tensor data 64-byte aligned. (tonic's codec would
//! first gather each message in its own buffer, at an arbitrary offset.)

use std::collections::VecDeque;

use bytes::{BufMut, BytesMut};
use futures_util::stream::BoxStream;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use prost::Message;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::Status;

use super::Placement;
use crate::method_route::PREFIX_LEN;

/// Splits a body into gRPC messages, each placed as it arrives.
pub(crate) struct FrameReader {
    prefix: [u8; PREFIX_LEN],
    prefix_len: usize,
    current: Option<Placement>,
    /// Bytes of the current message still to come.
    left: usize,
    tensor_path: &'static [u32],
    max_size: usize,
    done: VecDeque<Placement>,
}

impl FrameReader {
    /// A reader placing tensor data at `tensor_path`; messages over
    /// `max_size` bytes are RESOURCE_EXHAUSTED before any is buffered.
    pub(crate) fn new(tensor_path: &'static [u32], max_size: usize) -> Self {
        Self {
            prefix: [0; PREFIX_LEN],
            prefix_len: 0,
            current: None,
            left: 0,
            tensor_path,
            max_size,
            done: VecDeque::new(),
        }
    }

    /// Reads the next bytes of the body.
    pub(crate) fn feed(&mut self, mut data: &[u8]) -> Result<(), Status> {
        while !data.is_empty() {
            if self.prefix_len < PREFIX_LEN {
                let n = (PREFIX_LEN - self.prefix_len).min(data.len());
                self.prefix[self.prefix_len..self.prefix_len + n].copy_from_slice(&data[..n]);
                self.prefix_len += n;
                data = &data[n..];
                if self.prefix_len == PREFIX_LEN {
                    self.start_message()?;
                }
                continue;
            }
            let n = self.left.min(data.len());
            let placement = self.current.as_mut().expect("set by start_message");
            placement.push(&data[..n]).map_err(Status::from)?;
            self.left -= n;
            data = &data[n..];
            self.end_message_if_complete();
        }
        Ok(())
    }

    fn start_message(&mut self) -> Result<(), Status> {
        if self.prefix[0] != 0 {
            return Err(Status::internal("compressed messages are not supported (none was asked for)"));
        }
        let len = u32::from_be_bytes(self.prefix[1..].try_into().expect("4 bytes")) as usize;
        if len > self.max_size {
            return Err(Status::resource_exhausted(format!(
                "decoded message length too large: found {len} bytes, the limit is: {} bytes",
                self.max_size
            )));
        }
        self.current = Some(Placement::with_len(self.tensor_path, len));
        self.left = len;
        self.end_message_if_complete();
        Ok(())
    }

    fn end_message_if_complete(&mut self) {
        if self.left == 0 {
            if let Some(done) = self.current.take() {
                self.done.push_back(done);
                self.prefix_len = 0;
            }
        }
    }

    /// The next message read whole.
    pub(crate) fn next_message(&mut self) -> Option<Placement> {
        self.done.pop_front()
    }

    /// Checks that the body did not end inside a message: a cut message is
    /// never counted complete.
    pub(crate) fn finish(&self) -> Result<(), Status> {
        if self.prefix_len == 0 && self.current.is_none() {
            Ok(())
        } else {
            Err(Status::internal("the body ended in the middle of a message"))
        }
    }
}

/// The messages of a request body (a client stream), decoded as they
/// arrive with tensor data at `tensor_path` aligned. A body error, a cut
/// message or one that does not decode ends the stream with an error.
pub(crate) fn message_stream<M>(body: Body, tensor_path: &'static [u32], max_size: usize) -> BoxStream<'static, Result<M, Status>>
where
    M: Message + Default + 'static,
{
    let reader = FrameReader::new(tensor_path, max_size);
    let state = Some((body, reader));
    Box::pin(futures_util::stream::unfold(state, |state| async move {
        let (mut body, mut reader) = state?;
        loop {
            if let Some(placement) = reader.next_message() {
                let message = super::decode::<M>(placement.finish())
                    .map_err(|e| Status::internal(format!("failed to decode Protobuf message: {e}")));
                return Some((message, Some((body, reader))));
            }
            let step = match body.frame().await {
                None => reader.finish().map(|()| None),
                Some(Err(e)) => Err(Status::from_error(e.into())),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => reader.feed(&data).map(Some),
                    Err(_) => Ok(Some(())),
                },
            };
            match step {
                Ok(Some(())) => continue,
                Ok(None) => return None,
                Err(status) => return Some((Err(status), None)),
            }
        }
    }))
}

/// A unary gRPC response: `message` framed, then trailers with status OK.
pub(crate) fn unary_response<M: Message>(message: &M) -> http::Response<Body> {
    let mut framed = BytesMut::with_capacity(PREFIX_LEN + message.encoded_len());
    framed.put_u8(0);
    framed.put_u32(u32::try_from(message.encoded_len()).expect("a small response"));
    message.encode(&mut framed).expect("a BytesMut grows as needed");
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let frames = [Frame::data(framed.freeze()), Frame::trailers(trailers)].into_iter().map(Ok::<_, Status>);
    http::Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .body(Body::new(StreamBody::new(futures_util::stream::iter(frames))))
        .expect("a valid static response head")
}
