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

    /// Sends raw DATA unless the server has already ended the stream (a
    /// server may refuse before the body is complete); says whether it did.
    pub fn offer_bytes(&mut self, bytes: Bytes, end_stream: bool) -> bool {
        self.body.reserve_capacity(bytes.len());
        self.body.send_data(bytes, end_stream).is_ok()
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

/// HTTP/2 spoken frame by frame over plain TCP, for peers that break the
/// rules no library lets a client break (e.g. opening more streams than the
/// server's SETTINGS_MAX_CONCURRENT_STREAMS).
pub struct RawFrames {
    tcp: TcpStream,
    buf: BytesMut,
}

/// One received frame: type, flags, stream id, payload.
#[derive(Debug)]
pub struct RawFrame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Bytes,
}

pub const FRAME_HEADERS: u8 = 1;
pub const FRAME_RST_STREAM: u8 = 3;
pub const FRAME_SETTINGS: u8 = 4;
pub const FRAME_GOAWAY: u8 = 7;
pub const FLAG_END_HEADERS: u8 = 4;
/// RST_STREAM error code REFUSED_STREAM.
pub const REFUSED_STREAM: u32 = 7;

impl RawFrames {
    /// Connects to 127.0.0.1:`port` and sends the client preface and an
    /// empty SETTINGS frame.
    pub async fn connect(port: u16) -> Self {
        use tokio::io::AsyncWriteExt;
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.expect("connecting to the server");
        tcp.set_nodelay(true).expect("TCP_NODELAY");
        tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.expect("sending the preface");
        let mut raw = Self { tcp, buf: BytesMut::new() };
        raw.write_frame(FRAME_SETTINGS, 0, 0, &[]).await;
        raw
    }

    /// Sends one frame.
    pub async fn write_frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let mut frame = BytesMut::with_capacity(9 + payload.len());
        frame.put_uint(payload.len() as u64, 3);
        frame.put_u8(kind);
        frame.put_u8(flags);
        frame.put_u32(stream);
        frame.put_slice(payload);
        self.tcp.write_all(&frame).await.expect("sending a frame");
    }

    /// Opens stream `stream` (odd) with a gRPC request HEADERS frame for
    /// `path`; the request body stays open.
    pub async fn open_stream(&mut self, stream: u32, path: &str) {
        let block = request_header_block(path);
        self.write_frame(FRAME_HEADERS, FLAG_END_HEADERS, stream, &block).await;
    }

    /// The next frame; `None` when the server closed the connection. A
    /// SETTINGS frame from the server is acknowledged on the way.
    pub async fn read_frame(&mut self) -> Option<RawFrame> {
        use tokio::io::AsyncReadExt;
        loop {
            if self.buf.len() >= 9 {
                let len = ((self.buf[0] as usize) << 16) | ((self.buf[1] as usize) << 8) | self.buf[2] as usize;
                if self.buf.len() >= 9 + len {
                    let head = self.buf.split_to(9);
                    let payload = self.buf.split_to(len).freeze();
                    let stream = u32::from_be_bytes(head[5..9].try_into().unwrap()) & 0x7fff_ffff;
                    let frame = RawFrame { kind: head[3], flags: head[4], stream, payload };
                    if frame.kind == FRAME_SETTINGS && frame.flags & 1 == 0 {
                        self.write_frame(FRAME_SETTINGS, 1, 0, &[]).await;
                    }
                    return Some(frame);
                }
            }
            match self.tcp.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}

/// An HPACK block (no Huffman, no indexing) for a gRPC POST to `path`.
fn request_header_block(path: &str) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &str) {
        assert!(s.len() < 127, "short strings only");
        out.push(s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    }
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http (static table)
    block.push(0x04); // :path, literal value
    string(&mut block, path);
    block.push(0x01); // :authority, literal value
    string(&mut block, "127.0.0.1");
    block.extend_from_slice(&[0x0f, 0x10]); // content-type (static index 31), literal value
    string(&mut block, "application/grpc");
    block.push(0x00); // te: trailers, new name
    string(&mut block, "te");
    string(&mut block, "trailers");
    block
}
