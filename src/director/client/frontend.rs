//! What a frontend calls ([`FrontendClient`], OpenFL's `DirectorClient`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use super::connection::Connection;
use super::file_error;
use crate::call::{CallOptions, Metered};
use crate::aligned;
use crate::connect::ConnectConfig;
use crate::director::types::{DirectorMetric, ExperimentStatus};
use crate::error::{ofl_code, Error, Result};
use crate::proto::director::get_trained_model_request::ModelType;
use crate::proto::director::*;
use crate::proto::{ExperimentDescription, ModelProto};
use crate::retry::{AttemptError, RetryPolicy};
use crate::stream::{CHUNK_SIZE, DEFAULT_MAX_MESSAGE_SIZE};

/// How a frontend reaches the director.
#[derive(Clone, Debug)]
pub struct FrontendClientOptions {
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

impl FrontendClientOptions {
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
    pub fn new(config: FrontendClientOptions) -> Result<Self> {
        let (id, role) = (config.client_id.as_deref(), crate::metrics::Role::FrontendClient);
        let conn = Connection::new(config.connect, config.retry, config.max_message_size, id, role)?;
        Ok(Self { conn, chunk_size: config.chunk_size.max(1) })
    }

    /// A snapshot of the client's transport metrics (see [`crate::metrics`]).
    pub fn metrics(&self) -> crate::metrics::TransportMetrics {
        self.conn.metrics()
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
        self.set_new_experiment_with(name, collaborators, archive, initial_model, &CallOptions::default()).await
    }

