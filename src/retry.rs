//! How clients retry: which failures are worth another attempt, and the
//! backoff between attempts (exponential with jitter, within a deadline).
//!
//! OpenFL 1.6 retries UNAVAILABLE forever every second and resends uploads
//! after a reconnect; it never retries UNAUTHENTICATED. We do the same, with a
//! bounded backoff and an optional deadline after which the caller gets a
//! `RetriesExhausted` error naming the last failure. TLS failures (unknown CA,
//! rejected client certificate) are never retried.
//!
//! A gRPC C-core server (OpenFL's) refuses a client certificate without a TLS
//! alert: it closes the connection (an end of file, no TLS close_notify)
//! right after the handshake. A client that presents a certificate cannot
//! tell that from a server that closed for another reason, so a connection
//! the server closed says the certificate may be refused; a refused
//! connection or a reset (plain network failures) does not.

use std::future::Future;
use std::time::{Duration, Instant};

use rand::Rng;
use tonic::{Code, Status};

use crate::call::CallScope;
use crate::error::{ofl_code, Error, Result};
use crate::metrics::Recorder;

/// When and how long a client keeps trying.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait before the second attempt.
    pub initial_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Give up when this much time has passed since the first attempt;
    /// `None` keeps trying forever, like OpenFL (each attempt is logged).
    pub deadline: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            deadline: None,
        }
    }
}

impl RetryPolicy {
    /// The wait after `attempt` failed attempts (1-based): exponential,
    /// capped, with jitter in [half, full].
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.initial_backoff.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(self.max_backoff);
        capped.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
    }
}

/// What to do after a failed call.
#[derive(Debug)]
pub enum Verdict {
    /// The peer was unreachable or the connection dropped: try again (a
    /// whole upload is resent).
    Retry(Error),
    /// Final: report this error.
    Fail(Error),
}

/// Sorts a failed call's status into retry or fail.
pub fn classify(status: Status) -> Verdict {
    if let Some(mismatch) = crate::protocol_check::mismatch_in(&status) {
        return Verdict::Fail(Error::new(ofl_code::ProtocolMismatch, mismatch));
    }
    if let Some(tls) = crate::tls::tls_failure_in(&status) {
        return Verdict::Fail(Error::tls(format!("TLS handshake failed: {tls}")));
    }
    let transport_failure = std::error::Error::source(&status).is_some();
    let error = Error::from(status.clone());
    match status.code() {
        Code::Unavailable => Verdict::Retry(error),
        // The connection broke mid-call (e.g. the server restarted).
        Code::Unknown | Code::Cancelled | Code::Internal if transport_failure => Verdict::Retry(error),
        _ => Verdict::Fail(error),
    }
}

/// Whether a failed call's connection was closed by the server — an end of
/// file without TLS close_notify (our connector reports one right after the
/// handshake), or the request cancelled because the connection closed
/// before it was sent — as when a gRPC C-core server refuses a client
/// certificate. A reset or a refused connection is not (a plain network
/// failure), nor is a stream that h2 ends with "broken pipe": h2 says so
/// both for an end of file and after a reset it read first (seen: 1 run in
/// 3 of `plain_network_drops_do_not_blame_the_certificate`).
pub fn closed_by_server(status: &Status) -> bool {
    use std::io::ErrorKind;
    let mut closed = false;
    let mut cause = std::error::Error::source(status);
    while let Some(e) = cause {
        if e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_canceled) {
            closed = true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                ErrorKind::UnexpectedEof => closed = true,
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::ConnectionRefused => {
                    return false
                }
                _ => {}
            }
        }
        cause = e.source();
    }
    closed
}

/// `error` with the hint that the server may be refusing this client's
/// certificate (see [`closed_by_server`]).
fn with_certificate_hint(error: Error) -> Error {
    let message = format!(
        "{}; the server closed the connection: if this persists, it may be refusing this client's \
         certificate (a gRPC C-core server such as OpenFL's refuses one so, without a TLS alert)",
        error.message()
    );
    Error::new(error.code(), message)
}

/// The error returned when the retry budget is spent.
pub fn exhausted(what: &str, attempts: u32, elapsed: Duration, last: &Error) -> Error {
    Error::new(
        ofl_code::RetriesExhausted,
        format!(
            "{what}: gave up after {attempts} attempt(s) in {:.1} s; last error: {last}",
            elapsed.as_secs_f64()
        ),
    )
}

/// How one attempt of a call failed.
#[derive(Debug)]
pub enum AttemptError {
    /// The peer or the connection: sorted by [`classify`].
    Status(Status),
    /// Final, whatever the peer does (e.g. a local file error).
    Final(Error),
}

impl From<Status> for AttemptError {
    fn from(status: Status) -> Self {
        AttemptError::Status(status)
    }
}

impl From<Error> for AttemptError {
    fn from(error: Error) -> Self {
        AttemptError::Final(error)
    }
}

