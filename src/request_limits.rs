//! Request bodies capped by method, checked as the bytes arrive.
//!
//! tonic checks one size for every method of a service, and only after the
//! body has announced it, so a small unary call (GetTasks) could carry a
//! message of the full 1 GiB upload size, which tonic buffers before the
//! handler sees its header. Here every request body is read through a
//! [`CappedBody`] that follows the gRPC framing (a 5-byte prefix with the
//! message length, then the message): a message that announces more than
//! its method allows, or a body that sends more, ends the call with
//! RESOURCE_EXHAUSTED at once, before it is buffered. Streamed uploads
//! (client-streaming methods) may carry messages up to the maximum message
//! size; every other request is one small message.
//!
//! The bytes of streamed uploads in flight across the server can be held to
//! a memory budget ([`UploadBudget`]): each upload reserves what it has
//! received until its call ends; an upload that would go over the budget ends
//! with RESOURCE_EXHAUSTED instead of growing the process.
//!
//! Oversize responses get the same code: tonic reports an encoded message
//! over the limit as OUT_OF_RANGE, which [`oversize_as_resource_exhausted`]
//! rewrites in the trailers.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;
use tonic::codegen::http;
use tokio::sync::Semaphore;
use tonic::Status;

use crate::metrics::{refused, Refusal};

/// gRPC message prefix: compressed flag and big-endian length.
const PREFIX_LEN: usize = 5;

/// Which request bodies may be how large.
#[derive(Clone, Debug)]
pub struct RequestRules {
    /// Largest body of a request that is not a streamed upload, framing included.
    pub unary_limit: usize,
    /// Largest message of a streamed upload.
    pub message_limit: usize,
    /// Paths of the client-streaming methods (streamed uploads).
    pub uploads: &'static [&'static str],
    /// The memory budget of streamed uploads in flight, if they are held in
    /// memory.
    pub budget: Option<Arc<UploadBudget>>,
}

/// Bytes of streamed uploads in flight across one server.
#[derive(Debug)]
pub struct UploadBudget {
    bytes: Arc<Semaphore>,
    total: usize,
}

impl UploadBudget {
    /// A budget of `total` bytes.
    pub fn new(total: usize) -> Arc<Self> {
        let total = total.min(Semaphore::MAX_PERMITS);
        Arc::new(Self { bytes: Arc::new(Semaphore::new(total)), total })
    }

    /// Bytes not reserved by any upload.
    #[cfg(test)]
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }
}

/// What one upload holds of the budget; given back when dropped.
struct Reservation {
    budget: Arc<UploadBudget>,
    held: usize,
}

impl Reservation {
    /// Reserves `len` more bytes, or says the budget is spent.
    fn grow(&mut self, len: usize, method: &str) -> Result<(), Status> {
        let spent = || {
            Status::resource_exhausted(format!(
                "{method}: uploads in flight would exceed the server's memory budget of {} bytes \
                 (this upload holds {} bytes); retry later",
                self.budget.total, self.held
            ))
        };
        let permits = u32::try_from(len).map_err(|_| spent())?;
        self.budget.bytes.try_acquire_many(permits).map_err(|_| spent())?.forget();
        self.held += len;
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.bytes.add_permits(self.held);
    }
}

impl RequestRules {
    /// `request` with its body capped as its method allows.
    pub fn apply(&self, request: http::Request<Body>) -> http::Request<Body> {
        let path = request.uri().path();
        let upload = self.uploads.contains(&path);
        let cap = if upload {
            Cap { total: None, message: self.message_limit }
        } else {
            Cap { total: Some(self.unary_limit), message: self.unary_limit.saturating_sub(PREFIX_LEN) }
        };
        let reservation = self
            .budget
            .as_ref()
            .filter(|_| upload)
            .map(|budget| Reservation { budget: Arc::clone(budget), held: 0 });
        let method = path.rsplit('/').next().unwrap_or_default().to_string();
        request.map(|body| {
            Body::new(CappedBody { inner: body, cap, method, framing: Framing::default(), reservation })
        })
    }
}

#[derive(Clone, Copy, Debug)]
struct Cap {
    /// Bound on the whole body, if any.
    total: Option<usize>,
    /// Bound on each message.
    message: usize,
}

/// Where the reader is in the gRPC framing.
#[derive(Debug, Default)]
struct Framing {
    seen: usize,
    prefix: [u8; PREFIX_LEN],
    prefix_len: usize,
    /// Message bytes still to come before the next prefix.
    remaining: usize,
}

