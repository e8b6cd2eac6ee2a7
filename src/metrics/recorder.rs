//! The live counters of one server or client ([`Recorder`]) and the handles
//! that update them for one call ([`CallMeter`]) or one connection
//! ([`ConnectionGuard`]). Relaxed atomics only: nothing here locks.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use super::refusal::RefusalLog;
use super::snapshot::{AuthFailure, Rejection, Role, RpcMetrics, TransportMetrics, CODES};

/// Name of the bucket of paths that are no method of the service.
const UNKNOWN_RPC: &str = "unknown";

#[derive(Default)]
struct RpcCounters {
    calls: [AtomicU64; CODES],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

/// The counters of one server or client.
pub(crate) struct Recorder {
    role: Role,
    rpcs: &'static [&'static str],
    /// One per RPC, then the unknown bucket.
    counters: Box<[RpcCounters]>,
    auth_failures: [AtomicU64; 3],
    rejected: [AtomicU64; 3],
    active_connections: AtomicU64,
    connections: AtomicU64,
    in_flight: AtomicU64,
    retries: AtomicU64,
    pub(super) refusals: RefusalLog,
}

/// Which way bytes go, seen from this side.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Direction {
    In,
    Out,
}

impl Recorder {
    /// Zeroed counters for `role` and the methods `rpcs`.
    pub(crate) fn new(role: Role, rpcs: &'static [&'static str]) -> Arc<Self> {
        let counters = (0..=rpcs.len()).map(|_| RpcCounters::default()).collect();
        Arc::new(Self {
            role,
            rpcs,
            counters,
            auth_failures: Default::default(),
            rejected: Default::default(),
            active_connections: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            refusals: RefusalLog::default(),
        })
    }

    pub(crate) fn role(&self) -> Role {
        self.role
    }

    /// The index of the method named by a gRPC `path` (`/pkg.Service/Method`).
    fn rpc_index(&self, path: &str) -> usize {
        let method = path.rsplit('/').next().unwrap_or_default();
        self.rpcs.iter().position(|m| *m == method).unwrap_or(self.rpcs.len())
    }

    /// The name of the RPC at `index` (see [`CallMeter::rpc`]).
    pub(crate) fn rpc_name_at(&self, index: usize) -> &'static str {
        self.rpcs.get(index).copied().unwrap_or(UNKNOWN_RPC)
    }

    /// A call of `path` starts: it is in flight until its meter finishes.
    pub(crate) fn start_call(self: &Arc<Self>, path: &str) -> CallMeter {
        self.in_flight.fetch_add(1, Relaxed);
        CallMeter { recorder: Arc::clone(self), rpc: self.rpc_index(path), finished: false }
    }

    /// Adds `len` message bytes to `rpc`'s counter.
    pub(crate) fn add_bytes(&self, rpc: usize, direction: Direction, len: usize) {
        let counters = &self.counters[rpc];
        let counter = match direction {
            Direction::In => &counters.bytes_in,
            Direction::Out => &counters.bytes_out,
        };
        counter.fetch_add(len as u64, Relaxed);
    }

    /// A connection opened; it counts as active until the guard drops.
    pub(crate) fn connection_opened(self: &Arc<Self>) -> ConnectionGuard {
        self.connections.fetch_add(1, Relaxed);
        self.active_connections.fetch_add(1, Relaxed);
        ConnectionGuard(Arc::clone(self))
    }

    pub(crate) fn auth_failed(&self, kind: AuthFailure) {
        self.auth_failures[kind as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn rejected(&self, kind: Rejection) {
        self.rejected[kind as usize].fetch_add(1, Relaxed);
    }

    /// One more attempt of a client call (a retry).
    pub(crate) fn retried(&self) {
        self.retries.fetch_add(1, Relaxed);
    }

    /// A copy of the counters now (each counter read once; counters that
    /// change meanwhile may be read before or after the change).
    pub(crate) fn snapshot(&self) -> TransportMetrics {
        let names = self.rpcs.iter().copied().chain(std::iter::once(UNKNOWN_RPC));
        let rpcs = names
            .zip(self.counters.iter())
            .map(|(rpc, c)| RpcMetrics {
                rpc,
                calls: std::array::from_fn(|code| c.calls[code].load(Relaxed)),
                bytes_in: c.bytes_in.load(Relaxed),
                bytes_out: c.bytes_out.load(Relaxed),
            })
            .collect();
        TransportMetrics {
            role: self.role,
            rpcs,
            auth_failures: std::array::from_fn(|i| self.auth_failures[i].load(Relaxed)),
            rejected: std::array::from_fn(|i| self.rejected[i].load(Relaxed)),
            active_connections: self.active_connections.load(Relaxed),
            connections: self.connections.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
            retries: self.retries.load(Relaxed),
        }
    }
}

/// One call being counted: finished with its status code once (dropped
/// unfinished, it counts as CANCELLED).
pub(crate) struct CallMeter {
    recorder: Arc<Recorder>,
    rpc: usize,
    finished: bool,
}

impl CallMeter {
    pub(crate) fn recorder(&self) -> &Arc<Recorder> {
        &self.recorder
    }

    pub(crate) fn rpc(&self) -> usize {
        self.rpc
    }

    /// The call ended with gRPC code `code` (codes outside 0..=16 count as
    /// UNKNOWN). Later calls do nothing.
    pub(crate) fn finish(&mut self, code: i32) {
        if self.finished {
            return;
        }
        self.finished = true;
        let code = usize::try_from(code).ok().filter(|c| *c < CODES).unwrap_or(2);
        self.recorder.counters[self.rpc].calls[code].fetch_add(1, Relaxed);
        self.recorder.in_flight.fetch_sub(1, Relaxed);
    }

}

impl Drop for CallMeter {
    fn drop(&mut self) {
        self.finish(tonic::Code::Cancelled as i32);
    }
}

/// An open connection; closed when dropped.
pub(crate) struct ConnectionGuard(Arc<Recorder>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.active_connections.fetch_sub(1, Relaxed);
    }
}
