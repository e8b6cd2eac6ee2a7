//! openfl-transport: OpenFL 1.6's gRPC transport (aggregator server,
//! collaborator client, director server) in Rust, wire-compatible with
//! OpenFL 1.6 peers, with a C ABI (see `include/openfl_transport.h`).
//!
//! Layers, top uses bottom: [`ffi`] (the C ABI, the only unsafe code) →
//! [`fedavg`] (the built-in aggregation, an [`aggregator::AggregatorLogic`])
//! → [`aggregator`], [`director`] → [`tls`], [`connect`], [`listen`],
//! [`stream`], [`retry`], [`runtime`] → [`proto`] (the wire contract).

pub mod aggregator;
pub mod connect;
mod connector;
mod crl;
mod connection;
pub mod director;
pub mod error;
pub mod fedavg;
pub mod ffi;
pub mod limits;
pub mod listen;
mod method_route;
pub mod proto;
pub mod request_limits;
pub mod retry;
pub mod runtime;
pub mod stream;
pub mod tls;

pub use error::{ofl_code, Error, Result};
