//! OpenFL 1.6's `AggregatorGRPCClient`: what a collaborator calls.
//!
//! One channel is reused across calls (OpenFL reconnects around every call;
//! `reconnect_every_call` restores that). Calls retry while the aggregator is
//! unreachable (see [`RetryPolicy`]), resending a whole upload after a
//! reconnect; every reply header is validated.

use std::future::Future;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body::Frame;
use http_body_util::StreamBody;
use tonic::body::Body;
use tokio::sync::watch;
// The channel every call goes through, metered (src/metrics/client.rs).
use crate::metrics::client::MeteredChannel as Channel;
use crate::metrics::{Recorder, Role, TransportMetrics, AGGREGATOR_RPCS};
use tonic::Status;

use super::checks::validate_response;
use super::logic::{Federation, TaskResults, TasksReply, TensorRequest};
use crate::call::{CallChannel, CallOptions, CallScope, Metered};
use crate::aligned;
use crate::connect::ConnectConfig;
use crate::error::{ofl_code, Error, Result};
use crate::proto::aggregator::aggregator_client::AggregatorClient as AggregatorGrpcClient;
use crate::proto::aggregator::{self as pb, MessageHeader};
use crate::proto::NamedTensor;
use crate::retry::{AttemptError, RetryPolicy, Retrying};
use crate::stream::{CHUNK_SIZE, DEFAULT_MAX_MESSAGE_SIZE};

/// How a collaborator client connects and whom it expects to talk to.
#[derive(Clone, Debug)]
pub struct AggregatorClientOptions {
    /// Aggregator address, port and TLS settings.
    pub connect: ConnectConfig,
    /// The aggregator uuid, federation uuid and single-certificate CN that
    /// requests carry and replies must match (`authorized_collaborators` is
    /// not used by a client).
    pub federation: Federation,
    /// Retry behaviour while the aggregator is unreachable.
    pub retry: RetryPolicy,
    /// Largest message sent or received (1 GiB, as OpenFL).
    pub max_message_size: usize,
    /// Upload chunk size (OpenFL: 2 MiB).
    pub chunk_size: usize,
    /// Open a new connection for every call, as OpenFL 1.6 does (slower).
    pub reconnect_every_call: bool,
}

impl AggregatorClientOptions {
    /// A configuration for the aggregator at `host:port`, without TLS.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            connect: ConnectConfig::new(host, port),
            federation: Federation::default(),
            retry: RetryPolicy::default(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            chunk_size: CHUNK_SIZE,
            reconnect_every_call: false,
        }
    }
}

type Stub = AggregatorGrpcClient<CallChannel>;

/// A collaborator's connection to an aggregator.
pub struct AggregatorClient {
    config: AggregatorClientOptions,
    channel: Mutex<Option<Channel>>,
    closed: watch::Sender<bool>,
    metrics: Arc<Recorder>,
}

impl AggregatorClient {
    /// A client; certificates are read and checked now, the connection is
    /// made on the first call.
    pub fn new(config: AggregatorClientOptions) -> Result<Self> {
        if config.connect.tls.is_none() {
            log::warn!("gRPC client for {} is running without TLS", config.connect.uri());
        }
        let metrics = Recorder::new(Role::AggregatorClient, AGGREGATOR_RPCS);
        let channel = config.connect.metered_channel(&metrics)?;
        let (closed, _) = watch::channel(false);
        Ok(Self { config, channel: Mutex::new(Some(channel)), closed, metrics })
    }

    /// The aggregator's `host:port`.
    pub fn uri(&self) -> String {
        self.config.connect.uri()
    }

