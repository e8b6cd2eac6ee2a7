//! GetExperimentData with bounded memory: the archive is read piece by piece
//! when the connection can take more, never ahead of it.
//!
//! Through tonic, each 2 MiB `ExperimentData` message is encoded whole into a
//! fresh buffer, and hyper pulls the next message before it has capacity to
//! send it; with the read-ahead channel before it, a download whose client
//! stops reading held about 10 MiB (100 such downloads: 1 GiB). This route
//! sends byte for byte what tonic would (OpenFL's 2 MiB messages: prefix,
//! `size`, `npbytes`), but as small body frames: the message head, then
//! [`PIECE_SIZE`] pieces read from the file only when hyper asks for the
//! next frame. A stalled download then holds about two pieces (one waiting
//! for send capacity, the unsent rest of the previous one); one whose client
//! advertised a large window but leaves its socket full holds at most h2's
//! send buffer (400 KiB) more.
//!
//! Across downloads, pieces read and not yet written to a socket are bounded
//! by a byte budget ([`DownloadBudget`]): each piece holds its share until h2
//! drops it, and over the budget downloads wait (backpressure, never an
//! out-of-memory). Every other method goes to tonic's generated service
//! unchanged.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::future::BoxFuture;
use http_body::Frame;
use http_body_util::StreamBody;
use prost::encoding::{encode_varint, encoded_len_varint};
use prost::Message;
use tokio::io::AsyncReadExt;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::metadata::MetadataMap;
use tonic::Status;

use super::server::Service;
use super::state::DirectorState;
use crate::method_route::{read_unary_request, MethodHandler, PREFIX_LEN};
use crate::proto::director::director_server::SERVICE_NAME;
use crate::proto::director::GetExperimentDataRequest;
use crate::stream::CHUNK_SIZE;

const PATH: &str = "/openfl.director.Director/GetExperimentData";
/// Largest GetExperimentDataRequest accepted (two names): RESOURCE_EXHAUSTED beyond.
const MAX_REQUEST_SIZE: usize = 64 << 10;
/// Bytes read from the archive per body frame.
const PIECE_SIZE: usize = 64 << 10;
/// `ExperimentData` field keys: `size` (1, varint), `npbytes` (2, bytes).
const SIZE_KEY: u8 = 1 << 3;
const NPBYTES_KEY: u8 = (2 << 3) | 2;

/// The byte budget shared by all downloads of one server: archive pieces
/// read and not yet written out.
#[derive(Clone, Debug)]
pub struct DownloadBudget {
    semaphore: Arc<Semaphore>,
}

impl DownloadBudget {
    /// A budget of `bytes` (at least one piece).
    pub fn new(bytes: usize) -> Self {
        let total = bytes.clamp(PIECE_SIZE, Semaphore::MAX_PERMITS);
        Self { semaphore: Arc::new(Semaphore::new(total)) }
    }

    async fn acquire(&self, bytes: usize) -> OwnedSemaphorePermit {
        let n = u32::try_from(bytes).expect("a piece is small");
        Arc::clone(&self.semaphore).acquire_many_owned(n).await.expect("the semaphore is never closed")
    }
}

/// What a download needs besides its archive.
#[derive(Clone)]
pub(super) struct Downloads {
    pub state: Arc<DirectorState>,
    pub budget: DownloadBudget,
    pub stopping: watch::Receiver<bool>,
}

/// An archive a download may send (checked by the service).
pub(super) struct Archive {
    pub file: tokio::fs::File,
    pub len: u64,
    pub experiment: String,
    pub collaborator: String,
}

/// GetExperimentData's handler: the server's checks, then the archive
/// streamed piece by piece under the downloads' budget.
pub(super) struct StreamedArchives {
    service: Arc<Service>,
    downloads: Downloads,
}

impl StreamedArchives {
    /// `service` checks GetExperimentData requests; `downloads` bounds them.
    pub fn new(service: Arc<Service>, downloads: Downloads) -> Self {
        Self { service, downloads }
    }
}

impl MethodHandler for StreamedArchives {
    const SERVICE: &'static str = SERVICE_NAME;
    const PATH: &'static str = PATH;

    fn answer(self: Arc<Self>, request: http::Request<Body>) -> BoxFuture<'static, Result<http::Response<Body>, Status>> {
        Box::pin(async move {
            let (parts, message) = read_unary_request(request, MAX_REQUEST_SIZE).await?;
            let message = GetExperimentDataRequest::decode(message)
                .map_err(|e| Status::invalid_argument(format!("GetExperimentDataRequest does not decode: {e}")))?;
            let request =
                tonic::Request::from_parts(MetadataMap::from_headers(parts.headers), parts.extensions, message);
            let archive = self.service.open_archive(request).await?;
            let body = ArchiveSender::new(archive, self.downloads.clone()).into_body();
            Ok(http::Response::builder()
                .status(200)
                .header("content-type", "application/grpc")
                .body(body)
                .expect("a valid static response head"))
        })
    }
}

