//! An upload stream that reports progress as chunks are handed to the
//! transport and that stops when its call must end.
//!
//! Stopping never ends the stream: it stays pending, so the HTTP/2 stream
//! is never closed with END_STREAM (which the server would take as a
//! complete upload); the retry loop then drops the call and hyper resets
//! the stream (RST_STREAM CANCEL).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures_util::Stream;

use super::scope::ScopeHandle;
use super::{CallScope, Meter};

/// `inner`'s items, each `size_of` bytes of the transfer, reported to the
/// call's progress callback once handed over.
pub(crate) struct Metered<S, F> {
    inner: S,
    size_of: F,
    scope: ScopeHandle,
    meter: Option<Arc<Meter>>,
    /// Bytes of the item last yielded, counted once the next one is asked for.
    handed: u64,
}

impl<S, F> Metered<S, F> {
    /// An attempt's upload of `total` bytes (its progress starts over).
    pub(crate) fn new(inner: S, size_of: F, scope: &CallScope, total: u64) -> Self {
        let meter = scope.meter();
        if let Some(meter) = &meter {
            meter.restart(total);
        }
        Self { inner, size_of, scope: scope.handle(), meter, handed: 0 }
    }
}

impl<S, F> Stream for Metered<S, F>
where
    S: Stream + Unpin,
    F: Fn(&S::Item) -> u64 + Unpin,
{
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = self.get_mut();
        // Pending without a wake-up: the call is being dropped, which resets the stream.
        if this.scope.is_stopped() {
            return Poll::Pending;
        }
        let handed = std::mem::take(&mut this.handed);
        if let Some(meter) = &this.meter {
            if handed > 0 && !meter.advance(handed) {
                return Poll::Pending;
            }
        }
        match ready!(Pin::new(&mut this.inner).poll_next(cx)) {
            Some(item) => {
                this.handed = (this.size_of)(&item);
                Poll::Ready(Some(item))
            }
            None => {
                let go_on = match &this.meter {
                    Some(meter) => meter.finish(),
                    None => true,
                };
                if !go_on || this.scope.is_stopped() {
                    return Poll::Pending;
                }
                Poll::Ready(None)
            }
        }
    }
}
