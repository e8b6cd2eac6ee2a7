//! The channel, retry loop and caller metadata both director clients share.

use std::future::Future;
use std::sync::Mutex;

use tokio::sync::watch;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::connect::ConnectConfig;
use crate::error::{Error, Result};
use crate::proto::director::director_client::DirectorClient as DirectorGrpcClient;
use crate::retry::{AttemptError, RetryPolicy, Retrying};

pub(super) type Stub = DirectorGrpcClient<Channel>;

/// The channel, retry loop and caller metadata shared by both clients.
pub(super) struct Connection {
    connect: ConnectConfig,
    retry: RetryPolicy,
    max_message_size: usize,
    client_id: Option<MetadataValue<tonic::metadata::Ascii>>,
    channel: Mutex<Option<Channel>>,
    closed: watch::Sender<bool>,
}

impl Connection {
    pub(super) fn new(
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

    pub(super) fn close(&self) {
        self.closed.send_replace(true);
        self.channel.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// The current channel (made when there is none).
    pub(super) fn channel(&self) -> Result<Channel> {
        let mut guard = self.channel.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(self.connect.channel()?);
        }
        Ok(guard.clone().expect("set above"))
    }

    /// Largest message sent or received.
    pub(super) fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    pub(super) fn stub(&self) -> Result<Stub> {
        let channel = self.channel()?;
        Ok(DirectorGrpcClient::new(channel)
            .max_decoding_message_size(self.max_message_size)
            .max_encoding_message_size(self.max_message_size))
    }

    /// A request carrying the caller's `client_id` metadata, if any.
    pub(super) fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(id) = &self.client_id {
            request.metadata_mut().insert("client_id", id.clone());
        }
        request
    }

    /// Runs `call` until it succeeds, fails for good, the retry budget is
    /// spent, or the client is closed.
    pub(super) async fn with_retry<T, F, Fut>(&self, what: &str, call: F) -> Result<T>
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
    pub(super) async fn unary<Req, Resp, F, Fut>(&self, what: &str, message: Req, mut call: F) -> Result<Resp>
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
