//! What every server of this crate does to listen: bind (dual-stack `[::]` by
//! default, port 0 for a free port), accept connections under the server's
//! bounds ([`ServerLimits`]: a connection-count limit, a back-off when file
//! descriptors run out instead of a spinning accept loop, TCP_NODELAY on
//! every socket), and serve each ([`crate::connection`]) in the background
//! until stopped ([`Serving`]; how a stop ends calls: [`crate::shutdown`]).

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tonic::body::Body;
use tonic::codegen::{http, Service};

use crate::connection::Shared;
use crate::error::{ofl_code, Error, Result};
use crate::limits::ServerLimits;
use crate::metrics::{Recorder, Role};
use crate::request_limits::{RequestRules, UploadBudget};
use crate::shutdown::{fired, StreamExecutor, Switches};
use crate::tls::TlsConfig;

/// HTTP/2 frame size: 1 MiB frames moved 20–30 % more than the 16 KiB default
/// on this project's loopback measurements.
pub(crate) const MAX_FRAME_SIZE: u32 = 1 << 20;
/// HTTP/2 flow-control windows, large enough for multi-MiB chunks in flight.
pub(crate) const STREAM_WINDOW: u32 = 8 << 20;
pub(crate) const CONNECTION_WINDOW: u32 = 32 << 20;
/// HTTP/2 PING interval that notices dead peers.
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// Pause after an accept error such as EMFILE (out of file descriptors):
/// the pending connection stays in the backlog, so retrying at once spins.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Binds `host:port`. `host` may be a name, an IPv4 address, or an IPv6
/// address with or without brackets; `[::]` listens on IPv4 and IPv6.
pub async fn bind(host: &str, port: u16) -> Result<TcpListener> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match TcpListener::bind((bare, port)).await {
        Ok(listener) => Ok(listener),
        // A host without IPv6 still serves the default address on IPv4.
        Err(_) if bare == "::" => TcpListener::bind(("0.0.0.0", port))
            .await
            .map_err(|e| Error::io(format!("cannot listen on 0.0.0.0:{port}: {e}"))),
        Err(e) => Err(Error::io(format!("cannot listen on {host}:{port}: {e}"))),
    }
}

/// The address `listener` is bound to (with the chosen port when 0 was asked).
pub fn local_addr(listener: &TcpListener) -> Result<SocketAddr> {
    listener.local_addr().map_err(|e| Error::io(format!("local address: {e}")))
}

/// How a server listens: its TLS (checked when this is built, so a bad
/// certificate fails the start with a specific error), its bounds and which
/// of its methods are streamed uploads.
pub struct Listen {
    tls: Option<TlsAcceptor>,
    limits: ServerLimits,
    rules: RequestRules,
    metrics: Arc<Recorder>,
}

impl Listen {
    /// Checks `limits` and loads `tls`. `max_message_size` bounds each
    /// message of the client-streaming methods `uploads` (their paths).
    pub fn new(
        tls: Option<&TlsConfig>,
        limits: &ServerLimits,
        max_message_size: usize,
        uploads: &'static [&'static str],
    ) -> Result<Self> {
        limits.check()?;
        let tls = tls.map(|tls| tls.rustls_server_config().map(TlsAcceptor::from)).transpose()?;
        let rules = RequestRules {
            unary_limit: limits.max_unary_request_size,
            message_limit: max_message_size,
            uploads,
            budget: None,
        };
        let metrics = Recorder::new(Role::AggregatorServer, &[]);
        Ok(Self { tls, limits: limits.clone(), rules, metrics })
    }

    /// Holds the uploads in flight to `budget` (for servers that keep
    /// uploads in memory).
    pub fn set_upload_budget(&mut self, budget: Arc<UploadBudget>) {
        self.rules.budget = Some(budget);
    }

    /// Counts the server's connections and calls in `metrics`.
    pub(crate) fn set_metrics(&mut self, metrics: &Arc<Recorder>) {
        self.metrics = Arc::clone(metrics);
    }
}

