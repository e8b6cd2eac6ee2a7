//! OpenFL 1.6's `DirectorGRPCServer` with its built-in `Director`: the 14
//! RPCs envoys and frontends call, the experiment execution loop, hooks for
//! the host ([`DirectorHooks`]) and the handle the host reports progress
//! through ([`DirectorHandle`]).
//!
//! The caller of an RPC is OpenFL's `get_caller`: with TLS, the Common Name
//! of the client certificate; without TLS (or, under one-way TLS, a client
//! that presents no certificate), the gRPC metadata `client_id`, by default
//! `__default__` (envoys send none). Frontends see only the experiments they
//! submitted.
//!
//! Where the host runs the aggregator: OpenFL's director builds and runs an
//! aggregator from the experiment's plan. Here the host does: the
//! [`DirectorHooks::start_experiment`] hook tells it an experiment starts
//! (with its collaborators, archive and initial model), and the host reports
//! metrics, models and the end through [`DirectorHandle`].
//!
//! As OpenFL 1.6: GetExperimentStatus for an experiment the caller does not
//! have (unknown, or another caller's) answers an empty status, and
//! RemoveExperimentData of one answers `acknowledgement: true` and removes
//! nothing — neither tells a caller whether another's experiment exists.
//!
//! Differences from OpenFL 1.6, on purpose:
//! - WaitExperiment, GetMetricStream and the execution loop wake at once on a
//!   change (OpenFL polls every 10 s / 1 s); shutting down ends long polls
//!   with UNAVAILABLE;
//! - precise codes where OpenFL answers UNKNOWN or silently: an unknown or
//!   foreign experiment is NOT_FOUND in GetExperimentDescription,
//!   GetTrainedModel, GetMetricStream and SetExperimentFailed (OpenFL: empty
//!   answers, or UNKNOWN KeyError/AttributeError before an aggregator
//!   exists); bad chunks (a `size` field that differs from the bytes: OpenFL
//!   raises, UNKNOWN), bad names, an empty archive or no collaborators are
//!   INVALID_ARGUMENT; a name in use is ALREADY_EXISTS (OpenFL overwrites
//!   it); removing a running experiment is FAILED_PRECONDITION (OpenFL
//!   removes it from under its aggregator);
//! - bounds OpenFL does not have: at most
//!   [`MAX_COLLABORATORS`](super::state::MAX_COLLABORATORS) collaborator names
//!   per experiment (RESOURCE_EXHAUSTED beyond), each at most
//!   [`MAX_COLLABORATOR_NAME_LEN`](super::state::MAX_COLLABORATOR_NAME_LEN)
//!   bytes (INVALID_ARGUMENT), checked on the first message before any
//!   archive byte is stored; archive downloads hold little memory each and
//!   share a budget ([`DirectorConfig::max_download_buffer`], see
//!   `download.rs`);
//! - GetEnvoys works before any WaitExperiment (OpenFL: KeyError) and fills
//!   `experiment_name`;
//! - envoy RPCs check the envoy: under mTLS the certificate CN must be the
//!   envoy name it claims (`check_envoy_identity`, on by default; OpenFL
//!   checks nothing, so anyone could download any archive) — except that a
//!   health check for an envoy that is not registered is NOT_FOUND whoever
//!   asks, as in OpenFL (its envoy then reports its shard again), and
//!   GetExperimentData serves only the collaborators of an experiment that is
//!   in progress;
//! - SetExperimentFailed: without a client certificate it is honoured only
//!   from the default caller, as OpenFL; with one, when its CN is the
//!   reporting envoy (OpenFL never honours it under TLS: the CN is never
//!   `__default__`); a foreign caller gets PERMISSION_DENIED (OpenFL: an
//!   empty answer);
//! - an archive is written to disk as it arrives (OpenFL too) and its total
//!   is capped (`max_archive_size`);
//! - one metric stream per experiment: opening a new GetMetricStream ends the
//!   previous one (OpenFL lets concurrent streams split the queue), so a
//!   stream its client just cancelled cannot take metrics meant for the next.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

