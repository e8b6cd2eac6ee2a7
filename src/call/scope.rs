//! One call's stop conditions: its time limit, its cancel token, its
//! progress callback's answer and the client's close, checked by the retry
//! loop (which ends the call) and by the call's upload stream (which then
//! never sends another chunk, nor its end).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::{CallOptions, CancelToken, Meter};
use crate::error::{ofl_code, Error};

/// One call in progress. Dropping it (the call is over) stops its progress
/// reports and its upload stream.
pub(crate) struct CallScope {
    shared: Arc<Shared>,
}

/// What the call's streams and bodies see of its scope.
#[derive(Clone)]
pub(crate) struct ScopeHandle {
    shared: Arc<Shared>,
}

struct Shared {
    what: String,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    cancel: Option<CancelToken>,
    /// Cancelled by the progress callback's false.
    abort: CancelToken,
    closed: watch::Receiver<bool>,
    meter: Option<Arc<Meter>>,
    over: AtomicBool,
}

impl CallScope {
    /// The call `what` (e.g. "GetTasks") starting now, with `options` over
    /// the client's `default_timeout`, ended early when `closed` turns true.
    pub(crate) fn new(
        what: &str,
        options: &CallOptions,
        default_timeout: Option<Duration>,
        closed: &watch::Sender<bool>,
    ) -> Self {
        let timeout = options.timeout.or(default_timeout).filter(|t| !t.is_zero());
        let abort = CancelToken::new();
        let meter = options.progress.clone().map(|p| Arc::new(Meter::new(p, abort.clone())));
        let shared = Shared {
            what: what.to_owned(),
            timeout,
            deadline: timeout.and_then(|t| Instant::now().checked_add(t)),
            cancel: options.cancel.clone(),
            abort,
            closed: closed.subscribe(),
            meter,
            over: AtomicBool::new(false),
        };
        Self { shared: Arc::new(shared) }
    }

    /// The call's name, for messages.
    pub(crate) fn what(&self) -> &str {
        &self.shared.what
    }

    /// What the call's streams and bodies hold.
    pub(crate) fn handle(&self) -> ScopeHandle {
        ScopeHandle { shared: Arc::clone(&self.shared) }
    }

    /// The progress counter, when the call has a progress callback.
    pub(crate) fn meter(&self) -> Option<Arc<Meter>> {
        self.shared.meter.clone()
    }

    /// Time left before the call's time limit, if it has one.
    pub(crate) fn remaining(&self) -> Option<Duration> {
        self.shared.deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Why the call must end now, if it must.
    pub(crate) fn stop_reason(&self) -> Option<Error> {
        self.shared.stop_reason()
    }

    /// Completes, with the reason, when the call must end.
    pub(crate) async fn stopped(&self) -> Error {
        let s = &self.shared;
        let mut closed = s.closed.clone();
        let deadline = async {
            match s.deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let cancelled = async {
            match &s.cancel {
                Some(token) => token.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = closed.wait_for(|c| *c) => {}
            _ = cancelled => {}
            _ = s.abort.cancelled() => {}
            _ = deadline => return s.deadline_exceeded(),
        }
        s.stop_reason().unwrap_or_else(|| Error::new(ofl_code::Cancelled, format!("{}: the client is gone", s.what)))
    }
}

impl Drop for CallScope {
    fn drop(&mut self) {
        self.shared.over.store(true, Ordering::SeqCst);
        if let Some(meter) = &self.shared.meter {
            meter.close();
        }
    }
}

impl ScopeHandle {
    /// Whether the call is over or must end: its stream then sends nothing
    /// more (not even its end) and its progress is not reported.
    pub(crate) fn is_stopped(&self) -> bool {
        self.shared.over.load(Ordering::SeqCst) || self.shared.stop_reason().is_some()
    }
}

impl Shared {
    fn stop_reason(&self) -> Option<Error> {
        let cancelled = |why: &str| Some(Error::new(ofl_code::Cancelled, format!("{}: {why}", self.what)));
        if *self.closed.borrow() {
            return cancelled("the client was closed");
        }
        if self.cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
            return cancelled("cancelled by its cancel token");
        }
        if self.abort.is_cancelled() {
            return cancelled("the progress callback asked to stop");
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Some(self.deadline_exceeded());
        }
        None
    }

    fn deadline_exceeded(&self) -> Error {
        let limit = self.timeout.unwrap_or_default();
        Error::new(
            ofl_code::DeadlineExceeded,
            format!("{}: not done within its call timeout of {} ms", self.what, limit.as_millis()),
        )
    }
}
