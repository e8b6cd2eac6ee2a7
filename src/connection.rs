//! One accepted connection, served under this crate's bounds: the TLS
//! handshake and the HTTP/2 preface within `handshake_timeout`, at most
//! `max_concurrent_streams` calls at once (more are refused with
//! REFUSED_STREAM), and a GOAWAY once no call has been in flight for
//! `idle_timeout`. Each request carries tonic's connection information (so
//! `Request::peer_certs` works as under tonic's own server) and has its body
//! capped by method ([`RequestRules`]). A stop ends it as
//! [`crate::shutdown`] says: GOAWAY, then its calls cancelled (UNAVAILABLE)
//! after the grace, then a reset.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tonic::body::Body;
use tonic::codegen::{http, Service};
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::limits::ServerLimits;
use crate::metrics::body::{status_in_head, Counted, Tracked};
use crate::metrics::recorder::Direction;
use crate::metrics::refusal::{refusal_of, Peer};
use crate::metrics::Recorder;
use crate::request_limits::{oversize_as_resource_exhausted, RequestRules};
use crate::shutdown::{fired, Signals, StreamExecutor};
use crate::tls::PeerCertificate;

/// The HTTP/2 connection preface a client sends first.
const PREFACE_LEN: usize = 24;

/// What every connection of one server shares.
pub(crate) struct Shared<S> {
    pub service: S,
    pub tls: Option<TlsAcceptor>,
    pub limits: ServerLimits,
    pub rules: RequestRules,
    pub http: http2::Builder<StreamExecutor>,
    pub metrics: Arc<Recorder>,
}

/// Who is on the other end, as tonic's handlers look it up.
#[derive(Clone)]
enum ConnInfo {
    Tcp(TcpConnectInfo),
    /// The TCP peer and the certificate it presented, if any.
    Tls(TcpConnectInfo, Option<PeerCertificate>),
}

impl ConnInfo {
    /// The peer as refusal logs name it.
    fn peer(&self) -> Peer {
        match self {
            ConnInfo::Tcp(info) => Peer { addr: info.remote_addr(), cn: None },
            ConnInfo::Tls(info, certs) => Peer {
                addr: info.remote_addr(),
                cn: certs.as_ref().map(|c| c.cn_or_empty().to_owned()),
            },
        }
    }

    fn insert_into(&self, extensions: &mut http::Extensions) {
        match self {
            ConnInfo::Tcp(info) => {
                extensions.insert(info.clone());
            }
            ConnInfo::Tls(info, certs) => {
                extensions.insert(info.clone());
                if let Some(certs) = certs {
                    extensions.insert(certs.clone());
                }
            }
        }
    }
}

/// Calls in flight, when the last one ended, whether the HTTP/2 preface
/// arrived, and whether the socket is reset (not closed gracefully) when the
/// connection is dropped. Plain atomics: a call costs two counter updates
/// and a clock read, no wake-up and no timer (the idle check looks only when
/// its one timer fires).
struct Activity {
    calls: AtomicUsize,
    /// When the last call ended, in ms after `opened` (0: none yet).
    last_end_ms: AtomicU64,
    opened: Instant,
    preface_seen: AtomicBool,
    reset: AtomicBool,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            calls: AtomicUsize::new(0),
            last_end_ms: AtomicU64::new(0),
            opened: Instant::now(),
            preface_seen: AtomicBool::new(false),
            reset: AtomicBool::new(false),
        })
    }

    fn call_started(self: &Arc<Self>) -> CallGuard {
        self.calls.fetch_add(1, Ordering::AcqRel);
        CallGuard(Arc::clone(self))
    }

    fn call_ended(&self) {
        let since_open = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_end_ms.fetch_max(since_open, Ordering::AcqRel);
        self.calls.fetch_sub(1, Ordering::AcqRel);
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::Acquire)
    }

    /// Resolves once no call has been in flight for `idle`.
    async fn idle_for(&self, idle: Duration) {
        let mut deadline = Instant::now() + idle;
        loop {
            tokio::time::sleep_until(deadline).await;
            let now = Instant::now();
            if self.calls() > 0 {
                deadline = now + idle;
                continue;
            }
            let idle_since = self.opened + Duration::from_millis(self.last_end_ms.load(Ordering::Acquire));
            if idle_since + idle <= now {
                return;
            }
            deadline = idle_since + idle;
        }
    }
}

/// One call in flight; ends when its response body is done or dropped.
struct CallGuard(Arc<Activity>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.call_ended();
    }
}

