//! Tensor memory a C caller lends for the duration of one call, handed to
//! the transport as `Bytes` without copying.
//!
//! Each lent region becomes a `Bytes` whose owner reports its release to a
//! [`Loan`]. The export that made the loan waits, before it returns, until the
//! transport dropped every such `Bytes` (the gRPC stream holding them ends
//! with the call), so no pointer into the caller's memory outlives the call.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;

/// Counts the regions of one call still referenced by the transport.
#[derive(Default)]
pub struct Loan {
    live: Mutex<usize>,
    released: Condvar,
}

/// One lent region; dropping it (with the last `Bytes` on it) ends its loan.
struct Region {
    ptr: *const u8,
    len: usize,
    loan: Arc<Loan>,
}

// SAFETY: the region is only read, and the caller keeps it valid and
// unchanged until `Loan::wait_until_returned` has returned, which happens
// only after every `Region` was dropped, on whichever thread.
unsafe impl Send for Region {}
// SAFETY: as above (read-only access).
unsafe impl Sync for Region {}

impl AsRef<[u8]> for Region {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr` is non-NULL with `len` readable bytes (checked by
        // `Loan::lend`) and stays valid while any `Region` exists (above).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        let mut live = self.loan.live.lock().unwrap_or_else(|e| e.into_inner());
        *live -= 1;
        self.loan.released.notify_all();
    }
}

impl Loan {
    /// A new loan with nothing lent yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Lends `data` to the transport as `Bytes`. The caller must keep `data`
    /// valid and unchanged until [`wait_until_returned`](Self::wait_until_returned)
    /// has returned.
    pub fn lend(self: &Arc<Self>, data: &[u8]) -> Bytes {
        if data.is_empty() {
            return Bytes::new();
        }
        *self.live.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        Bytes::from_owner(Region { ptr: data.as_ptr(), len: data.len(), loan: Arc::clone(self) })
    }

    /// Blocks until every lent region was dropped. The transport drops them
    /// when the call's stream ends; a warning is logged if that takes long.
    pub fn wait_until_returned(&self) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        while *live > 0 {
            let (guard, timeout) = self
                .released
                .wait_timeout(live, Duration::from_secs(5))
                .unwrap_or_else(|e| e.into_inner());
            live = guard;
            if timeout.timed_out() && *live > 0 {
                log::warn!("still waiting for the transport to release {} borrowed tensor buffer(s)", *live);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_returns_once_every_slice_is_dropped() {
        let data = vec![7u8; 1000];
        let loan = Loan::new();
        let bytes = loan.lend(&data);
        let slice = bytes.slice(10..20);
        drop(bytes);
        let waiter = {
            let loan = Arc::clone(&loan);
            std::thread::spawn(move || loan.wait_until_returned())
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "a slice is still alive");
        assert_eq!(&slice[..], &[7u8; 10]);
        drop(slice);
        waiter.join().unwrap();
    }
}
