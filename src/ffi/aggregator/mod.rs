//! The aggregator area of the C API (OpenFL's `AggregatorGRPCServer` and
//! `AggregatorGRPCClient`). Module order is the header's order: server
//! options, callbacks and what they read and fill, the server, then the
//! collaborator's client and what its calls return.

pub mod server_options;
pub mod callbacks;
pub mod may_block;
pub mod reply;
pub mod results;
mod logic;
pub mod server;
pub mod client_options;
pub mod client;
pub mod tasks;