impl Framing {
    /// Follows `data` through the framing; the first message that announces
    /// more than `cap.message`, or a body over `cap.total`, is an error.
    fn observe(&mut self, mut data: &[u8], cap: Cap, method: &str) -> Result<(), Status> {
        self.seen = self.seen.saturating_add(data.len());
        if let Some(total) = cap.total.filter(|total| self.seen > *total) {
            return Err(Status::resource_exhausted(format!(
                "{method} request body too large: over {total} bytes, the limit for requests that are not streamed uploads"
            )));
        }
        while !data.is_empty() {
            if self.remaining > 0 {
                let skip = self.remaining.min(data.len());
                self.remaining -= skip;
                data.advance(skip);
                continue;
            }
            let take = (PREFIX_LEN - self.prefix_len).min(data.len());
            self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&data[..take]);
            self.prefix_len += take;
            data.advance(take);
            if self.prefix_len == PREFIX_LEN {
                self.prefix_len = 0;
                let len = u32::from_be_bytes(self.prefix[1..].try_into().expect("4 bytes")) as usize;
                if len > cap.message {
                    return Err(Status::resource_exhausted(format!(
                        "{method} request message too large: {len} bytes, the limit is {} bytes",
                        cap.message
                    )));
                }
                self.remaining = len;
            }
        }
        Ok(())
    }
}

/// A request body that ends with RESOURCE_EXHAUSTED once it goes over its
/// cap or the upload budget.
struct CappedBody {
    inner: Body,
    cap: Cap,
    method: String,
    framing: Framing,
    reservation: Option<Reservation>,
}

impl HttpBody for CappedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame {
            if let Some(data) = frame.data_ref() {
                let over = |status| refused(Refusal::Limits, status);
                this.framing.observe(data, this.cap, &this.method).map_err(over)?;
                if let Some(reservation) = &mut this.reservation {
                    reservation.grow(data.len(), &this.method).map_err(over)?;
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Trailers whose status is tonic's "message length too large" OUT_OF_RANGE,
/// rewritten as RESOURCE_EXHAUSTED (what gRPC's C core and this library
/// answer for every oversize message).
pub fn oversize_as_resource_exhausted(trailers: &mut http::HeaderMap) {
    let out_of_range = trailers.get("grpc-status").is_some_and(|code| code == "11");
    let oversize = trailers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .is_some_and(|m| m.contains("message%20length%20too%20large") || m.contains("message length too large"));
    if out_of_range && oversize {
        trailers.insert("grpc-status", http::HeaderValue::from_static("8"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNARY: Cap = Cap { total: Some(100), message: 95 };

    fn framed(len: usize) -> Vec<u8> {
        let mut out = vec![0u8];
        out.extend_from_slice(&(len as u32).to_be_bytes());
        out.extend(std::iter::repeat(7u8).take(len));
        out
    }

    #[test]
    fn a_message_within_the_cap_passes_in_any_split() {
        let body = framed(95);
        for split in [1, 3, 5, 6, 50, 100] {
            let mut framing = Framing::default();
            for piece in body.chunks(split) {
                framing.observe(piece, UNARY, "GetTasks").unwrap();
            }
        }
    }

    #[test]
    fn an_announced_oversize_message_is_refused_from_its_prefix() {
        let mut framing = Framing::default();
        let e = framing.observe(&framed(256 << 20)[..5], UNARY, "GetTasks").unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert!(e.message().contains("GetTasks"), "{}", e.message());
    }

    #[test]
    fn a_body_over_the_total_is_refused() {
        let mut framing = Framing::default();
        framing.observe(&framed(10), UNARY, "GetTasks").unwrap();
        let e = framing.observe(&framed(90), UNARY, "GetTasks").unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    }

    #[test]
    fn uploads_check_each_message() {
        let upload = Cap { total: None, message: 10 };
        let mut framing = Framing::default();
        for _ in 0..100 {
            framing.observe(&framed(10), upload, "SendLocalTaskResults").unwrap();
        }
        assert!(framing.observe(&framed(11), upload, "SendLocalTaskResults").is_err());
    }

    #[test]
    fn reservations_are_bounded_and_given_back() {
        let budget = UploadBudget::new(100);
        let mut first = Reservation { budget: Arc::clone(&budget), held: 0 };
        first.grow(60, "SendLocalTaskResults").unwrap();
        let mut second = Reservation { budget: Arc::clone(&budget), held: 0 };
        let e = second.grow(50, "SendLocalTaskResults").unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        second.grow(40, "SendLocalTaskResults").unwrap();
        assert_eq!(budget.available(), 0);
        drop(first);
        drop(second);
        assert_eq!(budget.available(), 100);
    }

    #[test]
    fn tonic_oversize_trailers_become_resource_exhausted() {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("11"));
        trailers.insert(
            "grpc-message",
            http::HeaderValue::from_static("Error,%20encoded%20message%20length%20too%20large"),
        );
        oversize_as_resource_exhausted(&mut trailers);
        assert_eq!(trailers["grpc-status"], "8");
        let mut other = http::HeaderMap::new();
        other.insert("grpc-status", http::HeaderValue::from_static("11"));
        oversize_as_resource_exhausted(&mut other);
        assert_eq!(other["grpc-status"], "11");
    }
}
