//! The channel, retry loop and caller metadata both director clients share.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tonic::metadata::MetadataValue;
// The channel every call goes through, metered (src/metrics/client.rs).
use crate::metrics::client::MeteredChannel as Channel;
use crate::metrics::{Recorder, Role, TransportMetrics};
use tonic::{Request, Status};

use crate::call::{CallChannel, CallOptions, CallScope};
use crate::connect::ConnectConfig;
use crate::error::{Error, Result};
use crate::proto::director::director_client::DirectorClient as DirectorGrpcClient;
use crate::retry::{AttemptError, RetryPolicy, Retrying};

pub(super) type Stub = DirectorGrpcClient<CallChannel>;

/// The channel, retry loop and caller metadata shared by both clients.
pub(super) struct Connection {
    connect: ConnectConfig,
    retry: RetryPolicy,
    max_message_size: usize,
    client_id: Option<MetadataValue<tonic::metadata::Ascii>>,
    channel: Mutex<Option<Channel>>,
    closed: watch::Sender<bool>,
    metrics: Arc<Recorder>,
}

impl Connection {
    pub(super) fn new(
        connect: ConnectConfig,
        retry: RetryPolicy,
        max_message_size: usize,
        client_id: Option<&str>,
        role: Role,
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
        let rpcs = if role == Role::EnvoyClient { crate::metrics::ENVOY_RPCS } else { crate::metrics::FRONTEND_RPCS };
        let metrics = Recorder::new(role, rpcs);
        let channel = connect.metered_channel(&metrics)?;
        let (closed, _) = watch::channel(false);
        let channel = Mutex::new(Some(channel));
        Ok(Self { connect, retry, max_message_size, client_id, channel, closed, metrics })
    }

    /// A snapshot of the client's transport metrics.
    pub(super) fn metrics(&self) -> TransportMetrics {
        self.metrics.snapshot()
    }

    pub(super) fn close(&self) {
        self.closed.send_replace(true);
        self.channel.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// The channel of the next attempt of the call of `scope`; with
    /// `download`, the response's bytes report the call's progress.
    fn call_channel(&self, scope: &CallScope, download: bool) -> Result<CallChannel> {
        let channel = {
            let mut guard = self.channel.lock().unwrap_or_else(|e| e.into_inner());
            if guard.is_none() {
                *guard = Some(self.connect.metered_channel(&self.metrics)?);
            }
            guard.clone().expect("set above")
        };
        Ok(CallChannel::new(channel, scope, download))
    }

    /// The stub of the next attempt of the call of `scope` (see
    /// [`Self::call_channel`]).
    fn stub(&self, scope: &CallScope, download: bool) -> Result<Stub> {
        Ok(DirectorGrpcClient::new(self.call_channel(scope, download)?)
            .max_decoding_message_size(self.max_message_size)
            .max_encoding_message_size(self.max_message_size))
    }

    /// The scope of a call `what` with `options`.
    pub(super) fn scope(&self, what: &str, options: &CallOptions) -> CallScope {
        CallScope::new(what, options, self.connect.call_timeout, &self.closed)
    }

    /// A request carrying the caller's `client_id` metadata, if any.
    pub(super) fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(id) = &self.client_id {
            request.metadata_mut().insert("client_id", id.clone());
        }
        request
    }

    /// The retry loop of this client's calls.
    fn retrying(&self) -> Retrying<'_> {
        Retrying {
            policy: &self.retry,
            peer: format!("the director at {}", self.connect.uri()),
            presents_certificate: self.connect.presents_certificate(),
            metrics: &self.metrics,
        }
    }

    /// Runs `call` until it succeeds, fails for good, the retry budget is
    /// spent, or `scope` ends it (time limit, cancel token, progress, close).
    pub(super) async fn with_retry<T, F, Fut>(&self, scope: &CallScope, download: bool, call: F) -> Result<T>
    where
        F: FnMut(Stub) -> Fut,
        Fut: Future<Output = Result<T, AttemptError>>,
    {
        self.retrying().run(scope, || self.stub(scope, download), call).await
    }

    /// A unary call to `path` in `scope` whose response is read from the
    /// HTTP/2 body with the tensor data at `tensor_path` 64-byte aligned
    /// (src/aligned/unary.rs); its bytes report the call's progress.
    pub(super) async fn unary_aligned<Req, Resp>(
        &self,
        scope: &CallScope,
        path: &'static str,
        tensor_path: &'static [u32],
        message: Req,
    ) -> Result<Resp>
    where
        Req: prost::Message + Clone,
        Resp: prost::Message + Default,
    {
        let max = self.max_message_size;
        let call = |channel| {
            let request = self.request(message.clone());
            async move {
                let response = crate::aligned::unary::call(channel, path, request, tensor_path, max).await;
                response.map(tonic::Response::into_inner).map_err(AttemptError::from)
            }
        };
        self.retrying().run(scope, || self.call_channel(scope, true), call).await
    }

    /// A unary call `what` with retries and per-call `options`.
    pub(super) async fn unary<Req, Resp, F, Fut>(
        &self,
        what: &str,
        options: &CallOptions,
        message: Req,
        call: F,
    ) -> Result<Resp>
    where
        Req: Clone,
        F: FnMut(Stub, Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        self.unary_in(&self.scope(what, options), false, message, call).await
    }

    /// A unary call in `scope`; with `download`, its response reports progress.
    pub(super) async fn unary_in<Req, Resp, F, Fut>(
        &self,
        scope: &CallScope,
        download: bool,
        message: Req,
        mut call: F,
    ) -> Result<Resp>
    where
        Req: Clone,
        F: FnMut(Stub, Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        self.with_retry(scope, download, |stub| {
            let request = self.request(message.clone());
            let fut = call(stub, request);
            async move { fut.await.map(tonic::Response::into_inner).map_err(AttemptError::from) }
        })
        .await
    }
}
