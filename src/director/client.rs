//! The director's clients: OpenFL 1.6's `ShardDirectorClient` (what an envoy
//! calls, [`EnvoyClient`]) and `DirectorClient` (what a frontend calls,
//! [`FrontendClient`]).
//!
//! Both reuse one channel across calls and retry while the director is
//! unreachable (see [`crate::retry`]): a call is repeated whole, an upload or
//! a download restarts from its first byte. Archives move between files and
//! the network in chunks of at most 2 MiB, never whole in memory.
//!
//! Differences from OpenFL 1.6, on purpose: a frontend sends the initial
//! model once, in the last chunk of the archive (OpenFL repeats it in every
//! chunk; OpenFL's director reads it from the last one, ours from any), and
//! sends an experiment without an initial model too (OpenFL's client silently
//! sends nothing then); a frontend's `client_id` metadata is sent whenever
//! one is configured (OpenFL: only without TLS, where the director reads it).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Request, Status};

use super::state::{ExperimentStatus, Metric};
use crate::connect::ConnectConfig;
use crate::error::{ofl_code, Error, Result};
use crate::proto::director::director_client::DirectorClient as DirectorGrpcClient;
use crate::proto::director::get_trained_model_request::ModelType;
use crate::proto::director::*;
use crate::proto::{ExperimentDescription, ModelProto};
use crate::retry::{AttemptError, RetryPolicy, Retrying};
use crate::stream::{CHUNK_SIZE, DEFAULT_MAX_MESSAGE_SIZE};

type Stub = DirectorGrpcClient<Channel>;

/// The channel, retry loop and caller metadata shared by both clients.
struct Connection {
    connect: ConnectConfig,
    retry: RetryPolicy,
    max_message_size: usize,
    client_id: Option<MetadataValue<tonic::metadata::Ascii>>,
    channel: Mutex<Option<Channel>>,
    closed: watch::Sender<bool>,
}

impl Connection {
    fn new(
        connect: ConnectConfig,
        retry: RetryPolicy,
        max_message_size: usize,
        client_id: Option<&str>,
    ) -> Result<Self> {
        if connect.tls.is_none() {
            log::warn!("director client for {} is running without TLS", connect.uri());
        }
        let client_id = client_id
            .map(|id| {
                MetadataValue::try_from(id)
                    .map_err(|_| Error::invalid_argument(format!("client_id {id:?} is not printable ASCII")))
            })
            .transpose()?;
        let channel = connect.channel()?;
        let (closed, _) = watch::channel(false);
        Ok(Self { connect, retry, max_message_size, client_id, channel: Mutex::new(Some(channel)), closed })
    }

    fn close(&self) {
        self.closed.send_replace(true);
        self.channel.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    fn stub(&self) -> Result<Stub> {
        let channel = {
            let mut guard = self.channel.lock().unwrap_or_else(|e| e.into_inner());
            if guard.is_none() {
                *guard = Some(self.connect.channel()?);
            }
            guard.clone().expect("set above")
        };
        Ok(DirectorGrpcClient::new(channel)
            .max_decoding_message_size(self.max_message_size)
            .max_encoding_message_size(self.max_message_size))
    }

    /// A request carrying the caller's `client_id` metadata, if any.
    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(id) = &self.client_id {
            request.metadata_mut().insert("client_id", id.clone());
        }
        request
    }

    /// Runs `call` until it succeeds, fails for good, the retry budget is
    /// spent, or the client is closed.
    async fn with_retry<T, F, Fut>(&self, what: &str, call: F) -> Result<T>
    where
        F: FnMut(Stub) -> Fut,
        Fut: Future<Output = Result<T, AttemptError>>,
    {
        let retrying = Retrying {
            policy: &self.retry,
            peer: format!("the director at {}", self.connect.uri()),
            closed: &self.closed,
            presents_certificate: self.connect.presents_certificate(),
        };
        retrying.run(what, || self.stub(), call).await
    }

    /// A unary call with retries.
    async fn unary<Req, Resp, F, Fut>(&self, what: &str, message: Req, mut call: F) -> Result<Resp>
    where
        Req: Clone,
        F: FnMut(Stub, Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        self.with_retry(what, |stub| {
            let request = self.request(message.clone());
            let fut = call(stub, request);
            async move { fut.await.map(tonic::Response::into_inner).map_err(AttemptError::from) }
        })
        .await
    }
}

