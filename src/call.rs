//! Settings of one client call ([`CallOptions`]): a time limit for the whole
//! call, a [`CancelToken`] that ends it from anywhere, and a [`Progress`]
//! callback for transfers.
//!
//! The time limit covers every attempt, retry and backoff of the call (it is
//! distinct from the retry policy's deadline, which only bounds retrying):
//! when it passes the call ends with `DeadlineExceeded`, and each attempt
//! tells the server how long it has left (`grpc-timeout`). A cancelled or
//! timed-out upload is reset on the wire (RST_STREAM), never finished, so
//! the server never takes it as complete.
//!
//! Files: `scope.rs` (one call's stop conditions), `meter.rs` (the progress
//! counter), `upload.rs` (upload streams that report and stop),
//! `channel.rs` (the per-attempt channel: `grpc-timeout` and download
//! progress).

mod channel;
mod meter;
mod scope;
mod upload;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub(crate) use channel::CallChannel;
pub(crate) use meter::Meter;
pub(crate) use scope::CallScope;
pub(crate) use upload::Metered;

/// Progress reports come at most once per this many bytes (plus once at the
/// end of the transfer).
pub const PROGRESS_STEP: u64 = 4 << 20;

/// A progress callback: `(bytes_done, bytes_total)`, `bytes_total` 0 when
/// unknown; the last report of a transfer has `bytes_done == bytes_total`.
/// Called on a library thread, at most every [`PROGRESS_STEP`] bytes and
/// once at the end; reports never go backwards (a retried transfer reports
/// again only once it passes what was already reported). Returning false
/// ends the call with `Cancelled`.
pub type Progress = Arc<dyn Fn(u64, u64) -> bool + Send + Sync>;

/// Settings of one call; the default is the client's defaults.
#[derive(Clone, Default)]
pub struct CallOptions {
    /// Time limit of the whole call (all attempts and retries): `None` takes
    /// the client's default (`ConnectConfig::call_timeout`), `Some(ZERO)`
    /// means no limit.
    pub timeout: Option<Duration>,
    /// Cancels the call when cancelled (shared: one token may end several
    /// calls).
    pub cancel: Option<CancelToken>,
    /// Progress of the call's transfer (uploads and downloads of tensors,
    /// models and archives; other calls ignore it).
    pub progress: Option<Progress>,
}

impl CallOptions {
    /// These options with a time limit for the whole call.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// These options with a cancel token.
    pub fn cancel(mut self, token: &CancelToken) -> Self {
        self.cancel = Some(token.clone());
        self
    }

    /// These options with a progress callback.
    pub fn progress(mut self, progress: impl Fn(u64, u64) -> bool + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(progress));
        self
    }
}

impl std::fmt::Debug for CallOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallOptions")
            .field("timeout", &self.timeout)
            .field("cancel", &self.cancel)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// Cancels the calls that carry it, from any thread. Clones share one state.
#[derive(Clone)]
pub struct CancelToken {
    state: Arc<watch::Sender<bool>>,
}

impl CancelToken {
    /// A token not yet cancelled.
    pub fn new() -> Self {
        Self { state: Arc::new(watch::channel(false).0) }
    }

    /// Cancels every call carrying this token (idempotent): they end with
    /// `Cancelled` as soon as possible, an upload in flight is reset.
    pub fn cancel(&self) {
        self.state.send_replace(true);
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        *self.state.borrow()
    }

    /// Completes when the token is cancelled.
    pub async fn cancelled(&self) {
        let mut seen = self.state.subscribe();
        let _ = seen.wait_for(|c| *c).await;
    }
}

impl Default for CancelToken {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelToken").field("cancelled", &self.is_cancelled()).finish()
    }
}
