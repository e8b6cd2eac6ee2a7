//! One method of a generated tonic service answered at the HTTP level by a
//! handler of our own, for answers that tonic would copy or buffer whole
//! (GetAggregatedTensor's tensor, GetExperimentData's archive); every other
//! method goes to the generated service unchanged.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Limited};
use tonic::body::Body;
use tonic::codegen::{http, Service as TowerService};
use tonic::server::NamedService;
use tonic::Status;

/// gRPC message prefix: compressed flag and big-endian length.
pub(crate) const PREFIX_LEN: usize = 5;

/// Answers the calls of one method in place of the generated service.
pub(crate) trait MethodHandler: Send + Sync + 'static {
    /// The gRPC service name (`openfl.aggregator.Aggregator`, ...).
    const SERVICE: &'static str;
    /// The path of the method taken over (`/<service>/<method>`).
    const PATH: &'static str;

    /// The HTTP response to one call; an error becomes a gRPC status.
    fn answer(self: Arc<Self>, request: http::Request<Body>) -> BoxFuture<'static, Result<http::Response<Body>, Status>>;
}

/// The generated service `S` with `H::PATH` answered by `H`.
pub(crate) struct MethodRoute<S, H> {
    generated: S,
    handler: Arc<H>,
}

impl<S, H> MethodRoute<S, H> {
    /// Wraps `generated`; `handler` answers `H::PATH`.
    pub(crate) fn new(generated: S, handler: H) -> Self {
        Self { generated, handler: Arc::new(handler) }
    }
}

impl<S: Clone, H> Clone for MethodRoute<S, H> {
    fn clone(&self) -> Self {
        Self { generated: self.generated.clone(), handler: Arc::clone(&self.handler) }
    }
}

impl<S, H: MethodHandler> NamedService for MethodRoute<S, H> {
    const NAME: &'static str = H::SERVICE;
}

impl<S, H> TowerService<http::Request<Body>> for MethodRoute<S, H>
where
    S: TowerService<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
    H: MethodHandler,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.generated.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() != H::PATH {
            return Box::pin(self.generated.call(request));
        }
        let answer = Arc::clone(&self.handler).answer(request);
        Box::pin(async move { Ok(answer.await.unwrap_or_else(|status| status.into_http())) })
    }
}

/// Refuses a request whose messages are compressed (`grpc-encoding` other
/// than identity): our handlers read messages uncompressed.
pub(crate) fn refuse_compression(headers: &http::HeaderMap) -> Result<(), Status> {
    match headers.get("grpc-encoding") {
        Some(encoding) if encoding != "identity" => {
            Err(Status::unimplemented(format!("compression {encoding:?} is not supported")))
        }
        _ => Ok(()),
    }
}

/// The one uncompressed gRPC message of a unary request, at most `max_size`
/// bytes, with the request's head.
pub(crate) async fn read_unary_request(
    request: http::Request<Body>,
    max_size: usize,
) -> Result<(http::request::Parts, Bytes), Status> {
    let (parts, body) = request.into_parts();
    refuse_compression(&parts.headers)?;
    let collected = Limited::new(body, max_size.saturating_add(PREFIX_LEN))
        .collect()
        .await
        .map_err(|e| {
            crate::metrics::refused(
                crate::metrics::Refusal::Limits,
                Status::resource_exhausted(format!("request body: {e}")),
            )
        })?
        .to_bytes();
    if collected.len() < PREFIX_LEN {
        return Err(Status::invalid_argument("request body is shorter than a gRPC message prefix"));
    }
    if collected[0] != 0 {
        return Err(Status::unimplemented("compressed requests are not supported"));
    }
    let len = u32::from_be_bytes(collected[1..PREFIX_LEN].try_into().expect("4 bytes")) as usize;
    if collected.len() != PREFIX_LEN + len {
        return Err(Status::invalid_argument(format!(
            "request body holds {} bytes after the prefix, which announces {len}",
            collected.len() - PREFIX_LEN
        )));
    }
    Ok((parts, collected.slice(PREFIX_LEN..)))
}