use super::download::{Archive, DownloadBudget, Downloads, StreamedArchives};
use super::state::{
    default_caller, unique_collaborators, DirectorState, EnvoyStatus, ExperimentDetails, ExperimentFailure, ExperimentSnapshot,
    ExperimentStatus, Metric, MetricPoll, StateConfig,
};
use crate::limits::ServerLimits;
use crate::listen::{Listen, Serving};
use crate::error::Result;
use crate::proto::director::director_server::{Director, DirectorServer as DirectorGrpc};
use crate::proto::director::get_trained_model_request::ModelType;
use crate::proto::director::*;
use crate::proto::ModelProto;
use crate::method_route::MethodRoute;
use crate::stream::{client_stream_finished, DEFAULT_MAX_MESSAGE_SIZE};
use crate::tls::{peer_common_name, TlsConfig};

/// What the host decides and hears about. Every method runs on a blocking
/// thread (it may take long: a human reviewing a plan) and may be called
/// from several threads; the defaults approve and do nothing.
pub trait DirectorHooks: Send + Sync + 'static {
    /// OpenFL's `review_plan_callback`: approve (true) or reject a submitted
    /// experiment before it starts. A rejected experiment's archive is deleted.
    fn review_experiment(&self, _experiment: &ExperimentDetails) -> bool {
        true
    }

    /// The experiment starts: run its aggregator for `experiment.collaborators`
    /// (the envoys receive the experiment when this returns). An error marks
    /// the experiment failed. Report progress and the end through the
    /// [`DirectorHandle`]; the next experiment starts once this one finished
    /// or failed.
    fn start_experiment(&self, _experiment: &ExperimentDetails) -> Result<()> {
        Ok(())
    }

    /// An envoy reported the experiment failed (SetExperimentFailed): stop
    /// its aggregator.
    fn experiment_failed(&self, _experiment: &ExperimentDetails, _failure: &ExperimentFailure) {}
}

/// Hooks that approve everything and do nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct ApproveAll;

impl DirectorHooks for ApproveAll {}

/// How a director server listens and behaves.
#[derive(Clone, Debug)]
pub struct DirectorConfig {
    /// Address to listen on; `[::]` (the default) is IPv4 and IPv6.
    pub host: String,
    /// Port; 0 picks a free one (see [`DirectorServer::local_addr`]). OpenFL: 50051.
    pub port: u16,
    /// TLS settings; `None` serves without TLS (callers are then named by
    /// their `client_id` metadata, which anyone can set).
    pub tls: Option<TlsConfig>,
    /// The sample shape every shard must report (UpdateShardInfo).
    pub sample_shape: Vec<String>,
    /// The target shape every shard must report.
    pub target_shape: Vec<String>,
    /// Health-check period told to envoys; an envoy is online for two
    /// periods after its last health check. OpenFL envoys read whole seconds.
    pub envoy_health_check_period: Duration,
    /// Where archives are stored (created if missing). Default: a fresh
    /// directory under the system temporary directory (OpenFL: the working
    /// directory); set it.
    pub archive_dir: PathBuf,
    /// Largest archive accepted (SetNewExperiment), in bytes.
    pub max_archive_size: u64,
    /// Largest gRPC message received or sent (OpenFL: 1 GiB).
    pub max_message_size: usize,
    /// Metrics kept per experiment until streamed (the oldest are dropped).
    pub max_queued_metrics: usize,
    /// Under mTLS, envoy RPCs must come from a certificate whose CN is the
    /// envoy name they carry.
    pub check_envoy_identity: bool,
    /// Bytes of archive data read for downloads (GetExperimentData) and not
    /// yet written to a connection, across all downloads (at least 64 KiB).
    /// Over it downloads wait. A download whose client stops reading holds
    /// about 128 KiB of it (up to about 530 KiB when its client advertised
    /// a large window but leaves its socket full).
    pub max_download_buffer: usize,
    /// Connection and request bounds (see [`ServerLimits`] for defaults).
    pub limits: ServerLimits,
}

