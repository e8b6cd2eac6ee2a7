//! A unary gRPC call whose response is read from the HTTP/2 body frames
//! straight into a [`Placement`] (see [`super::frames`]).
//!
//! Everything else follows tonic's client: the same request head, statuses
//! from a trailers-only response, from the trailers, or inferred from the
//! HTTP status; transport errors become statuses through
//! `Status::from_error`, as tonic does, so retries classify them alike.

use bytes::{BufMut, BytesMut};
#[cfg(test)]
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use prost::Message;
use tonic::body::Body;
use tonic::codegen::{http, Service};
use tonic::{Code, Status};

use super::frames::FrameReader;
use super::Placement;
use crate::method_route::PREFIX_LEN;

/// Calls `path` (`/<service>/<method>`) with `request` on `channel` (the
/// attempt's channel: src/call/channel.rs) and decodes the one response
/// message with tensor data (at `tensor_path`) 64-byte aligned. A response
/// over `max_size` bytes is RESOURCE_EXHAUSTED.
pub(crate) async fn call<C, B, Req, Resp>(
    channel: C,
    path: &'static str,
    request: tonic::Request<Req>,
    tensor_path: &'static [u32],
    max_size: usize,
) -> Result<tonic::Response<Resp>, Status>
where
    C: Service<http::Request<Body>, Response = http::Response<B>>,
    C::Error: Into<tonic::codegen::StdError>,
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: Into<tonic::codegen::StdError>,
    Req: Message,
    Resp: Message + Default,
{
    let (metadata, _, message) = request.into_parts();
    let mut framed = BytesMut::with_capacity(PREFIX_LEN + message.encoded_len());
    framed.put_u8(0);
    framed.put_u32(u32::try_from(message.encoded_len()).map_err(|_| Status::resource_exhausted("request too large"))?);
    message.encode(&mut framed).map_err(|e| Status::internal(format!("encoding the request: {e}")))?;
    let body = Body::new(Full::new(framed.freeze()));
    call_with_body(channel, path, metadata, body, tensor_path, max_size).await
}

/// [`call`] with a request body already framed as gRPC messages (e.g. a
/// client stream whose messages are sent without copying: see
/// `crate::aggregator::upload::framed_chunks`).
pub(crate) async fn call_with_body<C, B, Resp>(
    mut channel: C,
    path: &'static str,
    metadata: tonic::metadata::MetadataMap,
    body: Body,
    tensor_path: &'static [u32],
    max_size: usize,
) -> Result<tonic::Response<Resp>, Status>
where
    C: Service<http::Request<Body>, Response = http::Response<B>>,
    C::Error: Into<tonic::codegen::StdError>,
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: Into<tonic::codegen::StdError>,
    Resp: Message + Default,
{
    futures_util::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .map_err(|e| Status::from_error(e.into()))?;
    let request = http_request(path, metadata, body)?;
    let response = channel.call(request).await.map_err(|e| Status::from_error(e.into()))?;
    let (parts, body) = response.into_parts();
    if let Some(status) = Status::from_header_map(&parts.headers) {
        return match status.code() {
            Code::Ok => Err(Status::internal("Missing response message.")),
            _ => Err(status),
        };
    }
    let (placement, trailers) = read_body(body, tensor_path, max_size).await?;
    check_status(trailers.as_ref(), parts.status)?;
    let placement = placement.ok_or_else(|| Status::internal("Missing response message."))?;
    let message = super::decode::<Resp>(placement.finish())
        .map_err(|e| Status::internal(format!("failed to decode Protobuf message: {e}")))?;
    let mut headers = parts.headers;
    headers.extend(trailers.unwrap_or_default());
    let metadata = tonic::metadata::MetadataMap::from_headers(headers);
    Ok(tonic::Response::from_parts(metadata, message, parts.extensions.into()))
}

fn http_request(
    path: &'static str,
    metadata: tonic::metadata::MetadataMap,
    body: Body,
) -> Result<http::Request<Body>, Status> {
    let mut request = http::Request::builder()
        .method(http::Method::POST)
        .uri(http::Uri::from_static(path))
        .version(http::Version::HTTP_2)
        .body(body)
        .map_err(|e| Status::internal(format!("building the request: {e}")))?;
    let headers = request.headers_mut();
    for (name, value) in metadata.into_headers().iter() {
        if !is_reserved(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/grpc"));
    Ok(request)
}

/// Headers gRPC owns, which metadata may not set (tonic drops them too).
fn is_reserved(name: &http::HeaderName) -> bool {
    matches!(name.as_str(), "te" | "user-agent" | "content-type" | "grpc-message" | "grpc-message-type" | "grpc-status")
}

/// The status the trailers (or, without them, the HTTP status) give.
fn check_status(trailers: Option<&http::HeaderMap>, http_status: http::StatusCode) -> Result<(), Status> {
    if let Some(status) = trailers.and_then(Status::from_header_map) {
        return if status.code() == Code::Ok { Ok(()) } else { Err(status) };
    }
    let code = match http_status {
        http::StatusCode::BAD_REQUEST => Code::Internal,
        http::StatusCode::UNAUTHORIZED => Code::Unauthenticated,
        http::StatusCode::FORBIDDEN => Code::PermissionDenied,
        http::StatusCode::NOT_FOUND => Code::Unimplemented,
        http::StatusCode::TOO_MANY_REQUESTS
        | http::StatusCode::BAD_GATEWAY
        | http::StatusCode::SERVICE_UNAVAILABLE
        | http::StatusCode::GATEWAY_TIMEOUT => Code::Unavailable,
        http::StatusCode::OK => Code::Internal,
        _ => Code::Unknown,
    };
    Err(Status::new(code, format!("grpc-status header missing, mapped from HTTP status code {}", http_status.as_u16())))
}

async fn read_body<B>(
    mut body: B,
    tensor_path: &'static [u32],
    max_size: usize,
) -> Result<(Option<Placement>, Option<http::HeaderMap>), Status>
where
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: Into<tonic::codegen::StdError>,
{
    let mut reader = FrameReader::new(tensor_path, max_size);
    let mut message = None;
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Status::from_error(e.into()))?;
        match frame.into_data() {
            Ok(data) => {
                reader.feed(&data)?;
                take_one(&mut reader, &mut message)?;
            }
            Err(frame) => {
                if let Ok(map) = frame.into_trailers() {
                    trailers = Some(map);
                }
            }
        }
    }
    if let Some(status) = trailers.as_ref().and_then(Status::from_header_map) {
        if status.code() != Code::Ok {
            return Err(status);
        }
    }
    reader.finish()?;
    Ok((message, trailers))
}

/// Moves a message the reader completed to `message`; a second one is an error.
fn take_one(reader: &mut FrameReader, message: &mut Option<Placement>) -> Result<(), Status> {
    while let Some(next) = reader.next_message() {
        if message.replace(next).is_some() {
            return Err(Status::internal("a unary response carries more than one message"));
        }
    }
    Ok(())
}

/// The one message of `chunks` (a response body), for tests.
#[cfg(test)]
pub(super) fn read_all(chunks: &[Bytes], tensor_path: &'static [u32], max_size: usize) -> Result<Option<Placement>, Status> {
    let mut reader = FrameReader::new(tensor_path, max_size);
    let mut message = None;
    for chunk in chunks {
        reader.feed(chunk)?;
        take_one(&mut reader, &mut message)?;
    }
    reader.finish()?;
    Ok(message)
}
