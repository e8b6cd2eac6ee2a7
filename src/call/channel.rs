//! The channel of one attempt: the library's shared channel plus what the
//! attempt adds to it, the `grpc-timeout` header (the time left before the
//! call's limit, so the server sees it) and the progress of a unary
//! download, counted on the response body as it arrives.
//!
//! The download counter only observes the body's frames: it reads the gRPC
//! length prefix for the total and counts the message bytes after it,
//! leaving the frames to whatever decodes them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tonic::codegen::{http, Service};
use tonic::Status;

use super::{CallScope, Meter};
use crate::metrics::client::MeteredChannel as Channel;

/// The channel of one attempt (see the module doc).
#[derive(Clone)]
pub(crate) struct CallChannel {
    inner: Channel,
    timeout: Option<http::HeaderValue>,
    download: Option<Arc<Meter>>,
}

impl CallChannel {
    /// `channel` for the next attempt of the call of `scope`. With
    /// `download`, a unary response's body reports the call's progress.
    pub(crate) fn new(channel: Channel, scope: &CallScope, download: bool) -> Self {
        Self {
            inner: channel,
            timeout: scope.remaining().map(grpc_timeout),
            download: if download { scope.meter() } else { None },
        }
    }
}

/// `timeout` as a `grpc-timeout` value, encoded as tonic encodes it.
fn grpc_timeout(timeout: Duration) -> http::HeaderValue {
    let mut request = tonic::Request::new(());
    request.set_timeout(timeout);
    request.metadata().clone().into_headers().remove("grpc-timeout").expect("set_timeout sets grpc-timeout")
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<MeteredBody>, tonic::transport::Error>> + Send>>;

impl Service<http::Request<tonic::body::Body>> for CallChannel {
    type Response = http::Response<MeteredBody>;
    type Error = tonic::transport::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        if let Some(timeout) = &self.timeout {
            request.headers_mut().insert("grpc-timeout", timeout.clone());
        }
        let meter = self.download.clone();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| MeteredBody::new(tonic::body::Body::new(body), meter)))
        })
    }
}

/// A response body that counts the bytes of its (one) message.
pub(crate) struct MeteredBody {
    inner: tonic::body::Body,
    meter: Option<Arc<Meter>>,
    /// The gRPC message prefix (flag + 4-byte length) read so far.
    prefix: Vec<u8>,
}

impl MeteredBody {
    fn new(inner: tonic::body::Body, meter: Option<Arc<Meter>>) -> Self {
        if let Some(meter) = &meter {
            meter.restart(0);
        }
        Self { inner, meter, prefix: Vec::with_capacity(5) }
    }

    /// Counts a data frame; false when the progress callback said stop.
    fn count(&mut self, mut data: &[u8]) -> bool {
        let Some(meter) = &self.meter else { return true };
        if self.prefix.len() < 5 {
            let take = (5 - self.prefix.len()).min(data.len());
            self.prefix.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.prefix.len() < 5 {
                return true;
            }
            let total = u32::from_be_bytes([self.prefix[1], self.prefix[2], self.prefix[3], self.prefix[4]]);
            meter.set_total(u64::from(total));
            if total == 0 {
                return meter.finish();
            }
        }
        if data.is_empty() {
            return true;
        }
        let go_on = meter.advance(data.len() as u64);
        if go_on && meter.is_complete() {
            return meter.finish();
        }
        go_on
    }
}

impl Body for MeteredBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame {
            if let Some(data) = frame.data_ref() {
                if !this.count(data) {
                    return Poll::Ready(Some(Err(Status::cancelled("the progress callback asked to stop"))));
                }
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
