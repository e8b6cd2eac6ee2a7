//! OpenFL 1.6's `AggregatorGRPCServer`: the gRPC service a collaborator calls
//! and the server's life cycle (`start`, `serve` until all quit jobs are
//! sent, `stop`).
//!
//! Differences from OpenFL 1.6, on purpose:
//! - header checks answer PERMISSION_DENIED / INVALID_ARGUMENT naming the
//!   field (OpenFL: UNKNOWN);
//! - the random delay before UNAUTHENTICATED is an async sleep that holds no
//!   worker, and its maximum is configurable (OpenFL: up to 5 s in one of
//!   `cpu_count()` handler threads);
//! - one-way TLS works: a client that presents a certificate is checked by its
//!   CN as under mTLS; one that presents none is identified by its header
//!   sender only, as without TLS (OpenFL 1.6 crashes there);
//! - streamed uploads are reassembled in linear time and capped;
//! - a GetAggregatedTensor waiting for a tensor holds no thread (the logic
//!   answers [`TensorPoll::Pending`] and the server awaits a change), and
//!   logic that may block runs on the blocking pool within per-collaborator
//!   bounds (see [`super::blocking`]), so one collaborator cannot starve the
//!   others (OpenFL 1.6 parks a waiting call in one of its few handler
//!   threads).
//! - streamed uploads are reassembled in linear time and capped: in size,
//!   in tensors per upload, and across the server by a memory budget for
//!   uploads in flight (RESOURCE_EXHAUSTED);
//! - connections are bounded ([`ServerLimits`]): streams per connection,
//!   connections, handshake and idle time, unary request size (OpenFL: none).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use prost::Message;
use rand::Rng;
use tokio::sync::{watch, Notify};
use tonic::{Request, Response, Status, Streaming};

use super::blocking::BlockingCalls;
use super::checks::{check_request, response_header};
use super::logic::{AggregatorLogic, LogicCall, TaskResults as LogicTaskResults, TensorPoll, TensorRequest};
use crate::proto::NamedTensor;
use crate::error::{size_limit_as_resource_exhausted, Result};
use crate::proto::aggregator::aggregator_server::{Aggregator, AggregatorServer as AggregatorGrpc};
use crate::proto::aggregator::*;
use crate::proto::DataStream;
use crate::method_route::MethodRoute;
use crate::stream::{client_stream_finished, Reassembly, DEFAULT_MAX_MESSAGE_SIZE};
use crate::limits::ServerLimits;
use crate::metrics::{refused, Recorder, Refusal, Role, TransportMetrics};
use crate::listen::{Listen, Serving};
use crate::request_limits::UploadBudget;
use crate::tls::{PeerCertificate, TlsConfig};

/// How an aggregator server listens and checks callers.
#[derive(Clone, Debug)]
pub struct AggregatorServerOptions {
    /// Address to listen on; `[::]` (the default) is IPv4 and IPv6.
    pub host: String,
    /// Port; 0 picks a free one (see [`AggregatorServer::local_addr`]).
    pub port: u16,
    /// TLS settings; `None` serves without TLS (the header sender is then
    /// trusted, and a warning says so at start).
    pub tls: Option<TlsConfig>,
    /// Upper bound of the random delay before an UNAUTHENTICATED answer
    /// (OpenFL: 5 s). Zero answers at once.
    pub auth_failure_max_delay: Duration,
    /// Largest message accepted or sent, streamed uploads included (1 GiB).
    pub max_message_size: usize,
    /// How often `serve` asks the logic whether all quit jobs were sent
    /// (also asked right after each GetTasks that told a collaborator to quit).
    pub quit_poll_interval: Duration,
    /// Connection and request bounds (see [`ServerLimits`] for defaults).
    pub limits: ServerLimits,
    /// Bytes of SendLocalTaskResults uploads held in memory at once across
    /// the server; an upload that would go over gets RESOURCE_EXHAUSTED.
    /// Default 2 GiB: one upload of the maximum message size (1 GiB) plus as
    /// much again for concurrent ones. (The reassembly buffer may hold up to
    /// twice what was received while it grows.)
    pub upload_memory_budget: usize,
    /// Most tensors in one uploaded TaskResults; more get RESOURCE_EXHAUSTED
    /// before they are decoded. Default 100 000 (a large model has a few
    /// thousand tensors; a million tiny ones would cost about 200 MB decoded).
    pub max_tensors_per_upload: usize,
}

