//! Client-side counting: a channel that meters every call
//! ([`MeteredChannel`]) and a connector that counts the connections it opens
//! ([`CountedConnector`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use hyper::rt::{Read, ReadBufCursor, Write};
use tonic::body::Body;
use tonic::codegen::{http, Service};
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::body::{status_in_head, Counted, Tracked};
use super::recorder::{ConnectionGuard, Direction, Recorder};
use super::snapshot::AuthFailure;

/// A tonic channel whose calls are counted (by RPC and status, with their
/// message bytes) by a client's [`Recorder`].
#[derive(Clone)]
pub(crate) struct MeteredChannel {
    inner: Channel,
    metrics: Arc<Recorder>,
}

impl MeteredChannel {
    pub(crate) fn new(inner: Channel, metrics: &Arc<Recorder>) -> Self {
        Self { inner, metrics: Arc::clone(metrics) }
    }
}

impl Service<http::Request<Body>> for MeteredChannel {
    type Response = http::Response<Tracked<Body>>;
    type Error = tonic::transport::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let mut meter = self.metrics.start_call(request.uri().path());
        let request = request.map(|body| Body::new(Counted::new(body, &meter, Direction::Out)));
        let pending = self.inner.call(request);
        Box::pin(async move {
            match pending.await {
                Ok(response) => {
                    if let Some(code) = status_in_head(response.headers()) {
                        note_refusal(&meter, code, response.headers());
                        meter.finish(code);
                    }
                    Ok(response.map(|body| Tracked::new(body, meter, Direction::In)))
                }
                Err(e) => {
                    if crate::tls::tls_failure_in(&e).is_some() {
                        meter.recorder().auth_failed(AuthFailure::TlsHandshake);
                    }
                    meter.finish(Code::Unavailable as i32);
                    Err(e)
                }
            }
        })
    }
}

/// An UNAUTHENTICATED answer is an authentication failure: a certificate CN
/// mismatch when the server's message says so (this library's servers
/// name the cause), an unauthorized collaborator otherwise.
fn note_refusal(meter: &super::recorder::CallMeter, code: i32, headers: &http::HeaderMap) {
    if code != Code::Unauthenticated as i32 {
        return;
    }
    let message = Status::from_header_map(headers).map(|s| s.message().to_string()).unwrap_or_default();
    let mismatch = message.contains("differs from header sender")
        || message.contains("is not the shared collaborator certificate CN")
        || message.contains("may not act as envoy");
    let kind = if mismatch { AuthFailure::CnMismatch } else { AuthFailure::UnauthorizedCollaborator };
    meter.recorder().auth_failed(kind);
}

/// A connector whose connections count as active while they are open.
#[derive(Clone)]
pub(crate) struct CountedConnector<C> {
    inner: C,
    metrics: Arc<Recorder>,
}

impl<C> CountedConnector<C> {
    pub(crate) fn new(inner: C, metrics: &Arc<Recorder>) -> Self {
        Self { inner, metrics: Arc::clone(metrics) }
    }
}

impl<C> Service<http::Uri> for CountedConnector<C>
where
    C: Service<http::Uri>,
    C::Future: Send + 'static,
    C::Response: Send + 'static,
{
    type Response = CountedIo<C::Response>;
    type Error = C::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, C::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), C::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let metrics = Arc::clone(&self.metrics);
        Box::pin(async move {
            let io = connecting.await?;
            Ok(CountedIo { inner: io, _open: metrics.connection_opened() })
        })
    }
}

/// A client connection's IO, counted as active until it is dropped.
pub(crate) struct CountedIo<IO> {
    inner: IO,
    _open: ConnectionGuard,
}

impl<IO: Read + Unpin> Read for CountedIo<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: Write + Unpin> Write for CountedIo<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