    /// Closes the connection (OpenFL's `disconnect`); the next call reconnects.
    pub fn disconnect(&self) {
        self.channel.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Drops the connection and makes a new one (OpenFL's `reconnect`).
    pub fn reconnect(&self) -> Result<()> {
        let channel = self.config.connect.metered_channel(&self.metrics)?;
        *self.channel.lock().unwrap_or_else(|e| e.into_inner()) = Some(channel);
        Ok(())
    }

    /// A snapshot of the client's transport metrics (see [`crate::metrics`]).
    pub fn metrics(&self) -> TransportMetrics {
        self.metrics.snapshot()
    }

    /// Cancels calls in progress and refuses new ones with `Cancelled`.
    pub fn close(&self) {
        self.closed.send_replace(true);
        self.disconnect();
    }

    fn current_channel(&self) -> Result<Channel> {
        if self.config.reconnect_every_call {
            self.reconnect()?;
        }
        let mut guard = self.channel.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(self.config.connect.metered_channel(&self.metrics)?);
        }
        Ok(guard.clone().expect("set above"))
    }

    fn stub(&self, channel: CallChannel) -> Stub {
        AggregatorGrpcClient::new(channel)
            .max_decoding_message_size(self.config.max_message_size)
            .max_encoding_message_size(self.config.max_message_size)
    }

    fn header(&self, collaborator: &str) -> Option<MessageHeader> {
        let f = &self.config.federation;
        Some(MessageHeader {
            sender: collaborator.to_string(),
            receiver: f.aggregator_uuid.clone(),
            federation_uuid: f.federation_uuid.clone(),
            single_col_cert_common_name: f.single_col_cert_common_name.clone(),
        })
    }

    /// The scope of a call `what` with `options`.
    fn scope(&self, what: &str, options: &CallOptions) -> CallScope {
        CallScope::new(what, options, self.config.connect.call_timeout, &self.closed)
    }

    /// Runs `call` on a fresh stub until it succeeds, fails for good, the
    /// retry budget is spent, or `scope` ends it. With `download`, the
    /// response's bytes report the call's progress.
    async fn with_retry<T, F, Fut>(&self, scope: &CallScope, download: bool, mut call: F) -> Result<T>
    where
        F: FnMut(Stub) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.with_retry_on(scope, download, |channel| call(self.stub(channel))).await
    }

    /// [`Self::with_retry`] for calls that use the attempt's channel itself
    /// (read at the HTTP level: src/aligned/unary.rs).
    async fn with_retry_on<T, F, Fut>(&self, scope: &CallScope, download: bool, mut call: F) -> Result<T>
    where
        F: FnMut(CallChannel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let retrying = Retrying {
            policy: &self.config.retry,
            peer: format!("the aggregator at {}", self.uri()),
            presents_certificate: self.config.connect.presents_certificate(),
            metrics: &self.metrics,
        };
        let channel = || Ok(CallChannel::new(self.current_channel()?, scope, download));
        let attempt = |channel| {
            let pending = call(channel);
            async move { pending.await.map_err(AttemptError::from) }
        };
        retrying.run(scope, channel, attempt).await
    }

    /// GetTasks for `collaborator`.
    pub async fn get_tasks(&self, collaborator: &str) -> Result<TasksReply> {
        self.get_tasks_with(collaborator, &CallOptions::default()).await
    }

    /// GetTasks for `collaborator`, with per-call `options`.
    pub async fn get_tasks_with(&self, collaborator: &str, options: &CallOptions) -> Result<TasksReply> {
        let request = pb::GetTasksRequest { header: self.header(collaborator) };
        let scope = self.scope("GetTasks", options);
        let reply = self
            .with_retry(&scope, false, |mut stub| {
                let request = request.clone();
                async move { stub.get_tasks(request).await.map(|r| r.into_inner()) }
            })
            .await?;
        validate_response(&self.config.federation, collaborator, reply.header.as_ref())?;
        Ok(TasksReply {
            round_number: reply.round_number,
            tasks: reply.tasks,
            sleep_time: reply.sleep_time,
            quit: reply.quit,
        })
    }

    /// GetAggregatedTensor for `collaborator`.
    pub async fn get_aggregated_tensor(&self, collaborator: &str, request: &TensorRequest) -> Result<NamedTensor> {
        self.get_aggregated_tensor_with(collaborator, request, &CallOptions::default()).await
    }

