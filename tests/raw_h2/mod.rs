//! A gRPC peer that speaks HTTP/2 frames itself (the `h2` crate), for the
//! tests that play a cancelling, slow or hostile client: it sends HEADERS,
//! DATA and RST_STREAM exactly when and how the test says, which no gRPC
//! library lets a caller do.
//!
//! Plain TCP only (the servers under test run without TLS for these tests:
//! the frame handling under attack is the same under TLS).

#![allow(dead_code)]

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use h2::client::{ResponseFuture, SendRequest};
use h2::{Reason, SendStream};
use prost::Message;
use tokio::net::TcpStream;
use tonic::codegen::http;

/// An HTTP/2 connection to 127.0.0.1:`port` (plaintext, prior knowledge).
pub async fn connect(port: u16) -> SendRequest<Bytes> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.expect("connecting to the server");
    tcp.set_nodelay(true).expect("TCP_NODELAY");
    let (send, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    send
}

/// One call in flight: the request body's send half and the response.
pub struct Call {
    pub body: SendStream<Bytes>,
    pub response: ResponseFuture,
}

/// Opens a gRPC call to `path` (e.g. `/openfl.aggregator.Aggregator/GetTasks`)
/// with extra request metadata; the body stays open.
pub async fn start_call(send: &mut SendRequest<Bytes>, path: &str, metadata: &[(&str, &str)]) -> Call {
    let mut builder = http::Request::builder()
        .method("POST")
        .uri(format!("http://127.0.0.1{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in metadata {
        builder = builder.header(*name, *value);
    }
    let request = builder.body(()).expect("a valid request head");
    let ready = send.clone().ready().await.expect("connection ready for a new stream");
    *send = ready;
    let (response, body) = send.send_request(request, false).expect("sending HEADERS");
    Call { body, response }
}

impl Call {
    /// Sends `message` as one length-prefixed gRPC message in one DATA frame.
    pub fn send_message(&mut self, message: &impl Message, end_stream: bool) {
        self.send_bytes(grpc_frame(message), end_stream);
    }

    /// Sends raw DATA (flow control permitting: the windows are large).
    pub fn send_bytes(&mut self, bytes: Bytes, end_stream: bool) {
        self.body.reserve_capacity(bytes.len());
        self.body.send_data(bytes, end_stream).expect("sending DATA");
    }

    /// Ends the request body with RST_STREAM(`reason`) instead of END_STREAM.
    pub fn reset(&mut self, reason: Reason) {
        self.body.send_reset(reason);
    }

    /// The response's gRPC status code (from trailers, or from a
    /// trailers-only response), waiting up to `secs`.
    pub async fn grpc_status(self, secs: u64) -> Option<i32> {
        let response = tokio::time::timeout(Duration::from_secs(secs), self.response)
            .await
            .expect("the server answers in time")
            .ok()?;
        if let Some(code) = status_of(response.headers()) {
            return Some(code);
        }
        let mut body = response.into_body();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.ok()?;
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        let trailers = body.trailers().await.ok()??;
        status_of(&trailers)
    }
}

fn status_of(headers: &http::HeaderMap) -> Option<i32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// `message` as a gRPC message: flag 0 (not compressed), big-endian length, bytes.
pub fn grpc_frame(message: &impl Message) -> Bytes {
    let encoded = message.encode_to_vec();
    let mut framed = BytesMut::with_capacity(5 + encoded.len());
    framed.put_u8(0);
    framed.put_u32(encoded.len() as u32);
    framed.put_slice(&encoded);
    framed.freeze()
}