/// One client's retry loop: what to retry, how long, and when to give up.
pub struct Retrying<'a> {
    /// Backoff and deadline.
    pub policy: &'a RetryPolicy,
    /// The peer, for log lines: e.g. "the aggregator at host:port".
    pub peer: String,
    /// The client presents a certificate: a connection the server closes is
    /// then reported as a possible refusal of it ([`closed_by_server`]).
    pub presents_certificate: bool,
    /// The client's metrics, which count every retry.
    pub metrics: &'a Recorder,
}

impl Retrying<'_> {
    /// Runs `call` on a fresh `stub()` until it succeeds, fails for good,
    /// the retry budget is spent, or the call's `scope` ends it: its time
    /// limit (`DeadlineExceeded`, retries and backoff included), its cancel
    /// token, its progress callback or the client's close (`Cancelled`).
    /// Ending drops the attempt in flight, which resets its stream.
    pub async fn run<S, T, Fut>(
        &self,
        scope: &CallScope,
        mut stub: impl FnMut() -> Result<S>,
        mut call: impl FnMut(S) -> Fut,
    ) -> Result<T>
    where
        Fut: Future<Output = std::result::Result<T, AttemptError>>,
    {
        let what = scope.what();
        let started = Instant::now();
        let mut attempt = 0u32;
        let mut warnings = RetryWarnings::default();
        loop {
            if let Some(stop) = scope.stop_reason() {
                return Err(stop);
            }
            attempt += 1;
            let outcome = tokio::select! {
                outcome = call(stub()?) => outcome,
                stop = scope.stopped() => return Err(stop),
            };
            // An attempt that failed because the call had to end (e.g. the
            // server saw the same deadline) reports why the call ended.
            if let (Err(_), Some(stop)) = (&outcome, scope.stop_reason()) {
                return Err(stop);
            }
            let last = match outcome {
                Ok(value) => {
                    warnings.succeeded(what, &self.peer, attempt, started.elapsed());
                    return Ok(value);
                }
                Err(AttemptError::Final(e)) => return Err(e),
                Err(AttemptError::Status(status)) => {
                    let refused_early = self.presents_certificate && closed_by_server(&status);
                    match classify(status) {
                        Verdict::Fail(e) => {
                            if matches!(e.code(), ofl_code::Tls | ofl_code::ProtocolMismatch) {
                                log::warn!("{what}: cannot talk to {}: {e}; not retried", self.peer);
                            }
                            return Err(e);
                        }
                        Verdict::Retry(e) if refused_early => with_certificate_hint(e),
                        Verdict::Retry(e) => e,
                    }
                }
            };
            let wait = self.policy.backoff(attempt);
            if let Some(deadline) = self.policy.deadline {
                if started.elapsed() + wait > deadline {
                    return Err(exhausted(what, attempt, started.elapsed(), &last));
                }
            }
            warnings.failed(what, &self.peer, attempt, started.elapsed(), &last, wait);
            self.metrics.retried();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                stop = scope.stopped() => return Err(stop),
            }
        }
    }
}

/// Longest silence at WARN while a call keeps failing.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// What a retrying call says at WARN: its first failure (address and
/// cause), then at most one summary per [`WARN_EVERY`]; every attempt at
/// INFO; and, after a WARN, that the peer was reached in the end.
#[derive(Default)]
struct RetryWarnings {
    last_warn: Option<Instant>,
}

impl RetryWarnings {
    fn failed(&mut self, what: &str, peer: &str, attempt: u32, elapsed: Duration, last: &Error, wait: Duration) {
        let due = self.last_warn.map_or(true, |at| at.elapsed() >= WARN_EVERY);
        if due && attempt == 1 {
            log::warn!("{what}: cannot reach {peer}: {last}; retrying (at most one warning per {} s)", WARN_EVERY.as_secs());
        } else if due {
            log::warn!(
                "{what}: still cannot reach {peer} after {attempt} attempts in {:.0} s; last error: {last}; retrying",
                elapsed.as_secs_f64()
            );
        } else {
            log::info!(
                "{what}: attempt {attempt} to reach {peer} failed ({last}); retrying in {:.2} s",
                wait.as_secs_f64()
            );
            return;
        }
        self.last_warn = Some(Instant::now());
    }

    fn succeeded(&self, what: &str, peer: &str, attempt: u32, elapsed: Duration) {
        if self.last_warn.is_some() {
            log::warn!("{what}: reached {peer} after {attempt} attempts in {:.1} s", elapsed.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            deadline: None,
        };
        let first = p.backoff(1);
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        let fourth = p.backoff(4);
        assert!(fourth >= Duration::from_millis(400) && fourth <= Duration::from_millis(800));
        assert!(p.backoff(40) <= Duration::from_secs(1));
    }

    #[test]
    fn unauthenticated_and_application_errors_are_final() {
        assert!(matches!(classify(Status::unauthenticated("no")), Verdict::Fail(_)));
        assert!(matches!(classify(Status::unknown("app error")), Verdict::Fail(_)));
        assert!(matches!(classify(Status::unavailable("down")), Verdict::Retry(_)));
    }
}