/// Accepts connections until stopped, each under a slot of
/// `max_connections`; then closes the listener and winds the connections
/// down ([`crate::shutdown`]: calls in flight get the shutdown grace, then
/// are cancelled).
async fn accept_loop<S>(listener: TcpListener, shared: Arc<Shared<S>>, switches: Arc<Switches>)
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    let signals = switches.signals();
    let mut stop = signals.stop.clone();
    let slots = Arc::new(Semaphore::new(shared.limits.max_connections));
    let mut connections = JoinSet::new();
    loop {
        let slot = tokio::select! {
            _ = fired(&mut stop) => break,
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let accepted = tokio::select! {
            _ = fired(&mut stop) => break,
            accepted = listener.accept() => accepted,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                drop(slot);
                back_off(&e, &mut stop).await;
                continue;
            }
        };
        if let Err(e) = tcp.set_nodelay(true) {
            log::debug!("TCP_NODELAY on an accepted connection: {e}");
        }
        connections.spawn(crate::connection::serve(tcp, Arc::clone(&shared), signals.clone(), slot));
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    crate::shutdown::wind_down(&mut connections, shared.limits.shutdown_grace, &switches).await;
}

/// After a failed accept: a connection that vanished before it was accepted
/// is skipped at once; anything else (EMFILE, ENFILE, ENOBUFS, ENOMEM) waits
/// [`ACCEPT_BACKOFF`], so the loop does not spin while it lasts.
async fn back_off(error: &io::Error, stop: &mut watch::Receiver<bool>) {
    use io::ErrorKind::*;
    if matches!(error.kind(), ConnectionAborted | ConnectionReset | Interrupted | WouldBlock) {
        return;
    }
    log::warn!("accepting a connection failed ({error}); retrying in {ACCEPT_BACKOFF:?}");
    tokio::select! {
        _ = fired(stop) => {}
        _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
    }
}

/// A server's background task: a stop switch that every part of the server
/// can watch, and the result of serving once it ended.
pub struct Serving {
    switches: Arc<Switches>,
    finished: watch::Receiver<Option<Result<()>>>,
    finished_tx: Option<watch::Sender<Option<Result<()>>>>,
}

impl Serving {
    /// A stop switch, not yet serving.
    pub fn new() -> Self {
        let (finished_tx, finished) = watch::channel(None);
        Self { switches: Arc::new(Switches::new()), finished, finished_tx: Some(finished_tx) }
    }

    /// A receiver that turns true when the server is asked to stop.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.switches.signals().stop
    }

    /// A receiver that turns true when the shutdown grace is over: calls
    /// still in flight are cancelled (they answer UNAVAILABLE).
    pub fn cancelling(&self) -> watch::Receiver<bool> {
        self.switches.signals().cancel
    }

    /// Serves `service` on `listener` as `listen` says, in the background
    /// until stopped; then winds down (calls in flight get the shutdown
    /// grace, then are cancelled: [`crate::shutdown`]). Called once.
    pub fn run<S>(&mut self, service: S, listener: TcpListener, listen: Listen)
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let finished_tx = self.finished_tx.take().expect("Serving::run is called once");
        let executor = StreamExecutor::new(&self.switches.signals());
        let http = crate::connection::http2_builder(&listen.limits, executor);
        let shared = Arc::new(Shared {
            service,
            tls: listen.tls,
            limits: listen.limits,
            rules: listen.rules,
            http,
            metrics: listen.metrics,
        });
        let switches = Arc::clone(&self.switches);
        tokio::spawn(async move {
            accept_loop(listener, shared, switches).await;
            let _ = finished_tx.send(Some(Ok(())));
        });
    }

    /// Asks the server to stop. Idempotent.
    pub fn stop(&self) {
        self.switches.stop();
    }

    /// Waits until serving ended, with its result.
    pub async fn wait_finished(&self) -> Result<()> {
        let mut finished = self.finished.clone();
        let done = finished
            .wait_for(Option::is_some)
            .await
            .map_err(|_| Error::new(ofl_code::Internal, "server task vanished"))?;
        done.clone().expect("checked by wait_for")
    }

    /// Stops and waits until the server wound down (within the shutdown
    /// grace plus about half a second).
    pub async fn shutdown(&self) -> Result<()> {
        self.stop();
        self.wait_finished().await
    }
}

impl Default for Serving {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.stop();
    }
}
