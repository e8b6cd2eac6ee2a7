//! Refused calls and handshakes: how a server's checks mark the status they
//! refuse a call with ([`refused`]), and how the connection layer counts it
//! and logs it at WARN with the peer's address and certificate CN,
//! rate-limited per kind: the first one, then at most one line per
//! [`SUMMARY_INTERVAL`] that also says how many were not logged since.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::Status;

use super::recorder::Recorder;
use super::snapshot::{AuthFailure, Rejection};

/// At most one WARN line per kind of refusal in this interval.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(30);

/// Why a server's checks refused a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The collaborator is not authorized.
    Unauthorized,
    /// The certificate CN differs from the identity claimed.
    CnMismatch,
    /// A request header field is wrong or missing.
    BadHeader,
    /// A size or memory limit.
    Limits,
}

/// The kinds logged separately: refusals, then failed TLS handshakes.
const LOG_KINDS: usize = 5;

impl Refusal {
    fn rejection(self) -> Rejection {
        match self {
            Refusal::Unauthorized | Refusal::CnMismatch => Rejection::Identity,
            Refusal::BadHeader => Rejection::BadHeader,
            Refusal::Limits => Rejection::Limits,
        }
    }

    fn auth_failure(self) -> Option<AuthFailure> {
        match self {
            Refusal::Unauthorized => Some(AuthFailure::UnauthorizedCollaborator),
            Refusal::CnMismatch => Some(AuthFailure::CnMismatch),
            _ => None,
        }
    }

    fn log_kind(self) -> usize {
        self as usize
    }

    fn describe(self) -> &'static str {
        match self {
            Refusal::Unauthorized => "unauthorized collaborator",
            Refusal::CnMismatch => "certificate CN mismatch",
            Refusal::BadHeader => "bad request header",
            Refusal::Limits => "over a limit",
        }
    }
}

/// The mark a refusal leaves on its status (as its source), read back by
/// the connection layer from the response.
#[derive(Debug)]
struct Marker(Refusal);

impl fmt::Display for Marker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused: {}", self.0.describe())
    }
}

impl std::error::Error for Marker {}

/// `status`, marked as a refusal of kind `kind` (counted and logged by the
/// server's connection layer when it is answered).
pub(crate) fn refused(kind: Refusal, mut status: Status) -> Status {
    status.set_source(Arc::new(Marker(kind)));
    status
}

/// The refusal `status` was marked with, if any.
pub(crate) fn refusal_of(status: &Status) -> Option<Refusal> {
    std::error::Error::source(status)?.downcast_ref::<Marker>().map(|m| m.0)
}

/// Who was refused.
pub(crate) struct Peer {
    pub addr: Option<SocketAddr>,
    /// The client certificate's CN, when one was presented.
    pub cn: Option<String>,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            Some(addr) => write!(f, "{addr}")?,
            None => write!(f, "an unknown address")?,
        }
        match &self.cn {
            Some(cn) => write!(f, " (certificate CN |{cn}|)"),
            None => write!(f, " (no client certificate)"),
        }
    }
}

#[derive(Default)]
struct Slot {
    last_logged: Option<Instant>,
    suppressed: u64,
}

/// The rate limiter of one server's refusal WARN lines.
#[derive(Default)]
pub(crate) struct RefusalLog {
    slots: Mutex<[Slot; LOG_KINDS]>,
}

impl RefusalLog {
    /// Whether to log a refusal of `kind` now, and how many were not logged
    /// since the last line.
    fn admit(&self, kind: usize) -> Option<u64> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &mut slots[kind];
        let now = Instant::now();
        if slot.last_logged.is_some_and(|last| now.duration_since(last) < SUMMARY_INTERVAL) {
            slot.suppressed += 1;
            return None;
        }
        slot.last_logged = Some(now);
        Some(std::mem::take(&mut slot.suppressed))
    }
}

fn suppressed_note(suppressed: u64) -> String {
    if suppressed == 0 {
        String::new()
    } else {
        format!(" ({suppressed} more like it in the last {} s were not logged)", SUMMARY_INTERVAL.as_secs())
    }
}

impl Recorder {
    /// A call of `rpc` refused by the server's checks with `status`.
    pub(crate) fn record_refusal(&self, kind: Refusal, rpc: &str, peer: &Peer, status: &Status) {
        self.rejected(kind.rejection());
        if let Some(failure) = kind.auth_failure() {
            self.auth_failed(failure);
        }
        if let Some(suppressed) = self.refusals.admit(kind.log_kind()) {
            log::warn!(
                "{}: refused a {rpc} call from {peer} ({}): {:?}: {}{}",
                self.role().label(),
                kind.describe(),
                status.code(),
                status.message(),
                suppressed_note(suppressed)
            );
        }
    }

    /// A TLS handshake from `addr` failed with `error`.
    pub(crate) fn record_tls_failure(&self, addr: Option<SocketAddr>, error: &str) {
        self.auth_failed(AuthFailure::TlsHandshake);
        if let Some(suppressed) = self.refusals.admit(LOG_KINDS - 1) {
            let peer = Peer { addr, cn: None };
            log::warn!(
                "{}: TLS handshake from {} failed: {error}{}",
                self.role().label(),
                peer.addr.map_or_else(|| "an unknown address".to_string(), |a| a.to_string()),
                suppressed_note(suppressed)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_survive_on_the_status() {
        let status = refused(Refusal::BadHeader, Status::invalid_argument("header.receiver"));
        assert_eq!(refusal_of(&status), Some(Refusal::BadHeader));
        assert_eq!(refusal_of(&Status::invalid_argument("x")), None);
        // tonic rebuilds body errors with Status::from_error, which keeps it.
        let rebuilt = Status::from_error(Box::new(status));
        assert_eq!(refusal_of(&rebuilt), Some(Refusal::BadHeader));
    }

    #[test]
    fn the_first_refusal_is_logged_then_one_per_interval() {
        let log = RefusalLog::default();
        assert_eq!(log.admit(0), Some(0));
        assert_eq!(log.admit(0), None);
        assert_eq!(log.admit(0), None);
        assert_eq!(log.admit(1), Some(0), "kinds are limited separately");
        log.slots.lock().unwrap()[0].last_logged = Some(Instant::now() - SUMMARY_INTERVAL);
        assert_eq!(log.admit(0), Some(2), "the next line counts what was suppressed");
        assert_eq!(log.admit(0), None);
    }
}