fn file_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::io(format!("{what} {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------
// Envoy
// ---------------------------------------------------------------------------

/// How an envoy reaches the director.
#[derive(Clone, Debug)]
pub struct EnvoyClientConfig {
    /// Director address, port and TLS settings (OpenFL: the envoy's
    /// certificate, whose CN is the shard name).
    pub connect: ConnectConfig,
    /// The envoy's name (`shard_name`; collaborator name in experiments).
    pub shard_name: String,
    /// Retry behaviour while the director is unreachable.
    pub retry: RetryPolicy,
    /// Largest message sent or received (1 GiB, as OpenFL).
    pub max_message_size: usize,
    /// Largest archive written by [`EnvoyClient::get_experiment_data`].
    pub max_archive_size: u64,
}

impl EnvoyClientConfig {
    /// A configuration for the director at `host:port`, without TLS.
    pub fn new(host: impl Into<String>, port: u16, shard_name: impl Into<String>) -> Self {
        Self {
            connect: ConnectConfig::new(host, port),
            shard_name: shard_name.into(),
            retry: RetryPolicy::default(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_archive_size: 1 << 30,
        }
    }
}

/// What an envoy calls (OpenFL's `ShardDirectorClient`).
pub struct EnvoyClient {
    conn: Connection,
    shard_name: String,
    max_archive_size: u64,
}

impl EnvoyClient {
    /// A client; certificates are read and checked now, the connection is
    /// made on the first call.
    pub fn new(config: EnvoyClientConfig) -> Result<Self> {
        if config.shard_name.is_empty() {
            return Err(Error::invalid_argument("shard_name is empty"));
        }
        let conn = Connection::new(config.connect, config.retry, config.max_message_size, None)?;
        Ok(Self { conn, shard_name: config.shard_name, max_archive_size: config.max_archive_size })
    }

    /// The envoy's name.
    pub fn shard_name(&self) -> &str {
        &self.shard_name
    }

    /// Cancels calls in progress (a WaitExperiment long poll too) and refuses
    /// new ones with `Cancelled`.
    pub fn close(&self) {
        self.conn.close();
    }

    /// UpdateShardInfo: registers the shard (its `node_info.name` is set to
    /// the shard name). True when the director accepted it (its sample and
    /// target shapes are the director's).
    pub async fn report_shard_info(&self, mut shard_info: ShardInfo) -> Result<bool> {
        shard_info.node_info.get_or_insert_with(Default::default).name = self.shard_name.clone();
        let message = UpdateShardInfoRequest { shard_info: Some(shard_info) };
        let reply = self
            .conn
            .unary("UpdateShardInfo", message, |mut stub, r| async move { stub.update_shard_info(r).await })
            .await?;
        Ok(reply.accepted)
    }

    /// WaitExperiment: blocks until the director has an experiment for this
    /// envoy, and returns its name.
    pub async fn wait_experiment(&self) -> Result<String> {
        let message = WaitExperimentRequest { collaborator_name: self.shard_name.clone() };
        let reply = self
            .conn
            .unary("WaitExperiment", message, |mut stub, r| async move { stub.wait_experiment(r).await })
            .await?;
        if reply.experiment_name.is_empty() {
            return Err(Error::new(ofl_code::InvalidResponse, "WaitExperiment returned no experiment"));
        }
        Ok(reply.experiment_name)
    }

    /// GetExperimentData: downloads the experiment's archive into `dest`
    /// (through `dest` + ".part", renamed when complete). Returns its size.
    pub async fn get_experiment_data(&self, experiment_name: &str, dest: &Path) -> Result<u64> {
        let part = {
            let mut name = dest.as_os_str().to_owned();
            name.push(".part");
            PathBuf::from(name)
        };
        let message = GetExperimentDataRequest {
            experiment_name: experiment_name.to_string(),
            collaborator_name: self.shard_name.clone(),
        };
        let max = self.max_archive_size;
        let result = self
            .conn
            .with_retry("GetExperimentData", |mut stub| {
                let request = self.conn.request(message.clone());
                let part = part.clone();
                async move {
                    let mut stream = stub.get_experiment_data(request).await?.into_inner();
                    let mut file =
                        tokio::fs::File::create(&part).await.map_err(|e| file_error("cannot create", &part, e))?;
                    let mut total = 0u64;
                    let mut index = 0usize;
                    while let Some(chunk) = stream.message().await? {
                        if chunk.size as usize != chunk.npbytes.len() {
                            return Err(Error::new(
                                ofl_code::DataLoss,
                                format!(
                                    "chunk {index}: size field says {} bytes but npbytes holds {}",
                                    chunk.size,
                                    chunk.npbytes.len()
                                ),
                            )
                            .into());
                        }
                        total += chunk.npbytes.len() as u64;
                        if total > max {
                            return Err(Error::new(
                                ofl_code::ResourceExhausted,
                                format!("the archive exceeds the maximum archive size of {max} bytes"),
                            )
                            .into());
                        }
                        file.write_all(&chunk.npbytes).await.map_err(|e| file_error("writing", &part, e))?;
                        index += 1;
                    }
                    file.flush().await.map_err(|e| file_error("writing", &part, e))?;
                    Ok(total)
                }
            })
            .await;
        match result {
            Ok(total) => {
                tokio::fs::rename(&part, dest).await.map_err(|e| file_error("cannot rename to", dest, e))?;
                Ok(total)
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&part).await;
                Err(e)
            }
        }
    }

    /// UpdateEnvoyStatus: a health check. Returns the director's health-check
    /// period; `NotFound` when the director does not know this envoy (OpenFL's
    /// `ShardNotFoundError`: report the shard again).
    pub async fn send_health_check(
        &self,
        is_experiment_running: bool,
        cuda_devices: Vec<CudaDeviceInfo>,
    ) -> Result<Duration> {
        let message = UpdateEnvoyStatusRequest { name: self.shard_name.clone(), is_experiment_running, cuda_devices };
        let reply = self
            .conn
            .unary("UpdateEnvoyStatus", message, |mut stub, r| async move { stub.update_envoy_status(r).await })
            .await?;
        let period = reply.health_check_period.unwrap_or_default();
        Ok(Duration::try_from(period).unwrap_or_default())
    }

    /// SetExperimentFailed: tells the director this envoy failed the experiment.
    pub async fn set_experiment_failed(&self, experiment_name: &str, error_code: u32, description: &str) -> Result<()> {
        let message = SetExperimentFailedRequest {
            experiment_name: experiment_name.to_string(),
            collaborator_name: self.shard_name.clone(),
            error_code,
            error_description: description.to_string(),
        };
        self.conn
            .unary("SetExperimentFailed", message, |mut stub, r| async move { stub.set_experiment_failed(r).await })
            .await?;
        Ok(())
    }
}

impl Drop for EnvoyClient {
    fn drop(&mut self) {
        self.close();
    }
}

// ---------------------------------------------------------------------------
// Frontend
// ---------------------------------------------------------------------------

/// How a frontend reaches the director.
#[derive(Clone, Debug)]
pub struct FrontendClientConfig {
    /// Director address, port and TLS settings.
    pub connect: ConnectConfig,
    /// Sent as `client_id` metadata: who the caller is when the director runs
    /// without TLS (under mTLS the certificate CN is).
    pub client_id: Option<String>,
    /// Retry behaviour while the director is unreachable.
    pub retry: RetryPolicy,
    /// Largest message sent or received (1 GiB, as OpenFL).
    pub max_message_size: usize,
    /// Archive chunk size (OpenFL: 2 MiB).
    pub chunk_size: usize,
}

impl FrontendClientConfig {
    /// A configuration for the director at `host:port`, without TLS.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            connect: ConnectConfig::new(host, port),
            client_id: None,
            retry: RetryPolicy::default(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            chunk_size: CHUNK_SIZE,
        }
    }
}

/// What a frontend (a data scientist's program) calls (OpenFL's `DirectorClient`).
pub struct FrontendClient {
    conn: Connection,
    chunk_size: usize,
}

/// Reads `file` in chunks and feeds the upload stream. The initial model
/// rides on the last chunk. A read error is reported on `failed` while the
/// stream is kept open, so the caller can cancel the call instead of letting
/// a truncated archive through.
async fn feed_archive(
    mut file: tokio::fs::File,
    path: PathBuf,
    template: ExperimentInfo,
    mut model: Option<ModelProto>,
    chunk_size: usize,
    tx: mpsc::Sender<ExperimentInfo>,
    failed: oneshot::Sender<Error>,
) {
    let mut current = match read_chunk(&mut file, &path, chunk_size).await {
        Ok(buf) => buf,
        Err(e) => {
            let _ = failed.send(e);
            tx.closed().await;
            return;
        }
    };
    loop {
        let next = match read_chunk(&mut file, &path, chunk_size).await {
            Ok(buf) => buf,
            Err(e) => {
                let _ = failed.send(e);
                tx.closed().await;
                return;
            }
        };
        let last = next.is_empty();
        let mut message = template.clone();
        message.experiment_data = Some(ExperimentData { size: current.len() as u32, npbytes: current.into() });
        if last {
            message.model_proto = model.take();
        }
        if tx.send(message).await.is_err() || last {
            return;
        }
        current = next;
    }
}

async fn read_chunk(file: &mut tokio::fs::File, path: &Path, chunk_size: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; chunk_size];
    let mut filled = 0;
    while filled < buf.len() {
        let n = file.read(&mut buf[filled..]).await.map_err(|e| file_error("reading", path, e))?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    Ok(buf)
}

impl FrontendClient {
    /// A client; certificates are read and checked now, the connection is
    /// made on the first call.
    pub fn new(config: FrontendClientConfig) -> Result<Self> {
        let conn = Connection::new(config.connect, config.retry, config.max_message_size, config.client_id.as_deref())?;
        Ok(Self { conn, chunk_size: config.chunk_size.max(1) })
    }

    /// Cancels calls in progress and refuses new ones with `Cancelled`.
    pub fn close(&self) {
        self.conn.close();
    }

    /// SetNewExperiment: uploads the archive at `archive` (streamed from the
    /// file) with the collaborator names and the initial model. True when
    /// the director accepted it (it is then `pending`). An upload cut by a
    /// lost connection is sent again whole; if the director had already
    /// registered it, that retry reports `AlreadyExists`.
    pub async fn set_new_experiment(
        &self,
        name: &str,
        collaborators: &[String],
        archive: &Path,
        initial_model: Option<&ModelProto>,
    ) -> Result<bool> {
        let size = tokio::fs::metadata(archive).await.map_err(|e| file_error("cannot read", archive, e))?.len();
        if size == 0 {
            return Err(Error::invalid_argument(format!("the archive {} is empty", archive.display())));
        }
        let template = ExperimentInfo {
            name: name.to_string(),
            collaborator_names: collaborators.to_vec(),
            experiment_data: None,
            model_proto: None,
        };
        let chunk_size = self.chunk_size;
        let reply = self
            .conn
            .with_retry("SetNewExperiment", |mut stub| {
                let template = template.clone();
                let model = initial_model.cloned();
                let archive = archive.to_path_buf();
                let conn = &self.conn;
                async move {
                    let file =
                        tokio::fs::File::open(&archive).await.map_err(|e| file_error("cannot open", &archive, e))?;
                    let (tx, rx) = mpsc::channel(2);
                    let (failed_tx, mut failed_rx) = oneshot::channel();
                    let feeder = tokio::spawn(feed_archive(file, archive, template, model, chunk_size, tx, failed_tx));
                    let request = conn.request(ReceiverStream::new(rx));
                    let call = stub.set_new_experiment(request);
                    tokio::pin!(call);
                    let outcome = tokio::select! {
                        reply = &mut call => reply.map(tonic::Response::into_inner).map_err(AttemptError::from),
                        // Dropping the call cancels the upload before its end.
                        Ok(error) = &mut failed_rx => Err(AttemptError::Final(error)),
                    };
                    feeder.abort();
                    outcome
                }
            })
            .await?;
        Ok(reply.accepted)
    }

    /// GetExperimentStatus. `NotFound` when the director answers an empty
    /// status: it has no experiment of that name for this caller (OpenFL's
    /// director, and ours, answer so for an unknown or another caller's one).
    pub async fn get_experiment_status(&self, experiment_name: &str) -> Result<ExperimentStatus> {
        let message = GetExperimentStatusRequest { experiment_name: experiment_name.to_string() };
        let reply = self
            .conn
            .unary("GetExperimentStatus", message, |mut stub, r| async move { stub.get_experiment_status(r).await })
            .await?;
        if reply.experiment_status.is_empty() {
            return Err(Error::new(
                ofl_code::NotFound,
                format!("the director has no experiment named {experiment_name:?} for this caller (empty status)"),
            ));
        }
        ExperimentStatus::parse(&reply.experiment_status).ok_or_else(|| {
            Error::new(ofl_code::InvalidResponse, format!("unknown experiment status {:?}", reply.experiment_status))
        })
    }

    /// GetDatasetInfo: the director's (sample shape, target shape).
    pub async fn get_dataset_info(&self) -> Result<(Vec<String>, Vec<String>)> {
        let reply =
            self.conn
                .unary("GetDatasetInfo", GetDatasetInfoRequest {}, |mut stub, r| async move {
                    stub.get_dataset_info(r).await
                })
                .await?;
        let shard = reply.shard_info.unwrap_or_default();
        Ok((shard.sample_shape, shard.target_shape))
    }

    async fn trained_model(&self, experiment_name: &str, model_type: ModelType) -> Result<Option<ModelProto>> {
        let message =
            GetTrainedModelRequest { experiment_name: experiment_name.to_string(), model_type: model_type as i32 };
        let reply = self
            .conn
            .unary("GetTrainedModel", message, |mut stub, r| async move { stub.get_trained_model(r).await })
            .await?;
        Ok(reply.model_proto)
    }

    /// GetTrainedModel(BEST_MODEL); `None` while there is none.
    pub async fn get_best_model(&self, experiment_name: &str) -> Result<Option<ModelProto>> {
        self.trained_model(experiment_name, ModelType::BestModel).await
    }

    /// GetTrainedModel(LAST_MODEL); `None` while there is none.
    pub async fn get_last_model(&self, experiment_name: &str) -> Result<Option<ModelProto>> {
        self.trained_model(experiment_name, ModelType::LastModel).await
    }

    /// GetMetricStream: calls `on_metric` for each metric until the
    /// experiment is over (Ok), or until `on_metric` returns false (the
    /// stream is cancelled, Ok). A broken connection reopens the stream
    /// (metrics already delivered are not sent again).
    pub async fn stream_metrics(&self, experiment_name: &str, mut on_metric: impl FnMut(Metric) -> bool) -> Result<()> {
        let message = GetMetricStreamRequest { experiment_name: experiment_name.to_string() };
        let conn = &self.conn;
        let on_metric = Mutex::new(&mut on_metric);
        conn.with_retry("GetMetricStream", |mut stub| {
            let request = conn.request(message.clone());
            let on_metric = &on_metric;
            async move {
                let mut stream = stub.get_metric_stream(request).await?.into_inner();
                while let Some(m) = stream.message().await? {
                    let metric = Metric {
                        origin: m.metric_origin,
                        task_name: m.task_name,
                        metric_name: m.metric_name,
                        value: m.metric_value,
                        round: m.round,
                    };
                    let mut callback = on_metric.lock().unwrap_or_else(|e| e.into_inner());
                    if !(*callback)(metric) {
                        break;
                    }
                }
                Ok(())
            }
        })
        .await
    }

    /// RemoveExperimentData: forgets a finished (or pending) experiment. The
    /// director acknowledges (true) also when it has no such experiment for
    /// this caller and removes nothing (as OpenFL 1.6 does).
    pub async fn remove_experiment_data(&self, experiment_name: &str) -> Result<bool> {
        let message = RemoveExperimentRequest { experiment_name: experiment_name.to_string() };
        let reply = self
            .conn
            .unary("RemoveExperimentData", message, |mut stub, r| async move { stub.remove_experiment_data(r).await })
            .await?;
        Ok(reply.acknowledgement)
    }

    /// GetEnvoys: every registered envoy.
    pub async fn get_envoys(&self) -> Result<Vec<EnvoyInfo>> {
        let reply = self
            .conn
            .unary("GetEnvoys", GetEnvoysRequest {}, |mut stub, r| async move { stub.get_envoys(r).await })
            .await?;
        Ok(reply.envoy_infos)
    }

    /// GetExperimentsList: the caller's experiments.
    pub async fn get_experiments_list(&self) -> Result<Vec<ExperimentListItem>> {
        let reply = self
            .conn
            .unary("GetExperimentsList", GetExperimentsListRequest {}, |mut stub, r| async move {
                stub.get_experiments_list(r).await
            })
            .await?;
        Ok(reply.experiments)
    }

    /// GetExperimentDescription.
    pub async fn get_experiment_description(&self, name: &str) -> Result<ExperimentDescription> {
        let message = GetExperimentDescriptionRequest { name: name.to_string() };
        let reply = self
            .conn
            .unary("GetExperimentDescription", message, |mut stub, r| async move {
                stub.get_experiment_description(r).await
            })
            .await?;
        reply
            .experiment
            .ok_or_else(|| Error::new(ofl_code::InvalidResponse, "GetExperimentDescription reply has no experiment"))
    }
}

impl Drop for FrontendClient {
    fn drop(&mut self) {
        self.close();
    }
}
