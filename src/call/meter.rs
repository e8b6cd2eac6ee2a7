//! The progress counter of one call's transfer: counts bytes, calls the
//! host's [`Progress`] at most every [`PROGRESS_STEP`] bytes and once at the
//! end, never backwards, and never after the call is over.

use std::sync::Mutex;

use super::{CancelToken, Progress, PROGRESS_STEP};

/// One call's progress counter, shared by its attempts.
pub(crate) struct Meter {
    state: Mutex<State>,
    /// Cancelled when the callback returns false (the call then ends).
    abort: CancelToken,
}

struct State {
    /// `None` once the call is over: no report after it returned.
    callback: Option<Progress>,
    /// Bytes of the transfer, 0 when unknown.
    total: u64,
    /// Bytes done by the current attempt.
    done: u64,
    /// The highest value reported.
    reported: u64,
    /// The final report was made.
    finished: bool,
}

impl Meter {
    /// A counter calling `callback`; `abort` is cancelled when it says stop.
    pub(crate) fn new(callback: Progress, abort: CancelToken) -> Self {
        let state = State { callback: Some(callback), total: 0, done: 0, reported: 0, finished: false };
        Self { state: Mutex::new(state), abort }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new attempt of the transfer starts from its first byte; `total`
    /// is its size (0 when unknown yet).
    pub(crate) fn restart(&self, total: u64) {
        let mut state = self.lock();
        state.done = 0;
        state.total = total;
    }

    /// The transfer's size, once known (e.g. from a gRPC length prefix).
    pub(crate) fn set_total(&self, total: u64) {
        self.lock().total = total;
    }

    /// Whether the current attempt reached the transfer's known size.
    pub(crate) fn is_complete(&self) -> bool {
        let state = self.lock();
        state.total > 0 && state.done >= state.total
    }

    /// `bytes` more were sent or received. False when the callback asked to
    /// stop (now or before).
    pub(crate) fn advance(&self, bytes: u64) -> bool {
        let mut state = self.lock();
        state.done += bytes;
        let due = state.done >= state.reported + PROGRESS_STEP;
        // The end of a transfer of known size is reported by `finish`.
        let at_end = state.total > 0 && state.done >= state.total;
        if due && !at_end && !state.finished {
            let (done, total) = (state.done, state.total);
            return self.report(&mut state, done, total);
        }
        !self.abort.is_cancelled()
    }

    /// The transfer is complete: the final report (once per call), with
    /// `bytes_done == bytes_total`. False when the callback asked to stop.
    pub(crate) fn finish(&self) -> bool {
        let mut state = self.lock();
        if state.finished {
            return !self.abort.is_cancelled();
        }
        state.finished = true;
        let done = state.done.max(state.reported);
        let total = if state.total == 0 { done } else { state.total.max(done) };
        self.report(&mut state, total, total)
    }

    /// The call is over: no callback from now on (waits for one running).
    pub(crate) fn close(&self) {
        self.lock().callback = None;
    }

    /// Calls the callback with the lock held, so that `close` waits for it.
    fn report(&self, state: &mut State, done: u64, total: u64) -> bool {
        let Some(callback) = &state.callback else { return !self.abort.is_cancelled() };
        state.reported = state.reported.max(done);
        let go_on = callback(done, total);
        if !go_on {
            self.abort.cancel();
            state.callback = None;
        }
        go_on && !self.abort.is_cancelled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Progress reports `(bytes_done, bytes_total)` as recorded.
    type Reports = Arc<Mutex<Vec<(u64, u64)>>>;

    fn recording() -> (Reports, Meter) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let meter = Meter::new(Arc::new(move |d, t| { log.lock().unwrap().push((d, t)); true }), CancelToken::new());
        (seen, meter)
    }

    #[test]
    fn reports_every_step_and_once_at_the_end_never_backwards() {
        let (seen, meter) = recording();
        let total = 10 * PROGRESS_STEP + 5;
        meter.restart(total);
        for _ in 0..6 {
            assert!(meter.advance(PROGRESS_STEP / 2));
        }
        // A retry starts over: nothing is reported until it passes 3 steps.
        meter.restart(total);
        for _ in 0..20 {
            assert!(meter.advance(PROGRESS_STEP / 2));
        }
        assert!(meter.advance(5));
        assert!(meter.finish());
        assert!(meter.finish());
        let seen = seen.lock().unwrap().clone();
        let done: Vec<u64> = seen.iter().map(|r| r.0 / PROGRESS_STEP).collect();
        assert_eq!(done, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10]);
        assert_eq!(*seen.last().unwrap(), (total, total));
    }

    #[test]
    fn a_false_answer_aborts_and_nothing_is_reported_after_close() {
        let abort = CancelToken::new();
        let meter = Meter::new(Arc::new(|d, _| d < 2 * PROGRESS_STEP), abort.clone());
        meter.restart(0);
        assert!(meter.advance(PROGRESS_STEP));
        assert!(!abort.is_cancelled());
        assert!(!meter.advance(PROGRESS_STEP));
        assert!(abort.is_cancelled());
        assert!(!meter.advance(PROGRESS_STEP));
        let (seen, meter) = recording();
        meter.close();
        meter.restart(0);
        meter.advance(3 * PROGRESS_STEP);
        meter.finish();
        assert!(seen.lock().unwrap().is_empty());
    }
}
