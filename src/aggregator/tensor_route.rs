//! GetAggregatedTensor answered without copying the tensor.
//!
//! tonic encodes a unary response into one buffer before sending it: for a
//! large tensor that is a full copy into fresh memory, made before the first
//! byte leaves. This route sends the same bytes as gRPC framing around the
//! tensor's own `Bytes`: the small fields first, then the data as it is, so
//! sending starts at once and the server holds no second copy. Every other
//! method goes to tonic's generated service unchanged.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use futures_util::future::BoxFuture;
use http_body::Frame;
use http_body_util::StreamBody;
use prost::Message;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::Status;

use super::server::Service;
use super::upload::tensor_head;
use crate::method_route::{read_unary_request, MethodHandler, PREFIX_LEN};
use crate::proto::aggregator::aggregator_server::SERVICE_NAME;
use crate::proto::aggregator::{GetAggregatedTensorRequest, GetAggregatedTensorResponse};

const PATH: &str = "/openfl.aggregator.Aggregator/GetAggregatedTensor";
/// `GetAggregatedTensorResponse.tensor` field number.
const TENSOR_FIELD: u32 = 3;
/// GetAggregatedTensor's handler: the server's checks and logic, then the
/// response framed around the tensor's own bytes.
pub(super) struct ZeroCopyTensors(pub(super) Arc<Service>);

impl MethodHandler for ZeroCopyTensors {
    const SERVICE: &'static str = SERVICE_NAME;
    const PATH: &'static str = PATH;

    fn answer(self: Arc<Self>, request: http::Request<Body>) -> BoxFuture<'static, Result<http::Response<Body>, Status>> {
        Box::pin(async move {
            let (parts, message) = read_unary_request(request, self.0.max_message_size()).await?;
            let request = GetAggregatedTensorRequest::decode(message)
                .map_err(|e| Status::invalid_argument(format!("request does not decode: {e}")))?;
            let peer_certs = crate::tls::peer_certificate(&parts.extensions);
            let response = self.0.aggregated_tensor(peer_certs, request).await?;
            Ok(framed(response))
        })
    }
}

/// The response as gRPC framing: prefix and small fields, the tensor data
/// (not copied), then trailers with status OK. Byte for byte what tonic
/// would send.
fn framed(mut response: GetAggregatedTensorResponse) -> http::Response<Body> {
    let tensor = response.tensor.take().unwrap_or_default();
    let data = tensor.data_bytes.clone();
    let fields = response.encode_to_vec();
    let head = tensor_head(TENSOR_FIELD, &tensor);
    let len = fields.len() + head.len() + data.len();
    let mut first = BytesMut::with_capacity(PREFIX_LEN + fields.len() + head.len());
    first.put_u8(0);
    first.put_u32(u32::try_from(len).expect("checked against the maximum message size"));
    first.put_slice(&fields);
    first.put_slice(&head);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let frames = [Frame::data(first.freeze()), Frame::data(data), Frame::trailers(trailers)]
        .into_iter()
        .filter(|f| !matches!(f.data_ref(), Some(d) if d.is_empty()))
        .map(Ok::<_, Status>);
    let body = StreamBody::new(futures_util::stream::iter(frames));
    http::Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .body(Body::new(body))
        .expect("a valid static response head")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use crate::proto::aggregator::MessageHeader;
    use crate::proto::{MetadataProto, NamedTensor};

    async fn body_bytes(response: http::Response<Body>) -> (Bytes, Option<http::HeaderMap>) {
        let collected = response.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned();
        (collected.to_bytes(), trailers)
    }

    #[tokio::test]
    async fn framing_matches_the_prost_encoding() {
        for len in [0usize, 5, 100_000] {
            let response = GetAggregatedTensorResponse {
                header: Some(MessageHeader { sender: "agg".into(), receiver: "col1".into(), ..Default::default() }),
                round_number: 4,
                tensor: Some(NamedTensor {
                    name: "w".into(),
                    tags: vec!["model".into()],
                    transformer_metadata: vec![MetadataProto { int_list: vec![3, 4], ..Default::default() }],
                    data_bytes: Bytes::from(vec![9u8; len]),
                    ..Default::default()
                }),
            };
            let expected = response.encode_to_vec();
            let (bytes, trailers) = body_bytes(framed(response)).await;
            assert_eq!(bytes[0], 0);
            assert_eq!(u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize, expected.len());
            assert_eq!(&bytes[5..], &expected[..], "tensor of {len} bytes");
            assert_eq!(trailers.unwrap()["grpc-status"], "0");
        }
    }
}