/// The streamed upload among the director's methods (archives go to disk as
/// they arrive, so no memory budget applies; each message is capped by
/// `max_message_size`).
const UPLOADS: &[&str] = &["/openfl.director.Director/SetNewExperiment"];

impl Default for DirectorConfig {
    fn default() -> Self {
        let state = StateConfig::default();
        Self {
            host: "[::]".into(),
            port: 0,
            tls: None,
            sample_shape: state.sample_shape,
            target_shape: state.target_shape,
            envoy_health_check_period: state.envoy_health_check_period,
            archive_dir: state.archive_dir,
            max_archive_size: state.max_archive_size,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_queued_metrics: state.max_queued_metrics,
            check_envoy_identity: true,
            max_download_buffer: 64 << 20,
            limits: ServerLimits::default(),
        }
    }
}

impl DirectorConfig {
    fn state_config(&self) -> StateConfig {
        StateConfig {
            archive_dir: self.archive_dir.clone(),
            sample_shape: self.sample_shape.clone(),
            target_shape: self.target_shape.clone(),
            envoy_health_check_period: self.envoy_health_check_period,
            max_archive_size: self.max_archive_size,
            max_queued_metrics: self.max_queued_metrics,
        }
    }
}

/// Who called: a certificate CN, or a `client_id` (default `__default__`).
#[derive(Debug)]
struct Caller {
    name: String,
    /// Named by a client certificate (not by metadata).
    certified: bool,
}

/// Deletes an upload that did not become an experiment.
struct UploadGuard(Option<PathBuf>);

impl UploadGuard {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for UploadGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

pub(super) fn shutting_down() -> Status {
    Status::unavailable("the director is shutting down")
}

/// The gRPC service.
pub(super) struct Service {
    state: Arc<DirectorState>,
    hooks: Arc<dyn DirectorHooks>,
    tls: bool,
    check_envoy_identity: bool,
    stopping: watch::Receiver<bool>,
}

impl Service {
    fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        if self.tls {
            if let Some(certs) = crate::tls::peer_certs(request.extensions()) {
                let name = peer_common_name(&certs)
                    .ok_or_else(|| Status::unauthenticated("the client certificate has no Common Name"))?;
                return Ok(Caller { name, certified: true });
            }
        }
        let name = match request.metadata().get("client_id") {
            None => default_caller().to_string(),
            Some(value) => value
                .to_str()
                .map_err(|_| Status::invalid_argument("the client_id metadata is not printable ASCII"))?
                .to_string(),
        };
        let name = if name.is_empty() { default_caller().to_string() } else { name };
        Ok(Caller { name, certified: false })
    }

    /// Under mTLS an envoy RPC must come from the envoy it names.
    fn check_envoy<T>(&self, request: &Request<T>, envoy: &str) -> Result<Caller, Status> {
        if envoy.is_empty() {
            return Err(Status::invalid_argument("the envoy (collaborator) name is empty"));
        }
        let caller = self.caller(request)?;
        if caller.certified && self.check_envoy_identity && caller.name != envoy {
            return Err(Status::permission_denied(format!(
                "certificate CN {:?} may not act as envoy {envoy:?}",
                caller.name
            )));
        }
        Ok(caller)
    }

    fn stopped(&self) -> bool {
        *self.stopping.borrow()
    }

    /// GetExperimentData's checks: the envoy may download this archive now.
    /// The archive is then sent by the download route (`download.rs`).
    pub(super) async fn open_archive(&self, request: Request<GetExperimentDataRequest>) -> Result<Archive, Status> {
        let collaborator = request.get_ref().collaborator_name.clone();
        self.check_envoy(&request, &collaborator)?;
        let experiment = request.into_inner().experiment_name;
        let path = self.state.archive_for_envoy(&experiment, &collaborator)?;
        let unreadable = |e: std::io::Error| Status::not_found(format!("the archive of {experiment:?} cannot be read: {e}"));
        let file = tokio::fs::File::open(&path).await.map_err(unreadable)?;
        let len = file.metadata().await.map_err(unreadable)?.len();
        Ok(Archive { file, len, experiment, collaborator })
    }
}

