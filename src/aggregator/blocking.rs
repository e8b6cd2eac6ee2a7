//! Bounds on the logic calls that run on Tokio's blocking pool.
//!
//! Logic that may block (C callbacks: host code) runs on the blocking pool,
//! which has a fixed number of threads (512). Without a bound, one
//! collaborator that parks hundreds of calls (e.g. GetAggregatedTensor for a
//! tensor the callback waits for) holds every thread, and every other
//! collaborator's calls queue behind them for as long as those calls block.
//!
//! So each (collaborator, kind of call) pair may run at most
//! [`MAX_BLOCKING_CALLS_PER_COLLABORATOR`] calls at once, and the whole
//! server at most [`MAX_BLOCKING_CALLS`]. A call over a bound waits its turn
//! (first come, first served) as an async task, which holds no thread; it is
//! not refused: an honest collaborator that sends several calls at once only
//! waits, and an abusive one only slows itself down. Keying by kind keeps a
//! collaborator's own GetTasks and uploads from queueing behind its parked
//! tensor requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::logic::LogicCall;

/// At most this many blocking logic calls of one collaborator and one kind
/// run at once; further ones wait.
pub(crate) const MAX_BLOCKING_CALLS_PER_COLLABORATOR: usize = 8;

/// At most this many blocking logic calls of one server run at once (half
/// of Tokio's blocking pool, which the rest of the process shares).
pub(crate) const MAX_BLOCKING_CALLS: usize = 256;

/// The permits of one running call; dropping them lets the next one in.
pub struct BlockingPermit {
    _own: Option<OwnedSemaphorePermit>,
    _overall: OwnedSemaphorePermit,
}

/// The server's bounds on blocking calls.
pub struct BlockingCalls {
    overall: Arc<Semaphore>,
    /// One semaphore per (collaborator, kind). Keys are names that passed the
    /// server's checks (authorized collaborators), so the map stays small.
    own: Mutex<HashMap<(String, LogicCall), Arc<Semaphore>>>,
    per_collaborator: usize,
}

impl BlockingCalls {
    /// Bounds of `per_collaborator` calls per (collaborator, kind) and
    /// `overall` in all (each at least 1).
    pub fn new(per_collaborator: usize, overall: usize) -> Self {
        Self {
            overall: Arc::new(Semaphore::new(overall.max(1))),
            own: Mutex::new(HashMap::new()),
            per_collaborator: per_collaborator.max(1),
        }
    }

    /// Waits for a turn of `call` by `collaborator` (`None`: a call made for
    /// no checked collaborator, bounded overall only).
    pub async fn acquire(&self, call: LogicCall, collaborator: Option<&str>) -> BlockingPermit {
        let own = match collaborator {
            Some(name) => {
                let semaphore = self.semaphore(name, call);
                Some(semaphore.acquire_owned().await.expect("the semaphore is never closed"))
            }
            None => None,
        };
        let overall = Arc::clone(&self.overall).acquire_owned().await.expect("the semaphore is never closed");
        BlockingPermit { _own: own, _overall: overall }
    }

    fn semaphore(&self, collaborator: &str, call: LogicCall) -> Arc<Semaphore> {
        let mut own = self.own.lock().unwrap_or_else(|e| e.into_inner());
        let key = (collaborator.to_string(), call);
        Arc::clone(own.entry(key).or_insert_with(|| Arc::new(Semaphore::new(self.per_collaborator))))
    }
}

impl Default for BlockingCalls {
    fn default() -> Self {
        Self::new(MAX_BLOCKING_CALLS_PER_COLLABORATOR, MAX_BLOCKING_CALLS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_collaborator_cannot_take_every_turn() {
        let calls = BlockingCalls::new(2, 3);
        let a1 = calls.acquire(LogicCall::GetAggregatedTensor, Some("a")).await;
        let _a2 = calls.acquire(LogicCall::GetAggregatedTensor, Some("a")).await;
        let third = tokio::time::timeout(
            Duration::from_millis(50),
            calls.acquire(LogicCall::GetAggregatedTensor, Some("a")),
        );
        assert!(third.await.is_err(), "a third call of a must wait");
        // Another kind of call of the same collaborator, and another
        // collaborator, still get a turn.
        let _tasks = calls.acquire(LogicCall::GetTasks, Some("a")).await;
        let waiting_b = calls.acquire(LogicCall::GetTasks, Some("b"));
        // ...but the overall bound (3) is reached now: b waits until a turn ends.
        let mut waiting_b = Box::pin(waiting_b);
        assert!(tokio::time::timeout(Duration::from_millis(50), &mut waiting_b).await.is_err());
        drop(a1);
        tokio::time::timeout(Duration::from_secs(5), waiting_b).await.expect("b gets the freed turn");
    }
}
