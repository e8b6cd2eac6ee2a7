//! Telling "the server speaks another protocol" from "the server is down".
//!
//! A client aimed at the wrong port or configured without TLS for a TLS
//! server (or the reverse) used to retry forever as if the server were
//! unreachable. No retry cures a protocol mismatch, so clients fail at once
//! with `ofl_code::ProtocolMismatch` when:
//! - the server's first bytes are not an HTTP/2 SETTINGS frame (every HTTP/2
//!   server starts so): a TLS record (plaintext client, TLS server), an
//!   HTTP/1 reply, anything else ([`PrefaceCheck`] reads them);
//! - the server answers a TLS ClientHello with something that is not TLS
//!   (TLS client, plaintext server) or refuses ALPN `h2` (src/connector.rs);
//! - HTTP/2 itself reports a connection-level protocol error.
//!
//! h2 keeps only the text of an I/O error's cause, so the error travels as
//! text with the [`MARKER`] prefix and is found again by [`mismatch_in`].

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Prefix of every protocol-mismatch message (found again in h2's text).
pub(crate) const MARKER: &str = "protocol mismatch: ";

/// The server does not speak the protocol this client expects.
#[derive(Debug)]
pub(crate) struct ProtocolMismatch(pub String);

impl fmt::Display for ProtocolMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{MARKER}{}", self.0)
    }
}

impl std::error::Error for ProtocolMismatch {}

impl ProtocolMismatch {
    /// As an I/O error (what connectors and streams return).
    pub(crate) fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }
}

/// Length of an HTTP/2 frame header: the first thing a server sends.
const FRAME_HEADER_LEN: usize = 9;
/// HTTP/2 frame type SETTINGS.
const SETTINGS: u8 = 0x4;

/// Whether `prefix` (the server's first bytes so far) can still start an
/// HTTP/2 server preface: a SETTINGS frame without ACK on stream 0, whose
/// length is a multiple of 6 and (in practice) below 64 KiB.
fn could_start_preface(prefix: &[u8]) -> bool {
    let byte_ok = |i: usize, ok: &dyn Fn(u8) -> bool| prefix.get(i).map_or(true, |b| ok(*b));
    let length_ok = prefix.len() < 3 || u32::from_be_bytes([0, prefix[0], prefix[1], prefix[2]]) % 6 == 0;
    byte_ok(0, &|b| b == 0)
        && length_ok
        && byte_ok(3, &|b| b == SETTINGS)
        && byte_ok(4, &|b| b & 0x1 == 0)
        && (5..FRAME_HEADER_LEN).all(|i| byte_ok(i, &|b| b == 0))
}

/// What is wrong with a server's first bytes, if they cannot start an
/// HTTP/2 server preface. `first` holds up to [`FRAME_HEADER_LEN`] bytes
/// (fewer when the server sent no more); `address` names the server.
/// Decided as early as the bytes allow: HTTP/2 parses a frame's length
/// from its first 3 bytes and would fail on its own terms first.
pub(crate) fn preface_mismatch(first: &[u8], address: &str, over_tls: bool) -> Option<ProtocolMismatch> {
    if could_start_preface(first) {
        return None;
    }
    let looks_like_tls = first.len() >= 2 && (0x14..=0x17).contains(&first[0]) && first[1] == 0x03;
    let message = if looks_like_tls && !over_tls {
        format!(
            "the server at {address} answered with TLS: it expects TLS and this client is configured \
             without it (insecure)"
        )
    } else if first.starts_with(b"HTTP/") {
        format!(
            "the server at {address} answered with HTTP/1 ({:?}): it is not an HTTP/2 gRPC server",
            String::from_utf8_lossy(first)
        )
    } else {
        format!(
            "the server at {address} does not speak HTTP/2 (gRPC): its first bytes are {}",
            first.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
        )
    };
    Some(ProtocolMismatch(message))
}

/// A stream to a server whose first [`FRAME_HEADER_LEN`] bytes are checked
/// to start an HTTP/2 server preface; a mismatch is a read error carrying
/// [`ProtocolMismatch`]. Costs nothing after those bytes.
pub(crate) struct PrefaceCheck<S> {
    inner: S,
    address: std::sync::Arc<str>,
    over_tls: bool,
    first: [u8; FRAME_HEADER_LEN],
    seen: usize,
}

impl<S> PrefaceCheck<S> {
    pub(crate) fn new(inner: S, address: std::sync::Arc<str>, over_tls: bool) -> Self {
        Self { inner, address, over_tls, first: [0; FRAME_HEADER_LEN], seen: 0 }
    }

    fn checking(&self) -> bool {
        self.seen < FRAME_HEADER_LEN
    }