async fn wait_stopping(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}

fn envoy_info(e: EnvoyStatus) -> EnvoyInfo {
    EnvoyInfo {
        shard_info: Some(e.shard_info),
        is_online: e.is_online,
        is_experiment_running: e.is_experiment_running,
        last_updated: Some(prost_types::Timestamp::from(e.last_updated)),
        valid_duration: prost_types::Duration::try_from(e.valid_duration).ok(),
        experiment_name: e.experiment_name.unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl Director for Service {
    async fn update_shard_info(
        &self,
        request: Request<UpdateShardInfoRequest>,
    ) -> Result<Response<UpdateShardInfoResponse>, Status> {
        let name = request
            .get_ref()
            .shard_info
            .as_ref()
            .and_then(|s| s.node_info.as_ref())
            .map(|n| n.name.clone())
            .unwrap_or_default();
        self.check_envoy(&request, &name)?;
        let shard_info = request.into_inner().shard_info.unwrap_or_default();
        let accepted = self.state.acknowledge_shard(shard_info)?;
        Ok(Response::new(UpdateShardInfoResponse { accepted }))
    }

    async fn wait_experiment(
        &self,
        request: Request<WaitExperimentRequest>,
    ) -> Result<Response<WaitExperimentResponse>, Status> {
        let envoy = request.get_ref().collaborator_name.clone();
        self.check_envoy(&request, &envoy)?;
        log::debug!("WaitExperiment from envoy {envoy}");
        let mut changes = self.state.subscribe();
        let mut stopping = self.stopping.clone();
        let mut first = true;
        loop {
            if self.stopped() {
                return Err(shutting_down());
            }
            if let Some(experiment_name) = self.state.poll_experiment(&envoy, first) {
                log::info!("experiment {experiment_name:?} handed to envoy {envoy}");
                return Ok(Response::new(WaitExperimentResponse { experiment_name }));
            }
            first = false;
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return Err(shutting_down()) },
                _ = wait_stopping(&mut stopping) => return Err(shutting_down()),
            }
        }
    }

    /// Served by the download route (`download.rs`), which takes this path
    /// before tonic's generated service sees it.
    async fn get_experiment_data(
        &self,
        _request: Request<GetExperimentDataRequest>,
    ) -> Result<Response<BoxStream<ExperimentData>>, Status> {
        Err(Status::internal("GetExperimentData is served by the download route"))
    }

    async fn update_envoy_status(
        &self,
        request: Request<UpdateEnvoyStatusRequest>,
    ) -> Result<Response<UpdateEnvoyStatusResponse>, Status> {
        let name = request.get_ref().name.clone();
        // An unknown envoy is NOT_FOUND before its identity is checked, as
        // OpenFL answers (its envoy client then reports its shard again).
        if !name.is_empty() && !self.state.envoy_registered(&name) {
            return Err(Status::not_found(format!("Unknown shard {name}")));
        }
        self.check_envoy(&request, &name)?;
        let request = request.into_inner();
        let period = self.state.update_envoy_status(&name, request.is_experiment_running, request.cuda_devices)?;
        Ok(Response::new(UpdateEnvoyStatusResponse {
            health_check_period: prost_types::Duration::try_from(period).ok(),
        }))
    }

    async fn set_experiment_failed(
        &self,
        request: Request<SetExperimentFailedRequest>,
    ) -> Result<Response<SetExperimentFailedResponse>, Status> {
        let collaborator = request.get_ref().collaborator_name.clone();
        let caller = self.check_envoy(&request, &collaborator)?;
        if !caller.certified && caller.name != default_caller() {
            return Err(Status::permission_denied(format!(
                "caller {:?} may not fail experiments: only envoys (no client_id) may",
                caller.name
            )));
        }
        let request = request.into_inner();
        let failure =
            ExperimentFailure { collaborator, error_code: request.error_code, description: request.error_description };
        if let Some((info, failure)) = self.state.envoy_failed(&request.experiment_name, failure)? {
            // Logged once the state accepted the report (a refused one is only an error reply).
            log::error!(
                "collaborator {} failed with error code {}: {}; stopping experiment {:?}",
                failure.collaborator,
                failure.error_code,
                failure.description,
                request.experiment_name
            );
            let hooks = Arc::clone(&self.hooks);
            tokio::task::spawn_blocking(move || hooks.experiment_failed(&info, &failure));
        }
        Ok(Response::new(SetExperimentFailedResponse {}))
    }

    async fn get_experiment_description(
        &self,
        request: Request<GetExperimentDescriptionRequest>,
    ) -> Result<Response<GetExperimentDescriptionResponse>, Status> {
        let caller = self.caller(&request)?;
        let experiment = self.state.experiment_description(&caller.name, &request.get_ref().name)?;
        Ok(Response::new(GetExperimentDescriptionResponse { experiment: Some(experiment) }))
    }

    async fn get_experiments_list(
        &self,
        request: Request<GetExperimentsListRequest>,
    ) -> Result<Response<GetExperimentsListResponse>, Status> {
        let caller = self.caller(&request)?;
        Ok(Response::new(GetExperimentsListResponse { experiments: self.state.experiments_list(&caller.name) }))
    }

    async fn set_new_experiment(
        &self,
        request: Request<Streaming<ExperimentInfo>>,
    ) -> Result<Response<SetNewExperimentResponse>, Status> {
        let caller = self.caller(&request)?;
        let mut stream = request.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty stream: no ExperimentInfo message"))?;
        let name = first.name.clone();
        let collaborators = first.collaborator_names.clone();
        self.state.check_new_name(&name)?;
        unique_collaborators(&name, &collaborators)?;
        let upload = self.state.upload_path();
        let mut guard = UploadGuard(Some(upload.clone()));
        let mut file = tokio::fs::File::create(&upload)
            .await
            .map_err(|e| Status::internal(format!("cannot create {}: {e}", upload.display())))?;
        let max = self.state.config().max_archive_size;
        let mut total = 0u64;
        let mut model: Option<ModelProto> = None;
        let mut next = Some(first);
        let mut index = 0usize;
        while let Some(message) = next {
            if !message.name.is_empty() && message.name != name {
                return Err(Status::invalid_argument(format!(
                    "chunk {index}: experiment name {:?} differs from {name:?}",
                    message.name
                )));
            }
            if !message.collaborator_names.is_empty() && message.collaborator_names != collaborators {
                return Err(Status::invalid_argument(format!("chunk {index}: collaborator_names changed")));
            }
            let data = message.experiment_data.unwrap_or_default();
            if data.size as usize != data.npbytes.len() {
                return Err(Status::invalid_argument(format!(
                    "chunk {index}: size field says {} bytes but npbytes holds {}",
                    data.size,
                    data.npbytes.len()
                )));
            }
            total += data.npbytes.len() as u64;
            if total > max {
                return Err(Status::resource_exhausted(format!(
                    "the archive of {name:?} exceeds the maximum archive size of {max} bytes"
                )));
            }
            file.write_all(&data.npbytes)
                .await
                .map_err(|e| Status::internal(format!("writing {}: {e}", upload.display())))?;
            if model.is_none() {
                model = message.model_proto;
            }
            index += 1;
            next = stream.message().await?;
        }
        client_stream_finished().await;
        file.flush().await.map_err(|e| Status::internal(format!("writing {}: {e}", upload.display())))?;
        drop(file);
        if total == 0 {
            return Err(Status::invalid_argument(format!(
                "empty archive: {index} chunk(s) of experiment {name:?} carried no data"
            )));
        }
        self.state.register_experiment(&name, &caller.name, &collaborators, &upload, total, model)?;
        guard.disarm();
        Ok(Response::new(SetNewExperimentResponse { accepted: true }))
    }

    async fn get_experiment_status(
        &self,
        request: Request<GetExperimentStatusRequest>,
    ) -> Result<Response<GetExperimentStatusResponse>, Status> {
        let caller = self.caller(&request)?;
        // None: not the caller's (or unknown): OpenFL's empty status.
        let status = self.state.experiment_status(&caller.name, &request.get_ref().experiment_name);
        let experiment_status = status.map(|s| s.as_str().to_string()).unwrap_or_default();
        Ok(Response::new(GetExperimentStatusResponse { experiment_status }))
    }

    async fn get_dataset_info(
        &self,
        _request: Request<GetDatasetInfoRequest>,
    ) -> Result<Response<GetDatasetInfoResponse>, Status> {
        let (sample_shape, target_shape) = self.state.dataset_info();
        let shard_info = ShardInfo { sample_shape, target_shape, ..Default::default() };
        Ok(Response::new(GetDatasetInfoResponse { shard_info: Some(shard_info) }))
    }

    async fn get_trained_model(
        &self,
        request: Request<GetTrainedModelRequest>,
    ) -> Result<Response<TrainedModelResponse>, Status> {
        let caller = self.caller(&request)?;
        let request = request.into_inner();
        let best = match ModelType::try_from(request.model_type) {
            Ok(ModelType::BestModel) => true,
            Ok(ModelType::LastModel) => false,
            Err(_) => return Err(Status::invalid_argument(format!("unknown model_type {}", request.model_type))),
        };
        let model_proto = self.state.trained_model(&caller.name, &request.experiment_name, best)?;
        Ok(Response::new(TrainedModelResponse { model_proto }))
    }

    async fn get_metric_stream(
        &self,
        request: Request<GetMetricStreamRequest>,
    ) -> Result<Response<BoxStream<GetMetricStreamResponse>>, Status> {
        let caller = self.caller(&request)?;
        let name = request.into_inner().experiment_name;
        let generation = self.state.open_metric_stream(&caller.name, &name)?;
        // Capacity 1: a metric leaves the queue only when the stream can take it.
        let (tx, rx) = mpsc::channel::<Result<GetMetricStreamResponse, Status>>(1);
        let state = Arc::clone(&self.state);
        let mut stopping = self.stopping.clone();
        tokio::spawn(async move {
            let mut changes = state.subscribe();
            loop {
                if *stopping.borrow() {
                    let _ = tx.send(Err(shutting_down())).await;
                    return;
                }
                let permit = tokio::select! {
                    permit = tx.reserve() => match permit { Ok(p) => p, Err(_) => return },
                    _ = wait_stopping(&mut stopping) => continue,
                };
                match state.poll_metric(&name, generation) {
                    MetricPoll::Metric(m) => permit.send(Ok(GetMetricStreamResponse {
                        metric_origin: m.origin,
                        task_name: m.task_name,
                        metric_name: m.metric_name,
                        metric_value: m.value,
                        round: m.round,
                    })),
                    MetricPoll::End => return,
                    MetricPoll::Wait => {
                        drop(permit);
                        tokio::select! {
                            changed = changes.changed() => if changed.is_err() { return },
                            _ = wait_stopping(&mut stopping) => {}
                            _ = tx.closed() => return,
                        }
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn remove_experiment_data(
        &self,
        request: Request<RemoveExperimentRequest>,
    ) -> Result<Response<RemoveExperimentResponse>, Status> {
        let caller = self.caller(&request)?;
        // Not the caller's (or unknown): nothing removed, acknowledged as OpenFL does.
        self.state.remove_experiment(&caller.name, &request.get_ref().experiment_name)?;
        Ok(Response::new(RemoveExperimentResponse { acknowledgement: true }))
    }

    async fn get_envoys(&self, _request: Request<GetEnvoysRequest>) -> Result<Response<GetEnvoysResponse>, Status> {
        let envoy_infos = self.state.envoys().into_iter().map(envoy_info).collect();
        Ok(Response::new(GetEnvoysResponse { envoy_infos }))
    }
}

// ---------------------------------------------------------------------------
// The execution loop (OpenFL's start_experiment_execution_loop)
// ---------------------------------------------------------------------------

async fn run_blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// One experiment at a time: review, start, hand to envoys, wait for its end.
async fn execution_loop(state: Arc<DirectorState>, hooks: Arc<dyn DirectorHooks>, mut stopping: watch::Receiver<bool>) {
    let mut changes = state.subscribe();
    loop {
        if *stopping.borrow() {
            return;
        }
        let Some(info) = state.take_next() else {
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                _ = wait_stopping(&mut stopping) => return,
            }
            continue;
        };
        let name = info.name.clone();
        let review_hooks = Arc::clone(&hooks);
        let review_info = info.clone();
        let approved = run_blocking(move || review_hooks.review_experiment(&review_info)).await;
        if approved != Some(true) {
            if approved.is_none() {
                log::error!("the review hook of experiment {name:?} panicked: rejecting it");
            }
            state.reject(&name);
            continue;
        }
        if !state.begin(&name) {
            continue;
        }
        let start_hooks = Arc::clone(&hooks);
        let start_info = info.clone();
        match run_blocking(move || start_hooks.start_experiment(&start_info)).await {
            Some(Ok(())) => state.dispatch(&name),
            Some(Err(e)) => {
                let _ = state.mark_failed(&name, &format!("the host could not start it: {e}"));
            }
            None => {
                let _ = state.mark_failed(&name, "the host's start hook panicked");
            }
        }
        while !state.active_done(&name) {
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                _ = wait_stopping(&mut stopping) => return,
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The host's handle and the server's life cycle
// ---------------------------------------------------------------------------

/// What the host uses to report an experiment's progress and to look at the
/// director's state. Cheap to clone; usable from any thread.
#[derive(Clone)]
pub struct DirectorHandle {
    state: Arc<DirectorState>,
}

impl DirectorHandle {
    /// Queues a metric for the experiment's GetMetricStream.
    pub fn push_metric(&self, experiment: &str, metric: Metric) -> Result<()> {
        self.state.push_metric(experiment, metric)
    }

    /// Sets the model GetTrainedModel(BEST_MODEL) returns.
    pub fn set_best_model(&self, experiment: &str, model: ModelProto) -> Result<()> {
        self.state.set_best_model(experiment, model)
    }

    /// Sets the model GetTrainedModel(LAST_MODEL) returns.
    pub fn set_last_model(&self, experiment: &str, model: ModelProto) -> Result<()> {
        self.state.set_last_model(experiment, model)
    }

    /// Sets the round progress frontends see.
    pub fn set_round(&self, experiment: &str, current_round: u32, total_rounds: u32) -> Result<()> {
        self.state.set_round(experiment, current_round, total_rounds)
    }

    /// Sets the task list (name, description) frontends see.
    pub fn set_tasks(&self, experiment: &str, tasks: Vec<(String, String)>) -> Result<()> {
        self.state.set_tasks(experiment, tasks)
    }

    /// The experiment finished; metric streams end once drained and the
    /// next experiment may start.
    pub fn mark_finished(&self, experiment: &str) -> Result<()> {
        self.state.mark_finished(experiment)
    }

    /// The experiment failed.
    pub fn mark_failed(&self, experiment: &str, description: &str) -> Result<()> {
        self.state.mark_failed(experiment, description)
    }

    /// A view of one experiment (whoever owns it).
    pub fn experiment(&self, experiment: &str) -> Option<ExperimentSnapshot> {
        self.state.snapshot(experiment)
    }

    /// Status of an experiment (whoever owns it).
    pub fn experiment_status(&self, experiment: &str) -> Option<ExperimentStatus> {
        self.state.snapshot(experiment).map(|s| s.status)
    }

    /// Names of all experiments, in submission order.
    pub fn experiment_names(&self) -> Vec<String> {
        self.state.experiment_names()
    }

    /// Registered envoys, as GetEnvoys reports them.
    pub fn envoys(&self) -> Vec<EnvoyStatus> {
        self.state.envoys()
    }

    /// Waits until `condition` holds, re-checking after every change of the
    /// state. Unbounded: wrap it in a timeout.
    pub async fn wait_until(&self, mut condition: impl FnMut(&DirectorHandle) -> bool) {
        let mut changes = self.state.subscribe();
        while !condition(self) {
            if changes.changed().await.is_err() {
                return;
            }
        }
    }
}

/// A running director server.
pub struct DirectorServer {
    local_addr: SocketAddr,
    state: Arc<DirectorState>,
    serving: Serving,
}

impl DirectorServer {
    /// Checks the configuration, creates the archive directory, binds, then
    /// serves in the background on the current Tokio runtime and starts the
    /// experiment execution loop.
    pub async fn start(config: DirectorConfig, hooks: Arc<dyn DirectorHooks>) -> Result<Self> {
        let listen = Listen::new(config.tls.as_ref(), &config.limits, config.max_message_size, UPLOADS)?;
        match &config.tls {
            None => log::warn!(
                "director server without TLS: callers are named by their client_id metadata, which any \
                 peer can set (envoys send none and are all `__default__`)"
            ),
            Some(tls) if tls.disable_client_auth => log::warn!(
                "director server with client authentication disabled: callers without a certificate are \
                 named by their client_id metadata"
            ),
            Some(_) => {}
        }
        let state = Arc::new(DirectorState::new(config.state_config())?);
        let listener = crate::listen::bind(&config.host, config.port).await?;
        let local_addr = crate::listen::local_addr(&listener)?;
        let mut serving = Serving::new();
        let service = Arc::new(Service {
            state: Arc::clone(&state),
            hooks: Arc::clone(&hooks),
            tls: config.tls.is_some(),
            check_envoy_identity: config.check_envoy_identity,
            stopping: serving.stopping(),
        });
        let grpc = DirectorGrpc::from_arc(Arc::clone(&service))
            .max_decoding_message_size(config.max_message_size)
            .max_encoding_message_size(config.max_message_size);
        let downloads = Downloads {
            state: Arc::clone(&state),
            budget: DownloadBudget::new(config.max_download_buffer),
            stopping: serving.stopping(),
        };
        let grpc = MethodRoute::new(grpc, StreamedArchives::new(service, downloads));
        serving.run(grpc, listener, listen);
        tokio::spawn(execution_loop(Arc::clone(&state), hooks, serving.stopping()));
        log::info!("director server listening on {local_addr}");
        Ok(Self { local_addr, state, serving })
    }

    /// The address the server listens on (with the chosen port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The handle the host reports experiment progress through.
    pub fn handle(&self) -> DirectorHandle {
        DirectorHandle { state: Arc::clone(&self.state) }
    }

    /// Where archives are stored.
    pub fn archive_dir(&self) -> &Path {
        &self.state.config().archive_dir
    }

    /// Serves until [`stop`](Self::stop) (a director runs until told to
    /// stop), then shuts down: long polls end with UNAVAILABLE, other calls
    /// in flight finish.
    pub async fn serve(&self) -> Result<()> {
        let mut stopped = self.serving.stopping();
        let _ = stopped.wait_for(|s| *s).await;
        self.serving.wait_finished().await
    }

    /// Asks the server to stop; `serve` then returns. Idempotent.
    pub fn stop(&self) {
        self.serving.stop();
    }

    /// Stops and waits until the listener is closed.
    pub async fn shutdown(&self) -> Result<()> {
        self.serving.shutdown().await
    }
}