/// Default of [`AggregatorServerOptions::upload_memory_budget`].
pub const DEFAULT_UPLOAD_MEMORY_BUDGET: usize = 2 << 30;
/// Default of [`AggregatorServerOptions::max_tensors_per_upload`].
pub const DEFAULT_MAX_TENSORS_PER_UPLOAD: usize = 100_000;

/// The streamed upload among the aggregator's methods.
const UPLOADS: &[&str] = &["/openfl.aggregator.Aggregator/SendLocalTaskResults"];

impl Default for AggregatorServerOptions {
    fn default() -> Self {
        Self {
            host: "[::]".into(),
            port: 0,
            tls: None,
            auth_failure_max_delay: Duration::from_secs(5),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            quit_poll_interval: Duration::from_secs(1),
            limits: ServerLimits::default(),
            upload_memory_budget: DEFAULT_UPLOAD_MEMORY_BUDGET,
            max_tensors_per_upload: DEFAULT_MAX_TENSORS_PER_UPLOAD,
        }
    }
}

/// The gRPC service: checks, then the logic.
pub(super) struct Service {
    logic: Arc<dyn AggregatorLogic>,
    tls: bool,
    auth_failure_max_delay: Duration,
    max_message_size: usize,
    max_tensors_per_upload: usize,
    quit_sent: Arc<Notify>,
    blocking: BlockingCalls,
    /// Turns true at the end of a stop's grace: no logic call starts after.
    cancelled: watch::Receiver<bool>,
}

impl Service {
    /// OpenFL's `validate_collaborator`: with TLS and a client certificate,
    /// its CN and the header sender must pass `valid_collaborator_cn_and_id`.
    async fn validate_collaborator(
        &self,
        peer_certs: Option<PeerCertificate>,
        sender: &str,
    ) -> Result<(), Status> {
        let Some(certificate) = peer_certs.filter(|_| self.tls) else {
            return Ok(());
        };
        let cn = certificate.cn_or_empty();
        if self.logic.valid_collaborator_cn_and_id(cn, sender) {
            return Ok(());
        }
        self.auth_failure_delay().await;
        let cause = self.logic.refusal_cause(cn, sender);
        let kind = if self.logic.federation().is_authorized(sender) { Refusal::CnMismatch } else { Refusal::Unauthorized };
        Err(refused(
            kind,
            Status::unauthenticated(format!(
                "Invalid collaborator. CN: |{cn}| collaborator_common_name: |{sender}|: {cause}"
            )),
        ))
    }

    /// Before an upload is read: a client certificate whose CN cannot be
    /// valid for any sender is refused at once (after the same delay).
    async fn precheck_certificate(&self, peer_certs: &Option<PeerCertificate>) -> Result<(), Status> {
        let Some(certificate) = peer_certs.as_ref().filter(|_| self.tls) else {
            return Ok(());
        };
        let cn = certificate.cn_or_empty();
        let check_cn = cn.to_owned();
        let allowed = self
            .call_logic(LogicCall::CertificateMaySpeak, None, move |l| Ok(l.certificate_may_speak(&check_cn)))
            .await
            .unwrap_or(false);
        if allowed {
            return Ok(());
        }
        self.auth_failure_delay().await;
        let federation = self.logic.federation();
        let (kind, cause) = if federation.single_col_cert_common_name.is_empty() {
            (Refusal::Unauthorized, federation.not_authorized(cn))
        } else {
            let shared = &federation.single_col_cert_common_name;
            (Refusal::CnMismatch, format!("it is not the shared collaborator certificate CN |{shared}|"))
        };
        let status = Status::unauthenticated(format!("Invalid collaborator certificate. CN: |{cn}|: {cause}"));
        Err(refused(kind, status))
    }

    /// A random delay that blocks no worker: honest peers never wait on it.
    async fn auth_failure_delay(&self) {
        let max = self.auth_failure_max_delay;
        if !max.is_zero() {
            let delay = max.mul_f64(rand::thread_rng().gen::<f64>());
            tokio::time::sleep(delay).await;
        }
    }

    async fn authorize(
        &self,
        peer_certs: Option<PeerCertificate>,
        header: Option<&MessageHeader>,
    ) -> Result<MessageHeader, Status> {
        let header = header.cloned().unwrap_or_default();
        self.validate_collaborator(peer_certs, &header.sender).await?;
        check_request(self.logic.federation(), &header).map_err(|e| {
            let kind = if e.code() == crate::ofl_code::PermissionDenied { Refusal::Unauthorized } else { Refusal::BadHeader };
            refused(kind, e.into())
        })?;
        Ok(header)
    }