    /// GetAggregatedTensor for `collaborator`, with per-call `options` (its
    /// progress counts the reply's bytes, total from the gRPC length prefix).
    pub async fn get_aggregated_tensor_with(
        &self,
        collaborator: &str,
        request: &TensorRequest,
        options: &CallOptions,
    ) -> Result<NamedTensor> {
        let request = pb::GetAggregatedTensorRequest {
            header: self.header(collaborator),
            tensor_name: request.tensor_name.clone(),
            round_number: request.round_number,
            report: request.report,
            tags: request.tags.clone(),
            require_lossless: request.require_lossless,
        };
        let scope = self.scope("GetAggregatedTensor", options);
        let reply = self
            .with_retry_on(&scope, true, |channel| {
                // Read from the HTTP/2 body into aligned buffers (see crate::aligned).
                let request = tonic::Request::new(request.clone());
                let max = self.config.max_message_size;
                async move {
                    let path = "/openfl.aggregator.Aggregator/GetAggregatedTensor";
                    let response: pb::GetAggregatedTensorResponse =
                        aligned::unary::call(channel, path, request, aligned::AGGREGATED_TENSOR, max).await?.into_inner();
                    Ok(response)
                }
            })
            .await?;
        validate_response(&self.config.federation, collaborator, reply.header.as_ref())?;
        let mut tensor = reply
            .tensor
            .ok_or_else(|| Error::new(ofl_code::InvalidResponse, "GetAggregatedTensor reply has no tensor"))?;
        aligned::align_tensors([&mut tensor], "GetAggregatedTensor")?;
        Ok(tensor)
    }

    /// SendLocalTaskResults: streams `results` in chunks of at most
    /// `chunk_size` bytes, with tensor data sliced from the tensors' own
    /// buffers (no copy); after a reconnect the whole upload is sent again.
    pub async fn send_local_task_results(&self, collaborator: &str, results: &TaskResults) -> Result<()> {
        self.send_local_task_results_with(collaborator, results, &CallOptions::default()).await
    }

    /// SendLocalTaskResults with per-call `options`: progress counts the
    /// serialized bytes handed to the transport; a cancelled or timed-out
    /// upload is reset, never finished.
    pub async fn send_local_task_results_with(
        &self,
        collaborator: &str,
        results: &TaskResults,
        options: &CallOptions,
    ) -> Result<()> {
        let message = pb::TaskResults {
            header: self.header(collaborator),
            round_number: results.round_number,
            task_name: results.task_name.clone(),
            data_size: results.data_size,
            tensors: results.tensors.clone(),
        };
        let chunks = super::upload::encode_in_chunks(&message, self.config.chunk_size);
        self.send_chunks(collaborator, chunks, options).await
    }

    async fn send_chunks(&self, collaborator: &str, chunks: Vec<Bytes>, options: &CallOptions) -> Result<()> {
        let total: usize = chunks.iter().map(Bytes::len).sum();
        if total > self.config.max_message_size {
            return Err(Error::new(
                ofl_code::ResourceExhausted,
                format!(
                    "task results are {} bytes, more than the maximum message size of {} bytes",
                    total,
                    self.config.max_message_size
                ),
            ));
        }
        let scope = self.scope("SendLocalTaskResults", options);
        let reply = self
            .with_retry_on(&scope, false, |channel| {
                // Framed at the HTTP level: chunks go out as they are (see upload::framed_chunk).
                let size_of = |chunk: &Bytes| chunk.len() as u64;
                let chunks = Metered::new(tokio_stream::iter(chunks.clone()), size_of, &scope, total as u64);
                let frames = chunks
                    .flat_map(|chunk| tokio_stream::iter(super::upload::framed_chunk(&chunk)))
                    .map(|data| Ok::<_, Status>(Frame::data(data)));
                let body = Body::new(StreamBody::new(frames));
                async move {
                    let path = "/openfl.aggregator.Aggregator/SendLocalTaskResults";
                    let metadata = tonic::metadata::MetadataMap::new();
                    let response: pb::SendLocalTaskResultsResponse =
                        aligned::unary::call_with_body(channel, path, metadata, body, aligned::NO_TENSOR, usize::MAX)
                            .await?
                            .into_inner();
                    Ok(response)
                }
            })
            .await?;
        validate_response(&self.config.federation, collaborator, reply.header.as_ref())
    }
}

impl Drop for AggregatorClient {
    fn drop(&mut self) {
        self.close();
    }
}