/// Serves one accepted TCP connection until it closes; `_slot` is its place
/// under `max_connections`, released when this returns.
pub(crate) async fn serve<S>(
    tcp: TcpStream,
    shared: Arc<Shared<S>>,
    signals: Signals,
    _slot: OwnedSemaphorePermit,
) where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let deadline = Instant::now() + shared.limits.handshake_timeout;
    let _open = shared.metrics.connection_opened();
    let Some(acceptor) = shared.tls.clone() else {
        let info = ConnInfo::Tcp(tcp.connect_info());
        return run(tcp, info, deadline, &shared, signals).await;
    };
    let peer_addr = tcp.peer_addr().ok();
    let handshake = tokio::time::timeout_at(deadline, acceptor.accept(tcp));
    let mut stop = signals.stop.clone();
    let tls = tokio::select! {
        _ = fired(&mut stop) => return,
        done = handshake => match done {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => return handshake_failed(&shared.metrics, peer_addr, &e),
            Err(_) => return log::debug!("TLS handshake not done within {:?}: closed", shared.limits.handshake_timeout),
        },
    };
    let (tcp, session) = tls.get_ref();
    let certs = session.peer_certificates().map(PeerCertificate::of_chain);
    let info = ConnInfo::Tls(tcp.connect_info(), certs);
    run(tls, info, deadline, &shared, signals).await
}

/// A failed TLS handshake: counted and logged (rate-limited) when TLS
/// refused the peer; a peer that just went away is only a debug line.
fn handshake_failed(metrics: &Recorder, peer: Option<std::net::SocketAddr>, error: &io::Error) {
    match crate::tls::tls_failure_in(error) {
        Some(tls) => metrics.record_tls_failure(peer, &tls),
        None => log::debug!("TLS handshake with {peer:?} failed: {error}"),
    }
}

/// Serves HTTP/2 on `io` until the connection ends, is idle too long, never
/// sends its preface, or the server stops (GOAWAY, then a reset at the
/// close step of a stop).
async fn run<IO, S>(io: IO, info: ConnInfo, preface_deadline: Instant, shared: &Shared<S>, signals: Signals)
where
    IO: Socket + AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let activity = Activity::new();
    let io = Watched { inner: io, activity: Arc::clone(&activity), read: 0 };
    let service = ConnService {
        inner: shared.service.clone(),
        info,
        activity: Arc::clone(&activity),
        rules: shared.rules.clone(),
        cancel: signals.cancel.clone(),
        metrics: Arc::clone(&shared.metrics),
    };
    let (mut stop, mut close) = (signals.stop, signals.close);
    let conn = shared.http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let preface = tokio::time::sleep_until(preface_deadline);
    tokio::pin!(preface);
    let idle = activity.idle_for(shared.limits.idle_timeout);
    tokio::pin!(idle);
    // After a GOAWAY for idleness, how long the peer has to let go.
    let grace = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(grace);
    let (mut preface_checked, mut closing, mut stopping) = (false, false, false);
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    log::debug!("connection ended: {e}");
                }
                return;
            }
            _ = &mut preface, if !preface_checked => {
                if !activity.preface_seen.load(Ordering::Relaxed) {
                    return log::debug!("no HTTP/2 preface within {:?}: closed", shared.limits.handshake_timeout);
                }
                preface_checked = true;
            }
            _ = &mut idle, if !closing && !stopping => {
                log::debug!("no call for {:?}: closing the connection", shared.limits.idle_timeout);
                conn.as_mut().graceful_shutdown();
                closing = true;
                grace.as_mut().reset(Instant::now() + shared.limits.handshake_timeout);
            }
            _ = &mut grace, if closing => {
                if activity.calls() == 0 {
                    return log::debug!("idle connection did not close after GOAWAY: dropped");
                }
                grace.as_mut().reset(Instant::now() + shared.limits.handshake_timeout);
            }
            _ = fired(&mut stop), if !stopping => {
                conn.as_mut().graceful_shutdown();
                stopping = true;
            }
            _ = fired(&mut close) => {
                activity.reset.store(true, Ordering::Relaxed);
                return log::debug!("connection still open when its server closed: reset");
            }
        }
    }
}

/// The HTTP/2 settings of every server connection.
pub(crate) fn http2_builder(limits: &ServerLimits, executor: StreamExecutor) -> http2::Builder<StreamExecutor> {
    let mut builder = http2::Builder::new(executor);
    builder
        .timer(TokioTimer::new())
        .max_frame_size(crate::listen::MAX_FRAME_SIZE)
        .initial_stream_window_size(crate::listen::STREAM_WINDOW)
        .initial_connection_window_size(crate::listen::CONNECTION_WINDOW)
        .keep_alive_interval(Some(crate::listen::KEEPALIVE_INTERVAL))
        .max_concurrent_streams(limits.max_concurrent_streams);
    builder
}