    /// Runs a logic call: directly when the logic says `call` never blocks,
    /// otherwise on the blocking pool once `collaborator` (a checked name, or
    /// `None` before the checks) has a turn.
    async fn call_logic<T, F>(&self, call: LogicCall, collaborator: Option<&str>, f: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&dyn AggregatorLogic) -> Result<T> + Send + 'static,
    {
        call_logic(&self.logic, &self.blocking, &self.cancelled, call, collaborator, f).await
    }

    /// GetAggregatedTensor's logic call: polls until the tensor is there or
    /// the logic gives up, awaiting its change signal in between.
    async fn fetch_tensor(&self, sender: &str, request: TensorRequest) -> Result<NamedTensor, Status> {
        let started = Instant::now();
        let request = Arc::new(request);
        loop {
            let (who, asked) = (sender.to_string(), Arc::clone(&request));
            let poll = self
                .call_logic(LogicCall::GetAggregatedTensor, Some(sender), move |l| {
                    l.poll_aggregated_tensor(&who, &asked, started)
                })
                .await?;
            let mut wait = match poll {
                TensorPoll::Ready(tensor) => return Ok(tensor),
                TensorPoll::Pending(wait) => wait,
            };
            let deadline = tokio::time::Instant::from_std(wait.deadline);
            tokio::select! {
                changed = wait.changed.changed() => {
                    if changed.is_err() {
                        // No more change signals: poll once more at the deadline.
                        tokio::time::sleep_until(deadline).await;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// GetAggregatedTensor, shared by tonic's handler and the zero-copy
    /// route (`super::tensor_route`).
    pub(super) async fn aggregated_tensor(
        &self,
        peer_certs: Option<PeerCertificate>,
        request: GetAggregatedTensorRequest,
    ) -> Result<GetAggregatedTensorResponse, Status> {
        let header = self.authorize(peer_certs, request.header.as_ref()).await?;
        let round_number = request.round_number;
        let tensor_request = TensorRequest {
            tensor_name: request.tensor_name,
            round_number,
            report: request.report,
            tags: request.tags,
            require_lossless: request.require_lossless,
        };
        let tensor = self.fetch_tensor(&header.sender, tensor_request).await?;
        let response = GetAggregatedTensorResponse {
            header: self.header_for(&header.sender),
            round_number,
            tensor: Some(tensor),
        };
        if response.encoded_len() > self.max_message_size {
            return Err(Status::resource_exhausted(format!(
                "tensor {:?} is {} bytes encoded, more than the maximum message size of {} bytes",
                response.tensor.as_ref().map_or("", |t| t.name.as_str()),
                response.encoded_len(),
                self.max_message_size
            )));
        }
        Ok(response)
    }

    /// The largest message this server accepts or sends.
    pub(super) fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    fn header_for(&self, collaborator: &str) -> Option<MessageHeader> {
        Some(response_header(self.logic.federation(), collaborator))
    }
}

#[tonic::async_trait]
impl Aggregator for Service {
    async fn get_tasks(
        &self,
        request: Request<GetTasksRequest>,
    ) -> Result<Response<GetTasksResponse>, Status> {
        let peer_certs = crate::tls::peer_certificate(request.extensions());
        let header = self.authorize(peer_certs, request.get_ref().header.as_ref()).await?;
        let sender = header.sender.clone();
        let reply = self.call_logic(LogicCall::GetTasks, Some(&header.sender), move |l| l.get_tasks(&sender)).await?;
        if reply.quit {
            self.quit_sent.notify_one();
        }
        Ok(Response::new(GetTasksResponse {
            header: self.header_for(&header.sender),
            round_number: reply.round_number,
            tasks: reply.tasks,
            sleep_time: reply.sleep_time,
            quit: reply.quit,
        }))
    }

    async fn get_aggregated_tensor(
        &self,
        request: Request<GetAggregatedTensorRequest>,
    ) -> Result<Response<GetAggregatedTensorResponse>, Status> {
        let peer_certs = crate::tls::peer_certificate(request.extensions());
        self.aggregated_tensor(peer_certs, request.into_inner()).await.map(Response::new)
    }

    /// Never reached: `super::upload_route` answers this method from the
    /// HTTP/2 body. Kept equivalent through [`Service::task_results`].
    async fn send_local_task_results(
        &self,
        request: Request<Streaming<DataStream>>,
    ) -> Result<Response<SendLocalTaskResultsResponse>, Status> {
        let peer_certs = crate::tls::peer_certificate(request.extensions());
        let stream = request.into_inner();
        let response = self.task_results(peer_certs, |reassembly| reassemble(stream, reassembly)).await?;
        Ok(Response::new(response))
    }
}

/// Reads a tonic request stream into `reassembly`.
async fn reassemble(mut stream: Streaming<DataStream>, mut reassembly: Reassembly) -> Result<Reassembly, Status> {
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(size_limit_as_resource_exhausted)?;
        reassembly.push(chunk.size, &chunk.npbytes)?;
    }
    Ok(reassembly)
}

impl Service {
    /// SendLocalTaskResults: the certificate precheck, then `receive` reads
    /// the stream into a reassembly, then the checks and the logic.
    pub(super) async fn task_results<F, Fut>(
        &self,
        peer_certs: Option<PeerCertificate>,
        receive: F,
    ) -> Result<SendLocalTaskResultsResponse, Status>
    where
        F: FnOnce(Reassembly) -> Fut,
        Fut: std::future::Future<Output = Result<Reassembly, Status>>,
    {
        self.precheck_certificate(&peer_certs).await?;
        let reassembly = receive(Reassembly::new(self.max_message_size)).await.map_err(over_limit)?;
        client_stream_finished().await;
        super::tensor_count::check_count(reassembly.tensor_count(), self.max_tensors_per_upload).map_err(over_limit)?;
        let mut results = TaskResults::decode(reassembly.finish().map_err(over_limit)?).map_err(|e| {
            Status::invalid_argument(format!("the stream does not decode as TaskResults: {e}"))
        })?;
        crate::aligned::align_tensors(&mut results.tensors, "SendLocalTaskResults")?;
        let header = self.authorize(peer_certs, results.header.as_ref()).await?;
        let sender = header.sender.clone();
        let parsed = LogicTaskResults {
            round_number: results.round_number,
            task_name: results.task_name,
            data_size: results.data_size,
            tensors: results.tensors,
        };
        self.call_logic(LogicCall::SendLocalTaskResults, Some(&header.sender), move |l| {
            l.send_local_task_results(&sender, parsed)
        })
        .await?;
        Ok(SendLocalTaskResultsResponse { header: self.header_for(&header.sender) })
    }
}

/// An upload refused by a limit is marked so (RESOURCE_EXHAUSTED); other
/// reassembly errors (a malformed stream) stay as they are.
fn over_limit(error: impl Into<Status>) -> Status {
    let status = error.into();
    if status.code() == tonic::Code::ResourceExhausted {
        refused(Refusal::Limits, status)
    } else {
        status
    }
}

/// Runs `f` on `logic`: on the calling task when the logic says `call` never
/// blocks, otherwise on the blocking pool within `blocking`'s bounds. Once
/// `cancelled` (a stop's grace is over) it no longer starts: UNAVAILABLE. A
/// call already running on the blocking pool when its caller is dropped
/// runs to its end; its answer is dropped.
async fn call_logic<T, F>(
    logic: &Arc<dyn AggregatorLogic>,
    blocking: &BlockingCalls,
    cancelled: &watch::Receiver<bool>,
    call: LogicCall,
    collaborator: Option<&str>,
    f: F,
) -> Result<T, Status>
where
    T: Send + 'static,
    F: FnOnce(&dyn AggregatorLogic) -> Result<T> + Send + 'static,
{
    if !logic.may_block(call) {
        return f(logic.as_ref()).map_err(Status::from);
    }
    let _turn = blocking.acquire(call, collaborator).await;
    let logic = Arc::clone(logic);
    let cancelled = cancelled.clone();
    let run = move || {
        if *cancelled.borrow() {
            return Err(crate::Error::new(
                crate::error::ofl_code::Unavailable,
                "the server is shutting down: the call was cancelled at the end of its shutdown grace",
            ));
        }
        f(logic.as_ref())
    };
    match tokio::task::spawn_blocking(run).await {
        Ok(result) => result.map_err(Status::from),
        Err(e) => Err(Status::internal(format!("aggregator logic failed: {e}"))),
    }
}

/// A running aggregator server.
pub struct AggregatorServer {
    local_addr: SocketAddr,
    logic: Arc<dyn AggregatorLogic>,
    service: Arc<Service>,
    serving: Serving,
    quit_sent: Arc<Notify>,
    quit_poll_interval: Duration,
    metrics: Arc<Recorder>,
}

impl AggregatorServer {
    /// Binds, then serves in the background on the current Tokio runtime.
    /// Certificates are read and checked here: a bad one fails the start.
    pub async fn start(config: AggregatorServerOptions, logic: Arc<dyn AggregatorLogic>) -> Result<Self> {
        let mut listen = Listen::new(config.tls.as_ref(), &config.limits, config.max_message_size, UPLOADS)?;
        if config.upload_memory_budget == 0 {
            return Err(crate::Error::invalid_argument("upload_memory_budget must be positive"));
        }
        if config.max_tensors_per_upload == 0 {
            return Err(crate::Error::invalid_argument("max_tensors_per_upload must be positive"));
        }
        listen.set_upload_budget(UploadBudget::new(config.upload_memory_budget));
        let metrics = Recorder::new(Role::AggregatorServer, crate::metrics::AGGREGATOR_RPCS);
        listen.set_metrics(&metrics);
        match &config.tls {
            None => log::warn!(
                "aggregator server without TLS: collaborators are not authenticated and any \
                 peer can claim to be any collaborator by its header sender"
            ),
            Some(tls) if tls.disable_client_auth => log::warn!(
                "aggregator server with client authentication disabled: collaborators without \
                 a certificate are identified by their header sender only"
            ),
            Some(_) => {}
        }
        if logic.federation().authorized_collaborators.is_empty() {
            log::warn!(
                "aggregator server authorizes no collaborator: every call will be refused \
                 (add collaborators: ofl_aggregator_server_options_add_collaborator, \
                 Federation::authorized_collaborators)"
            );
        }
        let listener = crate::listen::bind(&config.host, config.port).await?;
        let local_addr = crate::listen::local_addr(&listener)?;
        let quit_sent = Arc::new(Notify::new());
        let mut serving = Serving::new();
        let service = Service {
            logic: Arc::clone(&logic),
            tls: config.tls.is_some(),
            auth_failure_max_delay: config.auth_failure_max_delay,
            max_message_size: config.max_message_size,
            max_tensors_per_upload: config.max_tensors_per_upload,
            quit_sent: Arc::clone(&quit_sent),
            blocking: BlockingCalls::default(),
            cancelled: serving.cancelling(),
        };
        let service = Arc::new(service);
        let grpc = AggregatorGrpc::from_arc(Arc::clone(&service))
            .max_decoding_message_size(config.max_message_size)
            .max_encoding_message_size(config.max_message_size);
        let grpc = MethodRoute::new(grpc, super::tensor_route::ZeroCopyTensors(Arc::clone(&service)));
        let grpc = MethodRoute::new(grpc, super::upload_route::StreamedUploads(Arc::clone(&service)));
        serving.run(grpc, listener, listen);
        log::info!("aggregator server listening on {local_addr}");
        Ok(Self {
            local_addr,
            logic,
            service,
            serving,
            quit_sent,
            quit_poll_interval: config.quit_poll_interval,
            metrics,
        })
    }

    /// The address the server listens on (with the chosen port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until the logic reports that all quit jobs were sent (asked
    /// every [`quit_poll_interval`](AggregatorServerOptions::quit_poll_interval)),
    /// or until [`stop`](Self::stop); then shuts down: calls in flight get
    /// [`ServerLimits::shutdown_grace`] to finish, then are cancelled
    /// (UNAVAILABLE). Returns within that grace plus about half a second of
    /// the stop, whatever the peers do.
    pub async fn serve(&self) -> Result<()> {
        let mut stopped = self.serving.stopping();
        loop {
            if *stopped.borrow() {
                break;
            }
            // A quit check stuck in host code does not hold the stop back.
            let all_sent = tokio::select! {
                all_sent = self.all_quit_jobs_sent() => all_sent,
                _ = stopped.wait_for(|s| *s) => break,
            };
            if all_sent {
                break;
            }
            tokio::select! {
                _ = stopped.changed() => {}
                _ = self.quit_sent.notified() => {}
                _ = tokio::time::sleep(self.quit_poll_interval) => {}
            }
        }
        self.serving.shutdown().await
    }

    async fn all_quit_jobs_sent(&self) -> bool {
        let blocking = &self.service.blocking;
        let cancelled = &self.service.cancelled;
        call_logic(&self.logic, blocking, cancelled, LogicCall::AllQuitJobsSent, None, |l| Ok(l.all_quit_jobs_sent()))
            .await
            .unwrap_or(false)
    }

    /// A snapshot of the server's transport metrics (see [`crate::metrics`]).
    pub fn metrics(&self) -> TransportMetrics {
        self.metrics.snapshot()
    }

    /// Asks the server to stop; returns at once, and `serve` returns once
    /// the server wound down. Idempotent.
    pub fn stop(&self) {
        self.serving.stop();
    }

    /// Stops and waits until the server wound down: calls in flight get
    /// [`ServerLimits::shutdown_grace`], then are cancelled.
    pub async fn shutdown(&self) -> Result<()> {
        self.serving.shutdown().await
    }
}
