//! HTTP bodies that count their message bytes ([`Counted`]) and, for the
//! body that carries a call's status, finish the call's meter with it
//! ([`Tracked`]); the status of a trailers-only answer is read from the
//! response head ([`status_in_head`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::codegen::http;

use super::recorder::{CallMeter, Direction, Recorder};

/// The gRPC status code in `headers`, if they carry one.
pub(crate) fn status_in_head(headers: &http::HeaderMap) -> Option<i32> {
    let value = headers.get("grpc-status")?;
    Some(std::str::from_utf8(value.as_bytes()).ok()?.trim().parse().unwrap_or(2))
}

/// A body whose DATA bytes are added to one RPC's counter.
pub(crate) struct Counted<B> {
    inner: B,
    recorder: Arc<Recorder>,
    rpc: usize,
    direction: Direction,
}

impl<B> Counted<B> {
    /// `inner`, counted as `direction` bytes of `meter`'s RPC.
    pub(crate) fn new(inner: B, meter: &CallMeter, direction: Direction) -> Self {
        Self { inner, recorder: Arc::clone(meter.recorder()), rpc: meter.rpc(), direction }
    }
}

impl<B: HttpBody<Data = Bytes> + Unpin> HttpBody for Counted<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
            if let Some(data) = data {
                self.recorder.add_bytes(self.rpc, self.direction, data.len());
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The body that ends a call: counts its bytes, and finishes the call's
/// meter with the status of its trailers (UNKNOWN when it ends without one,
/// CANCELLED when it is dropped before its end).
pub(crate) struct Tracked<B> {
    inner: B,
    meter: CallMeter,
    direction: Direction,
}

impl<B> Tracked<B> {
    pub(crate) fn new(inner: B, meter: CallMeter, direction: Direction) -> Self {
        Self { inner, meter, direction }
    }
}

impl<B: HttpBody<Data = Bytes> + Unpin> HttpBody for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let recorder = this.meter.recorder();
                    recorder.add_bytes(this.meter.rpc(), this.direction, data.len());
                } else if let Some(trailers) = frame.trailers_ref() {
                    this.meter.finish(status_in_head(trailers).unwrap_or(tonic::Code::Unknown as i32));
                }
            }
            // The stream broke: the peer or the connection went away.
            Some(Err(_)) => this.meter.finish(tonic::Code::Cancelled as i32),
            None => this.meter.finish(tonic::Code::Unknown as i32),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