/// gRPC prefix and `ExperimentData` fields up to the `npbytes` data of a
/// message carrying `n` bytes (n > 0).
fn message_head(n: usize) -> Bytes {
    let n64 = n as u64;
    let fields = 1 + encoded_len_varint(n64) + 1 + encoded_len_varint(n64);
    let mut head = BytesMut::with_capacity(PREFIX_LEN + fields);
    head.put_u8(0);
    head.put_u32(u32::try_from(fields + n).expect("a chunk is at most 2 MiB"));
    head.put_u8(SIZE_KEY);
    encode_varint(n64, &mut head);
    head.put_u8(NPBYTES_KEY);
    encode_varint(n64, &mut head);
    head.freeze()
}

/// Archive bytes that hold their share of the budget until dropped.
struct Piece {
    data: Vec<u8>,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Piece {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

/// One download's progress: the next frame is produced when asked for.
struct ArchiveSender {
    archive: Archive,
    downloads: Downloads,
    sent: u64,
    /// Bytes of the current message still to send.
    message_left: usize,
}

fn trailers(status: Option<Status>) -> Frame<Bytes> {
    let mut map = http::HeaderMap::new();
    match status {
        None => {
            map.insert("grpc-status", http::HeaderValue::from_static("0"));
        }
        Some(status) => {
            if status.add_header(&mut map).is_err() {
                map.insert("grpc-status", http::HeaderValue::from_static("13"));
            }
        }
    }
    Frame::trailers(map)
}

impl ArchiveSender {
    fn new(archive: Archive, downloads: Downloads) -> Self {
        Self { archive, downloads, sent: 0, message_left: 0 }
    }

    fn into_body(self) -> Body {
        let frames = futures_util::stream::unfold(Some(self), |sender| async move {
            let mut sender = sender?;
            let (frame, more) = sender.next_frame().await;
            Some((Ok::<_, Status>(frame), more.then_some(sender)))
        });
        Body::new(StreamBody::new(frames))
    }

    fn stopped(&self) -> bool {
        *self.downloads.stopping.borrow()
    }

    /// The next frame, and whether more follow.
    async fn next_frame(&mut self) -> (Frame<Bytes>, bool) {
        if self.stopped() {
            return (trailers(Some(super::server::shutting_down())), false);
        }
        if self.message_left == 0 {
            if self.sent == self.archive.len {
                let Archive { experiment, collaborator, .. } = &self.archive;
                log::info!("archive of {experiment:?} sent to {collaborator} ({} bytes)", self.sent);
                self.downloads.state.record_download(experiment, collaborator);
                return (trailers(None), false);
            }
            let n = (self.archive.len - self.sent).min(CHUNK_SIZE as u64) as usize;
            self.message_left = n;
            return (Frame::data(message_head(n)), true);
        }
        match self.next_piece().await {
            Ok(piece) => (Frame::data(piece), true),
            Err(status) => (trailers(Some(status)), false),
        }
    }

    async fn next_piece(&mut self) -> Result<Bytes, Status> {
        let n = self.message_left.min(PIECE_SIZE);
        let mut stopping = self.downloads.stopping.clone();
        let permit = tokio::select! {
            permit = self.downloads.budget.acquire(n) => permit,
            _ = stopping.wait_for(|s| *s) => return Err(super::server::shutting_down()),
        };
        let mut data = vec![0u8; n];
        self.archive.file.read_exact(&mut data).await.map_err(|e| {
            Status::internal(format!(
                "reading the archive of {:?} at byte {}: {e} (was it changed while being sent?)",
                self.archive.experiment, self.sent
            ))
        })?;
        self.message_left -= n;
        self.sent += n as u64;
        Ok(Bytes::from_owner(Piece { data, _permit: permit }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::director::ExperimentData;

    #[test]
    fn message_head_and_data_are_the_prost_encoding() {
        for n in [1usize, 127, 128, 16_383, 16_384, 1 << 20, CHUNK_SIZE] {
            let data = vec![7u8; n];
            let expected = ExperimentData { size: n as u32, npbytes: Bytes::from(data.clone()) }.encode_to_vec();
            let head = message_head(n);
            assert_eq!(head[0], 0);
            assert_eq!(u32::from_be_bytes(head[1..5].try_into().unwrap()) as usize, expected.len(), "n = {n}");
            let mut framed = head[PREFIX_LEN..].to_vec();
            framed.extend_from_slice(&data);
            assert_eq!(framed, expected, "n = {n}");
        }
    }

    #[tokio::test]
    async fn pieces_hold_the_budget_until_dropped() {
        let budget = DownloadBudget::new(2 * PIECE_SIZE);
        let in_use = || 2 * PIECE_SIZE - budget.semaphore.available_permits();
        let a = budget.acquire(PIECE_SIZE).await;
        let piece = Bytes::from_owner(Piece { data: vec![1; PIECE_SIZE], _permit: a });
        let _b = budget.acquire(PIECE_SIZE).await;
        assert_eq!(in_use(), 2 * PIECE_SIZE);
        let third = tokio::time::timeout(std::time::Duration::from_millis(50), budget.acquire(1)).await;
        assert!(third.is_err(), "over the budget, a download waits");
        let slice = piece.slice(10..20);
        drop(piece);
        assert_eq!(in_use(), 2 * PIECE_SIZE, "a slice still holds the piece");
        drop(slice);
        assert_eq!(in_use(), PIECE_SIZE);
        assert_eq!(DownloadBudget::new(0).semaphore.available_permits(), PIECE_SIZE, "at least one piece");
    }
}