    /// SetNewExperiment with per-call `options`: progress counts the archive
    /// bytes handed to the transport; a cancelled or timed-out upload is
    /// reset, never finished (the director registers nothing).
    pub async fn set_new_experiment_with(
        &self,
        name: &str,
        collaborators: &[String],
        archive: &Path,
        initial_model: Option<&ModelProto>,
        options: &CallOptions,
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
        let scope = self.conn.scope("SetNewExperiment", options);
        let scope = &scope;
        let reply = self
            .conn
            .with_retry(scope, false, |mut stub| {
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
                    let size_of = |m: &ExperimentInfo| m.experiment_data.as_ref().map_or(0, |d| d.npbytes.len() as u64);
                    let request = conn.request(Metered::new(ReceiverStream::new(rx), size_of, scope, size));
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
        self.get_experiment_status_with(experiment_name, &CallOptions::default()).await
    }

    /// GetExperimentStatus with per-call `options`.
    pub async fn get_experiment_status_with(
        &self,
        experiment_name: &str,
        options: &CallOptions,
    ) -> Result<ExperimentStatus> {
        let message = GetExperimentStatusRequest { experiment_name: experiment_name.to_string() };
        let reply = self
            .conn
            .unary("GetExperimentStatus", options, message, |mut stub, r| async move { stub.get_experiment_status(r).await })
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
        self.get_dataset_info_with(&CallOptions::default()).await
    }

    /// GetDatasetInfo with per-call `options`.
    pub async fn get_dataset_info_with(&self, options: &CallOptions) -> Result<(Vec<String>, Vec<String>)> {
        let reply =
            self.conn
                .unary("GetDatasetInfo", options, GetDatasetInfoRequest {}, |mut stub, r| async move {
                    stub.get_dataset_info(r).await
                })
                .await?;
        let shard = reply.shard_info.unwrap_or_default();
        Ok((shard.sample_shape, shard.target_shape))
    }

    async fn trained_model(
        &self,
        experiment_name: &str,
        model_type: ModelType,
        options: &CallOptions,
    ) -> Result<Option<ModelProto>> {
        let message =
            GetTrainedModelRequest { experiment_name: experiment_name.to_string(), model_type: model_type as i32 };
        let scope = self.conn.scope("GetTrainedModel", options);
        let path = "/openfl.director.Director/GetTrainedModel";
        let reply: TrainedModelResponse =
            self.conn.unary_aligned(&scope, path, aligned::TRAINED_MODEL, message)
            .await?;
        let mut model = reply.model_proto;
        if let Some(model) = &mut model {
            aligned::align_tensors(&mut model.tensors, "GetTrainedModel")?;
        }
        Ok(model)
    }

    /// GetTrainedModel(BEST_MODEL); `None` while there is none.
    pub async fn get_best_model(&self, experiment_name: &str) -> Result<Option<ModelProto>> {
        self.get_best_model_with(experiment_name, &CallOptions::default()).await
    }

    /// GetTrainedModel(BEST_MODEL) with per-call `options`: progress counts
    /// the reply's bytes (total from the gRPC length prefix).
    pub async fn get_best_model_with(&self, experiment_name: &str, options: &CallOptions) -> Result<Option<ModelProto>> {
        self.trained_model(experiment_name, ModelType::BestModel, options).await
    }

    /// GetTrainedModel(LAST_MODEL); `None` while there is none.
    pub async fn get_last_model(&self, experiment_name: &str) -> Result<Option<ModelProto>> {
        self.get_last_model_with(experiment_name, &CallOptions::default()).await
    }

    /// GetTrainedModel(LAST_MODEL) with per-call `options`, as
    /// [`get_best_model_with`](Self::get_best_model_with).
    pub async fn get_last_model_with(&self, experiment_name: &str, options: &CallOptions) -> Result<Option<ModelProto>> {
        self.trained_model(experiment_name, ModelType::LastModel, options).await
    }

    /// GetMetricStream: calls `on_metric` for each metric until the
    /// experiment is over (Ok), or until `on_metric` returns false (the
    /// stream is cancelled, Ok). A broken connection reopens the stream
    /// (metrics already delivered are not sent again).
    pub async fn stream_metrics(&self, experiment_name: &str, on_metric: impl FnMut(DirectorMetric) -> bool) -> Result<()> {
        self.stream_metrics_with(experiment_name, on_metric, &CallOptions::default()).await
    }

    /// GetMetricStream with per-call `options` (a time limit bounds the
    /// whole stream).
    pub async fn stream_metrics_with(
        &self,
        experiment_name: &str,
        mut on_metric: impl FnMut(DirectorMetric) -> bool,
        options: &CallOptions,
    ) -> Result<()> {
        let message = GetMetricStreamRequest { experiment_name: experiment_name.to_string() };
        let conn = &self.conn;
        let on_metric = Mutex::new(&mut on_metric);
        let scope = conn.scope("GetMetricStream", options);
        conn.with_retry(&scope, false, |mut stub| {
            let request = conn.request(message.clone());
            let on_metric = &on_metric;
            async move {
                let mut stream = stub.get_metric_stream(request).await?.into_inner();
                while let Some(m) = stream.message().await? {
                    let metric = DirectorMetric::from(m);
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
        self.remove_experiment_data_with(experiment_name, &CallOptions::default()).await
    }

    /// RemoveExperimentData with per-call `options`.
    pub async fn remove_experiment_data_with(&self, experiment_name: &str, options: &CallOptions) -> Result<bool> {
        let message = RemoveExperimentRequest { experiment_name: experiment_name.to_string() };
        let reply = self
            .conn
            .unary("RemoveExperimentData", options, message, |mut stub, r| async move { stub.remove_experiment_data(r).await })
            .await?;
        Ok(reply.acknowledgement)
    }

    /// GetEnvoys: every registered envoy.
    pub async fn get_envoys(&self) -> Result<Vec<EnvoyInfo>> {
        self.get_envoys_with(&CallOptions::default()).await
    }

    /// GetEnvoys with per-call `options`.
    pub async fn get_envoys_with(&self, options: &CallOptions) -> Result<Vec<EnvoyInfo>> {
        let reply = self
            .conn
            .unary("GetEnvoys", options, GetEnvoysRequest {}, |mut stub, r| async move { stub.get_envoys(r).await })
            .await?;
        Ok(reply.envoy_infos)
    }

    /// GetExperimentsList: the caller's experiments.
    pub async fn get_experiments_list(&self) -> Result<Vec<ExperimentListItem>> {
        self.get_experiments_list_with(&CallOptions::default()).await
    }

    /// GetExperimentsList with per-call `options`.
    pub async fn get_experiments_list_with(&self, options: &CallOptions) -> Result<Vec<ExperimentListItem>> {
        let reply = self
            .conn
            .unary("GetExperimentsList", options, GetExperimentsListRequest {}, |mut stub, r| async move {
                stub.get_experiments_list(r).await
            })
            .await?;
        Ok(reply.experiments)
    }

    /// GetExperimentDescription.
    pub async fn get_experiment_description(&self, name: &str) -> Result<ExperimentDescription> {
        self.get_experiment_description_with(name, &CallOptions::default()).await
    }

    /// GetExperimentDescription with per-call `options`.
    pub async fn get_experiment_description_with(
        &self,
        name: &str,
        options: &CallOptions,
    ) -> Result<ExperimentDescription> {
        let message = GetExperimentDescriptionRequest { name: name.to_string() };
        let reply = self
            .conn
            .unary("GetExperimentDescription", options, message, |mut stub, r| async move {
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
