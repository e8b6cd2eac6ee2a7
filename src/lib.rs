//! openfl-transport: OpenFL 1.6's gRPC transport (aggregator server,
//! collaborator client, director server) in Rust, wire-compatible with
//! OpenFL 1.6 peers, with a C ABI (see `include/openfl_transport.h`).
//!
//! Layers, top uses bottom: [`ffi`] (the C ABI) → [`fedavg`] (the built-in
//! aggregation, an [`aggregator::AggregatorLogic`]) → [`aggregator`],
//! [`director`] → [`tls`] and the private plumbing (connect, listen, stream,
//! retry, runtime) → [`proto`] (the wire contract).
//!
//! Unsafe code is denied crate-wide. Allowed only in [`ffi`] (the C ABI),
//! in the runtime threads' signal mask (`runtime.rs`) and in the FedAvg state
//! directory's `flock` (`fedavg/state_file.rs`) and the 64-byte aligned
//! buffers of received tensors (`aligned/block.rs`), each with a `// SAFETY:` comment.
#![deny(unsafe_code)]

pub mod aggregator;
pub mod call;
mod connect;
mod connector;
mod crl;
mod connection;
pub mod director;
pub mod error;
pub mod fedavg;
#[allow(unsafe_code)]
pub mod ffi;
mod limits;
mod listen;
mod method_route;
pub mod metrics;
mod protocol_check;
pub mod proto;
mod request_limits;
mod shutdown;
mod retry;
mod runtime;
mod aligned;
mod stream;
pub mod tls;

pub use call::{CallOptions, CancelToken, Progress, PROGRESS_STEP};
pub use connect::ConnectConfig;
pub use error::{ofl_code, Error, Result};
pub use limits::ServerLimits;
pub use metrics::TransportMetrics;
pub use retry::RetryPolicy;
pub use runtime::block_on;
pub use stream::{CHUNK_SIZE, DEFAULT_MAX_MESSAGE_SIZE};

/// Internals the fuzz targets (`tests/fuzz`, their own workspace) drive
/// directly. Not API: may change without notice.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::aligned::Segments;
    pub use crate::stream::Reassembly;
}
