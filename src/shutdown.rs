//! How a server stops, whatever its peers do: a hard stop after a grace.
//!
//! 1. **Stop** (`stop` is asked): the listener closes, every connection gets
//!    a GOAWAY (no new call), calls in flight go on; long polls of the
//!    director end at once.
//! 2. **Cancel** (the grace, [`ServerLimits::shutdown_grace`], is over and
//!    calls are still in flight): every call still running is dropped and
//!    answered UNAVAILABLE, a response still streaming ends with UNAVAILABLE
//!    trailers, and no new call of the logic starts. An upload cut here never
//!    reaches the logic.
//! 3. **Close** ([`CANCEL_LINGER`] later, for peers that did not take their
//!    answer: a client that stopped reading, a frozen process): every
//!    connection still open is reset (TCP RST), and every task serving one of
//!    its calls is dropped.
//!
//! A logic call already running on a blocking thread (host code) cannot be
//! interrupted: it is abandoned. It runs to its end, its answer is dropped,
//! and what it uses stays alive until it returns (the logic is shared with
//! it through an `Arc`).
//!
//! [`ServerLimits::shutdown_grace`]: crate::ServerLimits::shutdown_grace

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

/// How long cancelled calls have to get their UNAVAILABLE answer out before
/// their connections are reset.
pub(crate) const CANCEL_LINGER: Duration = Duration::from_millis(300);
/// How long reset connections have to end before their tasks are aborted.
const CLOSE_WAIT: Duration = Duration::from_millis(200);

/// The three switches of a stop (each turns true once, in order).
pub(crate) struct Switches {
    stop: watch::Sender<bool>,
    cancel: watch::Sender<bool>,
    close: watch::Sender<bool>,
}

/// What every part of a server watches to follow a stop.
#[derive(Clone)]
pub(crate) struct Signals {
    /// Turns true when the server is asked to stop.
    pub stop: watch::Receiver<bool>,
    /// Turns true when the grace is over: calls in flight are cancelled.
    pub cancel: watch::Receiver<bool>,
    /// Turns true when connections still open are reset.
    pub close: watch::Receiver<bool>,
}

impl Switches {
    pub fn new() -> Self {
        Self {
            stop: watch::Sender::new(false),
            cancel: watch::Sender::new(false),
            close: watch::Sender::new(false),
        }
    }

    pub fn signals(&self) -> Signals {
        Signals { stop: self.stop.subscribe(), cancel: self.cancel.subscribe(), close: self.close.subscribe() }
    }

    /// Step 1. Idempotent.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    fn cancel(&self) {
        self.stop();
        self.cancel.send_replace(true);
    }

    fn close(&self) {
        self.cancel();
        self.close.send_replace(true);
    }
}

/// Resolves once `switch` is true (or its server is gone).
pub(crate) async fn fired(switch: &mut watch::Receiver<bool>) {
    let _ = switch.wait_for(|on| *on).await;
}

/// After the listener closed: waits up to `grace` for `connections` to end,
/// then cancels their calls, then closes them; returns once every
/// connection task has ended (within `grace` + about half a second).
pub(crate) async fn wind_down(connections: &mut JoinSet<()>, grace: Duration, switches: &Switches) {
    if tokio::time::timeout(grace, drain(connections)).await.is_err() {
        log::warn!(
            "{} connection(s) still busy after the shutdown grace of {grace:?}: cancelling their calls",
            connections.len()
        );
        switches.cancel();
        if tokio::time::timeout(CANCEL_LINGER, drain(connections)).await.is_err() {
            log::info!("{} connection(s) did not close after their calls were cancelled: reset", connections.len());
            switches.close();
            if tokio::time::timeout(CLOSE_WAIT, drain(connections)).await.is_err() {
                connections.abort_all();
                drain(connections).await;
            }
        }
    }
    // Whatever is left of the server's calls (tasks detached from a
    // connection that ended) ends now.
    switches.close();
}

async fn drain(connections: &mut JoinSet<()>) {
    while connections.join_next().await.is_some() {}
}

/// The executor of a server's HTTP/2 connections: runs each call (stream)
/// as a task that ends at the latest at the close step.
#[derive(Clone)]
pub(crate) struct StreamExecutor {
    close: watch::Receiver<bool>,
}

impl StreamExecutor {
    pub fn new(signals: &Signals) -> Self {
        Self { close: signals.close.clone() }
    }
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, call: F) {
        let mut close = self.close.clone();
        tokio::spawn(async move {
            tokio::select! {
                biased;
                _ = fired(&mut close) => {}
                _ = call => {}
            }
        });
    }
}
