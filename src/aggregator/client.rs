//! OpenFL 1.6's `AggregatorGRPCClient`: what a collaborator calls.
//!
//! One channel is reused across calls (OpenFL reconnects around every call;
//! `reconnect_every_call` restores that). Calls retry while the aggregator is
//! unreachable (see [`RetryPolicy`]), resending a whole upload after a
//! reconnect; every reply header is validated.

use std::future::Future;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::watch;
use tonic::transport::Channel;
use tonic::Status;

use super::checks::validate_response;
use super::logic::{Federation, TaskResults, TasksReply, TensorRequest};
use crate::aligned;
use crate::connect::ConnectConfig;
use crate::error::{ofl_code, Error, Result};
use crate::proto::aggregator::aggregator_client::AggregatorClient as AggregatorGrpcClient;
use crate::proto::aggregator::{self as pb, MessageHeader};
use crate::proto::{DataStream, NamedTensor};
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

/// A collaborator's connection to an aggregator.
pub struct AggregatorClient {
    config: AggregatorClientOptions,
    channel: Mutex<Option<Channel>>,
    closed: watch::Sender<bool>,
}

impl AggregatorClient {
    /// A client; certificates are read and checked now, the connection is
    /// made on the first call.
    pub fn new(config: AggregatorClientOptions) -> Result<Self> {
        if config.connect.tls.is_none() {
            log::warn!("gRPC client for {} is running without TLS", config.connect.uri());
        }
        let channel = config.connect.channel()?;
        let (closed, _) = watch::channel(false);
        Ok(Self { config, channel: Mutex::new(Some(channel)), closed })
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
        let channel = self.config.connect.channel()?;
        *self.channel.lock().unwrap_or_else(|e| e.into_inner()) = Some(channel);
        Ok(())
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
            *guard = Some(self.config.connect.channel()?);
        }
        Ok(guard.clone().expect("set above"))
    }

    /// The channel the retry loop's stub was just made from (for calls read
    /// at the HTTP level); a client disconnected meanwhile is UNAVAILABLE.
    fn attempt_channel(&self) -> Result<Channel, Status> {
        let guard = self.channel.lock().unwrap_or_else(|e| e.into_inner());
        guard.clone().ok_or_else(|| Status::unavailable("the client was disconnected"))
    }

    fn stub(&self, channel: Channel) -> AggregatorGrpcClient<Channel> {
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

    /// Runs `call` until it succeeds, fails for good, the retry budget is
    /// spent, or the client is closed.
    async fn with_retry<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T>
    where
        F: FnMut(AggregatorGrpcClient<Channel>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let retrying = Retrying {
            policy: &self.config.retry,
            peer: format!("the aggregator at {}", self.uri()),
            closed: &self.closed,
            presents_certificate: self.config.connect.presents_certificate(),
        };
        let stub = || Ok(self.stub(self.current_channel()?));
        let attempt = |stub| {
            let pending = call(stub);
            async move { pending.await.map_err(AttemptError::from) }
        };
        retrying.run(what, stub, attempt).await
    }

    /// GetTasks for `collaborator`.
    pub async fn get_tasks(&self, collaborator: &str) -> Result<TasksReply> {
        let request = pb::GetTasksRequest { header: self.header(collaborator) };
        let reply = self
            .with_retry("GetTasks", |mut stub| {
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
        let request = pb::GetAggregatedTensorRequest {
            header: self.header(collaborator),
            tensor_name: request.tensor_name.clone(),
            round_number: request.round_number,
            report: request.report,
            tags: request.tags.clone(),
            require_lossless: request.require_lossless,
        };
        let reply = self
            .with_retry("GetAggregatedTensor", |_stub| {
                // Read from the HTTP/2 body into aligned buffers (see crate::aligned).
                let channel = self.attempt_channel();
                let request = tonic::Request::new(request.clone());
                let max = self.config.max_message_size;
                async move {
                    let path = "/openfl.aggregator.Aggregator/GetAggregatedTensor";
                    let response: pb::GetAggregatedTensorResponse =
                        aligned::unary::call(channel?, path, request, aligned::AGGREGATED_TENSOR, max).await?.into_inner();
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
        let message = pb::TaskResults {
            header: self.header(collaborator),
            round_number: results.round_number,
            task_name: results.task_name.clone(),
            data_size: results.data_size,
            tensors: results.tensors.clone(),
        };
        let chunks = super::upload::encode_in_chunks(&message, self.config.chunk_size);
        self.send_chunks(collaborator, chunks).await
    }

    async fn send_chunks(&self, collaborator: &str, chunks: Vec<Bytes>) -> Result<()> {
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
        let reply = self
            .with_retry("SendLocalTaskResults", |mut stub| {
                let messages: Vec<DataStream> = chunks
                    .iter()
                    .map(|c| DataStream { size: c.len() as u32, npbytes: c.clone() })
                    .collect();
                async move {
                    stub.send_local_task_results(tokio_stream::iter(messages))
                        .await
                        .map(|r| r.into_inner())
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