    /// Records the bytes just read (`fresh`, empty at end of file) and says
    /// whether they already betray another protocol.
    fn inspect(&mut self, fresh: &[u8]) -> Option<ProtocolMismatch> {
        let take = fresh.len().min(FRAME_HEADER_LEN - self.seen);
        self.first[self.seen..self.seen + take].copy_from_slice(&fresh[..take]);
        self.seen += take;
        if fresh.is_empty() {
            // End of file: an empty greeting is a plain close (retried: the
            // server may be restarting); a short one is judged as it is.
            let short = self.seen > 0 && self.seen < FRAME_HEADER_LEN;
            self.seen = FRAME_HEADER_LEN;
            return short.then(|| self.short_greeting()).flatten();
        }
        let verdict = preface_mismatch(&self.first[..self.seen], &self.address, self.over_tls);
        if verdict.is_some() {
            self.seen = FRAME_HEADER_LEN; // judged once
        }
        verdict
    }

    /// A greeting cut before a whole frame header: not HTTP/2 either.
    fn short_greeting(&self) -> Option<ProtocolMismatch> {
        let seen = &self.first[..self.seen.min(FRAME_HEADER_LEN)];
        preface_mismatch(seen, &self.address, self.over_tls).or_else(|| {
            Some(ProtocolMismatch(format!(
                "the server at {} closed the connection after {} bytes, before an HTTP/2 frame",
                self.address,
                seen.len()
            )))
        })
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PrefaceCheck<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.checking() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let fresh = buf.filled()[before..].to_vec();
            if let Some(mismatch) = this.inspect(&fresh) {
                buf.set_filled(before);
                return Poll::Ready(Err(mismatch.into_io()));
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PrefaceCheck<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The protocol mismatch a failed call's error chain reports, if any: our
/// own error (from the connector) or its text kept by h2, or a
/// connection-level HTTP/2 protocol error.
pub(crate) fn mismatch_in(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<ProtocolMismatch>() {
            return Some(found.0.clone());
        }
        let text = e.to_string();
        if let Some(at) = text.find(MARKER) {
            return Some(text[at + MARKER.len()..].to_string());
        }
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            if let Some(found) = incurable_h2_error(h2) {
                return Some(found);
            }
        }
        current = e.source();
    }
    None
}

/// An HTTP/2 connection error no retry cures: a protocol violation detected
/// by our side, or one the server reports in its GOAWAY.
fn incurable_h2_error(error: &h2::Error) -> Option<String> {
    use h2::Reason;
    let reason = error.reason()?;
    let incurable = [
        Reason::PROTOCOL_ERROR,
        Reason::FRAME_SIZE_ERROR,
        Reason::COMPRESSION_ERROR,
        Reason::HTTP_1_1_REQUIRED,
        Reason::INADEQUATE_SECURITY,
    ]
    .contains(&reason);
    let connection_level = error.is_go_away() || error.is_library();
    (incurable && connection_level && !error.is_io()).then(|| format!("HTTP/2 connection error: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_settings_frame_is_a_server_preface() {
        let settings = [0, 0, 12, SETTINGS, 0, 0, 0, 0, 0];
        assert!(preface_mismatch(&settings, "a:1", false).is_none());
        assert!(preface_mismatch(&[0, 0, 0, SETTINGS, 0, 0, 0, 0, 0], "a:1", true).is_none());
    }

    #[test]
    fn other_greetings_are_named() {
        let tls_alert = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32];
        let m = preface_mismatch(&tls_alert, "a:1", false).unwrap().0;
        assert!(m.contains("answered with TLS"), "{m}");
        let m = preface_mismatch(b"HTTP/1.1 ", "a:1", false).unwrap().0;
        assert!(m.contains("HTTP/1"), "{m}");
        let m = preface_mismatch(&[0, 0, 4, 0x8, 0, 0, 0, 0, 0], "a:1", false).unwrap().0;
        assert!(m.contains("first bytes are 00 00 04 08"), "{m}");
        let settings_ack = [0, 0, 0, SETTINGS, 1, 0, 0, 0, 0];
        assert!(preface_mismatch(&settings_ack, "a:1", false).is_some());
        // Judged from the first bytes, before a whole frame header.
        assert!(preface_mismatch(&[0x15, 0x03], "a:1", false).is_some());
        assert!(preface_mismatch(&[0, 0], "a:1", false).is_none());
    }

    #[test]
    fn the_marker_is_found_in_plain_text() {
        let io = ProtocolMismatch("x".into()).into_io();
        assert_eq!(mismatch_in(&io).as_deref(), Some("x"));
        let text = io::Error::new(io::ErrorKind::Other, format!("h2 protocol error: {MARKER}y"));
        assert_eq!(mismatch_in(&text).as_deref(), Some("y"));
    }
}