/// The TCP socket under a connection's IO.
pub(crate) trait Socket {
    fn tcp(&self) -> &TcpStream;
}

impl Socket for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Socket for tokio_rustls::server::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// The IO under HTTP/2, noting when the preface has been read.
struct Watched<IO: Socket> {
    inner: IO,
    activity: Arc<Activity>,
    read: usize,
}

impl<IO: Socket> Drop for Watched<IO> {
    /// A connection closed by a stop is reset: its peer may have stopped
    /// reading, and what is queued for it would otherwise keep the socket.
    fn drop(&mut self) {
        if self.activity.reset.load(Ordering::Relaxed) {
            if let Err(e) = self.inner.tcp().set_zero_linger() {
                log::debug!("SO_LINGER 0 on a connection to reset: {e}");
            }
        }
    }
}

impl<IO: Socket + AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if self.read < PREFACE_LEN {
            self.read += buf.filled().len() - before;
            if self.read >= PREFACE_LEN {
                self.activity.preface_seen.store(true, Ordering::Relaxed);
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: Socket + AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
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

/// The server's service as seen by one connection.
#[derive(Clone)]
struct ConnService<S> {
    inner: S,
    info: ConnInfo,
    activity: Arc<Activity>,
    rules: RequestRules,
    /// The cancel step of a stop: calls still in flight end UNAVAILABLE.
    cancel: watch::Receiver<bool>,
    metrics: Arc<Recorder>,
}

impl<S> hyper::service::Service<http::Request<Incoming>> for ConnService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        let guard = self.activity.call_started();
        let mut meter = self.metrics.start_call(request.uri().path());
        let request = request.map(|body| Body::new(Counted::new(body, &meter, Direction::In)));
        let mut request = self.rules.apply(request);
        self.info.insert_into(request.extensions_mut());
        let mut service = self.inner.clone();
        let mut cancel = self.cancel.clone();
        let info = self.info.clone();
        Box::pin(async move {
            let call = async {
                futures_util::future::poll_fn(|cx| service.poll_ready(cx)).await?;
                service.call(request).await
            };
            // Dropping `call` at the cancel step drops the handler wherever
            // it is: an upload not read to its end never reaches the logic.
            // Cancel first: once it fired, the handler is never polled again
            // (so it starts no callback after the grace).
            let response = tokio::select! {
                biased;
                _ = fired(&mut cancel) => cancelled().into_http(),
                response = call => response?,
            };
            if let Some(code) = status_in_head(response.headers()) {
                note_refusal(&meter, &response, &info);
                meter.finish(code);
            }
            let cancelled = Box::pin(async move { fired(&mut cancel).await });
            let body = |body| {
                let in_flight = InFlight { inner: body, _guard: guard, cancelled: Some(cancelled) };
                Body::new(Tracked::new(in_flight, meter, Direction::Out))
            };
            Ok(response.map(body))
        })
    }
}

/// The answer of a call cancelled by a stop.
fn cancelled() -> tonic::Status {
    tonic::Status::unavailable("the server is shutting down: the call was cancelled at the end of its shutdown grace")
}

/// A call answered with a status its server's checks marked as a refusal
/// (see `crate::metrics::refusal`): counted and logged with the peer.
fn note_refusal(meter: &crate::metrics::recorder::CallMeter, response: &http::Response<Body>, info: &ConnInfo) {
    let Some(status) = response.extensions().get::<tonic::Status>() else { return };
    if let Some(kind) = refusal_of(status) {
        let rpc = meter.recorder().rpc_name_at(meter.rpc());
        meter.recorder().record_refusal(kind, rpc, &info.peer(), status);
    }
}

/// A response body that counts as a call in flight until it is done, and
/// ends with UNAVAILABLE trailers at the cancel step of a stop.
struct InFlight {
    inner: Body,
    _guard: CallGuard,
    /// Resolves at the cancel step; `None` once the body ended.
    cancelled: Option<BoxFuture<'static, ()>>,
}

impl HttpBody for InFlight {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let Some(cancel) = self.cancelled.as_mut() else {
            return Poll::Ready(None);
        };
        if cancel.as_mut().poll(cx).is_ready() {
            self.cancelled = None;
            let mut trailers = http::HeaderMap::new();
            let _ = cancelled().add_header(&mut trailers);
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if frame.is_none() {
            self.cancelled = None;
        }
        Poll::Ready(frame.map(|frame| {
            frame.map(|frame| match frame.into_trailers() {
                Ok(mut trailers) => {
                    oversize_as_resource_exhausted(&mut trailers);
                    Frame::trailers(trailers)
                }
                Err(frame) => frame,
            })
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.cancelled.is_none() || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
